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
