//! `[[source]]`: where samples come from. Every source has a `name` (unique; models refer to
//! it) and a `kind`, whose parameters follow:
//!
//! | kind | parameters |
//! |---|---|
//! | `replay` | `path` (`.npy` or SigMF), `mode` = `paced` \| `fast`, `loop`, `sample_rate_hz` / `center_freq_hz` (override the capture's own), `chunk_samples` |
//! | `synthetic` | `recipe` (`rml2016a`, `rml2018a`, `zsl7`, `aoa4`), `classes` (subset), `snr_db` = `[min, max]`, `sample_rate_hz`, `mode`, `occupancy`, `burst_windows`, `windows`, `seed`, `center_freq_hz` |
//! | `soapy` | `args`, `center_freq_hz`, `sample_rate_hz`, `gain_db`, `channels`, `antenna`, retry |
//! | `uhd` | `addresses` (the X300 motherboards), `clock_source` / `time_source` (`external`), `start_delay_s` (timed start), `channels`, `center_freq_hz`, `sample_rate_hz`, `gain_db`, `antenna`, retry |
//!
//! Each kind's parameters are a struct with unknown fields refused, so `gain_db` on a replay
//! source is an error that names the key and the kind. Retry (hardware kinds):
//! `retry_backoff_ms` (first wait, doubled up to `retry_backoff_max_ms`) and `max_retries`
//! (0: forever).

use std::path::PathBuf;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::Problems;

/// A validated `[[source]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceConfig {
    /// Unique name; the stream id of its detections.
    pub name: String,
    /// What it is, with its parameters.
    pub kind: SourceKind,
}

/// The kinds of source, with their parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceKind {
    Replay(ReplaySource),
    Synthetic(SyntheticSource),
    Soapy(SoapySource),
    Uhd(UhdSource),
}

/// The kind names, in the order the docs list them.
pub const SOURCE_KINDS: [&str; 4] = ["replay", "synthetic", "soapy", "uhd"];

impl SourceKind {
    /// `replay`, `synthetic`, `soapy` or `uhd`.
    pub fn name(&self) -> &'static str {
        match self {
            SourceKind::Replay(_) => "replay",
            SourceKind::Synthetic(_) => "synthetic",
            SourceKind::Soapy(_) => "soapy",
            SourceKind::Uhd(_) => "uhd",
        }
    }

    /// Channel count known from the config alone (`None` for a replay: the capture says).
    pub fn declared_channels(&self) -> Option<usize> {
        match self {
            SourceKind::Replay(_) => None,
            SourceKind::Synthetic(s) => Some(if s.recipe == "aoa4" { 4 } else { 1 }),
            SourceKind::Soapy(s) => Some(s.channels.len()),
            SourceKind::Uhd(s) => Some(s.channels.len()),
        }
    }
}

/// How fast a file or generator source delivers samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayMode {
    /// At the sample rate, as a live receiver would.
    #[default]
    Paced,
    /// As fast as the flowgraph takes them.
    Fast,
}

/// `kind = "replay"`: a recorded capture.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaySource {
    /// The `.npy` capture (with its optional sidecar) or SigMF recording.
    pub path: PathBuf,
    /// `paced` (default) or `fast`.
    #[serde(default)]
    pub mode: ReplayMode,
    /// Start again at the end (sample indexes keep counting up).
    #[serde(default, rename = "loop")]
    pub repeat: bool,
    /// Sample rate, Hz; overrides the capture's (needed for `paced` when it has none).
    pub sample_rate_hz: Option<f64>,
    /// Center frequency, Hz; overrides the capture's.
    pub center_freq_hz: Option<f64>,
    /// Samples per channel read at a time.
    #[serde(default = "default_chunk")]
    pub chunk_samples: usize,
}

fn default_chunk() -> usize {
    8192
}

/// `kind = "synthetic"`: the generator, live — bursts of random classes in noise.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticSource {
    /// Recipe whose modulators and channel make the signal.
    #[serde(default = "default_recipe")]
    pub recipe: String,
    /// Classes drawn (default: all of the recipe's).
    pub classes: Option<Vec<String>>,
    /// SNR range in dB, drawn uniformly per burst.
    #[serde(default = "default_snr")]
    pub snr_db: [f32; 2],
    /// Sample rate, Hz (default: the recipe's).
    pub sample_rate_hz: Option<f64>,
    /// Center frequency reported with detections, Hz.
    pub center_freq_hz: Option<f64>,
    /// `paced` (default) or `fast`.
    #[serde(default)]
    pub mode: ReplayMode,
    /// Fraction of bursts that carry a signal; the others are noise only.
    #[serde(default = "default_occupancy")]
    pub occupancy: f64,
    /// Windows (of the recipe's length) per burst of one class.
    #[serde(default = "default_burst")]
    pub burst_windows: usize,
    /// Stop after this many windows (default: run forever).
    pub windows: Option<u64>,
    /// Random seed.
    #[serde(default = "default_seed")]
    pub seed: u64,
}

fn default_recipe() -> String {
    "rml2016a".into()
}
fn default_snr() -> [f32; 2] {
    [0.0, 20.0]
}
fn default_occupancy() -> f64 {
    1.0
}
fn default_burst() -> usize {
    8
}
fn default_seed() -> u64 {
    1
}

/// Reconnection policy of a hardware source (its `retry_*` and `max_retries` keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// First wait after a stream error, ms; doubled after each failed attempt.
    pub retry_backoff_ms: u64,
    /// Longest wait between attempts, ms.
    pub retry_backoff_max_ms: u64,
    /// Attempts before the source gives up (0: never give up).
    pub max_retries: u32,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            retry_backoff_ms: default_backoff(),
            retry_backoff_max_ms: default_backoff_max(),
            max_retries: 0,
        }
    }
}

fn default_backoff() -> u64 {
    500
}
fn default_backoff_max() -> u64 {
    30_000
}

impl Retry {
    /// The wait before attempt `attempt` (1-based), doubling up to the maximum.
    pub fn backoff(&self, attempt: u32) -> std::time::Duration {
        let factor = 1u64 << attempt.saturating_sub(1).min(20);
        std::time::Duration::from_millis(
            self.retry_backoff_ms
                .saturating_mul(factor)
                .min(self.retry_backoff_max_ms),
        )
    }

    /// Whether attempt `attempt` (1-based) may still be made.
    pub fn allows(&self, attempt: u32) -> bool {
        self.max_retries == 0 || attempt <= self.max_retries
    }

    fn check(&self, key: &str, p: &mut Problems) {
        if self.retry_backoff_ms == 0 {
            p.push(
                format!("{key}.retry_backoff_ms"),
                "expected at least 1 ms, got 0",
            );
        }
        if self.retry_backoff_max_ms < self.retry_backoff_ms {
            p.push(
                format!("{key}.retry_backoff_max_ms"),
                format!(
                    "expected ≥ retry_backoff_ms ({}), got {}",
                    self.retry_backoff_ms, self.retry_backoff_max_ms
                ),
            );
        }
    }
}

/// `kind = "soapy"`: a SoapySDR device (build feature `soapy`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoapySource {
    /// Device arguments, `driver=rtlsdr,serial=…`.
    #[serde(default)]
    pub args: String,
    /// Tuning frequency, Hz.
    pub center_freq_hz: f64,
    /// Sample rate, Hz.
    pub sample_rate_hz: f64,
    /// Overall gain, dB (default: the driver's automatic gain where it has one).
    pub gain_db: Option<f64>,
    /// Receive channels, streamed together.
    #[serde(default = "default_one_channel")]
    pub channels: Vec<u32>,
    /// Antenna port name.
    pub antenna: Option<String>,
    /// First wait after a stream error, ms (doubled after each failed attempt).
    #[serde(default = "default_backoff")]
    pub retry_backoff_ms: u64,
    /// Longest wait between attempts, ms.
    #[serde(default = "default_backoff_max")]
    pub retry_backoff_max_ms: u64,
    /// Attempts before the source gives up (0: never give up).
    #[serde(default)]
    pub max_retries: u32,
}

fn default_one_channel() -> Vec<u32> {
    vec![0]
}

/// `kind = "uhd"`: USRPs (X300s) through UHD (build feature `uhd`), several motherboards
/// sharing an external 10 MHz and PPS, started at one time.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UhdSource {
    /// Motherboard addresses (`addr0`, `addr1`, …): two for the 4-channel X300 array.
    pub addresses: Vec<String>,
    /// `external` (shared 10 MHz), `internal` or `gpsdo`.
    #[serde(default = "default_external")]
    pub clock_source: String,
    /// `external` (shared PPS), `internal` or `gpsdo`.
    #[serde(default = "default_external")]
    pub time_source: String,
    /// The stream starts this long after the device time is set at a PPS edge, s.
    #[serde(default = "default_start_delay")]
    pub start_delay_s: f64,
    /// Receive channels across the motherboards, streamed aligned.
    #[serde(default = "default_four_channels")]
    pub channels: Vec<u32>,
    /// Tuning frequency, Hz.
    pub center_freq_hz: f64,
    /// Sample rate, Hz.
    pub sample_rate_hz: f64,
    /// Gain, dB.
    #[serde(default)]
    pub gain_db: f64,
    /// Antenna port (`RX2`, `TX/RX`).
    pub antenna: Option<String>,
    /// First wait after a stream error, ms (doubled after each failed attempt).
    #[serde(default = "default_backoff")]
    pub retry_backoff_ms: u64,
    /// Longest wait between attempts, ms.
    #[serde(default = "default_backoff_max")]
    pub retry_backoff_max_ms: u64,
    /// Attempts before the source gives up (0: never give up).
    #[serde(default)]
    pub max_retries: u32,
}

fn default_external() -> String {
    "external".into()
}
fn default_start_delay() -> f64 {
    1.5
}
fn default_four_channels() -> Vec<u32> {
    vec![0, 1, 2, 3]
}

macro_rules! retry_of {
    ($t:ty) => {
        impl $t {
            /// The reconnection policy.
            pub fn retry(&self) -> Retry {
                Retry {
                    retry_backoff_ms: self.retry_backoff_ms,
                    retry_backoff_max_ms: self.retry_backoff_max_ms,
                    max_retries: self.max_retries,
                }
            }
        }
    };
}
retry_of!(SoapySource);
retry_of!(UhdSource);

impl UhdSource {
    /// UHD device arguments: `addr0=…,addr1=…`.
    pub fn device_args(&self) -> String {
        self.addresses
            .iter()
            .enumerate()
            .map(|(i, a)| format!("addr{i}={a}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

const CLOCK_SOURCES: [&str; 3] = ["external", "internal", "gpsdo"];

fn check_channels(key: &str, channels: &[u32], p: &mut Problems) {
    if channels.is_empty() {
        p.push(
            format!("{key}.channels"),
            "expected at least one channel, got []",
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    for c in channels {
        if !seen.insert(c) {
            p.push(
                format!("{key}.channels"),
                format!("channel {c} is listed twice"),
            );
        }
    }
}

/// Deserializes a kind's parameters from `table`, recording type and unknown-key errors under
/// `key`.
fn parse_kind<T: DeserializeOwned>(key: &str, table: toml::Table, p: &mut Problems) -> Option<T> {
    match serde_path_to_error::deserialize(toml::Value::Table(table)) {
        Ok(v) => Some(v),
        Err(e) => {
            let path = e.path().to_string();
            let full = if path == "." {
                key.to_string()
            } else {
                format!("{key}.{path}")
            };
            p.push(full, e.inner().message().trim().to_string());
            None
        }
    }
}

impl SourceConfig {
    /// Checks `[[source]]` number `index`, recording problems; the source when it is valid.
    pub(super) fn from_table(
        index: usize,
        mut table: toml::Table,
        p: &mut Problems,
    ) -> Option<SourceConfig> {
        let key = format!("source[{index}]");
        let before = p.0.len();
        let name = match table.remove("name") {
            Some(toml::Value::String(s)) if !s.trim().is_empty() => Some(s),
            Some(toml::Value::String(_)) => {
                p.push(
                    format!("{key}.name"),
                    "expected a name, got an empty string",
                );
                None
            }
            Some(other) => {
                p.push(
                    format!("{key}.name"),
                    format!("expected a string, got {}", other.type_str()),
                );
                None
            }
            None => {
                p.push(
                    format!("{key}.name"),
                    "missing; every source needs a unique name",
                );
                None
            }
        };
        let kind = match table.remove("kind") {
            Some(toml::Value::String(s)) => match s.as_str() {
                "replay" => parse_kind(&key, table, p).map(SourceKind::Replay),
                "synthetic" => parse_kind(&key, table, p).map(SourceKind::Synthetic),
                "soapy" => parse_kind(&key, table, p).map(SourceKind::Soapy),
                "uhd" => parse_kind(&key, table, p).map(SourceKind::Uhd),
                other => {
                    p.push(
                        format!("{key}.kind"),
                        format!("unknown source kind '{other}'; expected one of {SOURCE_KINDS:?}"),
                    );
                    None
                }
            },
            Some(other) => {
                p.push(
                    format!("{key}.kind"),
                    format!(
                        "expected one of {SOURCE_KINDS:?}, got a {}",
                        other.type_str()
                    ),
                );
                None
            }
            None => {
                p.push(
                    format!("{key}.kind"),
                    format!("missing; expected one of {SOURCE_KINDS:?}"),
                );
                None
            }
        };
        let source = SourceConfig {
            name: name?,
            kind: kind?,
        };
        source.check(&key, p);
        (p.0.len() == before).then_some(source)
    }

    fn check(&self, key: &str, p: &mut Problems) {
        let k = |field: &str| format!("{key}.{field}");
        match &self.kind {
            SourceKind::Replay(r) => {
                if r.path.as_os_str().is_empty() {
                    p.push(
                        k("path"),
                        "expected the path of a capture, got an empty string",
                    );
                }
                if let Some(f) = r.sample_rate_hz {
                    p.positive(&k("sample_rate_hz"), f);
                }
                if let Some(f) = r.center_freq_hz {
                    p.finite(&k("center_freq_hz"), f);
                }
                p.at_least_one(&k("chunk_samples"), r.chunk_samples);
            }
            SourceKind::Synthetic(s) => {
                if !crate::synth::recipe::RECIPES.contains(&s.recipe.as_str()) {
                    p.push(
                        k("recipe"),
                        format!(
                            "unknown recipe '{}'; expected one of {:?}",
                            s.recipe,
                            crate::synth::recipe::RECIPES
                        ),
                    );
                }
                if let Some(c) = &s.classes
                    && c.is_empty()
                {
                    p.push(k("classes"), "expected at least one class, got []");
                }
                let [lo, hi] = s.snr_db;
                if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
                    p.push(
                        k("snr_db"),
                        format!("expected [min, max] with finite min ≤ max, got [{lo}, {hi}]"),
                    );
                }
                if let Some(f) = s.sample_rate_hz {
                    p.positive(&k("sample_rate_hz"), f);
                }
                if let Some(f) = s.center_freq_hz {
                    p.finite(&k("center_freq_hz"), f);
                }
                if !(0.0..=1.0).contains(&s.occupancy) {
                    p.push(
                        k("occupancy"),
                        format!("expected a fraction in [0, 1], got {}", s.occupancy),
                    );
                }
                p.at_least_one(&k("burst_windows"), s.burst_windows);
                if s.windows == Some(0) {
                    p.push(k("windows"), "expected at least 1, got 0");
                }
            }
            SourceKind::Soapy(s) => {
                p.finite(&k("center_freq_hz"), s.center_freq_hz);
                p.positive(&k("sample_rate_hz"), s.sample_rate_hz);
                if let Some(g) = s.gain_db {
                    p.finite(&k("gain_db"), g);
                }
                check_channels(key, &s.channels, p);
                s.retry().check(key, p);
            }
            SourceKind::Uhd(u) => {
                if u.addresses.is_empty() {
                    p.push(
                        k("addresses"),
                        "expected the address of each motherboard (two for the X300 array), got []",
                    );
                }
                for (i, a) in u.addresses.iter().enumerate() {
                    if a.trim().is_empty() || a.contains(',') || a.contains('=') {
                        p.push(
                            format!("{key}.addresses[{i}]"),
                            format!("expected a host name or IP address, got '{a}'"),
                        );
                    }
                }
                for (field, v) in [
                    ("clock_source", &u.clock_source),
                    ("time_source", &u.time_source),
                ] {
                    if !CLOCK_SOURCES.contains(&v.as_str()) {
                        p.push(
                            k(field),
                            format!("expected one of {CLOCK_SOURCES:?}, got '{v}'"),
                        );
                    }
                }
                if !(u.start_delay_s.is_finite()
                    && u.start_delay_s >= 0.0
                    && u.start_delay_s <= 60.0)
                {
                    p.push(
                        k("start_delay_s"),
                        format!("expected a delay in [0, 60] s, got {}", u.start_delay_s),
                    );
                }
                p.finite(&k("center_freq_hz"), u.center_freq_hz);
                p.positive(&k("sample_rate_hz"), u.sample_rate_hz);
                p.finite(&k("gain_db"), u.gain_db);
                check_channels(key, &u.channels, p);
                u.retry().check(key, p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let r = Retry {
            retry_backoff_ms: 100,
            retry_backoff_max_ms: 1000,
            max_retries: 3,
        };
        let ms: Vec<u128> = (1..=6).map(|a| r.backoff(a).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1000, 1000]);
        assert!(r.allows(3) && !r.allows(4));
        assert!(
            Retry::default().allows(1_000_000),
            "0 retries means forever"
        );
    }

    #[test]
    fn uhd_device_args_name_every_motherboard() {
        let u = UhdSource {
            addresses: vec!["192.168.40.2".into(), "192.168.50.2".into()],
            clock_source: default_external(),
            time_source: default_external(),
            start_delay_s: 1.0,
            channels: default_four_channels(),
            center_freq_hz: 2.4e9,
            sample_rate_hz: 1e6,
            gain_db: 10.0,
            antenna: None,
            retry_backoff_ms: 500,
            retry_backoff_max_ms: 30_000,
            max_retries: 0,
        };
        assert_eq!(u.device_args(), "addr0=192.168.40.2,addr1=192.168.50.2");
    }
}
