//! Where training windows come from: a dataset in memory, streamed from disk, or generated.
//!
//! A [`WindowSource`] serves raw (un-preprocessed) windows by index, with what is known of each
//! (class, true SNR, angles). The per-window metadata is small and held in memory; the windows
//! themselves are held, read or made according to the residency:
//!
//! - [`MemorySource`] ([`Residency::Memory`]): every window read once at open, in chunks of
//!   [`READ_CHUNK`] windows; `N × channels × len × 8` bytes held.
//! - [`StreamSource`] ([`Residency::Stream`]): each [`read`](WindowSource::read) sorts the asked
//!   indices, groups them into runs of consecutive windows and reads each run from `x.npy` with
//!   one seek; repeated indices are read once. Memory held is the batch, whatever the set's
//!   size.
//! - [`Generated`]: window `i` made on the fly from a recipe and seed, exactly as
//!   `specwatch-train gen` writes window `i` of a dataset with the same settings (the same random
//!   stream per window, the same round-robin layout over class and SNR).
//!
//! Memory and Stream give identical batches for the same indices (same samples, same metadata;
//! a non-finite sample is the same error, raised by Memory at open and by Stream when its window
//! is read). A `max_windows` prefix is a balanced subset, because
//! datasets are laid out round-robin over class and SNR.
//!
//! Datasets cut from recordings ([`crate::iq::recordings`]) also say which recording each window
//! came from ([`WindowSource::recording_ids`], from `recording.npy`), so that the split can keep a
//! recording's windows together; other sources have none.
//!
//! [`snr_estimates_db`] gives the *served* SNR of a batch's windows: the estimate the daemon
//! computes for a model's `snr_db` input — [`crate::dsp::snr::estimate_snr_db`] of each channel, averaged in dB
//! over the channels.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::TrainError;
use crate::dsp::array::ArrayGeometry;
use crate::dsp::snr::window_snr_db;
use crate::iq::C32;
use crate::iq::dataset::{Dataset, DatasetError, Manifest};
use crate::synth::antenna::{ArrayConfig, ArraySource};
use crate::synth::generate::{GenerateSpec, window_slot};
use crate::synth::recipe::Recipe;
use crate::synth::{RecipeOptions, SynthError, window_rng};

/// Windows read from `x.npy` per chunk when a whole dataset is loaded.
pub const READ_CHUNK: usize = 4096;

/// Raw (un-preprocessed) windows with what is known of each, in the order asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct RawBatch {
    /// The windows' indices in the source, as asked (repeats allowed).
    pub indices: Vec<u32>,
    /// Samples `[B, channels, len]`, row-major (channel-major within each window).
    pub iq: Vec<C32>,
    pub channels: usize,
    pub len: usize,
    /// Class index of each window (into the manifest's classes).
    pub labels: Vec<i64>,
    /// True SNR of each window, dB (as the dataset's `snr.npy` records it).
    pub snr_db: Vec<f32>,
    /// Azimuth and elevation of each window's source, degrees (datasets with angles).
    pub angles_deg: Option<Vec<[f32; 2]>>,
}

impl RawBatch {
    /// Number of windows B.
    pub fn batch_size(&self) -> usize {
        self.indices.len()
    }

    /// Samples per window (channels × len).
    pub fn window_size(&self) -> usize {
        self.channels * self.len
    }

    /// Window `k` of the batch, `[channels, len]`.
    pub fn window(&self, k: usize) -> &[C32] {
        let w = self.window_size();
        &self.iq[k * w..(k + 1) * w]
    }

    /// Window `k` of the batch, mutable (for augmentation).
    pub fn window_mut(&mut self, k: usize) -> &mut [C32] {
        let w = self.window_size();
        &mut self.iq[k * w..(k + 1) * w]
    }
}

/// A source of raw training windows, read by index.
pub trait WindowSource: Send {
    /// The dataset's manifest (for [`Generated`]: the manifest `gen` would write).
    fn manifest(&self) -> &Manifest;
    /// SHA-256 of `manifest.json` as written (hex); cards cite the dataset by it.
    fn manifest_digest(&self) -> &str;
    /// The dataset folder (for [`Generated`], a name that says what it generates).
    fn dir(&self) -> &Path;
    /// Number of windows served, after any `max_windows` prefix.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Channels per window.
    fn channels(&self) -> usize {
        self.manifest().channels
    }
    /// Samples per channel.
    fn window_len(&self) -> usize {
        self.manifest().window_len
    }
    /// Class index of every window.
    fn labels(&self) -> &[i64];
    /// True SNR of every window, dB.
    fn snr_db(&self) -> &[f32];
    /// Azimuth and elevation of every window, degrees, when the dataset has them.
    fn angles_deg(&self) -> Option<&[[f32; 2]]>;
    /// The recording every window was cut from (an index into the manifest's
    /// `source.recordings`), for datasets cut from recordings; `None` for the rest.
    fn recording_ids(&self) -> Option<&[u32]> {
        None
    }
    /// The windows `indices` (any order, repeats allowed), in that order. An index at or beyond
    /// [`len`](Self::len) is an error naming it.
    fn read(&mut self, indices: &[u32]) -> Result<RawBatch, TrainError>;
}

/// Whether a dataset folder's windows are held in memory or read from disk per batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Residency {
    /// Read every window once, at open.
    #[default]
    Memory,
    /// Read only the asked windows from `x.npy`, on each call.
    Stream,
}

impl std::str::FromStr for Residency {
    type Err = TrainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "memory" => Ok(Residency::Memory),
            "stream" => Ok(Residency::Stream),
            other => Err(TrainError::param(
                "residency",
                format!("is '{other}'; expected memory or stream"),
            )),
        }
    }
}

impl std::fmt::Display for Residency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Residency::Memory => "memory",
            Residency::Stream => "stream",
        })
    }
}

/// Opens the dataset folder `dir` with its windows held as `residency` says, serving its first
/// `max_windows` windows (all when `None`).
pub fn open(
    dir: &Path,
    residency: Residency,
    max_windows: Option<usize>,
) -> Result<Box<dyn WindowSource>, TrainError> {
    Ok(match residency {
        Residency::Memory => Box::new(MemorySource::open(dir, max_windows)?),
        Residency::Stream => Box::new(StreamSource::open(dir, max_windows)?),
    })
}

/// The served SNR of each window of `batch`, dB: what the daemon feeds a model's `snr_db` input,
/// [`window_snr_db`] (the per-channel estimate averaged over the channels).
pub fn snr_estimates_db(batch: &RawBatch) -> Vec<f32> {
    (0..batch.batch_size())
        .map(|k| window_snr_db(batch.window(k), batch.channels))
        .collect()
}

/// Metadata of an opened dataset folder, cut to the served prefix.
struct FolderMeta {
    dir: PathBuf,
    manifest: Manifest,
    digest: String,
    labels: Vec<i64>,
    snr_db: Vec<f32>,
    angles_deg: Option<Vec<[f32; 2]>>,
    recording_ids: Option<Vec<u32>>,
}

impl FolderMeta {
    fn load(dir: &Path, dataset: &Dataset, max_windows: Option<usize>) -> Result<Self, TrainError> {
        let n = served_count(dir, dataset.len(), max_windows)?;
        let mut labels = dataset.labels()?;
        labels.truncate(n);
        let mut snr_db = dataset.snr_db()?;
        snr_db.truncate(n);
        let mut angles_deg = dataset.angles_deg()?;
        if let Some(a) = angles_deg.as_mut() {
            a.truncate(n);
        }
        let mut recording_ids = dataset.recording_ids()?;
        if let Some(r) = recording_ids.as_mut() {
            r.truncate(n);
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            manifest: dataset.manifest.clone(),
            digest: Manifest::digest_of_file(dir)?,
            labels,
            snr_db,
            angles_deg,
            recording_ids,
        })
    }

    fn len(&self) -> usize {
        self.labels.len()
    }

    /// Every index below the served count, or an error naming the first that is not.
    fn check(&self, indices: &[u32]) -> Result<(), TrainError> {
        check_indices(&self.dir, indices, self.len(), self.manifest.count)
    }

    /// A batch of `indices` around `iq`, with their metadata.
    fn batch(&self, indices: &[u32], iq: Vec<C32>) -> RawBatch {
        RawBatch {
            indices: indices.to_vec(),
            iq,
            channels: self.manifest.channels,
            len: self.manifest.window_len,
            labels: indices.iter().map(|&i| self.labels[i as usize]).collect(),
            snr_db: indices.iter().map(|&i| self.snr_db[i as usize]).collect(),
            angles_deg: self
                .angles_deg
                .as_ref()
                .map(|a| indices.iter().map(|&i| a[i as usize]).collect()),
        }
    }
}

/// How many windows a source serves: the first `max_windows` of `total` (0 is refused, and so
/// is a dataset without windows).
fn served_count(dir: &Path, total: usize, max_windows: Option<usize>) -> Result<usize, TrainError> {
    let n = match max_windows {
        Some(0) => {
            return Err(TrainError::param(
                "max-windows",
                "is 0; expected at least 1 window",
            ));
        }
        Some(m) => m.min(total),
        None => total,
    };
    if n == 0 {
        return Err(TrainError::Run {
            dir: dir.to_path_buf(),
            problem: "the dataset holds no windows".into(),
        });
    }
    Ok(n)
}

fn check_indices(
    dir: &Path,
    indices: &[u32],
    served: usize,
    total: usize,
) -> Result<(), TrainError> {
    match indices.iter().find(|&&i| i as usize >= served) {
        None => Ok(()),
        Some(&i) => {
            let of = if served < total {
                format!(" (the first {served} of its {total}, as max-windows asks)")
            } else {
                String::new()
            };
            Err(DatasetError::Data {
                path: dir.to_path_buf(),
                problem: format!(
                    "window {i} was asked for, but the source serves {served} windows{of}, \
                     indices 0..{served}"
                ),
            }
            .into())
        }
    }
}

/// A dataset folder held whole in memory.
pub struct MemorySource {
    meta: FolderMeta,
    /// `[N, channels, len]`.
    iq: Vec<C32>,
}

impl MemorySource {
    /// Opens `dir` and reads its first `max_windows` windows (all when `None`).
    pub fn open(dir: &Path, max_windows: Option<usize>) -> Result<Self, TrainError> {
        let mut dataset = Dataset::open(dir)?;
        let meta = FolderMeta::load(dir, &dataset, max_windows)?;
        let n = meta.len();
        let mut iq = Vec::with_capacity(n * dataset.window_size());
        let mut start = 0;
        while start < n {
            let count = READ_CHUNK.min(n - start);
            iq.extend(dataset.read_windows(start, count)?);
            start += count;
        }
        Ok(Self { meta, iq })
    }
}

impl WindowSource for MemorySource {
    fn manifest(&self) -> &Manifest {
        &self.meta.manifest
    }
    fn manifest_digest(&self) -> &str {
        &self.meta.digest
    }
    fn dir(&self) -> &Path {
        &self.meta.dir
    }
    fn len(&self) -> usize {
        self.meta.len()
    }
    fn labels(&self) -> &[i64] {
        &self.meta.labels
    }
    fn snr_db(&self) -> &[f32] {
        &self.meta.snr_db
    }
    fn angles_deg(&self) -> Option<&[[f32; 2]]> {
        self.meta.angles_deg.as_deref()
    }
    fn recording_ids(&self) -> Option<&[u32]> {
        self.meta.recording_ids.as_deref()
    }

    fn read(&mut self, indices: &[u32]) -> Result<RawBatch, TrainError> {
        self.meta.check(indices)?;
        let w = self.meta.manifest.channels * self.meta.manifest.window_len;
        let mut iq = Vec::with_capacity(indices.len() * w);
        for &i in indices {
            let i = i as usize;
            iq.extend_from_slice(&self.iq[i * w..(i + 1) * w]);
        }
        Ok(self.meta.batch(indices, iq))
    }
}

/// A dataset folder read from disk batch by batch.
pub struct StreamSource {
    meta: FolderMeta,
    dataset: Dataset,
    windows_read: u64,
}

impl StreamSource {
    /// Opens `dir` (reading its metadata, not its windows), serving its first `max_windows`
    /// windows (all when `None`).
    pub fn open(dir: &Path, max_windows: Option<usize>) -> Result<Self, TrainError> {
        let dataset = Dataset::open(dir)?;
        let meta = FolderMeta::load(dir, &dataset, max_windows)?;
        Ok(Self {
            meta,
            dataset,
            windows_read: 0,
        })
    }

    /// Windows read from `x.npy` so far (each run's windows, a repeated index once).
    pub fn windows_read(&self) -> u64 {
        self.windows_read
    }
}

impl WindowSource for StreamSource {
    fn manifest(&self) -> &Manifest {
        &self.meta.manifest
    }
    fn manifest_digest(&self) -> &str {
        &self.meta.digest
    }
    fn dir(&self) -> &Path {
        &self.meta.dir
    }
    fn len(&self) -> usize {
        self.meta.len()
    }
    fn labels(&self) -> &[i64] {
        &self.meta.labels
    }
    fn snr_db(&self) -> &[f32] {
        &self.meta.snr_db
    }
    fn angles_deg(&self) -> Option<&[[f32; 2]]> {
        self.meta.angles_deg.as_deref()
    }
    fn recording_ids(&self) -> Option<&[u32]> {
        self.meta.recording_ids.as_deref()
    }

    fn read(&mut self, indices: &[u32]) -> Result<RawBatch, TrainError> {
        self.meta.check(indices)?;
        let w = self.dataset.window_size();
        // Positions in the batch, by window index; runs of consecutive (or repeated) indices
        // are read with one seek each.
        let mut order: Vec<usize> = (0..indices.len()).collect();
        order.sort_by_key(|&k| indices[k]);
        let mut iq = vec![C32::new(0.0, 0.0); indices.len() * w];
        let mut k = 0;
        while k < order.len() {
            let start = indices[order[k]] as usize;
            let mut end = start + 1;
            let mut j = k + 1;
            while j < order.len() {
                let i = indices[order[j]] as usize;
                if i == end {
                    end += 1;
                } else if i != end - 1 {
                    break;
                }
                j += 1;
            }
            let run = self.dataset.read_windows(start, end - start)?;
            self.windows_read += (end - start) as u64;
            for &pos in &order[k..j] {
                let at = indices[pos] as usize - start;
                iq[pos * w..(pos + 1) * w].copy_from_slice(&run[at * w..(at + 1) * w]);
            }
            k = j;
        }
        Ok(self.meta.batch(indices, iq))
    }
}

/// Windows made on the fly from a recipe and seed: window `i` is what `specwatch-train gen`
/// with the same recipe, options, classes, SNR grid, count per class and SNR, and seed writes at
/// index `i`.
///
/// Metadata: classes follow the round-robin layout, angles are drawn from each window's stream
/// as the recipe draws them (placement is its first draw), and the SNR is the grid point the
/// window is made at. A batch carries the SNR measured from the made window, which is what
/// `gen` writes to `snr.npy` (the two agree within 1e-4 dB).
pub struct Generated {
    recipe: Recipe,
    spec: GenerateSpec,
    name: PathBuf,
    manifest: Manifest,
    digest: String,
    labels: Vec<i64>,
    snr_db: Vec<f32>,
    angles_deg: Option<Vec<[f32; 2]>>,
}

fn synth_error(e: SynthError) -> TrainError {
    match e {
        SynthError::Dataset(e) => TrainError::Dataset(e),
        SynthError::Param { name, problem } => TrainError::Param { name, problem },
        other => TrainError::param("recipe", other.to_string()),
    }
}

impl Generated {
    /// The recipe `recipe` with `options` (its analog classes' audio made from `seed`, as `gen`
    /// makes it), narrowed to `classes` when given, over `snr_grid_db` (the recipe's default
    /// when `None`) with `per_class_snr` windows per class and SNR (the recipe's default when
    /// `None`); serving the first `max_windows` windows.
    pub fn new(
        recipe: &str,
        options: &RecipeOptions,
        classes: Option<&[String]>,
        per_class_snr: Option<usize>,
        snr_grid_db: Option<Vec<f32>>,
        seed: u64,
        max_windows: Option<usize>,
    ) -> Result<Self, TrainError> {
        let mut recipe = Recipe::by_name(recipe, options, seed).map_err(synth_error)?;
        if let Some(names) = classes {
            recipe.keep_classes(names).map_err(synth_error)?;
        }
        let spec = GenerateSpec::for_recipe(&recipe, per_class_snr, snr_grid_db, seed)
            .map_err(synth_error)?;
        if let Some(g) = spec.snr_grid_db.iter().find(|g| !g.is_finite()) {
            return Err(TrainError::param(
                "snr",
                format!("holds {g}; expected finite SNRs in dB"),
            ));
        }
        let total = spec.total(recipe.classes.len());
        let name = PathBuf::from(format!("generated:{}:seed={seed}", recipe.name));
        let n = served_count(&name, total, max_windows)?;
        if n > u32::MAX as usize {
            return Err(TrainError::param(
                "max-windows",
                format!("leaves {n} windows; at most {} can be indexed", u32::MAX),
            ));
        }
        let manifest = generated_manifest(&recipe, &spec);
        let text = serde_json::to_string_pretty(&manifest).expect("manifest serialises") + "\n";
        let digest = sha256_hex(text.as_bytes());

        let (classes_n, snrs) = (recipe.classes.len(), spec.snr_grid_db.len());
        let slots: Vec<(usize, usize)> = (0..n).map(|i| window_slot(i, classes_n, snrs)).collect();
        let labels = slots.iter().map(|&(c, _)| c as i64).collect();
        let snr_db = slots.iter().map(|&(_, s)| spec.snr_grid_db[s]).collect();
        let angles_deg = if recipe.has_angles {
            // The recipe's array draws each window's placement first, from the window's stream,
            // with the default placement ranges; element errors and multipath draw later.
            let geometry = options
                .array
                .clone()
                .unwrap_or_else(ArrayGeometry::default_aoa4);
            let array = ArraySource::new(ArrayConfig::new(geometry)).map_err(synth_error)?;
            Some(
                (0..n)
                    .into_par_iter()
                    .map(|i| {
                        let p = array.draw_placement(&mut window_rng(seed, i as u64));
                        [p.azimuth_deg as f32, p.elevation_deg as f32]
                    })
                    .collect(),
            )
        } else {
            None
        };
        Ok(Self {
            recipe,
            spec,
            name,
            manifest,
            digest,
            labels,
            snr_db,
            angles_deg,
        })
    }
}

/// The manifest `generate_dataset` writes for `recipe` and `spec`, with the fields its writer
/// fills in.
fn generated_manifest(recipe: &Recipe, spec: &GenerateSpec) -> Manifest {
    use crate::iq::dataset::{DATASET_FORMAT, DatasetSource};
    let total = spec.total(recipe.classes.len());
    let per_class = spec.per_class_snr * spec.snr_grid_db.len();
    Manifest {
        format: DATASET_FORMAT.to_string(),
        source: DatasetSource::Synth {
            recipe: recipe.name.clone(),
            params: recipe.params_json(),
        },
        seed: Some(spec.seed),
        generator_version: format!(
            "specwatch {} (generator revision {})",
            env!("CARGO_PKG_VERSION"),
            crate::synth::GENERATOR_REVISION
        ),
        classes: recipe.classes.clone(),
        window_len: recipe.window_len,
        channels: recipe.channels,
        sample_rate_hz: Some(recipe.sample_rate_hz),
        snr_grid_db: spec.snr_grid_db.clone(),
        snr_definition: recipe.snr_definition(),
        count: total,
        counts_per_class: recipe
            .classes
            .iter()
            .map(|c| (c.clone(), per_class))
            .collect(),
        has_angles: recipe.has_angles,
        array: recipe.array_json(),
        notes: recipe.notes(),
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl WindowSource for Generated {
    fn manifest(&self) -> &Manifest {
        &self.manifest
    }
    fn manifest_digest(&self) -> &str {
        &self.digest
    }
    fn dir(&self) -> &Path {
        &self.name
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
        self.angles_deg.as_deref()
    }

    fn read(&mut self, indices: &[u32]) -> Result<RawBatch, TrainError> {
        check_indices(&self.name, indices, self.len(), self.manifest.count)?;
        let (recipe, spec) = (&self.recipe, &self.spec);
        let windows: Vec<_> = indices
            .par_iter()
            .map(|&i| {
                let snr = self.snr_db[i as usize];
                let class = self.labels[i as usize] as usize;
                recipe.generate(&mut window_rng(spec.seed, u64::from(i)), class, snr)
            })
            .collect();
        let w = self.manifest.channels * self.manifest.window_len;
        let mut iq = Vec::with_capacity(indices.len() * w);
        let mut snr_db = Vec::with_capacity(indices.len());
        let mut angles = self.angles_deg.as_ref().map(|_| Vec::new());
        for (&i, window) in indices.iter().zip(windows) {
            iq.extend_from_slice(&window.iq);
            snr_db.push(window.snr_db);
            if let Some(a) = angles.as_mut() {
                let expected = self.angles_deg.as_ref().map(|m| m[i as usize]);
                if window.angles_deg != expected {
                    return Err(TrainError::param(
                        "recipe",
                        format!(
                            "window {i} was made at angles {:?} but its metadata says {expected:?}; \
                             the generator and this source disagree on how placement is drawn",
                            window.angles_deg
                        ),
                    ));
                }
                a.push(expected.unwrap_or_default());
            }
        }
        Ok(RawBatch {
            indices: indices.to_vec(),
            iq,
            channels: self.manifest.channels,
            len: self.manifest.window_len,
            labels: indices.iter().map(|&i| self.labels[i as usize]).collect(),
            snr_db,
            angles_deg: angles,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsp::snr::{SNR_MIN_DB, estimate_snr_db};
    use crate::iq::dataset::{DatasetSource, DatasetWriter};
    use crate::synth::generate::generate_dataset;

    /// A 2-channel dataset of `n` windows of 8 samples whose samples encode (window, channel,
    /// sample), 3 classes, with angles.
    fn folder(n: usize) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let (channels, len) = (2, 8);
        let mut w = DatasetWriter::create(dir.path(), n, channels, len, 3, true).unwrap();
        for i in 0..n {
            let iq: Vec<C32> = (0..channels * len)
                .map(|k| C32::new(i as f32, k as f32 + 0.5))
                .collect();
            let snr = [-10.0, 0.0, 10.0][(i / 3) % 3] + 0.01 * i as f32;
            w.push(&iq, i % 3, snr, Some([i as f32, -(i as f32)]))
                .unwrap();
        }
        let manifest = Manifest {
            format: String::new(),
            source: DatasetSource::Synth {
                recipe: "test".into(),
                params: serde_json::Value::Null,
            },
            seed: None,
            generator_version: String::new(),
            classes: vec!["A".into(), "B".into(), "C".into()],
            window_len: 0,
            channels: 0,
            sample_rate_hz: None,
            snr_grid_db: vec![-10.0, 0.0, 10.0],
            snr_definition: String::new(),
            count: 0,
            counts_per_class: Default::default(),
            has_angles: true,
            array: None,
            notes: vec![],
        };
        w.finish(manifest).unwrap();
        dir
    }

    #[test]
    fn stream_and_memory_serve_identical_batches() {
        let dir = folder(40);
        let mut memory = open(dir.path(), Residency::Memory, None).unwrap();
        let mut stream = open(dir.path(), Residency::Stream, None).unwrap();
        assert_eq!(memory.len(), 40);
        assert_eq!(memory.manifest_digest(), stream.manifest_digest());
        assert_eq!(memory.labels(), stream.labels());
        assert_eq!(memory.snr_db(), stream.snr_db());
        assert_eq!(memory.angles_deg(), stream.angles_deg());
        for indices in [
            vec![0u32, 1, 2, 3],
            vec![39, 2, 17, 3, 16, 18, 0],
            vec![5, 5, 4, 6, 5, 30, 30],
            vec![],
        ] {
            let a = memory.read(&indices).unwrap();
            let b = stream.read(&indices).unwrap();
            assert_eq!(a, b, "{indices:?}");
            assert_eq!(a.batch_size(), indices.len());
            for (k, &i) in indices.iter().enumerate() {
                // Sample (channel 1, sample 2) of window i holds (i, 10.5).
                assert_eq!(a.window(k)[8 + 2], C32::new(i as f32, 10.5));
                assert_eq!(a.labels[k], i64::from(i % 3));
                assert_eq!(a.angles_deg.as_ref().unwrap()[k], [i as f32, -(i as f32)]);
            }
        }
        // A max-windows prefix serves the first windows alike.
        let mut memory = open(dir.path(), Residency::Memory, Some(12)).unwrap();
        let mut stream = open(dir.path(), Residency::Stream, Some(12)).unwrap();
        assert_eq!((memory.len(), stream.len()), (12, 12));
        assert_eq!(stream.labels().len(), 12);
        assert_eq!(stream.angles_deg().unwrap().len(), 12);
        let indices = [11, 0, 7, 7, 1];
        assert_eq!(
            memory.read(&indices).unwrap(),
            stream.read(&indices).unwrap()
        );
    }

    #[test]
    fn recording_ids_are_served_alike_and_cut_to_the_prefix() {
        assert!(
            MemorySource::open(folder(6).path(), None)
                .unwrap()
                .recording_ids()
                .is_none()
        );
        let dir = tempfile::tempdir().unwrap();
        let ids = [0usize, 0, 1, 2, 1, 2, 2];
        let mut w = DatasetWriter::create_with_recordings(dir.path(), 7, 1, 2, 1, false).unwrap();
        for (i, &r) in ids.iter().enumerate() {
            w.push_recorded(&[C32::new(i as f32, 0.0); 2], 0, 0.0, None, r)
                .unwrap();
        }
        let recordings = ["a", "b", "c"]
            .map(|f| crate::iq::dataset::SourceRecording {
                file: f.into(),
                samples: 10,
                windows: 0,
            })
            .to_vec();
        let mut manifest = MemorySource::open(folder(1).path(), None)
            .unwrap()
            .manifest()
            .clone();
        manifest.classes = vec!["A".into()];
        manifest.has_angles = false;
        manifest.source = DatasetSource::Recordings {
            window_hop: 2,
            max_windows_per_recording: None,
            snr: "sidecar".into(),
            recordings,
        };
        w.finish(manifest).unwrap();
        for residency in [Residency::Memory, Residency::Stream] {
            let source = open(dir.path(), residency, None).unwrap();
            assert_eq!(source.recording_ids(), Some(&[0, 0, 1, 2, 1, 2, 2][..]));
            let source = open(dir.path(), residency, Some(4)).unwrap();
            assert_eq!(source.recording_ids(), Some(&[0, 0, 1, 2][..]));
        }
    }

    #[test]
    fn an_index_past_the_end_is_named() {
        let dir = folder(20);
        for residency in [Residency::Memory, Residency::Stream] {
            let mut source = open(dir.path(), residency, Some(10)).unwrap();
            let err = source.read(&[3, 10, 2]).unwrap_err().to_string();
            assert!(
                err.contains("window 10") && err.contains("first 10 of its 20"),
                "{err}"
            );
            let mut source = open(dir.path(), residency, None).unwrap();
            let err = source.read(&[25]).unwrap_err().to_string();
            assert!(err.contains("window 25") && err.contains("0..20"), "{err}");
        }
        let err = open(dir.path(), Residency::Stream, Some(0))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("max-windows"), "{err}");
    }

    #[test]
    fn stream_reads_only_the_asked_windows() {
        for n in [30, 300] {
            let dir = folder(n);
            let mut stream = StreamSource::open(dir.path(), None).unwrap();
            assert_eq!(stream.windows_read(), 0, "opening reads no windows");
            stream.read(&[9, 3, 4, 4, 5, 20, 3]).unwrap();
            // 3, 4, 5 (one run, repeats once), 9, 20: five windows, whatever the set's size.
            assert_eq!(stream.windows_read(), 5);
        }
    }

    #[test]
    fn the_served_snr_is_the_mean_over_channels_of_the_daemons_estimate() {
        // Window 0: a clean tone on channel 0 and nothing on channel 1; window 1: the tone on
        // both channels.
        let len = 256;
        let tone: Vec<C32> = (0..len)
            .map(|n| C32::from_polar(1.0, 0.3 * n as f32))
            .collect();
        let silence = vec![C32::new(0.0, 0.0); len];
        let iq = [&tone[..], &silence, &tone, &tone].concat();
        let batch = RawBatch {
            indices: vec![0, 1],
            iq,
            channels: 2,
            len,
            labels: vec![0, 0],
            snr_db: vec![0.0, 0.0],
            angles_deg: None,
        };
        let tone_snr = estimate_snr_db(&tone);
        assert_eq!(estimate_snr_db(&silence), SNR_MIN_DB);
        assert!(tone_snr > SNR_MIN_DB + 10.0, "{tone_snr}");
        assert_eq!(
            snr_estimates_db(&batch),
            vec![(tone_snr + SNR_MIN_DB) / 2.0, (tone_snr + tone_snr) / 2.0]
        );
    }

    fn generated_matches_gen(recipe: &str, grid: Vec<f32>, seed: u64) {
        let options = RecipeOptions::default();
        let made = Recipe::by_name(recipe, &options, seed).unwrap();
        let spec = GenerateSpec::for_recipe(&made, Some(2), Some(grid.clone()), seed).unwrap();
        let dir = tempfile::tempdir().unwrap();
        generate_dataset(&made, &spec, dir.path(), &|_| {}).unwrap();

        let mut generated =
            Generated::new(recipe, &options, None, Some(2), Some(grid), seed, None).unwrap();
        let mut folder = open(dir.path(), Residency::Stream, None).unwrap();
        assert_eq!(generated.manifest(), folder.manifest());
        assert_eq!(
            generated.manifest_digest(),
            Manifest::digest_of_file(dir.path()).unwrap()
        );
        assert_eq!(generated.len(), folder.len());
        assert_eq!(generated.labels(), folder.labels());
        assert_eq!(generated.angles_deg(), folder.angles_deg());
        for (a, b) in generated.snr_db().iter().zip(folder.snr_db()) {
            assert!((a - b).abs() < 1e-3, "{a} vs {b}");
        }
        let indices: Vec<u32> = (0..folder.len() as u32).rev().chain([3, 3]).collect();
        assert_eq!(
            generated.read(&indices).unwrap(),
            folder.read(&indices).unwrap()
        );
    }

    #[test]
    fn generated_windows_are_the_generators_windows() {
        generated_matches_gen("rml2016a", vec![0.0, 10.0], 5);
    }

    #[test]
    fn generated_array_windows_carry_the_generators_angles() {
        generated_matches_gen("aoa4", vec![10.0], 8);
    }

    #[test]
    fn generated_serves_a_prefix_and_names_a_bad_index() {
        let options = RecipeOptions::default();
        let classes = ["QPSK".to_string(), "BPSK".to_string()];
        let mut g = Generated::new(
            "rml2016a",
            &options,
            Some(&classes),
            Some(3),
            Some(vec![0.0]),
            1,
            Some(4),
        )
        .unwrap();
        assert_eq!(g.len(), 4);
        assert_eq!(g.manifest().classes, ["BPSK", "QPSK"]);
        assert_eq!(g.labels(), [0, 1, 0, 1]);
        let err = g.read(&[4]).unwrap_err().to_string();
        assert!(
            err.contains("window 4") && err.contains("first 4 of its 6"),
            "{err}"
        );
        let err = Generated::new("nope", &options, None, None, None, 1, None)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("nope"), "{err}");
    }
}
