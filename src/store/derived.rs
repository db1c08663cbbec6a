//! The files derived from the log (consume queues, key index) at start: the checkpoint trusted only
//! when it verifies and points at a batch boundary, the files loaded up to it and verified against
//! its manifest and the log, and everything removed and rebuilt from the log when they do not
//! verify. Part of `Store::open`; runs on the shard that owns the store.

use super::checkpoint::Checkpoint;
use super::consume_queue::{ConsumeQueue, load_queue};
use super::files::Files;
use super::index::set::{IndexManifest, IndexSet};
use super::io::Disk;
use super::{Store, recovery};
use crate::protocol::message::StoredMessage;
use std::collections::HashMap;

impl<D: Disk> Store<D> {
    /// Installs verified derived files: every queue's end must match the checkpoint's manifest, its
    /// entries must be well formed, and its last entries must match the records they point at.
    pub(super) async fn adopt_derived(&mut self, d: Derived, cp: &Checkpoint, limit: u64) -> Result<(), String> {
        let manifest: usize = cp.queue_ends.values().map(|m| m.values().filter(|&&e| e > 0).count()).sum();
        let loaded: usize = d.queues.values().map(HashMap::len).sum();
        if loaded != manifest {
            return Err(format!("{loaded} queues have files but the checkpoint lists {manifest}"));
        }
        for (topic, ends) in &cp.queue_ends {
            for (&qid, &end) in ends.iter().filter(|(_, e)| **e > 0) {
                let Some(q) = d.queues.get(topic).and_then(|t| t.get(&qid)) else {
                    return Err(format!("queue {topic}:{qid} has no files (the checkpoint says it ends at {end})"));
                };
                if q.next_offset() != end {
                    return Err(format!(
                        "queue {topic}:{qid} ends at {} but the checkpoint says {end}",
                        q.next_offset()
                    ));
                }
                let crc = q.file_hasher.clone().finalize();
                match cp.queue_crcs.get(topic).and_then(|t| t.get(&qid)) {
                    Some(&want) if want == crc => {}
                    Some(_) => return Err(format!("queue {topic}:{qid}: its files fail the checkpoint's CRC")),
                    None => {
                        return Err(format!("queue {topic}:{qid}: the checkpoint has no CRC for it (older ringmq)"));
                    }
                }
                self.verify_queue(topic, qid, q, limit).await?;
            }
        }
        *self.queues.get_mut() = d.queues;
        *self.index.get_mut() = d.index;
        Ok(())
    }

    /// Structure of a loaded queue (offsets inside the log, strictly increasing, sane sizes) and its
    /// last entries against the records they point at (position, size, CRC, topic, queue, offset).
    async fn verify_queue(&self, topic: &str, qid: i32, q: &ConsumeQueue, limit: u64) -> Result<(), String> {
        let log_min = self.log.min_pos();
        let max_record = self.log.max_record_bytes() as u32;
        let mut prev = None;
        for (off, e) in q.entries_between(q.min_offset(), q.next_offset()) {
            let sane = e.physical_offset >= log_min
                && e.physical_offset < limit
                && e.size as usize >= crate::protocol::message::RECORD_FIXED_BYTES
                && e.size <= max_record
                && prev.is_none_or(|p| e.physical_offset > p);
            if !sane {
                return Err(format!("queue {topic}:{qid} entry {off} is malformed ({e:?})"));
            }
            prev = Some(e.physical_offset);
        }
        const CHECK_LAST: u64 = 2;
        let first = q.next_offset().saturating_sub(CHECK_LAST).max(q.min_offset());
        for (off, e) in q.entries_between(first, q.next_offset()) {
            let rec = self.log.read(e.physical_offset, e.size as usize).await.map_err(|err| err.to_string())?;
            let ok = crc32fast::hash(&rec) == e.crc
                && StoredMessage::decode(&rec).is_ok_and(|m| {
                    m.topic == topic
                        && m.queue_id == qid
                        && m.queue_offset == off
                        && m.physical_offset == e.physical_offset
                });
            if !ok {
                return Err(format!(
                    "queue {topic}:{qid} entry {off} does not match the record at {}",
                    e.physical_offset
                ));
            }
        }
        Ok(())
    }

    /// Drops every derived file and in-memory table before a rebuild from the log.
    pub(super) fn forget_derived(&self, cq_root: &std::path::Path, log_min: u64) {
        let _ = self.files.remove_dir_all(cq_root);
        self.index.borrow_mut().forget(&*self.files);
        self.queues.borrow_mut().clear();
        *self.cold.borrow_mut() = Default::default();
        self.checkpointed.set(log_min.min(self.checkpointed.get()));
    }

    /// How many times derived files were rebuilt from the log at start (0 or 1; a metric).
    pub fn rebuilt_derived(&self) -> u64 {
        self.rebuilt_derived.get()
    }
}

/// Derived files as loaded, before verification.
pub(super) struct Derived {
    queues: HashMap<String, HashMap<i32, ConsumeQueue>>,
    index: IndexSet,
}

/// The checkpoint to recover from: the file's if it verifies and points at a batch boundary inside
/// the log, else the start of the retained log (everything is replayed and rebuilt), with a warning.
pub(super) async fn trusted_checkpoint<D: Disk>(
    disk: &D,
    files: &dyn Files,
    log_dir: &std::path::Path,
    seg_bytes: u64,
    path: &std::path::Path,
) -> Checkpoint {
    let cp = match Checkpoint::load(files, path) {
        Ok(Some(cp)) => cp,
        Ok(None) => return Checkpoint::default(),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e,
                "checkpoint ignored: recovery replays the whole retained log and rebuilds queues and index");
            return Checkpoint::default();
        }
    };
    match recovery::check_boundary(disk, log_dir, seg_bytes, cp.log_offset).await {
        Ok(()) => cp,
        Err(why) => {
            tracing::warn!(file = %path.display(), log_offset = cp.log_offset, %why,
                "checkpoint ignored: recovery replays the whole retained log and rebuilds queues and index");
            Checkpoint::default()
        }
    }
}

/// Loads queue and index files up to `limit`; an unreadable or failing index file is an error
/// (the caller rebuilds).
pub(super) fn load_derived(
    files: &dyn Files,
    cfg: &super::StoreConfig,
    cp: &Checkpoint,
    log_min: u64,
    limit: u64,
) -> Result<Derived, String> {
    let (cq_root, window) = (&cfg.dir.join("consumequeue"), cfg.cq_window_entries);
    let (no_queues, no_files) = (std::collections::BTreeMap::new(), std::collections::BTreeMap::new());
    let Some(queue_files) = cp.queue_files.as_ref().or(cp.queue_ends.is_empty().then_some(&no_queues)) else {
        return Err("the checkpoint has no per-file queue CRCs (older ringmq): queue files are rebuilt once".into());
    };
    let mut queues: HashMap<String, HashMap<i32, ConsumeQueue>> = HashMap::new();
    for topic in files.list(cq_root).map_err(|e| format!("{}: {e}", cq_root.display()))? {
        let tdir = cq_root.join(&topic);
        for qname in files.list(&tdir).map_err(|e| format!("{}: {e}", tdir.display()))? {
            let Ok(qid) = qname.parse::<i32>() else {
                continue;
            };
            let qdir = tdir.join(&qname);
            let full = queue_files.get(&topic).and_then(|t| t.get(&qid)).unwrap_or(&no_files);
            let end = cp.queue_ends.get(&topic).and_then(|t| t.get(&qid)).copied().unwrap_or(0);
            let q = load_queue(files, &qdir, full, end, (log_min, limit), window)
                .map_err(|e| format!("{}: {e}", qdir.display()))?;
            if q.next_offset() > 0 {
                queues.entry(topic.clone()).or_default().insert(qid, q);
            }
        }
    }
    let manifest = IndexManifest {
        base: cp.index_base,
        sealed_from: cp.index_sealed_from,
        entries: cp.index_entries,
        crc: cp.index_crc,
    };
    let index = IndexSet::load(files, cfg.dir.join("index"), cfg.index_seal_entries, manifest, log_min, limit)?;
    Ok(Derived { queues, index })
}
