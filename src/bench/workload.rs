//! What the load generator (`generator.rs`) and the run that drives it (`load.rs`) share: the
//! workload, the benchmark message (send and due time in its first 16 bytes) and the measurement
//! state every producer and consumer records into.

use crate::client::Message;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Workload, in the shape of an OpenMessaging Benchmark workload file.
#[derive(Debug, Clone, Serialize, serde::Deserialize, clap::Args)]
#[serde(default)]
pub struct Workload {
    #[arg(long, default_value = "127.0.0.1:9876")]
    pub namesrv: String,
    #[arg(long, default_value_t = 1)]
    pub topics: usize,
    /// Queues per broker (shard) for each topic
    #[arg(long, default_value_t = 16)]
    pub queues: u32,
    #[arg(long, default_value_t = 1024)]
    pub message_size: usize,
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// Messages per second over all producers; 0 = as fast as possible
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Messages per send request (1 = no batching)
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Measured seconds
    #[arg(long, default_value_t = 30)]
    pub duration: u64,
    /// Seconds before measuring
    #[arg(long, default_value_t = 5)]
    pub warmup: u64,
    /// Requests in flight per producer when running flat out
    #[arg(long, default_value_t = 64)]
    pub window: usize,
    /// Seconds between periodic reports
    #[arg(long, default_value_t = 10)]
    pub report_every: u64,
    /// Send timer messages due this many ms after their send time (TIMER_DELIVER_MS); end-to-end
    /// latency is then measured from the due time (lateness), and early deliveries are counted
    #[arg(long, default_value_t = 0)]
    pub deliver_after_ms: u64,
    /// Messages to accumulate (flat out, in batches of 64) before the measured run; the run's second
    /// half then adds a new consumer group draining them from the first offset, and the report
    /// gives the drain rate and the publish latency without and with it
    #[arg(long, default_value_t = 0)]
    pub backlog: u64,
    /// TLS and ACL signing of the generator's connections
    #[command(flatten)]
    pub security: crate::client::SecurityArgs,
}

impl Default for Workload {
    fn default() -> Workload {
        Workload {
            namesrv: "127.0.0.1:9876".into(),
            topics: 1,
            queues: 16,
            message_size: 1024,
            producers: 1,
            consumers: 1,
            rate: 0,
            batch: 1,
            duration: 30,
            warmup: 5,
            window: 64,
            report_every: 10,
            deliver_after_ms: 0,
            backlog: 0,
            security: Default::default(),
        }
    }
}

pub(super) struct Hists {
    pub(super) publish: Histogram<u64>,
    pub(super) delay: Histogram<u64>,
    pub(super) e2e: Histogram<u64>,
}

impl Hists {
    pub(super) fn new() -> Hists {
        let h = || Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("static histogram bounds are valid");
        Hists { publish: h(), delay: h(), e2e: h() }
    }
}

pub(super) struct Shared {
    pub(super) published: AtomicU64,
    pub(super) consumed: AtomicU64,
    pub(super) errors: AtomicU64,
    pub(super) early: AtomicU64,
    pub(super) broker_pid: Option<u32>,
    pub(super) measuring: AtomicBool,
    pub(super) period: Mutex<Hists>,
    pub(super) total: Mutex<Hists>,
    /// Since the start of the current phase of a `--backlog` run (before / during the drain).
    pub(super) phase: Mutex<Hists>,
}

impl Shared {
    pub(super) fn record(&self, pick: impl Fn(&mut Hists) -> &mut Histogram<u64>, us: u64) {
        if !self.measuring.load(Ordering::Relaxed) {
            return;
        }
        for m in [&self.period, &self.total, &self.phase] {
            if let Ok(mut h) = m.lock() {
                let _ = pick(&mut h).record(us.max(1));
            }
        }
    }
}

pub(super) fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// A benchmark message: 8 bytes of send time and 8 of due time (µs since the epoch; 0 = no timer),
/// then padding; with a due time it carries TIMER_DELIVER_MS.
/// Bytes of random payload each generator thread draws message bodies from: bodies are random
/// (as OpenMessaging Benchmark's), without paying for a random number per byte per message.
const RANDOM_POOL_BYTES: usize = 1 << 20;

/// Appends random bytes to `body` until it is `size` long: a slice of this thread's random pool at a
/// random offset (repeated for bodies larger than the pool).
fn random_fill(body: &mut Vec<u8>, size: usize) {
    thread_local! {
        static POOL: Vec<u8> = (0..RANDOM_POOL_BYTES).map(|_| rand::random::<u8>()).collect();
    }
    POOL.with(|pool| {
        while body.len() < size {
            let from = rand::random::<u32>() as usize % pool.len();
            let n = (size - body.len()).min(pool.len() - from);
            body.extend_from_slice(&pool[from..from + n]);
        }
    });
}

pub(super) fn bench_message(topic: &str, size: usize, deliver_after_ms: u64) -> Message {
    let sent = now_us();
    let due_ms = if deliver_after_ms > 0 { sent.div_ceil(1000) + deliver_after_ms } else { 0 };
    let mut body = Vec::with_capacity(size.max(16));
    body.extend_from_slice(&sent.to_be_bytes());
    body.extend_from_slice(&(due_ms * 1000).to_be_bytes());
    random_fill(&mut body, size.max(16));
    let m = Message::new(topic, body);
    if due_ms > 0 { m.with_property("TIMER_DELIVER_MS", &due_ms.to_string()) } else { m }
}

/// Records a consumed batch: end-to-end latency from the send time, or with timer messages from the due
/// time (consumptions before it are counted as early).
pub(super) fn record_consumed(sh: &Shared, msgs: &[crate::protocol::message::StoredMessage]) {
    let now = now_us();
    for m in msgs.iter().filter(|m| m.body.len() >= 16) {
        let sent = u64::from_be_bytes(m.body[..8].try_into().unwrap_or([0; 8]));
        let due = u64::from_be_bytes(m.body[8..16].try_into().unwrap_or([0; 8]));
        if due > 0 && now < due {
            sh.early.fetch_add(1, Ordering::Relaxed);
        }
        sh.record(|h| &mut h.e2e, now.saturating_sub(if due > 0 { due } else { sent }));
    }
    sh.consumed.fetch_add(msgs.len() as u64, Ordering::Relaxed);
}

/// Latency percentiles of one histogram, in microseconds.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Percentiles {
    pub p50_us: u64,
    pub p75_us: u64,
    pub p95_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub p9999_us: u64,
    pub max_us: u64,
}

impl Percentiles {
    pub(super) fn of(h: &Histogram<u64>) -> Percentiles {
        let q = |v| h.value_at_quantile(v);
        Percentiles {
            p50_us: q(0.5),
            p75_us: q(0.75),
            p95_us: q(0.95),
            p99_us: q(0.99),
            p999_us: q(0.999),
            p9999_us: q(0.9999),
            max_us: h.max(),
        }
    }
}
