//! When the controller leader elects, and whom — a pure function of the replicated state and the
//! replicas' heartbeats the leader has seen, so it is tested without a network.
//!
//! A master is lost when its heartbeats stop for [`MASTER_TIMEOUT`], or sooner when the connection
//! its heartbeats came on closed (a killed process's sockets close at once): then as soon as the
//! lease its last answer could have granted has run out ([`LEASE`] after that heartbeat arrived; the
//! lease counts from its sending, which was earlier), so it has stopped acknowledging before anyone
//! else is elected. Only a leader of [`MASTER_TIMEOUT`] standing uses the closed connection: every
//! lease a previous leader granted has run out by then, and every one since came from this leader,
//! which saw the heartbeat that asked for it. The new master comes from the
//! in-sync set only (never an unclean election), among replicas heard from within that time, by log
//! end (most data) and then node id. A set that never had a master gets its preferred node (masters
//! spread over nodes) once it is heard from, or — when that node stays silent — the replica with the
//! most data. A controller that just became leader has not heard anyone yet: it replaces no master
//! for [`MASTER_TIMEOUT`], so silence it has not had time to observe is never mistaken for a loss.

use super::state::{Change, ControllerState};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Replicas heartbeat every second; three missed ones make a master lost. A master stops
/// acknowledging sends when it has not heard from the controller for [`LEASE`], which is shorter, so
/// it is fenced before anyone else can be elected.
pub const MASTER_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a master's heartbeat answer keeps it master (counted from when it sent the heartbeat).
pub const LEASE: Duration = Duration::from_secs(2);

/// The last heartbeat of one replica of one set.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub at: Instant,
    /// Its durable log end.
    pub log_end: u64,
    pub learner: bool,
    /// Where clients reach it.
    pub addr: String,
    /// The set prefers it as master.
    pub preferred: bool,
    /// The connection the heartbeat came on (its id on the controller's listener), and whether it
    /// has closed since.
    pub conn: u64,
    pub closed: bool,
}

/// Heartbeats by set, then node id. Bounded by the number of sets times nodes.
pub type SeenTable = BTreeMap<String, BTreeMap<u32, Seen>>;

fn alive(s: &Seen, now: Instant) -> bool {
    now.saturating_duration_since(s.at) < MASTER_TIMEOUT
}

/// A master that is gone: silent past the timeout, or its connection closed and its lease over
/// (the latter only known to a leader that has led for [`MASTER_TIMEOUT`]).
fn master_lost(s: &Seen, now: Instant, leading: Duration) -> bool {
    let since = now.saturating_duration_since(s.at);
    since >= MASTER_TIMEOUT || (s.closed && since >= LEASE && leading >= MASTER_TIMEOUT)
}

/// The elections the leader should propose now. `unclean` (enableElectUncleanMaster): a lost master
/// with no live in-sync replica is replaced by the live non-learner with the most data.
pub fn decide(
    state: &ControllerState,
    seen: &SeenTable,
    now: Instant,
    leader_since: Instant,
    unclean: bool,
) -> Vec<Change> {
    let leading = now.saturating_duration_since(leader_since);
    let mut out = Vec::new();
    for (set, replicas) in seen {
        let cur = state.get(set);
        let voters = replicas.iter().filter(|(_, s)| alive(s, now) && !s.closed && !s.learner);
        let pick = match cur.master {
            Some(m) if replicas.get(&m).is_some_and(|s| !master_lost(s, now, leading)) => None,
            Some(_) if leading < MASTER_TIMEOUT => None,
            Some(m) => {
                let voters: Vec<(&u32, &Seen)> = voters.filter(|(id, _)| **id != m).collect();
                let most_data = |c: &[&(&u32, &Seen)]| {
                    c.iter().max_by(|a, b| a.1.log_end.cmp(&b.1.log_end).then(b.0.cmp(a.0))).map(|(id, _)| **id)
                };
                let clean: Vec<&(&u32, &Seen)> = voters.iter().filter(|(id, _)| cur.isr.contains(id)).collect();
                match most_data(&clean) {
                    Some(id) => Some(id),
                    None if unclean => most_data(&voters.iter().collect::<Vec<_>>()),
                    None => None,
                }
            }
            None => {
                let voters: Vec<(&u32, &Seen)> = voters.collect();
                match voters.iter().find(|(_, s)| s.preferred) {
                    Some((id, _)) => Some(**id),
                    None if leading >= 2 * MASTER_TIMEOUT => voters
                        .iter()
                        .max_by(|a, b| a.1.log_end.cmp(&b.1.log_end).then(b.0.cmp(a.0)))
                        .map(|(id, _)| **id),
                    None => None,
                }
            }
        };
        if let Some(master) = pick {
            out.push(Change::Elect { set: set.clone(), master, master_epoch: cur.master_epoch + 1 });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::state::ReplicaSetState;
    use std::collections::BTreeSet;

    fn seen(at: Instant, log_end: u64, preferred: bool) -> Seen {
        Seen { at, log_end, learner: false, addr: String::new(), preferred, conn: 0, closed: false }
    }

    #[test]
    fn a_lost_master_is_replaced_by_the_in_sync_replica_with_most_data() {
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(10);
        let mut state = ControllerState::default();
        state.sets.insert(
            "b-0".into(),
            ReplicaSetState { master: Some(1), master_epoch: 4, isr: BTreeSet::from([1, 2, 3]), isr_epoch: 9 },
        );
        let mut table = SeenTable::new();
        let set = table.entry("b-0".into()).or_default();
        set.insert(1, seen(now - Duration::from_secs(1), 900, true));
        set.insert(2, seen(now, 800, false));
        set.insert(3, seen(now, 850, false));
        assert!(decide(&state, &table, now, t0, false).is_empty(), "a live master stays");
        table.get_mut("b-0").unwrap().get_mut(&1).unwrap().at = now - MASTER_TIMEOUT;
        assert_eq!(
            decide(&state, &table, now, t0, false),
            vec![Change::Elect { set: "b-0".into(), master: 3, master_epoch: 5 }]
        );
        assert!(decide(&state, &table, now, now - Duration::from_secs(1), false).is_empty(), "a new leader waits");
        state.sets.get_mut("b-0").unwrap().isr = BTreeSet::from([1, 2]);
        assert_eq!(
            decide(&state, &table, now, t0, false)[0],
            Change::Elect { set: "b-0".into(), master: 2, master_epoch: 5 }
        );
        state.sets.get_mut("b-0").unwrap().isr = BTreeSet::from([1]);
        assert!(decide(&state, &table, now, t0, false).is_empty(), "never outside the in-sync set");
        assert_eq!(
            decide(&state, &table, now, t0, true),
            vec![Change::Elect { set: "b-0".into(), master: 3, master_epoch: 5 }],
            "unless unclean elections are enabled: the live replica with the most data"
        );
        table.get_mut("b-0").unwrap().get_mut(&2).unwrap().learner = true;
        state.sets.get_mut("b-0").unwrap().isr = BTreeSet::from([1, 2]);
        assert!(decide(&state, &table, now, t0, false).is_empty(), "never a learner");
        table.get_mut("b-0").unwrap().get_mut(&3).unwrap().learner = true;
        assert!(decide(&state, &table, now, t0, true).is_empty(), "not even an unclean election picks a learner");
    }

    #[test]
    fn a_master_whose_connection_closed_is_replaced_once_its_lease_is_over() {
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(10);
        let mut state = ControllerState::default();
        state.sets.insert(
            "b-0".into(),
            ReplicaSetState { master: Some(1), master_epoch: 2, isr: BTreeSet::from([1, 2, 3]), isr_epoch: 3 },
        );
        let mut table = SeenTable::new();
        let set = table.entry("b-0".into()).or_default();
        set.insert(1, Seen { closed: true, ..seen(now - LEASE + Duration::from_millis(100), 900, true) });
        set.insert(2, seen(now, 800, false));
        set.insert(3, Seen { closed: true, ..seen(now, 850, false) });
        assert!(decide(&state, &table, now, t0, false).is_empty(), "its lease may still run");
        let later = now + Duration::from_millis(100);
        assert_eq!(
            decide(&state, &table, later, t0, false),
            vec![Change::Elect { set: "b-0".into(), master: 2, master_epoch: 3 }],
            "replaced at once after the lease, by a replica whose connection is open"
        );
        assert!(
            decide(&state, &table, later, later - MASTER_TIMEOUT + Duration::from_millis(1), false).is_empty(),
            "a leader that may not have seen every lease granted waits for the timeout"
        );
        table.get_mut("b-0").unwrap().get_mut(&1).unwrap().closed = false;
        assert!(decide(&state, &table, later, t0, false).is_empty(), "an open connection: the timeout rules");
    }

    #[test]
    fn a_new_set_gets_its_preferred_node_or_after_a_while_the_most_data() {
        let t0 = Instant::now();
        let state = ControllerState::default();
        let mut table = SeenTable::new();
        let set = table.entry("b-1".into()).or_default();
        set.insert(1, seen(t0 + Duration::from_secs(4), 100, false));
        set.insert(2, seen(t0 + Duration::from_secs(4), 50, true));
        let now = t0 + Duration::from_secs(4);
        assert_eq!(
            decide(&state, &table, now, t0, false)[0],
            Change::Elect { set: "b-1".into(), master: 2, master_epoch: 1 }
        );
        table.get_mut("b-1").unwrap().remove(&2);
        assert!(decide(&state, &table, now, t0, false).is_empty(), "the preferred node may still come");
        let later = t0 + Duration::from_secs(6);
        table.get_mut("b-1").unwrap().get_mut(&1).unwrap().at = later;
        assert_eq!(
            decide(&state, &table, later, t0, false)[0],
            Change::Elect { set: "b-1".into(), master: 1, master_epoch: 1 }
        );
    }
}
