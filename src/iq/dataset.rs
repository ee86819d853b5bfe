//! The dataset folder: what the generator and the RadioML importers write and the trainer reads.
//!
//! ```text
//! DIR/manifest.json   what the data is (see [`Manifest`]); written last, so a folder without it
//!                     is an unfinished or broken dataset
//! DIR/x.npy           complex64 (N, channels, window_len)
//! DIR/y.npy           int64 (N,)   class index into manifest.classes
//! DIR/snr.npy         float32 (N,) true per-window SNR in dB (see manifest.snr_definition), or
//!                     under `gen --snr-convention radioml` the published script's nominal label
//!                     (manifest.source.params.snr_convention says which)
//! DIR/snr_true.npy    float32 (N,) the true SNR in dB, beside nominal labels (radioml only)
//! DIR/angles.npy      float32 (N, 2) azimuth, elevation in degrees (only when manifest.has_angles)
//! DIR/recording.npy   int64 (N,)   index into manifest.source.recordings of the recording each
//!                     window was cut from (only for datasets cut from recordings)
//! ```
//!
//! **Recordings.** A dataset cut from long recordings ([`DatasetSource::Recordings`], written by
//! [`super::recordings`]) lists them in `source.recordings` (file name, samples, windows) and says
//! in `recording.npy` which one each window came from. Windows of one recording are strongly
//! correlated, so the trainer's split keeps every recording's windows on one side
//! (`train::data::Split::stratified`). `recording.npy` is int64 like `y.npy` (an int32 file is
//! read too).
//!
//! [`Dataset::open`] checks every file against the manifest before anything is read, and names
//! the file and the field that disagree.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::C32;
use super::npy::{self, NpyError, NpyReader, NpyWriter};

/// Version tag written into every manifest; bumped when the folder layout changes.
pub const DATASET_FORMAT: &str = "specwatch-dataset/1";

/// Errors from reading or writing a dataset folder.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error(transparent)]
    Npy(#[from] NpyError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{dir}: no manifest.json — not a dataset folder, or its writing did not finish")]
    NoManifest { dir: PathBuf },
    #[error("{path}: malformed manifest: {source}")]
    ManifestSyntax {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: field '{field}': {problem}")]
    Manifest {
        path: PathBuf,
        field: &'static str,
        problem: String,
    },
    #[error("{path}: {problem}")]
    Data { path: PathBuf, problem: String },
}

/// Where a dataset came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum DatasetSource {
    /// Made by specwatch's generator from a named recipe; `params` records every recipe setting.
    Synth {
        recipe: String,
        params: serde_json::Value,
    },
    /// Imported from a public RadioML file.
    Radioml {
        variant: String,
        file: String,
        file_bytes: u64,
    },
    /// Cut into windows from recordings (`.npy` + sidecar each, see [`super::recordings`]);
    /// `recording.npy` holds each window's index into `recordings`.
    Recordings {
        /// Samples between the starts of consecutive windows of one truth span.
        window_hop: usize,
        /// The cap on windows taken from one recording, if one was set (they are then spread
        /// evenly over the recording).
        max_windows_per_recording: Option<usize>,
        /// Where each window's SNR comes from: `sidecar` or `estimate` (see `snr_definition`).
        snr: String,
        /// The recordings, in the order `recording.npy` indexes them.
        recordings: Vec<SourceRecording>,
    },
}

/// One recording a [`DatasetSource::Recordings`] dataset was cut from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceRecording {
    /// The recording's file name (`NAME.npy`; its sidecar is `NAME.json`).
    pub file: String,
    /// Samples per channel in the recording.
    pub samples: u64,
    /// Windows of the dataset cut from it (filled in by [`DatasetWriter::finish`]).
    pub windows: usize,
}

/// `manifest.json`: everything a reader needs to know about a dataset, and how it was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`DATASET_FORMAT`].
    pub format: String,
    pub source: DatasetSource,
    /// Seed of the generator (None for imported data).
    pub seed: Option<u64>,
    /// specwatch version and generator revision that wrote the data.
    pub generator_version: String,
    /// Class names; `y.npy` holds indices into this list.
    pub classes: Vec<String>,
    pub window_len: usize,
    pub channels: usize,
    /// Nominal sample rate of the windows, when known.
    pub sample_rate_hz: Option<f64>,
    /// The SNR values (dB) the data was made at or labelled with.
    pub snr_grid_db: Vec<f32>,
    /// What the numbers in `snr.npy` mean.
    pub snr_definition: String,
    /// Number of windows N.
    pub count: usize,
    /// Windows per class name.
    pub counts_per_class: BTreeMap<String, usize>,
    /// Whether `angles.npy` is present.
    pub has_angles: bool,
    /// Array geometry for multi-channel AoA data (free-form, written by the recipe).
    #[serde(default)]
    pub array: Option<serde_json::Value>,
    /// Anything else a reader should know (e.g. how the source's labels differ from ours).
    #[serde(default)]
    pub notes: Vec<String>,
}

impl Manifest {
    /// The recordings the windows were cut from, for datasets that have `recording.npy`.
    pub fn recordings(&self) -> Option<&[SourceRecording]> {
        match &self.source {
            DatasetSource::Recordings { recordings, .. } => Some(recordings),
            _ => None,
        }
    }

    /// SHA-256 of the manifest as written (hex); model cards cite the dataset by this digest.
    pub fn digest_of_file(dir: &Path) -> Result<String, DatasetError> {
        let path = dir.join("manifest.json");
        let bytes = std::fs::read(&path).map_err(|source| DatasetError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(hex(&Sha256::digest(&bytes)))
    }

    fn check(&self, path: &Path) -> Result<(), DatasetError> {
        let bad = |field: &'static str, problem: String| DatasetError::Manifest {
            path: path.to_path_buf(),
            field,
            problem,
        };
        if self.format != DATASET_FORMAT {
            return Err(bad(
                "format",
                format!("is '{}' but '{DATASET_FORMAT}' was expected", self.format),
            ));
        }
        if self.classes.is_empty() {
            return Err(bad(
                "classes",
                "is empty; at least one class is needed".into(),
            ));
        }
        if self.window_len == 0 {
            return Err(bad("window_len", "must be at least 1".into()));
        }
        if self.channels == 0 {
            return Err(bad("channels", "must be at least 1".into()));
        }
        let total: usize = self.counts_per_class.values().sum();
        if total != self.count {
            return Err(bad(
                "counts_per_class",
                format!("adds up to {total} but 'count' is {}", self.count),
            ));
        }
        if let Some(name) = self
            .counts_per_class
            .keys()
            .find(|k| !self.classes.contains(k))
        {
            return Err(bad(
                "counts_per_class",
                format!("names class '{name}' which is not in 'classes'"),
            ));
        }
        if let Some(recordings) = self.recordings() {
            if recordings.is_empty() {
                return Err(bad(
                    "source.recordings",
                    "is empty; expected the recordings the windows were cut from".into(),
                ));
            }
            let total: usize = recordings.iter().map(|r| r.windows).sum();
            if total != self.count {
                return Err(bad(
                    "source.recordings",
                    format!("holds {total} windows in all but 'count' is {}", self.count),
                ));
            }
        }
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Streams windows into a new dataset folder. Files are written as windows arrive; the manifest
/// is written by [`DatasetWriter::finish`] once every declared window is in.
pub struct DatasetWriter {
    dir: PathBuf,
    x: NpyWriter<C32>,
    y: NpyWriter<i64>,
    snr: NpyWriter<f32>,
    angles: Option<NpyWriter<f32>>,
    /// `recording.npy` and the windows written per recording, for datasets cut from recordings.
    recording: Option<(NpyWriter<i64>, Vec<usize>)>,
    shape: (usize, usize, usize),
    written: usize,
    counts: Vec<usize>,
}

impl DatasetWriter {
    /// Creates `dir` (and parents) and the data files for `count` windows of
    /// `channels × window_len` samples over `n_classes` classes.
    pub fn create(
        dir: &Path,
        count: usize,
        channels: usize,
        window_len: usize,
        n_classes: usize,
        has_angles: bool,
    ) -> Result<Self, DatasetError> {
        Self::create_inner(
            dir, count, channels, window_len, n_classes, has_angles, false,
        )
    }

    /// Like [`DatasetWriter::create`], for windows cut from recordings: also writes
    /// `recording.npy`, so every window must be pushed with [`DatasetWriter::push_recorded`]
    /// and the manifest's source must be [`DatasetSource::Recordings`].
    pub fn create_with_recordings(
        dir: &Path,
        count: usize,
        channels: usize,
        window_len: usize,
        n_classes: usize,
        has_angles: bool,
    ) -> Result<Self, DatasetError> {
        Self::create_inner(
            dir, count, channels, window_len, n_classes, has_angles, true,
        )
    }

    fn create_inner(
        dir: &Path,
        count: usize,
        channels: usize,
        window_len: usize,
        n_classes: usize,
        has_angles: bool,
        recordings: bool,
    ) -> Result<Self, DatasetError> {
        std::fs::create_dir_all(dir).map_err(|source| DatasetError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        // A stale manifest from an earlier dataset in the same folder must not describe new data.
        let manifest = dir.join("manifest.json");
        if manifest.exists() {
            std::fs::remove_file(&manifest).map_err(|source| DatasetError::Io {
                path: manifest,
                source,
            })?;
        }
        let angles_path = dir.join("angles.npy");
        let angles = if has_angles {
            Some(NpyWriter::create(&angles_path, &[count, 2])?)
        } else {
            if angles_path.exists() {
                std::fs::remove_file(&angles_path).map_err(|source| DatasetError::Io {
                    path: angles_path,
                    source,
                })?;
            }
            None
        };
        let recording_path = dir.join("recording.npy");
        let recording = if recordings {
            Some((NpyWriter::create(&recording_path, &[count])?, Vec::new()))
        } else {
            if recording_path.exists() {
                std::fs::remove_file(&recording_path).map_err(|source| DatasetError::Io {
                    path: recording_path,
                    source,
                })?;
            }
            None
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            x: NpyWriter::create(&dir.join("x.npy"), &[count, channels, window_len])?,
            y: NpyWriter::create(&dir.join("y.npy"), &[count])?,
            snr: NpyWriter::create(&dir.join("snr.npy"), &[count])?,
            angles,
            recording,
            shape: (count, channels, window_len),
            written: 0,
            counts: vec![0; n_classes],
        })
    }

    /// Appends one window: `iq` is channel-major (`channels × window_len` samples).
    pub fn push(
        &mut self,
        iq: &[C32],
        class: usize,
        snr_db: f32,
        angles_deg: Option<[f32; 2]>,
    ) -> Result<(), DatasetError> {
        self.push_inner(iq, class, snr_db, angles_deg, None)
    }

    /// Appends one window cut from recording `recording` (an index into the manifest's
    /// `source.recordings`), for a writer made by [`DatasetWriter::create_with_recordings`].
    pub fn push_recorded(
        &mut self,
        iq: &[C32],
        class: usize,
        snr_db: f32,
        angles_deg: Option<[f32; 2]>,
        recording: usize,
    ) -> Result<(), DatasetError> {
        self.push_inner(iq, class, snr_db, angles_deg, Some(recording))
    }

    fn push_inner(
        &mut self,
        iq: &[C32],
        class: usize,
        snr_db: f32,
        angles_deg: Option<[f32; 2]>,
        recording: Option<usize>,
    ) -> Result<(), DatasetError> {
        let (count, channels, len) = self.shape;
        let problem = if iq.len() != channels * len {
            Some(format!(
                "window {} has {} samples but {channels} channels × {len} were declared",
                self.written,
                iq.len()
            ))
        } else if class >= self.counts.len() {
            Some(format!(
                "window {} has class index {class} but only {} classes were declared",
                self.written,
                self.counts.len()
            ))
        } else if self.written >= count {
            Some(format!(
                "more than the declared {count} windows were pushed"
            ))
        } else if angles_deg.is_some() != self.angles.is_some() {
            Some(format!(
                "window {} {} angles but the dataset was declared {} them",
                self.written,
                if angles_deg.is_some() { "has" } else { "lacks" },
                if self.angles.is_some() {
                    "with"
                } else {
                    "without"
                }
            ))
        } else if recording.is_some() != self.recording.is_some() {
            Some(format!(
                "window {} {} a recording index but the dataset was declared {} recording.npy",
                self.written,
                if recording.is_some() { "has" } else { "lacks" },
                if self.recording.is_some() {
                    "with"
                } else {
                    "without"
                }
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(DatasetError::Data {
                path: self.dir.clone(),
                problem,
            });
        }
        self.x.write(iq)?;
        self.y.write(&[class as i64])?;
        self.snr.write(&[snr_db])?;
        if let (Some(w), Some(a)) = (self.angles.as_mut(), angles_deg) {
            w.write(&a)?;
        }
        if let (Some((w, per_recording)), Some(r)) = (self.recording.as_mut(), recording) {
            w.write(&[r as i64])?;
            if per_recording.len() <= r {
                per_recording.resize(r + 1, 0);
            }
            per_recording[r] += 1;
        }
        self.counts[class] += 1;
        self.written += 1;
        Ok(())
    }

    /// Windows written so far.
    pub fn written(&self) -> usize {
        self.written
    }

    /// Closes the data files and writes `manifest.json`, filling in `count` and
    /// `counts_per_class` (and, for recordings, each recording's `windows`) from what was
    /// actually written.
    pub fn finish(self, mut manifest: Manifest) -> Result<Manifest, DatasetError> {
        let (count, channels, len) = self.shape;
        if self.written != count {
            return Err(DatasetError::Data {
                path: self.dir,
                problem: format!(
                    "only {} of the declared {count} windows were written",
                    self.written
                ),
            });
        }
        self.x.finish()?;
        self.y.finish()?;
        self.snr.finish()?;
        if let Some(a) = self.angles {
            a.finish()?;
        }
        let manifest_path = self.dir.join("manifest.json");
        match (self.recording, &mut manifest.source) {
            (Some((w, per_recording)), DatasetSource::Recordings { recordings, .. }) => {
                if per_recording.len() > recordings.len() {
                    return Err(DatasetError::Manifest {
                        path: manifest_path,
                        field: "source.recordings",
                        problem: format!(
                            "lists {} recordings but windows were pushed from recording index {}",
                            recordings.len(),
                            per_recording.len() - 1
                        ),
                    });
                }
                w.finish()?;
                for (i, r) in recordings.iter_mut().enumerate() {
                    r.windows = per_recording.get(i).copied().unwrap_or(0);
                }
            }
            (None, DatasetSource::Recordings { .. }) => {
                return Err(DatasetError::Manifest {
                    path: manifest_path,
                    field: "source",
                    problem: "is 'recordings' but the writer was made without recording.npy \
                              (DatasetWriter::create_with_recordings)"
                        .into(),
                });
            }
            (Some(_), _) => {
                return Err(DatasetError::Manifest {
                    path: manifest_path,
                    field: "source",
                    problem: "must be 'recordings' for a dataset written with recording.npy".into(),
                });
            }
            (None, _) => {}
        }
        manifest.format = DATASET_FORMAT.to_string();
        manifest.count = count;
        manifest.channels = channels;
        manifest.window_len = len;
        manifest.counts_per_class = manifest
            .classes
            .iter()
            .zip(&self.counts)
            .map(|(c, n)| (c.clone(), *n))
            .collect();
        let path = self.dir.join("manifest.json");
        manifest.check(&path)?;
        let text = serde_json::to_string_pretty(&manifest).expect("manifest serialises");
        std::fs::write(&path, text + "\n").map_err(|source| DatasetError::Io { path, source })?;
        Ok(manifest)
    }
}

/// An opened, checked dataset folder.
pub struct Dataset {
    pub dir: PathBuf,
    pub manifest: Manifest,
    x: NpyReader<C32>,
}

impl Dataset {
    /// Opens `dir` and checks manifest and data files against each other.
    pub fn open(dir: &Path) -> Result<Self, DatasetError> {
        let manifest_path = dir.join("manifest.json");
        if !manifest_path.exists() {
            return Err(DatasetError::NoManifest {
                dir: dir.to_path_buf(),
            });
        }
        let text = std::fs::read_to_string(&manifest_path).map_err(|source| DatasetError::Io {
            path: manifest_path.clone(),
            source,
        })?;
        let manifest: Manifest =
            serde_json::from_str(&text).map_err(|source| DatasetError::ManifestSyntax {
                path: manifest_path.clone(),
                source,
            })?;
        manifest.check(&manifest_path)?;
        let n = manifest.count;
        let expect_shape = |file: &str, expected: Vec<usize>| -> Result<(), DatasetError> {
            let path = dir.join(file);
            let h = npy::read_header(&path)?;
            if h.shape != expected {
                return Err(NpyError::Shape {
                    path,
                    found: h.shape,
                    expected: format!("{expected:?} (from manifest.json)"),
                }
                .into());
            }
            Ok(())
        };
        expect_shape("x.npy", vec![n, manifest.channels, manifest.window_len])?;
        expect_shape("y.npy", vec![n])?;
        expect_shape("snr.npy", vec![n])?;
        if manifest.has_angles {
            expect_shape("angles.npy", vec![n, 2])?;
        }
        if manifest.recordings().is_some() {
            expect_shape("recording.npy", vec![n])?;
        }
        let x = NpyReader::<C32>::open(&dir.join("x.npy"))?;
        if x.header.fortran_order {
            return Err(DatasetError::Data {
                path: dir.join("x.npy"),
                problem: "is stored in Fortran order; datasets must be C-ordered".into(),
            });
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            manifest,
            x,
        })
    }

    /// Number of windows.
    pub fn len(&self) -> usize {
        self.manifest.count
    }

    pub fn is_empty(&self) -> bool {
        self.manifest.count == 0
    }

    /// Samples per window (channels × window_len).
    pub fn window_size(&self) -> usize {
        self.manifest.channels * self.manifest.window_len
    }

    /// Class indices, checked to lie inside `manifest.classes`.
    pub fn labels(&self) -> Result<Vec<i64>, DatasetError> {
        let path = self.dir.join("y.npy");
        let y = npy::read_array::<i64>(&path)?.data;
        let k = self.manifest.classes.len() as i64;
        if let Some((i, v)) = y.iter().enumerate().find(|(_, v)| **v < 0 || **v >= k) {
            return Err(DatasetError::Data {
                path,
                problem: format!(
                    "label {v} at index {i} is outside 0..{k} (manifest.json lists {k} classes)"
                ),
            });
        }
        Ok(y)
    }

    /// Per-window SNR in dB.
    pub fn snr_db(&self) -> Result<Vec<f32>, DatasetError> {
        let path = self.dir.join("snr.npy");
        let s = npy::read_array::<f32>(&path)?.data;
        if let Some(i) = s.iter().position(|v| !v.is_finite()) {
            return Err(DatasetError::Data {
                path,
                problem: format!("SNR at index {i} is not a finite number"),
            });
        }
        Ok(s)
    }

    /// Azimuth and elevation in degrees, when the dataset has them.
    pub fn angles_deg(&self) -> Result<Option<Vec<[f32; 2]>>, DatasetError> {
        if !self.manifest.has_angles {
            return Ok(None);
        }
        let a = npy::read_array::<f32>(&self.dir.join("angles.npy"))?.data;
        Ok(Some(a.chunks_exact(2).map(|c| [c[0], c[1]]).collect()))
    }

    /// The recording each window was cut from (an index into `manifest.source.recordings`), for
    /// datasets cut from recordings; checked to lie inside that list and to agree with each
    /// recording's `windows`.
    pub fn recording_ids(&self) -> Result<Option<Vec<u32>>, DatasetError> {
        let Some(recordings) = self.manifest.recordings() else {
            return Ok(None);
        };
        let path = self.dir.join("recording.npy");
        let ids = npy::read_array::<i64>(&path)?.data;
        let r = recordings.len();
        let mut counts = vec![0usize; r];
        for (i, &id) in ids.iter().enumerate() {
            if id < 0 || id as usize >= r {
                return Err(DatasetError::Data {
                    path,
                    problem: format!(
                        "recording index {id} at window {i} is outside 0..{r} \
                         (manifest.json lists {r} recordings)"
                    ),
                });
            }
            counts[id as usize] += 1;
        }
        if let Some((rec, n)) = recordings
            .iter()
            .zip(&counts)
            .find(|(rec, n)| rec.windows != **n)
        {
            return Err(DatasetError::Data {
                path,
                problem: format!(
                    "holds {n} windows of recording '{}' but manifest.json says {}",
                    rec.file, rec.windows
                ),
            });
        }
        Ok(Some(ids.into_iter().map(|id| id as u32).collect()))
    }

    /// Reads windows `start..start + count` (channel-major within each window) and checks
    /// that every sample is finite.
    pub fn read_windows(&mut self, start: usize, count: usize) -> Result<Vec<C32>, DatasetError> {
        let w = self.window_size();
        let data = self.x.read_elements(start * w, count * w)?;
        if let Some(i) = data
            .iter()
            .position(|s| !(s.re.is_finite() && s.im.is_finite()))
        {
            return Err(DatasetError::Data {
                path: self.dir.join("x.npy"),
                problem: format!(
                    "window {} holds a non-finite sample (NaN or infinity) at offset {}",
                    start + i / w,
                    i % w
                ),
            });
        }
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(source: DatasetSource) -> Manifest {
        Manifest {
            format: String::new(),
            source,
            seed: None,
            generator_version: "test".into(),
            classes: vec!["A".into(), "B".into()],
            window_len: 0,
            channels: 0,
            sample_rate_hz: None,
            snr_grid_db: vec![],
            snr_definition: "test".into(),
            count: 0,
            counts_per_class: BTreeMap::new(),
            has_angles: false,
            array: None,
            notes: vec![],
        }
    }

    fn recordings(files: &[&str]) -> DatasetSource {
        DatasetSource::Recordings {
            window_hop: 4,
            max_windows_per_recording: None,
            snr: "sidecar".into(),
            recordings: files
                .iter()
                .map(|f| SourceRecording {
                    file: f.to_string(),
                    samples: 100,
                    windows: 0,
                })
                .collect(),
        }
    }

    /// Five windows of one 4-sample channel from recordings 1, 1, 0, 1, 0.
    fn write_recorded(dir: &Path) -> Result<Manifest, DatasetError> {
        let mut w = DatasetWriter::create_with_recordings(dir, 5, 1, 4, 2, false)?;
        for (i, r) in [1, 1, 0, 1, 0].into_iter().enumerate() {
            w.push_recorded(&[C32::new(i as f32, 0.0); 4], r, 0.0, None, r)?;
        }
        w.finish(manifest(recordings(&["a.npy", "b.npy"])))
    }

    #[test]
    fn recording_ids_are_written_counted_and_read_back() {
        let tmp = tempfile::tempdir().unwrap();
        let m = write_recorded(tmp.path()).unwrap();
        let windows: Vec<usize> = m.recordings().unwrap().iter().map(|r| r.windows).collect();
        assert_eq!(windows, [2, 3]);
        let d = Dataset::open(tmp.path()).unwrap();
        assert_eq!(d.recording_ids().unwrap(), Some(vec![1, 1, 0, 1, 0]));

        // A dataset written over it without recordings leaves no stale recording.npy.
        let mut w = DatasetWriter::create(tmp.path(), 1, 1, 4, 2, false).unwrap();
        w.push(&[C32::new(0.0, 0.0); 4], 0, 0.0, None).unwrap();
        let m = w.finish(manifest(DatasetSource::Radioml {
            variant: "x".into(),
            file: "x".into(),
            file_bytes: 0,
        }));
        assert!(m.unwrap().recordings().is_none());
        assert!(!tmp.path().join("recording.npy").exists());
        assert_eq!(
            Dataset::open(tmp.path()).unwrap().recording_ids().unwrap(),
            None
        );
    }

    #[test]
    fn recording_ids_and_the_manifest_must_agree() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        // A window without a recording in a writer with recordings, and the reverse.
        let mut w = DatasetWriter::create_with_recordings(dir, 1, 1, 4, 2, false).unwrap();
        let e = w.push(&[C32::new(0.0, 0.0); 4], 0, 0.0, None).unwrap_err();
        assert!(e.to_string().contains("lacks a recording index"), "{e}");
        let mut w = DatasetWriter::create(dir, 1, 1, 4, 2, false).unwrap();
        let e = w
            .push_recorded(&[C32::new(0.0, 0.0); 4], 0, 0.0, None, 0)
            .unwrap_err();
        assert!(e.to_string().contains("has a recording index"), "{e}");
        w.push(&[C32::new(0.0, 0.0); 4], 0, 0.0, None).unwrap();
        let e = w.finish(manifest(recordings(&["a.npy"]))).unwrap_err();
        assert!(e.to_string().contains("field 'source'"), "{e}");
        // An index past the manifest's list.
        let mut w = DatasetWriter::create_with_recordings(dir, 1, 1, 4, 2, false).unwrap();
        w.push_recorded(&[C32::new(0.0, 0.0); 4], 0, 0.0, None, 3)
            .unwrap();
        let e = w.finish(manifest(recordings(&["a.npy"]))).unwrap_err();
        assert!(e.to_string().contains("recording index 3"), "{e}");

        // recording.npy edited after the fact: out of range, or disagreeing with the manifest.
        write_recorded(dir).unwrap();
        let path = dir.join("recording.npy");
        npy::write_array(&path, &[5], &[1i64, 1, 0, 1, 2]).unwrap();
        let e = Dataset::open(dir).unwrap().recording_ids().unwrap_err();
        assert!(
            e.to_string().contains("recording.npy")
                && e.to_string().contains("index 2 at window 4"),
            "{e}"
        );
        npy::write_array(&path, &[5], &[1i64, 1, 1, 1, 0]).unwrap();
        let e = Dataset::open(dir).unwrap().recording_ids().unwrap_err();
        assert!(
            e.to_string().contains("1 windows of recording 'a.npy'"),
            "{e}"
        );
        npy::write_array(&path, &[4], &[1i64, 1, 1, 1]).unwrap();
        let e = Dataset::open(dir).err().unwrap();
        assert!(e.to_string().contains("recording.npy"), "{e}");
    }
}
