//! Continuous-phase binary frequency modulations: CPFSK, GFSK and GMSK, with GNU Radio's
//! semantics.
//!
//! Random payload bits, NRZ (±1), drive a frequency pulse `g` sampled at `sps` samples per
//! symbol: the instantaneous frequency is `f[n] = Σ_m b_m g[n − m·sps]`, and the phase advances
//! by `sensitivity · f[n]` radians per sample (GNU Radio's `frequency_modulator_fc`).
//!
//! - **CPFSK** (`analog.cpfsk_bc(k=0.5, 1, 8)`): rectangular pulse one symbol long, phase step
//!   `±k·π/sps` per sample (modulation index k = 0.5, MSK-like).
//! - **GFSK** (`digital.gfsk_mod(8, sensitivity=0.1, bt=0.35)`): Gaussian of BT 0.35 over
//!   `4·sps` taps convolved with a one-symbol rectangle, so a long run of equal bits reaches
//!   frequency ±1; phase step 0.1 rad per sample at full deviation (index 0.1·sps/π ≈ 0.25).
//! - **GMSK** (`digital.gmsk_mod`, BT 0.3): the same Gaussian pulse with BT 0.3 and sensitivity
//!   `(π/2)/sps`, i.e. modulation index h = 0.5.
//!
//! Because the pulse spans `L` symbols, the phase step at a sample depends only on the sample's
//! position in the symbol and the last `L` bits, so every possible step `e^{j·sensitivity·f}`
//! is tabulated once (`sps · 2^L` entries) and a sample costs one look-up and one complex
//! multiply; the magnitude is renormalised once per symbol. Each window starts at a random
//! carrier phase and a random sample within a symbol period.

use std::f64::consts::PI;

use rand::Rng;

use crate::iq::C32;
use crate::synth::pulse::gaussian_frequency_pulse;
use crate::synth::{Modulator, SynthRng};

/// The longest pulse (in symbols) the step table supports.
const MAX_SPAN: usize = 8;

/// A binary continuous-phase modulator defined by its frequency pulse and sensitivity.
#[derive(Debug, Clone)]
pub struct ContinuousPhase {
    sps: usize,
    span: usize,
    /// `steps[p << span | pattern]` = `e^{j·sensitivity·f}` at sample `p` of a symbol, where
    /// bit `j` of `pattern` is the symbol `j` periods back (1 → +1, 0 → −1).
    steps: Vec<C32>,
    /// `rotations[pattern * (sps + 1) + q]` = the product of the first `q` steps of a symbol
    /// period under `pattern` (q = 0..=sps), so a whole symbol's samples are independent
    /// multiplies of its starting value.
    rotations: Vec<C32>,
}

impl ContinuousPhase {
    /// A modulator from a frequency pulse sampled at `sps` samples per symbol and the phase
    /// step in radians per sample at frequency 1.
    pub fn new(pulse: &[f64], sps: usize, sensitivity: f64) -> Self {
        let sps = sps.max(1);
        let span = pulse.len().div_ceil(sps).clamp(1, MAX_SPAN);
        let freq = |p: usize, pattern: usize| -> f64 {
            (0..span)
                .map(|j| {
                    let b = if pattern >> j & 1 == 1 { 1.0 } else { -1.0 };
                    b * pulse.get(p + j * sps).copied().unwrap_or(0.0)
                })
                .sum()
        };
        let mut steps = Vec::with_capacity(sps << span);
        for p in 0..sps {
            for pattern in 0..1usize << span {
                let (s, c) = (sensitivity * freq(p, pattern)).sin_cos();
                steps.push(C32::new(c as f32, s as f32));
            }
        }
        let mut rotations = Vec::with_capacity((sps + 1) << span);
        for pattern in 0..1usize << span {
            let mut phase = 0.0f64;
            for q in 0..=sps {
                let (s, c) = phase.sin_cos();
                rotations.push(C32::new(c as f32, s as f32));
                if q < sps {
                    phase += sensitivity * freq(q, pattern);
                }
            }
        }
        ContinuousPhase {
            sps,
            span,
            steps,
            rotations,
        }
    }

    /// CPFSK with modulation index `k` (phase step `±k·π/sps` per sample).
    pub fn cpfsk(sps: usize, k: f64) -> Self {
        let sps = sps.max(1);
        Self::new(&vec![1.0; sps], sps, k * PI / sps as f64)
    }

    /// GFSK: Gaussian pulse of bandwidth-time product `bt`, `sensitivity` rad/sample.
    pub fn gfsk(sps: usize, sensitivity: f64, bt: f64) -> Self {
        let sps = sps.max(1);
        Self::new(&gaussian_frequency_pulse(sps, bt), sps, sensitivity)
    }

    /// GMSK: Gaussian pulse of bandwidth-time product `bt`, modulation index 0.5.
    pub fn gmsk(sps: usize, bt: f64) -> Self {
        let sps = sps.max(1);
        Self::gfsk(sps, PI / 2.0 / sps as f64, bt)
    }
}

impl Modulator for ContinuousPhase {
    fn generate(&self, rng: &mut SynthRng, len: usize) -> Vec<C32> {
        let mask = (1usize << self.span) - 1;
        let mut word: u64 = rng.random();
        let mut left = 64u32;
        let mut pattern = (word as usize) & mask;
        word >>= self.span;
        left -= self.span as u32;
        let mut p = rng.random_range(0..self.sps);
        let (s, c) = rng.random_range(0.0..2.0 * std::f32::consts::PI).sin_cos();
        let mut x = C32::new(c, s);
        let mut out = Vec::with_capacity(len);
        let mut next_bit = |pattern: usize| {
            if left == 0 {
                word = rng.random();
                left = 64;
            }
            let bit = (word & 1) as usize;
            word >>= 1;
            left -= 1;
            ((pattern << 1) | bit) & mask
        };
        // The first, partial symbol period sample by sample...
        while p < self.sps && out.len() < len {
            out.push(x);
            x *= self.steps[(p << self.span) | pattern];
            p += 1;
        }
        // ...then whole periods from the cumulative rotations.
        let period = self.sps + 1;
        while out.len() < len {
            pattern = next_bit(pattern);
            x *= 1.5 - 0.5 * x.norm_sqr();
            let rot = &self.rotations[pattern * period..(pattern + 1) * period];
            let take = self.sps.min(len - out.len());
            out.extend(rot[..take].iter().map(|r| x * r));
            x *= rot[self.sps];
        }
        out
    }
}
