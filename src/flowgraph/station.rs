//! [`Station`]: a validated config made real — captures opened, generators built, models
//! loaded and checked against the config — then built into one flowgraph and run on its own
//! thread ([`RunningStation`]).
//!
//! [`Station::prepare`] is what `specwatch check` runs and what the daemon runs before it
//! starts: every problem it finds names the config key it comes from
//! (`model[0].card: model card models/x.json: …`).

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futuresdr::runtime::{Flowgraph, FlowgraphHandle, Runtime};

use super::inference::InferenceSettings;
use super::sink::ChainInfo;
use super::{
    DetectionSink, Fault, Framer, Gate, Inference, ReplaySource, Sink, StartSignal, StreamInfo,
    SyntheticSource, start_signal,
};
use crate::config::{Config, GateConfig, ModelConfig, SourceConfig, SourceKind};
use crate::dsp::doa::DoaEstimator;
use crate::dsp::frame::FrameSpec;
use crate::infer::Model;
use crate::infer::card::Task;
use crate::iq::capture::Capture;
use crate::synth::RecipeOptions;
use crate::synth::recipe::Recipe;
use crate::telemetry::Metrics;

/// Why a station cannot be prepared, built or run.
#[derive(Debug, thiserror::Error)]
pub enum StationError {
    /// A config entry cannot be made real (capture unreadable, model refused, channels that do
    /// not fit); `key` is the config key path.
    #[error("{key}: {message}")]
    Prepare { key: String, message: String },
    /// The flowgraph could not be built or started.
    #[error("flowgraph: {0}")]
    Flowgraph(String),
    /// The flowgraph stopped with an error (the first block error).
    #[error("{0}")]
    Run(String),
}

fn prepare_error(key: impl Into<String>, message: impl std::fmt::Display) -> StationError {
    StationError::Prepare {
        key: key.into(),
        message: message.to_string(),
    }
}

/// A source ready to become a block.
enum Opened {
    Replay {
        capture: Box<Capture>,
        config: crate::config::ReplaySource,
    },
    Synthetic {
        recipe: Box<Recipe>,
        classes: Vec<usize>,
        config: crate::config::SyntheticSource,
    },
    #[cfg(feature = "soapy")]
    Soapy(crate::config::SoapySource),
    #[cfg(feature = "uhd")]
    Uhd(crate::config::UhdSource),
}

struct PreparedSource {
    info: Arc<StreamInfo>,
    opened: Opened,
}

/// Whether a source may be held back when inference falls behind (no radio to overflow).
fn can_wait(opened: &Opened) -> bool {
    match opened {
        Opened::Replay { config, .. } => config.mode == crate::config::ReplayMode::Fast,
        Opened::Synthetic { config, .. } => config.mode == crate::config::ReplayMode::Fast,
        #[cfg(feature = "soapy")]
        Opened::Soapy(_) => false,
        #[cfg(feature = "uhd")]
        Opened::Uhd(_) => false,
    }
}

/// One model's chain, ready to become blocks.
struct PreparedChain {
    source: usize,
    sessions: Vec<Model>,
    pick: Vec<usize>,
    spec: FrameSpec,
    gate: GateConfig,
    settings: InferenceSettings,
    chain: ChainInfo,
}

/// A loaded model, as `/status` and `specwatch check` report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSummary {
    /// Card name and version.
    pub name: String,
    pub version: String,
    /// `amc`, `aoa` or `amc+aoa`.
    pub task: String,
    /// Execution provider of its sessions (`CPU`, `CUDA:0`).
    pub provider: String,
    /// The source it reads and the channels of its windows.
    pub source: String,
    pub channels: Vec<u32>,
    /// Window length and hop, samples.
    pub window_len: usize,
    pub hop: usize,
    /// Worker threads (sessions).
    pub workers: usize,
}

/// A source, as `/status` and `specwatch check` report it.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSummary {
    pub name: String,
    pub kind: String,
    pub sample_rate_hz: f64,
    pub center_freq_hz: Option<f64>,
    pub channels: usize,
}

/// A station ready to run (see the module doc).
pub struct Station {
    name: String,
    sources: Vec<PreparedSource>,
    chains: Vec<PreparedChain>,
    models: Vec<ModelSummary>,
}

impl std::fmt::Debug for Station {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Station")
            .field("name", &self.name)
            .field("sources", &self.source_summaries())
            .field("models", &self.models)
            .finish()
    }
}

/// Channel count and nominal rate of a source before its models are known.
struct Staged {
    channels: usize,
    rate: Option<f64>,
    center: Option<f64>,
    start_ns: Option<i64>,
    opened: Opened,
}

fn stage_source(i: usize, s: &SourceConfig) -> Result<Staged, StationError> {
    let key = |field: &str| format!("source[{i}].{field}");
    match &s.kind {
        SourceKind::Replay(r) => {
            let capture = Capture::open(&r.path).map_err(|e| prepare_error(key("path"), e))?;
            let start_ns = match capture.start_time() {
                Some(t) => Some(
                    super::time::parse_rfc3339_ns(t)
                        .map_err(|e| prepare_error(key("path"), format!("start time: {e}")))?,
                ),
                None => None,
            };
            Ok(Staged {
                channels: capture.channels(),
                rate: r.sample_rate_hz.or(capture.sample_rate_hz()),
                center: r.center_freq_hz.or(capture.center_freq_hz()),
                start_ns,
                opened: Opened::Replay {
                    capture: Box::new(capture),
                    config: r.clone(),
                },
            })
        }
        SourceKind::Synthetic(g) => {
            let recipe = Recipe::by_name(&g.recipe, &RecipeOptions::default(), g.seed)
                .map_err(|e| prepare_error(key("recipe"), e))?;
            let classes = match &g.classes {
                None => (0..recipe.classes.len()).collect(),
                Some(names) => names
                    .iter()
                    .enumerate()
                    .map(|(j, n)| {
                        recipe.classes.iter().position(|c| c == n).ok_or_else(|| {
                            prepare_error(
                                format!("source[{i}].classes[{j}]"),
                                format!(
                                    "'{n}' is not a class of recipe '{}'; expected one of {:?}",
                                    recipe.name, recipe.classes
                                ),
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?,
            };
            Ok(Staged {
                channels: recipe.channels,
                rate: Some(g.sample_rate_hz.unwrap_or(recipe.sample_rate_hz)),
                center: g.center_freq_hz,
                start_ns: None,
                opened: Opened::Synthetic {
                    recipe: Box::new(recipe),
                    classes,
                    config: g.clone(),
                },
            })
        }
        #[cfg(feature = "soapy")]
        SourceKind::Soapy(c) => Ok(Staged {
            channels: c.channels.len(),
            rate: Some(c.sample_rate_hz),
            center: Some(c.center_freq_hz),
            start_ns: None,
            opened: Opened::Soapy(c.clone()),
        }),
        #[cfg(not(feature = "soapy"))]
        SourceKind::Soapy(_) => Err(prepare_error(
            key("kind"),
            "this specwatch was built without Soapy support; rebuild with `--features soapy` \
             (needs libsoapysdr-dev)",
        )),
        #[cfg(feature = "uhd")]
        SourceKind::Uhd(c) => Ok(Staged {
            channels: c.channels.len(),
            rate: Some(c.sample_rate_hz),
            center: Some(c.center_freq_hz),
            start_ns: None,
            opened: Opened::Uhd(c.clone()),
        }),
        #[cfg(not(feature = "uhd"))]
        SourceKind::Uhd(_) => Err(prepare_error(
            key("kind"),
            "this specwatch was built without UHD support; rebuild with `--features uhd` \
             (needs libuhd-dev and libclang-dev)",
        )),
    }
}

impl Station {
    /// Opens every source and loads every model of `config`, checking each model against its
    /// card and its source (channels, window length, array). Loading a model loads ONNX
    /// Runtime ([`Config::runtime`]).
    pub fn prepare(config: &Config) -> Result<Station, StationError> {
        let mut staged = Vec::with_capacity(config.sources.len());
        for (i, s) in config.sources.iter().enumerate() {
            staged.push(stage_source(i, s)?);
        }
        let options = config.runtime.options();
        let mut loaded: Vec<(usize, Vec<Model>)> = Vec::with_capacity(config.models.len());
        let mut models = Vec::new();
        for (j, m) in config.models.iter().enumerate() {
            let source = config
                .sources
                .iter()
                .position(|s| s.name == m.source)
                .ok_or_else(|| prepare_error(format!("model[{j}].source"), "no such source"))?;
            let mut sessions = Vec::with_capacity(m.workers);
            for _ in 0..m.workers {
                sessions.push(
                    Model::load(&m.card, &options)
                        .map_err(|e| prepare_error(format!("model[{j}].card"), e))?,
                );
            }
            let first = &sessions[0];
            let card = first.card();
            if let Some(reason) = first.cuda_fallback() {
                tracing::warn!(
                    "model '{}': CUDA not used ({reason}); running on CPU",
                    card.name
                );
            }
            tracing::info!(
                "model '{}' {} ({:?}) loaded from {} on {} ({} worker(s))",
                card.name,
                card.version,
                card.task,
                first.onnx_path().display(),
                first.provider(),
                m.workers
            );
            models.push(ModelSummary {
                name: card.name.clone(),
                version: card.version.clone(),
                task: task_name(card.task).to_string(),
                provider: first.provider().to_string(),
                source: m.source.clone(),
                channels: Vec::new(),
                window_len: card.window_len,
                hop: m.hop.unwrap_or(card.window_len),
                workers: m.workers,
            });
            loaded.push((source, sessions));
        }
        // A capture without a sample rate takes the nominal rate of the first model reading it.
        let mut sources = Vec::with_capacity(staged.len());
        for (i, (st, cfg)) in staged.into_iter().zip(&config.sources).enumerate() {
            let rate = match st.rate {
                Some(r) => r,
                None => {
                    let nominal = loaded
                        .iter()
                        .find(|(s, _)| *s == i)
                        .map(|(_, m)| m[0].card().sample_rate_hz)
                        .ok_or_else(|| {
                            prepare_error(
                                format!("source[{i}].sample_rate_hz"),
                                "the capture does not say its sample rate and no model reads \
                                 this source; set sample_rate_hz",
                            )
                        })?;
                    tracing::warn!(
                        "source '{}': the capture does not say its sample rate; assuming the \
                         model's nominal {nominal} Hz (set sample_rate_hz to override)",
                        cfg.name
                    );
                    nominal
                }
            };
            sources.push(PreparedSource {
                info: Arc::new(StreamInfo::new(
                    cfg.name.clone(),
                    cfg.kind.name(),
                    rate,
                    st.center,
                    st.channels,
                    st.start_ns,
                )),
                opened: st.opened,
            });
        }
        let mut chains = Vec::with_capacity(loaded.len());
        for (j, ((source, sessions), m)) in loaded.into_iter().zip(&config.models).enumerate() {
            let mut chain = prepare_chain(
                j,
                m,
                config.gate_of(m),
                source,
                &sources[source].info,
                sessions,
            )?;
            chain.settings.backpressure = can_wait(&sources[source].opened);
            models[j].channels = chain.chain.channels.clone();
            chains.push(chain);
        }
        Ok(Station {
            name: config.station.name.clone(),
            sources,
            chains,
            models,
        })
    }

    /// The station's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The models loaded, in config order.
    pub fn models(&self) -> &[ModelSummary] {
        &self.models
    }

    /// The sources, in config order.
    pub fn source_summaries(&self) -> Vec<SourceSummary> {
        self.sources
            .iter()
            .map(|s| SourceSummary {
                name: s.info.name.clone(),
                kind: s.info.kind.to_string(),
                sample_rate_hz: s.info.sample_rate_hz,
                center_freq_hz: s.info.center_freq_hz,
                channels: s.info.channels,
            })
            .collect()
    }

    /// Builds the flowgraph: per source its block, per model a framer → gate → inference →
    /// sink chain fed by that source. Detections go to `target`. The sources produce nothing
    /// until `start` opens, which must happen once every block is initialised (see
    /// [`StartSignal`]).
    pub fn build(
        self,
        target: Arc<dyn DetectionSink>,
        metrics: Arc<Metrics>,
        fault: &Fault,
        start: &StartSignal,
    ) -> Result<Flowgraph, StationError> {
        let fg_err = |e: futuresdr::runtime::Error| StationError::Flowgraph(e.to_string());
        let mut fg = Flowgraph::new();
        let mut chains: Vec<Option<PreparedChain>> = self.chains.into_iter().map(Some).collect();
        for (i, src) in self.sources.into_iter().enumerate() {
            let info = src.info.clone();
            metrics.register_source(&info.name);
            let src_ref = match src.opened {
                Opened::Replay { capture, config } => {
                    let block = fg.add(
                        ReplaySource::new(
                            *capture,
                            config.mode,
                            config.repeat,
                            config.chunk_samples,
                            info.clone(),
                            metrics.clone(),
                            fault.clone(),
                        )
                        .held_until(start.clone()),
                    );
                    SourceRef::Replay(block)
                }
                Opened::Synthetic {
                    recipe,
                    classes,
                    config,
                } => SourceRef::Synthetic(
                    fg.add(
                        SyntheticSource::new(
                            *recipe,
                            classes,
                            &config,
                            info.clone(),
                            metrics.clone(),
                        )
                        .held_until(start.clone()),
                    ),
                ),
                #[cfg(feature = "soapy")]
                Opened::Soapy(config) => SourceRef::Soapy(
                    fg.add(
                        super::SoapySource::new(
                            config,
                            info.clone(),
                            metrics.clone(),
                            fault.clone(),
                        )
                        .held_until(start.clone()),
                    ),
                ),
                #[cfg(feature = "uhd")]
                Opened::Uhd(config) => SourceRef::Uhd(
                    fg.add(
                        super::UhdSource::new(config, info.clone(), metrics.clone(), fault.clone())
                            .held_until(start.clone()),
                    ),
                ),
            };
            for slot in chains.iter_mut() {
                if slot.as_ref().is_none_or(|c| c.source != i) {
                    continue;
                }
                let Some(c) = slot.take() else { continue };
                metrics.register_model(&c.chain.model, &c.chain.classes);
                let framer = fg.add(Framer::new(
                    info.channels,
                    c.pick,
                    c.spec,
                    &info.name,
                    metrics.clone(),
                ));
                let gate = fg.add(
                    Gate::new(&c.gate, c.spec.channels, &info.name, metrics.clone())
                        .map_err(|e| StationError::Flowgraph(format!("gate: {e}")))?,
                );
                let inference = fg.add(Inference::new(
                    c.sessions,
                    &c.settings,
                    metrics.clone(),
                    fault.clone(),
                ));
                let sink = fg.add(Sink::new(c.chain, target.clone(), metrics.clone()));
                match &src_ref {
                    SourceRef::Replay(b) => fg.stream(b, |b| b.output(), &framer, |b| b.input()),
                    SourceRef::Synthetic(b) => fg.stream(b, |b| b.output(), &framer, |b| b.input()),
                    #[cfg(feature = "soapy")]
                    SourceRef::Soapy(b) => fg.stream(b, |b| b.output(), &framer, |b| b.input()),
                    #[cfg(feature = "uhd")]
                    SourceRef::Uhd(b) => fg.stream(b, |b| b.output(), &framer, |b| b.input()),
                }
                .map_err(fg_err)?;
                fg.stream(&framer, |b| b.output(), &gate, |b| b.input())
                    .map_err(fg_err)?;
                fg.stream(&gate, |b| b.output(), &inference, |b| b.input())
                    .map_err(fg_err)?;
                fg.stream(&inference, |b| b.output(), &sink, |b| b.input())
                    .map_err(fg_err)?;
            }
        }
        Ok(fg)
    }

    /// Builds the flowgraph and starts it on its own thread (FutureSDR's executor; the
    /// inference workers run on their own threads). FutureSDR's control port stays off: the
    /// station serves its own API.
    pub fn start(
        self,
        target: Arc<dyn DetectionSink>,
        metrics: Arc<Metrics>,
    ) -> Result<RunningStation, StationError> {
        futuresdr::runtime::config::set("ctrlport_enable", false);
        // FutureSDR installs its own log subscriber when the process has none (tests, library
        // users); keep its default at info rather than debug. FUTURESDR_LOG still overrides it.
        futuresdr::runtime::config::set("log_level", "info");
        let fault = Fault::default();
        let sources: Vec<String> = self.sources.iter().map(|s| s.info.name.clone()).collect();
        let models: Vec<String> = self.models.iter().map(|m| m.name.clone()).collect();
        let (start_trigger, start) = start_signal();
        let fg = self.build(target, metrics.clone(), &fault, &start)?;
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("flowgraph".into())
            .spawn(move || -> Result<(), String> {
                let runtime = Runtime::new();
                // `start` returns once every block is initialised: only then may the sources
                // run (a failed start drops the trigger, which releases them to stop).
                let running = match runtime.start(fg) {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return Err(e.to_string());
                    }
                };
                start_trigger.open();
                let _ = tx.send(Ok(running.handle()));
                let result = running.wait();
                // Dropping the flowgraph closes its channels (and the workers' queues).
                match result {
                    Ok(fg) => {
                        drop(fg);
                        Ok(())
                    }
                    Err(e) => Err(e.to_string()),
                }
            })
            .map_err(|e| StationError::Flowgraph(format!("cannot start its thread: {e}")))?;
        let handle = match rx.recv() {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(StationError::Flowgraph(
                    fault.get().unwrap_or(format!("cannot start: {e}")),
                ));
            }
            Err(_) => {
                let _ = thread.join();
                return Err(StationError::Flowgraph(
                    "the flowgraph thread ended before it started".into(),
                ));
            }
        };
        metrics.flowgraph_running.set(1);
        Ok(RunningStation {
            handle,
            thread: Some(thread),
            fault,
            started: Instant::now(),
            metrics,
            sources,
            models,
        })
    }
}

enum SourceRef {
    Replay(futuresdr::runtime::BlockRef<ReplaySource>),
    Synthetic(futuresdr::runtime::BlockRef<SyntheticSource>),
    #[cfg(feature = "soapy")]
    Soapy(futuresdr::runtime::BlockRef<super::SoapySource>),
    #[cfg(feature = "uhd")]
    Uhd(futuresdr::runtime::BlockRef<super::UhdSource>),
}

fn task_name(task: Task) -> &'static str {
    match task {
        Task::Amc => "amc",
        Task::Aoa => "aoa",
        Task::AmcAoa => "amc+aoa",
    }
}

fn prepare_chain(
    j: usize,
    m: &ModelConfig,
    gate: &GateConfig,
    source: usize,
    info: &Arc<StreamInfo>,
    sessions: Vec<Model>,
) -> Result<PreparedChain, StationError> {
    let key = |field: &str| format!("model[{j}].{field}");
    let card = sessions[0].card().clone();
    let card_path: PathBuf = m.card.clone();
    let channels: Vec<u32> = m
        .channels
        .clone()
        .unwrap_or_else(|| (0..card.channels as u32).collect());
    // The model takes the first `card.channels` of the window's channels; more are allowed
    // only for direction finding.
    let fits =
        channels.len() == card.channels || (channels.len() > card.channels && m.doa.is_some());
    if !fits {
        return Err(prepare_error(
            key("channels"),
            format!(
                "{} channel(s) {channels:?} but the model card {} takes windows of {} channel(s){}",
                channels.len(),
                card_path.display(),
                card.channels,
                if channels.len() > card.channels {
                    " (more channels than the model takes are only useful with [model.doa])"
                } else {
                    ""
                }
            ),
        ));
    }
    if let Some(bad) = channels.iter().find(|&&c| c as usize >= info.channels) {
        return Err(prepare_error(
            key("channels"),
            format!(
                "channel {bad} does not exist: source '{}' has {} channel(s)",
                info.name, info.channels
            ),
        ));
    }
    if let Some(w) = m.window
        && w != card.window_len
    {
        return Err(prepare_error(
            key("window"),
            format!(
                "{w} samples but the model card {} takes windows of {} samples",
                card_path.display(),
                card.window_len
            ),
        ));
    }
    let hop = m.hop.unwrap_or(card.window_len);
    let spec = FrameSpec::new(card.window_len, hop, channels.len())
        .map_err(|e| prepare_error(key("hop"), e))?;
    let relative = (info.sample_rate_hz - card.sample_rate_hz).abs() / card.sample_rate_hz;
    if relative > 1e-3 {
        tracing::warn!(
            "model '{}' was trained at {} Hz but source '{}' runs at {} Hz",
            card.name,
            card.sample_rate_hz,
            info.name,
            info.sample_rate_hz
        );
    }
    let bearing = match &m.doa {
        None => None,
        Some(d) => {
            if channels.len() < 2 {
                return Err(prepare_error(
                    key("doa"),
                    "direction finding needs windows of at least 2 channels (set channels)",
                ));
            }
            let geometry = d
                .geometry(channels.len())
                .map_err(|e| prepare_error(key("doa"), e))?;
            if geometry.len() != channels.len() {
                return Err(prepare_error(
                    key("doa.elements"),
                    format!(
                        "an array of {} elements for windows of {} channels",
                        geometry.len(),
                        channels.len()
                    ),
                ));
            }
            let estimator =
                DoaEstimator::new(geometry, d.grid()).map_err(|e| prepare_error(key("doa"), e))?;
            Some((estimator, d.method))
        }
    };
    Ok(PreparedChain {
        source,
        pick: channels.iter().map(|&c| c as usize).collect(),
        spec,
        gate: gate.clone(),
        settings: InferenceSettings {
            batch_size: m.batch_size,
            max_wait: Duration::from_millis(m.max_wait_ms),
            queue_capacity: m.queue_capacity,
            bearing,
            backpressure: false,
        },
        chain: ChainInfo {
            stream: info.clone(),
            model: card.name.clone(),
            model_version: card.version.clone(),
            classes: card.classes.clone(),
            channels,
            window_len: card.window_len,
            min_confidence: m.min_confidence,
        },
        sessions,
    })
}

/// What a finished run did.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    /// Wall-clock duration.
    pub elapsed: Duration,
    /// Samples per channel taken in, per source.
    pub samples_in: Vec<(String, u64)>,
    /// Windows classified, per model.
    pub windows_classified: Vec<(String, u64)>,
    /// Windows dropped (every reason), per model.
    pub windows_dropped: Vec<(String, u64)>,
}

/// A running flowgraph: stop it, watch it, wait for it.
pub struct RunningStation {
    handle: FlowgraphHandle,
    thread: Option<JoinHandle<Result<(), String>>>,
    fault: Fault,
    started: Instant,
    metrics: Arc<Metrics>,
    sources: Vec<String>,
    models: Vec<String>,
}

impl RunningStation {
    /// Asks every block to stop (sources first stop producing; windows not yet classified are
    /// dropped and counted as `shutdown`). Returns at once; [`RunningStation::join`] waits.
    pub async fn stop(&self) {
        // An error means the flowgraph has already ended, which is what was asked for.
        let _ = self.handle.clone().stop().await;
    }

    /// [`RunningStation::stop`] for callers outside an async context.
    pub fn stop_blocking(&self) {
        futuresdr::futures::executor::block_on(self.stop());
    }

    /// Whether the flowgraph has ended (a finite source ran out, a block failed, or a stop).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// The first block error, if one happened.
    pub fn fault(&self) -> Option<String> {
        self.fault.get()
    }

    /// Waits for the flowgraph to end; its first block error, if any, as the error.
    pub fn join(mut self) -> Result<RunSummary, StationError> {
        let result = match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err("the flowgraph thread panicked".into())),
            None => Ok(()),
        };
        self.metrics.flowgraph_running.set(0);
        if let Some(f) = self.fault.get() {
            return Err(StationError::Run(f));
        }
        result.map_err(StationError::Run)?;
        Ok(self.summary())
    }

    fn summary(&self) -> RunSummary {
        let m = &self.metrics;
        RunSummary {
            elapsed: self.started.elapsed(),
            samples_in: self
                .sources
                .iter()
                .map(|s| {
                    (
                        s.clone(),
                        m.samples_in_total.with_label_values(&[s.as_str()]).get(),
                    )
                })
                .collect(),
            windows_classified: self
                .models
                .iter()
                .map(|n| {
                    (
                        n.clone(),
                        m.windows_classified_total
                            .with_label_values(&[n.as_str()])
                            .get(),
                    )
                })
                .collect(),
            windows_dropped: self
                .models
                .iter()
                .map(|n| {
                    let total = ["queue_full", "nonfinite", "shutdown"]
                        .iter()
                        .map(|r| {
                            m.windows_dropped_total
                                .with_label_values(&[n.as_str(), r])
                                .get()
                        })
                        .sum();
                    (n.clone(), total)
                })
                .collect(),
        }
    }
}
