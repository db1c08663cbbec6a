//! The store's side of a checkpoint (runs on the shard that owns the store): gathering the queue and
//! index entries below the durable end into a `CheckpointJob` (whose blocking writes run off the
//! shard, `checkpoint.rs`), and recording its outcome.

use super::checkpoint::{Checkpoint, CheckpointJob, QueueWrite};
use super::consume_queue::{self, queue_dir};
use super::io::Disk;
use super::{Store, now_ms};

impl<D: Disk> Store<D> {
    /// Builds the blocking part of a checkpoint: new queue and index entries below the durable end.
    /// Returns `None` when nothing changed.
    pub fn checkpoint_job(&self) -> Option<CheckpointJob> {
        let limit = self.log.flushed_pos();
        let expired_queue_files = !self.cq_expired.borrow().is_empty();
        if limit == self.checkpointed.get() && !self.index.borrow().owes_checkpoint() && !expired_queue_files {
            return None;
        }
        let root = self.cfg.dir.join("consumequeue");
        let mut writes = Vec::new();
        let mut queue_ends: std::collections::BTreeMap<String, std::collections::BTreeMap<i32, u64>> =
            Default::default();
        let mut queue_crcs: std::collections::BTreeMap<String, std::collections::BTreeMap<i32, u32>> =
            Default::default();
        let mut queue_files = std::collections::BTreeMap::<String, std::collections::BTreeMap<i32, _>>::new();
        for (topic, qs) in self.queues.borrow().iter() {
            for (&qid, q) in qs {
                let to = q.visible_max(limit);
                let mut hasher = q.file_hasher.clone();
                let mut full: std::collections::BTreeMap<u64, u32> =
                    q.full_files.iter().map(|(&f, ff)| (f, ff.crc)).collect();
                if to > q.persisted {
                    let entries = q.encoded_range(q.persisted, to);
                    let completed;
                    (hasher, completed) = q.hash_appended(q.persisted, &entries);
                    full.extend(completed.iter().copied());
                    writes.push(QueueWrite {
                        dir: queue_dir(&root, topic, qid),
                        topic: topic.clone(),
                        queue_id: qid,
                        first_offset: q.persisted,
                        entries,
                        hasher: hasher.clone(),
                        completed,
                    });
                }
                if to > 0 {
                    queue_ends.entry(topic.clone()).or_default().insert(qid, to);
                    queue_crcs.entry(topic.clone()).or_default().insert(qid, hasher.finalize());
                    if !full.is_empty() {
                        queue_files.entry(topic.clone()).or_default().insert(qid, full);
                    }
                }
            }
        }
        let index = self.index.borrow_mut().job(limit);
        Some(CheckpointJob {
            files: self.files.clone(),
            queues: writes,
            checkpoint_path: self.cfg.dir.join("checkpoint"),
            checkpoint: Checkpoint {
                log_offset: limit,
                written_at_ms: now_ms(),
                queue_ends,
                queue_crcs,
                queue_files: Some(queue_files),
                index_entries: index.entries,
                index_crc: index.crc(),
                index_base: index.base,
                index_sealed_from: index.sealed_from,
            },
            index,
            cq_remove: self.cq_expired.borrow().clone(),
        })
    }

    /// Records the outcome of a checkpoint job.
    pub fn checkpoint_finished(&self, job: &CheckpointJob, result: &std::io::Result<()>) {
        match result {
            Ok(()) => {
                let mut queues = self.queues.borrow_mut();
                for w in &job.queues {
                    if let Some(q) = queues.get_mut(&w.topic).and_then(|t| t.get_mut(&w.queue_id))
                        && q.persisted == w.first_offset
                    {
                        q.persisted = w.first_offset + (w.entries.len() / consume_queue::CQ_ENTRY_BYTES) as u64;
                        q.file_hasher = w.hasher.clone();
                        for &(f, crc) in &w.completed {
                            q.full_files.insert(f, consume_queue::FullFile { crc, verified: true });
                        }
                        q.evict(self.cfg.cq_window_entries);
                    }
                }
                self.checkpointed.set(job.checkpoint.log_offset);
                self.checkpoint_failures.set(0);
                self.cq_expired.borrow_mut().retain(|p| !job.cq_remove.contains(p));
                self.index.borrow_mut().finished(&*self.files, &job.index, true);
            }
            Err(e) => {
                let failures = self.checkpoint_failures.get() + 1;
                self.checkpoint_failures.set(failures);
                if failures >= 3 {
                    // Retention deletes only what a checkpoint covers: failing checkpoints end in a
                    // full disk, so they are an error the operator must see, not a warning.
                    tracing::error!(error = %e, failures,
                        "checkpoints keep failing: retention cannot delete past the last one (the disk will fill)");
                } else {
                    tracing::warn!(error = %e, "checkpoint failed; recovery will replay from the previous one");
                }
                self.index.borrow_mut().finished(&*self.files, &job.index, false);
            }
        }
    }

    /// Runs a checkpoint inline, on the calling thread (tests and tools; the shard uses
    /// `checkpoint_in_background`).
    pub fn checkpoint_now(&self) -> std::io::Result<()> {
        let Some(job) = self.checkpoint_job() else {
            return Ok(());
        };
        let r = job.run();
        self.checkpoint_finished(&job, &r);
        r
    }
}
