//! The per-shard store: commit log, consume queues, key index, checkpoint, recovery and retention.
//!
//! One `Store` per shard, created and used only on that shard's executor (`!Send`, `Rc`/`RefCell`; no
//! borrow is held across an `.await`). Layout under the shard's directory:
//!
//! ```text
//! commitlog/<20-digit start offset>          segments (O_DIRECT, zeros written ahead of the appends)
//! consumequeue/<topic>/<queue>/<20 digits>   24-byte entries, 300 000 per file
//! index/keys                                 key index entries
//! checkpoint                                 JSON: log offset covered by the files above
//! ```

mod aligned;
mod append;
pub mod batches;
pub mod checkpoint;
mod checkpointing;
mod cold;
pub mod consume_queue;
mod derived;
pub mod dispatch;
pub mod epochs;
pub mod error;
pub mod fake_disk;
pub mod fake_files;
pub mod files;
pub mod io;
pub mod log;
mod read;
pub mod recovery;
pub mod replicas;
mod replicated;
mod retention;
pub mod tasks;

use crate::protocol::message::{MessageToStore, StoredMessage};
use bytes::Bytes;
use consume_queue::{ConsumeQueue, CqEntry};
use dispatch::{DispatchInfo, enters_queue, index_keys};
pub use error::{EXIT_STORE_CORRUPT, EXIT_STORE_POISONED, StoreError};
use index::set::IndexSet;
use io::Disk;
pub use log::FlushMode;
use log::{CommitLog, LogConfig};
pub use read::{GetResult, GetStatus};
pub use retention::DiskUsage;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;

pub mod index;

/// Default in-memory window per consume queue: 32 768 entries (768 KiB) serve consumers within
/// ~32 k messages of the tail from memory; a shard with 64 queues holds at most 48 MiB of entries
/// beyond those not yet checkpointed (≤ 1 s of appends), however large the backlog.
pub const CQ_WINDOW_ENTRIES: usize = 32_768;

/// Settings of one shard's store. Sizes are bytes; see `docs/OPERATIONS.md` for each default's reason.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub dir: PathBuf,
    pub segment_bytes: u64,
    pub flush: FlushMode,
    pub tail_cache_bytes: usize,
    pub read_cache_bytes: usize,
    /// Operator override: truncate at mid-log corruption instead of refusing to start.
    pub truncate_corrupt: bool,
    pub file_reserved_ms: u64,
    /// Above this disk-use ratio the oldest segments are deleted.
    pub disk_clean_ratio: f64,
    /// Above this ratio appends are refused.
    pub disk_full_ratio: f64,
    /// Consume-queue entries each queue keeps in memory once they are in its files (the hot tail);
    /// older ones are read from the files (`cold.rs`).
    pub cq_window_entries: usize,
    /// Key-index entries per sealed index file; also about the most the index holds in memory
    /// (`index::set::SEAL_ENTRIES`).
    pub index_seal_entries: u64,
    /// Tag codes and indexing of records, as the store's owner wants them (`dispatch::DispatchRules`).
    pub rules: std::sync::Arc<dyn dispatch::DispatchRules>,
}

impl StoreConfig {
    pub fn new(dir: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig {
            dir: dir.into(),
            segment_bytes: 1 << 30,
            flush: FlushMode::Sync,
            tail_cache_bytes: 64 << 20,
            read_cache_bytes: 32 << 20,
            truncate_corrupt: false,
            file_reserved_ms: 72 * 3600 * 1000,
            disk_clean_ratio: 0.75,
            disk_full_ratio: 0.90,
            cq_window_entries: CQ_WINDOW_ENTRIES,
            index_seal_entries: index::set::SEAL_ENTRIES,
            rules: std::sync::Arc::new(dispatch::PlainRules),
        }
    }
}

/// Where one appended record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub physical_offset: u64,
    pub queue_offset: u64,
    pub size: u32,
}

/// The store of one shard.
pub struct Store<D: Disk> {
    cfg: StoreConfig,
    log: Rc<CommitLog<D>>,
    /// Where consume-queue, index and checkpoint files are read and written (`Disk::files`).
    files: files::SharedFiles,
    queues: RefCell<HashMap<String, HashMap<i32, ConsumeQueue>>>,
    /// Consume-queue blocks read back from files for readers behind the in-memory window.
    cold: RefCell<cold::ColdCache>,
    /// Consume-queue files retention let go of, removed by the next checkpoint job.
    cq_expired: RefCell<Vec<PathBuf>>,
    /// The key index: its in-memory tier and its files (`index/set.rs`).
    index: RefCell<IndexSet>,
    last_store_ms: Cell<i64>,
    disk_full: Cell<Option<u32>>,
    checkpointed: Cell<u64>,
    /// A checkpoint job is in flight (`tasks.rs`), and the signal its end raises.
    checkpointing: Cell<bool>,
    checkpoint_done: crate::rt::Signal,
    /// Checkpoint jobs failed in a row (logged as an error from the third).
    checkpoint_failures: Cell<u32>,
    damaged_reads: Cell<u64>,
    rebuilt_derived: Cell<u64>,
    usage_probe: RefCell<Box<dyn Fn() -> std::io::Result<DiskUsage>>>,
    /// The replication gate: role, acks awaited, confirm offset (`replicas.rs`).
    pub replicas: replicas::ReplicaGate,
    /// Which master epoch wrote which part of the log (`epochs.rs`).
    epochs: RefCell<epochs::EpochHistory>,
}

pub use crate::protocol::now_ms;

impl<D: Disk> Store<D> {
    /// Opens (recovering) the store in `cfg.dir`.
    pub async fn open(disk: D, cfg: StoreConfig) -> Result<Store<D>, StoreError> {
        let log_dir = cfg.dir.join("commitlog");
        let files = disk.files();
        files.create_dir_all(&cfg.dir).map_err(|e| StoreError::io(&cfg.dir, &e))?;
        disk.create_dir_all(&log_dir).map_err(|e| StoreError::io(&log_dir, &e))?;
        let cp_path = cfg.dir.join("checkpoint");
        let cp = derived::trusted_checkpoint(&disk, &*files, &log_dir, cfg.segment_bytes, &cp_path).await;
        let outcome =
            recovery::scan(&disk, &log_dir, cfg.segment_bytes, cp.log_offset, cfg.truncate_corrupt, &*cfg.rules)
                .await?;
        let log_cfg = LogConfig {
            dir: log_dir.clone(),
            segment_bytes: cfg.segment_bytes,
            flush: cfg.flush,
            tail_cache_bytes: cfg.tail_cache_bytes,
            read_cache_bytes: cfg.read_cache_bytes,
        };
        let log = Rc::new(CommitLog::open(disk, log_cfg, outcome.tail).await?);
        let log_min = log.min_pos();
        let limit = cp.log_offset.min(log.write_pos());
        let cq_root = cfg.dir.join("consumequeue");
        let index_dir = cfg.dir.join("index");
        let loaded = derived::load_derived(&*files, &cfg, &cp, log_min, limit);
        let dir = cfg.dir.clone();
        let seal_entries = cfg.index_seal_entries;
        let mut store = Store {
            cfg,
            log,
            files,
            queues: RefCell::new(HashMap::new()),
            cold: RefCell::new(cold::ColdCache::default()),
            cq_expired: RefCell::new(Vec::new()),
            index: RefCell::new(IndexSet::new(index_dir, seal_entries)),
            last_store_ms: Cell::new(0),
            disk_full: Cell::new(None),
            checkpointed: Cell::new(limit),
            checkpointing: Cell::new(false),
            checkpoint_done: crate::rt::Signal::default(),
            checkpoint_failures: Cell::new(0),
            damaged_reads: Cell::new(0),
            rebuilt_derived: Cell::new(0),
            usage_probe: RefCell::new(Box::new(move || retention::statvfs_usage(&dir))),
            replicas: replicas::ReplicaGate::default(),
            epochs: RefCell::new(epochs::EpochHistory::default()),
        };
        match epochs::EpochHistory::load(&*store.files, &store.cfg.dir.join("epochs")) {
            Ok(h) => *store.epochs.borrow_mut() = h,
            Err(why) => tracing::error!(%why, "epoch file unusable: this replica has no epoch history; \
                a master accepts it as a slave only once it is empty"),
        }
        let verified = match loaded {
            Ok(d) => store.adopt_derived(d, &cp, limit).await.map(|()| true),
            Err(why) => Err(why),
        };
        let mut records = outcome.records;
        if let Err(why) = verified {
            // The log is the source of truth: a derived file that does not verify is rebuilt from it,
            // never trusted and never a reason to drop data the log holds.
            tracing::warn!(dir = %store.cfg.dir.display(), %why,
                "consume-queue or index files do not verify: rebuilding all of them from the commit log");
            store.rebuilt_derived.set(store.rebuilt_derived.get() + 1);
            store.forget_derived(&cq_root, log_min);
            let disk = store.log.disk();
            let rules = store.cfg.rules.clone();
            records =
                recovery::scan(disk, &log_dir, store.cfg.segment_bytes, log_min, store.cfg.truncate_corrupt, &*rules)
                    .await?
                    .records;
        }
        let replayed = records.len();
        for rec in records {
            store.dispatch_recovered(rec)?;
        }
        // Queues whose oldest entries are only in files: their minimums move past deleted records.
        store.advance_cold_minimums(log_min).await;
        store.expire_queue_files();
        tracing::info!(dir = %store.cfg.dir.display(), write_pos = store.log.write_pos(), replayed,
            truncated = ?outcome.truncated, rebuilt = store.rebuilt_derived.get(), "store recovered");
        Ok(store)
    }

    fn dispatch_recovered(&self, rec: DispatchInfo) -> Result<(), StoreError> {
        self.last_store_ms.set(self.last_store_ms.get().max(rec.store_timestamp_ms));
        for key in &rec.keys {
            self.index.borrow_mut().add(&rec.topic, key, rec.physical_offset, rec.store_timestamp_ms);
        }
        if !rec.to_queue {
            return Ok(());
        }
        let mut queues = self.queues.borrow_mut();
        let q = queues.entry(rec.topic.clone()).or_default().entry(rec.queue_id).or_default();
        if q.next_offset() != rec.queue_offset {
            if q.next_offset() == 0 && q.min_offset() == 0 {
                // Queue files lost or trimmed: resume the dense sequence at the record's offset.
                *q = ConsumeQueue::new(rec.queue_offset);
            } else {
                return Err(StoreError::Corrupt {
                    file: self.cfg.dir.join("commitlog"),
                    offset: rec.physical_offset,
                    log_offset: rec.physical_offset,
                    reason: format!(
                        "record of {}:{} has queue offset {} but the queue expects {}",
                        rec.topic,
                        rec.queue_id,
                        rec.queue_offset,
                        q.next_offset()
                    ),
                });
            }
        }
        q.push(CqEntry {
            physical_offset: rec.physical_offset,
            size: rec.size,
            tags_code: rec.tags_code,
            crc: rec.crc,
        });
        Ok(())
    }

    pub fn config(&self) -> &StoreConfig {
        &self.cfg
    }

    pub fn log(&self) -> &CommitLog<D> {
        &self.log
    }

    /// Replaces how disk usage is measured (tests use a capped fake).
    pub fn set_usage_probe(&self, probe: Box<dyn Fn() -> std::io::Result<DiskUsage>>) {
        *self.usage_probe.borrow_mut() = probe;
    }

    /// `Some(percent)` while appends are refused for lack of space.
    pub fn disk_full(&self) -> Option<u32> {
        self.disk_full.get()
    }

    fn next_store_ms(&self) -> i64 {
        let t = now_ms().max(self.last_store_ms.get());
        self.last_store_ms.set(t);
        t
    }

    /// `(min, max)` visible offsets of a queue; `(0, 0)` for an unknown queue.
    pub fn queue_bounds(&self, topic: &str, queue_id: i32) -> (u64, u64) {
        let limit = self.visible_limit();
        let queues = self.queues.borrow();
        match queues.get(topic).and_then(|t| t.get(&queue_id)) {
            Some(q) => (q.min_offset(), q.visible_max(limit)),
            None => (0, 0),
        }
    }

    /// Queue ids that exist for `topic`.
    pub fn queue_ids(&self, topic: &str) -> Vec<i32> {
        let mut ids: Vec<i32> =
            self.queues.borrow().get(topic).map(|t| t.keys().copied().collect()).unwrap_or_default();
        ids.sort_unstable();
        ids
    }

    /// Reads the record at a physical offset (size from its header), verified.
    pub async fn read_message(&self, physical_offset: u64) -> Result<StoredMessage, StoreError> {
        let rec = self.read_record(physical_offset).await?;
        StoredMessage::decode(&rec).map_err(|e| self.damaged(physical_offset, e.to_string()))
    }

    /// Raw record bytes at a physical offset, verified as a whole: the record must decode (body CRC)
    /// and match its consume-queue entry (position and the CRC of every byte, taken at append), so
    /// a flipped bit in a header, topic or property is refused like one in the body. Every read path
    /// by offset (view, query, delayed and timer delivery, transactions, send-back) goes through here.
    pub async fn read_record(&self, physical_offset: u64) -> Result<Bytes, StoreError> {
        let head = self.log.read(physical_offset, 4).await?;
        let size = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if size < crate::protocol::message::RECORD_FIXED_BYTES || size > self.log.max_record_bytes() {
            return Err(StoreError::NotFound(physical_offset));
        }
        let rec = self.log.read(physical_offset, size).await?;
        let m = StoredMessage::decode(&rec).map_err(|e| self.damaged(physical_offset, e.to_string()))?;
        if m.physical_offset != physical_offset {
            return Err(self.damaged(physical_offset, format!("record claims offset {}", m.physical_offset)));
        }
        if enters_queue(m.sys_flag) {
            match self.entry(&m.topic, m.queue_id, m.queue_offset).await {
                Some(e) if e.physical_offset == physical_offset && e.crc == crc32fast::hash(&rec) => {}
                Some(e) if e.physical_offset == physical_offset => {
                    return Err(self.damaged(physical_offset, "record fails its CRC check".into()));
                }
                Some(_) => {
                    let why = format!("no queue entry of {}:{} points here", m.topic, m.queue_id);
                    return Err(self.damaged(physical_offset, why));
                }
                // Below the queue's retained minimum (or the queue is gone): the body CRC is all
                // there is to check.
                None if m.queue_offset < self.queue_bounds(&m.topic, m.queue_id).0 => {}
                None => {
                    let why = format!("no queue entry for {}:{} at {}", m.topic, m.queue_id, m.queue_offset);
                    return Err(self.damaged(physical_offset, why));
                }
            }
        }
        Ok(rec)
    }

    /// Counts and logs a record that failed verification on a read path.
    fn damaged(&self, offset: u64, reason: String) -> StoreError {
        self.damaged_reads.set(self.damaged_reads.get() + 1);
        tracing::error!(offset, %reason, "damaged record: refusing to use it");
        StoreError::Damaged { offset, reason }
    }

    /// Records refused because they failed verification (metric).
    pub fn damaged_reads(&self) -> u64 {
        self.damaged_reads.get()
    }

    /// Store time of the message at a queue offset.
    pub async fn store_time_at(&self, topic: &str, queue_id: i32, offset: u64) -> Option<i64> {
        let e = self.entry(topic, queue_id, offset).await?;
        let head = self.log.read(e.physical_offset, crate::protocol::message::STORE_TIMESTAMP_MAX_END).await.ok()?;
        crate::protocol::message::store_timestamp_of(&head)
    }

    /// First queue offset whose message was stored at or after `ts_ms` (max offset if none).
    pub async fn offset_by_time(&self, topic: &str, queue_id: i32, ts_ms: i64) -> u64 {
        let (mut lo, mut hi) = self.queue_bounds(topic, queue_id);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.store_time_at(topic, queue_id, mid).await {
                Some(t) if t >= ts_ms => hi = mid,
                Some(_) => lo = mid + 1,
                None => lo = mid + 1,
            }
        }
        lo
    }

    /// Physical offsets indexed under `topic#key` in the time range, newest first.
    pub fn index_lookup(&self, topic: &str, key: &str, begin_ms: i64, end_ms: i64, max: usize) -> Vec<u64> {
        self.index.borrow_mut().lookup(&*self.files, topic, key, begin_ms, end_ms, max)
    }

    /// The small files beside the log (consume queues, index, checkpoint; the broker's config).
    pub fn files(&self) -> &files::SharedFiles {
        &self.files
    }

    /// Topics with at least one queue in this store.
    pub fn topics(&self) -> Vec<String> {
        self.queues.borrow().keys().cloned().collect()
    }

    /// Forgets a topic's queues (DELETE_TOPIC); its records stay in the log until retention.
    pub fn delete_topic(&self, topic: &str) {
        self.queues.borrow_mut().remove(topic);
        self.cold.borrow_mut().forget_topic(topic);
        let dir = self.cfg.dir.join("consumequeue").join(topic);
        if let Err(e) = self.files.remove_dir_all(&dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a deleted topic's queue files");
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_cold;
#[cfg(test)]
mod tests_derived;
#[cfg(test)]
mod tests_index;
#[cfg(test)]
mod tests_read;
#[cfg(test)]
mod tests_replicated;
