//! What a request needs: the mapping from request code and header fields to the resources and
//! actions an account must hold, as the Java `PlainAccessValidator` maps them (topics by their
//! name, consumer groups by their retry topic `%RETRY%<group>`), plus the administration codes.
//!
//! HEARTBEAT's groups and subscriptions are in its body: the broker's heartbeat handler checks them
//! once it has parsed the body ([`super::Grant::require`]), so the body is parsed once.

use super::file::Perm;
use crate::protocol::codes::request as rq;
use crate::protocol::{Command, RETRY_PREFIX};

/// A topic or a consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    Topic(String),
    Group(String),
}

impl Resource {
    /// A topic name as a resource: a retry topic is its group's.
    pub fn topic(name: &str) -> Resource {
        match name.strip_prefix(RETRY_PREFIX) {
            Some(group) => Resource::Group(group.to_string()),
            None => Resource::Topic(name.to_string()),
        }
    }
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Resource::Topic(t) => write!(f, "topic {t}"),
            Resource::Group(g) => write!(f, "group {g}"),
        }
    }
}

/// What one request needs.
#[derive(Debug, Default, PartialEq)]
pub struct Need {
    /// No signature is needed (route queries on the name server).
    pub open: bool,
    pub admin: bool,
    pub resources: Vec<(Resource, Perm)>,
}

/// Broker codes that change topics, groups, offsets of others or the broker itself.
const BROKER_ADMIN: [i32; 7] = [
    rq::UPDATE_AND_CREATE_TOPIC,
    rq::DELETE_TOPIC_IN_BROKER,
    rq::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP,
    rq::DELETE_SUBSCRIPTIONGROUP,
    rq::UPDATE_BROKER_CONFIG,
    rq::INVOKE_BROKER_TO_RESET_OFFSET,
    rq::CLONE_GROUP_OFFSET,
];

/// Name-server codes anyone may send: route, cluster and topic-list queries and KV reads.
const NAMESRV_OPEN: [i32; 7] = [
    rq::GET_ROUTEINFO_BY_TOPIC,
    rq::GET_BROKER_CLUSTER_INFO,
    rq::GET_ALL_TOPIC_LIST_FROM_NAMESERVER,
    rq::GET_TOPICS_BY_CLUSTER,
    rq::GET_SYSTEM_TOPIC_LIST_FROM_NS,
    rq::GET_KV_CONFIG,
    rq::GET_KVLIST_BY_NAMESPACE,
];

/// What `req` needs on a broker.
pub fn broker_need(req: &Command) -> Need {
    let field = |k: &str| req.ext.get(k).filter(|v| !v.is_empty());
    let mut need = Need { admin: BROKER_ADMIN.contains(&req.code), ..Need::default() };
    let mut add = |r: Resource, p: Perm| need.resources.push((r, p));
    let group = |k: &str| field(k).map(|g| Resource::Group(g.to_string()));
    match req.code {
        rq::SEND_MESSAGE | rq::SEND_REPLY_MESSAGE => {
            if let Some(t) = field("topic") {
                add_send(&mut add, t);
            }
        }
        rq::SEND_MESSAGE_V2 | rq::SEND_BATCH_MESSAGE | rq::SEND_REPLY_MESSAGE_V2 => {
            if let Some(t) = field("b") {
                add_send(&mut add, t);
            }
        }
        rq::CONSUMER_SEND_MSG_BACK => {
            if let Some(g) = group("group") {
                add(g, Perm::SUB);
            }
        }
        rq::PULL_MESSAGE
        | rq::LITE_PULL_MESSAGE
        | rq::QUERY_CONSUMER_OFFSET
        | rq::UPDATE_CONSUMER_OFFSET
        | rq::UNREGISTER_CLIENT
        | rq::GET_CONSUMER_LIST_BY_GROUP => {
            if let Some(t) = field("topic") {
                add(Resource::topic(t), Perm::SUB);
            }
            if let Some(g) = group("consumerGroup") {
                add(g, Perm::SUB);
            }
        }
        rq::QUERY_MESSAGE
        | rq::GET_MAX_OFFSET
        | rq::GET_MIN_OFFSET
        | rq::SEARCH_OFFSET_BY_TIMESTAMP
        | rq::GET_EARLIEST_MSG_STORETIME => {
            if let Some(t) = field("topic") {
                add(Resource::topic(t), Perm::SUB);
            }
        }
        rq::END_TRANSACTION => {
            if let Some(t) = field("topic") {
                add(Resource::topic(t), Perm::PUB);
            }
        }
        _ => {}
    }
    need
}

/// A send to a retry topic is its consumer group's redelivery (SUB on the group); any other send
/// publishes (PUB on the topic).
fn add_send(add: &mut impl FnMut(Resource, Perm), topic: &str) {
    match Resource::topic(topic) {
        g @ Resource::Group(_) => add(g, Perm::SUB),
        t => add(t, Perm::PUB),
    }
}

/// What `req` needs on the name server: queries are open; registration, unregistration, KV writes,
/// topic deletion and anything else need an admin account.
pub fn namesrv_need(req: &Command) -> Need {
    if NAMESRV_OPEN.contains(&req.code) {
        Need { open: true, ..Need::default() }
    } else {
        Need { admin: true, ..Need::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(code: i32, fields: &[(&str, &str)]) -> Command {
        let mut c = Command { code, ..Default::default() };
        for (k, v) in fields {
            c.put(k, v);
        }
        c
    }

    #[test]
    fn requests_map_to_the_resources_rocketmq_checks() {
        let t = |n: &str| Resource::Topic(n.into());
        let g = |n: &str| Resource::Group(n.into());
        assert_eq!(broker_need(&req(rq::SEND_MESSAGE_V2, &[("a", "P"), ("b", "T")])).resources, [(t("T"), Perm::PUB)]);
        assert_eq!(broker_need(&req(rq::SEND_MESSAGE, &[("topic", "%RETRY%G")])).resources, [(g("G"), Perm::SUB)]);
        assert_eq!(
            broker_need(&req(rq::PULL_MESSAGE, &[("topic", "T"), ("consumerGroup", "G")])).resources,
            [(t("T"), Perm::SUB), (g("G"), Perm::SUB)]
        );
        assert_eq!(broker_need(&req(rq::CONSUMER_SEND_MSG_BACK, &[("group", "G")])).resources, [(g("G"), Perm::SUB)]);
        let reset = broker_need(&req(rq::INVOKE_BROKER_TO_RESET_OFFSET, &[("topic", "T"), ("group", "G")]));
        assert!(reset.admin);
        assert!(broker_need(&req(rq::DELETE_TOPIC_IN_BROKER, &[("topic", "T")])).admin);
        assert!(!broker_need(&req(rq::UPDATE_CONSUMER_OFFSET, &[])).admin);
    }

    #[test]
    fn name_server_queries_are_open_and_writes_need_admin() {
        assert!(namesrv_need(&req(rq::GET_ROUTEINFO_BY_TOPIC, &[])).open);
        for code in [rq::REGISTER_BROKER, rq::UNREGISTER_BROKER, rq::PUT_KV_CONFIG, rq::DELETE_TOPIC_IN_NAMESRV] {
            let n = namesrv_need(&req(code, &[]));
            assert!(n.admin && !n.open, "{code}");
        }
    }
}
