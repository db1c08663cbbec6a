//! The read side of the commit log: reads served from the unflushed buffer, the tail cache (recently
//! flushed buffers: what tail consumers read) or the read cache (DMA blocks of catch-up reads), else
//! from the segment file. The two caches are separate so a catch-up reader never evicts the tail.

use super::*;

impl<D: Disk> CommitLog<D> {
    pub(super) fn push_tail(s: &mut State<D::File>, base: u64, data: Bytes, limit: usize) {
        if data.is_empty() {
            return;
        }
        s.caches.tail.push(base, data, limit);
    }

    /// Reads `len` bytes at physical offset `pos`: from the unflushed buffer, the tail cache, the read
    /// cache, or the segment file. A read-cache miss reads the whole block once: readers that miss a
    /// block already being read wait for that read instead of issuing their own.
    pub async fn read(&self, pos: u64, len: usize) -> Result<Bytes, StoreError> {
        let (block_start, block_len) = self.read_block_of(pos);
        let split = block_start + block_len;
        let end = pos + len as u64;
        // A record across two blocks (one per block, at a drain's pace) is put together from both
        // rather than read on its own.
        if end > split && len as u64 <= READ_BLOCK_BYTES && self.cfg.read_cache_bytes > 0 {
            let first = self.read_in_block(pos, (split - pos) as usize).await?;
            let second = self.read_in_block(split, (end - split) as usize).await?;
            let mut whole = Vec::with_capacity(len);
            whole.extend_from_slice(&first);
            whole.extend_from_slice(&second);
            return Ok(Bytes::from(whole));
        }
        self.read_in_block(pos, len).await
    }

    /// [`Self::read`] of a range inside one read block, or (with no read cache, or a range larger
    /// than a block) straight from the file.
    async fn read_in_block(&self, pos: u64, len: usize) -> Result<Bytes, StoreError> {
        let end = pos + len as u64;
        let (block_start, block_len) = self.read_block_of(pos);
        let cached = end <= block_start + block_len && self.cfg.read_cache_bytes > 0;
        let file = loop {
            let wait = {
                let mut s = self.state.borrow_mut();
                if end > s.append.write_pos || pos < self.min_pos_of(&s) {
                    return Err(StoreError::NotFound(pos));
                }
                if let Some(b) = Self::read_memory(&s, pos, len) {
                    s.stats.tail_hits += 1;
                    return Ok(b);
                }
                if let Some(b) = s.caches.read.get(&block_start) {
                    let off = (pos - block_start) as usize;
                    if off + len <= b.len() {
                        let out = b.slice(off..off + len);
                        s.stats.read_cache_hits += 1;
                        return Ok(out);
                    }
                }
                match s.caches.reading.get(&block_start) {
                    Some(beacon) if cached => (beacon.clone(), beacon.generation()),
                    _ => {
                        s.stats.disk_reads += 1;
                        let seg = self.segment_start(pos);
                        break s.files.open.get(&seg).cloned().ok_or(StoreError::NotFound(pos))?;
                    }
                }
            };
            wait.0.wait_past(wait.1).await;
        };
        let seg = self.segment_start(pos);
        let path = segment_path(&self.cfg.dir, seg);
        if cached {
            let _reading = BlockRead::start(self, block_start);
            let data =
                file.read_at(block_start - seg, block_len as usize).await.map_err(|e| StoreError::io(&path, &e))?;
            let off = (pos - block_start) as usize;
            if off + len > data.len() {
                return Err(StoreError::NotFound(pos));
            }
            let out = data.slice(off..off + len);
            // Only the durable part of the block is kept: past it the file still holds zeros that
            // later appends overwrite, and a cached copy of those zeros would be served for them
            // once the tail cache has let them go (or after a slave's truncation).
            let durable = self.flushed_pos().saturating_sub(block_start).min(data.len() as u64) as usize;
            self.cache_block(block_start, data.slice(..durable));
            return Ok(out);
        }
        let data = file.read_at(pos - seg, len).await.map_err(|e| StoreError::io(&path, &e))?;
        if data.len() != len {
            return Err(StoreError::NotFound(pos));
        }
        Ok(data)
    }

    /// The read-cache block after the one holding `pos`, when a reader at `pos` is reading
    /// sequentially from disk (its block is in the read cache) and that next block is durable, not
    /// cached, not being read and not in memory: read it ahead ([`Self::read_ahead`]) so the reader
    /// finds it cached. `None` otherwise, and always when the cache holds fewer than four blocks
    /// (a block read ahead would evict the one being read).
    pub fn read_ahead_candidate(&self, pos: u64) -> Option<u64> {
        if self.cfg.read_cache_bytes < 4 * READ_BLOCK_BYTES as usize {
            return None;
        }
        let (block, len) = self.read_block_of(pos);
        let next = block + len;
        let s = self.state.borrow();
        let in_memory =
            s.caches.tail.chunks.front().is_some_and(|(base, _)| *base <= next) || next >= s.append.buf_base;
        (s.caches.read.get(&block).is_some()
            && next < s.commit.flushed_pos
            && !in_memory
            && s.caches.read.get(&next).is_none()
            && !s.caches.reading.contains_key(&next)
            && s.files.open.contains_key(&self.segment_start(next)))
        .then_some(next)
    }

    /// Reads the block at `block` into the read cache (a read ahead; errors are left for the reader
    /// that needs the block to meet).
    pub async fn read_ahead(&self, block: u64) {
        let _ = self.read(block, 1).await;
    }

    /// The oldest log position held in memory (the tail cache, buffers awaiting their write, the
    /// live buffer): reads from here on need no disk.
    pub fn memory_start(&self) -> u64 {
        let s = self.state.borrow();
        let tail = s.caches.tail.chunks.front().map(|(base, _)| *base);
        s.append.pending_old.iter().map(|o| o.base).chain(tail).fold(s.append.buf_base, u64::min)
    }

    /// Where the read-cache block holding `pos` ends: a read that stays before it is one cache
    /// lookup (or one DMA read).
    pub fn read_block_end(&self, pos: u64) -> u64 {
        let (start, len) = self.read_block_of(pos);
        start + len
    }

    /// The read-cache block holding `pos`: its start and length, within `pos`'s segment.
    pub(super) fn read_block_of(&self, pos: u64) -> (u64, u64) {
        let seg = self.segment_start(pos);
        let start = seg + (pos - seg) / READ_BLOCK_BYTES * READ_BLOCK_BYTES;
        (start, READ_BLOCK_BYTES.min(seg + self.cfg.segment_bytes - start))
    }

    pub(super) fn min_pos_of(&self, s: &State<D::File>) -> u64 {
        s.files.open.keys().next().copied().unwrap_or(0)
    }

    pub(super) fn cache_block(&self, block: u64, data: Bytes) {
        let mut s = self.state.borrow_mut();
        let limit = (self.cfg.read_cache_bytes as u64 / READ_BLOCK_BYTES).max(1) as usize;
        s.caches.read.insert(block, data, limit);
    }

    pub(super) fn read_memory(s: &State<D::File>, pos: u64, len: usize) -> Option<Bytes> {
        let end = pos + len as u64;
        if pos >= s.append.buf_base {
            let off = (pos - s.append.buf_base) as usize;
            return s.append.buf.get(off..off + len).map(Bytes::copy_from_slice);
        }
        for old in &s.append.pending_old {
            if pos >= old.base && end <= old.base + old.data.len() as u64 {
                let off = (pos - old.base) as usize;
                return Some(old.data.slice(off..off + len));
            }
        }
        // Catch-up reads (most reads that get here) are older than the whole tail: no search.
        if s.caches.tail.chunks.front().is_none_or(|(base, _)| pos < *base) {
            return None;
        }
        let idx = s.caches.tail.chunks.partition_point(|(base, _)| *base <= pos);
        let (base, chunk) = s.caches.tail.chunks.get(idx.checked_sub(1)?)?;
        let off = (pos - base) as usize;
        if end <= base + chunk.len() as u64 {
            return Some(chunk.slice(off..off + len));
        }
        // The range spans chunks (flushes can be a few blocks each, so a run of records may span
        // several), possibly into the live buffer: copy it together.
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&chunk[off..]);
        let mut next_pos = base + chunk.len() as u64;
        for (b, c) in s.caches.tail.chunks.range(idx..) {
            if out.len() == len || *b != next_pos {
                break;
            }
            let take = (len - out.len()).min(c.len());
            out.extend_from_slice(&c[..take]);
            next_pos += take as u64;
        }
        if out.len() < len {
            let rest = len - out.len();
            if next_pos != s.append.buf_base {
                return None;
            }
            out.extend_from_slice(s.append.buf.get(..rest)?);
        }
        Some(Bytes::from(out))
    }
}

/// Recently flushed append buffers, oldest first, at most `limit` bytes (`tail_cache_bytes`): tail
/// consumers read what was just written from here without a disk read.
#[derive(Default)]
pub(super) struct TailCache {
    pub(super) chunks: VecDeque<(u64, Bytes)>,
    bytes: usize,
}

impl TailCache {
    fn push(&mut self, base: u64, data: Bytes, limit: usize) {
        self.bytes += data.len();
        self.chunks.push_back((base, data));
        while self.bytes > limit {
            match self.chunks.pop_front() {
                Some((_, d)) => self.bytes -= d.len(),
                None => break,
            }
        }
    }
}

/// Blocks of [`READ_BLOCK_BYTES`] read from segment files for catch-up readers, evicted oldest first
/// past `read_cache_bytes`. Separate from the tail cache, so a cold reader never evicts the tail.
#[derive(Default)]
pub(super) struct ReadCache {
    blocks: HashMap<u64, Bytes>,
    order: VecDeque<u64>,
}

impl ReadCache {
    pub(super) fn get(&self, block: &u64) -> Option<&Bytes> {
        self.blocks.get(block)
    }

    fn insert(&mut self, block: u64, data: Bytes, limit_blocks: usize) {
        if self.blocks.insert(block, data).is_none() {
            self.order.push_back(block);
        }
        while self.order.len() > limit_blocks {
            if let Some(old) = self.order.pop_front() {
                self.blocks.remove(&old);
            }
        }
    }

    /// Drops the blocks of segments deleted below `start`.
    pub(super) fn forget_below(&mut self, start: u64) {
        self.blocks.retain(|b, _| *b >= start);
        self.order.retain(|b| *b >= start);
    }
}

/// A block read in flight: registered in `reading` while it lasts; when it ends (done, failed or
/// cancelled) its waiters are woken to find the block cached or to read it themselves.
struct BlockRead<'a, D: Disk> {
    log: &'a CommitLog<D>,
    block: u64,
}

impl<'a, D: Disk> BlockRead<'a, D> {
    fn start(log: &'a CommitLog<D>, block: u64) -> BlockRead<'a, D> {
        log.state.borrow_mut().caches.reading.insert(block, Rc::default());
        BlockRead { log, block }
    }
}

impl<D: Disk> Drop for BlockRead<'_, D> {
    fn drop(&mut self) {
        let beacon = self.log.state.borrow_mut().caches.reading.remove(&self.block);
        if let Some(b) = beacon {
            b.raise();
        }
    }
}
