//! The controller on the network, on the name server's executor: its listener (name-server port + 2)
//! answers the other controllers' Raft messages and the replicas' requests (RocketMQ 5's controller
//! codes), a ticker drives raft-rs every 100 ms, the leader runs the election policy, and each peer
//! has a sender task with a bounded queue (raft tolerates lost messages; a slow peer never blocks
//! the others). The Raft state is persisted through the blocking pool before messages leave.

use super::node::{RaftNode, decode_message, encode_message};
use super::policy::{self, Seen, SeenTable};
use super::state::{Change, Refused, ReplicaSetState, SetView};
use crate::client::async_conn::AsyncConnection;
use crate::net::conn::{Conn, ConnLimits, Service};
use crate::protocol::Command;
use crate::protocol::codes::{request as rq, response as rs};
use crate::store::files::{SharedFiles, write_atomic};
use futures_channel::{mpsc, oneshot};
use futures_lite::StreamExt;
use raft::prelude::Message;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Raft tick: elections after 0.5–1 s without a leader, heartbeats every 150 ms, so a lost
/// controller leader is replaced well within a master's lease.
const TICK: Duration = Duration::from_millis(50);
/// Raft messages queued per peer; past it they are dropped (raft resends what matters).
const PEER_QUEUE: usize = 1024;
/// How long a request waits for its change to commit.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(3);
/// Replicas (set × node) whose heartbeats the leader keeps; more are refused.
const MAX_SEEN: usize = 16_384;

pub struct Controller {
    node: RefCell<RaftNode>,
    /// Controller address of every member, by node id (its own included).
    members: BTreeMap<u64, String>,
    outboxes: BTreeMap<u64, mpsc::Sender<Message>>,
    seen: RefCell<SeenTable>,
    waiting: RefCell<HashMap<u64, oneshot::Sender<Result<ReplicaSetState, Refused>>>>,
    leader_since: Cell<Option<Instant>>,
    electing: RefCell<BTreeSet<String>>,
    files: SharedFiles,
    file: PathBuf,
    driving: Cell<bool>,
    again: Cell<bool>,
    limits: ConnLimits,
    live: Cell<usize>,
    /// enableElectUncleanMaster: elect outside the in-sync set when none of it is alive.
    elect_unclean: bool,
}

impl Controller {
    /// Member `id` of the controllers at `members` (id → address), its Raft state in `dir`.
    pub fn open(
        id: u64,
        members: BTreeMap<u64, String>,
        dir: PathBuf,
        files: SharedFiles,
        limits: ConnLimits,
        elect_unclean: bool,
    ) -> Result<Rc<Controller>, String> {
        files.create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let file = dir.join("raft");
        let persisted = crate::store::files::read_optional(&*files, &file).map_err(|e| e.to_string())?;
        let voters: Vec<u64> = members.keys().copied().collect();
        let node = RaftNode::new(id, &voters, persisted.as_deref())?;
        let mut outboxes = BTreeMap::new();
        for (&peer, addr) in members.iter().filter(|(p, _)| **p != id) {
            let (tx, rx) = mpsc::channel(PEER_QUEUE);
            outboxes.insert(peer, tx);
            crate::rt::spawn(send_to_peer(addr.clone(), rx)).detach();
        }
        Ok(Rc::new(Controller {
            node: RefCell::new(node),
            members,
            outboxes,
            seen: RefCell::new(SeenTable::new()),
            waiting: RefCell::new(HashMap::new()),
            leader_since: Cell::new(None),
            electing: RefCell::new(BTreeSet::new()),
            files,
            file,
            driving: Cell::new(false),
            again: Cell::new(false),
            limits,
            live: Cell::new(0),
            elect_unclean,
        }))
    }

    /// Ticks Raft and runs the election policy until `stop`.
    pub async fn run(self: Rc<Self>, stop: Rc<Cell<bool>>) {
        let mut ticks = 0u64;
        while !stop.get() {
            crate::rt::sleep(TICK).await;
            self.node.borrow_mut().tick();
            let leader = self.node.borrow().is_leader();
            match (leader, self.leader_since.get()) {
                (true, None) => {
                    tracing::info!(term = self.node.borrow().term(), "this controller leads");
                    self.leader_since.set(Some(crate::rt::now()));
                }
                (false, Some(_)) => self.leader_since.set(None),
                _ => {}
            }
            self.drive().await;
            ticks += 1;
            if ticks.is_multiple_of(5) {
                self.elect_where_needed();
            }
        }
    }

    fn elect_where_needed(self: &Rc<Self>) {
        let Some(since) = self.leader_since.get() else { return };
        let changes = {
            let node = self.node.borrow();
            policy::decide(&node.state, &self.seen.borrow(), crate::rt::now(), since, self.elect_unclean)
        };
        for change in changes {
            let set = change.set().to_string();
            if !self.electing.borrow_mut().insert(set.clone()) {
                continue;
            }
            tracing::warn!(?change, "controller elects a master");
            let me = self.clone();
            crate::rt::spawn(async move {
                if let Err(e) = me.commit(&change).await {
                    tracing::warn!(%set, error = %e, "election failed");
                }
                me.electing.borrow_mut().remove(&set);
            })
            .detach();
        }
    }

    /// Proposes a change and waits for it to be applied.
    async fn commit(self: &Rc<Self>, change: &Change) -> Result<ReplicaSetState, Refused> {
        let pid = self.node.borrow_mut().propose(change).map_err(Refused::Invalid)?;
        let (tx, rx) = oneshot::channel();
        self.waiting.borrow_mut().insert(pid, tx);
        self.drive().await;
        let timeout = async {
            crate::rt::sleep(COMMIT_TIMEOUT).await;
            Err(Refused::Invalid("the change did not commit in time".into()))
        };
        let r =
            futures_lite::future::or(async { rx.await.unwrap_or(Err(Refused::Invalid("dropped".into()))) }, timeout)
                .await;
        self.waiting.borrow_mut().remove(&pid);
        r
    }

    /// Moves everything raft has ready: applied outcomes to their waiters, the state to disk, then
    /// the messages to the peers. One drive at a time; a call during one makes it go round again.
    async fn drive(&self) {
        if self.driving.replace(true) {
            self.again.set(true);
            return;
        }
        loop {
            self.again.set(false);
            let out = self.node.borrow_mut().process();
            for (pid, result) in out.applied {
                if let Some(tx) = self.waiting.borrow_mut().remove(&pid) {
                    let _ = tx.send(result);
                }
            }
            if let Some(bytes) = out.persist {
                let (files, file) = (self.files.clone(), self.file.clone());
                if let Err(e) = crate::rt::blocking(move || write_atomic(&*files, &file, &bytes)).await {
                    // Never announce a vote or an entry that is not durable: stop this member.
                    tracing::error!(error = %e, "cannot persist the controller's Raft state: stopping");
                    std::process::exit(crate::store::EXIT_STORE_POISONED);
                }
            }
            for m in out.messages {
                if let Some(tx) = self.outboxes.get(&m.to) {
                    let _ = tx.clone().try_send(m);
                }
            }
            if !self.again.get() {
                break;
            }
        }
        self.driving.set(false);
    }

    fn not_leader(&self, req: &Command) -> Command {
        let leader = self.node.borrow().leader().and_then(|l| self.members.get(&l).cloned());
        let mut r = req.response_to(rs::CONTROLLER_NOT_LEADER).with_remark("this controller is not the leader");
        if let Some(addr) = leader {
            r.put("leaderAddress", addr);
        }
        r
    }

    fn view(&self, set: &str) -> SetView {
        let st = self.node.borrow().state.get(set);
        let master_addr = st.master.and_then(|m| self.seen.borrow().get(set)?.get(&m).map(|s| s.addr.clone()));
        SetView { master: st.master, master_addr, master_epoch: st.master_epoch, isr: st.isr, isr_epoch: st.isr_epoch }
    }

    fn heartbeat(&self, conn: &Conn, req: &Command) -> Result<Command, String> {
        let set = field(req, "brokerName")?.to_string();
        let node: u32 = parse(req, "nodeId")?;
        let s = Seen {
            at: crate::rt::now(),
            log_end: parse(req, "logEnd")?,
            learner: req.field("learner") == Some("true"),
            addr: field(req, "brokerAddr")?.to_string(),
            preferred: req.field("preferred") == Some("true"),
            conn: conn.id,
            closed: false,
        };
        {
            let mut seen = self.seen.borrow_mut();
            let count: usize = seen.values().map(|m| m.len()).sum();
            let known = seen.get(&set).is_some_and(|m| m.contains_key(&node));
            if !known && count >= MAX_SEEN {
                return Err(format!("more than {MAX_SEEN} replicas heartbeat to this controller"));
            }
            seen.entry(set.clone()).or_default().insert(node, s);
        }
        let body = serde_json::to_vec(&self.view(&set)).map_err(|e| e.to_string())?;
        Ok(req.response_to(rs::SUCCESS).with_body(body))
    }

    async fn alter_isr(self: &Rc<Self>, req: &Command) -> Result<Command, String> {
        let set = field(req, "brokerName")?.to_string();
        let isr: BTreeSet<u32> = field(req, "syncStateSet")?
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.trim().parse().map_err(|_| format!("bad syncStateSet member {s:?}")))
            .collect::<Result<_, _>>()?;
        let change = Change::AlterIsr {
            set: set.clone(),
            master: parse(req, "masterId")?,
            master_epoch: parse(req, "masterEpoch")?,
            isr_epoch: parse(req, "syncStateSetEpoch")?,
            isr,
        };
        Ok(self.answer_change(req, &set, self.commit(&change).await))
    }

    async fn elect(self: &Rc<Self>, req: &Command) -> Result<Command, String> {
        let set = field(req, "brokerName")?.to_string();
        let target: u32 = parse(req, "brokerId")?;
        let cur = self.node.borrow().state.get(&set);
        // Outside the in-sync set (a learner's promotion) only when the operator says so: what the
        // set acknowledged and the target lacks is lost.
        let unclean = req.field("unclean") == Some("true");
        if !unclean && !cur.isr.contains(&target) && cur.master.is_some() {
            return Ok(req
                .response_to(rs::CONTROLLER_ELECT_MASTER_FAILED)
                .with_remark(format!("node {target} is not in the in-sync set {:?} of {set}", cur.isr)));
        }
        let change = Change::Elect { set: set.clone(), master: target, master_epoch: cur.master_epoch + 1 };
        Ok(self.answer_change(req, &set, self.commit(&change).await))
    }

    fn answer_change(&self, req: &Command, set: &str, r: Result<ReplicaSetState, Refused>) -> Command {
        match r {
            Ok(_) => req.response_to(rs::SUCCESS).with_body(serde_json::to_vec(&self.view(set)).unwrap_or_default()),
            Err(Refused::FencedMasterEpoch(why)) => {
                req.response_to(rs::CONTROLLER_FENCED_MASTER_EPOCH).with_remark(why)
            }
            Err(Refused::FencedIsrEpoch(why)) => {
                req.response_to(rs::CONTROLLER_FENCED_SYNC_STATE_SET_EPOCH).with_remark(why)
            }
            Err(Refused::Invalid(why)) => req.response_to(rs::SYSTEM_ERROR).with_remark(why),
        }
    }

    /// Every replica set this controller knows, with its replicas' last heartbeats (admin).
    fn replica_info(&self, req: &Command) -> Command {
        let now = crate::rt::now();
        let node = self.node.borrow();
        let seen = self.seen.borrow();
        let names: BTreeSet<&String> = node.state.sets.keys().chain(seen.keys()).collect();
        let sets: serde_json::Map<String, serde_json::Value> = names
            .into_iter()
            .map(|name| {
                let replicas: Vec<serde_json::Value> = seen
                    .get(name)
                    .into_iter()
                    .flatten()
                    .map(|(id, s)| {
                        serde_json::json!({
                            "nodeId": id, "addr": s.addr, "logEnd": s.log_end, "learner": s.learner,
                            "lastHeartbeatMsAgo": now.saturating_duration_since(s.at).as_millis() as u64,
                        })
                    })
                    .collect();
                (name.clone(), serde_json::json!({ "state": self.view(name), "replicas": replicas }))
            })
            .collect();
        let body = serde_json::json!({
            "leader": node.leader(), "term": node.term(), "isLeader": node.is_leader(), "sets": sets,
        });
        req.response_to(rs::SUCCESS).with_body(body.to_string())
    }
}

fn field<'a>(req: &'a Command, key: &str) -> Result<&'a str, String> {
    req.field(key).ok_or_else(|| format!("missing {key}"))
}

fn parse<T: std::str::FromStr>(req: &Command, key: &str) -> Result<T, String> {
    field(req, key)?.parse().map_err(|_| format!("bad {key}"))
}

/// Sends one peer its Raft messages, reconnecting as needed; messages that cannot go are dropped.
async fn send_to_peer(addr: String, mut rx: mpsc::Receiver<Message>) {
    let mut conn: Option<AsyncConnection> = None;
    while let Some(m) = rx.next().await {
        if conn.as_ref().is_none_or(|c| c.is_closed()) {
            conn = match futures_lite::future::or(async { AsyncConnection::connect(&addr).await.ok() }, async {
                crate::rt::sleep(Duration::from_secs(1)).await;
                None
            })
            .await
            {
                Some(c) => Some(c),
                None => continue,
            };
        }
        let cmd = Command::request(rq::RINGMQ_RAFT_MESSAGE).with_body(encode_message(&m));
        if conn.as_ref().is_some_and(|c| c.oneway(cmd).is_err()) {
            conn = None;
        }
    }
}

impl Service for Controller {
    async fn handle(self: &Rc<Self>, conn: &Rc<Conn>, req: Command) -> Option<Command> {
        if req.code == rq::RINGMQ_RAFT_MESSAGE {
            match decode_message(&req.body_bytes()) {
                Ok(m) => {
                    let _ = self.node.borrow_mut().step(m);
                    self.drive().await;
                }
                Err(e) => tracing::warn!(error = %e, "dropped a Raft message"),
            }
            return None;
        }
        let leader_only = matches!(
            req.code,
            rq::BROKER_HEARTBEAT | rq::CONTROLLER_ALTER_SYNC_STATE_SET | rq::CONTROLLER_ELECT_MASTER
        );
        if leader_only && !self.node.borrow().is_leader() {
            return Some(self.not_leader(&req));
        }
        let r = match req.code {
            rq::BROKER_HEARTBEAT => self.heartbeat(conn, &req),
            rq::CONTROLLER_ALTER_SYNC_STATE_SET => self.alter_isr(&req).await,
            rq::CONTROLLER_ELECT_MASTER => self.elect(&req).await,
            rq::CONTROLLER_GET_REPLICA_INFO => Ok(self.replica_info(&req)),
            code => Ok(req
                .response_to(rs::REQUEST_CODE_NOT_SUPPORTED)
                .with_remark(format!("request code {code} is not supported by the ringmq controller"))),
        };
        Some(r.unwrap_or_else(|why| req.response_to(rs::SYSTEM_ERROR).with_remark(why)))
    }

    fn connection_closed(&self, conn: &Rc<Conn>) {
        self.live.set(self.live.get().saturating_sub(1));
        // A replica whose heartbeat connection closed is likely dead (a killed process's sockets
        // close at once): the policy replaces a master once its lease is over, not after the
        // full timeout. A heartbeat on a new connection clears the mark.
        for s in self.seen.borrow_mut().values_mut().flat_map(|m| m.values_mut()) {
            if s.conn == conn.id {
                s.closed = true;
            }
        }
    }

    fn connection_opened(&self) {
        self.live.set(self.live.get() + 1);
    }

    fn limits(&self) -> &ConnLimits {
        &self.limits
    }

    fn live_connections(&self) -> usize {
        self.live.get()
    }
}
