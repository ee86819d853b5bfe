//! The station config: one TOML file → a validated [`Config`]. `specwatch check` and the
//! daemon's start-up run the same code ([`Config::load`], then [`crate::flowgraph::Station::prepare`]).
//!
//! ```toml
//! [station]
//! name = "demo"
//!
//! [api]
//! listen = "127.0.0.1:9930"            # default
//!
//! [runtime]
//! onnxruntime_library = "/usr/lib/specwatch/libonnxruntime.so"   # optional (else ORT_DYLIB_PATH, well-known places)
//! execution_provider = "auto"          # auto | cpu | cuda
//!
//! [store]
//! path = "data/specwatch.sqlite"
//! retention_max_age = "7d"             # optional: s, m, h, d
//! merge = true
//!
//! [[source]]
//! name = "synth"
//! kind = "synthetic"                   # replay | synthetic | soapy | uhd (parameters: see source)
//! recipe = "rml2016a"
//!
//! [gate]                               # default gate of every model
//! kind = "energy"                      # energy | snr | pass_all
//! threshold_db = 6.0
//!
//! [[model]]
//! card = "models/amc128.json"
//! source = "synth"
//! batch_size = 32
//! ```
//!
//! Rules:
//! - Unknown keys are refused everywhere (a misspelt key must not be silently ignored).
//! - Every error names the key path, `source[0].sample_rate_hz: expected > 0, got -1`; all
//!   problems of a file are reported at once.
//! - Relative paths (model cards, captures, the store, the runtime library) are taken relative to
//!   the working directory of the process, as a shell would; installed configs use absolute paths.

pub mod source;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use source::{
    ReplayMode, ReplaySource, SoapySource, SourceConfig, SourceKind, SyntheticSource, UhdSource,
};

use crate::dsp::array::ArrayGeometry;
use crate::dsp::doa::{DoaGrid, DoaMethod};
use crate::dsp::energy::EnergyDetectorConfig;
use crate::infer::{ExecutionPreference, RuntimeOptions};

/// Default address of the HTTP API.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9930";

/// One thing wrong with a config: where (the key path) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, `source[0].sample_rate_hz`; empty for the file as a whole.
    pub key: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// Why a config was refused. The message names the file and every problem found.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("config {path}: cannot read it: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file was read but is not a valid station config.
    #[error("config {path}: {}", problems_text(.problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// The problems found (empty for an I/O error).
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Io { .. } => &[],
            ConfigError::Invalid { problems, .. } => problems,
        }
    }
}

fn problems_text(problems: &[Problem]) -> String {
    match problems {
        [one] => one.to_string(),
        many => {
            let mut s = format!("{} problems:", many.len());
            for p in many {
                s.push_str("\n  - ");
                s.push_str(&p.to_string());
            }
            s
        }
    }
}

/// Collects problems with their key paths while a config is checked.
#[derive(Debug, Default)]
pub struct Problems(Vec<Problem>);

impl Problems {
    /// Records a problem at `key`.
    pub fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The problems recorded.
    pub fn into_vec(self) -> Vec<Problem> {
        self.0
    }

    /// `value` must be finite and `> 0`.
    pub fn positive(&mut self, key: &str, value: f64) {
        if !(value.is_finite() && value > 0.0) {
            self.push(key, format!("expected > 0, got {value}"));
        }
    }

    /// `value` must be at least 1.
    pub fn at_least_one(&mut self, key: &str, value: usize) {
        if value == 0 {
            self.push(key, "expected at least 1, got 0");
        }
    }

    /// `value` must be finite.
    pub fn finite(&mut self, key: &str, value: f64) {
        if !value.is_finite() {
            self.push(key, format!("expected a finite number, got {value}"));
        }
    }
}

/// `[station]`: who this station is.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StationConfig {
    /// Station name (logs, `/status`).
    pub name: String,
}

/// `[api]`: the HTTP API.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Address and port to listen on.
    pub listen: String,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.to_string(),
        }
    }
}

impl ApiConfig {
    /// The listen address, parsed (checked by [`Config::load`]).
    pub fn listen_addr(&self) -> Result<SocketAddr, String> {
        self.listen.parse().map_err(|_| {
            format!(
                "expected an address and port such as {DEFAULT_LISTEN}, got '{}'",
                self.listen
            )
        })
    }
}

/// Which execution provider models run on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionProvider {
    /// CUDA when built with it and available, CPU otherwise (logged).
    #[default]
    Auto,
    /// CPU only.
    Cpu,
    /// CUDA or an error.
    Cuda,
}

/// `[runtime]`: ONNX Runtime.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Path of `libonnxruntime.so*`; unset searches `ORT_DYLIB_PATH` and well-known places.
    pub onnxruntime_library: Option<PathBuf>,
    /// `auto`, `cpu` or `cuda`.
    pub execution_provider: ExecutionProvider,
    /// CUDA device ordinal (with `cuda`).
    pub cuda_device: i32,
    /// Threads ONNX Runtime uses inside one operator, per model worker (default 1). More cores
    /// are better spent on more `workers`: on a 2-core station two single-threaded sessions
    /// classified 1.9–2.4 MS/s of 128-sample windows, one session with ONNX Runtime's own
    /// thread count (one per core) 0.8–1.5 MS/s (`cargo bench --bench daemon` prints both).
    pub intra_threads: Option<usize>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            onnxruntime_library: None,
            execution_provider: ExecutionProvider::default(),
            cuda_device: 0,
            intra_threads: Some(DEFAULT_INTRA_THREADS),
        }
    }
}

/// `[runtime] intra_threads` when the configuration leaves it out.
pub const DEFAULT_INTRA_THREADS: usize = 1;

impl RuntimeConfig {
    /// The options [`crate::infer::Model::load`] takes.
    pub fn options(&self) -> RuntimeOptions {
        RuntimeOptions {
            library: self.onnxruntime_library.clone(),
            execution: match self.execution_provider {
                ExecutionProvider::Auto => ExecutionPreference::Auto,
                ExecutionProvider::Cpu => ExecutionPreference::Cpu,
                ExecutionProvider::Cuda => ExecutionPreference::Cuda {
                    device_id: self.cuda_device,
                },
            },
            intra_threads: self.intra_threads,
        }
    }
}

/// `[store]`: where detections are kept.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    /// SQLite database file (created with its folder when missing).
    pub path: PathBuf,
    /// Detections older than this are deleted (`"30d"`, `"12h"`, `"90m"`, `"3600s"`).
    pub retention_max_age: Option<String>,
    /// At most this many detections are kept (oldest deleted first).
    pub retention_max_rows: Option<u64>,
    /// Merge consecutive windows of the same class on the same stream, channel and model into
    /// one record.
    pub merge: bool,
    /// Largest gap (samples) between a record's end and the next window that still merges.
    pub merge_max_gap_samples: u64,
    /// Detections committed per transaction at most.
    pub batch_max: usize,
    /// Longest time a detection waits before its transaction commits, ms (it commits sooner,
    /// as soon as the store's writer has nothing more queued).
    pub flush_interval_ms: u64,
    /// Detections queued for the writer before new ones are dropped (and counted).
    pub queue_capacity: usize,
}

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            path: PathBuf::from("data/specwatch.sqlite"),
            retention_max_age: None,
            retention_max_rows: None,
            merge: false,
            merge_max_gap_samples: 0,
            batch_max: 256,
            flush_interval_ms: 100,
            queue_capacity: 16_384,
        }
    }
}

impl StoreSection {
    /// The retention age, parsed (checked by [`Config::load`]).
    pub fn retention_age(&self) -> Result<Option<Duration>, String> {
        self.retention_max_age
            .as_deref()
            .map(parse_duration)
            .transpose()
    }

    fn check(&self, p: &mut Problems) {
        if self.path.as_os_str().is_empty() {
            p.push("store.path", "expected a file path, got an empty string");
        }
        if let Err(e) = self.retention_age() {
            p.push("store.retention_max_age", e);
        }
        if self.retention_max_rows == Some(0) {
            p.push("store.retention_max_rows", "expected at least 1, got 0");
        }
        p.at_least_one("store.batch_max", self.batch_max);
        p.at_least_one("store.queue_capacity", self.queue_capacity);
        if self.flush_interval_ms == 0 {
            p.push("store.flush_interval_ms", "expected at least 1 ms, got 0");
        }
    }
}

/// Parses `"30d"`, `"12h"`, `"90m"`, `"3600s"` (a positive whole number and a unit).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let expected = || {
        format!(
            "expected a duration such as \"30d\", \"12h\", \"90m\" or \"3600s\", got \"{text}\""
        )
    };
    let n: u64 = num.parse().map_err(|_| expected())?;
    let seconds = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(expected()),
    };
    if n == 0 {
        return Err(format!("expected a duration > 0, got \"{text}\""));
    }
    n.checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(expected)
}

/// Which gate decides whether a window goes to inference.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateKind {
    /// Energy above a tracked noise floor ([`crate::dsp::energy`]).
    Energy,
    /// Estimated SNR ([`crate::dsp::snr`]) above a threshold.
    Snr,
    /// Every window.
    #[default]
    PassAll,
}

/// `[gate]` (and a model's `gate`): which windows are classified.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateConfig {
    /// `energy`, `snr` or `pass_all`.
    #[serde(default)]
    pub kind: GateKind,
    /// `energy`: margin above the noise floor, dB (default 6); `snr`: minimum estimated SNR, dB
    /// (default 0). Not taken by `pass_all`.
    pub threshold_db: Option<f32>,
    /// `energy`: windows observed before the floor is set (all pass meanwhile; default 32).
    pub warmup_windows: Option<usize>,
    /// `energy`: EMA weight of each noise window in the floor, (0, 1] (default 0.02).
    pub floor_alpha: Option<f32>,
}

impl GateConfig {
    /// The energy detector's settings (defaults where unset).
    pub fn energy(&self) -> EnergyDetectorConfig {
        let mut c = EnergyDetectorConfig::default();
        if let Some(t) = self.threshold_db {
            c.threshold_db = t;
        }
        if let Some(w) = self.warmup_windows {
            c.warmup_windows = w;
        }
        if let Some(a) = self.floor_alpha {
            c.floor_alpha = a;
        }
        c
    }

    /// The SNR gate's threshold in dB.
    pub fn snr_threshold_db(&self) -> f32 {
        self.threshold_db.unwrap_or(0.0)
    }

    fn check(&self, key: &str, p: &mut Problems) {
        let energy_only = [
            ("warmup_windows", self.warmup_windows.is_some()),
            ("floor_alpha", self.floor_alpha.is_some()),
        ];
        match self.kind {
            GateKind::PassAll => {
                if self.threshold_db.is_some() {
                    p.push(
                        format!("{key}.threshold_db"),
                        "not taken by gate kind 'pass_all'",
                    );
                }
            }
            GateKind::Snr => {
                if let Some(t) = self.threshold_db {
                    p.finite(&format!("{key}.threshold_db"), f64::from(t));
                }
            }
            GateKind::Energy => {
                if let Err(e) = crate::dsp::energy::EnergyDetector::new(self.energy()) {
                    p.push(key, e.to_string());
                }
            }
        }
        if self.kind != GateKind::Energy {
            for (name, set) in energy_only {
                if set {
                    p.push(format!("{key}.{name}"), "taken only by gate kind 'energy'");
                }
            }
        }
    }
}

/// A model's direction finding for multi-channel windows (MUSIC by default).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DoaConfig {
    /// `music` (default) or `bartlett`.
    #[serde(default)]
    pub method: DoaMethod,
    /// Array shape: `ula`, `ura` or `uca`.
    pub array: String,
    /// Elements; default: the model's channel count.
    pub elements: Option<usize>,
    /// Spacing between neighbouring elements in wavelengths (default 0.5).
    #[serde(default = "half")]
    pub spacing_wavelengths: f64,
    /// Search grid step, degrees (default 1).
    #[serde(default = "one")]
    pub step_deg: f64,
    /// Azimuth search range, degrees (default −90..90).
    #[serde(default = "front")]
    pub azimuth_range_deg: [f64; 2],
    /// Elevation search range, degrees (default −90..90; a ULA searches 0 only).
    #[serde(default = "front")]
    pub elevation_range_deg: [f64; 2],
}

fn half() -> f64 {
    0.5
}
fn one() -> f64 {
    1.0
}
fn front() -> [f64; 2] {
    [-90.0, 90.0]
}

impl DoaConfig {
    /// The array geometry for `channels` elements (unless `elements` says otherwise).
    pub fn geometry(&self, channels: usize) -> Result<ArrayGeometry, String> {
        ArrayGeometry::from_kind(
            &self.array,
            self.elements.unwrap_or(channels),
            self.spacing_wavelengths,
        )
        .map_err(|e| e.to_string())
    }

    /// The search grid.
    pub fn grid(&self) -> DoaGrid {
        DoaGrid {
            az_min_deg: self.azimuth_range_deg[0],
            az_max_deg: self.azimuth_range_deg[1],
            el_min_deg: self.elevation_range_deg[0],
            el_max_deg: self.elevation_range_deg[1],
            step_deg: self.step_deg,
        }
    }
}

/// `[[model]]`: one model run on one source's windows.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The model card (`models/<name>.json`, with `<name>.onnx` beside it).
    pub card: PathBuf,
    /// The source (by name) whose samples it classifies.
    pub source: String,
    /// Source channels that make one window, in order; default `0..card.channels`. The model
    /// takes the first `card.channels` of them; more are allowed with `doa` (direction finding
    /// over all of them, e.g. a 1-channel classifier on a 4-element array).
    pub channels: Option<Vec<u32>>,
    /// Window length in samples; must equal the card's `window_len` when given (default: the
    /// card's).
    pub window: Option<usize>,
    /// Samples between window starts (default: the window length, contiguous windows).
    pub hop: Option<usize>,
    /// Windows per inference batch at most.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Longest time a window waits for its batch to fill, ms.
    #[serde(default = "default_wait")]
    pub max_wait_ms: u64,
    /// Windows queued for the inference workers; when full, new windows are dropped and counted
    /// (the stream is never stalled).
    #[serde(default = "default_queue")]
    pub queue_capacity: usize,
    /// Inference worker threads, each with its own session (default 2; see
    /// [`RuntimeConfig::intra_threads`]).
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Classified windows below this top-1 probability are not stored.
    #[serde(default)]
    pub min_confidence: f32,
    /// This model's gate (default: the `[gate]` section).
    pub gate: Option<GateConfig>,
    /// Direction finding for multi-channel windows: run on every window, also when the model
    /// gives angles of its own, so detections carry both bearings (`doa_*` beside `model_*`).
    pub doa: Option<DoaConfig>,
}

fn default_batch() -> usize {
    32
}
fn default_wait() -> u64 {
    20
}
fn default_queue() -> usize {
    1024
}
fn default_workers() -> usize {
    2
}

impl ModelConfig {
    /// A model on `source` with every default.
    pub fn new(card: impl Into<PathBuf>, source: impl Into<String>) -> Self {
        Self {
            card: card.into(),
            source: source.into(),
            channels: None,
            window: None,
            hop: None,
            batch_size: default_batch(),
            max_wait_ms: default_wait(),
            queue_capacity: default_queue(),
            workers: default_workers(),
            min_confidence: 0.0,
            gate: None,
            doa: None,
        }
    }

    fn check(&self, key: &str, sources: &[SourceConfig], p: &mut Problems) {
        if self.card.as_os_str().is_empty() {
            p.push(
                format!("{key}.card"),
                "expected the path of a model card, got an empty string",
            );
        }
        match sources.iter().find(|s| s.name == self.source) {
            None => {
                let names: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
                p.push(
                    format!("{key}.source"),
                    format!(
                        "no source named '{}'; the sources are {}",
                        self.source,
                        if names.is_empty() {
                            "none (add a [[source]])".to_string()
                        } else {
                            format!("{names:?}")
                        }
                    ),
                );
            }
            Some(s) => {
                if let (Some(chans), Some(n)) = (&self.channels, s.kind.declared_channels()) {
                    for (i, c) in chans.iter().enumerate() {
                        if *c as usize >= n {
                            p.push(
                                format!("{key}.channels[{i}]"),
                                format!(
                                    "source '{}' has {n} channel(s) (0..{}); got {c}",
                                    s.name,
                                    n.saturating_sub(1)
                                ),
                            );
                        }
                    }
                }
            }
        }
        if let Some(chans) = &self.channels {
            if chans.is_empty() {
                p.push(
                    format!("{key}.channels"),
                    "expected at least one channel, got []",
                );
            }
            let mut seen = std::collections::BTreeSet::new();
            for c in chans {
                if !seen.insert(c) {
                    p.push(
                        format!("{key}.channels"),
                        format!("channel {c} is listed twice"),
                    );
                }
            }
        }
        if let Some(w) = self.window {
            p.at_least_one(&format!("{key}.window"), w);
        }
        if let Some(h) = self.hop {
            p.at_least_one(&format!("{key}.hop"), h);
        }
        p.at_least_one(&format!("{key}.batch_size"), self.batch_size);
        if self.batch_size > 4096 {
            p.push(
                format!("{key}.batch_size"),
                format!("expected at most 4096, got {}", self.batch_size),
            );
        }
        p.at_least_one(&format!("{key}.queue_capacity"), self.queue_capacity);
        p.at_least_one(&format!("{key}.workers"), self.workers);
        if self.workers > 64 {
            p.push(
                format!("{key}.workers"),
                format!("expected at most 64, got {}", self.workers),
            );
        }
        if !(0.0..=1.0).contains(&self.min_confidence) {
            p.push(
                format!("{key}.min_confidence"),
                format!(
                    "expected a probability in [0, 1], got {}",
                    self.min_confidence
                ),
            );
        }
        if let Some(g) = &self.gate {
            g.check(&format!("{key}.gate"), p);
        }
        if let Some(d) = &self.doa {
            let k = format!("{key}.doa");
            let elements = d
                .elements
                .or(self.channels.as_ref().map(Vec::len))
                .unwrap_or(2);
            match ArrayGeometry::from_kind(&d.array, elements, d.spacing_wavelengths) {
                Err(e) => p.push(k, e.to_string()),
                Ok(geometry) => {
                    if let Err(e) = crate::dsp::doa::DoaEstimator::new(geometry, d.grid()) {
                        p.push(k, e.to_string());
                    }
                }
            }
        }
    }
}

/// The raw shape of the file; sources are checked per kind afterwards.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    station: StationConfig,
    #[serde(default)]
    api: ApiConfig,
    #[serde(default)]
    runtime: RuntimeConfig,
    #[serde(default)]
    store: StoreSection,
    #[serde(default)]
    source: Vec<toml::Table>,
    #[serde(default)]
    gate: GateConfig,
    #[serde(default)]
    model: Vec<ModelConfig>,
}

/// A validated station config.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `[station]`.
    pub station: StationConfig,
    /// `[api]`.
    pub api: ApiConfig,
    /// `[runtime]`.
    pub runtime: RuntimeConfig,
    /// `[store]`.
    pub store: StoreSection,
    /// `[[source]]`, in file order.
    pub sources: Vec<SourceConfig>,
    /// `[gate]`: the default gate.
    pub gate: GateConfig,
    /// `[[model]]`, in file order.
    pub models: Vec<ModelConfig>,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|problems| ConfigError::Invalid {
            path: path.to_path_buf(),
            problems,
        })
    }

    /// Validates config text; every problem found, with its key path.
    pub fn parse(text: &str) -> Result<Config, Vec<Problem>> {
        let de = toml::Deserializer::parse(text).map_err(|e| vec![toml_problem(text, "", &e)])?;
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            vec![toml_problem(
                text,
                if path == "." { "" } else { &path },
                e.inner(),
            )]
        })?;
        let mut p = Problems::default();
        let mut sources = Vec::with_capacity(raw.source.len());
        for (i, table) in raw.source.into_iter().enumerate() {
            if let Some(s) = SourceConfig::from_table(i, table, &mut p) {
                sources.push(s);
            }
        }
        let config = Config {
            station: raw.station,
            api: raw.api,
            runtime: raw.runtime,
            store: raw.store,
            sources,
            gate: raw.gate,
            models: raw.model,
        };
        config.check(&mut p);
        if p.is_empty() {
            Ok(config)
        } else {
            Err(p.into_vec())
        }
    }

    /// Checks values and cross-references (sources named by models exist, channel indexes fit).
    fn check(&self, p: &mut Problems) {
        if self.station.name.trim().is_empty() {
            p.push("station.name", "expected a name, got an empty string");
        }
        if let Err(e) = self.api.listen_addr() {
            p.push("api.listen", e);
        }
        if let Some(n) = self.runtime.intra_threads {
            p.at_least_one("runtime.intra_threads", n);
        }
        if self.runtime.cuda_device < 0 {
            p.push(
                "runtime.cuda_device",
                format!(
                    "expected a device ordinal ≥ 0, got {}",
                    self.runtime.cuda_device
                ),
            );
        }
        self.store.check(p);
        let mut names = std::collections::BTreeMap::new();
        for (i, s) in self.sources.iter().enumerate() {
            if let Some(first) = names.insert(s.name.as_str(), i) {
                p.push(
                    format!("source[{i}].name"),
                    format!("'{}' is already the name of source[{first}]", s.name),
                );
            }
        }
        self.gate.check("gate", p);
        if self.models.is_empty() {
            p.push("model", "expected at least one [[model]]");
        }
        for (i, m) in self.models.iter().enumerate() {
            m.check(&format!("model[{i}]"), &self.sources, p);
        }
    }

    /// The source named `name`.
    pub fn source(&self, name: &str) -> Option<&SourceConfig> {
        self.sources.iter().find(|s| s.name == name)
    }

    /// The gate of model `i` (its own, else the default).
    pub fn gate_of<'a>(&'a self, model: &'a ModelConfig) -> &'a GateConfig {
        model.gate.as_ref().unwrap_or(&self.gate)
    }
}

/// A TOML or type error as a [`Problem`], with the line and column when the parser knows them.
fn toml_problem(text: &str, key: &str, e: &toml::de::Error) -> Problem {
    let mut message = e.message().trim().to_string();
    if let Some(span) = e.span() {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        message.push_str(&format!(" (line {line}, column {column})"));
    }
    Problem {
        key: key.to_string(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_duration("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("3600s"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("0h").is_err());
        assert!(
            parse_duration("1w")
                .expect_err("no weeks")
                .contains("\"1w\"")
        );
        assert!(parse_duration("h").is_err());
    }
}
