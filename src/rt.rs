//! The runtime seam: what the broker and the shard take from their executor — spawning, sleeping,
//! the wall clock, the blocking pool and TCP — in one place, so that glommio stays behind this module
//! and `store/io.rs`, and so that tests can run a `Broker<FakeDisk>` in-process with a clock they move.
//!
//! Everything here runs on the calling thread's executor (a shard's, or a test's `LocalExecutor`); no
//! type crosses cores. The manual clock is per thread: installing it in one test affects only the
//! executor running on that thread.

#[cfg(test)]
use std::cell::RefCell;
use std::future::Future;
#[cfg(test)]
use std::pin::Pin;
#[cfg(test)]
use std::task::{Context, Poll, Waker};
use std::time::Duration;

pub use glommio::net::{TcpListener, TcpStream};
pub use glommio::sync::{Semaphore, StaticPermit};
pub use glommio::task::JoinHandle;

/// Building executors: what a shard, the name server, the load generator and the probes configure
/// (placement on a CPU, the preemption quota, stall detection, the blocking pool). Only `rt` names
/// the runtime crate; everything else uses these names.
pub mod executor {
    pub use glommio::{
        CpuSet, ExecutorJoinHandle, LocalExecutorBuilder, Placement, PoolPlacement, StallDetectionHandler,
        TaskQueueHandle,
    };
}

/// A spawned task; dropping it cancels the task unless it was detached.
pub type Task<T> = glommio::Task<T>;

/// Spawns `f` on the current executor (the calling shard's, never another core's).
pub fn spawn<F>(f: F) -> Task<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    glommio::spawn_local(f)
}

/// Shares of the catch-up task queue against the default queue's 1 000: while both have work, a
/// catch-up reader gets about a tenth of the core and appends, tail reads and every other request
/// the rest; alone it gets all of it.
const CATCH_UP_SHARES: usize = 100;

/// Spawns `f` into the executor's catch-up queue (created on first use), which the scheduler runs
/// behind the default queue by [`CATCH_UP_SHARES`]: reads of a backlog from disk (issue 17, part 4)
/// never take a core's time from the producers and tail consumers beside them.
pub fn spawn_catch_up<F>(f: F) -> Task<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    use glommio::{Latency, Shares, TaskQueueHandle};
    thread_local! {
        /// The queue and the executor it belongs to (a thread may run executors one after another).
        static QUEUE: std::cell::Cell<Option<(usize, TaskQueueHandle)>> = const { std::cell::Cell::new(None) };
    }
    let ex = glommio::executor();
    let queue = QUEUE.with(|q| match q.get() {
        Some((id, h)) if id == ex.id() => h,
        _ => {
            let h = ex.create_task_queue(Shares::Static(CATCH_UP_SHARES), Latency::NotImportant, "catch-up");
            q.set(Some((ex.id(), h)));
            h
        }
    });
    match glommio::spawn_local_into(f, queue) {
        Ok(task) => task,
        Err(e) => unreachable!("the catch-up queue was created on this executor: {e}"),
    }
}

/// Runs `f` on the executor's blocking pool (file-system calls, large frees, JSON of big bodies) so
/// the shard's thread keeps serving.
pub async fn blocking<F, R>(f: F) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    glommio::executor().spawn_blocking(f).await
}

/// Wall-clock milliseconds since the epoch (RocketMQ's timestamps: born, store, due times), or the
/// manual clock's time where a test installed one on this thread.
pub fn now_ms() -> i64 {
    #[cfg(test)]
    if let Some(ms) = MANUAL.with(|m| m.borrow().as_ref().map(|c| c.now_ms)) {
        return ms;
    }
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The monotonic clock (lease and expiry ages, long-poll deadlines), or — where a test installed a
/// manual clock on this thread — an instant that moves with it.
pub fn now() -> std::time::Instant {
    #[cfg(test)]
    if let Some(t) = MANUAL.with(|m| {
        m.borrow().as_ref().map(|c| c.base + Duration::from_millis(c.now_ms.saturating_sub(c.start_ms).max(0) as u64))
    }) {
        return t;
    }
    std::time::Instant::now()
}

/// Sleeps for `d` on the current executor, or until the manual clock has moved `d` forward where a
/// test installed one on this thread.
pub async fn sleep(d: Duration) {
    #[cfg(test)]
    if let Some(deadline) = MANUAL.with(|m| m.borrow().as_ref().map(|c| c.now_ms.saturating_add(d.as_millis() as i64)))
    {
        return ManualSleep { deadline }.await;
    }
    glommio::timer::sleep(d).await
}

/// A wake-up for one task waiting on this executor: [`Signal::notify`] wakes it, or makes its next
/// wait return at once. Tasks that sleep until their next deadline (delay levels, timers, the
/// pre-writer) wait on one so that new work reaches them without polling: an idle shard wakes only
/// for real deadlines.
#[derive(Default)]
pub struct Signal {
    raised: std::cell::Cell<bool>,
    waiter: std::cell::RefCell<Option<std::task::Waker>>,
}

impl Signal {
    pub fn notify(&self) {
        self.raised.set(true);
        if let Some(w) = self.waiter.borrow_mut().take() {
            w.wake();
        }
    }

    /// Waits for a notification (one raised since the last wait counts).
    pub async fn wait(&self) {
        std::future::poll_fn(|cx| {
            if self.raised.replace(false) {
                return std::task::Poll::Ready(());
            }
            *self.waiter.borrow_mut() = Some(cx.waker().clone());
            std::task::Poll::Pending
        })
        .await
    }

    /// Waits for a notification or for `d`, whichever comes first.
    pub async fn wait_at_most(&self, d: Duration) {
        futures_lite::future::or(self.wait(), sleep(d)).await
    }
}

/// A wake-up for any number of tasks on this executor: each waits for the beacon to be raised past
/// the generation it saw (the commit log raises one per group commit; replication streams and acks
/// wait on it). Waiters that are polled again without a raise are not stored twice.
#[derive(Default)]
pub struct Beacon {
    generation: std::cell::Cell<u64>,
    waiters: std::cell::RefCell<Vec<std::task::Waker>>,
}

impl Beacon {
    pub fn raise(&self) {
        self.generation.set(self.generation.get() + 1);
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation.get()
    }

    /// Waits until the beacon is raised past `seen`.
    pub async fn wait_past(&self, seen: u64) {
        std::future::poll_fn(|cx| {
            if self.generation.get() > seen {
                return std::task::Poll::Ready(());
            }
            let mut w = self.waiters.borrow_mut();
            if !w.iter().any(|x| x.will_wake(cx.waker())) {
                w.push(cx.waker().clone());
            }
            std::task::Poll::Pending
        })
        .await
    }

    /// Waits until the beacon is raised past `seen`, or for `d`.
    pub async fn wait_past_at_most(&self, seen: u64, d: Duration) {
        futures_lite::future::or(self.wait_past(seen), sleep(d)).await
    }
}

/// A clock that moves only when a test moves it (see [`manual_clock`]); compiled into tests only.
#[cfg(test)]
struct ManualClock {
    now_ms: i64,
    /// Where the clock started, and the monotonic instant [`now`] reports for that start.
    start_ms: i64,
    base: std::time::Instant,
    /// Sleepers waiting for the clock to pass their deadline. A test holds few (one per timer task),
    /// so a vector scanned on each advance is enough.
    sleepers: Vec<(i64, Waker)>,
}

#[cfg(test)]
thread_local! {
    static MANUAL: RefCell<Option<ManualClock>> = const { RefCell::new(None) };
}

#[cfg(test)]
struct ManualSleep {
    deadline: i64,
}

#[cfg(test)]
impl Future for ManualSleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        MANUAL.with(|m| match m.borrow_mut().as_mut() {
            Some(c) if c.now_ms < self.deadline => {
                c.sleepers.push((self.deadline, cx.waker().clone()));
                Poll::Pending
            }
            _ => Poll::Ready(()),
        })
    }
}

/// Installs a manual clock at `start_ms` on this thread; it is removed when the guard drops.
#[cfg(test)]
pub fn manual_clock(start_ms: i64) -> ManualClockGuard {
    MANUAL.with(|m| {
        *m.borrow_mut() =
            Some(ManualClock { now_ms: start_ms, start_ms, base: std::time::Instant::now(), sleepers: Vec::new() })
    });
    ManualClockGuard(())
}

/// Removes the manual clock when dropped; [`ManualClockGuard::advance`] moves it.
#[cfg(test)]
pub struct ManualClockGuard(());

#[cfg(test)]
impl ManualClockGuard {
    /// Moves the clock forward by `ms` and wakes every sleeper whose deadline has passed.
    pub fn advance(&self, ms: i64) {
        let due: Vec<Waker> = MANUAL.with(|m| {
            let mut m = m.borrow_mut();
            let Some(c) = m.as_mut() else { return Vec::new() };
            c.now_ms = c.now_ms.saturating_add(ms);
            let now = c.now_ms;
            let (due, keep): (Vec<_>, Vec<_>) = c.sleepers.drain(..).partition(|(d, _)| *d <= now);
            c.sleepers = keep;
            due.into_iter().map(|(_, w)| w).collect()
        });
        for w in due {
            w.wake();
        }
    }

    pub fn now_ms(&self) -> i64 {
        now_ms()
    }
}

#[cfg(test)]
impl Drop for ManualClockGuard {
    fn drop(&mut self) {
        let sleepers = MANUAL.with(|m| m.borrow_mut().take()).map(|c| c.sleepers).unwrap_or_default();
        for (_, w) in sleepers {
            w.wake();
        }
    }
}

/// Gives the executor back when the running task has used up its time slice (the preempt timer
/// fired, or I/O is waiting), so requests queued behind a long one (a catch-up pull of a thousand
/// records) are not held up by all of it. A no-op otherwise, and outside an executor.
pub async fn yield_if_needed() {
    glommio::yield_if_needed().await
}

/// Lets every task that is ready run before returning (tests: after an advance, before asserting).
#[cfg(test)]
pub async fn yield_now() {
    glommio::yield_if_needed().await;
    futures_lite::future::yield_now().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catch_up_tasks_run_in_a_queue_of_their_own_on_each_executor_of_a_thread() {
        for _ in 0..2 {
            // A thread may run executors one after another: each gets its own catch-up queue.
            glommio::LocalExecutorBuilder::default().make().expect("executor").run(async {
                let default = glommio::executor().current_task_queue();
                let (queue, out) = spawn_catch_up(async { (glommio::executor().current_task_queue(), 7) }).await;
                assert_eq!(out, 7);
                assert!(queue != default, "a catch-up task runs outside the default queue");
                let again = spawn_catch_up(async { glommio::executor().current_task_queue() }).await;
                assert!(again == queue, "one catch-up queue per executor");
            });
        }
    }

    #[test]
    fn manual_clock_wakes_sleepers_only_when_moved_past_their_deadline() {
        glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let clock = manual_clock(1_000);
                assert_eq!(now_ms(), 1_000);
                let started = now();
                let done = std::rc::Rc::new(std::cell::Cell::new(false));
                let d = done.clone();
                let t = spawn(async move {
                    sleep(Duration::from_millis(500)).await;
                    d.set(true);
                });
                yield_now().await;
                clock.advance(499);
                yield_now().await;
                assert!(!done.get(), "woke before its deadline");
                clock.advance(1);
                t.await;
                assert!(done.get());
                assert_eq!(now_ms(), 1_500);
                assert_eq!(now() - started, Duration::from_millis(500), "the monotonic clock moves with it");
                drop(clock);
                assert!(now_ms() > 1_000_000_000_000, "the wall clock is back once the guard drops");
            })
            .expect("executor")
            .join()
            .expect("join");
    }
}
