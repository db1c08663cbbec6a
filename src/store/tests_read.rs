//! The pull read path (read.rs, log/cache.rs): records read in runs are still checked one by one,
//! readers missing one block at once read it once, and a sequential reader finds the next block
//! read ahead.

use super::fake_disk::FakeDisk;
use super::io::segment_path;
use super::tests_cold::{cfg, fill};
use super::*;
use crate::protocol::message::StoredMessage;
use futures_lite::future::block_on;
use std::time::Duration;

fn pull(s: &Store<FakeDisk>, offset: u64, max: usize) -> GetResult {
    block_on(s.get("T", 0, offset, max, usize::MAX, &|_| true, &|_| true))
}

#[test]
fn a_flipped_bit_inside_a_run_stops_the_pull_at_that_record() {
    let dir = tempfile::tempdir().unwrap();
    let disk = FakeDisk::new();
    let c = cfg(dir.path(), 1 << 20);
    let victim = {
        let s = Store::open(disk.clone(), c.clone());
        let s = block_on(s).unwrap();
        fill(&s, 0, 600);
        StoredMessage::decode(&pull(&s, 300, 1).records[0]).unwrap().physical_offset
    };
    let s = block_on(Store::open(disk.clone(), c)).unwrap(); // nothing cached
    assert!(disk.flip_bit(&segment_path(&dir.path().join("commitlog"), 0), victim + 95, 2));
    let r = pull(&s, 0, 1000);
    assert_eq!(
        (r.status, r.records.len(), r.next_offset),
        (GetStatus::Found, 300, 300),
        "served up to the damaged one"
    );
    for (i, rec) in r.records.iter().enumerate() {
        assert_eq!(StoredMessage::decode(rec).unwrap().queue_offset, i as u64);
    }
    let r = pull(&s, 300, 1000);
    assert_eq!((r.status, r.records.len(), r.next_offset), (GetStatus::Corrupt, 0, 300), "refused, not skipped");
}

#[test]
fn readers_missing_one_block_at_once_read_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let disk = FakeDisk::new();
    let mut c = cfg(dir.path(), 1 << 20);
    c.read_cache_bytes = 2 << 20;
    block_on(async {
        fill(&Store::open(disk.clone(), c.clone()).await.unwrap(), 0, 600);
        let s = Store::open(disk.clone(), c).await.unwrap(); // nothing cached
        let before = disk.reads();
        let one = s.get("T", 0, 0, 100, usize::MAX, &|_| true, &|_| true);
        let two = s.get("T", 0, 200, 100, usize::MAX, &|_| true, &|_| true);
        let (one, two) = futures_lite::future::zip(one, two).await;
        assert_eq!((one.records.len(), two.records.len()), (100, 100));
        assert_eq!(StoredMessage::decode(&two.records[0]).unwrap().queue_offset, 200);
        assert_eq!(disk.reads() - before, 1, "the second reader waited for the first one's read");
    });
}

#[test]
fn a_sequential_reader_finds_the_next_block_read_ahead() {
    let ex = crate::rt::executor::LocalExecutorBuilder::default()
        .name("read-ahead")
        .spawn(|| async {
            let dir = tempfile::tempdir().unwrap();
            let disk = FakeDisk::new();
            let mut c = cfg(dir.path(), 4 << 20);
            c.read_cache_bytes = 8 << 20;
            fill(&Store::open(disk.clone(), c.clone()).await.unwrap(), 0, 30_000);
            let s = Store::open(disk.clone(), c).await.unwrap(); // nothing cached
            let block = log::READ_BLOCK_BYTES;
            assert!(s.log().write_pos() > 2 * block, "the records span three blocks");
            let (reads, misses) = (disk.reads(), s.log().stats().disk_reads);
            let r = s.get("T", 0, 0, 1024, usize::MAX, &|_| true, &|_| true).await;
            let last = StoredMessage::decode(r.records.last().unwrap()).unwrap().physical_offset;
            assert!(last < block, "the first pull stays in the first block");
            let waited = std::time::Instant::now();
            while s.log().stats().disk_reads < misses + 2 {
                assert!(waited.elapsed() < Duration::from_secs(5), "the next block was never read ahead");
                crate::rt::sleep(Duration::from_millis(1)).await;
            }
            // The reader now walks into the second block without a miss of its own.
            let mut offset = r.next_offset;
            let hits = s.log().stats().read_cache_hits;
            while offset < 30_000 {
                let r = s.get("T", 0, offset, 1024, usize::MAX, &|_| true, &|_| true).await;
                assert_eq!(r.status, GetStatus::Found);
                offset = r.next_offset;
                let at = StoredMessage::decode(r.records.last().unwrap()).unwrap().physical_offset;
                if at >= block && at < 2 * block {
                    break;
                }
            }
            assert!(s.log().stats().read_cache_hits > hits);
            // The first block read by the reader, the second ahead of it, the third ahead of it
            // once it entered the second; a record across the first two blocks is put together
            // from both, not read on its own.
            assert_eq!(s.log().stats().disk_reads, misses + 3, "the second block came from the read ahead");
            while offset < 30_000 {
                offset = s.get("T", 0, offset, 1024, usize::MAX, &|_| true, &|_| true).await.next_offset;
            }
            assert_eq!(disk.reads() - reads, s.log().stats().disk_reads - misses, "no block was read twice");
        })
        .expect("executor starts");
    ex.join().expect("the test ran");
}

#[test]
fn reads_of_the_files_or_older_than_memory_are_catch_up_reads() {
    let dir = tempfile::tempdir().unwrap();
    let s = block_on(Store::open(FakeDisk::new(), cfg(dir.path(), 1 << 20))).unwrap();
    fill(&s, 0, 600);
    assert!(s.is_catch_up("T", 0, 0), "an entry only in the queue's files");
    assert!(!s.is_catch_up("T", 0, 599), "the newest record is still in memory");
    assert!(!s.is_catch_up("T", 0, 600), "past the end: a tail read");
    assert!(!s.is_catch_up("U", 0, 0), "no such queue");
}
