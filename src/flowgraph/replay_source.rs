//! [`ReplaySource`]: a recorded capture (`.npy` or SigMF) as a stream, paced or as fast as
//! the flowgraph takes it, once or in a loop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futuresdr::prelude::*;
use futuresdr::runtime::dev::prelude::*;

use super::{Fault, StartSignal, StreamInfo, time};
use crate::config::ReplayMode;
use crate::iq::C32;
use crate::iq::capture::Capture;
use crate::telemetry::Metrics;

/// Longest sleep between paced chunks, so a stop request is seen promptly.
const MAX_PACING_SLEEP: Duration = Duration::from_millis(20);

/// Streams a capture's samples as frames (every channel's sample `i`, then `i + 1`, …).
///
/// A read error or a non-finite sample stops the flowgraph with an error that names the file,
/// the channel and the sample index. Sample indexes keep counting up across loops.
///
/// # Stream Inputs
///
/// None.
///
/// # Stream Outputs
///
/// `output`: `C32` frames of `capture.channels()` samples.
///
/// # Usage
/// ```no_run
/// # use std::sync::Arc;
/// # use specwatch::config::ReplayMode;
/// # use specwatch::flowgraph::{ReplaySource, StreamInfo};
/// # use specwatch::iq::capture::Capture;
/// # let metrics = specwatch::telemetry::Metrics::new();
/// let capture = Capture::open("tests/data/qpsk.npy".as_ref()).expect("capture");
/// let info = Arc::new(StreamInfo::new("replay", "replay", 1e6, None, capture.channels(), None));
/// let src = ReplaySource::new(capture, ReplayMode::Fast, false, 8192, info, metrics, Default::default());
/// ```
#[derive(Block)]
#[blocking]
pub struct ReplaySource {
    #[output]
    output: DefaultCpuWriter<C32>,
    capture: Capture,
    mode: ReplayMode,
    repeat: bool,
    chunk: usize,
    /// Next sample of the file to read.
    position: u64,
    /// Frames emitted since the start (the stream index of the next one).
    emitted: u64,
    started: Instant,
    per_channel: Vec<Vec<C32>>,
    info: Arc<StreamInfo>,
    metrics: Arc<Metrics>,
    fault: Fault,
    start: StartSignal,
}

impl ReplaySource {
    /// A source over an opened capture; `info` carries its name, rate and start time.
    pub fn new(
        capture: Capture,
        mode: ReplayMode,
        repeat: bool,
        chunk: usize,
        info: Arc<StreamInfo>,
        metrics: Arc<Metrics>,
        fault: Fault,
    ) -> Self {
        let channels = capture.channels();
        Self {
            output: super::source_output(channels),
            capture,
            mode,
            repeat,
            chunk: chunk.max(1),
            position: 0,
            emitted: 0,
            started: Instant::now(),
            per_channel: vec![Vec::new(); channels],
            info,
            metrics,
            fault,
            start: StartSignal::already_open(),
        }
    }

    /// Holds the first sample back until `start` opens (see [`StartSignal`]); the station
    /// does this for every source.
    pub fn held_until(mut self, start: StartSignal) -> Self {
        self.start = start;
        self
    }

    /// Paced: frames due by now and not yet written.
    fn due_now(&self) -> u64 {
        let due = (self.started.elapsed().as_secs_f64() * self.info.sample_rate_hz) as u64;
        due.saturating_sub(self.emitted)
    }

    /// Paced: makes the next call wait until `missing` more frames are due (at most
    /// [`MAX_PACING_SLEEP`], so a stop is seen promptly).
    fn sleep_until_due(&self, io: &mut WorkIo, missing: u64) {
        let wait = Duration::from_secs_f64((missing as f64 / self.info.sample_rate_hz).max(1e-4))
            .min(MAX_PACING_SLEEP);
        io.block_on(Timer::after(wait).map(|_| ()));
    }
}

impl Kernel for ReplaySource {
    async fn init(&mut self, _mo: &mut MessageOutputs, _meta: &mut BlockMeta) -> Result<()> {
        self.started = Instant::now();
        self.info.mark_start(time::now_unix_ns());
        self.metrics
            .source_up
            .with_label_values(&[self.info.name.as_str()])
            .set(1);
        Ok(())
    }

    async fn work(
        &mut self,
        io: &mut WorkIo,
        _mo: &mut MessageOutputs,
        _meta: &mut BlockMeta,
    ) -> Result<()> {
        if !self.start.wait_for_start(io) {
            return Ok(());
        }
        let channels = self.per_channel.len();
        let left_in_file = self.capture.len() - self.position;
        // Write in large pieces: waiting until a chunk (or half the buffer, or the rest of the
        // file) fits keeps the source and the framer from trading single samples, each trade a
        // lock and a wake-up on both sides. The framer's consumption wakes this block again.
        let worth_writing = (self.chunk as u64)
            .min((self.output.max_items() / channels / 2).max(1) as u64)
            .min(left_in_file)
            .max(1);
        // Paced, the same rule holds in time: wait until a worthwhile piece is due (decided
        // before the buffer's lock is taken). Writing whatever few samples fell due since the
        // last call would spin this thread and wake the framers for every handful of samples.
        let due = (self.mode == ReplayMode::Paced).then(|| self.due_now());
        if let Some(due) = due
            && due < worth_writing
        {
            self.sleep_until_due(io, worth_writing - due);
            return Ok(());
        }
        let out = self.output.slice();
        let space = out.len() / channels;
        if (space as u64) < worth_writing {
            return Ok(());
        }
        let frames = (space as u64)
            .min(self.chunk as u64)
            .min(left_in_file)
            .min(due.unwrap_or(u64::MAX));
        let frames_usize = frames as usize;
        if let Err(e) = self
            .capture
            .read_into(self.position, frames_usize, &mut self.per_channel)
        {
            self.metrics
                .stream_errors_total
                .with_label_values(&[self.info.name.as_str()])
                .inc();
            return Err(self
                .fault
                .record(format!("source '{}': {e}", self.info.name)));
        }
        let out = &mut out[..frames_usize * channels];
        for (c, samples) in self.per_channel.iter().enumerate() {
            for (i, s) in samples.iter().enumerate() {
                out[i * channels + c] = *s;
            }
        }
        self.output.produce(frames_usize * channels);
        self.position += frames;
        self.emitted += frames;
        self.metrics
            .samples_in_total
            .with_label_values(&[self.info.name.as_str()])
            .inc_by(frames);
        if self.position == self.capture.len() {
            if self.repeat {
                self.position = 0;
            } else {
                io.finished = true;
                return Ok(());
            }
        }
        match due.map(|d| d - frames) {
            // Paced and caught up: sleep until the next piece is due.
            Some(still_due) if still_due < worth_writing => {
                self.sleep_until_due(io, worth_writing - still_due);
            }
            _ => io.call_again = true,
        }
        Ok(())
    }

    async fn deinit(&mut self, _mo: &mut MessageOutputs, _meta: &mut BlockMeta) -> Result<()> {
        self.metrics
            .source_up
            .with_label_values(&[self.info.name.as_str()])
            .set(0);
        Ok(())
    }
}
