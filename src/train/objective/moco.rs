//! MoCo v3 self-supervised pretraining (Chen, Xie & He 2021), as the multi-task radio paper
//! (`moco-ssl-multitask-aoa-amc`) pretrains its encoder on unlabelled array windows: no label is
//! read; what is learnt is an encoder whose embedding downstream heads read (`--encoder-from`,
//! `probe`).
//!
//! ```text
//! window ─ augment ─▶ view 1 ─ encoder f ─ projector g ─ predictor h ─▶ q₁ ─┐
//!        └ augment ─▶ view 2 ─ encoder f ─ projector g ─ predictor h ─▶ q₂ ─┤ L = ctr(q₁, k₂) + ctr(q₂, k₁)
//!                     view 1 ─ momentum f_m ─ momentum g_m ───────────▶ k₁ ─┤ ctr(q, k) = 2τ · CE(q̂k̂ᵀ/τ, arange B)
//!                     view 2 ─ momentum f_m ─ momentum g_m ───────────▶ k₂ ─┘ (keys: no gradient)
//! each step: (f_m, g_m) ← m·(f_m, g_m) + (1 − m)·(f, g),  m = 1 − (1 − m₀)(1 + cos(π t/T))/2
//!            τ = τ_min + (τ_max − τ_min)(1 + cos(2π c t/T))/2
//! ```
//!
//! The two views are the batch's view 0 and view 1, each window augmented by the run's
//! `--augment` pipeline with its own key (so the pipeline is the ablated choice of augmentation
//! pair). The negatives are the other windows of the batch (MoCo v3 has no queue).
//!
//! Choices (recorded with the objective in `config.json` and on any card made from the run):
//! - heads as MoCo v3's ResNet variant: projector `E → 1024 → 256` with batch norm, the last
//!   without affine parameters; predictor `256 → 1024 → 256` ([`ProjectionMlp`]);
//! - the momentum `m₀ = 0.996` rises to 1 on a cosine over the whole run;
//! - the temperature moves between `min` and `max` on a cosine of `cycles` periods over the run
//!   (Kukleva et al. 2023, the paper's "dynamic τ between 0.1 and 0.2"; its period is not given:
//!   one period by default), starting at `max`; `min = max` is a fixed τ;
//! - momentum branch in training mode (batch statistics), as MoCo v3's key encoder; its running
//!   statistics are blended with the rest of its tensors.
//!
//! Validation: the same loss on the validation windows, their two views drawn with the keys of
//! epoch 0 (the same views every epoch) and the temperature fixed at `min`, so epochs compare;
//! "accuracy" is instance discrimination — the share of view-1 queries whose most similar key in
//! the batch is their own view 2.
//!
//! What the run exports is its online encoder (`best.bpk` holds it alone, as a classifier run's
//! would): heads come after, from `train --encoder-from RUN` or `probe --encoder RUN`.
//! Checkpoint (`checkpoint/`): `online.bpk` (encoder, projector, predictor), `momentum.bpk`,
//! `optim.bpk`.

use std::path::Path;

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Int, Tensor};
use serde::{Deserialize, Serialize};

use super::{Figures, Objective, StepAt, load_model, save_model};
use crate::train::TrainError;
use crate::train::data::Batch;
use crate::train::losses::{self, cosine_momentum, ema_update, moco_v3_loss};
use crate::train::models::{self, Model, ModelSpec};
use crate::train::projector::ProjectionMlp;

/// The contrastive temperature's schedule (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemperatureSchedule {
    pub min: f64,
    pub max: f64,
    /// Cosine periods over the run.
    #[serde(default = "one_cycle")]
    pub cycles: f64,
}

fn one_cycle() -> f64 {
    1.0
}

impl Default for TemperatureSchedule {
    fn default() -> Self {
        Self {
            min: 0.1,
            max: 0.2,
            cycles: 1.0,
        }
    }
}

impl TemperatureSchedule {
    /// τ after `progress` ∈ [0, 1] of the run.
    pub fn at(&self, progress: f64) -> f64 {
        let phase = 2.0 * std::f64::consts::PI * self.cycles * progress;
        self.min + (self.max - self.min) * (1.0 + phase.cos()) / 2.0
    }

    fn check(&self) -> Result<(), TrainError> {
        losses::check_temperature(self.min)?;
        losses::check_temperature(self.max)?;
        if self.min > self.max || !(self.cycles.is_finite() && self.cycles >= 0.0) {
            return Err(TrainError::param(
                "objective",
                format!(
                    "temperature {{min {}, max {}, cycles {}}}: expected min ≤ max and cycles ≥ 0",
                    self.min, self.max, self.cycles
                ),
            ));
        }
        Ok(())
    }
}

/// MoCo v3's settings (`{"kind": "moco_v3", …}`), every field with the default above.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MocoV3Settings {
    #[serde(default = "default_hidden")]
    pub projector_hidden: usize,
    /// The width of the space the loss compares in.
    #[serde(default = "default_dim")]
    pub dim: usize,
    #[serde(default = "default_hidden")]
    pub predictor_hidden: usize,
    /// The momentum at the start, `m₀`.
    #[serde(default = "default_momentum")]
    pub momentum: f64,
    #[serde(default)]
    pub temperature: TemperatureSchedule,
}

fn default_hidden() -> usize {
    1024
}

fn default_dim() -> usize {
    256
}

fn default_momentum() -> f64 {
    0.996
}

impl Default for MocoV3Settings {
    fn default() -> Self {
        Self {
            projector_hidden: default_hidden(),
            dim: default_dim(),
            predictor_hidden: default_hidden(),
            momentum: default_momentum(),
            temperature: TemperatureSchedule::default(),
        }
    }
}

impl MocoV3Settings {
    /// Checks the settings; errors name the setting.
    pub fn check(&self) -> Result<(), TrainError> {
        if self.projector_hidden == 0 || self.dim == 0 || self.predictor_hidden == 0 {
            return Err(TrainError::param(
                "objective",
                "moco_v3 projector_hidden, dim and predictor_hidden must be above 0",
            ));
        }
        if !(0.0..=1.0).contains(&self.momentum) {
            return Err(TrainError::param(
                "objective",
                format!(
                    "moco_v3 momentum is {}; expected a value in [0, 1]",
                    self.momentum
                ),
            ));
        }
        self.temperature.check()
    }
}

/// The online branch: encoder, projector, predictor.
#[derive(Module, Debug)]
pub struct Online {
    pub encoder: Model,
    pub projector: ProjectionMlp,
    pub predictor: ProjectionMlp,
}

/// The momentum branch: an encoder and a projector that follow the online ones.
#[derive(Module, Debug)]
pub struct Momentum {
    pub encoder: Model,
    pub projector: ProjectionMlp,
}

impl Online {
    /// The online branch for `encoder` (an architecture built for `spec`).
    pub fn new(
        encoder: Model,
        spec: &ModelSpec,
        settings: &MocoV3Settings,
        device: &burn::tensor::Device,
    ) -> Result<Self, TrainError> {
        let width = models::embedding_width(&encoder, spec);
        Ok(Self {
            encoder,
            projector: ProjectionMlp::new(
                &[width, settings.projector_hidden, settings.dim],
                true,
                device,
            )?,
            predictor: ProjectionMlp::new(
                &[settings.dim, settings.predictor_hidden, settings.dim],
                false,
                device,
            )?,
        })
    }

    fn query(&self, x: Tensor<3>) -> Tensor<2> {
        self.predictor
            .forward(self.projector.forward(self.encoder.embedding(x)))
    }

    /// A momentum branch equal to this one's encoder and projector, with parameters of its own
    /// that no optimiser sees.
    fn momentum_copy(
        &self,
        arch: &str,
        spec: &ModelSpec,
        settings: &MocoV3Settings,
        device: &burn::tensor::Device,
    ) -> Result<Momentum, TrainError> {
        let fresh = Online::new(models::build(arch, spec, device)?, spec, settings, device)?;
        Ok(Momentum {
            encoder: ema_update(fresh.encoder, &self.encoder, 0.0)?,
            projector: ema_update(fresh.projector, &self.projector, 0.0)?,
        }
        .no_grad())
    }
}

impl Momentum {
    fn key(&self, x: Tensor<3>) -> Tensor<2> {
        self.projector.forward(self.encoder.embedding(x)).detach()
    }

    /// Moves toward `online` with momentum `m`.
    fn follow(self, online: &Online, m: f64) -> Result<Self, TrainError> {
        Ok(Momentum {
            encoder: ema_update(self.encoder, &online.encoder, m)?,
            projector: ema_update(self.projector, &online.projector, m)?,
        }
        .no_grad())
    }
}

/// The MoCo v3 objective (see the module documentation).
pub struct MocoV3 {
    online: Online,
    momentum: Momentum,
    optim: ModuleOptimizer,
    settings: MocoV3Settings,
}

impl MocoV3 {
    /// Pretraining of `encoder` (the architecture `arch` built, or warm-started, for `spec`).
    pub fn new(
        encoder: Model,
        arch: &str,
        spec: &ModelSpec,
        settings: MocoV3Settings,
        optim: ModuleOptimizer,
        device: &burn::tensor::Device,
    ) -> Result<Self, TrainError> {
        settings.check()?;
        let online = Online::new(encoder, spec, &settings, device)?;
        let momentum = online.momentum_copy(arch, spec, &settings, device)?;
        Ok(Self {
            online,
            momentum,
            optim,
            settings,
        })
    }

    /// The loss of the two views of `batch` and the number of view-1 queries whose nearest
    /// key is their own.
    fn loss(
        online: &Online,
        momentum: &Momentum,
        batch: Batch,
        temperature: f64,
    ) -> Result<(Tensor<1>, usize, usize), TrainError> {
        let windows = batch.len();
        let Some(v2) = batch.views.into_iter().next() else {
            return Err(TrainError::param(
                "objective",
                "moco_v3 compares two views of each window, but the batch has one",
            ));
        };
        let v1 = batch.inputs;
        let (q1, q2) = (online.query(v1.clone()), online.query(v2.clone()));
        let (k1, k2) = (momentum.key(v1), momentum.key(v2));
        let correct = instance_hits(q1.clone(), k2.clone());
        let loss = moco_v3_loss(q1, q2, k1, k2, temperature);
        Ok((loss, correct, windows))
    }
}

/// Rows of `q` whose most similar row of `k` (cosine) is the one of the same index.
fn instance_hits(q: Tensor<2>, k: Tensor<2>) -> usize {
    let [batch, _] = q.dims();
    let device = q.device();
    let similarity = losses::l2_normalize(q.detach()).matmul(losses::l2_normalize(k).transpose());
    let own = Tensor::<1, Int>::arange(0..batch as i64, &device);
    let hits: i64 = similarity
        .argmax(1)
        .flatten::<1>(0, 1)
        .equal(own)
        .int()
        .sum()
        .into_scalar();
    hits as usize
}

impl Objective for MocoV3 {
    fn step(&mut self, batch: Batch, at: StepAt) -> Result<Figures, TrainError> {
        // As the reference: the momentum branch moves first, then computes this step's keys.
        let m = cosine_momentum(at.step, at.total_steps, self.settings.momentum);
        self.momentum = self.momentum.clone().follow(&self.online, m)?;
        let temperature = self.settings.temperature.at(at.progress());
        let (loss, correct, windows) =
            Self::loss(&self.online, &self.momentum, batch, temperature)?;
        let grads = GradientsParams::from_grads(loss.backward(), &self.online);
        self.online = self.optim.step(at.lr, self.online.clone(), grads);
        let loss: f32 = loss.into_scalar();
        Ok(Figures {
            loss_sum: f64::from(loss) * windows as f64,
            correct,
            windows,
        })
    }

    fn validate(&self, batches: &mut dyn Iterator<Item = Batch>) -> Result<Figures, TrainError> {
        let online = self.online.valid();
        let momentum = self.momentum.valid();
        let mut figures = Figures::default();
        for batch in batches {
            let (loss, correct, windows) =
                Self::loss(&online, &momentum, batch, self.settings.temperature.min)?;
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
        save_model(&self.online.encoder.valid(), path)
    }

    fn save(&self, dir: &Path) -> Result<(), TrainError> {
        save_model(&self.online, &dir.join("online.bpk"))?;
        save_model(&self.momentum, &dir.join("momentum.bpk"))?;
        let path = dir.join("optim.bpk");
        self.optim.save(&path).map_err(|e| TrainError::Record {
            path,
            message: e.to_string(),
        })
    }

    fn load(&mut self, dir: &Path) -> Result<(), TrainError> {
        self.online = load_model(self.online.clone(), &dir.join("online.bpk"))?;
        self.momentum = load_model(self.momentum.clone(), &dir.join("momentum.bpk"))?.no_grad();
        let path = dir.join("optim.bpk");
        self.optim = self
            .optim
            .clone()
            .load(&path)
            .map_err(|e| TrainError::Record {
                path,
                message: e.to_string(),
            })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution};

    use super::*;
    use crate::train::objective::{Optimizer, OptimizerConfig};

    fn spec() -> ModelSpec {
        ModelSpec {
            num_classes: 2,
            rows: 2,
            window_len: 32,
            dropout: 0.0,
            width: 0.25,
            representation: Default::default(),
            options: Default::default(),
        }
    }

    fn settings() -> MocoV3Settings {
        MocoV3Settings {
            projector_hidden: 16,
            dim: 8,
            predictor_hidden: 16,
            ..MocoV3Settings::default()
        }
    }

    fn objective(device: &Device) -> MocoV3 {
        let encoder = models::build("resnet1d", &spec(), device).unwrap();
        let optim = OptimizerConfig {
            optimizer: Optimizer::Lars {
                momentum: 0.9,
                trust_coefficient: 0.001,
            },
            weight_decay: 1e-4,
        };
        MocoV3::new(
            encoder,
            "resnet1d",
            &spec(),
            settings(),
            optim.init(),
            device,
        )
        .unwrap()
    }

    fn batch(device: &Device, seed: u64) -> Batch {
        device.seed(seed);
        let x = Tensor::<3>::random([8, 2, 32], Distribution::Normal(0.0, 1.0), device);
        let noise = Tensor::<3>::random([8, 2, 32], Distribution::Normal(0.0, 0.1), device);
        Batch {
            inputs: x.clone(),
            targets: Tensor::zeros([8], device),
            snr_db: Tensor::zeros([8], device),
            snr_estimate_db: None,
            angles_deg: None,
            views: vec![x + noise],
            domains: Vec::new(),
        }
    }

    fn at(step: u64) -> StepAt {
        StepAt {
            lr: 0.5,
            step,
            total_steps: 10,
        }
    }

    /// Every float tensor of `m` (parameters and running statistics) in visiting order, with
    /// whether it is trained.
    fn tensors<M: Module>(m: &M) -> Vec<(Vec<f32>, bool)> {
        struct Values(Vec<(Vec<f32>, bool)>);
        impl burn::module::ModuleVisitor for Values {
            fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
                let values = param.val().into_data().try_into_vec::<f32>().unwrap();
                self.0.push((values, param.is_require_grad()));
            }
        }
        let mut values = Values(Vec::new());
        m.visit(&mut values);
        values.0
    }

    /// The tensors of `m` that the online branch trains (its first tensors are the encoder's
    /// and the projector's, in the momentum branch's order). Batch-norm running statistics are
    /// left out: burn writes a running statistic's last update only at the next forward pass,
    /// so a checkpoint holds them one step behind.
    fn trained<M: Module>(m: &M, online: &Online) -> Vec<f32> {
        tensors(m)
            .into_iter()
            .zip(tensors(online))
            .filter(|(_, (_, trained))| *trained)
            .flat_map(|((values, _), _)| values)
            .collect()
    }

    #[test]
    fn the_temperature_runs_from_max_through_min_and_back() {
        let t = TemperatureSchedule::default();
        assert!((t.at(0.0) - 0.2).abs() < 1e-12);
        assert!((t.at(0.5) - 0.1).abs() < 1e-12);
        assert!((t.at(1.0) - 0.2).abs() < 1e-12);
        assert!((t.at(0.25) - 0.15).abs() < 1e-12);
        let fixed = TemperatureSchedule {
            min: 0.2,
            max: 0.2,
            cycles: 3.0,
        };
        assert!((fixed.at(0.37) - 0.2).abs() < 1e-12);
        let bad = TemperatureSchedule {
            min: 0.3,
            max: 0.2,
            cycles: 1.0,
        };
        assert!(bad.check().unwrap_err().to_string().contains("min ≤ max"));
    }

    /// Each step first moves the momentum branch `m` of the way toward the online branch as it
    /// stood before the step, with `m` from the cosine schedule; the optimiser moves only the
    /// online branch.
    #[test]
    fn the_momentum_branch_follows_the_online_one_by_the_schedule() {
        let device = Device::flex().autodiff();
        let mut moco = objective(&device);
        // The online branch's tensors that the momentum branch mirrors.
        let mirrored = |o: &Online| {
            let part = Momentum {
                encoder: o.encoder.clone(),
                projector: o.projector.clone(),
            };
            trained(&part, o)
        };
        // Identical at the start.
        assert!(trained(&moco.momentum, &moco.online) == mirrored(&moco.online));
        moco.step(batch(&device, 1), at(0)).unwrap();
        let online = mirrored(&moco.online);
        let target = trained(&moco.momentum, &moco.online);
        assert!(online != target, "the online branch did not move");
        let m = cosine_momentum(3, 10, 0.996);
        moco.step(batch(&device, 2), at(3)).unwrap();
        let after = trained(&moco.momentum, &moco.online);
        assert_eq!(after.len(), target.len());
        let mut worst = 0f32;
        for ((a, t), o) in after.iter().zip(&target).zip(&online) {
            let expected = m as f32 * t + (1.0 - m as f32) * o;
            worst = worst.max((a - expected).abs() / expected.abs().max(1.0));
        }
        assert!(worst < 1e-5, "momentum branch off the formula by {worst}");
    }

    /// A checkpoint holds both branches and the optimiser: a restored objective takes the next
    /// step exactly as the one that wrote it.
    #[test]
    fn a_restored_checkpoint_steps_as_the_original() {
        let device = Device::flex().autodiff();
        let mut moco = objective(&device);
        moco.step(batch(&device, 1), at(0)).unwrap();
        moco.step(batch(&device, 2), at(1)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        moco.save(dir.path()).unwrap();
        let mut restored = objective(&device);
        restored.load(dir.path()).unwrap();
        let a = moco.step(batch(&device, 3), at(2)).unwrap();
        let b = restored.step(batch(&device, 3), at(2)).unwrap();
        assert_eq!(a, b);
        let same = |x: &MocoV3, y: &MocoV3| {
            trained(&x.online, &x.online) == trained(&y.online, &y.online)
                && trained(&x.momentum, &x.online) == trained(&y.momentum, &y.online)
        };
        assert!(
            same(&moco, &restored),
            "the restored objective stepped differently"
        );
        // The exported weights are the encoder alone.
        let best = dir.path().join("best.bpk");
        moco.save_best(&best).unwrap();
        let encoder = models::build("resnet1d", &spec(), &Device::flex()).unwrap();
        let loaded = super::load_model(encoder, &best).unwrap();
        assert!(tensors(&loaded) == tensors(&moco.online.encoder.valid()));
    }

    #[test]
    fn one_view_is_refused_by_name() {
        let device = Device::flex().autodiff();
        let mut moco = objective(&device);
        let mut b = batch(&device, 1);
        b.views.clear();
        let err = moco.step(b, at(0)).unwrap_err().to_string();
        assert!(err.contains("two views"), "{err}");
    }
}
