//! The writer thread: batches queued detections into transactions, merges runs of windows,
//! applies retention, and publishes what it committed.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant, SystemTime};

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use super::checkpoint::Checkpointer;
use super::schema::{MAX_TIME_LAG_KEY, classify, count_rows, optimize};
use super::{Command, Detection, RETENTION_PERIOD, Shared, StoreConfig, StoreError};

/// Attempts at committing one batch before its detections are dropped.
const COMMIT_ATTEMPTS: u32 = 3;

/// Pause before retrying a failed commit, times the attempt number.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Merge key: windows of one stream, channel and model form runs.
type RunKey = (String, u32, String);

/// The record a run of windows is growing, as last committed.
#[derive(Debug, Clone)]
struct OpenRun {
    record: Detection,
    /// Sum and count of the SNR estimates merged so far (weighted by windows).
    snr_sum: f64,
    snr_windows: u64,
}

impl OpenRun {
    fn start(record: Detection) -> OpenRun {
        let (snr_sum, snr_windows) = match record.snr_db {
            Some(snr) => (
                f64::from(snr) * f64::from(record.windows),
                u64::from(record.windows),
            ),
            None => (0.0, 0),
        };
        OpenRun {
            record,
            snr_sum,
            snr_windows,
        }
    }

    fn end(&self) -> u64 {
        self.record
            .sample_start
            .saturating_add(self.record.sample_count)
    }

    /// Whether `d` continues this run: same class, starting at or after the run's start and at
    /// most `max_gap` samples after its end.
    fn continues_with(&self, d: &Detection, max_gap: u64) -> bool {
        d.class == self.record.class
            && d.sample_start >= self.record.sample_start
            && d.sample_start <= self.end().saturating_add(max_gap)
    }

    /// Grows the run by `d`: the span covers both, confidence is the maximum (the most
    /// confident window's top-k and bearings are kept: the station's, the model's and the array
    /// estimator's with its method, all from that one window, so they stay comparable), SNR is
    /// the mean over windows, the channel list is the union and `observed_ns` is the latest.
    fn extend(&mut self, d: &Detection) {
        let end = self
            .end()
            .max(d.sample_start.saturating_add(d.sample_count));
        let r = &mut self.record;
        r.sample_count = end - r.sample_start;
        if d.confidence > r.confidence {
            r.confidence = d.confidence;
            r.top_k = d.top_k.clone();
            r.azimuth_deg = d.azimuth_deg;
            r.elevation_deg = d.elevation_deg;
            r.model_azimuth_deg = d.model_azimuth_deg;
            r.model_elevation_deg = d.model_elevation_deg;
            r.doa_azimuth_deg = d.doa_azimuth_deg;
            r.doa_elevation_deg = d.doa_elevation_deg;
            r.doa_method = d.doa_method.clone();
        }
        if let Some(snr) = d.snr_db {
            self.snr_sum += f64::from(snr) * f64::from(d.windows);
            self.snr_windows += u64::from(d.windows);
            r.snr_db = Some((self.snr_sum / self.snr_windows as f64) as f32);
        }
        for c in &d.channels {
            if !r.channels.contains(c) {
                r.channels.push(*c);
            }
        }
        if r.center_freq_hz.is_none() {
            r.center_freq_hz = d.center_freq_hz;
        }
        r.windows = r.windows.saturating_add(d.windows);
        r.observed_ns = r.observed_ns.max(d.observed_ns);
    }
}

/// Everything the writer thread owns.
pub(super) struct WriterState {
    conn: Connection,
    cfg: StoreConfig,
    rows: u64,
    shared: Arc<Shared>,
    open_runs: HashMap<RunKey, OpenRun>,
    time: TimeState,
    last_retention: Instant,
}

/// What the writer knows about detection times, to fill `time_high_ns` and
/// `store_meta.max_time_lag_ns`.
#[derive(Debug, Clone, Copy)]
struct TimeState {
    /// Newest `time_ns` inserted so far (the next row's `time_high_ns` is at least this).
    high: Option<i64>,
    /// Largest `time_high_ns - time_ns` inserted so far (mirrors `store_meta`).
    max_lag: i64,
}

impl TimeState {
    /// Inserts `d` as a new row, keeping `time_high_ns` and the maximum lag up to date.
    fn insert(&mut self, tx: &Transaction, d: &Detection) -> rusqlite::Result<Detection> {
        let high = self.high.map_or(d.time_ns, |h| h.max(d.time_ns));
        self.high = Some(high);
        let lag = high.saturating_sub(d.time_ns);
        if lag > self.max_lag {
            self.max_lag = lag;
            tx.prepare_cached("UPDATE store_meta SET value = ?2 WHERE key = ?1")?
                .execute(params![MAX_TIME_LAG_KEY, lag])?;
        }
        insert_record(tx, d, high)
    }
}

/// The writer's in-memory state that a failed transaction must roll back.
struct Rollback {
    open_runs: HashMap<RunKey, OpenRun>,
    time: TimeState,
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Why a detection cannot be stored, or `None` when it can. Optional measurements that are not
/// finite are cleared by [`sanitize`] instead.
fn unstorable(d: &Detection) -> Option<String> {
    if !d.confidence.is_finite() {
        return Some(format!("confidence is {}", d.confidence));
    }
    if let Some((class, p)) = d.top_k.iter().find(|(_, p)| !p.is_finite()) {
        return Some(format!("top_k probability of {class:?} is {p}"));
    }
    if i64::try_from(d.sample_start.saturating_add(d.sample_count)).is_err() {
        return Some(format!(
            "sample span {}+{} does not fit in 63 bits",
            d.sample_start, d.sample_count
        ));
    }
    None
}

/// Clears measurements that are not finite (SQLite would store NaN as NULL anyway) and the
/// array estimator's method when it left no angle, makes `channels` contain `channel`, and
/// counts a detection as at least one window.
fn sanitize(mut d: Detection) -> Detection {
    for v in [
        &mut d.snr_db,
        &mut d.azimuth_deg,
        &mut d.elevation_deg,
        &mut d.model_azimuth_deg,
        &mut d.model_elevation_deg,
        &mut d.doa_azimuth_deg,
        &mut d.doa_elevation_deg,
    ] {
        if v.is_some_and(|x| !x.is_finite()) {
            *v = None;
        }
    }
    if d.doa_azimuth_deg.is_none() && d.doa_elevation_deg.is_none() {
        d.doa_method = None;
    }
    if d.center_freq_hz.is_some_and(|x| !x.is_finite()) {
        d.center_freq_hz = None;
    }
    if !d.channels.contains(&d.channel) {
        d.channels.insert(0, d.channel);
    }
    d.windows = d.windows.max(1);
    d
}

fn json<T: serde::Serialize>(v: &T) -> String {
    // Vectors of numbers and (string, finite number) pairs always serialise.
    serde_json::to_string(v).unwrap_or_else(|_| "[]".to_owned())
}

impl WriterState {
    pub(super) fn new(
        conn: Connection,
        cfg: StoreConfig,
        rows: u64,
        time_state: (Option<i64>, i64),
        shared: Arc<Shared>,
    ) -> WriterState {
        WriterState {
            conn,
            cfg,
            rows,
            shared,
            open_runs: HashMap::new(),
            time: TimeState {
                high: time_state.0,
                max_lag: time_state.1,
            },
            last_retention: Instant::now(),
        }
    }

    fn rollback_point(&self) -> Rollback {
        Rollback {
            open_runs: self.open_runs.clone(),
            time: self.time,
        }
    }

    fn roll_back(&mut self, to: Rollback) {
        self.open_runs = to.open_runs;
        self.time = to.time;
    }

    /// The thread's loop: runs until [`Command::Stop`] or until every sender is gone.
    pub(super) fn run(mut self, queue: Receiver<Command>) {
        let mut checkpointer = self.start_checkpointer();
        let mut pending: Vec<Detection> = Vec::new();
        let mut deadline: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let retention_due = self.last_retention + RETENTION_PERIOD;
            let wake = deadline.map_or(retention_due, |d| d.min(retention_due));
            let next = if pending.is_empty() {
                queue.recv_timeout(wake.saturating_duration_since(now))
            } else {
                // Group commit: what is pending commits as soon as nothing more is queued, so a
                // detection waits only for the detections that arrived with it.
                match queue.try_recv() {
                    Ok(command) => Ok(command),
                    Err(TryRecvError::Empty) => {
                        let _counted = self.commit(&mut pending);
                        deadline = None;
                        continue;
                    }
                    Err(TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
                }
            };
            match next {
                Ok(Command::Write(d)) => {
                    if pending.is_empty() {
                        deadline = Some(Instant::now() + self.cfg.flush_interval);
                    }
                    pending.push(d);
                    if pending.len() >= self.cfg.batch_max {
                        // Errors are logged and counted inside; the loop keeps going.
                        let _counted = self.commit(&mut pending);
                        deadline = None;
                    }
                }
                Ok(Command::Flush(reply)) => {
                    let result = self.commit(&mut pending);
                    deadline = None;
                    let _asker_gone = reply.send(result);
                }
                Ok(Command::Retention(reply)) => {
                    let result = self
                        .commit(&mut pending)
                        .and_then(|()| self.apply_retention());
                    deadline = None;
                    let _asker_gone = reply.send(result);
                }
                Ok(Command::Stop(reply)) => {
                    let result = self.commit(&mut pending);
                    drop(checkpointer.take()); // the closing checkpoint runs alone
                    self.checkpoint();
                    let _asker_gone = reply.send(result);
                    break;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    let _counted = self.commit(&mut pending);
                    drop(checkpointer.take()); // the closing checkpoint runs alone
                    self.checkpoint();
                    break;
                }
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                let _counted = self.commit(&mut pending);
                deadline = None;
            }
            if now >= self.last_retention + RETENTION_PERIOD
                && let Err(e) = self.apply_retention()
            {
                tracing::error!("{e}");
            }
        }
        self.shared.writable.store(false, Ordering::Relaxed);
    }

    /// Starts the [`Checkpointer`] and turns SQLite's automatic checkpoints off on the
    /// writer's connection; when either fails, the automatic checkpoints stay on (logged).
    fn start_checkpointer(&self) -> Option<Checkpointer> {
        let path = &self.shared.path;
        let checkpointer = match Checkpointer::start(path) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(
                    "detection store {}: {e}; commits make SQLite's automatic checkpoints instead",
                    path.display()
                );
                return None;
            }
        };
        if let Err(e) = self.conn.pragma_update(None, "wal_autocheckpoint", 0) {
            tracing::warn!(
                "detection store {}: cannot turn automatic checkpoints off ({e}); both run",
                path.display()
            );
        }
        Some(checkpointer)
    }

    /// Moves the write-ahead log into the database file and empties it, so a stopped store is
    /// one file. Committed data is safe either way; a failure is only logged.
    fn checkpoint(&self) {
        if let Err(e) = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
            tracing::warn!(
                "detection store {}: cannot checkpoint the write-ahead log on close: {e}",
                self.shared.path.display()
            );
        }
    }

    /// Commits `pending` in one transaction (retried [`COMMIT_ATTEMPTS`] times), then publishes
    /// the committed records. When every attempt fails the detections are dropped and counted.
    fn commit(&mut self, pending: &mut Vec<Detection>) -> Result<(), StoreError> {
        if pending.is_empty() {
            return Ok(());
        }
        let metrics = Arc::clone(&self.shared.metrics);
        let mut batch = Vec::with_capacity(pending.len());
        for d in pending.drain(..) {
            match unstorable(&d) {
                None => batch.push(sanitize(d)),
                Some(why) => {
                    tracing::warn!(
                        "detection store {}: dropping a detection of {} on {}: {why}",
                        self.shared.path.display(),
                        d.model,
                        d.stream
                    );
                    metrics
                        .detections_dropped_total
                        .with_label_values(&["store_error"])
                        .inc();
                }
            }
        }
        if batch.is_empty() {
            return Ok(());
        }

        let mut attempt = 1;
        loop {
            let before = self.rollback_point();
            let started = Instant::now();
            match self.write_batch(&batch) {
                Ok((published, inserted)) => {
                    metrics
                        .store_commit_seconds
                        .observe(started.elapsed().as_secs_f64());
                    metrics.store_batch_size.observe(batch.len() as f64);
                    self.rows += inserted;
                    metrics
                        .store_rows
                        .set(i64::try_from(self.rows).unwrap_or(i64::MAX));
                    let now = now_ns();
                    for d in &batch {
                        if d.observed_ns > 0 && now >= d.observed_ns {
                            metrics
                                .detection_latency_seconds
                                .observe((now - d.observed_ns) as f64 * 1e-9);
                        }
                    }
                    self.shared.writable.store(true, Ordering::Relaxed);
                    for record in published {
                        // No receivers is normal: nobody is streaming.
                        let _no_receivers = self.shared.committed.send(record);
                    }
                    return Ok(());
                }
                Err(e) => {
                    self.roll_back(before);
                    metrics.store_write_errors_total.inc();
                    self.shared.writable.store(false, Ordering::Relaxed);
                    if attempt >= COMMIT_ATTEMPTS {
                        tracing::error!(
                            "{e}; dropping {} detections after {attempt} attempts",
                            batch.len()
                        );
                        metrics
                            .detections_dropped_total
                            .with_label_values(&["store_error"])
                            .inc_by(batch.len() as u64);
                        return Err(e);
                    }
                    tracing::warn!("{e}; retrying (attempt {attempt} of {COMMIT_ATTEMPTS})");
                    std::thread::sleep(RETRY_PAUSE * attempt);
                    attempt += 1;
                }
            }
        }
    }

    /// One transaction for the whole batch. Returns the records to publish (final state of each
    /// touched record, in commit order) and the number of rows inserted.
    fn write_batch(&mut self, batch: &[Detection]) -> Result<(Vec<Detection>, u64), StoreError> {
        let path = self.shared.path.clone();
        let failed = |e| classify(&path, "write detections", e);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        let mut published: Vec<Detection> = Vec::with_capacity(batch.len());
        let mut slot_of_id: HashMap<i64, usize> = HashMap::new();
        let mut inserted = 0;
        for d in batch {
            let record = if self.cfg.merge {
                let key = (d.stream.clone(), d.channel, d.model.clone());
                let merged = match self.open_runs.get_mut(&key) {
                    Some(run) if run.continues_with(d, self.cfg.merge_max_gap_samples) => {
                        let mut grown = run.clone();
                        grown.extend(d);
                        if update_record(&tx, &grown.record).map_err(failed)? {
                            *run = grown;
                            Some(run.record.clone())
                        } else {
                            // Retention deleted the record: start a new one.
                            None
                        }
                    }
                    _ => None,
                };
                match merged {
                    Some(record) => record,
                    None => {
                        let record = self.time.insert(&tx, d).map_err(failed)?;
                        inserted += 1;
                        self.open_runs.insert(key, OpenRun::start(record.clone()));
                        record
                    }
                }
            } else {
                inserted += 1;
                self.time.insert(&tx, d).map_err(failed)?
            };
            match slot_of_id.get(&record.id) {
                Some(&slot) => published[slot] = record,
                None => {
                    slot_of_id.insert(record.id, published.len());
                    published.push(record);
                }
            }
        }
        tx.commit().map_err(failed)?;
        Ok((published, inserted))
    }

    /// Deletes detections observed longer ago than `retention_max_age`, then the oldest beyond
    /// `retention_max_rows`, in one transaction. Returns how many were deleted.
    /// Afterwards the planner's statistics are refreshed where stale (also when no retention is
    /// configured: this is the writer's periodic upkeep).
    pub(super) fn apply_retention(&mut self) -> Result<u64, StoreError> {
        self.last_retention = Instant::now();
        if self.cfg.retention_max_age.is_none() && self.cfg.retention_max_rows.is_none() {
            optimize(&self.conn, &self.shared.path)?;
            return Ok(0);
        }
        let path = self.shared.path.clone();
        let failed = |e| classify(&path, "apply retention", e);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        let mut deleted = 0u64;
        if let Some(age) = self.cfg.retention_max_age {
            let cutoff = now_ns().saturating_sub(i64::try_from(age.as_nanos()).unwrap_or(i64::MAX));
            tx.execute(
                "DELETE FROM detection_channels WHERE detection_id IN \
                 (SELECT id FROM detections WHERE observed_ns < ?1)",
                params![cutoff],
            )
            .map_err(failed)?;
            deleted += tx
                .execute(
                    "DELETE FROM detections WHERE observed_ns < ?1",
                    params![cutoff],
                )
                .map_err(failed)? as u64;
        }
        if let Some(max_rows) = self.cfg.retention_max_rows {
            let rows: i64 = tx
                .query_row("SELECT count(*) FROM detections", [], |r| r.get(0))
                .map_err(failed)?;
            let excess = u64::try_from(rows).unwrap_or(0).saturating_sub(max_rows);
            if excess > 0 {
                let boundary: Option<i64> = tx
                    .query_row(
                        "SELECT id FROM detections ORDER BY id LIMIT 1 OFFSET ?1",
                        params![i64::try_from(excess - 1).unwrap_or(i64::MAX)],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(failed)?;
                if let Some(boundary) = boundary {
                    tx.execute(
                        "DELETE FROM detection_channels WHERE detection_id <= ?1",
                        params![boundary],
                    )
                    .map_err(failed)?;
                    deleted += tx
                        .execute("DELETE FROM detections WHERE id <= ?1", params![boundary])
                        .map_err(failed)? as u64;
                }
            }
        }
        tx.commit().map_err(failed)?;
        self.rows = count_rows(&self.conn, &self.shared.path)?;
        optimize(&self.conn, &self.shared.path)?;
        self.shared
            .metrics
            .store_rows
            .set(i64::try_from(self.rows).unwrap_or(i64::MAX));
        if deleted > 0 {
            tracing::debug!(
                "detection store {}: retention deleted {deleted} detections",
                self.shared.path.display()
            );
        }
        Ok(deleted)
    }
}

/// Inserts `d` and its channels; returns it with its new id.
fn insert_record(
    tx: &Transaction,
    d: &Detection,
    time_high_ns: i64,
) -> rusqlite::Result<Detection> {
    // `unstorable` has checked that the span fits in an i64.
    let sample_start = d.sample_start as i64;
    let sample_count = d.sample_count as i64;
    let mut stmt = tx.prepare_cached(
        "INSERT INTO detections (time_ns, stream, sample_start, sample_count, channel, channels, \
         center_freq_hz, model, model_version, class, confidence, top_k, snr_db, azimuth_deg, \
         elevation_deg, windows, observed_ns, time_high_ns, model_azimuth_deg, \
         model_elevation_deg, doa_azimuth_deg, doa_elevation_deg, doa_method) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, \
         ?19, ?20, ?21, ?22, ?23)",
    )?;
    stmt.execute(params![
        d.time_ns,
        d.stream,
        sample_start,
        sample_count,
        d.channel,
        json(&d.channels),
        d.center_freq_hz,
        d.model,
        d.model_version,
        d.class,
        f64::from(d.confidence),
        json(&d.top_k),
        d.snr_db.map(f64::from),
        d.azimuth_deg.map(f64::from),
        d.elevation_deg.map(f64::from),
        d.windows,
        d.observed_ns,
        time_high_ns,
        d.model_azimuth_deg.map(f64::from),
        d.model_elevation_deg.map(f64::from),
        d.doa_azimuth_deg.map(f64::from),
        d.doa_elevation_deg.map(f64::from),
        d.doa_method,
    ])?;
    let id = tx.last_insert_rowid();
    insert_channels(tx, id, &d.channels)?;
    Ok(Detection { id, ..d.clone() })
}

fn insert_channels(tx: &Transaction, id: i64, channels: &[u32]) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT OR IGNORE INTO detection_channels (detection_id, channel) VALUES (?1, ?2)",
    )?;
    for c in channels {
        stmt.execute(params![id, c])?;
    }
    Ok(())
}

/// Writes the grown run `r` over its row; `false` when the row no longer exists.
fn update_record(tx: &Transaction, r: &Detection) -> rusqlite::Result<bool> {
    let mut stmt = tx.prepare_cached(
        "UPDATE detections SET sample_count = ?2, channels = ?3, center_freq_hz = ?4, \
         confidence = ?5, top_k = ?6, snr_db = ?7, azimuth_deg = ?8, elevation_deg = ?9, \
         windows = ?10, observed_ns = ?11, model_azimuth_deg = ?12, model_elevation_deg = ?13, \
         doa_azimuth_deg = ?14, doa_elevation_deg = ?15, doa_method = ?16 WHERE id = ?1",
    )?;
    let changed = stmt.execute(params![
        r.id,
        r.sample_count as i64,
        json(&r.channels),
        r.center_freq_hz,
        f64::from(r.confidence),
        json(&r.top_k),
        r.snr_db.map(f64::from),
        r.azimuth_deg.map(f64::from),
        r.elevation_deg.map(f64::from),
        r.windows,
        r.observed_ns,
        r.model_azimuth_deg.map(f64::from),
        r.model_elevation_deg.map(f64::from),
        r.doa_azimuth_deg.map(f64::from),
        r.doa_elevation_deg.map(f64::from),
        r.doa_method,
    ])?;
    if changed == 0 {
        return Ok(false);
    }
    insert_channels(tx, r.id, &r.channels)?;
    Ok(true)
}
