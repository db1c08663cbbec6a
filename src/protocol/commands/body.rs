//! JSON bodies: what every typed body shares — decoding that names what went wrong, the lenient field
//! readers real clients need, and [`MessageQueue`], which most bodies name.
//!
//! Clients disagree on JSON types: the Java client sends `messageModel` as an enum name, others its
//! ordinal; `queueId` arrives as a number from most clients and as a string from some; lists are
//! sometimes `null`. The readers here accept each of those spellings for the fields the broker uses,
//! and [`or_default`] lets a field the broker never reads (a tag hash set, a version) be anything
//! without failing the whole body — as RocketMQ's fastjson does.

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

/// Why a JSON body did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyError {
    /// What the body is (`HeartbeatData`, `LockBatchRequestBody`, …).
    pub body: &'static str,
    pub why: String,
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "body {} does not decode: {}", self.body, self.why)
    }
}

impl std::error::Error for BodyError {}

/// Decodes a JSON body of type `T`, called `name` in the error.
pub fn decode_json<T: for<'de> Deserialize<'de>>(name: &'static str, bytes: &[u8]) -> Result<T, BodyError> {
    serde_json::from_slice(bytes).map_err(|e| BodyError { body: name, why: e.to_string() })
}

/// Encodes a body as compact standard JSON (what every RocketMQ client parses).
pub fn encode_json<T: Serialize>(body: &T) -> String {
    // Serialising plain structs of strings, numbers and lists cannot fail.
    serde_json::to_string(body).unwrap_or_default()
}

/// One queue of a topic on one broker, as every body and route names it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageQueue {
    #[serde(deserialize_with = "string")]
    pub topic: String,
    #[serde(default, deserialize_with = "string")]
    pub broker_name: String,
    #[serde(deserialize_with = "number")]
    pub queue_id: i32,
}

struct Scalar;

impl<'de> Visitor<'de> for Scalar {
    type Value = Option<String>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a string, number, boolean or null")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(Scalar)
    }
}

/// A scalar as its string (`7` → "7", `true` → "true"); `null` is None.
pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    d.deserialize_any(Scalar)
}

/// A scalar as its string; `null` is the empty string.
pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(opt_string(d)?.unwrap_or_default())
}

/// A number written as a number or as a string of one, in the range of `T`.
pub fn number<'de, D: Deserializer<'de>, T: std::str::FromStr>(d: D) -> Result<T, D::Error> {
    let s = opt_string(d)?.ok_or_else(|| de::Error::custom("a number is required, not null"))?;
    s.trim().parse().map_err(|_| de::Error::custom(format!("{s:?} is not a valid {}", std::any::type_name::<T>())))
}

/// A boolean written as `true`, `"true"` (any case) or absent/`null` (false).
pub fn boolean<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(opt_string(d)?.is_some_and(|s| s.trim().eq_ignore_ascii_case("true")))
}

/// A list, where `null` is the empty list.
pub fn list<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// A field the broker does not read: its value when it has the expected type, the default otherwise.
pub fn or_default<'de, D: Deserializer<'de>, T: for<'a> Deserialize<'a> + Default>(d: D) -> Result<T, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(T::deserialize(v).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_queues_read_numbers_or_strings_and_name_what_is_wrong() {
        let a: MessageQueue = decode_json("mq", br#"{"topic":"T","brokerName":"b-0","queueId":3}"#).unwrap();
        let b: MessageQueue = decode_json("mq", br#"{"topic":"T","brokerName":"b-0","queueId":"3"}"#).unwrap();
        assert_eq!(a, b);
        assert_eq!(decode_json::<MessageQueue>("mq", encode_json(&a).as_bytes()).unwrap(), a);
        let e = decode_json::<MessageQueue>("mq", br#"{"topic":"T","queueId":"x"}"#).unwrap_err();
        assert!(e.to_string().contains("not a valid i32"), "{e}");
        assert!(decode_json::<MessageQueue>("mq", br#"{"brokerName":"b","queueId":1}"#).is_err(), "topic is required");
        assert!(decode_json::<MessageQueue>("mq", br#"{"topic":"T","queueId":99999999999}"#).is_err());
    }
}
