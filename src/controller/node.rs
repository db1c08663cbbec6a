//! One controller's Raft member, sans-IO: raft-rs's `RawNode` over its in-memory storage, the
//! replicated [`ControllerState`] it applies committed entries to, and the bytes to persist. The
//! caller (`service.rs`, or the simulated network of the deterministic tests) moves messages, ticks
//! it, and writes [`Output::persist`] durably before it sends [`Output::messages`] — so a vote or an
//! appended entry is never announced before it would survive a crash.
//!
//! Persisted: the hard state (term, vote, commit), the snapshot the log was last compacted to (the
//! state at an applied index, [`ControllerLog`]) and the entries after it, in one file rewritten
//! atomically. The log is compacted every [`COMPACT_EVERY`] applied entries (elections and in-sync
//! changes, a few per failover), so the file and the memory it takes stay bounded however long the
//! cluster runs. On start the state comes from the snapshot and the committed entries after it are
//! applied again.

use super::log::ControllerLog;
use super::state::{Change, ControllerState, Refused, ReplicaSetState};
use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, EntryType, HardState, Message, MessageType, Snapshot};
use raft::storage::Storage;
use raft::{GetEntriesContext, RawNode, SnapshotStatus, StateRole};

/// Ticks without a leader's heartbeat before a follower campaigns (×50 ms: 0.5–1 s, randomised).
pub const ELECTION_TICKS: usize = 10;
/// A leader heartbeats every this many ticks (150 ms).
pub const HEARTBEAT_TICKS: usize = 3;
/// The log is compacted to a snapshot of the state once this many entries were applied past the
/// last one: at most this many (plus those not yet applied) are kept and rewritten per change.
pub const COMPACT_EVERY: u64 = 256;
/// File format without a snapshot (written before compaction existed; still read).
const PERSIST_MAGIC_V1: u32 = u32::from_be_bytes(*b"RQRF");
const PERSIST_MAGIC: u32 = u32::from_be_bytes(*b"RQR2");
/// Largest snapshot accepted from the file (the state of thousands of replica sets is far less).
const MAX_SNAPSHOT_BYTES: usize = 64 << 20;

/// What one round of [`RaftNode::process`] produced.
#[derive(Default)]
pub struct Output {
    /// To send to the other controllers once `persist` is durable.
    pub messages: Vec<Message>,
    /// The Raft state to write (atomically, synced) before the messages leave; none: unchanged.
    pub persist: Option<Vec<u8>>,
    /// Outcomes of the changes this controller proposed that were applied, by proposal id.
    pub applied: Vec<(u64, Result<ReplicaSetState, Refused>)>,
}

pub struct RaftNode {
    raw: RawNode<ControllerLog>,
    id: u64,
    pub state: ControllerState,
    next_proposal: u64,
    compact_every: u64,
}

/// The persisted hard state, snapshot (index, term, state bytes; index 0: none) and entries.
type Persisted = (HardState, (u64, u64, Vec<u8>), Vec<Entry>);

fn decode_persisted(b: &[u8]) -> Result<Persisted, String> {
    let bad = || "controller Raft file is damaged".to_string();
    let magic = b.get(0..4).map(|m| u32::from_be_bytes(m.try_into().unwrap_or_default()));
    if b.len() < 36 || !matches!(magic, Some(PERSIST_MAGIC | PERSIST_MAGIC_V1)) {
        return Err(bad());
    }
    let (body, crc) = b.split_at(b.len() - 4);
    if crc32fast::hash(body) != u32::from_be_bytes(crc.try_into().map_err(|_| bad())?) {
        return Err("controller Raft file fails its CRC".into());
    }
    let u64_at = |at: usize| -> Result<u64, String> {
        Ok(u64::from_be_bytes(body.get(at..at + 8).ok_or_else(bad)?.try_into().map_err(|_| bad())?))
    };
    let hs = HardState { term: u64_at(4)?, vote: u64_at(12)?, commit: u64_at(20)?, ..Default::default() };
    let mut at = 28;
    let mut snapshot = (0, 0, Vec::new());
    if magic == Some(PERSIST_MAGIC) {
        let (index, term) = (u64_at(at)?, u64_at(at + 8)?);
        let len = u32::from_be_bytes(body.get(at + 16..at + 20).ok_or_else(bad)?.try_into().map_err(|_| bad())?);
        let len = len as usize;
        if len > MAX_SNAPSHOT_BYTES {
            return Err(bad());
        }
        snapshot = (index, term, body.get(at + 20..at + 20 + len).ok_or_else(bad)?.to_vec());
        at += 20 + len;
    }
    let n = u32::from_be_bytes(body.get(at..at + 4).ok_or_else(bad)?.try_into().map_err(|_| bad())?) as usize;
    at += 4;
    let mut entries = Vec::with_capacity(n.min(1 << 16));
    for _ in 0..n {
        let len = u32::from_be_bytes(body.get(at..at + 4).ok_or_else(bad)?.try_into().map_err(|_| bad())?) as usize;
        let e = Entry::parse_from_bytes(body.get(at + 4..at + 4 + len).ok_or_else(bad)?).map_err(|_| bad())?;
        entries.push(e);
        at += 4 + len;
    }
    Ok((hs, snapshot, entries))
}

impl RaftNode {
    /// A member `id` of a group of `voters`, from its persisted bytes (none: a fresh member).
    pub fn new(id: u64, voters: &[u64], persisted: Option<&[u8]>) -> Result<RaftNode, String> {
        let conf = ConfState::from((voters.to_vec(), vec![]));
        let storage =
            ControllerLog { mem: raft::storage::MemStorage::new_with_conf_state(conf.clone()), ..Default::default() };
        let mut state = ControllerState::default();
        let mut applied = 0;
        if let Some(bytes) = persisted {
            let (hs, (index, term, data), entries) = decode_persisted(bytes)?;
            let mut w = storage.mem.wl();
            if index > 0 {
                state = serde_json::from_slice(&data).map_err(|e| format!("controller snapshot: {e}"))?;
                let mut snap = Snapshot::default();
                let meta = snap.mut_metadata();
                (meta.index, meta.term) = (index, term);
                meta.set_conf_state(conf);
                snap.data = data.into();
                w.apply_snapshot(snap.clone()).map_err(|e| e.to_string())?;
                *storage.snapshot.borrow_mut() = snap;
                applied = index;
            }
            w.append(&entries).map_err(|e| e.to_string())?;
            w.set_hardstate(hs);
        }
        let cfg = raft::Config {
            id,
            applied,
            election_tick: ELECTION_TICKS,
            heartbeat_tick: HEARTBEAT_TICKS,
            check_quorum: true,
            pre_vote: true,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            ..Default::default()
        };
        cfg.validate().map_err(|e| e.to_string())?;
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let raw = RawNode::new(&cfg, storage, &logger).map_err(|e| e.to_string())?;
        Ok(RaftNode { raw, id, state, next_proposal: 1, compact_every: COMPACT_EVERY })
    }

    /// Compacts after `n` applied entries instead of [`COMPACT_EVERY`] (the simulation's small logs).
    #[cfg(test)]
    pub fn set_compact_every(&mut self, n: u64) {
        self.compact_every = n.max(1);
    }

    /// Entries kept in the log (not yet compacted).
    pub fn log_len(&self) -> u64 {
        let store = &self.raw.raft.raft_log.store;
        (store.last_index().unwrap_or(0) + 1).saturating_sub(store.first_index().unwrap_or(1))
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn tick(&mut self) {
        self.raw.tick();
    }

    pub fn step(&mut self, m: Message) -> Result<(), String> {
        self.raw.step(m).map_err(|e| e.to_string())
    }

    /// The peer a message could not reach (raft slows its sends to it).
    pub fn unreachable(&mut self, peer: u64) {
        self.raw.report_unreachable(peer);
    }

    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// The leader this member knows of.
    pub fn leader(&self) -> Option<u64> {
        Some(self.raw.raft.leader_id).filter(|&l| l != raft::INVALID_ID)
    }

    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    /// Index of the last entry applied to [`RaftNode::state`].
    pub fn applied(&self) -> u64 {
        self.raw.raft.raft_log.applied
    }

    /// Proposes a change (the leader only); its outcome comes back in [`Output::applied`] under the
    /// returned id once committed and applied.
    pub fn propose(&mut self, change: &Change) -> Result<u64, String> {
        if !self.is_leader() {
            return Err("not the controller leader".into());
        }
        let pid = self.next_proposal;
        self.next_proposal += 1;
        let mut ctx = self.id.to_be_bytes().to_vec();
        ctx.extend_from_slice(&pid.to_be_bytes());
        self.raw.propose(ctx, change.encode()).map_err(|e| e.to_string())?;
        Ok(pid)
    }

    fn apply(&mut self, entries: Vec<Entry>, out: &mut Output) {
        for e in entries {
            if e.get_entry_type() != EntryType::EntryNormal || e.data.is_empty() {
                continue;
            }
            let result = match Change::decode(&e.data) {
                Ok(c) => self.state.apply(&c),
                Err(why) => Err(Refused::Invalid(why)),
            };
            let ctx = &e.context;
            if ctx.len() == 16 && ctx[..8] == self.id.to_be_bytes() {
                let pid = u64::from_be_bytes(ctx[8..16].try_into().unwrap_or_default());
                out.applied.push((pid, result));
            }
        }
    }

    /// Collects everything raft has ready: messages, the state to persist, applied changes.
    pub fn process(&mut self) -> Output {
        let mut out = Output::default();
        if !self.raw.has_ready() {
            return out;
        }
        let store = self.raw.raft.raft_log.store.clone();
        let mut ready = self.raw.ready();
        out.messages.extend(ready.take_messages());
        let mut changed = false;
        if !ready.snapshot().is_empty() {
            // The leader compacted past this member's log: the state arrives whole.
            let snap = ready.snapshot().clone();
            match serde_json::from_slice::<ControllerState>(&snap.data) {
                Ok(state) => match store.mem.wl().apply_snapshot(snap.clone()) {
                    Ok(()) => {
                        self.state = state;
                        *store.snapshot.borrow_mut() = snap;
                        changed = true;
                    }
                    Err(e) => tracing::warn!(error = %e, "controller snapshot not applied"),
                },
                Err(e) => tracing::error!(error = %e, "controller snapshot does not decode"),
            }
        }
        self.apply(ready.take_committed_entries(), &mut out);
        if !ready.entries().is_empty() {
            let _ = store.mem.wl().append(ready.entries());
            changed = true;
        }
        if let Some(hs) = ready.hs() {
            store.mem.wl().set_hardstate(hs.clone());
            changed = true;
        }
        out.messages.extend(ready.take_persisted_messages());
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            store.mem.wl().mut_hard_state().set_commit(commit);
            changed = true;
        }
        out.messages.extend(light.take_messages());
        self.apply(light.take_committed_entries(), &mut out);
        self.raw.advance_apply();
        changed |= self.compact(&store);
        // The transport is fire-and-forget: a snapshot counts as sent once handed to it. If it is
        // lost, the member's next reply shows it still behind and raft sends another.
        for to in out.messages.iter().filter(|m| m.get_msg_type() == MessageType::MsgSnapshot).map(|m| m.to) {
            self.raw.report_snapshot(to, SnapshotStatus::Finish);
        }
        if changed {
            out.persist = Some(self.encode_persisted());
        }
        out
    }

    /// Replaces the applied entries with a snapshot of the state once [`RaftNode::compact_every`]
    /// of them accumulated; true when it did.
    fn compact(&self, store: &ControllerLog) -> bool {
        let applied = self.applied();
        let since = store.snapshot.borrow().get_metadata().index;
        if applied < since + self.compact_every {
            return false;
        }
        let (Ok(term), Ok(last)) = (store.term(applied), store.last_index()) else { return false };
        let Ok(data) = serde_json::to_vec(&self.state) else { return false };
        let rest = if last > applied {
            match store.entries(applied + 1, last + 1, None, GetEntriesContext::empty(false)) {
                Ok(e) => e,
                Err(_) => return false,
            }
        } else {
            Vec::new()
        };
        let mut snap = Snapshot::default();
        let meta = snap.mut_metadata();
        (meta.index, meta.term) = (applied, term);
        let Ok(initial) = store.initial_state() else { return false };
        meta.set_conf_state(initial.conf_state);
        snap.data = data.into();
        let mut w = store.mem.wl();
        let hs = w.hard_state().clone();
        if w.apply_snapshot(snap.clone()).is_err() {
            return false;
        }
        // apply_snapshot drops every entry and sets commit to the snapshot: put both back.
        let _ = w.append(&rest);
        w.set_hardstate(hs);
        *store.snapshot.borrow_mut() = snap;
        true
    }

    fn encode_persisted(&self) -> Vec<u8> {
        let store = &self.raw.raft.raft_log.store;
        let hs = store.mem.rl().hard_state().clone();
        let (first, last) = (store.first_index().unwrap_or(1), store.last_index().unwrap_or(0));
        let entries = if last >= first {
            store.entries(first, last + 1, None, GetEntriesContext::empty(false)).unwrap_or_default()
        } else {
            Vec::new()
        };
        let mut b = Vec::with_capacity(64 + entries.len() * 128);
        b.extend_from_slice(&PERSIST_MAGIC.to_be_bytes());
        for v in [hs.term, hs.vote, hs.commit] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        let snap = store.snapshot.borrow();
        b.extend_from_slice(&snap.get_metadata().index.to_be_bytes());
        b.extend_from_slice(&snap.get_metadata().term.to_be_bytes());
        b.extend_from_slice(&(snap.data.len() as u32).to_be_bytes());
        b.extend_from_slice(&snap.data);
        b.extend_from_slice(&(entries.len() as u32).to_be_bytes());
        for e in &entries {
            let bytes = e.write_to_bytes().unwrap_or_default();
            b.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            b.extend_from_slice(&bytes);
        }
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_be_bytes());
        b
    }
}

/// A Raft message as bytes (the body of a RINGMQ_RAFT_MESSAGE request) and back.
pub fn encode_message(m: &Message) -> Vec<u8> {
    m.write_to_bytes().unwrap_or_default()
}

pub fn decode_message(b: &[u8]) -> Result<Message, String> {
    Message::parse_from_bytes(b).map_err(|e| format!("bad Raft message: {e}"))
}
