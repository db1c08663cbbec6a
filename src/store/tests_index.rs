//! The key index on disk: lookups across sealed files and the in-memory tier, after restarts and
//! retention; memory bounded by the seal size; damaged sealed files dropped and rebuilt from the log;
//! a seal cut short at every sync by a power cut leaves a store that opens without a rebuild and
//! still finds every key.

use super::fake_disk::FakeDisk;
use super::*;
use crate::protocol::message::properties_encode;
use futures_lite::future::block_on;

const SEAL: u64 = 50;

fn cfg(dir: &std::path::Path) -> StoreConfig {
    let mut c = StoreConfig::new(dir);
    c.segment_bytes = 64 << 10;
    c.cq_window_entries = 8;
    c.index_seal_entries = SEAL;
    c
}

/// Sends messages `from..to` (keys `key<i>`, and `dup` on every tenth) in batches of 20, flushing and
/// checkpointing after each batch, as the shard's checkpointer would.
fn send(s: &Store<FakeDisk>, from: u64, to: u64) {
    block_on(async {
        let mut i = from;
        while i < to {
            let batch: Vec<_> = (i..(i + 20).min(to))
                .map(|n| {
                    let keys = if n % 10 == 0 { format!("key{n} dup") } else { format!("key{n}") };
                    let props = properties_encode([("KEYS", keys.as_str())]);
                    MessageToStore::simple("T", (n % 2) as i32, Bytes::from(vec![b'x'; 200]), props)
                })
                .collect();
            i += batch.len() as u64;
            s.put(&batch, false).await.unwrap();
            s.log().flush_once().await.unwrap();
            s.checkpoint_now().unwrap();
        }
    });
}

fn found(s: &Store<FakeDisk>, key: &str) -> Vec<u64> {
    s.index_lookup("T", key, 0, i64::MAX, 1000)
}

fn sealed_paths(disk: &FakeDisk, dir: &std::path::Path) -> Vec<PathBuf> {
    let idx = dir.join("index");
    disk.small_files()
        .paths()
        .into_iter()
        .filter(|p| p.starts_with(&idx) && p.extension().is_some_and(|e| e == "idx"))
        .collect()
}

#[test]
fn lookups_span_sealed_files_and_memory_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let disk = FakeDisk::new();
    let s = block_on(Store::open(disk.clone(), cfg(dir.path()))).unwrap();
    send(&s, 0, 1000);
    let (in_memory, sealed, damaged) = s.index_stats();
    // 1 100 entries (1 000 keys + 100 dups): 22 sealed files of 50, sealed as checkpoints reach them.
    assert_eq!((sealed, damaged), (22, 0));
    assert!(in_memory < SEAL + 25, "memory holds at most a seal's worth plus a batch ({in_memory})");
    assert_eq!(sealed_paths(&disk, dir.path()).len(), 22);
    let check = |s: &Store<FakeDisk>| {
        for i in (0..1000).step_by(7) {
            assert_eq!(found(s, &format!("key{i}")).len(), 1, "key{i}");
        }
        let dups = found(s, "dup");
        assert_eq!(dups.len(), 100, "every occurrence, across every file");
        assert!(dups.windows(2).all(|w| w[0] > w[1]), "newest first");
        assert_eq!(s.index_lookup("T", "dup", 0, i64::MAX, 5).len(), 5, "max is honoured");
        assert!(found(s, "absent").is_empty());
        assert!(s.index_lookup("U", "key1", 0, i64::MAX, 9).is_empty(), "keys are per topic");
    };
    check(&s);
    drop(s);
    let s = block_on(Store::open(disk.clone(), cfg(dir.path()))).unwrap();
    assert_eq!(s.rebuilt_derived(), 0, "sealed files open, not rebuilt");
    assert!(s.index_stats().0 < SEAL + 25, "a restart loads only the active file");
    check(&s);
    send(&s, 1000, 1200);
    assert_eq!(found(&s, "dup").len(), 120);
}

#[test]
fn retention_lets_go_of_sealed_files_and_their_keys() {
    let dir = tempfile::tempdir().unwrap();
    let disk = FakeDisk::new();
    let s = block_on(Store::open(disk.clone(), cfg(dir.path()))).unwrap();
    send(&s, 0, 1000);
    let before = sealed_paths(&disk, dir.path()).len();
    s.set_usage_probe(Box::new(|| Ok(DiskUsage { total_bytes: 1000, available_bytes: 100 })));
    let deleted = block_on(s.run_retention(now_ms())).unwrap();
    assert!(deleted > 0);
    let log_min = s.log().min_pos();
    s.checkpoint_now().unwrap(); // nothing new in the log: owed for the expired files alone
    let after = sealed_paths(&disk, dir.path()).len();
    assert!(after < before, "expired sealed files are removed ({before} → {after})");
    assert_eq!(after as u64, s.index_stats().1);
    let check = |s: &Store<FakeDisk>| {
        for i in 0..1000u64 {
            let hits = found(s, &format!("key{i}"));
            assert!(hits.len() <= 1);
            if let Some(&phys) = hits.first()
                && phys >= log_min
            {
                assert!(block_on(s.read_record(phys)).is_ok());
            }
        }
        assert_eq!(found(s, "key999").len(), 1, "retained keys are found");
    };
    check(&s);
    drop(s);
    let s = block_on(Store::open(disk.clone(), cfg(dir.path()))).unwrap();
    assert_eq!(s.rebuilt_derived(), 0, "the files left after retention verify");
    check(&s);
}

#[test]
fn a_damaged_sealed_file_is_dropped_and_the_next_start_rebuilds_it_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let disk = FakeDisk::new();
    let s = block_on(Store::open(disk.clone(), cfg(dir.path()))).unwrap();
    send(&s, 0, 200);
    let first = sealed_paths(&disk, dir.path())[0].clone();
    assert!(disk.small_files().flip_bit(&first, index::sealed::HEADER_BYTES + 64, 3));
    // The slot table is the first body block: any lookup that reaches this file reads it.
    assert!(found(&s, "key1").is_empty(), "a damaged file answers nothing");
    assert_eq!(s.index_stats().2, 1, "counted as damaged");
    assert!(!disk.small_files().paths().contains(&first), "and removed");
    assert_eq!(found(&s, "key199").len(), 1, "other files still answer");
    // Checkpoints and seals after the damage must keep its range owed (regression: the manifest's
    // sealed range moved past a damaged oldest file, hiding the gap from the next start).
    send(&s, 200, 300);
    drop(s);
    let s = block_on(Store::open(disk.clone(), cfg(dir.path()))).unwrap();
    assert_eq!(s.rebuilt_derived(), 1, "the gap sends the store to its rebuild from the log");
    for i in 0..300 {
        assert_eq!(found(&s, &format!("key{i}")).len(), 1, "key{i} after the rebuild");
    }
}

#[test]
fn a_seal_cut_short_by_a_power_cut_at_any_sync_loses_no_key_and_forces_no_rebuild() {
    for n in 0..16 {
        let dir = tempfile::tempdir().unwrap();
        let disk = FakeDisk::new();
        {
            let s = block_on(Store::open(disk.clone(), cfg(dir.path()))).unwrap();
            send(&s, 0, 40); // 44 entries: the next checkpoint seals
            block_on(async {
                let batch: Vec<_> = (40..60)
                    .map(|n| {
                        let props = properties_encode([("KEYS", format!("key{n}").as_str())]);
                        MessageToStore::simple("T", 0, Bytes::from(vec![b'y'; 100]), props)
                    })
                    .collect();
                s.put(&batch, false).await.unwrap();
                s.log().flush_once().await.unwrap();
            });
            disk.small_files().fail_syncs_after(n);
            let _ = s.checkpoint_now(); // fails at its n-th sync (or completes, for large n)
        }
        disk.crash(n);
        let s = block_on(Store::open(disk.clone(), cfg(dir.path()))).unwrap();
        assert_eq!(s.rebuilt_derived(), 0, "cut after {n} syncs: the previous checkpoint's files verify");
        for i in 0..60 {
            assert_eq!(found(&s, &format!("key{i}")).len(), 1, "cut after {n} syncs: key{i}");
        }
        s.checkpoint_now().unwrap();
        drop(s);
        let s = block_on(Store::open(disk.clone(), cfg(dir.path()))).unwrap();
        assert_eq!((s.rebuilt_derived(), s.index_stats().1), (0, 1), "cut after {n} syncs, then sealed");
    }
}

#[test]
fn keys_arriving_faster_than_a_seal_per_checkpoint_are_all_sealed_by_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let disk = FakeDisk::new();
    let s = block_on(Store::open(disk.clone(), cfg(dir.path()))).unwrap();
    block_on(async {
        for b in 0..50u64 {
            let batch: Vec<_> = (b * 20..(b + 1) * 20)
                .map(|n| {
                    let props = properties_encode([("KEYS", format!("key{n}").as_str())]);
                    MessageToStore::simple("T", 0, Bytes::from(vec![b'z'; 50]), props)
                })
                .collect();
            s.put(&batch, false).await.unwrap();
        }
        s.log().flush_once().await.unwrap();
    });
    s.checkpoint_now().unwrap(); // 1 000 keys since the last checkpoint: 20 seals in one job
    let (in_memory, sealed, _) = s.index_stats();
    assert_eq!((in_memory, sealed), (0, 20), "memory and the active file stay under one seal");
    assert_eq!(found(&s, "key999").len(), 1);
    assert_eq!(found(&s, "key0").len(), 1);
}
