//! Supervised multi-task training: the window's class and, beside it, its angle of arrival,
//! optionally with the window's SNR as a second input — the shape of the seed models that
//! regress azimuth/elevation beside the class (MoCo's multi-task head) or condition on an SNR
//! estimate (CAIC-Net).
//!
//! ```text
//! x ─ architecture embedding e ─┬─ architecture head ─ + snr head(snr_db / 10) ─▶ logits
//!                               └─ angle head ──────────────────────────────────▶ azimuth, elevation (°)
//!                                  Linear E → 2, or with angle_hidden H: Linear E → H ─ ReLU ─ Linear H → 2
//! loss = class loss(logits) + angle_weight · L1(angles)      (azimuth error wrapped to ±180°)
//! ```
//!
//! On a pretrained encoder (`--encoder-from`): `freeze_encoder` trains the heads alone on the
//! encoder's embeddings in evaluation mode (frozen probes: with the encoder fixed, the class
//! and angle heads train independently, as the MoCo paper's separate heads do);
//! `encoder_lr_scale` fine-tunes the encoder at that multiple of the heads' learning rate.
//! `angle_hidden` gives the angle head the paper's two linear layers (a ReLU between them is our
//! choice; the paper does not say).
//!
//! Choices (recorded with the objective in `config.json` and on the card): angles are regressed
//! directly in degrees with an L1 loss whose azimuth error is wrapped
//! ([`losses::angle_l1_deg`]); the SNR enters as a per-class bias linear in `snr_db / 10`
//! (a minimal conditioning; CAIC-Net's cross-attention is its own model); `snr_input` says
//! which SNR training feeds — the dataset's true SNR, or the estimate the daemon computes at
//! serving time with the same `dsp` code ([`crate::train::source::snr_estimates_db`]). The
//! daemon always feeds its estimate.
//!
//! Checkpoint (`checkpoint/`): `model.bpk` (the whole multi-task model) and `optim.bpk`.

use std::path::Path;

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::lr_scheduler::module_lr_scheduler::{ModuleLearningRate, ModuleLrScheduler};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::classify::{ClassLoss, hits};
use super::{Figures, Objective, StepAt, load_checkpoint, save_checkpoint, save_model};
use crate::infer::card::OutputKind;
use crate::onnx::{GraphBuilder, OnnxError, ops};
use crate::train::TrainError;
use crate::train::data::Batch;
use crate::train::interface::{AZIMUTH_OUTPUT, ELEVATION_OUTPUT, Interface, OutputDecl, Servable};
use crate::train::losses;
use crate::train::models::{Model, ModelSpec, ParamGroup, onnx_layers};

/// Which SNR a model with an SNR input is trained on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnrSource {
    /// The dataset's true SNR (`snr.npy`).
    True,
    /// The daemon's estimate from the raw window, as served.
    Estimate,
}

/// The multi-task objective's settings (`{"kind": "multitask", …}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultitaskSettings {
    /// The loss on the class logits.
    #[serde(default)]
    pub loss: ClassLoss,
    /// Regress azimuth and elevation beside the class (needs a dataset with angles).
    #[serde(default = "yes")]
    pub angles: bool,
    /// Weight of the angle loss (mean absolute error in degrees) in the sum.
    #[serde(default = "default_angle_weight")]
    pub angle_weight: f64,
    /// Feed the window's SNR as a second input: its true SNR or the daemon's estimate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snr_input: Option<SnrSource>,
    /// The angle head's hidden width: two linear layers (`E → H → 2`) instead of one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub angle_hidden: Option<usize>,
    /// Train the heads alone on a frozen encoder (evaluation mode, no gradient).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub freeze_encoder: bool,
    /// The encoder's learning rate as a multiple of the heads' (the schedule's rate).
    #[serde(default = "super::one", skip_serializing_if = "super::is_one")]
    pub encoder_lr_scale: f64,
}

fn yes() -> bool {
    true
}

/// The angle loss's default weight: 1° of mean absolute error weighs what 0.02 nats of
/// cross-entropy do, so neither task drowns the other at the start of training.
fn default_angle_weight() -> f64 {
    0.02
}

impl MultitaskSettings {
    /// Checks the settings; errors name the setting.
    pub fn check(&self) -> Result<(), TrainError> {
        self.loss.check()?;
        super::check_encoder_lr_scale(self.encoder_lr_scale)?;
        if !(self.angle_weight.is_finite() && self.angle_weight >= 0.0) {
            return Err(TrainError::param(
                "objective",
                format!(
                    "angle_weight is {}; expected a finite weight ≥ 0",
                    self.angle_weight
                ),
            ));
        }
        if !self.angles && self.snr_input.is_none() {
            return Err(TrainError::param(
                "objective",
                "multitask with neither angles nor an SNR input is classify; use \
                 {\"kind\": \"classify\"}",
            ));
        }
        if self.angle_hidden == Some(0) || (self.angle_hidden.is_some() && !self.angles) {
            return Err(TrainError::param(
                "objective",
                "angle_hidden must be above 0, and given only with \"angles\": true",
            ));
        }
        Ok(())
    }
}

/// The multi-task model: an architecture, an optional angle head on its embedding and an
/// optional SNR term on its logits.
#[derive(Module, Debug)]
pub struct MultitaskModel {
    pub encoder: Model,
    /// The angle head's output layer: (hidden or embedding) → (azimuth, elevation) in degrees.
    pub angles: Option<Linear>,
    /// `snr_db / 10` → a bias per class.
    pub snr: Option<Linear>,
    /// The angle head's hidden layer, embedding → hidden (followed by a ReLU), when it has two.
    pub angles_hidden: Option<Linear>,
}

impl MultitaskModel {
    /// Heads for `encoder`, an architecture built for `spec` (its embedding width measured on
    /// one window), as `settings` asks.
    pub fn new(
        encoder: Model,
        spec: &ModelSpec,
        settings: &MultitaskSettings,
        device: &Device,
    ) -> Self {
        let width = crate::train::models::embedding_width(&encoder, spec);
        let angles_hidden = settings
            .angle_hidden
            .filter(|_| settings.angles)
            .map(|h| LinearConfig::new(width, h).init(device));
        let into_angles = settings.angle_hidden.unwrap_or(width);
        Self {
            encoder,
            angles: settings
                .angles
                .then(|| LinearConfig::new(into_angles, 2).init(device)),
            snr: settings
                .snr_input
                .is_some()
                .then(|| LinearConfig::new(1, spec.num_classes).init(device)),
            angles_hidden,
        }
    }

    /// Logits `[B, K]` and, with an angle head, angles `[B, 2]` (degrees).
    pub fn forward(
        &self,
        x: Tensor<3>,
        snr_db: Option<Tensor<1>>,
    ) -> (Tensor<2>, Option<Tensor<2>>) {
        self.heads(self.encoder.embedding(x), snr_db)
    }

    /// The heads on the embedding `e` `[B, E]`.
    fn heads(&self, e: Tensor<2>, snr_db: Option<Tensor<1>>) -> (Tensor<2>, Option<Tensor<2>>) {
        let angles = self.angles.as_ref().map(|out| {
            let h = match &self.angles_hidden {
                Some(hidden) => burn::tensor::activation::relu(hidden.forward(e.clone())),
                None => e.clone(),
            };
            out.forward(h)
        });
        let mut logits = self.encoder.classify(e);
        if let (Some(head), Some(snr)) = (&self.snr, snr_db) {
            let b = snr.dims()[0];
            logits = logits + head.forward(snr.reshape([b, 1]).div_scalar(10.0));
        }
        (logits, angles)
    }
}

/// A trained multi-task model with its interface, for export.
pub struct ServedMultitask {
    pub model: MultitaskModel,
    pub interface: Interface,
}

impl ServedMultitask {
    /// The interface of `model` over windows of `base` (a classifier's interface).
    pub fn new(model: MultitaskModel, mut base: Interface) -> Self {
        base.snr_input = model.snr.is_some();
        if model.angles.is_some() {
            base.outputs.push(OutputDecl {
                name: AZIMUTH_OUTPUT,
                kind: OutputKind::Azimuth,
                width: 1,
            });
            base.outputs.push(OutputDecl {
                name: ELEVATION_OUTPUT,
                kind: OutputKind::Elevation,
                width: 1,
            });
        }
        Self {
            model,
            interface: base,
        }
    }
}

impl Servable for ServedMultitask {
    fn interface(&self) -> &Interface {
        &self.interface
    }

    fn outputs(&self, x: Tensor<3>, snr_db: Option<Tensor<1>>) -> Vec<Tensor<2>> {
        let (logits, angles) = self.model.forward(x, snr_db);
        let mut out = vec![logits];
        if let Some(a) = angles {
            let b = a.dims()[0];
            out.push(a.clone().slice([0..b, 0..1]));
            out.push(a.slice([0..b, 1..2]));
        }
        out
    }

    fn to_onnx(&self, name: &str) -> Result<GraphBuilder, OnnxError> {
        let m = &self.model;
        self.interface.graph(name, |g, x, snr| {
            let e = m.encoder.embedding_to_onnx(g, x)?;
            let mut logits = m.encoder.classify_to_onnx(g, &e)?;
            if let (Some(head), Some(snr)) = (&m.snr, snr) {
                let tenth = ops::scalar(g, "snr.scale", 0.1)?;
                let scaled = ops::mul(g, snr, &tenth)?;
                let bias = ops::gemm(g, "snr", &scaled, &onnx_layers::linear(head, "snr")?)?;
                logits = ops::add(g, &logits, &bias)?;
            }
            let mut outputs = vec![logits];
            if let Some(head) = &m.angles {
                let h = match &m.angles_hidden {
                    Some(hidden) => {
                        let h = ops::gemm(
                            g,
                            "angles_hidden",
                            &e,
                            &onnx_layers::linear(hidden, "angles_hidden")?,
                        )?;
                        ops::relu(g, &h)?
                    }
                    None => e.clone(),
                };
                let a = ops::gemm(g, "angles", &h, &onnx_layers::linear(head, "angles")?)?;
                outputs.extend(ops::split(g, &a, 1, &[1, 1])?);
            }
            Ok(outputs)
        })
    }
}

/// The multi-task objective (see the module documentation).
pub struct Multitask {
    model: MultitaskModel,
    optim: ModuleOptimizer,
    settings: MultitaskSettings,
    /// The encoder in evaluation mode, when it is frozen.
    frozen: Option<Model>,
    /// The heads' parameters (the rest, the encoder, train at `encoder_lr_scale` times their
    /// rate).
    heads: Vec<ParamGroup>,
}

impl Multitask {
    pub fn new(model: MultitaskModel, optim: ModuleOptimizer, settings: MultitaskSettings) -> Self {
        let frozen = settings.freeze_encoder.then(|| model.encoder.valid());
        let mut heads = vec![model.encoder.head_params()];
        for layer in [&model.angles, &model.snr, &model.angles_hidden]
            .into_iter()
            .flatten()
        {
            heads.push(ParamGroup::ids_from_module(layer.clone()));
        }
        Self {
            model,
            optim,
            settings,
            frozen,
            heads,
        }
    }

    /// The learning rates of a step: `lr` for the heads, `lr × encoder_lr_scale` for the rest.
    fn rates(&self, lr: f64) -> ModuleLearningRate {
        if self.settings.encoder_lr_scale == 1.0 {
            return lr.into();
        }
        let mut scheduler = ModuleLrScheduler::new(lr * self.settings.encoder_lr_scale);
        for group in &self.heads {
            scheduler = scheduler.with_group(group.clone(), lr);
        }
        scheduler.step()
    }

    /// The batch's SNR as this model is fed it.
    fn snr(&self, batch: &Batch) -> Result<Option<Tensor<1>>, TrainError> {
        match self.settings.snr_input {
            None => Ok(None),
            Some(SnrSource::True) => Ok(Some(batch.snr_db.clone())),
            Some(SnrSource::Estimate) => batch.snr_estimate_db.clone().map(Some).ok_or_else(|| {
                TrainError::param(
                    "objective",
                    "snr_input is 'estimate' but the batches carry no SNR estimate",
                )
            }),
        }
    }

    /// The loss and the figures of one batch through `model` (in training, through the frozen
    /// encoder when there is one).
    fn loss(
        &self,
        model: &MultitaskModel,
        batch: Batch,
        training: bool,
    ) -> Result<(Tensor<1>, usize, usize), TrainError> {
        let windows = batch.len();
        let snr = self.snr(&batch)?;
        let (logits, angles) = match (&self.frozen, training) {
            (Some(encoder), true) => {
                let e = Tensor::from_inner(encoder.embedding(batch.inputs.inner()));
                model.heads(e, snr)
            }
            _ => model.forward(batch.inputs, snr),
        };
        let mut loss = self
            .settings
            .loss
            .loss(logits.clone(), batch.targets.clone())?;
        if let Some(pred) = angles {
            let target = batch.angles_deg.ok_or_else(|| {
                TrainError::param(
                    "objective",
                    "regresses angles, but the dataset has no angles.npy (generate an AoA \
                     recipe such as aoa4, or set \"angles\": false)",
                )
            })?;
            loss = loss + losses::angle_l1_deg(pred, target).mul_scalar(self.settings.angle_weight);
        }
        Ok((loss, hits(logits, batch.targets), windows))
    }
}

impl Objective for Multitask {
    fn step(&mut self, batch: Batch, at: StepAt) -> Result<Figures, TrainError> {
        let (loss, correct, windows) = self.loss(&self.model, batch, true)?;
        let grads = GradientsParams::from_grads(loss.backward(), &self.model);
        self.model = self
            .optim
            .step(self.rates(at.lr), self.model.clone(), grads);
        let loss: f32 = loss.into_scalar();
        Ok(Figures {
            loss_sum: f64::from(loss) * windows as f64,
            correct,
            windows,
        })
    }

    fn validate(&self, batches: &mut dyn Iterator<Item = Batch>) -> Result<Figures, TrainError> {
        let model = self.model.valid();
        let mut figures = Figures::default();
        for batch in batches {
            let (loss, correct, windows) = self.loss(&model, batch, false)?;
            let loss: f32 = loss.into_scalar();
            figures.add(Figures {
                loss_sum: f64::from(loss) * windows as f64,
                correct,
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
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;
    use crate::train::models;
    use crate::train::objective::{Optimizer, OptimizerConfig};

    fn spec() -> ModelSpec {
        ModelSpec {
            num_classes: 3,
            rows: 8,
            window_len: 64,
            dropout: 0.0,
            width: 0.25,
            representation: Default::default(),
            options: Default::default(),
        }
    }

    fn batch(device: &Device) -> Batch {
        device.seed(7);
        Batch {
            inputs: Tensor::<3>::random([6, 8, 64], Distribution::Normal(0.0, 1.0), device),
            targets: Tensor::from_data([0i64, 1, 2, 0, 1, 2], device),
            snr_db: Tensor::zeros([6], device),
            snr_estimate_db: None,
            angles_deg: Some(Tensor::<2>::random(
                [6, 2],
                Distribution::Uniform(-70.0, 70.0),
                device,
            )),
            views: Vec::new(),
            domains: Vec::new(),
        }
    }

    /// Every float tensor of `m`, flattened.
    fn values<M: Module>(m: &M) -> Vec<f32> {
        struct Values(Vec<f32>);
        impl burn::module::ModuleVisitor for Values {
            fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
                self.0
                    .extend(param.val().into_data().try_into_vec::<f32>().unwrap());
            }
        }
        let mut v = Values(Vec::new());
        m.visit(&mut v);
        v.0
    }

    /// A frozen encoder stays as it is (weights and batch-norm statistics) while the class
    /// head and both layers of the angle head train.
    #[test]
    fn a_frozen_encoder_stays_while_the_two_layer_angle_head_trains() {
        let device = Device::flex().autodiff();
        let settings: MultitaskSettings = serde_json::from_str(
            r#"{"angle_hidden": 8, "freeze_encoder": true, "angle_weight": 0.1}"#,
        )
        .unwrap();
        let encoder = models::build("resnet1d", &spec(), &device).unwrap();
        let model = MultitaskModel::new(encoder, &spec(), &settings, &device);
        assert_eq!(model.angles_hidden.as_ref().unwrap().weight.dims(), [24, 8]);
        assert_eq!(model.angles.as_ref().unwrap().weight.dims(), [8, 2]);
        let optim = OptimizerConfig {
            optimizer: Optimizer::Adam,
            weight_decay: 0.0,
        };
        let mut objective = Multitask::new(model, optim.init(), settings);
        let before = objective.model.clone();
        for step in 0..2 {
            let at = StepAt {
                lr: 0.01,
                step,
                total_steps: 2,
            };
            objective.step(batch(&device), at).unwrap();
        }
        let after = &objective.model;
        // The encoder computes what it did (evaluation mode: weights and running statistics).
        let x = Tensor::<3>::random([2, 8, 64], Distribution::Normal(0.0, 1.0), &Device::flex());
        let embedding = |m: &MultitaskModel| {
            let e = m.encoder.valid().embedding(x.clone());
            e.into_data().try_into_vec::<f32>().unwrap()
        };
        assert!(
            embedding(&before) == embedding(after),
            "the frozen encoder changed"
        );
        assert!(values(&before.angles_hidden) != values(&after.angles_hidden));
        assert!(values(&before.angles) != values(&after.angles));
        assert!(
            values(&before.encoder) != values(&after.encoder),
            "the class head did not train"
        );
    }

    #[test]
    fn settings_are_checked_by_name() {
        let bad: MultitaskSettings =
            serde_json::from_str(r#"{"angles": false, "snr_input": "true", "angle_hidden": 8}"#)
                .unwrap();
        assert!(
            bad.check()
                .unwrap_err()
                .to_string()
                .contains("angle_hidden")
        );
        let bad: MultitaskSettings = serde_json::from_str(r#"{"encoder_lr_scale": -1}"#).unwrap();
        assert!(
            bad.check()
                .unwrap_err()
                .to_string()
                .contains("encoder_lr_scale")
        );
        assert!(serde_json::from_str::<MultitaskSettings>(r#"{"angle_hiden": 8}"#).is_err());
    }
}
