//! Multi-level discrete wavelet transform (orthogonal Daubechies family) with periodic
//! extension, and its exact inverse.
//!
//! # Definition
//! With scaling (low-pass) filter `h[0..L]` and wavelet filter `g[n] = (−1)ⁿ·h[L−1−n]`, one level
//! maps a sequence `x` of even length `N` to
//! `a[k] = Σₙ h[n]·x[(2k+n) mod N]` and `d[k] = Σₙ g[n]·x[(2k+n) mod N]`, `k = 0..N/2`.
//! Level `j+1` transforms the approximation `a` of level `j`. Because the filters are orthonormal
//! and the extension periodic, each level is an orthogonal matrix: the transform preserves
//! energy (`Σx² = Σa² + Σd²`) and the inverse is its transpose (perfect reconstruction).
//!
//! # Layout
//! [`dwt`] writes `[a_J | d_J | d_{J−1} | … | d_1]` in place (coarsest first, as
//! `numpy.concatenate(pywt.wavedec(x, w, mode="periodization", level=J))` orders it), so the
//! output has the same length as the input. The length must be divisible by `2^levels`.
//!
//! # Filters
//! `haar` (2 taps), `db2` (4 taps, Daubechies' "D4", two vanishing moments) and `db4` (8 taps,
//! four vanishing moments) — the names follow PyWavelets, where `dbN` has `N` vanishing moments
//! and `2N` taps. Coefficients may differ from PyWavelets' by the filter-reversal convention.

use serde::{Deserialize, Serialize};

use crate::dsp::DspError;

/// Which orthogonal wavelet to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaveletKind {
    /// Haar (Daubechies-1), 2 taps.
    Haar,
    /// Daubechies with 2 vanishing moments, 4 taps ("D4").
    Db2,
    /// Daubechies with 4 vanishing moments, 8 taps.
    #[default]
    Db4,
}

const SQRT2_INV: f64 = std::f64::consts::FRAC_1_SQRT_2;
const HAAR: [f64; 2] = [SQRT2_INV, SQRT2_INV];
// (1 ± √3)/(4√2), (3 ± √3)/(4√2)
const DB2: [f64; 4] = [
    0.482_962_913_144_534_1,
    0.836_516_303_737_807_9,
    0.224_143_868_042_013_4,
    -0.129_409_522_551_260_4,
];
const DB4: [f64; 8] = [
    0.230_377_813_308_896_5,
    0.714_846_570_552_915_4,
    0.630_880_767_929_858_9,
    -0.027_983_769_416_859_9,
    -0.187_034_811_719_093_1,
    0.030_841_381_835_560_8,
    0.032_883_011_666_885_2,
    -0.010_597_401_785_069_0,
];

impl WaveletKind {
    /// The orthonormal scaling filter `h` (sums to √2, unit energy).
    pub fn scaling_filter(self) -> &'static [f64] {
        match self {
            WaveletKind::Haar => &HAAR,
            WaveletKind::Db2 => &DB2,
            WaveletKind::Db4 => &DB4,
        }
    }

    /// The wavelet filter `g[n] = (−1)ⁿ·h[L−1−n]`.
    pub fn wavelet_filter(self) -> Vec<f64> {
        let h = self.scaling_filter();
        let l = h.len();
        (0..l)
            .map(|n| {
                if n % 2 == 0 {
                    h[l - 1 - n]
                } else {
                    -h[l - 1 - n]
                }
            })
            .collect()
    }
}

/// Checks that `len` can be transformed over `levels` levels (divisible by `2^levels`).
pub fn check_levels(len: usize, levels: usize) -> Result<(), DspError> {
    if levels == 0 || levels > 30 {
        return Err(DspError::param("levels", levels, "1 to 30"));
    }
    if len == 0 || !len.is_multiple_of(1usize << levels) {
        return Err(DspError::param(
            "len",
            len,
            format!(
                "a positive multiple of 2^levels = {} for {levels} wavelet levels",
                1usize << levels
            ),
        ));
    }
    Ok(())
}

/// The deepest level count `len` allows (how often it halves evenly).
pub fn max_levels(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        len.trailing_zeros() as usize
    }
}

/// Forward multi-level DWT of `x` in place (layout in the module doc). `scratch` is resized as
/// needed and can be reused between calls.
pub fn dwt(
    x: &mut [f32],
    kind: WaveletKind,
    levels: usize,
    scratch: &mut Vec<f32>,
) -> Result<(), DspError> {
    check_levels(x.len(), levels)?;
    let h = kind.scaling_filter();
    let l = h.len();
    scratch.resize(x.len(), 0.0);
    let mut n = x.len();
    for _ in 0..levels {
        let half = n / 2;
        for k in 0..half {
            let (mut a, mut d) = (0.0f64, 0.0f64);
            for (j, &hj) in h.iter().enumerate() {
                let v = f64::from(x[(2 * k + j) % n]);
                a += hj * v;
                // g[j] = (−1)^j h[L−1−j]
                let gj = if j % 2 == 0 {
                    h[l - 1 - j]
                } else {
                    -h[l - 1 - j]
                };
                d += gj * v;
            }
            scratch[k] = a as f32;
            scratch[half + k] = d as f32;
        }
        x[..n].copy_from_slice(&scratch[..n]);
        n = half;
    }
    Ok(())
}

/// Inverse of [`dwt`], in place: `idwt(dwt(x)) = x` up to f32 rounding.
pub fn idwt(
    c: &mut [f32],
    kind: WaveletKind,
    levels: usize,
    scratch: &mut Vec<f32>,
) -> Result<(), DspError> {
    check_levels(c.len(), levels)?;
    let h = kind.scaling_filter();
    let l = h.len();
    scratch.resize(c.len(), 0.0);
    let mut acc = vec![0.0f64; c.len()];
    let mut n = c.len() >> (levels - 1);
    for _ in 0..levels {
        let half = n / 2;
        acc[..n].iter_mut().for_each(|v| *v = 0.0);
        for k in 0..half {
            let (a, d) = (f64::from(c[k]), f64::from(c[half + k]));
            for (j, &hj) in h.iter().enumerate() {
                let gj = if j % 2 == 0 {
                    h[l - 1 - j]
                } else {
                    -h[l - 1 - j]
                };
                acc[(2 * k + j) % n] += hj * a + gj * d;
            }
        }
        for (dst, v) in scratch[..n].iter_mut().zip(&acc[..n]) {
            *dst = *v as f32;
        }
        c[..n].copy_from_slice(&scratch[..n]);
        n *= 2;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_orthonormal() {
        for kind in [WaveletKind::Haar, WaveletKind::Db2, WaveletKind::Db4] {
            let h = kind.scaling_filter();
            let sum: f64 = h.iter().sum();
            assert!(
                (sum - std::f64::consts::SQRT_2).abs() < 1e-12,
                "{kind:?} sum {sum}"
            );
            for shift in (0..h.len()).step_by(2) {
                let dot: f64 = (0..h.len() - shift).map(|n| h[n] * h[n + shift]).sum();
                let want = if shift == 0 { 1.0 } else { 0.0 };
                assert!((dot - want).abs() < 1e-12, "{kind:?} shift {shift}: {dot}");
            }
        }
    }

    #[test]
    fn haar_one_level_by_hand() {
        let mut x = vec![1.0f32, 3.0, 5.0, 7.0];
        dwt(&mut x, WaveletKind::Haar, 1, &mut Vec::new()).expect("valid");
        let s = std::f32::consts::FRAC_1_SQRT_2;
        let want = [4.0 * s, 12.0 * s, 2.0 * s, 2.0 * s];
        for (a, b) in x.iter().zip(want) {
            assert!((a.abs() - b).abs() < 1e-6, "{x:?}");
        }
    }

    #[test]
    fn bad_lengths_are_named() {
        let e = dwt(&mut [0.0; 12], WaveletKind::Haar, 3, &mut Vec::new()).unwrap_err();
        assert!(e.to_string().contains("'len' is 12"), "{e}");
        let e = dwt(&mut [0.0; 8], WaveletKind::Haar, 0, &mut Vec::new()).unwrap_err();
        assert!(e.to_string().contains("'levels'"), "{e}");
    }
}
