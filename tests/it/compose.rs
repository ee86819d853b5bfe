//! `specwatch-train compose` end to end: two tiny models trained and exported (a 3-class base
//! and a 2-class specialist, their datasets made with `gen --classes`), composed into one
//! graph; the graph passes `onnx.checker`, computes exactly the product rule of
//! `specwatch::train::compose` over its two components (through ort and through onnxruntime in
//! Python, at batch 1 and above), leaves the other classes' logits as the base's, keeps the
//! base's probability of the specialist's classes, and its card records both components and the
//! figures measured on a fresh set. Then the refusals: a specialist whose class the base lacks,
//! measuring on a training set, and `--init-from` a composed card.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::Digest;

use specwatch::infer::card::ModelCard;
use specwatch::infer::{ExecutionPreference, Model as Served, RuntimeOptions};
use specwatch::iq::dataset::{Dataset, Manifest};
use specwatch::train::compose::combine;
use specwatch::train::fit::{FitOptions, TrainConfig, fit};

use crate::common;

/// The measuring set's windows: 3 classes × 2 SNRs × this many.
const PER_CELL: usize = 40;

fn options() -> RuntimeOptions {
    RuntimeOptions {
        execution: ExecutionPreference::Cpu,
        intra_threads: Some(1),
        ..RuntimeOptions::default()
    }
}

fn run_train_cli(args: &[&str]) -> std::process::Output {
    Command::new(common::bin("specwatch-train"))
        .args(args)
        .output()
        .expect("run specwatch-train")
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `specwatch-train gen` of rml2016a restricted to `classes`, 6 and 16 dB.
fn generate(dir: &Path, classes: &str, seed: u64) -> PathBuf {
    let seed = seed.to_string();
    let per_cell = PER_CELL.to_string();
    let res = run_train_cli(&[
        "gen",
        "--recipe",
        "rml2016a",
        "--classes",
        classes,
        "--snr",
        "6:16:10",
        "--per-class-snr",
        &per_cell,
        "--seed",
        &seed,
        "--quiet",
        "--out",
        path_str(dir),
    ]);
    assert!(
        res.status.success(),
        "gen failed: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    dir.to_path_buf()
}

/// Trains `config` into `DIR/run-NAME` and exports it as `DIR/models/NAME`; returns the card.
fn train_and_export(dir: &Path, name: &str, config: &TrainConfig) -> PathBuf {
    let run = dir.join(format!("run-{name}"));
    fit(config, &run, FitOptions::default(), &mut |_| {}).expect("train");
    let out = dir.join("models").join(name);
    let res = run_train_cli(&["export", "--run", path_str(&run), "--out", path_str(&out)]);
    assert!(
        res.status.success(),
        "export failed: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    dir.join("models").join(format!("{name}.json"))
}

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    base_data: PathBuf,
    fresh: PathBuf,
    base: PathBuf,
    specialist: PathBuf,
}

/// A 3-class base (BPSK, QAM16, QPSK; VT-CNN2 at width 0.1), a QAM16/QPSK specialist (a
/// quarter-width ResNet-1D with amplitude rows) and a fresh 3-class measuring set.
fn fixture() -> Fixture {
    let tmp = common::scratch();
    let dir = tmp.path().to_path_buf();
    let base_data = generate(&dir.join("base-ds"), "BPSK,QPSK,QAM16", 21);
    let pair_data = generate(&dir.join("pair-ds"), "QAM16,QPSK", 22);
    let fresh = generate(&dir.join("fresh"), "QAM16,BPSK,QPSK", 23);

    let manifest = Dataset::open(&base_data).expect("base set").manifest;
    assert_eq!(
        manifest.classes,
        ["BPSK", "QAM16", "QPSK"],
        "the recipe's order"
    );
    assert_eq!(manifest.count, 3 * 2 * PER_CELL);
    let params = match &manifest.source {
        specwatch::iq::dataset::DatasetSource::Synth { params, .. } => params.clone(),
        other => panic!("a synth source, not {other:?}"),
    };
    assert_eq!(
        params["classes"],
        serde_json::json!(["BPSK", "QAM16", "QPSK"])
    );
    assert_eq!(params["class_subset_of"].as_array().map(Vec::len), Some(11));

    let mut base = TrainConfig::new("vtcnn2", &base_data);
    base.epochs = 2;
    base.batch_size = 32;
    base.lr = 3e-3;
    base.width = 0.1;
    base.dropout = 0.2;
    base.seed = 4;
    let base = train_and_export(&dir, "base", &base);

    let mut specialist = TrainConfig::new("resnet1d", &pair_data);
    specialist.epochs = 2;
    specialist.batch_size = 32;
    specialist.lr = 3e-3;
    specialist.width = 0.25;
    specialist.dropout = 0.0;
    specialist.arch_options =
        specwatch::train::models::parse_arch_opts(&["amplitude_rows=true".into()]).unwrap();
    specialist.seed = 5;
    let specialist = train_and_export(&dir, "pair", &specialist);
    Fixture {
        _tmp: tmp,
        dir,
        base_data,
        fresh,
        base,
        specialist,
    }
}

fn compose_cli(f: &Fixture, base: &Path, specialist: &Path, data: &Path) -> std::process::Output {
    let out = f.dir.join("models").join("composed");
    run_train_cli(&[
        "compose",
        "--base",
        path_str(base),
        "--specialist",
        path_str(specialist),
        "--data",
        path_str(data),
        "--out",
        path_str(&out),
        "--version",
        "2.0.0",
    ])
}

fn sha256_of(path: &Path) -> String {
    sha2::Sha256::digest(std::fs::read(path).expect("read"))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

const PY_CHECK_AND_RUN: &str = r#"
import sys, numpy as np, onnx, onnxruntime as ort
model_path, in_path, out_path, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
onnx.checker.check_model(onnx.load(model_path), full_check=True)
s = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
x = np.fromfile(in_path, dtype="<f4").reshape(batch, 2, 128)
(y,) = s.run(None, {"iq": x})
np.asarray(y, dtype="<f4").tofile(out_path)
print("checked")
"#;

#[test]
fn compose_writes_one_graph_that_computes_the_product_of_its_two_models() {
    if !common::runtime_available() {
        return;
    }
    let f = fixture();
    let res = compose_cli(&f, &f.base, &f.specialist, &f.fresh);
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(
        res.status.success(),
        "compose failed: {}\n{stdout}",
        String::from_utf8_lossy(&res.stderr)
    );
    println!("{stdout}");
    assert!(stdout.contains("accuracy"), "{stdout}");
    let models = f.dir.join("models");
    let leftovers: Vec<_> = std::fs::read_dir(&models)
        .expect("list models")
        .map(|e| e.expect("entry").file_name())
        .filter(|n| n.to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "staging files left: {leftovers:?}");

    // The card: the base's contract, both components, the figures on the fresh set.
    let card_path = models.join("composed.json");
    let card = ModelCard::load(&card_path).expect("the card loads");
    let base_card = ModelCard::load(&f.base).expect("base card");
    assert_eq!(
        (card.name.as_str(), card.version.as_str()),
        ("composed", "2.0.0")
    );
    assert_eq!(card.classes, base_card.classes);
    assert_eq!(card.inputs, base_card.inputs);
    assert_eq!(card.dataset, base_card.dataset);
    let t = &card.training;
    assert_eq!(t["composition"], "specialist_product");
    assert_eq!(
        t["specialist_classes"],
        serde_json::json!(["QAM16", "QPSK"])
    );
    assert_eq!(
        t["base"]["onnx_sha256"],
        sha256_of(&ModelCard::onnx_path(&f.base))
    );
    assert_eq!(
        t["specialist"]["onnx_sha256"],
        sha256_of(&ModelCard::onnx_path(&f.specialist))
    );
    assert_eq!(
        t["specialist"]["training"]["arch_options"]["amplitude_rows"],
        true
    );
    assert!(
        t["command"]
            .as_str()
            .is_some_and(|c| c.starts_with("specwatch-train compose") && c.contains("--base")),
        "{t:?}"
    );
    let m = &card.metrics;
    assert_eq!(m["windows"], 3 * 2 * PER_CELL);
    assert_eq!(
        m["dataset"]["manifest_sha256"],
        Manifest::digest_of_file(&f.fresh).expect("digest")
    );
    let by_snr = m["accuracy_by_snr_db"].as_object().expect("per SNR");
    assert_eq!(by_snr.keys().collect::<Vec<_>>(), vec!["16", "6"]);
    let parity = m["composed_vs_components_max_abs_logit_diff"]
        .as_f64()
        .expect("parity figure");
    assert!(parity <= 1e-4, "{parity}");

    // The graph, run through ort, against its components run separately.
    let mut composed = Served::load(&card_path, &options()).expect("the daemon's loader");
    let mut base = Served::load(&f.base, &options()).expect("base");
    let mut specialist = Served::load(&f.specialist, &options()).expect("specialist");
    let groups = [(1usize, 0usize), (2, 1)]; // QAM16, QPSK: base rows 1 and 2
    let mut data = Dataset::open(&f.fresh).expect("fresh set");
    let w = data.window_size();
    let all = data.read_windows(0, 3 * 2 * PER_CELL).expect("windows");
    let (mut worst, mut worst_other, mut worst_mass) = (0.0f32, 0.0f32, 0.0f32);
    let mut specialist_moved = 0.0f32;
    for batch in [1usize, 7, 64] {
        let windows = &all[..batch * w];
        let got = composed.run(windows, batch).expect("composed").clone();
        let l = base.run(windows, batch).expect("base").clone();
        let e = specialist.run(windows, batch).expect("specialist").clone();
        for i in 0..batch {
            let want = combine(l.scores(i), e.scores(i), &groups);
            for (a, b) in got.scores(i).iter().zip(&want) {
                worst = worst.max((a - b).abs());
            }
            // BPSK (row 0) is the base's logit, unchanged.
            worst_other = worst_other.max((got.scores(i)[0] - l.scores(i)[0]).abs());
            // The pair's probability is the base's; only its split changes.
            // The daemon's own probabilities (the session's softmax of the logits).
            let (p, q) = (got.probabilities(i), l.probabilities(i));
            worst_mass = worst_mass.max(((p[1] + p[2]) - (q[1] + q[2])).abs());
            specialist_moved = specialist_moved.max((p[1] - q[1]).abs());
        }
    }
    assert!(worst <= 1e-5, "composed vs combined components: {worst:e}");
    assert!(
        worst_other <= 1e-6,
        "a class outside the pair moved: {worst_other:e}"
    );
    assert!(
        worst_mass <= 1e-5,
        "the pair's mass changed: {worst_mass:e}"
    );
    assert!(
        specialist_moved > 1e-3,
        "the specialist changed nothing: {specialist_moved:e}"
    );
    println!(
        "compose: composed vs combined components max |Δ| {worst:.2e}; other class {worst_other:.2e}; \
         pair mass {worst_mass:.2e}; largest change of p(QAM16) {specialist_moved:.3}"
    );

    // The same graph through onnxruntime in Python, after onnx.checker's full check.
    if let Some(py) = common::onnx_python() {
        let batch = 5;
        let windows = &all[..batch * w];
        let x = composed.run(windows, batch).expect("composed").clone();
        let input = composed.last_input("iq").expect("the fed tensor").to_vec();
        let in_path = f.dir.join("in.f32");
        let out_path = f.dir.join("out.f32");
        let bytes: Vec<u8> = input.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(&in_path, bytes).expect("write input");
        let onnx = models.join("composed.onnx");
        let batch_arg = batch.to_string();
        let stdout = common::run_python(
            &py,
            PY_CHECK_AND_RUN,
            &[
                path_str(&onnx),
                path_str(&in_path),
                path_str(&out_path),
                &batch_arg,
            ],
        );
        assert!(stdout.contains("checked"), "{stdout}");
        let got: Vec<f32> = std::fs::read(&out_path)
            .expect("read output")
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let want: Vec<f32> = (0..batch).flat_map(|i| x.scores(i).to_vec()).collect();
        let d = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert_eq!(got.len(), want.len());
        assert!(d <= 1e-5, "onnxruntime (Python) vs ort: {d:e}");
        println!(
            "compose: onnx.checker full check ok; onnxruntime (Python) vs ort max |Δ| {d:.2e}"
        );
    }

    // A composed model is not a warm-start source.
    let mut again = TrainConfig::new("vtcnn2", &f.base_data);
    again.epochs = 1;
    again.width = 0.1;
    again.init_from = Some(card_path.clone());
    let err = fit(
        &again,
        &f.dir.join("again"),
        FitOptions::default(),
        &mut |_| {},
    )
    .expect_err("a composed card cannot seed a run")
    .to_string();
    assert!(err.contains("composed model"), "{err}");
}

#[test]
fn compose_refuses_a_foreign_class_a_training_set_and_an_unknown_class_name() {
    if !common::runtime_available() {
        return;
    }
    let f = fixture();
    // Roles swapped: the 3-class model as the specialist knows BPSK, which the pair lacks.
    let res = compose_cli(&f, &f.specialist, &f.base, &f.fresh);
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(!res.status.success());
    assert!(
        err.contains("knows class 'BPSK', which the base does not"),
        "{err}"
    );
    // Measured on the base's own training set.
    let res = compose_cli(&f, &f.base, &f.specialist, &f.base_data);
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(!res.status.success());
    assert!(
        err.contains("'data'") && err.contains("was trained on"),
        "{err}"
    );
    assert!(!f.dir.join("models/composed.onnx").exists());
    // gen refuses a class the recipe lacks, naming it and the parameter.
    let res = run_train_cli(&[
        "gen",
        "--recipe",
        "rml2016a",
        "--classes",
        "QAM16,QAM32",
        "--out",
        path_str(&f.dir.join("bad")),
    ]);
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(!res.status.success());
    assert!(
        err.contains("'classes'") && err.contains("'QAM32'"),
        "{err}"
    );
}
