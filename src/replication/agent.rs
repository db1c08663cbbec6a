//! A replica's link to the controllers, on the shard's executor: every [`HEARTBEAT`] it tells the
//! controller leader its durable log end, and the answer says who the replica set's master is,
//! under which epoch, and the in-sync set. From that answer it takes its role:
//! - named master: waits until its log is durable to its end, records the new epoch there (epoch
//!   file), then appends as master; every answer renews its lease ([`policy::LEASE`] from when the
//!   heartbeat was sent). Without an answer in time it stops acknowledging ([`StoreError::Fenced`])
//!   — before the controller could elect anyone else ([`policy::MASTER_TIMEOUT`] is longer);
//! - someone else named master: it is a slave at once (a deposed master stops acknowledging at that
//!   moment) and follows the named master;
//! - as master, it asks the controller to change the in-sync set when its own view differs
//!   (CONTROLLER_ALTER_SYNC_STATE_SET, fenced by both epochs).
//!
//! [`StoreError::Fenced`]: crate::store::StoreError::Fenced

use super::Topology;
use super::slave::{self, Follower};
use crate::broker::Broker;
use crate::client::async_conn::AsyncConnection;
use crate::controller::policy;
use crate::controller::state::SetView;
use crate::protocol::Command;
use crate::protocol::codes::{request as rq, response as rs};
use crate::store::io::Disk;
use crate::store::replicas::ReplicaRole;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Heartbeat period: two fit in the lease, so one lost heartbeat does not fence a healthy master.
pub const HEARTBEAT: Duration = Duration::from_millis(500);
const REQUEST_TIMEOUT: Duration = Duration::from_millis(800);
/// Longest a new master waits for its log to be durable to its end before taking the role.
const SETTLE: Duration = Duration::from_secs(2);

struct Agent<D: Disk + 'static> {
    b: Rc<Broker<D>>,
    t: Topology,
    controllers: Vec<String>,
    leader: Cell<usize>,
    conns: RefCell<HashMap<String, AsyncConnection>>,
    master_addr: Rc<RefCell<Option<String>>>,
    follower: RefCell<Option<crate::rt::Task<()>>>,
    /// The follower task is running (it ends when this replica stops being a slave).
    following: Rc<Cell<bool>>,
    stop: Rc<Cell<bool>>,
    last_error: RefCell<String>,
}

/// Runs the agent of one shard until `stop`.
pub async fn run<D: Disk + 'static>(b: Rc<Broker<D>>, t: Topology, stop: Rc<Cell<bool>>) {
    b.store.replicas.set_controlled(t.node_id);
    let agent = Agent {
        controllers: t.controllers(),
        b,
        t,
        leader: Cell::new(0),
        conns: RefCell::new(HashMap::new()),
        master_addr: Rc::new(RefCell::new(None)),
        follower: RefCell::new(None),
        following: Rc::new(Cell::new(false)),
        stop,
        last_error: RefCell::new(String::new()),
    };
    while !agent.stop.get() {
        let sent = crate::rt::now();
        match agent.heartbeat().await {
            Ok(view) => {
                agent.last_error.borrow_mut().clear();
                agent.apply(&view, sent).await;
                if agent.b.store.replicas.role() == ReplicaRole::Master {
                    agent.sync_isr(&view).await;
                }
            }
            Err(e) => {
                if *agent.last_error.borrow() != e {
                    tracing::warn!(broker = %agent.b.name, error = %e, "no answer from the controllers");
                    *agent.last_error.borrow_mut() = e;
                }
            }
        }
        let spent = crate::rt::now().saturating_duration_since(sent);
        crate::rt::sleep(HEARTBEAT.saturating_sub(spent)).await;
    }
}

impl<D: Disk + 'static> Agent<D> {
    /// One request to the controller leader, following its hint when another controller answers.
    async fn call(&self, make: impl Fn() -> Command) -> Result<Command, String> {
        let mut why = String::new();
        for _ in 0..self.controllers.len() + 1 {
            let addr = self.controllers[self.leader.get() % self.controllers.len()].clone();
            let reply = self.request(&addr, make()).await;
            match reply {
                Ok(r) if r.code == rs::CONTROLLER_NOT_LEADER => {
                    let hint = r.field("leaderAddress").and_then(|a| self.controllers.iter().position(|c| c == a));
                    self.leader.set(hint.unwrap_or(self.leader.get() + 1));
                    why = format!("{addr} is not the controller leader");
                }
                Ok(r) => return Ok(r),
                Err(e) => {
                    self.leader.set(self.leader.get() + 1);
                    why = format!("{addr}: {e}");
                }
            }
        }
        Err(why)
    }

    async fn request(&self, addr: &str, cmd: Command) -> Result<Command, String> {
        let existing = self.conns.borrow_mut().remove(addr).filter(|c| !c.is_closed());
        let conn = match existing {
            Some(c) => c,
            None => super::timed(REQUEST_TIMEOUT, AsyncConnection::connect(addr)).await?,
        };
        let r = conn.request(cmd, REQUEST_TIMEOUT).await.map_err(|e| e.to_string());
        if r.is_ok() {
            self.conns.borrow_mut().insert(addr.to_string(), conn);
        }
        r
    }

    async fn heartbeat(&self) -> Result<SetView, String> {
        let b = &self.b;
        let r = self
            .call(|| {
                let mut c = Command::request(rq::BROKER_HEARTBEAT);
                c.put("brokerName", &b.name);
                c.put("nodeId", self.t.node_id);
                c.put("brokerAddr", b.addr);
                c.put("logEnd", b.store.log().flushed_pos());
                c.put("learner", self.t.learner);
                c.put("preferred", self.t.preferred_master(b.shard) == self.t.node_id && !self.t.learner);
                c
            })
            .await?;
        if r.code != rs::SUCCESS {
            return Err(format!("controller answered {}: {}", r.code, r.remark.unwrap_or_default()));
        }
        serde_json::from_slice(&r.body_bytes()).map_err(|e| format!("controller answer: {e}"))
    }

    async fn apply(&self, view: &SetView, sent: Instant) {
        let store = &self.b.store;
        let g = &store.replicas;
        let me = self.t.node_id;
        match view.master {
            Some(m) if m == me => {
                if g.role() != ReplicaRole::Master || g.epoch() != view.master_epoch {
                    if let Err(e) = self.become_master(view).await {
                        tracing::error!(broker = %self.b.name, error = %e, "cannot take the master role");
                        return;
                    }
                } else if view.isr_epoch > g.isr_epoch() {
                    g.set_isr(&view.isr, view.isr_epoch);
                }
                g.renew_lease(sent + policy::LEASE);
            }
            other => {
                if g.role() == ReplicaRole::Master {
                    tracing::warn!(broker = %self.b.name, new_master = ?other, epoch = view.master_epoch,
                        "deposed: this replica is a slave now and acknowledges nothing");
                }
                if g.role() != ReplicaRole::Slave || g.epoch() != view.master_epoch {
                    g.set_role(ReplicaRole::Slave, view.master_epoch, self.t.needed());
                    self.b.publish_registration();
                }
                *self.master_addr.borrow_mut() = if other.is_some() { view.master_addr.clone() } else { None };
                self.ensure_following();
            }
        }
    }

    async fn become_master(&self, view: &SetView) -> Result<(), String> {
        let store = &self.b.store;
        let g = &store.replicas;
        // Stop following and stop taking new bytes from the old master first.
        g.set_role(ReplicaRole::Slave, view.master_epoch, self.t.needed());
        *self.master_addr.borrow_mut() = None;
        drop(self.follower.borrow_mut().take());
        self.following.set(false);
        let log = store.log();
        let deadline = crate::rt::now() + SETTLE;
        while log.flushed_pos() < log.write_pos() {
            if crate::rt::now() >= deadline {
                return Err("the log did not become durable to its end".into());
            }
            log.flushed.wait_past_at_most(log.flushed.generation(), Duration::from_millis(10)).await;
        }
        if store.epochs().last().0 < view.master_epoch {
            store.begin_epoch(view.master_epoch, log.write_pos()).await.map_err(|e| e.to_string())?;
        }
        // Transaction state from the op records the old master streamed, before any
        // END_TRANSACTION is taken (an already resolved half must stay resolved). The delay and
        // timer tasks rebuild theirs when they see the new term (`became_master`).
        crate::broker::transaction::recover(&self.b).await;
        g.set_role(ReplicaRole::Master, view.master_epoch, self.t.needed());
        g.set_isr(&view.isr, view.isr_epoch);
        self.b.publish_registration();
        tracing::warn!(broker = %self.b.name, epoch = view.master_epoch, log_end = log.write_pos(),
            "this replica is the master now");
        Ok(())
    }

    fn ensure_following(&self) {
        if self.following.get() {
            return;
        }
        let me = Follower {
            broker_name: self.b.name.clone(),
            node_id: self.t.node_id,
            learner: self.t.learner,
            master: self.master_addr.clone(),
            meta: self.b.clone(),
            readable_moved: {
                let b = self.b.clone();
                Rc::new(move || b.wake_all_pollers())
            },
        };
        let (store, stop, following) = (self.b.store.clone(), self.stop.clone(), self.following.clone());
        following.set(true);
        let task = crate::rt::spawn(async move {
            slave::follow(store, me, stop).await;
            following.set(false);
        });
        *self.follower.borrow_mut() = Some(task);
    }

    /// Asks the controller for the in-sync set this master wants, when it differs.
    async fn sync_isr(&self, view: &SetView) {
        let g = &self.b.store.replicas;
        let want = g.desired_isr(self.t.node_id, self.t.catchup_limit, crate::rt::now());
        if want == view.isr || view.master != Some(self.t.node_id) {
            return;
        }
        let members: Vec<String> = want.iter().map(|i| i.to_string()).collect();
        let r = self
            .call(|| {
                let mut c = Command::request(rq::CONTROLLER_ALTER_SYNC_STATE_SET);
                c.put("brokerName", &self.b.name);
                c.put("masterId", self.t.node_id);
                c.put("masterEpoch", view.master_epoch);
                c.put("syncStateSetEpoch", view.isr_epoch);
                c.put("syncStateSet", members.join(","));
                c
            })
            .await;
        match r {
            Ok(r) if r.code == rs::SUCCESS => match serde_json::from_slice::<SetView>(&r.body_bytes()) {
                Ok(v) => {
                    tracing::info!(broker = %self.b.name, isr = ?v.isr, epoch = v.isr_epoch, "in-sync set changed");
                    g.set_isr(&v.isr, v.isr_epoch);
                }
                Err(e) => tracing::warn!(error = %e, "controller answer"),
            },
            Ok(r) => {
                tracing::info!(broker = %self.b.name, code = r.code, remark = ?r.remark, "in-sync set change refused")
            }
            Err(e) => tracing::info!(broker = %self.b.name, error = %e, "in-sync set change not sent"),
        }
    }
}
