//! specwatch — a real-time spectrum-monitoring station.
//!
//! A daemon (`specwatch`) reads live or replayed IQ, cuts it into windows, classifies each
//! window's modulation and estimates its angle of arrival with ONNX models, and serves what it
//! detects. A companion (`specwatch-train`) makes the datasets and the models.
//!
//! # Map
//! - [`iq`]: sample types and files — `.npy` captures, sidecars, SigMF, dataset folders, RadioML
//!   loaders, array recordings cut into datasets.
//! - [`dsp`]: pure functions — framing, normalisation, representations, PSD, SNR estimation,
//!   energy gate, array manifold and direction finding. The one preprocessing path shared by
//!   trainer and daemon.
//! - [`infer`]: ONNX Runtime loading, model cards, sessions (windows → classes, angles), batching.
//! - [`synth`]: the signal generator — modulators, audio, channel impairments, antenna arrays,
//!   and the dataset recipes.
//! - [`onnx`]: the ONNX writer — trained weights onto standard ONNX operators, `.onnx` files.
//! - [`store`]: the detection store — SQLite (WAL), a non-blocking writer with batching, merging
//!   and retention, filtered and paginated queries, a feed of committed detections.
//! - [`api`]: the daemon's HTTP API (axum) — `/detections`, `/detections/stream`, `/metrics`,
//!   `/healthz`, `/readyz`, `/status`.
//! - [`telemetry`]: Prometheus metrics, log set-up, the status board.
//! - [`config`]: the station config (TOML) — sources, models, gate, store, API, runtime —
//!   validated with errors that name the key.
//! - [`flowgraph`]: the FutureSDR blocks (sources, framer, gate, inference, sink) and the
//!   [`flowgraph::Station`] built from a config.
//! - [`daemon`]: what the `specwatch` commands do — `run`, `check`, `replay`, `devices`.
//! - `train` (feature `train`): burn models (a registry of architectures with options of their
//!   own), datasets → batches (in memory or streamed, augmented), the run shell and its
//!   objectives, export of a run to an ONNX model and its card from the model's declared
//!   interface, evaluation of exported models through `infer` (accuracy per SNR and class,
//!   confusion, angle error beside MUSIC and the CRB, PNG report).
//!
//! # Data flow
//! ```text
//! synth recipe ──▶ synth::generate ──▶ iq::dataset (folder on disk) ──▶ trainer
//! RadioML file ──▶ iq::radioml     ──▶ iq::dataset
//! array recordings (.npy + sidecar) ──▶ iq::recordings ──▶ iq::dataset (+ recording.npy)
//! capture (.npy / SigMF) ──▶ iq::capture / iq::sigmf ──▶ dsp::frame ──▶ infer::Model
//!                                       (model card's normalisation + representation, via dsp)
//! trained weights ──▶ onnx (graph writer) ──▶ models/<name>.onnx + card ──▶ infer::Model
//! iq::dataset ──▶ train::source ──▶ train::data (augment, dsp normalise + repr) ──▶ train::fit
//!             (run shell) ──▶ train::objective ──▶ run folder (weights, metrics)
//! config ──▶ flowgraph::Station: source ──▶ framer ──▶ gate ──▶ inference (workers) ──▶ sink
//! detections ──▶ store::DetectionWriter ──▶ SQLite ──▶ api (/detections, /detections/stream)
//! every part ──▶ telemetry::Metrics ──▶ api (/metrics)
//! models/<name> + iq::dataset ──▶ infer::Model ──▶ train::eval ──▶ report (JSON, Markdown, PNG)
//! run folder ──▶ train::export (interface → graph + card, test split through infer::Model) ──▶ models/
//! ```

pub mod api;
pub mod config;
pub mod daemon;
pub mod dsp;
pub mod flowgraph;
pub mod infer;
pub mod iq;
pub mod onnx;
pub mod store;
pub mod synth;
pub mod telemetry;
#[cfg(feature = "train")]
pub mod train;
