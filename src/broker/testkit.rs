//! In-process broker for handler tests: a `Broker<FakeDisk>` on a test's glommio executor, with the
//! store's own tasks running (so `flush = sync` sends complete), one in-memory client connection whose
//! pushes land in an [`Outbox`], and requests built with the same typed headers the client sends.
//! No process, no socket, no port. Tests that involve time install `rt::manual_clock` first and move
//! it, instead of sleeping.

use super::Broker;
use crate::broker::control::ControlPlane;
use crate::config::Config;
use crate::net::conn::{Conn, Outbox, Service};
use crate::protocol::Command;
use crate::protocol::codes::request as rq;
use crate::protocol::commands::body::encode_json;
use crate::protocol::commands::clients::{ConsumerData, HeartbeatData, ProducerData, SubscriptionData};
use crate::protocol::commands::pull::{FLAG_SUBSCRIPTION, FLAG_SUSPEND, PullRequestHeader, PullResponseHeader};
use crate::protocol::commands::send::SendHeader;
use crate::protocol::commands::topics::CreateTopicRequest;
use crate::protocol::message::{StoredMessage, properties_encode};
use crate::store::Store;
use crate::store::fake_disk::FakeDisk;
use crate::store::tasks::{StoreHooks, StoreTasks};
use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;

/// Runs `f` on a fresh glommio executor (one per test, on its own thread).
pub fn run<F, Fut>(f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    crate::rt::executor::LocalExecutorBuilder::default()
        .spawn(f)
        .expect("test executor")
        .join()
        .expect("test panicked");
}

pub struct Harness {
    pub b: Rc<Broker<FakeDisk>>,
    pub disk: FakeDisk,
    /// The test client's connection, and what the broker wrote to it outside answers.
    pub conn: Rc<Conn>,
    pub out: RefCell<Outbox>,
    store_tasks: Option<StoreTasks>,
    _dir: tempfile::TempDir,
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::with(|_| {}).await
    }

    /// A broker with `tune` applied to a small test configuration.
    pub async fn with(tune: impl FnOnce(&mut Config)) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = Config { data_dir: dir.path().to_path_buf(), segment_bytes: 1 << 20, ..Config::default() };
        cfg.tail_cache_bytes = 256 << 10;
        cfg.read_cache_bytes = 256 << 10;
        tune(&mut cfg);
        Harness::open(FakeDisk::new(), cfg, dir).await
    }

    async fn open(disk: FakeDisk, cfg: Config, dir: tempfile::TempDir) -> Harness {
        let store = Store::open(disk.clone(), super::store_config(&cfg, 0)).await.expect("store opens");
        let addr = "127.0.0.1:10911".parse().expect("addr");
        let acl = cfg.acl_file.as_deref().map(|p| crate::security::acl::AclGuard::open(p).expect("ACL file"));
        let mut b = Broker::new(0, cfg, addr, store, Arc::new(ControlPlane::new(1)));
        b.acl = acl;
        let b = Rc::new(b);
        let store_tasks = Some(b.store.start(StoreHooks { shard: 0, on_flush: Box::new(|_| {}) }));
        let (conn, out) = Conn::in_memory(1, "127.0.0.1:50001".parse().expect("peer"));
        Harness { b, disk, conn, out: RefCell::new(out), store_tasks, _dir: dir }
    }

    /// Sends `req` as the test client and returns the answer; panics if the broker holds it.
    pub async fn call(&self, req: Command) -> Command {
        self.call_held(req).await.expect("the broker answered later (a parked pull?)")
    }

    /// Sends `req`; `None` when the broker answers later (through the outbox) or never.
    pub async fn call_held(&self, req: Command) -> Option<Command> {
        Service::handle(&self.b, &self.conn, req).await
    }

    /// The next command the broker wrote to the test connection, if any is queued.
    pub fn pushed(&self) -> Option<Command> {
        self.out.borrow_mut().try_next()
    }

    /// Waits (letting the broker's tasks run) for the next command written to the test connection.
    pub async fn next_pushed(&self) -> Command {
        loop {
            if let Some(c) = self.pushed() {
                return c;
            }
            crate::rt::yield_now().await;
        }
    }

    /// Answers a request the broker sent to the test connection.
    pub fn answer(&self, resp: Command) -> bool {
        self.out.borrow().answer(resp)
    }

    pub async fn create_topic(&self, topic: &str, queues: u32) {
        let h = CreateTopicRequest {
            topic: topic.into(),
            read_queue_nums: Some(queues),
            write_queue_nums: Some(queues),
            ..Default::default()
        };
        let r = self.call(h.request(rq::UPDATE_AND_CREATE_TOPIC)).await;
        assert_eq!(r.code, 0, "create topic: {:?}", r.remark);
    }

    /// The send request of one message to `topic`:`queue` with the given properties.
    pub fn send_request(topic: &str, queue: i32, body: &str, props: &[(&str, &str)]) -> Command {
        let h = SendHeader {
            producer_group: "PG".into(),
            topic: topic.into(),
            default_topic_queue_nums: 4,
            queue_id: queue,
            born_timestamp_ms: crate::rt::now_ms(),
            properties: properties_encode(props.iter().copied()),
            ..Default::default()
        };
        h.request(rq::SEND_MESSAGE_V2).with_body(body.to_string())
    }

    /// Sends one message and returns the answer.
    pub async fn send(&self, topic: &str, queue: i32, body: &str, props: &[(&str, &str)]) -> Command {
        self.call(Self::send_request(topic, queue, body, props)).await
    }

    /// A pull carrying its own subscription (`expr`, TAG), held up to `suspend_ms` when it finds nothing.
    pub fn pull_request(group: &str, topic: &str, queue: i32, offset: u64, expr: &str, suspend_ms: u64) -> Command {
        let h = PullRequestHeader {
            consumer_group: group.into(),
            topic: topic.into(),
            queue_id: queue,
            queue_offset: offset as i64,
            max_msg_nums: Some(32),
            sys_flag: Some(FLAG_SUBSCRIPTION | if suspend_ms > 0 { FLAG_SUSPEND } else { 0 }),
            suspend_timeout_millis: Some(suspend_ms as i64),
            subscription: Some(expr.into()),
            expression_type: Some("TAG".into()),
            ..Default::default()
        };
        h.request(rq::PULL_MESSAGE)
    }

    /// Pulls without holding; returns the answer's code, positions and messages.
    pub async fn pull(&self, group: &str, topic: &str, queue: i32, offset: u64) -> Pulled {
        Pulled::of(&self.call(Self::pull_request(group, topic, queue, offset, "*", 0)).await)
    }

    /// Registers `group` as consuming `topic` with `expr` (a HEART_BEAT from the test connection).
    pub async fn heartbeat(&self, client_id: &str, group: &str, topic: &str, expr: &str) -> Command {
        self.call(Harness::heartbeat_request(client_id, group, topic, expr)).await
    }

    /// A HEARTBEAT of one consumer of `group` subscribed to `topic`.
    pub fn heartbeat_request(client_id: &str, group: &str, topic: &str, expr: &str) -> Command {
        let body = HeartbeatData {
            client_id: Some(client_id.into()),
            consumer_data_set: vec![ConsumerData {
                group_name: Some(group.into()),
                consume_type: Some("CONSUME_PASSIVELY".into()),
                message_model: Some("CLUSTERING".into()),
                consume_from_where: Some("CONSUME_FROM_FIRST_OFFSET".into()),
                subscription_data_set: vec![SubscriptionData::new(topic, expr, "TAG")],
                ..Default::default()
            }],
            ..Default::default()
        };
        Command::request(rq::HEART_BEAT).with_body(encode_json(&body))
    }

    /// A HEARTBEAT registering `client_id` as a producer of `group`.
    pub fn producer_heartbeat_request(client_id: &str, group: &str) -> Command {
        let body = HeartbeatData {
            client_id: Some(client_id.into()),
            producer_data_set: vec![ProducerData { group_name: Some(group.into()) }],
            ..Default::default()
        };
        Command::request(rq::HEART_BEAT).with_body(encode_json(&body))
    }

    /// Kills the broker without a graceful stop, drops every write the fake disk had not synced, and
    /// starts a new broker over what survived (a `kill -9` and restart).
    pub async fn crash_and_restart(mut self) -> Harness {
        drop(self.store_tasks.take());
        self.disk.crash(7);
        let cfg = self.b.cfg.clone();
        let (disk, dir) = (self.disk.clone(), std::mem::replace(&mut self._dir, tempfile::tempdir().expect("tempdir")));
        drop(self);
        Harness::open(disk, cfg, dir).await
    }

    /// Stops the store's tasks after a last flush and checkpoint.
    pub async fn stop(mut self) {
        if let Some(t) = self.store_tasks.take() {
            t.stop(&self.b.store).await;
        }
    }
}

/// A decoded pull answer.
#[derive(Debug)]
pub struct Pulled {
    pub code: i32,
    pub header: PullResponseHeader,
    pub messages: Vec<StoredMessage>,
}

impl Pulled {
    pub fn of(r: &Command) -> Pulled {
        let messages = crate::protocol::bodies::decode_records(&r.body_bytes()).expect("records decode");
        Pulled { code: r.code, header: PullResponseHeader::decode(r).unwrap_or_default(), messages }
    }

    pub fn bodies(&self) -> Vec<String> {
        self.messages.iter().map(|m| String::from_utf8_lossy(&m.body).into_owned()).collect()
    }
}
