//! burn layers → the plain weights [`crate::onnx::ops`] writes: each function reads a trained
//! burn module and returns its parameters in the writer's types, refusing a layer option that has
//! no faithful ONNX form (an LSTM/GRU `clip`, non-default recurrent activations, `Same` padding
//! whose amount depends on the input, quiet softmax) with an [`OnnxError`] naming the layer.
//!
//! burn's layouts carry over as they are: `Linear` weights are `[d_input, d_output]`
//! ([`LinearWeights::burn`]), convolution weights `[c_out, c_in / groups, k…]`, and the gates of
//! `Lstm` / `Gru` are separate `GateController`s (input and hidden transform each), which
//! [`GateWeights`] mirrors; [`crate::onnx::ops::lstm`] / [`crate::onnx::ops::gru`] reorder the
//! gates into ONNX's order. BatchNorm exports its running statistics (inference form).

use burn::module::Param;
use burn::nn::activation::Activation;
use burn::nn::attention::MultiHeadAttention;
use burn::nn::conv::{Conv1d, Conv2d};
use burn::nn::gru::Gru;
use burn::nn::{
    BatchNorm, GateController, LayerNorm, Linear, Lstm, PaddingConfig1d, PaddingConfig2d,
};
use burn::tensor::Tensor;

use crate::onnx::ops::{
    BatchNormWeights, ConvOptions, ConvWeights, Direction, GateWeights, GruCell, GruWeights,
    LayerNormWeights, LinearWeights, LstmCell, LstmWeights, MhaWeights,
};
use crate::onnx::{OnnxError, Weights};

fn refuse(layer: &str, what: impl Into<String>) -> OnnxError {
    OnnxError::Layer {
        layer: layer.into(),
        what: what.into(),
    }
}

/// A tensor's values (row-major) and shape.
pub fn tensor<const D: usize>(t: Tensor<D>, layer: &str) -> Result<Weights, OnnxError> {
    let shape = t.dims().to_vec();
    let data = t
        .into_data()
        .try_into_vec::<f32>()
        .map_err(|e| refuse(layer, format!("cannot read a parameter as f32: {e:?}")))?;
    Ok(Weights::new(data, shape))
}

fn param<const D: usize>(p: &Param<Tensor<D>>, layer: &str) -> Result<Weights, OnnxError> {
    tensor(p.val(), layer)
}

/// A `Linear` layer (`weight` `[d_input, d_output]`, optional bias).
pub fn linear(l: &Linear, layer: &str) -> Result<LinearWeights, OnnxError> {
    let bias = l.bias.as_ref().map(|b| param(b, layer)).transpose()?;
    Ok(LinearWeights::burn(param(&l.weight, layer)?, bias))
}

/// A `Conv1d` layer and its geometry. `Same` padding is refused (its amount depends on the input
/// length; the models here pad explicitly).
pub fn conv1d(c: &Conv1d, layer: &str) -> Result<(ConvWeights, ConvOptions), OnnxError> {
    let pad = match c.padding {
        PaddingConfig1d::Valid => (0, 0),
        PaddingConfig1d::Explicit(left, right) => (left, right),
        PaddingConfig1d::Same => {
            return Err(refuse(
                layer,
                "Same padding is not exported; configure Explicit(left, right) padding",
            ));
        }
    };
    let weights = ConvWeights {
        weight: param(&c.weight, layer)?,
        bias: c.bias.as_ref().map(|b| param(b, layer)).transpose()?,
    };
    let opts = ConvOptions::conv1d(c.stride, pad, c.dilation, c.groups);
    Ok((weights, opts))
}

/// A `Conv2d` layer and its geometry (`Same` padding refused, as for [`conv1d`]).
pub fn conv2d(c: &Conv2d, layer: &str) -> Result<(ConvWeights, ConvOptions), OnnxError> {
    let pads = match c.padding {
        PaddingConfig2d::Valid => vec![(0, 0), (0, 0)],
        PaddingConfig2d::Explicit(top, left, bottom, right) => vec![(top, bottom), (left, right)],
        PaddingConfig2d::Same => {
            return Err(refuse(
                layer,
                "Same padding is not exported; configure Explicit(top, left, bottom, right) padding",
            ));
        }
    };
    let weights = ConvWeights {
        weight: param(&c.weight, layer)?,
        bias: c.bias.as_ref().map(|b| param(b, layer)).transpose()?,
    };
    let opts = ConvOptions {
        strides: c.stride.to_vec(),
        pads,
        dilations: c.dilation.to_vec(),
        groups: c.groups,
    };
    Ok((weights, opts))
}

/// A `BatchNorm` in inference form: scale, shift and the running statistics.
pub fn batch_norm(b: &BatchNorm, layer: &str) -> Result<BatchNormWeights, OnnxError> {
    Ok(BatchNormWeights {
        gamma: param(&b.gamma, layer)?,
        beta: param(&b.beta, layer)?,
        running_mean: tensor(b.running_mean.value(), layer)?,
        running_var: tensor(b.running_var.value(), layer)?,
        epsilon: b.epsilon as f32,
    })
}

/// A `LayerNorm`; burn keeps its epsilon private, so the model passes the value it configured.
pub fn layer_norm(l: &LayerNorm, epsilon: f64, layer: &str) -> Result<LayerNormWeights, OnnxError> {
    Ok(LayerNormWeights {
        gamma: param(&l.gamma, layer)?,
        beta: l.beta.as_ref().map(|b| param(b, layer)).transpose()?,
        epsilon: epsilon as f32,
    })
}

fn gate(g: &GateController, layer: &str) -> Result<GateWeights, OnnxError> {
    Ok(GateWeights {
        input: linear(&g.input_transform, layer)?,
        hidden: linear(&g.hidden_transform, layer)?,
    })
}

/// Whether `a` is the activation an ONNX recurrent node applies by default in that place.
fn is_sigmoid(a: &Activation) -> bool {
    matches!(a, Activation::Sigmoid(_))
}

fn is_tanh(a: &Activation) -> bool {
    matches!(a, Activation::Tanh(_))
}

/// A batch-first, single-direction `Lstm`. Refused: `clip` (burn clamps the cell state, ONNX
/// clips gate inputs) and activations other than sigmoid/tanh/tanh.
pub fn lstm(l: &Lstm, layer: &str) -> Result<LstmWeights, OnnxError> {
    if l.clip.is_some() {
        return Err(refuse(
            layer,
            "LSTM cell-state clip has no ONNX equivalent (ONNX clips gate inputs)",
        ));
    }
    if !(is_sigmoid(&l.gate_activation)
        && is_tanh(&l.cell_activation)
        && is_tanh(&l.hidden_activation))
    {
        return Err(refuse(
            layer,
            "only the default LSTM activations (sigmoid gates, tanh cell and hidden) are exported",
        ));
    }
    if !l.batch_first {
        return Err(refuse(
            layer,
            "only batch-first LSTMs are exported by the models here",
        ));
    }
    let cell = LstmCell {
        input_gate: gate(&l.input_gate, layer)?,
        forget_gate: l.forget_gate.as_ref().map(|f| gate(f, layer)).transpose()?,
        cell_gate: gate(&l.cell_gate, layer)?,
        output_gate: gate(&l.output_gate, layer)?,
    };
    Ok(LstmWeights {
        cells: vec![cell],
        direction: if l.reverse {
            Direction::Reverse
        } else {
            Direction::Forward
        },
        batch_first: true,
    })
}

/// A forward `Gru` (burn's is always batch-first). `reset_after` maps to ONNX
/// `linear_before_reset`; `clip` and non-default activations are refused.
pub fn gru(g: &Gru, layer: &str) -> Result<GruWeights, OnnxError> {
    if g.clip.is_some() {
        return Err(refuse(
            layer,
            "GRU hidden-state clip has no ONNX equivalent",
        ));
    }
    if !(is_sigmoid(&g.gate_activation) && is_tanh(&g.hidden_activation)) {
        return Err(refuse(
            layer,
            "only the default GRU activations (sigmoid gates, tanh candidate) are exported",
        ));
    }
    Ok(GruWeights {
        cells: vec![GruCell {
            update_gate: gate(&g.update_gate, layer)?,
            reset_gate: gate(&g.reset_gate, layer)?,
            new_gate: gate(&g.new_gate, layer)?,
        }],
        direction: Direction::Forward,
        batch_first: true,
        reset_after: g.reset_after,
    })
}

/// Self-attention weights of a `MultiHeadAttention` (no masks at inference; dropout dropped).
/// Quiet softmax is refused.
pub fn mha(m: &MultiHeadAttention, layer: &str) -> Result<MhaWeights, OnnxError> {
    if m.quiet_softmax {
        return Err(refuse(layer, "quiet softmax is not exported"));
    }
    Ok(MhaWeights {
        query: linear(&m.query, layer)?,
        key: linear(&m.key, layer)?,
        value: linear(&m.value, layer)?,
        output: linear(&m.output, layer)?,
        n_heads: m.n_heads,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::conv::Conv1dConfig;
    use burn::nn::{LinearConfig, LstmConfig};
    use burn::tensor::Device;

    #[test]
    fn linear_keeps_burn_layout() {
        let device = Device::flex();
        let l = LinearConfig::new(3, 5).init(&device);
        let w = linear(&l, "fc").unwrap();
        assert_eq!(w.weight.shape, vec![3, 5]);
        assert_eq!(w.bias.unwrap().shape, vec![5]);
    }

    #[test]
    fn same_padding_and_clip_are_refused_naming_the_layer() {
        let device = Device::flex();
        let c = Conv1dConfig::new(2, 4, 3)
            .with_padding(PaddingConfig1d::Same)
            .init(&device);
        let e = conv1d(&c, "conv9").unwrap_err().to_string();
        assert!(e.contains("'conv9'") && e.contains("Same padding"), "{e}");
        let l = LstmConfig::new(2, 3, true)
            .with_clip(Some(1.0))
            .init(&device);
        let e = lstm(&l, "rnn").unwrap_err().to_string();
        assert!(e.contains("'rnn'") && e.contains("clip"), "{e}");
    }
}
