//! Replication at the store level, on the fault-injecting fake disk: a slave store appends what a
//! master store holds, frame by frame as the stream sends it (across segment rolls), and ends with
//! the same bytes, queues and index; a slave that diverged truncates to where the epochs part and
//! then follows again; the truncation survives a crash that drops unsynced writes.

use super::batches::walk_sealed;
use super::fake_disk::FakeDisk;
use super::replicas::ReplicaRole;
use super::*;
use crate::protocol::message::{StoredMessage, properties_encode};
use futures_lite::future::block_on;

const SEG: u64 = 64 << 10;

fn cfg(dir: &std::path::Path) -> StoreConfig {
    let mut c = StoreConfig::new(dir);
    c.segment_bytes = SEG;
    c.cq_window_entries = 4;
    c
}

fn put(s: &Store<FakeDisk>, n: u32, tag: &str) {
    block_on(async {
        for i in 0..n {
            let props = properties_encode([("KEYS", format!("{tag}{i}").as_str())]);
            let m = MessageToStore::simple("T", (i % 2) as i32, Bytes::from(format!("{tag}-{i}").repeat(100)), props);
            s.put(&[m], false).await.unwrap();
            s.log().flush_once().await.unwrap();
        }
    })
}

/// Streams what `m` holds durably and `s` lacks, as the master's stream does.
fn replicate(m: &Store<FakeDisk>, s: &Store<FakeDisk>) {
    block_on(async {
        loop {
            let (from, end) = (s.log().write_pos(), m.log().flushed_pos());
            if from >= end {
                break;
            }
            let seg_end = from - from % SEG + SEG;
            let bytes = m.log().read(from, (end.min(seg_end) - from) as usize).await.unwrap();
            let run = walk_sealed(&bytes, from, SEG).unwrap();
            let (epoch, start, _) = m.epochs().epoch_at(from).unwrap();
            if (epoch, start) != s.epochs().last() {
                s.begin_epoch(epoch, start).await.unwrap();
            }
            s.append_replicated(from, &bytes.slice(..run.len)).await.unwrap();
            s.log().flush_once().await.unwrap();
        }
        // A slave shows consumers what its master confirmed.
        s.replicas.set_master_confirm(m.visible_limit());
    })
}

fn bodies(s: &Store<FakeDisk>, q: i32) -> Vec<Bytes> {
    let r = block_on(s.get("T", q, 0, 100_000, usize::MAX, &|_| true, &|_| true));
    r.records.iter().map(|b| StoredMessage::decode(b).unwrap().body).collect()
}

fn log_bytes(s: &Store<FakeDisk>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut pos = 0;
    let end = s.log().flushed_pos();
    while pos < end {
        let n = (end - pos).min(SEG - pos % SEG);
        out.extend_from_slice(&block_on(s.log().read(pos, n as usize)).unwrap());
        pos += n;
    }
    out
}

fn as_master(s: &Store<FakeDisk>, epoch: u32) {
    s.replicas.set_role(ReplicaRole::Master, epoch, 1);
    block_on(s.begin_epoch(epoch, s.log().write_pos())).unwrap();
}

#[test]
fn a_slave_ends_with_its_masters_bytes_queues_and_index() {
    let (dm, ds) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let m = block_on(Store::open(FakeDisk::new(), cfg(dm.path()))).unwrap();
    let s = block_on(Store::open(FakeDisk::new(), cfg(ds.path()))).unwrap();
    as_master(&m, 1);
    s.replicas.set_role(ReplicaRole::Slave, 1, 1);
    put(&m, 150, "a");
    assert!(m.log().segment_starts().len() >= 2, "the test must cross a segment roll");
    replicate(&m, &s);
    assert!(log_bytes(&s) == log_bytes(&m));
    for q in 0..2 {
        assert_eq!(s.queue_bounds("T", q), m.queue_bounds("T", q));
        assert_eq!(bodies(&s, q), bodies(&m, q));
    }
    assert_eq!(s.index_lookup("T", "a17", 0, i64::MAX, 10), m.index_lookup("T", "a17", 0, i64::MAX, 10));
    assert!(matches!(
        block_on(s.put(&[MessageToStore::simple("T", 0, Bytes::new(), String::new())], false)),
        Err(StoreError::NotMaster)
    ));
}

#[test]
fn damaged_replicated_bytes_are_refused_and_nothing_is_appended() {
    let (dm, ds) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let m = block_on(Store::open(FakeDisk::new(), cfg(dm.path()))).unwrap();
    let s = block_on(Store::open(FakeDisk::new(), cfg(ds.path()))).unwrap();
    as_master(&m, 1);
    s.replicas.set_role(ReplicaRole::Slave, 1, 1);
    put(&m, 5, "a");
    let bytes = block_on(m.log().read(0, m.log().flushed_pos() as usize)).unwrap();
    let mut bad = bytes.to_vec();
    bad[100] ^= 0x40;
    let err = block_on(s.append_replicated(0, &Bytes::from(bad))).unwrap_err();
    assert!(matches!(err, StoreError::Damaged { .. }), "{err}");
    let cut = bytes.slice(..bytes.len() - 3);
    assert!(block_on(s.append_replicated(0, &cut)).is_err(), "a frame ending inside a batch");
    assert_eq!((s.log().write_pos(), s.queue_bounds("T", 0)), (0, (0, 0)));
}

#[test]
fn a_diverged_slave_truncates_where_the_epochs_part_and_follows_again() {
    let (dm, ds) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let m = block_on(Store::open(FakeDisk::new(), cfg(dm.path()))).unwrap();
    let disk = FakeDisk::new();
    let c = cfg(ds.path());
    let s = block_on(Store::open(disk.clone(), c.clone())).unwrap();
    as_master(&m, 1);
    s.replicas.set_role(ReplicaRole::Slave, 1, 1);
    put(&m, 60, "a");
    replicate(&m, &s);
    let parted = s.log().write_pos();
    // The slave was elected in an epoch its old master never learned of, and took sends there...
    as_master(&s, 2);
    put(&s, 90, "x");
    // ...while the old master went on in epoch 1.
    put(&m, 40, "b");
    s.replicas.set_role(ReplicaRole::Slave, 2, 1);
    let to = s.epochs().truncation_point(s.log().write_pos(), &m.epochs(), m.log().flushed_pos());
    assert_eq!(to, parted);
    block_on(s.truncate_to(to)).unwrap();
    assert_eq!((s.log().write_pos(), s.epochs().last()), (parted, (1, 0)));
    assert!(bodies(&s, 0).iter().all(|b| !b.starts_with(b"x-")), "the diverged records are gone");
    assert!(s.index_lookup("T", "x3", 0, i64::MAX, 10).is_empty());
    replicate(&m, &s);
    assert!(log_bytes(&s) == log_bytes(&m), "a block read back right after the truncation was served stale");
    assert_eq!(bodies(&s, 1), bodies(&m, 1));
    // A crash that drops everything unsynced keeps the truncation and what followed it.
    let end = s.log().flushed_pos();
    drop(s);
    disk.crash(7);
    let s = block_on(Store::open(disk, c)).unwrap();
    assert_eq!(s.log().write_pos(), end);
    assert_eq!(bodies(&s, 0), bodies(&m, 0));
    assert_eq!(s.epochs().last(), (1, 0));
}
