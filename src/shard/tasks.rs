//! The broker's background tasks on one shard, registered by name in a [`TaskRegistry`]: delay-level
//! and timer delivery, transaction check-back, long-poll expiry, offset persistence, metrics
//! publication, client expiry, and the control-plane poll. The store's own tasks (flusher,
//! pre-writer, checkpointer, retention) are started and stopped by the store (`store::tasks`).

// libc calls (each with its SAFETY comment): the crate denies unsafe code elsewhere.
#![allow(unsafe_code)]

use super::registry::TaskRegistry;
use crate::broker::Broker;
use crate::broker::clients::expire_clients;
use crate::rt::sleep;
use crate::store::tasks::{StoreHooks, StoreTasks};
use std::rc::Rc;
use std::time::Duration;

/// Consumer offsets (and schedule/timer progress) are written this often (RocketMQ's 5 s).
const OFFSETS_EVERY: Duration = Duration::from_secs(5);
/// Long-poll deadline check: a held pull is answered at most this late.
const POLL_EXPIRY_EVERY: Duration = Duration::from_millis(100);
/// Client liveness scan (RocketMQ's 10 s).
const CLIENT_SCAN_EVERY: Duration = Duration::from_secs(10);
/// Metrics hand-off to the endpoint (its rates are per second).
const METRICS_EVERY: Duration = Duration::from_secs(1);

/// Starts the store's tasks, with flush timings going to the shard's metrics.
pub fn start_store(b: &Rc<Broker>) -> StoreTasks {
    let m = b.clone();
    b.store.start(StoreHooks { shard: b.shard, on_flush: Box::new(move |us| m.metrics.flush(us)) })
}

/// Starts the broker's background tasks.
pub fn spawn_all(b: &Rc<Broker>) -> TaskRegistry {
    let mut reg = TaskRegistry::default();
    for level in 1..=b.delay_levels() as u32 {
        reg.spawn(format!("delay-level-{level}"), crate::broker::schedule::run_level(b.clone(), level));
    }
    reg.spawn("timer", crate::broker::timer::run(b.clone()));
    let t = b.clone();
    reg.spawn("transaction-check", async move {
        crate::broker::transaction::recover(&t).await;
        let timeout = Duration::from_millis(t.cfg.transaction_timeout_ms);
        loop {
            sleep(Duration::from_millis(t.cfg.transaction_check_interval_ms.max(100))).await;
            if t.delivers_parked() {
                crate::broker::transaction::check_round(&t, timeout).await;
            }
        }
    });
    let p = b.clone();
    reg.spawn("poll-expiry", async move {
        loop {
            // With no pull parked there is no deadline to check: wait for the next one to park.
            let seen = p.pull_parked.generation();
            if p.polls.borrow().len() == 0 {
                p.pull_parked.wait_past(seen).await;
            }
            sleep(POLL_EXPIRY_EVERY).await;
            p.expire_pollers(crate::rt::now());
        }
    });
    let o = b.clone();
    reg.every("persist-offsets", OFFSETS_EVERY, move || {
        persist_progress(&o);
        async {}
    });
    let m = b.clone();
    reg.every("metrics", METRICS_EVERY, move || {
        publish_metrics(&m);
        async {}
    });
    let c = b.clone();
    let expiry = Duration::from_secs(b.cfg.client_expiry_secs);
    reg.every("client-expiry", CLIENT_SCAN_EVERY, move || {
        expire_clients(&c, expiry);
        async {}
    });
    tracing::debug!(shard = b.shard, tasks = ?reg.names(), "background tasks started");
    reg
}

/// Consumer offsets, delay-level and timer progress, to their files.
fn persist_progress(b: &Broker) {
    b.offsets.borrow_mut().persist();
    b.schedule.borrow_mut().persist();
    b.timer.borrow_mut().persist();
}

/// Hands this shard's counters to the metrics endpoint (control plane).
fn publish_metrics(b: &Broker) {
    let (msgs_in, msgs_out) = b.metrics.totals();
    b.metrics.rates.borrow_mut().sample(std::time::Instant::now(), msgs_in, msgs_out);
    let mut snap = b.metrics.inner.borrow().clone();
    snap.log = b.store.log().stats();
    snap.long_poll_waiters = b.polls.borrow().len() as u64;
    snap.timers_pending = b.timer.borrow().pending() as u64;
    snap.delay_pending = crate::broker::schedule::pending(b);
    snap.transactions_discarded = b.transactions.borrow().discarded.get();
    snap.transaction_check_rounds = b.transactions.borrow().rounds.get();
    snap.damaged_reads = b.store.damaged_reads();
    snap.cq_entries_in_memory = b.store.entries_in_memory() as u64;
    snap.cq_cold_reads = b.store.cold_reads();
    (snap.index_entries_in_memory, snap.index_sealed_files, snap.index_files_damaged) = b.store.index_stats();
    snap.connections_refused = b.connections_refused.get();
    let g = &b.store.replicas;
    use crate::store::replicas::ReplicaRole;
    snap.replica_role = match g.role() {
        ReplicaRole::Single => 0,
        ReplicaRole::Master => 1,
        ReplicaRole::Slave => 2,
    };
    snap.replica_epoch = u64::from(g.epoch());
    snap.in_sync_replicas = if g.role() == ReplicaRole::Master { g.in_sync_slaves() as u64 + 1 } else { 0 };
    snap.replication_lag_bytes = g.max_lag(b.store.log().flushed_pos());
    snap.replication_lag_seconds = g.max_lag_time(crate::rt::now()).as_secs_f64();
    (snap.elections, snap.fenced) = (g.became_master.get(), g.fenced.get());
    snap.acl_denied = b.acl_denied.get();
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
        sleep(crate::broker::control::CONTROL_POLL).await;
    }
}

/// How long a stopping shard waits for the requests it is handling to be answered: the longest a
/// handler waits on a client (a reply pushed to its requester, 3 s) with room to write the answer.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(5);

/// Graceful stop: stop taking requests, answer parked pulls, wait until every request being handled
/// is answered on its socket (at most `SHUTDOWN_DRAIN`), stop the broker's tasks, then the store's
/// (last flush and checkpoint), and persist offsets.
pub async fn shutdown(b: &Rc<Broker>, mut tasks: TaskRegistry, store_tasks: StoreTasks) {
    crate::net::drain::stop_taking_requests();
    b.expire_pollers(crate::rt::now() + Duration::from_secs(3600));
    if !crate::net::drain::drained(SHUTDOWN_DRAIN).await {
        tracing::warn!(
            shard = b.shard,
            owed = crate::net::drain::owed(),
            "stopping with answers not yet written after {SHUTDOWN_DRAIN:?}"
        );
    }
    tasks.shutdown();
    store_tasks.stop(&b.store).await;
    persist_progress(b);
    // The saves above went to the writer thread: wait for them off the executor.
    crate::rt::blocking(crate::broker::config_file::flush_background_writes).await;
}
