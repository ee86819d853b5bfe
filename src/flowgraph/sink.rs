//! [`Sink`]: classified windows → [`Detection`] records → a [`DetectionSink`].

use std::sync::{Arc, Mutex};

use futuresdr::prelude::*;
use futuresdr::runtime::dev::prelude::*;

use super::{Classified, StreamInfo, time};
use crate::store::Detection;
pub use crate::store::DetectionSink;
use crate::telemetry::Metrics;

/// Keeps every detection in memory (for `specwatch replay` and tests).
#[derive(Debug, Default)]
pub struct CollectingSink(Mutex<Vec<Detection>>);

impl CollectingSink {
    /// An empty collector.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Takes the detections collected so far, sorted by model, stream position and channel.
    pub fn take(&self) -> Vec<Detection> {
        let mut v = std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()));
        v.sort_by(|a, b| {
            (a.model.as_str(), a.sample_start, a.channel).cmp(&(
                b.model.as_str(),
                b.sample_start,
                b.channel,
            ))
        });
        v
    }
}

impl DetectionSink for CollectingSink {
    fn submit(&self, d: Detection) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(d);
        true
    }
}

/// What the sink of one model chain stamps on its detections.
#[derive(Debug, Clone)]
pub struct ChainInfo {
    /// The source's stream.
    pub stream: Arc<StreamInfo>,
    /// Model card name and version.
    pub model: String,
    pub model_version: String,
    /// Class names in output order.
    pub classes: Vec<String>,
    /// Source channels of the window, in order.
    pub channels: Vec<u32>,
    /// Samples per channel in one window.
    pub window_len: usize,
    /// Windows below this top-1 probability are not stored.
    pub min_confidence: f32,
}

/// Class name of a detection from a model that gives angles only.
pub const UNCLASSIFIED: &str = "unclassified";

/// Builds [`Detection`]s from classified windows and submits them.
///
/// # Stream Inputs
///
/// `input`: [`Classified`] windows.
///
/// # Stream Outputs
///
/// None: detections leave through a [`DetectionSink`] (the store's writer, which never
/// blocks).
///
/// # Usage
/// ```no_run
/// # use std::sync::Arc;
/// # use specwatch::flowgraph::{CollectingSink, Sink, StreamInfo};
/// # use specwatch::flowgraph::sink::ChainInfo;
/// # let metrics = specwatch::telemetry::Metrics::new();
/// let stream = Arc::new(StreamInfo::new("synth", "synthetic", 200e3, None, 1, None));
/// let chain = ChainInfo {
///     stream,
///     model: "amc128".into(),
///     model_version: "1".into(),
///     classes: vec!["BPSK".into(), "QPSK".into()],
///     channels: vec![0],
///     window_len: 128,
///     min_confidence: 0.0,
/// };
/// let sink = Sink::new(chain, CollectingSink::new(), metrics);
/// ```
#[derive(Block)]
pub struct Sink {
    #[input]
    input: slab::Reader<Classified>,
    chain: ChainInfo,
    target: Arc<dyn DetectionSink>,
    metrics: Arc<Metrics>,
}

impl Sink {
    /// A sink for one model chain, submitting to `target`.
    pub fn new(chain: ChainInfo, target: Arc<dyn DetectionSink>, metrics: Arc<Metrics>) -> Self {
        Self {
            input: Default::default(),
            chain,
            target,
            metrics,
        }
    }

    /// The detection for one classified window, or `None` below the confidence floor.
    pub fn detection(chain: &ChainInfo, c: &Classified, observed_ns: i64) -> Option<Detection> {
        let (class, confidence) = match c.top_k.first() {
            Some(&(i, p)) => (
                chain
                    .classes
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| format!("class{i}")),
                p,
            ),
            None => (UNCLASSIFIED.to_string(), 0.0),
        };
        if !c.top_k.is_empty() && confidence < chain.min_confidence {
            return None;
        }
        let top_k = c
            .top_k
            .iter()
            .map(|&(i, p)| {
                (
                    chain
                        .classes
                        .get(i)
                        .cloned()
                        .unwrap_or_else(|| format!("class{i}")),
                    p,
                )
            })
            .collect();
        let (azimuth_deg, elevation_deg) = c.bearing();
        Some(Detection {
            id: 0,
            time_ns: chain.stream.time_of(c.start),
            stream: chain.stream.name.clone(),
            sample_start: c.start,
            sample_count: chain.window_len as u64,
            channel: chain.channels.first().copied().unwrap_or(0),
            channels: chain.channels.clone(),
            center_freq_hz: chain.stream.center_freq_hz,
            model: chain.model.clone(),
            model_version: chain.model_version.clone(),
            class,
            confidence,
            top_k,
            snr_db: Some(c.snr_db),
            azimuth_deg,
            elevation_deg,
            model_azimuth_deg: c.model_azimuth_deg,
            model_elevation_deg: c.model_elevation_deg,
            doa_azimuth_deg: c.doa_azimuth_deg,
            doa_elevation_deg: c.doa_elevation_deg,
            doa_method: c.doa_method.map(|m| super::doa_method_name(m).to_owned()),
            windows: 1,
            observed_ns,
        })
    }
}

impl Kernel for Sink {
    async fn work(
        &mut self,
        io: &mut WorkIo,
        _mo: &mut MessageOutputs,
        _meta: &mut BlockMeta,
    ) -> Result<()> {
        let input = self.input.slice();
        let n = input.len();
        let now = time::now_unix_ns();
        for c in input.iter() {
            let Some(d) = Self::detection(&self.chain, c, now) else {
                continue;
            };
            self.metrics.record_detection(&d);
            self.target.submit(d);
        }
        self.input.consume(n);
        if self.input.finished() && self.input.slice().is_empty() {
            io.finished = true;
        }
        Ok(())
    }
}
