//! The MLP heads of contrastive pretraining: projectors and predictors that map an encoder's
//! embedding into the space its loss compares, used in training only and never exported.
//!
//! ```text
//! x [B, d0] ─ Linear(no bias) ─ BN ─ ReLU ─ … ─ Linear(no bias) [─ BN(affine = false)] ─▶ [B, dn]
//! ```
//!
//! This is MoCo v3's `_build_mlp` (Chen, Xie & He 2021, ResNet variant): every layer but the
//! last is followed by batch norm and a ReLU; the last may end in a batch norm without scale and
//! shift (`last_bn`, the projector's) — its γ and β are held at 1 and 0 (no gradient, so no
//! optimiser moves them).

use burn::module::Module;
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use super::TrainError;

/// A projector or predictor (see the module documentation).
#[derive(Module, Debug)]
pub struct ProjectionMlp {
    layers: Vec<Linear>,
    /// One after each hidden layer, and one more after the last with `last_bn`.
    norms: Vec<BatchNorm>,
}

impl ProjectionMlp {
    /// `sizes = [d_in, hidden…, d_out]` (at least two widths, all above 0); `last_bn`: end in a
    /// batch norm without affine parameters.
    pub fn new(sizes: &[usize], last_bn: bool, device: &Device) -> Result<Self, TrainError> {
        if sizes.len() < 2 || sizes.contains(&0) {
            return Err(TrainError::param(
                "projector sizes",
                format!(
                    "expected at least an input and an output width, all above 0, got {sizes:?}"
                ),
            ));
        }
        let layers = sizes
            .windows(2)
            .map(|w| LinearConfig::new(w[0], w[1]).with_bias(false).init(device))
            .collect();
        let mut norms: Vec<BatchNorm> = sizes[1..sizes.len() - 1]
            .iter()
            .map(|&n| BatchNormConfig::new(n).init(device))
            .collect();
        if last_bn {
            let mut bn = BatchNormConfig::new(sizes[sizes.len() - 1]).init(device);
            bn.gamma = bn.gamma.set_require_grad(false);
            bn.beta = bn.beta.set_require_grad(false);
            norms.push(bn);
        }
        Ok(Self { layers, norms })
    }

    /// `[B, d_in]` → `[B, d_out]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let last = self.layers.len() - 1;
        let mut h = x;
        for (l, layer) in self.layers.iter().enumerate() {
            h = layer.forward(h);
            if let Some(norm) = self.norms.get(l) {
                h = norm.forward(h);
                if l < last {
                    h = relu(h);
                }
            }
        }
        h
    }

    /// The output width.
    pub fn output_size(&self) -> usize {
        self.layers[self.layers.len() - 1].weight.dims()[1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn the_last_batch_norm_standardises_and_has_nothing_to_train() {
        let device = Device::flex().autodiff();
        let head = ProjectionMlp::new(&[8, 16, 4], true, &device).unwrap();
        assert_eq!(head.output_size(), 4);
        let x = Tensor::<2>::random([64, 8], Distribution::Normal(3.0, 2.0), &device);
        let y = head.forward(x);
        let z = y.clone();
        let mean: Vec<f32> = z.clone().mean_dim(0).into_data().try_to_vec().unwrap();
        let var: Vec<f32> = z.var(0).into_data().try_to_vec().unwrap();
        for (m, v) in mean.iter().zip(&var) {
            assert!(m.abs() < 1e-4, "column means {mean:?}");
            assert!((v - 1.0).abs() < 0.05, "column variances {var:?}");
        }
        // The affine-free norm has nothing to train: a backward gives its γ, β no gradient,
        // while the hidden norm's γ gets one.
        let last = &head.norms[1];
        assert!(!last.gamma.is_require_grad() && !last.beta.is_require_grad());
        let grads = y.sum().backward();
        assert!(last.gamma.grad(&grads).is_none() && last.beta.grad(&grads).is_none());
        assert!(head.norms[0].gamma.grad(&grads).is_some());
        let without = ProjectionMlp::new(&[8, 16, 4], false, &device).unwrap();
        assert_eq!(without.norms.len(), 1);
        assert!(ProjectionMlp::new(&[8], false, &device).is_err());
    }
}
