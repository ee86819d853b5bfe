//! Per-window amplitude normalisation, applied in place across all channels of a window jointly
//! (one scale factor per window, so inter-channel amplitude and phase relations survive).
//!
//! | variant    | divides the window by                          | afterwards                          |
//! |------------|------------------------------------------------|-------------------------------------|
//! | `none`     | nothing                                        | unchanged                           |
//! | `unit_rms` | `sqrt(Σ|x|² / n)`                              | mean power `Σ|x|²/n = 1`            |
//! | `l1`       | `Σ|x|` (sum of magnitudes)                     | `Σ|x| = 1` (so `|x| ≈ 1/n`)         |
//! | `peak`     | `max|x|`                                       | largest magnitude is 1              |
//!
//! Sums run over all `n = channels × len` complex samples of the window; `|x|` is the complex
//! magnitude. `l1` is what RadioML 2016.10a/b did: the generator (`generate_RML2016.10a.py`)
//! divides each 128-sample vector by `np.sum(np.abs(v))` — the comment there says "energy",
//! but the code computes the L1 norm of the complex magnitudes, and that is what the published
//! data carries. A window whose scale is 0 or not finite (all zeros, or containing NaN/∞) is
//! left unchanged, so zeros stay zeros and never become NaN.

use serde::{Deserialize, Serialize};

use crate::iq::C32;

/// How a window's amplitude is normalised before it becomes model input (see the module table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalization {
    /// Leave the window as it is.
    #[default]
    None,
    /// Scale to unit mean power (unit RMS magnitude).
    UnitRms,
    /// Scale so the magnitudes sum to 1 (RadioML 2016).
    L1,
    /// Scale so the largest magnitude is 1.
    Peak,
}

impl Normalization {
    /// The name used in configs and model cards (`none`, `unit_rms`, `l1`, `peak`).
    pub fn name(self) -> &'static str {
        match self {
            Normalization::None => "none",
            Normalization::UnitRms => "unit_rms",
            Normalization::L1 => "l1",
            Normalization::Peak => "peak",
        }
    }

    /// The divisor this normalisation would use for `window` (1 for `none`, and 1 whenever the
    /// statistic is 0 or not finite).
    pub fn divisor(self, window: &[C32]) -> f32 {
        let d = match self {
            Normalization::None => return 1.0,
            Normalization::UnitRms => {
                if window.is_empty() {
                    return 1.0;
                }
                (sum_sq(window) / window.len() as f64).sqrt()
            }
            Normalization::L1 => window.iter().map(|x| f64::from(x.norm())).sum(),
            Normalization::Peak => f64::from(
                window
                    .iter()
                    .map(|x| x.norm_sqr())
                    .fold(0.0, f32::max)
                    .sqrt(),
            ),
        };
        if d.is_finite() && d > 0.0 && (d as f32) > 0.0 {
            d as f32
        } else {
            1.0
        }
    }

    /// Normalises `window` in place and returns the divisor applied (1 when unchanged).
    pub fn apply(self, window: &mut [C32]) -> f32 {
        let d = self.divisor(window);
        if d != 1.0 {
            let inv = 1.0 / d;
            for x in window.iter_mut() {
                *x *= inv;
            }
        }
        d
    }
}

/// `Σ|x|²` accumulated in f64 (four lanes, so it vectorises).
pub(crate) fn sum_sq(x: &[C32]) -> f64 {
    let mut acc = [0.0f64; 4];
    let chunks = x.chunks_exact(4);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += f64::from(v.re * v.re + v.im * v.im);
        }
    }
    let tail: f64 = rest.iter().map(|v| f64::from(v.norm_sqr())).sum();
    acc.iter().sum::<f64>() + tail
}

/// Mean power `Σ|x|²/n` of a window (0 for an empty one).
pub fn mean_power(x: &[C32]) -> f64 {
    if x.is_empty() {
        0.0
    } else {
        sum_sq(x) / x.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp() -> Vec<C32> {
        (0..64)
            .map(|k| C32::new(k as f32 * 0.1 - 2.0, 1.0 - k as f32 * 0.03))
            .collect()
    }

    #[test]
    fn unit_rms_gives_unit_mean_power() {
        let mut w = ramp();
        Normalization::UnitRms.apply(&mut w);
        assert!((mean_power(&w) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn l1_gives_unit_magnitude_sum() {
        let mut w = ramp();
        Normalization::L1.apply(&mut w);
        let s: f32 = w.iter().map(|x| x.norm()).sum();
        assert!((s - 1.0).abs() < 1e-5, "{s}");
    }

    #[test]
    fn peak_gives_unit_peak() {
        let mut w = ramp();
        Normalization::Peak.apply(&mut w);
        let m = w.iter().map(|x| x.norm()).fold(0.0, f32::max);
        assert!((m - 1.0).abs() < 1e-6, "{m}");
    }

    #[test]
    fn zeros_stay_zeros() {
        for n in [
            Normalization::None,
            Normalization::UnitRms,
            Normalization::L1,
            Normalization::Peak,
        ] {
            let mut w = vec![C32::new(0.0, 0.0); 16];
            assert_eq!(n.apply(&mut w), 1.0);
            assert!(w.iter().all(|x| *x == C32::new(0.0, 0.0)), "{n:?}");
            let mut e: Vec<C32> = Vec::new();
            n.apply(&mut e);
        }
    }

    #[test]
    fn serde_names_are_snake_case() {
        for n in [
            Normalization::None,
            Normalization::UnitRms,
            Normalization::L1,
            Normalization::Peak,
        ] {
            let s = serde_json::to_string(&n).expect("serialise");
            assert_eq!(s, format!("\"{}\"", n.name()));
            let back: Normalization = serde_json::from_str(&s).expect("parse");
            assert_eq!(back, n);
        }
    }
}
