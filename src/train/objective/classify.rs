//! Supervised classification: the model's class logits against the window's class.
//!
//! Loss ([`ClassLoss`]): cross-entropy (the baselines), or focal loss
//! `−α_y (1 − p_y)^γ log p_y` (Lin et al. 2017; CAIC-Net) — [`crate::train::losses`].
//! Accuracy: the highest logit is the target class. Validation runs a [`Module::valid`] copy
//! (dropout off, batch-norm on its running statistics). With `freeze_encoder` only the
//! classifier head trains, on the embeddings of the encoder in evaluation mode: a linear probe.
//! With `encoder_lr_scale` the encoder trains at that multiple of the head's learning rate
//! (fine-tuning a pretrained encoder gently under a fresh head). The architecture's own penalty
//! ([`embedding_and_penalty`](crate::train::models::Architecture::embedding_and_penalty), e.g.
//! sejnnet's ℓ1 on its attention weights) adds to the training loss (validation reports the
//! class loss alone), and its data-dependent initialisation
//! ([`data_init`](crate::train::models::Architecture::data_init)) runs on the run's first batch.
//!
//! Checkpoint (`checkpoint/`): `model.bpk` and `optim.bpk`, as runs have always written them,
//! so runs of earlier versions resume.

use std::path::Path;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::lr_scheduler::module_lr_scheduler::{ModuleLearningRate, ModuleLrScheduler};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Int, Tensor};
use serde::{Deserialize, Serialize};

use super::{Figures, Objective, StepAt, load_checkpoint, save_checkpoint, save_model};
use crate::train::TrainError;
use crate::train::data::Batch;
use crate::train::losses;
use crate::train::models::{Model, ParamGroup};

/// The loss on the class logits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClassLoss {
    /// Mean cross-entropy.
    #[default]
    CrossEntropy,
    /// Focal loss with focusing parameter `gamma` (0 is cross-entropy) and optional per-class
    /// weights `alpha` (one per class, in the dataset's class order).
    Focal {
        gamma: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        alpha: Option<Vec<f32>>,
    },
}

impl ClassLoss {
    /// Checks the loss's settings (the per-class weights' count is checked against the model's
    /// classes at the first step).
    pub fn check(&self) -> Result<(), TrainError> {
        match self {
            ClassLoss::CrossEntropy => Ok(()),
            ClassLoss::Focal { gamma, alpha } => {
                losses::check_focal(*gamma, alpha.as_deref(), alpha.as_ref().map_or(0, Vec::len))
            }
        }
    }

    /// The mean loss of `logits` `[B, K]` against `targets` `[B]`.
    pub(crate) fn loss(
        &self,
        logits: Tensor<2>,
        targets: Tensor<1, Int>,
    ) -> Result<Tensor<1>, TrainError> {
        Ok(match self {
            ClassLoss::CrossEntropy => CrossEntropyLossConfig::new()
                .init(&logits.device())
                .forward(logits, targets),
            ClassLoss::Focal { gamma, alpha } => {
                let classes = logits.dims()[1];
                losses::check_focal(*gamma, alpha.as_deref(), classes)?;
                losses::focal(logits, targets, *gamma, alpha.as_deref())
            }
        })
    }
}

/// Supervised classification of one model (see the module documentation).
pub struct Classify {
    model: Model,
    optim: ModuleOptimizer,
    loss: ClassLoss,
    /// The encoder in evaluation mode, when it is frozen (its weights never change, so one
    /// copy serves every step).
    frozen: Option<Model>,
    /// The encoder's learning rate as a multiple of the head's (1: one rate for all).
    encoder_lr_scale: f64,
    head: ParamGroup,
}

impl Classify {
    pub fn new(
        model: Model,
        optim: ModuleOptimizer,
        loss: ClassLoss,
        freeze_encoder: bool,
        encoder_lr_scale: f64,
    ) -> Self {
        let frozen = freeze_encoder.then(|| model.valid());
        let head = model.head_params();
        Self {
            model,
            optim,
            loss,
            frozen,
            encoder_lr_scale,
            head,
        }
    }

    /// The learning rates of a step: `lr` for the head, `lr × encoder_lr_scale` for the rest.
    fn rates(&self, lr: f64) -> ModuleLearningRate {
        if self.encoder_lr_scale == 1.0 {
            return lr.into();
        }
        ModuleLrScheduler::new(lr * self.encoder_lr_scale)
            .with_group(self.head.clone(), lr)
            .step()
    }

    /// Class logits of a training batch and the architecture's penalty on it: through the
    /// frozen encoder's embedding when there is one (no gradient reaches the encoder, and its
    /// batch-norm statistics stay as they are; no penalty).
    fn train_logits(&self, x: Tensor<3>) -> (Tensor<2>, Option<Tensor<1>>) {
        match &self.frozen {
            Some(encoder) => {
                let embedding = encoder.embedding(x.inner());
                (self.model.classify(Tensor::from_inner(embedding)), None)
            }
            None => self.model.forward_and_penalty(x),
        }
    }
}

/// Windows of a batch whose highest logit is their target class.
pub fn hits(logits: Tensor<2>, targets: Tensor<1, Int>) -> usize {
    let hits: i64 = logits
        .argmax(1)
        .flatten::<1>(0, 1)
        .equal(targets)
        .int()
        .sum()
        .into_scalar();
    hits as usize
}

impl Objective for Classify {
    fn step(&mut self, batch: Batch, at: StepAt) -> Result<Figures, TrainError> {
        let lr = at.lr;
        let windows = batch.len();
        if at.step == 0 && self.frozen.is_none() {
            // Data-dependent initialisation (e.g. actnorm) on the run's first batch.
            self.model = self.model.clone().data_init(batch.inputs.clone());
        }
        let (logits, penalty) = self.train_logits(batch.inputs); // [B, num_classes]
        let loss = self.loss.loss(logits.clone(), batch.targets.clone())?; // [1]
        let loss = match penalty {
            Some(p) => loss + p,
            None => loss,
        };
        let grads = GradientsParams::from_grads(loss.backward(), &self.model);
        self.model = self.optim.step(self.rates(lr), self.model.clone(), grads);
        let loss: f32 = loss.into_scalar();
        Ok(Figures {
            loss_sum: f64::from(loss) * windows as f64,
            correct: hits(logits, batch.targets),
            windows,
        })
    }

    fn validate(&self, batches: &mut dyn Iterator<Item = Batch>) -> Result<Figures, TrainError> {
        let model = self.model.valid();
        let mut figures = Figures::default();
        for batch in batches {
            let windows = batch.len();
            let logits = model.forward(batch.inputs);
            let loss: f32 = self
                .loss
                .loss(logits.clone(), batch.targets.clone())?
                .into_scalar();
            figures.add(Figures {
                loss_sum: f64::from(loss) * windows as f64,
                correct: hits(logits, batch.targets),
                windows,
            });
        }
        Ok(figures)
    }

    fn save_best(&self, path: &Path) -> Result<(), TrainError> {
        save_model(&self.model.valid(), path)
    }

    fn save(&self, dir: &Path) -> Result<(), TrainError> {
        save_checkpoint(&self.model, &self.optim, dir)
    }

    fn load(&mut self, dir: &Path) -> Result<(), TrainError> {
        (self.model, self.optim) = load_checkpoint(self.model.clone(), self.optim.clone(), dir)?;
        if self.frozen.is_some() {
            self.frozen = Some(self.model.valid());
        }
        Ok(())
    }
}
