//! Black-box tests of timer messages (arbitrary delivery time: TIMER_DELIVER_MS, TIMER_DELAY_SEC,
//! TIMER_DELAY_MS) on a started ringmq, with the native client.

mod common;

use common::{Server, epoch_ms, wait_until};
use ringmq::client::{ClientError, Message, MessageQueue, Producer, PullConsumer};
use ringmq::protocol::codes::response as rs;
use ringmq::protocol::message::StoredMessage;
use std::time::{Duration, Instant};

/// Pulls from `offset` until `n` messages arrived, noting the epoch ms each one was first seen.
fn collect(c: &PullConsumer, q: &MessageQueue, n: usize, within: Duration) -> Vec<(i64, StoredMessage)> {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    let mut offset = 0;
    while out.len() < n && Instant::now() < deadline {
        let r = c.pull(q, offset, 32, "*", 0).unwrap();
        let now = epoch_ms();
        if r.code == rs::SUCCESS {
            offset = r.next_offset;
            out.extend(r.messages.into_iter().map(|m| (now, m)));
        } else {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    out
}

fn body(m: &StoredMessage) -> String {
    String::from_utf8_lossy(&m.body).into_owned()
}

#[test]
fn timer_messages_arrive_at_their_time_never_early() {
    let s = Server::start(1, &[]);
    let p = Producer::new(&s.namesrv(), "PG");
    p.create_topic("Timed", 1).unwrap();
    let c = PullConsumer::new(&s.namesrv(), "CG");
    let q = c.queues("Timed").unwrap()[0].clone();
    let t0 = epoch_ms();
    let sends = [
        ("relative-ms", "TIMER_DELAY_MS", "1300".to_string(), t0 + 1300),
        ("relative-sec", "TIMER_DELAY_SEC", "1".to_string(), t0 + 1000),
        ("absolute", "TIMER_DELIVER_MS", (t0 + 700).to_string(), t0 + 700),
        ("past", "TIMER_DELIVER_MS", (t0 - 5000).to_string(), t0),
    ];
    for (name, key, value, _) in &sends {
        p.send(&Message::new("Timed", *name).with_property(key, value)).unwrap();
    }
    let got = collect(&c, &q, 4, Duration::from_secs(10));
    let order: Vec<String> = got.iter().map(|(_, m)| body(m)).collect();
    assert_eq!(order, ["past", "absolute", "relative-sec", "relative-ms"], "delivered in due order");
    for (seen, m) in &got {
        let (_, _, _, due) = sends.iter().find(|s| s.0 == body(m)).unwrap();
        assert!(*seen >= *due, "{} seen at {seen}, before its due time {due}", body(m));
        assert!(*seen < due + 700, "{} seen {} ms after its due time", body(m), seen - due);
        if body(m) != "past" {
            assert_eq!(m.property("REAL_TOPIC").as_deref(), Some("Timed"));
            assert!(m.property("TIMER_OUT_MS").is_some());
        }
    }
}

#[test]
fn bad_timer_properties_are_refused_with_message_illegal() {
    let s = Server::start_with_config(1, ".conf", "timerMaxDelaySec=60\n"); // a RocketMQ broker.conf
    let p = Producer::new(&s.namesrv(), "PG");
    p.create_topic("Timed", 1).unwrap();
    for (key, value) in [("TIMER_DELAY_SEC", "61"), ("TIMER_DELAY_MS", "soon")] {
        match p.send(&Message::new("Timed", "x").with_property(key, value)) {
            Err(ClientError::Refused { code, remark, .. }) => {
                assert_eq!(code, rs::MESSAGE_ILLEGAL, "{key}={value}: {remark}");
            }
            other => panic!("{key}={value}: expected MESSAGE_ILLEGAL, got {other:?}"),
        }
    }
}

#[test]
fn timer_messages_survive_restart_and_crash_exactly_once() {
    let mut s = Server::start(1, &[]);
    let p = Producer::new(&s.namesrv(), "PG");
    p.create_topic("TimedR", 1).unwrap();
    // Half due soon after a graceful restart, half due after the crash below.
    for i in 0..20 {
        let delay = if i % 2 == 0 { 1500 } else { 5000 };
        p.send(&Message::new("TimedR", format!("t{i:02}")).with_property("TIMER_DELAY_MS", &delay.to_string()))
            .unwrap();
    }
    s.restart();
    // Crash once the first half (1.5 s) is delivered, before its progress is persisted (every 5 s).
    let probe = PullConsumer::new(&s.namesrv(), "Probe");
    let pq = probe.queues("TimedR").unwrap()[0].clone();
    assert!(
        wait_until(Duration::from_secs(4), || probe.max_offset(&pq).unwrap_or(0) >= 10),
        "first half not delivered"
    );
    s.kill9();
    s.spawn().unwrap();
    let c = PullConsumer::new(&s.namesrv(), "CG");
    let q = c.queues("TimedR").unwrap()[0].clone();
    let got = collect(&c, &q, 20, Duration::from_secs(10));
    // Once nothing is pending in the timer wheel, a doubled delivery would already be stored.
    assert!(
        wait_until(Duration::from_secs(10), || s.metric_published("ringmq_timers_pending") == Some(0)),
        "timer messages still pending"
    );
    let extra = c.pull(&q, 20, 32, "*", 0).unwrap();
    let mut bodies: Vec<String> = got.iter().map(|(_, m)| body(m)).collect();
    bodies.sort();
    let want: Vec<String> = (0..20).map(|i| format!("t{i:02}")).collect();
    assert_eq!(bodies, want, "each delivered once; server log:\n{}", s.log());
    assert_ne!(extra.code, rs::SUCCESS, "a timer message was delivered twice");
}
