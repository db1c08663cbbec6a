//! Name server commands: REGISTER_BROKER (103), UNREGISTER_BROKER (104), GET_ROUTEINFO_BY_TOPIC
//! (105) and the KV config commands (100 put, 101 get, 102 delete, 219 list a namespace).
//!
//! REGISTER_BROKER `extFields`: `brokerName`, `brokerAddr` (host:port), `clusterName`,
//! `haServerAddr`, `brokerId` (0 master, ≥ 1 slave), `compressed`, `bodyCrc32`,
//! `heartbeatTimeoutMillis`; its body is the JSON `RegisterBrokerBody` (topic config wrapper and filter
//! servers). The answer carries `haServerAddr` and `masterAddr`. Route queries name a `topic` and are
//! answered with the `TopicRouteData` JSON body; GET_BROKER_CLUSTER_INFO (106) with `ClusterInfo`;
//! the topic-list commands with `TopicList`. Those bodies are typed here once: the name server
//! encodes them, the client and the admin tool decode them. Fields are declared in alphabetical order,
//! the order fastjson writes them, so the encoding is byte-for-byte what Java name servers send.

use super::body;
use super::{Checked, HeaderError, header};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Broker id of a replica set's master; slaves have ids ≥ 1.
pub const MASTER_ID: i64 = 0;

/// A topic's route (GET_ROUTEINFO_BY_TOPIC's answer): the brokers that hold it and its queues on each.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicRouteData {
    #[serde(default, deserialize_with = "body::list")]
    pub broker_datas: Vec<BrokerData>,
    #[serde(default, deserialize_with = "body::or_default")]
    pub filter_server_table: BTreeMap<String, Vec<String>>,
    #[serde(default, deserialize_with = "body::list")]
    pub queue_datas: Vec<QueueData>,
}

/// One broker (replica set) of a route or cluster: its cluster and the address of each replica by id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BrokerData {
    #[serde(default)]
    pub broker_addrs: BTreeMap<i64, String>,
    #[serde(default, deserialize_with = "body::string")]
    pub broker_name: String,
    #[serde(default, deserialize_with = "body::string")]
    pub cluster: String,
    #[serde(default, deserialize_with = "body::or_default")]
    pub enable_acting_master: bool,
}

impl BrokerData {
    /// The master's address, when the master is registered.
    pub fn master_addr(&self) -> Option<&str> {
        self.broker_addrs.get(&MASTER_ID).map(String::as_str)
    }
}

/// A topic's queues on one broker.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueData {
    #[serde(default, deserialize_with = "body::string")]
    pub broker_name: String,
    #[serde(flatten)]
    pub queues: TopicQueues,
}

/// Read and write: RocketMQ's default permission of a topic.
fn default_perm() -> u32 {
    6
}

impl Default for TopicQueues {
    fn default() -> TopicQueues {
        TopicQueues { perm: default_perm(), read_queue_nums: 0, topic_sys_flag: 0, write_queue_nums: 0 }
    }
}

/// REGISTER_BROKER's body: the broker's topics (only a master's are taken into routes). A body
/// without a topic table leaves the broker's topics as they were.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterBrokerBody {
    #[serde(default)]
    pub topic_config_serialize_wrapper: Option<TopicConfigWrapper>,
}

/// The topic table of a registration (RocketMQ's `TopicConfigSerializeWrapper`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicConfigWrapper {
    #[serde(default)]
    pub topic_config_table: Option<BTreeMap<String, TopicQueues>>,
    /// `stateVersion` is the master epoch of a replicated broker (RocketMQ 5's controller mode): the
    /// name server ignores a master registration older than the one it holds.
    #[serde(default)]
    pub data_version: Option<StateVersion>,
}

/// The part of RocketMQ's `DataVersion` the name server reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateVersion {
    #[serde(default, deserialize_with = "body::or_default")]
    pub state_version: u64,
}

/// A topic's queues and permission on one broker: what a route says of it, and what the name
/// server keeps of a registered topic config (the broker sends every field of its `TopicConfig`;
/// the rest is the broker's business).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicQueues {
    /// PERM_READ | PERM_WRITE bits (topics.rs).
    #[serde(default = "default_perm", deserialize_with = "body::number")]
    pub perm: u32,
    #[serde(default, deserialize_with = "body::number")]
    pub read_queue_nums: u32,
    #[serde(default, deserialize_with = "body::or_default")]
    pub topic_sys_flag: u32,
    #[serde(default, deserialize_with = "body::number")]
    pub write_queue_nums: u32,
}

/// GET_BROKER_CLUSTER_INFO's answer: every broker, and the broker names of each cluster.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterInfo {
    #[serde(default)]
    pub broker_addr_table: BTreeMap<String, BrokerData>,
    #[serde(default)]
    pub cluster_addr_table: BTreeMap<String, BTreeSet<String>>,
}

/// A list of topics (GET_ALL_TOPIC_LIST_FROM_NAMESERVER, GET_TOPICS_BY_CLUSTER,
/// GET_SYSTEM_TOPIC_LIST_FROM_NS, GET_SYSTEM_TOPIC_LIST_FROM_BROKER); the system list also names the
/// address of one master as `brokerAddr`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicList {
    #[serde(default, deserialize_with = "body::opt_string", skip_serializing_if = "Option::is_none")]
    pub broker_addr: Option<String>,
    #[serde(default, deserialize_with = "body::list")]
    pub topic_list: Vec<String>,
}

header! {
    /// REGISTER_BROKER.
    pub struct RegisterBrokerRequest {
        pub broker_name: String = "brokerName",
        pub broker_addr: String = "brokerAddr",
        pub cluster_name: String = "clusterName",
        pub broker_id: i64 = "brokerId",
        pub ha_server_addr: Option<String> = "haServerAddr",
        pub compressed: Option<bool> = "compressed",
        pub body_crc32: Option<i64> = "bodyCrc32",
        pub heartbeat_timeout_millis: Option<u64> = "heartbeatTimeoutMillis",
    }
}

impl Checked for RegisterBrokerRequest {
    fn check(&self) -> Result<(), HeaderError> {
        if self.broker_id < 0 {
            return Err(HeaderError::new("brokerId", format!("= {} is negative", self.broker_id)));
        }
        Ok(())
    }
}

header! {
    /// UNREGISTER_BROKER: the address is what identifies the registration to drop.
    pub struct UnregisterBrokerRequest {
        pub broker_addr: String = "brokerAddr",
        pub broker_name: Option<String> = "brokerName",
        pub cluster_name: Option<String> = "clusterName",
        pub broker_id: Option<i64> = "brokerId",
    }
}
impl Checked for UnregisterBrokerRequest {}

header! {
    /// GET_TOPICS_BY_CLUSTER.
    pub struct ClusterRequest {
        pub cluster: String = "cluster",
    }
}
impl Checked for ClusterRequest {}

header! {
    /// The answer to REGISTER_BROKER.
    pub struct RegisterBrokerResponse {
        pub ha_server_addr: String = "haServerAddr",
        pub master_addr: String = "masterAddr",
    }
}
impl Checked for RegisterBrokerResponse {}

header! {
    /// GET_ROUTEINFO_BY_TOPIC.
    pub struct RouteRequest {
        pub topic: String = "topic",
    }
}
impl Checked for RouteRequest {}

header! {
    /// PUT_KV_CONFIG, GET_KV_CONFIG and DELETE_KV_CONFIG (`value` only on put), and
    /// GET_KVLIST_BY_NAMESPACE (`namespace` only).
    pub struct KvRequest {
        pub namespace: String = "namespace",
        pub key: Option<String> = "key",
        pub value: Option<String> = "value",
    }
}
impl Checked for KvRequest {}

header! {
    /// GET_KV_CONFIG's answer.
    pub struct KvValueResponse {
        pub value: String = "value",
    }
}
impl Checked for KvValueResponse {}

impl KvRequest {
    pub fn key(&self) -> Result<&str, HeaderError> {
        self.key.as_deref().ok_or_else(|| HeaderError::new("key", "is required but missing"))
    }
    pub fn value(&self) -> Result<&str, HeaderError> {
        self.value.as_deref().ok_or_else(|| HeaderError::new("value", "is required but missing"))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::protocol::codes::request as rq;

    #[test]
    fn register_round_trips_and_checks() {
        let r = RegisterBrokerRequest {
            broker_name: "ringmq-0".into(),
            broker_addr: "127.0.0.1:10911".into(),
            cluster_name: "DefaultCluster".into(),
            broker_id: 0,
            ha_server_addr: Some("127.0.0.1:10912".into()),
            compressed: Some(false),
            body_crc32: Some(0),
            heartbeat_timeout_millis: Some(120_000),
        };
        let c = r.request(rq::REGISTER_BROKER);
        assert_eq!(RegisterBrokerRequest::decode(&over_the_wire(&c)), Ok(r));
        each_required_field_is_checked(
            &c,
            &["brokerName", "brokerAddr", "clusterName", "brokerId"],
            RegisterBrokerRequest::decode,
        );
        garbage_never_panics(&c, RegisterBrokerRequest::decode);
        let mut neg = c.clone();
        neg.put("brokerId", -1);
        assert_eq!(RegisterBrokerRequest::decode(&neg).unwrap_err().field, "brokerId");
        let kv = KvRequest { namespace: "ns".into(), key: None, value: None };
        assert_eq!(KvRequest::decode(&kv.request(rq::GET_KV_CONFIG)).unwrap().key().unwrap_err().field, "key");
        let mut resp = kv.request(rq::GET_KV_CONFIG).response_to(0);
        KvValueResponse { value: "v".into() }.encode(&mut resp);
        assert_eq!(KvValueResponse::decode(&over_the_wire(&resp)).unwrap().value, "v");
        each_required_field_is_checked(&resp, &["value"], KvValueResponse::decode);
    }

    #[test]
    fn route_data_is_written_as_java_name_servers_write_it_and_read_leniently() {
        let route = TopicRouteData {
            broker_datas: vec![BrokerData {
                broker_addrs: [(0, "127.0.0.1:10911".to_string())].into(),
                broker_name: "b-0".into(),
                cluster: "C".into(),
                enable_acting_master: false,
            }],
            filter_server_table: BTreeMap::new(),
            queue_datas: vec![QueueData {
                broker_name: "b-0".into(),
                queues: TopicQueues { perm: 6, read_queue_nums: 4, topic_sys_flag: 0, write_queue_nums: 4 },
            }],
        };
        let json = body::encode_json(&route);
        let expected = r#"{"brokerDatas":[{"brokerAddrs":{"0":"127.0.0.1:10911"},"brokerName":"b-0","cluster":"C","enableActingMaster":false}],"filterServerTable":{},"queueDatas":[{"brokerName":"b-0","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}]}"#;
        assert_eq!(json, expected);
        assert_eq!(body::decode_json::<TopicRouteData>("r", json.as_bytes()).unwrap(), route);
        assert_eq!(route.broker_datas[0].master_addr(), Some("127.0.0.1:10911"));
        // Numbers as strings, a missing perm (read and write), no master, unknown fields.
        let odd = br#"{"brokerDatas":[{"brokerAddrs":{"1":"s:1"},"brokerName":"b"}],"orderTopicConf":null,
            "queueDatas":[{"brokerName":"b","readQueueNums":"2","writeQueueNums":3}]}"#;
        let r: TopicRouteData = body::decode_json("r", odd).unwrap();
        assert_eq!((r.queue_datas[0].queues.perm, r.queue_datas[0].queues.read_queue_nums), (6, 2));
        assert_eq!(r.broker_datas[0].master_addr(), None);
        let bad = br#"{"queueDatas":[{"brokerName":"b","readQueueNums":-1}]}"#;
        assert!(body::decode_json::<TopicRouteData>("r", bad).is_err(), "a negative queue count");
        let list = TopicList { broker_addr: None, topic_list: vec!["T".into()] };
        assert_eq!(body::encode_json(&list), r#"{"topicList":["T"]}"#);
    }
}
