//! The architectures, one file each, and the registry that builds them by name.
//!
//! Adding an architecture: a file here with its `#[derive(Module)]` struct, `*Config` and a
//! `to_onnx` that writes the same computation with [`crate::onnx::ops`], a variant of [`Model`],
//! and one line in [`ARCHITECTURES`] / [`build`] / [`Model::to_onnx`].
//!
//! - [`vtcnn2`]: VT-CNN2 (O'Shea et al. 2016), two convolutions and two dense layers.
//! - [`resnet1d`]: a 1-D residual network (O'Shea et al. 2018 family), conv + batch-norm.
//! - [`cldnn`]: CLDNN (West & O'Shea 2017), convolutions + LSTM + dense.
//! - [`gru2`]: two stacked GRUs over the time steps + dense.
//! - [`transformer`]: patch embedding + Transformer encoder + mean pool + dense.
//! - [`onnx_layers`]: burn layers → the weights `onnx::ops` writes.
//! - [`onnx_weights`]: an exported graph → the weights of a model (the inverse of `to_onnx`).

pub mod cldnn;
pub mod gru2;
pub mod onnx_layers;
pub mod onnx_weights;
pub mod resnet1d;
pub mod transformer;
pub mod vtcnn2;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::TrainError;
use crate::onnx::{Dim, GraphBuilder, OnnxError};
use cldnn::{Cldnn, CldnnConfig};
use gru2::{Gru2, Gru2Config};
use resnet1d::{ResNet1d, ResNet1dConfig};
use transformer::{Transformer, TransformerConfig};
use vtcnn2::{VtCnn2, VtCnn2Config};

/// Architecture names [`build`] knows.
pub const ARCHITECTURES: &[&str] = &["vtcnn2", "resnet1d", "cldnn", "gru2", "transformer"];

/// Name of the exported graph's input, `[N, rows, len]`.
pub const ONNX_INPUT: &str = "iq";

/// Name of the exported graph's output, `[N, num_classes]` logits.
pub const ONNX_OUTPUT: &str = "logits";

/// What every architecture is built from: the data's shape, the classes and the
/// regularisation, plus a width multiplier for small test models.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub num_classes: usize,
    /// Input rows `2C`.
    pub rows: usize,
    /// Samples per row `L`.
    pub window_len: usize,
    /// Dropout probability.
    pub dropout: f64,
    /// Scales every layer's filter/unit count (1 = as published).
    pub width: f64,
    /// Residual blocks per stage of `resnet1d` (1 = as published; the other architectures
    /// take only 1). Records written before this field existed mean 1.
    #[serde(default = "default_depth")]
    pub depth: usize,
    /// `resnet1d` only: append each channel's amplitude `√(I² + Q²)` to the I/Q rows inside
    /// the model (see [`resnet1d`]). Records written before this field existed mean `false`.
    #[serde(default)]
    pub amplitude_rows: bool,
}

/// What records written before `depth` existed mean: the published layouts.
pub fn default_depth() -> usize {
    1
}

/// Any model of the registry.
#[derive(Module, Debug)]
pub enum Model {
    VtCnn2(VtCnn2),
    ResNet1d(ResNet1d),
    Cldnn(Cldnn),
    Gru2(Gru2),
    Transformer(Transformer),
}

impl Model {
    /// Class logits.
    ///
    /// # Shapes
    /// - `x`: `[batch, rows, len]`
    /// - returns: `[batch, num_classes]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<2> {
        match self {
            Model::VtCnn2(m) => m.forward(x),
            Model::ResNet1d(m) => m.forward(x),
            Model::Cldnn(m) => m.forward(x),
            Model::Gru2(m) => m.forward(x),
            Model::Transformer(m) => m.forward(x),
        }
    }

    /// The ONNX graph of this model (call it on trained weights, e.g. a [`Module::valid`]
    /// copy): input [`ONNX_INPUT`] `[N, rows, len]` with a dynamic batch `N`, output
    /// [`ONNX_OUTPUT`] `[N, num_classes]` logits, as built for `spec`. Dropout is left out (the
    /// identity at inference) and BatchNorm uses its running statistics.
    pub fn to_onnx(&self, spec: &ModelSpec, graph_name: &str) -> Result<GraphBuilder, OnnxError> {
        let mut g = GraphBuilder::new(graph_name);
        let x = g.input(
            ONNX_INPUT,
            &[Dim::batch(), spec.rows.into(), spec.window_len.into()],
        )?;
        let logits = match self {
            Model::VtCnn2(m) => m.to_onnx(&mut g, &x)?,
            Model::ResNet1d(m) => m.to_onnx(&mut g, &x)?,
            Model::Cldnn(m) => m.to_onnx(&mut g, &x)?,
            Model::Gru2(m) => m.to_onnx(&mut g, &x)?,
            Model::Transformer(m) => m.to_onnx(&mut g, &x)?,
        };
        g.node("Identity", &[&logits], &[ONNX_OUTPUT], vec![])?;
        g.output(ONNX_OUTPUT, &[Dim::batch(), spec.num_classes.into()])?;
        Ok(g)
    }
}

/// `trained`, a resnet1d without amplitude rows, carried into `wider`, a fresh model of the same
/// spec but with them; the result computes what `trained` does (see
/// [`ResNet1d::with_amplitude_rows`]). `None` for any other pair.
pub fn add_amplitude_rows(trained: Model, wider: Model) -> Option<Model> {
    match (trained, wider) {
        (Model::ResNet1d(trained), Model::ResNet1d(wider)) => {
            trained.with_amplitude_rows(wider).map(Model::ResNet1d)
        }
        _ => None,
    }
}

/// `trained`, a model built for a spec of depth `d`, carried into `deeper`, a fresh model of
/// the same architecture and spec but a depth above `d`; the result computes what `trained`
/// does (see [`ResNet1d::deepened`]). `None` for any other pair.
pub fn deepen(trained: Model, deeper: Model) -> Option<Model> {
    match (trained, deeper) {
        (Model::ResNet1d(trained), Model::ResNet1d(deeper)) => {
            trained.deepened(deeper).map(Model::ResNet1d)
        }
        _ => None,
    }
}

/// Builds architecture `arch` for `spec` with fresh weights on `device`.
pub fn build(arch: &str, spec: &ModelSpec, device: &Device) -> Result<Model, TrainError> {
    if !(spec.width.is_finite() && spec.width > 0.0) {
        return Err(TrainError::param(
            "width",
            format!("is {}; expected a positive multiplier", spec.width),
        ));
    }
    if !(spec.dropout.is_finite() && (0.0..1.0).contains(&spec.dropout)) {
        return Err(TrainError::param(
            "dropout",
            format!("is {}; expected a probability in [0, 1)", spec.dropout),
        ));
    }
    if spec.depth == 0 || (spec.depth != 1 && arch != "resnet1d") {
        return Err(TrainError::param(
            "depth",
            format!(
                "is {} for '{arch}'; expected 1, or for resnet1d any count of residual blocks \
                 per stage from 1",
                spec.depth
            ),
        ));
    }
    if spec.amplitude_rows && (arch != "resnet1d" || !spec.rows.is_multiple_of(2)) {
        return Err(TrainError::param(
            "amplitude_rows",
            format!(
                "is on for '{arch}' with {} input rows; only resnet1d over I/Q rows (an even \
                 count) takes amplitude rows",
                spec.rows
            ),
        ));
    }
    let scaled = |n: usize| ((n as f64 * spec.width).round() as usize).max(1);
    match arch {
        "vtcnn2" => Ok(Model::VtCnn2(
            VtCnn2Config::new(spec.num_classes, spec.window_len)
                .with_rows(spec.rows)
                .with_dropout(spec.dropout)
                .with_conv1_filters(scaled(256))
                .with_conv2_filters(scaled(80))
                .with_dense_units(scaled(256))
                .init(device),
        )),
        "resnet1d" => {
            // Long windows (RadioML 2018's 1024 samples) get a stride-2 stem and two more
            // stages, so the last stage still sees about 16 time steps.
            let mut defaults = ResNet1dConfig::new(spec.num_classes);
            if spec.window_len >= 512 {
                defaults = defaults
                    .with_stem_stride(2)
                    .with_stage_channels(vec![32, 48, 64, 64, 96, 128]);
            }
            Ok(Model::ResNet1d(
                defaults
                    .clone()
                    .with_rows(spec.rows)
                    .with_dropout(spec.dropout)
                    .with_stem_channels(scaled(defaults.stem_channels))
                    .with_stem_stride(defaults.stem_stride)
                    .with_blocks_per_stage(spec.depth)
                    .with_amplitude_rows(spec.amplitude_rows)
                    .with_stage_channels(
                        defaults.stage_channels.iter().map(|&c| scaled(c)).collect(),
                    )
                    .init(device),
            ))
        }
        "cldnn" => Ok(Model::Cldnn(
            CldnnConfig::new(spec.num_classes)
                .with_rows(spec.rows)
                .with_dropout(spec.dropout)
                .with_conv_filters(scaled(50))
                .with_lstm_units(scaled(50))
                .with_dense_units(scaled(256))
                .init(device),
        )),
        "gru2" => Ok(Model::Gru2(
            Gru2Config::new(spec.num_classes)
                .with_rows(spec.rows)
                .with_dropout(spec.dropout)
                .with_units1(scaled(128))
                .with_units2(scaled(128))
                .init(device),
        )),
        "transformer" => {
            let heads = 4;
            let config = TransformerConfig::new(spec.num_classes, spec.window_len)
                .with_rows(spec.rows)
                .with_dropout(spec.dropout)
                .with_n_heads(heads)
                .with_d_model(scaled(64 / heads) * heads)
                .with_d_ff(scaled(128));
            if let Some(problem) = config.problem() {
                return Err(TrainError::param("arch", format!("transformer: {problem}")));
            }
            Ok(Model::Transformer(config.init(device)))
        }
        _ => Err(TrainError::UnknownArch {
            name: arch.to_string(),
            known: ARCHITECTURES.join(", "),
        }),
    }
}
