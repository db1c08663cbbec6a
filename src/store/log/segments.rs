//! Segments of the commit log: the active segment, the pre-writer that zero-fills the next one ahead
//! of need (so a roll never waits for the file to grow), rolling, and retention's whole-segment
//! deletes. Runs on the log's shard.

use super::*;

impl<D: Disk> CommitLog<D> {
    pub(super) fn segment_start(&self, pos: u64) -> u64 {
        pos - pos % self.cfg.segment_bytes
    }

    /// Creates and pre-writes the segment that holds the write position if it does not exist yet.
    pub(super) async fn ensure_active_segment(&self) -> Result<(), StoreError> {
        let start = self.segment_start(self.state.borrow().append.write_pos);
        if self.state.borrow().files.open.contains_key(&start) {
            let file = self.state.borrow().files.open[&start].clone();
            let size = file.size().await.map_err(|e| StoreError::io(segment_path(&self.cfg.dir, start), &e))?;
            if size >= self.cfg.segment_bytes {
                return Ok(());
            }
        }
        let file = self.prewrite(start).await?;
        self.state.borrow_mut().files.open.insert(start, file);
        Ok(())
    }

    pub(super) async fn prewrite(&self, start: u64) -> Result<Rc<D::File>, StoreError> {
        let path = segment_path(&self.cfg.dir, start);
        let io_err = |e: std::io::Error| StoreError::io(&path, &e);
        let file = self.disk.open(&path).await.map_err(io_err)?;
        let existing = file.size().await.map_err(io_err)?;
        let mut pos = align_down(existing);
        let mut unsynced = 0;
        while pos < self.cfg.segment_bytes {
            let n = (self.cfg.segment_bytes - pos).min(PREWRITE_CHUNK_BYTES as u64) as usize;
            file.write_zeros(pos, n).await.map_err(io_err)?;
            pos += n as u64;
            unsynced += n as u64;
            // Only `flush = sync` commits wait on a device flush; with `flush = async` the syncs would
            // only slow the pre-writer down (measured: appends at 200 MB/s then waited for segments).
            if self.cfg.flush == FlushMode::Sync && unsynced >= PREWRITE_SYNC_BYTES {
                file.sync().await.map_err(io_err)?;
                unsynced = 0;
            }
        }
        file.sync().await.map_err(io_err)?;
        Ok(file)
    }

    /// Makes sure the segment after the active one is pre-written; the shard runs this in the
    /// background, and an append that needs the next segment first waits for it.
    pub async fn prepare_next(&self) -> Result<(), StoreError> {
        let wait = {
            let mut s = self.state.borrow_mut();
            if s.files.ready_next.is_some() {
                return Ok(());
            }
            if s.files.preparing {
                let (tx, rx) = oneshot::channel();
                s.files.prepared_waiters.push(tx);
                Err(rx)
            } else {
                s.files.preparing = true;
                Ok(self.segment_start(s.append.write_pos) + self.cfg.segment_bytes)
            }
        };
        let next = match wait {
            Ok(next) => next,
            Err(rx) => {
                let _ = rx.await;
                return Ok(());
            }
        };
        let result = self.prewrite(next).await;
        let mut s = self.state.borrow_mut();
        s.files.preparing = false;
        for w in s.files.prepared_waiters.drain(..) {
            let _ = w.send(());
        }
        s.files.ready_next = Some((next, result?));
        Ok(())
    }

    /// True when `len` more bytes fit the active segment (rolling to a ready next segment if needed);
    /// false when the next segment is not ready yet.
    pub(super) fn try_roll(&self, len: u64) -> Result<bool, StoreError> {
        let mut s = self.state.borrow_mut();
        let seg = self.segment_start(s.append.write_pos);
        if s.append.write_pos - seg + len + SEAL_BYTES + BLANK_BYTES <= self.cfg.segment_bytes {
            return Ok(true);
        }
        let next = seg + self.cfg.segment_bytes;
        let Some((start, file)) = s.files.ready_next.take_if(|(start, _)| *start == next) else {
            return Ok(false);
        };
        Self::seal_batch(&mut s);
        let remaining = next - s.append.write_pos;
        s.append.buf.put_u32(remaining as u32);
        s.append.buf.put_u32(crate::protocol::message::BLANK_MAGIC);
        let padded = align_up(s.append.write_pos + BLANK_BYTES).min(next);
        let pad = (padded - s.append.buf_base) as usize - s.append.buf.len();
        s.append.buf.put_bytes(0, pad);
        let old = std::mem::replace(&mut s.append.buf, BytesMut::with_capacity(APPEND_CHUNK_BYTES)).freeze();
        let base = s.append.buf_base;
        s.append.pending_old.push(PendingOld { base, data: old });
        s.files.open.insert(start, file);
        s.append.buf_base = next;
        s.append.write_pos = next;
        s.append.batch_start = next;
        s.append.batch_crc = crc32fast::Hasher::new();
        Ok(true)
    }

    /// Whether the segment after the active one still has to be pre-written.
    pub fn needs_next_segment(&self) -> bool {
        let s = self.state.borrow();
        let filled = s.append.write_pos % self.cfg.segment_bytes;
        s.files.ready_next.is_none()
            && !s.files.preparing
            && s.commit.poisoned.is_none()
            && filled >= self.cfg.segment_bytes / PREWRITE_NEXT_AT_DIVISOR
    }

    /// Deletes whole segments that end at or before `before`; never the active segment nor any
    /// segment holding bytes not yet flushed (regression: retention once deleted a just-rolled
    /// segment whose tail was still queued for the flusher). Returns the new minimum offset.
    pub async fn delete_segments_before(&self, before: u64) -> Result<u64, StoreError> {
        loop {
            let victim = {
                let s = self.state.borrow();
                let active = self.segment_start(s.commit.flushed_pos.min(s.append.write_pos));
                let pending: Vec<u64> = s.append.pending_old.iter().map(|o| self.segment_start(o.base)).collect();
                match s.files.open.keys().next() {
                    Some(&start)
                        if start < active && !pending.contains(&start) && start + self.cfg.segment_bytes <= before =>
                    {
                        Some(start)
                    }
                    _ => None,
                }
            };
            let Some(start) = victim else { break };
            let path = segment_path(&self.cfg.dir, start);
            self.disk.remove(&path).await.map_err(|e| StoreError::io(&path, &e))?;
            let mut s = self.state.borrow_mut();
            s.files.open.remove(&start);
            s.caches.read.forget_below(start + self.cfg.segment_bytes);
            tracing::info!(segment = %path.display(), "retention deleted commit-log segment");
        }
        Ok(self.min_pos())
    }

    /// Start offsets of all segments, oldest first.
    pub fn segment_starts(&self) -> Vec<u64> {
        self.state.borrow().files.open.keys().copied().collect()
    }

    pub fn segment_bytes(&self) -> u64 {
        self.cfg.segment_bytes
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.cfg.dir
    }
}
