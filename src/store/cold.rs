//! Cold consume-queue reads: entries older than a queue's in-memory window are read from its files
//! on demand, a block at a time, through one small cache per store (on the store's shard).
//!
//! A reader catching up from the first offset of a large backlog walks a queue sequentially, so one
//! block (2 048 entries, 48 KiB) serves ~2 000 pulls' worth of entries with one file read; the
//! cache holds `COLD_CACHE_BLOCKS` blocks (6 MiB) across all queues, evicting the least recently
//! used, so cold readers cost a bounded amount of memory however many there are, and never touch
//! the commit log's tail cache. The entries read are not trusted more than the file they come from:
//! every pull checks the record against the entry's CRC (all the record's bytes, taken at append),
//! so a damaged entry is refused, not served.

use super::consume_queue::{CQ_ENTRY_BYTES, CQ_FILE_ENTRIES, CqEntry, file_of, full_file_crc, queue_dir};
use super::io::Disk;
use super::{Store, StoreError};
use std::collections::VecDeque;
use std::rc::Rc;

/// Entries per cold read.
pub const COLD_BLOCK_ENTRIES: u64 = 2048;
/// Blocks the cache keeps (6 MiB): a few per cold reader at a handful of readers per shard.
pub const COLD_CACHE_BLOCKS: usize = 128;

/// One block of a queue's file entries.
struct Block {
    topic: Rc<str>,
    queue_id: i32,
    first: u64,
    entries: Vec<CqEntry>,
}

/// Recently read cold blocks, most recent last.
#[derive(Default)]
pub struct ColdCache {
    blocks: VecDeque<Block>,
    /// File reads done for cold entries (a metric: `ringmq_store_cold_reads_total`).
    pub reads: u64,
}

impl ColdCache {
    fn get(&mut self, topic: &str, queue_id: i32, offset: u64) -> Option<CqEntry> {
        let mut one = Vec::with_capacity(1);
        (self.get_run(topic, queue_id, offset, 1, &mut one) == 1).then(|| one[0])
    }

    /// Appends to `out` up to `max` consecutive entries from `offset` on out of the cached block
    /// holding it, stopping before a zero entry (zeros before a queue that starts mid-file); returns
    /// how many (0 when no cached block holds `offset`).
    fn get_run(&mut self, topic: &str, queue_id: i32, offset: u64, max: usize, out: &mut Vec<CqEntry>) -> usize {
        let Some(i) = self.blocks.iter().rposition(|b| {
            b.queue_id == queue_id
                && &*b.topic == topic
                && (b.first..b.first + b.entries.len() as u64).contains(&offset)
        }) else {
            return 0;
        };
        let b = &self.blocks[i];
        let from = (offset - b.first) as usize;
        let before = out.len();
        out.extend(b.entries[from..].iter().take(max).take_while(|e| e.size > 0));
        if i + 1 != self.blocks.len()
            && let Some(b) = self.blocks.remove(i)
        {
            self.blocks.push_back(b);
        }
        out.len() - before
    }

    fn insert(&mut self, block: Block) {
        if self.blocks.len() >= COLD_CACHE_BLOCKS {
            self.blocks.pop_front();
        }
        self.blocks.push_back(block);
    }

    /// Forgets a queue's blocks (topic deleted, queue rebuilt).
    pub fn forget_topic(&mut self, topic: &str) {
        self.blocks.retain(|b| &*b.topic != topic);
    }
}

/// The block of `COLD_BLOCK_ENTRIES` holding `offset`, within its file.
fn block_of(offset: u64) -> (u64, u64) {
    let file_first = offset - offset % CQ_FILE_ENTRIES;
    let first = file_first + (offset - file_first) / COLD_BLOCK_ENTRIES * COLD_BLOCK_ENTRIES;
    (first, COLD_BLOCK_ENTRIES.min(file_first + CQ_FILE_ENTRIES - first))
}

impl<D: Disk> Store<D> {
    /// The consume-queue entry at `offset`: from memory, the cold cache, or the queue's file;
    /// `None` when the queue has no such entry or it cannot be read (logged).
    pub async fn entry(&self, topic: &str, queue_id: i32, offset: u64) -> Option<CqEntry> {
        self.try_entry(topic, queue_id, offset).await.ok().flatten()
    }

    /// Appends to `out` up to `max` consecutive entries of the queue from `offset` on, all from one
    /// source (the in-memory window or one cold block, read from the file if need be), so a pull
    /// resolves its queue once per run rather than once per message; returns how many. 0 when the
    /// queue has no entry at `offset` or it cannot be read (logged), as [`Self::entry`]'s `None`.
    pub async fn entry_run(
        &self,
        topic: &str,
        queue_id: i32,
        offset: u64,
        max: usize,
        out: &mut Vec<CqEntry>,
    ) -> usize {
        if max == 0 {
            return 0;
        }
        let max = {
            let queues = self.queues.borrow();
            let Some(q) = queues.get(topic).and_then(|t| t.get(&queue_id)) else { return 0 };
            let n = q.get_run(offset, max, out);
            if n > 0 || !q.is_cold(offset) {
                return n;
            }
            // A cold run stops at the window's start: what follows is read from memory.
            max.min((q.mem_base() - offset) as usize)
        };
        let n = self.cold.borrow_mut().get_run(topic, queue_id, offset, max, out);
        if n > 0 {
            return n;
        }
        match self.try_entry(topic, queue_id, offset).await {
            Ok(Some(e)) => match self.cold.borrow_mut().get_run(topic, queue_id, offset, max, out) {
                0 => {
                    out.push(e); // the queue went away while the block was read: this entry only
                    1
                }
                n => n,
            },
            _ => 0,
        }
    }

    /// Whether a read of the queue from `offset` is a catch-up read: its entry is only in the
    /// queue's files, or its record is older than what the log holds in memory, so serving it means
    /// reading the disk. Such reads run behind appends and tail reads (broker/pull.rs).
    pub fn is_catch_up(&self, topic: &str, queue_id: i32, offset: u64) -> bool {
        let queues = self.queues.borrow();
        let Some(q) = queues.get(topic).and_then(|t| t.get(&queue_id)) else { return false };
        q.is_cold(offset) || q.get(offset).is_some_and(|e| e.physical_offset < self.log.memory_start())
    }

    /// As [`Self::entry`], telling an entry that does not exist (`Ok(None)`) from one whose file
    /// could not be read (`Err`): callers that act on absence (retention, timer delivery) must not
    /// take a read error for a deleted entry.
    pub async fn try_entry(&self, topic: &str, queue_id: i32, offset: u64) -> Result<Option<CqEntry>, StoreError> {
        {
            let queues = self.queues.borrow();
            let Some(q) = queues.get(topic).and_then(|t| t.get(&queue_id)) else { return Ok(None) };
            if let Some(e) = q.get(offset) {
                return Ok(Some(e));
            }
            if !q.is_cold(offset) {
                return Ok(None);
            }
        }
        if let Some(e) = self.cold.borrow_mut().get(topic, queue_id, offset) {
            return Ok(Some(e));
        }
        let (first, n) = block_of(offset);
        let dir = queue_dir(&self.cfg.dir.join("consumequeue"), topic, queue_id);
        let (path, pos) = file_of(&dir, first);
        self.verify_full_file(topic, queue_id, first - first % CQ_FILE_ENTRIES, &path).await?;
        self.cold.borrow_mut().reads += 1;
        let data = self.log.disk().read_small_at(&path, pos, n as usize * CQ_ENTRY_BYTES).await.map_err(|e| {
            tracing::error!(file = %path.display(), offset, error = %e, "cannot read a consume-queue file");
            StoreError::io(&path, &e)
        })?;
        let entries: Vec<CqEntry> = data.chunks_exact(CQ_ENTRY_BYTES).filter_map(CqEntry::decode).collect();
        let Some(e) = entries.get((offset - first) as usize).copied().filter(|e| e.size > 0) else {
            let err = StoreError::Damaged { offset, reason: format!("{} ends before the entry", path.display()) };
            tracing::error!(%err, topic, queue_id, "consume-queue file shorter than its checkpoint said");
            return Err(err);
        };
        // A queue deleted while the read was in flight gets no blocks back.
        if self.queues.borrow().get(topic).is_some_and(|t| t.contains_key(&queue_id)) {
            self.cold.borrow_mut().insert(Block { topic: topic.into(), queue_id, first, entries });
        }
        Ok(Some(e))
    }

    /// Checks a full file against its CRC from the manifest at its first cold read since start (one
    /// read of the whole file, 7.2 MB, on the blocking pool). A file that fails is removed — nothing of
    /// it is served, and the next start finds it missing and rebuilds the queues from the log.
    async fn verify_full_file(
        &self,
        topic: &str,
        queue_id: i32,
        file_first: u64,
        path: &std::path::Path,
    ) -> Result<(), StoreError> {
        let want = {
            let queues = self.queues.borrow();
            let Some(q) = queues.get(topic).and_then(|t| t.get(&queue_id)) else { return Ok(()) };
            match q.full_files.get(&file_first) {
                Some(f) if !f.verified => f.crc,
                _ => return Ok(()),
            }
        };
        let len = CQ_FILE_ENTRIES as usize * CQ_ENTRY_BYTES;
        let data = self.log.disk().read_small_at(path, 0, len).await.map_err(|e| StoreError::io(path, &e))?;
        if data.len() == len && full_file_crc(&data) == want {
            if let Some(f) = self
                .queues
                .borrow_mut()
                .get_mut(topic)
                .and_then(|t| t.get_mut(&queue_id))
                .and_then(|q| q.full_files.get_mut(&file_first))
            {
                f.verified = true;
            }
            return Ok(());
        }
        let err =
            StoreError::Damaged { offset: file_first, reason: format!("{} fails its checkpoint CRC", path.display()) };
        tracing::error!(%err, topic, queue_id,
            "consume-queue file is damaged: removed; the next start rebuilds the queues from the commit log");
        self.damaged_reads.set(self.damaged_reads.get() + 1);
        let _ = self.files.remove_file(path);
        Err(err)
    }

    /// Retention's part for entries that are in files only: each queue's minimum moves past the
    /// entries whose records were deleted (below `log_min`), found by binary search over cold reads
    /// (a few per queue), so a backlog in files needs no memory to be trimmed. A queue whose files
    /// cannot be read keeps its minimum (retried at the next deletion); one that changed during the
    /// search (deleted, recreated, trimmed) is left alone.
    pub(super) async fn advance_cold_minimums(&self, log_min: u64) {
        let cold: Vec<(String, i32, u64, u64)> = self
            .queues
            .borrow()
            .iter()
            .flat_map(|(t, qs)| qs.iter().map(move |(&qid, q)| (t.clone(), qid, q.min_offset(), q.mem_base())))
            .filter(|&(_, _, min, mem)| min < mem)
            .collect();
        'queues: for (topic, qid, min, mem) in cold {
            let (mut lo, mut hi) = (min, mem);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                match self.try_entry(&topic, qid, mid).await {
                    Ok(Some(e)) if e.physical_offset >= log_min => hi = mid,
                    Ok(_) => lo = mid + 1,
                    Err(e) => {
                        tracing::warn!(topic, queue_id = qid, error = %e, "queue minimum not advanced");
                        continue 'queues;
                    }
                }
            }
            if let Some(q) = self.queues.borrow_mut().get_mut(&topic).and_then(|t| t.get_mut(&qid))
                && q.min_offset() == min
            {
                q.advance_min(lo);
                q.trim_below(log_min);
            }
        }
    }

    /// A lower bound on the physical offset of the queue's oldest entry without a file read: the
    /// entry's own when it is in memory, else the log's first retained byte (so the backlog behind
    /// it is over- rather than under-estimated). `None` for an unknown or empty queue.
    pub fn oldest_physical_bound(&self, topic: &str, queue_id: i32) -> Option<u64> {
        let queues = self.queues.borrow();
        let q = queues.get(topic)?.get(&queue_id)?;
        if q.next_offset() == q.min_offset() {
            return None;
        }
        Some(q.get(q.min_offset()).map_or(self.log.min_pos(), |e| e.physical_offset))
    }

    /// Consume-queue entries held in memory across all queues (gauge `ringmq_cq_entries_in_memory`).
    pub fn entries_in_memory(&self) -> usize {
        self.queues.borrow().values().flat_map(|qs| qs.values()).map(|q| q.in_memory()).sum()
    }

    /// Key-index entries held in memory, sealed index files, and sealed files found damaged (gauges
    /// `ringmq_index_entries_in_memory`, `ringmq_index_sealed_files`; counter
    /// `ringmq_index_files_damaged`).
    pub fn index_stats(&self) -> (u64, u64, u64) {
        let i = self.index.borrow();
        (i.entries_in_memory() as u64, i.sealed_files() as u64, i.damaged_files())
    }

    /// File reads done for cold consume-queue entries.
    pub fn cold_reads(&self) -> u64 {
        self.cold.borrow().reads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_stay_inside_their_file() {
        assert_eq!(block_of(0), (0, COLD_BLOCK_ENTRIES));
        assert_eq!(block_of(2049), (2048, COLD_BLOCK_ENTRIES));
        let last = CQ_FILE_ENTRIES - 1;
        let (first, n) = block_of(last);
        assert_eq!(first + n, CQ_FILE_ENTRIES, "the last block ends with the file");
        assert_eq!(block_of(CQ_FILE_ENTRIES), (CQ_FILE_ENTRIES, COLD_BLOCK_ENTRIES));
    }

    #[test]
    fn cache_is_bounded_and_keeps_recent_blocks() {
        let mut c = ColdCache::default();
        let e = CqEntry { physical_offset: 1, size: 1, tags_code: 0, crc: 0 };
        for i in 0..(COLD_CACHE_BLOCKS as u64 + 10) {
            c.insert(Block { topic: "T".into(), queue_id: 0, first: i * 10, entries: vec![e; 10] });
        }
        assert_eq!(c.blocks.len(), COLD_CACHE_BLOCKS);
        assert!(c.get("T", 0, 5).is_none(), "the oldest blocks were evicted");
        assert!(c.get("T", 0, (COLD_CACHE_BLOCKS as u64 + 9) * 10).is_some());
        assert!(c.get("U", 0, (COLD_CACHE_BLOCKS as u64 + 9) * 10).is_none());
        c.forget_topic("T");
        assert!(c.blocks.is_empty());
    }
}
