//! The drain of `ringmq bench --backlog N`: a new consumer group reading the accumulated backlog from
//! the first offset while the workload's producers and tail consumers carry on (issue 17, part 4),
//! and the raw sequential O_DIRECT read rate of the broker's commit log that it is judged against.
//!
//! The drain runs on an executor of its own (one thread, one connection per broker), pulls every
//! queue concurrently in batches of [`DRAIN_BATCH`] without long polling, and stops each queue at
//! the end offset it had when the drain started: it measures catching up, not tailing. It reads
//! each record's framing only (queue offset, size), as a reader that hands records on unparsed:
//! on a 2-core machine the load generator shares its core with the producers, and decoding every
//! record's properties there set the drain's pace instead of the broker (docs/BENCHMARKS.md).

use super::workload::Percentiles;
use crate::client::consumer::{PullSpec, TAG};
use crate::client::{AsyncClient, AsyncPullConsumer, MessageQueue};
use crate::protocol::bodies::record_frames;
use crate::protocol::codes::response as rs;
use crate::rt::executor::{LocalExecutorBuilder, Placement};
use crate::store::io::{Disk, DiskFile, DmaDisk};
use serde::Serialize;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Messages per drain pull: the broker's cap for one pull is 1024 messages / 8 MiB.
const DRAIN_BATCH: u32 = 1024;
/// Bytes per raw read: the size of the broker's own sequential DMA reads is of the same order.
const RAW_READ_CHUNK: usize = 1 << 20;
/// The most the raw read reads: enough for a steady rate, bounded so the probe stays short.
const RAW_READ_MAX: u64 = 4 << 30;

/// What the drain measured.
#[derive(Debug, Clone, Serialize, Default)]
pub struct DrainReport {
    /// Messages accumulated before the measured run.
    pub backlog: u64,
    /// Messages in the queues when the drain started: the backlog and what the workload had sent.
    pub to_read: u64,
    /// Messages the drain group read (up to each queue's end when it started).
    pub drained: u64,
    /// Stored log bytes of the drained messages.
    pub drained_log_bytes: u64,
    /// Seconds from the drain's start to its end (or to the end of the run if unfinished).
    pub seconds: f64,
    pub finished: bool,
    pub msgs_per_sec: f64,
    pub log_mib_per_sec: f64,
    /// Publish latency of the workload in the half of the run before the drain …
    pub quiet_publish: Percentiles,
    /// … and in the half with it.
    pub draining_publish: Percentiles,
    /// Sequential O_DIRECT read rate of the log files (`--raw-read-dir`), measured after the run.
    pub raw_read_mib_per_sec: Option<f64>,
    /// `log_mib_per_sec` as a fraction of the raw read rate (target ≥ 0.5).
    pub ratio_to_raw_read: Option<f64>,
    /// The serve floor (`--serve-floor-cpu`): the same files read and sent over loopback by a
    /// sender on the broker's CPU, with no per-record work ([`raw_serve_rate`]) …
    pub raw_serve_mib_per_sec: Option<f64>,
    /// … and `log_mib_per_sec` as a fraction of it.
    pub ratio_to_raw_serve: Option<f64>,
}

/// Progress the drain shares with the reporting thread.
#[derive(Default)]
pub(super) struct DrainProgress {
    pub to_read: AtomicU64,
    pub drained: AtomicU64,
    pub log_bytes: AtomicU64,
    /// Microseconds from the drain's start to its end; 0 while it runs.
    pub finished_after_us: AtomicU64,
}

/// Starts the drain of `topics` on its own executor thread; it ends when every queue is read up to
/// its end at the start, or when `stop` is set.
pub(super) fn start(
    namesrv: &str,
    security: crate::client::ClientSecurity,
    topics: &[String],
    progress: Arc<DrainProgress>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let (namesrv, topics) = (namesrv.to_string(), topics.to_vec());
    std::thread::spawn(move || {
        let ex = match LocalExecutorBuilder::new(Placement::Unbound).name("bench-drain").make() {
            Ok(ex) => ex,
            Err(e) => {
                eprintln!("bench: cannot start the drain executor: {e}");
                return;
            }
        };
        ex.run(async move {
            let client = AsyncClient::with_security(&namesrv, security);
            let pc = Rc::new(AsyncPullConsumer::with_client(client, "ringmq-bench-drain"));
            let started = Instant::now();
            let mut queues: Vec<MessageQueue> = Vec::new();
            for t in &topics {
                queues.extend(pc.queues(t).await.unwrap_or_default());
            }
            let mut tasks = Vec::new();
            for q in queues {
                let Ok(end) = pc.max_offset(&q).await else { continue };
                progress.to_read.fetch_add(end, Ordering::SeqCst);
                let (pc, progress, stop) = (pc.clone(), progress.clone(), stop.clone());
                tasks.push(crate::rt::spawn(drain_queue(pc, q, end, progress, stop)));
            }
            for t in tasks {
                t.await;
            }
            if !stop.load(Ordering::Relaxed) {
                progress.finished_after_us.store(started.elapsed().as_micros().max(1) as u64, Ordering::SeqCst);
            }
        });
    })
}

/// Reads `q` from its first offset up to `end`.
async fn drain_queue(
    pc: Rc<AsyncPullConsumer>,
    q: MessageQueue,
    end: u64,
    p: Arc<DrainProgress>,
    stop: Arc<AtomicBool>,
) {
    let mut offset = 0;
    while offset < end && !stop.load(Ordering::Relaxed) {
        let spec = PullSpec { offset, max: DRAIN_BATCH, expression_type: TAG, expr: "*", suspend_ms: 0 };
        match pc.pull_raw(&q, &spec).await {
            Ok((code, next, body)) if code == rs::SUCCESS => {
                let Ok(frames) = record_frames(&body) else {
                    eprintln!("bench: drain of {q:?} got a malformed pull body at offset {offset}");
                    return;
                };
                let served = frames.iter().filter(|(o, _)| *o < end);
                let (n, bytes) = served.fold((0u64, 0u64), |(n, b), (_, size)| (n + 1, b + u64::from(*size)));
                p.drained.fetch_add(n, Ordering::Relaxed);
                p.log_bytes.fetch_add(bytes, Ordering::Relaxed);
                offset = next;
            }
            Ok((code, next, _)) if code == rs::PULL_OFFSET_MOVED || code == rs::PULL_RETRY_IMMEDIATELY => {
                offset = next.max(offset)
            }
            Ok(_) => crate::rt::sleep(Duration::from_millis(10)).await,
            Err(_) => crate::rt::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Reads the files of `dir` in name order with O_DIRECT (the store's own DMA files) in 1 MiB reads,
/// up to `want` bytes (at least 256 MiB, at most 4 GiB, never more than the files hold); returns MiB/s.
pub fn raw_read_rate(dir: &Path, want: u64) -> Result<f64, String> {
    let files = log_files(dir)?;
    let want = want.clamp(256 << 20, RAW_READ_MAX);
    let reader = LocalExecutorBuilder::new(Placement::Unbound)
        .name("bench-raw-read")
        .io_memory(crate::shard::startup::IO_MEMORY_BYTES)
        .spawn(move || async move { read_files(&files, want).await })
        .map_err(|e| e.to_string())?;
    let (read, secs) = reader.join().map_err(|e| e.to_string())??;
    if read == 0 {
        return Err(format!("{}: nothing to read", dir.display()));
    }
    Ok(read as f64 / (1 << 20) as f64 / secs.max(1e-9))
}

/// The files of `dir` in name order (a commit log's segments in log order).
fn log_files(dir: &Path) -> Result<Vec<std::path::PathBuf>, String> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// The serve floor of a drain: the files of `dir` read with O_DIRECT in 1 MiB reads (the broker's
/// read block) by a sender pinned to CPU `cpu` — the broker's — and written whole to one loopback
/// connection, whose receiver (a plain thread on this process's CPUs) reads and discards them. No
/// records, no protocol, no checks: the most any broker could serve one catch-up reader on this
/// machine with this placement. Up to `want` bytes (clamped as the raw read); returns MiB/s.
pub fn raw_serve_rate(dir: &Path, want: u64, cpu: usize) -> Result<f64, String> {
    use std::io::Read;
    let files = log_files(dir)?;
    let want = want.clamp(256 << 20, RAW_READ_MAX);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let receiver = std::thread::spawn(move || -> Result<(u64, f64), String> {
        let (mut conn, _) = listener.accept().map_err(|e| e.to_string())?;
        let started = Instant::now();
        let (mut buf, mut got) = (vec![0u8; RAW_READ_CHUNK], 0u64);
        loop {
            match conn.read(&mut buf) {
                Ok(0) => return Ok((got, started.elapsed().as_secs_f64())),
                Ok(n) => got += n as u64,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    });
    let sender = LocalExecutorBuilder::new(Placement::Fixed(cpu))
        .name("bench-serve-floor")
        .io_memory(crate::shard::startup::IO_MEMORY_BYTES)
        .spawn(move || async move { send_files(&files, want, addr).await })
        .map_err(|e| e.to_string())?;
    sender.join().map_err(|e| e.to_string())??;
    let (got, secs) = receiver.join().map_err(|_| "the serve-floor receiver panicked".to_string())??;
    if got == 0 {
        return Err(format!("{}: nothing to serve", dir.display()));
    }
    Ok(got as f64 / (1 << 20) as f64 / secs.max(1e-9))
}

/// Reads `files` up to `want` bytes and writes every read to a connection to `addr`.
async fn send_files(files: &[std::path::PathBuf], want: u64, addr: std::net::SocketAddr) -> Result<(), String> {
    use futures_lite::AsyncWriteExt;
    let mut conn = crate::rt::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    walk_files(files, want, async |chunk| conn.write_all(&chunk).await.map_err(|e| e.to_string())).await?;
    conn.close().await.map_err(|e| e.to_string())
}

/// Reads `files` one after another up to `want` bytes; returns the bytes read and the seconds taken.
async fn read_files(files: &[std::path::PathBuf], want: u64) -> Result<(u64, f64), String> {
    let started = Instant::now();
    let read = walk_files(files, want, async |_| Ok(())).await?;
    Ok((read, started.elapsed().as_secs_f64()))
}

/// Reads `files` in name order with O_DIRECT in [`RAW_READ_CHUNK`] reads up to `want` bytes, handing
/// each read to `each`; returns the bytes read.
async fn walk_files(
    files: &[std::path::PathBuf],
    want: u64,
    mut each: impl AsyncFnMut(bytes::Bytes) -> Result<(), String>,
) -> Result<u64, String> {
    let mut read = 0u64;
    for path in files {
        let f = DmaDisk::default().open(path).await.map_err(|e| format!("{}: {e}", path.display()))?;
        let size = DiskFile::size(f.as_ref()).await.map_err(|e| format!("{}: {e}", path.display()))?;
        let mut pos = 0u64;
        while read < want && pos < size {
            let n = RAW_READ_CHUNK.min((size - pos) as usize);
            let got = DiskFile::read_at(f.as_ref(), pos, n).await.map_err(|e| format!("{}: {e}", path.display()))?;
            if got.is_empty() {
                break;
            }
            pos += got.len() as u64;
            read += got.len() as u64;
            each(got).await?;
        }
    }
    Ok(read)
}

/// One line describing the drain.
pub fn describe(d: &DrainReport) -> String {
    format!(
        "drain: {} of {} messages (backlog {}) in {:.2} s{} = {:.0} msgs/s, {:.1} MiB/s of log{}{} | publish p99 quiet {} us, while draining {} us ({:.2} x)",
        d.drained,
        d.to_read,
        d.backlog,
        d.seconds,
        if d.finished { "" } else { " (unfinished)" },
        d.msgs_per_sec,
        d.log_mib_per_sec,
        match (d.raw_read_mib_per_sec, d.ratio_to_raw_read) {
            (Some(r), Some(x)) => format!(" = {x:.2} x the raw read rate {r:.0} MiB/s"),
            _ => String::new(),
        },
        match (d.raw_serve_mib_per_sec, d.ratio_to_raw_serve) {
            (Some(r), Some(x)) => format!(" = {x:.2} x the serve floor {r:.0} MiB/s"),
            _ => String::new(),
        },
        d.quiet_publish.p99_us,
        d.draining_publish.p99_us,
        d.draining_publish.p99_us as f64 / d.quiet_publish.p99_us.max(1) as f64
    )
}
