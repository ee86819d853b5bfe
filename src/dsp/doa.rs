//! Classical direction finding over an array manifold: the sample covariance of a snapshot
//! block, Bartlett and MUSIC pseudo-spectra on an azimuth/elevation grid, peak search with
//! local refinement, and the Cramér–Rao bound for one source.
//!
//! Angles are in degrees with the conventions of [`crate::dsp::array`] (planar arrays face +x;
//! a ULA measures only the cone angle, so it is searched in azimuth at elevation 0).
//!
//! # Pseudo-spectra
//! With sample covariance `R = X·Xᴴ/N` of the `[C, N]` snapshot block `X` and steering vector
//! `a(φ, θ)` from [`ArrayGeometry::steering`]:
//! * Bartlett (beamformer power): `P(φ, θ) = aᴴ·R·a / (aᴴ·a)`.
//! * MUSIC: `P(φ, θ) = aᴴ·a / ‖E_nᴴ·a‖²`, where `E_n` holds the `C − d` eigenvectors of `R` with
//!   the smallest eigenvalues (`d` sources).
//!
//! # Peak search
//! The spectrum is evaluated on the grid; the `d` highest local maxima are then refined by
//! successive zooming (11 × 11 points spanning ± the previous step, step shrinking 5× per
//! round) until the step is below 10⁻⁴°, so estimates are not grid-limited.
//!
//! # Cramér–Rao bound
//! [`crb_single_source`] is the stochastic (unconditional) CRB of Stoica & Nehorai (1990) for one
//! complex-Gaussian source of per-element SNR `ρ = p/σ²`, `M` elements and `N` snapshots:
//! `FIM = 2N·ρ²M/(1 + ρM) · Re(Dᴴ·P⊥·D)`, with `D = [∂a/∂φ, ∂a/∂θ]` (radians) and
//! `P⊥ = I − a·aᴴ/M`; `CRB = FIM⁻¹`, reported in degrees². For a ULA only `φ` (at θ = 0) is
//! estimated and `D = ∂a/∂φ`.

use num_complex::Complex64;
use serde::{Deserialize, Serialize};

use crate::dsp::DspError;
use crate::dsp::array::ArrayGeometry;
use crate::dsp::error::{nonzero, per_channel};
use crate::dsp::linalg::{CMatrix, hermitian_eigen};
use crate::iq::C32;

/// Sample covariance `R = X·Xᴴ/N` of a channel-major `[channels, N]` snapshot block; needs at
/// least as many snapshots as channels (otherwise `R` is singular).
pub fn sample_covariance(snapshots: &[C32], channels: usize) -> Result<CMatrix, DspError> {
    let n = per_channel("snapshots", snapshots.len(), channels)?;
    if n < channels {
        return Err(DspError::param(
            "snapshots",
            format!("{n} per channel"),
            format!("at least as many snapshots as channels ({channels})"),
        ));
    }
    let mut r = CMatrix::zeros(channels);
    for i in 0..channels {
        let xi = &snapshots[i * n..(i + 1) * n];
        for j in i..channels {
            let xj = &snapshots[j * n..(j + 1) * n];
            let mut acc = Complex64::new(0.0, 0.0);
            for (a, b) in xi.iter().zip(xj) {
                acc += Complex64::new(f64::from(a.re), f64::from(a.im))
                    * Complex64::new(f64::from(b.re), -f64::from(b.im));
            }
            acc /= n as f64;
            r.set(i, j, acc);
            r.set(j, i, acc.conj());
        }
    }
    Ok(r)
}

/// Which pseudo-spectrum to search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DoaMethod {
    /// Conventional (delay-and-sum) beamformer power.
    Bartlett,
    /// MUltiple SIgnal Classification (noise-subspace projection).
    #[default]
    Music,
}

/// The search grid in degrees (inclusive ranges).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DoaGrid {
    /// Azimuth range start.
    pub az_min_deg: f64,
    /// Azimuth range end.
    pub az_max_deg: f64,
    /// Elevation range start (ignored for a ULA, which searches elevation 0 only).
    pub el_min_deg: f64,
    /// Elevation range end.
    pub el_max_deg: f64,
    /// Grid step for both axes.
    pub step_deg: f64,
}

impl Default for DoaGrid {
    /// The whole front half-space at 1° steps.
    fn default() -> Self {
        Self {
            az_min_deg: -90.0,
            az_max_deg: 90.0,
            el_min_deg: -90.0,
            el_max_deg: 90.0,
            step_deg: 1.0,
        }
    }
}

/// One direction estimate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DoaEstimate {
    /// Azimuth in degrees.
    pub azimuth_deg: f64,
    /// Elevation in degrees (0 for a ULA).
    pub elevation_deg: f64,
    /// Pseudo-spectrum value at the refined peak.
    pub value: f64,
}

/// A direction finder for one array and grid, with the grid's steering vectors cached.
#[derive(Debug, Clone)]
pub struct DoaEstimator {
    geometry: ArrayGeometry,
    grid: DoaGrid,
    azimuths: Vec<f64>,
    elevations: Vec<f64>,
    /// `[elevations, azimuths, elements]` steering vectors.
    manifold: Vec<Complex64>,
}

fn axis(name: &'static str, min: f64, max: f64, step: f64) -> Result<Vec<f64>, DspError> {
    if !(min.is_finite() && max.is_finite() && min <= max && min >= -90.0 && max <= 90.0) {
        return Err(DspError::param(
            name,
            format!("{min}..{max}"),
            "a range within −90..90 degrees",
        ));
    }
    let n = ((max - min) / step + 1e-9).floor() as usize + 1;
    Ok((0..n).map(|i| min + i as f64 * step).collect())
}

impl DoaEstimator {
    /// Caches the manifold of `geometry` on `grid`.
    pub fn new(geometry: ArrayGeometry, grid: DoaGrid) -> Result<Self, DspError> {
        if !(grid.step_deg.is_finite() && grid.step_deg >= 1e-3 && grid.step_deg <= 30.0) {
            return Err(DspError::param(
                "step_deg",
                grid.step_deg,
                "a grid step in 0.001..=30 degrees",
            ));
        }
        let azimuths = axis(
            "azimuth range",
            grid.az_min_deg,
            grid.az_max_deg,
            grid.step_deg,
        )?;
        let elevations = if geometry.resolves_elevation() {
            axis(
                "elevation range",
                grid.el_min_deg,
                grid.el_max_deg,
                grid.step_deg,
            )?
        } else {
            vec![0.0]
        };
        let mut manifold = Vec::with_capacity(azimuths.len() * elevations.len() * geometry.len());
        for &el in &elevations {
            for &az in &azimuths {
                manifold.extend(geometry.steering(az, el));
            }
        }
        Ok(Self {
            geometry,
            grid,
            azimuths,
            elevations,
            manifold,
        })
    }

    /// The array.
    pub fn geometry(&self) -> &ArrayGeometry {
        &self.geometry
    }

    /// Grid azimuths (degrees).
    pub fn azimuths(&self) -> &[f64] {
        &self.azimuths
    }

    /// Grid elevations (degrees; `[0]` for a ULA).
    pub fn elevations(&self) -> &[f64] {
        &self.elevations
    }

    fn scorer(&self, method: DoaMethod, cov: &CMatrix, sources: usize) -> Result<Scorer, DspError> {
        let m = self.geometry.len();
        if cov.n() != m {
            return Err(DspError::param(
                "cov",
                format!("{0} × {0}", cov.n()),
                format!("{m} × {m}, one row per array element"),
            ));
        }
        nonzero("sources", sources)?;
        match method {
            DoaMethod::Bartlett => Ok(Scorer::Bartlett(cov.clone())),
            DoaMethod::Music => {
                if sources >= m {
                    return Err(DspError::param(
                        "sources",
                        sources,
                        format!("fewer than the {m} array elements for MUSIC"),
                    ));
                }
                let e = hermitian_eigen(cov);
                let noise = (sources..m).map(|k| e.vector(k)).collect();
                Ok(Scorer::Music(noise))
            }
        }
    }

    /// The pseudo-spectrum on the grid, row-major `[elevations, azimuths]`.
    pub fn spectrum(
        &self,
        method: DoaMethod,
        cov: &CMatrix,
        sources: usize,
    ) -> Result<Vec<f64>, DspError> {
        let s = self.scorer(method, cov, sources)?;
        Ok(self
            .manifold
            .chunks_exact(self.geometry.len())
            .map(|a| s.score(a))
            .collect())
    }

    /// Estimates `sources` directions from a covariance (highest spectrum peaks first).
    pub fn estimate(
        &self,
        method: DoaMethod,
        cov: &CMatrix,
        sources: usize,
    ) -> Result<Vec<DoaEstimate>, DspError> {
        let s = self.scorer(method, cov, sources)?;
        let spec: Vec<f64> = self
            .manifold
            .chunks_exact(self.geometry.len())
            .map(|a| s.score(a))
            .collect();
        let (na, ne) = (self.azimuths.len(), self.elevations.len());
        let mut peaks: Vec<(usize, f64)> = Vec::new();
        for e in 0..ne {
            for a in 0..na {
                let v = spec[e * na + a];
                let mut is_max = true;
                'n: for de in -1i64..=1 {
                    for da in -1i64..=1 {
                        let (ee, aa) = (e as i64 + de, a as i64 + da);
                        if (de, da) == (0, 0)
                            || ee < 0
                            || aa < 0
                            || ee >= ne as i64
                            || aa >= na as i64
                        {
                            continue;
                        }
                        let w = spec[ee as usize * na + aa as usize];
                        // Ties go to the earlier grid point so a plateau yields one peak.
                        if w > v || (w == v && (ee as usize * na + (aa as usize)) < e * na + a) {
                            is_max = false;
                            break 'n;
                        }
                    }
                }
                if is_max {
                    peaks.push((e * na + a, v));
                }
            }
        }
        peaks.sort_by(|x, y| y.1.total_cmp(&x.1));
        peaks.truncate(sources);
        let mut out: Vec<DoaEstimate> = peaks
            .into_iter()
            .map(|(i, _)| self.refine(&s, self.azimuths[i % na], self.elevations[i / na]))
            .collect();
        out.sort_by(|x, y| y.value.total_cmp(&x.value));
        Ok(out)
    }

    /// Convenience: covariance of `snapshots` (`[elements, N]`) then [`Self::estimate`].
    pub fn estimate_from_snapshots(
        &self,
        method: DoaMethod,
        snapshots: &[C32],
        sources: usize,
    ) -> Result<Vec<DoaEstimate>, DspError> {
        let cov = sample_covariance(snapshots, self.geometry.len())?;
        self.estimate(method, &cov, sources)
    }

    fn refine(&self, s: &Scorer, az0: f64, el0: f64) -> DoaEstimate {
        let planar = self.elevations.len() > 1;
        let g = &self.grid;
        let (mut az, mut el) = (az0, el0);
        let mut best = s.score(&self.geometry.steering(az, el));
        let mut span = g.step_deg;
        while span > 1e-4 {
            let step = span / 5.0;
            let (caz, cel) = (az, el);
            let el_range = if planar { -5..=5 } else { 0..=0 };
            for i in el_range {
                let e = (cel + f64::from(i) * step).clamp(g.el_min_deg, g.el_max_deg);
                let e = if planar { e } else { 0.0 };
                for k in -5..=5 {
                    let a = (caz + f64::from(k) * step).clamp(g.az_min_deg, g.az_max_deg);
                    let v = s.score(&self.geometry.steering(a, e));
                    if v > best {
                        best = v;
                        az = a;
                        el = e;
                    }
                }
            }
            span = step;
        }
        DoaEstimate {
            azimuth_deg: az,
            elevation_deg: el,
            value: best,
        }
    }
}

enum Scorer {
    Bartlett(CMatrix),
    Music(Vec<Vec<Complex64>>),
}

impl Scorer {
    fn score(&self, a: &[Complex64]) -> f64 {
        let aa: f64 = a.iter().map(|v| v.norm_sqr()).sum();
        match self {
            Scorer::Bartlett(r) => {
                let m = a.len();
                let q: Complex64 = r
                    .as_slice()
                    .chunks_exact(m)
                    .zip(a)
                    .map(|(row, ai)| {
                        ai.conj()
                            * row
                                .iter()
                                .zip(a)
                                .map(|(rij, aj)| rij * aj)
                                .sum::<Complex64>()
                    })
                    .sum();
                q.re / aa
            }
            Scorer::Music(noise) => {
                let proj: f64 = noise
                    .iter()
                    .map(|e| {
                        e.iter()
                            .zip(a)
                            .map(|(x, y)| x.conj() * y)
                            .sum::<Complex64>()
                            .norm_sqr()
                    })
                    .sum();
                aa / proj.max(1e-300)
            }
        }
    }
}

/// The Cramér–Rao bound for one source, in degrees² (formula in the module doc).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Crb {
    /// Variance bound on azimuth, degrees².
    pub azimuth_deg2: f64,
    /// Variance bound on elevation, degrees² (`None` for a ULA).
    pub elevation_deg2: Option<f64>,
}

/// Stochastic CRB for a single source at (`azimuth_deg`, `elevation_deg`) with per-element SNR
/// `snr_db` and `snapshots` snapshots.
pub fn crb_single_source(
    geometry: &ArrayGeometry,
    azimuth_deg: f64,
    elevation_deg: f64,
    snr_db: f64,
    snapshots: usize,
) -> Result<Crb, DspError> {
    nonzero("snapshots", snapshots)?;
    if !snr_db.is_finite() {
        return Err(DspError::param("snr_db", snr_db, "a finite SNR in dB"));
    }
    let planar = geometry.resolves_elevation();
    let el = if planar { elevation_deg } else { 0.0 };
    let a = geometry.steering(azimuth_deg, el);
    let (phi, theta) = (azimuth_deg.to_radians(), el.to_radians());
    let du_daz = [-theta.cos() * phi.sin(), theta.cos() * phi.cos(), 0.0];
    let du_del = [
        -theta.sin() * phi.cos(),
        -theta.sin() * phi.sin(),
        theta.cos(),
    ];
    let tau = 2.0 * std::f64::consts::PI;
    let deriv = |du: [f64; 3]| -> Vec<Complex64> {
        geometry
            .positions_wavelengths
            .iter()
            .zip(&a)
            .map(|(p, ai)| {
                Complex64::new(0.0, tau * (p[0] * du[0] + p[1] * du[1] + p[2] * du[2])) * ai
            })
            .collect()
    };
    let m = a.len() as f64;
    // Re(d_iᴴ P⊥ d_j) = Re(d_iᴴ d_j − (d_iᴴ a)(aᴴ d_j)/M)
    let proj = |di: &[Complex64], dj: &[Complex64]| -> f64 {
        let dot = |x: &[Complex64], y: &[Complex64]| {
            x.iter()
                .zip(y)
                .map(|(u, v)| u.conj() * v)
                .sum::<Complex64>()
        };
        (dot(di, dj) - dot(di, &a) * dot(&a, dj) / m).re
    };
    let rho = 10f64.powf(snr_db / 10.0);
    let k = 2.0 * snapshots as f64 * rho * rho * m / (1.0 + rho * m);
    let to_deg2 = (180.0 / std::f64::consts::PI).powi(2);
    let d_az = deriv(du_daz);
    if !planar {
        let f = k * proj(&d_az, &d_az);
        return Ok(Crb {
            azimuth_deg2: to_deg2 / f,
            elevation_deg2: None,
        });
    }
    let d_el = deriv(du_del);
    let (f11, f12, f22) = (
        k * proj(&d_az, &d_az),
        k * proj(&d_az, &d_el),
        k * proj(&d_el, &d_el),
    );
    let det = f11 * f22 - f12 * f12;
    if !(det.is_finite() && det > 0.0) {
        return Err(DspError::param(
            "direction",
            format!("({azimuth_deg}°, {elevation_deg}°)"),
            "a direction where the array's Fisher information is invertible (not endfire or the pole)",
        ));
    }
    Ok(Crb {
        azimuth_deg2: to_deg2 * f22 / det,
        elevation_deg2: Some(to_deg2 * f11 / det),
    })
}
