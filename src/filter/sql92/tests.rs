//! Unit tests of the SQL92 syntax rules, parse-time checks and limits, and
//! "never panics" property tests on arbitrary input.

use super::{MAX_EXPRESSION_LEN, MAX_NESTING, SqlExpr};
use crate::filter::FilterError;
use proptest::prelude::*;

pub(super) fn props_of<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_string())
}

/// Parses `expr` (which must be valid) and evaluates it on `pairs`.
pub(super) fn eval(expr: &str, pairs: &[(&str, &str)]) -> bool {
    let parsed = SqlExpr::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
    parsed.evaluate(&props_of(pairs))
}

fn parse_err(expr: &str) -> FilterError {
    match SqlExpr::parse(expr) {
        Ok(e) => panic!("{expr} should not parse: {e:?}"),
        Err(e) => e,
    }
}

fn assert_invalid(expr: &str) {
    let err = parse_err(expr);
    assert!(matches!(err, FilterError::Invalid { .. }), "{expr}: {err:?}");
}

#[test]
fn keywords_are_case_insensitive() {
    let p = [("a", "1"), ("b", "x")];
    assert!(eval("a = 1 aNd b Is NoT nUlL", &p));
    assert!(eval("a = 2 oR b iN ('x')", &p));
    assert!(eval("tRuE", &p));
}

#[test]
fn property_names_are_case_sensitive() {
    assert!(!eval("A = 1", &[("a", "1")]));
    assert!(eval("A IS NULL", &[("a", "1")]));
}

#[test]
fn string_literals_unescape_doubled_quotes() {
    assert!(eval("a = 'it''s'", &[("a", "it's")]));
    assert!(eval("a = ''", &[("a", "")]));
    assert!(eval("TAGS is not null and TAGS='''''tag'''''", &[("TAGS", "''tag''")]));
}

#[test]
fn integer_literals_int_or_long() {
    assert!(eval("a = 5L", &[("a", "5")]));
    assert!(eval("a = 3000000000", &[("a", "3000000000")]));
    // A 32-bit literal parses the property as an Integer: overflow aborts.
    assert!(!eval("a = 5 OR TRUE", &[("a", "3000000000")]));
    assert!(eval("a = 9223372036854775807", &[("a", "9223372036854775807")]));
    assert_invalid("a > 100000000000000000000000");
    assert_invalid("a = 9223372036854775808");
}

#[test]
fn float_literal_forms() {
    let p = [("a", "0.5"), ("b", "5"), ("c", "5e10")];
    assert!(eval("a = .5 AND b = 5. AND c = 5E10 AND a < 1.5", &p));
    assert!(eval("c = 50000000000.0", &p));
    assert_invalid("a > 0.0");
    assert_invalid("a > 1e-400");
    assert_invalid("a > 1e400");
}

#[test]
fn comments_and_whitespace() {
    let p = [("a", "1")];
    assert!(eval("/* lead */ a\t=\x0c1 -- trailing\n", &p));
    assert!(eval("a = 1 /* ** */", &p));
    // Without a line break `--` is two minus signs (double negation).
    assert!(eval("a = --1", &p));
    assert!(matches!(parse_err("a = 1 /* open"), FilterError::Lexical { position: 6, .. }));
}

#[test]
fn identifier_characters() {
    assert!(eval("$x_1 = 'v'", &[("$x_1", "v")]));
    assert!(matches!(parse_err("a.b = 1"), FilterError::Lexical { position: 1, .. }));
    assert!(matches!(parse_err("1a = 1"), FilterError::Invalid { .. } | FilterError::Syntax { .. }));
}

#[test]
fn trailing_tokens_are_ignored_like_rocketmq() {
    let p = [("a", "1")];
    assert!(eval("a = 1 )", &p));
    assert!(eval("a = 1 b = 2", &p));
    assert!(eval("a = 1 -- no line break", &p));
    // The token that ends the expression is still lexed and inspected.
    assert!(matches!(parse_err("a = 1 'open"), FilterError::Lexical { .. }));
    assert!(matches!(parse_err("a = 1 NOT x"), FilterError::Syntax { .. }));
    assert!(matches!(parse_err("a = 1 IS x"), FilterError::Syntax { .. }));
}

#[test]
fn null_literal_cannot_be_compared_with_equals() {
    assert_invalid("a = NULL");
    assert_invalid("NULL = a");
    assert_invalid("a <> NULL");
    assert_invalid("a > NULL");
    assert!(eval("NULL IS NULL", &[]));
    assert!(!eval("NULL", &[]));
}

#[test]
fn boolean_literal_left_of_other_literal() {
    assert_invalid("TRUE = 1");
    assert_invalid("FALSE <> 'x'");
    assert!(eval("TRUE = TRUE", &[]));
    assert!(!eval("1 = TRUE", &[]));
    assert!(eval("1 <> TRUE", &[]));
}

#[test]
fn ordered_comparisons_need_numeric_operands() {
    for bad in [
        "a > 'x'",
        "'x' < a",
        "a >= TRUE",
        "a <= (b = 1)",
        "(a > 1) > 0",
        "a BETWEEN 'a' AND 'b'",
        "a BETWEEN 1 AND TRUE",
        "(a = 1) BETWEEN 1 AND 2",
        "NOT a > 1",
    ] {
        assert_invalid(bad);
    }
    assert!(!eval("a > -b OR a > -b", &[("a", "1")]));
}

#[test]
fn between_bounds_are_checked() {
    assert_invalid("a BETWEEN 5 AND 1");
    assert_invalid("a BETWEEN 1.5 AND 1");
    assert_invalid("a BETWEEN NULL AND 1");
    assert!(eval("a BETWEEN 1 AND 1", &[("a", "1")]));
    // RocketMQ does not check NOT BETWEEN bounds (other than for NULL).
    assert!(eval("a NOT BETWEEN 5 AND 1", &[("a", "3")]));
    assert_invalid("a NOT BETWEEN NULL AND 1");
    // Negated bounds are not literals in RocketMQ, so they are not checked.
    assert!(!eval("a BETWEEN 2 AND -1", &[("a", "1")]));
}

#[test]
fn in_and_text_operands() {
    assert_invalid("'x' IN ('x')");
    assert_invalid("(a = 'x') IN ('x')");
    assert!(matches!(parse_err("a IN (1)"), FilterError::Syntax { .. }));
    assert!(matches!(parse_err("a IN ()"), FilterError::Syntax { .. }));
    assert!(matches!(parse_err("a CONTAINS b"), FilterError::Syntax { .. }));
    assert!(matches!(parse_err("a NOT STARTSWITH 1"), FilterError::Syntax { .. }));
    assert!(eval("(a) IN ('x')", &[("a", "x")]));
}

#[test]
fn operands_of_logic_must_be_boolean() {
    for bad in ["1", "'x'", "-a", "a AND 1", "'x' OR a = 1", "NOT 5", "1.5 AND TRUE"] {
        assert_invalid(bad);
    }
}

#[test]
fn bare_property_is_cast_to_boolean() {
    // Property values are strings, and a non-Boolean value casts to FALSE.
    assert!(!eval("a", &[("a", "true")]));
    assert!(eval("NOT a", &[("a", "true")]));
    assert!(!eval("NOT a", &[]));
    assert!(eval("a OR TRUE", &[]));
}

#[test]
fn nesting_and_length_limits() {
    let ok = format!("{}a = 1{}", "(".repeat(MAX_NESTING), ")".repeat(MAX_NESTING));
    assert!(eval(&ok, &[("a", "1")]));
    let deep = format!("{}a = 1{}", "(".repeat(MAX_NESTING + 1), ")".repeat(MAX_NESTING + 1));
    assert!(matches!(parse_err(&deep), FilterError::TooDeep { max: 64, .. }));
    assert!(matches!(parse_err(&"NOT ".repeat(10_000)), FilterError::TooDeep { .. }));
    let chain = format!("a = 1{}", " = TRUE".repeat(1000));
    assert!(matches!(parse_err(&chain), FilterError::TooDeep { max: 128, .. }));
    let long = format!("a = '{}'", "x".repeat(MAX_EXPRESSION_LEN));
    assert!(matches!(parse_err(&long), FilterError::TooLong { .. }));
}

#[test]
fn long_flat_chains_are_fine() {
    let expr = vec!["a = 'x'"; 5000].join(" OR ") + " OR a = 'y'";
    assert!(eval(&expr, &[("a", "y")]));
    let expr = vec!["a IS NOT NULL"; 3000].join(" AND ");
    assert!(eval(&expr, &[("a", "y")]));
}

#[test]
fn error_messages_name_position_and_expectation() {
    let err = parse_err("a = ");
    assert_eq!(
        err.to_string(),
        "syntax error at position 4: expected a literal, a property name or `(`, found end of input"
    );
    let err = parse_err("é = 'x' AND (b = 1");
    assert!(matches!(err, FilterError::Lexical { position: 0, .. }), "{err:?}");
    let err = parse_err("ab = 'é' AND (b = 1");
    assert_eq!(err.to_string(), "syntax error at position 19: expected `)` or an operator, found end of input");
    let err = parse_err("a BETWEEN 1 OR 2");
    assert!(err.to_string().contains("expected AND, found keyword OR"), "{err}");
    let err = parse_err("a = NULL");
    assert!(err.to_string().starts_with("invalid expression at position 4: NULL"), "{err}");
}

/// Expressions at the nesting and tree-depth limits.
fn worst_case_expressions() -> Vec<String> {
    let n = MAX_NESTING;
    let mut chained = "a = 1".to_string();
    let mut between = "a BETWEEN 1 AND 2".to_string();
    for i in 1..n {
        chained = format!("({chained}) = TRUE");
        if i < n / 2 {
            between = format!("- ({between}) BETWEEN 1 AND 2");
        }
    }
    vec![
        format!("{}a = 1{}", "(".repeat(n), ")".repeat(n)),
        format!("{}a", "NOT ".repeat(n - 1)),
        format!("{}a IS NULL", "- ".repeat(n)),
        between,
        chained,
    ]
}

/// Worst cases fit in 1 MiB of stack even unoptimised (about 330 KiB are
/// used in debug builds, under 128 KiB in release builds).
#[test]
fn limits_hold_on_a_small_stack() {
    let worker = std::thread::Builder::new().stack_size(1024 * 1024).spawn(|| {
        for expr in worst_case_expressions() {
            let parsed = SqlExpr::parse(&expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
            let _ = parsed.evaluate(&props_of(&[("a", "1")]));
            let _ = parsed.evaluate(&props_of(&[]));
            let deeper = format!("(NOT ({expr})) = TRUE = TRUE");
            assert!(matches!(SqlExpr::parse(&deeper), Err(FilterError::TooDeep { .. })));
        }
    });
    assert!(worker.expect("spawn").join().is_ok());
}

const TOKENS: [&str; 30] = [
    "a", "b", "TAGS", "(", ")", "'x'", "''", "'", "1", "2.5", ".5", "5L", "0.0", "=", "<>", ">", "<=", "AND", "OR",
    "NOT", "IS", "NULL", "BETWEEN", "IN", ",", "CONTAINS", "TRUE", "-", "+", "--",
];

const PROPERTY_SETS: [[(&str, &str); 2]; 3] =
    [[("a", "1"), ("b", "x")], [("a", "2.5"), ("TAGS", "t")], [("x", ""), ("y", "true")]];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn arbitrary_strings_never_panic(s in any::<String>(), p in 0..3usize) {
        if let Ok(e) = SqlExpr::parse(&s) {
            let _ = e.evaluate(&props_of(&PROPERTY_SETS[p]));
        }
    }

    #[test]
    fn token_soup_never_panics(parts in prop::collection::vec(prop::sample::select(TOKENS.to_vec()), 0..40),
                               sep in prop::sample::select(vec![" ", "", "\n"]), p in 0..3usize) {
        let s = parts.join(sep);
        if let Ok(e) = SqlExpr::parse(&s) {
            let _ = e.evaluate(&props_of(&PROPERTY_SETS[p]));
        }
    }
}

/// Replays the fuzz target's committed corpus (seeds and past findings) on stable Rust.
#[test]
fn fuzz_corpus_never_panics() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/sql92_parse");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("fuzz corpus directory") {
        let data = std::fs::read(entry.expect("corpus entry").path()).expect("corpus file");
        if let Ok(s) = std::str::from_utf8(&data) {
            super::check_input(s);
            n += 1;
        }
    }
    assert!(n >= 10, "the corpus holds the seed expressions");
    assert!(super::SqlExpr::parse("price BETWEEN 10 AND 20.5 AND region IN ('eu', 'us')").is_ok());
}
