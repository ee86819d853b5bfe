//! Opening the database file: pragmas, schema creation and version checks, integrity check.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::StoreError;

/// Schema version written to `PRAGMA user_version`. Version 2 adds a detection's two bearings
/// side by side (the model's and the array estimator's) to version 1; an older store is
/// upgraded in place when opened.
pub const SCHEMA_VERSION: i64 = 2;

/// `PRAGMA application_id` of specwatch stores: "SpWt" in ASCII.
pub const APPLICATION_ID: i64 = 0x5370_5774;

/// How long a connection waits for a lock held by another connection before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The schema as version 1 made it. Frozen: a new store is made by it and then every step of
/// [`MIGRATIONS`], exactly as an older store is upgraded, so both end with the same schema.
///
/// - `detections`: one row per detection; `AUTOINCREMENT` so that ids are never reused after
///   retention deletes rows, which keeps cursors stable. `channels` and `top_k` are JSON arrays.
///   `time_high_ns` is the largest `time_ns` inserted up to and including the row: it never
///   decreases with the id, so a time bound becomes an id range (see `query`).
/// - `detection_channels`: every channel a detection covers, for the channel filter.
/// - `store_meta`: `max_time_lag_ns`, the largest `time_high_ns - time_ns` ever inserted.
/// - Indexes for the filters (time, class, model, channel) and for retention by age.
const SCHEMA_V1: &str = "
CREATE TABLE detections (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ns        INTEGER NOT NULL,
    stream         TEXT    NOT NULL,
    sample_start   INTEGER NOT NULL,
    sample_count   INTEGER NOT NULL,
    channel        INTEGER NOT NULL,
    channels       TEXT    NOT NULL,
    center_freq_hz REAL,
    model          TEXT    NOT NULL,
    model_version  TEXT    NOT NULL,
    class          TEXT    NOT NULL,
    confidence     REAL    NOT NULL,
    top_k          TEXT    NOT NULL,
    snr_db         REAL,
    azimuth_deg    REAL,
    elevation_deg  REAL,
    windows        INTEGER NOT NULL,
    observed_ns    INTEGER NOT NULL,
    time_high_ns   INTEGER NOT NULL
);
CREATE INDEX detections_by_time ON detections (time_ns);
CREATE INDEX detections_by_time_high ON detections (time_high_ns);
CREATE INDEX detections_by_class ON detections (class, id);
CREATE INDEX detections_by_model ON detections (model, id);
CREATE INDEX detections_by_observed ON detections (observed_ns);
CREATE TABLE detection_channels (
    detection_id INTEGER NOT NULL,
    channel      INTEGER NOT NULL,
    PRIMARY KEY (detection_id, channel)
) WITHOUT ROWID;
CREATE INDEX detection_channels_by_channel ON detection_channels (channel, detection_id);
CREATE TABLE store_meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO store_meta (key, value) VALUES ('max_time_lag_ns', 0);
";

/// The steps from one schema version to the next: `(version reached, SQL)`, in order. Each runs
/// in the transaction that sets `user_version` to its version, so a store is never left half
/// upgraded. Steps only add (nullable columns, tables, indexes): what older versions stored
/// stays readable as it was.
///
/// - 2: a detection's two bearings side by side (see [`super::Detection`]): the model's own
///   (`model_azimuth_deg`, `model_elevation_deg`) and the array estimator's (`doa_azimuth_deg`,
///   `doa_elevation_deg`, `doa_method`). Rows of version 1 keep their `azimuth_deg` and
///   `elevation_deg` (the station's bearing) and have NULL in the new columns: which estimator
///   gave a version-1 bearing was not recorded.
const MIGRATIONS: &[(i64, &str)] = &[(
    2,
    "
ALTER TABLE detections ADD COLUMN model_azimuth_deg REAL;
ALTER TABLE detections ADD COLUMN model_elevation_deg REAL;
ALTER TABLE detections ADD COLUMN doa_azimuth_deg REAL;
ALTER TABLE detections ADD COLUMN doa_elevation_deg REAL;
ALTER TABLE detections ADD COLUMN doa_method TEXT;
",
)];

/// `store_meta` key of the largest lag of a detection's time behind the newest time before it.
pub(super) const MAX_TIME_LAG_KEY: &str = "max_time_lag_ns";

/// Maps an SQLite error met while opening or checking `path` to the [`StoreError`] that says
/// what to do about it.
pub(super) fn classify(path: &Path, context: &'static str, e: rusqlite::Error) -> StoreError {
    let path = path.to_path_buf();
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) | Some(ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
            path,
            detail: e.to_string(),
        },
        Some(ErrorCode::ReadOnly)
        | Some(ErrorCode::PermissionDenied)
        | Some(ErrorCode::DiskFull)
        | Some(ErrorCode::DatabaseBusy)
        | Some(ErrorCode::DatabaseLocked) => StoreError::NotWritable {
            path,
            detail: format!("{context}: {e}"),
        },
        Some(ErrorCode::CannotOpen) => StoreError::Open { path, source: e },
        _ => StoreError::Sqlite {
            path,
            context,
            source: e,
        },
    }
}

/// Opens the file for the writer thread: creates it and its schema when new, checks a
/// present one, switches to WAL and proves that it can take the write lock.
pub(super) fn open_for_writing(path: &Path) -> Result<Connection, StoreError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.is_dir()
    {
        return Err(StoreError::NotWritable {
            path: path.to_path_buf(),
            detail: format!("its folder {} does not exist", parent.display()),
        });
    }
    if path.is_dir() {
        return Err(StoreError::NotWritable {
            path: path.to_path_buf(),
            detail: "it is a folder, not a file".into(),
        });
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| classify(path, "open", e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| classify(path, "set the busy timeout", e))?;

    // Reading the header is the first access: a file that is not SQLite fails here.
    let application_id: i64 = conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .map_err(|e| classify(path, "read the application id", e))?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| classify(path, "read the schema version", e))?;
    let objects: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
        .map_err(|e| classify(path, "read the schema", e))?;

    if application_id == 0 && version == 0 && objects == 0 {
        create_schema(&conn, path)?;
    } else if application_id != APPLICATION_ID {
        return Err(StoreError::Foreign {
            path: path.to_path_buf(),
            detail: format!(
                "an SQLite database of another program (application id {application_id:#x}, specwatch's is {APPLICATION_ID:#x}, {objects} schema objects)"
            ),
        });
    } else if version > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    } else if version < 1 {
        return Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: format!("marked as specwatch's but with schema version {version}"),
        });
    } else if version < SCHEMA_VERSION {
        migrate(&conn, path, version)?;
    }

    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .map_err(|e| classify(path, "switch to WAL", e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::NotWritable {
            path: path.to_path_buf(),
            detail: format!(
                "SQLite cannot use a write-ahead log there (journal mode stayed {mode:?}); put the store on a local file system"
            ),
        });
    }
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(|e| classify(path, "set synchronous=NORMAL", e))?;
    optimize(&conn, path)?;
    // Prove the write lock can be taken (a read-only file opens fine and fails only here).
    conn.execute_batch("BEGIN IMMEDIATE; UPDATE sqlite_sequence SET seq = seq WHERE 0; COMMIT;")
        .map_err(|e| {
            let _rollback = conn.execute_batch("ROLLBACK");
            classify(path, "take the write lock", e)
        })?;
    Ok(conn)
}

fn create_schema(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let steps: String = MIGRATIONS.iter().map(|(_, sql)| *sql).collect();
    let sql = format!(
        "BEGIN IMMEDIATE;\n{SCHEMA_V1}\n{steps}\nPRAGMA application_id = {APPLICATION_ID};\nPRAGMA user_version = {SCHEMA_VERSION};\nCOMMIT;"
    );
    conn.execute_batch(&sql).map_err(|e| {
        let _rollback = conn.execute_batch("ROLLBACK");
        classify(path, "create the schema", e)
    })
}

/// Upgrades a store of schema version `from` in place, one [`MIGRATIONS`] step per
/// transaction; a failed step leaves the store at the version before it.
fn migrate(conn: &Connection, path: &Path, from: i64) -> Result<(), StoreError> {
    for (version, step) in MIGRATIONS.iter().filter(|(v, _)| *v > from) {
        let sql = format!("BEGIN IMMEDIATE;\n{step}\nPRAGMA user_version = {version};\nCOMMIT;");
        conn.execute_batch(&sql).map_err(|e| {
            let _rollback = conn.execute_batch("ROLLBACK");
            classify(path, "upgrade the schema", e)
        })?;
        tracing::info!(
            "detection store {}: schema upgraded to version {version}",
            path.display()
        );
    }
    Ok(())
}

/// Refreshes the query planner's statistics where they are stale (`PRAGMA optimize`, with a
/// bounded analysis so it stays fast on large stores), so it picks the most selective index.
pub(super) fn optimize(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    conn.execute_batch("PRAGMA analysis_limit = 1000; PRAGMA optimize = 0x10002;")
        .map_err(|e| classify(path, "refresh planner statistics", e))
}

/// The writer's running time state: the newest `time_ns` so far (`None` in an empty store)
/// and the largest lag behind it.
pub(super) fn time_state(conn: &Connection, path: &Path) -> Result<(Option<i64>, i64), StoreError> {
    let high: Option<i64> = conn
        .query_row("SELECT max(time_high_ns) FROM detections", [], |r| r.get(0))
        .map_err(|e| classify(path, "read the newest detection time", e))?;
    let lag: i64 = conn
        .query_row(
            "SELECT value FROM store_meta WHERE key = ?1",
            [MAX_TIME_LAG_KEY],
            |r| r.get(0),
        )
        .map_err(|e| classify(path, "read max_time_lag_ns", e))?;
    Ok((high, lag))
}

/// Opens a read-only connection for queries. It sees committed transactions only.
pub(super) fn open_for_reading(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| classify(path, "open for reading", e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| classify(path, "set the busy timeout", e))?;
    conn.pragma_update(None, "query_only", true)
        .map_err(|e| classify(path, "set query_only", e))?;
    Ok(conn)
}

/// Number of detections in the store.
pub(super) fn count_rows(conn: &Connection, path: &Path) -> Result<u64, StoreError> {
    let n: i64 = conn
        .query_row("SELECT count(*) FROM detections", [], |r| r.get(0))
        .map_err(|e| classify(path, "count detections", e))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Runs `PRAGMA integrity_check` on the store at `path` (read-only) and returns `Ok` when
/// SQLite answers "ok", else the problems it lists.
pub fn integrity_check(path: &Path) -> Result<(), StoreError> {
    if !path.is_file() {
        return Err(StoreError::Missing {
            path: path.to_path_buf(),
        });
    }
    let conn = open_for_reading(path)?;
    let mut stmt = conn
        .prepare("PRAGMA integrity_check")
        .map_err(|e| classify(path, "integrity check", e))?;
    let problems = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(|e| classify(path, "integrity check", e))?;
    if problems.len() == 1 && problems[0] == "ok" {
        Ok(())
    } else {
        Err(StoreError::Integrity {
            path: path.to_path_buf(),
            problems,
        })
    }
}
