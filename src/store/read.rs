//! The pull read path (RocketMQ's getMessage): a queue's entries are taken in runs from one source
//! (the in-memory window or one cold block), and records that lie back to back in the log — a
//! batch, or a producer's consecutive sends to one queue — are read with one log read per run and
//! cut into records, each still checked against its entry's CRC before it is served. A catch-up
//! reader pulling 1 024 messages thus resolves its queue and looks up the log's caches a few times
//! per pull instead of once per message (issue 17, part 4). Lives on the store's shard.

use super::Store;
use super::consume_queue::CqEntry;
use super::io::Disk;
use bytes::Bytes;

/// Entries taken per run: a pull of the clients' largest batch (1 024) takes one or two runs.
const RUN_ENTRIES: usize = 1024;

/// Outcome of a read from a consume queue (RocketMQ's GetMessageStatus).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetStatus {
    Found,
    NoMessageInQueue,
    OffsetTooSmall,
    OffsetOverflowOne,
    OffsetOverflowBadly,
    NoMatchedMessage,
    MessageWasRemoving,
    /// A record failed verification against its consume-queue CRC; nothing past it is served.
    Corrupt,
    /// A record could not be read (an I/O error, or its bytes are not readable yet) though the log
    /// still retains it: nothing past it is served, the next pull starts at it.
    Unreadable,
}

#[derive(Debug, Clone)]
pub struct GetResult {
    pub status: GetStatus,
    pub records: Vec<Bytes>,
    pub next_offset: u64,
    pub min_offset: u64,
    pub max_offset: u64,
    /// Log bytes past the last record served (how far behind the reader is; RocketMQ's
    /// maxOffsetPy − maxPhyOffsetPulling): a reader far back is sent to a slave.
    pub behind_bytes: u64,
}

impl GetResult {
    /// A read that cannot go past queue offset `off`: what came before it is served (Found) and the
    /// next read starts at it; with nothing before it, the read answers `why`.
    fn stopped_at(mut self, off: u64, why: GetStatus) -> GetResult {
        self.status = if self.records.is_empty() { why } else { GetStatus::Found };
        self.next_offset = off;
        self
    }
}

impl<D: Disk> Store<D> {
    /// Reads messages from a queue (RocketMQ's getMessage). `tag_filter` sees each entry's tag code;
    /// `record_filter` sees each candidate record (SQL92). Stops at `max_msgs`, or `max_bytes` after at
    /// least one message.
    #[allow(clippy::too_many_arguments)] // mirrors RocketMQ's getMessage; callers pass each by name
    pub async fn get(
        &self,
        topic: &str,
        queue_id: i32,
        offset: u64,
        max_msgs: usize,
        max_bytes: usize,
        tag_filter: &dyn Fn(i64) -> bool,
        record_filter: &dyn Fn(&Bytes) -> bool,
    ) -> GetResult {
        let (min, max) = self.queue_bounds(topic, queue_id);
        let result = |status, next| GetResult {
            status,
            records: Vec::new(),
            next_offset: next,
            min_offset: min,
            max_offset: max,
            behind_bytes: 0,
        };
        if max == 0 {
            return result(GetStatus::NoMessageInQueue, 0);
        }
        if offset < min {
            return result(GetStatus::OffsetTooSmall, min);
        }
        if offset == max {
            return result(GetStatus::OffsetOverflowOne, offset);
        }
        if offset > max {
            return result(GetStatus::OffsetOverflowBadly, max);
        }
        let max_msgs = max_msgs.max(1);
        let scan_limit = (max_msgs * 20).max(800) as u64;
        let end = max.min(offset + scan_limit);
        let mut out = result(GetStatus::NoMatchedMessage, end);
        let mut bytes = 0usize;
        let mut removed = false;
        let mut served_to = 0u64;
        let mut run: Vec<CqEntry> = Vec::with_capacity(RUN_ENTRIES.min((end - offset) as usize));
        let mut off = offset;
        'runs: while off < end {
            run.clear();
            let n = self.entry_run(topic, queue_id, off, RUN_ENTRIES.min((end - off) as usize), &mut run).await;
            if n == 0 {
                // Unreadable, or trimmed by retention while a cold read waited: the next pull
                // starts here (and is told the new minimum), never past messages not served.
                out.next_offset = off;
                break;
            }
            let (mut i, mut single) = (0, false);
            while i < n {
                if !tag_filter(run[i].tags_code) {
                    i += 1;
                    continue;
                }
                // Entries i..j: records back to back in the log, inside one read block, no more
                // than the pull can still take.
                let start = run[i].physical_offset;
                let block_end = self.log.read_block_end(start);
                let (mut j, mut group_end) = (i + 1, start + u64::from(run[i].size));
                let (mut msgs, mut group_bytes) = (out.records.len() + 1, bytes + run[i].size as usize);
                while !single
                    && j < n
                    && msgs < max_msgs
                    && group_bytes < max_bytes
                    && run[j].physical_offset == group_end
                    && group_end + u64::from(run[j].size) <= block_end
                    && tag_filter(run[j].tags_code)
                {
                    group_end += u64::from(run[j].size);
                    group_bytes += run[j].size as usize;
                    (msgs, j) = (msgs + 1, j + 1);
                }
                let group = match self.log.read(start, (group_end - start) as usize).await {
                    Ok(g) => g,
                    // A group that cannot be read is retried record by record, so that a failure
                    // is taken for the record it belongs to.
                    Err(_) if j > i + 1 => {
                        single = true;
                        continue;
                    }
                    // Retention removed the segment under the entry: skip it, as RocketMQ does.
                    Err(_) if start < self.log.min_pos() => {
                        (removed, single) = (true, false);
                        i += 1;
                        continue;
                    }
                    Err(err) => return self.unreadable(out, topic, queue_id, off + i as u64, run[i], err),
                };
                single = false;
                if let Some(next) = self.log.read_ahead_candidate(start) {
                    let log = self.log.clone();
                    crate::rt::spawn(async move { log.read_ahead(next).await }).detach();
                }
                for (k, e) in run.iter().enumerate().take(j).skip(i) {
                    let at = (e.physical_offset - start) as usize;
                    let rec = group.slice(at..at + e.size as usize);
                    let q_off = off + k as u64;
                    if crc32fast::hash(&rec) != e.crc {
                        tracing::error!(
                            topic,
                            queue_id,
                            offset = q_off,
                            physical_offset = e.physical_offset,
                            "record fails its CRC check: refusing to serve it"
                        );
                        self.damaged_reads.set(self.damaged_reads.get() + 1);
                        return out.stopped_at(q_off, GetStatus::Corrupt);
                    }
                    if record_filter(&rec) {
                        bytes += rec.len();
                        out.records.push(rec);
                        served_to = e.physical_offset + u64::from(e.size);
                        if out.records.len() >= max_msgs || bytes >= max_bytes {
                            out.next_offset = q_off + 1;
                            break 'runs;
                        }
                    }
                }
                i = j;
                crate::rt::yield_if_needed().await;
            }
            off += n as u64;
        }
        if served_to > 0 {
            out.behind_bytes = self.log.write_pos().saturating_sub(served_to);
        }
        out.status = if !out.records.is_empty() {
            GetStatus::Found
        } else if removed {
            GetStatus::MessageWasRemoving
        } else {
            GetStatus::NoMatchedMessage
        };
        out
    }

    /// A record the log still retains but could not read: nothing past it is served (skipping it
    /// would lose the message for every consumer that commits past it); the next pull starts there.
    fn unreadable(
        &self,
        out: GetResult,
        topic: &str,
        queue_id: i32,
        off: u64,
        e: CqEntry,
        err: super::StoreError,
    ) -> GetResult {
        tracing::warn!(%err, topic, queue_id, off, physical_offset = e.physical_offset, "read failed");
        out.stopped_at(off, GetStatus::Unreadable)
    }
}
