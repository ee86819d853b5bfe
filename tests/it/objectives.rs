//! Objectives beyond plain classification, end to end on tiny models: a multi-task model
//! (class + azimuth/elevation) with the window's SNR as a second input is trained for a few
//! steps on an `aoa4` set, exported through its declared interface (card task `amc+aoa`, an
//! `snr_db` extra input, three outputs), checked output by output — burn against ONNX Runtime
//! through the daemon's `infer::Model` and through onnxruntime (Python), at batch 1 and above —
//! and replayed by `specwatch replay`, whose detections carry the model's angles.

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::tensor::{Device, Tensor, TensorData};
use serde_json::Value;

use specwatch::infer::card::{ExtraKind, ModelCard, OutputKind, Task};
use specwatch::infer::{ExecutionPreference, Model as Served, RuntimeOptions};
use specwatch::iq::C32;
use specwatch::iq::dataset::Dataset;
use specwatch::train::data::PrepOptions;
use specwatch::train::export::load_servable;

use crate::common;

fn train_cli(args: &[&str]) {
    common::specwatch_train(args);
}

fn arg(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The first `n` raw windows as model input `[n, rows, len]`, through the daemon's `dsp` path.
fn model_input(
    prep: &PrepOptions,
    windows: &[C32],
    channels: usize,
    len: usize,
    n: usize,
) -> Vec<f32> {
    let mut x = Vec::new();
    let mut ws = specwatch::dsp::repr::ReprWorkspace::new();
    for w in windows.chunks_exact(channels * len).take(n) {
        let mut w = w.to_vec();
        prep.normalization.apply(&mut w);
        prep.representation
            .write(&w, channels, &mut ws, &mut x)
            .unwrap();
    }
    x
}

/// burn's outputs for the first `n` windows of `data`, fed `snr`.
fn burn_outputs(run: &Path, windows: &[C32], n: usize, snr: &[f32]) -> Vec<Vec<f32>> {
    let (record, model) = load_servable(run).expect("load the run");
    let (channels, len) = (record.dataset.channels, record.dataset.window_len);
    let x = model_input(&record.train.prep, windows, channels, len, n);
    let device = Device::flex();
    let input = Tensor::<3>::from_data(TensorData::new(x, [n, 2 * channels, len]), &device);
    let snr = Tensor::<1>::from_data(TensorData::new(snr[..n].to_vec(), [n]), &device);
    model
        .outputs(input, Some(snr))
        .into_iter()
        .map(|t| t.into_data().try_into_vec::<f32>().unwrap())
        .collect()
}

#[test]
fn a_multitask_model_with_an_snr_input_trains_exports_and_is_served_with_its_angles() {
    if !common::runtime_available() {
        return;
    }
    let tmp = common::scratch();
    let data = tmp.path().join("aoa");
    train_cli(&[
        "gen",
        "--recipe",
        "aoa4",
        "--per-class-snr",
        "6",
        "--snr",
        "10:20:10",
        "--seed",
        "5",
        "--out",
        arg(&data),
    ]);
    let run = tmp.path().join("run");
    train_cli(&[
        "train",
        "--arch",
        "resnet1d",
        "--width",
        "0.1",
        "--epochs",
        "2",
        "--batch",
        "16",
        "--seed",
        "2",
        "--quiet",
        "--data",
        arg(&data),
        "--out",
        arg(&run),
        "--objective",
        r#"{"kind":"multitask","snr_input":"estimate","angle_hidden":16}"#,
    ]);
    let stem = tmp.path().join("models").join("mt");
    train_cli(&["export", "--run", arg(&run), "--out", arg(&stem)]);

    // The card is the interface: task, the SNR input, three outputs.
    let card_path = stem.with_extension("json");
    let card = ModelCard::load(&card_path).expect("card");
    assert_eq!(card.task, Task::AmcAoa);
    assert_eq!(card.channels, 4);
    assert_eq!(card.extra_inputs.len(), 1);
    assert_eq!(card.extra_inputs[0].kind, ExtraKind::SnrDb);
    let kinds: Vec<OutputKind> = card.outputs.iter().map(|o| o.kind).collect();
    assert_eq!(
        kinds,
        [
            OutputKind::Logits,
            OutputKind::Azimuth,
            OutputKind::Elevation
        ]
    );
    assert_eq!(card.training["objective"]["kind"], "multitask");
    assert_eq!(card.training["objective"]["snr_input"], "estimate");
    assert_eq!(card.training["objective"]["angle_hidden"], 16);
    for output in ["logits", "azimuth", "elevation"] {
        let d = card.metrics["burn_onnx_max_abs_diff"][output]
            .as_f64()
            .unwrap_or_else(|| panic!("no parity figure for {output}: {:?}", card.metrics));
        assert!(d <= 1e-3, "{output}: {d}");
    }
    assert!(card.metrics["azimuth_mae_deg"].as_f64().unwrap() >= 0.0);
    assert!(card.metrics["accuracy"].as_f64().is_some());

    // burn against the daemon's inference path, every output, at batch 1 and 5.
    let mut dataset = Dataset::open(&data).expect("dataset");
    let windows = dataset.read_windows(0, 5).expect("windows");
    let snr: Vec<f32> = vec![3.0, 12.5, -4.0, 20.0, 7.5];
    let options = RuntimeOptions {
        execution: ExecutionPreference::Cpu,
        ..RuntimeOptions::default()
    };
    let mut served = Served::load(&card_path, &options).expect("the daemon loads it");
    for n in [1usize, 5] {
        let want = burn_outputs(&run, &windows, n, &snr);
        let out = served
            .run_with_snr(&windows[..n * 4 * 1024], n, &snr[..n])
            .expect("runs");
        let mut worst = [0.0f32; 3];
        for i in 0..n {
            for (k, v) in out.scores(i).iter().enumerate() {
                worst[0] = worst[0].max((v - want[0][i * out.classes() + k]).abs());
            }
            worst[1] = worst[1].max((out.azimuth_deg(i).unwrap() - want[1][i]).abs());
            worst[2] = worst[2].max((out.elevation_deg(i).unwrap() - want[2][i]).abs());
        }
        assert!(worst.iter().all(|d| *d <= 1e-4), "batch {n}: {worst:?}");
        // The SNR input matters: another SNR changes the logits, not the angles.
        let other: Vec<f32> = snr[..n].iter().map(|s| s + 10.0).collect();
        let moved = served
            .run_with_snr(&windows[..n * 4 * 1024], n, &other)
            .expect("runs");
        assert_ne!(
            moved.scores(0),
            want[0][..moved.classes()].to_vec().as_slice()
        );
        assert!((moved.azimuth_deg(0).unwrap() - want[1][0]).abs() <= 1e-4);
    }

    // onnxruntime (Python) computes what ort computes, at batch 1 and 3.
    if let Some(py) = common::onnx_python() {
        let x_path = tmp.path().join("x.npy");
        let n = 3;
        let prep = PrepOptions {
            normalization: card.inputs[0].normalization,
            representation: card.inputs[0].representation,
            ..PrepOptions::default()
        };
        let x = model_input(&prep, &windows, 4, 1024, n);
        specwatch::iq::npy::write_array(&x_path, &[n, 8, 1024], &x).unwrap();
        let script = r#"
import sys, json, numpy as np, onnxruntime as ort
x = np.load(sys.argv[2])
snr = np.array([[3.0], [12.5], [-4.0]], dtype=np.float32)
s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
out = {}
for n in (1, 3):
    r = s.run(None, {"iq": x[:n], "snr_db": snr[:n]})
    out[str(n)] = [v.reshape(-1).tolist() for v in r]
print(json.dumps(out))
"#;
        let text = common::run_python(
            &py,
            script,
            &[arg(&stem.with_extension("onnx")), arg(&x_path)],
        );
        let py_out: Value = serde_json::from_str(text.trim()).expect("json");
        let want = burn_outputs(&run, &windows, n, &snr);
        for batch in ["1", "3"] {
            let got = py_out[batch].as_array().unwrap();
            let n: usize = batch.parse().unwrap();
            for (k, output) in got.iter().enumerate() {
                let values: Vec<f64> = output
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .collect();
                for (i, v) in values.iter().enumerate() {
                    let d = (v - f64::from(want[k][i])).abs();
                    assert!(d <= 1e-4, "python batch {n}, output {k}, value {i}: {d}");
                }
            }
        }
    }

    // The station replays a 4-channel capture of the set's windows through the model: every
    // window classified, each detection with the model's azimuth and elevation.
    let count = 6;
    let raw = dataset.read_windows(0, count).expect("windows");
    let mut capture = vec![C32::new(0.0, 0.0); 4 * count * 1024];
    for (w, window) in raw.chunks_exact(4 * 1024).enumerate() {
        for (c, row) in window.chunks_exact(1024).enumerate() {
            capture[c * count * 1024 + w * 1024..][..1024].copy_from_slice(row);
        }
    }
    let capture_path = tmp.path().join("array.npy");
    specwatch::iq::npy::write_array(&capture_path, &[4, count * 1024], &capture).unwrap();
    let config = tmp.path().join("replay.toml");
    std::fs::write(
        &config,
        format!(
            "[station]\nname = \"mt\"\n\n[[source]]\nname = \"rec\"\nkind = \"replay\"\npath = \
             \"{}\"\n\n[runtime]\nexecution_provider = \"cpu\"\nintra_threads = 1\n\n[gate]\n\
             kind = \"pass_all\"\n\n[[model]]\ncard = \"{}\"\nsource = \"rec\"\nchannels = [0, \
             1, 2, 3]\nbatch_size = 4\nmax_wait_ms = 5\n",
            capture_path.display(),
            card_path.display()
        ),
    )
    .unwrap();
    let out = Command::new(common::bin("specwatch"))
        .arg("replay")
        .arg(&capture_path)
        .arg("--config")
        .arg(&config)
        .arg("--json")
        .output()
        .expect("run specwatch replay");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let detections: Vec<Value> = stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Value>(l).expect("json line"))
        .filter(|v| v.get("summary").is_none())
        .collect();
    assert_eq!(detections.len(), count, "{stdout}");
    for d in &detections {
        let az = d["azimuth_deg"]
            .as_f64()
            .unwrap_or_else(|| panic!("no azimuth: {d}"));
        let el = d["elevation_deg"]
            .as_f64()
            .unwrap_or_else(|| panic!("no elevation: {d}"));
        assert!(az.is_finite() && el.is_finite(), "{d}");
    }
}

#[test]
fn a_multitask_objective_without_angles_in_the_data_is_refused_by_name() {
    let tmp = common::scratch();
    let data = tmp.path().join("rml");
    train_cli(&[
        "gen",
        "--recipe",
        "rml2016a",
        "--per-class-snr",
        "2",
        "--snr",
        "10:10:2",
        "--seed",
        "1",
        "--out",
        arg(&data),
    ]);
    let out = Command::new(common::bin("specwatch-train"))
        .args([
            "train", "--arch", "resnet1d", "--width", "0.1", "--epochs", "1", "--quiet",
        ])
        .args(["--data", arg(&data), "--out", arg(&tmp.path().join("run"))])
        .args(["--objective", r#"{"kind":"multitask"}"#])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("angles.npy") && err.contains("objective"),
        "{err}"
    );
}

/// Two rml2016a sets made with `seed`: BPSK/QAM16, and BPSK/QPSK/QAM16/QAM64 (24 windows of
/// each class at 10 and 18 dB).
fn two_and_four_classes(dir: &Path, seed: &str) -> (PathBuf, PathBuf) {
    let (two, four) = (dir.join("two"), dir.join("four"));
    for (out, classes) in [(&two, "BPSK,QAM16"), (&four, "BPSK,QPSK,QAM16,QAM64")] {
        let args = [
            "gen",
            "--recipe",
            "rml2016a",
            "--classes",
            classes,
            "--per-class-snr",
            "24",
            "--snr",
            "10:18:8",
            "--seed",
            seed,
            "--out",
            arg(out),
        ];
        train_cli(&args);
    }
    (two, four)
}

#[test]
fn a_pretrained_encoder_under_a_fresh_head_is_probed_without_changing_it() {
    use specwatch::train::export::load_trained;
    let tmp = common::scratch();
    let (two, four) = two_and_four_classes(tmp.path(), "4");
    let (pretrained, probe) = (tmp.path().join("pretrained"), tmp.path().join("probe"));
    let common_args = [
        "train", "--arch", "resnet1d", "--width", "0.25", "--epochs", "1", "--batch", "32",
        "--seed", "3", "--quiet",
    ];
    let mut args = common_args.to_vec();
    args.extend(["--data", arg(&two), "--out", arg(&pretrained)]);
    train_cli(&args);
    let mut args = common_args.to_vec();
    args.extend([
        "--data",
        arg(&four),
        "--out",
        arg(&probe),
        "--encoder-from",
        arg(&pretrained),
        "--objective",
        r#"{"kind":"classify","freeze_encoder":true}"#,
    ]);
    train_cli(&args);

    let (_, before) = load_trained(&pretrained).expect("the pretrained run");
    let (record, after) = load_trained(&probe).expect("the probe run");
    assert_eq!(record.model.num_classes, 4);
    let init = record.init.expect("the warm start is recorded");
    assert!(init.encoder_only);
    assert_eq!(init.run, pretrained);
    // The encoder is the pretrained one, unchanged by the probe's training; the head is new.
    let mut dataset = Dataset::open(&four).unwrap();
    let windows = dataset.read_windows(0, 8).unwrap();
    let x = model_input(&record.train.prep, &windows, 1, 128, 8);
    let input = Tensor::<3>::from_data(TensorData::new(x, [8, 2, 128]), &Device::flex());
    let e_before: Vec<f32> = before
        .embedding(input.clone())
        .into_data()
        .try_into_vec()
        .unwrap();
    let e_after: Vec<f32> = after
        .embedding(input.clone())
        .into_data()
        .try_into_vec()
        .unwrap();
    assert_eq!(e_before, e_after, "the frozen encoder changed");
    assert_eq!(after.forward(input).dims(), [8, 4]);
    // Classes that differ are refused for a whole-model warm start, named.
    let out = Command::new(common::bin("specwatch-train"))
        .args(common_args)
        .args([
            "--data",
            arg(&four),
            "--out",
            arg(&tmp.path().join("whole")),
        ])
        .args(["--init-from", arg(&pretrained)])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("classes"), "{err}");
}

#[test]
fn heads_probed_on_cached_features_report_mean_and_sd_over_repeats() {
    let tmp = common::scratch();
    let (two, four) = two_and_four_classes(tmp.path(), "6");
    let encoder = tmp.path().join("encoder");
    train_cli(&[
        "train",
        "--arch",
        "resnet1d",
        "--width",
        "0.25",
        "--epochs",
        "1",
        "--batch",
        "32",
        "--seed",
        "3",
        "--quiet",
        "--data",
        arg(&two),
        "--out",
        arg(&encoder),
    ]);
    let probe = |data: &Path, extra: &[&str]| -> Value {
        let out = Command::new(common::bin("specwatch-train"))
            .args([
                "probe",
                "--encoder",
                arg(&encoder),
                "--data",
                arg(data),
                "--json",
            ])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("one JSON object")
    };
    let few = ["--labelled-per-cell", "3", "--repeats", "3", "--seed", "7"];
    let report = probe(&four, &few);
    assert_eq!(report["encoders_split"], false);
    // 4 classes × 2 SNRs × 3 labelled windows.
    assert_eq!(report["labelled_windows"], 24);
    let heads = report["heads"].as_array().unwrap();
    let names: Vec<&str> = heads.iter().map(|h| h["head"].as_str().unwrap()).collect();
    assert_eq!(names, ["prototype", "knn", "linear"]);
    for h in heads {
        let accs: Vec<f64> = h["accuracies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(accs.len(), 3);
        assert!(accs.iter().all(|a| (0.0..=1.0).contains(a)), "{h}");
        let mean = accs.iter().sum::<f64>() / 3.0;
        assert!((h["mean"].as_f64().unwrap() - mean).abs() < 1e-12, "{h}");
        let sd = (accs.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / 2.0).sqrt();
        assert!((h["sd"].as_f64().unwrap() - sd).abs() < 1e-12, "{h}");
        assert_eq!(h["mean_by_snr"].as_object().unwrap().len(), 2, "{h}");
    }
    // The same seed draws the same labelled windows: the same figures.
    assert_eq!(probe(&four, &few), report);
    // On the encoder's own dataset its own split is used, so no window it trained on is tested.
    let own = probe(&two, &["--heads", "prototype"]);
    assert_eq!(own["encoders_split"], true);
    let split: Value =
        serde_json::from_str(&std::fs::read_to_string(encoder.join("split.json")).unwrap())
            .unwrap();
    assert_eq!(own["test_windows"], split["test"].as_array().unwrap().len());
    assert_eq!(
        own["labelled_windows"],
        split["train"].as_array().unwrap().len()
    );
    // A head the tool does not know is refused by name.
    let out = Command::new(common::bin("specwatch-train"))
        .args(["probe", "--encoder", arg(&encoder), "--data", arg(&four)])
        .args(["--heads", "svm"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("'svm'"));
}

/// Every float tensor a module visits, in its order (parameters and running statistics).
struct Tensors(Vec<Vec<f32>>);

impl burn::module::ModuleVisitor for Tensors {
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
        self.0.push(param.val().into_data().try_into_vec().unwrap());
    }
}

#[test]
fn the_encoder_trains_at_its_own_multiple_of_the_heads_learning_rate() {
    use burn::module::Module;
    use specwatch::train::export::load_trained;
    let tmp = common::scratch();
    let (two, four) = two_and_four_classes(tmp.path(), "8");
    let base = [
        "train", "--arch", "resnet1d", "--width", "0.25", "--epochs", "1", "--batch", "32",
        "--seed", "3", "--quiet",
    ];
    let pretrained = tmp.path().join("pretrained");
    let mut args = base.to_vec();
    args.extend(["--data", arg(&two), "--out", arg(&pretrained)]);
    train_cli(&args);
    let first_weights = |run: &Path| {
        let (_, model) = load_trained(run).unwrap();
        let mut t = Tensors(Vec::new());
        model.visit(&mut t);
        t.0.into_iter().next().expect("a first parameter")
    };
    let mut runs = Vec::new();
    for (name, objective) in [
        ("still", r#"{"kind":"classify","encoder_lr_scale":0}"#),
        ("moving", r#"{"kind":"classify","encoder_lr_scale":1}"#),
    ] {
        let run = tmp.path().join(name);
        let mut args = base.to_vec();
        args.extend([
            "--data",
            arg(&four),
            "--out",
            arg(&run),
            "--encoder-from",
            arg(&pretrained),
            "--objective",
            objective,
        ]);
        train_cli(&args);
        runs.push(run);
    }
    // At a scale of 0 the encoder's first convolution is the pretrained one, to the bit; at 1
    // it trained with the head.
    assert_eq!(first_weights(&runs[0]), first_weights(&pretrained));
    assert_ne!(first_weights(&runs[1]), first_weights(&pretrained));
    let card: Value =
        serde_json::from_str(&std::fs::read_to_string(runs[0].join("config.json")).unwrap())
            .unwrap();
    assert_eq!(card["train"]["objective"]["encoder_lr_scale"], 0.0);
    let out = Command::new(common::bin("specwatch-train"))
        .args(base)
        .args(["--data", arg(&four), "--out", arg(&tmp.path().join("bad"))])
        .args([
            "--objective",
            r#"{"kind":"classify","encoder_lr_scale":-1}"#,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("encoder_lr_scale"));
}
