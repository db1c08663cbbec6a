//! Sealed key-index files: `index/<first entry number, 20 digits>.idx`, one per run of
//! `index_seal_entries` key entries, written once (atomically) by the checkpoint job and then only
//! read, by QUERY_MESSAGE and unique-key lookups, and deleted by retention. Owned by the shard whose
//! store they index; only the header of each file is kept in memory (`SealedFile`, ~100 bytes).
//!
//! Layout (integers big-endian, like every file of ours beside the log):
//!
//! ```text
//! header  80 B  magic "RMQKIX01", range first/end (entry numbers this file covers), stored entry
//!               count, slot count (a power of two), min/max physical offset, min/max store ms,
//!               CRC32 of the header's first 64 bytes, 12 B of zeros
//! blocks  4 B × ⌈body / 4096⌉   CRC32 of each 4 KiB block of the body
//! body    slots × 4 B           newest entry (index + 1, 0 = none) whose hash lands in the slot
//!         count × 24 B          [hash u32][previous entry in the same slot, index + 1 u32]
//!                               [physical offset u64][store ms i64], in log order
//! ```
//!
//! Why this shape (RocketMQ's IndexFile is the same hash-slot-and-chain idea): a lookup reads one
//! slot and walks a chain that is ~1 entry long (slots ≥ entries), so it costs a few 4 KiB reads per
//! file, each verified against its block CRC — a flipped bit is found at the read that meets it,
//! without reading the whole file (28 MiB per million keys) at start or per query. Chains only go
//! backwards, so a damaged link cannot loop. The caller still reads each candidate record from the
//! log (CRC-checked) and compares the key, so a damaged file can cost a miss, never a wrong answer.

use super::IndexEntry;
use crate::store::files::Files;
use std::io;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"RMQKIX01";
pub const HEADER_BYTES: u64 = 80;
const BLOCK: u64 = 4096;
const ENTRY: u64 = 24;

/// What a sealed file covers; kept in memory for every sealed file of the shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SealedHeader {
    /// Entry numbers `[range_first, range_end)` belong to this file (those retention had already
    /// dropped when it was sealed are simply absent).
    pub range_first: u64,
    pub range_end: u64,
    pub count: u32,
    pub slots: u32,
    pub min_phys: u64,
    pub max_phys: u64,
    pub min_ts: i64,
    pub max_ts: i64,
}

impl SealedHeader {
    fn body_len(&self) -> u64 {
        self.slots as u64 * 4 + self.count as u64 * ENTRY
    }

    fn blocks(&self) -> u64 {
        self.body_len().div_ceil(BLOCK)
    }

    fn body_at(&self) -> u64 {
        HEADER_BYTES + self.blocks() * 4
    }

    /// The file's length when whole.
    pub fn file_len(&self) -> u64 {
        self.body_at() + self.body_len()
    }
}

pub fn path(dir: &Path, range_first: u64) -> PathBuf {
    dir.join(format!("{range_first:020}.idx"))
}

/// The entry number a sealed file's name carries, if `name` is one.
pub fn parse_name(name: &str) -> Option<u64> {
    name.strip_suffix(".idx").filter(|n| n.len() == 20).and_then(|n| n.parse().ok())
}

/// The header of a sealed file covering `[range_first, range_end)` holding `entries` (in log
/// order; fewer than 2^31 — `index_seal_entries` is capped far below that).
pub fn header_of(range_first: u64, range_end: u64, entries: &[IndexEntry]) -> SealedHeader {
    let count = u32::try_from(entries.len()).unwrap_or(u32::MAX).min(1 << 31);
    let slots = count.max(1).next_power_of_two();
    let mut h = SealedHeader { range_first, range_end, count, slots, ..Default::default() };
    if let (Some(first), Some(last)) = (entries.first(), entries.last()) {
        h.min_phys = first.physical_offset;
        h.max_phys = last.physical_offset;
        h.min_ts = entries.iter().map(|e| e.store_timestamp_ms).min().unwrap_or(0);
        h.max_ts = entries.iter().map(|e| e.store_timestamp_ms).max().unwrap_or(0);
    }
    h
}

/// The bytes of a sealed file covering `[range_first, range_end)` holding `entries` (in log order).
pub fn build(range_first: u64, range_end: u64, entries: &[IndexEntry]) -> Vec<u8> {
    let h = header_of(range_first, range_end, entries);
    let slots = h.slots;
    // One buffer, filled in place (a seal of 1 Mi keys is 28 MiB: no second copy of it).
    let mut out = vec![0u8; h.file_len() as usize];
    let (head, rest) = out.split_at_mut(h.body_at() as usize);
    let (slot_bytes, entry_bytes) = rest.split_at_mut(slots as usize * 4);
    for (i, (e, out)) in entries.iter().zip(entry_bytes.chunks_exact_mut(ENTRY as usize)).enumerate() {
        let slot = (e.hash & (slots - 1)) as usize * 4;
        let prev = &mut slot_bytes[slot..slot + 4];
        out[0..4].copy_from_slice(&e.hash.to_be_bytes());
        out[4..8].copy_from_slice(prev);
        out[8..16].copy_from_slice(&e.physical_offset.to_be_bytes());
        out[16..24].copy_from_slice(&e.store_timestamp_ms.to_be_bytes());
        prev.copy_from_slice(&(i as u32 + 1).to_be_bytes());
    }
    let (header, table) = head.split_at_mut(HEADER_BYTES as usize);
    for (crc, block) in table.chunks_exact_mut(4).zip(rest.chunks(BLOCK as usize)) {
        crc.copy_from_slice(&crc32fast::hash(block).to_be_bytes());
    }
    header.copy_from_slice(&encode_header(&h));
    out
}

fn encode_header(h: &SealedHeader) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEADER_BYTES as usize);
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&h.range_first.to_be_bytes());
    b.extend_from_slice(&h.range_end.to_be_bytes());
    b.extend_from_slice(&h.count.to_be_bytes());
    b.extend_from_slice(&h.slots.to_be_bytes());
    b.extend_from_slice(&h.min_phys.to_be_bytes());
    b.extend_from_slice(&h.max_phys.to_be_bytes());
    b.extend_from_slice(&h.min_ts.to_be_bytes());
    b.extend_from_slice(&h.max_ts.to_be_bytes());
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_be_bytes());
    b.resize(HEADER_BYTES as usize, 0);
    b
}

fn invalid(path: &Path, why: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{}: {why}", path.display()))
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// One sealed file: its header, read and verified at start.
#[derive(Debug, Clone)]
pub struct SealedFile {
    pub path: PathBuf,
    pub header: SealedHeader,
    /// Found damaged (and deleted): kept in the list, answering nothing, so the range it covered
    /// stays owed and the next start sees the gap and rebuilds.
    pub damaged: bool,
}

impl SealedFile {
    /// Reads and verifies the header (magic, CRC, plausible sizes) and the file's length.
    pub fn open(files: &dyn Files, path: &Path) -> io::Result<SealedFile> {
        let b = files.read_at(path, 0, HEADER_BYTES as usize)?;
        if b.len() < HEADER_BYTES as usize || &b[0..8] != MAGIC {
            return Err(invalid(path, "not a sealed index file (short, or wrong magic)"));
        }
        if crc32fast::hash(&b[0..64]) != be_u32(&b, 64) {
            return Err(invalid(path, "header fails its CRC"));
        }
        let h = SealedHeader {
            range_first: be_u64(&b, 8),
            range_end: be_u64(&b, 16),
            count: be_u32(&b, 24),
            slots: be_u32(&b, 28),
            min_phys: be_u64(&b, 32),
            max_phys: be_u64(&b, 40),
            min_ts: be_u64(&b, 48) as i64,
            max_ts: be_u64(&b, 56) as i64,
        };
        let sane = h.slots.is_power_of_two()
            && h.slots >= h.count
            && h.range_end >= h.range_first
            && h.range_end - h.range_first >= h.count as u64;
        if !sane {
            return Err(invalid(path, format!("header is inconsistent ({h:?})")));
        }
        let len = files.read_at(path, h.file_len() - 1, 2)?.len();
        if len != 1 {
            return Err(invalid(path, format!("length differs from the header's {} bytes", h.file_len())));
        }
        Ok(SealedFile { path: path.to_path_buf(), header: h, damaged: false })
    }

    /// `len` bytes of the body at `at`, each 4 KiB block they touch verified against its CRC.
    fn read_body(&self, files: &dyn Files, at: u64, len: u64) -> io::Result<Vec<u8>> {
        let h = &self.header;
        if at + len > h.body_len() {
            return Err(invalid(&self.path, format!("a link points past the body ({at} + {len})")));
        }
        let (first, last) = (at / BLOCK, (at + len - 1) / BLOCK);
        let crcs = files.read_at(&self.path, HEADER_BYTES + first * 4, ((last - first + 1) * 4) as usize)?;
        let start = first * BLOCK;
        let end = ((last + 1) * BLOCK).min(h.body_len());
        let blocks = files.read_at(&self.path, h.body_at() + start, (end - start) as usize)?;
        if blocks.len() as u64 != end - start || crcs.len() as u64 != (last - first + 1) * 4 {
            return Err(invalid(&self.path, "shorter than its header says"));
        }
        for (i, block) in blocks.chunks(BLOCK as usize).enumerate() {
            if crc32fast::hash(block) != be_u32(&crcs, i * 4) {
                return Err(invalid(&self.path, format!("block {} fails its CRC", first + i as u64)));
            }
        }
        let from = (at - start) as usize;
        Ok(blocks[from..from + len as usize].to_vec())
    }

    /// Appends to `out` the physical offsets of entries with `hash` stored within `[begin, end]`,
    /// newest first, until `out` holds `max`. An error means the file is damaged.
    pub fn lookup(
        &self,
        files: &dyn Files,
        hash: u32,
        (begin, end): (i64, i64),
        max: usize,
        out: &mut Vec<u64>,
    ) -> io::Result<()> {
        let h = &self.header;
        if self.damaged || h.count == 0 || h.max_ts < begin || h.min_ts > end {
            return Ok(());
        }
        let slot = (hash & (h.slots - 1)) as u64;
        let mut at = be_u32(&self.read_body(files, slot * 4, 4)?, 0);
        let entries_at = h.slots as u64 * 4;
        while at != 0 && out.len() < max {
            if at > h.count {
                return Err(invalid(&self.path, format!("slot or link {at} past its {} entries", h.count)));
            }
            let e = self.read_body(files, entries_at + (at as u64 - 1) * ENTRY, ENTRY)?;
            let ts = be_u64(&e, 16) as i64;
            if be_u32(&e, 0) == hash && ts >= begin && ts <= end {
                out.push(be_u64(&e, 8));
            }
            let prev = be_u32(&e, 4);
            if prev >= at {
                return Err(invalid(&self.path, format!("link {at} → {prev} does not go backwards")));
            }
            at = prev;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::files::OsFiles;

    fn entries(n: u64) -> Vec<IndexEntry> {
        (0..n)
            .map(|i| IndexEntry {
                hash: super::super::key_hash("T", &format!("k{}", i % 1000)),
                physical_offset: 1000 + i * 100,
                store_timestamp_ms: i as i64,
            })
            .collect()
    }

    #[test]
    fn lookup_finds_every_occurrence_newest_first_within_the_time_range() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path(), 7);
        let es = entries(5000);
        std::fs::write(&p, build(7, 5007, &es)).unwrap();
        let f = SealedFile::open(&OsFiles, &p).unwrap();
        assert_eq!((f.header.range_first, f.header.range_end, f.header.count), (7, 5007, 5000));
        assert_eq!(f.header.slots, 8192);
        let hash = super::super::key_hash("T", "k42");
        let mut out = Vec::new();
        f.lookup(&OsFiles, hash, (0, i64::MAX), 100, &mut out).unwrap();
        assert_eq!(out, vec![1000 + 4042 * 100, 1000 + 3042 * 100, 1000 + 2042 * 100, 1000 + 1042 * 100, 1000 + 4200]);
        out.clear();
        f.lookup(&OsFiles, hash, (1000, 3100), 100, &mut out).unwrap();
        assert_eq!(out, vec![1000 + 3042 * 100, 1000 + 2042 * 100, 1000 + 1042 * 100]);
        out.clear();
        f.lookup(&OsFiles, hash, (0, i64::MAX), 2, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        out.clear();
        f.lookup(&OsFiles, super::super::key_hash("T", "absent"), (0, i64::MAX), 9, &mut out).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn an_empty_sealed_file_covers_its_range_and_finds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path(), 0);
        std::fs::write(&p, build(0, 10, &[])).unwrap();
        let f = SealedFile::open(&OsFiles, &p).unwrap();
        assert_eq!((f.header.range_end, f.header.count), (10, 0));
        let mut out = Vec::new();
        f.lookup(&OsFiles, 1, (0, i64::MAX), 9, &mut out).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn a_flipped_bit_anywhere_is_an_error_at_open_or_at_the_lookup_that_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path(), 0);
        let es = entries(300);
        let good = build(0, 300, &es);
        for at in (0..good.len()).step_by(37) {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            std::fs::write(&p, &bad).unwrap();
            let Ok(f) = SealedFile::open(&OsFiles, &p) else { continue };
            let mut failed = false;
            for k in 0..1000 {
                let mut out = Vec::new();
                let r = f.lookup(&OsFiles, super::super::key_hash("T", &format!("k{k}")), (0, i64::MAX), 99, &mut out);
                failed |= r.is_err();
                if r.is_ok() && k < 300 {
                    // A lookup that succeeds on a damaged file still never points outside the file's entries.
                    assert!(out.iter().all(|o| es.iter().any(|e| e.physical_offset == *o)), "flip at {at}");
                }
            }
            let in_header_padding = (68..80).contains(&at);
            assert!(failed || in_header_padding, "flip at byte {at} went unnoticed by every lookup");
        }
        std::fs::write(&p, &good[..good.len() - 1]).unwrap();
        assert!(SealedFile::open(&OsFiles, &p).is_err(), "truncated");
    }

    #[test]
    fn names_round_trip() {
        let p = path(Path::new("/x"), 42);
        assert_eq!(parse_name(p.file_name().unwrap().to_str().unwrap()), Some(42));
        assert_eq!(parse_name("keys"), None);
        assert_eq!(parse_name("42.idx"), None);
    }
}
