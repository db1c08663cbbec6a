//! The whole key index of one shard's store: the in-memory tier (`KeyIndex`), the active file it is
//! persisted to, and the sealed hash files (`sealed.rs`) behind it. Lives on the shard that owns the
//! store; the checkpoint job (`IndexJob`) does its file work off the shard.
//!
//! Crash safety rests on the checkpoint's manifest: `index_base` (number of the active file's first
//! entry, which names it), `index_entries`/`index_crc` (its length and CRC) and `index_sealed_from`
//! (the first entry of the oldest sealed file still needed). The sealed files must cover
//! `[index_sealed_from, index_base)` without a gap. A seal writes the sealed file and the new active
//! file (each atomically) before the checkpoint that names them; the old active file and sealed files
//! retention let go are removed only after it. A crash anywhere leaves either the old manifest with
//! its files (new ones are leftovers, removed at start) or the new one with its files. Anything that
//! does not verify sends the store to its rebuild-from-the-log path (`derived.rs`).

use super::sealed::{self, SealedFile};
use super::{IndexEntry, KeyIndex, key_hash};
use crate::store::files::{Files, create_dir_durable, write_atomic};
use std::path::{Path, PathBuf};

/// Default entries per sealed file (`index_seal_entries`): 1 Mi keys make a 28 MiB file, and the
/// in-memory tier holds at most about this many entries (~40 MiB) — the index's share of a shard's
/// memory, whatever the backlog.
pub const SEAL_ENTRIES: u64 = 1 << 20;

/// The active file of entries numbered from `base` (`keys` for 0, as stores before sealing named it).
pub fn active_path(dir: &Path, base: u64) -> PathBuf {
    if base == 0 { dir.join("keys") } else { dir.join(format!("keys-{base:020}")) }
}

/// What the checkpoint says of the index's files (its `index_*` fields).
#[derive(Debug, Clone, Copy, Default)]
pub struct IndexManifest {
    pub base: u64,
    pub sealed_from: u64,
    pub entries: u64,
    pub crc: u32,
}

pub struct IndexSet {
    dir: PathBuf,
    seal_entries: u64,
    memory: KeyIndex,
    /// Number of the active file's first entry, its length in entries and running CRC.
    base: u64,
    active_entries: u64,
    hasher: crc32fast::Hasher,
    /// Oldest first; contiguous, ending at `base`.
    sealed: Vec<SealedFile>,
    /// Sealed files retention let go, removed after the next checkpoint no longer names them.
    expired: Vec<PathBuf>,
    damaged: u64,
}

/// The index's part of a checkpoint job (plain data, runs off the shard).
pub struct IndexJob {
    active_path: PathBuf,
    /// Byte position of `bytes` in the active file; with a seal, `bytes` is the whole new file.
    at: u64,
    bytes: Vec<u8>,
    /// Sealed files to write: path, range first and end, entries.
    seals: Vec<(PathBuf, u64, u64, Vec<IndexEntry>)>,
    /// Removed once the checkpoint is written (an old active file, expired sealed files).
    remove: Vec<PathBuf>,
    hasher: crc32fast::Hasher,
    /// Entries taken from the in-memory tier's unpersisted ones (given back if the job fails).
    taken: u64,
    pub base: u64,
    pub entries: u64,
    pub sealed_from: u64,
}

impl IndexJob {
    pub fn crc(&self) -> u32 {
        self.hasher.clone().finalize()
    }

    /// Writes the sealed file and the active file's new entries, durably.
    pub fn write(&self, files: &dyn Files) -> std::io::Result<()> {
        let Some(dir) = self.active_path.parent() else { return Ok(()) };
        if self.seals.is_empty() && self.bytes.is_empty() {
            return Ok(());
        }
        create_dir_durable(files, dir)?;
        if !self.seals.is_empty() {
            for (path, first, end, entries) in &self.seals {
                write_atomic(files, path, &sealed::build(*first, *end, entries))?;
            }
            return write_atomic(files, &self.active_path, &self.bytes);
        }
        let fresh = !files.exists(&self.active_path);
        files.write_at(&self.active_path, self.at, &self.bytes)?;
        files.set_len(&self.active_path, self.at + self.bytes.len() as u64)?;
        files.sync(&self.active_path)?;
        if fresh {
            files.sync_dir(dir)?;
        }
        Ok(())
    }

    /// After the checkpoint naming the new files is durable: removes what it no longer names. A file
    /// left behind by a failure here is a leftover the next start removes.
    pub fn clean_up(&self, files: &dyn Files) {
        crate::store::files::remove_unneeded(files, &self.remove);
    }
}

impl IndexSet {
    pub fn new(dir: PathBuf, seal_entries: u64) -> IndexSet {
        IndexSet {
            dir,
            seal_entries: seal_entries.clamp(1, 1 << 30),
            memory: KeyIndex::default(),
            base: 0,
            active_entries: 0,
            hasher: crc32fast::Hasher::new(),
            sealed: Vec::new(),
            expired: Vec::new(),
            damaged: 0,
        }
    }

    /// Opens the index files the checkpoint names: sealed headers verified and contiguous, the
    /// active file loaded (entries at or above `log_min`, below `limit`). Leftovers of an interrupted
    /// seal or expiry are removed. An error means the caller rebuilds from the log.
    pub fn load(
        files: &dyn Files,
        dir: PathBuf,
        seal_entries: u64,
        cp: IndexManifest,
        log_min: u64,
        limit: u64,
    ) -> Result<IndexSet, String> {
        let mut set = IndexSet::new(dir, seal_entries);
        let active = active_path(&set.dir, cp.base);
        for name in files.list(&set.dir).map_err(|e| format!("{}: {e}", set.dir.display()))? {
            let path = set.dir.join(&name);
            match sealed::parse_name(&name) {
                Some(first) if first >= cp.sealed_from && first < cp.base => {
                    let f = SealedFile::open(files, &path).map_err(|e| e.to_string())?;
                    if f.header.range_first != first {
                        return Err(format!(
                            "{}: its header says it starts at {}",
                            path.display(),
                            f.header.range_first
                        ));
                    }
                    set.sealed.push(f);
                }
                _ if path == active => {}
                _ if name.starts_with("keys") || name.ends_with(".idx") || name.ends_with(".tmp") => {
                    tracing::info!(file = %path.display(), "removing an index file the checkpoint does not name");
                    let _ = files.remove_file(&path);
                }
                _ => {}
            }
        }
        let mut at = cp.sealed_from;
        for f in &set.sealed {
            if f.header.range_first != at {
                return Err(format!("sealed index files miss the entries from {at} to {}", f.header.range_first));
            }
            at = f.header.range_end;
        }
        if at != cp.base {
            return Err(format!(
                "sealed index files end at entry {at}, the checkpoint's active file starts at {}",
                cp.base
            ));
        }
        let (memory, hasher) = KeyIndex::load(files, &active, log_min, limit, (cp.entries, cp.crc), cp.base)
            .map_err(|e| format!("{}: {e}", active.display()))?;
        set.memory = memory;
        set.hasher = hasher;
        set.base = cp.base;
        set.active_entries = cp.entries;
        set.expire(log_min);
        Ok(set)
    }

    pub fn add(&mut self, topic: &str, key: &str, physical_offset: u64, store_timestamp_ms: i64) {
        self.memory.add(topic, key, physical_offset, store_timestamp_ms);
    }

    /// Candidate offsets for `topic#key` stored within `[begin_ms, end_ms]`, newest first, at most
    /// `max`: the in-memory tier, then sealed files newest first (a few verified reads each). A
    /// sealed file found damaged is dropped from lookups and deleted, so the next start finds the
    /// gap and rebuilds the index from the log.
    pub fn lookup(
        &mut self,
        files: &dyn Files,
        topic: &str,
        key: &str,
        begin_ms: i64,
        end_ms: i64,
        max: usize,
    ) -> Vec<u64> {
        let mut out = self.memory.lookup(topic, key, begin_ms, end_ms, max);
        let hash = key_hash(topic, key);
        for f in self.sealed.iter_mut().rev() {
            if out.len() >= max {
                break;
            }
            let before = out.len();
            if let Err(e) = f.lookup(files, hash, (begin_ms, end_ms), max, &mut out) {
                tracing::error!(file = %f.path.display(), error = %e,
                    "sealed index file is damaged: dropped; the next start rebuilds the index from the commit log");
                out.truncate(before);
                // Kept in the list (its range stays owed in the manifest), its file deleted.
                f.damaged = true;
                let _ = files.remove_file(&f.path);
                self.damaged += 1;
            }
        }
        out
    }

    /// Builds the index's part of a checkpoint up to `limit` (the durable log end): the new entries
    /// for the active file, and a seal of every complete run of `seal_entries` it holds.
    pub fn job(&mut self, limit: u64) -> IndexJob {
        // Retention drops only checkpointed entries and one job runs at a time, so memory's count of
        // persisted entries is where the files end.
        debug_assert_eq!(self.memory.persisted(), self.base + self.active_entries, "key index numbering");
        let new = self.memory.take_persistable(limit);
        let taken = (new.len() / super::INDEX_ENTRY_BYTES) as u64;
        let persisted = self.base + self.active_entries + taken;
        let mut remove = self.expired.clone();
        let sealed_from = self.sealed.first().map_or(self.base, |f| f.header.range_first);
        if persisted - self.base < self.seal_entries {
            let mut hasher = self.hasher.clone();
            hasher.update(&new);
            return IndexJob {
                active_path: active_path(&self.dir, self.base),
                at: self.active_entries * super::INDEX_ENTRY_BYTES as u64,
                bytes: new,
                seals: Vec::new(),
                remove,
                hasher,
                taken,
                base: self.base,
                entries: self.active_entries + taken,
                sealed_from,
            };
        }
        // Entries retention dropped from memory are below the retained log: a sealed file covers
        // their numbers without holding them.
        let mut new_base = self.base;
        let mut seals = Vec::new();
        // Every complete run is sealed at once, so the new active file (rewritten whole) holds fewer
        // than `seal_entries`: capping the seals per job let keys arriving faster than the cap pile
        // up in memory and in an active file rewritten at every seal.
        while persisted - new_base >= self.seal_entries {
            let end = (new_base + self.seal_entries).max(self.memory.first()).min(persisted);
            seals.push((sealed::path(&self.dir, new_base), new_base, end, self.memory.entries_between(new_base, end)));
            new_base = end;
        }
        let bytes = self.memory.encode_between(new_base, persisted);
        remove.push(active_path(&self.dir, self.base));
        IndexJob {
            active_path: active_path(&self.dir, new_base),
            at: 0,
            hasher: {
                let mut h = crc32fast::Hasher::new();
                h.update(&bytes);
                h
            },
            bytes,
            seals,
            remove,
            taken,
            base: new_base,
            entries: persisted - new_base,
            sealed_from,
        }
    }

    /// Records the outcome of a job (its checkpoint written or not).
    pub fn finished(&mut self, files: &dyn Files, job: &IndexJob, ok: bool) {
        if !ok {
            self.memory.restore_unpersisted(job.taken);
            return;
        }
        self.expired.retain(|p| !job.remove.contains(p));
        self.hasher = job.hasher.clone();
        self.active_entries = job.entries;
        if !job.seals.is_empty() {
            for (path, first, end, entries) in &job.seals {
                match SealedFile::open(files, path) {
                    Ok(f) => self.sealed.push(f),
                    Err(e) => {
                        // Written and synced a moment ago: kept as damaged (its range stays owed),
                        // deleted, and the next start finds the gap and rebuilds.
                        tracing::error!(error = %e, "a sealed index file just written does not read back");
                        let header = sealed::header_of(*first, *end, entries);
                        self.sealed.push(SealedFile { path: path.clone(), header, damaged: true });
                        let _ = files.remove_file(path);
                        self.damaged += 1;
                    }
                }
            }
            self.memory.forget_before(job.base);
            self.base = job.base;
        }
    }

    /// Retention: drops entries below `log_min` from memory and lets go of sealed files that hold
    /// nothing at or above it (removed after the next checkpoint).
    pub fn expire(&mut self, log_min: u64) {
        self.memory.trim_below(log_min);
        let gone = self.sealed.iter().take_while(|f| f.header.count == 0 || f.header.max_phys < log_min).count();
        let gone: Vec<SealedFile> = self.sealed.drain(..gone).collect();
        self.expired.extend(gone.into_iter().map(|f| f.path));
    }

    /// Whether a checkpoint is owed even with no new log data: expired files to remove, or entries
    /// to seal.
    pub fn owes_checkpoint(&self) -> bool {
        !self.expired.is_empty() || self.active_entries >= self.seal_entries
    }

    /// Drops every index file and entry before a rebuild from the log.
    pub fn forget(&mut self, files: &dyn Files) {
        let _ = files.remove_dir_all(&self.dir);
        *self = IndexSet::new(self.dir.clone(), self.seal_entries);
    }

    /// Entries held in memory.
    pub fn entries_in_memory(&self) -> usize {
        self.memory.len()
    }

    pub fn sealed_files(&self) -> usize {
        self.sealed.len()
    }

    /// Sealed files found damaged since start.
    pub fn damaged_files(&self) -> u64 {
        self.damaged
    }
}
