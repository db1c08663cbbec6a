//! SEND_MESSAGE (10, long field names), SEND_MESSAGE_V2 (310, short names `a`..`n`),
//! SEND_BATCH_MESSAGE (320) and the reply sends (324, 325) — the producer's request and the broker's
//! answer.
//!
//! Request `extFields` (short/long): `a` producerGroup, `b` topic, `c` defaultTopic, `d`
//! defaultTopicQueueNums, `e` queueId (−1: the broker chooses), `f` sysFlag, `g` bornTimestamp, `h`
//! flag, `i` properties (`name\u0001value\u0002…`), `j` reconsumeTimes, `k` unitMode, `l`
//! maxReconsumeTimes, `m` batch. The body is the message body, or for a batch the encoded batch items
//! (`protocol::bodies::decode_batch`). Answer `extFields`: `msgId` (offset msg ids, comma-separated
//! for a batch), `queueId`, `queueOffset`, `transactionId`, `MSG_REGION`, `TRACE_ON`.

use super::{Checked, HeaderError, header, in_range};
use crate::protocol::Command;
use crate::protocol::codes::request as rq;
use crate::protocol::message::{
    FLAG_KNOWN_BITS, FLAG_TRANSACTION_COMMIT, FLAG_TRANSACTION_MASK, FLAG_TRANSACTION_ROLLBACK,
};

/// The topic new topics are modelled on when auto-creation is on (RocketMQ's `TBW102`).
pub const DEFAULT_TOPIC: &str = "TBW102";

/// The send request header under either naming.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SendHeader {
    pub producer_group: String,
    pub topic: String,
    pub default_topic_queue_nums: u32,
    pub queue_id: i32,
    pub sys_flag: i32,
    pub born_timestamp_ms: i64,
    pub flag: i32,
    pub properties: String,
    pub reconsume_times: i32,
    pub max_reconsume_times: Option<i32>,
    pub batch: bool,
}

/// (short V2 name, long V1 name) of each header field.
const NAMES: [(&str, &str); 11] = [
    ("a", "producerGroup"),
    ("b", "topic"),
    ("d", "defaultTopicQueueNums"),
    ("e", "queueId"),
    ("f", "sysFlag"),
    ("g", "bornTimestamp"),
    ("h", "flag"),
    ("i", "properties"),
    ("j", "reconsumeTimes"),
    ("l", "maxReconsumeTimes"),
    ("m", "batch"),
];

impl SendHeader {
    /// Decodes either naming; V2 codes use short names, but any request may carry either.
    pub fn decode(req: &Command) -> Result<SendHeader, HeaderError> {
        let long = matches!(req.code, rq::SEND_MESSAGE | rq::SEND_REPLY_MESSAGE);
        let short = !long || req.ext.contains_key("b");
        let name = |i: usize| NAMES.get(i).copied().unwrap_or(("", ""));
        let get = |i: usize| {
            let (s, l) = name(i);
            req.field(if short { s } else { l })
        };
        let num = |i: usize, default: Option<i64>| -> Result<i64, HeaderError> {
            match get(i) {
                Some(v) => {
                    v.trim().parse::<i64>().map_err(|_| HeaderError::new(name(i).1, format!("is not a number: {v:?}")))
                }
                None => default.ok_or_else(|| HeaderError::new(name(i).1, "is required but missing")),
            }
        };
        // Every number is range-checked here, where it is decoded: nothing is truncated into range.
        let int = |i: usize, default: i64, range: std::ops::RangeInclusive<i64>| -> Result<i32, HeaderError> {
            let v = num(i, Some(default))?;
            in_range(name(i).1, v, range)?;
            Ok(v as i32)
        };
        let any = i32::MIN as i64..=i32::MAX as i64;
        let sys_flag = int(4, 0, 0..=i32::MAX as i64)?;
        if sys_flag & !FLAG_KNOWN_BITS != 0 {
            return Err(HeaderError::new("sysFlag", format!("= {sys_flag:#x} sets bits RocketMQ does not define")));
        }
        if matches!(sys_flag & FLAG_TRANSACTION_MASK, FLAG_TRANSACTION_COMMIT | FLAG_TRANSACTION_ROLLBACK) {
            return Err(HeaderError::new(
                "sysFlag",
                format!("= {sys_flag:#x} marks a transaction commit or rollback; only END_TRANSACTION does"),
            ));
        }
        Ok(SendHeader {
            producer_group: get(0).unwrap_or_default().to_string(),
            topic: get(1).ok_or_else(|| HeaderError::new("topic", "is required but missing"))?.to_string(),
            default_topic_queue_nums: int(2, 4, 0..=i32::MAX as i64)? as u32,
            queue_id: int(3, -1, -1..=i32::MAX as i64)?,
            sys_flag,
            born_timestamp_ms: num(5, Some(0))?,
            flag: int(6, 0, any.clone())?,
            properties: get(7).unwrap_or_default().to_string(),
            reconsume_times: int(8, 0, 0..=i32::MAX as i64)?,
            max_reconsume_times: match get(9) {
                Some(_) => Some(int(9, 0, any)?),
                None => None,
            },
            batch: req.code == rq::SEND_BATCH_MESSAGE || get(10).is_some_and(|v| v.eq_ignore_ascii_case("true")),
        })
    }

    /// Writes the header under the naming `code` uses: long names for SEND_MESSAGE and
    /// SEND_REPLY_MESSAGE, short ones for the V2 and batch codes.
    pub fn request(&self, code: i32) -> Command {
        let mut cmd = Command::request(code);
        let short = !matches!(code, rq::SEND_MESSAGE | rq::SEND_REPLY_MESSAGE);
        let mut put = |i: usize, v: String| {
            let (s, l) = NAMES.get(i).copied().unwrap_or(("", ""));
            cmd.put(if short { s } else { l }, v);
        };
        put(0, self.producer_group.clone());
        put(1, self.topic.clone());
        put(2, self.default_topic_queue_nums.to_string());
        put(3, self.queue_id.to_string());
        put(4, self.sys_flag.to_string());
        put(5, self.born_timestamp_ms.to_string());
        put(6, self.flag.to_string());
        put(7, self.properties.clone());
        put(8, self.reconsume_times.to_string());
        if let Some(m) = self.max_reconsume_times {
            put(9, m.to_string());
        }
        put(10, self.batch.to_string());
        cmd.put(if short { "c" } else { "defaultTopic" }, DEFAULT_TOPIC);
        cmd.put(if short { "k" } else { "unitMode" }, false);
        cmd
    }
}

header! {
    /// The answer to a send.
    pub struct SendResponseHeader {
        /// Offset msg ids of the stored records, comma-separated for a batch.
        pub msg_id: String = "msgId",
        pub queue_id: i32 = "queueId",
        pub queue_offset: u64 = "queueOffset",
        pub transaction_id: Option<String> = "transactionId",
        pub msg_region: Option<String> = "MSG_REGION",
        pub trace_on: Option<String> = "TRACE_ON",
    }
}
impl Checked for SendResponseHeader {}

header! {
    /// CONSUMER_SEND_MSG_BACK (36): a consumer hands back a message it failed to consume, named by its
    /// physical `offset`; redelivered through `%RETRY%<group>` after `delayLevel` (0: the broker's
    /// choice), or dead-lettered past `maxReconsumeTimes` (read from clients of version ≥ 121 only).
    pub struct ConsumerSendMsgBackRequest {
        pub offset: u64 = "offset",
        pub group: String = "group",
        pub delay_level: Option<i32> = "delayLevel",
        pub origin_msg_id: Option<String> = "originMsgId",
        pub origin_topic: Option<String> = "originTopic",
        pub unit_mode: Option<bool> = "unitMode",
        pub max_reconsume_times: Option<i32> = "maxReconsumeTimes",
    }
}
impl Checked for ConsumerSendMsgBackRequest {}

header! {
    /// PUSH_REPLY_MESSAGE_TO_CLIENT (326): the broker pushes a reply to the requester's connection; the
    /// body is the reply's body.
    pub struct PushReplyHeader {
        pub producer_group: String = "producerGroup",
        pub topic: String = "topic",
        pub default_topic: Option<String> = "defaultTopic",
        pub default_topic_queue_nums: Option<u32> = "defaultTopicQueueNums",
        pub queue_id: i32 = "queueId",
        pub sys_flag: i32 = "sysFlag",
        pub born_timestamp: i64 = "bornTimestamp",
        pub flag: i32 = "flag",
        pub properties: Option<String> = "properties",
        pub reconsume_times: Option<i32> = "reconsumeTimes",
        pub unit_mode: Option<bool> = "unitMode",
        pub born_host: String = "bornHost",
        pub store_host: String = "storeHost",
        pub store_timestamp: i64 = "storeTimestamp",
    }
}
impl Checked for PushReplyHeader {}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    fn sample() -> SendHeader {
        SendHeader {
            producer_group: "P".into(),
            topic: "T".into(),
            default_topic_queue_nums: 4,
            queue_id: 1,
            sys_flag: 0,
            born_timestamp_ms: 1_700_000_000_000,
            flag: 0,
            properties: "TAGS\u{1}a\u{2}".into(),
            reconsume_times: 0,
            max_reconsume_times: Some(16),
            batch: false,
        }
    }

    #[test]
    fn round_trips_under_both_namings() {
        let h = sample();
        for code in [rq::SEND_MESSAGE, rq::SEND_MESSAGE_V2, rq::SEND_REPLY_MESSAGE, rq::SEND_REPLY_MESSAGE_V2] {
            assert_eq!(SendHeader::decode(&over_the_wire(&h.request(code))), Ok(h.clone()), "code {code}");
        }
        let batch = SendHeader { batch: true, ..sample() };
        assert_eq!(SendHeader::decode(&over_the_wire(&batch.request(rq::SEND_BATCH_MESSAGE))), Ok(batch));
        let r = SendResponseHeader { msg_id: "AB".into(), queue_id: 1, queue_offset: 7, ..Default::default() };
        let mut resp = Command::request(rq::SEND_MESSAGE_V2).response_to(0);
        r.encode(&mut resp);
        assert_eq!(SendResponseHeader::decode(&over_the_wire(&resp)), Ok(r));
    }

    #[test]
    fn send_back_round_trips() {
        let h = ConsumerSendMsgBackRequest { offset: 9, group: "G".into(), delay_level: Some(0), ..Default::default() };
        let c = h.request(rq::CONSUMER_SEND_MSG_BACK);
        assert_eq!(ConsumerSendMsgBackRequest::decode(&over_the_wire(&c)), Ok(h));
        each_required_field_is_checked(&c, &["offset", "group"], ConsumerSendMsgBackRequest::decode);
        garbage_never_panics(&c, ConsumerSendMsgBackRequest::decode);
    }

    #[test]
    fn ranges_flags_and_garbage() {
        let full = sample().request(rq::SEND_MESSAGE_V2);
        let mut no_topic = full.clone();
        no_topic.ext.remove("b");
        assert_eq!(SendHeader::decode(&no_topic).unwrap_err().field, "topic", "errors name the long field name");
        garbage_never_panics(&full, SendHeader::decode);
        for (k, v, field) in
            [("e", "-2", "queueId"), ("f", "4096", "sysFlag"), ("f", "8", "sysFlag"), ("j", "-1", "reconsumeTimes")]
        {
            let mut c = full.clone();
            c.put(k, v);
            assert_eq!(SendHeader::decode(&c).unwrap_err().field, field, "{k}={v}");
        }
    }
}
