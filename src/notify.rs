//! A single-core wake-up signal: tasks wait on `notified()`, `notify_all()` wakes them.
//!
//! Used for shutdown (idle connections and accept loops stop) and for "a connection closed"
//! (the accept loop resumes under `max_connections`, the worker's drain finishes). Must never be
//! shared across threads (it is `!Send`, no atomics). Invariant: a dropped waiter frees its slot,
//! so waiting once per request does not grow memory; the slots a burst of waiters grew stay until
//! `trim` (run when a burst of parking has passed, `core::release_when_quiet`).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

#[derive(Default)]
pub struct Notify {
    epoch: Cell<u64>,
    slots: RefCell<Vec<Option<Waker>>>,
    free: RefCell<Vec<usize>>,
}

impl Notify {
    pub fn notify_all(&self) {
        self.epoch.set(self.epoch.get() + 1);
        // Waking only schedules the task on this core's run queue; nothing is polled here.
        for w in self.slots.borrow_mut().iter_mut().filter_map(Option::take) {
            w.wake();
        }
    }

    /// Gives back the waiter slots a burst left (`slab::trim`).
    pub fn trim(&self) {
        crate::slab::trim_cells(&self.slots, &self.free);
    }

    /// A future that completes at the next `notify_all` after this call.
    pub fn notified(&self) -> Notified<'_> {
        Notified {
            notify: self,
            epoch: self.epoch.get(),
            slot: None,
        }
    }
}

pub struct Notified<'a> {
    notify: &'a Notify,
    epoch: u64,
    slot: Option<usize>,
}

impl Future for Notified<'_> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.notify.epoch.get() != self.epoch {
            return Poll::Ready(());
        }
        let mut slots = self.notify.slots.borrow_mut();
        let slot = match self.slot {
            Some(s) => s,
            None => {
                let s = self.notify.free.borrow_mut().pop().unwrap_or_else(|| {
                    slots.push(None);
                    slots.len() - 1
                });
                self.slot = Some(s);
                s
            }
        };
        slots[slot] = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Notified<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.slot {
            self.notify.slots.borrow_mut()[s] = None;
            self.notify.free.borrow_mut().push(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    #[test]
    fn wakes_and_reuses_slots() {
        let n = Notify::default();
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..100 {
            let mut f = Box::pin(n.notified());
            assert!(f.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(n.slots.borrow().len(), 1);
        let mut f = Box::pin(n.notified());
        assert!(f.as_mut().poll(&mut cx).is_pending());
        n.notify_all();
        assert!(f.as_mut().poll(&mut cx).is_ready());
    }

    #[test]
    fn a_trim_after_a_burst_keeps_the_waiters_that_remain() {
        let n = Notify::default();
        let mut cx = Context::from_waker(Waker::noop());
        let mut burst: Vec<_> = (0..5000).map(|_| Box::pin(n.notified())).collect();
        for f in &mut burst {
            assert!(f.as_mut().poll(&mut cx).is_pending());
        }
        let mut last = burst.pop().unwrap();
        drop(burst);
        n.trim();
        assert_eq!(n.slots.borrow().len(), 5000, "the last waiter's slot stays");
        assert!(
            n.free.borrow().last() == Some(&0),
            "the lowest free slot comes next"
        );
        n.notify_all();
        assert!(
            last.as_mut().poll(&mut cx).is_ready(),
            "still woken after the trim"
        );
        drop(last);
        n.trim();
        assert!(n.slots.borrow().is_empty() && n.slots.borrow().capacity() <= 64);
    }
}
