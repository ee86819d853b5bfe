//! Evaluation of an exported model on a dataset folder, through the daemon's own inference
//! path: [`crate::infer::Model`] (the model card's normalisation and representation, computed by
//! [`crate::dsp`], then ONNX Runtime). Class outputs are scored by accuracy; angle outputs by
//! their error against the dataset's true angles, beside the classical estimate and the bound.
//!
//! ```text
//! DIR/manifest.json ─┐
//! DIR/x.npy ── chunks of --batch windows ──▶ Model::run ──▶ best class ─┐
//! DIR/y.npy ── dataset class ── by name ──▶ model class (or unsupported) ┼─▶ Evaluation
//! DIR/snr.npy ── nearest point of the manifest's SNR grid ──────────────┤     │
//! DIR/angles.npy ── |model − truth|, |MUSIC − truth|, CRB ──────────────┘     │
//!                                       text table · JSON · report folder ◀───┘
//! ```
//!
//! - **Streaming.** Windows are read `batch` at a time ([`Dataset::read_windows`]); only the
//!   labels, SNRs and angles (20 bytes a window) are held whole.
//! - **Classes by name.** A dataset class is matched to the model class of the same name, so a
//!   dataset whose classes come in another order evaluates the same. Windows of a class the model
//!   does not know are run but left out of every accuracy; the report counts them and says what
//!   the model called them ([`UnsupportedClass`]). No common class at all is an error.
//! - **SNR buckets.** Each window's SNR (`snr.npy`) goes to the nearest value of the manifest's
//!   `snr_grid_db` (to the nearest whole dB when the manifest declares no grid); keys are written
//!   like `"-20"` (or `"2.5"` for a fractional grid point).
//! - **A subset.** `max_windows` evaluates that many windows taken as evenly spaced runs of
//!   consecutive windows across the whole file, so class-sorted files (RadioML imports) and
//!   round-robin generated sets are both covered.
//! - **Report.** [`write_report`] writes `eval.json`, `report.md` (with the command that made
//!   it), and the charts that apply: `accuracy_vs_snr.png` and `confusion.png` (row-normalised)
//!   for a classifier, `mae_vs_snr.png` for a model with angle outputs.
//!
//! # Angle outputs
//! A model with azimuth and/or elevation outputs (task `aoa` or `amc+aoa`) evaluated on a dataset
//! with `angles.npy` gets [`AoaEvaluation`], over **every** evaluated window (its class known to
//! the model or not), grouped overall, per SNR bucket (as above) and per dataset class (by name):
//!
//! - **Model error.** Azimuth error `wrap(φ̂ − φ)` with `wrap(d) = ((d + 180) mod 360) − 180`, in
//!   [−180°, 180°); elevation error `θ̂ − θ` as is. MAE is the mean of their absolute values;
//!   the pooled MAE averages the absolute errors of both angles together (each window counts
//!   once per angle the model gives). A model with only one angle reports that one, and its
//!   pooled figures are that angle's.
//! - **MUSIC.** The daemon's direction finder ([`DoaEstimator`], one source, MUSIC) on the
//!   manifest's array geometry and the grid the station's `doa` config uses by default
//!   ([`DoaGrid::default`]: −90°..90° in both angles at 1°, peaks refined below 10⁻⁴°), fed the
//!   raw window as `[channels, window_len]` snapshots, exactly as the daemon's inference worker
//!   does. Its errors are taken like the model's, for the angles the model gives.
//! - **Cramér–Rao bound.** [`crb_single_source`] per window, with the window's true azimuth and
//!   elevation, its true SNR (`snr.npy`, the recipes' SNR over all channels, which is the
//!   per-element SNR on average) and `window_len` snapshots; it is a variance bound in degrees².
//!   Per group the figure is `sqrt(mean of the per-window bounds)` over the windows of the group
//!   (and, when pooled, over both angles): the RMS error an efficient unbiased estimator would
//!   reach on those windows (`crb_deg_by_snr`). An MAE is not comparable with it as it is: an MAE
//!   averages each window's |error|, and the windows' bounds differ widely (the 2×2 array sees
//!   little near ±70°), so the mean of their square roots is well below the root of their mean.
//!   The bound as an MAE (`crb_mae_deg_by_snr`) is therefore given too: `sqrt(2/π)` times the
//!   mean over the group of `sqrt(CRB)` per window — the MAE an efficient unbiased estimator
//!   with Gaussian errors would have on those windows. A direction where the bound is undefined
//!   (the pole, endfire) is left out and counted.
//!
//! MUSIC and the CRB need the array: without a usable `array.geometry` in the manifest (or with
//! one whose element count is not the window's channel count) they are left out with a warning.
//!
//! # JSON
//! The document ([`EvalJson`]) holds `accuracy`, `by_snr` and the other classification figures
//! for a model with a class output, exactly as before angles were evaluated; a model without one
//! (task `aoa`) has none of those keys at all — not `null`, absent — and keeps the shared ones
//! (`windows_read`, `model`, `dataset`, `windows_per_s`, `seconds`, `warnings`). Angle figures
//! go under `"aoa"` ([`AoaJson`]), present only when angles were evaluated.
//!
//! # Repeats
//! [`summarize_repeats`] turns several evaluations of the same kind (few-shot runs on different
//! draws) into mean, sample standard deviation and count for each figure.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;
use serde::ser::SerializeMap;

use super::plot::{self, AccuracyChart, ConfusionChart, Line, LineChart, PlotError, Series, YAxis};
use crate::dsp::array::ArrayGeometry;
use crate::dsp::doa::{DoaEstimator, DoaGrid, DoaMethod, crb_single_source};
use crate::infer::card::{ExtraKind, OutputKind, Task};
use crate::infer::{ExecutionPreference, InferError, Model, RuntimeOptions};
use crate::iq::C32;
use crate::iq::dataset::{Dataset, DatasetError, DatasetSource, Manifest};

/// Windows per inference batch unless told otherwise.
pub const DEFAULT_BATCH: usize = 256;

/// Files [`write_report`] may write into the report folder: the JSON and the Markdown always,
/// the accuracy and confusion charts for a classifier, the angle-error chart when angles were
/// evaluated.
pub const REPORT_FILES: [&str; 5] = [
    "eval.json",
    "accuracy_vs_snr.png",
    "confusion.png",
    "report.md",
    "mae_vs_snr.png",
];

/// What can go wrong while evaluating. Messages name the file, the model or the option, and what
/// was expected.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error(transparent)]
    Model(#[from] InferError),
    /// An option with a value evaluation cannot use.
    #[error("'{name}' {problem}")]
    Param { name: &'static str, problem: String },
    /// The model gives only angles and the dataset has none to compare them with.
    #[error(
        "model '{model}' ({card}) gives only angles (task {task}) but dataset {dataset} has no \
         angles.npy (manifest 'has_angles' is false); there is nothing to measure"
    )]
    NoAngles {
        model: String,
        card: PathBuf,
        task: String,
        dataset: PathBuf,
    },
    /// Dataset windows and model input differ in channels or length.
    #[error(
        "dataset {dataset} holds windows of {data_channels} channel(s) × {data_len} samples but \
         model '{model}' ({card}) takes {model_channels} channel(s) × {model_len} samples"
    )]
    WindowShape {
        dataset: PathBuf,
        data_channels: usize,
        data_len: usize,
        model: String,
        card: PathBuf,
        model_channels: usize,
        model_len: usize,
    },
    /// Not one dataset class is a model class.
    #[error(
        "no class of dataset {dataset} ({dataset_classes}) is a class of model '{model}' \
         ({model_classes}); classes are matched by name"
    )]
    NoCommonClass {
        dataset: PathBuf,
        dataset_classes: String,
        model: String,
        model_classes: String,
    },
    /// The dataset has no windows (or none of the selected ones belongs to a common class).
    #[error("dataset {dataset}: {problem}")]
    Empty { dataset: PathBuf, problem: String },
    /// The model returned no class for a window.
    #[error("model '{model}': {problem}")]
    Output { model: String, problem: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: cannot write JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("chart {path}: {source}")]
    Plot {
        path: PathBuf,
        #[source]
        source: PlotError,
    },
}

/// Which SNR a model with an `snr_db` input is fed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SnrInput {
    /// The estimate computed from the window, as the daemon does.
    #[default]
    Estimated,
    /// The dataset's true per-window SNR (`snr.npy`).
    Dataset,
}

/// How to evaluate.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Windows per inference batch (≥ 1).
    pub batch: usize,
    /// Evaluate at most this many windows (≥ 1), spread over the dataset; `None` = all.
    pub max_windows: Option<usize>,
    /// Runtime library, execution provider, threads.
    pub runtime: RuntimeOptions,
    /// The SNR fed to a model with an `snr_db` input.
    pub snr_input: SnrInput,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            batch: DEFAULT_BATCH,
            max_windows: None,
            runtime: RuntimeOptions::default(),
            snr_input: SnrInput::Estimated,
        }
    }
}

/// Parses an execution provider option: `auto`, `cpu`, `cuda` or `cuda:ID`.
pub fn parse_provider(text: &str) -> Result<ExecutionPreference, EvalError> {
    let bad = || EvalError::Param {
        name: "provider",
        problem: format!("is '{text}'; expected auto, cpu, cuda or cuda:ID (a device number)"),
    };
    match text {
        "auto" => Ok(ExecutionPreference::Auto),
        "cpu" => Ok(ExecutionPreference::Cpu),
        "cuda" => Ok(ExecutionPreference::Cuda { device_id: 0 }),
        other => {
            let id = other.strip_prefix("cuda:").ok_or_else(bad)?;
            let device_id = id.parse::<i32>().ok().filter(|d| *d >= 0).ok_or_else(bad)?;
            Ok(ExecutionPreference::Cuda { device_id })
        }
    }
}

/// The model that was evaluated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelInfo {
    pub name: String,
    pub version: String,
    pub card: PathBuf,
    pub onnx: PathBuf,
    /// Execution provider used (`CPU`, `CUDA:0`).
    pub provider: String,
    /// Manifest digest of the dataset the card says it was trained on.
    pub trained_on_manifest_sha256: String,
}

/// The dataset it was evaluated on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetInfo {
    pub dir: PathBuf,
    /// Where it came from, in words (recipe, RadioML file).
    pub source: String,
    pub manifest_sha256: String,
    pub classes: Vec<String>,
    /// Windows in the dataset.
    pub count: usize,
    pub channels: usize,
    pub window_len: usize,
    pub snr_grid_db: Vec<f32>,
}

/// Counts in one SNR bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct SnrBucket {
    /// The grid value, dB.
    pub snr_db: f64,
    /// Windows of common classes, and how many were classified right.
    pub windows: u64,
    pub correct: u64,
    /// `(windows, correct)` per model class.
    pub per_class: Vec<(u64, u64)>,
}

/// A dataset class the model does not know, and what the model called its windows.
#[derive(Debug, Clone, PartialEq)]
pub struct UnsupportedClass {
    pub name: String,
    pub windows: u64,
    /// Model class names with counts, most frequent first.
    pub predicted: Vec<(String, u64)>,
}

/// Which angle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Angle {
    Azimuth,
    Elevation,
}

impl Angle {
    pub const BOTH: [Angle; 2] = [Angle::Azimuth, Angle::Elevation];

    /// The JSON key and the word in tables.
    pub fn name(self) -> &'static str {
        match self {
            Angle::Azimuth => "azimuth",
            Angle::Elevation => "elevation",
        }
    }

    /// The error of `estimate` against `truth`, degrees: azimuth wrapped to [−180, 180),
    /// elevation as is.
    pub fn error_deg(self, estimate: f64, truth: f64) -> f64 {
        let d = estimate - truth;
        match self {
            Angle::Azimuth => (d + 180.0).rem_euclid(360.0) - 180.0,
            Angle::Elevation => d,
        }
    }
}

/// A running sum of non-negative values (absolute errors, variance bounds) and their count.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sum {
    pub total: f64,
    pub count: u64,
}

impl Sum {
    fn add(&mut self, v: f64) {
        self.total += v;
        self.count += 1;
    }

    fn merged(self, other: Sum) -> Sum {
        Sum {
            total: self.total + other.total,
            count: self.count + other.count,
        }
    }

    /// The mean, `None` with nothing summed.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.total / self.count as f64)
    }
}

/// One [`Sum`] per angle.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PerAngle {
    pub azimuth: Sum,
    pub elevation: Sum,
}

impl PerAngle {
    pub fn get(&self, angle: Angle) -> Sum {
        match angle {
            Angle::Azimuth => self.azimuth,
            Angle::Elevation => self.elevation,
        }
    }

    fn get_mut(&mut self, angle: Angle) -> &mut Sum {
        match angle {
            Angle::Azimuth => &mut self.azimuth,
            Angle::Elevation => &mut self.elevation,
        }
    }

    /// Both angles summed together.
    pub fn pooled(&self) -> Sum {
        self.azimuth.merged(self.elevation)
    }

    /// The pooled sum (`None`) or one angle's.
    pub fn of(&self, angle: Option<Angle>) -> Sum {
        angle.map_or_else(|| self.pooled(), |a| self.get(a))
    }
}

/// Angle figures of a group of windows (all of them, an SNR bucket, a class).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AngleGroup {
    /// Windows in the group.
    pub windows: u64,
    /// Absolute errors of the model's angles, degrees.
    pub model: PerAngle,
    /// Absolute errors of the MUSIC estimate, degrees (angles the model gives).
    pub music: PerAngle,
    /// Per-window Cramér–Rao variance bounds, degrees² (angles the model gives).
    pub crb: PerAngle,
    /// Their square roots (the bound on each window's standard deviation), degrees.
    pub crb_sd: PerAngle,
}

impl AngleGroup {
    /// Model MAE in degrees, pooled (`None`) or of one angle.
    pub fn mae(&self, angle: Option<Angle>) -> Option<f64> {
        self.model.of(angle).mean()
    }

    /// MUSIC MAE in degrees, pooled (`None`) or of one angle.
    pub fn music_mae(&self, angle: Option<Angle>) -> Option<f64> {
        self.music.of(angle).mean()
    }

    /// `sqrt(mean per-window CRB)` in degrees, pooled (`None`) or of one angle.
    pub fn crb_deg(&self, angle: Option<Angle>) -> Option<f64> {
        self.crb.of(angle).mean().map(f64::sqrt)
    }

    /// `sqrt(2/π) · mean sqrt(per-window CRB)` in degrees: the MAE an efficient unbiased
    /// estimator with Gaussian errors would have on these windows, comparable with the MAEs.
    pub fn crb_mae_deg(&self, angle: Option<Angle>) -> Option<f64> {
        let gaussian_mae_per_sd = (2.0 / std::f64::consts::PI).sqrt();
        self.crb_sd
            .of(angle)
            .mean()
            .map(|sd| gaussian_mae_per_sd * sd)
    }

    fn add(&mut self, w: &WindowAngles) {
        self.windows += 1;
        for (k, angle) in Angle::BOTH.into_iter().enumerate() {
            if let Some(e) = w.model[k] {
                self.model.get_mut(angle).add(e.abs());
            }
            if let Some(e) = w.music[k] {
                self.music.get_mut(angle).add(e.abs());
            }
            if let Some(v) = w.crb[k] {
                self.crb.get_mut(angle).add(v);
                self.crb_sd.get_mut(angle).add(v.sqrt());
            }
        }
    }
}

/// One window's angle errors and bounds, `[azimuth, elevation]`, for the angles the model gives.
#[derive(Debug, Clone, Copy, Default)]
struct WindowAngles {
    model: [Option<f64>; 2],
    music: [Option<f64>; 2],
    crb: [Option<f64>; 2],
}

/// The classical reference: the array MUSIC and the bound are computed for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AoaReference {
    /// The manifest's array geometry.
    pub array: ArrayGeometry,
    /// MUSIC's search grid.
    pub grid: DoaGrid,
    /// Snapshots per window (the window length).
    pub snapshots: usize,
    /// Windows MUSIC gave no estimate for (left out of the MUSIC figures).
    pub music_failures: u64,
    /// Windows whose direction has no finite bound (left out of the CRB figures).
    pub crb_undefined: u64,
}

/// Angle-of-arrival figures (see the module doc for the definitions).
#[derive(Debug, Clone, PartialEq)]
pub struct AoaEvaluation {
    /// The angles the model gives (azimuth first).
    pub angles: Vec<Angle>,
    /// Every evaluated window.
    pub overall: AngleGroup,
    /// `(grid value dB, group)` by rising SNR.
    pub by_snr: Vec<(f64, AngleGroup)>,
    /// `(dataset class name, group)` in the dataset's class order, classes with windows only.
    pub by_class: Vec<(String, AngleGroup)>,
    /// MUSIC and the CRB's array; `None` when the manifest has no usable one.
    pub reference: Option<AoaReference>,
}

/// The outcome of [`evaluate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub model: ModelInfo,
    pub dataset: DatasetInfo,
    /// The model's classes: the order of the confusion matrix and of `per_class` (empty for a
    /// model without a class output, and then so are `confusion`, `buckets` and `unsupported`).
    pub classes: Vec<String>,
    /// `confusion[true][predicted]` over [`Evaluation::classes`] (windows of common classes).
    pub confusion: Vec<Vec<u64>>,
    /// Buckets that received windows of common classes, by rising SNR.
    pub buckets: Vec<SnrBucket>,
    /// Dataset classes the model lacks (only those with windows in the evaluated selection).
    pub unsupported: Vec<UnsupportedClass>,
    /// Windows run through the model, common classes or not.
    pub windows_read: u64,
    /// Seconds spent reading, preprocessing and classifying.
    pub seconds: f64,
    /// What a model with an `snr_db` input was fed (`None` for a model without one).
    pub snr_input: Option<SnrInput>,
    /// Angle figures, for a model with angle outputs on a dataset with angles.
    pub aoa: Option<AoaEvaluation>,
    /// Things the reader should know (training data reused, sample-rate mismatch, CPU fallback).
    pub warnings: Vec<String>,
}

/// Accuracy as a fraction; 0 for no windows (callers only show buckets with windows).
fn ratio(correct: u64, windows: u64) -> f64 {
    if windows == 0 {
        0.0
    } else {
        correct as f64 / windows as f64
    }
}

/// The key of an SNR bucket: `-20`, `0`, `2.5`.
pub fn snr_key(snr_db: f64) -> String {
    if (snr_db - snr_db.round()).abs() < 1e-6 {
        format!("{}", snr_db.round() as i64)
    } else {
        let s = format!("{snr_db:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// The grid value nearest to `snr_db` (the whole dB nearest when the grid is empty).
fn bucket_of(snr_db: f32, grid: &[f64]) -> f64 {
    let s = f64::from(snr_db);
    grid.iter()
        .copied()
        .min_by(|a, b| (a - s).abs().total_cmp(&(b - s).abs()))
        .unwrap_or_else(|| s.round())
}

impl Evaluation {
    /// Windows of common classes (those counted in the accuracy).
    pub fn windows(&self) -> u64 {
        self.confusion.iter().flatten().sum()
    }

    /// Windows classified right.
    pub fn correct(&self) -> u64 {
        (0..self.classes.len()).map(|k| self.confusion[k][k]).sum()
    }

    /// Overall accuracy over windows of common classes.
    pub fn accuracy(&self) -> f64 {
        ratio(self.correct(), self.windows())
    }

    /// The mean of the per-SNR accuracies (each bucket weighs the same).
    pub fn mean_snr_accuracy(&self) -> f64 {
        if self.buckets.is_empty() {
            return 0.0;
        }
        let sum: f64 = self
            .buckets
            .iter()
            .map(|b| ratio(b.correct, b.windows))
            .sum();
        sum / self.buckets.len() as f64
    }

    /// `(class, windows, accuracy)` for each model class with windows, in model order.
    pub fn per_class(&self) -> Vec<(&str, u64, f64)> {
        self.classes
            .iter()
            .enumerate()
            .filter_map(|(k, name)| {
                let n: u64 = self.confusion[k].iter().sum();
                (n > 0).then(|| (name.as_str(), n, ratio(self.confusion[k][k], n)))
            })
            .collect()
    }

    /// Model classes with no window in the evaluated selection.
    pub fn classes_without_windows(&self) -> Vec<&str> {
        self.classes
            .iter()
            .enumerate()
            .filter(|(k, _)| self.confusion[*k].iter().sum::<u64>() == 0)
            .map(|(_, c)| c.as_str())
            .collect()
    }

    /// Windows per second over the whole run.
    pub fn windows_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.windows_read as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// The JSON document (`--json`, `eval.json`).
    pub fn to_json(&self) -> EvalJson<'_> {
        let classifies = self.classifies();
        EvalJson {
            classes_head: classifies.then(|| self.class_head_json()),
            windows_read: self.windows_read,
            classes_tail: classifies.then(|| self.class_tail_json()),
            aoa: self.aoa.as_ref().map(AoaEvaluation::to_json),
            model: &self.model,
            dataset: &self.dataset,
            snr_input: self.snr_input,
            windows_per_s: self.windows_per_s(),
            seconds: self.seconds,
            warnings: &self.warnings,
        }
    }

    /// Whether the model has a class output (and the accuracy figures mean something).
    pub fn classifies(&self) -> bool {
        !self.classes.is_empty()
    }

    fn class_head_json(&self) -> ClassHeadJson<'_> {
        ClassHeadJson {
            accuracy: self.accuracy(),
            mean_snr_accuracy: self.mean_snr_accuracy(),
            by_snr: self
                .buckets
                .iter()
                .map(|b| (snr_key(b.snr_db), ratio(b.correct, b.windows)))
                .collect(),
            per_class: self
                .per_class()
                .iter()
                .map(|(c, _, a)| (c.to_string(), *a))
                .collect(),
            confusion: &self.confusion,
            classes: &self.classes,
            windows: self.windows(),
        }
    }

    fn class_tail_json(&self) -> ClassTailJson<'_> {
        let per_class = self.per_class();
        let per_class_by_snr = per_class
            .iter()
            .map(|(name, _, _)| {
                let k = self.classes.iter().position(|c| c == name).unwrap_or(0);
                let curve = self
                    .buckets
                    .iter()
                    .filter(|b| b.per_class[k].0 > 0)
                    .map(|b| (snr_key(b.snr_db), ratio(b.per_class[k].1, b.per_class[k].0)))
                    .collect();
                (name.to_string(), curve)
            })
            .collect();
        ClassTailJson {
            windows_by_snr: self
                .buckets
                .iter()
                .map(|b| (snr_key(b.snr_db), b.windows))
                .collect(),
            windows_per_class: per_class
                .iter()
                .map(|(c, n, _)| (c.to_string(), *n))
                .collect(),
            per_class_by_snr,
            unsupported_classes: self
                .unsupported
                .iter()
                .map(|u| {
                    (
                        u.name.clone(),
                        UnsupportedJson {
                            windows: u.windows,
                            predicted: Ordered(u.predicted.clone()),
                        },
                    )
                })
                .collect(),
            classes_without_windows: self.classes_without_windows(),
        }
    }

    /// A readable summary: headline figures, per-SNR and per-class tables, unsupported classes.
    pub fn text_table(&self) -> String {
        let mut s = String::new();
        let m = &self.model;
        let d = &self.dataset;
        let _ = writeln!(
            s,
            "model    {} {} ({}, {})",
            m.name,
            m.version,
            m.card.display(),
            m.provider
        );
        let _ = writeln!(
            s,
            "dataset  {} — {} (manifest sha256 {})",
            d.dir.display(),
            d.source,
            short_digest(&d.manifest_sha256)
        );
        if self.classifies() {
            let _ = writeln!(
                s,
                "windows  {} evaluated of {} read ({} in the dataset), {:.0} windows/s",
                self.windows(),
                self.windows_read,
                d.count,
                self.windows_per_s()
            );
        } else {
            let _ = writeln!(
                s,
                "windows  {} read ({} in the dataset), {:.0} windows/s",
                self.windows_read,
                d.count,
                self.windows_per_s()
            );
        }
        if self.classifies() {
            self.classes_text(&mut s);
        }
        if let Some(aoa) = &self.aoa {
            aoa.text_table(&mut s);
        }
        for w in &self.warnings {
            let _ = writeln!(s, "\nwarning: {w}");
        }
        s
    }

    /// The Markdown report; `command` is the command line that made it.
    pub fn markdown(&self, command: &str) -> String {
        let mut s = String::new();
        let m = &self.model;
        let d = &self.dataset;
        let _ = writeln!(s, "# Evaluation of {} {}\n", m.name, m.version);
        let _ = writeln!(s, "| | |\n|---|---|");
        let _ = writeln!(
            s,
            "| model | `{}` ({}), run on {} |",
            m.card.display(),
            m.onnx.display(),
            m.provider
        );
        let _ = writeln!(
            s,
            "| dataset | `{}` — {} |\n| dataset manifest sha256 | `{}` |",
            d.dir.display(),
            d.source,
            d.manifest_sha256
        );
        if self.classifies() {
            let _ = writeln!(
                s,
                "| windows | {} evaluated of {} read ({} in the dataset; {} ch × {} samples) |",
                self.windows(),
                self.windows_read,
                d.count,
                d.channels,
                d.window_len
            );
            let _ = writeln!(
                s,
                "| accuracy | **{:.2} %** overall, **{:.2} %** mean over {} SNR buckets |",
                100.0 * self.accuracy(),
                100.0 * self.mean_snr_accuracy(),
                self.buckets.len()
            );
        } else {
            let _ = writeln!(
                s,
                "| windows | {} read ({} in the dataset; {} ch × {} samples) |",
                self.windows_read, d.count, d.channels, d.window_len
            );
        }
        if let Some(aoa) = &self.aoa {
            let _ = writeln!(s, "| angle error | {} |", aoa.headline("**"));
        }
        if let Some(input) = self.snr_input {
            let fed = match input {
                SnrInput::Estimated => "estimated from each window (as the daemon does)",
                SnrInput::Dataset => "the dataset's true per-window SNR",
            };
            let _ = writeln!(s, "| SNR input | {fed} |");
        }
        let _ = writeln!(
            s,
            "| throughput | {:.0} windows/s ({:.1} s) |\n",
            self.windows_per_s(),
            self.seconds
        );
        for w in &self.warnings {
            let _ = writeln!(s, "> **Note:** {w}\n");
        }
        if self.classifies() {
            self.classes_markdown(&mut s);
        }
        if let Some(aoa) = &self.aoa {
            aoa.markdown(&mut s, &self.dataset);
        }
        let _ = writeln!(
            s,
            "\n## How this report was made\n\n```sh\n{command}\n```\n\nThe same figures are in \
             [`eval.json`](eval.json)."
        );
        s
    }

    /// The classification part of [`Self::text_table`].
    fn classes_text(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "accuracy {:.2} % overall, {:.2} % mean over {} SNR buckets\n",
            100.0 * self.accuracy(),
            100.0 * self.mean_snr_accuracy(),
            self.buckets.len()
        );
        let _ = writeln!(s, "{:>8}  {:>9}  {:>9}", "SNR dB", "windows", "accuracy");
        for b in &self.buckets {
            let _ = writeln!(
                s,
                "{:>8}  {:>9}  {:>8.2} %",
                snr_key(b.snr_db),
                b.windows,
                100.0 * ratio(b.correct, b.windows)
            );
        }
        let width = self
            .classes
            .iter()
            .map(|c| c.chars().count())
            .max()
            .unwrap_or(5)
            .max(5);
        let _ = writeln!(
            s,
            "\n{:<width$}  {:>9}  {:>9}",
            "class", "windows", "accuracy"
        );
        for (name, n, acc) in self.per_class() {
            let _ = writeln!(s, "{name:<width$}  {n:>9}  {:>8.2} %", 100.0 * acc);
        }
        let missing = self.classes_without_windows();
        if !missing.is_empty() {
            let _ = writeln!(
                s,
                "\nmodel classes without windows here: {}",
                missing.join(", ")
            );
        }
        if !self.unsupported.is_empty() {
            let _ = writeln!(
                s,
                "\nclasses the model lacks (not counted in any accuracy):"
            );
            for u in &self.unsupported {
                let _ = writeln!(
                    s,
                    "  {}: {} windows, called {}",
                    u.name,
                    u.windows,
                    predicted_list(u)
                );
            }
        }
    }

    /// The classification part of [`Self::markdown`].
    fn classes_markdown(&self, s: &mut String) {
        let d = &self.dataset;
        let _ = writeln!(
            s,
            "## Accuracy against SNR\n\n![accuracy against SNR](accuracy_vs_snr.png)\n"
        );
        let _ = writeln!(
            s,
            "SNR buckets are the points of the dataset's SNR grid; each window counts in the \
             one nearest its SNR ({}).\n",
            if d.snr_grid_db.is_empty() {
                "no grid declared: whole dB"
            } else {
                "manifest `snr_grid_db`"
            }
        );
        let _ = writeln!(s, "| SNR (dB) | windows | accuracy |\n|---:|---:|---:|");
        for b in &self.buckets {
            let _ = writeln!(
                s,
                "| {} | {} | {:.2} % |",
                snr_key(b.snr_db),
                b.windows,
                100.0 * ratio(b.correct, b.windows)
            );
        }
        let _ = writeln!(
            s,
            "\n## Per class\n\n| class | windows | accuracy |\n|---|---:|---:|"
        );
        for (name, n, acc) in self.per_class() {
            let _ = writeln!(s, "| {} | {n} | {:.2} % |", md_cell(name), 100.0 * acc);
        }
        let missing = self.classes_without_windows();
        if !missing.is_empty() {
            let _ = writeln!(
                s,
                "\nModel classes without windows in this dataset: {}.",
                missing.join(", ")
            );
        }
        if !self.unsupported.is_empty() {
            let _ = writeln!(
                s,
                "\n### Classes the model lacks\n\nTheir windows were classified but are not \
                 counted in any accuracy.\n\n| dataset class | windows | the model called them |\n\
                 |---|---:|---|"
            );
            for u in &self.unsupported {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} |",
                    md_cell(&u.name),
                    u.windows,
                    md_cell(&predicted_list(u))
                );
            }
        }
        let _ = writeln!(
            s,
            "\n## Confusion matrix\n\n![confusion matrix](confusion.png)\n\nWindows; rows are \
             the true class, columns the predicted class.\n"
        );
        let header: Vec<String> = self.classes.iter().map(|c| md_cell(c)).collect();
        let _ = writeln!(s, "| true \\ predicted | {} |", header.join(" | "));
        let _ = writeln!(s, "|---|{}", "---:|".repeat(self.classes.len()));
        for (k, row) in self.confusion.iter().enumerate() {
            let cells: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(p, n)| {
                    if p == k {
                        format!("**{n}**")
                    } else {
                        n.to_string()
                    }
                })
                .collect();
            let _ = writeln!(
                s,
                "| {} | {} |",
                md_cell(&self.classes[k]),
                cells.join(" | ")
            );
        }
    }

    fn chart_subtitle(&self) -> String {
        format!(
            "{} {} on {} — {} windows, overall {:.1} %, mean over SNR {:.1} %",
            self.model.name,
            self.model.version,
            self.dataset
                .dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| self.dataset.dir.display().to_string()),
            self.windows(),
            100.0 * self.accuracy(),
            100.0 * self.mean_snr_accuracy()
        )
    }

    /// The accuracy-against-SNR chart.
    pub fn accuracy_chart(&self) -> AccuracyChart {
        let overall = Series {
            label: "all classes".into(),
            points: self
                .buckets
                .iter()
                .map(|b| (b.snr_db, ratio(b.correct, b.windows)))
                .collect(),
        };
        let per_class: Vec<Series> = if self.per_class().len() > 1 {
            self.classes
                .iter()
                .enumerate()
                .filter(|(k, _)| self.buckets.iter().any(|b| b.per_class[*k].0 > 0))
                .map(|(k, name)| Series {
                    label: name.clone(),
                    points: self
                        .buckets
                        .iter()
                        .filter(|b| b.per_class[k].0 > 0)
                        .map(|b| (b.snr_db, ratio(b.per_class[k].1, b.per_class[k].0)))
                        .collect(),
                })
                .collect()
        } else {
            Vec::new()
        };
        AccuracyChart {
            title: "Accuracy against SNR".into(),
            subtitle: self.chart_subtitle(),
            overall,
            per_class,
            chance: Some(1.0 / self.classes.len() as f64),
        }
    }

    /// The angle-error chart, when angles were evaluated.
    pub fn mae_chart(&self) -> Option<LineChart> {
        let aoa = self.aoa.as_ref()?;
        let subtitle = format!(
            "{} {} on {} — {}",
            self.model.name,
            self.model.version,
            self.dataset
                .dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| self.dataset.dir.display().to_string()),
            aoa.headline("")
        );
        Some(aoa.chart(subtitle))
    }

    /// The row-normalised confusion chart.
    pub fn confusion_chart(&self) -> ConfusionChart {
        ConfusionChart {
            title: "Confusion matrix (row-normalised, %)".into(),
            subtitle: self.chart_subtitle(),
            classes: self.classes.clone(),
            counts: self.confusion.clone(),
        }
    }
}

fn short_digest(d: &str) -> String {
    d.chars().take(12).collect::<String>() + "…"
}

fn predicted_list(u: &UnsupportedClass) -> String {
    let parts: Vec<String> = u
        .predicted
        .iter()
        .map(|(c, n)| format!("{c} × {n}"))
        .collect();
    parts.join(", ")
}

/// Text safe inside a Markdown table cell.
fn md_cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// A map serialised in the order its entries were given (JSON objects keyed by SNR read from low
/// to high, classes in model order).
#[derive(Debug, Clone, PartialEq)]
pub struct Ordered<V>(pub Vec<(String, V)>);

impl<V> FromIterator<(String, V)> for Ordered<V> {
    fn from_iter<I: IntoIterator<Item = (String, V)>>(iter: I) -> Self {
        Ordered(iter.into_iter().collect())
    }
}

impl<V: Serialize> Serialize for Ordered<V> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// One unsupported class in the JSON.
#[derive(Debug, Serialize)]
pub struct UnsupportedJson {
    pub windows: u64,
    /// Model class → windows, most frequent first.
    pub predicted: Ordered<u64>,
}

/// The JSON document of an evaluation. Accuracies are fractions in [0, 1], angles degrees.
/// A model without a class output has none of the classification keys (`classes_head`,
/// `classes_tail` are left out whole); `aoa` is there only when angles were evaluated.
#[derive(Debug, Serialize)]
pub struct EvalJson<'a> {
    #[serde(flatten)]
    pub classes_head: Option<ClassHeadJson<'a>>,
    /// Windows run through the model, including those of classes the model lacks.
    pub windows_read: u64,
    #[serde(flatten)]
    pub classes_tail: Option<ClassTailJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aoa: Option<AoaJson>,
    pub model: &'a ModelInfo,
    pub dataset: &'a DatasetInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snr_input: Option<SnrInput>,
    pub windows_per_s: f64,
    pub seconds: f64,
    pub warnings: &'a [String],
}

/// The headline classification figures (first in the document).
#[derive(Debug, Serialize)]
pub struct ClassHeadJson<'a> {
    pub accuracy: f64,
    /// Mean of `by_snr` (each bucket weighs the same).
    pub mean_snr_accuracy: f64,
    pub by_snr: Ordered<f64>,
    pub per_class: Ordered<f64>,
    /// `confusion[true][predicted]` over `classes`.
    pub confusion: &'a [Vec<u64>],
    pub classes: &'a [String],
    /// Windows counted in the accuracy.
    pub windows: u64,
}

/// The detailed classification figures.
#[derive(Debug, Serialize)]
pub struct ClassTailJson<'a> {
    pub windows_by_snr: Ordered<u64>,
    pub windows_per_class: Ordered<u64>,
    pub per_class_by_snr: Ordered<Ordered<f64>>,
    pub unsupported_classes: Ordered<UnsupportedJson>,
    pub classes_without_windows: Vec<&'a str>,
}

/// Angle figures of one angle, or of both pooled (degrees).
#[derive(Debug, Serialize)]
pub struct AngleJson {
    /// Model MAE over every window.
    pub mae_deg: Option<f64>,
    pub mae_by_snr: Ordered<f64>,
    /// By the window's dataset class.
    pub mae_by_class: Ordered<f64>,
    /// MUSIC MAE over every window (`null` without an array).
    pub music_mae_deg: Option<f64>,
    pub music_mae_by_snr: Ordered<f64>,
    /// `sqrt(mean per-window CRB)` per SNR bucket.
    pub crb_deg_by_snr: Ordered<f64>,
    /// `sqrt(2/π) · mean sqrt(per-window CRB)` per SNR bucket: the bound as an MAE.
    pub crb_mae_deg_by_snr: Ordered<f64>,
}

/// `"aoa"`: the pooled figures at the top, then each angle the model gives in the same shape.
#[derive(Debug, Serialize)]
pub struct AoaJson {
    #[serde(flatten)]
    pub pooled: AngleJson,
    /// Windows with angles evaluated.
    pub windows: u64,
    pub windows_by_snr: Ordered<u64>,
    pub windows_by_class: Ordered<u64>,
    /// The angles the model gives.
    pub angles: Vec<&'static str>,
    /// The array, MUSIC grid and snapshot count behind `music_*` and `crb_*` (`null` without
    /// an array).
    pub reference: Option<AoaReference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub azimuth: Option<AngleJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elevation: Option<AngleJson>,
}

impl AoaEvaluation {
    /// The figures of one angle (`Some`) or pooled (`None`).
    fn angle_json(&self, angle: Option<Angle>) -> AngleJson {
        let by_snr = |f: &dyn Fn(&AngleGroup) -> Option<f64>| -> Ordered<f64> {
            self.by_snr
                .iter()
                .filter_map(|(snr, g)| f(g).map(|v| (snr_key(*snr), v)))
                .collect()
        };
        AngleJson {
            mae_deg: self.overall.mae(angle),
            mae_by_snr: by_snr(&|g| g.mae(angle)),
            mae_by_class: self
                .by_class
                .iter()
                .filter_map(|(c, g)| g.mae(angle).map(|v| (c.clone(), v)))
                .collect(),
            music_mae_deg: self.overall.music_mae(angle),
            music_mae_by_snr: by_snr(&|g| g.music_mae(angle)),
            crb_deg_by_snr: by_snr(&|g| g.crb_deg(angle)),
            crb_mae_deg_by_snr: by_snr(&|g| g.crb_mae_deg(angle)),
        }
    }

    /// The `"aoa"` object.
    pub fn to_json(&self) -> AoaJson {
        let has = |a: Angle| self.angles.contains(&a);
        AoaJson {
            pooled: self.angle_json(None),
            windows: self.overall.windows,
            windows_by_snr: self
                .by_snr
                .iter()
                .map(|(snr, g)| (snr_key(*snr), g.windows))
                .collect(),
            windows_by_class: self
                .by_class
                .iter()
                .map(|(c, g)| (c.clone(), g.windows))
                .collect(),
            angles: self.angles.iter().map(|a| a.name()).collect(),
            reference: self.reference.clone(),
            azimuth: has(Angle::Azimuth).then(|| self.angle_json(Some(Angle::Azimuth))),
            elevation: has(Angle::Elevation).then(|| self.angle_json(Some(Angle::Elevation))),
        }
    }
}

/// The windows to evaluate as `(start, count)` runs: everything, or `max` windows as evenly
/// spaced runs of up to `run` consecutive windows.
fn selection(count: usize, max: Option<usize>, run: usize) -> Vec<(usize, usize)> {
    let take = max.unwrap_or(count).min(count);
    if take == 0 {
        return Vec::new();
    }
    if take == count {
        return vec![(0, count)];
    }
    let runs = take.div_ceil(run);
    (0..runs)
        .map(|r| {
            let len = take * (r + 1) / runs - take * r / runs;
            // Spread the run starts over the file; the last run ends at the end at the latest.
            let start = (count * r / runs).min(count - len);
            (start, len)
        })
        .collect()
}

fn describe_source(m: &Manifest) -> String {
    match &m.source {
        DatasetSource::Synth { recipe, .. } => match m.seed {
            Some(seed) => format!("synthetic, recipe {recipe}, seed {seed}"),
            None => format!("synthetic, recipe {recipe}"),
        },
        DatasetSource::Radioml { variant, file, .. } => format!("RadioML {variant} ({file})"),
        DatasetSource::Recordings { recordings, .. } => {
            format!("cut from {} recordings", recordings.len())
        }
    }
}

/// The angles a card's outputs give, azimuth first.
fn angles_of(card: &crate::infer::ModelCard) -> Vec<Angle> {
    let gives = |kinds: [OutputKind; 2]| card.outputs.iter().any(|o| kinds.contains(&o.kind));
    let mut angles = Vec::new();
    if gives([OutputKind::Azimuth, OutputKind::AzimuthElevation]) {
        angles.push(Angle::Azimuth);
    }
    if gives([OutputKind::Elevation, OutputKind::AzimuthElevation]) {
        angles.push(Angle::Elevation);
    }
    angles
}

/// The array of a dataset's manifest (`array.geometry`, as the array recipes write it), checked
/// against its channel count; the error says why MUSIC and the CRB cannot be computed.
pub fn manifest_array(manifest: &Manifest) -> Result<ArrayGeometry, String> {
    let value = manifest
        .array
        .as_ref()
        .ok_or("the manifest describes no array ('array' is absent)")?;
    let geometry: ArrayGeometry = serde_json::from_value(
        value
            .get("geometry")
            .cloned()
            .unwrap_or_else(|| value.clone()),
    )
    .map_err(|e| format!("the manifest's 'array.geometry' does not parse: {e}"))?;
    ArrayGeometry::new(geometry.layout.clone())
        .map_err(|e| format!("the manifest's 'array.geometry' is not usable: {e}"))?;
    if geometry.len() != manifest.channels {
        return Err(format!(
            "the manifest's array has {} elements but its windows have {} channels",
            geometry.len(),
            manifest.channels
        ));
    }
    Ok(geometry)
}

/// Angle figures gathered batch by batch.
struct AoaAccumulator {
    angles: Vec<Angle>,
    /// `[azimuth, elevation]` of every dataset window, degrees.
    truth: Vec<[f32; 2]>,
    /// MUSIC on the manifest's array, when it has one.
    estimator: Option<DoaEstimator>,
    window_len: usize,
    channels: usize,
    overall: AngleGroup,
    by_snr: BTreeMap<i64, (f64, AngleGroup)>,
    /// By dataset label.
    by_class: Vec<AngleGroup>,
    music_failures: u64,
    crb_undefined: u64,
}

/// MUSIC's `[azimuth, elevation]` and the CRB's `[azimuth, elevation]` variance bounds of a
/// window; `Err(())` for a direction without a finite bound.
type Classical = (Option<[f64; 2]>, Result<[Option<f64>; 2], ()>);

impl AoaAccumulator {
    /// MUSIC and the bound for each window of a batch (in parallel: MUSIC searches the whole
    /// grid per window).
    fn classical(&self, windows: &[C32], start: usize, snrs: &[f32]) -> Vec<Classical> {
        let n = windows.len() / (self.channels * self.window_len);
        let Some(est) = &self.estimator else {
            return vec![(None, Ok([None, None])); n];
        };
        windows
            .par_chunks_exact(self.channels * self.window_len)
            .enumerate()
            .map(|(i, iq)| {
                let music = est
                    .estimate_from_snapshots(DoaMethod::Music, iq, 1)
                    .ok()
                    .and_then(|e| e.first().map(|d| [d.azimuth_deg, d.elevation_deg]));
                let [az, el] = self.truth[start + i].map(f64::from);
                let crb = crb_single_source(
                    est.geometry(),
                    az,
                    el,
                    f64::from(snrs[start + i]),
                    self.window_len,
                )
                .map(|c| [Some(c.azimuth_deg2), c.elevation_deg2])
                .map_err(|_| ());
                (music, crb)
            })
            .collect()
    }

    /// Adds windows `start..start + n` (their model outputs in `out`, samples in `windows`).
    #[allow(clippy::too_many_arguments)]
    fn add_batch(
        &mut self,
        out: &crate::infer::Output,
        windows: &[C32],
        start: usize,
        snrs: &[f32],
        labels: &[i64],
        grid: &[f64],
        model: &str,
    ) -> Result<(), EvalError> {
        let classical = self.classical(windows, start, snrs);
        for (i, (music, crb)) in classical.into_iter().enumerate() {
            let truth = self.truth[start + i].map(f64::from);
            let mut w = WindowAngles::default();
            for &angle in &self.angles {
                let k = angle as usize;
                let estimate = match angle {
                    Angle::Azimuth => out.azimuth_deg(i),
                    Angle::Elevation => out.elevation_deg(i),
                }
                .filter(|v| v.is_finite())
                .ok_or_else(|| EvalError::Output {
                    model: model.to_string(),
                    problem: format!("no finite {} for window {}", angle.name(), start + i),
                })?;
                w.model[k] = Some(angle.error_deg(f64::from(estimate), truth[k]));
                w.music[k] = music.map(|m| angle.error_deg(m[k], truth[k]));
                w.crb[k] = crb.ok().and_then(|c| c[k]);
            }
            if self.estimator.is_some() {
                self.music_failures += u64::from(music.is_none());
                self.crb_undefined += u64::from(crb.is_err());
            }
            let snr = bucket_of(snrs[start + i], grid);
            self.overall.add(&w);
            self.by_snr
                .entry((snr * 1000.0).round() as i64)
                .or_insert_with(|| (snr, AngleGroup::default()))
                .1
                .add(&w);
            // Labels were checked to lie inside the manifest's classes.
            self.by_class[labels[start + i] as usize].add(&w);
        }
        Ok(())
    }

    fn finish(self, classes: &[String], grid: DoaGrid) -> AoaEvaluation {
        let music_failures = self.music_failures;
        let crb_undefined = self.crb_undefined;
        let window_len = self.window_len;
        AoaEvaluation {
            angles: self.angles,
            overall: self.overall,
            by_snr: self.by_snr.into_values().collect(),
            by_class: classes
                .iter()
                .cloned()
                .zip(self.by_class)
                .filter(|(_, g)| g.windows > 0)
                .collect(),
            reference: self.estimator.map(|e| AoaReference {
                array: e.geometry().clone(),
                grid,
                snapshots: window_len,
                music_failures,
                crb_undefined,
            }),
        }
    }
}

/// One figure of an angle table's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Figure {
    /// The model's MAE, pooled (`None`) or of one angle.
    Model(Option<Angle>),
    /// MUSIC's MAE, pooled over the model's angles.
    Music,
    /// `sqrt(mean per-window CRB)`, pooled over the model's angles.
    Crb,
    /// The CRB as an MAE, pooled over the model's angles.
    CrbMae,
}

impl Figure {
    fn header(self) -> String {
        match self {
            Figure::Model(None) => "MAE".into(),
            Figure::Model(Some(a)) => format!("{} MAE", a.name()),
            Figure::Music => "MUSIC MAE".into(),
            Figure::Crb => "CRB".into(),
            Figure::CrbMae => "CRB as MAE".into(),
        }
    }

    fn of(self, g: &AngleGroup) -> Option<f64> {
        match self {
            Figure::Model(a) => g.mae(a),
            Figure::Music => g.music_mae(None),
            Figure::Crb => g.crb_deg(None),
            Figure::CrbMae => g.crb_mae_deg(None),
        }
    }
}

/// Degrees with two decimals, `—` for a figure that is not there.
fn degrees(v: Option<f64>) -> String {
    v.map_or_else(|| "—".into(), |v| format!("{v:.2}°"))
}

impl AoaEvaluation {
    /// The columns of the angle tables: pooled MAE, each angle's when the model gives two, then
    /// MUSIC and the CRB when the array is known.
    fn figures(&self) -> Vec<Figure> {
        let mut f = vec![Figure::Model(None)];
        if self.angles.len() > 1 {
            f.extend(self.angles.iter().map(|a| Figure::Model(Some(*a))));
        }
        if self.reference.is_some() {
            f.extend([Figure::Music, Figure::Crb, Figure::CrbMae]);
        }
        f
    }

    /// The headline in words; `bold` wraps the main figure (`**` in Markdown).
    pub fn headline(&self, bold: &str) -> String {
        let o = &self.overall;
        let mut s = match self.angles.as_slice() {
            [one] => format!("{bold}{}{bold} {} MAE", degrees(o.mae(None)), one.name()),
            _ => format!(
                "{bold}{}{bold} MAE (azimuth {}, elevation {})",
                degrees(o.mae(None)),
                degrees(o.mae(Some(Angle::Azimuth))),
                degrees(o.mae(Some(Angle::Elevation)))
            ),
        };
        let _ = write!(s, " over {} windows", o.windows);
        if self.reference.is_some() {
            let _ = write!(s, "; MUSIC {}", degrees(o.music_mae(None)));
        }
        s
    }

    /// How MUSIC and the CRB were computed, in one sentence.
    fn reference_note(&self) -> String {
        match &self.reference {
            None => "MUSIC and the CRB are left out: the dataset's manifest gives no usable array."
                .into(),
            Some(r) => {
                let g = &r.grid;
                format!(
                    "MUSIC: the daemon's estimator (one source) on the manifest's {} array, \
                     azimuth {}..{}° and elevation {}..{}° at {}° refined, {} snapshots per \
                     window. CRB: the square root of the mean per-window Cramér–Rao variance \
                     bound (stochastic, one source; each window's true angles, true SNR as the \
                     per-element SNR, {} snapshots): the RMS error of an efficient unbiased \
                     estimator on those windows. CRB as MAE: sqrt(2/π) times the mean per-window \
                     bound on the standard deviation, the MAE such an estimator with Gaussian \
                     errors would have (below 0.8 × CRB whenever the windows' bounds differ).",
                    layout_name(&r.array),
                    g.az_min_deg,
                    g.az_max_deg,
                    g.el_min_deg,
                    g.el_max_deg,
                    g.step_deg,
                    r.snapshots,
                    r.snapshots
                )
            }
        }
    }

    /// The angle part of the text table.
    fn text_table(&self, s: &mut String) {
        let _ = writeln!(s, "\nangles   {}", self.headline(""));
        let figures = self.figures();
        // SNR keys are right-aligned, class names left-aligned (as in the accuracy tables).
        let first_cell = |first: &str, width: usize| {
            if width == 8 {
                format!("{first:>width$}")
            } else {
                format!("{first:<width$}")
            }
        };
        let row = |s: &mut String, first: &str, width: usize, g: &AngleGroup| {
            let _ = write!(s, "{}  {:>9}", first_cell(first, width), g.windows);
            for f in &figures {
                let _ = write!(s, "  {:>13}", degrees(f.of(g)));
            }
            let _ = writeln!(s);
        };
        let header = |s: &mut String, first: &str, width: usize| {
            let _ = write!(s, "\n{}  {:>9}", first_cell(first, width), "windows");
            for f in &figures {
                let _ = write!(s, "  {:>13}", f.header());
            }
            let _ = writeln!(s);
        };
        header(s, "SNR dB", 8);
        for (snr, g) in &self.by_snr {
            row(s, &snr_key(*snr), 8, g);
        }
        let width = self
            .by_class
            .iter()
            .map(|(c, _)| c.chars().count())
            .max()
            .unwrap_or(5)
            .max(9);
        header(s, "class", width);
        for (class, g) in &self.by_class {
            row(s, class, width, g);
        }
        let _ = writeln!(s, "\n{}", self.reference_note());
    }

    /// The angle section of the Markdown report.
    fn markdown(&self, s: &mut String, dataset: &DatasetInfo) {
        let figures = self.figures();
        let _ = writeln!(
            s,
            "## Angle of arrival\n\n![angle error against SNR](mae_vs_snr.png)\n\n{}\n",
            self.headline("**")
        );
        let _ = writeln!(
            s,
            "Errors are the model's angle minus the true one (`angles.npy`), azimuth wrapped to \
             [−180°, 180°); MAE is the mean absolute error, pooled over the angles the model \
             gives ({}). Every evaluated window counts, whatever its class; each counts in the \
             SNR bucket nearest its SNR ({}). {}\n",
            self.angles
                .iter()
                .map(|a| a.name())
                .collect::<Vec<_>>()
                .join(", "),
            if dataset.snr_grid_db.is_empty() {
                "no grid declared: whole dB"
            } else {
                "manifest `snr_grid_db`"
            },
            self.reference_note()
        );
        let table = |s: &mut String, first: &str, rows: Vec<(String, &AngleGroup)>| {
            let _ = write!(s, "| {first} | windows |");
            for f in &figures {
                let _ = write!(s, " {} (°) |", f.header());
            }
            let _ = writeln!(s, "\n|---|---:|{}", "---:|".repeat(figures.len()));
            for (name, g) in rows {
                let _ = write!(s, "| {} | {} |", md_cell(&name), g.windows);
                for f in &figures {
                    let v = f.of(g).map_or_else(|| "—".into(), |v| format!("{v:.2}"));
                    let _ = write!(s, " {v} |");
                }
                let _ = writeln!(s);
            }
            let _ = writeln!(s);
        };
        table(
            s,
            "SNR (dB)",
            self.by_snr.iter().map(|(k, g)| (snr_key(*k), g)).collect(),
        );
        let _ = writeln!(s, "### Angle error per class\n");
        table(
            s,
            "class",
            self.by_class.iter().map(|(c, g)| (c.clone(), g)).collect(),
        );
    }

    /// MAE against SNR: the model's (pooled, and each angle's when it gives two), MUSIC's and
    /// the CRB, on a log axis.
    pub fn chart(&self, subtitle: String) -> LineChart {
        let curve = |f: Figure| -> Vec<(f64, f64)> {
            self.by_snr
                .iter()
                .filter_map(|(snr, g)| f.of(g).map(|v| (*snr, v)))
                .collect()
        };
        let mut lines = vec![Line {
            width: 3.2,
            markers: true,
            bold: true,
            ..Line::new("model MAE", curve(Figure::Model(None)), plot::colors::TEXT)
        }];
        if self.angles.len() > 1 {
            for (angle, color) in self.angles.iter().zip([1, 2]) {
                lines.push(Line {
                    width: 1.8,
                    ..Line::new(
                        format!("model {} MAE", angle.name()),
                        curve(Figure::Model(Some(*angle))),
                        plot::colors::CATEGORICAL[color],
                    )
                });
            }
        }
        if self.reference.is_some() {
            lines.push(Line {
                width: 2.4,
                markers: true,
                ..Line::new(
                    "MUSIC MAE",
                    curve(Figure::Music),
                    plot::colors::CATEGORICAL[0],
                )
            });
            lines.push(Line {
                dashed: true,
                ..Line::new(
                    "CRB (RMS bound)",
                    curve(Figure::Crb),
                    plot::colors::CATEGORICAL[3],
                )
            });
            lines.push(Line {
                dashed: true,
                width: 1.6,
                ..Line::new(
                    "CRB as MAE",
                    curve(Figure::CrbMae),
                    plot::colors::CATEGORICAL[13],
                )
            });
        }
        lines.retain(|l| !l.points.is_empty());
        LineChart {
            title: "Angle error against SNR".into(),
            subtitle,
            x_label: "SNR (dB)".into(),
            y_label: "Error (°)".into(),
            y_axis: YAxis::Log,
            lines,
            references: Vec::new(),
        }
    }
}

/// `2×2 URA`, `4-element ULA`, `8-element UCA`.
fn layout_name(array: &ArrayGeometry) -> String {
    use crate::dsp::array::ArrayLayout;
    match &array.layout {
        ArrayLayout::Ula { elements, .. } => format!("{elements}-element ULA"),
        ArrayLayout::Ura { rows, cols, .. } => format!("{rows}×{cols} URA"),
        ArrayLayout::Uca { elements, .. } => format!("{elements}-element UCA"),
    }
}

/// Evaluates the model at `model_path` (its card `NAME.json`, or `NAME.onnx` with the card
/// beside it) on the dataset folder `data_dir`. `progress(done, total)` is called after each
/// batch with windows evaluated so far.
pub fn evaluate(
    model_path: &Path,
    data_dir: &Path,
    options: &EvalOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Evaluation, EvalError> {
    if options.batch == 0 {
        return Err(EvalError::Param {
            name: "batch",
            problem: "is 0; expected at least 1 window per batch".into(),
        });
    }
    if options.max_windows == Some(0) {
        return Err(EvalError::Param {
            name: "max-windows",
            problem: "is 0; expected at least 1 window".into(),
        });
    }
    let mut dataset = Dataset::open(data_dir)?;
    let manifest = dataset.manifest.clone();
    if dataset.is_empty() {
        return Err(EvalError::Empty {
            dataset: data_dir.to_path_buf(),
            problem: "has no windows (manifest.json 'count' is 0)".into(),
        });
    }
    let labels = dataset.labels()?;
    let snrs = dataset.snr_db()?;
    let digest = Manifest::digest_of_file(data_dir)?;

    let mut model = Model::load(model_path, &options.runtime)?;
    let card = model.card().clone();
    let model_name = card.name.clone();
    let classifies = card.class_output().is_some();
    let model_angles = angles_of(&card);
    let true_angles = if model_angles.is_empty() {
        None
    } else {
        dataset.angles_deg()?
    };
    if !classifies && true_angles.is_none() {
        let task = match card.task {
            Task::Amc => "amc",
            Task::Aoa => "aoa",
            Task::AmcAoa => "amc+aoa",
        };
        return Err(EvalError::NoAngles {
            model: model_name,
            card: model.card_path().to_path_buf(),
            task: task.into(),
            dataset: data_dir.to_path_buf(),
        });
    }
    if card.channels != manifest.channels || card.window_len != manifest.window_len {
        return Err(EvalError::WindowShape {
            dataset: data_dir.to_path_buf(),
            data_channels: manifest.channels,
            data_len: manifest.window_len,
            model: model_name,
            card: model.card_path().to_path_buf(),
            model_channels: card.channels,
            model_len: card.window_len,
        });
    }
    let to_model: Vec<Option<usize>> = manifest
        .classes
        .iter()
        .map(|c| card.classes.iter().position(|m| m == c))
        .collect();
    if classifies && to_model.iter().all(Option::is_none) {
        return Err(EvalError::NoCommonClass {
            dataset: data_dir.to_path_buf(),
            dataset_classes: manifest.classes.join(", "),
            model: model_name,
            model_classes: card.classes.join(", "),
        });
    }

    let mut warnings = Vec::new();
    if digest.eq_ignore_ascii_case(&card.dataset.manifest_sha256) {
        warnings.push(format!(
            "the model's card says it was trained on this very dataset (manifest sha256 {}); \
             unless these windows were held out from training, the {} optimistic",
            short_digest(&digest),
            if classifies {
                "accuracy is"
            } else {
                "figures are"
            }
        ));
    }
    if let Some(rate) = manifest.sample_rate_hz
        && (rate - card.sample_rate_hz).abs() > 1e-6 * card.sample_rate_hz
    {
        warnings.push(format!(
            "the dataset's sample rate is {rate} Hz but the model was made for {} Hz",
            card.sample_rate_hz
        ));
    }
    if let Some(reason) = model.cuda_fallback() {
        warnings.push(format!("ran on CPU: {reason}"));
    }
    let has_snr_input = card.extra_inputs.iter().any(|i| i.kind == ExtraKind::SnrDb);
    if !has_snr_input && options.snr_input == SnrInput::Dataset {
        warnings.push(format!(
            "the dataset's true SNR was asked for, but model '{}' has no SNR input; it changes \
             nothing",
            card.name
        ));
    }
    if !model_angles.is_empty() && true_angles.is_none() {
        warnings.push(format!(
            "model '{}' gives angles but the dataset has no angles.npy; its angles are not \
             evaluated",
            card.name
        ));
    }
    // The station's `doa` config searches this grid unless told otherwise.
    let doa_grid = DoaGrid::default();
    let mut aoa = match true_angles {
        None => None,
        Some(truth) => {
            let estimator = match manifest_array(&manifest)
                .and_then(|g| DoaEstimator::new(g, doa_grid).map_err(|e| e.to_string()))
            {
                Ok(e) => Some(e),
                Err(why) => {
                    warnings.push(format!(
                        "MUSIC and the Cramér–Rao bound are left out: {why}"
                    ));
                    None
                }
            };
            Some(AoaAccumulator {
                angles: model_angles,
                truth,
                estimator,
                window_len: manifest.window_len,
                channels: manifest.channels,
                overall: AngleGroup::default(),
                by_snr: BTreeMap::new(),
                by_class: vec![AngleGroup::default(); manifest.classes.len()],
                music_failures: 0,
                crb_undefined: 0,
            })
        }
    };

    let grid: Vec<f64> = {
        let mut g: Vec<f64> = manifest.snr_grid_db.iter().map(|v| f64::from(*v)).collect();
        g.sort_by(f64::total_cmp);
        g.dedup();
        g
    };
    let k = card.classes.len();
    let mut confusion = vec![vec![0u64; k]; k];
    let mut buckets: BTreeMap<i64, SnrBucket> = BTreeMap::new();
    let mut unsupported: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    let runs = selection(dataset.len(), options.max_windows, options.batch);
    let total: usize = runs.iter().map(|r| r.1).sum();
    let mut done = 0usize;
    let started = Instant::now();
    for (run_start, run_len) in runs {
        let mut start = run_start;
        while start < run_start + run_len {
            let n = options.batch.min(run_start + run_len - start);
            let windows = dataset.read_windows(start, n)?;
            let out = match (has_snr_input, options.snr_input) {
                (true, SnrInput::Dataset) => {
                    model.run_with_snr(&windows, n, &snrs[start..start + n])?
                }
                _ => model.run(&windows, n)?,
            };
            for i in (0..n).filter(|_| classifies) {
                let predicted = out
                    .best(i)
                    .ok_or_else(|| EvalError::Output {
                        model: card.name.clone(),
                        problem: format!("no class probabilities for window {}", start + i),
                    })?
                    .class;
                // Labels were checked to lie inside the manifest's classes.
                let label = labels[start + i] as usize;
                match to_model[label] {
                    Some(truth) => {
                        confusion[truth][predicted] += 1;
                        let snr = bucket_of(snrs[start + i], &grid);
                        // Buckets keyed by millidecibels: grid values are distinct, finite.
                        let b = buckets
                            .entry((snr * 1000.0).round() as i64)
                            .or_insert_with(|| SnrBucket {
                                snr_db: snr,
                                windows: 0,
                                correct: 0,
                                per_class: vec![(0, 0); k],
                            });
                        let hit = u64::from(truth == predicted);
                        b.windows += 1;
                        b.correct += hit;
                        b.per_class[truth].0 += 1;
                        b.per_class[truth].1 += hit;
                    }
                    None => unsupported.entry(label).or_insert_with(|| vec![0; k])[predicted] += 1,
                }
            }
            if let Some(acc) = aoa.as_mut() {
                acc.add_batch(out, &windows, start, &snrs, &labels, &grid, &card.name)?;
            }
            start += n;
            done += n;
            progress(done, total);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let aoa = aoa.map(|acc| acc.finish(&manifest.classes, doa_grid));
    if let Some(r) = aoa.as_ref().and_then(|a| a.reference.as_ref()) {
        if r.music_failures > 0 {
            warnings.push(format!(
                "MUSIC found no direction for {} window(s); they are left out of its figures",
                r.music_failures
            ));
        }
        if r.crb_undefined > 0 {
            warnings.push(format!(
                "the Cramér–Rao bound is undefined at the direction of {} window(s) (the pole or \
                 endfire); they are left out of its figures",
                r.crb_undefined
            ));
        }
    }
    let evaluation = Evaluation {
        model: ModelInfo {
            name: card.name.clone(),
            version: card.version.clone(),
            card: model.card_path().to_path_buf(),
            onnx: model.onnx_path().to_path_buf(),
            provider: model.provider().to_string(),
            trained_on_manifest_sha256: card.dataset.manifest_sha256.clone(),
        },
        dataset: DatasetInfo {
            dir: data_dir.to_path_buf(),
            source: describe_source(&manifest),
            manifest_sha256: digest,
            classes: manifest.classes.clone(),
            count: manifest.count,
            channels: manifest.channels,
            window_len: manifest.window_len,
            snr_grid_db: manifest.snr_grid_db.clone(),
        },
        classes: card.classes.clone(),
        confusion,
        buckets: buckets.into_values().collect(),
        unsupported: unsupported
            .into_iter()
            .map(|(label, counts)| {
                let mut predicted: Vec<(String, u64)> = counts
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| **n > 0)
                    .map(|(p, n)| (card.classes[p].clone(), *n))
                    .collect();
                predicted.sort_by_key(|p| std::cmp::Reverse(p.1));
                UnsupportedClass {
                    name: manifest.classes[label].clone(),
                    windows: counts.iter().sum(),
                    predicted,
                }
            })
            .collect(),
        windows_read: done as u64,
        seconds,
        snr_input: has_snr_input.then_some(options.snr_input),
        aoa,
        warnings,
    };
    if classifies && evaluation.windows() == 0 {
        return Err(EvalError::Empty {
            dataset: data_dir.to_path_buf(),
            problem: format!(
                "none of the {done} windows evaluated belongs to a class model '{}' knows ({}); \
                 evaluate more windows (--max-windows) or all of them",
                card.name,
                card.classes.join(", ")
            ),
        });
    }
    Ok(evaluation)
}

/// The paths [`write_report`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportFiles {
    pub json: PathBuf,
    /// For a model with a class output.
    pub accuracy_png: Option<PathBuf>,
    /// For a model with a class output.
    pub confusion_png: Option<PathBuf>,
    pub markdown: PathBuf,
    /// When angles were evaluated.
    pub mae_png: Option<PathBuf>,
}

/// Writes the report folder `dir` (created if needed): `eval.json`, `report.md` (quoting
/// `command`), and the charts that apply — `accuracy_vs_snr.png` and `confusion.png` for a
/// classifier, `mae_vs_snr.png` when angles were evaluated.
pub fn write_report(
    evaluation: &Evaluation,
    dir: &Path,
    command: &str,
) -> Result<ReportFiles, EvalError> {
    std::fs::create_dir_all(dir).map_err(|source| EvalError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let classifies = evaluation.classifies();
    let files = ReportFiles {
        json: dir.join(REPORT_FILES[0]),
        accuracy_png: classifies.then(|| dir.join(REPORT_FILES[1])),
        confusion_png: classifies.then(|| dir.join(REPORT_FILES[2])),
        markdown: dir.join(REPORT_FILES[3]),
        mae_png: evaluation.aoa.is_some().then(|| dir.join(REPORT_FILES[4])),
    };
    let json =
        serde_json::to_string_pretty(&evaluation.to_json()).map_err(|source| EvalError::Json {
            path: files.json.clone(),
            source,
        })?;
    write_file(&files.json, &(json + "\n"))?;
    let plot_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| EvalError::Plot { path, source }
    };
    if let Some(path) = &files.accuracy_png {
        plot::accuracy_vs_snr(&evaluation.accuracy_chart(), path).map_err(plot_err(path))?;
    }
    if let Some(path) = &files.confusion_png {
        plot::confusion_matrix(&evaluation.confusion_chart(), path).map_err(plot_err(path))?;
    }
    if let (Some(path), Some(chart)) = (&files.mae_png, evaluation.mae_chart()) {
        plot::line_chart(&chart, path).map_err(plot_err(path))?;
    }
    write_file(&files.markdown, &evaluation.markdown(command))?;
    Ok(files)
}

/// The top-level keys of [`EvalJson`] that [`summarize_repeats`] summarises.
pub const REPEAT_FIGURES: [&str; 6] = [
    "accuracy",
    "mean_snr_accuracy",
    "by_snr",
    "per_class",
    "per_class_by_snr",
    "aoa",
];

/// Several evaluations of the same kind (e.g. few-shot runs on different draws of the labelled
/// windows) as one JSON object: every number under the keys of [`REPEAT_FIGURES`] becomes
/// `{"mean": m, "sd": s, "n": k}` at the same place — the mean, the sample standard deviation
/// (`n − 1` in the denominator; 0 for a single value) and how many of the evaluations had that
/// figure (a class may be missing from some draws). Text, lists and `null`s are left out;
/// `"repeats"` says how many evaluations were given.
pub fn summarize_repeats(evaluations: &[Evaluation]) -> Result<serde_json::Value, EvalError> {
    use serde_json::Value;
    if evaluations.is_empty() {
        return Err(EvalError::Param {
            name: "repeats",
            problem: "is empty; expected at least one evaluation".into(),
        });
    }
    let docs: Vec<Value> = evaluations
        .iter()
        .map(|e| serde_json::to_value(e.to_json()).unwrap_or_default())
        .collect();
    fn summarize(values: &[&Value]) -> Option<Value> {
        let numbers: Vec<f64> = values.iter().filter_map(|v| v.as_f64()).collect();
        if !numbers.is_empty() {
            let n = numbers.len() as f64;
            let mean = numbers.iter().sum::<f64>() / n;
            let sd = if numbers.len() > 1 {
                (numbers.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
            } else {
                0.0
            };
            return Some(serde_json::json!({"mean": mean, "sd": sd, "n": numbers.len()}));
        }
        let objects: Vec<&serde_json::Map<String, Value>> =
            values.iter().filter_map(|v| v.as_object()).collect();
        if objects.is_empty() {
            return None;
        }
        let mut out = serde_json::Map::new();
        for key in objects.iter().flat_map(|o| o.keys()) {
            if out.contains_key(key) {
                continue;
            }
            let children: Vec<&Value> = objects.iter().filter_map(|o| o.get(key)).collect();
            if let Some(v) = summarize(&children) {
                out.insert(key.clone(), v);
            }
        }
        (!out.is_empty()).then_some(Value::Object(out))
    }
    let mut out = serde_json::Map::new();
    out.insert("repeats".into(), evaluations.len().into());
    for key in REPEAT_FIGURES {
        let values: Vec<&Value> = docs.iter().filter_map(|d| d.get(key)).collect();
        if let Some(v) = summarize(&values) {
            out.insert(key.into(), v);
        }
    }
    Ok(Value::Object(out))
}

fn write_file(path: &Path, text: &str) -> Result<(), EvalError> {
    std::fs::write(path, text).map_err(|source| EvalError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_takes_everything_or_evenly_spread_runs() {
        assert_eq!(selection(10, None, 4), vec![(0, 10)]);
        assert_eq!(selection(10, Some(50), 4), vec![(0, 10)]);
        let runs = selection(1000, Some(10), 4);
        assert_eq!(runs.iter().map(|r| r.1).sum::<usize>(), 10);
        assert_eq!(runs.len(), 3);
        assert_eq!(runs[0].0, 0);
        assert!(runs[1].0 >= 300 && runs[2].0 >= 600, "{runs:?}");
        // Runs stay inside the file and do not overlap.
        let runs = selection(7, Some(6), 1);
        for w in runs.windows(2) {
            assert!(w[0].0 + w[0].1 <= w[1].0, "{runs:?}");
        }
        assert!(runs.iter().all(|(s, n)| s + n <= 7));
    }

    #[test]
    fn snr_goes_to_the_nearest_grid_point() {
        let grid = [-20.0, -18.0, 0.0, 2.5];
        assert_eq!(bucket_of(-19.2, &grid), -20.0);
        assert_eq!(bucket_of(-18.6, &grid), -18.0);
        assert_eq!(bucket_of(1.9, &grid), 2.5);
        assert_eq!(bucket_of(40.0, &grid), 2.5);
        assert_eq!(bucket_of(3.4, &[]), 3.0);
        assert_eq!(snr_key(-20.0), "-20");
        assert_eq!(snr_key(2.5), "2.5");
        assert_eq!(snr_key(-0.0), "0");
    }

    #[test]
    fn provider_option_parses() {
        assert_eq!(parse_provider("cpu").unwrap(), ExecutionPreference::Cpu);
        assert_eq!(
            parse_provider("cuda:1").unwrap(),
            ExecutionPreference::Cuda { device_id: 1 }
        );
        let e = parse_provider("gpu").unwrap_err().to_string();
        assert!(e.contains("'provider' is 'gpu'"), "{e}");
    }

    #[test]
    fn azimuth_error_wraps_and_elevation_error_does_not() {
        assert_eq!(Angle::Azimuth.error_deg(170.0, -170.0), -20.0);
        assert_eq!(Angle::Azimuth.error_deg(-170.0, 170.0), 20.0);
        assert_eq!(Angle::Azimuth.error_deg(10.0, -170.0), -180.0);
        assert_eq!(Angle::Azimuth.error_deg(5.0, 65.0), -60.0);
        assert_eq!(Angle::Elevation.error_deg(80.0, -100.0), 180.0);
        assert_eq!(Angle::Elevation.error_deg(-5.0, 65.0), -70.0);
    }

    #[test]
    fn groups_pool_both_angles_and_the_crb_is_the_root_of_the_mean_bound() {
        let mut g = AngleGroup::default();
        g.add(&WindowAngles {
            model: [Some(-3.0), Some(1.0)],
            music: [Some(0.5), None],
            crb: [Some(4.0), Some(1.0)],
        });
        g.add(&WindowAngles {
            model: [Some(5.0), Some(-3.0)],
            music: [Some(-1.5), Some(2.0)],
            crb: [Some(16.0), Some(9.0)],
        });
        assert_eq!(g.windows, 2);
        assert_eq!(g.mae(Some(Angle::Azimuth)), Some(4.0));
        assert_eq!(g.mae(Some(Angle::Elevation)), Some(2.0));
        assert_eq!(g.mae(None), Some(3.0));
        assert_eq!(g.music_mae(Some(Angle::Elevation)), Some(2.0));
        assert_eq!(g.music_mae(None), Some(4.0 / 3.0));
        assert_eq!(g.crb_deg(Some(Angle::Azimuth)), Some(10f64.sqrt()));
        assert_eq!(g.crb_deg(None), Some(7.5f64.sqrt()));
        let gaussian = (2.0 / std::f64::consts::PI).sqrt();
        assert_eq!(g.crb_mae_deg(Some(Angle::Azimuth)), Some(gaussian * 3.0));
        assert_eq!(g.crb_mae_deg(None), Some(gaussian * 10.0 / 4.0));
        assert_eq!(AngleGroup::default().mae(None), None);
    }

    #[test]
    fn music_searches_the_grid_the_station_doa_config_uses_by_default() {
        let config: crate::config::DoaConfig = toml::from_str("array = \"ura\"").unwrap();
        assert_eq!(config.grid(), DoaGrid::default());
    }

    fn manifest_with(array: Option<serde_json::Value>, channels: usize) -> Manifest {
        Manifest {
            format: String::new(),
            source: DatasetSource::Synth {
                recipe: "aoa4".into(),
                params: serde_json::json!({}),
            },
            seed: Some(1),
            generator_version: String::new(),
            classes: vec!["A".into()],
            window_len: 64,
            channels,
            sample_rate_hz: None,
            snr_grid_db: vec![],
            snr_definition: String::new(),
            count: 0,
            counts_per_class: Default::default(),
            has_angles: true,
            array,
            notes: vec![],
        }
    }

    #[test]
    fn the_manifest_array_is_read_and_checked_against_the_channels() {
        let geometry = ArrayGeometry::default_aoa4();
        let written = serde_json::json!({ "geometry": geometry, "channels": 4 });
        let read = manifest_array(&manifest_with(Some(written.clone()), 4)).unwrap();
        assert_eq!(read, geometry);
        let e = manifest_array(&manifest_with(Some(written), 2)).unwrap_err();
        assert!(
            e.contains("4 elements but its windows have 2 channels"),
            "{e}"
        );
        let e = manifest_array(&manifest_with(None, 4)).unwrap_err();
        assert!(e.contains("'array' is absent"), "{e}");
        let bad = serde_json::json!({ "geometry": { "layout": { "kind": "spiral" } } });
        let e = manifest_array(&manifest_with(Some(bad), 4)).unwrap_err();
        assert!(e.contains("does not parse"), "{e}");
    }

    fn evaluation_with(correct: u64, windows: u64) -> Evaluation {
        Evaluation {
            model: ModelInfo {
                name: "m".into(),
                version: "1".into(),
                card: "m.json".into(),
                onnx: "m.onnx".into(),
                provider: "CPU".into(),
                trained_on_manifest_sha256: String::new(),
            },
            dataset: DatasetInfo {
                dir: "d".into(),
                source: String::new(),
                manifest_sha256: String::new(),
                classes: vec!["A".into(), "B".into()],
                count: windows as usize,
                channels: 1,
                window_len: 8,
                snr_grid_db: vec![0.0],
            },
            classes: vec!["A".into(), "B".into()],
            confusion: vec![vec![correct, windows - correct], vec![0, 0]],
            buckets: vec![SnrBucket {
                snr_db: 0.0,
                windows,
                correct,
                per_class: vec![(windows, correct), (0, 0)],
            }],
            unsupported: vec![],
            windows_read: windows,
            seconds: 1.0,
            snr_input: None,
            aoa: None,
            warnings: vec![],
        }
    }

    #[test]
    fn repeats_are_summarised_as_mean_sd_and_count_per_figure() {
        let runs = [evaluation_with(5, 10), evaluation_with(10, 10)];
        let s = summarize_repeats(&runs).unwrap();
        assert_eq!(s["repeats"], 2);
        let sd = (2.0 * 0.25f64.powi(2)).sqrt();
        for figure in [&s["accuracy"], &s["by_snr"]["0"], &s["per_class"]["A"]] {
            assert!(
                (figure["mean"].as_f64().unwrap() - 0.75).abs() < 1e-12,
                "{s}"
            );
            assert!((figure["sd"].as_f64().unwrap() - sd).abs() < 1e-12, "{s}");
            assert_eq!(figure["n"], 2);
        }
        assert!(s.get("model").is_none() && s.get("aoa").is_none(), "{s}");
        let one = summarize_repeats(&runs[..1]).unwrap();
        assert_eq!(one["accuracy"]["sd"], 0.0);
        assert!(summarize_repeats(&[]).is_err());
    }

    #[test]
    fn ordered_map_keeps_its_order_in_json() {
        let m: Ordered<u64> = [("-2".to_string(), 1), ("-10".to_string(), 2)]
            .into_iter()
            .collect();
        assert_eq!(serde_json::to_string(&m).unwrap(), r#"{"-2":1,"-10":2}"#);
    }
}
