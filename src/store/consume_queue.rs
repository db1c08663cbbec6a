//! Consume queues: per (topic, queue id) the dense sequence of entries
//! `[8 physical offset][4 record size][8 tag code][4 record crc32]`; entry `i` is the message at queue
//! offset `i`. The first 20 bytes are RocketMQ's entry; the CRC of the whole stored record is ringmq's
//! addition so that every read is verified in full (RocketMQ's body CRC leaves the header, topic and
//! properties unprotected).
//!
//! Owned by one shard. The files `consumequeue/<topic>/<queue>/<20-digit first queue offset>`
//! (300 000 entries each, as in RocketMQ) are appended by the checkpoint job. Memory holds only each
//! queue's newest entries: those not yet in files, and at most a window (`StoreConfig::
//! cq_window_entries`) of those that are; older entries are read from the files on demand through
//! the store's bounded cold-block cache (`cold.rs`), so a backlog costs disk, not memory. The
//! checkpoint's manifest holds each queue's end, the CRC32 of each full file and that of the entries
//! in its last file. Start-up reads only the last file (hashing it against the manifest) and checks
//! that the full files are there at their full length; a full file's CRC is checked at its first
//! cold read (`cold.rs`), so restart time does not grow with the backlog, and a flip anywhere in a
//! file is still noticed before an entry of it is used. Retention deletes the files whose entries
//! are all below the queue's minimum, once a checkpoint no longer lists them.
//! Entries before a queue's first offset (a queue that starts mid-file, after a rebuild from a log
//! whose head was deleted) are zeros and are skipped at load.

use super::files::Files;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

pub const CQ_ENTRY_BYTES: usize = 24;
/// Entries per consume-queue file (RocketMQ's 6 000 000-byte files).
pub const CQ_FILE_ENTRIES: u64 = 300_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CqEntry {
    pub physical_offset: u64,
    pub size: u32,
    pub tags_code: i64,
    /// CRC32 of the whole stored record.
    pub crc: u32,
}

impl CqEntry {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.physical_offset.to_be_bytes());
        out.extend_from_slice(&self.size.to_be_bytes());
        out.extend_from_slice(&self.tags_code.to_be_bytes());
        out.extend_from_slice(&self.crc.to_be_bytes());
    }

    pub fn decode(b: &[u8]) -> Option<CqEntry> {
        Some(CqEntry {
            physical_offset: u64::from_be_bytes(b.get(0..8)?.try_into().ok()?),
            size: u32::from_be_bytes(b.get(8..12)?.try_into().ok()?),
            tags_code: i64::from_be_bytes(b.get(12..20)?.try_into().ok()?),
            crc: u32::from_be_bytes(b.get(20..24)?.try_into().ok()?),
        })
    }
}

/// One consume queue: its retained range `[base, next_offset)`, of which the newest entries (from
/// `mem_base`) are in memory and the older ones only in its files.
#[derive(Debug, Default)]
pub struct ConsumeQueue {
    /// Queue offset of the oldest retained entry (RocketMQ's min offset).
    base: u64,
    /// Queue offset of `entries[0]`; entries in `[base, mem_base)` are read from the files
    /// ([`super::cold`]). Never above `persisted`: only entries already in synced files leave memory.
    mem_base: u64,
    entries: VecDeque<CqEntry>,
    /// Queue offset up to which entries are in files.
    pub persisted: u64,
    /// CRC32 of the entries in the last file, up to `persisted` (the manifest's `queue_crcs`).
    pub file_hasher: crc32fast::Hasher,
    /// Full files before the last one, by first queue offset: their CRC32 (the manifest's
    /// `queue_files`) and whether it was checked since start.
    pub full_files: BTreeMap<u64, FullFile>,
}

/// A consume-queue file holding all its `CQ_FILE_ENTRIES` entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FullFile {
    pub crc: u32,
    pub verified: bool,
}

impl ConsumeQueue {
    pub fn new(base: u64) -> ConsumeQueue {
        ConsumeQueue {
            base,
            mem_base: base,
            entries: VecDeque::new(),
            persisted: base,
            file_hasher: crc32fast::Hasher::new(),
            full_files: BTreeMap::new(),
        }
    }

    /// The last file's hasher after appending `entries` (encoded, from queue offset `from`), and the
    /// files those entries complete with their CRCs.
    pub fn hash_appended(&self, from: u64, entries: &[u8]) -> (crc32fast::Hasher, Vec<(u64, u32)>) {
        let mut h = self.file_hasher.clone();
        let mut done = Vec::new();
        let mut off = from;
        for e in entries.chunks_exact(CQ_ENTRY_BYTES) {
            h.update(e);
            off += 1;
            if off.is_multiple_of(CQ_FILE_ENTRIES) {
                done.push((off - CQ_FILE_ENTRIES, std::mem::take(&mut h).finalize()));
            }
        }
        (h, done)
    }

    /// Full files whose entries are all below the minimum (retention deleted their records): taken
    /// out of the queue, for deletion once a checkpoint no longer lists them.
    pub fn take_expired_files(&mut self) -> Vec<u64> {
        let gone: Vec<u64> =
            self.full_files.range(..).take_while(|(f, _)| *f + CQ_FILE_ENTRIES <= self.base).map(|(f, _)| *f).collect();
        for f in &gone {
            self.full_files.remove(f);
        }
        gone
    }

    /// Next queue offset to assign (RocketMQ's max offset, exclusive).
    pub fn next_offset(&self) -> u64 {
        self.mem_base + self.entries.len() as u64
    }

    pub fn min_offset(&self) -> u64 {
        self.base
    }

    /// First queue offset held in memory.
    pub fn mem_base(&self) -> u64 {
        self.mem_base
    }

    /// Entries held in memory (the metric and the tests of the window).
    pub fn in_memory(&self) -> usize {
        self.entries.len()
    }

    pub fn push(&mut self, e: CqEntry) -> u64 {
        let off = self.next_offset();
        self.entries.push_back(e);
        off
    }

    /// The entry at `offset` if it is in memory.
    pub fn get(&self, offset: u64) -> Option<CqEntry> {
        let i = offset.checked_sub(self.mem_base)?;
        self.entries.get(i as usize).copied()
    }

    /// Appends to `out` up to `max` in-memory entries from `offset` on; returns how many (0 when
    /// `offset` is not in the window).
    pub fn get_run(&self, offset: u64, max: usize, out: &mut Vec<CqEntry>) -> usize {
        let Some(i) = offset.checked_sub(self.mem_base) else { return 0 };
        let n = self.entries.len().saturating_sub(i as usize).min(max);
        out.extend(self.entries.range(i as usize..i as usize + n));
        n
    }

    /// Whether `offset` is retained but only in the files.
    pub fn is_cold(&self, offset: u64) -> bool {
        (self.base..self.mem_base).contains(&offset)
    }

    /// Max offset visible to readers: entries whose record lies below `limit` (the durable or written
    /// end of the log).
    pub fn visible_max(&self, limit: u64) -> u64 {
        let hidden = self.entries.iter().rev().take_while(|e| e.physical_offset >= limit).count();
        self.next_offset() - hidden as u64
    }

    /// Drops entries already in files from memory until at most `window` are left there.
    pub fn evict(&mut self, window: usize) {
        while self.entries.len() > window.max(1) && self.mem_base < self.persisted {
            self.entries.pop_front();
            self.mem_base += 1;
        }
    }

    /// Drops in-memory entries whose records were deleted (below `log_min`); returns how many. Entries
    /// in the files only are passed over by [`Self::advance_min`] first (it needs file reads).
    pub fn trim_below(&mut self, log_min: u64) -> usize {
        if self.base < self.mem_base {
            return 0;
        }
        let mut n = 0;
        while self.entries.front().is_some_and(|e| e.physical_offset < log_min) {
            self.entries.pop_front();
            self.mem_base += 1;
            n += 1;
        }
        self.base = self.mem_base;
        self.persisted = self.persisted.max(self.base);
        n
    }

    /// Moves the min offset to `to` (retention found that the records before it are deleted).
    pub fn advance_min(&mut self, to: u64) {
        let to = to.min(self.next_offset());
        if to <= self.base {
            return;
        }
        self.base = to;
        while self.mem_base < to {
            self.entries.pop_front();
            self.mem_base += 1;
        }
        self.persisted = self.persisted.max(self.base);
    }

    /// Entries `[from, to)` encoded for the file writer (all in memory: `from` is at least
    /// `persisted`).
    pub fn encoded_range(&self, from: u64, to: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity((to - from) as usize * CQ_ENTRY_BYTES);
        for off in from.max(self.mem_base)..to {
            if let Some(e) = self.get(off) {
                e.encode(&mut out);
            }
        }
        out
    }

    /// In-memory entries with their queue offsets in `[lo, hi)`.
    pub fn entries_between(&self, lo: u64, hi: u64) -> impl Iterator<Item = (u64, CqEntry)> + '_ {
        (lo.max(self.mem_base)..hi.min(self.next_offset())).filter_map(|o| self.get(o).map(|e| (o, e)))
    }
}

/// Directory of one queue's files.
pub fn queue_dir(root: &Path, topic: &str, queue_id: i32) -> PathBuf {
    root.join(topic).join(queue_id.to_string())
}

/// Path of the file holding queue offset `offset`, and the entry's position in it.
pub fn file_of(dir: &Path, offset: u64) -> (PathBuf, u64) {
    let first = offset - offset % CQ_FILE_ENTRIES;
    (dir.join(format!("{first:020}")), (offset - first) * CQ_ENTRY_BYTES as u64)
}

/// CRC32 of a full file's entries as the checkpoint hashed them (the zeros before a queue that
/// starts mid-file are not entries).
pub fn full_file_crc(data: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    let zeros = data.chunks_exact(CQ_ENTRY_BYTES).take_while(|c| c.iter().all(|&b| b == 0)).count();
    h.update(&data[zeros * CQ_ENTRY_BYTES..]);
    h.finalize()
}

/// Loads a queue from its files: `full` (the manifest's full files and their CRCs) must be there at
/// full length (their contents are checked at their first cold read); the file after them (the one
/// holding the manifest's `end`) is read,
/// keeping entries whose records lie in `[log_min, limit)` and at most `window` of them in memory
/// (the newest), and hashed for the manifest check. Files before the listed ones (retention's, not
/// yet removed) and after the last one (a checkpoint cut short) are removed; the last file is cut
/// back to the kept entries so that later appends continue densely.
pub fn load_queue(
    files: &dyn Files,
    dir: &Path,
    full: &BTreeMap<u64, u32>,
    end: u64,
    (log_min, limit): (u64, u64),
    window: usize,
) -> std::io::Result<ConsumeQueue> {
    let invalid = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidData, why);
    let mut names: Vec<u64> = files.list(dir)?.iter().filter_map(|n| n.parse::<u64>().ok()).collect();
    names.sort_unstable();
    if names.is_empty() {
        // Every entry expired with its files, the last one full: an empty queue that goes on at
        // `end` (never back at 0, which would hand offsets out twice).
        return Ok(if full.is_empty() && end.is_multiple_of(CQ_FILE_ENTRIES) {
            ConsumeQueue::new(end)
        } else {
            ConsumeQueue::default()
        });
    }
    // The last file is the one `end` falls in, whatever else lies around (an expired file whose
    // removal a crash cut short, or a file a cut-short checkpoint started).
    let last = end - end % CQ_FILE_ENTRIES;
    if full.keys().next_back().is_some_and(|f| f + CQ_FILE_ENTRIES != last) {
        return Err(invalid(format!("the checkpoint's full files do not end where its end ({end}) begins a file")));
    }
    let first = full.keys().next().copied().unwrap_or(last);
    for (i, f) in full.keys().enumerate() {
        if *f != first + i as u64 * CQ_FILE_ENTRIES {
            return Err(invalid(format!("the checkpoint lists full files with a gap before {f}")));
        }
        let len = files.read_at(&dir.join(format!("{f:020}")), CQ_FILE_ENTRIES * CQ_ENTRY_BYTES as u64 - 1, 2)?.len();
        if len != 1 {
            return Err(invalid(format!("full file {f:020} is not {CQ_FILE_ENTRIES} entries long")));
        }
    }
    for &f in names.iter().filter(|&&f| f < first || f > last) {
        tracing::info!(file = %dir.join(format!("{f:020}")).display(), "removing a consume-queue file the checkpoint does not list");
        files.remove_file(&dir.join(format!("{f:020}")))?;
    }
    let mut queue = ConsumeQueue::new(first);
    queue.full_files = full.iter().map(|(&f, &crc)| (f, FullFile { crc, verified: false })).collect();
    queue.mem_base = last;
    let path = dir.join(format!("{last:020}"));
    let data = super::files::read_optional(files, &path)?.unwrap_or_default();
    // Whether a live entry was seen yet: zeros or deleted records before it move the minimum (and
    // then every full file before them is deleted too).
    let mut live = false;
    let mut kept = 0;
    for chunk in data.chunks_exact(CQ_ENTRY_BYTES) {
        match CqEntry::decode(chunk) {
            Some(e) if e.physical_offset < limit && e.size > 0 => {
                queue.file_hasher.update(chunk);
                kept += 1;
                if !live && e.physical_offset < log_min {
                    queue.mem_base += 1; // its record was deleted by retention
                    queue.base = queue.mem_base;
                    continue;
                }
                live = true;
                queue.entries.push_back(e);
                if queue.entries.len() > window.max(1) {
                    queue.entries.pop_front();
                    queue.mem_base += 1;
                }
            }
            // Zeros before the queue's first entry: it starts mid-file.
            Some(CqEntry { size: 0, physical_offset: 0, .. }) if !live && queue.entries.is_empty() => {
                queue.mem_base += 1;
                queue.base = queue.mem_base;
                kept += 1;
            }
            _ => break,
        }
    }
    if kept * CQ_ENTRY_BYTES != data.len() {
        files.set_len(&path, (kept * CQ_ENTRY_BYTES) as u64)?;
        files.sync(&path)?;
    }
    queue.persisted = queue.next_offset();
    Ok(queue)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(p: u64) -> CqEntry {
        CqEntry { physical_offset: p, size: 10, tags_code: -5, crc: 7 }
    }

    #[test]
    fn entry_round_trip_and_fixture() {
        let mut b = Vec::new();
        e(0x0102).encode(&mut b);
        assert_eq!(b.len(), 24);
        assert_eq!(&b[..8], &[0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(&b[20..], &[0, 0, 0, 7]);
        assert_eq!(CqEntry::decode(&b), Some(e(0x0102)));
        for n in 0..24 {
            assert_eq!(CqEntry::decode(&b[..n]), None);
        }
    }

    #[test]
    fn offsets_are_dense_and_trim_moves_min() {
        let mut q = ConsumeQueue::new(0);
        for p in [100, 200, 300] {
            q.push(e(p));
        }
        assert_eq!((q.min_offset(), q.next_offset()), (0, 3));
        assert_eq!(q.visible_max(250), 2);
        assert_eq!(q.trim_below(150), 1);
        assert_eq!((q.min_offset(), q.get(1)), (1, Some(e(200))));
        assert_eq!(q.get(0), None);
    }

    /// Regression: a queue rebuilt from a log whose head was deleted starts mid-file; its leading
    /// zero entries cut the file to nothing at the next start, which then rebuilt every time.
    #[test]
    fn queue_starting_mid_file_loads_after_its_leading_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let mut data = vec![0u8; 5 * CQ_ENTRY_BYTES];
        for p in [10, 20] {
            e(p).encode(&mut data);
        }
        std::fs::write(dir.path().join(format!("{:020}", 0)), &data).unwrap();
        let q = load_queue(&crate::store::files::OsFiles, dir.path(), &BTreeMap::new(), 3, (0, 100), 1000).unwrap();
        assert_eq!((q.min_offset(), q.next_offset()), (5, 7));
        assert_eq!(q.file_hasher.finalize(), crc32fast::hash(&data[5 * CQ_ENTRY_BYTES..]));
        assert_eq!(std::fs::metadata(dir.path().join(format!("{:020}", 0))).unwrap().len(), data.len() as u64);
    }

    #[test]
    fn load_cuts_entries_past_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let mut data = Vec::new();
        for p in [10, 20, 30, 40] {
            e(p).encode(&mut data);
        }
        data.extend_from_slice(&[1, 2, 3]); // torn entry
        std::fs::write(dir.path().join(format!("{:020}", 0)), &data).unwrap();
        let q = load_queue(&crate::store::files::OsFiles, dir.path(), &BTreeMap::new(), 3, (15, 35), 1000).unwrap();
        assert_eq!((q.min_offset(), q.next_offset()), (1, 3));
        let len = std::fs::metadata(dir.path().join(format!("{:020}", 0))).unwrap().len();
        assert_eq!(len, 72);
    }
}
