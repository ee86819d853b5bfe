//! Augmentations of raw IQ windows, applied before the shared `dsp` preprocessing.
//!
//! A [`Pipeline`] is a list of [`Augmentation`]s, each with its parameters and an application
//! probability `p`; it serialises as a JSON list of `{"kind": "awgn", "p": 0.5, …}` objects, so
//! a run config records it exactly, and is validated whenever it is built or read (errors name
//! the augmentation and the parameter). A window is `[channels, len]`, channel-major.
//!
//! | kind | what it does to window `x` (all channels unless said) |
//! |---|---|
//! | `awgn` | adds complex white Gaussian noise of power `P/10^(snr/10)`, `P` the window's mean power over all channels (1 for a silent window), `snr` uniform in `[min_snr_db, max_snr_db]`; the realisation is scaled to exactly that power ([`exact_noise`], the generator's own) |
//! | `phase_rotation` | `x·e^{jθ}`, `θ` uniform in `±max_deg` |
//! | `frequency_offset` | `x[n]·e^{j2πfn}`, `f` uniform in `[min_cycles_per_sample, max_cycles_per_sample]`, phase 0 at `n = 0` |
//! | `time_shift` | circular shift by `s` uniform in `±max_samples`: `y[n] = x[(n − s) mod len]` |
//! | `crop` | crop with zero fill: a span of `k = round(u·len)` samples (`u` uniform in `[min_keep, 1]`, `k ≥ 1`) at a uniform start is kept in place; every other sample becomes 0 (no resampling) |
//! | `amplitude_scale` | `x·10^(g/20)`, `g` uniform in `[min_db, max_db]` |
//! | `dc_offset` | adds to each channel a constant of power `P·10^(d/10)` (`d` uniform in `[min_db, max_db]` per channel, `P` as for `awgn`) and uniform phase |
//! | `time_mask` | zeroes a span of `round(u·len)` samples (`u` uniform in `[min_fraction, max_fraction]`) at a uniform start |
//! | `iq_swap` | `(I, Q) → (Q, I)` |
//! | `iq_negate` | `I → −I`, `Q → −Q`, both, or one of the two drawn at random (`part`: `i`, `q`, `both`, `either`) |
//! | `phase_noise` | a Wiener phase: per-sample step `N(0, 2π·β)` for a linewidth `β` (cycles/sample, the 3-dB linewidth over the sample rate) uniform in `[min_linewidth, max_linewidth]`, common to all channels ([`Channel::receive`], the generator's own) |
//! | `iq_imbalance` | gain imbalance uniform in `±max_gain_db` and phase imbalance uniform in `±max_phase_deg` per channel ([`Channel::receive`]) |
//! | `channel_dropout` | zeroes one channel drawn uniformly, for windows of two channels or more (never all of them; a one-channel window is left alone) |
//!
//! **Determinism.** [`Pipeline::apply`] draws from generators keyed by (seed, epoch, window index,
//! view, step), so a window's augmentation does not depend on batching, threads or the other
//! windows, `view` tells apart the two views a contrastive objective draws of one window, and a
//! step's draws do not depend on what the steps before it drew (a step is keyed by its place in
//! the list).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::TrainError;
use crate::iq::C32;
use crate::synth::channel::{
    Channel, ChannelConfig, IqImbalance, PhaseNoise, exact_noise, mean_power,
};

/// Which part of each sample [`Augmentation::IqNegate`] negates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NegatedPart {
    I,
    Q,
    Both,
    /// I or Q, drawn per window.
    Either,
}

/// One augmentation with its parameters; `p` is the probability it is applied to a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Augmentation {
    Awgn {
        p: f64,
        min_snr_db: f64,
        max_snr_db: f64,
    },
    PhaseRotation {
        p: f64,
        max_deg: f64,
    },
    FrequencyOffset {
        p: f64,
        min_cycles_per_sample: f64,
        max_cycles_per_sample: f64,
    },
    TimeShift {
        p: f64,
        max_samples: usize,
    },
    Crop {
        p: f64,
        min_keep: f64,
    },
    AmplitudeScale {
        p: f64,
        min_db: f64,
        max_db: f64,
    },
    DcOffset {
        p: f64,
        min_db: f64,
        max_db: f64,
    },
    TimeMask {
        p: f64,
        min_fraction: f64,
        max_fraction: f64,
    },
    IqSwap {
        p: f64,
    },
    IqNegate {
        p: f64,
        part: NegatedPart,
    },
    PhaseNoise {
        p: f64,
        min_linewidth: f64,
        max_linewidth: f64,
    },
    IqImbalance {
        p: f64,
        max_gain_db: f64,
        max_phase_deg: f64,
    },
    ChannelDropout {
        p: f64,
    },
}

/// What one applied augmentation drew for a window.
#[derive(Debug, Clone, PartialEq)]
pub enum Drawn {
    Awgn {
        snr_db: f64,
    },
    PhaseRotation {
        radians: f64,
    },
    FrequencyOffset {
        cycles_per_sample: f64,
    },
    /// `y[n] = x[(n − samples) mod len]`.
    TimeShift {
        samples: i64,
    },
    /// Samples `start..start + keep` kept, the rest zeroed.
    Crop {
        start: usize,
        keep: usize,
    },
    AmplitudeScale {
        db: f64,
    },
    /// The constant added to each channel.
    DcOffset {
        offsets: Vec<C32>,
    },
    /// Samples `start..start + len` zeroed.
    TimeMask {
        start: usize,
        len: usize,
    },
    IqSwap,
    IqNegate {
        i: bool,
        q: bool,
    },
    PhaseNoise {
        linewidth: f64,
    },
    IqImbalance,
    /// The channel zeroed (`None` for a one-channel window, which is left alone).
    ChannelDropout {
        channel: Option<usize>,
    },
}

/// The largest linewidth `phase_noise` accepts, cycles/sample (the generator's limit).
pub const MAX_LINEWIDTH: f64 = 0.01;

fn bad(kind: &str, problem: String) -> TrainError {
    TrainError::param("augment", format!("{kind}: {problem}"))
}

/// `lo ≤ hi`, both finite and inside `[min, max]`.
fn check_range(
    kind: &str,
    (lo_name, lo): (&str, f64),
    (hi_name, hi): (&str, f64),
    (min, max): (f64, f64),
) -> Result<(), TrainError> {
    for (name, v) in [(lo_name, lo), (hi_name, hi)] {
        if !(v.is_finite() && (min..=max).contains(&v)) {
            return Err(bad(
                kind,
                format!("'{name}' is {v}; expected a number from {min} to {max}"),
            ));
        }
    }
    if lo > hi {
        return Err(bad(
            kind,
            format!("'{lo_name}' is {lo}, above '{hi_name}' {hi}; expected {lo_name} ≤ {hi_name}"),
        ));
    }
    Ok(())
}

fn check_value(kind: &str, name: &str, v: f64, (min, max): (f64, f64)) -> Result<(), TrainError> {
    if v.is_finite() && (min..=max).contains(&v) {
        Ok(())
    } else {
        Err(bad(
            kind,
            format!("'{name}' is {v}; expected a number from {min} to {max}"),
        ))
    }
}

/// Uniform in `[lo, hi]` (exactly `lo` when they are equal).
fn uniform(rng: &mut ChaCha8Rng, lo: f64, hi: f64) -> f64 {
    if hi > lo {
        rng.random_range(lo..=hi)
    } else {
        lo
    }
}

/// A channel that only applies receiver impairments, at a sample rate of 1 (so a linewidth in
/// Hz is one in cycles/sample).
fn receiver(phase_noise: Option<PhaseNoise>, iq_imbalance: Option<IqImbalance>) -> ChannelConfig {
    ChannelConfig {
        phase_noise,
        iq_imbalance,
        ..ChannelConfig::ideal(1.0)
    }
}

impl Augmentation {
    /// The kind as configs write it (`awgn`, `phase_rotation`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Augmentation::Awgn { .. } => "awgn",
            Augmentation::PhaseRotation { .. } => "phase_rotation",
            Augmentation::FrequencyOffset { .. } => "frequency_offset",
            Augmentation::TimeShift { .. } => "time_shift",
            Augmentation::Crop { .. } => "crop",
            Augmentation::AmplitudeScale { .. } => "amplitude_scale",
            Augmentation::DcOffset { .. } => "dc_offset",
            Augmentation::TimeMask { .. } => "time_mask",
            Augmentation::IqSwap { .. } => "iq_swap",
            Augmentation::IqNegate { .. } => "iq_negate",
            Augmentation::PhaseNoise { .. } => "phase_noise",
            Augmentation::IqImbalance { .. } => "iq_imbalance",
            Augmentation::ChannelDropout { .. } => "channel_dropout",
        }
    }

    /// The probability of applying it to a window.
    pub fn probability(&self) -> f64 {
        match *self {
            Augmentation::Awgn { p, .. }
            | Augmentation::PhaseRotation { p, .. }
            | Augmentation::FrequencyOffset { p, .. }
            | Augmentation::TimeShift { p, .. }
            | Augmentation::Crop { p, .. }
            | Augmentation::AmplitudeScale { p, .. }
            | Augmentation::DcOffset { p, .. }
            | Augmentation::TimeMask { p, .. }
            | Augmentation::IqSwap { p }
            | Augmentation::IqNegate { p, .. }
            | Augmentation::PhaseNoise { p, .. }
            | Augmentation::IqImbalance { p, .. }
            | Augmentation::ChannelDropout { p } => p,
        }
    }

    /// Checks every parameter; the error names the augmentation and the parameter.
    pub fn validate(&self) -> Result<(), TrainError> {
        let kind = self.kind();
        check_value(kind, "p", self.probability(), (0.0, 1.0))?;
        match *self {
            Augmentation::Awgn {
                min_snr_db,
                max_snr_db,
                ..
            } => check_range(
                kind,
                ("min_snr_db", min_snr_db),
                ("max_snr_db", max_snr_db),
                (-60.0, 100.0),
            ),
            Augmentation::PhaseRotation { max_deg, .. } => {
                check_value(kind, "max_deg", max_deg, (0.0, 180.0))
            }
            Augmentation::FrequencyOffset {
                min_cycles_per_sample,
                max_cycles_per_sample,
                ..
            } => check_range(
                kind,
                ("min_cycles_per_sample", min_cycles_per_sample),
                ("max_cycles_per_sample", max_cycles_per_sample),
                (-0.5, 0.5),
            ),
            Augmentation::TimeShift { .. } => Ok(()),
            Augmentation::Crop { min_keep, .. } => {
                if min_keep > 0.0 {
                    check_value(kind, "min_keep", min_keep, (0.0, 1.0))
                } else {
                    Err(bad(
                        kind,
                        format!("'min_keep' is {min_keep}; expected a fraction above 0, at most 1"),
                    ))
                }
            }
            Augmentation::AmplitudeScale { min_db, max_db, .. } => {
                check_range(kind, ("min_db", min_db), ("max_db", max_db), (-60.0, 60.0))
            }
            Augmentation::DcOffset { min_db, max_db, .. } => {
                check_range(kind, ("min_db", min_db), ("max_db", max_db), (-100.0, 20.0))
            }
            Augmentation::TimeMask {
                min_fraction,
                max_fraction,
                ..
            } => check_range(
                kind,
                ("min_fraction", min_fraction),
                ("max_fraction", max_fraction),
                (0.0, 1.0),
            ),
            Augmentation::IqSwap { .. }
            | Augmentation::IqNegate { .. }
            | Augmentation::ChannelDropout { .. } => Ok(()),
            Augmentation::PhaseNoise {
                min_linewidth,
                max_linewidth,
                ..
            } => check_range(
                kind,
                ("min_linewidth", min_linewidth),
                ("max_linewidth", max_linewidth),
                (0.0, MAX_LINEWIDTH),
            ),
            Augmentation::IqImbalance {
                max_gain_db,
                max_phase_deg,
                ..
            } => {
                check_value(kind, "max_gain_db", max_gain_db, (0.0, 6.0))?;
                check_value(kind, "max_phase_deg", max_phase_deg, (0.0, 30.0))
            }
        }
    }

    /// Applies the augmentation to `x` (`[channels, len]`), drawing from `rng`; returns what it
    /// drew. The decision to apply (probability `p`) is the caller's.
    fn run(&self, rng: &mut ChaCha8Rng, x: &mut [C32], channels: usize, len: usize) -> Drawn {
        match *self {
            Augmentation::Awgn {
                min_snr_db,
                max_snr_db,
                ..
            } => {
                let snr_db = uniform(rng, min_snr_db, max_snr_db);
                let (noise, _) = exact_noise(rng, x, snr_db as f32);
                for (s, n) in x.iter_mut().zip(noise) {
                    *s += n;
                }
                Drawn::Awgn { snr_db }
            }
            Augmentation::PhaseRotation { max_deg, .. } => {
                let radians = uniform(rng, -max_deg, max_deg).to_radians();
                let r = C32::new(radians.cos() as f32, radians.sin() as f32);
                for s in x.iter_mut() {
                    *s *= r;
                }
                Drawn::PhaseRotation { radians }
            }
            Augmentation::FrequencyOffset {
                min_cycles_per_sample,
                max_cycles_per_sample,
                ..
            } => {
                let f = uniform(rng, min_cycles_per_sample, max_cycles_per_sample);
                for ch in x.chunks_exact_mut(len) {
                    for (n, s) in ch.iter_mut().enumerate() {
                        // The phase in whole turns, reduced before the trigonometry.
                        let turns = (f * n as f64).fract();
                        let (sin, cos) = (std::f64::consts::TAU * turns).sin_cos();
                        *s *= C32::new(cos as f32, sin as f32);
                    }
                }
                Drawn::FrequencyOffset {
                    cycles_per_sample: f,
                }
            }
            Augmentation::TimeShift { max_samples, .. } => {
                let max = max_samples as i64;
                let samples = rng.random_range(-max..=max);
                let by = samples.rem_euclid(len as i64) as usize;
                for ch in x.chunks_exact_mut(len) {
                    ch.rotate_right(by);
                }
                Drawn::TimeShift { samples }
            }
            Augmentation::Crop { min_keep, .. } => {
                let u = uniform(rng, min_keep, 1.0);
                let keep = ((u * len as f64).round() as usize).clamp(1, len);
                let start = rng.random_range(0..=len - keep);
                for ch in x.chunks_exact_mut(len) {
                    ch[..start].fill(C32::new(0.0, 0.0));
                    ch[start + keep..].fill(C32::new(0.0, 0.0));
                }
                Drawn::Crop { start, keep }
            }
            Augmentation::AmplitudeScale { min_db, max_db, .. } => {
                let db = uniform(rng, min_db, max_db);
                let g = 10f64.powf(db / 20.0) as f32;
                for s in x.iter_mut() {
                    *s *= g;
                }
                Drawn::AmplitudeScale { db }
            }
            Augmentation::DcOffset { min_db, max_db, .. } => {
                let p = mean_power(x);
                let reference = if p > 0.0 { p } else { 1.0 };
                let mut offsets = Vec::with_capacity(channels);
                for ch in x.chunks_exact_mut(len) {
                    let db = uniform(rng, min_db, max_db);
                    let amplitude = (reference * 10f64.powf(db / 10.0)).sqrt();
                    let phase = rng.random_range(0.0..std::f64::consts::TAU);
                    let dc = C32::new(
                        (amplitude * phase.cos()) as f32,
                        (amplitude * phase.sin()) as f32,
                    );
                    for s in ch.iter_mut() {
                        *s += dc;
                    }
                    offsets.push(dc);
                }
                Drawn::DcOffset { offsets }
            }
            Augmentation::TimeMask {
                min_fraction,
                max_fraction,
                ..
            } => {
                let u = uniform(rng, min_fraction, max_fraction);
                let span = ((u * len as f64).round() as usize).min(len);
                let start = rng.random_range(0..=len - span);
                for ch in x.chunks_exact_mut(len) {
                    ch[start..start + span].fill(C32::new(0.0, 0.0));
                }
                Drawn::TimeMask { start, len: span }
            }
            Augmentation::IqSwap { .. } => {
                for s in x.iter_mut() {
                    *s = C32::new(s.im, s.re);
                }
                Drawn::IqSwap
            }
            Augmentation::IqNegate { part, .. } => {
                let (i, q) = match part {
                    NegatedPart::I => (true, false),
                    NegatedPart::Q => (false, true),
                    NegatedPart::Both => (true, true),
                    NegatedPart::Either => {
                        let i = rng.random::<bool>();
                        (i, !i)
                    }
                };
                for s in x.iter_mut() {
                    if i {
                        s.re = -s.re;
                    }
                    if q {
                        s.im = -s.im;
                    }
                }
                Drawn::IqNegate { i, q }
            }
            Augmentation::PhaseNoise {
                min_linewidth,
                max_linewidth,
                ..
            } => {
                let linewidth = uniform(rng, min_linewidth, max_linewidth);
                let config = receiver(
                    Some(PhaseNoise {
                        linewidth_hz: linewidth,
                    }),
                    None,
                );
                if let Ok(channel) = Channel::new(config) {
                    channel.receive(rng, x, channels);
                }
                Drawn::PhaseNoise { linewidth }
            }
            Augmentation::IqImbalance {
                max_gain_db,
                max_phase_deg,
                ..
            } => {
                let config = receiver(
                    None,
                    Some(IqImbalance {
                        max_gain_db,
                        max_phase_deg,
                    }),
                );
                if let Ok(channel) = Channel::new(config) {
                    channel.receive(rng, x, channels);
                }
                Drawn::IqImbalance
            }
            Augmentation::ChannelDropout { .. } => {
                if channels < 2 {
                    return Drawn::ChannelDropout { channel: None };
                }
                let channel = rng.random_range(0..channels);
                x[channel * len..(channel + 1) * len].fill(C32::new(0.0, 0.0));
                Drawn::ChannelDropout {
                    channel: Some(channel),
                }
            }
        }
    }
}

/// A validated list of augmentations, applied in order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Vec<Augmentation>", into = "Vec<Augmentation>")]
pub struct Pipeline {
    steps: Vec<Augmentation>,
}

impl TryFrom<Vec<Augmentation>> for Pipeline {
    type Error = TrainError;

    fn try_from(steps: Vec<Augmentation>) -> Result<Self, Self::Error> {
        Pipeline::new(steps)
    }
}

impl From<Pipeline> for Vec<Augmentation> {
    fn from(p: Pipeline) -> Self {
        p.steps
    }
}

/// Tag in every augmentation generator's key ("augm").
const AUGMENT_DOMAIN: u32 = 0x6d67_7561;

/// The generator of one step of one view of one window in one epoch.
fn step_rng(seed: u64, epoch: usize, window_index: u32, view: u32, step: usize) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&(epoch as u64).to_le_bytes());
    key[16..20].copy_from_slice(&window_index.to_le_bytes());
    key[20..24].copy_from_slice(&view.to_le_bytes());
    key[24..28].copy_from_slice(&(step as u32).to_le_bytes());
    key[28..].copy_from_slice(&AUGMENT_DOMAIN.to_le_bytes());
    ChaCha8Rng::from_seed(key)
}

impl Pipeline {
    /// Checks every step; the error names the first bad augmentation and parameter.
    pub fn new(steps: Vec<Augmentation>) -> Result<Self, TrainError> {
        for step in &steps {
            step.validate()?;
        }
        Ok(Self { steps })
    }

    pub fn steps(&self) -> &[Augmentation] {
        &self.steps
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Augments `window` (`[channels, len]`, channel-major) in place: view `view` of window
    /// `window_index` in epoch `epoch` of a run seeded with `seed`.
    #[allow(clippy::too_many_arguments)]
    pub fn apply(
        &self,
        window: &mut [C32],
        channels: usize,
        len: usize,
        seed: u64,
        epoch: usize,
        window_index: u32,
        view: u32,
    ) {
        self.apply_traced(window, channels, len, seed, epoch, window_index, view);
    }

    /// [`apply`](Self::apply), returning what each applied step drew, as (step index, draw).
    /// A window whose length is not `channels × len` is left as it is.
    #[allow(clippy::too_many_arguments)]
    pub fn apply_traced(
        &self,
        window: &mut [C32],
        channels: usize,
        len: usize,
        seed: u64,
        epoch: usize,
        window_index: u32,
        view: u32,
    ) -> Vec<(usize, Drawn)> {
        let mut drawn = Vec::new();
        if channels == 0 || len == 0 || window.len() != channels * len {
            return drawn;
        }
        for (k, step) in self.steps.iter().enumerate() {
            let mut rng = step_rng(seed, epoch, window_index, view, k);
            if rng.random::<f64>() < step.probability() {
                drawn.push((k, step.run(&mut rng, window, channels, len)));
            }
        }
        drawn
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A window with no zero sample: `[channels, len]`.
    fn window(channels: usize, len: usize) -> Vec<C32> {
        (0..channels * len)
            .map(|k| {
                let t = k as f32;
                C32::new(1.5 + (0.37 * t).sin(), 0.5 + (1.3 * t).cos().abs())
            })
            .collect()
    }

    fn one(step: Augmentation) -> Pipeline {
        Pipeline::new(vec![step]).unwrap()
    }

    /// Applies `pipeline` to a copy of `x` and returns the copy and the single draw.
    fn run(pipeline: &Pipeline, x: &[C32], channels: usize, seed: u64) -> (Vec<C32>, Drawn) {
        let mut y = x.to_vec();
        let len = x.len() / channels;
        let mut drawn = pipeline.apply_traced(&mut y, channels, len, seed, 1, 7, 0);
        assert_eq!(drawn.len(), 1, "p = 1 applies the step");
        (y, drawn.remove(0).1)
    }

    fn power_db(x: &[C32]) -> f64 {
        10.0 * mean_power(x).log10()
    }

    #[test]
    fn awgn_adds_noise_at_the_drawn_snr() {
        let x = window(1, 1 << 16);
        let p = one(Augmentation::Awgn {
            p: 1.0,
            min_snr_db: -5.0,
            max_snr_db: 15.0,
        });
        for seed in 0..5 {
            let (y, drawn) = run(&p, &x, 1, seed);
            let Drawn::Awgn { snr_db } = drawn else {
                panic!("{drawn:?}")
            };
            assert!((-5.0..=15.0).contains(&snr_db));
            let noise: Vec<C32> = y.iter().zip(&x).map(|(a, b)| a - b).collect();
            let measured = power_db(&x) - power_db(&noise);
            assert!((measured - snr_db).abs() < 0.2, "{measured} vs {snr_db}");
            // White: the noise is not correlated with the signal.
            let cross: C32 = noise.iter().zip(&x).map(|(n, s)| n * s.conj()).sum();
            assert!(f64::from(cross.norm()) / x.len() as f64 / mean_power(&x) < 0.02);
        }
    }

    #[test]
    fn phase_rotation_keeps_power_and_rotates_by_the_drawn_angle() {
        let x = window(2, 256);
        let p = one(Augmentation::PhaseRotation {
            p: 1.0,
            max_deg: 180.0,
        });
        let (y, drawn) = run(&p, &x, 2, 3);
        let Drawn::PhaseRotation { radians } = drawn else {
            panic!("{drawn:?}")
        };
        assert!(radians.abs() <= std::f64::consts::PI);
        assert!((mean_power(&y) / mean_power(&x) - 1.0).abs() < 1e-6);
        for (a, b) in y.iter().zip(&x) {
            let turn = f64::from((a * b.conj()).arg());
            assert!((turn - radians).abs() < 1e-5, "{turn} vs {radians}");
        }
    }

    #[test]
    fn frequency_offset_gives_the_drawn_phase_slope() {
        let len = 4096;
        let x = window(2, len);
        let p = one(Augmentation::FrequencyOffset {
            p: 1.0,
            min_cycles_per_sample: -0.05,
            max_cycles_per_sample: 0.05,
        });
        let (y, drawn) = run(&p, &x, 2, 11);
        let Drawn::FrequencyOffset { cycles_per_sample } = drawn else {
            panic!("{drawn:?}")
        };
        assert!(cycles_per_sample.abs() <= 0.05 && cycles_per_sample != 0.0);
        for (ch_y, ch_x) in y.chunks_exact(len).zip(x.chunks_exact(len)) {
            let ratio: Vec<C32> = ch_y.iter().zip(ch_x).map(|(a, b)| a / b).collect();
            // Phase 0 at the first sample; mean step 2πf.
            assert!(ratio[0].arg().abs() < 1e-6);
            let step: C32 = ratio.windows(2).map(|w| w[1] * w[0].conj()).sum();
            let slope = f64::from(step.arg()) / std::f64::consts::TAU;
            assert!((slope - cycles_per_sample).abs() < 1e-6, "{slope}");
            // Every sample where the law puts it, with no drift over the window.
            let n = len - 1;
            let expected = std::f64::consts::TAU * (cycles_per_sample * n as f64).fract();
            let err = (f64::from(ratio[n].arg()) - expected).rem_euclid(std::f64::consts::TAU);
            assert!(err.min(std::f64::consts::TAU - err) < 1e-4, "{err}");
        }
    }

    #[test]
    fn dropout_zeroes_exactly_one_channel() {
        let (channels, len) = (4, 64);
        let x = window(channels, len);
        let p = one(Augmentation::ChannelDropout { p: 1.0 });
        let mut seen = [false; 4];
        for seed in 0..40 {
            let (y, drawn) = run(&p, &x, channels, seed);
            let Drawn::ChannelDropout {
                channel: Some(channel),
            } = drawn
            else {
                panic!("{drawn:?}")
            };
            seen[channel] = true;
            for c in 0..channels {
                let (a, b) = (&y[c * len..(c + 1) * len], &x[c * len..(c + 1) * len]);
                if c == channel {
                    assert!(a.iter().all(|s| *s == C32::new(0.0, 0.0)));
                } else {
                    assert_eq!(a, b, "channel {c} untouched");
                }
            }
        }
        assert_eq!(seen, [true; 4], "every channel can be dropped");
        // A one-channel window keeps its only channel.
        let x = window(1, len);
        let (y, drawn) = run(&p, &x, 1, 0);
        assert_eq!(drawn, Drawn::ChannelDropout { channel: None });
        assert_eq!(y, x);
    }

    #[test]
    fn time_mask_zeroes_exactly_its_span() {
        let (channels, len) = (2, 200);
        let x = window(channels, len);
        let p = one(Augmentation::TimeMask {
            p: 1.0,
            min_fraction: 0.1,
            max_fraction: 0.3,
        });
        for seed in 0..10 {
            let (y, drawn) = run(&p, &x, channels, seed);
            let Drawn::TimeMask { start, len: span } = drawn else {
                panic!("{drawn:?}")
            };
            assert!((20..=60).contains(&span) && start + span <= len);
            for (k, (a, b)) in y.iter().zip(&x).enumerate() {
                let n = k % len;
                if (start..start + span).contains(&n) {
                    assert_eq!(*a, C32::new(0.0, 0.0));
                } else {
                    assert_eq!(a, b);
                }
            }
        }
    }

    #[test]
    fn crop_keeps_its_span_in_place_and_zero_fills() {
        let (channels, len) = (2, 100);
        let x = window(channels, len);
        let p = one(Augmentation::Crop {
            p: 1.0,
            min_keep: 0.5,
        });
        let (y, drawn) = run(&p, &x, channels, 4);
        let Drawn::Crop { start, keep } = drawn else {
            panic!("{drawn:?}")
        };
        assert!((50..=100).contains(&keep) && start + keep <= len);
        for (k, (a, b)) in y.iter().zip(&x).enumerate() {
            let n = k % len;
            let kept = (start..start + keep).contains(&n);
            assert_eq!(*a, if kept { *b } else { C32::new(0.0, 0.0) });
        }
    }

    #[test]
    fn time_shift_is_circular() {
        let (channels, len) = (2, 50);
        let x = window(channels, len);
        let p = one(Augmentation::TimeShift {
            p: 1.0,
            max_samples: 20,
        });
        for seed in 0..5 {
            let (y, drawn) = run(&p, &x, channels, seed);
            let Drawn::TimeShift { samples } = drawn else {
                panic!("{drawn:?}")
            };
            assert!(samples.abs() <= 20);
            for c in 0..channels {
                for n in 0..len {
                    let from = (n as i64 - samples).rem_euclid(len as i64) as usize;
                    assert_eq!(y[c * len + n], x[c * len + from]);
                }
            }
        }
    }

    #[test]
    fn swap_and_negation_are_exact() {
        let x = window(2, 32);
        let (y, _) = run(&one(Augmentation::IqSwap { p: 1.0 }), &x, 2, 0);
        assert!(y.iter().zip(&x).all(|(a, b)| a.re == b.im && a.im == b.re));
        for (part, ni, nq) in [
            (NegatedPart::I, true, false),
            (NegatedPart::Q, false, true),
            (NegatedPart::Both, true, true),
        ] {
            let p = one(Augmentation::IqNegate { p: 1.0, part });
            let (y, drawn) = run(&p, &x, 2, 0);
            assert_eq!(drawn, Drawn::IqNegate { i: ni, q: nq });
            for (a, b) in y.iter().zip(&x) {
                assert_eq!(a.re, if ni { -b.re } else { b.re });
                assert_eq!(a.im, if nq { -b.im } else { b.im });
            }
        }
        let p = one(Augmentation::IqNegate {
            p: 1.0,
            part: NegatedPart::Either,
        });
        let draws: Vec<Drawn> = (0..20).map(|s| run(&p, &x, 2, s).1).collect();
        assert!(draws.contains(&Drawn::IqNegate { i: true, q: false }));
        assert!(draws.contains(&Drawn::IqNegate { i: false, q: true }));
    }

    #[test]
    fn amplitude_scaling_is_exact_in_db() {
        let x = window(2, 128);
        let p = one(Augmentation::AmplitudeScale {
            p: 1.0,
            min_db: -12.0,
            max_db: 6.0,
        });
        let (y, drawn) = run(&p, &x, 2, 9);
        let Drawn::AmplitudeScale { db } = drawn else {
            panic!("{drawn:?}")
        };
        assert!((-12.0..=6.0).contains(&db));
        let g = 10f64.powf(db / 20.0) as f32;
        assert!(y.iter().zip(&x).all(|(a, b)| *a == b * g));
        assert!((power_db(&y) - power_db(&x) - db).abs() < 1e-4);
    }

    #[test]
    fn dc_offset_adds_a_constant_at_the_drawn_level() {
        let (channels, len) = (2, 128);
        let x = window(channels, len);
        let p = one(Augmentation::DcOffset {
            p: 1.0,
            min_db: -20.0,
            max_db: -20.0,
        });
        let (y, drawn) = run(&p, &x, channels, 2);
        let Drawn::DcOffset { offsets } = drawn else {
            panic!("{drawn:?}")
        };
        assert_eq!(offsets.len(), channels);
        for (c, dc) in offsets.iter().enumerate() {
            let level = 10.0 * (f64::from(dc.norm_sqr()) / mean_power(&x)).log10();
            assert!((level + 20.0).abs() < 1e-4, "{level}");
            for n in 0..len {
                assert_eq!(y[c * len + n], x[c * len + n] + dc);
            }
        }
    }

    #[test]
    fn phase_noise_is_a_wiener_phase_of_the_drawn_linewidth() {
        let len = 1 << 15;
        let x = window(2, len);
        let p = one(Augmentation::PhaseNoise {
            p: 1.0,
            min_linewidth: 1e-4,
            max_linewidth: 1e-3,
        });
        let (y, drawn) = run(&p, &x, 2, 5);
        let Drawn::PhaseNoise { linewidth } = drawn else {
            panic!("{drawn:?}")
        };
        assert!((1e-4..=1e-3).contains(&linewidth));
        assert!((mean_power(&y) / mean_power(&x) - 1.0).abs() < 1e-4);
        let phase: Vec<C32> = y.iter().zip(&x).map(|(a, b)| a / b).collect();
        // Common to both channels.
        for n in (0..len).step_by(97) {
            assert!((phase[n] - phase[len + n]).norm() < 1e-4);
        }
        let steps: Vec<f64> = phase[..len]
            .windows(2)
            .map(|w| f64::from((w[1] * w[0].conj()).arg()))
            .collect();
        let var = steps.iter().map(|d| d * d).sum::<f64>() / steps.len() as f64;
        let expected = std::f64::consts::TAU * linewidth;
        assert!((var / expected - 1.0).abs() < 0.05, "{var} vs {expected}");
    }

    #[test]
    fn iq_imbalance_changes_each_channel_within_its_bounds() {
        let x = window(2, 256);
        let p = one(Augmentation::IqImbalance {
            p: 1.0,
            max_gain_db: 1.0,
            max_phase_deg: 5.0,
        });
        let (y, _) = run(&p, &x, 2, 1);
        assert_ne!(y, x);
        // ±1 dB of gain imbalance moves the power by well under 1 dB.
        assert!((power_db(&y) - power_db(&x)).abs() < 1.0);
    }

    #[test]
    fn the_same_key_gives_the_same_window_and_another_view_another() {
        let p = Pipeline::new(vec![
            Augmentation::Awgn {
                p: 1.0,
                min_snr_db: 0.0,
                max_snr_db: 20.0,
            },
            Augmentation::PhaseRotation {
                p: 0.5,
                max_deg: 180.0,
            },
            Augmentation::TimeShift {
                p: 0.5,
                max_samples: 10,
            },
        ])
        .unwrap();
        let x = window(2, 128);
        let augmented = |seed, epoch, index, view| {
            let mut y = x.clone();
            p.apply(&mut y, 2, 128, seed, epoch, index, view);
            y
        };
        let a = augmented(1, 2, 3, 0);
        assert_eq!(a, augmented(1, 2, 3, 0));
        assert_ne!(a, augmented(1, 2, 3, 1), "another view");
        assert_ne!(a, augmented(1, 3, 3, 0), "another epoch");
        assert_ne!(a, augmented(1, 2, 4, 0), "another window");
        assert_ne!(a, augmented(2, 2, 3, 0), "another seed");
        // A step's draws do not depend on what the steps before it drew.
        let shift = Augmentation::TimeShift {
            p: 1.0,
            max_samples: 30,
        };
        let after = |first: Augmentation| {
            let p = Pipeline::new(vec![first, shift.clone()]).unwrap();
            let mut y = x.clone();
            p.apply_traced(&mut y, 2, 128, 1, 2, 3, 0).pop().unwrap()
        };
        let scaled = Augmentation::AmplitudeScale {
            p: 1.0,
            min_db: -6.0,
            max_db: 6.0,
        };
        let noised = Augmentation::Awgn {
            p: 1.0,
            min_snr_db: 0.0,
            max_snr_db: 10.0,
        };
        assert_eq!(after(scaled), after(noised));
    }

    #[test]
    fn probability_decides_how_often_a_step_applies() {
        let x = window(1, 16);
        let count = |prob: f64| {
            let p = one(Augmentation::IqSwap { p: prob });
            (0..2000)
                .filter(|&i| {
                    let mut y = x.clone();
                    !p.apply_traced(&mut y, 1, 16, 5, 1, i, 0).is_empty()
                })
                .count()
        };
        assert_eq!(count(0.0), 0);
        assert_eq!(count(1.0), 2000);
        let half = count(0.5);
        assert!((900..=1100).contains(&half), "{half}");
    }

    #[test]
    fn a_pipeline_round_trips_through_json_and_bad_parameters_are_named() {
        let p = Pipeline::new(vec![
            Augmentation::Awgn {
                p: 0.5,
                min_snr_db: 0.0,
                max_snr_db: 20.0,
            },
            Augmentation::IqNegate {
                p: 0.25,
                part: NegatedPart::Either,
            },
            Augmentation::ChannelDropout { p: 0.1 },
        ])
        .unwrap();
        let text = serde_json::to_string(&p).unwrap();
        assert!(
            text.starts_with(r#"[{"kind":"awgn","p":0.5,"min_snr_db":0.0,"max_snr_db":20.0}"#),
            "{text}"
        );
        assert!(text.contains(r#""part":"either""#), "{text}");
        assert_eq!(serde_json::from_str::<Pipeline>(&text).unwrap(), p);

        let err = Pipeline::new(vec![Augmentation::IqSwap { p: 1.5 }])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("iq_swap") && err.contains("'p' is 1.5"),
            "{err}"
        );
        let err = Pipeline::new(vec![Augmentation::Awgn {
            p: 1.0,
            min_snr_db: 12.0,
            max_snr_db: 3.0,
        }])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("awgn")
                && err.contains("'min_snr_db' is 12")
                && err.contains("max_snr_db"),
            "{err}"
        );
        let err = Pipeline::new(vec![Augmentation::PhaseNoise {
            p: 1.0,
            min_linewidth: 0.0,
            max_linewidth: 0.5,
        }])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("phase_noise") && err.contains("max_linewidth"),
            "{err}"
        );
        // Reading a config validates it too.
        let err = serde_json::from_str::<Pipeline>(r#"[{"kind":"crop","p":1,"min_keep":0}]"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("crop") && err.contains("min_keep"), "{err}");
        assert!(serde_json::from_str::<Pipeline>(r#"[{"kind":"blur","p":1}]"#).is_err());
        assert!(
            serde_json::from_str::<Pipeline>(r#"[{"kind":"iq_swap","p":1,"extra":2}]"#).is_err()
        );
    }
}
