//! Model-input representations of a window: each turns a channel-major complex window
//! (`channels × len`) into planar f32 rows, two rows per channel — shape `[2·channels, len]`,
//! channel 0's two rows first.
//!
//! | variant      | row 2c (per channel c)                 | row 2c+1                                     |
//! |--------------|----------------------------------------|----------------------------------------------|
//! | `iq`         | I (real part)                          | Q (imaginary part)                           |
//! | `amp_phase`  | amplitude `|x|`                        | phase `atan2(Q, I)` in radians, (−π, π]      |
//! | `inst_freq`  | amplitude `|x|`                        | instantaneous frequency, cycles/sample       |
//! | `fft`        | Re X, fftshifted                       | Im X, fftshifted                             |
//! | `fft_log_mag`| `10·log10(|X|² + 10⁻¹⁰)`, fftshifted   | `arg X` in radians, fftshifted               |
//! | `wavelet`    | DWT of I (see [`crate::dsp::wavelet`]) | DWT of Q                                     |
//!
//! * Instantaneous frequency: `f[n] = arg(x[n]·conj(x[n−1])) / 2π` for `n ≥ 1`, in (−0.5, 0.5]
//!   cycles/sample (no unwrapping needed); the first sample repeats the second (`f[0] = f[1]`),
//!   and a one-sample window has `f[0] = 0`. Where a sample is exactly 0 its phase is 0.
//! * FFT: `X[k] = Σₙ x[n]·e^{−j2πkn/len} / √len` (unitary, so `Σ|X|² = Σ|x|²`), bins fftshifted
//!   so DC sits at index `⌊len/2⌋` (see [`crate::dsp::psd::fftshift`]).
//! * Wavelet: real multi-level DWT applied to I and to Q separately, layout
//!   `[a_J | d_J | … | d_1]`; `len` must be divisible by `2^levels`.
//!
//! Normalisation ([`crate::dsp::normalize`]) is applied to the window *before* the representation.

use std::sync::Arc;

use rustfft::{Fft, FftPlanner};
use serde::{Deserialize, Serialize};

use crate::dsp::DspError;
use crate::dsp::error::per_channel;
use crate::dsp::psd::fftshift;
use crate::dsp::wavelet::{self, WaveletKind};
use crate::iq::C32;

/// Which representation a model takes (see the module table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Representation {
    /// I and Q rows.
    #[default]
    Iq,
    /// Amplitude and phase (radians) rows.
    AmpPhase,
    /// Amplitude and instantaneous-frequency (cycles/sample) rows.
    InstFreq,
    /// Real and imaginary rows of the unitary, fftshifted FFT.
    Fft,
    /// Log-power (dB) and phase rows of the unitary, fftshifted FFT.
    FftLogMag,
    /// Multi-level DWT of I and of Q.
    Wavelet {
        /// Which wavelet.
        wavelet: WaveletKind,
        /// Decomposition levels (`len` divisible by `2^levels`).
        levels: usize,
    },
}

/// Reusable state for [`Representation::write`]: cached FFT plans and scratch buffers, so the hot
/// path neither plans nor allocates once warmed up.
#[derive(Default)]
pub struct ReprWorkspace {
    planner: Option<FftPlanner<f32>>,
    fft: Option<Arc<dyn Fft<f32>>>,
    buf: Vec<C32>,
    scratch: Vec<C32>,
    real: Vec<f32>,
    wscratch: Vec<f32>,
}

impl std::fmt::Debug for ReprWorkspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReprWorkspace")
            .field("fft_len", &self.fft.as_ref().map(|p| p.len()))
            .finish_non_exhaustive()
    }
}

impl ReprWorkspace {
    /// An empty workspace; plans are made on first use and kept.
    pub fn new() -> Self {
        Self::default()
    }

    fn fft(&mut self, len: usize) -> Arc<dyn Fft<f32>> {
        match &self.fft {
            Some(p) if p.len() == len => Arc::clone(p),
            _ => {
                let p = self
                    .planner
                    .get_or_insert_with(FftPlanner::new)
                    .plan_fft_forward(len);
                self.scratch
                    .resize(p.get_inplace_scratch_len(), C32::new(0.0, 0.0));
                self.fft = Some(Arc::clone(&p));
                p
            }
        }
    }
}

impl Representation {
    /// Rows per channel (always 2).
    pub const ROWS_PER_CHANNEL: usize = 2;

    /// The output shape `[2·channels, len]` for a window of `channels × len` samples.
    pub fn shape(&self, channels: usize, len: usize) -> [usize; 2] {
        [Self::ROWS_PER_CHANNEL * channels, len]
    }

    /// Checks that windows of `len` samples per channel can take this representation.
    pub fn check_len(&self, len: usize) -> Result<(), DspError> {
        match self {
            Representation::Wavelet { levels, .. } => wavelet::check_levels(len, *levels),
            _ if len == 0 => Err(DspError::param("len", 0, "at least 1")),
            _ => Ok(()),
        }
    }

    /// Appends the representation of `window` (`channels × len`, channel-major) to `out`:
    /// `2·channels·len` values in row-major `[2·channels, len]` order.
    ///
    /// Appending lets a caller build a batch `[N, 2·channels, len]` in one buffer; reserve its
    /// capacity once and nothing allocates per window.
    pub fn write(
        &self,
        window: &[C32],
        channels: usize,
        ws: &mut ReprWorkspace,
        out: &mut Vec<f32>,
    ) -> Result<(), DspError> {
        let len = per_channel("window", window.len(), channels)?;
        self.check_len(len)?;
        let start = out.len();
        out.resize(start + 2 * window.len(), 0.0);
        let dst = &mut out[start..];
        for (x, rows) in window.chunks_exact(len).zip(dst.chunks_exact_mut(2 * len)) {
            let (r0, r1) = rows.split_at_mut(len);
            self.write_channel(x, r0, r1, ws)?;
        }
        Ok(())
    }

    fn write_channel(
        &self,
        x: &[C32],
        r0: &mut [f32],
        r1: &mut [f32],
        ws: &mut ReprWorkspace,
    ) -> Result<(), DspError> {
        match *self {
            Representation::Iq => {
                for ((v, a), b) in x.iter().zip(r0.iter_mut()).zip(r1.iter_mut()) {
                    *a = v.re;
                    *b = v.im;
                }
            }
            Representation::AmpPhase => {
                for ((v, a), b) in x.iter().zip(r0.iter_mut()).zip(r1.iter_mut()) {
                    *a = v.norm();
                    *b = v.im.atan2(v.re);
                }
            }
            Representation::InstFreq => {
                for (v, a) in x.iter().zip(r0.iter_mut()) {
                    *a = v.norm();
                }
                inst_freq(x, r1);
            }
            Representation::Fft | Representation::FftLogMag => {
                let len = x.len();
                let fft = ws.fft(len);
                let scale = 1.0 / (len as f32).sqrt();
                ws.buf.clear();
                ws.buf.extend(x.iter().map(|v| v * scale));
                fft.process_with_scratch(&mut ws.buf, &mut ws.scratch);
                fftshift(&mut ws.buf);
                let log = matches!(self, Representation::FftLogMag);
                for ((v, a), b) in ws.buf.iter().zip(r0.iter_mut()).zip(r1.iter_mut()) {
                    if log {
                        *a = 10.0 * (v.norm_sqr() + 1e-10).log10();
                        *b = v.im.atan2(v.re);
                    } else {
                        *a = v.re;
                        *b = v.im;
                    }
                }
            }
            Representation::Wavelet { wavelet, levels } => {
                for (part, row) in [(0, r0), (1, r1)] {
                    ws.real.clear();
                    ws.real
                        .extend(x.iter().map(|v| if part == 0 { v.re } else { v.im }));
                    wavelet::dwt(&mut ws.real, wavelet, levels, &mut ws.wscratch)?;
                    row.copy_from_slice(&ws.real);
                }
            }
        }
        Ok(())
    }
}

/// Instantaneous frequency of `x` in cycles/sample into `out` (same length; definition in the
/// module doc).
pub fn inst_freq(x: &[C32], out: &mut [f32]) {
    let inv = 1.0 / (2.0 * std::f32::consts::PI);
    for n in 1..x.len().min(out.len()) {
        let p = x[n] * x[n - 1].conj();
        out[n] = p.im.atan2(p.re) * inv;
    }
    if let Some(first) = out.first_mut() {
        *first = 0.0;
    }
    if out.len() > 1 && x.len() > 1 {
        out[0] = out[1];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_names() {
        let s = serde_json::to_string(&Representation::AmpPhase).expect("serialise");
        assert_eq!(s, "\"amp_phase\"");
        let w: Representation =
            serde_json::from_str(r#"{"wavelet":{"wavelet":"db4","levels":3}}"#).expect("parse");
        assert_eq!(
            w,
            Representation::Wavelet {
                wavelet: WaveletKind::Db4,
                levels: 3
            }
        );
    }

    #[test]
    fn inst_freq_of_a_tone() {
        let f0 = 0.1f32;
        let x: Vec<C32> = (0..32)
            .map(|n| C32::from_polar(1.0, 2.0 * std::f32::consts::PI * f0 * n as f32))
            .collect();
        let mut out = vec![0.0; 32];
        inst_freq(&x, &mut out);
        assert!(out.iter().all(|f| (f - f0).abs() < 1e-5), "{out:?}");
    }
}
