//! Supervised multi-task training: the window's class and, beside it, its angle of arrival,
//! optionally with the window's SNR as a second input — the shape of the seed models that
//! regress azimuth/elevation beside the class (MoCo's multi-task head) or condition on an SNR
//! estimate (CAIC-Net).
//!
//! ```text
//! x ─ architecture embedding e ─┬─ architecture head ─ + snr head(snr_db / 10) ─▶ logits
//!                               └─ angle head ──────────────────────────────────▶ azimuth, elevation (°)
//!                                  Linear E → 2, or with angle_hidden H: Linear E → H ─ ReLU ─ Linear H → 2
//!                               └─ projection (training only, with cross_snr_weight > 0):
//!                                  Linear E → E ─ ReLU ─ Linear E → 64 ─▶ z
//! loss = class loss(logits) + angle_weight · L1(angles)      (azimuth error wrapped to ±180°)
//!        + cross_snr_weight · InfoNCE(z; positives: same class at another SNR, negatives: the
//!          other classes in the batch; temperature cross_snr_temperature)
//! ```
//!
//! The cross-SNR term is CAIC-Net's CSCL ([`losses::PairMasks::cross_snr`] with
//! [`losses::contrastive_masked`]): two windows are "at the same SNR" when the dataset's SNR
//! (`snr_db`, whatever `snr_input` feeds) rounds to the same dB. The paper's λ is 0.1; its
//! temperature was lost, 0.1 is this project's default (recorded with the objective). With the
//! focal loss this is the paper's loss: `"loss": {"name": "focal", "gamma": 2},
//! "cross_snr_weight": 0.1`; `--sampling balanced` puts each class at several SNRs in a batch.
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
//! (a minimal conditioning) — unless the architecture reads the SNR itself
//! ([`crate::train::models::Architecture::reads_snr`], e.g. CAIC-Net's routed cross-attention):
//! then the SNR goes to the architecture's embedding *instead of* the bias (one way in, so the
//! ablations compare like with like), and the graph's `snr_db` input feeds it; `snr_input` says
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
    /// Weight λ of the cross-SNR contrastive term (0: none; CAIC-Net: 0.1).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cross_snr_weight: f64,
    /// Temperature of the cross-SNR contrastive term.
    #[serde(default = "default_cross_snr_temperature")]
    pub cross_snr_temperature: f64,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

/// The cross-SNR term's temperature: the paper's value was lost; 0.1 is the usual SupCon one.
fn default_cross_snr_temperature() -> f64 {
    0.1
}

/// Width of the projection the cross-SNR term compares.
const PROJECTION_WIDTH: usize = 64;

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
        if !(self.cross_snr_weight.is_finite() && self.cross_snr_weight >= 0.0) {
            return Err(TrainError::param(
                "objective",
                format!(
                    "cross_snr_weight is {}; expected a finite weight ≥ 0",
                    self.cross_snr_weight
                ),
            ));
        }
        losses::check_temperature(self.cross_snr_temperature)?;
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
    /// The cross-SNR term's projection, embedding → embedding (ReLU) → 64; training only.
    pub projection_hidden: Option<Linear>,
    pub projection: Option<Linear>,
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
        let snr_bias = settings.snr_input.is_some() && !encoder.reads_snr();
        let contrast = settings.cross_snr_weight > 0.0;
        Self {
            projection_hidden: contrast.then(|| LinearConfig::new(width, width).init(device)),
            projection: contrast.then(|| LinearConfig::new(width, PROJECTION_WIDTH).init(device)),
            encoder,
            angles: settings
                .angles
                .then(|| LinearConfig::new(into_angles, 2).init(device)),
            snr: snr_bias.then(|| LinearConfig::new(1, spec.num_classes).init(device)),
            angles_hidden,
        }
    }

    /// Logits `[B, K]` and, with an angle head, angles `[B, 2]` (degrees).
    pub fn forward(
        &self,
        x: Tensor<3>,
        snr_db: Option<Tensor<1>>,
    ) -> (Tensor<2>, Option<Tensor<2>>) {
        let e = self.encoder.embedding_with_snr(x, snr_db.clone());
        self.heads(e, snr_db)
    }

    /// The cross-SNR projection of the embedding `e` `[B, E]`, `[B, 64]`, when there is one.
    fn project(&self, e: Tensor<2>) -> Option<Tensor<2>> {
        let (hidden, out) = (self.projection_hidden.as_ref()?, self.projection.as_ref()?);
        Some(out.forward(burn::tensor::activation::relu(hidden.forward(e))))
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
        base.snr_input = model.snr.is_some() || model.encoder.reads_snr();
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
            let e = m.encoder.embedding_with_snr_to_onnx(g, x, snr)?;
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
        for layer in [
            &model.angles,
            &model.snr,
            &model.angles_hidden,
            &model.projection_hidden,
            &model.projection,
        ]
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
        let e = match (&self.frozen, training) {
            (Some(encoder), true) => {
                let snr_inner = snr.clone().map(|s| s.inner());
                Tensor::from_inner(encoder.embedding_with_snr(batch.inputs.inner(), snr_inner))
            }
            _ => model.encoder.embedding_with_snr(batch.inputs, snr.clone()),
        }; // [B, E]
        let z = model.project(e.clone());
        let (logits, angles) = model.heads(e, snr);
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
        if let Some(z) = z {
            let snr_keys = batch.snr_db.round().int();
            let masks = losses::PairMasks::cross_snr(batch.targets.clone(), snr_keys);
            let cscl = losses::contrastive_masked(z, masks, self.settings.cross_snr_temperature);
            loss = loss + cscl.mul_scalar(self.settings.cross_snr_weight);
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

    /// The loss with `cross_snr_weight` is the class loss plus λ times the masked contrastive
    /// loss of the projected embeddings under the cross-SNR masks (SNRs grouped by the dB they
    /// round to), and a caic encoder is fed the SNR in place of the per-class bias. Tolerance
    /// 1e-5 (relative).
    #[test]
    fn the_cross_snr_term_is_lambda_times_the_masked_contrastive_loss_of_the_projection() {
        let device = Device::flex();
        let settings: MultitaskSettings = serde_json::from_str(
            r#"{"angles": false, "snr_input": "true", "cross_snr_weight": 0.1,
                "cross_snr_temperature": 0.2}"#,
        )
        .unwrap();
        settings.check().unwrap();
        let spec = ModelSpec { rows: 2, ..spec() };
        let encoder = models::build("caic", &spec, &device).unwrap();
        let model = MultitaskModel::new(encoder, &spec, &settings, &device);
        assert!(model.snr.is_none(), "caic reads the SNR: no per-class bias");
        assert_eq!(model.projection.as_ref().unwrap().weight.dims()[1], 64);
        let optim = OptimizerConfig {
            optimizer: Optimizer::Adam,
            weight_decay: 0.0,
        };
        let objective = Multitask::new(model, optim.init(), settings);
        let mut b = batch(&device);
        b.inputs = Tensor::<3>::random([6, 2, 64], Distribution::Normal(0.0, 1.0), &device);
        b.snr_db = Tensor::from_data([-4.2f32, -3.8, 10.0, 10.1, -4.0, 6.0], &device);
        let m = &objective.model;
        let e = m
            .encoder
            .embedding_with_snr(b.inputs.clone(), Some(b.snr_db.clone()));
        let class = ClassLoss::CrossEntropy
            .loss(m.encoder.classify(e.clone()), b.targets.clone())
            .unwrap();
        let keys = Tensor::<1, burn::tensor::Int>::from_data([-4i64, -4, 10, 10, -4, 6], &device);
        let masks = losses::PairMasks::cross_snr(b.targets.clone(), keys);
        let cscl = losses::contrastive_masked(m.project(e).unwrap(), masks, 0.2);
        let want: f32 = (class + cscl.mul_scalar(0.1)).into_scalar();
        let (got, _, _) = objective.loss(m, b, false).unwrap();
        let got: f32 = got.into_scalar();
        assert!((got - want).abs() <= 1e-5 * want.abs(), "{got} vs {want}");
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
        let bad: MultitaskSettings = serde_json::from_str(r#"{"cross_snr_weight": -0.1}"#).unwrap();
        assert!(
            bad.check()
                .unwrap_err()
                .to_string()
                .contains("cross_snr_weight")
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
