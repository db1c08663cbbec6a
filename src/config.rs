//! Process configuration: defaults, a TOML file, a RocketMQ `broker.conf` (Java properties) and
//! command-line flags, applied in that order. `docs/OPERATIONS.md` lists every field; a test checks
//! that the two agree.

use crate::security::tls::{TlsFiles, TlsMode};
use crate::store::FlushMode;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Which parts of ringmq this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Broker shards and the embedded name server.
    All,
    Broker,
    Namesrv,
}

/// All settings. Units are last in names; each default says why it has its value.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub role: Role,
    /// Cluster name registered with the name server (RocketMQ's `brokerClusterName`).
    pub cluster_name: String,
    /// Shard i registers as broker `<broker_name>-<i>`.
    pub broker_name: String,
    /// Address advertised to clients; they connect to it and it is written into every message.
    pub broker_ip: Option<IpAddr>,
    /// Shard i listens on `listen_port + 4·i` and that port − 2 (VIP channel); + 1 is kept for HA.
    pub listen_port: u16,
    pub namesrv_port: u16,
    /// Name servers to register with (`host:port;host:port`); empty = the embedded one.
    pub namesrv_addrs: Vec<String>,
    /// Number of shards; 0 = one per online core.
    pub shards: usize,
    pub data_dir: PathBuf,
    pub flush: FlushMode,
    /// How a group commit makes its writes durable: `dsync` (writes through an `O_DSYNC`
    /// descriptor, one completion per commit) or `fdatasync` (write, then fdatasync).
    pub log_sync: crate::store::io::LogSync,
    pub auto_create_topic: bool,
    /// Queues per shard for auto-created topics (RocketMQ's `defaultTopicQueueNums`, 8).
    pub default_topic_queue_nums: u32,
    /// Segment size: 1 GiB as in RocketMQ; fewer, larger files keep I/O sequential.
    pub segment_bytes: u64,
    /// Records older than this are deleted with their whole segment (RocketMQ's 72 h).
    pub file_reserved_hours: u64,
    /// Disk use above which the oldest segments are deleted (RocketMQ's 75%).
    pub disk_max_used_ratio_percent: u32,
    /// Disk use above which appends are refused; reads go on (RocketMQ's ~90%).
    pub disk_full_ratio_percent: u32,
    /// Largest message body, and largest batch body (RocketMQ's 4 MiB).
    pub max_message_bytes: usize,
    /// Largest frame accepted from a connection (RocketMQ's 16 MiB).
    pub max_frame_bytes: usize,
    /// Recently written log kept in memory per shard for consumers at the head.
    pub tail_cache_bytes: usize,
    /// DMA read cache per shard for catch-up consumers.
    pub read_cache_bytes: usize,
    /// Consume-queue entries each queue keeps in memory once checkpointed (older ones are read from
    /// the queue files).
    pub cq_window_entries: usize,
    /// Key-index entries per sealed index file, and about the most the index keeps in memory per
    /// shard (1 Mi: a 28 MiB file, ~40 MiB of memory).
    pub index_seal_entries: u64,
    /// Clients silent for this long are dropped (RocketMQ's 120 s).
    pub client_expiry_secs: u64,
    /// Re-registration period with the name server (RocketMQ's 30 s).
    pub register_period_secs: u64,
    /// Brokers not re-registered within this time leave the routes (RocketMQ's 120 s).
    pub broker_expiry_secs: u64,
    /// Start even if the log is corrupt before its tail, truncating there (loses data; operator only).
    pub truncate_corrupt_log: bool,
    /// Start even if a config file and its previous version are both damaged: they are set aside
    /// (`<name>.damaged-<ms>`) and the shard starts with an empty table (operator only).
    pub start_with_damaged_config: bool,
    /// Delay of each level for scheduled messages and retries (RocketMQ's messageDelayLevel).
    pub message_delay_level: String,
    /// Longest accepted delay of a timer message (TIMER_DELIVER_MS etc.): RocketMQ's timerMaxDelaySec,
    /// 3 days. Each pending timer costs ~40 bytes of memory, so this bounds how long they accumulate.
    pub timer_max_delay_secs: u64,
    /// Half messages older than this without an END_TRANSACTION are checked back (RocketMQ's 6 s).
    pub transaction_timeout_ms: u64,
    /// How often unresolved half messages are checked (RocketMQ's transactionCheckInterval, 30 s).
    pub transaction_check_interval_ms: u64,
    /// Metrics endpoint (Prometheus text format).
    pub metrics_addr: Option<String>,
    /// A connection silent for this long is closed (RocketMQ's channelIdle, 120 s; clients heartbeat
    /// every 30 s, and a held pull answers within 25 s).
    pub channel_idle_secs: u64,
    /// A frame must arrive whole within this of its first byte (a slow sender cannot hold a
    /// connection's buffers forever; 16 MiB at 1 MiB/s still fits).
    pub frame_timeout_secs: u64,
    /// Requests read from one connection and not yet answered; past it the connection is not read
    /// (TCP back-pressure). RocketMQ's Java client allows 65 535 async sends per client, but 4 096 in
    /// flight on one connection already keeps a shard busy for many group commits.
    pub max_requests_in_flight_per_connection: usize,
    /// Request frames in handling plus answers waiting to be written, per connection; past it the
    /// connection is not read. 64 MiB holds 16 sends of the largest batch.
    pub max_held_bytes_per_connection: usize,
    /// Open connections per shard (both its ports) and on the name server; more are closed at accept
    /// with a log line. An idle connection costs ~8 KiB, so the default bounds idle memory to ~80 MiB.
    pub max_connections_per_shard: usize,
    /// How long a shard runs ready tasks before it polls for network and disk completions again, in
    /// µs (glommio's preempt timer; Seastar's task quota). It bounds how long one large request,
    /// handled in yielding chunks, delays every other connection of the shard.
    pub task_quota_us: u64,
    /// Series of `ringmq_consumer_lag_messages` (one per group, topic and queue) a shard exports;
    /// past it only the queues furthest behind are, and the rest are counted.
    pub max_lag_series_per_shard: usize,
    /// Log every scheduler run that exceeds the task quota by this many ms (0: off; a diagnosis
    /// tool, it costs two syscalls per run).
    pub stall_report_ms: u64,
    /// Shards poll for work instead of sleeping when idle (Seastar's and Redpanda's mode for
    /// dedicated cores): each wake-up saves the sleep/wake round trip through the kernel, and a
    /// shard takes its whole core even when idle. Off by default, for shared machines.
    pub busy_poll: bool,
    /// Run the control plane (name server, registrar, config writer, metrics, blocking pools) on the
    /// cores no shard is pinned to. Off by default: with it on, about 1 start in 40 hung here with a
    /// shard waiting in io_uring for a completion that never came (not yet understood).
    pub isolate_control_plane: bool,
    /// Entries accepted in one list-bearing request (heartbeat groups and subscriptions, lock batch
    /// queues, registration topics); past it the request is refused with a remark.
    pub max_request_list_entries: usize,
    /// Queues a topic may have (read or write), as checked on create and send.
    pub max_queues_per_topic: u32,
    /// RocketMQ ACL 1.0 file (`plain_acl.yml`). When set, every broker request and every name-server
    /// write must be signed by an account it holds (reloaded when it changes); unset = no ACL.
    pub acl_file: Option<PathBuf>,
    /// Access key of the admin account the shards sign their registrations with (default: the
    /// ACL file's first admin account).
    pub acl_broker_account: Option<String>,
    /// TLS on every listener: `disabled`, `permissive` (TLS and plaintext on one port) or
    /// `enforcing` (TLS only), as RocketMQ's `tls.server.mode`.
    pub tls_mode: TlsMode,
    /// Server certificate chain (PEM), needed unless `tls_mode` is `disabled`.
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// When set, TLS clients must present a certificate signed by one of these CAs (PEM).
    pub tls_client_ca: Option<PathBuf>,
    /// This node's id in `cluster` (0: no cluster, a single node).
    pub node_id: u32,
    /// The nodes of a replicated cluster as `id=host:port` of each node's name server; shard i of
    /// every node is one replica set. Empty: a single node, no replication.
    pub cluster: Vec<String>,
    /// `sync`: a send is acknowledged once `in_sync_replicas` replicas hold it durably; `async`: on
    /// the master alone (slaves follow behind).
    pub replication: ReplicationMode,
    /// Replicas, the master included, that must hold a send durably with `replication = "sync"`
    /// (RocketMQ's inSyncReplicas); 0 = a majority of the cluster's nodes, so one node can fail.
    pub in_sync_replicas: usize,
    /// The controller's port (default: the name server's port + 2, as RocketMQ's 9876/9878).
    pub controller_port: Option<u16>,
    /// Follow as an async learner: never in the in-sync set, never elected (a remote site's copy).
    pub learner: bool,
    /// A slave that has not caught up for this long leaves the in-sync set (RocketMQ's
    /// haMaxTimeSlaveNotCatchup, 15 s).
    pub ha_max_time_slave_not_catchup_ms: u64,
    /// RocketMQ's slaveReadEnable: a master whose consumer reads further back than its tail cache
    /// holds suggests (`suggestWhichBrokerId`) that it read from an in-sync slave instead, sparing
    /// the master's disk for appends; a slave sends it back once it has caught up. Off: consumers
    /// are always sent to the master.
    pub slave_read_enable: bool,
    /// Catch-up reads' budget per shard in MiB a second (0: none). Reads of a backlog from disk
    /// already run behind appends and tail reads on the shard's core; this also bounds how much
    /// of the machine a drain takes (TCP, the disk), trading drain rate for the publish latency
    /// beside it (broker/catch_up.rs).
    pub catch_up_read_mib_per_sec: u64,
    /// RocketMQ's enableElectUncleanMaster: when a master is lost and no replica of its in-sync
    /// set is alive, the controller elects the live replica with the most data (never a learner)
    /// instead of leaving the set without a master. Acknowledged messages it lacks are lost; off by
    /// default (the set waits for an in-sync replica to come back).
    pub elect_unclean_master: bool,
}

/// How a replicated cluster acknowledges sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ReplicationMode {
    Sync,
    Async,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            role: Role::All,
            cluster_name: "DefaultCluster".into(),
            broker_name: "ringmq".into(),
            broker_ip: None,
            listen_port: 10911,
            namesrv_port: 9876,
            namesrv_addrs: Vec::new(),
            shards: 0,
            data_dir: PathBuf::from("./data"),
            flush: FlushMode::Sync,
            log_sync: crate::store::io::LogSync::Dsync,
            auto_create_topic: true,
            default_topic_queue_nums: 8,
            segment_bytes: 1 << 30,
            file_reserved_hours: 72,
            disk_max_used_ratio_percent: 75,
            disk_full_ratio_percent: 90,
            max_message_bytes: 4 << 20,
            max_frame_bytes: 16 << 20,
            tail_cache_bytes: 64 << 20,
            read_cache_bytes: 32 << 20,
            cq_window_entries: crate::store::CQ_WINDOW_ENTRIES,
            index_seal_entries: crate::store::index::set::SEAL_ENTRIES,
            client_expiry_secs: 120,
            register_period_secs: 30,
            broker_expiry_secs: 120,
            truncate_corrupt_log: false,
            start_with_damaged_config: false,
            message_delay_level: DEFAULT_DELAY_LEVELS.into(),
            timer_max_delay_secs: 3 * 86_400,
            transaction_timeout_ms: 6_000,
            transaction_check_interval_ms: 30_000,
            metrics_addr: Some("127.0.0.1:5557".into()),
            channel_idle_secs: 120,
            frame_timeout_secs: 30,
            max_requests_in_flight_per_connection: 4096,
            max_held_bytes_per_connection: 64 << 20,
            max_connections_per_shard: 10_000,
            task_quota_us: 500,
            max_lag_series_per_shard: 10_000,
            stall_report_ms: 0,
            busy_poll: false,
            isolate_control_plane: false,
            max_request_list_entries: 10_000,
            max_queues_per_topic: 1024,
            acl_file: None,
            acl_broker_account: None,
            tls_mode: TlsMode::Disabled,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            node_id: 0,
            cluster: Vec::new(),
            replication: ReplicationMode::Sync,
            in_sync_replicas: 0,
            controller_port: None,
            learner: false,
            ha_max_time_slave_not_catchup_ms: 15_000,
            slave_read_enable: false,
            catch_up_read_mib_per_sec: 0,
            elect_unclean_master: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid TOML in {path}: {message}")]
    Toml { path: PathBuf, message: String },
    #[error("invalid value for {key} in {path}: {value:?}")]
    Value { path: PathBuf, key: String, value: String },
}

impl Config {
    /// Loads a file: `.toml` as TOML, anything else as a RocketMQ `broker.conf`.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        if path.extension().is_some_and(|e| e == "toml") {
            toml::from_str(&text).map_err(|e| ConfigError::Toml { path: path.into(), message: e.to_string() })
        } else {
            let mut c = Config::default();
            c.apply_properties(&text, path)?;
            Ok(c)
        }
    }

    /// Applies the keys of a RocketMQ `broker.conf` that map onto ringmq; others are warned about.
    pub fn apply_properties(&mut self, text: &str, path: &Path) -> Result<(), ConfigError> {
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let Some((k, v)) = line.split_once(['=', ':']) else {
                continue;
            };
            let (k, v) = (k.trim(), v.trim());
            let bad = || ConfigError::Value { path: path.into(), key: k.into(), value: v.into() };
            match k {
                "brokerClusterName" => self.cluster_name = v.into(),
                "brokerName" => self.broker_name = v.into(),
                "listenPort" => self.listen_port = v.parse().map_err(|_| bad())?,
                "namesrvAddr" => self.namesrv_addrs = split_addrs(v),
                "storePathRootDir" => self.data_dir = v.into(),
                "flushDiskType" => {
                    self.flush = match v {
                        "SYNC_FLUSH" => FlushMode::Sync,
                        "ASYNC_FLUSH" => FlushMode::Async,
                        _ => return Err(bad()),
                    }
                }
                "autoCreateTopicEnable" => self.auto_create_topic = v.eq_ignore_ascii_case("true"),
                "defaultTopicQueueNums" => self.default_topic_queue_nums = v.parse().map_err(|_| bad())?,
                "fileReservedTime" => self.file_reserved_hours = v.parse().map_err(|_| bad())?,
                "deleteWhen" => {
                    tracing::info!(key = k, "deleteWhen: ringmq checks retention continuously, not once a day")
                }
                "diskMaxUsedSpaceRatio" => self.disk_max_used_ratio_percent = v.parse().map_err(|_| bad())?,
                "maxMessageSize" => self.max_message_bytes = v.parse().map_err(|_| bad())?,
                "messageDelayLevel" => self.message_delay_level = v.into(),
                "timerMaxDelaySec" => self.timer_max_delay_secs = v.parse().map_err(|_| bad())?,
                "serverChannelMaxIdleTimeSeconds" => self.channel_idle_secs = v.parse().map_err(|_| bad())?,
                "brokerIP1" => self.broker_ip = Some(v.parse().map_err(|_| bad())?),
                // RocketMQ reads plain_acl.yml from its conf directory: the broker.conf's own.
                "aclEnable" if v.eq_ignore_ascii_case("true") => {
                    if self.acl_file.is_none() {
                        self.acl_file = Some(path.parent().unwrap_or(Path::new(".")).join("plain_acl.yml"));
                    }
                }
                "aclEnable" => self.acl_file = None,
                "tls.server.mode" => self.tls_mode = TlsMode::parse(v).ok_or_else(bad)?,
                "tls.server.certPath" => self.tls_cert = Some(v.into()),
                "tls.server.keyPath" => self.tls_key = Some(v.into()),
                "tls.server.trustCertPath" => self.tls_client_ca = Some(v.into()),
                "enableControllerMode" => {
                    if !v.eq_ignore_ascii_case("true") {
                        self.cluster.clear();
                    }
                }
                // RocketMQ lists the controllers; ringmq's embed in each node's name server, two
                // ports below (9878 → 9876), and the list's order numbers the nodes 1, 2, 3, ...
                "controllerAddr" => {
                    let mut nodes = Vec::new();
                    for (i, a) in split_addrs(v).iter().enumerate() {
                        let (host, port) = a.rsplit_once(':').ok_or_else(bad)?;
                        let port: u16 = port.parse().map_err(|_| bad())?;
                        nodes.push(format!("{}={host}:{}", i + 1, port.checked_sub(2).ok_or_else(bad)?));
                        self.controller_port.get_or_insert(port);
                    }
                    self.cluster = nodes;
                }
                "nodeId" => self.node_id = v.parse().map_err(|_| bad())?,
                "inSyncReplicas" => self.in_sync_replicas = v.parse().map_err(|_| bad())?,
                "totalReplicas" => {
                    tracing::info!(key = k, "totalReplicas: ringmq replicates every shard on every node of --cluster")
                }
                "brokerRole" => match v {
                    "SYNC_MASTER" => self.replication = ReplicationMode::Sync,
                    "ASYNC_MASTER" => self.replication = ReplicationMode::Async,
                    "SLAVE" => tracing::info!(key = k, "brokerRole SLAVE: roles are elected per shard, not configured"),
                    _ => return Err(bad()),
                },
                "asyncLearner" => self.learner = v.eq_ignore_ascii_case("true"),
                "haMaxTimeSlaveNotCatchup" => self.ha_max_time_slave_not_catchup_ms = v.parse().map_err(|_| bad())?,
                "slaveReadEnable" => self.slave_read_enable = v.eq_ignore_ascii_case("true"),
                "enableElectUncleanMaster" => self.elect_unclean_master = v.eq_ignore_ascii_case("true"),
                _ => {
                    tracing::warn!(key = k, file = %path.display(), "broker.conf key not used by ringmq")
                }
            }
        }
        Ok(())
    }

    /// Shard count after resolving 0 to the number of online cores.
    pub fn shard_count(&self) -> usize {
        if self.shards > 0 {
            return self.shards;
        }
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    }

    /// Name servers the shards register with: the configured ones, else every node's of the
    /// cluster, else the embedded one.
    pub fn namesrv_list(&self) -> Vec<String> {
        if self.namesrv_addrs.is_empty() && !self.cluster.is_empty() {
            return self.cluster.iter().filter_map(|e| e.split_once('=').map(|(_, a)| a.to_string())).collect();
        }
        if self.namesrv_addrs.is_empty() {
            vec![format!("127.0.0.1:{}", self.namesrv_port)]
        } else {
            self.namesrv_addrs.clone()
        }
    }

    /// The listeners' TLS files, when a certificate and key are configured.
    pub fn tls_files(&self) -> Option<TlsFiles> {
        Some(TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            client_ca: self.tls_client_ca.clone(),
        })
    }

    /// The port of shard `i`.
    pub fn shard_port(&self, i: usize) -> u16 {
        self.listen_port + 4 * i as u16
    }
}

pub use crate::protocol::split_addrs;

/// RocketMQ's default `messageDelayLevel`.
pub const DEFAULT_DELAY_LEVELS: &str = "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_conf_keys_map() {
        let mut c = Config::default();
        let text = "# comment\nbrokerClusterName = C1\nbrokerName=b\nlistenPort=20911\nnamesrvAddr=a:1;b:2\n\
                    flushDiskType=ASYNC_FLUSH\nautoCreateTopicEnable=false\nmaxMessageSize=1024\nbrokerIP1=10.0.0.7\nfoo=bar\n";
        c.apply_properties(text, Path::new("broker.conf")).unwrap();
        assert_eq!(c.cluster_name, "C1");
        assert_eq!(c.listen_port, 20911);
        assert_eq!(c.namesrv_addrs, vec!["a:1", "b:2"]);
        assert_eq!(c.flush, FlushMode::Async);
        assert!(!c.auto_create_topic);
        assert_eq!(c.max_message_bytes, 1024);
        assert_eq!(c.broker_ip, Some("10.0.0.7".parse().unwrap()));
        assert!(c.apply_properties("listenPort=x", Path::new("b")).is_err());
        let mut c = Config::default();
        c.apply_properties("aclEnable=true\ntls.server.mode=enforcing\n", Path::new("/etc/rocketmq/broker.conf"))
            .unwrap();
        assert_eq!(c.acl_file, Some(PathBuf::from("/etc/rocketmq/plain_acl.yml")));
        assert_eq!(c.tls_mode, TlsMode::Enforcing);
        assert!(c.apply_properties("tls.server.mode=strict", Path::new("b")).is_err());
        let mut c = Config::default();
        let text = "enableControllerMode=true\nnodeId=2\ncontrollerAddr=h1:9878;h2:9878;h3:9878\n\
                    brokerRole=ASYNC_MASTER\ninSyncReplicas=3\nasyncLearner=true\n\
                    haMaxTimeSlaveNotCatchup=5000\nslaveReadEnable=true\nenableElectUncleanMaster=true\n";
        c.apply_properties(text, Path::new("broker.conf")).unwrap();
        assert_eq!(c.node_id, 2);
        assert_eq!(c.cluster, vec!["1=h1:9876", "2=h2:9876", "3=h3:9876"]);
        assert_eq!(c.controller_port, Some(9878));
        assert_eq!((c.replication, c.in_sync_replicas), (ReplicationMode::Async, 3));
        assert!(c.learner && c.slave_read_enable && c.elect_unclean_master);
        assert_eq!(c.ha_max_time_slave_not_catchup_ms, 5000);
    }

    #[test]
    fn toml_round_trip_and_unknown_keys_rejected() {
        let c = Config::default();
        let text = toml::to_string(&c).unwrap();
        assert_eq!(toml::from_str::<Config>(&text).unwrap(), c);
        assert!(toml::from_str::<Config>("nonsense_key = 1").is_err());
        let partial: Config = toml::from_str("flush = \"async\"\nshards = 2").unwrap();
        assert_eq!((partial.flush, partial.shards), (FlushMode::Async, 2));
    }
}

#[cfg(test)]
mod doc_tests {
    /// docs/OPERATIONS.md lists exactly the settings of `Config`.
    #[test]
    fn operations_doc_lists_every_setting() {
        let doc = include_str!("../docs/OPERATIONS.md");
        let settings = doc.split("## Settings").nth(1).and_then(|s| s.split("\n## ").next()).unwrap_or("");
        let documented: std::collections::BTreeSet<String> = settings
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split_once('`').map(|(k, _)| k.to_string()))
            .collect();
        let value =
            serde_json::to_value(super::Config { broker_ip: Some([127, 0, 0, 1].into()), ..Default::default() })
                .unwrap();
        let fields: std::collections::BTreeSet<String> = value.as_object().unwrap().keys().cloned().collect();
        assert_eq!(documented, fields, "docs/OPERATIONS.md and Config disagree");
    }
}
