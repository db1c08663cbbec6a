//! The group and offset administration the Java admin tools call on a broker: create, update and
//! delete subscription groups, copy a group's offsets, the whole offset and delay-progress tables,
//! the system topics, and clear answers for what ringmq does not do at run time. Runs on the shard
//! that owns the tables.

use super::Broker;
use super::error::BrokerError;
use super::groups::GroupConfig;
use crate::protocol::codes::response as rs;
use crate::protocol::command::Command;
use crate::protocol::commands::body::encode_json;
use crate::protocol::commands::namesrv::TopicList;
use crate::protocol::commands::topics::{CloneGroupOffsetRequest, DeleteGroupRequest};
use crate::store::io::Disk;
use serde_json::json;

/// UPDATE_AND_CREATE_SUBSCRIPTIONGROUP (200): body `SubscriptionGroupConfig`; the settings ringmq
/// keeps are stored, the others ignored.
pub fn update_group<D: Disk>(b: &Broker<D>, req: &Command) -> Command {
    let cfg: GroupConfig = match serde_json::from_slice(&req.body_bytes()) {
        Ok(c) => c,
        Err(e) => {
            return BrokerError::System(format!("body is not a SubscriptionGroupConfig: {e}")).respond(req);
        }
    };
    if cfg.group_name.trim().is_empty() {
        return BrokerError::InvalidParameter("groupName is empty".into()).respond(req);
    }
    b.groups.borrow_mut().upsert(cfg);
    req.response_to(rs::SUCCESS)
}

/// DELETE_SUBSCRIPTIONGROUP (207): header `groupName`, optional `cleanOffset` (5.x) also drops the
/// group's committed offsets.
pub fn delete_group<D: Disk>(b: &Broker<D>, req: &Command) -> Command {
    let (group, clean) = match DeleteGroupRequest::decode(req) {
        Ok(h) => (h.group_name, h.clean_offset.unwrap_or(false)),
        Err(e) => return BrokerError::from(e).respond(req),
    };
    b.groups.borrow_mut().remove(&group);
    if clean {
        let mut offsets = b.offsets.borrow_mut();
        offsets.remove_group(&group);
        offsets.persist();
    }
    req.response_to(rs::SUCCESS)
}

/// CLONE_GROUP_OFFSET (314): header `srcGroup`, `destGroup`, `topic` (empty: every topic the source
/// group has offsets for), `offline`; copies the committed offsets.
pub fn clone_group_offset<D: Disk>(b: &Broker<D>, req: &Command) -> Command {
    let (src, dest, topic) = match CloneGroupOffsetRequest::decode(req) {
        Ok(h) => (h.src_group, h.dest_group, h.topic.filter(|t| !t.is_empty())),
        Err(e) => return BrokerError::from(e).respond(req),
    };
    let copies: Vec<_> = b
        .offsets
        .borrow()
        .entries()
        .into_iter()
        .filter(|(g, t, ..)| *g == src && topic.as_ref().is_none_or(|want| want == t))
        .collect();
    let mut offsets = b.offsets.borrow_mut();
    for (_, t, q, o) in &copies {
        offsets.commit(&dest, t, *q, *o);
    }
    offsets.persist();
    req.response_to(rs::SUCCESS)
}

/// GET_ALL_CONSUMER_OFFSET (43): `ConsumerOffsetSerializeWrapper` — `{"offsetTable":{"topic@group":
/// {queueId: offset}}}`.
pub fn all_consumer_offsets<D: Disk>(b: &Broker<D>, req: &Command) -> Command {
    let body = json!({"offsetTable": b.offsets.borrow().table()});
    req.response_to(rs::SUCCESS).with_body(body.to_string())
}

/// GET_ALL_DELAY_OFFSET (45): the delay levels' delivery progress, `{"offsetTable":{level: offset}}`
/// as RocketMQ's `delayOffset.json`.
pub fn all_delay_offsets<D: Disk>(b: &Broker<D>, req: &Command) -> Command {
    let body = json!({"offsetTable": b.schedule.borrow().levels()});
    req.response_to(rs::SUCCESS).with_body(body.to_string())
}

/// GET_SYSTEM_TOPIC_LIST_FROM_BROKER (305): `TopicList` of the system topics this shard has.
pub fn system_topics<D: Disk>(b: &Broker<D>, req: &Command) -> Command {
    let cluster = &b.cfg.cluster_name;
    let topics = b.topics.borrow();
    let system = topics.topics.keys().filter(|t| super::topics::is_system(t, cluster)).cloned();
    let list = TopicList { broker_addr: None, topic_list: system.collect() };
    req.response_to(rs::SUCCESS).with_body(encode_json(&list))
}

/// Codes whose RocketMQ behaviour ringmq does not have, answered with a remark saying so (and what
/// to use instead) rather than a bare REQUEST_CODE_NOT_SUPPORTED.
pub fn not_at_run_time(req: &Command, what: &str) -> Command {
    BrokerError::NotSupported(what.to_string()).respond(req)
}
