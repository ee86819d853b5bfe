//! The architectures, one file each, and the registry that builds them by name.
//!
//! Adding an architecture: a file here with its `#[derive(Module)]` struct and `*Config`, a
//! variant of [`Model`], and one line in [`ARCHITECTURES`] / [`build`].

pub mod resnet1d;
pub mod vtcnn2;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::TrainError;
use resnet1d::{ResNet1d, ResNet1dConfig};
use vtcnn2::{VtCnn2, VtCnn2Config};

/// Architecture names [`build`] knows.
pub const ARCHITECTURES: &[&str] = &["vtcnn2", "resnet1d"];

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
}

/// Any model of the registry.
#[derive(Module, Debug)]
pub enum Model {
    VtCnn2(VtCnn2),
    ResNet1d(ResNet1d),
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
        }
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
                    .with_stage_channels(
                        defaults.stage_channels.iter().map(|&c| scaled(c)).collect(),
                    )
                    .init(device),
            ))
        }
        _ => Err(TrainError::UnknownArch {
            name: arch.to_string(),
            known: ARCHITECTURES.join(", "),
        }),
    }
}
