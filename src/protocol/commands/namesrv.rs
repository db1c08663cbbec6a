//! Name server commands: REGISTER_BROKER (103), UNREGISTER_BROKER (104), GET_ROUTEINFO_BY_TOPIC
//! (105) and the KV config commands (100 put, 101 get, 102 delete, 219 list a namespace).
//!
//! REGISTER_BROKER `extFields`: `brokerName`, `brokerAddr` (host:port), `clusterName`,
//! `haServerAddr`, `brokerId` (0 master, ≥ 1 slave), `compressed`, `bodyCrc32`,
//! `heartbeatTimeoutMillis`; its body is the JSON `RegisterBrokerBody` (topic config wrapper and filter
//! servers). The answer carries `haServerAddr` and `masterAddr`. Route queries name a `topic` and are
//! answered with the `TopicRouteData` JSON body.

use super::{Checked, HeaderError, header};

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
    }
}
