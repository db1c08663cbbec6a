//! Timer messages: RocketMQ 5's arbitrary delivery times (`TIMER_DELIVER_MS` absolute epoch ms,
//! `TIMER_DELAY_SEC` / `TIMER_DELAY_MS` relative to arrival). Lives on each shard, beside the delay
//! levels of `schedule`.
//!
//! A timed message is stored in `rmq_sys_wheel_timer` queue 0 with `REAL_TOPIC`/`REAL_QID` and
//! `TIMER_OUT_MS` (its due time, which the store keeps as the consume-queue tag code). That queue is
//! the durable record; the shard keeps an in-memory min-heap of `(due, queue offset)` — 16 bytes per
//! pending message, 24 more for its consume-queue entry, so a million pending timers cost ~40 MiB —
//! and one task pops due entries in batches and re-stores them into their real topic and queue
//! (exactly as the delay levels do: same body, properties and born info). Unlike RocketMQ, due times
//! are kept to the millisecond, not rounded down to a 1 s tick, so nothing is delivered early.
//!
//! Restart: `config/timer_progress.json` records `loadedTo` (every queue entry below it had been
//! loaded) and a bound (every loaded entry with a smaller `(due, offset)` had been delivered). The
//! heap is rebuilt from the consume queue, skipping entries known delivered; entries past the
//! persisted bound that are due are checked against the real topic's key index (UNIQ_KEY) before
//! delivery, so none is lost or doubled.

use super::Broker;
use super::config_file::ConfigFile;
use super::parking::{TIMER_OUT_MS, TIMER_TOPIC, park};
use super::schedule::prepare_delivery;
use crate::protocol::message::{MessageToStore, properties_edit, property_get};
use crate::rt::sleep;
use crate::store::files::SharedFiles;
use crate::store::io::Disk;
use crate::store::now_ms;
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

pub use crate::protocol::message::keys::{TIMER_DELAY_MS, TIMER_DELAY_SEC, TIMER_DELIVER_MS};
/// Longest wait between looks at the wheel. A timer message stored raises `Broker::timer_signal`,
/// so an earlier due time is seen at once; this only bounds a missed signal and a wall-clock step.
const CHECK_EVERY_MS: i64 = 1000;
/// Most messages re-stored by one append (one group commit).
const BATCH: usize = 256;

/// The delivery time a message asks for, if any: `Ok(None)` for no timer property, an error text
/// (MESSAGE_ILLEGAL) for an unparsable value.
pub fn requested_delivery(properties: &str, now: i64) -> Result<Option<i64>, String> {
    if memchr::memmem::find(properties.as_bytes(), b"TIMER_").is_none() {
        return Ok(None); // the common case, in one pass instead of a lookup per timer property
    }
    let num = |k: &str| -> Result<Option<i64>, String> {
        match property_get(properties, k) {
            None => Ok(None),
            Some(v) => v.trim().parse::<i64>().map(Some).map_err(|_| format!("property {k} is not a number: {v:?}")),
        }
    };
    if let Some(at) = num(TIMER_DELIVER_MS)? {
        return Ok(Some(at));
    }
    if let Some(s) = num(TIMER_DELAY_SEC)? {
        return Ok(Some(now.saturating_add(s.saturating_mul(1000))));
    }
    Ok(num(TIMER_DELAY_MS)?.map(|ms| now.saturating_add(ms)))
}

/// Removes the timer properties (a delay level present too wins, as in RocketMQ).
pub fn strip(properties: &str) -> String {
    properties_edit(properties, &[], &[TIMER_DELIVER_MS, TIMER_DELAY_SEC, TIMER_DELAY_MS])
}

/// Parks `m` in the timer topic when it asks for a future delivery time; a due time in the past
/// leaves it to be delivered now. Errors are MESSAGE_ILLEGAL remarks.
pub fn park_if_timed(m: &mut MessageToStore, max_delay_secs: u64) -> Result<(), String> {
    let now = now_ms();
    let Some(due) = requested_delivery(&m.properties, now)? else { return Ok(()) };
    if due <= now {
        return Ok(());
    }
    let max_ms = max_delay_secs.saturating_mul(1000) as i64;
    if due - now > max_ms {
        return Err(format!(
            "timer delivery time {due} is {} ms away, beyond the {max_delay_secs} s limit (timer_max_delay_secs)",
            due - now
        ));
    }
    park(m, TIMER_TOPIC, 0, &[(TIMER_OUT_MS, &due.to_string())]);
    Ok(())
}

/// What survives a restart (`config/timer_progress.json`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Progress {
    /// Every queue entry below this offset had been loaded into the heap.
    loaded_to: u64,
    /// Every loaded entry whose `(due, offset)` is below `(bound_due, bound_offset)` was delivered.
    bound_due: i64,
    bound_offset: u64,
}

/// A shard's pending timer messages.
#[derive(Debug)]
pub struct TimerWheel {
    heap: BinaryHeap<Reverse<(i64, u64)>>,
    /// Set while the heap is not (yet) rebuilt — at start, and on a slave: progress is not saved
    /// meanwhile (the empty wheel's progress would overwrite what was recorded or adopted).
    recovering: bool,
    loaded_to: u64,
    /// Largest `(due, offset)` delivered so far.
    delivered: Option<(i64, u64)>,
    /// Entries below this queue offset may have been delivered before the last stop unrecorded.
    verify_until: u64,
    persisted: Progress,
    /// Moves when `persisted` does (a master's stream sends the progress when it moved).
    version: u64,
    file: ConfigFile,
}

impl TimerWheel {
    pub fn load(files: &SharedFiles, dir: &Path) -> TimerWheel {
        let file = ConfigFile::new(files, dir, "timer_progress.json");
        let persisted = file.load(None);
        TimerWheel {
            heap: BinaryHeap::new(),
            recovering: false,
            loaded_to: 0,
            delivered: None,
            verify_until: 0,
            persisted,
            version: 0,
            file,
        }
    }

    /// Number of messages waiting.
    pub fn pending(&self) -> usize {
        self.heap.len()
    }

    /// Rebuilds the heap from the timer queue's entries `[min, max)` (`dues`: each entry's offset and
    /// due time).
    fn recover(&mut self, max: u64, dues: &[(u64, i64)]) {
        let p = self.persisted;
        for &(off, due) in dues {
            if off < p.loaded_to && (due, off) < (p.bound_due, p.bound_offset) {
                continue; // delivered before the last stop
            }
            self.heap.push(Reverse((due, off)));
        }
        self.loaded_to = max;
        self.verify_until = max;
        self.recovering = false;
    }

    /// Adds entries appended since the last call (`dues` from [`dues_between`] of `loaded_to..max`).
    fn load_new(&mut self, max: u64, dues: &[(u64, i64)]) {
        for &(off, due) in dues.iter().filter(|(off, _)| *off >= self.loaded_to) {
            self.heap.push(Reverse((due, off)));
        }
        self.loaded_to = self.loaded_to.max(max);
    }

    /// Pops up to `max` entries due at `now`.
    fn pop_due(&mut self, now: i64, max: usize) -> Vec<(i64, u64)> {
        let mut out = Vec::new();
        while out.len() < max && self.heap.peek().is_some_and(|Reverse((due, _))| *due <= now) {
            out.extend(self.heap.pop().map(|Reverse(k)| k));
        }
        out
    }

    fn next_due(&self) -> Option<i64> {
        self.heap.peek().map(|Reverse((due, _))| *due)
    }

    fn delivered(&mut self, keys: &[(i64, u64)]) {
        let top = keys.iter().copied().max();
        self.delivered = self.delivered.max(top);
    }

    /// The progress that is safe to record now.
    fn progress(&self) -> Progress {
        // Below the heap's minimum nothing loaded is pending; above the largest delivered key nothing
        // is known delivered.
        let after_delivered = self.delivered.map_or((i64::MIN, 0), |(d, o)| (d, o + 1));
        let bound = match self.heap.peek() {
            Some(Reverse(min)) => after_delivered.min(*min),
            None => after_delivered,
        };
        Progress { loaded_to: self.loaded_to, bound_due: bound.0, bound_offset: bound.1 }
    }

    pub fn persist(&mut self) {
        if self.recovering {
            return;
        }
        let p = self.progress();
        if p != self.persisted && self.file.save(None, &p) {
            self.persisted = p;
            self.version += 1;
        }
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// The recorded progress as JSON (what a master's stream sends).
    pub fn progress_json(&self) -> serde_json::Result<Vec<u8>> {
        serde_json::to_vec(&self.persisted)
    }

    /// Takes the master's recorded progress (on a slave, once its log holds every delivery it
    /// counts), or forgets it (`None`: after a truncation); the heap is rebuilt from it when this
    /// replica becomes the master.
    pub fn adopt(&mut self, progress: Option<&[u8]>) -> Result<(), String> {
        let p = match progress {
            Some(body) => serde_json::from_slice(body).map_err(|e| format!("master's timer progress: {e}"))?,
            None => Progress::default(),
        };
        if p != self.persisted && self.file.save(None, &p) {
            self.persisted = p;
            self.version += 1;
        }
        Ok(())
    }
}

/// Offsets and due times of the timer queue's entries in `[from, to)` on `b`'s store (entries deleted
/// by retention are skipped), and where the read stopped: `to`, or the first entry whose file could
/// not be read (loading resumes there on the next round instead of passing it over).
async fn dues_between<D: Disk>(b: &Broker<D>, from: u64, to: u64) -> (Vec<(u64, i64)>, u64) {
    let mut out = Vec::new();
    for off in from..to {
        match b.store.try_entry(TIMER_TOPIC, 0, off).await {
            Ok(Some(e)) => out.push((off, e.tags_code)),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(offset = off, error = %e, "timer entry unreadable; retrying");
                return (out, off);
            }
        }
    }
    (out, to)
}

/// Rebuilds the heap from the timer queue and the recorded progress (at start, and when this
/// replica becomes the master: the previous master's deliveries are in the log, its progress was
/// adopted, and every entry past it is verified against the real topic before delivery).
async fn rebuild<D: Disk>(b: &Broker<D>) {
    let (min, max) = b.store.queue_bounds(TIMER_TOPIC, 0);
    // The entries are read with awaits (cold reads): the progress task must not save the empty
    // wheel's progress over the last run's meanwhile.
    {
        let mut w = b.timer.borrow_mut();
        w.recovering = true;
        w.heap.clear();
        w.delivered = None;
    }
    let (dues, reached) = dues_between(b, min, max).await;
    b.timer.borrow_mut().recover(reached, &dues);
}

/// Delivers due timer messages forever (on a slave: nothing, until it becomes the master).
pub async fn run<D: Disk>(b: Rc<Broker<D>>) {
    // Until the heap is rebuilt the wheel's own progress means nothing: the recorded one (this
    // replica's, or the master's it adopted as a slave) must not be overwritten by it.
    b.timer.borrow_mut().recovering = true;
    while !b.delivers_parked() {
        b.timer_signal.wait_at_most(Duration::from_millis(CHECK_EVERY_MS as u64)).await;
    }
    let mut term = b.store.replicas.became_master.get();
    rebuild(&b).await;
    tracing::debug!(pending = b.timer.borrow().pending(), "timer task started");
    loop {
        if !b.delivers_parked() {
            b.timer.borrow_mut().recovering = true; // deposed: the new master's progress rules
            b.timer_signal.wait_at_most(Duration::from_millis(CHECK_EVERY_MS as u64)).await;
            continue;
        }
        if b.store.replicas.became_master.get() != term {
            term = b.store.replicas.became_master.get();
            rebuild(&b).await;
            continue;
        }
        let (_, max) = b.store.queue_bounds(TIMER_TOPIC, 0);
        let now = now_ms();
        let loaded_to = b.timer.borrow().loaded_to;
        let (dues, reached) = dues_between(&b, loaded_to, max).await;
        let due = {
            let mut w = b.timer.borrow_mut();
            w.load_new(reached, &dues);
            w.pop_due(now, BATCH)
        };
        if due.is_empty() {
            let next = b.timer.borrow().next_due().unwrap_or(i64::MAX);
            let wait = next.saturating_sub(now).clamp(1, CHECK_EVERY_MS);
            b.timer_signal.wait_at_most(Duration::from_millis(wait as u64)).await;
            continue;
        }
        if let Err(e) = deliver(&b, &due).await {
            tracing::warn!(count = due.len(), error = %e, "timer delivery failed; retrying in 1 s");
            b.timer.borrow_mut().heap.extend(due.into_iter().map(Reverse));
            sleep(Duration::from_secs(1)).await;
            continue;
        }
        b.timer.borrow_mut().delivered(&due);
    }
}

async fn deliver<D: Disk>(b: &Rc<Broker<D>>, due: &[(i64, u64)]) -> Result<(), String> {
    let verify_until = b.timer.borrow().verify_until;
    let mut msgs = Vec::with_capacity(due.len());
    for &(_, off) in due {
        // Absent: deleted by retention. Unreadable: retried (never recorded as delivered).
        let Some(e) = b.store.try_entry(TIMER_TOPIC, 0, off).await.map_err(|e| e.to_string())? else { continue };
        if let Some(m) = prepare_delivery(b, e.physical_offset, off < verify_until).await? {
            msgs.push(m);
        }
    }
    if msgs.is_empty() {
        return Ok(());
    }
    for m in &msgs {
        b.ensure_topic(&m.topic, m.queue_id as u32 + 1);
    }
    b.store.put(&msgs, true).await.map_err(|e| e.to_string())?;
    let mut woken = std::collections::HashSet::new();
    for m in &msgs {
        if woken.insert((m.topic.as_str(), m.queue_id)) {
            b.wake_pollers(&m.topic, m.queue_id);
        }
    }
    b.metrics.timers_delivered(msgs.len() as u64);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::parking::{REAL_QID, REAL_TOPIC};
    use super::*;
    use crate::protocol::message::properties_encode;

    #[test]
    fn delivery_time_from_each_property() {
        let p = |k, v| properties_encode([(k, v)]);
        assert_eq!(requested_delivery(&p(TIMER_DELIVER_MS, "5000"), 100), Ok(Some(5000)));
        assert_eq!(requested_delivery(&p(TIMER_DELAY_SEC, "3"), 100), Ok(Some(3100)));
        assert_eq!(requested_delivery(&p(TIMER_DELAY_MS, "250"), 100), Ok(Some(350)));
        assert_eq!(requested_delivery(&p("TAGS", "a"), 100), Ok(None));
        assert!(requested_delivery(&p(TIMER_DELAY_MS, "soon"), 100).is_err());
        assert_eq!(
            strip(&properties_encode([("TAGS", "a"), (TIMER_DELAY_MS, "5")])),
            properties_encode([("TAGS", "a")])
        );
    }

    #[test]
    fn parks_future_messages_only() {
        let mut m = MessageToStore::simple("T", 2, bytes::Bytes::from_static(b"x"), String::new());
        m.properties = properties_encode([(TIMER_DELAY_MS, "60000")]);
        park_if_timed(&mut m, 3600).unwrap();
        assert_eq!((m.topic.as_str(), m.queue_id), (TIMER_TOPIC, 0));
        assert_eq!(
            (property_get(&m.properties, REAL_TOPIC), property_get(&m.properties, REAL_QID)),
            (Some("T"), Some("2"))
        );
        let due: i64 = property_get(&m.properties, TIMER_OUT_MS).unwrap().parse().unwrap();
        assert!(due >= now_ms() + 59_000);
        let mut past = MessageToStore::simple("T", 0, bytes::Bytes::from_static(b"x"), String::new());
        past.properties = properties_encode([(TIMER_DELIVER_MS, "1")]);
        park_if_timed(&mut past, 3600).unwrap();
        assert_eq!(past.topic, "T");
        let mut far = MessageToStore::simple("T", 0, bytes::Bytes::from_static(b"x"), String::new());
        far.properties = properties_encode([(TIMER_DELAY_SEC, "7200")]);
        assert!(park_if_timed(&mut far, 3600).unwrap_err().contains("3600 s"));
    }

    #[test]
    fn pops_in_due_order_and_records_a_safe_bound() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = TimerWheel::load(&crate::store::files::OsFiles::shared(), dir.path());
        let pairs = |d: &[i64]| -> Vec<(u64, i64)> { d.iter().enumerate().map(|(o, &t)| (o as u64, t)).collect() };
        w.load_new(5, &pairs(&[50, 10, 30, 10, 70]));
        assert_eq!(w.pop_due(30, 10), vec![(10, 1), (10, 3), (30, 2)]);
        w.delivered(&[(10, 1), (10, 3), (30, 2)]);
        // Entry 5 arrives late with a due time already passed: the bound must stay below it.
        w.load_new(6, &pairs(&[50, 10, 30, 10, 70, 20]));
        let p = w.progress();
        assert_eq!((p.loaded_to, p.bound_due, p.bound_offset), (6, 20, 5));
        w.persist();
        // After a restart only the undelivered entries come back.
        let mut again = TimerWheel::load(&crate::store::files::OsFiles::shared(), dir.path());
        again.recover(7, &pairs(&[50, 10, 30, 10, 70, 20, 40]));
        let mut left = again.pop_due(i64::MAX, 10);
        left.sort();
        // (30, 2) was delivered but lies past the bound (entry 5 arrived late): it is re-checked
        // against the key index before delivery, not skipped.
        assert_eq!(left, vec![(20, 5), (30, 2), (40, 6), (50, 0), (70, 4)]);
        assert_eq!(again.verify_until, 7);
    }

    #[test]
    fn empty_heap_bound_is_just_past_the_last_delivery() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = TimerWheel::load(&crate::store::files::OsFiles::shared(), dir.path());
        w.load_new(2, &[(0, 0), (1, 1)]);
        let popped = w.pop_due(10, 10);
        w.delivered(&popped);
        let p = w.progress();
        assert_eq!((p.bound_due, p.bound_offset), (1, 2));
    }
}
