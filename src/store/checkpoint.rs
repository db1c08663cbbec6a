//! The checkpoint: the log offset up to which consume-queue and index files are complete and durable.
//! Recovery loads those files up to it and replays the log from it.
//!
//! The job that writes them is plain data (`Send`) so the shard can run its blocking file I/O off the
//! executor thread (glommio's blocking pool). Order: queue and index files are written and fsynced,
//! then `checkpoint` is replaced atomically (write temp, fsync, rename, fsync directory). A failed job
//! leaves the previous checkpoint valid; nothing acknowledged depends on it.

use super::consume_queue::{CQ_ENTRY_BYTES, CQ_FILE_ENTRIES};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Every record below this offset is in the consume-queue and index files; a batch boundary.
    pub log_offset: u64,
    pub written_at_ms: i64,
}

/// Entries of one queue to append to its files.
#[derive(Debug)]
pub struct QueueWrite {
    pub dir: PathBuf,
    pub topic: String,
    pub queue_id: i32,
    pub first_offset: u64,
    pub entries: Vec<u8>,
}

/// The blocking part of a checkpoint.
#[derive(Debug)]
pub struct CheckpointJob {
    pub queues: Vec<QueueWrite>,
    pub index_path: PathBuf,
    pub index_bytes: Vec<u8>,
    pub checkpoint_path: PathBuf,
    pub checkpoint: Checkpoint,
}

impl Checkpoint {
    pub fn load(path: &Path) -> std::io::Result<Option<Checkpoint>> {
        match std::fs::read(path) {
            Ok(data) => serde_json::from_slice(&data)
                .map(Some)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Replaces `path` with `data` atomically and durably.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

impl CheckpointJob {
    pub fn run(&self) -> std::io::Result<()> {
        for q in &self.queues {
            write_queue(q)?;
        }
        if !self.index_bytes.is_empty() {
            if let Some(dir) = self.index_path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&self.index_path)?;
            f.write_all(&self.index_bytes)?;
            f.sync_data()?;
        }
        let json = serde_json::to_vec(&self.checkpoint).map_err(std::io::Error::other)?;
        write_atomic(&self.checkpoint_path, &json)
    }
}

fn write_queue(q: &QueueWrite) -> std::io::Result<()> {
    std::fs::create_dir_all(&q.dir)?;
    let mut offset = q.first_offset;
    let mut data = &q.entries[..];
    while !data.is_empty() {
        let file_first = offset - offset % CQ_FILE_ENTRIES;
        let room = (file_first + CQ_FILE_ENTRIES - offset) as usize * CQ_ENTRY_BYTES;
        let (now, rest) = data.split_at(room.min(data.len()));
        let path = q.dir.join(format!("{file_first:020}"));
        let f = std::fs::OpenOptions::new().create(true).write(true).truncate(false).open(&path)?;
        f.write_all_at(now, (offset - file_first) * CQ_ENTRY_BYTES as u64)?;
        f.sync_data()?;
        offset += (now.len() / CQ_ENTRY_BYTES) as u64;
        data = rest;
    }
    Ok(())
}
