//! A connection's queue of commands for its write loop: single-executor, so a `RefCell`ed deque and
//! one waker instead of a thread-safe channel (one allocation and several atomic operations per
//! answer saved on the unbatched send path). Lives on the connection's executor.
//!
//! Unbounded in count by itself: what it may hold is bounded by the connection's budget
//! (`max_requests_in_flight`, `max_held_bytes`), charged before a command is queued.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::task::{Poll, Waker};

pub struct OutQueue<T> {
    items: RefCell<VecDeque<T>>,
    writer: RefCell<Option<Waker>>,
    closed: Cell<bool>,
}

impl<T> Default for OutQueue<T> {
    fn default() -> Self {
        OutQueue { items: RefCell::new(VecDeque::new()), writer: RefCell::new(None), closed: Cell::new(false) }
    }
}

impl<T> OutQueue<T> {
    /// Queues `item` and wakes the writer; gives it back when the queue is closed.
    pub fn push(&self, item: T) -> Result<(), T> {
        if self.closed.get() {
            return Err(item);
        }
        self.items.borrow_mut().push_back(item);
        if let Some(w) = self.writer.borrow_mut().take() {
            w.wake();
        }
        Ok(())
    }

    /// No more pushes; the writer still gets what is queued, then `None`.
    pub fn close(&self) {
        self.closed.set(true);
        if let Some(w) = self.writer.borrow_mut().take() {
            w.wake();
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    pub fn is_empty(&self) -> bool {
        self.items.borrow().is_empty()
    }

    pub fn try_pop(&self) -> Option<T> {
        self.items.borrow_mut().pop_front()
    }

    /// The next queued item, waiting for one; `None` once closed and empty.
    pub async fn next(&self) -> Option<T> {
        std::future::poll_fn(|cx| {
            if let Some(item) = self.try_pop() {
                return Poll::Ready(Some(item));
            }
            if self.closed.get() {
                return Poll::Ready(None);
            }
            *self.writer.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_come_out_in_order_and_a_closed_queue_drains_then_ends() {
        futures_lite::future::block_on(async {
            let q = OutQueue::default();
            q.push(1).unwrap();
            q.push(2).unwrap();
            assert_eq!(q.next().await, Some(1));
            q.close();
            assert_eq!(q.push(3), Err(3));
            assert!(q.is_closed());
            assert_eq!(q.next().await, Some(2));
            assert_eq!(q.next().await, None);
        });
    }

    #[test]
    fn a_waiting_writer_is_woken_by_a_push() {
        let q = std::rc::Rc::new(OutQueue::default());
        let mut next = Box::pin({
            let q = q.clone();
            async move { q.next().await }
        });
        let waker = futures_lite::future::block_on(std::future::poll_fn(|cx| Poll::Ready(cx.waker().clone())));
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(next.as_mut().poll(&mut cx).is_pending());
        q.push(7).unwrap();
        assert_eq!(next.as_mut().poll(&mut cx), Poll::Ready(Some(7)));
    }
}
