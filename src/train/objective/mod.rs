//! Objectives: what a run optimises, and how. The run shell ([`super::fit`]) owns what every
//! run has — the run folder, its config, the split, the epoch loop, the learning-rate schedule,
//! early stopping, checkpoints and `--resume`, the metrics log and the progress bar — and hands
//! each batch to the run's objective. An objective owns its models, its optimiser(s) and its
//! step, and says how it is validated and what it checkpoints.
//!
//! ```text
//! fit (shell): for each epoch ─ order the training windows ─ batches ─▶ Objective::step(batch, lr)
//!              validation batches ─▶ Objective::validate ─▶ loss (early stopping), accuracy
//!              each epoch ─▶ Objective::save (checkpoint/) ; a better validation loss ─▶ save_best
//! ```
//!
//! Adding an objective: a file here with a type implementing [`Objective`], a variant of
//! [`ObjectiveConfig`] with its settings, and one arm in [`ObjectiveConfig::build`].
//!
//! - [`classify`]: supervised classification of the window's class — cross-entropy (the
//!   baselines) or focal loss.

pub mod classify;

use std::path::Path;

use burn::module::Module;
use burn::optim::{AdamConfig, AdamWConfig, ModuleOptimizer};
use serde::{Deserialize, Serialize};

use super::TrainError;
use super::data::Batch;
use super::models::Model;

/// What one step or one validation pass measured, summed over its windows.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Figures {
    /// The loss times the windows it was averaged over (so batches of any size add up).
    pub loss_sum: f64,
    /// Windows whose class was predicted right (0 for objectives that predict no class).
    pub correct: usize,
    /// Windows seen.
    pub windows: usize,
}

impl Figures {
    /// Adds another batch's figures.
    pub fn add(&mut self, other: Figures) {
        self.loss_sum += other.loss_sum;
        self.correct += other.correct;
        self.windows += other.windows;
    }

    /// Mean loss per window.
    pub fn loss(&self) -> f64 {
        self.loss_sum / self.windows.max(1) as f64
    }

    /// Fraction of windows classified right.
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.windows.max(1) as f64
    }
}

/// A training objective (see the module documentation).
pub trait Objective {
    /// One optimisation step on `batch` (training mode) at learning rate `lr`.
    fn step(&mut self, batch: Batch, lr: f64) -> Result<Figures, TrainError>;

    /// Loss and accuracy over validation `batches`, in evaluation mode and without gradients.
    /// Its loss is what early stopping watches.
    fn validate(&self, batches: &mut dyn Iterator<Item = Batch>) -> Result<Figures, TrainError>;

    /// The model the run exports, in evaluation mode.
    fn model(&self) -> Model;

    /// Writes everything a resumed run needs (models, optimiser states, queues) into `dir`.
    fn save(&self, dir: &Path) -> Result<(), TrainError>;

    /// Restores what [`Objective::save`] wrote into `dir`.
    fn load(&mut self, dir: &Path) -> Result<(), TrainError>;
}

/// Which objective a run trains, with its settings; recorded in `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ObjectiveConfig {
    /// Supervised classification ([`classify`]).
    Classify {
        /// The loss on the class logits.
        #[serde(default)]
        loss: classify::ClassLoss,
    },
}

impl Default for ObjectiveConfig {
    fn default() -> Self {
        ObjectiveConfig::Classify {
            loss: classify::ClassLoss::CrossEntropy,
        }
    }
}

impl ObjectiveConfig {
    /// Checks the settings; errors name the setting.
    pub fn check(&self) -> Result<(), TrainError> {
        match self {
            ObjectiveConfig::Classify { loss } => loss.check(),
        }
    }

    /// The objective training `model` with `optimizer`.
    pub fn build(
        &self,
        model: Model,
        optimizer: OptimizerConfig,
    ) -> Result<Box<dyn Objective>, TrainError> {
        self.check()?;
        Ok(match self {
            ObjectiveConfig::Classify { loss } => Box::new(classify::Classify::new(
                model,
                optimizer.init(),
                loss.clone(),
            )),
        })
    }

    /// A short name for logs and model cards.
    pub fn name(&self) -> &'static str {
        match self {
            ObjectiveConfig::Classify { .. } => "classify",
        }
    }
}

/// The optimiser of a run's parameters: Adam, or AdamW when a decoupled weight decay is given.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptimizerConfig {
    /// Decoupled weight decay: 0 trains with Adam, above 0 with AdamW.
    pub weight_decay: f64,
}

impl OptimizerConfig {
    /// The optimiser's name as cards record it.
    pub fn name(&self) -> &'static str {
        if self.weight_decay > 0.0 {
            "adamw"
        } else {
            "adam"
        }
    }

    /// A fresh optimiser state.
    pub fn init(&self) -> ModuleOptimizer {
        if self.weight_decay > 0.0 {
            AdamWConfig::new()
                .with_weight_decay(self.weight_decay as f32)
                .init()
        } else {
            AdamConfig::new().init()
        }
    }
}

/// Saves `model`'s weights to `path` (burnpack).
pub(crate) fn save_model(model: &Model, path: &Path) -> Result<(), TrainError> {
    model
        .clone()
        .save_file(path)
        .map_err(|e| TrainError::Record {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}

/// Loads weights saved by [`save_model`] into `model`.
pub(crate) fn load_model(model: Model, path: &Path) -> Result<Model, TrainError> {
    model.try_load_file(path).map_err(|e| TrainError::Record {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}
