//! Topic configuration of one shard: the table, its persistence (`config/topics.json`), auto-creation
//! on first send (`TBW102` semantics), and the admin commands UPDATE_AND_CREATE_TOPIC,
//! DELETE_TOPIC_IN_BROKER and GET_ALL_TOPIC_CONFIG. Changes are fanned out to the other shards through
//! the control plane, so a topic has the same queues on every shard.

use super::Broker;
use super::config_file::ConfigFile;
use super::error::{BrokerError, Reply};
use crate::config::Config;
use crate::protocol::Command;
use crate::protocol::codes::response as rs;
use crate::protocol::commands::topics::{CreateTopicRequest, TopicRequest};
use crate::protocol::message::TOPIC_MAX_BYTES;
use crate::store::files::SharedFiles;
use crate::store::io::Disk;
use crate::store::now_ms;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

pub use crate::protocol::commands::topics::{PERM_INHERIT, PERM_READ, PERM_WRITE};
/// Template topic for auto-creation, exposed to clients when auto-create is on.
pub const DEFAULT_TOPIC: &str = "TBW102";
pub use crate::protocol::RETRY_PREFIX;
pub const DLQ_PREFIX: &str = "%DLQ%";

/// Topics clients may not send to.
const NOT_SENDABLE: [&str; 7] = [
    "SCHEDULE_TOPIC_XXXX",
    "rmq_sys_wheel_timer",
    "RMQ_SYS_TRANS_HALF_TOPIC",
    "RMQ_SYS_TRANS_OP_HALF_TOPIC",
    "TRANS_CHECK_MAX_TIME_TOPIC",
    "SELF_TEST_TOPIC",
    "OFFSET_MOVED_EVENT",
];

/// RocketMQ's TopicConfig, with its JSON field names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicConfig {
    pub topic_name: String,
    pub read_queue_nums: u32,
    pub write_queue_nums: u32,
    pub perm: u32,
    pub topic_filter_type: String,
    pub topic_sys_flag: u32,
    pub order: bool,
    pub attributes: BTreeMap<String, String>,
}

impl Default for TopicConfig {
    fn default() -> TopicConfig {
        TopicConfig {
            topic_name: String::new(),
            read_queue_nums: 4,
            write_queue_nums: 4,
            perm: PERM_READ | PERM_WRITE,
            topic_filter_type: "SINGLE_TAG".into(),
            topic_sys_flag: 0,
            order: false,
            attributes: BTreeMap::new(),
        }
    }
}

impl TopicConfig {
    pub fn new(name: &str, queues: u32, perm: u32) -> TopicConfig {
        TopicConfig {
            topic_name: name.into(),
            read_queue_nums: queues,
            write_queue_nums: queues,
            perm,
            ..Default::default()
        }
    }
}

/// RocketMQ's DataVersion: bumped on every change so the name server knows to refresh.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct DataVersion {
    pub counter: u64,
    pub state_version: u64,
    pub timestamp: i64,
}

/// The topic table of one shard.
#[derive(Debug)]
pub struct TopicTable {
    pub topics: BTreeMap<String, TopicConfig>,
    pub version: DataVersion,
    file: ConfigFile,
}

/// Why a topic name is refused, or None when valid.
pub fn invalid_topic_name(name: &str) -> Option<String> {
    if name.trim().is_empty() {
        return Some("the topic name is blank".into());
    }
    if name.len() > TOPIC_MAX_BYTES {
        return Some(format!("the topic name is longer than {TOPIC_MAX_BYTES} bytes"));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"%_|-".contains(&b)) {
        return Some(format!("the topic name {name:?} has characters outside [A-Za-z0-9%_|-]"));
    }
    None
}

/// RocketMQ's system topics among `names` (GET_SYSTEM_TOPIC_LIST_FROM_BROKER).
pub fn is_system(name: &str, cluster: &str) -> bool {
    NOT_SENDABLE.contains(&name) || name == DEFAULT_TOPIC || name == crate::protocol::reply_topic(cluster)
}

pub fn is_sendable(name: &str) -> bool {
    !NOT_SENDABLE.contains(&name)
}

impl TopicTable {
    pub fn load(files: &SharedFiles, dir: &Path, cfg: &Config) -> TopicTable {
        let file = ConfigFile::new(files, dir, "topics.json");
        let topics: BTreeMap<String, TopicConfig> = file.load(None);
        let mut t =
            TopicTable { topics, version: DataVersion { counter: 1, state_version: 0, timestamp: now_ms() }, file };
        // Request-reply: responders send replies here (RocketMQ creates it on every broker).
        let reply = crate::protocol::reply_topic(&cfg.cluster_name);
        t.topics.entry(reply.clone()).or_insert_with(|| TopicConfig::new(&reply, 1, PERM_READ | PERM_WRITE));
        if cfg.auto_create_topic {
            let q = cfg.default_topic_queue_nums;
            t.topics.insert(
                DEFAULT_TOPIC.into(),
                TopicConfig::new(DEFAULT_TOPIC, q, PERM_INHERIT | PERM_READ | PERM_WRITE),
            );
        }
        t
    }

    pub fn get(&self, name: &str) -> Option<&TopicConfig> {
        self.topics.get(name)
    }

    /// Inserts or replaces topics with one version bump and one write of the file; returns those
    /// that changed.
    pub fn upsert_many(&mut self, tcs: Vec<TopicConfig>) -> Vec<TopicConfig> {
        let changed = self.insert_unversioned(tcs);
        if !changed.is_empty() {
            self.bump();
        }
        changed
    }

    /// Inserts or replaces topics without bumping the version or writing the file (the caller
    /// calls [`TopicTable::bump`] once after several batches); returns those that changed.
    pub fn insert_unversioned(&mut self, tcs: Vec<TopicConfig>) -> Vec<TopicConfig> {
        let mut changed = Vec::new();
        for tc in tcs {
            if self.topics.get(&tc.topic_name) != Some(&tc) {
                self.topics.insert(tc.topic_name.clone(), tc.clone());
                changed.push(tc);
            }
        }
        changed
    }

    /// Takes the master's table (on a slave): one version bump and one write when it differs.
    pub fn replace(&mut self, topics: BTreeMap<String, TopicConfig>) -> bool {
        if topics == self.topics {
            return false;
        }
        self.topics = topics;
        self.bump();
        true
    }

    pub fn remove(&mut self, name: &str) -> bool {
        let removed = self.topics.remove(name).is_some();
        if removed {
            self.bump();
        }
        removed
    }

    /// A new data version, written to the file.
    pub fn bump(&mut self) {
        self.version.counter += 1;
        self.version.timestamp = now_ms();
        self.persist();
    }

    fn persist(&self) {
        self.file.save(None, &self.topics);
    }

    /// RocketMQ's TopicConfigSerializeWrapper JSON for REGISTER_BROKER and GET_ALL_TOPIC_CONFIG.
    pub fn wrapper_json(&self) -> serde_json::Value {
        wrapper_of(&self.topics, self.version)
    }
}

/// RocketMQ's TopicConfigSerializeWrapper JSON of a topic table.
fn wrapper_of(topics: &BTreeMap<String, TopicConfig>, version: DataVersion) -> serde_json::Value {
    serde_json::json!({ "topicConfigTable": topics, "dataVersion": version })
}

impl<D: Disk> Broker<D> {
    /// Applies a topic change locally and tells the other shards and the name server.
    pub fn upsert_topic(&self, tc: TopicConfig, fan_out: bool) {
        self.upsert_topics(vec![tc], fan_out);
    }

    /// Applies topic changes at once: one file write and one registration however many there are
    /// (a heartbeat naming thousands of groups creates thousands of retry topics).
    pub fn upsert_topics(&self, tcs: Vec<TopicConfig>, fan_out: bool) {
        let changed = self.topics.borrow_mut().upsert_many(tcs);
        if changed.is_empty() {
            return;
        }
        if fan_out {
            for tc in changed {
                self.control.publish_topic(self.shard, Some(tc), None);
            }
        }
        self.publish_registration();
    }

    /// Hands this shard's topic table to the registrar, which registers it with the name servers.
    pub fn publish_registration(&self) {
        let (topics, mut version) = {
            let t = self.topics.borrow();
            (t.topics.clone(), t.version)
        };
        // The master epoch: the name server ignores an older master's registration (fencing).
        version.state_version = u64::from(self.store.replicas.epoch());
        let body = std::sync::Arc::new(move || {
            let wrapper = wrapper_of(&topics, version);
            serde_json::json!({ "topicConfigSerializeWrapper": wrapper, "filterServerList": [] }).to_string()
        });
        self.control.set_registration(self.shard, (self.name.clone(), self.broker_id()), self.addr, body);
    }

    /// The topic a send goes to, created from the template when allowed.
    pub fn topic_for_send(&self, topic: &str, default_queues: u32) -> Result<TopicConfig, super::error::BrokerError> {
        if let Some(tc) = self.topics.borrow().get(topic) {
            return Ok(tc.clone());
        }
        let queues = if topic.starts_with(RETRY_PREFIX) || topic.starts_with(DLQ_PREFIX) {
            1
        } else if self.cfg.auto_create_topic {
            default_queues.clamp(1, self.cfg.default_topic_queue_nums.max(1))
        } else {
            // Auto-creation is off: the topic must be created first.
            return Err(super::error::BrokerError::TopicNotExist { topic: topic.into(), broker: self.name.clone() });
        };
        let tc = TopicConfig::new(topic, queues, PERM_READ | PERM_WRITE);
        tracing::info!(topic, queues, shard = self.shard, "auto-created topic");
        self.upsert_topic(tc.clone(), true);
        Ok(tc)
    }
}

pub fn update_and_create<D: Disk>(b: &Broker<D>, req: &Command) -> Reply {
    let h = CreateTopicRequest::decode(req).map_err(|e| BrokerError::InvalidParameter(e.to_string()))?;
    if let Some(why) = invalid_topic_name(&h.topic) {
        return Err(BrokerError::InvalidParameter(why));
    }
    let tc = topic_from_request(h, &b.cfg).map_err(BrokerError::InvalidParameter)?;
    b.upsert_topic(tc, true);
    Ok(req.response_to(rs::SUCCESS))
}

/// The topic an UPDATE_AND_CREATE_TOPIC asks for, queue counts checked against the broker's limit.
fn topic_from_request(h: CreateTopicRequest, cfg: &Config) -> Result<TopicConfig, String> {
    let queues = 1..=cfg.max_queues_per_topic.max(1);
    let default_queues = cfg.default_topic_queue_nums.clamp(1, *queues.end());
    let count = |name: &str, v: Option<u32>| {
        let v = v.unwrap_or(default_queues);
        if queues.contains(&v) {
            Ok(v)
        } else {
            Err(format!("{name} = {v} is outside {}..={}", queues.start(), queues.end()))
        }
    };
    Ok(TopicConfig {
        read_queue_nums: count("readQueueNums", h.read_queue_nums)?,
        write_queue_nums: count("writeQueueNums", h.write_queue_nums)?,
        perm: h.perm.unwrap_or(PERM_READ | PERM_WRITE),
        topic_filter_type: h.topic_filter_type.unwrap_or_else(|| "SINGLE_TAG".into()),
        topic_sys_flag: h.topic_sys_flag.unwrap_or(0),
        order: h.order.unwrap_or(false),
        attributes: BTreeMap::new(),
        topic_name: h.topic,
    })
}

pub fn delete<D: Disk>(b: &Broker<D>, req: &Command) -> Reply {
    let topic = TopicRequest::decode(req)?.topic;
    if b.topics.borrow_mut().remove(&topic) {
        b.store.delete_topic(&topic);
        b.control.publish_topic(b.shard, None, Some(topic));
        b.publish_registration();
    }
    Ok(req.response_to(rs::SUCCESS))
}

pub fn get_all<D: Disk>(b: &Broker<D>, req: &Command) -> Command {
    let body = b.topics.borrow().wrapper_json().to_string();
    req.response_to(rs::SUCCESS).with_body(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_are_validated() {
        assert!(invalid_topic_name("Topic_A-1|%x").is_none());
        assert!(invalid_topic_name("").is_some());
        assert!(invalid_topic_name("a b").is_some());
        assert!(invalid_topic_name(&"x".repeat(128)).is_some());
        assert!(!is_sendable("SCHEDULE_TOPIC_XXXX"));
    }

    #[test]
    fn topic_create_refuses_negative_and_oversized_queue_counts() {
        let cfg = Config::default();
        let req = |k: &str, v: &str| {
            let mut c = Command::request(crate::protocol::codes::request::UPDATE_AND_CREATE_TOPIC);
            c.put("topic", "T");
            c.put(k, v);
            CreateTopicRequest::decode(&c).map_err(|e| e.to_string()).and_then(|h| topic_from_request(h, &cfg))
        };
        assert!(req("readQueueNums", "-4").unwrap_err().contains("readQueueNums"));
        assert!(req("writeQueueNums", "0").is_err());
        assert!(req("writeQueueNums", "1025").is_err());
        assert!(req("readQueueNums", "x").is_err());
        assert!(req("perm", "8").is_err());
        assert_eq!(req("readQueueNums", "16").unwrap().read_queue_nums, 16);
        assert_eq!(req("perm", "6").unwrap().write_queue_nums, 8);
    }

    #[test]
    fn topic_config_json_uses_rocketmq_names() {
        let v = serde_json::to_value(TopicConfig::new("T", 4, 6)).unwrap();
        assert_eq!(v["topicName"], "T");
        assert_eq!(v["readQueueNums"], 4);
        assert_eq!(v["perm"], 6);
        assert_eq!(v["topicFilterType"], "SINGLE_TAG");
    }
}
