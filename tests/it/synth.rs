//! The modulators and the audio source, checked by measurable properties: constellation
//! clusters, occupied bandwidth, constant envelope, one-sided SSB spectra, unit mean power,
//! determinism, the class-name registry, and WAV loading.

use std::f64::consts::PI;
use std::sync::{Arc, OnceLock};

use num_complex::Complex64;
use rustfft::FftPlanner;
use specwatch::iq::C32;
use specwatch::synth::audio::AudioBank;
use specwatch::synth::classes::{ModContext, known_classes, modulator};
use specwatch::synth::pulse::{RRC_SPAN_SYMBOLS, rrc_taps};
use specwatch::synth::{SynthError, window_rng};

use crate::common::scratch;

const SPS: usize = 8;
const ROLLOFF: f32 = 0.35;

const RML2016A: [&str; 11] = [
    "8PSK", "AM-DSB", "AM-SSB", "BPSK", "CPFSK", "GFSK", "PAM4", "QAM16", "QAM64", "QPSK", "WBFM",
];
const RML2018A: [&str; 24] = [
    "OOK",
    "4ASK",
    "8ASK",
    "BPSK",
    "QPSK",
    "8PSK",
    "16PSK",
    "32PSK",
    "16APSK",
    "32APSK",
    "64APSK",
    "128APSK",
    "16QAM",
    "32QAM",
    "64QAM",
    "128QAM",
    "256QAM",
    "AM-SSB-WC",
    "AM-SSB-SC",
    "AM-DSB-WC",
    "AM-DSB-SC",
    "FM",
    "GMSK",
    "OQPSK",
];
const ZSL7: [&str; 7] = ["BPSK", "QPSK", "2ASK", "4ASK", "16QAM", "32QAM", "64QAM"];
const AOA: [&str; 6] = ["16QAM", "64QAM", "BPSK", "QPSK", "PAM4", "CW-AM"];

/// A 6-second speech-like bank shared by the tests (made once).
fn bank() -> Arc<AudioBank> {
    static BANK: OnceLock<Arc<AudioBank>> = OnceLock::new();
    BANK.get_or_init(|| Arc::new(AudioBank::speech_like(11, 6.0)))
        .clone()
}

fn ctx() -> ModContext {
    ModContext::new(bank())
}

/// `windows` windows of `len` samples of `class`, window `i` from `window_rng(seed, i)`.
fn windows(class: &str, seed: u64, windows: usize, len: usize) -> Vec<Vec<C32>> {
    let m = modulator(class, &ctx()).expect("known class");
    (0..windows as u64)
        .map(|i| {
            let x = m.generate(&mut window_rng(seed, i), len);
            assert_eq!(x.len(), len, "{class}: window length");
            x
        })
        .collect()
}

fn power(x: &[C32]) -> f64 {
    x.iter().map(|v| f64::from(v.norm_sqr())).sum::<f64>() / x.len().max(1) as f64
}

/// Welch power spectrum (Hann, `nfft`-point segments, half overlap), bins in FFT order.
fn welch(x: &[C32], nfft: usize) -> Vec<f64> {
    let fft = FftPlanner::<f64>::new().plan_fft_forward(nfft);
    let win: Vec<f64> = (0..nfft)
        .map(|i| 0.5 - 0.5 * (2.0 * PI * i as f64 / nfft as f64).cos())
        .collect();
    let mut psd = vec![0.0; nfft];
    let mut start = 0;
    while start + nfft <= x.len() {
        let mut buf: Vec<Complex64> = x[start..start + nfft]
            .iter()
            .zip(&win)
            .map(|(v, w)| Complex64::new(f64::from(v.re), f64::from(v.im)) * w)
            .collect();
        fft.process(&mut buf);
        for (p, v) in psd.iter_mut().zip(&buf) {
            *p += v.norm_sqr();
        }
        start += nfft / 2;
    }
    psd
}

/// [`welch`] of each window separately (no segment straddles two windows), summed.
fn welch_each(ws: &[Vec<C32>], nfft: usize) -> Vec<f64> {
    let mut psd = vec![0.0; nfft];
    for w in ws {
        for (a, b) in psd.iter_mut().zip(welch(w, nfft)) {
            *a += b;
        }
    }
    psd
}

/// The bandwidth (cycles per sample) holding 99 % of the power: from the 0.5 % to the 99.5 %
/// point of the cumulative spectrum.
fn occupied_bandwidth_99(psd: &[f64]) -> f64 {
    let n = psd.len();
    // Reorder to ascending frequency, −1/2 … 1/2.
    let ordered: Vec<f64> = (0..n).map(|i| psd[(i + n / 2) % n]).collect();
    let total: f64 = ordered.iter().sum();
    let mut acc = 0.0;
    let (mut lo, mut hi) = (None, None);
    for (i, p) in ordered.iter().enumerate() {
        acc += p;
        if lo.is_none() && acc >= 0.005 * total {
            lo = Some(i);
        }
        if hi.is_none() && acc >= 0.995 * total {
            hi = Some(i);
        }
    }
    (hi.unwrap_or(n) - lo.unwrap_or(0) + 1) as f64 / n as f64
}

#[test]
fn every_recipe_class_name_is_accepted() {
    let c = ctx();
    for (recipe, names) in [
        ("rml2016a", &RML2016A[..]),
        ("rml2018a", &RML2018A),
        ("zsl7", &ZSL7),
        ("aoa4", &AOA),
    ] {
        for name in names {
            assert!(
                known_classes().contains(name),
                "{recipe}: {name} missing from known_classes()"
            );
            let m = modulator(name, &c).unwrap_or_else(|e| panic!("{recipe}: {name} refused: {e}"));
            let x = m.generate(&mut window_rng(1, 0), 128);
            assert_eq!(x.len(), 128);
            assert!(
                x.iter().all(|v| v.re.is_finite() && v.im.is_finite()),
                "{name}: non-finite samples"
            );
        }
    }
    for name in known_classes() {
        let m = modulator(name, &c).unwrap_or_else(|e| panic!("{name} is listed but refused: {e}"));
        assert!(
            m.generate(&mut window_rng(1, 0), 0).is_empty(),
            "{name}: len 0"
        );
        assert_eq!(
            m.generate(&mut window_rng(1, 0), 1).len(),
            1,
            "{name}: len 1"
        );
    }
}

#[test]
fn unknown_class_is_refused_naming_it() {
    for name in ["QAM17", "bpsk", "", "AM"] {
        match modulator(name, &ctx()) {
            Err(e @ SynthError::UnknownClass(_)) => {
                assert!(
                    e.to_string().contains(&format!("'{name}'")),
                    "message names the class: {e}"
                )
            }
            Err(e) => panic!("{name}: wrong error {e}"),
            Ok(_) => panic!("{name} accepted"),
        }
    }
}

#[test]
fn same_seed_gives_identical_samples() {
    let c = ctx();
    for name in known_classes() {
        let m = modulator(name, &c).expect("known");
        let a = m.generate(&mut window_rng(42, 3), 300);
        let b = m.generate(&mut window_rng(42, 3), 300);
        let other = m.generate(&mut window_rng(42, 4), 300);
        assert_eq!(
            a, b,
            "{name}: same seed and index must give the same samples"
        );
        assert_ne!(
            a, other,
            "{name}: another window index must give other samples"
        );
        // A fresh modulator (a fresh bank made from the same seed) gives the same samples too.
        let fresh = ModContext::new(Arc::new(AudioBank::speech_like(11, 6.0)));
        let again = modulator(name, &fresh)
            .expect("known")
            .generate(&mut window_rng(42, 3), 300);
        assert_eq!(
            a, again,
            "{name}: a rebuilt modulator must give the same samples"
        );
    }
}

/// Long-run mean power is 1 ± 5 % for every class. Digital classes: 64 windows of 1024;
/// audio-driven classes (whose per-window power follows the speech, pauses included): 20 000
/// windows of 128 from random offsets.
#[test]
fn long_run_mean_power_is_one() {
    let audio = [
        "AM-DSB",
        "AM-DSB-WC",
        "AM-DSB-SC",
        "AM-SSB",
        "AM-SSB-SC",
        "AM-SSB-WC",
        "CW-AM",
    ];
    for name in known_classes() {
        let (n, len) = if audio.contains(name) {
            (20_000, 128)
        } else {
            (64, 1024)
        };
        let ws = windows(name, 5, n, len);
        let p = ws.iter().map(|w| power(w)).sum::<f64>() / n as f64;
        assert!(
            (p - 1.0).abs() <= 0.05,
            "{name}: mean power {p:.4}, expected 1 ± 0.05"
        );
    }
}

/// The ideal constellation of a linear class, independent of the library's tables, at unit
/// mean power.
fn ideal(class: &str) -> Vec<Complex64> {
    let psk = |m: usize, off: f64| {
        (0..m)
            .map(|k| Complex64::from_polar(1.0, off + 2.0 * PI * k as f64 / m as f64))
            .collect::<Vec<_>>()
    };
    let grid = |side: i32, cut: i32| {
        let mut v = Vec::new();
        for a in 0..side {
            for b in 0..side {
                let ca = a < cut || a >= side - cut;
                let cb = b < cut || b >= side - cut;
                if !(ca && cb) {
                    v.push(Complex64::new(
                        f64::from(2 * a - side + 1),
                        f64::from(2 * b - side + 1),
                    ));
                }
            }
        }
        v
    };
    let rings = |spec: &[(usize, f64, f64)]| {
        let mut v = Vec::new();
        for &(n, r, off) in spec {
            for k in 0..n {
                v.push(Complex64::from_polar(
                    r,
                    off + 2.0 * PI * k as f64 / n as f64,
                ));
            }
        }
        v
    };
    let pts: Vec<Complex64> = match class {
        "BPSK" => psk(2, 0.0),
        "QPSK" | "OQPSK" => psk(4, PI / 4.0),
        "8PSK" => psk(8, 0.0),
        "16PSK" => psk(16, 0.0),
        "32PSK" => psk(32, 0.0),
        "QAM16" | "16QAM" => grid(4, 0),
        "QAM64" | "64QAM" => grid(8, 0),
        "256QAM" => grid(16, 0),
        "32QAM" => grid(6, 1),
        "128QAM" => grid(12, 2),
        "PAM4" => [-3.0, -1.0, 1.0, 3.0]
            .iter()
            .map(|&v| Complex64::new(v, 0.0))
            .collect(),
        "OOK" | "2ASK" => (0..2).map(|v| Complex64::new(f64::from(v), 0.0)).collect(),
        "4ASK" => (0..4).map(|v| Complex64::new(f64::from(v), 0.0)).collect(),
        "8ASK" => (0..8).map(|v| Complex64::new(f64::from(v), 0.0)).collect(),
        "16APSK" => rings(&[(4, 1.0, PI / 4.0), (12, 2.85, PI / 12.0)]),
        "32APSK" => rings(&[
            (4, 1.0, PI / 4.0),
            (12, 2.84, PI / 12.0),
            (16, 5.27, PI / 16.0),
        ]),
        "64APSK" => rings(&[
            (4, 1.0, PI / 4.0),
            (12, 2.4, PI / 12.0),
            (20, 4.3, PI / 20.0),
            (28, 7.0, PI / 28.0),
        ]),
        "128APSK" => rings(&[
            (16, 1.0, PI / 16.0),
            (16, 1.715, 0.0),
            (16, 2.118, PI / 16.0),
            (16, 2.681, 0.0),
            (16, 2.75, PI / 16.0),
            (48, 3.7, PI / 48.0),
        ]),
        other => panic!("{other} is not linear"),
    };
    let p = pts.iter().map(|v| v.norm_sqr()).sum::<f64>() / pts.len() as f64;
    pts.iter().map(|v| v / p.sqrt()).collect()
}

const LINEAR: [&str; 24] = [
    "BPSK", "QPSK", "OQPSK", "8PSK", "16PSK", "32PSK", "QAM16", "16QAM", "32QAM", "QAM64", "64QAM",
    "128QAM", "256QAM", "PAM4", "OOK", "2ASK", "4ASK", "8ASK", "16APSK", "32APSK", "64APSK",
    "128APSK", "BPSK", "QPSK",
];

/// Matched filter, best of the `sps` sampling phases, nearest ideal point: every point lies
/// well inside its own decision cell (error < 1/4 of the smallest distance between ideal
/// points), every ideal point is hit (the right number of clusters), and the EVM is below 2 %.
#[test]
fn linear_classes_cluster_on_their_constellation() {
    let h = rrc_taps(SPS, ROLLOFF, RRC_SPAN_SYMBOLS);
    for name in LINEAR {
        let pts = ideal(name);
        let dmin = pts
            .iter()
            .enumerate()
            .flat_map(|(i, a)| pts[i + 1..].iter().map(move |b| (a - b).norm()))
            .fold(f64::INFINITY, f64::min);
        let symbols = 16 * pts.len().max(128);
        let mut x = windows(name, 9, 1, symbols * SPS).remove(0);
        if name == "OQPSK" {
            // Undo the half-symbol lag of the Q branch.
            let lag = SPS / 2;
            for n in 0..x.len() - lag {
                x[n] = C32::new(x[n].re, x[n + lag].im);
            }
        }
        // Matched filter (the RRC taps have energy `sps`, so a symbol comes out `sps` times).
        let y: Vec<Complex64> = (0..x.len() - h.len())
            .map(|n| {
                h.iter()
                    .enumerate()
                    .map(|(k, &t)| {
                        Complex64::new(f64::from(x[n + k].re), f64::from(x[n + k].im))
                            * f64::from(t)
                    })
                    .sum::<Complex64>()
                    / SPS as f64
            })
            .collect();
        let mut best: Option<(f64, f64, usize)> = None;
        for phase in 0..SPS {
            let mut hit = vec![false; pts.len()];
            let (mut err2, mut worst, mut count) = (0.0, 0.0f64, 0);
            for v in y.iter().skip(phase).step_by(SPS) {
                let (i, d) = pts
                    .iter()
                    .enumerate()
                    .map(|(i, p)| (i, (v - p).norm()))
                    .min_by(|a, b| a.1.total_cmp(&b.1))
                    .expect("points");
                hit[i] = true;
                err2 += d * d;
                worst = worst.max(d);
                count += 1;
            }
            let evm = (err2 / count as f64).sqrt();
            let hits = hit.iter().filter(|h| **h).count();
            if best.is_none_or(|b| evm < b.0) {
                best = Some((evm, worst, hits));
            }
        }
        let (evm, worst, hits) = best.expect("phases");
        assert!(
            evm < 0.02,
            "{name}: EVM {:.2} %, expected < 2 %",
            evm * 100.0
        );
        assert!(
            worst < dmin / 4.0,
            "{name}: worst error {worst:.4} vs min distance {dmin:.4}"
        );
        assert_eq!(
            hits,
            pts.len(),
            "{name}: {hits} of {} clusters hit",
            pts.len()
        );
    }
}

/// The 99 %-power bandwidth of an ideal root-raised-cosine signal (cycles per sample): the
/// raised-cosine spectrum integrated numerically. For α = 0.35 it is 0.864·(1 + α)/sps.
fn ideal_rrc_bandwidth_99(sps: usize, alpha: f64) -> f64 {
    let spectrum = |f: f64| {
        let f = f.abs();
        if f <= (1.0 - alpha) / 2.0 {
            1.0
        } else if f <= (1.0 + alpha) / 2.0 {
            0.5 * (1.0 + (PI / alpha * (f - (1.0 - alpha) / 2.0)).cos())
        } else {
            0.0
        }
    };
    let df = 1e-5;
    let edge = (1.0 + alpha) / 2.0;
    let mut tail = 0.0;
    let mut f = edge;
    // One side holds half the power (the total is 1 in symbol-rate units); stop at 0.5 %.
    while tail < 0.005 {
        tail += spectrum(f - df / 2.0) * df;
        f -= df;
    }
    2.0 * f / sps as f64
}

/// 99 %-power occupied bandwidth of the linear classes (mean removed, so the carrier line of
/// unipolar ASK/OOK does not count; Welch, 512 bins): within ± 15 % of (1 + α)/sps of the
/// sample rate, and within ± 4 % of the exact 99 % bandwidth of an ideal RRC spectrum
/// (0.864·(1 + α)/sps for α = 0.35; the 11-symbol truncation and the 1/512 bins account for the
/// rest).
#[test]
fn linear_occupied_bandwidth_matches_rolloff() {
    let nominal = (1.0 + f64::from(ROLLOFF)) / SPS as f64;
    let exact = ideal_rrc_bandwidth_99(SPS, f64::from(ROLLOFF));
    for name in LINEAR {
        let ws = windows(name, 13, 32, 1024);
        let n = (ws.len() * 1024) as f32;
        let mean = ws.iter().flatten().fold(C32::new(0.0, 0.0), |a, v| a + v) / n;
        let centred: Vec<Vec<C32>> = ws
            .iter()
            .map(|w| w.iter().map(|v| v - mean).collect())
            .collect();
        let bw = occupied_bandwidth_99(&welch_each(&centred, 512));
        let ratio = bw / nominal;
        assert!(
            (ratio - 1.0).abs() <= 0.15,
            "{name}: 99 % bandwidth {bw:.4} of fs, expected (1+α)/sps = {nominal:.4} ± 15 % \
             (ratio {ratio:.3})"
        );
        assert!(
            (bw / exact - 1.0).abs() <= 0.04,
            "{name}: 99 % bandwidth {bw:.4} of fs, ideal RRC {exact:.4} ± 4 %"
        );
    }
}

/// |x| is 1 to within 1e-3 (relative) at every sample for the continuous-phase classes.
#[test]
fn frequency_modulations_have_constant_envelope() {
    for name in ["CPFSK", "GFSK", "GMSK", "WBFM", "FM"] {
        for w in windows(name, 17, 40, 1024) {
            let worst = w
                .iter()
                .map(|v| (v.norm() - 1.0).abs())
                .fold(0.0f32, f32::max);
            assert!(worst <= 1e-3, "{name}: envelope deviates by {worst:.2e}");
        }
    }
}

/// Phase steps per sample (tolerance 1e-3 rad): CPFSK ±k·π/sps = ±π/16; GFSK within ±0.1 and
/// reaching 0.1 on long runs; GMSK within ±(π/2)/8 and reaching it.
#[test]
fn frequency_modulations_follow_gnu_radio_semantics() {
    let steps = |name: &str| -> Vec<f64> {
        windows(name, 19, 20, 1024)
            .iter()
            .flat_map(|w| {
                w.windows(2)
                    .map(|p| f64::from((p[1] * p[0].conj()).arg()))
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    for s in steps("CPFSK") {
        assert!(
            (s.abs() - PI / 16.0).abs() < 1e-3,
            "CPFSK step {s}, expected ±π/16"
        );
    }
    for (name, full) in [("GFSK", 0.1), ("GMSK", PI / 2.0 / 8.0)] {
        let s = steps(name);
        let max = s.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(
            max <= full + 1e-3 && max >= full - 1e-3,
            "{name}: largest step {max}, expected {full}"
        );
    }
}

/// Upper-sideband SSB: the negative-frequency half holds at least 25 dB less power than the
/// positive half (8192-point Welch over non-silent windows, the bins within 50 Hz of DC left out
/// so a carrier does not count); DSB, for contrast, is symmetric within 1 dB.
#[test]
fn ssb_spectrum_is_one_sided() {
    let halves = |name: &str| {
        let ws: Vec<Vec<C32>> = windows(name, 23, 60, 16_384)
            .into_iter()
            .filter(|w| power(w) > 0.2)
            .collect();
        assert!(ws.len() >= 10, "{name}: too few non-silent windows");
        let psd = welch_each(&ws, 8192);
        let skip = 3; // 3 bins of 24.4 Hz
        let pos: f64 = psd[skip..4096].iter().sum();
        let neg: f64 = psd[4097..8192 - skip + 1].iter().sum();
        10.0 * (pos / neg).log10()
    };
    for name in ["AM-SSB", "AM-SSB-SC", "AM-SSB-WC"] {
        let db = halves(name);
        assert!(
            db >= 25.0,
            "{name}: unwanted half only {db:.1} dB down, expected ≥ 25 dB"
        );
    }
    let db = halves("AM-DSB-SC");
    assert!(
        db.abs() <= 1.0,
        "AM-DSB-SC: halves differ by {db:.1} dB, expected symmetric"
    );
}

/// AM with carrier has its carrier (mean > 0, samples real); CW-AM's envelope swings by its
/// documented depth 0.3–1.0.
#[test]
fn am_carrier_and_cw_am_depth() {
    for w in windows("AM-DSB", 29, 50, 1024) {
        assert!(
            w.iter().all(|v| v.im == 0.0 && v.re >= -1e-6),
            "AM-DSB: 1 + a with |a| ≤ 1 is real and ≥ 0"
        );
    }
    for w in windows("CW-AM", 31, 200, 1024) {
        let max = w.iter().map(|v| v.re).fold(f32::MIN, f32::max);
        let min = w.iter().map(|v| v.re).fold(f32::MAX, f32::min);
        let depth = (max - min) / (max + min);
        // 1024 samples hold at least 2.5 tone periods (f ≥ 0.0025), so both extremes occur.
        assert!((0.29..=1.001).contains(&depth), "CW-AM depth {depth}");
    }
}

#[test]
fn speech_like_audio_is_deterministic_with_pauses() {
    let a = AudioBank::speech_like(3, 8.0);
    let b = AudioBank::speech_like(3, 8.0);
    let c = AudioBank::speech_like(4, 8.0);
    assert_eq!(a.samples(), b.samples(), "same seed, same audio");
    assert_ne!(a.samples(), c.samples(), "another seed, other audio");
    assert_eq!(a.samples().len(), 8 * 44_100);
    let peak = a.samples().iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!((peak - 1.0).abs() < 1e-6, "peak-normalised: {peak}");
    let silent =
        a.samples().iter().filter(|v| **v == 0.0).count() as f64 / a.samples().len() as f64;
    assert!(
        (0.15..=0.45).contains(&silent),
        "silent fraction {silent:.3}, expected 0.15–0.45"
    );
    let d = a.describe();
    assert_eq!(d["kind"], "speech_like");
    assert_eq!(d["seed"], 3);
    assert!((d["silent_fraction"].as_f64().expect("number") - silent).abs() < 1e-9);
    // Speech-band: at least 90 % of the power below 4 kHz.
    let x: Vec<C32> = a.samples().iter().map(|&v| C32::new(v, 0.0)).collect();
    let psd = welch(&x, 4096);
    let below: f64 = psd[..372].iter().sum::<f64>() + psd[4096 - 371..].iter().sum::<f64>();
    let total: f64 = psd.iter().sum();
    assert!(
        below / total >= 0.9,
        "power below 4 kHz: {:.3}",
        below / total
    );
}

#[test]
fn from_wav_mixes_resamples_and_normalises() {
    let dir = scratch();
    let path = dir.path().join("tone.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&path, spec).expect("create wav");
    for n in 0..48_000 {
        let s = (2.0 * PI * 440.0 * f64::from(n) / 48_000.0).sin();
        w.write_sample((s * 8000.0) as i16).expect("write");
        w.write_sample((s * 4000.0) as i16).expect("write");
    }
    w.finalize().expect("finalize");
    let bank = AudioBank::from_wav(&path).expect("a valid WAV loads");
    let x = bank.samples();
    assert!(
        (x.len() as i64 - 44_100).abs() <= 2,
        "1 s at 44.1 kHz: {} samples",
        x.len()
    );
    let peak = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!((peak - 1.0).abs() < 1e-6, "peak {peak}");
    // 440 Hz: count upward zero crossings in the middle 0.8 s (tolerance ±1 %).
    let mid = &x[4410..4410 + 35_280];
    let ups = mid.windows(2).filter(|p| p[0] < 0.0 && p[1] >= 0.0).count() as f64 / 0.8;
    assert!(
        (ups - 440.0).abs() <= 4.4,
        "tone at {ups} Hz after resampling"
    );
    assert_eq!(bank.describe()["kind"], "wav");
    assert_eq!(bank.describe()["file_sample_rate_hz"], 48_000);
    // The analog classes run on it.
    let c = ModContext::new(Arc::new(bank));
    for name in ["AM-DSB", "AM-SSB", "WBFM", "FM"] {
        let y = modulator(name, &c)
            .expect("known")
            .generate(&mut window_rng(1, 1), 1024);
        assert!(power(&y) > 0.1, "{name} on the WAV audio has power");
    }
}

/// Downsampling a 96 kHz file removes what 44.1 kHz cannot hold: a 30 kHz tone (which would
/// alias to 14.1 kHz) ends ≥ 40 dB below the 1 kHz tone beside it.
#[test]
fn from_wav_downsampling_is_anti_aliased() {
    let dir = scratch();
    let path = dir.path().join("hi-rate.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 96_000,
        bits_per_sample: 24,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&path, spec).expect("create wav");
    for n in 0..2 * 96_000 {
        let t = f64::from(n) / 96_000.0;
        let v = 0.4 * (2.0 * PI * 1000.0 * t).sin() + 0.4 * (2.0 * PI * 30_000.0 * t).sin();
        w.write_sample((v * 8_388_607.0) as i32).expect("write");
    }
    w.finalize().expect("finalize");
    let bank = AudioBank::from_wav(&path).expect("loads");
    let x = &bank.samples()[22_050..22_050 + 44_100];
    let tone = |hz: f64| {
        let acc: Complex64 = x
            .iter()
            .enumerate()
            .map(|(n, &v)| {
                Complex64::from_polar(f64::from(v), -2.0 * PI * hz * n as f64 / 44_100.0)
            })
            .sum();
        acc.norm_sqr()
    };
    let db = 10.0 * (tone(14_100.0) / tone(1000.0)).log10();
    assert!(
        db <= -40.0,
        "alias of the 30 kHz tone at {db:.1} dB, expected ≤ −40 dB"
    );
}

#[test]
fn from_wav_errors_name_the_file() {
    let dir = scratch();
    let garbage = dir.path().join("garbage.wav");
    std::fs::write(&garbage, b"this is not a RIFF file at all").expect("write");
    let silent = dir.path().join("silent.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 44_100,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&silent, spec).expect("create");
    for _ in 0..44_100 {
        w.write_sample(0i16).expect("write");
    }
    w.finalize().expect("finalize");
    let missing = dir.path().join("missing.wav");
    for (path, says) in [(&garbage, "WAV"), (&silent, "silent"), (&missing, "WAV")] {
        match AudioBank::from_wav(path) {
            Err(e @ SynthError::Audio { .. }) => {
                let msg = e.to_string();
                assert!(
                    msg.contains(&path.display().to_string()),
                    "names the file: {msg}"
                );
                assert!(msg.contains(says), "says what is wrong ({says}): {msg}");
            }
            Err(e) => panic!("wrong error kind: {e}"),
            Ok(_) => panic!("{} accepted", path.display()),
        }
    }
}

/// Deviation, measured on a full-scale 440 Hz tone (a 44.1 kHz float WAV): WBFM's largest phase
/// step is 2π·75 kHz/220.5 kHz times the pre-emphasis gain at 440 Hz (|1 + j2π·440·75 µs|)
/// ± 2 %; FM's is 2π·25 kHz/200 kHz ± 2 %.
#[test]
fn fm_deviation_follows_the_documented_settings() {
    let dir = scratch();
    let path = dir.path().join("a440.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 44_100,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(&path, spec).expect("create wav");
    for n in 0..44_100 {
        w.write_sample((2.0 * PI * 440.0 * f64::from(n) / 44_100.0).sin() as f32)
            .expect("write");
    }
    w.finalize().expect("finalize");
    let c = ModContext::new(Arc::new(AudioBank::from_wav(&path).expect("loads")));
    let preemph = (1.0 + (2.0 * PI * 440.0 * 75e-6).powi(2)).sqrt();
    for (name, want) in [
        ("WBFM", 2.0 * PI * 75e3 / 220.5e3 * preemph),
        ("FM", 2.0 * PI * 25e3 / 200e3),
    ] {
        let m = modulator(name, &c).expect("known");
        let mut max = 0.0f64;
        for i in 0..20 {
            let x = m.generate(&mut window_rng(3, i), 1024);
            for p in x.windows(2) {
                max = max.max(f64::from((p[1] * p[0].conj()).arg()).abs());
            }
        }
        assert!(
            (max / want - 1.0).abs() <= 0.02,
            "{name}: largest phase step {max:.4} rad, expected {want:.4}"
        );
    }
}

/// Suppressed-carrier AM windows that fall in a pause of the speech would carry no signal at all
/// (and an SNR label could not be true of them): they are redrawn elsewhere in the audio. The
/// threshold is −20 dB of the audio's mean window power, pauses included; the calibrated long-run
/// mean (1) is at most 2× that (pauses cover well under half the audio), so no window of 3000
/// may fall below 0.005 (−23 dB). A window survives 16 redraws silent with probability
/// ≈ 0.34¹⁷ ≈ 1e-8.
#[test]
fn suppressed_carrier_windows_are_never_silent() {
    let c = ctx();
    for class in ["AM-SSB", "AM-SSB-SC", "AM-DSB-SC"] {
        let m = modulator(class, &c).expect("known class");
        for i in 0..3000 {
            let w = m.generate(&mut window_rng(21, i), 128);
            let p = w.iter().map(|z| z.norm_sqr()).sum::<f32>() / 128.0;
            assert!(p >= 0.005, "{class} window {i}: power {p} is silent");
        }
    }
}
