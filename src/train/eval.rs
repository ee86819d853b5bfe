//! Evaluation of an exported classifier on a dataset folder, through the daemon's own inference
//! path: [`crate::infer::Model`] (the model card's normalisation and representation, computed by
//! [`crate::dsp`], then ONNX Runtime).
//!
//! ```text
//! DIR/manifest.json ─┐
//! DIR/x.npy ── chunks of --batch windows ──▶ Model::run ──▶ best class ─┐
//! DIR/y.npy ── dataset class ── by name ──▶ model class (or unsupported) ┼─▶ Evaluation
//! DIR/snr.npy ── nearest point of the manifest's SNR grid ──────────────┘     │
//!                                       text table · JSON · report folder ◀───┘
//! ```
//!
//! - **Streaming.** Windows are read `batch` at a time ([`Dataset::read_windows`]); only the
//!   labels and SNRs (12 bytes a window) are held whole.
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
//! - **Report.** [`write_report`] writes `eval.json`, `accuracy_vs_snr.png`, `confusion.png`
//!   (row-normalised) and `report.md` (with the command that made it).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use serde::ser::SerializeMap;

use super::plot::{self, AccuracyChart, ConfusionChart, PlotError, Series};
use crate::infer::card::ExtraKind;
use crate::infer::{ExecutionPreference, InferError, Model, RuntimeOptions};
use crate::iq::dataset::{Dataset, DatasetError, DatasetSource, Manifest};

/// Windows per inference batch unless told otherwise.
pub const DEFAULT_BATCH: usize = 256;

/// Files [`write_report`] writes into the report folder.
pub const REPORT_FILES: [&str; 4] = [
    "eval.json",
    "accuracy_vs_snr.png",
    "confusion.png",
    "report.md",
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
    /// The model has no class output (an AoA-only model).
    #[error(
        "model '{model}' ({card}) has no class output (task {task}); eval measures \
         classification accuracy"
    )]
    NotClassifier {
        model: String,
        card: PathBuf,
        task: String,
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

/// The outcome of [`evaluate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub model: ModelInfo,
    pub dataset: DatasetInfo,
    /// The model's classes: the order of the confusion matrix and of `per_class`.
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
        let by_snr = self
            .buckets
            .iter()
            .map(|b| (snr_key(b.snr_db), ratio(b.correct, b.windows)))
            .collect();
        let windows_by_snr = self
            .buckets
            .iter()
            .map(|b| (snr_key(b.snr_db), b.windows))
            .collect();
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
        EvalJson {
            accuracy: self.accuracy(),
            mean_snr_accuracy: self.mean_snr_accuracy(),
            by_snr,
            per_class: per_class
                .iter()
                .map(|(c, _, a)| (c.to_string(), *a))
                .collect(),
            confusion: &self.confusion,
            classes: &self.classes,
            windows: self.windows(),
            windows_read: self.windows_read,
            windows_by_snr,
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
            model: &self.model,
            dataset: &self.dataset,
            snr_input: self.snr_input,
            windows_per_s: self.windows_per_s(),
            seconds: self.seconds,
            warnings: &self.warnings,
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
        let _ = writeln!(
            s,
            "windows  {} evaluated of {} read ({} in the dataset), {:.0} windows/s",
            self.windows(),
            self.windows_read,
            d.count,
            self.windows_per_s()
        );
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
        let _ = writeln!(
            s,
            "\n## How this report was made\n\n```sh\n{command}\n```\n\nThe same figures are in \
             [`eval.json`](eval.json)."
        );
        s
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

/// The JSON document of an evaluation. Accuracies are fractions in [0, 1].
#[derive(Debug, Serialize)]
pub struct EvalJson<'a> {
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
    /// Windows classified, including those of classes the model lacks.
    pub windows_read: u64,
    pub windows_by_snr: Ordered<u64>,
    pub windows_per_class: Ordered<u64>,
    pub per_class_by_snr: Ordered<Ordered<f64>>,
    pub unsupported_classes: Ordered<UnsupportedJson>,
    pub classes_without_windows: Vec<&'a str>,
    pub model: &'a ModelInfo,
    pub dataset: &'a DatasetInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snr_input: Option<SnrInput>,
    pub windows_per_s: f64,
    pub seconds: f64,
    pub warnings: &'a [String],
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
    }
}

/// Evaluates the model at `model_path` (its card `NAME.json`, or `NAME.onnx` with the card
/// beside it) on the dataset folder `data_dir`. `progress(done, total)` is called after each
/// batch with windows classified so far.
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
    if card.class_output().is_none() {
        let task = serde_json::to_value(card.task)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        return Err(EvalError::NotClassifier {
            model: model_name,
            card: model.card_path().to_path_buf(),
            task,
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
    if to_model.iter().all(Option::is_none) {
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
             unless these windows were held out from training, the accuracy is optimistic",
            short_digest(&digest)
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
            for i in 0..n {
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
            start += n;
            done += n;
            progress(done, total);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
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
        warnings,
    };
    if evaluation.windows() == 0 {
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
    pub accuracy_png: PathBuf,
    pub confusion_png: PathBuf,
    pub markdown: PathBuf,
}

/// Writes the report folder `dir` (created if needed): `eval.json`, `accuracy_vs_snr.png`,
/// `confusion.png` and `report.md`, which quotes `command`.
pub fn write_report(
    evaluation: &Evaluation,
    dir: &Path,
    command: &str,
) -> Result<ReportFiles, EvalError> {
    std::fs::create_dir_all(dir).map_err(|source| EvalError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let files = ReportFiles {
        json: dir.join(REPORT_FILES[0]),
        accuracy_png: dir.join(REPORT_FILES[1]),
        confusion_png: dir.join(REPORT_FILES[2]),
        markdown: dir.join(REPORT_FILES[3]),
    };
    let json =
        serde_json::to_string_pretty(&evaluation.to_json()).map_err(|source| EvalError::Json {
            path: files.json.clone(),
            source,
        })?;
    write_file(&files.json, &(json + "\n"))?;
    plot::accuracy_vs_snr(&evaluation.accuracy_chart(), &files.accuracy_png).map_err(|source| {
        EvalError::Plot {
            path: files.accuracy_png.clone(),
            source,
        }
    })?;
    plot::confusion_matrix(&evaluation.confusion_chart(), &files.confusion_png).map_err(
        |source| EvalError::Plot {
            path: files.confusion_png.clone(),
            source,
        },
    )?;
    write_file(&files.markdown, &evaluation.markdown(command))?;
    Ok(files)
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
    fn ordered_map_keeps_its_order_in_json() {
        let m: Ordered<u64> = [("-2".to_string(), 1), ("-10".to_string(), 2)]
            .into_iter()
            .collect();
        assert_eq!(serde_json::to_string(&m).unwrap(), r#"{"-2":1,"-10":2}"#);
    }
}
