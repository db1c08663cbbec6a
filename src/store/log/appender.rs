//! The append side of the commit log: encoding into the append buffer, seals that close each batch
//! with a CRC, the waiters of `flush = sync` appends, and the flusher's group commit (write the
//! unflushed range, fdatasync, complete the waiters it covers; a failure poisons the log).

use super::*;

impl<D: Disk> CommitLog<D> {
    /// Appends records of the given sizes, calling `encode(buf, physical_offset, index)` for each; they
    /// land contiguously in one segment. Waits for the next segment when the active one is full.
    /// Returns the physical offset of the first record and, for `flush = sync`, a receiver that
    /// completes once the records are durable.
    pub async fn append(
        &self,
        sizes: &[usize],
        mut encode: impl FnMut(&mut BytesMut, u64, usize),
    ) -> Result<(u64, Option<Durable<'_, D>>), StoreError> {
        let total: u64 = sizes.iter().map(|&s| s as u64).sum();
        if total + SEAL_BYTES + BLANK_BYTES > self.cfg.segment_bytes {
            return Err(StoreError::TooLarge { size: total as usize, segment: self.cfg.segment_bytes });
        }
        loop {
            if let Some(p) = self.poisoned() {
                return Err(StoreError::Poisoned(p));
            }
            if self.try_roll(total)? {
                break;
            }
            self.state.borrow_mut().stats.segment_waits += 1;
            self.prepare_next().await?;
        }
        let mut s = self.state.borrow_mut();
        let need = total as usize + SEAL_BYTES as usize;
        if s.append.buf.capacity() - s.append.buf.len() < need {
            // A fresh chunk for the unflushed tail: flushed blocks were split off into the tail cache
            // and still share the old allocation, which `BytesMut` would regrow 64 KiB at a time.
            // Doubling keeps the copy amortised when much is unflushed (a slow disk, `flush = async`).
            let want = 2 * (s.append.buf.len() + need);
            let mut fresh = s.append.chunks.take(want);
            fresh.extend_from_slice(&s.append.buf);
            let old = std::mem::replace(&mut s.append.buf, fresh);
            s.append.chunks.retire(old, self.cfg.tail_cache_bytes);
        }
        let first = s.append.write_pos;
        let mut pos = first;
        for (i, &size) in sizes.iter().enumerate() {
            let before = s.append.buf.len();
            encode(&mut s.append.buf, pos, i);
            assert_eq!(s.append.buf.len() - before, size, "encoder wrote a different size than declared");
            let st = &mut *s;
            st.append.batch_crc.update(&st.append.buf[before..]);
            pos += size as u64;
        }
        s.append.write_pos = pos;
        s.stats.appends += sizes.len() as u64;
        if s.append.write_pos - s.append.batch_start >= MAX_BATCH_BYTES {
            Self::seal_batch(&mut s);
        }
        self.flush_wanted.set(true);
        if let Some(w) = self.flush_waker.borrow_mut().take() {
            w.wake();
        }
        drop(s);
        let durable = (self.cfg.flush == FlushMode::Sync).then_some(Durable { log: self, end: pos, registered: false });
        if self.prewrite_due() {
            self.prewrite_wanted.notify();
        }
        Ok((first, durable))
    }

    pub(super) fn seal_batch(s: &mut State<D::File>) {
        if s.append.batch_start == s.append.write_pos {
            return;
        }
        let crc = std::mem::replace(&mut s.append.batch_crc, crc32fast::Hasher::new()).finalize();
        let seal = encode_seal(s.append.batch_start, crc);
        s.append.buf.extend_from_slice(&seal);
        s.append.write_pos += SEAL_BYTES;
        s.append.batch_start = s.append.write_pos;
    }

    /// Completes when there is something to flush (the shard's flusher waits on this).
    pub async fn wait_for_work(&self) {
        futures_lite::future::poll_fn(|cx| {
            if self.flush_wanted() {
                return std::task::Poll::Ready(());
            }
            *self.flush_waker.borrow_mut() = Some(cx.waker().clone());
            std::task::Poll::Pending
        })
        .await
    }

    /// Whether appends are waiting for the flusher.
    pub fn flush_wanted(&self) -> bool {
        self.flush_wanted.get() || self.state.borrow().append.write_pos > self.state.borrow().commit.flushed_pos
    }

    /// One group commit: seal the batch, write everything unflushed, fdatasync (unless the writes
    /// are durable themselves, [`crate::store::io::LogSync::Dsync`]), complete waiters.
    /// Returns whether anything was written. Only one flush may run at a time (the shard's flusher).
    pub async fn flush_once(&self) -> Result<bool, StoreError> {
        self.flush_wanted.set(false);
        self.wait_for_zeroing().await;
        let (jobs, target) = match self.collect_writes()? {
            Some(x) => x,
            None => return Ok(false),
        };
        let mut files: Vec<Rc<D::File>> = Vec::new();
        let mut result = Ok(());
        let bytes: u64 = jobs.iter().map(|j| j.len).sum();
        for job in jobs {
            let (file, pos, len) = (job.file, job.pos, job.len);
            if let Err(e) = file.write_buffer_at(job.data, pos).await {
                result = Err(format!("write of {len} bytes at {pos} failed: {e}"));
                break;
            }
            if !file.writes_are_durable() && !files.iter().any(|f| Rc::ptr_eq(f, &file)) {
                files.push(file);
            }
        }
        if result.is_ok() {
            for f in &files {
                if let Err(e) = f.sync().await {
                    result = Err(format!("fdatasync failed: {e}"));
                    break;
                }
            }
        }
        match result {
            Ok(()) => {
                self.complete_flush(target, bytes);
                self.flushed.raise();
                Ok(true)
            }
            Err(msg) => Err(self.poison(msg)),
        }
    }

    pub(super) fn collect_writes(&self) -> Result<FlushPlan<D::File>, StoreError> {
        let mut s = self.state.borrow_mut();
        if let Some(p) = &s.commit.poisoned {
            return Err(StoreError::Poisoned(p.clone()));
        }
        if s.append.write_pos == s.commit.flushed_pos && s.append.pending_old.is_empty() {
            return Ok(None);
        }
        Self::seal_batch(&mut s);
        let mut jobs = Vec::new();
        for old in std::mem::take(&mut s.append.pending_old) {
            let seg = self.segment_start(old.base);
            let from = align_down(s.commit.flushed_pos.max(old.base)).max(old.base);
            let skip = (from - old.base) as usize;
            if skip < old.data.len() {
                let file = s.files.open[&seg].clone();
                let part = &old.data[skip..];
                let len = align_up(part.len() as u64);
                let data = file.write_buffer(part, len as usize);
                jobs.push(WriteJob { file, pos: from - seg, data, len });
            }
            Self::push_tail(&mut s, old.base, old.data, self.cfg.tail_cache_bytes);
        }
        let from = align_down(s.commit.flushed_pos).max(s.append.buf_base);
        let seg = self.segment_start(s.append.buf_base);
        let skip = (from - s.append.buf_base) as usize;
        if skip < s.append.buf.len() {
            let file = s.files.open[&seg].clone();
            let len = align_up((s.append.buf.len() - skip) as u64);
            let data = file.write_buffer(&s.append.buf[skip..], len as usize);
            jobs.push(WriteJob { file, pos: from - seg, data, len });
        }
        Ok(Some((jobs, s.append.write_pos)))
    }

    pub(super) fn complete_flush(&self, target: u64, bytes: u64) {
        let mut s = self.state.borrow_mut();
        s.commit.flushed_pos = s.commit.flushed_pos.max(target);
        s.stats.flushes += 1;
        s.stats.synced_bytes += bytes;
        // Not assumed sorted: a waiter registers when first polled, not when it appended. The
        // list holds at most the sync appends in flight.
        s.commit.waiters.retain(|(end, waker)| {
            let covered = *end <= target;
            if covered {
                waker.wake_by_ref();
            }
            !covered
        });
        // Move whole flushed blocks of the active buffer into the tail cache.
        let keep_from = align_down(target);
        if keep_from > s.append.buf_base {
            let n = (keep_from - s.append.buf_base) as usize;
            let done = s.append.buf.split_to(n).freeze();
            let base = s.append.buf_base;
            s.append.buf_base = keep_from;
            Self::push_tail(&mut s, base, done, self.cfg.tail_cache_bytes);
        }
    }

    pub(super) fn poison(&self, msg: String) -> StoreError {
        tracing::error!(error = %msg, "commit log poisoned: no further writes, the process must stop");
        let mut s = self.state.borrow_mut();
        s.commit.poisoned = Some(msg.clone());
        for (_, waker) in s.commit.waiters.drain(..) {
            waker.wake();
        }
        StoreError::Poisoned(msg)
    }
}

/// What a `flush = sync` append waits on: completes once the log is durable up to `end`, or fails
/// once the log is poisoned. No channel per append: the group commit wakes the waiting tasks it
/// covers, and each reads the outcome from the log. Registers its task's waker on the first pending
/// poll only: a task's waker stays the same across polls, and the future is awaited by the task
/// that appended.
pub struct Durable<'a, D: Disk> {
    log: &'a CommitLog<D>,
    end: u64,
    registered: bool,
}

impl<D: Disk> std::future::Future for Durable<'_, D> {
    type Output = Result<(), StoreError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let this = &mut *self;
        let mut s = this.log.state.borrow_mut();
        if s.commit.flushed_pos >= this.end {
            return std::task::Poll::Ready(Ok(()));
        }
        if let Some(p) = &s.commit.poisoned {
            return std::task::Poll::Ready(Err(StoreError::Poisoned(p.clone())));
        }
        if !this.registered {
            s.commit.waiters.push_back((this.end, cx.waker().clone()));
            this.registered = true;
        }
        std::task::Poll::Pending
    }
}

/// Encodes a seal record closing the batch that began at `batch_start`.
pub fn encode_seal(batch_start: u64, batch_crc: u32) -> [u8; SEAL_BYTES as usize] {
    let mut seal = [0u8; SEAL_BYTES as usize];
    seal[0..4].copy_from_slice(&(SEAL_BYTES as u32).to_be_bytes());
    seal[4..8].copy_from_slice(&SEAL_MAGIC.to_be_bytes());
    seal[8..16].copy_from_slice(&batch_start.to_be_bytes());
    seal[16..20].copy_from_slice(&batch_crc.to_be_bytes());
    let own = crc32fast::hash(&seal[0..20]);
    seal[20..24].copy_from_slice(&own.to_be_bytes());
    seal
}

/// Decodes a seal record: `(batch start, batch crc)` when its own checksum holds.
pub fn decode_seal(b: &[u8]) -> Option<(u64, u32)> {
    if b.len() < SEAL_BYTES as usize {
        return None;
    }
    let size = u32::from_be_bytes(b[0..4].try_into().ok()?);
    let magic = u32::from_be_bytes(b[4..8].try_into().ok()?);
    let own = u32::from_be_bytes(b[20..24].try_into().ok()?);
    if size as u64 != SEAL_BYTES || magic != SEAL_MAGIC || own != crc32fast::hash(&b[0..20]) {
        return None;
    }
    Some((u64::from_be_bytes(b[8..16].try_into().ok()?), u32::from_be_bytes(b[16..20].try_into().ok()?)))
}
