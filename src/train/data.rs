//! Dataset folder → training data: every window goes through the same `dsp` preprocessing the
//! daemon runs ([`Normalization::apply`], then [`Representation::write`]) into one planar f32
//! array `[N, 2C, L]`; a split stratified by class and SNR; batches as burn tensors.
//!
//! Datasets are laid out round-robin over class and SNR, so a prefix of `max_windows` windows
//! is itself balanced; [`PrepOptions::max_windows`] takes such a prefix.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{TrainError, read_json, write_json};
use crate::dsp::normalize::Normalization;
use crate::dsp::repr::{ReprWorkspace, Representation};
use crate::iq::dataset::{Dataset, Manifest};

/// Windows read from the dataset file per chunk while preprocessing.
const READ_CHUNK: usize = 4096;

/// How windows become model input.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PrepOptions {
    pub normalization: Normalization,
    pub representation: Representation,
    /// Use only the first `max_windows` windows (a balanced prefix).
    pub max_windows: Option<usize>,
}

impl Default for PrepOptions {
    fn default() -> Self {
        Self {
            normalization: Normalization::UnitRms,
            representation: Representation::Iq,
            max_windows: None,
        }
    }
}

/// Parses a normalisation name as configs and model cards write it (`none`, `unit_rms`, `l1`,
/// `peak`).
pub fn parse_normalization(name: &str) -> Result<Normalization, TrainError> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).map_err(|_| {
        TrainError::param(
            "normalization",
            format!("is '{name}'; expected one of none, unit_rms, l1, peak"),
        )
    })
}

/// Parses a representation name (`iq`, `amp_phase`, `inst_freq`, `fft`, `fft_log_mag`).
pub fn parse_representation(name: &str) -> Result<Representation, TrainError> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).map_err(|_| {
        TrainError::param(
            "representation",
            format!("is '{name}'; expected one of iq, amp_phase, inst_freq, fft, fft_log_mag"),
        )
    })
}

/// A dataset preprocessed into model input, held in memory.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The dataset folder.
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// SHA-256 of `manifest.json` ([`Manifest::digest_of_file`]).
    pub manifest_digest: String,
    pub options: PrepOptions,
    /// Model input, row-major `[n, rows, len]`.
    pub x: Vec<f32>,
    /// Class index per window.
    pub labels: Vec<i64>,
    /// True SNR (dB) per window.
    pub snr_db: Vec<f32>,
    /// Rows per window: 2 × channels.
    pub rows: usize,
    /// Samples per row.
    pub len: usize,
}

impl Prepared {
    /// Number of windows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn num_classes(&self) -> usize {
        self.manifest.classes.len()
    }

    /// Window `i` as `rows × len` values.
    pub fn window(&self, i: usize) -> &[f32] {
        let w = self.rows * self.len;
        &self.x[i * w..(i + 1) * w]
    }

    /// The windows `indices` as a batch on `device`: inputs `[B, rows, len]`, targets `[B]`.
    pub fn batch(&self, indices: &[u32], device: &Device) -> Batch {
        let w = self.rows * self.len;
        let mut x = Vec::with_capacity(indices.len() * w);
        let mut y = Vec::with_capacity(indices.len());
        for &i in indices {
            x.extend_from_slice(self.window(i as usize));
            y.push(self.labels[i as usize]);
        }
        let b = indices.len();
        Batch {
            inputs: Tensor::from_data(TensorData::new(x, [b, self.rows, self.len]), device),
            targets: Tensor::from_data(TensorData::new(y, [b]), device),
        }
    }
}

/// One batch: inputs `[B, 2C, L]` and class targets `[B]`.
#[derive(Debug, Clone)]
pub struct Batch {
    pub inputs: Tensor<3>,
    pub targets: Tensor<1, Int>,
}

/// Opens the dataset folder `dir` (its manifest checked by [`Dataset::open`]) and preprocesses
/// every window (or the first `options.max_windows`) through `dsp`.
pub fn prepare(dir: &Path, options: PrepOptions) -> Result<Prepared, TrainError> {
    let mut dataset = Dataset::open(dir)?;
    let manifest = dataset.manifest.clone();
    let manifest_digest = Manifest::digest_of_file(dir)?;
    let n = match options.max_windows {
        Some(0) => {
            return Err(TrainError::param(
                "max-windows",
                "is 0; expected at least 1 window",
            ));
        }
        Some(m) => m.min(dataset.len()),
        None => dataset.len(),
    };
    if n == 0 {
        return Err(TrainError::Run {
            dir: dir.to_path_buf(),
            problem: "the dataset holds no windows".into(),
        });
    }
    let channels = manifest.channels;
    let len = manifest.window_len;
    options.representation.check_len(len)?;
    let [rows, _] = options.representation.shape(channels, len);

    let mut labels = dataset.labels()?;
    labels.truncate(n);
    let mut snr_db = dataset.snr_db()?;
    snr_db.truncate(n);

    let per_window = channels * len;
    let mut x = Vec::with_capacity(n * rows * len);
    let mut ws = ReprWorkspace::new();
    let mut start = 0;
    while start < n {
        let count = READ_CHUNK.min(n - start);
        let mut chunk = dataset.read_windows(start, count)?;
        for window in chunk.chunks_exact_mut(per_window) {
            options.normalization.apply(window);
            options
                .representation
                .write(window, channels, &mut ws, &mut x)?;
        }
        start += count;
    }
    Ok(Prepared {
        dir: dir.to_path_buf(),
        manifest,
        manifest_digest,
        options,
        x,
        labels,
        snr_db,
        rows,
        len,
    })
}

/// Fractions of each (class, SNR) stratum that go to training, validation and test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SplitFractions {
    pub train: f64,
    pub val: f64,
    pub test: f64,
}

impl Default for SplitFractions {
    fn default() -> Self {
        Self {
            train: 0.7,
            val: 0.15,
            test: 0.15,
        }
    }
}

impl SplitFractions {
    fn check(&self) -> Result<(), TrainError> {
        let parts = [self.train, self.val, self.test];
        if parts.iter().any(|f| !f.is_finite() || *f < 0.0)
            || (parts.iter().sum::<f64>() - 1.0).abs() > 1e-6
            || self.train <= 0.0
            || self.val <= 0.0
        {
            return Err(TrainError::param(
                "split",
                format!(
                    "is {}/{}/{}; expected non-negative train/val/test fractions summing to 1, \
                     with train and val above 0",
                    self.train, self.val, self.test
                ),
            ));
        }
        Ok(())
    }
}

/// Which windows train, validate and test: indices into the (prefix of the) dataset, each list
/// sorted. Stratified by class and SNR grid point, so every split sees every (class, SNR) pair
/// in proportion. Written to `RUN_DIR/split.json` so evaluation never sees training windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Split {
    pub seed: u64,
    pub fractions: SplitFractions,
    /// Number of windows split (the dataset, or its `max_windows` prefix).
    pub windows: usize,
    /// Digest of the dataset's manifest.
    pub manifest_digest: String,
    pub train: Vec<u32>,
    pub val: Vec<u32>,
    pub test: Vec<u32>,
}

impl Split {
    /// Splits `data` per (class, nearest SNR grid point) stratum: each stratum is shuffled with
    /// `seed` and cut by `fractions` (validation and test rounded to the nearest window; the
    /// rest trains).
    pub fn stratified(
        data: &Prepared,
        fractions: SplitFractions,
        seed: u64,
    ) -> Result<Split, TrainError> {
        fractions.check()?;
        let grid = &data.manifest.snr_grid_db;
        let snr_key = |snr: f32| -> i64 {
            if grid.is_empty() {
                return snr.round() as i64;
            }
            let (best, _) = grid
                .iter()
                .enumerate()
                .fold((0, f32::INFINITY), |acc, (i, g)| {
                    let d = (g - snr).abs();
                    if d < acc.1 { (i, d) } else { acc }
                });
            best as i64
        };
        let mut strata: BTreeMap<(i64, i64), Vec<u32>> = BTreeMap::new();
        for (i, (&y, &snr)) in data.labels.iter().zip(&data.snr_db).enumerate() {
            strata.entry((y, snr_key(snr))).or_default().push(i as u32);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (mut train, mut val, mut test) = (Vec::new(), Vec::new(), Vec::new());
        for members in strata.values_mut() {
            members.shuffle(&mut rng);
            let n = members.len();
            let n_val = ((n as f64 * fractions.val).round() as usize).min(n);
            let n_test = ((n as f64 * fractions.test).round() as usize).min(n - n_val);
            val.extend_from_slice(&members[..n_val]);
            test.extend_from_slice(&members[n_val..n_val + n_test]);
            train.extend_from_slice(&members[n_val + n_test..]);
        }
        for list in [&mut train, &mut val, &mut test] {
            list.sort_unstable();
        }
        if train.is_empty() || val.is_empty() {
            return Err(TrainError::param(
                "max-windows",
                format!(
                    "leaves {} windows, too few for a training and a validation set \
                     ({} train, {} validation)",
                    data.len(),
                    train.len(),
                    val.len()
                ),
            ));
        }
        Ok(Split {
            seed,
            fractions,
            windows: data.len(),
            manifest_digest: data.manifest_digest.clone(),
            train,
            val,
            test,
        })
    }

    pub fn save(&self, path: &Path) -> Result<(), TrainError> {
        write_json(path, self)
    }

    pub fn load(path: &Path) -> Result<Split, TrainError> {
        read_json(path)
    }

    /// Checks that this split was made for `data`.
    pub fn check_fits(&self, data: &Prepared, path: &Path) -> Result<(), TrainError> {
        let problem = if self.manifest_digest != data.manifest_digest {
            Some(format!(
                "was made for the dataset with manifest digest {} but {} has {}",
                self.manifest_digest,
                data.dir.display(),
                data.manifest_digest
            ))
        } else if self.windows != data.len() {
            Some(format!(
                "covers {} windows but {} were prepared",
                self.windows,
                data.len()
            ))
        } else {
            let max = data.len() as u32;
            [&self.train, &self.val, &self.test]
                .iter()
                .flat_map(|l| l.iter())
                .find(|&&i| i >= max)
                .map(|i| format!("holds index {i}, outside 0..{max}"))
        };
        match problem {
            Some(problem) => Err(TrainError::Run {
                dir: path.to_path_buf(),
                problem: format!("split.json {problem}"),
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iq::dataset::DatasetSource;

    /// `per_cell` windows for each of 2 classes × 3 SNRs, round-robin, with 1-sample rows.
    fn prepared(per_cell: usize) -> Prepared {
        let grid = vec![0.0, 10.0, 20.0];
        let n = 6 * per_cell;
        Prepared {
            dir: PathBuf::from("mem"),
            manifest: Manifest {
                format: String::new(),
                source: DatasetSource::Synth {
                    recipe: "test".into(),
                    params: serde_json::Value::Null,
                },
                seed: None,
                generator_version: String::new(),
                classes: vec!["A".into(), "B".into()],
                window_len: 1,
                channels: 1,
                sample_rate_hz: None,
                snr_grid_db: grid.clone(),
                snr_definition: String::new(),
                count: n,
                counts_per_class: BTreeMap::new(),
                has_angles: false,
                array: None,
                notes: vec![],
            },
            manifest_digest: "d".into(),
            options: PrepOptions::default(),
            x: (0..2 * n).map(|v| v as f32).collect(),
            labels: (0..n).map(|i| (i % 2) as i64).collect(),
            // Measured SNRs scatter around the grid point they were made at.
            snr_db: (0..n)
                .map(|i| grid[(i / 2) % 3] + if i % 3 == 0 { 0.4 } else { -0.3 })
                .collect(),
            rows: 2,
            len: 1,
        }
    }

    #[test]
    fn split_is_stratified_disjoint_complete_and_seeded() {
        let data = prepared(20);
        let s = Split::stratified(&data, SplitFractions::default(), 5).unwrap();
        // 20 per cell: 3 validation, 3 test, 14 training in each of the 6 cells.
        assert_eq!((s.train.len(), s.val.len(), s.test.len()), (84, 18, 18));
        for part in [&s.val, &s.test] {
            for class in 0..2 {
                for snr in 0..3 {
                    let in_cell = part
                        .iter()
                        .filter(|&&i| i as usize % 2 == class && (i as usize / 2) % 3 == snr)
                        .count();
                    assert_eq!(in_cell, 3, "class {class} snr {snr}");
                }
            }
        }
        let mut all: Vec<u32> = [&s.train, &s.val, &s.test]
            .into_iter()
            .flatten()
            .copied()
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..120).collect::<Vec<u32>>());
        assert_eq!(
            s,
            Split::stratified(&data, SplitFractions::default(), 5).unwrap()
        );
        assert_ne!(
            s.val,
            Split::stratified(&data, SplitFractions::default(), 6)
                .unwrap()
                .val
        );
    }

    #[test]
    fn split_refuses_fractions_that_do_not_sum_to_one() {
        let f = SplitFractions {
            train: 0.7,
            val: 0.2,
            test: 0.2,
        };
        let e = Split::stratified(&prepared(4), f, 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("'split'") && e.contains("summing to 1"), "{e}");
    }

    #[test]
    fn batch_gathers_windows_in_index_order() {
        let data = prepared(2);
        let b = data.batch(&[3, 0], &Device::flex());
        assert_eq!(b.inputs.dims(), [2, 2, 1]);
        let x: Vec<f32> = b.inputs.into_data().try_into_vec_as().unwrap();
        assert_eq!(x, vec![6.0, 7.0, 0.0, 1.0]);
        let y: Vec<i64> = b.targets.into_data().try_into_vec_as().unwrap();
        assert_eq!(y, vec![1, 0]);
    }

    #[test]
    fn names_parse_as_configs_write_them() {
        assert_eq!(
            parse_normalization("unit_rms").unwrap(),
            Normalization::UnitRms
        );
        assert_eq!(
            parse_representation("amp_phase").unwrap(),
            Representation::AmpPhase
        );
        let e = parse_normalization("rms").unwrap_err().to_string();
        assert!(e.contains("'normalization' is 'rms'"), "{e}");
    }
}
