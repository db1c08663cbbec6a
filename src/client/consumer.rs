//! Native consumers: a pull consumer (explicit queues and offsets) and a push consumer (clustering
//! with average allocation and rebalance on membership change, or broadcasting), each pull running
//! on its own thread with long polling, offsets committed periodically.

use super::connection::ClientError;
use super::route::{ClientContext, MessageQueue, REQUEST_TIMEOUT};
use crate::protocol::Command;
use crate::protocol::codes::{request as rq, response as rs};
use crate::protocol::message::StoredMessage;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Long-poll hold asked of the broker: short enough that stopping a consumer is prompt.
const PULL_SUSPEND_MS: u64 = 5_000;
const PULL_BATCH: u32 = 32;
/// Heartbeat and rebalance period (RocketMQ clients: 30 s and 20 s; shorter here so tests are quick).
const REBALANCE_EVERY: Duration = Duration::from_secs(2);
const COMMIT_EVERY: Duration = Duration::from_secs(1);
/// Orderly consumers renew their queue locks this often (RocketMQ: 20 s; the broker lease is 60 s).
const LOCK_RENEW_EVERY: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
pub struct PullResult {
    pub code: i32,
    pub next_offset: u64,
    pub min_offset: u64,
    pub max_offset: u64,
    pub messages: Vec<StoredMessage>,
}

/// Pull consumer: the caller chooses queues and offsets.
#[derive(Clone)]
pub struct PullConsumer {
    pub ctx: Arc<ClientContext>,
    pub group: String,
}

fn get_u64(r: &Command, key: &str) -> u64 {
    r.field(key).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Splits a pull body into stored records.
pub fn decode_records(body: &bytes::Bytes) -> Result<Vec<StoredMessage>, String> {
    let mut out = Vec::new();
    let mut rest = body.clone();
    while rest.len() >= 4 {
        let size = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if size > rest.len() || size < 4 {
            return Err(format!("record size {size} exceeds the {} bytes left", rest.len()));
        }
        let rec = rest.split_to(size);
        out.push(StoredMessage::decode(&rec).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

impl PullConsumer {
    pub fn new(namesrv: &str, group: &str) -> PullConsumer {
        PullConsumer { ctx: ClientContext::new(namesrv), group: group.into() }
    }

    pub fn queues(&self, topic: &str) -> Result<Vec<MessageQueue>, ClientError> {
        Ok(self.ctx.route(topic, true)?.read_queues)
    }

    fn call(&self, mq: &MessageQueue, cmd: Command) -> Result<Command, ClientError> {
        let addr = self.ctx.broker_addr(&mq.topic, &mq.broker_name)?;
        self.ctx.conn(&addr)?.request(cmd, REQUEST_TIMEOUT + Duration::from_millis(PULL_SUSPEND_MS))
    }

    /// Pulls up to `max` messages at `offset` that match the tag expression.
    pub fn pull(
        &self,
        mq: &MessageQueue,
        offset: u64,
        max: u32,
        expr: &str,
        suspend_ms: u64,
    ) -> Result<PullResult, ClientError> {
        let mut cmd = Command::request(rq::PULL_MESSAGE);
        cmd.put("consumerGroup", &self.group);
        cmd.put("topic", &mq.topic);
        cmd.put("queueId", mq.queue_id);
        cmd.put("queueOffset", offset);
        cmd.put("maxMsgNums", max);
        cmd.put("sysFlag", 4 | if suspend_ms > 0 { 2 } else { 0 });
        cmd.put("commitOffset", 0);
        cmd.put("suspendTimeoutMillis", suspend_ms);
        cmd.put("subscription", expr);
        cmd.put("subVersion", 0);
        cmd.put("expressionType", "TAG");
        let r = self.call(mq, cmd)?;
        let messages = if r.code == rs::SUCCESS {
            decode_records(&r.body_bytes())
                .map_err(|m| ClientError::BadResponse { addr: mq.broker_name.clone(), message: m })?
        } else {
            Vec::new()
        };
        Ok(PullResult {
            code: r.code,
            next_offset: get_u64(&r, "nextBeginOffset"),
            min_offset: get_u64(&r, "minOffset"),
            max_offset: get_u64(&r, "maxOffset"),
            messages,
        })
    }

    fn queue_request(&self, code: i32, mq: &MessageQueue) -> Command {
        let mut cmd = Command::request(code);
        cmd.put("consumerGroup", &self.group);
        cmd.put("topic", &mq.topic);
        cmd.put("queueId", mq.queue_id);
        cmd
    }

    /// The group's committed offset (None when the broker has none for it).
    pub fn committed_offset(&self, mq: &MessageQueue) -> Result<Option<u64>, ClientError> {
        let r = self.call(mq, self.queue_request(rq::QUERY_CONSUMER_OFFSET, mq))?;
        Ok((r.code == rs::SUCCESS).then(|| get_u64(&r, "offset")))
    }

    pub fn commit(&self, mq: &MessageQueue, offset: u64) -> Result<(), ClientError> {
        let mut cmd = self.queue_request(rq::UPDATE_CONSUMER_OFFSET, mq);
        cmd.put("commitOffset", offset);
        self.call(mq, cmd).map(|_| ())
    }

    pub fn max_offset(&self, mq: &MessageQueue) -> Result<u64, ClientError> {
        Ok(get_u64(&self.call(mq, self.queue_request(rq::GET_MAX_OFFSET, mq))?, "offset"))
    }

    pub fn min_offset(&self, mq: &MessageQueue) -> Result<u64, ClientError> {
        Ok(get_u64(&self.call(mq, self.queue_request(rq::GET_MIN_OFFSET, mq))?, "offset"))
    }

    pub fn offset_by_time(&self, mq: &MessageQueue, ts_ms: i64) -> Result<u64, ClientError> {
        let mut cmd = self.queue_request(rq::SEARCH_OFFSET_BY_TIMESTAMP, mq);
        cmd.put("timestamp", ts_ms);
        Ok(get_u64(&self.call(mq, cmd)?, "offset"))
    }

    /// Registers this client's subscriptions with every broker of the topics (HEART_BEAT).
    pub fn heartbeat(&self, subs: &[(String, String)], model: &str) -> Result<(), ClientError> {
        let sub_data: Vec<serde_json::Value> = subs
            .iter()
            .map(|(t, e)| {
                let tags: Vec<&str> = if e.trim() == "*" {
                    vec![]
                } else {
                    e.split("||").map(str::trim).filter(|t| !t.is_empty()).collect()
                };
                let codes: Vec<i64> = tags.iter().map(|t| crate::protocol::message::java_string_hash(t)).collect();
                serde_json::json!({"topic": t, "subString": e, "expressionType": "TAG", "subVersion": 0,
                    "classFilterMode": false, "tagsSet": tags, "codeSet": codes})
            })
            .collect();
        let body = serde_json::json!({
            "clientID": self.ctx.client_id,
            "producerDataSet": [],
            "consumerDataSet": [{"groupName": self.group, "consumeType": "CONSUME_PASSIVELY", "messageModel": model,
                "consumeFromWhere": "CONSUME_FROM_FIRST_OFFSET", "unitMode": false, "subscriptionDataSet": sub_data}],
        });
        let mut addrs: Vec<String> = Vec::new();
        for (t, _) in subs {
            addrs.extend(self.ctx.route(t, false)?.brokers.into_values());
        }
        addrs.sort();
        addrs.dedup();
        for a in addrs {
            self.ctx.conn(&a)?.call(Command::request(rq::HEART_BEAT).with_body(body.to_string()), REQUEST_TIMEOUT)?;
        }
        Ok(())
    }

    fn lock_body(&self, mq: &MessageQueue) -> String {
        serde_json::json!({"consumerGroup": self.group, "clientId": self.ctx.client_id, "onlyThisBroker": false, "mqSet": [mq]})
            .to_string()
    }

    /// Takes or renews the broker lock of `mq` for this client (orderly consumption).
    pub fn lock(&self, mq: &MessageQueue) -> Result<bool, ClientError> {
        let r = self.call(mq, Command::request(rq::LOCK_BATCH_MQ).with_body(self.lock_body(mq)))?;
        let v: serde_json::Value = serde_json::from_slice(&r.body_bytes()).unwrap_or_default();
        Ok(v["lockOKMQSet"].as_array().is_some_and(|a| !a.is_empty()))
    }

    pub fn unlock(&self, mq: &MessageQueue) -> Result<(), ClientError> {
        self.call(mq, Command::request(rq::UNLOCK_BATCH_MQ).with_body(self.lock_body(mq))).map(|_| ())
    }

    /// Consumer ids of the group, sorted (from any broker of `topic`).
    pub fn consumer_ids(&self, topic: &str) -> Result<Vec<String>, ClientError> {
        let route = self.ctx.route(topic, false)?;
        let addr = route.brokers.values().next().ok_or_else(|| ClientError::NoRoute(topic.into()))?;
        let mut cmd = Command::request(rq::GET_CONSUMER_LIST_BY_GROUP);
        cmd.put("consumerGroup", &self.group);
        let r = self.ctx.conn(addr)?.call(cmd, REQUEST_TIMEOUT)?;
        let v: serde_json::Value = serde_json::from_slice(&r.body_bytes()).unwrap_or_default();
        let mut ids: Vec<String> =
            v["consumerIdList"].as_array().into_iter().flatten().filter_map(|x| x.as_str().map(String::from)).collect();
        ids.sort();
        Ok(ids)
    }
}

/// RocketMQ's default allocation: contiguous, as even as possible, by position in the sorted id list.
pub fn allocate_average<T: Clone>(queues: &[T], ids: &[String], me: &str) -> Vec<T> {
    let Some(i) = ids.iter().position(|x| x == me) else {
        return Vec::new();
    };
    let (n, q) = (ids.len(), queues.len());
    let rem = q % n;
    let size = if q <= n {
        1
    } else if rem > 0 && i < rem {
        q / n + 1
    } else {
        q / n
    };
    let start = if rem > 0 && i < rem { i * size } else { i * size + rem };
    (0..size.min(q.saturating_sub(start))).map(|k| queues[(start + k) % q].clone()).collect()
}

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
    subs: Vec<(String, String)>,
    broadcasting: bool,
    orderly: bool,
    start_from: StartFrom,
    listener: Listener,
    running: Arc<AtomicBool>,
    workers: Arc<Mutex<HashMap<MessageQueue, Arc<AtomicBool>>>>,
    local_offsets: Arc<Mutex<HashMap<MessageQueue, u64>>>,
    /// Offsets the broker told this client to jump to (RESET_CONSUMER_CLIENT_OFFSET).
    resets: Resets,
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
        }
    }

    pub fn subscribe(&mut self, topic: &str, expr: &str) {
        self.subs.push((topic.into(), expr.into()));
    }

    /// Orderly consumption: a queue is consumed only while this client holds its broker lock
    /// (LOCK_BATCH_MQ, renewed every 20 s, released when the queue moves away), so per-queue order
    /// holds across rebalances.
    pub fn orderly(&mut self, on: bool) {
        self.orderly = on;
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
        self.pull.heartbeat(&self.subs, model)?;
        let me = self.clone_handle();
        let wake = Arc::new(AtomicBool::new(true));
        let w2 = wake.clone();
        self.pull.ctx.on_server_request(rq::NOTIFY_CONSUMER_IDS_CHANGED, move |_| {
            w2.store(true, Ordering::SeqCst);
            None
        });
        let resets = self.resets.clone();
        let topics: Vec<String> = self.subs.iter().map(|(t, _)| t.clone()).collect();
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
        }
    }

    fn control_loop(self, wake: Arc<AtomicBool>) {
        let model = if self.broadcasting { "BROADCASTING" } else { "CLUSTERING" };
        let mut last = Instant::now() - REBALANCE_EVERY;
        while self.running.load(Ordering::SeqCst) {
            if wake.swap(false, Ordering::SeqCst) || last.elapsed() >= REBALANCE_EVERY {
                last = Instant::now();
                if let Err(e) = self.pull.heartbeat(&self.subs, model).and_then(|_| self.rebalance()) {
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
        for (topic, expr) in &self.subs {
            let queues = self.pull.queues(topic)?;
            let mine = if self.broadcasting {
                queues
            } else {
                allocate_average(&queues, &self.pull.consumer_ids(topic)?, &self.pull.ctx.client_id)
            };
            wanted.extend(mine.into_iter().map(|q| (q, expr.clone())));
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

    fn pull_loop(self, q: MessageQueue, expr: String, flag: Arc<AtomicBool>) {
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
            match self.pull.pull(&q, offset, PULL_BATCH, &expr, PULL_SUSPEND_MS) {
                Ok(r) if r.code == rs::SUCCESS => {
                    while !(self.listener)(&r.messages) {
                        std::thread::sleep(Duration::from_secs(1));
                    }
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
        let mut cmd = Command::request(rq::UNREGISTER_CLIENT);
        cmd.put("clientID", &self.pull.ctx.client_id);
        cmd.put("consumerGroup", &self.pull.group);
        for c in self.pull.ctx.open_conns() {
            let _ = c.request(cmd.clone(), Duration::from_secs(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn average_allocation_matches_rocketmq() {
        let q: Vec<i32> = (0..8).collect();
        let ids: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        assert_eq!(allocate_average(&q, &ids, "a"), vec![0, 1, 2]);
        assert_eq!(allocate_average(&q, &ids, "b"), vec![3, 4, 5]);
        assert_eq!(allocate_average(&q, &ids, "c"), vec![6, 7]);
        assert!(allocate_average(&q, &ids, "z").is_empty());
        let many: Vec<String> = (0..10).map(|i| i.to_string()).collect();
        assert_eq!(allocate_average(&q[..2], &many[..3], "2"), Vec::<i32>::new());
    }
}
