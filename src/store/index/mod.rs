//! The key index: `topic#key` (each KEYS token and the UNIQ_KEY) → physical offsets, for QUERY_MESSAGE
//! and lookups by unique key. Owned by one shard.
//!
//! Two tiers. The newest entries (at most `index_seal_entries` plus what arrives between two
//! checkpoints) are in memory here (`KeyIndex`), shaped like RocketMQ's IndexFile but flat: entries
//! in log order (`[hash, link to the previous entry with that hash, physical offset, store ms]`,
//! 24 bytes, no allocation per key) and a slot table from hash to its newest entry (~15 bytes per
//! distinct hash), about 40 bytes per key. Every entry has a global number that never changes (the
//! count of entries indexed before it), which names the files that hold it on disk.
//!
//! On disk (`set.rs`): the entries not yet sealed are appended to the active file `index/keys` (or
//! `index/keys-<number of its first entry>`), 20-byte entries `[4 hash][8 physical offset][8 store
//! ms]`, written by the checkpoint job and loaded up to the checkpoint at start. Every
//! `index_seal_entries` entries the checkpoint job seals them into a hash file (`sealed.rs`) that is
//! read on demand, never loaded, and the in-memory tier forgets them: memory is independent of the
//! backlog. Hash collisions are resolved by the caller, which reads the record and compares the key;
//! entries whose record was deleted by retention are skipped at query time.

pub mod sealed;
pub mod set;

use std::collections::{HashMap, VecDeque};
use std::path::Path;

pub const INDEX_ENTRY_BYTES: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub hash: u32,
    pub physical_offset: u64,
    pub store_timestamp_ms: i64,
}

/// Hash of `topic#key` (RocketMQ uses |String.hashCode|; any stable hash works since files are ours).
pub fn key_hash(topic: &str, key: &str) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(topic.as_bytes());
    h.update(b"#");
    h.update(key.as_bytes());
    h.finalize()
}

/// One indexed key occurrence.
#[derive(Debug, Clone, Copy)]
struct Slot {
    hash: u32,
    /// How many entries back the previous entry with this hash is (0: none, or too far to link).
    prev_distance: u32,
    physical_offset: u64,
    store_timestamp_ms: i64,
}

impl Slot {
    fn entry(&self) -> IndexEntry {
        IndexEntry {
            hash: self.hash,
            physical_offset: self.physical_offset,
            store_timestamp_ms: self.store_timestamp_ms,
        }
    }
}

#[derive(Debug, Default)]
pub struct KeyIndex {
    /// Entries in log order; `entries[i]` has the global number `first + i`.
    entries: VecDeque<Slot>,
    first: u64,
    /// Hash → global number of its newest entry.
    newest: HashMap<u32, u64, foldhash::fast::RandomState>,
    /// Global number of the first entry the checkpoint job has not persisted.
    persisted: u64,
}

impl KeyIndex {
    pub fn add(&mut self, topic: &str, key: &str, physical_offset: u64, store_timestamp_ms: i64) {
        self.push(key_hash(topic, key), physical_offset, store_timestamp_ms);
    }

    fn push(&mut self, hash: u32, physical_offset: u64, store_timestamp_ms: i64) {
        let n = self.first + self.entries.len() as u64;
        let prev = self.newest.insert(hash, n).filter(|&p| p >= self.first);
        let prev_distance = prev.and_then(|p| u32::try_from(n - p).ok()).unwrap_or(0);
        self.entries.push_back(Slot { hash, prev_distance, physical_offset, store_timestamp_ms });
    }

    fn get(&self, n: u64) -> Option<&Slot> {
        n.checked_sub(self.first).and_then(|i| self.entries.get(i as usize))
    }

    /// Candidate offsets for `topic#key` stored within `[begin_ms, end_ms]`, newest first, at most `max`.
    pub fn lookup(&self, topic: &str, key: &str, begin_ms: i64, end_ms: i64, max: usize) -> Vec<u64> {
        let hash = key_hash(topic, key);
        let mut out = Vec::new();
        let mut at = self.newest.get(&hash).copied();
        while let Some(n) = at {
            let Some(e) = self.get(n).filter(|e| e.hash == hash) else { break };
            if out.len() >= max {
                break;
            }
            if e.store_timestamp_ms >= begin_ms && e.store_timestamp_ms <= end_ms {
                out.push(e.physical_offset);
            }
            at = (e.prev_distance > 0).then(|| n - e.prev_distance as u64);
        }
        out
    }

    /// Takes entries below `limit` (the durable log end) for persisting.
    pub fn take_persistable(&mut self, limit: u64) -> Vec<u8> {
        self.persisted = self.persisted.max(self.first);
        let from = (self.persisted - self.first) as usize;
        let todo = self.entries.range(from..).take_while(|e| e.physical_offset < limit);
        let mut out = Vec::with_capacity(todo.clone().count() * INDEX_ENTRY_BYTES);
        for e in todo {
            encode(&e.entry(), &mut out);
        }
        self.persisted += (out.len() / INDEX_ENTRY_BYTES) as u64;
        out
    }

    /// Marks the `n` entries a failed persist took as not persisted again.
    pub fn restore_unpersisted(&mut self, n: u64) {
        self.persisted = self.persisted.saturating_sub(n).max(self.first);
    }

    /// Global number of the first entry not yet persisted.
    pub fn persisted(&self) -> u64 {
        self.persisted.max(self.first)
    }

    /// Global number of the oldest entry held.
    pub fn first(&self) -> u64 {
        self.first
    }

    /// The entries numbered `[from, to)` that are held, in log order.
    pub fn entries_between(&self, from: u64, to: u64) -> Vec<IndexEntry> {
        let lo = from.max(self.first);
        let hi = to.min(self.first + self.entries.len() as u64).max(lo);
        self.entries.range((lo - self.first) as usize..(hi - self.first) as usize).map(Slot::entry).collect()
    }

    /// The entries numbered `[from, to)` in the 20-byte file form.
    pub fn encode_between(&self, from: u64, to: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity((to.saturating_sub(from) as usize) * INDEX_ENTRY_BYTES);
        for e in self.entries_between(from, to) {
            encode(&e, &mut out);
        }
        out
    }

    /// Forgets the entries numbered below `n` (they are in a sealed file now).
    pub fn forget_before(&mut self, n: u64) {
        let count = n.saturating_sub(self.first).min(self.entries.len() as u64);
        self.entries.drain(..count as usize);
        self.first += count;
        self.persisted = self.persisted.max(self.first);
        let first = self.first;
        self.newest.retain(|_, newest| *newest >= first);
    }

    /// Drops entries whose records were deleted (a prefix: entries are in log order).
    pub fn trim_below(&mut self, log_min: u64) {
        let n = self.entries.iter().take_while(|e| e.physical_offset < log_min).count();
        self.entries.drain(..n);
        self.first += n as u64;
        let first = self.first;
        self.newest.retain(|_, newest| *newest >= first);
    }

    /// Entries held in memory.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Loads the first `expect.0` entries of `path`, which must have CRC32 `expect.1` (the
    /// checkpoint's manifest) and point below `limit`; keeps those at or above `log_min` and cuts the
    /// file after them. Returns the index and the running CRC of the file. A file that is missing,
    /// shorter than the manifest, or fails its CRC is an `InvalidData` error: the caller rebuilds.
    pub fn load(
        files: &dyn super::files::Files,
        path: &Path,
        log_min: u64,
        limit: u64,
        expect: (u64, u32),
        base: u64,
    ) -> std::io::Result<(KeyIndex, crc32fast::Hasher)> {
        let invalid = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidData, why);
        let (entries, crc) = expect;
        let data = match super::files::read_optional(files, path)? {
            Some(d) => d,
            None if entries == 0 => Vec::new(),
            None => return Err(invalid(format!("missing; the checkpoint lists {entries} entries"))),
        };
        let len = entries as usize * INDEX_ENTRY_BYTES;
        if data.len() < len {
            return Err(invalid(format!("{} bytes, shorter than the checkpoint's {entries} entries", data.len())));
        }
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&data[..len]);
        if hasher.clone().finalize() != crc {
            return Err(invalid(format!("CRC of its {entries} entries does not match the checkpoint")));
        }
        let entries: Vec<IndexEntry> = data[..len].chunks_exact(INDEX_ENTRY_BYTES).map_while(decode).collect();
        let retained = entries.iter().position(|e| e.physical_offset >= log_min).unwrap_or(entries.len());
        let mut idx = KeyIndex { first: base + retained as u64, ..Default::default() };
        for e in entries {
            if e.physical_offset >= limit {
                return Err(invalid(format!("an entry points past the checkpoint ({})", e.physical_offset)));
            }
            if e.physical_offset >= log_min {
                idx.push(e.hash, e.physical_offset, e.store_timestamp_ms);
            }
        }
        idx.persisted = idx.first + idx.entries.len() as u64; // all of it is on disk already
        if data.len() > len {
            files.set_len(path, len as u64)?;
            files.sync(path)?;
        }
        Ok((idx, hasher))
    }
}

fn encode(e: &IndexEntry, out: &mut Vec<u8>) {
    out.extend_from_slice(&e.hash.to_be_bytes());
    out.extend_from_slice(&e.physical_offset.to_be_bytes());
    out.extend_from_slice(&e.store_timestamp_ms.to_be_bytes());
}

fn decode(b: &[u8]) -> Option<IndexEntry> {
    Some(IndexEntry {
        hash: u32::from_be_bytes(b.get(0..4)?.try_into().ok()?),
        physical_offset: u64::from_be_bytes(b.get(4..12)?.try_into().ok()?),
        store_timestamp_ms: i64::from_be_bytes(b.get(12..20)?.try_into().ok()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_respects_time_range_and_max() {
        let mut idx = KeyIndex::default();
        for i in 0..5u64 {
            idx.add("T", "k", i * 100, i as i64 * 10);
        }
        idx.add("T", "other", 999, 0);
        assert_eq!(idx.lookup("T", "k", 10, 30, 10), vec![300, 200, 100]);
        assert_eq!(idx.lookup("T", "k", 0, 100, 2), vec![400, 300]);
        assert!(idx.lookup("U", "k", 0, 100, 10).is_empty());
    }

    #[test]
    fn persist_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        let mut idx = KeyIndex::default();
        idx.add("T", "a", 10, 1);
        idx.add("T", "b", 20, 2);
        idx.add("T", "c", 30, 3);
        let bytes = idx.take_persistable(25);
        assert_eq!(bytes.len(), 40);
        std::fs::write(&path, [&bytes[..], &[7u8; 20][..]].concat()).unwrap(); // + a torn later append
        let first = (1, crc32fast::hash(&bytes[..20]));
        let (loaded, hasher) = KeyIndex::load(&crate::store::files::OsFiles, &path, 0, 15, first, 0).unwrap();
        assert_eq!(hasher.finalize(), first.1);
        assert_eq!(loaded.lookup("T", "a", 0, 9, 9), vec![10]);
        assert!(loaded.lookup("T", "b", 0, 9, 9).is_empty());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 20, "cut after the manifest's entries");
        let (mut again, _) = KeyIndex::load(&crate::store::files::OsFiles, &path, 0, 15, first, 0).unwrap();
        assert!(again.take_persistable(u64::MAX).is_empty(), "loaded entries are not persisted twice");
    }

    #[test]
    fn index_file_that_is_damaged_short_or_missing_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        let mut idx = KeyIndex::default();
        idx.add("T", "a", 10, 1);
        idx.add("T", "b", 20, 2);
        let bytes = idx.take_persistable(u64::MAX);
        let expect = (2, crc32fast::hash(&bytes));
        assert!(KeyIndex::load(&crate::store::files::OsFiles, &path, 0, 100, expect, 0).is_err(), "missing");
        assert!(
            KeyIndex::load(&crate::store::files::OsFiles, &path, 0, 100, (0, 0), 0).is_ok(),
            "missing and expected empty"
        );
        std::fs::write(&path, &bytes[..30]).unwrap();
        assert!(KeyIndex::load(&crate::store::files::OsFiles, &path, 0, 100, expect, 0).is_err(), "truncated");
        let mut flipped = bytes.clone();
        flipped[5] ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        assert!(KeyIndex::load(&crate::store::files::OsFiles, &path, 0, 100, expect, 0).is_err(), "flipped");
        std::fs::write(&path, &bytes).unwrap();
        assert!(
            KeyIndex::load(&crate::store::files::OsFiles, &path, 0, 15, expect, 0).is_err(),
            "points past the checkpoint"
        );
        assert_eq!(KeyIndex::load(&crate::store::files::OsFiles, &path, 0, 100, expect, 0).unwrap().0.len(), 2);
    }

    #[test]
    fn failed_persist_is_retried_and_trim_drops_a_prefix() {
        let mut idx = KeyIndex::default();
        for i in 0..10u64 {
            idx.add("T", if i % 2 == 0 { "even" } else { "odd" }, i * 10, i as i64);
        }
        let first = idx.take_persistable(55);
        assert_eq!(first.len(), 6 * INDEX_ENTRY_BYTES);
        idx.restore_unpersisted((first.len() / INDEX_ENTRY_BYTES) as u64);
        assert_eq!(idx.take_persistable(u64::MAX).len(), 10 * INDEX_ENTRY_BYTES, "the failed part comes again");
        assert_eq!(idx.lookup("T", "even", 0, 100, 10), vec![80, 60, 40, 20, 0]);
        idx.trim_below(45);
        assert_eq!(idx.len(), 5);
        assert_eq!(idx.lookup("T", "even", 0, 100, 10), vec![80, 60], "chains stop at the trimmed prefix");
        assert_eq!(idx.lookup("T", "odd", 0, 100, 10), vec![90, 70, 50]);
        idx.trim_below(1000);
        assert!(idx.is_empty() && idx.lookup("T", "odd", 0, 100, 10).is_empty());
        idx.add("T", "odd", 2000, 1);
        assert_eq!(idx.lookup("T", "odd", 0, 100, 10), vec![2000]);
    }

    #[test]
    fn many_keys_answer_each_alone_across_time_ranges_max_and_forgetting() {
        let mut idx = KeyIndex::default();
        // 5 000 entries of 1 000 keys, each key five times.
        for round in 0..5u64 {
            for k in 0..1000u64 {
                idx.add("T", &format!("k{k}"), (round * 1000 + k) * 10, round as i64);
            }
        }
        for k in [0u64, 1, 517, 999] {
            let want: Vec<u64> = (0..5).rev().map(|r| (r * 1000 + k) * 10).collect();
            assert_eq!(idx.lookup("T", &format!("k{k}"), 0, 9, 10), want);
            assert_eq!(idx.lookup("T", &format!("k{k}"), 1, 2, 10), want[2..4].to_vec(), "time range");
        }
        idx.forget_before(2500);
        assert_eq!(idx.lookup("T", "k499", 0, 9, 10), vec![44_990, 34_990], "forgotten entries end the chain");
        assert_eq!(idx.lookup("T", "k500", 0, 9, 10), vec![45_000, 35_000, 25_000]);
        assert!(idx.lookup("T", "absent", 0, 9, 10).is_empty());
        idx.add("T", "k499", 1, 9);
        assert_eq!(idx.lookup("T", "k499", 0, 9, 2), vec![1, 44_990], "at most max");
    }

    proptest::proptest! {
        /// The flat index answers like a plain map of vectors, across adds and trims.
        #[test]
        fn matches_a_map_of_vectors(ops in proptest::collection::vec((0u8..6, 0u8..4), 1..300)) {
            let mut idx = KeyIndex::default();
            let mut model: Vec<(String, u64)> = Vec::new();
            let mut pos = 0u64;
            for (key, op) in ops {
                let key = format!("k{key}");
                if op == 0 {
                    let min = pos.saturating_sub(50);
                    idx.trim_below(min);
                    model.retain(|(_, p)| *p >= min);
                } else {
                    idx.add("T", &key, pos, pos as i64);
                    model.push((key, pos));
                    pos += 7;
                }
            }
            for k in 0..6 {
                let key = format!("k{k}");
                let want: Vec<u64> = model.iter().rev().filter(|(m, _)| *m == key).map(|(_, p)| *p).take(5).collect();
                proptest::prop_assert_eq!(idx.lookup("T", &key, 0, i64::MAX, 5), want);
            }
        }
    }
}
