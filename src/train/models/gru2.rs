//! GRU2: two stacked GRU layers over the time steps of the window, then a dense layer — the
//! recurrent baseline of the modulation-recognition literature (Hong, Zhang and Xu, "Automatic
//! Modulation Classification using Recurrent Neural Networks", 2017, used two GRU layers of 128
//! units on RadioML 2016).
//!
//! Each of the `L` time steps is one column of the planar `[2C, L]` input (I and Q of every
//! channel at that sample): GRU 128 → GRU 128 (its last hidden state) → dropout → Dense
//! `num_classes` (logits). burn's GRU uses the reset-after formula (PyTorch's; ONNX
//! `linear_before_reset = 1`). `width` scales the unit counts (1 = 128 each).
//!
//! # Shapes
//! - input: `[batch, rows, len]`, read as `len` steps of `rows` features
//! - output: `[batch, num_classes]` logits

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Gru, GruConfig, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use serde::{Deserialize, Serialize};

use super::{Architecture, ModelSpec, ParamGroup, onnx_layers};
use crate::onnx::{GraphBuilder, OnnxError, ops};
use crate::train::TrainError;

/// Configuration of [`Gru2`].
#[derive(Config, Debug)]
pub struct Gru2Config {
    /// Output classes.
    pub num_classes: usize,
    /// Input rows `2C` (features per time step).
    #[config(default = 2)]
    pub rows: usize,
    /// Dropout probability between the GRU layers and before the dense layer.
    #[config(default = 0.5)]
    pub dropout: f64,
    /// Hidden units of the first GRU.
    #[config(default = 128)]
    pub units1: usize,
    /// Hidden units of the second GRU.
    #[config(default = 128)]
    pub units2: usize,
}

/// GRU2 (see the module documentation).
#[derive(Module, Debug)]
pub struct Gru2 {
    gru1: Gru,
    gru2: Gru,
    dense: Linear,
    dropout: Dropout,
}

impl Gru2Config {
    /// Builds the model with freshly initialised weights on `device`.
    pub fn init(&self, device: &Device) -> Gru2 {
        Gru2 {
            gru1: GruConfig::new(self.rows, self.units1, true).init(device),
            gru2: GruConfig::new(self.units1, self.units2, true).init(device),
            dense: LinearConfig::new(self.units2, self.num_classes).init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
        }
    }
}

/// GRU2 has no options of its own (`width` scales it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Gru2Options {}

impl Architecture for Gru2 {
    const NAME: &'static str = "gru2";
    type Options = Gru2Options;

    fn build(spec: &ModelSpec, _: &Gru2Options, device: &Device) -> Result<Self, TrainError> {
        Ok(Gru2Config::new(spec.num_classes)
            .with_rows(spec.rows)
            .with_dropout(spec.dropout)
            .with_units1(spec.scaled(128))
            .with_units2(spec.scaled(128))
            .init(device))
    }

    /// The second GRU's last hidden state, `[batch, units2]`.
    fn embedding(&self, x: Tensor<3>) -> Tensor<2> {
        let [batch, _, len] = x.dims();
        let steps = x.swap_dims(1, 2); // [batch, len, rows]
        let h1 = self.dropout.forward(self.gru1.forward(steps, None)); // [batch, len, units1]
        let h2 = self.gru2.forward(h1, None); // [batch, len, units2]
        let units = self.gru2.d_hidden;
        h2.slice([0..batch, len - 1..len, 0..units])
            .reshape([batch, units]) // [batch, units2]
    }

    fn classify(&self, embedding: Tensor<2>) -> Tensor<2> {
        self.dense.forward(self.dropout.forward(embedding)) // [batch, num_classes]
    }

    fn embedding_to_onnx(&self, g: &mut GraphBuilder, x: &str) -> Result<String, OnnxError> {
        let steps = ops::transpose(g, x, &[0, 2, 1])?; // [N, len, rows]
        let r1 = ops::gru(g, "gru1", &steps, &onnx_layers::gru(&self.gru1, "gru1")?)?;
        let r2 = ops::gru(
            g,
            "gru2",
            &r1.sequence,
            &onnx_layers::gru(&self.gru2, "gru2")?,
        )?;
        let units = self.gru2.d_hidden as i64;
        ops::reshape(g, &r2.last_hidden, &[-1, units]) // [1, N, H] → [N, H]
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

    #[test]
    fn gru2_maps_windows_to_class_logits() {
        let device = Device::flex();
        let model = Gru2Config::new(11)
            .with_units1(6)
            .with_units2(5)
            .init(&device);
        let y = model.forward(Tensor::zeros([3, 2, 128], &device));
        assert_eq!(y.dims(), [3, 11]);
        let model = Gru2Config::new(3)
            .with_rows(8)
            .with_units1(4)
            .with_units2(4)
            .init(&device);
        assert_eq!(
            model.forward(Tensor::zeros([2, 8, 5], &device)).dims(),
            [2, 3]
        );
    }

    #[test]
    fn gru2_logits_depend_on_the_last_step() {
        // The classifier reads the last hidden state, which has seen every step: changing only
        // the final sample changes the logits.
        let device = Device::flex();
        let model = Gru2Config::new(2)
            .with_units1(4)
            .with_units2(4)
            .init(&device);
        let x = Tensor::<3>::zeros([1, 2, 6], &device);
        let y0: Vec<f32> = model.forward(x.clone()).into_data().try_into_vec().unwrap();
        let x1 = x.slice_assign([0..1, 0..2, 5..6], Tensor::ones([1, 2, 1], &device));
        let y1: Vec<f32> = model.forward(x1).into_data().try_into_vec().unwrap();
        assert_ne!(y0, y1);
    }
}
