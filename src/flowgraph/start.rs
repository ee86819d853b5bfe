//! [`StartSignal`]: holds the sources back until every block of the flowgraph is initialised.
//!
//! FutureSDR sends `Initialize` to the blocks one after another, and each block enters its work
//! loop as soon as it is initialised itself. A source can therefore run, and with a capture that
//! fits its output buffer even finish, while a block downstream still waits for its `Initialize`.
//! That block drops the `StreamInputDone` that arrives before `Initialize` (FutureSDR logs
//! "unhandled message during init") and then waits for ever on an input that has already ended:
//! the flowgraph never finishes.
//!
//! The station makes a [`start_signal`] pair, gives the [`StartSignal`] to every source and opens
//! the [`StartTrigger`] once `Runtime::start` has returned, which is after every block reported
//! itself initialised. Only sources start data moving, so no stream can end before its readers
//! listen. A source's first `work()` call waits on [`StartSignal::wait_for_start`]; later calls
//! pay one boolean test.

use futuresdr::futures::FutureExt;
use futuresdr::futures::channel::oneshot;
use futuresdr::futures::future::Shared;
use futuresdr::runtime::dev::WorkIo;

/// The sources' side: tells whether the flowgraph runs (see the module doc).
#[derive(Debug, Clone)]
pub struct StartSignal {
    opened: Shared<oneshot::Receiver<()>>,
    /// Set once the signal was seen open, so later checks cost nothing.
    seen_open: bool,
}

/// The station's side: opening it (or dropping it) releases every source.
#[derive(Debug)]
pub struct StartTrigger(oneshot::Sender<()>);

/// A closed signal and the trigger that opens it.
pub fn start_signal() -> (StartTrigger, StartSignal) {
    let (tx, rx) = oneshot::channel();
    (
        StartTrigger(tx),
        StartSignal {
            opened: rx.shared(),
            seen_open: false,
        },
    )
}

impl StartTrigger {
    /// Releases the sources.
    pub fn open(self) {
        // A receiver already gone means no source is left to release.
        let _ = self.0.send(());
    }
}

impl StartSignal {
    /// A signal that is open from the start, for a source run outside a station (whoever
    /// builds that flowgraph must make sure its readers are initialised first).
    pub fn already_open() -> Self {
        let (trigger, signal) = start_signal();
        trigger.open();
        signal
    }

    /// Whether the trigger was opened or dropped.
    pub fn is_open(&mut self) -> bool {
        if !self.seen_open {
            self.seen_open = self.opened.clone().now_or_never().is_some();
        }
        self.seen_open
    }

    /// For a source's `work()`: `true` once the flowgraph runs; otherwise makes `io` wait for
    /// the signal, and the caller returns from `work()` without producing.
    pub fn wait_for_start(&mut self, io: &mut WorkIo) -> bool {
        if self.is_open() {
            return true;
        }
        io.block_on(self.opened.clone().map(|_| ()));
        false
    }
}

impl Default for StartSignal {
    fn default() -> Self {
        Self::already_open()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signal_opens_when_the_trigger_is_opened_or_dropped() {
        let (trigger, mut signal) = start_signal();
        let mut copy = signal.clone();
        assert!(!signal.is_open());
        let waiter = std::thread::spawn(move || {
            let _ = futuresdr::futures::executor::block_on(copy.opened.clone());
            copy.is_open()
        });
        std::thread::sleep(std::time::Duration::from_millis(20));
        trigger.open();
        assert!(waiter.join().expect("waiter thread"));
        assert!(signal.is_open());

        // A source's work(): a closed signal makes the call wait on it and produce nothing;
        // an open one lets it through without waiting.
        let (trigger, mut signal) = start_signal();
        let mut io = WorkIo {
            call_again: false,
            finished: false,
            block_on: None,
        };
        assert!(!signal.wait_for_start(&mut io));
        let wait = io
            .block_on
            .take()
            .expect("a closed signal makes work() wait on it");
        trigger.open();
        futuresdr::futures::executor::block_on(wait);
        assert!(signal.wait_for_start(&mut io));
        assert!(io.block_on.is_none(), "an open signal does not wait");

        let (trigger, mut signal) = start_signal();
        drop(trigger);
        assert!(signal.is_open());
        assert!(StartSignal::already_open().is_open());
    }
}
