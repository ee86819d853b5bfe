//! The HTTP API over real HTTP on an ephemeral port, backed by a real store on disk.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use specwatch::api::{ApiState, serve};
use specwatch::store::{DetectionQuery, Store, StoreConfig};
use specwatch::telemetry::{Metrics, ModelStatus, SourceStatus, StatusBoard};

use crate::common::prometheus::{assert_promtool_accepts, tool};
use crate::common::scratch;
use crate::store::{T0, detection};

/// A server on 127.0.0.1:0 in its own runtime thread.
struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<std::io::Result<()>>>,
    state: ApiState,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = scratch();
        let cfg = StoreConfig {
            flush_interval: Duration::from_millis(10),
            ..StoreConfig::new(dir.path().join("api.sqlite"))
        };
        let metrics = Metrics::new();
        let store = Store::open(&cfg, Arc::clone(&metrics)).expect("open the store");
        let state = ApiState {
            store,
            metrics,
            status: StatusBoard::new(),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = mpsc::channel();
        let served = state.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                addr_tx
                    .send(listener.local_addr()?)
                    .expect("report the address");
                serve(listener, served, async {
                    // A dropped sender also means stop.
                    let _either = stopped.await;
                })
                .await
            })
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the server binds");
        Server {
            addr,
            stop: Some(stop),
            thread: Some(thread),
            state,
            _dir: dir,
        }
    }

    fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.addr, path_and_query)
    }

    /// Signals shutdown and waits for `serve` to return; returns how long that took.
    fn stop(&mut self) -> Duration {
        let started = Instant::now();
        if let Some(stop) = self.stop.take() {
            let _already_stopped = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread
                .join()
                .expect("server thread")
                .expect("serve returns Ok");
        }
        started.elapsed()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop();
        }
    }
}

fn agent(timeout: Option<Duration>) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(timeout)
        .build()
        .into()
}

/// GET `url`: (status, content type, body).
fn get(url: &str) -> (u16, String, String) {
    let mut resp = agent(Some(Duration::from_secs(10)))
        .get(url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = resp.body_mut().read_to_string().expect("read the body");
    (status, content_type, body)
}

fn get_json(url: &str) -> (u16, Value) {
    let (status, content_type, body) = get(url);
    assert!(
        content_type.starts_with("application/json"),
        "{url}: {content_type}"
    );
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: {e}: {body}"));
    (status, v)
}

fn fill(server: &Server, n: u64) {
    let w = server.state.store.writer();
    for i in 0..n {
        let class = ["bpsk", "qpsk", "fm"][(i % 3) as usize];
        assert!(w.submit(detection(i, class, (i % 2) as u32)));
    }
    server.state.store.flush().expect("flush");
}

#[test]
fn detections_are_served_as_json_pages() {
    let server = Server::start();
    fill(&server, 30);
    let (status, page) = get_json(&server.url("/detections?class=qpsk&limit=4"));
    assert_eq!(status, 200);
    let ds = page["detections"].as_array().expect("detections array");
    assert_eq!(ds.len(), 4);
    let first = &ds[0];
    assert_eq!(first["class"], "qpsk");
    assert_eq!(first["time_ns"], T0 + 1_000_000);
    assert_eq!(first["time"], "2024-05-01T12:00:00.001Z");
    assert_eq!(first["stream"], "rx0");
    assert_eq!(first["sample_start"], 128);
    assert_eq!(first["channels"], serde_json::json!([1]));
    assert_eq!(first["top_k"][0][0], "qpsk");
    assert_eq!(first["windows"], 1);
    for field in [
        "id",
        "sample_count",
        "channel",
        "center_freq_hz",
        "model",
        "model_version",
        "confidence",
        "snr_db",
        "azimuth_deg",
        "elevation_deg",
        "observed_ns",
    ] {
        assert!(!first[field].is_null(), "field {field} is present");
    }
    // Both bearings, side by side: the station's (here the model's), the model's own and the
    // array estimator's with its method.
    assert_eq!(first["azimuth_deg"], -45.5);
    assert_eq!(first["elevation_deg"], 3.25);
    assert_eq!(first["model_azimuth_deg"], -45.5);
    assert_eq!(first["model_elevation_deg"], 3.25);
    assert_eq!(first["doa_azimuth_deg"], -38.75);
    assert_eq!(first["doa_elevation_deg"], 2.5);
    assert_eq!(first["doa_method"], "music");
    assert_eq!(page["next_cursor"], ds[3]["id"]);

    // Following the cursor visits all ten qpsk detections once, then null.
    let mut seen = BTreeSet::new();
    let mut cursor = None::<i64>;
    loop {
        let url = match cursor {
            Some(c) => server.url(&format!("/detections?class=qpsk&limit=4&cursor={c}")),
            None => server.url("/detections?class=qpsk&limit=4"),
        };
        let (_, page) = get_json(&url);
        for d in page["detections"].as_array().expect("array") {
            assert!(seen.insert(d["id"].as_i64().expect("id")));
        }
        match page["next_cursor"].as_i64() {
            Some(c) => cursor = Some(c),
            None => {
                assert!(page["next_cursor"].is_null());
                break;
            }
        }
    }
    assert_eq!(seen.len(), 10);

    // Time filters in RFC 3339, with an offset (a '+' written %2B).
    let (_, page) = get_json(&server.url(
        "/detections?since=2024-05-01T14:00:00.010%2B02:00&until=2024-05-01T12:00:00.020Z&channel=0",
    ));
    let got: Vec<i64> = page["detections"]
        .as_array()
        .expect("array")
        .iter()
        .map(|d| d["time_ns"].as_i64().expect("time_ns"))
        .collect();
    let expected: Vec<i64> = (10..20)
        .filter(|i| i % 2 == 0)
        .map(|i| T0 + i * 1_000_000)
        .collect();
    assert_eq!(got, expected);

    let (_, page) =
        get_json(&server.url("/detections?model=amc-cnn&min_confidence=0.7&limit=10000"));
    let n = page["detections"].as_array().expect("array").len();
    let direct = server
        .state
        .store
        .query(&DetectionQuery {
            min_confidence: Some(0.7),
            limit: 10_000,
            ..Default::default()
        })
        .expect("query");
    assert_eq!(n, direct.detections.len());
    assert!(n > 0 && n < 30, "the filter selects some: {n}");
}

#[test]
fn bad_parameters_are_answered_400_naming_the_parameter() {
    let server = Server::start();
    let cases = [
        ("since=yesterday", "since"),
        ("until=2024-13-01T00:00:00Z", "until"),
        ("since=2024-05-01T12:00:00+02:00", "since"),
        (
            "since=2024-05-02T00:00:00Z&until=2024-05-01T00:00:00Z",
            "until",
        ),
        ("limit=0", "limit"),
        ("limit=10001", "limit"),
        ("limit=ten", "limit"),
        ("min_confidence=1.5", "min_confidence"),
        ("min_confidence=-0.1", "min_confidence"),
        ("min_confidence=NaN", "min_confidence"),
        ("channel=-1", "channel"),
        ("channel=x", "channel"),
        ("cursor=abc", "cursor"),
        ("cursor=-5", "cursor"),
        ("class=", "class"),
        ("model=", "model"),
        ("class=bpsk&class=qpsk", "class"),
        ("limt=10", "limt"),
        ("class=bpsk&format=csv", "format"),
    ];
    for (query, parameter) in cases {
        let (status, body) = get_json(&server.url(&format!("/detections?{query}")));
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["parameter"], parameter, "{query}: {body}");
        let error = body["error"].as_str().expect("error text");
        assert!(error.starts_with(parameter), "{query}: {error}");
    }
    let (_, body) = get_json(&server.url("/detections?since=2024-05-01T12:00:00+02:00"));
    assert!(
        body["error"].as_str().unwrap_or("").contains("%2B"),
        "{body}"
    );
    let (_, body) = get_json(&server.url("/detections?limt=10"));
    assert!(
        body["error"].as_str().unwrap_or("").contains("limit"),
        "lists the accepted names: {body}"
    );

    let (status, body) = get_json(&server.url("/detections/stream?limit=5"));
    assert_eq!(status, 400);
    assert_eq!(body["parameter"], "limit");

    let (status, body) = get_json(&server.url("/nothing-here"));
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap_or("").contains("/detections"));
}

#[test]
fn health_readiness_and_status() {
    let server = Server::start();
    let (status, _, body) = get(&server.url("/healthz"));
    assert_eq!((status, body.as_str()), (200, "ok"));

    let (status, body) = get_json(&server.url("/readyz"));
    assert_eq!(status, 503);
    assert_eq!(body["ready"], false);
    let reasons = body["reasons"].to_string();
    assert!(
        reasons.contains("flowgraph") && reasons.contains("model"),
        "{reasons}"
    );
    assert!(
        !reasons.contains("store"),
        "the store is writable: {reasons}"
    );

    let board = &server.state.status;
    board.set_flowgraph_running(true);
    assert_eq!(get_json(&server.url("/readyz")).0, 503, "no model yet");
    board.add_model(ModelStatus {
        name: "amc-cnn".into(),
        version: "1.0.0".into(),
        task: "amc".into(),
        execution_provider: "cpu".into(),
    });
    board.set_sources(vec![SourceStatus {
        name: "rx0".into(),
        kind: "replay".into(),
        sample_rate_hz: 1e6,
        channels: 2,
    }]);
    let (status, body) = get_json(&server.url("/readyz"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ready"], true);

    fill(&server, 5);
    let (status, body) = get_json(&server.url("/status"));
    assert_eq!(status, 200);
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(body["flowgraph_running"], true);
    assert_eq!(body["models"][0]["name"], "amc-cnn");
    assert_eq!(body["models"][0]["execution_provider"], "cpu");
    assert_eq!(body["sources"][0]["channels"], 2);
    assert_eq!(body["store"]["rows"], 5);
    assert_eq!(body["store"]["writable"], true);
    assert!(body["uptime_seconds"].as_f64().expect("uptime") >= 0.0);
    assert!(
        body["started_at"]
            .as_str()
            .expect("started_at")
            .ends_with('Z')
    );

    board.set_flowgraph_running(false);
    assert_eq!(get_json(&server.url("/readyz")).0, 503);
}

#[test]
fn metrics_are_exposed_in_the_prometheus_text_format() {
    let server = Server::start();
    let m = &server.state.metrics;
    // Touch every labelled metric so each family is in the exposition.
    m.samples_in_total.with_label_values(&["rx0"]).inc_by(4096);
    m.windows_framed_total
        .with_label_values(&["rx0"])
        .inc_by(32);
    m.windows_gate_rejected_total
        .with_label_values(&["rx0"])
        .inc();
    m.windows_classified_total
        .with_label_values(&["amc-cnn"])
        .inc_by(31);
    m.windows_dropped_total
        .with_label_values(&["amc-cnn", "queue_full"])
        .inc();
    m.inference_latency_seconds
        .with_label_values(&["amc-cnn"])
        .observe(0.003);
    m.inference_batch_size
        .with_label_values(&["amc-cnn"])
        .observe(8.0);
    m.device_overflows_total.with_label_values(&["rx0"]).inc();
    m.stream_errors_total.with_label_values(&["rx0"]).inc();
    m.source_up.with_label_values(&["rx0"]).set(1);
    m.models_loaded.set(1);
    m.flowgraph_running.set(1);
    let d = detection(0, "bpsk", 0);
    m.record_detection(&d);
    m.observe_bearing_disagreement("amc-cnn", -45.5, -38.75);
    fill(&server, 3);

    let (status, content_type, body) = get(&server.url("/metrics"));
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    for name in [
        "specwatch_build_info",
        "specwatch_samples_in_total",
        "specwatch_windows_framed_total",
        "specwatch_windows_gate_rejected_total",
        "specwatch_windows_classified_total",
        "specwatch_windows_dropped_total",
        "specwatch_detections_total",
        "specwatch_detections_dropped_total",
        "specwatch_detection_snr_db",
        "specwatch_detection_azimuth_degrees",
        "specwatch_bearing_disagreement_degrees",
        "specwatch_inference_latency_seconds",
        "specwatch_inference_batch_size",
        "specwatch_detection_latency_seconds",
        "specwatch_device_overflows_total",
        "specwatch_stream_errors_total",
        "specwatch_store_write_errors_total",
        "specwatch_store_rows",
        "specwatch_source_up",
        "specwatch_models_loaded",
        "specwatch_flowgraph_running",
    ] {
        assert!(body.contains(&format!("# TYPE {name} ")), "{name} missing");
    }
    assert!(body.contains("specwatch_store_rows 3"));
    assert!(body.contains("specwatch_detections_total{class=\"bpsk\",model=\"amc-cnn\"} 1"));
    assert!(body.contains("specwatch_detection_snr_db_bucket{model=\"amc-cnn\",le=\"-20\"} 0"));
    // The fixture's model azimuth is -45.5°: above the -60° bucket's bound, inside the -45°
    // one; its MUSIC azimuth, -38.75°, is in the -30° bucket.
    let azimuth =
        "specwatch_detection_azimuth_degrees_bucket{estimator=\"model\",model=\"amc-cnn\"";
    assert!(body.contains(&format!("{azimuth},le=\"-60\"}} 0")));
    assert!(body.contains(&format!("{azimuth},le=\"-45\"}} 1")));
    let music = "specwatch_detection_azimuth_degrees_bucket{estimator=\"music\",model=\"amc-cnn\"";
    assert!(body.contains(&format!("{music},le=\"-45\"}} 0")));
    assert!(body.contains(&format!("{music},le=\"-30\"}} 1")));
    // They disagree by 6.75°.
    let disagreement = "specwatch_bearing_disagreement_degrees_bucket{model=\"amc-cnn\"";
    assert!(body.contains(&format!("{disagreement},le=\"5\"}} 0")));
    assert!(body.contains(&format!("{disagreement},le=\"10\"}} 1")));
    assert!(
        body.contains("specwatch_inference_batch_size_bucket{model=\"amc-cnn\",le=\"1024\"} 1")
    );
    assert!(body.contains("specwatch_detection_latency_seconds_count 3"));

    let Some(promtool) = tool("promtool") else {
        return;
    };
    assert_promtool_accepts(&promtool, &body);
}

/// Reads server-sent events from `url` on a thread: (event, id, data) per event.
fn subscribe(url: &str) -> (mpsc::Receiver<(String, String, String)>, JoinHandle<()>) {
    let mut resp = agent(None).get(url).call().expect("open the event stream");
    assert_eq!(resp.status().as_u16(), 200);
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut body = BufReader::new(resp.body_mut().as_reader());
        let (mut event, mut id, mut data) = (String::new(), String::new(), String::new());
        let mut line = String::new();
        loop {
            line.clear();
            match body.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if !event.is_empty() || !data.is_empty() {
                    let done = (
                        std::mem::take(&mut event),
                        std::mem::take(&mut id),
                        std::mem::take(&mut data),
                    );
                    if tx.send(done).is_err() {
                        return;
                    }
                }
            } else if let Some(v) = line.strip_prefix("event:") {
                event = v.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            }
        }
    });
    (rx, reader)
}

#[test]
fn the_event_stream_carries_committed_detections() {
    let mut server = Server::start();
    let (events, reader) = subscribe(&server.url("/detections/stream?class=bpsk"));
    fill(&server, 9);
    let committed: Vec<i64> = server
        .state
        .store
        .query(&DetectionQuery {
            class: Some("bpsk".into()),
            ..Default::default()
        })
        .expect("query")
        .detections
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(committed.len(), 3);
    let mut received = Vec::new();
    while received.len() < 3 {
        let (event, id, data) = events
            .recv_timeout(Duration::from_secs(10))
            .expect("a detection event within 10 s");
        assert_eq!(event, "detection");
        let d: Value = serde_json::from_str(&data).expect("JSON data");
        assert_eq!(d["class"], "bpsk", "the stream's filter applies");
        assert_eq!(
            (
                &d["model_azimuth_deg"],
                &d["doa_azimuth_deg"],
                &d["doa_method"]
            ),
            (
                &serde_json::json!(-45.5),
                &serde_json::json!(-38.75),
                &serde_json::json!("music")
            ),
            "events carry both bearings"
        );
        assert_eq!(d["id"].to_string(), id, "the event id is the detection id");
        assert!(
            d["time"]
                .as_str()
                .expect("time")
                .starts_with("2024-05-01T12:00:00")
        );
        received.push(d["id"].as_i64().expect("id"));
    }
    assert_eq!(
        received, committed,
        "every committed match, in commit order"
    );

    // Shutdown ends the open stream instead of waiting for the client.
    let took = server.stop();
    assert!(
        took < Duration::from_secs(5),
        "shutdown took {took:?} with a stream open"
    );
    reader.join().expect("reader thread");
    assert!(
        events.try_recv().is_err(),
        "nothing but the three bpsk detections"
    );
}
