//! Finding and loading the ONNX Runtime shared library, once per process.
//!
//! `ort` is built with `load-dynamic`: nothing links ONNX Runtime at build time, and the library
//! (`libonnxruntime.so*`, from the `onnxruntime` or `onnxruntime-gpu` wheel on PyPI) is opened
//! when the first model loads. Where it comes from, in order:
//!
//! 1. an explicit path (the station config) — when given, only that path is tried;
//! 2. `ORT_DYLIB_PATH` — when set, only that path is tried;
//! 3. well-known places, first that loads wins:
//!    - the specwatch venv made by `scripts/setup`:
//!      `$SPECWATCH_CACHE/venv` (default `$HOME/.cache/specwatch/venv`)
//!      `/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so*`;
//!    - the active Python venv (`$VIRTUAL_ENV`), same pattern;
//!    - `/usr/lib`, `/usr/lib/x86_64-linux-gnu`, `/usr/local/lib`, `/opt/onnxruntime/lib`:
//!      `libonnxruntime.so*`.
//!
//! An explicit path or `ORT_DYLIB_PATH` that does not work is an error rather than a reason to
//! search further: silently serving with another runtime (another version, CPU instead of GPU)
//! would hide a configuration mistake. When nothing works the error lists every place tried and
//! why each failed, and says how to fix it.
//!
//! ONNX Runtime allows one library and one environment per process: the first successful load
//! wins, later calls get the same [`Runtime`], and asking for a different explicit library then
//! is an error ([`InferError::RuntimeConflict`]).

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use super::{InferError, Result};

/// How a [`crate::infer::Model`] is run: which runtime library, which execution provider, how many
/// threads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeOptions {
    /// Path of `libonnxruntime.so*` from the config; `None` searches (see the module doc).
    pub library: Option<PathBuf>,
    /// Which execution provider to use.
    pub execution: ExecutionPreference,
    /// Threads ONNX Runtime uses inside one operator; `None` leaves its default (one per core).
    pub intra_threads: Option<usize>,
}

/// Which execution provider a session uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ExecutionPreference {
    /// CUDA when this build has the `cuda` feature and the runtime and a GPU allow it, CPU
    /// otherwise (the fallback and its reason are recorded in [`crate::infer::Model::provider`]).
    #[default]
    Auto,
    /// CPU only.
    Cpu,
    /// CUDA on this device or an error — never a silent CPU fallback.
    Cuda {
        /// CUDA device ordinal.
        device_id: i32,
    },
}

/// Where a candidate library path came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The explicit path (station config).
    Config,
    /// The `ORT_DYLIB_PATH` environment variable.
    EnvVar,
    /// The specwatch venv under `SPECWATCH_CACHE` / `~/.cache/specwatch`.
    SpecwatchVenv,
    /// The active Python venv (`VIRTUAL_ENV`).
    VirtualEnv,
    /// A system library folder.
    System,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Config => "configured path",
            Origin::EnvVar => "ORT_DYLIB_PATH",
            Origin::SpecwatchVenv => "specwatch venv",
            Origin::VirtualEnv => "VIRTUAL_ENV",
            Origin::System => "system folder",
        })
    }
}

/// One place tried and why it did not give a runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The path or pattern tried.
    pub place: String,
    /// Where it came from.
    pub origin: Origin,
    /// Why it did not work.
    pub reason: String,
}

/// Formats the message of [`InferError::RuntimeNotFound`].
pub(crate) fn not_found_message(tried: &[Attempt]) -> String {
    let mut s = String::from("ONNX Runtime library not found; tried:");
    for a in tried {
        s.push_str(&format!("\n  - {} ({}): {}", a.place, a.origin, a.reason));
    }
    s.push_str(
        "\nto fix: run scripts/setup (installs the onnxruntime wheel into \
         $SPECWATCH_CACHE/venv, default ~/.cache/specwatch/venv), or set ORT_DYLIB_PATH (or the \
         runtime library path in the config) to a libonnxruntime.so of ONNX Runtime 1.24 or newer",
    );
    s
}

/// A place to look: one path, or every `libonnxruntime.so*` matching a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    /// Exactly this file.
    File(PathBuf),
    /// `<root>/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so*`.
    Venv(PathBuf),
    /// `<dir>/libonnxruntime.so*`.
    Dir(PathBuf),
}

const VENV_PATTERN: &str = "lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so*";
const LIB_STEM: &str = "libonnxruntime.so";
const SYSTEM_DIRS: [&str; 4] = [
    "/usr/lib",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/local/lib",
    "/opt/onnxruntime/lib",
];

/// The places to look, in order, given an explicit path and a way to read the environment.
fn places(explicit: Option<&Path>, env: &dyn Fn(&str) -> Option<OsString>) -> Vec<(Place, Origin)> {
    if let Some(p) = explicit {
        return vec![(Place::File(p.to_path_buf()), Origin::Config)];
    }
    if let Some(p) = env("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return vec![(Place::File(PathBuf::from(p)), Origin::EnvVar)];
    }
    let mut out = Vec::new();
    let cache = env("SPECWATCH_CACHE")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            env("HOME")
                .filter(|p| !p.is_empty())
                .map(|h| PathBuf::from(h).join(".cache/specwatch"))
        });
    if let Some(cache) = cache {
        out.push((Place::Venv(cache.join("venv")), Origin::SpecwatchVenv));
    }
    if let Some(venv) = env("VIRTUAL_ENV").filter(|p| !p.is_empty()) {
        out.push((Place::Venv(PathBuf::from(venv)), Origin::VirtualEnv));
    }
    for d in SYSTEM_DIRS {
        out.push((Place::Dir(PathBuf::from(d)), Origin::System));
    }
    out
}

/// `libonnxruntime.so*` files in `dir`, best first: the unversioned name, then versions from
/// newest to oldest.
fn libraries_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(Vec<u64>, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let rest = name.strip_prefix(LIB_STEM)?;
            if !(rest.is_empty() || rest.starts_with('.')) {
                return None;
            }
            Some((version_key(rest), e.path()))
        })
        .collect();
    // The unversioned name has the empty key and sorts first; then newest version first.
    found.sort_by(|a, b| match (a.0.is_empty(), b.0.is_empty()) {
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => b.0.cmp(&a.0),
    });
    found.into_iter().map(|(_, p)| p).collect()
}

/// `.1.31.1` → `[1, 31, 1]` (non-numeric parts are skipped).
fn version_key(suffix: &str) -> Vec<u64> {
    suffix
        .split('.')
        .filter_map(|p| p.parse::<u64>().ok())
        .collect()
}

/// Expands a place into candidate files, or says why it has none.
fn expand(place: &Place) -> std::result::Result<Vec<PathBuf>, (String, String)> {
    match place {
        Place::File(p) => Ok(vec![p.clone()]),
        Place::Dir(d) => {
            let libs = libraries_in(d);
            if libs.is_empty() {
                Err((
                    format!("{}/{LIB_STEM}*", d.display()),
                    "no such file".into(),
                ))
            } else {
                Ok(libs)
            }
        }
        Place::Venv(root) => {
            let pattern = format!("{}/{VENV_PATTERN}", root.display());
            let lib = root.join("lib");
            let mut pythons: Vec<PathBuf> = std::fs::read_dir(&lib)
                .map(|it| {
                    it.filter_map(|e| e.ok())
                        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
                        .map(|e| e.path())
                        .collect()
                })
                .unwrap_or_default();
            pythons.sort();
            let libs: Vec<PathBuf> = pythons
                .iter()
                .flat_map(|p| libraries_in(&p.join("site-packages/onnxruntime/capi")))
                .collect();
            if libs.is_empty() {
                let why = if root.is_dir() {
                    "no onnxruntime wheel installed there"
                } else {
                    "no such venv"
                };
                Err((pattern, why.into()))
            } else {
                Ok(libs)
            }
        }
    }
}

/// The loaded ONNX Runtime: where it came from, its version, and the process's environment.
pub struct Runtime {
    library: PathBuf,
    origin: Origin,
    version: Option<String>,
    build_info: String,
    env: ort::environment::Environment,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("library", &self.library)
            .field("origin", &self.origin)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ONNX Runtime {} from {} ({})",
            self.version.as_deref().unwrap_or("(version unknown)"),
            self.library.display(),
            self.origin
        )
    }
}

impl Runtime {
    /// The library file loaded (absolute).
    pub fn library(&self) -> &Path {
        &self.library
    }

    /// Where its path came from.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// The runtime's version, e.g. `1.31.1`, as its file name (`libonnxruntime.so.1.31.1`) or
    /// its wheel's `*.dist-info` folder says; `None` when neither does.
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// ONNX Runtime's own build description (`GetBuildInfoString`).
    pub fn build_info(&self) -> &str {
        &self.build_info
    }

    /// The process-wide ONNX Runtime environment sessions are made in.
    pub fn environment(&self) -> &ort::environment::Environment {
        &self.env
    }

    /// Whether the loaded runtime library was built with the CUDA execution provider (the
    /// `onnxruntime-gpu` wheel). Always false in a build without the `cuda` feature, which
    /// cannot use it anyway. A GPU may still be missing: only creating a session tells.
    pub fn offers_cuda(&self) -> bool {
        #[cfg(feature = "cuda")]
        {
            use ort::ep::ExecutionProvider;
            ort::ep::CUDA::is_available().unwrap_or(false)
        }
        #[cfg(not(feature = "cuda"))]
        {
            false
        }
    }
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
static INIT: Mutex<()> = Mutex::new(());

/// Loads ONNX Runtime (once per process) and returns it; later calls return the same runtime.
///
/// `library` is the explicit path from the config, if any (see the module doc for the search).
pub fn runtime(library: Option<&Path>) -> Result<&'static Runtime> {
    let env = |k: &str| std::env::var_os(k);
    runtime_with(library, &env)
}

fn runtime_with(
    library: Option<&Path>,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<&'static Runtime> {
    // An explicit path that does not exist is refused whatever is loaded already.
    if let Some(p) = library
        && !p.is_file()
    {
        return Err(InferError::RuntimeNotFound {
            tried: vec![Attempt {
                place: p.display().to_string(),
                origin: Origin::Config,
                reason: if p.exists() {
                    "not a file".into()
                } else {
                    "no such file".into()
                },
            }],
        });
    }
    let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(rt) = RUNTIME.get() {
        if let Some(p) = library {
            let requested = p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
            if requested != rt.library {
                return Err(InferError::RuntimeConflict {
                    loaded: rt.library.clone(),
                    requested,
                });
            }
        }
        return Ok(rt);
    }
    let mut tried = Vec::new();
    for (place, origin) in places(library, env) {
        let files = match expand(&place) {
            Ok(files) => files,
            Err((place, reason)) => {
                tried.push(Attempt {
                    place,
                    origin,
                    reason,
                });
                continue;
            }
        };
        for file in files {
            match load(&file, origin) {
                Ok(rt) => return Ok(RUNTIME.get_or_init(|| rt)),
                Err(LoadFailure::Skip(reason)) => tried.push(Attempt {
                    place: file.display().to_string(),
                    origin,
                    reason,
                }),
                Err(LoadFailure::Fatal(e)) => return Err(e),
            }
        }
    }
    Err(InferError::RuntimeNotFound { tried })
}

enum LoadFailure {
    /// This file is not a usable runtime; try the next.
    Skip(String),
    /// The library loaded but the environment failed: nothing else can be loaded now.
    Fatal(InferError),
}

fn load(file: &Path, origin: Origin) -> std::result::Result<Runtime, LoadFailure> {
    if !file.is_file() {
        return Err(LoadFailure::Skip("no such file".into()));
    }
    let absolute = file.canonicalize().unwrap_or_else(|_| file.to_path_buf());
    let builder = ort::init_from(&absolute).map_err(|e| LoadFailure::Skip(e.to_string()))?;
    let env = builder
        .with_name("specwatch")
        .with_telemetry(false)
        .build()
        .map_err(|e| {
            LoadFailure::Fatal(InferError::RuntimeInit {
                library: absolute.clone(),
                message: e.to_string(),
            })
        })?;
    Ok(Runtime {
        version: version_of(&absolute),
        build_info: ort::info().to_string(),
        library: absolute,
        origin,
        env,
    })
}

/// The version a runtime library's file name or wheel says.
fn version_of(library: &Path) -> Option<String> {
    let name = library.file_name()?.to_str()?;
    if let Some(rest) = name
        .strip_prefix(LIB_STEM)
        .and_then(|r| r.strip_prefix('.'))
        && !rest.is_empty()
        && rest.split('.').all(|p| p.parse::<u64>().is_ok())
    {
        return Some(rest.to_string());
    }
    // A wheel: site-packages/onnxruntime/capi/<lib> beside onnxruntime[_gpu]-X.Y.Z.dist-info.
    let site = library.parent()?.parent()?.parent()?;
    std::fs::read_dir(site).ok()?.find_map(|e| {
        let name = e.ok()?.file_name().into_string().ok()?;
        let stem = name.strip_suffix(".dist-info")?;
        let (project, version) = stem.rsplit_once('-')?;
        project
            .starts_with("onnxruntime")
            .then(|| version.to_string())
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        move |k: &str| map.get(k).cloned()
    }

    #[test]
    fn explicit_path_is_the_only_place() {
        let env = env_of(&[("ORT_DYLIB_PATH", "/x/lib.so"), ("HOME", "/home/u")]);
        let p = places(Some(Path::new("/cfg/libonnxruntime.so")), &env);
        assert_eq!(
            p,
            vec![(
                Place::File(PathBuf::from("/cfg/libonnxruntime.so")),
                Origin::Config
            )]
        );
    }

    #[test]
    fn ort_dylib_path_is_the_only_place_when_set() {
        let env = env_of(&[("ORT_DYLIB_PATH", "/x/lib.so"), ("HOME", "/home/u")]);
        let p = places(None, &env);
        assert_eq!(
            p,
            vec![(Place::File(PathBuf::from("/x/lib.so")), Origin::EnvVar)]
        );
    }

    #[test]
    fn well_known_places_in_order() {
        let env = env_of(&[
            ("ORT_DYLIB_PATH", ""),
            ("HOME", "/home/u"),
            ("VIRTUAL_ENV", "/v"),
        ]);
        let p = places(None, &env);
        assert_eq!(
            p[0],
            (
                Place::Venv(PathBuf::from("/home/u/.cache/specwatch/venv")),
                Origin::SpecwatchVenv
            )
        );
        assert_eq!(p[1], (Place::Venv(PathBuf::from("/v")), Origin::VirtualEnv));
        assert_eq!(p.len(), 2 + SYSTEM_DIRS.len());
        let env = env_of(&[("SPECWATCH_CACHE", "/c"), ("HOME", "/home/u")]);
        assert_eq!(
            places(None, &env)[0].0,
            Place::Venv(PathBuf::from("/c/venv"))
        );
    }

    #[test]
    fn venv_pattern_finds_wheel_libraries_best_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let capi = dir
            .path()
            .join("venv/lib/python3.11/site-packages/onnxruntime/capi");
        std::fs::create_dir_all(&capi).expect("mkdir");
        for f in [
            "libonnxruntime.so.1.9.0",
            "libonnxruntime.so.1.31.1",
            "libonnxruntime_providers_shared.so",
            "libonnxruntime.so",
        ] {
            std::fs::write(capi.join(f), b"").expect("write");
        }
        let libs = expand(&Place::Venv(dir.path().join("venv"))).expect("found");
        let names: Vec<_> = libs
            .iter()
            .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "libonnxruntime.so",
                "libonnxruntime.so.1.31.1",
                "libonnxruntime.so.1.9.0"
            ]
        );
        let (pattern, why) = expand(&Place::Venv(dir.path().join("nope"))).expect_err("none");
        assert!(pattern.ends_with(VENV_PATTERN), "{pattern}");
        assert_eq!(why, "no such venv");
    }

    #[test]
    fn version_from_file_name_or_dist_info() {
        assert_eq!(
            version_of(Path::new("/x/libonnxruntime.so.1.31.1")).as_deref(),
            Some("1.31.1")
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let capi = dir.path().join("site-packages/onnxruntime/capi");
        std::fs::create_dir_all(&capi).expect("mkdir");
        std::fs::create_dir_all(
            dir.path()
                .join("site-packages/onnxruntime_gpu-1.30.0.dist-info"),
        )
        .expect("mkdir");
        assert_eq!(
            version_of(&capi.join("libonnxruntime.so")).as_deref(),
            Some("1.30.0")
        );
    }

    #[test]
    fn missing_explicit_library_lists_it_and_says_how_to_fix() {
        let err = runtime_with(Some(Path::new("/nonexistent/libonnxruntime.so")), &|_| None)
            .expect_err("missing");
        let msg = err.to_string();
        assert!(msg.contains("/nonexistent/libonnxruntime.so (configured path): no such file"));
        assert!(
            msg.contains("scripts/setup") && msg.contains("ORT_DYLIB_PATH"),
            "{msg}"
        );
    }

    #[test]
    fn not_found_lists_every_place() {
        let tried: Vec<Attempt> = places(None, &env_of(&[("HOME", "/nowhere")]))
            .iter()
            .map(|(p, o)| {
                let (place, reason) = expand(p).expect_err("nothing at /nowhere");
                Attempt {
                    place,
                    origin: *o,
                    reason,
                }
            })
            .filter(|a| a.origin != Origin::System)
            .collect();
        let msg = not_found_message(&tried);
        assert!(
            msg.contains(
                "/nowhere/.cache/specwatch/venv/lib/python3*/site-packages/onnxruntime/capi/\
                 libonnxruntime.so* (specwatch venv): no such venv"
            ),
            "{msg}"
        );
    }
}
