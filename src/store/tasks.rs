//! The store's own background tasks, on its shard's executor: the flusher (group commit), the segment
//! pre-writer, the checkpointer and retention (with the disk-full check). [`Store::start`] spawns
//! them and [`StoreTasks::stop`] ends them after a last flush and checkpoint, so whoever owns a store
//! (a shard, a test, a benchmark) gets durable appends without knowing its internals.
//!
//! Failure rule: a failed commit-log write or fdatasync is never retried or ignored — the flusher
//! stops the process (`EXIT_STORE_POISONED`), because the kernel may have dropped the dirty pages and
//! a later successful fsync would claim data durable that is not.

use super::io::Disk;
use super::{EXIT_STORE_POISONED, Store};
use crate::rt;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Checkpoint period: bounds the log replayed at start-up.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// Retention and disk-full checks: appends are refused within this time of the disk filling up, and
/// resume within it once space returns.
const RETENTION_EVERY: Duration = Duration::from_secs(1);
/// Longest the pre-writer waits between looks at whether the next segment is due: appends raise
/// `prewrite_wanted` the moment it is, so this only bounds a missed signal (the segment is needed
/// minutes ahead at any sustained rate: a quarter of a segment).
const PREWRITE_CHECK_EVERY: Duration = Duration::from_secs(1);
/// Longest a graceful stop waits for the flusher to write what is pending.
const STOP_FLUSH_WAIT: Duration = Duration::from_secs(5);

/// What the owner of a store wants to hear from its tasks.
pub struct StoreHooks {
    /// Shard number, for logs.
    pub shard: usize,
    /// Called with the duration (µs) of every flush that wrote something.
    pub on_flush: Box<dyn Fn(u64)>,
}

/// The running tasks of one store; dropping it cancels them without a final flush.
pub struct StoreTasks {
    tasks: Vec<(&'static str, rt::Task<()>)>,
}

impl StoreTasks {
    /// Names of the running tasks, in start order.
    pub fn names(&self) -> Vec<&'static str> {
        self.tasks.iter().map(|(n, _)| *n).collect()
    }

    /// Graceful stop: waits (bounded) for the flusher to write what is pending, cancels the tasks and
    /// writes a last checkpoint, so the next start replays nothing.
    pub async fn stop<D: Disk>(self, store: &Store<D>) {
        let deadline = Instant::now() + STOP_FLUSH_WAIT;
        while store.log().flush_wanted() && Instant::now() < deadline {
            rt::sleep(Duration::from_millis(5)).await;
        }
        // A checkpoint in flight is let finish, not cancelled: cancelled, it would have taken index
        // entries without recording where they went, and the last checkpoint below would write
        // over them (no await between this wait and the drops, so none starts in between).
        // Woken by the job's end, not a sleep: a test's manual clock moves no sleep here.
        while store.checkpointing.get() && Instant::now() < deadline + STOP_FLUSH_WAIT {
            store.checkpoint_done.wait_at_most(Duration::from_millis(50)).await;
        }
        for (_, t) in self.tasks.into_iter().rev() {
            drop(t);
        }
        store.checkpoint_in_background().await;
    }
}

impl<D: Disk> Store<D> {
    /// Spawns the store's tasks on the current executor.
    pub fn start(self: &Rc<Self>, hooks: StoreHooks) -> StoreTasks {
        let hooks = Rc::new(hooks);
        let s = self.clone();
        let h = hooks.clone();
        let flusher = rt::spawn(async move { flusher(&s, &h).await });
        let s = self.clone();
        let h = hooks.clone();
        let prewriter = rt::spawn(async move { prewriter(&s, &h).await });
        let s = self.clone();
        let checkpointer = rt::spawn(async move {
            loop {
                rt::sleep(CHECKPOINT_EVERY).await;
                s.checkpoint_in_background().await;
            }
        });
        let s = self.clone();
        let retention = rt::spawn(async move {
            loop {
                if let Err(e) = s.run_retention(rt::now_ms()).await {
                    tracing::error!(shard = hooks.shard, error = %e, "retention failed");
                }
                rt::sleep(RETENTION_EVERY).await;
            }
        });
        StoreTasks {
            tasks: vec![
                ("flusher", flusher),
                ("prewriter", prewriter),
                ("checkpointer", checkpointer),
                ("retention", retention),
            ],
        }
    }

    /// Writes a checkpoint now (on the blocking pool: it is file-system work), if anything changed.
    /// One at a time: a job cancelled mid-flight (it never is, see `StoreTasks::stop`) leaves the
    /// flag set and no later checkpoint runs in this process, so the files stay as the last
    /// completed one left them.
    pub async fn checkpoint_in_background(&self) {
        if self.checkpointing.get() {
            return;
        }
        let Some(job) = self.checkpoint_job() else {
            return;
        };
        self.checkpointing.set(true);
        let (job, result) = rt::blocking(move || {
            // A panic on the blocking pool would never answer (and leave `checkpointing` set): it
            // fails this job instead.
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run()))
                .unwrap_or_else(|_| Err(std::io::Error::other("the checkpoint job panicked")));
            (job, r)
        })
        .await;
        self.checkpoint_finished(&job, &result);
        self.checkpointing.set(false);
        self.checkpoint_done.notify();
    }
}

async fn flusher<D: Disk>(store: &Store<D>, hooks: &StoreHooks) {
    loop {
        store.log().wait_for_work().await;
        let start = Instant::now();
        match store.log().flush_once().await {
            Ok(true) => (hooks.on_flush)(start.elapsed().as_micros() as u64),
            Ok(false) => {}
            Err(e) => {
                tracing::error!(shard = hooks.shard, error = %e,
                    "commit-log write or fdatasync failed: stopping the process to protect data");
                eprintln!("ringmq: shard {}: {e}; exiting with code {EXIT_STORE_POISONED}", hooks.shard);
                std::process::exit(EXIT_STORE_POISONED);
            }
        }
    }
}

async fn prewriter<D: Disk>(store: &Store<D>, hooks: &StoreHooks) {
    loop {
        if !store.log().prewrite_due() {
            store.log().prewrite_wanted.wait_at_most(PREWRITE_CHECK_EVERY).await;
            continue;
        }
        if let Err(e) = store.log().run_prewrite().await {
            tracing::error!(shard = hooks.shard, error = %e, "cannot pre-write the log ahead of appends; will retry");
            rt::sleep(Duration::from_secs(1)).await;
        }
    }
}
