//! The slave's side of the log: bytes its master already sealed are appended verbatim at the same
//! offsets (so physical offsets, msgIds and queue offsets agree on every replica), and the master's
//! blank records roll the slave's segments where the master's rolled. The caller verified the bytes
//! (`store::batches::walk_sealed`): they are whole batches starting at this log's write position.

use super::*;

impl<D: Disk> CommitLog<D> {
    /// Appends `bytes` (whole sealed batches, without a trailing blank) at `pos`, which must be the
    /// write position, then rolls to the next segment when `ends_segment`. The flusher writes them
    /// as it writes appends; a slave acknowledges what [`CommitLog::flushed_pos`] says is durable.
    pub async fn append_sealed(&self, pos: u64, bytes: &[u8], ends_segment: bool) -> Result<(), StoreError> {
        if let Some(p) = self.poisoned() {
            return Err(StoreError::Poisoned(p));
        }
        {
            let mut s = self.state.borrow_mut();
            if pos != s.append.write_pos || s.append.batch_start != pos {
                return Err(StoreError::Invalid(format!(
                    "replicated bytes at {pos} do not continue this log (its end is {})",
                    s.append.write_pos
                )));
            }
            let seg = self.segment_start(pos);
            let room = self.cfg.segment_bytes - (pos - seg) - BLANK_BYTES;
            if bytes.len() as u64 > room {
                return Err(StoreError::Invalid(format!(
                    "{} replicated bytes at {pos} run past the segment end",
                    bytes.len()
                )));
            }
            s.append.buf.extend_from_slice(bytes);
            s.append.write_pos += bytes.len() as u64;
            s.append.batch_start = s.append.write_pos;
            s.stats.appends += 1;
        }
        if ends_segment {
            while !self.roll_if_ready() {
                if let Some(p) = self.poisoned() {
                    return Err(StoreError::Poisoned(p));
                }
                self.state.borrow_mut().stats.segment_waits += 1;
                self.prepare_next().await?;
            }
        }
        self.flush_wanted.set(true);
        if let Some(w) = self.flush_waker.borrow_mut().take() {
            w.wake();
        }
        if self.prewrite_due() {
            self.prewrite_wanted.notify();
        }
        Ok(())
    }
}

/// Zero chunk of a truncation: each is written and synced before the next one below it.
const TRUNCATE_CHUNK_BYTES: u64 = 1 << 20;

impl<D: Disk> CommitLog<D> {
    /// Cuts the log back to `to` (a batch boundary), on a slave whose bytes past it diverged from
    /// its master's. Nothing may be appending, and everything appended must be durable. Crash-safe:
    /// the segments wholly past `to` are deleted first, newest first, each removal synced; then the
    /// rest is zeroed from its end backwards, each chunk synced before the one below it — so at any
    /// crash the log on disk is a prefix of what it was, followed by zeros, which recovery reads as
    /// a shorter log, never as damage.
    pub async fn truncate_to(&self, to: u64) -> Result<(), StoreError> {
        // The pre-writer must not create or zero a segment file being deleted under it (glommio
        // panics on a file unlinked while it opens it, and a pre-written file deleted under the
        // pre-writer would become the next segment). Wait for its work in flight, hold off more.
        let deadline = crate::rt::now() + std::time::Duration::from_secs(30);
        loop {
            let busy = {
                let s = self.state.borrow();
                s.files.preparing || s.files.zeroing.is_some()
            };
            if !busy {
                break;
            }
            if crate::rt::now() >= deadline {
                return Err(StoreError::Invalid("the segment pre-writer did not finish in 30 s".into()));
            }
            crate::rt::sleep(std::time::Duration::from_millis(5)).await;
        }
        self.state.borrow_mut().files.truncating = true;
        let r = self.truncate_locked(to).await;
        self.state.borrow_mut().files.truncating = false;
        self.prewrite_wanted.notify();
        r
    }

    async fn truncate_locked(&self, to: u64) -> Result<(), StoreError> {
        let (end, seg) = {
            let s = self.state.borrow();
            if s.append.write_pos != s.commit.flushed_pos || !s.append.pending_old.is_empty() {
                return Err(StoreError::Invalid("truncation while appends are not yet durable".into()));
            }
            if to > s.append.write_pos || to < self.min_pos_of(&s) {
                return Err(StoreError::Invalid(format!(
                    "cannot truncate to {to}: the log holds {}..{}",
                    self.min_pos_of(&s),
                    s.append.write_pos
                )));
            }
            (s.append.write_pos, self.segment_start(to))
        };
        let io = |path: &std::path::Path, e: std::io::Error| self.poison(format!("truncating {}: {e}", path.display()));
        let dir = self.cfg.dir.clone();
        let ready = self.state.borrow_mut().files.ready_next.take();
        let mut later: Vec<u64> = self.state.borrow().files.open.range(seg + 1..).map(|(k, _)| *k).collect();
        later.extend(ready.map(|(start, _)| start));
        later.sort_unstable();
        later.dedup();
        for start in later.into_iter().rev() {
            let path = segment_path(&dir, start);
            self.state.borrow_mut().files.open.remove(&start);
            self.disk.remove(&path).await.map_err(|e| io(&path, e))?;
            self.disk.files().sync_dir(&dir).map_err(|e| io(&dir, e))?;
        }
        let file = self.state.borrow().files.open.get(&seg).cloned();
        let path = segment_path(&dir, seg);
        let Some(file) = file else {
            return Err(StoreError::Invalid(format!("segment {seg} of offset {to} is not open")));
        };
        let zero_end = if end >= seg + self.cfg.segment_bytes { self.cfg.segment_bytes } else { end - seg };
        let first = align_down(to - seg);
        let mut block = file.read_at(first, BLOCK_BYTES as usize).await.map_err(|e| io(&path, e))?.to_vec();
        block.resize(BLOCK_BYTES as usize, 0);
        let keep = (to - seg - first) as usize;
        let zeros = vec![0u8; TRUNCATE_CHUNK_BYTES as usize];
        let mut hi = align_up(zero_end).min(self.cfg.segment_bytes);
        while hi > first + BLOCK_BYTES {
            let lo = hi.saturating_sub(TRUNCATE_CHUNK_BYTES).max(first + BLOCK_BYTES);
            file.write_at(&zeros[..(hi - lo) as usize], lo).await.map_err(|e| io(&path, e))?;
            file.sync().await.map_err(|e| io(&path, e))?;
            hi = lo;
        }
        block[keep..].fill(0);
        file.write_at(&block, first).await.map_err(|e| io(&path, e))?;
        file.sync().await.map_err(|e| io(&path, e))?;
        let mut s = self.state.borrow_mut();
        s.files.zeroed = s.files.zeroed.max(seg + align_up(zero_end));
        s.append.write_pos = to;
        s.append.batch_start = to;
        s.append.batch_crc = crc32fast::Hasher::new();
        s.append.buf_base = seg + first;
        s.append.buf = BytesMut::with_capacity(APPEND_CHUNK_BYTES);
        s.append.buf.extend_from_slice(&block[..keep]);
        s.commit.flushed_pos = to;
        s.caches = Caches::default();
        Ok(())
    }
}
