//! The producers and consumers of `ringmq bench` on glommio executors, one per core (never more
//! executors than producers plus consumers), each with one [`AsyncClient`] — io_uring sockets, one
//! pipelined connection per broker, no thread per request or queue. Producers and consumers are
//! dealt round robin over the executors. Producers send up to `--window` requests in flight when
//! running flat out, or open-loop at the fixed `--rate` (publish-delay latency then shows how far
//! the generator fell behind its schedule); consumers long-poll their share of the queues.

use super::workload::{Shared, Workload, bench_message, record_consumed};
use crate::client::consumer::{PULL_SUSPEND_MS, PullSpec, TAG};
use crate::client::{AsyncClient, AsyncProducer, AsyncPullConsumer, Message, MessageQueue};
use crate::protocol::codes::response as rs;
use crate::rt::executor::{LocalExecutorBuilder, Placement};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Messages per pull: more than RocketMQ's default 32, so that consumers keep up at the maximum
/// publish rate with one pull in flight per queue (the broker caps a pull at 1024 messages / 8 MiB).
const PULL_BATCH: u32 = 256;
/// In-flight cap at a fixed rate: open loop, but bounded so a stalled broker cannot exhaust memory.
const OPEN_LOOP_CAP: u64 = 100_000;
/// Messages per request while accumulating `--backlog`: batched, so filling is fast.
const FILL_BATCH: i64 = 64;

/// What the executors share with the thread that reports.
#[derive(Clone)]
pub(super) struct Control {
    pub shared: Arc<Shared>,
    /// Set when the run is over.
    pub stop: Arc<AtomicBool>,
    /// Set once every consumer knows its start offsets: producers wait for it.
    pub go: Arc<AtomicBool>,
    /// Consumers that know their start offsets (or gave up).
    pub ready: Arc<AtomicUsize>,
    /// Messages of `--backlog` not yet handed to a producer; producers accumulate them flat out
    /// before `go`, and consumers ask for their start offsets only after that.
    pub fill: Arc<AtomicI64>,
    /// Producers done accumulating (or that gave up).
    pub filled: Arc<AtomicUsize>,
}

/// Starts the executors; they return when `stop` is set.
pub(super) fn start(w: &Workload, topics: &[String], ctl: &Control) -> Vec<std::thread::JoinHandle<()>> {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let executors = cores.min(w.producers + w.consumers).max(1);
    let per_producer = if w.rate > 0 { w.rate as f64 / w.producers.max(1) as f64 } else { 0.0 };
    // `load::run` checked the security options before starting anything.
    let security = w.security.resolve().unwrap_or_default();
    (0..executors)
        .map(|k| {
            let producers = (0..w.producers).filter(|i| i % executors == k).count();
            let consumers: Vec<usize> = (0..w.consumers).filter(|i| i % executors == k).collect();
            let (w, topics, ctl, security) = (w.clone(), topics.to_vec(), ctl.clone(), security.clone());
            std::thread::spawn(move || {
                let ex = match LocalExecutorBuilder::new(Placement::Unbound).name("bench").make() {
                    Ok(ex) => ex,
                    Err(e) => {
                        eprintln!("bench: cannot start a glommio executor: {e} (see README: memlock)");
                        ctl.ready.fetch_add(consumers.len(), Ordering::SeqCst);
                        return;
                    }
                };
                ex.run(async move {
                    let client = AsyncClient::with_security(&w.namesrv, security);
                    let mut tasks = Vec::new();
                    for i in consumers {
                        let (c, w, t, ctl) = (client.clone(), w.clone(), topics.clone(), ctl.clone());
                        tasks.push(crate::rt::spawn(consume(c, w, t, ctl, i)));
                    }
                    for _ in 0..producers {
                        let (c, w, t, ctl) = (client.clone(), w.clone(), topics.clone(), ctl.clone());
                        tasks.push(crate::rt::spawn(produce(c, w, t, ctl, per_producer)));
                    }
                    for t in tasks {
                        t.await;
                    }
                });
            })
        })
        .collect()
}

async fn produce(client: Rc<AsyncClient>, w: Workload, topics: Vec<String>, ctl: Control, rate: f64) {
    let p = Rc::new(AsyncProducer::with_client(client, "ringmq-bench-producer"));
    let mut queues: Vec<MessageQueue> = Vec::new();
    for t in &topics {
        queues.extend(p.queues(t).await.unwrap_or_default());
    }
    if queues.is_empty() {
        eprintln!("bench: no writable queue in the routes of {topics:?}");
        ctl.filled.fetch_add(1, Ordering::SeqCst);
        return;
    }
    accumulate(&p, &w, &queues, &ctl).await;
    ctl.filled.fetch_add(1, Ordering::SeqCst);
    while !ctl.go.load(Ordering::Relaxed) {
        if ctl.stop.load(Ordering::Relaxed) {
            return;
        }
        crate::rt::sleep(Duration::from_millis(10)).await;
    }
    let window = if rate > 0.0 { OPEN_LOOP_CAP } else { w.window.max(1) as u64 };
    let slots = Rc::new(crate::rt::Semaphore::new(window));
    let start = Instant::now();
    let mut sent: u64 = 0;
    let mut qi = rand::random::<u32>() as usize;
    while !ctl.stop.load(Ordering::Relaxed) {
        let intended = if rate > 0.0 {
            let at = start + Duration::from_secs_f64(sent as f64 / rate);
            let now = Instant::now();
            if at > now {
                crate::rt::sleep(at - now).await;
            }
            at
        } else {
            Instant::now()
        };
        let Ok(slot) = slots.acquire_static_permit(1).await else { break };
        qi += 1;
        let mq = queues[qi % queues.len()].clone();
        let msgs: Vec<Message> =
            (0..w.batch.max(1)).map(|_| bench_message(&mq.topic, w.message_size, w.deliver_after_ms)).collect();
        let t0 = Instant::now();
        ctl.shared.record(|h| &mut h.delay, t0.saturating_duration_since(intended).as_micros() as u64);
        let n = msgs.len() as u64;
        send(&p, mq, msgs, slot, &ctl.shared, Some(t0));
        sent += n;
    }
    // Let requests in flight finish (bounded), so the last period counts them.
    let drain = slots.acquire(window);
    let _ = futures_lite::future::or(async { drain.await.map_err(|_| ()) }, async {
        crate::rt::sleep(Duration::from_secs(3)).await;
        Err(())
    })
    .await;
}

/// Sends `msgs` to `mq` in a task of its own that gives back `slot` when answered; `t0`: record the
/// publish latency and count the messages as published (the measured workload, not the backlog).
fn send(
    p: &Rc<AsyncProducer>,
    mq: MessageQueue,
    msgs: Vec<Message>,
    slot: crate::rt::StaticPermit,
    sh: &Arc<Shared>,
    t0: Option<Instant>,
) {
    let n = msgs.len() as u64;
    let (sh, p) = (sh.clone(), p.clone());
    crate::rt::spawn(async move {
        let answer = p.send_to(&mq, &msgs).await;
        drop(slot);
        match answer {
            Ok(_) => {
                if let Some(t0) = t0 {
                    sh.published.fetch_add(n, Ordering::Relaxed);
                    sh.record(|h| &mut h.publish, t0.elapsed().as_micros() as u64);
                }
            }
            Err(e) => {
                if sh.errors.fetch_add(n, Ordering::Relaxed) == 0 {
                    eprintln!("bench: first failed send: {e}");
                }
            }
        }
    })
    .detach();
}

/// Sends this producer's share of `--backlog` flat out in batches of [`FILL_BATCH`], with
/// `--window` requests in flight, and waits for the answers.
async fn accumulate(p: &Rc<AsyncProducer>, w: &Workload, queues: &[MessageQueue], ctl: &Control) {
    let window = w.window.max(1) as u64;
    let slots = Rc::new(crate::rt::Semaphore::new(window));
    let mut qi = rand::random::<u32>() as usize;
    loop {
        let left = ctl.fill.fetch_sub(FILL_BATCH, Ordering::SeqCst);
        if left <= 0 || ctl.stop.load(Ordering::Relaxed) {
            break;
        }
        let Ok(slot) = slots.acquire_static_permit(1).await else { break };
        qi += 1;
        let mq = queues[qi % queues.len()].clone();
        let msgs = (0..left.min(FILL_BATCH)).map(|_| bench_message(&mq.topic, w.message_size, 0)).collect();
        send(p, mq, msgs, slot, &ctl.shared, None);
    }
    let _ = slots.acquire(window).await;
}

/// Consumer `index` of the workload: takes every `consumers`-th queue of the topics — a static
/// split: the benchmark's consumers measure the broker's read path, not a rebalancing group —
/// starts at each queue's end, and long-polls all its queues concurrently.
async fn consume(client: Rc<AsyncClient>, w: Workload, topics: Vec<String>, ctl: Control, index: usize) {
    let pc = Rc::new(AsyncPullConsumer::with_client(client, "ringmq-bench-consumer"));
    let mut queues: Vec<MessageQueue> = Vec::new();
    for t in &topics {
        queues.extend(pc.queues(t).await.unwrap_or_default());
    }
    queues.sort();
    while ctl.filled.load(Ordering::SeqCst) < w.producers && !ctl.stop.load(Ordering::Relaxed) {
        crate::rt::sleep(Duration::from_millis(20)).await; // the backlog is not the consumers' to read
    }
    let mut tasks = Vec::new();
    for q in queues.into_iter().skip(index).step_by(w.consumers.max(1)) {
        let Ok(start) = pc.max_offset(&q).await else { continue };
        tasks.push(crate::rt::spawn(pull_queue(pc.clone(), q, start, ctl.clone())));
    }
    ctl.ready.fetch_add(1, Ordering::SeqCst);
    while !ctl.stop.load(Ordering::Relaxed) {
        crate::rt::sleep(Duration::from_millis(50)).await;
    }
    drop(tasks); // cancels pulls still held by the broker
}

/// Long-polls one queue from `offset`, recording end-to-end latency of every message.
async fn pull_queue(pc: Rc<AsyncPullConsumer>, q: MessageQueue, mut offset: u64, ctl: Control) {
    while !ctl.stop.load(Ordering::Relaxed) {
        let spec = PullSpec { offset, max: PULL_BATCH, expression_type: TAG, expr: "*", suspend_ms: PULL_SUSPEND_MS };
        match pc.pull(&q, &spec).await {
            Ok(r) if r.code == rs::SUCCESS => {
                record_consumed(&ctl.shared, &r.messages);
                offset = r.next_offset;
            }
            Ok(r) if r.code == rs::PULL_OFFSET_MOVED || r.code == rs::PULL_RETRY_IMMEDIATELY => offset = r.next_offset,
            Ok(_) => {}
            Err(_) => crate::rt::sleep(Duration::from_millis(100)).await,
        }
    }
}
