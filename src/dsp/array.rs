//! Antenna array geometry and the array manifold (steering vectors), shared by the generator
//! (which places sources) and by direction finding (which searches the manifold).
//!
//! # Conventions
//! Element positions are in wavelengths. Planar arrays lie in the y–z plane and face +x, so a
//! source anywhere in front of the array (azimuth and elevation each in −90°..90°) is seen
//! without ambiguity; a uniform linear array lies along y and only measures the cone angle
//! (`cos(el)·sin(az)`), so it cannot tell azimuth from elevation.
//!
//! A source at azimuth φ (in the horizontal x–y plane, from +x towards +y) and elevation θ
//! (above the horizontal plane) lies in direction `u = (cos θ cos φ, cos θ sin φ, sin θ)`, and the
//! element at `p` sees it with phase `exp(+j·2π·p·u)` relative to the origin.

use num_complex::Complex64;
use serde::{Deserialize, Serialize};

/// The shape family of an array, with its defining parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ArrayLayout {
    /// Uniform linear array along y: `elements` spaced `spacing_wavelengths` apart.
    Ula {
        elements: usize,
        spacing_wavelengths: f64,
    },
    /// Uniform rectangular array in the y–z plane: `rows` along z, `cols` along y.
    Ura {
        rows: usize,
        cols: usize,
        spacing_wavelengths: f64,
    },
    /// Uniform circular array in the y–z plane; neighbours `spacing_wavelengths` apart.
    Uca {
        elements: usize,
        spacing_wavelengths: f64,
    },
}

/// An array: its layout and the element positions it implies (wavelengths, centred on 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArrayGeometry {
    pub layout: ArrayLayout,
    pub positions_wavelengths: Vec<[f64; 3]>,
}

/// Why an array description was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ArrayError {
    #[error("array geometry '{0}' is not known; expected one of ula, ura, uca")]
    UnknownKind(String),
    #[error("array parameter '{name}' {problem}")]
    Param { name: &'static str, problem: String },
}

impl ArrayGeometry {
    /// Builds an array from its layout, checking its parameters.
    pub fn new(layout: ArrayLayout) -> Result<Self, ArrayError> {
        let check_spacing = |d: f64| {
            if d.is_finite() && d > 0.0 && d <= 10.0 {
                Ok(())
            } else {
                Err(ArrayError::Param {
                    name: "spacing_wavelengths",
                    problem: format!("is {d}; expected a spacing in (0, 10] wavelengths"),
                })
            }
        };
        let positions = match &layout {
            ArrayLayout::Ula {
                elements,
                spacing_wavelengths: d,
            } => {
                check_spacing(*d)?;
                check_count("elements", *elements, 2)?;
                let c = (*elements as f64 - 1.0) / 2.0;
                (0..*elements)
                    .map(|k| [0.0, (k as f64 - c) * d, 0.0])
                    .collect()
            }
            ArrayLayout::Ura {
                rows,
                cols,
                spacing_wavelengths: d,
            } => {
                check_spacing(*d)?;
                check_count("rows", *rows, 1)?;
                check_count("cols", *cols, 1)?;
                if rows * cols < 2 {
                    return Err(ArrayError::Param {
                        name: "rows × cols",
                        problem: "is 1; an array needs at least 2 elements".into(),
                    });
                }
                let (cr, cc) = ((*rows as f64 - 1.0) / 2.0, (*cols as f64 - 1.0) / 2.0);
                let mut p = Vec::with_capacity(rows * cols);
                for r in 0..*rows {
                    for c in 0..*cols {
                        p.push([0.0, (c as f64 - cc) * d, (r as f64 - cr) * d]);
                    }
                }
                p
            }
            ArrayLayout::Uca {
                elements,
                spacing_wavelengths: d,
            } => {
                check_spacing(*d)?;
                check_count("elements", *elements, 3)?;
                let n = *elements as f64;
                let radius = d / (2.0 * (std::f64::consts::PI / n).sin());
                (0..*elements)
                    .map(|k| {
                        let a = 2.0 * std::f64::consts::PI * k as f64 / n;
                        [0.0, radius * a.cos(), radius * a.sin()]
                    })
                    .collect()
            }
        };
        Ok(Self {
            layout,
            positions_wavelengths: positions,
        })
    }

    /// Parses the command-line form `ula`, `ura` or `uca` with `elements` and spacing; a `ura`
    /// is made as square as the element count allows (4 → 2×2).
    pub fn from_kind(
        kind: &str,
        elements: usize,
        spacing_wavelengths: f64,
    ) -> Result<Self, ArrayError> {
        let layout = match kind {
            "ula" => ArrayLayout::Ula {
                elements,
                spacing_wavelengths,
            },
            "ura" => {
                let rows = (1..=elements)
                    .filter(|r| elements.is_multiple_of(*r) && r * r <= elements)
                    .max()
                    .unwrap_or(1);
                ArrayLayout::Ura {
                    rows,
                    cols: elements / rows,
                    spacing_wavelengths,
                }
            }
            "uca" => ArrayLayout::Uca {
                elements,
                spacing_wavelengths,
            },
            other => return Err(ArrayError::UnknownKind(other.to_string())),
        };
        Self::new(layout)
    }

    /// The default 4-element array of the aoa4 recipe: a 2×2 URA at half-wavelength spacing.
    pub fn default_aoa4() -> Self {
        Self::new(ArrayLayout::Ura {
            rows: 2,
            cols: 2,
            spacing_wavelengths: 0.5,
        })
        .expect("the default array is valid")
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.positions_wavelengths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.positions_wavelengths.is_empty()
    }

    /// Whether the array can measure elevation separately from azimuth (planar arrays can).
    pub fn resolves_elevation(&self) -> bool {
        !matches!(self.layout, ArrayLayout::Ula { .. })
    }

    /// The steering vector for a source at (`azimuth_deg`, `elevation_deg`).
    pub fn steering(&self, azimuth_deg: f64, elevation_deg: f64) -> Vec<Complex64> {
        let u = direction(azimuth_deg, elevation_deg);
        self.positions_wavelengths
            .iter()
            .map(|p| {
                let phase = 2.0 * std::f64::consts::PI * (p[0] * u[0] + p[1] * u[1] + p[2] * u[2]);
                Complex64::from_polar(1.0, phase)
            })
            .collect()
    }
}

fn check_count(name: &'static str, n: usize, min: usize) -> Result<(), ArrayError> {
    if (min..=64).contains(&n) {
        Ok(())
    } else {
        Err(ArrayError::Param {
            name,
            problem: format!("is {n}; expected {min} to 64"),
        })
    }
}

/// Unit direction vector for azimuth/elevation in degrees (see the module conventions).
pub fn direction(azimuth_deg: f64, elevation_deg: f64) -> [f64; 3] {
    let (az, el) = (azimuth_deg.to_radians(), elevation_deg.to_radians());
    [el.cos() * az.cos(), el.cos() * az.sin(), el.sin()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadside_steering_is_all_ones() {
        let a = ArrayGeometry::default_aoa4().steering(0.0, 0.0);
        for s in a {
            assert!((s - Complex64::new(1.0, 0.0)).norm() < 1e-12);
        }
    }

    #[test]
    fn ura_is_squarest_factorisation() {
        let g = ArrayGeometry::from_kind("ura", 6, 0.5).unwrap();
        assert_eq!(
            g.layout,
            ArrayLayout::Ura {
                rows: 2,
                cols: 3,
                spacing_wavelengths: 0.5
            }
        );
    }

    #[test]
    fn uca_neighbour_spacing_matches() {
        let g = ArrayGeometry::from_kind("uca", 4, 0.5).unwrap();
        let (a, b) = (g.positions_wavelengths[0], g.positions_wavelengths[1]);
        let d = ((a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt();
        assert!((d - 0.5).abs() < 1e-12);
    }

    #[test]
    fn bad_parameters_are_named() {
        let e = ArrayGeometry::from_kind("ula", 1, 0.5).unwrap_err();
        assert!(e.to_string().contains("'elements'"), "{e}");
        let e = ArrayGeometry::from_kind("spiral", 4, 0.5).unwrap_err();
        assert!(e.to_string().contains("spiral"), "{e}");
    }
}
