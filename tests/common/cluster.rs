//! A replicated cluster of `ringmq serve` processes on 127.0.0.1 for black-box tests (included with
//! `#[path]`, not from `mod.rs`: the compat/ crate shares that file and does not link ringmq): node k's name
//! server on `base + 100·k`, its shards from `base + 100·k + 10` (each shard's replication port is
//! its own + 1). Each test passes its own `base` so clusters of tests running at once never share a
//! port; bases stay below the kernel's ephemeral range (32768+), so no client socket takes them.

#![allow(dead_code)] // each test binary uses part of it

use crate::common::{Server, wait_until};
use ringmq::client::{Connection, Message, Producer, PullConsumer};
use ringmq::protocol::Command;
use ringmq::protocol::codes::{request as rq, response as rs};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub struct Cluster {
    pub nodes: Vec<Server>,
    pub shards: usize,
}

impl Cluster {
    /// Starts `n` nodes with `shards` shards each and `extra` flags (e.g. `--in-sync-replicas 2`).
    pub fn start(base: u16, n: usize, shards: usize, extra: &[&str]) -> Cluster {
        let mut c = Cluster::configure(base, n, shards, extra);
        c.spawn_all();
        c
    }

    /// The nodes of [`Cluster::start`], not started yet (a test adds a node's own flags first).
    pub fn configure(base: u16, n: usize, shards: usize, extra: &[&str]) -> Cluster {
        let list: Vec<String> = (1..=n).map(|k| format!("{k}=127.0.0.1:{}", base + 100 * k as u16)).collect();
        let list = list.join(",");
        let mut nodes = Vec::new();
        for k in 1..=n {
            let tmp = tempfile::tempdir().unwrap();
            let ns = base + 100 * k as u16;
            let mut s = Server::with_ports(tmp.path().to_path_buf(), ns + 10, ns, shards);
            s._tmp = Some(tmp);
            s.extra = ["--node-id", &k.to_string(), "--cluster", &list].iter().map(|x| x.to_string()).collect();
            s.extra.extend(extra.iter().map(|x| x.to_string()));
            nodes.push(s);
        }
        Cluster { nodes, shards }
    }

    /// Starts every node (together: a node waits a moment for the others' name servers when it
    /// registers).
    pub fn spawn_all(&mut self) {
        for s in self.nodes.iter_mut() {
            s.spawn().expect("cluster node did not start");
        }
    }

    /// Node `k` (1-based).
    pub fn node(&mut self, k: usize) -> &mut Server {
        &mut self.nodes[k - 1]
    }

    /// The name servers, `a;b;c`, as clients take them.
    pub fn namesrvs(&self) -> String {
        self.nodes.iter().map(|s| s.namesrv()).collect::<Vec<_>>().join(";")
    }

    /// Shard `shard`'s runtime table on node `k` (GET_BROKER_RUNTIME_INFO), or None when unreachable.
    pub fn runtime(&self, k: usize, shard: usize) -> Option<serde_json::Value> {
        let c = Connection::connect(&self.nodes[k - 1].shard_addr(shard), Duration::from_secs(2)).ok()?;
        let r = c.call(Command::request(rq::GET_BROKER_RUNTIME_INFO), Duration::from_secs(2)).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&r.body_bytes()).ok()?;
        Some(v["table"].clone())
    }

    /// A number from shard `shard`'s runtime table on node `k`.
    pub fn runtime_u64(&self, k: usize, shard: usize, key: &str) -> Option<u64> {
        self.runtime(k, shard)?[key].as_str()?.parse().ok()
    }

    /// The node shard `shard` says is its master now, if exactly one does.
    pub fn current_master(&self, shard: usize) -> Option<usize> {
        let masters: Vec<usize> = (1..=self.nodes.len())
            .filter(|&k| self.nodes[k - 1].child.is_some())
            .filter(|&k| self.runtime(k, shard).is_some_and(|t| t["replicaRole"] == "Master"))
            .collect();
        (masters.len() == 1).then(|| masters[0])
    }

    /// Waits until every shard has a master and `in_sync` slaves in its in-sync set.
    pub fn wait_ready(&self, in_sync: u64, within: Duration) -> bool {
        crate::common::wait_until(within, || {
            (0..self.shards).all(|s| {
                self.current_master(s)
                    .is_some_and(|m| self.runtime_u64(m, s, "inSyncSlaves").is_some_and(|n| n >= in_sync))
            })
        })
    }

    /// `ringmq admin --json` against the cluster's name servers; panics when it fails.
    pub fn admin(&self, args: &[&str]) -> serde_json::Value {
        let out = std::process::Command::new(crate::common::binary())
            .args(["admin", "--json", "--namesrv", &self.namesrvs()])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "admin {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The node the shard's replica set prefers as master (ids sorted: `shard mod n` + 1).
    pub fn master_of(&self, shard: usize) -> usize {
        shard % self.nodes.len() + 1
    }
}

/// The first `len` bytes of a shard's log on a node (segments in order).
pub fn log_bytes(dir: &Path, shard: usize, len: u64) -> Vec<u8> {
    let seg_dir = dir.join(shard.to_string()).join("commitlog");
    let mut names: Vec<String> =
        std::fs::read_dir(&seg_dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    let mut out = Vec::new();
    for n in names {
        out.extend(std::fs::read(seg_dir.join(n)).unwrap());
        if out.len() as u64 >= len {
            break;
        }
    }
    out.truncate(len as usize);
    out
}

/// Sends from `threads` producers until `stop`; returns every acknowledged body with its broker
/// and the time it was acknowledged.
pub fn produce(
    namesrvs: String,
    topic: &'static str,
    threads: usize,
    stop: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<Vec<(String, String, Instant)>>> {
    (0..threads)
        .map(|t| {
            let (namesrvs, stop) = (namesrvs.clone(), stop.clone());
            std::thread::spawn(move || {
                let p = Producer::new(&namesrvs, &format!("PG{t}"));
                let mut acked = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let body = format!("t{t}-{i}");
                    i += 1;
                    if let Ok(r) = p.send(&Message::new(topic, body.clone())) {
                        acked.push((body, r.queue.broker_name.clone(), Instant::now()));
                    }
                }
                acked
            })
        })
        .collect()
}

/// Every body in `topic`, read from each queue's current master up to its max offset. A failed
/// pull is retried (a client would) for up to 15 s per queue and reported; a queue that ends short
/// of its max offset, or serves an offset twice, fails the test with what was seen.
pub fn consume_all(namesrvs: &str, topic: &str, replica_sets: usize) -> BTreeSet<String> {
    consume_every(namesrvs, topic, replica_sets).into_iter().collect()
}

/// What [`consume_all`] reads, every copy: a body stored twice appears twice.
pub fn consume_every(namesrvs: &str, topic: &str, replica_sets: usize) -> Vec<String> {
    let c = PullConsumer::new(namesrvs, "Verify");
    let mut out = Vec::new();
    // A name server of a node restarted a moment ago learns the routes from the other nodes'
    // registrars within a second or two, and a route lists only replica sets with a master: wait
    // until every set is in it, as a client retries its lookup (a read of part of the queues once
    // made this test report half the messages lost).
    let mut queues = Vec::new();
    let complete = wait_until(Duration::from_secs(15), || {
        queues = c.queues(topic).unwrap_or_default();
        queues.iter().map(|q| &q.broker_name).collect::<BTreeSet<_>>().len() == replica_sets
    });
    assert!(complete, "the route of {topic} lacks replica sets after 15 s: {queues:?}");
    for q in queues {
        let (mut off, mut max, mut failures) = (0u64, None::<u64>, Vec::new());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match c.pull(&q, off, 32, "*", 0) {
                Ok(r) if r.code == rs::SUCCESS && !r.messages.is_empty() => {
                    // Nothing filters here: a pull serves consecutive queue offsets from `off`.
                    let seen: Vec<u64> = r.messages.iter().map(|m| m.queue_offset).collect();
                    let want: Vec<u64> = (off..off + seen.len() as u64).collect();
                    assert_eq!(seen, want, "{q:?}: a pull from {off} skipped or repeated offsets");
                    assert_eq!(r.next_offset, off + seen.len() as u64, "{q:?}: next offset past what was served");
                    out.extend(r.messages.iter().map(|m| String::from_utf8_lossy(&m.body).into_owned()));
                    off = r.next_offset;
                    max = Some(r.max_offset);
                }
                Ok(r) if r.code == rs::PULL_NOT_FOUND && max.is_none_or(|m| off >= m) && off == r.max_offset => break,
                other => {
                    failures.push(format!("{off}: {:?}", other.map(|r| (r.code, r.next_offset, r.max_offset))));
                    assert!(Instant::now() < deadline, "{q:?} unreadable past offset {off}: {failures:?}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        if !failures.is_empty() {
            eprintln!("{q:?}: pulls retried before reaching offset {off}: {failures:?}");
        }
    }
    out
}

/// Fails the test naming how many of `acked` are not in `got`, with a few of them.
pub fn assert_none_lost<'a>(acked: impl IntoIterator<Item = &'a String>, got: &BTreeSet<String>) {
    let lost: Vec<&String> = acked.into_iter().filter(|b| !got.contains(*b)).collect();
    assert!(lost.is_empty(), "{} acknowledged messages lost, e.g. {:?}", lost.len(), &lost[..lost.len().min(5)]);
}

/// The longest time between two consecutive acknowledgements of `acked` from `broker` (how long
/// its sends stalled), and how many it acknowledged.
pub fn longest_stall(acked: &[(String, String, Instant)], broker: &str) -> (Duration, usize) {
    let mut at: Vec<Instant> = acked.iter().filter(|(_, b, _)| b == broker).map(|(_, _, t)| *t).collect();
    at.sort();
    (at.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default(), at.len())
}
