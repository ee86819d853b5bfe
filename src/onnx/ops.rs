//! Layer helpers: map framework weights onto standard ONNX operators (opset 17).
//!
//! Each helper takes the [`GraphBuilder`], a layer name (the prefix of the values it creates and
//! the name its errors carry), the name of its input value and the layer's weights as plain
//! [`Weights`], and returns the name of its output value. Weight shapes are checked against each
//! other before anything is added; a mismatch is an [`OnnxError`] naming the layer, the tensor
//! and the expected shape.
//!
//! # Layout conventions
//! - **Linear**: burn stores `weight` as `[d_input, d_output]` (`y = x·W + b`); PyTorch as
//!   `[d_output, d_input]` (`y = x·Wᵀ + b`). [`LinearWeights`] records which
//!   ([`LinearLayout`]); [`gemm`] uses `transB` for the PyTorch layout, [`linear`] transposes
//!   PyTorch weights once at export.
//! - **Conv**: burn and PyTorch agree with ONNX: `[c_out, c_in / groups, k…]`, bias `[c_out]`.
//! - **BatchNorm / LayerNorm**: `gamma`/`beta` and running stats are `[channels]` / `[d_model]`.
//! - **LSTM / GRU**: see [`LstmCell`] and [`GruCell`] for the gate orders and how they are
//!   reordered into ONNX's.
//! - **Attention**: [`MhaWeights`] is burn's `MultiHeadAttention`; [`cross_attention`] reads
//!   queries from one sequence and keys/values from another, [`self_attention`] is the case of
//!   one sequence for both.
//!
//! # Weightless helpers
//! Elementwise arithmetic ([`add`], [`sub`], [`mul`], [`div`], [`pow`], [`maximum`], …,
//! broadcasting against constants made by [`scalar`] or [`GraphBuilder::initializer`]), unary
//! functions ([`exp`], [`log`], [`sin`], [`cos`], [`sqrt`], …), shapes ([`slice()`], [`split`],
//! [`concat()`], [`reshape`], …), reductions ([`reduce_mean`], [`reduce_max`], [`reduce_sum`]) and
//! per-window routing ([`less`], [`greater`], [`where_`], [`cast`]) take value names only and
//! name their output after their first input. Opset 17 decides the operator forms: `Slice`'s and
//! `Split`'s bounds and sizes and `ReduceSum`'s axes are int64 inputs, `ReduceMean`'s and
//! `ReduceMax`'s axes an attribute. What opset 17 lacks is composed: [`atan2`] (from `Atan` and
//! `Where`), [`l2_normalize`] and [`cosine_similarity`]. Recurrences are unrolled by the caller
//! (the writer has no sub-graph attributes, so no `Loop`, `Scan` or `If`).

use super::graph::{GraphBuilder, Weights};
use super::proto::{AttributeProto, DataType};
use super::{OnnxError, Result};

fn layer_err(layer: &str, what: impl Into<String>) -> OnnxError {
    OnnxError::Layer {
        layer: layer.into(),
        what: what.into(),
    }
}

fn to_i64(v: &[usize]) -> Vec<i64> {
    v.iter().map(|&x| x as i64).collect()
}

// ---------------------------------------------------------------------------------------------
// Linear
// ---------------------------------------------------------------------------------------------

/// How a linear layer's weight matrix is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinearLayout {
    /// burn's `Linear`: `[d_input, d_output]`, `y = x·W + b`.
    InOut,
    /// PyTorch's `nn.Linear` (and `weight_ih`/`weight_hh` of its RNNs): `[d_output, d_input]`,
    /// `y = x·Wᵀ + b`.
    OutIn,
}

/// A fully connected layer: `weight` in `layout`, optional `bias` `[d_output]`.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearWeights {
    pub weight: Weights,
    pub bias: Option<Weights>,
    pub layout: LinearLayout,
}

impl LinearWeights {
    /// burn layout: `weight` `[d_input, d_output]`.
    pub fn burn(weight: Weights, bias: Option<Weights>) -> Self {
        Self {
            weight,
            bias,
            layout: LinearLayout::InOut,
        }
    }

    /// PyTorch layout: `weight` `[d_output, d_input]`.
    pub fn torch(weight: Weights, bias: Option<Weights>) -> Self {
        Self {
            weight,
            bias,
            layout: LinearLayout::OutIn,
        }
    }

    fn meaning(&self) -> &'static str {
        match self.layout {
            LinearLayout::InOut => "[d_input, d_output], burn layout",
            LinearLayout::OutIn => "[d_output, d_input], PyTorch layout",
        }
    }

    /// Checks the weight is 2-D and the bias `[d_output]`; returns `(d_input, d_output)`.
    pub fn check(&self, layer: &str, tensor: &str) -> Result<(usize, usize)> {
        self.weight.expect_len(layer, &format!("{tensor}weight"))?;
        if self.weight.shape.len() != 2 {
            return Err(OnnxError::WeightShape {
                layer: layer.into(),
                tensor: format!("{tensor}weight"),
                got: self.weight.shape.clone(),
                expected: vec![],
                meaning: format!("a 2-D matrix {}", self.meaning()),
            });
        }
        let (d_in, d_out) = match self.layout {
            LinearLayout::InOut => (self.weight.shape[0], self.weight.shape[1]),
            LinearLayout::OutIn => (self.weight.shape[1], self.weight.shape[0]),
        };
        if let Some(b) = &self.bias {
            b.expect(layer, &format!("{tensor}bias"), &[d_out], "[d_output]")?;
        }
        Ok((d_in, d_out))
    }

    /// Checks the layer is `[d_in → d_out]` (as well as [`check`](Self::check)).
    fn check_dims(&self, layer: &str, tensor: &str, d_in: usize, d_out: usize) -> Result<()> {
        self.weight.expect_len(layer, &format!("{tensor}weight"))?;
        let expected = match self.layout {
            LinearLayout::InOut => [d_in, d_out],
            LinearLayout::OutIn => [d_out, d_in],
        };
        self.weight
            .expect(layer, &format!("{tensor}weight"), &expected, self.meaning())?;
        self.check(layer, tensor).map(|_| ())
    }

    /// The weight as `[d_output, d_input]` (ONNX's RNN and Gemm-`transB` layout).
    fn out_in(&self) -> Weights {
        match self.layout {
            LinearLayout::InOut => self.weight.transposed(),
            LinearLayout::OutIn => self.weight.clone(),
        }
    }

    /// The weight as `[d_input, d_output]` (the `MatMul` layout).
    fn in_out(&self) -> Weights {
        match self.layout {
            LinearLayout::InOut => self.weight.clone(),
            LinearLayout::OutIn => self.weight.transposed(),
        }
    }
}

/// `y = x·W + b` on the last axis of an input of any rank, as `MatMul` (+ `Add`).
///
/// # Shapes
/// `[…, d_input]` → `[…, d_output]`
pub fn linear(g: &mut GraphBuilder, layer: &str, x: &str, w: &LinearWeights) -> Result<String> {
    w.check(layer, "")?;
    let weight = g.initializer(&format!("{layer}.weight"), &w.in_out())?;
    let y = g.op("MatMul", &[x, &weight], vec![], &format!("{layer}.matmul"))?;
    match &w.bias {
        Some(b) => {
            let bias = g.initializer(&format!("{layer}.bias"), b)?;
            g.op("Add", &[&y, &bias], vec![], &format!("{layer}.out"))
        }
        None => Ok(y),
    }
}

/// `y = x·W + b` on a 2-D input as one `Gemm` (`transB = 1` for the PyTorch layout).
///
/// # Shapes
/// `[batch, d_input]` → `[batch, d_output]`
pub fn gemm(g: &mut GraphBuilder, layer: &str, x: &str, w: &LinearWeights) -> Result<String> {
    w.check(layer, "")?;
    let weight = g.initializer(&format!("{layer}.weight"), &w.weight)?;
    let trans_b = i64::from(w.layout == LinearLayout::OutIn);
    let attrs = vec![AttributeProto::int("transB", trans_b)];
    match &w.bias {
        Some(b) => {
            let bias = g.initializer(&format!("{layer}.bias"), b)?;
            g.op("Gemm", &[x, &weight, &bias], attrs, &format!("{layer}.out"))
        }
        None => g.op("Gemm", &[x, &weight], attrs, &format!("{layer}.out")),
    }
}

// ---------------------------------------------------------------------------------------------
// Convolution and normalisation
// ---------------------------------------------------------------------------------------------

/// A convolution's weights: `weight` `[c_out, c_in / groups, k…]` (1 or 2 kernel axes), optional
/// `bias` `[c_out]` — burn's and PyTorch's layout, and ONNX's.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvWeights {
    pub weight: Weights,
    pub bias: Option<Weights>,
}

/// A convolution's or pool's geometry, one entry per spatial axis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvOptions {
    pub strides: Vec<usize>,
    /// `(begin, end)` zero padding per spatial axis (burn's `Explicit(p)` is `(p, p)`).
    pub pads: Vec<(usize, usize)>,
    pub dilations: Vec<usize>,
    pub groups: usize,
}

impl ConvOptions {
    /// Stride 1, no padding, dilation 1, one group, over `spatial` axes.
    pub fn new(spatial: usize) -> Self {
        Self {
            strides: vec![1; spatial],
            pads: vec![(0, 0); spatial],
            dilations: vec![1; spatial],
            groups: 1,
        }
    }

    /// A 1-D convolution's geometry.
    pub fn conv1d(stride: usize, pad: (usize, usize), dilation: usize, groups: usize) -> Self {
        Self {
            strides: vec![stride],
            pads: vec![pad],
            dilations: vec![dilation],
            groups,
        }
    }

    /// ONNX `pads`: all begins, then all ends.
    fn onnx_pads(&self) -> Vec<i64> {
        let mut p: Vec<i64> = self.pads.iter().map(|&(b, _)| b as i64).collect();
        p.extend(self.pads.iter().map(|&(_, e)| e as i64));
        p
    }

    fn check(&self, layer: &str, spatial: usize) -> Result<()> {
        if self.strides.len() != spatial
            || self.pads.len() != spatial
            || self.dilations.len() != spatial
        {
            return Err(layer_err(
                layer,
                format!(
                    "strides, pads and dilations need one entry per spatial axis ({spatial}), got {}, {} and {}",
                    self.strides.len(),
                    self.pads.len(),
                    self.dilations.len()
                ),
            ));
        }
        if self.strides.contains(&0) || self.dilations.contains(&0) || self.groups == 0 {
            return Err(layer_err(
                layer,
                "strides, dilations and groups must be at least 1",
            ));
        }
        Ok(())
    }
}

/// `Conv`, 1-D (`weight` `[c_out, c_in/groups, k]`) or 2-D (`[c_out, c_in/groups, kh, kw]`).
///
/// # Shapes
/// `[batch, c_in, l]` → `[batch, c_out, l']` (1-D); `[batch, c_in, h, w]` → `[batch, c_out, h', w']`
pub fn conv(
    g: &mut GraphBuilder,
    layer: &str,
    x: &str,
    w: &ConvWeights,
    opts: &ConvOptions,
) -> Result<String> {
    w.weight.expect_len(layer, "weight")?;
    let rank = w.weight.shape.len();
    if !(3..=4).contains(&rank) {
        return Err(OnnxError::WeightShape {
            layer: layer.into(),
            tensor: "weight".into(),
            got: w.weight.shape.clone(),
            expected: vec![],
            meaning: "[c_out, c_in/groups, k] or [c_out, c_in/groups, kh, kw]".into(),
        });
    }
    let spatial = rank - 2;
    opts.check(layer, spatial)?;
    let c_out = w.weight.shape[0];
    if !c_out.is_multiple_of(opts.groups) {
        return Err(layer_err(
            layer,
            format!(
                "{c_out} output channels do not split into {} groups",
                opts.groups
            ),
        ));
    }
    if let Some(b) = &w.bias {
        b.expect(layer, "bias", &[c_out], "[c_out]")?;
    }
    let weight = g.initializer(&format!("{layer}.weight"), &w.weight)?;
    let attrs = vec![
        AttributeProto::ints("kernel_shape", &to_i64(&w.weight.shape[2..])),
        AttributeProto::ints("strides", &to_i64(&opts.strides)),
        AttributeProto::ints("pads", &opts.onnx_pads()),
        AttributeProto::ints("dilations", &to_i64(&opts.dilations)),
        AttributeProto::int("group", opts.groups as i64),
    ];
    let out = format!("{layer}.out");
    match &w.bias {
        Some(b) => {
            let bias = g.initializer(&format!("{layer}.bias"), b)?;
            g.op("Conv", &[x, &weight, &bias], attrs, &out)
        }
        None => g.op("Conv", &[x, &weight], attrs, &out),
    }
}

/// Batch normalisation in inference form, from burn's `BatchNorm` (`gamma`, `beta`,
/// `running_mean`, `running_var`, all `[channels]`, and `epsilon`):
/// `y = gamma · (x − mean) / sqrt(var + epsilon) + beta` over axis 1.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNormWeights {
    pub gamma: Weights,
    pub beta: Weights,
    pub running_mean: Weights,
    pub running_var: Weights,
    pub epsilon: f32,
}

/// `BatchNormalization` (`training_mode = 0`).
///
/// # Shapes
/// `[batch, channels, …]` → same
pub fn batch_norm(
    g: &mut GraphBuilder,
    layer: &str,
    x: &str,
    w: &BatchNormWeights,
) -> Result<String> {
    w.gamma.expect_len(layer, "gamma")?;
    if w.gamma.shape.len() != 1 {
        return Err(OnnxError::WeightShape {
            layer: layer.into(),
            tensor: "gamma".into(),
            got: w.gamma.shape.clone(),
            expected: vec![],
            meaning: "[channels]".into(),
        });
    }
    let c = w.gamma.shape[0];
    w.beta.expect(layer, "beta", &[c], "[channels]")?;
    w.running_mean
        .expect(layer, "running_mean", &[c], "[channels]")?;
    w.running_var
        .expect(layer, "running_var", &[c], "[channels]")?;
    let scale = g.initializer(&format!("{layer}.gamma"), &w.gamma)?;
    let bias = g.initializer(&format!("{layer}.beta"), &w.beta)?;
    let mean = g.initializer(&format!("{layer}.running_mean"), &w.running_mean)?;
    let var = g.initializer(&format!("{layer}.running_var"), &w.running_var)?;
    g.op(
        "BatchNormalization",
        &[x, &scale, &bias, &mean, &var],
        vec![AttributeProto::float("epsilon", w.epsilon)],
        &format!("{layer}.out"),
    )
}

/// Layer normalisation over the last axis, from burn's `LayerNorm` (`gamma` `[d_model]`,
/// optional `beta` `[d_model]`, `epsilon`).
#[derive(Clone, Debug, PartialEq)]
pub struct LayerNormWeights {
    pub gamma: Weights,
    pub beta: Option<Weights>,
    pub epsilon: f32,
}

/// `LayerNormalization` (`axis = -1`, opset 17).
///
/// # Shapes
/// `[…, d_model]` → same
pub fn layer_norm(
    g: &mut GraphBuilder,
    layer: &str,
    x: &str,
    w: &LayerNormWeights,
) -> Result<String> {
    w.gamma.expect_len(layer, "gamma")?;
    if w.gamma.shape.len() != 1 {
        return Err(OnnxError::WeightShape {
            layer: layer.into(),
            tensor: "gamma".into(),
            got: w.gamma.shape.clone(),
            expected: vec![],
            meaning: "[d_model]".into(),
        });
    }
    let d = w.gamma.shape[0];
    let scale = g.initializer(&format!("{layer}.gamma"), &w.gamma)?;
    let mut inputs = vec![x.to_string(), scale];
    if let Some(b) = &w.beta {
        b.expect(layer, "beta", &[d], "[d_model]")?;
        inputs.push(g.initializer(&format!("{layer}.beta"), b)?);
    }
    let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    g.op(
        "LayerNormalization",
        &inputs,
        vec![
            AttributeProto::int("axis", -1),
            AttributeProto::float("epsilon", w.epsilon),
        ],
        &format!("{layer}.out"),
    )
}

// ---------------------------------------------------------------------------------------------
// Activations
// ---------------------------------------------------------------------------------------------

/// `Relu`.
pub fn relu(g: &mut GraphBuilder, x: &str) -> Result<String> {
    g.op("Relu", &[x], vec![], &format!("{x}.relu"))
}

/// `LeakyRelu` with `alpha` (burn's `negative_slope`, default 0.01).
pub fn leaky_relu(g: &mut GraphBuilder, x: &str, alpha: f32) -> Result<String> {
    g.op(
        "LeakyRelu",
        &[x],
        vec![AttributeProto::float("alpha", alpha)],
        &format!("{x}.leaky_relu"),
    )
}

/// `PRelu` with burn's `alpha` `[channels]` (or `[1]`, shared) acting on axis 1 of an input of
/// rank `input_rank`: the slope is stored as `[channels, 1, …]` so that it broadcasts over
/// `[batch, channels, …]`.
pub fn prelu(
    g: &mut GraphBuilder,
    layer: &str,
    x: &str,
    alpha: &Weights,
    input_rank: usize,
) -> Result<String> {
    alpha.expect_len(layer, "alpha")?;
    if alpha.shape.len() != 1 || input_rank < 2 {
        return Err(OnnxError::WeightShape {
            layer: layer.into(),
            tensor: "alpha".into(),
            got: alpha.shape.clone(),
            expected: vec![],
            meaning: "[channels] acting on axis 1 of an input of rank ≥ 2".into(),
        });
    }
    let mut dims = vec![alpha.shape[0]];
    dims.extend(std::iter::repeat_n(1, input_rank - 2));
    let slope = g.initializer_f32(&format!("{layer}.alpha"), &alpha.data, &dims)?;
    g.op("PRelu", &[x, &slope], vec![], &format!("{layer}.out"))
}

/// `Sigmoid`.
pub fn sigmoid(g: &mut GraphBuilder, x: &str) -> Result<String> {
    g.op("Sigmoid", &[x], vec![], &format!("{x}.sigmoid"))
}

/// `Tanh`.
pub fn tanh(g: &mut GraphBuilder, x: &str) -> Result<String> {
    g.op("Tanh", &[x], vec![], &format!("{x}.tanh"))
}

/// Exact GELU, `0.5·x·(1 + erf(x/√2))` (burn's `Gelu`), from `Div`, `Erf`, `Add`, `Mul`:
/// the `Gelu` operator only exists from opset 20.
pub fn gelu(g: &mut GraphBuilder, x: &str) -> Result<String> {
    let sqrt2 = g.initializer_f32(&format!("{x}.gelu.sqrt2"), &[std::f32::consts::SQRT_2], &[])?;
    let one = g.initializer_f32(&format!("{x}.gelu.one"), &[1.0], &[])?;
    let half = g.initializer_f32(&format!("{x}.gelu.half"), &[0.5], &[])?;
    let scaled = g.op("Div", &[x, &sqrt2], vec![], &format!("{x}.gelu.scaled"))?;
    let erf = g.op("Erf", &[&scaled], vec![], &format!("{x}.gelu.erf"))?;
    let plus = g.op("Add", &[&erf, &one], vec![], &format!("{x}.gelu.plus1"))?;
    let xp = g.op("Mul", &[x, &plus], vec![], &format!("{x}.gelu.mul"))?;
    g.op("Mul", &[&xp, &half], vec![], &format!("{x}.gelu"))
}

/// `Softmax` along `axis` (opset ≥ 13 semantics: that one axis).
pub fn softmax(g: &mut GraphBuilder, x: &str, axis: i64) -> Result<String> {
    g.op(
        "Softmax",
        &[x],
        vec![AttributeProto::int("axis", axis)],
        &format!("{x}.softmax"),
    )
}

/// Dropout is the identity at inference: nothing is added, `x` is returned.
pub fn dropout(x: &str) -> String {
    x.to_string()
}

// ---------------------------------------------------------------------------------------------
// Pooling
// ---------------------------------------------------------------------------------------------

/// Geometry of a `MaxPool`/`AveragePool`, one entry per spatial axis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolOptions {
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    /// `(begin, end)` padding per spatial axis.
    pub pads: Vec<(usize, usize)>,
    /// Max pooling only (average pooling gains dilations in opset 19).
    pub dilations: Vec<usize>,
    pub ceil_mode: bool,
}

impl PoolOptions {
    /// A pool with kernel `kernel`, stride equal to the kernel, no padding.
    pub fn new(kernel: &[usize]) -> Self {
        Self {
            kernel: kernel.to_vec(),
            strides: kernel.to_vec(),
            pads: vec![(0, 0); kernel.len()],
            dilations: vec![1; kernel.len()],
            ceil_mode: false,
        }
    }

    fn attrs(&self, layer: &str, with_dilations: bool) -> Result<Vec<AttributeProto>> {
        let n = self.kernel.len();
        if n == 0 || self.strides.len() != n || self.pads.len() != n || self.dilations.len() != n {
            return Err(layer_err(
                layer,
                format!(
                    "kernel, strides, pads and dilations need one entry per spatial axis, got {}, {}, {} and {}",
                    n,
                    self.strides.len(),
                    self.pads.len(),
                    self.dilations.len()
                ),
            ));
        }
        let conv = ConvOptions {
            strides: self.strides.clone(),
            pads: self.pads.clone(),
            dilations: self.dilations.clone(),
            groups: 1,
        };
        conv.check(layer, n)?;
        let mut attrs = vec![
            AttributeProto::ints("kernel_shape", &to_i64(&self.kernel)),
            AttributeProto::ints("strides", &to_i64(&self.strides)),
            AttributeProto::ints("pads", &conv.onnx_pads()),
            AttributeProto::int("ceil_mode", i64::from(self.ceil_mode)),
        ];
        if with_dilations {
            attrs.push(AttributeProto::ints("dilations", &to_i64(&self.dilations)));
        } else if self.dilations.iter().any(|&d| d != 1) {
            return Err(layer_err(
                layer,
                "average pooling with dilation needs opset 19; this writer targets opset 17",
            ));
        }
        Ok(attrs)
    }
}

/// `MaxPool` (padding counts as −∞).
pub fn max_pool(g: &mut GraphBuilder, layer: &str, x: &str, opts: &PoolOptions) -> Result<String> {
    let attrs = opts.attrs(layer, true)?;
    g.op("MaxPool", &[x], attrs, &format!("{layer}.out"))
}

/// `AveragePool`; `count_include_pad` as burn's `AvgPool` option (burn defaults to `true`,
/// ONNX to `false`).
pub fn avg_pool(
    g: &mut GraphBuilder,
    layer: &str,
    x: &str,
    opts: &PoolOptions,
    count_include_pad: bool,
) -> Result<String> {
    let mut attrs = opts.attrs(layer, false)?;
    attrs.push(AttributeProto::int(
        "count_include_pad",
        i64::from(count_include_pad),
    ));
    g.op("AveragePool", &[x], attrs, &format!("{layer}.out"))
}

/// `GlobalAveragePool` (burn's `AdaptiveAvgPool1d/2d` with output size 1).
///
/// # Shapes
/// `[batch, c, …]` → `[batch, c, 1, …]`
pub fn global_avg_pool(g: &mut GraphBuilder, x: &str) -> Result<String> {
    g.op("GlobalAveragePool", &[x], vec![], &format!("{x}.gap"))
}

// ---------------------------------------------------------------------------------------------
// Shape and elementwise
// ---------------------------------------------------------------------------------------------

/// `Flatten` at `axis`: `[d0 … d(axis−1)] × [d(axis) …]` as a 2-D tensor.
pub fn flatten(g: &mut GraphBuilder, x: &str, axis: i64) -> Result<String> {
    g.op(
        "Flatten",
        &[x],
        vec![AttributeProto::int("axis", axis)],
        &format!("{x}.flat"),
    )
}

/// `Reshape` to `shape` (`0` copies the input's extent on that axis — use it for the batch axis —
/// and `-1` infers one axis).
pub fn reshape(g: &mut GraphBuilder, x: &str, shape: &[i64]) -> Result<String> {
    let s = g.constant_i64(&format!("{x}.shape"), shape, &[shape.len()])?;
    g.op("Reshape", &[x, &s], vec![], &format!("{x}.reshaped"))
}

/// `Transpose` with permutation `perm`.
pub fn transpose(g: &mut GraphBuilder, x: &str, perm: &[i64]) -> Result<String> {
    g.op(
        "Transpose",
        &[x],
        vec![AttributeProto::ints("perm", perm)],
        &format!("{x}.t"),
    )
}

/// `Concat` along `axis`.
pub fn concat(g: &mut GraphBuilder, xs: &[&str], axis: i64) -> Result<String> {
    let out = format!("{}.concat", xs.first().copied().unwrap_or("concat"));
    g.op("Concat", xs, vec![AttributeProto::int("axis", axis)], &out)
}

/// `Add` (NumPy broadcasting).
pub fn add(g: &mut GraphBuilder, a: &str, b: &str) -> Result<String> {
    g.op("Add", &[a, b], vec![], &format!("{a}.add"))
}

/// `Mul` (NumPy broadcasting).
pub fn mul(g: &mut GraphBuilder, a: &str, b: &str) -> Result<String> {
    g.op("Mul", &[a, b], vec![], &format!("{a}.mul"))
}

/// `[N, 2C, L]` I/Q rows → `[N, 3C, L]`: the rows, then each channel's amplitude `√(I² + Q²)`,
/// as `Mul` (squares), `Reshape` to `[N, C, 2, L]`, `ReduceSum` over the pair, `Sqrt` and
/// `Concat` along the rows.
pub fn append_amplitude_rows(g: &mut GraphBuilder, x: &str, channels: usize) -> Result<String> {
    let squares = g.op("Mul", &[x, x], vec![], &format!("{x}.squares"))?;
    let pairs = reshape(g, &squares, &[0, channels as i64, 2, -1])?;
    let axes = g.constant_i64(&format!("{x}.pair_axis"), &[2], &[1])?;
    let power = g.op(
        "ReduceSum",
        &[&pairs, &axes],
        vec![AttributeProto::int("keepdims", 0)],
        &format!("{x}.power"),
    )?;
    let amplitude = g.op("Sqrt", &[&power], vec![], &format!("{x}.amplitude"))?;
    concat(g, &[x, &amplitude], 1)
}

/// A scalar float constant (a rank-0 initializer named after `name`), for broadcasting against
/// any tensor: `sub(g, &one, &p)` is `1 − p`.
pub fn scalar(g: &mut GraphBuilder, name: &str, value: f32) -> Result<String> {
    g.initializer_f32(name, &[value], &[])
}

fn binary(g: &mut GraphBuilder, op_type: &str, a: &str, b: &str, suffix: &str) -> Result<String> {
    g.op(op_type, &[a, b], vec![], &format!("{a}.{suffix}"))
}

fn unary(g: &mut GraphBuilder, op_type: &str, x: &str, suffix: &str) -> Result<String> {
    g.op(op_type, &[x], vec![], &format!("{x}.{suffix}"))
}

/// `Sub`, `a − b` (NumPy broadcasting).
pub fn sub(g: &mut GraphBuilder, a: &str, b: &str) -> Result<String> {
    binary(g, "Sub", a, b, "sub")
}

/// `Div`, `a / b` (NumPy broadcasting; IEEE semantics: `x / 0` is ±∞ or NaN).
pub fn div(g: &mut GraphBuilder, a: &str, b: &str) -> Result<String> {
    binary(g, "Div", a, b, "div")
}

/// `Max`, the elementwise larger of `a` and `b` (NumPy broadcasting).
pub fn maximum(g: &mut GraphBuilder, a: &str, b: &str) -> Result<String> {
    binary(g, "Max", a, b, "max")
}

/// `Min`, the elementwise smaller of `a` and `b` (NumPy broadcasting).
pub fn minimum(g: &mut GraphBuilder, a: &str, b: &str) -> Result<String> {
    binary(g, "Min", a, b, "min")
}

/// `MatMul` of two values (NumPy `matmul`: the last two axes multiply, leading axes broadcast).
/// For a product with fixed weights use [`linear`].
pub fn matmul(g: &mut GraphBuilder, a: &str, b: &str) -> Result<String> {
    binary(g, "MatMul", a, b, "matmul")
}

/// `Pow` by a constant exponent, `x^exponent` (e.g. focal loss's `(1 − p)^γ`; a negative base
/// with a non-integer exponent gives NaN, as in IEEE `pow`).
pub fn pow(g: &mut GraphBuilder, x: &str, exponent: f32) -> Result<String> {
    let e = scalar(g, &format!("{x}.exponent"), exponent)?;
    binary(g, "Pow", x, &e, "pow")
}

/// `Exp`, `eˣ`.
pub fn exp(g: &mut GraphBuilder, x: &str) -> Result<String> {
    unary(g, "Exp", x, "exp")
}

/// `Log`, the natural logarithm (`−∞` at 0, NaN below).
pub fn log(g: &mut GraphBuilder, x: &str) -> Result<String> {
    unary(g, "Log", x, "log")
}

/// `Sin` (radians).
pub fn sin(g: &mut GraphBuilder, x: &str) -> Result<String> {
    unary(g, "Sin", x, "sin")
}

/// `Cos` (radians).
pub fn cos(g: &mut GraphBuilder, x: &str) -> Result<String> {
    unary(g, "Cos", x, "cos")
}

/// `Atan`, in `(−π/2, π/2)`; for the full-circle angle of a point see [`atan2`].
pub fn atan(g: &mut GraphBuilder, x: &str) -> Result<String> {
    unary(g, "Atan", x, "atan")
}

/// `Sqrt` (NaN below 0).
pub fn sqrt(g: &mut GraphBuilder, x: &str) -> Result<String> {
    unary(g, "Sqrt", x, "sqrt")
}

/// `Neg`, `−x`.
pub fn neg(g: &mut GraphBuilder, x: &str) -> Result<String> {
    unary(g, "Neg", x, "neg")
}

/// `Abs`, `|x|`.
pub fn abs(g: &mut GraphBuilder, x: &str) -> Result<String> {
    unary(g, "Abs", x, "abs")
}

/// `Sign`: −1, 0 or 1.
pub fn sign(g: &mut GraphBuilder, x: &str) -> Result<String> {
    unary(g, "Sign", x, "sign")
}

/// `Slice`: on each of `axes`, the elements `starts[i], starts[i] + steps[i], …` up to (not
/// including) `ends[i]`. Negative starts and ends count from the end of the axis; out-of-range
/// ones are clamped (`i64::MAX` means "to the end", and with a negative step `i64::MIN` means
/// "down to the first element"). `steps` may be empty (all 1). Axes the slice does not name are
/// kept whole.
///
/// # Shapes
/// `[… d(axis) …]` → `[… ⌈(end − start) / step⌉ …]` on each sliced axis
pub fn slice(
    g: &mut GraphBuilder,
    x: &str,
    starts: &[i64],
    ends: &[i64],
    axes: &[i64],
    steps: &[i64],
) -> Result<String> {
    let layer = format!("{x}.slice");
    let n = axes.len();
    if n == 0 || starts.len() != n || ends.len() != n || !(steps.is_empty() || steps.len() == n) {
        return Err(layer_err(
            &layer,
            format!(
                "starts, ends and axes (and steps, when given) need one entry per sliced axis, got \
                 {}, {}, {} and {}",
                starts.len(),
                ends.len(),
                n,
                steps.len()
            ),
        ));
    }
    if steps.contains(&0) {
        return Err(layer_err(&layer, "a slice step cannot be 0"));
    }
    if let Some(a) = axes
        .iter()
        .enumerate()
        .find_map(|(i, a)| axes[..i].contains(a).then_some(a))
    {
        return Err(layer_err(&layer, format!("axis {a} is sliced twice")));
    }
    let dims = [n];
    let starts = g.constant_i64(&format!("{layer}.starts"), starts, &dims)?;
    let ends = g.constant_i64(&format!("{layer}.ends"), ends, &dims)?;
    let axes = g.constant_i64(&format!("{layer}.axes"), axes, &dims)?;
    let mut inputs = vec![x, starts.as_str(), ends.as_str(), axes.as_str()];
    let steps = if steps.is_empty() {
        None
    } else {
        Some(g.constant_i64(&format!("{layer}.steps"), steps, &dims)?)
    };
    if let Some(s) = &steps {
        inputs.push(s);
    }
    g.op("Slice", &inputs, vec![], &layer)
}

/// `Split` along `axis` into consecutive parts of `sizes` (which must add up to the axis's
/// extent, as onnxruntime checks when it runs); the part sizes are an int64 input, as opset ≥ 13
/// wants. Returns one value per part, in order.
///
/// # Shapes
/// `[… d(axis) …]` → `[… sizes[k] …]` for each `k`
pub fn split(g: &mut GraphBuilder, x: &str, axis: i64, sizes: &[usize]) -> Result<Vec<String>> {
    let layer = format!("{x}.split");
    if sizes.is_empty() || sizes.contains(&0) {
        return Err(layer_err(
            &layer,
            format!("a split needs at least one part and no empty part, got sizes {sizes:?}"),
        ));
    }
    let split = g.constant_i64(&format!("{layer}.sizes"), &to_i64(sizes), &[sizes.len()])?;
    let outputs: Vec<String> = (0..sizes.len())
        .map(|k| g.fresh(&format!("{layer}{k}")))
        .collect();
    let refs: Vec<&str> = outputs.iter().map(String::as_str).collect();
    g.node(
        "Split",
        &[x, &split],
        &refs,
        vec![AttributeProto::int("axis", axis)],
    )?;
    Ok(outputs)
}

// ---------------------------------------------------------------------------------------------
// Reductions
// ---------------------------------------------------------------------------------------------

fn check_axes(layer: &str, axes: &[i64]) -> Result<()> {
    if axes.is_empty() {
        return Err(layer_err(
            layer,
            "name the axes to reduce (an empty list would mean all axes or none, by operator)",
        ));
    }
    Ok(())
}

/// A reduction whose axes are an attribute (opset 17: `ReduceMean`, `ReduceMax`, …).
fn reduce_attr(
    g: &mut GraphBuilder,
    op_type: &str,
    suffix: &str,
    x: &str,
    axes: &[i64],
    keepdims: bool,
) -> Result<String> {
    let out = format!("{x}.{suffix}");
    check_axes(&out, axes)?;
    g.op(
        op_type,
        &[x],
        vec![
            AttributeProto::ints("axes", axes),
            AttributeProto::int("keepdims", i64::from(keepdims)),
        ],
        &out,
    )
}

/// `ReduceMean` over `axes` (negative axes count from the end); `keepdims` keeps them as size 1.
///
/// # Shapes
/// `[d0, d1, d2]`, axes `[2]` → `[d0, d1, 1]` (keepdims) or `[d0, d1]`
pub fn reduce_mean(g: &mut GraphBuilder, x: &str, axes: &[i64], keepdims: bool) -> Result<String> {
    reduce_attr(g, "ReduceMean", "mean", x, axes, keepdims)
}

/// `ReduceMax` over `axes`, as [`reduce_mean`].
pub fn reduce_max(g: &mut GraphBuilder, x: &str, axes: &[i64], keepdims: bool) -> Result<String> {
    reduce_attr(g, "ReduceMax", "max", x, axes, keepdims)
}

/// `ReduceSum` over `axes`, as [`reduce_mean`] (in opset ≥ 13 its axes are an int64 input).
pub fn reduce_sum(g: &mut GraphBuilder, x: &str, axes: &[i64], keepdims: bool) -> Result<String> {
    let out = format!("{x}.sum");
    check_axes(&out, axes)?;
    let a = g.constant_i64(&format!("{out}.axes"), axes, &[axes.len()])?;
    g.op(
        "ReduceSum",
        &[x, &a],
        vec![AttributeProto::int("keepdims", i64::from(keepdims))],
        &out,
    )
}

// ---------------------------------------------------------------------------------------------
// Comparison and routing
// ---------------------------------------------------------------------------------------------

/// `Less`, `a < b` as a `bool` tensor (NumPy broadcasting): e.g. `less(snr_db, τ)` picks the
/// low-SNR route per window.
pub fn less(g: &mut GraphBuilder, a: &str, b: &str) -> Result<String> {
    binary(g, "Less", a, b, "lt")
}

/// `Greater`, `a > b` as a `bool` tensor (NumPy broadcasting).
pub fn greater(g: &mut GraphBuilder, a: &str, b: &str) -> Result<String> {
    binary(g, "Greater", a, b, "gt")
}

/// `Where`: `a` where the `bool` tensor `cond` holds, `b` elsewhere (all three broadcast
/// together). Both `a` and `b` are computed; only the choice is per element.
pub fn where_(g: &mut GraphBuilder, cond: &str, a: &str, b: &str) -> Result<String> {
    g.op("Where", &[cond, a, b], vec![], &format!("{cond}.where"))
}

/// `Cast` to the element type `to`: float → int64 truncates toward zero, any number → bool is
/// `x ≠ 0`, bool → float is 0 or 1 (a mask for `m·a + (1 − m)·b`). Graph outputs are float32, so
/// a value of another type must be cast back before it is one.
pub fn cast(g: &mut GraphBuilder, x: &str, to: DataType) -> Result<String> {
    let suffix = match to {
        DataType::Float => "float",
        DataType::Int32 => "int32",
        DataType::Int64 => "int64",
        DataType::Bool => "bool",
        DataType::Double => "double",
        DataType::Undefined => {
            return Err(layer_err(
                &format!("{x}.cast"),
                "cast needs a defined element type",
            ));
        }
    };
    g.op(
        "Cast",
        &[x],
        vec![AttributeProto::int("to", to as i64)],
        &format!("{x}.{suffix}"),
    )
}

// ---------------------------------------------------------------------------------------------
// Angles and normalisation
// ---------------------------------------------------------------------------------------------

/// The angle of the point `(x, y)`, `atan2(y, x)` in `(−π, π]` (radians), elementwise: ONNX has
/// no `Atan2`, so it is written from `Atan`, `Less`, `Equal`, `Where`, `Sign`:
///
/// ```text
/// x > 0:           atan(y / x)
/// x < 0, y ≥ 0:    atan(y / x) + π
/// x < 0, y < 0:    atan(y / x) − π
/// x = 0:           sign(y)·π/2          (0 at the origin)
/// ```
///
/// The division reads `x` replaced by 1 where `x = 0`, so no ∞ or NaN is formed. Signed zeros are
/// not distinguished (`atan2(0, −1) = π`, `atan2(−0, −1)` is also π).
pub fn atan2(g: &mut GraphBuilder, y: &str, x: &str) -> Result<String> {
    use std::f32::consts::{FRAC_PI_2, PI};
    let p = format!("{y}.atan2");
    let zero = scalar(g, &format!("{p}.zero"), 0.0)?;
    let one = scalar(g, &format!("{p}.one"), 1.0)?;
    let pi = scalar(g, &format!("{p}.pi"), PI)?;
    let minus_pi = scalar(g, &format!("{p}.minus_pi"), -PI)?;
    let half_pi = scalar(g, &format!("{p}.half_pi"), FRAC_PI_2)?;
    let on_y_axis = g.op("Equal", &[x, &zero], vec![], &format!("{p}.x_is_0"))?;
    let safe_x = where_(g, &on_y_axis, &one, x)?;
    let ratio = div(g, y, &safe_x)?;
    let base = atan(g, &ratio)?;
    let x_neg = less(g, x, &zero)?;
    let y_neg = less(g, y, &zero)?;
    let turn = where_(g, &y_neg, &minus_pi, &pi)?;
    let turn = where_(g, &x_neg, &turn, &zero)?;
    let off_axis = add(g, &base, &turn)?;
    let sign_y = sign(g, y)?;
    let on_axis = mul(g, &sign_y, &half_pi)?;
    g.op(
        "Where",
        &[&on_y_axis, &on_axis, &off_axis],
        vec![],
        &format!("{p}.out"),
    )
}

/// L2 normalisation along `axis`: `x / max(‖x‖₂, eps)` (PyTorch's `F.normalize`; a zero
/// vector stays zero), for embeddings compared by cosine.
///
/// # Shapes
/// any → same
pub fn l2_normalize(g: &mut GraphBuilder, x: &str, axis: i64, eps: f32) -> Result<String> {
    let squares = g.op("Mul", &[x, x], vec![], &format!("{x}.l2.squares"))?;
    let power = reduce_sum(g, &squares, &[axis], true)?;
    let norm = sqrt(g, &power)?;
    let eps = scalar(g, &format!("{x}.l2.eps"), eps)?;
    let norm = maximum(g, &norm, &eps)?;
    g.op("Div", &[x, &norm], vec![], &format!("{x}.l2"))
}

/// Cosine similarity of each vector of `x` to each row of a fixed table `embeddings`
/// `[n, d]` (e.g. class embeddings of a zero-shot classifier), both L2-normalised in the graph
/// ([`l2_normalize`] with `eps`), so the table is stored verbatim as the initializer
/// `{layer}.embeddings`.
///
/// # Shapes
/// `[…, d]` → `[…, n]`, values in `[−1, 1]`
pub fn cosine_similarity(
    g: &mut GraphBuilder,
    layer: &str,
    x: &str,
    embeddings: &Weights,
    eps: f32,
) -> Result<String> {
    embeddings.expect_len(layer, "embeddings")?;
    if embeddings.shape.len() != 2 {
        return Err(OnnxError::WeightShape {
            layer: layer.into(),
            tensor: "embeddings".into(),
            got: embeddings.shape.clone(),
            expected: vec![],
            meaning: "[n, d], one row per embedding".into(),
        });
    }
    let table = g.initializer(&format!("{layer}.embeddings"), embeddings)?;
    let table = l2_normalize(g, &table, 1, eps)?;
    let table_t = transpose(g, &table, &[1, 0])?; // [d, n]
    let x = l2_normalize(g, x, -1, eps)?;
    g.op("MatMul", &[&x, &table_t], vec![], &format!("{layer}.out"))
}

// ---------------------------------------------------------------------------------------------
// Recurrent layers
// ---------------------------------------------------------------------------------------------

/// One gate of a recurrent cell as burn stores it (`GateController`): an input transform
/// `d_input → d_hidden` and a hidden transform `d_hidden → d_hidden`, each with its own optional
/// bias. The gate's pre-activation is `input.forward(x) + hidden.forward(h)`.
#[derive(Clone, Debug, PartialEq)]
pub struct GateWeights {
    pub input: LinearWeights,
    pub hidden: LinearWeights,
}

impl GateWeights {
    fn check(&self, layer: &str, gate: &str, d_in: usize, d_hidden: usize) -> Result<()> {
        self.input
            .check_dims(layer, &format!("{gate}.input."), d_in, d_hidden)?;
        self.hidden
            .check_dims(layer, &format!("{gate}.hidden."), d_hidden, d_hidden)
    }

    fn dims(&self, layer: &str, gate: &str) -> Result<(usize, usize)> {
        self.input.check(layer, &format!("{gate}.input."))
    }

    fn input_bias(&self, d_hidden: usize) -> Vec<f32> {
        bias_or_zeros(&self.input.bias, d_hidden)
    }

    fn hidden_bias(&self, d_hidden: usize) -> Vec<f32> {
        bias_or_zeros(&self.hidden.bias, d_hidden)
    }
}

fn bias_or_zeros(b: &Option<Weights>, n: usize) -> Vec<f32> {
    b.as_ref()
        .map(|b| b.data.clone())
        .unwrap_or_else(|| vec![0.0; n])
}

/// Splits PyTorch's stacked `[k·H, d]` matrix and `[k·H]` bias into `k` gates.
fn split_torch(
    layer: &str,
    k: usize,
    w_ih: &Weights,
    w_hh: &Weights,
    b_ih: Option<&Weights>,
    b_hh: Option<&Weights>,
) -> Result<Vec<GateWeights>> {
    w_ih.expect_len(layer, "weight_ih")?;
    if w_ih.shape.len() != 2 || !w_ih.shape[0].is_multiple_of(k) || w_ih.shape[0] == 0 {
        return Err(OnnxError::WeightShape {
            layer: layer.into(),
            tensor: "weight_ih".into(),
            got: w_ih.shape.clone(),
            expected: vec![],
            meaning: format!("[{k}·d_hidden, d_input], PyTorch layout"),
        });
    }
    let h = w_ih.shape[0] / k;
    let d_in = w_ih.shape[1];
    w_hh.expect(
        layer,
        "weight_hh",
        &[k * h, h],
        &format!("[{k}·d_hidden, d_hidden], PyTorch layout"),
    )?;
    for (name, b) in [("bias_ih", b_ih), ("bias_hh", b_hh)] {
        if let Some(b) = b {
            b.expect(layer, name, &[k * h], &format!("[{k}·d_hidden]"))?;
        }
    }
    let rows = |w: &Weights, gate: usize, cols: usize| {
        Weights::new(
            w.data[gate * h * cols..(gate + 1) * h * cols].to_vec(),
            [h, cols],
        )
    };
    let chunk = |b: Option<&Weights>, gate: usize| {
        b.map(|b| Weights::new(b.data[gate * h..(gate + 1) * h].to_vec(), [h]))
    };
    Ok((0..k)
        .map(|gate| GateWeights {
            input: LinearWeights::torch(rows(w_ih, gate, d_in), chunk(b_ih, gate)),
            hidden: LinearWeights::torch(rows(w_hh, gate, h), chunk(b_hh, gate)),
        })
        .collect())
}

/// Which way(s) a recurrent layer runs over the sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Forward,
    /// burn's `Lstm` with `reverse: true`; outputs stay aligned with their input time steps.
    Reverse,
    /// burn's `BiLstm`/`BiGru`: cells `[forward, reverse]`, outputs concatenated on the feature
    /// axis (forward first).
    Bidirectional,
}

impl Direction {
    fn onnx(self) -> &'static str {
        match self {
            Direction::Forward => "forward",
            Direction::Reverse => "reverse",
            Direction::Bidirectional => "bidirectional",
        }
    }

    fn count(self) -> usize {
        match self {
            Direction::Bidirectional => 2,
            _ => 1,
        }
    }
}

/// One direction of an LSTM, gate by gate as burn's `Lstm` stores it:
///
/// ```text
/// i = σ(x·W_ii + b_ii + h·W_hi + b_hi)      input gate   (input_gate)
/// f = σ(x·W_if + b_if + h·W_hf + b_hf)      forget gate  (forget_gate; None: f = 1 − i)
/// g = tanh(x·W_ig + b_ig + h·W_hg + b_hg)   cell gate    (cell_gate)
/// o = σ(x·W_io + b_io + h·W_ho + b_ho)      output gate  (output_gate)
/// c' = f ⊙ c + i ⊙ g,  h' = o ⊙ tanh(c')
/// ```
///
/// PyTorch computes the same, with the four gates stacked in the order **i, f, g, o** in
/// `weight_ih_l0` `[4H, d_input]`, `weight_hh_l0` `[4H, H]` and the separate biases `bias_ih_l0`,
/// `bias_hh_l0` `[4H]`: [`LstmCell::from_torch`] splits them. ONNX's `LSTM` wants the gates in
/// the order **i, o, f, c** (c = g), `W` `[dirs, 4H, d_input]`, `R` `[dirs, 4H, H]` and
/// `B` `[dirs, 8H]` = input biases then hidden biases; [`lstm`] reorders into that.
///
/// `forget_gate: None` is burn's `input_forget` (coupled gates), written as ONNX
/// `input_forget = 1`. burn's `clip` (it clamps the cell state, where ONNX clips gate inputs) and
/// non-default activations have no ONNX form: the exporter must refuse such a layer.
#[derive(Clone, Debug, PartialEq)]
pub struct LstmCell {
    pub input_gate: GateWeights,
    pub forget_gate: Option<GateWeights>,
    pub cell_gate: GateWeights,
    pub output_gate: GateWeights,
}

impl LstmCell {
    /// From PyTorch's stacked tensors (gate order i, f, g, o): `weight_ih` `[4H, d_input]`,
    /// `weight_hh` `[4H, H]`, `bias_ih`/`bias_hh` `[4H]`.
    pub fn from_torch(
        layer: &str,
        weight_ih: &Weights,
        weight_hh: &Weights,
        bias_ih: Option<&Weights>,
        bias_hh: Option<&Weights>,
    ) -> Result<Self> {
        let mut gates = split_torch(layer, 4, weight_ih, weight_hh, bias_ih, bias_hh)?;
        let o = gates.pop();
        let g = gates.pop();
        let f = gates.pop();
        let i = gates.pop();
        match (i, f, g, o) {
            (Some(i), Some(f), Some(g), Some(o)) => Ok(Self {
                input_gate: i,
                forget_gate: Some(f),
                cell_gate: g,
                output_gate: o,
            }),
            _ => Err(layer_err(layer, "PyTorch LSTM weights must hold 4 gates")),
        }
    }
}

/// An LSTM layer: one [`LstmCell`] per direction (`[forward, reverse]` when bidirectional) and
/// the input layout. The initial state is zero, as when burn's `forward` gets `None`.
#[derive(Clone, Debug, PartialEq)]
pub struct LstmWeights {
    pub cells: Vec<LstmCell>,
    pub direction: Direction,
    /// `true`: input `[batch, seq, d_input]` (burn's default); `false`: `[seq, batch, d_input]`.
    pub batch_first: bool,
}

/// The values a recurrent layer produces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RnnOutputs {
    /// All hidden states, in the input's layout: `[batch, seq, dirs·H]` (batch-first) or
    /// `[seq, batch, dirs·H]`, directions concatenated forward first.
    pub sequence: String,
    /// The final hidden state of each direction, `[dirs, batch, H]`.
    pub last_hidden: String,
}

fn check_cells<C>(layer: &str, cells: &[C], direction: Direction) -> Result<()> {
    if cells.len() != direction.count() {
        return Err(layer_err(
            layer,
            format!(
                "a {} layer needs {} cell(s), got {}",
                direction.onnx(),
                direction.count(),
                cells.len()
            ),
        ));
    }
    Ok(())
}

/// The ONNX `W`, `R`, `B` tensors from gates already in ONNX order, all directions.
fn rnn_tensors(per_dir: &[Vec<&GateWeights>], d_in: usize, h: usize) -> [Weights; 3] {
    let k = per_dir[0].len();
    let dirs = per_dir.len();
    let (mut w, mut r, mut b) = (Vec::new(), Vec::new(), Vec::new());
    for gates in per_dir {
        for gate in gates {
            w.extend(gate.input.out_in().data);
            r.extend(gate.hidden.out_in().data);
        }
        for gate in gates {
            b.extend(gate.input_bias(h));
        }
        for gate in gates {
            b.extend(gate.hidden_bias(h));
        }
    }
    [
        Weights::new(w, [dirs, k * h, d_in]),
        Weights::new(r, [dirs, k * h, h]),
        Weights::new(b, [dirs, 2 * k * h]),
    ]
}

/// What [`rnn_node`] writes: the operator, its tensors (gates in ONNX order) and attributes.
struct RnnNode {
    op_type: &'static str,
    tensors: [Weights; 3],
    batch_first: bool,
    attrs: Vec<AttributeProto>,
    h: usize,
    direction: Direction,
}

/// Wraps an ONNX recurrent node: time-major input, then `Y` `[seq, dirs, batch, H]` back to the
/// caller's layout with the directions concatenated.
fn rnn_node(g: &mut GraphBuilder, layer: &str, x: &str, spec: RnnNode) -> Result<RnnOutputs> {
    let RnnNode {
        op_type,
        tensors: [w, r, b],
        batch_first,
        mut attrs,
        h,
        direction,
    } = spec;
    let w = g.initializer(&format!("{layer}.W"), &w)?;
    let r = g.initializer(&format!("{layer}.R"), &r)?;
    let b = g.initializer(&format!("{layer}.B"), &b)?;
    let x_tm = if batch_first {
        transpose(g, x, &[1, 0, 2])? // [seq, batch, d_input]
    } else {
        x.to_string()
    };
    attrs.push(AttributeProto::string("direction", direction.onnx()));
    attrs.push(AttributeProto::int("hidden_size", h as i64));
    let y = g.fresh(&format!("{layer}.Y"));
    let y_h = g.fresh(&format!("{layer}.Y_h"));
    let mut outputs = vec![y.as_str(), y_h.as_str()];
    let y_c;
    if op_type == "LSTM" {
        y_c = g.fresh(&format!("{layer}.Y_c"));
        outputs.push(&y_c);
    }
    g.node(op_type, &[&x_tm, &w, &r, &b], &outputs, attrs)?; // Y: [seq, dirs, batch, H]
    let perm = if batch_first {
        [2, 0, 1, 3] // [batch, seq, dirs, H]
    } else {
        [0, 2, 1, 3] // [seq, batch, dirs, H]
    };
    let yt = transpose(g, &y, &perm)?;
    let sequence = reshape(g, &yt, &[0, 0, -1])?;
    Ok(RnnOutputs {
        sequence,
        last_hidden: y_h,
    })
}

/// `LSTM` (see [`LstmCell`] for the gate mapping), with `Transpose` around it for batch-first
/// input.
///
/// # Shapes
/// `[batch, seq, d_input]` → [`RnnOutputs::sequence`] `[batch, seq, dirs·H]` (batch-first)
pub fn lstm(g: &mut GraphBuilder, layer: &str, x: &str, w: &LstmWeights) -> Result<RnnOutputs> {
    check_cells(layer, &w.cells, w.direction)?;
    let (d_in, h) = w.cells[0].input_gate.dims(layer, "cells[0].input_gate")?;
    let coupled = w.cells[0].forget_gate.is_none();
    for (k, cell) in w.cells.iter().enumerate() {
        let p = format!("cells[{k}].");
        cell.input_gate
            .check(layer, &format!("{p}input_gate"), d_in, h)?;
        match &cell.forget_gate {
            Some(f) => f.check(layer, &format!("{p}forget_gate"), d_in, h)?,
            None if coupled => {}
            None => {
                return Err(layer_err(
                    layer,
                    "either every direction has a forget gate or none has (input_forget)",
                ));
            }
        }
        if cell.forget_gate.is_some() && coupled {
            return Err(layer_err(
                layer,
                "either every direction has a forget gate or none has (input_forget)",
            ));
        }
        cell.cell_gate
            .check(layer, &format!("{p}cell_gate"), d_in, h)?;
        cell.output_gate
            .check(layer, &format!("{p}output_gate"), d_in, h)?;
    }
    // With coupled gates ONNX ignores the forget weights; zeros fill their place.
    let zero_gate = GateWeights {
        input: LinearWeights::torch(Weights::new(vec![0.0; h * d_in], [h, d_in]), None),
        hidden: LinearWeights::torch(Weights::new(vec![0.0; h * h], [h, h]), None),
    };
    let per_dir: Vec<Vec<&GateWeights>> = w
        .cells
        .iter()
        .map(|c| {
            let f = c.forget_gate.as_ref().unwrap_or(&zero_gate);
            vec![&c.input_gate, &c.output_gate, f, &c.cell_gate] // ONNX order i, o, f, c
        })
        .collect();
    let tensors = rnn_tensors(&per_dir, d_in, h);
    let attrs = vec![AttributeProto::int("input_forget", i64::from(coupled))];
    let spec = RnnNode {
        op_type: "LSTM",
        tensors,
        batch_first: w.batch_first,
        attrs,
        h,
        direction: w.direction,
    };
    rnn_node(g, layer, x, spec)
}

/// One direction of a GRU, gate by gate as burn's `Gru` stores it:
///
/// ```text
/// z = σ(x·W_iz + b_iz + h·W_hz + b_hz)                update gate (update_gate)
/// r = σ(x·W_ir + b_ir + h·W_hr + b_hr)                reset gate  (reset_gate)
/// n = tanh(x·W_in + b_in + r ⊙ (h·W_hn + b_hn))       new gate    (new_gate), reset_after = true
/// n = tanh(x·W_in + b_in + (r ⊙ h)·W_hn + b_hn)       new gate,   reset_after = false
/// h' = (1 − z) ⊙ n + z ⊙ h
/// ```
///
/// burn's default `reset_after = true` is PyTorch's GRU, whose stacked `weight_ih_l0`
/// `[3H, d_input]`, `weight_hh_l0` `[3H, H]`, `bias_ih_l0`/`bias_hh_l0` `[3H]` hold the gates in
/// the order **r, z, n**: [`GruCell::from_torch`] splits them. ONNX's `GRU` wants **z, r, h**
/// (h = n) and `linear_before_reset = 1` for `reset_after = true` (0 for `false`); [`gru`]
/// reorders into that. burn's `clip` (it clamps the hidden state) and non-default activations
/// have no ONNX form: the exporter must refuse such a layer.
#[derive(Clone, Debug, PartialEq)]
pub struct GruCell {
    pub update_gate: GateWeights,
    pub reset_gate: GateWeights,
    pub new_gate: GateWeights,
}

impl GruCell {
    /// From PyTorch's stacked tensors (gate order r, z, n): `weight_ih` `[3H, d_input]`,
    /// `weight_hh` `[3H, H]`, `bias_ih`/`bias_hh` `[3H]`.
    pub fn from_torch(
        layer: &str,
        weight_ih: &Weights,
        weight_hh: &Weights,
        bias_ih: Option<&Weights>,
        bias_hh: Option<&Weights>,
    ) -> Result<Self> {
        let mut gates = split_torch(layer, 3, weight_ih, weight_hh, bias_ih, bias_hh)?;
        let n = gates.pop();
        let z = gates.pop();
        let r = gates.pop();
        match (r, z, n) {
            (Some(r), Some(z), Some(n)) => Ok(Self {
                update_gate: z,
                reset_gate: r,
                new_gate: n,
            }),
            _ => Err(layer_err(layer, "PyTorch GRU weights must hold 3 gates")),
        }
    }
}

/// A GRU layer: one [`GruCell`] per direction (`[forward, reverse]` when bidirectional).
#[derive(Clone, Debug, PartialEq)]
pub struct GruWeights {
    pub cells: Vec<GruCell>,
    pub direction: Direction,
    /// `true`: input `[batch, seq, d_input]` (burn's `Gru` is always batch-first);
    /// `false`: `[seq, batch, d_input]`.
    pub batch_first: bool,
    /// burn's `reset_after` (default `true`, PyTorch's formula).
    pub reset_after: bool,
}

/// `GRU` (see [`GruCell`] for the gate mapping), with `Transpose` around it for batch-first
/// input.
///
/// # Shapes
/// `[batch, seq, d_input]` → [`RnnOutputs::sequence`] `[batch, seq, dirs·H]` (batch-first)
pub fn gru(g: &mut GraphBuilder, layer: &str, x: &str, w: &GruWeights) -> Result<RnnOutputs> {
    check_cells(layer, &w.cells, w.direction)?;
    let (d_in, h) = w.cells[0].update_gate.dims(layer, "cells[0].update_gate")?;
    for (k, cell) in w.cells.iter().enumerate() {
        let p = format!("cells[{k}].");
        cell.update_gate
            .check(layer, &format!("{p}update_gate"), d_in, h)?;
        cell.reset_gate
            .check(layer, &format!("{p}reset_gate"), d_in, h)?;
        cell.new_gate
            .check(layer, &format!("{p}new_gate"), d_in, h)?;
    }
    let per_dir: Vec<Vec<&GateWeights>> = w
        .cells
        .iter()
        .map(|c| vec![&c.update_gate, &c.reset_gate, &c.new_gate]) // ONNX order z, r, h
        .collect();
    let tensors = rnn_tensors(&per_dir, d_in, h);
    let attrs = vec![AttributeProto::int(
        "linear_before_reset",
        i64::from(w.reset_after),
    )];
    let spec = RnnNode {
        op_type: "GRU",
        tensors,
        batch_first: w.batch_first,
        attrs,
        h,
        direction: w.direction,
    };
    rnn_node(g, layer, x, spec)
}

// ---------------------------------------------------------------------------------------------
// Attention
// ---------------------------------------------------------------------------------------------

/// burn's `MultiHeadAttention` weights: four `[d_model → d_model]` linear layers and the head
/// count (`d_k = d_model / n_heads`). Softmax is the standard one (`quiet_softmax = false`);
/// dropout is dropped at inference.
#[derive(Clone, Debug, PartialEq)]
pub struct MhaWeights {
    pub query: LinearWeights,
    pub key: LinearWeights,
    pub value: LinearWeights,
    pub output: LinearWeights,
    pub n_heads: usize,
}

/// Multi-head self-attention: [`cross_attention`] with the queries, keys and values all
/// projected from `x`.
///
/// # Shapes
/// `[batch, seq, d_model]` → `[batch, seq, d_model]`
pub fn self_attention(
    g: &mut GraphBuilder,
    layer: &str,
    x: &str,
    w: &MhaWeights,
) -> Result<String> {
    cross_attention(g, layer, x, x, w)
}

/// Multi-head attention of one sequence over another (burn's `MultiHeadAttention` given
/// `MhaInput::new(query, context, context)`), from `MatMul`, `Reshape`, `Transpose`, `Div`,
/// `Softmax`:
///
/// ```text
/// q = query·W_q + b_q                  [batch, s_q, d_model] → [batch, heads, s_q, d_k]
/// k, v = context·W_k + b_k, …          [batch, s_kv, d_model] → [batch, heads, s_kv, d_k]
/// weights = softmax(q·kᵀ / √d_k)       [batch, heads, s_q, s_kv]
/// y = concat_heads(weights·v)·W_o + b_o
/// ```
///
/// With `query == context` this is [`self_attention`] (the same nodes and initializers).
///
/// # Shapes
/// query `[batch, s_q, d_model]`, context `[batch, s_kv, d_model]` → `[batch, s_q, d_model]`
pub fn cross_attention(
    g: &mut GraphBuilder,
    layer: &str,
    query: &str,
    context: &str,
    w: &MhaWeights,
) -> Result<String> {
    let (d_model, _) = w.query.check(layer, "query.")?;
    if w.n_heads == 0 || !d_model.is_multiple_of(w.n_heads) {
        return Err(layer_err(
            layer,
            format!("d_model {d_model} does not split into {} heads", w.n_heads),
        ));
    }
    let d_k = d_model / w.n_heads;
    for (name, lin) in [
        ("query.", &w.query),
        ("key.", &w.key),
        ("value.", &w.value),
        ("output.", &w.output),
    ] {
        lin.check_dims(layer, name, d_model, d_model)?;
    }
    let heads = w.n_heads as i64;
    let project =
        |g: &mut GraphBuilder, name: &str, src: &str, lin: &LinearWeights, perm: &[i64]| {
            let y = linear(g, &format!("{layer}.{name}"), src, lin)?; // [batch, seq, d_model]
            let y = reshape(g, &y, &[0, 0, heads, d_k as i64])?; // [batch, seq, heads, d_k]
            transpose(g, &y, perm)
        };
    let q = project(g, "query", query, &w.query, &[0, 2, 1, 3])?; // [batch, heads, s_q, d_k]
    let kt = project(g, "key", context, &w.key, &[0, 2, 3, 1])?; // [batch, heads, d_k, s_kv]
    let v = project(g, "value", context, &w.value, &[0, 2, 1, 3])?; // [batch, heads, s_kv, d_k]
    let scores = g.op("MatMul", &[&q, &kt], vec![], &format!("{layer}.scores"))?;
    let scale = g.initializer_f32(&format!("{layer}.sqrt_dk"), &[(d_k as f32).sqrt()], &[])?;
    let scores = g.op(
        "Div",
        &[&scores, &scale],
        vec![],
        &format!("{layer}.scaled"),
    )?;
    let weights = softmax(g, &scores, -1)?; // [batch, heads, s_q, s_kv]
    let ctx = g.op(
        "MatMul",
        &[&weights, &v],
        vec![],
        &format!("{layer}.context"),
    )?;
    let ctx = transpose(g, &ctx, &[0, 2, 1, 3])?; // [batch, s_q, heads, d_k]
    let ctx = reshape(g, &ctx, &[0, 0, d_model as i64])?; // [batch, s_q, d_model]
    linear(g, &format!("{layer}.output"), &ctx, &w.output)
}

/// Adds a positional table `[seq, d_model]` (a learned position embedding, or burn's
/// `PositionalEncoding` sinusoids cut to the sequence length) to `[batch, seq, d_model]`.
pub fn positional_embedding(
    g: &mut GraphBuilder,
    layer: &str,
    x: &str,
    table: &Weights,
) -> Result<String> {
    table.expect_len(layer, "table")?;
    if table.shape.len() != 2 {
        return Err(OnnxError::WeightShape {
            layer: layer.into(),
            tensor: "table".into(),
            got: table.shape.clone(),
            expected: vec![],
            meaning: "[seq, d_model]".into(),
        });
    }
    let dims = [1, table.shape[0], table.shape[1]];
    let t = g.initializer_f32(&format!("{layer}.table"), &table.data, &dims)?;
    g.op("Add", &[x, &t], vec![], &format!("{layer}.out"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::Dim;

    fn w(shape: &[usize]) -> Weights {
        let n = shape.iter().product();
        Weights::new((0..n).map(|i| i as f32).collect(), shape)
    }

    #[test]
    fn torch_lstm_split_keeps_gate_order() {
        // 4 gates × H=2 rows, d_input = 1: row r holds value r.
        let cell =
            LstmCell::from_torch("l", &w(&[8, 1]), &w(&[8, 2]), Some(&w(&[8])), None).unwrap();
        assert_eq!(cell.input_gate.input.weight.data, vec![0.0, 1.0]);
        assert_eq!(
            cell.forget_gate.as_ref().unwrap().input.weight.data,
            vec![2.0, 3.0]
        );
        assert_eq!(cell.cell_gate.input.weight.data, vec![4.0, 5.0]);
        assert_eq!(cell.output_gate.input.weight.data, vec![6.0, 7.0]);
        assert_eq!(
            cell.output_gate.input.bias.as_ref().unwrap().data,
            vec![6.0, 7.0]
        );
    }

    #[test]
    fn onnx_lstm_tensors_are_in_iofc_order() {
        let cell =
            LstmCell::from_torch("l", &w(&[8, 1]), &w(&[8, 2]), Some(&w(&[8])), None).unwrap();
        let f = cell.forget_gate.as_ref().unwrap();
        let per_dir = vec![vec![
            &cell.input_gate,
            &cell.output_gate,
            f,
            &cell.cell_gate,
        ]];
        let [wt, _, b] = rnn_tensors(&per_dir, 1, 2);
        assert_eq!(wt.data, vec![0.0, 1.0, 6.0, 7.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(wt.shape, vec![1, 8, 1]);
        assert_eq!(&b.data[..8], &[0.0, 1.0, 6.0, 7.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(&b.data[8..], &[0.0; 8]);
    }

    #[test]
    fn mismatched_gate_names_layer_and_shape() {
        let mut cell = LstmCell::from_torch("l", &w(&[8, 3]), &w(&[8, 2]), None, None).unwrap();
        cell.output_gate.hidden.weight = w(&[2, 3]);
        let mut g = GraphBuilder::new("t");
        let x = g
            .input("x", &[Dim::batch(), Dim::from(5), Dim::from(3)])
            .unwrap();
        let err = lstm(
            &mut g,
            "rnn1",
            &x,
            &LstmWeights {
                cells: vec![cell],
                direction: Direction::Forward,
                batch_first: true,
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("'rnn1'"), "{err}");
        assert!(err.contains("output_gate.hidden.weight"), "{err}");
        assert!(err.contains("[2, 2]"), "{err}");
    }
}
