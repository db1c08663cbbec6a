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
        if limit == self.checkpointed.get() && !self.index.borrow().owes_checkpoint() {
            return None;
        }
        let root = self.cfg.dir.join("consumequeue");
        let mut writes = Vec::new();
        let mut queue_ends: std::collections::BTreeMap<String, std::collections::BTreeMap<i32, u64>> =
            Default::default();
        let mut queue_crcs: std::collections::BTreeMap<String, std::collections::BTreeMap<i32, u32>> =
            Default::default();
        for (topic, qs) in self.queues.borrow().iter() {
            for (&qid, q) in qs {
                let to = q.visible_max(limit);
                let mut hasher = q.file_hasher.clone();
                if to > q.persisted {
                    let entries = q.encoded_range(q.persisted, to);
                    hasher.update(&entries);
                    writes.push(QueueWrite {
                        dir: queue_dir(&root, topic, qid),
                        topic: topic.clone(),
                        queue_id: qid,
                        first_offset: q.persisted,
                        entries,
                        hasher: hasher.clone(),
                    });
                }
                if to > 0 {
                    queue_ends.entry(topic.clone()).or_default().insert(qid, to);
                    queue_crcs.entry(topic.clone()).or_default().insert(qid, hasher.finalize());
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
                index_entries: index.entries,
                index_crc: index.crc(),
                index_base: index.base,
                index_sealed_from: index.sealed_from,
            },
            index,
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
                        q.evict(self.cfg.cq_window_entries);
                    }
                }
                self.checkpointed.set(job.checkpoint.log_offset);
                self.index.borrow_mut().finished(&*self.files, &job.index, true);
            }
            Err(e) => {
                tracing::warn!(error = %e, "checkpoint failed; recovery will replay from the previous one");
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
