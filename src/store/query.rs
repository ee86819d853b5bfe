//! Reading detections: the filters of [`DetectionQuery`] as SQL, rows back into [`Detection`]s.

use std::path::Path;

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row};

use super::schema::{MAX_TIME_LAG_KEY, classify};
use super::{Detection, DetectionPage, DetectionQuery, MAX_QUERY_LIMIT, StoreError};

/// Columns in the order [`detection_from_row`] reads them.
pub(super) const COLUMNS: &str = "d.id, d.time_ns, d.stream, d.sample_start, d.sample_count, \
     d.channel, d.channels, d.center_freq_hz, d.model, d.model_version, d.class, d.confidence, \
     d.top_k, d.snr_db, d.azimuth_deg, d.elevation_deg, d.windows, d.observed_ns, \
     d.model_azimuth_deg, d.model_elevation_deg, d.doa_azimuth_deg, d.doa_elevation_deg, \
     d.doa_method";

/// Checks the parts of a query that SQL would not reject by itself.
pub(super) fn validate(q: &DetectionQuery) -> Result<(), StoreError> {
    if q.limit == 0 || q.limit > MAX_QUERY_LIMIT {
        return Err(StoreError::InvalidQuery {
            parameter: "limit",
            message: format!("must be 1 to {MAX_QUERY_LIMIT}, got {}", q.limit),
        });
    }
    if let Some(c) = q.min_confidence
        && !(0.0..=1.0).contains(&c)
    {
        return Err(StoreError::InvalidQuery {
            parameter: "min_confidence",
            message: format!("must be between 0 and 1, got {c}"),
        });
    }
    if let Some(c) = q.cursor
        && c < 0
    {
        return Err(StoreError::InvalidQuery {
            parameter: "cursor",
            message: format!("must be 0 or more, got {c}"),
        });
    }
    Ok(())
}

/// The id range that can hold detections of `q`'s time range, from `time_high_ns` (which
/// never decreases with the id) and the store's largest time lag:
/// - a row with `time_ns >= since` has `time_high_ns >= since`, so its id is at least the
///   first id whose `time_high_ns >= since`;
/// - a row with `time_ns < until` has `time_high_ns <= time_ns + max_lag < until + max_lag`, so
///   its id is at most the last id whose `time_high_ns < until + max_lag`.
///
/// Both are index lookups; the query then scans ids in order from the start of the range and
/// stops at its end, instead of from the first row to the last. `None` when no row can match.
fn time_bounds(conn: &Connection, q: &DetectionQuery) -> rusqlite::Result<Option<(i64, i64)>> {
    let mut low = 1;
    let mut high = i64::MAX;
    if let Some(since) = q.since_ns {
        let first: Option<i64> = conn
            .prepare_cached(
                "SELECT id FROM detections WHERE time_high_ns >= ?1 ORDER BY time_high_ns LIMIT 1",
            )?
            .query_row([since], |r| r.get(0))
            .optional()?;
        match first {
            Some(id) => low = id,
            None => return Ok(None),
        }
    }
    if let Some(until) = q.until_ns {
        let max_lag: i64 = conn
            .prepare_cached("SELECT value FROM store_meta WHERE key = ?1")?
            .query_row([MAX_TIME_LAG_KEY], |r| r.get(0))?;
        if let Some(limit) = until.checked_add(max_lag) {
            let last: Option<i64> = conn
                .prepare_cached(
                    "SELECT id FROM detections WHERE time_high_ns < ?1 \
                     ORDER BY time_high_ns DESC LIMIT 1",
                )?
                .query_row([limit], |r| r.get(0))
                .optional()?;
            match last {
                Some(id) => high = id,
                None => return Ok(None),
            }
        }
    }
    Ok(Some((low, high)))
}

/// Runs `q` on a read connection, in one read transaction so that every step sees the same
/// committed snapshot.
pub(super) fn run(
    conn: &mut Connection,
    path: &Path,
    q: &DetectionQuery,
) -> Result<DetectionPage, StoreError> {
    validate(q)?;
    let failed = |e| classify(path, "query detections", e);
    let tx = conn.transaction().map_err(failed)?;
    let page = run_in(&tx, q).map_err(failed)?;
    tx.commit().map_err(failed)?;
    Ok(page)
}

fn run_in(conn: &Connection, q: &DetectionQuery) -> rusqlite::Result<DetectionPage> {
    let empty = DetectionPage {
        detections: Vec::new(),
        next_cursor: None,
    };
    let Some((time_low, high)) = time_bounds(conn, q)? else {
        return Ok(empty);
    };
    let low = time_low.max(q.cursor.map_or(1, |c| c.saturating_add(1)));
    if low > high {
        return Ok(empty);
    }

    // With a channel, walk that channel's index in id order (empty for a channel never seen);
    // otherwise the detections in id order. The planner may still prefer a class or model
    // index within the same id range.
    let (mut sql, id) = match q.channel {
        Some(_) => (
            format!(
                "SELECT {COLUMNS} FROM detection_channels c JOIN detections d \
                 ON d.id = c.detection_id WHERE c.channel = ? AND c.detection_id >= ? \
                 AND c.detection_id <= ?"
            ),
            "c.detection_id",
        ),
        None => (
            format!("SELECT {COLUMNS} FROM detections d WHERE d.id >= ? AND d.id <= ?"),
            "d.id",
        ),
    };
    let mut params: Vec<Value> = Vec::new();
    if let Some(channel) = q.channel {
        params.push(Value::Integer(i64::from(channel)));
    }
    params.push(Value::Integer(low));
    params.push(Value::Integer(high));
    if let Some(since) = q.since_ns {
        sql.push_str(" AND d.time_ns >= ?");
        params.push(Value::Integer(since));
    }
    if let Some(until) = q.until_ns {
        sql.push_str(" AND d.time_ns < ?");
        params.push(Value::Integer(until));
    }
    if let Some(class) = &q.class {
        sql.push_str(" AND d.class = ?");
        params.push(Value::Text(class.clone()));
    }
    if let Some(model) = &q.model {
        sql.push_str(" AND d.model = ?");
        params.push(Value::Text(model.clone()));
    }
    if let Some(min) = q.min_confidence {
        sql.push_str(" AND d.confidence >= ?");
        params.push(Value::Real(f64::from(min)));
    }
    // One row more than asked tells whether another page follows.
    sql.push_str(&format!(" ORDER BY {id} LIMIT ?"));
    params.push(Value::Integer(q.limit as i64 + 1));

    let mut stmt = conn.prepare_cached(&sql)?;
    let mut detections = stmt
        .query_map(rusqlite::params_from_iter(params), detection_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    let next_cursor = if detections.len() > q.limit {
        detections.truncate(q.limit);
        detections.last().map(|d| d.id)
    } else {
        None
    };
    Ok(DetectionPage {
        detections,
        next_cursor,
    })
}

fn json_column<T: serde::de::DeserializeOwned>(row: &Row, index: usize) -> rusqlite::Result<T> {
    let text: String = row.get(index)?;
    serde_json::from_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn unsigned_column(row: &Row, index: usize) -> rusqlite::Result<u64> {
    let v: i64 = row.get(index)?;
    u64::try_from(v).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(index, v))
}

/// Reads a row selected with [`COLUMNS`].
pub(super) fn detection_from_row(row: &Row) -> rusqlite::Result<Detection> {
    let optional_f32 = |i| row.get::<_, Option<f64>>(i).map(|v| v.map(|x| x as f32));
    Ok(Detection {
        id: row.get(0)?,
        time_ns: row.get(1)?,
        stream: row.get(2)?,
        sample_start: unsigned_column(row, 3)?,
        sample_count: unsigned_column(row, 4)?,
        channel: row.get(5)?,
        channels: json_column(row, 6)?,
        center_freq_hz: row.get(7)?,
        model: row.get(8)?,
        model_version: row.get(9)?,
        class: row.get(10)?,
        confidence: row.get::<_, f64>(11)? as f32,
        top_k: json_column(row, 12)?,
        snr_db: optional_f32(13)?,
        azimuth_deg: optional_f32(14)?,
        elevation_deg: optional_f32(15)?,
        windows: row.get(16)?,
        observed_ns: row.get(17)?,
        model_azimuth_deg: optional_f32(18)?,
        model_elevation_deg: optional_f32(19)?,
        doa_azimuth_deg: optional_f32(20)?,
        doa_elevation_deg: optional_f32(21)?,
        doa_method: row.get(22)?,
    })
}
