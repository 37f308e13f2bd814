//! A single-threaded "something changed" signal: tasks wait until a condition over shared state
//! holds, and whoever changes that state calls [`Signal::notify`]. Waiting is cancel-safe, so it
//! composes with timeouts without losing anything (the state lives elsewhere).

use std::cell::RefCell;
use std::future::poll_fn;
use std::task::{Poll, Waker};

#[derive(Default)]
pub(crate) struct Signal {
    wakers: RefCell<Vec<Waker>>,
}

impl Signal {
    /// Wakes every waiter; each re-checks its own condition.
    pub(crate) fn notify(&self) {
        for waker in self.wakers.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    /// Resolves with the first `Some` that `check` returns, re-checking after every notify.
    pub(crate) async fn wait_until<T>(&self, mut check: impl FnMut() -> Option<T>) -> T {
        poll_fn(|cx| {
            if let Some(value) = check() {
                return Poll::Ready(value);
            }
            let mut wakers = self.wakers.borrow_mut();
            if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                wakers.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }
}
