//! `GET /metrics`, `GET /healthz`, `GET /readyz` and `GET /status`.

use std::time::SystemTime;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::ApiState;
use super::params::format_time;
use crate::telemetry::{Metrics, ModelStatus, SourceStatus};

/// `GET /metrics`: the Prometheus text exposition.
pub(super) async fn metrics(State(state): State<ApiState>) -> Response {
    (
        [(header::CONTENT_TYPE, Metrics::CONTENT_TYPE)],
        state.metrics.render(),
    )
        .into_response()
}

/// `GET /healthz`: the process is up.
pub(super) async fn healthz() -> &'static str {
    "ok"
}

#[derive(Serialize)]
struct Readiness {
    ready: bool,
    reasons: Vec<&'static str>,
}

/// `GET /readyz`: 200 when the daemon does its job, else 503 and why not.
pub(super) async fn readyz(State(state): State<ApiState>) -> Response {
    let snapshot = state.status.snapshot();
    let mut reasons = Vec::new();
    if !snapshot.flowgraph_running {
        reasons.push("the flowgraph is not running");
    }
    if snapshot.models.is_empty() {
        reasons.push("no model is loaded");
    }
    if !state.store.is_writable() {
        reasons.push("the detection store is not writable");
    }
    let status = if reasons.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Readiness {
        ready: reasons.is_empty(),
        reasons,
    };
    (status, axum::Json(body)).into_response()
}

#[derive(Serialize)]
struct StoreStatus {
    path: String,
    writable: bool,
    rows: i64,
}

#[derive(Serialize)]
struct Status {
    version: &'static str,
    started_at: String,
    uptime_seconds: f64,
    flowgraph_running: bool,
    models: Vec<ModelStatus>,
    sources: Vec<SourceStatus>,
    store: StoreStatus,
}

/// `GET /status`: what the daemon runs.
pub(super) async fn status(State(state): State<ApiState>) -> Response {
    let snapshot = state.status.snapshot();
    let now_ns = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as f64)
        .unwrap_or(0.0);
    let body = Status {
        version: env!("CARGO_PKG_VERSION"),
        started_at: format_time(snapshot.started_at_ns),
        uptime_seconds: ((now_ns - snapshot.started_at_ns as f64) * 1e-9).max(0.0),
        flowgraph_running: snapshot.flowgraph_running,
        models: snapshot.models,
        sources: snapshot.sources,
        store: StoreStatus {
            path: state.store.path().display().to_string(),
            writable: state.store.is_writable(),
            rows: state.metrics.store_rows.get(),
        },
    };
    axum::Json(body).into_response()
}
