//! Query-string parsing for `/detections` and `/detections/stream`, by hand, so that every
//! rejection names the parameter and says what was expected.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::store::{DetectionQuery, MAX_QUERY_LIMIT};

/// Page size when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;

/// A rejected parameter: answered as 400 `{"error": message, "parameter": name}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    /// The parameter's name as the client sent it.
    pub parameter: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl ParamError {
    fn new(parameter: &str, message: impl Into<String>) -> ParamError {
        ParamError {
            parameter: parameter.to_owned(),
            message: message.into(),
        }
    }
}

/// Parameters `GET /detections` accepts.
pub const LIST_PARAMETERS: [&str; 8] = [
    "since",
    "until",
    "class",
    "min_confidence",
    "channel",
    "model",
    "limit",
    "cursor",
];

/// Parameters `GET /detections/stream` accepts (filters on what is streamed).
pub const STREAM_PARAMETERS: [&str; 4] = ["class", "min_confidence", "channel", "model"];

/// Parses an RFC 3339 time into UTC nanoseconds since the Unix epoch.
pub fn parse_time(parameter: &str, value: &str) -> Result<i64, ParamError> {
    let t = OffsetDateTime::parse(value, &Rfc3339).map_err(|e| {
        // A '+' in a query string means a space; offsets must be sent as %2B.
        let hint = if value.contains(' ') {
            "; write a '+' offset as %2B"
        } else {
            ""
        };
        ParamError::new(
            parameter,
            format!("{value:?} is not an RFC 3339 time such as 2024-05-01T12:00:00Z ({e}){hint}"),
        )
    })?;
    i64::try_from(t.unix_timestamp_nanos()).map_err(|_| {
        ParamError::new(
            parameter,
            format!("{value:?} is outside the years 1678 to 2262 that nanosecond times cover"),
        )
    })
}

/// Formats UTC nanoseconds since the Unix epoch as RFC 3339 (with as many fractional digits as
/// needed).
pub fn format_time(time_ns: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(time_ns))
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

fn non_empty<'a>(parameter: &str, value: &'a str) -> Result<&'a str, ParamError> {
    if value.is_empty() {
        Err(ParamError::new(parameter, "must not be empty"))
    } else {
        Ok(value)
    }
}

/// Splits a query string into pairs, rejecting names outside `allowed` and names given twice.
fn pairs(raw: Option<&str>, allowed: &[&str]) -> Result<Vec<(String, String)>, ParamError> {
    let mut seen: Vec<(String, String)> = Vec::new();
    for (name, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if !allowed.contains(&name.as_ref()) {
            return Err(ParamError::new(
                &name,
                format!(
                    "unknown parameter {name:?}; accepted are {}",
                    allowed.join(", ")
                ),
            ));
        }
        if seen.iter().any(|(n, _)| *n == name) {
            return Err(ParamError::new(&name, "given more than once"));
        }
        seen.push((name.into_owned(), value.into_owned()));
    }
    Ok(seen)
}

/// The filters shared by both routes.
fn apply_filter(q: &mut DetectionQuery, name: &str, value: &str) -> Result<(), ParamError> {
    match name {
        "class" => q.class = Some(non_empty(name, value)?.to_owned()),
        "model" => q.model = Some(non_empty(name, value)?.to_owned()),
        "channel" => {
            q.channel = Some(value.parse::<u32>().map_err(|_| {
                ParamError::new(
                    name,
                    format!("{value:?} is not a channel number (0 to {})", u32::MAX),
                )
            })?)
        }
        "min_confidence" => {
            let c = value
                .parse::<f32>()
                .ok()
                .filter(|c| (0.0..=1.0).contains(c))
                .ok_or_else(|| {
                    ParamError::new(name, format!("{value:?} is not a number from 0 to 1"))
                })?;
            q.min_confidence = Some(c);
        }
        _ => return Err(ParamError::new(name, format!("unknown parameter {name:?}"))),
    }
    Ok(())
}

/// Parses the query string of `GET /detections`.
pub fn parse_list_query(raw: Option<&str>) -> Result<DetectionQuery, ParamError> {
    let mut q = DetectionQuery {
        limit: DEFAULT_LIMIT,
        ..DetectionQuery::default()
    };
    for (name, value) in pairs(raw, &LIST_PARAMETERS)? {
        match name.as_str() {
            "since" => q.since_ns = Some(parse_time(&name, &value)?),
            "until" => q.until_ns = Some(parse_time(&name, &value)?),
            "limit" => {
                q.limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|l| (1..=MAX_QUERY_LIMIT).contains(l))
                    .ok_or_else(|| {
                        ParamError::new(
                            &name,
                            format!("{value:?} is not a whole number from 1 to {MAX_QUERY_LIMIT}"),
                        )
                    })?
            }
            "cursor" => {
                q.cursor = Some(value.parse::<i64>().ok().filter(|c| *c >= 0).ok_or_else(
                    || {
                        ParamError::new(
                            &name,
                            format!(
                                "{value:?} is not a cursor (the next_cursor of a previous page, a whole number of 0 or more)"
                            ),
                        )
                    },
                )?)
            }
            _ => apply_filter(&mut q, &name, &value)?,
        }
    }
    if let (Some(since), Some(until)) = (q.since_ns, q.until_ns)
        && until < since
    {
        return Err(ParamError::new("until", "is before since"));
    }
    Ok(q)
}

/// Parses the query string of `GET /detections/stream` into the filters to apply.
pub fn parse_stream_query(raw: Option<&str>) -> Result<DetectionQuery, ParamError> {
    let mut q = DetectionQuery::default();
    for (name, value) in pairs(raw, &STREAM_PARAMETERS)? {
        apply_filter(&mut q, &name, &value)?;
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_through_rfc3339() {
        let ns = parse_time("since", "2024-05-01T12:00:00.123456789Z").expect("valid time");
        assert_eq!(ns, 1_714_564_800_123_456_789);
        assert_eq!(format_time(ns), "2024-05-01T12:00:00.123456789Z");
        let offset = parse_time("since", "2024-05-01T14:00:00+02:00").expect("valid time");
        assert_eq!(offset, 1_714_564_800_000_000_000);
    }

    #[test]
    fn percent_encoded_values_are_decoded() {
        let q = parse_list_query(Some("since=2024-05-01T14%3A00%3A00%2B02%3A00&class=8PSK"))
            .expect("valid query");
        assert_eq!(q.since_ns, Some(1_714_564_800_000_000_000));
        assert_eq!(q.class.as_deref(), Some("8PSK"));
    }
}
