//! The background tasks of one shard, all on its own executor: the flusher (group commit), the segment
//! pre-writer, checkpoints (blocking file I/O on glommio's blocking pool), retention and the disk-full
//! check, offset persistence, long-poll expiry, client expiry, and the control-plane poll.

use crate::broker::Broker;
use crate::broker::clients::notify_ids_changed;
use crate::store::{EXIT_STORE_POISONED, now_ms};
use glommio::Task;
use glommio::timer::sleep;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Retention and disk-full checks: appends are refused within this time of the disk filling up, and
/// resume within it once space returns.
const RETENTION_EVERY: Duration = Duration::from_secs(1);
/// Checkpoint period: bounds the log replayed at start-up.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// Consumer offsets are written this often (RocketMQ's 5 s).
const OFFSETS_EVERY: Duration = Duration::from_secs(5);
/// Long-poll deadline check: a held pull is answered at most this late.
const POLL_EXPIRY_EVERY: Duration = Duration::from_millis(100);
/// Client liveness scan (RocketMQ's 10 s).
const CLIENT_SCAN_EVERY: Duration = Duration::from_secs(10);

async fn flusher(b: Rc<Broker>) {
    loop {
        b.store.log().wait_for_work().await;
        let start = Instant::now();
        let result = b.store.log().flush_once().await;
        if let Ok(true) = result {
            b.metrics.flush(start.elapsed().as_micros() as u64);
        }
        if let Err(e) = result {
            tracing::error!(shard = b.shard, error = %e, "commit-log write or fdatasync failed: stopping the process to protect data");
            eprintln!("ringmq: shard {}: {e}; exiting with code {EXIT_STORE_POISONED}", b.shard);
            std::process::exit(EXIT_STORE_POISONED);
        }
    }
}

async fn prewriter(b: Rc<Broker>) {
    loop {
        if b.store.log().needs_next_segment() {
            if let Err(e) = b.store.log().prepare_next().await {
                tracing::error!(shard = b.shard, error = %e, "cannot pre-write the next segment; will retry");
                sleep(Duration::from_secs(1)).await;
            }
        } else {
            sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn checkpointer(b: Rc<Broker>) {
    loop {
        sleep(CHECKPOINT_EVERY).await;
        checkpoint(&b).await;
    }
}

async fn checkpoint(b: &Broker) {
    let Some(job_owned) = b.store.checkpoint_job() else {
        return;
    };
    let (job_back, result) = glommio::executor()
        .spawn_blocking(move || {
            let r = job_owned.run();
            (job_owned, r)
        })
        .await;
    b.store.checkpoint_finished(&job_back, &result);
}

async fn retention(b: Rc<Broker>) {
    loop {
        if let Err(e) = b.store.run_retention(now_ms()).await {
            tracing::error!(shard = b.shard, error = %e, "retention failed");
        }
        sleep(RETENTION_EVERY).await;
    }
}

async fn transaction_checker(b: Rc<Broker>) {
    crate::broker::transaction::recover(&b).await;
    let timeout = Duration::from_millis(b.cfg.transaction_timeout_ms);
    loop {
        sleep(Duration::from_millis(b.cfg.transaction_check_interval_ms.max(100))).await;
        crate::broker::transaction::check_round(&b, timeout).await;
    }
}

async fn housekeeping(b: Rc<Broker>) {
    let mut last_offsets = Instant::now();
    let mut last_clients = Instant::now();
    let mut last_metrics = Instant::now();
    let expiry = Duration::from_secs(b.cfg.client_expiry_secs);
    loop {
        sleep(POLL_EXPIRY_EVERY).await;
        b.expire_pollers(Instant::now());
        if last_offsets.elapsed() >= OFFSETS_EVERY {
            last_offsets = Instant::now();
            b.offsets.borrow_mut().persist();
            b.schedule.borrow_mut().persist();
            b.timer.borrow_mut().persist();
        }
        if last_metrics.elapsed() >= Duration::from_secs(1) {
            last_metrics = Instant::now();
            publish_metrics(&b);
        }
        if last_clients.elapsed() >= CLIENT_SCAN_EVERY {
            last_clients = Instant::now();
            let changed = b.clients.borrow_mut().expire(expiry);
            for g in changed {
                tracing::info!(group = %g, "dropped consumers silent for longer than the expiry");
                notify_ids_changed(&b, &g);
            }
        }
    }
}

/// Hands this shard's counters to the metrics endpoint (control plane).
fn publish_metrics(b: &Broker) {
    let (msgs_in, msgs_out) = b.metrics.totals();
    b.metrics.rates.borrow_mut().sample(std::time::Instant::now(), msgs_in, msgs_out);
    let mut snap = b.metrics.inner.borrow().clone();
    snap.log = b.store.log().stats();
    snap.long_poll_waiters = b.polls.borrow().len() as u64;
    snap.timers_pending = b.timer.borrow().pending() as u64;
    snap.transactions_discarded = b.transactions.borrow().discarded.get();
    snap.damaged_reads = b.store.damaged_reads();
    snap.connections_refused = b.connections_refused.get();
    snap.connections = b.connections.get();
    snap.disk_full = b.store.disk_full().is_some();
    let committed = b.offsets.borrow().entries();
    let mut lag: Vec<_> = committed
        .into_iter()
        .map(|(g, t, q, off)| {
            let max = b.store.queue_bounds(&t, q).1;
            (g, t, q, max.saturating_sub(off))
        })
        .collect();
    // Bounded label cardinality: past the cap only the queues furthest behind are exported.
    let cap = b.cfg.max_lag_series_per_shard;
    snap.lag_series_dropped = lag.len().saturating_sub(cap) as u64;
    if lag.len() > cap {
        lag.select_nth_unstable_by(cap, |a, b| b.3.cmp(&a.3));
        lag.truncate(cap);
    }
    snap.lag = lag;
    // SAFETY: gettid has no preconditions.
    snap.thread_id = unsafe { libc::gettid() };
    b.control.metrics.publish(b.shard, snap);
}

/// Starts the background tasks; dropping the returned handles cancels them.
pub fn spawn_all(b: &Rc<Broker>) -> Vec<Task<()>> {
    let levels =
        (1..=b.delay_levels() as u32).map(|l| glommio::spawn_local(crate::broker::schedule::run_level(b.clone(), l)));
    let mut tasks: Vec<Task<()>> = levels.collect();
    tasks.extend([
        glommio::spawn_local(flusher(b.clone())),
        glommio::spawn_local(prewriter(b.clone())),
        glommio::spawn_local(checkpointer(b.clone())),
        glommio::spawn_local(retention(b.clone())),
        glommio::spawn_local(housekeeping(b.clone())),
        glommio::spawn_local(transaction_checker(b.clone())),
        glommio::spawn_local(crate::broker::timer::run(b.clone())),
    ]);
    tasks
}

/// Applies topic changes from other shards until shutdown is requested.
pub async fn control_loop(b: &Rc<Broker>) {
    let mut cursor = 0;
    while !b.control.is_shutdown() {
        let mut upserts = Vec::new();
        for ev in b.control.topic_events(b.shard, &mut cursor) {
            if let Some(tc) = ev.upsert {
                upserts.push(tc);
            }
            if let Some(name) = ev.delete
                && b.topics.borrow_mut().remove(&name)
            {
                b.store.delete_topic(&name);
                b.publish_registration();
            }
        }
        b.upsert_topics(upserts, false);
        sleep(super::control::CONTROL_POLL).await;
    }
}

/// Graceful stop: answer parked pulls, let in-flight requests finish, flush, checkpoint, persist.
pub async fn shutdown(b: &Rc<Broker>) {
    b.expire_pollers(Instant::now() + Duration::from_secs(3600));
    sleep(Duration::from_millis(200)).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.store.log().flush_wanted() && Instant::now() < deadline {
        sleep(Duration::from_millis(5)).await;
    }
    checkpoint(b).await;
    b.offsets.borrow_mut().persist();
    b.schedule.borrow_mut().persist();
    b.timer.borrow_mut().persist();
    // The saves above went to the writer thread: wait for them off the executor.
    glommio::executor().spawn_blocking(crate::broker::config_file::flush_background_writes).await;
}
