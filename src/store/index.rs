//! The key index: `topic#key` (each KEYS token and the UNIQ_KEY) → physical offsets, for QUERY_MESSAGE
//! and lookups by unique key. Owned by one shard.
//!
//! In memory: hash of the key → offsets in log order. On disk: `index/keys`, append-only 20-byte
//! entries `[4 hash][8 physical offset][8 store ms]`, written by the checkpoint job and loaded up to
//! the checkpoint. Hash collisions are resolved by the caller, which reads the record and compares the
//! key; entries whose record was deleted by retention are skipped at query time.

use std::collections::HashMap;
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

#[derive(Debug, Default)]
pub struct KeyIndex {
    map: HashMap<u32, Vec<(u64, i64)>>,
    /// All entries in append order since start-up or the last persist, for the checkpoint job.
    unpersisted: Vec<IndexEntry>,
}

impl KeyIndex {
    pub fn add(&mut self, topic: &str, key: &str, physical_offset: u64, store_timestamp_ms: i64) {
        let hash = key_hash(topic, key);
        self.map.entry(hash).or_default().push((physical_offset, store_timestamp_ms));
        self.unpersisted.push(IndexEntry { hash, physical_offset, store_timestamp_ms });
    }

    /// Candidate offsets for `topic#key` stored within `[begin_ms, end_ms]`, newest first, at most `max`.
    pub fn lookup(&self, topic: &str, key: &str, begin_ms: i64, end_ms: i64, max: usize) -> Vec<u64> {
        let Some(v) = self.map.get(&key_hash(topic, key)) else {
            return Vec::new();
        };
        v.iter().rev().filter(|(_, ts)| *ts >= begin_ms && *ts <= end_ms).map(|(p, _)| *p).take(max).collect()
    }

    /// Takes entries below `limit` (the durable log end) for persisting.
    pub fn take_persistable(&mut self, limit: u64) -> Vec<u8> {
        let n = self.unpersisted.iter().take_while(|e| e.physical_offset < limit).count();
        let mut out = Vec::with_capacity(n * INDEX_ENTRY_BYTES);
        for e in self.unpersisted.drain(..n) {
            out.extend_from_slice(&e.hash.to_be_bytes());
            out.extend_from_slice(&e.physical_offset.to_be_bytes());
            out.extend_from_slice(&e.store_timestamp_ms.to_be_bytes());
        }
        out
    }

    /// Puts entries back that a failed persist took.
    pub fn restore_unpersisted(&mut self, data: &[u8]) {
        let mut back: Vec<IndexEntry> = data.chunks_exact(INDEX_ENTRY_BYTES).filter_map(decode).collect();
        back.append(&mut self.unpersisted);
        self.unpersisted = back;
    }

    /// Drops entries whose records were deleted.
    pub fn trim_below(&mut self, log_min: u64) {
        self.map.retain(|_, v| {
            v.retain(|(p, _)| *p >= log_min);
            !v.is_empty()
        });
    }

    /// Loads `path`, keeping entries in `[log_min, limit)` and cutting the file after the last kept one.
    pub fn load(path: &Path, log_min: u64, limit: u64) -> std::io::Result<KeyIndex> {
        let data = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(KeyIndex::default()),
            Err(e) => return Err(e),
        };
        let mut idx = KeyIndex::default();
        let mut kept = 0usize;
        for e in data.chunks_exact(INDEX_ENTRY_BYTES).map_while(decode) {
            if e.physical_offset >= limit {
                break;
            }
            kept += 1;
            if e.physical_offset >= log_min {
                idx.map.entry(e.hash).or_default().push((e.physical_offset, e.store_timestamp_ms));
            }
        }
        if kept * INDEX_ENTRY_BYTES != data.len() {
            let f = std::fs::OpenOptions::new().write(true).open(path)?;
            f.set_len((kept * INDEX_ENTRY_BYTES) as u64)?;
            f.sync_all()?;
        }
        Ok(idx)
    }
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
        std::fs::write(&path, &bytes).unwrap();
        let loaded = KeyIndex::load(&path, 0, 15).unwrap();
        assert_eq!(loaded.lookup("T", "a", 0, 9, 9), vec![10]);
        assert!(loaded.lookup("T", "b", 0, 9, 9).is_empty());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 20);
    }
}
