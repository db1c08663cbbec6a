//! `ringmq bench`: OpenMessaging-Benchmark-style load against any RocketMQ-protocol broker.
//!
//! Producers send at a fixed rate (or as fast as possible with a bounded window of in-flight
//! requests), consumers pull with long polling; both run on glommio executors (`generator.rs`). Each message body carries its send time, so the
//! consumer side measures end-to-end latency. Publish-delay latency is actual minus intended send
//! time, which makes coordinated omission visible. Every period and for the whole run: rates,
//! backlog, and p50…max of publish, publish-delay and end-to-end latency from HDR histograms; broker
//! CPU (from /proc when `--broker-pid` is given) and CPU µs per message.

use super::workload::{Hists, Shared};
pub use super::workload::{Percentiles, Workload};
use crate::client::Producer;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One report line (a period or the whole run).
#[derive(Debug, Clone, Serialize, Default)]
pub struct Period {
    pub seconds: f64,
    pub publish_rate: f64,
    pub consume_rate: f64,
    pub backlog: i64,
    pub publish_errors: u64,
    pub publish_latency: Percentiles,
    pub publish_delay: Percentiles,
    /// From send time, or with timer messages from the due time.
    pub end_to_end: Percentiles,
    /// Timer messages consumed before their due time (must stay 0).
    pub early_deliveries: u64,
    /// Resident memory of the broker (from /proc, with `--broker-pid`) at the end of the period.
    pub broker_rss_mib: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Report {
    pub workload: Option<Workload>,
    pub periods: Vec<Period>,
    pub total: Period,
    pub broker_cpu_seconds: Option<f64>,
    pub bench_cpu_seconds: f64,
    pub broker_cpu_us_per_message: Option<f64>,
    /// With `--backlog`: the drain of the backlog during the second half of the run.
    pub drain: Option<super::drain::DrainReport>,
}

/// CPU seconds (user + system) of a process, from /proc/<pid>/stat.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Resident set size of a process in MiB, from /proc/<pid>/status.
pub fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn snapshot(shared: &Shared, secs: f64, published: u64, consumed: u64, reset: bool) -> Period {
    let h = if reset { &shared.period } else { &shared.total };
    let mut g = match h.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    let p = Period {
        seconds: secs,
        publish_rate: published as f64 / secs.max(1e-9),
        consume_rate: consumed as f64 / secs.max(1e-9),
        backlog: shared.published.load(Ordering::Relaxed) as i64 - shared.consumed.load(Ordering::Relaxed) as i64,
        publish_errors: shared.errors.load(Ordering::Relaxed),
        publish_latency: Percentiles::of(&g.publish),
        publish_delay: Percentiles::of(&g.delay),
        end_to_end: Percentiles::of(&g.e2e),
        early_deliveries: shared.early.load(Ordering::Relaxed),
        broker_rss_mib: shared.broker_pid.and_then(rss_mib),
    };
    if reset {
        *g = Hists::new();
    }
    p
}

/// One line of a report.
pub fn describe(p: &Period) -> String {
    format!(
        "pub {:>9.0} msg/s  cons {:>9.0} msg/s  backlog {:>7}  pub lat p50 {:>6} p99 {:>7} p99.9 {:>7} max {:>8} us | delay p99 {:>7} | e2e p50 {:>6} p99 {:>7} p99.9 {:>7} us",
        p.publish_rate,
        p.consume_rate,
        p.backlog,
        p.publish_latency.p50_us,
        p.publish_latency.p99_us,
        p.publish_latency.p999_us,
        p.publish_latency.max_us,
        p.publish_delay.p99_us,
        p.end_to_end.p50_us,
        p.end_to_end.p99_us,
        p.end_to_end.p999_us
    ) + &p.broker_rss_mib.map(|m| format!(" | rss {m:.0} MiB")).unwrap_or_default()
        + &(if p.early_deliveries > 0 { format!(" | EARLY {}", p.early_deliveries) } else { String::new() })
}

/// A refused credential or a TLS handshake the server's certificate fails will not get better by
/// waiting: those end the run at once; anything else (a broker still starting) is retried.
fn cannot_recover(e: &crate::client::ClientError) -> bool {
    use crate::client::ClientError;
    match e {
        ClientError::Refused { code, .. } => *code == crate::protocol::codes::response::NO_PERMISSION,
        ClientError::Connect { source, .. } => source.kind() == std::io::ErrorKind::InvalidData,
        _ => false,
    }
}

/// Runs a workload; prints a line every period and returns the report.
pub fn run(w: &Workload, broker_pid: Option<u32>) -> Result<Report, String> {
    if w.deliver_after_ms > 0 && w.batch > 1 {
        return Err("--deliver-after-ms needs --batch 1: batches cannot carry a delivery time".into());
    }
    let tag = rand::random::<u32>();
    let topics: Vec<String> = (0..w.topics).map(|i| format!("bench-{tag:08x}-{i}")).collect();
    let security = w.security.resolve()?;
    let setup = Producer::with_security(&w.namesrv, "ringmq-bench-setup", security);
    for t in &topics {
        // Brokers may still be starting (pre-writing their first segment): retry for a while.
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Err(e) = setup.create_topic(t, w.queues) {
            if Instant::now() >= deadline || cannot_recover(&e) {
                return Err(format!("cannot create topic {t}: {e}"));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let shared = Arc::new(Shared {
        published: AtomicU64::new(0),
        consumed: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        early: AtomicU64::new(0),
        broker_pid,
        measuring: AtomicBool::new(false),
        period: Mutex::new(Hists::new()),
        total: Mutex::new(Hists::new()),
        phase: Mutex::new(Hists::new()),
    });
    let ctl = super::generator::Control {
        shared: shared.clone(),
        stop: Arc::new(AtomicBool::new(false)),
        go: Arc::new(AtomicBool::new(false)),
        ready: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        fill: Arc::new(std::sync::atomic::AtomicI64::new(w.backlog.min(i64::MAX as u64) as i64)),
        filled: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
    };
    let executors = super::generator::start(w, &topics, &ctl);
    if w.backlog > 0 {
        let t = Instant::now();
        while ctl.filled.load(Ordering::SeqCst) < w.producers {
            std::thread::sleep(Duration::from_millis(50));
        }
        println!("accumulated {} messages in {:.1} s", w.backlog, t.elapsed().as_secs_f64());
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while ctl.ready.load(Ordering::SeqCst) < w.consumers && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20)); // consumers know their start offsets first
    }
    ctl.go.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(w.warmup));
    shared.measuring.store(true, Ordering::SeqCst);
    let (pub0, con0) = (shared.published.load(Ordering::Relaxed), shared.consumed.load(Ordering::Relaxed));
    let cpu0 = broker_pid.and_then(cpu_seconds);
    let self0 = cpu_seconds(std::process::id()).unwrap_or(0.0);
    let start = Instant::now();
    let mut report = Report { workload: Some(w.clone()), ..Default::default() };
    let (mut last_t, mut last_p, mut last_c) = (start, pub0, con0);
    let live = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut last_live = Instant::now();
    let mut drain = (w.backlog > 0).then(Drain::default);
    reset_phase(&shared);
    while start.elapsed() < Duration::from_secs(w.duration) {
        std::thread::sleep(Duration::from_millis(200));
        let halfway = start.elapsed() >= Duration::from_secs(w.duration) / 2;
        if let Some(d) = drain.as_mut().filter(|d| d.thread.is_none() && halfway) {
            d.quiet = reset_phase(&shared);
            d.started = Instant::now();
            let security = w.security.resolve().unwrap_or_default(); // checked before the run
            d.thread = Some(super::drain::start(&w.namesrv, security, &topics, d.progress.clone(), ctl.stop.clone()));
        }
        let finished = |d: &Drain| d.progress.finished_after_us.load(Ordering::SeqCst) > 0;
        if let Some(d) = drain.as_mut().filter(|d| d.draining.is_none() && finished(d)) {
            d.draining = Some(reset_phase(&shared)); // only the time the drain ran
        }
        if live && last_live.elapsed() >= Duration::from_secs(1) {
            last_live = Instant::now();
            let secs = start.elapsed().as_secs_f64();
            let (p, c) =
                (shared.published.load(Ordering::Relaxed) - pub0, shared.consumed.load(Ordering::Relaxed) - con0);
            print!(
                "\r{:>5.0}s  pub {:>9.0} msg/s  cons {:>9.0} msg/s  errors {}   ",
                secs,
                p as f64 / secs,
                c as f64 / secs,
                shared.errors.load(Ordering::Relaxed)
            );
            let _ = std::io::Write::flush(&mut std::io::stdout());
        }
        if last_t.elapsed() >= Duration::from_secs(w.report_every) || start.elapsed() >= Duration::from_secs(w.duration)
        {
            let (p, c) = (shared.published.load(Ordering::Relaxed), shared.consumed.load(Ordering::Relaxed));
            let period = snapshot(&shared, last_t.elapsed().as_secs_f64(), p - last_p, c - last_c, true);
            println!("{}{}", if live { "\r" } else { "" }, describe(&period));
            report.periods.push(period);
            (last_t, last_p, last_c) = (Instant::now(), p, c);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let (p, c) = (shared.published.load(Ordering::Relaxed), shared.consumed.load(Ordering::Relaxed));
    report.total = snapshot(&shared, elapsed, p - pub0, c - con0, false);
    report.broker_cpu_seconds = broker_pid.and_then(cpu_seconds).zip(cpu0).map(|(b, a)| b - a);
    report.bench_cpu_seconds = cpu_seconds(std::process::id()).unwrap_or(0.0) - self0;
    report.broker_cpu_us_per_message = report.broker_cpu_seconds.map(|s| s * 1e6 / ((p - pub0).max(1) as f64));
    report.drain = drain.as_mut().map(|d| d.report(w.backlog, reset_phase(&shared)));
    ctl.stop.store(true, Ordering::SeqCst);
    for h in executors.into_iter().chain(drain.and_then(|d| d.thread)) {
        let _ = h.join();
    }
    Ok(report)
}

/// The drain of a `--backlog` run, started halfway through.
struct Drain {
    progress: Arc<super::drain::DrainProgress>,
    started: Instant,
    quiet: Percentiles,
    /// Publish latency while the drain ran, taken when it finished.
    draining: Option<Percentiles>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Default for Drain {
    fn default() -> Drain {
        Drain {
            progress: Default::default(),
            started: Instant::now(),
            quiet: Default::default(),
            draining: None,
            thread: None,
        }
    }
}

impl Drain {
    fn report(&mut self, backlog: u64, now: Percentiles) -> super::drain::DrainReport {
        let finished_us = self.progress.finished_after_us.load(Ordering::SeqCst);
        let seconds = if finished_us > 0 { finished_us as f64 / 1e6 } else { self.started.elapsed().as_secs_f64() };
        let drained = self.progress.drained.load(Ordering::SeqCst);
        let bytes = self.progress.log_bytes.load(Ordering::SeqCst);
        super::drain::DrainReport {
            backlog,
            to_read: self.progress.to_read.load(Ordering::SeqCst),
            drained,
            drained_log_bytes: bytes,
            seconds,
            finished: finished_us > 0,
            msgs_per_sec: drained as f64 / seconds.max(1e-9),
            log_mib_per_sec: bytes as f64 / (1 << 20) as f64 / seconds.max(1e-9),
            quiet_publish: self.quiet.clone(),
            draining_publish: self.draining.take().unwrap_or(now),
            raw_read_mib_per_sec: None,
            ratio_to_raw_read: None,
            raw_serve_mib_per_sec: None,
            ratio_to_raw_serve: None,
        }
    }
}

/// The publish percentiles of the phase that ends now; starts the next phase.
fn reset_phase(shared: &Shared) -> Percentiles {
    let mut g = match shared.phase.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    let p = Percentiles::of(&g.publish);
    *g = Hists::new();
    p
}

#[cfg(test)]
mod tests {
    use super::cannot_recover;
    use crate::client::ClientError;

    #[test]
    fn bench_stops_retrying_on_refused_credentials_and_failed_tls() {
        let refused = |code| ClientError::Refused { addr: "a".into(), code, remark: String::new() };
        assert!(cannot_recover(&refused(16)));
        assert!(!cannot_recover(&refused(1)), "a busy or starting broker is retried");
        let tls = std::io::Error::new(std::io::ErrorKind::InvalidData, "invalid peer certificate");
        assert!(cannot_recover(&ClientError::Connect { addr: "a".into(), source: tls }));
        let refused_conn = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(!cannot_recover(&ClientError::Connect { addr: "a".into(), source: refused_conn }));
        assert!(!cannot_recover(&ClientError::NoRoute("T".into())));
    }
}
