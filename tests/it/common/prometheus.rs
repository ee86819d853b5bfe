//! Test support for the monitoring side: a real Prometheus server, a small metrics endpoint,
//! the daemon's metric list (`deploy/metrics.md`), the Grafana dashboard's queries, and a PromQL
//! scanner that finds the metric names an expression uses.
//!
//! The server is Debian's `prometheus` binary started on a free local port with a temporary
//! config that scrapes one target every second:
//!
//! ```ignore
//! let prom = PrometheusServer::start("127.0.0.1:9930")?; // waits for the first good scrape
//! prom.wait_for_scrapes(3, Duration::from_secs(30))?;   // enough samples for rate()
//! for (title, expr) in panel_queries(&dashboard_path()) {
//!     assert!(prom.has_data(&expr)?, "panel {title}: {expr} returned nothing");
//! }
//! ```
//!
//! Tools that are not installed make a test skip with a printed reason ([`tool`]), or fail it
//! when `SPECWATCH_REQUIRE_PROMTOOL=1` (set by `scripts/test`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The checkout's root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Grafana dashboard shipped in `deploy/grafana/dashboards/`.
pub fn dashboard_path() -> PathBuf {
    repo_root().join("deploy/grafana/dashboards/specwatch.json")
}

/// The metric list: `deploy/metrics.md`.
pub fn metrics_doc_path() -> PathBuf {
    repo_root().join("deploy/metrics.md")
}

/// An external program a deploy check needs, found on `PATH`.
///
/// Returns `None` after printing `SKIPPED: …` with the reason when it is missing; with
/// `SPECWATCH_REQUIRE_PROMTOOL=1` a missing tool panics instead, so no check is silently
/// skipped where the tools are supposed to be installed.
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| is_executable(candidate))
    });
    if found.is_some() {
        return found;
    }
    let package = match name {
        "promtool" | "prometheus" => "prometheus",
        "systemd-analyze" => "systemd",
        other => other,
    };
    let why =
        format!("`{name}` is not on PATH (Debian package `{package}`; scripts/setup installs it)");
    if std::env::var("SPECWATCH_REQUIRE_PROMTOOL").as_deref() == Ok("1") {
        panic!("{why}, and SPECWATCH_REQUIRE_PROMTOOL=1 requires it");
    }
    eprintln!("SKIPPED: {why}");
    None
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

// ---------------------------------------------------------------------------------------------
// The metric list

/// Kind of a metric, as the table in `deploy/metrics.md` states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// One row of the metric table.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSpec {
    pub name: String,
    pub kind: MetricKind,
    pub labels: Vec<String>,
    /// Values named in the meaning column as `label: `a`, `b``, e.g. the drop reasons.
    pub label_values: BTreeMap<String, Vec<String>>,
}

/// Reads the metric table of `deploy/metrics.md`: rows `| `name` | type | labels | meaning |`.
///
/// Panics with the line when a row does not have that shape, so the file stays machine-readable.
pub fn interface_metrics() -> Vec<MetricSpec> {
    let path = metrics_doc_path();
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut metrics = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if !line.starts_with("| `specwatch_") {
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let context = format!("{}:{}: {line}", path.display(), number + 1);
        assert_eq!(
            cells.len(),
            4,
            "{context}: expected 4 cells: metric, type, labels, meaning"
        );
        let name = cells[0].trim_matches('`').to_string();
        let kind = match cells[1] {
            "counter" => MetricKind::Counter,
            "gauge" => MetricKind::Gauge,
            "histogram" => MetricKind::Histogram,
            other => panic!("{context}: type '{other}' is not counter, gauge or histogram"),
        };
        let labels: Vec<String> = cells[2]
            .split(',')
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        let mut label_values = BTreeMap::new();
        for label in &labels {
            let marker = format!("{label}: ");
            if let Some(start) = cells[3].find(&marker) {
                let values: Vec<String> = cells[3][start + marker.len()..]
                    .split(',')
                    .map(str::trim)
                    .take_while(|v| v.starts_with('`'))
                    .map(|v| v.trim_matches('`').to_string())
                    .collect();
                label_values.insert(label.clone(), values);
            }
        }
        metrics.push(MetricSpec {
            name,
            kind,
            labels,
            label_values,
        });
    }
    assert!(
        !metrics.is_empty(),
        "{}: no metric rows found",
        path.display()
    );
    metrics
}

/// Which interface metric a series name belongs to: the name itself, or for a histogram its
/// `_bucket`, `_sum` and `_count` series. Returns the spec and whether `le` is a valid label.
pub fn resolve_series<'a>(
    metrics: &'a [MetricSpec],
    series: &str,
) -> Option<(&'a MetricSpec, bool)> {
    if let Some(m) = metrics.iter().find(|m| m.name == series) {
        return Some((m, false));
    }
    for (suffix, has_le) in [("_bucket", true), ("_sum", false), ("_count", false)] {
        if let Some(base) = series.strip_suffix(suffix)
            && let Some(m) = metrics
                .iter()
                .find(|m| m.name == base && m.kind == MetricKind::Histogram)
        {
            return Some((m, has_le));
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// The dashboard

/// Grafana's macros and this dashboard's variables, replaced to make plain PromQL:
/// `$__rate_interval` by 30 s (at least two scrapes at the harness's 1 s and at the station's 5 s
/// interval), `$__interval` by 15 s, `$__range` by 5 min, and the station, source and model
/// variables by "all" (`.*`, as their `allValue` says).
pub fn grafana_to_promql(expr: &str) -> String {
    expr.replace("$__rate_interval", "30s")
        .replace("$__interval", "15s")
        .replace("$__range", "5m")
        .replace("$instance", ".*")
        .replace("$source", ".*")
        .replace("$model", ".*")
}

fn read_dashboard(dashboard: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dashboard)
        .unwrap_or_else(|e| panic!("read {}: {e}", dashboard.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", dashboard.display()))
}

/// Every panel of a dashboard, rows' nested panels included, in order.
pub fn dashboard_panels(dashboard: &serde_json::Value) -> Vec<&serde_json::Value> {
    let mut out = Vec::new();
    fn walk<'a>(panels: &'a serde_json::Value, out: &mut Vec<&'a serde_json::Value>) {
        for p in panels.as_array().into_iter().flatten() {
            out.push(p);
            if let Some(nested) = p.get("panels") {
                walk(nested, out);
            }
        }
    }
    walk(&dashboard["panels"], &mut out);
    out
}

/// The raw Grafana expressions of a dashboard's panels: `("<panel title> [<refId>]", expr)`.
pub fn panel_exprs(dashboard_path: &Path) -> Vec<(String, String)> {
    let dashboard = read_dashboard(dashboard_path);
    let mut out = Vec::new();
    for panel in dashboard_panels(&dashboard) {
        let title = panel["title"].as_str().unwrap_or("(untitled)");
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                let ref_id = target["refId"].as_str().unwrap_or("?");
                out.push((format!("{title} [{ref_id}]"), expr.to_string()));
            }
        }
    }
    out
}

/// Every panel query of a dashboard as PromQL a Prometheus server can evaluate (Grafana's
/// variables replaced by [`grafana_to_promql`]): `("<panel title> [<refId>]", expr)`.
pub fn panel_queries(dashboard_path: &Path) -> Vec<(String, String)> {
    panel_exprs(dashboard_path)
        .into_iter()
        .map(|(title, expr)| (title, grafana_to_promql(&expr)))
        .collect()
}

/// The dashboard's query variables: `(name, Grafana query)`, e.g.
/// `("model", "label_values(specwatch_windows_classified_total{…}, model)")`.
pub fn variable_queries(dashboard_path: &Path) -> Vec<(String, String)> {
    let dashboard = read_dashboard(dashboard_path);
    let mut out = Vec::new();
    for var in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if var["type"] != "query" {
            continue;
        }
        let name = var["name"].as_str().unwrap_or("?").to_string();
        let query = var["query"]["query"]
            .as_str()
            .or_else(|| var["query"].as_str())
            .or_else(|| var["definition"].as_str())
            .unwrap_or_else(|| panic!("variable {name} has no query"));
        out.push((name, query.to_string()));
    }
    out
}

/// A Grafana `label_values(selector, label)` variable query as PromQL with the same data:
/// `count by (label) (selector)`.
pub fn label_values_to_promql(query: &str) -> Option<String> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")?
        .strip_suffix(')')?;
    let (selector, label) = inner.rsplit_once(',')?;
    Some(grafana_to_promql(&format!(
        "count by ({}) ({})",
        label.trim(),
        selector.trim()
    )))
}

// ---------------------------------------------------------------------------------------------
// PromQL scanning

/// What a PromQL expression refers to: its series selectors (name and the label names of their
/// matchers) and the label names of its `by`/`without`/`on`/`ignoring`/`group_*` clauses.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PromqlRefs {
    pub selectors: Vec<(String, Vec<String>)>,
    pub grouping_labels: BTreeSet<String>,
}

impl PromqlRefs {
    /// The metric (series) names used.
    pub fn metric_names(&self) -> BTreeSet<String> {
        self.selectors.iter().map(|(n, _)| n.clone()).collect()
    }
}

const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
    "atan2",
    "start",
    "end",
];
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];
const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Scans a PromQL (or Grafana) expression for the series it selects and the labels it groups
/// by. Not a full parser: it skips strings, label-matcher values, ranges and numbers, and treats
/// an identifier followed by `(` as a function or aggregation; enough to check names against a
/// list. Panics on unbalanced brackets or quotes.
pub fn scan_promql(expr: &str) -> PromqlRefs {
    let chars: Vec<char> = expr.chars().collect();
    let mut refs = PromqlRefs::default();
    let mut i = 0;
    let ident_start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':';
    let ident_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let skip_ws = |mut j: usize| {
        while j < chars.len() && chars[j].is_whitespace() {
            j += 1;
        }
        j
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&chars, i, expr);
        } else if c == '[' {
            let end = chars[i..]
                .iter()
                .position(|&c| c == ']')
                .unwrap_or_else(|| panic!("unclosed '[' in {expr}"));
            i += end + 1;
        } else if c == '{' {
            // a selector without a name, e.g. {__name__="x"}: its labels are not checked
            let (_, next) = matcher_labels(&chars, i, expr);
            i = next;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                // exponents such as 1e-3
                if (chars[i] == 'e' || chars[i] == 'E')
                    && matches!(chars.get(i + 1), Some('-') | Some('+'))
                {
                    i += 1;
                }
                i += 1;
            }
        } else if ident_start(c) {
            let start = i;
            while i < chars.len() && ident_char(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = skip_ws(i);
            let lower = word.to_ascii_lowercase();
            if GROUPING.contains(&lower.as_str()) {
                if chars.get(next) == Some(&'(') {
                    let close = chars[next..]
                        .iter()
                        .position(|&c| c == ')')
                        .unwrap_or_else(|| panic!("unclosed '(' after {word} in {expr}"));
                    let list: String = chars[next + 1..next + close].iter().collect();
                    refs.grouping_labels.extend(
                        list.split(',')
                            .map(str::trim)
                            .filter(|l| !l.is_empty())
                            .map(str::to_string),
                    );
                    i = next + close + 1;
                }
            } else if KEYWORDS.contains(&lower.as_str())
                || AGGREGATIONS.contains(&lower.as_str())
                || chars.get(next) == Some(&'(')
            {
                // an operator keyword, an aggregation (its `by (…)` may come first), or a function
            } else if chars.get(next) == Some(&'{') {
                let (labels, after) = matcher_labels(&chars, next, expr);
                refs.selectors.push((word, labels));
                i = after;
            } else {
                refs.selectors.push((word, Vec::new()));
            }
        } else {
            i += 1;
        }
    }
    refs
}

fn skip_string(chars: &[char], start: usize, expr: &str) -> usize {
    let quote = chars[start];
    let mut j = start + 1;
    while j < chars.len() {
        if chars[j] == '\\' && quote != '`' {
            j += 2;
            continue;
        }
        if chars[j] == quote {
            return j + 1;
        }
        j += 1;
    }
    panic!("unclosed string in {expr}");
}

/// Label names of the matchers in `{…}` starting at `open`, and the index after the `}`.
fn matcher_labels(chars: &[char], open: usize, expr: &str) -> (Vec<String>, usize) {
    let mut labels = Vec::new();
    let mut j = open + 1;
    let mut current = String::new();
    while j < chars.len() {
        let c = chars[j];
        match c {
            '}' => return (labels, j + 1),
            '"' | '\'' | '`' => {
                j = skip_string(chars, j, expr);
                continue;
            }
            '=' | '!' | '~' => {
                if !current.trim().is_empty() {
                    labels.push(current.trim().to_string());
                }
                current.clear();
            }
            ',' => current.clear(),
            _ => current.push(c),
        }
        j += 1;
    }
    panic!("unclosed '{{' in {expr}");
}

// ---------------------------------------------------------------------------------------------
// A metrics endpoint

/// A tiny HTTP server answering `GET /metrics` with a text exposition made per request by a
/// closure of the scrape number (0, 1, 2, …), so counters can grow between scrapes. Stops when
/// dropped.
pub struct MetricsEndpoint {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    scrapes: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsEndpoint {
    pub fn start(render: impl Fn(u64) -> String + Send + 'static) -> MetricsEndpoint {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a local port for /metrics");
        let addr = listener.local_addr().expect("local address");
        let stop = Arc::new(AtomicBool::new(false));
        let scrapes = Arc::new(AtomicU64::new(0));
        let (stop_flag, counter) = (stop.clone(), scrapes.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop_flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut stream) = stream else { continue };
                let Some(path) = read_request_path(&mut stream) else {
                    continue;
                };
                let response = if path == "/metrics" {
                    let n = counter.fetch_add(1, Ordering::SeqCst);
                    let body = render(n);
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                } else {
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_string()
                };
                // A scraper that hung up early is not this endpoint's problem.
                let _ = stream.write_all(response.as_bytes());
            }
        });
        MetricsEndpoint {
            addr,
            stop,
            scrapes,
            thread: Some(thread),
        }
    }

    /// `host:port` to scrape.
    pub fn target(&self) -> String {
        self.addr.to_string()
    }

    /// How many times `/metrics` has been served.
    pub fn scrapes(&self) -> u64 {
        self.scrapes.load(Ordering::SeqCst)
    }
}

impl Drop for MetricsEndpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn read_request_path(stream: &mut TcpStream) -> Option<String> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.lines().next()?.split_whitespace();
    (parts.next()? == "GET").then_some(())?;
    Some(parts.next()?.split('?').next()?.to_string())
}

/// A realistic exposition of every metric in `metrics`, as the daemon would serve it at scrape
/// number `scrape`: counters and histograms grow with `scrape` (so rates and quantiles are
/// finite), histograms use the buckets the metric list states, labels take plausible values
/// (the reasons listed in the metric table).
pub fn sample_exposition(metrics: &[MetricSpec], scrape: u64) -> String {
    let mut out = String::new();
    let n = scrape + 1;
    for m in metrics {
        let kind = match m.kind {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        };
        out.push_str(&format!(
            "# HELP {} {} (test exposition)\n# TYPE {} {kind}\n",
            m.name, m.name, m.name
        ));
        for (k, labels) in label_sets(m).iter().enumerate() {
            let weight = k as u64 + 1;
            match m.kind {
                MetricKind::Counter => {
                    let value = match m.name.as_str() {
                        "specwatch_samples_in_total" => 1_000_000 * n,
                        _ => 5 * weight * n,
                    };
                    out.push_str(&format!("{}{} {value}\n", m.name, render_labels(labels)));
                }
                MetricKind::Gauge => {
                    let value = match m.name.as_str() {
                        "specwatch_store_rows" => 1000 + 7 * n,
                        "specwatch_models_loaded" => 2,
                        _ => 1,
                    };
                    out.push_str(&format!("{}{} {value}\n", m.name, render_labels(labels)));
                }
                MetricKind::Histogram => {
                    let (bounds, observations) = histogram_shape(&m.name);
                    let mut sum = 0.0;
                    for &bound in &bounds {
                        let below = observations.iter().filter(|&&o| o <= bound).count() as u64;
                        let mut with_le = labels.clone();
                        with_le.push(("le".into(), format_bound(bound)));
                        out.push_str(&format!(
                            "{}_bucket{} {}\n",
                            m.name,
                            render_labels(&with_le),
                            below * n
                        ));
                    }
                    let mut with_le = labels.clone();
                    with_le.push(("le".into(), "+Inf".into()));
                    let count = observations.len() as u64 * n;
                    out.push_str(&format!(
                        "{}_bucket{} {count}\n",
                        m.name,
                        render_labels(&with_le)
                    ));
                    for o in &observations {
                        sum += o * n as f64;
                    }
                    out.push_str(&format!("{}_sum{} {sum}\n", m.name, render_labels(labels)));
                    out.push_str(&format!(
                        "{}_count{} {count}\n",
                        m.name,
                        render_labels(labels)
                    ));
                }
            }
        }
    }
    out
}

fn label_sets(m: &MetricSpec) -> Vec<Vec<(String, String)>> {
    let mut sets: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for label in &m.labels {
        let values: Vec<String> = match (m.label_values.get(label), label.as_str()) {
            (Some(v), _) if !v.is_empty() => v.clone(),
            (_, "source") => vec!["x300".into(), "replay".into()],
            (_, "model") => vec!["amc-cnn".into()],
            (_, "class") => vec!["BPSK".into(), "QPSK".into(), "QAM16".into()],
            (_, "version") => vec![env!("CARGO_PKG_VERSION").into()],
            (_, other) => vec![format!("{other}-value")],
        };
        sets = sets
            .into_iter()
            .flat_map(|set| {
                values.iter().map(move |v| {
                    let mut s = set.clone();
                    s.push((label.clone(), v.clone()));
                    s
                })
            })
            .collect();
    }
    sets
}

/// Bucket bounds (as the metric list states them) and a few observations, per histogram.
fn histogram_shape(name: &str) -> (Vec<f64>, Vec<f64>) {
    match name {
        "specwatch_detection_snr_db" => (
            (-4..=6).map(|k| f64::from(k) * 5.0).collect(),
            vec![-7.0, 3.0, 9.5, 14.0, 22.0],
        ),
        "specwatch_detection_azimuth_degrees" => (
            (-12..=12).map(|k| f64::from(k) * 15.0).collect(),
            vec![-100.0, -20.0, 35.0, 40.0, 170.0],
        ),
        "specwatch_inference_batch_size" => (
            (0..=10).map(|k| f64::from(1u32 << k)).collect(),
            vec![1.0, 8.0, 16.0, 32.0, 32.0],
        ),
        // the latency histograms: 0.5 ms to 1 s
        _ => (
            vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0,
            ],
            vec![0.0008, 0.003, 0.004, 0.012, 0.09],
        ),
    }
}

fn format_bound(bound: f64) -> String {
    format!("{bound}")
}

fn render_labels(labels: &[(String, String)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{{{}}}", inner.join(","))
}

// ---------------------------------------------------------------------------------------------
// A real Prometheus server

/// One sample of an instant query's answer.
#[derive(Debug, Clone)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Runs `promtool check metrics` on an exposition and panics with its findings unless it exits
/// 0 and prints nothing (no lint warning either).
pub fn assert_promtool_accepts(promtool: &Path, exposition: &str) {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(exposition.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool runs");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics found problems:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Prometheus server (the `prometheus` binary) on a free local port, with its own temporary
/// storage and a config that scrapes one target as job `specwatch` every second. Stopped and
/// removed when dropped.
pub struct PrometheusServer {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl PrometheusServer {
    /// Starts a server scraping `target` (`host:port`, path `/metrics`) and waits until it is
    /// ready and has scraped the target successfully once (30 s at most).
    ///
    /// Errors say what failed, with the server's log or the target's last scrape error.
    pub fn start(target: &str) -> Result<PrometheusServer, String> {
        let binary = which("prometheus").ok_or("`prometheus` is not on PATH")?;
        let mut last_error = String::new();
        // A free port is found by binding and releasing it; another process may take it in
        // between, so try a few times.
        for _ in 0..3 {
            let dir = tempfile::tempdir().map_err(|e| format!("temporary folder: {e}"))?;
            let config = dir.path().join("prometheus.yml");
            std::fs::write(
                &config,
                format!(
                    "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                     scrape_configs:\n  - job_name: specwatch\n    metrics_path: /metrics\n    \
                     static_configs:\n      - targets: [\"{target}\"]\n"
                ),
            )
            .map_err(|e| format!("write {}: {e}", config.display()))?;
            let port = free_port()?;
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("socket address");
            let log = std::fs::File::create(dir.path().join("prometheus.log"))
                .map_err(|e| format!("create log: {e}"))?;
            let child = Command::new(&binary)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .map_err(|e| format!("start {}: {e}", binary.display()))?;
            let mut server = PrometheusServer { child, addr, dir };
            match server.wait_ready(Duration::from_secs(30)) {
                Ok(()) => {
                    server.wait_for_scrapes(1, Duration::from_secs(30))?;
                    return Ok(server);
                }
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    /// The server's address (`127.0.0.1:port`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn log_tail(&self) -> String {
        let log =
            std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "prometheus exited ({status}):\n{}",
                    self.log_tail()
                ));
            }
            if let Ok((200, _)) = http_get(self.addr, "/-/ready") {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(format!(
            "prometheus on {} not ready after {timeout:?}:\n{}",
            self.addr,
            self.log_tail()
        ))
    }

    /// Waits until at least `n` successful scrapes of the target are stored.
    pub fn wait_for_scrapes(&self, n: u32, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let expr = "sum_over_time(up{job=\"specwatch\"}[10m])";
        loop {
            let samples = self.query(expr)?;
            if samples.first().is_some_and(|s| s.value >= f64::from(n)) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "prometheus has not scraped the target successfully {n} times in {timeout:?}; \
                     target state: {}",
                    self.target_state()
                ));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The scrape target's health and last error, from `/api/v1/targets`.
    pub fn target_state(&self) -> String {
        match http_get(self.addr, "/api/v1/targets") {
            Ok((200, body)) => {
                let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                let targets = json["data"]["activeTargets"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                targets
                    .iter()
                    .map(|t| {
                        format!(
                            "{} health={} lastError={:?}",
                            t["scrapeUrl"].as_str().unwrap_or("?"),
                            t["health"].as_str().unwrap_or("?"),
                            t["lastError"].as_str().unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            }
            Ok((status, body)) => format!("/api/v1/targets answered {status}: {body}"),
            Err(e) => e,
        }
    }

    /// Evaluates an instant query now. A vector answer gives its samples, a scalar one sample
    /// without labels; an invalid expression is an error with Prometheus's message.
    pub fn query(&self, expr: &str) -> Result<Vec<Sample>, String> {
        let path = format!("/api/v1/query?query={}", percent_encode(expr));
        let (status, body) = http_get(self.addr, &path)?;
        let json: serde_json::Value = serde_json::from_str(&body)
            .map_err(|e| format!("query {expr}: answer is not JSON ({e}): {body}"))?;
        if status != 200 || json["status"] != "success" {
            return Err(format!(
                "query {expr}: {status} {} {}",
                json["errorType"].as_str().unwrap_or(""),
                json["error"].as_str().unwrap_or(&body)
            ));
        }
        let data = &json["data"];
        let parse_value = |v: &serde_json::Value| -> Result<f64, String> {
            let text = v[1]
                .as_str()
                .ok_or_else(|| format!("query {expr}: no value in {v}"))?;
            text.parse::<f64>()
                .map_err(|e| format!("query {expr}: value {text:?}: {e}"))
        };
        match data["resultType"].as_str() {
            Some("vector") => data["result"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| {
                    let labels = s["metric"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect();
                    Ok(Sample {
                        labels,
                        value: parse_value(&s["value"])?,
                    })
                })
                .collect(),
            Some("scalar") => Ok(vec![Sample {
                labels: BTreeMap::new(),
                value: parse_value(&data["result"])?,
            }]),
            other => Err(format!("query {expr}: unexpected result type {other:?}")),
        }
    }

    /// Whether an instant query returns at least one sample.
    pub fn has_data(&self, expr: &str) -> Result<bool, String> {
        Ok(!self.query(expr)?.is_empty())
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn free_port() -> Result<u16, String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind a free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("local address: {e}"))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A plain HTTP/1.0 GET (no chunked answers): `(status, body)`.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| format!("set timeout: {e}"))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("send to {addr}: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("GET {path} from {addr}: no HTTP header in the answer"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("GET {path} from {addr}: bad status line {head:?}"))?;
    Ok((status, body.to_string()))
}
