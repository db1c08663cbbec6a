//! Client registration and membership: HEART_BEAT (34, JSON body `HeartbeatData`), UNREGISTER_CLIENT
//! (35), GET_CONSUMER_LIST_BY_GROUP (38), NOTIFY_CONSUMER_IDS_CHANGED (40, broker → consumer), and the
//! queue locks of orderly consumers LOCK_BATCH_MQ / UNLOCK_BATCH_MQ (41, 42, JSON body
//! `{consumerGroup, clientId, mqSet}`), and CHECK_CLIENT_CONFIG (46, JSON body `{subscriptionData}`).
//!
//! The bodies are typed here once: the broker decodes them, the client encodes them. Field names
//! are RocketMQ's (`clientID` in a heartbeat, `clientId` in a lock body — both as the Java client
//! spells them).

use super::body::{self, MessageQueue};
use super::{Checked, header};
use serde::{Deserialize, Serialize};

/// HEART_BEAT's body: the client and the producer and consumer groups it registers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatData {
    #[serde(
        rename = "clientID",
        default,
        deserialize_with = "body::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub client_id: Option<String>,
    #[serde(default, deserialize_with = "body::list")]
    pub producer_data_set: Vec<ProducerData>,
    #[serde(default, deserialize_with = "body::list")]
    pub consumer_data_set: Vec<ConsumerData>,
    /// The client sends no subscriptions this time (RocketMQ 5's heartbeat v2); the broker keeps the
    /// ones it has.
    #[serde(default, deserialize_with = "body::boolean")]
    pub without_sub: bool,
}

/// A producer group of a heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProducerData {
    #[serde(default, deserialize_with = "body::opt_string")]
    pub group_name: Option<String>,
}

/// A consumer group of a heartbeat: how it consumes and what it subscribes to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerData {
    #[serde(default, deserialize_with = "body::opt_string")]
    pub group_name: Option<String>,
    /// `CONSUME_ACTIVELY` (pull) or `CONSUME_PASSIVELY` (push).
    #[serde(default, deserialize_with = "body::opt_string", skip_serializing_if = "Option::is_none")]
    pub consume_type: Option<String>,
    /// `CLUSTERING` or `BROADCASTING`, or their ordinals 1 and 0 (see [`ConsumerData::model`]).
    #[serde(default, deserialize_with = "body::opt_string", skip_serializing_if = "Option::is_none")]
    pub message_model: Option<String>,
    #[serde(default, deserialize_with = "body::opt_string", skip_serializing_if = "Option::is_none")]
    pub consume_from_where: Option<String>,
    #[serde(default, deserialize_with = "body::list")]
    pub subscription_data_set: Vec<SubscriptionData>,
    #[serde(default, deserialize_with = "body::or_default")]
    pub unit_mode: bool,
    #[serde(default, deserialize_with = "body::boolean", skip_serializing_if = "std::ops::Not::not")]
    pub without_sub: bool,
}

impl ConsumerData {
    /// The message model by name: the Java client sends the enum name, some clients its ordinal.
    pub fn model(&self) -> String {
        match self.message_model.as_deref() {
            None | Some("1") => "CLUSTERING".into(),
            Some("0") => "BROADCASTING".into(),
            Some(m) => m.to_string(),
        }
    }
}

/// One subscription: a topic and its filter expression.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionData {
    #[serde(default, deserialize_with = "body::or_default")]
    pub class_filter_mode: bool,
    /// The tags of a TAG expression and their Java string hashes (what Java brokers filter on).
    #[serde(default, deserialize_with = "body::or_default")]
    pub code_set: Vec<i64>,
    /// `TAG` (the default) or `SQL92`.
    #[serde(default, deserialize_with = "body::opt_string")]
    pub expression_type: Option<String>,
    /// The expression; `*` (all) when absent.
    #[serde(default, deserialize_with = "body::opt_string")]
    pub sub_string: Option<String>,
    #[serde(default, deserialize_with = "body::or_default")]
    pub sub_version: i64,
    #[serde(default, deserialize_with = "body::or_default")]
    pub tags_set: Vec<String>,
    #[serde(default, deserialize_with = "body::opt_string")]
    pub topic: Option<String>,
}

impl SubscriptionData {
    /// A subscription to `topic` by `expr` of `kind`, with the tag set and hashes a TAG expression
    /// carries (Java brokers filter on those; ringmq parses the expression).
    pub fn new(topic: &str, expr: &str, kind: &str) -> SubscriptionData {
        let tags: Vec<String> = if kind != "TAG" || expr.trim() == "*" {
            Vec::new()
        } else {
            expr.split("||").map(str::trim).filter(|t| !t.is_empty()).map(String::from).collect()
        };
        SubscriptionData {
            topic: Some(topic.into()),
            sub_string: Some(expr.into()),
            expression_type: Some(kind.into()),
            sub_version: 0,
            class_filter_mode: false,
            code_set: tags.iter().map(|t| crate::protocol::message::java_string_hash(t)).collect(),
            tags_set: tags,
        }
    }

    /// (expression type, expression) with RocketMQ's defaults (`TAG`, `*`).
    pub fn expression(&self) -> (String, String) {
        let kind = self.expression_type.clone().unwrap_or_else(|| "TAG".into());
        (kind, self.sub_string.clone().unwrap_or_else(|| "*".into()))
    }
}

/// LOCK_BATCH_MQ's and UNLOCK_BATCH_MQ's body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockBatchRequestBody {
    #[serde(default, deserialize_with = "body::string")]
    pub consumer_group: String,
    #[serde(default, deserialize_with = "body::string")]
    pub client_id: String,
    #[serde(default, deserialize_with = "body::boolean")]
    pub only_this_broker: bool,
    #[serde(default, deserialize_with = "body::list")]
    pub mq_set: Vec<MessageQueue>,
}

/// LOCK_BATCH_MQ's response body: the queues now locked by the requester.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LockBatchResponseBody {
    #[serde(rename = "lockOKMQSet", default, deserialize_with = "body::list")]
    pub lock_ok_mq_set: Vec<MessageQueue>,
}

/// GET_CONSUMER_LIST_BY_GROUP's response body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerIdList {
    #[serde(default, deserialize_with = "body::list")]
    pub consumer_id_list: Vec<String>,
}

/// CHECK_CLIENT_CONFIG's body: a subscription to validate before a consumer starts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckClientConfigBody {
    #[serde(default, deserialize_with = "body::opt_string", skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, deserialize_with = "body::opt_string", skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default)]
    pub subscription_data: SubscriptionData,
}

header! {
    /// UNREGISTER_CLIENT.
    pub struct UnregisterClientRequest {
        pub client_id: String = "clientID",
        pub producer_group: Option<String> = "producerGroup",
        pub consumer_group: Option<String> = "consumerGroup",
    }
}
impl Checked for UnregisterClientRequest {}

header! {
    /// HEART_BEAT's answer: whether the broker took new subscriptions (RocketMQ 5's heartbeat v2 sends
    /// the next heartbeat without subscriptions when this is false; ringmq always says true, so
    /// clients keep sending them).
    pub struct HeartbeatResponse {
        pub is_sub_change: Option<bool> = "IS_SUB_CHANGE",
    }
}
impl Checked for HeartbeatResponse {}

header! {
    /// GET_CONSUMER_LIST_BY_GROUP, and the NOTIFY_CONSUMER_IDS_CHANGED push.
    pub struct ConsumerGroupRequest {
        pub consumer_group: String = "consumerGroup",
    }
}
impl Checked for ConsumerGroupRequest {}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::protocol::Command;
    use crate::protocol::codes::request as rq;

    #[test]
    fn round_trips_and_required_fields() {
        let u =
            UnregisterClientRequest { client_id: "c@1".into(), producer_group: None, consumer_group: Some("G".into()) };
        let c = u.request(rq::UNREGISTER_CLIENT);
        assert_eq!(UnregisterClientRequest::decode(&over_the_wire(&c)), Ok(u));
        each_required_field_is_checked(&c, &["clientID"], UnregisterClientRequest::decode);
        let g = ConsumerGroupRequest { consumer_group: "G".into() };
        let c = g.request(rq::GET_CONSUMER_LIST_BY_GROUP);
        assert_eq!(ConsumerGroupRequest::decode(&over_the_wire(&c)), Ok(g));
        garbage_never_panics(&c, ConsumerGroupRequest::decode);
        let mut resp = Command::request(rq::HEART_BEAT).response_to(0);
        HeartbeatResponse { is_sub_change: Some(true) }.encode(&mut resp);
        assert_eq!(resp.field("IS_SUB_CHANGE"), Some("true"));
        assert_eq!(HeartbeatResponse::decode(&over_the_wire(&resp)).unwrap().is_sub_change, Some(true));
    }

    /// What the Java client 5.x sends (fastjson, fields in alphabetical order, with the ones ringmq
    /// does not read).
    const JAVA_HEARTBEAT: &str = r#"{"clientID":"10.0.0.1@4242#1","consumerDataSet":[{"consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","consumeType":"CONSUME_PASSIVELY","groupName":"G","messageModel":"CLUSTERING","subscriptionDataSet":[{"classFilterMode":false,"codeSet":[2653],"expressionType":"TAG","subString":"a || b","subVersion":1733000000000,"tagsSet":["a","b"],"topic":"T"}],"unitMode":false}],"heartbeatFingerprint":0,"producerDataSet":[{"groupName":"CLIENT_INNER_PRODUCER"}],"withoutSub":false}"#;

    #[test]
    fn heartbeat_decodes_the_java_clients_body_and_round_trips() {
        let h: HeartbeatData = body::decode_json("HeartbeatData", JAVA_HEARTBEAT.as_bytes()).unwrap();
        assert_eq!(h.client_id.as_deref(), Some("10.0.0.1@4242#1"));
        assert_eq!(h.producer_data_set[0].group_name.as_deref(), Some("CLIENT_INNER_PRODUCER"));
        let c = &h.consumer_data_set[0];
        assert_eq!((c.group_name.as_deref(), c.model()), (Some("G"), "CLUSTERING".to_string()));
        let s = &c.subscription_data_set[0];
        assert_eq!((s.topic.as_deref(), s.expression()), (Some("T"), ("TAG".to_string(), "a || b".to_string())));
        assert_eq!(s.tags_set, ["a", "b"]);
        let back: HeartbeatData = body::decode_json("HeartbeatData", body::encode_json(&h).as_bytes()).unwrap();
        assert_eq!(back, h);
    }

    #[test]
    fn heartbeat_accepts_the_spellings_other_clients_use() {
        // Ordinals for the model, nulls for lists, numbers for strings, fields of unexpected types
        // the broker does not read, and nothing at all.
        let odd = r#"{"clientID":7,"producerDataSet":null,"consumerDataSet":[{"groupName":"G","messageModel":0,
            "subscriptionDataSet":[{"topic":"T","codeSet":"?","tagsSet":null,"subVersion":"x"}],"unitMode":"no"}],
            "withoutSub":"TRUE"}"#;
        let h: HeartbeatData = body::decode_json("HeartbeatData", odd.as_bytes()).unwrap();
        assert_eq!(h.client_id.as_deref(), Some("7"));
        assert!(h.producer_data_set.is_empty() && h.without_sub);
        assert_eq!(h.consumer_data_set[0].model(), "BROADCASTING");
        assert_eq!(h.consumer_data_set[0].subscription_data_set[0].expression(), ("TAG".into(), "*".into()));
        assert_eq!(body::decode_json::<HeartbeatData>("h", b"{}").unwrap(), HeartbeatData::default());
        for junk in [&b"{\"consumerDataSet\":{}}"[..], b"{\"clientID\":[1]}", b"", b"{"] {
            assert!(body::decode_json::<HeartbeatData>("h", junk).is_err(), "{:?}", String::from_utf8_lossy(junk));
        }
    }

    #[test]
    fn a_tag_subscription_carries_its_tags_and_their_java_hashes() {
        let s = SubscriptionData::new("T", "a || b", "TAG");
        assert_eq!(s.tags_set, ["a", "b"]);
        assert_eq!(s.code_set, [97, 98]);
        assert!(SubscriptionData::new("T", "*", "TAG").tags_set.is_empty());
        assert!(SubscriptionData::new("T", "a > 1", "SQL92").code_set.is_empty());
    }

    #[test]
    fn lock_bodies_round_trip_and_bad_queues_are_errors() {
        let mq = MessageQueue { topic: "T".into(), broker_name: "b-0".into(), queue_id: 2 };
        let req = LockBatchRequestBody {
            consumer_group: "G".into(),
            client_id: "c".into(),
            only_this_broker: false,
            mq_set: vec![mq.clone()],
        };
        let json = body::encode_json(&req);
        assert!(json.contains(r#""mqSet":[{"topic":"T","brokerName":"b-0","queueId":2}]"#), "{json}");
        assert_eq!(body::decode_json::<LockBatchRequestBody>("l", json.as_bytes()).unwrap(), req);
        let bad = br#"{"consumerGroup":"G","clientId":"c","mqSet":[{"topic":"T","queueId":"two"}]}"#;
        assert!(body::decode_json::<LockBatchRequestBody>("l", bad).is_err());
        let resp = LockBatchResponseBody { lock_ok_mq_set: vec![mq] };
        let json = body::encode_json(&resp);
        assert!(json.starts_with(r#"{"lockOKMQSet":["#), "{json}");
        assert_eq!(body::decode_json::<LockBatchResponseBody>("r", json.as_bytes()).unwrap(), resp);
        let ids = ConsumerIdList { consumer_id_list: vec!["a".into()] };
        assert_eq!(body::encode_json(&ids), r#"{"consumerIdList":["a"]}"#);
    }
}
