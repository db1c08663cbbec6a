//! A slave's appends: the sealed batches its master streamed, verified again here, appended at the
//! same offsets and dispatched to the consume queues and the key index exactly as recovery replays
//! them — so a slave's queues, offsets and msgIds are its master's.

use super::batches::walk_sealed;
use super::dispatch::DispatchInfo;
use super::error::StoreError;
use super::io::Disk;
use super::replicas::ReplicaRole;
use super::{Store, StoredMessage};
use bytes::Bytes;
use std::collections::HashMap;

impl<D: Disk> Store<D> {
    /// The epoch history (a copy).
    pub fn epochs(&self) -> super::epochs::EpochHistory {
        self.epochs.borrow().clone()
    }

    /// Records that master epoch `epoch` writes this log from `start` on, durably, before any byte
    /// of it is appended. An epoch not newer than the last one recorded is refused.
    pub async fn begin_epoch(&self, epoch: u32, start: u64) -> Result<(), StoreError> {
        let mut h = self.epochs.borrow().clone();
        if !h.push(epoch, start) {
            return Err(StoreError::Invalid(format!(
                "epoch {epoch} from {start} is not newer than this replica's {:?}",
                h.last()
            )));
        }
        self.save_epochs(h)
    }

    /// Writes the epoch file (a few hundred bytes, once per election: on the shard, synchronously).
    fn save_epochs(&self, h: super::epochs::EpochHistory) -> Result<(), StoreError> {
        let path = self.cfg.dir.join("epochs");
        h.save(&*self.files, &path).map_err(|e| StoreError::io(&path, &e))?;
        *self.epochs.borrow_mut() = h;
        Ok(())
    }

    /// On a slave whose log diverged from its master's after `to`: cuts the log back to `to`, forgets
    /// the epochs that wrote past it, and rebuilds the consume queues and key index from the log —
    /// crash-safely: the checkpoint goes first (a crash at any later step restarts into a rebuild
    /// from the log), the log is cut from its end backwards (`CommitLog::truncate_to`), the epoch
    /// file last (a crash before it only repeats the truncation at the next connection). The #10666
    /// lesson: every step is durable before the slave reports its new end to anyone.
    pub async fn truncate_to(&self, to: u64) -> Result<(), StoreError> {
        if self.replicas.role() != ReplicaRole::Slave {
            return Err(StoreError::Invalid("only a slave truncates its log".into()));
        }
        while self.checkpointing.replace(true) {
            self.checkpoint_done.wait_at_most(std::time::Duration::from_millis(50)).await;
        }
        let result = self.truncate_locked(to).await;
        self.checkpointing.set(false);
        self.checkpoint_done.notify();
        result
    }

    async fn truncate_locked(&self, to: u64) -> Result<(), StoreError> {
        let log = &self.log;
        let deadline = crate::rt::now() + std::time::Duration::from_secs(5);
        while log.flushed_pos() < log.write_pos() && crate::rt::now() < deadline {
            log.flushed.wait_past_at_most(log.flushed.generation(), std::time::Duration::from_millis(10)).await;
        }
        let cp = self.cfg.dir.join("checkpoint");
        if self.files.exists(&cp) {
            self.files.remove_file(&cp).map_err(|e| StoreError::io(&cp, &e))?;
            self.files.sync_dir(&self.cfg.dir).map_err(|e| StoreError::io(&self.cfg.dir, &e))?;
        }
        let from = log.write_pos();
        log.truncate_to(to).await?;
        let log_min = log.min_pos();
        self.forget_derived(&self.cfg.dir.join("consumequeue"), log_min);
        self.checkpointed.set(log_min);
        let rules = self.cfg.rules.clone();
        let outcome = super::recovery::scan(
            log.disk(),
            &self.cfg.dir.join("commitlog"),
            self.cfg.segment_bytes,
            log_min,
            false,
            &*rules,
        )
        .await?;
        for rec in outcome.records {
            self.dispatch_recovered(rec)?;
        }
        let mut h = self.epochs.borrow().clone();
        h.truncate(to);
        self.save_epochs(h)?;
        tracing::warn!(dir = %self.cfg.dir.display(), from, to, "truncated the log where it diverged from the master's");
        Ok(())
    }

    /// Appends `bytes` streamed by the master at log offset `pos` (this log's end): whole sealed
    /// batches, possibly ending with the segment's blank record. Nothing is appended unless every
    /// batch verifies and every record continues its queue.
    pub async fn append_replicated(&self, pos: u64, bytes: &Bytes) -> Result<(), StoreError> {
        if self.replicas.role() != ReplicaRole::Slave {
            return Err(StoreError::Invalid("only a slave appends replicated bytes".into()));
        }
        let damaged = |reason: String| StoreError::Damaged { offset: pos, reason };
        let run = walk_sealed(bytes, pos, self.cfg.segment_bytes).map_err(damaged)?;
        if run.len != bytes.len() {
            return Err(damaged(format!("{} of {} replicated bytes are not whole batches", run.len, bytes.len())));
        }
        let mut infos = Vec::with_capacity(run.records.len());
        let mut next: HashMap<(&str, i32), u64> = HashMap::new();
        for &(rel, len) in &run.records {
            let rec = &bytes.slice(rel..rel + len);
            let at = pos + rel as u64;
            let msg = StoredMessage::decode(rec).map_err(|e| damaged(format!("record at {at}: {e}")))?;
            if msg.physical_offset != at {
                return Err(damaged(format!("record claims offset {} but sits at {at}", msg.physical_offset)));
            }
            infos.push(DispatchInfo::from_stored(&msg, crc32fast::hash(rec), &*self.cfg.rules));
        }
        {
            let queues = self.queues.borrow();
            for info in infos.iter().filter(|i| i.to_queue) {
                let q = queues.get(&info.topic).and_then(|t| t.get(&info.queue_id));
                let expected = next.entry((info.topic.as_str(), info.queue_id)).or_insert_with(|| {
                    q.filter(|q| q.next_offset() > 0).map_or(info.queue_offset, |q| q.next_offset())
                });
                if *expected != info.queue_offset {
                    return Err(damaged(format!(
                        "record of {}:{} has queue offset {} but the queue expects {}: the logs diverged",
                        info.topic, info.queue_id, info.queue_offset, expected
                    )));
                }
                *expected += 1;
            }
        }
        let body = if run.ends_segment { &bytes[..run.len - 8] } else { bytes };
        self.log.append_sealed(pos, body, run.ends_segment).await?;
        for info in infos {
            self.dispatch_recovered(info)?;
        }
        Ok(())
    }
}
