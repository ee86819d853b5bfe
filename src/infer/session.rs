//! [`Model`]: an ONNX Runtime session checked against its card, fed batches of IQ windows.
//!
//! # Shapes
//! - windows: `batch × channels × window_len` complex samples, window-major then channel-major
//!   (as [`crate::dsp::frame`] cuts them).
//! - each window input: `[batch, …layout]` f32, each window written by
//!   [`Representation::write`] after [`Normalization::apply`] — the same path the trainer uses.
//! - extra `snr_db` input: `[batch, 1]` (or `[batch]`).
//! - [`Output`]: `batch × classes` probabilities (softmax of logits when the card's output is
//!   logits) and per-window azimuth/elevation in degrees when the model gives them.
//!
//! The buffers (preprocessed inputs, scratch window, representation workspace, outputs) live in
//! the [`Model`] and are reused: after the first batch of a given size, preprocessing does not
//! allocate.

use std::path::{Path, PathBuf};

use ort::session::Session;
use ort::session::builder::SessionBuilder;
use ort::value::TensorRef;

use super::card::{Dim, ExtraKind, GraphSignature, ModelCard, OutputKind};
use super::runtime::{ExecutionPreference, Runtime, RuntimeOptions, runtime};
use super::{InferError, Result};
use crate::dsp::normalize::Normalization;
use crate::dsp::repr::{ReprWorkspace, Representation};
use crate::dsp::snr::window_snr_db;
use crate::iq::C32;

/// The execution provider a session runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// ONNX Runtime's CPU provider.
    Cpu,
    /// CUDA on this device.
    Cuda {
        /// CUDA device ordinal.
        device_id: i32,
    },
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Provider::Cpu => f.write_str("CPU"),
            Provider::Cuda { device_id } => write!(f, "CUDA:{device_id}"),
        }
    }
}

/// One class and its probability.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassProb {
    /// Index into the card's `classes`.
    pub class: usize,
    /// Probability in [0, 1].
    pub probability: f32,
}

/// What one batch gave, per window (reused by the next [`Model::run`]).
#[derive(Debug, Clone, Default)]
pub struct Output {
    batch: usize,
    classes: usize,
    scores: Vec<f32>,
    probs: Vec<f32>,
    azimuth: Option<Vec<f32>>,
    elevation: Option<Vec<f32>>,
}

impl Output {
    /// Windows in the batch.
    pub fn len(&self) -> usize {
        self.batch
    }

    /// True for an empty batch (never after a successful run).
    pub fn is_empty(&self) -> bool {
        self.batch == 0
    }

    /// Number of classes (0 for a model without a class output).
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Class probabilities of window `i` (empty without a class output).
    ///
    /// # Panics
    /// When `i >= self.len()`.
    pub fn probabilities(&self, i: usize) -> &[f32] {
        assert!(i < self.batch, "window {i} of a batch of {}", self.batch);
        &self.probs[i * self.classes..(i + 1) * self.classes]
    }

    /// The class output of window `i` as the model gave it (logits or probabilities).
    ///
    /// # Panics
    /// When `i >= self.len()`.
    pub fn scores(&self, i: usize) -> &[f32] {
        assert!(i < self.batch, "window {i} of a batch of {}", self.batch);
        &self.scores[i * self.classes..(i + 1) * self.classes]
    }

    /// The `k` most probable classes of window `i`, most probable first (ties: lower index
    /// first).
    pub fn top_k(&self, i: usize, k: usize) -> Vec<ClassProb> {
        let p = self.probabilities(i);
        let mut all: Vec<ClassProb> = p
            .iter()
            .enumerate()
            .map(|(class, &probability)| ClassProb { class, probability })
            .collect();
        all.sort_by(|a, b| {
            b.probability
                .total_cmp(&a.probability)
                .then(a.class.cmp(&b.class))
        });
        all.truncate(k);
        all
    }

    /// The most probable class of window `i`.
    pub fn best(&self, i: usize) -> Option<ClassProb> {
        self.top_k(i, 1).into_iter().next()
    }

    /// Azimuth of window `i` in degrees, when the model gives it.
    pub fn azimuth_deg(&self, i: usize) -> Option<f32> {
        self.azimuth.as_ref().and_then(|a| a.get(i).copied())
    }

    /// Elevation of window `i` in degrees, when the model gives it.
    pub fn elevation_deg(&self, i: usize) -> Option<f32> {
        self.elevation.as_ref().and_then(|a| a.get(i).copied())
    }
}

/// Numerically stable softmax of `x` into `out` (same length).
pub fn softmax(x: &[f32], out: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for (o, &v) in out.iter_mut().zip(x) {
        *o = (v - max).exp();
        sum += *o;
    }
    if sum > 0.0 && sum.is_finite() {
        let inv = 1.0 / sum;
        out.iter_mut().for_each(|o| *o *= inv);
    }
}

enum FeedKind {
    Window {
        representation: Representation,
        normalization: Normalization,
    },
    Snr,
}

/// One graph input with its reused buffer.
struct Feed {
    name: String,
    kind: FeedKind,
    /// `[batch, …]`; the batch is rewritten each run.
    shape: Vec<i64>,
    data: Vec<f32>,
}

/// An ONNX model with its card, ready to classify batches of windows.
pub struct Model {
    card: ModelCard,
    card_path: PathBuf,
    onnx_path: PathBuf,
    runtime: &'static Runtime,
    session: Session,
    provider: Provider,
    cuda_fallback: Option<String>,
    feeds: Vec<Feed>,
    scratch: Vec<C32>,
    ws: ReprWorkspace,
    snr: Vec<f32>,
    out: Output,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("name", &self.card.name)
            .field("version", &self.card.version)
            .field("onnx_path", &self.onnx_path)
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

impl Model {
    /// Loads a model from its card (`models/x.json`, with `models/x.onnx` beside it) or from
    /// its `.onnx` file (whose card must sit beside it): reads and checks the card, loads ONNX
    /// Runtime if this process has not yet, opens a session on the provider asked for, and
    /// checks the graph against the card. A model without a card is refused.
    pub fn load(path: &Path, options: &RuntimeOptions) -> Result<Model> {
        let (card_path, onnx_path) = if path.extension().is_some_and(|e| e == "onnx") {
            let card = ModelCard::card_path(path);
            if !card.is_file() {
                return Err(InferError::MissingCard {
                    onnx: path.to_path_buf(),
                    card,
                });
            }
            (card, path.to_path_buf())
        } else {
            (path.to_path_buf(), ModelCard::onnx_path(path))
        };
        let card = ModelCard::load(&card_path)?;
        if !onnx_path.is_file() {
            return Err(InferError::Model {
                path: onnx_path,
                message: format!(
                    "no such file (the card {} describes it)",
                    card_path.display()
                ),
            });
        }
        let rt = runtime(options.library.as_deref())?;
        let (session, provider, cuda_fallback) = open_session(rt, &onnx_path, options)?;
        card.validate_against(&GraphSignature::of_session(&session), &card_path)?;
        let feeds = feeds_of(&card);
        Ok(Model {
            card,
            card_path,
            onnx_path,
            runtime: rt,
            session,
            provider,
            cuda_fallback,
            feeds,
            scratch: Vec::new(),
            ws: ReprWorkspace::new(),
            snr: Vec::new(),
            out: Output::default(),
        })
    }

    /// The model's card.
    pub fn card(&self) -> &ModelCard {
        &self.card
    }

    /// The card file.
    pub fn card_path(&self) -> &Path {
        &self.card_path
    }

    /// The `.onnx` file.
    pub fn onnx_path(&self) -> &Path {
        &self.onnx_path
    }

    /// The ONNX Runtime this model runs on.
    pub fn runtime(&self) -> &'static Runtime {
        self.runtime
    }

    /// The execution provider the session uses.
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// Why CUDA was not used when [`ExecutionPreference::Auto`] tried it (for the caller to log).
    /// `None` when CUDA is used or was not tried (CPU asked for, or a build without `cuda`).
    pub fn cuda_fallback(&self) -> Option<&str> {
        self.cuda_fallback.as_deref()
    }

    /// Samples in one window (`channels × window_len`).
    pub fn window_size(&self) -> usize {
        self.card.channels * self.card.window_len
    }

    /// The preprocessed tensor fed to input `name` by the last run (row-major, batch first).
    pub fn last_input(&self, name: &str) -> Option<&[f32]> {
        self.feeds
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.data.as_slice())
    }

    /// Classifies a batch: `windows` holds `batch` windows of `channels × window_len` samples
    /// (window-major, channel-major inside). An `snr_db` extra input gets the default estimate
    /// ([`window_snr_db`]: the per-channel estimate averaged in dB over the channels); use [`Model::run_with_snr`] to
    /// pass known values.
    pub fn run(&mut self, windows: &[C32], batch: usize) -> Result<&Output> {
        self.run_inner(windows, batch, None)
    }

    /// As [`Model::run`], with the SNR (dB) of each window given for an `snr_db` input.
    pub fn run_with_snr(
        &mut self,
        windows: &[C32],
        batch: usize,
        snr_db: &[f32],
    ) -> Result<&Output> {
        if snr_db.len() != batch {
            return Err(self.input_error(format!(
                "{} SNR values for a batch of {batch} windows",
                snr_db.len()
            )));
        }
        self.run_inner(windows, batch, Some(snr_db))
    }

    fn input_error(&self, message: String) -> InferError {
        InferError::Input {
            model: self.card.name.clone(),
            message,
        }
    }

    fn run_error(&self, message: String) -> InferError {
        InferError::Run {
            model: self.card.name.clone(),
            message,
        }
    }

    fn run_inner(&mut self, windows: &[C32], batch: usize, snr: Option<&[f32]>) -> Result<&Output> {
        let size = self.window_size();
        if batch == 0 {
            return Err(self.input_error("batch is 0; expected at least one window".into()));
        }
        if windows.len() != batch * size {
            return Err(self.input_error(format!(
                "{} samples for a batch of {batch} windows of {} channels × {} samples (expected {})",
                windows.len(),
                self.card.channels,
                self.card.window_len,
                batch * size
            )));
        }
        self.preprocess(windows, batch, snr)?;
        self.infer(batch)?;
        Ok(&self.out)
    }

    fn preprocess(&mut self, windows: &[C32], batch: usize, snr: Option<&[f32]>) -> Result<()> {
        let channels = self.card.channels;
        let len = self.card.window_len;
        let needs_snr = self.feeds.iter().any(|f| matches!(f.kind, FeedKind::Snr));
        if needs_snr {
            self.snr.clear();
            match snr {
                Some(s) => self.snr.extend_from_slice(s),
                None => self.snr.extend(
                    windows
                        .chunks_exact(channels * len)
                        .map(|w| window_snr_db(w, channels)),
                ),
            }
        }
        let size = channels * len;
        for feed in &mut self.feeds {
            feed.shape[0] = batch as i64;
            feed.data.clear();
            match feed.kind {
                FeedKind::Window {
                    representation,
                    normalization,
                } => {
                    feed.data.reserve(batch * 2 * size);
                    for w in windows.chunks_exact(size) {
                        let src = if normalization == Normalization::None {
                            w
                        } else {
                            self.scratch.clear();
                            self.scratch.extend_from_slice(w);
                            normalization.apply(&mut self.scratch);
                            &self.scratch
                        };
                        representation
                            .write(src, channels, &mut self.ws, &mut feed.data)
                            .map_err(|e| InferError::Input {
                                model: self.card.name.clone(),
                                message: format!("input '{}': {e}", feed.name),
                            })?;
                    }
                }
                FeedKind::Snr => feed.data.extend_from_slice(&self.snr),
            }
        }
        Ok(())
    }

    fn infer(&mut self, batch: usize) -> Result<()> {
        let mut inputs = Vec::with_capacity(self.feeds.len());
        for f in &self.feeds {
            let t = TensorRef::from_array_view((f.shape.as_slice(), f.data.as_slice()))
                .map_err(|e| self.run_error(format!("input '{}': {e}", f.name)))?;
            inputs.push((f.name.as_str(), t));
        }
        let name = &self.card.name;
        let run_err = |message: String| InferError::Run {
            model: name.clone(),
            message,
        };
        let outputs = self
            .session
            .run(inputs)
            .map_err(|e| run_err(e.to_string()))?;
        let out = &mut self.out;
        out.batch = batch;
        out.classes = 0;
        out.scores.clear();
        out.probs.clear();
        let mut azimuth: Option<Vec<f32>> = out.azimuth.take();
        let mut elevation: Option<Vec<f32>> = out.elevation.take();
        let (mut has_az, mut has_el) = (false, false);
        for spec in &self.card.outputs {
            let value = outputs.get(spec.name.as_str()).ok_or_else(|| {
                run_err(format!("output '{}' missing from the results", spec.name))
            })?;
            let (shape, data) = value
                .try_extract_tensor::<f32>()
                .map_err(|e| run_err(format!("output '{}': {e}", spec.name)))?;
            let dims: &[i64] = shape;
            let bad_shape = |expected: &str| {
                run_err(format!(
                    "output '{}' has shape {dims:?}; expected {expected} for a batch of {batch}",
                    spec.name
                ))
            };
            match spec.kind {
                OutputKind::Logits | OutputKind::Probabilities => {
                    let classes = self.card.classes.len();
                    if *dims != [batch as i64, classes as i64] {
                        return Err(bad_shape(&format!(
                            "[{batch}, {classes}] ({classes} classes)"
                        )));
                    }
                    out.classes = classes;
                    out.scores.extend_from_slice(data);
                    out.probs.resize(data.len(), 0.0);
                    if spec.kind == OutputKind::Logits {
                        for (x, p) in data
                            .chunks_exact(classes)
                            .zip(out.probs.chunks_exact_mut(classes))
                        {
                            softmax(x, p);
                        }
                    } else {
                        out.probs.copy_from_slice(data);
                    }
                }
                OutputKind::Azimuth | OutputKind::Elevation => {
                    if dims.first() != Some(&(batch as i64)) || data.len() != batch {
                        return Err(bad_shape(&format!("[{batch}] or [{batch}, 1]")));
                    }
                    let (slot, flag) = if spec.kind == OutputKind::Azimuth {
                        (&mut azimuth, &mut has_az)
                    } else {
                        (&mut elevation, &mut has_el)
                    };
                    let v = slot.get_or_insert_with(Vec::new);
                    v.clear();
                    v.extend_from_slice(data);
                    *flag = true;
                }
                OutputKind::AzimuthElevation => {
                    if *dims != [batch as i64, 2] {
                        return Err(bad_shape(&format!("[{batch}, 2]")));
                    }
                    let a = azimuth.get_or_insert_with(Vec::new);
                    a.clear();
                    a.extend(data.chunks_exact(2).map(|p| p[0]));
                    let e = elevation.get_or_insert_with(Vec::new);
                    e.clear();
                    e.extend(data.chunks_exact(2).map(|p| p[1]));
                    has_az = true;
                    has_el = true;
                }
            }
        }
        out.azimuth = azimuth.filter(|_| has_az);
        out.elevation = elevation.filter(|_| has_el);
        Ok(())
    }
}

fn feeds_of(card: &ModelCard) -> Vec<Feed> {
    let shape = |layout: &[Dim]| -> Vec<i64> {
        layout
            .iter()
            .map(|d| match d {
                Dim::Batch => 1,
                Dim::Fixed(n) => *n as i64,
            })
            .collect()
    };
    let windows = card.inputs.iter().map(|i| Feed {
        name: i.name.clone(),
        kind: FeedKind::Window {
            representation: i.representation,
            normalization: i.normalization,
        },
        shape: shape(&i.layout),
        data: Vec::new(),
    });
    let extras = card.extra_inputs.iter().map(|i| Feed {
        name: i.name.clone(),
        kind: match i.kind {
            ExtraKind::SnrDb => FeedKind::Snr,
        },
        shape: shape(&i.layout),
        data: Vec::new(),
    });
    windows.chain(extras).collect()
}

fn base_builder(rt: &Runtime, onnx: &Path, options: &RuntimeOptions) -> Result<SessionBuilder> {
    let model_err = |message: String| InferError::Model {
        path: onnx.to_path_buf(),
        message,
    };
    let mut b = Session::builder(rt.environment()).map_err(|e| model_err(e.to_string()))?;
    if let Some(n) = options.intra_threads {
        b = b
            .with_intra_threads(n)
            .map_err(|e| model_err(format!("intra-op threads = {n}: {e}")))?;
    }
    Ok(b)
}

fn commit(mut b: SessionBuilder, onnx: &Path) -> Result<Session> {
    b.commit_from_file(onnx).map_err(|e| InferError::Model {
        path: onnx.to_path_buf(),
        message: e.to_string(),
    })
}

/// Opens the session on the provider asked for: the session, the provider used, and why CUDA
/// was not used when `Auto` tried it.
fn open_session(
    rt: &Runtime,
    onnx: &Path,
    options: &RuntimeOptions,
) -> Result<(Session, Provider, Option<String>)> {
    match options.execution {
        ExecutionPreference::Cpu => Ok((
            commit(base_builder(rt, onnx, options)?, onnx)?,
            Provider::Cpu,
            None,
        )),
        ExecutionPreference::Cuda { device_id } => {
            match cuda_session(rt, onnx, options, device_id)? {
                Ok(s) => Ok((s, Provider::Cuda { device_id }, None)),
                Err(reason) => Err(InferError::Provider {
                    path: onnx.to_path_buf(),
                    provider: "CUDA",
                    reason,
                }),
            }
        }
        ExecutionPreference::Auto => {
            if !cfg!(feature = "cuda") {
                let s = commit(base_builder(rt, onnx, options)?, onnx)?;
                return Ok((s, Provider::Cpu, None));
            }
            match cuda_session(rt, onnx, options, 0)? {
                Ok(s) => Ok((s, Provider::Cuda { device_id: 0 }, None)),
                Err(reason) => {
                    let s = commit(base_builder(rt, onnx, options)?, onnx)?;
                    Ok((s, Provider::Cpu, Some(reason)))
                }
            }
        }
    }
}

/// A session on CUDA, or why not (inner error). The outer error is for failures that CPU would
/// share (bad thread option).
#[cfg(feature = "cuda")]
fn cuda_session(
    rt: &Runtime,
    onnx: &Path,
    options: &RuntimeOptions,
    device_id: i32,
) -> Result<std::result::Result<Session, String>> {
    let b = base_builder(rt, onnx, options)?;
    let ep = ort::ep::CUDA::default()
        .with_device_id(device_id)
        .build()
        .error_on_failure();
    let mut b = match b.with_execution_providers([ep]) {
        Ok(b) => b,
        Err(e) => return Ok(Err(format!("cannot register the CUDA provider: {e}"))),
    };
    Ok(b.commit_from_file(onnx)
        .map_err(|e| format!("cannot open the model on CUDA device {device_id}: {e}")))
}

#[cfg(not(feature = "cuda"))]
fn cuda_session(
    _rt: &Runtime,
    _onnx: &Path,
    _options: &RuntimeOptions,
    _device_id: i32,
) -> Result<std::result::Result<Session, String>> {
    Ok(Err(
        "this specwatch was built without the `cuda` feature (rebuild with --features cuda \
         and use the onnxruntime-gpu runtime library)"
            .into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_is_stable_and_normalised() {
        let x = [1000.0f32, 1001.0, 999.0];
        let mut p = [0.0f32; 3];
        softmax(&x, &mut p);
        let s: f32 = p.iter().sum();
        assert!((s - 1.0).abs() < 1e-6, "{s}");
        assert!(p[1] > p[0] && p[0] > p[2]);
        let e = [0.0f64, 1.0, -1.0].map(f64::exp);
        let t: f64 = e.iter().sum();
        for (a, b) in p.iter().zip(e) {
            assert!((f64::from(*a) - b / t).abs() < 1e-6);
        }
    }

    #[test]
    fn top_k_orders_by_probability_then_index() {
        let out = Output {
            batch: 2,
            classes: 3,
            scores: vec![0.0; 6],
            probs: vec![0.2, 0.5, 0.3, 0.4, 0.2, 0.4],
            azimuth: Some(vec![10.0, 20.0]),
            elevation: None,
        };
        let t = out.top_k(0, 2);
        assert_eq!(
            t.iter().map(|c| c.class).collect::<Vec<_>>(),
            [1, 2],
            "{t:?}"
        );
        assert_eq!(out.top_k(1, 5).len(), 3);
        assert_eq!(out.best(1).map(|c| c.class), Some(0));
        assert_eq!(out.azimuth_deg(1), Some(20.0));
        assert_eq!(out.elevation_deg(1), None);
    }

    #[test]
    fn model_can_move_to_another_thread() {
        fn send<T: Send>() {}
        send::<Model>();
    }
}
