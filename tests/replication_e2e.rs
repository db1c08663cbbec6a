//! Black-box replication tests: clusters of `ringmq serve` processes on 127.0.0.1 (`common::cluster`),
//! the native client over TCP.

#[path = "common/cluster.rs"]
mod cluster;
mod common;
#[path = "common/requests.rs"]
mod requests;

use cluster::{Cluster, assert_none_lost, consume_all, log_bytes, longest_stall, produce};
use common::wait_until;
use requests::raw_send;
use ringmq::client::{Connection, Message, Producer, PullConsumer};
use ringmq::protocol::Command;
use ringmq::protocol::codes::{request as rq, response as rs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(5);

/// The answer's code and remark (the client turns refusals into errors).
fn answer(conn: &Connection, cmd: Command) -> (i32, String) {
    match conn.call(cmd, T) {
        Ok(r) => (r.code, r.remark.unwrap_or_default()),
        Err(ringmq::client::ClientError::Refused { code, remark, .. }) => (code, remark),
        Err(e) => (-1, e.to_string()),
    }
}

/// Every replica of every shard durable at its master's end.
fn caught_up(c: &Cluster) -> bool {
    (0..c.shards).all(|shard| {
        let m = c.master_of(shard);
        let Some(end) = c.runtime_u64(m, shard, "commitLogFlushedOffset") else { return false };
        (1..=c.nodes.len()).all(|k| c.runtime_u64(k, shard, "commitLogFlushedOffset") == Some(end))
    })
}

#[test]
fn sync_replicated_sends_are_on_every_replica_byte_for_byte() {
    let mut c = Cluster::start(21000, 3, 2, &["--replication", "sync"]);
    assert!(c.wait_ready(2, Duration::from_secs(30)), "no masters with in-sync slaves");
    for shard in 0..2 {
        for k in 1..=3 {
            let role = c.runtime(k, shard).unwrap()["replicaRole"].as_str().unwrap().to_string();
            let want = if k == c.master_of(shard) { "Master" } else { "Slave" };
            assert_eq!(role, want, "shard {shard} on node {k}");
        }
    }
    let p = Producer::new(&c.namesrvs(), "PG");
    p.create_topic("Rep", 2).unwrap();
    for i in 0..300 {
        p.send(&Message::new("Rep", format!("m{i}")).with_keys(&[&format!("k{i}")])).unwrap();
    }
    assert!(wait_until(Duration::from_secs(15), || caught_up(&c)), "slaves did not catch up");
    let consumer = PullConsumer::new(&c.namesrvs(), "CG");
    let mut got = 0;
    for q in consumer.queues("Rep").unwrap() {
        got += consumer.max_offset(&q).unwrap();
    }
    assert_eq!(got, 300, "every acknowledged send is visible on the masters");
    let ends: Vec<u64> = (0..2).map(|s| c.runtime_u64(c.master_of(s), s, "commitLogFlushedOffset").unwrap()).collect();
    // The admin sees every replica, and moves a master deliberately to an in-sync replica.
    let rows = c.admin(&["cluster", "replicas"]);
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 6, "{rows:?}");
    assert_eq!(rows.iter().filter(|r| r["role"] == "Master").count(), 2);
    assert!(rows.iter().all(|r| r["lagBytes"] == 0), "{rows:?}");
    let target = if c.master_of(1) == 3 { 1 } else { 3 };
    c.admin(&["cluster", "elect", "ringmq-1", "--node", &target.to_string()]);
    assert!(
        wait_until(Duration::from_secs(10), || c.current_master(1) == Some(target)),
        "the elected node did not take over"
    );
    for k in 1..=3 {
        c.node(k).stop();
    }
    for (shard, &end) in ends.iter().enumerate() {
        assert!(end > 0);
        let master = log_bytes(c.nodes[c.master_of(shard) - 1].data_dir(), shard, end);
        for k in 1..=3 {
            assert!(
                log_bytes(c.nodes[k - 1].data_dir(), shard, end) == master,
                "shard {shard}'s log on node {k} differs"
            );
        }
    }
}

#[test]
fn a_slave_refuses_sends_and_a_master_without_enough_in_sync_replicas_refuses_them() {
    // Three nodes, all three must hold a send: losing one slave leaves the controllers a quorum, and
    // the master too few in-sync replicas.
    let mut c = Cluster::start(22000, 3, 1, &["--replication", "sync", "--in-sync-replicas", "3"]);
    assert!(c.wait_ready(2, Duration::from_secs(30)), "no master with its slaves in sync");
    let master = Connection::connect(&c.nodes[0].shard_addr(0), T).unwrap();
    let slave = Connection::connect(&c.nodes[2].shard_addr(0), T).unwrap();
    let (code, remark) = answer(&slave, raw_send("Sl", "x"));
    assert_eq!(code, rs::SERVICE_NOT_AVAILABLE, "{remark}");
    for i in 0..50 {
        let (code, remark) = answer(&master, raw_send("Sl", &format!("m{i}")));
        assert_eq!(code, rs::SUCCESS, "{remark}");
    }
    c.node(3).kill9();
    assert!(
        wait_until(Duration::from_secs(10), || {
            answer(&master, raw_send("Sl", "late")) == (rs::SYSTEM_ERROR, "in-sync replicas not enough".into())
        }),
        "sends went on without the slave"
    );
    // The slave comes back, catches up from its own end and rejoins: sends are acknowledged again.
    c.node(3).spawn().unwrap();
    assert!(
        wait_until(Duration::from_secs(15), || answer(&master, raw_send("Sl", "again")).0 == rs::SUCCESS),
        "the slave did not rejoin"
    );
    assert!(wait_until(Duration::from_secs(10), || caught_up(&c)));
    let consumer = PullConsumer::new(&c.namesrvs(), "CG");
    let q = consumer.queues("Sl").unwrap().into_iter().find(|q| q.queue_id == 0).unwrap();
    assert!(consumer.max_offset(&q).unwrap() >= 51);
}

#[test]
fn kill9_of_a_master_under_sync_load_loses_no_acknowledged_message() {
    let mut c = Cluster::start(23000, 3, 2, &["--replication", "sync"]);
    assert!(c.wait_ready(1, Duration::from_secs(30)), "no masters with in-sync slaves");
    let p = Producer::new(&c.namesrvs(), "PG");
    p.create_topic("Fail", 2).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let producers = produce(c.namesrvs(), "Fail", 3, stop.clone());
    std::thread::sleep(Duration::from_millis(1500));
    let victim = c.current_master(0).unwrap();
    let killed_at = Instant::now();
    c.node(victim).kill9();
    assert!(
        wait_until(Duration::from_secs(10), || c.current_master(0).is_some_and(|m| m != victim)),
        "no new master for shard 0 within 10 s"
    );
    let failover = killed_at.elapsed();
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<(String, String, Instant)> = producers.into_iter().flat_map(|h| h.join().unwrap()).collect();
    eprintln!("failover took {failover:?}; {} sends acknowledged", acked.len());
    // The replica set that did not lose its master kept acknowledging all along.
    let (gap, n) = longest_stall(&acked, "ringmq-1");
    assert!(n > 10 && gap < Duration::from_secs(3), "ringmq-1 stalled for {gap:?} during the failover");
    let got = consume_all(&c.namesrvs(), "Fail", 2);
    assert_none_lost(acked.iter().map(|(b, _, _)| b), &got);
}

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill").args([sig, &pid.to_string()]).status().unwrap().success();
    assert!(ok, "kill {sig} {pid}");
}

#[test]
fn a_paused_master_is_fenced_then_rejoins_as_a_slave_and_truncates() {
    let mut c = Cluster::start(24000, 3, 1, &["--replication", "sync"]);
    assert!(c.wait_ready(1, Duration::from_secs(30)), "no master with an in-sync slave");
    let p = Producer::new(&c.namesrvs(), "PG");
    p.create_topic("Pause", 4).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let producers = produce(c.namesrvs(), "Pause", 3, stop.clone());
    std::thread::sleep(Duration::from_millis(1000));
    let old = c.current_master(0).unwrap();
    let pid = c.nodes[old - 1].pid();
    signal(pid, "-STOP");
    let new = {
        let mut found = None;
        let others: Vec<usize> = (1..=3).filter(|&k| k != old).collect();
        assert!(
            wait_until(Duration::from_secs(10), || {
                found = others.iter().copied().find(|&k| c.runtime(k, 0).is_some_and(|t| t["replicaRole"] == "Master"));
                found.is_some()
            }),
            "no new master while the old one is paused"
        );
        found.unwrap()
    };
    std::thread::sleep(Duration::from_millis(1000));
    signal(pid, "-CONT");
    assert!(
        wait_until(Duration::from_secs(10), || c.runtime(old, 0).is_some_and(|t| t["replicaRole"] == "Slave")),
        "the old master did not step down"
    );
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<(String, String, Instant)> = producers.into_iter().flat_map(|h| h.join().unwrap()).collect();
    assert!(
        wait_until(Duration::from_secs(20), || {
            let end = c.runtime_u64(new, 0, "commitLogFlushedOffset");
            end.is_some() && c.runtime_u64(old, 0, "commitLogFlushedOffset") == end
        }),
        "the old master did not catch up as a slave"
    );
    let got = consume_all(&c.namesrvs(), "Pause", 1);
    assert_none_lost(acked.iter().map(|(b, _, _)| b), &got);
    let end = c.runtime_u64(new, 0, "commitLogFlushedOffset").unwrap();
    for k in 1..=3 {
        c.node(k).stop();
    }
    let reference = log_bytes(c.nodes[new - 1].data_dir(), 0, end);
    assert!(log_bytes(c.nodes[old - 1].data_dir(), 0, end) == reference, "the rejoined log differs from the master's");
}

/// The node whose controller leads, asked of any live controller.
fn controller_leader(c: &Cluster) -> Option<usize> {
    for s in c.nodes.iter().filter(|s| s.child.is_some()) {
        let addr = format!("127.0.0.1:{}", s.ns_port + 2);
        let Ok(conn) = Connection::connect(&addr, T) else { continue };
        let Ok(r) = conn.call(Command::request(rq::CONTROLLER_GET_REPLICA_INFO), T) else { continue };
        let v: serde_json::Value = serde_json::from_slice(&r.body_bytes()).ok()?;
        if let Some(l) = v["leader"].as_u64() {
            return Some(l as usize);
        }
    }
    None
}

#[test]
fn repeated_kill9_failovers_lose_nothing_and_survive_the_controller_leaders_death() {
    // RINGMQ_FAILOVER_CYCLES=20 for the long run recorded in docs/BENCHMARKS.md.
    let cycles: usize = std::env::var("RINGMQ_FAILOVER_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(4);
    let mut c = Cluster::start(25000, 3, 2, &["--replication", "sync"]);
    assert!(c.wait_ready(1, Duration::from_secs(30)), "no masters with in-sync slaves");
    Producer::new(&c.namesrvs(), "PG").create_topic("Cycle", 2).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let producers = produce(c.namesrvs(), "Cycle", 2, stop.clone());
    let mut failovers = Vec::new();
    for cycle in 0..cycles {
        let shard = cycle % 2;
        // The first cycle kills the node whose controller leads: elections must go on with two.
        let victim = if cycle == 0 { controller_leader(&c).unwrap() } else { c.current_master(shard).unwrap() };
        let masters: Vec<usize> = (0..2).filter(|&s| c.current_master(s) == Some(victim)).collect();
        let t0 = Instant::now();
        c.node(victim).kill9();
        for &s in &masters {
            assert!(
                wait_until(Duration::from_secs(10), || c.current_master(s).is_some_and(|m| m != victim)),
                "cycle {cycle}: no new master for shard {s} within 10 s"
            );
        }
        if !masters.is_empty() {
            failovers.push(t0.elapsed());
        }
        c.node(victim).spawn().unwrap();
        assert!(c.wait_ready(1, Duration::from_secs(30)), "cycle {cycle}: the cluster did not recover");
    }
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<(String, String, Instant)> = producers.into_iter().flat_map(|h| h.join().unwrap()).collect();
    eprintln!("{cycles} cycles, failovers {failovers:?}, {} sends acknowledged", acked.len());
    let got = consume_all(&c.namesrvs(), "Cycle", 2);
    assert_none_lost(acked.iter().map(|(b, _, _)| b), &got);
}
