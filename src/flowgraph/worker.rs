//! The inference worker: a plain thread that owns one [`Model`] session, takes windows from
//! the bounded queue the [`super::Inference`] block fills, batches them ([`Batcher`]: by size or
//! by the oldest window's wait), runs the model, estimates SNR and — with an array estimator —
//! the window's bearing beside the model's own angles, and sends [`Classified`] windows back,
//! waking the block.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::wakeup::Wakeup;
use super::{Classified, Window};
use crate::dsp::doa::{DoaEstimator, DoaMethod};
use crate::dsp::snr::window_snr_db;
use crate::infer::{Batcher, Model};
use crate::telemetry::Metrics;

/// What a worker sends back: exactly one message per window it took from the queue.
#[derive(Debug)]
pub(super) enum WorkerMsg {
    /// A classified window.
    Done(Classified),
    /// A window not classified, with the reason label (`shutdown`).
    Dropped(&'static str),
    /// The model failed on a batch of `windows` windows; the run cannot go on.
    Failed { windows: usize, message: String },
}

/// Direction finding for multi-channel windows.
#[derive(Debug, Clone)]
pub(super) struct Bearing {
    pub estimator: Arc<DoaEstimator>,
    pub method: DoaMethod,
}

/// Everything one worker thread needs.
pub(super) struct Worker {
    pub model: Model,
    pub queue: Receiver<Window>,
    pub results: Sender<WorkerMsg>,
    pub wakeup: Wakeup,
    pub batch_size: usize,
    pub max_wait: Duration,
    pub bearing: Option<Bearing>,
    pub shutdown: Arc<AtomicBool>,
    pub metrics: Arc<Metrics>,
}

impl Worker {
    /// Runs until the queue is closed and drained (or shut down).
    pub fn run(mut self) {
        let window_size = self.model.window_size();
        let mut batcher: Batcher<Window> =
            match Batcher::new(self.batch_size, self.max_wait, window_size) {
                Ok(b) => b,
                Err(e) => {
                    let _ = self.results.send(WorkerMsg::Failed {
                        windows: 0,
                        message: e.to_string(),
                    });
                    self.wakeup.wake();
                    return;
                }
            };
        loop {
            let next = match batcher.deadline() {
                Some(d) => self.queue.recv_deadline(d),
                None => self
                    .queue
                    .recv()
                    .map_err(|_| RecvTimeoutError::Disconnected),
            };
            match next {
                Ok(w) => {
                    if self.shutdown.load(Ordering::Acquire) {
                        self.send(WorkerMsg::Dropped("shutdown"));
                        continue;
                    }
                    if w.iq.len() < window_size {
                        self.send(WorkerMsg::Failed {
                            windows: 1,
                            message: format!(
                                "window of {} samples for a model taking {window_size}",
                                w.iq.len()
                            ),
                        });
                        continue;
                    }
                    // Windows are channel-major, so the model's channels (the first ones) are
                    // the window's first `window_size` samples; any further channels serve
                    // direction finding only.
                    let iq = w.iq.clone();
                    // The size was checked and the batch is run whenever it fills, so this
                    // push cannot fail.
                    let _ = batcher.push(&iq[..window_size], w, Instant::now());
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    if !batcher.is_empty() {
                        self.run_batch(&mut batcher);
                    }
                    break;
                }
            }
            if batcher.is_ready(Instant::now()) {
                self.run_batch(&mut batcher);
            }
        }
    }

    fn send(&self, msg: WorkerMsg) {
        // The block outlives its workers' sends unless the flowgraph was torn down, in which
        // case nobody is left to tell.
        let _ = self.results.send(msg);
        self.wakeup.wake();
    }

    fn run_batch(&mut self, batcher: &mut Batcher<Window>) {
        let n = batcher.len();
        let name = self.model.card().name.clone();
        if self.shutdown.load(Ordering::Acquire) {
            for _ in 0..n {
                let _ = self.results.send(WorkerMsg::Dropped("shutdown"));
            }
            self.wakeup.wake();
            batcher.clear();
            return;
        }
        let channels = self.model.card().channels;
        let model_samples = self.model.window_size();
        let snrs: Vec<f32> = batcher
            .tags()
            .iter()
            .map(|w| {
                w.snr_db
                    .unwrap_or_else(|| window_snr_db(&w.iq[..model_samples], channels))
            })
            .collect();
        let t0 = Instant::now();
        let Worker {
            model,
            results,
            bearing,
            metrics,
            ..
        } = self;
        match model.run_with_snr(batcher.windows(), n, &snrs) {
            Ok(out) => {
                metrics
                    .inference_latency_seconds
                    .with_label_values(&[name.as_str()])
                    .observe(t0.elapsed().as_secs_f64());
                metrics
                    .inference_batch_size
                    .with_label_values(&[name.as_str()])
                    .observe(n as f64);
                metrics
                    .windows_classified_total
                    .with_label_values(&[name.as_str()])
                    .inc_by(n as u64);
                for (i, w) in batcher.tags().iter().enumerate() {
                    let top_k = out
                        .top_k(i, 3)
                        .into_iter()
                        .map(|c| (c.class, c.probability))
                        .collect();
                    let (model_azimuth_deg, model_elevation_deg) =
                        (out.azimuth_deg(i), out.elevation_deg(i));
                    // The array estimator runs on every window that has its channels, also
                    // when the model gives angles, so the two can be compared.
                    let doa = match bearing.as_ref() {
                        Some(b) if w.iq.len() > model_samples / channels => b
                            .estimator
                            .estimate_from_snapshots(b.method, &w.iq, 1)
                            .ok()
                            .and_then(|est| est.first().copied())
                            .map(|first| (first, b.method)),
                        _ => None,
                    };
                    let c = Classified {
                        start: w.start,
                        top_k,
                        snr_db: snrs[i],
                        model_azimuth_deg,
                        model_elevation_deg,
                        doa_azimuth_deg: doa.map(|(e, _)| e.azimuth_deg as f32),
                        doa_elevation_deg: doa.map(|(e, _)| e.elevation_deg as f32),
                        doa_method: doa.map(|(_, m)| m),
                    };
                    if let (Some(learned), Some(array)) = (c.model_azimuth_deg, c.doa_azimuth_deg) {
                        metrics.observe_bearing_disagreement(&name, learned, array);
                    }
                    let _ = results.send(WorkerMsg::Done(c));
                }
            }
            Err(e) => {
                let _ = results.send(WorkerMsg::Failed {
                    windows: n,
                    message: e.to_string(),
                });
            }
        }
        self.wakeup.wake();
        batcher.clear();
    }
}
