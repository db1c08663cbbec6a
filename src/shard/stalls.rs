//! Reactor stalls: how long a shard may run tasks before it polls for I/O again (the task quota,
//! glommio's preempt timer), and an optional report of every run that went far past it.
//!
//! glommio runs the ready tasks of a queue until its preempt timer fires, polling the network only
//! between such runs; a task that yields is simply run again. With glommio's default of 100 ms, a
//! large request handled in yielding chunks still kept every other connection of the shard waiting
//! for tens of ms (a 3 000-group heartbeat: 40–60 ms). Seastar's task quota is 0.5 ms; ringmq's
//! `task_quota_us` defaults to the same.
//!
//! `stall_report_ms` (0 = off) installs glommio's stall detector: a run longer than the quota plus
//! that many ms is logged at WARN by glommio (target `glommio::executor::stall`: executor, task
//! queue, overage, unresolved backtrace addresses). It costs two timer syscalls per scheduler run,
//! so it is a diagnosis tool, off by default.

// libc calls (each with its SAFETY comment): the crate denies unsafe code elsewhere.
#![allow(unsafe_code)]

use crate::rt::executor::{StallDetectionHandler, TaskQueueHandle};
use std::time::Duration;

/// glommio's stall detector with our threshold; glommio's own handler logs the stall.
#[derive(Debug)]
pub struct StallReporter {
    pub threshold: Duration,
}

impl StallDetectionHandler for StallReporter {
    fn threshold(&self, _queue: TaskQueueHandle, _expected: Duration) -> Option<Duration> {
        Some(self.threshold)
    }
}

/// How long a busy-polling shard spins before it parks: an hour, so that it parks only when it has
/// been idle that long (and then wakes on the next event as usual).
const BUSY_POLL_SPIN: Duration = Duration::from_secs(3600);

/// The executor settings for stalls and polling from the configuration.
pub fn configure(
    builder: crate::rt::executor::LocalExecutorBuilder,
    cfg: &crate::config::Config,
) -> crate::rt::executor::LocalExecutorBuilder {
    let mut builder = builder.preempt_timer(Duration::from_micros(cfg.task_quota_us.max(50)));
    if cfg.busy_poll {
        // glommio spins (polling its rings, timers and channels without a syscall to sleep) for
        // this long before it parks; a pinned shard then practically never parks.
        builder = builder.spin_before_park(BUSY_POLL_SPIN);
    }
    match cfg.stall_report_ms {
        0 => builder,
        ms => builder.detect_stalls(Some(Box::new(StallReporter { threshold: Duration::from_millis(ms) }))),
    }
}

/// The CPUs no shard is pinned to (shard `i` runs on CPU `i mod cores`), or `None` when the shards
/// take every core. The control plane — name server, registrar, config writer, metrics, blocking
/// pools — runs there, so that its bursts (parsing and encoding a 3 000-topic registration, encoding
/// config files) never take a shard's core: on 2 cores with one shard they preempted the shard for
/// milliseconds at a time.
pub fn control_cpus(shards: usize) -> Option<Vec<usize>> {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let spare: Vec<usize> = (shards.min(cores)..cores).collect();
    (!spare.is_empty()).then_some(spare)
}

/// Restricts the calling thread (and the threads it spawns later) to `cpus`.
pub fn pin_current_thread(cpus: &[usize]) -> std::io::Result<()> {
    // SAFETY: `cpu_set_t` is plain data; zeroed is the empty set, CPU_SET writes inside it, and
    // sched_setaffinity only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Where a shard's blocking pool runs: the control CPUs when there are any, else anywhere.
pub fn blocking_pool(control: Option<&[usize]>) -> crate::rt::executor::PoolPlacement {
    let set = control.and_then(|cpus| {
        let set = crate::rt::executor::CpuSet::online().ok()?.filter(|l| cpus.contains(&l.cpu));
        (!set.is_empty()).then_some(set)
    });
    match set {
        Some(set) => crate::rt::executor::PoolPlacement::Fenced(1, set),
        None => crate::rt::executor::PoolPlacement::Unbound(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: glommio 0.9.0 parked the executor when its preempt timer had already expired
    /// before the first task queue ran, although tasks were runnable; nothing woke it again, and a
    /// shard start hung before its ready banner (~1 start in 10 with a 50 µs quota on the
    /// development VM). A 1 µs quota expires before almost every run, so the unpatched executor
    /// hangs here at once; the patched one (vendor/glommio/PATCHES.md) finishes.
    #[test]
    fn an_expired_quota_never_parks_an_executor_with_runnable_tasks() {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let ex = crate::rt::executor::LocalExecutorBuilder::default()
            .name("quota-race")
            .preempt_timer(Duration::from_micros(1))
            .spawn(move || async move {
                let mut sum = 0u64;
                for i in 0..2_000u64 {
                    sum += crate::rt::spawn(async move { i }).await;
                }
                let _ = done_tx.send(sum);
            })
            .expect("executor starts");
        let sum = done_rx.recv_timeout(Duration::from_secs(20)).expect("the executor parked with runnable tasks");
        assert_eq!(sum, (0..2_000u64).sum::<u64>());
        ex.join().expect("executor ends");
    }
}
