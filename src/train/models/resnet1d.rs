//! ResNet-1D: a small one-dimensional residual network over the planar `[2C, L]` block, the
//! residual-stack family of O'Shea, Roy and Clancy, "Over-the-Air Deep Learning Based Radio
//! Signal Classification" (2018), sized for real-time CPU inference.
//!
//! ```text
//! [B, rows, L] ─ (amplitude rows: append √(I²+Q²) of each channel → [B, rows + rows/2, L])
//!   ─ stem: Conv1d →c0, k7, stride s + BN + ReLU ─ MaxPool 2
//!   ─ stage s = 0..S: residual block (c_{s-1} → c_s), then D − 1 blocks (c_s → c_s)
//!                     ─ MaxPool 2 (all but the last stage)
//!   ─ global average pool over time ─ dropout ─ Linear c_S → classes (logits)
//!
//! residual block: Conv1d k3 + BN + ReLU ─ Conv1d k3 + BN ─ (+ shortcut) ─ ReLU,
//!                 shortcut = identity, or Conv1d k1 + BN when the channel count changes
//! ```
//!
//! Every convolution pads to keep its length ("same"), so any window length works; pooling
//! floors odd lengths. Convolutions feeding a batch-norm carry no bias.
//!
//! Depth: `D` residual blocks per stage (`blocks_per_stage`, 1 as in the published layout). A
//! trained model can be made deeper without changing what it computes ([`ResNet1d::deepened`]):
//! each added block starts with the last batch-norm of its residual branch at γ = 0, so the
//! branch adds β = 0 and the block passes its (non-negative, post-ReLU) input through unchanged;
//! training then grows the branch from zero ("zero-γ" residual initialisation, Goyal et al.
//! 2017), and since γ has a gradient from the first step it does.
//!
//! Amplitude rows (`amplitude_rows`, off as published): the model appends each channel's
//! amplitude `√(I² + Q²)` to its I/Q rows before the stem, so the first convolution sees the
//! envelope directly — what tells 16-QAM's three amplitude rings from 64-QAM's nine, and what a
//! stack of ReLU convolutions over I and Q can only approximate. It is part of the graph, not of
//! the preprocessing: the model still takes unit-RMS I/Q, like every other model of the station.
//! A trained model gains the rows without changing what it computes ([`ResNet1d::with_amplitude_rows`]):
//! the stem's weights for them start at 0.
//!
//! # Shapes
//! - input: `[batch, rows, len]` (I/Q rows when `amplitude_rows` is on)
//! - output: `[batch, num_classes]` logits
//!
//! Parameters keep burn's layouts (Conv1d weight `[out, in, k]`, Linear weight `[in, out]`),
//! which `onnx::ops` takes as they are; [`ResNet1d::to_onnx`] writes the same computation as
//! ONNX `Conv`, `BatchNormalization` (running statistics), `Relu`, `Add`, `MaxPool`,
//! `GlobalAveragePool` and `Gemm` nodes, and the amplitude rows as `Mul`, `Reshape`,
//! `ReduceSum`, `Sqrt` and `Concat` ([`ops::append_amplitude_rows`]).

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv1d, Conv1dConfig};
use burn::nn::pool::{MaxPool1d, MaxPool1dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig1d, Relu,
};
use burn::tensor::{Device, Tensor, TensorData};

use serde::{Deserialize, Serialize};

use super::{Architecture, ModelSpec, ParamGroup, onnx_layers};
use crate::dsp::repr::Representation;
use crate::onnx::ops::{self, PoolOptions};
use crate::onnx::{GraphBuilder, OnnxError};
use crate::train::TrainError;

/// Configuration of [`ResNet1d`].
#[derive(Config, Debug)]
pub struct ResNet1dConfig {
    /// Output classes.
    pub num_classes: usize,
    /// Input rows `2C` (2 for one channel of I/Q).
    #[config(default = 2)]
    pub rows: usize,
    /// Channels of the stem convolution.
    #[config(default = 32)]
    pub stem_channels: usize,
    /// Output channels of each residual stage, in order.
    #[config(default = "vec![32, 64, 64, 96]")]
    pub stage_channels: Vec<usize>,
    /// Residual blocks per stage (at least 1).
    #[config(default = 1)]
    pub blocks_per_stage: usize,
    /// Kernel width of the stem convolution (odd).
    #[config(default = 7)]
    pub stem_kernel: usize,
    /// Stride of the stem convolution (2 halves the work of long windows).
    #[config(default = 1)]
    pub stem_stride: usize,
    /// Dropout before the classifier.
    #[config(default = 0.3)]
    pub dropout: f64,
    /// Append each channel's amplitude to the I/Q rows before the stem (`rows` must then be
    /// I/Q pairs; see the module documentation).
    #[config(default = false)]
    pub amplitude_rows: bool,
}

/// Convolution + batch-norm, the unit every block is made of.
#[derive(Module, Debug)]
pub struct ConvBn {
    pub conv: Conv1d,
    pub bn: BatchNorm,
}

impl ConvBn {
    fn new(device: &Device, channels_in: usize, channels_out: usize, kernel: usize) -> Self {
        Self::strided(device, channels_in, channels_out, kernel, 1)
    }

    fn strided(
        device: &Device,
        channels_in: usize,
        channels_out: usize,
        kernel: usize,
        stride: usize,
    ) -> Self {
        let pad = kernel / 2;
        Self {
            conv: Conv1dConfig::new(channels_in, channels_out, kernel)
                .with_stride(stride)
                .with_padding(PaddingConfig1d::Explicit(pad, pad))
                .with_bias(false)
                .init(device),
            bn: BatchNormConfig::new(channels_out).init(device),
        }
    }

    /// `[batch, in, len]` → `[batch, out, len]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.bn.forward(self.conv.forward(x))
    }

    /// Writes `Conv` + `BatchNormalization` reading `x`; returns the output value.
    fn to_onnx(&self, g: &mut GraphBuilder, name: &str, x: &str) -> Result<String, OnnxError> {
        let conv_name = format!("{name}.conv");
        let (w, opts) = onnx_layers::conv1d(&self.conv, &conv_name)?;
        let y = ops::conv(g, &conv_name, x, &w, &opts)?;
        let bn_name = format!("{name}.bn");
        ops::batch_norm(
            g,
            &bn_name,
            &y,
            &onnx_layers::batch_norm(&self.bn, &bn_name)?,
        )
    }
}

/// Two 3-wide convolutions with a shortcut (see the module documentation).
#[derive(Module, Debug)]
pub struct ResidualBlock {
    pub first: ConvBn,
    pub second: ConvBn,
    /// 1-wide projection when the channel count changes.
    pub shortcut: Option<ConvBn>,
    relu: Relu,
}

impl ResidualBlock {
    fn new(device: &Device, channels_in: usize, channels_out: usize) -> Self {
        Self {
            first: ConvBn::new(device, channels_in, channels_out, 3),
            second: ConvBn::new(device, channels_out, channels_out, 3),
            shortcut: (channels_in != channels_out)
                .then(|| ConvBn::new(device, channels_in, channels_out, 1)),
            relu: Relu::new(),
        }
    }

    /// `[batch, in, len]` → `[batch, out, len]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let skip = match &self.shortcut {
            Some(projection) => projection.forward(x.clone()),
            None => x.clone(),
        };
        let y = self.relu.forward(self.first.forward(x));
        let y = self.second.forward(y);
        self.relu.forward(y + skip)
    }

    /// Writes the block reading `x`; returns the output value.
    fn to_onnx(&self, g: &mut GraphBuilder, name: &str, x: &str) -> Result<String, OnnxError> {
        let skip = match &self.shortcut {
            Some(projection) => projection.to_onnx(g, &format!("{name}.shortcut"), x)?,
            None => x.to_string(),
        };
        let y = self.first.to_onnx(g, &format!("{name}.first"), x)?;
        let y = ops::relu(g, &y)?;
        let y = self.second.to_onnx(g, &format!("{name}.second"), &y)?;
        let y = ops::add(g, &y, &skip)?;
        ops::relu(g, &y)
    }
}

/// ResNet-1D (see the module documentation).
#[derive(Module, Debug)]
pub struct ResNet1d {
    pub stem: ConvBn,
    /// The first block of each stage (it changes the channel count).
    pub stages: Vec<ResidualBlock>,
    /// The blocks after the first, per stage: `blocks_per_stage − 1` each (none at depth 1, the
    /// layout older runs and exported models have).
    pub extra_blocks: Vec<Vec<ResidualBlock>>,
    pub classifier: Linear,
    pool: MaxPool1d,
    dropout: Dropout,
    relu: Relu,
    /// Whether the input's amplitude rows are appended before the stem.
    #[module(skip)]
    amplitude_rows: bool,
}

impl ResNet1dConfig {
    /// Builds the model with freshly initialised weights on `device`.
    pub fn init(&self, device: &Device) -> ResNet1d {
        let mut stages = Vec::with_capacity(self.stage_channels.len());
        let mut extra_blocks = Vec::with_capacity(self.stage_channels.len());
        let mut channels = self.stem_channels;
        for &out in &self.stage_channels {
            stages.push(ResidualBlock::new(device, channels, out));
            extra_blocks.push(
                (1..self.blocks_per_stage.max(1))
                    .map(|_| ResidualBlock::new(device, out, out))
                    .collect(),
            );
            channels = out;
        }
        let stem_rows = if self.amplitude_rows {
            self.rows + self.rows / 2
        } else {
            self.rows
        };
        ResNet1d {
            stem: ConvBn::strided(
                device,
                stem_rows,
                self.stem_channels,
                self.stem_kernel,
                self.stem_stride,
            ),
            stages,
            extra_blocks,
            classifier: LinearConfig::new(channels, self.num_classes).init(device),
            pool: MaxPool1dConfig::new(2).init(),
            dropout: DropoutConfig::new(self.dropout).init(),
            relu: Relu::new(),
            amplitude_rows: self.amplitude_rows,
        }
    }
}

/// `[batch, 2C, len]` I/Q rows → `[batch, 3C, len]`: the rows, then each channel's amplitude
/// `√(I² + Q²)` (channel order kept).
fn append_amplitude_rows(x: Tensor<3>) -> Tensor<3> {
    let [batch, rows, len] = x.dims();
    let channels = rows / 2;
    let power: Tensor<4> = (x.clone() * x.clone())
        .reshape([batch, channels, 2, len])
        .sum_dim(2); // [batch, C, 1, len]
    let amplitude: Tensor<3> = power.reshape([batch, channels, len]).sqrt();
    Tensor::cat(vec![x, amplitude], 1)
}

/// resnet1d's own options (`--arch-opt key=value`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResNet1dOptions {
    /// Residual blocks per stage (1 as published). A warm start from a shallower model carries
    /// its layers over and starts each added block as the identity.
    pub depth: usize,
    /// Append each channel's amplitude `√(I² + Q²)` to its I/Q rows inside the model (off as
    /// published); needs I/Q input. A warm start from a model without them starts the stem's
    /// weights for them at 0.
    pub amplitude_rows: bool,
}

impl Default for ResNet1dOptions {
    fn default() -> Self {
        Self {
            depth: 1,
            amplitude_rows: false,
        }
    }
}

impl Architecture for ResNet1d {
    const NAME: &'static str = "resnet1d";
    type Options = ResNet1dOptions;

    fn build(
        spec: &ModelSpec,
        options: &ResNet1dOptions,
        device: &Device,
    ) -> Result<Self, TrainError> {
        if options.depth == 0 {
            return Err(TrainError::param(
                "arch-opt",
                "depth is 0; expected at least 1 residual block per stage",
            ));
        }
        if options.amplitude_rows
            && (spec.representation != Representation::Iq || !spec.rows.is_multiple_of(2))
        {
            return Err(TrainError::param(
                "arch-opt",
                format!(
                    "amplitude_rows is on with {} {:?} input rows; the amplitude is computed \
                     from I/Q rows (pass --representation iq)",
                    spec.rows, spec.representation
                ),
            ));
        }
        // Long windows (RadioML 2018's 1024 samples) get a stride-2 stem and two more stages,
        // so the last stage still sees about 16 time steps.
        let mut defaults = ResNet1dConfig::new(spec.num_classes);
        if spec.window_len >= 512 {
            defaults = defaults
                .with_stem_stride(2)
                .with_stage_channels(vec![32, 48, 64, 64, 96, 128]);
        }
        Ok(defaults
            .clone()
            .with_rows(spec.rows)
            .with_dropout(spec.dropout)
            .with_stem_channels(spec.scaled(defaults.stem_channels))
            .with_stem_stride(defaults.stem_stride)
            .with_blocks_per_stage(options.depth)
            .with_amplitude_rows(options.amplitude_rows)
            .with_stage_channels(
                defaults
                    .stage_channels
                    .iter()
                    .map(|&c| spec.scaled(c))
                    .collect(),
            )
            .init(device))
    }

    /// The globally average-pooled features of the last stage, `[batch, channels]`.
    fn embedding(&self, x: Tensor<3>) -> Tensor<2> {
        let x = if self.amplitude_rows {
            append_amplitude_rows(x) // [batch, rows + rows / 2, len]
        } else {
            x
        };
        let x = self.relu.forward(self.stem.forward(x)); // [batch, stem, len / stride]
        let mut x = self.pool.forward(x); // [batch, stem, len / stride / 2]
        let last = self.stages.len().saturating_sub(1);
        for (i, stage) in self.stages.iter().enumerate() {
            x = stage.forward(x);
            for block in self.extra_blocks.get(i).into_iter().flatten() {
                x = block.forward(x);
            }
            if i < last {
                x = self.pool.forward(x);
            }
        }
        x.mean_dim(2).squeeze_dim(2) // [batch, channels]
    }

    fn classify(&self, embedding: Tensor<2>) -> Tensor<2> {
        self.classifier.forward(self.dropout.forward(embedding)) // [batch, num_classes]
    }

    fn embedding_to_onnx(&self, g: &mut GraphBuilder, x: &str) -> Result<String, OnnxError> {
        let pool = {
            let p = &self.pool;
            let pads = match p.padding {
                PaddingConfig1d::Valid => (0, 0),
                PaddingConfig1d::Explicit(left, right) => (left, right),
                PaddingConfig1d::Same => {
                    return Err(OnnxError::Layer {
                        layer: "pool".into(),
                        what: "Same padding is not exported".into(),
                    });
                }
            };
            PoolOptions {
                kernel: vec![p.kernel_size],
                strides: vec![p.stride],
                pads: vec![pads],
                dilations: vec![p.dilation],
                ceil_mode: p.ceil_mode,
            }
        };
        let x = if self.amplitude_rows {
            // The stem reads 3 rows per channel: I, Q and the amplitude.
            let channels = self.stem.conv.weight.dims()[1] / 3;
            ops::append_amplitude_rows(g, x, channels)? // [N, rows + rows / 2, len]
        } else {
            x.to_string()
        };
        let x = self.stem.to_onnx(g, "stem", &x)?; // [N, stem, len / stride]
        let x = ops::relu(g, &x)?;
        let mut x = ops::max_pool(g, "stem.pool", &x, &pool)?; // [N, stem, len / stride / 2]
        let last = self.stages.len().saturating_sub(1);
        for (i, stage) in self.stages.iter().enumerate() {
            let name = format!("stage{i}");
            x = stage.to_onnx(g, &name, &x)?;
            for (j, block) in self.extra_blocks.get(i).into_iter().flatten().enumerate() {
                x = block.to_onnx(g, &format!("{name}.block{}", j + 1), &x)?;
            }
            if i < last {
                x = ops::max_pool(g, &format!("{name}.pool"), &x, &pool)?;
            }
        }
        let x = ops::global_avg_pool(g, &x)?; // [N, channels, 1]
        ops::flatten(g, &x, 1) // [N, channels]
    }

    fn classify_to_onnx(&self, g: &mut GraphBuilder, embedding: &str) -> Result<String, OnnxError> {
        ops::gemm(
            g,
            "classifier",
            embedding,
            &onnx_layers::linear(&self.classifier, "classifier")?,
        )
    }

    fn head_params(&self) -> ParamGroup {
        ParamGroup::ids_from_module(self.classifier.clone())
    }

    fn with_head_of(self, fresh: Self) -> Self {
        Self {
            classifier: fresh.classifier,
            ..self
        }
    }

    /// A model made deeper and/or given amplitude rows computes what `trained` did: the added
    /// blocks start as the identity ([`ResNet1d::deepened`]), the stem's weights for the
    /// amplitude rows at 0 ([`ResNet1d::with_amplitude_rows`]). Depth never shrinks and
    /// amplitude rows are never removed.
    fn grow(
        trained: Self,
        from: &ResNet1dOptions,
        fresh: Self,
        to: &ResNet1dOptions,
        spec: &ModelSpec,
    ) -> Result<Self, String> {
        if from == to {
            return Ok(trained);
        }
        if from.depth > to.depth {
            return Err(format!(
                "its model has depth {}, this run's {}; a resnet1d can be made deeper, never \
                 shallower (pass --arch-opt depth={}, or more)",
                from.depth, to.depth, from.depth
            ));
        }
        if from.amplitude_rows && !to.amplitude_rows {
            return Err(
                "its model takes amplitude rows, this run's does not; they can be \
                        added, never removed (pass --arch-opt amplitude_rows=true)"
                    .into(),
            );
        }
        let wider = !from.amplitude_rows && to.amplitude_rows;
        let mut grown = trained;
        if from.depth < to.depth {
            // The fresh blocks come from the run's own model unless it still has to gain the
            // amplitude rows after this step.
            let target = if wider {
                let deeper = ResNet1dOptions {
                    depth: to.depth,
                    amplitude_rows: false,
                };
                let device = fresh.stem.conv.weight.val().device();
                Self::build(spec, &deeper, &device).map_err(|e| e.to_string())?
            } else {
                fresh.clone()
            };
            grown = grown.deepened(target).ok_or_else(|| {
                format!(
                    "its depth-{} resnet1d does not fit this run's depth-{} layout",
                    from.depth, to.depth
                )
            })?;
        }
        if wider {
            grown = grown
                .with_amplitude_rows(fresh)
                .ok_or("its resnet1d does not fit this run's layout with amplitude rows")?;
        }
        Ok(grown)
    }
}

impl ResNet1d {
    /// Residual blocks in each stage.
    pub fn blocks_per_stage(&self) -> usize {
        1 + self.extra_blocks.first().map_or(0, Vec::len)
    }

    /// Whether the model appends amplitude rows to its input.
    pub fn amplitude_rows(&self) -> bool {
        self.amplitude_rows
    }

    /// This trained model without amplitude rows carried into `wider`, a fresh model of the same
    /// layout that has them: every layer of `self` replaces its counterpart, and the stem's
    /// weights for the amplitude rows start at 0, so the result computes what `self` does until
    /// trained. `None` when `self` already has amplitude rows, `wider` has none, or their layouts
    /// differ otherwise.
    pub fn with_amplitude_rows(self, wider: ResNet1d) -> Option<ResNet1d> {
        let [out, rows, kernel] = self.stem.conv.weight.dims();
        let [wider_out, wider_rows, wider_kernel] = wider.stem.conv.weight.dims();
        let fits = !self.amplitude_rows
            && wider.amplitude_rows
            && rows.is_multiple_of(2)
            && (wider_out, wider_rows, wider_kernel) == (out, rows + rows / 2, kernel)
            && self.stages.len() == wider.stages.len()
            && self.stages.iter().zip(&wider.stages).all(|(ours, theirs)| {
                ours.second.conv.weight.dims() == theirs.second.conv.weight.dims()
            })
            && self
                .extra_blocks
                .iter()
                .map(Vec::len)
                .eq(wider.extra_blocks.iter().map(Vec::len));
        if !fits {
            return None;
        }
        let mut stem = self.stem;
        // Built from values, so the widened weight is a leaf of its own and can be trained.
        let trained = stem.conv.weight.val();
        let device = trained.device();
        let trained: Vec<f32> = trained.into_data().convert::<f32>().try_to_vec().ok()?;
        let wider_rows = rows + rows / 2;
        let mut values = vec![0.0f32; out * wider_rows * kernel];
        for (o, filter) in trained.chunks_exact(rows * kernel).enumerate() {
            values[o * wider_rows * kernel..][..rows * kernel].copy_from_slice(filter);
        }
        let widened =
            Tensor::<3>::from_data(TensorData::new(values, [out, wider_rows, kernel]), &device);
        stem.conv.weight = wider
            .stem
            .conv
            .weight
            .map(|_| widened)
            .set_require_grad(true);
        Some(ResNet1d {
            stem,
            amplitude_rows: true,
            ..self
        })
    }

    /// This trained model carried into `deeper`, a fresh model of the same layout with more
    /// blocks per stage: every layer of `self` replaces its counterpart, and each block `deeper`
    /// adds keeps its fresh weights but starts as the identity (γ = 0 in the last batch-norm
    /// of its residual branch; see the module documentation), so the result computes what `self`
    /// does. `None` when `deeper` has other stages or channel counts, or fewer blocks per stage.
    pub fn deepened(self, deeper: ResNet1d) -> Option<ResNet1d> {
        let same_layer = |a: &ConvBn, b: &ConvBn| a.conv.weight.dims() == b.conv.weight.dims();
        let stages_match = same_layer(&self.stem, &deeper.stem)
            && self.stages.len() == deeper.stages.len()
            && self
                .stages
                .iter()
                .zip(&deeper.stages)
                .all(|(ours, theirs)| same_layer(&ours.second, &theirs.second))
            && self.extra_blocks.len() == deeper.extra_blocks.len()
            && self
                .extra_blocks
                .iter()
                .zip(&deeper.extra_blocks)
                .all(|(ours, theirs)| ours.len() <= theirs.len());
        if !stages_match {
            return None;
        }
        let ResNet1d {
            stem,
            stages,
            extra_blocks,
            classifier,
            ..
        } = self;
        let extra_blocks = extra_blocks
            .into_iter()
            .zip(deeper.extra_blocks)
            .map(|(trained, fresh)| {
                let kept = trained.len();
                trained
                    .into_iter()
                    .chain(
                        fresh
                            .into_iter()
                            .skip(kept)
                            .map(ResidualBlock::into_identity),
                    )
                    .collect()
            })
            .collect();
        Some(ResNet1d {
            stem,
            stages,
            extra_blocks,
            classifier,
            ..deeper
        })
    }
}

impl ResidualBlock {
    /// The block with γ = 0 in the last batch-norm of its residual branch: for a channel-keeping
    /// block (no projection) fed a non-negative input, the identity.
    fn into_identity(mut self) -> Self {
        // A mapped value is a new tensor: mark it trainable again, or γ would stay 0 for good.
        self.second.bn.gamma = self
            .second
            .bn
            .gamma
            .map(|gamma| gamma.zeros_like())
            .set_require_grad(true);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resnet1d_maps_rml2016_windows_to_class_logits() {
        let device = Device::flex();
        let model = ResNet1dConfig::new(11).init(&device);
        let y = model.forward(Tensor::zeros([3, 2, 128], &device));
        assert_eq!(y.dims(), [3, 11]);
    }

    #[test]
    fn resnet1d_takes_multichannel_rows_and_long_windows() {
        let device = Device::flex();
        let model = ResNet1dConfig::new(5)
            .with_rows(8)
            .with_stem_channels(4)
            .with_stage_channels(vec![4, 6, 6])
            .init(&device);
        let y = model.forward(Tensor::zeros([2, 8, 1024], &device));
        assert_eq!(y.dims(), [2, 5]);
        assert!(model.stages[0].shortcut.is_none());
        assert!(model.stages[1].shortcut.is_some());
    }

    #[test]
    fn a_deepened_resnet1d_computes_what_the_shallow_one_did_until_trained() {
        let device = Device::flex();
        let config = ResNet1dConfig::new(4)
            .with_stem_channels(6)
            .with_stage_channels(vec![6, 8, 8]);
        device.seed(3);
        let shallow = config.init(&device);
        let deeper = config.clone().with_blocks_per_stage(3).init(&device);
        assert_eq!(deeper.blocks_per_stage(), 3);
        let x = Tensor::<3>::random(
            [5, 2, 64],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let before = shallow.forward(x.clone());
        let fresh = deeper.forward(x.clone());
        let deepened = shallow
            .deepened(deeper)
            .expect("same stage layout, more blocks");
        assert_eq!(deepened.blocks_per_stage(), 3);
        let after = deepened.forward(x);
        let largest_difference = |a: Tensor<2>, b: Tensor<2>| -> f32 {
            let a = a.into_data().try_to_vec::<f32>().unwrap();
            let b = b.into_data().try_to_vec::<f32>().unwrap();
            a.iter()
                .zip(&b)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max)
        };
        assert!(largest_difference(before.clone(), after) < 1e-5);
        // The fresh deeper model itself computes something else: the identity comes from the
        // zero γ, not from the layout.
        assert!(largest_difference(before, fresh) > 1e-3);
    }

    #[test]
    fn the_blocks_a_deepened_resnet1d_gains_are_trained() {
        let device = Device::flex().autodiff();
        let config = ResNet1dConfig::new(3)
            .with_stem_channels(4)
            .with_stage_channels(vec![4, 6]);
        device.seed(5);
        let deepened = config
            .init(&device)
            .deepened(config.clone().with_blocks_per_stage(2).init(&device))
            .unwrap();
        let x = Tensor::<3>::random(
            [4, 2, 32],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let grads = deepened.forward(x).powi_scalar(2).sum().backward();
        for (stage, blocks) in deepened.extra_blocks.iter().enumerate() {
            let gamma = &blocks[0].second.bn.gamma;
            let grad: Vec<f32> = gamma
                .grad(&grads)
                .unwrap_or_else(|| panic!("stage {stage}: the added block's γ has no gradient"))
                .into_data()
                .try_to_vec()
                .unwrap();
            assert!(
                grad.iter().any(|g| g.abs() > 0.0),
                "stage {stage}: the added block's γ gradient is all 0"
            );
        }
    }

    #[test]
    fn a_resnet1d_is_not_deepened_into_fewer_blocks_or_other_stages() {
        let device = Device::flex();
        let config = ResNet1dConfig::new(3)
            .with_stem_channels(4)
            .with_stage_channels(vec![4, 6]);
        let two = config.clone().with_blocks_per_stage(2).init(&device);
        assert!(two.deepened(config.init(&device)).is_none());
        let other_stages = config
            .clone()
            .with_stage_channels(vec![4, 6, 6])
            .init(&device);
        assert!(config.init(&device).deepened(other_stages).is_none());
        let other_widths = config
            .clone()
            .with_stage_channels(vec![4, 8])
            .with_blocks_per_stage(2)
            .init(&device);
        assert!(config.init(&device).deepened(other_widths).is_none());
    }

    #[test]
    fn amplitude_rows_are_each_channels_envelope_after_its_iq_rows() {
        let device = Device::flex();
        // Two channels: (3 + 4j, 0 + 0j) and (1 + 0j, 0 − 2j).
        let x = Tensor::<3>::from_data(
            burn::tensor::TensorData::new(
                vec![3.0f32, 0.0, 4.0, 0.0, 1.0, 0.0, 0.0, -2.0],
                [1, 4, 2],
            ),
            &device,
        );
        let rows: Vec<f32> = append_amplitude_rows(x).into_data().try_to_vec().unwrap();
        assert_eq!(
            rows,
            vec![3.0, 0.0, 4.0, 0.0, 1.0, 0.0, 0.0, -2.0, 5.0, 0.0, 1.0, 2.0]
        );
        let model = ResNet1dConfig::new(5)
            .with_rows(4)
            .with_stem_channels(4)
            .with_stage_channels(vec![4, 6])
            .with_amplitude_rows(true)
            .init(&device);
        assert_eq!(model.stem.conv.weight.dims(), [4, 6, 7]);
        let y = model.forward(Tensor::zeros([2, 4, 64], &device));
        assert_eq!(y.dims(), [2, 5]);
    }

    #[test]
    fn a_resnet1d_given_amplitude_rows_computes_what_it_did_until_trained() {
        let device = Device::flex().autodiff();
        // No dropout: on an autodiff device the model runs in training mode.
        let config = ResNet1dConfig::new(4)
            .with_stem_channels(6)
            .with_stage_channels(vec![6, 8])
            .with_blocks_per_stage(2)
            .with_dropout(0.0);
        device.seed(7);
        let plain = config.init(&device);
        let fresh = config.clone().with_amplitude_rows(true).init(&device);
        let x = Tensor::<3>::random(
            [5, 2, 64],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let before: Vec<f32> = plain.forward(x.clone()).into_data().try_to_vec().unwrap();
        let fresh_out: Vec<f32> = fresh.forward(x.clone()).into_data().try_to_vec().unwrap();
        let wider = plain
            .with_amplitude_rows(fresh)
            .expect("same layout, amplitude rows added");
        assert!(wider.amplitude_rows());
        let out = wider.forward(x);
        let after: Vec<f32> = out.clone().into_data().try_to_vec().unwrap();
        let largest = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max)
        };
        assert!(largest(&before, &after) < 1e-5);
        assert!(largest(&before, &fresh_out) > 1e-3);
        // The zero weights for the amplitude rows train: their gradient is not 0.
        let grads = out.powi_scalar(2).sum().backward();
        let grad = wider
            .stem
            .conv
            .weight
            .grad(&grads)
            .expect("the widened stem weight has a gradient");
        let amplitude_part: Vec<f32> = grad
            .slice([0..6, 2..3, 0..7])
            .into_data()
            .try_to_vec()
            .unwrap();
        assert!(amplitude_part.iter().any(|g| g.abs() > 0.0));
    }

    #[test]
    fn amplitude_rows_are_added_once_and_only_to_the_same_layout() {
        let device = Device::flex();
        let config = ResNet1dConfig::new(3)
            .with_stem_channels(4)
            .with_stage_channels(vec![4, 6]);
        let with = config.clone().with_amplitude_rows(true);
        assert!(
            with.init(&device)
                .with_amplitude_rows(with.init(&device))
                .is_none()
        );
        assert!(
            config
                .init(&device)
                .with_amplitude_rows(config.init(&device))
                .is_none()
        );
        let deeper = with.clone().with_blocks_per_stage(2).init(&device);
        assert!(config.init(&device).with_amplitude_rows(deeper).is_none());
        let other_widths = with.with_stage_channels(vec![4, 8]).init(&device);
        assert!(
            config
                .init(&device)
                .with_amplitude_rows(other_widths)
                .is_none()
        );
    }
}
