//! VT-CNN2, the convolutional modulation classifier of O'Shea, Corgan and Clancy,
//! "Convolutional Radio Modulation Recognition Networks" (2016).
//!
//! Two convolutions over the `[2, L]` I/Q "image", then two dense layers:
//! Conv2d 256 × (1, 3) pad (0, 2) + ReLU + dropout → Conv2d 80 × (2, 3) pad (0, 2) + ReLU +
//! dropout → flatten → Dense 256 + ReLU + dropout → Dense `num_classes` (logits).
//!
//! For inputs with more rows (`2C` for `C` channels) the second kernel spans all rows, so it
//! still collapses the height to 1. `width` scales the filter and unit counts (1 = the paper).
//!
//! # Shapes
//! - input: `[batch, rows, len]` (the planar `[2C, L]` block of `dsp::repr`), viewed as
//!   `[batch, 1, rows, len]`
//! - output: `[batch, num_classes]` logits
//!
//! Parameters keep burn's layouts (Conv2d weight `[out, in, kh, kw]`, Linear weight
//! `[in, out]`), which `onnx::ops` takes as they are; [`VtCnn2::to_onnx`] writes the same
//! computation as ONNX `Reshape`, `Conv`, `Relu`, `Flatten` and `Gemm` nodes.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::tensor::{Device, Tensor};

use serde::{Deserialize, Serialize};

use super::{Architecture, ModelSpec, ParamGroup, onnx_layers};
use crate::onnx::{GraphBuilder, OnnxError, ops};
use crate::train::TrainError;

/// Configuration of [`VtCnn2`].
#[derive(Config, Debug)]
pub struct VtCnn2Config {
    /// Output classes.
    pub num_classes: usize,
    /// Samples per row `L` (128 for RadioML 2016).
    pub window_len: usize,
    /// Input rows `2C` (2 for one channel of I/Q).
    #[config(default = 2)]
    pub rows: usize,
    /// Dropout probability after each hidden layer (the paper: 0.5).
    #[config(default = 0.5)]
    pub dropout: f64,
    /// Filters of the first convolution (the paper: 256).
    #[config(default = 256)]
    pub conv1_filters: usize,
    /// Filters of the second convolution (the paper: 80).
    #[config(default = 80)]
    pub conv2_filters: usize,
    /// Units of the hidden dense layer (the paper: 256).
    #[config(default = 256)]
    pub dense_units: usize,
}

/// VT-CNN2 (see the module documentation).
#[derive(Module, Debug)]
pub struct VtCnn2 {
    conv1: Conv2d,
    conv2: Conv2d,
    dense1: Linear,
    dense2: Linear,
    dropout: Dropout,
    relu: Relu,
}

impl VtCnn2Config {
    /// Width of the second convolution's output: `len + 4` (each convolution pads 2 each side
    /// and its width-3 kernel takes 2 away).
    pub fn conv_out_len(&self) -> usize {
        self.window_len + 4
    }

    /// Builds the model with freshly initialised weights on `device`.
    pub fn init(&self, device: &Device) -> VtCnn2 {
        VtCnn2 {
            conv1: Conv2dConfig::new([1, self.conv1_filters], [1, 3])
                .with_padding(PaddingConfig2d::Explicit(0, 2, 0, 2))
                .init(device),
            conv2: Conv2dConfig::new([self.conv1_filters, self.conv2_filters], [self.rows, 3])
                .with_padding(PaddingConfig2d::Explicit(0, 2, 0, 2))
                .init(device),
            dense1: LinearConfig::new(self.conv2_filters * self.conv_out_len(), self.dense_units)
                .init(device),
            dense2: LinearConfig::new(self.dense_units, self.num_classes).init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
            relu: Relu::new(),
        }
    }
}

/// VT-CNN2 has no options of its own (`width` scales it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VtCnn2Options {}

impl Architecture for VtCnn2 {
    const NAME: &'static str = "vtcnn2";
    type Options = VtCnn2Options;

    fn build(spec: &ModelSpec, _: &VtCnn2Options, device: &Device) -> Result<Self, TrainError> {
        Ok(VtCnn2Config::new(spec.num_classes, spec.window_len)
            .with_rows(spec.rows)
            .with_dropout(spec.dropout)
            .with_conv1_filters(spec.scaled(256))
            .with_conv2_filters(spec.scaled(80))
            .with_dense_units(spec.scaled(256))
            .init(device))
    }

    /// The hidden dense layer's activations, `[batch, dense_units]`.
    fn embedding(&self, x: Tensor<3>) -> Tensor<2> {
        let x: Tensor<4> = x.unsqueeze_dim(1); // [batch, 1, rows, len]
        let x = self.conv1.forward(x); // [batch, conv1_filters, rows, len + 2]
        let x = self.dropout.forward(self.relu.forward(x));
        let x = self.conv2.forward(x); // [batch, conv2_filters, 1, len + 4]
        let x = self.dropout.forward(self.relu.forward(x));
        let x: Tensor<2> = x.flatten(1, 3); // [batch, conv2_filters · (len + 4)]
        self.relu.forward(self.dense1.forward(x)) // [batch, dense_units]
    }

    fn classify(&self, embedding: Tensor<2>) -> Tensor<2> {
        self.dense2.forward(self.dropout.forward(embedding)) // [batch, num_classes]
    }

    fn embedding_to_onnx(&self, g: &mut GraphBuilder, x: &str) -> Result<String, OnnxError> {
        let [_, _, rows, _] = self.conv2.weight.dims(); // the second kernel spans all rows
        let x = ops::reshape(g, x, &[0, 1, rows as i64, -1])?; // [N, 1, rows, len]
        let (w, opts) = onnx_layers::conv2d(&self.conv1, "conv1")?;
        let x = ops::conv(g, "conv1", &x, &w, &opts)?; // [N, conv1_filters, rows, len + 2]
        let x = ops::relu(g, &x)?;
        let (w, opts) = onnx_layers::conv2d(&self.conv2, "conv2")?;
        let x = ops::conv(g, "conv2", &x, &w, &opts)?; // [N, conv2_filters, 1, len + 4]
        let x = ops::relu(g, &x)?;
        let x = ops::flatten(g, &x, 1)?; // [N, conv2_filters · (len + 4)]
        let x = ops::gemm(
            g,
            "dense1",
            &x,
            &onnx_layers::linear(&self.dense1, "dense1")?,
        )?;
        ops::relu(g, &x)
    }

    fn classify_to_onnx(&self, g: &mut GraphBuilder, embedding: &str) -> Result<String, OnnxError> {
        ops::gemm(
            g,
            "dense2",
            embedding,
            &onnx_layers::linear(&self.dense2, "dense2")?,
        )
    }

    fn head_params(&self) -> ParamGroup {
        ParamGroup::ids_from_module(self.dense2.clone())
    }

    fn with_head_of(self, fresh: Self) -> Self {
        Self {
            dense2: fresh.dense2,
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vtcnn2_maps_rml2016_windows_to_class_logits() {
        let device = Device::flex();
        let model = VtCnn2Config::new(11, 128).init(&device);
        let y = model.forward(Tensor::zeros([3, 2, 128], &device));
        assert_eq!(y.dims(), [3, 11]);
    }

    #[test]
    fn vtcnn2_takes_multichannel_rows() {
        let device = Device::flex();
        let model = VtCnn2Config::new(4, 32)
            .with_rows(8)
            .with_conv1_filters(4)
            .with_conv2_filters(3)
            .with_dense_units(5)
            .init(&device);
        let y = model.forward(Tensor::zeros([2, 8, 32], &device));
        assert_eq!(y.dims(), [2, 4]);
    }
}
