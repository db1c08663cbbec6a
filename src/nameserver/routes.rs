//! The name server's tables: clusters, brokers (name → id → address), topic queue data per broker, live
//! registrations, and KV config; with the JSON bodies clients read (TopicRouteData, ClusterInfo,
//! TopicList).

use serde_json::{Value, json};
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

/// RocketMQ's QueueData.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueData {
    pub read: u64,
    pub write: u64,
    pub perm: u64,
    pub sys_flag: u64,
}

#[derive(Debug, Default)]
pub struct RouteTable {
    /// Broker name → (cluster, brokerId → address).
    brokers: BTreeMap<String, (String, BTreeMap<i64, String>)>,
    clusters: BTreeMap<String, BTreeSet<String>>,
    /// Topic → broker name → queue data.
    pub topics: BTreeMap<String, BTreeMap<String, QueueData>>,
    live: BTreeMap<String, BrokerLive>,
    pub kv: BTreeMap<String, BTreeMap<String, String>>,
}

fn num(v: &Value, key: &str, default: u64) -> u64 {
    match &v[key] {
        Value::Number(n) => n.as_u64().unwrap_or(default),
        Value::String(s) => s.parse().unwrap_or(default),
        _ => default,
    }
}

impl RouteTable {
    /// Applies a REGISTER_BROKER. Topic data is taken from masters (id 0) only, as RocketMQ does.
    pub fn register(&mut self, cluster: &str, name: &str, id: i64, addr: &str, body: &Value, live: BrokerLive) {
        let entry = self.brokers.entry(name.to_string()).or_insert_with(|| (cluster.to_string(), BTreeMap::new()));
        entry.0 = cluster.to_string();
        if let Some(old) = entry.1.insert(id, addr.to_string()).filter(|old| old != addr) {
            self.live.remove(&old); // moved: its old connection closing must not remove it
        }
        self.clusters.entry(cluster.to_string()).or_default().insert(name.to_string());
        self.live.insert(addr.to_string(), live);
        if id != 0 {
            return;
        }
        let table = &body["topicConfigSerializeWrapper"]["topicConfigTable"];
        let Some(table) = table.as_object() else {
            return;
        };
        for per_broker in self.topics.values_mut() {
            per_broker.remove(name);
        }
        for (topic, tc) in table {
            let qd = QueueData {
                read: num(tc, "readQueueNums", 0),
                write: num(tc, "writeQueueNums", 0),
                perm: num(tc, "perm", 6),
                sys_flag: num(tc, "topicSysFlag", 0),
            };
            self.topics.entry(topic.clone()).or_default().insert(name.to_string(), qd);
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

    fn broker_data(&self, name: &str) -> Option<Value> {
        let (cluster, addrs) = self.brokers.get(name)?;
        let addrs: BTreeMap<String, &String> = addrs.iter().map(|(id, a)| (id.to_string(), a)).collect();
        Some(json!({ "brokerAddrs": addrs, "brokerName": name, "cluster": cluster, "enableActingMaster": false }))
    }

    /// TopicRouteData as compact standard JSON, or None for an unknown topic.
    pub fn route_json(&self, topic: &str) -> Option<String> {
        let per_broker = self.topics.get(topic)?;
        let mut queue_datas = Vec::new();
        let mut broker_datas = Vec::new();
        for (name, q) in per_broker {
            queue_datas.push(json!({ "brokerName": name, "perm": q.perm, "readQueueNums": q.read,
                "topicSysFlag": q.sys_flag, "writeQueueNums": q.write }));
            broker_datas.extend(self.broker_data(name));
        }
        Some(json!({ "brokerDatas": broker_datas, "filterServerTable": {}, "queueDatas": queue_datas }).to_string())
    }

    pub fn cluster_json(&self) -> String {
        let table: BTreeMap<&String, Value> =
            self.brokers.keys().filter_map(|n| Some((n, self.broker_data(n)?))).collect();
        json!({ "brokerAddrTable": table, "clusterAddrTable": self.clusters }).to_string()
    }

    pub fn topic_list_json(&self) -> String {
        json!({ "topicList": self.topics.keys().collect::<Vec<_>>() }).to_string()
    }

    /// GET_TOPICS_BY_CLUSTER: `TopicList` of the topics on any broker of `cluster`.
    pub fn cluster_topics_json(&self, cluster: &str) -> String {
        let in_cluster = |b: &String| self.brokers.get(b).is_some_and(|(c, _)| c == cluster);
        let topics: Vec<&String> =
            self.topics.iter().filter(|(_, per)| per.keys().any(in_cluster)).map(|(t, _)| t).collect();
        json!({ "topicList": topics }).to_string()
    }

    /// GET_SYSTEM_TOPIC_LIST_FROM_NS: as RocketMQ's name server, the cluster names and broker names
    /// (each is a topic its brokers create), with the address of one master as `brokerAddr`.
    pub fn system_topics_json(&self) -> String {
        let mut names: Vec<&String> = self.clusters.keys().collect();
        for (cluster, brokers) in &self.clusters {
            names.extend(brokers.iter().filter(|b| *b != cluster));
        }
        let addr = self.brokers.values().find_map(|(_, addrs)| addrs.get(&0));
        json!({ "topicList": names, "brokerAddr": addr }).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn body(topics: &[(&str, u64)]) -> Value {
        let table: BTreeMap<&str, Value> = topics
            .iter()
            .map(|(t, q)| (*t, json!({"topicName": t, "readQueueNums": q, "writeQueueNums": q, "perm": 6})))
            .collect();
        json!({ "topicConfigSerializeWrapper": { "topicConfigTable": table } })
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
}
