//! A fault-injecting in-memory [`Files`] for storage tests, the companion of `FakeDisk` (which hands
//! it out): per file the durable image and the changes since the last `sync`, and per name whether
//! it is durable (synced in its directory). `crash` keeps, for each file whose name is durable, its
//! durable image plus a random prefix of its unsynced changes, the last write possibly torn at a
//! 512-byte sector boundary; names created, renamed or removed since their directory's last sync
//! revert. `flip_bit`, `put_durable` and `delete` damage files at rest.
//!
//! Simplification: `remove_dir_all` is durable at once (a removed tree never comes back). Thread-safe
//! (`Mutex`), because checkpoint jobs and config writes run off the shard's thread.

use super::files::Files;
use rand::{RngExt, SeedableRng, rngs::StdRng};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

const SECTOR_BYTES: usize = 512;

enum Change {
    Write(u64, Vec<u8>),
    SetLen(u64),
}

#[derive(Default)]
struct Inode {
    durable: Vec<u8>,
    current: Vec<u8>,
    pending: Vec<Change>,
}

#[derive(Default)]
struct State {
    inodes: HashMap<u64, Inode>,
    names: BTreeMap<PathBuf, u64>,
    durable_names: BTreeMap<PathBuf, u64>,
    dirs: BTreeSet<PathBuf>,
    next_inode: u64,
    fail_next_sync: bool,
    fail_next_write: bool,
    /// Syncs that may still succeed before every later one fails (a dying process), until `crash`.
    sync_budget: Option<u64>,
    syncs: u64,
}

/// Shared handle; clones see the same files.
#[derive(Clone, Default)]
pub struct FakeFiles {
    state: Arc<Mutex<State>>,
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{}: no such fake file", path.display()))
}

fn apply(buf: &mut Vec<u8>, change: &Change) {
    match change {
        Change::Write(pos, data) => {
            let pos = *pos as usize;
            if buf.len() < pos + data.len() {
                buf.resize(pos + data.len(), 0);
            }
            buf[pos..pos + data.len()].copy_from_slice(data);
        }
        Change::SetLen(len) => buf.resize(*len as usize, 0),
    }
}

impl State {
    fn inode(&mut self, path: &Path) -> io::Result<&mut Inode> {
        let id = *self.names.get(path).ok_or_else(|| not_found(path))?;
        self.inodes.get_mut(&id).ok_or_else(|| not_found(path))
    }

    /// Whether the next file or directory sync fails (and uses up the injected faults).
    fn sync_fails(&mut self) -> bool {
        if std::mem::take(&mut self.fail_next_sync) {
            return true;
        }
        match self.sync_budget {
            Some(0) => true,
            Some(n) => {
                self.sync_budget = Some(n - 1);
                false
            }
            None => false,
        }
    }

    fn is_dir(&self, path: &Path) -> bool {
        self.dirs.contains(path) || self.names.keys().any(|p| p.starts_with(path) && p != path)
    }
}

impl FakeFiles {
    pub fn new() -> FakeFiles {
        FakeFiles::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Simulates a power cut (see the module doc); `seed` makes it reproducible.
    pub fn crash(&self, seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut s = self.lock();
        let names = s.durable_names.clone();
        let live: BTreeSet<u64> = names.values().copied().collect();
        s.inodes.retain(|id, _| live.contains(id));
        for inode in s.inodes.values_mut() {
            let mut image = std::mem::take(&mut inode.durable);
            let pending = std::mem::take(&mut inode.pending);
            let keep = rng.random_range(0..=pending.len());
            for (i, change) in pending.into_iter().take(keep).enumerate() {
                match change {
                    Change::Write(pos, data) if i + 1 == keep && rng.random_bool(0.5) => {
                        let len = rng.random_range(0..=data.len() / SECTOR_BYTES) * SECTOR_BYTES;
                        apply(&mut image, &Change::Write(pos, data[..len].to_vec()));
                    }
                    c => apply(&mut image, &c),
                }
            }
            inode.current = image.clone();
            inode.durable = image;
        }
        s.names = names;
        s.sync_budget = None;
    }

    /// Flips one bit of a file's durable bytes; false when `pos` is outside it.
    pub fn flip_bit(&self, path: &Path, pos: u64, bit: u8) -> bool {
        let mut s = self.lock();
        let Ok(inode) = s.inode(path) else { return false };
        let pos = pos as usize;
        if pos >= inode.durable.len() || pos >= inode.current.len() {
            return false;
        }
        inode.durable[pos] ^= 1 << (bit % 8);
        inode.current[pos] ^= 1 << (bit % 8);
        true
    }

    /// Replaces (or creates) a file with `data`, durably, name included.
    pub fn put_durable(&self, path: &Path, data: &[u8]) {
        let mut s = self.lock();
        let id = s.next_inode;
        s.next_inode += 1;
        s.inodes.insert(id, Inode { durable: data.to_vec(), current: data.to_vec(), pending: Vec::new() });
        s.names.insert(path.to_path_buf(), id);
        s.durable_names.insert(path.to_path_buf(), id);
    }

    /// Removes a file durably.
    pub fn delete(&self, path: &Path) {
        let mut s = self.lock();
        s.names.remove(path);
        s.durable_names.remove(path);
    }

    /// Current (not necessarily durable) names of all files, sorted.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.lock().names.keys().cloned().collect()
    }

    /// Successful file and directory syncs so far.
    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    pub fn fail_next_sync(&self) {
        self.lock().fail_next_sync = true;
    }

    pub fn fail_next_write(&self) {
        self.lock().fail_next_write = true;
    }

    /// Removes injected faults that have not fired.
    pub fn clear_faults(&self) {
        let mut s = self.lock();
        (s.fail_next_sync, s.fail_next_write, s.sync_budget) = (false, false, None);
    }

    /// Lets `n` more syncs succeed and fails every later one until the next `crash`.
    pub fn fail_syncs_after(&self, n: u64) {
        self.lock().sync_budget = Some(n);
    }
}

impl Files for FakeFiles {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        Ok(self.lock().inode(path)?.current.clone())
    }

    fn read_at(&self, path: &Path, pos: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut s = self.lock();
        let data = &s.inode(path)?.current;
        let from = (pos as usize).min(data.len());
        Ok(data[from..(from + len).min(data.len())].to_vec())
    }

    fn write_at(&self, path: &Path, pos: u64, data: &[u8]) -> io::Result<()> {
        let mut s = self.lock();
        if std::mem::take(&mut s.fail_next_write) {
            return Err(io::Error::other("injected write failure"));
        }
        if !s.names.contains_key(path) {
            let id = s.next_inode;
            s.next_inode += 1;
            s.inodes.insert(id, Inode::default());
            s.names.insert(path.to_path_buf(), id);
        }
        let inode = s.inode(path)?;
        let change = Change::Write(pos, data.to_vec());
        apply(&mut inode.current, &change);
        inode.pending.push(change);
        Ok(())
    }

    fn set_len(&self, path: &Path, len: u64) -> io::Result<()> {
        let inode = &mut *self.lock();
        let inode = inode.inode(path)?;
        let change = Change::SetLen(len);
        apply(&mut inode.current, &change);
        inode.pending.push(change);
        Ok(())
    }

    fn sync(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        if s.sync_fails() {
            return Err(io::Error::other("injected fdatasync failure"));
        }
        s.syncs += 1;
        let inode = s.inode(path)?;
        inode.durable = inode.current.clone();
        inode.pending.clear();
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.lock();
        if s.sync_fails() {
            return Err(io::Error::other("injected directory fsync failure"));
        }
        s.syncs += 1;
        let State { names, durable_names, .. } = &mut *s;
        durable_names.retain(|p, _| p.parent() != Some(dir) || names.contains_key(p));
        for (p, id) in names.iter().filter(|(p, _)| p.parent() == Some(dir)) {
            durable_names.insert(p.clone(), *id);
        }
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.lock();
        let id = s.names.remove(from).ok_or_else(|| not_found(from))?;
        s.names.insert(to.to_path_buf(), id);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.lock().names.remove(path).map(|_| ()).ok_or_else(|| not_found(path))
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.names.retain(|p, _| !p.starts_with(dir));
        s.durable_names.retain(|p, _| !p.starts_with(dir));
        s.dirs.retain(|p| !p.starts_with(dir));
        Ok(())
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.lock().dirs.insert(dir.to_path_buf());
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let s = self.lock();
        let children = s.names.keys().chain(s.dirs.iter()).filter_map(|p| {
            let rest = p.strip_prefix(dir).ok()?;
            rest.components().next().map(|c| c.as_os_str().to_string_lossy().into_owned())
        });
        Ok(children.collect::<BTreeSet<_>>().into_iter().collect())
    }

    fn exists(&self, path: &Path) -> bool {
        let s = self.lock();
        s.names.contains_key(path) || s.is_dir(path)
    }
}

#[cfg(test)]
mod tests {
    use super::super::files::write_atomic;
    use super::*;

    #[test]
    fn unsynced_writes_and_names_are_lost_in_a_crash() {
        let f = FakeFiles::new();
        let (dir, a) = (Path::new("/d"), Path::new("/d/a"));
        f.write_at(a, 0, b"one").unwrap();
        f.sync(a).unwrap();
        f.crash(1);
        assert!(!f.exists(a), "a name never synced in its directory does not survive");
        f.write_at(a, 0, b"one").unwrap();
        f.sync(a).unwrap();
        f.sync_dir(dir).unwrap();
        f.write_at(a, 0, b"two").unwrap();
        f.crash(2);
        let after = f.read(a).unwrap();
        assert!(after == b"one" || after == b"two", "{after:?}");
        assert_eq!(f.list(Path::new("/")).unwrap(), ["d"]);
        assert_eq!(f.list(dir).unwrap(), ["a"]);
    }

    #[test]
    fn atomic_replace_leaves_old_or_new_whole_at_every_crash_point() {
        for seed in 0..64 {
            let f = FakeFiles::new();
            let p = Path::new("/c/file");
            write_atomic(&f, p, &[1u8; 3000]).unwrap();
            let stop = seed % 4; // crash after 0..3 of the replacement's steps
            let tmp = p.with_extension("tmp");
            f.write_at(&tmp, 0, &[2u8; 3000]).unwrap();
            if stop > 0 {
                f.sync(&tmp).unwrap();
            }
            if stop > 1 {
                f.rename(&tmp, p).unwrap();
            }
            if stop > 2 {
                f.sync_dir(Path::new("/c")).unwrap();
            }
            f.crash(seed);
            let got = f.read(p).unwrap();
            assert!(got == [1u8; 3000] || (stop > 2 && got == [2u8; 3000]), "seed {seed}: torn replacement");
        }
    }
}
