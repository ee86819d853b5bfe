//! [`Framer`]: picks a model's channels out of a source's frames and cuts windows.

use std::sync::Arc;

use futuresdr::prelude::*;
use futuresdr::runtime::dev::prelude::*;

use super::Window;
use crate::dsp::frame::{FrameSpec, Framer as StreamFramer};
use crate::iq::C32;
use crate::telemetry::Metrics;

/// Most frames taken from the input per call, so one call never holds the executor long.
const MAX_FRAMES_PER_CALL: usize = 1 << 15;

/// Cuts a source's frames into [`Window`]s of one model's channels, window length and hop.
///
/// # Stream Inputs
///
/// `input`: `C32` frames of the source (`source_channels` samples per frame, channel after
/// channel).
///
/// # Stream Outputs
///
/// `output`: [`Window`]s, `channels.len() × len` samples, channel-major, tagged with the stream
/// index of their first sample.
///
/// # Usage
/// ```no_run
/// # use specwatch::dsp::frame::FrameSpec;
/// # use specwatch::flowgraph::Framer;
/// # let metrics = specwatch::telemetry::Metrics::new();
/// // Channels 0 and 2 of a 4-channel source, 1024-sample windows every 512 samples.
/// let spec = FrameSpec::new(1024, 512, 2).expect("valid");
/// let framer = Framer::new(4, vec![0, 2], spec, "x300", metrics);
/// ```
#[derive(Block)]
pub struct Framer {
    #[input]
    input: DefaultCpuReader<C32>,
    #[output]
    output: slab::Writer<Window>,
    source_channels: usize,
    pick: Vec<usize>,
    framer: StreamFramer,
    per_channel: Vec<Vec<C32>>,
    scratch: Vec<C32>,
    source: String,
    metrics: Arc<Metrics>,
}

impl Framer {
    /// A framer over frames of `source_channels` channels, keeping `pick` (indexes into the
    /// frame, in window order); `spec.channels` must equal `pick.len()`.
    ///
    /// # Panics
    /// When `pick` is empty, names a channel ≥ `source_channels`, or disagrees with `spec`
    /// (the station checks these before building the graph).
    pub fn new(
        source_channels: usize,
        pick: Vec<usize>,
        spec: FrameSpec,
        source: &str,
        metrics: Arc<Metrics>,
    ) -> Self {
        assert!(
            !pick.is_empty() && pick.iter().all(|&c| c < source_channels),
            "channels {pick:?} of a {source_channels}-channel source"
        );
        assert_eq!(spec.channels, pick.len(), "frame spec channels");
        Self {
            input: Default::default(),
            output: {
                let mut w = slab::Writer::default();
                super::hand_over_at_once(&mut w);
                w
            },
            source_channels,
            per_channel: vec![Vec::new(); pick.len()],
            pick,
            framer: StreamFramer::new(spec),
            scratch: vec![C32::new(0.0, 0.0); spec.window_samples()],
            source: source.to_string(),
            metrics,
        }
    }

    /// Moves complete windows from the stream framer to the output; whether any are left.
    fn emit(&mut self) -> bool {
        let out = self.output.slice();
        let mut produced = 0;
        while produced < out.len() {
            match self.framer.next_window(&mut self.scratch) {
                Ok(Some(start)) => {
                    out[produced] = Window {
                        start,
                        iq: Arc::from(self.scratch.as_slice()),
                        snr_db: None,
                    };
                    produced += 1;
                }
                _ => break,
            }
        }
        self.output.produce(produced);
        if produced > 0 {
            self.metrics
                .windows_framed_total
                .with_label_values(&[self.source.as_str()])
                .inc_by(produced as u64);
        }
        self.framer.has_window()
    }
}

impl Kernel for Framer {
    async fn work(
        &mut self,
        io: &mut WorkIo,
        _mo: &mut MessageOutputs,
        _meta: &mut BlockMeta,
    ) -> Result<()> {
        // Windows already cut go first; while the output is full, no input is taken (the
        // framer's buffer stays bounded) — the sources never wait on this, the buffer between
        // them absorbs it and the gate/inference stages never block.
        if self.emit() {
            return Ok(());
        }
        let input = self.input.slice();
        let frames = (input.len() / self.source_channels).min(MAX_FRAMES_PER_CALL);
        if frames > 0 {
            for (buf, &c) in self.per_channel.iter_mut().zip(&self.pick) {
                buf.clear();
                buf.extend(
                    input[..frames * self.source_channels]
                        .iter()
                        .skip(c)
                        .step_by(self.source_channels),
                );
            }
            let slices: Vec<&[C32]> = self.per_channel.iter().map(Vec::as_slice).collect();
            self.framer
                .push_channels(&slices)
                .map_err(|e| anyhow::anyhow!("framer: {e}"))?;
            self.input.consume(frames * self.source_channels);
            io.call_again = true;
        }
        let pending = self.emit();
        if self.input.finished() && !pending && self.input.slice().len() < self.source_channels {
            io.finished = true;
        }
        Ok(())
    }
}
