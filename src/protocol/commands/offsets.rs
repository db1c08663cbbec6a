//! Consumer offsets and queue bounds: QUERY_CONSUMER_OFFSET (14), UPDATE_CONSUMER_OFFSET (15),
//! GET_MAX_OFFSET (30), GET_MIN_OFFSET (31), SEARCH_OFFSET_BY_TIMESTAMP (29), GET_EARLIEST_MSG_STORETIME
//! (32) and INVOKE_BROKER_TO_RESET_OFFSET (222) with its push RESET_CONSUMER_CLIENT_OFFSET (220).
//!
//! Each request names a queue (`topic`, `queueId`, and a `consumerGroup` where the group matters);
//! answers carry `offset` (or `timestamp` for 32) in `extFields`. 222 answers and 220 pushes carry the
//! resulting offset table as their body (`protocol::offset_table`).

use super::{Checked, header};

header! {
    /// QUERY_CONSUMER_OFFSET: the group's committed offset of a queue.
    pub struct QueryConsumerOffsetRequest {
        pub consumer_group: String = "consumerGroup",
        pub topic: String = "topic",
        pub queue_id: i32 = "queueId",
        /// RocketMQ 5: `false` asks for QUERY_NOT_FOUND instead of the young-queue rule's 0.
        pub set_zero_if_not_found: Option<bool> = "setZeroIfNotFound",
    }
}
impl Checked for QueryConsumerOffsetRequest {}

header! {
    /// UPDATE_CONSUMER_OFFSET: commits the group's offset of a queue (negative offsets are ignored).
    pub struct UpdateConsumerOffsetRequest {
        pub consumer_group: String = "consumerGroup",
        pub topic: String = "topic",
        pub queue_id: i32 = "queueId",
        pub commit_offset: i64 = "commitOffset",
    }
}
impl Checked for UpdateConsumerOffsetRequest {}

header! {
    /// GET_MAX_OFFSET, GET_MIN_OFFSET and GET_EARLIEST_MSG_STORETIME: one queue.
    pub struct QueueRequest {
        pub topic: String = "topic",
        pub queue_id: i32 = "queueId",
    }
}
impl Checked for QueueRequest {}

header! {
    /// SEARCH_OFFSET_BY_TIMESTAMP: the first offset stored at or after `timestamp` (`boundaryType`
    /// `upper`: the last stored at or before it).
    pub struct SearchOffsetRequest {
        pub topic: String = "topic",
        pub queue_id: i32 = "queueId",
        pub timestamp: i64 = "timestamp",
        pub boundary_type: Option<String> = "boundaryType",
    }
}
impl Checked for SearchOffsetRequest {}

impl SearchOffsetRequest {
    pub fn upper(&self) -> bool {
        self.boundary_type.as_deref().is_some_and(|v| v.eq_ignore_ascii_case("upper"))
    }
}

header! {
    /// The answer of 14, 29, 30 and 31.
    pub struct OffsetResponse {
        pub offset: u64 = "offset",
    }
}
impl Checked for OffsetResponse {}

header! {
    /// The answer of GET_EARLIEST_MSG_STORETIME.
    pub struct StoreTimeResponse {
        pub timestamp: i64 = "timestamp",
    }
}
impl Checked for StoreTimeResponse {}

header! {
    /// INVOKE_BROKER_TO_RESET_OFFSET (222), and the RESET_CONSUMER_CLIENT_OFFSET (220) push it causes:
    /// moves `group`'s offsets of `topic` to the first message at or after `timestamp` (−1: the end),
    /// or to `offset` for one `queueId`; without `isForce` an offset only moves backwards.
    pub struct ResetOffsetRequest {
        pub topic: String = "topic",
        pub group: String = "group",
        pub timestamp: i64 = "timestamp",
        pub is_force: Option<bool> = "isForce",
        pub queue_id: Option<i32> = "queueId",
        pub offset: Option<i64> = "offset",
    }
}
impl Checked for ResetOffsetRequest {}

impl ResetOffsetRequest {
    pub fn force(&self) -> bool {
        self.is_force.unwrap_or(true)
    }

    /// The one queue reset, when the request names one.
    pub fn queue(&self) -> Option<i32> {
        self.queue_id.filter(|&q| q >= 0)
    }

    /// The explicit target offset: only with a queue id, as RocketMQ 5 defines it.
    pub fn explicit_offset(&self) -> Option<u64> {
        self.offset.filter(|&o| o >= 0 && self.queue().is_some()).map(|o| o as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::protocol::codes::request as rq;

    #[test]
    fn round_trips_required_fields_and_garbage() {
        let u = UpdateConsumerOffsetRequest {
            consumer_group: "G".into(),
            topic: "T".into(),
            queue_id: 2,
            commit_offset: 40,
        };
        let c = u.request(rq::UPDATE_CONSUMER_OFFSET);
        assert_eq!(UpdateConsumerOffsetRequest::decode(&over_the_wire(&c)), Ok(u));
        each_required_field_is_checked(&c, UpdateConsumerOffsetRequest::FIELDS, UpdateConsumerOffsetRequest::decode);
        garbage_never_panics(&c, UpdateConsumerOffsetRequest::decode);

        let s =
            SearchOffsetRequest { topic: "T".into(), queue_id: 0, timestamp: 5, boundary_type: Some("UPPER".into()) };
        let c = s.request(rq::SEARCH_OFFSET_BY_TIMESTAMP);
        let back = SearchOffsetRequest::decode(&over_the_wire(&c)).unwrap();
        assert!(back.upper());
        each_required_field_is_checked(&c, &["topic", "queueId", "timestamp"], SearchOffsetRequest::decode);

        let r = ResetOffsetRequest {
            topic: "T".into(),
            group: "G".into(),
            timestamp: -1,
            offset: Some(3),
            ..Default::default()
        };
        let back = ResetOffsetRequest::decode(&over_the_wire(&r.request(rq::INVOKE_BROKER_TO_RESET_OFFSET))).unwrap();
        assert_eq!((back.force(), back.queue(), back.explicit_offset()), (true, None, None), "offset needs a queue");
    }
}
