//! Channel impairments: the RadioML 2016.10a dynamic channel (sample-rate offset, carrier offset,
//! frequency-selective Rician fading), receiver impairments (phase noise, IQ imbalance, random
//! gain) and AWGN at an exact per-window SNR.
//!
//! # The dynamic channel
//! [`ChannelConfig::rml2016a`] mirrors GNU Radio's
//! `channels.dynamic_channel_model(200e3, 0.01, 50, 0.01, 500, 8, 1.0, True, 4, [0.0, 0.9, 1.7],
//! [1, 0.8, 0.3], 8, noise, seed)`, whose blocks run in the order sample-rate offset → carrier
//! offset → selective fading → noise. [`Channel::propagate`] runs the same order:
//!
//! 1. **Sample-rate offset (SRO).** A bounded random walk in Hz: every output sample adds a
//!    zero-mean step of standard deviation `std_dev_hz` and clamps at `±max_dev_hz`. GNU Radio's
//!    steps are Gaussian; here each step is uniform on `±√3·std_dev_hz` (16 random bits, a
//!    fraction of the cost) — the sum of a few dozen steps is Gaussian either way. The input is
//!    read at a position advancing by `1 + sro/fs` per output sample (fixed point, 2⁻³² sample
//!    resolution), interpolated by an 8-tap Kaiser-windowed sinc from a 512-phase polyphase
//!    table (nearest phase: timing error ≤ 1/1024 sample). The fractional read position starts
//!    uniform in [0, 1).
//! 2. **Carrier-frequency offset (CFO).** The same kind of walk, applied by a phase rotator
//!    (no per-sample `sin`/`cos`); the carrier phase starts uniform in [0, 2π).
//! 3. **Selective fading.** One sum-of-sinusoids fader per path (GNU Radio's `flat_fader`: the
//!    Xiao–Zheng model with `N` sinusoids and maximum Doppler `fD`); the first path carries the
//!    line-of-sight component (Rician `K`), the others are Rayleigh. Each path is delayed by an
//!    8-tap Kaiser-windowed sinc centred on its fractional delay. Path gains are normalised to
//!    unit total power (GNU Radio leaves `[1, 0.8, 0.3]` as given, +2.4 dB on average), so the
//!    channel's mean power gain is 1.
//!
//! **Windows are slices of a run.** RadioML 2016.10a's generator builds a fresh flowgraph for
//! every transmission of 10⁴ to 3·10⁴ source bytes (a few 10⁵ samples at 8 samples per symbol)
//! and cuts windows at random positions along it. GNU Radio's `sro_model` and `cfo_model` start
//! their walks at 0 Hz, so a window sees each walk after a uniformly random number of steps `k`
//! from 0: [`OffsetWalk::run_samples`] sets the run's length, and the walk's value at the
//! window's first sample is drawn from its law after `k` steps, `N(0, k·σ²)` clamped at `±max`
//! (about ±6 Hz for the RadioML settings). A walk without a run length has run for ever and
//! starts from its stationary spread, uniform on `[−max, max]` (that is also how a walk with
//! `σ = 0` draws its constant offset). Every fader starts with fresh uniform phases (GNU Radio
//! seeds each fader once; with every sinusoid's phase uniform, a fresh draw is the same process
//! seen at an independent, uniformly random moment). The fader's slow drift of the angle
//! θ (GNU Radio steps it by about `(0.00125·fD·Ts)^1.1` rad per sample, 10⁻⁹ rad at 1 Hz /
//! 200 kHz) is held constant within a window. The faders move slowly (2π·fD·Ts rad per sample at
//! most), so they are evaluated exactly every ≤ 64 samples (at most 0.01 rad apart) and
//! interpolated linearly in between (relative error ≈ 10⁻⁵).
//!
//! GNU Radio's fractional-delay taps are a one-sided truncated sinc (`sinc(k − d)`, `k = 0..7`);
//! here each path's taps are a symmetric windowed sinc around its delay, which adds a constant
//! latency of a few samples (irrelevant for a slice of a stream) and avoids the truncation ripple.
//!
//! # Receiver impairments (options)
//! Applied to the received signal before the noise, so the noise stays white and circular and
//! the SNR label stays exact (in a real receiver they would act on the noise too):
//! - **Phase noise**: a Wiener process, per-sample phase step `N(0, 2π·β/fs)` for a 3-dB
//!   linewidth β (default 5 Hz); common to all channels of an array (one local oscillator).
//! - **IQ imbalance**: gain imbalance uniform in ±1 dB and phase imbalance uniform in ±5°,
//!   drawn per window and per channel, split symmetrically between I and Q.
//! - **Random gain**: one gain per window, uniform in −10..+10 dB, applied *after* the noise to
//!   signal and noise alike, so the SNR label is unchanged.
//!
//! # Exact SNR
//! [`exact_noise`] draws complex white Gaussian noise and scales the realisation so that
//! `mean|s|² / mean|n|²` over the window (all channels together) is exactly `10^(snr/10)`, and
//! returns the SNR measured from the samples (equal to the request within float rounding).

use std::f64::consts::PI;
use std::sync::OnceLock;

use num_complex::Complex64;
use rand::{Rng, RngCore};
use rand_distr::StandardNormal;
use serde::Serialize;

use super::{RecipeOptions, SynthError, SynthRng};
use crate::iq::C32;

/// Taps of every fractional-delay and resampling interpolator.
pub const INTERP_TAPS: usize = 8;
/// Phases of the polyphase resampling table (a power of two).
const INTERP_PHASES: usize = 512;
/// Kaiser window β of the interpolators: error ≤ −59 dB for tones up to a quarter of the sample
/// rate (−32 dB at 0.3·fs).
const KAISER_BETA: f64 = 6.0;
/// At most this many sinusoids per fader.
const MAX_SINUSOIDS: usize = 32;
/// Fader grid: the largest phase advance of any sinusoid between exact evaluations (radians).
const FADER_GRID_PHASE: f64 = 0.01;
/// Fader grid: at most this many samples between exact evaluations.
const FADER_GRID_MAX: usize = 64;

/// A frequency offset that follows a random walk clamped at `±max_dev_hz` (GNU Radio's
/// `sro_model` / `cfo_model`): each sample adds a zero-mean step with standard deviation
/// `std_dev_hz`.
///
/// Where a window starts on the walk: with `run_samples = Some(n)` the walk starts at 0 Hz at
/// the start of a run of `n` samples and the window begins at a uniformly random sample of it
/// (GNU Radio's blocks start at 0, and RadioML cut its windows from short runs); with `None` the
/// walk has run for ever and the window starts from its stationary spread, uniform on ±max. A
/// walk with `std_dev_hz = 0` is a constant offset, uniform on ±max per window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct OffsetWalk {
    pub std_dev_hz: f64,
    pub max_dev_hz: f64,
    /// Samples of the run the window is cut from, the walk starting at 0 Hz at its start;
    /// `None`: stationary (uniform on ±max).
    pub run_samples: Option<u64>,
}

/// Samples of one RadioML 2016.10a transmission run: 10⁴ source bytes (3·10⁴ for QAM64) are
/// 8·10⁴ bits, a few 10⁵ samples at 8 samples per symbol — 320,000 for QPSK, QAM16 and QAM64.
pub const RML_RUN_SAMPLES: u64 = 320_000;

/// Frequency-selective fading: one sum-of-sinusoids fader per path.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fading {
    /// Sinusoids per fader (GNU Radio's `N`), 1 to 32.
    pub sinusoids: usize,
    /// Maximum Doppler frequency in Hz.
    pub doppler_hz: f64,
    /// Rician K factor of the line-of-sight component on the first path; `None` for Rayleigh.
    pub rician_k: Option<f64>,
    /// Delay of each path in samples (fractional allowed), 0 to 16.
    pub delays_samples: Vec<f64>,
    /// Amplitude of each path, before normalisation to unit total power.
    pub gains: Vec<f64>,
}

/// Oscillator phase noise: a Wiener process with this 3-dB linewidth.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PhaseNoise {
    pub linewidth_hz: f64,
}

/// Receiver IQ imbalance, drawn per window and channel uniformly within these bounds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct IqImbalance {
    pub max_gain_db: f64,
    pub max_phase_deg: f64,
}

/// A receiver gain per window, uniform in dB, applied after the noise.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RandomGain {
    pub min_db: f64,
    pub max_db: f64,
}

/// Everything a channel does to a window; serialised into the dataset manifest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChannelConfig {
    pub sample_rate_hz: f64,
    pub sample_rate_offset: Option<OffsetWalk>,
    pub carrier_offset: Option<OffsetWalk>,
    pub fading: Option<Fading>,
    pub phase_noise: Option<PhaseNoise>,
    pub iq_imbalance: Option<IqImbalance>,
    pub random_gain: Option<RandomGain>,
}

impl ChannelConfig {
    /// A channel that does nothing but carry the signal (noise is added separately).
    pub fn ideal(sample_rate_hz: f64) -> Self {
        Self {
            sample_rate_hz,
            sample_rate_offset: None,
            carrier_offset: None,
            fading: None,
            phase_noise: None,
            iq_imbalance: None,
            random_gain: None,
        }
    }

    /// RadioML 2016.10a's dynamic channel: walks starting at 0 Hz in runs of
    /// [`RML_RUN_SAMPLES`]; SRO walk σ 0.01 Hz, max 50 Hz; CFO walk σ 0.01 Hz,
    /// max 500 Hz; 8-sinusoid faders, 1 Hz Doppler, Rician K = 4 on the first of three paths at
    /// delays [0, 0.9, 1.7] samples with gains [1, 0.8, 0.3].
    pub fn rml2016a(sample_rate_hz: f64) -> Self {
        Self {
            sample_rate_offset: Some(OffsetWalk {
                std_dev_hz: 0.01,
                max_dev_hz: 50.0,
                run_samples: Some(RML_RUN_SAMPLES),
            }),
            carrier_offset: Some(OffsetWalk {
                std_dev_hz: 0.01,
                max_dev_hz: 500.0,
                run_samples: Some(RML_RUN_SAMPLES),
            }),
            fading: Some(Fading {
                sinusoids: 8,
                doppler_hz: 1.0,
                rician_k: Some(4.0),
                delays_samples: vec![0.0, 0.9, 1.7],
                gains: vec![1.0, 0.8, 0.3],
            }),
            ..Self::ideal(sample_rate_hz)
        }
    }

    /// Turns on the receiver impairments that `options` asks for, at their documented defaults
    /// (phase noise 5 Hz linewidth; IQ imbalance ±1 dB, ±5°; random gain −10..+10 dB).
    pub fn with_options(mut self, options: &RecipeOptions) -> Self {
        if options.phase_noise {
            self.phase_noise = Some(PhaseNoise { linewidth_hz: 5.0 });
        }
        if options.iq_imbalance {
            self.iq_imbalance = Some(IqImbalance {
                max_gain_db: 1.0,
                max_phase_deg: 5.0,
            });
        }
        if options.random_gain {
            self.random_gain = Some(RandomGain {
                min_db: -10.0,
                max_db: 10.0,
            });
        }
        self
    }

    /// Checks every parameter; the error names the one at fault.
    pub fn validate(&self) -> Result<(), SynthError> {
        let fs = self.sample_rate_hz;
        if !(fs.is_finite() && fs > 0.0) {
            return Err(param(
                "sample_rate_hz",
                format!("is {fs}; expected a positive rate"),
            ));
        }
        let walk = |name: &'static str, w: &OffsetWalk, max: f64| {
            if !(w.std_dev_hz.is_finite() && w.std_dev_hz >= 0.0) {
                return Err(param(
                    name,
                    format!("std_dev_hz is {}; expected ≥ 0", w.std_dev_hz),
                ));
            }
            if !(w.max_dev_hz.is_finite() && w.max_dev_hz >= 0.0 && w.max_dev_hz <= max) {
                return Err(param(
                    name,
                    format!("max_dev_hz is {}; expected 0 to {max} Hz", w.max_dev_hz),
                ));
            }
            if w.run_samples == Some(0) {
                return Err(param(
                    name,
                    "run_samples is 0; expected at least 1 sample, or none for a stationary walk"
                        .to_string(),
                ));
            }
            Ok(())
        };
        if let Some(w) = &self.sample_rate_offset {
            walk("sample_rate_offset", w, 0.01 * fs)?;
        }
        if let Some(w) = &self.carrier_offset {
            walk("carrier_offset", w, 0.25 * fs)?;
        }
        if let Some(f) = &self.fading {
            if !(1..=MAX_SINUSOIDS).contains(&f.sinusoids) {
                return Err(param(
                    "fading.sinusoids",
                    format!("is {}; expected 1 to {MAX_SINUSOIDS}", f.sinusoids),
                ));
            }
            if !(f.doppler_hz.is_finite() && f.doppler_hz >= 0.0 && f.doppler_hz <= 0.1 * fs) {
                return Err(param(
                    "fading.doppler_hz",
                    format!("is {}; expected 0 to {} Hz", f.doppler_hz, 0.1 * fs),
                ));
            }
            if let Some(k) = f.rician_k
                && !(k.is_finite() && k >= 0.0)
            {
                return Err(param("fading.rician_k", format!("is {k}; expected ≥ 0")));
            }
            if f.delays_samples.is_empty() || f.delays_samples.len() != f.gains.len() {
                return Err(param(
                    "fading.delays_samples",
                    format!(
                        "has {} entries and fading.gains {}; expected the same number, at least 1",
                        f.delays_samples.len(),
                        f.gains.len()
                    ),
                ));
            }
            if let Some(d) = f
                .delays_samples
                .iter()
                .find(|d| !(d.is_finite() && (0.0..=16.0).contains(*d)))
            {
                return Err(param(
                    "fading.delays_samples",
                    format!("contains {d}; expected 0 to 16 samples"),
                ));
            }
            if let Some(g) = f.gains.iter().find(|g| !(g.is_finite() && **g >= 0.0)) {
                return Err(param("fading.gains", format!("contains {g}; expected ≥ 0")));
            }
            if f.gains.iter().all(|g| *g == 0.0) {
                return Err(param(
                    "fading.gains",
                    "are all 0; at least one path must carry power".into(),
                ));
            }
        }
        if let Some(p) = &self.phase_noise
            && !(p.linewidth_hz.is_finite() && p.linewidth_hz >= 0.0 && p.linewidth_hz <= 0.01 * fs)
        {
            return Err(param(
                "phase_noise.linewidth_hz",
                format!("is {}; expected 0 to {} Hz", p.linewidth_hz, 0.01 * fs),
            ));
        }
        if let Some(q) = &self.iq_imbalance {
            if !(q.max_gain_db.is_finite() && (0.0..=6.0).contains(&q.max_gain_db)) {
                return Err(param(
                    "iq_imbalance.max_gain_db",
                    format!("is {}; expected 0 to 6 dB", q.max_gain_db),
                ));
            }
            if !(q.max_phase_deg.is_finite() && (0.0..=30.0).contains(&q.max_phase_deg)) {
                return Err(param(
                    "iq_imbalance.max_phase_deg",
                    format!("is {}; expected 0 to 30°", q.max_phase_deg),
                ));
            }
        }
        if let Some(g) = &self.random_gain
            && !(g.min_db.is_finite()
                && g.max_db.is_finite()
                && g.min_db <= g.max_db
                && g.min_db >= -60.0
                && g.max_db <= 60.0)
        {
            return Err(param(
                "random_gain",
                format!(
                    "is {}..{} dB; expected min ≤ max within ±60 dB",
                    g.min_db, g.max_db
                ),
            ));
        }
        Ok(())
    }

    /// The configuration as JSON, with the fixed implementation choices spelled out.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let Some(obj) = v.as_object_mut() {
            obj.insert(
                "implementation".into(),
                serde_json::json!({
                    "order": "sample-rate offset, carrier offset, selective fading, phase noise, IQ imbalance, noise, random gain",
                    "interpolator": format!("{INTERP_TAPS}-tap Kaiser-windowed sinc (beta {KAISER_BETA}), {INTERP_PHASES}-phase table for resampling"),
                    "walk_start": "with run_samples: the walk starts at 0 Hz at the start of the run and the window at a uniformly random sample k of it, so its first value is N(0, k·std_dev_hz²) clamped at ±max_dev_hz; without: uniform within ±max_dev_hz (the clamped walk's stationary spread)",
                    "walk_steps": "per sample, uniform on ±√3·std_dev_hz (zero mean, standard deviation std_dev_hz)",
                    "carrier_phase_start": "uniform in [0, 2π)",
                    "fader": "GNU Radio flat_fader (Xiao–Zheng sum of sinusoids) seen at a random moment: fresh uniform phases per window, θ held constant within a window, evaluated exactly every ≤64 samples and interpolated linearly; LOS (Rician K) on the first path only",
                    "path_gains": "normalised to unit total power",
                    "noise": "complex white Gaussian, realisation scaled to the exact window SNR",
                }),
            );
        }
        v
    }
}

fn param(name: &'static str, problem: String) -> SynthError {
    SynthError::Param { name, problem }
}

/// What the random walks did in one window (for tests and diagnostics).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ChannelTrace {
    /// Smallest and largest sample-rate offset of the window, Hz.
    pub sro_hz: (f64, f64),
    /// Smallest and largest carrier offset of the window, Hz.
    pub cfo_hz: (f64, f64),
}

/// One fading path with its precomputed delay taps.
#[derive(Debug, Clone)]
struct Path {
    amplitude: f64,
    /// Offset into the faded input of the first tap for output sample 0.
    start: usize,
    /// Delay taps; `None` for an integer delay (a single tap at `start`).
    taps: Option<[f32; INTERP_TAPS]>,
    los: bool,
}

/// A channel ready to run: the validated configuration and its precomputed tables.
#[derive(Debug, Clone)]
pub struct Channel {
    config: ChannelConfig,
    /// The fading paths with their delay taps (empty without fading).
    paths: Vec<Path>,
    /// Extra samples the fading filter reads beyond the output length.
    fading_history: usize,
}

impl Channel {
    /// Validates `config` and precomputes the delay taps of its fading paths.
    pub fn new(config: ChannelConfig) -> Result<Self, SynthError> {
        config.validate()?;
        let mut paths = Vec::new();
        let mut fading_history = 0;
        if let Some(f) = &config.fading {
            let norm = f.gains.iter().map(|g| g * g).sum::<f64>().sqrt();
            let max_int = f
                .delays_samples
                .iter()
                .fold(0.0f64, |m, d| m.max(d.floor())) as usize;
            // Output sample n of path j reads position n + bulk − d_j of the input.
            let bulk = max_int + INTERP_TAPS / 2;
            for (j, (&d, &g)) in f.delays_samples.iter().zip(&f.gains).enumerate() {
                let whole = d.floor();
                let frac = d - whole;
                let (start, taps) = if frac == 0.0 {
                    (bulk - whole as usize, None)
                } else {
                    // taps at k read position start + k; centre start + 3 + (1 − frac)
                    let mu = 1.0 - frac;
                    (
                        bulk - whole as usize - INTERP_TAPS / 2,
                        Some(interp_taps(mu)),
                    )
                };
                paths.push(Path {
                    amplitude: g / norm,
                    start,
                    taps,
                    los: j == 0 && f.rician_k.is_some(),
                });
            }
            fading_history = bulk + INTERP_TAPS / 2;
        }
        Ok(Self {
            config,
            paths,
            fading_history,
        })
    }

    /// The configuration this channel was built from.
    pub fn config(&self) -> &ChannelConfig {
        &self.config
    }

    /// How many source samples [`propagate`](Self::propagate) needs to make `len` output samples.
    pub fn input_len(&self, len: usize) -> usize {
        let faded_in = len + self.fading_history;
        match &self.config.sample_rate_offset {
            Some(w) => {
                let rate = 1.0 + w.max_dev_hz / self.config.sample_rate_hz;
                (faded_in as f64 * rate).ceil() as usize + INTERP_TAPS + 1
            }
            None => faded_in,
        }
    }

    /// Runs the propagation part of the channel (SRO, CFO, fading) on `input`, which must hold
    /// at least [`input_len(len)`](Self::input_len) samples, and returns `len` samples.
    ///
    /// # Panics
    /// If `input` is shorter than `input_len(len)`.
    pub fn propagate(&self, rng: &mut SynthRng, input: &[C32], len: usize) -> Vec<C32> {
        self.propagate_traced(rng, input, len).0
    }

    /// [`propagate`](Self::propagate), also reporting what the random walks did.
    pub fn propagate_traced(
        &self,
        rng: &mut SynthRng,
        input: &[C32],
        len: usize,
    ) -> (Vec<C32>, ChannelTrace) {
        assert!(
            input.len() >= self.input_len(len),
            "channel input has {} samples; {} needed for {len} output samples",
            input.len(),
            self.input_len(len)
        );
        let fs = self.config.sample_rate_hz;
        let mut trace = ChannelTrace::default();
        let faded_in = len + self.fading_history;
        let mut x = match &self.config.sample_rate_offset {
            Some(w) => {
                let (x, range) = resample_walk(rng, input, faded_in, w, fs);
                trace.sro_hz = range;
                x
            }
            None => input[..faded_in].to_vec(),
        };
        if let Some(w) = &self.config.carrier_offset {
            trace.cfo_hz = rotate_walk(rng, &mut x, w, fs);
        }
        let y = match &self.config.fading {
            Some(f) => self.fade(rng, &x, len, f),
            None => {
                x.truncate(len);
                x
            }
        };
        (y, trace)
    }

    fn fade(&self, rng: &mut SynthRng, x: &[C32], len: usize, f: &Fading) -> Vec<C32> {
        let fdts = f.doppler_hz / self.config.sample_rate_hz;
        let step = if fdts > 0.0 {
            ((FADER_GRID_PHASE / (2.0 * PI * fdts)).floor() as usize).clamp(1, FADER_GRID_MAX)
        } else {
            FADER_GRID_MAX
        };
        let points = len.div_ceil(step) + 1;
        let mut y = vec![C32::new(0.0, 0.0); len];
        let mut grid = vec![C32::new(0.0, 0.0); points];
        let mut delayed = Vec::new();
        for path in &self.paths {
            fader_grid(rng, f, fdts, path.los, step, path.amplitude, &mut grid);
            // The path's delayed input, filtered tap by tap (vectorises over samples).
            let z: &[C32] = match &path.taps {
                None => &x[path.start..path.start + len],
                Some(taps) => {
                    delayed.clear();
                    delayed.resize(len, C32::new(0.0, 0.0));
                    for (k, &g) in taps.iter().enumerate() {
                        let xs = &x[path.start + k..path.start + k + len];
                        for (d, xn) in delayed.iter_mut().zip(xs) {
                            *d += xn * g;
                        }
                    }
                    &delayed
                }
            };
            for (seg, w) in grid.windows(2).enumerate() {
                let lo = seg * step;
                let hi = ((seg + 1) * step).min(len);
                let dh = (w[1] - w[0]) / step as f32;
                let mut h = w[0];
                for (yn, zn) in y[lo..hi].iter_mut().zip(&z[lo..hi]) {
                    *yn += h * zn;
                    h += dh;
                }
            }
        }
        y
    }

    /// Applies the receiver impairments (phase noise common to all channels, IQ imbalance per
    /// channel) to a channel-major `[channels, len]` signal in place.
    pub fn receive(&self, rng: &mut SynthRng, signal: &mut [C32], channels: usize) {
        let len = signal.len() / channels.max(1);
        if len == 0 {
            return;
        }
        if let Some(p) = &self.config.phase_noise {
            let sigma = (2.0 * PI * p.linewidth_hz / self.config.sample_rate_hz).sqrt();
            let mut phasor = Complex64::new(1.0, 0.0);
            let mut seq = Vec::with_capacity(len);
            for _ in 0..len {
                seq.push(C32::new(phasor.re as f32, phasor.im as f32));
                let d = sigma * rng.sample::<f64, _>(StandardNormal);
                phasor *= small_phasor(d);
            }
            for ch in signal.chunks_exact_mut(len) {
                for (s, p) in ch.iter_mut().zip(&seq) {
                    *s *= p;
                }
            }
        }
        if let Some(q) = &self.config.iq_imbalance {
            for ch in signal.chunks_exact_mut(len) {
                let g_db = rng.random_range(-q.max_gain_db..=q.max_gain_db);
                let phi = rng
                    .random_range(-q.max_phase_deg..=q.max_phase_deg)
                    .to_radians();
                let (gi, gq) = (10f64.powf(g_db / 40.0), 10f64.powf(-g_db / 40.0));
                let (s, c) = (phi / 2.0).sin_cos();
                let (a, b) = ((gi * c) as f32, (gi * s) as f32);
                let (e, d) = ((gq * c) as f32, (gq * s) as f32);
                for v in ch.iter_mut() {
                    let (i, q) = (v.re, v.im);
                    *v = C32::new(a * i - b * q, e * q - d * i);
                }
            }
        }
    }

    /// The random receiver gain of one window (linear amplitude; 1 when the option is off).
    pub fn draw_gain(&self, rng: &mut SynthRng) -> f32 {
        match &self.config.random_gain {
            Some(g) if g.max_db > g.min_db => {
                10f64.powf(rng.random_range(g.min_db..=g.max_db) / 20.0) as f32
            }
            Some(g) => 10f64.powf(g.min_db / 20.0) as f32,
            None => 1.0,
        }
    }
}

/// Complex white Gaussian noise for `signal` at exactly `snr_db`: the realisation is scaled so
/// that `mean|s|² / mean|n|²` over all of `signal` equals `10^(snr_db/10)`. Returns the noise and
/// the SNR measured from the samples. An SNR of +∞ gives zero noise; a window whose signal power
/// is zero gets unit-power noise and a measured SNR of −∞.
///
/// # Panics
/// If `snr_db` is NaN or −∞.
pub fn exact_noise(rng: &mut SynthRng, signal: &[C32], snr_db: f32) -> (Vec<C32>, f32) {
    assert!(
        !snr_db.is_nan() && snr_db != f32::NEG_INFINITY,
        "SNR must be a number or +inf, got {snr_db}"
    );
    let mut noise: Vec<C32> = (0..signal.len())
        .map(|_| C32::new(rng.sample(StandardNormal), rng.sample(StandardNormal)))
        .collect();
    let ps = mean_power(signal);
    let pn = mean_power(&noise);
    let reference = if ps > 0.0 { ps } else { 1.0 };
    let target = reference / 10f64.powf(f64::from(snr_db) / 10.0);
    let scale = if pn > 0.0 {
        (target / pn).sqrt() as f32
    } else {
        0.0
    };
    for n in &mut noise {
        *n *= scale;
    }
    let snr = measured_snr_db(signal, &noise);
    (noise, snr)
}

/// `10·log10(mean|s|² / mean|n|²)` in dB.
pub fn measured_snr_db(signal: &[C32], noise: &[C32]) -> f32 {
    (10.0 * (mean_power(signal) / mean_power(noise)).log10()) as f32
}

/// Mean of `|x|²`, accumulated in f64 (0 for an empty slice).
pub fn mean_power(x: &[C32]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    x.iter().map(|v| f64::from(v.norm_sqr())).sum::<f64>() / x.len() as f64
}

/// The 8 taps of a Kaiser-windowed sinc that reads position `3 + mu` of an 8-sample span
/// (`mu` in [0, 1]), normalised to unit DC gain.
pub(crate) fn interp_taps(mu: f64) -> [f32; INTERP_TAPS] {
    let half = INTERP_TAPS as f64 / 2.0;
    let i0b = bessel_i0(KAISER_BETA);
    let mut t = [0.0f64; INTERP_TAPS];
    for (k, tk) in t.iter_mut().enumerate() {
        let x = k as f64 - (half - 1.0) - mu;
        let r = x / half;
        let w = if r.abs() < 1.0 {
            bessel_i0(KAISER_BETA * (1.0 - r * r).sqrt()) / i0b
        } else {
            0.0
        };
        let sinc = if x.abs() < 1e-12 {
            1.0
        } else {
            (PI * x).sin() / (PI * x)
        };
        *tk = w * sinc;
    }
    let sum: f64 = t.iter().sum();
    t.map(|v| (v / sum) as f32)
}

/// The polyphase table: row `p` reads position `3 + p/INTERP_PHASES`.
fn interp_table() -> &'static [[f32; INTERP_TAPS]] {
    static TABLE: OnceLock<Vec<[f32; INTERP_TAPS]>> = OnceLock::new();
    TABLE.get_or_init(|| {
        (0..=INTERP_PHASES)
            .map(|p| interp_taps(p as f64 / INTERP_PHASES as f64))
            .collect()
    })
}

fn bessel_i0(x: f64) -> f64 {
    let (mut sum, mut term) = (1.0, 1.0);
    for k in 1..40 {
        term *= (x / (2.0 * k as f64)).powi(2);
        sum += term;
        if term < 1e-17 * sum {
            break;
        }
    }
    sum
}

/// `exp(j·d)` for a small angle by its Taylor series (error < 1e-10 for |d| < 0.3).
#[inline]
fn small_phasor(d: f64) -> Complex64 {
    if d.abs() < 0.3 {
        let d2 = d * d;
        Complex64::new(
            1.0 - d2 * (0.5 - d2 * (1.0 / 24.0 - d2 * (1.0 / 720.0 - d2 / 40320.0))),
            d * (1.0 - d2 * (1.0 / 6.0 - d2 * (1.0 / 120.0 - d2 / 5040.0))),
        )
    } else {
        Complex64::from_polar(1.0, d)
    }
}

/// Zero-mean, unit-variance walk steps, four per 64-bit draw: each is uniform on ±√3 from 16 bits.
/// The sum of a few dozen such steps is Gaussian, as the walk's is in GNU Radio, at a fraction of
/// the cost of Gaussian steps.
struct UnitSteps {
    bits: u64,
    left: u32,
}

impl UnitSteps {
    fn new() -> Self {
        Self { bits: 0, left: 0 }
    }

    #[inline]
    fn next(&mut self, rng: &mut SynthRng) -> f64 {
        if self.left == 0 {
            self.bits = rng.next_u64();
            self.left = 4;
        }
        let v = (self.bits & 0xffff) as f64;
        self.bits >>= 16;
        self.left -= 1;
        // a uniform on 0..=65535 has variance (65536² − 1)/12
        const SCALE: f64 = 2.0 * 1.732_050_807_568_877_2 / 65536.0;
        (v - 32767.5) * SCALE
    }
}

/// A frequency offset following its clamped walk, remembering its range.
struct Walk {
    value: f64,
    std_dev: f64,
    max: f64,
    steps: UnitSteps,
    lo: f64,
    hi: f64,
}

impl Walk {
    /// The walk where the window starts: after a uniformly random number of steps from 0 Hz in
    /// a run of `run_samples`, or (no run length) from its stationary spread, uniform on ±max.
    fn start(rng: &mut SynthRng, w: &OffsetWalk) -> Self {
        let value = match w.run_samples {
            Some(run) if w.std_dev_hz > 0.0 => {
                let steps = rng.random_range(0..run) as f64;
                let z: f64 = rng.sample(StandardNormal);
                (w.std_dev_hz * steps.sqrt() * z).clamp(-w.max_dev_hz, w.max_dev_hz)
            }
            _ if w.max_dev_hz > 0.0 => rng.random_range(-w.max_dev_hz..=w.max_dev_hz),
            _ => 0.0,
        };
        Self {
            value,
            std_dev: w.std_dev_hz,
            max: w.max_dev_hz,
            steps: UnitSteps::new(),
            lo: value,
            hi: value,
        }
    }

    fn walking(&self) -> bool {
        self.std_dev > 0.0
    }

    #[inline]
    fn step(&mut self, rng: &mut SynthRng) -> f64 {
        if self.walking() {
            self.value =
                (self.value + self.std_dev * self.steps.next(rng)).clamp(-self.max, self.max);
            self.lo = self.lo.min(self.value);
            self.hi = self.hi.max(self.value);
        }
        self.value
    }
}

/// Sample-rate offset: `out_len` samples read from `input` at a position advancing by
/// `1 + sro/fs`, the offset following its walk. Returns the samples and the offset's range.
fn resample_walk(
    rng: &mut SynthRng,
    input: &[C32],
    out_len: usize,
    w: &OffsetWalk,
    fs: f64,
) -> (Vec<C32>, (f64, f64)) {
    // The read position in fixed point, 32 fractional bits (2.3e-10 sample resolution): integer
    // additions keep the per-sample dependency chain short.
    const FRAC_BITS: u32 = 32;
    const ROW_SHIFT: u32 = FRAC_BITS - INTERP_PHASES.trailing_zeros();
    const FRAC_MASK: u64 = (1 << FRAC_BITS) - 1;
    let one = (1u64 << FRAC_BITS) as f64;
    let mut walk = Walk::start(rng, w);
    let mut pos = (rng.random::<f64>() * one) as u64;
    let row_of = |pos: u64| (((pos & FRAC_MASK) + (1 << (ROW_SHIFT - 1))) >> ROW_SHIFT) as usize;
    let scale = one / fs;
    let table = interp_table();
    let mut out = vec![C32::new(0.0, 0.0); out_len];
    let mut n = 0;
    while n < out_len {
        // A run of outputs that read consecutive inputs through the same table row (the row
        // moves by at most 0.13 per sample at 50 Hz / 200 kHz), filtered tap by tap.
        let (run_ii, run_row) = ((pos >> FRAC_BITS) as usize, row_of(pos));
        let mut m = 0;
        loop {
            let sro = walk.step(rng);
            pos += (one + sro * scale) as u64;
            m += 1;
            if n + m >= out_len
                || (pos >> FRAC_BITS) as usize != run_ii + m
                || row_of(pos) != run_row
            {
                break;
            }
        }
        let dst = &mut out[n..n + m];
        for (k, &t) in table[run_row].iter().enumerate() {
            for (d, x) in dst.iter_mut().zip(&input[run_ii + k..run_ii + k + m]) {
                *d += x * t;
            }
        }
        n += m;
    }
    (out, (walk.lo, walk.hi))
}

/// Carrier offset: rotates `x` in place by a phase whose rate follows the walk. Returns the
/// offset's range.
fn rotate_walk(rng: &mut SynthRng, x: &mut [C32], w: &OffsetWalk, fs: f64) -> (f64, f64) {
    let mut walk = Walk::start(rng, w);
    let mut cfo = walk.value;
    let mut phasor = random_phasor(rng);
    let mut step = Complex64::from_polar(1.0, 2.0 * PI * cfo / fs);
    let walking = walk.walking();
    for (n, v) in x.iter_mut().enumerate() {
        *v *= C32::new(phasor.re as f32, phasor.im as f32);
        phasor *= step;
        if walking {
            let next = walk.step(rng);
            let d = 2.0 * PI * (next - cfo) / fs;
            // steps are tiny (≈ 1e-6 rad): exp(jd) ≈ 1 − d²/2 + jd to 1e-13
            step *= if d.abs() < 1e-4 {
                Complex64::new(1.0 - 0.5 * d * d, d)
            } else {
                small_phasor(d)
            };
            cfo = next;
        }
        if n % 256 == 255 {
            phasor /= phasor.norm();
            step /= step.norm();
        }
    }
    (walk.lo, walk.hi)
}

/// Evaluates one path's fader (times `amplitude`) at `grid.len()` points `step` samples apart,
/// with fresh uniform phases (the fader seen at a random moment of a long stream).
fn fader_grid(
    rng: &mut SynthRng,
    f: &Fading,
    fdts: f64,
    los: bool,
    step: usize,
    amplitude: f64,
    grid: &mut [C32],
) {
    let n = f.sinusoids;
    // GNU Radio: α_i = (2πi − π + θ)/(4N), i = 1..N, θ uniform in [−π, π), so α_1 is uniform in
    // [0, 2π/(4N)) and the others follow at steps of 2π/(4N).
    let spacing = 2.0 * PI / (4.0 * n as f64);
    let mut alpha = small_phasor(rng.random::<f64>() * spacing);
    let alpha_step = small_phasor(spacing);
    let mut psi = [Complex64::new(0.0, 0.0); MAX_SINUSOIDS];
    let mut phi = [Complex64::new(0.0, 0.0); MAX_SINUSOIDS];
    let mut rot = [Complex64::new(0.0, 0.0); MAX_SINUSOIDS];
    for i in 0..n {
        let w = 2.0 * PI * fdts * alpha.re;
        psi[i] = random_phasor(rng);
        phi[i] = random_phasor(rng);
        rot[i] = small_phasor(w * step as f64);
        alpha *= alpha_step;
    }
    let k = f.rician_k.filter(|_| los).unwrap_or(0.0);
    let scale_nlos = amplitude / (n as f64 * (k + 1.0)).sqrt();
    let scale_los = amplitude * (k / (k + 1.0)).sqrt();
    // cos θ_los for θ_los uniform
    let w_los = 2.0 * PI * fdts * random_phasor(rng).re;
    let mut los_phasor = random_phasor(rng);
    let los_rot = small_phasor(w_los * step as f64);
    for g in grid.iter_mut() {
        let mut h = Complex64::new(0.0, 0.0);
        for i in 0..n {
            h += Complex64::new(psi[i].re, phi[i].im);
            psi[i] *= rot[i];
            phi[i] *= rot[i];
        }
        let mut h = h * scale_nlos;
        if los {
            h += los_phasor * scale_los;
            los_phasor *= los_rot;
        }
        *g = C32::new(h.re as f32, h.im as f32);
    }
}

/// 1024 unit phasors evenly around the circle.
fn phasor_table() -> &'static [Complex64] {
    static TABLE: OnceLock<Vec<Complex64>> = OnceLock::new();
    TABLE.get_or_init(|| {
        (0..1024)
            .map(|k| Complex64::from_polar(1.0, 2.0 * PI * k as f64 / 1024.0))
            .collect()
    })
}

/// A unit phasor with a uniformly random angle, without trigonometry: one of 1024 tabulated
/// phasors rotated by a uniform fraction of their spacing (54 random bits).
#[inline]
fn random_phasor(rng: &mut SynthRng) -> Complex64 {
    let u = rng.next_u64();
    let frac = (u & ((1 << 54) - 1)) as f64 * (2.0 * PI / 1024.0 / (1u64 << 54) as f64);
    phasor_table()[(u >> 54) as usize] * small_phasor(frac)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn tone(len: usize, cycles_per_sample: f64) -> Vec<C32> {
        (0..len)
            .map(|n| {
                let p = 2.0 * PI * cycles_per_sample * n as f64;
                C32::new(p.cos() as f32, p.sin() as f32)
            })
            .collect()
    }

    #[test]
    fn interpolator_reads_between_samples() {
        // A tone at 0.1 and at 0.25 cycles/sample read at 3 + mu matches the tone there within
        // −57 dB (the taps' error is ≤ −59 dB), and the table row nearest to mu within −54 dB
        // (plus the phase quantisation of ≤ 1/1024 sample).
        let dot = |t: &[f32; INTERP_TAPS], x: &[C32]| -> C32 {
            t.iter().zip(x).map(|(t, x)| x * t).sum()
        };
        for f in [0.1, 0.25] {
            let x = tone(8, f);
            for mu in [0.0, 0.25, 0.5, 0.9, 0.999] {
                let p = 2.0 * PI * f * (3.0 + mu);
                let want = C32::new(p.cos() as f32, p.sin() as f32);
                let got = dot(&interp_taps(mu), &x);
                assert!(
                    (got - want).norm() < 1.4e-3,
                    "f {f} mu {mu}: {got} vs {want}"
                );
                let row = (mu * INTERP_PHASES as f64).round() as usize;
                let got = dot(&interp_table()[row], &x);
                assert!(
                    f64::from((got - want).norm()) < 2e-3 + 2.0 * PI * f / 1024.0,
                    "table f {f} mu {mu}"
                );
            }
        }
        let d = interp_taps(0.0);
        assert!(
            (d[3] - 1.0).abs() < 1e-6
                && d.iter().enumerate().all(|(k, v)| k == 3 || v.abs() < 1e-6)
        );
    }

    #[test]
    fn resampler_runs_match_sample_by_sample_reading() {
        // The run-grouped resampler equals reading every output through its own table row
        // (within 1e-5), for a walk that changes rows often.
        let fs = 200e3;
        let w = OffsetWalk {
            std_dev_hz: 5.0,
            max_dev_hz: 1000.0,
            run_samples: None,
        };
        let input = tone(600, 0.07);
        let out_len = 500;
        let (got, _) = resample_walk(&mut SynthRng::seed_from_u64(5), &input, out_len, &w, fs);
        let mut rng = SynthRng::seed_from_u64(5);
        let mut walk = Walk::start(&mut rng, &w);
        let one = (1u64 << 32) as f64;
        let mut pos = (rng.random::<f64>() * one) as u64;
        for (n, g) in got.iter().enumerate() {
            let ii = (pos >> 32) as usize;
            let row = ((pos & 0xffff_ffff) as f64 / one * INTERP_PHASES as f64).round() as usize;
            let want: C32 = interp_table()[row]
                .iter()
                .zip(&input[ii..ii + INTERP_TAPS])
                .map(|(t, x)| x * t)
                .sum();
            assert!((g - want).norm() < 1e-5, "sample {n}: {g} vs {want}");
            pos += (one + walk.step(&mut rng) * one / fs) as u64;
        }
    }

    #[test]
    fn walk_steps_and_random_phasors_have_the_right_moments() {
        // Over 100 000 draws: step mean within ±0.02, variance within 2 % of 1; phasors on the
        // unit circle (1e-12) with mean magnitude < 0.01.
        let mut rng = SynthRng::seed_from_u64(6);
        let mut steps = UnitSteps::new();
        let n = 100_000;
        let v: Vec<f64> = (0..n).map(|_| steps.next(&mut rng)).collect();
        let mean = v.iter().sum::<f64>() / n as f64;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(
            mean.abs() < 0.02 && (var - 1.0).abs() < 0.02,
            "{mean} {var}"
        );
        let mut sum = Complex64::new(0.0, 0.0);
        for _ in 0..n {
            let p = random_phasor(&mut rng);
            assert!((p.norm() - 1.0).abs() < 1e-12);
            sum += p;
        }
        assert!(sum.norm() / (n as f64) < 0.01);
    }

    #[test]
    fn small_phasor_matches_polar() {
        for d in [-0.29, -0.01, 0.0, 1e-7, 0.2, 0.5] {
            assert!((small_phasor(d) - Complex64::from_polar(1.0, d)).norm() < 1e-9);
        }
    }

    #[test]
    fn exact_noise_hits_the_snr() {
        let mut rng = SynthRng::seed_from_u64(1);
        let s = tone(128, 0.03);
        for snr in [-20.0f32, 0.0, 17.5] {
            let (n, got) = exact_noise(&mut rng, &s, snr);
            assert!((got - snr).abs() < 1e-4, "{got} vs {snr}");
            assert!((measured_snr_db(&s, &n) - snr).abs() < 1e-4);
        }
    }

    #[test]
    fn bad_config_is_named() {
        let mut c = ChannelConfig::rml2016a(200e3);
        c.fading.as_mut().map(|f| f.gains.pop());
        let e = Channel::new(c).unwrap_err().to_string();
        assert!(e.contains("fading.delays_samples"), "{e}");
    }
}
