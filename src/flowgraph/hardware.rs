//! What the hardware sources share: a receive thread that owns the device, reads it, counts
//! overflows and stream errors, and reconnects with exponential backoff — and the block side
//! that moves its chunks into the flowgraph.
//!
//! Device reads block and some device handles borrow each other (UHD's streamer borrows its
//! `Usrp`), so a *session* — open, configure, stream until an error or a stop — runs as one
//! closure on the receive thread; [`spawn`] calls it again after each error, waiting
//! `retry_backoff_ms · 2^(attempt−1)` (at most `retry_backoff_max_ms`), until `max_retries`
//! attempts in a row have failed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use super::{Fault, StreamInfo, time};
use crate::config::source::Retry;
use crate::iq::C32;
use crate::telemetry::Metrics;

/// Chunks queued between the receive thread and the block (each a device read).
const CHUNKS_QUEUED: usize = 64;

/// What a session can tell the receive loop.
pub(super) struct Session<'a> {
    tx: &'a Sender<Vec<C32>>,
    stop: &'a AtomicBool,
    info: &'a StreamInfo,
    metrics: &'a Metrics,
    /// Set once the first samples of this session arrived (resets the attempt counter).
    pub(super) delivered: bool,
}

impl Session<'_> {
    /// Whether the source is being stopped (the session should return `Ok`).
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Hands `n` samples of every channel (one slice per channel) to the flowgraph as frames.
    /// A full queue drops them and counts an overflow (the flowgraph never stalls the device).
    pub fn deliver(&mut self, per_channel: &[Vec<C32>], n: usize) {
        if n == 0 {
            return;
        }
        if !self.delivered {
            self.info.mark_start(time::now_unix_ns());
            self.delivered = true;
        }
        let channels = per_channel.len();
        let mut frames = vec![C32::new(0.0, 0.0); n * channels];
        for (c, samples) in per_channel.iter().enumerate() {
            for (i, s) in samples[..n].iter().enumerate() {
                frames[i * channels + c] = *s;
            }
        }
        match self.tx.try_send(frames) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.overflow("the flowgraph fell behind"),
            Err(TrySendError::Disconnected(_)) => self.stop.store(true, Ordering::Release),
        }
    }

    /// Counts a device (or host) overflow: samples were lost.
    pub fn overflow(&self, why: &str) {
        self.metrics
            .device_overflows_total
            .with_label_values(&[self.info.name.as_str()])
            .inc();
        tracing::debug!("source '{}': overflow ({why})", self.info.name);
    }
}

/// The block side of a receive thread.
pub(super) struct ReceiveThread {
    rx: Receiver<Vec<C32>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pending: Vec<C32>,
    at: usize,
}

/// Starts the receive thread: `session` is called (again after each error, with backoff) until
/// a stop or until `retry` gives up, which records a fault naming the source.
pub(super) fn spawn<F>(
    mut session: F,
    retry: Retry,
    info: Arc<StreamInfo>,
    metrics: Arc<Metrics>,
    fault: Fault,
) -> ReceiveThread
where
    F: FnMut(&mut Session<'_>) -> Result<(), String> + Send + 'static,
{
    let (tx, rx) = crossbeam_channel::bounded(CHUNKS_QUEUED);
    let stop = Arc::new(AtomicBool::new(false));
    let stop_thread = stop.clone();
    let thread = std::thread::Builder::new()
        .name(format!("rx-{}", info.name))
        .spawn(move || {
            let mut attempt = 0u32;
            while !stop_thread.load(Ordering::Acquire) {
                let mut s = Session {
                    tx: &tx,
                    stop: &stop_thread,
                    info: &info,
                    metrics: &metrics,
                    delivered: false,
                };
                let result = session(&mut s);
                let delivered = s.delivered;
                let up = metrics.source_up.with_label_values(&[info.name.as_str()]);
                up.set(0);
                match result {
                    Ok(()) => break,
                    Err(e) => {
                        metrics
                            .stream_errors_total
                            .with_label_values(&[info.name.as_str()])
                            .inc();
                        if delivered {
                            attempt = 0;
                        }
                        attempt += 1;
                        if !retry.allows(attempt) {
                            fault.record(format!(
                                "source '{}': {e} (gave up after {} attempt(s); max_retries = {})",
                                info.name, attempt, retry.max_retries
                            ));
                            break;
                        }
                        let wait = retry.backoff(attempt);
                        tracing::warn!(
                            "source '{}': {e}; retrying in {:.1} s (attempt {attempt})",
                            info.name,
                            wait.as_secs_f64()
                        );
                        let until = Instant::now() + wait;
                        while Instant::now() < until && !stop_thread.load(Ordering::Acquire) {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                }
            }
        })
        .expect("spawn a receive thread");
    ReceiveThread {
        rx,
        stop,
        thread: Some(thread),
        pending: Vec::new(),
        at: 0,
    }
}

/// What the block should do after [`ReceiveThread::fill`].
pub(super) enum Fill {
    /// Frames were written (call again).
    Produced(usize),
    /// Nothing yet (call again soon).
    Idle,
    /// The output has no room for a frame (wait for the downstream block).
    NoRoom,
    /// The receive thread has ended.
    Ended,
}

impl ReceiveThread {
    /// Writes queued frames into `out` (whole frames of `channels`), waiting up to 50 ms for
    /// the next chunk when none is queued. Returns how many samples were written.
    pub fn fill(&mut self, out: &mut [C32], channels: usize) -> Fill {
        if out.len() < channels {
            return Fill::NoRoom;
        }
        if self.at >= self.pending.len() {
            match self.rx.recv_timeout(Duration::from_millis(50)) {
                Ok(chunk) => {
                    self.pending = chunk;
                    self.at = 0;
                }
                Err(RecvTimeoutError::Timeout) => return Fill::Idle,
                Err(RecvTimeoutError::Disconnected) => return Fill::Ended,
            }
        }
        let n = ((out.len() / channels) * channels).min(self.pending.len() - self.at);
        if n == 0 {
            return Fill::Idle;
        }
        out[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        Fill::Produced(n)
    }

    /// Stops the receive thread and waits for it.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("a receive thread panicked");
        }
    }
}

impl Drop for ReceiveThread {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The block's `work` for a hardware source: move frames, finish when the thread ends.
macro_rules! hardware_work {
    ($self:ident, $io:ident) => {{
        if !$self.start.wait_for_start($io) {
            return Ok(());
        }
        let channels = $self.info.channels;
        let Some(rx) = $self.receiver.as_mut() else {
            $io.finished = true;
            return Ok(());
        };
        let out = $self.output.slice();
        match rx.fill(out, channels) {
            super::hardware::Fill::Produced(n) => {
                $self.output.produce(n);
                $self
                    .metrics
                    .samples_in_total
                    .with_label_values(&[$self.info.name.as_str()])
                    .inc_by((n / channels) as u64);
                $self
                    .metrics
                    .source_up
                    .with_label_values(&[$self.info.name.as_str()])
                    .set(1);
                $io.call_again = true;
            }
            super::hardware::Fill::Idle => $io.call_again = true,
            super::hardware::Fill::NoRoom => {}
            super::hardware::Fill::Ended => {
                if let Some(f) = $self.fault.get() {
                    return Err(anyhow::anyhow!(f));
                }
                $io.finished = true;
            }
        }
        Ok(())
    }};
}
pub(super) use hardware_work;
