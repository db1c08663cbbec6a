//! Java semantics the filter depends on: `Integer.valueOf`, `Long.valueOf`,
//! `Double.valueOf`, `Boolean.valueOf` on strings and `Double.compareTo`.
//!
//! Only ASCII digits are accepted where Java would also take other Unicode
//! decimal digits.

use std::cmp::Ordering;

/// The smallest positive double, Java's `Double.MIN_VALUE`.
const DOUBLE_MIN_VALUE: f64 = 4.9e-324;

/// Exponent magnitude beyond which every value is zero or infinite.
const EXP_SATURATION: i64 = 100_000;

/// Java `Integer.valueOf(String)`; `None` where Java throws.
pub(super) fn parse_int(s: &str) -> Option<i32> {
    s.parse().ok()
}

/// Java `Long.valueOf(String)`; `None` where Java throws.
pub(super) fn parse_long(s: &str) -> Option<i64> {
    s.parse().ok()
}

/// Java `Boolean.valueOf(String)`: true iff equal to "true" ignoring case.
pub(super) fn parse_bool(s: &str) -> bool {
    s.eq_ignore_ascii_case("true")
}

/// Java `Double.valueOf(String)`; `None` where Java throws.
///
/// Accepts surrounding chars `<= ' '`, a sign, `NaN`, `Infinity`, decimal
/// and hexadecimal (`0x1.8p1`) forms and a trailing `f`/`F`/`d`/`D`.
pub(super) fn parse_double(s: &str) -> Option<f64> {
    let t = s.trim_matches(|c: char| c <= ' ');
    let (negative, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let magnitude = match body {
        "NaN" => f64::NAN,
        "Infinity" => f64::INFINITY,
        _ => match body.get(..2) {
            Some("0x" | "0X") => parse_hex(&body[2..])?,
            _ => parse_decimal(body)?,
        },
    };
    Some(if negative { -magnitude } else { magnitude })
}

/// Java `Double.compare`: NaN above everything, `-0.0 < 0.0`.
pub(super) fn double_cmp(a: f64, b: f64) -> Ordering {
    if a < b {
        Ordering::Less
    } else if a > b {
        Ordering::Greater
    } else {
        canonical_bits(a).cmp(&canonical_bits(b))
    }
}

/// Java `Double.doubleToLongBits`: all NaNs collapse to one pattern.
fn canonical_bits(x: f64) -> i64 {
    if x.is_nan() { 0x7ff8_0000_0000_0000 } else { x.to_bits() as i64 }
}

/// Value of a floating-point literal as RocketMQ's `createFloat` accepts it:
/// finite and not below `Double.MIN_VALUE` (so `0.0` is rejected, too).
pub(super) fn double_literal(text: &str) -> Result<f64, String> {
    let value: f64 = text.parse().map_err(|_| format!("malformed number {text}"))?;
    if value > f64::MAX {
        return Err(format!("{text} is greater than 1.7976931348623157E308"));
    }
    if value < DOUBLE_MIN_VALUE {
        return Err(format!("{text} is less than 4.9E-324"));
    }
    Ok(value)
}

/// Counts ASCII digits of `radix` in `b` from `start`.
fn count_digits(b: &[u8], start: usize, radix: u32) -> usize {
    b.get(start..).map_or(0, |rest| rest.iter().take_while(|c| char::from(**c).is_digit(radix)).count())
}

/// Strips one Java type suffix (`f`, `F`, `d`, `D`).
fn strip_type_suffix(s: &str) -> &str {
    s.strip_suffix(['f', 'F', 'd', 'D']).unwrap_or(s)
}

/// Unsigned decimal form: `digits [. digits] [e [+-] digits] [suffix]`.
fn parse_decimal(body: &str) -> Option<f64> {
    let body = strip_type_suffix(body);
    let b = body.as_bytes();
    let int_digits = count_digits(b, 0, 10);
    let mut i = int_digits;
    let mut frac_digits = 0;
    if b.get(i) == Some(&b'.') {
        frac_digits = count_digits(b, i + 1, 10);
        i += 1 + frac_digits;
    }
    if int_digits + frac_digits == 0 {
        return None;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp_digits = count_digits(b, i, 10);
        if exp_digits == 0 {
            return None;
        }
        i += exp_digits;
    }
    if i != b.len() {
        return None;
    }
    body.parse().ok()
}

/// Unsigned hexadecimal form after `0x`: `hex [. hex] p [+-] digits [suffix]`.
fn parse_hex(body: &str) -> Option<f64> {
    let body = strip_type_suffix(body);
    let (mantissa, exponent) = body.split_once(['p', 'P'])?;
    let exponent = parse_exponent(exponent)?;
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits_ok = |s: &str| count_digits(s.as_bytes(), 0, 16) == s.len();
    if int.len() + frac.len() == 0 || !digits_ok(int) || !digits_ok(frac) {
        return None;
    }
    let frac_len = i64::try_from(frac.len()).ok()?;
    let (m, skipped) = hex_mantissa(int.chars().chain(frac.chars()));
    Some(scale_by_pow2(m as f64, exponent + 4 * (skipped - frac_len)))
}

/// Accumulates up to 15 significant hex digits; later non-zero digits set
/// a sticky low bit so that the conversion to `f64` still rounds correctly.
/// Returns the mantissa and how many digits were left out.
fn hex_mantissa(digits: impl Iterator<Item = char>) -> (u64, i64) {
    let (mut m, mut significant, mut skipped, mut sticky) = (0u64, 0, 0i64, false);
    for d in digits.filter_map(|c| c.to_digit(16)) {
        if m == 0 && d == 0 {
            continue;
        }
        if significant < 15 {
            m = m * 16 + u64::from(d);
            significant += 1;
        } else {
            skipped += 1;
            sticky |= d != 0;
        }
    }
    (m | u64::from(sticky), skipped)
}

/// Decimal exponent `[+-] digits`, saturated far beyond the double range.
fn parse_exponent(s: &str) -> Option<i64> {
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || count_digits(digits.as_bytes(), 0, 10) != digits.len() {
        return None;
    }
    let value = digits.bytes().fold(0i64, |acc, c| (acc * 10 + i64::from(c - b'0')).min(EXP_SATURATION));
    Some(if negative { -value } else { value })
}

/// `x * 2^e` without intermediate overflow of the power.
fn scale_by_pow2(mut x: f64, mut e: i64) -> f64 {
    const STEP: i32 = 1000;
    while e > i64::from(STEP) && x.is_finite() && x != 0.0 {
        x *= 2f64.powi(STEP);
        e -= i64::from(STEP);
    }
    while e < -i64::from(STEP) && x != 0.0 {
        x *= 2f64.powi(-STEP);
        e += i64::from(STEP);
    }
    let e = i32::try_from(e.clamp(-2000, 2000)).unwrap_or(0);
    x * 2f64.powi(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_like_java() {
        assert_eq!(parse_int("+42"), Some(42));
        assert_eq!(parse_int("-0"), Some(0));
        assert_eq!(parse_int("2147483648"), None);
        assert_eq!(parse_int(" 1"), None);
        assert_eq!(parse_int("1.0"), None);
        assert_eq!(parse_int(""), None);
        assert_eq!(parse_long("2147483648"), Some(2_147_483_648));
        assert_eq!(parse_long("9223372036854775808"), None);
    }

    #[test]
    fn doubles_like_java() {
        let ok = [
            ("1.5", 1.5),
            (" 1.5\t", 1.5),
            ("-.5", -0.5),
            ("5.", 5.0),
            ("1e3", 1000.0),
            ("1E+3d", 1000.0),
            ("2f", 2.0),
            ("+Infinity", f64::INFINITY),
            ("0x1.8p1", 3.0),
            ("0X.8P-1", 0.25),
            ("0x10p0", 16.0),
            ("1e400", f64::INFINITY),
        ];
        for (s, v) in ok {
            assert_eq!(parse_double(s), Some(v), "{s}");
        }
        assert!(parse_double("NaN").is_some_and(f64::is_nan));
        for bad in ["", ".", "e5", "1e", "inf", "nan", "infinity", "1.5x", "0x1.8", "0xp1", "1_0", "- 1"] {
            assert_eq!(parse_double(bad), None, "{bad}");
        }
    }

    #[test]
    fn hex_rounding_with_many_digits() {
        assert_eq!(parse_double("0x1.00000000000008p0"), Some(1.0));
        assert_eq!(parse_double("0x1.000000000000080001p0"), Some(1.0 + f64::EPSILON));
        assert_eq!(parse_double("0x0001p-1074"), Some(4.9e-324));
        assert_eq!(parse_double("0x1p99999999999"), Some(f64::INFINITY));
    }

    #[test]
    fn double_compare_like_java() {
        assert_eq!(double_cmp(f64::NAN, f64::INFINITY), Ordering::Greater);
        assert_eq!(double_cmp(f64::NAN, -f64::NAN), Ordering::Equal);
        assert_eq!(double_cmp(-0.0, 0.0), Ordering::Less);
        assert_eq!(double_cmp(1.0, 2.0), Ordering::Less);
    }

    #[test]
    fn float_literal_range() {
        assert_eq!(double_literal("1.5"), Ok(1.5));
        assert!(double_literal("0.0").is_err());
        assert!(double_literal("1e-400").is_err());
        assert!(double_literal("1e400").is_err());
    }

    #[test]
    fn booleans_like_java() {
        assert!(parse_bool("TrUe"));
        assert!(!parse_bool("yes"));
        assert!(!parse_bool(" true"));
    }
}
