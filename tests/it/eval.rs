//! `specwatch-train eval`: a fixture model whose decision is a known function of its input, on a
//! fixture dataset whose answer per window is computed here, independently of ONNX Runtime and
//! of the evaluation code.
//!
//! The model (written with `onnx::GraphBuilder`) reads the in-phase row of its `iq` input and
//! answers `argmax_j I[j]` over its classes: class `j` wins when sample `j` has the largest real
//! part. The card normalises by unit RMS, a positive scale that cannot change an argmax. Each
//! dataset window of class `name` carries a real pulse at sample `position(name)` on top of
//! seeded Gaussian noise, stronger at higher SNR, so accuracy rises with SNR and the confusion
//! matrix is far from diagonal at the lowest SNR. The test predicts every window by the same
//! argmax on the samples it wrote and compares counts exactly.
//!
//! Angle outputs are checked on a small `aoa4` set made by `specwatch-train gen` with models
//! whose angle outputs are constants (`Gemm` with zero weights and the angle as bias): the error
//! of every window is then `constant − true angle` (azimuth wrapped), computed here from
//! `angles.npy`, so the MAE overall, per SNR and per class is known exactly. MUSIC and the
//! Cramér–Rao bound are checked by their behaviour (a few degrees at the highest SNR on the 2×2
//! array; a bound that falls as the SNR rises).

use std::path::{Path, PathBuf};
use std::process::Command;

use rand::SeedableRng;
use rand::distr::{Distribution, Uniform};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde_json::{Value, json};
use specwatch::infer::{ExecutionPreference, RuntimeOptions};
use specwatch::iq::C32;
use specwatch::iq::dataset::{Dataset, DatasetSource, DatasetWriter, Manifest};
use specwatch::onnx::ops::{self, LinearWeights};
use specwatch::onnx::{Dim, GraphBuilder, Weights};
use specwatch::train::eval::{EvalOptions, Evaluation, evaluate, write_report};
use specwatch::train::plot::{ACCURACY_SIZE, LINE_SIZE, confusion_size};

use crate::common;

/// Samples per window.
const LEN: usize = 16;
/// Where each class puts its pulse (the model's class `j` looks at sample `j`).
const POSITIONS: [(&str, usize); 4] = [("A", 0), ("B", 1), ("C", 2), ("D", 3)];
/// The model's classes, in its output order.
const MODEL_CLASSES: [&str; 3] = ["A", "B", "C"];
/// The dataset's SNR grid and the pulse amplitude at each point (noise has unit variance per
/// real component).
const GRID: [(f32, f32); 3] = [(-10.0, 0.4), (0.0, 1.5), (10.0, 4.0)];
/// Windows per class and SNR.
const PER_CELL: usize = 40;
/// Accuracies are ratios of small integer counts; compare them to 1e-12.
const TOL: f64 = 1e-12;

fn position(name: &str) -> usize {
    POSITIONS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, p)| *p)
        .expect("a fixture class")
}

/// One fixture window: its class name, true SNR, grid point and samples.
struct Window {
    class: &'static str,
    snr_db: f32,
    grid_db: f32,
    iq: Vec<C32>,
}

/// Windows round-robin over `classes` and the grid, `PER_CELL` each; the true SNR is the grid
/// value ± up to 0.9 dB, so bucketing to the grid is exercised.
fn make_windows(classes: &[&'static str], seed: u64) -> Vec<Window> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let jitter = Uniform::new(-0.9f32, 0.9).expect("valid range");
    let total = classes.len() * GRID.len() * PER_CELL;
    (0..total)
        .map(|i| {
            let class = classes[i % classes.len()];
            let (grid_db, amplitude) = GRID[(i / classes.len()) % GRID.len()];
            let mut iq: Vec<C32> = (0..LEN)
                .map(|_| {
                    C32::new(
                        StandardNormal.sample(&mut rng),
                        StandardNormal.sample(&mut rng),
                    )
                })
                .collect();
            iq[position(class)].re += amplitude;
            Window {
                class,
                snr_db: grid_db + jitter.sample(&mut rng),
                grid_db,
                iq,
            }
        })
        .collect()
}

/// What the fixture model answers for a window: the model class with the largest I sample.
fn predicted(w: &Window) -> usize {
    (0..MODEL_CLASSES.len())
        .max_by(|a, b| w.iq[*a].re.total_cmp(&w.iq[*b].re))
        .expect("classes")
}

/// Writes `windows` as a dataset whose class list is `classes` (any order, any subset names).
fn write_dataset(dir: &Path, classes: &[&str], windows: &[Window], channels: usize) {
    let mut writer = DatasetWriter::create(dir, windows.len(), channels, LEN, classes.len(), false)
        .expect("create dataset");
    for w in windows {
        let label = classes
            .iter()
            .position(|c| *c == w.class)
            .expect("class listed");
        // Extra channels repeat the first one.
        let iq: Vec<C32> = (0..channels).flat_map(|_| w.iq.iter().copied()).collect();
        writer
            .push(&iq, label, w.snr_db, None)
            .expect("push window");
    }
    writer
        .finish(Manifest {
            format: String::new(),
            source: DatasetSource::Synth {
                recipe: "eval fixture".into(),
                params: json!({ "per_cell": PER_CELL }),
            },
            seed: Some(1),
            generator_version: "tests/it/eval.rs".into(),
            classes: classes.iter().map(|c| c.to_string()).collect(),
            window_len: LEN,
            channels,
            sample_rate_hz: Some(1e6),
            snr_grid_db: GRID.iter().map(|g| g.0).collect(),
            snr_definition: "grid value plus up to ±0.9 dB".into(),
            count: 0,
            counts_per_class: Default::default(),
            has_angles: false,
            array: None,
            notes: vec![],
        })
        .expect("finish dataset");
}

/// The fixture model's card: `iq [N, 2, LEN]`, unit-RMS, logits over `classes`.
fn card(name: &str, classes: &[&str]) -> Value {
    json!({
        "name": name,
        "version": "1.0.0",
        "task": "amc",
        "window_len": LEN,
        "channels": 1,
        "sample_rate_hz": 1e6,
        "inputs": [{"name": "iq", "layout": ["N", 2, LEN], "dtype": "float32",
                    "representation": "iq", "normalization": "unit_rms"}],
        "outputs": [{"name": "logits", "kind": "logits"}],
        "classes": classes,
        "dataset": {"name": "eval fixture", "manifest_sha256": "0f".repeat(32)},
        "metrics": {},
        "training": {"command": "tests/it/eval.rs (weights set by hand)"}
    })
}

/// Writes the argmax model as `dir/NAME.onnx` (with `outputs` logits, selecting sample `j` of
/// the I row for logit `j`) and its card `dir/NAME.json`; returns the card path.
fn write_model(dir: &Path, name: &str, outputs: usize, card_json: &Value) -> PathBuf {
    let mut g = GraphBuilder::new(name);
    let x = g
        .input("iq", &[Dim::batch(), Dim::from(2), Dim::from(LEN)])
        .expect("input");
    let flat = ops::flatten(&mut g, &x, 1).expect("flatten"); // [N, 2·LEN]
    let mut select = vec![0.0f32; 2 * LEN * outputs];
    for j in 0..outputs {
        select[j * outputs + j] = 1.0; // row j (I sample j) → column j
    }
    let w = LinearWeights::burn(Weights::new(select, [2 * LEN, outputs]), None);
    let y = ops::gemm(&mut g, "select", &flat, &w).expect("gemm"); // [N, outputs]
    g.node("Identity", &[&y], &["logits"], vec![])
        .expect("identity");
    g.output("logits", &[Dim::batch(), Dim::from(outputs)])
        .expect("output");
    g.save(dir.join(format!("{name}.onnx")))
        .expect("save model");
    let path = dir.join(format!("{name}.json"));
    std::fs::write(
        &path,
        serde_json::to_string_pretty(card_json).expect("card"),
    )
    .expect("write card");
    path
}

fn options(batch: usize) -> EvalOptions {
    EvalOptions {
        batch,
        runtime: RuntimeOptions {
            intra_threads: Some(1),
            execution: ExecutionPreference::Cpu,
            ..RuntimeOptions::default()
        },
        ..EvalOptions::default()
    }
}

/// The figures expected from the decision rule, over windows of model classes.
struct Expected {
    confusion: Vec<Vec<u64>>,
    /// grid value → (windows, correct)
    by_snr: Vec<(f32, u64, u64)>,
    /// dataset classes the model lacks → predicted counts per model class
    unsupported: Vec<(&'static str, Vec<u64>)>,
}

fn expected(windows: &[Window]) -> Expected {
    let k = MODEL_CLASSES.len();
    let mut confusion = vec![vec![0u64; k]; k];
    let mut by_snr: Vec<(f32, u64, u64)> = GRID.iter().map(|g| (g.0, 0, 0)).collect();
    let mut unsupported: Vec<(&'static str, Vec<u64>)> = Vec::new();
    for w in windows {
        let p = predicted(w);
        match MODEL_CLASSES.iter().position(|c| *c == w.class) {
            Some(t) => {
                confusion[t][p] += 1;
                let b = by_snr
                    .iter_mut()
                    .find(|b| b.0 == w.grid_db)
                    .expect("grid point");
                b.1 += 1;
                b.2 += u64::from(t == p);
            }
            None => match unsupported.iter_mut().find(|u| u.0 == w.class) {
                Some(u) => u.1[p] += 1,
                None => {
                    let mut counts = vec![0; k];
                    counts[p] = 1;
                    unsupported.push((w.class, counts));
                }
            },
        }
    }
    Expected {
        confusion,
        by_snr,
        unsupported,
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= TOL
}

/// Checks an evaluation's counts and accuracies against the decision rule.
fn check_against_rule(e: &Evaluation, x: &Expected) {
    assert_eq!(e.classes, MODEL_CLASSES);
    assert_eq!(e.confusion, x.confusion, "confusion matrix");
    let windows: u64 = x.confusion.iter().flatten().sum();
    let correct: u64 = (0..MODEL_CLASSES.len()).map(|k| x.confusion[k][k]).sum();
    assert_eq!(e.windows(), windows);
    assert!(close(e.accuracy(), correct as f64 / windows as f64));
    let json = serde_json::to_value(e.to_json()).expect("json");
    let mut mean = 0.0;
    for (grid, n, c) in &x.by_snr {
        let key = format!("{}", *grid as i64);
        let acc = *c as f64 / *n as f64;
        mean += acc / x.by_snr.len() as f64;
        assert!(
            close(json["by_snr"][&key].as_f64().expect("bucket"), acc),
            "bucket {key}: {} vs {acc}",
            json["by_snr"][&key]
        );
        assert_eq!(json["windows_by_snr"][&key], json!(n));
    }
    assert!(close(e.mean_snr_accuracy(), mean));
    assert!(close(
        json["mean_snr_accuracy"].as_f64().expect("mean"),
        mean
    ));
    for (k, class) in MODEL_CLASSES.iter().enumerate() {
        let n: u64 = x.confusion[k].iter().sum();
        let acc = x.confusion[k][k] as f64 / n as f64;
        assert!(
            close(json["per_class"][class].as_f64().expect("class"), acc),
            "{class}"
        );
    }
    // Accuracy rises with SNR (the fixture is built that way; guards against a swapped grid).
    let by: Vec<f64> = x.by_snr.iter().map(|b| b.2 as f64 / b.1 as f64).collect();
    assert!(by[0] < by[1] && by[1] < by[2], "{by:?}");
}

#[test]
fn accuracy_per_snr_per_class_and_confusion_follow_the_known_decision_rule() {
    if !common::runtime_available() {
        return;
    }
    let tmp = common::scratch();
    let windows = make_windows(&["A", "B", "C"], 3);
    let data = tmp.path().join("data");
    write_dataset(&data, &["A", "B", "C"], &windows, 1);
    let model = write_model(tmp.path(), "argmax", 3, &card("argmax", &MODEL_CLASSES));
    let mut calls = Vec::new();
    // 360 windows in batches of 32: the last batch is short.
    let e = evaluate(&model, &data, &options(32), &mut |done, total| {
        calls.push((done, total))
    })
    .expect("evaluates");
    let x = expected(&windows);
    check_against_rule(&e, &x);
    assert_eq!(e.windows_read, 360);
    assert!(e.unsupported.is_empty());
    assert_eq!(calls.len(), 360usize.div_ceil(32));
    assert_eq!(calls.last(), Some(&(360, 360)));
    // The text table carries the same headline figure.
    let table = e.text_table();
    assert!(
        table.contains(&format!("accuracy {:.2} % overall", 100.0 * e.accuracy())),
        "{table}"
    );
}

#[test]
fn class_order_of_the_dataset_does_not_change_the_results() {
    if !common::runtime_available() {
        return;
    }
    let tmp = common::scratch();
    let windows = make_windows(&["A", "B", "C"], 5);
    let (straight, permuted) = (tmp.path().join("abc"), tmp.path().join("cab"));
    write_dataset(&straight, &["A", "B", "C"], &windows, 1);
    write_dataset(&permuted, &["C", "A", "B"], &windows, 1);
    let model = write_model(tmp.path(), "argmax", 3, &card("argmax", &MODEL_CLASSES));
    let a = evaluate(&model, &straight, &options(64), &mut |_, _| {}).expect("abc");
    let b = evaluate(&model, &permuted, &options(64), &mut |_, _| {}).expect("cab");
    check_against_rule(&b, &expected(&windows));
    assert_eq!(a.confusion, b.confusion);
    assert_eq!(a.per_class(), b.per_class());
    assert_eq!(a.buckets, b.buckets);
}

#[test]
fn class_the_model_lacks_is_reported_and_left_out_of_the_accuracy() {
    if !common::runtime_available() {
        return;
    }
    let tmp = common::scratch();
    let windows = make_windows(&["A", "B", "C", "D"], 9);
    let data = tmp.path().join("data");
    write_dataset(&data, &["D", "A", "B", "C"], &windows, 1);
    let model = write_model(tmp.path(), "argmax", 3, &card("argmax", &MODEL_CLASSES));
    let e = evaluate(&model, &data, &options(50), &mut |_, _| {}).expect("evaluates");
    let x = expected(&windows);
    check_against_rule(&e, &x);
    assert_eq!(e.windows_read, windows.len() as u64);
    assert_eq!(e.windows(), (windows.len() - GRID.len() * PER_CELL) as u64);
    assert_eq!(e.unsupported.len(), 1);
    let d = &e.unsupported[0];
    assert_eq!(d.name, "D");
    assert_eq!(d.windows, (GRID.len() * PER_CELL) as u64);
    let (_, counts) = &x.unsupported[0];
    for (name, n) in &d.predicted {
        let j = MODEL_CLASSES
            .iter()
            .position(|c| c == name)
            .expect("a model class");
        assert_eq!(*n, counts[j], "D called {name}");
    }
    assert_eq!(
        d.predicted.iter().map(|p| p.1).sum::<u64>(),
        counts.iter().sum::<u64>()
    );
    let json = serde_json::to_value(e.to_json()).expect("json");
    assert_eq!(
        json["unsupported_classes"]["D"]["windows"],
        json!(GRID.len() * PER_CELL)
    );
    assert!(json["per_class"].get("D").is_none());
    let table = e.text_table();
    assert!(
        table.contains(&format!("D: {} windows, called", GRID.len() * PER_CELL)),
        "{table}"
    );
}

#[test]
fn evaluating_on_the_training_dataset_is_flagged() {
    if !common::runtime_available() {
        return;
    }
    let tmp = common::scratch();
    let data = tmp.path().join("data");
    write_dataset(
        &data,
        &["A", "B", "C"],
        &make_windows(&["A", "B", "C"], 2),
        1,
    );
    let mut c = card("argmax", &MODEL_CLASSES);
    let digest = Manifest::digest_of_file(&data).expect("digest");
    c["dataset"]["manifest_sha256"] = json!(digest.to_uppercase());
    let model = write_model(tmp.path(), "argmax", 3, &c);
    let e = evaluate(&model, &data, &options(64), &mut |_, _| {}).expect("evaluates");
    assert_eq!(e.warnings.len(), 1, "{:?}", e.warnings);
    assert!(
        e.warnings[0].contains("trained on this very dataset"),
        "{:?}",
        e.warnings
    );
    assert!(
        e.markdown("cmd")
            .contains("> **Note:** the model's card says it was trained")
    );
}

#[test]
fn max_windows_takes_a_subset_spread_over_the_dataset() {
    if !common::runtime_available() {
        return;
    }
    let tmp = common::scratch();
    let windows = make_windows(&["A", "B", "C"], 4);
    let data = tmp.path().join("data");
    write_dataset(&data, &["A", "B", "C"], &windows, 1);
    let model = write_model(tmp.path(), "argmax", 3, &card("argmax", &MODEL_CLASSES));
    let opts = EvalOptions {
        max_windows: Some(90),
        ..options(16)
    };
    let e = evaluate(&model, &data, &opts, &mut |_, _| {}).expect("evaluates");
    assert_eq!(e.windows_read, 90);
    assert_eq!(e.windows(), 90);
    assert_eq!(e.per_class().len(), 3, "every class is in the subset");
    assert_eq!(e.buckets.len(), GRID.len(), "every SNR is in the subset");
}

#[test]
fn cli_prints_one_json_object_and_writes_the_report_folder() {
    if !common::runtime_available() {
        return;
    }
    let tmp = common::scratch();
    let windows = make_windows(&["A", "B", "C", "D"], 3);
    let data = tmp.path().join("data");
    write_dataset(&data, &["A", "B", "C", "D"], &windows, 1);
    let model = write_model(tmp.path(), "argmax", 3, &card("argmax", &MODEL_CLASSES));
    let report = tmp.path().join("report");
    let out = Command::new(common::bin("specwatch-train"))
        .args(["eval", "--model"])
        .arg(&model)
        .arg("--data")
        .arg(&data)
        .arg("--report")
        .arg(&report)
        .args([
            "--json",
            "--batch",
            "40",
            "--provider",
            "cpu",
            "--threads",
            "1",
            "--quiet",
        ])
        .output()
        .expect("run specwatch-train");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    // Exactly one JSON value, and it is an object.
    let json: Value = serde_json::from_str(&stdout).expect("stdout is one JSON document");
    assert!(json.is_object(), "{stdout}");
    let x = expected(&windows);
    let classes: Vec<&str> = json["classes"]
        .as_array()
        .expect("classes")
        .iter()
        .map(|c| c.as_str().expect("name"))
        .collect();
    assert_eq!(classes, MODEL_CLASSES);
    let confusion: Vec<Vec<u64>> =
        serde_json::from_value(json["confusion"].clone()).expect("confusion");
    assert_eq!(confusion, x.confusion);
    let by_snr_keys: Vec<&String> = json["by_snr"].as_object().expect("by_snr").keys().collect();
    assert_eq!(by_snr_keys.len(), 3);
    for key in ["-10", "0", "10"] {
        assert!(json["by_snr"][key].is_f64(), "by_snr lacks {key}: {stdout}");
    }
    for key in [
        "accuracy",
        "mean_snr_accuracy",
        "per_class",
        "windows",
        "windows_per_s",
        "unsupported_classes",
        "model",
        "dataset",
    ] {
        assert!(json.get(key).is_some(), "no '{key}' in {stdout}");
    }
    // Exactly the keys a classifier's document has always had: no "aoa".
    let mut keys: Vec<&str> = json
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "accuracy",
            "by_snr",
            "classes",
            "classes_without_windows",
            "confusion",
            "dataset",
            "mean_snr_accuracy",
            "model",
            "per_class",
            "per_class_by_snr",
            "seconds",
            "unsupported_classes",
            "warnings",
            "windows",
            "windows_by_snr",
            "windows_per_class",
            "windows_per_s",
            "windows_read",
        ]
    );
    assert_eq!(json["model"]["name"], json!("argmax"));
    assert_eq!(
        json["dataset"]["manifest_sha256"],
        json!(Manifest::digest_of_file(&data).expect("digest"))
    );
    assert_eq!(
        json["unsupported_classes"]["D"]["windows"],
        json!(GRID.len() * PER_CELL)
    );

    // The report folder: the same JSON, the Markdown and two PNGs of the documented sizes.
    let saved: Value = serde_json::from_str(
        &std::fs::read_to_string(report.join("eval.json")).expect("eval.json"),
    )
    .expect("eval.json parses");
    assert_eq!(saved["confusion"], json["confusion"]);
    assert_eq!(saved["by_snr"], json["by_snr"]);
    let (w, h) = png_size(&report.join("accuracy_vs_snr.png"));
    assert_eq!((w, h), (ACCURACY_SIZE.0 as u32, ACCURACY_SIZE.1 as u32));
    assert_eq!((w, h), (1280, 720));
    let (w, h) = png_size(&report.join("confusion.png"));
    assert_eq!((w as usize, h as usize), confusion_size(3));
    assert_eq!((w, h), (760, 502));
    assert!(
        !report.join("mae_vs_snr.png").exists(),
        "no angle chart for a classifier"
    );
    let md = std::fs::read_to_string(report.join("report.md")).expect("report.md");
    assert!(!md.contains("Angle of arrival"), "{md}");
    for needle in [
        "# Evaluation of argmax 1.0.0",
        "![accuracy against SNR](accuracy_vs_snr.png)",
        "![confusion matrix](confusion.png)",
        "| SNR (dB) | windows | accuracy |",
        "| class | windows | accuracy |",
        "| true \\ predicted | A | B | C |",
        "### Classes the model lacks",
        "specwatch-train eval --model ",
        "--json --batch 40 --provider cpu",
    ] {
        assert!(md.contains(needle), "report.md lacks {needle:?}:\n{md}");
    }
    let accuracy = json["accuracy"].as_f64().expect("accuracy");
    assert!(
        md.contains(&format!("**{:.2} %** overall", 100.0 * accuracy)),
        "{md}"
    );
}

/// Decodes a PNG completely and returns its width and height.
fn png_size(path: &Path) -> (u32, u32) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let decoder = png::Decoder::new(std::io::BufReader::new(file));
    let mut reader = decoder.read_info().expect("PNG header");
    let mut buf = vec![0; reader.output_buffer_size().expect("buffer size")];
    let info = reader.next_frame(&mut buf).expect("PNG image data");
    assert!(
        buf[..info.buffer_size()].iter().any(|b| *b != 255),
        "{} is blank",
        path.display()
    );
    (info.width, info.height)
}

/// Runs the CLI and returns its stderr, asserting it failed.
fn cli_error(args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(common::bin("specwatch-train"))
        .arg("eval")
        .args(args)
        .args(["--provider", "cpu", "--threads", "1", "--quiet"])
        .output()
        .expect("run specwatch-train");
    assert!(!out.status.success(), "should fail");
    assert!(out.stdout.is_empty(), "nothing on stdout when failing");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn dataset_without_manifest_is_refused() {
    // The dataset is opened before any model: no runtime needed.
    let tmp = common::scratch();
    let data = tmp.path().join("half-written");
    std::fs::create_dir_all(&data).expect("mkdir");
    let err = evaluate(
        &tmp.path().join("m.json"),
        &data,
        &options(8),
        &mut |_, _| {},
    )
    .expect_err("no manifest")
    .to_string();
    assert!(
        err.contains(&format!("{}: no manifest.json", data.display())),
        "{err}"
    );
}

#[test]
fn dataset_without_a_common_class_is_refused() {
    if !common::runtime_available() {
        return;
    }
    let tmp = common::scratch();
    let data = tmp.path().join("data");
    let windows = make_windows(&["D"], 1);
    write_dataset(&data, &["D"], &windows, 1);
    let model = write_model(tmp.path(), "argmax", 3, &card("argmax", &MODEL_CLASSES));
    let err = cli_error(&[
        "--model".as_ref(),
        model.as_os_str(),
        "--data".as_ref(),
        data.as_os_str(),
    ]);
    assert!(
        err.contains(&format!(
            "no class of dataset {} (D) is a class of model 'argmax' (A, B, C); classes are \
             matched by name",
            data.display()
        )),
        "{err}"
    );
}

#[test]
fn corrupt_onnx_file_is_refused_naming_it() {
    if !common::runtime_available() {
        return;
    }
    let tmp = common::scratch();
    let data = tmp.path().join("data");
    write_dataset(
        &data,
        &["A", "B", "C"],
        &make_windows(&["A", "B", "C"], 1),
        1,
    );
    let model = write_model(tmp.path(), "argmax", 3, &card("argmax", &MODEL_CLASSES));
    let onnx = tmp.path().join("argmax.onnx");
    std::fs::write(&onnx, b"\x08\x07 not a protobuf model").expect("corrupt the model");
    let err = evaluate(&model, &data, &options(8), &mut |_, _| {})
        .expect_err("corrupt model")
        .to_string();
    assert!(
        err.starts_with(&format!(
            "model {}: ONNX Runtime cannot load it",
            onnx.display()
        )),
        "{err}"
    );
}

#[test]
fn card_that_disagrees_with_its_graph_is_refused() {
    if !common::runtime_available() {
        return;
    }
    let tmp = common::scratch();
    let data = tmp.path().join("data");
    write_dataset(
        &data,
        &["A", "B", "C"],
        &make_windows(&["A", "B", "C"], 1),
        1,
    );
    // The graph gives 3 logits; the card names 4 classes.
    let model = write_model(
        tmp.path(),
        "argmax",
        3,
        &card("argmax", &["A", "B", "C", "D"]),
    );
    let err = evaluate(&model, &data, &options(8), &mut |_, _| {})
        .expect_err("disagreeing card")
        .to_string();
    assert!(
        err.starts_with(&format!("model card {}:", model.display())),
        "{err}"
    );
    assert!(
        err.contains(
            "output 'logits' (Logits) is 4 classes in the card, so [N,4] but the ONNX graph \
             gives [N,3]"
        ),
        "{err}"
    );
}

#[test]
fn window_length_or_channel_mismatch_is_refused_naming_both() {
    if !common::runtime_available() {
        return;
    }
    let tmp = common::scratch();
    let model = write_model(tmp.path(), "argmax", 3, &card("argmax", &MODEL_CLASSES));

    // Two channels of LEN samples against a one-channel model.
    let two = tmp.path().join("two-channels");
    write_dataset(
        &two,
        &["A", "B", "C"],
        &make_windows(&["A", "B", "C"], 1),
        2,
    );
    let err = evaluate(&model, &two, &options(8), &mut |_, _| {})
        .expect_err("channels differ")
        .to_string();
    assert_eq!(
        err,
        format!(
            "dataset {} holds windows of 2 channel(s) × {LEN} samples but model 'argmax' ({}) \
             takes 1 channel(s) × {LEN} samples",
            two.display(),
            model.display()
        )
    );

    // LEN samples against a model made for 2·LEN.
    let mut long_card = card("long", &MODEL_CLASSES);
    long_card["window_len"] = json!(2 * LEN);
    long_card["inputs"][0]["layout"] = json!(["N", 2, 2 * LEN]);
    let long_model = tmp.path().join("long.json");
    std::fs::write(&long_model, long_card.to_string()).expect("card");
    let mut g = GraphBuilder::new("long");
    let x = g
        .input("iq", &[Dim::batch(), Dim::from(2), Dim::from(2 * LEN)])
        .expect("input");
    let flat = ops::flatten(&mut g, &x, 1).expect("flatten");
    let w = LinearWeights::burn(Weights::new(vec![0.0; 4 * LEN * 3], [4 * LEN, 3]), None);
    let y = ops::gemm(&mut g, "select", &flat, &w).expect("gemm");
    g.node("Identity", &[&y], &["logits"], vec![])
        .expect("identity");
    g.output("logits", &[Dim::batch(), Dim::from(3)])
        .expect("output");
    g.save(tmp.path().join("long.onnx")).expect("save");
    let one = tmp.path().join("one-channel");
    write_dataset(
        &one,
        &["A", "B", "C"],
        &make_windows(&["A", "B", "C"], 1),
        1,
    );
    let err = cli_error(&[
        "--model".as_ref(),
        long_model.as_os_str(),
        "--data".as_ref(),
        one.as_os_str(),
    ]);
    assert!(
        err.contains(&format!(
            "dataset {} holds windows of 1 channel(s) × {LEN} samples but model 'long' ({}) \
             takes 1 channel(s) × {} samples",
            one.display(),
            long_model.display(),
            2 * LEN
        )),
        "{err}"
    );
}

#[test]
fn bad_options_are_named() {
    let tmp = common::scratch();
    let err = cli_error(&[
        "--model".as_ref(),
        tmp.path().join("m.json").as_os_str(),
        "--data".as_ref(),
        tmp.path().as_os_str(),
        "--batch".as_ref(),
        "0".as_ref(),
    ]);
    assert!(
        err.contains("'batch' is 0; expected at least 1 window per batch"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Angle outputs
// ---------------------------------------------------------------------------------------------

/// The constant azimuth and elevation the angle fixtures answer, degrees.
const AZIMUTH: f32 = 10.0;
const ELEVATION: f32 = -5.0;
/// The aoa4 set's SNR grid (`--snr -10:20:15`).
const AOA_GRID: [f64; 3] = [-10.0, 5.0, 20.0];

/// Generates a small aoa4 set (6 classes × 3 SNRs × 3 windows of 4 × 1024) through the CLI.
fn gen_aoa4(dir: &Path) -> Dataset {
    let out = Command::new(common::bin("specwatch-train"))
        .args(["gen", "--recipe", "aoa4", "--out"])
        .arg(dir)
        .args([
            "--per-class-snr",
            "3",
            "--snr",
            "-10:20:15",
            "--seed",
            "7",
            "--threads",
            "1",
            "--quiet",
        ])
        .output()
        .expect("run specwatch-train gen");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Dataset::open(dir).expect("open the aoa4 set")
}

/// What the constant-output model's outputs are.
struct AngleModel<'a> {
    name: &'a str,
    task: &'a str,
    channels: usize,
    len: usize,
    sample_rate_hz: f64,
    /// Class names, and the class every window is given (its logit bias is 1, the others 0).
    classes: Option<(&'a [String], usize)>,
    azimuth: Option<f32>,
    elevation: Option<f32>,
}

/// Writes the model as `dir/NAME.onnx` + card: every output is `Gemm` of the flattened input
/// with zero weights plus a bias, so logits and angles are constants. Returns the card path.
fn write_angle_model(dir: &Path, m: &AngleModel) -> PathBuf {
    let rows = 2 * m.channels;
    let inputs = rows * m.len;
    let mut g = GraphBuilder::new(m.name);
    let x = g
        .input("iq", &[Dim::batch(), Dim::from(rows), Dim::from(m.len)])
        .expect("input");
    let flat = ops::flatten(&mut g, &x, 1).expect("flatten");
    let mut outputs = Vec::new();
    let constant = |g: &mut GraphBuilder, name: &str, bias: Vec<f32>| {
        let n = bias.len();
        let w = LinearWeights::burn(
            Weights::new(vec![0.0; inputs * n], [inputs, n]),
            Some(Weights::new(bias, [n])),
        );
        let y = ops::gemm(g, name, &flat, &w).expect("gemm");
        g.node("Identity", &[&y], &[name], vec![])
            .expect("identity");
        g.output(name, &[Dim::batch(), Dim::from(n)])
            .expect("output");
    };
    if let Some((classes, chosen)) = m.classes {
        let mut bias = vec![0.0; classes.len()];
        bias[chosen] = 1.0;
        constant(&mut g, "logits", bias);
        outputs.push(json!({"name": "logits", "kind": "logits"}));
    }
    if let Some(az) = m.azimuth {
        constant(&mut g, "azimuth", vec![az]);
        outputs.push(json!({"name": "azimuth", "kind": "azimuth"}));
    }
    if let Some(el) = m.elevation {
        constant(&mut g, "elevation", vec![el]);
        outputs.push(json!({"name": "elevation", "kind": "elevation"}));
    }
    g.save(dir.join(format!("{}.onnx", m.name)))
        .expect("save model");
    let card = json!({
        "name": m.name,
        "version": "1.0.0",
        "task": m.task,
        "window_len": m.len,
        "channels": m.channels,
        "sample_rate_hz": m.sample_rate_hz,
        "inputs": [{"name": "iq", "layout": ["N", rows, m.len], "dtype": "float32",
                    "representation": "iq", "normalization": "unit_rms"}],
        "outputs": outputs,
        "classes": m.classes.map(|(c, _)| c.to_vec()).unwrap_or_default(),
        "dataset": {"name": "eval fixture", "manifest_sha256": "0f".repeat(32)},
        "metrics": {},
        "training": {"command": "tests/it/eval.rs (constant outputs)"}
    });
    let path = dir.join(format!("{}.json", m.name));
    std::fs::write(&path, serde_json::to_string_pretty(&card).expect("card")).expect("card");
    path
}

/// `estimate − truth` wrapped to [−180, 180).
fn wrapped(estimate: f64, truth: f64) -> f64 {
    let mut d = estimate - truth;
    while d >= 180.0 {
        d -= 360.0;
    }
    while d < -180.0 {
        d += 360.0;
    }
    d
}

/// Sums of absolute errors `[azimuth, elevation]` and window counts, keyed by a group name.
#[derive(Default)]
struct Sums(std::collections::BTreeMap<String, ([f64; 2], u64)>);

impl Sums {
    fn add(&mut self, key: &str, err: [f64; 2]) {
        let e = self.0.entry(key.to_string()).or_default();
        e.0[0] += err[0].abs();
        e.0[1] += err[1].abs();
        e.1 += 1;
    }

    /// `(azimuth MAE, elevation MAE, pooled MAE)` of a group.
    fn mae(&self, key: &str) -> (f64, f64, f64) {
        let (s, n) = self.0[key];
        let n = n as f64;
        (s[0] / n, s[1] / n, (s[0] + s[1]) / (2.0 * n))
    }
}

/// The constant model's errors, overall (`"all"`), per SNR grid key and per class name.
fn expected_angle_errors(d: &Dataset) -> Sums {
    let angles = d.angles_deg().expect("angles").expect("aoa4 has angles");
    let snr = d.snr_db().expect("snr");
    let labels = d.labels().expect("labels");
    let mut sums = Sums::default();
    for i in 0..d.len() {
        let [az, el] = angles[i].map(f64::from);
        let err = [wrapped(f64::from(AZIMUTH), az), f64::from(ELEVATION) - el];
        let grid = AOA_GRID
            .iter()
            .copied()
            .min_by(|a, b| {
                (a - f64::from(snr[i]))
                    .abs()
                    .total_cmp(&(b - f64::from(snr[i])).abs())
            })
            .expect("grid");
        sums.add("all", err);
        sums.add(&format!("{}", grid as i64), err);
        sums.add(&d.manifest.classes[labels[i] as usize], err);
    }
    sums
}

fn assert_close(got: &Value, want: f64, what: &str) {
    let got = got
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: {got} is not a number"));
    assert!((got - want).abs() < 1e-9, "{what}: {got} vs {want}");
}

#[test]
fn angle_errors_per_snr_and_class_match_hand_computed_errors_beside_music_and_the_crb() {
    if !common::runtime_available() {
        return;
    }
    let tmp = common::scratch();
    let data = tmp.path().join("aoa4");
    let d = gen_aoa4(&data);
    let classes = d.manifest.classes.clone();
    assert_eq!(classes.len(), 6);
    let model = write_angle_model(
        tmp.path(),
        &AngleModel {
            name: "constant-aoa",
            task: "amc+aoa",
            channels: 4,
            len: d.manifest.window_len,
            sample_rate_hz: d.manifest.sample_rate_hz.expect("aoa4 has a sample rate"),
            classes: Some((&classes, 2)),
            azimuth: Some(AZIMUTH),
            elevation: Some(ELEVATION),
        },
    );
    let report = tmp.path().join("report");
    let out = Command::new(common::bin("specwatch-train"))
        .args(["eval", "--model"])
        .arg(&model)
        .arg("--data")
        .arg(&data)
        .arg("--report")
        .arg(&report)
        .args([
            "--json",
            "--batch",
            "20",
            "--provider",
            "cpu",
            "--threads",
            "1",
            "--quiet",
        ])
        .output()
        .expect("run specwatch-train eval");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");

    // The class output is still scored: every window is called class 2, one class in six.
    assert_close(&json["accuracy"], 1.0 / 6.0, "accuracy");
    assert_close(&json["by_snr"]["20"], 1.0 / 6.0, "accuracy at 20 dB");

    let x = expected_angle_errors(&d);
    let aoa = &json["aoa"];
    assert_eq!(aoa["windows"], json!(d.len()));
    assert_eq!(aoa["angles"], json!(["azimuth", "elevation"]));
    let (az, el, pooled) = x.mae("all");
    assert_close(&aoa["mae_deg"], pooled, "pooled MAE");
    assert_close(&aoa["azimuth"]["mae_deg"], az, "azimuth MAE");
    assert_close(&aoa["elevation"]["mae_deg"], el, "elevation MAE");
    for key in ["-10", "5", "20"] {
        let (az, el, pooled) = x.mae(key);
        assert_close(&aoa["mae_by_snr"][key], pooled, key);
        assert_close(&aoa["azimuth"]["mae_by_snr"][key], az, key);
        assert_close(&aoa["elevation"]["mae_by_snr"][key], el, key);
        assert_eq!(aoa["windows_by_snr"][key], json!(classes.len() * 3));
    }
    for class in &classes {
        let (az, el, pooled) = x.mae(class);
        assert_close(&aoa["mae_by_class"][class], pooled, class);
        assert_close(&aoa["azimuth"]["mae_by_class"][class], az, class);
        assert_close(&aoa["elevation"]["mae_by_class"][class], el, class);
    }

    // MUSIC on the 2×2 array: a few degrees at most at the highest SNR, and better than at the
    // lowest; the bound falls as the SNR rises.
    let music = |key: &str| aoa["music_mae_by_snr"][key].as_f64().expect("MUSIC MAE");
    assert!(
        music("20") < 2.0,
        "MUSIC at 20 dB: {}",
        aoa["music_mae_by_snr"]
    );
    assert!(music("20") < music("-10"), "{}", aoa["music_mae_by_snr"]);
    for figures in [aoa, &aoa["azimuth"], &aoa["elevation"]] {
        let crb = |key: &str| figures["crb_deg_by_snr"][key].as_f64().expect("CRB");
        assert!(
            crb("-10") > crb("5") && crb("5") > crb("20") && crb("20") > 0.0,
            "{}",
            figures["crb_deg_by_snr"]
        );
        // As an MAE the bound is at most sqrt(2/π) of the RMS figure (Jensen).
        for key in ["-10", "5", "20"] {
            let as_mae = figures["crb_mae_deg_by_snr"][key]
                .as_f64()
                .expect("CRB MAE");
            assert!(
                as_mae > 0.0 && as_mae <= (2.0 / std::f64::consts::PI).sqrt() * crb(key) + 1e-12,
                "{key}: {as_mae} vs {}",
                crb(key)
            );
        }
    }
    assert_eq!(aoa["reference"]["snapshots"], json!(d.manifest.window_len));
    assert_eq!(aoa["reference"]["music_failures"], json!(0));

    // The report: the same figures, the angle section and the chart of the documented size.
    let saved: Value = serde_json::from_str(
        &std::fs::read_to_string(report.join("eval.json")).expect("eval.json"),
    )
    .expect("eval.json parses");
    assert_eq!(saved["aoa"]["mae_by_snr"], aoa["mae_by_snr"]);
    let (w, h) = png_size(&report.join("mae_vs_snr.png"));
    assert_eq!((w as usize, h as usize), LINE_SIZE);
    assert!(report.join("accuracy_vs_snr.png").exists());
    let md = std::fs::read_to_string(report.join("report.md")).expect("report.md");
    for needle in [
        "## Angle of arrival",
        "![angle error against SNR](mae_vs_snr.png)",
        "| SNR (dB) | windows | MAE (°) | azimuth MAE (°) | elevation MAE (°) | MUSIC MAE (°) | CRB (°) \
         | CRB as MAE (°) |",
        "### Angle error per class",
        &format!("**{:.2}°** MAE", pooled),
    ] {
        assert!(md.contains(needle), "report.md lacks {needle:?}:\n{md}");
    }

    // The same model described as a classifier only: no "aoa" at all.
    let mut card: Value =
        serde_json::from_str(&std::fs::read_to_string(&model).expect("card")).expect("card");
    card["task"] = json!("amc");
    card["outputs"] = json!([{"name": "logits", "kind": "logits"}]);
    card["name"] = json!("constant-amc");
    let amc = tmp.path().join("constant-amc.json");
    std::fs::write(&amc, card.to_string()).expect("card");
    std::fs::copy(
        tmp.path().join("constant-aoa.onnx"),
        tmp.path().join("constant-amc.onnx"),
    )
    .expect("copy the graph");
    let e = evaluate(&amc, &data, &options(64), &mut |_, _| {}).expect("evaluates");
    let amc_json = serde_json::to_value(e.to_json()).expect("json");
    assert!(amc_json.get("aoa").is_none(), "{amc_json}");
    assert_close(&amc_json["accuracy"], 1.0 / 6.0, "accuracy");
}

#[test]
fn azimuth_only_model_without_classes_reports_its_angle_and_no_accuracy() {
    if !common::runtime_available() {
        return;
    }
    let tmp = common::scratch();
    let data = tmp.path().join("aoa4");
    let d = gen_aoa4(&data);
    let model = write_angle_model(
        tmp.path(),
        &AngleModel {
            name: "azimuth-only",
            task: "aoa",
            channels: 4,
            len: d.manifest.window_len,
            sample_rate_hz: d.manifest.sample_rate_hz.expect("sample rate"),
            classes: None,
            azimuth: Some(AZIMUTH),
            elevation: None,
        },
    );
    let e = evaluate(&model, &data, &options(25), &mut |_, _| {}).expect("evaluates");
    let json = serde_json::to_value(e.to_json()).expect("json");
    for key in [
        "accuracy",
        "mean_snr_accuracy",
        "by_snr",
        "per_class",
        "confusion",
        "classes",
        "windows",
        "windows_by_snr",
        "unsupported_classes",
    ] {
        assert!(json.get(key).is_none(), "'{key}' in {json}");
    }
    assert_eq!(json["windows_read"], json!(d.len()));
    let aoa = &json["aoa"];
    assert_eq!(aoa["angles"], json!(["azimuth"]));
    assert!(aoa.get("elevation").is_none(), "{aoa}");
    let x = expected_angle_errors(&d);
    let (az, _, _) = x.mae("all");
    assert_close(&aoa["mae_deg"], az, "pooled = azimuth");
    assert_close(&aoa["azimuth"]["mae_deg"], az, "azimuth");
    assert_close(&aoa["mae_by_snr"]["5"], x.mae("5").0, "azimuth at 5 dB");
    assert_close(
        &aoa["mae_by_class"]["BPSK"],
        x.mae("BPSK").0,
        "azimuth of BPSK",
    );
    // MUSIC's pooled figure covers the angle the model gives: azimuth only.
    assert_eq!(aoa["music_mae_by_snr"], aoa["azimuth"]["music_mae_by_snr"]);

    let report = tmp.path().join("report");
    let files = write_report(&e, &report, "specwatch-train eval …").expect("report");
    assert!(files.accuracy_png.is_none() && files.confusion_png.is_none());
    assert!(!report.join("accuracy_vs_snr.png").exists());
    assert!(!report.join("confusion.png").exists());
    let (w, h) = png_size(&report.join("mae_vs_snr.png"));
    assert_eq!((w as usize, h as usize), LINE_SIZE);
    let table = e.text_table();
    assert!(!table.contains("accuracy"), "{table}");
    assert!(
        table.contains(&format!(
            "angles   {:.2}° azimuth MAE over {} windows",
            az,
            d.len()
        )),
        "{table}"
    );
}

#[test]
fn angle_model_on_a_dataset_without_angles_is_refused_or_warned() {
    if !common::runtime_available() {
        return;
    }
    let tmp = common::scratch();
    let data = tmp.path().join("data");
    write_dataset(
        &data,
        &["A", "B", "C"],
        &make_windows(&["A", "B", "C"], 1),
        1,
    );
    let classes: Vec<String> = MODEL_CLASSES.iter().map(|c| c.to_string()).collect();
    let fixture = |name: &'static str, task: &'static str, with_classes: bool| {
        AngleModel {
            name,
            task,
            channels: 1,
            len: LEN,
            sample_rate_hz: 1e6,
            classes: None,
            azimuth: Some(AZIMUTH),
            elevation: Some(ELEVATION),
        }
        .with_classes(with_classes.then_some((&classes[..], 0)))
    };
    let aoa = write_angle_model(tmp.path(), &fixture("angles", "aoa", false));
    let err = evaluate(&aoa, &data, &options(8), &mut |_, _| {})
        .expect_err("nothing to measure")
        .to_string();
    assert!(
        err.contains(&format!(
            "gives only angles (task aoa) but dataset {} has no angles.npy",
            data.display()
        )),
        "{err}"
    );
    let both = write_angle_model(tmp.path(), &fixture("both", "amc+aoa", true));
    let e = evaluate(&both, &data, &options(8), &mut |_, _| {}).expect("evaluates");
    assert!(e.aoa.is_none());
    assert!(
        e.warnings
            .iter()
            .any(|w| w.contains("its angles are not evaluated")),
        "{:?}",
        e.warnings
    );
    assert_close(
        &serde_json::to_value(e.to_json()).expect("json")["accuracy"],
        e.accuracy(),
        "accuracy",
    );
}

impl<'a> AngleModel<'a> {
    fn with_classes(self, classes: Option<(&'a [String], usize)>) -> Self {
        AngleModel { classes, ..self }
    }
}
