//! RadioML 2018.01A (`GOLD_XYZ_OSC.0001_1024.hdf5`, 21 GB) read in chunks of rows.
//!
//! Two passes: the first reads the labels `Y` (one-hot, integer or float) and `Z` (SNR) chunk by
//! chunk and picks the rows to keep; the second reads only the row ranges of `X` that hold kept
//! rows, as hyperslabs, and streams them into the dataset.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::path::Path;

use hdf5::types::TypeDescriptor;
use hdf5::{Dataset, H5Type, Hyperslab, SliceOrIndex};

use super::{
    CLASSES_2018, ImportOptions, ImportStage, RadiomlError, SNR_DEFINITION, check_unique,
    file_bytes, file_name, generator_version,
};
use crate::iq::C32;
use crate::iq::dataset::{DatasetSource, DatasetWriter, Manifest};

/// Rows of `Y`/`Z` read at a time.
const LABEL_CHUNK: usize = 1 << 16;
/// Rows of `X` read at a time (4096 × 1024 × 2 float32 = 32 MiB).
const X_CHUNK: usize = 4096;

fn h5err(path: &Path, what: &str) -> impl Fn(hdf5::Error) -> RadiomlError {
    let path = path.to_path_buf();
    let what = what.to_string();
    move |e| RadiomlError::Hdf5 {
        path: path.clone(),
        problem: format!("{what}: {e}"),
    }
}

/// Calls `f`, whose type is made to match `_like`'s without calling it (this names an
/// n-dimensional array type of the `hdf5` crate's ndarray without depending on ndarray).
fn same_type<R>(_like: impl FnOnce() -> R, f: impl FnOnce() -> R) -> R {
    f()
}

/// Reads rows `rows` of every column of `ds` (any rank), flattened in C order.
fn read_rows<T: H5Type + Copy>(ds: &Dataset, rows: Range<usize>) -> hdf5::Result<Vec<T>> {
    let mut sel = vec![SliceOrIndex::from(rows)];
    sel.extend((1..ds.ndim()).map(|_| SliceOrIndex::from(..)));
    let reader = ds.as_reader();
    let arr = same_type(
        || reader.read_dyn::<T>(),
        || reader.read_slice(Hyperslab::from(sel)),
    )?;
    Ok(arr.iter().copied().collect())
}

fn open_dataset(file: &hdf5::File, path: &Path, name: &str) -> Result<Dataset, RadiomlError> {
    file.dataset(name).map_err(|_| RadiomlError::Content {
        path: path.to_path_buf(),
        problem: format!(
            "has no dataset '{name}'; expected RadioML 2018.01A's X (n, 1024, 2) float32, Y (n, 24) one-hot and Z (n, 1) SNR"
        ),
    })
}

fn is_number(ds: &Dataset, float_only: bool) -> bool {
    match ds.dtype().and_then(|t| t.to_descriptor()) {
        Ok(TypeDescriptor::Float(_)) => true,
        Ok(TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_)) => !float_only,
        _ => false,
    }
}

pub(super) fn import_2018(
    path: &Path,
    out: &Path,
    opts: &ImportOptions,
) -> Result<Manifest, RadiomlError> {
    let content = |problem: String| RadiomlError::Content {
        path: path.to_path_buf(),
        problem,
    };
    let file = hdf5::File::open(path).map_err(h5err(path, "cannot open"))?;
    let x = open_dataset(&file, path, "X")?;
    let y = open_dataset(&file, path, "Y")?;
    let z = open_dataset(&file, path, "Z")?;
    let (xs, ys, zs) = (x.shape(), y.shape(), z.shape());
    let [n, len, 2] = xs[..] else {
        return Err(content(format!(
            "dataset X has shape {xs:?}; expected (n, 1024, 2): n windows of I/Q pairs"
        )));
    };
    if len == 0 {
        return Err(content(format!(
            "dataset X has shape {xs:?}; expected windows of at least one sample"
        )));
    }
    if !is_number(&x, true) {
        return Err(content(
            "dataset X is not floating point; expected float32 samples".into(),
        ));
    }
    let [yn, k] = ys[..] else {
        return Err(content(format!(
            "dataset Y has shape {ys:?}; expected (n, 24) one-hot labels"
        )));
    };
    if !is_number(&y, false) {
        return Err(content(
            "dataset Y is not numeric; expected one-hot labels (integer or float)".into(),
        ));
    }
    let z_ok = matches!(zs[..], [zn, 1] | [zn] if zn == n);
    if !z_ok || !is_number(&z, false) {
        return Err(content(format!(
            "dataset Z has shape {zs:?}; expected ({n}, 1) numeric SNR labels, one per row of X"
        )));
    }
    if yn != n {
        return Err(content(format!(
            "dataset Y has {yn} rows but X has {n}; expected one label row per window"
        )));
    }
    let (classes, assumed) = match &opts.classes {
        Some(list) => {
            check_unique(list)?;
            (list.clone(), false)
        }
        None => (
            CLASSES_2018
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
            true,
        ),
    };
    if classes.len() != k {
        return Err(RadiomlError::BadOption {
            option: "classes",
            problem: format!(
                "names {} classes but dataset Y of {} has {k} one-hot columns; expected one name per column",
                classes.len(),
                path.display()
            ),
        });
    }

    // Pass 1: labels, and which rows to keep.
    let mut label = Vec::with_capacity(n);
    let mut snr = Vec::with_capacity(n);
    let mut start = 0;
    while start < n {
        let end = (start + LABEL_CHUNK).min(n);
        let yv: Vec<f64> = read_rows(&y, start..end).map_err(h5err(path, "reading dataset Y"))?;
        let zv: Vec<f64> = read_rows(&z, start..end).map_err(h5err(path, "reading dataset Z"))?;
        for (i, row) in yv.chunks_exact(k).enumerate() {
            let ones: Vec<usize> = (0..k).filter(|&c| row[c] == 1.0).collect();
            let zeros = row.iter().filter(|v| **v == 0.0).count();
            if ones.len() != 1 || zeros != k - 1 {
                return Err(content(format!(
                    "dataset Y row {} is not one-hot: expected a single 1 and {} zeros",
                    start + i,
                    k - 1
                )));
            }
            label.push(ones[0] as u16);
        }
        for (i, s) in zv.iter().enumerate() {
            if !s.is_finite() {
                return Err(content(format!(
                    "dataset Z row {} is {s}; expected a finite SNR in dB",
                    start + i
                )));
            }
            snr.push(*s as f32);
        }
        start = end;
        opts.report(ImportStage::Scanning, start as u64, n as u64);
    }
    let mut seen: HashMap<(u16, u32), usize> = HashMap::new();
    let keep: Vec<bool> = label
        .iter()
        .zip(&snr)
        .map(|(&c, &s)| {
            let m = seen.entry((c, s.to_bits())).or_insert(0);
            *m += 1;
            opts.max_per_class_snr.is_none_or(|k| *m <= k)
        })
        .collect();
    let count = keep.iter().filter(|k| **k).count();
    let snr_grid: Vec<f32> = {
        let set: BTreeSet<i64> = snr
            .iter()
            .map(|s| (*s as f64 * 1000.0).round() as i64)
            .collect();
        set.into_iter()
            .map(|s| (s as f64 / 1000.0) as f32)
            .collect()
    };

    // Pass 2: the kept windows.
    let mut writer = DatasetWriter::create(out, count, 1, len, classes.len(), false)?;
    let mut window = vec![C32::new(0.0, 0.0); len];
    let mut start = 0;
    while start < n {
        let end = (start + X_CHUNK).min(n);
        let first = (start..end).find(|&r| keep[r]);
        let last = (start..end).rev().find(|&r| keep[r]);
        if let (Some(a), Some(b)) = (first, last) {
            let xv: Vec<f32> = read_rows(&x, a..b + 1).map_err(h5err(path, "reading dataset X"))?;
            for (i, row) in xv.chunks_exact(len * 2).enumerate() {
                let r = a + i;
                if !keep[r] {
                    continue;
                }
                for (s, iq) in window.iter_mut().zip(row.chunks_exact(2)) {
                    *s = C32::new(iq[0], iq[1]);
                }
                if let Some(t) = window
                    .iter()
                    .position(|s| !(s.re.is_finite() && s.im.is_finite()))
                {
                    return Err(content(format!(
                        "dataset X row {r} holds a non-finite sample (NaN or infinity) at index {t}; expected finite samples"
                    )));
                }
                writer.push(&window, usize::from(label[r]), snr[r], None)?;
            }
            opts.report(ImportStage::Writing, writer.written() as u64, count as u64);
        }
        start = end;
    }

    let mut notes = vec![
        format!(
            "Imported from RadioML 2018.01A ({}): each ({len}, 2) row of X becomes one window, I from column 0 and Q from column 1.",
            file_name(path)
        ),
        "The sample rate of RadioML 2018.01A is not published with the file; sample_rate_hz is left unset.".into(),
    ];
    if assumed {
        notes.push(
            "Class names of the one-hot columns of Y assume the widely used corrected order (OOK, 4ASK, 8ASK, BPSK, QPSK, 8PSK, 16PSK, 32PSK, 16APSK, 32APSK, 64APSK, 128APSK, 16QAM, 32QAM, 64QAM, 128QAM, 256QAM, AM-SSB-WC, AM-SSB-SC, AM-DSB-WC, AM-DSB-SC, FM, GMSK, OQPSK), not the order of the classes.txt shipped with the file, which does not match the data.".into(),
        );
    } else {
        notes.push(
            "Class names of the one-hot columns of Y were given explicitly to the importer.".into(),
        );
    }
    if let Some(k) = opts.max_per_class_snr {
        notes.push(format!(
            "At most {k} examples of each (class, SNR) pair were kept: the first ones in the file."
        ));
    }
    let manifest = Manifest {
        format: String::new(),
        source: DatasetSource::Radioml {
            variant: "2018.01a".into(),
            file: file_name(path),
            file_bytes: file_bytes(path)?,
        },
        seed: None,
        generator_version: generator_version(),
        classes,
        window_len: len,
        channels: 1,
        sample_rate_hz: None,
        snr_grid_db: snr_grid,
        snr_definition: SNR_DEFINITION.into(),
        count,
        counts_per_class: BTreeMap::new(),
        has_angles: false,
        array: None,
        notes,
    };
    Ok(writer.finish(manifest)?)
}
