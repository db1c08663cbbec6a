//! The shard's task registry: every background task of a shard's broker, by name, each stoppable on
//! its own, all stopped in reverse start order at shutdown. Periodic tasks are declared with their
//! period in one place ([`TaskRegistry::every`]) instead of one loop juggling several timers.
//!
//! Lives on its shard (`!Send`); a task is cancelled by dropping its handle, at its next `.await`.

use crate::rt;
use std::future::Future;
use std::time::Duration;

#[derive(Default)]
pub struct TaskRegistry {
    tasks: Vec<(String, rt::Task<()>)>,
}

impl TaskRegistry {
    /// Runs `f` until it returns or the task is stopped.
    pub fn spawn(&mut self, name: impl Into<String>, f: impl Future<Output = ()> + 'static) {
        self.tasks.push((name.into(), rt::spawn(f)));
    }

    /// Runs `tick` every `period` (after the first period), one tick at a time: a slow tick delays the
    /// next rather than overlapping it.
    pub fn every<F, Fut>(&mut self, name: impl Into<String>, period: Duration, mut tick: F)
    where
        F: FnMut() -> Fut + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        self.spawn(name, async move {
            loop {
                rt::sleep(period).await;
                tick().await;
            }
        });
    }

    /// Stops the named task; false when there is none. (Tests today; a replica's role change next.)
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn stop(&mut self, name: &str) -> bool {
        match self.tasks.iter().position(|(n, _)| n == name) {
            Some(i) => {
                drop(self.tasks.remove(i));
                true
            }
            None => false,
        }
    }

    /// Names of the running tasks, in start order.
    pub fn names(&self) -> Vec<&str> {
        self.tasks.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// Stops every task, the last started first.
    pub fn shutdown(&mut self) {
        while let Some((_, t)) = self.tasks.pop() {
            drop(t);
        }
    }
}

impl Drop for TaskRegistry {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    #[test]
    fn periodic_tasks_tick_on_the_clock_and_stop_by_name() {
        crate::rt::executor::LocalExecutorBuilder::default()
            .spawn(|| async {
                let clock = rt::manual_clock(0);
                let (a, b) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
                let mut reg = TaskRegistry::default();
                let a2 = a.clone();
                reg.every("fast", Duration::from_millis(100), move || {
                    a2.set(a2.get() + 1);
                    async {}
                });
                let b2 = b.clone();
                reg.every("slow", Duration::from_secs(1), move || {
                    b2.set(b2.get() + 1);
                    async {}
                });
                assert_eq!(reg.names(), ["fast", "slow"]);
                rt::yield_now().await;
                for _ in 0..10 {
                    clock.advance(100);
                    rt::yield_now().await;
                }
                assert_eq!((a.get(), b.get()), (10, 1));
                assert!(reg.stop("fast"));
                assert!(!reg.stop("fast"));
                clock.advance(1000);
                rt::yield_now().await;
                assert_eq!((a.get(), b.get()), (10, 2));
                reg.shutdown();
                assert!(reg.names().is_empty());
            })
            .expect("executor")
            .join()
            .expect("join");
    }
}
