//! LARS (You, Gitman & Ginsburg 2017): SGD with momentum whose step for each weight tensor is
//! scaled by a layer-wise trust ratio, the large-batch optimiser MoCo v3 pretrains ResNets with.
//!
//! For each parameter tensor `p` with gradient `g`, as MoCo v3's reference implementation does
//! it (`moco-v3/moco/optimizer.py`):
//!
//! ```text
//! tensors of rank ≥ 2 (weights):      g ← g + wd·p
//!                                     g ← g · η‖p‖/‖g‖      (1 when either norm is 0)
//! tensors of rank 1 (biases, norms):  g unchanged           (no decay, no adaptation)
//! v ← μ·v + g ;  p ← p − lr·v
//! ```
//!
//! `η` is the trust coefficient (0.001 in MoCo v3), `μ` the momentum (0.9), `wd` the weight
//! decay. burn has no LARS; this is a [`burn::optim::Optimizer`] whose per-tensor step knows the
//! tensor's rank, wrapped in a [`ModuleOptimizer`] like burn's own, so checkpoints hold its
//! momentum like SGD's.

use burn::optim::momentum::{Momentum, MomentumConfig};
use burn::optim::{LearningRate, ModuleOptimizer, Optimizer, SgdState};
use burn::tensor::{Device, FloatDType, Tensor};

/// The LARS optimiser (see the module documentation).
#[derive(Clone)]
pub struct Lars {
    momentum: Momentum,
    weight_decay: f64,
    trust_coefficient: f64,
}

impl Lars {
    /// LARS with momentum `momentum`, weight decay `weight_decay` and trust coefficient `eta`.
    pub fn new(momentum: f64, weight_decay: f64, trust_coefficient: f64) -> Self {
        Self {
            momentum: Momentum::new(&MomentumConfig {
                momentum,
                dampening: 0.0,
                nesterov: false,
            }),
            weight_decay,
            trust_coefficient,
        }
    }

    /// A fresh optimiser state for a module.
    pub fn init(self) -> ModuleOptimizer {
        ModuleOptimizer::from(self)
    }
}

fn l2_norm<const D: usize>(tensor: Tensor<D>) -> Tensor<1> {
    tensor.square().sum().sqrt()
}

impl Optimizer for Lars {
    type State<const D: usize> = SgdState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        mut grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        if D >= 2 {
            if self.weight_decay != 0.0 {
                grad = grad + tensor.clone().mul_scalar(self.weight_decay);
            }
            let param_norm = l2_norm(tensor.clone());
            let update_norm = l2_norm(grad.clone());
            let valid = param_norm
                .clone()
                .greater_scalar(0.0)
                .bool_and(update_norm.clone().greater_scalar(0.0));
            let floor = FloatDType::F32.finfo().min_positive;
            let ratio = param_norm
                .div(update_norm.clamp_min(floor))
                .mul_scalar(self.trust_coefficient);
            let trust = ratio.ones_like().mask_where(valid, ratio);
            grad = grad.mul(trust.unsqueeze());
        }
        let velocity = state.and_then(|s| s.momentum);
        let (update, velocity) = self.momentum.transform(grad, velocity);
        (
            tensor - update.mul_scalar(lr),
            Some(SgdState::new(Some(velocity))),
        )
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &Device) -> Self::State<D> {
        state.momentum = state.momentum.map(|m| m.to_device(device));
        state
    }
}

#[cfg(test)]
mod tests {
    use burn::module::Module;
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::GradientsParams;
    use burn::tensor::{Tensor, TensorData};

    use super::*;

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    /// One step by hand: the weight's step is its gradient (with decay) scaled to η‖w‖/‖g‖,
    /// the bias's is its raw gradient; a second step adds the momentum.
    #[test]
    fn steps_match_hand_computed_values() {
        let device = Device::flex().autodiff();
        let mut layer: Linear = LinearConfig::new(2, 1).init(&device);
        layer.weight = layer.weight.map(|_| {
            Tensor::<2>::from_data(TensorData::new(vec![3.0f32, 4.0], [2, 1]), &device)
                .require_grad()
        });
        let bias = layer.bias.as_ref().map(|b| values(b.val())).unwrap();
        let x = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 2.0], [1, 2]), &device);
        let (lr, mu, wd, eta) = (0.5, 0.9, 0.1, 0.001);
        let mut optim = Lars::new(mu, wd, eta).init();

        // loss = w·x + b: ∂/∂w = x = (1, 2), ∂/∂b = 1.
        let step = |layer: Linear, optim: &mut ModuleOptimizer| {
            let loss = layer.forward(x.clone()).sum();
            let grads = GradientsParams::from_grads(loss.backward(), &layer);
            optim.step(lr, layer, grads)
        };
        let layer = step(layer, &mut optim);
        let w0 = [3.0f64, 4.0];
        let g: Vec<f64> = [1.0, 2.0].iter().zip(w0).map(|(g, w)| g + wd * w).collect();
        let g_norm = (g[0] * g[0] + g[1] * g[1]).sqrt();
        let scale = eta * 5.0 / g_norm;
        let v1: Vec<f64> = g.iter().map(|g| g * scale).collect();
        let w1: Vec<f64> = w0.iter().zip(&v1).map(|(w, v)| w - lr * v).collect();
        let got = values(layer.weight.val());
        for (a, b) in got.iter().zip(&w1) {
            assert!(
                (f64::from(*a) - b).abs() < 1e-6,
                "weight {got:?}, expected {w1:?}"
            );
        }
        let b1 = values(layer.bias.as_ref().unwrap().val())[0];
        assert!((f64::from(b1) - (f64::from(bias[0]) - lr)).abs() < 1e-6);

        // Second step: v ← μ v + g'.
        let layer = step(layer, &mut optim);
        let g: Vec<f64> = [1.0, 2.0]
            .iter()
            .zip(&w1)
            .map(|(g, w)| g + wd * w)
            .collect();
        let g_norm = (g[0] * g[0] + g[1] * g[1]).sqrt();
        let w_norm = (w1[0] * w1[0] + w1[1] * w1[1]).sqrt();
        let scale = eta * w_norm / g_norm;
        let w2: Vec<f64> = (0..2)
            .map(|i| w1[i] - lr * (mu * v1[i] + g[i] * scale))
            .collect();
        let got = values(layer.weight.val());
        for (a, b) in got.iter().zip(&w2) {
            assert!(
                (f64::from(*a) - b).abs() < 1e-6,
                "weight {got:?}, expected {w2:?}"
            );
        }
        let b2 = values(layer.bias.as_ref().unwrap().val())[0];
        let expected = f64::from(bias[0]) - lr - lr * (mu * 1.0 + 1.0);
        assert!(
            (f64::from(b2) - expected).abs() < 1e-6,
            "bias {b2}, expected {expected}"
        );
        // The state saves and loads like SGD's.
        assert!(!optim.to_record().is_empty());
        let _ = layer.num_params();
    }
}
