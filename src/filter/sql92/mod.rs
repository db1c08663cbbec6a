//! RocketMQ-compatible SQL92 message filter.
//!
//! The grammar, type rules and three-valued logic follow RocketMQ's
//! `SelectorParser`/`ComparisonExpression` (derived from ActiveMQ):
//!
//! * keywords are case-insensitive, property names case-sensitive;
//! * precedence, low to high: `OR`, `AND`, equality (`=`, `<>`, `IS [NOT]
//!   NULL`), comparison (`>`, `>=`, `<`, `<=`, `[NOT] BETWEEN`, `[NOT] IN`,
//!   `[NOT] CONTAINS|STARTSWITH|ENDSWITH`), unary (`+`, `-`, `NOT`), primary;
//! * an absent property is NULL (unknown); only an exact TRUE delivers;
//! * property values are strings, converted to the other operand's type when
//!   compared; a failed conversion rejects the whole message.
//!
//! Like RocketMQ's parser, tokens after a complete expression are not
//! required to be consumed: `a = 1 )` parses as `a = 1`.
//!
//! `lexer` turns text into tokens, `parser` builds an `Expr` tree and
//! applies RocketMQ's parse-time checks, `eval` evaluates it and `java`
//! reproduces Java's number parsing and comparison.

mod eval;
mod java;
mod lexer;
mod parser;

#[cfg(test)]
mod eval_tests;
#[cfg(test)]
mod reference_tests;
#[cfg(test)]
mod tests;

use super::FilterError;

/// Maximum accepted expression length, in bytes.
pub const MAX_EXPRESSION_LEN: usize = 64 * 1024;

/// Maximum nesting of parentheses and unary operators.
pub const MAX_NESTING: usize = 64;

/// Maximum depth of the parsed expression tree (chains such as
/// `a = 1 = TRUE = ...` deepen the tree without nesting).
const MAX_TREE_DEPTH: usize = 2 * MAX_NESTING;

/// A constant value of the expression language.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Literal {
    /// A string literal, quotes removed.
    Str(String),
    /// An integer literal that fits 32 bits (Java `Integer`).
    Int(i32),
    /// An integer literal that needs 64 bits (Java `Long`).
    Long(i64),
    /// A floating-point literal (Java `Double`).
    Double(f64),
    /// `TRUE` or `FALSE`.
    Bool(bool),
    /// `NULL`.
    Null,
}

/// Comparison operators `>`, `>=`, `<`, `<=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Gt,
    Ge,
    Lt,
    Le,
}

/// String tests `CONTAINS`, `STARTSWITH`, `ENDSWITH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TextOp {
    Contains,
    StartsWith,
    EndsWith,
}

/// The parsed expression tree.
#[derive(Debug, Clone)]
pub(crate) enum Expr {
    /// A literal.
    Const(Literal),
    /// A message property, looked up by exact name.
    Prop(String),
    /// Unary minus (non-numbers become NULL).
    Negate(Box<Expr>),
    /// Logical NOT of a boolean expression.
    Not(Box<Expr>),
    /// A property used where a boolean is needed (strings are FALSE).
    BoolCast(Box<Expr>),
    /// `AND` of two or more operands, evaluated left to right.
    And(Vec<Expr>),
    /// `OR` of two or more operands, evaluated left to right.
    Or(Vec<Expr>),
    /// `=` (or `<>` when `negated`).
    Equal { left: Box<Expr>, right: Box<Expr>, negated: bool },
    /// `IS NULL` (or `IS NOT NULL` when `negated`).
    IsNull { operand: Box<Expr>, negated: bool },
    /// `>`, `>=`, `<`, `<=`.
    Compare { op: CmpOp, left: Box<Expr>, right: Box<Expr> },
    /// `BETWEEN low AND high` (or `NOT BETWEEN` when `negated`).
    Between { value: Box<Expr>, low: Box<Expr>, high: Box<Expr>, negated: bool },
    /// `property [NOT] IN ('a', ...)`.
    In { property: String, list: Vec<String>, negated: bool },
    /// `[NOT] CONTAINS|STARTSWITH|ENDSWITH 'needle'`.
    Text { op: TextOp, operand: Box<Expr>, needle: String, negated: bool },
}

/// A compiled SQL92 filter expression.
#[derive(Debug, Clone)]
pub struct SqlExpr {
    source: String,
    root: Expr,
}

impl SqlExpr {
    /// Parses `s`, applying RocketMQ's parse-time checks.
    pub fn parse(s: &str) -> Result<Self, FilterError> {
        let root = parser::parse(s)?;
        Ok(Self { source: s.to_string(), root })
    }

    /// Evaluates the filter against a message's properties; `true` only if
    /// the result is exactly TRUE (unknown and conversion failures are not).
    pub fn evaluate(&self, props: &dyn Fn(&str) -> Option<String>) -> bool {
        eval::matches(&self.root, props)
    }

    /// The expression text this filter was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// The fuzz target's body (`fuzz/fuzz_targets/sql92_parse.rs`), shared with a unit test that replays
/// the committed corpus: parsing must return, and a parsed filter must evaluate against properties
/// that are absent, numeric, textual and boolean without panicking.
#[doc(hidden)]
pub fn check_input(s: &str) {
    let Ok(expr) = SqlExpr::parse(s) else { return };
    type Props<'a> = &'a dyn Fn(&str) -> Option<String>;
    let samples: [Props; 4] = [&|_| None, &|k| Some(k.len().to_string()), &|k| Some(format!("{k}'x")), &|k| {
        Some(if k.len() % 2 == 0 { "TRUE".into() } else { "-9.5e300".into() })
    }];
    for props in samples {
        let _ = expr.evaluate(props);
    }
}

impl std::fmt::Display for SqlExpr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.source)
    }
}
