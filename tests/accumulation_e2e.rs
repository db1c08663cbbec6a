//! Black-box: a backlog larger than the consume queues' in-memory window and the key index's seal
//! size, through a real broker and the native client — memory holds only the window and the index's
//! unsealed tier, a new group drains the backlog from offset 0 through cold reads of the queue files,
//! and QUERY_MESSAGE finds keys in sealed index files, before and after a kill -9.

mod common;

use common::{Server, wait_until};
use ringmq::client::{Message, Producer, PullConsumer};
use ringmq::protocol::codes::response as rs;
use std::time::Duration;

const WINDOW: u64 = 64;
const QUEUES: u64 = 2;
const MESSAGES: u64 = 20_000;
/// Keys per sealed index file: 20 000 messages carry 40 000 keys (KEYS and the unique key).
const SEAL: u64 = 1_000;

/// Every message of `topic` from offset 0, queue by queue, as the bodies' numbers.
fn drain(c: &PullConsumer, topic: &str) -> Vec<Vec<u64>> {
    let mut out = Vec::new();
    for q in c.queues(topic).unwrap() {
        let (mut off, mut got) = (0, Vec::new());
        loop {
            let r = c.pull(&q, off, 32, "*", 0).unwrap();
            if r.code != rs::SUCCESS {
                break;
            }
            got.extend(r.messages.iter().map(|m| String::from_utf8_lossy(&m.body).parse::<u64>().unwrap()));
            off = r.next_offset;
        }
        out.push(got);
    }
    out
}

fn assert_whole(queues: &[Vec<u64>]) {
    let mut all: Vec<u64> = queues.iter().flatten().copied().collect();
    assert_eq!(all.len() as u64, MESSAGES, "every message of the backlog");
    for q in queues {
        assert!(q.windows(2).all(|w| w[0] < w[1]), "each queue in send order");
    }
    all.sort();
    assert!(all.iter().enumerate().all(|(i, &v)| v == i as u64));
}

/// Waits until the broker publishes at most the windows' worth of consume-queue entries in memory.
fn assert_window_only(s: &Server, when: &str) {
    let within = |n: u64| n <= QUEUES * WINDOW;
    let ok =
        wait_until(Duration::from_secs(15), || s.metric_published("ringmq_cq_entries_in_memory").is_some_and(within));
    assert!(ok, "{when}: consume-queue entries in memory {:?}", s.metric_published("ringmq_cq_entries_in_memory"));
}

#[test]
fn backlog_beyond_the_window_is_served_from_queue_files_with_bounded_memory() {
    let config = format!("cq_window_entries = {WINDOW}\nindex_seal_entries = {SEAL}\n");
    let mut s = Server::start_with_config(1, ".toml", &config);
    let p = Producer::new(&s.namesrv(), "AccPG");
    p.create_topic("Backlog", QUEUES as u32).unwrap();
    for chunk in (0..MESSAGES).collect::<Vec<_>>().chunks(100) {
        let batch: Vec<Message> =
            chunk.iter().map(|i| Message::new("Backlog", i.to_string()).with_keys(&[&format!("order-{i}")])).collect();
        p.send_batch(&batch).unwrap();
    }
    // Once checkpointed (every second), only the window stays in memory.
    assert_window_only(&s, "after the sends");
    assert_index_sealed(&s, "after the sends");
    let c = PullConsumer::new(&s.namesrv(), "AccCG");
    assert_whole(&drain(&c, "Backlog"));
    assert_keys_found(&c);
    assert!(wait_until(Duration::from_secs(5), || s.metric_sum("ringmq_cq_cold_reads_total") > 0));
    // A crash: the restarted broker opens the files, keeps the window, and serves the whole backlog.
    s.kill9();
    s.spawn().unwrap();
    let c = PullConsumer::new(&s.namesrv(), "AccCG2");
    assert_whole(&drain(&c, "Backlog"));
    assert_window_only(&s, "after the restart");
    assert_index_sealed(&s, "after the restart");
    assert_keys_found(&c);
}

/// Keys from the first, a middle and the last sealed file, and from the unsealed tier.
fn assert_keys_found(c: &PullConsumer) {
    for i in [0, 1, SEAL - 1, SEAL, 7 * SEAL + 123, MESSAGES - SEAL, MESSAGES - 1] {
        let found = c.query_by_key("Backlog", &format!("order-{i}"), 8).unwrap();
        assert_eq!(found.len(), 1, "order-{i}");
        assert_eq!(String::from_utf8_lossy(&found[0].body), i.to_string());
    }
    assert!(c.query_by_key("Backlog", "order-absent", 8).unwrap().is_empty());
}

/// Waits until the index holds at most a seal's worth of keys in memory, the rest in sealed files.
fn assert_index_sealed(s: &Server, when: &str) {
    let ok = wait_until(Duration::from_secs(15), || {
        s.metric_published("ringmq_index_entries_in_memory").is_some_and(|n| n < SEAL)
            && s.metric_published("ringmq_index_sealed_files").is_some_and(|n| n == 2 * MESSAGES / SEAL)
    });
    let (mem, files) =
        (s.metric_published("ringmq_index_entries_in_memory"), s.metric_published("ringmq_index_sealed_files"));
    assert!(ok, "{when}: index entries in memory {mem:?}, sealed files {files:?}");
}

/// RSS bounded by the windows, not the backlog: after a first 300 000 messages (caches, buffers and
/// the index's memory tier at their working size), 1.5 M more — each with two index keys — may add
/// at most 64 MiB (the budget for 10 M; 29–39 MiB measured here, mostly keys arriving between
/// two checkpoints and allocator slack). With every consume-queue entry and key kept in memory they
/// would add ~160 MiB; with seals capped per checkpoint (the bug this caught) ~140 MiB.
#[test]
fn rss_stays_flat_while_the_backlog_grows_by_a_million_and_a_half() {
    let config =
        "cq_window_entries = 64\nindex_seal_entries = 20000\ntail_cache_bytes = 4194304\nread_cache_bytes = 4194304\n";
    let s = Server::start_with_config(1, ".toml", config);
    let p = Producer::new(&s.namesrv(), "RssPG");
    p.create_topic("Rss", 4).unwrap();
    let send = |from: u64, to: u64| {
        for chunk in (from..to).collect::<Vec<_>>().chunks(200) {
            let batch: Vec<Message> =
                chunk.iter().map(|i| Message::new("Rss", format!("{i:>40}")).with_keys(&[&format!("k{i}")])).collect();
            p.send_batch(&batch).unwrap();
        }
    };
    send(0, 300_000);
    // Checkpointed and sealed: the in-memory tiers are back to their bounds.
    assert!(wait_until(Duration::from_secs(15), || {
        s.metric_published("ringmq_index_entries_in_memory").is_some_and(|n| n < 20_000 + 2 * 200)
    }));
    let before = s.rss_kib();
    let mut peak = before;
    for step in 0..6u64 {
        send(300_000 + step * 250_000, 300_000 + (step + 1) * 250_000);
        peak = peak.max(s.rss_kib());
    }
    assert!(wait_until(Duration::from_secs(15), || {
        s.metric_published("ringmq_index_entries_in_memory").is_some_and(|n| n < 20_000 + 2 * 200)
    }));
    peak = peak.max(s.rss_kib());
    let grew_mib = peak.saturating_sub(before) / 1024;
    eprintln!("RSS {before} KiB after 300 000 messages, peak {peak} KiB over 1.5 M more: +{grew_mib} MiB");
    assert!(grew_mib <= 64, "RSS grew by {grew_mib} MiB over 1.5 M messages ({before} KiB → peak {peak} KiB)");
    let c = PullConsumer::new(&s.namesrv(), "RssCG");
    let found = c.query_by_key("Rss", "k17", 4).unwrap();
    assert_eq!(found.len(), 1, "a key from the first sealed file");
}
