//! A fault-injecting in-memory disk for storage tests: it keeps, per file, the durable image (what a
//! power cut would leave) and the writes issued since the last sync, and can
//! - `crash`: drop unsynced writes, keeping a random prefix of them and tearing the last one at a
//!   512-byte sector boundary (what a real device may do);
//! - `flip_bit`: corrupt one durable byte;
//! - `fail_next_sync` / `fail_next_write`: make the next fdatasync or write return an error;
//! - `fail_reads_past`: make every log read reaching past a file position return an error.
//!
//! [`FakeDisk::with_durable_writes`] models `LogSync::Dsync`: a log write (`write_buffer_at`) is
//! durable once it returns `Ok`, and an injected sync failure fails that write instead.
//!
//! Its [`FakeFiles`] (`Disk::files`) hold the store's other files with the same faults; `crash`
//! crashes both. Single-threaded (`Rc`), like the shard that owns a store.

use super::fake_files::FakeFiles;
use super::io::{Disk, DiskFile};
use bytes::Bytes;
use rand::{RngExt, SeedableRng, rngs::StdRng};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

const SECTOR_BYTES: usize = 512;

#[derive(Default)]
struct FileState {
    durable: Vec<u8>,
    current: Vec<u8>,
    pending: Vec<(u64, Vec<u8>)>,
}

#[derive(Default)]
struct Faults {
    fail_next_sync: Cell<bool>,
    fail_next_write: Cell<bool>,
    syncs: Cell<u64>,
    reads: Cell<u64>,
    durable_writes: Cell<bool>,
    fail_reads_past: Cell<Option<u64>>,
}

/// Shared handle to the fake disk; clones see the same files.
#[derive(Clone, Default)]
pub struct FakeDisk {
    files: Rc<RefCell<BTreeMap<PathBuf, Rc<RefCell<FileState>>>>>,
    faults: Rc<Faults>,
    /// The small files beside the log (`Disk::files`); crashed together with the log.
    small: FakeFiles,
}

/// An open file on the fake disk.
pub struct FakeFile {
    state: Rc<RefCell<FileState>>,
    faults: Rc<Faults>,
}

fn write_into(buf: &mut Vec<u8>, pos: usize, data: &[u8]) {
    if buf.len() < pos + data.len() {
        buf.resize(pos + data.len(), 0);
    }
    buf[pos..pos + data.len()].copy_from_slice(data);
}

impl DiskFile for FakeFile {
    type WriteBuf = Vec<u8>;

    fn write_buffer(&self, data: &[u8], len: usize) -> Vec<u8> {
        let mut buf = data.to_vec();
        buf.resize(len, 0);
        buf
    }

    async fn write_buffer_at(&self, buf: Vec<u8>, pos: u64) -> io::Result<()> {
        if !self.writes_are_durable() {
            return self.write_at(&buf, pos).await;
        }
        // An O_DSYNC write: issued like any write (a failed flush leaves it unsynced, for a crash
        // to keep or drop), durable once it returns Ok.
        let flush_fails = self.faults.fail_next_sync.replace(false);
        self.write_at(&buf, pos).await?;
        if flush_fails {
            return Err(io::Error::other("injected O_DSYNC write failure"));
        }
        let mut s = self.state.borrow_mut();
        write_into(&mut s.durable, pos as usize, &buf);
        s.pending.retain(|(p, d)| !(*p == pos && d.len() == buf.len()));
        Ok(())
    }

    fn writes_are_durable(&self) -> bool {
        self.faults.durable_writes.get()
    }

    async fn write_at(&self, data: &[u8], pos: u64) -> io::Result<()> {
        if self.faults.fail_next_write.replace(false) {
            return Err(io::Error::other("injected write failure"));
        }
        let mut s = self.state.borrow_mut();
        write_into(&mut s.current, pos as usize, data);
        s.pending.push((pos, data.to_vec()));
        Ok(())
    }

    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        if self.faults.fail_reads_past.get().is_some_and(|p| pos + len as u64 > p) {
            return Err(io::Error::other("injected read failure"));
        }
        self.faults.reads.set(self.faults.reads.get() + 1);
        // A device read always completes later: other tasks run meanwhile, as they would.
        futures_lite::future::yield_now().await;
        let s = self.state.borrow();
        let start = (pos as usize).min(s.current.len());
        let end = (pos as usize + len).min(s.current.len());
        Ok(Bytes::copy_from_slice(&s.current[start..end]))
    }

    async fn sync(&self) -> io::Result<()> {
        if self.faults.fail_next_sync.replace(false) {
            return Err(io::Error::other("injected fdatasync failure"));
        }
        self.faults.syncs.set(self.faults.syncs.get() + 1);
        let mut s = self.state.borrow_mut();
        s.durable = s.current.clone();
        s.pending.clear();
        Ok(())
    }

    async fn size(&self) -> io::Result<u64> {
        Ok(self.state.borrow().current.len() as u64)
    }
}

impl Disk for FakeDisk {
    type File = FakeFile;

    async fn open(&self, path: &Path) -> io::Result<Rc<FakeFile>> {
        let state = self.files.borrow_mut().entry(path.to_path_buf()).or_default().clone();
        Ok(Rc::new(FakeFile { state, faults: self.faults.clone() }))
    }

    async fn remove(&self, path: &Path) -> io::Result<()> {
        self.files
            .borrow_mut()
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such fake file"))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let files = self.files.borrow();
        let mut names: Vec<String> = files
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        names.sort();
        Ok(names)
    }

    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }

    fn files(&self) -> super::files::SharedFiles {
        std::sync::Arc::new(self.small.clone())
    }
}

impl FakeDisk {
    pub fn new() -> FakeDisk {
        FakeDisk::default()
    }

    /// A disk whose log writes are durable when they complete (`LogSync::Dsync`).
    pub fn with_durable_writes() -> FakeDisk {
        let d = FakeDisk::default();
        d.faults.durable_writes.set(true);
        d
    }

    /// Simulates a power cut: each file keeps its durable image plus a random prefix of its unsynced
    /// writes, the last of which may be torn at a sector boundary.
    pub fn crash(&self, seed: u64) {
        self.small.crash(seed ^ 0x5eed);
        let mut rng = StdRng::seed_from_u64(seed);
        for state in self.files.borrow().values() {
            let mut s = state.borrow_mut();
            let mut image = s.durable.clone();
            let pending = std::mem::take(&mut s.pending);
            let keep = rng.random_range(0..=pending.len());
            for (i, (pos, data)) in pending.iter().take(keep).enumerate() {
                let torn = i + 1 == keep && rng.random_bool(0.5);
                let len =
                    if torn { rng.random_range(0..=data.len() / SECTOR_BYTES) * SECTOR_BYTES } else { data.len() };
                write_into(&mut image, *pos as usize, &data[..len]);
            }
            s.current = image.clone();
            s.durable = image;
        }
    }

    /// Flips one bit of durable data in the file at `path`; returns false when the position is outside it.
    pub fn flip_bit(&self, path: &Path, pos: u64, bit: u8) -> bool {
        let files = self.files.borrow();
        let Some(state) = files.get(path) else {
            return false;
        };
        let mut s = state.borrow_mut();
        let pos = pos as usize;
        if pos >= s.durable.len() || pos >= s.current.len() {
            return false;
        }
        s.durable[pos] ^= 1 << (bit % 8);
        s.current[pos] ^= 1 << (bit % 8);
        true
    }

    /// The small files beside the log (consume queues, index, checkpoint, config), to damage them.
    pub fn small_files(&self) -> &FakeFiles {
        &self.small
    }

    /// Successful syncs so far, of every log file.
    pub fn syncs(&self) -> u64 {
        self.faults.syncs.get()
    }

    /// Reads of log files so far.
    pub fn reads(&self) -> u64 {
        self.faults.reads.get()
    }

    pub fn fail_next_sync(&self) {
        self.faults.fail_next_sync.set(true);
    }

    /// While `Some(pos)`, a read of any log file that reaches past `pos` fails (EIO).
    pub fn fail_reads_past(&self, pos: Option<u64>) {
        self.faults.fail_reads_past.set(pos);
    }

    pub fn fail_next_write(&self) {
        self.faults.fail_next_write.set(true);
    }

    /// Paths of all files, sorted.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.files.borrow().keys().cloned().collect()
    }

    /// Durable length of a file.
    pub fn len_of(&self, path: &Path) -> u64 {
        self.files.borrow().get(path).map(|s| s.borrow().durable.len() as u64).unwrap_or(0)
    }
}
