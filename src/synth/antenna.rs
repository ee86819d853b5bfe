//! A source seen by an antenna array: the narrowband array signal `x_c[n] = a_c(φ, θ)·s[n]` through
//! the steering vector of [`ArrayGeometry`] (conventions in [`crate::dsp::array`]), with optional
//! per-element gain/phase errors and coherent multipath.
//!
//! # Choices
//! - **Angles**: azimuth and elevation uniform in −70°..70° (the MoCo testbed's servo range). A
//!   uniform linear array cannot tell elevation from azimuth, so with a ULA the elevation is
//!   drawn as 0 and recorded as 0.
//! - **Element errors** (option): each element's complex gain is `10^(g/20)·e^{jp}` with
//!   `g ~ N(0, 0.5 dB)` and `p ~ N(0, 5°)`, drawn **per window** — a model trained on the data
//!   is then robust to any calibration state rather than fitted to one array.
//! - **Coherent multipath** (option): 1 or 2 extra copies of the source (equally likely), each
//!   from its own direction (azimuth and elevation uniform in the same ranges; elevation 0 for a
//!   ULA), delayed by a fractional delay uniform in 0.1..1.5 samples (8-tap windowed sinc), with
//!   power uniform in −15..−6 dB relative to the direct path and a uniform random phase.
//!
//! The output is channel-major: `[channels, len]`, sample `n` of element `c` at `c·len + n`.

use num_complex::Complex64;
use rand::Rng;
use rand_distr::StandardNormal;
use serde::Serialize;

use super::channel::{INTERP_TAPS, interp_taps};
use super::{SynthError, SynthRng};
use crate::dsp::array::ArrayGeometry;
use crate::iq::C32;

/// Per-element complex gain errors, drawn per window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ElementErrors {
    /// Standard deviation of each element's gain error, dB.
    pub gain_std_db: f64,
    /// Standard deviation of each element's phase error, degrees.
    pub phase_std_deg: f64,
}

impl Default for ElementErrors {
    fn default() -> Self {
        Self {
            gain_std_db: 0.5,
            phase_std_deg: 5.0,
        }
    }
}

/// Coherent multipath: delayed copies of the source from other directions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Multipath {
    /// Extra copies per window, drawn uniformly in `1..=max_copies`.
    pub max_copies: usize,
    /// Power of each copy relative to the direct path, uniform in this range (dB).
    pub power_db: (f64, f64),
    /// Delay of each copy, uniform in this range (samples).
    pub delay_samples: (f64, f64),
}

impl Default for Multipath {
    fn default() -> Self {
        Self {
            max_copies: 2,
            power_db: (-15.0, -6.0),
            delay_samples: (0.1, 1.5),
        }
    }
}

/// An array and how sources are placed around it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArrayConfig {
    pub geometry: ArrayGeometry,
    /// Azimuth range of the source, degrees.
    pub azimuth_deg: (f64, f64),
    /// Elevation range of the source, degrees (ignored for a ULA: elevation is 0).
    pub elevation_deg: (f64, f64),
    pub element_errors: Option<ElementErrors>,
    pub multipath: Option<Multipath>,
}

impl ArrayConfig {
    /// The MoCo testbed's placement: azimuth and elevation uniform in −70°..70°.
    pub fn new(geometry: ArrayGeometry) -> Self {
        Self {
            geometry,
            azimuth_deg: (-70.0, 70.0),
            elevation_deg: (-70.0, 70.0),
            element_errors: None,
            multipath: None,
        }
    }
}

/// Where a window's source was.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    pub azimuth_deg: f64,
    pub elevation_deg: f64,
}

/// A validated array configuration, ready to render windows.
#[derive(Debug, Clone)]
pub struct ArraySource {
    config: ArrayConfig,
    /// Source samples before the direct path's first sample (history for the delayed copies).
    lead: usize,
}

impl ArraySource {
    /// Validates `config`; the error names the parameter at fault.
    pub fn new(config: ArrayConfig) -> Result<Self, SynthError> {
        let g = &config.geometry;
        if g.len() < 2 || g.len() > 64 {
            return Err(SynthError::Param {
                name: "array",
                problem: format!("has {} element(s); an array needs 2 to 64", g.len()),
            });
        }
        if g.positions_wavelengths
            .iter()
            .flatten()
            .any(|v| !v.is_finite())
        {
            return Err(SynthError::Param {
                name: "array.positions_wavelengths",
                problem: "contains a value that is not finite".into(),
            });
        }
        let range = |name: &'static str, (lo, hi): (f64, f64)| {
            if lo.is_finite() && hi.is_finite() && -90.0 <= lo && lo <= hi && hi <= 90.0 {
                Ok(())
            } else {
                Err(SynthError::Param {
                    name,
                    problem: format!("is {lo}..{hi}; expected a range within −90..90 degrees"),
                })
            }
        };
        range("azimuth_deg", config.azimuth_deg)?;
        range("elevation_deg", config.elevation_deg)?;
        if let Some(e) = &config.element_errors
            && !(e.gain_std_db.is_finite()
                && (0.0..=6.0).contains(&e.gain_std_db)
                && e.phase_std_deg.is_finite()
                && (0.0..=90.0).contains(&e.phase_std_deg))
        {
            return Err(SynthError::Param {
                name: "element_errors",
                problem: format!(
                    "is {} dB, {}°; expected gain σ 0..6 dB and phase σ 0..90°",
                    e.gain_std_db, e.phase_std_deg
                ),
            });
        }
        let mut lead = 0;
        if let Some(m) = &config.multipath {
            if !(1..=8).contains(&m.max_copies) {
                return Err(SynthError::Param {
                    name: "multipath.max_copies",
                    problem: format!("is {}; expected 1 to 8", m.max_copies),
                });
            }
            let (lo, hi) = m.power_db;
            if !(lo.is_finite() && hi.is_finite() && lo <= hi && hi <= 0.0) {
                return Err(SynthError::Param {
                    name: "multipath.power_db",
                    problem: format!("is {lo}..{hi}; expected min ≤ max ≤ 0 dB"),
                });
            }
            let (lo, hi) = m.delay_samples;
            if !(lo.is_finite() && hi.is_finite() && 0.0 <= lo && lo <= hi && hi <= 16.0) {
                return Err(SynthError::Param {
                    name: "multipath.delay_samples",
                    problem: format!("is {lo}..{hi}; expected 0 ≤ min ≤ max ≤ 16 samples"),
                });
            }
            lead = hi.ceil() as usize + INTERP_TAPS / 2;
        }
        Ok(Self { config, lead })
    }

    /// The configuration this source was built from.
    pub fn config(&self) -> &ArrayConfig {
        &self.config
    }

    /// Number of output channels (array elements).
    pub fn channels(&self) -> usize {
        self.config.geometry.len()
    }

    /// How many source samples [`render`](Self::render) needs for `len` output samples.
    pub fn input_len(&self, len: usize) -> usize {
        if self.lead > 0 {
            len + self.lead + INTERP_TAPS / 2
        } else {
            len
        }
    }

    /// Draws a source direction: uniform in the configured ranges, elevation 0 for a ULA.
    pub fn draw_placement(&self, rng: &mut SynthRng) -> Placement {
        let azimuth_deg = uniform(rng, self.config.azimuth_deg);
        let elevation_deg = if self.config.geometry.resolves_elevation() {
            uniform(rng, self.config.elevation_deg)
        } else {
            0.0
        };
        Placement {
            azimuth_deg,
            elevation_deg,
        }
    }

    /// The array signal `[channels, len]` of `source` (at least [`input_len(len)`](Self::input_len)
    /// samples) arriving from `placement`, with the configured element errors and multipath.
    ///
    /// # Panics
    /// If `source` is shorter than `input_len(len)`.
    pub fn render(
        &self,
        rng: &mut SynthRng,
        source: &[C32],
        len: usize,
        placement: Placement,
    ) -> Vec<C32> {
        assert!(
            source.len() >= self.input_len(len),
            "array source has {} samples; {} needed for {len} output samples",
            source.len(),
            self.input_len(len)
        );
        let geometry = &self.config.geometry;
        let channels = geometry.len();
        let direct = geometry.steering(placement.azimuth_deg, placement.elevation_deg);
        let errors: Vec<Complex64> = match &self.config.element_errors {
            Some(e) => (0..channels)
                .map(|_| {
                    let g: f64 = rng.sample(StandardNormal);
                    let p: f64 = rng.sample(StandardNormal);
                    Complex64::from_polar(
                        10f64.powf(e.gain_std_db * g / 20.0),
                        (e.phase_std_deg * p).to_radians(),
                    )
                })
                .collect(),
            None => vec![Complex64::new(1.0, 0.0); channels],
        };
        let mut out = vec![C32::new(0.0, 0.0); channels * len];
        let src = &source[self.lead..self.lead + len];
        for (c, ch) in out.chunks_exact_mut(len).enumerate() {
            let w = direct[c] * errors[c];
            let w = C32::new(w.re as f32, w.im as f32);
            for (o, s) in ch.iter_mut().zip(src) {
                *o = w * s;
            }
        }
        if let Some(m) = &self.config.multipath {
            let copies = rng.random_range(1..=m.max_copies);
            let mut delayed = vec![C32::new(0.0, 0.0); len];
            for _ in 0..copies {
                let p = self.draw_placement(rng);
                let power_db = uniform(rng, m.power_db);
                let delay = uniform(rng, m.delay_samples);
                let phase = rng.random_range(0.0..2.0 * std::f64::consts::PI);
                delay_into(source, self.lead, delay, &mut delayed);
                let rho = Complex64::from_polar(10f64.powf(power_db / 20.0), phase);
                let steer = geometry.steering(p.azimuth_deg, p.elevation_deg);
                for (c, ch) in out.chunks_exact_mut(len).enumerate() {
                    let w = rho * steer[c] * errors[c];
                    let w = C32::new(w.re as f32, w.im as f32);
                    for (o, s) in ch.iter_mut().zip(&delayed) {
                        *o += w * s;
                    }
                }
            }
        }
        out
    }

    /// The array configuration as JSON for the manifest, with the conventions spelled out.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "geometry": self.config.geometry,
            "channels": self.channels(),
            "azimuth_deg": self.config.azimuth_deg,
            "elevation_deg": if self.config.geometry.resolves_elevation() {
                serde_json::json!(self.config.elevation_deg)
            } else {
                serde_json::json!("always 0: a uniform linear array cannot resolve elevation")
            },
            "element_errors": self.config.element_errors.map(|e| serde_json::json!({
                "gain_std_db": e.gain_std_db,
                "phase_std_deg": e.phase_std_deg,
                "drawn": "per window, per element",
            })),
            "multipath": self.config.multipath,
            "model": "narrowband: element c sees a_c(az, el)·s[n], a_c = exp(+j·2π·p_c·u)",
            "conventions": "positions in wavelengths; planar arrays in the y–z plane facing +x; ULA along y; azimuth from +x towards +y, elevation above the x–y plane; u = (cos el cos az, cos el sin az, sin el)",
            "layout": "channel-major [channels, samples]",
        })
    }
}

fn uniform(rng: &mut SynthRng, (lo, hi): (f64, f64)) -> f64 {
    if hi > lo {
        rng.random_range(lo..=hi)
    } else {
        lo
    }
}

/// Writes `source` delayed by `delay` samples relative to position `lead` into `out`: `out[n]` is
/// the source at position `lead + n − delay`.
fn delay_into(source: &[C32], lead: usize, delay: f64, out: &mut [C32]) {
    let whole = delay.floor();
    let frac = delay - whole;
    // taps at k read position start + k with centre start + 3 + mu
    let (mu, back) = if frac == 0.0 {
        (0.0, whole as usize)
    } else {
        (1.0 - frac, whole as usize + 1)
    };
    let taps = interp_taps(mu);
    let start = lead - back - (INTERP_TAPS / 2 - 1);
    for (n, o) in out.iter_mut().enumerate() {
        let x = &source[start + n..start + n + INTERP_TAPS];
        let (mut re, mut im) = (0.0f32, 0.0f32);
        for k in 0..INTERP_TAPS {
            re += taps[k] * x[k].re;
            im += taps[k] * x[k].im;
        }
        *o = C32::new(re, im);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn delayed_copy_is_where_it_should_be() {
        // A slow tone (0.02 cycles/sample) delayed by 1.3 samples matches the analytic tone
        // within 1e-3.
        let f = 0.02;
        let tone = |t: f64| {
            let p = 2.0 * std::f64::consts::PI * f * t;
            C32::new(p.cos() as f32, p.sin() as f32)
        };
        let source: Vec<C32> = (0..64).map(|n| tone(n as f64)).collect();
        let mut out = vec![C32::new(0.0, 0.0); 16];
        delay_into(&source, 10, 1.3, &mut out);
        for (n, o) in out.iter().enumerate() {
            assert!((o - tone(10.0 + n as f64 - 1.3)).norm() < 1e-3);
        }
        delay_into(&source, 10, 2.0, &mut out);
        assert!((out[0] - source[8]).norm() < 1e-6);
    }

    #[test]
    fn ula_elevation_is_zero() {
        let g = ArrayGeometry::from_kind("ula", 4, 0.5).unwrap();
        let a = ArraySource::new(ArrayConfig::new(g)).unwrap();
        let mut rng = SynthRng::seed_from_u64(3);
        for _ in 0..20 {
            let p = a.draw_placement(&mut rng);
            assert_eq!(p.elevation_deg, 0.0);
            assert!(p.azimuth_deg.abs() <= 70.0);
        }
    }
}
