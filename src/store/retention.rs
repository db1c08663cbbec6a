//! Retention and disk-full protection for one shard's store.
//!
//! Whole segments are deleted when their last write is older than `file_reserved_ms`, and, oldest first,
//! while disk use is above `disk_clean_ratio`. Above `disk_full_ratio` appends are refused
//! (`StoreError::DiskFull` → SERVICE_NOT_AVAILABLE) while reads continue; the shard re-runs this every
//! second, so appends resume by themselves once space returns. The active segment is never deleted.
//! Consume-queue minimum offsets move past deleted records.

// libc calls (each with its SAFETY comment): the crate denies unsafe code elsewhere.
#![allow(unsafe_code)]

use super::io::{Disk, segment_path};
use super::{Store, StoreError};
use std::path::Path;

/// Space on the file system holding the store.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiskUsage {
    pub total_bytes: u64,
    pub available_bytes: u64,
}

impl DiskUsage {
    /// Measures the file system holding `dir`.
    pub fn measure(dir: &Path) -> std::io::Result<DiskUsage> {
        statvfs_usage(dir)
    }

    pub fn used_ratio(&self) -> f64 {
        if self.total_bytes == 0 {
            return 0.0;
        }
        1.0 - self.available_bytes as f64 / self.total_bytes as f64
    }
}

/// Measures the file system of `dir` with statvfs; `total_bytes` is used + available (df's size for
/// its Use%), so `used_ratio` is df's Use%.
pub fn statvfs_usage(dir: &Path) -> std::io::Result<DiskUsage> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is a valid NUL-terminated path and `st` points to writable memory of the right type.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it initialised the struct.
    let st = unsafe { st.assume_init() };
    let frsize = st.f_frsize;
    // As df counts it: the space the broker can use is what is used plus what is available to it,
    // not the raw size, which includes blocks reserved for root or held back by the file system (a
    // large reserve made 24 % in df read as 72 % here, and retention deleted data far too early).
    let used = st.f_blocks.saturating_sub(st.f_bfree);
    Ok(DiskUsage { total_bytes: (used + st.f_bavail) * frsize, available_bytes: st.f_bavail * frsize })
}

impl<D: Disk> Store<D> {
    /// The data directory's file-system use, as the disk-full check measures it (None, logged,
    /// when it cannot be measured).
    pub fn usage(&self) -> Option<DiskUsage> {
        match (self.usage_probe.borrow())() {
            Ok(u) => Some(u),
            Err(e) => {
                tracing::warn!(error = %e, "cannot measure disk usage");
                None
            }
        }
    }

    /// One retention pass at `now_ms`. Returns the number of segments deleted.
    ///
    /// Only segments a checkpoint covers go: their queue and index entries are in files, so
    /// dropping them from memory leaves no hole in the files' numbering (a segment deleted ahead of
    /// the checkpoint would take entries from memory that were never written).
    pub async fn run_retention(&self, now_ms: i64) -> Result<usize, StoreError> {
        let before = self.log.segment_starts();
        let seg = self.log.segment_bytes();
        let covered = self.checkpointed.get();
        let mut cut = self.expired_before(now_ms).min(covered - covered % seg);
        let active = self.log.write_pos() - self.log.write_pos() % seg;
        let mut result = Ok(());
        while let Some(u) = self.usage() {
            if u.used_ratio() <= self.cfg.disk_clean_ratio {
                break;
            }
            let next = self.log.segment_starts().into_iter().find(|&s| s >= cut && s < active);
            let Some(s) = next.filter(|&s| s + seg <= covered) else {
                if next.is_some() {
                    tracing::warn!(
                        covered,
                        "disk use above the retention threshold, but the oldest segment is not \
                        covered by a checkpoint yet: retention waits for it"
                    );
                }
                break;
            };
            cut = s + seg;
            if let Err(e) = self.log.delete_segments_before(cut).await {
                result = Err(e);
                break;
            }
        }
        if result.is_ok()
            && let Err(e) = self.log.delete_segments_before(cut).await
        {
            result = Err(e);
        }
        // Even after a failed removal: what left the log's table is gone for readers.
        let min = self.log.min_pos();
        // Counted by name: the log may have rolled to a new segment during the awaits.
        let now = self.log.segment_starts();
        let deleted = before.iter().filter(|s| !now.contains(s)).count();
        if deleted > 0 {
            // Memory first, with no await since the deletion (a checkpoint could otherwise evict
            // entries between), then the queues whose oldest entries are only in files.
            self.trim_queues(min);
            self.advance_cold_minimums(min).await;
            self.expire_queue_files();
        }
        self.update_disk_full();
        result.map(|()| deleted)
    }

    /// First offset not covered by segments whose last write is older than the reserved time.
    fn expired_before(&self, now_ms: i64) -> u64 {
        let mut cut = 0;
        for s in self.log.segment_starts() {
            let path = segment_path(self.log.dir(), s);
            let Ok(modified) = std::fs::metadata(&path).and_then(|m| m.modified()) else {
                break;
            };
            let age_ms =
                now_ms - modified.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
            if age_ms < self.cfg.file_reserved_ms as i64 {
                break;
            }
            cut = s + self.log.segment_bytes();
        }
        cut
    }

    fn trim_queues(&self, log_min: u64) {
        for qs in self.queues.borrow_mut().values_mut() {
            for q in qs.values_mut() {
                q.trim_below(log_min);
            }
        }
        self.index.borrow_mut().expire(log_min);
    }

    /// Lets go of the consume-queue files whose entries are all below their queue's minimum: the
    /// next checkpoint stops listing them and then removes them (`CheckpointJob::cq_remove`), a few
    /// files a pass rather than a stall.
    pub(super) fn expire_queue_files(&self) {
        let root = self.cfg.dir.join("consumequeue");
        let mut expired = self.cq_expired.borrow_mut();
        for (topic, qs) in self.queues.borrow_mut().iter_mut() {
            for (&qid, q) in qs.iter_mut() {
                let dir = super::consume_queue::queue_dir(&root, topic, qid);
                expired.extend(q.take_expired_files().into_iter().map(|f| dir.join(format!("{f:020}"))));
            }
        }
    }

    /// Sets or clears the disk-full refusal from the current usage.
    pub fn update_disk_full(&self) {
        let full = self.usage().filter(|u| u.used_ratio() >= self.cfg.disk_full_ratio);
        let pct = full.map(|u| (u.used_ratio() * 100.0).round() as u32);
        if pct.is_some() != self.disk_full.get().is_some() {
            match pct {
                Some(p) => tracing::error!(used_percent = p, "disk nearly full: refusing appends, reads continue"),
                None => tracing::info!("disk space returned: accepting appends again"),
            }
        }
        self.disk_full.set(pct);
    }
}
