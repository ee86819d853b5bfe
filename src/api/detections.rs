//! `GET /detections` (pages of stored detections) and `GET /detections/stream` (server-sent
//! events of committed detections).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use axum::Extension;
use axum::extract::{RawQuery, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::Serialize;
use tokio::sync::broadcast::{self, error::RecvError};

use super::params::{format_time, parse_list_query, parse_stream_query};
use super::{ApiError, ApiState, ShutdownSignal};
use crate::store::{Detection, DetectionQuery, StoreError};

/// How often an idle event stream sends a comment, so proxies and clients keep it open.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(15);

/// A detection as the API writes it: the struct's fields plus `time` (RFC 3339).
#[derive(Serialize)]
struct DetectionJson<'a> {
    time: String,
    #[serde(flatten)]
    detection: &'a Detection,
}

impl<'a> From<&'a Detection> for DetectionJson<'a> {
    fn from(detection: &'a Detection) -> Self {
        DetectionJson {
            time: format_time(detection.time_ns),
            detection,
        }
    }
}

#[derive(Serialize)]
struct PageJson<'a> {
    detections: Vec<DetectionJson<'a>>,
    next_cursor: Option<i64>,
}

/// `GET /detections`.
pub(super) async fn list(
    State(state): State<ApiState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let query = parse_list_query(raw.as_deref())?;
    let store = state.store.clone();
    let page = tokio::task::spawn_blocking(move || store.query(&query))
        .await
        .map_err(|e| {
            tracing::error!("GET /detections: the query task failed: {e}");
            ApiError::internal("the detection query failed")
        })?
        .map_err(|e| match e {
            StoreError::InvalidQuery { parameter, message } => {
                ApiError::bad_parameter(parameter, message)
            }
            other => {
                tracing::error!("GET /detections: {other}");
                ApiError::internal("the detection store could not be read")
            }
        })?;
    let body = PageJson {
        detections: page.detections.iter().map(DetectionJson::from).collect(),
        next_cursor: page.next_cursor,
    };
    Ok(axum::Json(body).into_response())
}

/// Whether `d` passes the stream's filters.
fn matches(filter: &DetectionQuery, d: &Detection) -> bool {
    filter.class.as_ref().is_none_or(|c| *c == d.class)
        && filter.model.as_ref().is_none_or(|m| *m == d.model)
        && filter.min_confidence.is_none_or(|c| d.confidence >= c)
        && filter
            .channel
            .is_none_or(|c| d.channel == c || d.channels.contains(&c))
}

type StopFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

struct StreamState {
    committed: broadcast::Receiver<Detection>,
    filter: DetectionQuery,
    stop: StopFuture,
}

/// The next event for a subscriber: a matching detection, a `lagged` notice when it fell
/// behind, or the end (shutdown, store gone).
async fn next_event(mut s: StreamState) -> Option<(Result<Event, Infallible>, StreamState)> {
    loop {
        let received = tokio::select! {
            () = &mut s.stop => return None,
            r = s.committed.recv() => r,
        };
        match received {
            Ok(d) if matches(&s.filter, &d) => {
                let event = Event::default()
                    .event("detection")
                    .id(d.id.to_string())
                    .json_data(DetectionJson::from(&d));
                match event {
                    Ok(event) => return Some((Ok(event), s)),
                    Err(e) => {
                        tracing::warn!("detection stream: cannot encode detection {}: {e}", d.id)
                    }
                }
            }
            Ok(_) => {}
            Err(RecvError::Lagged(missed)) => {
                let event = Event::default().event("lagged").data(format!(
                    "{missed} detections were skipped because this client read too slowly"
                ));
                return Some((Ok(event), s));
            }
            Err(RecvError::Closed) => return None,
        }
    }
}

/// `GET /detections/stream`.
pub(super) async fn stream(
    State(state): State<ApiState>,
    RawQuery(raw): RawQuery,
    shutdown: Option<Extension<ShutdownSignal>>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let filter = parse_stream_query(raw.as_deref())?;
    let stop: StopFuture = match shutdown {
        Some(Extension(signal)) => Box::pin(signal.wait()),
        None => Box::pin(std::future::pending()),
    };
    let start = StreamState {
        committed: state.store.subscribe(),
        filter,
        stop,
    };
    let events = futures_util::stream::unfold(start, next_event);
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE_INTERVAL)))
}
