//! Deterministic, parallel generation of a whole dataset folder from a [`Recipe`].
//!
//! Window `i` of a dataset is fully determined by the seed and `i` (its own random stream,
//! [`window_rng`]), so the samples do not depend on the number of threads. Windows are laid out
//! round-robin — every class at one SNR, then the next SNR, then the next repetition — so any
//! prefix of the dataset is balanced across classes and SNRs.
//!
//! Generation runs in chunks: the cores fill one chunk while a writer thread streams the previous
//! one to disk, so memory stays at a few chunks whatever the dataset size.

use std::path::Path;
use std::sync::mpsc::sync_channel;

use rayon::prelude::*;

use super::recipe::{GeneratedWindow, Recipe, snr_grid_values};
use super::snr_convention::{SnrConvention, TRUE_SNR_FILE};
use super::{GENERATOR_REVISION, SynthError, window_rng};
use crate::iq::dataset::{DatasetError, DatasetSource, DatasetWriter, Manifest};
use crate::iq::npy::NpyWriter;

/// Most windows generated per chunk (per parallel batch).
const CHUNK_WINDOWS: usize = 4096;

/// Target size of one chunk's samples: large windows (e.g. 4 × 1024) get fewer per chunk, so
/// memory stays small whatever the recipe.
const CHUNK_BYTES: usize = 16 << 20;

/// What to generate: how many windows per class and SNR, at which SNRs, from which seed.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateSpec {
    pub per_class_snr: usize,
    pub snr_grid_db: Vec<f32>,
    pub seed: u64,
}

impl GenerateSpec {
    /// The recipe's defaults, overridden by whatever the caller gives.
    pub fn for_recipe(
        recipe: &Recipe,
        per_class_snr: Option<usize>,
        snr_grid_db: Option<Vec<f32>>,
        seed: u64,
    ) -> Result<Self, SynthError> {
        let spec = Self {
            per_class_snr: per_class_snr.unwrap_or(recipe.default_per_class_snr),
            snr_grid_db: match snr_grid_db {
                Some(g) => g,
                None => snr_grid_values(recipe.default_snr_grid_db)?,
            },
            seed,
        };
        if spec.per_class_snr == 0 {
            return Err(SynthError::Param {
                name: "per-class-snr",
                problem: "is 0; expected at least 1 window per class and SNR".into(),
            });
        }
        Ok(spec)
    }

    /// Total number of windows for `classes` classes.
    pub fn total(&self, classes: usize) -> usize {
        self.per_class_snr * self.snr_grid_db.len() * classes
    }
}

/// Parses an SNR grid written `MIN:MAX:STEP` in dB (e.g. `-20:18:2`), both ends included.
pub fn parse_snr_grid(text: &str) -> Result<Vec<f32>, SynthError> {
    let bad = |problem: String| SynthError::Param {
        name: "snr",
        problem,
    };
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() != 3 {
        return Err(bad(format!(
            "is '{text}'; expected MIN:MAX:STEP in dB, e.g. -20:18:2"
        )));
    }
    let num = |s: &str, what: &str| {
        s.trim().parse::<f32>().map_err(|_| {
            bad(format!(
                "has {what} '{s}', which is not a number (in '{text}')"
            ))
        })
    };
    let (min, max, step) = (
        num(parts[0], "MIN")?,
        num(parts[1], "MAX")?,
        num(parts[2], "STEP")?,
    );
    if step <= 0.0 {
        return Err(bad(format!(
            "step is {step}; expected a positive step in dB"
        )));
    }
    snr_grid_values((min, max, step)).map_err(|e| match e {
        SynthError::Param { problem, .. } => bad(problem),
        other => other,
    })
}

/// Which class and SNR index window `index` has, in the round-robin layout.
pub fn window_slot(index: usize, classes: usize, snr_points: usize) -> (usize, usize) {
    let within = index % (classes * snr_points);
    (within % classes, within / classes)
}

/// Generates the dataset described by `recipe` and `spec` into `out`, calling `progress` with
/// the number of windows written so far. Returns the manifest it wrote.
///
/// Under [`SnrConvention::Radioml`] `snr.npy` holds the nominal labels and [`TRUE_SNR_FILE`]
/// beside it the true SNR of each window; otherwise a stale [`TRUE_SNR_FILE`] is removed.
pub fn generate_dataset(
    recipe: &Recipe,
    spec: &GenerateSpec,
    out: &Path,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<Manifest, SynthError> {
    let classes = recipe.classes.len();
    let snrs = spec.snr_grid_db.len();
    let total = spec.total(classes);
    let mut writer = DatasetWriter::create(
        out,
        total,
        recipe.channels,
        recipe.window_len,
        classes,
        recipe.has_angles,
    )?;
    let true_snr_path = out.join(TRUE_SNR_FILE);
    let npy_error = |e| SynthError::Dataset(DatasetError::from(e));
    let mut true_snr = if recipe.snr_convention() == SnrConvention::Radioml {
        Some(NpyWriter::<f32>::create(&true_snr_path, &[total]).map_err(npy_error)?)
    } else {
        if true_snr_path.exists() {
            std::fs::remove_file(&true_snr_path).map_err(|source| {
                SynthError::Dataset(DatasetError::Io {
                    path: true_snr_path.clone(),
                    source,
                })
            })?;
        }
        None
    };

    let make = |index: usize| -> (usize, GeneratedWindow) {
        let (class, snr_idx) = window_slot(index, classes, snrs);
        let mut rng = window_rng(spec.seed, index as u64);
        (
            class,
            recipe.generate(&mut rng, class, spec.snr_grid_db[snr_idx]),
        )
    };

    // The writer thread consumes finished chunks while the pool fills the next one.
    let window_bytes = recipe.channels * recipe.window_len * std::mem::size_of::<crate::iq::C32>();
    let chunk_windows = (CHUNK_BYTES / window_bytes.max(1)).clamp(64, CHUNK_WINDOWS);
    let (tx, rx) = sync_channel::<Vec<(usize, GeneratedWindow)>>(1);
    let written = std::thread::scope(|scope| -> Result<DatasetWriter, SynthError> {
        let handle = scope.spawn(move || -> Result<DatasetWriter, SynthError> {
            for chunk in rx {
                for (class, w) in chunk {
                    writer.push(&w.iq, class, w.snr_db, w.angles_deg)?;
                    if let Some(t) = true_snr.as_mut() {
                        t.write(&[w.true_snr_db]).map_err(npy_error)?;
                    }
                }
                progress(writer.written());
            }
            if let Some(t) = true_snr {
                t.finish().map_err(npy_error)?;
            }
            Ok(writer)
        });
        for start in (0..total).step_by(chunk_windows) {
            let end = (start + chunk_windows).min(total);
            let chunk: Vec<_> = (start..end).into_par_iter().map(make).collect();
            if tx.send(chunk).is_err() {
                break; // the writer failed; its error is returned below
            }
        }
        drop(tx);
        handle
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })?;

    let manifest = Manifest {
        format: String::new(),
        source: DatasetSource::Synth {
            recipe: recipe.name.clone(),
            params: recipe.params_json(),
        },
        seed: Some(spec.seed),
        generator_version: format!(
            "specwatch {} (generator revision {GENERATOR_REVISION})",
            env!("CARGO_PKG_VERSION")
        ),
        classes: recipe.classes.clone(),
        window_len: recipe.window_len,
        channels: recipe.channels,
        sample_rate_hz: Some(recipe.sample_rate_hz),
        snr_grid_db: spec.snr_grid_db.clone(),
        snr_definition: recipe.snr_definition(),
        count: 0,
        counts_per_class: Default::default(),
        has_angles: recipe.has_angles,
        array: recipe.array_json(),
        notes: recipe.notes(),
    };
    Ok(written.finish(manifest)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_rml2016a_grid_has_twenty_points_ending_at_18() {
        let g = parse_snr_grid("-20:18:2").unwrap();
        assert_eq!(g.len(), 20);
        assert_eq!(g[0], -20.0);
        assert_eq!(*g.last().unwrap(), 18.0);
    }

    #[test]
    fn bad_grids_name_the_parameter() {
        for text in ["-20:18", "a:18:2", "0:10:0", "10:0:1", "0:1e6:0.01"] {
            let e = parse_snr_grid(text).unwrap_err().to_string();
            assert!(e.contains("'snr'"), "{text}: {e}");
        }
    }

    #[test]
    fn round_robin_layout_balances_every_prefix() {
        // 3 classes × 2 SNRs: indices 0..6 cover every (class, snr) pair once.
        let slots: Vec<_> = (0..6).map(|i| window_slot(i, 3, 2)).collect();
        assert_eq!(slots, vec![(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)]);
        assert_eq!(window_slot(6, 3, 2), (0, 0));
    }
}
