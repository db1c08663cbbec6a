//! Bodies of the admin views a broker answers (RocketMQ's admin tool and dashboards read them):
//! GET_CONSUMER_CONNECTION_LIST (203, `ConsumerConnection`), GET_PRODUCER_CONNECTION_LIST (204,
//! `ProducerConnection`), QUERY_TOPIC_CONSUME_BY_WHO (300, `GroupList`) and QUERY_CONSUME_TIME_SPAN
//! (303, `QueryConsumeTimeSpanBody`). Fields are in fastjson's (alphabetical) order.
//!
//! The views keyed by a queue object — `TopicStatsTable`, `ConsumeStats`, `ConsumeStatsList` — are
//! not standard JSON (fastjson writes a `MessageQueue` object as a map key); they are written and
//! read through `protocol/offset_table.rs`, the one place that knows that quirk.

use super::body::{self, MessageQueue};
use super::clients::SubscriptionData;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// One client connection (RocketMQ's `Connection`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionData {
    #[serde(default, deserialize_with = "body::string")]
    pub client_addr: String,
    #[serde(default, deserialize_with = "body::string")]
    pub client_id: String,
    #[serde(default, deserialize_with = "body::string")]
    pub language: String,
    #[serde(default, deserialize_with = "body::or_default")]
    pub version: i32,
}

/// A consumer group's live members here, how it consumes and its subscriptions by topic.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerConnectionBody {
    #[serde(default, deserialize_with = "body::list")]
    pub connection_set: Vec<ConnectionData>,
    #[serde(default, deserialize_with = "body::string")]
    pub consume_from_where: String,
    #[serde(default, deserialize_with = "body::string")]
    pub consume_type: String,
    #[serde(default, deserialize_with = "body::string")]
    pub message_model: String,
    #[serde(default)]
    pub subscription_table: BTreeMap<String, SubscriptionData>,
}

/// A producer group's live members here.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProducerConnectionBody {
    #[serde(default, deserialize_with = "body::list")]
    pub connection_set: Vec<ConnectionData>,
}

/// The groups consuming a topic.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupList {
    #[serde(default)]
    pub group_list: BTreeSet<String>,
}

/// One queue's time span (RocketMQ's `QueueTimeSpan`): store times of its first and last message
/// and of the last one the group consumed, and how long the next one has waited (ms).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueTimeSpan {
    #[serde(default, deserialize_with = "body::or_default")]
    pub consume_time_stamp: i64,
    #[serde(default, deserialize_with = "body::or_default")]
    pub consume_time_stamp_str: String,
    #[serde(default, deserialize_with = "body::or_default")]
    pub delay_time: i64,
    #[serde(default, deserialize_with = "body::or_default")]
    pub max_time_stamp: i64,
    #[serde(default, deserialize_with = "body::or_default")]
    pub max_time_stamp_str: String,
    pub message_queue: MessageQueue,
    #[serde(default, deserialize_with = "body::or_default")]
    pub min_time_stamp: i64,
    #[serde(default, deserialize_with = "body::or_default")]
    pub min_time_stamp_str: String,
}

/// QUERY_CONSUME_TIME_SPAN's answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumeTimeSpanBody {
    #[serde(default, deserialize_with = "body::list")]
    pub consume_time_span_set: Vec<QueueTimeSpan>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_round_trip_and_keep_the_java_field_names() {
        let c = ConsumerConnectionBody {
            connection_set: vec![ConnectionData {
                client_addr: "127.0.0.1:5".into(),
                client_id: "c@1".into(),
                language: "JAVA".into(),
                version: 435,
            }],
            consume_from_where: "CONSUME_FROM_LAST_OFFSET".into(),
            consume_type: "CONSUME_PASSIVELY".into(),
            message_model: "CLUSTERING".into(),
            subscription_table: [("T".to_string(), SubscriptionData::new("T", "a", "TAG"))].into(),
        };
        let json = body::encode_json(&c);
        assert!(json.starts_with(r#"{"connectionSet":[{"clientAddr":"127.0.0.1:5","clientId":"c@1","#), "{json}");
        assert_eq!(body::decode_json::<ConsumerConnectionBody>("c", json.as_bytes()).unwrap(), c);
        let span = QueueTimeSpan {
            message_queue: MessageQueue { topic: "T".into(), broker_name: "b".into(), queue_id: 1 },
            delay_time: 7,
            ..Default::default()
        };
        let spans = ConsumeTimeSpanBody { consume_time_span_set: vec![span] };
        let back: ConsumeTimeSpanBody = body::decode_json("s", body::encode_json(&spans).as_bytes()).unwrap();
        assert_eq!(back, spans);
        let groups = GroupList { group_list: ["G".to_string()].into() };
        assert_eq!(body::encode_json(&groups), r#"{"groupList":["G"]}"#);
    }
}
