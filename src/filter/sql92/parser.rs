//! Recursive-descent parser mirroring RocketMQ's `SelectorParser.jj`, with
//! the parse-time checks of `ComparisonExpression` and `ConstantExpression`:
//!
//! * `=`/`<>` reject a `NULL` literal operand, and `TRUE`/`FALSE`/`NULL` on
//!   the left of another non-boolean literal;
//! * `>`, `>=`, `<`, `<=` and `BETWEEN` reject string, boolean and `NULL`
//!   literals and boolean sub-expressions as operands;
//! * `BETWEEN` (but not `NOT BETWEEN`) with literal bounds rejects
//!   `low > high`;
//! * `IN` needs a property on its left;
//! * `AND`, `OR`, `NOT` and the whole expression need boolean operands (a
//!   bare property is cast: non-boolean values count as FALSE).
//!
//! Recursion is bounded by [`MAX_NESTING`]; values passed between the
//! recursive functions are kept small (boxed) so that each level needs
//! little stack, even in unoptimised builds.

use super::lexer::{Keyword, Lexer, Punct, Tok, Token, char_position, keyword_text};
use super::{CmpOp, Expr, FilterError, Literal, MAX_EXPRESSION_LEN, MAX_NESTING, MAX_TREE_DEPTH, TextOp};
use std::collections::VecDeque;

type PResult<T> = Result<T, Box<FilterError>>;

/// Parses a complete filter expression.
pub(super) fn parse(src: &str) -> Result<Expr, FilterError> {
    if src.len() > MAX_EXPRESSION_LEN {
        return Err(FilterError::TooLong { len: src.len(), max: MAX_EXPRESSION_LEN });
    }
    let mut parser = Parser { src, lexer: Lexer::new(src), ahead: VecDeque::new(), nesting: 0 };
    let root = parser.or_expr().and_then(|node| parser.as_boolean(node));
    root.map(|node| *node.expr).map_err(|e| *e)
}

/// A parsed sub-expression with its tree depth and source offset.
struct Node {
    expr: Box<Expr>,
    depth: usize,
    offset: usize,
}

/// What the grammar needs to know about a token to choose a rule.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Keyword(Keyword),
    Punct(Punct),
    Other,
}

struct Parser<'a> {
    src: &'a str,
    lexer: Lexer<'a>,
    ahead: VecDeque<Token>,
    nesting: usize,
}

impl Parser<'_> {
    /// Makes sure `n + 1` tokens are buffered and returns the offset of the
    /// `n`-th (tokens are lexed lazily, as RocketMQ does).
    fn fill(&mut self, n: usize) -> PResult<usize> {
        while self.ahead.len() <= n {
            let token = self.lexer.next_token()?;
            self.ahead.push_back(token);
        }
        Ok(self.ahead.get(n).map_or(0, |t| t.offset))
    }

    fn kind(&mut self, n: usize) -> PResult<Kind> {
        self.fill(n)?;
        Ok(match self.ahead.get(n).map(|t| &t.tok) {
            Some(Tok::Keyword(k)) => Kind::Keyword(*k),
            Some(Tok::Punct(p)) => Kind::Punct(*p),
            _ => Kind::Other,
        })
    }

    fn bump(&mut self) -> PResult<Token> {
        let offset = self.fill(0)?;
        let token = self.ahead.pop_front();
        token.ok_or_else(|| self.invalid(offset, "unexpected end of tokens"))
    }

    fn expect(&mut self, want: Tok, expected: &str) -> PResult<()> {
        let token = self.bump()?;
        if token.tok == want {
            return Ok(());
        }
        Err(self.syntax(&token, expected))
    }

    fn expect_string(&mut self, after: &str) -> PResult<String> {
        let token = self.bump()?;
        match token.tok {
            Tok::Str(s) => Ok(s),
            _ => Err(self.syntax(&token, &format!("a string literal after {after}"))),
        }
    }

    fn syntax(&self, found: &Token, expected: &str) -> Box<FilterError> {
        Box::new(FilterError::Syntax {
            position: char_position(self.src, found.offset),
            expected: expected.to_string(),
            found: found.tok.to_string(),
        })
    }

    fn invalid(&self, offset: usize, message: impl Into<String>) -> Box<FilterError> {
        Box::new(FilterError::Invalid { position: char_position(self.src, offset), message: message.into() })
    }

    fn too_deep(&self, offset: usize, max: usize) -> Box<FilterError> {
        Box::new(FilterError::TooDeep { position: char_position(self.src, offset), max })
    }

    /// A node one level above `children`, unless that is too deep.
    fn node(&self, expr: Expr, children: &[usize], offset: usize) -> PResult<Node> {
        let depth = 1 + children.iter().copied().max().unwrap_or(0);
        self.checked(expr, depth, offset)
    }

    fn checked(&self, expr: Expr, depth: usize, offset: usize) -> PResult<Node> {
        if depth > MAX_TREE_DEPTH {
            return Err(self.too_deep(offset, MAX_TREE_DEPTH));
        }
        let expr = Box::new(expr);
        Ok(Node { expr, depth, offset })
    }

    /// Runs `f` one nesting level deeper (parentheses, unary operators).
    fn nested(&mut self, offset: usize, f: fn(&mut Self) -> PResult<Node>) -> PResult<Node> {
        if self.nesting >= MAX_NESTING {
            return Err(self.too_deep(offset, MAX_NESTING));
        }
        self.nesting += 1;
        let result = f(self);
        self.nesting -= 1;
        result
    }

    /// `and_expr (OR and_expr)*`
    fn or_expr(&mut self) -> PResult<Node> {
        let mut left = self.and_expr()?;
        while self.kind(0)? == Kind::Keyword(Keyword::Or) {
            self.bump()?;
            let right = self.and_expr()?;
            left = self.logic(left, right, false)?;
        }
        Ok(left)
    }

    /// `equality (AND equality)*`
    fn and_expr(&mut self) -> PResult<Node> {
        let mut left = self.equality()?;
        while self.kind(0)? == Kind::Keyword(Keyword::And) {
            self.bump()?;
            let right = self.equality()?;
            left = self.logic(left, right, true)?;
        }
        Ok(left)
    }

    /// Builds a flattened AND/OR (evaluation order is unchanged); merged
    /// operands do not deepen the tree.
    fn logic(&self, left: Node, right: Node, is_and: bool) -> PResult<Node> {
        let offset = left.offset;
        let (left, right) = (self.as_boolean(left)?, self.as_boolean(right)?);
        let mut items = Vec::new();
        let mut depth = 0;
        for operand in [left, right] {
            match *operand.expr {
                Expr::And(inner) if is_and => items.extend(inner),
                Expr::Or(inner) if !is_and => items.extend(inner),
                other => {
                    items.push(other);
                    depth = depth.max(operand.depth + 1);
                    continue;
                }
            }
            depth = depth.max(operand.depth);
        }
        let expr = if is_and { Expr::And(items) } else { Expr::Or(items) };
        self.checked(expr, depth, offset)
    }

    /// `comparison (= comparison | <> comparison | IS [NOT] NULL)*`
    fn equality(&mut self) -> PResult<Node> {
        let mut left = self.comparison()?;
        loop {
            left = match self.kind(0)? {
                Kind::Punct(p @ (Punct::Eq | Punct::Ne)) => self.equal(left, p == Punct::Ne)?,
                Kind::Keyword(Keyword::Is) => self.is_null(left)?,
                _ => return Ok(left),
            };
        }
    }

    fn equal(&mut self, left: Node, negated: bool) -> PResult<Node> {
        let op = self.bump()?.offset;
        let right = self.comparison()?;
        for side in [&left, &right] {
            if matches!(*side.expr, Expr::Const(Literal::Null)) {
                let msg = "NULL cannot be compared with = or <>; use IS [NOT] NULL";
                return Err(self.invalid(side.offset, msg));
            }
        }
        if let (Expr::Const(Literal::Bool(_)), Expr::Const(r)) = (&*left.expr, &*right.expr)
            && !matches!(r, Literal::Bool(_))
        {
            let msg = "a boolean literal cannot be compared with a non-boolean literal";
            return Err(self.invalid(op, msg));
        }
        let depths = [left.depth, right.depth];
        let (offset, left, right) = (left.offset, left.expr, right.expr);
        let expr = Expr::Equal { left, right, negated };
        self.node(expr, &depths, offset)
    }

    fn is_null(&mut self, left: Node) -> PResult<Node> {
        self.bump()?;
        let negated = self.kind(0)? == Kind::Keyword(Keyword::Not);
        if negated {
            self.bump()?;
        }
        let expected = if negated { "NULL after IS NOT" } else { "NULL or NOT NULL after IS" };
        self.expect(Tok::Keyword(Keyword::Null), expected)?;
        let depths = [left.depth];
        let (offset, operand) = (left.offset, left.expr);
        self.node(Expr::IsNull { operand, negated }, &depths, offset)
    }

    /// `unary ( (> | >= | < | <=) unary | [NOT] (BETWEEN .. | IN .. | CONTAINS ..) )*`
    fn comparison(&mut self) -> PResult<Node> {
        let mut left = self.unary()?;
        loop {
            let negated = self.kind(0)? == Kind::Keyword(Keyword::Not);
            let op = self.kind(usize::from(negated))?;
            left = match op {
                Kind::Punct(p @ (Punct::Gt | Punct::Ge | Punct::Lt | Punct::Le)) if !negated => {
                    self.compare(left, p)?
                }
                Kind::Keyword(
                    k @ (Keyword::Contains | Keyword::StartsWith | Keyword::EndsWith | Keyword::Between | Keyword::In),
                ) => {
                    if negated {
                        self.bump()?;
                    }
                    self.bump()?;
                    self.keyword_comparison(left, k, negated)?
                }
                _ if negated => return Err(self.not_without_operator()),
                _ => return Ok(left),
            };
        }
    }

    fn not_without_operator(&mut self) -> Box<FilterError> {
        let expected = "CONTAINS, STARTSWITH, ENDSWITH, BETWEEN or IN after NOT";
        match self.ahead.get(1) {
            Some(token) => self.syntax(token, expected),
            None => self.invalid(0, expected),
        }
    }

    fn keyword_comparison(&mut self, left: Node, k: Keyword, negated: bool) -> PResult<Node> {
        match k {
            Keyword::Between => self.between(left, negated),
            Keyword::In => self.in_list(left, negated),
            Keyword::Contains => self.text(left, TextOp::Contains, k, negated),
            Keyword::StartsWith => self.text(left, TextOp::StartsWith, k, negated),
            _ => self.text(left, TextOp::EndsWith, k, negated),
        }
    }

    fn compare(&mut self, left: Node, p: Punct) -> PResult<Node> {
        self.bump()?;
        let right = self.unary()?;
        self.check_ordered_operand(&left)?;
        self.check_ordered_operand(&right)?;
        let op = match p {
            Punct::Gt => CmpOp::Gt,
            Punct::Ge => CmpOp::Ge,
            Punct::Lt => CmpOp::Lt,
            _ => CmpOp::Le,
        };
        let depths = [left.depth, right.depth];
        let (offset, left, right) = (left.offset, left.expr, right.expr);
        self.node(Expr::Compare { op, left, right }, &depths, offset)
    }

    /// Rejects operands RocketMQ's `checkLessThanOperand` refuses.
    fn check_ordered_operand(&self, node: &Node) -> PResult<()> {
        let bad = match &*node.expr {
            Expr::Const(Literal::Int(_) | Literal::Long(_) | Literal::Double(_)) => false,
            Expr::Const(_) => true,
            e => is_boolean(e),
        };
        if bad {
            let msg = "only numbers and properties can be compared with >, >=, <, <= or BETWEEN";
            return Err(self.invalid(node.offset, msg));
        }
        Ok(())
    }

    fn text(&mut self, left: Node, op: TextOp, k: Keyword, negated: bool) -> PResult<Node> {
        let needle = self.expect_string(keyword_text(k))?;
        let depths = [left.depth];
        let (offset, operand) = (left.offset, left.expr);
        let expr = Expr::Text { op, operand, needle, negated };
        self.node(expr, &depths, offset)
    }

    fn between(&mut self, value: Node, negated: bool) -> PResult<Node> {
        let low = self.unary()?;
        self.expect(Tok::Keyword(Keyword::And), "AND")?;
        let high = self.unary()?;
        if !negated {
            // RocketMQ checks literal bounds of BETWEEN only, not NOT BETWEEN.
            self.check_between_bounds(&low, &high)?;
        }
        for operand in [&value, &low, &high] {
            self.check_ordered_operand(operand)?;
        }
        let depths = [value.depth, low.depth, high.depth];
        let offset = value.offset;
        let expr = Expr::Between { value: value.expr, low: low.expr, high: high.expr, negated };
        self.node(expr, &depths, offset)
    }

    /// RocketMQ's `createBetween` check on literal bounds.
    fn check_between_bounds(&self, low: &Node, high: &Node) -> PResult<()> {
        let (Expr::Const(lo), Expr::Const(hi)) = (&*low.expr, &*high.expr) else {
            return Ok(());
        };
        if *lo == Literal::Null || *hi == Literal::Null {
            return Err(self.invalid(low.offset, "BETWEEN bounds cannot be NULL"));
        }
        if super::eval::literal_less(hi, lo) {
            let msg = "BETWEEN lower bound is greater than the upper bound";
            return Err(self.invalid(low.offset, msg));
        }
        Ok(())
    }

    fn in_list(&mut self, left: Node, negated: bool) -> PResult<Node> {
        self.expect(Tok::Punct(Punct::LParen), "`(` after IN")?;
        let mut list = vec![self.expect_string("IN (")?];
        while self.kind(0)? == Kind::Punct(Punct::Comma) {
            self.bump()?;
            list.push(self.expect_string("`,` in an IN list")?);
        }
        self.expect(Tok::Punct(Punct::RParen), "`,` or `)` in an IN list")?;
        let Expr::Prop(property) = *left.expr else {
            return Err(self.invalid(left.offset, "IN needs a property name on its left"));
        };
        list.sort_unstable();
        list.dedup();
        let expr = Expr::In { property, list, negated };
        self.node(expr, &[left.depth], left.offset)
    }

    /// `+ unary | - unary | NOT unary | primary`
    fn unary(&mut self) -> PResult<Node> {
        let offset = self.fill(0)?;
        let kind = self.kind(0)?;
        if !matches!(kind, Kind::Punct(Punct::Plus | Punct::Minus) | Kind::Keyword(Keyword::Not)) {
            return self.primary();
        }
        self.bump()?;
        let inner = self.nested(offset, Self::unary)?;
        match kind {
            Kind::Punct(Punct::Minus) => self.node(Expr::Negate(inner.expr), &[inner.depth], offset),
            Kind::Keyword(Keyword::Not) => {
                let inner = self.as_boolean(inner)?;
                self.node(Expr::Not(inner.expr), &[inner.depth], offset)
            }
            _ => Ok(inner),
        }
    }

    /// `literal | property | ( or_expr )`
    fn primary(&mut self) -> PResult<Node> {
        let token = self.bump()?;
        let offset = token.offset;
        let literal = match token.tok {
            Tok::Punct(Punct::LParen) => {
                let inner = self.nested(offset, Self::or_expr)?;
                self.expect(Tok::Punct(Punct::RParen), "`)` or an operator")?;
                return Ok(inner);
            }
            Tok::Ident(name) => return self.node(Expr::Prop(name), &[], offset),
            Tok::Str(s) => Literal::Str(s),
            Tok::Int(ref text) => self.int_literal(text, offset)?,
            Tok::Float(ref text) => self.float_literal(text, offset)?,
            Tok::Keyword(Keyword::True) => Literal::Bool(true),
            Tok::Keyword(Keyword::False) => Literal::Bool(false),
            Tok::Keyword(Keyword::Null) => Literal::Null,
            _ => return Err(self.syntax(&token, "a literal, a property name or `(`")),
        };
        self.node(Expr::Const(literal), &[], offset)
    }

    /// RocketMQ's `createFromDecimal`: `Integer` if it fits, else `Long`.
    fn int_literal(&self, text: &str, offset: usize) -> PResult<Literal> {
        let value: i64 =
            text.parse().map_err(|_| self.invalid(offset, format!("integer {text} does not fit in 64 bits")))?;
        Ok(i32::try_from(value).map_or(Literal::Long(value), Literal::Int))
    }

    /// RocketMQ's `createFloat`.
    fn float_literal(&self, text: &str, offset: usize) -> PResult<Literal> {
        let value = super::java::double_literal(text);
        Ok(Literal::Double(value.map_err(|m| self.invalid(offset, m))?))
    }

    /// RocketMQ's `asBooleanExpression`: boolean expressions pass, properties
    /// are cast, anything else is an error.
    fn as_boolean(&self, node: Node) -> PResult<Node> {
        if is_boolean(&node.expr) {
            return Ok(node);
        }
        if matches!(*node.expr, Expr::Prop(_)) {
            return self.node(Expr::BoolCast(node.expr), &[node.depth], node.offset);
        }
        Err(self.invalid(node.offset, "expression does not produce a boolean value"))
    }
}

/// Whether RocketMQ types `e` as a `BooleanExpression`.
fn is_boolean(e: &Expr) -> bool {
    !matches!(
        e,
        Expr::Prop(_)
            | Expr::Negate(_)
            | Expr::Const(Literal::Str(_) | Literal::Int(_) | Literal::Long(_) | Literal::Double(_))
    )
}
