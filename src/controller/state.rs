//! The controllers' replicated state: per replica set (broker name) its master, the master's epoch,
//! the in-sync set and its epoch — RocketMQ 5's controller metadata. Changes are Raft entries
//! (`node.rs`), applied in log order on every controller, each guarded by the epochs its proposer saw
//! so that a stale proposal (two elections racing, a fenced master altering its in-sync set) fails
//! instead of overwriting a newer decision.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// One replica set as the controllers know it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaSetState {
    /// The master's node id; none before the first election.
    pub master: Option<u32>,
    pub master_epoch: u32,
    /// The replicas that hold everything acknowledged (the master included): elections pick from it.
    pub isr: BTreeSet<u32>,
    pub isr_epoch: u32,
}

/// A change proposed through Raft.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// `master` becomes master of `set` under `master_epoch`, which must be the current one + 1; the
    /// in-sync set restarts as `{master}` (the others rejoin once they caught up with it).
    Elect { set: String, master: u32, master_epoch: u32 },
    /// The master of `set` at `master_epoch` replaces the in-sync set it knows at `isr_epoch`.
    AlterIsr { set: String, master: u32, master_epoch: u32, isr_epoch: u32, isr: BTreeSet<u32> },
}

impl Change {
    pub fn set(&self) -> &str {
        match self {
            Change::Elect { set, .. } | Change::AlterIsr { set, .. } => set,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(b: &[u8]) -> Result<Change, String> {
        serde_json::from_slice(b).map_err(|e| format!("controller entry does not decode: {e}"))
    }
}

/// Why a change was refused; each has its RocketMQ response code (`service.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    FencedMasterEpoch(String),
    FencedIsrEpoch(String),
    Invalid(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::FencedMasterEpoch(s) | Refused::FencedIsrEpoch(s) | Refused::Invalid(s) => f.write_str(s),
        }
    }
}

/// Replica sets a controller keeps: every shard of a cluster is one; past this a new set is refused
/// (a misconfigured client cannot grow the state without bound).
pub const MAX_SETS: usize = 4096;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerState {
    pub sets: BTreeMap<String, ReplicaSetState>,
}

impl ControllerState {
    pub fn get(&self, set: &str) -> ReplicaSetState {
        self.sets.get(set).cloned().unwrap_or_default()
    }

    /// Applies a committed change; every controller reaches the same answer.
    pub fn apply(&mut self, change: &Change) -> Result<ReplicaSetState, Refused> {
        if !self.sets.contains_key(change.set()) && self.sets.len() >= MAX_SETS {
            return Err(Refused::Invalid(format!("more than {MAX_SETS} replica sets")));
        }
        let cur = self.get(change.set());
        let next = match change {
            Change::Elect { master, master_epoch, .. } => {
                if *master_epoch != cur.master_epoch + 1 {
                    return Err(Refused::FencedMasterEpoch(format!(
                        "election for epoch {master_epoch} but the set is at epoch {}",
                        cur.master_epoch
                    )));
                }
                ReplicaSetState {
                    master: Some(*master),
                    master_epoch: *master_epoch,
                    isr: BTreeSet::from([*master]),
                    isr_epoch: cur.isr_epoch + 1,
                }
            }
            Change::AlterIsr { master, master_epoch, isr_epoch, isr, .. } => {
                if cur.master != Some(*master) || cur.master_epoch != *master_epoch {
                    return Err(Refused::FencedMasterEpoch(format!(
                        "node {master} at epoch {master_epoch} is not the master (master {:?} at epoch {})",
                        cur.master, cur.master_epoch
                    )));
                }
                if cur.isr_epoch != *isr_epoch {
                    return Err(Refused::FencedIsrEpoch(format!(
                        "in-sync set epoch {isr_epoch} is stale (now {})",
                        cur.isr_epoch
                    )));
                }
                if !isr.contains(master) {
                    return Err(Refused::Invalid("the in-sync set must hold its master".into()));
                }
                ReplicaSetState { isr: isr.clone(), isr_epoch: cur.isr_epoch + 1, ..cur }
            }
        };
        self.sets.insert(change.set().to_string(), next.clone());
        Ok(next)
    }
}

/// A replica set as the controller answers a heartbeat or a query: its state and where clients
/// reach its master.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetView {
    pub master: Option<u32>,
    pub master_addr: Option<String>,
    pub master_epoch: u32,
    pub isr: BTreeSet<u32>,
    pub isr_epoch: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elections_and_isr_changes_are_fenced_by_their_epochs() {
        let mut s = ControllerState::default();
        let set = "b-0".to_string();
        let e1 = s.apply(&Change::Elect { set: set.clone(), master: 1, master_epoch: 1 }).unwrap();
        assert_eq!((e1.master, e1.isr.len()), (Some(1), 1));
        let grow = Change::AlterIsr {
            set: set.clone(),
            master: 1,
            master_epoch: 1,
            isr_epoch: e1.isr_epoch,
            isr: BTreeSet::from([1, 2, 3]),
        };
        let g = s.apply(&grow).unwrap();
        assert_eq!(g.isr, BTreeSet::from([1, 2, 3]));
        assert!(matches!(s.apply(&grow), Err(Refused::FencedIsrEpoch(_))), "the same change twice is stale");
        assert!(matches!(
            s.apply(&Change::Elect { set: set.clone(), master: 2, master_epoch: 1 }),
            Err(Refused::FencedMasterEpoch(_))
        ));
        let e2 = s.apply(&Change::Elect { set: set.clone(), master: 2, master_epoch: 2 }).unwrap();
        assert_eq!(e2.isr, BTreeSet::from([2]));
        let old_master = Change::AlterIsr {
            set: set.clone(),
            master: 1,
            master_epoch: 1,
            isr_epoch: e2.isr_epoch,
            isr: BTreeSet::from([1]),
        };
        assert!(matches!(s.apply(&old_master), Err(Refused::FencedMasterEpoch(_))), "a deposed master is fenced");
        let without_master =
            Change::AlterIsr { set, master: 2, master_epoch: 2, isr_epoch: e2.isr_epoch, isr: BTreeSet::from([3]) };
        assert!(matches!(s.apply(&without_master), Err(Refused::Invalid(_))));
    }
}
