//! Pulse shaping and interpolation: root-raised-cosine and Gaussian pulses, a symbol shaper
//! that only multiplies actual symbols (no zero-stuffing), a polyphase fractional resampler for
//! audio, a four-accumulator dot product, and a table oscillator.
//!
//! Everything here is computed once (when a modulator is built) and then only read, so a
//! window costs multiply-adds and table look-ups, never a transcendental call per sample.

use std::f64::consts::PI;
use std::sync::LazyLock;

use rand::Rng;

use crate::iq::C32;
use crate::synth::SynthRng;

/// Span of the root-raised-cosine pulse in symbols (GNU Radio's `generic_mod` uses 11).
pub const RRC_SPAN_SYMBOLS: usize = 11;

/// Root-raised-cosine taps: `span * sps + 1` taps centred on the middle one, scaled so that
/// the sum of their squares is `sps`. With that scaling a stream of symbols of mean power 1
/// (one every `sps` samples) comes out with mean power 1.
pub fn rrc_taps(sps: usize, rolloff: f32, span: usize) -> Vec<f32> {
    let a = f64::from(rolloff).clamp(0.0, 1.0);
    let n = span * sps + 1;
    let mid = (n / 2) as f64;
    let mut h: Vec<f64> = (0..n)
        .map(|i| {
            let t = (i as f64 - mid) / sps as f64;
            if t.abs() < 1e-9 {
                1.0 - a + 4.0 * a / PI
            } else if a > 0.0 && (1.0 - (4.0 * a * t).powi(2)).abs() < 1e-9 {
                a / 2f64.sqrt()
                    * ((1.0 + 2.0 / PI) * (PI / (4.0 * a)).sin()
                        + (1.0 - 2.0 / PI) * (PI / (4.0 * a)).cos())
            } else {
                ((PI * t * (1.0 - a)).sin() + 4.0 * a * t * (PI * t * (1.0 + a)).cos())
                    / (PI * t * (1.0 - (4.0 * a * t).powi(2)))
            }
        })
        .collect();
    let energy: f64 = h.iter().map(|v| v * v).sum();
    let scale = (sps as f64 / energy).sqrt();
    h.iter_mut().for_each(|v| *v *= scale);
    h.into_iter().map(|v| v as f32).collect()
}

/// GNU Radio's `firdes::gaussian(1, sps, bt, ntaps)`: a sampled Gaussian with bandwidth-time
/// product `bt`, normalised to unit sum.
pub fn gaussian_taps(sps: usize, bt: f64, ntaps: usize) -> Vec<f64> {
    let dt = 1.0 / sps as f64;
    let s = 1.0 / (2f64.ln().sqrt() / (2.0 * PI * bt));
    let mut t0 = -0.5 * ntaps as f64;
    let mut taps = Vec::with_capacity(ntaps);
    for _ in 0..ntaps {
        t0 += 1.0;
        let ts = s * dt * t0;
        taps.push((-0.5 * ts * ts).exp());
    }
    let sum: f64 = taps.iter().sum();
    taps.iter_mut().for_each(|v| *v /= sum);
    taps
}

/// The frequency pulse of GNU Radio's `gfsk_mod`/`gmsk_mod`: the Gaussian of `4 * sps` taps
/// convolved with a rectangle of `sps` ones, so a long run of equal symbols gives frequency
/// ±1 exactly.
pub fn gaussian_frequency_pulse(sps: usize, bt: f64) -> Vec<f64> {
    let g = gaussian_taps(sps, bt, 4 * sps);
    let mut out = vec![0.0; g.len() + sps - 1];
    for (i, gi) in g.iter().enumerate() {
        for o in &mut out[i..i + sps] {
            *o += gi;
        }
    }
    out
}

/// Interpolates a symbol stream by `sps` with a pulse: each symbol adds its scaled pulse to the
/// output samples it reaches (only products with actual symbols are computed, and the inner
/// loop is a contiguous multiply-add the compiler vectorises).
#[derive(Debug, Clone)]
pub struct PulseShaper {
    sps: usize,
    taps: Vec<f32>,
}

impl PulseShaper {
    /// A shaper for `taps` at `sps` samples per symbol.
    pub fn new(taps: &[f32], sps: usize) -> Self {
        PulseShaper {
            sps: sps.max(1),
            taps: taps.to_vec(),
        }
    }

    /// Samples per symbol.
    pub fn sps(&self) -> usize {
        self.sps
    }

    /// `len` samples of the shaped stream of symbols drawn from `symbol`, the first sample
    /// lying `first_phase` samples (0..sps) after the start of a symbol, with every sample
    /// fully loaded (no start-up transient).
    pub fn shape(
        &self,
        rng: &mut SynthRng,
        len: usize,
        first_phase: usize,
        mut symbol: impl FnMut(&mut SynthRng) -> C32,
    ) -> Vec<C32> {
        let n_taps = self.taps.len() as isize;
        let sps = self.sps as isize;
        let r = (first_phase % self.sps) as isize;
        let len_i = len as isize;
        let mut out = vec![C32::new(0.0, 0.0); len];
        // Symbol m's pulse covers absolute samples m·sps .. m·sps + n_taps − 1; output i is
        // absolute sample i + r. Start with the first symbol whose pulse reaches output 0.
        let mut m = -((n_taps - 1 - r).div_euclid(sps));
        while m * sps - r < len_i {
            let s = symbol(rng);
            let start = m * sps - r;
            let i_lo = start.max(0);
            let i_hi = (start + n_taps).min(len_i);
            if i_lo < i_hi {
                let k_lo = (i_lo - start) as usize;
                let taps = &self.taps[k_lo..k_lo + (i_hi - i_lo) as usize];
                for (o, &h) in out[i_lo as usize..i_hi as usize].iter_mut().zip(taps) {
                    o.re += s.re * h;
                    o.im += s.im * h;
                }
            }
            m += 1;
        }
        out
    }
}

/// `Σ x[i]·h[i]` with four partial sums (so the additions do not form one long dependency
/// chain); `x` and `h` must have the same length.
#[inline]
pub fn dot<T>(x: &[T], h: &[f32]) -> T
where
    T: Copy + Default + std::ops::Add<Output = T> + std::ops::Mul<f32, Output = T>,
{
    let n = x.len().min(h.len());
    let whole = n / 4 * 4;
    let mut acc = [T::default(); 4];
    for (xs, hs) in x[..whole].chunks_exact(4).zip(h[..whole].chunks_exact(4)) {
        acc[0] = acc[0] + xs[0] * hs[0];
        acc[1] = acc[1] + xs[1] * hs[1];
        acc[2] = acc[2] + xs[2] * hs[2];
        acc[3] = acc[3] + xs[3] * hs[3];
    }
    let mut tail = T::default();
    for (&xv, &hv) in x[whole..n].iter().zip(&h[whole..n]) {
        tail = tail + xv * hv;
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// Phases of the audio resampler's polyphase bank.
const RESAMPLER_PHASES: usize = 256;
/// Taps per phase of the audio resampler.
pub const RESAMPLER_TAPS: usize = 16;

/// A fixed-ratio polyphase fractional resampler (Kaiser-windowed sinc, 16 taps, 256 phases,
/// cut-off 0.42 of the input rate, each phase normalised to unit DC gain). Output sample `n`
/// lies at input position `start + n * num / den` (in input samples), rounded to the nearest
/// 1/256 of an input sample.
#[derive(Debug, Clone)]
pub struct Resampler {
    num: u64,
    den: u64,
    /// For a remainder `rem` (0..den): `rem·256/den` rounded, 0..=256 (256 = next sample).
    phase_of_rem: Vec<u16>,
}

/// The shared polyphase bank of [`Resampler`], `[phase][tap]`.
static RESAMPLER_BANK: LazyLock<Vec<f32>> = LazyLock::new(|| {
    let cutoff = 0.42; // cycles per input sample
    let beta = 6.0;
    let half = RESAMPLER_TAPS as f64 / 2.0;
    let mut bank = vec![0.0f32; RESAMPLER_PHASES * RESAMPLER_TAPS];
    for p in 0..RESAMPLER_PHASES {
        let frac = p as f64 / RESAMPLER_PHASES as f64;
        let mut row = [0.0f64; RESAMPLER_TAPS];
        for (k, r) in row.iter_mut().enumerate() {
            // Tap k multiplies input sample (idx - half + 1 + k); distance to the output time.
            let d = (k as f64 - half + 1.0) - frac;
            let x = 2.0 * cutoff * d;
            let sinc = if x.abs() < 1e-12 {
                1.0
            } else {
                (PI * x).sin() / (PI * x)
            };
            let w = (d / half).clamp(-1.0, 1.0);
            *r = sinc * bessel_i0(beta * (1.0 - w * w).sqrt()) / bessel_i0(beta);
        }
        let sum: f64 = row.iter().sum();
        for (k, r) in row.iter().enumerate() {
            bank[p * RESAMPLER_TAPS + k] = (r / sum) as f32;
        }
    }
    bank
});

/// Zeroth-order modified Bessel function of the first kind (series), for Kaiser windows.
pub fn bessel_i0(x: f64) -> f64 {
    let mut sum = 1.0;
    let mut term = 1.0;
    let q = x * x / 4.0;
    for k in 1..50 {
        term *= q / (k * k) as f64;
        sum += term;
        if term < 1e-17 * sum {
            break;
        }
    }
    sum
}

/// Kaiser window β for a stop-band attenuation of `atten_db` (Kaiser's formula).
pub fn kaiser_beta(atten_db: f64) -> f64 {
    if atten_db > 50.0 {
        0.1102 * (atten_db - 8.7)
    } else if atten_db >= 21.0 {
        0.5842 * (atten_db - 21.0).powf(0.4) + 0.07886 * (atten_db - 21.0)
    } else {
        0.0
    }
}

/// The input samples a resampled stretch reads, relative to its start index.
pub struct ResampleSpan {
    /// Input samples needed before the start position.
    pub before: usize,
    /// Total input samples needed (including `before`).
    pub total: usize,
}

impl Resampler {
    /// A resampler stepping `num / den` input samples per output sample.
    pub fn new(num: u64, den: u64) -> Self {
        let den = den.max(1);
        let phases = RESAMPLER_PHASES as u64;
        let phase_of_rem = (0..den)
            .map(|rem| ((rem * phases + den / 2) / den) as u16)
            .collect();
        Resampler {
            num,
            den,
            phase_of_rem,
        }
    }

    /// The input stretch `len` outputs read.
    pub fn span(&self, len: usize) -> ResampleSpan {
        let before = RESAMPLER_TAPS / 2 - 1;
        let advance = (len as u64 * self.num).div_ceil(self.den) as usize;
        ResampleSpan {
            before,
            total: before + advance + RESAMPLER_TAPS / 2 + 2,
        }
    }

    /// A random starting fraction (in 1/den of an input sample).
    pub fn random_fraction(&self, rng: &mut SynthRng) -> u64 {
        rng.random_range(0..self.den)
    }

    /// Resamples `input` (laid out as [`Resampler::span`] says, starting `frac / den` input
    /// samples after `input[span.before]`), mapping each output through `map`.
    #[inline]
    pub fn run<T, O>(
        &self,
        input: &[T],
        frac: u64,
        len: usize,
        out: &mut Vec<O>,
        mut map: impl FnMut(T) -> O,
    ) where
        T: Dot16,
    {
        let bank: &[f32] = &RESAMPLER_BANK;
        let (step_whole, step_rem) = ((self.num / self.den) as usize, self.num % self.den);
        let mut idx = (frac / self.den) as usize;
        let mut rem = frac % self.den;
        for _ in 0..len {
            let pos = usize::from(self.phase_of_rem[rem as usize]);
            let at = idx + (pos >> 8);
            let phase = pos & (RESAMPLER_PHASES - 1);
            let taps = &bank[phase * RESAMPLER_TAPS..(phase + 1) * RESAMPLER_TAPS];
            out.push(map(T::dot16(&input[at..at + RESAMPLER_TAPS], taps)));
            idx += step_whole;
            rem += step_rem;
            if rem >= self.den {
                rem -= self.den;
                idx += 1;
            }
        }
    }
}

/// A 16-tap dot product laid out so the compiler turns it into vector instructions (eight
/// independent lanes per component).
pub trait Dot16:
    Copy + Default + std::ops::Add<Output = Self> + std::ops::Mul<f32, Output = Self>
{
    /// `Σ x[i]·h[i]` over 16 taps (`x` and `h` hold at least 16 values).
    fn dot16(x: &[Self], h: &[f32]) -> Self;
}

impl Dot16 for f32 {
    #[inline]
    fn dot16(x: &[f32], h: &[f32]) -> f32 {
        match (x.first_chunk::<16>(), h.first_chunk::<16>()) {
            (Some(x), Some(h)) => {
                let mut acc = [0.0f32; 8];
                for i in 0..16 {
                    acc[i & 7] += x[i] * h[i];
                }
                ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
            }
            _ => dot(x, h),
        }
    }
}

impl Dot16 for C32 {
    #[inline]
    fn dot16(x: &[C32], h: &[f32]) -> C32 {
        match (x.first_chunk::<16>(), h.first_chunk::<16>()) {
            (Some(x), Some(h)) => {
                let mut re = [0.0f32; 8];
                let mut im = [0.0f32; 8];
                for i in 0..16 {
                    re[i & 7] += x[i].re * h[i];
                    im[i & 7] += x[i].im * h[i];
                }
                let sum =
                    |a: [f32; 8]| ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
                C32::new(sum(re), sum(im))
            }
            _ => dot(x, h),
        }
    }
}

/// Bits of the oscillator table index.
const NCO_BITS: u32 = 12;

/// `e^{j 2π k / 4096}` for k in 0..4096.
static NCO_TABLE: LazyLock<Vec<C32>> = LazyLock::new(|| {
    let n = 1usize << NCO_BITS;
    (0..n)
        .map(|k| {
            let (s, c) = (2.0 * PI * k as f64 / n as f64).sin_cos();
            C32::new(c as f32, s as f32)
        })
        .collect()
});

/// A phase accumulator (2^32 = one turn) read through a 4096-entry unit-circle table: every
/// output has magnitude 1 to within 1e-7, the phase is exact to within π/4096, and phase
/// errors do not accumulate.
#[derive(Debug, Clone, Copy)]
pub struct Nco {
    phase: u32,
}

impl Nco {
    /// An oscillator starting at `phase` (2^32 = one turn).
    pub fn new(phase: u32) -> Self {
        Nco { phase }
    }

    /// Converts radians to the accumulator's units (wrapping modulo one turn).
    #[inline]
    pub fn radians_to_units(radians: f32) -> u32 {
        let turns = f64::from(radians) / (2.0 * PI);
        (turns * 4_294_967_296.0).round() as i64 as u32
    }

    /// The current output, then advances the phase by `step` units.
    #[inline]
    pub fn next(&mut self, step: u32) -> C32 {
        let table: &[C32] = &NCO_TABLE;
        let idx = (self.phase.wrapping_add(1 << (31 - NCO_BITS)) >> (32 - NCO_BITS)) as usize;
        self.phase = self.phase.wrapping_add(step);
        table[idx]
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn rrc_taps_have_energy_sps_and_unit_dc_gain_per_phase() {
        let h = rrc_taps(8, 0.35, RRC_SPAN_SYMBOLS);
        assert_eq!(h.len(), 89);
        let energy: f32 = h.iter().map(|v| v * v).sum();
        assert!((energy - 8.0).abs() < 1e-4, "energy {energy}");
        // Every phase of the pulse train sums to ≈ 1 (the DC gain per output sample), ± 1 %.
        for p in 0..8 {
            let s: f32 = h.iter().skip(p).step_by(8).sum();
            assert!((s - 1.0).abs() < 0.01, "phase {p}: {s}");
        }
    }

    #[test]
    fn gaussian_frequency_pulse_reaches_one_on_long_runs() {
        let g = gaussian_frequency_pulse(8, 0.35);
        assert_eq!(g.len(), 39);
        for p in 0..8 {
            let s: f64 = g.iter().skip(p).step_by(8).sum();
            assert!((s - 1.0).abs() < 1e-9, "phase {p}: {s}");
        }
    }

    #[test]
    fn shaper_output_matches_direct_convolution() {
        let taps = rrc_taps(4, 0.5, 6);
        let shaper = PulseShaper::new(&taps, 4);
        let mut symbols = Vec::new();
        let mut rng = SynthRng::seed_from_u64(1);
        let out = shaper.shape(&mut rng, 40, 3, |r| {
            let s = C32::new(r.random_range(-1.0..1.0), r.random_range(-1.0..1.0));
            symbols.push(s);
            s
        });
        // Symbol k (from the first drawn) starts at output (k + m0)·4 − 3, m0 = −⌊(25 − 1 − 3)/4⌋.
        let m0 = -((taps.len() as isize - 1 - 3).div_euclid(4));
        for (i, y) in out.iter().enumerate() {
            let mut want = C32::new(0.0, 0.0);
            for (k, s) in symbols.iter().enumerate() {
                let t = i as isize + 3 - (k as isize + m0) * 4;
                if t >= 0 && (t as usize) < taps.len() {
                    want += s * taps[t as usize];
                }
            }
            assert!((y - want).norm() < 1e-5, "sample {i}: {y} vs {want}");
        }
    }

    #[test]
    fn dot_matches_the_plain_sum() {
        let x: Vec<f32> = (0..23).map(|i| i as f32 * 0.5 - 3.0).collect();
        let h: Vec<f32> = (0..23).map(|i| (i as f32).sin()).collect();
        let plain: f32 = x.iter().zip(&h).map(|(a, b)| a * b).sum();
        assert!((dot(&x, &h) - plain).abs() < 1e-4);
    }

    #[test]
    fn resampler_reproduces_a_slow_tone() {
        // A 1 kHz tone at 44.1 kHz resampled to 200 kHz stays a 1 kHz tone (error < 1e-3).
        let r = Resampler::new(441, 2000);
        let len = 500;
        let span = r.span(len);
        let w = 2.0 * PI * 1000.0 / 44_100.0;
        let input: Vec<f32> = (0..span.total)
            .map(|n| ((n as f64 - span.before as f64) * w).sin() as f32)
            .collect();
        let mut out = Vec::new();
        r.run(&input, 700, len, &mut out, |v: f32| v);
        for (n, y) in out.iter().enumerate() {
            let t = (700.0 + n as f64 * 441.0) / 2000.0;
            let want = (t * w).sin() as f32;
            assert!((y - want).abs() < 1e-3, "output {n}: {y} vs {want}");
        }
    }

    #[test]
    fn nco_has_unit_magnitude_and_the_asked_phase() {
        let step = Nco::radians_to_units(0.3);
        let mut nco = Nco::new(0);
        for n in 0..1000 {
            let v = nco.next(step);
            assert!((v.norm() - 1.0).abs() < 1e-6);
            let want = (f64::from(0.3f32) * n as f64).rem_euclid(2.0 * PI);
            let got = f64::from(v.arg()).rem_euclid(2.0 * PI);
            let err = (got - want).abs().min(2.0 * PI - (got - want).abs());
            assert!(err <= PI / 4096.0 + 1e-6, "sample {n}: phase error {err}");
        }
        // −π/2 wraps to three quarters of a turn (to within f32's precision of π/2).
        let units = Nco::radians_to_units(-std::f32::consts::FRAC_PI_2);
        assert!((units.wrapping_sub(3 << 30) as i32).abs() < 100, "{units}");
    }
}
