//! Prometheus metrics, off the data path.
//!
//! Each shard counts into plain, shard-local `ShardMetrics` (no atomics, no locks on the data path)
//! and once a second publishes a `Snapshot` (plain data) to the control plane. A control-plane thread
//! serves `GET /metrics` on `metrics_addr`: it sums the shards' snapshots into a fresh
//! `prometheus-client` registry at scrape time. Metric names are listed in `docs/OPERATIONS.md`.

use hdrhistogram::Histogram;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

type Labels = Vec<(String, String)>;

/// Messages and bytes in and out of one topic.
#[derive(Debug, Clone, Copy, Default)]
pub struct TopicFlow {
    pub msgs_in: u64,
    pub bytes_in: u64,
    pub msgs_out: u64,
    pub bytes_out: u64,
}

fn new_hist() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 60_000_000, 2).expect("static histogram bounds are valid")
}

/// What one shard reports.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub topics: HashMap<String, TopicFlow>,
    /// Request code → latency histogram in µs (its length is the request count).
    pub requests: HashMap<i32, Histogram<u64>>,
    /// Commit-log write + fdatasync latency in µs.
    pub flush_us: Option<Histogram<u64>>,
    pub log: crate::store::log::LogStats,
    pub long_poll_waiters: u64,
    pub connections: u64,
    pub disk_full: bool,
    /// (group, topic, queue) → messages behind.
    pub lag: Vec<(String, String, i32, u64)>,
    /// (group, topic, queue) series left out of `lag` past `max_lag_series_per_shard`.
    pub lag_series_dropped: u64,
    pub thread_id: i32,
    /// Timer messages waiting for their delivery time.
    pub timers_pending: u64,
    /// Delay-level (scheduled) messages stored and not yet delivered, over all levels.
    pub delay_pending: u64,
    pub timers_delivered: u64,
    /// Half messages dropped after the check limit.
    pub transactions_discarded: u64,
    /// Transaction check-back rounds completed.
    pub transaction_check_rounds: u64,
    /// Stored records refused on a read path because they failed verification.
    pub damaged_reads: u64,
    /// Consume-queue entries held in memory (the windows and what is not yet checkpointed).
    pub cq_entries_in_memory: u64,
    /// File reads of consume-queue entries behind the in-memory windows.
    pub cq_cold_reads: u64,
    /// Key-index entries held in memory (the tier not yet sealed into a file).
    pub index_entries_in_memory: u64,
    /// Sealed key-index files (read on demand).
    pub index_sealed_files: u64,
    /// Sealed key-index files found damaged (dropped; the next start rebuilds the index).
    pub index_files_damaged: u64,
    /// Parked (delayed or timer) messages kept undelivered because they are damaged.
    pub damaged_parked: u64,
    /// Replication: role (0 single, 1 master, 2 slave), master epoch, in-sync replicas (the master
    /// included), the slowest slave's lag in bytes, times this replica became master, appends
    /// refused because the master's lease had expired.
    pub replica_role: u64,
    pub replica_epoch: u64,
    pub in_sync_replicas: u64,
    pub replication_lag_bytes: u64,
    /// How long the slowest connected slave has been behind without catching up.
    pub replication_lag_seconds: f64,
    pub elections: u64,
    pub fenced: u64,
    /// Connections closed at accept past the shard's connection limit.
    pub connections_refused: u64,
    /// Requests refused by the ACL.
    pub acl_denied: u64,
}

/// Shard-local counters (lives on its shard, `!Send`).
#[derive(Default)]
pub struct ShardMetrics {
    pub inner: RefCell<Snapshot>,
    /// Messages in and out sampled once a second (RocketMQ's `putTps` / `getTransferedTps`).
    pub rates: RefCell<Rates>,
    /// When the shard started serving (ms since the epoch; `bootTimestamp`).
    pub boot_ms: std::cell::Cell<i64>,
}

/// Totals of messages stored and delivered, sampled once a second; the last
/// [`Rates::KEEP`] samples are kept (ten minutes: RocketMQ reports 10 s, 1 min and 10 min rates).
#[derive(Debug, Default)]
pub struct Rates {
    samples: std::collections::VecDeque<(std::time::Instant, u64, u64)>,
}

impl Rates {
    pub const KEEP: usize = 601;

    pub fn sample(&mut self, at: std::time::Instant, msgs_in: u64, msgs_out: u64) {
        if self.samples.len() == Self::KEEP {
            self.samples.pop_front();
        }
        self.samples.push_back((at, msgs_in, msgs_out));
    }

    /// Messages per second in and out over the last `window` (or as much of it as was sampled).
    pub fn per_sec(&self, window: std::time::Duration) -> (f64, f64) {
        let Some(&(t1, in1, out1)) = self.samples.back() else { return (0.0, 0.0) };
        let first = self.samples.iter().find(|(t, ..)| t1.duration_since(*t) <= window);
        match first {
            Some(&(t0, in0, out0)) if t1 > t0 => {
                let secs = t1.duration_since(t0).as_secs_f64();
                ((in1 - in0) as f64 / secs, (out1 - out0) as f64 / secs)
            }
            _ => (0.0, 0.0),
        }
    }
}

impl ShardMetrics {
    /// Counters of a shard that starts serving now.
    pub fn started() -> ShardMetrics {
        let m = ShardMetrics::default();
        m.boot_ms.set(crate::store::now_ms());
        m
    }

    /// Messages stored and delivered since start, over all topics.
    pub fn totals(&self) -> (u64, u64) {
        let s = self.inner.borrow();
        s.topics.values().fold((0, 0), |(i, o), f| (i + f.msgs_in, o + f.msgs_out))
    }

    pub fn request(&self, code: i32, us: u64) {
        let mut s = self.inner.borrow_mut();
        let _ = s.requests.entry(code).or_insert_with(new_hist).record(us.max(1));
    }

    pub fn flow(&self, topic: &str, msgs_in: u64, bytes_in: u64, msgs_out: u64, bytes_out: u64) {
        let mut s = self.inner.borrow_mut();
        if !s.topics.contains_key(topic) {
            s.topics.insert(topic.to_string(), TopicFlow::default());
        }
        if let Some(f) = s.topics.get_mut(topic) {
            f.msgs_in += msgs_in;
            f.bytes_in += bytes_in;
            f.msgs_out += msgs_out;
            f.bytes_out += bytes_out;
        }
    }

    pub fn damaged_parked(&self, n: u64) {
        self.inner.borrow_mut().damaged_parked += n;
    }

    pub fn timers_delivered(&self, n: u64) {
        self.inner.borrow_mut().timers_delivered += n;
    }

    pub fn flush(&self, us: u64) {
        let mut s = self.inner.borrow_mut();
        let _ = s.flush_us.get_or_insert_with(new_hist).record(us.max(1));
    }
}

/// Latest snapshot of every shard.
#[derive(Default)]
pub struct MetricsHub {
    shards: Mutex<Vec<Option<Snapshot>>>,
}

impl MetricsHub {
    pub fn new(shards: usize) -> MetricsHub {
        MetricsHub { shards: Mutex::new(vec![None; shards]) }
    }

    pub fn publish(&self, shard: usize, snap: Snapshot) {
        if let Ok(mut v) = self.shards.lock()
            && let Some(slot) = v.get_mut(shard)
        {
            *slot = Some(snap);
        }
    }

    fn snapshots(&self) -> Vec<(usize, Snapshot)> {
        self.shards
            .lock()
            .map(|v| v.iter().enumerate().filter_map(|(i, s)| s.clone().map(|s| (i, s))).collect())
            .unwrap_or_default()
    }
}

fn labels(pairs: &[(&str, String)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

fn counter_family(reg: &mut Registry, name: &str, help: &str) -> Family<Labels, Counter> {
    let f = Family::<Labels, Counter>::default();
    reg.register(name, help, f.clone());
    f
}

fn gauge_family(reg: &mut Registry, name: &str, help: &str) -> Family<Labels, Gauge> {
    let f = Family::<Labels, Gauge>::default();
    reg.register(name, help, f.clone());
    f
}

fn float_gauge_family(reg: &mut Registry, name: &str, help: &str) -> Family<Labels, Gauge<f64, AtomicU64>> {
    let f = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    reg.register(name, help, f.clone());
    f
}

fn thread_cpu_seconds(tid: i32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
}

/// Renders the Prometheus text exposition of every shard's latest snapshot.
pub fn render(hub: &MetricsHub, data_dir: &std::path::Path) -> String {
    let mut reg = Registry::with_prefix("ringmq");
    let msgs_in = counter_family(&mut reg, "messages_in", "Messages stored, by topic");
    let bytes_in = counter_family(&mut reg, "bytes_in", "Message body bytes stored, by topic");
    let msgs_out = counter_family(&mut reg, "messages_out", "Messages returned to consumers, by topic");
    let bytes_out = counter_family(&mut reg, "bytes_out", "Record bytes returned to consumers, by topic");
    let requests = counter_family(&mut reg, "requests", "Requests handled, by request code");
    let latency = gauge_family(
        &mut reg,
        "request_latency_us",
        "Request latency quantiles in microseconds, by code (worst shard)",
    );
    let flush = gauge_family(
        &mut reg,
        "commitlog_flush_latency_us",
        "Commit-log write + fdatasync latency quantiles (worst shard)",
    );
    let log = counter_family(
        &mut reg,
        "commitlog",
        "Commit-log counters: appends, flushes, synced bytes, segment waits, cache hits, disk reads",
    );
    let waiters = gauge_family(&mut reg, "long_poll_waiters", "Pulls held by long polling");
    let timers = gauge_family(&mut reg, "timers_pending", "Timer messages waiting for their delivery time");
    let delayed = gauge_family(&mut reg, "delay_pending", "Delay-level messages stored and not yet delivered");
    let timers_out = counter_family(&mut reg, "timers_delivered", "Timer messages moved to their real topic");
    let tx_discarded =
        counter_family(&mut reg, "transactions_discarded", "Half messages discarded after the check limit");
    let tx_rounds = counter_family(&mut reg, "transaction_check_rounds", "Transaction check-back rounds completed");
    let damaged =
        counter_family(&mut reg, "damaged_records", "Stored records refused because they failed verification");
    let damaged_parked =
        counter_family(&mut reg, "damaged_parked", "Delayed or timer messages kept undelivered because damaged");
    let cq_mem = gauge_family(&mut reg, "cq_entries_in_memory", "Consume-queue entries held in memory (24 bytes each)");
    let cq_cold = counter_family(&mut reg, "cq_cold_reads", "Consume-queue file reads for entries behind the window");
    let idx_mem =
        gauge_family(&mut reg, "index_entries_in_memory", "Key-index entries held in memory (~40 bytes each)");
    let idx_sealed = gauge_family(&mut reg, "index_sealed_files", "Sealed key-index files, read on demand");
    let idx_damaged =
        counter_family(&mut reg, "index_files_damaged", "Sealed key-index files found damaged and dropped");
    let conns_refused = counter_family(&mut reg, "connections_refused", "Connections closed at the shard's limit");
    let role = gauge_family(&mut reg, "replica_role", "Replica role of the shard: 0 single node, 1 master, 2 slave");
    let epoch = gauge_family(&mut reg, "replica_epoch", "Master epoch the shard's replica set is in");
    let isr = gauge_family(&mut reg, "replication_in_sync_replicas", "Replicas in the in-sync set (master included)");
    let rlag = gauge_family(&mut reg, "replication_lag_bytes", "Bytes the slowest connected slave is behind");
    let rlag_secs = float_gauge_family(
        &mut reg,
        "replication_lag_seconds",
        "Seconds the slowest connected slave has been behind without catching up",
    );
    let elections = counter_family(&mut reg, "replication_elections", "Times this replica became its set's master");
    let fenced = counter_family(&mut reg, "replication_fenced", "Appends refused because the master's lease expired");
    let acl_denied = counter_family(&mut reg, "acl_denied", "Requests refused by the ACL (NO_PERMISSION)");
    let conns = gauge_family(&mut reg, "connections", "Open client connections");
    let full = gauge_family(&mut reg, "disk_full", "1 while appends are refused for lack of disk space, by shard");
    let lag = gauge_family(
        &mut reg,
        "consumer_lag_messages",
        "Messages behind the committed offset, by group, topic and queue",
    );
    let lag_dropped = gauge_family(
        &mut reg,
        "consumer_lag_series_dropped",
        "Lag series left out past max_lag_series_per_shard (the least behind), by shard",
    );
    let cpu = gauge_family(&mut reg, "shard_cpu_seconds", "CPU seconds used by each shard's thread");
    let disk = gauge_family(&mut reg, "disk_bytes", "Size and free space of the data directory's file system");
    for (shard, s) in hub.snapshots() {
        let sh = shard.to_string();
        for (t, f) in &s.topics {
            let l = labels(&[("topic", t.clone())]);
            msgs_in.get_or_create(&l).inc_by(f.msgs_in);
            bytes_in.get_or_create(&l).inc_by(f.bytes_in);
            msgs_out.get_or_create(&l).inc_by(f.msgs_out);
            bytes_out.get_or_create(&l).inc_by(f.bytes_out);
        }
        for (code, h) in &s.requests {
            requests.get_or_create(&labels(&[("code", code.to_string())])).inc_by(h.len());
            for q in [0.5, 0.99, 0.999] {
                let g = latency.get_or_create(&labels(&[("code", code.to_string()), ("quantile", q.to_string())]));
                g.set(g.get().max(h.value_at_quantile(q) as i64));
            }
        }
        if let Some(h) = &s.flush_us {
            for q in [0.5, 0.99, 0.999] {
                let g = flush.get_or_create(&labels(&[("quantile", q.to_string())]));
                g.set(g.get().max(h.value_at_quantile(q) as i64));
            }
        }
        let st = &s.log;
        for (k, v) in [
            ("appends", st.appends),
            ("flushes", st.flushes),
            ("synced_bytes", st.synced_bytes),
            ("segment_waits", st.segment_waits),
            ("tail_cache_hits", st.tail_hits),
            ("read_cache_hits", st.read_cache_hits),
            ("disk_reads", st.disk_reads),
            ("append_chunks_reused", st.chunks_reused),
        ] {
            log.get_or_create(&labels(&[("counter", k.to_string())])).inc_by(v);
        }
        waiters.get_or_create(&labels(&[("shard", sh.clone())])).set(s.long_poll_waiters as i64);
        timers.get_or_create(&labels(&[("shard", sh.clone())])).set(s.timers_pending as i64);
        delayed.get_or_create(&labels(&[("shard", sh.clone())])).set(s.delay_pending as i64);
        timers_out.get_or_create(&labels(&[("shard", sh.clone())])).inc_by(s.timers_delivered);
        tx_discarded.get_or_create(&labels(&[("shard", sh.clone())])).inc_by(s.transactions_discarded);
        tx_rounds.get_or_create(&labels(&[("shard", sh.clone())])).inc_by(s.transaction_check_rounds);
        conns.get_or_create(&labels(&[("shard", sh.clone())])).set(s.connections as i64);
        damaged.get_or_create(&labels(&[("shard", sh.clone())])).inc_by(s.damaged_reads);
        damaged_parked.get_or_create(&labels(&[("shard", sh.clone())])).inc_by(s.damaged_parked);
        cq_mem.get_or_create(&labels(&[("shard", sh.clone())])).set(s.cq_entries_in_memory as i64);
        cq_cold.get_or_create(&labels(&[("shard", sh.clone())])).inc_by(s.cq_cold_reads);
        idx_mem.get_or_create(&labels(&[("shard", sh.clone())])).set(s.index_entries_in_memory as i64);
        idx_sealed.get_or_create(&labels(&[("shard", sh.clone())])).set(s.index_sealed_files as i64);
        idx_damaged.get_or_create(&labels(&[("shard", sh.clone())])).inc_by(s.index_files_damaged);
        conns_refused.get_or_create(&labels(&[("shard", sh.clone())])).inc_by(s.connections_refused);
        role.get_or_create(&labels(&[("shard", sh.clone())])).set(s.replica_role as i64);
        epoch.get_or_create(&labels(&[("shard", sh.clone())])).set(s.replica_epoch as i64);
        isr.get_or_create(&labels(&[("shard", sh.clone())])).set(s.in_sync_replicas as i64);
        rlag.get_or_create(&labels(&[("shard", sh.clone())])).set(s.replication_lag_bytes as i64);
        rlag_secs.get_or_create(&labels(&[("shard", sh.clone())])).set(s.replication_lag_seconds);
        elections.get_or_create(&labels(&[("shard", sh.clone())])).inc_by(s.elections);
        fenced.get_or_create(&labels(&[("shard", sh.clone())])).inc_by(s.fenced);
        acl_denied.get_or_create(&labels(&[("shard", sh.clone())])).inc_by(s.acl_denied);
        full.get_or_create(&labels(&[("shard", sh.clone())])).set(s.disk_full as i64);
        for (g, t, q, n) in &s.lag {
            lag.get_or_create(&labels(&[("group", g.clone()), ("topic", t.clone()), ("queue", format!("{sh}:{q}"))]))
                .set(*n as i64);
        }
        lag_dropped.get_or_create(&labels(&[("shard", sh.clone())])).set(s.lag_series_dropped as i64);
        if let Some(secs) = thread_cpu_seconds(s.thread_id) {
            cpu.get_or_create(&labels(&[("shard", sh)])).set(secs as i64);
        }
    }
    if let Ok(u) = crate::store::DiskUsage::measure(data_dir) {
        disk.get_or_create(&labels(&[("kind", "total".into())])).set(u.total_bytes as i64);
        disk.get_or_create(&labels(&[("kind", "free".into())])).set(u.available_bytes as i64);
    }
    let mut out = String::new();
    let _ = encode(&mut out, &reg);
    out
}

/// Serves `GET /metrics` from the control plane's hub.
/// Starts the metrics endpoint; returns the address bound (the port differs from `addr`'s when it is 0).
pub fn serve_control(
    addr: &str,
    hub: Arc<MetricsHub>,
    data_dir: std::path::PathBuf,
) -> std::io::Result<std::net::SocketAddr> {
    serve_with(addr, move |dir| render(&hub, dir), data_dir)
}

/// Serves `GET /metrics` on `addr` until the process ends (a control-plane thread).
fn serve_with(
    addr: &str,
    render_fn: impl Fn(&std::path::Path) -> String + Send + 'static,
    data_dir: std::path::PathBuf,
) -> std::io::Result<std::net::SocketAddr> {
    let listener = std::net::TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new().name("ringmq-metrics".into()).spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut first = String::new();
            let _ = reader.read_line(&mut first);
            let (status, body) = if first.starts_with("GET /metrics") {
                ("200 OK", render_fn(&data_dir))
            } else {
                ("404 Not Found", "try /metrics\n".to_string())
            };
            let mut w = &stream;
            let _ = write!(w, "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        }
    })?;
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn rates_over_windows_and_bounded_history() {
        let mut r = Rates::default();
        assert_eq!(r.per_sec(Duration::from_secs(10)), (0.0, 0.0));
        let t0 = Instant::now();
        for s in 0..700u64 {
            r.sample(t0 + Duration::from_secs(s), s * 100, s * 10);
        }
        assert_eq!(r.samples.len(), Rates::KEEP, "history is bounded");
        let (i, o) = r.per_sec(Duration::from_secs(10));
        assert!((i - 100.0).abs() < 1e-9 && (o - 10.0).abs() < 1e-9, "{i} {o}");
        let (i, _) = r.per_sec(Duration::from_secs(6000));
        assert!((i - 100.0).abs() < 1e-9, "a longer window than kept uses what is kept: {i}");
    }
}
