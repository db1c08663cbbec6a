//! The name server's tables: clusters, brokers (name → id → address), topic queue data per broker, live
//! registrations, and KV config; with the JSON bodies clients read (TopicRouteData, ClusterInfo,
//! TopicList).

use crate::protocol::commands::body::encode_json;
use crate::protocol::commands::namesrv::{
    BrokerData, ClusterInfo, MASTER_ID, QueueData, RegisterBrokerBody, TopicList, TopicQueues, TopicRouteData,
};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// A live registration, by broker address.
#[derive(Debug, Clone)]
pub struct BrokerLive {
    pub last_update: Instant,
    pub conn_id: u64,
    pub name: String,
    pub id: i64,
    pub addr: String,
    /// The address the registration came from, and the ACL account that signed it (if any): the
    /// identity allowed to replace or unregister it.
    pub peer: std::net::IpAddr,
    pub owner: Option<String>,
}

impl BrokerLive {
    pub fn addr_matches(&self, addr: &str) -> bool {
        self.addr == addr
    }
}

#[derive(Debug, Default)]
pub struct RouteTable {
    /// Broker name → (cluster, brokerId → address).
    brokers: BTreeMap<String, (String, BTreeMap<i64, String>)>,
    /// Per broker name, the master registration's address and state version (master epoch).
    master_states: BTreeMap<String, (String, u64)>,
    clusters: BTreeMap<String, BTreeSet<String>>,
    /// Topic → broker name → queue data.
    pub topics: BTreeMap<String, BTreeMap<String, TopicQueues>>,
    live: BTreeMap<String, BrokerLive>,
    pub kv: BTreeMap<String, BTreeMap<String, String>>,
}

impl RouteTable {
    /// Applies a REGISTER_BROKER. Topic data is taken from masters (id 0) only, as RocketMQ does.
    pub fn register(
        &mut self,
        cluster: &str,
        name: &str,
        id: i64,
        addr: &str,
        body: &RegisterBrokerBody,
        live: BrokerLive,
    ) {
        let state_version = body.topic_config_serialize_wrapper.as_ref().and_then(|w| w.data_version.as_ref());
        let state_version = state_version.map_or(0, |v| v.state_version);
        if id == MASTER_ID {
            // RocketMQ's stateVersion rule: a deposed master (an older epoch) registering as master
            // again, e.g. after a pause, must not take the route from the elected one.
            if let Some((holder, held)) = self.master_states.get(name)
                && holder != addr
                && state_version < *held
            {
                tracing::info!(broker = name, addr, state_version, held, "ignored a stale master registration");
                return;
            }
            self.master_states.insert(name.to_string(), (addr.to_string(), state_version));
        }
        let entry = self.brokers.entry(name.to_string()).or_insert_with(|| (cluster.to_string(), BTreeMap::new()));
        entry.0 = cluster.to_string();
        // A replica that changed role (slave ↔ master) registers its address under its new id: the
        // old id goes, as RocketMQ's name server does, or routes would list one broker twice.
        entry.1.retain(|other_id, a| *other_id == id || a != addr);
        if let Some(old) = entry.1.insert(id, addr.to_string()).filter(|old| old != addr) {
            self.live.remove(&old); // moved: its old connection closing must not remove it
        }
        self.clusters.entry(cluster.to_string()).or_default().insert(name.to_string());
        self.live.insert(addr.to_string(), live);
        if id != MASTER_ID {
            return;
        }
        let Some(table) = body.topic_config_serialize_wrapper.as_ref().and_then(|w| w.topic_config_table.as_ref())
        else {
            return;
        };
        for per_broker in self.topics.values_mut() {
            per_broker.remove(name);
        }
        for (topic, tc) in table {
            self.topics.entry(topic.clone()).or_default().insert(name.to_string(), tc.clone());
        }
        self.topics.retain(|_, b| !b.is_empty());
    }

    /// The live registration of broker `name`, id `id`.
    pub fn live_holder(&self, name: &str, id: i64) -> Option<&BrokerLive> {
        self.brokers.get(name).and_then(|(_, ids)| ids.get(&id)).and_then(|addr| self.live.get(addr))
    }

    /// The live registration at `addr`.
    pub fn live_at(&self, addr: &str) -> Option<&BrokerLive> {
        self.live.get(addr)
    }

    /// Removes the registrations matching `pred`, and brokers and topics left without any.
    pub fn remove_where(&mut self, pred: impl Fn(&BrokerLive) -> bool) {
        let gone: Vec<BrokerLive> = self.live.values().filter(|l| pred(l)).cloned().collect();
        for l in gone {
            tracing::info!(broker = %l.name, id = l.id, addr = %l.addr, "broker left the routes");
            self.live.remove(&l.addr);
            if self.master_states.get(&l.name).is_some_and(|(a, _)| *a == l.addr) {
                self.master_states.remove(&l.name);
            }
            let empty = match self.brokers.get_mut(&l.name) {
                Some((_, addrs)) => {
                    addrs.retain(|_, a| *a != l.addr);
                    addrs.is_empty()
                }
                None => false,
            };
            if empty {
                self.brokers.remove(&l.name);
                for names in self.clusters.values_mut() {
                    names.remove(&l.name);
                }
                for per_broker in self.topics.values_mut() {
                    per_broker.remove(&l.name);
                }
            }
        }
        self.clusters.retain(|_, n| !n.is_empty());
        self.topics.retain(|_, b| !b.is_empty());
    }

    fn broker_data(&self, name: &str) -> Option<BrokerData> {
        let (cluster, addrs) = self.brokers.get(name)?;
        Some(BrokerData {
            broker_addrs: addrs.clone(),
            broker_name: name.to_string(),
            cluster: cluster.clone(),
            enable_acting_master: false,
        })
    }

    /// TopicRouteData as compact standard JSON, or None for an unknown topic.
    pub fn route_json(&self, topic: &str) -> Option<String> {
        let per_broker = self.topics.get(topic)?;
        let mut route = TopicRouteData::default();
        for (name, q) in per_broker {
            route.queue_datas.push(QueueData { broker_name: name.clone(), queues: q.clone() });
            route.broker_datas.extend(self.broker_data(name));
        }
        Some(encode_json(&route))
    }

    pub fn cluster_json(&self) -> String {
        encode_json(&ClusterInfo {
            broker_addr_table: self.brokers.keys().filter_map(|n| Some((n.clone(), self.broker_data(n)?))).collect(),
            cluster_addr_table: self.clusters.clone(),
        })
    }

    pub fn topic_list_json(&self) -> String {
        encode_json(&TopicList { broker_addr: None, topic_list: self.topics.keys().cloned().collect() })
    }

    /// GET_TOPICS_BY_CLUSTER: `TopicList` of the topics on any broker of `cluster`.
    pub fn cluster_topics_json(&self, cluster: &str) -> String {
        let in_cluster = |b: &String| self.brokers.get(b).is_some_and(|(c, _)| c == cluster);
        let topics = self.topics.iter().filter(|(_, per)| per.keys().any(in_cluster)).map(|(t, _)| t.clone());
        encode_json(&TopicList { broker_addr: None, topic_list: topics.collect() })
    }

    /// GET_SYSTEM_TOPIC_LIST_FROM_NS: as RocketMQ's name server, the cluster names and broker names
    /// (each is a topic its brokers create), with the address of one master as `brokerAddr`.
    pub fn system_topics_json(&self) -> String {
        let mut names: Vec<String> = self.clusters.keys().cloned().collect();
        for (cluster, brokers) in &self.clusters {
            names.extend(brokers.iter().filter(|b| *b != cluster).cloned());
        }
        let addr = self.brokers.values().find_map(|(_, addrs)| addrs.get(&MASTER_ID)).cloned();
        encode_json(&TopicList { broker_addr: addr, topic_list: names })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn live(name: &str, addr: &str, conn_id: u64) -> BrokerLive {
        let peer = std::net::Ipv4Addr::LOCALHOST.into();
        BrokerLive {
            last_update: Instant::now(),
            conn_id,
            name: name.into(),
            id: 0,
            addr: addr.into(),
            peer,
            owner: None,
        }
    }

    fn body(topics: &[(&str, u64)]) -> RegisterBrokerBody {
        let table: BTreeMap<&str, Value> = topics
            .iter()
            .map(|(t, q)| (*t, serde_json::json!({"topicName": t, "readQueueNums": q, "writeQueueNums": q, "perm": 6})))
            .collect();
        let json = serde_json::json!({ "topicConfigSerializeWrapper": { "topicConfigTable": table } });
        crate::protocol::commands::body::decode_json("RegisterBrokerBody", json.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn route_json_is_compact_standard_and_exact() {
        let mut r = RouteTable::default();
        r.register("C", "b-0", 0, "127.0.0.1:10911", &body(&[("T", 4)]), live("b-0", "127.0.0.1:10911", 1));
        let expected = r#"{"brokerDatas":[{"brokerAddrs":{"0":"127.0.0.1:10911"},"brokerName":"b-0","cluster":"C","enableActingMaster":false}],"filterServerTable":{},"queueDatas":[{"brokerName":"b-0","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}]}"#;
        assert_eq!(r.route_json("T").unwrap(), expected);
        assert!(r.route_json("U").is_none());
    }

    #[test]
    fn reregistration_replaces_topics_and_expiry_removes_broker() {
        let mut r = RouteTable::default();
        r.register("C", "b-0", 0, "a:1", &body(&[("T", 4), ("U", 1)]), live("b-0", "a:1", 1));
        r.register("C", "b-1", 0, "a:5", &body(&[("T", 4)]), live("b-1", "a:5", 2));
        r.register("C", "b-0", 0, "a:1", &body(&[("T", 4)]), live("b-0", "a:1", 1));
        assert!(r.route_json("U").is_none());
        r.remove_where(|l| l.conn_id == 1);
        let route: Value = serde_json::from_str(&r.route_json("T").unwrap()).unwrap();
        assert_eq!(route["brokerDatas"].as_array().unwrap().len(), 1);
        assert!(r.cluster_json().contains("b-1") && !r.cluster_json().contains("b-0"));
    }

    #[test]
    fn a_slave_promoted_to_master_is_listed_once() {
        // Regression: a replica that registered as slave (id 3) and then as master (id 0) from the
        // same address was listed under both ids.
        let mut r = RouteTable::default();
        r.register("C", "b-0", 3, "a:1", &body(&[]), live("b-0", "a:1", 1));
        r.register("C", "b-0", 0, "a:1", &body(&[("T", 4)]), live("b-0", "a:1", 1));
        r.register("C", "b-0", 2, "a:9", &body(&[]), live("b-0", "a:9", 2));
        let route: Value = serde_json::from_str(&r.route_json("T").unwrap()).unwrap();
        assert_eq!(route["brokerDatas"][0]["brokerAddrs"], serde_json::json!({"0": "a:1", "2": "a:9"}));
    }

    #[test]
    fn a_deposed_master_registering_with_an_older_epoch_is_ignored() {
        let with_epoch = |epoch: u64| {
            let json = serde_json::json!({ "topicConfigSerializeWrapper": {
                "topicConfigTable": {}, "dataVersion": { "counter": 1, "stateVersion": epoch, "timestamp": 0 } } });
            crate::protocol::commands::body::decode_json("RegisterBrokerBody", json.to_string().as_bytes()).unwrap()
        };
        let mut r = RouteTable::default();
        r.register("C", "b-0", 0, "a:1", &with_epoch(1), live("b-0", "a:1", 1));
        r.register("C", "b-0", 0, "a:2", &with_epoch(2), live("b-0", "a:2", 2));
        r.register("C", "b-0", 0, "a:1", &with_epoch(1), live("b-0", "a:1", 1));
        assert!(r.cluster_json().contains("\"0\":\"a:2\""), "{}", r.cluster_json());
        r.register("C", "b-0", 1, "a:1", &with_epoch(2), live("b-0", "a:1", 1));
        assert!(r.cluster_json().contains("\"1\":\"a:1\"") && r.cluster_json().contains("\"0\":\"a:2\""));
    }
}
