//! Native training of the station's models with burn (pure-Rust `flex` CPU backend + autodiff).
//!
//! - [`data`]: a dataset folder → batches: raw windows (from memory or streamed from disk),
//!   perhaps augmented, through the one `dsp` preprocessing path (normalisation,
//!   representation) into burn tensors `[B, 2C, L]` with the windows' classes, true and
//!   estimated SNRs and angles; a split stratified by class and SNR (`split.json`), or by
//!   recording for datasets cut from recordings (a recording's windows all on one side).
//! - [`models`]: the architectures, one file each and one registry line, each with options of
//!   its own, an embedding and a classifier head.
//! - [`fit`]: the run shell — the run folder, a cosine schedule, validation each epoch, early
//!   stopping, checkpoints and `--resume`, warm starts from an earlier run or an exported model
//!   (`--init-from`) — handing each batch to the run's objective.
//! - [`objective`]: what a run optimises, one file each — classification (cross-entropy or
//!   focal loss, optionally a linear probe of a frozen encoder), multi-task class + angles
//!   with an optional SNR input (frozen or fine-tuned on a pretrained encoder), and MoCo v3
//!   self-supervised pretraining; an objective owns its models, optimisers and step, and says
//!   what the run exports.
//! - [`lars`]: the LARS optimiser (layer-wise trust ratio), MoCo v3's.
//! - [`losses`], [`mlp`]: loss terms the objectives share (focal, InfoNCE in-batch and queued,
//!   supervised contrastive, angle regression, EMA, the WGAN-GP gradient penalty) and the MLP.
//! - [`source`], [`sampler`], [`augment`]: where raw windows come from (memory, streamed from
//!   disk, generated), which windows a step sees, and seeded augmentations of raw IQ.
//! - [`projector`]: the projector and predictor MLPs of contrastive pretraining.
//! - [`interface`]: a trained model's inputs and outputs, declared once; it drives the exported
//!   graph, the model card and the export's parity check on every output.
//! - [`probe`]: heads fitted on a trained encoder's cached features in seconds (prototype,
//!   k-NN, linear), over repeated draws of N labelled windows per class and SNR: mean ± sd.
//! - [`export`]: a run folder → `models/<name>.onnx` + `models/<name>.json` (the model card),
//!   written from the model's declared interface, with the test split's accuracy (and angle
//!   error) measured by running the exported graph through [`crate::infer::Model`], the
//!   daemon's own code path, and every output checked against burn.
//! - [`eval`]: an exported model (card + ONNX) on a dataset folder through the daemon's
//!   [`crate::infer::Model`]: accuracy overall, per SNR and per class, the confusion matrix,
//!   classes matched by name; for angle outputs the azimuth/elevation error beside MUSIC and the
//!   Cramér–Rao bound; JSON, a text table and a report folder.
//! - [`compose`]: a base classifier and a specialist in some of its classes → one model whose
//!   graph runs both (the base's probability of those classes split by the product of both
//!   models' opinions), checked against its components and measured on a fresh set.
//! - [`plot`]: the report's PNG charts (own raster drawing, embedded font).
//!
//! ```text
//! dataset folder ──▶ source (memory | stream) ──▶ sampler ──▶ augment ──▶ data::Batcher
//!                    Split::stratified              (dsp normalise + repr) ──▶ Batch
//! Batch ──▶ fit (run shell) ──▶ objective::step ──▶ RUN_DIR/{config.json, metrics.jsonl,
//!                                                   split.json, best.bpk, checkpoint/}
//! RUN_DIR ──▶ export (interface: graph + card) ──▶ models/<name>.onnx + models/<name>.json
//! models/<name>.{json,onnx} ──▶ models::onnx_weights (weights read back) ──▶ fit (--init-from)
//! models/NAME.{json,onnx} + dataset folder ──▶ eval ──▶ REPORT_DIR/{eval.json, report.md,
//!                                                       accuracy_vs_snr.png, confusion.png,
//!                                                       mae_vs_snr.png}
//! models/BASE + SPECIALIST (+ fresh dataset) ──▶ compose ──▶ models/<name>.onnx + .json
//! ```

pub mod augment;
pub mod compose;
pub mod data;
pub mod eval;
pub mod export;
pub mod fit;
pub mod interface;
pub mod lars;
pub mod losses;
pub mod mlp;
pub mod models;
pub mod objective;
pub mod plot;
pub mod probe;
pub mod projector;
pub mod sampler;
pub mod source;

use std::path::PathBuf;

use crate::dsp::DspError;
use crate::iq::dataset::DatasetError;

/// What can go wrong while preparing data or training. Messages name the file or the parameter
/// and say what was expected.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error("preprocessing: {0}")]
    Dsp(#[from] DspError),
    /// A hyper-parameter or option with a value training cannot use.
    #[error("'{name}' {problem}")]
    Param { name: &'static str, problem: String },
    /// An architecture name the registry does not know.
    #[error("unknown architecture '{name}'; known: {known}")]
    UnknownArch { name: String, known: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: malformed JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A burn record (weights or optimizer state) that could not be written or read.
    #[error("{path}: {message}")]
    Record { path: PathBuf, message: String },
    /// A run folder whose contents do not fit what was asked of it.
    #[error("run folder {dir}: {problem}")]
    Run { dir: PathBuf, problem: String },
    /// A model's ONNX graph could not be built or written.
    #[error("ONNX export: {0}")]
    Onnx(#[from] crate::onnx::OnnxError),
    /// The exported model could not be loaded or run through ONNX Runtime.
    #[error(transparent)]
    Infer(#[from] crate::infer::InferError),
    /// Measuring a model on a dataset failed.
    #[error(transparent)]
    Eval(#[from] eval::EvalError),
}

impl TrainError {
    pub(crate) fn param(name: &'static str, problem: impl Into<String>) -> Self {
        TrainError::Param {
            name,
            problem: problem.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| TrainError::Io { path, source }
    }
}

/// Writes `value` as pretty JSON to `path` (through a temporary file and a rename, so a reader
/// never sees half a file).
pub(crate) fn write_json<T: serde::Serialize>(
    path: &std::path::Path,
    value: &T,
) -> Result<(), TrainError> {
    let text = serde_json::to_string_pretty(value).map_err(|source| TrainError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text + "\n").map_err(TrainError::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(TrainError::io(path))
}

/// Reads JSON from `path`.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
) -> Result<T, TrainError> {
    let text = std::fs::read_to_string(path).map_err(TrainError::io(path))?;
    serde_json::from_str(&text).map_err(|source| TrainError::Json {
        path: path.to_path_buf(),
        source,
    })
}
