//! A multi-layer perceptron with LeakyReLU activations, and its gradient with respect to its
//! input written out as a first-order expression.
//!
//! ```text
//! x [B, d0] ─ Linear d0→d1 ─ LeakyReLU(α) ─ … ─ Linear d(n-2)→d(n-1) ─ y [B, d(n-1)]
//! ```
//!
//! `sizes = [d0, d1, …, d(n-1)]`; a LeakyReLU `max(h, α·h)` follows every layer but the last.
//! Used as WGAN-GP critics (SigZSLNet: 128 → 256 → 1, α = 0.2) and as small heads.
//!
//! # The input gradient
//! burn's autodiff is first-order only, so the gradient penalty of WGAN-GP, a function of
//! `∇ₓD(x)`, cannot be differentiated by asking autodiff for `∇ₓD` and then for the gradient of
//! that. [`Mlp::input_gradient`] instead writes `∇ₓ Σ y` out by hand, backpropagating through
//! the layers in the forward pass's own tensors:
//!
//! ```text
//! forward:  a₀ = x,  hₗ = aₗ₋₁·Wₗ + bₗ,  aₗ = LReLU(hₗ)  (l < n-1),  y = h(n-1)
//! backward: g = 1 [B, d(n-1)]
//!           g ← g·Wₗᵀ                       (l = n-1, …, 1; Wₗ is [dₗ₋₁, dₗ], burn's layout)
//!           g ← g ⊙ mₗ₋₁,  mₗ = 1[hₗ > 0] + α·1[hₗ ≤ 0]
//!           ∇ₓ Σ y = g·W₁ᵀ                   [B, d0]
//! ```
//!
//! Row `b` of the result is `∂(Σⱼ y_bj)/∂x_b` (rows do not interact), which for a scalar-output
//! critic is `∇ₓD(x_b)`. The masks `mₗ` are detached constants: LReLU′ is piecewise constant, so
//! its derivative (the second derivative of the network) is 0 almost everywhere and the
//! expression's own gradient, which burn's autodiff computes, is the exact gradient of anything
//! built from `∇ₓD` with respect to the weights.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig, LinearLayout};
use burn::tensor::activation::leaky_relu;
use burn::tensor::{Device, Tensor};

use super::TrainError;

/// Configuration of an [`Mlp`].
#[derive(Config, Debug)]
pub struct MlpConfig {
    /// Widths from the input to the output: `[d_in, hidden…, d_out]` (at least two entries,
    /// all above 0).
    pub sizes: Vec<usize>,
    /// Slope α of the LeakyReLU for negative inputs (0 makes it a ReLU).
    #[config(default = 0.2)]
    pub leaky_slope: f64,
    /// Whether the layers add a bias.
    #[config(default = true)]
    pub bias: bool,
}

/// A multi-layer perceptron (see the module documentation).
#[derive(Module, Debug)]
pub struct Mlp {
    layers: Vec<Linear>,
    leaky_slope: f64,
}

impl MlpConfig {
    /// Builds the perceptron with freshly initialised weights (burn's `Linear` default) on
    /// `device`. Refuses fewer than two sizes, a zero width or a slope that is not finite.
    pub fn init(&self, device: &Device) -> Result<Mlp, TrainError> {
        if self.sizes.len() < 2 {
            return Err(TrainError::param(
                "sizes",
                format!(
                    "needs at least an input and an output width, got {:?}",
                    self.sizes
                ),
            ));
        }
        if self.sizes.contains(&0) {
            return Err(TrainError::param(
                "sizes",
                format!("widths must be above 0, got {:?}", self.sizes),
            ));
        }
        if !self.leaky_slope.is_finite() {
            return Err(TrainError::param(
                "leaky_slope",
                format!("must be finite, got {}", self.leaky_slope),
            ));
        }
        let layers = self
            .sizes
            .windows(2)
            .map(|w| {
                LinearConfig::new(w[0], w[1])
                    .with_bias(self.bias)
                    .with_layout(LinearLayout::Row)
                    .init(device)
            })
            .collect();
        Ok(Mlp {
            layers,
            leaky_slope: self.leaky_slope,
        })
    }
}

impl Mlp {
    /// The output for a batch.
    ///
    /// # Shapes
    /// - `x`: `[batch, d_in]`
    /// - returns: `[batch, d_out]`
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let last = self.layers.len() - 1;
        let mut a = x;
        for (l, layer) in self.layers.iter().enumerate() {
            a = layer.forward(a);
            if l < last {
                a = leaky_relu(a, self.leaky_slope);
            }
        }
        a
    }

    /// `∂(Σ output)/∂x` row by row, as an explicit first-order expression of the weights (see
    /// the module documentation): for a scalar-output network, row `b` is `∇ₓD(x_b)`.
    ///
    /// # Shapes
    /// - `x`: `[batch, d_in]`
    /// - returns: `[batch, d_in]`
    pub fn input_gradient(&self, x: Tensor<2>) -> Tensor<2> {
        let last = self.layers.len() - 1;
        // Slope masks of every hidden layer, from the forward pass's pre-activations.
        let mut masks = Vec::with_capacity(last);
        let mut a = x;
        for layer in &self.layers[..last] {
            let h = layer.forward(a);
            let positive = h.clone().detach().greater_elem(0.0).float();
            masks.push(positive * (1.0 - self.leaky_slope) + self.leaky_slope);
            a = leaky_relu(h, self.leaky_slope);
        }
        let [batch, _] = a.dims();
        let out = self.layers[last].weight.val().dims()[1];
        let mut g = Tensor::<2>::ones([batch, out], &a.device());
        for l in (0..=last).rev() {
            g = g.matmul(self.layers[l].weight.val().transpose());
            if l > 0 {
                g = g * masks[l - 1].clone();
            }
        }
        g
    }

    /// Input width `d_in`.
    pub fn input_size(&self) -> usize {
        self.layers[0].weight.val().dims()[0]
    }

    /// Output width `d_out`.
    pub fn output_size(&self) -> usize {
        self.layers[self.layers.len() - 1].weight.val().dims()[1]
    }

    /// Slope α of the LeakyReLU.
    pub fn leaky_slope(&self) -> f64 {
        self.leaky_slope
    }

    /// The layers, input first (burn `Linear`s, weights `[d_in, d_out]`).
    pub fn layers(&self) -> &[Linear] {
        &self.layers
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use burn::module::{ModuleMapper, Param};
    use burn::tensor::TensorData;

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    /// Sets every parameter to fixed pseudo-random values in [-1, 1) drawn from `seed`, so a
    /// test does not depend on the device's shared random state.
    pub(crate) struct FixedWeights(pub u64);

    impl ModuleMapper for FixedWeights {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            param.map(|t| {
                let shape = t.shape();
                let values: Vec<f32> = (0..shape.num_elements())
                    .map(|_| {
                        self.0 = self
                            .0
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
                    })
                    .collect();
                let require_grad = t.is_require_grad();
                Tensor::from_data(TensorData::new(values, shape), &t.device())
                    .set_require_grad(require_grad)
            })
        }
    }

    fn mlp(sizes: &[usize], slope: f64, seed: u64, device: &Device) -> Mlp {
        MlpConfig::new(sizes.to_vec())
            .with_leaky_slope(slope)
            .init(device)
            .unwrap()
            .map(&mut FixedWeights(seed))
    }

    #[test]
    fn forward_matches_a_hand_computation() {
        let device = Device::flex();
        let net = mlp(&[3, 4, 2], 0.1, 3, &device);
        let x = [[0.5f32, -1.0, 2.0], [-0.3, 0.8, 0.1]];
        let y = values(net.forward(Tensor::from_data(x, &device)));
        let w1 = values(net.layers[0].weight.val());
        let b1 = values(net.layers[0].bias.as_ref().unwrap().val());
        let w2 = values(net.layers[1].weight.val());
        let b2 = values(net.layers[1].bias.as_ref().unwrap().val());
        for (b, row) in x.iter().enumerate() {
            let hidden: Vec<f64> = (0..4)
                .map(|j| {
                    let h = f64::from(b1[j])
                        + (0..3)
                            .map(|i| f64::from(row[i]) * f64::from(w1[i * 4 + j]))
                            .sum::<f64>();
                    if h > 0.0 { h } else { 0.1 * h }
                })
                .collect();
            for k in 0..2 {
                let expected = f64::from(b2[k])
                    + (0..4)
                        .map(|j| hidden[j] * f64::from(w2[j * 2 + k]))
                        .sum::<f64>();
                assert!((f64::from(y[b * 2 + k]) - expected).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn input_gradient_matches_central_differences() {
        let device = Device::flex();
        let net = mlp(&[5, 16, 8, 1], 0.2, 11, &device);
        let (batch, d_in) = (4, 5);
        let x: Vec<f32> = (0..batch * d_in)
            .map(|i| ((i * 37 % 23) as f32 / 23.0 - 0.5) * 3.0)
            .collect();
        let grad = values(net.input_gradient(Tensor::from_data(
            TensorData::new(x.clone(), [batch, d_in]),
            &device,
        )));
        let h = 1e-3f32;
        let value = |x: &[f32]| -> Vec<f32> {
            values(net.forward(Tensor::from_data(
                TensorData::new(x.to_vec(), [batch, d_in]),
                &device,
            )))
        };
        for b in 0..batch {
            for i in 0..d_in {
                let mut up = x.clone();
                up[b * d_in + i] += h;
                let mut down = x.clone();
                down[b * d_in + i] -= h;
                let numeric =
                    (f64::from(value(&up)[b]) - f64::from(value(&down)[b])) / (2.0 * f64::from(h));
                let analytic = f64::from(grad[b * d_in + i]);
                assert!(
                    (numeric - analytic).abs() <= 1e-2 * analytic.abs().max(1e-1),
                    "x[{b},{i}]: analytic {analytic}, central difference {numeric}"
                );
            }
        }
    }

    #[test]
    fn input_gradient_of_a_vector_output_sums_the_outputs() {
        // With ReLU (α = 0) and one hidden layer: ∇ₓ Σ y = Σ_k Σ_j 1[h_j>0]·W1[i,j]·W2[j,k].
        let device = Device::flex();
        let net = mlp(&[2, 3, 2], 0.0, 5, &device);
        let x = [[0.7f32, -0.4]];
        let grad = values(net.input_gradient(Tensor::from_data(x, &device)));
        let w1 = values(net.layers[0].weight.val());
        let b1 = values(net.layers[0].bias.as_ref().unwrap().val());
        let w2 = values(net.layers[1].weight.val());
        for i in 0..2 {
            let mut expected = 0.0f64;
            for j in 0..3 {
                let h = f64::from(b1[j])
                    + f64::from(x[0][0]) * f64::from(w1[j])
                    + f64::from(x[0][1]) * f64::from(w1[3 + j]);
                if h > 0.0 {
                    for k in 0..2 {
                        expected += f64::from(w1[i * 3 + j]) * f64::from(w2[j * 2 + k]);
                    }
                }
            }
            assert!((f64::from(grad[i]) - expected).abs() < 1e-5);
        }
    }

    #[test]
    fn bad_sizes_are_refused() {
        let device = Device::flex();
        assert!(MlpConfig::new(vec![4]).init(&device).is_err());
        assert!(MlpConfig::new(vec![4, 0, 1]).init(&device).is_err());
        assert!(
            MlpConfig::new(vec![4, 1])
                .with_leaky_slope(f64::NAN)
                .init(&device)
                .is_err()
        );
        let net = MlpConfig::new(vec![4, 8, 1]).init(&device).unwrap();
        assert_eq!((net.input_size(), net.output_size()), (4, 1));
    }
}
