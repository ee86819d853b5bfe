//! [`Inference`]: hands windows to model worker threads off the FutureSDR executor, never
//! stalling the stream.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use futuresdr::prelude::*;
use futuresdr::runtime::dev::prelude::*;

use super::wakeup::Wakeup;
use super::worker::{Bearing, Worker, WorkerMsg};
use super::{Classified, Fault, Window};
use crate::dsp::doa::{DoaEstimator, DoaMethod};
use crate::infer::Model;
use crate::infer::card::OutputKind;
use crate::telemetry::Metrics;

/// How the inference stage of one model is set up.
#[derive(Debug, Clone)]
pub struct InferenceSettings {
    /// Windows per batch at most.
    pub batch_size: usize,
    /// Longest wait of a window for its batch to fill.
    pub max_wait: Duration,
    /// Windows queued for the workers; beyond it new windows are dropped and counted.
    pub queue_capacity: usize,
    /// Direction finding for multi-channel windows, when the model has an array: run on every
    /// window, beside the model's own angles when it gives them.
    pub bearing: Option<(DoaEstimator, DoaMethod)>,
    /// Wait for queue space instead of dropping: for sources that can be held back (a replay
    /// or generator running as fast as possible), never for a live or paced stream.
    pub backpressure: bool,
}

/// Classifies windows on worker threads, one [`Model`] session each.
///
/// Windows go into a bounded queue; a full queue drops the window and counts it
/// (`specwatch_windows_dropped_total{reason="queue_full"}`) — unless the source can be held
/// back ([`InferenceSettings::backpressure`], a fast replay), when the block stops taking input
/// until the workers catch up. Also dropped and counted:  a window with a sample
/// that is not finite (`reason="nonfinite"`) and, at shutdown, every window not yet classified
/// (`reason="shutdown"`). When its input ends, it waits for the windows in flight before it
/// finishes, so a replay loses nothing.
///
/// # Stream Inputs
///
/// `input`: [`Window`]s.
///
/// # Stream Outputs
///
/// `output`: [`Classified`] windows (in batch order per worker).
///
/// # Usage
/// ```no_run
/// # use std::time::Duration;
/// # use specwatch::flowgraph::Inference;
/// # use specwatch::flowgraph::InferenceSettings;
/// # use specwatch::infer::{Model, RuntimeOptions};
/// # let metrics = specwatch::telemetry::Metrics::new();
/// let model = Model::load("models/amc128.json".as_ref(), &RuntimeOptions::default()).expect("model");
/// let settings = InferenceSettings {
///     batch_size: 32,
///     max_wait: Duration::from_millis(20),
///     queue_capacity: 1024,
///     bearing: None,
///     backpressure: false,
/// };
/// let inference = Inference::new(vec![model], &settings, metrics, Default::default());
/// ```
#[derive(Block)]
pub struct Inference {
    #[input]
    input: slab::Reader<Window>,
    #[output]
    output: slab::Writer<Classified>,
    queue: Option<Sender<Window>>,
    results: Receiver<WorkerMsg>,
    wakeup: Wakeup,
    workers: Vec<JoinHandle<()>>,
    shutdown: Arc<AtomicBool>,
    in_flight: usize,
    pending: VecDeque<Classified>,
    backpressure: bool,
    model: String,
    metrics: Arc<Metrics>,
    fault: Fault,
}

impl Inference {
    /// Starts one worker thread per model session in `sessions` (all of the same card).
    ///
    /// # Panics
    /// When `sessions` is empty.
    pub fn new(
        sessions: Vec<Model>,
        settings: &InferenceSettings,
        metrics: Arc<Metrics>,
        fault: Fault,
    ) -> Self {
        assert!(
            !sessions.is_empty(),
            "an inference block needs a model session"
        );
        let model = sessions[0].card().name.clone();
        let (queue, queue_rx) = crossbeam_channel::bounded(settings.queue_capacity.max(1));
        let (results_tx, results) = crossbeam_channel::unbounded();
        let wakeup = Wakeup::default();
        let shutdown = Arc::new(AtomicBool::new(false));
        let bearing = settings.bearing.as_ref().map(|(e, m)| Bearing {
            estimator: Arc::new(e.clone()),
            method: *m,
        });
        let model_gives_azimuth = sessions[0]
            .card()
            .outputs
            .iter()
            .any(|o| matches!(o.kind, OutputKind::Azimuth | OutputKind::AzimuthElevation));
        if bearing.is_some() && model_gives_azimuth {
            metrics.register_bearing_comparison(&model);
        }
        let workers = sessions
            .into_iter()
            .enumerate()
            .map(|(i, session)| {
                let worker = Worker {
                    model: session,
                    queue: queue_rx.clone(),
                    results: results_tx.clone(),
                    wakeup: wakeup.clone(),
                    batch_size: settings.batch_size,
                    max_wait: settings.max_wait,
                    bearing: bearing.clone(),
                    shutdown: shutdown.clone(),
                    metrics: metrics.clone(),
                };
                std::thread::Builder::new()
                    .name(format!("infer-{model}-{i}"))
                    .spawn(move || worker.run())
                    .expect("spawn an inference worker thread")
            })
            .collect();
        Self {
            input: Default::default(),
            output: {
                let mut w = slab::Writer::default();
                super::hand_over_at_once(&mut w);
                w
            },
            queue: Some(queue),
            results,
            wakeup,
            workers,
            shutdown,
            in_flight: 0,
            pending: VecDeque::new(),
            backpressure: settings.backpressure,
            model,
            metrics,
            fault,
        }
    }

    fn dropped(&self, reason: &str, n: u64) {
        if n > 0 {
            self.metrics
                .windows_dropped_total
                .with_label_values(&[self.model.as_str(), reason])
                .inc_by(n);
        }
    }

    /// Takes what the workers sent back.
    fn collect(&mut self) -> Result<()> {
        while let Ok(msg) = self.results.try_recv() {
            match msg {
                WorkerMsg::Done(c) => {
                    self.in_flight = self.in_flight.saturating_sub(1);
                    self.pending.push_back(c);
                }
                WorkerMsg::Dropped(reason) => {
                    self.in_flight = self.in_flight.saturating_sub(1);
                    self.dropped(reason, 1);
                }
                WorkerMsg::Failed { windows, message } => {
                    self.in_flight = self.in_flight.saturating_sub(windows);
                    return Err(self
                        .fault
                        .record(format!("model '{}': {message}", self.model)));
                }
            }
        }
        Ok(())
    }
}

impl Kernel for Inference {
    async fn work(
        &mut self,
        io: &mut WorkIo,
        _mo: &mut MessageOutputs,
        _meta: &mut BlockMeta,
    ) -> Result<()> {
        let input = self.input.slice();
        let mut taken = input.len();
        let mut held_back = false;
        let (mut queue_full, mut nonfinite) = (0u64, 0u64);
        if let Some(queue) = &self.queue {
            for (i, w) in input.iter().enumerate() {
                if !w.iq.iter().all(|s| s.re.is_finite() && s.im.is_finite()) {
                    nonfinite += 1;
                    continue;
                }
                match queue.try_send(w.clone()) {
                    Ok(()) => self.in_flight += 1,
                    Err(TrySendError::Full(_)) if self.backpressure => {
                        taken = i;
                        held_back = true;
                        break;
                    }
                    Err(TrySendError::Full(_)) => queue_full += 1,
                    Err(TrySendError::Disconnected(_)) => {
                        return Err(self.fault.record(format!(
                            "model '{}': every inference worker has stopped",
                            self.model
                        )));
                    }
                }
            }
        }
        self.input.consume(taken);
        self.dropped("queue_full", queue_full);
        self.dropped("nonfinite", nonfinite);

        self.collect()?;
        let out = self.output.slice();
        let n = out.len().min(self.pending.len());
        for slot in out.iter_mut().take(n) {
            if let Some(c) = self.pending.pop_front() {
                *slot = c;
            }
        }
        self.output.produce(n);

        if held_back {
            // Woken when a worker has taken windows and sent results back.
            io.block_on(self.wakeup.wait());
            return Ok(());
        }
        if self.input.finished() && self.input.slice().is_empty() {
            // No more windows: closing the queue lets the workers run their last partial
            // batches and exit.
            self.queue = None;
            if self.in_flight == 0 && self.pending.is_empty() {
                io.finished = true;
                return Ok(());
            }
        }
        if !self.pending.is_empty() && n > 0 {
            io.call_again = true;
        } else if self.in_flight > 0 {
            io.block_on(self.wakeup.wait());
        }
        Ok(())
    }

    async fn deinit(&mut self, _mo: &mut MessageOutputs, _meta: &mut BlockMeta) -> Result<()> {
        self.shutdown.store(true, Ordering::Release);
        self.queue = None;
        for w in self.workers.drain(..) {
            if w.join().is_err() {
                error!("model '{}': an inference worker panicked", self.model);
            }
        }
        // Whatever is left was classified too late or never: counted, not lost silently.
        let mut late = self.pending.len() as u64;
        self.pending.clear();
        while let Ok(msg) = self.results.try_recv() {
            match msg {
                WorkerMsg::Done(_) => late += 1,
                WorkerMsg::Dropped(reason) => self.dropped(reason, 1),
                WorkerMsg::Failed { windows, .. } => late += windows as u64,
            }
        }
        self.dropped("shutdown", late);
        self.in_flight = 0;
        Ok(())
    }
}
