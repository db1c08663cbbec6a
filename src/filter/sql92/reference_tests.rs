//! Property test: the parser and evaluator against a small, independently
//! written reference, on random expressions over properties `a`, `b`, `c`
//! holding random strings or absent.

use super::SqlExpr;
use proptest::prelude::*;
use proptest::sample::select;
use std::cmp::Ordering;

const PROPS: [&str; 3] = ["a", "b", "c"];
const STRS: [&str; 6] = ["1", "x", "", "true", "10", "a'b"];
const VALUES: [&str; 16] =
    ["1", "-3", "10", "2.5", "0.5", "x", "", "true", "TRUE", "NaN", " 2", "3000000000", "1e1", "0x1p1", "-0", "1.5f"];

/// Java `Double.valueOf` for every string the tests can produce.
fn java_double(s: &str) -> Option<f64> {
    Some(match s {
        "1" => 1.0,
        "-3" => -3.0,
        "10" | "1e1" => 10.0,
        "2.5" => 2.5,
        "0.5" => 0.5,
        "NaN" => f64::NAN,
        " 2" | "0x1p1" => 2.0,
        "3000000000" => 3e9,
        "-0" => -0.0,
        "1.5f" => 1.5,
        _ => return None,
    })
}

#[derive(Debug, Clone)]
enum Lit {
    S(String),
    I(i64),
    F(f64),
    B(bool),
    Null,
}

#[derive(Debug, Clone)]
enum R {
    Lit(Lit),
    Prop(usize),
    Neg(Box<R>),
    Not(Box<R>),
    And(Box<R>, Box<R>),
    Or(Box<R>, Box<R>),
    Eq(Box<R>, Box<R>, bool),
    IsNull(Box<R>, bool),
    Cmp(&'static str, Box<R>, Box<R>),
    Between(Box<R>, Box<R>, Box<R>, bool),
    In(Box<R>, Vec<String>, bool),
    Text(&'static str, Box<R>, String, bool),
}

// ----- rendering ---------------------------------------------------------

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn not_kw(n: bool) -> &'static str {
    if n { "NOT " } else { "" }
}

fn render(r: &R) -> String {
    match r {
        R::Lit(Lit::S(s)) => quote(s),
        R::Lit(Lit::I(i)) => i.to_string(),
        R::Lit(Lit::F(f)) => format!("{f:?}"),
        R::Lit(Lit::B(b)) => if *b { "TRUE" } else { "false" }.to_string(),
        R::Lit(Lit::Null) => "NULL".to_string(),
        R::Prop(i) => PROPS[*i].to_string(),
        R::Neg(x) => format!("-({})", render(x)),
        R::Not(x) => format!("NOT ({})", render(x)),
        R::And(x, y) => format!("({}) AND ({})", render(x), render(y)),
        R::Or(x, y) => format!("({}) or ({})", render(x), render(y)),
        R::Eq(x, y, n) => format!("({}) {} ({})", render(x), if *n { "<>" } else { "=" }, render(y)),
        R::IsNull(x, n) => format!("({}) IS {}NULL", render(x), not_kw(*n)),
        R::Cmp(op, x, y) => format!("({}) {op} ({})", render(x), render(y)),
        R::Between(x, lo, hi, n) => {
            let (x, lo, hi) = (render(x), render(lo), render(hi));
            format!("({x}) {}BETWEEN ({lo}) AND ({hi})", not_kw(*n))
        }
        R::In(x, list, n) => {
            let items: Vec<String> = list.iter().map(|s| quote(s)).collect();
            format!("({}) {}IN ({})", render(x), not_kw(*n), items.join(", "))
        }
        R::Text(op, x, needle, n) => {
            format!("({}) {}{op} {}", render(x), not_kw(*n), quote(needle))
        }
    }
}

// ----- reference parse-time checks ----------------------------------------

fn is_boolean(r: &R) -> bool {
    !matches!(r, R::Prop(_) | R::Neg(_) | R::Lit(Lit::S(_) | Lit::I(_) | Lit::F(_)))
}

fn as_condition(r: &R) -> bool {
    is_boolean(r) || matches!(r, R::Prop(_))
}

fn orderable(r: &R) -> bool {
    match r {
        R::Lit(Lit::I(_) | Lit::F(_)) => true,
        R::Lit(_) => false,
        other => !is_boolean(other),
    }
}

fn lit_number(r: &R) -> Option<f64> {
    match r {
        R::Lit(Lit::I(i)) => Some(*i as f64),
        R::Lit(Lit::F(f)) => Some(*f),
        _ => None,
    }
}

fn valid(r: &R) -> bool {
    match r {
        R::Lit(Lit::F(f)) => *f != 0.0,
        R::Lit(_) | R::Prop(_) => true,
        R::Neg(x) | R::IsNull(x, _) | R::Text(_, x, _, _) => valid(x),
        R::Not(x) => valid(x) && as_condition(x),
        R::And(x, y) | R::Or(x, y) => valid(x) && valid(y) && as_condition(x) && as_condition(y),
        R::Eq(x, y, _) => {
            let null = |r: &R| matches!(r, R::Lit(Lit::Null));
            let bool_vs_lit =
                matches!(x.as_ref(), R::Lit(Lit::B(_))) && matches!(y.as_ref(), R::Lit(l) if !matches!(l, Lit::B(_)));
            valid(x) && valid(y) && !null(x) && !null(y) && !bool_vs_lit
        }
        R::Cmp(_, x, y) => valid(x) && valid(y) && orderable(x) && orderable(y),
        R::Between(x, lo, hi, negated) => {
            let both_lits = matches!(lo.as_ref(), R::Lit(_)) && matches!(hi.as_ref(), R::Lit(_));
            let ordered = *negated
                || match (lit_number(lo), lit_number(hi)) {
                    (Some(l), Some(h)) => l <= h,
                    _ => !both_lits,
                };
            [x, lo, hi].iter().all(|e| valid(e) && orderable(e)) && ordered
        }
        R::In(x, _, _) => valid(x) && matches!(x.as_ref(), R::Prop(_)),
    }
}

// ----- reference evaluation ----------------------------------------------

/// Java numbers by rank: Integer < Long < Double.
#[derive(Debug, Clone, Copy)]
enum Num {
    I(i32),
    L(i64),
    D(f64),
}

#[derive(Debug, Clone)]
enum V {
    Null,
    S(String),
    N(Num),
    B(bool),
}

/// `Err(())` stands for a Java exception: the message is not matched.
type Out<T> = Result<T, ()>;

fn rank(n: Num) -> u8 {
    match n {
        Num::I(_) => 0,
        Num::L(_) => 1,
        Num::D(_) => 2,
    }
}

fn widen(n: Num, to: u8) -> Num {
    match (n, to) {
        (Num::I(i), 1) => Num::L(i64::from(i)),
        (Num::I(i), 2) => Num::D(f64::from(i)),
        (Num::L(l), 2) => Num::D(l as f64),
        _ => n,
    }
}

fn java_double_key(d: f64) -> i64 {
    if d.is_nan() { 0x7ff8_0000_0000_0000 } else { d.to_bits() as i64 }
}

fn num_cmp(a: Num, b: Num) -> Ordering {
    let to = rank(a).max(rank(b));
    match (widen(a, to), widen(b, to)) {
        (Num::I(x), Num::I(y)) => x.cmp(&y),
        (Num::L(x), Num::L(y)) => x.cmp(&y),
        (Num::D(x), Num::D(y)) => {
            x.partial_cmp(&y).filter(|o| o.is_ne()).unwrap_or_else(|| java_double_key(x).cmp(&java_double_key(y)))
        }
        _ => unreachable!("widened to one rank"),
    }
}

/// The string converted to the rank of `n` (Java `Integer/Long/Double.valueOf`).
fn parse_like(s: &str, n: Num) -> Out<Num> {
    match n {
        Num::I(_) => s.parse().map(Num::I).map_err(drop),
        Num::L(_) => s.parse().map(Num::L).map_err(drop),
        Num::D(_) => java_double(s).map(Num::D).ok_or(()),
    }
}

/// RocketMQ `__compare` (string conversion on); -1 for unconvertible pairs.
fn compare(l: &V, r: &V) -> Out<Ordering> {
    Ok(match (l, r) {
        (V::S(x), V::S(y)) => x.cmp(y),
        (V::N(x), V::N(y)) => num_cmp(*x, *y),
        (V::S(s), V::N(n)) => num_cmp(parse_like(s, *n)?, *n),
        (V::N(n), V::S(s)) => num_cmp(*n, parse_like(s, *n)?),
        (V::S(s), V::B(b)) => s.eq_ignore_ascii_case("true").cmp(b),
        (V::B(x), V::B(y)) => x.cmp(y),
        (V::B(_), V::S(_)) => return Err(()),
        _ => Ordering::Less,
    })
}

fn eval(r: &R, p: &[Option<&str>; 3]) -> Out<V> {
    Ok(match r {
        R::Lit(Lit::S(s)) => V::S(s.clone()),
        R::Lit(Lit::I(i)) => V::N(i32::try_from(*i).map_or(Num::L(*i), Num::I)),
        R::Lit(Lit::F(f)) => V::N(Num::D(*f)),
        R::Lit(Lit::B(b)) => V::B(*b),
        R::Lit(Lit::Null) => V::Null,
        R::Prop(i) => p[*i].map_or(V::Null, |s| V::S(s.to_string())),
        R::Neg(x) => match eval(x, p)? {
            V::N(Num::I(i)) => V::N(Num::I(i.wrapping_neg())),
            V::N(Num::L(l)) => V::N(Num::L(l.wrapping_neg())),
            V::N(Num::D(d)) => V::N(Num::D(-d)),
            _ => V::Null,
        },
        _ => cond(r, p)?.map_or(V::Null, V::B),
    })
}

fn cmp_op(op: &str, l: &V, r: &V) -> Out<Option<bool>> {
    let ord = match (l, r) {
        (V::Null, _) | (_, V::Null) => return Ok(None),
        (V::S(x), V::S(y)) => num_cmp(Num::D(java_double(x).ok_or(())?), Num::D(java_double(y).ok_or(())?)),
        _ => compare(l, r)?,
    };
    Ok(Some(match op {
        ">" => ord.is_gt(),
        ">=" => ord.is_ge(),
        "<" => ord.is_lt(),
        _ => ord.is_le(),
    }))
}

/// A comparison node as Java evaluates it: right side only if left non-null.
fn cmp_node(op: &str, x: &R, y: &R, p: &[Option<&str>; 3]) -> Out<Option<bool>> {
    let l = eval(x, p)?;
    if matches!(l, V::Null) {
        return Ok(None);
    }
    cmp_op(op, &l, &eval(y, p)?)
}

fn java_and(l: Option<bool>, r: impl FnOnce() -> Out<Option<bool>>) -> Out<Option<bool>> {
    if l == Some(false) {
        return Ok(Some(false));
    }
    let r = r()?;
    Ok(if r == Some(false) {
        Some(false)
    } else if l.is_none() || r.is_none() {
        None
    } else {
        Some(true)
    })
}

fn java_or(l: Option<bool>, r: impl FnOnce() -> Out<Option<bool>>) -> Out<Option<bool>> {
    if l == Some(true) {
        return Ok(Some(true));
    }
    let r = r()?;
    Ok(if r == Some(true) {
        Some(true)
    } else if l.is_none() || r.is_none() {
        None
    } else {
        Some(false)
    })
}

/// Boolean value of `r`; a bare property casts (strings are FALSE).
fn cond(r: &R, p: &[Option<&str>; 3]) -> Out<Option<bool>> {
    match r {
        R::Prop(i) => Ok(p[*i].map(|_| false)),
        R::Lit(Lit::B(b)) => Ok(Some(*b)),
        R::Lit(_) | R::Neg(_) => Ok(None),
        R::Not(x) => Ok(cond(x, p)?.map(|b| !b)),
        R::And(x, y) => java_and(cond(x, p)?, || cond(y, p)),
        R::Or(x, y) => java_or(cond(x, p)?, || cond(y, p)),
        R::Eq(x, y, n) => {
            let (l, r) = (eval(x, p)?, eval(y, p)?);
            let eq = match (&l, &r) {
                (V::Null, V::Null) => Some(true),
                (V::Null, _) => None,
                (_, V::Null) => Some(false),
                _ => Some(compare(&l, &r)?.is_eq()),
            };
            Ok(eq.map(|b| b != *n))
        }
        R::IsNull(x, n) => Ok(Some(matches!(eval(x, p)?, V::Null) != *n)),
        R::Cmp(op, x, y) => cmp_node(op, x, y, p),
        R::Between(x, lo, hi, false) => java_and(cmp_node(">=", x, lo, p)?, || cmp_node("<=", x, hi, p)),
        R::Between(x, lo, hi, true) => java_or(cmp_node("<", x, lo, p)?, || cmp_node(">", x, hi, p)),
        R::In(x, list, n) => Ok(match eval(x, p)? {
            V::S(s) => Some(list.contains(&s) != *n),
            _ => None,
        }),
        R::Text(op, x, needle, n) => {
            if needle.is_empty() {
                return Ok(Some(false));
            }
            Ok(Some(match eval(x, p)? {
                V::S(s) => {
                    let hit = match *op {
                        "CONTAINS" => s.contains(needle.as_str()),
                        "STARTSWITH" => s.starts_with(needle.as_str()),
                        _ => s.ends_with(needle.as_str()),
                    };
                    hit != *n
                }
                _ => false,
            }))
        }
    }
}

// ----- strategies ---------------------------------------------------------

fn lit() -> impl Strategy<Value = Lit> {
    prop_oneof![
        1 => select(STRS.to_vec()).prop_map(|s| Lit::S(s.to_string())),
        3 => select(vec![0i64, 1, 2, 5, 10, 3_000_000_000]).prop_map(Lit::I),
        2 => select(vec![0.5, 1.5, 2.0, 10.0, 0.0]).prop_map(Lit::F),
        1 => any::<bool>().prop_map(Lit::B),
        1 => Just(Lit::Null),
    ]
}

fn expr() -> impl Strategy<Value = R> {
    let leaf = prop_oneof![3 => (0..3usize).prop_map(R::Prop), 2 => lit().prop_map(R::Lit)];
    leaf.prop_recursive(4, 32, 3, |inner| {
        let b = move || inner.clone().prop_map(Box::new);
        let strs = || select(STRS.to_vec()).prop_map(str::to_string);
        prop_oneof![
            b().prop_map(R::Neg),
            b().prop_map(R::Not),
            (b(), b()).prop_map(|(x, y)| R::And(x, y)),
            (b(), b()).prop_map(|(x, y)| R::Or(x, y)),
            (b(), b(), any::<bool>()).prop_map(|(x, y, n)| R::Eq(x, y, n)),
            (b(), any::<bool>()).prop_map(|(x, n)| R::IsNull(x, n)),
            (select(vec![">", ">=", "<", "<="]), b(), b()).prop_map(|(o, x, y)| R::Cmp(o, x, y)),
            (b(), b(), b(), any::<bool>()).prop_map(|(x, l, h, n)| R::Between(x, l, h, n)),
            (b(), prop::collection::vec(strs(), 1..4), any::<bool>()).prop_map(|(x, l, n)| R::In(x, l, n)),
            (select(vec!["CONTAINS", "STARTSWITH", "ENDSWITH"]), b(), strs(), any::<bool>())
                .prop_map(|(o, x, s, n)| R::Text(o, x, s, n)),
        ]
    })
}

fn props() -> impl Strategy<Value = [Option<&'static str>; 3]> {
    let one = || prop::option::weighted(0.8, select(VALUES.to_vec()));
    [one(), one(), one()]
}

fn lookup<'p>(p: &'p [Option<&'static str>; 3]) -> impl Fn(&str) -> Option<String> + 'p {
    move |k: &str| PROPS.iter().position(|n| *n == k).and_then(|i| p[i]).map(str::to_string)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn evaluator_matches_reference(r in expr(), p in props()) {
        let text = render(&r);
        let parsed = SqlExpr::parse(&text);
        prop_assert_eq!(parsed.is_ok(), valid(&r) && as_condition(&r), "{} -> {:?}", text, parsed);
        if let Ok(e) = parsed {
            let want = cond(&r, &p);
            let got = super::eval::outcome(&e.root, &lookup(&p));
            prop_assert_eq!(got, want, "{} with {:?}", text, p);
            prop_assert_eq!(e.evaluate(&lookup(&p)), want == Ok(Some(true)));
        }
    }
}

#[test]
fn reference_generator_covers_every_outcome() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (exprs, values) = (expr(), props());
    let total = 4000;
    // valid, TRUE, FALSE, unknown, aborted
    let mut counts = [0usize; 5];
    for _ in 0..total {
        let (Ok(r), Ok(p)) = (exprs.new_tree(&mut runner), values.new_tree(&mut runner)) else {
            continue;
        };
        let (r, p) = (r.current(), p.current());
        if !(valid(&r) && as_condition(&r)) {
            continue;
        }
        counts[0] += 1;
        let slot = match cond(&r, &p) {
            Ok(Some(true)) => 1,
            Ok(Some(false)) => 2,
            Ok(None) => 3,
            Err(()) => 4,
        };
        counts[slot] += 1;
    }
    eprintln!("valid/true/false/unknown/abort of {total}: {counts:?}");
    assert!(counts[0] * 5 > total, "too few valid expressions: {counts:?}");
    assert!(counts[1..].iter().all(|c| c * 20 > counts[0]), "an outcome is rare: {counts:?}");
}
