//! The ONNX writer's contract: every graph it writes passes `onnx.checker` (full check, with
//! strict shape inference) and, run by onnxruntime on a fixed input, matches a reference computed
//! here, independently, with naive loops in the framework's own convention (burn's layouts,
//! PyTorch's stacked gate order). Each model is run at batch 1 and batch 3 against its symbolic
//! batch axis.
//!
//! Tolerance everywhere: |onnxruntime − reference| ≤ 1e-4 + 1e-4·|reference|.

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use specwatch::onnx::ops::{
    self, BatchNormWeights, ConvOptions, ConvWeights, Direction, GateWeights, GruCell, GruWeights,
    LayerNormWeights, LinearWeights, LstmCell, LstmWeights, MhaWeights, PoolOptions,
};
use specwatch::onnx::proto::DataType;
use specwatch::onnx::{Dim, GraphBuilder, OnnxError, Weights};

use crate::common;

const TOL: f32 = 1e-4;

// ---------------------------------------------------------------- harness

struct Gen(ChaCha8Rng);

impl Gen {
    fn new(seed: u64) -> Self {
        Gen(ChaCha8Rng::seed_from_u64(seed))
    }

    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.0.random_range(-1.0f32..1.0)).collect()
    }

    fn w(&mut self, shape: &[usize]) -> Weights {
        Weights::new(self.vec(shape.iter().product()), shape)
    }

    fn positive(&mut self, shape: &[usize]) -> Weights {
        let n = shape.iter().product();
        Weights::new(
            (0..n).map(|_| self.0.random_range(0.5f32..1.5)).collect(),
            shape,
        )
    }
}

/// A float tensor fed to or read back from onnxruntime.
#[derive(Clone, Debug)]
struct T {
    data: Vec<f32>,
    shape: Vec<usize>,
}

impl T {
    fn new(data: Vec<f32>, shape: &[usize]) -> Self {
        assert_eq!(data.len(), shape.iter().product::<usize>());
        T {
            data,
            shape: shape.to_vec(),
        }
    }
}

const RUNNER: &str = r#"
import json, sys
import numpy as np, onnx, onnxruntime as ort
model_path, spec_path, out_dir = sys.argv[1:4]
model = onnx.load(model_path)
onnx.checker.check_model(model, full_check=True)
opts = ort.SessionOptions()
opts.intra_op_num_threads = 1
opts.inter_op_num_threads = 1
sess = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])
spec = json.load(open(spec_path))
shapes = []
for r, run in enumerate(spec["runs"]):
    feeds = {i["name"]: np.fromfile(i["file"], dtype="<f4").reshape(i["shape"]) for i in run}
    outs = sess.run(None, feeds)
    shapes.append([list(o.shape) for o in outs])
    for k, o in enumerate(outs):
        np.ascontiguousarray(o, dtype="<f4").tofile(f"{out_dir}/out_{r}_{k}.bin")
print(json.dumps(shapes))
"#;

/// Saves the model, checks it with `onnx.checker` (full check) and runs it in onnxruntime once
/// per entry of `runs` (each a list of named inputs). Returns every run's outputs, in graph order.
fn check_and_run(py: &Path, g: &GraphBuilder, runs: &[Vec<(&str, &T)>]) -> Vec<Vec<T>> {
    let dir = common::scratch();
    let model = dir.path().join(format!("{}.onnx", g.name()));
    g.save(&model).expect("save the model");
    let mut spec_runs = Vec::new();
    for (r, run) in runs.iter().enumerate() {
        let mut inputs = Vec::new();
        for (name, t) in run {
            let file = dir.path().join(format!("in_{r}_{name}.bin"));
            let bytes: Vec<u8> = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            std::fs::write(&file, bytes).expect("write input");
            inputs.push(serde_json::json!({"name": name, "file": file, "shape": t.shape}));
        }
        spec_runs.push(inputs);
    }
    let spec = dir.path().join("spec.json");
    std::fs::write(&spec, serde_json::json!({ "runs": spec_runs }).to_string())
        .expect("write spec");
    let stdout = common::run_python(
        py,
        RUNNER,
        &[
            model.to_str().expect("utf-8 path"),
            spec.to_str().expect("utf-8 path"),
            dir.path().to_str().expect("utf-8 path"),
        ],
    );
    let shapes: Vec<Vec<Vec<usize>>> = serde_json::from_str(stdout.trim()).expect("shapes");
    shapes
        .iter()
        .enumerate()
        .map(|(r, outs)| {
            outs.iter()
                .enumerate()
                .map(|(k, shape)| {
                    let bytes = std::fs::read(dir.path().join(format!("out_{r}_{k}.bin")))
                        .expect("read output");
                    let data = bytes
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect();
                    T::new(data, shape)
                })
                .collect()
        })
        .collect()
}

/// Asserts `got` matches `want` (shape and values, within [`TOL`]); returns the max abs error.
fn assert_close(what: &str, got: &T, want: &T) -> f32 {
    assert_eq!(got.shape, want.shape, "{what}: shape");
    let mut max = 0.0f32;
    for (k, (g, w)) in got.data.iter().zip(&want.data).enumerate() {
        let err = (g - w).abs();
        assert!(
            err <= TOL + TOL * w.abs(),
            "{what}: element {k}: onnxruntime {g} vs reference {w}"
        );
        max = max.max(err);
    }
    println!("{what}: max abs error {max:.2e}");
    max
}

/// Builds a one-input, one-output model with `f`, runs it at batch 1 and 3 (input
/// `[batch, rest…]`), and compares each run with `reference(input, batch)`.
fn check_single(
    py: &Path,
    name: &str,
    rng: &mut Gen,
    rest: &[usize],
    out_rest: &[Dim],
    f: impl FnOnce(&mut GraphBuilder, &str) -> String,
    reference: impl Fn(&T) -> T,
) {
    let mut g = GraphBuilder::new(name);
    let mut dims = vec![Dim::batch()];
    dims.extend(rest.iter().map(|&d| Dim::from(d)));
    let x = g.input("x", &dims).expect("input");
    let y = f(&mut g, &x);
    let mut odims = vec![Dim::batch()];
    odims.extend(out_rest.iter().cloned());
    g.output(&y, &odims).expect("output");
    let inputs: Vec<T> = [1usize, 3]
        .iter()
        .map(|&b| {
            let mut shape = vec![b];
            shape.extend_from_slice(rest);
            T::new(rng.vec(shape.iter().product()), &shape)
        })
        .collect();
    let runs: Vec<Vec<(&str, &T)>> = inputs.iter().map(|t| vec![("x", t)]).collect();
    let outs = check_and_run(py, &g, &runs);
    for (t, out) in inputs.iter().zip(&outs) {
        assert_close(
            &format!("{name} (batch {})", t.shape[0]),
            &out[0],
            &reference(t),
        );
    }
}

fn fixed(dims: &[usize]) -> Vec<Dim> {
    dims.iter().map(|&d| Dim::from(d)).collect()
}

/// `[batch, rest…]` as graph dims.
fn batched(rest: &[usize]) -> Vec<Dim> {
    let mut dims = vec![Dim::batch()];
    dims.extend(rest.iter().map(|&d| Dim::from(d)));
    dims
}

/// Builds a model with several inputs (`(name, shape after the batch axis)`) and outputs, runs it
/// at batch 1 and 3 with inputs drawn by `data(name, batch)`, and compares every output with
/// `reference(inputs)` (in the order `build` declared them). `build` gets the input names and
/// returns each output's value and shape after the batch axis.
fn check_graph(
    py: &Path,
    name: &str,
    inputs: &[(&str, &[usize])],
    mut data: impl FnMut(&str, usize) -> Vec<f32>,
    build: impl FnOnce(&mut GraphBuilder, &[String]) -> Vec<(String, Vec<usize>)>,
    reference: impl Fn(&[T]) -> Vec<T>,
) {
    let mut g = GraphBuilder::new(name);
    let names: Vec<String> = inputs
        .iter()
        .map(|(n, rest)| g.input(n, &batched(rest)).expect("input"))
        .collect();
    let outputs = build(&mut g, &names);
    for (value, rest) in &outputs {
        g.output(value, &batched(rest)).expect("output");
    }
    let runs: Vec<Vec<T>> = [1usize, 3]
        .iter()
        .map(|&b| {
            inputs
                .iter()
                .map(|(n, rest)| {
                    let mut shape = vec![b];
                    shape.extend_from_slice(rest);
                    T::new(data(n, b), &shape)
                })
                .collect()
        })
        .collect();
    let feeds: Vec<Vec<(&str, &T)>> = runs
        .iter()
        .map(|run| inputs.iter().map(|(n, _)| *n).zip(run).collect())
        .collect();
    let outs = check_and_run(py, &g, &feeds);
    for (run, out) in runs.iter().zip(&outs) {
        let want = reference(run);
        assert_eq!(out.len(), want.len(), "{name}: output count");
        for ((value, _), (got, want)) in outputs.iter().zip(out.iter().zip(&want)) {
            assert_close(
                &format!("{name} {value} (batch {})", run[0].shape[0]),
                got,
                want,
            );
        }
    }
}

/// Applies `f` to every element.
fn map(x: &T, f: impl Fn(f32) -> f32) -> T {
    T::new(x.data.iter().map(|&v| f(v)).collect(), &x.shape)
}

/// Applies `f` to corresponding elements of two tensors of one shape.
fn zip(a: &T, b: &T, f: impl Fn(f32, f32) -> f32) -> T {
    assert_eq!(a.shape, b.shape);
    T::new(
        a.data.iter().zip(&b.data).map(|(&x, &y)| f(x, y)).collect(),
        &a.shape,
    )
}

// ---------------------------------------------------------------- reference math

fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}

/// erf from its Taylor series in f64 (accurate to ~1e-12 for |x| < 3), ±1 beyond
/// (erfc(3) ≈ 2e-5, inside the tolerance).
fn erf(x: f32) -> f32 {
    let x = x as f64;
    if x.abs() >= 3.0 {
        return x.signum() as f32;
    }
    let mut term = x;
    let mut sum = x;
    let mut n = 0.0;
    while term.abs() > 1e-17 * sum.abs().max(1e-300) {
        n += 1.0;
        term *= -x * x / n;
        sum += term / (2.0 * n + 1.0);
    }
    (sum * 2.0 / std::f64::consts::PI.sqrt()) as f32
}

/// `y = x·W + b` for rows of `x`, with `w` in its recorded layout.
fn lin(w: &LinearWeights, x: &[f32]) -> Vec<f32> {
    let (d_in, d_out) = match w.layout {
        ops::LinearLayout::InOut => (w.weight.shape[0], w.weight.shape[1]),
        ops::LinearLayout::OutIn => (w.weight.shape[1], w.weight.shape[0]),
    };
    let rows = x.len() / d_in;
    let mut y = vec![0.0; rows * d_out];
    for r in 0..rows {
        for o in 0..d_out {
            let mut acc = w.bias.as_ref().map_or(0.0, |b| b.data[o]);
            for i in 0..d_in {
                let wv = match w.layout {
                    ops::LinearLayout::InOut => w.weight.data[i * d_out + o],
                    ops::LinearLayout::OutIn => w.weight.data[o * d_in + i],
                };
                acc += x[r * d_in + i] * wv;
            }
            y[r * d_out + o] = acc;
        }
    }
    y
}

/// 2-D convolution (a 1-D one is the case `h = kh = 1`): x `[b, ci, h, w]`, weight
/// `[co, ci/groups, kh, kw]`.
#[allow(clippy::too_many_arguments)]
fn conv2d_ref(
    x: &[f32],
    [b, ci, h, w]: [usize; 4],
    wt: &[f32],
    [co, cig, kh, kw]: [usize; 4],
    bias: Option<&[f32]>,
    stride: [usize; 2],
    pad: [(usize, usize); 2],
    dil: [usize; 2],
    groups: usize,
) -> (Vec<f32>, [usize; 4]) {
    let ho = (h + pad[0].0 + pad[0].1 - dil[0] * (kh - 1) - 1) / stride[0] + 1;
    let wo = (w + pad[1].0 + pad[1].1 - dil[1] * (kw - 1) - 1) / stride[1] + 1;
    let cog = co / groups;
    let mut y = vec![0.0; b * co * ho * wo];
    for n in 0..b {
        for o in 0..co {
            let grp = o / cog;
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut acc = bias.map_or(0.0, |bb| bb[o]);
                    for c in 0..cig {
                        let cin = grp * cig + c;
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy =
                                    (oy * stride[0] + ky * dil[0]) as isize - pad[0].0 as isize;
                                let ix =
                                    (ox * stride[1] + kx * dil[1]) as isize - pad[1].0 as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                let xv = x[((n * ci + cin) * h + iy as usize) * w + ix as usize];
                                acc += xv * wt[((o * cig + c) * kh + ky) * kw + kx];
                            }
                        }
                    }
                    y[((n * co + o) * ho + oy) * wo + ox] = acc;
                }
            }
        }
    }
    (y, [b, co, ho, wo])
}

/// Batch norm over axis 1 of `[b, c, rest]`.
fn batch_norm_ref(x: &T, w: &BatchNormWeights) -> T {
    let c = x.shape[1];
    let inner: usize = x.shape[2..].iter().product();
    let mut y = x.data.clone();
    for (k, v) in y.iter_mut().enumerate() {
        let ch = (k / inner) % c;
        *v = w.gamma.data[ch] * (*v - w.running_mean.data[ch])
            / (w.running_var.data[ch] + w.epsilon).sqrt()
            + w.beta.data[ch];
    }
    T::new(y, &x.shape)
}

fn softmax_rows(x: &mut [f32], width: usize) {
    for row in x.chunks_mut(width) {
        let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let s: f32 = row.iter().map(|v| (v - m).exp()).sum();
        for v in row.iter_mut() {
            *v = (*v - m).exp() / s;
        }
    }
}

/// Runs one LSTM direction as burn does, gate by gate (burn's named `GateController`s).
/// `xs`: the time steps of one sequence, each `[d_input]`; returns the hidden state after each
/// step, aligned with the input steps, and the final hidden state.
fn lstm_burn_ref(cell: &LstmCell, xs: &[Vec<f32>], h: usize, reverse: bool) -> Vec<Vec<f32>> {
    let pre = |gate: &GateWeights, x: &[f32], hs: &[f32]| -> Vec<f32> {
        let a = lin(&gate.input, x);
        let b = lin(&gate.hidden, hs);
        a.iter().zip(&b).map(|(p, q)| p + q).collect()
    };
    let mut hs = vec![0.0; h];
    let mut cs = vec![0.0; h];
    let mut out = vec![vec![]; xs.len()];
    let order: Vec<usize> = if reverse {
        (0..xs.len()).rev().collect()
    } else {
        (0..xs.len()).collect()
    };
    for t in order {
        let i: Vec<f32> = pre(&cell.input_gate, &xs[t], &hs)
            .into_iter()
            .map(sigmoid)
            .collect();
        let f: Vec<f32> = match &cell.forget_gate {
            Some(fg) => pre(fg, &xs[t], &hs).into_iter().map(sigmoid).collect(),
            None => i.iter().map(|v| 1.0 - v).collect(),
        };
        let g: Vec<f32> = pre(&cell.cell_gate, &xs[t], &hs)
            .into_iter()
            .map(f32::tanh)
            .collect();
        let o: Vec<f32> = pre(&cell.output_gate, &xs[t], &hs)
            .into_iter()
            .map(sigmoid)
            .collect();
        for k in 0..h {
            cs[k] = f[k] * cs[k] + i[k] * g[k];
            hs[k] = o[k] * cs[k].tanh();
        }
        out[t] = hs.clone();
    }
    out
}

/// PyTorch's LSTM cell straight from its stacked tensors (gate order i, f, g, o):
/// `gates = W_ih·x + b_ih + W_hh·h + b_hh`, chunked in four.
fn lstm_torch_ref(
    [w_ih, w_hh, b_ih, b_hh]: [&Weights; 4],
    xs: &[Vec<f32>],
    h: usize,
) -> Vec<Vec<f32>> {
    let d_in = w_ih.shape[1];
    let mut hs = vec![0.0; h];
    let mut cs = vec![0.0; h];
    let mut out = Vec::new();
    for x in xs {
        let gates: Vec<f32> = (0..4 * h)
            .map(|r| {
                let wx: f32 = (0..d_in).map(|k| w_ih.data[r * d_in + k] * x[k]).sum();
                let wh: f32 = (0..h).map(|k| w_hh.data[r * h + k] * hs[k]).sum();
                b_ih.data[r] + b_hh.data[r] + wx + wh
            })
            .collect();
        for k in 0..h {
            let i = sigmoid(gates[k]);
            let f = sigmoid(gates[h + k]);
            let g = gates[2 * h + k].tanh();
            let o = sigmoid(gates[3 * h + k]);
            cs[k] = f * cs[k] + i * g;
            hs[k] = o * cs[k].tanh();
        }
        out.push(hs.clone());
    }
    out
}

/// Runs one GRU direction as burn does (named gates; `reset_after` as burn's option).
fn gru_burn_ref(
    cell: &GruCell,
    xs: &[Vec<f32>],
    h: usize,
    reset_after: bool,
    reverse: bool,
) -> Vec<Vec<f32>> {
    let mut hs = vec![0.0; h];
    let mut out = vec![vec![]; xs.len()];
    let order: Vec<usize> = if reverse {
        (0..xs.len()).rev().collect()
    } else {
        (0..xs.len()).collect()
    };
    for t in order {
        let x = &xs[t];
        let z: Vec<f32> = lin(&cell.update_gate.input, x)
            .iter()
            .zip(lin(&cell.update_gate.hidden, &hs))
            .map(|(a, b)| sigmoid(a + b))
            .collect();
        let r: Vec<f32> = lin(&cell.reset_gate.input, x)
            .iter()
            .zip(lin(&cell.reset_gate.hidden, &hs))
            .map(|(a, b)| sigmoid(a + b))
            .collect();
        let xin = lin(&cell.new_gate.input, x);
        let n: Vec<f32> = if reset_after {
            let hn = lin(&cell.new_gate.hidden, &hs);
            (0..h).map(|k| (xin[k] + r[k] * hn[k]).tanh()).collect()
        } else {
            let rh: Vec<f32> = (0..h).map(|k| r[k] * hs[k]).collect();
            let hn = lin(&cell.new_gate.hidden, &rh);
            (0..h).map(|k| (xin[k] + hn[k]).tanh()).collect()
        };
        for k in 0..h {
            hs[k] = (1.0 - z[k]) * n[k] + z[k] * hs[k];
        }
        out[t] = hs.clone();
    }
    out
}

/// PyTorch's GRU straight from its stacked tensors (gate order r, z, n).
fn gru_torch_ref(
    [w_ih, w_hh, b_ih, b_hh]: [&Weights; 4],
    xs: &[Vec<f32>],
    h: usize,
) -> Vec<Vec<f32>> {
    let d_in = w_ih.shape[1];
    let mut hs = vec![0.0; h];
    let mut out = Vec::new();
    for x in xs {
        let gi: Vec<f32> = (0..3 * h)
            .map(|r| {
                b_ih.data[r]
                    + (0..d_in)
                        .map(|k| w_ih.data[r * d_in + k] * x[k])
                        .sum::<f32>()
            })
            .collect();
        let gh: Vec<f32> = (0..3 * h)
            .map(|r| b_hh.data[r] + (0..h).map(|k| w_hh.data[r * h + k] * hs[k]).sum::<f32>())
            .collect();
        for k in 0..h {
            let r = sigmoid(gi[k] + gh[k]);
            let z = sigmoid(gi[h + k] + gh[h + k]);
            let n = (gi[2 * h + k] + r * gh[2 * h + k]).tanh();
            hs[k] = (1.0 - z) * n + z * hs[k];
        }
        out.push(hs.clone());
    }
    out
}

/// Splits batch-first `[b, s, d]` into per-sequence step lists.
fn sequences(x: &T) -> Vec<Vec<Vec<f32>>> {
    let (b, s, d) = (x.shape[0], x.shape[1], x.shape[2]);
    (0..b)
        .map(|n| {
            (0..s)
                .map(|t| x.data[(n * s + t) * d..(n * s + t + 1) * d].to_vec())
                .collect()
        })
        .collect()
}

/// Packs per-sequence outputs of each direction into batch-first `[b, s, dirs·h]`.
fn pack(per_dir: &[Vec<Vec<Vec<f32>>>], h: usize) -> T {
    let b = per_dir[0].len();
    let s = per_dir[0][0].len();
    let mut y = Vec::new();
    for n in 0..b {
        for t in 0..s {
            for dir in per_dir {
                y.extend_from_slice(&dir[n][t]);
            }
        }
    }
    T::new(y, &[b, s, per_dir.len() * h])
}

fn random_gate(rng: &mut Gen, d_in: usize, h: usize) -> GateWeights {
    GateWeights {
        input: LinearWeights::burn(rng.w(&[d_in, h]), Some(rng.w(&[h]))),
        hidden: LinearWeights::burn(rng.w(&[h, h]), Some(rng.w(&[h]))),
    }
}

fn random_lstm_cell(rng: &mut Gen, d_in: usize, h: usize, coupled: bool) -> LstmCell {
    LstmCell {
        input_gate: random_gate(rng, d_in, h),
        forget_gate: (!coupled).then(|| random_gate(rng, d_in, h)),
        cell_gate: random_gate(rng, d_in, h),
        output_gate: random_gate(rng, d_in, h),
    }
}

fn random_gru_cell(rng: &mut Gen, d_in: usize, h: usize) -> GruCell {
    GruCell {
        update_gate: random_gate(rng, d_in, h),
        reset_gate: random_gate(rng, d_in, h),
        new_gate: random_gate(rng, d_in, h),
    }
}

// ---------------------------------------------------------------- model file

#[test]
fn model_carries_metadata_opset_and_symbolic_batch() {
    let Some(py) = common::python() else { return };
    let mut g = GraphBuilder::new("meta");
    g.doc_string("a test model")
        .producer_version("9.9.9")
        .metadata("card_sha256", "deadbeef")
        .expect("metadata")
        .metadata("classes", "bpsk,qpsk")
        .expect("metadata");
    let x = g
        .input("iq", &[Dim::batch(), Dim::from(2), Dim::from(8)])
        .expect("input");
    let y = ops::relu(&mut g, &x).expect("relu");
    g.output(&y, &[Dim::batch(), Dim::from(2), Dim::from(8)])
        .expect("output");
    let dir = common::scratch();
    let path = dir.path().join("meta.onnx");
    g.save(&path).expect("save");
    let out = common::run_python(
        &py,
        r#"
import sys, onnx
m = onnx.load(sys.argv[1])
onnx.checker.check_model(m, full_check=True)
d = m.graph.input[0].type.tensor_type.shape.dim
print(m.ir_version, m.opset_import[0].domain or "ai.onnx", m.opset_import[0].version)
print(m.producer_name, m.producer_version, m.doc_string)
print(",".join(f"{p.key}={p.value}" for p in m.metadata_props))
print(d[0].dim_param, d[1].dim_value, d[2].dim_value)
"#,
        &[path.to_str().expect("utf-8 path")],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "8 ai.onnx 17");
    assert_eq!(lines[1], "specwatch 9.9.9 a test model");
    assert_eq!(lines[2], "card_sha256=deadbeef,classes=bpsk,qpsk");
    assert_eq!(lines[3], "N 2 8");
}

// ---------------------------------------------------------------- convolution, normalisation

#[test]
fn conv1d_with_pads_strides_dilations_groups_matches_reference() {
    let Some(py) = common::python() else { return };
    let mut rng = Gen::new(10);
    let (ci, l, co, k, groups) = (4, 20, 6, 3, 2);
    let w = ConvWeights {
        weight: rng.w(&[co, ci / groups, k]),
        bias: Some(rng.w(&[co])),
    };
    let opts = ConvOptions::conv1d(2, (2, 1), 2, groups);
    let lo = (l + 3 - 2 * (k - 1) - 1) / 2 + 1;
    check_single(
        &py,
        "conv1d",
        &mut rng,
        &[ci, l],
        &fixed(&[co, lo]),
        |g, x| ops::conv(g, "conv1", x, &w, &opts).expect("conv"),
        |x| {
            let (y, [b, co, _, lo]) = conv2d_ref(
                &x.data,
                [x.shape[0], ci, 1, l],
                &w.weight.data,
                [co, ci / groups, 1, k],
                w.bias.as_ref().map(|b| b.data.as_slice()),
                [1, 2],
                [(0, 0), (2, 1)],
                [1, 2],
                groups,
            );
            T::new(y, &[b, co, lo])
        },
    );
}

#[test]
fn conv2d_matches_reference() {
    let Some(py) = common::python() else { return };
    let mut rng = Gen::new(11);
    let (ci, h, wd, co) = (2, 6, 7, 3);
    let w = ConvWeights {
        weight: rng.w(&[co, ci, 3, 2]),
        bias: None,
    };
    let opts = ConvOptions {
        strides: vec![1, 2],
        pads: vec![(1, 1), (0, 1)],
        dilations: vec![1, 1],
        groups: 1,
    };
    let (ho, wo) = (6, 4);
    check_single(
        &py,
        "conv2d",
        &mut rng,
        &[ci, h, wd],
        &fixed(&[co, ho, wo]),
        |g, x| ops::conv(g, "conv2", x, &w, &opts).expect("conv"),
        |x| {
            let (y, shape) = conv2d_ref(
                &x.data,
                [x.shape[0], ci, h, wd],
                &w.weight.data,
                [co, ci, 3, 2],
                None,
                [1, 2],
                [(1, 1), (0, 1)],
                [1, 1],
                1,
            );
            assert_eq!(shape[2..], [ho, wo]);
            T::new(y, &shape)
        },
    );
}

#[test]
fn batch_norm_inference_matches_reference() {
    let Some(py) = common::python() else { return };
    let mut rng = Gen::new(12);
    let c = 5;
    let w = BatchNormWeights {
        gamma: rng.w(&[c]),
        beta: rng.w(&[c]),
        running_mean: rng.w(&[c]),
        running_var: rng.positive(&[c]),
        epsilon: 1e-5,
    };
    check_single(
        &py,
        "batchnorm",
        &mut rng,
        &[c, 7],
        &fixed(&[c, 7]),
        |g, x| ops::batch_norm(g, "bn1", x, &w).expect("bn"),
        |x| batch_norm_ref(x, &w),
    );
}

#[test]
fn layer_norm_matches_reference() {
    let Some(py) = common::python() else { return };
    let mut rng = Gen::new(13);
    let d = 8;
    for with_beta in [true, false] {
        let w = LayerNormWeights {
            gamma: rng.w(&[d]),
            beta: with_beta.then(|| rng.w(&[d])),
            epsilon: 1e-5,
        };
        check_single(
            &py,
            "layernorm",
            &mut rng,
            &[4, d],
            &fixed(&[4, d]),
            |g, x| ops::layer_norm(g, "ln", x, &w).expect("ln"),
            |x| {
                let mut y = x.data.clone();
                for row in y.chunks_mut(d) {
                    let mean = row.iter().sum::<f32>() / d as f32;
                    let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / d as f32;
                    for (k, v) in row.iter_mut().enumerate() {
                        let b = w.beta.as_ref().map_or(0.0, |b| b.data[k]);
                        *v = (*v - mean) / (var + w.epsilon).sqrt() * w.gamma.data[k] + b;
                    }
                }
                T::new(y, &x.shape)
            },
        );
    }
}

// ---------------------------------------------------------------- dense layers, activations

#[test]
fn gemm_and_matmul_linear_match_reference_in_both_layouts() {
    let Some(py) = common::python() else { return };
    let mut rng = Gen::new(14);
    let (d_in, d_out) = (6, 4);
    let burn = LinearWeights::burn(rng.w(&[d_in, d_out]), Some(rng.w(&[d_out])));
    let torch = LinearWeights::torch(rng.w(&[d_out, d_in]), Some(rng.w(&[d_out])));
    for (name, w) in [("burn", &burn), ("torch", &torch)] {
        check_single(
            &py,
            &format!("gemm_{name}"),
            &mut rng,
            &[d_in],
            &fixed(&[d_out]),
            |g, x| ops::gemm(g, "fc", x, w).expect("gemm"),
            |x| T::new(lin(w, &x.data), &[x.shape[0], d_out]),
        );
        check_single(
            &py,
            &format!("matmul_{name}"),
            &mut rng,
            &[3, d_in],
            &fixed(&[3, d_out]),
            |g, x| ops::linear(g, "fc", x, w).expect("linear"),
            |x| T::new(lin(w, &x.data), &[x.shape[0], 3, d_out]),
        );
    }
}

#[test]
fn activations_match_reference() {
    let Some(py) = common::python() else { return };
    let mut rng = Gen::new(15);
    let (c, l) = (3, 5);
    let alpha = rng.w(&[c]);
    type Act = Box<dyn Fn(f32, usize) -> f32>;
    let cases: Vec<(&str, Act)> = vec![
        ("relu", Box::new(|v, _| v.max(0.0))),
        (
            "leaky_relu",
            Box::new(|v, _| if v < 0.0 { 0.1 * v } else { v }),
        ),
        (
            "prelu",
            Box::new({
                let a = alpha.data.clone();
                move |v, ch| if v < 0.0 { a[ch] * v } else { v }
            }),
        ),
        ("sigmoid", Box::new(|v, _| sigmoid(v))),
        ("tanh", Box::new(|v, _| v.tanh())),
        (
            "gelu",
            Box::new(|v, _| 0.5 * v * (1.0 + erf(v / std::f32::consts::SQRT_2))),
        ),
    ];
    for (name, f) in &cases {
        check_single(
            &py,
            name,
            &mut rng,
            &[c, l],
            &fixed(&[c, l]),
            |g, x| {
                match *name {
                    "relu" => ops::relu(g, x),
                    "leaky_relu" => ops::leaky_relu(g, x, 0.1),
                    "prelu" => ops::prelu(g, "act", x, &alpha, 3),
                    "sigmoid" => ops::sigmoid(g, x),
                    "tanh" => ops::tanh(g, x),
                    _ => ops::gelu(g, x),
                }
                .expect("activation")
            },
            |x| {
                let y = x
                    .data
                    .iter()
                    .enumerate()
                    .map(|(k, &v)| f(v, (k / l) % c))
                    .collect();
                T::new(y, &x.shape)
            },
        );
    }
}

#[test]
fn softmax_flatten_reshape_transpose_concat_add_mul_match_reference() {
    let Some(py) = common::python() else { return };
    let mut rng = Gen::new(16);
    let (c, l) = (3, 4);
    let bias = rng.w(&[c, l]);
    check_single(
        &py,
        "shapes",
        &mut rng,
        &[c, l],
        &fixed(&[2 * c * l]),
        |g, x| {
            // [b, c, l] → +bias → ·x → transpose [b, l, c] → reshape [b, l·c] → softmax
            // → concat with flatten(x) → [b, 2·c·l]
            let b = g.initializer("bias", &bias).expect("bias");
            let y = ops::add(g, x, &b).expect("add");
            let y = ops::mul(g, &y, x).expect("mul");
            let y = ops::transpose(g, &y, &[0, 2, 1]).expect("transpose");
            let y = ops::reshape(g, &y, &[0, -1]).expect("reshape");
            let y = ops::softmax(g, &y, 1).expect("softmax");
            let f = ops::flatten(g, x, 1).expect("flatten");
            let y = ops::dropout(&y);
            ops::concat(g, &[&y, &f], 1).expect("concat")
        },
        |x| {
            let b = x.shape[0];
            let mut out = Vec::new();
            for n in 0..b {
                let xs = &x.data[n * c * l..(n + 1) * c * l];
                let mut row = vec![0.0; c * l];
                for ch in 0..c {
                    for t in 0..l {
                        let v = xs[ch * l + t];
                        row[t * c + ch] = (v + bias.data[ch * l + t]) * v;
                    }
                }
                softmax_rows(&mut row, c * l);
                out.extend(row);
                out.extend_from_slice(xs);
            }
            T::new(out, &[b, 2 * c * l])
        },
    );
}

#[test]
fn pools_match_reference() {
    let Some(py) = common::python() else { return };
    let mut rng = Gen::new(17);
    let (c, l) = (2, 9);
    let mut max_opts = PoolOptions::new(&[3]);
    max_opts.strides = vec![2];
    max_opts.pads = vec![(1, 1)];
    let mut avg_opts = max_opts.clone();
    avg_opts.pads = vec![(1, 0)];
    let lo_max = (l + 2 - 3) / 2 + 1;
    let lo_avg = (l + 1 - 3) / 2 + 1;
    check_single(
        &py,
        "maxpool",
        &mut rng,
        &[c, l],
        &fixed(&[c, lo_max]),
        |g, x| ops::max_pool(g, "mp", x, &max_opts).expect("maxpool"),
        |x| {
            let rows = x.data.len() / l;
            let mut y = Vec::new();
            for r in 0..rows {
                for o in 0..lo_max {
                    let mut m = f32::NEG_INFINITY;
                    for k in 0..3 {
                        let i = (o * 2 + k) as isize - 1;
                        if (0..l as isize).contains(&i) {
                            m = m.max(x.data[r * l + i as usize]);
                        }
                    }
                    y.push(m);
                }
            }
            T::new(y, &[x.shape[0], c, lo_max])
        },
    );
    for include_pad in [true, false] {
        check_single(
            &py,
            "avgpool",
            &mut rng,
            &[c, l],
            &fixed(&[c, lo_avg]),
            |g, x| ops::avg_pool(g, "ap", x, &avg_opts, include_pad).expect("avgpool"),
            |x| {
                let rows = x.data.len() / l;
                let mut y = Vec::new();
                for r in 0..rows {
                    for o in 0..lo_avg {
                        let (mut s, mut n) = (0.0, 0);
                        for k in 0..3 {
                            let i = (o * 2 + k) as isize - 1;
                            if (0..l as isize).contains(&i) {
                                s += x.data[r * l + i as usize];
                                n += 1;
                            }
                        }
                        y.push(s / if include_pad { 3 } else { n } as f32);
                    }
                }
                T::new(y, &[x.shape[0], c, lo_avg])
            },
        );
    }
    check_single(
        &py,
        "global_avgpool",
        &mut rng,
        &[c, l],
        &fixed(&[c, 1]),
        |g, x| ops::global_avg_pool(g, x).expect("gap"),
        |x| {
            let y = x
                .data
                .chunks(l)
                .map(|r| r.iter().sum::<f32>() / l as f32)
                .collect();
            T::new(y, &[x.shape[0], c, 1])
        },
    );
}

// ---------------------------------------------------------------- recurrent layers

#[test]
fn lstm_from_torch_stacked_weights_matches_pytorch_formula() {
    let Some(py) = common::python() else { return };
    let mut rng = Gen::new(20);
    let (d_in, h, s) = (3, 4, 6);
    let (w_ih, w_hh) = (rng.w(&[4 * h, d_in]), rng.w(&[4 * h, h]));
    let (b_ih, b_hh) = (rng.w(&[4 * h]), rng.w(&[4 * h]));
    let cell = LstmCell::from_torch("lstm", &w_ih, &w_hh, Some(&b_ih), Some(&b_hh))
        .expect("torch weights");
    let w = LstmWeights {
        cells: vec![cell],
        direction: Direction::Forward,
        batch_first: true,
    };
    check_single(
        &py,
        "lstm_torch",
        &mut rng,
        &[s, d_in],
        &fixed(&[s, h]),
        |g, x| ops::lstm(g, "lstm", x, &w).expect("lstm").sequence,
        |x| {
            let per_seq = sequences(x)
                .iter()
                .map(|xs| lstm_torch_ref([&w_ih, &w_hh, &b_ih, &b_hh], xs, h))
                .collect();
            pack(&[per_seq], h)
        },
    );
}

#[test]
fn lstm_burn_gates_all_directions_match_burn_formula() {
    let Some(py) = common::python() else { return };
    let mut rng = Gen::new(21);
    let (d_in, h, s) = (3, 5, 4);
    for (direction, coupled) in [
        (Direction::Forward, true),
        (Direction::Reverse, false),
        (Direction::Bidirectional, false),
    ] {
        let cells: Vec<LstmCell> = (0..if direction == Direction::Bidirectional {
            2
        } else {
            1
        })
            .map(|_| random_lstm_cell(&mut rng, d_in, h, coupled))
            .collect();
        let dirs = cells.len();
        let w = LstmWeights {
            cells,
            direction,
            batch_first: true,
        };
        let name = format!("lstm_burn_{direction:?}_coupled_{coupled}").to_lowercase();
        check_single(
            &py,
            &name,
            &mut rng,
            &[s, d_in],
            &fixed(&[s, dirs * h]),
            |g, x| ops::lstm(g, "lstm", x, &w).expect("lstm").sequence,
            |x| {
                let per_dir: Vec<_> = w
                    .cells
                    .iter()
                    .enumerate()
                    .map(|(k, cell)| {
                        let reverse = direction == Direction::Reverse || k == 1;
                        sequences(x)
                            .iter()
                            .map(|xs| lstm_burn_ref(cell, xs, h, reverse))
                            .collect()
                    })
                    .collect();
                pack(&per_dir, h)
            },
        );
    }
}

#[test]
fn lstm_time_major_input_and_last_hidden_state() {
    let Some(py) = common::python() else { return };
    let mut rng = Gen::new(22);
    let (d_in, h, s) = (2, 3, 5);
    let cell = random_lstm_cell(&mut rng, d_in, h, false);
    let w = LstmWeights {
        cells: vec![cell.clone()],
        direction: Direction::Forward,
        batch_first: false,
    };
    let mut g = GraphBuilder::new("lstm_time_major");
    let x = g
        .input("x", &[Dim::from(s), Dim::batch(), Dim::from(d_in)])
        .expect("input");
    let out = ops::lstm(&mut g, "lstm", &x, &w).expect("lstm");
    g.output(&out.sequence, &[Dim::from(s), Dim::batch(), Dim::from(h)])
        .expect("output");
    g.output(
        &out.last_hidden,
        &[Dim::from(1), Dim::batch(), Dim::from(h)],
    )
    .expect("output");
    for b in [1, 3] {
        let input = T::new(rng.vec(s * b * d_in), &[s, b, d_in]);
        let outs = check_and_run(&py, &g, &[vec![("x", &input)]]);
        // Reference on the batch-first view of the input.
        let mut bf = vec![0.0; s * b * d_in];
        for t in 0..s {
            for n in 0..b {
                for k in 0..d_in {
                    bf[(n * s + t) * d_in + k] = input.data[(t * b + n) * d_in + k];
                }
            }
        }
        let per_seq: Vec<_> = sequences(&T::new(bf, &[b, s, d_in]))
            .iter()
            .map(|xs| lstm_burn_ref(&cell, xs, h, false))
            .collect();
        let mut seq = vec![0.0; s * b * h];
        let mut last = vec![0.0; b * h];
        for n in 0..b {
            for t in 0..s {
                seq[(t * b + n) * h..(t * b + n + 1) * h].copy_from_slice(&per_seq[n][t]);
            }
            last[n * h..(n + 1) * h].copy_from_slice(&per_seq[n][s - 1]);
        }
        assert_close(
            &format!("lstm time-major sequence (batch {b})"),
            &outs[0][0],
            &T::new(seq, &[s, b, h]),
        );
        assert_close(
            &format!("lstm last hidden (batch {b})"),
            &outs[0][1],
            &T::new(last, &[1, b, h]),
        );
    }
}

#[test]
fn gru_from_torch_stacked_weights_matches_pytorch_formula() {
    let Some(py) = common::python() else { return };
    let mut rng = Gen::new(23);
    let (d_in, h, s) = (3, 4, 6);
    let (w_ih, w_hh) = (rng.w(&[3 * h, d_in]), rng.w(&[3 * h, h]));
    let (b_ih, b_hh) = (rng.w(&[3 * h]), rng.w(&[3 * h]));
    let cell =
        GruCell::from_torch("gru", &w_ih, &w_hh, Some(&b_ih), Some(&b_hh)).expect("torch weights");
    let w = GruWeights {
        cells: vec![cell],
        direction: Direction::Forward,
        batch_first: true,
        reset_after: true,
    };
    check_single(
        &py,
        "gru_torch",
        &mut rng,
        &[s, d_in],
        &fixed(&[s, h]),
        |g, x| ops::gru(g, "gru", x, &w).expect("gru").sequence,
        |x| {
            let per_seq = sequences(x)
                .iter()
                .map(|xs| gru_torch_ref([&w_ih, &w_hh, &b_ih, &b_hh], xs, h))
                .collect();
            pack(&[per_seq], h)
        },
    );
}

#[test]
fn gru_burn_gates_reset_before_and_after_bidirectional_match_burn_formula() {
    let Some(py) = common::python() else { return };
    let mut rng = Gen::new(24);
    let (d_in, h, s) = (4, 3, 5);
    for (direction, reset_after) in [
        (Direction::Forward, false),
        (Direction::Bidirectional, true),
        (Direction::Bidirectional, false),
    ] {
        let n = if direction == Direction::Bidirectional {
            2
        } else {
            1
        };
        let w = GruWeights {
            cells: (0..n).map(|_| random_gru_cell(&mut rng, d_in, h)).collect(),
            direction,
            batch_first: true,
            reset_after,
        };
        let name = format!("gru_burn_{direction:?}_reset_after_{reset_after}").to_lowercase();
        check_single(
            &py,
            &name,
            &mut rng,
            &[s, d_in],
            &fixed(&[s, n * h]),
            |g, x| ops::gru(g, "gru", x, &w).expect("gru").sequence,
            |x| {
                let per_dir: Vec<_> = w
                    .cells
                    .iter()
                    .enumerate()
                    .map(|(k, cell)| {
                        sequences(x)
                            .iter()
                            .map(|xs| gru_burn_ref(cell, xs, h, reset_after, k == 1))
                            .collect()
                    })
                    .collect();
                pack(&per_dir, h)
            },
        );
    }
}

// ---------------------------------------------------------------- attention

/// burn's `MultiHeadAttention` on one sample, loop by loop: `query` `[s_q·d]` and `context`
/// `[s_kv·d]` rows → `[s_q·d]`.
fn mha_ref(w: &MhaWeights, query: &[f32], context: &[f32], d: usize) -> Vec<f32> {
    let heads = w.n_heads;
    let dk = d / heads;
    let (s_q, s_kv) = (query.len() / d, context.len() / d);
    let (q, k, v) = (
        lin(&w.query, query),
        lin(&w.key, context),
        lin(&w.value, context),
    );
    let mut ctx = vec![0.0; s_q * d];
    for hd in 0..heads {
        let mut scores = vec![0.0; s_q * s_kv];
        for i in 0..s_q {
            for j in 0..s_kv {
                let dot: f32 = (0..dk)
                    .map(|e| q[i * d + hd * dk + e] * k[j * d + hd * dk + e])
                    .sum();
                scores[i * s_kv + j] = dot / (dk as f32).sqrt();
            }
        }
        softmax_rows(&mut scores, s_kv);
        for i in 0..s_q {
            for e in 0..dk {
                ctx[i * d + hd * dk + e] = (0..s_kv)
                    .map(|j| scores[i * s_kv + j] * v[j * d + hd * dk + e])
                    .sum();
            }
        }
    }
    lin(&w.output, &ctx)
}

#[test]
fn self_attention_with_positional_embedding_matches_reference() {
    let Some(py) = common::python() else { return };
    let mut rng = Gen::new(30);
    let (s, d, heads) = (5, 8, 2);
    let mut lin_w = || LinearWeights::burn(rng.w(&[d, d]), Some(rng.w(&[d])));
    let w = MhaWeights {
        query: lin_w(),
        key: lin_w(),
        value: lin_w(),
        output: lin_w(),
        n_heads: heads,
    };
    let table = rng.w(&[s, d]);
    check_single(
        &py,
        "attention",
        &mut rng,
        &[s, d],
        &fixed(&[s, d]),
        |g, x| {
            let x = ops::positional_embedding(g, "pos", x, &table).expect("pos");
            ops::self_attention(g, "mha", &x, &w).expect("mha")
        },
        |x| {
            let b = x.shape[0];
            let mut y = Vec::new();
            for n in 0..b {
                let xs: Vec<f32> = x.data[n * s * d..(n + 1) * s * d]
                    .iter()
                    .zip(&table.data)
                    .map(|(a, p)| a + p)
                    .collect();
                y.extend(mha_ref(&w, &xs, &xs, d));
            }
            T::new(y, &x.shape)
        },
    );
}

#[test]
fn cross_attention_with_different_query_and_context_lengths_matches_reference() {
    let Some(py) = common::python() else { return };
    let mut rng = Gen::new(31);
    let (s_q, s_kv, d, heads) = (3, 7, 8, 4);
    let mut lin_w = || LinearWeights::burn(rng.w(&[d, d]), Some(rng.w(&[d])));
    let w = MhaWeights {
        query: lin_w(),
        key: lin_w(),
        value: lin_w(),
        output: lin_w(),
        n_heads: heads,
    };
    let mut draw = Gen::new(32);
    check_graph(
        &py,
        "cross_attention",
        &[("q", &[s_q, d]), ("c", &[s_kv, d])],
        |name, b| draw.vec(b * d * if name == "q" { s_q } else { s_kv }),
        |g, ins| {
            let y = ops::cross_attention(g, "ca", &ins[0], &ins[1], &w).expect("cross attention");
            vec![(y, vec![s_q, d])]
        },
        |ins| {
            let b = ins[0].shape[0];
            let mut y = Vec::new();
            for n in 0..b {
                let q = &ins[0].data[n * s_q * d..(n + 1) * s_q * d];
                let c = &ins[1].data[n * s_kv * d..(n + 1) * s_kv * d];
                y.extend(mha_ref(&w, q, c, d));
            }
            vec![T::new(y, &[b, s_q, d])]
        },
    );
}

#[test]
fn self_attention_is_cross_attention_of_a_sequence_with_itself() {
    let mut rng = Gen::new(33);
    let d = 6;
    let mut lin_w = || LinearWeights::burn(rng.w(&[d, d]), Some(rng.w(&[d])));
    let w = MhaWeights {
        query: lin_w(),
        key: lin_w(),
        value: lin_w(),
        output: lin_w(),
        n_heads: 3,
    };
    let graph = |cross: bool| {
        let mut g = GraphBuilder::new("attention");
        let x = g.input("x", &batched(&[4, d])).expect("input");
        let y = if cross {
            ops::cross_attention(&mut g, "mha", &x, &x, &w)
        } else {
            ops::self_attention(&mut g, "mha", &x, &w)
        }
        .expect("attention");
        g.output(&y, &batched(&[4, d])).expect("output");
        g.to_bytes().expect("bytes")
    };
    let (self_bytes, cross_bytes) = (graph(false), graph(true));
    assert!(!self_bytes.is_empty());
    assert_eq!(self_bytes, cross_bytes);
}

// ---------------------------------------------------------------- a whole classifier

#[test]
fn small_classifier_conv_bn_relu_pool_lstm_gemm_softmax_end_to_end() {
    let Some(py) = common::python() else { return };
    let mut rng = Gen::new(40);
    let (ci, l, co, k, h, classes) = (2, 16, 4, 3, 5, 3);
    let conv_w = ConvWeights {
        weight: rng.w(&[co, ci, k]),
        bias: Some(rng.w(&[co])),
    };
    let conv_opts = ConvOptions::conv1d(1, (1, 1), 1, 1);
    let bn = BatchNormWeights {
        gamma: rng.w(&[co]),
        beta: rng.w(&[co]),
        running_mean: rng.w(&[co]),
        running_var: rng.positive(&[co]),
        epsilon: 1e-5,
    };
    let pool = PoolOptions::new(&[2]);
    let cell = random_lstm_cell(&mut rng, co, h, false);
    let rnn = LstmWeights {
        cells: vec![cell.clone()],
        direction: Direction::Forward,
        batch_first: true,
    };
    let head = LinearWeights::burn(rng.w(&[h, classes]), Some(rng.w(&[classes])));
    let s = l / 2;
    check_single(
        &py,
        "classifier",
        &mut rng,
        &[ci, l],
        &fixed(&[classes]),
        |g, x| {
            let y = ops::conv(g, "conv", x, &conv_w, &conv_opts).expect("conv"); // [b, co, l]
            let y = ops::batch_norm(g, "bn", &y, &bn).expect("bn");
            let y = ops::relu(g, &y).expect("relu");
            let y = ops::max_pool(g, "pool", &y, &pool).expect("pool"); // [b, co, l/2]
            let y = ops::transpose(g, &y, &[0, 2, 1]).expect("transpose"); // [b, l/2, co]
            let out = ops::lstm(g, "lstm", &y, &rnn).expect("lstm");
            let last = ops::flatten(g, &out.last_hidden, 2).expect("flatten"); // [b, h]
            let logits = ops::gemm(g, "head", &last, &head).expect("gemm");
            ops::softmax(g, &logits, 1).expect("softmax")
        },
        |x| {
            let b = x.shape[0];
            let (y, _) = conv2d_ref(
                &x.data,
                [b, ci, 1, l],
                &conv_w.weight.data,
                [co, ci, 1, k],
                conv_w.bias.as_ref().map(|v| v.data.as_slice()),
                [1, 1],
                [(0, 0), (1, 1)],
                [1, 1],
                1,
            );
            let y = batch_norm_ref(&T::new(y, &[b, co, l]), &bn);
            // relu, max-pool 2 and to [b, s, co]
            let mut seq = vec![0.0; b * s * co];
            for n in 0..b {
                for c in 0..co {
                    for t in 0..s {
                        let base = (n * co + c) * l + 2 * t;
                        let m = y.data[base].max(y.data[base + 1]).max(0.0);
                        seq[(n * s + t) * co + c] = m;
                    }
                }
            }
            let mut probs = Vec::new();
            for xs in sequences(&T::new(seq, &[b, s, co])) {
                let hs = lstm_burn_ref(&cell, &xs, h, false);
                let mut logits = lin(&head, &hs[s - 1]);
                softmax_rows(&mut logits, classes);
                probs.extend(logits);
            }
            T::new(probs, &[b, classes])
        },
    );
}

// ---------------------------------------------------------------- bad weights

fn err_text(r: Result<impl std::fmt::Debug, OnnxError>) -> String {
    r.expect_err("the writer should refuse these weights")
        .to_string()
}

#[test]
fn mismatched_weights_are_refused_naming_layer_and_expected_shape() {
    let mut rng = Gen::new(50);
    let mut g = GraphBuilder::new("bad");
    let x = g
        .input("x", &[Dim::batch(), Dim::from(4), Dim::from(8)])
        .expect("input");

    // Data that does not fill its own shape.
    let short = Weights::new(vec![0.0; 5], [2, 4, 3]);
    let err = err_text(ops::conv(
        &mut g,
        "conv1",
        &x,
        &ConvWeights {
            weight: short,
            bias: None,
        },
        &ConvOptions::new(1),
    ));
    assert!(
        err.contains("layer 'conv1'") && err.contains("[2, 4, 3]") && err.contains("24"),
        "{err}"
    );

    // A conv bias of the wrong length.
    let err = err_text(ops::conv(
        &mut g,
        "conv2",
        &x,
        &ConvWeights {
            weight: rng.w(&[6, 4, 3]),
            bias: Some(rng.w(&[5])),
        },
        &ConvOptions::new(1),
    ));
    assert!(
        err.contains("layer 'conv2'") && err.contains("bias is [5] but expected [6]"),
        "{err}"
    );

    // Batch-norm statistics of the wrong size.
    let err = err_text(ops::batch_norm(
        &mut g,
        "bn",
        &x,
        &BatchNormWeights {
            gamma: rng.w(&[4]),
            beta: rng.w(&[4]),
            running_mean: rng.w(&[3]),
            running_var: rng.w(&[4]),
            epsilon: 1e-5,
        },
    ));
    assert!(
        err.contains("layer 'bn'") && err.contains("running_mean is [3] but expected [4]"),
        "{err}"
    );

    // A Gemm bias that does not match d_output.
    let err = err_text(ops::gemm(
        &mut g,
        "head",
        &x,
        &LinearWeights::burn(rng.w(&[8, 3]), Some(rng.w(&[8]))),
    ));
    assert!(
        err.contains("layer 'head'") && err.contains("bias is [8] but expected [3]"),
        "{err}"
    );

    // An LSTM gate whose input transform disagrees with the first gate's.
    let mut cell = random_lstm_cell(&mut rng, 8, 4, false);
    cell.cell_gate.input.weight = rng.w(&[7, 4]);
    let err = err_text(ops::lstm(
        &mut g,
        "lstm1",
        &x,
        &LstmWeights {
            cells: vec![cell],
            direction: Direction::Forward,
            batch_first: true,
        },
    ));
    assert!(
        err.contains("layer 'lstm1'")
            && err.contains("cells[0].cell_gate.input.weight is [7, 4] but expected [8, 4]"),
        "{err}"
    );

    // A bidirectional GRU given one cell.
    let err = err_text(ops::gru(
        &mut g,
        "gru1",
        &x,
        &GruWeights {
            cells: vec![random_gru_cell(&mut rng, 8, 4)],
            direction: Direction::Bidirectional,
            batch_first: true,
            reset_after: true,
        },
    ));
    assert!(
        err.contains("layer 'gru1'") && err.contains("needs 2 cell(s), got 1"),
        "{err}"
    );

    // PyTorch stacked weights whose hidden matrix is not [3H, H].
    let err = err_text(GruCell::from_torch(
        "gru2",
        &rng.w(&[12, 8]),
        &rng.w(&[12, 5]),
        None,
        None,
    ));
    assert!(
        err.contains("layer 'gru2'") && err.contains("weight_hh is [12, 5] but expected [12, 4]"),
        "{err}"
    );

    // Attention whose model width does not split into the heads.
    let mut lin_w = || LinearWeights::burn(rng.w(&[6, 6]), None);
    let err = err_text(ops::self_attention(
        &mut g,
        "mha",
        &x,
        &MhaWeights {
            query: lin_w(),
            key: lin_w(),
            value: lin_w(),
            output: lin_w(),
            n_heads: 4,
        },
    ));
    assert!(
        err.contains("layer 'mha'") && err.contains("d_model 6 does not split into 4 heads"),
        "{err}"
    );

    // Nothing half-built was left behind by the refused layers: the graph is still just `x`.
    g.output(&x, &[Dim::batch(), Dim::from(4), Dim::from(8)])
        .expect("output");
    let model = g.build().expect("build");
    let graph = model.graph.expect("graph");
    assert!(graph.node.is_empty() && graph.initializer.is_empty());
}

// ---------------------------------------------------------------- weightless helpers

#[test]
fn elementwise_arithmetic_and_functions_match_reference() {
    let Some(py) = common::python() else { return };
    let mut rng = Gen::new(60);
    let (r, c) = (3, 4);
    let row = rng.positive(&[c]);
    let mut draw = Gen::new(61);
    check_graph(
        &py,
        "elementwise",
        &[("a", &[r, c]), ("p", &[r, c])],
        |name, b| {
            if name == "a" {
                // Wider than (−1, 1) for the trigonometric functions; one exact 0 for Sign.
                let mut v: Vec<f32> = draw.vec(b * r * c).iter().map(|v| 3.0 * v).collect();
                v[0] = 0.0;
                v
            } else {
                draw.positive(&[b * r * c]).data
            }
        },
        |g, ins| {
            let (a, p) = (&ins[0], &ins[1]);
            let one = ops::scalar(g, "one", 1.0).expect("scalar");
            let row = g.initializer("row", &row).expect("row");
            let same = vec![r, c];
            let pt = ops::transpose(g, p, &[0, 2, 1]).expect("transpose");
            vec![
                (ops::sub(g, a, p).expect("sub"), same.clone()),
                (ops::sub(g, &one, a).expect("sub"), same.clone()),
                (ops::div(g, a, p).expect("div"), same.clone()),
                (ops::div(g, a, &row).expect("div"), same.clone()),
                (ops::exp(g, a).expect("exp"), same.clone()),
                (ops::log(g, p).expect("log"), same.clone()),
                (ops::sin(g, a).expect("sin"), same.clone()),
                (ops::cos(g, a).expect("cos"), same.clone()),
                (ops::atan(g, a).expect("atan"), same.clone()),
                (ops::sqrt(g, p).expect("sqrt"), same.clone()),
                (ops::neg(g, a).expect("neg"), same.clone()),
                (ops::abs(g, a).expect("abs"), same.clone()),
                (ops::sign(g, a).expect("sign"), same.clone()),
                (ops::pow(g, p, 2.5).expect("pow"), same.clone()),
                (ops::pow(g, a, 2.0).expect("pow"), same.clone()),
                (ops::maximum(g, a, &row).expect("max"), same.clone()),
                (ops::minimum(g, a, p).expect("min"), same),
                (ops::matmul(g, a, &pt).expect("matmul"), vec![r, r]),
            ]
        },
        |ins| {
            let (a, p) = (&ins[0], &ins[1]);
            let b = a.shape[0];
            let row_of = |t: &T| {
                let d: Vec<f32> = t
                    .data
                    .iter()
                    .enumerate()
                    .map(|(k, _)| row.data[k % c])
                    .collect();
                T::new(d, &t.shape)
            };
            let rows = row_of(a);
            let mut mm = vec![0.0; b * r * r];
            for n in 0..b {
                for i in 0..r {
                    for j in 0..r {
                        mm[(n * r + i) * r + j] = (0..c)
                            .map(|k| a.data[(n * r + i) * c + k] * p.data[(n * r + j) * c + k])
                            .sum();
                    }
                }
            }
            vec![
                zip(a, p, |x, y| x - y),
                map(a, |x| 1.0 - x),
                zip(a, p, |x, y| x / y),
                zip(a, &rows, |x, y| x / y),
                map(a, f32::exp),
                map(p, f32::ln),
                map(a, f32::sin),
                map(a, f32::cos),
                map(a, f32::atan),
                map(p, f32::sqrt),
                map(a, |x| -x),
                map(a, f32::abs),
                map(a, |x| if x == 0.0 { 0.0 } else { x.signum() }),
                map(p, |x| x.powf(2.5)),
                map(a, |x| x * x),
                zip(a, &rows, f32::max),
                zip(a, p, f32::min),
                T::new(mm, &[b, r, r]),
            ]
        },
    );
}

#[test]
fn slice_and_split_match_reference() {
    let Some(py) = common::python() else { return };
    let (r, c) = (4, 10);
    let mut draw = Gen::new(62);
    check_graph(
        &py,
        "slice_split",
        &[("x", &[r, c])],
        |_, b| draw.vec(b * r * c),
        |g, ins| {
            let x = &ins[0];
            // Rows 1..4, every third column from 2; every other column backwards from the last;
            // the last three columns (negative axis, default steps).
            let strided = ops::slice(g, x, &[1, 2], &[4, 9], &[1, 2], &[1, 3]).expect("slice");
            let backwards = ops::slice(g, x, &[-1], &[i64::MIN], &[2], &[-2]).expect("slice");
            let tail = ops::slice(g, x, &[7], &[i64::MAX], &[-1], &[]).expect("slice");
            let cols = ops::split(g, x, 2, &[3, 5, 2]).expect("split");
            let rows = ops::split(g, x, -2, &[1, 3]).expect("split");
            vec![
                (strided, vec![3, 3]),
                (backwards, vec![r, 5]),
                (tail, vec![r, 3]),
                (cols[0].clone(), vec![r, 3]),
                (cols[1].clone(), vec![r, 5]),
                (cols[2].clone(), vec![r, 2]),
                (rows[0].clone(), vec![1, c]),
                (rows[1].clone(), vec![3, c]),
            ]
        },
        |ins| {
            let x = &ins[0];
            let b = x.shape[0];
            let pick = |rows: &[usize], cols: &[usize]| {
                let mut v = Vec::new();
                for n in 0..b {
                    for &i in rows {
                        for &j in cols {
                            v.push(x.data[(n * r + i) * c + j]);
                        }
                    }
                }
                T::new(v, &[b, rows.len(), cols.len()])
            };
            let all_rows: Vec<usize> = (0..r).collect();
            let all_cols: Vec<usize> = (0..c).collect();
            vec![
                pick(&[1, 2, 3], &[2, 5, 8]),
                pick(&all_rows, &[9, 7, 5, 3, 1]),
                pick(&all_rows, &[7, 8, 9]),
                pick(&all_rows, &[0, 1, 2]),
                pick(&all_rows, &[3, 4, 5, 6, 7]),
                pick(&all_rows, &[8, 9]),
                pick(&[0], &all_cols),
                pick(&[1, 2, 3], &all_cols),
            ]
        },
    );
}

#[test]
fn reductions_match_reference() {
    let Some(py) = common::python() else { return };
    let (r, c) = (5, 4);
    let mut draw = Gen::new(63);
    check_graph(
        &py,
        "reductions",
        &[("x", &[r, c])],
        |_, b| draw.vec(b * r * c),
        |g, ins| {
            let x = &ins[0];
            vec![
                (
                    ops::reduce_mean(g, x, &[2], true).expect("mean"),
                    vec![r, 1],
                ),
                (ops::reduce_mean(g, x, &[1], false).expect("mean"), vec![c]),
                (ops::reduce_max(g, x, &[1, 2], false).expect("max"), vec![]),
                (ops::reduce_max(g, x, &[-2], true).expect("max"), vec![1, c]),
                (ops::reduce_sum(g, x, &[-1], false).expect("sum"), vec![r]),
                (
                    ops::reduce_sum(g, x, &[1, 2], true).expect("sum"),
                    vec![1, 1],
                ),
            ]
        },
        |ins| {
            let x = &ins[0];
            let b = x.shape[0];
            let at = |n: usize, i: usize, j: usize| x.data[(n * r + i) * c + j];
            let mut row_mean = Vec::new();
            let mut col_mean = Vec::new();
            let mut all_max = Vec::new();
            let mut col_max = Vec::new();
            let mut row_sum = Vec::new();
            let mut all_sum = Vec::new();
            for n in 0..b {
                for i in 0..r {
                    let s: f32 = (0..c).map(|j| at(n, i, j)).sum();
                    row_mean.push(s / c as f32);
                    row_sum.push(s);
                }
                for j in 0..c {
                    col_mean.push((0..r).map(|i| at(n, i, j)).sum::<f32>() / r as f32);
                    col_max.push((0..r).map(|i| at(n, i, j)).fold(f32::MIN, f32::max));
                }
                let sample = &x.data[n * r * c..(n + 1) * r * c];
                all_max.push(sample.iter().cloned().fold(f32::MIN, f32::max));
                all_sum.push(sample.iter().sum());
            }
            vec![
                T::new(row_mean, &[b, r, 1]),
                T::new(col_mean, &[b, c]),
                T::new(all_max, &[b]),
                T::new(col_max, &[b, 1, c]),
                T::new(row_sum, &[b, r]),
                T::new(all_sum, &[b, 1, 1]),
            ]
        },
    );
}

#[test]
fn snr_routing_with_less_greater_where_and_cast_matches_reference() {
    let Some(py) = common::python() else { return };
    let d = 4;
    let tau = 0.0f32;
    let mut draw = Gen::new(64);
    check_graph(
        &py,
        "routing",
        &[("snr_db", &[1]), ("a", &[d]), ("b", &[d])],
        |name, b| match (name, b) {
            // Below, at and above the threshold: the threshold itself takes the high route.
            ("snr_db", 1) => vec![-3.0],
            ("snr_db", _) => vec![-10.0, 0.0, 5.0],
            (_, b) => draw.vec(b * d).iter().map(|v| 3.0 * v).collect(),
        },
        |g, ins| {
            let (snr, a, b) = (&ins[0], &ins[1], &ins[2]);
            let t = ops::scalar(g, "tau", tau).expect("tau");
            let low = ops::less(g, snr, &t).expect("less");
            let routed = ops::where_(g, &low, a, b).expect("where");
            // The same choice as a float mask: m·a + (1 − m)·b.
            let m = ops::cast(g, &low, DataType::Float).expect("cast");
            let one = ops::scalar(g, "one", 1.0).expect("one");
            let not_m = ops::sub(g, &one, &m).expect("sub");
            let ma = ops::mul(g, &m, a).expect("mul");
            let nb = ops::mul(g, &not_m, b).expect("mul");
            let mixed = ops::add(g, &ma, &nb).expect("add");
            let high = ops::greater(g, snr, &t).expect("greater");
            let high = ops::cast(g, &high, DataType::Float).expect("cast");
            // float → int64 truncates toward zero; float → bool is x ≠ 0.
            let ints = ops::cast(g, a, DataType::Int64).expect("cast");
            let ints = ops::cast(g, &ints, DataType::Float).expect("cast");
            let pos = ops::relu(g, b).expect("relu");
            let nonzero = ops::cast(g, &pos, DataType::Bool).expect("cast");
            let nonzero = ops::cast(g, &nonzero, DataType::Float).expect("cast");
            vec![
                (routed, vec![d]),
                (mixed, vec![d]),
                (high, vec![1]),
                (ints, vec![d]),
                (nonzero, vec![d]),
            ]
        },
        |ins| {
            let (snr, a, b) = (&ins[0], &ins[1], &ins[2]);
            let n = snr.shape[0];
            let mut routed = Vec::new();
            for k in 0..n {
                let src = if snr.data[k] < tau { a } else { b };
                routed.extend_from_slice(&src.data[k * d..(k + 1) * d]);
            }
            let routed = T::new(routed, &[n, d]);
            vec![
                routed.clone(),
                routed,
                map(snr, |s| if s > tau { 1.0 } else { 0.0 }),
                map(a, f32::trunc),
                map(b, |v| if v > 0.0 { 1.0 } else { 0.0 }),
            ]
        },
    );
}

#[test]
fn atan2_in_all_four_quadrants_and_on_the_axes_matches_reference() {
    let Some(py) = common::python() else { return };
    // (y, x): the four quadrants, the four half-axes, the origin, both sides of the cut at ±π,
    // and a point nearly on the y axis.
    let points: [(f32, f32); 13] = [
        (1.0, 2.0),
        (1.5, -0.5),
        (-0.7, -0.3),
        (-2.0, 1.0),
        (0.0, 1.0),
        (0.0, -1.0),
        (1.0, 0.0),
        (-1.0, 0.0),
        (0.0, 0.0),
        (1e-3, -1.0),
        (-1e-3, -1.0),
        (5.0, 1e-4),
        (-5.0, -1e-4),
    ];
    let w = points.len();
    let mut draw = Gen::new(65);
    check_graph(
        &py,
        "atan2",
        &[("y", &[w]), ("x", &[w]), ("theta", &[w])],
        |name, b| {
            let mut v = match name {
                "y" => points.iter().map(|p| p.0).collect(),
                "x" => points.iter().map(|p| p.1).collect(),
                _ => draw.vec(w).iter().map(|v| 3.1 * v).collect::<Vec<f32>>(),
            };
            // Further rows: random points (and angles) anywhere in the square.
            v.extend(draw.vec((b - 1) * w).iter().map(|v| 3.1 * v));
            v
        },
        |g, ins| {
            let (y, x, theta) = (&ins[0], &ins[1], &ins[2]);
            let angle = ops::atan2(g, y, x).expect("atan2");
            // An angle regressed as (sin, cos) comes back as itself.
            let s = ops::sin(g, theta).expect("sin");
            let c = ops::cos(g, theta).expect("cos");
            let back = ops::atan2(g, &s, &c).expect("atan2");
            vec![(angle, vec![w]), (back, vec![w])]
        },
        |ins| {
            let atan2 = zip(&ins[0], &ins[1], |y, x| (y as f64).atan2(x as f64) as f32);
            vec![atan2, ins[2].clone()]
        },
    );
}

#[test]
fn l2_normalize_and_cosine_similarity_match_reference() {
    let Some(py) = common::python() else { return };
    let mut rng = Gen::new(66);
    let (rows, d, classes) = (2, 6, 4);
    let eps = 1e-12;
    let table = rng.w(&[classes, d]);
    let mut draw = Gen::new(67);
    check_graph(
        &py,
        "l2_cosine",
        &[("x", &[rows, d])],
        |_, b| {
            let mut v = draw.vec(b * rows * d);
            if b > 1 {
                // A zero vector stays zero and is orthogonal to every class.
                v[rows * d..(rows + 1) * d].fill(0.0);
            }
            v
        },
        |g, ins| {
            let x = &ins[0];
            let unit = ops::l2_normalize(g, x, -1, eps).expect("l2");
            let columns = ops::l2_normalize(g, x, 1, eps).expect("l2");
            let cos = ops::cosine_similarity(g, "zsl", x, &table, eps).expect("cosine");
            vec![
                (unit, vec![rows, d]),
                (columns, vec![rows, d]),
                (cos, vec![rows, classes]),
            ]
        },
        |ins| {
            let x = &ins[0];
            let b = x.shape[0];
            let norm = |v: &[f32]| v.iter().map(|a| a * a).sum::<f32>().sqrt().max(eps);
            let mut unit = Vec::new();
            let mut cos = Vec::new();
            for v in x.data.chunks(d) {
                let nv = norm(v);
                unit.extend(v.iter().map(|a| a / nv));
                for e in table.data.chunks(d) {
                    let dot: f32 = v.iter().zip(e).map(|(p, q)| p * q).sum();
                    cos.push(dot / nv / norm(e));
                }
            }
            let mut columns = x.data.clone();
            for n in 0..b {
                for j in 0..d {
                    let col: Vec<f32> = (0..rows).map(|i| x.data[(n * rows + i) * d + j]).collect();
                    let nc = norm(&col);
                    for i in 0..rows {
                        columns[(n * rows + i) * d + j] /= nc;
                    }
                }
            }
            vec![
                T::new(unit, &x.shape),
                T::new(columns, &x.shape),
                T::new(cos, &[b, rows, classes]),
            ]
        },
    );
}

#[test]
fn weightless_helpers_refuse_bad_arguments_naming_what_was_expected() {
    let mut g = GraphBuilder::new("bad_args");
    let x = g.input("x", &batched(&[4, 8])).expect("input");
    let err = err_text(ops::slice(&mut g, &x, &[0, 1], &[2], &[1, 2], &[]));
    assert!(
        err.contains("'x.slice'") && err.contains("got 2, 1, 2 and 0"),
        "{err}"
    );
    let err = err_text(ops::slice(&mut g, &x, &[0], &[2], &[1], &[0]));
    assert!(err.contains("step cannot be 0"), "{err}");
    let err = err_text(ops::slice(&mut g, &x, &[0, 1], &[2, 3], &[2, 2], &[]));
    assert!(err.contains("axis 2 is sliced twice"), "{err}");
    let err = err_text(ops::split(&mut g, &x, 2, &[4, 0, 4]));
    assert!(
        err.contains("'x.split'") && err.contains("[4, 0, 4]"),
        "{err}"
    );
    let err = err_text(ops::reduce_mean(&mut g, &x, &[], true));
    assert!(err.contains("name the axes"), "{err}");
    let err = err_text(ops::reduce_sum(&mut g, &x, &[], false));
    assert!(err.contains("name the axes"), "{err}");
    let err = err_text(ops::cast(&mut g, &x, DataType::Undefined));
    assert!(err.contains("defined element type"), "{err}");
    let err = err_text(ops::cosine_similarity(
        &mut g,
        "zsl",
        &x,
        &Weights::new(vec![0.0; 8], [8]),
        1e-12,
    ));
    assert!(
        err.contains("layer 'zsl'") && err.contains("embeddings is [8]"),
        "{err}"
    );
    // Nothing half-built was left behind: the graph is still just `x`.
    g.output(&x, &batched(&[4, 8])).expect("output");
    let graph = g.build().expect("build").graph.expect("graph");
    assert!(graph.node.is_empty() && graph.initializer.is_empty());
}

#[test]
fn affine_coupling_and_phase_derotation_compose_from_the_weightless_helpers() {
    let Some(py) = common::python() else { return };
    // An SE-JNNet-style enhancer step on [4, L] rows: split the rows in halves (a, b), scale and
    // shift b by 1×1 convolutions of a (b' = b·exp(tanh(s(a))) + t(a)), then derotate the first
    // I/Q pair by the mean of row 2 as a phase: I' = I·cos φ + Q·sin φ, Q' = Q·cos φ − I·sin φ.
    let mut rng = Gen::new(68);
    let l = 6;
    let s_net = ConvWeights {
        weight: rng.w(&[2, 2, 1]),
        bias: Some(rng.w(&[2])),
    };
    let t_net = ConvWeights {
        weight: rng.w(&[2, 2, 1]),
        bias: Some(rng.w(&[2])),
    };
    let one_by_one = ConvOptions::new(1);
    let mut draw = Gen::new(69);
    check_graph(
        &py,
        "coupling",
        &[("x", &[4, l])],
        |_, b| draw.vec(b * 4 * l),
        |g, ins| {
            let halves = ops::split(g, &ins[0], 1, &[2, 2]).expect("split");
            let (a, b) = (&halves[0], &halves[1]);
            let s = ops::conv(g, "s", a, &s_net, &one_by_one).expect("conv");
            let s = ops::tanh(g, &s).expect("tanh");
            let scale = ops::exp(g, &s).expect("exp");
            let t = ops::conv(g, "t", a, &t_net, &one_by_one).expect("conv");
            let b = ops::mul(g, b, &scale).expect("mul");
            let b = ops::add(g, &b, &t).expect("add");
            let y = ops::concat(g, &[a, &b], 1).expect("concat");
            let row2 = ops::slice(g, &y, &[2], &[3], &[1], &[]).expect("slice");
            let phi = ops::reduce_mean(g, &row2, &[2], true).expect("mean"); // [N, 1, 1]
            let (c, s) = (
                ops::cos(g, &phi).expect("cos"),
                ops::sin(g, &phi).expect("sin"),
            );
            let i = ops::slice(g, &y, &[0], &[1], &[1], &[]).expect("slice");
            let q = ops::slice(g, &y, &[1], &[2], &[1], &[]).expect("slice");
            let (ic, qs) = (
                ops::mul(g, &i, &c).expect("mul"),
                ops::mul(g, &q, &s).expect("mul"),
            );
            let (qc, is) = (
                ops::mul(g, &q, &c).expect("mul"),
                ops::mul(g, &i, &s).expect("mul"),
            );
            let i2 = ops::add(g, &ic, &qs).expect("add");
            let q2 = ops::sub(g, &qc, &is).expect("sub");
            let out = ops::concat(g, &[&i2, &q2], 1).expect("concat");
            vec![(y, vec![4, l]), (out, vec![2, l])]
        },
        |ins| {
            let x = &ins[0];
            let n = x.shape[0];
            let conv1 = |w: &ConvWeights, rows: &[f32], o: usize, t: usize| {
                w.bias.as_ref().map_or(0.0, |b| b.data[o])
                    + (0..2)
                        .map(|c| w.weight.data[o * 2 + c] * rows[c * l + t])
                        .sum::<f32>()
            };
            let mut ys = Vec::new();
            let mut outs = Vec::new();
            for k in 0..n {
                let xs = &x.data[k * 4 * l..(k + 1) * 4 * l];
                let mut y = xs.to_vec();
                for o in 0..2 {
                    for t in 0..l {
                        let scale = conv1(&s_net, &xs[..2 * l], o, t).tanh().exp();
                        let shift = conv1(&t_net, &xs[..2 * l], o, t);
                        y[(2 + o) * l + t] = xs[(2 + o) * l + t] * scale + shift;
                    }
                }
                let phi = y[2 * l..3 * l].iter().sum::<f32>() / l as f32;
                let (c, s) = (phi.cos(), phi.sin());
                let (i, q) = (&y[..l], &y[l..2 * l]);
                outs.extend((0..l).map(|t| i[t] * c + q[t] * s));
                outs.extend((0..l).map(|t| q[t] * c - i[t] * s));
                ys.extend(y);
            }
            vec![T::new(ys, &[n, 4, l]), T::new(outs, &[n, 2, l])]
        },
    );
}
