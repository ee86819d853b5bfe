//! Self-supervised pretraining end to end on a tiny model: a MoCo v3 run (`--objective moco_v3`,
//! two augmented views of each window, LARS) learns without reading a label — its validation
//! loss falls — and a linear probe on its frozen features classifies an easy two-class set
//! better than the same probe on the same encoder left at its random initialisation. The run
//! exports nothing by itself (it names the way to heads) but is an encoder for
//! `--encoder-from`.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::common::{self, specwatch_train};

fn arg(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

const VIEWS: &str = r#"[{"kind":"phase_rotation","p":1,"max_deg":180},
    {"kind":"awgn","p":1,"min_snr_db":5,"max_snr_db":20},
    {"kind":"time_shift","p":1,"max_samples":64}]"#;

/// Pretrains into `out` at learning rate `lr` (1e-12: the encoder stays as initialised).
fn pretrain(data: &Path, out: &Path, epochs: &str, lr: &str) {
    specwatch_train(&[
        "train",
        "--arch",
        "resnet1d",
        "--width",
        "0.25",
        "--epochs",
        epochs,
        "--batch",
        "64",
        "--lr",
        lr,
        "--seed",
        "3",
        "--quiet",
        "--objective",
        "moco_v3",
        "--optimizer",
        "adam",
        "--augment",
        VIEWS,
        "--data",
        arg(data),
        "--out",
        arg(out),
    ]);
}

/// The linear probe's mean test accuracy on the encoder of `run`.
fn linear_probe(run: &Path, data: &Path) -> f64 {
    let json = specwatch_train(&[
        "probe",
        "--encoder",
        arg(run),
        "--data",
        arg(data),
        "--heads",
        "linear",
        "--labelled-per-cell",
        "20",
        "--repeats",
        "3",
        "--json",
    ]);
    let report: Value = serde_json::from_str(&json).expect("probe --json");
    let heads = report["heads"].as_array().expect("heads");
    heads[0]["mean"].as_f64().expect("mean accuracy")
}

#[test]
fn moco_v3_pretraining_learns_features_a_linear_probe_reads_better_than_random_ones() {
    let tmp = common::scratch();
    let data = tmp.path().join("easy");
    specwatch_train(&[
        "gen",
        "--recipe",
        "rml2016a",
        "--classes",
        "BPSK,QAM16",
        "--per-class-snr",
        "200",
        "--snr",
        "10:18:8",
        "--seed",
        "5",
        "--quiet",
        "--out",
        arg(&data),
    ]);
    let (pretrained, random) = (tmp.path().join("pre"), tmp.path().join("random"));
    pretrain(&data, &pretrained, "8", "0.003");
    pretrain(&data, &random, "1", "1e-12");

    // Its validation loss (fixed views, fixed temperature) falls.
    let metrics = std::fs::read_to_string(pretrained.join("metrics.jsonl")).unwrap();
    let val: Vec<f64> = metrics
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["val_loss"]
                .as_f64()
                .unwrap()
        })
        .collect();
    assert_eq!(val.len(), 8);
    assert!(
        val[7] < 0.97 * val[0],
        "validation loss did not fall: {val:?}"
    );
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(pretrained.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["train"]["objective"]["kind"], "moco_v3");
    assert_eq!(config["train"]["objective"]["momentum"], 0.996);
    assert_eq!(config["train"]["objective"]["temperature"]["min"], 0.1);

    let (learnt, initial) = (
        linear_probe(&pretrained, &data),
        linear_probe(&random, &data),
    );
    assert!(
        learnt > initial + 0.05,
        "linear probe: pretrained {learnt:.3}, random encoder {initial:.3}"
    );

    // Nothing is exported from a pretraining run; the message names the way to heads.
    let out = Command::new(common::bin("specwatch-train"))
        .args(["export", "--run", arg(&pretrained)])
        .args(["--out", arg(&tmp.path().join("models").join("moco"))])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--encoder-from"), "{err}");

    // Its encoder warm-starts a classifier under a fresh head.
    specwatch_train(&[
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
        arg(&data),
        "--out",
        arg(&tmp.path().join("head")),
        "--encoder-from",
        arg(&pretrained),
        "--objective",
        r#"{"kind":"classify","freeze_encoder":true}"#,
    ]);
}
