//! Damage at rest, black box: a started `ringmq` is stopped (or killed), one file is damaged the way
//! the integrity report did it, and after a restart every acknowledged message must still be readable
//! at its original queue offset, no queue offset may be handed out again, and nothing corrupt may be
//! served on any read path.

mod common;

use common::Server;
use ringmq::client::{Connection, Message, MessageQueue, Producer, PullConsumer};
use ringmq::protocol::Command;
use ringmq::protocol::codes::{request as rq, response as rs};
use ringmq::store::checkpoint::Checkpoint;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);
const TOPIC: &str = "Dmg";

/// (queue id, queue offset, body, offset msgId) of each acknowledged send.
type Sent = Vec<(i32, u64, Vec<u8>, String)>;

fn populate(s: &Server, n: usize) -> Sent {
    let p = Producer::new(&s.namesrv(), "PG");
    p.create_topic(TOPIC, 2).unwrap();
    (0..n)
        .map(|i| {
            let body = format!("message {i}").into_bytes();
            let r = p.send(&Message::new(TOPIC, body.clone()).with_keys(&[&format!("key{i}")])).unwrap();
            (r.queue.queue_id, r.queue_offset, body, r.offset_msg_id)
        })
        .collect()
}

fn queue(c: &PullConsumer, id: i32) -> MessageQueue {
    c.queues(TOPIC).unwrap().into_iter().find(|q| q.queue_id == id).unwrap()
}

/// Every acknowledged message is at its queue offset with its body; sampled keys are found; the next
/// send to each queue gets the offset after the last acknowledged one.
fn check(s: &Server, sent: &Sent) {
    let c = PullConsumer::new(&s.namesrv(), "Checker");
    for qid in 0..2 {
        let q = queue(&c, qid);
        let mut got = Vec::new();
        let mut off = 0;
        loop {
            let r = c.pull(&q, off, 32, "*", 0).unwrap();
            if r.code != rs::SUCCESS {
                break;
            }
            off = r.next_offset;
            got.extend(r.messages);
        }
        let want: Vec<_> = sent.iter().filter(|m| m.0 == qid).collect();
        assert_eq!(
            got.len(),
            want.len(),
            "queue {qid}: {} of {} acknowledged messages readable",
            got.len(),
            want.len()
        );
        for (m, w) in got.iter().zip(&want) {
            assert_eq!((m.queue_offset, &m.body[..]), (w.1, &w.2[..]), "queue {qid} altered");
        }
    }
    for i in (0..sent.len()).step_by(9) {
        assert_eq!(c.query_by_key(TOPIC, &format!("key{i}"), 4).unwrap().len(), 1, "key{i} not found");
    }
    let conn = Connection::connect(&s.shard_addr(0), T).unwrap();
    for qid in 0..2 {
        let next = sent.iter().filter(|m| m.0 == qid).map(|m| m.1 + 1).max().unwrap_or(0);
        let mut cmd = Command::request(rq::SEND_MESSAGE_V2);
        for (k, v) in [("a", "PG"), ("b", TOPIC), ("e", &qid.to_string()), ("g", "0")] {
            cmd.put(k, v);
        }
        let r = conn.request(cmd.with_body("after"), T).unwrap();
        assert_eq!(r.field("queueOffset"), Some(next.to_string().as_str()), "queue {qid} reused an offset");
    }
}

fn shard_dir(s: &Server) -> PathBuf {
    s.data_dir().join("0")
}

fn segment(s: &Server) -> PathBuf {
    shard_dir(s).join("commitlog").join(format!("{:020}", 0))
}

fn xorshift(seed: &mut u64) -> u8 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed as u8
}

fn garbage(path: &Path) {
    let len = std::fs::metadata(path).map(|m| m.len() as usize).unwrap_or(0).max(64);
    let mut seed = 0x9E37_79B9_7F4A_7C15;
    std::fs::write(path, (0..len).map(|_| xorshift(&mut seed)).collect::<Vec<u8>>()).unwrap();
}

fn truncate_half(path: &Path) {
    let data = std::fs::read(path).unwrap();
    std::fs::write(path, &data[..data.len() / 2]).unwrap();
}

/// One way of damaging a file at rest.
type Damage = fn(&Path);

fn restart_after(s: &mut Server, damage: impl FnOnce(&Server)) {
    s.stop();
    damage(s);
    s.spawn().expect("ringmq refused to start after damage to a derived file");
}

#[test]
fn consume_queue_damage_at_rest_is_rebuilt_from_the_log() {
    let cases: [(&str, Damage); 4] = [
        ("deleted", |p| std::fs::remove_file(p).unwrap()),
        ("truncated", truncate_half),
        ("random bytes", garbage),
        ("high byte of a physical offset flipped", |p| {
            let mut d = std::fs::read(p).unwrap();
            d[24 * 5] ^= 0x01; // entry 5: [phys offset 8][size 4][tags 8][crc 4]
            std::fs::write(p, d).unwrap();
        }),
    ];
    for (what, damage) in cases {
        let mut s = Server::start(1, &[]);
        let sent = populate(&s, 60);
        restart_after(&mut s, |s| {
            damage(&shard_dir(s).join("consumequeue").join(TOPIC).join("0").join(format!("{:020}", 0)))
        });
        assert!(s.log().contains("rebuilding all of them"), "{what}: no log line names the rebuild");
        check(&s, &sent);
    }
}

#[test]
fn checkpoint_damage_at_rest_is_ignored_and_the_log_replayed() {
    let cases: [(&str, Damage); 4] = [
        ("truncated", truncate_half),
        ("garbage", garbage),
        ("offset beyond the log", |p| {
            let mut cp = Checkpoint::load(&ringmq::store::files::OsFiles, p).unwrap().unwrap();
            cp.log_offset = 1_000_000_000_000_000;
            std::fs::write(p, cp.encode()).unwrap();
        }),
        ("valid checksum, mid-batch offset", |p| {
            let mut cp = Checkpoint::load(&ringmq::store::files::OsFiles, p).unwrap().unwrap();
            cp.log_offset -= 30;
            std::fs::write(p, cp.encode()).unwrap();
        }),
    ];
    for (what, damage) in cases {
        let mut s = Server::start(1, &[]);
        let sent = populate(&s, 40);
        restart_after(&mut s, |s| damage(&shard_dir(s).join("checkpoint")));
        assert!(s.log().contains("checkpoint ignored"), "{what}: no warning");
        check(&s, &sent);
    }
}

#[test]
fn key_index_damage_at_rest_is_rebuilt() {
    for damage in [truncate_half as fn(&Path), garbage] {
        let mut s = Server::start(1, &[]);
        let sent = populate(&s, 61);
        restart_after(&mut s, |s| damage(&shard_dir(s).join("index").join("keys")));
        let c = PullConsumer::new(&s.namesrv(), "Q");
        for i in 0..61 {
            assert_eq!(c.query_by_key(TOPIC, &format!("key{i}"), 4).unwrap().len(), 1, "key{i} lost");
        }
        check(&s, &sent);
    }
}

/// The offset (physical) and stored size of the message sent as `sent[i]`.
fn located(s: &Server, sent: &Sent, i: usize) -> (u64, usize) {
    let c = PullConsumer::new(&s.namesrv(), "Locator");
    let m = c.view_by_id(&sent[i].3).unwrap();
    (m.physical_offset, m.size)
}

fn flip(path: &Path, at: u64, mask: u8) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ mask], at).unwrap();
}

#[test]
fn a_damaged_record_is_refused_on_every_read_path_and_blocks_only_itself() {
    let mut s = Server::start(1, &[]);
    let sent = populate(&s, 40);
    let victim = (10..40).find(|&i| sent[i].0 == 0 && sent[i].1 >= 3).unwrap();
    let (phys, size) = located(&s, &sent, victim);
    // A property byte (the end of the record): not covered by RocketMQ's body CRC.
    restart_after(&mut s, |s| flip(&segment(s), phys + size as u64 - 2, 0x04));
    let c = PullConsumer::new(&s.namesrv(), "Reader");
    let view = {
        let conn = Connection::connect(&s.shard_addr(0), T).unwrap();
        let mut v = Command::request(rq::VIEW_MESSAGE_BY_ID);
        v.put("offset", phys);
        conn.request(v, T).unwrap()
    };
    assert_eq!(view.code, rs::SYSTEM_ERROR, "VIEW_MESSAGE_BY_ID served a damaged record");
    assert!(view.remark.unwrap_or_default().contains(&phys.to_string()), "the remark does not name the offset");
    assert!(c.query_by_key(TOPIC, &format!("key{victim}"), 4).unwrap().is_empty(), "QUERY_MESSAGE served it");
    let q = queue(&c, 0);
    let before = c.pull(&q, 0, 64, "*", 0).unwrap();
    assert_eq!(before.code, rs::SUCCESS, "a pull starting before the damage failed");
    assert_eq!(before.messages.len() as u64, sent[victim].1, "the intact records before it were not all served");
    assert_eq!(c.pull(&q, sent[victim].1, 8, "*", 0).unwrap().code, rs::SYSTEM_ERROR);
    assert!(c.pull(&q, sent[victim].1 + 1, 8, "*", 0).unwrap().code == rs::SUCCESS, "records after it blocked");
}

/// The last seal record (`[24][magic]…`) in a segment: its offset.
fn last_seal(path: &Path) -> u64 {
    let data = std::fs::read(path).unwrap();
    let pattern = [0u8, 0, 0, 24, 0x5E, 0xA1, 0xB1, 0x0C];
    data.windows(8).rposition(|w| w == pattern).unwrap() as u64
}

#[test]
fn damaged_last_seal_after_kill_9_keeps_the_acknowledged_batch() {
    let mut s = Server::start(1, &[]);
    let sent = populate(&s, 30);
    s.kill9();
    let seal = last_seal(&segment(&s));
    flip(&segment(&s), seal + 17, 0x10); // the batch CRC: the seal's own CRC no longer matches
    s.spawn().unwrap();
    assert!(s.log().contains("repaired a damaged batch seal"), "no log line names the repair");
    check(&s, &sent);
}

#[test]
fn damaged_config_files_load_their_previous_version_or_refuse_to_start() {
    let mut s = Server::start(1, &[]);
    let sent = populate(&s, 10);
    let c = PullConsumer::new(&s.namesrv(), "Committed");
    c.commit(&queue(&c, 0), 3).unwrap();
    // Two graceful stops: both offsets.json and its previous version hold the commit.
    s.restart();
    s.stop();
    let offsets = shard_dir(&s).join("config").join("offsets.json");
    garbage(&offsets);
    s.spawn().unwrap();
    assert!(s.log().contains("loaded its previous version"));
    let c = PullConsumer::new(&s.namesrv(), "Committed");
    assert_eq!(c.committed_offset(&queue(&c, 0)).unwrap(), Some(3), "the committed offset was lost");
    check(&s, &sent);
    s.stop();
    garbage(&offsets);
    garbage(&shard_dir(&s).join("config").join("offsets.json.bak"));
    let err = s.spawn().expect_err("started over a config file damaged in both versions");
    assert!(err.contains("offsets.json") && err.contains("--start-with-damaged-config"), "{err}");
    s.extra.push("--start-with-damaged-config".into());
    s.spawn().unwrap();
    let kept = std::fs::read_dir(shard_dir(&s).join("config")).unwrap().filter_map(|e| e.ok());
    assert!(kept.into_iter().any(|e| e.file_name().to_string_lossy().contains("damaged-")), "evidence not kept");
}

#[test]
fn a_damaged_parked_message_is_kept_and_not_delivered() {
    let mut s = Server::start_with_config(1, ".toml", "message_delay_level = \"4s 4s 4s\"\n");
    let p = Producer::new(&s.namesrv(), "PG");
    p.create_topic("Later", 1).unwrap();
    let victim = p.send(&Message::new("Later", "damaged").with_property("DELAY", "1")).unwrap();
    for body in ["ok1", "ok2"] {
        p.send(&Message::new("Later", body).with_property("DELAY", "1")).unwrap();
    }
    let (phys, size) = {
        let c = PullConsumer::new(&s.namesrv(), "L");
        let m = c.view_by_id(&victim.offset_msg_id).unwrap();
        (m.physical_offset, m.size)
    };
    restart_after(&mut s, |s| flip(&segment(s), phys + size as u64 - 2, 0x04));
    let c = PullConsumer::new(&s.namesrv(), "L");
    let q = c.queues("Later").unwrap()[0].clone();
    let deadline = Instant::now() + Duration::from_secs(12);
    let mut delivered = Vec::new();
    while Instant::now() < deadline {
        let r = c.pull(&q, 0, 8, "*", 0).unwrap();
        delivered = r.messages.iter().map(|m| String::from_utf8_lossy(&m.body).into_owned()).collect();
        if delivered.len() >= 2 && s.log().contains("parked (delayed or timer) message is damaged") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(delivered, vec!["ok1", "ok2"], "the damaged parked message was delivered, or blocked the others");
    assert!(s.log().contains("parked (delayed or timer) message is damaged"), "not reported");
}
