//! Recordings → dataset: long multi-channel recordings, each labelled by its sidecar, cut into
//! windows and written as a dataset folder ([`super::dataset`]) that remembers which recording
//! every window came from; behind `specwatch-train import-recordings`.
//!
//! This is how an array's own recordings become training data (the MoCo multi-task paper's
//! 4,609 files of 4 × 1,000,000 samples with azimuth/elevation, cut into 1024-sample windows and
//! split **by file**: windows of one recording are strongly correlated, so a split by window
//! would leak).
//!
//! # Input
//!
//! Each recording is a capture file ([`super::capture`]): `NAME.npy`, dtype `<c8` (complex64)
//! or `<c16` (complex128, narrowed to complex64), shape `(channels, samples)` (C or Fortran
//! order) or `(samples,)` (one channel), read in chunks — never loaded whole. Beside it,
//! `NAME.json`, its sidecar ([`super::sidecar`]), of which these fields are used:
//!
//! ```json
//! {
//!   "sample_rate_hz": 20000000.0,
//!   "array": { "layout": { "kind": "ula", "elements": 4, "spacing_wavelengths": 0.5 },
//!              "positions_wavelengths": [[0, -0.75, 0], [0, -0.25, 0], [0, 0.25, 0], [0, 0.75, 0]] },
//!   "truth": [
//!     { "class": "QPSK", "snr_db": 12.0, "azimuth_deg": -35.0, "elevation_deg": 10.0,
//!       "sample_start": 0, "sample_count": 1000000 }
//!   ]
//! }
//! ```
//!
//! - `truth` (required, at least one span): what the recording holds where. A window is cut
//!   only from inside one span, and takes that span's `class`, `snr_db` and angles. Usually one
//!   span covers the whole recording. Spans must not overlap and must cover every channel (no
//!   `channel` field).
//! - `azimuth_deg` / `elevation_deg`: when the spans give azimuth, the dataset has
//!   `angles.npy`; then every span of every recording must give it. A span without elevation
//!   has elevation 0 (said in the manifest's notes); again, all spans or none.
//! - `sample_rate_hz` and `array`: copied into the manifest; recordings that give different
//!   values are refused.
//!
//! # Windows
//!
//! In each span, windows of `window_len` samples (all channels) start at the span's first
//! sample and every `hop` samples after it (default: `hop = window_len`, no overlap), as long
//! as they end inside the span. With `max_windows_per_recording`, a recording with more windows
//! keeps that many, spread evenly over all of its windows. A recording that yields no window
//! (shorter than one window, or no span that holds one) is refused.
//!
//! # Output
//!
//! A dataset folder per the contract: `x.npy` complex64 `(N, channels, window_len)` written as
//! the recordings are read, `y.npy`, `snr.npy`, `angles.npy` (when the spans give angles) and
//! **`recording.npy` int64 `(N,)`**: the index of each window's recording in the manifest's
//! `source.recordings` (kind `recordings`: file name, samples per channel and windows of each
//! recording, plus the hop, the cap and the SNR source). The trainer's split reads it and keeps
//! each recording's windows together (`train::data::Split::stratified`).
//!
//! Recordings are written whole, one after another, in round-robin order over their classes
//! (the first recording of each class, then the second, …; within a class in input order), so a
//! `max_windows` prefix of the dataset holds whole recordings of every class (the last one
//! perhaps in part). A recording's
//! class, for that order and for the split, is the class of most of its windows.
//!
//! - Classes: the sidecars' class names sorted, or [`ConvertOptions::classes`] (which must name
//!   every class the sidecars use; its order sets `y`).
//! - SNR ([`SnrSource`]): by default the span's `snr_db` (the SNR stated for the recording;
//!   `snr_grid_db` is then the distinct stated values); with [`SnrSource::Estimate`], estimated
//!   from each window by [`crate::dsp::snr::window_snr_db`], the daemon's estimator
//!   (`snr_grid_db` is then empty: reports bin to the nearest whole dB). The manifest's
//!   `snr_definition` says which.
//!
//! Errors name the file, the field and what was expected: a non-complex dtype, a recording
//! whose channel count differs from the first's, one too short for a window, a missing sidecar,
//! a sidecar without a `truth` span, a class that `classes` does not list, angles on some spans
//! but not others.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::C32;
use super::capture::{Capture, CaptureError, CaptureFormat};
use super::dataset::{DatasetError, DatasetSource, DatasetWriter, Manifest, SourceRecording};
use super::sidecar::{Sidecar, TruthSpan, sidecar_path};
use crate::dsp::snr::window_snr_db;

/// Window length when none is given (the MoCo paper's).
pub const DEFAULT_WINDOW_LEN: usize = 1024;

/// Samples per channel read from a recording at once (at least one window).
const READ_CHUNK: usize = 1 << 16;

/// Errors from converting recordings; every one names the file (or the option) at fault.
#[derive(Debug, thiserror::Error)]
pub enum RecordingsError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {problem}")]
    Recording { path: PathBuf, problem: String },
    #[error("{path}: field '{field}': {problem}")]
    Sidecar {
        path: PathBuf,
        field: String,
        problem: String,
    },
    #[error("option '{option}': {problem}")]
    BadOption {
        option: &'static str,
        problem: String,
    },
}

/// Where each window's SNR comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SnrSource {
    /// The `snr_db` of the sidecar span the window lies in.
    #[default]
    Sidecar,
    /// [`window_snr_db`] of the window (the daemon's estimator).
    Estimate,
}

impl SnrSource {
    /// The name the manifest and the command line use.
    pub fn name(self) -> &'static str {
        match self {
            SnrSource::Sidecar => "sidecar",
            SnrSource::Estimate => "estimate",
        }
    }
}

impl std::str::FromStr for SnrSource {
    type Err = RecordingsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sidecar" => Ok(SnrSource::Sidecar),
            "estimate" => Ok(SnrSource::Estimate),
            other => Err(RecordingsError::BadOption {
                option: "snr",
                problem: format!("is '{other}'; expected sidecar or estimate"),
            }),
        }
    }
}

/// Progress of [`convert`]: `done` of `total` windows written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvertProgress {
    pub done: u64,
    pub total: u64,
}

/// Options of [`convert`].
pub struct ConvertOptions {
    /// Samples per window and channel.
    pub window_len: usize,
    /// Samples between window starts (default: `window_len`).
    pub hop: Option<usize>,
    /// Keep at most this many windows of each recording, spread evenly over it.
    pub max_windows_per_recording: Option<usize>,
    /// Class names in `y` order (default: the sidecars' classes sorted by name).
    pub classes: Option<Vec<String>>,
    pub snr: SnrSource,
    /// Called as windows are written.
    pub progress: Option<Box<dyn Fn(ConvertProgress) + Send + Sync>>,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        Self {
            window_len: DEFAULT_WINDOW_LEN,
            hop: None,
            max_windows_per_recording: None,
            classes: None,
            snr: SnrSource::Sidecar,
            progress: None,
        }
    }
}

impl std::fmt::Debug for ConvertOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConvertOptions")
            .field("window_len", &self.window_len)
            .field("hop", &self.hop)
            .field("max_windows_per_recording", &self.max_windows_per_recording)
            .field("classes", &self.classes)
            .field("snr", &self.snr)
            .field("progress", &self.progress.as_ref().map(|_| "callback"))
            .finish()
    }
}

impl ConvertOptions {
    fn hop(&self) -> usize {
        self.hop.unwrap_or(self.window_len)
    }

    fn check(&self) -> Result<(), RecordingsError> {
        let bad = |option, problem: &str| {
            Err(RecordingsError::BadOption {
                option,
                problem: problem.into(),
            })
        };
        if self.window_len == 0 {
            return bad("window-len", "is 0; expected at least 1 sample");
        }
        if self.hop == Some(0) {
            return bad(
                "hop",
                "is 0; expected at least 1 sample between window starts",
            );
        }
        if self.max_windows_per_recording == Some(0) {
            return bad(
                "max-windows-per-recording",
                "is 0, which would keep no windows; expected at least 1",
            );
        }
        if let Some(list) = &self.classes {
            let mut seen = BTreeSet::new();
            if let Some(dup) = list.iter().find(|c| !seen.insert(c.as_str())) {
                return Err(RecordingsError::BadOption {
                    option: "classes",
                    problem: format!("names '{dup}' twice; expected distinct class names"),
                });
            }
            if list.is_empty() || list.iter().any(|c| c.trim().is_empty()) {
                return bad("classes", "holds an empty name; expected class names");
            }
        }
        Ok(())
    }
}

/// The recordings named by `inputs`: a folder stands for the `.npy` files directly in it
/// (sorted by name), a file for itself. Refuses a folder without `.npy` files, a file that is
/// not `.npy`, a path that does not exist and two recordings with the same file name.
pub fn list_recordings(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, RecordingsError> {
    if inputs.is_empty() {
        return Err(RecordingsError::BadOption {
            option: "recordings",
            problem: "names nothing; expected recording files (NAME.npy) or folders of them".into(),
        });
    }
    let is_npy = |p: &Path| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    let mut files = Vec::new();
    for input in inputs {
        let io = |source| RecordingsError::Io {
            path: input.clone(),
            source,
        };
        if input.is_dir() {
            let mut found = Vec::new();
            for entry in std::fs::read_dir(input).map_err(io)? {
                let path = entry.map_err(io)?.path();
                if path.is_file() && is_npy(&path) {
                    found.push(path);
                }
            }
            if found.is_empty() {
                return Err(RecordingsError::Recording {
                    path: input.clone(),
                    problem: "the folder holds no .npy files; expected recordings NAME.npy \
                              with their sidecars NAME.json"
                        .into(),
                });
            }
            found.sort();
            files.extend(found);
        } else if !input.exists() {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such file or folder",
            )));
        } else if !is_npy(input) {
            return Err(RecordingsError::Recording {
                path: input.clone(),
                problem: "is not a .npy file; expected a recording NAME.npy (complex64 or \
                          complex128, (channels, samples)) or a folder of them"
                    .into(),
            });
        } else {
            files.push(input.clone());
        }
    }
    let mut names: BTreeMap<String, &PathBuf> = BTreeMap::new();
    for f in &files {
        if let Some(other) = names.insert(file_name(f), f) {
            return Err(RecordingsError::Recording {
                path: f.clone(),
                problem: format!(
                    "has the same file name as {}; expected recordings with distinct names \
                     (the dataset names them by file name)",
                    other.display()
                ),
            });
        }
    }
    Ok(files)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// One window to cut: where it starts, and the sidecar truth span it lies in (which says what
/// it is). 16 bytes, so that a plan of millions of windows stays small.
#[derive(Debug, Clone, Copy, PartialEq)]
struct WindowPlan {
    start: u64,
    /// Index into the recording's sidecar `truth`.
    span: usize,
}

/// What a truth span makes of its windows.
#[derive(Debug, Clone, Copy, PartialEq)]
struct SpanLabel {
    /// Index into the dataset's classes (`y`).
    class: usize,
    snr_db: f32,
    /// Azimuth and elevation, degrees, for datasets with angles.
    angles_deg: Option<[f32; 2]>,
}

/// What the first pass learnt of one recording.
#[derive(Debug)]
struct RecordingPlan {
    path: PathBuf,
    samples: u64,
    windows: Vec<WindowPlan>,
    /// What each sidecar truth span makes of its windows (by span index).
    labels: Vec<SpanLabel>,
    /// The class of most of its windows (`y` index).
    class: usize,
}

/// The window starts of one span `[start, start + count)`: every `hop` samples from its start,
/// as long as a whole window fits.
fn span_starts(start: u64, count: u64, len: usize, hop: usize) -> impl Iterator<Item = u64> {
    let n = if count < len as u64 {
        0
    } else {
        (count - len as u64) / hop as u64 + 1
    };
    (0..n).map(move |k| start + k * hop as u64)
}

/// `keep` of `n` items, spread evenly: indices `⌊j·n/keep⌋`.
fn spread(n: usize, keep: usize) -> Vec<usize> {
    if keep >= n {
        return (0..n).collect();
    }
    (0..keep).map(|j| j * n / keep).collect()
}

/// One recording as the first pass read it: its shape, its sidecar and its windows.
#[derive(Debug)]
struct Scanned {
    path: PathBuf,
    /// The sidecar's path.
    side: PathBuf,
    channels: usize,
    samples: u64,
    sidecar: Sidecar,
    windows: Vec<WindowPlan>,
}

impl Scanned {
    /// The truth spans that hold at least one window, with their indices.
    fn used_spans(&self) -> impl Iterator<Item = (usize, &TruthSpan)> {
        let mut used = vec![false; self.sidecar.truth.len()];
        for w in &self.windows {
            used[w.span] = true;
        }
        self.sidecar
            .truth
            .iter()
            .enumerate()
            .filter(move |(i, _)| used[*i])
    }
}

/// Reads one recording's header and sidecar, checks them and plans its windows (first pass).
fn plan_recording(path: &Path, opts: &ConvertOptions) -> Result<Scanned, RecordingsError> {
    let capture = Capture::open(path)?;
    let side = sidecar_path(path);
    if capture.format() != CaptureFormat::Npy {
        return Err(RecordingsError::Recording {
            path: path.to_path_buf(),
            problem: "is not a .npy recording".into(),
        });
    }
    let Some(sidecar) = capture.sidecar().cloned() else {
        return Err(RecordingsError::Recording {
            path: path.to_path_buf(),
            problem: format!(
                "has no sidecar {}; expected one whose 'truth' spans give the recording's class \
                 (and SNR, azimuth/elevation)",
                side.display()
            ),
        });
    };
    let bad = |field: String, problem: String| RecordingsError::Sidecar {
        path: side.clone(),
        field,
        problem,
    };
    if sidecar.truth.is_empty() {
        return Err(bad(
            "truth".into(),
            "is missing or empty; expected at least one span {\"class\", \"snr_db\", \
             \"sample_start\", \"sample_count\"} giving the recording's class"
                .into(),
        ));
    }
    let (len, hop) = (opts.window_len, opts.hop());
    if capture.len() < len as u64 {
        return Err(RecordingsError::Recording {
            path: path.to_path_buf(),
            problem: format!(
                "has {} samples per channel, fewer than one window of {len} (--window-len); \
                 expected at least {len}",
                capture.len()
            ),
        });
    }
    let mut spans: Vec<(usize, &TruthSpan)> = sidecar.truth.iter().enumerate().collect();
    spans.sort_by_key(|(_, s)| s.sample_start);
    for (i, span) in &spans {
        if let Some(c) = span.channel {
            return Err(bad(
                format!("truth[{i}].channel"),
                format!(
                    "is {c}; a recording's windows take every channel, so expected no \
                     'channel' (a span on every channel)"
                ),
            ));
        }
    }
    for pair in spans.windows(2) {
        let ((i, a), (j, b)) = (pair[0], pair[1]);
        let a_end = a.sample_start + a.sample_count;
        if b.sample_start < a_end {
            return Err(bad(
                format!("truth[{j}]"),
                format!(
                    "covers samples {}..{}, overlapping truth[{i}] ({}..{a_end}); expected \
                     spans that do not overlap",
                    b.sample_start,
                    b.sample_start + b.sample_count,
                    a.sample_start
                ),
            ));
        }
    }
    let mut windows = Vec::new();
    for &(i, span) in &spans {
        windows.extend(
            span_starts(span.sample_start, span.sample_count, len, hop)
                .map(|start| WindowPlan { start, span: i }),
        );
    }
    if windows.is_empty() {
        let longest = sidecar
            .truth
            .iter()
            .map(|s| s.sample_count)
            .max()
            .unwrap_or(0);
        return Err(bad(
            "truth".into(),
            format!(
                "no span holds a whole window of {len} samples (the longest holds {longest}); \
                 expected a span of at least {len} samples (--window-len)"
            ),
        ));
    }
    if let Some(max) = opts.max_windows_per_recording {
        let keep = spread(windows.len(), max);
        windows = keep.into_iter().map(|k| windows[k]).collect();
    }
    Ok(Scanned {
        path: path.to_path_buf(),
        side,
        channels: capture.channels(),
        samples: capture.len(),
        sidecar,
        windows,
    })
}

/// What every recording agrees on, and each recording's plan.
#[derive(Debug)]
struct Plan {
    channels: usize,
    classes: Vec<String>,
    recordings: Vec<RecordingPlan>,
    has_angles: bool,
    elevation_given: bool,
    sample_rate_hz: Option<f64>,
    array: Option<serde_json::Value>,
}

impl Plan {
    fn windows(&self) -> usize {
        self.recordings.iter().map(|r| r.windows.len()).sum()
    }
}

/// The first pass: every header and sidecar read and checked, every window planned.
fn plan(files: &[PathBuf], opts: &ConvertOptions) -> Result<Plan, RecordingsError> {
    let mut seen: Vec<Scanned> = Vec::with_capacity(files.len());
    for path in files {
        let scanned = plan_recording(path, opts)?;
        let channels = scanned.channels;
        if let Some(first) = seen.first()
            && first.channels != channels
        {
            return Err(RecordingsError::Recording {
                path: path.clone(),
                problem: format!(
                    "has {channels} channel(s) but {} (the first recording) has {}; expected \
                     every recording to have the same channels",
                    first.path.display(),
                    first.channels
                ),
            });
        }
        seen.push(scanned);
    }
    let Some(first) = seen.first() else {
        return Err(RecordingsError::BadOption {
            option: "recordings",
            problem: "names nothing; expected at least one recording".into(),
        });
    };
    let channels = first.channels;

    // Classes: those of the spans that hold windows, sorted, or the given list (which must
    // name them all).
    let used: BTreeSet<&str> = seen
        .iter()
        .flat_map(|s| s.used_spans().map(|(_, span)| span.class.as_str()))
        .collect();
    let classes: Vec<String> = match &opts.classes {
        None => used.iter().map(|c| c.to_string()).collect(),
        Some(list) => {
            for s in &seen {
                for (i, span) in s.used_spans() {
                    if !list.contains(&span.class) {
                        return Err(RecordingsError::Sidecar {
                            path: s.side.clone(),
                            field: format!("truth[{i}].class"),
                            problem: format!(
                                "is '{}', which --classes does not list; expected one of {}",
                                span.class,
                                list.join(", ")
                            ),
                        });
                    }
                }
            }
            list.clone()
        }
    };

    // Angles: on every span of every recording, or on none.
    let spans = || {
        seen.iter().flat_map(|s| {
            s.sidecar
                .truth
                .iter()
                .enumerate()
                .map(move |(i, t)| (s, i, t))
        })
    };
    let all_or_none = |name: &str, has: fn(&TruthSpan) -> bool| {
        let Some((giver, _, _)) = spans().find(|(_, _, t)| has(t)) else {
            return Ok(false);
        };
        match spans().find(|(_, _, t)| !has(t)) {
            None => Ok(true),
            Some((s, i, _)) => Err(RecordingsError::Sidecar {
                path: s.side.clone(),
                field: format!("truth[{i}].{name}"),
                problem: format!(
                    "is missing but {} gives it; expected every span of every recording to \
                     give {name}, or none",
                    giver.side.display()
                ),
            }),
        }
    };
    let has_angles = all_or_none("azimuth_deg", |t| t.azimuth_deg.is_some())?;
    let elevation_given = all_or_none("elevation_deg", |t| t.elevation_deg.is_some())?;
    if elevation_given && !has_angles {
        let (s, i, _) = spans().next().expect("every recording has a span");
        return Err(RecordingsError::Sidecar {
            path: s.side.clone(),
            field: format!("truth[{i}].azimuth_deg"),
            problem: "is missing but the spans give elevation_deg; expected azimuth_deg beside \
                      elevation_deg"
                .into(),
        });
    }

    // Sample rate and array: one for the dataset.
    let mut sample_rate_hz: Option<(f64, PathBuf)> = None;
    let mut array: Option<(serde_json::Value, PathBuf)> = None;
    for s in &seen {
        if let Some(fs) = s.sidecar.sample_rate_hz {
            match &sample_rate_hz {
                Some((other, from)) if *other != fs => {
                    return Err(RecordingsError::Sidecar {
                        path: s.side.clone(),
                        field: "sample_rate_hz".into(),
                        problem: format!(
                            "is {fs} but {} says {other}; expected one sample rate for every \
                             recording",
                            from.display()
                        ),
                    });
                }
                Some(_) => {}
                None => sample_rate_hz = Some((fs, s.side.clone())),
            }
        }
        if let Some(geometry) = &s.sidecar.array {
            let value = serde_json::to_value(geometry).expect("an array geometry serialises");
            match &array {
                Some((other, from)) if *other != value => {
                    return Err(RecordingsError::Sidecar {
                        path: s.side.clone(),
                        field: "array".into(),
                        problem: format!(
                            "differs from the array of {}; expected one array for every \
                             recording",
                            from.display()
                        ),
                    });
                }
                Some(_) => {}
                None => array = Some((value, s.side.clone())),
            }
        }
    }

    let recordings: Vec<RecordingPlan> = seen
        .into_iter()
        .map(|s| {
            let labels: Vec<SpanLabel> = s
                .sidecar
                .truth
                .iter()
                .map(|t| SpanLabel {
                    // A span without windows may name a class outside the list; it labels
                    // nothing.
                    class: classes.iter().position(|c| *c == t.class).unwrap_or(0),
                    snr_db: t.snr_db,
                    angles_deg: t.azimuth_deg.map(|az| [az, t.elevation_deg.unwrap_or(0.0)]),
                })
                .collect();
            let mut counts = vec![0usize; classes.len()];
            for w in &s.windows {
                counts[labels[w.span].class] += 1;
            }
            // The class of most windows; the lowest index among equals.
            let class = (0..counts.len())
                .max_by_key(|&c| (counts[c], std::cmp::Reverse(c)))
                .unwrap_or(0);
            RecordingPlan {
                path: s.path,
                samples: s.samples,
                windows: s.windows,
                labels,
                class,
            }
        })
        .collect();
    Ok(Plan {
        channels,
        classes,
        recordings: round_robin_by_class(recordings),
        has_angles,
        elevation_given,
        sample_rate_hz: sample_rate_hz.map(|(fs, _)| fs),
        array: array.map(|(v, _)| v),
    })
}

/// Recordings reordered round-robin over their classes: the first of each class (in class
/// order), then the second, …; within a class in the given order.
fn round_robin_by_class(recordings: Vec<RecordingPlan>) -> Vec<RecordingPlan> {
    let mut by_class: BTreeMap<usize, std::collections::VecDeque<RecordingPlan>> = BTreeMap::new();
    for r in recordings {
        by_class.entry(r.class).or_default().push_back(r);
    }
    let mut out = Vec::new();
    loop {
        let before = out.len();
        for queue in by_class.values_mut() {
            if let Some(r) = queue.pop_front() {
                out.push(r);
            }
        }
        if out.len() == before {
            return out;
        }
    }
}

/// Converts the recordings `files` (see [`list_recordings`]) into a dataset folder `out` and
/// returns its manifest. Two passes: every header and sidecar is read and checked first (so a
/// bad recording is reported before anything is written), then every recording is read in
/// chunks and its windows written.
pub fn convert(
    files: &[PathBuf],
    out: &Path,
    opts: &ConvertOptions,
) -> Result<Manifest, RecordingsError> {
    opts.check()?;
    let plan = plan(files, opts)?;
    let (channels, len) = (plan.channels, opts.window_len);
    let total = plan.windows();
    let mut writer = DatasetWriter::create_with_recordings(
        out,
        total,
        channels,
        len,
        plan.classes.len(),
        plan.has_angles,
    )?;
    let report = |done: usize| {
        if let Some(p) = &opts.progress {
            p(ConvertProgress {
                done: done as u64,
                total: total as u64,
            });
        }
    };
    report(0);
    let mut stated_snrs: BTreeSet<u32> = BTreeSet::new();
    let mut bufs: Vec<Vec<C32>> = vec![Vec::new(); channels];
    let mut window = vec![C32::new(0.0, 0.0); channels * len];
    let chunk = READ_CHUNK.max(len) as u64;
    for (id, rec) in plan.recordings.iter().enumerate() {
        let mut capture = Capture::open(&rec.path)?;
        if capture.channels() != channels || capture.len() != rec.samples {
            return Err(RecordingsError::Recording {
                path: rec.path.clone(),
                problem: format!(
                    "changed while being converted: it now holds {} channel(s) × {} samples, \
                     {channels} × {} when first read",
                    capture.channels(),
                    capture.len(),
                    rec.samples
                ),
            });
        }
        let w = &rec.windows;
        let mut k = 0;
        while k < w.len() {
            // One read for a run of windows that lie close together (gaps of at most a window),
            // up to `chunk` samples per channel.
            let start = w[k].start;
            let mut end = start + len as u64;
            let mut j = k + 1;
            while j < w.len()
                && w[j].start >= w[j - 1].start
                && w[j].start <= end + len as u64
                && w[j].start + len as u64 - start <= chunk
            {
                end = end.max(w[j].start + len as u64);
                j += 1;
            }
            capture.read_into(start, (end - start) as usize, &mut bufs)?;
            for plan in &w[k..j] {
                let label = rec.labels[plan.span];
                let at = (plan.start - start) as usize;
                for (c, buf) in bufs.iter().enumerate() {
                    window[c * len..(c + 1) * len].copy_from_slice(&buf[at..at + len]);
                }
                let snr_db = match opts.snr {
                    SnrSource::Sidecar => {
                        stated_snrs.insert(label.snr_db.to_bits());
                        label.snr_db
                    }
                    SnrSource::Estimate => window_snr_db(&window, channels),
                };
                writer.push_recorded(&window, label.class, snr_db, label.angles_deg, id)?;
            }
            k = j;
            report(writer.written());
        }
    }

    let mut snr_grid_db: Vec<f32> = stated_snrs.into_iter().map(f32::from_bits).collect();
    snr_grid_db.sort_by(f32::total_cmp);
    let snr_definition = match opts.snr {
        SnrSource::Sidecar => "the snr_db of the sidecar truth span each window lies in: the SNR \
                               stated for the recording (or that part of it) in dB, the same \
                               for all its windows, not measured per window"
            .to_string(),
        SnrSource::Estimate => "estimated from each window by specwatch's one estimator \
                                (dsp::snr::window_snr_db: spectral noise floor per channel, \
                                averaged in dB over the channels), the same estimate the \
                                daemon computes at serving time; not a true SNR"
            .to_string(),
    };
    let hop = opts.hop();
    let mut notes = vec![
        format!(
            "Cut from {} recordings into windows of {len} samples every {hop} samples inside \
             each sidecar truth span; recording.npy (int64, N) gives each window's index into \
             source.recordings, and training splits keep every recording's windows on one side.",
            plan.recordings.len()
        ),
        "Recordings are written whole, in round-robin order over their classes (the class of \
         most of a recording's windows), so a max-windows prefix holds whole recordings of every \
         class."
            .to_string(),
    ];
    if let Some(max) = opts.max_windows_per_recording {
        notes.push(format!(
            "At most {max} windows were kept per recording, spread evenly over it."
        ));
    }
    if opts.classes.is_none() {
        notes.push("Classes are the sidecars' class names sorted by name.".into());
    }
    if plan.has_angles && !plan.elevation_given {
        notes.push(
            "The sidecars give azimuth only; angles.npy holds elevation 0 for every window.".into(),
        );
    }
    let recordings = plan
        .recordings
        .iter()
        .map(|r| SourceRecording {
            file: file_name(&r.path),
            samples: r.samples,
            windows: 0,
        })
        .collect();
    let manifest = Manifest {
        format: String::new(),
        source: DatasetSource::Recordings {
            window_hop: hop,
            max_windows_per_recording: opts.max_windows_per_recording,
            snr: opts.snr.name().into(),
            recordings,
        },
        seed: None,
        generator_version: format!(
            "specwatch {} recordings importer",
            env!("CARGO_PKG_VERSION")
        ),
        classes: plan.classes.clone(),
        window_len: len,
        channels,
        sample_rate_hz: plan.sample_rate_hz,
        snr_grid_db,
        snr_definition,
        count: total,
        counts_per_class: BTreeMap::new(),
        has_angles: plan.has_angles,
        array: plan.array.clone(),
        notes,
    };
    Ok(writer.finish(manifest)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iq::dataset::Dataset;
    use crate::iq::npy::{self, Dtype};
    use crate::iq::sidecar::TruthSpan;

    /// Sample `n` of channel `c` of recording `tag`: `(tag·1000 + c, n)`, so every window says
    /// where it was cut from.
    fn sample(tag: usize, c: usize, n: usize) -> C32 {
        C32::new((tag * 1000 + c) as f32, n as f32)
    }

    fn span(
        class: &str,
        snr_db: f32,
        angles: Option<(f32, f32)>,
        start: u64,
        count: u64,
    ) -> TruthSpan {
        TruthSpan {
            class: class.into(),
            snr_db,
            azimuth_deg: angles.map(|a| a.0),
            elevation_deg: angles.map(|a| a.1),
            sample_start: start,
            sample_count: count,
            channel: None,
        }
    }

    /// Writes `DIR/NAME.npy` (complex64, `(channels, samples)`) and, when `truth` is given,
    /// its sidecar.
    fn recording(
        dir: &Path,
        name: &str,
        tag: usize,
        channels: usize,
        samples: usize,
        truth: Option<Vec<TruthSpan>>,
    ) -> PathBuf {
        let path = dir.join(format!("{name}.npy"));
        let data: Vec<C32> = (0..channels)
            .flat_map(|c| (0..samples).map(move |n| sample(tag, c, n)))
            .collect();
        npy::write_array(&path, &[channels, samples], &data).unwrap();
        if let Some(truth) = truth {
            let sidecar = Sidecar {
                sample_rate_hz: Some(1e6),
                truth,
                ..Sidecar::default()
            };
            sidecar.save(&sidecar_path(&path)).unwrap();
        }
        path
    }

    fn whole(
        class: &str,
        snr_db: f32,
        angles: Option<(f32, f32)>,
        samples: usize,
    ) -> Option<Vec<TruthSpan>> {
        Some(vec![span(class, snr_db, angles, 0, samples as u64)])
    }

    fn options(window_len: usize) -> ConvertOptions {
        ConvertOptions {
            window_len,
            ..ConvertOptions::default()
        }
    }

    #[test]
    fn cuts_recordings_into_windows_that_remember_their_recording() {
        let tmp = tempfile::tempdir().unwrap();
        let (inp, out) = (tmp.path().join("in"), tmp.path().join("ds"));
        std::fs::create_dir(&inp).unwrap();
        // Two of class B (tags 0, 1), two of class A (tags 2, 3); 2 channels × 2500 samples:
        // 4 windows of 512 each (the last 452 samples are left over).
        recording(
            &inp,
            "r0",
            0,
            2,
            2500,
            whole("B", 10.0, Some((-20.0, 5.0)), 2500),
        );
        recording(
            &inp,
            "r1",
            1,
            2,
            2500,
            whole("B", 20.0, Some((30.0, 0.0)), 2500),
        );
        recording(
            &inp,
            "r2",
            2,
            2,
            2500,
            whole("A", 10.0, Some((40.0, -5.0)), 2500),
        );
        recording(
            &inp,
            "r3",
            3,
            2,
            2500,
            whole("A", 10.0, Some((50.0, 10.0)), 2500),
        );
        let files = list_recordings(std::slice::from_ref(&inp)).unwrap();
        assert_eq!(files.len(), 4);
        let m = convert(&files, &out, &options(512)).unwrap();
        assert_eq!(m.classes, ["A", "B"]);
        assert_eq!((m.count, m.channels, m.window_len), (16, 2, 512));
        assert_eq!(m.snr_grid_db, [10.0, 20.0]);
        assert!(m.has_angles);
        assert_eq!(m.sample_rate_hz, Some(1e6));
        // Round-robin over class: A's first, B's first, A's second, B's second.
        let DatasetSource::Recordings {
            recordings,
            window_hop,
            snr,
            ..
        } = &m.source
        else {
            panic!("{:?}", m.source)
        };
        let names: Vec<&str> = recordings.iter().map(|r| r.file.as_str()).collect();
        assert_eq!(names, ["r2.npy", "r0.npy", "r3.npy", "r1.npy"]);
        assert!(
            recordings
                .iter()
                .all(|r| r.windows == 4 && r.samples == 2500)
        );
        assert_eq!((*window_hop, snr.as_str()), (512, "sidecar"));

        let mut d = Dataset::open(&out).unwrap();
        assert_eq!(d.manifest, m);
        let ids = d.recording_ids().unwrap().unwrap();
        assert_eq!(ids, [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]);
        assert_eq!(
            d.labels().unwrap(),
            [0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1]
        );
        let snr = d.snr_db().unwrap();
        assert_eq!(&snr[12..], [20.0; 4]);
        let angles = d.angles_deg().unwrap().unwrap();
        assert_eq!(angles[0], [40.0, -5.0]);
        assert_eq!(angles[15], [30.0, 0.0]);
        let x = d.read_windows(0, 16).unwrap();
        let tags = [2, 0, 3, 1];
        for (i, w) in x.chunks_exact(2 * 512).enumerate() {
            let (tag, k) = (tags[i / 4], i % 4);
            for c in 0..2 {
                assert_eq!(
                    w[c * 512],
                    sample(tag, c, k * 512),
                    "window {i} channel {c}"
                );
                assert_eq!(w[c * 512 + 511], sample(tag, c, k * 512 + 511));
            }
        }
    }

    #[test]
    fn hop_cap_spans_and_long_recordings_choose_the_windows() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("ds");
        // Two spans of different classes with a gap; windows of 100 every 50 samples.
        let truth = vec![
            span("X", 3.0, None, 600, 300), // 600..900: starts 600, 650, …, 800 (5)
            span("Y", 6.0, None, 0, 250),   // 0..250: starts 0, 50, 100, 150 (4)
        ];
        let a = recording(tmp.path(), "a", 0, 1, 1000, Some(truth));
        let opts = ConvertOptions {
            window_len: 100,
            hop: Some(50),
            ..ConvertOptions::default()
        };
        let m = convert(std::slice::from_ref(&a), &out, &opts).unwrap();
        assert_eq!(m.count, 9);
        assert_eq!(m.counts_per_class["X"], 5);
        let mut d = Dataset::open(&out).unwrap();
        let starts: Vec<f32> = d
            .read_windows(0, 9)
            .unwrap()
            .chunks(100)
            .map(|w| w[0].im)
            .collect();
        assert_eq!(
            starts,
            [0.0, 50.0, 100.0, 150.0, 600.0, 650.0, 700.0, 750.0, 800.0]
        );
        assert_eq!(d.labels().unwrap(), [1, 1, 1, 1, 0, 0, 0, 0, 0]);
        assert_eq!(d.snr_db().unwrap()[4], 3.0);

        // At most 3 of the 9, spread evenly: windows 0, 3 and 6.
        let opts = ConvertOptions {
            max_windows_per_recording: Some(3),
            ..opts
        };
        convert(&[a], &out, &opts).unwrap();
        let mut d = Dataset::open(&out).unwrap();
        let starts: Vec<f32> = d
            .read_windows(0, 3)
            .unwrap()
            .chunks(100)
            .map(|w| w[0].im)
            .collect();
        assert_eq!(starts, [0.0, 150.0, 700.0]);

        // A recording longer than one read: windows across read boundaries come out whole.
        let long = recording(
            tmp.path(),
            "long",
            7,
            1,
            200_000,
            whole("Z", 0.0, None, 200_000),
        );
        let m = convert(&[long], &out, &options(1000)).unwrap();
        assert_eq!(m.count, 200);
        let mut d = Dataset::open(&out).unwrap();
        for (i, w) in d.read_windows(0, 200).unwrap().chunks(1000).enumerate() {
            assert!(
                w.iter()
                    .enumerate()
                    .all(|(k, s)| *s == sample(7, 0, i * 1000 + k)),
                "window {i}"
            );
        }
    }

    #[test]
    fn complex128_recordings_are_read_and_snr_can_be_estimated() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("c16.npy");
        // A tone on one channel, stored as complex128.
        let samples = 4096;
        let tone: Vec<C32> = (0..samples)
            .map(|n| C32::from_polar(1.0, 0.7 * n as f32))
            .collect();
        let mut bytes = npy::encode_header(Dtype::Complex128, &[1, samples]);
        for s in &tone {
            bytes.extend_from_slice(&f64::from(s.re).to_le_bytes());
            bytes.extend_from_slice(&f64::from(s.im).to_le_bytes());
        }
        std::fs::write(&path, bytes).unwrap();
        Sidecar {
            truth: vec![span("T", 99.0, None, 0, samples as u64)],
            ..Sidecar::default()
        }
        .save(&sidecar_path(&path))
        .unwrap();
        let out = tmp.path().join("ds");
        let opts = ConvertOptions {
            snr: SnrSource::Estimate,
            ..options(1024)
        };
        let m = convert(&[path], &out, &opts).unwrap();
        assert!(m.snr_grid_db.is_empty());
        assert!(
            m.snr_definition.contains("window_snr_db"),
            "{}",
            m.snr_definition
        );
        let mut d = Dataset::open(&out).unwrap();
        let x = d.read_windows(0, 4).unwrap();
        assert!((x[1024 + 3] - tone[1024 + 3]).norm() < 1e-6);
        let snr = d.snr_db().unwrap();
        for (k, w) in x.chunks(1024).enumerate() {
            assert_eq!(snr[k], window_snr_db(w, 1), "window {k}");
            assert!(snr[k] > 20.0, "a clean tone: {}", snr[k]);
        }
    }

    /// Converting `files` fails with a message holding every one of `parts`.
    fn fails_naming(files: &[PathBuf], opts: &ConvertOptions, parts: &[&str]) {
        let out = files[0].parent().unwrap().join("out");
        let e = convert(files, &out, opts).unwrap_err().to_string();
        for p in parts {
            assert!(e.contains(p), "'{p}' is not in: {e}");
        }
        assert!(!out.join("manifest.json").exists(), "{e}");
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let ok = recording(d, "ok", 0, 4, 3000, whole("A", 1.0, Some((1.0, 2.0)), 3000));
        let opts = options(1024);

        let two = recording(
            d,
            "two",
            1,
            2,
            3000,
            whole("A", 1.0, Some((1.0, 2.0)), 3000),
        );
        fails_naming(
            &[ok.clone(), two],
            &opts,
            &["two.npy", "2 channel(s)", "ok.npy", "has 4"],
        );

        let short = recording(
            d,
            "short",
            2,
            4,
            1000,
            whole("A", 1.0, Some((1.0, 2.0)), 1000),
        );
        fails_naming(
            &[short],
            &opts,
            &["short.npy", "1000 samples", "one window of 1024"],
        );

        let bare = recording(d, "bare", 3, 4, 3000, None);
        fails_naming(&[bare], &opts, &["bare.npy", "no sidecar", "bare.json"]);

        let empty = recording(d, "empty", 4, 4, 3000, Some(vec![]));
        fails_naming(&[empty], &opts, &["empty.json", "'truth'", "class"]);

        let path = d.join("noclass.npy");
        npy::write_array(&path, &[4, 3000], &vec![C32::new(0.0, 0.0); 12_000]).unwrap();
        std::fs::write(
            d.join("noclass.json"),
            r#"{"truth": [{"snr_db": 1, "sample_start": 0, "sample_count": 3000}]}"#,
        )
        .unwrap();
        fails_naming(
            &[path],
            &opts,
            &["noclass.json", "truth[0].class", "is missing"],
        );

        let real = d.join("real.npy");
        npy::write_array(&real, &[4, 3000], &vec![0.0f32; 12_000]).unwrap();
        fails_naming(&[real], &opts, &["real.npy", "<f4", "complex64"]);

        let noaz = recording(d, "noaz", 5, 4, 3000, whole("A", 1.0, None, 3000));
        fails_naming(
            &[ok.clone(), noaz],
            &opts,
            &["noaz.json", "truth[0].azimuth_deg", "ok.json"],
        );

        let classes = ConvertOptions {
            classes: Some(vec!["B".into()]),
            ..options(1024)
        };
        fails_naming(
            std::slice::from_ref(&ok),
            &classes,
            &["ok.json", "truth[0].class", "'A'", "--classes"],
        );

        let overlap = vec![
            span("A", 1.0, None, 0, 2000),
            span("A", 1.0, None, 1500, 1500),
        ];
        let overlap = recording(d, "overlap", 6, 4, 3000, Some(overlap));
        fails_naming(
            &[overlap],
            &opts,
            &["overlap.json", "truth[1]", "overlapping truth[0]"],
        );

        let mut on_one = span("A", 1.0, None, 0, 3000);
        on_one.channel = Some(2);
        let on_one = recording(d, "onechan", 7, 4, 3000, Some(vec![on_one]));
        fails_naming(&[on_one], &opts, &["onechan.json", "truth[0].channel"]);

        let small = recording(
            d,
            "small",
            8,
            4,
            3000,
            Some(vec![span("A", 1.0, None, 0, 500)]),
        );
        fails_naming(
            &[small],
            &opts,
            &["small.json", "'truth'", "whole window of 1024"],
        );

        let e = list_recordings(&[d.join("nothing.npy")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("nothing.npy"), "{e}");
        let e = list_recordings(&[sidecar_path(&ok)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("ok.json") && e.contains("not a .npy"), "{e}");
        let e = convert(std::slice::from_ref(&ok), &d.join("x"), &options(0))
            .unwrap_err()
            .to_string();
        assert!(e.contains("'window-len'"), "{e}");
        let e: RecordingsError = "true".parse::<SnrSource>().unwrap_err();
        assert!(e.to_string().contains("sidecar or estimate"), "{e}");
    }

    #[test]
    fn classes_set_the_label_order_and_sidecars_must_agree_on_the_rate() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let a = recording(d, "a", 0, 1, 512, whole("A", 0.0, None, 512));
        let b = recording(d, "b", 1, 1, 512, whole("B", 0.0, None, 512));
        let opts = ConvertOptions {
            classes: Some(vec!["B".into(), "A".into(), "C".into()]),
            ..options(256)
        };
        let out = d.join("ds");
        let m = convert(&[a.clone(), b.clone()], &out, &opts).unwrap();
        assert_eq!(m.classes, ["B", "A", "C"]);
        assert_eq!(m.counts_per_class["C"], 0);
        // Round-robin in class order: B's recording first.
        assert_eq!(m.recordings().unwrap()[0].file, "b.npy");
        assert_eq!(Dataset::open(&out).unwrap().labels().unwrap(), [0, 0, 1, 1]);
        assert!(
            m.notes.iter().all(|n| !n.contains("sorted")),
            "{:?}",
            m.notes
        );

        let mut other = Sidecar::load(&sidecar_path(&b)).unwrap();
        other.sample_rate_hz = Some(2e6);
        other.save(&sidecar_path(&b)).unwrap();
        fails_naming(
            &[a, b],
            &options(256),
            &["b.json", "'sample_rate_hz'", "a.json"],
        );
    }

    #[test]
    fn the_documented_sidecar_is_a_sidecar() {
        let text = r#"{
          "sample_rate_hz": 20000000.0,
          "array": { "layout": { "kind": "ula", "elements": 4, "spacing_wavelengths": 0.5 },
                     "positions_wavelengths": [[0, -0.75, 0], [0, -0.25, 0], [0, 0.25, 0], [0, 0.75, 0]] },
          "truth": [
            { "class": "QPSK", "snr_db": 12.0, "azimuth_deg": -35.0, "elevation_deg": 10.0,
              "sample_start": 0, "sample_count": 1000000 }
          ]
        }"#;
        let s = Sidecar::parse(Path::new("doc.json"), text).unwrap();
        s.check_capture(Path::new("doc.json"), 4, 1_000_000)
            .unwrap();
        let expected = crate::dsp::array::ArrayGeometry::from_kind("ula", 4, 0.5).unwrap();
        assert_eq!(s.array, Some(expected));
    }

    #[test]
    fn spread_keeps_the_first_and_spaces_the_rest_evenly() {
        assert_eq!(spread(9, 3), [0, 3, 6]);
        assert_eq!(spread(10, 4), [0, 2, 5, 7]);
        assert_eq!(spread(3, 5), [0, 1, 2]);
        assert_eq!(span_starts(10, 5, 5, 1).collect::<Vec<_>>(), [10]);
        assert_eq!(span_starts(0, 4, 5, 1).count(), 0);
    }
}
