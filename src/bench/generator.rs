//! The producers and consumers of `ringmq bench`, each on its own glommio executor (io_uring sockets,
//! no thread per request or queue). Producers pipeline over one [`AsyncConnection`] per broker, up to
//! `--window` in flight when running flat out, or open-loop at the fixed `--rate` (publish-delay
//! latency then shows how far the generator fell behind its schedule); consumers long-poll their
//! share of the queues. Routes and request encoding come from the blocking client.

use super::load::{Shared, Workload, bench_message, record_consumed};
use crate::client::async_conn::AsyncConnection;
use crate::client::consumer::{PULL_SUSPEND_MS, PullSpec, TAG, pull_result};
use crate::client::{Message, MessageQueue, Producer, PullConsumer};
use crate::protocol::codes::response as rs;
use glommio::{LocalExecutorBuilder, Placement};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Longer than a held pull (`PULL_SUSPEND_MS`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
const PULL_BATCH: u32 = 32;
/// In-flight cap at a fixed rate: open loop, but bounded so a stalled broker cannot exhaust memory.
const OPEN_LOOP_CAP: u64 = 100_000;

/// Runs one producer on a new glommio executor on the calling thread until `stop`.
pub(super) fn run_producer(w: Workload, topics: Vec<String>, shared: Arc<Shared>, stop: Arc<AtomicBool>, rate: f64) {
    let ex = match LocalExecutorBuilder::new(Placement::Unbound).name("bench-producer").make() {
        Ok(ex) => ex,
        Err(e) => {
            eprintln!("bench: cannot start a glommio executor: {e} (see README: memlock)");
            return;
        }
    };
    ex.run(produce(w, topics, shared, stop, rate));
}

async fn produce(w: Workload, topics: Vec<String>, shared: Arc<Shared>, stop: Arc<AtomicBool>, rate: f64) {
    let p = Producer::new(&w.namesrv, "ringmq-bench-producer");
    let queues: Vec<MessageQueue> =
        topics.iter().flat_map(|t| p.context().route(t, true).map(|r| r.write_queues).unwrap_or_default()).collect();
    let mut conns: HashMap<String, Rc<AsyncConnection>> = HashMap::new();
    let mut targets = Vec::with_capacity(queues.len());
    for q in &queues {
        let Ok(addr) = p.context().broker_addr(&q.topic, &q.broker_name) else { continue };
        if !conns.contains_key(&addr) {
            match AsyncConnection::connect(&addr).await {
                Ok(c) => {
                    conns.insert(addr.clone(), Rc::new(c));
                }
                Err(e) => eprintln!("bench: {e}"),
            }
        }
        if let Some(c) = conns.get(&addr) {
            targets.push((q.clone(), c.clone()));
        }
    }
    if targets.is_empty() {
        eprintln!("bench: no reachable writable queue in the routes of {topics:?}");
        return;
    }
    let window = if rate > 0.0 { OPEN_LOOP_CAP } else { w.window.max(1) as u64 };
    let slots = Rc::new(glommio::sync::Semaphore::new(window));
    let start = Instant::now();
    let mut sent: u64 = 0;
    let mut qi = rand::random::<u32>() as usize;
    while !stop.load(Ordering::Relaxed) {
        let intended = if rate > 0.0 {
            let at = start + Duration::from_secs_f64(sent as f64 / rate);
            let now = Instant::now();
            if at > now {
                glommio::timer::sleep(at - now).await;
            }
            at
        } else {
            Instant::now()
        };
        let Ok(slot) = slots.acquire_static_permit(1).await else { break };
        qi += 1;
        let (mq, conn) = &targets[qi % targets.len()];
        let msgs: Vec<Message> =
            (0..w.batch.max(1)).map(|_| bench_message(&mq.topic, w.message_size, w.deliver_after_ms)).collect();
        let cmd = if msgs.len() > 1 { p.batch_command(mq, &msgs) } else { p.send_command(mq, &msgs[0]) };
        let t0 = Instant::now();
        shared.record(|h| &mut h.delay, t0.saturating_duration_since(intended).as_micros() as u64);
        let n = msgs.len() as u64;
        let (sh, conn) = (shared.clone(), conn.clone());
        glommio::spawn_local(async move {
            let answer = conn.request(cmd, REQUEST_TIMEOUT).await;
            drop(slot);
            match answer {
                Ok(r) if r.code == rs::SUCCESS => {
                    sh.published.fetch_add(n, Ordering::Relaxed);
                    sh.record(|h| &mut h.publish, t0.elapsed().as_micros() as u64);
                }
                _ => {
                    sh.errors.fetch_add(n, Ordering::Relaxed);
                }
            }
        })
        .detach();
        sent += n;
    }
    // Let requests in flight finish (bounded), so the last period counts them.
    let drain = slots.acquire(window);
    let _ = futures_lite::future::or(async { drain.await.map_err(|_| ()) }, async {
        glommio::timer::sleep(Duration::from_secs(3)).await;
        Err(())
    })
    .await;
}

/// Runs consumer `index` of `count` on a new glommio executor on the calling thread until `stop`. It
/// takes every `count`-th queue of the topics — a static split: the benchmark's consumers measure
/// the broker's read path, not a rebalancing group — starts at each queue's end, and long-polls all
/// its queues concurrently; `ready` is incremented once its start offsets are known.
pub(super) fn run_consumer(
    w: Workload,
    topics: Vec<String>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    (index, count): (usize, usize),
    ready: Arc<AtomicUsize>,
) {
    let ex = match LocalExecutorBuilder::new(Placement::Unbound).name("bench-consumer").make() {
        Ok(ex) => ex,
        Err(e) => {
            eprintln!("bench: cannot start a glommio executor: {e} (see README: memlock)");
            ready.fetch_add(1, Ordering::SeqCst);
            return;
        }
    };
    ex.run(async move {
        let pc = Rc::new(PullConsumer::new(&w.namesrv, "ringmq-bench-consumer"));
        let mut queues: Vec<MessageQueue> = topics.iter().flat_map(|t| pc.queues(t).unwrap_or_default()).collect();
        queues.sort();
        let mut conns: HashMap<String, Rc<AsyncConnection>> = HashMap::new();
        let mut tasks = Vec::new();
        for q in queues.into_iter().skip(index).step_by(count.max(1)) {
            let (Ok(addr), Ok(start)) = (pc.context_addr(&q), pc.max_offset(&q)) else { continue };
            if !conns.contains_key(&addr) {
                let Ok(c) = AsyncConnection::connect(&addr).await else { continue };
                conns.insert(addr.clone(), Rc::new(c));
            }
            let conn = conns[&addr].clone();
            let (pc, sh, st) = (pc.clone(), shared.clone(), stop.clone());
            tasks.push(glommio::spawn_local(pull_queue(pc, conn, q, start, sh, st)));
        }
        ready.fetch_add(1, Ordering::SeqCst);
        while !stop.load(Ordering::Relaxed) {
            glommio::timer::sleep(Duration::from_millis(50)).await;
        }
        drop(tasks); // cancels pulls still held by the broker
    });
}

/// Long-polls one queue from `offset`, recording end-to-end latency of every message.
async fn pull_queue(
    pc: Rc<PullConsumer>,
    conn: Rc<AsyncConnection>,
    q: MessageQueue,
    mut offset: u64,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        let spec = PullSpec { offset, max: PULL_BATCH, expression_type: TAG, expr: "*", suspend_ms: PULL_SUSPEND_MS };
        let cmd = pc.pull_command(&q, &spec);
        let answer = conn.request(cmd, REQUEST_TIMEOUT).await.and_then(|r| pull_result(&q, &r));
        match answer {
            Ok(r) if r.code == rs::SUCCESS => {
                record_consumed(&shared, &r.messages);
                offset = r.next_offset;
            }
            Ok(r) if r.code == rs::PULL_OFFSET_MOVED || r.code == rs::PULL_RETRY_IMMEDIATELY => offset = r.next_offset,
            Ok(_) => {}
            Err(_) => glommio::timer::sleep(Duration::from_millis(100)).await,
        }
    }
}
