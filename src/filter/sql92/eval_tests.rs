//! Unit tests of the evaluation rules: three-valued logic, Java type
//! coercion and RocketMQ's evaluation order.

use super::SqlExpr;
use super::tests::eval;

#[test]
fn absent_property_is_unknown() {
    assert!(!eval("a = 'x'", &[]));
    assert!(!eval("NOT (a = 'x')", &[]));
    assert!(!eval("a > 1", &[]));
    assert!(!eval("NOT (a > 1)", &[]));
    assert!(!eval("NOT (a <> 'x')", &[]));
}

#[test]
fn is_null_and_is_not_null() {
    assert!(eval("a IS NULL", &[]));
    assert!(!eval("a IS NULL", &[("a", "")]));
    assert!(eval("a IS NOT NULL", &[("a", "")]));
    assert!(eval("a IS NULL OR a = 'hello'", &[]));
    assert!(!eval("a IS NULL OR a = 'hello'", &[("a", "abc")]));
}

#[test]
fn equality_null_sides() {
    // Right side NULL with a non-null left is FALSE, so NOT makes it TRUE.
    assert!(eval("NOT ('x' = a)", &[]));
    assert!(eval("'x' <> a", &[]));
    // Left NULL is unknown.
    assert!(!eval("a <> 'x'", &[]));
    // Both NULL are equal (RocketMQ's `lv == rv`).
    assert!(eval("a = b", &[]));
    assert!(!eval("a <> b", &[]));
}

#[test]
fn string_equality_is_exact() {
    assert!(eval("a = b", &[("a", "3.14"), ("b", "3.14")]));
    assert!(!eval("a = b", &[("a", "3.14"), ("b", "3.140")]));
    assert!(eval("a <> b", &[("a", "3.14"), ("b", "3.141")]));
    assert!(!eval("a = 'Abc'", &[("a", "abc")]));
}

#[test]
fn string_against_numeric_literal() {
    assert!(eval("a = 5", &[("a", "05")]));
    assert!(eval("a = 5", &[("a", "+5")]));
    assert!(eval("a = 5.0", &[("a", "5")]));
    assert!(eval("a = 2.0", &[("a", "0x1p1")]));
    assert!(eval("a = 1.0", &[("a", " 1.0 ")]));
    assert!(eval("a > 3.14", &[("a", "3.1415")]));
    assert!(eval("a > 3.1E10", &[("a", "3.1415E10")]));
    assert!(eval("a > 1.5", &[("a", "NaN")]));
    assert!(eval("5 = a", &[("a", "5")]));
}

#[test]
fn failed_conversion_rejects_the_message() {
    for expr in ["a = 5", "a <> 5", "NOT (a = 5)", "a = 5 OR TRUE", "NOT (a > 5)"] {
        assert!(!eval(expr, &[("a", "5.0")]), "{expr}");
        assert!(!eval(expr, &[("a", " 5")]), "{expr}");
        assert!(!eval(expr, &[("a", "abc")]), "{expr}");
    }
    // BETWEEN 1 AND 2.5 parses the property as an Integer first.
    assert!(!eval("a BETWEEN 1 AND 2.5", &[("a", "2.5")]));
    assert!(eval("a BETWEEN 1.0 AND 2.5", &[("a", "2.5")]));
}

#[test]
fn string_against_boolean_literal() {
    assert!(eval("a = TRUE", &[("a", "TRUE")]));
    assert!(eval("a = true", &[("a", "tRuE")]));
    assert!(!eval("a = TRUE", &[("a", "yes")]));
    assert!(eval("a = FALSE", &[("a", "yes")]));
    assert!(eval("a=TRUE OR b=FALSE", &[("a", "true"), ("b", "false")]));
    assert!(!eval("a=TRUE OR b=FALSE", &[("a", "false"), ("b", "true")]));
}

#[test]
fn boolean_left_of_string_rejects_the_message() {
    assert!(!eval("TRUE = a", &[("a", "true")]));
    assert!(!eval("NOT (TRUE = a)", &[("a", "true")]));
    assert!(!eval("(b IS NULL) = a OR TRUE", &[("a", "true")]));
    // With NULL involved RocketMQ returns before converting.
    assert!(eval("NOT (TRUE = a)", &[]));
}

#[test]
fn two_strings_ordered_compare_as_doubles() {
    assert!(eval("a > b", &[("a", "10"), ("b", "9")]));
    assert!(!eval("a > b", &[("a", "10"), ("b", "20")]));
    assert!(eval("a <= b", &[("a", "1e1"), ("b", "10")]));
    assert!(!eval("a > b OR TRUE", &[("a", "x"), ("b", "1")]));
    assert!(eval("TRUE OR a > b", &[("a", "x"), ("b", "1")]));
}

#[test]
fn numeric_widening() {
    assert!(eval("1 < 1.5", &[]));
    assert!(eval("3000000000 > 5", &[]));
    assert!(eval("2 = 2.0", &[]));
    assert!(!eval("a = 3000000000 OR TRUE", &[("a", "3000000000.0")]));
    assert!(eval("-(-5) = 5 AND - 2 < 1", &[]));
}

#[test]
fn between_and_not_between() {
    let p = |v: &'static str| [("a", v)];
    assert!(eval("a BETWEEN 2 AND 10", &p("2")));
    assert!(eval("a BETWEEN 2 AND 10", &p("10")));
    assert!(!eval("a BETWEEN 2 AND 10", &p("11")));
    assert!(eval("a NOT BETWEEN 2 AND 10", &p("11")));
    assert!(!eval("a NOT BETWEEN 2 AND 10", &p("5")));
    assert!(!eval("NOT (a BETWEEN 2 AND 10)", &[]));
    assert!(!eval("a NOT BETWEEN 2 AND 10", &[]));
    assert!(eval("(a between 2 and 10) AND (b not between 6 and 9)", &[("a", "3"), ("b", "5")]));
}

#[test]
fn in_and_not_in() {
    let p = [("a", "4")];
    assert!(eval("a in ('3', '4', '5')", &p));
    assert!(!eval("a not in ('3', '4', '5')", &p));
    assert!(eval("a IN ('b', 'a', 'b', '4')", &p));
    assert!(!eval("a IN ('4 ')", &p));
    assert!(!eval("a IN ('x')", &[]));
    assert!(!eval("a NOT IN ('x')", &[]));
    assert!(!eval("NOT (a IN ('x'))", &[]));
}

#[test]
fn contains_startswith_endswith() {
    let p = [("v", "axb")];
    assert!(eval("v CONTAINS 'x' AND v STARTSWITH 'ax' AND v ENDSWITH 'xb'", &p));
    assert!(!eval("v NOT CONTAINS 'x' OR v NOT STARTSWITH 'ax' OR v NOT ENDSWITH 'xb'", &p));
    assert!(eval("v NOT CONTAINS 'u'", &p));
    // Empty needle: FALSE either way.
    assert!(!eval("v CONTAINS ''", &p));
    assert!(!eval("v NOT CONTAINS ''", &p));
    // NULL is FALSE, not unknown, so NOT (...) is TRUE.
    assert!(!eval("v CONTAINS 'x'", &[]));
    assert!(!eval("v NOT CONTAINS 'x'", &[]));
    assert!(eval("NOT (v CONTAINS 'x')", &[]));
    // Non-strings are FALSE.
    assert!(!eval("(v = 'axb') NOT CONTAINS 'x'", &p));
    assert!(!eval("-1 NOT ENDSWITH 'x'", &[]));
    assert!(eval("'axb' contains 'x'", &[]));
    assert!(eval("v CONTAINS 'é'", &[("v", "café")]));
}

#[test]
fn and_or_not_three_valued() {
    let none: [(&str, &str); 0] = [];
    assert!(eval("a = 'x' OR TRUE", &none));
    assert!(eval("NOT (a = 'x' AND FALSE)", &none));
    assert!(!eval("NOT (a = 'x' AND TRUE)", &none));
    assert!(!eval("NOT (a = 'x' OR FALSE)", &none));
    assert!(eval("NOT (FALSE OR FALSE) AND TRUE", &none));
    assert!(!eval("NOT TRUE", &none));
    assert!(!eval("NOT NULL", &none));
}

#[test]
fn evaluation_short_circuits_like_rocketmq() {
    let p = [("a", "y"), ("b", "zz")];
    assert!(!eval("a = 'x' AND b > 1", &p));
    assert!(eval("NOT (a = 'x' AND b > 1)", &p));
    assert!(!eval("NOT (a = 'y' AND b > 1)", &p));
    // A NULL left operand of `>` skips the right; `=` evaluates both.
    assert!(eval("c > -(b > 1) OR TRUE", &p));
    assert!(!eval("c = -(b > 1) OR TRUE", &p));
    // An empty needle skips the operand.
    assert!(eval("NOT (-(b > 1) CONTAINS '')", &p));
}

#[test]
fn unary_minus() {
    assert!(eval("a = -5", &[("a", "-5")]));
    assert!(eval("-a IS NULL", &[("a", "5")]));
    assert!(eval("-TRUE IS NULL AND -'x' IS NULL", &[]));
    assert!(eval("a = -2147483648", &[("a", "-2147483648")]));
    assert!(eval("+a = 5 AND +5 = 5", &[("a", "5")]));
}

#[test]
fn chained_comparisons() {
    assert!(eval("a = 1 = TRUE", &[("a", "1")]));
    assert!(eval("a IS NULL IS NOT NULL", &[]));
    assert!(!eval("NOT a = 'x'", &[("a", "x")]));
    assert!(eval("a CONTAINS 'x' CONTAINS 'y' IS NOT NULL", &[("a", "x")]));
}

#[test]
fn source_is_kept() {
    let e = SqlExpr::parse("a = 1").unwrap();
    assert_eq!(e.source(), "a = 1");
    assert_eq!(e.to_string(), "a = 1");
    let cloned = e.clone();
    assert!(cloned.evaluate(&|_: &str| Some("1".into())));
    assert!(format!("{e:?}").contains("Equal"));
}
