//! Consumer offsets and queue positions: QUERY_CONSUMER_OFFSET (with RocketMQ's young-queue rule),
//! UPDATE_CONSUMER_OFFSET, GET_MAX_OFFSET, GET_MIN_OFFSET, SEARCH_OFFSET_BY_TIMESTAMP and
//! GET_EARLIEST_MSG_STORETIME.
//!
//! Offsets are owned by the shard that owns the queue and persisted to `config/offsets.json` in
//! RocketMQ's `consumerOffset.json` shape (`topic@group` → queue → offset) every few seconds and at
//! shutdown; like RocketMQ they may move back after a crash (at-least-once delivery).

use super::Broker;
use super::config_file::ConfigFile;
use super::error::{BrokerError, Reply};
use crate::protocol::Command;
use crate::protocol::codes::{request as rq, response as rs};
use crate::protocol::commands::offsets::{
    OffsetResponse, QueryConsumerOffsetRequest, QueueRequest, ResetOffsetRequest, SearchOffsetRequest,
    StoreTimeResponse, UpdateConsumerOffsetRequest,
};
use crate::protocol::offset_table::{self, QueueOffset};
use crate::store::files::SharedFiles;
use crate::store::io::Disk;
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
    /// Moves with every change (a master's replication stream sends the table when it moved).
    version: u64,
}

fn key(group: &str, topic: &str) -> String {
    format!("{topic}@{group}")
}

impl OffsetTable {
    pub fn load(files: &SharedFiles, dir: &Path) -> OffsetTable {
        let file = ConfigFile::new(files, dir, "offsets.json");
        let table = file.load(Some("offsetTable"));
        OffsetTable { table, dirty: false, file, version: 0 }
    }

    pub fn commit(&mut self, group: &str, topic: &str, queue_id: i32, offset: u64) {
        if self.table.entry(key(group, topic)).or_default().insert(queue_id, offset) != Some(offset) {
            self.dirty = true;
            self.version += 1;
        }
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// Takes the master's table (on a slave); written by the next persist.
    pub fn replace(&mut self, table: BTreeMap<String, BTreeMap<i32, u64>>) {
        if table != self.table {
            self.table = table;
            self.dirty = true;
            self.version += 1;
        }
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
        self.version += u64::from(before != after);
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

pub fn query_consumer_offset<D: Disk>(b: &Broker<D>, req: &Command) -> Reply {
    let h = QueryConsumerOffsetRequest::decode(req)?;
    let (group, topic, qid) = (&h.consumer_group, &h.topic, h.queue_id);
    if let Some(off) = b.offsets.borrow().get(group, topic, qid) {
        return Ok(offset_response(req, off));
    }
    let not_found = || BrokerError::NotFound("Not found, V3_0_6_SNAPSHOT maybe".into());
    if h.set_zero_if_not_found == Some(false) {
        return Err(not_found());
    }
    // Young-queue rule: a group new to a queue that still starts at 0, with its backlog in memory,
    // starts at 0 rather than at the end, so it sees messages produced before it first started.
    // (Where entry 0 is only in the files, the log's first byte stands in for its position: the
    // backlog is over-estimated, erring toward starting at the end as RocketMQ does for old queues.)
    let (min, _) = b.store.queue_bounds(topic, qid);
    let young = min == 0
        && match b.store.oldest_physical_bound(topic, qid) {
            None => true,
            Some(first) => {
                let backlog = b.store.log().write_pos().saturating_sub(first);
                (backlog as f64) < physical_memory_bytes() as f64 * IN_MEMORY_RATIO
            }
        };
    if !young {
        return Err(not_found());
    }
    Ok(offset_response(req, 0))
}

pub fn update_consumer_offset<D: Disk>(b: &Broker<D>, req: &Command) -> Reply {
    let h = UpdateConsumerOffsetRequest::decode(req)?;
    if h.commit_offset >= 0 {
        b.offsets.borrow_mut().commit(&h.consumer_group, &h.topic, h.queue_id, h.commit_offset as u64);
    }
    Ok(req.response_to(rs::SUCCESS))
}

fn offset_response(req: &Command, offset: u64) -> Command {
    let mut r = req.response_to(rs::SUCCESS);
    OffsetResponse { offset }.encode(&mut r);
    r
}

pub fn get_max_offset<D: Disk>(b: &Broker<D>, req: &Command) -> Reply {
    let h = QueueRequest::decode(req)?;
    Ok(offset_response(req, b.store.queue_bounds(&h.topic, h.queue_id).1))
}

pub fn get_min_offset<D: Disk>(b: &Broker<D>, req: &Command) -> Reply {
    let h = QueueRequest::decode(req)?;
    Ok(offset_response(req, b.store.queue_bounds(&h.topic, h.queue_id).0))
}

/// First offset stored at or after the timestamp (`boundaryType=upper`: last stored at or before).
pub async fn search_by_timestamp<D: Disk>(b: &Broker<D>, req: &Command) -> Reply {
    let h = SearchOffsetRequest::decode(req)?;
    let (topic, qid, ts) = (&h.topic, h.queue_id, h.timestamp);
    let off = if h.upper() {
        let after = b.store.offset_by_time(topic, qid, ts.saturating_add(1)).await;
        after.saturating_sub(1).max(b.store.queue_bounds(topic, qid).0)
    } else {
        b.store.offset_by_time(topic, qid, ts).await
    };
    Ok(offset_response(req, off))
}

/// INVOKE_BROKER_TO_RESET_OFFSET (222): moves a group's offsets on this broker's queues of a topic to
/// the first message stored at or after `timestamp` (−1: the end), or to `offset` for one `queueId`.
/// Without `isForce` an offset only moves backwards. The broker commits the new offsets itself (as
/// RocketMQ 5.2+ does) and pushes them to the group's connected consumers with
/// RESET_CONSUMER_CLIENT_OFFSET (220, as 4.x does), so running consumers jump at once; the answer
/// carries the table.
pub async fn reset_offset<D: Disk>(b: &Broker<D>, req: &Command) -> Reply {
    let h = ResetOffsetRequest::decode(req)?;
    let (topic, group, ts, force) = (&h.topic, &h.group, h.timestamp, h.force());
    let Some(queues) = b.topics.borrow().get(topic).map(|t| t.read_queue_nums as i32) else {
        return Err(BrokerError::TopicNotExist { topic: topic.clone(), broker: b.name.clone() });
    };
    let ids: Vec<i32> = match h.queue() {
        Some(q) => vec![q],
        None => (0..queues).collect(),
    };
    let mut table = Vec::with_capacity(ids.len());
    for q in ids {
        let (min, max) = b.store.queue_bounds(topic, q);
        let target = match h.explicit_offset() {
            Some(o) => o.clamp(min, max),
            None if ts < 0 => max,
            None => b.store.offset_by_time(topic, q, ts).await,
        };
        let current = b.offsets.borrow().get(group, topic, q);
        let offset = match current {
            Some(c) if !force && target >= c => c,
            _ => target,
        };
        b.offsets.borrow_mut().commit(group, topic, q, offset);
        table.push(QueueOffset { topic: topic.clone(), broker_name: b.name.clone(), queue_id: q, offset });
    }
    let body = offset_table::encode(&table);
    let conns = b.clients.borrow().consumer_conns(group);
    tracing::info!(%group, %topic, ts, consumers = conns.len(), "consumer offsets reset");
    let push = ResetOffsetRequest { queue_id: None, offset: None, is_force: Some(force), ..h.clone() };
    for c in conns {
        c.send_oneway(push.request(rq::RESET_CONSUMER_CLIENT_OFFSET).with_body(body.clone()));
    }
    Ok(req.response_to(rs::SUCCESS).with_body(body))
}

pub async fn earliest_store_time<D: Disk>(b: &Broker<D>, req: &Command) -> Reply {
    let h = QueueRequest::decode(req)?;
    let (topic, qid) = (&h.topic, h.queue_id);
    let (min, max) = b.store.queue_bounds(topic, qid);
    if min >= max {
        return Err(BrokerError::System(format!("queue {topic}:{qid} holds no messages")));
    }
    let Some(timestamp) = b.store.store_time_at(topic, qid, min).await else {
        return Err(BrokerError::System("cannot read the earliest message".into()));
    };
    let mut r = req.response_to(rs::SUCCESS);
    StoreTimeResponse { timestamp }.encode(&mut r);
    Ok(r)
}
