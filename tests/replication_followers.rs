//! Black-box tests of the followers of a replica set: an async learner (follows, never joins the
//! in-sync set, never elected automatically, promoted only by the admin, serves long polls woken by
//! its master's confirm offset) and a slave killed in the middle of catching up while foreground
//! sends go on.

#[path = "common/cluster.rs"]
mod cluster;
mod common;

use cluster::{Cluster, assert_none_lost, consume_all, log_bytes, longest_stall, produce};
use common::wait_until;
use ringmq::client::consumer::{PullSpec, pull_result};
use ringmq::client::{Connection, Message, MessageQueue, Producer, PullConsumer};
use ringmq::protocol::codes::response as rs;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn flushed(c: &Cluster, k: usize) -> Option<u64> {
    c.runtime_u64(k, 0, "commitLogFlushedOffset")
}

#[test]
fn a_learner_follows_never_joins_the_in_sync_set_is_never_elected_and_serves_long_polls() {
    let mut c = Cluster::configure(26000, 3, 1, &["--replication", "sync"]);
    c.node(3).extra.push("--learner".into());
    c.spawn_all();
    assert!(c.wait_ready(1, Duration::from_secs(30)), "no master with an in-sync slave");
    let master = c.current_master(0).unwrap();
    assert_ne!(master, 3, "a learner is never the first master");
    let p = Producer::new(&c.namesrvs(), "PG");
    p.create_topic("Learn", 1).unwrap();
    let mut sent = BTreeSet::new();
    for i in 0..200 {
        p.send(&Message::new("Learn", format!("m{i}"))).unwrap();
        sent.insert(format!("m{i}"));
    }
    assert!(
        wait_until(Duration::from_secs(15), || flushed(&c, 3).is_some() && flushed(&c, 3) == flushed(&c, master)),
        "the learner did not follow"
    );
    assert_eq!(c.runtime_u64(master, 0, "inSyncSlaves"), Some(1), "the learner joined the in-sync set");
    let rows = c.admin(&["cluster", "replicas"]);
    let learner = rows.as_array().unwrap().iter().find(|r| r["brokerId"] == 3).cloned().unwrap();
    assert_eq!(learner["role"], "Slave", "{learner}");

    // A long poll on the learner at its end is answered when the master's next send is confirmed
    // (its confirm offset reaches the learner), not at the poll's deadline.
    let mq = MessageQueue { topic: "Learn".into(), broker_name: "ringmq-0".into(), queue_id: 0 };
    let poll = {
        let (addr, mq) = (c.nodes[2].shard_addr(0), mq.clone());
        std::thread::spawn(move || {
            let conn = Connection::connect(&addr, Duration::from_secs(5)).unwrap();
            let spec = PullSpec { offset: 200, max: 32, expression_type: "TAG", expr: "*", suspend_ms: 10_000 };
            let cmd = PullConsumer::new("127.0.0.1:1", "LearnerReader").pull_command(&mq, &spec);
            let t0 = Instant::now();
            let r = conn.call(cmd, Duration::from_secs(15)).unwrap();
            (pull_result(&mq, &r).unwrap(), t0.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    p.send(&Message::new("Learn", "woken")).unwrap();
    sent.insert("woken".into());
    let (r, took) = poll.join().unwrap();
    assert_eq!(r.code, rs::SUCCESS);
    assert_eq!(r.messages[0].body.as_ref(), b"woken");
    assert!(took < Duration::from_secs(5), "the learner's long poll waited {took:?}");

    // The master dies: the other slave is elected, never the learner.
    c.node(master).kill9();
    let other = 6 - master - 3;
    assert!(
        wait_until(Duration::from_secs(10), || c.current_master(0) == Some(other)),
        "the in-sync slave did not take over"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_ne!(c.current_master(0), Some(3), "a learner was elected");
    c.node(master).spawn().unwrap();
    assert!(c.wait_ready(1, Duration::from_secs(30)), "the old master did not rejoin");

    // The admin promotes the learner deliberately (outside the in-sync set: --unclean).
    assert!(wait_until(Duration::from_secs(15), || flushed(&c, 3) == flushed(&c, other)), "the learner lags");
    c.admin(&["cluster", "elect", "ringmq-0", "--node", "3", "--unclean"]);
    assert!(wait_until(Duration::from_secs(10), || c.current_master(0) == Some(3)), "the learner was not promoted");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match p.send(&Message::new("Learn", "on the learner")) {
            Ok(_) => break,
            Err(e) => assert!(Instant::now() < deadline, "the promoted learner takes no sends: {e}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    sent.insert("on the learner".into());
    let got = consume_all(&c.namesrvs(), "Learn", 1);
    assert_none_lost(&sent, &got);
}

#[test]
fn a_slave_killed_during_catch_up_restarts_and_catches_up() {
    let mut c = Cluster::start(27000, 3, 1, &["--replication", "sync"]);
    assert!(c.wait_ready(2, Duration::from_secs(30)), "no master with two in-sync slaves");
    let master = c.current_master(0).unwrap();
    let slave = if master == 3 { 2 } else { 3 };
    let before = flushed(&c, slave).unwrap();
    c.node(slave).stop();
    // A backlog large enough that catching up takes a while: 96 MiB in 32 KiB messages.
    let p = Producer::new(&c.namesrvs(), "PG");
    p.create_topic("Catch", 2).unwrap();
    let body = "x".repeat(32 << 10);
    let mut sent = BTreeSet::new();
    for i in 0..3072 {
        let b = format!("{i}:{body}");
        p.send(&Message::new("Catch", b.clone())).unwrap();
        sent.insert(b);
    }
    let end = flushed(&c, master).unwrap();
    // Foreground sends go on throughout the catch-ups (flow control: a slave catching up must not
    // starve them).
    let stop = Arc::new(AtomicBool::new(false));
    let producers = produce(c.namesrvs(), "Catch", 2, stop.clone());
    let mut killed_at = vec![before];
    for round in 0..2 {
        c.node(slave).spawn().unwrap();
        let start = Instant::now();
        // Kill it as soon as it has appended part of the backlog.
        let last = *killed_at.last().unwrap();
        let mut at = None;
        wait_until(Duration::from_secs(20), || {
            at = flushed(&c, slave);
            at.is_some_and(|f| f > last)
        });
        let at = at.unwrap_or(0);
        c.node(slave).kill9();
        assert!(
            at < end,
            "round {round}: caught up before it could be killed ({at} of {end} in {:?})",
            start.elapsed()
        );
        killed_at.push(at);
    }
    eprintln!("killed at {killed_at:?} of {end}");
    c.node(slave).spawn().unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || flushed(&c, slave).is_some_and(|f| f >= end)),
        "the slave did not catch up"
    );
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<(String, String, Instant)> = producers.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let (stall, n) = longest_stall(&acked, "ringmq-0");
    eprintln!("{n} foreground sends during the catch-ups, longest stall {stall:?}");
    assert!(n > 10 && stall < Duration::from_secs(3), "foreground sends stalled {stall:?} while a slave caught up");
    let end = flushed(&c, master).unwrap();
    assert!(wait_until(Duration::from_secs(30), || flushed(&c, slave) == Some(end)), "the slave did not catch up");
    assert!(c.wait_ready(2, Duration::from_secs(30)), "the slave did not rejoin the in-sync set");
    let got = consume_all(&c.namesrvs(), "Catch", 1);
    assert_none_lost(sent.iter().chain(acked.iter().map(|(b, _, _)| b)), &got);
    for k in 1..=3 {
        c.node(k).stop();
    }
    let reference = log_bytes(c.nodes[master - 1].data_dir(), 0, end);
    assert!(log_bytes(c.nodes[slave - 1].data_dir(), 0, end) == reference, "the caught-up log differs");
}
