//! Black-box tests of replay by time: resetting a group's offsets to a timestamp with
//! INVOKE_BROKER_TO_RESET_OFFSET (the admin CLI), which commits them on the brokers and pushes
//! RESET_CONSUMER_CLIENT_OFFSET to running consumers, on a started two-shard ringmq.

mod common;

use common::{Server, epoch_ms};
use ringmq::client::{Message, Producer, PullConsumer, PushConsumer, StartFrom};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn wait_for(what: &str, within: Duration, ok: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn running_consumers_replay_from_a_reset_time() {
    let s = Server::start(2, &[]);
    let p = Producer::new(&s.namesrv(), "PG");
    p.create_topic("Replay", 2).unwrap();
    for i in 0..6 {
        p.send(&Message::new("Replay", format!("old{i}"))).unwrap();
    }
    std::thread::sleep(Duration::from_millis(50));
    let cut = epoch_ms();
    std::thread::sleep(Duration::from_millis(50));
    for i in 0..6 {
        p.send(&Message::new("Replay", format!("new{i}"))).unwrap();
    }
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let s2 = seen.clone();
    let mut c = PushConsumer::new(&s.namesrv(), "Replayers", move |msgs| {
        s2.lock().unwrap().extend(msgs.iter().map(|m| String::from_utf8_lossy(&m.body).into_owned()));
        true
    });
    c.subscribe("Replay", "*");
    c.start_from(StartFrom::First);
    c.start().unwrap();
    wait_for("first pass", Duration::from_secs(15), || seen.lock().unwrap().len() >= 12);
    // The consumer's own offsets are committed first, or its next commit would overwrite the reset.
    wait_for("offsets committed", Duration::from_secs(15), || {
        let rows = s.admin(&["group", "progress", "Replayers", "Replay"]);
        rows.as_array().unwrap().iter().filter_map(|r| r["consumer_offset"].as_u64()).sum::<u64>() == 12
    });
    let rows = s.admin(&["group", "reset-offset", "Replayers", "Replay", "--to-time", &cut.to_string()]);
    assert_eq!(rows.as_array().unwrap().len(), 4, "2 queues on each of 2 shards: {rows}");
    let reset_total: u64 = rows.as_array().unwrap().iter().map(|r| r["offset"].as_u64().unwrap()).sum();
    assert_eq!(reset_total, 6, "each queue moved back to its first message after the cut");
    // The running consumer jumps back and consumes the messages after the cut again, and only those.
    wait_for("replay", Duration::from_secs(15), || seen.lock().unwrap().len() >= 18);
    // Consumed to the end again: its offsets are committed back at every queue's end, so whatever
    // the replay delivers has been delivered (a consumer commits only what it consumed).
    wait_for("offsets at the end again", Duration::from_secs(15), || {
        let rows = s.admin(&["group", "progress", "Replayers", "Replay"]);
        rows.as_array().unwrap().iter().filter_map(|r| r["consumer_offset"].as_u64()).sum::<u64>() == 12
    });
    let all = seen.lock().unwrap().clone();
    let replayed: Vec<&String> = all[12..].iter().collect();
    assert_eq!(replayed.len(), 6, "{all:?}");
    assert!(replayed.iter().all(|b| b.starts_with("new")), "only messages after the cut: {all:?}");
    c.shutdown();
}

#[test]
fn reset_without_running_consumers_commits_on_the_broker() {
    let s = Server::start(1, &[]);
    let p = Producer::new(&s.namesrv(), "PG");
    p.create_topic("Replay2", 1).unwrap();
    for i in 0..4 {
        p.send(&Message::new("Replay2", format!("m{i}"))).unwrap();
    }
    let c = PullConsumer::new(&s.namesrv(), "Idle");
    let q = c.queues("Replay2").unwrap()[0].clone();
    c.commit(&q, 4).unwrap();
    s.admin(&["group", "reset-offset", "Idle", "Replay2", "--to-time", "0"]);
    assert_eq!(c.committed_offset(&q).unwrap(), Some(0));
    s.admin(&["group", "reset-offset", "Idle", "Replay2", "--to-time", "-1"]);
    assert_eq!(c.committed_offset(&q).unwrap(), Some(4), "-1 = the end of each queue");
}
