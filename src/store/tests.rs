//! Store tests on the fault-injecting fake disk: appends and reads, segment rolls, recovery after
//! crashes that drop or tear unsynced writes, corruption detection, fsync failure, retention, disk full,
//! and a property test against a simple model.

use super::checkpoint::Checkpoint;
use super::fake_disk::FakeDisk;
use super::files::Files;
use super::io::segment_path;
use super::*;
use crate::protocol::message::{StoredMessage, properties_encode};
use futures_lite::future::block_on;
use proptest::prelude::*;

const SEG: u64 = 64 << 10;

fn cfg(dir: &std::path::Path) -> StoreConfig {
    let mut c = StoreConfig::new(dir);
    c.segment_bytes = SEG;
    // A tiny in-memory window: every test also reads entries back from the queue files.
    c.cq_window_entries = 4;
    c.tail_cache_bytes = 16 << 10;
    c.read_cache_bytes = 8 << 10;
    c
}

fn msg(topic: &str, queue_id: i32, body: &[u8], tag: &str) -> MessageToStore {
    let props = properties_encode([("TAGS", tag), ("KEYS", "k1 k2")]);
    MessageToStore::simple(topic, queue_id, Bytes::copy_from_slice(body), props)
}

fn open(disk: &FakeDisk, c: &StoreConfig) -> Result<Store<FakeDisk>, StoreError> {
    block_on(Store::open(disk.clone(), c.clone()))
}

fn put_acked(s: &Store<FakeDisk>, m: MessageToStore) -> Placement {
    block_on(async {
        let p = s.put(&[m], false).await.unwrap()[0];
        s.log().flush_once().await.unwrap();
        p
    })
}

fn all(s: &Store<FakeDisk>, topic: &str, q: i32) -> Vec<StoredMessage> {
    let r = block_on(s.get(topic, q, 0, 10_000, usize::MAX, &|_| true, &|_| true));
    r.records.iter().map(|b| StoredMessage::decode(b).unwrap()).collect()
}

#[test]
fn append_read_and_dense_queue_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let disk = FakeDisk::new();
    let s = open(&disk, &cfg(dir.path())).unwrap();
    for i in 0..10u8 {
        let p = put_acked(&s, msg("T", (i % 2) as i32, &[i; 100], "a"));
        assert_eq!(p.queue_offset, (i / 2) as u64);
    }
    assert_eq!(s.queue_bounds("T", 0), (0, 5));
    let got = all(&s, "T", 1);
    assert_eq!(got.len(), 5);
    assert!(got.iter().enumerate().all(|(i, m)| m.queue_offset == i as u64 && m.body[0] % 2 == 1));
    let filtered = block_on(s.get("T", 0, 0, 32, usize::MAX, &|code| code == 1, &|_| true));
    assert_eq!(filtered.status, GetStatus::NoMatchedMessage);
    assert_eq!(block_on(s.get("T", 0, 5, 32, 1 << 20, &|_| true, &|_| true)).status, GetStatus::OffsetOverflowOne);
    assert_eq!(block_on(s.get("T", 0, 9, 32, 1 << 20, &|_| true, &|_| true)).status, GetStatus::OffsetOverflowBadly);
    assert_eq!(block_on(s.get("X", 0, 0, 32, 1 << 20, &|_| true, &|_| true)).status, GetStatus::NoMessageInQueue);
    assert_eq!(s.index_lookup("T", "k2", 0, i64::MAX, 100).len(), 10);
}

#[test]
fn sync_mode_hides_unflushed_records() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&FakeDisk::new(), &cfg(dir.path())).unwrap();
    block_on(s.put(&[msg("T", 0, b"x", "a")], false)).unwrap();
    assert_eq!(s.queue_bounds("T", 0), (0, 0));
    block_on(s.log().flush_once()).unwrap();
    assert_eq!(s.queue_bounds("T", 0), (0, 1));
}

#[test]
fn rolls_segments_and_recovers_across_them() {
    let dir = tempfile::tempdir().unwrap();
    let disk = FakeDisk::new();
    let c = cfg(dir.path());
    {
        let s = open(&disk, &c).unwrap();
        for i in 0..300u32 {
            put_acked(&s, msg("T", 0, &i.to_be_bytes().repeat(100), "a"));
        }
        assert!(s.log().segment_starts().len() >= 3, "150 KB of records over 64 KiB segments must roll");
        assert_eq!(all(&s, "T", 0).len(), 300);
    }
    let s = open(&disk, &c).unwrap();
    let got = all(&s, "T", 0);
    assert_eq!(got.len(), 300);
    for (i, m) in got.iter().enumerate() {
        assert_eq!(&m.body[..4], &(i as u32).to_be_bytes());
    }
    assert_eq!(put_acked(&s, msg("T", 0, b"next", "a")).queue_offset, 300);
}

#[test]
fn checkpoint_files_load_and_replay_tail() {
    let dir = tempfile::tempdir().unwrap();
    let disk = FakeDisk::new();
    let c = cfg(dir.path());
    {
        let s = open(&disk, &c).unwrap();
        for i in 0..50u8 {
            put_acked(&s, msg("T", 0, &[i; 50], "a"));
        }
        s.checkpoint_now().unwrap();
        for i in 50..80u8 {
            put_acked(&s, msg("T", 0, &[i; 50], "a"));
        }
    }
    let cp = Checkpoint::load(disk.small_files(), &dir.path().join("checkpoint")).unwrap().unwrap();
    assert!(cp.log_offset > 0);
    let s = open(&disk, &c).unwrap();
    assert_eq!(s.queue_bounds("T", 0), (0, 80));
    assert_eq!(all(&s, "T", 0)[79].body[0], 79);
}

#[test]
fn torn_tail_is_truncated_and_acked_data_kept() {
    for seed in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let disk = FakeDisk::new();
        let c = cfg(dir.path());
        let s = open(&disk, &c).unwrap();
        for i in 0..20u8 {
            put_acked(&s, msg("T", 0, &[i; 300], "a"));
        }
        // Unacknowledged: appended and written but never synced.
        disk.fail_next_sync();
        block_on(s.put(&[msg("T", 0, &[99; 3000], "a")], false)).unwrap();
        assert!(block_on(s.log().flush_once()).is_err());
        drop(s);
        disk.crash(seed);
        let s = open(&disk, &c).unwrap();
        let got = all(&s, "T", 0);
        // The unacknowledged record may survive whole or vanish; the acknowledged ones all remain.
        assert!(got.len() == 20 || got.len() == 21, "seed {seed}: {}", got.len());
        assert!(got.iter().take(20).enumerate().all(|(i, m)| m.body[..] == [i as u8; 300]));
        assert_eq!(put_acked(&s, msg("T", 0, b"after", "a")).queue_offset, got.len() as u64);
    }
}

#[test]
fn mid_log_bit_flip_is_refused_with_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let disk = FakeDisk::new();
    let c = cfg(dir.path());
    {
        let s = open(&disk, &c).unwrap();
        for i in 0..20u8 {
            put_acked(&s, msg("T", 0, &[i; 300], "a"));
        }
    }
    // Flip a byte in the topic of the third record (not covered by RocketMQ's body CRC).
    let path = segment_path(&dir.path().join("commitlog"), 0);
    let third = 2 * (91 + 300 + 1 + properties_encode([("TAGS", "a"), ("KEYS", "k1 k2")]).len() as u64 + 24);
    assert!(disk.flip_bit(&path, third + 91 + 300 + 1, 3));
    match open(&disk, &c) {
        Err(StoreError::Corrupt { file, offset, .. }) => {
            assert_eq!(file, path);
            assert_eq!(offset, third);
        }
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("corruption not detected"),
    }
    let mut forced = c.clone();
    forced.truncate_corrupt = true;
    let s = open(&disk, &forced).unwrap();
    assert_eq!(s.queue_bounds("T", 0), (0, 2));
}

#[test]
fn durable_writes_commit_without_fdatasync_and_survive_a_crash() {
    for seed in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let disk = FakeDisk::with_durable_writes();
        let c = cfg(dir.path());
        let s = open(&disk, &c).unwrap();
        let syncs = disk.syncs();
        for i in 0..10u8 {
            put_acked(&s, msg("T", 0, &[i; 700], "a"));
        }
        assert_eq!(disk.syncs(), syncs, "a group commit under O_DSYNC needs no fdatasync");
        block_on(s.put(&[msg("T", 0, &[99; 700], "a")], false)).unwrap(); // never committed
        drop(s);
        disk.crash(seed);
        let got = all(&open(&disk, &c).unwrap(), "T", 0);
        assert_eq!(got.len(), 10, "seed {seed}");
        assert!(got.iter().enumerate().all(|(i, m)| m.body[..] == [i as u8; 700]));
    }
}

#[test]
fn failed_durable_write_poisons_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let disk = FakeDisk::with_durable_writes();
    let s = open(&disk, &cfg(dir.path())).unwrap();
    disk.fail_next_sync(); // the write's own flush fails
    block_on(s.put(&[msg("T", 0, b"x", "a")], false)).unwrap();
    assert!(matches!(block_on(s.log().flush_once()), Err(StoreError::Poisoned(_))));
    assert!(matches!(block_on(s.put(&[msg("T", 0, b"y", "a")], false)), Err(StoreError::Poisoned(_))));
}

#[test]
fn failed_fsync_poisons_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let disk = FakeDisk::new();
    let s = open(&disk, &cfg(dir.path())).unwrap();
    disk.fail_next_sync();
    block_on(s.put(&[msg("T", 0, b"x", "a")], false)).unwrap();
    assert!(matches!(block_on(s.log().flush_once()), Err(StoreError::Poisoned(_))));
    assert!(matches!(block_on(s.put(&[msg("T", 0, b"y", "a")], false)), Err(StoreError::Poisoned(_))));
    assert!(s.log().poisoned().is_some());
}

#[test]
fn retention_deletes_oldest_segments_and_moves_min_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let disk = FakeDisk::new();
    let s = open(&disk, &cfg(dir.path())).unwrap();
    for i in 0..400u32 {
        put_acked(&s, msg("T", 0, &i.to_be_bytes().repeat(100), "a"));
    }
    s.checkpoint_now().unwrap(); // retention deletes only what a checkpoint covers
    let segs = s.log().segment_starts().len();
    let used = std::rc::Rc::new(std::cell::Cell::new(0.80));
    let u = used.clone();
    s.set_usage_probe(Box::new(move || {
        let total = 1000u64;
        Ok(DiskUsage { total_bytes: total, available_bytes: (total as f64 * (1.0 - u.get())) as u64 })
    }));
    // Each deletion frees space in this fake: lower usage once two segments are gone.
    let deleted = block_on(s.run_retention(now_ms())).unwrap();
    assert_eq!(deleted, segs - 1, "usage stays high, so all but the active segment go");
    let (min, max) = s.queue_bounds("T", 0);
    assert!(min > 0 && max == 400);
    let first = block_on(s.get("T", 0, min, 10, usize::MAX, &|_| true, &|_| true));
    assert_eq!(StoredMessage::decode(&first.records[0]).unwrap().queue_offset, min);
    let too_small = block_on(s.get("T", 0, 0, 32, 1 << 20, &|_| true, &|_| true));
    assert_eq!((too_small.status, too_small.next_offset), (GetStatus::OffsetTooSmall, min));
    assert!(s.disk_full().is_none());
}

#[test]
fn retention_never_deletes_a_segment_a_checkpoint_has_not_covered() {
    let dir = tempfile::tempdir().unwrap();
    let disk = FakeDisk::new();
    let s = open(&disk, &cfg(dir.path())).unwrap();
    for i in 0..400u32 {
        put_acked(&s, msg("T", 0, &i.to_be_bytes().repeat(100), "a"));
    }
    s.set_usage_probe(Box::new(|| Ok(DiskUsage { total_bytes: 1000, available_bytes: 100 })));
    // Not checkpointed: deleting now would drop queue and index entries never written to files.
    assert_eq!(block_on(s.run_retention(now_ms())).unwrap(), 0);
    assert_eq!(s.queue_bounds("T", 0), (0, 400));
    s.checkpoint_now().unwrap();
    assert!(block_on(s.run_retention(now_ms())).unwrap() > 0, "covered now");
}

#[test]
fn disk_full_refuses_appends_keeps_reads_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&FakeDisk::new(), &cfg(dir.path())).unwrap();
    put_acked(&s, msg("T", 0, b"before", "a"));
    let used = std::rc::Rc::new(std::cell::Cell::new(0.95));
    let u = used.clone();
    s.set_usage_probe(Box::new(move || {
        Ok(DiskUsage { total_bytes: 1000, available_bytes: (1000.0 * (1.0 - u.get())) as u64 })
    }));
    block_on(s.run_retention(now_ms())).unwrap();
    assert_eq!(s.disk_full(), Some(95));
    assert!(matches!(block_on(s.put(&[msg("T", 0, b"x", "a")], false)), Err(StoreError::DiskFull { .. })));
    assert_eq!(all(&s, "T", 0).len(), 1);
    used.set(0.5);
    block_on(s.run_retention(now_ms())).unwrap();
    assert_eq!(s.disk_full(), None);
    put_acked(&s, msg("T", 0, b"after", "a"));
}

#[derive(Debug, Clone)]
enum Op {
    Append {
        queue: i32,
        len: usize,
    },
    Flush,
    Crash {
        seed: u64,
    },
    Flip {
        pos: u64,
        bit: u8,
    },
    Checkpoint,
    /// A checkpoint whose first sync (or write) of a small file fails.
    FailedCheckpoint {
        write: bool,
    },
    /// One bit flipped at rest in a file derived from the log (consume queue, index, checkpoint),
    /// then a restart.
    FlipDerived {
        pick: usize,
        pos: u64,
        bit: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..3i32, 1..2000usize).prop_map(|(queue, len)| Op::Append { queue, len }),
        3 => Just(Op::Flush),
        1 => any::<u64>().prop_map(|seed| Op::Crash { seed }),
        1 => (0..(SEG * 3), 0..8u8).prop_map(|(pos, bit)| Op::Flip { pos, bit }),
        1 => Just(Op::Checkpoint),
        1 => any::<bool>().prop_map(|write| Op::FailedCheckpoint { write }),
        1 => (any::<usize>(), any::<u64>(), 0..8u8).prop_map(|(pick, pos, bit)| Op::FlipDerived { pick, pos, bit }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Model: per queue, the list of acknowledged bodies. After every crash + recovery, each acked
    /// record reads back byte-identical, offsets stay dense, nothing is duplicated; every injected bit
    /// flip is either reported as corruption or lies in data that was never acknowledged.
    #[test]
    fn store_matches_model_across_crashes(ops in proptest::collection::vec(op(), 1..60), dsync in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let disk = if dsync { FakeDisk::with_durable_writes() } else { FakeDisk::new() };
        let c = cfg(dir.path());
        let mut store = Some(open(&disk, &c).unwrap());
        let mut acked: Vec<Vec<Vec<u8>>> = vec![Vec::new(); 3];
        let mut unacked: Vec<(i32, Vec<u8>)> = Vec::new();
        let mut counter = 0u32;
        for op in ops {
            let s = store.as_ref().unwrap();
            match op {
                Op::Append { queue, len } => {
                    counter += 1;
                    let body: Vec<u8> = counter.to_be_bytes().iter().cycle().take(len.max(4)).copied().collect();
                    block_on(s.put(&[msg("T", queue, &body, "t")], false)).unwrap();
                    unacked.push((queue, body));
                }
                Op::Flush => {
                    block_on(s.log().flush_once()).unwrap();
                    for (q, b) in unacked.drain(..) { acked[q as usize].push(b); }
                }
                Op::Checkpoint => { s.checkpoint_now().unwrap(); }
                Op::Crash { seed } => {
                    drop(store.take());
                    disk.crash(seed);
                    let s = open(&disk, &c).unwrap();
                    // Records that were not acknowledged may or may not survive; adopt survivors.
                    for (q, b) in unacked.drain(..) {
                        let got = all(&s, "T", q);
                        if got.len() > acked[q as usize].len() { acked[q as usize].push(b); }
                    }
                    check_model(&s, &acked)?;
                    store = Some(s);
                }
                Op::FailedCheckpoint { write } => {
                    let files = disk.small_files();
                    if write { files.fail_next_write() } else { files.fail_next_sync() }
                    let _ = s.checkpoint_now(); // may fail; nothing acknowledged depends on it
                    files.clear_faults();
                }
                Op::FlipDerived { pick, pos, bit } => {
                    block_on(s.log().flush_once()).unwrap();
                    for (q, b) in unacked.drain(..) { acked[q as usize].push(b); }
                    drop(store.take());
                    let files = disk.small_files();
                    let paths = files.paths();
                    if !paths.is_empty() {
                        let path = &paths[pick % paths.len()];
                        let len = files.read(path).map(|d| d.len() as u64).unwrap_or(0);
                        if len > 0 {
                            files.flip_bit(path, pos % len, bit);
                        }
                    }
                    // Derived files are caches of the log: damage is rebuilt, never a refusal.
                    let s = open(&disk, &c).map_err(|e| TestCaseError::fail(format!("refused: {e}")))?;
                    check_model(&s, &acked)?;
                    store = Some(s);
                }
                Op::Flip { pos, bit } => {
                    block_on(s.log().flush_once()).unwrap();
                    for (q, b) in unacked.drain(..) { acked[q as usize].push(b); }
                    let seg = pos - pos % SEG;
                    let path = segment_path(&dir.path().join("commitlog"), seg);
                    let end = s.log().flushed_pos();
                    drop(store.take());
                    if pos >= end || !disk.flip_bit(&path, pos % SEG, bit) {
                        store = Some(open(&disk, &c).unwrap());
                        continue;
                    }
                    // A flip inside acknowledged data must be detected: either start-up refuses, or
                    // the record holding it is never served.
                    match open(&disk, &c) {
                        Err(StoreError::Corrupt { .. }) => return Ok(()),
                        Err(e) => prop_assert!(false, "unexpected error {}", e),
                        Ok(s2) => {
                            prop_assert!(not_served(&s2, pos), "flip at {} was served", pos);
                            return Ok(());
                        }
                    }
                }
            }
        }
    }
}

/// Every acknowledged record reads back byte-identical at its queue offset, offsets are dense and
/// nothing is reused, and the key index finds every record.
fn check_model(s: &Store<FakeDisk>, acked: &[Vec<Vec<u8>>]) -> Result<(), TestCaseError> {
    for q in 0..3 {
        let got = all(s, "T", q);
        prop_assert_eq!(got.len(), acked[q as usize].len());
        prop_assert_eq!(s.queue_bounds("T", q).1, acked[q as usize].len() as u64, "next offset of queue {}", q);
        for (i, m) in got.iter().enumerate() {
            prop_assert_eq!(m.queue_offset, i as u64);
            prop_assert_eq!(&m.body[..], &acked[q as usize][i][..]);
        }
    }
    let total: usize = acked.iter().map(Vec::len).sum();
    prop_assert_eq!(s.index_lookup("T", "k1", 0, i64::MAX, usize::MAX).len(), total, "key index incomplete");
    Ok(())
}

/// True when `pos` is not inside any record the store serves.
fn not_served(s: &Store<FakeDisk>, pos: u64) -> bool {
    (0..3).all(|q| {
        let r = block_on(s.get("T", q, 0, 10_000, usize::MAX, &|_| true, &|_| true));
        r.records.iter().all(|b| {
            let m = StoredMessage::decode(b).map(|m| m.physical_offset).unwrap_or(u64::MAX);
            !(m..m + b.len() as u64).contains(&pos)
        })
    })
}

/// Regression: retention deleted a segment that had just been rolled past while its last bytes were
/// still waiting for the flusher, and the next flush panicked on the missing file.
#[test]
fn retention_never_deletes_a_segment_with_unflushed_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&FakeDisk::new(), &cfg(dir.path())).unwrap();
    s.set_usage_probe(Box::new(|| Ok(DiskUsage { total_bytes: 1000, available_bytes: 200 })));
    for i in 0..200u32 {
        block_on(s.put(&[msg("T", 0, &i.to_be_bytes().repeat(100), "a")], false)).unwrap();
        if i % 7 == 0 {
            block_on(s.run_retention(now_ms())).unwrap();
        }
    }
    block_on(s.log().flush_once()).unwrap();
    let (min, max) = s.queue_bounds("T", 0);
    assert_eq!(max, 200);
    assert!(min < max);
}

#[test]
fn prewriting_a_segment_syncs_as_it_goes() {
    // A group commit after an unsynced pre-write would carry the whole segment's zeros.
    let dir = tempfile::tempdir().unwrap();
    let disk = FakeDisk::new();
    let mut c = cfg(dir.path());
    c.segment_bytes = 64 << 20;
    c.flush = FlushMode::Sync;
    let s = open(&disk, &c).unwrap();
    let before = disk.syncs();
    block_on(s.log().prepare_next()).unwrap();
    assert_eq!(disk.syncs() - before, 3, "one sync per 32 MiB of zeros, and one at the end");
}

#[test]
fn slow_first_sends_next_segment_is_not_prewritten_before_the_active_one_is_a_quarter_full() {
    // Pre-writing the next segment right at start made the first sync sends wait behind its zeros.
    let dir = tempfile::tempdir().unwrap();
    let s = open(&FakeDisk::new(), &cfg(dir.path())).unwrap();
    assert!(!s.log().needs_next_segment(), "a fresh store pre-writes its next segment at once");
    while s.log().write_pos() < SEG / 4 {
        put_acked(&s, msg("T", 0, &[7; 1000], "a"));
    }
    assert!(s.log().needs_next_segment(), "a quarter-full segment has no successor prepared");
}

/// A store whose segments (256 MiB) are larger than the pre-writer's lead, with the path of its
/// first segment.
fn store_with_large_segments(dir: &std::path::Path, disk: &FakeDisk) -> (StoreConfig, Store<FakeDisk>, PathBuf) {
    let mut c = cfg(dir);
    c.segment_bytes = 256 << 20;
    let s = open(disk, &c).unwrap();
    (c, s, segment_path(&dir.join("commitlog"), 0))
}

const LEAD: u64 = super::log::ACTIVE_LEAD_BYTES;

#[test]
fn fresh_store_serves_before_its_first_segment_is_zero_filled() {
    // A fresh shard zero-filled its whole first segment (1 GiB, 3.5 s here) before serving.
    let dir = tempfile::tempdir().unwrap();
    let disk = FakeDisk::new();
    let (_, s, seg0) = store_with_large_segments(dir.path(), &disk);
    assert_eq!(disk.len_of(&seg0), 0, "nothing is zero-filled at open");
    assert!(s.log().prewrite_due());
    block_on(s.log().run_prewrite()).unwrap();
    assert_eq!(disk.len_of(&seg0), LEAD, "the lead ahead of the appends, synced");
    assert!(!s.log().prewrite_due(), "a full lead is not refilled");
    // Past half the lead the pre-writer is due again and extends it from the write position.
    while s.log().write_pos() < LEAD / 2 + (1 << 20) {
        block_on(async {
            s.put(&vec![msg("T", 0, &[3; 4000], "a"); 64], false).await.unwrap();
            s.log().flush_once().await.unwrap();
        });
    }
    assert_eq!(disk.len_of(&seg0), LEAD, "appends overwrite zeros; the file does not grow");
    assert!(s.log().prewrite_due());
    block_on(s.log().run_prewrite()).unwrap();
    let want = super::io::align_up(s.log().write_pos()) + LEAD;
    assert_eq!(disk.len_of(&seg0), want);
    assert_eq!(s.queue_bounds("T", 0).1, all(&s, "T", 0).len() as u64);
}

#[test]
fn appends_past_the_zeroed_lead_grow_the_file_and_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let disk = FakeDisk::new();
    let (c, s, seg0) = store_with_large_segments(dir.path(), &disk);
    for i in 0..100u8 {
        put_acked(&s, msg("T", 0, &[i; 500], "a"));
    }
    drop(s);
    disk.crash(7);
    let s = open(&disk, &c).unwrap();
    let got = all(&s, "T", 0);
    assert_eq!(got.len(), 100, "every acknowledged message, written past any zeros");
    assert!(got.iter().enumerate().all(|(i, m)| m.body[0] == i as u8));
    block_on(s.log().run_prewrite()).unwrap();
    assert_eq!(disk.len_of(&seg0), super::io::align_up(s.log().write_pos()) + LEAD);
    put_acked(&s, msg("T", 0, &[200; 500], "a"));
    assert_eq!(all(&s, "T", 0).len(), 101);
}

#[test]
fn read_cache_never_serves_zeros_cached_past_the_durable_end() {
    // Regression: a disk read of the block holding the log's end cached the zeros past it; once the
    // tail cache had let the records appended there go, raw log reads (a master's replication
    // stream) were served those zeros.
    let dir = tempfile::tempdir().unwrap();
    let disk = FakeDisk::new();
    let c = cfg(dir.path());
    {
        let s = open(&disk, &c).unwrap();
        for i in 0..60u8 {
            put_acked(&s, msg("T", 0, &[i; 100], "a"));
        }
    }
    let s = open(&disk, &c).unwrap();
    assert!(s.log().write_pos() > 8192, "the end must lie past the first aligned block");
    block_on(s.log().read(0, 64)).unwrap();
    let placed: Vec<Placement> = (60..250u8).map(|i| put_acked(&s, msg("T", 0, &[i; 100], "a"))).collect();
    for (i, p) in placed.iter().enumerate() {
        let rec = block_on(s.log().read(p.physical_offset, p.size as usize)).unwrap();
        let m = StoredMessage::decode(&rec).unwrap();
        assert_eq!(m.body[0] as usize, i + 60);
    }
}

#[test]
fn a_record_that_cannot_be_read_is_never_skipped_by_a_pull() {
    // Regression: a pull that could not read a record (an I/O error, not retention) skipped it and
    // served the ones after it, so a consumer committed past a message it never saw; a repeated
    // kill -9 failover run once missed 89 acknowledged messages that way.
    let dir = tempfile::tempdir().unwrap();
    let disk = FakeDisk::new();
    let mut c = cfg(dir.path());
    c.read_cache_bytes = 0; // every read goes to the file, record by record
    let placed: Vec<Placement> = {
        let s = open(&disk, &c).unwrap();
        (0..20u8).map(|i| put_acked(&s, msg("T", 0, &[i; 100], "a"))).collect()
    };
    let s = open(&disk, &c).unwrap(); // nothing cached: reads go to the disk
    disk.fail_reads_past(Some(placed[7].physical_offset + 1));
    let r = block_on(s.get("T", 0, 0, 32, 1 << 20, &|_| true, &|_| true));
    assert_eq!((r.status, r.records.len(), r.next_offset), (GetStatus::Found, 7, 7), "served up to the unreadable one");
    let r = block_on(s.get("T", 0, 7, 32, 1 << 20, &|_| true, &|_| true));
    assert_eq!((r.status, r.records.len(), r.next_offset), (GetStatus::Unreadable, 0, 7), "refused, not skipped");
    disk.fail_reads_past(None);
    let r = block_on(s.get("T", 0, 7, 32, 1 << 20, &|_| true, &|_| true));
    assert_eq!((r.status, r.records.len(), r.next_offset), (GetStatus::Found, 13, 20));
}
