//! Decoding of JSON remoting headers straight into a [`Command`], without an intermediate
//! `serde_json::Value` tree (the largest user-space cost of small requests in the profiles of
//! `docs/BENCHMARKS.md`).
//!
//! Tolerant as the reference's §8 requires: numbers, booleans and numeric strings anywhere a value is
//! expected (`extFields` values become their text; `code`, `opaque`… accept `11` or `"11"`), `language`
//! as a name or as an ordinal, `null` and nested values ignored, unknown keys skipped. A repeated key
//! keeps its last value, as a tree would.

use super::command::{Command, FrameError, language_name};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use std::collections::HashMap;
use std::fmt;

/// Decodes one JSON header.
pub fn decode(header: &[u8]) -> Result<Command, FrameError> {
    let mut de = serde_json::Deserializer::from_slice(header);
    let cmd = de.deserialize_map(HeaderVisitor).map_err(|e| FrameError::BadJson(e.to_string()))?;
    de.end().map_err(|e| FrameError::BadJson(e.to_string()))?;
    Ok(cmd)
}

/// A JSON scalar as text (`None` for null, objects and arrays).
struct Scalar(Option<String>);

impl<'de> de::Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Scalar, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar(Some(v.to_string())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
        Ok(Scalar(Some(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar(Some(v.to_string())))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        Ok(Scalar(Some(v.to_string())))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
        Ok(Scalar(Some(serde_json::Number::from_f64(v).map_or_else(|| v.to_string(), |n| n.to_string()))))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar(Some(v.to_string())))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
        Ok(Scalar(None))
    }
    fn visit_none<E: de::Error>(self) -> Result<Scalar, E> {
        Ok(Scalar(None))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Scalar, A::Error> {
        while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar(None))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut s: A) -> Result<Scalar, A::Error> {
        while s.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar(None))
    }
}

/// `extFields`: scalar values as text; other values dropped; not an object → empty.
struct ExtFields(HashMap<String, String>);

impl<'de> de::Deserialize<'de> for ExtFields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ExtFields, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ExtFields;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an extFields object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<ExtFields, A::Error> {
                let mut out = HashMap::with_capacity(m.size_hint().unwrap_or(16));
                while let Some(k) = m.next_key::<String>()? {
                    if let Scalar(Some(v)) = m.next_value()? {
                        out.insert(k, v);
                    }
                }
                Ok(ExtFields(out))
            }
            fn visit_unit<E: de::Error>(self) -> Result<ExtFields, E> {
                Ok(ExtFields(HashMap::new()))
            }
            fn visit_none<E: de::Error>(self) -> Result<ExtFields, E> {
                Ok(ExtFields(HashMap::new()))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut s: A) -> Result<ExtFields, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(ExtFields(HashMap::new()))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<ExtFields, E> {
                Ok(ExtFields(HashMap::new()))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<ExtFields, E> {
                Ok(ExtFields(HashMap::new()))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<ExtFields, E> {
                Ok(ExtFields(HashMap::new()))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<ExtFields, E> {
                Ok(ExtFields(HashMap::new()))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<ExtFields, E> {
                Ok(ExtFields(HashMap::new()))
            }
        }
        d.deserialize_any(V)
    }
}

/// An integer header field: a number (floats and out-of-range values → 0) or numeric text.
fn int_of(s: Scalar) -> i32 {
    s.0.and_then(|t| t.trim().parse::<i64>().ok()).map_or(0, |n| n as i32)
}

struct HeaderVisitor;

impl<'de> Visitor<'de> for HeaderVisitor {
    type Value = Command;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a remoting header object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Command, A::Error> {
        let mut cmd = Command { language: "OTHER".into(), ..Default::default() };
        while let Some(key) = m.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "code" => cmd.code = int_of(m.next_value()?),
                "version" => cmd.version = int_of(m.next_value()?),
                "opaque" => cmd.opaque = int_of(m.next_value()?),
                "flag" => cmd.flag = int_of(m.next_value()?),
                "remark" => cmd.remark = m.next_value::<Scalar>()?.0,
                "extFields" => cmd.ext = m.next_value::<ExtFields>()?.0,
                "language" => {
                    let v = m.next_value::<Scalar>()?.0;
                    cmd.language = match v {
                        Some(t) if t.bytes().all(|b| b.is_ascii_digit()) && !t.is_empty() => {
                            language_name(t.parse::<u8>().unwrap_or(7)).to_string()
                        }
                        Some(t) => t,
                        None => "OTHER".into(),
                    };
                }
                _ => {
                    m.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(cmd)
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
        assert_eq!((c.code, c.language.as_str(), c.version, c.opaque, c.flag), (310, "RUST", 401, 9, 2));
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
        assert_eq!((c.code, c.opaque, c.ext.len(), c.language.as_str()), (0, 0, 0, "OTHER"));
        for bad in [&b"[1]"[..], b"{", b"{}x", b"", b"{\"code\":}"] {
            assert!(decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
