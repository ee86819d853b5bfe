//! The run shell: the training loop and the run folder it writes, the same for every
//! objective ([`super::objective`]: what is optimised and how is the objective's, everything
//! else is here, with no branch on the architecture or the objective).
//!
//! ```text
//! RUN_DIR/config.json          every hyper-parameter, the model spec and the dataset (manifest digest)
//! RUN_DIR/split.json           the stratified train/val/test indices (see data::Split)
//! RUN_DIR/metrics.jsonl        one EpochMetrics line per finished epoch
//! RUN_DIR/best.bpk             weights of the epoch with the lowest validation loss (burnpack)
//! RUN_DIR/checkpoint/…         the objective's models and optimiser states after the last
//!                              finished epoch (classify: model.bpk, optim.bpk)
//! RUN_DIR/checkpoint/state.json epoch, step, best metric, patience counter (written last)
//! ```
//!
//! Optimiser: Adam (`weight_decay` 0) or AdamW, with a cosine learning rate per step,
//! `lr(t) = min_lr + ½(lr − min_lr)(1 + cos(π t / T))` over all `T` steps of `epochs`
//! (burn's `CosineAnnealingLrScheduler` formula, computed from the step so a resumed run
//! continues on the same curve). The loss is the objective's (classification: cross-entropy by
//! default). Early stopping: training ends after `patience` epochs without a lower validation
//! loss.
//!
//! Determinism: the weights are initialised from `seed`; each epoch's shuffle
//! ([`super::sampler::shuffled`]) and dropout masks are drawn from `seed` and the epoch number, so a resumed run draws what an uninterrupted one
//! would have.
//!
//! Warm start (`init_from`): a fresh run may start from the best weights of an earlier run
//! instead of a random initialisation — to go on training a model on freshly generated windows
//! of the same recipe, for instance. The earlier run must have the same architecture, width,
//! input (window length, channels, normalisation, representation) and classes in the same order;
//! `config.json` records which run and which weights (SHA-256 of its `best.bpk`), and the model
//! card repeats it. The optimiser and the learning-rate schedule start afresh. On the dataset an
//! earlier run of the chain trained on, the split must be that run's (same seed, fractions and
//! window prefix): otherwise windows the weights were fitted to would be validated and tested on.
//! The source may also be an exported model (`models/NAME.json`): its weights are read back
//! from its ONNX graph ([`models::onnx_weights`]), and its card supplies what a run folder's
//! `config.json` would (architecture, width, input, classes, dataset, split, earlier warm starts);
//! the record then names the model and the SHA-256 of its `.onnx` file. The source's
//! architecture options may differ from the run's where the architecture can carry a trained
//! model into the run's layout ([`models::Architecture::grow`]; e.g. a resnet1d made deeper or
//! given amplitude rows), so training starts from what the source computed.

use std::f64::consts::PI;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use super::augment::Pipeline;
use super::data::{Batcher, PrepOptions, Split, SplitFractions};
use super::models::{self, ArchOptions, Model, ModelSpec};
use super::objective::{
    BuildContext, Figures, Objective, ObjectiveConfig, Optimizer, OptimizerConfig, StepAt,
};
use super::sampler;
use super::{TrainError, read_json, write_json};

/// Every hyper-parameter of a run; written to `RUN_DIR/config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Architecture name (see [`models::ARCHITECTURES`]).
    pub arch: String,
    /// The dataset folder.
    pub data: PathBuf,
    pub prep: PrepOptions,
    pub split: SplitFractions,
    /// Total epochs (a resumed run continues up to this count).
    pub epochs: usize,
    pub batch_size: usize,
    /// Peak learning rate (start of the cosine).
    pub lr: f64,
    /// Learning rate at the end of the cosine.
    pub min_lr: f64,
    /// Weight decay: with Adam, 0 trains with Adam and above 0 with AdamW (decoupled); an L2
    /// penalty with SGD; decoupled with LAMB.
    pub weight_decay: f64,
    /// The optimiser ([`Optimizer`]); configs written before this field existed: Adam.
    #[serde(default)]
    pub optimizer: Optimizer,
    /// Which training windows each epoch visits, in what order; configs written before this
    /// field existed: every window once, shuffled.
    #[serde(default)]
    pub sampling: Sampling,
    /// Train on only this many labelled windows of each (class, SNR) cell of the training split,
    /// drawn with `seed` ([`sampler::labelled_subset`]; a smaller count's windows are among a
    /// larger one's): label-budget and few-shot runs. Validation and test are unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labelled_per_cell: Option<usize>,
    /// Augmentations of the raw training windows, before preprocessing (validation and test
    /// windows are never augmented); none by default.
    #[serde(default, skip_serializing_if = "Pipeline::is_empty")]
    pub augment: Pipeline,
    pub dropout: f64,
    /// Multiplier of every layer's width (1 = as published).
    pub width: f64,
    /// The architecture's own options as given (`--arch-opt key=value`; see
    /// [`models::Architecture::Options`]); the model spec in `config.json` records them in
    /// full. Configs written before options existed kept resnet1d's `depth` and
    /// `amplitude_rows` here as fields of their own; [`RunRecord::load`] moves them in.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub arch_options: ArchOptions,
    /// What the run optimises ([`ObjectiveConfig`]); configs written before objectives existed
    /// trained a classifier with cross-entropy.
    #[serde(default)]
    pub objective: ObjectiveConfig,
    /// Epochs without a lower validation loss before training stops.
    pub patience: usize,
    pub seed: u64,
    /// Start from the best weights of this earlier run folder, or from this exported model (its
    /// card `NAME.json`), instead of a random initialisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_from: Option<PathBuf>,
    /// Start the embedding layers from this earlier run or exported model (its classes may
    /// differ) and the classifier head afresh: a pretrained encoder under a new head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder_from: Option<PathBuf>,
}

impl TrainConfig {
    /// The defaults for `arch` on the dataset `data`: 30 epochs, batch 256, lr 1e-3 cosine to 0,
    /// Adam, dropout 0.5, patience 5, seed 1, unit-RMS I/Q input, split 0.7/0.15/0.15.
    pub fn new(arch: &str, data: &Path) -> Self {
        Self {
            arch: arch.to_string(),
            data: data.to_path_buf(),
            prep: PrepOptions::default(),
            split: SplitFractions::default(),
            epochs: 30,
            batch_size: 256,
            lr: 1e-3,
            min_lr: 0.0,
            weight_decay: 0.0,
            optimizer: Optimizer::Adam,
            augment: Pipeline::default(),
            sampling: Sampling::Shuffle,
            labelled_per_cell: None,
            dropout: 0.5,
            width: 1.0,
            arch_options: ArchOptions::new(),
            objective: ObjectiveConfig::default(),
            patience: 5,
            seed: 1,
            init_from: None,
            encoder_from: None,
        }
    }

    /// Loads the config of an existing run.
    pub fn load(run_dir: &Path) -> Result<Self, TrainError> {
        Ok(RunRecord::load(run_dir)?.train)
    }

    fn check(&self) -> Result<(), TrainError> {
        if !models::ARCHITECTURES.contains(&self.arch.as_str()) {
            return Err(TrainError::UnknownArch {
                name: self.arch.clone(),
                known: models::ARCHITECTURES.join(", "),
            });
        }
        if self.epochs == 0 {
            return Err(TrainError::param("epochs", "is 0; expected at least 1"));
        }
        if self.batch_size == 0 {
            return Err(TrainError::param("batch", "is 0; expected at least 1"));
        }
        if !(self.lr.is_finite() && self.lr > 0.0 && self.lr <= 1.0) {
            return Err(TrainError::param(
                "lr",
                format!("is {}; expected a learning rate in (0, 1]", self.lr),
            ));
        }
        if !(self.min_lr.is_finite() && (0.0..=self.lr).contains(&self.min_lr)) {
            return Err(TrainError::param(
                "min-lr",
                format!(
                    "is {}; expected a value in [0, lr = {}]",
                    self.min_lr, self.lr
                ),
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(TrainError::param(
                "weight-decay",
                format!(
                    "is {}; expected 0 (Adam) or above (AdamW)",
                    self.weight_decay
                ),
            ));
        }
        if self.patience == 0 {
            return Err(TrainError::param("patience", "is 0; expected at least 1"));
        }
        models::normalize_options(&self.arch, &self.arch_options)?;
        self.optimizer.check()?;
        self.objective.check()
    }

    /// The same run apart from what may change on `--resume`: the epoch count, the patience,
    /// and where the windows are held (memory or streamed; either trains the same).
    fn resumable_part(&self) -> Self {
        Self {
            epochs: 0,
            patience: 0,
            prep: PrepOptions {
                residency: Default::default(),
                ..self.prep
            },
            ..self.clone()
        }
    }

    /// Learning rate at step `step` of `total`.
    pub fn lr_at(&self, step: u64, total: u64) -> f64 {
        let t = (step as f64 / total.max(1) as f64).min(1.0);
        self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + (PI * t).cos())
    }
}

/// Which training windows an epoch visits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampling {
    /// Every training window once, in an order shuffled per epoch ([`sampler::shuffled`]).
    #[default]
    Shuffle,
    /// As many windows as the training split holds, every (class, SNR) cell equally often
    /// ([`sampler::balanced`]): a cell with fewer windows repeats them.
    Balanced,
}

/// What `config.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub specwatch_version: String,
    /// The settings of the command that started the run.
    pub train: TrainConfig,
    pub model: ModelSpec,
    pub dataset: DatasetRecord,
    /// Every `--resume` that changed the epoch count or the patience, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resumes: Vec<ResumeRecord>,
    /// The earlier run whose weights this one started from (`train.init_from`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<InitRecord>,
}

/// The weights a warm-started run began with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitRecord {
    /// The earlier run folder, or the exported model's card, as given.
    pub run: PathBuf,
    /// Name and version of the exported model, when the weights came from one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The epoch whose weights its `best.bpk` (or the exported model) holds.
    pub best_epoch: usize,
    /// SHA-256 (hex) of that `best.bpk`, or of the exported model's `.onnx` file.
    pub weights_sha256: String,
    /// The dataset the earlier run trained on (manifest digest).
    pub dataset_manifest_digest: String,
    /// How the earlier run split that dataset (seed, fractions, window prefix): together with
    /// the digest they say which windows it trained on.
    pub split_seed: u64,
    pub split: SplitFractions,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_windows: Option<usize>,
    /// The earlier run's own warm start, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<Box<InitRecord>>,
    /// Only the embedding layers were taken (`--encoder-from`); the classifier head started
    /// fresh for this run's classes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub encoder_only: bool,
}

impl InitRecord {
    /// This record and the warm starts behind it, nearest first.
    fn chain(&self) -> impl Iterator<Item = &InitRecord> {
        std::iter::successors(Some(self), |r| r.init.as_deref())
    }
}

/// A `--resume` that changed what the run was told: the cosine schedule follows the new epoch
/// count from the resumed step on, so the card must say so.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResumeRecord {
    /// Epochs finished before the resume.
    pub after_epoch: usize,
    /// The total epoch count from then on.
    pub epochs: usize,
    /// The patience from then on.
    pub patience: usize,
}

impl RunRecord {
    /// Reads `RUN_DIR/config.json`, as written by this or an earlier version (resnet1d's
    /// `depth` and `amplitude_rows`, once fields of the settings and of the model spec, are read
    /// as its options).
    pub fn load(run_dir: &Path) -> Result<Self, TrainError> {
        let path = run_dir.join(CONFIG_FILE);
        let mut value: serde_json::Value = read_json(&path)?;
        for (part, key) in [("train", "arch_options"), ("model", "options")] {
            if let Some(record) = value.get_mut(part).and_then(|t| t.as_object_mut()) {
                models::migrate_legacy_options(record, key);
            }
        }
        serde_json::from_value(value).map_err(|source| TrainError::Json { path, source })
    }
}

/// The dataset a run trained on, as `config.json` records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatasetRecord {
    pub dir: PathBuf,
    pub manifest_digest: String,
    pub classes: Vec<String>,
    pub channels: usize,
    pub window_len: usize,
    /// Windows used (the dataset, or its `max_windows` prefix).
    pub windows: usize,
}

/// `checkpoint/state.json`: where the run stands after its last finished epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointState {
    epoch: usize,
    step: u64,
    best_val_loss: f64,
    best_epoch: usize,
    epochs_since_best: usize,
    stopped_early: bool,
}

/// One epoch's figures; one line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based epoch number.
    pub epoch: usize,
    pub train_loss: f64,
    pub train_acc: f64,
    pub val_loss: f64,
    pub val_acc: f64,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
    /// Training throughput (forward + backward + update), windows per second.
    pub train_samples_per_s: f64,
    /// Wall time of the epoch including validation and checkpointing.
    pub seconds: f64,
    /// Whether this epoch set a new best validation loss.
    pub best: bool,
}

/// What a call to [`fit`] did.
#[derive(Debug, Clone)]
pub struct FitReport {
    /// The epochs this call ran.
    pub history: Vec<EpochMetrics>,
    /// Last finished epoch of the run (including epochs of earlier calls).
    pub last_epoch: usize,
    pub best_epoch: usize,
    pub best_val_loss: f64,
    pub stopped_early: bool,
}

/// How [`fit`] runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct FitOptions {
    /// Continue the run in `run_dir` from its last checkpoint.
    pub resume: bool,
    /// Show a progress bar.
    pub progress: bool,
}

/// The run's settings inside a run folder.
pub const CONFIG_FILE: &str = "config.json";
/// The run's train/val/test split inside a run folder.
pub const SPLIT_FILE: &str = "split.json";
const METRICS_FILE: &str = "metrics.jsonl";
/// The best epoch's weights inside a run folder.
pub const BEST_FILE: &str = "best.bpk";
const CHECKPOINT_DIR: &str = "checkpoint";

/// Trains `config` into `run_dir` (see the module documentation for what it writes), calling
/// `on_epoch` after each finished epoch.
///
/// A fresh run refuses a folder that already holds one; with `options.resume` the run continues
/// from its last checkpoint up to `config.epochs`, and every other hyper-parameter must equal
/// the run's `config.json`.
pub fn fit(
    config: &TrainConfig,
    run_dir: &Path,
    options: FitOptions,
    on_epoch: &mut dyn FnMut(&EpochMetrics),
) -> Result<FitReport, TrainError> {
    config.check()?;
    let ckpt_dir = run_dir.join(CHECKPOINT_DIR);
    let state_path = ckpt_dir.join("state.json");
    let run_err = |problem: String| TrainError::Run {
        dir: run_dir.to_path_buf(),
        problem,
    };

    let saved = if options.resume {
        if !state_path.exists() {
            return Err(run_err(
                "has no checkpoint/state.json to resume from; start a fresh run without --resume"
                    .into(),
            ));
        }
        let record = RunRecord::load(run_dir)?;
        if record.train.resumable_part() != config.resumable_part() {
            return Err(run_err(format!(
                "config.json differs from the resumed run's settings beyond epochs and \
                 patience (saved: {:?})",
                record.train
            )));
        }
        let state: CheckpointState = read_json(&state_path)?;
        Some((record, state))
    } else {
        if state_path.exists() {
            return Err(run_err(
                "already holds a run (checkpoint/state.json); pass --resume to continue it or \
                 choose another output folder"
                    .into(),
            ));
        }
        None
    };
    std::fs::create_dir_all(&ckpt_dir).map_err(TrainError::io(&ckpt_dir))?;

    let mut data = Batcher::open(&config.data, config.prep)?;
    config.objective.check_dataset(data.manifest())?;
    let split_path = run_dir.join(SPLIT_FILE);
    let split = match &saved {
        Some((record, _)) => {
            if record.dataset.manifest_digest != data.manifest_digest() {
                return Err(run_err(format!(
                    "was trained on the dataset with manifest digest {} but {} now has {}",
                    record.dataset.manifest_digest,
                    config.data.display(),
                    data.manifest_digest()
                )));
            }
            let split = Split::load(&split_path)?;
            split.check_fits(data.source(), run_dir)?;
            split
        }
        None => {
            let split = Split::stratified(data.source(), config.split, config.seed)?;
            split.save(&split_path)?;
            split
        }
    };

    let spec = ModelSpec {
        num_classes: data.num_classes(),
        rows: data.rows,
        window_len: data.window_len,
        dropout: config.dropout,
        width: config.width,
        representation: config.prep.representation,
        options: models::normalize_options(&config.arch, &config.arch_options)?,
    };
    let device = Device::flex().autodiff();
    device.seed(config.seed);
    let mut model = models::build(&config.arch, &spec, &device)?;
    let optimizer = OptimizerConfig {
        optimizer: config.optimizer,
        weight_decay: config.weight_decay,
    };
    data.set_snr_estimates(config.objective.needs_snr_estimate());
    data.set_domains(&config.objective.domains())?;
    let cx = BuildContext {
        arch: &config.arch,
        spec: &spec,
        prep: config.prep,
        device: &device,
    };
    let metrics_path = run_dir.join(METRICS_FILE);
    let (mut objective, mut state) = match saved {
        Some((mut record, state)) => {
            let mut objective = config.objective.build(model, optimizer, &cx)?;
            objective.load(&ckpt_dir)?;
            keep_metrics_up_to(&metrics_path, state.epoch)?;
            // Recorded only once the resume is sure to run (dataset and checkpoint checked).
            let (epochs, patience) = record
                .resumes
                .last()
                .map_or((record.train.epochs, record.train.patience), |r| {
                    (r.epochs, r.patience)
                });
            if (epochs, patience) != (config.epochs, config.patience) {
                record.resumes.push(ResumeRecord {
                    after_epoch: state.epoch,
                    epochs: config.epochs,
                    patience: config.patience,
                });
                write_json(&run_dir.join(CONFIG_FILE), &record)?;
            }
            (objective, state)
        }
        None => {
            let init = match (&config.init_from, &config.encoder_from) {
                (Some(source), None) | (None, Some(source)) => {
                    let encoder_only = config.encoder_from.is_some();
                    let (weights, init) =
                        warm_start(source, config, &spec, &data, model, encoder_only)?;
                    model = weights;
                    Some(init)
                }
                (None, None) => None,
                (Some(_), Some(_)) => {
                    return Err(TrainError::param(
                        "encoder-from",
                        "is given with --init-from; a run starts from one or the other",
                    ));
                }
            };
            write_json(
                &run_dir.join(CONFIG_FILE),
                &RunRecord {
                    specwatch_version: env!("CARGO_PKG_VERSION").to_string(),
                    train: config.clone(),
                    model: spec.clone(),
                    dataset: DatasetRecord {
                        dir: config.data.clone(),
                        manifest_digest: data.manifest_digest().to_string(),
                        classes: data.manifest().classes.clone(),
                        channels: data.manifest().channels,
                        window_len: data.manifest().window_len,
                        windows: data.len(),
                    },
                    resumes: Vec::new(),
                    init,
                },
            )?;
            std::fs::write(&metrics_path, "").map_err(TrainError::io(&metrics_path))?;
            let state = CheckpointState {
                epoch: 0,
                step: 0,
                best_val_loss: f64::INFINITY,
                best_epoch: 0,
                epochs_since_best: 0,
                stopped_early: false,
            };
            (config.objective.build(model, optimizer, &cx)?, state)
        }
    };

    let grid = data.manifest().snr_grid_db.clone();
    let pool = match config.labelled_per_cell {
        Some(n) => sampler::labelled_subset(
            &split.train,
            data.source().labels(),
            data.source().snr_db(),
            &grid,
            n,
            config.seed,
        )?,
        None => split.train.clone(),
    };
    let steps_per_epoch = pool.len().div_ceil(config.batch_size) as u64;
    let total_steps = steps_per_epoch * config.epochs as u64;
    let mut history = Vec::new();

    while !state.stopped_early && state.epoch < config.epochs {
        let epoch = state.epoch + 1;
        let started = Instant::now();
        let bar = progress_bar(options.progress, steps_per_epoch, epoch, config.epochs);

        let order = match config.sampling {
            Sampling::Shuffle => sampler::shuffled(&pool, config.seed, epoch),
            Sampling::Balanced => sampler::balanced(
                &pool,
                data.source().labels(),
                data.source().snr_db(),
                &grid,
                pool.len(),
                config.seed,
                epoch,
            )?,
        };
        device.seed(
            config
                .seed
                .wrapping_add(epoch as u64)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );

        let mut train = Figures::default();
        let mut lr = config.lr;
        for indices in order.chunks(config.batch_size) {
            let batch = data.augmented_batch(
                indices,
                &config.augment,
                config.objective.views(),
                config.seed,
                epoch,
                &device,
            )?;
            lr = config.lr_at(state.step, total_steps);
            train.add(objective.step(
                batch,
                StepAt {
                    lr,
                    step: state.step,
                    total_steps,
                },
            )?);
            state.step += 1;
            bar.inc(1);
            bar.set_message(format!(
                "loss {:.4} acc {:.1}%",
                train.loss(),
                100.0 * train.accuracy()
            ));
        }
        let train_secs = started.elapsed().as_secs_f64();
        bar.finish_and_clear();

        let val = validate(objective.as_ref(), &mut data, &split.val, config)?;
        let val_loss = val.loss();
        let best = val_loss < state.best_val_loss;
        if best {
            state.best_val_loss = val_loss;
            state.best_epoch = epoch;
            state.epochs_since_best = 0;
            objective.save_best(&run_dir.join(BEST_FILE))?;
        } else {
            state.epochs_since_best += 1;
            state.stopped_early = state.epochs_since_best >= config.patience;
        }
        state.epoch = epoch;

        let metrics = EpochMetrics {
            epoch,
            train_loss: train.loss(),
            train_acc: train.accuracy(),
            val_loss,
            val_acc: val.accuracy(),
            lr,
            train_samples_per_s: train.windows as f64 / train_secs,
            seconds: started.elapsed().as_secs_f64(),
            best,
        };
        append_metrics(&metrics_path, &metrics)?;
        objective.save(&ckpt_dir)?;
        write_json(&state_path, &state)?;
        on_epoch(&metrics);
        history.push(metrics);
    }

    Ok(FitReport {
        history,
        last_epoch: state.epoch,
        best_epoch: state.best_epoch,
        best_val_loss: state.best_val_loss,
        stopped_early: state.stopped_early,
    })
}

/// Fills `model` (built for `spec`) from a source whose architecture options were
/// `source_options`: `load` fills a model built for the source's own options, which the
/// architecture then carries into the run's ([`models::grow`]: e.g. a resnet1d made deeper, or
/// given amplitude rows, computing what the source computed).
fn load_growing(
    model: Model,
    arch: &str,
    spec: &ModelSpec,
    source_options: &ArchOptions,
    refuse: impl Fn(String) -> TrainError,
    load: impl FnOnce(Model, &ModelSpec) -> Result<Model, TrainError>,
) -> Result<Model, TrainError> {
    let source_spec = spec.with_options(models::normalize_options(arch, source_options)?);
    if source_spec.options == models::normalize_options(arch, &spec.options)? {
        return load(model, spec);
    }
    let device = model
        .devices()
        .into_iter()
        .next()
        .unwrap_or_else(Device::flex);
    let trained = load(models::build(arch, &source_spec, &device)?, &source_spec)?;
    models::grow(trained, &source_spec, model, spec).map_err(refuse)
}

/// Loads the weights `source` names into `model` after checking that they fit the run `config`
/// describes — the best weights of an earlier run folder, or an exported model (its card
/// `NAME.json`, or `NAME.onnx` beside it) — and returns them with what `config.json` records of
/// them.
fn warm_start(
    source: &Path,
    config: &TrainConfig,
    spec: &ModelSpec,
    data: &Batcher,
    model: Model,
    encoder_only: bool,
) -> Result<(Model, InitRecord), TrainError> {
    let is_model = matches!(
        source.extension().and_then(|e| e.to_str()),
        Some("json" | "onnx")
    ) && !source.is_dir();
    let (model, init) = if encoder_only {
        // The source's own class count: its head is dropped for this run's fresh one.
        let classes = if is_model {
            let card_path = crate::infer::card::ModelCard::card_path(source);
            crate::infer::card::ModelCard::load(&card_path)
                .map_err(|e| TrainError::param("encoder-from", e.to_string()))?
                .classes
                .len()
        } else {
            RunRecord::load(source)?.model.num_classes
        };
        let source_spec = ModelSpec {
            num_classes: classes.max(1),
            ..spec.clone()
        };
        let device = model
            .devices()
            .into_iter()
            .next()
            .unwrap_or_else(Device::flex);
        let fresh = models::build(&config.arch, &source_spec, &device)?;
        let (loaded, mut init) = if is_model {
            warm_start_from_model(source, config, &source_spec, data, fresh, false)?
        } else {
            warm_start_from_run(source, config, &source_spec, data, fresh, false)?
        };
        init.encoder_only = true;
        let model = models::with_head_of(loaded, model).ok_or_else(|| {
            TrainError::param("encoder-from", "the encoder is of another architecture")
        })?;
        (model, init)
    } else if is_model {
        warm_start_from_model(source, config, spec, data, model, true)?
    } else {
        warm_start_from_run(source, config, spec, data, model, true)?
    };
    // Windows an earlier model trained on must not sit in this run's validation or test split:
    // on the same dataset that holds only for the same split.
    for earlier in init.chain() {
        let same_split = earlier.split_seed == config.seed
            && earlier.split == config.split
            && earlier.max_windows == config.prep.max_windows;
        if earlier.dataset_manifest_digest == data.manifest_digest() && !same_split {
            return Err(TrainError::param(
                "init-from",
                format!(
                    "{}: {} trained on this dataset split with seed {} (fractions {:?}, max \
                     windows {:?}) and this run splits it with seed {} ({:?}, {:?}); its \
                     training windows would be in this run's validation and test splits. Use \
                     the same --seed and --max-windows, or a freshly generated dataset",
                    source.display(),
                    earlier.run.display(),
                    earlier.split_seed,
                    earlier.split,
                    earlier.max_windows,
                    config.seed,
                    config.split,
                    config.prep.max_windows
                ),
            ));
        }
    }
    Ok((model, init))
}

/// The best weights of the run folder `source`.
fn warm_start_from_run(
    source: &Path,
    config: &TrainConfig,
    spec: &ModelSpec,
    data: &Batcher,
    model: Model,
    same_classes: bool,
) -> Result<(Model, InitRecord), TrainError> {
    let refuse = |problem: String| TrainError::Run {
        dir: source.to_path_buf(),
        problem: format!("cannot start this run (--init-from): {problem}"),
    };
    let config_path = source.join(CONFIG_FILE);
    if !config_path.is_file() {
        return Err(refuse(format!(
            "has no {CONFIG_FILE}; expected a folder `specwatch-train train --out` wrote, or a \
             model card (models/NAME.json) `specwatch-train export` wrote"
        )));
    }
    let record = RunRecord::load(source)?;
    let theirs = &record.train;
    if theirs.arch != config.arch {
        return Err(refuse(format!(
            "it trained '{}', this run trains '{}'",
            theirs.arch, config.arch
        )));
    }
    let shape = |s: &ModelSpec| (s.num_classes, s.rows, s.window_len);
    if shape(&record.model) != shape(spec) || record.model.width != spec.width {
        return Err(refuse(format!(
            "its model has {} classes, {} input rows, {}-sample windows and width {}; this run's \
             has {}, {}, {} and {}",
            record.model.num_classes,
            record.model.rows,
            record.model.window_len,
            record.model.width,
            spec.num_classes,
            spec.rows,
            spec.window_len,
            spec.width
        )));
    }
    if same_classes && record.dataset.classes != data.manifest().classes {
        return Err(refuse(format!(
            "its classes are [{}], this dataset's are [{}]; the output rows would mean other \
             classes",
            record.dataset.classes.join(", "),
            data.manifest().classes.join(", ")
        )));
    }
    let input = |p: &PrepOptions| (p.normalization, p.representation);
    if input(&theirs.prep) != input(&config.prep) {
        return Err(refuse(format!(
            "it was trained on {:?} {:?} input, this run prepares {:?} {:?}",
            theirs.prep.normalization,
            theirs.prep.representation,
            config.prep.normalization,
            config.prep.representation
        )));
    }
    let state_path = source.join(CHECKPOINT_DIR).join("state.json");
    let state: CheckpointState = read_json(&state_path)?;
    let weights_path = source.join(BEST_FILE);
    let bytes = std::fs::read(&weights_path).map_err(TrainError::io(&weights_path))?;
    let model = load_growing(
        model,
        &config.arch,
        spec,
        &record.model.options,
        refuse,
        |model, _| {
            model
                .try_load_file(&weights_path)
                .map_err(|e| TrainError::Record {
                    path: weights_path.clone(),
                    message: e.to_string(),
                })
        },
    )?;
    let init = InitRecord {
        run: source.to_path_buf(),
        model: None,
        best_epoch: state.best_epoch,
        weights_sha256: sha256_hex(&bytes),
        dataset_manifest_digest: record.dataset.manifest_digest,
        split_seed: theirs.seed,
        split: theirs.split,
        max_windows: theirs.prep.max_windows,
        init: record.init.map(Box::new),
        encoder_only: false,
    };
    Ok((model, init))
}

/// The weights of an exported model: its card (`NAME.json`, or the `NAME.onnx` beside it) says
/// how it was trained, and its ONNX graph holds the weights ([`models::onnx_weights`]).
fn warm_start_from_model(
    source: &Path,
    config: &TrainConfig,
    spec: &ModelSpec,
    data: &Batcher,
    model: Model,
    same_classes: bool,
) -> Result<(Model, InitRecord), TrainError> {
    use crate::infer::card::{Dim, ModelCard};
    use serde_json::Value;

    let card_path = ModelCard::card_path(source);
    let refuse = |problem: String| {
        TrainError::param("init-from", format!("{}: {problem}", card_path.display()))
    };
    if !card_path.is_file() {
        return Err(refuse(
            "no such model card; expected the NAME.json `specwatch-train export` wrote beside \
             NAME.onnx"
                .into(),
        ));
    }
    let card = ModelCard::load(&card_path)?;
    let training = &card.training;
    if training.contains_key("composition") {
        return Err(refuse(
            "it is a composed model (a base and a specialist in one graph, made by \
             `specwatch-train compose`); train one of its components further instead, \
             --init-from its own card (named in the card's training.base and training.specialist)"
                .into(),
        ));
    }
    let text = |key: &str| training.get(key).and_then(Value::as_str);
    let number = |key: &str| training.get(key).and_then(Value::as_f64);
    let arch = text("arch").ok_or_else(|| {
        refuse(
            "its training record names no 'arch'; only models specwatch-train exported can be \
             trained further"
                .into(),
        )
    })?;
    if arch != config.arch {
        return Err(refuse(format!(
            "it is a '{arch}' model, this run trains '{}' (pass --arch {arch})",
            config.arch
        )));
    }
    let width = number("width").unwrap_or(1.0);
    if width != spec.width {
        return Err(refuse(format!(
            "it has width {width}, this run's model {} (pass --width {width})",
            spec.width
        )));
    }
    let [input] = card.inputs.as_slice() else {
        return Err(refuse(format!(
            "it has {} window inputs; a model specwatch-train trains has one",
            card.inputs.len()
        )));
    };
    let layout = [
        Dim::Batch,
        Dim::Fixed(spec.rows),
        Dim::Fixed(spec.window_len),
    ];
    if input.layout != layout || !card.extra_inputs.is_empty() {
        return Err(refuse(format!(
            "its input '{}' is {:?}{}; this run's windows are [N, {}, {}]",
            input.name,
            input.layout,
            if card.extra_inputs.is_empty() {
                ""
            } else {
                " with extra inputs"
            },
            spec.rows,
            spec.window_len
        )));
    }
    if (input.normalization, input.representation)
        != (config.prep.normalization, config.prep.representation)
    {
        return Err(refuse(format!(
            "it takes {:?} {:?} input, this run prepares {:?} {:?}",
            input.normalization,
            input.representation,
            config.prep.normalization,
            config.prep.representation
        )));
    }
    if same_classes && card.classes != data.manifest().classes {
        return Err(refuse(format!(
            "its classes are [{}], this dataset's are [{}]; the output rows would mean other \
             classes",
            card.classes.join(", "),
            data.manifest().classes.join(", ")
        )));
    }
    let missing = |key: &str| refuse(format!("its training record has no '{key}'"));
    let best_epoch = number("best_epoch").ok_or_else(|| missing("best_epoch"))? as usize;
    let split_seed = training
        .get("seed")
        .and_then(Value::as_u64)
        .ok_or_else(|| missing("seed"))?;
    let split: SplitFractions = training
        .get("split")
        .cloned()
        .and_then(|v| serde_json::from_value(v).ok())
        .ok_or_else(|| missing("split"))?;
    // Cards record `max_windows`; older ones only in the training command.
    let max_windows = match training.get("max_windows") {
        Some(v) => v.as_u64().map(|n| n as usize),
        None => text("command").and_then(max_windows_of_command),
    };
    let earlier_init: Option<InitRecord> = match training.get("init_from") {
        Some(v) => Some(
            serde_json::from_value(v.clone())
                .map_err(|e| refuse(format!("its 'init_from' record is malformed: {e}")))?,
        ),
        None => None,
    };

    // Cards record the architecture's options; older ones resnet1d's `depth` and
    // `amplitude_rows` as keys of their own.
    let mut source_options = match training.get("arch_options") {
        None => ArchOptions::new(),
        Some(serde_json::Value::Object(map)) => map.clone(),
        Some(v) => {
            return Err(refuse(format!(
                "its training 'arch_options' is {v}; expected an object"
            )));
        }
    };
    let depth = match training.get("depth") {
        None => None,
        Some(v) => Some(v.as_u64().filter(|&d| d >= 1).ok_or_else(|| {
            refuse(format!(
                "its training 'depth' is {v}; expected a count from 1"
            ))
        })? as usize),
    };
    let amplitude_rows = match training.get("amplitude_rows") {
        None => None,
        Some(v) => Some(v.as_bool().ok_or_else(|| {
            refuse(format!(
                "its training 'amplitude_rows' is {v}; expected true or false"
            ))
        })?),
    };
    models::fold_legacy_options(&mut source_options, depth, amplitude_rows);

    let onnx_path = ModelCard::onnx_path(&card_path);
    let bytes = std::fs::read(&onnx_path).map_err(TrainError::io(&onnx_path))?;
    let model = load_growing(
        model,
        arch,
        spec,
        &source_options,
        refuse,
        |model, source_spec| {
            models::onnx_weights::load_onnx_weights(
                model,
                arch,
                source_spec,
                &bytes,
                &onnx_path.display().to_string(),
            )
        },
    )?;
    let init = InitRecord {
        run: card_path.clone(),
        model: Some(format!("{} {}", card.name, card.version)),
        best_epoch,
        weights_sha256: sha256_hex(&bytes),
        dataset_manifest_digest: card.dataset.manifest_sha256.clone(),
        split_seed,
        split,
        max_windows,
        init: earlier_init.map(Box::new),
        encoder_only: false,
    };
    Ok((model, init))
}

/// The `--max-windows N` of a recorded `specwatch-train train` command.
fn max_windows_of_command(command: &str) -> Option<usize> {
    let mut words = command.split_whitespace();
    words.find(|w| *w == "--max-windows")?;
    words.next()?.parse().ok()
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The objective's validation figures over the windows `indices`, in batches of at least 256
/// windows on the CPU (flex) device.
/// The objective's figures on the validation windows `indices`. An objective that compares
/// views of a window sees them augmented with the keys of epoch 0, the same every epoch; one
/// that trains on one view sees the windows as they are.
fn validate(
    objective: &dyn Objective,
    data: &mut Batcher,
    indices: &[u32],
    config: &TrainConfig,
) -> Result<Figures, TrainError> {
    let device = Device::flex();
    let views = config.objective.views();
    let mut failed = None;
    let mut batches = indices
        .chunks(config.batch_size.max(256))
        .map_while(|chunk| {
            let batch = if views > 1 {
                data.augmented_batch(chunk, &config.augment, views, config.seed, 0, &device)
            } else {
                data.batch(chunk, &device)
            };
            match batch {
                Ok(batch) => Some(batch),
                Err(e) => {
                    failed = Some(e);
                    None
                }
            }
        });
    let figures = objective.validate(&mut batches)?;
    match failed {
        Some(e) => Err(e),
        None => Ok(figures),
    }
}

/// Reads `metrics.jsonl` of a run.
pub fn read_metrics(run_dir: &Path) -> Result<Vec<EpochMetrics>, TrainError> {
    let path = run_dir.join(METRICS_FILE);
    let text = std::fs::read_to_string(&path).map_err(TrainError::io(&path))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).map_err(|source| TrainError::Json {
                path: path.clone(),
                source,
            })
        })
        .collect()
}

/// Drops metric lines of epochs after `last_epoch` (written by a run that stopped before its
/// checkpoint), so a resumed run's `metrics.jsonl` holds each epoch once.
fn keep_metrics_up_to(path: &Path, last_epoch: usize) -> Result<(), TrainError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let kept: Vec<EpochMetrics> = read_metrics(dir)?
        .into_iter()
        .filter(|m| m.epoch <= last_epoch)
        .collect();
    let mut text = String::new();
    for m in &kept {
        text += &serde_json::to_string(m).expect("metrics serialise");
        text.push('\n');
    }
    std::fs::write(path, text).map_err(TrainError::io(path))
}

fn append_metrics(path: &Path, metrics: &EpochMetrics) -> Result<(), TrainError> {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(TrainError::io(path))?;
    let line = serde_json::to_string(metrics).expect("metrics serialise");
    writeln!(file, "{line}").map_err(TrainError::io(path))
}

fn progress_bar(show: bool, steps: u64, epoch: usize, epochs: usize) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(steps);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "epoch {epoch}/{epochs} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} batches \
             {{msg}} (eta {{eta}})"
        ))
        .expect("valid progress template"),
    );
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_schedule_runs_from_lr_to_min_lr() {
        let mut c = TrainConfig::new("vtcnn2", Path::new("d"));
        c.lr = 1e-3;
        c.min_lr = 1e-5;
        assert!((c.lr_at(0, 100) - 1e-3).abs() < 1e-15);
        assert!((c.lr_at(50, 100) - (1e-5 + 0.5 * (1e-3 - 1e-5))).abs() < 1e-12);
        assert!((c.lr_at(100, 100) - 1e-5).abs() < 1e-15);
        assert!(c.lr_at(30, 100) > c.lr_at(31, 100));
    }

    #[test]
    fn a_config_written_before_architecture_options_reads_into_them() {
        // A run folder's config.json as the version before options wrote it, with resnet1d's
        // depth and amplitude rows changed from their published values.
        let old = r#"{"specwatch_version": "0.1.0", "train": {"arch": "resnet1d", "data": "ds",
            "prep": {"normalization": "unit_rms", "representation": "iq", "max_windows": null},
            "split": {"train": 0.7, "val": 0.15, "test": 0.15}, "epochs": 3, "batch_size": 256,
            "lr": 0.001, "min_lr": 0.0, "weight_decay": 0.0, "dropout": 0.5, "width": 0.5,
            "depth": 2, "amplitude_rows": true, "patience": 5, "seed": 3},
            "model": {"num_classes": 11, "rows": 2, "window_len": 128, "dropout": 0.5,
            "width": 0.5, "depth": 2, "amplitude_rows": true},
            "dataset": {"dir": "ds", "manifest_digest": "d", "classes": [], "channels": 1,
            "window_len": 128, "windows": 4400}}"#;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CONFIG_FILE), old).unwrap();
        let record = RunRecord::load(dir.path()).unwrap();
        for options in [&record.train.arch_options, &record.model.options] {
            assert_eq!(options["depth"], serde_json::Value::from(2));
            assert_eq!(options["amplitude_rows"], serde_json::Value::Bool(true));
        }
        assert_eq!(record.train.objective, ObjectiveConfig::default());
        assert_eq!(record.train.prep.residency, Default::default());
        // The published values need no entry.
        let published = old
            .replace("\"depth\": 2", "\"depth\": 1")
            .replace("true", "false");
        std::fs::write(dir.path().join(CONFIG_FILE), published).unwrap();
        let record = RunRecord::load(dir.path()).unwrap();
        assert!(record.train.arch_options.is_empty() && record.model.options.is_empty());
    }

    #[test]
    fn bad_hyper_parameters_are_named() {
        let mut c = TrainConfig::new("vtcnn2", Path::new("d"));
        c.batch_size = 0;
        assert!(c.check().unwrap_err().to_string().contains("'batch' is 0"));
        let mut c = TrainConfig::new("vtcnn2", Path::new("d"));
        c.lr = 2.0;
        assert!(c.check().unwrap_err().to_string().contains("'lr' is 2"));
    }
}
