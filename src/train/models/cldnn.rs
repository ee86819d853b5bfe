//! CLDNN, the convolutional–LSTM–dense modulation classifier of West and O'Shea, "Deep
//! Architectures for Modulation Recognition" (2017).
//!
//! Three convolutions over time, the first one's output joined to the third's (the paper's
//! bypass, so the LSTM sees both fine and coarse features), an LSTM over the time steps, then a
//! dense layer and the logits:
//! Conv1d 50 × 8 + ReLU + dropout → Conv1d 50 × 8 + ReLU + dropout → Conv1d 50 × 8 + ReLU +
//! dropout → concat(conv1, conv3) on the channel axis → LSTM 50 (its last hidden state) →
//! Dense 256 + ReLU + dropout → Dense `num_classes` (logits).
//!
//! The paper convolves the `[2, L]` I/Q "image" with `1 × 8` kernels; here the `2C` input rows are
//! the input channels of 1-D convolutions (one learned filter sees I and Q together, and several
//! channels for array input). Each convolution pads 3 before and 4 after, so every layer keeps
//! the length `L` and the concatenation lines up. `width` scales the filter and unit counts
//! (1 = the paper).
//!
//! # Shapes
//! - input: `[batch, rows, len]` (the planar `[2C, L]` block of `dsp::repr`)
//! - output: `[batch, num_classes]` logits
//!
//! Parameters keep burn's layouts; [`Cldnn::to_onnx`] writes the same computation as ONNX
//! `Conv`, `Concat`, `LSTM` and `Gemm` nodes.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv1d, Conv1dConfig};
use burn::nn::{
    Dropout, DropoutConfig, Linear, LinearConfig, Lstm, LstmConfig, PaddingConfig1d, Relu,
};
use burn::tensor::{Device, Tensor};

use serde::{Deserialize, Serialize};

use super::{Architecture, ModelSpec, ParamGroup, onnx_layers};
use crate::onnx::{GraphBuilder, OnnxError, ops};
use crate::train::TrainError;

/// Configuration of [`Cldnn`].
#[derive(Config, Debug)]
pub struct CldnnConfig {
    /// Output classes.
    pub num_classes: usize,
    /// Input rows `2C` (2 for one channel of I/Q).
    #[config(default = 2)]
    pub rows: usize,
    /// Dropout probability after each hidden layer (the paper: 0.5).
    #[config(default = 0.5)]
    pub dropout: f64,
    /// Filters of each convolution (the paper: 50).
    #[config(default = 50)]
    pub conv_filters: usize,
    /// Kernel width of each convolution (the paper: 8).
    #[config(default = 8)]
    pub kernel: usize,
    /// LSTM hidden units (the paper: 50).
    #[config(default = 50)]
    pub lstm_units: usize,
    /// Units of the hidden dense layer (the paper: 256).
    #[config(default = 256)]
    pub dense_units: usize,
}

/// CLDNN (see the module documentation).
#[derive(Module, Debug)]
pub struct Cldnn {
    conv1: Conv1d,
    conv2: Conv1d,
    conv3: Conv1d,
    lstm: Lstm,
    dense1: Linear,
    dense2: Linear,
    dropout: Dropout,
    relu: Relu,
}

impl CldnnConfig {
    /// Padding `(before, after)` that keeps the length through a convolution of width
    /// `kernel`: `(kernel − 1) / 2` before, the rest after.
    pub fn same_padding(&self) -> (usize, usize) {
        let total = self.kernel.saturating_sub(1);
        (total / 2, total - total / 2)
    }

    /// Builds the model with freshly initialised weights on `device`.
    pub fn init(&self, device: &Device) -> Cldnn {
        let (before, after) = self.same_padding();
        let conv = |c_in: usize| {
            Conv1dConfig::new(c_in, self.conv_filters, self.kernel)
                .with_padding(PaddingConfig1d::Explicit(before, after))
                .init(device)
        };
        Cldnn {
            conv1: conv(self.rows),
            conv2: conv(self.conv_filters),
            conv3: conv(self.conv_filters),
            lstm: LstmConfig::new(2 * self.conv_filters, self.lstm_units, true).init(device),
            dense1: LinearConfig::new(self.lstm_units, self.dense_units).init(device),
            dense2: LinearConfig::new(self.dense_units, self.num_classes).init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
            relu: Relu::new(),
        }
    }
}

/// CLDNN has no options of its own (`width` scales it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CldnnOptions {}

impl Architecture for Cldnn {
    const NAME: &'static str = "cldnn";
    type Options = CldnnOptions;

    fn build(spec: &ModelSpec, _: &CldnnOptions, device: &Device) -> Result<Self, TrainError> {
        Ok(CldnnConfig::new(spec.num_classes)
            .with_rows(spec.rows)
            .with_dropout(spec.dropout)
            .with_conv_filters(spec.scaled(50))
            .with_lstm_units(spec.scaled(50))
            .with_dense_units(spec.scaled(256))
            .init(device))
    }

    /// The hidden dense layer's activations after the LSTM, `[batch, dense_units]`.
    fn embedding(&self, x: Tensor<3>) -> Tensor<2> {
        let c1 = self
            .dropout
            .forward(self.relu.forward(self.conv1.forward(x))); // [batch, filters, len]
        let c2 = self
            .dropout
            .forward(self.relu.forward(self.conv2.forward(c1.clone()))); // [batch, filters, len]
        let c3 = self
            .dropout
            .forward(self.relu.forward(self.conv3.forward(c2))); // [batch, filters, len]
        let joined = Tensor::cat(vec![c1, c3], 1); // [batch, 2·filters, len]
        let steps = joined.swap_dims(1, 2); // [batch, len, 2·filters]
        let (_, state) = self.lstm.forward(steps, None);
        let h = state.hidden; // [batch, lstm_units]
        self.relu.forward(self.dense1.forward(h)) // [batch, dense_units]
    }

    fn classify(&self, embedding: Tensor<2>) -> Tensor<2> {
        self.dense2.forward(self.dropout.forward(embedding)) // [batch, num_classes]
    }

    fn embedding_to_onnx(&self, g: &mut GraphBuilder, x: &str) -> Result<String, OnnxError> {
        let conv = |g: &mut GraphBuilder, name: &str, c: &Conv1d, x: &str| {
            let (w, opts) = onnx_layers::conv1d(c, name)?;
            let y = ops::conv(g, name, x, &w, &opts)?;
            ops::relu(g, &y)
        };
        let c1 = conv(g, "conv1", &self.conv1, x)?; // [N, filters, len]
        let c2 = conv(g, "conv2", &self.conv2, &c1)?;
        let c3 = conv(g, "conv3", &self.conv3, &c2)?;
        let joined = ops::concat(g, &[&c1, &c3], 1)?; // [N, 2·filters, len]
        let steps = ops::transpose(g, &joined, &[0, 2, 1])?; // [N, len, 2·filters]
        let rnn = ops::lstm(g, "lstm", &steps, &onnx_layers::lstm(&self.lstm, "lstm")?)?;
        let units = self.lstm.d_hidden as i64;
        let h = ops::reshape(g, &rnn.last_hidden, &[-1, units])?; // [1, N, H] → [N, H]
        let h = ops::gemm(
            g,
            "dense1",
            &h,
            &onnx_layers::linear(&self.dense1, "dense1")?,
        )?;
        ops::relu(g, &h)
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
    fn cldnn_maps_rml2016_windows_to_class_logits() {
        let device = Device::flex();
        let model = CldnnConfig::new(11)
            .with_conv_filters(6)
            .with_lstm_units(5)
            .with_dense_units(7)
            .init(&device);
        let y = model.forward(Tensor::zeros([3, 2, 128], &device));
        assert_eq!(y.dims(), [3, 11]);
    }

    #[test]
    fn cldnn_takes_multichannel_rows_and_odd_lengths() {
        let device = Device::flex();
        let model = CldnnConfig::new(4)
            .with_rows(8)
            .with_conv_filters(3)
            .with_lstm_units(4)
            .with_dense_units(5)
            .init(&device);
        let y = model.forward(Tensor::zeros([2, 8, 37], &device));
        assert_eq!(y.dims(), [2, 4]);
    }

    #[test]
    fn same_padding_keeps_the_length_for_even_and_odd_kernels() {
        assert_eq!(CldnnConfig::new(2).same_padding(), (3, 4));
        assert_eq!(CldnnConfig::new(2).with_kernel(5).same_padding(), (2, 2));
    }
}
