//! Evaluation with RocketMQ's three-valued logic and Java type coercion.
//!
//! Values are Java's: property values are strings, literals are `Integer`,
//! `Long`, `Double`, `String` or `Boolean`; `None` is SQL NULL (unknown).
//! Where RocketMQ throws during evaluation (a property that does not parse as
//! the literal's type, a boolean compared with a string on its right), the
//! evaluation aborts and the message is not matched, whatever surrounds the
//! failing operand. Operands are evaluated in RocketMQ's order, with its
//! short-circuits, so that the same operands can abort.

use super::java::{double_cmp, parse_bool, parse_double, parse_int, parse_long};
use super::{CmpOp, Expr, Literal, TextOp};
use std::borrow::Cow;
use std::cmp::Ordering;

/// RocketMQ threw while evaluating: the message does not match.
#[derive(Debug)]
struct Abort;

/// A non-null runtime value.
#[derive(Debug, Clone)]
enum Scalar<'a> {
    Str(Cow<'a, str>),
    Int(i32),
    Long(i64),
    Double(f64),
    Bool(bool),
}

type Value<'a> = Option<Scalar<'a>>;
type Truth = Option<bool>;
type Eval<T> = Result<T, Abort>;
type Props<'p> = &'p dyn Fn(&str) -> Option<String>;

/// True only if `root` evaluates to exactly TRUE.
pub(super) fn matches(root: &Expr, props: Props<'_>) -> bool {
    matches!(truth(root, props), Ok(Some(true)))
}

/// `hi < lo` for two literals, as RocketMQ's BETWEEN check computes it; a
/// comparison Java would throw on counts as out of order.
pub(super) fn literal_less(hi: &Literal, lo: &Literal) -> bool {
    match (literal_value(hi), literal_value(lo)) {
        (Some(h), Some(l)) => compare(&h, &l).map_or(true, |o| o == Ordering::Less),
        _ => true,
    }
}

fn literal_value(lit: &Literal) -> Value<'_> {
    match lit {
        Literal::Str(s) => Some(Scalar::Str(Cow::Borrowed(s))),
        Literal::Int(i) => Some(Scalar::Int(*i)),
        Literal::Long(l) => Some(Scalar::Long(*l)),
        Literal::Double(d) => Some(Scalar::Double(*d)),
        Literal::Bool(b) => Some(Scalar::Bool(*b)),
        Literal::Null => None,
    }
}

/// Value of any expression.
fn value<'e>(e: &'e Expr, props: Props<'_>) -> Eval<Value<'e>> {
    match e {
        Expr::Const(lit) => Ok(literal_value(lit)),
        Expr::Prop(name) => Ok(props(name).map(|s| Scalar::Str(Cow::Owned(s)))),
        Expr::Negate(inner) => Ok(negate(value(inner, props)?)),
        _ => Ok(truth(e, props)?.map(Scalar::Bool)),
    }
}

/// Value of a boolean expression.
fn truth(e: &Expr, props: Props<'_>) -> Eval<Truth> {
    match e {
        Expr::Const(Literal::Bool(b)) => Ok(Some(*b)),
        Expr::Const(Literal::Null) => Ok(None),
        // The parser never lets these reach a boolean position.
        Expr::Const(_) | Expr::Prop(_) | Expr::Negate(_) => Err(Abort),
        Expr::Not(inner) => Ok(truth(inner, props)?.map(|b| !b)),
        Expr::BoolCast(inner) => Ok(value(inner, props)?.map(|v| matches!(v, Scalar::Bool(true)))),
        Expr::And(items) => all(items.iter().map(|i| truth(i, props))),
        Expr::Or(items) => any(items.iter().map(|i| truth(i, props))),
        Expr::Equal { left, right, negated } => {
            let (l, r) = (value(left, props)?, value(right, props)?);
            Ok(equal(l, r)?.map(|b| b ^ negated))
        }
        Expr::IsNull { operand, negated } => Ok(Some(value(operand, props)?.is_none() ^ negated)),
        Expr::Compare { op, left, right } => compare_exprs(*op, left, right, props),
        Expr::Between { value: v, low, high, negated } => between(v, low, high, *negated, props),
        Expr::In { property, list, negated } => Ok(props(property).map(|s| list.binary_search(&s).is_ok() ^ negated)),
        Expr::Text { op, operand, needle, negated } => text(*op, operand, needle, *negated, props),
    }
}

/// AND over operands evaluated in order: FALSE wins, then unknown.
fn all(items: impl Iterator<Item = Eval<Truth>>) -> Eval<Truth> {
    let mut unknown = false;
    for item in items {
        match item? {
            Some(false) => return Ok(Some(false)),
            None => unknown = true,
            Some(true) => {}
        }
    }
    Ok(if unknown { None } else { Some(true) })
}

/// OR over operands evaluated in order: TRUE wins, then unknown.
fn any(items: impl Iterator<Item = Eval<Truth>>) -> Eval<Truth> {
    let mut unknown = false;
    for item in items {
        match item? {
            Some(true) => return Ok(Some(true)),
            None => unknown = true,
            Some(false) => {}
        }
    }
    Ok(if unknown { None } else { Some(false) })
}

/// Unary minus; non-numbers become NULL. Java integer negation wraps.
fn negate(v: Value<'_>) -> Value<'_> {
    match v? {
        Scalar::Int(i) => Some(Scalar::Int(i.wrapping_neg())),
        Scalar::Long(l) => Some(Scalar::Long(l.wrapping_neg())),
        Scalar::Double(d) => Some(Scalar::Double(-d)),
        Scalar::Str(_) | Scalar::Bool(_) => None,
    }
}

/// `=`: NULL on the left only is unknown, on the right only FALSE; two NULLs
/// are equal (Java's `lv == rv`).
fn equal(l: Value<'_>, r: Value<'_>) -> Eval<Truth> {
    match (l, r) {
        (None, None) => Ok(Some(true)),
        (None, Some(_)) => Ok(None),
        (Some(_), None) => Ok(Some(false)),
        (Some(l), Some(r)) => Ok(Some(compare(&l, &r)? == Ordering::Equal)),
    }
}

/// RocketMQ's `__compare` with string conversion on: the right-hand (or
/// string) side is converted to the other's type. Pairs it cannot convert
/// compare as "less" (Java returns -1).
fn compare(l: &Scalar<'_>, r: &Scalar<'_>) -> Eval<Ordering> {
    use Scalar::{Bool, Double, Int, Long, Str};
    let ord = match (l, r) {
        (Str(a), Str(b)) => a.encode_utf16().cmp(b.encode_utf16()),
        (Int(a), Int(b)) => a.cmp(b),
        (Long(a), Long(b)) => a.cmp(b),
        (Double(a), Double(b)) => double_cmp(*a, *b),
        (Bool(a), Bool(b)) => a.cmp(b),
        (Int(a), Long(b)) => i64::from(*a).cmp(b),
        (Int(a), Double(b)) => double_cmp(f64::from(*a), *b),
        (Long(a), Int(b)) => a.cmp(&i64::from(*b)),
        (Long(a), Double(b)) => double_cmp(*a as f64, *b),
        (Double(a), Int(b)) => double_cmp(*a, f64::from(*b)),
        (Double(a), Long(b)) => double_cmp(*a, *b as f64),
        (Int(a), Str(b)) => a.cmp(&parse_int(b).ok_or(Abort)?),
        (Long(a), Str(b)) => a.cmp(&parse_long(b).ok_or(Abort)?),
        (Double(a), Str(b)) => double_cmp(*a, parse_double(b).ok_or(Abort)?),
        (Str(a), Int(b)) => parse_int(a).ok_or(Abort)?.cmp(b),
        (Str(a), Long(b)) => parse_long(a).ok_or(Abort)?.cmp(b),
        (Str(a), Double(b)) => double_cmp(parse_double(a).ok_or(Abort)?, *b),
        (Str(a), Bool(b)) => parse_bool(a).cmp(b),
        // RocketMQ casts the Boolean itself to String here and throws.
        (Bool(_), Str(_)) => return Err(Abort),
        (Bool(_), Int(_) | Long(_) | Double(_)) | (Int(_) | Long(_) | Double(_), Bool(_)) => Ordering::Less,
    };
    Ok(ord)
}

/// `>`, `>=`, `<`, `<=` on two non-null values; two strings are both
/// parsed as doubles.
fn ordered(op: CmpOp, l: &Scalar<'_>, r: &Scalar<'_>) -> Eval<bool> {
    let ord = match (l, r) {
        (Scalar::Str(a), Scalar::Str(b)) => {
            let a = parse_double(a).ok_or(Abort)?;
            double_cmp(a, parse_double(b).ok_or(Abort)?)
        }
        _ => compare(l, r)?,
    };
    Ok(match op {
        CmpOp::Gt => ord == Ordering::Greater,
        CmpOp::Ge => ord != Ordering::Less,
        CmpOp::Lt => ord == Ordering::Less,
        CmpOp::Le => ord != Ordering::Greater,
    })
}

/// Compares `x` (already evaluated) with `other`; the right side is not
/// evaluated when `x` is NULL, as in RocketMQ.
fn ordered_with(op: CmpOp, x: &Value<'_>, other: &Expr, props: Props<'_>) -> Eval<Truth> {
    let Some(x) = x else {
        return Ok(None);
    };
    let Some(o) = value(other, props)? else {
        return Ok(None);
    };
    ordered(op, x, &o).map(Some)
}

fn compare_exprs(op: CmpOp, left: &Expr, right: &Expr, props: Props<'_>) -> Eval<Truth> {
    let l = value(left, props)?;
    ordered_with(op, &l, right, props)
}

/// `x BETWEEN lo AND hi` is `x >= lo AND x <= hi`; `NOT BETWEEN` is
/// `x < lo OR x > hi`. `x` is evaluated once (evaluation is pure).
fn between(x: &Expr, lo: &Expr, hi: &Expr, negated: bool, props: Props<'_>) -> Eval<Truth> {
    let x = value(x, props)?;
    if negated {
        let parts = [(CmpOp::Lt, lo), (CmpOp::Gt, hi)];
        any(parts.into_iter().map(|(op, b)| ordered_with(op, &x, b, props)))
    } else {
        let parts = [(CmpOp::Ge, lo), (CmpOp::Le, hi)];
        all(parts.into_iter().map(|(op, b)| ordered_with(op, &x, b, props)))
    }
}

/// CONTAINS/STARTSWITH/ENDSWITH: an empty needle, NULL or a non-string is
/// FALSE (never unknown), negated or not.
fn text(op: TextOp, operand: &Expr, needle: &str, negated: bool, props: Props<'_>) -> Eval<Truth> {
    if needle.is_empty() {
        return Ok(Some(false));
    }
    let hit = match value(operand, props)? {
        Some(Scalar::Str(s)) => {
            let found = match op {
                TextOp::Contains => s.contains(needle),
                TextOp::StartsWith => s.starts_with(needle),
                TextOp::EndsWith => s.ends_with(needle),
            };
            found ^ negated
        }
        _ => false,
    };
    Ok(Some(hit))
}

/// Full three-valued outcome (`Err` where RocketMQ throws), for tests.
#[cfg(test)]
pub(super) fn outcome(root: &Expr, props: Props<'_>) -> Result<Option<bool>, ()> {
    truth(root, props).map_err(drop)
}
