//! Replication: shard i on every node of a cluster is one replica set (broker `<name>-i`). Its
//! master streams durable log bytes to each slave on the shard's port + 1 (`master.rs`); a slave
//! appends them verbatim at the same offsets and acknowledges its durable end (`slave.rs`); the
//! store's replica gate (`store::replicas`) holds sends until `--in-sync-replicas` replicas have
//! them and caps what consumers see at the confirm offset. Frames: `wire.rs`.
//!
//! Roles come from the controllers (`crate::controller`) through each shard's agent (`agent.rs`):
//! shard i prefers node `ids[i mod nodes]` (ids sorted) as its master, so masters are spread and a
//! lost node stops at most ⌈shards / nodes⌉ replica sets; when a master is lost the controller
//! elects another from the in-sync set. Everything here runs on the shard's own executor.

pub mod agent;
pub mod master;
mod meta;
pub mod slave;
pub mod wire;

use crate::config::{Config, ReplicationMode};
use std::collections::BTreeMap;
use std::time::Duration;

/// The broker tables that follow the log from a master to its slaves (RocketMQ polls them every
/// 10 s and loses what changed since on a switch, apache/rocketmq #9804): the master's stream sends
/// a table whenever its version moved, before the log bytes written after the change; a slave
/// replaces its own copy and persists it.
pub trait Metadata {
    /// The version of a table (`wire::KIND_TOPICS`, `wire::KIND_OFFSETS`); it moves when it changes.
    fn version(&self, kind: u16) -> u64;
    /// The table as JSON.
    fn encode(&self, kind: u16) -> Vec<u8>;
    /// Replaces this replica's table with the master's.
    fn apply(&self, kind: u16, body: &[u8]) -> Result<(), String>;
    /// This slave's log now ends at `end`: tables held back until it covered them take effect.
    fn log_reached(&self, _end: u64) {}
    /// This slave's log was truncated: what it recorded about deliveries in the cut part is void.
    fn truncated(&self) {}
}

/// Runs an I/O step, failing it after `d` (a peer that stops answering is given up on, never waited
/// for forever).
pub(crate) async fn timed<T, E: std::fmt::Display>(
    d: Duration,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    futures_lite::future::or(async { f.await.map_err(|e| e.to_string()) }, async {
        crate::rt::sleep(d).await;
        Err(format!("no answer within {d:?}"))
    })
    .await
}

/// A node's view of its cluster, from `--node-id`, `--cluster`, `--replication`,
/// `--in-sync-replicas` and `--learner`.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    pub node_id: u32,
    /// Node id → that node's name-server address.
    pub nodes: BTreeMap<u32, String>,
    pub mode: ReplicationMode,
    /// Replicas (master included) that must hold a send with `sync`.
    pub in_sync: usize,
    pub learner: bool,
    pub catchup_limit: Duration,
    /// This node's controller port when not its name server's + 2.
    pub controller_port: Option<u16>,
}

impl Topology {
    /// The cluster this node belongs to; `None` for a single node (no `--cluster`).
    pub fn of(cfg: &Config) -> Result<Option<Topology>, String> {
        if cfg.cluster.is_empty() {
            return Ok(None);
        }
        let mut nodes = BTreeMap::new();
        for entry in &cfg.cluster {
            let (id, addr) =
                entry.split_once('=').ok_or_else(|| format!("--cluster entry {entry:?} is not id=host:port"))?;
            let id: u32 =
                id.trim().parse().map_err(|_| format!("--cluster entry {entry:?}: the id is not a number"))?;
            if id == 0 {
                return Err(format!("--cluster entry {entry:?}: node ids start at 1"));
            }
            let addr = addr.trim();
            if addr.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).is_none() {
                return Err(format!("--cluster entry {entry:?}: {addr:?} is not host:port"));
            }
            if nodes.insert(id, addr.to_string()).is_some() {
                return Err(format!("--cluster names node {id} twice"));
            }
        }
        if !nodes.contains_key(&cfg.node_id) {
            return Err(format!("--node-id {} is not one of the --cluster nodes {:?}", cfg.node_id, nodes.keys()));
        }
        let in_sync = if cfg.in_sync_replicas == 0 { nodes.len() / 2 + 1 } else { cfg.in_sync_replicas };
        if in_sync > nodes.len() {
            return Err(format!("--in-sync-replicas {in_sync} is more than the {} nodes of --cluster", nodes.len()));
        }
        Ok(Some(Topology {
            node_id: cfg.node_id,
            nodes,
            mode: cfg.replication,
            in_sync,
            learner: cfg.learner,
            catchup_limit: Duration::from_millis(cfg.ha_max_time_slave_not_catchup_ms),
            controller_port: cfg.controller_port,
        }))
    }

    /// This node's name-server port, from its `--cluster` entry.
    pub fn own_namesrv_port(&self) -> u16 {
        self.nodes[&self.node_id].rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or(9876)
    }

    /// Replicas that must hold a send before it is acknowledged.
    pub fn needed(&self) -> usize {
        match self.mode {
            ReplicationMode::Sync => self.in_sync,
            ReplicationMode::Async => 1,
        }
    }

    /// The node that shard `shard`'s replica set prefers as master.
    pub fn preferred_master(&self, shard: usize) -> u32 {
        let ids: Vec<u32> = self.nodes.keys().copied().collect();
        ids[shard % ids.len()]
    }

    /// Every node's controller address by node id: its name server's host and port + 2 (this
    /// node's own `--controller-port` where given).
    pub fn controller_members(&self) -> BTreeMap<u64, String> {
        self.nodes
            .iter()
            .map(|(&id, addr)| {
                let (host, port) = addr.rsplit_once(':').unwrap_or((addr.as_str(), "9876"));
                let port: u16 = port.parse().unwrap_or(9876);
                let port = if id == self.node_id { self.own_controller_port() } else { port.saturating_add(2) };
                (u64::from(id), format!("{host}:{port}"))
            })
            .collect()
    }

    pub fn controllers(&self) -> Vec<String> {
        self.controller_members().into_values().collect()
    }

    pub fn own_controller_port(&self) -> u16 {
        self.controller_port.unwrap_or(self.own_namesrv_port().saturating_add(2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(node: u32, cluster: &[&str]) -> Config {
        Config { node_id: node, cluster: cluster.iter().map(|s| s.to_string()).collect(), ..Config::default() }
    }

    #[test]
    fn topology_parses_and_spreads_masters() {
        let t =
            Topology::of(&cfg(2, &["1=127.0.0.1:9876", "2=127.0.0.1:19876", "3=127.0.0.1:29876"])).unwrap().unwrap();
        assert_eq!(t.own_namesrv_port(), 19876);
        assert_eq!(t.controllers(), vec!["127.0.0.1:9878", "127.0.0.1:19878", "127.0.0.1:29878"]);
        assert_eq!(t.in_sync, 2, "a majority by default");
        assert_eq!((0..6).map(|i| t.preferred_master(i)).collect::<Vec<_>>(), vec![1, 2, 3, 1, 2, 3]);
        assert_eq!(Topology::of(&Config::default()).unwrap(), None);
    }

    #[test]
    fn topology_refuses_what_cannot_work() {
        assert!(Topology::of(&cfg(4, &["1=a:1", "2=b:2"])).unwrap_err().contains("--node-id 4"));
        assert!(Topology::of(&cfg(1, &["1=a:1", "1=b:2"])).unwrap_err().contains("twice"));
        assert!(Topology::of(&cfg(1, &["1=a"])).unwrap_err().contains("host:port"));
        assert!(Topology::of(&cfg(0, &["0=a:1"])).unwrap_err().contains("start at 1"));
        let mut c = cfg(1, &["1=a:1", "2=b:2"]);
        c.in_sync_replicas = 3;
        assert!(Topology::of(&c).unwrap_err().contains("more than"));
    }
}
