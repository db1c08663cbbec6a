//! The store on real O_DIRECT files through glommio (the fake disk covers faults; this covers the
//! real I/O path).

use bytes::Bytes;
use ringmq::protocol::message::{MessageToStore, StoredMessage};
use ringmq::store::io::DmaDisk;
use ringmq::store::{FlushMode, Store, StoreConfig};

fn msg(i: u32) -> MessageToStore {
    MessageToStore::simple("T", 0, Bytes::from(i.to_be_bytes().repeat(256)), String::new())
}

/// Regression: on a fresh data directory the first file glommio opened was empty, glommio concluded
/// the device supports I/O polling, and every later disk read failed with EOPNOTSUPP.
#[test]
fn disk_reads_past_the_tail_cache_work_on_a_fresh_directory() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().to_path_buf();
    let h = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .spawn(move || async move {
            let mut c = StoreConfig::new(&path);
            c.flush = FlushMode::Sync;
            c.segment_bytes = 1 << 20;
            c.tail_cache_bytes = 64 << 10;
            c.read_cache_bytes = 64 << 10;
            let s = Store::open(DmaDisk::default(), c).await.unwrap();
            for i in 0..3000u32 {
                s.put(&[msg(i)], false).await.unwrap();
                if i % 100 == 99 {
                    s.log().flush_once().await.unwrap();
                }
                if s.log().prewrite_due() {
                    s.log().run_prewrite().await.unwrap();
                }
            }
            s.log().flush_once().await.unwrap();
            assert!(s.log().segment_starts().len() >= 3);
            let r = s.get("T", 0, 0, 32, usize::MAX, &|_| true, &|_| true).await;
            assert_eq!(r.records.len(), 32, "{:?}", r.status);
            for (i, rec) in r.records.iter().enumerate() {
                assert_eq!(&StoredMessage::decode(rec).unwrap().body[..4], &(i as u32).to_be_bytes());
            }
            assert!(s.log().stats().disk_reads > 0, "the reads went to disk");
        })
        .unwrap();
    h.join().unwrap();
}
