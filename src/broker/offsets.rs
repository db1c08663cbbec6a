//! Consumer offsets and queue positions: QUERY_CONSUMER_OFFSET (with RocketMQ's young-queue rule),
//! UPDATE_CONSUMER_OFFSET, GET_MAX_OFFSET, GET_MIN_OFFSET, SEARCH_OFFSET_BY_TIMESTAMP and
//! GET_EARLIEST_MSG_STORETIME.
//!
//! Offsets are owned by the shard that owns the queue and persisted to `config/offsets.json` in
//! RocketMQ's `consumerOffset.json` shape (`topic@group` → queue → offset) every few seconds and at
//! shutdown; like RocketMQ they may move back after a crash (at-least-once delivery).

use super::config_file::ConfigFile;
use super::{Broker, field, opt_field};
use crate::protocol::Command;
use crate::protocol::codes::{request as rq, response as rs};
use crate::protocol::offset_table::{self, QueueOffset};
use crate::store::files::SharedFiles;
use std::collections::BTreeMap;
use std::path::Path;

/// Share of physical memory below which a queue's backlog counts as "in memory" for the young-queue
/// rule (RocketMQ's accessMessageInMemoryMaxRatio, 40%).
const IN_MEMORY_RATIO: f64 = 0.40;

#[derive(Debug)]
pub struct OffsetTable {
    /// `topic@group` → queue id → next offset to consume.
    table: BTreeMap<String, BTreeMap<i32, u64>>,
    dirty: bool,
    file: ConfigFile,
}

fn key(group: &str, topic: &str) -> String {
    format!("{topic}@{group}")
}

impl OffsetTable {
    pub fn load(files: &SharedFiles, dir: &Path) -> OffsetTable {
        let file = ConfigFile::new(files, dir, "offsets.json");
        let table = file.load(Some("offsetTable"));
        OffsetTable { table, dirty: false, file }
    }

    pub fn commit(&mut self, group: &str, topic: &str, queue_id: i32, offset: u64) {
        self.table.entry(key(group, topic)).or_default().insert(queue_id, offset);
        self.dirty = true;
    }

    pub fn get(&self, group: &str, topic: &str, queue_id: i32) -> Option<u64> {
        self.table.get(&key(group, topic))?.get(&queue_id).copied()
    }

    /// Groups and topics with committed offsets: `(group, topic, queue, offset)`.
    /// Drops every committed offset of `group`; returns how many queues had one.
    pub fn remove_group(&mut self, group: &str) -> usize {
        let before: usize = self.table.values().map(BTreeMap::len).sum();
        self.table.retain(|k, _| k.split_once('@').map(|(_, g)| g) != Some(group));
        let after: usize = self.table.values().map(BTreeMap::len).sum();
        self.dirty |= before != after;
        before - after
    }

    /// Every committed offset as (topic@group, queue → offset), RocketMQ's `offsetTable` keys.
    pub fn table(&self) -> &BTreeMap<String, BTreeMap<i32, u64>> {
        &self.table
    }

    pub fn entries(&self) -> Vec<(String, String, i32, u64)> {
        let mut out = Vec::new();
        for (k, qs) in &self.table {
            let (topic, group) = k.split_once('@').unwrap_or((k, ""));
            for (&q, &o) in qs {
                out.push((group.to_string(), topic.to_string(), q, o));
            }
        }
        out
    }

    /// Writes the table if it changed.
    pub fn persist(&mut self) {
        if !self.dirty {
            return;
        }
        if self.file.save(Some("offsetTable"), &self.table) {
            self.dirty = false;
        }
    }
}

fn physical_memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(8 << 30)
}

pub fn query_consumer_offset(b: &Broker, req: &Command) -> Command {
    let (group, topic, qid) = match group_topic_queue(req) {
        Ok(x) => x,
        Err(e) => return e,
    };
    if let Some(off) = b.offsets.borrow().get(&group, &topic, qid) {
        let mut r = req.response_to(rs::SUCCESS);
        r.put("offset", off);
        return r;
    }
    let not_found = || req.response_to(rs::QUERY_NOT_FOUND).with_remark("Not found, V3_0_6_SNAPSHOT maybe");
    if req.field("setZeroIfNotFound") == Some("false") {
        return not_found();
    }
    // Young-queue rule: a group new to a queue that still starts at 0, with its backlog in memory,
    // starts at 0 rather than at the end, so it sees messages produced before it first started.
    let (min, _) = b.store.queue_bounds(&topic, qid);
    let young = min == 0
        && match b.store.entry(&topic, qid, 0) {
            None => true,
            Some(e) => {
                let backlog = b.store.log().write_pos().saturating_sub(e.physical_offset);
                (backlog as f64) < physical_memory_bytes() as f64 * IN_MEMORY_RATIO
            }
        };
    if !young {
        return not_found();
    }
    let mut r = req.response_to(rs::SUCCESS);
    r.put("offset", 0);
    r
}

fn group_topic_queue(req: &Command) -> Result<(String, String, i32), Command> {
    Ok((field(req, "consumerGroup")?, field(req, "topic")?, field(req, "queueId")?))
}

pub fn update_consumer_offset(b: &Broker, req: &Command) -> Command {
    let (group, topic, qid) = match group_topic_queue(req) {
        Ok(x) => x,
        Err(e) => return e,
    };
    let offset: i64 = match field(req, "commitOffset") {
        Ok(o) => o,
        Err(e) => return e,
    };
    if offset >= 0 {
        b.offsets.borrow_mut().commit(&group, &topic, qid, offset as u64);
    }
    req.response_to(rs::SUCCESS)
}

fn topic_queue(req: &Command) -> Result<(String, i32), Command> {
    Ok((field(req, "topic")?, field(req, "queueId")?))
}

fn offset_response(req: &Command, key: &str, v: impl ToString) -> Command {
    let mut r = req.response_to(rs::SUCCESS);
    r.put(key, v);
    r
}

pub fn get_max_offset(b: &Broker, req: &Command) -> Command {
    match topic_queue(req) {
        Ok((t, q)) => offset_response(req, "offset", b.store.queue_bounds(&t, q).1),
        Err(e) => e,
    }
}

pub fn get_min_offset(b: &Broker, req: &Command) -> Command {
    match topic_queue(req) {
        Ok((t, q)) => offset_response(req, "offset", b.store.queue_bounds(&t, q).0),
        Err(e) => e,
    }
}

/// First offset stored at or after the timestamp (`boundaryType=upper`: last stored at or before).
pub async fn search_by_timestamp(b: &Broker, req: &Command) -> Command {
    let (topic, qid) = match topic_queue(req) {
        Ok(x) => x,
        Err(e) => return e,
    };
    let ts: i64 = match field(req, "timestamp") {
        Ok(t) => t,
        Err(e) => return e,
    };
    let lower = b.store.offset_by_time(&topic, qid, ts).await;
    let off = if req.field("boundaryType").is_some_and(|v| v.eq_ignore_ascii_case("upper")) {
        let after = b.store.offset_by_time(&topic, qid, ts.saturating_add(1)).await;
        after.saturating_sub(1).max(b.store.queue_bounds(&topic, qid).0)
    } else {
        lower
    };
    offset_response(req, "offset", off)
}

/// INVOKE_BROKER_TO_RESET_OFFSET (222): moves a group's offsets on this broker's queues of a topic to
/// the first message stored at or after `timestamp` (−1: the end), or to `offset` for one `queueId`.
/// Without `isForce` an offset only moves backwards. The broker commits the new offsets itself (as
/// RocketMQ 5.2+ does) and pushes them to the group's connected consumers with
/// RESET_CONSUMER_CLIENT_OFFSET (220, as 4.x does), so running consumers jump at once; the answer
/// carries the table.
pub async fn reset_offset(b: &Broker, req: &Command) -> Command {
    let (topic, group, ts): (String, String, i64) =
        match (field(req, "topic"), field(req, "group"), field(req, "timestamp")) {
            (Ok(t), Ok(g), Ok(ts)) => (t, g, ts),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return e,
        };
    let force = opt_field::<bool>(req, "isForce").unwrap_or(true);
    let queue_id: i32 = opt_field(req, "queueId").unwrap_or(-1);
    let Some(queues) = b.topics.borrow().get(&topic).map(|t| t.read_queue_nums as i32) else {
        return req.response_to(rs::TOPIC_NOT_EXIST).with_remark(format!("topic {topic} does not exist on {}", b.name));
    };
    let explicit = opt_field::<i64>(req, "offset").filter(|&o| o >= 0 && queue_id >= 0);
    let ids: Vec<i32> = if queue_id >= 0 { vec![queue_id] } else { (0..queues).collect() };
    let mut table = Vec::with_capacity(ids.len());
    for q in ids {
        let (min, max) = b.store.queue_bounds(&topic, q);
        let target = match explicit {
            Some(o) => (o as u64).clamp(min, max),
            None if ts < 0 => max,
            None => b.store.offset_by_time(&topic, q, ts).await,
        };
        let current = b.offsets.borrow().get(&group, &topic, q);
        let offset = match current {
            Some(c) if !force && target >= c => c,
            _ => target,
        };
        b.offsets.borrow_mut().commit(&group, &topic, q, offset);
        table.push(QueueOffset { topic: topic.clone(), broker_name: b.name.clone(), queue_id: q, offset });
    }
    let body = offset_table::encode(&table);
    let conns = b.clients.borrow().consumer_conns(&group);
    tracing::info!(%group, %topic, ts, consumers = conns.len(), "consumer offsets reset");
    for c in conns {
        let mut push = Command::request(rq::RESET_CONSUMER_CLIENT_OFFSET);
        push.put("topic", &topic);
        push.put("group", &group);
        push.put("timestamp", ts);
        push.put("isForce", force);
        c.send_oneway(push.with_body(body.clone()));
    }
    req.response_to(rs::SUCCESS).with_body(body)
}

pub async fn earliest_store_time(b: &Broker, req: &Command) -> Command {
    let (topic, qid) = match topic_queue(req) {
        Ok(x) => x,
        Err(e) => return e,
    };
    let (min, max) = b.store.queue_bounds(&topic, qid);
    if min >= max {
        return req.response_to(rs::SYSTEM_ERROR).with_remark(format!("queue {topic}:{qid} holds no messages"));
    }
    match b.store.store_time_at(&topic, qid, min).await {
        Some(t) => offset_response(req, "timestamp", t),
        None => req.response_to(rs::SYSTEM_ERROR).with_remark("cannot read the earliest message"),
    }
}
