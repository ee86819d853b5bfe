//! Dataset folder → batches: raw windows from a [`WindowSource`] (held in memory or streamed
//! from `x.npy`, [`Residency`]), each through the same `dsp` preprocessing the daemon runs
//! ([`Normalization::apply`], then [`Representation::write`]) into planar f32 rows `[B, 2C, L]`,
//! with the windows' classes, true SNRs and angles; a split stratified by class and SNR, or, for
//! windows cut from recordings, by whole recordings stratified by class.
//!
//! Preprocessing happens per batch, so a training set need not fit in memory once streamed
//! (memory then holds the labels, SNRs, angles and one batch), and augmentations can act on the
//! raw IQ before it.
//!
//! Datasets are laid out round-robin over class and SNR, so a prefix of `max_windows` windows
//! is itself balanced; [`PrepOptions::max_windows`] takes such a prefix.

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::augment::Pipeline;
use super::source::{self, RawBatch, Residency, WindowSource};
use super::{TrainError, read_json, sampler, write_json};
use crate::dsp::normalize::Normalization;
use crate::dsp::repr::{ReprWorkspace, Representation};
use crate::iq::dataset::Manifest;

/// How windows become model input.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PrepOptions {
    pub normalization: Normalization,
    pub representation: Representation,
    /// Use only the first `max_windows` windows (a balanced prefix).
    pub max_windows: Option<usize>,
    /// Whether the raw windows are held in memory or read from disk per batch (configs written
    /// before this field existed: memory).
    #[serde(default)]
    pub residency: Residency,
}

impl Default for PrepOptions {
    fn default() -> Self {
        Self {
            normalization: Normalization::UnitRms,
            representation: Representation::Iq,
            max_windows: None,
            residency: Residency::Memory,
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

/// A dataset's windows served as batches (see the module documentation).
pub struct Batcher {
    source: Box<dyn WindowSource>,
    pub options: PrepOptions,
    /// Rows per window: 2 × channels.
    pub rows: usize,
    /// Samples per row.
    pub window_len: usize,
    ws: ReprWorkspace,
    snr_estimates: bool,
    /// Further representations each batch carries, with their rows.
    domains: Vec<(Representation, usize)>,
}

impl Batcher {
    /// Opens the dataset folder `dir` (its manifest checked by [`crate::iq::dataset::Dataset::open`]) to serve its
    /// windows (or the first `options.max_windows`) preprocessed as `options` says.
    pub fn open(dir: &Path, options: PrepOptions) -> Result<Self, TrainError> {
        // Every source refuses a `max_windows` of 0 and a dataset without windows.
        let source = source::open(dir, options.residency, options.max_windows)?;
        Self::new(source, options)
    }

    /// Serves the windows of `source`, preprocessed as `options` says.
    pub fn new(source: Box<dyn WindowSource>, options: PrepOptions) -> Result<Self, TrainError> {
        let len = source.window_len();
        options.representation.check_len(len)?;
        let [rows, _] = options.representation.shape(source.channels(), len);
        Ok(Self {
            source,
            options,
            rows,
            window_len: len,
            ws: ReprWorkspace::new(),
            snr_estimates: false,
            domains: Vec::new(),
        })
    }

    /// The window source.
    pub fn source(&self) -> &dyn WindowSource {
        self.source.as_ref()
    }

    pub fn manifest(&self) -> &Manifest {
        self.source.manifest()
    }

    /// SHA-256 of `manifest.json` ([`Manifest::digest_of_file`]).
    pub fn manifest_digest(&self) -> &str {
        self.source.manifest_digest()
    }

    /// Number of windows served (the dataset, or its `max_windows` prefix).
    pub fn len(&self) -> usize {
        self.source.len()
    }

    pub fn is_empty(&self) -> bool {
        self.source.is_empty()
    }

    pub fn num_classes(&self) -> usize {
        self.source.manifest().classes.len()
    }

    /// Whether batches carry the daemon's SNR estimate of each window (off by default: it
    /// costs an estimate per window).
    pub fn set_snr_estimates(&mut self, on: bool) {
        self.snr_estimates = on;
    }

    /// Representations each batch also carries ([`Batch::domains`]), every one written from the
    /// same normalised window by the one `dsp` path; errors name a representation the windows
    /// cannot take.
    pub fn set_domains(&mut self, domains: &[Representation]) -> Result<(), TrainError> {
        let channels = self.source.channels();
        self.domains = domains
            .iter()
            .map(|r| {
                r.check_len(self.window_len)?;
                Ok((*r, r.shape(channels, self.window_len)[0]))
            })
            .collect::<Result<_, TrainError>>()?;
        Ok(())
    }

    /// The raw windows `indices`, in that order.
    pub fn raw(&mut self, indices: &[u32]) -> Result<RawBatch, TrainError> {
        self.source.read(indices)
    }

    /// The windows `indices` as a batch on `device` (see [`Batcher::preprocess`]).
    pub fn batch(&mut self, indices: &[u32], device: &Device) -> Result<Batch, TrainError> {
        let raw = self.source.read(indices)?;
        self.preprocess(raw, device)
    }

    /// The windows `indices` as a training batch of `views` views (at least 1), each window of
    /// view `v` augmented by `pipeline` as window `indices[k]` of epoch `epoch` in a run seeded
    /// with `seed` (an empty pipeline leaves the raw windows as they are, so every view is the
    /// same). The SNR estimate, when asked for, is of view 0 as augmented; the true SNR and the
    /// angles are the dataset's.
    #[allow(clippy::too_many_arguments)]
    pub fn augmented_batch(
        &mut self,
        indices: &[u32],
        pipeline: &Pipeline,
        views: u32,
        seed: u64,
        epoch: usize,
        device: &Device,
    ) -> Result<Batch, TrainError> {
        let raw = self.source.read(indices)?;
        let augment = |mut raw: RawBatch, view: u32| {
            if !pipeline.is_empty() {
                let (channels, len) = (raw.channels, raw.len);
                for k in 0..raw.batch_size() {
                    let index = raw.indices[k];
                    pipeline.apply(raw.window_mut(k), channels, len, seed, epoch, index, view);
                }
            }
            raw
        };
        let mut extra = Vec::new();
        for view in 1..views.max(1) {
            extra.push(self.preprocess(augment(raw.clone(), view), device)?.inputs);
        }
        let mut batch = self.preprocess(augment(raw, 0), device)?;
        batch.views = extra;
        Ok(batch)
    }

    /// Raw windows (perhaps augmented) as a batch on `device`: inputs `[B, rows, len]` through
    /// the one `dsp` path, targets `[B]`, true SNRs `[B]` and, when the dataset has them,
    /// angles `[B, 2]`.
    pub fn preprocess(&mut self, mut raw: RawBatch, device: &Device) -> Result<Batch, TrainError> {
        let b = raw.batch_size();
        let channels = raw.channels;
        let snr_estimate_db = self.snr_estimates.then(|| {
            let estimates = source::snr_estimates_db(&raw);
            Tensor::from_data(TensorData::new(estimates, [b]), device)
        });
        let mut x = Vec::with_capacity(b * self.rows * self.window_len);
        let mut domains: Vec<Vec<f32>> = vec![Vec::new(); self.domains.len()];
        for k in 0..b {
            let window = raw.window_mut(k);
            self.options.normalization.apply(window);
            self.options
                .representation
                .write(window, channels, &mut self.ws, &mut x)?;
            for ((representation, _), out) in self.domains.iter().zip(&mut domains) {
                representation.write(window, channels, &mut self.ws, out)?;
            }
        }
        let domains = domains
            .into_iter()
            .zip(&self.domains)
            .map(|(values, (_, rows))| {
                Tensor::from_data(TensorData::new(values, [b, *rows, self.window_len]), device)
            })
            .collect();
        let angles_deg = raw.angles_deg.map(|angles| {
            let flat: Vec<f32> = angles.into_iter().flatten().collect();
            Tensor::from_data(TensorData::new(flat, [b, 2]), device)
        });
        Ok(Batch {
            inputs: Tensor::from_data(TensorData::new(x, [b, self.rows, self.window_len]), device),
            targets: Tensor::from_data(TensorData::new(raw.labels, [b]), device),
            snr_db: Tensor::from_data(TensorData::new(raw.snr_db, [b]), device),
            snr_estimate_db,
            angles_deg,
            views: Vec::new(),
            domains,
        })
    }
}

/// One batch: what an objective may train on.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Model input `[B, rows, L]`, preprocessed by the one `dsp` path.
    pub inputs: Tensor<3>,
    /// Class indices `[B]`.
    pub targets: Tensor<1, Int>,
    /// The windows' true SNR in dB `[B]` (the dataset's `snr.npy`).
    pub snr_db: Tensor<1>,
    /// The SNR the daemon estimates from each raw window at serving time, dB `[B]` (the same
    /// `dsp` code), when the batcher was asked for it ([`Batcher::set_snr_estimates`]).
    pub snr_estimate_db: Option<Tensor<1>>,
    /// Azimuth and elevation in degrees `[B, 2]`, for datasets with `angles.npy`.
    pub angles_deg: Option<Tensor<2>>,
    /// Further augmented views of the same windows `[B, rows, L]` each (view 1, 2, …; `inputs`
    /// is view 0), for objectives that compare views of one window.
    pub views: Vec<Tensor<3>>,
    /// The same windows (view 0) in further representations, `[B, rows_d, L]` each, in the
    /// order asked for ([`Batcher::set_domains`]): objectives that see several domains of one
    /// window.
    pub domains: Vec<Tensor<3>>,
}

impl Batch {
    /// Windows in the batch.
    pub fn len(&self) -> usize {
        self.targets.dims()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
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
/// in proportion; for a dataset cut from recordings, by whole recordings (see
/// [`Split::stratified`]). Written to `RUN_DIR/split.json` so evaluation never sees training
/// windows.
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
    /// For a split by recording: which recordings (indices into the manifest's
    /// `source.recordings`) went where. Absent from splits by window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recordings: Option<RecordingSplit>,
}

/// The recordings of each part of a split by recording, each list sorted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordingSplit {
    pub train: Vec<u32>,
    pub val: Vec<u32>,
    pub test: Vec<u32>,
}

impl Split {
    /// Splits `data` per (class, nearest SNR grid point) stratum: each stratum is shuffled with
    /// `seed` and cut by `fractions` (validation and test rounded to the nearest window; the
    /// rest trains).
    ///
    /// When `data` says which recording each window was cut from
    /// ([`WindowSource::recording_ids`]), whole recordings are split instead, so that no
    /// recording has windows on two sides (its windows are strongly correlated): each recording
    /// counts as of the class of most of its windows; each class's recordings are shuffled with
    /// `seed` and spread evenly over [0, 1) (the k-th of n at (k + ½)/n, classes tied in a seeded
    /// order); in that order the first `round(R·val)` recordings validate (at least 1), the next
    /// `round(R·test)` test and the rest (at least 1) train, R being the number of recordings.
    /// Each part so takes about its fraction of every class's recordings. Fractions count
    /// recordings, not windows.
    pub fn stratified(
        data: &dyn WindowSource,
        fractions: SplitFractions,
        seed: u64,
    ) -> Result<Split, TrainError> {
        fractions.check()?;
        if let Some(ids) = data.recording_ids() {
            return Self::by_recording(data, ids, fractions, seed);
        }
        let grid = &data.manifest().snr_grid_db;
        let snr_key = |snr: f32| sampler::snr_cell(grid, snr);
        let mut strata: BTreeMap<(i64, i64), Vec<u32>> = BTreeMap::new();
        for (i, (&y, &snr)) in data.labels().iter().zip(data.snr_db()).enumerate() {
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
            manifest_digest: data.manifest_digest().to_string(),
            train,
            val,
            test,
            recordings: None,
        })
    }

    /// The split by recording (see [`Split::stratified`]).
    fn by_recording(
        data: &dyn WindowSource,
        ids: &[u32],
        fractions: SplitFractions,
        seed: u64,
    ) -> Result<Split, TrainError> {
        // Windows and class counts of each recording.
        let mut windows: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        let mut classes: BTreeMap<u32, BTreeMap<i64, usize>> = BTreeMap::new();
        for (i, (&r, &y)) in ids.iter().zip(data.labels()).enumerate() {
            windows.entry(r).or_default().push(i as u32);
            *classes.entry(r).or_default().entry(y).or_default() += 1;
        }
        let n = windows.len();
        if n < 2 {
            let of = if data.len() < data.manifest().count {
                format!(" (the first {} windows, as max-windows asks)", data.len())
            } else {
                String::new()
            };
            return Err(TrainError::param(
                "split",
                format!(
                    "{}{of} holds windows of {n} recording(s); a split by recording needs at \
                     least 2 (one to train, one to validate)",
                    data.dir().display()
                ),
            ));
        }
        let mut by_class: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
        for (&r, counts) in &classes {
            // The class of most windows; the lowest among equals.
            let (&class, _) = counts
                .iter()
                .max_by_key(|&(&c, &k)| (k, std::cmp::Reverse(c)))
                .expect("a recording has windows");
            by_class.entry(class).or_default().push(r);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for members in by_class.values_mut() {
            members.shuffle(&mut rng);
        }
        let mut tie_order: Vec<i64> = by_class.keys().copied().collect();
        tie_order.shuffle(&mut rng);
        let mut order: Vec<(f64, usize, u32)> = Vec::with_capacity(n);
        for (rank, class) in tie_order.iter().enumerate() {
            let members = &by_class[class];
            let m = members.len() as f64;
            for (k, &r) in members.iter().enumerate() {
                order.push(((k as f64 + 0.5) / m, rank, r));
            }
        }
        order.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let n_val = ((n as f64 * fractions.val).round() as usize).clamp(1, n - 1);
        let n_test = ((n as f64 * fractions.test).round() as usize).min(n - 1 - n_val);
        let part = |range: std::ops::Range<usize>| {
            let mut recordings: Vec<u32> = order[range].iter().map(|&(_, _, r)| r).collect();
            recordings.sort_unstable();
            let mut members: Vec<u32> = recordings
                .iter()
                .flat_map(|r| windows[r].iter().copied())
                .collect();
            members.sort_unstable();
            (recordings, members)
        };
        let (val_r, val) = part(0..n_val);
        let (test_r, test) = part(n_val..n_val + n_test);
        let (train_r, train) = part(n_val + n_test..n);
        Ok(Split {
            seed,
            fractions,
            windows: data.len(),
            manifest_digest: data.manifest_digest().to_string(),
            train,
            val,
            test,
            recordings: Some(RecordingSplit {
                train: train_r,
                val: val_r,
                test: test_r,
            }),
        })
    }

    pub fn save(&self, path: &Path) -> Result<(), TrainError> {
        write_json(path, self)
    }

    pub fn load(path: &Path) -> Result<Split, TrainError> {
        read_json(path)
    }

    /// Checks that this split was made for `data`.
    pub fn check_fits(&self, data: &dyn WindowSource, path: &Path) -> Result<(), TrainError> {
        let problem = if self.manifest_digest != data.manifest_digest() {
            Some(format!(
                "was made for the dataset with manifest digest {} but {} has {}",
                self.manifest_digest,
                data.dir().display(),
                data.manifest_digest()
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
    use std::collections::BTreeSet;

    use crate::iq::dataset::DatasetSource;

    /// `per_cell` windows for each of 2 classes × 3 SNRs, round-robin, one channel of one
    /// sample each (window `i` holds `i + 2i·j`), held in memory.
    struct Cells {
        manifest: Manifest,
        labels: Vec<i64>,
        snr_db: Vec<f32>,
        /// The recording of each window, for a set cut from recordings.
        recordings: Option<Vec<u32>>,
    }

    impl WindowSource for Cells {
        fn manifest(&self) -> &Manifest {
            &self.manifest
        }
        fn manifest_digest(&self) -> &str {
            "d"
        }
        fn dir(&self) -> &Path {
            Path::new("mem")
        }
        fn len(&self) -> usize {
            self.labels.len()
        }
        fn labels(&self) -> &[i64] {
            &self.labels
        }
        fn snr_db(&self) -> &[f32] {
            &self.snr_db
        }
        fn angles_deg(&self) -> Option<&[[f32; 2]]> {
            None
        }
        fn recording_ids(&self) -> Option<&[u32]> {
            self.recordings.as_deref()
        }
        fn read(&mut self, indices: &[u32]) -> Result<RawBatch, TrainError> {
            Ok(RawBatch {
                indices: indices.to_vec(),
                iq: indices
                    .iter()
                    .map(|&i| crate::iq::C32::new(2.0 * i as f32, 2.0 * i as f32 + 1.0))
                    .collect(),
                channels: 1,
                len: 1,
                labels: indices.iter().map(|&i| self.labels[i as usize]).collect(),
                snr_db: indices.iter().map(|&i| self.snr_db[i as usize]).collect(),
                angles_deg: None,
            })
        }
    }

    fn prepared(per_cell: usize) -> Cells {
        let grid = vec![0.0, 10.0, 20.0];
        let n = 6 * per_cell;
        Cells {
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
            labels: (0..n).map(|i| (i % 2) as i64).collect(),
            // Measured SNRs scatter around the grid point they were made at.
            snr_db: (0..n)
                .map(|i| grid[(i / 2) % 3] + if i % 3 == 0 { 0.4 } else { -0.3 })
                .collect(),
            recordings: None,
        }
    }

    /// Windows cut from recordings: `per_class[c]` recordings of class `c`, `per_recording`
    /// windows each, the windows of all recordings interleaved (window `i` is window
    /// `i / R` of recording `i % R`); recording `r` is of class 0 for `r < per_class[0]`, etc.
    fn recorded(per_class: &[usize], per_recording: usize) -> Cells {
        let classes: Vec<i64> = per_class
            .iter()
            .enumerate()
            .flat_map(|(c, &n)| std::iter::repeat_n(c as i64, n))
            .collect();
        let r = classes.len();
        let n = r * per_recording;
        let mut cells = prepared(1);
        cells.labels = (0..n).map(|i| classes[i % r]).collect();
        cells.snr_db = vec![10.0; n];
        cells.recordings = Some((0..n).map(|i| (i % r) as u32).collect());
        cells.manifest.count = n;
        cells
    }

    /// The part (0 train, 1 val, 2 test) of each recording, checking that none is split.
    fn parts_of_recordings(data: &Cells, s: &Split) -> BTreeMap<u32, usize> {
        let ids = data.recordings.as_ref().unwrap();
        let mut part_of: BTreeMap<u32, usize> = BTreeMap::new();
        for (part, list) in [&s.train, &s.val, &s.test].into_iter().enumerate() {
            for &i in list {
                let r = ids[i as usize];
                let before = *part_of.entry(r).or_insert(part);
                assert_eq!(
                    before, part,
                    "recording {r} has windows in parts {before} and {part}"
                );
            }
        }
        part_of
    }

    #[test]
    fn split_by_recording_keeps_every_recording_on_one_side() {
        let data = recorded(&[10, 10], 6);
        let s = Split::stratified(&data, SplitFractions::default(), 5).unwrap();
        let part_of = parts_of_recordings(&data, &s);
        assert_eq!(part_of.len(), 20);
        // 20 recordings: round(3) validate, round(3) test, 14 train; 6 windows each.
        let rec = s.recordings.as_ref().unwrap();
        assert_eq!((rec.train.len(), rec.val.len(), rec.test.len()), (14, 3, 3));
        assert_eq!((s.train.len(), s.val.len(), s.test.len()), (84, 18, 18));
        for (part, list) in [&rec.train, &rec.val, &rec.test].into_iter().enumerate() {
            assert!(list.iter().all(|r| part_of[r] == part));
        }
        let mut all: Vec<u32> = [&s.train, &s.val, &s.test]
            .into_iter()
            .flatten()
            .copied()
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..120).collect::<Vec<u32>>());
        // Both classes on every side (stratified), the same for the same seed, not another.
        for list in [&rec.train, &rec.val, &rec.test] {
            let classes: BTreeSet<u32> = list.iter().map(|r| r / 10).collect();
            assert_eq!(classes.len(), 2, "{list:?}");
        }
        assert_eq!(
            s,
            Split::stratified(&data, SplitFractions::default(), 5).unwrap()
        );
        assert_ne!(
            s.recordings,
            Split::stratified(&data, SplitFractions::default(), 6)
                .unwrap()
                .recordings
        );
        // split.json records the recordings; a split by window does not.
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["recordings"]["val"].as_array().unwrap().len(), 3);
        let by_window = Split::stratified(&prepared(4), SplitFractions::default(), 1).unwrap();
        assert!(
            serde_json::to_value(&by_window)
                .unwrap()
                .get("recordings")
                .is_none()
        );
    }

    #[test]
    fn split_by_recording_takes_each_class_in_proportion() {
        // 40 recordings of class 0, 8 of class 1: 7 validate (about 6 + 1), 7 test.
        let data = recorded(&[40, 8], 3);
        for seed in 0..5 {
            let s = Split::stratified(&data, SplitFractions::default(), seed).unwrap();
            parts_of_recordings(&data, &s);
            let rec = s.recordings.unwrap();
            assert_eq!((rec.val.len(), rec.test.len()), (7, 7));
            for list in [&rec.val, &rec.test] {
                let minority = list.iter().filter(|&&r| r >= 40).count();
                assert!((1..=2).contains(&minority), "seed {seed}: {list:?}");
            }
        }
    }

    #[test]
    fn split_by_recording_works_with_few_recordings_and_refuses_one() {
        // 3 recordings per class: 1 validates, 1 tests, 4 train (both classes).
        let data = recorded(&[3, 3], 4);
        let s = Split::stratified(&data, SplitFractions::default(), 2).unwrap();
        parts_of_recordings(&data, &s);
        let rec = s.recordings.unwrap();
        assert_eq!((rec.train.len(), rec.val.len(), rec.test.len()), (4, 1, 1));
        assert_eq!(rec.train.iter().filter(|&&r| r < 3).count(), 2);
        // Two recordings: one trains, one validates, none tests.
        let s = Split::stratified(&recorded(&[1, 1], 4), SplitFractions::default(), 2).unwrap();
        let rec = s.recordings.unwrap();
        assert_eq!((rec.train.len(), rec.val.len(), rec.test.len()), (1, 1, 0));
        let e = Split::stratified(&recorded(&[1], 8), SplitFractions::default(), 2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("'split'") && e.contains("1 recording(s)"), "{e}");
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
    fn batch_gathers_windows_in_index_order_through_the_dsp_path() {
        let options = PrepOptions {
            normalization: Normalization::None,
            ..PrepOptions::default()
        };
        let mut batcher = Batcher::new(Box::new(prepared(2)), options).unwrap();
        let b = batcher.batch(&[3, 0], &Device::flex()).unwrap();
        assert_eq!(b.inputs.dims(), [2, 2, 1]);
        let x: Vec<f32> = b.inputs.into_data().try_into_vec().unwrap();
        assert_eq!(x, vec![6.0, 7.0, 0.0, 1.0]);
        let y: Vec<i64> = b.targets.into_data().try_into_vec_as().unwrap();
        assert_eq!(y, vec![1, 0]);
        let snr: Vec<f32> = b.snr_db.into_data().try_into_vec().unwrap();
        assert_eq!(snr, vec![10.0 + 0.4, 0.4]);
        assert!(b.angles_deg.is_none());
        // Unit-RMS input: each window scaled to RMS 1, as the daemon would.
        let mut batcher = Batcher::new(Box::new(prepared(2)), PrepOptions::default()).unwrap();
        let b = batcher.batch(&[3], &Device::flex()).unwrap();
        let x: Vec<f32> = b.inputs.into_data().try_into_vec().unwrap();
        let norm = (36.0f32 + 49.0).sqrt();
        assert!((x[0] - 6.0 / norm).abs() < 1e-6 && (x[1] - 7.0 / norm).abs() < 1e-6);
    }

    #[test]
    fn a_batch_carries_further_domains_each_as_its_own_batcher_would_write_it() {
        let device = Device::flex();
        let domains = [Representation::AmpPhase, Representation::InstFreq];
        let mut batcher = Batcher::new(Box::new(prepared(2)), PrepOptions::default()).unwrap();
        batcher.set_domains(&domains).unwrap();
        let batch = batcher.batch(&[3, 0, 5], &device).unwrap();
        assert_eq!(batch.domains.len(), 2);
        for (domain, representation) in batch.domains.into_iter().zip(domains) {
            let alone = PrepOptions {
                representation,
                ..PrepOptions::default()
            };
            let mut own = Batcher::new(Box::new(prepared(2)), alone).unwrap();
            let want = own.batch(&[3, 0, 5], &device).unwrap().inputs;
            assert_eq!(domain.dims(), want.dims(), "{representation:?}");
            let (got, want): (Vec<f32>, Vec<f32>) = (
                domain.into_data().try_into_vec().unwrap(),
                want.into_data().try_into_vec().unwrap(),
            );
            assert_eq!(got, want, "{representation:?}");
        }
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
