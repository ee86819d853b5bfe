//! The audio the analog classes (AM, SSB, FM, WBFM) modulate: a built-in speech-like source, or
//! a user's WAV file.
//!
//! A bank of mono audio at 44.1 kHz is made once, shared by every analog modulator through an
//! `Arc`, and each window reads it from a random offset. Samples have peak 1 and (near) zero
//! mean; the analog modulators use the bank's exact mean and power to scale to unit power.
//!
//! # The speech-like source ([`AudioBank::speech_like`])
//! Deterministic from its seed (ChaCha8). It alternates *utterances* (0.8–3 s) and *pauses*
//! of exact silence (0.2–1 s, plus 40–120 ms gaps after a quarter of the syllables), so that
//! roughly a quarter to a third of the time is silent (the measured fraction is in
//! [`AudioBank::describe`]). An utterance is a run of syllables at 3–6 syllables per second,
//! each:
//! - an optional consonant onset: a fricative (45 %, 50–110 ms of noise through a resonator at
//!   2.5–6 kHz, bandwidth 1.5–2.5 kHz) or a plosive (15 %, 20–40 ms closure then a 10–25 ms noise
//!   burst);
//! - a voiced nucleus: a glottal impulse train at the utterance's pitch — base 90–250 Hz, slow
//!   intonation (±12 % at 0.3–1 Hz) with 15 % declination over the utterance, 1 % period jitter
//!   and 5 % shimmer — shaped by two one-pole low-passes (the glottal pulse's spectral tilt),
//!   four cascaded formant resonators (F1–F3 of one of ten English vowels, Peterson & Barney,
//!   scaled up to +17 % with pitch, ±5 % random; F4 3.3–3.7 kHz; bandwidths 80/100/150/250 Hz)
//!   whose frequencies glide from the previous syllable's over the first 40 % of the nucleus,
//!   and lip radiation (a first difference);
//! - a raised-cosine syllable envelope (25 % attack, 35 % decay) at a loudness of 0.4–1.
//!
//! The voiced and the unvoiced tracks are each DC-blocked and normalised to unit RMS over their
//! active samples, mixed with the unvoiced track 12 dB down, and the sum is peak-normalised.
//!
//! # A WAV file ([`AudioBank::from_wav`])
//! Any PCM (8–32 bit) or float WAV: channels are averaged to mono, the rate is converted to
//! 44.1 kHz (Kaiser-windowed sinc, anti-aliased when downsampling), the mean is removed and the
//! peak normalised to 1. At least 0.25 s is required; a silent file is refused.

use std::f64::consts::PI;
use std::path::Path;
use std::sync::OnceLock;

use rand::{Rng, SeedableRng};
use rustfft::FftPlanner;

use crate::iq::C32;
use crate::synth::pulse::{bessel_i0, kaiser_beta};
use crate::synth::{SynthError, SynthRng};

/// The shortest WAV file accepted, in seconds.
const MIN_WAV_SECONDS: f64 = 0.25;

/// Mono audio at 44.1 kHz with peak 1 and (near) zero mean, shared by the analog modulators.
pub struct AudioBank {
    samples: Vec<f32>,
    description: serde_json::Value,
    mean: f64,
    mean_square: f64,
    analytic: OnceLock<Analytic>,
}

impl std::fmt::Debug for AudioBank {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioBank")
            .field("samples", &self.samples.len())
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

/// The analytic signal of the bank and its statistics.
struct Analytic {
    samples: Vec<C32>,
    mean: C32,
    mean_square: f64,
}

impl AudioBank {
    /// The bank's sample rate.
    pub const SAMPLE_RATE_HZ: f64 = 44_100.0;

    /// A deterministic speech-like bank of `seconds` seconds (at least 0.1 s) made from `seed`;
    /// see the module documentation for how.
    pub fn speech_like(seed: u64, seconds: f32) -> AudioBank {
        let seconds = f64::from(seconds).max(0.1);
        let n = (seconds * Self::SAMPLE_RATE_HZ).round() as usize;
        let (samples, pause_fraction) = speech::synthesise(seed, n);
        let description = serde_json::json!({
            "kind": "speech_like",
            "seed": seed,
            "seconds": n as f64 / Self::SAMPLE_RATE_HZ,
            "sample_rate_hz": Self::SAMPLE_RATE_HZ,
            "silent_fraction": pause_fraction,
            "method": "utterances of 0.8-3 s separated by 0.2-1 s of silence; 3-6 syllables/s, \
                each an optional fricative (noise through a 2.5-6 kHz resonator) or plosive burst \
                and a voiced nucleus: glottal impulse train (pitch 90-250 Hz, +-12% intonation, \
                15% declination, 1% jitter, 5% shimmer) through two one-pole low-passes, four \
                formant resonators gliding between vowels (Peterson & Barney) and lip radiation; \
                raised-cosine syllable envelope; unvoiced track 12 dB below voiced; DC-blocked, \
                peak-normalised; ChaCha8 seeded from `seed`",
        });
        Self::from_samples(samples, description)
    }

    /// Loads a WAV file: mono mix, conversion to 44.1 kHz, mean removed, peak normalised.
    /// Errors ([`SynthError::Audio`]) name the file and what is wrong with it.
    pub fn from_wav(path: &Path) -> Result<AudioBank, SynthError> {
        let fail = |problem: String| SynthError::Audio {
            path: path.to_path_buf(),
            problem,
        };
        let mut reader = hound::WavReader::open(path)
            .map_err(|e| fail(format!("cannot be read as a WAV file: {e}")))?;
        let spec = reader.spec();
        let channels = usize::from(spec.channels);
        if channels == 0 || spec.sample_rate == 0 {
            return Err(fail("declares no channels or a zero sample rate".into()));
        }
        let interleaved: Vec<f32> = match spec.sample_format {
            hound::SampleFormat::Float => reader
                .samples::<f32>()
                .collect::<Result<_, _>>()
                .map_err(|e| fail(format!("has unreadable samples: {e}")))?,
            hound::SampleFormat::Int => {
                let full = 2f64.powi(i32::from(spec.bits_per_sample.clamp(1, 32)) - 1);
                reader
                    .samples::<i32>()
                    .map(|s| s.map(|v| (f64::from(v) / full) as f32))
                    .collect::<Result<_, _>>()
                    .map_err(|e| fail(format!("has unreadable samples: {e}")))?
            }
        };
        let mono: Vec<f32> = interleaved
            .chunks_exact(channels)
            .map(|frame| frame.iter().sum::<f32>() / channels as f32)
            .collect();
        let seconds = mono.len() as f64 / f64::from(spec.sample_rate);
        if seconds < MIN_WAV_SECONDS {
            return Err(fail(format!(
                "holds {seconds:.3} s of audio; at least {MIN_WAV_SECONDS} s is needed"
            )));
        }
        if mono.iter().any(|v| !v.is_finite()) {
            return Err(fail("contains samples that are not finite numbers".into()));
        }
        let resampled = if f64::from(spec.sample_rate) == Self::SAMPLE_RATE_HZ {
            mono
        } else {
            resample(&mono, f64::from(spec.sample_rate), Self::SAMPLE_RATE_HZ)
        };
        let mut samples = resampled;
        if !normalise(&mut samples) {
            return Err(fail("is silent (every sample is the same)".into()));
        }
        let description = serde_json::json!({
            "kind": "wav",
            "path": path.display().to_string(),
            "file_sample_rate_hz": spec.sample_rate,
            "file_channels": spec.channels,
            "file_format": format!("{:?} {} bit", spec.sample_format, spec.bits_per_sample),
            "seconds": seconds,
            "sample_rate_hz": Self::SAMPLE_RATE_HZ,
            "method": "channels averaged to mono, resampled to 44.1 kHz (Kaiser-windowed sinc), \
                mean removed, peak-normalised",
        });
        Ok(Self::from_samples(samples, description))
    }

    fn from_samples(samples: Vec<f32>, description: serde_json::Value) -> AudioBank {
        let n = samples.len().max(1) as f64;
        let mean = samples.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let mean_square = samples
            .iter()
            .map(|&v| f64::from(v) * f64::from(v))
            .sum::<f64>()
            / n;
        AudioBank {
            samples,
            description,
            mean,
            mean_square,
            analytic: OnceLock::new(),
        }
    }

    /// The samples (44.1 kHz, peak 1).
    pub fn samples(&self) -> &[f32] {
        &self.samples
    }

    /// Mean of the samples.
    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// Mean power of the samples.
    pub fn mean_square(&self) -> f64 {
        self.mean_square
    }

    /// The analytic signal `a + j·H{a}` of the whole bank (computed once, by FFT, on first
    /// use): its spectrum is the bank's positive-frequency half, doubled, so it is exactly
    /// one-sided.
    pub fn analytic(&self) -> &[C32] {
        &self.analytic_data().samples
    }

    /// Mean of [`AudioBank::analytic`].
    pub fn analytic_mean(&self) -> C32 {
        self.analytic_data().mean
    }

    /// Mean power of [`AudioBank::analytic`].
    pub fn analytic_mean_square(&self) -> f64 {
        self.analytic_data().mean_square
    }

    fn analytic_data(&self) -> &Analytic {
        self.analytic.get_or_init(|| {
            let samples = analytic_signal(&self.samples);
            let n = samples.len().max(1) as f64;
            let (mut re, mut im, mut ms) = (0.0f64, 0.0f64, 0.0f64);
            for z in &samples {
                re += f64::from(z.re);
                im += f64::from(z.im);
                ms += f64::from(z.norm_sqr());
            }
            let mean = C32::new((re / n) as f32, (im / n) as f32);
            Analytic {
                samples,
                mean,
                mean_square: ms / n,
            }
        })
    }

    /// What the source is, for the dataset manifest.
    pub fn describe(&self) -> serde_json::Value {
        self.description.clone()
    }
}

/// Removes the mean and scales the peak to 1; false when nothing is left (silence).
fn normalise(samples: &mut [f32]) -> bool {
    let n = samples.len().max(1) as f64;
    let mean = (samples.iter().map(|&v| f64::from(v)).sum::<f64>() / n) as f32;
    samples.iter_mut().for_each(|v| *v -= mean);
    let peak = samples.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    if peak <= f32::MIN_POSITIVE * 1e3 {
        return false;
    }
    samples.iter_mut().for_each(|v| *v /= peak);
    true
}

/// The analytic signal of `x` by FFT: positive frequencies doubled, negative ones removed.
fn analytic_signal(x: &[f32]) -> Vec<C32> {
    let n = x.len();
    if n == 0 {
        return Vec::new();
    }
    let mut buf: Vec<C32> = x.iter().map(|&v| C32::new(v, 0.0)).collect();
    let mut planner = FftPlanner::<f32>::new();
    planner.plan_fft_forward(n).process(&mut buf);
    let half = n / 2;
    for (k, v) in buf.iter_mut().enumerate() {
        let keep = if k == 0 || (n.is_multiple_of(2) && k == half) {
            1.0
        } else if k < n.div_ceil(2) {
            2.0
        } else {
            0.0
        };
        *v *= keep / n as f32;
    }
    planner.plan_fft_inverse(n).process(&mut buf);
    buf
}

/// Converts `x` from `from_hz` to `to_hz` with a Kaiser-windowed sinc (32 zero crossings wide
/// at the narrower of the two bandwidths, 70 dB, cut-off at 0.9 of the narrower Nyquist), its
/// kernel tabulated at 1/1024-sample steps and each step normalised to unit DC gain.
fn resample(x: &[f32], from_hz: f64, to_hz: f64) -> Vec<f32> {
    const STEPS: usize = 1024;
    let ratio = to_hz / from_hz;
    let bw = ratio.min(1.0); // cut-off relative to the input's Nyquist
    let cutoff = 0.45 * bw; // cycles per input sample
    let half = (16.0 / bw).ceil() as usize;
    let width = 2 * half;
    let beta = kaiser_beta(70.0);
    let i0b = bessel_i0(beta);
    // kernel[p * width + k] multiplies input (floor(t) − half + 1 + k) for t − floor(t) = p/STEPS.
    let mut kernel = vec![0.0f32; (STEPS + 1) * width];
    for p in 0..=STEPS {
        let frac = p as f64 / STEPS as f64;
        let row: Vec<f64> = (0..width)
            .map(|k| {
                let d = k as f64 - half as f64 + 1.0 - frac;
                let w = (d / half as f64).clamp(-1.0, 1.0);
                let arg = 2.0 * cutoff * d;
                let sinc = if arg.abs() < 1e-12 {
                    1.0
                } else {
                    (PI * arg).sin() / (PI * arg)
                };
                sinc * bessel_i0(beta * (1.0 - w * w).sqrt()) / i0b
            })
            .collect();
        let sum: f64 = row.iter().sum();
        for (k, v) in row.iter().enumerate() {
            kernel[p * width + k] = (v / sum) as f32;
        }
    }
    let out_len = (x.len() as f64 * ratio).floor() as usize;
    let mut out = Vec::with_capacity(out_len);
    for m in 0..out_len {
        let t = m as f64 / ratio;
        let base = t.floor();
        let p = ((t - base) * STEPS as f64).round() as usize;
        let taps = &kernel[p * width..(p + 1) * width];
        let first = base as i64 - half as i64 + 1;
        let acc: f64 = taps
            .iter()
            .enumerate()
            .filter_map(|(k, &h)| {
                let i = usize::try_from(first + k as i64).ok()?;
                x.get(i).map(|&v| f64::from(h) * f64::from(v))
            })
            .sum();
        out.push(acc as f32);
    }
    out
}

/// The speech-like synthesiser.
mod speech {
    use super::*;

    const FS: f64 = AudioBank::SAMPLE_RATE_HZ;
    /// Samples between updates of the formant filters and the pitch.
    const BLOCK: usize = 32;
    /// F1–F3 (Hz) of ten English vowels (Peterson & Barney 1952, adult male averages).
    const VOWELS: [[f64; 3]; 10] = [
        [270.0, 2290.0, 3010.0],
        [390.0, 1990.0, 2550.0],
        [530.0, 1840.0, 2480.0],
        [660.0, 1720.0, 2410.0],
        [730.0, 1090.0, 2440.0],
        [570.0, 840.0, 2410.0],
        [440.0, 1020.0, 2240.0],
        [300.0, 870.0, 2240.0],
        [640.0, 1190.0, 2390.0],
        [490.0, 1350.0, 1690.0],
    ];
    const BANDWIDTHS: [f64; 4] = [80.0, 100.0, 150.0, 250.0];

    /// A Klatt two-pole resonator with unit gain at DC.
    #[derive(Clone, Copy, Default)]
    struct Resonator {
        a: f32,
        b: f32,
        c: f32,
        y1: f32,
        y2: f32,
    }

    impl Resonator {
        fn tune(&mut self, freq: f64, bw: f64) {
            let r = (-PI * bw / FS).exp();
            let c = -r * r;
            let b = 2.0 * r * (2.0 * PI * freq / FS).cos();
            self.a = (1.0 - b - c) as f32;
            self.b = b as f32;
            self.c = c as f32;
        }

        #[inline]
        fn step(&mut self, x: f32) -> f32 {
            let y = self.a * x + self.b * self.y1 + self.c * self.y2;
            self.y2 = self.y1;
            self.y1 = y;
            y
        }
    }

    /// A first-order DC blocker.
    #[derive(Default)]
    struct DcBlock {
        x1: f32,
        y1: f32,
    }

    impl DcBlock {
        #[inline]
        fn step(&mut self, x: f32) -> f32 {
            let y = x - self.x1 + 0.995 * self.y1;
            self.x1 = x;
            self.y1 = y;
            y
        }
    }

    /// Raised-cosine envelope at fraction `u` (0..1) of a segment.
    fn envelope(u: f64, attack: f64, decay: f64) -> f64 {
        if u < attack {
            0.5 - 0.5 * (PI * u / attack).cos()
        } else if u > 1.0 - decay {
            0.5 - 0.5 * (PI * (1.0 - u) / decay).cos()
        } else {
            1.0
        }
    }

    /// The voice of one utterance: pitch contour, glottal source and formant cascade.
    struct Voice {
        f0: f64,
        intonation_hz: f64,
        intonation_phase: f64,
        start: usize,
        len: usize,
        pitch_phase: f64,
        jitter: f64,
        shimmer: f32,
        lp1: f32,
        lp2: f32,
        formants: [Resonator; 4],
        prev_out: f32,
        dc: DcBlock,
        period_f0: f64,
    }

    impl Voice {
        fn new(rng: &mut SynthRng, start: usize, len: usize) -> Self {
            Voice {
                f0: rng.random_range(90.0..250.0),
                intonation_hz: rng.random_range(0.3..1.0),
                intonation_phase: rng.random_range(0.0..2.0 * PI),
                start,
                len,
                pitch_phase: rng.random_range(0.0..1.0),
                jitter: 1.0,
                shimmer: 1.0,
                lp1: 0.0,
                lp2: 0.0,
                formants: [Resonator::default(); 4],
                prev_out: 0.0,
                dc: DcBlock::default(),
                period_f0: 0.0,
            }
        }

        /// Formant scale for this voice's pitch (higher voices, shorter tracts).
        fn formant_scale(&self) -> f64 {
            1.0 + 0.17 * ((self.f0 - 90.0) / 160.0).clamp(0.0, 1.0)
        }

        /// Updates the pitch for sample `n` (absolute).
        fn update_pitch(&mut self, n: usize) {
            let t = (n - self.start) as f64 / FS;
            let progress = (n - self.start) as f64 / self.len.max(1) as f64;
            self.period_f0 = self.f0
                * (1.0 + 0.12 * (2.0 * PI * self.intonation_hz * t + self.intonation_phase).sin())
                * (1.0 - 0.15 * progress);
        }

        #[inline]
        fn step(&mut self, rng: &mut SynthRng) -> f32 {
            self.pitch_phase += self.period_f0 * self.jitter / FS;
            let mut excitation = 0.0f32;
            if self.pitch_phase >= 1.0 {
                self.pitch_phase -= 1.0;
                excitation = self.shimmer;
                self.jitter = 1.0 + 0.01 * rng.random_range(-1.7..1.7);
                self.shimmer = 1.0 + 0.05 * rng.random_range(-1.7f32..1.7);
            }
            let a = 0.96f32;
            self.lp1 = a * self.lp1 + (1.0 - a) * excitation;
            self.lp2 = a * self.lp2 + (1.0 - a) * self.lp1;
            let mut y = self.lp2;
            for f in &mut self.formants {
                y = f.step(y);
            }
            let radiated = y - self.prev_out;
            self.prev_out = y;
            self.dc.step(radiated)
        }
    }

    /// `n` samples of speech-like audio and the fraction of them that is silent.
    pub(super) fn synthesise(seed: u64, n: usize) -> (Vec<f32>, f64) {
        let mut rng = SynthRng::seed_from_u64(seed ^ 0x5EEC_411C_E5EE_D000);
        let mut voiced = vec![0.0f32; n];
        let mut unvoiced = vec![0.0f32; n];
        let mut t = (rng.random_range(0.0..0.3) * FS) as usize;
        let mut prev_formants = [500.0, 1500.0, 2500.0, 3500.0];
        while t < n {
            let utter_len = (rng.random_range(0.8..3.0) * FS) as usize;
            let end = (t + utter_len).min(n);
            let mut voice = Voice::new(&mut rng, t, utter_len);
            let scale = voice.formant_scale();
            while t < end {
                let syllable = ((FS / rng.random_range(3.0..6.0)) as usize).min(end - t);
                let syl_end = t + syllable;
                // Consonant onset.
                let kind: f64 = rng.random();
                let (gap, burst) = if kind < 0.45 {
                    (0, (rng.random_range(0.05..0.11) * FS) as usize)
                } else if kind < 0.6 {
                    (
                        (rng.random_range(0.02..0.04) * FS) as usize,
                        (rng.random_range(0.01..0.025) * FS) as usize,
                    )
                } else {
                    (0, 0)
                };
                let onset = (gap + burst).min(syllable / 2);
                let burst = onset - gap.min(onset);
                if burst > 0 {
                    let mut res = Resonator::default();
                    res.tune(
                        rng.random_range(2500.0..6000.0),
                        rng.random_range(1500.0..2500.0),
                    );
                    let mut dc = DcBlock::default();
                    let level = rng.random_range(0.5..1.0);
                    let from = t + onset - burst;
                    for (i, slot) in unvoiced[from..t + onset].iter_mut().enumerate() {
                        let env = envelope(i as f64 / burst as f64, 0.2, 0.3) * level;
                        let noise = rng.random_range(-1.0f32..1.0);
                        *slot = dc.step(res.step(noise)) * env as f32;
                    }
                }
                // Voiced nucleus.
                let vowel = VOWELS[rng.random_range(0..VOWELS.len())];
                let mut target = [0.0; 4];
                for (k, tf) in target.iter_mut().enumerate().take(3) {
                    *tf = vowel[k] * scale * rng.random_range(0.95..1.05);
                }
                target[3] = rng.random_range(3300.0..3700.0);
                let loudness = rng.random_range(0.4..1.0);
                let nucleus_start = t + onset;
                let nucleus = syl_end - nucleus_start;
                let glide = (nucleus as f64 * 0.4).max(1.0);
                // The voice runs through the onset too (its filters keep their state).
                for blk_start in (t..syl_end).step_by(BLOCK) {
                    let blk_end = (blk_start + BLOCK).min(syl_end);
                    voice.update_pitch(blk_start);
                    let g = ((blk_start.saturating_sub(nucleus_start)) as f64 / glide).min(1.0);
                    for (k, f) in voice.formants.iter_mut().enumerate() {
                        let freq = prev_formants[k] + (target[k] - prev_formants[k]) * g;
                        f.tune(freq, BANDWIDTHS[k]);
                    }
                    for (i, slot) in voiced[blk_start..blk_end].iter_mut().enumerate() {
                        let s = voice.step(&mut rng);
                        let pos = blk_start + i;
                        if pos >= nucleus_start {
                            let u = (pos - nucleus_start) as f64 / nucleus.max(1) as f64;
                            *slot = s * (envelope(u, 0.25, 0.35) * loudness) as f32;
                        }
                    }
                }
                prev_formants = target;
                t = syl_end;
                // A short gap between words now and then.
                if rng.random::<f64>() < 0.25 {
                    t = (t + (rng.random_range(0.04..0.12) * FS) as usize).min(end);
                }
            }
            t = end + (rng.random_range(0.2..1.0) * FS) as usize;
        }
        let rms = |x: &[f32]| {
            let (sum, count) = x
                .iter()
                .filter(|v| **v != 0.0)
                .fold((0.0f64, 0usize), |(s, c), &v| {
                    (s + f64::from(v) * f64::from(v), c + 1)
                });
            if count == 0 {
                1.0
            } else {
                (sum / count as f64).sqrt().max(1e-12)
            }
        };
        let gv = (1.0 / rms(&voiced)) as f32;
        let gu = (0.25 / rms(&unvoiced)) as f32;
        let mut out: Vec<f32> = voiced
            .iter()
            .zip(&unvoiced)
            .map(|(v, u)| v * gv + u * gu)
            .collect();
        let silent = out.iter().filter(|v| **v == 0.0).count() as f64 / n.max(1) as f64;
        // Peak only: the tracks are DC-blocked already, and silence stays exactly zero.
        let peak = out.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        if peak > 0.0 {
            out.iter_mut().for_each(|v| *v /= peak);
        }
        (out, silent)
    }
}
