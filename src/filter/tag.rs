//! TAG subscription expressions and the RocketMQ tag hash.
//!
//! A TAG expression is `"*"` or `""` (everything) or tags separated by `||`.
//! Parts are trimmed the way Java's `String.trim` does (every char up to
//! U+0020) and empty parts are dropped, exactly like RocketMQ's
//! `FilterAPI.buildSubscriptionData`.

use super::Subscription;
use std::collections::HashSet;

/// The subscription string meaning "all tags".
const SUB_ALL: &str = "*";

/// Java `String.hashCode` over UTF-16 code units (32-bit wrapping), sign
/// extended to `i64`: the `tagsCode` RocketMQ stores in the consume queue.
pub fn tag_hash(tag: &str) -> i64 {
    let h = tag.encode_utf16().fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(i32::from(unit)));
    i64::from(h)
}

/// Java `String.trim`: strips every char `<= ' '` from both ends.
fn java_trim(s: &str) -> &str {
    s.trim_matches(|c: char| c <= ' ')
}

/// Parses a TAG expression (never fails, like RocketMQ).
pub(super) fn parse_tag_expression(expression: &str) -> Subscription {
    if expression.is_empty() || expression == SUB_ALL {
        return Subscription::All;
    }
    let mut seen: HashSet<&str> = HashSet::new();
    let tags: Vec<String> = expression
        .split("||")
        .map(java_trim)
        .filter(|part| !part.is_empty() && seen.insert(part))
        .map(str::to_string)
        .collect();
    let codes: HashSet<i64> = tags.iter().map(|t| tag_hash(t)).collect();
    Subscription::Tags { tags, codes }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::FilterError;

    fn tags_of(s: &Subscription) -> Vec<String> {
        match s {
            Subscription::Tags { tags, .. } => tags.clone(),
            other => panic!("not a tag subscription: {other:?}"),
        }
    }

    fn props_with_tag(tag: Option<&'static str>) -> impl Fn(&str) -> Option<String> {
        move |k: &str| {
            if k == "TAGS" { tag.map(str::to_string) } else { None }
        }
    }

    #[test]
    fn hash_matches_java() {
        assert_eq!(tag_hash(""), 0);
        assert_eq!(tag_hash("a"), 97);
        assert_eq!(tag_hash("TagA"), 2_598_919);
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE
        assert_eq!(tag_hash("polygenelubricants"), i64::from(i32::MIN));
        // Overflowing hash is negative: "hello world".hashCode() == 1794106052
        assert_eq!(tag_hash("hello world"), 1_794_106_052);
        assert_eq!(tag_hash("Hello World!"), -969_099_747);
        // Non-BMP chars hash as two UTF-16 units: "😀" = D83D DE00
        assert_eq!(tag_hash("😀"), 0xD83D * 31 + 0xDE00);
    }

    #[test]
    fn star_and_empty_are_all() {
        for (ty, expr) in [(None, "*"), (None, ""), (Some("TAG"), "*"), (Some("tag"), "")] {
            assert!(matches!(Subscription::parse(ty, expr), Ok(Subscription::All)));
        }
    }

    #[test]
    fn tags_are_split_trimmed_and_deduplicated() {
        let s = Subscription::parse(Some("Tag"), " a ||b|| ||a||\tc\n").unwrap();
        assert_eq!(tags_of(&s), vec!["a", "b", "c"]);
        let s = Subscription::parse(None, "a|||b").unwrap();
        assert_eq!(tags_of(&s), vec!["a", "|b"]);
        let s = Subscription::parse(None, " * ").unwrap();
        assert_eq!(tags_of(&s), vec!["*"]);
        let s = Subscription::parse(None, " || ").unwrap();
        assert!(tags_of(&s).is_empty());
        assert!(!s.matches_tag_code(0));
        assert!(!s.matches_message(&props_with_tag(Some(""))));
    }

    #[test]
    fn tag_code_check() {
        let s = Subscription::parse(None, "TagA || TagB").unwrap();
        assert!(s.matches_tag_code(tag_hash("TagA")));
        assert!(s.matches_tag_code(tag_hash("TagB")));
        assert!(!s.matches_tag_code(tag_hash("TagC")));
        // Only the low 32 bits count (Java `tagsCode.intValue()`).
        assert!(s.matches_tag_code(tag_hash("TagA") + (1i64 << 32)));
        assert!(Subscription::All.matches_tag_code(12345));
        let sql = Subscription::parse(Some("SQL92"), "a = 1").unwrap();
        assert!(sql.matches_tag_code(42));
    }

    #[test]
    fn negative_tag_code_check() {
        let s = Subscription::parse(None, "Hello World!").unwrap();
        assert!(s.matches_tag_code(-969_099_747));
        assert!(s.matches_tag_code(-969_099_747 & 0xFFFF_FFFF));
    }

    #[test]
    fn message_check_uses_exact_tags_property() {
        let s = Subscription::parse(None, "TagA || TagB").unwrap();
        assert!(s.matches_message(&props_with_tag(Some("TagA"))));
        assert!(!s.matches_message(&props_with_tag(Some("taga"))));
        assert!(!s.matches_message(&props_with_tag(Some(" TagA"))));
        assert!(!s.matches_message(&props_with_tag(None)));
        assert!(Subscription::All.matches_message(&props_with_tag(None)));
    }

    #[test]
    fn expression_types() {
        assert!(matches!(Subscription::parse(Some("sql92"), "TAGS = 'x'"), Ok(Subscription::Sql(_))));
        assert!(matches!(Subscription::parse(Some("SQL92"), "a ="), Err(FilterError::Syntax { .. })));
        let err = Subscription::parse(Some("CLASS"), "x").unwrap_err();
        assert_eq!(err, FilterError::UnsupportedType("CLASS".into()));
        assert!(err.to_string().contains("unsupported expression type `CLASS`"));
    }

    #[test]
    fn sql_subscription_on_message() {
        let s = Subscription::parse(Some("SQL92"), "TAGS IN ('x', 'y')").unwrap();
        assert!(s.matches_message(&props_with_tag(Some("y"))));
        assert!(!s.matches_message(&props_with_tag(Some("z"))));
        assert!(!s.matches_message(&props_with_tag(None)));
    }
}
