//! The detection store: SQLite (WAL) on disk, fed by a writer thread, read by the API.
//!
//! # Writing
//! The flowgraph's sink hands each [`Detection`] to a [`DetectionWriter`], which never blocks: it
//! puts the detection on a bounded queue, and when the queue is full the detection is dropped
//! and counted (`specwatch_detections_dropped_total{reason="store_backlog"}`). One writer thread
//! drains the queue into transactions by group commit: what is pending commits as soon as the
//! queue holds nothing more, so a detection waits only for those that arrived with it, and
//! batches grow by themselves under load (up to `batch_max` detections, and never longer than
//! `flush_interval` after the first). At a paced 1 MS/s with the 128-sample model, a detection
//! waited 1.2–2.2 ms on average from the sink to its commit, against 9.0–9.5 ms when batches
//! were held for a 10 ms interval (`cargo bench --bench daemon`, 2 cores). The writer also merges runs of
//! windows of the same class when asked to, and applies retention by age and by row count every
//! [`RETENTION_PERIOD`]. The write-ahead log is copied into the database file by a checkpointer
//! thread of its own, so its `fsync`s never hold up a commit.
//!
//! # Reading and durability
//! Queries run on separate read connections and, through SQLite's WAL snapshot isolation, see
//! only committed transactions; committed detections are also published to
//! [`Store::subscribe`] receivers after the commit. So nothing the API returns can be lost by a
//! crash of the process: the database runs with `journal_mode=WAL` and `synchronous=NORMAL`,
//! under which a committed transaction is in the WAL file (in the operating system's hands)
//! when `COMMIT` returns, and survives a `kill -9` of the daemon. `NORMAL` does not `fsync` on
//! every commit; an operating-system crash or power cut can roll back the last commits (never
//! corrupt the file). That is the trade chosen for a monitoring station, whose detections are
//! a stream of observations rather than records of value one by one; `synchronous=FULL` would
//! `fsync` each batch.
//!
//! # Files
//! The schema version ([`SCHEMA_VERSION`]) is kept in `PRAGMA user_version` and the file is
//! marked as specwatch's by `PRAGMA application_id`. A store of an older schema is upgraded in
//! place when it is opened (each step adds nullable columns in a transaction of its own, so old
//! rows stay as they were); a file from a newer specwatch, or another program's SQLite file, is
//! refused with an error naming it. [`integrity_check`] runs `PRAGMA integrity_check`.
//!
//! # Other sinks
//! The flowgraph writes through the [`DetectionSink`] trait, which [`DetectionWriter`]
//! implements; forwarding detections to a shared store or a broker is one more implementation.

mod checkpoint;
mod query;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::telemetry::Metrics;

pub use schema::{SCHEMA_VERSION, integrity_check};

/// The largest page a query may ask for.
pub const MAX_QUERY_LIMIT: usize = 10_000;

/// How often the writer thread applies retention and refreshes the query planner's statistics
/// (also once when the store opens).
pub const RETENTION_PERIOD: Duration = Duration::from_secs(30);

/// Committed detections buffered per [`Store::subscribe`] receiver before a slow one lags.
pub const SUBSCRIBER_CAPACITY: usize = 4096;

/// One classified window, or a merged run of windows of the same class.
///
/// # Bearings
/// A detection of a model with angle outputs on an array with `[model.doa]` carries two
/// bearings side by side, so that an operator sees where the learned estimator and the array
/// estimator (MUSIC by default) disagree: `model_*` are the model's, `doa_*` the array
/// estimator's (with its method). `azimuth_deg`/`elevation_deg` stay *the station's bearing*,
/// the one to use when only one is wanted: the model's when it gives one, else the array
/// estimator's. So a model without angle outputs on an array has `azimuth_deg` equal to
/// `doa_azimuth_deg` and no `model_*`; a model with angle outputs and no `[model.doa]` has
/// `azimuth_deg` equal to `model_azimuth_deg` and no `doa_*`. Records stored before schema
/// version 2 (upgraded in place) have only the station's bearing: their `model_*` and `doa_*`
/// are `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// Assigned by the store (0 before insert); ids only grow, so they are the pagination
    /// cursor.
    pub id: i64,
    /// UTC time of the first sample, nanoseconds since the Unix epoch.
    pub time_ns: i64,
    /// Capture or stream id (the source name from the config).
    pub stream: String,
    /// Index of the first sample in the stream.
    pub sample_start: u64,
    /// Samples covered: the window length, or the merged span.
    pub sample_count: u64,
    /// First channel; multi-channel windows list all of them in `channels`.
    pub channel: u32,
    /// All channels the window covers.
    pub channels: Vec<u32>,
    /// RF centre frequency in Hz, when known.
    pub center_freq_hz: Option<f64>,
    /// Model card name.
    pub model: String,
    /// Model card version.
    pub model_version: String,
    /// Top-1 class.
    pub class: String,
    /// Top-1 probability.
    pub confidence: f32,
    /// Up to 3 (class, probability) pairs, most probable first.
    pub top_k: Vec<(String, f32)>,
    /// Estimated SNR in dB.
    pub snr_db: Option<f32>,
    /// The station's bearing: azimuth in degrees, the model's own when its graph outputs
    /// angles ([`Detection::model_azimuth_deg`]), else the array estimator's
    /// ([`Detection::doa_azimuth_deg`]); `None` when neither gave one.
    pub azimuth_deg: Option<f32>,
    /// The station's elevation in degrees, from the same estimator as `azimuth_deg`.
    pub elevation_deg: Option<f32>,
    /// Azimuth in degrees from the model's own angle outputs (a learned `aoa` / `amc+aoa`
    /// model); `None` for a model without them.
    #[serde(default)]
    pub model_azimuth_deg: Option<f32>,
    /// Elevation in degrees from the model's own angle outputs.
    #[serde(default)]
    pub model_elevation_deg: Option<f32>,
    /// Azimuth in degrees from the array estimator of the model's `[model.doa]` config
    /// (`doa_method`), computed for every multi-channel window whether or not the model gives
    /// angles too; `None` without `[model.doa]`.
    #[serde(default)]
    pub doa_azimuth_deg: Option<f32>,
    /// Elevation in degrees from the array estimator.
    #[serde(default)]
    pub doa_elevation_deg: Option<f32>,
    /// The array estimator's method (`music`, `bartlett`) when it gave a bearing.
    #[serde(default)]
    pub doa_method: Option<String>,
    /// Windows merged into this record (1 when not merged).
    pub windows: u32,
    /// Wall clock (UTC ns) when the window reached the sink; for a merged record, when its
    /// latest window did. Retention by age counts from it.
    pub observed_ns: i64,
}

impl From<&Detection> for crate::iq::sigmf::Annotation {
    /// The SigMF annotation of a detection, to write back beside the capture it came from
    /// ([`crate::iq::sigmf::write_annotations`]): its span, class (`core:label`), model and
    /// version (`core:generator`), confidence and SNR, the station's bearing
    /// (`spatial:signal_bearing`) and both bearings it carries (`specwatch:model_bearing`,
    /// `specwatch:doa_bearing` with the method). Values that are not finite are left out.
    fn from(d: &Detection) -> Self {
        let finite = |v: Option<f32>| v.filter(|x| x.is_finite());
        let doa_azimuth_deg = finite(d.doa_azimuth_deg);
        let doa_elevation_deg = finite(d.doa_elevation_deg);
        crate::iq::sigmf::Annotation {
            sample_start: d.sample_start,
            sample_count: Some(d.sample_count),
            label: Some(d.class.clone()),
            comment: None,
            generator: Some(format!("{} {}", d.model, d.model_version)),
            freq_edges_hz: None,
            confidence: finite(Some(d.confidence)),
            snr_db: finite(d.snr_db),
            azimuth_deg: finite(d.azimuth_deg),
            elevation_deg: finite(d.elevation_deg),
            model_azimuth_deg: finite(d.model_azimuth_deg),
            model_elevation_deg: finite(d.model_elevation_deg),
            doa_azimuth_deg,
            doa_elevation_deg,
            doa_method: d
                .doa_method
                .clone()
                .filter(|_| doa_azimuth_deg.is_some() || doa_elevation_deg.is_some()),
            detail: None,
        }
    }
}

/// How the store is opened and run.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    /// The SQLite file; created (with its schema) when missing. Its folder must exist.
    pub path: PathBuf,
    /// Delete detections last observed longer ago than this.
    pub retention_max_age: Option<Duration>,
    /// Keep at most this many detections, deleting the oldest first.
    pub retention_max_rows: Option<u64>,
    /// Merge runs of windows of the same class into one record.
    pub merge: bool,
    /// A window extends an open record when it starts at most this many samples after the
    /// record's end.
    pub merge_max_gap_samples: u64,
    /// Most detections per transaction.
    pub batch_max: usize,
    /// Longest a detection waits in the writer before its batch is committed (batches commit
    /// sooner, as soon as the writer's queue is empty).
    pub flush_interval: Duration,
    /// Detections the queue to the writer holds before it drops new ones.
    pub queue_capacity: usize,
}

impl StoreConfig {
    /// A configuration for `path` with the defaults: no retention, no merging, batches of up to
    /// 512 detections committed within 200 ms at the latest, a queue of 16,384 detections.
    pub fn new(path: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig {
            path: path.into(),
            retention_max_age: None,
            retention_max_rows: None,
            merge: false,
            merge_max_gap_samples: 0,
            batch_max: 512,
            flush_interval: Duration::from_millis(200),
            queue_capacity: 16_384,
        }
    }
}

/// What [`Store::query`] selects. Every filter is optional; results are in id order.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectionQuery {
    /// Detections whose first sample is at or after this time (UTC ns).
    pub since_ns: Option<i64>,
    /// Detections whose first sample is before this time (UTC ns).
    pub until_ns: Option<i64>,
    /// Only this class.
    pub class: Option<String>,
    /// Only detections at least this confident.
    pub min_confidence: Option<f32>,
    /// Only detections covering this channel (first channel or any of `channels`).
    pub channel: Option<u32>,
    /// Only this model.
    pub model: Option<String>,
    /// Page size, 1 to [`MAX_QUERY_LIMIT`].
    pub limit: usize,
    /// Only ids greater than this (the previous page's `next_cursor`).
    pub cursor: Option<i64>,
}

impl Default for DetectionQuery {
    /// No filters, first page of 100.
    fn default() -> DetectionQuery {
        DetectionQuery {
            since_ns: None,
            until_ns: None,
            class: None,
            min_confidence: None,
            channel: None,
            model: None,
            limit: 100,
            cursor: None,
        }
    }
}

/// One page of query results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DetectionPage {
    /// Matching detections in ascending id order.
    pub detections: Vec<Detection>,
    /// Pass as `cursor` for the next page; `None` when this page is the last.
    pub next_cursor: Option<i64>,
}

/// What can go wrong with the store. Every message names the database file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file (or its folder) cannot be opened or created.
    #[error("detection store {path}: cannot open: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// The file does not exist (where it must: integrity checks, reads).
    #[error("detection store {path}: no such file")]
    Missing { path: PathBuf },
    /// The store cannot be written (read-only file or folder, no space, locked by another
    /// process).
    #[error(
        "detection store {path}: not writable ({detail}); check the file's and folder's permissions and free space"
    )]
    NotWritable { path: PathBuf, detail: String },
    /// The file is not an SQLite database, or SQLite reports it damaged.
    #[error(
        "detection store {path}: corrupt or not an SQLite database ({detail}); move it aside to start a new store"
    )]
    Corrupt { path: PathBuf, detail: String },
    /// An SQLite database that specwatch did not make.
    #[error("detection store {path}: {detail}; point the store at a new file")]
    Foreign { path: PathBuf, detail: String },
    /// A store written by a newer specwatch.
    #[error(
        "detection store {path}: schema version {found} is newer than this specwatch supports ({supported}); upgrade specwatch or use a new file"
    )]
    NewerSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    /// `PRAGMA integrity_check` found problems.
    #[error("detection store {path}: integrity check failed: {}", problems.join("; "))]
    Integrity {
        path: PathBuf,
        problems: Vec<String>,
    },
    /// A query or write failed.
    #[error("detection store {path}: {context}: {source}")]
    Sqlite {
        path: PathBuf,
        context: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    /// A query parameter is out of range.
    #[error("detection query: {parameter}: {message}")]
    InvalidQuery {
        parameter: &'static str,
        message: String,
    },
    /// The configuration cannot work.
    #[error("detection store {path}: {field}: {message}")]
    InvalidConfig {
        path: PathBuf,
        field: &'static str,
        message: String,
    },
    /// The writer thread has stopped (the store was closed or the thread failed).
    #[error("detection store {path}: the writer has stopped")]
    WriterStopped { path: PathBuf },
}

/// Anything detections can be handed to from the flowgraph: the local store's
/// [`DetectionWriter`] today, a forwarder to a shared store or broker tomorrow.
pub trait DetectionSink: Send + Sync {
    /// Takes one detection without blocking; `false` when it was dropped (and counted).
    fn submit(&self, d: Detection) -> bool;
}

/// Requests to the writer thread.
#[allow(
    clippy::large_enum_variant,
    reason = "Write is nearly every message; boxing it would add an allocation per detection"
)]
enum Command {
    Write(Detection),
    /// Commit everything queued so far, then answer.
    Flush(SyncSender<Result<(), StoreError>>),
    /// Apply retention now, then answer with the number of detections deleted.
    Retention(SyncSender<Result<u64, StoreError>>),
    /// Commit everything queued so far, answer, and stop.
    Stop(SyncSender<Result<(), StoreError>>),
}

struct Shared {
    path: PathBuf,
    metrics: Arc<Metrics>,
    writable: AtomicBool,
    committed: broadcast::Sender<Detection>,
    readers: Mutex<Vec<Connection>>,
}

struct Inner {
    shared: Arc<Shared>,
    commands: SyncSender<Command>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// A handle on an open store; clones share the same writer thread and connections.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

/// The writing end of a store: cheap to clone, never blocks. See [`DetectionWriter::submit`].
#[derive(Clone)]
pub struct DetectionWriter {
    commands: SyncSender<Command>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.shared.path)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for DetectionWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DetectionWriter")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the store at `cfg.path`, checks that it is specwatch's, of a schema
    /// this build understands and writable, applies retention once and starts the writer
    /// thread.
    pub fn open(cfg: &StoreConfig, metrics: Arc<Metrics>) -> Result<Store, StoreError> {
        let invalid = |field, message: &str| StoreError::InvalidConfig {
            path: cfg.path.clone(),
            field,
            message: message.to_owned(),
        };
        if cfg.batch_max == 0 {
            return Err(invalid("batch_max", "must be at least 1"));
        }
        if cfg.queue_capacity == 0 {
            return Err(invalid("queue_capacity", "must be at least 1"));
        }
        if cfg.flush_interval.is_zero() {
            return Err(invalid("flush_interval", "must be longer than 0"));
        }
        if cfg.retention_max_rows == Some(0) {
            return Err(invalid(
                "retention_max_rows",
                "must be at least 1 (leave it unset to keep every detection)",
            ));
        }
        if cfg.retention_max_age.is_some_and(|a| a.is_zero()) {
            return Err(invalid(
                "retention_max_age",
                "must be longer than 0 (leave it unset to keep detections of any age)",
            ));
        }

        let conn = schema::open_for_writing(&cfg.path)?;
        let rows = schema::count_rows(&conn, &cfg.path)?;
        metrics
            .store_rows
            .set(i64::try_from(rows).unwrap_or(i64::MAX));
        let reader = schema::open_for_reading(&cfg.path)?;

        let (committed, _) = broadcast::channel(SUBSCRIBER_CAPACITY);
        let shared = Arc::new(Shared {
            path: cfg.path.clone(),
            metrics,
            writable: AtomicBool::new(true),
            committed,
            readers: Mutex::new(vec![reader]),
        });
        let (commands, queue) = mpsc::sync_channel(cfg.queue_capacity);
        let time_state = schema::time_state(&conn, &cfg.path)?;
        let mut state =
            writer::WriterState::new(conn, cfg.clone(), rows, time_state, Arc::clone(&shared));
        state.apply_retention()?;
        let thread = std::thread::Builder::new()
            .name("specwatch-store".into())
            .spawn(move || state.run(queue))
            .map_err(|e| StoreError::NotWritable {
                path: cfg.path.clone(),
                detail: format!("cannot start the writer thread: {e}"),
            })?;
        Ok(Store {
            inner: Arc::new(Inner {
                shared,
                commands,
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.shared.path
    }

    /// A writer for the flowgraph's sink.
    pub fn writer(&self) -> DetectionWriter {
        DetectionWriter {
            commands: self.inner.commands.clone(),
            shared: Arc::clone(&self.inner.shared),
        }
    }

    /// Committed detections matching `q`, in id order, one page at a time.
    pub fn query(&self, q: &DetectionQuery) -> Result<DetectionPage, StoreError> {
        let shared = &self.inner.shared;
        let conn = {
            let mut pool = shared.readers.lock().unwrap_or_else(|p| p.into_inner());
            pool.pop()
        };
        let mut conn = match conn {
            Some(c) => c,
            None => schema::open_for_reading(&shared.path)?,
        };
        let result = query::run(&mut conn, &shared.path, q);
        shared
            .readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(conn);
        result
    }

    /// A receiver of every detection from now on, sent once its transaction has committed. A
    /// merged record is sent again, with the same id, each time it grows.
    pub fn subscribe(&self) -> broadcast::Receiver<Detection> {
        self.inner.shared.committed.subscribe()
    }

    /// Blocks until every detection submitted before the call is committed (or dropped).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.request(Command::Flush)?
    }

    /// Applies retention now (the writer also does so every [`RETENTION_PERIOD`]); returns the
    /// number of detections deleted.
    pub fn apply_retention(&self) -> Result<u64, StoreError> {
        self.request(Command::Retention)?
    }

    /// Runs `PRAGMA integrity_check` on the store's file.
    pub fn integrity_check(&self) -> Result<(), StoreError> {
        integrity_check(&self.inner.shared.path)
    }

    /// Commits everything submitted and stops the writer thread. Writers still held elsewhere
    /// drop what they submit afterwards (counted as `store_error`).
    pub fn close(self) -> Result<(), StoreError> {
        let result = self.request(Command::Stop).and_then(|r| r);
        let thread = self
            .inner
            .thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(thread) = thread
            && thread.join().is_err()
        {
            return Err(StoreError::WriterStopped {
                path: self.inner.shared.path.clone(),
            });
        }
        result
    }

    /// Whether the last write succeeded (and the writer is running).
    pub fn is_writable(&self) -> bool {
        self.inner.shared.writable.load(Ordering::Relaxed)
    }

    /// Sends a command that waits for the writer's answer. The send blocks while the queue is
    /// full: the caller asked to wait.
    fn request<T>(&self, make: impl FnOnce(SyncSender<T>) -> Command) -> Result<T, StoreError> {
        let stopped = || StoreError::WriterStopped {
            path: self.inner.shared.path.clone(),
        };
        let (reply, answer) = mpsc::sync_channel(1);
        self.inner
            .commands
            .send(make(reply))
            .map_err(|_| stopped())?;
        answer.recv().map_err(|_| stopped())
    }
}

impl DetectionWriter {
    /// Never blocks: queues `d` for the writer thread (batched transactions, merge,
    /// retention). A full queue drops the detection and counts it
    /// (`specwatch_detections_dropped_total{reason="store_backlog"}`); a closed store drops it
    /// as `store_error`. Returns whether it was queued.
    pub fn submit(&self, d: Detection) -> bool {
        match self.commands.try_send(Command::Write(d)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.shared
                    .metrics
                    .detections_dropped_total
                    .with_label_values(&["store_backlog"])
                    .inc();
                false
            }
            Err(TrySendError::Disconnected(_)) => {
                self.shared
                    .metrics
                    .detections_dropped_total
                    .with_label_values(&["store_error"])
                    .inc();
                false
            }
        }
    }
}

impl DetectionSink for DetectionWriter {
    fn submit(&self, d: Detection) -> bool {
        DetectionWriter::submit(self, d)
    }
}
