//! Clients of one shard: HEART_BEAT registration of producers and consumers (with their
//! subscriptions), UNREGISTER_CLIENT, GET_CONSUMER_LIST_BY_GROUP, NOTIFY_CONSUMER_IDS_CHANGED on
//! membership change, expiry of silent clients, CHECK_CLIENT_CONFIG, and the queue locks of orderly
//! consumers (LOCK_BATCH_MQ / UNLOCK_BATCH_MQ).
//!
//! Every client heartbeats every broker (shard) in its routes, so each shard holds a complete view of
//! the groups it serves without any cross-shard traffic.

use super::Broker;
use super::error::{BrokerError, Reply};
use super::topics::{PERM_READ, PERM_WRITE, RETRY_PREFIX, TopicConfig};
use crate::filter::Subscription;
use crate::net::conn::Conn;
use crate::protocol::Command;
use crate::protocol::codes::{request as rq, response as rs};
use crate::protocol::commands::admin_views::ConnectionData;
use crate::protocol::commands::body::{self, MessageQueue};
use crate::protocol::commands::clients::{
    CheckClientConfigBody, ConsumerData, ConsumerGroupRequest, ConsumerIdList, HeartbeatData, HeartbeatResponse,
    LockBatchRequestBody, LockBatchResponseBody, SubscriptionData, UnregisterClientRequest,
};
use crate::security::acl::access::Resource;
use crate::security::acl::file::Perm;
use crate::security::acl::{Denial, Grant};
use crate::store::io::Disk;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// The shard's monotonic clock (the manual one in tests): member ages and lock leases.
use crate::rt::now;

/// Consumer groups of one heartbeat registered before the shard lets other tasks run: a heartbeat
/// naming thousands of groups takes turns instead of stalling the shard for its whole length.
const HEARTBEAT_GROUPS_PER_TURN: usize = 32;
/// Heartbeat bodies up to this size are parsed inline (a client with a few groups sends ~1 KiB);
/// larger ones on the blocking pool, which costs a thread hop but no stall.
const HEARTBEAT_PARSE_INLINE_BYTES: usize = 64 << 10;

/// Orderly-consumption lock lease (RocketMQ's rocketmq.broker.rebalance.lockMaxLiveTime, 60 s).
pub const LOCK_LEASE: Duration = Duration::from_secs(60);
/// Queue locks a shard holds at most: 10 000 orderly consumers of 26 queues each. A lock costs
/// ~150 bytes (group, topic and owner strings), so the table stays under ~40 MiB; past it new locks
/// are refused (the client retries at its next rebalance) rather than letting lock requests for
/// made-up queues grow the table. Expired leases are dropped by the client-expiry scan.
pub const MAX_QUEUE_LOCKS: usize = 262_144;

struct Member {
    conn: Rc<Conn>,
    last_seen: Instant,
    /// The client's language and protocol version, from its heartbeat's header (admin views).
    language: String,
    version: i32,
}

#[derive(Default)]
struct ConsumerGroup {
    members: BTreeMap<String, Member>,
    /// Topic → (expression type, expression, parsed), from the latest heartbeat.
    subscriptions: HashMap<String, (String, String, Rc<Subscription>)>,
    message_model: String,
    /// `consumeType` and `consumeFromWhere` of the latest heartbeat (admin views).
    consume_type: String,
    consume_from_where: String,
}

/// A consumer group as GET_CONSUMER_CONNECTION_LIST shows it.
#[derive(Debug, Clone)]
pub struct ConsumerView {
    pub connections: Vec<ConnectionData>,
    /// Topic → (expression type, expression).
    pub subscriptions: BTreeMap<String, (String, String)>,
    pub message_model: String,
    pub consume_type: String,
    pub consume_from_where: String,
}

/// A member as the admin views show it (RocketMQ's `Connection`).
fn connection_of(id: &str, m: &Member) -> ConnectionData {
    ConnectionData {
        client_id: id.to_string(),
        client_addr: m.conn.peer.to_string(),
        language: m.language.clone(),
        version: m.version,
    }
}

/// Producers and consumers registered on this shard.
#[derive(Default)]
pub struct ClientRegistry {
    consumers: HashMap<String, ConsumerGroup>,
    producers: HashMap<String, BTreeMap<String, Member>>,
    /// (group, topic, queue) → (owner client id, last refresh).
    locks: HashMap<(String, String, i32), (String, Instant)>,
}

impl ClientRegistry {
    pub fn subscription(&self, group: &str, topic: &str) -> Option<Rc<Subscription>> {
        self.consumers.get(group)?.subscriptions.get(topic).map(|(_, _, s)| s.clone())
    }

    pub fn consumer_ids(&self, group: &str) -> Vec<String> {
        self.consumers.get(group).map(|g| g.members.keys().cloned().collect()).unwrap_or_default()
    }

    /// Live connections of a consumer group's members (offset resets are pushed to them).
    pub fn consumer_conns(&self, group: &str) -> Vec<Rc<Conn>> {
        let members = self.consumers.get(group).map(|g| g.members.values());
        members.into_iter().flatten().filter(|m| !m.conn.is_closed()).map(|m| m.conn.clone()).collect()
    }

    /// The connection of a live producer with this client id (any group): request-reply's target.
    pub fn producer_by_client_id(&self, client_id: &str) -> Option<Rc<Conn>> {
        self.producers.values().filter_map(|g| g.get(client_id)).find(|m| !m.conn.is_closed()).map(|m| m.conn.clone())
    }

    /// A live connection of a producer of `group` (transaction check-back).
    pub fn producer_conn(&self, group: &str) -> Option<Rc<Conn>> {
        self.producers.get(group)?.values().find(|m| !m.conn.is_closed()).map(|m| m.conn.clone())
    }

    /// A consumer group's live members and subscriptions; None when it has no member here.
    pub fn consumer_view(&self, group: &str) -> Option<ConsumerView> {
        let g = self.consumers.get(group)?;
        let connections: Vec<ConnectionData> =
            g.members.iter().filter(|(_, m)| !m.conn.is_closed()).map(|(id, m)| connection_of(id, m)).collect();
        if connections.is_empty() {
            return None;
        }
        Some(ConsumerView {
            connections,
            subscriptions: g.subscriptions.iter().map(|(t, (k, e, _))| (t.clone(), (k.clone(), e.clone()))).collect(),
            message_model: g.message_model.clone(),
            consume_type: g.consume_type.clone(),
            consume_from_where: g.consume_from_where.clone(),
        })
    }

    /// A producer group's live members.
    pub fn producer_connections(&self, group: &str) -> Vec<ConnectionData> {
        let members = self.producers.get(group).into_iter().flatten();
        members.filter(|(_, m)| !m.conn.is_closed()).map(|(id, m)| connection_of(id, m)).collect()
    }

    /// The connection of one live member of a consumer group (GET_CONSUMER_RUNNING_INFO's target).
    pub fn consumer_member_conn(&self, group: &str, client_id: &str) -> Option<Rc<Conn>> {
        let m = self.consumers.get(group)?.members.get(client_id)?;
        (!m.conn.is_closed()).then(|| m.conn.clone())
    }

    /// Groups with a live member subscribed to `topic`.
    pub fn groups_subscribed_to(&self, topic: &str) -> Vec<String> {
        self.consumers.iter().filter(|(_, g)| g.subscriptions.contains_key(topic)).map(|(n, _)| n.clone()).collect()
    }

    /// (group, client id, message model, subscriptions) of every consumer.
    /// Queue locks held now (tests).
    #[cfg(test)]
    pub fn locks_held(&self) -> usize {
        self.locks.len()
    }

    pub fn consumer_groups(&self) -> Vec<(String, usize, String, Vec<String>)> {
        self.consumers
            .iter()
            .map(|(g, c)| {
                (g.clone(), c.members.len(), c.message_model.clone(), c.subscriptions.keys().cloned().collect())
            })
            .collect()
    }

    fn upsert_consumer(&mut self, group: &str, client_id: &str, member: Member, c: &ConsumerData) -> bool {
        let g = self.consumers.entry(group.to_string()).or_default();
        g.message_model = c.model();
        g.consume_type = c.consume_type.clone().unwrap_or_else(|| "CONSUME_PASSIVELY".into());
        g.consume_from_where = c.consume_from_where.clone().unwrap_or_else(|| "CONSUME_FROM_LAST_OFFSET".into());
        match g.members.get_mut(client_id) {
            Some(m) if m.conn.id == member.conn.id => {
                m.last_seen = member.last_seen;
                false
            }
            _ => {
                g.members.insert(client_id.to_string(), member);
                true
            }
        }
    }

    /// Removes a client from groups; returns the consumer groups whose membership changed.
    fn remove_where(&mut self, pred: impl Fn(&str, &Member) -> bool) -> Vec<String> {
        let mut changed = Vec::new();
        for (name, g) in self.consumers.iter_mut() {
            let before = g.members.len();
            g.members.retain(|id, m| !pred(id, m));
            if g.members.len() != before {
                changed.push(name.clone());
            }
        }
        self.consumers.retain(|_, g| !g.members.is_empty());
        for p in self.producers.values_mut() {
            p.retain(|id, m| !pred(id, m));
        }
        self.producers.retain(|_, p| !p.is_empty());
        changed
    }

    pub fn remove_connection(&mut self, conn_id: u64) -> Vec<String> {
        self.remove_where(|_, m| m.conn.id == conn_id)
    }

    /// Drops clients silent for longer than `expiry`, and queue locks whose lease ran out.
    pub fn expire(&mut self, expiry: Duration) -> Vec<String> {
        let now = now();
        self.locks.retain(|_, (_, at)| now.duration_since(*at) <= LOCK_LEASE);
        self.remove_where(|_, m| now.duration_since(m.last_seen) > expiry)
    }
}

/// The ACL's say on a heartbeat: SUB on each consumer group and on each topic it subscribes to (as
/// the Java broker checks HEARTBEAT).
fn heartbeat_allowed(grant: &Grant, consumers: &[ConsumerData]) -> Result<(), Denial> {
    if matches!(grant, Grant::All) {
        return Ok(());
    }
    for c in consumers {
        if let Some(g) = &c.group_name {
            grant.require(&Resource::Group(g.clone()), Perm::SUB)?;
        }
        for t in c.subscription_data_set.iter().filter_map(|s| s.topic.as_deref()) {
            grant.require(&Resource::topic(t), Perm::SUB)?;
        }
    }
    Ok(())
}

/// Parses the heartbeat body and registers its producers and consumers, in time linear in its size:
/// the retry topics and groups it introduces are created with one file write each, whatever their
/// number. More than `max_request_list_entries` groups, or subscriptions in one group, are refused.
pub async fn heartbeat<D: Disk>(b: &Broker<D>, conn: &Rc<Conn>, req: &Command, grant: &Grant) -> Command {
    let bytes = req.body_bytes();
    let body_len = bytes.len();
    // A large body is parsed on the blocking pool: one 600 KB parse is a ~15 ms stretch.
    let decode = move || body::decode_json::<HeartbeatData>("HeartbeatData", &bytes);
    let parsed = if body_len > HEARTBEAT_PARSE_INLINE_BYTES { crate::rt::blocking(decode).await } else { decode() };
    let body = match parsed {
        Ok(v) => v,
        Err(e) => return BrokerError::System(e.to_string()).respond(req),
    };
    let (consumers, producers) = (&body.consumer_data_set, &body.producer_data_set);
    let cap = b.cfg.max_request_list_entries;
    if consumers.len() + producers.len() > cap || consumers.iter().any(|c| c.subscription_data_set.len() > cap) {
        return BrokerError::System(format!(
            "heartbeat lists {} consumer and {} producer groups (or a group with more subscriptions) \
             past the limit of {cap} entries (max_request_list_entries)",
            consumers.len(),
            producers.len()
        ))
        .respond(req);
    }
    if let Err(d) = heartbeat_allowed(grant, consumers) {
        b.acl_denied.set(b.acl_denied.get() + 1);
        return BrokerError::NoPermission(d.0).respond(req);
    }
    let client_id = body.client_id.clone().unwrap_or_else(|| conn.peer.to_string());
    let groups: Vec<(&String, &ConsumerData)> =
        consumers.iter().filter_map(|c| Some((c.group_name.as_ref()?, c))).collect();
    // Work comes in turns of HEARTBEAT_GROUPS_PER_TURN groups, with a yield between turns (with
    // the shard's task quota, other connections' I/O is polled at least every `task_quota_us`).
    // New retry topics and groups are inserted in turns; the version, the files and the
    // registration — each a copy of a whole table — are done once, each in its own turn.
    let mut retry_topics = Vec::with_capacity(groups.len()); // no doubling copies of a large Vec
    for (i, (g, _)) in groups.iter().enumerate() {
        if i > 0 && i.is_multiple_of(HEARTBEAT_GROUPS_PER_TURN) {
            futures_lite::future::yield_now().await;
        }
        let t = format!("{RETRY_PREFIX}{g}");
        if b.topics.borrow().get(&t).is_none() {
            retry_topics.push(TopicConfig::new(&t, 1, PERM_READ | PERM_WRITE));
        }
    }
    let mut added = false;
    for chunk in retry_topics.chunks(HEARTBEAT_GROUPS_PER_TURN) {
        futures_lite::future::yield_now().await;
        for tc in b.topics.borrow_mut().insert_unversioned(chunk.to_vec()) {
            b.control.publish_topic(b.shard, Some(tc), None);
            added = true;
        }
    }
    if added {
        futures_lite::future::yield_now().await;
        b.topics.borrow_mut().bump();
        futures_lite::future::yield_now().await;
        b.publish_registration();
    }
    let mut new_groups = false;
    for chunk in groups.chunks(HEARTBEAT_GROUPS_PER_TURN) {
        futures_lite::future::yield_now().await;
        new_groups |= b.groups.borrow_mut().insert_missing(chunk.iter().map(|(g, _)| g.as_str()));
    }
    if new_groups {
        futures_lite::future::yield_now().await;
        b.groups.borrow().persist();
    }
    futures_lite::future::yield_now().await;
    let mut changed = Vec::new();
    for (i, (group, c)) in groups.iter().enumerate() {
        if i > 0 && i.is_multiple_of(HEARTBEAT_GROUPS_PER_TURN) {
            futures_lite::future::yield_now().await; // a large heartbeat takes turns with other work
        }
        let mut reg = b.clients.borrow_mut();
        let member =
            Member { conn: conn.clone(), last_seen: now(), language: req.language.to_string(), version: req.version };
        if reg.upsert_consumer(group, &client_id, member, c) {
            changed.push((*group).clone());
        }
        let subs = &c.subscription_data_set;
        if (c.without_sub || body.without_sub) && subs.is_empty() {
            continue;
        }
        if let Some(g) = reg.consumers.get_mut(group.as_str()) {
            for s in subs {
                register_subscription(g, s);
            }
        }
    }
    for group in producers.iter().filter_map(|p| p.group_name.clone()) {
        let member =
            Member { conn: conn.clone(), last_seen: now(), language: req.language.to_string(), version: req.version };
        b.clients.borrow_mut().producers.entry(group).or_default().insert(client_id.clone(), member);
    }
    for (i, g) in changed.iter().enumerate() {
        if i > 0 && i.is_multiple_of(HEARTBEAT_GROUPS_PER_TURN) {
            futures_lite::future::yield_now().await;
        }
        notify_ids_changed(b, g);
    }
    if body_len > HEARTBEAT_PARSE_INLINE_BYTES {
        // Freeing the parsed tree of a large body takes milliseconds too: on the blocking pool.
        drop(groups);
        crate::rt::blocking(move || drop(body)).await;
    }
    let mut r = req.response_to(rs::SUCCESS);
    HeartbeatResponse { is_sub_change: Some(true) }.encode(&mut r);
    r
}

fn register_subscription(g: &mut ConsumerGroup, s: &SubscriptionData) {
    let Some(topic) = &s.topic else {
        return;
    };
    let (kind, expr) = s.expression();
    if g.subscriptions.get(topic).is_some_and(|(k, e, _)| *k == kind && *e == expr) {
        return;
    }
    match Subscription::parse(Some(&kind), &expr) {
        Ok(sub) => {
            g.subscriptions.insert(topic.clone(), (kind, expr, Rc::new(sub)));
        }
        Err(e) => {
            tracing::warn!(topic, expr, error = %e, "ignoring a subscription that does not parse")
        }
    }
}

/// Drops clients silent for longer than `expiry` (the shard's client-expiry task) and tells the
/// groups that lost a member to rebalance.
pub fn expire_clients<D: Disk>(b: &Broker<D>, expiry: Duration) {
    let changed = b.clients.borrow_mut().expire(expiry);
    for g in changed {
        tracing::info!(group = %g, "dropped consumers silent for longer than the expiry");
        notify_ids_changed(b, &g);
    }
}

/// Tells every member of `group` to rebalance now.
pub fn notify_ids_changed<D: Disk>(b: &Broker<D>, group: &str) {
    let reg = b.clients.borrow();
    let Some(g) = reg.consumers.get(group) else {
        return;
    };
    for m in g.members.values() {
        let cmd = ConsumerGroupRequest { consumer_group: group.into() }.request(rq::NOTIFY_CONSUMER_IDS_CHANGED);
        m.conn.send_oneway(cmd);
    }
}

pub fn unregister<D: Disk>(b: &Broker<D>, req: &Command) -> Reply {
    let UnregisterClientRequest { client_id, producer_group: pgroup, consumer_group: cgroup } =
        UnregisterClientRequest::decode(req)?;
    let mut changed = Vec::new();
    {
        let mut reg = b.clients.borrow_mut();
        if let Some(g) = cgroup.as_ref().and_then(|g| reg.consumers.get_mut(g))
            && g.members.remove(&client_id).is_some()
        {
            changed.extend(cgroup.clone());
        }
        if let Some(p) = pgroup.as_ref().and_then(|g| reg.producers.get_mut(g)) {
            p.remove(&client_id);
        }
        reg.consumers.retain(|_, g| !g.members.is_empty());
    }
    for g in changed {
        notify_ids_changed(b, &g);
    }
    Ok(req.response_to(rs::SUCCESS))
}

pub fn consumer_list<D: Disk>(b: &Broker<D>, req: &Command) -> Reply {
    let group = ConsumerGroupRequest::decode(req)?.consumer_group;
    let ids = b.clients.borrow().consumer_ids(&group);
    if ids.is_empty() {
        return Err(BrokerError::System(format!("no consumer for this group, {group}")));
    }
    Ok(req.response_to(rs::SUCCESS).with_body(body::encode_json(&ConsumerIdList { consumer_id_list: ids })))
}

/// GET_ALL_SUBSCRIPTIONGROUP_CONFIG: groups with live consumers or committed offsets on this shard,
/// in RocketMQ's `subscriptionGroupTable` shape (defaults for the settings ringmq does not keep).
pub fn all_groups<D: Disk>(b: &Broker<D>, req: &Command) -> Command {
    let mut names: std::collections::BTreeSet<String> = b.clients.borrow().consumers.keys().cloned().collect();
    names.extend(b.offsets.borrow().entries().into_iter().map(|(g, ..)| g));
    let mut groups = b.groups.borrow_mut();
    groups.ensure_many(names.iter().map(String::as_str));
    let table: serde_json::Map<String, Value> =
        groups.groups.iter().map(|(g, cfg)| (g.clone(), serde_json::to_value(cfg).unwrap_or(Value::Null))).collect();
    let body = serde_json::json!({"subscriptionGroupTable": table, "dataVersion": b.topics.borrow().version});
    req.response_to(rs::SUCCESS).with_body(body.to_string())
}

pub fn check_client_config(req: &Command) -> Command {
    let body = match body::decode_json::<CheckClientConfigBody>("CheckClientConfigBody", &req.body_bytes()) {
        Ok(b) => b,
        Err(e) => return BrokerError::System(e.to_string()).respond(req),
    };
    let (kind, expr) = body.subscription_data.expression();
    match Subscription::parse(Some(&kind), &expr) {
        Ok(_) => req.response_to(rs::SUCCESS),
        Err(e) => BrokerError::SubscriptionParseFailed(format!("cannot parse {expr:?}: {e}")).respond(req),
    }
}

fn lock_body<D: Disk>(b: &Broker<D>, req: &Command) -> Result<LockBatchRequestBody, BrokerError> {
    let body: LockBatchRequestBody =
        body::decode_json("LockBatchRequestBody", &req.body_bytes()).map_err(|e| BrokerError::System(e.to_string()))?;
    let cap = b.cfg.max_request_list_entries;
    if body.mq_set.len() > cap {
        return Err(BrokerError::System(format!(
            "lock request names {} queues, past the limit of {cap} (max_request_list_entries)",
            body.mq_set.len()
        )));
    }
    Ok(body)
}

fn mq_key(group: &str, mq: &MessageQueue) -> (String, String, i32) {
    (group.to_string(), mq.topic.clone(), mq.queue_id)
}

pub fn lock_batch<D: Disk>(b: &Broker<D>, req: &Command) -> Reply {
    let LockBatchRequestBody { consumer_group: group, client_id: client, mq_set, .. } = lock_body(b, req)?;
    let now = now();
    let mut locked = Vec::new();
    let mut reg = b.clients.borrow_mut();
    for mq in mq_set {
        let key = mq_key(&group, &mq);
        let free = match reg.locks.get(&key) {
            None => reg.locks.len() < MAX_QUEUE_LOCKS,
            Some((owner, at)) => *owner == client || now.duration_since(*at) > LOCK_LEASE,
        };
        if free {
            reg.locks.insert(key, (client.clone(), now));
            locked.push(mq);
        }
    }
    Ok(req.response_to(rs::SUCCESS).with_body(body::encode_json(&LockBatchResponseBody { lock_ok_mq_set: locked })))
}

pub fn unlock_batch<D: Disk>(b: &Broker<D>, req: &Command) -> Reply {
    let LockBatchRequestBody { consumer_group: group, client_id: client, mq_set, .. } = lock_body(b, req)?;
    let mut reg = b.clients.borrow_mut();
    for mq in mq_set {
        let key = mq_key(&group, &mq);
        if reg.locks.get(&key).is_some_and(|(owner, _)| *owner == client) {
            reg.locks.remove(&key);
        }
    }
    Ok(req.response_to(rs::SUCCESS))
}
