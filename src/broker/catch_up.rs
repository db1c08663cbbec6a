//! The pace of catch-up reads on one shard (`catch_up_read_mib_per_sec`, off by default): an
//! operator's trade of drain rate for the latency of the producers and tail readers beside it.
//! Catch-up reads already run behind everything else on the core (`rt::spawn_catch_up`), but on a
//! saturated machine a drain at full speed still takes the kernel's and the other cores' time
//! (TCP send, the load's own core: docs/BENCHMARKS.md, issue 17 part 4); this bounds its bytes a
//! second. After a read served B bytes, the next one starts no sooner than B / rate later.
//! Lives on the shard of its broker.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// The longest a catch-up read waits for its turn: many readers at once each owe the budget, and
/// waiting out all of their debt could outlast a client's pull timeout (RocketMQ's is 30 s);
/// past this a read goes ahead, so the budget holds on average, not for every burst.
const MAX_TURN_WAIT: Duration = Duration::from_secs(2);

pub struct CatchUpPace {
    /// Bytes a second; 0: no pace.
    rate: u64,
    /// When the next catch-up read may start.
    next: Cell<Option<Instant>>,
    /// Reads waiting for their turn now.
    waiting: Cell<usize>,
}

impl CatchUpPace {
    pub fn new(mib_per_sec: u64) -> CatchUpPace {
        CatchUpPace { rate: mib_per_sec.saturating_mul(1 << 20), next: Cell::new(None), waiting: Cell::new(0) }
    }

    /// Catch-up reads waiting for their turn.
    pub fn waiting(&self) -> usize {
        self.waiting.get()
    }

    /// Waits until the budget allows the next catch-up read (at most [`MAX_TURN_WAIT`]).
    pub async fn wait_turn(&self) {
        let Some(next) = self.next.get().filter(|_| self.rate > 0) else { return };
        let now = crate::rt::now();
        if next > now {
            self.waiting.set(self.waiting.get() + 1);
            let _counted = Waiting(&self.waiting);
            crate::rt::sleep((next - now).min(MAX_TURN_WAIT)).await;
        }
    }

    /// Charges a catch-up read that served `bytes`.
    pub fn charge(&self, bytes: u64) {
        if self.rate == 0 || bytes == 0 {
            return;
        }
        let now = crate::rt::now();
        let from = self.next.get().map_or(now, |n| n.max(now));
        self.next.set(Some(from + Duration::from_secs_f64(bytes as f64 / self.rate as f64)));
    }
}

/// One read counted in `waiting` until its wait ends or is cancelled.
struct Waiting<'a>(&'a Cell<usize>);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn a_read_waits_out_what_the_previous_ones_served_and_no_pace_never_waits() {
        crate::rt::executor::LocalExecutorBuilder::default()
            .spawn(|| async {
                let clock = crate::rt::manual_clock(1_000);
                let pace = Rc::new(CatchUpPace::new(1)); // 1 MiB/s
                pace.charge(512 << 10); // half a second's worth
                let done = Rc::new(Cell::new(false));
                let (p, d) = (pace.clone(), done.clone());
                let waiting = crate::rt::spawn(async move {
                    p.wait_turn().await;
                    d.set(true);
                });
                crate::rt::yield_now().await;
                clock.advance(499);
                crate::rt::yield_now().await;
                assert!(!done.get(), "went ahead before its turn");
                clock.advance(2);
                waiting.await;
                assert!(done.get());

                let unpaced = CatchUpPace::new(0);
                unpaced.charge(1 << 30);
                unpaced.wait_turn().await; // returns at once: the clock does not move
            })
            .expect("executor starts")
            .join()
            .expect("the test ran");
    }

    #[test]
    fn many_readers_owing_the_budget_wait_no_longer_than_the_cap() {
        crate::rt::executor::LocalExecutorBuilder::default()
            .spawn(|| async {
                let clock = crate::rt::manual_clock(1_000);
                let pace = Rc::new(CatchUpPace::new(1));
                for _ in 0..100 {
                    pace.charge(8 << 20); // 100 pulls of 8 MiB: 800 s of debt
                }
                let p = pace.clone();
                let waiting = crate::rt::spawn(async move { p.wait_turn().await });
                crate::rt::yield_now().await;
                clock.advance(MAX_TURN_WAIT.as_millis() as i64 + 1);
                waiting.await;
            })
            .expect("executor starts")
            .join()
            .expect("the test ran");
    }
}
