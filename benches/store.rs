//! Detection store and API benchmark.
//!
//! 1. Insert throughput through [`DetectionWriter`] with batched transactions, printed beside
//!    the same store committing one transaction per detection (the peer, measured in the same
//!    run on a smaller count).
//! 2. `GET /detections` latency over real HTTP at a steady 200 requests/s (open loop: each
//!    request has a scheduled start, and its latency counts from that start, so a slow answer
//!    also delays the ones behind it) over 1,000,000 stored detections, with the filters a
//!    dashboard or an operator uses; p50/p99/max overall and per filter.
//!
//! `SPECWATCH_BENCH_ROWS` (default 1,000,000) and `SPECWATCH_BENCH_SECONDS` (default 15) scale
//! it down for a quick run. Run with `cargo bench --bench store`.

use std::time::{Duration, Instant, SystemTime};

use specwatch::api::{ApiState, serve};
use specwatch::store::{Detection, Store, StoreConfig};
use specwatch::telemetry::{Metrics, StatusBoard};

const T0: i64 = 1_714_564_800_000_000_000;
const CLASSES: [&str; 8] = [
    "bpsk", "qpsk", "8psk", "qam16", "qam64", "fm", "am-dsb", "gfsk",
];
const REQUESTS_PER_SECOND: u64 = 200;

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number")),
        Err(_) => default,
    }
}

fn detection(i: u64) -> Detection {
    let class = CLASSES[(i % CLASSES.len() as u64) as usize];
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    Detection {
        id: 0,
        // One detection every 10 ms.
        time_ns: T0 + i as i64 * 10_000_000,
        stream: "rx0".into(),
        sample_start: i * 1024,
        sample_count: 1024,
        channel: (i % 4) as u32,
        channels: vec![(i % 4) as u32],
        center_freq_hz: Some(433.92e6),
        model: if i.is_multiple_of(3) {
            "aoa-net"
        } else {
            "amc-cnn"
        }
        .into(),
        model_version: "1.0.0".into(),
        class: class.into(),
        confidence: ((i * 7919) % 1000) as f32 / 1000.0,
        top_k: vec![
            (class.into(), 0.8),
            ("noise".into(), 0.1),
            ("fm".into(), 0.05),
        ],
        snr_db: Some(((i * 31) % 40) as f32 - 10.0),
        azimuth_deg: Some(((i * 13) % 360) as f32 - 180.0),
        elevation_deg: Some(5.0),
        // A learned model beside MUSIC: both bearings stored, as on the array station.
        model_azimuth_deg: Some(((i * 13) % 360) as f32 - 180.0),
        model_elevation_deg: Some(5.0),
        doa_azimuth_deg: Some(((i * 13 + 3) % 360) as f32 - 180.0),
        doa_elevation_deg: Some(4.0),
        doa_method: Some("music".into()),
        windows: 1,
        observed_ns: now,
    }
}

fn open(path: std::path::PathBuf, batch_max: usize, queue_capacity: usize) -> Store {
    let cfg = StoreConfig {
        batch_max,
        queue_capacity,
        flush_interval: Duration::from_millis(50),
        ..StoreConfig::new(path)
    };
    Store::open(&cfg, Metrics::new()).expect("open the store")
}

/// Writes `rows` detections in chunks that fit the queue; returns rows per second.
fn insert(store: &Store, first: u64, rows: u64, chunk: u64) -> f64 {
    let writer = store.writer();
    let started = Instant::now();
    let mut i = first;
    while i < first + rows {
        let end = (i + chunk).min(first + rows);
        for j in i..end {
            assert!(writer.submit(detection(j)), "the queue holds a whole chunk");
        }
        store.flush().expect("flush");
        i = end;
    }
    rows as f64 / started.elapsed().as_secs_f64()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let rows = env_number("SPECWATCH_BENCH_ROWS", 1_000_000);
    let seconds = env_number("SPECWATCH_BENCH_SECONDS", 15);
    let dir = tempfile::tempdir().expect("temporary folder");

    // Peer: one transaction per detection.
    let single_rows = 2_000.min(rows);
    let single = open(dir.path().join("single.sqlite"), 1, single_rows as usize);
    let single_rate = insert(&single, 0, single_rows, single_rows);
    single.close().expect("close");

    let chunk = 50_000;
    let store = open(dir.path().join("bench.sqlite"), 512, chunk as usize);
    let batched_rate = insert(&store, 0, rows, chunk);
    let file_mb = std::fs::metadata(dir.path().join("bench.sqlite"))
        .map(|m| m.len() as f64 / 1e6)
        .unwrap_or(0.0);
    println!("store insert, {rows} detections");
    println!(
        "  batched (≤512 per transaction): {batched_rate:>10.0} rows/s  ({:.1}× one transaction per row)",
        batched_rate / single_rate
    );
    println!("  one transaction per row:        {single_rate:>10.0} rows/s  (on {single_rows})");
    println!("  database file: {file_mb:.0} MB");

    // The API over real HTTP.
    let state = ApiState {
        store: store.clone(),
        metrics: Metrics::new(),
        status: StatusBoard::new(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(serve(listener, state, async {
        let _either = stopped.await;
    }));

    let span_s = rows as f64 * 0.01;
    let at =
        |fraction: f64| specwatch::api::params::format_time(T0 + (span_s * fraction * 1e9) as i64);
    let filters: Vec<(&str, String)> = vec![
        (
            "newest page after a cursor",
            format!("limit=100&cursor={}", rows.saturating_sub(100)),
        ),
        ("one class", "class=qam16&limit=100".to_owned()),
        (
            "one minute",
            format!(
                "since={}&until={}&limit=100",
                at(0.5),
                at(0.5 + 60.0 / span_s)
            ),
        ),
        (
            "channel + min_confidence",
            "channel=2&min_confidence=0.9&limit=100".to_owned(),
        ),
        (
            "class + channel, mid-table",
            format!("class=bpsk&channel=0&limit=100&cursor={}", rows / 2),
        ),
        (
            "model + class + last hour",
            format!(
                "model=aoa-net&class=fm&since={}&limit=100",
                at(1.0 - 3600.0 / span_s)
            ),
        ),
        ("full page of 1000", "limit=1000".to_owned()),
    ];
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    // Warm-up: one of each.
    for (_, q) in &filters {
        let mut r = agent
            .get(format!("http://{addr}/detections?{q}"))
            .call()
            .expect("warm-up request");
        r.body_mut().read_to_string().expect("body");
    }

    let total = REQUESTS_PER_SECOND * seconds;
    let interval = Duration::from_nanos(1_000_000_000 / REQUESTS_PER_SECOND);
    // Clients take the next scheduled request as they come free, so a slow answer delays
    // only the requests that find every client busy.
    let clients = 16;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let start = Instant::now() + Duration::from_millis(100);
    let results: Vec<Vec<(usize, Duration, usize)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                let agent = agent.clone();
                let filters = &filters;
                let next = &next;
                scope.spawn(move || {
                    let mut out = Vec::new();
                    loop {
                        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if n >= total as usize {
                            break;
                        }
                        let scheduled = start + interval * n as u32;
                        if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                        let which = n % filters.len();
                        let url = format!("http://{addr}/detections?{}", filters[which].1);
                        let mut r = agent.get(&url).call().expect("request");
                        let body = r.body_mut().read_to_string().expect("body");
                        out.push((which, scheduled.elapsed(), body.len()));
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect()
    });
    let elapsed = start.elapsed();
    let all: Vec<(usize, Duration, usize)> = results.into_iter().flatten().collect();
    let mut latencies: Vec<Duration> = all.iter().map(|r| r.1).collect();
    latencies.sort();
    println!(
        "GET /detections over {rows} rows: {} requests at {REQUESTS_PER_SECOND}/s in {:.1} s (achieved {:.0}/s)",
        all.len(),
        elapsed.as_secs_f64(),
        all.len() as f64 / elapsed.as_secs_f64()
    );
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "  all filters:                 p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(*latencies.last().expect("requests"))
    );
    for (which, (name, query)) in filters.iter().enumerate() {
        let mut own: Vec<Duration> = all.iter().filter(|r| r.0 == which).map(|r| r.1).collect();
        own.sort();
        let bytes = all.iter().find(|r| r.0 == which).map_or(0, |r| r.2);
        println!(
            "  {name:<28} p50 {:>7.2} ms  p99 {:>7.2} ms  ({bytes} bytes)  ?{query}",
            ms(percentile(&own, 0.5)),
            ms(percentile(&own, 0.99)),
        );
    }

    let _already_stopped = stop.send(());
    runtime
        .block_on(server)
        .expect("server task")
        .expect("serve");
    store.close().expect("close");
}
