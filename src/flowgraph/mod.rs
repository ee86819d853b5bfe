//! The daemon's hot path: FutureSDR blocks, one per file, and the flowgraph built from a
//! [`crate::config::Config`].
//!
//! ```text
//!                  ┌─▶ framer ─▶ gate ─▶ inference ─▶ sink ─▶ DetectionSink (store, JSON lines)
//! source ──IQ──────┤   (model A: its window, hop, channels)   │
//! (interleaved     └─▶ framer ─▶ gate ─▶ inference ─▶ sink    └─ worker threads (ONNX Runtime),
//!  frames)             (model B …)                               off the FutureSDR executor
//! ```
//!
//! - Sources ([`ReplaySource`], [`SyntheticSource`], `SoapySource` with feature `soapy`,
//!   `UhdSource` with feature `uhd`) write `C32` samples as *frames*: one sample of every
//!   channel of the source, channel after channel (`[s0c0, s0c1, …, s1c0, …]`), and only whole
//!   frames, so channels stay aligned.
//! - [`Framer`] picks a model's channels out of the frames and cuts [`Window`]s (its
//!   `window_len`, its `hop`) with [`crate::dsp::frame::Framer`].
//! - [`Gate`] passes the windows worth classifying (energy over a tracked floor, estimated SNR,
//!   or all) and counts the others.
//! - [`Inference`] hands windows to worker threads through a bounded queue: when the queue is
//!   full the window is dropped and counted — the stream is never stalled. Workers batch by size
//!   and wait ([`crate::infer::Batcher`]), preprocess through the card ([`crate::infer::Model`]),
//!   estimate SNR ([`crate::dsp::snr`]) and, for multi-channel windows with an array, the
//!   array estimator's bearing ([`crate::dsp::doa`], MUSIC by default) beside the model's own
//!   angles when it has them — the heavy numbers are computed there, not on the executor —
//!   and send back [`Classified`] windows. Where both bearings exist their azimuth
//!   disagreement is observed (`specwatch_bearing_disagreement_degrees`).
//! - [`Sink`] turns them into [`crate::store::Detection`]s and submits them to a
//!   [`DetectionSink`] (never blocking).
//! - [`station`]: [`Station::prepare`] (config → opened sources, loaded models; what
//!   `specwatch check` runs) and [`Station::start`] (builds and runs the flowgraph on its own
//!   thread, stoppable).
//!
//! Several models may read one source (each has its own framer, gate, inference and sink);
//! each source feeds every model that names it.

mod framer;
mod gate;
mod inference;
mod replay_source;
pub mod sink;
mod start;
pub mod station;
mod synthetic_source;
pub mod time;
mod wakeup;
mod worker;

#[cfg(any(feature = "soapy", feature = "uhd"))]
mod hardware;
#[cfg(feature = "soapy")]
mod soapy_source;
#[cfg(feature = "uhd")]
mod uhd_source;

use std::sync::{Arc, Mutex, OnceLock};

pub use framer::Framer;
pub use gate::Gate;
pub use inference::{Inference, InferenceSettings};
pub use replay_source::ReplaySource;
pub use sink::{CollectingSink, DetectionSink, Sink};
#[cfg(feature = "soapy")]
pub use soapy_source::{SoapySource, devices as soapy_devices};
pub use start::{StartSignal, StartTrigger, start_signal};
pub use station::{RunSummary, RunningStation, Station, StationError};
pub use synthetic_source::SyntheticSource;
#[cfg(feature = "uhd")]
pub use uhd_source::{UhdSource, devices as uhd_devices};

use futuresdr::runtime::buffer::CpuBufferWriter;
use futuresdr::runtime::buffer::slab;

use crate::dsp::doa::DoaMethod;
use crate::iq::C32;

/// Frames (one sample of every channel) a source's output buffer holds: about 65 ms at
/// 1 MS/s. FutureSDR's default buffer (32 KiB, 4,096 samples) made a source and its framers
/// trade a few thousand samples per wake-up, which capped a fast replay through a selective
/// gate at a few MS/s; the larger buffer also absorbs a live source's bursts while the framers
/// catch up. It adds no delay: framers take samples as soon as they are written.
pub const SOURCE_BUFFER_FRAMES: usize = 1 << 16;

/// A source's output buffer of [`SOURCE_BUFFER_FRAMES`] frames of `channels` samples.
fn source_output(channels: usize) -> futuresdr::runtime::dev::DefaultCpuWriter<C32> {
    let mut w = futuresdr::runtime::dev::DefaultCpuWriter::<C32>::default();
    w.set_min_buffer_size_in_items(SOURCE_BUFFER_FRAMES * channels.max(1));
    w
}

/// Items per slab between the window stages.
const SLAB_ITEMS: usize = 256;

/// Makes a slab output hand each `work()` call's items downstream at once. A slab is passed
/// on only when fewer than `min_items` slots are left in it, so with the default (1) a few
/// windows could wait for hundreds more — for ever, behind a gate on a quiet band.
fn hand_over_at_once<T: futuresdr::runtime::dev::CpuSample>(w: &mut slab::Writer<T>) {
    w.set_min_buffer_size_in_items(SLAB_ITEMS);
    w.set_min_items(SLAB_ITEMS);
}

/// One window on its way to inference: `channels × window_len` samples, channel-major.
#[derive(Debug, Clone, Default)]
pub struct Window {
    /// Stream index (per channel) of the first sample.
    pub start: u64,
    /// The samples, shared (cloning a window does not copy them).
    pub iq: Arc<[C32]>,
    /// The SNR estimate in dB when the gate already made it.
    pub snr_db: Option<f32>,
}

/// One classified window, from the inference workers to the sink.
#[derive(Debug, Clone, Default)]
pub struct Classified {
    /// Stream index (per channel) of the first sample.
    pub start: u64,
    /// Up to three (class index, probability), most probable first.
    pub top_k: Vec<(usize, f32)>,
    /// SNR estimate, dB (mean over the window's channels).
    pub snr_db: f32,
    /// Azimuth in degrees from the model's own angle outputs, when its graph has them.
    pub model_azimuth_deg: Option<f32>,
    /// Elevation in degrees from the model's own angle outputs.
    pub model_elevation_deg: Option<f32>,
    /// Azimuth in degrees from the chain's array estimator (`[model.doa]`), computed for every
    /// multi-channel window whether or not the model gives angles too.
    pub doa_azimuth_deg: Option<f32>,
    /// Elevation in degrees from the array estimator.
    pub doa_elevation_deg: Option<f32>,
    /// The array estimator's method, when it gave a bearing.
    pub doa_method: Option<DoaMethod>,
}

impl Classified {
    /// The station's bearing (azimuth, elevation): the model's when it gives an azimuth, else
    /// the array estimator's.
    pub fn bearing(&self) -> (Option<f32>, Option<f32>) {
        if self.model_azimuth_deg.is_some() {
            (self.model_azimuth_deg, self.model_elevation_deg)
        } else {
            (self.doa_azimuth_deg, self.doa_elevation_deg)
        }
    }
}

/// The name a [`DoaMethod`] has in configs, detections and metric labels.
pub fn doa_method_name(method: DoaMethod) -> &'static str {
    match method {
        DoaMethod::Music => "music",
        DoaMethod::Bartlett => "bartlett",
    }
}

/// What is known about one source's stream, shared by the blocks that read it.
#[derive(Debug)]
pub struct StreamInfo {
    /// The source's name (the detections' stream id).
    pub name: String,
    /// `replay`, `synthetic`, `soapy` or `uhd`.
    pub kind: &'static str,
    /// Samples per second per channel.
    pub sample_rate_hz: f64,
    /// Tuning frequency, when known.
    pub center_freq_hz: Option<f64>,
    /// Channels in each frame.
    pub channels: usize,
    /// UTC time of sample 0 in ns since the Unix epoch: known up front (a capture's start
    /// time) or set by the source when its first sample arrives.
    start_ns: OnceLock<i64>,
}

impl StreamInfo {
    /// A stream whose start time is set later by its source (or now, if `start_ns` is given).
    pub fn new(
        name: impl Into<String>,
        kind: &'static str,
        sample_rate_hz: f64,
        center_freq_hz: Option<f64>,
        channels: usize,
        start_ns: Option<i64>,
    ) -> Self {
        let cell = OnceLock::new();
        if let Some(t) = start_ns {
            let _ = cell.set(t);
        }
        Self {
            name: name.into(),
            kind,
            sample_rate_hz,
            center_freq_hz,
            channels,
            start_ns: cell,
        }
    }

    /// Sets the time of sample 0 unless it is already known.
    pub fn mark_start(&self, unix_ns: i64) {
        let _ = self.start_ns.set(unix_ns);
    }

    /// UTC ns of stream sample `index` (`now` if the stream has not started yet).
    pub fn time_of(&self, index: u64) -> i64 {
        let start = *self.start_ns.get_or_init(time::now_unix_ns);
        let offset = index as f64 / self.sample_rate_hz * 1e9;
        start.saturating_add(offset as i64)
    }
}

/// The first error a block ran into, kept so the run can report it (FutureSDR itself only
/// logs it and stops the flowgraph).
#[derive(Debug, Clone, Default)]
pub struct Fault(Arc<Mutex<Option<String>>>);

impl Fault {
    /// Records `message` unless an earlier fault is recorded; returns it as an error for the
    /// block to return.
    pub fn record(&self, message: String) -> anyhow::Error {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(message.clone());
        }
        anyhow::anyhow!(message)
    }

    /// The first fault, if any.
    pub fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_station_bearing_is_the_models_else_the_array_estimators() {
        let both = Classified {
            model_azimuth_deg: Some(35.0),
            model_elevation_deg: Some(10.0),
            doa_azimuth_deg: Some(20.0),
            doa_elevation_deg: Some(9.0),
            doa_method: Some(DoaMethod::Music),
            ..Default::default()
        };
        assert_eq!(both.bearing(), (Some(35.0), Some(10.0)));
        let array_only = Classified {
            model_azimuth_deg: None,
            model_elevation_deg: None,
            ..both.clone()
        };
        assert_eq!(array_only.bearing(), (Some(20.0), Some(9.0)));
        assert_eq!(Classified::default().bearing(), (None, None));
    }

    #[test]
    fn every_doa_method_is_a_bounded_metric_label() {
        for m in [DoaMethod::Music, DoaMethod::Bartlett] {
            let name = doa_method_name(m);
            assert!(crate::telemetry::BEARING_ESTIMATORS[1..].contains(&name));
            // The name is the method's config spelling.
            assert_eq!(
                serde_json::to_value(m).expect("serialise"),
                serde_json::json!(name)
            );
        }
    }
}
