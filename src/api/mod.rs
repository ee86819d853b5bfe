//! The daemon's HTTP API (axum): detections, their live stream, metrics, health and status.
//!
//! | route | answer |
//! |---|---|
//! | `GET /detections` | `{"detections": [...], "next_cursor": n \| null}`; filters `since`, `until` (RFC 3339), `class`, `min_confidence`, `channel`, `model`; `limit` (1 to 10,000, default 100); `cursor` |
//! | `GET /detections/stream` | server-sent events: one `detection` event per committed detection; filters `class`, `min_confidence`, `channel`, `model` |
//! | `GET /metrics` | Prometheus text exposition |
//! | `GET /healthz` | 200 `ok` while the process runs |
//! | `GET /readyz` | 200 when the flowgraph runs, a model is loaded and the store is writable; else 503 with the reasons |
//! | `GET /status` | JSON: version, uptime, flowgraph, models, sources, store |
//!
//! A bad parameter is answered with 400 and `{"error": "...", "parameter": "name"}`; unknown
//! parameter names are rejected too. Detections are serialised with the field names of
//! [`Detection`](crate::store::Detection) plus `time`, the RFC 3339 form of `time_ns`, by both
//! routes; absent values are `null`. Among them the bearings, in degrees: `azimuth_deg` /
//! `elevation_deg` (the station's: the model's when it gives angles, else the array
//! estimator's), `model_azimuth_deg` / `model_elevation_deg` (the model's own angle outputs) and
//! `doa_azimuth_deg` / `doa_elevation_deg` / `doa_method` (the array estimator of `[model.doa]`,
//! e.g. `music`), so a client sees where the two estimators disagree.
//! Server errors say what failed without the internals (the log has those).

mod detections;
mod health;
pub mod params;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use tokio::sync::watch;

use crate::store::Store;
use crate::telemetry::{Metrics, StatusBoard};

/// The address the daemon listens on unless configured otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9930";

/// What the routes read.
#[derive(Clone)]
pub struct ApiState {
    /// The detection store.
    pub store: Store,
    /// The daemon's metrics.
    pub metrics: Arc<Metrics>,
    /// The daemon's status board.
    pub status: Arc<StatusBoard>,
}

/// Tells long-lived responses (event streams) that the server is shutting down, so that they
/// end and graceful shutdown can finish.
#[derive(Clone)]
pub(crate) struct ShutdownSignal(watch::Receiver<bool>);

impl ShutdownSignal {
    /// Resolves once shutdown has begun (at once if it already has).
    pub(crate) async fn wait(mut self) {
        // An error means the sender is gone, which happens only once the server has stopped.
        let _stopped = self.0.wait_for(|stopping| *stopping).await;
    }
}

/// The API's routes over `state`. Without [`serve`], event streams last until the client goes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/detections", get(detections::list))
        .route("/detections/stream", get(detections::stream))
        .route("/metrics", get(health::metrics))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/status", get(health::status))
        .fallback(not_found)
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` resolves, then stops accepting connections,
/// ends open event streams and waits for in-flight requests to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop, stopping) = watch::channel(false);
    let app = router(state).layer(axum::Extension(ShutdownSignal(stopping)));
    let local = listener.local_addr().ok();
    tracing::info!(
        "HTTP API listening on {}",
        local.map_or_else(|| "?".to_owned(), |a| a.to_string())
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("HTTP API shutting down");
            // Receivers may all be gone already (no stream open); nothing to tell then.
            let _no_streams = stop.send(true);
        })
        .await
}

/// A JSON error answer: `{"error": ..., "parameter": ...}` (the latter only for 400s about a
/// parameter).
#[derive(Debug, Serialize)]
pub(crate) struct ApiError {
    #[serde(skip)]
    status: StatusCode,
    error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameter: Option<String>,
}

impl ApiError {
    pub(crate) fn bad_parameter(parameter: impl Into<String>, message: impl Into<String>) -> Self {
        let parameter = parameter.into();
        ApiError {
            status: StatusCode::BAD_REQUEST,
            error: format!("{parameter}: {}", message.into()),
            parameter: Some(parameter),
        }
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error: message.into(),
            parameter: None,
        }
    }
}

impl From<params::ParamError> for ApiError {
    fn from(e: params::ParamError) -> Self {
        ApiError::bad_parameter(e.parameter, e.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(&self)).into_response()
    }
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        error: format!(
            "no route {}; routes are /detections, /detections/stream, /metrics, /healthz, /readyz, /status",
            uri.path()
        ),
        parameter: None,
    }
}
