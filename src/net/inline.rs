//! Running a request's handler at once, on the connection's read loop, and spawning a task only for
//! the handlers that cannot finish there (issue 15, part 2: no task per request where the handler
//! completes synchronously).
//!
//! Most requests complete in their first poll: an async send, a pull that finds messages or parks,
//! a heartbeat, an offset commit. Spawning a task for each costs a task header, a run-queue push and
//! a scheduler pass before the answer is even queued; polling the handler in place costs none of
//! that, and its answer joins the others of the same read batch in the writer's next write.
//!
//! A handler that is still pending after its first poll (a `flush = sync` send waiting for its
//! group commit, a read from disk) moves into a task that finishes it. What it registered during
//! that first poll must still reach the task, whichever way the future stores its waker (some of
//! ours keep the waker of their first pending poll only, `store::log::appender::Durable`), so the
//! handler is always polled with a [`Forward`] waker: a wake before the task exists is remembered,
//! a wake after reaches the task's own waker. The task polls the handler only when it was woken.
//!
//! Allocation: the handler future is boxed (as a spawned task's would be). The forwarding waker is
//! kept per thread and reused while nothing held on to it, so a handler that completes at once
//! allocates no waker; a pending one takes it into its task and the next request makes a new one.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

/// A waker that remembers a wake until its task exists and then passes wakes on to that task.
/// `Send + Sync` because a waker may be woken from any thread (the blocking pool's completions).
#[derive(Default)]
struct Forward {
    woken: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for Forward {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = task.as_ref() {
            w.wake_by_ref();
        }
    }
}

impl Forward {
    /// From now on wakes reach `waker` (the task that finishes the handler).
    fn follow(&self, waker: &Waker) {
        let mut task = self.task.lock().unwrap_or_else(|e| e.into_inner());
        if !task.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *task = Some(waker.clone());
        }
    }
}

thread_local! {
    /// A forwarding waker no handler holds on to, kept for the next request on this thread.
    static SPARE: std::cell::RefCell<Option<(Arc<Forward>, Waker)>> = const { std::cell::RefCell::new(None) };
}

fn take_spare() -> (Arc<Forward>, Waker) {
    let spare = SPARE.with(|s| s.borrow_mut().take());
    spare.unwrap_or_else(|| {
        let forward = Arc::new(Forward::default());
        let waker = Waker::from(forward.clone());
        (forward, waker)
    })
}

/// Keeps `forward` for the next request when no clone of its waker survived the handler (the
/// handler is done, so a clone kept somewhere could still wake it later, spuriously, if reused).
fn keep_spare(forward: Arc<Forward>, waker: Waker) {
    if Arc::strong_count(&forward) == 2 {
        forward.woken.store(false, Ordering::Relaxed);
        SPARE.with(|s| *s.borrow_mut() = Some((forward, waker)));
    }
}

/// Polls `fut` once, here and now. `None` when it completed; otherwise the future that finishes it,
/// for the caller to spawn.
pub fn poll_now<F>(fut: F) -> Option<impl Future<Output = ()> + 'static>
where
    F: Future<Output = ()> + 'static,
{
    let mut fut: Pin<Box<F>> = Box::pin(fut);
    let (forward, waker) = take_spare();
    if fut.as_mut().poll(&mut Context::from_waker(&waker)).is_ready() {
        drop(fut);
        keep_spare(forward, waker);
        return None;
    }
    Some(async move {
        std::future::poll_fn(|cx| {
            forward.follow(cx.waker());
            if !forward.woken.swap(false, Ordering::AcqRel) {
                return Poll::Pending; // not woken since the last poll: nothing to do
            }
            fut.as_mut().poll(&mut Context::from_waker(&waker))
        })
        .await
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;

    /// A test executor's waker: counts wakes.
    struct Count(std::sync::atomic::AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_handler_that_completes_at_once_runs_in_place_and_leaves_its_waker_for_the_next() {
        let ran = Rc::new(Cell::new(false));
        let r = ran.clone();
        assert!(poll_now(async move { r.set(true) }).is_none());
        assert!(ran.get(), "ran before poll_now returned");
        let before = SPARE.with(|s| s.borrow().as_ref().map(|(f, _)| Arc::as_ptr(f)));
        assert!(poll_now(async {}).is_none());
        let after = SPARE.with(|s| s.borrow().as_ref().map(|(f, _)| Arc::as_ptr(f)));
        assert!(before.is_some() && before == after, "the forwarding waker is reused");
    }

    /// Like `Durable`: stores the waker of its first pending poll only, and is done once `ready`.
    fn registers_once(slot: Rc<RefCell<Option<Waker>>>, ready: Rc<Cell<bool>>) -> impl Future<Output = ()> {
        std::future::poll_fn(move |cx| {
            if ready.get() {
                return Poll::Ready(());
            }
            if slot.borrow().is_none() {
                *slot.borrow_mut() = Some(cx.waker().clone());
            }
            Poll::Pending
        })
    }

    #[test]
    fn a_wake_registered_in_the_first_poll_reaches_the_task_that_finishes_the_handler() {
        let (slot, ready, done) = (Rc::new(RefCell::new(None)), Rc::new(Cell::new(false)), Rc::new(Cell::new(false)));
        let d = done.clone();
        let inner = registers_once(slot.clone(), ready.clone());
        let rest = poll_now(async move {
            inner.await;
            d.set(true);
        });
        let mut rest = Box::pin(rest.expect("pending after its first poll"));
        assert!(slot.borrow().is_some(), "registered during the in-place poll");
        // The spare was taken by the pending handler: the next request gets another one.
        assert!(SPARE.with(|s| s.borrow().is_none()));

        let count = Arc::new(Count(Default::default()));
        let task_waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&task_waker);
        assert!(rest.as_mut().poll(&mut cx).is_pending(), "not woken yet: the handler is not polled");
        ready.set(true);
        slot.borrow_mut().take().expect("registered").wake();
        assert_eq!(count.0.load(Ordering::Relaxed), 1, "the first poll's waker wakes the task");
        assert!(rest.as_mut().poll(&mut cx).is_ready());
        assert!(done.get());
    }

    #[test]
    fn a_wake_during_the_first_poll_is_not_lost_before_the_task_exists() {
        let polls = Rc::new(Cell::new(0));
        let p = polls.clone();
        let rest = poll_now(async move {
            futures_lite::future::yield_now().await; // wakes itself, then is pending
            p.set(p.get() + 1);
        });
        let mut rest = Box::pin(rest.expect("pending after yielding"));
        let count = Arc::new(Count(Default::default()));
        let task_waker = Waker::from(count);
        assert!(rest.as_mut().poll(&mut Context::from_waker(&task_waker)).is_ready());
        assert_eq!(polls.get(), 1);
    }

    #[test]
    fn a_waker_kept_past_completion_is_not_reused() {
        let kept = Rc::new(RefCell::new(None));
        let k = kept.clone();
        SPARE.with(|s| s.borrow_mut().take());
        assert!(
            poll_now(std::future::poll_fn(move |cx| {
                *k.borrow_mut() = Some(cx.waker().clone());
                Poll::Ready(())
            }))
            .is_none()
        );
        assert!(SPARE.with(|s| s.borrow().is_none()), "a clone is still out there");
        drop(kept);
    }
}
