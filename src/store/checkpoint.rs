//! The checkpoint: the log offset up to which consume-queue and index files are complete and durable,
//! with a manifest of what those files hold (each queue's end, the key index's length and CRC), so
//! recovery can tell a damaged or missing derived file from a good one. Recovery loads those files up
//! to it, verifies them against the manifest and the log, and replays the log from it — or, when
//! anything fails to verify, rebuilds every derived file from the start of the retained log.
//!
//! File format: the JSON object, a newline, the CRC32 of the JSON bytes as 8 hex digits, a newline.
//! A file that does not parse or verify is reported, never trusted, and never a reason to refuse to
//! start (the log is the source of truth).
//!
//! The job that writes them is plain data (`Send`) so the shard can run its blocking file I/O off the
//! executor thread (glommio's blocking pool). Order: queue and index files are written and fsynced,
//! then `checkpoint` is replaced atomically (write temp, fsync, rename, fsync directory). A failed job
//! leaves the previous checkpoint valid; nothing acknowledged depends on it.

use super::consume_queue::{CQ_ENTRY_BYTES, CQ_FILE_ENTRIES};
use super::files::{Files, SharedFiles, create_dir_durable, read_optional, write_atomic};
use super::index::set::IndexJob;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A queue's full files: first queue offset → CRC32 of its entries.
pub type FileCrcs = BTreeMap<u64, u32>;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Every record below this offset is in the consume-queue and index files; a batch boundary.
    pub log_offset: u64,
    pub written_at_ms: i64,
    /// Topic → queue id → queue offset its files end at (entries for records below `log_offset`).
    pub queue_ends: BTreeMap<String, BTreeMap<i32, u64>>,
    /// Topic → queue id → CRC32 of the entries in its last file (absent in checkpoints of older
    /// versions: their queue files are rebuilt once).
    #[serde(default)]
    pub queue_crcs: BTreeMap<String, BTreeMap<i32, u32>>,
    /// Topic → queue id → first queue offset of each full file before the last → its CRC32 (absent
    /// in checkpoints of older versions, whose CRCs covered whole queues: rebuilt once).
    #[serde(default)]
    pub queue_files: Option<BTreeMap<String, BTreeMap<i32, FileCrcs>>>,
    /// Entries in the key index's active file and the CRC32 of their bytes.
    pub index_entries: u64,
    pub index_crc: u32,
    /// Number of the active file's first entry (it names the file: `index/set.rs`); 0 before any seal.
    #[serde(default)]
    pub index_base: u64,
    /// First entry of the oldest sealed index file still needed; sealed files cover
    /// `[index_sealed_from, index_base)`.
    #[serde(default)]
    pub index_sealed_from: u64,
}

/// Why a checkpoint file is not trusted.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read it: {0}")]
    Read(std::io::Error),
    #[error("no checksum line (truncated, or written by an older ringmq)")]
    NoChecksum,
    #[error("checksum {stored:08x} does not match its contents ({computed:08x})")]
    Checksum { stored: u32, computed: u32 },
    #[error("contents do not parse: {0}")]
    Parse(String),
}

/// Entries of one queue to append to its files.
#[derive(Debug)]
pub struct QueueWrite {
    pub dir: PathBuf,
    pub topic: String,
    pub queue_id: i32,
    pub first_offset: u64,
    pub entries: Vec<u8>,
    /// The queue's last-file CRC including `entries` (the store keeps it on success).
    pub hasher: crc32fast::Hasher,
    /// Files `entries` complete, with their CRCs.
    pub completed: Vec<(u64, u32)>,
}

/// The blocking part of a checkpoint.
pub struct CheckpointJob {
    pub files: SharedFiles,
    pub queues: Vec<QueueWrite>,
    /// The key index's new entries, and a seal when one is due (a failed job's partial write is
    /// overwritten by the next one instead of being followed by it).
    pub index: IndexJob,
    /// Consume-queue files retention let go, removed once the checkpoint no longer lists them.
    pub cq_remove: Vec<PathBuf>,
    pub checkpoint_path: PathBuf,
    pub checkpoint: Checkpoint,
}

impl Checkpoint {
    /// Reads and verifies `path`; `Ok(None)` when there is none (a new store).
    pub fn load(files: &dyn Files, path: &Path) -> Result<Option<Checkpoint>, CheckpointError> {
        match read_optional(files, path).map_err(CheckpointError::Read)? {
            Some(data) => Checkpoint::decode(&data).map(Some),
            None => Ok(None),
        }
    }

    pub fn decode(data: &[u8]) -> Result<Checkpoint, CheckpointError> {
        let json = unframe(data)?;
        serde_json::from_slice(json).map_err(|e| CheckpointError::Parse(e.to_string()))
    }

    pub fn encode(&self) -> Vec<u8> {
        frame(serde_json::to_vec(self).unwrap_or_default())
    }
}

/// `json`, a newline, its CRC32 as 8 lowercase hex digits, a newline: the framing of every small
/// metadata file (checkpoint, config/*.json).
pub fn frame(mut json: Vec<u8>) -> Vec<u8> {
    let crc = crc32fast::hash(&json);
    json.extend_from_slice(format!("\n{crc:08x}\n").as_bytes());
    json
}

/// The JSON inside a [`frame`]d file, verified.
pub fn unframe(data: &[u8]) -> Result<&[u8], CheckpointError> {
    let body = data.strip_suffix(b"\n").ok_or(CheckpointError::NoChecksum)?;
    let split = body.iter().rposition(|&b| b == b'\n').ok_or(CheckpointError::NoChecksum)?;
    let (json, sum) = (&body[..split], &body[split + 1..]);
    let stored = std::str::from_utf8(sum)
        .ok()
        .filter(|s| s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .and_then(|s| u32::from_str_radix(s, 16).ok())
        .ok_or(CheckpointError::NoChecksum)?;
    let computed = crc32fast::hash(json);
    if stored != computed {
        return Err(CheckpointError::Checksum { stored, computed });
    }
    Ok(json)
}

impl CheckpointJob {
    pub fn run(&self) -> std::io::Result<()> {
        let files = &*self.files;
        for q in &self.queues {
            write_queue(files, q)?;
        }
        self.index.write(files)?;
        write_atomic(files, &self.checkpoint_path, &self.checkpoint.encode())?;
        self.index.clean_up(files);
        super::files::remove_unneeded(files, &self.cq_remove);
        Ok(())
    }
}

/// Appends a queue's new entries to its files; a file (and directory) it creates is synced into
/// its directory before the checkpoint that counts on it is written.
fn write_queue(files: &dyn Files, q: &QueueWrite) -> std::io::Result<()> {
    create_dir_durable(files, &q.dir)?;
    let mut offset = q.first_offset;
    let mut data = &q.entries[..];
    let mut created = false;
    while !data.is_empty() {
        let file_first = offset - offset % CQ_FILE_ENTRIES;
        let room = (file_first + CQ_FILE_ENTRIES - offset) as usize * CQ_ENTRY_BYTES;
        let (now, rest) = data.split_at(room.min(data.len()));
        let path = q.dir.join(format!("{file_first:020}"));
        created |= !files.exists(&path);
        files.write_at(&path, (offset - file_first) * CQ_ENTRY_BYTES as u64, now)?;
        files.sync(&path)?;
        offset += (now.len() / CQ_ENTRY_BYTES) as u64;
        data = rest;
    }
    if created {
        files.sync_dir(&q.dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        let mut c =
            Checkpoint { log_offset: 4096, written_at_ms: 5, index_entries: 3, index_crc: 9, ..Default::default() };
        c.queue_ends.entry("T".into()).or_default().insert(2, 17);
        c
    }

    #[test]
    fn round_trip_and_every_damage_is_refused() {
        let bytes = sample().encode();
        assert_eq!(Checkpoint::decode(&bytes).unwrap(), sample());
        for cut in 0..bytes.len() {
            assert!(Checkpoint::decode(&bytes[..cut]).is_err(), "truncated at {cut}");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x20;
            assert!(Checkpoint::decode(&b).map_or(true, |c| c != sample()), "flip at byte {i} accepted");
        }
        assert!(matches!(
            Checkpoint::decode(br#"{"log_offset":1,"written_at_ms":0}"#),
            Err(CheckpointError::NoChecksum)
        ));
        assert!(matches!(Checkpoint::decode(b"garbage\n12345678\n"), Err(CheckpointError::Checksum { .. })));
    }
}
