//! Tokenizer reproducing RocketMQ's JavaCC token rules (longest match).
//!
//! * whitespace: space, `\t`, `\n`, `\r`, `\f`;
//! * comments: `-- ...` up to and including a line break (at the end of the
//!   input without a line break, `--` is two minus signs, as in RocketMQ)
//!   and `/* ... */`;
//! * keywords (case-insensitive): `NOT AND OR BETWEEN IN TRUE FALSE NULL IS
//!   CONTAINS STARTSWITH ENDSWITH`;
//! * identifiers `[a-zA-Z_$][a-zA-Z0-9_$]*`;
//! * integers `0 | [1-9][0-9]*[lL]?`, floats `1.5`, `5.`, `.5`, `5E10`;
//! * strings in single quotes, `''` standing for one quote.

use super::FilterError;
use std::fmt;

/// Reserved words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Keyword {
    Not,
    And,
    Or,
    Between,
    In,
    True,
    False,
    Null,
    Is,
    Contains,
    StartsWith,
    EndsWith,
}

const KEYWORDS: [(&str, Keyword); 12] = [
    ("NOT", Keyword::Not),
    ("AND", Keyword::And),
    ("OR", Keyword::Or),
    ("BETWEEN", Keyword::Between),
    ("IN", Keyword::In),
    ("TRUE", Keyword::True),
    ("FALSE", Keyword::False),
    ("NULL", Keyword::Null),
    ("IS", Keyword::Is),
    ("CONTAINS", Keyword::Contains),
    ("STARTSWITH", Keyword::StartsWith),
    ("ENDSWITH", Keyword::EndsWith),
];

/// Operators and punctuation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Punct {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    LParen,
    RParen,
    Comma,
    Plus,
    Minus,
}

impl Punct {
    fn text(self) -> &'static str {
        match self {
            Self::Eq => "=",
            Self::Ne => "<>",
            Self::Gt => ">",
            Self::Ge => ">=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::LParen => "(",
            Self::RParen => ")",
            Self::Comma => ",",
            Self::Plus => "+",
            Self::Minus => "-",
        }
    }
}

/// A token kind with its payload.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Keyword(Keyword),
    Ident(String),
    /// String literal content, `''` already unescaped.
    Str(String),
    /// Integer literal text without the `L` suffix.
    Int(String),
    /// Floating-point literal text.
    Float(String),
    Punct(Punct),
    Eof,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Keyword(k) => write!(f, "keyword {}", keyword_text(*k)),
            Self::Ident(s) => write!(f, "identifier `{s}`"),
            Self::Str(s) => write!(f, "string '{}'", s.replace('\'', "''")),
            Self::Int(s) | Self::Float(s) => write!(f, "number {s}"),
            Self::Punct(p) => write!(f, "`{}`", p.text()),
            Self::Eof => f.write_str("end of input"),
        }
    }
}

/// The canonical spelling of a keyword.
pub(super) fn keyword_text(k: Keyword) -> &'static str {
    KEYWORDS.iter().find(|(_, kw)| *kw == k).map_or("?", |(text, _)| text)
}

/// A token and the byte offset where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Token {
    pub(super) tok: Tok,
    pub(super) offset: usize,
}

/// Produces tokens on demand (RocketMQ lexes lazily, so text after the
/// last token the parser looks at is never examined).
pub(super) struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

/// Converts a byte offset into a character offset for error messages.
pub(super) fn char_position(src: &str, offset: usize) -> usize {
    src.get(..offset).map_or(offset, |s| s.chars().count())
}

impl<'a> Lexer<'a> {
    pub(super) fn new(src: &'a str) -> Self {
        Self { src, pos: 0 }
    }

    /// Returns the next token, or a lexical error.
    pub(super) fn next_token(&mut self) -> Result<Token, FilterError> {
        self.skip_trivia()?;
        let offset = self.pos;
        let tok = match self.peek_byte(0) {
            None => Tok::Eof,
            Some(c) if c.is_ascii_digit() || c == b'.' => self.number()?,
            Some(c) if c.is_ascii_alphabetic() || c == b'_' || c == b'$' => self.word(),
            Some(b'\'') => self.string()?,
            Some(_) => Tok::Punct(self.punct()?),
        };
        Ok(Token { tok, offset })
    }

    fn rest(&self) -> &'a [u8] {
        self.src.as_bytes().get(self.pos..).unwrap_or_default()
    }

    fn peek_byte(&self, ahead: usize) -> Option<u8> {
        self.rest().get(ahead).copied()
    }

    fn error(&self, offset: usize, message: impl Into<String>) -> FilterError {
        FilterError::Lexical { position: char_position(self.src, offset), message: message.into() }
    }

    /// Skips whitespace and comments.
    fn skip_trivia(&mut self) -> Result<(), FilterError> {
        loop {
            let rest = self.rest();
            match rest {
                [b' ' | b'\t' | b'\n' | b'\r' | b'\x0c', ..] => self.pos += 1,
                [b'-', b'-', tail @ ..] => match tail.iter().position(|c| *c == b'\n' || *c == b'\r') {
                    Some(end) => self.pos += 2 + end + 1,
                    None => return Ok(()),
                },
                [b'/', b'*', tail @ ..] => match find(tail, b"*/") {
                    Some(end) => self.pos += 2 + end + 2,
                    None => return Err(self.error(self.pos, "unterminated comment: missing `*/`")),
                },
                _ => return Ok(()),
            }
        }
    }

    /// Identifier or keyword.
    fn word(&mut self) -> Tok {
        let len = self.rest().iter().take_while(|c| c.is_ascii_alphanumeric() || **c == b'_' || **c == b'$').count();
        let text = self.src.get(self.pos..self.pos + len).unwrap_or_default();
        self.pos += len;
        KEYWORDS
            .iter()
            .find(|(kw, _)| kw.eq_ignore_ascii_case(text))
            .map_or_else(|| Tok::Ident(text.to_string()), |(_, k)| Tok::Keyword(*k))
    }

    /// String literal with `''` escapes.
    fn string(&mut self) -> Result<Tok, FilterError> {
        let start = self.pos;
        let mut value = String::new();
        let mut i = self.pos + 1;
        loop {
            let rest = self.src.get(i..).unwrap_or_default();
            let Some(quote) = rest.find('\'') else {
                return Err(self.error(start, "unterminated string literal: missing closing `'`"));
            };
            value.push_str(&rest[..quote]);
            i += quote + 1;
            if self.src.as_bytes().get(i) != Some(&b'\'') {
                break;
            }
            value.push('\'');
            i += 1;
        }
        self.pos = i;
        Ok(Tok::Str(value))
    }

    /// Integer or float literal, whichever match is longer.
    fn number(&mut self) -> Result<Tok, FilterError> {
        let rest = self.rest();
        let float_len = float_match(rest);
        let int_len = int_match(rest);
        if float_len == 0 && int_len == 0 {
            return Err(self.error(self.pos, "unexpected character `.`"));
        }
        let start = self.pos;
        if float_len > int_len {
            self.pos += float_len;
            let text = self.src.get(start..self.pos).unwrap_or_default();
            return Ok(Tok::Float(text.to_string()));
        }
        self.pos += int_len;
        let text = self.src.get(start..self.pos).unwrap_or_default();
        Ok(Tok::Int(text.trim_end_matches(['l', 'L']).to_string()))
    }

    /// Operator or punctuation.
    fn punct(&mut self) -> Result<Punct, FilterError> {
        let (p, len) = match self.rest() {
            [b'<', b'>', ..] => (Punct::Ne, 2),
            [b'<', b'=', ..] => (Punct::Le, 2),
            [b'>', b'=', ..] => (Punct::Ge, 2),
            [b'<', ..] => (Punct::Lt, 1),
            [b'>', ..] => (Punct::Gt, 1),
            [b'=', ..] => (Punct::Eq, 1),
            [b'(', ..] => (Punct::LParen, 1),
            [b')', ..] => (Punct::RParen, 1),
            [b',', ..] => (Punct::Comma, 1),
            [b'+', ..] => (Punct::Plus, 1),
            [b'-', ..] => (Punct::Minus, 1),
            _ => {
                let c = self.src.get(self.pos..).and_then(|s| s.chars().next());
                let shown = c.map_or_else(String::new, |c| c.escape_debug().to_string());
                return Err(self.error(self.pos, format!("unexpected character `{shown}`")));
            }
        };
        self.pos += len;
        Ok(p)
    }
}

/// Position of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn digits(b: &[u8]) -> usize {
    b.iter().take_while(|c| c.is_ascii_digit()).count()
}

/// Length of `0 | [1-9][0-9]*[lL]?` at the start of `b` (0 if none).
fn int_match(b: &[u8]) -> usize {
    match b.first() {
        Some(b'0') => 1,
        Some(b'1'..=b'9') => {
            let n = digits(b);
            n + usize::from(matches!(b.get(n), Some(b'l' | b'L')))
        }
        _ => 0,
    }
}

/// Length of an exponent `[eE][+-]?[0-9]+` at the start of `b` (0 if none).
fn exponent_match(b: &[u8]) -> usize {
    if !matches!(b.first(), Some(b'e' | b'E')) {
        return 0;
    }
    let sign = usize::from(matches!(b.get(1), Some(b'+' | b'-')));
    let n = digits(b.get(1 + sign..).unwrap_or_default());
    if n == 0 { 0 } else { 1 + sign + n }
}

/// Length of a float literal at the start of `b` (0 if none).
fn float_match(b: &[u8]) -> usize {
    let int = digits(b);
    if b.get(int) == Some(&b'.') {
        let frac = digits(b.get(int + 1..).unwrap_or_default());
        if int == 0 && frac == 0 {
            return 0;
        }
        let end = int + 1 + frac;
        return end + exponent_match(b.get(end..).unwrap_or_default());
    }
    if int == 0 {
        return 0;
    }
    let exp = exponent_match(b.get(int..).unwrap_or_default());
    if exp == 0 { 0 } else { int + exp }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lex(src: &str) -> Result<Vec<Tok>, FilterError> {
        let mut lexer = Lexer::new(src);
        let mut out = Vec::new();
        loop {
            let t = lexer.next_token()?.tok;
            if t == Tok::Eof {
                return Ok(out);
            }
            out.push(t);
        }
    }

    fn ident(s: &str) -> Tok {
        Tok::Ident(s.into())
    }

    #[test]
    fn keywords_and_identifiers() {
        let toks = lex("And nOt notx TAGS $a_1 IS").unwrap();
        assert_eq!(
            toks,
            vec![
                Tok::Keyword(Keyword::And),
                Tok::Keyword(Keyword::Not),
                ident("notx"),
                ident("TAGS"),
                ident("$a_1"),
                Tok::Keyword(Keyword::Is),
            ]
        );
    }

    #[test]
    fn numbers_use_longest_match() {
        let cases: [(&str, Vec<Tok>); 8] = [
            ("5L", vec![Tok::Int("5".into())]),
            ("007", vec![Tok::Int("0".into()), Tok::Int("0".into()), Tok::Int("7".into())]),
            ("0123.5", vec![Tok::Float("0123.5".into())]),
            ("5.", vec![Tok::Float("5.".into())]),
            (".5e3", vec![Tok::Float(".5e3".into())]),
            ("5E10", vec![Tok::Float("5E10".into())]),
            ("1.5e", vec![Tok::Float("1.5".into()), ident("e")]),
            ("0L", vec![Tok::Int("0".into()), ident("L")]),
        ];
        for (src, want) in cases {
            assert_eq!(lex(src).unwrap(), want, "{src}");
        }
    }

    #[test]
    fn strings_and_comments() {
        let toks = lex("'it''s' /* c * / */ -- x\n'' 'a'").unwrap();
        assert_eq!(toks, vec![Tok::Str("it's".into()), Tok::Str(String::new()), Tok::Str("a".into())]);
        // A trailing `--` comment without a line break is two minus signs.
        let toks = lex("--5").unwrap();
        let minus = Tok::Punct(Punct::Minus);
        assert_eq!(toks, vec![minus.clone(), minus, Tok::Int("5".into())]);
    }

    #[test]
    fn lexical_errors_carry_positions() {
        let cases = [("a = 'abc", 4), ("a ! b", 2), ("é = 1", 0), ("x /* y", 2), ("a = .", 4), ("a\u{a0}", 1)];
        for (src, pos) in cases {
            match lex(src) {
                Err(FilterError::Lexical { position, .. }) => assert_eq!(position, pos, "{src}"),
                other => panic!("{src}: {other:?}"),
            }
        }
    }
}
