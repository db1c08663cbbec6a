//! Graceful stop of one executor's connections: what is still owed to clients — requests being
//! handled and answers queued but not yet written — counted per executor (a shard's thread, or the
//! name server's), so that a stopping shard waits for exactly that work instead of a fixed pause.
//!
//! Once [`stop_taking_requests`] is called, read loops drop newly read requests unanswered (as if
//! they had arrived after the process exited: the client's request times out or its connection
//! closes, and it retries elsewhere); [`drained`] then waits for the count to reach zero.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

#[derive(Default)]
struct Owed {
    count: Cell<usize>,
    closing: Cell<bool>,
    zero: crate::rt::Signal,
}

thread_local! {
    static OWED: Rc<Owed> = Rc::new(Owed::default());
}

/// Work owed to a client on this executor; the count drops when this does. Guards merge
/// ([`Unfinished::absorb`]) so a write of many answers ends them all at once.
#[must_use]
pub struct Unfinished(usize);

impl Unfinished {
    /// One more piece of owed work.
    pub fn begin() -> Unfinished {
        OWED.with(|o| o.count.set(o.count.get() + 1));
        Unfinished(1)
    }

    /// A guard owing nothing (to absorb others into).
    pub fn none() -> Unfinished {
        Unfinished(0)
    }

    /// Takes over what `other` owes.
    pub fn absorb(&mut self, mut other: Unfinished) {
        self.0 += std::mem::take(&mut other.0);
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if self.0 == 0 {
            return;
        }
        let n = self.0;
        // At thread exit the counter may already be gone; nothing waits then.
        let _ = OWED.try_with(|o| {
            let left = o.count.get().saturating_sub(n);
            o.count.set(left);
            if left == 0 {
                o.zero.notify();
            }
        });
    }
}

/// From now on this executor's read loops drop new requests instead of handling them.
pub fn stop_taking_requests() {
    OWED.with(|o| o.closing.set(true));
}

/// True once [`stop_taking_requests`] was called on this executor.
pub fn closing() -> bool {
    OWED.with(|o| o.closing.get())
}

/// Pieces of work owed on this executor now.
pub fn owed() -> usize {
    OWED.with(|o| o.count.get())
}

/// Waits until nothing is owed on this executor, or for `limit`; true when drained.
pub async fn drained(limit: Duration) -> bool {
    let owed_here = OWED.with(Rc::clone);
    let deadline = crate::rt::now() + limit;
    while owed_here.count.get() > 0 {
        let left = deadline.saturating_duration_since(crate::rt::now());
        if left.is_zero() {
            return false;
        }
        owed_here.zero.wait_at_most(left).await;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drained_waits_for_the_last_owed_answer_and_no_longer() {
        crate::rt::executor::LocalExecutorBuilder::default()
            .spawn(|| async {
                let clock = crate::rt::manual_clock(0);
                assert!(drained(Duration::ZERO).await, "nothing owed: drained at once");
                let (a, b) = (Unfinished::begin(), Unfinished::begin());
                let mut batch = Unfinished::none();
                batch.absorb(a);
                assert_eq!(owed(), 2);
                let waiter = crate::rt::spawn(drained(Duration::from_secs(5)));
                crate::rt::yield_now().await;
                drop(batch);
                assert_eq!(owed(), 1);
                drop(b);
                assert!(waiter.await, "woken by the last one");
                let stuck = Unfinished::begin();
                let waiter = crate::rt::spawn(drained(Duration::from_secs(5)));
                crate::rt::yield_now().await;
                clock.advance(5_000);
                assert!(!waiter.await, "gives up at its limit");
                drop(stuck);
                assert!(!closing());
                stop_taking_requests();
                assert!(closing());
            })
            .expect("executor")
            .join()
            .expect("join");
    }
}
