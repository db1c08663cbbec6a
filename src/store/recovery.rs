//! Start-up verification of the commit log from the last checkpoint to its end.
//!
//! Every record past the checkpoint is verified: message records by structure, position and body CRC,
//! and every batch by its seal (a CRC over all of the batch's bytes, so a flipped bit anywhere in a
//! header, topic or property is caught too). Outcomes:
//! - the log ends in zeros after a sealed batch: clean;
//! - the last batch is incomplete (no valid seal) and nothing valid follows it: a **torn tail** from a
//!   crash mid-write; it was never acknowledged (acks wait for the sync after the seal), so it is
//!   zeroed and the log resumes at the batch start;
//! - anything else (a bad record or CRC followed by a later valid seal or segment, or a complete batch
//!   whose CRC fails): **corruption**; start-up is refused, naming the file and byte offset, unless the
//!   operator asked to truncate there (`truncate_corrupt`), which drops everything after it.

// Reads whatever a crash left on disk: no indexing that can panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use super::dispatch::DispatchInfo;
use super::error::StoreError;
use super::io::{BLOCK_BYTES, Disk, DiskFile, align_down, align_up, segment_path};
use super::log::{RecoveredTail, SEAL_BYTES, SEAL_MAGIC, decode_seal};
use crate::protocol::command::be_u32;
use crate::protocol::message::{BLANK_MAGIC, MESSAGE_MAGIC, RECORD_FIXED_BYTES, StoredMessage};
use bytes::Bytes;
use std::path::Path;
use std::rc::Rc;

const WINDOW_BYTES: u64 = 4 << 20;

/// What recovery found.
pub struct ScanOutcome {
    pub tail: RecoveredTail,
    /// Records past the checkpoint, in log order, to re-dispatch into consume queues and the index.
    pub records: Vec<DispatchInfo>,
    /// `(offset, bytes)` of a torn tail (or operator-approved corrupt range) that was zeroed.
    pub truncated: Option<(u64, u64)>,
}

/// A sliding read window over one segment; bytes past the end of the file read as zeros.
struct Window<F> {
    file: Rc<F>,
    seg_bytes: u64,
    start: u64,
    data: Bytes,
}

impl<F: DiskFile> Window<F> {
    /// Rewrites the seal at segment-relative `rel` (whole aligned blocks, synced) and forgets the
    /// window so later reads see it.
    async fn rewrite_seal(&mut self, rel: u64, seal: &[u8]) -> std::io::Result<()> {
        let first = align_down(rel);
        let end = align_up(rel + seal.len() as u64).min(self.seg_bytes);
        let mut blocks = self.file.read_at(first, (end - first) as usize).await?.to_vec();
        blocks.resize((end - first) as usize, 0);
        let at = (rel - first) as usize;
        blocks
            .get_mut(at..at + seal.len())
            .ok_or_else(|| std::io::Error::other("seal outside the blocks read for it"))?
            .copy_from_slice(seal);
        self.file.write_at(&blocks, first).await?;
        self.file.sync().await?;
        self.data = Bytes::new();
        self.start = 0;
        Ok(())
    }
}

impl<F: DiskFile> Window<F> {
    async fn get(&mut self, rel: u64, n: usize) -> std::io::Result<Bytes> {
        let end = rel + n as u64;
        if rel < self.start || end > self.start + self.data.len() as u64 {
            let len = WINDOW_BYTES.max(n as u64).min(self.seg_bytes - rel) as usize;
            let mut data = self.file.read_at(rel, len).await?.to_vec();
            data.resize(len, 0);
            self.start = rel;
            self.data = Bytes::from(data);
        }
        let off = (rel - self.start) as usize;
        Ok(self.data.slice(off..(off + n).min(self.data.len())))
    }
}

enum Step {
    /// Zeros: the log's data ends here.
    End,
    /// A blank marker: continue at the next segment.
    NextSegment,
    Failure(String),
}

/// Scans the log from `from` (a batch boundary recorded by the checkpoint) to its end.
pub async fn scan<D: Disk>(
    disk: &D,
    dir: &Path,
    seg_bytes: u64,
    from: u64,
    truncate_corrupt: bool,
    rules: &dyn super::dispatch::DispatchRules,
) -> Result<ScanOutcome, StoreError> {
    let starts = segment_starts(disk, dir, seg_bytes)?;
    let first = starts.first().copied().unwrap_or(from - from % seg_bytes);
    let mut pos = from.max(first);
    let mut records = Vec::new();
    let mut truncated = None;
    for (i, &seg) in starts.iter().enumerate() {
        if seg + seg_bytes <= pos {
            continue;
        }
        let path = segment_path(dir, seg);
        let file = disk.open(&path).await.map_err(|e| StoreError::io(&path, &e))?;
        let mut win = Window { file: file.clone(), seg_bytes, start: 0, data: Bytes::new() };
        let (step, batch_start, batch, torn) = scan_segment(&mut win, seg, pos, &path, rules).await?;
        records.extend(batch);
        let reason = match step {
            Step::NextSegment => {
                pos = seg + seg_bytes;
                continue;
            }
            Step::End if !later_has_data(disk, dir, starts.get(i + 1..).unwrap_or_default()).await? => {
                pos = batch_start;
                break;
            }
            Step::End => "data ends in zeros but a later segment holds data".to_string(),
            Step::Failure(r) => r,
        };
        let (later_seal, last_nonzero) = find_later_seal(&mut win, seg, batch_start).await?;
        let later_segment = later_has_data(disk, dir, starts.get(i + 1..).unwrap_or_default()).await?;
        if (later_seal || later_segment) && !truncate_corrupt {
            return Err(StoreError::Corrupt {
                file: path,
                offset: batch_start - seg,
                log_offset: batch_start,
                reason: format!("{reason}; valid data follows, so this is not a torn tail"),
            });
        }
        for &s in starts.get(i + 1..).unwrap_or_default().iter().filter(|_| later_segment) {
            let p = segment_path(dir, s);
            disk.remove(&p).await.map_err(|e| StoreError::io(&p, &e))?;
        }
        zero_range(&*file, seg, batch_start, last_nonzero).await.map_err(|e| StoreError::io(&path, &e))?;
        let bytes = last_nonzero.saturating_sub(batch_start);
        let queues: std::collections::BTreeSet<String> = torn
            .iter()
            .filter(|r| r.to_queue)
            .map(|r| format!("{}:{}@{}", r.topic, r.queue_id, r.queue_offset))
            .collect();
        tracing::warn!(file = %path.display(), offset = batch_start - seg, log_range = ?(batch_start..last_nonzero),
            bytes, records = torn.len(), queues = ?queues, %reason,
            "truncated the commit log's tail: an incomplete batch without a valid seal (never acknowledged under \
             flush = sync, which acknowledges only after the seal is synced and shows readers only synced \
             records, so its queue offsets are free again; under flush = async it may have been acknowledged)");
        truncated = Some((batch_start, bytes));
        pos = batch_start;
        break;
    }
    let partial_block = read_partial_block(disk, dir, seg_bytes, pos).await?;
    Ok(ScanOutcome { tail: RecoveredTail { write_pos: pos, partial_block }, records, truncated })
}

/// Whether `offset` (a checkpoint's) is a batch boundary inside the log: the start of the log or of
/// a segment, or the end of a valid seal. A checkpoint pointing mid-batch or past the log would
/// make the scan take good records for a torn tail.
pub async fn check_boundary<D: Disk>(disk: &D, dir: &Path, seg_bytes: u64, offset: u64) -> Result<(), String> {
    if offset == 0 {
        return Ok(());
    }
    let starts = segment_starts(disk, dir, seg_bytes).map_err(|e| e.to_string())?;
    let seg = offset - offset % seg_bytes;
    let rel = offset - seg;
    if rel == 0 {
        let prev = seg.checked_sub(seg_bytes);
        return if starts.contains(&seg) || prev.is_some_and(|p| starts.contains(&p)) {
            Ok(())
        } else {
            Err(format!("no segment holds log offset {offset}"))
        };
    }
    if !starts.contains(&seg) {
        return Err(format!("no segment holds log offset {offset}"));
    }
    if rel < SEAL_BYTES {
        return Err(format!("log offset {offset} is not the end of a batch"));
    }
    let path = segment_path(dir, seg);
    let file = disk.open(&path).await.map_err(|e| e.to_string())?;
    let seal = file.read_at(rel - SEAL_BYTES, SEAL_BYTES as usize).await.map_err(|e| e.to_string())?;
    match decode_seal(&seal) {
        Some((start, _)) if start < offset => Ok(()),
        _ => Err(format!("log offset {offset} is not the end of a sealed batch")),
    }
}

fn segment_starts<D: Disk>(disk: &D, dir: &Path, seg_bytes: u64) -> Result<Vec<u64>, StoreError> {
    let mut starts = Vec::new();
    for name in disk.list(dir).map_err(|e| StoreError::io(dir, &e))? {
        let Ok(start) = name.parse::<u64>() else {
            continue;
        };
        if name.len() != 20 || start % seg_bytes != 0 {
            return Err(StoreError::Corrupt {
                file: dir.join(&name),
                offset: 0,
                log_offset: start,
                reason: format!("segment name is not a multiple of the {seg_bytes}-byte segment size"),
            });
        }
        starts.push(start);
    }
    starts.sort_unstable();
    Ok(starts)
}

/// Scans one segment from `pos`. Returns how it ended, the start of the last unfinished batch (where
/// the log resumes), the dispatch info of every sealed record, and the records of the unfinished
/// batch that decoded (what a truncation would remove).
async fn scan_segment<F: DiskFile>(
    win: &mut Window<F>,
    seg: u64,
    mut pos: u64,
    path: &Path,
    rules: &dyn super::dispatch::DispatchRules,
) -> Result<(Step, u64, Vec<DispatchInfo>, Vec<DispatchInfo>), StoreError> {
    let seg_bytes = win.seg_bytes;
    let io_err = |e: std::io::Error| StoreError::io(path, &e);
    let mut done = Vec::new();
    let mut pending = Vec::new();
    let mut batch_start = pos;
    let mut crc = crc32fast::Hasher::new();
    loop {
        let rel = pos - seg;
        if rel + 8 > seg_bytes {
            return Ok((Step::Failure("record runs past the segment end".into()), batch_start, done, pending));
        }
        let head = win.get(rel, 8).await.map_err(io_err)?;
        // A short read (a file cut off by a crash) reads as zeros: the end of the log.
        let size = be_u32(&head, 0).unwrap_or(0) as u64;
        let magic = be_u32(&head, 4).unwrap_or(0);
        if size == 0 && magic == 0 {
            let step = if pending.is_empty() { Step::End } else { Step::Failure("batch ends without a seal".into()) };
            return Ok((step, batch_start, done, pending));
        }
        if size < 8 || rel + size > seg_bytes {
            return Ok((Step::Failure(format!("record size {size} is impossible here")), batch_start, done, pending));
        }
        match magic {
            MESSAGE_MAGIC if size >= RECORD_FIXED_BYTES as u64 => {
                let rec = win.get(rel, size as usize).await.map_err(io_err)?;
                let msg = match StoredMessage::decode(&rec) {
                    Ok(m) if m.physical_offset == pos => m,
                    Ok(m) => {
                        let r = format!("record claims offset {} but sits at {pos}", m.physical_offset);
                        return Ok((Step::Failure(r), batch_start, done, pending));
                    }
                    Err(e) => return Ok((Step::Failure(e.to_string()), batch_start, done, pending)),
                };
                crc.update(&rec);
                pending.push(DispatchInfo::from_stored(&msg, crc32fast::hash(&rec), rules));
            }
            SEAL_MAGIC => {
                let rec = win.get(rel, SEAL_BYTES as usize).await.map_err(io_err)?;
                let expected = std::mem::replace(&mut crc, crc32fast::Hasher::new()).finalize();
                match decode_seal(&rec) {
                    Some((start, c)) if start == batch_start && c == expected => {
                        done.append(&mut pending);
                        batch_start = pos + SEAL_BYTES;
                    }
                    // The seal itself is damaged (its own CRC fails) while every record of its batch
                    // is complete, in place and passes its body CRC: the batch is not torn — it was
                    // written whole and may have been acknowledged. Repair the seal from the verified
                    // records and say so, rather than drop the batch (a seal whose own CRC holds but
                    // whose batch CRC differs means a damaged record: that stays corruption).
                    None if !pending.is_empty() => {
                        let seal = super::log::encode_seal(batch_start, expected);
                        win.rewrite_seal(rel, &seal).await.map_err(io_err)?;
                        tracing::warn!(file = %path.display(), offset = rel, batch_start, records = pending.len(),
                            "repaired a damaged batch seal: every record of its batch verified");
                        done.append(&mut pending);
                        batch_start = pos + SEAL_BYTES;
                    }
                    _ => {
                        return Ok((
                            Step::Failure("batch seal or batch CRC mismatch".into()),
                            batch_start,
                            done,
                            pending,
                        ));
                    }
                }
            }
            BLANK_MAGIC if pending.is_empty() && rel + size == seg_bytes => {
                return Ok((Step::NextSegment, batch_start, done, pending));
            }
            _ => {
                return Ok((Step::Failure(format!("unknown record magic {magic:#010x}")), batch_start, done, pending));
            }
        }
        pos += size;
    }
}

/// Looks past `batch_start` for a valid seal of a later batch (evidence of corruption rather than a
/// torn write) and for the end of non-zero data. Returns `(found, end of last non-zero block)`.
async fn find_later_seal<F: DiskFile>(
    win: &mut Window<F>,
    seg: u64,
    batch_start: u64,
) -> Result<(bool, u64), StoreError> {
    let mut rel = batch_start - seg;
    let mut last_nonzero = batch_start;
    let magic = SEAL_MAGIC.to_be_bytes();
    while rel < win.seg_bytes {
        let n = WINDOW_BYTES.min(win.seg_bytes - rel) as usize;
        let data = win.get(rel, n).await.map_err(|e| StoreError::io("segment", &e))?;
        if let Some(i) = data.iter().rposition(|&b| b != 0) {
            last_nonzero = seg + rel + i as u64 + 1;
        }
        for i in 0..data.len().saturating_sub(SEAL_BYTES as usize - 1) {
            if data.get(i + 4..i + 8) == Some(&magic[..])
                && let Some((start, _)) = data.get(i..i + SEAL_BYTES as usize).and_then(decode_seal)
                && start >= batch_start
                && start < seg + rel + i as u64
            {
                return Ok((true, last_nonzero));
            }
        }
        // Overlap windows so a seal straddling the boundary is seen.
        rel += (n as u64).saturating_sub(SEAL_BYTES).max(1);
    }
    Ok((false, last_nonzero))
}

async fn later_has_data<D: Disk>(disk: &D, dir: &Path, later: &[u64]) -> Result<bool, StoreError> {
    for &s in later {
        let path = segment_path(dir, s);
        let f = disk.open(&path).await.map_err(|e| StoreError::io(&path, &e))?;
        let head = f.read_at(0, 8).await.map_err(|e| StoreError::io(&path, &e))?;
        if head.iter().any(|&b| b != 0) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Zeroes `[from, to)` of a segment (keeping the bytes before `from` in its first block) and syncs.
async fn zero_range<F: DiskFile>(file: &F, seg: u64, from: u64, to: u64) -> std::io::Result<()> {
    if to <= from {
        return Ok(());
    }
    let first = align_down(from - seg);
    let end = align_up(to - seg);
    let mut block = file.read_at(first, BLOCK_BYTES as usize).await?.to_vec();
    block.resize(BLOCK_BYTES as usize, 0);
    if let Some(tail) = block.get_mut((from - seg - first) as usize..) {
        tail.fill(0);
    }
    file.write_at(&block, first).await?;
    let zeros = vec![0u8; 1 << 20];
    let mut pos = first + BLOCK_BYTES;
    while pos < end {
        let n = (end - pos).min(zeros.len() as u64) as usize;
        file.write_at(zeros.get(..n).unwrap_or_default(), pos).await?;
        pos += n as u64;
    }
    file.sync().await
}

async fn read_partial_block<D: Disk>(disk: &D, dir: &Path, seg_bytes: u64, pos: u64) -> Result<Vec<u8>, StoreError> {
    let mut block = vec![0u8; BLOCK_BYTES as usize];
    let base = align_down(pos);
    if base == pos {
        return Ok(block);
    }
    let seg = pos - pos % seg_bytes;
    let path = segment_path(dir, seg);
    let f = disk.open(&path).await.map_err(|e| StoreError::io(&path, &e))?;
    let data = f.read_at(base - seg, BLOCK_BYTES as usize).await.map_err(|e| StoreError::io(&path, &e))?;
    let n = data.len().min(block.len());
    block.get_mut(..n).unwrap_or_default().copy_from_slice(data.get(..n).unwrap_or_default());
    Ok(block)
}
