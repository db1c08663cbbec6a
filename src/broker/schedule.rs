//! Scheduled (delayed) messages with RocketMQ's delay levels, and the retry path that uses them.
//!
//! A message with property `DELAY=<level>` is stored in `SCHEDULE_TOPIC_XXXX`, queue `level − 1`, with
//! `REAL_TOPIC`/`REAL_QID` holding its destination; its consume-queue tag code is its due time
//! (store time + level delay), so each level's queue is ordered by due time. One task per level on
//! each shard re-stores due messages into their real topic and queue (same body, flag, born info,
//! reconsume times and property bytes, as Java does) and advances that level's progress, persisted in
//! `config/delay_offsets.json`.
//!
//! Exactly once across restarts: progress may lag after a crash, so for entries past the persisted
//! progress the task first looks the message's UNIQ_KEY up in the key index of its real topic; a copy
//! stored after the scheduled record means it was already delivered.

use super::Broker;
use super::config_file::ConfigFile;
use super::parking::{SCHEDULE_TOPIC, unpark};
use crate::protocol::message::{MessageToStore, StoredMessage, keys, property_get};
use crate::rt::sleep;
use crate::store::files::SharedFiles;
use crate::store::io::Disk;
use crate::store::now_ms;
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

/// Longest wait of a level task between looks at its queue. A message parked in the level raises
/// the level's signal (`Broker::wake_pollers`) and a due time is waited for exactly, so this only
/// bounds a missed signal and a wall-clock step; an idle level wakes once per period.
const CHECK_EVERY_MS: u64 = 1000;

/// Parses a level list like `1s 5s 10m 2h 1d` into milliseconds.
pub fn parse_levels(s: &str) -> Result<Vec<u64>, String> {
    s.split_whitespace()
        .map(|tok| {
            let (num, unit) = tok.split_at(tok.len().saturating_sub(1));
            let n: u64 = num.parse().map_err(|_| format!("bad delay level {tok:?}"))?;
            let mult = match unit {
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                _ => return Err(format!("bad delay level unit in {tok:?} (use s, m, h or d)")),
            };
            Ok(n * mult)
        })
        .collect()
}

/// Per-level delivery progress (next schedule-queue offset to deliver).
#[derive(Debug)]
pub struct ScheduleProgress {
    offsets: BTreeMap<u32, u64>,
    dirty: bool,
    /// Moves with every change (a master's stream sends the table when it moved).
    version: u64,
    file: ConfigFile,
}

impl ScheduleProgress {
    pub fn load(files: &SharedFiles, dir: &Path) -> ScheduleProgress {
        let file = ConfigFile::new(files, dir, "delay_offsets.json");
        let offsets = file.load(Some("offsetTable"));
        ScheduleProgress { offsets, dirty: false, version: 0, file }
    }

    /// Delivery progress of every level (GET_ALL_DELAY_OFFSET).
    pub fn levels(&self) -> &BTreeMap<u32, u64> {
        &self.offsets
    }

    pub fn get(&self, level: u32) -> u64 {
        self.offsets.get(&level).copied().unwrap_or(0)
    }

    fn set(&mut self, level: u32, offset: u64) {
        self.offsets.insert(level, offset);
        self.dirty = true;
        self.version += 1;
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// Takes the master's progress (on a slave, once its log holds every delivery it counts), or
    /// forgets it (empty: after a truncation, when deliveries it counted may be gone); written by
    /// the next persist.
    pub fn replace(&mut self, offsets: BTreeMap<u32, u64>) {
        if offsets != self.offsets {
            self.offsets = offsets;
            self.dirty = true;
            self.version += 1;
        }
    }

    pub fn persist(&mut self) {
        if !self.dirty {
            return;
        }
        if self.file.save(Some("offsetTable"), &self.offsets) {
            self.dirty = false;
        }
    }
}

/// Rewrites `m` to wait in the schedule topic at `level` (clamped to the highest level).
pub fn park(m: &mut MessageToStore, level: u32, levels: usize) {
    let level = level.clamp(1, levels.max(1) as u32);
    super::parking::park(m, SCHEDULE_TOPIC, level as i32 - 1, &[(keys::DELAY, &level.to_string())]);
}

pub use super::parking::{REAL_QID, REAL_TOPIC};

/// Whether the real topic already holds a copy of `s` stored after it (an earlier delivery whose
/// progress was not persisted before a crash).
async fn already_delivered<D: Disk>(b: &Broker<D>, s: &StoredMessage, real_topic: &str) -> bool {
    let Some(uniq) = property_get(&s.properties, keys::UNIQ_KEY) else {
        return false;
    };
    for phys in b.store.index_lookup(real_topic, uniq, s.store_timestamp_ms, i64::MAX, 16) {
        if phys > s.physical_offset && b.store.read_message(phys).await.is_ok_and(|m| m.topic == real_topic) {
            return true;
        }
    }
    false
}

/// Waits up to `d` for a message parked in the level whose queue is `qid`.
async fn wait<D: Disk>(b: &Broker<D>, qid: i32, d: Duration) {
    match usize::try_from(qid).ok().and_then(|q| b.schedule_signals.get(q)) {
        Some(signal) => signal.wait_at_most(d).await,
        None => sleep(d).await,
    }
}

/// Scheduled messages stored in the levels' queues and not yet delivered (metrics; tests wait for it
/// to reach zero instead of watching a window for a doubled delivery).
pub fn pending<D: Disk>(b: &Broker<D>) -> u64 {
    let progress = b.schedule.borrow();
    (1..=b.delay_levels() as u32)
        .map(|level| {
            let (min, max) = b.store.queue_bounds(SCHEDULE_TOPIC, level as i32 - 1);
            max.saturating_sub(progress.get(level).max(min))
        })
        .sum()
}

/// Delivers one level's due messages forever (on a slave: nothing, until it becomes the master).
pub async fn run_level<D: Disk>(b: Rc<Broker<D>>, level: u32) {
    let qid = level as i32 - 1;
    // Offsets below this were possibly delivered before the last crash, or by the previous master,
    // without the progress saying so: each is looked up in its real topic before delivery.
    let (_, mut verify_until) = b.store.queue_bounds(SCHEDULE_TOPIC, qid);
    let mut term = b.store.replicas.became_master.get();
    tracing::debug!(level, verify_until, progress = b.schedule.borrow().get(level), "delay level task started");
    loop {
        if !b.delivers_parked() {
            wait(&b, qid, Duration::from_millis(CHECK_EVERY_MS)).await;
            continue;
        }
        if b.store.replicas.became_master.get() != term {
            term = b.store.replicas.became_master.get();
            verify_until = b.store.queue_bounds(SCHEDULE_TOPIC, qid).1;
        }
        let (min, max) = b.store.queue_bounds(SCHEDULE_TOPIC, qid);
        let next = b.schedule.borrow().get(level).max(min);
        let e = if next < max { b.store.entry(SCHEDULE_TOPIC, qid, next).await } else { None };
        let Some(e) = e else {
            wait(&b, qid, Duration::from_millis(CHECK_EVERY_MS)).await;
            continue;
        };
        let now = now_ms();
        tracing::trace!(level, next, due = e.tags_code, now, "scheduled entry");
        if e.tags_code > now {
            let wait_ms = ((e.tags_code - now) as u64).min(CHECK_EVERY_MS);
            wait(&b, qid, Duration::from_millis(wait_ms)).await;
            continue;
        }
        if let Err(err) = deliver(&b, e.physical_offset, next < verify_until).await {
            tracing::warn!(level, offset = next, error = %err, "scheduled delivery failed; retrying");
            sleep(Duration::from_secs(1)).await;
            continue;
        }
        b.schedule.borrow_mut().set(level, next + 1);
    }
}

async fn deliver<D: Disk>(b: &Rc<Broker<D>>, phys: u64, verify: bool) -> Result<(), String> {
    let Some(real) = prepare_delivery(b, phys, verify).await? else { return Ok(()) };
    b.ensure_topic(&real.topic, real.queue_id as u32 + 1);
    b.store.put(std::slice::from_ref(&real), true).await.map_err(|e| e.to_string())?;
    b.wake_pollers(&real.topic, real.queue_id);
    Ok(())
}

/// Reads the parked record at `phys` and builds the message to store in its real topic; `None` when
/// there is nothing to deliver (deleted by retention, malformed, or — checked when `verify` — already
/// delivered before a crash).
pub async fn prepare_delivery<D: Disk>(
    b: &Broker<D>,
    phys: u64,
    verify: bool,
) -> Result<Option<MessageToStore>, String> {
    let s = match b.store.read_message(phys).await {
        Ok(s) => s,
        Err(crate::store::StoreError::NotFound(_)) => return Ok(None), // deleted by retention: skip
        Err(e @ crate::store::StoreError::Damaged { .. }) => {
            // Kept in the log for the operator, counted and logged, never re-stored under a fresh CRC.
            b.metrics.damaged_parked(1);
            tracing::error!(phys, error = %e, "a parked (delayed or timer) message is damaged: not delivered");
            return Ok(None);
        }
        Err(e) => return Err(e.to_string()),
    };
    let Some(real) = unpark(&s, b.addr) else {
        tracing::warn!(phys, "parked record without REAL_TOPIC/REAL_QID: dropped");
        return Ok(None);
    };
    if verify && already_delivered(b, &s, &real.topic).await {
        return Ok(None);
    }
    Ok(Some(real))
}

#[cfg(test)]
mod tests {
    use super::super::parking::{RESEND_CHANGING_PROPERTIES, strip_resend_changing};
    use super::*;

    #[test]
    fn parses_rocketmq_default_levels() {
        let l = parse_levels(crate::config::DEFAULT_DELAY_LEVELS).unwrap();
        assert_eq!(l.len(), 18);
        assert_eq!((l[0], l[4], l[17]), (1_000, 60_000, 7_200_000));
        assert!(parse_levels("5x").is_err());
        assert_eq!(parse_levels("1d").unwrap(), vec![86_400_000]);
    }

    #[test]
    fn delivered_copies_lose_the_properties_that_change_a_resend() {
        use crate::protocol::message::properties_encode;
        let p = properties_encode([
            ("TAGS", "a"),
            ("DELAY", "3"),
            ("TIMER_DELAY_MS", "5"),
            ("TRAN_MSG", "true"),
            ("REAL_TOPIC", "T"),
            ("REAL_QID", "1"),
        ]);
        let out = strip_resend_changing(&p);
        for gone in RESEND_CHANGING_PROPERTIES {
            assert_eq!(property_get(&out, gone), None, "{gone}");
        }
        assert_eq!(property_get(&out, "TAGS"), Some("a"));
        assert_eq!(property_get(&out, "REAL_TOPIC"), Some("T"));
        assert_eq!(property_get(&out, "REAL_QID"), Some("1"));
    }

    #[test]
    fn park_sets_real_topic_and_queue() {
        let mut m = MessageToStore::simple("T", 3, bytes::Bytes::new(), String::new());
        park(&mut m, 40, 18);
        assert_eq!((m.topic.as_str(), m.queue_id), (SCHEDULE_TOPIC, 17));
        assert_eq!(property_get(&m.properties, REAL_TOPIC), Some("T"));
        assert_eq!(property_get(&m.properties, REAL_QID), Some("3"));
        assert_eq!(property_get(&m.properties, "DELAY"), Some("18"));
    }
}
