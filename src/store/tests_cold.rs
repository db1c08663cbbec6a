//! Consume queues larger than their in-memory window: reads behind it come from the queue files
//! (across file boundaries, after a restart), memory stays at the window, and retention moves the
//! minimum past deleted records it can only see in the files.

use super::consume_queue::CQ_FILE_ENTRIES;
use super::fake_disk::FakeDisk;
use super::files::Files;
use super::*;
use crate::protocol::message::StoredMessage;
use futures_lite::future::block_on;

pub(super) const WINDOW: usize = 16;

pub(super) fn cfg(dir: &std::path::Path, segment_bytes: u64) -> StoreConfig {
    let mut c = StoreConfig::new(dir);
    c.segment_bytes = segment_bytes;
    c.tail_cache_bytes = 16 << 10;
    c.read_cache_bytes = 64 << 10;
    c.cq_window_entries = WINDOW;
    c
}

pub(super) fn msg(i: u64) -> MessageToStore {
    MessageToStore::simple("T", 0, Bytes::copy_from_slice(&i.to_be_bytes()), String::new())
}

/// Appends `n` messages to T:0 in batches and checkpoints (which lets entries leave memory).
pub(super) fn fill(s: &Store<FakeDisk>, from: u64, n: u64) {
    block_on(async {
        let mut i = from;
        while i < from + n {
            let batch: Vec<_> = (i..(i + 256).min(from + n)).map(msg).collect();
            i += batch.len() as u64;
            s.put(&batch, false).await.unwrap();
            s.log().flush_once().await.unwrap();
        }
    });
    s.checkpoint_now().unwrap();
}

fn body_at(s: &Store<FakeDisk>, offset: u64) -> Option<u64> {
    let r = block_on(s.get("T", 0, offset, 1, usize::MAX, &|_| true, &|_| true));
    let m = StoredMessage::decode(r.records.first()?).unwrap();
    assert_eq!(m.queue_offset, offset);
    Some(u64::from_be_bytes(m.body[..8].try_into().unwrap()))
}

#[test]
fn entries_behind_the_window_are_read_from_files_and_memory_stays_at_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let s = block_on(Store::open(FakeDisk::new(), cfg(dir.path(), 1 << 20))).unwrap();
    fill(&s, 0, 5000);
    assert_eq!(s.entries_in_memory(), WINDOW, "only the window stays in memory");
    assert_eq!(s.queue_bounds("T", 0), (0, 5000));
    let r = block_on(s.get("T", 0, 0, 10_000, usize::MAX, &|_| true, &|_| true));
    assert_eq!(r.status, GetStatus::Found);
    assert!(s.cold_reads() > 0, "the old entries came from the files");
    for (i, rec) in r.records.iter().enumerate() {
        assert_eq!(StoredMessage::decode(rec).unwrap().queue_offset, i as u64);
    }
    for off in [0, 1, 2047, 2048, 4095, 4983, 4984, 4999] {
        assert_eq!(body_at(&s, off), Some(off), "offset {off}");
    }
    // Searching by time and reading by physical offset go through the same cold reads.
    let ts = block_on(s.store_time_at("T", 0, 10)).unwrap();
    assert!(block_on(s.offset_by_time("T", 0, ts)) <= 10);
    let e = block_on(s.entry("T", 0, 100)).unwrap();
    assert_eq!(block_on(s.read_message(e.physical_offset)).unwrap().queue_offset, 100);
}

#[test]
fn reads_cross_queue_file_boundaries_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let disk = FakeDisk::new();
    let n = CQ_FILE_ENTRIES + 500;
    {
        let s = block_on(Store::open(disk.clone(), cfg(dir.path(), 16 << 20))).unwrap();
        fill(&s, 0, n);
        for off in [CQ_FILE_ENTRIES - 2, CQ_FILE_ENTRIES - 1, CQ_FILE_ENTRIES, CQ_FILE_ENTRIES + 1] {
            assert_eq!(body_at(&s, off), Some(off));
        }
        let r = block_on(s.get("T", 0, CQ_FILE_ENTRIES - 3, 6, usize::MAX, &|_| true, &|_| true));
        assert_eq!(r.records.len(), 6, "one pull spans the two files");
    }
    // A restart opens the files without loading them into memory.
    let s = block_on(Store::open(disk, cfg(dir.path(), 16 << 20))).unwrap();
    assert_eq!(s.rebuilt_derived(), 0);
    assert_eq!(s.queue_bounds("T", 0), (0, n));
    assert!(s.entries_in_memory() <= WINDOW, "{} entries in memory after the restart", s.entries_in_memory());
    for off in [0, 1, CQ_FILE_ENTRIES - 1, CQ_FILE_ENTRIES, n - 1] {
        assert_eq!(body_at(&s, off), Some(off));
    }
    // Appends continue densely after the files.
    fill(&s, n, 10);
    assert_eq!(body_at(&s, n + 9), Some(n + 9));
}

#[test]
fn retention_moves_the_minimum_past_deleted_records_behind_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let s = block_on(Store::open(FakeDisk::new(), cfg(dir.path(), 64 << 10))).unwrap();
    fill(&s, 0, 3000);
    assert!(s.log().segment_starts().len() > 3);
    s.set_usage_probe(Box::new(|| Ok(DiskUsage { total_bytes: 1000, available_bytes: 100 })));
    let deleted = block_on(s.run_retention(now_ms())).unwrap();
    assert!(deleted > 0);
    let (min, max) = s.queue_bounds("T", 0);
    assert_eq!(max, 3000);
    assert!(min > 0 && min < max - WINDOW as u64, "the new minimum ({min}) lies in the files");
    // The minimum is exact: its record exists, the one before it was deleted.
    assert_eq!(body_at(&s, min), Some(min));
    let too_small = block_on(s.get("T", 0, min - 1, 1, usize::MAX, &|_| true, &|_| true));
    assert_eq!((too_small.status, too_small.next_offset), (GetStatus::OffsetTooSmall, min));
    let log_min = s.log().min_pos();
    let before = block_on(s.entry("T", 0, min)).unwrap();
    assert!(before.physical_offset >= log_min);
}

/// 2 full files and a part of a third, each message 200 B, in segments of 1 MiB.
fn two_full_files(disk: &FakeDisk, dir: &std::path::Path) -> u64 {
    let n = 2 * CQ_FILE_ENTRIES + 700;
    let s = block_on(Store::open(disk.clone(), cfg(dir, 1 << 20))).unwrap();
    fill(&s, 0, n);
    n
}

fn queue_file(dir: &std::path::Path, first: u64) -> std::path::PathBuf {
    dir.join("consumequeue").join("T").join("0").join(format!("{first:020}"))
}

#[test]
fn a_restart_reads_only_the_last_queue_file_and_a_full_file_is_checked_at_its_first_cold_read() {
    let dir = tempfile::tempdir().unwrap();
    let disk = FakeDisk::new();
    let n = two_full_files(&disk, dir.path());
    // A flip in the first (full) file: a restart does not read it, so it starts without a rebuild.
    assert!(disk.small_files().flip_bit(&queue_file(dir.path(), 0), 24 * 1000 + 3, 2));
    let s = block_on(Store::open(disk.clone(), cfg(dir.path(), 1 << 20))).unwrap();
    assert_eq!(s.rebuilt_derived(), 0, "full files are not read at start");
    assert_eq!(s.queue_bounds("T", 0), (0, n));
    // The second full file verifies at its first cold read and serves.
    assert_eq!(body_at(&s, CQ_FILE_ENTRIES + 5), Some(CQ_FILE_ENTRIES + 5));
    // The first does not: nothing of it is served, and it is removed for the next start to rebuild.
    let r = block_on(s.get("T", 0, 5, 1, usize::MAX, &|_| true, &|_| true));
    assert!(r.records.is_empty(), "nothing served from a damaged file ({:?})", r.status);
    assert!(!disk.small_files().paths().contains(&queue_file(dir.path(), 0)), "the damaged file is removed");
    drop(s);
    let s = block_on(Store::open(disk.clone(), cfg(dir.path(), 1 << 20))).unwrap();
    assert_eq!(s.rebuilt_derived(), 1, "the missing file sends the store to its rebuild");
    for off in [0, 5, 1000, CQ_FILE_ENTRIES, n - 1] {
        assert_eq!(body_at(&s, off), Some(off));
    }
}

#[test]
fn retention_removes_queue_files_below_the_minimum_after_the_next_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let disk = FakeDisk::new();
    let n = two_full_files(&disk, dir.path());
    let s = block_on(Store::open(disk.clone(), cfg(dir.path(), 1 << 20))).unwrap();
    let segments = s.log().segment_starts();
    // Delete the segments holding the first file's records and some of the second's.
    let cut = block_on(s.entry("T", 0, CQ_FILE_ENTRIES + 20_000)).unwrap().physical_offset;
    let keep = segments.iter().filter(|&&g| g + (1 << 20) > cut).count();
    // Each deletion asks for the usage once: over the limit exactly as often as segments must go.
    let over = std::cell::Cell::new(segments.len() - keep);
    s.set_usage_probe(Box::new(move || {
        let used = if over.get() > 0 { 900 } else { 100 };
        over.set(over.get().saturating_sub(1));
        Ok(DiskUsage { total_bytes: 1000, available_bytes: 1000 - used })
    }));
    block_on(s.run_retention(now_ms())).unwrap();
    assert_eq!(s.log().segment_starts().len(), keep);
    let (min, max) = s.queue_bounds("T", 0);
    assert!((CQ_FILE_ENTRIES..=CQ_FILE_ENTRIES + 20_000).contains(&min) && max == n, "minimum {min}");
    assert!(disk.small_files().paths().contains(&queue_file(dir.path(), 0)), "kept until a checkpoint");
    let expired = disk.small_files().read(&queue_file(dir.path(), 0)).unwrap();
    s.checkpoint_now().unwrap(); // no new data: owed for the expired file alone
    assert!(!disk.small_files().paths().contains(&queue_file(dir.path(), 0)), "removed after it");
    // A crash between that checkpoint and the removal leaves the file behind: the next start must
    // take it for a leftover, not for the queue's last file.
    disk.small_files().put_durable(&queue_file(dir.path(), 0), &expired);
    assert!(disk.small_files().paths().contains(&queue_file(dir.path(), CQ_FILE_ENTRIES)));
    drop(s);
    let s = block_on(Store::open(disk.clone(), cfg(dir.path(), 1 << 20))).unwrap();
    assert_eq!(s.rebuilt_derived(), 0, "the files left verify, the leftover is not mistaken for the last");
    assert!(!disk.small_files().paths().contains(&queue_file(dir.path(), 0)), "and the leftover is removed");
    assert_eq!(s.queue_bounds("T", 0), (min, n), "the minimum survives the restart");
    assert_eq!(body_at(&s, min), Some(min));
    assert_eq!(body_at(&s, n - 1), Some(n - 1));
}

#[test]
fn a_queue_whose_every_file_expired_goes_on_at_its_end_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let disk = FakeDisk::new();
    let s = block_on(Store::open(disk.clone(), cfg(dir.path(), 1 << 20))).unwrap();
    fill(&s, 0, CQ_FILE_ENTRIES); // exactly one full file
    // Other traffic moves the log on, so T:0's records can all be deleted.
    block_on(async {
        for _ in 0..40 {
            let batch: Vec<_> =
                (0..256).map(|_| MessageToStore::simple("U", 0, Bytes::from(vec![0u8; 64]), String::new())).collect();
            s.put(&batch, false).await.unwrap();
            s.log().flush_once().await.unwrap();
        }
    });
    s.checkpoint_now().unwrap();
    let last_t = block_on(s.entry("T", 0, CQ_FILE_ENTRIES - 1)).unwrap().physical_offset;
    let keep = s.log().segment_starts().iter().filter(|&&g| g + (1 << 20) > last_t).count() - 1;
    let over = std::cell::Cell::new(s.log().segment_starts().len() - keep);
    s.set_usage_probe(Box::new(move || {
        let used = if over.get() > 0 { 900 } else { 100 };
        over.set(over.get().saturating_sub(1));
        Ok(DiskUsage { total_bytes: 1000, available_bytes: 1000 - used })
    }));
    block_on(s.run_retention(now_ms())).unwrap();
    assert_eq!(s.queue_bounds("T", 0), (CQ_FILE_ENTRIES, CQ_FILE_ENTRIES), "every record of T:0 deleted");
    s.checkpoint_now().unwrap();
    assert!(!disk.small_files().paths().contains(&queue_file(dir.path(), 0)), "its only file removed");
    drop(s);
    let s = block_on(Store::open(disk.clone(), cfg(dir.path(), 1 << 20))).unwrap();
    assert_eq!(s.rebuilt_derived(), 0, "an empty queue directory at a file boundary verifies");
    assert_eq!(s.queue_bounds("T", 0), (CQ_FILE_ENTRIES, CQ_FILE_ENTRIES), "offsets are not handed out again");
    fill(&s, 0, 1);
    assert_eq!(s.queue_bounds("T", 0).1, CQ_FILE_ENTRIES + 1);
}
