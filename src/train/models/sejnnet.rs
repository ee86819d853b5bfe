//! SE-JNNet, the joint network of Wang, Wang and Lu, "Modulation Recognition Method for Wireless
//! Signals Based on Joint Neural Networks" (IEEE Access): a flow-based signal enhancer and a
//! phase-correction block clean the I/Q window, then JNNet — convolutions, each followed by a
//! two-dimensional sparse weighting mechanism (2DSWM), and two GRUs — classifies it.
//!
//! ```text
//! [B, rows, L] ─ enhancer (option `enhancer`, on by default; off = the paper's JNNet ablation):
//!   flow: for each of 2 down-scale flow blocks: squeeze (time by 4, channels × 4)
//!           ─ 4 steps of flow: actnorm ─ invertible 1×1 convolution ─ affine coupling
//!         ─ unsqueeze back to [B, rows, L]
//!   phase correction: φ̂ = Dense(flatten) per I/Q channel; (I, Q) rotated by −φ̂
//! ─ JNNet (Table 3): the window as a one-channel image [B, 1, rows, L]
//!   ─ Conv2d 64, kernel 2 × 6 (I/Q × time), valid, ReLU ─ 2DSWM
//!   ─ Conv2d 32, kernel 1 × 3, valid, ReLU ─ 2DSWM
//!   ─ time steps [B, L − 7, 32·(rows − 1)] ─ GRU 128 (sequence) ─ GRU 64 (last state)
//!   ─ embedding [B, 64] ─ dropout ─ Dense num_classes (logits)
//! ```
//!
//! **Flow.** A squeeze moves 4 consecutive samples of each row into 4 channels
//! (`[C, T] → [4C, T/4]`), so two blocks take one I/Q channel `[2, 128]` to `[8, 32]` and
//! `[32, 8]`: "a new latent representation with fourfold channels" — the paper's 2 × 2 image squeeze
//! cannot apply twice to a width-2 image, so the squeeze is over time (`papers/NOTES.md` §2.1).
//! Each step of flow is Glow's (Kingma & Dhariwal 2018): actnorm `y = e^{log s}·x + b` per channel
//! (Table 1's `s ⊙ x + b` with `s = e^{log s} > 0`), initialised from data so that its output on the
//! first training batch has zero mean and unit variance per channel ([`Sejnnet::data_init`]); an
//! invertible 1×1 convolution `y = W x`, `W` a random rotation at first (Glow); and the affine
//! coupling of Table 2 on the two channel halves `(a, b)`:
//! `a' = a + φ(b)`, `b' = s(a') ⊙ b + η(a')`, with `s = exp(tanh ρ(a')) ∈ [1/e, e]` positive, so that
//! the coupling inverts (`b = (b' − η(a')) / s(a')`, `a = a' − φ(b)`). The paper's `g` is "a neural
//! network composed of Dense Blocks" of unstated size; here φ, ρ and η are DenseNet blocks as in
//! the invertible rescaling networks this coupling comes from (Xiao et al. 2020): `coupling_layers`
//! Conv1d (kernel 3, `coupling_growth` filters, LeakyReLU 0.2) each reading the block input and all
//! earlier layers' outputs, then a Conv1d (kernel 3) to the half's channels whose weights start at
//! 0, so every coupling starts as the identity. The paper trains no likelihood: the flow is trained
//! by the classification loss only, and no log-determinant is computed. [`Sejnnet::flow_inverse`]
//! inverts the flow (tests; only the forward is trained and served).
//!
//! **Phase correction.** `φ̂ = Dense(flatten(y))`, one angle per I/Q channel (linear activation,
//! weights starting at 0, so at first nothing turns), and Eq. 6's `ŷ = y e^{−jφ̂}` written as the
//! rotation it is: `I' = I cos φ̂ + Q sin φ̂`, `Q' = Q cos φ̂ − I sin φ̂` (the paper's second row,
//! `I sin φ̂ − Q cos φ̂`, is a reflection; its Eq. 5 derives the rotation). It acts on the flow's
//! output (Fig. 2 is not in the text).
//!
//! **2DSWM** (CBAM-like, Eq. 7–10, following the prose): channel weights
//! `M_c = σ(MLP(AvgPool F) + MLP(MaxPool F))`, one MLP `C → C/r` (ReLU) `→ C` shared by both pooled
//! maps (`reduction` r, 8 by default, as the common Keras CBAM); `F_c = M_c ⊗ F`; spatial weights
//! `M_s = σ(Conv7×7([Avg_c F_c; Max_c F_c]))` (padding 3, no bias, as CBAM), `F_s = M_s ⊗ F_c`.
//! The paper's ℓ1 terms (Eq. 11–12) act on these attention weights: the training loss adds
//! `attention_l1 · Σ(|M_c| + |M_s|)`, summed over both 2DSWMs and each window's weights and
//! averaged over the batch ([`Architecture::embedding_and_penalty`]); the paper gives no λ.
//!
//! **Convolution padding** is valid (Keras's default; the paper does not say), so the 2 × 6 kernel
//! reads I and Q together and the GRUs see `L − 7` steps of 32 features.
//!
//! # Parameters
//! For one I/Q channel of 128 samples and 11 classes at `width` 1 this model has **276,364**
//! parameters against the paper's **277,716** (−1,352, −0.49 %): JNNet 108,763 (its layers as
//! Table 3 with valid padding, r = 8, biases as Keras counts them but none in the 7×7 spatial
//! convolutions), actnorm 320, the 1×1 convolutions 4,352, phase correction 257 and the 24 coupling
//! networks 162,672. The paper does not give the coupling networks' size; `coupling_growth` 30 with
//! 2 layers is the DenseNet block that comes nearest to its total (31 would give 283,684). With
//! `enhancer=false` it is JNNet alone: 108,763.
//!
//! `width` scales the convolution filters, the GRU units and the coupling growth; the flow's
//! channels are fixed by the input. The actnorm's data-dependent initialisation state is part of the
//! record (`initialized`), and a model whose actnorm parameters have left their construction values
//! (bias 0, log-scale 0) counts as initialised too — a model read back from its ONNX graph, which
//! holds float weights only (`--init-from models/NAME.json`), is not re-initialised.
//!
//! # Shapes
//! - input: `[batch, rows, len]`, I/Q rows (`rows` even, `len` a multiple of 16 with the enhancer's
//!   two squeezes by 4, at least 8 without)
//! - embedding: `[batch, 64·width]`, the second GRU's last hidden state
//! - output: `[batch, num_classes]` logits
//!
//! Parameters keep burn's layouts; [`Sejnnet::embedding_to_onnx`] writes the same computation with
//! `Reshape`/`Transpose` (squeeze), `Exp`/`Mul`/`Add` (actnorm), `MatMul` (1×1 convolution),
//! `Split`/`Conv`/`LeakyRelu`/`Concat`/`Tanh` (coupling), `Flatten`/`Gemm`/`Cos`/`Sin`/`Sub`
//! (phase correction), `Conv`, `ReduceMean`/`ReduceMax`/`ReduceSum`/`Sigmoid` (2DSWM), `GRU` and
//! `Gemm`, every parameter stored as it is (the exporter only moves parameters).

use burn::module::{Module, Param, ParamId};
use burn::nn::conv::{Conv1d, Conv1dConfig, Conv2d, Conv2dConfig};
use burn::nn::{
    Dropout, DropoutConfig, Gru, GruConfig, Initializer, Linear, LinearConfig, PaddingConfig1d,
    PaddingConfig2d,
};
use burn::tensor::activation::{leaky_relu, relu, sigmoid};
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::{Architecture, ModelSpec, ParamGroup, onnx_layers};
use crate::dsp::repr::Representation;
use crate::onnx::ops;
use crate::onnx::{GraphBuilder, OnnxError, Weights};
use crate::train::TrainError;

/// Samples folded into channels by one squeeze.
const SQUEEZE: usize = 4;
/// Negative slope of the coupling networks' LeakyReLU (the invertible rescaling networks').
const COUPLING_SLOPE: f64 = 0.2;
/// Added to the standard deviation in actnorm's data-dependent initialisation.
const ACTNORM_EPS: f64 = 1e-6;
/// Kernel of the coupling networks' convolutions (padding 1 keeps the length).
const COUPLING_KERNEL: usize = 3;
/// Kernel of the 2DSWM spatial convolution (padding 3 keeps the map's size).
const SPATIAL_KERNEL: usize = 7;

/// SE-JNNet's own options (see the module documentation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SejnnetOptions {
    /// The flow enhancer and phase correction before JNNet (false: JNNet alone, the paper's
    /// ablation).
    pub enhancer: bool,
    /// λ of the ℓ1 penalty on the 2DSWM attention weights (Eq. 11–12), per window, added to the
    /// training loss. The paper gives no value; 1e-4 is this project's choice (at the start the
    /// weights sum to about 170 per window, so the term is about 0.02 against a cross-entropy of
    /// ln 11 ≈ 2.4). 0 turns it off.
    pub attention_l1: f64,
    /// The 2DSWM channel MLP's reduction `r` (hidden units `C / r`, at least 1). Not given by the
    /// paper; 8 as the common Keras CBAM.
    pub reduction: usize,
    /// Down-scale flow blocks (the paper: 2); the window length must be a multiple of `4^levels`.
    pub flow_levels: usize,
    /// Steps of flow per block (the paper: 4).
    pub flow_steps: usize,
    /// Filters of each layer of a coupling network (scaled by `width`). Not given by the paper;
    /// 30 brings the model nearest to its 277,716 parameters.
    pub coupling_growth: usize,
    /// Densely connected convolutions of each coupling network before its output convolution.
    pub coupling_layers: usize,
}

impl Default for SejnnetOptions {
    fn default() -> Self {
        Self {
            enhancer: true,
            attention_l1: 1e-4,
            reduction: 8,
            flow_levels: 2,
            flow_steps: 4,
            coupling_growth: 30,
            coupling_layers: 2,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Flow
// ---------------------------------------------------------------------------------------------

/// `[B, C, T] → [B, 4C, T/4]`: sample `4t' + k` of row `c` goes to channel `4c + k`, step `t'`.
fn squeeze(x: Tensor<3>) -> Tensor<3> {
    let [b, c, t] = x.dims();
    x.reshape([b, c, t / SQUEEZE, SQUEEZE])
        .permute([0, 1, 3, 2])
        .reshape([b, c * SQUEEZE, t / SQUEEZE])
}

/// The inverse of [`squeeze`]: `[B, 4C, T] → [B, C, 4T]`.
fn unsqueeze(x: Tensor<3>) -> Tensor<3> {
    let [b, c, t] = x.dims();
    x.reshape([b, c / SQUEEZE, SQUEEZE, t])
        .permute([0, 1, 3, 2])
        .reshape([b, c / SQUEEZE, t * SQUEEZE])
}

/// ONNX [`squeeze`]: `Reshape`, `Transpose`, `Reshape`.
fn squeeze_to_onnx(
    g: &mut GraphBuilder,
    x: &str,
    channels: usize,
    len: usize,
) -> Result<String, OnnxError> {
    let (c, t, k) = (channels as i64, len as i64, SQUEEZE as i64);
    let y = ops::reshape(g, x, &[0, c, t / k, k])?; // [N, C, T/4, 4]
    let y = ops::transpose(g, &y, &[0, 1, 3, 2])?; // [N, C, 4, T/4]
    ops::reshape(g, &y, &[0, c * k, t / k]) // [N, 4C, T/4]
}

/// ONNX [`unsqueeze`] of a `[N, channels, len]` value.
fn unsqueeze_to_onnx(
    g: &mut GraphBuilder,
    x: &str,
    channels: usize,
    len: usize,
) -> Result<String, OnnxError> {
    let (c, t, k) = (channels as i64, len as i64, SQUEEZE as i64);
    let y = ops::reshape(g, x, &[0, c / k, k, t])?; // [N, C/4, 4, T]
    let y = ops::transpose(g, &y, &[0, 1, 3, 2])?; // [N, C/4, T, 4]
    ops::reshape(g, &y, &[0, c / k, t * k]) // [N, C/4, 4T]
}

/// `p` holding `value` instead, with its id and its gradient setting.
fn replaced<const D: usize>(p: Param<Tensor<D>>, value: Tensor<D>) -> Param<Tensor<D>> {
    p.map(|old| {
        let require_grad = old.is_require_grad();
        value.set_require_grad(require_grad)
    })
}

/// A `[C]` parameter as the `[1, C, 1]` initializer that broadcasts over `[N, C, T]`.
fn per_channel(p: &Param<Tensor<1>>, layer: &str) -> Result<Weights, OnnxError> {
    let w = onnx_layers::tensor(p.val(), layer)?;
    let c = w.numel();
    Ok(Weights::new(w.data, [1, c, 1]))
}

/// Actnorm (Glow): `y = e^{log_scale} · x + bias` per channel, initialised from data.
#[derive(Module, Debug)]
pub struct ActNorm {
    /// `[C]`, the log of the per-channel scale.
    pub log_scale: Param<Tensor<1>>,
    /// `[C]`.
    pub bias: Param<Tensor<1>>,
    /// `[1]`: 1 once [`ActNorm::data_init`] has set the parameters from a batch.
    pub initialized: Param<Tensor<1, Int>>,
}

impl ActNorm {
    fn new(channels: usize, device: &Device) -> Self {
        Self {
            log_scale: Param::from_tensor(Tensor::zeros([channels], device)),
            bias: Param::from_tensor(Tensor::zeros([channels], device)),
            initialized: Param::initialized(ParamId::new(), Tensor::zeros([1], device)),
        }
    }

    /// `[B, C, T] → [B, C, T]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let c = x.dims()[1];
        let scale = self.log_scale.val().exp().reshape([1, c, 1]);
        x * scale + self.bias.val().reshape([1, c, 1])
    }

    /// The inverse of [`ActNorm::forward`].
    pub fn inverse(&self, y: Tensor<3>) -> Tensor<3> {
        let c = y.dims()[1];
        let inv_scale = self.log_scale.val().neg().exp().reshape([1, c, 1]);
        (y - self.bias.val().reshape([1, c, 1])) * inv_scale
    }

    /// Whether the parameters were set from data: the recorded flag, or parameters that have left
    /// their construction values (a model read back from an ONNX graph, which has no flag).
    pub fn is_initialized(&self) -> bool {
        let flag: i64 = self.initialized.val().sum().into_scalar();
        let moved = |p: &Param<Tensor<1>>| p.val().abs().sum().into_scalar::<f32>() != 0.0;
        flag != 0 || moved(&self.log_scale) || moved(&self.bias)
    }

    /// Scale and bias such that the output on `x` `[B, C, T]` has zero mean and unit variance per
    /// channel (over the batch and time), unless already initialised.
    pub fn data_init(self, x: Tensor<3>) -> Self {
        if self.is_initialized() {
            return self;
        }
        let [b, c, t] = x.dims();
        let rows = x.detach().swap_dims(0, 1).reshape([c, b * t]); // [C, B·T]
        let (var, mean) = rows.var_mean_bias(1); // [C, 1] each
        let log_scale = var.sqrt().add_scalar(ACTNORM_EPS).log().neg().reshape([c]);
        let bias = mean.reshape([c]).neg() * log_scale.clone().exp();
        Self {
            log_scale: replaced(self.log_scale, log_scale),
            bias: replaced(self.bias, bias),
            initialized: self.initialized.map(|f| f.ones_like()),
        }
    }

    fn to_onnx(&self, g: &mut GraphBuilder, layer: &str, x: &str) -> Result<String, OnnxError> {
        let log_scale = g.initializer(
            &format!("{layer}.log_scale"),
            &per_channel(&self.log_scale, layer)?,
        )?;
        let bias = g.initializer(&format!("{layer}.bias"), &per_channel(&self.bias, layer)?)?;
        let scale = ops::exp(g, &log_scale)?;
        let y = ops::mul(g, x, &scale)?;
        ops::add(g, &y, &bias)
    }
}

/// A random `c × c` rotation (the Q of a Gaussian matrix's QR decomposition, by Gram–Schmidt),
/// drawn from `device`'s generator.
fn random_rotation(c: usize, device: &Device) -> Tensor<2> {
    let a: Vec<f32> = Tensor::<2>::random([c, c], Distribution::Normal(0.0, 1.0), device)
        .into_data()
        .try_into_vec()
        .unwrap_or_else(|_| vec![0.0; c * c]);
    // Columns of `a`, orthonormalised in turn.
    let mut q = vec![0.0f64; c * c];
    for j in 0..c {
        let mut v: Vec<f64> = (0..c).map(|i| f64::from(a[i * c + j])).collect();
        for k in 0..j {
            let dot: f64 = (0..c).map(|i| q[i * c + k] * v[i]).sum();
            for (i, vi) in v.iter_mut().enumerate() {
                *vi -= dot * q[i * c + k];
            }
        }
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        for (i, vi) in v.iter().enumerate() {
            // A degenerate draw (probability 0) keeps the identity's column.
            q[i * c + j] = if norm > 1e-12 {
                vi / norm
            } else {
                f64::from(u8::from(i == j))
            };
        }
    }
    let q: Vec<f32> = q.into_iter().map(|x| x as f32).collect();
    Tensor::from_data(TensorData::new(q, [c, c]), device)
}

/// The inverse of a square matrix (Gauss–Jordan with partial pivoting, in f64).
fn inverse_matrix(w: &[f32], c: usize) -> Vec<f32> {
    let mut a: Vec<f64> = w.iter().map(|&x| f64::from(x)).collect();
    let mut inv: Vec<f64> = (0..c * c)
        .map(|k| f64::from(u8::from(k / c == k % c)))
        .collect();
    for col in 0..c {
        let pivot = (col..c)
            .max_by(|&i, &j| a[i * c + col].abs().total_cmp(&a[j * c + col].abs()))
            .unwrap_or(col);
        for k in 0..c {
            a.swap(col * c + k, pivot * c + k);
            inv.swap(col * c + k, pivot * c + k);
        }
        let p = a[col * c + col];
        for k in 0..c {
            a[col * c + k] /= p;
            inv[col * c + k] /= p;
        }
        for row in (0..c).filter(|&r| r != col) {
            let f = a[row * c + col];
            for k in 0..c {
                a[row * c + k] -= f * a[col * c + k];
                inv[row * c + k] -= f * inv[col * c + k];
            }
        }
    }
    inv.into_iter().map(|x| x as f32).collect()
}

/// The invertible 1×1 convolution (Glow): `y = W x` at every step, `W` `[C, C]`.
#[derive(Module, Debug)]
pub struct InvConv {
    pub weight: Param<Tensor<2>>,
}

impl InvConv {
    fn new(channels: usize, device: &Device) -> Self {
        Self {
            weight: Param::from_tensor(random_rotation(channels, device)),
        }
    }

    fn apply(w: Tensor<2>, x: Tensor<3>) -> Tensor<3> {
        let [b, c, _] = x.dims();
        w.unsqueeze::<3>().expand([b, c, c]).matmul(x)
    }

    /// `[B, C, T] → [B, C, T]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        Self::apply(self.weight.val(), x)
    }

    /// `W⁻¹ y`, the inverse computed on the host.
    pub fn inverse(&self, y: Tensor<3>) -> Tensor<3> {
        let w = self.weight.val();
        let [c, _] = w.dims();
        let device = w.device();
        let values: Vec<f32> = w
            .inner()
            .into_data()
            .try_into_vec()
            .unwrap_or_else(|_| vec![0.0; c * c]);
        let inv = Tensor::from_data(TensorData::new(inverse_matrix(&values, c), [c, c]), &device);
        Self::apply(inv, y)
    }

    fn to_onnx(&self, g: &mut GraphBuilder, layer: &str, x: &str) -> Result<String, OnnxError> {
        let w = onnx_layers::tensor(self.weight.val(), layer)?;
        let w = g.initializer(&format!("{layer}.weight"), &w)?;
        ops::matmul(g, &w, x) // [C, C] · [N, C, T] → [N, C, T]
    }
}

/// A DenseNet block of 1-D convolutions: each hidden layer reads the block input and every
/// earlier layer's output; the output convolution reads them all.
#[derive(Module, Debug)]
pub struct DenseBlock {
    pub layers: Vec<Conv1d>,
    pub out: Conv1d,
}

impl DenseBlock {
    fn new(
        c_in: usize,
        c_out: usize,
        growth: usize,
        depth: usize,
        out_init: Initializer,
        device: &Device,
    ) -> Self {
        let pad = PaddingConfig1d::Explicit(COUPLING_KERNEL / 2, COUPLING_KERNEL / 2);
        let layers = (0..depth)
            .map(|i| {
                Conv1dConfig::new(c_in + i * growth, growth, COUPLING_KERNEL)
                    .with_padding(pad.clone())
                    .init(device)
            })
            .collect();
        let out = Conv1dConfig::new(c_in + depth * growth, c_out, COUPLING_KERNEL)
            .with_padding(pad)
            .with_initializer(out_init)
            .init(device);
        Self { layers, out }
    }

    /// `[B, c_in, T] → [B, c_out, T]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let mut features = x;
        for layer in &self.layers {
            let h = leaky_relu(layer.forward(features.clone()), COUPLING_SLOPE); // [B, growth, T]
            features = Tensor::cat(vec![features, h], 1);
        }
        self.out.forward(features)
    }

    fn to_onnx(&self, g: &mut GraphBuilder, layer: &str, x: &str) -> Result<String, OnnxError> {
        let mut features = x.to_string();
        for (i, conv) in self.layers.iter().enumerate() {
            let name = format!("{layer}.conv{i}");
            let (w, opts) = onnx_layers::conv1d(conv, &name)?;
            let h = ops::conv(g, &name, &features, &w, &opts)?;
            let h = ops::leaky_relu(g, &h, COUPLING_SLOPE as f32)?;
            features = ops::concat(g, &[&features, &h], 1)?;
        }
        let name = format!("{layer}.out");
        let (w, opts) = onnx_layers::conv1d(&self.out, &name)?;
        ops::conv(g, &name, &features, &w, &opts)
    }
}

/// The affine coupling of Table 2 on the channel halves `(a, b)`: `a' = a + φ(b)`,
/// `b' = exp(tanh ρ(a')) ⊙ b + η(a')`.
#[derive(Module, Debug)]
pub struct Coupling {
    /// φ, the shift of `a` from `b`.
    pub shift_a: DenseBlock,
    /// ρ, the log-scale of `b` (through `tanh`) from `a'`.
    pub scale_b: DenseBlock,
    /// η, the shift of `b` from `a'`.
    pub shift_b: DenseBlock,
}

impl Coupling {
    fn new(
        channels: usize,
        growth: usize,
        depth: usize,
        out_init: &Initializer,
        device: &Device,
    ) -> Self {
        let half = channels / 2;
        let block = || DenseBlock::new(half, half, growth, depth, out_init.clone(), device);
        Self {
            shift_a: block(),
            scale_b: block(),
            shift_b: block(),
        }
    }

    fn halves(x: Tensor<3>) -> (Tensor<3>, Tensor<3>) {
        let half = x.dims()[1] / 2;
        (x.clone().narrow(1, 0, half), x.narrow(1, half, half))
    }

    /// `[B, C, T] → [B, C, T]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let (a, b) = Self::halves(x); // [B, C/2, T] each
        let a = a + self.shift_a.forward(b.clone());
        let scale = self.scale_b.forward(a.clone()).tanh().exp();
        let b = b * scale + self.shift_b.forward(a.clone());
        Tensor::cat(vec![a, b], 1)
    }

    /// The inverse of [`Coupling::forward`].
    pub fn inverse(&self, y: Tensor<3>) -> Tensor<3> {
        let (a, b) = Self::halves(y);
        let inv_scale = self.scale_b.forward(a.clone()).tanh().neg().exp();
        let b = (b - self.shift_b.forward(a.clone())) * inv_scale;
        let a = a - self.shift_a.forward(b.clone());
        Tensor::cat(vec![a, b], 1)
    }

    fn to_onnx(
        &self,
        g: &mut GraphBuilder,
        layer: &str,
        x: &str,
        channels: usize,
    ) -> Result<String, OnnxError> {
        let half = channels / 2;
        let parts = ops::split(g, x, 1, &[half, half])?;
        let (a, b) = (&parts[0], &parts[1]);
        let shift_a = self.shift_a.to_onnx(g, &format!("{layer}.shift_a"), b)?;
        let a = ops::add(g, a, &shift_a)?;
        let rho = self.scale_b.to_onnx(g, &format!("{layer}.scale_b"), &a)?;
        let rho = ops::tanh(g, &rho)?;
        let scale = ops::exp(g, &rho)?;
        let scaled = ops::mul(g, b, &scale)?;
        let shift_b = self.shift_b.to_onnx(g, &format!("{layer}.shift_b"), &a)?;
        let b = ops::add(g, &scaled, &shift_b)?;
        ops::concat(g, &[&a, &b], 1)
    }
}

/// A step of flow: actnorm, invertible 1×1 convolution, affine coupling.
#[derive(Module, Debug)]
pub struct FlowStep {
    pub actnorm: ActNorm,
    pub mix: InvConv,
    pub coupling: Coupling,
}

impl FlowStep {
    /// `[B, C, T] → [B, C, T]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let x = self.actnorm.forward(x);
        let x = self.mix.forward(x);
        self.coupling.forward(x)
    }

    /// The inverse of [`FlowStep::forward`].
    pub fn inverse(&self, y: Tensor<3>) -> Tensor<3> {
        let y = self.coupling.inverse(y);
        let y = self.mix.inverse(y);
        self.actnorm.inverse(y)
    }
}

/// A down-scale flow block: a squeeze (applied by [`Enhancer`]) and its steps of flow.
#[derive(Module, Debug)]
pub struct FlowBlock {
    pub steps: Vec<FlowStep>,
}

/// The flow and the phase-correction block.
#[derive(Module, Debug)]
pub struct Enhancer {
    pub blocks: Vec<FlowBlock>,
    /// `rows · L → rows / 2`: one angle per I/Q channel.
    pub phase: Linear,
}

impl Enhancer {
    fn new(
        spec: &ModelSpec,
        options: &SejnnetOptions,
        out_init: &Initializer,
        device: &Device,
    ) -> Self {
        let growth = spec.scaled(options.coupling_growth);
        let blocks = (1..=options.flow_levels)
            .map(|level| {
                let channels = spec.rows * SQUEEZE.pow(level as u32);
                let steps = (0..options.flow_steps)
                    .map(|_| FlowStep {
                        actnorm: ActNorm::new(channels, device),
                        mix: InvConv::new(channels, device),
                        coupling: Coupling::new(
                            channels,
                            growth,
                            options.coupling_layers,
                            out_init,
                            device,
                        ),
                    })
                    .collect();
                FlowBlock { steps }
            })
            .collect();
        let phase = LinearConfig::new(spec.rows * spec.window_len, spec.rows / 2)
            .with_initializer(Initializer::Zeros)
            .init(device);
        Self { blocks, phase }
    }

    /// The flow, `[B, rows, L] → [B, rows, L]`.
    pub fn flow(&self, x: Tensor<3>) -> Tensor<3> {
        let mut h = x;
        for block in &self.blocks {
            h = squeeze(h);
            for step in &block.steps {
                h = step.forward(h);
            }
        }
        for _ in &self.blocks {
            h = unsqueeze(h);
        }
        h
    }

    /// The inverse of [`Enhancer::flow`].
    pub fn flow_inverse(&self, y: Tensor<3>) -> Tensor<3> {
        let mut h = y;
        for _ in &self.blocks {
            h = squeeze(h);
        }
        for block in self.blocks.iter().rev() {
            for step in block.steps.iter().rev() {
                h = step.inverse(h);
            }
            h = unsqueeze(h);
        }
        h
    }

    /// The flow with each actnorm initialised on the activations that reach it from `x`.
    fn data_init(self, x: Tensor<3>) -> Self {
        let mut h = x.detach();
        let mut blocks = Vec::with_capacity(self.blocks.len());
        for block in self.blocks {
            h = squeeze(h);
            let mut steps = Vec::with_capacity(block.steps.len());
            for step in block.steps {
                let step = FlowStep {
                    actnorm: step.actnorm.data_init(h.clone()),
                    ..step
                };
                h = step.forward(h).detach();
                steps.push(step);
            }
            blocks.push(FlowBlock { steps });
        }
        Self { blocks, ..self }
    }

    /// The phase correction of `y` `[B, rows, L]`: each I/Q pair turned by its `−φ̂`.
    pub fn correct_phase(&self, y: Tensor<3>) -> Tensor<3> {
        let [b, rows, len] = y.dims();
        let pairs = rows / 2;
        let phi = self.phase.forward(y.clone().reshape([b, rows * len])); // [B, rows/2]
        let phi = phi.reshape([b, pairs, 1, 1]);
        let (cos, sin) = (phi.clone().cos(), phi.sin());
        let iq = y.reshape([b, pairs, 2, len]);
        let i = iq.clone().narrow(2, 0, 1); // [B, rows/2, 1, L]
        let q = iq.narrow(2, 1, 1);
        let i2 = i.clone() * cos.clone() + q.clone() * sin.clone();
        let q2 = q * cos - i * sin;
        Tensor::cat(vec![i2, q2], 2).reshape([b, rows, len])
    }

    /// Flow, then phase correction.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.correct_phase(self.flow(x))
    }

    fn to_onnx(
        &self,
        g: &mut GraphBuilder,
        x: &str,
        rows: usize,
        len: usize,
    ) -> Result<String, OnnxError> {
        let (mut h, mut channels, mut steps) = (x.to_string(), rows, len);
        for (l, block) in self.blocks.iter().enumerate() {
            h = squeeze_to_onnx(g, &h, channels, steps)?;
            channels *= SQUEEZE;
            steps /= SQUEEZE;
            for (s, step) in block.steps.iter().enumerate() {
                let p = format!("flow.block{l}.step{s}");
                h = step.actnorm.to_onnx(g, &format!("{p}.actnorm"), &h)?;
                h = step.mix.to_onnx(g, &format!("{p}.mix"), &h)?;
                h = step
                    .coupling
                    .to_onnx(g, &format!("{p}.coupling"), &h, channels)?;
            }
        }
        for _ in &self.blocks {
            h = unsqueeze_to_onnx(g, &h, channels, steps)?;
            channels /= SQUEEZE;
            steps *= SQUEEZE;
        }
        // Phase correction.
        let pairs = (rows / 2) as i64;
        let flat = ops::flatten(g, &h, 1)?; // [N, rows·L]
        let phi = ops::gemm(
            g,
            "phase",
            &flat,
            &onnx_layers::linear(&self.phase, "phase")?,
        )?;
        let phi = ops::reshape(g, &phi, &[0, pairs, 1, 1])?;
        let cos = ops::cos(g, &phi)?;
        let sin = ops::sin(g, &phi)?;
        let iq = ops::reshape(g, &h, &[0, pairs, 2, len as i64])?;
        let parts = ops::split(g, &iq, 2, &[1, 1])?;
        let (i, q) = (&parts[0], &parts[1]);
        let i_cos = ops::mul(g, i, &cos)?;
        let q_sin = ops::mul(g, q, &sin)?;
        let i2 = ops::add(g, &i_cos, &q_sin)?;
        let q_cos = ops::mul(g, q, &cos)?;
        let i_sin = ops::mul(g, i, &sin)?;
        let q2 = ops::sub(g, &q_cos, &i_sin)?;
        let iq = ops::concat(g, &[&i2, &q2], 2)?; // [N, rows/2, 2, L]
        ops::reshape(g, &iq, &[0, rows as i64, len as i64])
    }
}

// ---------------------------------------------------------------------------------------------
// JNNet
// ---------------------------------------------------------------------------------------------

/// The two-dimensional sparse weighting mechanism (channel, then spatial weights).
#[derive(Module, Debug)]
pub struct Swm {
    /// The shared MLP's first layer, `C → C/r`.
    pub mlp1: Linear,
    /// Its second layer, `C/r → C`.
    pub mlp2: Linear,
    /// 7×7, `[avg; max]` maps → one spatial weight map, no bias.
    pub spatial: Conv2d,
}

impl Swm {
    fn new(channels: usize, reduction: usize, device: &Device) -> Self {
        let hidden = (channels / reduction).max(1);
        let pad = SPATIAL_KERNEL / 2;
        Self {
            mlp1: LinearConfig::new(channels, hidden).init(device),
            mlp2: LinearConfig::new(hidden, channels).init(device),
            spatial: Conv2dConfig::new([2, 1], [SPATIAL_KERNEL, SPATIAL_KERNEL])
                .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
                .with_bias(false)
                .init(device),
        }
    }

    /// `F` `[B, C, H, W]` → `F_s` `[B, C, H, W]` and the sum of all its attention weights (over
    /// the batch), `[1]`.
    pub fn forward(&self, f: Tensor<4>) -> (Tensor<4>, Tensor<1>) {
        let [b, c, h, w] = f.dims();
        let flat = f.clone().reshape([b, c, h * w]);
        let avg = flat.clone().mean_dim(2).reshape([b, 1, c]);
        let max = flat.max_dim(2).reshape([b, 1, c]);
        let pooled = Tensor::cat(vec![avg, max], 1); // [B, 2, C]
        let scores = self.mlp2.forward(relu(self.mlp1.forward(pooled))); // [B, 2, C]
        let m_c = sigmoid(scores.sum_dim(1)).reshape([b, c, 1, 1]);
        let f_c = f * m_c.clone(); // [B, C, H, W]
        let avg = f_c.clone().mean_dim(1); // [B, 1, H, W]
        let max = f_c.clone().max_dim(1);
        let m_s = sigmoid(self.spatial.forward(Tensor::cat(vec![avg, max], 1))); // [B, 1, H, W]
        let weights = m_c.sum() + m_s.clone().sum();
        (f_c * m_s, weights)
    }

    fn to_onnx(&self, g: &mut GraphBuilder, layer: &str, f: &str) -> Result<String, OnnxError> {
        let c = self.mlp2.weight.dims()[1] as i64;
        let avg = ops::reduce_mean(g, f, &[2, 3], false)?; // [N, C]
        let max = ops::reduce_max(g, f, &[2, 3], false)?;
        let avg = ops::reshape(g, &avg, &[0, 1, c])?;
        let max = ops::reshape(g, &max, &[0, 1, c])?;
        let pooled = ops::concat(g, &[&avg, &max], 1)?; // [N, 2, C]
        let name = format!("{layer}.mlp1");
        let h = ops::linear(g, &name, &pooled, &onnx_layers::linear(&self.mlp1, &name)?)?;
        let h = ops::relu(g, &h)?;
        let name = format!("{layer}.mlp2");
        let scores = ops::linear(g, &name, &h, &onnx_layers::linear(&self.mlp2, &name)?)?;
        let scores = ops::reduce_sum(g, &scores, &[1], false)?; // [N, C]
        let m_c = ops::sigmoid(g, &scores)?;
        let m_c = ops::reshape(g, &m_c, &[0, c, 1, 1])?;
        let f_c = ops::mul(g, f, &m_c)?;
        let avg = ops::reduce_mean(g, &f_c, &[1], true)?; // [N, 1, H, W]
        let max = ops::reduce_max(g, &f_c, &[1], true)?;
        let maps = ops::concat(g, &[&avg, &max], 1)?;
        let name = format!("{layer}.spatial");
        let (w, opts) = onnx_layers::conv2d(&self.spatial, &name)?;
        let m_s = ops::conv(g, &name, &maps, &w, &opts)?;
        let m_s = ops::sigmoid(g, &m_s)?;
        ops::mul(g, &f_c, &m_s)
    }
}

/// SE-JNNet (see the module documentation).
#[derive(Module, Debug)]
pub struct Sejnnet {
    /// The flow and phase correction (absent: JNNet alone).
    pub enhancer: Option<Enhancer>,
    pub conv1: Conv2d,
    pub swm1: Swm,
    pub conv2: Conv2d,
    pub swm2: Swm,
    pub gru1: Gru,
    pub gru2: Gru,
    pub dense: Linear,
    pub dropout: Dropout,
    /// λ of the attention penalty (an option, not a parameter).
    pub attention_l1: f64,
    /// Input rows `2C` (the graph's geometry, not a parameter).
    pub rows: usize,
    /// Samples per row `L`.
    pub window_len: usize,
}

/// Time kernel of the first convolution (Table 3's 6 × 2: 6 samples, I and Q).
const CONV1_KERNEL: [usize; 2] = [2, 6];
/// Time kernel of the second convolution (Table 3's 3 × 1).
const CONV2_KERNEL: [usize; 2] = [1, 3];

impl Sejnnet {
    /// Builds the model; `out_init` initialises the coupling networks' output convolutions
    /// (zeros as published; tests draw them at random to exercise the couplings).
    fn with_coupling_init(
        spec: &ModelSpec,
        options: &SejnnetOptions,
        out_init: &Initializer,
        device: &Device,
    ) -> Result<Self, TrainError> {
        check(spec, options)?;
        let f1 = spec.scaled(64);
        let f2 = spec.scaled(32);
        let (u1, u2) = (spec.scaled(128), spec.scaled(64));
        let features = f2 * (spec.rows + 1 - CONV1_KERNEL[0]);
        Ok(Self {
            enhancer: options
                .enhancer
                .then(|| Enhancer::new(spec, options, out_init, device)),
            conv1: Conv2dConfig::new([1, f1], CONV1_KERNEL).init(device),
            swm1: Swm::new(f1, options.reduction, device),
            conv2: Conv2dConfig::new([f1, f2], CONV2_KERNEL).init(device),
            swm2: Swm::new(f2, options.reduction, device),
            gru1: GruConfig::new(features, u1, true).init(device),
            gru2: GruConfig::new(u1, u2, true).init(device),
            dense: LinearConfig::new(u2, spec.num_classes).init(device),
            dropout: DropoutConfig::new(spec.dropout).init(),
            attention_l1: options.attention_l1,
            rows: spec.rows,
            window_len: spec.window_len,
        })
    }

    /// The flow of the enhancer (the identity without one), `[B, rows, L] → [B, rows, L]`.
    pub fn flow(&self, x: Tensor<3>) -> Tensor<3> {
        match &self.enhancer {
            Some(e) => e.flow(x),
            None => x,
        }
    }

    /// The inverse of [`Sejnnet::flow`].
    pub fn flow_inverse(&self, y: Tensor<3>) -> Tensor<3> {
        match &self.enhancer {
            Some(e) => e.flow_inverse(y),
            None => y,
        }
    }

    /// The embedding and, when asked, the sum of every attention weight over the batch.
    fn encode(&self, x: Tensor<3>) -> (Tensor<2>, Tensor<1>) {
        let x = match &self.enhancer {
            Some(e) => e.forward(x),
            None => x,
        }; // [B, rows, L]
        let [b, rows, len] = x.dims();
        let image = x.reshape([b, 1, rows, len]);
        let f = relu(self.conv1.forward(image)); // [B, f1, rows − 1, L − 5]
        let (f, w1) = self.swm1.forward(f);
        let f = relu(self.conv2.forward(f)); // [B, f2, rows − 1, L − 7]
        let (f, w2) = self.swm2.forward(f);
        let [_, c, h, t] = f.dims();
        let steps = f.permute([0, 3, 1, 2]).reshape([b, t, c * h]); // [B, L − 7, f2·(rows − 1)]
        let h1 = self.gru1.forward(steps, None); // [B, T, u1]
        let h2 = self.gru2.forward(h1, None); // [B, T, u2]
        let units = self.gru2.d_hidden;
        let embedding = h2.slice([0..b, t - 1..t, 0..units]).reshape([b, units]); // [B, u2]
        (embedding, w1 + w2)
    }
}

/// Refuses a spec or options the model cannot be built for, naming the option.
fn check(spec: &ModelSpec, options: &SejnnetOptions) -> Result<(), TrainError> {
    let refuse = |problem: String| Err(TrainError::param("arch-opt", problem));
    if options.reduction == 0 {
        return refuse("reduction is 0; expected the 2DSWM MLP's divisor r ≥ 1".into());
    }
    if !(options.attention_l1.is_finite() && options.attention_l1 >= 0.0) {
        return refuse(format!(
            "attention_l1 is {}; expected a finite λ ≥ 0",
            options.attention_l1
        ));
    }
    if spec.rows < CONV1_KERNEL[0] {
        return refuse(format!(
            "sejnnet's first convolution reads 2 rows (I and Q); the input has {}",
            spec.rows
        ));
    }
    if spec.window_len < CONV1_KERNEL[1] + CONV2_KERNEL[1] - 1 {
        return refuse(format!(
            "sejnnet's convolutions need windows of at least 8 samples; these have {}",
            spec.window_len
        ));
    }
    if options.enhancer {
        let fold = SQUEEZE.pow(options.flow_levels as u32);
        if options.flow_levels == 0 || options.flow_steps == 0 || options.coupling_layers == 0 {
            return refuse(format!(
                "flow_levels {}, flow_steps {} and coupling_layers {} must all be at least 1 \
                 with the enhancer (enhancer=false leaves the flow out)",
                options.flow_levels, options.flow_steps, options.coupling_layers
            ));
        }
        if !spec.window_len.is_multiple_of(fold) {
            return refuse(format!(
                "the enhancer's {} squeezes by {SQUEEZE} need a window length that is a multiple \
                 of {fold}; it is {} (change flow_levels, or enhancer=false)",
                options.flow_levels, spec.window_len
            ));
        }
        if spec.representation != Representation::Iq || !spec.rows.is_multiple_of(2) {
            return refuse(format!(
                "the enhancer's phase correction turns I/Q pairs, but the input is {} {:?} \
                 rows (pass --representation iq, or enhancer=false)",
                spec.rows, spec.representation
            ));
        }
    }
    Ok(())
}

impl Architecture for Sejnnet {
    const NAME: &'static str = "sejnnet";
    type Options = SejnnetOptions;

    fn build(
        spec: &ModelSpec,
        options: &SejnnetOptions,
        device: &Device,
    ) -> Result<Self, TrainError> {
        Self::with_coupling_init(spec, options, &Initializer::Zeros, device)
    }

    /// The second GRU's last hidden state, `[batch, u2]`.
    fn embedding(&self, x: Tensor<3>) -> Tensor<2> {
        self.encode(x).0
    }

    /// The embedding and `attention_l1 · Σ(|M_c| + |M_s|)` per window, averaged over the batch.
    fn embedding_and_penalty(&self, x: Tensor<3>) -> (Tensor<2>, Option<Tensor<1>>) {
        let batch = x.dims()[0];
        let (embedding, weights) = self.encode(x);
        let penalty = (self.attention_l1 > 0.0)
            .then(|| weights.mul_scalar(self.attention_l1 / batch.max(1) as f64));
        (embedding, penalty)
    }

    /// Initialises every actnorm of the flow on `x`, the first training batch (a no-op for a
    /// model without the enhancer, or one already initialised).
    fn data_init(self, x: Tensor<3>) -> Self {
        match self.enhancer {
            Some(e) => Self {
                enhancer: Some(e.data_init(x)),
                ..self
            },
            None => self,
        }
    }

    fn classify(&self, embedding: Tensor<2>) -> Tensor<2> {
        self.dense.forward(self.dropout.forward(embedding)) // [batch, num_classes]
    }

    fn embedding_to_onnx(&self, g: &mut GraphBuilder, x: &str) -> Result<String, OnnxError> {
        let (rows, len) = (self.rows, self.window_len);
        let x = match &self.enhancer {
            Some(e) => e.to_onnx(g, x, rows, len)?,
            None => x.to_string(),
        }; // [N, rows, L]
        let image = ops::reshape(g, &x, &[0, 1, rows as i64, len as i64])?; // [N, 1, rows, L]
        let (w, opts) = onnx_layers::conv2d(&self.conv1, "conv1")?;
        let f = ops::conv(g, "conv1", &image, &w, &opts)?;
        let f = ops::relu(g, &f)?;
        let f = self.swm1.to_onnx(g, "swm1", &f)?;
        let (w, opts) = onnx_layers::conv2d(&self.conv2, "conv2")?;
        let f = ops::conv(g, "conv2", &f, &w, &opts)?;
        let f = ops::relu(g, &f)?;
        let f = self.swm2.to_onnx(g, "swm2", &f)?; // [N, f2, rows − 1, T]
        let f = ops::transpose(g, &f, &[0, 3, 1, 2])?; // [N, T, f2, rows − 1]
        let features = self.conv2.weight.dims()[0] * (rows + 1 - CONV1_KERNEL[0]);
        let steps = ops::reshape(g, &f, &[0, -1, features as i64])?; // [N, T, f2·(rows − 1)]
        let r1 = ops::gru(g, "gru1", &steps, &onnx_layers::gru(&self.gru1, "gru1")?)?;
        let r2 = ops::gru(
            g,
            "gru2",
            &r1.sequence,
            &onnx_layers::gru(&self.gru2, "gru2")?,
        )?;
        ops::reshape(g, &r2.last_hidden, &[-1, self.gru2.d_hidden as i64]) // [1, N, H] → [N, H]
    }

    fn classify_to_onnx(&self, g: &mut GraphBuilder, embedding: &str) -> Result<String, OnnxError> {
        ops::gemm(
            g,
            "dense",
            embedding,
            &onnx_layers::linear(&self.dense, "dense")?,
        )
    }

    fn head_params(&self) -> ParamGroup {
        ParamGroup::ids_from_module(self.dense.clone())
    }

    fn with_head_of(self, fresh: Self) -> Self {
        Self {
            dense: fresh.dense,
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::{ExecutionPreference, Model as Served, RuntimeOptions};
    use crate::train::models::{ArchOptions, Model};

    fn spec(rows: usize, window_len: usize, width: f64, options: ArchOptions) -> ModelSpec {
        ModelSpec {
            num_classes: 11,
            rows,
            window_len,
            dropout: 0.0,
            width,
            representation: Representation::Iq,
            options,
        }
    }

    fn options(pairs: &[&str]) -> SejnnetOptions {
        let pairs: Vec<String> = pairs.iter().map(|p| p.to_string()).collect();
        let map = crate::train::models::parse_arch_opts(&pairs).unwrap();
        serde_json::from_value(serde_json::Value::Object(map)).unwrap()
    }

    /// A model whose every part computes something: coupling outputs and the phase estimate
    /// drawn at random instead of starting at 0.
    fn busy_model(spec: &ModelSpec, options: &SejnnetOptions, device: &Device) -> Sejnnet {
        let init = Initializer::Normal {
            mean: 0.0,
            std: 0.05,
        };
        let mut m = Sejnnet::with_coupling_init(spec, options, &init, device).unwrap();
        if let Some(e) = &mut m.enhancer {
            e.phase = LinearConfig::new(spec.rows * spec.window_len, spec.rows / 2)
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: 0.02,
                })
                .init(device);
        }
        m
    }

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_into_vec::<f32>().unwrap()
    }

    fn random(shape: [usize; 3], mean: f64, std: f64, device: &Device) -> Tensor<3> {
        Tensor::random(shape, Distribution::Normal(mean, std), device)
    }

    /// Per-channel (axis 1) mean and population variance of `[B, C, T]`.
    fn channel_stats(x: Tensor<3>) -> Vec<(f32, f32)> {
        let [b, c, t] = x.dims();
        let rows = x.swap_dims(0, 1).reshape([c, b * t]);
        let (var, mean) = rows.var_mean_bias(1);
        values(mean).into_iter().zip(values(var)).collect()
    }

    #[test]
    fn actnorm_data_init_gives_zero_mean_unit_variance_per_channel_on_its_first_batch() {
        let device = Device::flex();
        // Channels far from N(0, 1), each its own offset and scale.
        let x = random([16, 6, 20], 0.0, 1.0, &device);
        let offsets = Tensor::<1>::from_floats([3.0, -2.0, 0.5, 10.0, 0.0, -7.0], &device);
        let scales = Tensor::<1>::from_floats([5.0, 0.1, 1.0, 30.0, 2.0, 0.01], &device);
        let x = x * scales.reshape([1, 6, 1]) + offsets.reshape([1, 6, 1]);
        let fresh = ActNorm::new(6, &device);
        assert!(!fresh.is_initialized());
        let norm = fresh.data_init(x.clone());
        assert!(norm.is_initialized());
        for (c, (mean, var)) in channel_stats(norm.forward(x.clone()))
            .into_iter()
            .enumerate()
        {
            assert!(mean.abs() < 1e-4, "channel {c}: mean {mean}");
            assert!((var - 1.0).abs() < 1e-3, "channel {c}: variance {var}");
        }
        // Only the first batch sets it: another batch leaves the parameters as they are.
        let before = values(norm.bias.val());
        let again = norm.data_init(random([4, 6, 20], 100.0, 50.0, &device));
        assert_eq!(values(again.bias.val()), before);
        // The state is in the record, so a reloaded (resumed, exported) model keeps it.
        let record = again.into_record();
        let reloaded = ActNorm::new(6, &device).load_record(record);
        assert_eq!(values(reloaded.initialized.val().float()), vec![1.0]);
        assert_eq!(values(reloaded.bias.val()), before);
        // A model read back from an ONNX graph has float weights but no flag: its parameters,
        // off their construction values, say it is initialised.
        let imported = ActNorm {
            initialized: Param::initialized(ParamId::new(), Tensor::zeros([1], &device)),
            ..reloaded
        };
        assert!(imported.is_initialized());
    }

    #[test]
    fn data_init_normalises_every_actnorm_on_what_reaches_it() {
        let device = Device::flex();
        let spec = spec(2, 64, 0.25, ArchOptions::new());
        let model = busy_model(&spec, &SejnnetOptions::default(), &device);
        let x = random([12, 2, 64], 0.3, 2.0, &device);
        let model = model.data_init(x.clone());
        let enhancer = model.enhancer.as_ref().unwrap();
        let mut h = x;
        for (l, block) in enhancer.blocks.iter().enumerate() {
            h = squeeze(h);
            for (s, step) in block.steps.iter().enumerate() {
                assert!(step.actnorm.is_initialized());
                let y = step.actnorm.forward(h.clone());
                for (c, (mean, var)) in channel_stats(y).into_iter().enumerate() {
                    assert!(
                        mean.abs() < 1e-3,
                        "block {l} step {s} channel {c}: mean {mean}"
                    );
                    assert!(
                        (var - 1.0).abs() < 1e-2,
                        "block {l} step {s} channel {c}: var {var}"
                    );
                }
                h = step.forward(h);
            }
        }
    }

    #[test]
    fn the_flow_inverse_undoes_the_flow_after_a_data_init() {
        // Tolerance: 1e-4 absolute on inputs of standard deviation 1.
        let device = Device::flex();
        for (rows, len) in [(2, 128), (4, 32)] {
            let spec = spec(rows, len, 0.25, ArchOptions::new());
            let model = busy_model(&spec, &SejnnetOptions::default(), &device).data_init(random(
                [8, rows, len],
                0.0,
                1.0,
                &device,
            ));
            let x = random([5, rows, len], 0.0, 1.0, &device);
            let y = model.flow(x.clone());
            let moved = values((y.clone() - x.clone()).abs().max());
            assert!(
                moved[0] > 0.1,
                "the flow barely changes its input ({moved:?})"
            );
            let back = model.flow_inverse(y);
            let err = values((back - x).abs().max())[0];
            assert!(
                err <= 1e-4,
                "rows {rows}, len {len}: |inverse(flow(x)) − x| = {err:e}"
            );
        }
    }

    #[test]
    fn the_phase_correction_turns_each_iq_pair_back_by_its_estimate() {
        let device = Device::flex();
        let spec = spec(4, 16, 0.25, ArchOptions::new());
        let mut model = busy_model(&spec, &SejnnetOptions::default(), &device);
        let enhancer = model.enhancer.as_mut().unwrap();
        // φ̂ = bias only: 0.3 rad for channel 0, −1.2 rad for channel 1.
        enhancer.phase = LinearConfig::new(4 * 16, 2)
            .with_initializer(Initializer::Zeros)
            .init(&device);
        enhancer.phase.bias = Some(Param::from_tensor(Tensor::from_floats(
            [0.3, -1.2],
            &device,
        )));
        let x = random([1, 4, 16], 0.0, 1.0, &device);
        let y = values(enhancer.correct_phase(x.clone()));
        let x = values(x);
        for (pair, phi) in [(0usize, 0.3f32), (1, -1.2)] {
            for t in 0..16 {
                let (i, q) = (x[2 * pair * 16 + t], x[(2 * pair + 1) * 16 + t]);
                // (I + jQ)·e^{−jφ}
                let (want_i, want_q) =
                    (i * phi.cos() + q * phi.sin(), q * phi.cos() - i * phi.sin());
                let (got_i, got_q) = (y[2 * pair * 16 + t], y[(2 * pair + 1) * 16 + t]);
                assert!((got_i - want_i).abs() < 1e-5 && (got_q - want_q).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn the_parameter_count_is_the_documented_one() {
        // One I/Q channel of 128 samples, 11 classes, width 1: the paper's setting.
        let device = Device::flex();
        let full = spec(2, 128, 1.0, ArchOptions::new());
        let count = |spec: &ModelSpec, o: &SejnnetOptions| {
            Sejnnet::build(spec, o, &device).unwrap().num_params()
        };
        let se = count(&full, &SejnnetOptions::default());
        let jnnet = count(&full, &options(&["enhancer=false"]));
        println!(
            "sejnnet parameters: {se} (paper 277,716, {:+}); JNNet alone: {jnnet}",
            se as i64 - 277_716
        );
        assert_eq!(se, 276_364);
        assert_eq!(jnnet, 108_763);
    }

    #[test]
    fn the_penalty_is_lambda_times_the_attention_weights_per_window() {
        let device = Device::flex();
        let spec = spec(2, 32, 0.25, ArchOptions::new());
        let x = random([3, 2, 32], 0.0, 1.0, &device);
        let model = Sejnnet::build(&spec, &options(&["attention_l1=0.01"]), &device).unwrap();
        let (embedding, penalty) = model.embedding_and_penalty(x.clone());
        assert_eq!(values(embedding), values(model.embedding(x.clone())));
        let (_, weights) = model.encode(x.clone());
        let want = values(weights)[0] * 0.01 / 3.0;
        let got = values(penalty.expect("a penalty"))[0];
        assert!((got - want).abs() <= 1e-6 * want.abs(), "{got} vs {want}");
        // Sigmoid weights in (0, 1): the sum lies between 0 and the number of weights.
        let model = Sejnnet::build(&spec, &options(&["attention_l1=0"]), &device).unwrap();
        assert!(model.embedding_and_penalty(x).1.is_none());
    }

    #[test]
    fn options_the_input_cannot_take_are_refused_naming_them() {
        let device = Device::flex();
        let refuse = |spec: &ModelSpec, o: &SejnnetOptions| {
            Sejnnet::build(spec, o, &device).unwrap_err().to_string()
        };
        let e = refuse(
            &spec(2, 40, 1.0, ArchOptions::new()),
            &SejnnetOptions::default(),
        );
        assert!(
            e.contains("multiple of 16") && e.contains("enhancer=false"),
            "{e}"
        );
        // Without the enhancer any length from 8 will do.
        assert!(
            Sejnnet::build(
                &spec(2, 40, 0.25, ArchOptions::new()),
                &options(&["enhancer=false"]),
                &device
            )
            .is_ok()
        );
        let mut amp = spec(2, 32, 1.0, ArchOptions::new());
        amp.representation = Representation::AmpPhase;
        let e = refuse(&amp, &SejnnetOptions::default());
        assert!(
            e.contains("I/Q pairs") && e.contains("representation iq"),
            "{e}"
        );
        let e = refuse(
            &spec(2, 32, 1.0, ArchOptions::new()),
            &options(&["reduction=0"]),
        );
        assert!(e.contains("reduction"), "{e}");
        let e = crate::train::models::normalize_options(
            "sejnnet",
            &crate::train::models::parse_arch_opts(&["lambda=1".into()]).unwrap(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("lambda") && e.contains("attention_l1"), "{e}");
    }

    use crate::train::models::testing::{windows, write_tone_dataset};

    /// ONNX Runtime through the daemon's `infer::Model` against burn, with and without the
    /// enhancer, on a model whose every part is active (random coupling outputs and phase
    /// estimate, actnorms set from data). Tolerance: max |Δ logit| ≤ 1e-4.
    #[test]
    fn the_onnx_graph_computes_what_burn_computes_with_and_without_the_enhancer() {
        if let Err(e) = crate::infer::runtime::runtime(None) {
            assert!(
                std::env::var("SPECWATCH_REQUIRE_PYTHON").as_deref() != Ok("1"),
                "ONNX Runtime is required here: {e}"
            );
            eprintln!("skipped: {e}");
            return;
        }
        let device = Device::flex();
        let len = 64;
        let dir = tempfile::tempdir().unwrap();
        for enhancer in [true, false] {
            let spec = spec(2, len, 0.25, ArchOptions::new());
            let o = options(&[&format!("enhancer={enhancer}")]);
            let model =
                busy_model(&spec, &o, &device).data_init(random([16, 2, len], 0.0, 1.0, &device));
            let model = Model::Sejnnet(model);
            let onnx = dir.path().join(format!("se{enhancer}.onnx"));
            model
                .to_onnx(&spec, "sejnnet")
                .unwrap()
                .save(&onnx)
                .unwrap();
            let card = serde_json::json!({
                "name": format!("se{enhancer}"), "version": "0.0.1", "task": "amc",
                "window_len": len, "channels": 1, "sample_rate_hz": 200000.0,
                "inputs": [{"name": "iq", "layout": ["N", 2, len], "dtype": "float32",
                            "representation": "iq", "normalization": "unit_rms"}],
                "outputs": [{"name": "logits", "kind": "logits"}],
                "classes": (0..11).map(|c| format!("c{c}")).collect::<Vec<_>>(),
                "dataset": {"name": "parity", "manifest_sha256": "0".repeat(64)},
            });
            std::fs::write(onnx.with_extension("json"), card.to_string()).unwrap();
            let runtime = RuntimeOptions {
                intra_threads: Some(1),
                execution: ExecutionPreference::Cpu,
                ..RuntimeOptions::default()
            };
            let mut served = Served::load(&onnx, &runtime).unwrap();
            for batch in [1, 5] {
                let (raw, x) = windows(batch, len, &device);
                let want = values(model.forward(x));
                let out = served.run(&raw, batch).unwrap();
                let got: Vec<f32> = (0..batch).flat_map(|i| out.scores(i).to_vec()).collect();
                let d = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f32::max);
                println!("sejnnet (enhancer {enhancer}) batch {batch}: max |ort − burn| {d:.2e}");
                assert!(
                    d <= 1e-4,
                    "enhancer {enhancer}, batch {batch}: max |Δ| {d:e}"
                );
            }
        }
    }


    /// The whole trainer on an easy two-class set (slow against fast tones): the actnorms are
    /// set from the first batch, the attention penalty is in the loss, and a small model learns
    /// well above chance (0.5).
    #[test]
    fn a_small_sejnnet_learns_two_easy_classes_through_the_trainer() {
        use crate::train::fit::{FitOptions, TrainConfig, fit};

        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("ds");
        write_tone_dataset(&data, 240, 64, &[10.0]);
        let mut config = TrainConfig::new("sejnnet", &data);
        config.epochs = 10;
        config.batch_size = 32;
        config.lr = 3e-3;
        config.width = 0.25;
        config.dropout = 0.1;
        config.seed = 3;
        let run = tmp.path().join("run");
        let started = std::time::Instant::now();
        let report = fit(&config, &run, FitOptions::default(), &mut |m| {
            println!(
                "epoch {}: train loss {:.4} acc {:.3} | val loss {:.4} acc {:.3} | {:.0} windows/s",
                m.epoch, m.train_loss, m.train_acc, m.val_loss, m.val_acc, m.train_samples_per_s
            );
        })
        .unwrap();
        println!("trained in {:.1} s", started.elapsed().as_secs_f64());
        let best = report.history.iter().map(|m| m.val_acc).fold(0.0, f64::max);
        assert!(best >= 0.85, "validation accuracy {best} (chance 0.5)");
        // The weights it keeps carry the data-initialised actnorms.
        let (_, trained) = crate::train::export::load_trained(&run).unwrap();
        let Model::Sejnnet(trained) = trained else {
            panic!("a sejnnet run loads a sejnnet model")
        };
        let enhancer = trained.enhancer.expect("the enhancer is on by default");
        for block in &enhancer.blocks {
            for step in &block.steps {
                let flag = values(step.actnorm.initialized.val().float());
                assert_eq!(flag, vec![1.0]);
            }
        }
    }
}
