//! PULL_MESSAGE (11) and LITE_PULL_MESSAGE (361) with long polling.
//!
//! A pull that finds nothing, with the SUSPEND flag, is parked on its (topic, queue) until an append
//! to that queue wakes it or its deadline passes (`suspendTimeoutMillis`, answered before the client's
//! own 30 s timeout). Waiters live on the shard that owns the queue; a wake re-runs the pull, and
//! re-parks it when the new messages do not pass its filter.

use super::Broker;
use super::error::BrokerError;
use super::topics::PERM_READ;
use crate::filter::Subscription;
use crate::net::conn::Conn;
use crate::protocol::Command;
use crate::protocol::codes::response as rs;
use crate::protocol::commands::pull::{
    FLAG_COMMIT_OFFSET, FLAG_SUBSCRIPTION, FLAG_SUSPEND, PullRequestHeader, PullResponseHeader,
};
use crate::protocol::message::StoredMessage;
use crate::store::io::Disk;
use crate::store::replicas::ReplicaRole;
use crate::store::{GetResult, GetStatus};
use bytes::Bytes;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Largest pull response body: well under the 16 MiB frame limit.
const MAX_PULL_BYTES: usize = 8 << 20;
/// Hold time when the client asks for long polling without a timeout.
const DEFAULT_SUSPEND_MS: u64 = 15_000;
/// Pulls parked at once on one shard. Each holds its request (~0.5 KiB); RocketMQ clients park one
/// per assigned queue, so 64 Ki covers thousands of consumers while bounding a client that pipelines
/// pulls without end to ~32 MiB. Past it a pull that finds nothing is answered at once.
pub const MAX_PARKED_PULLS: usize = 65_536;

/// How a pull execution may end when nothing is found.
#[derive(Debug, Clone, Copy)]
pub enum Suspend {
    /// First execution: may park if the client allowed it.
    Allowed,
    /// Woken by an append: re-park until the deadline if still nothing matches.
    Resume(Instant),
    /// Deadline passed: answer now.
    Never,
}

struct Parked {
    conn: Rc<Conn>,
    req: Command,
    deadline: Instant,
}

/// Parked pulls of one shard, by (topic, queue id).
#[derive(Default)]
pub struct LongPolls {
    waiting: HashMap<(String, i32), Vec<Parked>>,
    /// Sum of the lists' lengths, kept with them.
    parked: usize,
}

impl LongPolls {
    pub fn len(&self) -> usize {
        self.parked
    }
}

/// Entry point from the request dispatcher.
pub async fn handle<D: Disk>(b: &Rc<Broker<D>>, conn: &Rc<Conn>, req: Command, first: bool) -> Option<Command> {
    execute(b, conn, req, if first { Suspend::Allowed } else { Suspend::Never }).await
}

async fn execute<D: Disk>(b: &Rc<Broker<D>>, conn: &Rc<Conn>, req: Command, suspend: Suspend) -> Option<Command> {
    let (p, sub) = match PullRequest::decode(&req).and_then(|p| resolve(b, &p).map(|sub| (p, sub))) {
        Ok(x) => x,
        Err(e) => return Some(e.respond(&req)),
    };
    if matches!(suspend, Suspend::Allowed) && p.sys_flag & FLAG_COMMIT_OFFSET != 0 && p.commit_offset >= 0 {
        b.offsets.borrow_mut().commit(&p.group, &p.topic, p.queue_id, p.commit_offset as u64);
    }
    let read = read(b.store.clone(), p.topic.clone(), p.queue_id, p.offset, p.max_msgs, p.max_bytes, sub);
    // A read of the backlog from disk runs behind everything else on the shard (rt::spawn_catch_up).
    let r = if b.store.is_catch_up(&p.topic, p.queue_id, p.offset) {
        b.catch_up.wait_turn().await;
        let r = crate::rt::spawn_catch_up(read).await;
        b.catch_up.charge(r.records.iter().map(|rec| rec.len() as u64).sum());
        r
    } else {
        read.await
    };
    let (code, next) = match r.status {
        GetStatus::Found => (rs::SUCCESS, r.next_offset),
        GetStatus::NoMessageInQueue if p.offset == 0 => (rs::PULL_NOT_FOUND, 0),
        GetStatus::NoMessageInQueue => (rs::PULL_OFFSET_MOVED, 0),
        GetStatus::OffsetTooSmall | GetStatus::OffsetOverflowBadly => (rs::PULL_OFFSET_MOVED, r.next_offset),
        GetStatus::OffsetOverflowOne => (rs::PULL_NOT_FOUND, p.offset),
        GetStatus::NoMatchedMessage | GetStatus::MessageWasRemoving => (rs::PULL_RETRY_IMMEDIATELY, r.next_offset),
        GetStatus::Corrupt | GetStatus::Unreadable => (rs::SYSTEM_ERROR, p.offset),
    };
    let nothing = code == rs::PULL_NOT_FOUND
        || (code == rs::PULL_RETRY_IMMEDIATELY
            && r.status == GetStatus::NoMatchedMessage
            && r.next_offset >= r.max_offset);
    if nothing {
        let deadline = match suspend {
            Suspend::Allowed if p.sys_flag & FLAG_SUSPEND != 0 => {
                Some(crate::rt::now() + Duration::from_millis(p.suspend_ms))
            }
            Suspend::Resume(d) if d > crate::rt::now() => Some(d),
            _ => None,
        };
        if let Some(deadline) = deadline
            && b.polls.borrow().parked < MAX_PARKED_PULLS
        {
            let key = (p.topic.clone(), p.queue_id);
            let mut parked_req = req;
            if code == rs::PULL_RETRY_IMMEDIATELY
                && let Ok(mut h) = PullRequestHeader::decode(&parked_req)
            {
                h.queue_offset = r.next_offset as i64; // resumed past what was already filtered out
                h.encode(&mut parked_req);
            }
            let mut polls = b.polls.borrow_mut();
            polls.parked += 1;
            polls.waiting.entry(key).or_default().push(Parked { conn: conn.clone(), req: parked_req, deadline });
            drop(polls);
            b.pull_parked.raise();
            return None;
        }
    }
    if !r.records.is_empty() {
        let bytes: usize = r.records.iter().map(|b| b.len()).sum();
        b.metrics.flow(&p.topic, 0, 0, r.records.len() as u64, bytes as u64);
    }
    let mut resp = req.response_to(code).with_remark(format!("{:?}", r.status));
    PullResponseHeader {
        suggest_which_broker_id: suggest_broker(b, &r),
        next_begin_offset: next,
        min_offset: r.min_offset,
        max_offset: r.max_offset,
    }
    .encode(&mut resp);
    resp.body = r.records;
    Some(resp)
}

/// The store read of a pull, owning what it needs so that it can run as a task of its own.
async fn read<D: Disk>(
    store: Rc<crate::store::Store<D>>,
    topic: String,
    queue_id: i32,
    offset: u64,
    max_msgs: usize,
    max_bytes: usize,
    sub: Rc<Subscription>,
) -> GetResult {
    let tag_filter = |code: i64| sub.matches_tag_code(code);
    let record_filter = |rec: &Bytes| match sub.as_ref() {
        Subscription::Sql(_) => StoredMessage::decode(rec).is_ok_and(|m| sub.matches_message(&|k| m.property(k))),
        _ => true,
    };
    store.get(&topic, queue_id, offset, max_msgs, max_bytes.min(MAX_PULL_BYTES), &tag_filter, &record_filter).await
}

/// RocketMQ's suggestWhichBrokerId: which replica the consumer's next pull of this queue should go
/// to. With `slave_read_enable`, a master whose reader is further back than its tail cache holds
/// sends it to an in-sync slave (its catch-up reads then spare the master's disk), and a slave
/// keeps a reader that is still far back and sends one that caught up back to the master (0).
/// Slaves serve every pull either way, only up to their confirm offset.
fn suggest_broker<D: Disk>(b: &Broker<D>, r: &GetResult) -> u64 {
    const MASTER_ID: u64 = 0;
    if !b.cfg.slave_read_enable || r.records.is_empty() {
        return MASTER_ID;
    }
    let far = r.behind_bytes > b.cfg.tail_cache_bytes as u64;
    let g = &b.store.replicas;
    match g.role() {
        ReplicaRole::Master if far => g.read_slave().map_or(MASTER_ID, u64::from),
        ReplicaRole::Slave if far => g.node_id().map_or(MASTER_ID, u64::from),
        _ => MASTER_ID,
    }
}

/// The decoded pull header, with its defaults and limits applied.
struct PullRequest {
    group: String,
    topic: String,
    queue_id: i32,
    offset: u64,
    max_msgs: usize,
    max_bytes: usize,
    sys_flag: i32,
    commit_offset: i64,
    suspend_ms: u64,
    subscription: Option<String>,
    expression_type: Option<String>,
}

impl PullRequest {
    fn decode(req: &Command) -> Result<PullRequest, BrokerError> {
        let h = PullRequestHeader::decode(req)?;
        Ok(PullRequest {
            offset: h.offset(),
            max_msgs: h.max_msgs(),
            max_bytes: h.max_bytes(MAX_PULL_BYTES),
            sys_flag: h.sys_flag(),
            commit_offset: h.commit_offset.unwrap_or(-1),
            suspend_ms: h.suspend_ms(DEFAULT_SUSPEND_MS),
            group: h.consumer_group,
            topic: h.topic,
            queue_id: h.queue_id,
            subscription: h.subscription,
            expression_type: h.expression_type,
        })
    }
}

/// Checks topic and queue and finds the subscription to filter with.
fn resolve<D: Disk>(b: &Broker<D>, p: &PullRequest) -> Result<Rc<Subscription>, BrokerError> {
    let topics = b.topics.borrow();
    let Some(tc) = topics.get(&p.topic) else {
        return Err(BrokerError::TopicNotExist { topic: p.topic.clone(), broker: b.name.clone() });
    };
    if tc.perm & PERM_READ == 0 {
        return Err(BrokerError::NoPermission(format!("topic {} is not readable", p.topic)));
    }
    if p.queue_id < 0 || p.queue_id as u32 >= tc.read_queue_nums.max(tc.write_queue_nums) {
        return Err(BrokerError::InvalidParameter(format!(
            "queueId {} is out of range: topic {} has {} read queues",
            p.queue_id, p.topic, tc.read_queue_nums
        )));
    }
    if p.sys_flag & FLAG_SUBSCRIPTION != 0 {
        let expr = p.subscription.as_deref().unwrap_or("*");
        return Subscription::parse(p.expression_type.as_deref(), expr)
            .map(Rc::new)
            .map_err(|e| BrokerError::SubscriptionParseFailed(format!("cannot parse subscription {expr:?}: {e}")));
    }
    b.clients.borrow().subscription(&p.group, &p.topic).ok_or_else(|| {
        BrokerError::SubscriptionNotExist(format!(
            "consumer group {} has no subscription to {} on this broker (no heartbeat yet?)",
            p.group, p.topic
        ))
    })
}

impl<D: Disk> Broker<D> {
    /// After an append to (topic, queue): re-runs the pulls parked on it, and wakes the task that
    /// delivers it when it is a parking queue (timers, a delay level).
    pub fn wake_pollers(self: &Rc<Self>, topic: &str, queue_id: i32) {
        if topic == super::parking::TIMER_TOPIC {
            self.timer_signal.notify();
        } else if topic == super::parking::SCHEDULE_TOPIC
            && let Some(s) = usize::try_from(queue_id).ok().and_then(|q| self.schedule_signals.get(q))
        {
            s.notify();
        }
        let parked = {
            let mut polls = self.polls.borrow_mut();
            if polls.waiting.is_empty() {
                return; // the usual case on the send path: no key to build, nothing to look up
            }
            let Some(p) = polls.waiting.remove(&(topic.to_string(), queue_id)) else { return };
            polls.parked -= p.len();
            p
        };
        for w in parked {
            let deadline = w.deadline;
            self.resume(w, Suspend::Resume(deadline));
        }
    }

    /// Re-runs every parked pull: a slave's readable end moved (its master's confirm offset), and
    /// which queues it uncovered is not tracked. Bounded by [`MAX_PARKED_PULLS`].
    pub fn wake_all_pollers(self: &Rc<Self>) {
        let parked: Vec<Parked> = {
            let mut polls = self.polls.borrow_mut();
            polls.parked = 0;
            polls.waiting.drain().flat_map(|(_, v)| v).collect()
        };
        for w in parked {
            let deadline = w.deadline;
            self.resume(w, Suspend::Resume(deadline));
        }
    }

    /// Answers every parked pull whose deadline has passed; run periodically by the shard.
    pub fn expire_pollers(self: &Rc<Self>, now: Instant) {
        let mut due = Vec::new();
        let mut polls = self.polls.borrow_mut();
        for list in polls.waiting.values_mut() {
            let (expired, keep): (Vec<Parked>, Vec<Parked>) =
                list.drain(..).partition(|w| w.deadline <= now || w.conn.is_closed());
            *list = keep;
            due.extend(expired);
        }
        polls.parked -= due.len();
        polls.waiting.retain(|_, v| !v.is_empty());
        drop(polls);
        for w in due.into_iter().filter(|w| !w.conn.is_closed()) {
            self.resume(w, Suspend::Never);
        }
    }

    fn resume(self: &Rc<Self>, w: Parked, suspend: Suspend) {
        let b = self.clone();
        let owed = crate::net::drain::Unfinished::begin(); // a parked pull's answer is owed too
        crate::rt::spawn(async move {
            let _owed = owed;
            if let Some(resp) = execute(&b, &w.conn, w.req, suspend).await {
                w.conn.send(resp);
            }
        })
        .detach();
    }
}
