//! The JSON sidecar of a capture: `<name>.json` beside `<name>.npy`.
//!
//! ```json
//! {
//!   "sample_rate_hz": 1000000.0,
//!   "center_freq_hz": 433920000.0,
//!   "start_time": "2024-05-01T12:00:00.250Z",
//!   "channel_notes": ["element 0, north", "element 1"],
//!   "array": { "layout": { "kind": "ula", "elements": 2, "spacing_wavelengths": 0.5 },
//!              "positions_wavelengths": [[0, -0.25, 0], [0, 0.25, 0]] },
//!   "truth": [
//!     { "class": "QPSK", "snr_db": 10.0, "azimuth_deg": 20.0,
//!       "sample_start": 0, "sample_count": 4096, "channel": 0 }
//!   ]
//! }
//! ```
//!
//! Every field is optional; unknown fields are refused (a misspelt `sample_rate` must not be
//! silently ignored). [`Sidecar::load`] checks types and ranges field by field, so an error names
//! the file, the field (e.g. `truth[2].snr_db`) and what was expected; [`Sidecar::check_capture`]
//! then checks the sidecar against the capture it describes (channel count, span bounds).

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::dsp::array::ArrayGeometry;

/// Errors from reading or checking a sidecar; every one names the file.
#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: malformed JSON: {source}")]
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
}

/// One span of ground truth: what is in the capture, where, and from which direction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TruthSpan {
    /// Class name (as the model cards name classes).
    pub class: String,
    /// SNR of the signal in the span, dB.
    pub snr_db: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azimuth_deg: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elevation_deg: Option<f32>,
    /// First sample of the span.
    pub sample_start: u64,
    /// Number of samples, at least 1.
    pub sample_count: u64,
    /// The channel the span is on; `None` means every channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<usize>,
}

/// What a capture's sidecar says about it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sidecar {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_rate_hz: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub center_freq_hz: Option<f64>,
    /// Time of the first sample, RFC 3339 (e.g. `2024-05-01T12:00:00.250Z`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// One free-form note per channel (empty, or exactly one per channel).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channel_notes: Vec<String>,
    /// Geometry of the antenna array the channels come from (for AoA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array: Option<ArrayGeometry>,
    /// Ground truth, for regression tests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub truth: Vec<TruthSpan>,
}

const SIDECAR_FIELDS: &[&str] = &[
    "sample_rate_hz",
    "center_freq_hz",
    "start_time",
    "channel_notes",
    "array",
    "truth",
];

const SPAN_FIELDS: &[&str] = &[
    "class",
    "snr_db",
    "azimuth_deg",
    "elevation_deg",
    "sample_start",
    "sample_count",
    "channel",
];

/// The sidecar path of a capture: the same name with the extension `.json`.
pub fn sidecar_path(capture: &Path) -> PathBuf {
    capture.with_extension("json")
}

impl Sidecar {
    /// Reads and checks `path` on its own (types, ranges, timestamp format).
    pub fn load(path: &Path) -> Result<Sidecar, SidecarError> {
        let text = std::fs::read_to_string(path).map_err(|source| SidecarError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses sidecar text; `path` is only used in error messages.
    pub fn parse(path: &Path, text: &str) -> Result<Sidecar, SidecarError> {
        let value: Value = serde_json::from_str(text).map_err(|source| SidecarError::Syntax {
            path: path.to_path_buf(),
            source,
        })?;
        let fields = Fields { path };
        let obj = fields.object("(top level)", &value, SIDECAR_FIELDS)?;
        let truth = match obj.get("truth") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| fields.span(i, item))
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(fields.bad(
                    "truth",
                    format!("is {}; expected a list of spans", kind(other)),
                ));
            }
        };
        let sidecar = Sidecar {
            sample_rate_hz: fields.get(obj, "", "sample_rate_hz", "a number (Hz)")?,
            center_freq_hz: fields.get(obj, "", "center_freq_hz", "a number (Hz)")?,
            start_time: fields.get(obj, "", "start_time", "an RFC 3339 timestamp string")?,
            channel_notes: fields
                .get(obj, "", "channel_notes", "a list of strings")?
                .unwrap_or_default(),
            array: fields.get(
                obj,
                "",
                "array",
                "an array geometry {layout: {kind, ...}, positions_wavelengths: [[x, y, z], ...]}",
            )?,
            truth,
        };
        sidecar.check_values(path)?;
        Ok(sidecar)
    }

    fn check_values(&self, path: &Path) -> Result<(), SidecarError> {
        let bad = |field: &str, problem: String| SidecarError::Field {
            path: path.to_path_buf(),
            field: field.to_string(),
            problem,
        };
        if let Some(fs) = self.sample_rate_hz
            && !(fs.is_finite() && fs > 0.0)
        {
            return Err(bad(
                "sample_rate_hz",
                format!("is {fs}; expected a positive sample rate in Hz"),
            ));
        }
        if let Some(fc) = self.center_freq_hz
            && !(fc.is_finite() && fc.abs() <= 1e12)
        {
            return Err(bad(
                "center_freq_hz",
                format!("is {fc}; expected a frequency in Hz between -1e12 and 1e12"),
            ));
        }
        if let Some(t) = &self.start_time {
            check_rfc3339(t).map_err(|why| {
                bad(
                    "start_time",
                    format!("'{t}' is not an RFC 3339 timestamp ({why}); expected e.g. 2024-05-01T12:00:00.250Z"),
                )
            })?;
        }
        if let Some(array) = &self.array {
            let expected = ArrayGeometry::new(array.layout.clone())
                .map_err(|e| bad("array.layout", format!("{e}")))?;
            if expected.len() != array.positions_wavelengths.len() {
                return Err(bad(
                    "array.positions_wavelengths",
                    format!(
                        "lists {} positions but the layout has {} elements",
                        array.positions_wavelengths.len(),
                        expected.len()
                    ),
                ));
            }
            if let Some(i) = array
                .positions_wavelengths
                .iter()
                .position(|p| p.iter().any(|v| !v.is_finite()))
            {
                return Err(bad(
                    &format!("array.positions_wavelengths[{i}]"),
                    "holds a non-finite coordinate; expected finite numbers (wavelengths)".into(),
                ));
            }
        }
        for (i, span) in self.truth.iter().enumerate() {
            let field = |name: &str| format!("truth[{i}].{name}");
            if span.class.trim().is_empty() {
                return Err(bad(
                    &field("class"),
                    "is empty; expected a class name".into(),
                ));
            }
            if !span.snr_db.is_finite() {
                return Err(bad(
                    &field("snr_db"),
                    format!("is {}; expected a finite SNR in dB", span.snr_db),
                ));
            }
            if let Some(az) = span.azimuth_deg
                && !(az.is_finite() && (-360.0..=360.0).contains(&az))
            {
                return Err(bad(
                    &field("azimuth_deg"),
                    format!("is {az}; expected degrees in -360..=360"),
                ));
            }
            if let Some(el) = span.elevation_deg
                && !(el.is_finite() && (-90.0..=90.0).contains(&el))
            {
                return Err(bad(
                    &field("elevation_deg"),
                    format!("is {el}; expected degrees in -90..=90"),
                ));
            }
            if span.sample_count == 0 {
                return Err(bad(
                    &field("sample_count"),
                    "is 0; expected at least 1 sample".into(),
                ));
            }
        }
        Ok(())
    }

    /// Checks the sidecar against the capture it describes: `channels` channels of `len` samples.
    pub fn check_capture(
        &self,
        path: &Path,
        channels: usize,
        len: u64,
    ) -> Result<(), SidecarError> {
        let bad = |field: String, problem: String| SidecarError::Field {
            path: path.to_path_buf(),
            field,
            problem,
        };
        if !self.channel_notes.is_empty() && self.channel_notes.len() != channels {
            return Err(bad(
                "channel_notes".into(),
                format!(
                    "has {} notes but the capture has {channels} channels; expected one note per channel",
                    self.channel_notes.len()
                ),
            ));
        }
        if let Some(array) = &self.array
            && array.len() != channels
        {
            return Err(bad(
                "array".into(),
                format!(
                    "describes {} elements but the capture has {channels} channels; expected one element per channel",
                    array.len()
                ),
            ));
        }
        for (i, span) in self.truth.iter().enumerate() {
            let end = span.sample_start.saturating_add(span.sample_count);
            if end > len {
                return Err(bad(
                    format!("truth[{i}]"),
                    format!(
                        "covers samples {}..{end} but the capture has {len} samples; expected a span inside the capture",
                        span.sample_start
                    ),
                ));
            }
            if let Some(c) = span.channel
                && c >= channels
            {
                return Err(bad(
                    format!("truth[{i}].channel"),
                    format!("is {c} but the capture has {channels} channels (0..{channels})"),
                ));
            }
        }
        Ok(())
    }

    /// Writes the sidecar as pretty JSON.
    pub fn save(&self, path: &Path) -> Result<(), SidecarError> {
        let text = serde_json::to_string_pretty(self).expect("a sidecar serialises");
        std::fs::write(path, text + "\n").map_err(|source| SidecarError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Field-by-field typed extraction, so that errors can name the field.
struct Fields<'a> {
    path: &'a Path,
}

impl Fields<'_> {
    fn bad(&self, field: &str, problem: String) -> SidecarError {
        SidecarError::Field {
            path: self.path.to_path_buf(),
            field: field.to_string(),
            problem,
        }
    }

    fn object<'v>(
        &self,
        field: &str,
        value: &'v Value,
        known: &[&str],
    ) -> Result<&'v Map<String, Value>, SidecarError> {
        let obj = value.as_object().ok_or_else(|| {
            self.bad(field, format!("is {}; expected a JSON object", kind(value)))
        })?;
        if let Some(unknown) = obj.keys().find(|k| !known.contains(&k.as_str())) {
            let prefix = if field.starts_with('(') {
                String::new()
            } else {
                format!("{field}.")
            };
            return Err(self.bad(
                &format!("{prefix}{unknown}"),
                format!(
                    "is not a known field; expected one of: {}",
                    known.join(", ")
                ),
            ));
        }
        Ok(obj)
    }

    fn get<T: DeserializeOwned>(
        &self,
        obj: &Map<String, Value>,
        prefix: &str,
        key: &str,
        expected: &str,
    ) -> Result<Option<T>, SidecarError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => T::deserialize(v).map(Some).map_err(|e| {
                self.bad(
                    &format!("{prefix}{key}"),
                    format!("is {}; expected {expected} ({e})", kind(v)),
                )
            }),
        }
    }

    fn require<T: DeserializeOwned>(
        &self,
        obj: &Map<String, Value>,
        prefix: &str,
        key: &str,
        expected: &str,
    ) -> Result<T, SidecarError> {
        self.get(obj, prefix, key, expected)?.ok_or_else(|| {
            self.bad(
                &format!("{prefix}{key}"),
                format!("is missing; expected {expected}"),
            )
        })
    }

    fn span(&self, i: usize, value: &Value) -> Result<TruthSpan, SidecarError> {
        let name = format!("truth[{i}]");
        let obj = self.object(&name, value, SPAN_FIELDS)?;
        let p = format!("{name}.");
        Ok(TruthSpan {
            class: self.require(obj, &p, "class", "a class name string")?,
            snr_db: self.require(obj, &p, "snr_db", "a number (dB)")?,
            azimuth_deg: self.get(obj, &p, "azimuth_deg", "a number (degrees)")?,
            elevation_deg: self.get(obj, &p, "elevation_deg", "a number (degrees)")?,
            sample_start: self.require(obj, &p, "sample_start", "a non-negative integer")?,
            sample_count: self.require(obj, &p, "sample_count", "a positive integer")?,
            channel: self.get(obj, &p, "channel", "a non-negative channel index")?,
        })
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Checks that `s` is an RFC 3339 `date-time`: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`, with real
/// calendar dates (leap years included) and seconds up to 60 (leap second). Returns why not.
pub fn check_rfc3339(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    let digits = |from: usize, n: usize| -> Result<u32, String> {
        let part = b
            .get(from..from + n)
            .ok_or_else(|| format!("it ends after {from} characters"))?;
        if !part.iter().all(u8::is_ascii_digit) {
            return Err(format!("expected {n} digits at position {from}"));
        }
        Ok(part
            .iter()
            .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0')))
    };
    let sep = |at: usize, allowed: &[u8], what: &str| -> Result<(), String> {
        match b.get(at) {
            Some(c) if allowed.contains(c) => Ok(()),
            _ => Err(format!("expected {what} at position {at}")),
        }
    };
    let year = digits(0, 4)?;
    sep(4, b"-", "'-'")?;
    let month = digits(5, 2)?;
    sep(7, b"-", "'-'")?;
    let day = digits(8, 2)?;
    sep(10, b"Tt ", "'T'")?;
    let hour = digits(11, 2)?;
    sep(13, b":", "':'")?;
    let minute = digits(14, 2)?;
    sep(16, b":", "':'")?;
    let second = digits(17, 2)?;
    if !(1..=12).contains(&month) {
        return Err(format!("month {month} is not 01-12"));
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if !(1..=days).contains(&day) {
        return Err(format!(
            "day {day} does not exist in month {month:02} of {year}"
        ));
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err(format!(
            "time {hour:02}:{minute:02}:{second:02} is out of range"
        ));
    }
    let mut at = 19;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        if at == start {
            return Err("expected digits after the decimal point".into());
        }
    }
    match b.get(at) {
        Some(b'Z' | b'z') if at + 1 == b.len() => Ok(()),
        Some(b'+' | b'-') => {
            let oh = digits(at + 1, 2)?;
            sep(at + 3, b":", "':' in the UTC offset")?;
            let om = digits(at + 4, 2)?;
            if oh > 23 || om > 59 {
                return Err(format!("UTC offset {oh:02}:{om:02} is out of range"));
            }
            if at + 6 != b.len() {
                return Err("unexpected characters after the UTC offset".into());
            }
            Ok(())
        }
        _ => Err(format!(
            "expected 'Z' or a UTC offset like +02:00 at position {at}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_accepts_the_usual_forms() {
        for ok in [
            "2024-05-01T12:00:00Z",
            "2024-05-01T12:00:00.250Z",
            "2024-02-29T23:59:60+01:00",
            "1999-12-31t00:00:00-05:30",
        ] {
            assert_eq!(check_rfc3339(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn rfc3339_refuses_what_is_not() {
        for bad in [
            "2024-05-01",
            "2024-05-01T12:00Z",
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T12:00:00",
            "2024-05-01T12:00:00.Z",
            "2024-05-01T12:00:00+0100",
            "2024-05-01T12:00:00Zjunk",
            "yesterday",
        ] {
            assert!(check_rfc3339(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_name_the_field() {
        let p = Path::new("cap.json");
        let e = Sidecar::parse(p, r#"{"sample_rate_hz": "fast"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cap.json")
                && e.contains("sample_rate_hz")
                && e.contains("expected a number"),
            "{e}"
        );
        let e = Sidecar::parse(p, r#"{"truth": [{"class": "AM", "snr_db": 1, "sample_start": 0, "sample_count": 5, "colour": 1}]}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("truth[0].colour") && e.contains("not a known field"),
            "{e}"
        );
        let e = Sidecar::parse(
            p,
            r#"{"truth": [{"class": "AM", "snr_db": "x", "sample_start": 0, "sample_count": 5}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("truth[0].snr_db"), "{e}");
        let e = Sidecar::parse(p, r#"{"sample_rate_hz": -1}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("positive sample rate"), "{e}");
    }

    #[test]
    fn spans_must_lie_inside_the_capture() {
        let p = Path::new("cap.json");
        let s = Sidecar::parse(
            p,
            r#"{"truth": [{"class": "AM", "snr_db": 1, "sample_start": 90, "sample_count": 20, "channel": 1}]}"#,
        )
        .unwrap();
        assert!(s.check_capture(p, 2, 110).is_ok());
        let e = s.check_capture(p, 2, 100).unwrap_err().to_string();
        assert!(e.contains("truth[0]") && e.contains("100 samples"), "{e}");
        let e = s.check_capture(p, 1, 200).unwrap_err().to_string();
        assert!(e.contains("truth[0].channel"), "{e}");
    }

    #[test]
    fn round_trips_through_json() {
        let s = Sidecar {
            sample_rate_hz: Some(1e6),
            center_freq_hz: Some(433.92e6),
            start_time: Some("2024-05-01T12:00:00.250Z".into()),
            channel_notes: vec!["a".into(), "b".into()],
            array: Some(
                ArrayGeometry::new(crate::dsp::array::ArrayLayout::Ula {
                    elements: 2,
                    spacing_wavelengths: 0.5,
                })
                .unwrap(),
            ),
            truth: vec![TruthSpan {
                class: "QPSK".into(),
                snr_db: 3.0,
                azimuth_deg: Some(10.0),
                elevation_deg: None,
                sample_start: 0,
                sample_count: 10,
                channel: None,
            }],
        };
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(Sidecar::parse(Path::new("x.json"), &text).unwrap(), s);
    }
}
