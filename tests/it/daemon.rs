//! The daemon: config validation, the flowgraph on replayed and synthetic sources (golden
//! detections), failure modes (corrupt capture, NaN samples, card/graph mismatch), and
//! `specwatch run` end to end — API, systemd notifications, durability across `kill -9`,
//! clean exit on SIGTERM.
//!
//! Fixtures: `tests/data/tones.npy` (one channel) and `tests/data/array4.npy` (four channels,
//! a plane wave on the 2×2 array), each with its sidecar (truth) and golden detections
//! (`*.golden.json`), made by [`common::fixture`] — `fixtures_are_what_the_generator_makes`
//! checks them, and `SPECWATCH_UPDATE_FIXTURES=1` rewrites captures and goldens. The model is
//! the fixture band classifier, built in each test (never a default model).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use specwatch::config::Config;
use specwatch::daemon::{ReplayRequest, replay};
use specwatch::infer::RuntimeOptions;

use crate::common::{self, fixture};

fn update_fixtures() -> bool {
    std::env::var("SPECWATCH_UPDATE_FIXTURES").as_deref() == Ok("1")
}

/// The one-channel tone capture: noise, four tones (one per band) at 15–20 dB, noise.
fn tone_segments() -> Vec<fixture::Segment> {
    use fixture::Segment;
    vec![
        Segment {
            freq: None,
            samples: 1024,
            snr_db: 0.0,
        },
        Segment {
            freq: Some(0.1),
            samples: 2048,
            snr_db: 20.0,
        },
        Segment {
            freq: Some(-0.3),
            samples: 2048,
            snr_db: 20.0,
        },
        Segment {
            freq: None,
            samples: 1024,
            snr_db: 0.0,
        },
        Segment {
            freq: Some(0.35),
            samples: 2048,
            snr_db: 15.0,
        },
        Segment {
            freq: Some(-0.1),
            samples: 1024,
            snr_db: 15.0,
        },
    ]
}

/// The four-channel capture: a tone from azimuth 20°, elevation 10° between stretches of noise.
fn array_segments() -> Vec<fixture::Segment> {
    use fixture::Segment;
    vec![
        Segment {
            freq: None,
            samples: 512,
            snr_db: 0.0,
        },
        Segment {
            freq: Some(0.2),
            samples: 2048,
            snr_db: 20.0,
        },
        Segment {
            freq: None,
            samples: 512,
            snr_db: 0.0,
        },
    ]
}

const ARRAY_ANGLES: (f64, f64) = (20.0, 10.0);

fn tones_path() -> PathBuf {
    common::data_dir().join("tones.npy")
}

fn array_path() -> PathBuf {
    common::data_dir().join("array4.npy")
}

#[test]
fn fixtures_are_what_the_generator_makes() {
    let dir = common::scratch();
    for (name, segments, channels, seed) in [
        ("tones.npy", tone_segments(), 1, 7u64),
        ("array4.npy", array_segments(), 4, 11u64),
    ] {
        let fresh = dir.path().join(name);
        fixture::tone_capture(&fresh, &segments, channels, ARRAY_ANGLES, seed);
        let committed = common::data_dir().join(name);
        if update_fixtures() {
            std::fs::copy(&fresh, &committed).expect("update capture");
            std::fs::copy(
                fresh.with_extension("json"),
                committed.with_extension("json"),
            )
            .expect("update sidecar");
        }
        for (a, b) in [
            (fresh.clone(), committed.clone()),
            (
                fresh.with_extension("json"),
                committed.with_extension("json"),
            ),
        ] {
            let (x, y) = (
                std::fs::read(&a).expect("fresh"),
                std::fs::read(&b).expect("committed"),
            );
            assert!(
                x == y,
                "{} differs from what the generator makes; run with SPECWATCH_UPDATE_FIXTURES=1 \
                 if the change is intended",
                b.display()
            );
        }
        assert!(
            std::fs::metadata(&committed).expect("size").len() < 1 << 20,
            "fixtures stay under 1 MB"
        );
    }
}

/// A station config with the band model at `card` on a replay of the tone capture (which
/// `specwatch replay` replaces by its capture): the SNR gate drops the noise-only windows, so
/// the detections are the tones'.
fn replay_config_file(dir: &Path, card: &Path, extra_model: &str) -> PathBuf {
    let text = format!(
        r#"
[station]
name = "replay-test"

[[source]]
name = "recording"
kind = "replay"
path = "{}"

[runtime]
execution_provider = "cpu"
intra_threads = 1

[gate]
kind = "snr"
threshold_db = 6.0

[[model]]
card = "{}"
source = "recording"
batch_size = 8
max_wait_ms = 5
{extra_model}
"#,
        tones_path().display(),
        card.display()
    );
    let path = dir.join("replay.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// `(class, sample_start, sample_count, channel)` of each detection line of `specwatch replay
/// --json`, and the summary object.
fn parse_replay(stdout: &str) -> (Vec<(String, u64, u64, u64)>, Value) {
    let mut dets = Vec::new();
    let mut summary = Value::Null;
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if let Some(s) = v.get("summary") {
            summary = s.clone();
            continue;
        }
        for key in [
            "class",
            "confidence",
            "sample_start",
            "sample_count",
            "channel",
            "snr_db",
        ] {
            assert!(v.get(key).is_some(), "detection line lacks '{key}': {line}");
        }
        dets.push((
            v["class"].as_str().expect("class").to_string(),
            v["sample_start"].as_u64().expect("start"),
            v["sample_count"].as_u64().expect("count"),
            v["channel"].as_u64().expect("channel"),
        ));
    }
    (dets, summary)
}

fn golden_path(capture: &Path) -> PathBuf {
    capture.with_extension("golden.json")
}

/// Compares detections with the capture's golden file (rewriting it under
/// `SPECWATCH_UPDATE_FIXTURES=1`).
fn check_golden(capture: &Path, dets: &[(String, u64, u64, u64)]) {
    let golden = golden_path(capture);
    let as_json: Vec<Value> = dets
        .iter()
        .map(|(c, s, n, ch)| {
            serde_json::json!({"class": c, "sample_start": s, "sample_count": n, "channel": ch})
        })
        .collect();
    if update_fixtures() {
        std::fs::write(
            &golden,
            serde_json::to_string_pretty(&as_json).expect("json") + "\n",
        )
        .expect("write golden");
    }
    let expected: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(&golden)
            .expect("golden file (SPECWATCH_UPDATE_FIXTURES=1 makes it)"),
    )
    .expect("golden json");
    assert_eq!(
        as_json.len(),
        expected.len(),
        "detection count differs from {}",
        golden.display()
    );
    for (i, (got, want)) in as_json.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "detection {i} differs from {}", golden.display());
    }
}

/// Every detection lies inside one truth span and has its class.
fn check_against_truth(capture: &Path, dets: &[(String, u64, u64, u64)]) {
    let sidecar =
        specwatch::iq::sidecar::Sidecar::load(&capture.with_extension("json")).expect("sidecar");
    assert!(!dets.is_empty(), "no detections");
    for (class, start, count, _) in dets {
        let span = sidecar
            .truth
            .iter()
            .find(|t| *start >= t.sample_start && start + count <= t.sample_start + t.sample_count)
            .unwrap_or_else(|| {
                panic!("detection at {start}+{count} ({class}) is outside every tone")
            });
        assert_eq!(class, &span.class, "window at {start}");
    }
    // Every tone window was found (the gate passes all of them at 15 dB and up).
    let windows: u64 = sidecar.truth.iter().map(|t| t.sample_count / 128).sum();
    assert_eq!(dets.len() as u64, windows, "one detection per tone window");
}

#[test]
fn replay_regression_matches_golden_and_truth() {
    if !common::runtime_available() {
        return;
    }
    let dir = common::scratch();
    let card = fixture::band_model(dir.path(), "band128", 1, 128);
    let config = replay_config_file(dir.path(), &card, "");
    let capture = tones_path();
    let out = Command::new(common::bin("specwatch"))
        .args([
            "replay",
            capture.to_str().expect("utf-8"),
            "--json",
            "--config",
        ])
        .arg(&config)
        .output()
        .expect("run specwatch replay");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "replay failed: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let (dets, summary) = parse_replay(&stdout);
    assert_eq!(summary["samples"].as_u64(), Some(9216), "{summary}");
    assert_eq!(summary["detections"].as_u64(), Some(dets.len() as u64));
    check_against_truth(&capture, &dets);
    check_golden(&capture, &dets);
}

#[test]
fn replay_without_config_classifies_every_window() {
    if !common::runtime_available() {
        return;
    }
    let dir = common::scratch();
    let card = fixture::band_model(dir.path(), "band128", 1, 128);
    let out = Command::new(common::bin("specwatch"))
        .arg("replay")
        .arg(tones_path())
        .arg("--model")
        .arg(&card)
        .arg("--json")
        .output()
        .expect("run specwatch replay");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (dets, summary) = parse_replay(&String::from_utf8_lossy(&out.stdout));
    // No gate by default: every one of the 72 windows is classified.
    assert_eq!(dets.len(), 9216 / 128, "{summary}");
    let starts: Vec<u64> = dets.iter().map(|d| d.1).collect();
    let expected: Vec<u64> = (0..72).map(|w| w * 128).collect();
    assert_eq!(starts, expected, "windows are contiguous and in order");
    assert_eq!(summary["windows_classified"]["band128"].as_u64(), Some(72));
}

#[test]
fn replay_multichannel_window_gets_a_music_bearing() {
    if !common::runtime_available() {
        return;
    }
    let dir = common::scratch();
    let card = fixture::band_model(dir.path(), "band128", 1, 128);
    let config = replay_config_file(
        dir.path(),
        &card,
        "channels = [0, 1, 2, 3]\n[model.doa]\narray = \"ura\"\nspacing_wavelengths = 0.5\nstep_deg = 2.0\n",
    );
    let capture = array_path();
    let outcome = replay(&ReplayRequest {
        capture: capture.clone(),
        config: Some(config),
        ..Default::default()
    })
    .expect("replay the array capture");
    let dets: Vec<(String, u64, u64, u64)> = outcome
        .detections
        .iter()
        .map(|d| {
            (
                d.class.clone(),
                d.sample_start,
                d.sample_count,
                d.channel as u64,
            )
        })
        .collect();
    check_against_truth(&capture, &dets);
    check_golden(&capture, &dets);
    for d in &outcome.detections {
        assert_eq!(d.channels, [0, 1, 2, 3]);
        let (az, el) = (
            d.azimuth_deg.expect("azimuth"),
            d.elevation_deg.expect("elevation"),
        );
        // A 20 dB tone over 128 snapshots: MUSIC is well within 1° (tolerance 1°).
        assert!((az - ARRAY_ANGLES.0 as f32).abs() < 1.0, "azimuth {az}");
        assert!((el - ARRAY_ANGLES.1 as f32).abs() < 1.0, "elevation {el}");
        // The model gives no angles: MUSIC's bearing is the station's and the only one.
        assert_eq!((d.model_azimuth_deg, d.model_elevation_deg), (None, None));
        assert_eq!(
            (d.doa_azimuth_deg, d.doa_elevation_deg),
            (d.azimuth_deg, d.elevation_deg)
        );
        assert_eq!(d.doa_method.as_deref(), Some("music"));
    }
}

/// The angles [`band_aoa_model`] gives every window: off the array capture's truth (20°, 10°)
/// by 15° in azimuth, so its disagreement with MUSIC is known.
const LEARNED_ANGLES: (f32, f32) = (35.0, 10.0);

/// Writes `<dir>/<name>.onnx` and its card: the fixture band classifier (one channel, 128
/// samples) with angle outputs too (task `amc+aoa`), `azimuth` and `elevation` `[N, 1]`, each a
/// `Gemm` with zero weights whose bias is `angles_deg` — a learned estimator that always answers
/// the same, so its disagreement with MUSIC is exact. Returns the card's path.
fn band_aoa_model(dir: &Path, name: &str, angles_deg: (f32, f32)) -> PathBuf {
    use specwatch::onnx::{Dim, GraphBuilder, Weights, ops};
    let (len, rows) = (128usize, 2usize);
    let width = rows * len;
    let mut g = GraphBuilder::new(name);
    let x = g
        .input("x", &[Dim::batch(), Dim::from(rows), Dim::from(len)])
        .expect("input");
    let flat = ops::flatten(&mut g, &x, 1).expect("flatten"); // [N, 256]
    // As fixture::band_model: row k averages the log-power bins of quarter k, times 0.5.
    let per_band = len / 4;
    let mut w = vec![0.0f32; 4 * width];
    for k in 0..4 {
        for b in k * per_band..(k + 1) * per_band {
            w[k * width + b] = 0.5 / per_band as f32;
        }
    }
    let bands = ops::LinearWeights::torch(
        Weights::new(w, [4, width]),
        Some(Weights::new(vec![0.0; 4], [4])),
    );
    let logits = ops::gemm(&mut g, "bands", &flat, &bands).expect("gemm"); // [N, 4]
    let constant = |value: f32| {
        ops::LinearWeights::torch(
            Weights::new(vec![0.0; width], [1, width]),
            Some(Weights::new(vec![value], [1])),
        )
    };
    let azimuth = ops::gemm(&mut g, "azimuth", &flat, &constant(angles_deg.0)).expect("gemm"); // [N, 1]
    let elevation = ops::gemm(&mut g, "elevation", &flat, &constant(angles_deg.1)).expect("gemm"); // [N, 1]
    for (out, n) in [(&logits, 4), (&azimuth, 1), (&elevation, 1)] {
        g.output(out, &[Dim::batch(), Dim::from(n)])
            .expect("output");
    }
    g.save(dir.join(format!("{name}.onnx")))
        .expect("write the model");
    let card = serde_json::json!({
        "name": name,
        "version": "0.1.0",
        "task": "amc+aoa",
        "window_len": len,
        "channels": 1,
        "sample_rate_hz": fixture::FIXTURE_RATE_HZ,
        "inputs": [{"name": "x", "layout": ["N", rows, len], "dtype": "float32",
                    "representation": "fft_log_mag", "normalization": "unit_rms"}],
        "outputs": [{"name": logits, "kind": "logits"},
                    {"name": azimuth, "kind": "azimuth"},
                    {"name": elevation, "kind": "elevation"}],
        "classes": fixture::BAND_CLASSES,
        "dataset": {"name": "none (fixed weights)", "manifest_sha256": "00".repeat(32)},
        "metrics": {},
        "training": {"command": "tests/it/daemon.rs band_aoa_model", "arch": "spectral band gemm + constant angles", "epochs": 0}
    });
    let card_path = dir.join(format!("{name}.json"));
    std::fs::write(
        &card_path,
        serde_json::to_string_pretty(&card).expect("card json"),
    )
    .expect("write the card");
    card_path
}

/// A model with angle outputs on the array with `[model.doa]`: every detection carries the
/// model's bearing and MUSIC's side by side, and the disagreement histogram counts each window.
#[test]
fn a_model_with_angles_and_an_array_estimator_gives_both_bearings() {
    if !common::runtime_available() {
        return;
    }
    let dir = common::scratch();
    let card = band_aoa_model(dir.path(), "band128-aoa", LEARNED_ANGLES);
    let config_file = replay_config_file(
        dir.path(),
        &card,
        "channels = [0, 1, 2, 3]\n[model.doa]\narray = \"ura\"\nspacing_wavelengths = 0.5\nstep_deg = 2.0\n",
    );
    let config = specwatch::daemon::replay_config(&ReplayRequest {
        capture: array_path(),
        config: Some(config_file),
        ..Default::default()
    })
    .expect("replay config");
    let station = specwatch::flowgraph::Station::prepare(&config).expect("prepare");
    let sink = specwatch::flowgraph::CollectingSink::new();
    let metrics = specwatch::telemetry::Metrics::new();
    let summary = station
        .start(sink.clone(), metrics.clone())
        .expect("start")
        .join()
        .expect("run");
    let detections = sink.take();

    // The same windows and classes as the golden run without angles.
    let dets: Vec<(String, u64, u64, u64)> = detections
        .iter()
        .map(|d| {
            (
                d.class.clone(),
                d.sample_start,
                d.sample_count,
                d.channel as u64,
            )
        })
        .collect();
    check_against_truth(&array_path(), &dets);
    check_golden(&array_path(), &dets);
    let mut disagreements = Vec::new();
    for d in &detections {
        // The model's own angles, exactly (a constant bias), and they are the station's bearing.
        assert_eq!(
            (d.model_azimuth_deg, d.model_elevation_deg),
            (Some(LEARNED_ANGLES.0), Some(LEARNED_ANGLES.1))
        );
        assert_eq!(
            (d.azimuth_deg, d.elevation_deg),
            (d.model_azimuth_deg, d.model_elevation_deg)
        );
        // MUSIC's beside them, near the truth (tolerance 1°, as in the MUSIC-only test).
        let (az, el) = (
            d.doa_azimuth_deg.expect("MUSIC azimuth"),
            d.doa_elevation_deg.expect("MUSIC elevation"),
        );
        assert!(
            (az - ARRAY_ANGLES.0 as f32).abs() < 1.0,
            "MUSIC azimuth {az}"
        );
        assert!(
            (el - ARRAY_ANGLES.1 as f32).abs() < 1.0,
            "MUSIC elevation {el}"
        );
        assert_eq!(d.doa_method.as_deref(), Some("music"));
        disagreements.push(f64::from((LEARNED_ANGLES.0 - az).abs()));
        // The replay's JSON lines carry both.
        let line = specwatch::daemon::detection_json(d);
        assert_eq!(line["model_azimuth_deg"], LEARNED_ANGLES.0);
        assert_eq!(line["doa_azimuth_deg"], az);
        assert_eq!(line["doa_method"], "music");
    }

    // One disagreement observation per classified window (all of them had both bearings):
    // 15° each within MUSIC's 1°, so all in the (10, 20] bucket.
    let classified = metrics
        .windows_classified_total
        .with_label_values(&["band128-aoa"])
        .get();
    assert_eq!(classified, detections.len() as u64, "{summary:?}");
    let h = metrics
        .bearing_disagreement_degrees
        .with_label_values(&["band128-aoa"]);
    assert_eq!(h.get_sample_count(), classified);
    let expected: f64 = disagreements.iter().sum();
    assert!(
        (h.get_sample_sum() - expected).abs() < 1e-3,
        "sum {} vs {expected}",
        h.get_sample_sum()
    );
    let text = metrics.render();
    let bucket = |le: &str| -> u64 {
        let key = format!(
            "specwatch_bearing_disagreement_degrees_bucket{{model=\"band128-aoa\",le=\"{le}\"}} "
        );
        let line = text
            .lines()
            .find(|l| l.starts_with(&key))
            .unwrap_or_else(|| panic!("no {key} in\n{text}"));
        line[key.len()..].parse().expect("count")
    };
    assert_eq!(bucket("10"), 0);
    assert_eq!(bucket("20"), classified);
    // Each detection's bearings are in the azimuth histogram under their estimator.
    for estimator in ["model", "music"] {
        assert_eq!(
            metrics
                .detection_azimuth_degrees
                .with_label_values(&["band128-aoa", estimator])
                .get_sample_count(),
            detections.len() as u64,
            "{estimator}"
        );
    }
}

/// Without an array estimator a model's angles are the only bearing: no `doa_*`, and nothing
/// to compare, so no disagreement series.
#[test]
fn a_model_with_angles_and_no_array_estimator_gives_its_bearing_alone() {
    if !common::runtime_available() {
        return;
    }
    let dir = common::scratch();
    let card = band_aoa_model(dir.path(), "band128-aoa", LEARNED_ANGLES);
    let config = specwatch::daemon::replay_config(&ReplayRequest {
        capture: tones_path(),
        models: vec![card],
        ..Default::default()
    })
    .expect("replay config");
    let station = specwatch::flowgraph::Station::prepare(&config).expect("prepare");
    let sink = specwatch::flowgraph::CollectingSink::new();
    let metrics = specwatch::telemetry::Metrics::new();
    station
        .start(sink.clone(), metrics.clone())
        .expect("start")
        .join()
        .expect("run");
    let detections = sink.take();
    assert_eq!(detections.len(), 9216 / 128);
    for d in &detections {
        assert_eq!(d.azimuth_deg, Some(LEARNED_ANGLES.0));
        assert_eq!(d.model_azimuth_deg, Some(LEARNED_ANGLES.0));
        assert_eq!(
            (
                d.doa_azimuth_deg,
                d.doa_elevation_deg,
                d.doa_method.as_deref()
            ),
            (None, None, None)
        );
    }
    assert!(
        !metrics
            .render()
            .contains("specwatch_bearing_disagreement_degrees_count"),
        "no disagreement series without an array estimator"
    );
}

#[test]
fn several_models_run_side_by_side_on_one_source() {
    if !common::runtime_available() {
        return;
    }
    let dir = common::scratch();
    let a = fixture::band_model(dir.path(), "band128", 1, 128);
    let b = fixture::band_model(dir.path(), "band64", 1, 64);
    let outcome = replay(&ReplayRequest {
        capture: tones_path(),
        models: vec![a, b],
        ..Default::default()
    })
    .expect("replay with two models");
    let count = |m: &str| outcome.detections.iter().filter(|d| d.model == m).count();
    assert_eq!(count("band128"), 72);
    assert_eq!(count("band64"), 144);
    // Both agree on a clean tone window: samples 1024..1152 hold the +0.1 tone.
    for m in ["band128", "band64"] {
        let d = outcome
            .detections
            .iter()
            .find(|d| d.model == m && d.sample_start == 1024)
            .expect("window at 1024");
        assert_eq!(d.class, "pos-low", "{m}");
    }
}

/// A capture this short fits whole in the source's output buffer, so the source can finish
/// before the blocks downstream are initialised. A block that hears of the end before its own
/// initialisation used to miss it and wait for ever (FutureSDR drops messages that arrive
/// during init), which hung the replay. The sources now wait until every block is initialised.
/// Eight replays at a time keep both cores busy, which made the race frequent.
#[test]
fn short_replays_that_fit_the_source_buffer_always_end() {
    if !common::runtime_available() {
        return;
    }
    let dir = common::scratch();
    let capture = dir.path().join("short.npy");
    let segments = [fixture::Segment {
        freq: Some(0.1),
        samples: 2048,
        snr_db: 20.0,
    }];
    fixture::tone_capture(&capture, &segments, 1, (0.0, 0.0), 7);
    let a = fixture::band_model(dir.path(), "band128", 1, 128);
    let b = fixture::band_model(dir.path(), "band64", 1, 64);
    for round in 0..3 {
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..8 {
            let (tx, capture, a, b) = (tx.clone(), capture.clone(), a.clone(), b.clone());
            std::thread::spawn(move || {
                let outcome = replay(&ReplayRequest {
                    capture,
                    models: vec![a, b],
                    ..Default::default()
                });
                let _ = tx.send(
                    outcome
                        .map(|o| o.detections.len())
                        .map_err(|e| e.to_string()),
                );
            });
        }
        for run in 0..8 {
            let detections = rx
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("replay {run} of round {round} did not end within 60 s"))
                .expect("replay");
            // 16 windows of 128 samples and 32 of 64.
            assert_eq!(detections, 48, "replay {run} of round {round}");
        }
    }
}

#[test]
fn energy_gate_rejects_noise_bursts_of_the_synthetic_source() {
    if !common::runtime_available() {
        return;
    }
    let dir = common::scratch();
    let card = fixture::band_model(dir.path(), "band128", 1, 128);
    let text = format!(
        r#"
[station]
name = "gate-test"
[runtime]
execution_provider = "cpu"
intra_threads = 1
[[source]]
name = "synth"
kind = "synthetic"
recipe = "rml2016a"
snr_db = [20.0, 20.0]
occupancy = 0.5
burst_windows = 4
windows = 400
mode = "fast"
[gate]
kind = "energy"
threshold_db = 6.0
warmup_windows = 8
[[model]]
card = "{}"
source = "synth"
"#,
        card.display()
    );
    let config = Config::parse(&text).expect("valid config");
    let station = specwatch::flowgraph::Station::prepare(&config).expect("prepare");
    let sink = specwatch::flowgraph::CollectingSink::new();
    let metrics = specwatch::telemetry::Metrics::new();
    let summary = station
        .start(sink.clone(), metrics.clone())
        .expect("start")
        .join()
        .expect("run");
    let rejected = metrics
        .windows_gate_rejected_total
        .with_label_values(&["synth"])
        .get();
    let framed = metrics
        .windows_framed_total
        .with_label_values(&["synth"])
        .get();
    let detections = sink.take().len() as u64;
    assert_eq!(framed, 400, "{summary:?}");
    assert_eq!(summary.samples_in, vec![("synth".to_string(), 400 * 128)]);
    // About half the bursts are noise only; at 20 dB the others pass (tolerance: 25 %..75 %).
    assert!(
        (100..=300).contains(&rejected),
        "rejected {rejected} of {framed} windows"
    );
    assert_eq!(
        detections + rejected,
        framed,
        "every passed window is classified"
    );
}

/// Runs the tone capture through the 64-sample band model with a one-window queue; the
/// replay paced (a stream that must not be held back) or fast. Returns (classified, dropped
/// as queue_full, detections).
fn one_window_queue(mode: specwatch::config::ReplayMode) -> (u64, u64, u64) {
    let dir = common::scratch();
    let card = fixture::band_model(dir.path(), "band64", 1, 64);
    let mut config = specwatch::daemon::replay_config(&ReplayRequest {
        capture: tones_path(),
        models: vec![card],
        ..Default::default()
    })
    .expect("config");
    if let specwatch::config::SourceKind::Replay(r) = &mut config.sources[0].kind {
        r.mode = mode;
        // Paced, but so fast that the whole capture arrives at once.
        r.sample_rate_hz = Some(1e12);
    }
    config.models[0].queue_capacity = 1;
    config.models[0].batch_size = 1;
    config.models[0].max_wait_ms = 0;
    config.runtime.execution_provider = specwatch::config::ExecutionProvider::Cpu;
    let station = specwatch::flowgraph::Station::prepare(&config).expect("prepare");
    let sink = specwatch::flowgraph::CollectingSink::new();
    let metrics = specwatch::telemetry::Metrics::new();
    station
        .start(sink.clone(), metrics.clone())
        .expect("start")
        .join()
        .expect("run");
    let classified = metrics
        .windows_classified_total
        .with_label_values(&["band64"])
        .get();
    let dropped = metrics
        .windows_dropped_total
        .with_label_values(&["band64", "queue_full"])
        .get();
    (classified, dropped, sink.take().len() as u64)
}

#[test]
fn a_full_queue_drops_and_counts_windows_instead_of_stalling_a_stream() {
    if !common::runtime_available() {
        return;
    }
    let (classified, dropped, detections) = one_window_queue(specwatch::config::ReplayMode::Paced);
    // The framer hands over a whole chunk of windows at once; a one-window queue cannot take
    // them, and the stream does not wait.
    assert!(dropped > 0, "nothing dropped ({classified} classified)");
    assert_eq!(
        classified + dropped,
        144,
        "every window is classified or counted as dropped"
    );
    assert_eq!(detections, classified);
}

#[test]
fn a_fast_replay_waits_for_inference_and_loses_nothing() {
    if !common::runtime_available() {
        return;
    }
    let (classified, dropped, detections) = one_window_queue(specwatch::config::ReplayMode::Fast);
    assert_eq!((classified, dropped, detections), (144, 0, 144));
}

// ---------------------------------------------------------------- config errors

fn problems(text: &str) -> String {
    Config::parse(text)
        .expect_err("config must be refused")
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

const MINIMAL: &str = r#"
[station]
name = "t"
[[source]]
name = "s"
kind = "synthetic"
[[model]]
card = "models/amc128.json"
source = "s"
"#;

#[test]
fn minimal_config_takes_the_documented_defaults() {
    let c = Config::parse(MINIMAL).expect("valid");
    assert_eq!(c.api.listen, "127.0.0.1:9930");
    assert_eq!(c.models[0].batch_size, 32);
    assert_eq!(c.models[0].workers, 2);
    assert_eq!(c.runtime.intra_threads, Some(1));
    assert_eq!(c.gate.kind, specwatch::config::GateKind::PassAll);
    assert_eq!(c.sources[0].kind.declared_channels(), Some(1));
    // A [runtime] section that leaves intra_threads out keeps its default; a given one wins.
    let partial = Config::parse(&format!(
        "{MINIMAL}\n[runtime]\nexecution_provider = \"cpu\"\n"
    ))
    .expect("valid");
    assert_eq!(partial.runtime.intra_threads, Some(1));
    let given =
        Config::parse(&format!("{MINIMAL}\n[runtime]\nintra_threads = 4\n")).expect("valid");
    assert_eq!(given.runtime.intra_threads, Some(4));
}

#[test]
fn config_errors_name_the_key() {
    let unknown = problems(&MINIMAL.replace(
        "kind = \"synthetic\"",
        "kind = \"synthetic\"\nsampel_rate_hz = 1",
    ));
    assert!(
        unknown.contains("source[0]") && unknown.contains("unknown field `sampel_rate_hz`"),
        "{unknown}"
    );
    let top = problems(&format!("{MINIMAL}\n[stor]\npath = \"x\"\n"));
    assert!(top.contains("unknown field `stor`"), "{top}");
    assert!(
        top.contains("line"),
        "syntax-level errors give the line: {top}"
    );

    let negative = problems(&MINIMAL.replace(
        "kind = \"synthetic\"",
        "kind = \"synthetic\"\nsample_rate_hz = -1",
    ));
    assert!(
        negative.contains("source[0].sample_rate_hz: expected > 0, got -1"),
        "{negative}"
    );
    let wrong_type = problems(&format!("{MINIMAL}batch_size = \"many\"\n"));
    assert!(wrong_type.contains("model[0].batch_size"), "{wrong_type}");

    let wrong_kind_key = problems(&MINIMAL.replace(
        "kind = \"synthetic\"",
        "kind = \"replay\"\npath = \"x.npy\"\ngain_db = 3",
    ));
    assert!(
        wrong_kind_key.contains("source[0]") && wrong_kind_key.contains("unknown field `gain_db`"),
        "{wrong_kind_key}"
    );
    let no_source = problems(&MINIMAL.replace("source = \"s\"", "source = \"nope\""));
    assert!(
        no_source.contains("model[0].source: no source named 'nope'"),
        "{no_source}"
    );
    let bad_kind = problems(&MINIMAL.replace("kind = \"synthetic\"", "kind = \"radio\""));
    assert!(
        bad_kind.contains("source[0].kind: unknown source kind 'radio'"),
        "{bad_kind}"
    );
    let gate = problems(&format!(
        "{MINIMAL}[gate]\nkind = \"pass_all\"\nthreshold_db = 3\n"
    ));
    assert!(
        gate.contains("gate.threshold_db: not taken by gate kind 'pass_all'"),
        "{gate}"
    );
    let listen = problems(&format!("{MINIMAL}[api]\nlisten = \"localhost\"\n"));
    assert!(listen.contains("api.listen"), "{listen}");
    let retention = problems(&format!("{MINIMAL}[store]\nretention_max_age = \"1w\"\n"));
    assert!(retention.contains("store.retention_max_age"), "{retention}");
    let uhd = problems(&MINIMAL.replace(
        "kind = \"synthetic\"",
        "kind = \"uhd\"\naddresses = []\ncenter_freq_hz = 1e9\nsample_rate_hz = 1e6\nclock_source = \"atomic\"",
    ));
    assert!(uhd.contains("source[0].addresses"), "{uhd}");
    assert!(uhd.contains("source[0].clock_source"), "{uhd}");
    // Several problems are reported together.
    let many = problems(&MINIMAL.replace(
        "kind = \"synthetic\"",
        "kind = \"synthetic\"\noccupancy = 2.0\nburst_windows = 0",
    ));
    assert!(
        many.contains("occupancy") && many.contains("burst_windows"),
        "{many}"
    );
}

#[test]
fn check_refuses_a_bad_config_naming_file_and_key() {
    let dir = common::scratch();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        MINIMAL.replace(
            "kind = \"synthetic\"",
            "kind = \"synthetic\"\nsnr_db = [10.0, 0.0]",
        ),
    )
    .expect("write");
    let out = Command::new(common::bin("specwatch"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("run specwatch check");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.toml"), "{stderr}");
    assert!(stderr.contains("source[0].snr_db"), "{stderr}");
}

#[test]
fn check_loads_models_and_names_a_card_that_disagrees_with_its_graph() {
    if !common::runtime_available() {
        return;
    }
    let dir = common::scratch();
    let card = fixture::band_model(dir.path(), "band128", 1, 128);
    let store = dir.path().join("state/db.sqlite");
    let config = dir.path().join("station.toml");
    std::fs::write(
        &config,
        format!(
            "[station]\nname = \"t\"\n[store]\npath = \"{}\"\n[[source]]\nname = \"s\"\nkind = \"replay\"\npath = \"{}\"\n[[model]]\ncard = \"{}\"\nsource = \"s\"\n",
            store.display(),
            tones_path().display(),
            card.display()
        ),
    )
    .expect("write config");
    let ok = Command::new(common::bin("specwatch"))
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .expect("run check");
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        stdout.contains("model 'band128'") && stdout.contains("on CPU"),
        "{stdout}"
    );
    assert!(store.is_file(), "check opened (and so created) the store");

    // The card now says 64-sample windows; the graph takes 128.
    let text = std::fs::read_to_string(&card).expect("card");
    std::fs::write(&card, text.replace("128", "64")).expect("rewrite card");
    let bad = Command::new(common::bin("specwatch"))
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .expect("run check");
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("model[0].card") && stderr.contains("band128.json"),
        "{stderr}"
    );
}

#[test]
fn every_flowgraph_config_validates() {
    let files = common::repo_files("flowgraphs", "toml");
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    for want in [
        "demo.toml",
        "replay.toml",
        "soapy-amc.toml",
        "x300-aoa.toml",
    ] {
        assert!(names.iter().any(|n| n == want), "flowgraphs/{want} missing");
    }
    let x300 =
        Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("flowgraphs/x300-aoa.toml"))
            .expect("x300");
    let uhd = x300
        .sources
        .iter()
        .find(|s| s.kind.name() == "uhd")
        .expect("a uhd source");
    assert_eq!(uhd.kind.declared_channels(), Some(4));
    assert!(
        x300.models
            .iter()
            .any(|m| m.doa.is_some() && m.channels.as_ref().is_some_and(|c| c.len() == 4))
    );
    let can_load = common::runtime_available();
    for path in &files {
        let config = Config::load(path).unwrap_or_else(|e| panic!("{e}"));
        for (i, m) in config.models.iter().enumerate() {
            // Relative card paths are relative to the working directory: the repository root.
            let card = Path::new(env!("CARGO_MANIFEST_DIR")).join(&m.card);
            if !card.is_file() {
                eprintln!(
                    "SKIPPED loading model[{i}] of {}: {} is not there (models are made by specwatch-train)",
                    path.display(),
                    m.card.display()
                );
                continue;
            }
            if !can_load {
                continue;
            }
            let model = specwatch::infer::Model::load(&card, &RuntimeOptions::default())
                .unwrap_or_else(|e| panic!("{}: model[{i}]: {e}", path.display()));
            let window_channels = m.channels.as_ref().map_or(model.card().channels, Vec::len);
            assert!(
                window_channels >= model.card().channels,
                "{}: model[{i}] channels",
                path.display()
            );
        }
    }
}

// ---------------------------------------------------------------- failures of input

fn replay_fails(capture: &Path, card: &Path) -> String {
    let out = Command::new(common::bin("specwatch"))
        .arg("replay")
        .arg(capture)
        .arg("--model")
        .arg(card)
        .output()
        .expect("run replay");
    assert!(
        !out.status.success(),
        "replay of {} should fail",
        capture.display()
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn corrupt_or_nan_capture_fails_with_a_clear_error() {
    if !common::runtime_available() {
        return;
    }
    let dir = common::scratch();
    let card = fixture::band_model(dir.path(), "band128", 1, 128);

    // Truncated: the header promises 9216 samples, the file holds fewer.
    let bytes = std::fs::read(tones_path()).expect("tones");
    let truncated = dir.path().join("truncated.npy");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("write");
    let err = replay_fails(&truncated, &card);
    assert!(err.contains("truncated.npy"), "{err}");

    // Not a capture at all.
    let garbage = dir.path().join("garbage.npy");
    std::fs::write(&garbage, b"this is not numpy").expect("write");
    let err = replay_fails(&garbage, &card);
    assert!(err.contains("garbage.npy"), "{err}");

    // A NaN in the middle: named by channel and sample index.
    let mut data: Vec<specwatch::iq::C32> = vec![specwatch::iq::C32::new(0.5, -0.5); 4096];
    data[3000].re = f32::NAN;
    let nan = dir.path().join("nan.npy");
    specwatch::iq::npy::write_array(&nan, &[4096], &data).expect("write");
    let err = replay_fails(&nan, &card);
    assert!(
        err.contains("nan.npy")
            && err.contains("channel 0, sample 3000")
            && err.contains("not a finite number"),
        "{err}"
    );
}

#[test]
fn model_whose_card_disagrees_with_its_graph_is_refused() {
    if !common::runtime_available() {
        return;
    }
    let dir = common::scratch();
    let card = fixture::band_model(dir.path(), "band128", 1, 128);
    let mut v: Value =
        serde_json::from_str(&std::fs::read_to_string(&card).expect("card")).expect("json");
    v["classes"] = serde_json::json!(["a", "b", "c"]);
    std::fs::write(&card, v.to_string()).expect("write");
    let err = replay_fails(&tones_path(), &card);
    assert!(err.contains("band128.json"), "{err}");
    assert!(
        err.contains("class"),
        "the message says what disagrees: {err}"
    );
}

#[test]
fn model_channels_must_fit_the_capture() {
    if !common::runtime_available() {
        return;
    }
    let dir = common::scratch();
    let card = fixture::band_model(dir.path(), "band4ch", 4, 128);
    let err = replay(&ReplayRequest {
        capture: tones_path(),
        models: vec![card],
        ..Default::default()
    })
    .expect_err("a 4-channel model on a 1-channel capture");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("model[0].channels") && msg.contains("1 channel"),
        "{msg}"
    );
}

// ---------------------------------------------------------------- specwatch run

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A plain HTTP/1.1 GET: (status, body).
fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}

struct Daemon {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Daemon {
    /// Starts `specwatch run`; its log (stderr) goes to `log`.
    fn start(config: &Path, addr: SocketAddr, notify: Option<&Path>, log: PathBuf) -> Daemon {
        let mut cmd = Command::new(common::bin("specwatch"));
        cmd.args(["run", "--config"])
            .arg(config)
            .env("SPECWATCH_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        if let Some(sock) = notify {
            cmd.env("NOTIFY_SOCKET", sock)
                .env("WATCHDOG_USEC", "400000");
        }
        let child = cmd.spawn().expect("start specwatch run");
        Daemon { child, addr, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for `/readyz` to answer 200.
    fn wait_ready(&mut self) {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(90) {
            if let Some(status) = self.child.try_wait().expect("poll") {
                panic!("specwatch run exited early ({status}): {}", self.log());
            }
            if let Ok((200, _)) = http_get(self.addr, "/readyz") {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("specwatch run did not become ready within 90 s");
    }

    /// Every stored detection, following the cursor.
    fn detections(&self) -> Vec<Value> {
        let mut all = Vec::new();
        let mut cursor: Option<i64> = None;
        loop {
            let path = match cursor {
                Some(c) => format!("/detections?limit=10000&cursor={c}"),
                None => "/detections?limit=10000".to_string(),
            };
            let (status, body) = http_get(self.addr, &path).expect("GET /detections");
            assert_eq!(status, 200, "{body}");
            let v: Value = serde_json::from_str(&body).expect("detections json");
            all.extend(v["detections"].as_array().expect("array").iter().cloned());
            match v["next_cursor"].as_i64() {
                Some(c) => cursor = Some(c),
                None => return all,
            }
        }
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the exit (at most 60 s); its status and stderr.
    fn wait_exit(mut self) -> (std::process::ExitStatus, String) {
        let t0 = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("poll") {
                break s;
            }
            if t0.elapsed() > Duration::from_secs(60) {
                let _ = self.child.kill();
                panic!("specwatch run did not exit within 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        (status, self.log())
    }
}

/// A test that fails midway must not leave its daemon running.
impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn notifications(sock: &UnixDatagram) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = sock.recv(&mut buf) {
        out.push(String::from_utf8_lossy(&buf[..n]).trim().to_string());
    }
    out
}

#[test]
fn run_serves_detections_that_survive_kill_9_and_stops_cleanly_on_sigterm() {
    if !common::runtime_available() {
        return;
    }
    let dir = common::scratch();
    let card = fixture::band_model(dir.path(), "band128", 1, 128);
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let store = dir.path().join("state/detections.sqlite");
    let config = dir.path().join("station.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[station]
name = "durability"
[api]
listen = "{addr}"
[runtime]
execution_provider = "cpu"
intra_threads = 1
[store]
path = "{}"
flush_interval_ms = 20
[[source]]
name = "tones"
kind = "replay"
path = "{}"
mode = "paced"
loop = true
sample_rate_hz = 50000.0
[gate]
kind = "snr"
threshold_db = 6.0
[[model]]
card = "{}"
source = "tones"
batch_size = 4
max_wait_ms = 10
"#,
            store.display(),
            tones_path().display(),
            card.display()
        ),
    )
    .expect("write config");
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("notify socket");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");

    let mut first = Daemon::start(&config, addr, Some(&sock_path), dir.path().join("run1.log"));
    first.wait_ready();
    let t0 = Instant::now();
    let seen = loop {
        let d = first.detections();
        if d.len() >= 20 {
            break d;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "fewer than 20 detections after 60 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let sent = notifications(&sock);
    assert!(sent.iter().any(|m| m == "READY=1"), "{sent:?}");
    first.signal("-KILL");
    let (status, _) = first.wait_exit();
    assert!(!status.success(), "killed");

    let mut second = Daemon::start(&config, addr, Some(&sock_path), dir.path().join("run2.log"));
    second.wait_ready();
    let after = second.detections();
    for d in &seen {
        let id = d["id"].as_i64().expect("id");
        let found = after
            .iter()
            .find(|a| a["id"].as_i64() == Some(id))
            .unwrap_or_else(|| panic!("detection {id} returned before kill -9 is gone"));
        assert_eq!(found, d, "detection {id} changed");
    }
    // The watchdog is fed while the flowgraph runs (WATCHDOG_USEC = 0.4 s).
    std::thread::sleep(Duration::from_millis(900));
    second.signal("-TERM");
    let (status, stderr) = second.wait_exit();
    assert!(
        status.success(),
        "SIGTERM must end with exit 0: {status}\n{stderr}"
    );
    assert!(stderr.contains("stopped cleanly"), "{stderr}");
    let sent = notifications(&sock);
    for want in ["READY=1", "WATCHDOG=1", "STOPPING=1"] {
        assert!(sent.iter().any(|m| m == want), "no {want} in {sent:?}");
    }

    let store = specwatch::store::Store::open(
        &specwatch::store::StoreConfig::new(&store),
        specwatch::telemetry::Metrics::new(),
    )
    .expect("reopen the store");
    store.integrity_check().expect("integrity_check ok");
    store.close().expect("close");
}

#[test]
fn devices_says_what_is_compiled_in() {
    let out = Command::new(common::bin("specwatch"))
        .arg("devices")
        .output()
        .expect("run devices");
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    for backend in ["UHD", "Soapy"] {
        assert!(stdout.contains(backend), "{stdout}");
    }
    if !cfg!(feature = "uhd") {
        assert!(stdout.contains("UHD: not compiled in"), "{stdout}");
    }
}

// ---------------------------------------------------------------- hardware sources

const SOAPY_SOURCE: &str = "kind = \"soapy\"\nargs = \"driver=specwatch-no-such-driver\"\ncenter_freq_hz = 433.92e6\nsample_rate_hz = 1e6\nmax_retries = 2\nretry_backoff_ms = 10";
const UHD_SOURCE: &str = "kind = \"uhd\"\naddresses = [\"192.0.2.1\", \"192.0.2.2\"]\ncenter_freq_hz = 2.45e9\nsample_rate_hz = 1e6\nmax_retries = 1\nretry_backoff_ms = 10";

fn hardware_config(dir: &Path, source: &str) -> Config {
    let card = fixture::band_model(dir, "band128", 1, 128);
    let text = MINIMAL
        .replace("kind = \"synthetic\"", source)
        .replace("models/amc128.json", &card.display().to_string());
    Config::parse(&text).expect("valid hardware config")
}

#[cfg(not(feature = "soapy"))]
#[test]
fn soapy_source_without_the_feature_says_how_to_get_it() {
    if !common::runtime_available() {
        return;
    }
    let dir = common::scratch();
    let err = specwatch::flowgraph::Station::prepare(&hardware_config(dir.path(), SOAPY_SOURCE))
        .expect_err("no soapy in this build")
        .to_string();
    assert!(
        err.contains("source[0].kind") && err.contains("--features soapy"),
        "{err}"
    );
}

#[cfg(not(feature = "uhd"))]
#[test]
fn uhd_source_without_the_feature_says_how_to_get_it() {
    if !common::runtime_available() {
        return;
    }
    let dir = common::scratch();
    let err = specwatch::flowgraph::Station::prepare(&hardware_config(dir.path(), UHD_SOURCE))
        .expect_err("no uhd in this build")
        .to_string();
    assert!(
        err.contains("source[0].kind") && err.contains("--features uhd"),
        "{err}"
    );
}

/// With the feature: a device that is not there is retried with backoff, counted as stream
/// errors, and the run ends with an error naming the source once the retries are spent.
#[cfg(any(feature = "soapy", feature = "uhd"))]
fn hardware_gives_up(source: &str, attempts: u64) {
    if !common::runtime_available() {
        return;
    }
    let dir = common::scratch();
    let station = specwatch::flowgraph::Station::prepare(&hardware_config(dir.path(), source))
        .expect("prepare (devices open when the flowgraph starts)");
    let metrics = specwatch::telemetry::Metrics::new();
    let running = station
        .start(specwatch::flowgraph::CollectingSink::new(), metrics.clone())
        .expect("start");
    let t0 = Instant::now();
    while !running.is_finished() && running.fault().is_none() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the source never gave up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    running.stop_blocking();
    let err = running.join().expect_err("no device").to_string();
    assert!(
        err.contains("source 's'") && err.contains("gave up after"),
        "{err}"
    );
    assert_eq!(
        metrics.stream_errors_total.with_label_values(&["s"]).get(),
        attempts
    );
}

#[cfg(feature = "soapy")]
#[test]
fn soapy_source_without_a_device_retries_then_fails_naming_it() {
    hardware_gives_up(SOAPY_SOURCE, 3);
}

#[cfg(feature = "uhd")]
#[test]
fn uhd_source_without_a_device_retries_then_fails_naming_it() {
    hardware_gives_up(UHD_SOURCE, 2);
}

/// A real Prometheus server scrapes the running daemon (`specwatch run` on a looped one-channel
/// capture and a looped four-channel array capture with a model that gives angles and a MUSIC
/// bearing beside them), and every Grafana panel
/// query and dashboard variable returns finite data from it; `promtool check metrics` accepts
/// the daemon's exposition.
#[test]
fn prometheus_scraping_the_running_daemon_has_data_for_every_dashboard_panel() {
    use crate::common::prometheus::{
        PrometheusServer, assert_promtool_accepts, dashboard_path, label_values_to_promql,
        panel_queries, tool, variable_queries,
    };
    if !common::runtime_available() {
        return;
    }
    let (Some(_), Some(promtool)) = (tool("prometheus"), tool("promtool")) else {
        return;
    };
    let dir = common::scratch();
    let card = fixture::band_model(dir.path(), "band128", 1, 128);
    let array_card = band_aoa_model(dir.path(), "band128-array", LEARNED_ANGLES);
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let config = dir.path().join("station.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[station]
name = "scraped"
[api]
listen = "{addr}"
[runtime]
execution_provider = "cpu"
intra_threads = 1
[store]
path = "{store}"
flush_interval_ms = 20
[gate]
kind = "snr"
threshold_db = 6.0

[[source]]
name = "tones"
kind = "replay"
path = "{tones}"
mode = "paced"
loop = true
sample_rate_hz = 50000.0

[[source]]
name = "array"
kind = "replay"
path = "{array}"
mode = "paced"
loop = true
sample_rate_hz = 50000.0

[[model]]
card = "{card}"
source = "tones"
batch_size = 4
max_wait_ms = 10

[[model]]
card = "{array_card}"
source = "array"
channels = [0, 1, 2, 3]
batch_size = 4
max_wait_ms = 10
[model.doa]
array = "ura"
spacing_wavelengths = 0.5
step_deg = 2.0
"#,
            store = dir.path().join("state/detections.sqlite").display(),
            tones = tones_path().display(),
            array = array_path().display(),
            card = card.display(),
            array_card = array_card.display(),
        ),
    )
    .expect("write config");

    let mut daemon = Daemon::start(&config, addr, None, dir.path().join("run.log"));
    daemon.wait_ready();
    let prom = PrometheusServer::start(&addr.to_string()).unwrap_or_else(|e| panic!("{e}"));
    // Rates over the dashboard's 30 s interval need two scrapes with traffic between them.
    prom.wait_for_scrapes(4, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));

    let mut missing = Vec::new();
    let queries = panel_queries(&dashboard_path());
    for (title, expr) in &queries {
        let samples = prom
            .query(expr)
            .unwrap_or_else(|e| panic!("panel {title}: {e}"));
        if samples.is_empty() {
            missing.push(format!("panel {title}: no series from {expr}"));
        }
        for s in samples.iter().filter(|s| !s.value.is_finite()) {
            missing.push(format!(
                "panel {title}: {} for {:?} from {expr}",
                s.value, s.labels
            ));
        }
    }
    for (name, query) in variable_queries(&dashboard_path()) {
        let promql = label_values_to_promql(&query).expect("label_values query");
        if !prom
            .has_data(&promql)
            .unwrap_or_else(|e| panic!("variable {name}: {e}"))
        {
            missing.push(format!("variable {name}: no series from {promql}"));
        }
    }
    assert!(
        missing.is_empty(),
        "the dashboard lacks data from the running daemon:\n{}\ndaemon log:\n{}",
        missing.join("\n"),
        daemon.log()
    );
    eprintln!(
        "{} panel queries returned data from the running daemon",
        queries.len()
    );

    // What the panels show is what the daemon did: both models classified windows, the
    // array model's detections carry both bearings, and the gate held back the noise.
    let value = |expr: &str| -> f64 {
        let samples = prom.query(expr).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(samples.len(), 1, "{expr}: {samples:?}");
        samples[0].value
    };
    for model in ["band128", "band128-array"] {
        let classified = value(&format!(
            "specwatch_windows_classified_total{{model=\"{model}\"}}"
        ));
        assert!(classified > 0.0, "{model} classified {classified}");
    }
    for estimator in ["model", "music"] {
        assert!(
            value(&format!(
                "sum(specwatch_detection_azimuth_degrees_count{{model=\"band128-array\", estimator=\"{estimator}\"}})"
            )) > 0.0,
            "no {estimator} azimuths"
        );
    }
    // The model says 35°, MUSIC about 20°: every compared window disagrees by about 15°.
    assert!(
        value("sum(specwatch_bearing_disagreement_degrees_count{model=\"band128-array\"})") > 0.0
    );
    let median = value(
        "histogram_quantile(0.5, sum by (le) (specwatch_bearing_disagreement_degrees_bucket{model=\"band128-array\"}))",
    );
    assert!(
        (10.0..=20.0).contains(&median),
        "median disagreement {median}"
    );
    // The one-channel model has no bearing to give.
    assert!(
        !prom
            .has_data("specwatch_detection_azimuth_degrees_count{model=\"band128\"} > 0")
            .expect("query")
    );
    assert!(value("sum(specwatch_windows_gate_rejected_total)") > 0.0);
    assert_eq!(value("specwatch_flowgraph_running"), 1.0);
    assert_eq!(value("specwatch_models_loaded"), 2.0);

    let (status, body) = http_get(addr, "/metrics").expect("GET /metrics");
    assert_eq!(status, 200);
    assert_promtool_accepts(&promtool, &body);

    daemon.signal("-TERM");
    let (status, stderr) = daemon.wait_exit();
    assert!(
        status.success(),
        "SIGTERM must end with exit 0: {status}\n{stderr}"
    );
}
