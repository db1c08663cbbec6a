//! Decoding of JSON remoting headers straight into a [`Command`]: a single pass over the bytes with
//! no intermediate tree and no allocation for keys (values are copied once, borrowed-then-owned
//! only when they carry escapes). The header decode was the largest user-space cost of an unbatched
//! send in the profiles of `docs/BENCHMARKS.md` (a serde visitor cost ~15 % of broker CPU at 20 000
//! sends/s; `cargo bench --bench header` compares the two).
//!
//! Tolerant as the reference's §8 requires: numbers, booleans and numeric strings anywhere a value is
//! expected (`extFields` values become their text — numbers exactly as written; `code`, `opaque`…
//! accept `11` or `"11"`), `language` as a name or as an ordinal, `null` and nested values ignored,
//! unknown keys skipped, raw control characters inside strings accepted, a lone UTF-16 surrogate
//! escape read as U+FFFD. A repeated key keeps its last value. Malformed JSON (unbalanced, trailing
//! bytes, bad literals, invalid UTF-8, nesting deeper than [`MAX_DEPTH`]) is an error.

use super::frame::{Command, ExtFields, FrameError, language_name, language_of};
use std::borrow::Cow;

/// Deepest nesting skipped inside a header (serde_json's limit too): bounds the recursion a hostile
/// frame can cause.
const MAX_DEPTH: usize = 128;

/// Decodes one JSON header.
pub fn decode(header: &[u8]) -> Result<Command, FrameError> {
    let t = std::str::from_utf8(header)
        .map_err(|e| FrameError::BadJson(format!("invalid UTF-8 at byte {}", e.valid_up_to())))?;
    let mut p = Parser { s: header, t, i: 0 };
    let mut cmd = Command { language: "OTHER".into(), ..Default::default() };
    p.open(b'{')?;
    if !p.close(b'}')? {
        loop {
            let key = p.string()?;
            p.colon()?;
            match &*key {
                "code" => cmd.code = int_of(p.scalar()?),
                "version" => cmd.version = int_of(p.scalar()?),
                "opaque" => cmd.opaque = int_of(p.scalar()?),
                "flag" => cmd.flag = int_of(p.scalar()?),
                "remark" => cmd.remark = p.scalar()?.map(Cow::into_owned),
                "extFields" => cmd.ext = p.ext_fields()?,
                "language" => {
                    cmd.language = match p.scalar()? {
                        Some(t) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) => {
                            language_name(t.parse::<u8>().unwrap_or(7)).into()
                        }
                        Some(t) => language_of(&t),
                        None => "OTHER".into(),
                    }
                }
                _ => p.skip_value(0)?,
            }
            if !p.next_member(b'}')? {
                break;
            }
        }
    }
    p.ws();
    if p.i != p.s.len() {
        return Err(p.err("trailing characters after the header object"));
    }
    Ok(cmd)
}

/// An integer header field: a number (floats and out-of-range values → 0) or numeric text.
fn int_of(s: Option<Cow<str>>) -> i32 {
    s.and_then(|t| t.trim().parse::<i64>().ok()).map_or(0, |n| n as i32)
}

struct Parser<'a> {
    s: &'a [u8],
    /// `s` as text (checked once; a header is UTF-8 throughout).
    t: &'a str,
    i: usize,
}

impl<'a> Parser<'a> {
    fn err(&self, what: &str) -> FrameError {
        FrameError::BadJson(format!("{what} at byte {}", self.i))
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.i) {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.i).copied()
    }

    /// Consumes `c` (after whitespace) or fails.
    fn open(&mut self, c: u8) -> Result<(), FrameError> {
        if self.peek() != Some(c) {
            return Err(self.err(&format!("expected '{}'", c as char)));
        }
        self.i += 1;
        Ok(())
    }

    /// Consumes `c` if it is next: an empty object or array.
    fn close(&mut self, c: u8) -> Result<bool, FrameError> {
        let empty = self.peek() == Some(c);
        if empty {
            self.i += 1;
        }
        Ok(empty)
    }

    fn colon(&mut self) -> Result<(), FrameError> {
        self.open(b':')
    }

    /// After a member: `,` → true (another follows), `end` → false.
    fn next_member(&mut self, end: u8) -> Result<bool, FrameError> {
        match self.peek() {
            Some(b',') => {
                self.i += 1;
                Ok(true)
            }
            Some(c) if c == end => {
                self.i += 1;
                Ok(false)
            }
            _ => Err(self.err(&format!("expected ',' or '{}'", end as char))),
        }
    }

    /// `self.t[from..to]`: the header was checked to be UTF-8 once, and every boundary the parser
    /// cuts at follows or precedes an ASCII byte.
    fn text(&self, from: usize, to: usize) -> Result<&'a str, FrameError> {
        self.t.get(from..to).ok_or_else(|| self.err("invalid UTF-8"))
    }

    /// Where the next `"` or `\\` is, from `self.i`.
    fn next_quote_or_escape(&self) -> Result<usize, FrameError> {
        let rest = self.s.get(self.i..).unwrap_or_default();
        memchr::memchr2(b'"', b'\\', rest).map(|n| self.i + n).ok_or_else(|| self.err("unterminated string"))
    }

    /// A string literal (after whitespace), borrowed unless it has escapes.
    fn string(&mut self) -> Result<Cow<'a, str>, FrameError> {
        self.open(b'"')?;
        let start = self.i;
        self.i = self.next_quote_or_escape()?;
        if self.s.get(self.i) == Some(&b'"') {
            self.i += 1;
            return self.text(start, self.i - 1).map(Cow::Borrowed);
        }
        self.escaped_string(start).map(Cow::Owned)
    }

    /// The rest of a string with escapes, from `start` (its first byte); `self.i` is at a backslash.
    /// Runs without escapes are copied whole.
    fn escaped_string(&mut self, start: usize) -> Result<String, FrameError> {
        let mut out = String::with_capacity(self.i - start + 16);
        out.push_str(self.text(start, self.i)?);
        loop {
            let Some(&b) = self.s.get(self.i) else { return Err(self.err("unterminated string")) };
            self.i += 1;
            if b == b'"' {
                return Ok(out);
            }
            let Some(&e) = self.s.get(self.i) else { return Err(self.err("unterminated escape")) };
            self.i += 1;
            out.push(match e {
                b'"' => '"',
                b'\\' => '\\',
                b'/' => '/',
                b'b' => '\u{8}',
                b'f' => '\u{c}',
                b'n' => '\n',
                b'r' => '\r',
                b't' => '\t',
                b'u' => self.unicode_escape()?,
                _ => return Err(self.err("bad escape")),
            });
            let run = self.i;
            self.i = self.next_quote_or_escape()?;
            out.push_str(self.text(run, self.i)?);
        }
    }

    fn hex4(&mut self) -> Result<u32, FrameError> {
        let digits = self.s.get(self.i..self.i + 4).ok_or_else(|| self.err("short \\u escape"))?;
        let text = std::str::from_utf8(digits).map_err(|_| self.err("bad \\u escape"))?;
        let v = u32::from_str_radix(text, 16).map_err(|_| self.err("bad \\u escape"))?;
        self.i += 4;
        Ok(v)
    }

    /// After `\u`: one code point, joining a surrogate pair; a lone surrogate becomes U+FFFD.
    fn unicode_escape(&mut self) -> Result<char, FrameError> {
        let hi = self.hex4()?;
        if (0xD800..0xDC00).contains(&hi) && self.s.get(self.i..self.i + 2) == Some(b"\\u") {
            let save = self.i;
            self.i += 2;
            let lo = self.hex4()?;
            if (0xDC00..0xE000).contains(&lo) {
                return Ok(char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)).unwrap_or('\u{fffd}'));
            }
            self.i = save; // not a pair: the second escape stands alone
        }
        Ok(char::from_u32(hi).unwrap_or('\u{fffd}'))
    }

    /// A number literal's text (JSON grammar).
    fn number(&mut self) -> Result<&'a str, FrameError> {
        let start = self.i;
        let s = self.s;
        let digits = |p: &mut Parser| {
            let from = p.i;
            while s.get(p.i).is_some_and(u8::is_ascii_digit) {
                p.i += 1;
            }
            p.i > from
        };
        if s.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        if !digits(self) {
            return Err(self.err("bad number"));
        }
        if s.get(self.i) == Some(&b'.') {
            self.i += 1;
            if !digits(self) {
                return Err(self.err("bad number"));
            }
        }
        if let Some(b'e' | b'E') = s.get(self.i) {
            self.i += 1;
            if let Some(b'+' | b'-') = s.get(self.i) {
                self.i += 1;
            }
            if !digits(self) {
                return Err(self.err("bad number"));
            }
        }
        self.text(start, self.i)
    }

    fn literal(&mut self, word: &'static str) -> Result<&'static str, FrameError> {
        if self.s.get(self.i..self.i + word.len()) != Some(word.as_bytes()) {
            return Err(self.err("bad literal"));
        }
        self.i += word.len();
        Ok(word)
    }

    /// A scalar as text; `None` for null, objects and arrays (skipped).
    fn scalar(&mut self) -> Result<Option<Cow<'a, str>>, FrameError> {
        match self.peek() {
            Some(b'"') => self.string().map(Some),
            Some(b't') => self.literal("true").map(|w| Some(Cow::Borrowed(w))),
            Some(b'f') => self.literal("false").map(|w| Some(Cow::Borrowed(w))),
            Some(b'n') => self.literal("null").map(|_| None),
            Some(b'-' | b'0'..=b'9') => self.number().map(|n| Some(Cow::Borrowed(n))),
            Some(b'{' | b'[') => self.skip_value(0).map(|_| None),
            _ => Err(self.err("expected a value")),
        }
    }

    /// Skips one value of any shape, `depth` levels down.
    fn skip_value(&mut self, depth: usize) -> Result<(), FrameError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deeply"));
        }
        match self.peek() {
            Some(b'{') => {
                self.i += 1;
                if !self.close(b'}')? {
                    loop {
                        self.string()?;
                        self.colon()?;
                        self.skip_value(depth + 1)?;
                        if !self.next_member(b'}')? {
                            break;
                        }
                    }
                }
                Ok(())
            }
            Some(b'[') => {
                self.i += 1;
                if !self.close(b']')? {
                    loop {
                        self.skip_value(depth + 1)?;
                        if !self.next_member(b']')? {
                            break;
                        }
                    }
                }
                Ok(())
            }
            _ => self.scalar().map(|_| ()),
        }
    }

    /// `extFields`: scalar values as text; other values dropped; not an object → empty.
    fn ext_fields(&mut self) -> Result<ExtFields, FrameError> {
        // Keys and values are at most what is left of the header; a Java send header has 13.
        let mut out = ExtFields::with_capacity(self.s.len().saturating_sub(self.i), 16);
        if self.peek() != Some(b'{') {
            self.skip_value(0)?;
            return Ok(out);
        }
        self.i += 1;
        if self.close(b'}')? {
            return Ok(out);
        }
        loop {
            let k = self.string()?;
            self.colon()?;
            if let Some(v) = self.scalar()? {
                out.push_unordered(&k, &v);
            }
            if !self.next_member(b'}')? {
                out.restore_order();
                return Ok(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_fields_of_every_client_style() {
        let h = br#"{"code":"310","language":12,"version":401,"opaque":9,"flag":2,"remark":"r",
            "extFields":{"a":"PG","e":3,"m":false,"x":null,"y":{"z":1},"f":1.5},"serializeTypeCurrentRPC":"JSON"}"#;
        let c = decode(h).unwrap();
        assert_eq!((c.code, &*c.language, c.version, c.opaque, c.flag), (310, "RUST", 401, 9, 2));
        assert_eq!(c.remark.as_deref(), Some("r"));
        assert_eq!(
            (c.field("a"), c.field("e"), c.field("m"), c.field("f")),
            (Some("PG"), Some("3"), Some("false"), Some("1.5"))
        );
        assert_eq!((c.field("x"), c.field("y")), (None, None));
    }

    #[test]
    fn escapes_duplicates_and_odd_shapes() {
        let c = decode(br#"{"code":1,"code":2,"extFields":{"k":"a\"b\u0001"},"language":"JAVA"}"#).unwrap();
        assert_eq!(c.code, 2, "the last value wins");
        assert_eq!(c.field("k"), Some("a\"b\u{1}"));
        let c = decode(br#"{"code":1.5,"extFields":[1],"opaque":"x"}"#).unwrap();
        assert_eq!((c.code, c.opaque, c.ext.len(), &*c.language), (0, 0, 0, "OTHER"));
        for bad in [&b"[1]"[..], b"{", b"{}x", b"", b"{\"code\":}"] {
            assert!(decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn unicode_escapes_and_raw_bytes() {
        let h = b"{\"extFields\":{\"p\":\"\\ud83d\\ude00 \\u00e9\\/\\b\",\"lone\":\"\\ud800x\",\"raw\":\"a\x01b\",\"u\":\"\xc3\xa9\"}}";
        let c = decode(h).unwrap();
        assert_eq!(c.field("p"), Some("\u{1f600} \u{e9}/\u{8}"));
        assert_eq!(c.field("lone"), Some("\u{fffd}x"), "a lone surrogate is replaced, not an error");
        assert_eq!(c.field("raw"), Some("a\u{1}b"), "raw control characters are tolerated");
        assert_eq!(c.field("u"), Some("\u{e9}"));
        for bad in [
            &br#"{"extFields":{"k":"\q"}}"#[..],
            br#"{"extFields":{"k":"\u12"}}"#,
            b"{\"k\":\"\xff\"}",
            br#"{"k":tru}"#,
            br#"{"k":-}"#,
            br#"{"k":1.}"#,
            br#"{"k" 1}"#,
            br#"{"k":1,}"#,
            br#"{"k":[1,2}"#,
        ] {
            assert!(decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let ok = format!("{{\"x\":{}{}}}", "[".repeat(100), "]".repeat(100));
        assert!(decode(ok.as_bytes()).is_ok());
        let deep = format!("{{\"x\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(decode(deep.as_bytes()), Err(FrameError::BadJson(m)) if m.contains("deeply")));
    }

    #[test]
    fn numbers_in_every_shape() {
        let c =
            decode(br#" { "code" : -3 , "opaque":"7", "extFields":{"a":1e3,"b":-0.25,"c":12345678901234567890} } "#)
                .unwrap();
        assert_eq!((c.code, c.opaque), (-3, 7));
        assert_eq!(
            (c.field("a"), c.field("b"), c.field("c")),
            (Some("1e3"), Some("-0.25"), Some("12345678901234567890"))
        );
    }

    proptest::proptest! {
        /// Whatever `Command` encodes, the decoder reads back; and it agrees with serde_json on the
        /// extFields of any header serde_json itself writes.
        #[test]
        fn agrees_with_serde_json(
            ext in proptest::collection::hash_map(".{0,12}", ".{0,40}", 0..12),
            code in proptest::prelude::any::<i32>(),
            remark in proptest::option::of(".{0,20}"),
        ) {
            let mut cmd = Command::request(code);
            cmd.remark = remark.clone();
            for (k, v) in &ext {
                cmd.put(k, v);
            }
            let frame = bytes::Bytes::from(cmd.encode());
            let (back, _) = Command::decode(&frame, 1 << 20).unwrap().unwrap();
            proptest::prop_assert_eq!(&back.ext, &cmd.ext);
            proptest::prop_assert_eq!(back.code, code);
            proptest::prop_assert_eq!(back.remark, remark);
            let by_serde = serde_json::json!({"code": code, "extFields": ext, "flag": 0}).to_string();
            let d = decode(by_serde.as_bytes()).unwrap();
            proptest::prop_assert_eq!(d.ext.len(), ext.len());
            for (k, v) in &ext {
                proptest::prop_assert_eq!(d.field(k), Some(v.as_str()));
            }
        }
    }
}
