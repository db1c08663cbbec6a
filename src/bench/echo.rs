//! The request/response floor (issue 15, part 1): what an echo server costs on this machine for the
//! pattern a broker sees from unbatched senders, measured beside a `ringmq bench` run.
//!
//! A request is a 4-byte big-endian length and that many bytes (the workload's message size plus
//! [`HEADER_BYTES`], about what a SEND_MESSAGE_V2 header adds); the answer is a frame of
//! [`ANSWER_BYTES`] (a send response's size). Two servers, each with every thread pinned to
//! `server_cpu`: one on glommio (the broker's runtime: one executor, a task per connection) and one
//! on plain blocking sockets with a thread per connection (the kernel's own scheduling, no runtime).
//! Two client patterns, both on one glommio executor pinned to `client_cpu` (the load generator's
//! runtime): `window` requests in flight on one connection, and `window` connections with one each.
//!
//! Server CPU is the process's CPU (`/proc/self/stat`, so io-wq workers count) minus the client
//! thread's (`/proc/thread-self/stat`), over the measured seconds.

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use serde::Serialize;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Bytes a request carries beyond its body (RocketMQ header fields of a typical send).
pub const HEADER_BYTES: usize = 256;
/// Size of each answer frame, length prefix included.
pub const ANSWER_BYTES: usize = 128;
/// Read buffer per connection: many requests per read when the client pipelines.
const READ_BUF: usize = 256 << 10;

/// One server × pattern measurement.
#[derive(Debug, Clone, Serialize)]
pub struct EchoRun {
    pub server: &'static str,
    pub pattern: String,
    pub requests_per_sec: f64,
    pub server_cpu_us_per_request: f64,
    /// Paced runs only: each request's round trip, from its send to its answer (as `ringmq bench`
    /// measures publish latency), over the measured seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<super::workload::Percentiles>,
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct EchoOptions {
    pub message_size: usize,
    pub window: usize,
    pub seconds: f64,
    pub server_cpu: usize,
    pub client_cpu: usize,
    /// Also measure one connection sending at this fixed rate (requests per second), one in flight:
    /// the per-request cost of an executor that sleeps and wakes between requests, as a broker does
    /// under a fixed-rate workload, and its round-trip latency (with `durable_dir`, also through the
    /// durable echo: the latency floor of a fixed-rate durable send on this machine).
    pub paced_rate: Option<u64>,
    /// Also measure the durable floor in this directory (the broker's disk): the glommio echo
    /// writes every batch of requests it read to an `O_DSYNC` file, pre-written like a log
    /// segment, before it answers them: one connection with `window` in flight, so each read is
    /// one group commit, and one write in flight at a time, as the broker's flusher does.
    pub durable_dir: Option<std::path::PathBuf>,
}

/// Runs both servers under both patterns, one after another.
pub fn run(o: &EchoOptions) -> Result<Vec<EchoRun>, String> {
    let mut out = Vec::new();
    for server in [Server::Glommio, Server::Threads] {
        for connections in [1, o.window.max(1)] {
            let in_flight = if connections == 1 { o.window.max(1) } else { 1 };
            out.push(measure(o, server, Pattern { connections, in_flight, rate: None })?);
        }
        if let Some(rate) = o.paced_rate.filter(|&r| r > 0) {
            out.push(measure(o, server, Pattern { connections: 1, in_flight: 1, rate: Some(rate) })?);
        }
    }
    if o.durable_dir.is_some() {
        out.push(measure(
            o,
            Server::GlommioDurable,
            Pattern { connections: 1, in_flight: o.window.max(1), rate: None },
        )?);
        if let Some(rate) = o.paced_rate.filter(|&r| r > 0) {
            out.push(measure(o, Server::GlommioDurable, Pattern { connections: 1, in_flight: 1, rate: Some(rate) })?);
        }
    }
    Ok(out)
}

/// How the client loads the server: `connections` × `in_flight`, as fast as answers come back, or
/// one request at a time at `rate` per second.
#[derive(Clone, Copy)]
struct Pattern {
    connections: usize,
    in_flight: usize,
    rate: Option<u64>,
}

#[derive(Clone, Copy, PartialEq)]
enum Server {
    Glommio,
    /// The glommio echo writing each read batch durably before answering it.
    GlommioDurable,
    Threads,
}

fn measure(o: &EchoOptions, server: Server, pattern: Pattern) -> Result<EchoRun, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    let durable = (server == Server::GlommioDurable).then(|| o.durable_dir.clone()).flatten();
    let server_handle = match server {
        Server::Glommio | Server::GlommioDurable => {
            drop(listener);
            let stop = stop.clone();
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let h = crate::rt::executor::LocalExecutorBuilder::new(crate::rt::executor::Placement::Fixed(o.server_cpu))
                .io_memory(crate::shard::startup::IO_MEMORY_BYTES)
                .spawn(move || async move { glommio_server(addr, stop, durable, ready_tx).await })
                .map_err(|e| e.to_string())?;
            // The durable file is pre-written before the client starts.
            ready_rx.recv().map_err(|_| "echo server failed to start".to_string())??;
            ServerHandle::Glommio(h)
        }
        Server::Threads => {
            let (stop, cpu) = (stop.clone(), o.server_cpu);
            ServerHandle::Threads(std::thread::spawn(move || thread_server(listener, stop, cpu)))
        }
    };
    let request = frame(o.message_size + HEADER_BYTES);
    let secs = o.seconds;
    let client = crate::rt::executor::LocalExecutorBuilder::new(crate::rt::executor::Placement::Fixed(o.client_cpu))
        .io_memory(crate::shard::startup::IO_MEMORY_BYTES)
        .spawn(move || async move { client(addr, pattern, request, secs).await })
        .map_err(|e| e.to_string())?;
    let result = client.join().map_err(|e| e.to_string())?;
    stop.store(true, Ordering::SeqCst);
    let _ = std::net::TcpStream::connect(addr); // wakes an accept that is still waiting
    server_handle.join();
    let (requests, secs, process_cpu, client_cpu, latency) = result?;
    if let Some(dir) = o.durable_dir.as_ref().filter(|_| server == Server::GlommioDurable) {
        let _ = std::fs::remove_file(dir.join(DURABLE_FILE));
    }
    Ok(EchoRun {
        server: match server {
            Server::Glommio => "glommio",
            Server::GlommioDurable => "glommio + O_DSYNC write per batch",
            Server::Threads => "threads",
        },
        pattern: match pattern.rate {
            None => format!("{} conn x {} in flight", pattern.connections, pattern.in_flight),
            Some(r) => format!("1 conn paced at {r}/s"),
        },
        requests_per_sec: requests as f64 / secs,
        server_cpu_us_per_request: (process_cpu - client_cpu).max(0.0) * 1e6 / requests.max(1) as f64,
        latency_us: latency,
    })
}

enum ServerHandle {
    Glommio(crate::rt::executor::ExecutorJoinHandle<()>),
    Threads(std::thread::JoinHandle<()>),
}

impl ServerHandle {
    fn join(self) {
        match self {
            ServerHandle::Glommio(h) => drop(h.join()),
            ServerHandle::Threads(h) => drop(h.join()),
        }
    }
}

fn frame(len: usize) -> Vec<u8> {
    let mut f = vec![b'x'; 4 + len];
    f[..4].copy_from_slice(&(len as u32).to_be_bytes());
    f
}

/// Complete frames at the front of `buf`: how many, and how many bytes they take.
fn complete_frames(buf: &[u8]) -> (usize, usize) {
    let (mut n, mut at) = (0, 0);
    while buf.len() >= at + 4 {
        let len = u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
        if buf.len() < at + 4 + len {
            break;
        }
        at += 4 + len;
        n += 1;
    }
    (n, at)
}

/// Reads what is there, answers every complete request in one write, keeps the remainder.
struct Framer {
    buf: Vec<u8>,
    fill: usize,
}

impl Framer {
    fn new() -> Framer {
        Framer { buf: vec![0; READ_BUF], fill: 0 }
    }

    /// Accounts for `n` new bytes; returns how many complete frames they finished.
    fn take(&mut self, n: usize) -> usize {
        self.fill += n;
        let (frames, used) = complete_frames(&self.buf[..self.fill]);
        self.buf.copy_within(used..self.fill, 0);
        self.fill -= used;
        if self.fill == self.buf.len() {
            let bigger = self.buf.len() * 2;
            self.buf.resize(bigger, 0);
        }
        frames
    }

    /// Accounts for `n` new bytes and puts one `reply` per request they completed into `out`;
    /// returns how many.
    fn answer(&mut self, n: usize, reply: &[u8], out: &mut Vec<u8>) -> usize {
        out.clear();
        let frames = self.take(n);
        for _ in 0..frames {
            out.extend_from_slice(reply);
        }
        frames
    }
}

/// Name of the durable echo's file in `durable_dir`.
const DURABLE_FILE: &str = "ringmq-echo-durable";
/// Size of the durable echo's file, written through in a cycle.
const DURABLE_FILE_BYTES: u64 = 64 << 20;

/// The durable echo's log: a pre-written `O_DSYNC` file, written at increasing block-aligned
/// positions and wrapped at its end.
struct DurableLog {
    file: Rc<crate::store::io::DmaSegment>,
    pos: u64,
}

impl DurableLog {
    async fn open(dir: &std::path::Path) -> std::io::Result<DurableLog> {
        use crate::store::io::{Disk, DiskFile};
        let disk = crate::store::io::DmaDisk { sync: crate::store::io::LogSync::Dsync };
        let file = disk.open(&dir.join(DURABLE_FILE)).await?;
        let chunk = 1u64 << 20;
        for at in (0..DURABLE_FILE_BYTES).step_by(chunk as usize) {
            file.write_zeros(at, chunk as usize).await?;
        }
        file.sync().await?;
        Ok(DurableLog { file, pos: 0 })
    }

    /// Writes `data` (padded to whole blocks); returns once it is durable.
    async fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        use crate::store::io::DiskFile;
        let len = crate::store::io::align_up(data.len() as u64);
        if self.pos + len > DURABLE_FILE_BYTES {
            self.pos = 0;
        }
        self.file.write_buffer_at(self.file.write_buffer(data, len as usize), self.pos).await?;
        self.pos += len;
        Ok(())
    }
}

async fn glommio_server(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    durable: Option<std::path::PathBuf>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    let listener = match crate::rt::TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => return drop(ready.send(Err(e.to_string()))),
    };
    // One log, for the first connection (the durable pattern has one; a later one is the stop's
    // wake-up).
    let log = match &durable {
        Some(dir) => match DurableLog::open(dir).await {
            Ok(l) => Some(l),
            Err(e) => return drop(ready.send(Err(format!("durable echo file: {e}")))),
        },
        None => None,
    };
    let log = Rc::new(std::cell::RefCell::new(log));
    let _ = ready.send(Ok(()));
    let answer = Rc::new(frame(ANSWER_BYTES - 4));
    while !stop.load(Ordering::SeqCst) {
        let Ok(mut s) = listener.accept().await else { break };
        let answer = answer.clone();
        let mut log = log.borrow_mut().take();
        crate::rt::spawn(async move {
            let mut f = Framer::new();
            let mut out = Vec::new();
            loop {
                let at = f.fill;
                let n = match s.read(&mut f.buf[at..]).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if let Some(log) = log.as_mut() {
                    let (_, used) = complete_frames(&f.buf[..f.fill + n]);
                    if used > 0 && log.write(&f.buf[..used]).await.is_err() {
                        return;
                    }
                }
                f.answer(n, &answer, &mut out);
                if !out.is_empty() && s.write_all(&out).await.is_err() {
                    return;
                }
            }
        })
        .detach();
    }
}

fn thread_server(listener: std::net::TcpListener, stop: Arc<AtomicBool>, cpu: usize) {
    let _ = crate::shard::stalls::pin_current_thread(&[cpu]); // threads spawned below inherit it
    let answer = Arc::new(frame(ANSWER_BYTES - 4));
    for s in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let (Ok(mut s), answer) = (s, answer.clone()) else { continue };
        let _ = s.set_nodelay(true);
        std::thread::spawn(move || {
            let mut f = Framer::new();
            let mut out = Vec::new();
            loop {
                let at = f.fill;
                let n = match s.read(&mut f.buf[at..]) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                f.answer(n, &answer, &mut out);
                if !out.is_empty() && s.write_all(&out).is_err() {
                    return;
                }
            }
        });
    }
}

/// CPU seconds of the calling thread.
fn thread_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/thread-self/stat") else { return 0.0 };
    let f: Vec<&str> = stat.rsplit_once(')').map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

type ClientResult = Result<(u64, f64, f64, f64, Option<super::workload::Percentiles>), String>;

/// Drives the server with `pattern` for `secs` after a 1 s warm-up; returns (answers, seconds,
/// process CPU, this thread's CPU, a paced pattern's round trips) over the measured part.
async fn client(addr: SocketAddr, pattern: Pattern, request: Vec<u8>, secs: f64) -> ClientResult {
    let Pattern { connections, in_flight, rate } = pattern;
    let mut streams = Vec::with_capacity(connections);
    let deadline = Instant::now() + Duration::from_secs(5);
    while streams.len() < connections {
        match crate::rt::TcpStream::connect(addr).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                streams.push(s);
            }
            Err(_) if Instant::now() < deadline => crate::rt::sleep(Duration::from_millis(5)).await,
            Err(e) => return Err(format!("echo client: {e}")),
        }
    }
    let counted = Rc::new(std::cell::Cell::new(0u64));
    let measuring = Rc::new(std::cell::Cell::new(false));
    let done = Rc::new(std::cell::Cell::new(false));
    let request = Rc::new(request);
    // 1 µs to 60 s at 3 significant digits: fixed size, whatever the run's length.
    let rtt = Rc::new(std::cell::RefCell::new(
        hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?,
    ));
    let mut tasks = Vec::new();
    for mut s in streams {
        let (counted, measuring, done, request) = (counted.clone(), measuring.clone(), done.clone(), request.clone());
        let rtt = rtt.clone();
        tasks.push(crate::rt::spawn(async move {
            if let Some(rate) = rate {
                let seen = Seen { counted: &counted, measuring: &measuring, done: &done, rtt: &rtt };
                return paced(&mut s, rate, &request, seen).await;
            }
            let burst: Vec<u8> = request.repeat(in_flight);
            if s.write_all(&burst).await.is_err() {
                return;
            }
            let mut f = Framer::new();
            let mut out = Vec::new();
            while !done.get() {
                let at = f.fill;
                let n = match s.read(&mut f.buf[at..]).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let answers = f.answer(n, &request, &mut out);
                if measuring.get() {
                    counted.set(counted.get() + answers as u64);
                }
                if !out.is_empty() && s.write_all(&out).await.is_err() {
                    return;
                }
            }
        }));
    }
    crate::rt::sleep(Duration::from_secs(1)).await;
    let (cpu0, mine0, t0) =
        (super::load::cpu_seconds(std::process::id()).unwrap_or(0.0), thread_cpu_seconds(), Instant::now());
    measuring.set(true);
    crate::rt::sleep(Duration::from_secs_f64(secs)).await;
    measuring.set(false);
    let elapsed = t0.elapsed().as_secs_f64();
    let (cpu1, mine1) = (super::load::cpu_seconds(std::process::id()).unwrap_or(0.0), thread_cpu_seconds());
    done.set(true);
    drop(tasks); // cancels the connections' tasks; the sockets close with them
    let latency = rate.map(|_| super::workload::Percentiles::of(&rtt.borrow()));
    Ok((counted.get(), elapsed, cpu1 - cpu0, mine1 - mine0, latency))
}

/// What a paced connection reports to the measuring client.
struct Seen<'a> {
    counted: &'a std::cell::Cell<u64>,
    measuring: &'a std::cell::Cell<bool>,
    done: &'a std::cell::Cell<bool>,
    rtt: &'a std::cell::RefCell<hdrhistogram::Histogram<u64>>,
}

/// One request at a time on `s`, each sent at its slot of a `rate`-per-second schedule (or at once
/// when the answer to the previous one came late).
async fn paced(s: &mut crate::rt::TcpStream, rate: u64, request: &[u8], seen: Seen<'_>) {
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut due = Instant::now();
    let mut f = Framer::new();
    while !seen.done.get() {
        let now = Instant::now();
        if due > now {
            crate::rt::sleep(due - now).await;
        }
        due += interval;
        let sent = Instant::now();
        if s.write_all(request).await.is_err() {
            return;
        }
        loop {
            let at = f.fill;
            let n = match s.read(&mut f.buf[at..]).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if f.take(n) > 0 {
                break;
            }
        }
        if seen.measuring.get() {
            seen.counted.set(seen.counted.get() + 1);
            let us = sent.elapsed().as_micros().clamp(1, 60_000_000) as u64;
            let _ = seen.rtt.borrow_mut().record(us); // in bounds: clamped above
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_across_reads_are_counted_once_complete() {
        let req = frame(10);
        let mut f = Framer::new();
        let two = [req.clone(), req.clone()].concat();
        f.buf[..two.len() - 3].copy_from_slice(&two[..two.len() - 3]);
        assert_eq!(f.take(two.len() - 3), 1);
        let at = f.fill;
        f.buf[at..at + 3].copy_from_slice(&two[two.len() - 3..]);
        assert_eq!(f.take(3), 1);
        assert_eq!(f.fill, 0);
    }

    /// A short run of small requests, everything on CPU 0.
    fn short_run(paced_rate: Option<u64>, durable_dir: Option<std::path::PathBuf>) -> EchoOptions {
        EchoOptions {
            message_size: 100,
            window: 4,
            seconds: 0.2,
            server_cpu: 0,
            client_cpu: 0,
            paced_rate,
            durable_dir,
        }
    }

    #[test]
    fn both_servers_answer_both_patterns() {
        let runs = run(&short_run(Some(500), None)).unwrap();
        assert_eq!(runs.len(), 6);
        for r in &runs {
            assert!(r.requests_per_sec > 0.0, "{r:?}");
            let paced = r.pattern.contains("paced");
            assert_eq!(r.latency_us.is_some(), paced, "round trips are reported for paced runs: {r:?}");
            if let Some(l) = &r.latency_us {
                assert!(l.p50_us >= 1 && l.p50_us <= l.p99_us && l.p99_us <= l.max_us, "{r:?}");
            }
        }
    }

    #[test]
    fn the_paced_durable_echo_reports_its_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let runs = run(&short_run(Some(500), Some(dir.path().to_path_buf()))).unwrap();
        assert_eq!(runs.len(), 8);
        let paced = runs.last().unwrap();
        assert!(paced.server.contains("O_DSYNC") && paced.pattern.contains("paced"), "{paced:?}");
        assert!(paced.requests_per_sec > 0.0 && paced.latency_us.is_some(), "{paced:?}");
    }

    #[test]
    fn the_durable_echo_answers_through_its_file_and_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        let runs = run(&short_run(None, Some(dir.path().to_path_buf()))).unwrap();
        assert_eq!(runs.len(), 5);
        let durable = runs.last().unwrap();
        assert!(durable.server.contains("O_DSYNC"), "{durable:?}");
        assert!(durable.requests_per_sec > 0.0, "{durable:?}");
        assert!(!dir.path().join(DURABLE_FILE).exists(), "the echo's file is removed");
    }
}
