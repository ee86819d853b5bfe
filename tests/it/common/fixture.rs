//! Deterministic fixtures for the daemon: a small real ONNX classifier with its card, and tone
//! captures with their truth.
//!
//! The *band classifier* is a real model, built with [`specwatch::onnx::GraphBuilder`]: it takes
//! the card's `fft_log_mag` representation of a unit-RMS window (`[N, 2·channels, len]`),
//! flattens it and applies one `Gemm` whose rows average channel 0's log-power bins over each
//! quarter of the (fftshifted) band. Its four classes say which quarter holds the most power:
//! `neg-high` (−fs/2..−fs/4), `neg-low` (−fs/4..0), `pos-low` (0..fs/4), `pos-high` (fs/4..fs/2).
//! A clean tone is therefore classified by where it is, which makes golden detections mean
//! something without a trained model. It is a test fixture, never a default model.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use num_complex::Complex64;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use serde_json::json;
use specwatch::dsp::array::ArrayGeometry;
use specwatch::iq::C32;
use specwatch::iq::npy::write_array;
use specwatch::iq::sidecar::{Sidecar, TruthSpan};
use specwatch::onnx::{Dim, GraphBuilder, ops};

/// The band classifier's classes, by quarter of the fftshifted band.
pub const BAND_CLASSES: [&str; 4] = ["neg-high", "neg-low", "pos-low", "pos-high"];

/// Sample rate written into fixture cards and sidecars, Hz.
pub const FIXTURE_RATE_HZ: f64 = 1e6;

/// The class the band classifier gives a tone at `freq` cycles/sample (in −0.5..0.5).
pub fn band_of(freq: f64) -> &'static str {
    let q = ((freq + 0.5) * 4.0).floor().clamp(0.0, 3.0) as usize;
    BAND_CLASSES[q]
}

/// Writes `<dir>/<name>.onnx` and its card `<dir>/<name>.json`: the band classifier for
/// windows of `channels × len`. Returns the card's path.
pub fn band_model(dir: &Path, name: &str, channels: usize, len: usize) -> PathBuf {
    assert!(len.is_multiple_of(4), "len must split into four bands");
    let rows = 2 * channels;
    let width = rows * len;
    let mut g = GraphBuilder::new(name);
    let x = g
        .input("x", &[Dim::batch(), Dim::from(rows), Dim::from(len)])
        .expect("input");
    let flat = ops::flatten(&mut g, &x, 1).expect("flatten");
    // Row k: the mean of channel 0's log-power bins in quarter k, times 0.5 (so a 10 dB
    // difference between quarters is a 5-nat logit difference).
    let per_band = len / 4;
    let mut w = vec![0.0f32; 4 * width];
    for k in 0..4 {
        for b in k * per_band..(k + 1) * per_band {
            w[k * width + b] = 0.5 / per_band as f32;
        }
    }
    let weights = ops::LinearWeights::torch(
        specwatch::onnx::Weights::new(w, [4, width]),
        Some(specwatch::onnx::Weights::new(vec![0.0; 4], [4])),
    );
    let logits = ops::gemm(&mut g, "bands", &flat, &weights).expect("gemm");
    g.output(&logits, &[Dim::batch(), Dim::from(4)])
        .expect("output");
    let onnx = dir.join(format!("{name}.onnx"));
    g.save(&onnx).expect("write the fixture model");
    let card = json!({
        "name": name,
        "version": "0.1.0",
        "task": "amc",
        "window_len": len,
        "channels": channels,
        "sample_rate_hz": FIXTURE_RATE_HZ,
        "inputs": [{"name": "x", "layout": ["N", rows, len], "dtype": "float32",
                    "representation": "fft_log_mag", "normalization": "unit_rms"}],
        "outputs": [{"name": logits, "kind": "logits"}],
        "classes": BAND_CLASSES,
        "dataset": {"name": "none (fixed weights)", "manifest_sha256": "00".repeat(32)},
        "metrics": {},
        "training": {"command": "tests/it/common/fixture.rs band_model", "arch": "spectral band gemm", "epochs": 0}
    });
    let card_path = dir.join(format!("{name}.json"));
    std::fs::write(
        &card_path,
        serde_json::to_string_pretty(&card).expect("card json"),
    )
    .expect("write the fixture card");
    card_path
}

/// One stretch of a tone capture: a tone at `freq` cycles/sample and `snr_db` (over the unit
/// noise floor), or noise only (`freq = None`).
#[derive(Debug, Clone, Copy)]
pub struct Segment {
    pub freq: Option<f64>,
    pub samples: usize,
    pub snr_db: f64,
}

/// Writes a tone capture (`.npy` complex64, shape `(channels, samples)` or `(samples,)` for one
/// channel) and its sidecar with one truth span per tone segment. With more than one channel
/// the tones arrive as a plane wave from `angles_deg` (azimuth, elevation) on the 2×2 URA at
/// half-wavelength spacing, recorded in the sidecar. Unit-power complex noise on every channel.
pub fn tone_capture(
    path: &Path,
    segments: &[Segment],
    channels: usize,
    angles_deg: (f64, f64),
    seed: u64,
) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let total: usize = segments.iter().map(|s| s.samples).sum();
    let geometry = ArrayGeometry::default_aoa4();
    let steering: Vec<Complex64> = if channels > 1 {
        assert_eq!(
            channels,
            geometry.len(),
            "multi-channel fixtures use the 2×2 URA"
        );
        geometry.steering(angles_deg.0, angles_deg.1)
    } else {
        vec![Complex64::new(1.0, 0.0)]
    };
    let mut data = vec![C32::new(0.0, 0.0); channels * total];
    let sigma = std::f64::consts::FRAC_1_SQRT_2;
    let mut truth = Vec::new();
    let mut at = 0usize;
    for seg in segments {
        let amp = 10f64.powf(seg.snr_db / 20.0);
        for i in 0..seg.samples {
            let n = at + i;
            let s = seg.freq.map_or(Complex64::new(0.0, 0.0), |f| {
                Complex64::from_polar(amp, 2.0 * std::f64::consts::PI * f * n as f64)
            });
            for c in 0..channels {
                let (re, im): (f64, f64) = (
                    StandardNormal.sample(&mut rng),
                    StandardNormal.sample(&mut rng),
                );
                let noise = Complex64::new(sigma * re, sigma * im);
                let v = s * steering[c] + noise;
                data[c * total + n] = C32::new(v.re as f32, v.im as f32);
            }
        }
        if let Some(f) = seg.freq {
            truth.push(TruthSpan {
                class: band_of(f).to_string(),
                snr_db: seg.snr_db as f32,
                azimuth_deg: (channels > 1).then_some(angles_deg.0 as f32),
                elevation_deg: (channels > 1).then_some(angles_deg.1 as f32),
                sample_start: at as u64,
                sample_count: seg.samples as u64,
                channel: None,
            });
        }
        at += seg.samples;
    }
    let shape: Vec<usize> = if channels == 1 {
        vec![total]
    } else {
        vec![channels, total]
    };
    write_array(path, &shape, &data).expect("write the capture");
    let sidecar = Sidecar {
        sample_rate_hz: Some(FIXTURE_RATE_HZ),
        center_freq_hz: Some(433.92e6),
        start_time: Some("2024-05-01T12:00:00Z".into()),
        channel_notes: Vec::new(),
        array: (channels > 1).then_some(geometry),
        truth,
    };
    sidecar
        .save(&specwatch::iq::sidecar::sidecar_path(path))
        .expect("write the sidecar");
}
