//! Topic administration: UPDATE_AND_CREATE_TOPIC (17), DELETE_TOPIC_IN_BROKER (215) and the topic views
//! GET_TOPIC_STATS_INFO (202) and QUERY_TOPIC_CONSUME_BY_WHO (300), which name only a `topic`.
//!
//! UPDATE_AND_CREATE_TOPIC `extFields` (RocketMQ's `CreateTopicRequestHeader`): `topic`,
//! `defaultTopic`, `readQueueNums`, `writeQueueNums`, `perm` (2 write, 4 read, 1 inherit),
//! `topicFilterType`, `topicSysFlag`, `order`, and from RocketMQ 5 `attributes`.

use super::{Checked, HeaderError, header, in_range};

/// Topic permission bits.
pub const PERM_INHERIT: u32 = 1;
pub const PERM_WRITE: u32 = 2;
pub const PERM_READ: u32 = 4;

header! {
    /// UPDATE_AND_CREATE_TOPIC. Queue counts are bounded by the broker's setting, checked by the
    /// handler (the header only knows they are positive).
    pub struct CreateTopicRequest {
        pub topic: String = "topic",
        pub default_topic: Option<String> = "defaultTopic",
        pub read_queue_nums: Option<u32> = "readQueueNums",
        pub write_queue_nums: Option<u32> = "writeQueueNums",
        pub perm: Option<u32> = "perm",
        pub topic_filter_type: Option<String> = "topicFilterType",
        pub topic_sys_flag: Option<u32> = "topicSysFlag",
        pub order: Option<bool> = "order",
        pub attributes: Option<String> = "attributes",
    }
}

impl Checked for CreateTopicRequest {
    fn check(&self) -> Result<(), HeaderError> {
        if let Some(p) = self.perm {
            in_range("perm", p, 0..=PERM_READ | PERM_WRITE | PERM_INHERIT)?;
        }
        if let Some(f) = self.topic_sys_flag {
            in_range("topicSysFlag", f, 0..=u32::MAX >> 1)?;
        }
        Ok(())
    }
}

header! {
    /// DELETE_TOPIC_IN_BROKER, GET_TOPIC_STATS_INFO, QUERY_TOPIC_CONSUME_BY_WHO, and the name
    /// server's DELETE_TOPIC_IN_NAMESRV.
    pub struct TopicRequest {
        pub topic: String = "topic",
    }
}
impl Checked for TopicRequest {}

header! {
    /// GET_CONSUME_STATS (208): a group's progress, on one topic or on all it consumes.
    pub struct ConsumeStatsRequest {
        pub consumer_group: String = "consumerGroup",
        pub topic: Option<String> = "topic",
    }
}
impl Checked for ConsumeStatsRequest {}

header! {
    /// QUERY_CONSUME_TIME_SPAN (303): store times of the queue bounds and a group's position.
    pub struct ConsumeTimeSpanRequest {
        pub topic: String = "topic",
        pub group: String = "group",
    }
}
impl Checked for ConsumeTimeSpanRequest {}

header! {
    /// GET_CONSUMER_CONNECTION_LIST (203).
    pub struct ConsumerConnectionRequest {
        pub consumer_group: String = "consumerGroup",
    }
}
impl Checked for ConsumerConnectionRequest {}

header! {
    /// GET_PRODUCER_CONNECTION_LIST (204).
    pub struct ProducerConnectionRequest {
        pub producer_group: String = "producerGroup",
    }
}
impl Checked for ProducerConnectionRequest {}

header! {
    /// GET_CONSUMER_RUNNING_INFO (307), relayed to the consumer with the same header.
    pub struct ConsumerRunningInfoRequest {
        pub consumer_group: String = "consumerGroup",
        pub client_id: String = "clientId",
        pub jstack_enable: Option<bool> = "jstackEnable",
    }
}
impl Checked for ConsumerRunningInfoRequest {}

header! {
    /// GET_BROKER_CONSUME_STATS (317).
    pub struct BrokerConsumeStatsRequest {
        pub is_order: Option<bool> = "isOrder",
    }
}
impl Checked for BrokerConsumeStatsRequest {}

header! {
    /// DELETE_SUBSCRIPTIONGROUP (207).
    pub struct DeleteGroupRequest {
        pub group_name: String = "groupName",
        pub clean_offset: Option<bool> = "cleanOffset",
    }
}
impl Checked for DeleteGroupRequest {}

header! {
    /// CLONE_GROUP_OFFSET (314): copies `srcGroup`'s offsets (of one `topic`, or all) to `destGroup`.
    pub struct CloneGroupOffsetRequest {
        pub src_group: String = "srcGroup",
        pub dest_group: String = "destGroup",
        pub topic: Option<String> = "topic",
        pub offline: Option<bool> = "offline",
    }
}
impl Checked for CloneGroupOffsetRequest {}

header! {
    /// GET_BROKER_CONFIG's answer: the version of the broker's topic table (JSON `DataVersion`)
    /// beside the `key=value` body.
    pub struct BrokerConfigResponse {
        pub version: String = "version",
    }
}
impl Checked for BrokerConfigResponse {}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::protocol::codes::request as rq;

    #[test]
    fn create_topic_round_trips_and_checks_ranges() {
        let t = CreateTopicRequest {
            topic: "T".into(),
            default_topic: Some("TBW102".into()),
            read_queue_nums: Some(8),
            write_queue_nums: Some(8),
            perm: Some(6),
            topic_filter_type: Some("SINGLE_TAG".into()),
            topic_sys_flag: Some(0),
            order: Some(false),
            attributes: None,
        };
        let c = t.request(rq::UPDATE_AND_CREATE_TOPIC);
        assert_eq!(CreateTopicRequest::decode(&over_the_wire(&c)), Ok(t));
        each_required_field_is_checked(&c, &["topic"], CreateTopicRequest::decode);
        garbage_never_panics(&c, CreateTopicRequest::decode);
        for (k, v) in [("perm", "8"), ("readQueueNums", "-1"), ("topicSysFlag", "4294967295")] {
            let mut bad = c.clone();
            bad.put(k, v);
            assert_eq!(CreateTopicRequest::decode(&bad).unwrap_err().field, k, "{k}={v}");
        }
    }

    #[test]
    fn admin_headers_round_trip() {
        let c =
            CloneGroupOffsetRequest { src_group: "A".into(), dest_group: "B".into(), topic: None, offline: Some(true) };
        assert_eq!(CloneGroupOffsetRequest::decode(&over_the_wire(&c.request(rq::CLONE_GROUP_OFFSET))), Ok(c.clone()));
        each_required_field_is_checked(
            &c.request(rq::CLONE_GROUP_OFFSET),
            &["srcGroup", "destGroup"],
            CloneGroupOffsetRequest::decode,
        );
        let r = ConsumerRunningInfoRequest { consumer_group: "G".into(), client_id: "c".into(), jstack_enable: None };
        assert_eq!(
            ConsumerRunningInfoRequest::decode(&over_the_wire(&r.request(rq::GET_CONSUMER_RUNNING_INFO))),
            Ok(r)
        );
    }
}
