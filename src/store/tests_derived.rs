//! Damage to the files derived from the log (consume queues, key index, checkpoint): the store must
//! notice, rebuild from the log, keep every acknowledged message at its original queue offset, and
//! never hand a queue offset out twice. A property test damages a random derived file in a random way.

use super::checkpoint::Checkpoint;
use super::fake_disk::FakeDisk;
use super::files::Files;
use super::*;
use crate::protocol::message::properties_encode;
use futures_lite::future::block_on;
use proptest::prelude::*;

const SEG: u64 = 64 << 10;

fn cfg(dir: &std::path::Path) -> StoreConfig {
    let mut c = StoreConfig::new(dir);
    c.segment_bytes = SEG;
    // A tiny in-memory window: every test also reads entries back from the queue files.
    c.cq_window_entries = 4;
    c
}

fn put_acked(s: &Store<FakeDisk>, topic: &str, q: i32, body: Vec<u8>, key: &str) -> Placement {
    let props = properties_encode([("TAGS", "a"), ("KEYS", key)]);
    block_on(async {
        let p = s.put(&[MessageToStore::simple(topic, q, Bytes::from(body), props)], false).await.unwrap()[0];
        s.log().flush_once().await.unwrap();
        p
    })
}

/// Writes `n` messages over two topics × two queues with a checkpoint in the middle and at the end;
/// returns (topic, queue, queue offset, body) of each.
fn populate(s: &Store<FakeDisk>, n: usize) -> Vec<(String, i32, u64, Vec<u8>)> {
    let mut sent = Vec::new();
    for i in 0..n {
        let (topic, q) = (if i % 3 == 0 { "A" } else { "B" }, (i % 2) as i32);
        let body = format!("message {i}").into_bytes();
        let p = put_acked(s, topic, q, body.clone(), &format!("key{i}"));
        sent.push((topic.to_string(), q, p.queue_offset, body));
        if i == n / 2 {
            s.checkpoint_now().unwrap();
        }
    }
    s.checkpoint_now().unwrap();
    sent
}

/// Every acknowledged message is readable at its queue offset, the key index finds it, and the next
/// append to each queue gets the offset after the last one (nothing reused).
fn check(s: &Store<FakeDisk>, sent: &[(String, i32, u64, Vec<u8>)]) {
    for (topic, q, off, body) in sent {
        let r = block_on(s.get(topic, *q, *off, 1, usize::MAX, &|_| true, &|_| true));
        assert_eq!(r.status, GetStatus::Found, "{topic}:{q}@{off} lost");
        assert_eq!(StoredMessage::decode(&r.records[0]).unwrap().body[..], body[..], "{topic}:{q}@{off} altered");
    }
    for (i, _) in sent.iter().enumerate().step_by(7) {
        assert_eq!(s.index_lookup(&sent[i].0, &format!("key{i}"), 0, i64::MAX, 4).len(), 1, "key{i} not indexed");
    }
    for topic in ["A", "B"] {
        for q in 0..2 {
            let next = sent.iter().filter(|m| m.0 == topic && m.1 == q).map(|m| m.2 + 1).max().unwrap_or(0);
            assert_eq!(s.queue_bounds(topic, q).1, next, "{topic}:{q} would reuse offsets");
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    Delete,
    Truncate,
    Garbage,
    FlipHighByte,
}

#[derive(Debug, Clone, Copy)]
enum Target {
    QueueFile,
    Index,
    Checkpoint,
}

fn damage(disk: &FakeDisk, dir: &std::path::Path, target: Target, how: Damage, seed: u64) {
    let files = disk.small_files();
    let path = match target {
        Target::QueueFile => {
            let q = dir
                .join("consumequeue")
                .join(if seed.is_multiple_of(2) { "A" } else { "B" })
                .join((seed / 2 % 2).to_string());
            q.join(format!("{:020}", 0))
        }
        Target::Index => dir.join("index").join("keys"),
        Target::Checkpoint => dir.join("checkpoint"),
    };
    let data = files.read(&path).unwrap_or_default();
    match how {
        Damage::Delete => files.delete(&path),
        Damage::Truncate => files.put_durable(&path, &data[..data.len() / 2]),
        Damage::Garbage => {
            let mut x = seed | 1;
            let junk: Vec<u8> = (0..data.len().max(64))
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            files.put_durable(&path, &junk);
        }
        Damage::FlipHighByte => {
            let mut d = data;
            if !d.is_empty() {
                // The high byte of an entry's physical offset (queue: 24-byte entries; index: offset at +4).
                let i = match target {
                    Target::QueueFile => (seed as usize % (d.len() / 24).max(1)) * 24,
                    Target::Index => (seed as usize % (d.len() / 20).max(1)) * 20 + 4,
                    Target::Checkpoint => seed as usize % d.len(),
                };
                let last = d.len() - 1;
                d[i.min(last)] ^= 0x40;
            }
            files.put_durable(&path, &d);
        }
    }
}

#[test]
fn damaged_derived_files_are_rebuilt_from_the_log_without_losing_or_reusing_offsets() {
    for target in [Target::QueueFile, Target::Index, Target::Checkpoint] {
        for how in [Damage::Delete, Damage::Truncate, Damage::Garbage, Damage::FlipHighByte] {
            let dir = tempfile::tempdir().unwrap();
            let disk = FakeDisk::new();
            let c = cfg(dir.path());
            let sent = {
                let s = block_on(Store::open(disk.clone(), c.clone())).unwrap();
                populate(&s, 60)
            };
            damage(&disk, dir.path(), target, how, 3);
            let s =
                block_on(Store::open(disk.clone(), c.clone())).unwrap_or_else(|e| panic!("{target:?} {how:?}: {e}"));
            check(&s, &sent);
            // And once more after the rebuilt files were checkpointed.
            s.checkpoint_now().unwrap();
            drop(s);
            let s = block_on(Store::open(disk.clone(), c.clone())).unwrap();
            assert_eq!(s.rebuilt_derived(), 0, "{target:?} {how:?}: rebuilt files did not verify next time");
            check(&s, &sent);
        }
    }
}

#[test]
fn an_intact_restart_rebuilds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let disk = FakeDisk::new();
    let c = cfg(dir.path());
    let sent = {
        let s = block_on(Store::open(disk.clone(), c.clone())).unwrap();
        populate(&s, 40)
    };
    let s = block_on(Store::open(disk.clone(), c.clone())).unwrap();
    assert_eq!(s.rebuilt_derived(), 0);
    check(&s, &sent);
}

#[test]
fn checkpoint_mid_batch_or_past_the_log_is_ignored_not_trusted() {
    for bad_offset in [None, Some(1u64 << 50), Some(7)] {
        let dir = tempfile::tempdir().unwrap();
        let disk = FakeDisk::new();
        let c = cfg(dir.path());
        let sent = {
            let s = block_on(Store::open(disk.clone(), c.clone())).unwrap();
            populate(&s, 30)
        };
        let path = dir.path().join("checkpoint");
        let mut cp = Checkpoint::load(disk.small_files(), &path).unwrap().unwrap();
        // A valid checksum around a wrong offset: mid-record (last record + 7), or past the log.
        cp.log_offset = bad_offset.map_or(cp.log_offset - 30, |o| if o == 7 { cp.log_offset / 2 + 7 } else { o });
        disk.small_files().put_durable(&path, &cp.encode());
        let s = block_on(Store::open(disk.clone(), c.clone())).unwrap();
        check(&s, &sent);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]
    #[test]
    fn random_damage_to_a_derived_file_loses_nothing(n in 5usize..80, t in 0u8..3, h in 0u8..4, seed in 0u64..1000) {
        let target = [Target::QueueFile, Target::Index, Target::Checkpoint][t as usize];
        let how = [Damage::Delete, Damage::Truncate, Damage::Garbage, Damage::FlipHighByte][h as usize];
        let dir = tempfile::tempdir().unwrap();
        let disk = FakeDisk::new();
        let c = cfg(dir.path());
        let sent = {
            let s = block_on(Store::open(disk.clone(), c.clone())).unwrap();
            populate(&s, n)
        };
        damage(&disk, dir.path(), target, how, seed);
        let s = block_on(Store::open(disk.clone(), c.clone())).unwrap();
        check(&s, &sent);
    }
}

#[test]
fn damaged_last_seal_of_a_complete_batch_is_repaired_not_truncated() {
    use super::io::segment_path;
    let dir = tempfile::tempdir().unwrap();
    let disk = FakeDisk::new();
    let c = cfg(dir.path());
    let (sent, end) = {
        let s = block_on(Store::open(disk.clone(), c.clone())).unwrap();
        let sent = populate(&s, 10);
        (sent, s.log().write_pos())
    };
    // One bit of the last seal's batch CRC (its own CRC no longer matches); every record is intact.
    let path = segment_path(&dir.path().join("commitlog"), 0);
    assert!(disk.flip_bit(&path, end - 24 + 17, 2));
    let s = block_on(Store::open(disk.clone(), c.clone())).unwrap();
    check(&s, &sent);
    assert_eq!(s.log().write_pos(), end, "the acknowledged batch was truncated");
    drop(s);
    let s = block_on(Store::open(disk.clone(), c.clone())).unwrap();
    check(&s, &sent);
}

#[test]
fn intact_seal_over_a_damaged_record_is_still_corruption() {
    use super::io::segment_path;
    let dir = tempfile::tempdir().unwrap();
    let disk = FakeDisk::new();
    let c = cfg(dir.path());
    let end = {
        let s = block_on(Store::open(disk.clone(), c.clone())).unwrap();
        populate(&s, 10);
        s.log().write_pos()
    };
    // Remove the checkpoint so that the scan covers the whole log; flip a property byte of the last
    // record (its seal still verifies itself, the batch CRC does not).
    disk.small_files().delete(&dir.path().join("checkpoint"));
    let path = segment_path(&dir.path().join("commitlog"), 0);
    assert!(disk.flip_bit(&path, end - 24 - 3, 1));
    assert!(matches!(block_on(Store::open(disk.clone(), c.clone())), Err(StoreError::Corrupt { .. })));
}

/// Regression: queues rebuilt from a log whose head retention had deleted start mid-file; their
/// leading zero entries cut the files to nothing at the next start, so every later start rebuilt.
#[test]
fn queues_rebuilt_after_retention_verify_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let disk = FakeDisk::new();
    let c = cfg(dir.path());
    let sent = {
        let s = block_on(Store::open(disk.clone(), c.clone())).unwrap();
        let sent = populate(&s, 1200);
        s.set_usage_probe(Box::new(|| Ok(DiskUsage { total_bytes: 1000, available_bytes: 50 })));
        block_on(s.run_retention(now_ms())).unwrap();
        assert!(s.log().min_pos() > 0, "retention deleted nothing");
        sent
    };
    disk.small_files().delete(&dir.path().join("checkpoint")); // forces a rebuild from the log
    let s = block_on(Store::open(disk.clone(), c.clone())).unwrap();
    s.checkpoint_now().unwrap();
    drop(s);
    let s = block_on(Store::open(disk.clone(), c.clone())).unwrap();
    assert_eq!(s.rebuilt_derived(), 0, "queues rebuilt mid-file did not verify");
    let mut kept = 0;
    for (topic, q, off, body) in &sent {
        if *off < s.queue_bounds(topic, *q).0 {
            continue;
        }
        let r = block_on(s.get(topic, *q, *off, 1, usize::MAX, &|_| true, &|_| true));
        assert_eq!(r.status, GetStatus::Found, "{topic}:{q}@{off} lost");
        assert_eq!(StoredMessage::decode(&r.records[0]).unwrap().body[..], body[..]);
        kept += 1;
    }
    assert!(kept > 0 && kept < sent.len(), "kept {kept} of {}", sent.len());
}
