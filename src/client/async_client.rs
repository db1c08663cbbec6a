//! The native client for code running on a glommio executor: [`AsyncProducer`] and
//! [`AsyncPullConsumer`] over [`AsyncConnection`]s (io_uring sockets, requests pipelined by opaque, no
//! thread per connection). Everything here lives on the executor that created it (`!Send`); run one
//! client per executor, one executor per core, as `ringmq bench` does. Requests, queue selection,
//! retry rules and response parsing are the blocking client's (`producer.rs`, `consumer.rs`,
//! `route.rs`), so both clients behave alike against any RocketMQ broker.
//!
//! ```no_run
//! use ringmq::client::{AsyncProducer, Message};
//! glommio::LocalExecutorBuilder::default().spawn(|| async {
//!     let p = AsyncProducer::new("127.0.0.1:9876", "my-producer-group");
//!     let r = p.send(&Message::new("orders", "hello")).await.expect("send");
//!     println!("stored at {} in {:?}", r.queue_offset, r.queue);
//! }).unwrap().join().unwrap();
//! ```

use super::async_conn::AsyncConnection;
use super::connection::{ClientError, ClientSecurity};
use super::consumer::{
    PULL_SUSPEND_MS, PullResult, PullSpec, commit_request, offset_of, pull_request, pull_result, queue_request,
};
use super::producer::{RETRYABLE, SEND_ATTEMPTS, batch_request, pick_queue, send_header};
use super::route::{
    AUTO_CREATE_TEMPLATE, REQUEST_TIMEOUT, ROUTE_TTL, TopicRoute, as_template_route, route_of, route_request,
};
use super::{Message, MessageQueue, SendResult};
use crate::protocol::Command;
use crate::protocol::codes::{request as rq, response as rs};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Connections and routes of one client on one executor.
pub struct AsyncClient {
    namesrvs: Vec<String>,
    security: ClientSecurity,
    conns: RefCell<HashMap<String, Rc<AsyncConnection>>>,
    routes: RefCell<HashMap<String, (Instant, TopicRoute)>>,
}

impl AsyncClient {
    pub fn new(namesrv: &str) -> Rc<AsyncClient> {
        AsyncClient::with_security(namesrv, ClientSecurity::default())
    }

    /// A client whose connections use TLS and sign requests as `security` says.
    pub fn with_security(namesrv: &str, security: ClientSecurity) -> Rc<AsyncClient> {
        Rc::new(AsyncClient {
            security,
            namesrvs: crate::protocol::split_addrs(namesrv),
            conns: RefCell::default(),
            routes: RefCell::default(),
        })
    }

    /// A live connection to `addr`, reconnecting when the old one closed.
    pub async fn conn(&self, addr: &str) -> Result<Rc<AsyncConnection>, ClientError> {
        if let Some(c) = self.conns.borrow().get(addr).filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let fresh = Rc::new(AsyncConnection::connect_with(addr, &self.security).await?);
        // Another task may have connected while this one waited: keep the first live connection.
        let mut conns = self.conns.borrow_mut();
        let c = match conns.get(addr).filter(|c| !c.is_closed()) {
            Some(c) => c.clone(),
            None => {
                conns.insert(addr.to_string(), fresh.clone());
                fresh
            }
        };
        Ok(c)
    }

    /// Sends `cmd` to `addr` and waits for the answer (`timeout` for held pulls).
    pub async fn call(&self, addr: &str, cmd: Command, timeout: Duration) -> Result<Command, ClientError> {
        self.conn(addr).await?.request(cmd, timeout).await
    }

    /// Asks each name server in turn.
    pub async fn namesrv_call(&self, cmd: Command) -> Result<Command, ClientError> {
        let mut last = ClientError::NoRoute("no name server configured".into());
        for ns in &self.namesrvs {
            match self.call(ns, cmd.clone(), REQUEST_TIMEOUT).await {
                Ok(r) => return Ok(r),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The route of `topic`, cached for `ROUTE_TTL` unless `refresh`.
    pub async fn route(&self, topic: &str, refresh: bool) -> Result<TopicRoute, ClientError> {
        if !refresh
            && let Some((at, r)) = self.routes.borrow().get(topic)
            && at.elapsed() < ROUTE_TTL
        {
            return Ok(r.clone());
        }
        let route = route_of(topic, self.namesrv_call(route_request(topic)).await?)?;
        self.routes.borrow_mut().insert(topic.to_string(), (Instant::now(), route.clone()));
        Ok(route)
    }

    /// The route of `topic`, or of the auto-create template `TBW102` while the topic has none yet
    /// (the broker creates it on the first send when `autoCreateTopicEnable` is on).
    async fn send_route(&self, topic: &str) -> Result<TopicRoute, ClientError> {
        match self.route(topic, false).await {
            Ok(r) => Ok(r),
            Err(e) => self.route(AUTO_CREATE_TEMPLATE, false).await.map(as_template_route).map_err(|_| e),
        }
    }

    /// The master address of the broker serving `mq`.
    pub async fn broker_addr(&self, mq: &MessageQueue) -> Result<String, ClientError> {
        let route = self.send_route(&mq.topic).await?;
        route
            .brokers
            .get(&mq.broker_name)
            .cloned()
            .ok_or_else(|| ClientError::NoRoute(format!("broker {} not in route of {}", mq.broker_name, mq.topic)))
    }
}

/// A producer on a glommio executor: sends to a chosen queue, round robin or by sharding key, with
/// RocketMQ's retry of retryable answers on another broker; batches; oneway sends. Concurrent sends
/// from many tasks pipeline over one connection per broker.
pub struct AsyncProducer {
    client: Rc<AsyncClient>,
    group: String,
    next: Cell<usize>,
}

impl AsyncProducer {
    pub fn new(namesrv: &str, group: &str) -> AsyncProducer {
        AsyncProducer::with_client(AsyncClient::new(namesrv), group)
    }

    /// A producer sharing `client`'s connections and routes.
    pub fn with_client(client: Rc<AsyncClient>, group: &str) -> AsyncProducer {
        AsyncProducer { client, group: group.into(), next: Cell::new(rand::random::<u32>() as usize) }
    }

    pub fn client(&self) -> &Rc<AsyncClient> {
        &self.client
    }

    /// The writable queues of `topic`.
    pub async fn queues(&self, topic: &str) -> Result<Vec<MessageQueue>, ClientError> {
        Ok(self.client.route(topic, false).await?.write_queues)
    }

    async fn select(&self, topic: &str, key: Option<&str>, avoid: Option<&str>) -> Result<MessageQueue, ClientError> {
        let route = self.client.send_route(topic).await?;
        pick_queue(topic, &route.write_queues, key, avoid, || {
            let n = self.next.get();
            self.next.set(n.wrapping_add(1));
            n
        })
    }

    /// Sends one message round robin and waits for the broker's answer, retrying elsewhere.
    pub async fn send(&self, msg: &Message) -> Result<SendResult, ClientError> {
        self.send_by_key(msg, None).await
    }

    /// Sends to the queue chosen by `key` (messages with one key keep their order; no retry on
    /// another broker, which would break that order).
    pub async fn send_by_key(&self, msg: &Message, key: Option<&str>) -> Result<SendResult, ClientError> {
        let (props, uniq) = msg.encode_properties_keyed();
        let mut avoid: Option<String> = None;
        let mut last = ClientError::NoRoute(msg.topic.clone());
        for attempt in 0..SEND_ATTEMPTS {
            let mq = self.select(&msg.topic, key, avoid.as_deref()).await?;
            let addr = self.client.broker_addr(&mq).await?;
            let cmd = send_header(&self.group, &mq.topic, mq.queue_id, &props, false).with_body(msg.body.clone());
            match self.client.call(&addr, cmd, REQUEST_TIMEOUT).await {
                Ok(r) if RETRYABLE.contains(&r.code) && key.is_none() => {
                    last = ClientError::Refused { addr, code: r.code, remark: r.remark.unwrap_or_default() };
                }
                Ok(r) => return super::Producer::parse_result(mq, r, uniq, &addr),
                Err(e) => last = e,
            }
            avoid = Some(mq.broker_name);
            if attempt == 0 {
                let _ = self.client.route(&msg.topic, true).await;
            }
        }
        Err(last)
    }

    /// Sends `msgs` (one topic; one message is sent as a plain send) to `mq` and waits for the
    /// answer; no retry, the caller chose the queue.
    pub async fn send_to(&self, mq: &MessageQueue, msgs: &[Message]) -> Result<SendResult, ClientError> {
        let (cmd, uniq) = match msgs {
            [] => return Err(ClientError::NoRoute("empty batch".into())),
            [m] => {
                let (props, uniq) = m.encode_properties_keyed();
                (send_header(&self.group, &mq.topic, mq.queue_id, &props, false).with_body(m.body.clone()), uniq)
            }
            _ => (batch_request(&self.group, mq, msgs), String::new()),
        };
        let addr = self.client.broker_addr(mq).await?;
        let r = self.client.call(&addr, cmd, REQUEST_TIMEOUT).await?;
        super::Producer::parse_result(mq.clone(), r, uniq, &addr)
    }

    /// Sends messages of one topic as one batch to the next queue.
    pub async fn send_batch(&self, msgs: &[Message]) -> Result<SendResult, ClientError> {
        let topic = msgs.first().map(|m| m.topic.clone()).ok_or_else(|| ClientError::NoRoute("empty batch".into()))?;
        let mq = self.select(&topic, None, None).await?;
        self.send_to(&mq, msgs).await
    }

    /// Sends without any answer from the broker.
    pub async fn send_oneway(&self, msg: &Message) -> Result<(), ClientError> {
        let mq = self.select(&msg.topic, None, None).await?;
        let addr = self.client.broker_addr(&mq).await?;
        let cmd = send_header(&self.group, &mq.topic, mq.queue_id, &msg.encode_properties(), false)
            .with_body(msg.body.clone());
        self.client.conn(&addr).await?.oneway(cmd)
    }
}

/// A pull consumer on a glommio executor: the caller picks queues and offsets (long polling with
/// `PullSpec::suspend_ms`), and commits offsets to the broker for its group.
pub struct AsyncPullConsumer {
    client: Rc<AsyncClient>,
    group: String,
}

impl AsyncPullConsumer {
    pub fn new(namesrv: &str, group: &str) -> AsyncPullConsumer {
        AsyncPullConsumer::with_client(AsyncClient::new(namesrv), group)
    }

    pub fn with_client(client: Rc<AsyncClient>, group: &str) -> AsyncPullConsumer {
        AsyncPullConsumer { client, group: group.into() }
    }

    /// The readable queues of `topic`.
    pub async fn queues(&self, topic: &str) -> Result<Vec<MessageQueue>, ClientError> {
        Ok(self.client.route(topic, false).await?.read_queues)
    }

    async fn call(&self, mq: &MessageQueue, cmd: Command) -> Result<Command, ClientError> {
        let addr = self.client.broker_addr(mq).await?;
        self.client.call(&addr, cmd, REQUEST_TIMEOUT + Duration::from_millis(PULL_SUSPEND_MS)).await
    }

    /// Pulls what `spec` selects from `mq`.
    pub async fn pull(&self, mq: &MessageQueue, spec: &PullSpec<'_>) -> Result<PullResult, ClientError> {
        let r = self.call(mq, pull_request(&self.group, mq, spec)).await?;
        pull_result(mq, &r)
    }

    /// Pulls what `spec` selects from `mq`, leaving the records undecoded: the answer's code, the
    /// next offset, and the body (records back to back; `protocol::bodies::record_frames` walks
    /// them). For a reader that passes records on as they are.
    pub async fn pull_raw(
        &self,
        mq: &MessageQueue,
        spec: &PullSpec<'_>,
    ) -> Result<(i32, u64, bytes::Bytes), ClientError> {
        let r = self.call(mq, pull_request(&self.group, mq, spec)).await?;
        let next = crate::protocol::commands::pull::PullResponseHeader::decode(&r)
            .map_or(spec.offset, |h| h.next_begin_offset);
        Ok((r.code, next, r.body_bytes()))
    }

    /// The offset after the last message of `mq`.
    pub async fn max_offset(&self, mq: &MessageQueue) -> Result<u64, ClientError> {
        Ok(offset_of(&self.call(mq, queue_request(&self.group, rq::GET_MAX_OFFSET, mq)).await?))
    }

    /// The group's committed offset of `mq` (None when the broker has none).
    pub async fn committed_offset(&self, mq: &MessageQueue) -> Result<Option<u64>, ClientError> {
        let r = self.call(mq, queue_request(&self.group, rq::QUERY_CONSUMER_OFFSET, mq)).await?;
        Ok((r.code == rs::SUCCESS).then(|| offset_of(&r)))
    }

    /// Commits `offset` (the next one to consume) of `mq` for the group.
    pub async fn commit(&self, mq: &MessageQueue, offset: u64) -> Result<(), ClientError> {
        self.call(mq, commit_request(&self.group, mq, offset)).await.map(|_| ())
    }
}
