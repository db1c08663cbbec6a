//! Black-box tests of RocketMQ features on a started ringmq: scheduled messages (delay levels),
//! consumption retry through CONSUMER_SEND_MSG_BACK, and the dead-letter queue.

mod common;

use common::{Server, wait_until};
use ringmq::client::{Connection, Message, MessageQueue, Producer, PullConsumer};
use ringmq::protocol::Command;
use ringmq::protocol::codes::{request as rq, response as rs};
use ringmq::protocol::message::StoredMessage;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(5);

fn wait_pull(c: &PullConsumer, q: &MessageQueue, offset: u64, within: Duration) -> Option<(Instant, StoredMessage)> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let r = c.pull(q, offset, 32, "*", 0).unwrap();
        if r.code == rs::SUCCESS {
            return Some((Instant::now(), r.messages[0].clone()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

fn retry_queue(c: &PullConsumer, group: &str) -> MessageQueue {
    let topic = format!("%RETRY%{group}");
    let deadline = Instant::now() + T;
    loop {
        if let Ok(q) = c.queues(&topic)
            && let Some(q) = q.into_iter().next()
        {
            return q;
        }
        assert!(Instant::now() < deadline, "no route for {topic}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn delay_level_message_is_delivered_on_time_not_early() {
    let s = Server::start(1, &[]);
    let p = Producer::new(&s.namesrv(), "PG");
    p.create_topic("Later", 1).unwrap();
    let c = PullConsumer::new(&s.namesrv(), "CG");
    let q = c.queues("Later").unwrap()[0].clone();
    let sent_at = Instant::now();
    p.send(&Message::new("Later", "in one second").with_property("DELAY", "1")).unwrap();
    assert_eq!(c.pull(&q, 0, 32, "*", 0).unwrap().code, rs::PULL_NOT_FOUND, "not visible before it is due");
    let (at, m) = wait_pull(&c, &q, 0, Duration::from_secs(5)).expect("delivered");
    let waited = at - sent_at;
    assert!(waited >= Duration::from_millis(990), "delivered early: {waited:?}");
    assert!(waited < Duration::from_millis(1500), "delivered late: {waited:?}");
    assert_eq!(&m.body[..], b"in one second");
    assert_eq!(m.property("REAL_TOPIC").as_deref(), Some("Later"));
}

#[test]
fn scheduled_messages_survive_restart_exactly_once() {
    let mut s = Server::start(1, &[]);
    let p = Producer::new(&s.namesrv(), "PG");
    p.create_topic("Sched", 1).unwrap();
    for i in 0..5 {
        p.send(&Message::new("Sched", format!("s{i}")).with_property("DELAY", "1")).unwrap();
    }
    // Pending across a graceful restart, delivered after it, then a crash before the delivery
    // progress is persisted (every 5 s): the restarted broker must not deliver them again.
    s.restart();
    let c = PullConsumer::new(&s.namesrv(), "CG");
    let q = c.queues("Sched").unwrap()[0].clone();
    // Delivered (1 s level) well before the 5 s progress persistence: crash right after.
    assert!(wait_until(Duration::from_secs(4), || c.max_offset(&q).unwrap_or(0) >= 5), "not delivered");
    s.kill9();
    s.spawn().unwrap();
    // Once the restarted broker's level tasks have gone past every scheduled entry, any
    // redelivery has happened: wait for that, then look.
    assert!(
        wait_until(Duration::from_secs(10), || s.metric_published("ringmq_delay_pending") == Some(0)),
        "the delay levels did not catch up after the crash"
    );
    let c = PullConsumer::new(&s.namesrv(), "CG");
    let r = c.pull(&q, 0, 32, "*", 0).unwrap();
    let mut bodies: Vec<String> = r.messages.iter().map(|m| String::from_utf8_lossy(&m.body).into_owned()).collect();
    bodies.sort();
    assert_eq!(bodies, vec!["s0", "s1", "s2", "s3", "s4"], "each delivered once; server log:\n{}", s.log());
}

fn send_back(conn: &Connection, offset: u64, group: &str, level: i32, max: i32) -> Command {
    let mut cmd = Command::request(rq::CONSUMER_SEND_MSG_BACK);
    cmd.put("offset", offset);
    cmd.put("group", group);
    cmd.put("delayLevel", level);
    cmd.put("maxReconsumeTimes", max);
    conn.request(cmd, T).unwrap()
}

#[test]
fn send_back_retries_with_backoff_then_dead_letters() {
    let s = Server::start(1, &[]);
    let p = Producer::new(&s.namesrv(), "PG");
    p.create_topic("Work", 1).unwrap();
    let sent = p.send(&Message::new("Work", "job").with_tags("t")).unwrap();
    let c = PullConsumer::new(&s.namesrv(), "Workers");
    c.heartbeat(&[("Work".into(), "*".into())], "CLUSTERING").unwrap();
    let conn = Connection::connect(&s.shard_addr(0), T).unwrap();
    let (_, phys) = ringmq::protocol::message::decode_offset_msg_id(&sent.offset_msg_id).unwrap();
    assert_eq!(send_back(&conn, phys, "Workers", 1, 2).code, rs::SUCCESS);
    let rq_ = retry_queue(&c, "Workers");
    let (_, retried) = wait_pull(&c, &rq_, 0, Duration::from_secs(5)).expect("retried after level 1");
    assert_eq!(retried.reconsume_times, 1);
    assert_eq!(retried.property("RETRY_TOPIC").as_deref(), Some("Work"));
    assert_eq!(retried.property("ORIGIN_MESSAGE_ID").as_deref(), Some(sent.offset_msg_id.as_str()));
    // Second failure, then past the maximum of 2 reconsumes → DLQ.
    assert_eq!(send_back(&conn, retried.physical_offset, "Workers", 1, 2).code, rs::SUCCESS);
    let (_, again) = wait_pull(&c, &rq_, 1, Duration::from_secs(5)).expect("second retry");
    assert_eq!(again.reconsume_times, 2);
    assert_eq!(send_back(&conn, again.physical_offset, "Workers", 1, 2).code, rs::SUCCESS);
    let deadline = Instant::now() + T;
    let dlq = loop {
        if let Some(q) = c.queues("%DLQ%Workers").ok().and_then(|v| v.into_iter().next()) {
            break q;
        }
        assert!(Instant::now() < deadline, "no DLQ route");
        std::thread::sleep(Duration::from_millis(50));
    };
    let (_, dead) = wait_pull(&c, &dlq, 0, Duration::from_secs(2)).expect("dead-lettered at once");
    assert_eq!(&dead.body[..], b"job");
    assert_eq!(dead.reconsume_times, 3);
    assert_eq!(send_back(&conn, u64::MAX / 2, "Workers", 0, 16).code, rs::SYSTEM_ERROR, "unknown offset is an error");
}

fn bodies(c: &PullConsumer, q: &MessageQueue) -> Vec<String> {
    let r = c.pull(q, 0, 32, "*", 0).unwrap();
    r.messages.iter().map(|m| String::from_utf8_lossy(&m.body).into_owned()).collect()
}

#[test]
fn transactions_commit_rollback_and_check_back() {
    use ringmq::client::TxState;
    let s = Server::start_fast(1);
    let p = Producer::new(&s.namesrv(), "TxGroup");
    p.create_topic("Pay", 1).unwrap();
    let c = PullConsumer::new(&s.namesrv(), "CG");
    let q = c.queues("Pay").unwrap()[0].clone();
    let (r, _) = p.send_in_transaction(&Message::new("Pay", "committed"), || TxState::Commit).unwrap();
    assert!(!r.unique_key.is_empty());
    p.send_in_transaction(&Message::new("Pay", "rolled back"), || TxState::Rollback).unwrap();
    assert!(wait_until(Duration::from_secs(5), || !bodies(&c, &q).is_empty()));
    assert_eq!(bodies(&c, &q), vec!["committed"], "only the committed half becomes visible");
    // Unknown: the broker asks the producer after the timeout; the listener commits.
    p.set_check_listener("Pay", |half| {
        assert_eq!(half.topic, "Pay", "check-back carries the real topic");
        if &half.body[..] == b"checked" { TxState::Commit } else { TxState::Rollback }
    })
    .unwrap();
    p.send_in_transaction(&Message::new("Pay", "checked"), || TxState::Unknown).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while bodies(&c, &q).len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(bodies(&c, &q), vec!["committed", "checked"]);
    let committed = c.pull(&q, 0, 32, "*", 0).unwrap().messages[0].clone();
    assert_eq!(committed.sys_flag & 0xC, 0x8, "stored with transaction type COMMIT");
}

#[test]
fn resolved_transactions_are_not_checked_again_after_restart() {
    use ringmq::client::TxState;
    let mut s = Server::start_fast(1);
    let p = Producer::new(&s.namesrv(), "TxGroup2");
    p.create_topic("Pay2", 1).unwrap();
    p.send_in_transaction(&Message::new("Pay2", "once"), || TxState::Commit).unwrap();
    let c = PullConsumer::new(&s.namesrv(), "CG");
    let q = c.queues("Pay2").unwrap()[0].clone();
    assert!(wait_until(Duration::from_secs(5), || c.max_offset(&q).unwrap_or(0) == 1), "commit (oneway) applied");
    s.restart();
    let checks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let p = Producer::new(&s.namesrv(), "TxGroup2");
    let n = checks.clone();
    p.set_check_listener("Pay2", move |_| {
        n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        TxState::Commit
    })
    .unwrap();
    s.wait_check_rounds(3);
    assert_eq!(checks.load(std::sync::atomic::Ordering::SeqCst), 0, "a resolved half is never checked back");
    let c = PullConsumer::new(&s.namesrv(), "CG");
    let q = c.queues("Pay2").unwrap()[0].clone();
    assert_eq!(bodies(&c, &q), vec!["once"]);
}

#[test]
fn orderly_group_keeps_per_key_order_through_a_rebalance() {
    use ringmq::client::{PushConsumer, StartFrom};
    use std::sync::{Arc, Mutex};
    let s = Server::start(1, &[]);
    let p = Producer::new(&s.namesrv(), "PG");
    p.create_topic("Seq", 4).unwrap();
    let seen = Arc::new(Mutex::new(Vec::<(u32, u32)>::new()));
    let make = |seen: Arc<Mutex<Vec<(u32, u32)>>>| {
        let mut c = PushConsumer::new(&s.namesrv(), "Orderly", move |msgs| {
            let mut v = seen.lock().unwrap();
            for m in msgs {
                let b = String::from_utf8_lossy(&m.body).into_owned();
                let (k, i) = b.split_once(':').unwrap();
                v.push((k.parse().unwrap(), i.parse().unwrap()));
            }
            true
        });
        c.subscribe("Seq", "*");
        c.orderly(true);
        c.start_from(StartFrom::First);
        c.start().unwrap();
        c
    };
    let a = make(seen.clone());
    let (ns, stop) = (s.namesrv(), Arc::new(std::sync::atomic::AtomicBool::new(false)));
    let st = stop.clone();
    let producer = std::thread::spawn(move || {
        let p = Producer::new(&ns, "PG");
        let mut sent = 0u32;
        while !st.load(std::sync::atomic::Ordering::SeqCst) {
            for k in 0..8u32 {
                p.send_by_key(&Message::new("Seq", format!("{k}:{sent}")), Some(&format!("key{k}"))).unwrap();
            }
            sent += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
        sent
    });
    let consumed = || seen.lock().unwrap().len();
    assert!(wait_until(Duration::from_secs(20), || consumed() >= 8 * 20), "the first member consumed nothing");
    let b = make(seen.clone()); // rebalance: queues move from a to b mid-stream
    assert!(
        wait_until(Duration::from_secs(30), || !b.assigned().is_empty() && !a.assigned().is_empty()),
        "no rebalance"
    );
    let at_rebalance = consumed();
    assert!(wait_until(Duration::from_secs(20), || consumed() >= at_rebalance + 8 * 20), "nothing consumed after it");
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let sent = producer.join().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = seen.lock().unwrap().clone();
        let distinct: std::collections::BTreeSet<(u32, u32)> = v.iter().copied().collect();
        if distinct.len() as u32 >= sent * 8 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!b.assigned().is_empty() && !a.assigned().is_empty(), "both members own queues after the rebalance");
    let v = seen.lock().unwrap().clone();
    for k in 0..8u32 {
        let mut firsts = Vec::new();
        let mut seen_k = std::collections::BTreeSet::new();
        for &(key, i) in &v {
            if key == k && seen_k.insert(i) {
                firsts.push(i);
            }
        }
        assert_eq!(firsts.len() as u32, sent, "key {k}: every message consumed");
        assert!(firsts.windows(2).all(|w| w[0] < w[1]), "key {k} out of order: {firsts:?}");
    }
    a.shutdown();
    b.shutdown();
}

#[test]
fn push_consumer_failures_are_retried_by_the_broker_then_dead_lettered() {
    let s = Server::start_fast(1);
    let p = Producer::new(&s.namesrv(), "PG");
    p.create_topic("Jobs", 1).unwrap();
    let attempts = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, String, i32)>::new()));
    let a2 = attempts.clone();
    let mut c = ringmq::client::PushConsumer::new(&s.namesrv(), "Workers", move |msgs| {
        let mut all_ok = true;
        for m in msgs {
            let body = String::from_utf8_lossy(&m.body).into_owned();
            a2.lock().unwrap().push((body.clone(), m.topic.clone(), m.reconsume_times));
            all_ok &= body == "fine" || (body == "flaky" && m.reconsume_times > 0);
        }
        all_ok
    });
    c.subscribe("Jobs", "*");
    c.max_reconsume_times(1);
    c.start_from(ringmq::client::StartFrom::First);
    c.start().unwrap();
    for body in ["fine", "flaky", "poison"] {
        p.send(&Message::new("Jobs", body)).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let consumer = PullConsumer::new(&s.namesrv(), "Auditor");
    let dead = loop {
        if let Some(q) = consumer.queues("%DLQ%Workers").ok().and_then(|v| v.into_iter().next())
            && let Ok(r) = consumer.pull(&q, 0, 32, "*", 0)
            && r.code == rs::SUCCESS
        {
            break r.messages;
        }
        assert!(Instant::now() < deadline, "nothing dead-lettered; attempts {:?}", attempts.lock().unwrap());
        std::thread::sleep(Duration::from_millis(100));
    };
    c.shutdown();
    assert_eq!(dead.len(), 1);
    assert_eq!(&dead[0].body[..], b"poison");
    let seen = attempts.lock().unwrap().clone();
    let of = |b: &str| seen.iter().filter(|(x, _, _)| x == b).map(|(_, t, r)| (t.clone(), *r)).collect::<Vec<_>>();
    assert_eq!(of("fine"), vec![("Jobs".to_string(), 0)]);
    assert_eq!(of("flaky"), vec![("Jobs".to_string(), 0), ("Jobs".to_string(), 1)], "retried once, topic restored");
    assert_eq!(of("poison"), vec![("Jobs".to_string(), 0), ("Jobs".to_string(), 1)]);
}
