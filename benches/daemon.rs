//! The daemon's flowgraph, printed as figures: `cargo bench --bench daemon`.
//!
//! - Replay throughput with every window classified (no gate), MS/s, beside the same windows
//!   fed straight to `Model::run` in batches in the same run (the peer: what inference alone
//!   costs; the ratio is the flowgraph's overhead).
//! - Inference overhead against onnxruntime's Python binding: the same model, the same
//!   preprocessed batches of 64 windows and the same thread count (`SPECWATCH_BENCH_THREADS`,
//!   default 1), best of five passes each, in the same run: `Model::run` (preprocessing, the ort
//!   session, softmax) against a bare `InferenceSession.run`. The interpreter is the tests'
//!   reference environment (`SPECWATCH_PYTHON`, else the venv of `scripts/setup`); without one
//!   this figure is skipped and says why.
//! - Replay ingest with the energy gate on a capture whose bursts occupy 10 % of the time,
//!   MS/s, with the share of windows the gate let through.
//! - Window → queryable latency at a paced 1 MS/s into the SQLite store: from the moment a
//!   window's last sample is due to the moment its detection is committed (the store's feed of
//!   committed detections), p50 and p99.
//! - Peak RSS of the process during the paced run (the peak is reset after the benchmark's own
//!   captures are made).
//!
//! The model is `models/amc128.json` when it exists, else the fixture band classifier of the
//! tests (a single Gemm, so the figures then measure the flowgraph more than inference).
//! The flowgraph runs `SPECWATCH_BENCH_WORKERS` inference workers (default 2) of
//! `SPECWATCH_BENCH_THREADS` intra-op threads each (default 1); the first figure also shows one
//! worker with ONNX Runtime's default thread count.
//! `SPECWATCH_BENCH_SAMPLES` sets the capture length (default 2,000,000 samples; the gated run
//! reads `SPECWATCH_BENCH_GATED_SAMPLES`, default ten times as many),
//! `SPECWATCH_BENCH_SECONDS` the latency run (default 5 s), `SPECWATCH_BENCH_PACED_RATE` its
//! sample rate (default 1,000,000 S/s). The machine is shared: read ratios.

#[path = "../tests/it/common/mod.rs"]
mod common;

use common::fixture;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use specwatch::config::{Config, ExecutionProvider, GateConfig, GateKind, ReplayMode, SourceKind};
use specwatch::daemon::{ReplayRequest, replay_config};
use specwatch::flowgraph::{CollectingSink, Station};
use specwatch::infer::{Model, RuntimeOptions};
use specwatch::iq::C32;
use specwatch::store::{Store, StoreConfig};
use specwatch::telemetry::Metrics;

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Resets the peak RSS (`VmHWM`) to the current RSS (Linux `clear_refs` 5), so the next reading
/// covers only what follows; false where the kernel refuses.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The model card to measure with, and its window length.
fn model(dir: &Path) -> (PathBuf, usize) {
    let default = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/amc128.json");
    if default.is_file() {
        println!("model: {}", default.display());
        return (default, 128);
    }
    println!("model: models/amc128.json absent; using the fixture band classifier (128 samples)");
    (fixture::band_model(dir, "band128", 1, 128), 128)
}

/// A one-channel capture of `samples` samples: tone bursts of 8 windows covering `occupancy`
/// of the time in unit noise, without a sidecar (so a replay starts at the wall clock).
fn capture(dir: &Path, name: &str, samples: usize, occupancy: f64) -> PathBuf {
    let burst = 8 * 128;
    let period = (burst as f64 / occupancy).round() as usize;
    let mut segments = Vec::new();
    let mut left = samples;
    let mut k = 0;
    while left > 0 {
        let on = burst.min(left);
        segments.push(fixture::Segment {
            freq: Some([0.1, -0.3, 0.35, -0.1][k % 4]),
            samples: on,
            snr_db: 15.0,
        });
        left -= on;
        let off = (period - burst).min(left);
        if off > 0 {
            segments.push(fixture::Segment {
                freq: None,
                samples: off,
                snr_db: 0.0,
            });
            left -= off;
        }
        k += 1;
    }
    let path = dir.join(name);
    fixture::tone_capture(&path, &segments, 1, (0.0, 0.0), 5);
    std::fs::remove_file(path.with_extension("json")).expect("drop the sidecar");
    path
}

fn replay_run(config: &Config) -> (f64, u64, Arc<Metrics>) {
    let station = Station::prepare(config).expect("prepare");
    let sink = CollectingSink::new();
    let metrics = Metrics::new();
    let t = Instant::now();
    let summary = station
        .start(sink.clone(), metrics.clone())
        .expect("start")
        .join()
        .expect("run");
    let elapsed = t.elapsed().as_secs_f64();
    let samples: u64 = summary.samples_in.iter().map(|(_, n)| n).sum();
    (
        samples as f64 / elapsed / 1e6,
        sink.take().len() as u64,
        metrics,
    )
}

/// Times one pass of `InferenceSession.run` over every batch of a raw little-endian f32 file,
/// best of `repeats`; prints windows/s.
const PYTHON_PEER: &str = r#"
import sys, time
import numpy as np
import onnxruntime as ort
onnx, data, batch, threads, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
so = ort.SessionOptions()
so.intra_op_num_threads = threads
so.inter_op_num_threads = 1
s = ort.InferenceSession(onnx, so, providers=["CPUExecutionProvider"])
i = s.get_inputs()[0]
x = np.fromfile(data, dtype="<f4").reshape(-1, *i.shape[1:])
batches = [np.ascontiguousarray(x[k:k + batch]) for k in range(0, len(x) - batch + 1, batch)]
s.run(None, {i.name: batches[0]})
best = float("inf")
for _ in range(repeats):
    t = time.perf_counter()
    for b in batches:
        s.run(None, {i.name: b})
    best = min(best, time.perf_counter() - t)
print(len(batches) * batch / best)
"#;

/// `Model::run` against onnxruntime's Python binding on the same preprocessed batches of 64
/// windows, with the same intra-op thread count, best of five passes each.
fn python_overhead(dir: &Path, card: &Path, samples: &[C32], window: usize) {
    const BATCH: usize = 64;
    const REPEATS: usize = 5;
    let threads = env_usize("SPECWATCH_BENCH_THREADS", 1);
    // The tests' reference environment (scripts/setup); without it the reason is printed.
    let Some(python) = common::onnx_python() else {
        println!("inference overhead against onnxruntime-Python: SKIPPED (see above)");
        return;
    };
    let mut m = Model::load(
        card,
        &RuntimeOptions {
            execution: specwatch::infer::ExecutionPreference::Cpu,
            intra_threads: Some(threads),
            ..Default::default()
        },
    )
    .expect("model");
    if !m.card().extra_inputs.is_empty() || m.card().inputs.len() != 1 {
        println!(
            "inference overhead against onnxruntime-Python: SKIPPED: the peer feeds one window \
             input, and this card has {} inputs and {} extra inputs",
            m.card().inputs.len(),
            m.card().extra_inputs.len()
        );
        return;
    }
    let input = m.card().inputs[0].name.clone();
    let batches: Vec<&[C32]> = samples.chunks_exact(BATCH * window).collect();
    // The preprocessed tensors, as the daemon's path makes them, for the Python peer.
    let mut tensor = Vec::<u8>::new();
    for b in &batches {
        m.run(b, BATCH).expect("run");
        for v in m.last_input(&input).expect("input tensor") {
            tensor.extend_from_slice(&v.to_le_bytes());
        }
    }
    let data = dir.join("batches.f32");
    std::fs::write(&data, &tensor).expect("write the batches");
    let mut best = f64::INFINITY;
    for _ in 0..REPEATS {
        let t = Instant::now();
        for b in &batches {
            m.run(b, BATCH).expect("run");
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    let ours = (batches.len() * BATCH) as f64 / best;
    let out = std::process::Command::new(&python)
        .arg("-c")
        .arg(PYTHON_PEER)
        .arg(m.onnx_path())
        .arg(&data)
        .arg(BATCH.to_string())
        .arg(threads.to_string())
        .arg(REPEATS.to_string())
        .output()
        .expect("start the Python peer");
    let theirs: Option<f64> = String::from_utf8_lossy(&out.stdout).trim().parse().ok();
    match theirs {
        Some(theirs) if out.status.success() => println!(
            "inference, batch {BATCH}, {threads} intra-op thread(s), {} windows: Model::run \
             (preprocessing + ort + softmax) {ours:.0} windows/s; onnxruntime-Python \
             InferenceSession.run on the same tensors {theirs:.0} windows/s; overhead {:+.1} %",
            batches.len() * BATCH,
            100.0 * (theirs / ours - 1.0)
        ),
        _ => println!(
            "inference overhead against onnxruntime-Python: the peer failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    }
}

fn main() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let samples = env_usize("SPECWATCH_BENCH_SAMPLES", 2_000_000);
    let seconds = env_usize("SPECWATCH_BENCH_SECONDS", 5);
    let paced_rate = env_usize("SPECWATCH_BENCH_PACED_RATE", 1_000_000) as f64;
    let (card, window) = model(dir.path());
    println!("capture: {samples} samples, one channel\n");

    // 1. Every window classified, beside Model::run alone.
    let full = capture(dir.path(), "full.npy", samples, 1.0);
    let mut config = replay_config(&ReplayRequest {
        capture: full.clone(),
        models: vec![card.clone()],
        ..Default::default()
    })
    .expect("config");
    config.runtime.execution_provider = ExecutionProvider::Cpu;
    config.models[0].batch_size = 64;
    // One worker with ONNX Runtime's own intra-op thread count (one per core), then `workers`
    // sessions of `intra_threads` each (SPECWATCH_BENCH_WORKERS, default 2, and
    // SPECWATCH_BENCH_THREADS, default 1, the station's defaults): the configuration the rest
    // of this benchmark uses.
    config.models[0].workers = 1;
    config.runtime.intra_threads = None;
    let (msps_one, _, _) = replay_run(&config);
    let workers = env_usize("SPECWATCH_BENCH_WORKERS", 2);
    let intra = env_usize("SPECWATCH_BENCH_THREADS", 1);
    config.models[0].workers = workers;
    config.runtime.intra_threads = Some(intra);
    let (msps, detections, _) = replay_run(&config);
    println!(
        "replay, every window classified: 1 worker × default intra-op threads {msps_one:8.2} MS/s; \
         {workers} workers × {intra} intra-op thread(s) {msps:8.2} MS/s"
    );
    let windows = samples / window;
    let mut cap = specwatch::iq::capture::Capture::open(&full).expect("capture");
    let all: Vec<C32> = cap.read_all().expect("read").remove(0);
    let mut m = Model::load(
        &card,
        &RuntimeOptions {
            execution: specwatch::infer::ExecutionPreference::Cpu,
            ..Default::default()
        },
    )
    .expect("model");
    let t = Instant::now();
    for batch in all[..windows * window].chunks(64 * window) {
        m.run(batch, batch.len() / window).expect("run");
    }
    let peer = samples as f64 / t.elapsed().as_secs_f64() / 1e6;
    println!(
        "replay, every window classified: {msps:8.2} MS/s ({detections} detections of {windows} windows); \
         Model::run alone on the same windows: {peer:8.2} MS/s; flowgraph/peer = {:.2}",
        msps / peer
    );
    drop(m);
    python_overhead(dir.path(), &card, &all[..windows * window], window);

    // 2. Energy gate on a 10 %-occupied capture, ten times as long (at ≥ 10 MS/s a short
    // capture would time the flowgraph's start-up).
    let gated_samples = env_usize("SPECWATCH_BENCH_GATED_SAMPLES", 10 * samples);
    let sparse = capture(dir.path(), "sparse.npy", gated_samples, 0.1);
    config.sources[0].kind = match config.sources[0].kind.clone() {
        SourceKind::Replay(mut r) => {
            r.path = sparse;
            SourceKind::Replay(r)
        }
        other => other,
    };
    config.gate = GateConfig {
        kind: GateKind::Energy,
        threshold_db: Some(6.0),
        warmup_windows: None,
        floor_alpha: None,
    };
    let (msps_gate, passed, metrics) = replay_run(&config);
    let rejected = metrics
        .windows_gate_rejected_total
        .with_label_values(&["replay"])
        .get();
    println!(
        "replay, energy gate, 10 % occupied: {msps_gate:8.2} MS/s ingest; {passed} windows classified, \
         {rejected} rejected ({:.1} % passed); gated/ungated = {:.2}",
        100.0 * passed as f64 / (passed + rejected).max(1) as f64,
        msps_gate / msps
    );

    // 3. Window → queryable latency at a paced 1 MS/s into the store.
    let paced_len = (seconds as f64 * 1e6) as usize;
    let paced = capture(
        dir.path(),
        "paced.npy",
        paced_len.min(samples.max(1_000_000)),
        1.0,
    );
    let mut config = replay_config(&ReplayRequest {
        capture: paced,
        models: vec![card],
        ..Default::default()
    })
    .expect("config");
    config.runtime.execution_provider = ExecutionProvider::Cpu;
    config.runtime.intra_threads = Some(intra);
    config.models[0].workers = workers;
    if let SourceKind::Replay(r) = &mut config.sources[0].kind {
        r.mode = ReplayMode::Paced;
        r.repeat = true;
        r.sample_rate_hz = Some(paced_rate);
        r.chunk_samples = 1024;
    }
    config.models[0].max_wait_ms = 5;
    let metrics = Metrics::new();
    let mut store_config = StoreConfig::new(dir.path().join("bench.sqlite"));
    store_config.flush_interval = Duration::from_millis(10);
    let store = Store::open(&store_config, metrics.clone()).expect("store");
    let mut feed = store.subscribe();
    let window_s = window as f64 / paced_rate;
    let collector = std::thread::spawn(move || {
        let mut latencies = Vec::new();
        while let Ok(d) = feed.blocking_recv() {
            let now = specwatch::flowgraph::time::now_unix_ns();
            let due = d.time_ns as f64 + window_s * 1e9;
            latencies.push((now as f64 - due) / 1e9);
        }
        latencies
    });
    let station = Station::prepare(&config).expect("prepare");
    let model = station.models()[0].name.clone();
    // The captures and the peer's copy are made by the benchmark, not the station: measure the
    // peak of the paced run alone.
    let reset = reset_peak_rss();
    let running = station
        .start(Arc::new(store.writer()), metrics.clone())
        .expect("start");
    std::thread::sleep(Duration::from_secs(seconds as u64));
    running.stop_blocking();
    running.join().expect("paced run");
    store.close().expect("close the store");
    let mut lat = collector.join().expect("collector");
    lat.sort_by(f64::total_cmp);
    let q = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p).round() as usize)
            .copied()
    };
    match (q(0.5), q(0.99)) {
        (Some(p50), Some(p99)) => println!(
            "window → queryable at a paced {:.2} MS/s: p50 {:.1} ms, p99 {:.1} ms over {} detections \
             ({:.0} % of the windows due)",
            paced_rate / 1e6,
            p50 * 1e3,
            p99 * 1e3,
            lat.len(),
            100.0 * lat.len() as f64 / (seconds as f64 * paced_rate / window as f64)
        ),
        _ => println!("window → queryable: no detection was committed"),
    }
    let dropped = metrics
        .windows_dropped_total
        .with_label_values(&[model.as_str(), "queue_full"])
        .get();
    let batches = metrics
        .inference_batch_size
        .with_label_values(&[model.as_str()]);
    println!(
        "paced run: {dropped} windows dropped with the queue full; {:.1} windows per model run on average",
        batches.get_sample_sum() / batches.get_sample_count().max(1) as f64
    );
    // Where the time goes, as means: one model run, and a detection's wait in the store's
    // writer (from the sink to its commit). The rest is framing, queueing and the batch wait.
    let runs = metrics
        .inference_latency_seconds
        .with_label_values(&[model.as_str()]);
    let stored = &metrics.detection_latency_seconds;
    println!(
        "paced run, means: model run {:.1} ms; sink → committed {:.1} ms",
        1e3 * runs.get_sample_sum() / runs.get_sample_count().max(1) as f64,
        1e3 * stored.get_sample_sum() / stored.get_sample_count().max(1) as f64
    );
    match peak_rss_mib() {
        Some(rss) if reset => println!("peak RSS during the paced run: {rss:.0} MiB"),
        Some(rss) => println!(
            "peak RSS of the whole benchmark (the kernel refused to reset the peak): {rss:.0} MiB"
        ),
        None => println!("peak RSS: /proc/self/status not readable"),
    }
}
