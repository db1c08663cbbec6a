//! Black-box test of what a new master carries on from the old one: delayed (delay level) and timer
//! messages parked on the old master are delivered exactly once across a kill -9 failover — the
//! ones it delivered are not delivered again (its progress followed the log to the slaves), the
//! ones still waiting are delivered by the new master on time.

#[path = "common/cluster.rs"]
mod cluster;
mod common;

use cluster::{Cluster, consume_every};
use common::wait_until;
use ringmq::client::{Message, Producer};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn counts(bodies: Vec<String>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for b in bodies {
        *m.entry(b).or_insert(0) += 1;
    }
    m
}

#[test]
fn delayed_and_timer_messages_are_delivered_exactly_once_across_a_failover() {
    let mut c = Cluster::start(28000, 3, 1, &["--replication", "sync"]);
    assert!(c.wait_ready(1, Duration::from_secs(30)), "no master with an in-sync slave");
    let p = Producer::new(&c.namesrvs(), "PG");
    p.create_topic("Later", 2).unwrap();
    let sent_at = Instant::now();
    let mut want = Vec::new();
    for i in 0..20 {
        // Level 1 (1 s): delivered by the old master before it dies.
        p.send(&Message::new("Later", format!("soon-{i}")).with_property("DELAY", "1")).unwrap();
        // Level 3 (10 s) and timers of 8 s: still waiting when it dies, delivered by the new one.
        p.send(&Message::new("Later", format!("late-{i}")).with_property("DELAY", "3")).unwrap();
        p.send(&Message::new("Later", format!("timer-{i}")).with_property("TIMER_DELAY_MS", "8000")).unwrap();
        want.extend([format!("soon-{i}"), format!("late-{i}"), format!("timer-{i}")]);
    }
    assert!(
        wait_until(Duration::from_secs(10), || consume_every(&c.namesrvs(), "Later", 1).len() >= 20),
        "the old master did not deliver the 1 s level"
    );
    // Its progress reaches the slaves within half a second of a delivery.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(sent_at.elapsed() < Duration::from_secs(7), "too slow to kill the master before the rest is due");
    let old = c.current_master(0).unwrap();
    c.node(old).kill9();
    assert!(wait_until(Duration::from_secs(10), || c.current_master(0).is_some_and(|m| m != old)), "no new master");
    assert!(
        wait_until(Duration::from_secs(30), || consume_every(&c.namesrvs(), "Later", 1).len() >= want.len()),
        "the new master did not deliver what was still waiting: {:?}",
        counts(consume_every(&c.namesrvs(), "Later", 1)).len()
    );
    // Past every due time and a check period more: nothing delivered twice, nothing missing.
    std::thread::sleep(Duration::from_secs(2));
    let got = counts(consume_every(&c.namesrvs(), "Later", 1));
    let twice: Vec<_> = got.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    let missing: Vec<_> = want.iter().filter(|b| !got.contains_key(*b)).collect();
    assert!(missing.is_empty(), "never delivered: {missing:?}");
}
