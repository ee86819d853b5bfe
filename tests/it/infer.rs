//! The inference contract: tiny ONNX models made here with `onnx.helper`, run through
//! `Model::run` and compared with onnxruntime-Python on the same preprocessed input; model cards
//! that disagree with their graph, missing cards, corrupt models and a missing runtime library
//! are refused with messages that name the file and what disagrees.
//!
//! Tolerance: 1e-5 absolute on logits, probabilities and angles (the same ONNX Runtime library
//! runs both sides; only the softmax is computed separately).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde_json::{Value, json};
use specwatch::infer::runtime::runtime;
use specwatch::infer::{ExecutionPreference, InferError, Model, Provider, RuntimeOptions};
use specwatch::iq::C32;

use crate::common;

const TOL: f32 = 1e-5;

/// Makes the test models in `sys.argv[1]`: every graph has a dynamic batch `N`.
const MAKE_MODELS: &str = r#"
import sys, numpy as np, onnx
from onnx import helper, TensorProto, numpy_helper
out = sys.argv[1]
rng = np.random.default_rng(7)
F = TensorProto.FLOAT

def init(name, shape):
    return numpy_helper.from_array((rng.standard_normal(shape) * 0.1).astype(np.float32), name)

def save(name, nodes, inputs, outputs, inits):
    g = helper.make_graph(nodes, name, inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, f"{out}/{name}.onnx")

def vi(name, shape, t=F):
    return helper.make_tensor_value_info(name, t, shape)

# amc: iq [N,2,128] -> logits [N,4]
save("amc",
     [helper.make_node("Flatten", ["iq"], ["f"], axis=1),
      helper.make_node("Gemm", ["f", "W", "b"], ["logits"])],
     [vi("iq", ["N", 2, 128])], [vi("logits", ["N", 4])],
     [init("W", (256, 4)), init("b", (4,))])

# amc4d: the same data laid out [N,1,2,128]
save("amc4d",
     [helper.make_node("Flatten", ["iq"], ["f"], axis=1),
      helper.make_node("Gemm", ["f", "W", "b"], ["logits"])],
     [vi("iq", ["N", 1, 2, 128])], [vi("logits", ["N", 4])],
     [init("W", (256, 4)), init("b", (4,))])

# amc64: float64 input
save("amc64",
     [helper.make_node("Cast", ["iq"], ["x"], to=F),
      helper.make_node("Flatten", ["x"], ["f"], axis=1),
      helper.make_node("Gemm", ["f", "W", "b"], ["logits"])],
     [vi("iq", ["N", 2, 128], TensorProto.DOUBLE)], [vi("logits", ["N", 4])],
     [init("W", (256, 4)), init("b", (4,))])

# both: 2 channels x 64, x [N,4,64] -> logits [N,3], azimuth [N,1], elevation [N,1]
save("both",
     [helper.make_node("Flatten", ["x"], ["f"], axis=1),
      helper.make_node("Gemm", ["f", "Wc", "bc"], ["logits"]),
      helper.make_node("Gemm", ["f", "Wa", "ba"], ["azimuth"]),
      helper.make_node("Gemm", ["f", "We", "be"], ["elevation"])],
     [vi("x", ["N", 4, 64])],
     [vi("logits", ["N", 3]), vi("azimuth", ["N", 1]), vi("elevation", ["N", 1])],
     [init("Wc", (256, 3)), init("bc", (3,)), init("Wa", (256, 1)), init("ba", (1,)),
      init("We", (256, 1)), init("be", (1,))])

# aoa: 2 channels x 32 -> angles [N,2]
save("aoa",
     [helper.make_node("Flatten", ["x"], ["f"], axis=1),
      helper.make_node("Gemm", ["f", "W", "b"], ["angles"])],
     [vi("x", ["N", 4, 32])], [vi("angles", ["N", 2])],
     [init("W", (128, 2)), init("b", (2,))])

# snr: iq [N,2,128] + snr_db [N,1] -> probabilities [N,5]
save("snr",
     [helper.make_node("Flatten", ["iq"], ["f"], axis=1),
      helper.make_node("Concat", ["f", "snr_db"], ["c"], axis=1),
      helper.make_node("Gemm", ["c", "W", "b"], ["z"]),
      helper.make_node("Softmax", ["z"], ["probs"], axis=1)],
     [vi("iq", ["N", 2, 128]), vi("snr_db", ["N", 1])], [vi("probs", ["N", 5])],
     [init("W", (257, 5)), init("b", (5,))])
"#;

/// Runs a model with onnxruntime-Python. argv: model, out folder, then `name:d0,d1,..:file`
/// per input (raw little-endian f32). Writes `<out>/<output>.f32` per graph output and prints
/// `name:d0,d1,..` per output.
const RUN_ORT: &str = r#"
import sys, numpy as np, onnxruntime as ort
model, out = sys.argv[1], sys.argv[2]
o = ort.SessionOptions(); o.intra_op_num_threads = 1
s = ort.InferenceSession(model, o, providers=["CPUExecutionProvider"])
feeds = {}
for spec in sys.argv[3:]:
    name, shape, path = spec.split(":")
    feeds[name] = np.fromfile(path, dtype="<f4").reshape([int(d) for d in shape.split(",")])
res = s.run(None, feeds)
for meta, r in zip(s.get_outputs(), res):
    np.asarray(r, dtype="<f4").tofile(f"{out}/{meta.name}.f32")
    print(meta.name + ":" + ",".join(str(d) for d in r.shape))
"#;

/// The test models, made once per test process under cargo's target tmpdir.
fn shared_models() -> Option<&'static (PathBuf, PathBuf)> {
    static MODELS: OnceLock<Option<(PathBuf, PathBuf)>> = OnceLock::new();
    MODELS
        .get_or_init(|| {
            let py = common::onnx_python()?;
            if !common::runtime_available() {
                return None;
            }
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("infer-models");
            std::fs::create_dir_all(&dir).expect("create the model folder");
            common::run_python(&py, MAKE_MODELS, &[dir.to_str().expect("utf-8 path")]);
            Some((dir, py))
        })
        .as_ref()
}

/// A scratch folder holding a copy of every test model (each test writes its own cards), and
/// the Python interpreter; `None` to skip.
fn models() -> Option<(tempfile::TempDir, PathBuf)> {
    let (shared, py) = shared_models()?;
    let dir = common::scratch();
    for e in std::fs::read_dir(shared).expect("list models") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "onnx") {
            std::fs::copy(&p, dir.path().join(p.file_name().expect("name"))).expect("copy model");
        }
    }
    Some((dir, py.clone()))
}

fn base_card(name: &str) -> Value {
    json!({
        "name": name,
        "version": "0.0.1",
        "task": "amc",
        "window_len": 128,
        "channels": 1,
        "sample_rate_hz": 200000.0,
        "inputs": [{"name": "iq", "layout": ["N", 2, 128], "dtype": "float32",
                    "representation": "iq", "normalization": "unit_rms"}],
        "outputs": [{"name": "logits", "kind": "logits"}],
        "classes": ["A", "B", "C", "D"],
        "dataset": {"name": "test", "manifest_sha256": "0f".repeat(32)},
        "metrics": {"accuracy": 0.5},
        "training": {"command": "python (tests/it/infer.rs)", "arch": "gemm", "epochs": 0}
    })
}

fn card_for(model: &str) -> Value {
    match model {
        "amc" | "amc64" => base_card(model),
        "amc4d" => {
            let mut c = base_card(model);
            c["inputs"][0]["layout"] = json!(["N", 1, 2, 128]);
            c
        }
        "both" => {
            let mut c = base_card(model);
            c["task"] = json!("amc+aoa");
            c["channels"] = json!(2);
            c["window_len"] = json!(64);
            c["inputs"] = json!([{"name": "x", "layout": ["N", 4, 64], "dtype": "float32",
                                  "representation": "amp_phase", "normalization": "peak"}]);
            c["outputs"] = json!([{"name": "logits", "kind": "logits"},
                                  {"name": "azimuth", "kind": "azimuth"},
                                  {"name": "elevation", "kind": "elevation"}]);
            c["classes"] = json!(["X", "Y", "Z"]);
            c
        }
        "aoa" => {
            let mut c = base_card(model);
            c["task"] = json!("aoa");
            c["channels"] = json!(2);
            c["window_len"] = json!(32);
            c["inputs"] = json!([{"name": "x", "layout": ["N", 4, 32], "dtype": "float32",
                                  "representation": "fft", "normalization": "none"}]);
            c["outputs"] = json!([{"name": "angles", "kind": "azimuth_elevation"}]);
            c["classes"] = json!([]);
            c
        }
        "snr" => {
            let mut c = base_card(model);
            c["inputs"][0]["normalization"] = json!("l1");
            c["extra_inputs"] = json!([{"name": "snr_db", "kind": "snr_db",
                                        "layout": ["N", 1], "dtype": "float32"}]);
            c["outputs"] = json!([{"name": "probs", "kind": "probabilities"}]);
            c["classes"] = json!(["a", "b", "c", "d", "e"]);
            c
        }
        other => panic!("no card for {other}"),
    }
}

fn write_card(dir: &Path, model: &str, card: &Value) -> PathBuf {
    let path = dir.join(format!("{model}.json"));
    std::fs::write(
        &path,
        serde_json::to_string_pretty(card).expect("serialise"),
    )
    .expect("write card");
    path
}

/// CPU, one thread: the reference side runs on CPU too, and the cores are shared.
fn options() -> RuntimeOptions {
    RuntimeOptions {
        intra_threads: Some(1),
        execution: ExecutionPreference::Cpu,
        ..RuntimeOptions::default()
    }
}

fn windows(seed: u64, n: usize) -> Vec<C32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|k| {
            let (re, im): (f32, f32) = (
                StandardNormal.sample(&mut rng),
                StandardNormal.sample(&mut rng),
            );
            // A tone plus noise, so windows differ in structure, not just scale.
            let ph = 0.3 * k as f32;
            C32::new(2.0 * ph.cos() + re, 2.0 * ph.sin() + im) * (1.0 + (k % 7) as f32)
        })
        .collect()
}

fn write_f32(path: &Path, data: &[f32]) {
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes).expect("write f32 file");
}

fn read_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).expect("read f32 file");
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Runs `model` at `batch` in Rust and in Python on Rust's preprocessed input; checks every
/// output within [`TOL`] and returns the largest difference seen.
fn parity(py: &Path, dir: &Path, name: &str, batch: usize, seed: u64) -> f32 {
    let card = write_card(dir, name, &card_for(name));
    let mut model = Model::load(&card, &options()).expect("model loads");
    assert_eq!(model.provider(), Provider::Cpu);
    let w = windows(seed, batch * model.window_size());
    let out = model.run(&w, batch).expect("runs").clone();
    assert_eq!(out.len(), batch);

    let work = dir.join(format!("{name}-{batch}"));
    std::fs::create_dir_all(&work).expect("mkdir");
    let mut args = vec![
        model.onnx_path().display().to_string(),
        work.display().to_string(),
    ];
    let c = model.card().clone();
    let shapes = c
        .inputs
        .iter()
        .map(|i| (&i.name, &i.layout))
        .chain(c.extra_inputs.iter().map(|i| (&i.name, &i.layout)));
    for (input, layout) in shapes {
        let data = model.last_input(input).expect("input was fed");
        let file = work.join(format!("in-{input}.f32"));
        write_f32(&file, data);
        let dims: Vec<String> = layout
            .iter()
            .map(|d| match d {
                specwatch::infer::card::Dim::Batch => batch.to_string(),
                specwatch::infer::card::Dim::Fixed(n) => n.to_string(),
            })
            .collect();
        args.push(format!("{input}:{}:{}", dims.join(","), file.display()));
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    common::run_python(py, RUN_ORT, &argv);

    let mut worst = 0.0f32;
    for o in &c.outputs {
        let reference = read_f32(&work.join(format!("{}.f32", o.name)));
        use specwatch::infer::card::OutputKind as K;
        let mine: Vec<f32> = match o.kind {
            K::Logits | K::Probabilities => {
                (0..batch).flat_map(|i| out.scores(i).to_vec()).collect()
            }
            K::Azimuth => (0..batch).filter_map(|i| out.azimuth_deg(i)).collect(),
            K::Elevation => (0..batch).filter_map(|i| out.elevation_deg(i)).collect(),
            K::AzimuthElevation => (0..batch)
                .flat_map(|i| [out.azimuth_deg(i), out.elevation_deg(i)])
                .flatten()
                .collect(),
        };
        let d = max_abs_diff(&mine, &reference);
        assert!(
            d <= TOL,
            "{name} batch {batch}: output '{}' differs by {d}",
            o.name
        );
        worst = worst.max(d);
        if o.kind == K::Logits {
            // Softmax in f64 on the reference logits.
            let k = c.classes.len();
            for i in 0..batch {
                let z = &reference[i * k..(i + 1) * k];
                let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let e: Vec<f64> = z.iter().map(|v| f64::from(v - m).exp()).collect();
                let s: f64 = e.iter().sum();
                let p: Vec<f32> = e.iter().map(|v| (v / s) as f32).collect();
                let d = max_abs_diff(out.probabilities(i), &p);
                assert!(
                    d <= TOL,
                    "{name} batch {batch}: probabilities differ by {d}"
                );
                worst = worst.max(d);
            }
        }
    }
    eprintln!("{name} batch {batch}: largest |Rust − onnxruntime-Python| = {worst:e}");
    worst
}

#[test]
fn outputs_match_onnxruntime_python_at_batch_1_and_7() {
    let Some((dir, py)) = models() else { return };
    for (k, name) in ["amc", "amc4d", "both", "aoa", "snr"].iter().enumerate() {
        for batch in [1, 7] {
            parity(
                &py,
                dir.path(),
                name,
                batch,
                100 + k as u64 * 10 + batch as u64,
            );
        }
    }
}

#[test]
fn preprocessing_is_dsp_normalisation_then_representation() {
    let Some((dir, py)) = models() else { return };
    let card = write_card(dir.path(), "amc", &card_for("amc"));
    let mut model = Model::load(&card, &options()).expect("loads");
    let w = windows(5, 3 * 128);
    model.run(&w, 3).expect("runs");
    let raw = dir.path().join("raw.f32");
    let flat: Vec<f32> = w.iter().flat_map(|c| [c.re, c.im]).collect();
    write_f32(&raw, &flat);
    let expected = dir.path().join("expected.f32");
    // unit_rms per window, then I and Q rows.
    let script = r#"
import sys, numpy as np
x = np.fromfile(sys.argv[1], dtype="<f4").reshape(3, 128, 2)
z = x[..., 0].astype(np.float64) + 1j * x[..., 1]
z = z / np.sqrt(np.mean(np.abs(z) ** 2, axis=1, keepdims=True))
np.stack([z.real, z.imag], axis=1).astype("<f4").tofile(sys.argv[2])
"#;
    common::run_python(
        &py,
        script,
        &[
            raw.to_str().expect("utf-8"),
            expected.to_str().expect("utf-8"),
        ],
    );
    let d = max_abs_diff(model.last_input("iq").expect("fed"), &read_f32(&expected));
    assert!(d <= 1e-6, "preprocessed input differs from numpy by {d}");
}

#[test]
fn batch_of_one_agrees_with_the_same_window_in_a_batch() {
    let Some((dir, _py)) = models() else { return };
    let card = write_card(dir.path(), "both", &card_for("both"));
    let mut model = Model::load(&card, &options()).expect("loads");
    let size = model.window_size();
    let w = windows(9, 5 * size);
    let all = model.run(&w, 5).expect("runs").clone();
    for i in 0..5 {
        let one = model.run(&w[i * size..(i + 1) * size], 1).expect("runs");
        let d = max_abs_diff(one.probabilities(0), all.probabilities(i));
        assert!(d <= TOL, "window {i}: {d}");
        let da = (one.azimuth_deg(0).expect("az") - all.azimuth_deg(i).expect("az")).abs();
        assert!(da <= TOL, "window {i} azimuth: {da}");
        assert_eq!(one.top_k(0, 3)[0].class, all.best(i).expect("best").class);
    }
}

#[test]
fn snr_input_takes_given_values() {
    let Some((dir, _py)) = models() else { return };
    let card = write_card(dir.path(), "snr", &card_for("snr"));
    let mut model = Model::load(&card, &options()).expect("loads");
    let w = windows(3, 2 * 128);
    model.run_with_snr(&w, 2, &[12.5, -3.0]).expect("runs");
    assert_eq!(model.last_input("snr_db"), Some(&[12.5f32, -3.0][..]));
    let err = model
        .run_with_snr(&w, 2, &[1.0])
        .expect_err("one value for two windows")
        .to_string();
    assert!(
        err.contains("1 SNR values for a batch of 2 windows"),
        "{err}"
    );
    // Without values, the dsp estimate is fed: finite and within its clamp.
    model.run(&w, 2).expect("runs");
    let est = model.last_input("snr_db").expect("fed");
    assert!(est.iter().all(|v| (-30.0..=60.0).contains(v)), "{est:?}");
}

#[test]
fn wrong_window_count_is_refused() {
    let Some((dir, _py)) = models() else { return };
    let card = write_card(dir.path(), "amc", &card_for("amc"));
    let mut model = Model::load(&card, &options()).expect("loads");
    let err = model
        .run(&windows(1, 300), 2)
        .expect_err("300 samples")
        .to_string();
    assert!(
        err.contains("model 'amc': 300 samples for a batch of 2 windows of 1 channels × 128 samples (expected 256)"),
        "{err}"
    );
}

/// Loads `model`'s graph with `card` and returns the error text.
fn refused(dir: &Path, model: &str, card: &Value) -> String {
    let path = write_card(dir, model, card);
    let err = Model::load(&path, &options()).expect_err("card disagrees");
    assert!(matches!(err, InferError::Card { .. }), "{err:?}");
    err.to_string()
}

#[test]
fn card_input_layout_must_match_the_graph() {
    let Some((dir, _py)) = models() else { return };
    let err = refused(dir.path(), "amc4d", &base_card("amc4d"));
    let card = dir.path().join("amc4d.json");
    assert_eq!(
        err,
        format!(
            "model card {}: input 'iq' is [N,2,128] but the ONNX graph expects [N,1,2,128]",
            card.display()
        )
    );
}

#[test]
fn class_count_must_match_logits_dimension() {
    let Some((dir, _py)) = models() else { return };
    let mut c = base_card("amc");
    c["classes"] = json!(["A", "B", "C"]);
    let err = refused(dir.path(), "amc", &c);
    assert!(err.contains("amc.json"), "{err}");
    assert!(
        err.contains("output 'logits' (Logits) is 3 classes in the card, so [N,3] but the ONNX graph gives [N,4]"),
        "{err}"
    );
}

#[test]
fn output_named_by_the_card_must_exist() {
    let Some((dir, _py)) = models() else { return };
    let mut c = base_card("amc");
    c["task"] = json!("amc+aoa");
    c["outputs"] = json!([{"name": "logits", "kind": "logits"},
                          {"name": "azimuth", "kind": "azimuth"}]);
    let err = refused(dir.path(), "amc", &c);
    assert!(
        err.contains("output 'azimuth' is not in the ONNX graph (its outputs: 'logits')"),
        "{err}"
    );
}

#[test]
fn element_type_must_match() {
    let Some((dir, _py)) = models() else { return };
    let err = refused(dir.path(), "amc64", &base_card("amc64"));
    assert!(err.contains("amc64.json"), "{err}");
    assert!(
        err.contains("input 'iq' is float32 but the ONNX graph expects float64"),
        "{err}"
    );
}

#[test]
fn graph_input_missing_from_the_card_is_refused() {
    let Some((dir, _py)) = models() else { return };
    let mut c = card_for("snr");
    c.as_object_mut().expect("object").remove("extra_inputs");
    let err = refused(dir.path(), "snr", &c);
    assert!(
        err.contains(
            "the ONNX graph has input 'snr_db' (float32 [N,1]) that the card does not describe"
        ),
        "{err}"
    );
}

#[test]
fn model_without_card_is_refused() {
    let Some((dir, _py)) = models() else { return };
    let onnx = dir.path().join("amc.onnx");
    let err = Model::load(&onnx, &options()).expect_err("no card");
    assert!(matches!(err, InferError::MissingCard { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!(
            "no model card at {}",
            dir.path().join("amc.json").display()
        )),
        "{msg}"
    );
}

#[test]
fn corrupt_onnx_is_refused_naming_the_file() {
    let Some((dir, _py)) = models() else { return };
    let onnx = dir.path().join("broken.onnx");
    std::fs::write(&onnx, b"this is not a protobuf").expect("write");
    let card = write_card(dir.path(), "broken", &base_card("broken"));
    let err = Model::load(&card, &options()).expect_err("corrupt");
    assert!(matches!(err, InferError::Model { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "model {}: ONNX Runtime cannot load it",
            onnx.display()
        )),
        "{msg}"
    );
}

#[test]
fn unknown_card_field_is_refused_naming_file_and_field() {
    // Parsing happens before the runtime or the model are touched: no Python needed.
    let dir = common::scratch();
    let mut c = base_card("amc");
    c["inputs"][0]["scale"] = json!(1.0);
    let path = write_card(dir.path(), "amc", &c);
    let err = Model::load(&path, &options()).expect_err("unknown field");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("model card {}:", path.display()))
            && msg.contains("unknown field `scale`"),
        "{msg}"
    );
}

#[test]
fn missing_runtime_library_lists_what_was_tried() {
    let dir = common::scratch();
    let path = write_card(dir.path(), "amc", &base_card("amc"));
    std::fs::write(dir.path().join("amc.onnx"), b"unused").expect("write");
    let opts = RuntimeOptions {
        library: Some(PathBuf::from(
            "/nonexistent/onnxruntime/libonnxruntime.so.1.31.1",
        )),
        ..options()
    };
    let err = Model::load(&path, &opts).expect_err("no runtime");
    assert!(matches!(err, InferError::RuntimeNotFound { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("tried:\n  - /nonexistent/onnxruntime/libonnxruntime.so.1.31.1 (configured path): no such file"),
        "{msg}"
    );
    assert!(
        msg.contains("run scripts/setup") && msg.contains("ORT_DYLIB_PATH"),
        "{msg}"
    );
}

#[test]
fn a_second_runtime_library_is_refused_once_one_is_loaded() {
    if !common::runtime_available() {
        return;
    }
    let rt = runtime(None).expect("loaded");
    assert!(
        rt.version().is_some(),
        "version of {}",
        rt.library().display()
    );
    let dir = common::scratch();
    let other = dir.path().join("libonnxruntime.so");
    std::fs::write(&other, b"not loaded").expect("write");
    let err = runtime(Some(&other)).expect_err("conflict");
    assert!(matches!(err, InferError::RuntimeConflict { .. }), "{err:?}");
    // Asking for the loaded library by its path is fine.
    let same = runtime(Some(rt.library())).expect("same library");
    assert_eq!(same.library(), rt.library());
}

#[test]
fn cuda_provider_runs_or_skips_with_reason() {
    if !cfg!(feature = "cuda") {
        eprintln!("SKIPPED: CUDA check: built without the `cuda` feature");
        return;
    }
    let Some((dir, _py)) = models() else { return };
    let card = write_card(dir.path(), "amc", &card_for("amc"));
    let cuda = RuntimeOptions {
        execution: ExecutionPreference::Cuda { device_id: 0 },
        ..options()
    };
    let mut gpu = match Model::load(&card, &cuda) {
        Ok(m) => m,
        Err(e @ InferError::Provider { .. }) => {
            eprintln!("SKIPPED: CUDA check: no usable CUDA provider or GPU here: {e}");
            // Auto must then fall back to CPU and say why.
            let auto_opts = RuntimeOptions {
                execution: ExecutionPreference::Auto,
                ..options()
            };
            let auto = Model::load(&card, &auto_opts).expect("CPU fallback");
            assert_eq!(auto.provider(), Provider::Cpu);
            assert!(auto.cuda_fallback().is_some());
            return;
        }
        Err(e) => panic!("{e}"),
    };
    assert_eq!(gpu.provider(), Provider::Cuda { device_id: 0 });
    let mut cpu = Model::load(&card, &options()).expect("CPU");
    let w = windows(11, 8 * 128);
    let g = gpu.run(&w, 8).expect("runs on CUDA").clone();
    let c = cpu.run(&w, 8).expect("runs on CPU");
    for i in 0..8 {
        // GPU kernels may order sums differently: 1e-4 on probabilities.
        let d = max_abs_diff(g.probabilities(i), c.probabilities(i));
        assert!(d <= 1e-4, "window {i}: CUDA vs CPU differ by {d}");
    }
    eprintln!("CUDA check ran on {}", gpu.runtime());
}

/// The models shipped in `models/`: each loads through the daemon's code path, its graph agrees
/// with its card, it classifies a batch into the card's classes, it stays within the 20 MB a
/// bundled model may take, and it comes with its evaluation report.
#[test]
fn every_bundled_model_loads_runs_and_has_its_report() {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let cards = common::repo_files("models", "json");
    assert!(
        cards.iter().any(|c| c.ends_with("amc128.json")),
        "the default model models/amc128.json is missing: {cards:?}"
    );
    for card_path in &cards {
        let stem = card_path.file_stem().expect("stem").to_string_lossy();
        let onnx_bytes = std::fs::metadata(card_path.with_extension("onnx"))
            .unwrap_or_else(|e| panic!("{stem}.onnx beside its card: {e}"))
            .len();
        assert!(
            onnx_bytes <= 20_000_000,
            "{stem}.onnx is {onnx_bytes} bytes, over the 20 MB a bundled model may take"
        );
        let report = models.join(format!("{stem}.report"));
        for file in [
            "report.md",
            "eval.json",
            "accuracy_vs_snr.png",
            "confusion.png",
        ] {
            assert!(
                report.join(file).is_file(),
                "{stem} is bundled without {}",
                report.join(file).display()
            );
        }
    }
    if !common::runtime_available() {
        return;
    }
    for card_path in &cards {
        let stem = card_path.file_stem().expect("stem").to_string_lossy();
        let mut model = Model::load(card_path, &options())
            .unwrap_or_else(|e| panic!("{}: {e}", card_path.display()));
        let card = model.card().clone();
        assert_eq!(card.name, stem, "{}: card name", card_path.display());
        let batch = 3;
        let input = windows(11, batch * card.window_len * card.channels);
        let out = model
            .run(&input, batch)
            .unwrap_or_else(|e| panic!("{stem}: {e}"));
        assert_eq!(out.len(), batch, "{stem}: windows out");
        assert_eq!(out.classes(), card.classes.len(), "{stem}: classes out");
        for i in 0..batch {
            let sum: f32 = out.probabilities(i).iter().sum();
            assert!(
                (sum - 1.0).abs() < 1e-4,
                "{stem}: window {i}'s probabilities sum to {sum}"
            );
        }
    }
}
