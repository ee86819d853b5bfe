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
//! - [`multitask`]: the class and the angle of arrival together, optionally with the window's
//!   SNR as a second input.
//! - [`moco`]: MoCo v3 self-supervised pretraining of an encoder on two augmented views of each
//!   window (no labels read); heads come after, on the encoder it exports.
//!
//! What a run exports is the objective's too ([`ObjectiveConfig::servable`]): a model with its
//! [`Interface`], which drives the graph, the card and the
//! export's parity check.

pub mod classify;
pub mod moco;
pub mod multitask;

use std::path::Path;

use burn::module::Module;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, AdamWConfig, LambConfig, ModuleOptimizer, SgdConfig};
use serde::{Deserialize, Serialize};

use burn::tensor::Device;

use super::TrainError;
use super::data::{Batch, PrepOptions};
use super::interface::{Classifier, Interface, Servable};
use super::lars::Lars;
use super::models::{Model, ModelSpec};

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

/// Where in its run a step is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepAt {
    /// The learning rate the run's schedule gives this step.
    pub lr: f64,
    /// Steps taken before this one (over the whole run, resumes included).
    pub step: u64,
    /// Steps in the whole run (epochs × steps per epoch).
    pub total_steps: u64,
}

impl StepAt {
    /// The fraction of the run done before this step, in [0, 1].
    pub fn progress(&self) -> f64 {
        (self.step as f64 / self.total_steps.max(1) as f64).min(1.0)
    }
}

/// A training objective (see the module documentation).
pub trait Objective {
    /// One optimisation step on `batch` (training mode), at the point of the run `at` says
    /// (the schedule's learning rate, and the step for objectives with schedules of their own).
    fn step(&mut self, batch: Batch, at: StepAt) -> Result<Figures, TrainError>;

    /// Loss and accuracy over validation `batches`, in evaluation mode and without gradients.
    /// Its loss is what early stopping watches.
    fn validate(&self, batches: &mut dyn Iterator<Item = Batch>) -> Result<Figures, TrainError>;

    /// Writes the weights the run exports (evaluation mode) to `path` (`best.bpk`);
    /// [`ObjectiveConfig::servable`] reads them back.
    fn save_best(&self, path: &Path) -> Result<(), TrainError>;

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
        /// Train the classifier head alone on a frozen encoder (evaluation mode, no gradient):
        /// a linear probe of an encoder taken with `--encoder-from`.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        freeze_encoder: bool,
        /// The encoder's learning rate as a multiple of the head's (the schedule's rate).
        #[serde(default = "one", skip_serializing_if = "is_one")]
        encoder_lr_scale: f64,
    },
    /// The class with the angle of arrival and/or an SNR input ([`multitask`]).
    Multitask(multitask::MultitaskSettings),
    /// MoCo v3 self-supervised pretraining of the architecture as an encoder ([`moco`]).
    MocoV3(moco::MocoV3Settings),
}

pub(crate) fn one() -> f64 {
    1.0
}

pub(crate) fn is_one(v: &f64) -> bool {
    *v == 1.0
}

/// Checks an encoder learning-rate multiple: finite and ≥ 0.
pub(crate) fn check_encoder_lr_scale(scale: f64) -> Result<(), TrainError> {
    if scale.is_finite() && scale >= 0.0 {
        return Ok(());
    }
    Err(TrainError::param(
        "objective",
        format!(
            "encoder_lr_scale is {scale}; expected a finite multiple ≥ 0 of the head's learning rate"
        ),
    ))
}

/// What the shell builds an objective from.
pub struct BuildContext<'a> {
    /// The architecture's registry name.
    pub arch: &'a str,
    pub spec: &'a ModelSpec,
    pub prep: PrepOptions,
    pub device: &'a Device,
}

impl Default for ObjectiveConfig {
    fn default() -> Self {
        ObjectiveConfig::Classify {
            loss: classify::ClassLoss::CrossEntropy,
            freeze_encoder: false,
            encoder_lr_scale: 1.0,
        }
    }
}

impl ObjectiveConfig {
    /// Checks the settings; errors name the setting.
    pub fn check(&self) -> Result<(), TrainError> {
        match self {
            ObjectiveConfig::Classify {
                loss,
                encoder_lr_scale,
                ..
            } => {
                check_encoder_lr_scale(*encoder_lr_scale)?;
                loss.check()
            }
            ObjectiveConfig::Multitask(settings) => settings.check(),
            ObjectiveConfig::MocoV3(settings) => settings.check(),
        }
    }

    /// Checks that the dataset has what this objective trains on (before a run starts).
    pub fn check_dataset(&self, manifest: &crate::iq::dataset::Manifest) -> Result<(), TrainError> {
        match self {
            ObjectiveConfig::Multitask(settings) if settings.angles && !manifest.has_angles => {
                Err(TrainError::param(
                    "objective",
                    "multitask regresses angles, but the dataset has no angles.npy (generate an \
                     AoA recipe such as aoa4, or set \"angles\": false)",
                ))
            }
            _ => Ok(()),
        }
    }

    /// Augmented views of each training window the objective compares (1: it trains on one).
    pub fn views(&self) -> u32 {
        match self {
            ObjectiveConfig::Classify { .. } | ObjectiveConfig::Multitask(_) => 1,
            ObjectiveConfig::MocoV3(_) => 2,
        }
    }

    /// Representations of each window the objective sees beside the run's own
    /// ([`crate::train::data::Batch::domains`]).
    pub fn domains(&self) -> Vec<crate::dsp::repr::Representation> {
        match self {
            ObjectiveConfig::Classify { .. }
            | ObjectiveConfig::Multitask(_)
            | ObjectiveConfig::MocoV3(_) => Vec::new(),
        }
    }

    /// Whether batches must carry the daemon's SNR estimate of each window.
    pub fn needs_snr_estimate(&self) -> bool {
        matches!(
            self,
            ObjectiveConfig::Multitask(multitask::MultitaskSettings {
                snr_input: Some(multitask::SnrSource::Estimate),
                ..
            })
        )
    }

    /// The objective training `model` (the architecture, built or warm-started by the shell)
    /// with `optimizer`.
    pub fn build(
        &self,
        model: Model,
        optimizer: OptimizerConfig,
        cx: &BuildContext,
    ) -> Result<Box<dyn Objective>, TrainError> {
        self.check()?;
        let snr_fed = matches!(self, ObjectiveConfig::Multitask(s) if s.snr_input.is_some());
        super::models::check_snr_fed(&model, snr_fed)?;
        Ok(match self {
            ObjectiveConfig::Classify {
                loss,
                freeze_encoder,
                encoder_lr_scale,
            } => Box::new(classify::Classify::new(
                model,
                optimizer.init(),
                loss.clone(),
                *freeze_encoder,
                *encoder_lr_scale,
            )),
            ObjectiveConfig::Multitask(settings) => Box::new(multitask::Multitask::new(
                multitask::MultitaskModel::new(model, cx.spec, settings, cx.device),
                optimizer.init(),
                settings.clone(),
            )),
            ObjectiveConfig::MocoV3(settings) => Box::new(moco::MocoV3::new(
                model,
                cx.arch,
                cx.spec,
                settings.clone(),
                optimizer.init(),
                cx.device,
            )?),
        })
    }

    /// The exported model of a run of this objective: `model` (an architecture built for
    /// `cx.spec`) completed as this objective trains it, with the weights `best` (`best.bpk`)
    /// loaded, in evaluation mode, with its interface.
    pub fn servable(
        &self,
        model: Model,
        best: &Path,
        cx: &BuildContext,
    ) -> Result<Box<dyn Servable>, TrainError> {
        let interface = Interface::classifier(cx.spec, cx.prep.normalization);
        Ok(match self {
            ObjectiveConfig::Classify { .. } => Box::new(Classifier {
                model: load_model(model, best)?.valid(),
                interface,
            }),
            ObjectiveConfig::Multitask(settings) => {
                let fresh = multitask::MultitaskModel::new(model, cx.spec, settings, cx.device);
                Box::new(multitask::ServedMultitask::new(
                    load_model(fresh, best)?.valid(),
                    interface,
                ))
            }
            ObjectiveConfig::MocoV3(_) => {
                return Err(TrainError::param(
                    "objective",
                    "a moco_v3 run pretrains an encoder, which is not served by itself; train \
                     heads on it with `train --encoder-from RUN` (or measure it with `probe \
                     --encoder RUN`) and export that run",
                ));
            }
        })
    }

    /// A short name for logs and model cards.
    pub fn name(&self) -> &'static str {
        match self {
            ObjectiveConfig::Classify { .. } => "classify",
            ObjectiveConfig::Multitask(_) => "multitask",
            ObjectiveConfig::MocoV3(_) => "moco_v3",
        }
    }
}

/// Which optimiser updates a run's parameters; recorded in `config.json` and on the card.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case", deny_unknown_fields)]
pub enum Optimizer {
    /// Adam; AdamW (decoupled weight decay) when `weight_decay` is above 0.
    #[default]
    Adam,
    /// Stochastic gradient descent with momentum (PyTorch's convention: no dampening), the
    /// weight decay as an L2 penalty on the gradient.
    Sgd {
        #[serde(default = "default_momentum")]
        momentum: f64,
        #[serde(default)]
        nesterov: bool,
    },
    /// LAMB (You et al. 2020): Adam's direction with a per-layer trust ratio, the large-batch
    /// optimiser of the contrastive papers' ResNets; decoupled weight decay.
    Lamb,
    /// LARS (You et al. 2017; [`crate::train::lars`]): SGD with momentum, each weight
    /// tensor's step scaled by the trust ratio `η‖w‖/‖g‖`; biases and norms neither decay nor
    /// adapt — MoCo v3's pretraining optimiser.
    Lars {
        #[serde(default = "default_momentum")]
        momentum: f64,
        /// The trust coefficient η.
        #[serde(default = "default_trust_coefficient")]
        trust_coefficient: f64,
    },
}

fn default_trust_coefficient() -> f64 {
    0.001
}

fn default_momentum() -> f64 {
    0.9
}

impl Optimizer {
    /// Checks the settings; errors name the setting.
    pub fn check(&self) -> Result<(), TrainError> {
        if let Optimizer::Sgd { momentum, .. } | Optimizer::Lars { momentum, .. } = self
            && !(momentum.is_finite() && (0.0..1.0).contains(momentum))
        {
            return Err(TrainError::param(
                "optimizer",
                format!("momentum is {momentum}; expected a value in [0, 1)"),
            ));
        }
        if let Optimizer::Lars {
            trust_coefficient, ..
        } = self
            && !(trust_coefficient.is_finite() && *trust_coefficient > 0.0)
        {
            return Err(TrainError::param(
                "optimizer",
                format!("lars trust_coefficient is {trust_coefficient}; expected a value above 0"),
            ));
        }
        Ok(())
    }
}

/// The optimiser of a run's parameters, with its weight decay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptimizerConfig {
    pub optimizer: Optimizer,
    /// Weight decay (decoupled for AdamW and LAMB, an L2 penalty for SGD); 0 for none.
    pub weight_decay: f64,
}

impl OptimizerConfig {
    /// The optimiser's name as cards record it.
    pub fn name(&self) -> &'static str {
        match self.optimizer {
            Optimizer::Adam if self.weight_decay > 0.0 => "adamw",
            Optimizer::Adam => "adam",
            Optimizer::Sgd { .. } => "sgd",
            Optimizer::Lamb => "lamb",
            Optimizer::Lars { .. } => "lars",
        }
    }

    /// A fresh optimiser state.
    pub fn init(&self) -> ModuleOptimizer {
        let decay = self.weight_decay as f32;
        match self.optimizer {
            Optimizer::Adam if self.weight_decay > 0.0 => {
                AdamWConfig::new().with_weight_decay(decay).init()
            }
            Optimizer::Adam => AdamConfig::new().init(),
            Optimizer::Sgd { momentum, nesterov } => SgdConfig::new()
                .with_momentum(Some(MomentumConfig {
                    momentum,
                    dampening: 0.0,
                    nesterov,
                }))
                .with_weight_decay((decay > 0.0).then_some(WeightDecayConfig { penalty: decay }))
                .init(),
            Optimizer::Lamb => LambConfig::new().with_weight_decay(decay).init(),
            Optimizer::Lars {
                momentum,
                trust_coefficient,
            } => Lars::new(momentum, self.weight_decay, trust_coefficient).init(),
        }
    }
}

/// Saves `model`'s weights to `path` (burnpack).
pub(crate) fn save_model<M: Module>(model: &M, path: &Path) -> Result<(), TrainError> {
    model
        .clone()
        .save_file(path)
        .map_err(|e| TrainError::Record {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}

/// Loads weights saved by [`save_model`] into `model`.
pub(crate) fn load_model<M: Module>(model: M, path: &Path) -> Result<M, TrainError> {
    model.try_load_file(path).map_err(|e| TrainError::Record {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Writes a one-model objective's checkpoint into `dir`: `model.bpk` and `optim.bpk`.
pub(crate) fn save_checkpoint<M: Module>(
    model: &M,
    optim: &ModuleOptimizer,
    dir: &Path,
) -> Result<(), TrainError> {
    save_model(model, &dir.join("model.bpk"))?;
    let path = dir.join("optim.bpk");
    optim.save(&path).map_err(|e| TrainError::Record {
        path,
        message: e.to_string(),
    })
}

/// Reads what [`save_checkpoint`] wrote into `dir`.
pub(crate) fn load_checkpoint<M: Module>(
    model: M,
    optim: ModuleOptimizer,
    dir: &Path,
) -> Result<(M, ModuleOptimizer), TrainError> {
    let model = load_model(model, &dir.join("model.bpk"))?;
    let path = dir.join("optim.bpk");
    let optim = optim.load(&path).map_err(|e| TrainError::Record {
        path,
        message: e.to_string(),
    })?;
    Ok((model, optim))
}
