//! RadioML importers on small files of the real files' structure, written by Python (pickle at
//! protocols 2, 4 and 5, a hand-made Python-2 cPickle stream, h5py), compared sample-exactly
//! with what numpy holds.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use specwatch::iq::dataset::{Dataset, DatasetSource};
use specwatch::iq::radioml::{ImportOptions, ImportProgress, ImportStage, import};

use crate::common::{python, run_python, scratch};

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// Writes `RML2016.10a_dict.p{2,4,5}.pkl` (Python 3 pickles), `RML2016.10a_dict.py2.pkl` (a
/// Python 2 cPickle protocol-2 stream built opcode by opcode) and `RML2016.10b.dat` into
/// `argv[1]`. One entry is Fortran-ordered.
const MAKE_PICKLES: &str = r#"
import sys, pickle, struct, numpy as np
d = sys.argv[1]
rng = np.random.default_rng(2016)
def entries(mods):
    out = {}
    for i, m in enumerate(mods):
        for j, snr in enumerate((-20, 0, 18)):
            out[(m, snr)] = rng.standard_normal((3 + (i + j) % 3, 2, 128)).astype(np.float32)
    return out
data = entries(["QPSK", "AM-SSB", "8PSK", "WBFM"])
data[("8PSK", 0)] = np.asfortranarray(data[("8PSK", 0)])
# Larger than the reader's 64 KiB in-memory limit: read back from the file on demand.
data[("WBFM", 18)] = rng.standard_normal((70, 2, 128)).astype(np.float32)
assert data[("8PSK", 0)].flags.f_contiguous and not data[("8PSK", 0)].flags.c_contiguous
for p in (2, 4, 5):
    with open(f"{d}/RML2016.10a_dict.p{p}.pkl", "wb") as f:
        pickle.dump(data, f, protocol=p)
with open(f"{d}/RML2016.10b.dat", "wb") as f:
    pickle.dump(entries(["QAM16", "GFSK", "BPSK"]), f, protocol=2)

def py2_cpickle(data):
    # What Python 2's cPickle.dump(data, f, protocol=2) writes: py2 str as SHORT_BINSTRING /
    # BINSTRING, numpy.core.multiarray._reconstruct + BUILD state, globals memoized once.
    out = bytearray(b"\x80\x02}q\x00(")
    counter = [1]
    globals_memo = {}
    def put():
        i = counter[0]; counter[0] += 1
        return b"q" + bytes([i]) if i < 256 else b"r" + struct.pack("<I", i)
    def get(i):
        return b"h" + bytes([i]) if i < 256 else b"j" + struct.pack("<I", i)
    def string(b):
        b = b if isinstance(b, bytes) else b.encode("latin1")
        head = b"U" + bytes([len(b)]) if len(b) < 256 else b"T" + struct.pack("<I", len(b))
        return head + b + put()
    def integer(v):
        if 0 <= v < 256: return b"K" + bytes([v])
        if 0 <= v < 65536: return b"M" + struct.pack("<H", v)
        return b"J" + struct.pack("<i", v)
    def glob(module, name):
        key = (module, name)
        if key in globals_memo:
            return get(globals_memo[key])
        globals_memo[key] = counter[0]
        return b"c" + module.encode() + b"\n" + name.encode() + b"\n" + put()
    for (m, snr), a in data.items():
        out += string(m) + integer(snr) + b"\x86" + put()
        out += glob("numpy.core.multiarray", "_reconstruct") + glob("numpy", "ndarray")
        out += integer(0) + b"\x85" + put() + string("b") + b"\x87" + put() + b"R" + put()
        out += b"(" + integer(1) + b"(" + b"".join(integer(n) for n in a.shape) + b"t" + put()
        out += glob("numpy", "dtype") + string("f4") + integer(0) + integer(1) + b"\x87" + put() + b"R" + put()
        out += b"(" + integer(3) + string("<") + b"NNN" + b"J\xff\xff\xff\xff" * 2 + integer(0) + b"t" + put() + b"b"
        fortran = a.flags.f_contiguous and not a.flags.c_contiguous
        out += (b"\x88" if fortran else b"\x89") + string(a.tobytes(order="A")) + b"t" + put() + b"b"
    return bytes(out + b"u.")
raw = py2_cpickle(data)
with open(f"{d}/RML2016.10a_dict.py2.pkl", "wb") as f:
    f.write(raw)
back = pickle.loads(raw, encoding="latin1")
assert all(np.array_equal(back[k], v) for k, v in data.items())
"#;

/// Compares a dataset folder (argv[2]) with the pickle it was imported from (argv[1]),
/// keeping at most argv[3] examples per (class, SNR) (−1: all); prints the variant.
const CHECK_2016: &str = r#"
import sys, json, pickle, numpy as np
src, out, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(src, "rb") as f:
    data = pickle.load(f, encoding="latin1")
man = json.load(open(f"{out}/manifest.json"))
classes = sorted({m for m, _ in data})
assert man["classes"] == classes, man["classes"]
xs, ys, ss = [], [], []
for m, snr in sorted(data, key=lambda key: (classes.index(key[0]), key[1])):
    a = data[(m, snr)] if k < 0 else data[(m, snr)][:k]
    xs.append(a[:, 0, :] + 1j * a[:, 1, :])
    ys += [classes.index(m)] * len(a)
    ss += [snr] * len(a)
x = np.load(f"{out}/x.npy"); y = np.load(f"{out}/y.npy"); s = np.load(f"{out}/snr.npy")
expect = np.concatenate(xs).astype(np.complex64)[:, None, :]
assert x.dtype == np.complex64 and x.shape == expect.shape, (x.dtype, x.shape, expect.shape)
assert x.tobytes() == expect.tobytes(), "samples differ"
assert y.dtype == np.int64 and list(y) == ys
assert s.dtype == np.float32 and list(s) == ss
assert man["count"] == len(ys) and man["window_len"] == 128 and man["channels"] == 1
assert man["sample_rate_hz"] == 200e3
assert man["snr_grid_db"] == [-20.0, 0.0, 18.0]
assert "not a measured" in man["snr_definition"]
print(man["source"]["variant"])
"#;

#[test]
fn pickles_from_python_3_and_python_2_import_sample_exactly() {
    let Some(py) = python() else { return };
    let dir = scratch();
    run_python(&py, MAKE_PICKLES, &[s(dir.path())]);
    for name in [
        "RML2016.10a_dict.p2.pkl",
        "RML2016.10a_dict.p4.pkl",
        "RML2016.10a_dict.p5.pkl",
        "RML2016.10a_dict.py2.pkl",
    ] {
        let src = dir.path().join(name);
        let out = dir.path().join(format!("{name}.dataset"));
        let manifest =
            import(&src, &out, &ImportOptions::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            manifest.classes,
            ["8PSK", "AM-SSB", "QPSK", "WBFM"],
            "sorted by name"
        );
        let variant = run_python(&py, CHECK_2016, &[s(&src), s(&out), "-1"]);
        assert_eq!(variant.trim(), "2016.10a", "{name}");
        assert_eq!(
            manifest.source,
            DatasetSource::Radioml {
                variant: "2016.10a".into(),
                file: name.into(),
                file_bytes: std::fs::metadata(&src).unwrap().len(),
            }
        );
        let ds = Dataset::open(&out).unwrap();
        assert_eq!(ds.manifest, manifest);
    }
}

#[test]
fn pickle_2016_10b_and_a_per_class_snr_limit() {
    let Some(py) = python() else { return };
    let dir = scratch();
    run_python(&py, MAKE_PICKLES, &[s(dir.path())]);
    let src = dir.path().join("RML2016.10b.dat");
    let out = dir.path().join("b");
    let calls = Arc::new(AtomicU64::new(0));
    let last = Arc::new(AtomicU64::new(0));
    let (c, l) = (calls.clone(), last.clone());
    let opts = ImportOptions {
        max_per_class_snr: Some(3),
        progress: Some(Box::new(move |p: ImportProgress| {
            c.fetch_add(1, Ordering::Relaxed);
            if p.stage == ImportStage::Writing {
                assert!(p.done <= p.total);
                l.store(p.done, Ordering::Relaxed);
            }
        })),
        ..Default::default()
    };
    let manifest = import(&src, &out, &opts).unwrap();
    assert_eq!(manifest.classes, ["BPSK", "GFSK", "QAM16"]);
    assert_eq!(
        manifest.count,
        3 * 3 * 3,
        "every entry has at least 3 examples"
    );
    assert!(manifest.notes.iter().any(|n| n.contains("At most 3")));
    assert!(calls.load(Ordering::Relaxed) > 3);
    assert_eq!(last.load(Ordering::Relaxed), manifest.count as u64);
    let variant = run_python(&py, CHECK_2016, &[s(&src), s(&out), "3"]);
    assert_eq!(variant.trim(), "2016.10b");
}

#[test]
fn explicit_class_order_sets_the_labels_and_must_cover_the_file() {
    let Some(py) = python() else { return };
    let dir = scratch();
    run_python(&py, MAKE_PICKLES, &[s(dir.path())]);
    let src = dir.path().join("RML2016.10a_dict.p4.pkl");
    let order: Vec<String> = ["WBFM", "QPSK", "AM-SSB", "8PSK", "GMSK"]
        .map(String::from)
        .to_vec();
    let opts = ImportOptions {
        classes: Some(order.clone()),
        ..Default::default()
    };
    let m = import(&src, &dir.path().join("o"), &opts).unwrap();
    assert_eq!(m.classes, order);
    assert_eq!(m.counts_per_class["GMSK"], 0);
    let y = Dataset::open(&dir.path().join("o"))
        .unwrap()
        .labels()
        .unwrap();
    assert_eq!(y[0], 0, "WBFM comes first");
    let opts = ImportOptions {
        classes: Some(vec!["QPSK".into()]),
        ..Default::default()
    };
    let e = import(&src, &dir.path().join("p"), &opts)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("'classes'") && e.contains("lacks '8PSK'") && e.contains(s(&src)),
        "{e}"
    );
    let opts = ImportOptions {
        max_per_class_snr: Some(0),
        ..Default::default()
    };
    let e = import(&src, &dir.path().join("q"), &opts)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("'max_per_class_snr'") && e.contains("at least 1"),
        "{e}"
    );
}

/// Writes the pickle built by `expr` (a Python expression using np) to argv[1].
fn pickle_of(py: &Path, path: &Path, expr: &str, protocol: u8) {
    let script = format!(
        "import sys, pickle, numpy as np\nwith open(sys.argv[1], 'wb') as f:\n    pickle.dump({expr}, f, protocol={protocol})\n"
    );
    run_python(py, &script, &[s(path)]);
}

fn import_err(path: &Path) -> String {
    let out = path.with_extension("out");
    match import(path, &out, &ImportOptions::default()) {
        Ok(m) => panic!("{} imported but should not have: {m:?}", path.display()),
        Err(e) => e.to_string(),
    }
}

fn assert_names(msg: &str, path: &Path, expected: &[&str]) {
    assert!(
        msg.contains(s(path)),
        "error does not name the file {}: {msg}",
        path.display()
    );
    for e in expected {
        assert!(msg.contains(e), "error lacks '{e}': {msg}");
    }
}

#[test]
fn truncated_pickle_is_refused() {
    let Some(py) = python() else { return };
    let dir = scratch();
    run_python(&py, MAKE_PICKLES, &[s(dir.path())]);
    for name in ["RML2016.10a_dict.p4.pkl", "RML2016.10a_dict.py2.pkl"] {
        let path = dir.path().join(name);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() * 2 / 3]).unwrap();
        let msg = import_err(&path);
        assert_names(&msg, &path, &["unreadable pickle", "truncated"]);
    }
}

#[test]
fn pickle_value_that_is_not_an_ndarray_is_refused() {
    let Some(py) = python() else { return };
    let dir = scratch();
    let path = dir.path().join("list.pkl");
    pickle_of(&py, &path, "{('QPSK', 2): [[0.0] * 128] * 2}", 4);
    let msg = import_err(&path);
    assert_names(
        &msg,
        &path,
        &[
            "entry ('QPSK', 2) is a list",
            "numpy float32 array of shape (n, 2, 128)",
        ],
    );
}

#[test]
fn pickle_with_wrong_inner_shape_or_dtype_is_refused() {
    let Some(py) = python() else { return };
    let dir = scratch();
    let path = dir.path().join("shape.pkl");
    pickle_of(
        &py,
        &path,
        "{('BPSK', 0): np.zeros((3, 4, 128), np.float32)}",
        2,
    );
    assert_names(
        &import_err(&path),
        &path,
        &["('BPSK', 0)", "[3, 4, 128]", "expected (n, 2, 128)"],
    );
    let path = dir.path().join("dtype.pkl");
    pickle_of(&py, &path, "{('BPSK', 0): np.zeros((3, 2, 128))}", 5);
    assert_names(&import_err(&path), &path, &["'<f8'", "float32 ('<f4')"]);
    let path = dir.path().join("mixed.pkl");
    pickle_of(
        &py,
        &path,
        "{('BPSK', 0): np.zeros((3, 2, 128), np.float32), ('QPSK', 0): np.zeros((3, 2, 64), np.float32)}",
        4,
    );
    assert_names(
        &import_err(&path),
        &path,
        &["('QPSK', 0)", "expected (n, 2, 128) like the others"],
    );
    let path = dir.path().join("nan.pkl");
    pickle_of(
        &py,
        &path,
        "{('BPSK', 0): np.full((3, 2, 128), np.nan, np.float32)}",
        4,
    );
    assert_names(&import_err(&path), &path, &["non-finite", "example 0"]);
    let path = dir.path().join("list_root.pkl");
    pickle_of(&py, &path, "[1, 2, 3]", 4);
    assert_names(
        &import_err(&path),
        &path,
        &["holds a list", "expected a dict"],
    );
}

#[test]
fn file_that_is_neither_pickle_nor_hdf5_is_refused() {
    let dir = scratch();
    let path = dir.path().join("notes.pkl");
    std::fs::write(&path, "hello, world").unwrap();
    assert_names(
        &import_err(&path),
        &path,
        &["not a RadioML file", "68 65 6c 6c"],
    );
}

#[cfg(feature = "hdf5")]
mod hdf5_2018 {
    use super::*;
    use specwatch::iq::radioml::{CLASSES_2018, CLASSES_2018_TXT};

    /// Writes a file of RadioML 2018.01A's structure: X (n, L, 2) float32, Y (n, 24) one-hot
    /// int64, Z (n, 1) int64; classes {0, 5, 23} × SNRs {-20, 0, 30}, `rows` rows each.
    const MAKE_HDF5: &str = r#"
import sys, h5py, numpy as np
path, rows, length = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(2018)
labels = [(c, snr) for c in (0, 5, 23) for snr in (-20, 0, 30) for _ in range(rows)]
n = len(labels)
X = rng.standard_normal((n, length, 2)).astype(np.float32)
Y = np.zeros((n, 24), np.int64)
Z = np.zeros((n, 1), np.int64)
for i, (c, snr) in enumerate(labels):
    Y[i, c] = 1
    Z[i, 0] = snr
with h5py.File(path, "w") as f:
    f.create_dataset("X", data=X, chunks=(min(n, 256), length, 2))
    f.create_dataset("Y", data=Y)
    f.create_dataset("Z", data=Z)
"#;

    /// Compares a dataset (argv[2]) with the HDF5 file (argv[1]), keeping at most argv[3] rows per
    /// (class, SNR) (−1: all).
    const CHECK_2018: &str = r#"
import sys, json, h5py, numpy as np
src, out, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
with h5py.File(src, "r") as f:
    X, Y, Z = f["X"][:], f["Y"][:], f["Z"][:, 0]
cls = Y.argmax(axis=1)
keep, seen = [], {}
for i in range(len(cls)):
    seen[(cls[i], Z[i])] = seen.get((cls[i], Z[i]), 0) + 1
    keep.append(k < 0 or seen[(cls[i], Z[i])] <= k)
keep = np.array(keep)
x = np.load(f"{out}/x.npy"); y = np.load(f"{out}/y.npy"); s = np.load(f"{out}/snr.npy")
expect = (X[keep, :, 0] + 1j * X[keep, :, 1]).astype(np.complex64)[:, None, :]
assert x.shape == expect.shape, (x.shape, expect.shape)
assert x.tobytes() == expect.tobytes(), "samples differ"
assert list(y) == list(cls[keep])
assert list(s) == list(Z[keep].astype(np.float32))
man = json.load(open(f"{out}/manifest.json"))
assert man["source"]["variant"] == "2018.01a" and man["sample_rate_hz"] is None
assert man["snr_grid_db"] == [-20.0, 0.0, 30.0]
"#;

    #[test]
    fn hdf5_2018_imports_sample_exactly_with_the_corrected_class_order() {
        let Some(py) = python() else { return };
        let dir = scratch();
        let src = dir.path().join("GOLD_XYZ_OSC.0001_1024.hdf5");
        run_python(&py, MAKE_HDF5, &[s(&src), "4", "1024"]);
        let out = dir.path().join("d");
        let m = import(&src, &out, &ImportOptions::default()).unwrap();
        assert_eq!(m.classes, CLASSES_2018.map(String::from));
        assert_eq!(m.count, 36);
        assert_eq!(m.counts_per_class["OOK"], 12);
        assert_eq!(m.counts_per_class["8PSK"], 12);
        assert_eq!(m.counts_per_class["OQPSK"], 12);
        assert!(
            m.notes
                .iter()
                .any(|n| n.contains("corrected order") && n.contains("classes.txt")),
            "{:?}",
            m.notes
        );
        run_python(&py, CHECK_2018, &[s(&src), s(&out), "-1"]);
        Dataset::open(&out).unwrap();

        let opts = ImportOptions {
            classes: Some(CLASSES_2018_TXT.map(String::from).to_vec()),
            max_per_class_snr: Some(2),
            ..Default::default()
        };
        let m = import(&src, &out, &opts).unwrap();
        assert_eq!(m.classes[0], "32PSK");
        assert_eq!(m.count, 18);
        run_python(&py, CHECK_2018, &[s(&src), s(&out), "2"]);
    }

    #[test]
    fn hdf5_rows_are_read_in_chunks_across_boundaries() {
        let Some(py) = python() else { return };
        let dir = scratch();
        let src = dir.path().join("small.h5");
        // 9 × 600 = 5400 rows of 16 samples: more than one 4096-row chunk of X.
        run_python(&py, MAKE_HDF5, &[s(&src), "600", "16"]);
        for (max, k) in [(None, "-1"), (Some(450), "450")] {
            let out = dir.path().join(format!("d{k}"));
            let opts = ImportOptions {
                max_per_class_snr: max,
                ..Default::default()
            };
            import(&src, &out, &opts).unwrap();
            run_python(&py, CHECK_2018, &[s(&src), s(&out), k]);
        }
    }

    #[test]
    fn hdf5_with_bad_labels_or_missing_datasets_is_refused() {
        let Some(py) = python() else { return };
        let dir = scratch();
        let src = dir.path().join("bad.hdf5");
        run_python(&py, MAKE_HDF5, &[s(&src), "2", "8"]);
        run_python(
            &py,
            "import sys, h5py\nwith h5py.File(sys.argv[1], 'a') as f:\n    f['Y'][7, 3] = 1\n",
            &[s(&src)],
        );
        assert_names(
            &import_err(&src),
            &src,
            &["dataset Y row 7 is not one-hot", "23 zeros"],
        );
        run_python(
            &py,
            "import sys, h5py\nwith h5py.File(sys.argv[1], 'a') as f:\n    del f['Z']\n",
            &[s(&src)],
        );
        assert_names(&import_err(&src), &src, &["no dataset 'Z'", "Z (n, 1) SNR"]);
        let opts = ImportOptions {
            classes: Some(vec!["A".into(), "B".into()]),
            ..Default::default()
        };
        run_python(&py, MAKE_HDF5, &[s(&src), "2", "8"]);
        let e = import(&src, &dir.path().join("o"), &opts)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("names 2 classes") && e.contains("24 one-hot columns"),
            "{e}"
        );
    }
}

#[cfg(not(feature = "hdf5"))]
#[test]
fn hdf5_without_the_feature_says_how_to_build() {
    let dir = scratch();
    let path = dir.path().join("GOLD_XYZ_OSC.0001_1024.hdf5");
    std::fs::write(&path, b"\x89HDF\r\n\x1a\n\0\0\0\0").unwrap();
    assert_names(&import_err(&path), &path, &["--features hdf5"]);
}
