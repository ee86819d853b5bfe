//! Shared test helpers: scratch folders, the Python reference environment, the built binaries.

#![allow(dead_code)]

pub mod fixture;
pub mod prometheus;

use std::path::{Path, PathBuf};
use std::process::Command;

/// A fresh temporary folder, removed when dropped.
pub fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().expect("create a temporary folder")
}

/// The Python interpreter of the reference environment (numpy, h5py, sigmf), made by
/// `scripts/setup`: `SPECWATCH_PYTHON` if set, else the venv under `SPECWATCH_CACHE` (default
/// `~/.cache/specwatch/venv`).
///
/// Returns `None` (and says why on stderr) when it is missing, so a test can skip with a reason;
/// with `SPECWATCH_REQUIRE_PYTHON=1` (set by the test script and CI) a missing environment fails
/// the test instead, so no check is silently skipped there.
pub fn python() -> Option<PathBuf> {
    let cache = std::env::var_os("SPECWATCH_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/specwatch")));
    let candidate = match (std::env::var_os("SPECWATCH_PYTHON"), cache) {
        (Some(p), _) => PathBuf::from(p),
        (None, Some(cache)) => cache.join("venv/bin/python"),
        (None, None) => PathBuf::from("python3"),
    };
    if imports(&candidate, "numpy, h5py, sigmf") {
        return Some(candidate);
    }
    skip_without_python(&format!(
        "the Python reference environment ({}) with numpy, h5py and sigmf is not available; run scripts/setup",
        candidate.display()
    ));
    None
}

/// Whether `python` runs and can `import modules` (a comma-separated list).
fn imports(python: &Path, modules: &str) -> bool {
    Command::new(python)
        .args(["-c", &format!("import {modules}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Reports a check that cannot run for want of what scripts/setup provides (the reference
/// Python environment, ONNX Runtime): prints `SKIPPED: why`, or panics with `why` under
/// `SPECWATCH_REQUIRE_PYTHON=1`, where nothing may be skipped.
fn skip_without_python(why: &str) {
    if std::env::var("SPECWATCH_REQUIRE_PYTHON").as_deref() == Ok("1") {
        panic!("{why}");
    }
    eprintln!("SKIPPED: {why}");
}

/// The reference Python environment with `onnx` and `onnxruntime` too, or `None` (skip, with
/// the reason printed; a failure under `SPECWATCH_REQUIRE_PYTHON=1`).
pub fn onnx_python() -> Option<PathBuf> {
    let py = python()?;
    if imports(&py, "onnx, onnxruntime") {
        return Some(py);
    }
    skip_without_python(&format!(
        "{} lacks onnx/onnxruntime; run scripts/setup",
        py.display()
    ));
    None
}

/// Whether ONNX Runtime loads for `specwatch::infer` from the usual places (skip, with the
/// reason printed; a failure under `SPECWATCH_REQUIRE_PYTHON=1`, where scripts/setup has
/// provided it).
pub fn runtime_available() -> bool {
    match specwatch::infer::runtime::runtime(None) {
        Ok(_) => true,
        Err(e) => {
            skip_without_python(&e.to_string());
            false
        }
    }
}

/// Runs a Python snippet with the reference interpreter, with `args` in `sys.argv[1:]`; panics
/// with its stderr when it fails. Returns its stdout.
pub fn run_python(python: &Path, script: &str, args: &[&str]) -> String {
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("start python");
    assert!(
        out.status.success(),
        "python failed:\n--- script ---\n{script}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Path of a binary of this package, built by cargo for the integration tests.
pub fn bin(name: &str) -> PathBuf {
    match name {
        "specwatch" => PathBuf::from(env!("CARGO_BIN_EXE_specwatch")),
        "specwatch-train" => PathBuf::from(env!("CARGO_BIN_EXE_specwatch-train")),
        other => panic!("no binary named {other}"),
    }
}

/// Runs `specwatch-train ARGS`, asserting it succeeds (its stderr in the message); its stdout.
pub fn specwatch_train(args: &[&str]) -> String {
    let out = std::process::Command::new(bin("specwatch-train"))
        .args(args)
        .output()
        .expect("run specwatch-train");
    assert!(
        out.status.success(),
        "specwatch-train {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The files in the repository folder `dir` (e.g. `models`) whose extension is `ext`, sorted.
pub fn repo_files(dir: &str, ext: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    files.sort();
    files
}

/// Fixture folder `tests/data`.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}
