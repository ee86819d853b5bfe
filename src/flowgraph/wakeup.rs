//! [`Wakeup`]: lets a worker thread wake a block that waits on the FutureSDR executor.
//!
//! The block passes [`Wakeup::wait`] to `WorkIo::block_on`; a worker calls [`Wakeup::wake`]
//! after it has queued something for the block. A wake that comes before the wait is kept, so
//! none is lost.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

use futuresdr::futures::task::AtomicWaker;

#[derive(Debug, Default)]
struct Inner {
    pending: AtomicBool,
    waker: AtomicWaker,
}

/// A wake-up signal from any thread to one async waiter (see the module doc).
#[derive(Debug, Clone, Default)]
pub struct Wakeup(Arc<Inner>);

impl Wakeup {
    /// Signals the waiter (or the next one, if none waits now).
    pub fn wake(&self) {
        self.0.pending.store(true, Ordering::Release);
        self.0.waker.wake();
    }

    /// Resolves once [`Wakeup::wake`] has been called since the last wait resolved.
    pub fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let inner = self.0.clone();
        std::future::poll_fn(move |cx| {
            if inner.pending.swap(false, Ordering::AcqRel) {
                return Poll::Ready(());
            }
            inner.waker.register(cx.waker());
            if inner.pending.swap(false, Ordering::AcqRel) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wake_from_another_thread_resolves_the_wait() {
        let w = Wakeup::default();
        let w2 = w.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            w2.wake();
        });
        futuresdr::futures::executor::block_on(w.wait());
        t.join().expect("waker thread");
        // A wake before the wait is not lost.
        w.wake();
        futuresdr::futures::executor::block_on(w.wait());
    }
}
