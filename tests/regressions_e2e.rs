//! Regression tests for behaviours an independent client found wrong, each named after what broke:
//! send answers naming internal queues, check-back stalled behind an orphaned transaction, a committed
//! transaction delivered twice after a restart, and re-stored copies that kept the properties that
//! change what a re-send means.

mod common;

use common::Server;
use ringmq::client::{Connection, Message, Producer, PullConsumer, TxState};
use ringmq::protocol::Command;
use ringmq::protocol::codes::{request as rq, response as rs};
use ringmq::protocol::message::StoredMessage;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);

fn raw_send(conn: &Connection, topic: &str, queue: &str, sys_flag: &str, props: &str) -> Command {
    let mut cmd = Command::request(rq::SEND_MESSAGE_V2);
    for (k, v) in [("a", "PG"), ("b", topic), ("e", queue), ("f", sys_flag), ("g", "0"), ("i", props)] {
        cmd.put(k, v);
    }
    conn.request(cmd.with_body("x"), T).unwrap()
}

fn all(c: &PullConsumer, topic: &str) -> Vec<StoredMessage> {
    let mut out = Vec::new();
    for q in c.queues(topic).unwrap() {
        let r = c.pull(&q, 0, 64, "*", 0).unwrap();
        out.extend(r.messages);
    }
    out
}

/// Waits until `topic` holds `n` messages; returns them.
fn wait_for(c: &PullConsumer, topic: &str, n: usize, within: Duration) -> Vec<StoredMessage> {
    let deadline = Instant::now() + within;
    loop {
        let got = all(c, topic);
        if got.len() >= n || Instant::now() >= deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn send_answer_names_the_requested_queue_for_delayed_timer_and_half_sends() {
    let s = Server::start(1, &[]);
    Producer::new(&s.namesrv(), "PG").create_topic("Q4", 4).unwrap();
    let conn = Connection::connect(&s.shard_addr(0), T).unwrap();
    for (what, flag, props) in [
        ("delay level", "0", "DELAY\u{1}3\u{2}"),
        ("timer", "0", "TIMER_DELAY_MS\u{1}60000\u{2}"),
        ("half", "4", "TRAN_MSG\u{1}true\u{2}PGROUP\u{1}PG\u{2}"),
        ("plain", "0", ""),
    ] {
        let r = raw_send(&conn, "Q4", "3", flag, props);
        assert_eq!(r.code, rs::SUCCESS, "{what}: {:?}", r.remark);
        assert_eq!(r.field("queueId"), Some("3"), "{what}: the answer names queue {:?}", r.field("queueId"));
    }
}

#[test]
fn check_back_moves_past_an_orphaned_group_and_discards_it_after_15_checks() {
    let s = Server::start_fast(1);
    let p = Producer::new(&s.namesrv(), "LiveTx");
    p.create_topic("TxO", 1).unwrap();
    // A half message of a group that never has a live producer connection.
    {
        let conn = Connection::connect(&s.shard_addr(0), T).unwrap();
        let r = raw_send(&conn, "TxO", "0", "4", "TRAN_MSG\u{1}true\u{2}PGROUP\u{1}GoneTx\u{2}");
        assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
    }
    p.set_check_listener("TxO", |_| TxState::Commit).unwrap();
    p.send_in_transaction(&Message::new("TxO", "live"), || TxState::Unknown).unwrap();
    let c = PullConsumer::new(&s.namesrv(), "CG");
    let got = wait_for(&c, "TxO", 1, Duration::from_secs(15));
    let bodies: Vec<_> = got.iter().map(|m| String::from_utf8_lossy(&m.body).into_owned()).collect();
    assert_eq!(bodies, vec!["live"], "the live group's transaction was not checked behind the orphan");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !s.log().contains("discarded") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(s.log().contains("no live producer of the group"), "the orphaned check was not logged");
    assert!(s.log().contains("discarded"), "the orphan was never discarded");
}

#[test]
fn committed_transaction_is_not_delivered_twice_after_a_restart() {
    let mut s = Server::start_fast(1);
    {
        let p = Producer::new(&s.namesrv(), "TxTwice");
        p.create_topic("TxR", 1).unwrap();
        p.set_check_listener("TxR", |_| TxState::Commit).unwrap();
        // Resolved by check-back: the broker re-appends the half and the listener commits the copy.
        p.send_in_transaction(&Message::new("TxR", "once"), || TxState::Unknown).unwrap();
        let c = PullConsumer::new(&s.namesrv(), "CG");
        assert_eq!(wait_for(&c, "TxR", 1, Duration::from_secs(15)).len(), 1);
    }
    s.restart();
    let checks = Arc::new(AtomicUsize::new(0));
    let p = Producer::new(&s.namesrv(), "TxTwice");
    let n = checks.clone();
    p.set_check_listener("TxR", move |_| {
        n.fetch_add(1, Ordering::SeqCst);
        TxState::Commit
    })
    .unwrap();
    // Check-back runs every 200 ms after a 300 ms timeout: three rounds with the listener registered.
    s.wait_check_rounds(3);
    let c = PullConsumer::new(&s.namesrv(), "CG");
    let got = all(&c, "TxR");
    assert_eq!(checks.load(Ordering::SeqCst), 0, "a half resolved by check-back was checked again after restart");
    assert_eq!(got.len(), 1, "the committed message was delivered {} times", got.len());
}

#[test]
fn re_stored_copies_lose_delay_timer_and_transaction_properties() {
    let s = Server::start_fast(1);
    let p = Producer::new(&s.namesrv(), "TxProps");
    p.create_topic("Props", 1).unwrap();
    let conn = Connection::connect(&s.shard_addr(0), T).unwrap();
    assert_eq!(raw_send(&conn, "Props", "0", "0", "DELAY\u{1}1\u{2}TAGS\u{1}delayed\u{2}").code, rs::SUCCESS);
    assert_eq!(raw_send(&conn, "Props", "0", "0", "TIMER_DELAY_MS\u{1}500\u{2}TAGS\u{1}timer\u{2}").code, rs::SUCCESS);
    p.send_in_transaction(&Message::new("Props", "tx").with_tags("tx"), || TxState::Commit).unwrap();
    let c = PullConsumer::new(&s.namesrv(), "CG");
    let got = wait_for(&c, "Props", 3, Duration::from_secs(15));
    assert_eq!(got.len(), 3, "not all three were delivered");
    for m in &got {
        for key in ["DELAY", "TIMER_DELAY_MS", "TIMER_DELIVER_MS", "TIMER_DELAY_SEC", "TRAN_MSG"] {
            assert_eq!(m.property(key), None, "{:?} kept {key}", m.property("TAGS"));
        }
        assert!(m.property("REAL_TOPIC").is_some(), "informational REAL_TOPIC dropped from {:?}", m.property("TAGS"));
    }
}
