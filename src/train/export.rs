//! A run folder → a servable model: `models/<name>.onnx` and its card `models/<name>.json`.
//!
//! ```text
//! RUN_DIR/config.json + best.bpk ──▶ objective's servable model ──▶ Servable::to_onnx ──▶ <name>.onnx
//! its Interface (task, inputs, extra inputs, outputs), dataset manifest, PrepOptions, classes,
//!   training summary ─────────────────────────────────────────────────────────────▶ <name>.json
//! RUN_DIR/split.json test windows ──▶ infer::Model (ONNX Runtime, the daemon's path) ──▶ metrics
//! ```
//!
//! The model is what the run's objective trained ([`super::objective::ObjectiveConfig::servable`])
//! and its [`Interface`](super::interface::Interface) writes the graph's inputs and outputs and the
//! card's: the input exactly as the model was trained — `iq` `[N, 2C, L]`, the normalisation and
//! representation of the run's [`PrepOptions`](super::data::PrepOptions) — and an `snr_db` input
//! when it takes one; its outputs (`logits`, `azimuth`, `elevation`); the classes in output
//! order, the dataset (folder name and manifest SHA-256), how the model was trained
//! (architecture and its options, objective, optimiser, augmentations, sampling, epochs, best
//! epoch, learning rate, batch, seed, training throughput, the equivalent `specwatch-train
//! train` command, its resumes and the run it was warm-started from) and its figures on the
//! run's test split — accuracy overall and per SNR, angle error — measured by running the
//! exported graph through [`crate::infer::Model`] on the raw test windows, as the daemon would
//! (its own SNR estimate for an `snr_db` input): what the card promises is what the daemon gets.
//!
//! Before anything is put in place the export checks that the graph computes what the trained
//! burn model computes — every declared output, max |difference| on the first test batch ≤
//! [`PARITY_TOLERANCE`], both fed the windows' true SNR — and that the card loads with
//! [`crate::infer::Model::load`] (the graph signature check). Files are written under a
//! temporary name beside their destination and renamed into place at the end, so a failed export
//! leaves no half-made model.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use serde_json::{Value, json};

use super::TrainError;
use super::data::Split;
use super::fit::{BEST_FILE, CONFIG_FILE, RunRecord, SPLIT_FILE, TrainConfig, read_metrics};
use super::interface::Servable;
use super::models::{self, Model, ONNX_INPUT, ONNX_OUTPUT};
use super::objective::{BuildContext, OptimizerConfig};
use crate::dsp::repr::ReprWorkspace;
use crate::infer::card::{DatasetRef, ModelCard, OutputKind};
use crate::infer::{Model as Served, RuntimeOptions};
use crate::iq::C32;
use crate::iq::dataset::{Dataset, DatasetSource, Manifest};

/// Largest |burn − ONNX Runtime| logit difference an export accepts on the first test batch.
pub const PARITY_TOLERANCE: f32 = 1e-3;

/// Windows per ONNX Runtime call while measuring the test split.
const EVAL_BATCH: usize = 256;

/// Windows read from the dataset per chunk while collecting the test split.
const READ_CHUNK: usize = 4096;

/// What [`export`] reads and writes.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// The run folder (`config.json`, `split.json`, `best.bpk`).
    pub run_dir: PathBuf,
    /// Destination stem: `models/NAME` writes `models/NAME.onnx` and `models/NAME.json` (a
    /// trailing `.onnx` or `.json` is dropped).
    pub out: PathBuf,
    /// Model name in the card; default: the file name of `out`.
    pub name: Option<String>,
    /// Model version in the card.
    pub version: String,
    /// The dataset folder, when it is no longer where `config.json` says (its manifest must be
    /// the one the run trained on).
    pub data: Option<PathBuf>,
    /// Nominal sample rate for the card when the dataset manifest has none.
    pub sample_rate_hz: Option<f64>,
    /// How ONNX Runtime is found and run for the measurement.
    pub runtime: RuntimeOptions,
    /// The export command line, recorded in the card.
    pub command: Option<String>,
}

impl ExportOptions {
    /// Export `run_dir` to `out`, version `0.1.0`, CPU measurement.
    pub fn new(run_dir: &Path, out: &Path) -> Self {
        Self {
            run_dir: run_dir.to_path_buf(),
            out: out.to_path_buf(),
            name: None,
            version: "0.1.0".into(),
            data: None,
            sample_rate_hz: None,
            runtime: RuntimeOptions {
                execution: crate::infer::ExecutionPreference::Cpu,
                ..RuntimeOptions::default()
            },
            command: None,
        }
    }
}

/// Accuracy on the test split.
#[derive(Debug, Clone, PartialEq)]
pub struct TestMetrics {
    /// Test windows classified.
    pub windows: usize,
    /// Fraction classified correctly.
    pub accuracy: f64,
    /// Per SNR grid point (dB): `(windows, correct)`.
    pub by_snr_db: Vec<(f32, usize, usize)>,
    /// Mean absolute error of azimuth (wrapped) and elevation, degrees, for models with angle
    /// outputs on datasets with angles.
    pub angle_mae_deg: Option<(f64, f64)>,
}

/// The largest |burn − ONNX Runtime| difference of each output, by output name.
pub type Parity = Vec<(&'static str, f32)>;

/// What [`export`] wrote.
#[derive(Debug, Clone)]
pub struct ExportReport {
    pub onnx_path: PathBuf,
    pub card_path: PathBuf,
    pub card: ModelCard,
    pub test: TestMetrics,
    /// Max |burn − ONNX Runtime| difference on the first test batch, per output.
    pub parity_max_abs: Parity,
}

fn run_err(dir: &Path, problem: impl Into<String>) -> TrainError {
    TrainError::Run {
        dir: dir.to_path_buf(),
        problem: problem.into(),
    }
}

/// `out` without a trailing `.onnx` / `.json`, and the paths of the two files.
pub(crate) fn destination(out: &Path) -> Result<(PathBuf, PathBuf, String), TrainError> {
    let stem = match out.extension().and_then(|e| e.to_str()) {
        Some("onnx" | "json") => out.with_extension(""),
        _ => out.to_path_buf(),
    };
    let file_name = stem
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            TrainError::param(
                "out",
                format!(
                    "is '{}'; expected a destination like models/NAME",
                    out.display()
                ),
            )
        })?
        .to_string();
    let with = |ext: &str| {
        let mut s = stem.clone().into_os_string();
        s.push(ext);
        PathBuf::from(s)
    };
    Ok((with(".onnx"), with(".json"), file_name))
}

/// The model's name (`name`, else the destination's file name), refusing an empty name or
/// version.
pub(crate) fn model_name(
    name: Option<&str>,
    file_name: String,
    version: &str,
) -> Result<String, TrainError> {
    let name = name.map_or(file_name, str::to_string);
    if name.trim().is_empty() {
        return Err(TrainError::param("name", "is empty; expected a model name"));
    }
    if version.trim().is_empty() {
        return Err(TrainError::param(
            "version",
            "is empty; expected e.g. 1.0.0",
        ));
    }
    Ok(name)
}

/// The `specwatch-train train` command that reproduces `config` (every setting the command line
/// takes).
pub fn train_command(config: &TrainConfig) -> String {
    let name = |v: Value| v.as_str().map(str::to_string).unwrap_or_default();
    let mut parts = vec![
        "specwatch-train train".to_string(),
        format!("--arch {}", config.arch),
        format!("--data {}", config.data.display()),
        format!("--epochs {}", config.epochs),
        format!("--batch {}", config.batch_size),
        format!("--lr {}", config.lr),
        format!("--weight-decay {}", config.weight_decay),
        format!("--dropout {}", config.dropout),
        format!("--width {}", config.width),
        format!("--patience {}", config.patience),
        format!("--seed {}", config.seed),
    ];
    for (key, value) in &config.arch_options {
        parts.push(format!("--arch-opt {key}={value}"));
    }
    if config.optimizer != Default::default() {
        let json = serde_json::to_string(&config.optimizer).unwrap_or_default();
        parts.push(format!("--optimizer '{json}'"));
    }
    if config.sampling != Default::default() {
        let name = serde_json::to_value(config.sampling).unwrap_or(Value::Null);
        parts.push(format!("--sampling {}", name.as_str().unwrap_or_default()));
    }
    if let Some(n) = config.labelled_per_cell {
        parts.push(format!("--labelled-per-cell {n}"));
    }
    if !config.augment.is_empty() {
        let json = serde_json::to_string(&config.augment).unwrap_or_default();
        parts.push(format!("--augment '{json}'"));
    }
    if config.objective != Default::default() {
        let json = serde_json::to_string(&config.objective).unwrap_or_default();
        parts.push(format!("--objective '{json}'"));
    }
    if let Some(n) = config.prep.max_windows {
        parts.push(format!("--max-windows {n}"));
    }
    parts.push(format!(
        "--normalization {}",
        name(serde_json::to_value(config.prep.normalization).unwrap_or(Value::Null))
    ));
    parts.push(format!(
        "--representation {}",
        name(serde_json::to_value(config.prep.representation).unwrap_or(Value::Null))
    ));
    if let Some(run) = &config.init_from {
        parts.push(format!("--init-from {}", run.display()));
    }
    if let Some(run) = &config.encoder_from {
        parts.push(format!("--encoder-from {}", run.display()));
    }
    parts.join(" ")
}

/// The run's record and the path of its best weights, refusing a folder without either.
fn trained_run(run_dir: &Path) -> Result<(RunRecord, PathBuf), TrainError> {
    let config_path = run_dir.join(CONFIG_FILE);
    if !config_path.is_file() {
        return Err(run_err(
            run_dir,
            format!(
                "has no {CONFIG_FILE}; expected the folder `specwatch-train train --out` wrote"
            ),
        ));
    }
    let weights = run_dir.join(BEST_FILE);
    if !weights.is_file() {
        return Err(run_err(
            run_dir,
            format!(
                "has no {BEST_FILE}; the run has not finished an epoch yet (train at least one)"
            ),
        ));
    }
    Ok((RunRecord::load(run_dir)?, weights))
}

/// Loads the run's trained architecture (`best.bpk` of a `classify` run; other objectives'
/// runs: [`load_servable`]) on the CPU, as a validation copy.
pub fn load_trained(run_dir: &Path) -> Result<(RunRecord, Model), TrainError> {
    let (record, weights) = trained_run(run_dir)?;
    let device = Device::flex();
    let model = models::build(&record.train.arch, &record.model, &device)?
        .try_load_file(&weights)
        .map_err(|e| TrainError::Record {
            path: weights.clone(),
            message: format!(
                "{e} (the weights do not fit a {} built from {CONFIG_FILE})",
                record.train.arch
            ),
        })?;
    Ok((record, model.valid()))
}

/// Loads the run's exported model (`best.bpk`) as its objective trains it, on the CPU, in
/// evaluation mode, with its interface.
pub fn load_servable(run_dir: &Path) -> Result<(RunRecord, Box<dyn Servable>), TrainError> {
    let (record, weights) = trained_run(run_dir)?;
    let device = Device::flex();
    let model = models::build(&record.train.arch, &record.model, &device)?;
    let cx = BuildContext {
        arch: &record.train.arch,
        spec: &record.model,
        prep: record.train.prep,
        device: &device,
    };
    let servable = record
        .train
        .objective
        .servable(model, &weights, &cx)
        .map_err(|e| match e {
            TrainError::Record { path, message } => TrainError::Record {
                path,
                message: format!(
                    "{message} (the weights do not fit the {} {} model {CONFIG_FILE} describes)",
                    record.train.arch,
                    record.train.objective.name()
                ),
            },
            other => other,
        })?;
    Ok((record, servable))
}

/// The test split's raw windows, labels, SNRs and (datasets with angles) angles.
struct TestSet {
    windows: Vec<C32>,
    labels: Vec<i64>,
    snr_db: Vec<f32>,
    angles_deg: Option<Vec<[f32; 2]>>,
}

fn read_test_set(dataset: &mut Dataset, test: &[u32], limit: usize) -> Result<TestSet, TrainError> {
    let labels_all = dataset.labels()?;
    let snr_all = dataset.snr_db()?;
    let angles_all = dataset.angles_deg()?;
    let w = dataset.window_size();
    let mut set = TestSet {
        windows: Vec::with_capacity(test.len() * w),
        labels: Vec::with_capacity(test.len()),
        snr_db: Vec::with_capacity(test.len()),
        angles_deg: angles_all.as_ref().map(|_| Vec::with_capacity(test.len())),
    };
    let mut next = test.iter().peekable();
    let mut start = 0;
    while start < limit && next.peek().is_some() {
        let count = READ_CHUNK.min(limit - start);
        let end = start + count;
        if next.peek().is_some_and(|&&i| (i as usize) < end) {
            let chunk = dataset.read_windows(start, count)?;
            while let Some(&&i) = next.peek() {
                let i = i as usize;
                if i >= end {
                    break;
                }
                set.windows
                    .extend_from_slice(&chunk[(i - start) * w..(i - start + 1) * w]);
                set.labels.push(labels_all[i]);
                set.snr_db.push(snr_all[i]);
                if let (Some(all), Some(kept)) = (&angles_all, &mut set.angles_deg) {
                    kept.push(all[i]);
                }
                next.next();
            }
        }
        start = end;
    }
    Ok(set)
}

/// The grid point nearest `snr` (or `snr` rounded when the grid is empty).
fn snr_point(grid: &[f32], snr: f32) -> f32 {
    grid.iter()
        .copied()
        .min_by(|a, b| (a - snr).abs().total_cmp(&(b - snr).abs()))
        .unwrap_or_else(|| snr.round())
}

/// burn's outputs (in the interface's order, each `[batch × width]` row-major) for raw
/// `windows`, preprocessed as the run trained (the same `dsp` calls the daemon makes), with
/// `snr_db` for a model that takes it.
fn burn_outputs(
    model: &dyn Servable,
    record: &RunRecord,
    windows: &[C32],
    batch: usize,
    snr_db: &[f32],
) -> Result<Vec<Vec<f32>>, TrainError> {
    let channels = record.dataset.channels;
    let len = record.dataset.window_len;
    let prep = record.train.prep;
    let mut ws = ReprWorkspace::new();
    let mut x = Vec::with_capacity(batch * record.model.rows * len);
    let mut scratch = Vec::new();
    for w in windows.chunks_exact(channels * len) {
        scratch.clear();
        scratch.extend_from_slice(w);
        prep.normalization.apply(&mut scratch);
        prep.representation
            .write(&scratch, channels, &mut ws, &mut x)?;
    }
    let device = Device::flex();
    let input =
        Tensor::<3>::from_data(TensorData::new(x, [batch, record.model.rows, len]), &device);
    let snr = model
        .interface()
        .snr_input
        .then(|| Tensor::<1>::from_data(TensorData::new(snr_db.to_vec(), [batch]), &device));
    model
        .outputs(input, snr)
        .into_iter()
        .map(|t| {
            t.into_data()
                .try_into_vec::<f32>()
                .map_err(|e| TrainError::param("model", format!("outputs are not f32: {e:?}")))
        })
        .collect()
}

/// Exports the run (see the module documentation). Errors name the run folder, the file or
/// the option at fault.
pub fn export(options: &ExportOptions) -> Result<ExportReport, TrainError> {
    let run_dir = &options.run_dir;
    let (onnx_path, card_path, file_name) = destination(&options.out)?;
    let name = model_name(options.name.as_deref(), file_name, &options.version)?;
    let (record, model) = load_servable(run_dir)?;
    let interface = model.interface().clone();
    let split_path = run_dir.join(SPLIT_FILE);
    if !split_path.is_file() {
        return Err(run_err(run_dir, format!("has no {SPLIT_FILE}")));
    }
    let split = Split::load(&split_path)?;
    if split.test.is_empty() {
        return Err(run_err(
            run_dir,
            format!(
                "{SPLIT_FILE} holds no test windows, so nothing can measure the model; train with \
                 a test fraction above 0"
            ),
        ));
    }

    // The dataset the run trained on.
    let data_dir = options
        .data
        .clone()
        .unwrap_or_else(|| record.train.data.clone());
    if !data_dir.join("manifest.json").is_file() {
        return Err(run_err(
            run_dir,
            format!(
                "trained on the dataset {}, which has no manifest.json here; pass its folder with \
                 --data",
                data_dir.display()
            ),
        ));
    }
    let digest = Manifest::digest_of_file(&data_dir)?;
    if digest != record.dataset.manifest_digest || split.manifest_digest != digest {
        return Err(run_err(
            run_dir,
            format!(
                "was trained on the dataset with manifest digest {} but {} has {digest}",
                record.dataset.manifest_digest,
                data_dir.display()
            ),
        ));
    }
    let mut dataset = Dataset::open(&data_dir)?;
    let manifest = dataset.manifest.clone();
    if split.windows != record.dataset.windows || split.windows > dataset.len() {
        return Err(run_err(
            run_dir,
            format!(
                "{SPLIT_FILE} covers {} windows but the run used {} of the dataset's {}",
                split.windows,
                record.dataset.windows,
                dataset.len()
            ),
        ));
    }
    if let Some(&bad) = split.test.iter().find(|&&i| i as usize >= split.windows) {
        return Err(run_err(
            run_dir,
            format!(
                "{SPLIT_FILE} holds test index {bad}, outside 0..{}",
                split.windows
            ),
        ));
    }
    let sample_rate_hz = options
        .sample_rate_hz
        .or(manifest.sample_rate_hz)
        .ok_or_else(|| {
            TrainError::param(
                "sample-rate-hz",
                format!(
                    "is needed: the manifest of {} gives no sample rate and the card must state \
                     the rate the model was trained at",
                    data_dir.display()
                ),
            )
        })?;

    // The graph.
    let spec = record.model.clone();
    let mut graph = model.to_onnx(&name)?;
    let outputs: Vec<String> = interface
        .outputs
        .iter()
        .map(|o| format!("'{}' [N, {}]", o.name, o.width))
        .collect();
    graph.doc_string(&format!(
        "{} {} model ({}) trained by specwatch-train; input '{ONNX_INPUT}' [N, {}, {}]{}, \
         outputs {}",
        record.train.arch,
        record.train.objective.name(),
        serde_json::to_value(interface.task())
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        spec.rows,
        spec.window_len,
        if interface.snr_input {
            format!(", '{}' [N, 1]", super::interface::SNR_INPUT)
        } else {
            String::new()
        },
        outputs.join(", ")
    ));
    graph.metadata("specwatch_arch", &record.train.arch)?;
    graph.metadata("specwatch_model_version", &options.version)?;

    // The card, metrics to follow.
    let metrics = read_metrics(run_dir)?;
    let best = metrics.iter().rev().find(|m| m.best);
    let samples_per_s = if metrics.is_empty() {
        0.0
    } else {
        metrics.iter().map(|m| m.train_samples_per_s).sum::<f64>() / metrics.len() as f64
    };
    let dataset_name = data_dir
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .unwrap_or_else(|| match &manifest.source {
            DatasetSource::Synth { recipe, .. } => recipe.clone(),
            DatasetSource::Radioml { variant, .. } => variant.clone(),
            DatasetSource::Recordings { .. } => "recordings".into(),
        });
    let t = &record.train;
    let mut training = json!({
        "arch": t.arch,
        "epochs_run": metrics.last().map(|m| m.epoch).unwrap_or(0),
        "epochs_planned": record.resumes.last().map_or(t.epochs, |r| r.epochs),
        "best_epoch": best.map(|m| m.epoch),
        "best_val_loss": best.map(|m| m.val_loss),
        "best_val_accuracy": best.map(|m| m.val_acc),
        "lr": t.lr,
        "min_lr": t.min_lr,
        "weight_decay": t.weight_decay,
        "optimizer": OptimizerConfig { optimizer: t.optimizer, weight_decay: t.weight_decay }.name(),
        "optimizer_settings": t.optimizer,
        "objective": t.objective,
        "augment": t.augment,
        "sampling": t.sampling,
        "labelled_per_cell": t.labelled_per_cell,
        "batch_size": t.batch_size,
        "dropout": t.dropout,
        "width": t.width,
        "arch_options": spec.options,
        "seed": t.seed,
        "split": { "train": t.split.train, "val": t.split.val, "test": t.split.test },
        "windows": record.dataset.windows,
        "max_windows": t.prep.max_windows,
        "train_samples_per_s": samples_per_s,
        "command": train_command(t),
        "specwatch_version": record.specwatch_version,
    });
    if !record.resumes.is_empty() {
        // The command above started the run; these changed its epoch count or patience.
        training["resumes"] = json!(record.resumes);
    }
    if let Some(init) = &record.init {
        // The weights the command above started from instead of a random initialisation.
        training["init_from"] = json!(init);
    }
    if let Some(cmd) = &options.command {
        training["export_command"] = Value::String(cmd.clone());
    }
    let Value::Object(training) = training else {
        unreachable!("a JSON object literal")
    };
    let mut card = ModelCard {
        name: name.clone(),
        version: options.version.clone(),
        task: interface.task(),
        window_len: manifest.window_len,
        channels: manifest.channels,
        sample_rate_hz,
        inputs: interface.card_inputs(),
        extra_inputs: interface.card_extra_inputs(),
        outputs: interface.card_outputs(),
        classes: manifest.classes.clone(),
        dataset: DatasetRef {
            name: dataset_name,
            manifest_sha256: digest,
        },
        metrics: serde_json::Map::new(),
        training,
    };

    // Stage both files beside their destination, measure, then move them into place.
    let (test, parity) = place_model(
        &onnx_path,
        &card_path,
        "export",
        |staged_onnx, staged_card| {
            graph.save(staged_onnx)?;
            super::write_json(staged_card, &card)?;
            let mut served = Served::load(staged_card, &options.runtime)?;
            let test_set = read_test_set(&mut dataset, &split.test, split.windows)?;
            let (test, parity) =
                measure(&mut served, model.as_ref(), &record, &manifest, &test_set)?;
            if let Some((output, diff)) = parity
                .iter()
                .find(|(_, d)| *d > PARITY_TOLERANCE || d.is_nan())
            {
                return Err(TrainError::param(
                    "model",
                    format!(
                        "the exported graph's '{output}' differs from the trained model's by up \
                         to {diff:e} (tolerance {PARITY_TOLERANCE:e}); the {} export is wrong",
                        record.train.arch
                    ),
                ));
            }
            card.metrics = metrics_json(&test, &parity, served.runtime().version());
            super::write_json(staged_card, &card)?;
            Served::load(staged_card, &options.runtime)?;
            Ok((test, parity))
        },
    )?;
    Ok(ExportReport {
        onnx_path,
        card_path,
        card,
        test,
        parity_max_abs: parity,
    })
}

/// Makes a model pair `onnx_path` + `card_path` without ever leaving half of one there: `make`
/// writes and checks the pair under staging names beside the destination
/// (`models/NAME.TAG-partial.{onnx,json}`, a pair the loader takes, since they share a stem);
/// on success both are renamed into place, on failure both are removed and the error returned.
pub(crate) fn place_model<T>(
    onnx_path: &Path,
    card_path: &Path,
    tag: &str,
    make: impl FnOnce(&Path, &Path) -> Result<T, TrainError>,
) -> Result<T, TrainError> {
    if let Some(dir) = onnx_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(TrainError::io(dir))?;
    }
    let staged = |ext: &str| {
        let mut s = onnx_path.with_extension("").into_os_string();
        s.push(format!(".{tag}-partial{ext}"));
        PathBuf::from(s)
    };
    let (staged_onnx, staged_card) = (staged(".onnx"), staged(".json"));
    match make(&staged_onnx, &staged_card) {
        Ok(value) => {
            std::fs::rename(&staged_onnx, onnx_path).map_err(TrainError::io(onnx_path))?;
            std::fs::rename(&staged_card, card_path).map_err(TrainError::io(card_path))?;
            Ok(value)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&staged_onnx);
            let _ = std::fs::remove_file(&staged_card);
            Err(e)
        }
    }
}

/// Runs the test windows through the served model as the daemon does (its own SNR estimate
/// for an SNR input); returns the metrics and, per output, the largest |burn − ONNX Runtime|
/// difference on the first batch (both fed the windows' true SNR).
fn measure(
    served: &mut Served,
    model: &dyn Servable,
    record: &RunRecord,
    manifest: &Manifest,
    set: &TestSet,
) -> Result<(TestMetrics, Parity), TrainError> {
    let w = manifest.channels * manifest.window_len;
    let interface = model.interface().clone();
    let classifies = interface
        .outputs
        .iter()
        .any(|o| o.kind == OutputKind::Logits);
    let mut per_snr: BTreeMap<i64, (f32, usize, usize)> = BTreeMap::new();
    let mut correct = 0usize;
    let mut parity: Vec<(&'static str, f32)> = Vec::new();
    let (mut az_err, mut el_err, mut angled) = (0.0f64, 0.0f64, 0usize);
    for (b, chunk) in set.windows.chunks(EVAL_BATCH * w).enumerate() {
        let batch = chunk.len() / w;
        let first = b * EVAL_BATCH;
        if b == 0 {
            let snr = &set.snr_db[..batch];
            let reference = burn_outputs(model, record, chunk, batch, snr)?;
            let out = if interface.snr_input {
                served.run_with_snr(chunk, batch, snr)?
            } else {
                served.run(chunk, batch)?
            };
            for (decl, want) in interface.outputs.iter().zip(&reference) {
                let mut worst = 0.0f32;
                for i in 0..batch {
                    let got: Vec<f32> = match decl.kind {
                        OutputKind::Logits => out.scores(i).to_vec(),
                        OutputKind::Azimuth => out.azimuth_deg(i).into_iter().collect(),
                        OutputKind::Elevation => out.elevation_deg(i).into_iter().collect(),
                        _ => Vec::new(),
                    };
                    let row = &want[i * decl.width..(i + 1) * decl.width];
                    if got.len() != row.len() {
                        worst = f32::NAN;
                        continue;
                    }
                    for (g, r) in got.iter().zip(row) {
                        worst = worst.max((g - r).abs());
                    }
                }
                parity.push((decl.name, worst));
            }
        }
        let out = served.run(chunk, batch)?;
        for i in 0..batch {
            let k = first + i;
            let hit = out.best(i).map(|c| c.class as i64) == Some(set.labels[k]);
            correct += usize::from(hit);
            let point = snr_point(&manifest.snr_grid_db, set.snr_db[k]);
            // Keyed by millidecibels so the map sorts numerically.
            let e = per_snr
                .entry((point * 1000.0).round() as i64)
                .or_insert((point, 0, 0));
            e.1 += 1;
            e.2 += usize::from(hit);
            if let (Some(angles), Some(az), Some(el)) =
                (&set.angles_deg, out.azimuth_deg(i), out.elevation_deg(i))
            {
                let [true_az, true_el] = angles[k];
                let d = (az - true_az).rem_euclid(360.0);
                az_err += f64::from(d.min(360.0 - d));
                el_err += f64::from((el - true_el).abs());
                angled += 1;
            }
        }
    }
    let windows = set.labels.len();
    Ok((
        TestMetrics {
            windows,
            accuracy: if classifies {
                correct as f64 / windows.max(1) as f64
            } else {
                f64::NAN
            },
            by_snr_db: per_snr.into_values().collect(),
            angle_mae_deg: (angled > 0).then(|| (az_err / angled as f64, el_err / angled as f64)),
        },
        parity,
    ))
}

fn metrics_json(
    test: &TestMetrics,
    parity: &[(&'static str, f32)],
    runtime_version: Option<&str>,
) -> serde_json::Map<String, Value> {
    let mut by_snr = serde_json::Map::new();
    let mut windows_by_snr = serde_json::Map::new();
    for &(snr, n, hits) in &test.by_snr_db {
        by_snr.insert(format!("{snr}"), json!(hits as f64 / n.max(1) as f64));
        windows_by_snr.insert(format!("{snr}"), json!(n));
    }
    let value = json!({
        "split": "test",
        "windows": test.windows,
        "accuracy": test.accuracy,
        "accuracy_by_snr_db": by_snr,
        "windows_by_snr_db": windows_by_snr,
        "measured_with": format!(
            "ONNX Runtime {} (CPU) through specwatch::infer, on the raw test windows",
            runtime_version.unwrap_or("(version unknown)")
        ),
        "burn_onnx_max_abs_diff": parity
            .iter()
            .map(|(name, d)| (name.to_string(), json!(d)))
            .collect::<serde_json::Map<_, _>>(),
    });
    let Value::Object(mut m) = value else {
        unreachable!("a JSON object literal")
    };
    if let Some((_, d)) = parity.iter().find(|(name, _)| *name == ONNX_OUTPUT) {
        m.insert("burn_onnx_max_abs_logit_diff".into(), json!(d));
    }
    if test.accuracy.is_nan() {
        for key in ["accuracy", "accuracy_by_snr_db"] {
            m.remove(key);
        }
    }
    if let Some((az, el)) = test.angle_mae_deg {
        m.insert("azimuth_mae_deg".into(), json!(az));
        m.insert("elevation_mae_deg".into(), json!(el));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_drops_a_model_extension_and_keeps_dots_in_names() {
        let (onnx, card, name) = destination(Path::new("models/amc-v1.2")).unwrap();
        assert_eq!(onnx, PathBuf::from("models/amc-v1.2.onnx"));
        assert_eq!(card, PathBuf::from("models/amc-v1.2.json"));
        assert_eq!(name, "amc-v1.2");
        let (onnx, _, name) = destination(Path::new("models/cnn.onnx")).unwrap();
        assert_eq!(onnx, PathBuf::from("models/cnn.onnx"));
        assert_eq!(name, "cnn");
        let e = destination(Path::new("/")).unwrap_err().to_string();
        assert!(e.contains("'out'"), "{e}");
    }

    #[test]
    fn snr_points_snap_to_the_nearest_grid_value() {
        let grid = [-10.0, 0.0, 10.0];
        assert_eq!(snr_point(&grid, 3.9), 0.0);
        assert_eq!(snr_point(&grid, 6.1), 10.0);
        assert_eq!(snr_point(&[], 6.4), 6.0);
    }

    #[test]
    fn train_command_names_every_setting() {
        let mut c = TrainConfig::new("cldnn", Path::new("data/rml"));
        c.prep.max_windows = Some(1000);
        let cmd = train_command(&c);
        for part in [
            "specwatch-train train",
            "--arch cldnn",
            "--data data/rml",
            "--batch 256",
            "--max-windows 1000",
            "--normalization unit_rms",
            "--representation iq",
        ] {
            assert!(cmd.contains(part), "{cmd} lacks {part}");
        }
    }
}
