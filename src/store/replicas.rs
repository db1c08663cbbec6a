//! What replication asks of one shard's store: whether it may append (only a master may), how many
//! replicas must hold a record durably before its append is acknowledged, and how far consumers may
//! read (the confirm offset). Lives in the store on the shard's executor, so every append — a
//! client's send, a retry, a timer firing, a transaction commit — passes the same gate; the
//! replication tasks (`crate::replication`) on the same executor feed it the slaves' acks.
//!
//! The confirm offset is the smallest durable end over the in-sync set (master included): a replica
//! an election may pick holds everything a consumer saw, so a failover never takes a seen message back.

use super::error::StoreError;
use futures_channel::oneshot;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// How long a send waits for its slaves (RocketMQ's `slaveTimeout`, 3 s) before FLUSH_SLAVE_TIMEOUT.
pub const SLAVE_ACK_TIMEOUT: Duration = Duration::from_secs(3);

/// Completes an append waiting for its slaves.
type AckSender = oneshot::Sender<Result<(), StoreError>>;

/// A replica's part in its replica set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaRole {
    /// No replication: today's single node.
    Single,
    /// Appends and streams to its slaves.
    Master,
    /// Appends only what its master streams; refuses sends.
    Slave,
}

/// A slave as its master sees it.
#[derive(Debug, Clone)]
pub struct SlaveState {
    /// Durable end the slave reported last.
    pub acked: u64,
    /// The master's durable end at the slave's previous ack: the next ack must reach it.
    pub target: u64,
    pub in_sync: bool,
    /// Its ack reached the master's end of its previous ack (it keeps pace).
    pub caught_up: bool,
    /// A replication stream to it is open.
    pub connected: bool,
    /// An async learner never joins the in-sync set.
    pub learner: bool,
    /// Since when the slave has been behind the confirm offset without catching up (none: caught up).
    pub behind_since: Option<Instant>,
}

/// The gate, one per store.
pub struct ReplicaGate {
    role: Cell<ReplicaRole>,
    epoch: Cell<u32>,
    /// Replicas (master included) that must hold a record durably before its append is acknowledged
    /// (`--in-sync-replicas`); 1 acknowledges on the master alone (`--replication async`).
    needed: Cell<usize>,
    slaves: RefCell<BTreeMap<u32, SlaveState>>,
    /// Appends waiting for slave acks: (log end, sender), in log order.
    waiters: RefCell<VecDeque<(u64, AckSender)>>,
    /// On a slave: the confirm offset its master sent last.
    master_confirm: Cell<u64>,
    /// On a master: the highest confirm offset reported, so that a slave joining the in-sync set
    /// behind it never takes visible records back.
    confirmed: Cell<u64>,
    /// The in-sync set is the controller's (a cluster): slaves join and leave it only through the
    /// controller, never by this master's own view, so an election never picks a replica that
    /// lacks what this master acknowledged.
    controlled: Cell<bool>,
    isr_epoch: Cell<u32>,
    /// This replica's node id (a controlled master is in its own in-sync set, not among its slaves).
    me: Cell<Option<u32>>,
    /// A controlled master acknowledges only until this instant (its controller lease).
    lease_until: Cell<Option<Instant>>,
    /// Times this replica took the master role, and appends refused by fencing (metrics).
    pub became_master: Cell<u64>,
    pub fenced: Cell<u64>,
    /// Raised on every slave ack: the confirm offset may have moved (the streams pass it on).
    pub acked: crate::rt::Beacon,
}

impl Default for ReplicaGate {
    fn default() -> ReplicaGate {
        ReplicaGate {
            role: Cell::new(ReplicaRole::Single),
            epoch: Cell::new(0),
            needed: Cell::new(1),
            slaves: RefCell::new(BTreeMap::new()),
            waiters: RefCell::new(VecDeque::new()),
            master_confirm: Cell::new(0),
            confirmed: Cell::new(0),
            controlled: Cell::new(false),
            isr_epoch: Cell::new(0),
            me: Cell::new(None),
            lease_until: Cell::new(None),
            became_master: Cell::new(0),
            fenced: Cell::new(0),
            acked: crate::rt::Beacon::default(),
        }
    }
}

impl ReplicaGate {
    pub fn role(&self) -> ReplicaRole {
        self.role.get()
    }

    pub fn epoch(&self) -> u32 {
        self.epoch.get()
    }

    /// Takes a role under an epoch. Leaving the master role fails every append still waiting for
    /// slaves: the new master's log decides whether they survive, so none is acknowledged here.
    pub fn set_role(&self, role: ReplicaRole, epoch: u32, needed: usize) {
        if role == ReplicaRole::Master && (self.role.get() != role || self.epoch.get() != epoch) {
            self.became_master.set(self.became_master.get() + 1);
        }
        self.role.set(role);
        self.epoch.set(epoch);
        self.needed.set(needed.max(1));
        self.confirmed.set(0);
        self.lease_until.set(None);
        if role != ReplicaRole::Master {
            self.slaves.borrow_mut().clear();
            for (_, tx) in self.waiters.borrow_mut().drain(..) {
                let _ = tx.send(Err(StoreError::NotMaster));
            }
        }
    }

    pub fn needed(&self) -> usize {
        self.needed.get()
    }

    /// Refuses an append on a replica that is not the master, and on a master with too few
    /// replicas in sync to acknowledge it (before anything is stored).
    pub fn check_writable(&self) -> Result<(), StoreError> {
        let r = self.writable();
        if matches!(r, Err(StoreError::Fenced)) {
            self.fenced.set(self.fenced.get() + 1);
        }
        r
    }

    fn writable(&self) -> Result<(), StoreError> {
        match self.role.get() {
            ReplicaRole::Slave => Err(StoreError::NotMaster),
            ReplicaRole::Master if self.controlled.get() && !self.lease_held() => Err(StoreError::Fenced),
            ReplicaRole::Master if self.in_sync_slaves() + 1 < self.needed.get() => {
                Err(StoreError::InSyncReplicasNotEnough)
            }
            _ => Ok(()),
        }
    }

    /// Slaves currently in the in-sync set.
    pub fn in_sync_slaves(&self) -> usize {
        self.slaves.borrow().values().filter(|s| s.in_sync).count()
    }

    pub fn slaves(&self) -> BTreeMap<u32, SlaveState> {
        self.slaves.borrow().clone()
    }

    /// After an append made durable on the master up to `end`: waits until enough slaves hold it,
    /// or fails at once when too few are in sync (IN_SYNC_REPLICAS_NOT_ENOUGH) and after
    /// [`SLAVE_ACK_TIMEOUT`] (FLUSH_SLAVE_TIMEOUT).
    pub async fn wait_replicated(&self, end: u64) -> Result<(), StoreError> {
        let need = self.needed.get().saturating_sub(1);
        if self.role.get() != ReplicaRole::Master || need == 0 {
            return Ok(());
        }
        if self.in_sync_slaves() < need {
            return Err(StoreError::InSyncReplicasNotEnough);
        }
        if self.holders(end) >= need {
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut w = self.waiters.borrow_mut();
            // Sends that timed out left their senders behind.
            while w.front().is_some_and(|(_, tx)| tx.is_canceled()) {
                w.pop_front();
            }
            let at = w.partition_point(|(e, _)| *e <= end);
            w.insert(at, (end, tx));
        }
        let timeout = async {
            crate::rt::sleep(SLAVE_ACK_TIMEOUT).await;
            Err(StoreError::SlaveTimeout)
        };
        let done = async { rx.await.unwrap_or(Err(StoreError::NotMaster)) };
        futures_lite::future::or(done, timeout).await
    }

    /// How far the slowest connected slave is behind `local` (the master's durable end), in bytes.
    pub fn max_lag(&self, local: u64) -> u64 {
        let slaves = self.slaves.borrow();
        slaves.values().filter(|s| s.connected).map(|s| local.saturating_sub(s.acked)).max().unwrap_or(0)
    }

    /// How long the slowest connected slave has been behind without catching up (zero when every
    /// one keeps pace): the replication lag in time.
    pub fn max_lag_time(&self, now: Instant) -> Duration {
        let slaves = self.slaves.borrow();
        let behind = slaves.values().filter(|s| s.connected).filter_map(|s| s.behind_since);
        behind.map(|t| now.saturating_duration_since(t)).max().unwrap_or_default()
    }

    /// The in-sync slave a consumer reading far behind is sent to (the lowest id), if any.
    pub fn read_slave(&self) -> Option<u32> {
        self.slaves.borrow().iter().find(|(_, s)| s.in_sync && s.connected).map(|(id, _)| *id)
    }

    /// This replica's node id in a controlled cluster.
    pub fn node_id(&self) -> Option<u32> {
        self.me.get()
    }

    /// In-sync slaves holding `end` durably.
    fn holders(&self, end: u64) -> usize {
        self.slaves.borrow().values().filter(|s| s.in_sync && s.acked >= end).count()
    }

    /// Records a slave's durable end and completes the appends it covers. `master_end` is the
    /// master's durable end now. A slave is caught up when its ack covers what the master held at
    /// its previous ack (it keeps pace within one round trip, even under constant load), and a
    /// caught-up slave joins the in-sync set.
    pub fn on_ack(&self, slave: u32, learner: bool, acked: u64, master_end: u64, now: Instant) {
        {
            let mut slaves = self.slaves.borrow_mut();
            let s = slaves.entry(slave).or_insert(SlaveState {
                acked,
                target: u64::MAX,
                in_sync: false,
                caught_up: false,
                connected: true,
                learner,
                behind_since: Some(now),
            });
            s.acked = s.acked.max(acked);
            s.connected = true;
            s.learner = learner;
            s.caught_up = s.acked >= s.target.min(master_end);
            if s.caught_up {
                s.behind_since = None;
                if !s.learner && !s.in_sync && !self.controlled.get() {
                    s.in_sync = true;
                    tracing::info!(slave, acked, "replica joined the in-sync set");
                }
            } else if s.behind_since.is_none() {
                s.behind_since = Some(now);
            }
            s.target = master_end;
        }
        self.complete_waiters();
        self.acked.raise();
    }

    /// Drops a slave from the in-sync set (disconnected, or behind for too long); under a
    /// controller only the controller drops it ([`ReplicaGate::set_isr`]): here it stops counting
    /// as caught up, so the master asks for its removal.
    pub fn leave(&self, slave: u32, why: &str) {
        if let Some(s) = self.slaves.borrow_mut().get_mut(&slave) {
            s.caught_up = false;
            if s.in_sync && !self.controlled.get() {
                s.in_sync = false;
                tracing::warn!(slave, why, "replica left the in-sync set");
            }
        }
    }

    /// A slave's stream closed. Under a controller it stays in the in-sync set (and so holds the
    /// confirm offset back) until the controller removes it.
    pub fn remove(&self, slave: u32) {
        self.leave(slave, "disconnected");
        let mut slaves = self.slaves.borrow_mut();
        match slaves.get_mut(&slave) {
            Some(s) if s.in_sync => s.connected = false,
            _ => {
                slaves.remove(&slave);
            }
        }
    }

    /// Puts the in-sync set under the controller (a replicated cluster); `me` is this node's id.
    pub fn set_controlled(&self, me: u32) {
        self.controlled.set(true);
        self.me.set(Some(me));
    }

    pub fn isr_epoch(&self) -> u32 {
        self.isr_epoch.get()
    }

    /// The controller's in-sync set (`members` holds node ids, this master's own included).
    pub fn set_isr(&self, members: &std::collections::BTreeSet<u32>, epoch: u32) {
        {
            let mut slaves = self.slaves.borrow_mut();
            for (id, s) in slaves.iter_mut() {
                s.in_sync = members.contains(id);
            }
            for &id in members.iter().filter(|&&id| Some(id) != self.me.get()) {
                slaves.entry(id).or_insert(SlaveState {
                    acked: 0,
                    target: u64::MAX,
                    in_sync: true,
                    caught_up: false,
                    connected: false,
                    learner: false,
                    behind_since: None,
                });
            }
            slaves.retain(|_, s| s.in_sync || s.connected);
        }
        self.isr_epoch.set(epoch);
        self.complete_waiters();
    }

    /// The in-sync set this master wants (`me` included): members that stay connected and have
    /// not been behind for `limit`, and connected voters that caught up.
    pub fn desired_isr(&self, me: u32, limit: Duration, now: Instant) -> std::collections::BTreeSet<u32> {
        let mut out = std::collections::BTreeSet::from([me]);
        for (&id, s) in self.slaves.borrow().iter() {
            let lagging = s.behind_since.is_some_and(|t| now.saturating_duration_since(t) >= limit);
            if s.connected && !s.learner && !lagging && (s.in_sync || s.caught_up) {
                out.insert(id);
            }
        }
        out
    }

    /// Extends a controlled master's lease (the controller confirmed it as master at a heartbeat sent
    /// at `sent`; the lease runs from then, not from the answer).
    pub fn renew_lease(&self, until: Instant) {
        self.lease_until.set(Some(until));
    }

    fn lease_held(&self) -> bool {
        self.lease_until.get().is_some_and(|t| crate::rt::now() < t)
    }

    /// Slaves behind for longer than `limit` leave the in-sync set (`ha_max_time_slave_not_catchup`).
    pub fn expire_laggards(&self, limit: Duration, now: Instant) {
        let late: Vec<u32> = self
            .slaves
            .borrow()
            .iter()
            .filter(|(_, s)| s.in_sync && s.behind_since.is_some_and(|t| now.duration_since(t) >= limit))
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            self.leave(id, "behind for longer than ha_max_time_slave_not_catchup");
        }
    }

    fn complete_waiters(&self) {
        let need = self.needed.get().saturating_sub(1);
        loop {
            let Some(end) = self.waiters.borrow().front().map(|(e, _)| *e) else { return };
            if self.holders(end) < need {
                return;
            }
            if let Some((_, tx)) = self.waiters.borrow_mut().pop_front() {
                let _ = tx.send(Ok(()));
            }
        }
    }

    /// How far consumers may read, given the local durable end: on a master, the smallest durable
    /// end over the in-sync set; on a slave, what its master confirmed; alone, `local`.
    pub fn confirm(&self, local: u64) -> u64 {
        if !self.caps_visibility() {
            return local;
        }
        match self.role.get() {
            ReplicaRole::Single => local,
            ReplicaRole::Master => {
                // Slaves the controller lists but that never connected count with acked = 0.
                let least = self.slaves.borrow().values().filter(|s| s.in_sync).map(|s| s.acked).fold(local, u64::min);
                let c = least.max(self.confirmed.get()).min(local);
                self.confirmed.set(c);
                c
            }
            ReplicaRole::Slave => local.min(self.master_confirm.get()),
        }
    }

    /// Whether reads stop at the confirm offset: on a slave, and on a master that waits for slaves
    /// (with `--replication async` consumers read what the master alone holds, as RocketMQ's do).
    pub fn caps_visibility(&self) -> bool {
        match self.role.get() {
            ReplicaRole::Single => false,
            ReplicaRole::Master => self.needed.get() > 1,
            ReplicaRole::Slave => true,
        }
    }

    /// On a slave: the master's confirm offset from its latest frame.
    pub fn set_master_confirm(&self, confirm: u64) {
        self.master_confirm.set(confirm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirm_is_the_least_durable_end_of_the_in_sync_set() {
        let g = ReplicaGate::default();
        g.set_role(ReplicaRole::Master, 1, 2);
        let now = Instant::now();
        assert_eq!(g.confirm(500), 500, "no slave in sync: the master's own end");
        g.on_ack(2, false, 300, 500, now);
        assert_eq!(g.in_sync_slaves(), 0, "behind the master: not in sync yet");
        assert_eq!(g.confirm(500), 500);
        g.on_ack(2, false, 500, 600, now);
        g.on_ack(3, false, 600, 600, now);
        assert_eq!(g.in_sync_slaves(), 2, "each reached the master's end of its previous ack");
        assert_eq!(g.confirm(800), 500, "never below what was confirmed before");
        g.on_ack(2, false, 800, 800, now);
        g.on_ack(3, false, 700, 800, now);
        assert_eq!(g.confirm(800), 700, "slave 3 holds only 700");
        g.leave(3, "test");
        assert_eq!(g.confirm(800), 800);
    }

    #[test]
    fn a_learner_never_joins_and_a_laggard_leaves() {
        let g = ReplicaGate::default();
        g.set_role(ReplicaRole::Master, 1, 2);
        let t0 = Instant::now();
        g.on_ack(9, true, 100, 100, t0);
        assert_eq!(g.in_sync_slaves(), 0);
        g.on_ack(2, false, 100, 100, t0);
        g.on_ack(2, false, 100, 200, t0);
        g.on_ack(2, false, 150, 300, t0);
        assert_eq!(g.in_sync_slaves(), 1);
        g.expire_laggards(Duration::from_secs(15), t0 + Duration::from_secs(14));
        assert_eq!(g.in_sync_slaves(), 1);
        g.expire_laggards(Duration::from_secs(15), t0 + Duration::from_secs(15));
        assert_eq!(g.in_sync_slaves(), 0);
    }

    #[test]
    fn a_slave_refuses_appends_and_losing_the_master_role_fails_waiters() {
        let g = ReplicaGate::default();
        assert!(g.check_writable().is_ok());
        g.set_role(ReplicaRole::Slave, 2, 2);
        assert!(matches!(g.check_writable(), Err(StoreError::NotMaster)));
        g.set_master_confirm(40);
        assert_eq!(g.confirm(100), 40);
        let (tx, mut rx) = oneshot::channel();
        g.set_role(ReplicaRole::Master, 3, 2);
        g.waiters.borrow_mut().push_back((10, tx));
        g.set_role(ReplicaRole::Slave, 4, 2);
        assert!(matches!(rx.try_recv(), Ok(Some(Err(StoreError::NotMaster)))));
    }
}
