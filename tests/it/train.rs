//! Training end to end on a tiny, easy dataset: the loss falls, validation accuracy is far above
//! chance, the run folder holds its files, `--resume` continues the epoch count, `--init-from`
//! starts from an earlier run's weights or an exported model's (and refuses one that does not
//! fit), and a dataset folder without a manifest is refused with a clear message.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::Digest;

use specwatch::dsp::repr::Representation;
use specwatch::iq::dataset::{DatasetSource, DatasetWriter, Manifest};
use specwatch::synth::RecipeOptions;
use specwatch::synth::recipe::Recipe;
use specwatch::synth::window_rng;
use specwatch::train::data::Split;
use specwatch::train::fit::{FitOptions, ResumeRecord, RunRecord, TrainConfig, fit, read_metrics};
use specwatch::train::source::Residency;

use crate::common;

/// The two classes: digital modulations whose constellations differ plainly at high SNR.
const CLASSES: [&str; 2] = ["BPSK", "QAM16"];
const SNRS_DB: [f32; 3] = [10.0, 14.0, 18.0];
/// Windows per (class, SNR).
const PER_CELL: usize = 160;
/// Validation accuracy the tiny model must reach (chance is 0.5).
const MIN_VAL_ACC: f64 = 0.8;

/// Writes a 2-class rml2016a-channel dataset laid out round-robin over class and SNR.
fn write_two_class_dataset(dir: &Path) -> Manifest {
    let recipe = Recipe::by_name("rml2016a", &RecipeOptions::default(), 7).unwrap();
    let class_idx: Vec<usize> = CLASSES
        .iter()
        .map(|c| recipe.classes.iter().position(|r| r == c).unwrap())
        .collect();
    let total = CLASSES.len() * SNRS_DB.len() * PER_CELL;
    let mut w =
        DatasetWriter::create(dir, total, 1, recipe.window_len, CLASSES.len(), false).unwrap();
    for i in 0..total {
        let class = i % CLASSES.len();
        let snr = SNRS_DB[(i / CLASSES.len()) % SNRS_DB.len()];
        let win = recipe.generate(&mut window_rng(11, i as u64), class_idx[class], snr);
        w.push(&win.iq, class, win.snr_db, None).unwrap();
    }
    w.finish(Manifest {
        format: String::new(),
        source: DatasetSource::Synth {
            recipe: "rml2016a (BPSK, QAM16 subset)".into(),
            params: serde_json::json!({ "snr_db": SNRS_DB, "per_cell": PER_CELL }),
        },
        seed: Some(11),
        generator_version: "tests/it/train.rs".into(),
        classes: CLASSES.iter().map(|c| c.to_string()).collect(),
        window_len: recipe.window_len,
        channels: 1,
        sample_rate_hz: Some(recipe.sample_rate_hz),
        snr_grid_db: SNRS_DB.to_vec(),
        snr_definition: recipe.snr_definition(),
        count: 0,
        counts_per_class: Default::default(),
        has_angles: false,
        array: None,
        notes: vec![],
    })
    .unwrap()
}

/// A quarter-width ResNet-1D (8 → 8/16/16/24 channels) that trains in seconds.
fn small_config(data: &Path, epochs: usize) -> TrainConfig {
    let mut c = TrainConfig::new("resnet1d", data);
    c.epochs = epochs;
    c.batch_size = 32;
    c.lr = 3e-3;
    c.width = 0.25;
    c.dropout = 0.1;
    c.patience = 10;
    c.seed = 3;
    c
}

/// The dataset `DIR/ds` and a first run `DIR/first` trained on it for `epochs` epochs, which the
/// warm-start tests start from.
fn dataset_and_first_run(dir: &Path, epochs: usize) -> (PathBuf, PathBuf) {
    let data = dir.join("ds");
    write_two_class_dataset(&data);
    let first = dir.join("first");
    fit(
        &small_config(&data, epochs),
        &first,
        FitOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    (data, first)
}

/// SHA-256 of a file, hex.
fn sha256_of(path: &Path) -> String {
    sha2::Sha256::digest(std::fs::read(path).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn resnet1d_learns_two_easy_classes_writes_its_run_and_resumes() {
    let tmp = common::scratch();
    let data = tmp.path().join("ds");
    write_two_class_dataset(&data);
    let run = tmp.path().join("run");

    let mut seen = Vec::new();
    let report = fit(
        &small_config(&data, 3),
        &run,
        FitOptions::default(),
        &mut |m| seen.push(m.epoch),
    )
    .unwrap();
    assert_eq!(seen, vec![1, 2, 3]);
    let h = &report.history;
    for m in h {
        eprintln!(
            "epoch {}: train loss {:.4} acc {:.3} | val loss {:.4} acc {:.3} | {:.0} samples/s",
            m.epoch, m.train_loss, m.train_acc, m.val_loss, m.val_acc, m.train_samples_per_s
        );
        assert!(m.train_samples_per_s > 0.0);
    }
    assert!(
        h[2].train_loss < h[0].train_loss,
        "training loss did not fall: {h:?}"
    );
    let best_acc = h.iter().map(|m| m.val_acc).fold(0.0, f64::max);
    assert!(
        best_acc >= MIN_VAL_ACC,
        "validation accuracy {best_acc} is below {MIN_VAL_ACC} (chance 0.5)"
    );

    for file in [
        "config.json",
        "split.json",
        "metrics.jsonl",
        "best.bpk",
        "checkpoint/model.bpk",
        "checkpoint/optim.bpk",
        "checkpoint/state.json",
    ] {
        assert!(run.join(file).is_file(), "run folder lacks {file}");
    }
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        config["dataset"]["manifest_digest"].as_str().unwrap(),
        Manifest::digest_of_file(&data).unwrap()
    );
    assert_eq!(config["train"]["batch_size"], 32);

    // The split is disjoint, complete, and stratified: each (class, SNR) cell of 160 windows
    // gives 24 to validation and 24 to test.
    let split = Split::load(&run.join("split.json")).unwrap();
    let mut all: Vec<u32> = [&split.train, &split.val, &split.test]
        .into_iter()
        .flatten()
        .copied()
        .collect();
    all.sort_unstable();
    assert_eq!(all, (0..960).collect::<Vec<u32>>());
    assert_eq!(split.val.len(), 6 * 24);
    assert_eq!(split.test.len(), 6 * 24);

    // Resume through the CLI: the epoch count continues from the checkpoint.
    let out = Command::new(common::bin("specwatch-train"))
        .args(["train", "--out", run.to_str().unwrap(), "--resume"])
        .args(["--epochs", "5", "--quiet"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "resume failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("epoch   4:"), "{stdout}");
    assert!(!stdout.contains("epoch   1:"), "{stdout}");
    let epochs: Vec<usize> = read_metrics(&run)
        .unwrap()
        .iter()
        .map(|m| m.epoch)
        .collect();
    assert_eq!(epochs, vec![1, 2, 3, 4, 5]);

    // The new epoch count is recorded beside the first command (the cosine schedule followed it
    // from epoch 4 on), and the card says so.
    let record = RunRecord::load(&run).unwrap();
    assert_eq!(
        record.train.epochs, 3,
        "config.json keeps the first command"
    );
    assert_eq!(
        record.resumes,
        vec![ResumeRecord {
            after_epoch: 3,
            epochs: 5,
            patience: record.train.patience,
        }]
    );
    if common::runtime_available() {
        let card = tmp.path().join("card");
        let out = Command::new(common::bin("specwatch-train"))
            .args(["export", "--run", run.to_str().unwrap()])
            .args(["--out", card.to_str().unwrap(), "--name", "two"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "export failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let card: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(card.with_extension("json")).unwrap())
                .unwrap();
        let training = &card["training"];
        assert_eq!(training["epochs_planned"], 5, "{training}");
        assert_eq!(training["epochs_run"], 5, "{training}");
        assert_eq!(training["resumes"][0]["after_epoch"], 3, "{training}");
        assert_eq!(training["resumes"][0]["epochs"], 5, "{training}");
    }

    // A fresh run into the same folder is refused rather than overwriting it.
    let err = fit(
        &small_config(&data, 1),
        &run,
        FitOptions::default(),
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("already holds a run"), "{err}");
}

#[test]
fn training_refuses_a_dataset_folder_without_manifest() {
    let tmp = common::scratch();
    let data = tmp.path().join("ds");
    write_two_class_dataset(&data);
    std::fs::remove_file(data.join("manifest.json")).unwrap();
    let out = Command::new(common::bin("specwatch-train"))
        .args([
            "train",
            "--arch",
            "vtcnn2",
            "--data",
            data.to_str().unwrap(),
        ])
        .args(["--out", tmp.path().join("run").to_str().unwrap(), "--quiet"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no manifest.json"), "{err}");
    assert!(err.contains(data.to_str().unwrap()), "{err}");
}

#[test]
fn training_refuses_an_unknown_architecture() {
    let tmp = common::scratch();
    let err = fit(
        &TrainConfig::new("resnet9000", tmp.path()),
        &tmp.path().join("run"),
        FitOptions::default(),
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("unknown architecture 'resnet9000'"), "{err}");
    assert!(err.contains("vtcnn2"), "{err}");
}

#[test]
fn a_warm_started_run_begins_with_the_earlier_runs_weights_and_records_them() {
    let tmp = common::scratch();
    let (data, first) = dataset_and_first_run(tmp.path(), 3);

    // With a learning rate of 1e-9 one epoch cannot move the weights: a warm-started run scores
    // what the first run's best weights score, a randomly initialised one scores chance.
    let frozen = |init_from: Option<&Path>| {
        let mut c = small_config(&data, 1);
        c.lr = 1e-9;
        c.init_from = init_from.map(Path::to_path_buf);
        c
    };
    let warm = tmp.path().join("warm");
    let warm_acc = fit(
        &frozen(Some(&first)),
        &warm,
        FitOptions::default(),
        &mut |_| {},
    )
    .unwrap()
    .history[0]
        .val_acc;
    let cold_acc = fit(
        &frozen(None),
        &tmp.path().join("cold"),
        FitOptions::default(),
        &mut |_| {},
    )
    .unwrap()
    .history[0]
        .val_acc;
    assert!(
        warm_acc >= MIN_VAL_ACC && cold_acc < 0.7,
        "warm start scored {warm_acc}, random initialisation {cold_acc}"
    );

    let record = RunRecord::load(&warm).unwrap();
    let init = record.init.expect("config.json records the warm start");
    assert_eq!(init.run, first);
    assert_eq!(init.weights_sha256, sha256_of(&first.join("best.bpk")));
    assert_eq!(
        init.dataset_manifest_digest,
        Manifest::digest_of_file(&data).unwrap()
    );
    let best_epoch = read_metrics(&first)
        .unwrap()
        .iter()
        .rev()
        .find(|m| m.best)
        .unwrap()
        .epoch;
    assert_eq!(init.best_epoch, best_epoch);
    assert_eq!(record.train.init_from.as_deref(), Some(first.as_path()));

    if common::runtime_available() {
        let card = tmp.path().join("card");
        let out = Command::new(common::bin("specwatch-train"))
            .args(["export", "--run", warm.to_str().unwrap()])
            .args(["--out", card.to_str().unwrap(), "--name", "warm"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "export failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let card: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(card.with_extension("json")).unwrap())
                .unwrap();
        let training = &card["training"];
        assert_eq!(
            training["init_from"]["weights_sha256"].as_str(),
            Some(init.weights_sha256.as_str()),
            "{training}"
        );
        let command = training["command"].as_str().unwrap();
        assert!(
            command.contains(&format!("--init-from {}", first.display())),
            "{command}"
        );
    }
}

#[test]
fn a_warm_start_from_an_incompatible_run_is_refused_with_the_reason() {
    let tmp = common::scratch();
    let (data, first) = dataset_and_first_run(tmp.path(), 1);
    let refused = |config: TrainConfig, run: &str| {
        let run = tmp.path().join(run);
        let err = fit(&config, &run, FitOptions::default(), &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(
            !run.join("config.json").exists(),
            "a refused run wrote {run:?}"
        );
        err
    };
    let with_init = |mut c: TrainConfig| {
        c.init_from = Some(first.clone());
        c
    };

    let mut wider = with_init(small_config(&data, 1));
    wider.width = 0.5;
    let err = refused(wider, "wider");
    assert!(
        err.contains("--init-from") && err.contains("width 0.25"),
        "{err}"
    );

    let mut gru = with_init(small_config(&data, 1));
    gru.arch = "gru2".into();
    let err = refused(gru, "gru");
    assert!(err.contains("it trained 'resnet1d'"), "{err}");

    // The same windows with the class names in the other order.
    let swapped = tmp.path().join("swapped");
    write_two_class_dataset(&swapped);
    let manifest = swapped.join("manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let mut m: serde_json::Value = serde_json::from_str(&text).unwrap();
    m["classes"] = serde_json::json!(["QAM16", "BPSK"]);
    std::fs::write(&manifest, serde_json::to_string(&m).unwrap()).unwrap();
    let err = refused(with_init(small_config(&swapped, 1)), "swapped");
    assert!(
        err.contains("[BPSK, QAM16]") && err.contains("[QAM16, BPSK]"),
        "{err}"
    );

    // On the same dataset another split would validate and test on windows `first` trained on.
    let mut resplit = with_init(small_config(&data, 1));
    resplit.seed = 4;
    let err = refused(resplit, "resplit");
    assert!(
        err.contains("split with seed 3") && err.contains("validation and test"),
        "{err}"
    );

    // Also through a run in between that trained on another dataset.
    let other = tmp.path().join("other");
    write_two_class_dataset(&other);
    let manifest = other.join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    m["notes"] = serde_json::json!(["another dataset"]);
    std::fs::write(&manifest, serde_json::to_string(&m).unwrap()).unwrap();
    let between = tmp.path().join("between");
    let mut c = with_init(small_config(&other, 1));
    c.seed = 5;
    fit(&c, &between, FitOptions::default(), &mut |_| {}).unwrap();
    let mut resplit = small_config(&data, 1);
    resplit.seed = 4;
    resplit.init_from = Some(between);
    let err = refused(resplit, "resplit-through");
    assert!(
        err.contains(&format!("{} trained on this dataset", first.display())),
        "{err}"
    );

    let mut nowhere = small_config(&data, 1);
    nowhere.init_from = Some(tmp.path().join("nowhere"));
    let err = refused(nowhere, "nowhere");
    assert!(err.contains("has no config.json"), "{err}");

    // The CLI takes --init-from only for a fresh run.
    let out = Command::new(common::bin("specwatch-train"))
        .args(["train", "--out", first.to_str().unwrap(), "--resume"])
        .args(["--init-from", first.to_str().unwrap(), "--quiet"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--init-from is not accepted with --resume"),
        "{err}"
    );
}

#[test]
fn a_warm_start_from_an_exported_model_reads_its_weights_back_from_the_onnx_graph() {
    // The export measures the model through ONNX Runtime.
    if !common::runtime_available() {
        return;
    }
    let tmp = common::scratch();
    let (data, first) = dataset_and_first_run(tmp.path(), 3);
    let export = |run: &Path, out: &Path, name: &str| {
        let out = Command::new(common::bin("specwatch-train"))
            .args(["export", "--run", run.to_str().unwrap()])
            .args(["--out", out.to_str().unwrap(), "--name", name])
            .args(["--version", "0.4.0"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "export failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let models = tmp.path().join("models");
    export(&first, &models.join("first"), "first");
    let card_path = models.join("first.json");
    let onnx_path = models.join("first.onnx");
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&card_path).unwrap()).unwrap();

    // With a learning rate of 1e-9 the epoch cannot move the weights: the run scores what the
    // exported model scores (a random initialisation scores chance, see the test above).
    let mut frozen = small_config(&data, 1);
    frozen.lr = 1e-9;
    frozen.init_from = Some(card_path.clone());
    let warm = tmp.path().join("warm");
    let report = fit(&frozen, &warm, FitOptions::default(), &mut |_| {}).unwrap();
    assert!(
        report.history[0].val_acc >= MIN_VAL_ACC,
        "started from the exported model, the run scored {}",
        report.history[0].val_acc
    );
    let init = RunRecord::load(&warm).unwrap().init.unwrap();
    assert_eq!(init.run, card_path);
    assert_eq!(init.model.as_deref(), Some("first 0.4.0"));
    assert_eq!(init.weights_sha256, sha256_of(&onnx_path));
    assert_eq!(
        init.best_epoch as u64,
        card["training"]["best_epoch"].as_u64().unwrap()
    );
    assert_eq!(
        init.dataset_manifest_digest,
        Manifest::digest_of_file(&data).unwrap()
    );
    assert_eq!((init.split_seed, init.max_windows), (3, None));

    // The next card carries the model it started from.
    export(&warm, &models.join("warm"), "warm");
    let warm_card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(models.join("warm.json")).unwrap()).unwrap();
    assert_eq!(
        warm_card["training"]["init_from"]["model"].as_str(),
        Some("first 0.4.0"),
        "{}",
        warm_card["training"]
    );

    let refused = |config: TrainConfig, run: &str| {
        let err = fit(
            &config,
            &tmp.path().join(run),
            FitOptions::default(),
            &mut |_| {},
        )
        .unwrap_err()
        .to_string();
        assert!(!tmp.path().join(run).join("config.json").exists());
        err
    };
    // The card's split is known: another split of its dataset is refused, also when the
    // .onnx file is named instead of the card.
    let mut resplit = small_config(&data, 1);
    resplit.seed = 4;
    resplit.init_from = Some(onnx_path.clone());
    let err = refused(resplit, "resplit");
    assert!(
        err.contains("split with seed 3") && err.contains("validation and test"),
        "{err}"
    );
    let mut gru = small_config(&data, 1);
    gru.arch = "gru2".into();
    gru.init_from = Some(card_path.clone());
    let err = refused(gru, "gru");
    assert!(
        err.contains("it is a 'resnet1d' model") && err.contains("--arch resnet1d"),
        "{err}"
    );
    let mut wider = small_config(&data, 1);
    wider.width = 0.5;
    wider.init_from = Some(card_path.clone());
    let err = refused(wider, "wider");
    assert!(err.contains("--width 0.25"), "{err}");

    // A deeper resnet1d starts from the exported one: the added residual blocks begin as the
    // identity, so the frozen deeper run scores what the frozen run of the same depth did.
    let mut deeper = small_config(&data, 1);
    deeper.lr = 1e-9;
    deeper.arch_options = specwatch::train::models::parse_arch_opts(&["depth=3".into()]).unwrap();
    deeper.init_from = Some(card_path.clone());
    let deep = tmp.path().join("deep");
    let deep_report = fit(&deeper, &deep, FitOptions::default(), &mut |_| {}).unwrap();
    let (same, deepened) = (&report.history[0], &deep_report.history[0]);
    assert_eq!(same.val_acc, deepened.val_acc);
    assert!(
        (same.val_loss - deepened.val_loss).abs() < 1e-4,
        "depth 1: val loss {}, deepened to 3: {}",
        same.val_loss,
        deepened.val_loss
    );
    export(&deep, &models.join("deep"), "deep");
    let deep_card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(models.join("deep.json")).unwrap()).unwrap();
    assert_eq!(
        deep_card["training"]["arch_options"]["depth"].as_u64(),
        Some(3)
    );
    let command = deep_card["training"]["command"].as_str().unwrap();
    assert!(command.contains("--arch-opt depth=3"), "{command}");
    // ... and is never made shallower again; other architectures have no depth to set.
    let mut shallower = small_config(&data, 1);
    shallower.arch_options =
        specwatch::train::models::parse_arch_opts(&["depth=2".into()]).unwrap();
    shallower.init_from = Some(models.join("deep.json"));
    let err = refused(shallower, "shallower");
    assert!(
        err.contains("depth 3") && err.contains("never shallower"),
        "{err}"
    );
    let mut deep_gru = small_config(&data, 1);
    deep_gru.arch = "gru2".into();
    deep_gru.arch_options = specwatch::train::models::parse_arch_opts(&["depth=2".into()]).unwrap();
    let err = refused(deep_gru, "deep_gru");
    assert!(
        err.contains("depth") && err.contains("gru2's options"),
        "{err}"
    );

    // Amplitude rows are added the same way: the stem's weights for them start at 0, so frozen
    // runs that gain them — alone, or with two more blocks per stage — score what the frozen
    // run without them did.
    for (run, depth) in [("amp", 1), ("amp_deep", 3)] {
        let mut amplitude = small_config(&data, 1);
        amplitude.lr = 1e-9;
        amplitude.arch_options = specwatch::train::models::parse_arch_opts(&[
            format!("depth={depth}"),
            "amplitude_rows=true".into(),
        ])
        .unwrap();
        amplitude.init_from = Some(card_path.clone());
        let amp_report = fit(
            &amplitude,
            &tmp.path().join(run),
            FitOptions::default(),
            &mut |_| {},
        )
        .unwrap();
        let with_rows = &amp_report.history[0];
        assert_eq!(same.val_acc, with_rows.val_acc, "{run}");
        assert!(
            (same.val_loss - with_rows.val_loss).abs() < 1e-4,
            "{run}: without amplitude rows val loss {}, with them {}",
            same.val_loss,
            with_rows.val_loss
        );
    }
    export(&tmp.path().join("amp"), &models.join("amp"), "amp");
    let amp_card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(models.join("amp.json")).unwrap()).unwrap();
    assert_eq!(
        amp_card["training"]["arch_options"]["amplitude_rows"].as_bool(),
        Some(true)
    );
    let command = amp_card["training"]["command"].as_str().unwrap();
    assert!(
        command.contains("--arch-opt amplitude_rows=true"),
        "{command}"
    );
    // Its weights, amplitude rows' included, are read back from its graph to train on.
    let mut again = small_config(&data, 1);
    again.lr = 1e-9;
    again.arch_options =
        specwatch::train::models::parse_arch_opts(&["amplitude_rows=true".into()]).unwrap();
    again.init_from = Some(models.join("amp.json"));
    let again_report = fit(
        &again,
        &tmp.path().join("amp_again"),
        FitOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    assert!(
        again_report.history[0].val_acc >= MIN_VAL_ACC,
        "started from the exported model with amplitude rows, the run scored {}",
        again_report.history[0].val_acc
    );
    // ... never taken away; computed from I/Q rows only, and by resnet1d only.
    let mut without = small_config(&data, 1);
    without.init_from = Some(models.join("amp.json"));
    let err = refused(without, "without");
    assert!(
        err.contains("amplitude rows") && err.contains("never removed"),
        "{err}"
    );
    let mut amp_phase = small_config(&data, 1);
    amp_phase.arch_options =
        specwatch::train::models::parse_arch_opts(&["amplitude_rows=true".into()]).unwrap();
    amp_phase.prep.representation = Representation::AmpPhase;
    let err = refused(amp_phase, "amp_phase");
    assert!(
        err.contains("amplitude_rows") && err.contains("--representation iq"),
        "{err}"
    );
    let mut amp_gru = small_config(&data, 1);
    amp_gru.arch = "gru2".into();
    amp_gru.arch_options =
        specwatch::train::models::parse_arch_opts(&["amplitude_rows=true".into()]).unwrap();
    let err = refused(amp_gru, "amp_gru");
    assert!(
        err.contains("amplitude_rows") && err.contains("gru2's options"),
        "{err}"
    );
    // A graph that is not the card's architecture's export.
    let broken = tmp.path().join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::copy(&card_path, broken.join("first.json")).unwrap();
    std::fs::write(broken.join("first.onnx"), b"\x08\x08garbage").unwrap();
    let mut bad = small_config(&data, 1);
    bad.init_from = Some(broken.join("first.json"));
    let err = refused(bad, "bad");
    assert!(
        err.contains(&broken.join("first.onnx").display().to_string()),
        "{err}"
    );
}

/// The metrics a run's epochs measured, leaving out its throughput and wall time.
fn learning_curve(run: &Path) -> Vec<(f64, f64, f64, f64, f64)> {
    read_metrics(run)
        .unwrap()
        .iter()
        .map(|m| (m.train_loss, m.train_acc, m.val_loss, m.val_acc, m.lr))
        .collect()
}

/// Trains the small config's run through the CLI, in a process of its own: burn's random
/// draws (initialisation, dropout) come from one generator per process, which the tests of this
/// binary running in parallel would share.
fn train_alone(data: &Path, out: &Path, extra: &[&str]) {
    let out = Command::new(common::bin("specwatch-train"))
        .args([
            "train", "--arch", "resnet1d", "--width", "0.25", "--epochs", "2",
        ])
        .args([
            "--batch",
            "32",
            "--lr",
            "0.003",
            "--dropout",
            "0.1",
            "--seed",
            "3",
        ])
        .args(["--quiet", "--data"])
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn streaming_the_windows_from_disk_trains_exactly_as_holding_them_in_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("ds");
    write_two_class_dataset(&data);
    let (memory, stream) = (tmp.path().join("memory"), tmp.path().join("stream"));
    train_alone(&data, &memory, &[]);
    train_alone(&data, &stream, &["--residency", "stream"]);
    // Every loss and accuracy to the last bit of an f64, epoch for epoch.
    assert_eq!(learning_curve(&memory), learning_curve(&stream));
    let record = RunRecord::load(&stream).unwrap();
    assert_eq!(record.train.prep.residency, Residency::Stream);
    // A run may resume with its windows held the other way.
    let out = Command::new(common::bin("specwatch-train"))
        .args(["train", "--resume", "--epochs", "3", "--quiet", "--out"])
        .arg(&memory)
        .args(["--residency", "stream"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(read_metrics(&memory).unwrap().len(), 3);
}

#[test]
fn the_objective_is_chosen_recorded_and_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("ds");
    write_two_class_dataset(&data);
    // Focal loss with γ = 0 and no class weights is cross-entropy: the same run, step for step.
    let plain = tmp.path().join("plain");
    train_alone(&data, &plain, &[]);
    let focal0 = tmp.path().join("focal0");
    train_alone(
        &data,
        &focal0,
        &[
            "--objective",
            r#"{"kind":"classify","loss":{"name":"focal","gamma":0}}"#,
        ],
    );
    let (a, b) = (learning_curve(&plain), learning_curve(&focal0));
    for (x, y) in a.iter().zip(&b) {
        assert!(
            (x.0 - y.0).abs() < 1e-4 && (x.2 - y.2).abs() < 1e-4,
            "{x:?} vs {y:?}"
        );
    }
    // γ = 2 trains too, and the config and the card say which loss it was.
    let focal2 = tmp.path().join("focal2");
    train_alone(
        &data,
        &focal2,
        &[
            "--objective",
            r#"{"kind":"classify","loss":{"name":"focal","gamma":2}}"#,
        ],
    );
    assert_ne!(
        learning_curve(&focal2),
        learning_curve(&plain),
        "focal loss with γ = 2 trained exactly as cross-entropy"
    );
    let record = RunRecord::load(&focal2).unwrap();
    assert_eq!(
        serde_json::to_value(&record.train.objective).unwrap(),
        serde_json::json!({"kind": "classify", "loss": {"name": "focal", "gamma": 2.0}})
    );
    let models = tmp.path().join("models");
    let out = Command::new(common::bin("specwatch-train"))
        .args(["export", "--run"])
        .arg(&focal2)
        .arg("--out")
        .arg(models.join("focal2"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(models.join("focal2.json")).unwrap())
            .unwrap();
    assert_eq!(card["training"]["objective"]["loss"]["name"], "focal");
    let command = card["training"]["command"].as_str().unwrap();
    assert!(command.contains("--objective '{"), "{command}");
    // A misspelt setting is refused, naming it.
    let out = Command::new(common::bin("specwatch-train"))
        .args(["train", "--arch", "resnet1d", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(tmp.path().join("bad"))
        .args([
            "--objective",
            r#"{"kind":"classify","loss":{"name":"focal","gama":2}}"#,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--objective") && err.contains("gama"), "{err}");
    let mut negative = small_config(&data, 1);
    negative.objective =
        serde_json::from_str(r#"{"kind": "classify", "loss": {"name": "focal", "gamma": -1.0}}"#)
            .unwrap();
    let err = fit(
        &negative,
        &tmp.path().join("neg"),
        FitOptions::default(),
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("focal_gamma"), "{err}");
}

#[test]
fn the_optimizer_is_chosen_recorded_and_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("ds");
    write_two_class_dataset(&data);
    let adam = tmp.path().join("adam");
    train_alone(&data, &adam, &[]);
    for (name, arg) in [
        ("sgd", r#"{"name":"sgd","momentum":0.9,"nesterov":true}"#),
        ("lamb", "lamb"),
    ] {
        let run = tmp.path().join(name);
        train_alone(&data, &run, &["--optimizer", arg]);
        // The same run but for the optimiser: the updates, and so the losses, differ.
        assert_ne!(learning_curve(&run)[0], learning_curve(&adam)[0], "{name}");
        let record = RunRecord::load(&run).unwrap();
        let json = serde_json::to_value(record.train.optimizer).unwrap();
        assert_eq!(json["name"], name);
        let metrics = read_metrics(&run).unwrap();
        assert!(metrics[0].train_loss.is_finite(), "{name}: {metrics:?}");
    }
    let out = Command::new(common::bin("specwatch-train"))
        .args(["train", "--arch", "resnet1d", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(tmp.path().join("bad"))
        .args(["--optimizer", r#"{"name":"sgd","momentum":1.5}"#])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("'optimizer'") && err.contains("momentum"),
        "{err}"
    );
    let out = Command::new(common::bin("specwatch-train"))
        .args(["train", "--arch", "resnet1d", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(tmp.path().join("bad2"))
        .args(["--optimizer", "adagrad"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--optimizer is 'adagrad'"), "{err}");
}

#[test]
fn augmented_training_is_recorded_and_draws_the_same_augmentations_run_after_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("ds");
    write_two_class_dataset(&data);
    let pipeline = r#"[{"kind":"phase_rotation","p":1,"max_deg":180},
                       {"kind":"awgn","p":0.5,"min_snr_db":5,"max_snr_db":15}]"#;
    let (whole, again, plain) = (
        tmp.path().join("whole"),
        tmp.path().join("again"),
        tmp.path().join("plain"),
    );
    train_alone(&data, &whole, &["--augment", pipeline]);
    train_alone(
        &data,
        &again,
        &["--augment", pipeline, "--residency", "stream"],
    );
    train_alone(&data, &plain, &[]);
    // The draws are keyed by (seed, epoch, window), not by the order of reading or batching.
    let (w, a, p) = (
        learning_curve(&whole),
        learning_curve(&again),
        learning_curve(&plain),
    );
    assert_eq!(w, a);
    assert_ne!(
        w[0].0, p[0].0,
        "augmented and plain first epochs trained the same"
    );
    let record = RunRecord::load(&whole).unwrap();
    assert_eq!(record.train.augment.steps().len(), 2);
    assert_eq!(record.train.augment.steps()[0].kind(), "phase_rotation");
    // A bad pipeline is refused, naming the augmentation and the parameter.
    let out = Command::new(common::bin("specwatch-train"))
        .args(["train", "--arch", "resnet1d", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(tmp.path().join("bad"))
        .args([
            "--augment",
            r#"[{"kind":"awgn","p":2,"min_snr_db":0,"max_snr_db":1}]"#,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--augment") && err.contains("awgn"), "{err}");
}

#[test]
fn label_budgets_and_balanced_sampling_are_run_settings() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("ds");
    write_two_class_dataset(&data);
    let few = tmp.path().join("few");
    train_alone(
        &data,
        &few,
        &["--labelled-per-cell", "8", "--sampling", "balanced"],
    );
    // The same labelled windows visited in a shuffled order instead: other batches, other
    // losses, the same 48 windows an epoch.
    let few_shuffled = tmp.path().join("few_shuffled");
    train_alone(&data, &few_shuffled, &["--labelled-per-cell", "8"]);
    assert_ne!(learning_curve(&few), learning_curve(&few_shuffled));
    let record = RunRecord::load(&few).unwrap();
    assert_eq!(record.train.labelled_per_cell, Some(8));
    assert_eq!(
        serde_json::to_value(record.train.sampling).unwrap(),
        "balanced"
    );
    // 8 windows of each of 2 classes × 3 SNRs: each epoch's accuracy counts 48 windows.
    for m in read_metrics(&few)
        .unwrap()
        .into_iter()
        .chain(read_metrics(&few_shuffled).unwrap())
    {
        let hits = m.train_acc * 48.0;
        assert!((hits - hits.round()).abs() < 1e-9, "{m:?}");
    }
    let full = tmp.path().join("full");
    train_alone(&data, &full, &[]);
    let split = Split::load(&full.join("split.json")).unwrap();
    assert!(split.train.len() > 200, "{}", split.train.len());
    // More labelled windows than a cell holds is refused, naming the cell.
    let out = Command::new(common::bin("specwatch-train"))
        .args(["train", "--arch", "resnet1d", "--quiet", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(tmp.path().join("too_many"))
        .args(["--labelled-per-cell", "100000"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("labelled-per-cell") && err.contains("class"),
        "{err}"
    );
    let out = Command::new(common::bin("specwatch-train"))
        .args(["train", "--arch", "resnet1d", "--quiet", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(tmp.path().join("bad"))
        .args(["--sampling", "random"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--sampling is 'random'"));
}
