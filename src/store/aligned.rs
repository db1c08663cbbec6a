//! Catch-up reads without a copy: a large O_DIRECT read goes into a 4 KiB-aligned buffer owned by
//! the `Bytes` it becomes, on the blocking pool, so the records the read cache serves are the very
//! memory the device wrote. glommio's own DMA reads land in its pooled buffers, which cannot be
//! held by a cache (they are `!Send` and lent from the executor's `io_memory`), so they were copied
//! out — the single largest cost of a cold drain (13 % of the shard, the copy touching memory the
//! device had just written; docs/BENCHMARKS.md, issue 17 part 4).
//!
//! Buffers are recycled through a small process-wide pool: a fresh one is page-faulted in by the
//! kernel on every read, a recycled one is not. The pool holds at most [`POOL_BUFFERS`].
//!
//! Unsafe code: the aligned allocation, the `pread` into it, and the slice over what it filled.
#![allow(unsafe_code)]

use bytes::Bytes;
use std::alloc::{Layout, alloc, dealloc};
use std::io;
use std::os::fd::RawFd;
use std::sync::Mutex;

/// Alignment of O_DIRECT buffers (the device block size).
const ALIGN: usize = 4096;
/// Buffers the pool keeps for reuse: a read cache's worth of 1 MiB blocks (32 MiB by default)
/// plus a few in flight, per process — beyond it buffers are freed.
const POOL_BUFFERS: usize = 48;

static POOL: Mutex<Vec<AlignedBuf>> = Mutex::new(Vec::new());

/// An owned, 4 KiB-aligned heap buffer of `cap` bytes, `len` of them valid.
pub struct AlignedBuf {
    ptr: std::ptr::NonNull<u8>,
    cap: usize,
    len: usize,
}

// SAFETY: the buffer is plain heap memory owned by this value alone.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared access only reads through `as_ref`.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    fn new(cap: usize) -> AlignedBuf {
        let layout = Layout::from_size_align(cap.max(ALIGN), ALIGN).expect("aligned layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc(layout) };
        let ptr = std::ptr::NonNull::new(ptr).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        AlignedBuf { ptr, cap: cap.max(ALIGN), len: 0 }
    }

    /// A buffer of at least `cap` bytes, from the pool when one of that size is there.
    fn take(cap: usize) -> AlignedBuf {
        let pooled = POOL.lock().ok().and_then(|mut p| p.iter().position(|b| b.cap == cap).map(|i| p.swap_remove(i)));
        pooled.unwrap_or_else(|| AlignedBuf::new(cap))
    }
}

impl AsRef<[u8]> for AlignedBuf {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `len <= cap` bytes were written by the read that filled the buffer.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if let Ok(mut p) = POOL.lock()
            && p.len() < POOL_BUFFERS
        {
            p.push(AlignedBuf { ptr: self.ptr, cap: self.cap, len: 0 });
            return;
        }
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.ptr.as_ptr(), Layout::from_size_align_unchecked(self.cap, ALIGN)) }
    }
}

/// Nice value a catch-up read runs at on its pool thread: the kernel then neither lets the read's
/// CPU time (page pinning, bio set-up) nor its wake-up preempt the shard on the same core — a
/// shard's task-queue shares cannot see a thread of the blocking pool (docs/BENCHMARKS.md, issue 17
/// part 4).
const READ_NICE: libc::c_int = 19;

/// Runs `f` at [`READ_NICE`] on the calling thread, restoring its nice value after — only where
/// the restore is allowed (root, or RLIMIT_NICE high enough): a pool thread left at 19 would starve
/// the checkpoints and seals it also runs. Elsewhere `f` runs as it is.
pub fn at_low_priority<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: getpriority/setpriority on the calling thread (who = 0 is this thread on Linux).
    let before = unsafe {
        *libc::__errno_location() = 0;
        libc::getpriority(libc::PRIO_PROCESS, 0)
    };
    let can_restore = before < READ_NICE && may_raise_to(before);
    // SAFETY: as above.
    let lowered = can_restore && unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, READ_NICE) } == 0;
    let out = f();
    if lowered {
        // SAFETY: as above; allowed, as checked before lowering.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, before) };
    }
    out
}

/// Whether this thread may set its nice value back to `nice` once it is raised: root (effective
/// uid 0), or RLIMIT_NICE allowing it (the limit is `20 - nice`).
fn may_raise_to(nice: libc::c_int) -> bool {
    // SAFETY: plain queries of this process's credentials and limits into a local.
    unsafe {
        if libc::geteuid() == 0 {
            return true;
        }
        let mut lim: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NICE, &mut lim) == 0 && lim.rlim_cur as i64 >= i64::from(20 - nice)
    }
}

/// Reads up to `len` bytes at `pos` of the O_DIRECT descriptor `fd` (both multiples of 4 KiB) into
/// an owned buffer, looping over short reads until `len` or the end of the file. Blocking: run it
/// on the blocking pool. The descriptor is only a number here: if its file was closed meanwhile the
/// read fails or reads another file into this buffer, which is then dropped unread.
pub fn pread_direct(fd: RawFd, pos: u64, len: usize) -> io::Result<Bytes> {
    debug_assert!(pos.is_multiple_of(ALIGN as u64) && len.is_multiple_of(ALIGN));
    let mut buf = AlignedBuf::take(len);
    while buf.len < len {
        // SAFETY: writes at most `len - buf.len` bytes into the buffer's `cap >= len` bytes.
        let n = unsafe {
            libc::pread(fd, buf.ptr.as_ptr().add(buf.len).cast(), len - buf.len, (pos + buf.len as u64) as libc::off_t)
        };
        match n {
            0 => break,
            n if n > 0 => buf.len += n as usize,
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
        // O_DIRECT reads stop short only at the end of the file (a tail shorter than a block).
        if !buf.len.is_multiple_of(ALIGN) {
            break;
        }
    }
    Ok(Bytes::from_owner(buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_low_priority_read_leaves_the_threads_nice_value_as_it_found_it() {
        std::thread::spawn(|| {
            // SAFETY: priority queries of this test's own thread.
            let nice = || unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
            let before = nice();
            let during = at_low_priority(nice);
            assert_eq!(nice(), before, "restored");
            if may_raise_to(before) {
                assert_eq!(during, READ_NICE, "ran at the low priority");
            } else {
                assert_eq!(during, before, "left alone where it could not be restored");
            }
        })
        .join()
        .unwrap();
    }

    #[test]
    fn reads_whole_blocks_and_the_short_tail_and_recycles_buffers() {
        let dir = std::env::temp_dir().join(format!("ringmq-aligned-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        let data: Vec<u8> = (0..3 * ALIGN + 100).map(|i| (i % 251) as u8).collect();
        std::fs::File::create(&path).unwrap().write_all(&data).unwrap();
        let f = std::fs::File::open(&path).unwrap();
        let b = pread_direct(f.as_raw_fd(), ALIGN as u64, 4 * ALIGN).unwrap();
        assert_eq!(&b[..], &data[ALIGN..], "reads to the end of the file, tail included");
        let addr = b.as_ptr() as usize;
        assert_eq!(addr % ALIGN, 0);
        drop(b);
        let again = pread_direct(f.as_raw_fd(), 0, 4 * ALIGN).unwrap();
        assert_eq!(&again[..], &data[..]);
        assert!(pread_direct(-1, 0, ALIGN).is_err(), "a bad descriptor is an error, not a panic");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
