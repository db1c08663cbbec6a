//! `ResetOffsetBody` (`{"offsetTable":{<MessageQueue>:<offset>,…}}`), the body of
//! INVOKE_BROKER_TO_RESET_OFFSET answers and RESET_CONSUMER_CLIENT_OFFSET requests.
//!
//! Java serialises it with fastjson, which writes each map key as a JSON object — not standard JSON:
//! `{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"T"}:100}}`. We write exactly that (fields in
//! fastjson's alphabetical order) and read it back, and also accept keys written as JSON strings
//! holding the object, as some other clients do.

use serde::Deserialize;

/// One queue's entry of an offset table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueOffset {
    pub topic: String,
    pub broker_name: String,
    pub queue_id: i32,
    #[serde(skip)]
    pub offset: u64,
}

/// A `MessageQueue` as fastjson writes it when it is a map key (fields in alphabetical order).
pub fn queue_key(broker_name: &str, queue_id: i32, topic: &str) -> String {
    serde_json::json!({"brokerName": broker_name, "queueId": queue_id, "topic": topic}).to_string()
}

/// Writes the fastjson form.
pub fn encode(entries: &[QueueOffset]) -> String {
    let items: Vec<String> =
        entries.iter().map(|e| format!("{}:{}", queue_key(&e.broker_name, e.queue_id, &e.topic), e.offset)).collect();
    format!("{{\"offsetTable\":{{{}}}}}", items.join(","))
}

/// Reads an offset table in the fastjson form (or with string keys).
pub fn decode(body: &str) -> Result<Vec<QueueOffset>, String> {
    Ok(decode_values(body)?
        .into_iter()
        .map(|(mut q, v)| {
            q.offset = v.as_i64().unwrap_or(0).max(0) as u64;
            q
        })
        .collect())
}

/// Reads the `offsetTable` of any fastjson map keyed by `MessageQueue` (`TopicStatsTable`,
/// `ConsumeStats`, `ResetOffsetBody`): each queue with its value as JSON.
pub fn decode_values(body: &str) -> Result<Vec<(QueueOffset, serde_json::Value)>, String> {
    let start = body.find("\"offsetTable\"").ok_or("no offsetTable")? + "\"offsetTable\"".len();
    let mut p = Parser { s: body.as_bytes(), i: start };
    p.expect(b':')?;
    p.expect(b'{')?;
    let mut out = Vec::new();
    loop {
        let key = match p.peek() {
            Some(b'}') => return Ok(out),
            Some(b',') => {
                p.i += 1;
                continue;
            }
            Some(b'{') => p.object()?.to_string(),
            Some(b'"') => p.object_in_string()?,
            other => return Err(format!("unexpected {:?} at byte {} of the offset table", other.map(char::from), p.i)),
        };
        let q: QueueOffset = serde_json::from_str(&key).map_err(|e| format!("bad queue key {key}: {e}"))?;
        p.expect(b':')?;
        out.push((q, p.value()?));
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    /// Next non-space byte, not consumed.
    fn peek(&mut self) -> Option<u8> {
        while self.s.get(self.i).is_some_and(u8::is_ascii_whitespace) {
            self.i += 1;
        }
        self.s.get(self.i).copied()
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.peek() != Some(c) {
            return Err(format!("expected '{}' at byte {}", c as char, self.i));
        }
        self.i += 1;
        Ok(())
    }

    /// The text of a `{…}` key (no nested objects in a MessageQueue; strings may hold braces).
    fn object(&mut self) -> Result<&'a str, String> {
        let begin = self.i;
        let mut in_str = false;
        while let Some(&c) = self.s.get(self.i) {
            self.i += 1;
            match c {
                b'\\' if in_str => self.i += 1,
                b'"' => in_str = !in_str,
                b'}' if !in_str => {
                    return std::str::from_utf8(self.s.get(begin..self.i).unwrap_or_default())
                        .map_err(|e| e.to_string());
                }
                _ => {}
            }
        }
        Err("unterminated queue key".into())
    }

    /// A key written as a JSON string holding the object.
    fn object_in_string(&mut self) -> Result<String, String> {
        let rest = std::str::from_utf8(self.s.get(self.i..).unwrap_or_default()).map_err(|e| e.to_string())?;
        let mut de = serde_json::Deserializer::from_str(rest).into_iter::<String>();
        let key = de.next().ok_or("unterminated key")?.map_err(|e| e.to_string())?;
        self.i += de.byte_offset();
        Ok(key)
    }

    /// The JSON value at the current position.
    fn value(&mut self) -> Result<serde_json::Value, String> {
        self.peek(); // skips spaces
        let rest = std::str::from_utf8(self.s.get(self.i..).unwrap_or_default()).map_err(|e| e.to_string())?;
        let mut de = serde_json::Deserializer::from_str(rest).into_iter::<serde_json::Value>();
        let v = de.next().ok_or("missing value")?.map_err(|e| format!("bad value at byte {}: {e}", self.i))?;
        self.i += de.byte_offset();
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(topic: &str, id: i32, offset: u64) -> QueueOffset {
        QueueOffset { topic: topic.into(), broker_name: "broker-a".into(), queue_id: id, offset }
    }

    #[test]
    fn writes_the_fastjson_form_and_reads_it_back() {
        let t = vec![q("TopicTest", 0, 100), q("TopicTest", 1, 98)];
        let s = encode(&t);
        assert_eq!(
            s,
            r#"{"offsetTable":{{"brokerName":"broker-a","queueId":0,"topic":"TopicTest"}:100,{"brokerName":"broker-a","queueId":1,"topic":"TopicTest"}:98}}"#
        );
        assert_eq!(decode(&s).unwrap(), t);
        assert_eq!(decode(r#"{"offsetTable":{}}"#).unwrap(), vec![]);
    }

    #[test]
    fn reads_other_key_orders_string_keys_and_spaces() {
        let s = r#"{ "offsetTable" : { {"topic":"T}","brokerName":"b","queueId":3} : 7 ,
            "{\"topic\":\"T\",\"brokerName\":\"b\",\"queueId\":4}":-1 } }"#;
        let got = decode(s).unwrap();
        assert_eq!(got[0], QueueOffset { topic: "T}".into(), broker_name: "b".into(), queue_id: 3, offset: 7 });
        assert_eq!((got[1].queue_id, got[1].offset), (4, 0));
    }

    #[test]
    fn malformed_tables_are_errors_not_panics() {
        for bad in ["", "{}", r#"{"offsetTable":{{"topic":"T"}:1}}"#, r#"{"offsetTable":{{"#, r#"{"offsetTable":{x}}"#]
        {
            assert!(decode(bad).is_err(), "{bad}");
        }
    }
}
