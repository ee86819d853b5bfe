//! A small Transformer-encoder classifier for IQ windows, in the manner of the vision
//! transformer (Dosovitskiy et al., 2021) applied to signals: the window is cut into patches of
//! `patch` samples, each patch embedded, a learned position added, then `n_layers` encoder
//! layers, a mean over the patches and a dense layer.
//!
//! ```text
//! Conv1d rows → d_model, kernel = stride = patch     patch embedding  [batch, d_model, tokens]
//! + learned position table [tokens, d_model], dropout
//! n_layers × pre-norm encoder layer:
//!     x = x + MHA(LayerNorm(x))                       n_heads heads, softmax attention
//!     x = x + Linear(GELU(Linear(LayerNorm(x))))      d_model → d_ff → d_model
//! LayerNorm → mean over tokens → Dense num_classes (logits)
//! ```
//!
//! `tokens = len / patch` (a tail shorter than a patch is not seen). Defaults: patch 8 (16
//! tokens for a 128-sample window), d_model 64, 4 heads, 2 layers, d_ff 128; `width` scales
//! d_model (kept a multiple of the head count) and d_ff. Pre-norm layers (burn's
//! `norm_first`) train stably from scratch on small data; dropout applies after the embedding,
//! inside attention and on each residual branch.
//!
//! # Shapes
//! - input: `[batch, rows, len]`
//! - output: `[batch, num_classes]` logits

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::activation::{Activation, ActivationConfig};
use burn::nn::conv::{Conv1d, Conv1dConfig};
use burn::nn::transformer::{
    TransformerEncoder, TransformerEncoderConfig, TransformerEncoderInput,
};
use burn::nn::{
    Dropout, DropoutConfig, Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig,
    PaddingConfig1d,
};
use burn::tensor::{Device, Tensor};

use serde::{Deserialize, Serialize};

use super::{Architecture, ModelSpec, ParamGroup, onnx_layers};
use crate::onnx::proto::AttributeProto;
use crate::onnx::{GraphBuilder, OnnxError, ops};
use crate::train::TrainError;

/// Configuration of [`Transformer`].
#[derive(Config, Debug)]
pub struct TransformerConfig {
    /// Output classes.
    pub num_classes: usize,
    /// Samples per row `L`.
    pub window_len: usize,
    /// Input rows `2C`.
    #[config(default = 2)]
    pub rows: usize,
    /// Dropout probability (embedding, attention weights, residual branches).
    #[config(default = 0.1)]
    pub dropout: f64,
    /// Samples per patch (token).
    #[config(default = 8)]
    pub patch: usize,
    /// Embedding width.
    #[config(default = 64)]
    pub d_model: usize,
    /// Attention heads (`d_model` must be a multiple).
    #[config(default = 4)]
    pub n_heads: usize,
    /// Encoder layers.
    #[config(default = 2)]
    pub n_layers: usize,
    /// Hidden width of each feed-forward block.
    #[config(default = 128)]
    pub d_ff: usize,
    /// Epsilon of every LayerNorm.
    #[config(default = 1e-5)]
    pub layer_norm_eps: f64,
}

/// The Transformer-encoder classifier (see the module documentation).
#[derive(Module, Debug)]
pub struct Transformer {
    patch_embed: Conv1d,
    /// Learned position embedding, `[tokens, d_model]`.
    position: Param<Tensor<2>>,
    encoder: TransformerEncoder,
    norm: LayerNorm,
    head: Linear,
    dropout: Dropout,
    /// The LayerNorms' epsilon (burn keeps it private in `LayerNorm`; the exporter needs it).
    layer_norm_eps: f64,
}

impl TransformerConfig {
    /// Tokens per window: `window_len / patch`.
    pub fn tokens(&self) -> usize {
        self.window_len / self.patch.max(1)
    }

    /// Why this configuration cannot be built, if it cannot.
    pub fn problem(&self) -> Option<String> {
        if self.patch == 0 || self.window_len < self.patch {
            return Some(format!(
                "a window of {} samples is shorter than one patch of {} samples",
                self.window_len, self.patch
            ));
        }
        if self.n_heads == 0 || !self.d_model.is_multiple_of(self.n_heads) {
            return Some(format!(
                "d_model {} does not split into {} attention heads",
                self.d_model, self.n_heads
            ));
        }
        None
    }

    /// Builds the model with freshly initialised weights on `device`. Check
    /// [`problem`](Self::problem) first: burn panics on an impossible geometry.
    pub fn init(&self, device: &Device) -> Transformer {
        Transformer {
            patch_embed: Conv1dConfig::new(self.rows, self.d_model, self.patch)
                .with_stride(self.patch)
                .with_padding(PaddingConfig1d::Valid)
                .init(device),
            position: Initializer::Normal {
                mean: 0.0,
                std: 0.02,
            }
            .init([self.tokens(), self.d_model], device),
            encoder: TransformerEncoderConfig::new(
                self.d_model,
                self.d_ff,
                self.n_heads,
                self.n_layers,
            )
            .with_dropout(self.dropout)
            .with_norm_first(true)
            .with_activation(ActivationConfig::Gelu)
            .with_layer_norm_eps(self.layer_norm_eps)
            .init(device),
            norm: LayerNormConfig::new(self.d_model)
                .with_epsilon(self.layer_norm_eps)
                .init(device),
            head: LinearConfig::new(self.d_model, self.num_classes).init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
            layer_norm_eps: self.layer_norm_eps,
        }
    }
}

/// The Transformer has no options of its own yet (`width` scales it; 4 heads).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransformerOptions {}

impl Architecture for Transformer {
    const NAME: &'static str = "transformer";
    type Options = TransformerOptions;

    fn build(
        spec: &ModelSpec,
        _: &TransformerOptions,
        device: &Device,
    ) -> Result<Self, TrainError> {
        let heads = 4;
        let config = TransformerConfig::new(spec.num_classes, spec.window_len)
            .with_rows(spec.rows)
            .with_dropout(spec.dropout)
            .with_n_heads(heads)
            .with_d_model(spec.scaled(64 / heads) * heads)
            .with_d_ff(spec.scaled(128));
        if let Some(problem) = config.problem() {
            return Err(TrainError::param("arch", format!("transformer: {problem}")));
        }
        Ok(config.init(device))
    }

    /// The encoder's output tokens, layer-normed and mean-pooled, `[batch, d_model]`.
    fn embedding(&self, x: Tensor<3>) -> Tensor<2> {
        let x = self.patch_embed.forward(x); // [batch, d_model, tokens]
        let x = x.swap_dims(1, 2); // [batch, tokens, d_model]
        let x = x + self.position.val().unsqueeze_dim(0); // [batch, tokens, d_model]
        let x = self.dropout.forward(x);
        let x = self.encoder.forward(TransformerEncoderInput::new(x)); // [batch, tokens, d_model]
        let x = self.norm.forward(x);
        x.mean_dim(1).squeeze_dim(1) // [batch, d_model]
    }

    fn classify(&self, embedding: Tensor<2>) -> Tensor<2> {
        self.head.forward(embedding) // [batch, num_classes]
    }

    fn embedding_to_onnx(&self, g: &mut GraphBuilder, x: &str) -> Result<String, OnnxError> {
        let eps = self.layer_norm_eps;
        let (w, opts) = onnx_layers::conv1d(&self.patch_embed, "patch_embed")?;
        let x = ops::conv(g, "patch_embed", x, &w, &opts)?; // [N, d_model, tokens]
        let x = ops::transpose(g, &x, &[0, 2, 1])?; // [N, tokens, d_model]
        let table = onnx_layers::tensor(self.position.val(), "position")?;
        let mut x = ops::positional_embedding(g, "position", &x, &table)?;
        for (k, layer) in self.encoder.layers.iter().enumerate() {
            let name = format!("layer{k}");
            let ln = |g: &mut GraphBuilder, which: &str, norm: &LayerNorm, x: &str| {
                let n = format!("{name}.{which}");
                ops::layer_norm(g, &n, x, &onnx_layers::layer_norm(norm, eps, &n)?)
            };
            let attn_name = format!("{name}.mha");
            let attn_w = onnx_layers::mha(&layer.mha, &attn_name)?;
            let ff_act = &layer.pwff.activation;
            let ff = |g: &mut GraphBuilder, h: &str| -> Result<String, OnnxError> {
                let inner_name = format!("{name}.ff_inner");
                let outer_name = format!("{name}.ff_outer");
                let inner = onnx_layers::linear(&layer.pwff.linear_inner, &inner_name)?;
                let outer = onnx_layers::linear(&layer.pwff.linear_outer, &outer_name)?;
                let h = ops::linear(g, &inner_name, h, &inner)?;
                let h = match ff_act {
                    Activation::Gelu(_) => ops::gelu(g, &h)?,
                    Activation::Relu(_) => ops::relu(g, &h)?,
                    _ => {
                        return Err(OnnxError::Layer {
                            layer: format!("{name}.ff"),
                            what: "only GELU or ReLU feed-forward activations are exported".into(),
                        });
                    }
                };
                ops::linear(g, &outer_name, &h, &outer)
            };
            x = if layer.norm_first {
                let h = ln(g, "norm_2", &layer.norm_2, &x)?;
                let a = ops::self_attention(g, &attn_name, &h, &attn_w)?;
                let x1 = ops::add(g, &x, &a)?;
                let h = ln(g, "norm_1", &layer.norm_1, &x1)?;
                let f = ff(g, &h)?;
                ops::add(g, &x1, &f)?
            } else {
                let a = ops::self_attention(g, &attn_name, &x, &attn_w)?;
                let x1 = ops::add(g, &x, &a)?;
                let x1 = ln(g, "norm_1", &layer.norm_1, &x1)?;
                let f = ff(g, &x1)?;
                let x2 = ops::add(g, &x1, &f)?;
                ln(g, "norm_2", &layer.norm_2, &x2)?
            };
        }
        let x = ops::layer_norm(
            g,
            "norm",
            &x,
            &onnx_layers::layer_norm(&self.norm, eps, "norm")?,
        )?;
        g.op(
            "ReduceMean",
            &[&x],
            vec![
                AttributeProto::ints("axes", &[1]),
                AttributeProto::int("keepdims", 0),
            ],
            "pooled",
        ) // [N, d_model]
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
    use super::*;

    fn tiny(num_classes: usize, window_len: usize) -> TransformerConfig {
        TransformerConfig::new(num_classes, window_len)
            .with_d_model(8)
            .with_n_heads(2)
            .with_d_ff(12)
            .with_n_layers(1)
    }

    #[test]
    fn transformer_maps_windows_to_class_logits() {
        let device = Device::flex();
        let config = tiny(11, 128);
        assert_eq!(config.problem(), None);
        assert_eq!(config.tokens(), 16);
        let model = config.init(&device);
        let y = model.forward(Tensor::zeros([3, 2, 128], &device));
        assert_eq!(y.dims(), [3, 11]);
    }

    #[test]
    fn tail_shorter_than_a_patch_is_dropped() {
        let device = Device::flex();
        let config = tiny(3, 21).with_rows(4);
        assert_eq!(config.tokens(), 2);
        let y = config
            .init(&device)
            .forward(Tensor::zeros([2, 4, 21], &device));
        assert_eq!(y.dims(), [2, 3]);
    }

    #[test]
    fn impossible_geometry_is_explained() {
        let p = tiny(2, 4).problem().unwrap();
        assert!(p.contains("shorter than one patch"), "{p}");
        let p = tiny(2, 64)
            .with_d_model(10)
            .with_n_heads(4)
            .problem()
            .unwrap();
        assert!(p.contains("d_model 10"), "{p}");
    }
}
