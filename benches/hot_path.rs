//! The per-message hot path outside the network: stored-record encode (with its body CRC), record
//! decode (which verifies the CRC), and subscription filters — each beside the floor it cannot beat,
//! measured in the same run: the memcpy and CRC32 of the same bytes for the record, and a
//! hand-written Rust predicate for the filters. Run: `cargo bench --bench hot_path`.
//!
//! Reported as ratios to the floor (the machine is shared: absolute nanoseconds drift between runs,
//! the ratio much less).

use bytes::{Bytes, BytesMut};
use ringmq::filter::{Subscription, tag_hash};
use ringmq::protocol::message::{MessageToStore, StoredMessage, properties_encode, property_get};
use std::hint::black_box;

mod common;
use common::per_op_ns;

/// The broker's allocator, so allocation costs are the ones it pays.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A message as the Java client sends it: 1 KiB body, keys, tags and a unique key.
fn message() -> MessageToStore {
    let props = properties_encode([
        ("KEYS", "OrderID188"),
        ("TAGS", "TagA"),
        ("UNIQ_KEY", "AC110001547318B4AAC28A0F4BC80000"),
        ("region", "eu"),
        ("amount", "125"),
        ("WAIT", "true"),
    ]);
    MessageToStore::simple("TopicTest", 3, vec![0x5au8; 1024], props)
}

fn record_rows(iters: u32) {
    let m = message();
    let len = m.encoded_len();
    let mut out = BytesMut::with_capacity(len);
    let encode = per_op_ns(iters, || {
        out.clear();
        black_box(&m).encode_into(&mut out, 4096, 17, 1_732_550_000_000);
        black_box(&out);
    });
    let record = out.clone().freeze();
    let mut copy = vec![0u8; len];
    let floor = per_op_ns(iters, || {
        copy.copy_from_slice(black_box(&record));
        black_box(crc32fast::hash(black_box(&m.body)));
    });
    let decode = per_op_ns(iters, || {
        black_box(StoredMessage::decode(black_box(&record)).expect("decodes"));
    });
    let crc_only = per_op_ns(iters, || {
        black_box(crc32fast::hash(black_box(&record[record.len() - 1100..])));
    });
    println!(
        "  record encode {encode:.0} ns, floor (memcpy {len} B + CRC32 of the body) {floor:.0} ns: {:.2}x the floor",
        encode / floor
    );
    println!(
        "  record decode {decode:.0} ns, floor (CRC32 of the body) {crc_only:.0} ns: {:.2}x the floor",
        decode / crc_only
    );
}

fn filter_rows(iters: u32, record: &Bytes) {
    let tags = Subscription::parse(Some("TAG"), "TagA || TagB").expect("tag expression");
    let code = tag_hash("TagA");
    let by_code = per_op_ns(iters, || {
        black_box(tags.matches_tag_code(black_box(code)));
    });
    let set: std::collections::HashSet<i64> = [tag_hash("TagA"), tag_hash("TagB")].into_iter().collect();
    let by_code_floor = per_op_ns(iters, || {
        black_box(set.contains(&black_box(code)));
    });
    println!(
        "  tag-code check {by_code:.1} ns, floor (HashSet lookup) {by_code_floor:.1} ns: {:.2}x the floor",
        by_code / by_code_floor
    );

    let msg = StoredMessage::decode(record).expect("decodes");
    let sql = Subscription::parse(Some("SQL92"), "region = 'eu' AND amount > 100").expect("sql");
    let sql_ns = per_op_ns(iters, || {
        black_box(sql.matches_message(&|k| black_box(&msg).property(k)));
    });
    let hand_ns = per_op_ns(iters, || {
        let p = &black_box(&msg).properties;
        let region = property_get(p, "region") == Some("eu");
        let amount = property_get(p, "amount").and_then(|a| a.parse::<i64>().ok()).is_some_and(|a| a > 100);
        black_box(region && amount);
    });
    println!(
        "  SQL92 `region = 'eu' AND amount > 100` {sql_ns:.0} ns, floor (hand-written predicate) {hand_ns:.0} ns: {:.2}x the floor",
        sql_ns / hand_ns
    );
}

fn main() {
    let iters = 200_000;
    let m = message();
    let mut out = BytesMut::new();
    m.encode_into(&mut out, 4096, 17, 1_732_550_000_000);
    let record = out.freeze();
    for round in 1..=3 {
        println!("round {round}:");
        record_rows(iters);
        filter_rows(iters, &record);
    }
}
