//! The broker side of one shard: request handlers over the shard's store.
//!
//! A `Broker` lives on exactly one shard (it is `!Send`: `Rc`/`RefCell` state), owns that shard's
//! store, topic table, consumer offsets, client registry and long-poll waiters, and answers on the
//! shard's own ports. Nothing here crosses cores; topic changes reach other shards through the
//! control plane (`broker::control`).

pub mod admin;
pub mod admin_groups;
pub mod catch_up;
pub mod clients;
pub mod config_file;
pub mod control;
pub mod error;
pub mod groups;
pub mod offsets;
pub mod parking;
pub mod pull;
pub mod query;
pub mod reply;
pub mod retry;
pub mod schedule;
pub mod send;
#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_clients;
pub mod timer;
pub mod topics;
pub mod transaction;

use crate::broker::control::ControlPlane;
use crate::config::Config;
use crate::net::conn::{Conn, ConnLimits, Service};
use crate::protocol::Command;
use crate::protocol::codes::request as rq;
use crate::security::acl::Grant;
use crate::store::Store;
use crate::store::io::Disk;
use crate::store::io::DmaDisk;
use clients::ClientRegistry;
use error::BrokerError;
use offsets::OffsetTable;
use pull::LongPolls;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use topics::TopicTable;

/// One shard's broker.
pub struct Broker<D: Disk = DmaDisk> {
    pub shard: usize,
    pub cfg: Config,
    /// Registered broker name: `<broker_name>-<shard>`.
    pub name: String,
    /// Address clients reach this shard at; the store host of every record.
    pub addr: SocketAddr,
    /// Shared with the store's own tasks (`store::tasks`).
    pub store: Rc<Store<D>>,
    pub topics: RefCell<TopicTable>,
    pub offsets: RefCell<OffsetTable>,
    pub groups: RefCell<groups::GroupTable>,
    pub clients: RefCell<ClientRegistry>,
    pub polls: RefCell<LongPolls>,
    /// Raised when a pull parks: the deadline scan sleeps on it while none is parked (an idle
    /// shard then has no 100 ms tick).
    pub pull_parked: crate::rt::Beacon,
    /// The budget of this shard's catch-up reads (`catch_up_read_mib_per_sec`).
    pub catch_up: catch_up::CatchUpPace,
    pub schedule: RefCell<schedule::ScheduleProgress>,
    pub timer: RefCell<timer::TimerWheel>,
    /// On a slave: the master's delay/timer progress tables not yet covered by this log, by kind
    /// (`replication::wire::KIND_DELAY`/`KIND_TIMER`), with the log offset each needs; one each.
    pub held_progress: RefCell<std::collections::BTreeMap<u16, (u64, Vec<u8>)>>,
    /// Raised when a timer message is stored: the timer task sleeps until its next due time or this.
    pub timer_signal: crate::rt::Signal,
    /// One per delay level, raised when a message is parked in it.
    pub(super) schedule_signals: Vec<crate::rt::Signal>,
    pub transactions: RefCell<transaction::Transactions>,
    pub control: Arc<ControlPlane>,
    pub metrics: crate::metrics::ShardMetrics,
    pub connections: std::cell::Cell<u64>,
    pub connections_refused: std::cell::Cell<u64>,
    /// Number of delay levels (`message_delay_level`).
    delay_levels: usize,
    /// What one connection may hold (from `cfg`).
    pub conn_limits: ConnLimits,
    /// The ACL in force (`acl_file`); none: every request is allowed.
    pub acl: Option<crate::security::acl::AclGuard>,
    /// Requests refused by the ACL (`ringmq_acl_denied_total`), and when one was last logged.
    pub acl_denied: std::cell::Cell<u64>,
    acl_denial_logged: std::cell::Cell<Option<std::time::Instant>>,
    /// TLS of this shard's listeners (`tls_mode`).
    pub tls: Option<crate::security::tls::ServerTls>,
    /// Test failpoint: a request with this code panics (`RINGMQ_FAILPOINT_PANIC_ON_REQUEST`), so
    /// the fail-stop of the whole process can be tested from outside.
    panic_on_request: Option<i32>,
}

/// The store settings of one shard, from the broker's configuration.
pub fn store_config(cfg: &Config, shard: usize) -> crate::store::StoreConfig {
    let mut s = crate::store::StoreConfig::new(cfg.data_dir.join(shard.to_string()));
    s.segment_bytes = cfg.segment_bytes;
    s.flush = cfg.flush;
    s.tail_cache_bytes = cfg.tail_cache_bytes;
    s.read_cache_bytes = cfg.read_cache_bytes;
    s.cq_window_entries = cfg.cq_window_entries.max(1);
    s.index_seal_entries = cfg.index_seal_entries.clamp(1, 1 << 30);
    s.truncate_corrupt = cfg.truncate_corrupt_log;
    s.file_reserved_ms = cfg.file_reserved_hours * 3600 * 1000;
    s.disk_clean_ratio = cfg.disk_max_used_ratio_percent as f64 / 100.0;
    s.disk_full_ratio = cfg.disk_full_ratio_percent as f64 / 100.0;
    let delay_levels_ms = schedule::parse_levels(&cfg.message_delay_level).unwrap_or_default();
    s.rules = Arc::new(parking::ParkingRules { delay_levels_ms });
    s
}

impl<D: Disk> Broker<D> {
    /// The brokerId this shard registers with: 0 as a master or a single node, the node id as a
    /// slave (RocketMQ's controller mode: a broker's id is its own, the master answers as 0).
    pub fn broker_id(&self) -> i64 {
        match self.store.replicas.role() {
            crate::store::replicas::ReplicaRole::Slave => i64::from(self.cfg.node_id),
            _ => 0,
        }
    }

    pub fn new(shard: usize, cfg: Config, addr: SocketAddr, store: Store<D>, control: Arc<ControlPlane>) -> Broker<D> {
        let dir = store.config().dir.join("config");
        let files = store.files().clone();
        let topics = TopicTable::load(&files, &dir, &cfg);
        let offsets = OffsetTable::load(&files, &dir);
        Broker {
            shard,
            name: format!("{}-{}", cfg.broker_name, shard),
            addr,
            store: Rc::new(store),
            topics: RefCell::new(topics),
            offsets: RefCell::new(offsets),
            groups: RefCell::new(groups::GroupTable::load(&files, &dir)),
            clients: RefCell::new(ClientRegistry::default()),
            polls: RefCell::new(LongPolls::default()),
            pull_parked: crate::rt::Beacon::default(),
            catch_up: catch_up::CatchUpPace::new(cfg.catch_up_read_mib_per_sec),
            schedule: RefCell::new(schedule::ScheduleProgress::load(&files, &dir)),
            timer: RefCell::new(timer::TimerWheel::load(&files, &dir)),
            held_progress: RefCell::new(std::collections::BTreeMap::new()),
            timer_signal: crate::rt::Signal::default(),
            schedule_signals: (0..schedule::parse_levels(&cfg.message_delay_level).map_or(0, |l| l.len()))
                .map(|_| crate::rt::Signal::default())
                .collect(),
            transactions: RefCell::new(transaction::Transactions::default()),
            control,
            metrics: crate::metrics::ShardMetrics::started(),
            connections: std::cell::Cell::new(0),
            connections_refused: std::cell::Cell::new(0),
            conn_limits: ConnLimits::from_config(&cfg),
            acl: None,
            acl_denied: std::cell::Cell::new(0),
            acl_denial_logged: std::cell::Cell::new(None),
            tls: None,
            delay_levels: schedule::parse_levels(&cfg.message_delay_level).map_or(0, |l| l.len()),
            panic_on_request: std::env::var("RINGMQ_FAILPOINT_PANIC_ON_REQUEST").ok().and_then(|v| v.parse().ok()),
            cfg,
        }
    }

    /// Number of delay levels.
    pub fn delay_levels(&self) -> usize {
        self.delay_levels
    }

    /// Whether this replica delivers parked (delayed, timer) messages and checks transactions
    /// back: a single node or a master. A slave's log gets the master's deliveries; it starts
    /// delivering when it becomes the master (the tasks re-verify what the old master may have
    /// delivered, see `schedule::run_level` and `timer::run`).
    pub fn delivers_parked(&self) -> bool {
        self.store.replicas.role() != crate::store::replicas::ReplicaRole::Slave
    }

    /// Creates a system-managed topic (retry, DLQ, a scheduled message's destination) if missing.
    pub fn ensure_topic(&self, name: &str, queues: u32) {
        if self.topics.borrow().get(name).is_none() {
            let perm = topics::PERM_READ | topics::PERM_WRITE;
            self.upsert_topic(topics::TopicConfig::new(name, queues.max(1), perm), true);
        }
    }
}

impl<D: Disk> Service for Broker<D> {
    async fn handle(self: &Rc<Self>, conn: &Rc<Conn>, req: Command) -> Option<Command> {
        let start = std::time::Instant::now();
        let code = req.code;
        let resp = self.dispatch(conn, req).await;
        self.metrics.request(code, start.elapsed().as_micros() as u64);
        resp
    }

    fn connection_opened(&self) {
        self.connections.set(self.connections.get() + 1);
    }

    /// Forgets everything registered through a closed connection.
    fn connection_closed(&self, conn: &Rc<Conn>) {
        self.connections.set(self.connections.get().saturating_sub(1));
        let changed = self.clients.borrow_mut().remove_connection(conn.id);
        for group in changed {
            clients::notify_ids_changed(self, &group);
        }
    }

    fn limits(&self) -> &ConnLimits {
        &self.conn_limits
    }

    fn live_connections(&self) -> usize {
        self.connections.get() as usize
    }

    fn connection_refused(&self) {
        self.connections_refused.set(self.connections_refused.get() + 1);
    }

    fn tls(&self) -> Option<&crate::security::tls::ServerTls> {
        self.tls.as_ref()
    }
}

impl<D: Disk> Broker<D> {
    /// Checks `req` against the ACL, if one is in force; a refusal is counted and logged (at most
    /// once a second per shard: a client retrying in a loop must not flood the log).
    fn authorize(&self, conn: &Conn, req: &Command) -> Result<Grant, BrokerError> {
        let Some(acl) = &self.acl else { return Ok(Grant::All) };
        let need = crate::security::acl::access::broker_need(req);
        acl.check(req, conn.peer.ip(), &need).map_err(|d| {
            self.acl_denied.set(self.acl_denied.get() + 1);
            let now = std::time::Instant::now();
            if self.acl_denial_logged.get().is_none_or(|t| now.duration_since(t) >= std::time::Duration::from_secs(1)) {
                self.acl_denial_logged.set(Some(now));
                tracing::warn!(shard = self.shard, peer = %conn.peer, code = req.code, denied = self.acl_denied.get(), "ACL: {d}");
            }
            BrokerError::NoPermission(d.0)
        })
    }

    /// Routes a request to its handler.
    async fn dispatch(self: &Rc<Self>, conn: &Rc<Conn>, req: Command) -> Option<Command> {
        if self.panic_on_request == Some(req.code) {
            panic!("failpoint RINGMQ_FAILPOINT_PANIC_ON_REQUEST hit by request code {}", req.code);
        }
        let grant = match self.authorize(conn, &req) {
            Ok(g) => g,
            Err(e) => return Some(e.respond(&req)),
        };
        let resp = match req.code {
            rq::SEND_MESSAGE | rq::SEND_MESSAGE_V2 | rq::SEND_BATCH_MESSAGE => {
                error::answer(&req, send::handle(self, conn, &req).await)
            }
            rq::PULL_MESSAGE | rq::LITE_PULL_MESSAGE => {
                return pull::handle(self, conn, req, true).await;
            }
            rq::SEND_REPLY_MESSAGE | rq::SEND_REPLY_MESSAGE_V2 => {
                error::answer(&req, reply::handle(self, conn, &req).await)
            }
            rq::END_TRANSACTION => return transaction::end_transaction(self, &req).await,
            rq::CONSUMER_SEND_MSG_BACK => error::answer(&req, retry::send_back(self, &req).await),
            rq::QUERY_CONSUMER_OFFSET => error::answer(&req, offsets::query_consumer_offset(self, &req)),
            rq::UPDATE_CONSUMER_OFFSET => error::answer(&req, offsets::update_consumer_offset(self, &req)),
            rq::GET_MAX_OFFSET => error::answer(&req, offsets::get_max_offset(self, &req)),
            rq::GET_MIN_OFFSET => error::answer(&req, offsets::get_min_offset(self, &req)),
            rq::SEARCH_OFFSET_BY_TIMESTAMP => error::answer(&req, offsets::search_by_timestamp(self, &req).await),
            rq::INVOKE_BROKER_TO_RESET_OFFSET => error::answer(&req, offsets::reset_offset(self, &req).await),
            rq::GET_EARLIEST_MSG_STORETIME => error::answer(&req, offsets::earliest_store_time(self, &req).await),
            rq::HEART_BEAT => clients::heartbeat(self, conn, &req, &grant).await,
            rq::UNREGISTER_CLIENT => error::answer(&req, clients::unregister(self, &req)),
            rq::GET_CONSUMER_LIST_BY_GROUP => error::answer(&req, clients::consumer_list(self, &req)),
            rq::CHECK_CLIENT_CONFIG => clients::check_client_config(&req),
            rq::LOCK_BATCH_MQ => error::answer(&req, clients::lock_batch(self, &req)),
            rq::UNLOCK_BATCH_MQ => error::answer(&req, clients::unlock_batch(self, &req)),
            rq::UPDATE_AND_CREATE_TOPIC => error::answer(&req, topics::update_and_create(self, &req)),
            rq::DELETE_TOPIC_IN_BROKER => error::answer(&req, topics::delete(self, &req)),
            rq::GET_ALL_TOPIC_CONFIG => topics::get_all(self, &req),
            rq::GET_ALL_SUBSCRIPTIONGROUP_CONFIG => clients::all_groups(self, &req),
            rq::QUERY_MESSAGE => error::answer(&req, query::query_message(self, &req).await),
            rq::VIEW_MESSAGE_BY_ID => error::answer(&req, query::view_by_offset(self, &req).await),
            rq::GET_BROKER_RUNTIME_INFO => query::runtime_info(self, &req),
            rq::GET_TOPIC_STATS_INFO => admin::topic_stats(self, &req).await,
            rq::GET_CONSUMER_CONNECTION_LIST => admin::consumer_connections(self, &req),
            rq::GET_PRODUCER_CONNECTION_LIST => admin::producer_connections(self, &req),
            rq::GET_CONSUME_STATS => admin::get_consume_stats(self, &req).await,
            rq::GET_BROKER_CONSUME_STATS => admin::broker_consume_stats(self, &req).await,
            rq::GET_BROKER_CONFIG => admin::broker_config(self, &req),
            rq::QUERY_TOPIC_CONSUME_BY_WHO => admin::topic_consumed_by(self, &req),
            rq::QUERY_CONSUME_TIME_SPAN => admin::consume_time_span(self, &req).await,
            rq::GET_CONSUMER_RUNNING_INFO => admin::consumer_running_info(self, &req).await,
            rq::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP => admin_groups::update_group(self, &req),
            rq::DELETE_SUBSCRIPTIONGROUP => admin_groups::delete_group(self, &req),
            rq::CLONE_GROUP_OFFSET => admin_groups::clone_group_offset(self, &req),
            rq::GET_ALL_CONSUMER_OFFSET => admin_groups::all_consumer_offsets(self, &req),
            rq::GET_ALL_DELAY_OFFSET => admin_groups::all_delay_offsets(self, &req),
            rq::GET_SYSTEM_TOPIC_LIST_FROM_BROKER => admin_groups::system_topics(self, &req),
            rq::UPDATE_BROKER_CONFIG => admin_groups::not_at_run_time(
                &req,
                "ringmq settings do not change at run time: edit the configuration file (or flags) and restart",
            ),
            rq::VIEW_BROKER_STATS_DATA => admin_groups::not_at_run_time(
                &req,
                "ringmq keeps no per-minute stats windows: use the Prometheus metrics (ringmq_messages_in_total, \
                 ringmq_messages_out_total, ringmq_consumer_lag_messages)",
            ),
            rq::QUERY_CORRECTION_OFFSET => {
                admin_groups::not_at_run_time(&req, "QUERY_CORRECTION_OFFSET is not implemented by ringmq")
            }
            code => BrokerError::NotSupported(format!("request code {code} is not supported by ringmq")).respond(&req),
        };
        Some(resp)
    }
}
