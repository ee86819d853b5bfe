//! The status board: what the daemon runs right now, for `GET /status` and `GET /readyz`.

use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use serde::Serialize;

/// A loaded model, as `GET /status` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelStatus {
    /// Model card name.
    pub name: String,
    /// Model card version.
    pub version: String,
    /// Task from the card (`amc`, `aoa`, `amc+aoa`).
    pub task: String,
    /// Execution provider the session runs on (`cuda`, `cpu`).
    pub execution_provider: String,
}

/// A configured IQ source, as `GET /status` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceStatus {
    /// Source name from the config (also the detections' `stream`).
    pub name: String,
    /// Source kind (`uhd`, `soapy`, `replay`, `synthetic`).
    pub kind: String,
    /// Sample rate in Hz.
    pub sample_rate_hz: f64,
    /// Number of channels it delivers.
    pub channels: u32,
}

/// A copy of the board at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusSnapshot {
    /// Whether the flowgraph is running.
    pub flowgraph_running: bool,
    /// Models loaded, in load order.
    pub models: Vec<ModelStatus>,
    /// Sources configured, in config order.
    pub sources: Vec<SourceStatus>,
    /// When the board was made (daemon start), UTC nanoseconds since the Unix epoch.
    pub started_at_ns: i64,
}

/// Shared, interior-mutable status of the daemon. The daemon updates it as it starts and stops
/// parts; the API reads snapshots.
#[derive(Debug)]
pub struct StatusBoard {
    state: RwLock<StatusSnapshot>,
}

impl StatusBoard {
    /// A board with nothing running, stamped with the current time as the start time.
    pub fn new() -> Arc<StatusBoard> {
        let started_at_ns = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Arc::new(StatusBoard {
            state: RwLock::new(StatusSnapshot {
                flowgraph_running: false,
                models: Vec::new(),
                sources: Vec::new(),
                started_at_ns,
            }),
        })
    }

    /// Records whether the flowgraph is running.
    pub fn set_flowgraph_running(&self, running: bool) {
        self.write().flowgraph_running = running;
    }

    /// Replaces the list of loaded models.
    pub fn set_models(&self, models: Vec<ModelStatus>) {
        self.write().models = models;
    }

    /// Adds one loaded model.
    pub fn add_model(&self, model: ModelStatus) {
        self.write().models.push(model);
    }

    /// Replaces the list of sources.
    pub fn set_sources(&self, sources: Vec<SourceStatus>) {
        self.write().sources = sources;
    }

    /// Whether the flowgraph is running.
    pub fn flowgraph_running(&self) -> bool {
        self.read().flowgraph_running
    }

    /// A copy of the whole board.
    pub fn snapshot(&self) -> StatusSnapshot {
        self.read().clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, StatusSnapshot> {
        // The board holds plain data that no writer leaves half-updated, so a panic elsewhere
        // while the lock was held cannot have broken it.
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, StatusSnapshot> {
        self.state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
