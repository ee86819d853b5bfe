//! Export of every architecture to ONNX, against the burn model it came from.
//!
//! For each architecture a tiny-width model is built from a fixed seed and given a couple of
//! training-mode forward passes (so BatchNorm running statistics are not their initial 0/1),
//! then exported with `Model::to_onnx`, and:
//! - (a) `onnx.checker.check_model(full_check=True)` passes (Python reference environment);
//! - (b) onnxruntime in Python matches burn's forward of the `.valid()` model;
//! - (c) ort through `specwatch::infer::Model` — the daemon's path, preprocessing included —
//!   matches burn on the same raw windows;
//!
//! at batch 1 and batch 5, on random inputs and on rml2016a windows from the generator run
//! through the same preprocessing. Tolerance: max |logit difference| ≤ [`TOL`]. The maximum
//! errors are printed (`cargo test --test it export -- --nocapture`).
//!
//! Then the whole path on a tiny trained run: `specwatch-train export --run` writes the model
//! and its card, the card loads, and its test accuracy is the one burn measures on the same
//! split; and a run folder without its config or weights is refused with a message naming it.

use std::path::Path;
use std::process::Command;

use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution as _, StandardNormal};
use serde_json::{Value, json};

use specwatch::dsp::normalize::Normalization;
use specwatch::dsp::repr::{ReprWorkspace, Representation};
use specwatch::infer::{ExecutionPreference, Model as Served, ModelCard, RuntimeOptions};
use specwatch::iq::C32;
use specwatch::iq::dataset::{DatasetSource, DatasetWriter, Manifest};
use specwatch::synth::recipe::Recipe;
use specwatch::synth::{RecipeOptions, window_rng};
use specwatch::train::data::{Batcher, PrepOptions, Split};
use specwatch::train::export::{ExportOptions, export, load_trained};
use specwatch::train::fit::{FitOptions, TrainConfig, fit};
use specwatch::train::models::{self, Model, ModelSpec};
use specwatch::train::objective::classify::hits;

use crate::common;

/// Largest accepted |burn − ONNX Runtime| logit difference.
const TOL: f32 = 1e-4;

const LEN: usize = 128;
const ROWS: usize = 2;
const CLASSES: usize = 11;

fn options() -> RuntimeOptions {
    RuntimeOptions {
        intra_threads: Some(1),
        execution: ExecutionPreference::Cpu,
        ..RuntimeOptions::default()
    }
}

/// `arch` at `width`, its weights drawn from `seed`, after two training-mode forward passes
/// (BatchNorm layers move their running statistics off 0 and 1), as a `.valid()` copy.
fn model_under_test(
    arch: &str,
    width: f64,
    depth: usize,
    amplitude_rows: bool,
    seed: u64,
) -> (ModelSpec, Model) {
    let spec = ModelSpec {
        num_classes: CLASSES,
        rows: ROWS,
        window_len: LEN,
        dropout: 0.3,
        width,
        representation: specwatch::dsp::repr::Representation::Iq,
        options: models::parse_arch_opts(&if arch == "resnet1d" {
            vec![
                format!("depth={depth}"),
                format!("amplitude_rows={amplitude_rows}"),
            ]
        } else {
            vec![]
        })
        .expect("options"),
    };
    let device = Device::flex().autodiff();
    device.seed(seed);
    let model = models::build(arch, &spec, &device).expect("build");
    for _ in 0..2 {
        let x = Tensor::<3>::random([8, ROWS, LEN], Distribution::Normal(0.5, 2.0), &device);
        let _ = model.forward(x);
    }
    (spec, model.valid())
}

/// Raw complex windows: `n` rml2016a windows from the generator (classes and SNRs spread), or
/// `n` windows of complex Gaussian noise with a different scale each.
fn windows(generated: bool, n: usize, seed: u64) -> Vec<C32> {
    if generated {
        let recipe = Recipe::by_name("rml2016a", &RecipeOptions::default(), seed).expect("recipe");
        (0..n)
            .flat_map(|i| {
                let class = (i * 7 + seed as usize) % recipe.classes.len();
                let snr = -10.0 + 6.0 * (i % 5) as f32;
                recipe
                    .generate(&mut window_rng(seed, i as u64), class, snr)
                    .iq
            })
            .collect()
    } else {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n * LEN)
            .map(|k| {
                let scale = 0.1 + (k / LEN) as f32;
                let re: f32 = StandardNormal.sample(&mut rng);
                let im: f32 = StandardNormal.sample(&mut rng);
                C32::new(re * scale, im * scale)
            })
            .collect()
    }
}

/// The model input for raw windows, through the daemon's preprocessing (unit-RMS, planar I/Q).
fn preprocess(raw: &[C32]) -> Vec<f32> {
    let mut ws = ReprWorkspace::new();
    let mut out = Vec::new();
    for w in raw.chunks_exact(LEN) {
        let mut w = w.to_vec();
        Normalization::UnitRms.apply(&mut w);
        Representation::Iq
            .write(&w, 1, &mut ws, &mut out)
            .expect("representation");
    }
    out
}

/// The SNRs (dB) fed with a batch of `batch` windows to an architecture that reads them: on
/// both sides of caic's τ = 0 dB (and on it), so both routes run in one batch.
fn snrs(batch: usize) -> Vec<f32> {
    (0..batch).map(|i| -10.0 + 5.0 * i as f32).collect()
}

fn burn_logits(model: &Model, x: &[f32], batch: usize) -> Vec<f32> {
    let input = Tensor::<3>::from_data(
        TensorData::new(x.to_vec(), [batch, ROWS, LEN]),
        &Device::flex(),
    );
    let snr = model
        .reads_snr()
        .then(|| Tensor::<1>::from_data(TensorData::new(snrs(batch), [batch]), &Device::flex()));
    model
        .forward_with_snr(input, snr)
        .into_data()
        .try_into_vec::<f32>()
        .expect("f32 logits")
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "output lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

const PY_CHECK_AND_RUN: &str = r#"
import sys, numpy as np, onnx, onnxruntime as ort
model_path, out_dir = sys.argv[1], sys.argv[2]
onnx.checker.check_model(onnx.load(model_path), full_check=True)
o = ort.SessionOptions(); o.intra_op_num_threads = 1; o.inter_op_num_threads = 1
s = ort.InferenceSession(model_path, o, providers=["CPUExecutionProvider"])
names = [i.name for i in s.get_inputs()]
assert names in (["iq"], ["iq", "snr_db"]), s.get_inputs()
assert [o.name for o in s.get_outputs()] == ["logits"], s.get_outputs()
for k, spec in enumerate(sys.argv[3:]):
    shape, path, snr_path = (spec.split(":") + [""])[:3]
    x = np.fromfile(path, dtype="<f4").reshape([int(d) for d in shape.split(",")])
    feed = {"iq": x}
    if "snr_db" in names:
        feed["snr_db"] = np.fromfile(snr_path, dtype="<f4").reshape([x.shape[0], 1])
    (y,) = s.run(None, feed)
    assert y.ndim == 2 and y.shape[0] == x.shape[0], y.shape
    np.asarray(y, dtype="<f4").tofile(f"{out_dir}/out_{k}.f32")
print("checked")
"#;

fn write_f32(path: &Path, data: &[f32]) {
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes).expect("write f32 file");
}

fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .expect("read f32 file")
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// A card for the parity graph: unit-RMS I/Q input `[N, 2, 128]`, 11 classes; with an
/// `snr_db` extra input when the architecture reads the SNR.
fn parity_card(name: &str, snr_input: bool) -> Value {
    let mut card = json!({
        "name": name,
        "version": "0.0.1",
        "task": "amc",
        "window_len": LEN,
        "channels": 1,
        "sample_rate_hz": 200000.0,
        "inputs": [{"name": "iq", "layout": ["N", ROWS, LEN], "dtype": "float32",
                    "representation": "iq", "normalization": "unit_rms"}],
        "outputs": [{"name": "logits", "kind": "logits"}],
        "classes": (0..CLASSES).map(|c| format!("c{c}")).collect::<Vec<_>>(),
        "dataset": {"name": "parity", "manifest_sha256": "0".repeat(64)},
    });
    if snr_input {
        card["extra_inputs"] = json!([
            {"name": "snr_db", "kind": "snr_db", "layout": ["N", 1], "dtype": "float32"}
        ]);
    }
    card
}

/// Exports `arch` and checks (a), (b), (c) (see the module documentation).
fn check_parity(arch: &str, width: f64, depth: usize, amplitude_rows: bool, seed: u64) {
    let Some(py) = common::onnx_python() else {
        return;
    };
    if !common::runtime_available() {
        return;
    }
    let (spec, model) = model_under_test(arch, width, depth, amplitude_rows, seed);
    if let Model::ResNet1d(m) = &model {
        // The export must carry the running statistics, so they must differ from the initial
        // mean 0 / variance 1 for the comparison to show it does.
        let mean: Vec<f32> = m
            .stem
            .bn
            .running_mean
            .value()
            .into_data()
            .try_to_vec()
            .expect("f32");
        let var: Vec<f32> = m
            .stem
            .bn
            .running_var
            .value()
            .into_data()
            .try_to_vec()
            .expect("f32");
        assert!(
            mean.iter().any(|&v| v.abs() > 1e-3),
            "running mean still 0: {mean:?}"
        );
        assert!(
            var.iter().any(|&v| (v - 1.0).abs() > 1e-3),
            "running var still 1: {var:?}"
        );
    }
    let dir = common::scratch();
    let onnx = dir.path().join(format!("{arch}.onnx"));
    model
        .to_onnx(&spec, arch)
        .expect("build the graph")
        .save(&onnx)
        .expect("save the graph");
    std::fs::write(
        dir.path().join(format!("{arch}.json")),
        serde_json::to_string_pretty(&parity_card(arch, model.reads_snr())).expect("card"),
    )
    .expect("write card");
    let mut served = Served::load(&onnx, &options()).expect("infer::Model loads the export");

    // Inputs: raw windows (random, generated) at batch 1 and 5, and an unnormalised random
    // tensor for the Python side.
    let mut cases: Vec<(String, Vec<C32>, usize)> = Vec::new();
    for (generated, kind) in [(false, "random"), (true, "rml2016a")] {
        for batch in [1, 5] {
            let raw = windows(generated, batch, seed + batch as u64);
            cases.push((format!("{kind} windows, batch {batch}"), raw, batch));
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let unnormalised: Vec<f32> = (0..3 * ROWS * LEN)
        .map(|_| {
            let v: f32 = StandardNormal.sample(&mut rng);
            3.0 * v
        })
        .collect();

    let mut args = vec![
        onnx.to_str().expect("utf-8").to_string(),
        dir.path().to_str().expect("utf-8").to_string(),
    ];
    let mut inputs: Vec<(String, Vec<f32>, usize)> = cases
        .iter()
        .map(|(what, raw, b)| (what.clone(), preprocess(raw), *b))
        .collect();
    inputs.push((
        "unnormalised random tensor, batch 3".into(),
        unnormalised,
        3,
    ));
    for (k, (_, x, b)) in inputs.iter().enumerate() {
        let path = dir.path().join(format!("in_{k}.f32"));
        write_f32(&path, x);
        let snr_path = dir.path().join(format!("snr_{k}.f32"));
        write_f32(&snr_path, &snrs(*b));
        args.push(format!(
            "{b},{ROWS},{LEN}:{}:{}",
            path.display(),
            snr_path.display()
        ));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let stdout = common::run_python(&py, PY_CHECK_AND_RUN, &args);
    assert!(stdout.contains("checked"), "{stdout}");

    let (mut worst_py, mut worst_ort) = (0.0f32, 0.0f32);
    for (k, (what, x, batch)) in inputs.iter().enumerate() {
        let want = burn_logits(&model, x, *batch);
        let got = read_f32(&dir.path().join(format!("out_{k}.f32")));
        let d = max_abs_diff(&got, &want);
        assert!(
            d <= TOL,
            "{arch}: onnxruntime (Python) vs burn on {what}: max |Δ| {d:e} > {TOL:e}"
        );
        worst_py = worst_py.max(d);
        if let Some((_, raw, _)) = cases.get(k) {
            let out = if model.reads_snr() {
                served.run_with_snr(raw, *batch, &snrs(*batch))
            } else {
                served.run(raw, *batch)
            }
            .expect("infer::Model runs");
            let got: Vec<f32> = (0..*batch).flat_map(|i| out.scores(i).to_vec()).collect();
            let d = max_abs_diff(&got, &want);
            assert!(
                d <= TOL,
                "{arch}: ort via infer::Model vs burn on {what}: max |Δ| {d:e} > {TOL:e}"
            );
            worst_ort = worst_ort.max(d);
        }
    }
    let bytes = std::fs::metadata(&onnx).map(|m| m.len()).unwrap_or(0);
    println!(
        "parity {arch} (width {width}, depth {depth}, amplitude rows {amplitude_rows}, {bytes} bytes): onnx.checker full check ok; max |Δ| \
         onnxruntime(Python) vs burn {worst_py:.2e}, ort(infer::Model) vs burn {worst_ort:.2e} \
         (tolerance {TOL:e})"
    );
}

/// Every architecture of the registry, at a small width: a new architecture is checked by
/// being registered, with nothing to add here.
#[test]
fn every_architecture_export_matches_burn() {
    for (k, arch) in models::ARCHITECTURES.iter().enumerate() {
        check_parity(arch, 0.1, 1, false, 11 + k as u64);
    }
}

#[test]
fn resnet1d_with_two_blocks_per_stage_export_matches_burn() {
    check_parity("resnet1d", 0.25, 2, false, 16);
}

#[test]
fn resnet1d_with_amplitude_rows_export_matches_burn() {
    check_parity("resnet1d", 0.25, 1, true, 17);
}

// ------------------------------------------------------------------ export --run end to end

const E2E_CLASSES: [&str; 3] = ["BPSK", "QPSK", "QAM16"];
const E2E_SNRS_DB: [f32; 2] = [6.0, 16.0];
const E2E_PER_CELL: usize = 40;

/// A 3-class, 2-SNR rml2016a-channel dataset laid out round-robin over class and SNR.
fn write_dataset(dir: &Path) -> Manifest {
    let recipe = Recipe::by_name("rml2016a", &RecipeOptions::default(), 5).expect("recipe");
    let class_idx: Vec<usize> = E2E_CLASSES
        .iter()
        .map(|c| recipe.classes.iter().position(|r| r == c).expect("class"))
        .collect();
    let total = E2E_CLASSES.len() * E2E_SNRS_DB.len() * E2E_PER_CELL;
    let mut w = DatasetWriter::create(dir, total, 1, recipe.window_len, E2E_CLASSES.len(), false)
        .expect("writer");
    for i in 0..total {
        let class = i % E2E_CLASSES.len();
        let snr = E2E_SNRS_DB[(i / E2E_CLASSES.len()) % E2E_SNRS_DB.len()];
        let win = recipe.generate(&mut window_rng(21, i as u64), class_idx[class], snr);
        w.push(&win.iq, class, win.snr_db, None).expect("push");
    }
    w.finish(Manifest {
        format: String::new(),
        source: DatasetSource::Synth {
            recipe: "rml2016a (BPSK, QPSK, QAM16 subset)".into(),
            params: json!({ "snr_db": E2E_SNRS_DB, "per_cell": E2E_PER_CELL }),
        },
        seed: Some(21),
        generator_version: "tests/it/export.rs".into(),
        classes: E2E_CLASSES.iter().map(|c| c.to_string()).collect(),
        window_len: recipe.window_len,
        channels: 1,
        sample_rate_hz: Some(recipe.sample_rate_hz),
        snr_grid_db: E2E_SNRS_DB.to_vec(),
        snr_definition: recipe.snr_definition(),
        count: 0,
        counts_per_class: Default::default(),
        has_angles: false,
        array: None,
        notes: vec![],
    })
    .expect("finish")
}

#[test]
fn export_run_writes_a_card_whose_test_accuracy_is_burns() {
    if common::onnx_python().is_none() || !common::runtime_available() {
        return;
    }
    let tmp = common::scratch();
    let data = tmp.path().join("three-class");
    let manifest = write_dataset(&data);
    let run = tmp.path().join("run");
    let mut config = TrainConfig::new("vtcnn2", &data);
    config.epochs = 2;
    config.batch_size = 32;
    config.lr = 3e-3;
    config.width = 0.1;
    config.dropout = 0.2;
    config.seed = 4;
    fit(&config, &run, FitOptions::default(), &mut |_| {}).expect("train");

    let out = tmp.path().join("models").join("tiny-amc");
    let res = Command::new(common::bin("specwatch-train"))
        .args(["export", "--run", run.to_str().expect("utf-8")])
        .args(["--out", out.to_str().expect("utf-8"), "--version", "1.2.3"])
        .output()
        .expect("run specwatch-train");
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(
        res.status.success(),
        "export failed: {}\n{stdout}",
        String::from_utf8_lossy(&res.stderr)
    );
    println!("{stdout}");
    let card_path = tmp.path().join("models/tiny-amc.json");
    assert!(tmp.path().join("models/tiny-amc.onnx").is_file());
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path().join("models"))
        .expect("list models")
        .map(|e| e.expect("entry").file_name())
        .filter(|n| n.to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "staging files left: {leftovers:?}");

    let card = ModelCard::load(&card_path).expect("the card loads");
    assert_eq!(
        (card.name.as_str(), card.version.as_str()),
        ("tiny-amc", "1.2.3")
    );
    assert_eq!(card.classes, manifest.classes);
    assert_eq!((card.window_len, card.channels), (128, 1));
    assert_eq!(Some(card.sample_rate_hz), manifest.sample_rate_hz);
    assert_eq!(
        card.dataset.manifest_sha256,
        Manifest::digest_of_file(&data).expect("digest")
    );
    assert_eq!(card.dataset.name, "three-class");
    let input = &card.inputs[0];
    assert_eq!(input.normalization, config.prep.normalization);
    assert_eq!(input.representation, config.prep.representation);
    assert_eq!(card.training["arch"], "vtcnn2");
    assert_eq!(card.training["epochs_run"], 2);
    assert_eq!(card.training["batch_size"], 32);
    assert_eq!(card.training["seed"], 4);
    let command = card.training["command"].as_str().expect("command");
    assert!(
        command.contains("--arch vtcnn2") && command.contains("--width 0.1"),
        "{command}"
    );
    assert!(
        card.training["export_command"]
            .as_str()
            .is_some_and(|c| c.contains("export") && c.contains("--version 1.2.3")),
        "{:?}",
        card.training
    );
    Served::load(&card_path, &options()).expect("the daemon's loader accepts it");

    // The card's test accuracy is what burn measures on the same windows.
    let split = Split::load(&run.join("split.json")).expect("split");
    let m = &card.metrics;
    assert_eq!(m["windows"], split.test.len());
    let mut batcher = Batcher::open(&data, PrepOptions::default()).expect("open the dataset");
    let (_, model) = load_trained(&run).expect("load the run");
    let mut correct = 0;
    for chunk in split.test.chunks(64) {
        let batch = batcher.batch(chunk, &Device::flex()).expect("batch");
        correct += hits(model.forward(batch.inputs), batch.targets);
    }
    let burn_acc = correct as f64 / split.test.len() as f64;
    let card_acc = m["accuracy"].as_f64().expect("accuracy");
    assert!(
        (card_acc - burn_acc).abs() <= 1.0 / split.test.len() as f64 + 1e-12,
        "card accuracy {card_acc} vs burn {burn_acc}"
    );
    let by_snr = m["accuracy_by_snr_db"].as_object().expect("per SNR");
    let counts = m["windows_by_snr_db"].as_object().expect("counts per SNR");
    assert_eq!(by_snr.keys().collect::<Vec<_>>(), vec!["16", "6"]);
    let total: u64 = counts.values().map(|v| v.as_u64().expect("count")).sum();
    assert_eq!(total as usize, split.test.len());
    assert!(m["burn_onnx_max_abs_logit_diff"].as_f64().expect("parity") <= 1e-4);
}

#[test]
fn export_refuses_a_run_folder_without_config_or_weights() {
    let tmp = common::scratch();
    let run = tmp.path().join("empty-run");
    std::fs::create_dir_all(&run).expect("mkdir");
    let out = Command::new(common::bin("specwatch-train"))
        .args(["export", "--run", run.to_str().expect("utf-8")])
        .args(["--out", tmp.path().join("m/x").to_str().expect("utf-8")])
        .output()
        .expect("run specwatch-train");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(run.to_str().expect("utf-8")) && err.contains("has no config.json"),
        "{err}"
    );

    std::fs::write(run.join("config.json"), "{}").expect("write config");
    let e = export(&ExportOptions::new(&run, &tmp.path().join("m/x")))
        .expect_err("no weights")
        .to_string();
    assert!(e.contains("has no best.bpk"), "{e}");
    assert!(!tmp.path().join("m/x.onnx").exists());
}
