//! What the architectures' own tests share: raw windows and the model input the daemon's
//! preprocessing makes of them (for checking an exported graph against burn on the same
//! windows), and an easy two-class dataset for their training tests.

use burn::tensor::{Device, Distribution, Tensor, TensorData};

use crate::dsp::normalize::Normalization;
use crate::dsp::repr::{ReprWorkspace, Representation};
use crate::iq::C32;

/// `n` one-channel raw windows of `len` samples (Gaussian noise, window `w` scaled by
/// `0.5 + w`) and the model input `[n, 2, len]` made from them by the daemon's preprocessing
/// (unit RMS, planar I/Q).
pub fn windows(n: usize, len: usize, device: &Device) -> (Vec<C32>, Tensor<3>) {
    let noise: Vec<f32> = Tensor::<3>::random([n, 2, len], Distribution::Normal(0.0, 1.0), device)
        .into_data()
        .try_into_vec()
        .expect("f32 noise");
    let raw: Vec<C32> = (0..n * len)
        .map(|k| {
            let (w, t) = (k / len, k % len);
            let scale = 0.5 + w as f32;
            C32::new(
                noise[w * 2 * len + t] * scale,
                noise[(w * 2 + 1) * len + t] * scale,
            )
        })
        .collect();
    let mut ws = ReprWorkspace::new();
    let mut rows = Vec::new();
    for window in raw.chunks_exact(len) {
        let mut window = window.to_vec();
        Normalization::UnitRms.apply(&mut window);
        Representation::Iq
            .write(&window, 1, &mut ws, &mut rows)
            .expect("I/Q rows of a one-channel window");
    }
    let x = Tensor::from_data(TensorData::new(rows, [n, 2, len]), device);
    (raw, x)
}

/// Writes an easy two-class set of `per_class` windows each, `len` samples of one I/Q channel:
/// a slow complex tone (|f| < 0.03 cycles/sample) against a fast one (0.2 < |f| < 0.3), of
/// random sign, phase and amplitude, in white noise at the SNRs `grid` (dB) in turn — the
/// architectures' own training tests.
pub fn write_tone_dataset(dir: &std::path::Path, per_class: usize, len: usize, grid: &[f32]) {
    use crate::iq::dataset::{DatasetSource, DatasetWriter, Manifest};
    use rand::{Rng, SeedableRng};
    use rand_distr::{Distribution as _, StandardNormal};

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let total = 2 * per_class;
    let mut w = DatasetWriter::create(dir, total, 1, len, 2, false).unwrap();
    for i in 0..total {
        let class = i % 2;
        let snr_db = grid[(i / 2) % grid.len()];
        let band = if class == 0 { 0.0..0.03 } else { 0.2..0.3 };
        let f = rng.random_range(band) * if rng.random_bool(0.5) { 1.0 } else { -1.0 };
        let phase = rng.random_range(0.0..std::f64::consts::TAU);
        let amplitude = rng.random_range(0.5..2.0);
        // Per-component noise deviation for a noise power amplitude² / 10^(snr/10).
        let noise = amplitude * 10f64.powf(-f64::from(snr_db) / 20.0) / 2f64.sqrt();
        let iq: Vec<C32> = (0..len)
            .map(|t| {
                let a = std::f64::consts::TAU * f * t as f64 + phase;
                let (n_i, n_q): (f64, f64) = (
                    StandardNormal.sample(&mut rng),
                    StandardNormal.sample(&mut rng),
                );
                C32::new(
                    (amplitude * a.cos() + noise * n_i) as f32,
                    (amplitude * a.sin() + noise * n_q) as f32,
                )
            })
            .collect();
        w.push(&iq, class, snr_db, None).unwrap();
    }
    w.finish(Manifest {
        format: String::new(),
        source: DatasetSource::Synth {
            recipe: "slow and fast tones (architecture tests)".into(),
            params: serde_json::Value::Null,
        },
        seed: Some(5),
        generator_version: "architecture tests".into(),
        classes: vec!["slow".into(), "fast".into()],
        window_len: len,
        channels: 1,
        sample_rate_hz: Some(200_000.0),
        snr_grid_db: grid.to_vec(),
        snr_definition: "signal power over noise power in the window".into(),
        count: 0,
        counts_per_class: Default::default(),
        has_angles: false,
        array: None,
        notes: vec![],
    })
    .unwrap();
}
