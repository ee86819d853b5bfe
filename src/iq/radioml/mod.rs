//! Importers for the public RadioML datasets, behind `specwatch-train import-radioml FILE --out DIR`.
//!
//! | file | variant | content |
//! |---|---|---|
//! | `RML2016.10a_dict.pkl` | 2016.10a | pickle of `{(mod, snr): float32 (n, 2, 128)}`, 11 classes |
//! | `RML2016.10b.dat` | 2016.10b | the same structure, 10 classes (no AM-SSB) |
//! | `GOLD_XYZ_OSC.0001_1024.hdf5` | 2018.01a | HDF5: `X (n, 1024, 2)` float32, one-hot `Y (n, 24)`, `Z (n, 1)` SNR |
//!
//! [`import`] detects the format from the file's first bytes (HDF5 signature, pickle `PROTO`
//! opcode) and its extension, and writes a dataset folder ([`super::dataset`]): `x` complex64
//! `(N, 1, L)` with I from row 0 / column 0 and Q from row 1 / column 1, `y` the class index,
//! `snr` the file's SNR label. The pickles are read by a small pickle machine of our own
//! ([`pickle`]), the HDF5 file in chunks of rows through the `hdf5` crate (cargo feature `hdf5`,
//! on by default).
//!
//! **SNR.** RadioML's SNR labels are the generator's nominal settings, not a measured SNR of each
//! window; the manifest says so in `snr_definition`.
//!
//! **2018 class order.** The one-hot columns of `GOLD_XYZ_OSC.0001_1024.hdf5` are not in the
//! order of the `classes.txt` shipped with it. specwatch assumes the widely used corrected order
//! ([`CLASSES_2018`], the order of the table in O'Shea et al., "Over-the-Air Deep Learning Based
//! Radio Signal Classification", 2018), records that assumption in the manifest notes, and lets
//! [`ImportOptions::classes`] override it.

pub mod pickle;

#[cfg(feature = "hdf5")]
mod hdf5;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::C32;
use super::dataset::{DatasetError, DatasetSource, DatasetWriter, Manifest};
use pickle::{ArrayValue, Blob, Value};

/// Column order of the 2018.01A one-hot labels assumed by default (the corrected order).
pub const CLASSES_2018: [&str; 24] = [
    "OOK",
    "4ASK",
    "8ASK",
    "BPSK",
    "QPSK",
    "8PSK",
    "16PSK",
    "32PSK",
    "16APSK",
    "32APSK",
    "64APSK",
    "128APSK",
    "16QAM",
    "32QAM",
    "64QAM",
    "128QAM",
    "256QAM",
    "AM-SSB-WC",
    "AM-SSB-SC",
    "AM-DSB-WC",
    "AM-DSB-SC",
    "FM",
    "GMSK",
    "OQPSK",
];

/// The order of the `classes.txt` shipped with 2018.01A, which does *not* match its one-hot
/// columns; pass it as [`ImportOptions::classes`] to reproduce code that trusted it.
pub const CLASSES_2018_TXT: [&str; 24] = [
    "32PSK",
    "16APSK",
    "32QAM",
    "FM",
    "GMSK",
    "32APSK",
    "OQPSK",
    "8ASK",
    "BPSK",
    "8PSK",
    "AM-SSB-SC",
    "4ASK",
    "16PSK",
    "64APSK",
    "128QAM",
    "128APSK",
    "AM-DSB-SC",
    "AM-SSB-WC",
    "64QAM",
    "QPSK",
    "256QAM",
    "AM-DSB-WC",
    "OOK",
    "16QAM",
];

/// Nominal sample rate of RadioML 2016 (its generator's setting).
pub const SAMPLE_RATE_2016_HZ: f64 = 200e3;

const SNR_DEFINITION: &str = "RadioML's SNR label in dB: the nominal SNR the generator was set to for each example, \
     not a measured per-window SNR (the contract's true per-window SNR does not hold for imported RadioML data)";

/// Errors from importing a RadioML file; every one names the file.
#[derive(Debug, thiserror::Error)]
pub enum RadiomlError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}: not a RadioML file: expected a Python pickle (RML2016.10a_dict.pkl, RML2016.10b.dat) or an HDF5 file (GOLD_XYZ_OSC.0001_1024.hdf5); {found}"
    )]
    UnknownFormat { path: PathBuf, found: String },
    #[error("{path}: unreadable pickle at byte {offset}: {problem}")]
    Pickle {
        path: PathBuf,
        offset: u64,
        problem: String,
    },
    #[error("{path}: {problem}")]
    Content { path: PathBuf, problem: String },
    #[error("{path}: HDF5: {problem}")]
    Hdf5 { path: PathBuf, problem: String },
    #[error(
        "{path}: is an HDF5 file (RadioML 2018.01A) but this specwatch was built without HDF5 support; rebuild with `--features hdf5`"
    )]
    NoHdf5 { path: PathBuf },
    #[error("option '{option}': {problem}")]
    BadOption {
        option: &'static str,
        problem: String,
    },
    #[error(transparent)]
    Dataset(#[from] DatasetError),
}

/// What [`import`] is doing, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportStage {
    /// Reading the labels (2018: `Y` and `Z`) or walking the pickle.
    Scanning,
    /// Writing windows into the dataset.
    Writing,
}

/// Progress of [`import`]: `done` of `total` units (rows or windows) of `stage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportProgress {
    pub stage: ImportStage,
    pub done: u64,
    pub total: u64,
}

/// Options of [`import`].
#[derive(Default)]
pub struct ImportOptions {
    /// Keep at most this many examples of each (class, SNR) pair (the first ones in the file).
    pub max_per_class_snr: Option<usize>,
    /// 2016: the class list (and its order, which sets `y`); must name every modulation in the
    /// file (default: the file's modulations sorted by name). 2018: the names of the one-hot
    /// columns in column order (default: [`CLASSES_2018`]).
    pub classes: Option<Vec<String>>,
    /// Called as the import advances.
    pub progress: Option<Box<dyn Fn(ImportProgress) + Send + Sync>>,
}

impl std::fmt::Debug for ImportOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportOptions")
            .field("max_per_class_snr", &self.max_per_class_snr)
            .field("classes", &self.classes)
            .field("progress", &self.progress.as_ref().map(|_| "callback"))
            .finish()
    }
}

impl ImportOptions {
    fn report(&self, stage: ImportStage, done: u64, total: u64) {
        if let Some(p) = &self.progress {
            p(ImportProgress { stage, done, total });
        }
    }
}

/// The formats [`import`] recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RadiomlFormat {
    /// A Python pickle (RadioML 2016).
    Pickle,
    /// An HDF5 file (RadioML 2018.01A).
    Hdf5,
}

const HDF5_MAGIC: &[u8] = b"\x89HDF\r\n\x1a\n";

/// Detects the format of `file` from its first bytes, falling back on its extension.
pub fn detect_format(file: &Path) -> Result<RadiomlFormat, RadiomlError> {
    let mut head = [0u8; 8];
    let n = File::open(file)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|source| RadiomlError::Io {
            path: file.to_path_buf(),
            source,
        })?;
    let head = &head[..n];
    let ext = file
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if head == HDF5_MAGIC {
        return Ok(RadiomlFormat::Hdf5);
    }
    // Protocol ≥ 2 starts with PROTO (0x80 then 2..=5); protocols 0 and 1 with MARK or
    // EMPTY_DICT, which only the extension can tell from other text.
    if head.len() >= 2 && head[0] == 0x80 && (2..=5).contains(&head[1]) {
        return Ok(RadiomlFormat::Pickle);
    }
    if matches!(ext.as_str(), "pkl" | "pickle" | "dat")
        && head.first().is_some_and(|c| b"(}".contains(c))
    {
        return Ok(RadiomlFormat::Pickle);
    }
    let found = if n == 0 {
        "the file is empty".to_string()
    } else {
        format!(
            "its first bytes are {}",
            head.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        )
    };
    Err(RadiomlError::UnknownFormat {
        path: file.to_path_buf(),
        found,
    })
}

/// Imports a RadioML file into a dataset folder `out` and returns its manifest.
///
/// Formats are told apart by [`detect_format`]; see the module documentation for what is
/// written. Refuses (naming the file and what was expected): unknown formats, truncated or
/// malformed pickles, dictionary entries that are not `float32 (n, 2, L)` arrays, HDF5 files
/// without `X`/`Y`/`Z` of the expected shapes, rows that are not one-hot, and non-finite
/// samples.
pub fn import(file: &Path, out: &Path, opts: &ImportOptions) -> Result<Manifest, RadiomlError> {
    if opts.max_per_class_snr == Some(0) {
        return Err(RadiomlError::BadOption {
            option: "max_per_class_snr",
            problem: "is 0, which would keep no examples; expected at least 1".into(),
        });
    }
    match detect_format(file)? {
        RadiomlFormat::Pickle => import_2016(file, out, opts),
        #[cfg(feature = "hdf5")]
        RadiomlFormat::Hdf5 => self::hdf5::import_2018(file, out, opts),
        #[cfg(not(feature = "hdf5"))]
        RadiomlFormat::Hdf5 => Err(RadiomlError::NoHdf5 {
            path: file.to_path_buf(),
        }),
    }
}

fn file_bytes(file: &Path) -> Result<u64, RadiomlError> {
    std::fs::metadata(file)
        .map(|m| m.len())
        .map_err(|source| RadiomlError::Io {
            path: file.to_path_buf(),
            source,
        })
}

fn file_name(file: &Path) -> String {
    file.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| file.display().to_string())
}

fn generator_version() -> String {
    format!("specwatch {} radioml importer", env!("CARGO_PKG_VERSION"))
}

/// One `(modulation, snr)` entry of a 2016 pickle.
struct Entry {
    modulation: String,
    snr: i64,
    rows: usize,
    len: usize,
    fortran: bool,
    data: std::rc::Rc<Blob>,
}

fn content(file: &Path, problem: String) -> RadiomlError {
    RadiomlError::Content {
        path: file.to_path_buf(),
        problem,
    }
}

/// Walks the unpickled dictionary and checks every entry.
fn entries_2016(file: &Path, root: Value) -> Result<Vec<Entry>, RadiomlError> {
    let Value::Dict(items) = root else {
        return Err(content(
            file,
            format!(
                "the pickle holds {}; expected a dict {{(modulation, snr): float32 array (n, 2, 128)}}",
                root.kind()
            ),
        ));
    };
    if items.is_empty() {
        return Err(content(
            file,
            "the pickled dict is empty; expected RadioML examples".into(),
        ));
    }
    let mut entries = Vec::with_capacity(items.len());
    let mut window: Option<(usize, String)> = None;
    for (key, value) in items {
        let (modulation, snr) = match &key {
            Value::Tuple(t) if t.len() == 2 => match (t[0].as_text(), t[1].as_int()) {
                (Some(m), Some(s)) => (m, s),
                _ => {
                    return Err(content(
                        file,
                        format!(
                            "a key is ({}, {}); expected (modulation name, integer SNR)",
                            t[0].kind(),
                            t[1].kind()
                        ),
                    ));
                }
            },
            other => {
                return Err(content(
                    file,
                    format!(
                        "a key is {}; expected a (modulation, snr) tuple",
                        other.kind()
                    ),
                ));
            }
        };
        let name = format!("entry ('{modulation}', {snr})");
        let Value::Array(ArrayValue {
            shape,
            dtype,
            fortran,
            data,
        }) = value
        else {
            return Err(content(
                file,
                format!(
                    "{name} is {}; expected a numpy float32 array of shape (n, 2, 128)",
                    value.kind()
                ),
            ));
        };
        let (Some(dtype), Some(data)) = (dtype, data) else {
            return Err(content(
                file,
                format!("{name}: the array has no dtype or data"),
            ));
        };
        if !dtype.is_f4_le() {
            return Err(content(
                file,
                format!(
                    "{name} has dtype '{}'; expected little-endian float32 ('<f4')",
                    dtype.describe()
                ),
            ));
        }
        let [rows, two, len] = shape[..] else {
            return Err(content(
                file,
                format!(
                    "{name} has shape {shape:?}; expected (n, 2, 128): n examples of I and Q rows"
                ),
            ));
        };
        if two != 2 || len == 0 {
            return Err(content(
                file,
                format!(
                    "{name} has shape {shape:?}; expected (n, 2, 128): n examples of I and Q rows"
                ),
            ));
        }
        match &window {
            Some((l, first)) if *l != len => {
                return Err(content(
                    file,
                    format!(
                        "{name} has shape {shape:?} but {first} has windows of {l} samples; expected (n, 2, {l}) like the others"
                    ),
                ));
            }
            None => window = Some((len, name.clone())),
            _ => {}
        }
        let expected = (rows * 2 * len * 4) as u64;
        if data.len() != expected {
            return Err(content(
                file,
                format!(
                    "{name}: shape {shape:?} needs {expected} data bytes but the pickle holds {}",
                    data.len()
                ),
            ));
        }
        entries.push(Entry {
            modulation,
            snr,
            rows,
            len,
            fortran,
            data,
        });
    }
    Ok(entries)
}

fn import_2016(file: &Path, out: &Path, opts: &ImportOptions) -> Result<Manifest, RadiomlError> {
    opts.report(ImportStage::Scanning, 0, 1);
    let root = pickle::load(file).map_err(|(path, e)| RadiomlError::Pickle {
        path,
        offset: e.offset,
        problem: e.problem,
    })?;
    let mut entries = entries_2016(file, root)?;
    opts.report(ImportStage::Scanning, 1, 1);

    let modulations: BTreeSet<String> = entries.iter().map(|e| e.modulation.clone()).collect();
    let classes: Vec<String> = match &opts.classes {
        None => modulations.iter().cloned().collect(),
        Some(list) => {
            check_unique(list)?;
            if let Some(missing) = modulations.iter().find(|m| !list.contains(m)) {
                return Err(RadiomlError::BadOption {
                    option: "classes",
                    problem: format!(
                        "lacks '{missing}', which {} holds; expected a list naming every modulation in the file ({})",
                        file.display(),
                        modulations.iter().cloned().collect::<Vec<_>>().join(", ")
                    ),
                });
            }
            list.clone()
        }
    };
    let index = |m: &str| {
        classes
            .iter()
            .position(|c| c == m)
            .expect("every modulation is a class")
    };
    entries.sort_by_key(|e| (index(&e.modulation), e.snr));

    let name = file_name(file).to_ascii_lowercase();
    let mut notes = Vec::new();
    let variant = if name.contains("10b") {
        "2016.10b"
    } else if name.contains("10a") {
        "2016.10a"
    } else {
        let v = if modulations.contains("AM-SSB") {
            "2016.10a"
        } else {
            "2016.10b"
        };
        notes.push(format!(
            "Variant {v} inferred from the classes (the file name does not say 10a or 10b)."
        ));
        v
    };

    let keep = |rows: usize| opts.max_per_class_snr.map_or(rows, |k| rows.min(k));
    let count: usize = entries.iter().map(|e| keep(e.rows)).sum();
    let len = entries[0].len;
    let mut writer = DatasetWriter::create(out, count, 1, len, classes.len(), false)?;
    let mut raw = File::open(file).map_err(|source| RadiomlError::Io {
        path: file.to_path_buf(),
        source,
    })?;
    let mut window = vec![C32::new(0.0, 0.0); len];
    let mut snrs = BTreeSet::new();
    for e in &entries {
        let bytes = e.data.read(&mut raw).map_err(|source| RadiomlError::Io {
            path: file.to_path_buf(),
            source,
        })?;
        let value = |i: usize| {
            let o = i * 4;
            f32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]])
        };
        // Element (r, c, t) of an (n, 2, L) array: C order r·2L + c·L + t; Fortran (t·2 + c)·n + r.
        let at = |r: usize, c: usize, t: usize| {
            if e.fortran {
                value((t * 2 + c) * e.rows + r)
            } else {
                value(r * 2 * e.len + c * e.len + t)
            }
        };
        let class = index(&e.modulation);
        for r in 0..keep(e.rows) {
            for (t, s) in window.iter_mut().enumerate() {
                *s = C32::new(at(r, 0, t), at(r, 1, t));
            }
            if let Some(t) = window
                .iter()
                .position(|s| !(s.re.is_finite() && s.im.is_finite()))
            {
                return Err(content(
                    file,
                    format!(
                        "entry ('{}', {}) example {r} holds a non-finite sample (NaN or infinity) at index {t}; expected finite samples",
                        e.modulation, e.snr
                    ),
                ));
            }
            writer.push(&window, class, e.snr as f32, None)?;
        }
        snrs.insert(e.snr);
        opts.report(ImportStage::Writing, writer.written() as u64, count as u64);
    }

    notes.push(format!(
        "Imported from RadioML {variant} ({}): each (2, {len}) example becomes one window, I from row 0 and Q from row 1.",
        file_name(file)
    ));
    notes.push(format!(
        "The sample rate {} kHz is RadioML 2016's nominal rate, not a measured one.",
        SAMPLE_RATE_2016_HZ / 1e3
    ));
    if opts.classes.is_none() {
        notes.push("Classes are the file's modulation names sorted by name.".into());
    }
    if let Some(k) = opts.max_per_class_snr {
        notes.push(format!(
            "At most {k} examples of each (class, SNR) pair were kept: the first ones in the file."
        ));
    }
    let manifest = Manifest {
        format: String::new(),
        source: DatasetSource::Radioml {
            variant: variant.into(),
            file: file_name(file),
            file_bytes: file_bytes(file)?,
        },
        seed: None,
        generator_version: generator_version(),
        classes,
        window_len: len,
        channels: 1,
        sample_rate_hz: Some(SAMPLE_RATE_2016_HZ),
        snr_grid_db: snrs.into_iter().map(|s| s as f32).collect(),
        snr_definition: SNR_DEFINITION.into(),
        count,
        counts_per_class: BTreeMap::new(),
        has_angles: false,
        array: None,
        notes,
    };
    Ok(writer.finish(manifest)?)
}

fn check_unique(list: &[String]) -> Result<(), RadiomlError> {
    let mut seen = BTreeSet::new();
    if let Some(dup) = list.iter().find(|c| !seen.insert(c.as_str())) {
        return Err(RadiomlError::BadOption {
            option: "classes",
            problem: format!("names '{dup}' twice; expected distinct class names"),
        });
    }
    if list.iter().any(|c| c.trim().is_empty()) {
        return Err(RadiomlError::BadOption {
            option: "classes",
            problem: "holds an empty name; expected class names".into(),
        });
    }
    Ok(())
}
