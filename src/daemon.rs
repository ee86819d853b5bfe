//! What the `specwatch` commands do: `run` (the station: flowgraph, store, API, systemd
//! notifications, clean stop on SIGTERM/SIGINT), `check` (the start-up validation alone),
//! `replay` (one capture through the same flowgraph, as fast as possible) and `devices`.
//!
//! ```text
//! Config::load ─▶ Station::prepare (sources, models) ─▶ Store::open ─▶ bind API
//!   ─▶ Station::start (flowgraph thread) ─▶ READY=1 ─▶ WATCHDOG=1 every WatchdogSec/2
//!   ─▶ SIGTERM/SIGINT ─▶ STOPPING=1 ─▶ stop flowgraph ─▶ flush + close store ─▶ stop API ─▶ exit 0
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::config::{
    Config, ModelConfig, ReplayMode, ReplaySource, SourceConfig, SourceKind, StoreSection,
};
use crate::flowgraph::station::{ModelSummary, SourceSummary};
use crate::flowgraph::time::format_rfc3339;
use crate::flowgraph::{CollectingSink, RunSummary, Station};
use crate::store::{Detection, Store, StoreConfig};
use crate::telemetry::{Metrics, ModelStatus, SourceStatus, StatusBoard};

/// Opens the store of a `[store]` section, creating its folder when missing.
pub fn open_store(s: &StoreSection, metrics: Arc<Metrics>) -> anyhow::Result<Store> {
    if let Some(dir) = s.path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("store.path: cannot create the folder {}", dir.display()))?;
    }
    Store::open(&store_config(s)?, metrics)
        .with_context(|| format!("store.path: {}", s.path.display()))
}

/// The store settings of a `[store]` section.
pub fn store_config(s: &StoreSection) -> anyhow::Result<StoreConfig> {
    Ok(StoreConfig {
        path: s.path.clone(),
        retention_max_age: s
            .retention_age()
            .map_err(|e| anyhow::anyhow!("store.retention_max_age: {e}"))?,
        retention_max_rows: s.retention_max_rows,
        merge: s.merge,
        merge_max_gap_samples: s.merge_max_gap_samples,
        batch_max: s.batch_max,
        flush_interval: Duration::from_millis(s.flush_interval_ms),
        queue_capacity: s.queue_capacity,
    })
}

/// What `specwatch check` found.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// Station name.
    pub station: String,
    /// Sources, with their rates and channels.
    pub sources: Vec<SourceSummary>,
    /// Models, with their providers.
    pub models: Vec<ModelSummary>,
    /// The store file opened.
    pub store: PathBuf,
    /// The API address.
    pub listen: String,
}

impl std::fmt::Display for CheckReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "station '{}': config OK", self.station)?;
        for s in &self.sources {
            writeln!(
                f,
                "  source '{}' ({}): {} channel(s) at {} Hz{}",
                s.name,
                s.kind,
                s.channels,
                s.sample_rate_hz,
                s.center_freq_hz
                    .map(|c| format!(", centre {c} Hz"))
                    .unwrap_or_default()
            )?;
        }
        for m in &self.models {
            writeln!(
                f,
                "  model '{}' {} ({}) on {}: source '{}' channels {:?}, window {} hop {}, {} worker(s)",
                m.name,
                m.version,
                m.task,
                m.provider,
                m.source,
                m.channels,
                m.window_len,
                m.hop,
                m.workers
            )?;
        }
        writeln!(f, "  store {} (writable)", self.store.display())?;
        write!(f, "  API on {}", self.listen)
    }
}

/// `specwatch check`: everything start-up does short of running — the config, the sources,
/// the models against their cards and sources, the store opened writable.
pub fn check(config_path: &Path) -> anyhow::Result<CheckReport> {
    let config = Config::load(config_path)?;
    let station =
        Station::prepare(&config).with_context(|| format!("config {}", config_path.display()))?;
    let store = open_store(&config.store, Metrics::new())
        .with_context(|| format!("config {}", config_path.display()))?;
    if !store.is_writable() {
        anyhow::bail!(
            "config {}: store.path: {} is not writable",
            config_path.display(),
            config.store.path.display()
        );
    }
    store.close()?;
    Ok(CheckReport {
        station: config.station.name.clone(),
        sources: station.source_summaries(),
        models: station.models().to_vec(),
        store: config.store.path.clone(),
        listen: config.api.listen.clone(),
    })
}

/// Tells systemd (when it started us with `Type=notify`; a no-op otherwise).
fn notify(state: sd_notify::NotifyState<'_>) {
    if let Err(e) = sd_notify::notify(&[state]) {
        tracing::debug!("sd_notify: {e}");
    }
}

/// `specwatch run`: the station until SIGTERM or SIGINT (exit 0), or until its flowgraph
/// fails (an error). A flowgraph that ends on its own (a replay without `loop`) leaves the API
/// serving what was stored until the station is stopped.
pub fn run(config_path: &Path) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    tracing::info!(
        "station '{}' starting from {}",
        config.station.name,
        config_path.display()
    );
    let metrics = Metrics::new();
    let status = StatusBoard::new();
    let station =
        Station::prepare(&config).with_context(|| format!("config {}", config_path.display()))?;
    status.set_models(
        station
            .models()
            .iter()
            .map(|m| ModelStatus {
                name: m.name.clone(),
                version: m.version.clone(),
                task: m.task.clone(),
                execution_provider: m.provider.clone(),
            })
            .collect(),
    );
    status.set_sources(
        station
            .source_summaries()
            .into_iter()
            .map(|s| SourceStatus {
                name: s.name,
                kind: s.kind,
                sample_rate_hz: s.sample_rate_hz,
                channels: s.channels as u32,
            })
            .collect(),
    );
    metrics.models_loaded.set(station.models().len() as i64);
    let store = open_store(&config.store, metrics.clone())
        .with_context(|| format!("config {}", config_path.display()))?;
    let addr = config
        .api
        .listen_addr()
        .map_err(|e| anyhow::anyhow!("config {}: api.listen: {e}", config_path.display()))?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("api")
        .enable_all()
        .build()
        .context("start the async runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("api.listen: cannot listen on {addr}"))?;
        tracing::info!("API listening on http://{}", listener.local_addr()?);
        let running = station.start(Arc::new(store.writer()), metrics.clone())?;
        status.set_flowgraph_running(true);
        let (stop_api, api_stopped) = tokio::sync::oneshot::channel::<()>();
        let state = crate::api::ApiState {
            store: store.clone(),
            metrics: metrics.clone(),
            status: status.clone(),
        };
        let api = tokio::spawn(crate::api::serve(listener, state, async move {
            let _ = api_stopped.await;
        }));
        notify(sd_notify::NotifyState::Ready);
        tracing::info!("station '{}' running", config.station.name);

        let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("install the SIGTERM handler")?;
        let watchdog = sd_notify::watchdog_enabled().map(|d| d / 2);
        let mut tick = tokio::time::interval(
            watchdog.unwrap_or(Duration::from_secs(1)).min(Duration::from_secs(1)),
        );
        let mut last_ping = tokio::time::Instant::now();
        let mut finished_logged = false;
        let outcome: anyhow::Result<()> = loop {
            tokio::select! {
                _ = sigterm.recv() => {
                    tracing::info!("SIGTERM: stopping");
                    break Ok(());
                }
                _ = tokio::signal::ctrl_c() => {
                    tracing::info!("SIGINT: stopping");
                    break Ok(());
                }
                _ = tick.tick() => {
                    if running.is_finished() {
                        if let Some(fault) = running.fault() {
                            break Err(anyhow::anyhow!("flowgraph stopped: {fault}"));
                        }
                        if !finished_logged {
                            tracing::info!(
                                "flowgraph finished (its sources ended); serving stored detections until stopped"
                            );
                            status.set_flowgraph_running(false);
                            finished_logged = true;
                        }
                    }
                    if let Some(period) = watchdog
                        && last_ping.elapsed() >= period
                    {
                        notify(sd_notify::NotifyState::Watchdog);
                        last_ping = tokio::time::Instant::now();
                    }
                }
            }
        };
        notify(sd_notify::NotifyState::Stopping);
        running.stop().await;
        status.set_flowgraph_running(false);
        let joined = tokio::task::spawn_blocking(move || running.join())
            .await
            .context("wait for the flowgraph")?;
        let closed = tokio::task::spawn_blocking(move || store.close())
            .await
            .context("close the store")?;
        let _ = stop_api.send(());
        match api.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("API server: {e:#}"),
            Err(e) => tracing::warn!("API server task: {e}"),
        }
        outcome?;
        match joined {
            Ok(summary) => tracing::info!(
                "flowgraph stopped after {:.1} s: {:?} samples in, {:?} windows classified",
                summary.elapsed.as_secs_f64(),
                summary.samples_in,
                summary.windows_classified
            ),
            Err(e) => return Err(anyhow::Error::new(e).context("flowgraph")),
        }
        closed.context("store")?;
        tracing::info!("station stopped cleanly");
        Ok(())
    })
}

/// What `specwatch replay` is asked to do.
#[derive(Debug, Clone, Default)]
pub struct ReplayRequest {
    /// The capture (`.npy` or SigMF).
    pub capture: PathBuf,
    /// A station config whose runtime, gate and models to use (its sources are replaced by the
    /// capture).
    pub config: Option<PathBuf>,
    /// Model cards to run instead of the config's models.
    pub models: Vec<PathBuf>,
    /// Hop between windows (default: the window length).
    pub hop: Option<usize>,
}

/// What a replay gave.
#[derive(Debug, Clone)]
pub struct ReplayOutcome {
    /// Every detection, sorted by model, sample and channel.
    pub detections: Vec<Detection>,
    /// Counts and time.
    pub summary: RunSummary,
}

/// The config a replay runs: the capture as the only (fast, non-looping) source.
pub fn replay_config(req: &ReplayRequest) -> anyhow::Result<Config> {
    let mut config = match &req.config {
        Some(path) => Config::load(path)?,
        None => {
            if req.models.is_empty() {
                anyhow::bail!(
                    "replay: no model; pass --model models/NAME.json (or --config with [[model]] entries)"
                );
            }
            Config {
                station: crate::config::StationConfig {
                    name: "replay".into(),
                },
                api: Default::default(),
                runtime: Default::default(),
                store: Default::default(),
                sources: Vec::new(),
                gate: Default::default(),
                models: Vec::new(),
            }
        }
    };
    let name = "replay".to_string();
    config.sources = vec![SourceConfig {
        name: name.clone(),
        kind: SourceKind::Replay(ReplaySource {
            path: req.capture.clone(),
            mode: ReplayMode::Fast,
            repeat: false,
            sample_rate_hz: None,
            center_freq_hz: None,
            chunk_samples: 8192,
        }),
    }];
    if !req.models.is_empty() {
        config.models = req
            .models
            .iter()
            .map(|card| ModelConfig::new(card.clone(), name.clone()))
            .collect();
    }
    for m in &mut config.models {
        m.source = name.clone();
        if req.hop.is_some() {
            m.hop = req.hop;
        }
    }
    Ok(config)
}

/// `specwatch replay`: runs the capture through the flowgraph as fast as possible and returns
/// every detection (nothing is stored).
pub fn replay(req: &ReplayRequest) -> anyhow::Result<ReplayOutcome> {
    let config = replay_config(req)?;
    let station = Station::prepare(&config)?;
    let sink = CollectingSink::new();
    let running = station.start(sink.clone(), Metrics::new())?;
    let summary = running.join()?;
    Ok(ReplayOutcome {
        detections: sink.take(),
        summary,
    })
}

/// One detection as a JSON object (the API's field names, bearings included; `time` as
/// RFC 3339).
pub fn detection_json(d: &Detection) -> serde_json::Value {
    serde_json::json!({
        "time": format_rfc3339(d.time_ns),
        "time_ns": d.time_ns,
        "stream": d.stream,
        "model": d.model,
        "model_version": d.model_version,
        "class": d.class,
        "confidence": d.confidence,
        "top_k": d.top_k,
        "sample_start": d.sample_start,
        "sample_count": d.sample_count,
        "channel": d.channel,
        "channels": d.channels,
        "center_freq_hz": d.center_freq_hz,
        "snr_db": d.snr_db,
        "azimuth_deg": d.azimuth_deg,
        "elevation_deg": d.elevation_deg,
        "model_azimuth_deg": d.model_azimuth_deg,
        "model_elevation_deg": d.model_elevation_deg,
        "doa_azimuth_deg": d.doa_azimuth_deg,
        "doa_elevation_deg": d.doa_elevation_deg,
        "doa_method": d.doa_method,
        "windows": d.windows,
    })
}

/// The summary of a replay as a JSON object.
pub fn summary_json(capture: &Path, outcome: &ReplayOutcome) -> serde_json::Value {
    let s = &outcome.summary;
    let samples: u64 = s.samples_in.iter().map(|(_, n)| n).sum();
    let seconds = s.elapsed.as_secs_f64();
    let mut classes: BTreeMap<&str, u64> = BTreeMap::new();
    for d in &outcome.detections {
        *classes.entry(d.class.as_str()).or_default() += 1;
    }
    serde_json::json!({
        "summary": {
            "capture": capture.display().to_string(),
            "samples": samples,
            "seconds": seconds,
            "msps": if seconds > 0.0 { samples as f64 / seconds / 1e6 } else { 0.0 },
            "detections": outcome.detections.len(),
            "classes": classes,
            "windows_classified": s.windows_classified.iter().cloned().collect::<BTreeMap<_, _>>(),
            "windows_dropped": s.windows_dropped.iter().cloned().collect::<BTreeMap<_, _>>(),
        }
    })
}

/// Writes a replay's detections and summary: JSON lines, or a readable table.
pub fn write_replay(
    out: &mut impl Write,
    capture: &Path,
    outcome: &ReplayOutcome,
    json: bool,
) -> std::io::Result<()> {
    if json {
        for d in &outcome.detections {
            writeln!(out, "{}", detection_json(d))?;
        }
        writeln!(out, "{}", summary_json(capture, outcome))?;
        return Ok(());
    }
    for d in &outcome.detections {
        // The station's bearing, and the array estimator's beside it when the model gave its
        // own (otherwise they are the same).
        let doa = match (d.model_azimuth_deg, d.doa_azimuth_deg) {
            (Some(_), Some(a)) => format!(
                " ({} az {a:.1}° el {:.1}°)",
                d.doa_method.as_deref().unwrap_or("doa"),
                d.doa_elevation_deg.unwrap_or(0.0)
            ),
            _ => String::new(),
        };
        writeln!(
            out,
            "{:>10} +{:<6} ch{:<2} {:<12} {:>5.1}%  SNR {:>6}  {}{}{doa}",
            d.sample_start,
            d.sample_count,
            d.channel,
            d.class,
            d.confidence * 100.0,
            d.snr_db.map_or("-".into(), |s| format!("{s:.1} dB")),
            d.model,
            d.azimuth_deg
                .map(|a| format!("  az {a:.1}° el {:.1}°", d.elevation_deg.unwrap_or(0.0)))
                .unwrap_or_default()
        )?;
    }
    let s = summary_json(capture, outcome);
    let s = &s["summary"];
    writeln!(
        out,
        "{} detections from {} samples in {:.3} s ({:.2} MS/s); classes {}",
        s["detections"],
        s["samples"],
        s["seconds"].as_f64().unwrap_or(0.0),
        s["msps"].as_f64().unwrap_or(0.0),
        s["classes"]
    )
}

/// `specwatch devices`: the receivers this build can see, or why none can be listed.
#[allow(clippy::vec_init_then_push)] // which lines depends on the features built in
pub fn devices() -> Vec<String> {
    let mut lines = Vec::new();
    #[cfg(feature = "uhd")]
    lines.extend(crate::flowgraph::uhd_devices());
    #[cfg(not(feature = "uhd"))]
    lines.push("UHD: not compiled in (rebuild with --features uhd)".to_string());
    #[cfg(feature = "soapy")]
    lines.extend(crate::flowgraph::soapy_devices());
    #[cfg(not(feature = "soapy"))]
    lines.push("Soapy: not compiled in (rebuild with --features soapy)".to_string());
    lines
}
