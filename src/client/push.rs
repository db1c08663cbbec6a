//! The native push consumer: pulls on its own threads (one per assigned queue, long polling) and
//! hands messages to a listener. Clustering (average allocation, rebalance when the group changes,
//! offsets committed on the broker) or broadcasting (offsets kept here); orderly consumption under
//! broker queue locks. A clustering consumer also consumes `%RETRY%<group>` and sends messages its
//! listener fails back to the broker (CONSUMER_SEND_MSG_BACK), which redelivers them after RocketMQ's
//! back-off and moves them to `%DLQ%<group>` after 16 failures; offset resets pushed by the broker
//! (RESET_CONSUMER_CLIENT_OFFSET) move its queues.

use super::connection::{ClientError, ClientSecurity};
use super::consumer::{PULL_SUSPEND_MS, PullConsumer, PullSpec, SQL92, TAG, allocate_average};
use super::route::MessageQueue;
use crate::protocol::Command;
use crate::protocol::codes::{request as rq, response as rs};
use crate::protocol::commands::clients::UnregisterClientRequest;
use crate::protocol::message::StoredMessage;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PULL_BATCH: u32 = 32;
const RETRY_PREFIX: &str = "%RETRY%";
/// Heartbeat and rebalance period (RocketMQ clients: 30 s and 20 s; shorter here so tests are quick).
const REBALANCE_EVERY: Duration = Duration::from_secs(2);
const COMMIT_EVERY: Duration = Duration::from_secs(1);
/// Orderly consumers renew their queue locks this often (RocketMQ: 20 s; the broker lease is 60 s).
const LOCK_RENEW_EVERY: Duration = Duration::from_secs(20);

/// Where a new group starts in a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    First,
    Last,
}

type Listener = Arc<dyn Fn(&[StoredMessage]) -> bool + Send + Sync>;

/// Push consumer: pulls on its own threads and hands messages to `listener`, which returns true when
/// they were consumed (false: they are redelivered after a second).
pub struct PushConsumer {
    pull: PullConsumer,
    /// (topic, expression, expression type).
    subs: Vec<(String, String, &'static str)>,
    broadcasting: bool,
    orderly: bool,
    start_from: StartFrom,
    listener: Listener,
    running: Arc<AtomicBool>,
    workers: Arc<Mutex<HashMap<MessageQueue, Arc<AtomicBool>>>>,
    local_offsets: Arc<Mutex<HashMap<MessageQueue, u64>>>,
    /// Offsets the broker told this client to jump to (RESET_CONSUMER_CLIENT_OFFSET).
    resets: Resets,
    max_reconsume: Option<i32>,
    consume_batch: usize,
}

type Resets = Arc<Mutex<HashMap<MessageQueue, u64>>>;

/// Records the offsets of a RESET_CONSUMER_CLIENT_OFFSET for the queues of subscribed topics; each
/// queue's pull loop applies its entry before its next pull.
fn reset_requested(resets: &Resets, topics: &[String], cmd: &Command) {
    let body = String::from_utf8_lossy(&cmd.body_bytes()).into_owned();
    let table = match crate::protocol::offset_table::decode(&body) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "malformed offset reset from the broker; ignored");
            return;
        }
    };
    let Ok(mut r) = resets.lock() else { return };
    for e in table.into_iter().filter(|e| topics.contains(&e.topic)) {
        r.insert(MessageQueue { topic: e.topic, broker_name: e.broker_name, queue_id: e.queue_id }, e.offset);
    }
}

impl PushConsumer {
    pub fn new(
        namesrv: &str,
        group: &str,
        listener: impl Fn(&[StoredMessage]) -> bool + Send + Sync + 'static,
    ) -> PushConsumer {
        PushConsumer {
            pull: PullConsumer::new(namesrv, group),
            subs: Vec::new(),
            broadcasting: false,
            orderly: false,
            start_from: StartFrom::Last,
            listener: Arc::new(listener),
            running: Arc::new(AtomicBool::new(false)),
            workers: Arc::new(Mutex::new(HashMap::new())),
            local_offsets: Arc::new(Mutex::new(HashMap::new())),
            resets: Arc::new(Mutex::new(HashMap::new())),
            max_reconsume: None,
            consume_batch: 1,
        }
    }

    /// Uses TLS and signs requests as `security` says (call before `start`).
    pub fn security(&mut self, security: ClientSecurity) {
        let namesrv = self.pull.ctx.namesrvs.join(";");
        self.pull = PullConsumer::with_security(&namesrv, &self.pull.group, security);
    }

    pub fn subscribe(&mut self, topic: &str, expr: &str) {
        self.subs.push((topic.into(), expr.into(), TAG));
    }

    /// Subscribes with an SQL92 property filter (the broker must allow property filtering).
    pub fn subscribe_sql92(&mut self, topic: &str, sql: &str) {
        self.subs.push((topic.into(), sql.into(), SQL92));
    }

    /// Orderly consumption: a queue is consumed only while this client holds its broker lock
    /// (LOCK_BATCH_MQ, renewed every 20 s, released when the queue moves away), so per-queue order
    /// holds across rebalances.
    pub fn orderly(&mut self, on: bool) {
        self.orderly = on;
    }

    /// Failures before a message goes to the dead-letter queue (default: the group's setting on the
    /// broker, 16).
    pub fn max_reconsume_times(&mut self, n: i32) {
        self.max_reconsume = Some(n);
    }

    /// Messages per listener call (RocketMQ's consumeMessageBatchMaxSize, default 1): the listener's
    /// verdict applies to the whole call.
    pub fn consume_batch_max(&mut self, n: usize) {
        self.consume_batch = n.max(1);
    }

    pub fn broadcasting(&mut self, on: bool) {
        self.broadcasting = on;
    }

    pub fn start_from(&mut self, s: StartFrom) {
        self.start_from = s;
    }

    /// Queues this instance currently consumes.
    pub fn assigned(&self) -> Vec<MessageQueue> {
        self.workers.lock().map(|w| w.keys().cloned().collect()).unwrap_or_default()
    }

    pub fn start(&self) -> Result<(), ClientError> {
        self.running.store(true, Ordering::SeqCst);
        let model = if self.broadcasting { "BROADCASTING" } else { "CLUSTERING" };
        self.pull.heartbeat_typed(&self.subscriptions(), model)?;
        let me = self.clone_handle();
        let wake = Arc::new(AtomicBool::new(true));
        let w2 = wake.clone();
        self.pull.ctx.on_server_request(rq::NOTIFY_CONSUMER_IDS_CHANGED, move |_| {
            w2.store(true, Ordering::SeqCst);
            None
        });
        let resets = self.resets.clone();
        let topics: Vec<String> = self.subscriptions().into_iter().map(|(t, _, _)| t).collect();
        self.pull.ctx.on_server_request(rq::RESET_CONSUMER_CLIENT_OFFSET, move |cmd| {
            reset_requested(&resets, &topics, &cmd);
            None
        });
        std::thread::spawn(move || me.control_loop(wake));
        Ok(())
    }

    fn clone_handle(&self) -> PushConsumer {
        PushConsumer {
            pull: self.pull.clone(),
            subs: self.subs.clone(),
            broadcasting: self.broadcasting,
            orderly: self.orderly,
            start_from: self.start_from,
            listener: self.listener.clone(),
            running: self.running.clone(),
            workers: self.workers.clone(),
            local_offsets: self.local_offsets.clone(),
            resets: self.resets.clone(),
            max_reconsume: self.max_reconsume,
            consume_batch: self.consume_batch,
        }
    }

    fn control_loop(self, wake: Arc<AtomicBool>) {
        let model = if self.broadcasting { "BROADCASTING" } else { "CLUSTERING" };
        let mut last = Instant::now() - REBALANCE_EVERY;
        while self.running.load(Ordering::SeqCst) {
            if wake.swap(false, Ordering::SeqCst) || last.elapsed() >= REBALANCE_EVERY {
                last = Instant::now();
                if let Err(e) = self.pull.heartbeat_typed(&self.subscriptions(), model).and_then(|_| self.rebalance()) {
                    tracing::warn!(error = %e, "rebalance failed; retrying");
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Ok(w) = self.workers.lock() {
            for flag in w.values() {
                flag.store(false, Ordering::SeqCst);
            }
        }
    }

    fn rebalance(&self) -> Result<(), ClientError> {
        let mut wanted = Vec::new();
        for (topic, expr, kind) in &self.subscriptions() {
            let queues = match self.pull.queues(topic) {
                Ok(q) => q,
                // The broker creates the retry topic on the first failure.
                Err(_) if topic.starts_with(RETRY_PREFIX) => continue,
                Err(e) => return Err(e),
            };
            let mine = if self.broadcasting {
                queues
            } else {
                allocate_average(&queues, &self.pull.consumer_ids(topic)?, &self.pull.ctx.client_id)
            };
            wanted.extend(mine.into_iter().map(|q| (q, (expr.clone(), *kind))));
        }
        let mut workers = self.workers.lock().map_err(|_| ClientError::Closed("workers".into()))?;
        workers.retain(|q, flag| {
            let keep = wanted.iter().any(|(w, _)| w == q);
            if !keep {
                flag.store(false, Ordering::SeqCst);
            }
            keep
        });
        for (q, expr) in wanted {
            if workers.contains_key(&q) {
                continue;
            }
            let flag = Arc::new(AtomicBool::new(true));
            workers.insert(q.clone(), flag.clone());
            let me = self.clone_handle();
            std::thread::spawn(move || me.pull_loop(q, expr, flag));
        }
        Ok(())
    }

    fn start_offset(&self, q: &MessageQueue) -> Result<u64, ClientError> {
        if self.broadcasting {
            if let Some(o) = self.local_offsets.lock().ok().and_then(|m| m.get(q).copied()) {
                return Ok(o);
            }
        } else if let Some(o) = self.pull.committed_offset(q)? {
            return Ok(o);
        }
        match self.start_from {
            StartFrom::First => Ok(0),
            StartFrom::Last => self.pull.max_offset(q),
        }
    }

    fn save_offset(&self, q: &MessageQueue, offset: u64) {
        if self.broadcasting {
            if let Ok(mut m) = self.local_offsets.lock() {
                m.insert(q.clone(), offset);
            }
        } else if let Err(e) = self.pull.commit(q, offset) {
            tracing::warn!(error = %e, "offset commit failed");
        }
    }

    fn pull_loop(self, q: MessageQueue, (expr, kind): (String, &'static str), flag: Arc<AtomicBool>) {
        if self.orderly && !self.acquire_lock(&q, &flag) {
            return;
        }
        let mut last_lock = Instant::now();
        let mut offset = loop {
            match self.start_offset(&q) {
                Ok(o) => break o,
                Err(_) if flag.load(Ordering::SeqCst) => std::thread::sleep(Duration::from_millis(500)),
                Err(_) => return,
            }
        };
        let mut committed = offset;
        let mut last_commit = Instant::now();
        while flag.load(Ordering::SeqCst) && self.running.load(Ordering::SeqCst) {
            if let Some(to) = self.resets.lock().ok().and_then(|mut r| r.remove(&q)) {
                tracing::info!(queue = ?q, from = offset, to, "offset reset by the broker");
                offset = to;
                self.save_offset(&q, offset);
                committed = offset;
            }
            match self.pull.pull_selected(
                &q,
                &PullSpec { offset, max: PULL_BATCH, expression_type: kind, expr: &expr, suspend_ms: PULL_SUSPEND_MS },
            ) {
                Ok(r) if r.code == rs::SUCCESS => {
                    if !flag.load(Ordering::SeqCst) {
                        break; // the queue moved to another member while this pull was held: leave it
                    }
                    self.consume(&q, r.messages);
                    offset = r.next_offset;
                }
                Ok(r) if r.code == rs::PULL_OFFSET_MOVED || r.code == rs::PULL_RETRY_IMMEDIATELY => {
                    offset = r.next_offset
                }
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
            if offset != committed && last_commit.elapsed() >= COMMIT_EVERY {
                self.save_offset(&q, offset);
                committed = offset;
                last_commit = Instant::now();
            }
            if self.orderly && last_lock.elapsed() >= LOCK_RENEW_EVERY {
                last_lock = Instant::now();
                if !self.pull.lock(&q).unwrap_or(false) {
                    break; // lost the lock: stop before consuming out of order
                }
            }
        }
        if offset != committed {
            self.save_offset(&q, offset);
        }
        if self.orderly {
            let _ = self.pull.unlock(&q);
        }
    }

    /// The topics this instance subscribes: the user's, and in clustering mode the group's retry topic.
    fn subscriptions(&self) -> Vec<(String, String, &'static str)> {
        let mut subs = self.subs.clone();
        let retry = format!("{RETRY_PREFIX}{}", self.pull.group);
        if !self.broadcasting && !subs.iter().any(|(t, _, _)| *t == retry) {
            subs.push((retry, "*".into(), TAG));
        }
        subs
    }

    /// Runs the listener on one pulled batch. What it fails goes back to the broker for a later retry
    /// (clustering), is retried here until it succeeds (orderly, or when the send-back fails), or is
    /// dropped (broadcasting), as RocketMQ's consumers do.
    fn consume(&self, q: &MessageQueue, mut msgs: Vec<StoredMessage>) {
        for m in &mut msgs {
            if m.topic.starts_with(RETRY_PREFIX)
                && let Some(t) = m.property("RETRY_TOPIC")
            {
                m.topic = t; // the listener sees the topic it subscribed
            }
        }
        for chunk in msgs.chunks(self.consume_batch.max(1)) {
            self.consume_chunk(q, chunk);
        }
    }

    fn consume_chunk(&self, q: &MessageQueue, msgs: &[StoredMessage]) {
        if (self.listener)(msgs) {
            return;
        }
        if self.broadcasting {
            tracing::warn!(count = msgs.len(), "broadcast consumption failed; messages dropped");
            return;
        }
        let mut failed = msgs.to_vec();
        if !self.orderly {
            failed.retain(|m| self.pull.send_back(q, m, 0, self.max_reconsume).is_err());
        }
        while !failed.is_empty() && self.running.load(Ordering::SeqCst) && !(self.listener)(&failed) {
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// Waits until this client holds the queue's lock; false if the queue moved away meanwhile.
    fn acquire_lock(&self, q: &MessageQueue, flag: &AtomicBool) -> bool {
        while flag.load(Ordering::SeqCst) && self.running.load(Ordering::SeqCst) {
            if self.pull.lock(q).unwrap_or(false) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    }

    pub fn shutdown(&self) {
        self.running.store(false, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(100));
        let cmd = UnregisterClientRequest {
            client_id: self.pull.ctx.client_id.clone(),
            producer_group: None,
            consumer_group: Some(self.pull.group.clone()),
        }
        .request(rq::UNREGISTER_CLIENT);
        for c in self.pull.ctx.open_conns() {
            let _ = c.request(cmd.clone(), Duration::from_secs(1));
        }
    }
}
