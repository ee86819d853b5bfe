//! SigMF recordings: `<base>.sigmf-meta` (JSON) beside `<base>.sigmf-data` (samples).
//!
//! # Reading
//! [`SigmfReader`] reads the metadata (global `core:datatype`, `core:sample_rate`,
//! `core:num_channels`, the `captures` segments with `core:frequency`/`core:datetime`, and the
//! `annotations`) and then reads samples by index, seeking in the data file, so a recording is
//! never loaded whole. Two datatypes are understood:
//! - `cf32_le`: complex float32, little-endian, taken as is;
//! - `ci16_le`: complex int16, little-endian, scaled to ±1 by dividing by 32768 (the convention
//!   of the `sigmf` Python package's autoscaling), so −32768 ↦ −1.0 and 32767 ↦ 0.99997.
//!
//! With `core:num_channels` = C > 1 the channels are interleaved sample by sample: sample `i` of
//! channel `c` is element `i·C + c` of the data file.
//!
//! # Writing
//! [`SigmfWriter`] streams samples into a new recording (version [`SIGMF_VERSION`], the
//! specification the installed `sigmf` package implements) and writes the metadata with the
//! dataset's `core:sha512` last. [`write_annotations`] adds detections to an existing recording.
//!
//! # Detections as annotations
//! An [`Annotation`] is written with the core fields (`core:sample_start`, `core:sample_count`,
//! `core:label`, `core:comment`, `core:generator`, `core:freq_lower_edge`/`core:freq_upper_edge`),
//! the `signal` extension's `signal:detail` object (modulation type, class, order, …), the
//! `spatial` extension's `spatial:signal_azimuth` (or `spatial:signal_bearing` when an elevation
//! is known too) for the station's bearing, and specwatch's own `specwatch:confidence`,
//! `specwatch:snr_db` and — where a detection has them — its two bearings side by side,
//! `specwatch:model_bearing` (`{"azimuth", "elevation"}`: the model's own angle outputs) and
//! `specwatch:doa_bearing` (`{"azimuth", "elevation", "method"}`: the array estimator's, e.g.
//! MUSIC), objects shaped like `spatial:signal_bearing`. Every
//! extension used is declared in the global `core:extensions`; the `spatial` extension also
//! requires the globals `spatial:num_elements` and `spatial:channel_index`, which are added.
//! Angles are written in specwatch's convention (`dsp::array`): degrees relative to the array's
//! boresight, azimuth from +x towards +y.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha512};

use super::C32;
use super::sidecar::check_rfc3339;

/// The SigMF specification version written (the one `sigmf` 1.14 implements).
pub const SIGMF_VERSION: &str = "1.2.6";
/// Version of the `signal` extension whose `signal:detail` object is written.
pub const SIGNAL_EXTENSION_VERSION: &str = "1.0.0";
/// Version of the `spatial` extension whose `spatial:signal_azimuth` is written.
pub const SPATIAL_EXTENSION_VERSION: &str = "1.0.0";
/// Version of specwatch's own annotation fields (`specwatch:confidence`, `specwatch:snr_db`;
/// since 1.1.0 `specwatch:model_bearing` and `specwatch:doa_bearing`).
pub const SPECWATCH_EXTENSION_VERSION: &str = "1.1.0";

/// Errors from reading or writing SigMF recordings; every one names the file.
#[derive(Debug, thiserror::Error)]
pub enum SigmfError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: malformed SigMF metadata: {source}")]
    Syntax {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: field '{field}': {problem}")]
    Field {
        path: PathBuf,
        field: String,
        problem: String,
    },
    #[error("{path}: {problem}")]
    Data { path: PathBuf, problem: String },
    #[error(
        "{path}: channel {channel}, sample {index} is not a finite number (NaN or infinity); samples must be finite"
    )]
    NonFinite {
        path: PathBuf,
        channel: usize,
        index: u64,
    },
}

/// Sample formats specwatch reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigmfDatatype {
    /// Complex float32, little-endian.
    Cf32Le,
    /// Complex int16, little-endian; ±32768 ↔ ±1.0.
    Ci16Le,
}

impl SigmfDatatype {
    /// The `core:datatype` string.
    pub fn name(self) -> &'static str {
        match self {
            SigmfDatatype::Cf32Le => "cf32_le",
            SigmfDatatype::Ci16Le => "ci16_le",
        }
    }

    /// Bytes of one complex sample of one channel.
    pub fn sample_bytes(self) -> usize {
        match self {
            SigmfDatatype::Cf32Le => 8,
            SigmfDatatype::Ci16Le => 4,
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "cf32_le" => Some(SigmfDatatype::Cf32Le),
            "ci16_le" => Some(SigmfDatatype::Ci16Le),
            _ => None,
        }
    }

    fn decode(self, b: &[u8]) -> C32 {
        match self {
            SigmfDatatype::Cf32Le => C32::new(
                f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                f32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            ),
            SigmfDatatype::Ci16Le => C32::new(
                f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0,
                f32::from(i16::from_le_bytes([b[2], b[3]])) / 32768.0,
            ),
        }
    }

    fn encode(self, s: C32, out: &mut Vec<u8>) {
        match self {
            SigmfDatatype::Cf32Le => {
                out.extend_from_slice(&s.re.to_le_bytes());
                out.extend_from_slice(&s.im.to_le_bytes());
            }
            SigmfDatatype::Ci16Le => {
                let q = |v: f32| (v * 32768.0).round().clamp(-32768.0, 32767.0) as i16;
                out.extend_from_slice(&q(s.re).to_le_bytes());
                out.extend_from_slice(&q(s.im).to_le_bytes());
            }
        }
    }
}

/// The metadata and data paths of a recording named by either file or by its base name.
pub fn recording_paths(path: &Path) -> (PathBuf, PathBuf) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let base = [".sigmf-meta", ".sigmf-data"]
        .iter()
        .find_map(|ext| name.strip_suffix(ext))
        .unwrap_or(&name)
        .to_string();
    let dir = path.parent().unwrap_or(Path::new(""));
    (
        dir.join(format!("{base}.sigmf-meta")),
        dir.join(format!("{base}.sigmf-data")),
    )
}

/// The `signal` extension's `signal:detail` object (every field optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SignalDetail {
    /// `analog` or `digital`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// One of am, fm, pm, ssb, dsb, vsb, ask, fsk, psk, qam, ook, cpm, msk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mod_class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standard: Option<String>,
    /// with_carrier, suppressed_carrier, reduced_carrier, single_carrier, multi_carrier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier_variant: Option<String>,
    /// differential or offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol_variant: Option<String>,
    /// Modulation order (e.g. 4 for QPSK).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_bw: Option<f64>,
    /// Free-form modifier of the class (e.g. `gaussian`, `apsk`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_variant: Option<String>,
}

impl SignalDetail {
    /// Describes a modulation class name (as the datasets and models name them: `QPSK`,
    /// `QAM16`, `16APSK`, `AM-DSB-SC`, `GFSK`, `WBFM`, …) in the `signal` extension's terms;
    /// `None` when the name says nothing recognisable.
    pub fn from_class_name(name: &str) -> Option<Self> {
        let upper = name.to_ascii_uppercase();
        let order: Option<u32> = {
            let digits: String = upper.chars().filter(char::is_ascii_digit).collect();
            digits.parse().ok()
        };
        let digital = |mod_class: Option<&str>, order: Option<u32>| SignalDetail {
            kind: Some("digital".into()),
            mod_class: mod_class.map(String::from),
            order,
            ..Default::default()
        };
        let analog = |mod_class: &str| SignalDetail {
            kind: Some("analog".into()),
            mod_class: Some(mod_class.into()),
            ..Default::default()
        };
        let carrier = |mut d: SignalDetail| {
            if upper.ends_with("-SC") {
                d.carrier_variant = Some("suppressed_carrier".into());
            } else if upper.ends_with("-WC") {
                d.carrier_variant = Some("with_carrier".into());
            }
            d
        };
        let detail = if upper.contains("APSK") {
            SignalDetail {
                class_variant: Some("apsk".into()),
                ..digital(None, order)
            }
        } else if upper == "BPSK" {
            digital(Some("psk"), Some(2))
        } else if upper == "QPSK" {
            digital(Some("psk"), Some(4))
        } else if upper == "OQPSK" {
            SignalDetail {
                symbol_variant: Some("offset".into()),
                ..digital(Some("psk"), Some(4))
            }
        } else if upper.contains("PSK") {
            digital(Some("psk"), order)
        } else if upper.contains("QAM") {
            digital(Some("qam"), order)
        } else if upper == "OOK" {
            digital(Some("ook"), Some(2))
        } else if upper.contains("ASK") || upper.starts_with("PAM") {
            digital(Some("ask"), order)
        } else if upper.contains("MSK") {
            SignalDetail {
                class_variant: upper.starts_with('G').then(|| "gaussian".into()),
                ..digital(Some("msk"), Some(2))
            }
        } else if upper.contains("CPFSK") {
            digital(Some("cpm"), order)
        } else if upper.contains("FSK") {
            SignalDetail {
                class_variant: upper.starts_with('G').then(|| "gaussian".into()),
                ..digital(Some("fsk"), order)
            }
        } else if upper.contains("SSB") {
            carrier(analog("ssb"))
        } else if upper.contains("DSB") || upper == "AM" {
            carrier(analog("am"))
        } else if upper.contains("FM") {
            SignalDetail {
                class_variant: upper.starts_with("WB").then(|| "wideband".into()),
                ..analog("fm")
            }
        } else {
            return None;
        };
        Some(detail)
    }
}

/// One annotation: a detection (or any labelled span) of a recording.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Annotation {
    /// First sample (per channel) the annotation covers.
    pub sample_start: u64,
    /// Number of samples covered; `None` means to the end of the recording.
    pub sample_count: Option<u64>,
    /// Short label: the class name for detections (`core:label`).
    pub label: Option<String>,
    /// Human-readable text (`core:comment`).
    pub comment: Option<String>,
    /// Who made the annotation: the model name and version for detections (`core:generator`).
    pub generator: Option<String>,
    /// Lower and upper edges of the feature in Hz (`core:freq_lower_edge`/`core:freq_upper_edge`);
    /// both or neither.
    pub freq_edges_hz: Option<(f64, f64)>,
    /// The classifier's confidence in `label`, 0..=1 (`specwatch:confidence`).
    pub confidence: Option<f32>,
    /// Estimated SNR in dB (`specwatch:snr_db`).
    pub snr_db: Option<f32>,
    /// Azimuth in degrees relative to the array boresight (`spatial:signal_azimuth`).
    pub azimuth_deg: Option<f32>,
    /// Elevation in degrees; with an azimuth, both go in `spatial:signal_bearing`.
    pub elevation_deg: Option<f32>,
    /// Azimuth in degrees from the model's own angle outputs
    /// (`specwatch:model_bearing.azimuth`).
    pub model_azimuth_deg: Option<f32>,
    /// Elevation in degrees from the model's own angle outputs
    /// (`specwatch:model_bearing.elevation`).
    pub model_elevation_deg: Option<f32>,
    /// Azimuth in degrees from the array estimator (`specwatch:doa_bearing.azimuth`).
    pub doa_azimuth_deg: Option<f32>,
    /// Elevation in degrees from the array estimator (`specwatch:doa_bearing.elevation`).
    pub doa_elevation_deg: Option<f32>,
    /// The array estimator's method, e.g. `music` (`specwatch:doa_bearing.method`).
    pub doa_method: Option<String>,
    /// The `signal:detail` object; when `None` it is derived from `label` where possible.
    pub detail: Option<SignalDetail>,
}

impl Annotation {
    /// The JSON object written into `annotations`.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("core:sample_start".into(), json!(self.sample_start));
        if let Some(n) = self.sample_count {
            m.insert("core:sample_count".into(), json!(n));
        }
        if let Some(l) = &self.label {
            m.insert("core:label".into(), json!(l));
        }
        if let Some(c) = &self.comment {
            m.insert("core:comment".into(), json!(c));
        }
        if let Some(g) = &self.generator {
            m.insert("core:generator".into(), json!(g));
        }
        if let Some((lo, hi)) = self.freq_edges_hz {
            m.insert("core:freq_lower_edge".into(), json!(lo));
            m.insert("core:freq_upper_edge".into(), json!(hi));
        }
        let detail = self.detail.clone().or_else(|| {
            self.label
                .as_deref()
                .and_then(SignalDetail::from_class_name)
        });
        if let Some(d) = detail {
            m.insert(
                "signal:detail".into(),
                serde_json::to_value(d).expect("signal detail serialises"),
            );
        }
        match (self.azimuth_deg, self.elevation_deg) {
            (Some(az), Some(el)) => {
                m.insert(
                    "spatial:signal_bearing".into(),
                    json!({"azimuth": az, "elevation": el}),
                );
            }
            (Some(az), None) => {
                m.insert("spatial:signal_azimuth".into(), json!(az));
            }
            (None, Some(el)) => {
                m.insert("spatial:signal_bearing".into(), json!({"elevation": el}));
            }
            (None, None) => {}
        }
        if let Some(c) = self.confidence {
            m.insert("specwatch:confidence".into(), json!(c));
        }
        if let Some(s) = self.snr_db {
            m.insert("specwatch:snr_db".into(), json!(s));
        }
        let mut model = Map::new();
        if let Some(az) = self.model_azimuth_deg {
            model.insert("azimuth".into(), json!(az));
        }
        if let Some(el) = self.model_elevation_deg {
            model.insert("elevation".into(), json!(el));
        }
        if !model.is_empty() {
            m.insert("specwatch:model_bearing".into(), Value::Object(model));
        }
        let mut doa = Map::new();
        if let Some(az) = self.doa_azimuth_deg {
            doa.insert("azimuth".into(), json!(az));
        }
        if let Some(el) = self.doa_elevation_deg {
            doa.insert("elevation".into(), json!(el));
        }
        if !doa.is_empty() {
            if let Some(method) = &self.doa_method {
                doa.insert("method".into(), json!(method));
            }
            m.insert("specwatch:doa_bearing".into(), Value::Object(doa));
        }
        Value::Object(m)
    }

    /// Reads an annotation object (fields it does not know are ignored).
    fn from_json(path: &Path, index: usize, v: &Value) -> Result<Self, SigmfError> {
        let field = |name: &str| format!("annotations[{index}].{name}");
        let bad = |name: &str, problem: &str| SigmfError::Field {
            path: path.to_path_buf(),
            field: field(name),
            problem: problem.to_string(),
        };
        let obj = v
            .as_object()
            .ok_or_else(|| bad("", "is not an object; expected an annotation object"))?;
        let uint = |name: &str| -> Result<Option<u64>, SigmfError> {
            obj.get(name)
                .map(|v| {
                    v.as_u64()
                        .ok_or_else(|| bad(name, "expected a non-negative integer"))
                })
                .transpose()
        };
        let num = |name: &str| -> Result<Option<f64>, SigmfError> {
            obj.get(name)
                .map(|v| v.as_f64().ok_or_else(|| bad(name, "expected a number")))
                .transpose()
        };
        let text = |name: &str| -> Result<Option<String>, SigmfError> {
            obj.get(name)
                .map(|v| {
                    v.as_str()
                        .map(String::from)
                        .ok_or_else(|| bad(name, "expected a string"))
                })
                .transpose()
        };
        let sample_start =
            uint("core:sample_start")?.ok_or_else(|| bad("core:sample_start", "is missing"))?;
        let freq_edges_hz = match (num("core:freq_lower_edge")?, num("core:freq_upper_edge")?) {
            (Some(lo), Some(hi)) => Some((lo, hi)),
            (None, None) => None,
            _ => {
                return Err(bad(
                    "core:freq_lower_edge",
                    "expected core:freq_lower_edge and core:freq_upper_edge together, or neither",
                ));
            }
        };
        let bearing = obj.get("spatial:signal_bearing");
        let bearing_part = |k: &str| bearing.and_then(|b| b.get(k)).and_then(Value::as_f64);
        // specwatch's two bearings: objects like spatial:signal_bearing.
        let part = |name: &str, k: &str| -> Result<Option<f32>, SigmfError> {
            let Some(b) = obj.get(name) else {
                return Ok(None);
            };
            if !b.is_object() {
                return Err(bad(
                    name,
                    "expected an object with azimuth and/or elevation in degrees",
                ));
            }
            b.get(k)
                .map(|v| {
                    v.as_f64()
                        .map(|x| x as f32)
                        .ok_or_else(|| bad(&format!("{name}.{k}"), "expected a number"))
                })
                .transpose()
        };
        let doa_method = match obj
            .get("specwatch:doa_bearing")
            .and_then(|b| b.get("method"))
        {
            None => None,
            Some(v) => Some(
                v.as_str()
                    .map(String::from)
                    .ok_or_else(|| bad("specwatch:doa_bearing.method", "expected a string"))?,
            ),
        };
        let detail = obj
            .get("signal:detail")
            .map(|d| {
                SignalDetail::deserialize(d).map_err(|e| {
                    bad(
                        "signal:detail",
                        &format!("expected a signal:detail object ({e})"),
                    )
                })
            })
            .transpose()?;
        Ok(Annotation {
            sample_start,
            sample_count: uint("core:sample_count")?,
            label: text("core:label")?,
            comment: text("core:comment")?,
            generator: text("core:generator")?,
            freq_edges_hz,
            confidence: num("specwatch:confidence")?.map(|v| v as f32),
            snr_db: num("specwatch:snr_db")?.map(|v| v as f32),
            azimuth_deg: bearing_part("azimuth")
                .or(num("spatial:signal_azimuth")?)
                .map(|v| v as f32),
            elevation_deg: bearing_part("elevation").map(|v| v as f32),
            model_azimuth_deg: part("specwatch:model_bearing", "azimuth")?,
            model_elevation_deg: part("specwatch:model_bearing", "elevation")?,
            doa_azimuth_deg: part("specwatch:doa_bearing", "azimuth")?,
            doa_elevation_deg: part("specwatch:doa_bearing", "elevation")?,
            doa_method,
            detail,
        })
    }
}

/// One `captures` segment.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptureSegment {
    pub sample_start: u64,
    /// `core:frequency`: center frequency in Hz.
    pub frequency_hz: Option<f64>,
    /// `core:datetime`: time of `sample_start`, as written.
    pub datetime: Option<String>,
}

/// What a `.sigmf-meta` file says, as far as specwatch uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct SigmfMeta {
    pub version: String,
    pub datatype: SigmfDatatype,
    pub sample_rate_hz: Option<f64>,
    pub num_channels: usize,
    pub description: Option<String>,
    pub captures: Vec<CaptureSegment>,
    pub annotations: Vec<Annotation>,
    /// `core:dataset`: the data file's name for non-conforming datasets.
    dataset: Option<String>,
    /// `core:trailing_bytes`: bytes to ignore at the end of the data file.
    trailing_bytes: u64,
}

impl SigmfMeta {
    /// Reads and checks a `.sigmf-meta` file.
    pub fn load(path: &Path) -> Result<Self, SigmfError> {
        let text = std::fs::read_to_string(path).map_err(|source| SigmfError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let root: Value = serde_json::from_str(&text).map_err(|source| SigmfError::Syntax {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json(path, &root)
    }

    fn from_json(path: &Path, root: &Value) -> Result<Self, SigmfError> {
        let bad = |field: &str, problem: String| SigmfError::Field {
            path: path.to_path_buf(),
            field: field.to_string(),
            problem,
        };
        let global = root
            .get("global")
            .and_then(Value::as_object)
            .ok_or_else(|| {
                bad(
                    "global",
                    "is missing or not an object; expected the global object".into(),
                )
            })?;
        let gstr = |k: &str| global.get(k).and_then(Value::as_str);
        let version = gstr("core:version")
            .ok_or_else(|| {
                bad(
                    "global.core:version",
                    "is missing; expected a version string like 1.2.6".into(),
                )
            })?
            .to_string();
        let dt_name = gstr("core:datatype").ok_or_else(|| {
            bad(
                "global.core:datatype",
                "is missing; expected 'cf32_le' or 'ci16_le'".into(),
            )
        })?;
        let datatype = SigmfDatatype::parse(dt_name).ok_or_else(|| {
            bad(
                "global.core:datatype",
                format!("is '{dt_name}'; specwatch reads 'cf32_le' or 'ci16_le'"),
            )
        })?;
        let sample_rate_hz = match global.get("core:sample_rate") {
            None => None,
            Some(v) => match v.as_f64() {
                Some(fs) if fs.is_finite() && fs > 0.0 => Some(fs),
                _ => {
                    return Err(bad(
                        "global.core:sample_rate",
                        format!("is {v}; expected a positive number (Hz)"),
                    ));
                }
            },
        };
        let num_channels = match global.get("core:num_channels") {
            None => 1,
            Some(v) => match v.as_u64() {
                Some(c) if c >= 1 => c as usize,
                _ => {
                    return Err(bad(
                        "global.core:num_channels",
                        format!("is {v}; expected an integer ≥ 1"),
                    ));
                }
            },
        };
        if global.get("core:metadata_only").and_then(Value::as_bool) == Some(true) {
            return Err(bad(
                "global.core:metadata_only",
                "is true: this recording has no samples to read".into(),
            ));
        }
        let trailing_bytes = match global.get("core:trailing_bytes") {
            None => 0,
            Some(v) => v.as_u64().ok_or_else(|| {
                bad(
                    "global.core:trailing_bytes",
                    format!("is {v}; expected a non-negative integer"),
                )
            })?,
        };
        let captures_v = root
            .get("captures")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                bad(
                    "captures",
                    "is missing or not a list; expected a list of capture segments".into(),
                )
            })?;
        let mut captures = Vec::with_capacity(captures_v.len());
        for (i, c) in captures_v.iter().enumerate() {
            let f = |k: &str| format!("captures[{i}].{k}");
            let sample_start = c
                .get("core:sample_start")
                .and_then(Value::as_u64)
                .ok_or_else(|| {
                    bad(
                        &f("core:sample_start"),
                        "is missing; expected a non-negative integer".into(),
                    )
                })?;
            if let Some(h) = c.get("core:header_bytes").and_then(Value::as_u64)
                && h != 0
            {
                return Err(bad(
                    &f("core:header_bytes"),
                    format!("is {h}; specwatch reads only datasets without per-segment headers"),
                ));
            }
            let frequency_hz = match c.get("core:frequency") {
                None => None,
                Some(v) => Some(v.as_f64().ok_or_else(|| {
                    bad(
                        &f("core:frequency"),
                        format!("is {v}; expected a number (Hz)"),
                    )
                })?),
            };
            let datetime = match c.get("core:datetime") {
                None => None,
                Some(v) => Some(
                    v.as_str()
                        .ok_or_else(|| {
                            bad(
                                &f("core:datetime"),
                                format!("is {v}; expected an ISO 8601 string"),
                            )
                        })?
                        .to_string(),
                ),
            };
            captures.push(CaptureSegment {
                sample_start,
                frequency_hz,
                datetime,
            });
        }
        let annotations = match root.get("annotations") {
            None => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, v)| Annotation::from_json(path, i, v))
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(bad(
                    "annotations",
                    "is not a list; expected a list of annotations".into(),
                ));
            }
        };
        Ok(SigmfMeta {
            version,
            datatype,
            sample_rate_hz,
            num_channels,
            description: gstr("core:description").map(String::from),
            captures,
            annotations,
            dataset: gstr("core:dataset").map(String::from),
            trailing_bytes,
        })
    }

    /// Center frequency of the first capture segment.
    pub fn center_freq_hz(&self) -> Option<f64> {
        self.captures.first().and_then(|c| c.frequency_hz)
    }

    /// Time of the first sample, from the first capture segment.
    pub fn datetime(&self) -> Option<&str> {
        self.captures.first().and_then(|c| c.datetime.as_deref())
    }
}

/// Reads the samples of a recording by index, without loading it whole.
pub struct SigmfReader {
    meta_path: PathBuf,
    data_path: PathBuf,
    meta: SigmfMeta,
    file: BufReader<File>,
    len: u64,
    scratch: Vec<u8>,
}

impl SigmfReader {
    /// Opens a recording named by its `.sigmf-meta` or `.sigmf-data` file (or its base name).
    pub fn open(path: &Path) -> Result<Self, SigmfError> {
        let (meta_path, mut data_path) = recording_paths(path);
        let meta = SigmfMeta::load(&meta_path)?;
        if let Some(name) = &meta.dataset {
            data_path = meta_path.with_file_name(name);
        }
        let file = File::open(&data_path).map_err(|source| SigmfError::Io {
            path: data_path.clone(),
            source,
        })?;
        let bytes = file
            .metadata()
            .map_err(|source| SigmfError::Io {
                path: data_path.clone(),
                source,
            })?
            .len();
        let usable = bytes
            .checked_sub(meta.trailing_bytes)
            .ok_or_else(|| SigmfError::Data {
                path: data_path.clone(),
                problem: format!(
                    "holds {bytes} bytes, fewer than the {} trailing bytes the metadata declares",
                    meta.trailing_bytes
                ),
            })?;
        let frame = (meta.datatype.sample_bytes() * meta.num_channels) as u64;
        if usable % frame != 0 {
            return Err(SigmfError::Data {
                path: data_path,
                problem: format!(
                    "holds {usable} bytes of samples, not a whole number of {frame}-byte frames ({} × {} channels); the file is truncated or its datatype is not '{}'",
                    meta.datatype.name(),
                    meta.num_channels,
                    meta.datatype.name()
                ),
            });
        }
        Ok(Self {
            meta_path,
            data_path,
            len: usable / frame,
            meta,
            file: BufReader::with_capacity(1 << 20, file),
            scratch: Vec::new(),
        })
    }

    pub fn meta(&self) -> &SigmfMeta {
        &self.meta
    }

    pub fn meta_path(&self) -> &Path {
        &self.meta_path
    }

    pub fn data_path(&self) -> &Path {
        &self.data_path
    }

    pub fn channels(&self) -> usize {
        self.meta.num_channels
    }

    /// Samples per channel.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reads samples `start..start + count` of every channel, appending them to `out[c]`
    /// (`out` must hold one vector per channel). Non-finite samples are an error.
    pub fn read_into(
        &mut self,
        start: u64,
        count: usize,
        out: &mut [Vec<C32>],
    ) -> Result<(), SigmfError> {
        let channels = self.meta.num_channels;
        if out.len() != channels {
            return Err(SigmfError::Data {
                path: self.data_path.clone(),
                problem: format!(
                    "a read asked for {} channels but the recording has {channels}",
                    out.len()
                ),
            });
        }
        let end = start.saturating_add(count as u64);
        if end > self.len {
            return Err(SigmfError::Data {
                path: self.data_path.clone(),
                problem: format!(
                    "a read of samples {start}..{end} goes past the end ({} samples)",
                    self.len
                ),
            });
        }
        let size = self.meta.datatype.sample_bytes();
        let frame = size * channels;
        let io = |source| SigmfError::Io {
            path: self.data_path.clone(),
            source,
        };
        self.file
            .seek(SeekFrom::Start(start * frame as u64))
            .map_err(io)?;
        let before: Vec<usize> = out.iter().map(Vec::len).collect();
        let mut left = count;
        let block = (1usize << 16).min(count.max(1));
        self.scratch.resize(block * frame, 0);
        while left > 0 {
            let n = left.min(block);
            let bytes = &mut self.scratch[..n * frame];
            self.file
                .read_exact(bytes)
                .map_err(|source| SigmfError::Io {
                    path: self.data_path.clone(),
                    source,
                })?;
            for f in bytes.chunks_exact(frame) {
                for (c, s) in f.chunks_exact(size).enumerate() {
                    out[c].push(self.meta.datatype.decode(s));
                }
            }
            left -= n;
        }
        for (c, (v, from)) in out.iter().zip(before).enumerate() {
            if let Some(i) = v[from..]
                .iter()
                .position(|s| !(s.re.is_finite() && s.im.is_finite()))
            {
                return Err(SigmfError::NonFinite {
                    path: self.data_path.clone(),
                    channel: c,
                    index: start + i as u64,
                });
            }
        }
        Ok(())
    }

    /// Reads samples `start..start + count` of every channel.
    pub fn read(&mut self, start: u64, count: usize) -> Result<Vec<Vec<C32>>, SigmfError> {
        let mut out = vec![Vec::with_capacity(count); self.meta.num_channels];
        self.read_into(start, count, &mut out)?;
        Ok(out)
    }
}

/// What the global and capture metadata of a new recording say.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordingInfo {
    pub datatype: SigmfDatatype,
    pub sample_rate_hz: f64,
    pub center_freq_hz: Option<f64>,
    /// Time of the first sample: RFC 3339 in UTC, ending in `Z` (as SigMF requires).
    pub datetime: Option<String>,
    pub description: Option<String>,
    /// Elements of the antenna array (`spatial:num_elements`) when annotations carry angles;
    /// defaults to the number of channels.
    pub array_elements: Option<usize>,
}

impl RecordingInfo {
    /// A `cf32_le` recording at `sample_rate_hz` with nothing else known.
    pub fn cf32(sample_rate_hz: f64) -> Self {
        Self {
            datatype: SigmfDatatype::Cf32Le,
            sample_rate_hz,
            center_freq_hz: None,
            datetime: None,
            description: None,
            array_elements: None,
        }
    }
}

/// Streams samples into a new recording; [`SigmfWriter::finish`] writes the metadata.
pub struct SigmfWriter {
    meta_path: PathBuf,
    data_path: PathBuf,
    file: BufWriter<File>,
    info: RecordingInfo,
    channels: usize,
    written: u64,
    sha: Sha512,
    scratch: Vec<u8>,
}

impl SigmfWriter {
    /// Creates `<base>.sigmf-data` for `channels` interleaved channels. `base` may name either
    /// file or the base name.
    pub fn create(base: &Path, channels: usize, info: RecordingInfo) -> Result<Self, SigmfError> {
        let (meta_path, data_path) = recording_paths(base);
        let bad = |field: &str, problem: String| SigmfError::Field {
            path: meta_path.clone(),
            field: field.into(),
            problem,
        };
        if channels == 0 {
            return Err(bad(
                "global.core:num_channels",
                "is 0; expected at least 1 channel".into(),
            ));
        }
        if !(info.sample_rate_hz.is_finite() && info.sample_rate_hz > 0.0) {
            return Err(bad(
                "global.core:sample_rate",
                format!(
                    "is {}; expected a positive sample rate in Hz",
                    info.sample_rate_hz
                ),
            ));
        }
        if let Some(t) = &info.datetime {
            let utc = t.ends_with('Z') || t.ends_with('z');
            if let Err(why) = check_rfc3339(t).and_then(|()| {
                if utc {
                    Ok(())
                } else {
                    Err("SigMF allows only UTC, written with a 'Z'".into())
                }
            }) {
                return Err(bad(
                    "captures[0].core:datetime",
                    format!(
                        "'{t}' is not an RFC 3339 UTC timestamp ({why}); expected e.g. 2024-05-01T12:00:00.250Z"
                    ),
                ));
            }
        }
        let file = File::create(&data_path).map_err(|source| SigmfError::Io {
            path: data_path.clone(),
            source,
        })?;
        Ok(Self {
            meta_path,
            data_path,
            file: BufWriter::with_capacity(1 << 20, file),
            info,
            channels,
            written: 0,
            sha: Sha512::new(),
            scratch: Vec::new(),
        })
    }

    /// Appends the same number of samples to every channel (`channels[c]` for channel `c`).
    pub fn write(&mut self, channels: &[&[C32]]) -> Result<(), SigmfError> {
        if channels.len() != self.channels {
            return Err(SigmfError::Data {
                path: self.data_path.clone(),
                problem: format!(
                    "got {} channels to write but the recording was created with {}",
                    channels.len(),
                    self.channels
                ),
            });
        }
        let n = channels.first().map_or(0, |c| c.len());
        if let Some(c) = channels.iter().position(|c| c.len() != n) {
            return Err(SigmfError::Data {
                path: self.data_path.clone(),
                problem: format!(
                    "channel {c} has {} samples but channel 0 has {n}; every channel needs the same count",
                    channels[c].len()
                ),
            });
        }
        for (c, ch) in channels.iter().enumerate() {
            if let Some(i) = ch
                .iter()
                .position(|s| !(s.re.is_finite() && s.im.is_finite()))
            {
                return Err(SigmfError::NonFinite {
                    path: self.data_path.clone(),
                    channel: c,
                    index: self.written + i as u64,
                });
            }
        }
        self.scratch.clear();
        self.scratch
            .reserve(n * self.channels * self.info.datatype.sample_bytes());
        for i in 0..n {
            for ch in channels {
                self.info.datatype.encode(ch[i], &mut self.scratch);
            }
        }
        self.sha.update(&self.scratch);
        self.file
            .write_all(&self.scratch)
            .map_err(|source| SigmfError::Io {
                path: self.data_path.clone(),
                source,
            })?;
        self.written += n as u64;
        Ok(())
    }

    /// Flushes the data and writes the metadata with `annotations` (sorted by start, as SigMF
    /// requires). Returns the metadata and data paths.
    pub fn finish(self, annotations: &[Annotation]) -> Result<(PathBuf, PathBuf), SigmfError> {
        let data_path = self.data_path;
        let io = |source| SigmfError::Io {
            path: data_path.clone(),
            source,
        };
        let mut file = self.file;
        file.flush().map_err(io)?;
        file.get_ref().sync_all().map_err(io)?;
        let digest: String = self
            .sha
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let info = &self.info;
        let mut global = Map::new();
        global.insert("core:datatype".into(), json!(info.datatype.name()));
        global.insert("core:version".into(), json!(SIGMF_VERSION));
        global.insert("core:sample_rate".into(), json!(info.sample_rate_hz));
        global.insert("core:num_channels".into(), json!(self.channels));
        global.insert("core:sha512".into(), json!(digest));
        global.insert(
            "core:recorder".into(),
            json!(format!("specwatch {}", env!("CARGO_PKG_VERSION"))),
        );
        if let Some(d) = &info.description {
            global.insert("core:description".into(), json!(d));
        }
        let mut capture = Map::new();
        capture.insert("core:sample_start".into(), json!(0));
        if let Some(f) = info.center_freq_hz {
            capture.insert("core:frequency".into(), json!(f));
        }
        if let Some(t) = &info.datetime {
            capture.insert("core:datetime".into(), json!(t));
        }
        let mut root = json!({
            "global": Value::Object(global),
            "captures": [Value::Object(capture)],
            "annotations": [],
        });
        let elements = info.array_elements.unwrap_or(self.channels);
        set_annotations(
            &self.meta_path,
            &mut root,
            annotations,
            elements,
            Some(self.written),
        )?;
        write_meta(&self.meta_path, &root)?;
        Ok((self.meta_path, data_path))
    }
}

/// Writes a whole recording: `channels[c]` are the samples of channel `c` (equal lengths).
/// Returns the metadata and data paths.
pub fn write_recording(
    base: &Path,
    channels: &[Vec<C32>],
    info: RecordingInfo,
    annotations: &[Annotation],
) -> Result<(PathBuf, PathBuf), SigmfError> {
    let mut w = SigmfWriter::create(base, channels.len(), info)?;
    let refs: Vec<&[C32]> = channels.iter().map(Vec::as_slice).collect();
    w.write(&refs)?;
    w.finish(annotations)
}

/// Adds `annotations` to an existing recording's metadata (keeping what is there, declaring
/// the extensions used), e.g. to write a replay's detections back beside the capture.
pub fn write_annotations(path: &Path, annotations: &[Annotation]) -> Result<(), SigmfError> {
    let reader = SigmfReader::open(path)?;
    let meta_path = reader.meta_path().to_path_buf();
    let (channels, len) = (reader.channels(), reader.len());
    drop(reader);
    let text = std::fs::read_to_string(&meta_path).map_err(|source| SigmfError::Io {
        path: meta_path.clone(),
        source,
    })?;
    let mut root: Value = serde_json::from_str(&text).map_err(|source| SigmfError::Syntax {
        path: meta_path.clone(),
        source,
    })?;
    let elements = root
        .pointer("/global/spatial:num_elements")
        .and_then(Value::as_u64)
        .map_or(channels, |n| n as usize);
    set_annotations(&meta_path, &mut root, annotations, elements, Some(len))?;
    write_meta(&meta_path, &root)
}

/// Merges `annotations` into `root["annotations"]` (sorted by start) and declares the
/// extensions they use in `global`.
fn set_annotations(
    meta_path: &Path,
    root: &mut Value,
    annotations: &[Annotation],
    array_elements: usize,
    len: Option<u64>,
) -> Result<(), SigmfError> {
    let bad = |field: String, problem: String| SigmfError::Field {
        path: meta_path.to_path_buf(),
        field,
        problem,
    };
    for (i, a) in annotations.iter().enumerate() {
        if let (Some(len), Some(n)) = (len, a.sample_count)
            && a.sample_start.saturating_add(n) > len
        {
            return Err(bad(
                format!("annotations[{i}]"),
                format!(
                    "covers samples {}..{} but the recording has {len}; expected a span inside it",
                    a.sample_start,
                    a.sample_start.saturating_add(n)
                ),
            ));
        }
        if let Some((lo, hi)) = a.freq_edges_hz
            && !(lo.is_finite() && hi.is_finite() && lo <= hi)
        {
            return Err(bad(
                format!("annotations[{i}].core:freq_lower_edge"),
                format!("edges {lo}..{hi} Hz; expected finite edges with lower ≤ upper"),
            ));
        }
        let finite = [
            a.confidence,
            a.snr_db,
            a.azimuth_deg,
            a.elevation_deg,
            a.model_azimuth_deg,
            a.model_elevation_deg,
            a.doa_azimuth_deg,
            a.doa_elevation_deg,
        ];
        if finite.iter().flatten().any(|v| !v.is_finite()) {
            return Err(bad(
                format!("annotations[{i}]"),
                "holds a non-finite confidence, SNR or angle; expected finite numbers".into(),
            ));
        }
    }
    let existing = root
        .get("annotations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut all: Vec<Value> = existing;
    all.extend(annotations.iter().map(Annotation::to_json));
    all.sort_by_key(|a| {
        a.get("core:sample_start")
            .and_then(Value::as_u64)
            .unwrap_or(0)
    });
    let used: Vec<&str> = ["signal", "spatial", "specwatch"]
        .into_iter()
        .filter(|ns| {
            all.iter().any(|a| {
                a.as_object()
                    .is_some_and(|o| o.keys().any(|k| k.starts_with(&format!("{ns}:"))))
            })
        })
        .collect();
    root["annotations"] = Value::Array(all);
    let global = root
        .get_mut("global")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| {
            bad(
                "global".into(),
                "is missing; expected the global object".into(),
            )
        })?;
    let mut declared: Vec<Value> = global
        .get("core:extensions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for ns in used {
        let version = match ns {
            "signal" => SIGNAL_EXTENSION_VERSION,
            "spatial" => SPATIAL_EXTENSION_VERSION,
            _ => SPECWATCH_EXTENSION_VERSION,
        };
        if !declared
            .iter()
            .any(|e| e.get("name").and_then(Value::as_str) == Some(ns))
        {
            declared.push(json!({"name": ns, "version": version, "optional": true}));
        }
        if ns == "spatial" {
            global
                .entry("spatial:num_elements")
                .or_insert(json!(array_elements));
            global.entry("spatial:channel_index").or_insert(json!(0));
        }
    }
    if !declared.is_empty() {
        global.insert("core:extensions".into(), Value::Array(declared));
    }
    Ok(())
}

fn write_meta(path: &Path, root: &Value) -> Result<(), SigmfError> {
    let text = serde_json::to_string_pretty(root).expect("SigMF metadata serialises");
    std::fs::write(path, text + "\n").map_err(|source| SigmfError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_from_either_file_or_base() {
        for p in ["d/rec.sigmf-meta", "d/rec.sigmf-data", "d/rec"] {
            let (m, d) = recording_paths(Path::new(p));
            assert_eq!(m, Path::new("d/rec.sigmf-meta"));
            assert_eq!(d, Path::new("d/rec.sigmf-data"));
        }
    }

    #[test]
    fn ci16_scaling_is_over_32768() {
        let mut b = Vec::new();
        SigmfDatatype::Ci16Le.encode(C32::new(-1.0, 0.5), &mut b);
        assert_eq!(b, [0x00, 0x80, 0x00, 0x40]);
        assert_eq!(SigmfDatatype::Ci16Le.decode(&b), C32::new(-1.0, 0.5));
        b.clear();
        SigmfDatatype::Ci16Le.encode(C32::new(1.0, 2.0), &mut b);
        assert_eq!(
            SigmfDatatype::Ci16Le.decode(&b),
            C32::new(32767.0 / 32768.0, 32767.0 / 32768.0)
        );
    }

    #[test]
    fn class_names_map_to_signal_detail() {
        let d = SignalDetail::from_class_name("QAM64").unwrap();
        assert_eq!((d.mod_class.as_deref(), d.order), (Some("qam"), Some(64)));
        let d = SignalDetail::from_class_name("8PSK").unwrap();
        assert_eq!((d.mod_class.as_deref(), d.order), (Some("psk"), Some(8)));
        let d = SignalDetail::from_class_name("AM-SSB-SC").unwrap();
        assert_eq!(d.mod_class.as_deref(), Some("ssb"));
        assert_eq!(d.carrier_variant.as_deref(), Some("suppressed_carrier"));
        let d = SignalDetail::from_class_name("WBFM").unwrap();
        assert_eq!(
            (d.kind.as_deref(), d.mod_class.as_deref()),
            (Some("analog"), Some("fm"))
        );
        assert_eq!(SignalDetail::from_class_name("noise"), None);
    }

    #[test]
    fn annotation_json_round_trip() {
        let a = Annotation {
            sample_start: 10,
            sample_count: Some(128),
            label: Some("QPSK".into()),
            comment: Some("hello".into()),
            generator: Some("amc-cnn 1.0".into()),
            freq_edges_hz: Some((1e6, 1.2e6)),
            confidence: Some(0.75),
            snr_db: Some(12.5),
            azimuth_deg: Some(-20.0),
            elevation_deg: None,
            model_azimuth_deg: Some(-20.0),
            model_elevation_deg: None,
            doa_azimuth_deg: Some(-31.5),
            doa_elevation_deg: Some(4.25),
            doa_method: Some("music".into()),
            detail: None,
        };
        let v = a.to_json();
        assert_eq!(v["spatial:signal_azimuth"], json!(-20.0));
        assert_eq!(v["specwatch:model_bearing"], json!({"azimuth": -20.0}));
        assert_eq!(
            v["specwatch:doa_bearing"],
            json!({"azimuth": -31.5, "elevation": 4.25, "method": "music"})
        );
        assert_eq!(v["signal:detail"]["mod_class"], json!("psk"));
        let back = Annotation::from_json(Path::new("x"), 0, &v).unwrap();
        assert_eq!(back.detail, SignalDetail::from_class_name("QPSK"));
        assert_eq!(
            Annotation {
                detail: back.detail.clone(),
                ..a
            },
            back
        );
        // Without bearings of its own, an annotation has neither object.
        let plain = Annotation {
            sample_start: 0,
            azimuth_deg: Some(3.0),
            ..Default::default()
        }
        .to_json();
        assert!(plain.get("specwatch:model_bearing").is_none());
        assert!(plain.get("specwatch:doa_bearing").is_none());
        let mut bad = v.clone();
        bad["specwatch:doa_bearing"] = json!(12.0);
        let e = Annotation::from_json(Path::new("x"), 3, &bad).unwrap_err();
        assert!(
            e.to_string()
                .contains("annotations[3].specwatch:doa_bearing"),
            "{e}"
        );
    }
}
