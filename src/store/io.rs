//! The storage I/O boundary of the commit log: a small async trait that the log is written against, so the same
//! store runs on real O_DIRECT files (`DmaDisk`, glommio) and on the fault-injecting `FakeDisk`.
//!
//! Contract: writes are whole 4 KiB blocks at 4 KiB-aligned positions; a write is durable only after a
//! later `sync` of the same file returned `Ok` — or, where [`DiskFile::writes_are_durable`] says so,
//! once the write itself returned `Ok` (the log's appends under [`LogSync::Dsync`]). Lives on one
//! shard (types are `!Send`).

use bytes::Bytes;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Alignment of every write position and length: the physical block size of the devices we run on.
pub const BLOCK_BYTES: u64 = 4096;

/// Reads from this size up (aligned) are read into owned buffers rather than copied out of
/// glommio's: below it the blocking pool's hand-off costs more than the copy it saves.
const OWNED_READ_MIN_BYTES: usize = 64 << 10;

/// Chunk size of segment pre-writing.
pub const ZERO_CHUNK_BYTES: usize = 1 << 20;

pub fn align_down(v: u64) -> u64 {
    v & !(BLOCK_BYTES - 1)
}

pub fn align_up(v: u64) -> u64 {
    (v + BLOCK_BYTES - 1) & !(BLOCK_BYTES - 1)
}

/// How the commit log's group commit makes its writes durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogSync {
    /// Appends go through a second descriptor of the segment opened with `O_DSYNC`: a write
    /// completes once it is durable (the kernel flushes the device cache, or writes with FUA where
    /// the device has it). One io_uring completion per group commit instead of two, and no io-wq
    /// worker thread for `fdatasync` on the shard's core (measured in docs/BENCHMARKS.md).
    #[default]
    Dsync,
    /// Write, then `fdatasync` the segment (two round trips; ext4 runs the fdatasync on an io-wq
    /// worker that shares the shard's core).
    Fdatasync,
}

/// One open file of the log.
#[allow(async_fn_in_trait)]
pub trait DiskFile {
    /// Memory a write is issued from (DMA memory for O_DIRECT files).
    type WriteBuf;
    /// A write buffer of `len` bytes (a multiple of `BLOCK_BYTES`) holding `data` then zeros. The
    /// commit log fills it while its state is borrowed: the flush path's only copy of the bytes.
    fn write_buffer(&self, data: &[u8], len: usize) -> Self::WriteBuf;
    /// Writes a buffer from [`Self::write_buffer`] at the aligned position `pos`.
    async fn write_buffer_at(&self, buf: Self::WriteBuf, pos: u64) -> io::Result<()>;
    /// Writes `data` (a multiple of `BLOCK_BYTES` long) at the aligned position `pos`.
    async fn write_at(&self, data: &[u8], pos: u64) -> io::Result<()> {
        self.write_buffer_at(self.write_buffer(data, data.len()), pos).await
    }
    /// Reads up to `len` bytes at `pos` (any alignment); shorter only at the end of the file.
    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes>;
    /// Writes `len` zero bytes at the aligned position `pos` (segment pre-writing).
    async fn write_zeros(&self, pos: u64, len: usize) -> io::Result<()> {
        self.write_at(&vec![0u8; len], pos).await
    }
    /// Makes every completed write durable (fdatasync).
    async fn sync(&self) -> io::Result<()>;
    async fn size(&self) -> io::Result<u64>;
    /// Whether a write through [`Self::write_buffer_at`] is durable once it returns `Ok`, so that a
    /// group commit needs no `sync` ([`LogSync::Dsync`]). Pre-writes (`write_zeros`) never are.
    fn writes_are_durable(&self) -> bool {
        false
    }
}

/// A directory of log files.
#[allow(async_fn_in_trait)]
pub trait Disk: 'static {
    type File: DiskFile + 'static;
    async fn open(&self, path: &Path) -> io::Result<Rc<Self::File>>;
    async fn remove(&self, path: &Path) -> io::Result<()>;
    /// Names of the files directly inside `dir` (empty when it does not exist).
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The small files beside the log on the same device (consume queues, index, checkpoint, config).
    fn files(&self) -> super::files::SharedFiles;
    /// [`super::files::Files::read_at`] of one of those files without blocking the shard: the real
    /// disk reads on the executor's blocking pool (a cold consume-queue read may wait for the device).
    async fn read_small_at(&self, path: &Path, pos: u64, len: usize) -> io::Result<Vec<u8>> {
        self.files().read_at(path, pos, len)
    }
}

/// Real files opened with O_DIRECT through glommio's io_uring reactor. Only usable inside a glommio
/// executor.
#[derive(Debug, Clone, Copy, Default)]
pub struct DmaDisk {
    pub sync: LogSync,
}

/// A segment opened by [`DmaDisk`]: one descriptor for reads and pre-writes, and under
/// [`LogSync::Dsync`] a second one opened with `O_DSYNC` for the group commit's writes.
pub struct DmaSegment {
    file: glommio::io::DmaFile,
    durable: Option<glommio::io::DmaFile>,
}

impl DiskFile for DmaSegment {
    type WriteBuf = glommio::io::DmaBuffer;

    fn write_buffer(&self, data: &[u8], len: usize) -> glommio::io::DmaBuffer {
        debug_assert!((len as u64).is_multiple_of(BLOCK_BYTES) && data.len() <= len);
        let mut buf = self.file.alloc_dma_buffer(len);
        let bytes = buf.as_bytes_mut();
        bytes[..data.len()].copy_from_slice(data);
        bytes[data.len()..].fill(0);
        buf
    }

    async fn write_buffer_at(&self, buf: glommio::io::DmaBuffer, pos: u64) -> io::Result<()> {
        debug_assert!(pos.is_multiple_of(BLOCK_BYTES));
        let len = buf.len();
        let file = self.durable.as_ref().unwrap_or(&self.file);
        // Queued, then submitted at once: left to the executor, a group commit's write would
        // wait for the next ring poll, behind up to a task quota of request handling.
        let mut write = std::pin::pin!(file.write_at(buf, pos));
        let n = match futures_lite::future::poll_once(&mut write).await {
            Some(done) => done,
            None => {
                glommio::executor().submit_io_now();
                write.await
            }
        };
        let n = n.map_err(io::Error::from)?;
        if n != len {
            return Err(io::Error::new(io::ErrorKind::WriteZero, format!("short write: {n} of {len}")));
        }
        Ok(())
    }

    /// Block-sized aligned reads (the read cache's) go into an owned buffer on the blocking pool,
    /// without a copy ([`super::aligned`]); small or unaligned ones through glommio, copied out.
    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        if len >= OWNED_READ_MIN_BYTES && pos.is_multiple_of(BLOCK_BYTES) && (len as u64).is_multiple_of(BLOCK_BYTES) {
            use std::os::fd::AsRawFd;
            let fd = self.file.as_raw_fd();
            return crate::rt::blocking(move || {
                super::aligned::at_low_priority(|| super::aligned::pread_direct(fd, pos, len))
            })
            .await;
        }
        let r = self.file.read_at(pos, len).await.map_err(io::Error::from)?;
        Ok(Bytes::copy_from_slice(&r))
    }

    /// Reuses one zeroed DMA buffer per thread: allocating (and the kernel zeroing) a fresh 1 MiB
    /// buffer per chunk cost a quarter of a shard's CPU while a segment was being pre-written.
    async fn write_zeros(&self, pos: u64, len: usize) -> io::Result<()> {
        thread_local! {
            static ZEROS: std::cell::RefCell<Option<Rc<glommio::io::DmaBuffer>>> = const { std::cell::RefCell::new(None) };
        }
        let buf = ZEROS.with(|z| {
            let mut z = z.borrow_mut();
            match z.as_ref() {
                Some(b) if b.len() == len => b.clone(),
                _ => {
                    let mut b = self.file.alloc_dma_buffer(len);
                    b.as_bytes_mut().fill(0);
                    let b = Rc::new(b);
                    if len == ZERO_CHUNK_BYTES {
                        *z = Some(b.clone());
                    }
                    b
                }
            }
        });
        let n = self.file.write_rc_at(buf, pos).await.map_err(io::Error::from)?;
        if n != len {
            return Err(io::Error::new(io::ErrorKind::WriteZero, format!("short write: {n} of {len}")));
        }
        Ok(())
    }

    async fn sync(&self) -> io::Result<()> {
        self.file.fdatasync().await.map_err(io::Error::from)
    }

    async fn size(&self) -> io::Result<u64> {
        self.file.file_size().await.map_err(io::Error::from)
    }

    fn writes_are_durable(&self) -> bool {
        self.durable.is_some()
    }
}

impl Disk for DmaDisk {
    type File = DmaSegment;

    async fn open(&self, path: &Path) -> io::Result<Rc<Self::File>> {
        ensure_allocated_block(path)?;
        let open = |flags: i32| async move {
            glommio::io::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .custom_flags(flags)
                .dma_open(path)
                .await
                .map_err(io::Error::from)
        };
        let file = open(0).await?;
        let durable = match self.sync {
            LogSync::Dsync => Some(open(libc::O_DSYNC).await?),
            LogSync::Fdatasync => None,
        };
        Ok(Rc::new(DmaSegment { file, durable }))
    }

    /// Off the shard: on the blocking pool the file is opened, unlinked, then cut to nothing through
    /// that descriptor, which frees its blocks there (a 1 GiB segment written with O_DIRECT takes
    /// ~200 ms to free on ext4); the shard's own descriptor, closed later, has nothing left to free.
    /// RocketMQ's 04:00 deletion stall is what freeing on the serving thread looks like. Unlinking
    /// first means a crash never leaves a named segment cut short (the journal commits the unlink
    /// before the truncation), which recovery would take for a log that ends early.
    async fn remove(&self, path: &Path) -> io::Result<()> {
        let path = path.to_path_buf();
        crate::rt::blocking(move || {
            let file = std::fs::OpenOptions::new().write(true).open(&path)?;
            std::fs::remove_file(&path)?;
            file.set_len(0)
        })
        .await
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        super::files::list_dir(dir)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn files(&self) -> super::files::SharedFiles {
        super::files::OsFiles::shared()
    }

    async fn read_small_at(&self, path: &Path, pos: u64, len: usize) -> io::Result<Vec<u8>> {
        use super::files::Files;
        let path = path.to_path_buf();
        crate::rt::blocking(move || super::files::OsFiles.read_at(&path, pos, len)).await
    }
}

/// Gives a new or empty file one written, synced block before glommio opens it. glommio decides once
/// per device whether to use its I/O-polling ring by reading the first block of the first file it
/// opens there; an empty file answers that read without touching the device, glommio wrongly concludes
/// polling works, and every later read on the device fails with EOPNOTSUPP.
fn ensure_allocated_block(path: &Path) -> io::Result<()> {
    use std::io::Write;
    let needs = std::fs::metadata(path).map(|m| m.len() < BLOCK_BYTES).unwrap_or(true);
    if needs {
        let mut f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
        if f.metadata()?.len() == 0 {
            f.write_all(&[0u8; BLOCK_BYTES as usize])?;
            f.sync_all()?;
        }
    }
    Ok(())
}

/// Path of a log segment: its start offset as 20 zero-padded digits.
pub fn segment_path(dir: &Path, start: u64) -> PathBuf {
    dir.join(format!("{start:020}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The group commit's write reaches the kernel while its task still runs: before, it sat in
    /// glommio's submission queue until the executor next polled its rings (after up to a task
    /// quota of request handling).
    #[test]
    fn a_log_write_is_submitted_before_its_task_gives_the_executor_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("segment");
        glommio::LocalExecutorBuilder::default().make().expect("executor").run(async move {
            let disk = DmaDisk { sync: LogSync::Dsync };
            let file = disk.open(&path).await.unwrap();
            let data = vec![0x5au8; BLOCK_BYTES as usize];
            let mut write = std::pin::pin!(file.write_at(&data, BLOCK_BYTES));
            assert!(
                futures_lite::future::poll_once(&mut write).await.is_none(),
                "an O_DIRECT write waits for the device"
            );
            // Spin without an await: only a write already in the kernel can land meanwhile.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            let landed = loop {
                let on_disk = std::fs::read(&path).unwrap();
                if on_disk.get(BLOCK_BYTES as usize..2 * BLOCK_BYTES as usize) == Some(&data[..]) {
                    break true;
                }
                if std::time::Instant::now() > deadline {
                    break false;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            };
            assert!(landed, "the write was not submitted until the task yielded");
            write.await.unwrap();
        });
    }
}
