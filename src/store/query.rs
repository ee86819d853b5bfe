//! Reading detections: the filters of [`DetectionQuery`] as SQL, rows back into [`Detection`]s.

use std::path::Path;

use rusqlite::types::Value;
use rusqlite::{Connection, Row};

use super::schema::classify;
use super::{Detection, DetectionPage, DetectionQuery, MAX_QUERY_LIMIT, StoreError};

/// Columns in the order [`detection_from_row`] reads them.
pub(super) const COLUMNS: &str = "id, time_ns, stream, sample_start, sample_count, channel, channels, \
     center_freq_hz, model, model_version, class, confidence, top_k, snr_db, azimuth_deg, \
     elevation_deg, windows, observed_ns";

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

/// Runs `q` on a read connection.
pub(super) fn run(
    conn: &Connection,
    path: &Path,
    q: &DetectionQuery,
) -> Result<DetectionPage, StoreError> {
    validate(q)?;
    let mut sql = format!("SELECT {COLUMNS} FROM detections d WHERE d.id > ?");
    let mut params: Vec<Value> = vec![Value::Integer(q.cursor.unwrap_or(0))];
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
    if let Some(channel) = q.channel {
        sql.push_str(
            " AND EXISTS (SELECT 1 FROM detection_channels c WHERE c.detection_id = d.id AND c.channel = ?)",
        );
        params.push(Value::Integer(i64::from(channel)));
    }
    // One row more than asked tells whether another page follows.
    sql.push_str(" ORDER BY d.id LIMIT ?");
    params.push(Value::Integer(q.limit as i64 + 1));

    let failed = |e| classify(path, "query detections", e);
    let mut stmt = conn.prepare_cached(&sql).map_err(failed)?;
    let mut detections = stmt
        .query_map(rusqlite::params_from_iter(params), detection_from_row)
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(failed)?;
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
    })
}
