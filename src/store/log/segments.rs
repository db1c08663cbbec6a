//! Segments of the commit log: the active segment and the zeros the pre-writer keeps ahead of its
//! appends (so a synced write overwrites blocks instead of growing the file, and a start does not
//! wait for a whole segment of zeros), the next segment zero-filled ahead of need (so a roll never
//! waits), rolling, and retention's whole-segment deletes. Runs on the log's shard.

use super::*;

/// How long retention waits for reads already holding a segment before removing it (a DMA read
/// takes well under this; a reader still holding it then may see it cut short, as a deleted record).
const READERS_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

impl<D: Disk> CommitLog<D> {
    pub(super) fn segment_start(&self, pos: u64) -> u64 {
        pos - pos % self.cfg.segment_bytes
    }

    /// Opens (creating it if need be) the segment that holds the write position and notes how far
    /// its file is written. Nothing is zero-filled here: the pre-writer lays zeros ahead of the
    /// appends in the background ([`Self::extend_active_zeros`]), so a shard serves at once.
    pub(super) async fn ensure_active_segment(&self) -> Result<(), StoreError> {
        let start = self.segment_start(self.state.borrow().append.write_pos);
        let path = segment_path(&self.cfg.dir, start);
        let existing = self.state.borrow().files.open.get(&start).cloned();
        let file = match existing {
            Some(f) => f,
            None => self.disk.open(&path).await.map_err(|e| StoreError::io(&path, &e))?,
        };
        let size = file.size().await.map_err(|e| StoreError::io(&path, &e))?;
        let mut s = self.state.borrow_mut();
        s.files.zeroed = (start + align_down(size.min(self.cfg.segment_bytes))).max(s.append.write_pos);
        s.files.open.insert(start, file);
        Ok(())
    }

    /// Whether the active segment wants more zeros ahead of the write position (less than half of
    /// `ACTIVE_LEAD_BYTES` left, and the segment not written to its end).
    fn active_lead_due(&self) -> bool {
        let s = self.state.borrow();
        let end = self.segment_start(s.append.write_pos) + self.cfg.segment_bytes;
        s.files.zeroing.is_none()
            && !s.files.truncating
            && s.commit.poisoned.is_none()
            && s.files.zeroed < end
            && s.files.zeroed < s.append.write_pos + ACTIVE_LEAD_BYTES / 2
    }

    /// Zero-fills the active segment from where its file ends up to `ACTIVE_LEAD_BYTES` past the
    /// write position (or the segment's end), one chunk at a time, then syncs it. Each chunk starts
    /// past every block the flusher may be writing, and the flusher waits for a chunk in flight
    /// before writing over it ([`Self::wait_for_zeroing`]).
    pub(super) async fn extend_active_zeros(&self) -> Result<(), StoreError> {
        let mut written: Option<(Rc<D::File>, u64)> = None;
        let mut unsynced = 0;
        loop {
            let (file, seg, at, n) = {
                let mut s = self.state.borrow_mut();
                let seg = self.segment_start(s.append.write_pos);
                let end = seg + self.cfg.segment_bytes;
                if s.files.zeroing.is_some()
                    || s.commit.poisoned.is_some()
                    || written.as_ref().is_some_and(|w| w.1 != seg)
                {
                    break;
                }
                // Past the seal and blank marker the flusher or a roll may still add after the
                // write position (regression: a seal added at collect time could land under zeros).
                let at = s.files.zeroed.max(align_up(s.append.write_pos + SEAL_BYTES + BLANK_BYTES));
                let want = (align_up(s.append.write_pos) + ACTIVE_LEAD_BYTES).min(end);
                let Some(file) = s.files.open.get(&seg).cloned() else { break };
                if at >= want {
                    break;
                }
                s.files.zeroing = Some(at);
                (file, seg, at, (want - at).min(PREWRITE_CHUNK_BYTES as u64) as usize)
            };
            let result = file.write_zeros(at - seg, n).await;
            {
                let mut s = self.state.borrow_mut();
                s.files.zeroing = None;
                if result.is_ok() {
                    s.files.zeroed = s.files.zeroed.max(at + n as u64);
                }
            }
            self.zeroing_done.notify();
            result.map_err(|e| StoreError::io(segment_path(&self.cfg.dir, seg), &e))?;
            unsynced += n as u64;
            if self.cfg.flush == FlushMode::Sync && unsynced >= PREWRITE_SYNC_BYTES {
                file.sync().await.map_err(|e| StoreError::io(segment_path(&self.cfg.dir, seg), &e))?;
                unsynced = 0;
            }
            written = Some((file, seg));
        }
        if let Some((file, seg)) = written {
            // Synced as it goes and at the end (as `prewrite`): a group commit must not inherit a large
            // unsynced pre-write.
            file.sync().await.map_err(|e| StoreError::io(segment_path(&self.cfg.dir, seg), &e))?;
        }
        Ok(())
    }

    /// Waits while a zero chunk is in flight at or below the end of what the flusher is about to
    /// write (positions are absolute, so a roll past the chunk's segment waits too).
    pub(super) async fn wait_for_zeroing(&self) {
        loop {
            let conflict = {
                let s = self.state.borrow();
                // The flush seals an open batch first: its writes end past the seal.
                let seal = if s.append.batch_start != s.append.write_pos { SEAL_BYTES } else { 0 };
                s.files.zeroing.is_some_and(|at| align_up(s.append.write_pos + seal) > at)
            };
            if !conflict {
                return;
            }
            self.zeroing_done.wait().await;
        }
    }

    /// Whether the pre-writer has work: zeros ahead of the appends, or the next segment.
    pub fn prewrite_due(&self) -> bool {
        self.active_lead_due() || self.needs_next_segment()
    }

    /// Does the pre-writer's due work: the active segment's lead first, then the next segment.
    pub async fn run_prewrite(&self) -> Result<(), StoreError> {
        if self.active_lead_due() {
            self.extend_active_zeros().await?;
        }
        if self.needs_next_segment() {
            self.prepare_next().await?;
        }
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
        let s = self.state.borrow();
        let seg = self.segment_start(s.append.write_pos);
        if s.append.write_pos - seg + len + SEAL_BYTES + BLANK_BYTES <= self.cfg.segment_bytes {
            return Ok(true);
        }
        drop(s);
        Ok(self.roll_if_ready())
    }

    /// Closes the active segment (seal, blank record to its end) and makes the pre-written next one
    /// active; false when that one is not ready yet. A slave rolls here where its master's blank
    /// record says to, so both write the same bytes.
    pub(super) fn roll_if_ready(&self) -> bool {
        let mut s = self.state.borrow_mut();
        let next = self.segment_start(s.append.write_pos) + self.cfg.segment_bytes;
        let Some((start, file)) = s.files.ready_next.take_if(|(start, _)| *start == next) else {
            return false;
        };
        Self::seal_batch(&mut s);
        let remaining = next - s.append.write_pos;
        s.append.buf.put_u32(remaining as u32);
        s.append.buf.put_u32(crate::protocol::message::BLANK_MAGIC);
        let padded = align_up(s.append.write_pos + BLANK_BYTES).min(next);
        let pad = (padded - s.append.buf_base) as usize - s.append.buf.len();
        s.append.buf.put_bytes(0, pad);
        let fresh = s.append.chunks.take(APPEND_CHUNK_BYTES);
        let old = std::mem::replace(&mut s.append.buf, fresh).freeze();
        let base = s.append.buf_base;
        s.append.pending_old.push(PendingOld { base, data: old });
        s.files.open.insert(start, file);
        s.files.zeroed = next + self.cfg.segment_bytes;
        s.append.buf_base = next;
        s.append.write_pos = next;
        s.append.batch_start = next;
        s.append.batch_crc = crc32fast::Hasher::new();
        true
    }

    /// Whether the segment after the active one still has to be pre-written.
    pub fn needs_next_segment(&self) -> bool {
        let s = self.state.borrow();
        let filled = s.append.write_pos % self.cfg.segment_bytes;
        s.files.ready_next.is_none()
            && !s.files.preparing
            && !s.files.truncating
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
            // Out of the table first (no new reader finds it), then wait (bounded) for readers
            // already holding it, so that the removal — which cuts the file to nothing off the
            // shard before unlinking it (`Disk::remove`) — never shortens a read in flight.
            let seg = {
                let mut s = self.state.borrow_mut();
                s.caches.read.forget_below(start + self.cfg.segment_bytes);
                s.files.open.remove(&start)
            };
            let deadline = std::time::Instant::now() + READERS_WAIT;
            while seg.as_ref().is_some_and(|f| Rc::strong_count(f) > 1) && std::time::Instant::now() < deadline {
                crate::rt::sleep(std::time::Duration::from_millis(1)).await;
            }
            self.disk.remove(&path).await.map_err(|e| StoreError::io(&path, &e))?;
            drop(seg);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fake_disk::FakeDisk;
    use futures_lite::future::{block_on, poll_once};

    fn fresh_log(dir: &std::path::Path) -> CommitLog<FakeDisk> {
        let cfg = LogConfig {
            dir: dir.into(),
            segment_bytes: 1 << 20,
            flush: FlushMode::Sync,
            tail_cache_bytes: 64 << 10,
            read_cache_bytes: 64 << 10,
        };
        let tail = RecoveredTail { write_pos: 0, partial_block: vec![0; BLOCK_BYTES as usize] };
        block_on(CommitLog::open(FakeDisk::new(), cfg, tail)).unwrap()
    }

    /// A `flush = sync` append's wait: registered once however often it is polled, woken by the
    /// flush that covers it (and only by that one), failed by a poisoned log.
    #[test]
    fn sync_appends_are_woken_by_the_flush_that_covers_them_or_by_poison() {
        use std::pin::Pin;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::task::{Context, Poll};
        struct Wakes(AtomicUsize);
        impl std::task::Wake for Wakes {
            fn wake(self: std::sync::Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let log = fresh_log(dir.path());
        let wakes = std::sync::Arc::new(Wakes(AtomicUsize::new(0)));
        let waker = std::task::Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        block_on(async {
            let (_, a) = log.append(&[100], |b, _, _| b.put_bytes(1, 100)).await.unwrap();
            let mut a = a.expect("flush = sync appends are waited on");
            assert!(Pin::new(&mut a).poll(&mut cx).is_pending());
            assert!(Pin::new(&mut a).poll(&mut cx).is_pending());
            assert_eq!(log.state.borrow().commit.waiters.len(), 1, "registered once");
            assert!(log.flush_once().await.unwrap());
            assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
            assert!(matches!(Pin::new(&mut a).poll(&mut cx), Poll::Ready(Ok(()))));

            let (_, b) = log.append(&[100], |b, _, _| b.put_bytes(2, 100)).await.unwrap();
            let (_, c) = log.append(&[100], |b, _, _| b.put_bytes(3, 100)).await.unwrap();
            let (mut b, mut c) = (b.unwrap(), c.unwrap());
            assert!(Pin::new(&mut b).poll(&mut cx).is_pending());
            assert!(Pin::new(&mut c).poll(&mut cx).is_pending());
            let _ = log.poison("the disk went away".into());
            assert_eq!(wakes.0.load(Ordering::SeqCst), 3, "every waiter woken");
            assert!(matches!(Pin::new(&mut b).poll(&mut cx), Poll::Ready(Err(StoreError::Poisoned(_)))));
            assert!(matches!(Pin::new(&mut c).poll(&mut cx), Poll::Ready(Err(StoreError::Poisoned(_)))));
        });
    }

    /// A flush must wait while the zero chunk set in flight by the test is there, and complete once
    /// it lands.
    async fn flush_held_by_zeros(log: &CommitLog<FakeDisk>, why: &str) {
        let mut flush = std::pin::pin!(log.flush_once());
        assert!(poll_once(&mut flush).await.is_none(), "{why}");
        log.state.borrow_mut().files.zeroing = None;
        log.zeroing_done.notify();
        assert!(flush.await.unwrap());
    }

    #[test]
    fn flusher_waits_for_a_zero_chunk_in_flight_over_its_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let log = fresh_log(dir.path());
        block_on(async {
            // A chunk in flight at the block the flusher rewrites: the data would race the zeros.
            log.state.borrow_mut().files.zeroing = Some(0);
            let (_, rx) = log.append(&[100], |b, _, _| b.put_bytes(7, 100)).await.unwrap();
            flush_held_by_zeros(&log, "the flush waits for the zeros to land").await;
            rx.unwrap().await.unwrap();
            // A chunk past the blocks being written does not hold the flush up.
            log.state.borrow_mut().files.zeroing = Some(BLOCK_BYTES);
            let (_, rx) = log.append(&[100], |b, _, _| b.put_bytes(8, 100)).await.unwrap();
            assert!(poll_once(log.flush_once()).await.is_some_and(|r| r.unwrap()));
            rx.unwrap().await.unwrap();
            log.state.borrow_mut().files.zeroing = None;
            assert_eq!(&log.read(0, 100).await.unwrap()[..], &[7u8; 100][..]);
        });
    }

    /// Regression: the wait looked at the write position before the flush sealed the batch, so a
    /// seal crossing into a block being zeroed could be overwritten by the zeros.
    #[test]
    fn flusher_waits_for_zeros_its_seal_would_cross() {
        let dir = tempfile::tempdir().unwrap();
        let log = fresh_log(dir.path());
        block_on(async {
            let (_, rx) = log.append(&[4090], |b, _, _| b.put_bytes(6, 4090)).await.unwrap();
            log.state.borrow_mut().files.zeroing = Some(BLOCK_BYTES);
            flush_held_by_zeros(&log, "the seal ends in the block being zeroed").await;
            rx.unwrap().await.unwrap();
            // The pre-writer's next chunk starts past the seal and a blank marker.
            log.extend_active_zeros().await.unwrap();
            assert_eq!(&log.read(0, 4090).await.unwrap()[..], &[6u8; 4090][..]);
            let seal = log.read(4090, SEAL_BYTES as usize).await.unwrap();
            assert!(decode_seal(&seal).is_some(), "the seal survived");
        });
    }

    #[test]
    fn zero_chunks_start_past_the_blocks_the_flusher_writes() {
        let dir = tempfile::tempdir().unwrap();
        let log = fresh_log(dir.path());
        block_on(async {
            log.append(&[5000], |b, _, _| b.put_bytes(9, 5000)).await.unwrap();
            // The appends overtook the zeros (nothing pre-written yet): zeroing starts at the
            // first block past the write position, never over appended bytes still to be written.
            log.extend_active_zeros().await.unwrap();
            assert_eq!(log.state.borrow().files.zeroed, 1 << 20, "the whole (small) segment");
            assert!(log.flush_once().await.unwrap());
            assert_eq!(&log.read(0, 5000).await.unwrap()[..], &[9u8; 5000][..]);
            assert!(!log.prewrite_due() || log.needs_next_segment());
        });
    }
}
