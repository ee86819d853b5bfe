//! CAIC-Net (Wu et al., Sensors 26(3):756, 2026): a ConvLSTM branch and a Transformer branch on
//! a shared convolutional front, fused by a cross-attention unit (CAU) routed by the window's
//! SNR against a threshold τ. The paper's tables are lost; the layer sizes below are this
//! project's choices (`shared/papers/NOTES.md` Part 2 §1), recorded in the options.
//!
//! ```text
//! x [B, rows, len]
//! ─ Conv1d rows → F, k front_kernel, same ─ ReLU ─ MaxPool pool   shared front  [B, F, T]
//! ├ ConvLSTM branch: 2 stacked ConvLSTM layers over the T steps; at step t the input is the
//! │   front's column t, a 1-D signal of F features (1 channel), the state H channels × F:
//! │     g = Conv_x(x_t) + Conv_h(h_{t−1})          k conv_lstm_kernel over the feature axis
//! │     i = σ(g_i + w_ci ⊙ c_{t−1})   f = σ(g_f + w_cf ⊙ c_{t−1})     (peepholes w_c* [H, F])
//! │     c_t = f ⊙ c_{t−1} + i ⊙ tanh(g_c)   o = σ(g_o + w_co ⊙ c_t)   h_t = o ⊙ tanh(c_t)
//! │   the top layer's h_t, flattened, Linear H·F → d: the ConvLSTM tokens L  [B, T, d]
//! └ Transformer branch: Linear F → d ─ + sinusoidal positions ─ layers × post-norm encoder
//!     (x = LN(x + MHA(x)); x = LN(x + FF(x)), ReLU, d_ff)           Transformer tokens S  [B, T, d]
//! CAU, per window by its SNR s (dB):
//!     s < τ: F = S + CA_low(S, L)      (query: Transformer tokens, context: ConvLSTM tokens)
//!     s ≥ τ: F = L + CA_high(L, S)     (query: ConvLSTM tokens, context: Transformer tokens)
//!     both computed, one selected per window (ONNX `Where`)                       [B, T, d]
//! mean over tokens ─ Linear d → E ─ ReLU: the embedding  [B, E]
//! dropout ─ Linear E → num_classes (logits)
//! ```
//!
//! Choices where the paper is silent or lost: the CAU works on the two **token sequences** and
//! pools afterwards (on two pooled vectors one key makes the softmax 1 and the unit degenerate);
//! the front is shared by both branches (the text says they "share the same initial
//! preprocessing layers"); the two routes have attention weights of their own; τ is fixed (a hard
//! switch has no gradient). The ConvLSTM's `h_0 = c_0 = 0`, so its first step has no recurrent
//! or peephole term (the same computation, written without zero tensors in the graph). Without
//! an SNR (`embedding`, a probe) every window takes the `s ≥ τ` route; training and serving feed
//! one (`multitask` with `snr_input`; the card declares `snr_db` and the daemon feeds its
//! estimate).
//!
//! Defaults at width 1 for `[2, 128]` windows, 11 classes: F = 64, pool 8 (T = 16 steps),
//! front kernel 7, H = 48, ConvLSTM kernel 5, d = 128, 4 heads, 4 layers, d_ff 1024, E = 64:
//! **2,021,131 parameters** (the paper: 2.00 M). `width` scales F, H, d (kept a multiple of the
//! heads), d_ff and E.
//!
//! `ablation` gives the paper's architectural ablations: `no_conv_lstm` (F = S), `no_transformer`
//! (F = L), `concat` (the two pooled sequences concatenated, `Linear 2d → E`, in place of the
//! CAU). Those read no SNR. The fourth ablation, without the cross-SNR contrastive term, is the
//! loss's business.
//!
//! The ONNX graph unrolls the ConvLSTM over the T steps (`Slice`, `Conv`, `Split`, `Sigmoid`,
//! `Tanh`, `Mul`, `Add`) with a dynamic batch, and takes the SNR as a second input `snr_db`
//! `[N, 1]`.
//!
//! # Shapes
//! - input: `[batch, rows, len]`, SNR `[batch]` (dB)
//! - output: `[batch, num_classes]` logits

use burn::module::{Module, Param};
use burn::nn::activation::ActivationConfig;
use burn::nn::attention::{MhaInput, MultiHeadAttention, MultiHeadAttentionConfig};
use burn::nn::conv::{Conv1d, Conv1dConfig};
use burn::nn::pool::{MaxPool1d, MaxPool1dConfig};
use burn::nn::transformer::{
    TransformerEncoder, TransformerEncoderConfig, TransformerEncoderInput,
};
use burn::nn::{
    Dropout, DropoutConfig, Initializer, LayerNorm, Linear, LinearConfig, PaddingConfig1d,
    generate_sinusoids,
};
use burn::tensor::activation::{relu, sigmoid, tanh};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::{Architecture, ModelSpec, ParamGroup, onnx_layers};
use crate::onnx::ops::{self, PoolOptions};
use crate::onnx::{GraphBuilder, OnnxError};
use crate::train::TrainError;

/// Which parts of CAIC-Net are built (the paper's architectural ablations).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaicAblation {
    /// The whole model: both branches fused by the SNR-routed CAU.
    #[default]
    None,
    /// Without the ConvLSTM branch: the Transformer tokens alone.
    NoConvLstm,
    /// Without the Transformer branch: the ConvLSTM tokens alone.
    NoTransformer,
    /// The two pooled branches concatenated in place of the CAU.
    Concat,
}

/// CAIC-Net's options (`--arch-opt key=value`); sizes are at width 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaicOptions {
    /// τ (dB): a window with SNR below it queries with the Transformer tokens, otherwise with
    /// the ConvLSTM tokens.
    pub snr_threshold_db: f64,
    /// Front convolution filters F.
    pub front_channels: usize,
    /// Front convolution kernel (odd).
    pub front_kernel: usize,
    /// Max-pool size and stride after the front convolution (T = len / pool steps).
    pub pool: usize,
    /// ConvLSTM state channels H.
    pub conv_lstm_hidden: usize,
    /// ConvLSTM kernel over the feature axis (odd).
    pub conv_lstm_kernel: usize,
    /// Token width d of both branches and the CAU.
    pub d_model: usize,
    /// Attention heads (encoder and CAU); d must be a multiple of it.
    pub heads: usize,
    /// Transformer encoder layers.
    pub layers: usize,
    /// Feed-forward width of each encoder layer.
    pub d_ff: usize,
    /// Embedding width E.
    pub embedding: usize,
    /// Which parts are built.
    pub ablation: CaicAblation,
}

impl Default for CaicOptions {
    fn default() -> Self {
        Self {
            snr_threshold_db: 0.0,
            front_channels: 64,
            front_kernel: 7,
            pool: 8,
            conv_lstm_hidden: 48,
            conv_lstm_kernel: 5,
            d_model: 128,
            heads: 4,
            layers: 4,
            d_ff: 1024,
            embedding: 64,
            ablation: CaicAblation::None,
        }
    }
}

/// One ConvLSTM layer with peepholes (see the module documentation).
#[derive(Module, Debug)]
pub struct ConvLstm {
    /// Input → the four gates (i, f, c, o), `[4H]` channels, with the bias.
    input: Conv1d,
    /// State → the four gates, no bias.
    hidden: Conv1d,
    /// Peepholes `[H, F]` of the input, forget and output gates.
    peep_i: Param<Tensor<2>>,
    peep_f: Param<Tensor<2>>,
    peep_o: Param<Tensor<2>>,
    channels: usize,
}

fn same_conv(c_in: usize, c_out: usize, kernel: usize, bias: bool, device: &Device) -> Conv1d {
    let pad = kernel / 2;
    Conv1dConfig::new(c_in, c_out, kernel)
        .with_padding(PaddingConfig1d::Explicit(pad, pad))
        .with_bias(bias)
        .init(device)
}

impl ConvLstm {
    fn new(c_in: usize, channels: usize, features: usize, kernel: usize, device: &Device) -> Self {
        let peep = || {
            Initializer::Normal {
                mean: 0.0,
                std: 0.1,
            }
            .init([channels, features], device)
        };
        Self {
            input: same_conv(c_in, 4 * channels, kernel, true, device),
            hidden: same_conv(channels, 4 * channels, kernel, false, device),
            peep_i: peep(),
            peep_f: peep(),
            peep_o: peep(),
            channels,
        }
    }

    /// The states `h_t` `[B, H, F]` of inputs `xs` (one `[B, C_in, F]` per step).
    fn forward(&self, xs: Vec<Tensor<3>>) -> Vec<Tensor<3>> {
        let h_ch = self.channels;
        let mut state: Option<(Tensor<3>, Tensor<3>)> = None;
        let mut out = Vec::with_capacity(xs.len());
        for x in xs {
            let mut gates = self.input.forward(x); // [B, 4H, F]
            if let Some((h, _)) = &state {
                gates = gates + self.hidden.forward(h.clone());
            }
            let [b, _, f] = gates.dims();
            let gate = |k: usize| gates.clone().slice([0..b, k * h_ch..(k + 1) * h_ch, 0..f]);
            let peep = |p: &Param<Tensor<2>>, c: &Tensor<3>| p.val().unsqueeze_dim(0) * c.clone();
            let cell = tanh(gate(2));
            let c = match &state {
                Some((_, c_prev)) => {
                    let i = sigmoid(gate(0) + peep(&self.peep_i, c_prev));
                    let f = sigmoid(gate(1) + peep(&self.peep_f, c_prev));
                    f * c_prev.clone() + i * cell
                }
                None => sigmoid(gate(0)) * cell,
            }; // [B, H, F]
            let o = sigmoid(gate(3) + peep(&self.peep_o, &c));
            let h = o * tanh(c.clone()); // [B, H, F]
            out.push(h.clone());
            state = Some((h, c));
        }
        out
    }

    /// The same in `g`: one value `[N, H, F]` per step.
    fn to_onnx(
        &self,
        g: &mut GraphBuilder,
        layer: &str,
        xs: &[String],
    ) -> Result<Vec<String>, OnnxError> {
        let h_ch = self.channels;
        let (wx, ox) = onnx_layers::conv1d(&self.input, &format!("{layer}.input"))?;
        let (wh, oh) = onnx_layers::conv1d(&self.hidden, &format!("{layer}.hidden"))?;
        let mut peeps = Vec::new();
        for (name, p) in [
            ("peep_i", &self.peep_i),
            ("peep_f", &self.peep_f),
            ("peep_o", &self.peep_o),
        ] {
            let w = onnx_layers::tensor(p.val(), &format!("{layer}.{name}"))?;
            peeps.push(g.initializer(&format!("{layer}.{name}"), &w)?);
        }
        let mut state: Option<(String, String)> = None;
        let mut out = Vec::with_capacity(xs.len());
        for (t, x) in xs.iter().enumerate() {
            let mut gates = ops::conv(g, &format!("{layer}.input.t{t}"), x, &wx, &ox)?;
            if let Some((h, _)) = &state {
                let r = ops::conv(g, &format!("{layer}.hidden.t{t}"), h, &wh, &oh)?;
                gates = ops::add(g, &gates, &r)?;
            }
            let parts = ops::split(g, &gates, 1, &[h_ch; 4])?; // 4 × [N, H, F]
            let cell = ops::tanh(g, &parts[2])?;
            let c = match &state {
                Some((_, c_prev)) => {
                    let pi = ops::mul(g, c_prev, &peeps[0])?;
                    let i = ops::add(g, &parts[0], &pi)?;
                    let i = ops::sigmoid(g, &i)?;
                    let pf = ops::mul(g, c_prev, &peeps[1])?;
                    let f = ops::add(g, &parts[1], &pf)?;
                    let f = ops::sigmoid(g, &f)?;
                    let keep = ops::mul(g, &f, c_prev)?;
                    let write = ops::mul(g, &i, &cell)?;
                    ops::add(g, &keep, &write)?
                }
                None => {
                    let i = ops::sigmoid(g, &parts[0])?;
                    ops::mul(g, &i, &cell)?
                }
            };
            let po = ops::mul(g, &c, &peeps[2])?;
            let o = ops::add(g, &parts[3], &po)?;
            let o = ops::sigmoid(g, &o)?;
            let tc = ops::tanh(g, &c)?;
            let h = ops::mul(g, &o, &tc)?;
            out.push(h.clone());
            state = Some((h, c));
        }
        Ok(out)
    }
}

/// The ConvLSTM branch: two layers and the token projection.
#[derive(Module, Debug)]
pub struct ConvLstmBranch {
    layers: Vec<ConvLstm>,
    /// `H·F → d`.
    tokens: Linear,
}

/// The Transformer branch: embedding, positions, post-norm encoder.
#[derive(Module, Debug)]
pub struct TransformerBranch {
    /// `F → d`.
    embed: Linear,
    encoder: TransformerEncoder,
}

/// The cross-attention unit: one attention per route.
#[derive(Module, Debug)]
pub struct Cau {
    /// `s < τ`: Transformer tokens query the ConvLSTM tokens.
    low: MultiHeadAttention,
    /// `s ≥ τ`: ConvLSTM tokens query the Transformer tokens.
    high: MultiHeadAttention,
}

/// CAIC-Net (see the module documentation).
#[derive(Module, Debug)]
pub struct Caic {
    front: Conv1d,
    pool: MaxPool1d,
    conv_lstm: Option<ConvLstmBranch>,
    transformer: Option<TransformerBranch>,
    cau: Option<Cau>,
    /// Pooled tokens (d, or 2d under `concat`) → E.
    embed: Linear,
    head: Linear,
    dropout: Dropout,
    /// τ in dB.
    threshold_db: f64,
    /// Pool size and token count T (the exporter needs them).
    pool_size: usize,
    tokens: usize,
    layer_norm_eps: f64,
}

fn check(spec: &ModelSpec, o: &CaicOptions) -> Result<(), String> {
    for (name, v) in [
        ("front_channels", o.front_channels),
        ("pool", o.pool),
        ("conv_lstm_hidden", o.conv_lstm_hidden),
        ("d_model", o.d_model),
        ("heads", o.heads),
        ("layers", o.layers),
        ("d_ff", o.d_ff),
        ("embedding", o.embedding),
    ] {
        if v == 0 {
            return Err(format!("{name} is 0; expected at least 1"));
        }
    }
    for (name, k) in [
        ("front_kernel", o.front_kernel),
        ("conv_lstm_kernel", o.conv_lstm_kernel),
    ] {
        if k.is_multiple_of(2) {
            return Err(format!("{name} is {k}; expected an odd kernel"));
        }
    }
    if spec.window_len < o.pool {
        return Err(format!(
            "a window of {} samples is shorter than one pool of {}; lower pool",
            spec.window_len, o.pool
        ));
    }
    if !o.snr_threshold_db.is_finite() {
        return Err("snr_threshold_db is not finite".into());
    }
    Ok(())
}

impl Caic {
    /// Whether the SNR-routed CAU is built (the model reads the SNR).
    fn routed(&self) -> bool {
        self.cau.is_some()
    }

    /// The front `[B, F, T]`.
    fn front(&self, x: Tensor<3>) -> Tensor<3> {
        self.pool.forward(relu(self.front.forward(x)))
    }

    /// The ConvLSTM tokens `[B, T, d]` of the front `z` `[B, F, T]`.
    fn conv_lstm_tokens(branch: &ConvLstmBranch, z: Tensor<3>) -> Tensor<3> {
        let [b, f, t] = z.dims();
        let mut xs: Vec<Tensor<3>> = (0..t)
            .map(|k| z.clone().slice([0..b, 0..f, k..k + 1]).reshape([b, 1, f]))
            .collect(); // T × [B, 1, F]
        for layer in &branch.layers {
            xs = layer.forward(xs); // T × [B, H, F]
        }
        let flat: Vec<Tensor<2>> = xs.into_iter().map(|h| h.flatten(1, 2)).collect();
        let seq: Tensor<3> = Tensor::stack(flat, 1); // [B, T, H·F]
        branch.tokens.forward(seq) // [B, T, d]
    }

    /// The Transformer tokens `[B, T, d]` of the front `z` `[B, F, T]`.
    fn transformer_tokens(branch: &TransformerBranch, z: Tensor<3>) -> Tensor<3> {
        let [_, _, t] = z.dims();
        let x = branch.embed.forward(z.swap_dims(1, 2)); // [B, T, d]
        let d = x.dims()[2];
        let table = generate_sinusoids(t, d, 10_000.max(t), &x.device()); // [T, d]
        let x = x + table.unsqueeze_dim(0);
        branch.encoder.forward(TransformerEncoderInput::new(x)) // [B, T, d]
    }

    /// The pooled features `[B, d]` (`[B, 2d]` under `concat`); windows with `snr_db` below τ
    /// take the low route, the rest (all, without an SNR) the high one.
    fn features(&self, x: Tensor<3>, snr_db: Option<Tensor<1>>) -> Tensor<2> {
        let z = self.front(x); // [B, F, T]
        let l = self
            .conv_lstm
            .as_ref()
            .map(|b| Self::conv_lstm_tokens(b, z.clone()));
        let s = self
            .transformer
            .as_ref()
            .map(|b| Self::transformer_tokens(b, z));
        let fused = match (l, s, &self.cau) {
            (Some(l), Some(s), Some(cau)) => {
                let high = l.clone()
                    + cau
                        .high
                        .forward(MhaInput::new(l.clone(), s.clone(), s.clone()))
                        .context;
                match snr_db {
                    Some(snr) => {
                        let low = s.clone()
                            + cau
                                .low
                                .forward(MhaInput::new(s.clone(), l.clone(), l))
                                .context;
                        let [b] = snr.dims();
                        // 1 on the low route, 0 on the high one.
                        let m = snr.lower_elem(self.threshold_db).float().reshape([b, 1, 1]); // [B, 1, 1]
                        low * m.clone() + high * m.neg().add_scalar(1.0)
                    }
                    None => high,
                }
            }
            (Some(l), Some(s), None) => {
                let pooled = Tensor::cat(vec![l, s], 2); // [B, T, 2d]
                return pooled.mean_dim(1).squeeze_dim(1);
            }
            (Some(only), None, _) | (None, Some(only), _) => only,
            (None, None, _) => unreachable!("build keeps at least one branch"),
        }; // [B, T, d]
        fused.mean_dim(1).squeeze_dim(1) // [B, d]
    }

    fn embedding_from(&self, x: Tensor<3>, snr_db: Option<Tensor<1>>) -> Tensor<2> {
        relu(self.embed.forward(self.features(x, snr_db))) // [B, E]
    }

    fn post_norm_layer_onnx(
        &self,
        g: &mut GraphBuilder,
        name: &str,
        layer: &burn::nn::transformer::TransformerEncoderLayer,
        x: &str,
    ) -> Result<String, OnnxError> {
        let eps = self.layer_norm_eps;
        let ln = |g: &mut GraphBuilder, which: &str, norm: &LayerNorm, x: &str| {
            let n = format!("{name}.{which}");
            ops::layer_norm(g, &n, x, &onnx_layers::layer_norm(norm, eps, &n)?)
        };
        let attn_name = format!("{name}.mha");
        let a = ops::self_attention(g, &attn_name, x, &onnx_layers::mha(&layer.mha, &attn_name)?)?;
        let x1 = ops::add(g, x, &a)?;
        let x1 = ln(g, "norm_1", &layer.norm_1, &x1)?;
        let inner_name = format!("{name}.ff_inner");
        let outer_name = format!("{name}.ff_outer");
        let h = ops::linear(
            g,
            &inner_name,
            &x1,
            &onnx_layers::linear(&layer.pwff.linear_inner, &inner_name)?,
        )?;
        let h = ops::relu(g, &h)?;
        let f = ops::linear(
            g,
            &outer_name,
            &h,
            &onnx_layers::linear(&layer.pwff.linear_outer, &outer_name)?,
        )?;
        let x2 = ops::add(g, &x1, &f)?;
        ln(g, "norm_2", &layer.norm_2, &x2)
    }

    fn embedding_onnx(
        &self,
        g: &mut GraphBuilder,
        x: &str,
        snr: Option<&str>,
    ) -> Result<String, OnnxError> {
        let (w, opts) = onnx_layers::conv1d(&self.front, "front")?;
        let z = ops::conv(g, "front", x, &w, &opts)?; // [N, F, len]
        let z = ops::relu(g, &z)?;
        let z = ops::max_pool(g, "front.pool", &z, &PoolOptions::new(&[self.pool_size]))?; // [N, F, T]
        let features = self.front.weight.dims()[0] as i64;
        let l = match &self.conv_lstm {
            Some(branch) => {
                let t = self.tokens;
                let mut xs = Vec::with_capacity(t);
                for k in 0..t as i64 {
                    let col = ops::slice(g, &z, &[k], &[k + 1], &[2], &[])?; // [N, F, 1]
                    xs.push(ops::reshape(g, &col, &[0, 1, features])?); // [N, 1, F]
                }
                for (i, layer) in branch.layers.iter().enumerate() {
                    xs = layer.to_onnx(g, &format!("conv_lstm{i}"), &xs)?; // T × [N, H, F]
                }
                let flat: Vec<String> = xs
                    .iter()
                    .map(|h| ops::reshape(g, h, &[0, 1, -1]))
                    .collect::<Result<_, _>>()?; // T × [N, 1, H·F]
                let refs: Vec<&str> = flat.iter().map(String::as_str).collect();
                let seq = ops::concat(g, &refs, 1)?; // [N, T, H·F]
                Some(ops::linear(
                    g,
                    "conv_lstm.tokens",
                    &seq,
                    &onnx_layers::linear(&branch.tokens, "conv_lstm.tokens")?,
                )?) // [N, T, d]
            }
            None => None,
        };
        let s = match &self.transformer {
            Some(branch) => {
                let seq = ops::transpose(g, &z, &[0, 2, 1])?; // [N, T, F]
                let mut x = ops::linear(
                    g,
                    "transformer.embed",
                    &seq,
                    &onnx_layers::linear(&branch.embed, "transformer.embed")?,
                )?; // [N, T, d]
                let d = branch.embed.weight.dims()[1];
                let t = self.tokens;
                let table = onnx_layers::tensor(
                    generate_sinusoids(t, d, 10_000.max(t), &Device::flex()),
                    "transformer.position",
                )?;
                x = ops::positional_embedding(g, "transformer.position", &x, &table)?;
                for (k, layer) in branch.encoder.layers.iter().enumerate() {
                    x =
                        self.post_norm_layer_onnx(g, &format!("transformer.layer{k}"), layer, &x)?;
                }
                Some(x)
            }
            None => None,
        };
        let fused = match (l, s, &self.cau) {
            (Some(l), Some(s), Some(cau)) => {
                let high = ops::cross_attention(
                    g,
                    "cau.high",
                    &l,
                    &s,
                    &onnx_layers::mha(&cau.high, "cau.high")?,
                )?;
                let high = ops::add(g, &l, &high)?;
                match snr {
                    Some(snr) => {
                        let low = ops::cross_attention(
                            g,
                            "cau.low",
                            &s,
                            &l,
                            &onnx_layers::mha(&cau.low, "cau.low")?,
                        )?;
                        let low = ops::add(g, &s, &low)?;
                        let tau = ops::scalar(g, "cau.threshold_db", self.threshold_db as f32)?;
                        let below = ops::less(g, snr, &tau)?; // [N, 1] bool
                        let below = ops::reshape(g, &below, &[0, 1, 1])?; // [N, 1, 1]
                        ops::where_(g, &below, &low, &high)?
                    }
                    None => high,
                }
            }
            (Some(l), Some(s), None) => {
                ops::concat(g, &[&l, &s], 2)? // [N, T, 2d]
            }
            (Some(only), None, _) | (None, Some(only), _) => only,
            (None, None, _) => {
                return Err(OnnxError::Layer {
                    layer: "caic".into(),
                    what: "neither branch is built".into(),
                });
            }
        };
        let pooled = ops::reduce_mean(g, &fused, &[1], false)?; // [N, d]
        let e = ops::gemm(
            g,
            "embed",
            &pooled,
            &onnx_layers::linear(&self.embed, "embed")?,
        )?;
        ops::relu(g, &e) // [N, E]
    }
}

impl Architecture for Caic {
    const NAME: &'static str = "caic";
    type Options = CaicOptions;

    fn build(spec: &ModelSpec, o: &CaicOptions, device: &Device) -> Result<Self, TrainError> {
        check(spec, o).map_err(|p| TrainError::param("arch-opt", format!("caic: {p}")))?;
        let features = spec.scaled(o.front_channels);
        let hidden = spec.scaled(o.conv_lstm_hidden);
        // d a multiple of the heads, and even (sinusoidal positions come in sin/cos pairs).
        let per_head = spec.scaled(o.d_model / o.heads.max(1)).max(1);
        let mut d = per_head * o.heads;
        if d % 2 == 1 {
            d += o.heads;
        }
        let d_ff = spec.scaled(o.d_ff);
        let e = spec.scaled(o.embedding);
        let tokens = spec.window_len / o.pool;
        let with_lstm = o.ablation != CaicAblation::NoConvLstm;
        let with_transformer = o.ablation != CaicAblation::NoTransformer;
        let mha = || {
            MultiHeadAttentionConfig::new(d, o.heads)
                .with_dropout(spec.dropout)
                .init(device)
        };
        let layer_norm_eps = 1e-5;
        Ok(Caic {
            front: same_conv(spec.rows, features, o.front_kernel, true, device),
            pool: MaxPool1dConfig::new(o.pool).with_stride(o.pool).init(),
            conv_lstm: with_lstm.then(|| ConvLstmBranch {
                layers: vec![
                    ConvLstm::new(1, hidden, features, o.conv_lstm_kernel, device),
                    ConvLstm::new(hidden, hidden, features, o.conv_lstm_kernel, device),
                ],
                tokens: LinearConfig::new(hidden * features, d).init(device),
            }),
            transformer: with_transformer.then(|| TransformerBranch {
                embed: LinearConfig::new(features, d).init(device),
                encoder: TransformerEncoderConfig::new(d, d_ff, o.heads, o.layers)
                    .with_dropout(spec.dropout)
                    .with_norm_first(false)
                    .with_activation(ActivationConfig::Relu)
                    .with_layer_norm_eps(layer_norm_eps)
                    .init(device),
            }),
            cau: (o.ablation == CaicAblation::None).then(|| Cau {
                low: mha(),
                high: mha(),
            }),
            embed: LinearConfig::new(
                if o.ablation == CaicAblation::Concat {
                    2 * d
                } else {
                    d
                },
                e,
            )
            .init(device),
            head: LinearConfig::new(e, spec.num_classes).init(device),
            dropout: DropoutConfig::new(spec.dropout).init(),
            threshold_db: o.snr_threshold_db,
            pool_size: o.pool,
            tokens,
            layer_norm_eps,
        })
    }

    fn reads_snr(&self) -> bool {
        self.routed()
    }

    /// Without an SNR every window takes the `s ≥ τ` route.
    fn embedding(&self, x: Tensor<3>) -> Tensor<2> {
        self.embedding_from(x, None)
    }

    fn embedding_with_snr(&self, x: Tensor<3>, snr_db: Option<Tensor<1>>) -> Tensor<2> {
        self.embedding_from(x, snr_db)
    }

    fn classify(&self, embedding: Tensor<2>) -> Tensor<2> {
        self.head.forward(self.dropout.forward(embedding)) // [B, num_classes]
    }

    fn embedding_to_onnx(&self, g: &mut GraphBuilder, x: &str) -> Result<String, OnnxError> {
        self.embedding_onnx(g, x, None)
    }

    fn embedding_with_snr_to_onnx(
        &self,
        g: &mut GraphBuilder,
        x: &str,
        snr: Option<&str>,
    ) -> Result<String, OnnxError> {
        self.embedding_onnx(g, x, snr)
    }

    fn classify_to_onnx(&self, g: &mut GraphBuilder, embedding: &str) -> Result<String, OnnxError> {
        ops::gemm(
            g,
            "head",
            embedding,
            &onnx_layers::linear(&self.head, "head")?,
        )
    }

    fn head_params(&self) -> ParamGroup {
        ParamGroup::ids_from_module(self.head.clone())
    }

    fn with_head_of(self, fresh: Self) -> Self {
        Self {
            head: fresh.head,
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, TensorData};

    use super::*;
    use crate::dsp::repr::Representation;
    use crate::infer::{ExecutionPreference, Model as Served, RuntimeOptions};
    use crate::train::models::{ArchOptions, Model, check_snr_fed, parse_arch_opts};

    fn spec(window_len: usize, width: f64) -> ModelSpec {
        ModelSpec {
            num_classes: 11,
            rows: 2,
            window_len,
            dropout: 0.0,
            width,
            representation: Representation::Iq,
            options: ArchOptions::new(),
        }
    }

    fn options(pairs: &[&str]) -> CaicOptions {
        let pairs: Vec<String> = pairs.iter().map(|p| p.to_string()).collect();
        let value = serde_json::Value::Object(parse_arch_opts(&pairs).unwrap());
        serde_json::from_value(value).unwrap()
    }

    /// A small model: width 0.25, 2 layers, short windows.
    fn small(o: &CaicOptions, device: &Device) -> Caic {
        device.seed(9);
        Caic::build(&spec(64, 0.25), o, device).unwrap()
    }

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_into_vec::<f32>().unwrap()
    }

    fn snr(v: &[f32], device: &Device) -> Tensor<1> {
        Tensor::from_data(TensorData::new(v.to_vec(), [v.len()]), device)
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    #[test]
    fn the_parameter_count_is_the_documented_one() {
        // One I/Q channel of 128 samples, 11 classes, width 1: the paper's setting.
        let device = Device::flex();
        let count = |o: &CaicOptions| {
            Caic::build(&spec(128, 1.0), o, &device)
                .unwrap()
                .num_params()
        };
        let full = count(&CaicOptions::default());
        println!("caic parameters: {full} (paper 2.00 M)");
        for ablation in ["no_conv_lstm", "no_transformer", "concat"] {
            let n = count(&options(&[&format!("ablation={ablation}")]));
            println!("caic {ablation}: {n}");
            assert!(n < full, "{ablation}: {n}");
        }
        assert_eq!(full, 2_021_131);
    }

    /// A window's logits depend on its SNR only through the side of τ it lies on, windows of a
    /// batch are routed each by its own SNR, and the two sides give different logits.
    #[test]
    fn each_window_is_routed_by_the_side_of_tau_its_snr_is_on() {
        let device = Device::flex();
        let model = small(&options(&["snr_threshold_db=2"]), &device);
        let x = Tensor::<3>::random([1, 2, 64], Distribution::Normal(0.0, 1.0), &device);
        let at = |s: f32| {
            let e = model.embedding_with_snr(x.clone(), Some(snr(&[s], &device)));
            values(model.classify(e))
        };
        let (low, high) = (at(-20.0), at(15.0));
        assert_eq!(
            at(1.9),
            low,
            "the same side (below τ) gives the same logits"
        );
        assert_eq!(at(2.0), high, "τ itself is on the high side");
        assert!(
            max_diff(&low, &high) > 1e-4,
            "the two routes agree: {low:?}"
        );
        // Without an SNR every window takes the high route.
        assert_eq!(values(model.forward(x.clone())), high);
        // In one batch: each window as if alone.
        let xs = Tensor::cat(vec![x.clone(), x.clone(), x], 0);
        let mixed = values(
            model.classify(model.embedding_with_snr(xs, Some(snr(&[5.0, -3.0, 2.0], &device)))),
        );
        let k = low.len();
        assert!(max_diff(&mixed[..k], &high) < 1e-5);
        assert!(max_diff(&mixed[k..2 * k], &low) < 1e-5);
        assert!(max_diff(&mixed[2 * k..], &high) < 1e-5);
        // The ablations read no SNR.
        for ablation in ["no_conv_lstm", "no_transformer", "concat"] {
            let m = small(&options(&[&format!("ablation={ablation}")]), &device);
            assert!(!m.reads_snr(), "{ablation}");
        }
        assert!(model.reads_snr());
    }

    use crate::train::models::testing::{windows, write_tone_dataset};

    /// ONNX Runtime through the daemon's `infer::Model` (the `snr_db` input fed) against burn,
    /// SNRs on both sides of τ in each batch, for the whole model and each ablation. Tolerance:
    /// max |Δ logit| ≤ 1e-4.
    #[test]
    fn the_onnx_graph_computes_what_burn_computes_on_both_routes() {
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
        for ablation in ["none", "no_conv_lstm", "no_transformer", "concat"] {
            let o = options(&[&format!("ablation={ablation}"), "layers=2"]);
            let model = Model::Caic(small(&o, &device));
            let spec = spec(len, 0.25);
            let onnx = dir.path().join(format!("caic_{ablation}.onnx"));
            model.to_onnx(&spec, "caic").unwrap().save(&onnx).unwrap();
            let mut card = serde_json::json!({
                "name": format!("caic_{ablation}"), "version": "0.0.1", "task": "amc",
                "window_len": len, "channels": 1, "sample_rate_hz": 200000.0,
                "inputs": [{"name": "iq", "layout": ["N", 2, len], "dtype": "float32",
                            "representation": "iq", "normalization": "unit_rms"}],
                "outputs": [{"name": "logits", "kind": "logits"}],
                "classes": (0..11).map(|c| format!("c{c}")).collect::<Vec<_>>(),
                "dataset": {"name": "parity", "manifest_sha256": "0".repeat(64)},
            });
            if model.reads_snr() {
                card["extra_inputs"] = serde_json::json!([
                    {"name": "snr_db", "kind": "snr_db", "layout": ["N", 1], "dtype": "float32"}
                ]);
            }
            std::fs::write(onnx.with_extension("json"), card.to_string()).unwrap();
            let runtime = RuntimeOptions {
                intra_threads: Some(1),
                execution: ExecutionPreference::Cpu,
                ..RuntimeOptions::default()
            };
            let mut served = Served::load(&onnx, &runtime).unwrap();
            for batch in [1, 5] {
                let (raw, x) = windows(batch, len, &device);
                let snrs: Vec<f32> = (0..batch).map(|i| 4.0 - 3.0 * i as f32).collect();
                let want = values(model.forward_with_snr(x, Some(snr(&snrs, &device))));
                let out = if model.reads_snr() {
                    served.run_with_snr(&raw, batch, &snrs).unwrap()
                } else {
                    served.run(&raw, batch).unwrap()
                };
                let got: Vec<f32> = (0..batch).flat_map(|i| out.scores(i).to_vec()).collect();
                let d = max_diff(&got, &want);
                println!("caic {ablation} batch {batch}: max |ort − burn| {d:.2e}");
                assert!(d <= 1e-4, "{ablation}, batch {batch}: max |Δ| {d:e}");
            }
        }
    }

    #[test]
    fn caic_without_an_snr_input_or_with_impossible_options_is_refused_naming_the_fix() {
        let device = Device::flex();
        let model = Model::Caic(small(&CaicOptions::default(), &device));
        let e = check_snr_fed(&model, false).unwrap_err().to_string();
        assert!(
            e.contains(
                r#"--objective '{"kind":"multitask","angles":false,"snr_input":"estimate"}'"#
            ),
            "{e}"
        );
        assert!(check_snr_fed(&model, true).is_ok());
        let ablated = Model::Caic(small(&options(&["ablation=concat"]), &device));
        assert!(check_snr_fed(&ablated, false).is_ok());
        let refuse = |o: &CaicOptions| {
            Caic::build(&spec(64, 0.25), o, &device)
                .unwrap_err()
                .to_string()
        };
        let e = refuse(&options(&["conv_lstm_kernel=4"]));
        assert!(e.contains("conv_lstm_kernel") && e.contains("odd"), "{e}");
        let e = refuse(&options(&["pool=128"]));
        assert!(e.contains("pool"), "{e}");
        let e = crate::train::models::normalize_options(
            "caic",
            &parse_arch_opts(&["tau=1".into()]).unwrap(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("tau") && e.contains("snr_threshold_db"), "{e}");
    }


    /// The whole trainer on an easy two-class set at SNRs on both sides of τ: the multitask
    /// objective feeds the dataset's SNR to the architecture (no per-class bias), the cross-SNR
    /// term is in the loss, a small model learns well above chance (0.5), and the exported
    /// interface takes `snr_db`.
    #[test]
    fn a_small_caic_learns_two_easy_classes_through_the_trainer() {
        use crate::train::fit::{FitOptions, TrainConfig, fit};
        use crate::train::objective::ObjectiveConfig;

        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("ds");
        write_tone_dataset(&data, 200, 64, &[-4.0, 10.0]);
        let mut config = TrainConfig::new("caic", &data);
        config.epochs = 6;
        config.batch_size = 32;
        config.lr = 2e-3;
        config.width = 0.25;
        config.dropout = 0.1;
        config.seed = 3;
        config.arch_options = parse_arch_opts(&["layers=1".into()]).unwrap();
        // Without an SNR input the run is refused, naming the objective that feeds one.
        let refused = fit(
            &config,
            &tmp.path().join("refused"),
            FitOptions::default(),
            &mut |_| {},
        )
        .unwrap_err()
        .to_string();
        assert!(refused.contains("snr_input"), "{refused}");
        config.objective = serde_json::from_str::<ObjectiveConfig>(
            r#"{"kind": "multitask", "angles": false, "snr_input": "true",
                "loss": {"name": "focal", "gamma": 2}, "cross_snr_weight": 0.1}"#,
        )
        .unwrap();
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
        assert!(best >= 0.9, "validation accuracy {best} (chance 0.5)");
        // The export takes the SNR: the card declares `snr_db`, and ONNX Runtime, fed it,
        // computes what burn does on the test windows (export's own check, ≤ 1e-4).
        if crate::infer::runtime::runtime(None).is_err() {
            return;
        }
        let out = tmp.path().join("models").join("caic");
        let exported =
            crate::train::export::export(&crate::train::export::ExportOptions::new(&run, &out))
                .unwrap();
        let extra: Vec<&str> = exported
            .card
            .extra_inputs
            .iter()
            .map(|i| i.name.as_str())
            .collect();
        assert_eq!(extra, ["snr_db"]);
        for (output, d) in &exported.parity_max_abs {
            assert!(*d <= 1e-4, "{output}: max |Δ| {d:e}");
        }
    }
}
