//! Message filtering for consumer subscriptions, compatible with RocketMQ.
//!
//! A subscription is either a TAG expression (`"*"`, `"tagA || tagB"`) or a
//! SQL92 expression evaluated over message properties. The broker uses
//! [`Subscription::matches_tag_code`] for the cheap consume-queue check (by the
//! 32-bit tag hash stored in the queue, see [`tag_hash`]) and
//! [`Subscription::matches_message`] for the full check on a message's
//! properties.
//!
//! ```text
//! let sub = Subscription::parse(None, "TagA || TagB").unwrap();
//! assert!(sub.matches_tag_code(tag_hash("TagA")));
//! let sql = Subscription::parse(Some("SQL92"), "a > 5 AND TAGS = 'TagA'").unwrap();
//! let props = |k: &str| match k {
//!     "a" => Some("7".to_string()),
//!     "TAGS" => Some("TagA".to_string()),
//!     _ => None,
//! };
//! assert!(sql.matches_message(&props));
//! ```

pub mod sql92;
mod tag;

pub use sql92::{MAX_EXPRESSION_LEN, MAX_NESTING, SqlExpr};
pub use tag::tag_hash;

use std::collections::HashSet;

/// Name of the message property holding the message's tag.
pub const TAGS_PROPERTY: &str = "TAGS";

/// Errors raised while parsing a subscription expression.
///
/// Positions are 0-based character offsets into the expression text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FilterError {
    /// The expression type is neither TAG nor SQL92.
    #[error("unsupported expression type `{0}`: expected TAG or SQL92")]
    UnsupportedType(String),
    /// The expression text exceeds [`MAX_EXPRESSION_LEN`] bytes.
    #[error("expression is {len} bytes long, the limit is {max} bytes")]
    TooLong {
        /// Length of the expression in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// A character sequence that is not a valid token.
    #[error("lexical error at position {position}: {message}")]
    Lexical {
        /// Character offset of the offending input.
        position: usize,
        /// What is wrong.
        message: String,
    },
    /// The token stream does not fit the grammar.
    #[error("syntax error at position {position}: expected {expected}, found {found}")]
    Syntax {
        /// Character offset of the unexpected token.
        position: usize,
        /// What the parser expected there.
        expected: String,
        /// What it found instead.
        found: String,
    },
    /// Well-formed syntax that RocketMQ rejects (e.g. `a = NULL`, `a > 'x'`).
    #[error("invalid expression at position {position}: {message}")]
    Invalid {
        /// Character offset of the offending operand or operator.
        position: usize,
        /// What is wrong.
        message: String,
    },
    /// Parentheses/unary operators nested deeper than [`MAX_NESTING`], or an
    /// expression tree deeper than twice that (long `a = 1 = TRUE = ...`
    /// chains).
    #[error("expression nested too deeply at position {position}: the limit is {max} levels")]
    TooDeep {
        /// Character offset where the limit was exceeded.
        position: usize,
        /// The limit that was exceeded.
        max: usize,
    },
}

/// A parsed consumer subscription.
#[derive(Debug, Clone)]
pub enum Subscription {
    /// Everything matches (`"*"` or an empty TAG expression).
    All,
    /// Messages whose tag is one of `tags`; `codes` holds their [`tag_hash`]es.
    Tags {
        /// The tags, trimmed, without empty entries, in expression order.
        tags: Vec<String>,
        /// Tag hashes of `tags`, for the consume-queue check.
        codes: HashSet<i64>,
    },
    /// A SQL92 filter over message properties.
    Sql(SqlExpr),
}

impl Subscription {
    /// Parses a subscription.
    ///
    /// `expression_type` `None`, `""` or `"TAG"` selects a tag expression and
    /// `"SQL92"` a SQL92 expression (both case-insensitive); anything else is
    /// [`FilterError::UnsupportedType`].
    pub fn parse(expression_type: Option<&str>, expression: &str) -> Result<Self, FilterError> {
        match expression_type {
            None => Ok(tag::parse_tag_expression(expression)),
            Some(t) if t.is_empty() || t.eq_ignore_ascii_case("TAG") => Ok(tag::parse_tag_expression(expression)),
            Some(t) if t.eq_ignore_ascii_case("SQL92") => SqlExpr::parse(expression).map(Self::Sql),
            Some(t) => Err(FilterError::UnsupportedType(t.to_string())),
        }
    }

    /// Consume-queue level check by tag hash; SQL subscriptions always pass.
    ///
    /// Like RocketMQ, only the low 32 bits of `tags_code` are compared.
    pub fn matches_tag_code(&self, tags_code: i64) -> bool {
        match self {
            Self::All | Self::Sql(_) => true,
            Self::Tags { codes, .. } => codes.contains(&i64::from(tags_code as i32)),
        }
    }

    /// Full check of a message, given a lookup of its properties by name.
    ///
    /// Tag subscriptions compare the `TAGS` property exactly (a message
    /// without tags matches only [`Subscription::All`]); SQL subscriptions
    /// deliver only when the expression evaluates to TRUE.
    pub fn matches_message(&self, props: &dyn Fn(&str) -> Option<String>) -> bool {
        match self {
            Self::All => true,
            Self::Tags { tags, .. } => props(TAGS_PROPERTY).is_some_and(|t| tags.contains(&t)),
            Self::Sql(expr) => expr.evaluate(props),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_doc_example() {
        let sub = Subscription::parse(None, "TagA || TagB").unwrap();
        assert!(sub.matches_tag_code(tag_hash("TagA")));
        let sql = Subscription::parse(Some("SQL92"), "a > 5 AND TAGS = 'TagA'").unwrap();
        let props = |k: &str| match k {
            "a" => Some("7".to_string()),
            "TAGS" => Some("TagA".to_string()),
            _ => None,
        };
        assert!(sql.matches_message(&props));
        assert!(!sql.matches_message(&|_: &str| None));
    }

    #[test]
    fn errors_display_clearly() {
        let err = FilterError::TooLong { len: 70_000, max: MAX_EXPRESSION_LEN };
        assert_eq!(err.to_string(), "expression is 70000 bytes long, the limit is 65536 bytes");
        let err = Subscription::parse(Some("SQL92"), "a BETWEEN 3 AND 1").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid expression at position 10: BETWEEN lower bound is greater than the upper bound"
        );
    }
}
