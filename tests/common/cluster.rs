//! A replicated cluster of `ringmq serve` processes on 127.0.0.1 for black-box tests (included with
//! `#[path]`, not from `mod.rs`: the compat/ crate shares that file and does not link ringmq): node k's name
//! server on `base + 100·k`, its shards from `base + 100·k + 10` (each shard's replication port is
//! its own + 1). Each test passes its own `base` so clusters of tests running at once never share a
//! port; bases stay below the kernel's ephemeral range (32768+), so no client socket takes them.

use crate::common::Server;
use ringmq::client::Connection;
use ringmq::protocol::Command;
use ringmq::protocol::codes::request as rq;
use std::time::Duration;

pub struct Cluster {
    pub nodes: Vec<Server>,
    pub shards: usize,
}

impl Cluster {
    /// Starts `n` nodes with `shards` shards each and `extra` flags (e.g. `--in-sync-replicas 2`).
    pub fn start(base: u16, n: usize, shards: usize, extra: &[&str]) -> Cluster {
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
        // Start them together: a node waits a moment for the others' name servers when it registers.
        for s in nodes.iter_mut() {
            s.spawn().expect("cluster node did not start");
        }
        Cluster { nodes, shards }
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

    /// The node the shard's replica set prefers as master (ids sorted: `shard mod n` + 1).
    pub fn master_of(&self, shard: usize) -> usize {
        shard % self.nodes.len() + 1
    }
}
