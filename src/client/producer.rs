//! The native producer: sync, async, oneway and batch sends; round-robin queue selection or selection
//! by sharding key (ordered sends); retries of retryable codes on another broker; routes refreshed
//! from the name server.

use super::connection::{ClientError, ClientSecurity, Connection};
use super::route::{AUTO_CREATE_TEMPLATE, ClientContext, MessageQueue, REQUEST_TIMEOUT, as_template_route};
use crate::protocol::Command;
use crate::protocol::bodies::{BatchItem, encode_batch};
use crate::protocol::codes::{request as rq, response as rs};
use crate::protocol::commands::body;
use crate::protocol::commands::clients::{HeartbeatData, ProducerData};
use crate::protocol::commands::namesrv::{BrokerData, ClusterInfo};
use crate::protocol::commands::send::{DEFAULT_TOPIC, SendHeader, SendResponseHeader};
use crate::protocol::commands::topics::{CreateTopicRequest, PERM_READ, PERM_WRITE};
use crate::protocol::message::properties_encode;
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Response codes after which RocketMQ producers retry on another broker.
pub(super) const RETRYABLE: [i32; 6] =
    [rs::TOPIC_NOT_EXIST, rs::SERVICE_NOT_AVAILABLE, rs::SYSTEM_ERROR, rs::SYSTEM_BUSY, rs::NO_PERMISSION, 1500];
/// Attempts per send (RocketMQ's retryTimesWhenSendFailed = 2, plus the first).
pub(super) const SEND_ATTEMPTS: usize = 3;

/// A message to send.
#[derive(Debug, Clone, Default)]
pub struct Message {
    pub topic: String,
    pub tags: Option<String>,
    pub keys: Vec<String>,
    pub body: Bytes,
    /// Extra user properties.
    pub properties: Vec<(String, String)>,
}

impl Message {
    pub fn new(topic: &str, body: impl Into<Bytes>) -> Message {
        Message { topic: topic.into(), body: body.into(), ..Default::default() }
    }

    pub fn with_tags(mut self, tags: &str) -> Message {
        self.tags = Some(tags.into());
        self
    }

    pub fn with_keys(mut self, keys: &[&str]) -> Message {
        self.keys = keys.iter().map(|k| k.to_string()).collect();
        self
    }

    pub fn with_property(mut self, k: &str, v: &str) -> Message {
        self.properties.push((k.into(), v.into()));
        self
    }

    /// The property string, with a fresh UNIQ_KEY.
    pub fn encode_properties(&self) -> String {
        self.encode_properties_keyed().0
    }

    /// The property string and the fresh UNIQ_KEY it carries (the client's message id).
    pub fn encode_properties_keyed(&self) -> (String, String) {
        let uniq = unique_key();
        let keys = self.keys.join(" ");
        let mut pairs: Vec<(&str, &str)> = vec![("UNIQ_KEY", &uniq), ("WAIT", "true")];
        if let Some(t) = &self.tags {
            pairs.push(("TAGS", t));
        }
        if !keys.is_empty() {
            pairs.push(("KEYS", &keys));
        }
        pairs.extend(self.properties.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let props = properties_encode(pairs);
        (props, uniq)
    }
}

/// A client message id in RocketMQ's shape (32 hex characters).
pub fn unique_key() -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) as u16;
    static PID: std::sync::OnceLock<u16> = std::sync::OnceLock::new();
    let pid = *PID.get_or_init(|| std::process::id() as u16); // getpid was a syscall per message
    let t = crate::protocol::now_ms() as u32;
    format!("7F000001{pid:04X}{:08X}{t:08X}{n:04X}", rand::random::<u32>())
}

/// Result of a successful send.
#[derive(Debug, Clone)]
pub struct SendResult {
    pub queue: MessageQueue,
    pub offset_msg_id: String,
    pub queue_offset: u64,
    pub unique_key: String,
}

/// Picks a write queue of `topic`: by `key` hash when given (ordered sends), else the next one
/// (`next()` is the round-robin counter) not on broker `avoid`.
pub(super) fn pick_queue(
    topic: &str,
    queues: &[MessageQueue],
    key: Option<&str>,
    avoid: Option<&str>,
    mut next: impl FnMut() -> usize,
) -> Result<MessageQueue, ClientError> {
    if queues.is_empty() {
        return Err(ClientError::NoRoute(format!("topic {topic} has no writable queue")));
    }
    if let Some(k) = key {
        let h = crate::protocol::message::java_string_hash(k).unsigned_abs() as usize;
        return Ok(MessageQueue { topic: topic.into(), ..queues[h % queues.len()].clone() });
    }
    for _ in 0..queues.len() {
        let q = &queues[next() % queues.len()];
        if Some(q.broker_name.as_str()) != avoid {
            return Ok(MessageQueue { topic: topic.into(), ..q.clone() });
        }
    }
    Ok(MessageQueue { topic: topic.into(), ..queues[0].clone() })
}

/// The SEND_BATCH_MESSAGE request of `msgs` (one topic) for `mq`.
pub(super) fn batch_request(group: &str, mq: &MessageQueue, msgs: &[Message]) -> Command {
    let items: Vec<BatchItem> =
        msgs.iter().map(|m| BatchItem { flag: 0, body: m.body.clone(), properties: m.encode_properties() }).collect();
    let batch_props = properties_encode([("UNIQ_KEY", unique_key().as_str()), ("WAIT", "true")]);
    send_header(group, &mq.topic, mq.queue_id, &batch_props, true).with_body(encode_batch(&items))
}

pub struct Producer {
    ctx: Arc<ClientContext>,
    group: String,
    next: AtomicUsize,
}

pub(super) fn send_header(group: &str, topic: &str, queue_id: i32, props: &str, batch: bool) -> Command {
    send_header_flag(group, topic, queue_id, props, batch, 0)
}

fn send_header_flag(group: &str, topic: &str, queue_id: i32, props: &str, batch: bool, sys_flag: i32) -> Command {
    SendHeader {
        producer_group: group.into(),
        topic: topic.into(),
        default_topic_queue_nums: super::route::DEFAULT_TOPIC_QUEUE_NUMS as u32,
        queue_id,
        sys_flag,
        born_timestamp_ms: crate::protocol::now_ms(),
        flag: 0,
        properties: props.into(),
        reconsume_times: 0,
        max_reconsume_times: None,
        batch,
    }
    .request(if batch { rq::SEND_BATCH_MESSAGE } else { rq::SEND_MESSAGE_V2 })
}

impl Producer {
    pub fn new(namesrv: &str, group: &str) -> Producer {
        Producer::with_security(namesrv, group, ClientSecurity::default())
    }

    /// A producer whose connections use TLS and sign requests as `security` says.
    pub fn with_security(namesrv: &str, group: &str, security: ClientSecurity) -> Producer {
        Producer::with_context(ClientContext::with_security(namesrv, security), group)
    }

    /// A producer sharing `ctx`'s connections and routes.
    pub fn with_context(ctx: Arc<ClientContext>, group: &str) -> Producer {
        Producer { ctx, group: group.into(), next: AtomicUsize::new(rand::random::<u32>() as usize) }
    }

    pub fn context(&self) -> &Arc<ClientContext> {
        &self.ctx
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    /// Picks a queue: by `key` hash when given (ordered), else round robin, avoiding `avoid`.
    pub fn select_queue(
        &self,
        topic: &str,
        key: Option<&str>,
        avoid: Option<&str>,
    ) -> Result<MessageQueue, ClientError> {
        let route = self
            .ctx
            .route(topic, false)
            .or_else(|_| self.ctx.route(AUTO_CREATE_TEMPLATE, false).map(as_template_route))?;
        pick_queue(topic, &route.write_queues, key, avoid, || self.next.fetch_add(1, Ordering::Relaxed))
    }

    fn addr_of(&self, mq: &MessageQueue) -> Result<String, ClientError> {
        self.ctx
            .broker_addr(&mq.topic, &mq.broker_name)
            .or_else(|_| self.ctx.broker_addr(AUTO_CREATE_TEMPLATE, &mq.broker_name))
    }

    pub(super) fn parse_result(
        mq: MessageQueue,
        resp: Command,
        uniq: String,
        addr: &str,
    ) -> Result<SendResult, ClientError> {
        if resp.code != rs::SUCCESS {
            return Err(ClientError::Refused {
                addr: addr.into(),
                code: resp.code,
                remark: resp.remark.unwrap_or_default(),
            });
        }
        let h = SendResponseHeader::decode(&resp)
            .map_err(|e| ClientError::BadResponse { addr: addr.into(), message: e.to_string() })?;
        Ok(SendResult {
            queue: MessageQueue { queue_id: h.queue_id, ..mq },
            offset_msg_id: h.msg_id,
            queue_offset: h.queue_offset,
            unique_key: uniq,
        })
    }

    /// Sends one message and waits for the broker's answer, retrying retryable failures elsewhere.
    pub fn send(&self, msg: &Message) -> Result<SendResult, ClientError> {
        self.send_by_key(msg, None)
    }

    /// Sends to the queue chosen by `key` (messages with one key keep their order).
    pub fn send_by_key(&self, msg: &Message, key: Option<&str>) -> Result<SendResult, ClientError> {
        self.send_inner(msg, key, 0, rq::SEND_MESSAGE_V2)
    }

    /// Sends with a message sysFlag (4 = transaction half message).
    pub fn send_with_sys_flag(&self, msg: &Message, sys_flag: i32) -> Result<SendResult, ClientError> {
        self.send_inner(msg, None, sys_flag, rq::SEND_MESSAGE_V2)
    }

    /// Sends with request `code` (SEND_MESSAGE_V2, or SEND_REPLY_MESSAGE_V2 for a reply).
    pub(super) fn send_inner(
        &self,
        msg: &Message,
        key: Option<&str>,
        sys_flag: i32,
        code: i32,
    ) -> Result<SendResult, ClientError> {
        let (props, uniq) = msg.encode_properties_keyed();
        let mut avoid: Option<String> = None;
        let mut last = ClientError::NoRoute(msg.topic.clone());
        for attempt in 0..SEND_ATTEMPTS {
            let mq = self.select_queue(&msg.topic, key, avoid.as_deref())?;
            let addr = self.addr_of(&mq)?;
            let mut cmd = send_header_flag(&self.group, &msg.topic, mq.queue_id, &props, false, sys_flag)
                .with_body(msg.body.clone());
            cmd.code = code;
            match self.ctx.conn(&addr).and_then(|c| c.request(cmd, REQUEST_TIMEOUT)) {
                Ok(r) if r.code == rs::SUCCESS => return Self::parse_result(mq, r, uniq, &addr),
                Ok(r) if RETRYABLE.contains(&r.code) && key.is_none() => {
                    last = ClientError::Refused { addr, code: r.code, remark: r.remark.unwrap_or_default() };
                }
                Ok(r) => return Self::parse_result(mq, r, uniq, &addr),
                Err(e) => last = e,
            }
            avoid = Some(mq.broker_name);
            if attempt == 0 {
                let _ = self.ctx.route(&msg.topic, true);
            }
        }
        Err(last)
    }

    /// Sends without waiting; `done` runs on the connection's reader thread.
    pub fn send_async(
        &self,
        msg: &Message,
        done: impl FnOnce(Result<SendResult, ClientError>) + Send + 'static,
    ) -> Result<(), ClientError> {
        let (props, uniq) = msg.encode_properties_keyed();
        let mq = self.select_queue(&msg.topic, None, None)?;
        let addr = self.addr_of(&mq)?;
        let cmd = send_header(&self.group, &msg.topic, mq.queue_id, &props, false).with_body(msg.body.clone());
        let a2 = addr.clone();
        self.ctx.conn(&addr)?.request_async(cmd, move |r| {
            done(match r {
                Some(r) => Self::parse_result(mq, r, uniq, &a2),
                None => Err(ClientError::Closed(a2)),
            })
        })
    }

    /// Sends without any answer from the broker.
    pub fn send_oneway(&self, msg: &Message) -> Result<(), ClientError> {
        let mq = self.select_queue(&msg.topic, None, None)?;
        let addr = self.addr_of(&mq)?;
        let cmd = send_header(&self.group, &msg.topic, mq.queue_id, &msg.encode_properties(), false)
            .with_body(msg.body.clone());
        self.ctx.conn(&addr)?.oneway(cmd)
    }

    /// Builds the send request of one message for `queue` (for callers with their own connection, such
    /// as the load generator on glommio executors).
    pub fn send_command(&self, mq: &MessageQueue, msg: &Message) -> Command {
        send_header(&self.group, &mq.topic, mq.queue_id, &msg.encode_properties(), false).with_body(msg.body.clone())
    }

    /// Builds a batch request for `queue` (all messages share one topic).
    pub fn batch_command(&self, mq: &MessageQueue, msgs: &[Message]) -> Command {
        batch_request(&self.group, mq, msgs)
    }

    /// Sends messages of one topic as one batch to one queue.
    pub fn send_batch(&self, msgs: &[Message]) -> Result<SendResult, ClientError> {
        let topic = msgs.first().map(|m| m.topic.clone()).ok_or_else(|| ClientError::NoRoute("empty batch".into()))?;
        let mq = self.select_queue(&topic, None, None)?;
        let addr = self.addr_of(&mq)?;
        let r = self.ctx.conn(&addr)?.request(self.batch_command(&mq, msgs), REQUEST_TIMEOUT)?;
        Self::parse_result(mq, r, String::new(), &addr)
    }

    /// Sends a batch without waiting.
    pub fn send_batch_async(
        &self,
        mq: &MessageQueue,
        msgs: &[Message],
        done: impl FnOnce(Result<SendResult, ClientError>) + Send + 'static,
    ) -> Result<(), ClientError> {
        let addr = self.addr_of(mq)?;
        let (mq2, a2) = (mq.clone(), addr.clone());
        self.ctx.conn(&addr)?.request_async(self.batch_command(mq, msgs), move |r| {
            done(match r {
                Some(r) => Self::parse_result(mq2, r, String::new(), &a2),
                None => Err(ClientError::Closed(a2)),
            })
        })
    }

    /// Registers this producer group by heartbeat with every broker of `topic`, first calling
    /// `install` with each connection (to handle the broker's requests on it).
    pub(super) fn register_with_brokers(
        &self,
        topic: &str,
        refresh_route: bool,
        install: impl Fn(&Connection, &str),
    ) -> Result<(), ClientError> {
        let body = body::encode_json(&HeartbeatData {
            client_id: Some(self.ctx.client_id.clone()),
            producer_data_set: vec![ProducerData { group_name: Some(self.group.clone()) }],
            ..HeartbeatData::default()
        });
        for addr in self.ctx.route(topic, refresh_route)?.brokers.into_values() {
            let conn = self.ctx.conn(&addr)?;
            install(&conn, &addr);
            conn.call(Command::request(rq::HEART_BEAT).with_body(body.clone()), REQUEST_TIMEOUT)?;
        }
        Ok(())
    }

    /// Creates (or updates) a topic on every broker of the cluster, through the name server.
    pub fn create_topic(&self, topic: &str, queues_per_broker: u32) -> Result<(), ClientError> {
        let cluster = self.ctx.namesrv_call(Command::request(rq::GET_BROKER_CLUSTER_INFO))?;
        let info: ClusterInfo = body::decode_json("ClusterInfo", &cluster.body_bytes())
            .map_err(|e| ClientError::BadResponse { addr: "namesrv".into(), message: e.to_string() })?;
        let mut n = 0;
        for addr in info.broker_addr_table.values().filter_map(BrokerData::master_addr) {
            let cmd = CreateTopicRequest {
                topic: topic.into(),
                default_topic: Some(DEFAULT_TOPIC.into()),
                read_queue_nums: Some(queues_per_broker),
                write_queue_nums: Some(queues_per_broker),
                perm: Some(PERM_READ | PERM_WRITE),
                topic_filter_type: Some("SINGLE_TAG".into()),
                topic_sys_flag: Some(0),
                order: Some(false),
                attributes: None,
            }
            .request(rq::UPDATE_AND_CREATE_TOPIC);
            self.ctx.conn(addr)?.call(cmd, REQUEST_TIMEOUT)?;
            n += 1;
        }
        if n == 0 {
            return Err(ClientError::NoRoute("no broker registered with the name server".into()));
        }
        // Wait (briefly) until the name server routes the topic to every broker that created it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if self.ctx.route(topic, true).is_ok_and(|r| r.brokers.len() >= n) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Ok(())
    }
}
