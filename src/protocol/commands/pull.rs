//! PULL_MESSAGE (11) and LITE_PULL_MESSAGE (361): a consumer reads a queue from an offset.
//!
//! Request `extFields` (RocketMQ's `PullMessageRequestHeader`): `consumerGroup`, `topic`, `queueId`,
//! `queueOffset`, `maxMsgNums`, `sysFlag` (bit 0 commit offset, bit 1 suspend, bit 2 subscription
//! carried, bit 3 class filter), `commitOffset`, `suspendTimeoutMillis`, `subscription`, `subVersion`,
//! `expressionType` (TAG | SQL92), and from RocketMQ 5 `maxMsgBytes`. Response `extFields`:
//! `suggestWhichBrokerId`, `nextBeginOffset`, `minOffset`, `maxOffset`; the body is the matching stored
//! records back to back (layout in `protocol::message`).

use super::{Checked, header};

/// sysFlag bit: the pull carries the group's offset to commit (`commitOffset`).
pub const FLAG_COMMIT_OFFSET: i32 = 1;
/// sysFlag bit: the broker may hold the pull while nothing matches (long polling).
pub const FLAG_SUSPEND: i32 = 2;
/// sysFlag bit: the pull carries its subscription expression instead of relying on the heartbeat's.
pub const FLAG_SUBSCRIPTION: i32 = 4;

/// Messages per pull when the request does not say (RocketMQ's `pullBatchSize`).
pub const DEFAULT_MAX_MSGS: u32 = 32;
/// Most messages one pull answers with, whatever it asks for.
pub const MAX_MSGS: u32 = 1024;
/// Longest hold a pull may ask for; RocketMQ clients ask for 15–20 s, and a longer one would outlive
/// their own request timeout.
pub const MAX_SUSPEND_MS: u64 = 25_000;

header! {
    /// The pull request.
    pub struct PullRequestHeader {
        pub consumer_group: String = "consumerGroup",
        pub topic: String = "topic",
        pub queue_id: i32 = "queueId",
        /// Negative offsets (sent by some clients before their first commit) read from 0.
        pub queue_offset: i64 = "queueOffset",
        pub max_msg_nums: Option<i32> = "maxMsgNums",
        pub sys_flag: Option<i32> = "sysFlag",
        pub commit_offset: Option<i64> = "commitOffset",
        pub suspend_timeout_millis: Option<i64> = "suspendTimeoutMillis",
        pub subscription: Option<String> = "subscription",
        pub sub_version: Option<i64> = "subVersion",
        pub expression_type: Option<String> = "expressionType",
        pub max_msg_bytes: Option<i64> = "maxMsgBytes",
    }
}

/// The queue id is checked against the topic's queues by the broker (INVALID_PARAMETER), not here.
impl Checked for PullRequestHeader {}

impl PullRequestHeader {
    pub fn offset(&self) -> u64 {
        self.queue_offset.max(0) as u64
    }

    /// Messages to answer with: the request's number, within 1..=[`MAX_MSGS`].
    pub fn max_msgs(&self) -> usize {
        self.max_msg_nums.map_or(DEFAULT_MAX_MSGS as i64, i64::from).clamp(1, MAX_MSGS as i64) as usize
    }

    /// Bytes to answer with at most: the request's limit where it gives a positive one, else `default`.
    pub fn max_bytes(&self, default: usize) -> usize {
        self.max_msg_bytes.filter(|&v| v > 0).map_or(default, |v| v as usize)
    }

    pub fn sys_flag(&self) -> i32 {
        self.sys_flag.unwrap_or(0)
    }

    /// How long the pull may be held: the request's timeout, else `default`, never past [`MAX_SUSPEND_MS`].
    pub fn suspend_ms(&self, default: u64) -> u64 {
        self.suspend_timeout_millis.filter(|&v| v > 0).map_or(default, |v| v as u64).min(MAX_SUSPEND_MS)
    }
}

header! {
    /// The pull response.
    pub struct PullResponseHeader {
        pub suggest_which_broker_id: u64 = "suggestWhichBrokerId",
        pub next_begin_offset: u64 = "nextBeginOffset",
        pub min_offset: u64 = "minOffset",
        pub max_offset: u64 = "maxOffset",
    }
}

impl Checked for PullResponseHeader {}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::protocol::Command;
    use crate::protocol::codes::request as rq;

    fn sample() -> PullRequestHeader {
        PullRequestHeader {
            consumer_group: "G".into(),
            topic: "T".into(),
            queue_id: 3,
            queue_offset: 17,
            max_msg_nums: Some(32),
            sys_flag: Some(FLAG_SUBSCRIPTION | FLAG_SUSPEND),
            commit_offset: Some(0),
            suspend_timeout_millis: Some(15_000),
            subscription: Some("a || b".into()),
            sub_version: Some(0),
            expression_type: Some("TAG".into()),
            max_msg_bytes: None,
        }
    }

    #[test]
    fn round_trips_over_the_wire() {
        let h = sample();
        assert_eq!(PullRequestHeader::decode(&over_the_wire(&h.request(rq::PULL_MESSAGE))), Ok(h));
        let r = PullResponseHeader { suggest_which_broker_id: 0, next_begin_offset: 9, min_offset: 1, max_offset: 9 };
        let mut resp = Command::request(rq::PULL_MESSAGE).response_to(0);
        r.encode(&mut resp);
        assert_eq!(PullResponseHeader::decode(&over_the_wire(&resp)), Ok(r));
    }

    #[test]
    fn the_java_clients_header_decodes() {
        // extFields as the Java client 4.9 / 5.x sends them (PullMessageRequestHeader, JSON).
        let mut c = Command::request(rq::PULL_MESSAGE);
        for (k, v) in [
            ("consumerGroup", "please_rename_unique_group_name"),
            ("topic", "TopicTest"),
            ("queueId", "1"),
            ("queueOffset", "-1"),
            ("maxMsgNums", "32"),
            ("sysFlag", "6"),
            ("commitOffset", "0"),
            ("suspendTimeoutMillis", "15000"),
            ("subscription", "TagA"),
            ("subVersion", "1700000000000"),
            ("expressionType", "TAG"),
            ("bname", "broker-a"),
        ] {
            c.put(k, v);
        }
        let h = PullRequestHeader::decode(&c).unwrap();
        assert_eq!((h.offset(), h.max_msgs(), h.suspend_ms(30_000)), (0, 32, 15_000));
        assert_eq!(h.sys_flag() & FLAG_SUSPEND, FLAG_SUSPEND);
    }

    #[test]
    fn required_fields_ranges_and_garbage() {
        let full = sample().request(rq::PULL_MESSAGE);
        each_required_field_is_checked(
            &full,
            &["consumerGroup", "topic", "queueId", "queueOffset"],
            PullRequestHeader::decode,
        );
        garbage_never_panics(&full, PullRequestHeader::decode);
        let mut big = sample();
        big.max_msg_nums = Some(1 << 30);
        big.suspend_timeout_millis = Some(i64::MAX);
        assert_eq!((big.max_msgs(), big.suspend_ms(1)), (MAX_MSGS as usize, MAX_SUSPEND_MS));
    }
}
