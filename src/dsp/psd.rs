//! Power spectral density: windowed periodogram and Welch's averaged periodogram.
//!
//! # Scaling
//! For a segment `x[0..N]` and window `w`, bin `k` holds
//! `P[k] = |Σₙ w[n]·x[n]·e^{−j2πkn/N}|² / (N·Σₙ w[n]²)` — power per bin, so that the bins sum to
//! the window-weighted mean power `Σ|w·x|² / Σw²`. With the rectangular window this is exactly
//! the mean power `Σ|x|²/N` (Parseval); with Hann it equals it in expectation for a stationary
//! signal. White noise of power σ² therefore reads `σ²/N` in every bin, whatever the window.
//! Welch averages the segment periodograms.
//!
//! # Order
//! Bins are in FFT order (`0, 1, …, N/2, −N/2+1, …, −1` in units of `fs/N`) unless `shift` is
//! set, in which case they are fftshifted (`−⌊N/2⌋ … ⌈N/2⌉−1`, DC at index `⌊N/2⌋`).

use std::sync::Arc;

use rustfft::{Fft, FftPlanner};
use serde::{Deserialize, Serialize};

use crate::dsp::DspError;
use crate::dsp::error::nonzero;
use crate::iq::C32;

/// A data taper for spectral estimation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowFn {
    /// All ones.
    Rectangular,
    /// Periodic Hann, `w[n] = 0.5 − 0.5·cos(2πn/N)` (the DFT-even form used for spectra).
    #[default]
    Hann,
}

impl WindowFn {
    /// The `n` window coefficients.
    pub fn coefficients(self, n: usize) -> Vec<f32> {
        match self {
            WindowFn::Rectangular => vec![1.0; n],
            WindowFn::Hann => (0..n)
                .map(|i| {
                    (0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos()) as f32
                })
                .collect(),
        }
    }
}

/// Welch parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WelchConfig {
    /// Samples per segment (= number of bins).
    pub segment_len: usize,
    /// Samples shared by consecutive segments (`< segment_len`).
    pub overlap: usize,
    /// Taper applied to each segment.
    pub window: WindowFn,
    /// Whether the output is fftshifted (DC in the middle).
    pub shift: bool,
}

impl WelchConfig {
    /// A single-segment periodogram of `len` samples with `window`, unshifted.
    pub fn periodogram(len: usize, window: WindowFn) -> Self {
        Self {
            segment_len: len,
            overlap: 0,
            window,
            shift: false,
        }
    }

    /// How many segments Welch takes from `n` samples.
    pub fn segments(&self, n: usize) -> usize {
        if n < self.segment_len {
            0
        } else {
            (n - self.segment_len) / (self.segment_len - self.overlap) + 1
        }
    }
}

/// A reusable PSD estimator: FFT plan, window and scratch are made once in [`Psd::new`].
pub struct Psd {
    cfg: WelchConfig,
    fft: Arc<dyn Fft<f32>>,
    window: Vec<f32>,
    scale: f32,
    buf: Vec<C32>,
    scratch: Vec<C32>,
}

impl std::fmt::Debug for Psd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Psd")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl Psd {
    /// Plans the FFT and window for `cfg`.
    pub fn new(cfg: WelchConfig) -> Result<Self, DspError> {
        nonzero("segment_len", cfg.segment_len)?;
        if cfg.overlap >= cfg.segment_len {
            return Err(DspError::param(
                "overlap",
                cfg.overlap,
                format!("less than segment_len = {}", cfg.segment_len),
            ));
        }
        let n = cfg.segment_len;
        let fft = FftPlanner::new().plan_fft_forward(n);
        let window = cfg.window.coefficients(n);
        let wsum: f64 = window.iter().map(|w| f64::from(*w) * f64::from(*w)).sum();
        let scratch = vec![C32::new(0.0, 0.0); fft.get_inplace_scratch_len()];
        Ok(Self {
            cfg,
            fft,
            window,
            scale: (1.0 / (n as f64 * wsum)) as f32,
            buf: vec![C32::new(0.0, 0.0); n],
            scratch,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &WelchConfig {
        &self.cfg
    }

    /// Number of bins (`segment_len`).
    pub fn bins(&self) -> usize {
        self.cfg.segment_len
    }

    /// Welch PSD of `x` into `out` (`segment_len` bins, scaling in the module doc); returns the
    /// number of segments averaged. `x` must hold at least one segment.
    pub fn welch(&mut self, x: &[C32], out: &mut [f32]) -> Result<usize, DspError> {
        let n = self.cfg.segment_len;
        if out.len() != n {
            return Err(DspError::param(
                "out",
                format!("{} bins long", out.len()),
                format!("{n} bins (segment_len)"),
            ));
        }
        let segs = self.cfg.segments(x.len());
        if segs == 0 {
            return Err(DspError::param(
                "x",
                format!("{} samples", x.len()),
                format!("at least segment_len = {n} samples"),
            ));
        }
        out.iter_mut().for_each(|v| *v = 0.0);
        let step = n - self.cfg.overlap;
        for s in 0..segs {
            self.accumulate(&x[s * step..s * step + n], out);
        }
        let inv = 1.0 / segs as f32;
        out.iter_mut().for_each(|v| *v *= inv);
        if self.cfg.shift {
            fftshift(out);
        }
        Ok(segs)
    }

    /// Periodogram of exactly one segment `x` (`segment_len` samples) into `out`.
    pub fn periodogram(&mut self, x: &[C32], out: &mut [f32]) -> Result<(), DspError> {
        let n = self.cfg.segment_len;
        if x.len() != n {
            return Err(DspError::param(
                "x",
                format!("{} samples", x.len()),
                format!("exactly segment_len = {n} samples"),
            ));
        }
        self.welch(x, out).map(|_| ())
    }

    /// Adds the scaled periodogram of one segment to `out` (FFT order).
    fn accumulate(&mut self, seg: &[C32], out: &mut [f32]) {
        for ((b, x), w) in self.buf.iter_mut().zip(seg).zip(&self.window) {
            *b = x * *w;
        }
        self.fft
            .process_with_scratch(&mut self.buf, &mut self.scratch);
        for (o, b) in out.iter_mut().zip(&self.buf) {
            *o += b.norm_sqr() * self.scale;
        }
    }
}

/// One-shot Welch PSD (plans an FFT on each call; use [`Psd`] on a hot path).
pub fn welch(x: &[C32], cfg: WelchConfig) -> Result<Vec<f32>, DspError> {
    let mut psd = Psd::new(cfg)?;
    let mut out = vec![0.0; cfg.segment_len];
    psd.welch(x, &mut out)?;
    Ok(out)
}

/// Moves the zero-frequency bin to the middle (index `⌊N/2⌋`), like `numpy.fft.fftshift`.
pub fn fftshift<T>(x: &mut [T]) {
    let n = x.len();
    x.rotate_right(n / 2);
}

/// Undoes [`fftshift`], like `numpy.fft.ifftshift`.
pub fn ifftshift<T>(x: &mut [T]) {
    let n = x.len();
    x.rotate_left(n / 2);
}

/// The smallest power [`to_db`] reports: 10⁻³⁰ (−300 dB) stands in for 0, so dB values are
/// always finite.
pub const POWER_FLOOR: f32 = 1e-30;

/// `10·log10(max(p, 10⁻³⁰))`.
pub fn power_db(p: f32) -> f32 {
    10.0 * p.max(POWER_FLOOR).log10()
}

/// Converts powers to dB in place with [`power_db`].
pub fn to_db(p: &mut [f32]) {
    p.iter_mut().for_each(|v| *v = power_db(*v));
}

/// The bin frequencies in cycles/sample for `n` bins, in FFT order or shifted.
pub fn bin_frequencies(n: usize, shift: bool) -> Vec<f32> {
    let mut f: Vec<f32> = (0..n)
        .map(|k| {
            let k = if k < n.div_ceil(2) {
                k as f32
            } else {
                k as f32 - n as f32
            };
            k / n as f32
        })
        .collect();
    if shift {
        fftshift(&mut f);
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tone_lands_in_its_bin() {
        let n = 64;
        let x: Vec<C32> = (0..n)
            .map(|i| C32::from_polar(2.0, 2.0 * std::f32::consts::PI * 5.0 * i as f32 / n as f32))
            .collect();
        let p = welch(&x, WelchConfig::periodogram(n, WindowFn::Rectangular)).expect("valid");
        assert!((p[5] - 4.0).abs() < 1e-4, "{}", p[5]);
        let rest: f32 = p
            .iter()
            .enumerate()
            .filter(|(k, _)| *k != 5)
            .map(|(_, v)| v)
            .sum();
        assert!(rest < 1e-6, "{rest}");
    }

    #[test]
    fn shift_puts_dc_in_the_middle() {
        let f = bin_frequencies(8, true);
        assert_eq!(f[4], 0.0);
        assert_eq!(f[0], -0.5);
        let g = bin_frequencies(5, false);
        assert_eq!(g, vec![0.0, 0.2, 0.4, -0.4, -0.2]);
    }

    #[test]
    fn bad_overlap_is_named() {
        let cfg = WelchConfig {
            segment_len: 8,
            overlap: 8,
            window: WindowFn::Hann,
            shift: false,
        };
        let e = Psd::new(cfg).unwrap_err();
        assert!(e.to_string().contains("'overlap' is 8"), "{e}");
    }

    #[test]
    fn db_of_zero_is_finite() {
        assert_eq!(power_db(0.0), -300.0);
        assert!((power_db(100.0) - 20.0).abs() < 1e-5);
    }
}
