//! Telemetry: the Prometheus metrics the daemon exports, its log set-up and the status board.
//!
//! - [`Metrics`]: every `specwatch_*` metric, in the daemon's own registry, rendered as the
//!   Prometheus text exposition by [`Metrics::render`] for `GET /metrics`.
//! - [`init_logging`]: `tracing` to stderr, filtered by `SPECWATCH_LOG` (or `RUST_LOG`), plain
//!   lines without colour when stderr is not a terminal so journald stores them cleanly.
//! - [`StatusBoard`]: what the daemon is running (flowgraph, models, sources), read by
//!   `GET /status` and `GET /readyz`.

mod logging;
mod metrics;
mod status;

pub use logging::init_logging;
pub use metrics::{
    BEARING_ESTIMATORS, DETECTION_DROP_REASONS, DISAGREEMENT_BUCKETS_DEG, Metrics,
    WINDOW_DROP_REASONS, azimuth_disagreement_deg,
};
pub use status::{ModelStatus, SourceStatus, StatusBoard, StatusSnapshot};
