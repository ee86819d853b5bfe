//! The checkpointer thread: copies committed pages from the write-ahead log into the database
//! file on a connection of its own, every [`CHECKPOINT_PERIOD`].
//!
//! SQLite's automatic checkpoint runs inside the `COMMIT` that takes the log past 1,000 pages,
//! on the committing connection, and a checkpoint `fsync`s the log and the database file. In a
//! probe of a 1 MS/s station's write pattern (260 commits/s of 30 rows, WAL, `synchronous=NORMAL`)
//! on a 2-core machine, about one commit in a hundred then took 5–18 ms instead of under 1 ms,
//! and every detection of that batch waited for the disk. A `PASSIVE`
//! checkpoint on another connection runs beside the writer without taking its lock, so the
//! writer turns automatic checkpoints off once this thread runs (and keeps them when it cannot
//! start). The log restarts from its beginning at the first write after a checkpoint that
//! copied every frame, so it stays near what one period writes.

use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// How often the log is copied into the database file.
pub(super) const CHECKPOINT_PERIOD: Duration = Duration::from_millis(500);

/// A running checkpointer; dropping it ends the thread and waits for it (a checkpoint under
/// way finishes first).
pub(super) struct Checkpointer {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens a connection to the store at `path` (already checked by the writer) and starts the
    /// thread. The error says what failed; the writer then keeps SQLite's automatic checkpoints.
    pub(super) fn start(path: &Path) -> Result<Checkpointer, String> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| format!("cannot open a connection for checkpoints: {e}"))?;
        let (stop, stopped) = mpsc::channel::<()>();
        let path = path.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("specwatch-ckpt".into())
            .spawn(move || run(conn, &path, stopped))
            .map_err(|e| format!("cannot start the checkpoint thread: {e}"))?;
        Ok(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        // Dropping the sender wakes the thread's wait with `Disconnected`.
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _panicked = thread.join();
        }
    }
}

fn run(conn: Connection, path: &Path, stopped: mpsc::Receiver<()>) {
    let mut failing = false;
    loop {
        match stopped.recv_timeout(CHECKPOINT_PERIOD) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        // Columns: busy (another checkpoint ran), frames in the log, frames copied.
        let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(0));
        match result {
            Ok(_) if failing => {
                tracing::info!("detection store {}: checkpoints work again", path.display());
                failing = false;
            }
            Ok(_) => {}
            Err(e) if !failing => {
                tracing::warn!(
                    "detection store {}: cannot copy the write-ahead log into the database file \
                     (retrying every {} ms; the log grows meanwhile): {e}",
                    path.display(),
                    CHECKPOINT_PERIOD.as_millis()
                );
                failing = true;
            }
            Err(_) => {}
        }
    }
}
