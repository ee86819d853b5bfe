//! Supervised multi-task training: the window's class and, beside it, its angle of arrival,
//! optionally with the window's SNR as a second input — the shape of the seed models that
//! regress azimuth/elevation beside the class (MoCo's multi-task head) or condition on an SNR
//! estimate (CAIC-Net).
//!
//! ```text
//! x ─ architecture embedding e ─┬─ architecture head ─ + snr head(snr_db / 10) ─▶ logits
//!                               └─ angle head (Linear E → 2) ───────────────────▶ azimuth, elevation (°)
//! loss = class loss(logits) + angle_weight · L1(angles)      (azimuth error wrapped to ±180°)
//! ```
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
use crate::train::models::{Model, ModelSpec, onnx_layers};

/// Which SNR a model with an SNR input is trained on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnrSource {
    /// The dataset's true SNR (`snr.npy`).
    True,
    /// The daemon's estimate from the raw window, as served.
    Estimate,
}

/// The multi-task model: an architecture, an optional angle head on its embedding and an
/// optional SNR term on its logits.
#[derive(Module, Debug)]
pub struct MultitaskModel {
    pub encoder: Model,
    /// Embedding → (azimuth, elevation) in degrees.
    pub angles: Option<Linear>,
    /// `snr_db / 10` → a bias per class.
    pub snr: Option<Linear>,
}

impl MultitaskModel {
    /// Heads for `encoder`, an architecture built for `spec` (its embedding width measured on
    /// one window).
    pub fn new(encoder: Model, spec: &ModelSpec, angles: bool, snr: bool, device: &Device) -> Self {
        let probe = Tensor::<3>::zeros([1, spec.rows, spec.window_len], &Device::flex());
        let width = encoder.valid().embedding(probe).dims()[1];
        Self {
            encoder,
            angles: angles.then(|| LinearConfig::new(width, 2).init(device)),
            snr: snr.then(|| LinearConfig::new(1, spec.num_classes).init(device)),
        }
    }

    /// Logits `[B, K]` and, with an angle head, angles `[B, 2]` (degrees).
    pub fn forward(
        &self,
        x: Tensor<3>,
        snr_db: Option<Tensor<1>>,
    ) -> (Tensor<2>, Option<Tensor<2>>) {
        let e = self.encoder.embedding(x);
        let angles = self.angles.as_ref().map(|h| h.forward(e.clone()));
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
                let a = ops::gemm(g, "angles", &e, &onnx_layers::linear(head, "angles")?)?;
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
    loss: ClassLoss,
    angle_weight: f64,
    snr_input: Option<SnrSource>,
}

impl Multitask {
    pub fn new(
        model: MultitaskModel,
        optim: ModuleOptimizer,
        loss: ClassLoss,
        angle_weight: f64,
        snr_input: Option<SnrSource>,
    ) -> Self {
        Self {
            model,
            optim,
            loss,
            angle_weight,
            snr_input,
        }
    }

    /// The batch's SNR as this model is fed it.
    fn snr(&self, batch: &Batch) -> Result<Option<Tensor<1>>, TrainError> {
        match self.snr_input {
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

    /// The loss and the figures of one batch through `model`.
    fn loss(
        &self,
        model: &MultitaskModel,
        batch: Batch,
    ) -> Result<(Tensor<1>, usize, usize), TrainError> {
        let windows = batch.len();
        let snr = self.snr(&batch)?;
        let (logits, angles) = model.forward(batch.inputs, snr);
        let mut loss = self.loss.loss(logits.clone(), batch.targets.clone())?;
        if let Some(pred) = angles {
            let target = batch.angles_deg.ok_or_else(|| {
                TrainError::param(
                    "objective",
                    "regresses angles, but the dataset has no angles.npy (generate an AoA \
                     recipe such as aoa4, or set \"angles\": false)",
                )
            })?;
            loss = loss + losses::angle_l1_deg(pred, target).mul_scalar(self.angle_weight);
        }
        Ok((loss, hits(logits, batch.targets), windows))
    }
}

impl Objective for Multitask {
    fn step(&mut self, batch: Batch, at: StepAt) -> Result<Figures, TrainError> {
        let lr = at.lr;
        let (loss, correct, windows) = self.loss(&self.model, batch)?;
        let grads = GradientsParams::from_grads(loss.backward(), &self.model);
        self.model = self.optim.step(lr, self.model.clone(), grads);
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
            let (loss, correct, windows) = self.loss(&model, batch)?;
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
