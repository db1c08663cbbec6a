//! The per-shard commit log: one append-only sequence of fixed-size segments holding every queue's
//! records, written with O_DIRECT from 4 KiB-aligned buffers, with group commit.
//!
//! Lives on one shard (`!Send`, `Rc`/`RefCell`); a `RefCell` borrow is never held across an `.await`.
//!
//! ## Layout
//! Segment files are named by their start offset (20 digits). Records are RocketMQ stored messages
//! (`protocol::message`), plus two ringmq records that clients never see (consume queues do not point at
//! them):
//! - **seal** `[4 size=24][4 SEAL_MAGIC][8 batch start][4 crc32 of batch bytes][4 crc32 of the previous
//!   16 bytes]` closes a *batch*: everything written since the previous seal. The flusher seals before
//!   every write, so every acknowledged byte is covered by a CRC (RocketMQ's body CRC covers only the
//!   body). A batch never spans segments.
//! - **blank** `[4 size = bytes to segment end][4 BLANK_MAGIC]` (RocketMQ's end-of-segment filler).
//!
//! ## Group commit
//! Appends encode into `buf` (memory from the last aligned block boundary to the write position). One
//! flusher writes the unflushed range (rewriting the partial last block) and fdatasyncs it while new
//! appends fill `buf`; `flush = sync` appends complete when a sync covering them returns.
//!
//! ## Failure model
//! A failed write or fdatasync poisons the log: every waiting and later append fails with
//! `StoreError::Poisoned`, and the shard stops the process (`EXIT_STORE_POISONED`).

mod appender;
mod cache;
mod chunks;
mod follow;
mod segments;

pub use appender::{decode_seal, encode_seal};

use super::error::StoreError;
use super::io::{BLOCK_BYTES, Disk, DiskFile, align_down, align_up, segment_path};
use bytes::{BufMut, Bytes, BytesMut};
use futures_channel::oneshot;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::rc::Rc;

pub const SEAL_MAGIC: u32 = 0x5EA1_B10C;
pub const SEAL_BYTES: u64 = 24;
pub const BLANK_BYTES: u64 = 8;
/// A batch is sealed once it reaches this size even if the flusher is behind, which bounds how much a
/// torn write can cover.
pub const MAX_BATCH_BYTES: u64 = 4 << 20;
/// Size of a read-cache block: one DMA read serves ~1 000 sequential 1 KiB records (catch-up reads
/// are latency-bound: 64 KiB blocks measured 140 MB/s here, 1 MiB raw reads 900 MB/s; 1 MiB blocks
/// also cut the device doorbells of a drain, each a VM exit here, 4× against 256 KiB).
pub const READ_BLOCK_BYTES: u64 = 1 << 20;
/// Zero-fill chunk for pre-writing segments.
const PREWRITE_CHUNK_BYTES: usize = super::io::ZERO_CHUNK_BYTES;
/// Zeros the pre-writer keeps written ahead of the write position in the active segment, refilled
/// once less than half is left. Appending past pre-written blocks grows the file, and an fdatasync
/// after growing costs several ms instead of ~0.4. 64 MiB is half a second at the batched maximum
/// (~130 MB/s) and minutes at the unbatched rates; zero-filling runs at ~300 MB/s here. Before this
/// lead a fresh shard zero-filled its whole first segment (1 GiB, 3.5 s) before serving.
pub(crate) const ACTIVE_LEAD_BYTES: u64 = 64 << 20;
/// The pre-writer syncs after this many bytes of zeros. A device flush makes everything written
/// before it durable, whichever file it was issued for: left unsynced, a whole pre-written segment
/// (1 GiB) rode on the first group commit after it and stalled `flush = sync` sends for seconds (a
/// virtual disk's host cache). With `flush = sync`, syncing as it goes bounds what a commit can
/// inherit to this much.
const PREWRITE_SYNC_BYTES: u64 = 32 << 20;
/// The next segment is pre-written once the active one is this full (1/4). Pre-writing competes with
/// group commits for the disk: started at once, a fresh broker's first sync sends waited behind
/// 1 GiB of zeros (measured: the first 300 sequential sends 2.5x slower than 20 s later). The other
/// three quarters of a segment leave the pre-writer ample lead at any sustained rate.
const PREWRITE_NEXT_AT_DIVISOR: u64 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlushMode {
    /// Acknowledge after an fdatasync covering the record.
    Sync,
    /// Acknowledge once the record is in memory and queued for writing.
    Async,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub dir: PathBuf,
    pub segment_bytes: u64,
    pub flush: FlushMode,
    /// Recently flushed buffers kept for tail reads.
    pub tail_cache_bytes: usize,
    /// DMA read cache for catch-up reads.
    pub read_cache_bytes: usize,
}

/// Counters the metrics endpoint sums across shards.
#[derive(Debug, Default, Clone)]
pub struct LogStats {
    pub appends: u64,
    pub flushes: u64,
    pub synced_bytes: u64,
    pub segment_waits: u64,
    pub tail_hits: u64,
    pub disk_reads: u64,
    pub read_cache_hits: u64,
    /// Append-buffer chunks reused instead of allocated (chunks.rs).
    pub chunks_reused: u64,
}

/// Where the log starts after recovery.
pub struct RecoveredTail {
    pub write_pos: u64,
    /// The aligned block containing `write_pos`, as on disk (zeros past `write_pos`).
    pub partial_block: Vec<u8>,
}

struct PendingOld {
    base: u64,
    data: Bytes,
}

/// The log's mutable state, on its shard only, in the four parts its tasks own: the segment files
/// (the pre-writer), the append buffer (appenders), group commit (the flusher) and the read caches
/// (readers) — one `RefCell` because an append touches all four in one synchronous step.
struct State<F> {
    files: SegmentFiles<F>,
    append: AppendBuffer,
    commit: GroupCommit,
    caches: Caches,
    stats: LogStats,
}

/// The segment files by start offset, the zeros laid ahead of the write position in the active
/// one, and the next one being pre-written (segments.rs).
struct SegmentFiles<F> {
    open: BTreeMap<u64, Rc<F>>,
    /// Log position up to which the active segment's file is written (zeros past the write
    /// position). A fresh segment starts empty and the pre-writer keeps `ACTIVE_LEAD_BYTES` of zeros
    /// ahead of the appends, so a start never waits for a whole segment of zeros.
    zeroed: u64,
    /// Start of the zero chunk in flight in the active segment: the flusher does not write at or
    /// past it until it lands (two writes in flight over one range land in either order).
    zeroing: Option<u64>,
    /// The pre-written next segment, ready to take over when the active one fills.
    ready_next: Option<(u64, Rc<F>)>,
    preparing: bool,
    /// A slave is cutting its log back (`follow.rs`): the pre-writer leaves the files alone.
    truncating: bool,
    /// Appenders waiting for the segment being pre-written.
    prepared_waiters: Vec<oneshot::Sender<()>>,
}

/// Bytes appended and not yet written, and the batch being sealed (appender.rs).
struct AppendBuffer {
    /// End of the last appended record.
    write_pos: u64,
    /// Where the unsealed batch starts, and its running CRC (the seal record covers it).
    batch_start: u64,
    batch_crc: crc32fast::Hasher,
    /// Appended bytes from `buf_base` (block aligned) to `write_pos`.
    buf: BytesMut,
    buf_base: u64,
    /// Buffers of a segment already left, still to be written by the flusher.
    pending_old: Vec<PendingOld>,
    /// Chunks `buf` moved off, reused once the tail cache lets go of them.
    chunks: chunks::ChunkPool,
}

/// What is durable, who waits for it, and whether a failed sync stopped the log (appender.rs).
struct GroupCommit {
    flushed_pos: u64,
    /// Appenders waiting for the durable end to pass their position (registered when first polled).
    waiters: VecDeque<(u64, std::task::Waker)>,
    /// Set after a failed write or fsync: the log refuses everything after it.
    poisoned: Option<String>,
}

/// The tail cache (recent appends) and the read cache (aligned blocks read back), cache.rs.
#[derive(Default)]
struct Caches {
    tail: cache::TailCache,
    read: cache::ReadCache,
    /// Read-cache blocks being read from disk, each with the beacon its other readers wait on: one
    /// DMA read per block however many readers miss it at once.
    reading: HashMap<u64, Rc<crate::rt::Beacon>>,
}

/// The commit log of one shard.
pub struct CommitLog<D: Disk> {
    disk: D,
    cfg: LogConfig,
    state: RefCell<State<D::File>>,
    flush_wanted: Cell<bool>,
    flush_waker: RefCell<Option<std::task::Waker>>,
    /// Raised by appends once the next segment should be pre-written (the pre-writer waits on it
    /// instead of polling).
    pub(crate) prewrite_wanted: crate::rt::Signal,
    /// Raised when a zero chunk of the active segment lands (the flusher may wait for one).
    zeroing_done: crate::rt::Signal,
    /// Raised after every group commit: replication streams send what became durable, a slave
    /// acknowledges it.
    pub flushed: crate::rt::Beacon,
}

use chunks::APPEND_CHUNK_BYTES;

/// The writes of one flush and the log position they make durable.
type FlushPlan<F> = Option<(Vec<WriteJob<F>>, u64)>;

/// A write the flusher issues: the file, the position in it and the aligned bytes.
struct WriteJob<F: DiskFile> {
    file: Rc<F>,
    pos: u64,
    data: F::WriteBuf,
    len: u64,
}

impl<D: Disk> CommitLog<D> {
    /// The disk the log lives on (recovery re-scans through it).
    pub fn disk(&self) -> &D {
        &self.disk
    }

    /// Opens the log over existing segments (already verified by recovery) with its tail at `tail`.
    pub async fn open(disk: D, cfg: LogConfig, tail: RecoveredTail) -> Result<CommitLog<D>, StoreError> {
        assert!(cfg.segment_bytes.is_multiple_of(BLOCK_BYTES), "segment size must be a multiple of 4 KiB");
        disk.create_dir_all(&cfg.dir).map_err(|e| StoreError::io(&cfg.dir, &e))?;
        let mut segments = BTreeMap::new();
        for name in disk.list(&cfg.dir).map_err(|e| StoreError::io(&cfg.dir, &e))? {
            let Ok(start) = name.parse::<u64>() else {
                continue;
            };
            let path = segment_path(&cfg.dir, start);
            segments.insert(start, disk.open(&path).await.map_err(|e| StoreError::io(&path, &e))?);
        }
        let buf_base = align_down(tail.write_pos);
        let mut buf = BytesMut::with_capacity(APPEND_CHUNK_BYTES);
        buf.extend_from_slice(&tail.partial_block[..(tail.write_pos - buf_base) as usize]);
        let log = CommitLog {
            disk,
            state: RefCell::new(State {
                files: SegmentFiles {
                    open: segments,
                    zeroed: tail.write_pos,
                    zeroing: None,
                    ready_next: None,
                    preparing: false,
                    truncating: false,
                    prepared_waiters: Vec::new(),
                },
                append: AppendBuffer {
                    write_pos: tail.write_pos,
                    batch_start: tail.write_pos,
                    batch_crc: crc32fast::Hasher::new(),
                    buf,
                    buf_base,
                    pending_old: Vec::new(),
                    chunks: chunks::ChunkPool::default(),
                },
                commit: GroupCommit { flushed_pos: tail.write_pos, waiters: VecDeque::new(), poisoned: None },
                caches: Caches::default(),
                stats: LogStats::default(),
            }),
            cfg,
            flush_wanted: Cell::new(false),
            flush_waker: RefCell::new(None),
            prewrite_wanted: crate::rt::Signal::default(),
            zeroing_done: crate::rt::Signal::default(),
            flushed: crate::rt::Beacon::default(),
        };
        log.ensure_active_segment().await?;
        Ok(log)
    }

    pub fn write_pos(&self) -> u64 {
        self.state.borrow().append.write_pos
    }

    pub fn flushed_pos(&self) -> u64 {
        self.state.borrow().commit.flushed_pos
    }

    pub fn min_pos(&self) -> u64 {
        self.state.borrow().files.open.keys().next().copied().unwrap_or(0)
    }

    pub fn stats(&self) -> LogStats {
        let s = self.state.borrow();
        LogStats { chunks_reused: s.append.chunks.reused, ..s.stats.clone() }
    }

    pub fn poisoned(&self) -> Option<String> {
        self.state.borrow().commit.poisoned.clone()
    }

    pub fn flush_mode(&self) -> FlushMode {
        self.cfg.flush
    }

    /// Largest record that fits a segment with room for its seal and blank marker.
    pub fn max_record_bytes(&self) -> usize {
        (self.cfg.segment_bytes - SEAL_BYTES - BLANK_BYTES) as usize
    }
}
