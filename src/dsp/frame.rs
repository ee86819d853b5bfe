//! Framing: cutting aligned multi-channel sample streams into windows of `len` samples every
//! `hop` samples, each tagged with the stream index of its first sample.
//!
//! Buffers are channel-major: a block of `channels × n` samples holds channel 0's `n` samples,
//! then channel 1's, and so on; a window is `channels × len` samples in the same layout. Sample
//! indices count samples *per channel* from the start of the stream.
//!
//! `hop < len` gives overlapping windows, `hop == len` contiguous ones, `hop > len` skips
//! `hop − len` samples between windows (skipped samples are never stored).
//!
//! [`Framer`] is the streaming form used on the daemon's hot path: push chunks of any size, then
//! copy each complete window into a caller buffer ([`Framer::next_window`]) — no allocation per
//! window. [`frame_buffer`] frames a whole buffer at once.

use crate::dsp::DspError;
use crate::dsp::error::{exact_shape, nonzero, per_channel};
use crate::iq::C32;

/// Window length, hop and channel count, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSpec {
    /// Samples per channel in a window.
    pub len: usize,
    /// Samples per channel between the starts of consecutive windows.
    pub hop: usize,
    /// Number of aligned channels.
    pub channels: usize,
}

impl FrameSpec {
    /// Checks that `len`, `hop` and `channels` are all at least 1.
    pub fn new(len: usize, hop: usize, channels: usize) -> Result<Self, DspError> {
        nonzero("len", len)?;
        nonzero("hop", hop)?;
        nonzero("channels", channels)?;
        Ok(Self { len, hop, channels })
    }

    /// Samples in one window across all channels (`channels × len`).
    pub fn window_samples(&self) -> usize {
        self.channels * self.len
    }

    /// How many complete windows `samples_per_channel` samples give.
    pub fn window_count(&self, samples_per_channel: usize) -> usize {
        if samples_per_channel < self.len {
            0
        } else {
            (samples_per_channel - self.len) / self.hop + 1
        }
    }
}

/// Frames a whole channel-major buffer (`channels × n`) into windows.
///
/// Returns the windows back to back, `[windows, channels, len]` (window `w` starts at sample
/// `w × hop` of each channel). Samples after the last complete window are dropped.
pub fn frame_buffer(buffer: &[C32], spec: FrameSpec) -> Result<Vec<C32>, DspError> {
    let n = per_channel("buffer", buffer.len(), spec.channels)?;
    let count = spec.window_count(n);
    let mut out = Vec::with_capacity(count * spec.window_samples());
    for w in 0..count {
        let start = w * spec.hop;
        for ch in 0..spec.channels {
            out.extend_from_slice(&buffer[ch * n + start..ch * n + start + spec.len]);
        }
    }
    Ok(out)
}

/// A streaming framer over aligned channels.
///
/// Keeps per-channel buffers of the samples not yet consumed; they grow to at most about
/// `len + hop + chunk` samples and are compacted in place, so steady-state operation does not
/// allocate.
#[derive(Debug, Clone)]
pub struct Framer {
    spec: FrameSpec,
    /// Per-channel pending samples; `buf[ch][0]` has stream index `buf_start`.
    buf: Vec<Vec<C32>>,
    buf_start: u64,
    /// Stream index of the first sample of the next window.
    next_start: u64,
    /// Samples per channel pushed so far.
    pushed: u64,
}

impl Framer {
    /// A framer for `spec`, starting at stream sample 0.
    pub fn new(spec: FrameSpec) -> Self {
        Self {
            spec,
            buf: vec![Vec::with_capacity(2 * spec.len.max(spec.hop)); spec.channels],
            buf_start: 0,
            next_start: 0,
            pushed: 0,
        }
    }

    /// The framing parameters.
    pub fn spec(&self) -> FrameSpec {
        self.spec
    }

    /// Samples per channel pushed since the start.
    pub fn samples_pushed(&self) -> u64 {
        self.pushed
    }

    /// Pushes a channel-major chunk of `channels × n` samples (any `n`, including 0).
    pub fn push(&mut self, chunk: &[C32]) -> Result<(), DspError> {
        let n = per_channel("chunk", chunk.len(), self.spec.channels)?;
        let skip = self.start_chunk(n);
        for (ch, b) in self.buf.iter_mut().enumerate() {
            b.extend_from_slice(&chunk[ch * n + skip..(ch + 1) * n]);
        }
        self.pushed += n as u64;
        Ok(())
    }

    /// Pushes one slice per channel; all slices must have the same length.
    pub fn push_channels(&mut self, channels: &[&[C32]]) -> Result<(), DspError> {
        if channels.len() != self.spec.channels {
            return Err(DspError::param(
                "channels",
                format!("{} slices", channels.len()),
                format!("{} slices, one per channel", self.spec.channels),
            ));
        }
        let n = channels.first().map_or(0, |c| c.len());
        if let Some(bad) = channels.iter().position(|c| c.len() != n) {
            return Err(DspError::param(
                "channels",
                format!("slice {bad} of {} samples", channels[bad].len()),
                format!("{n} samples in every slice, like channel 0"),
            ));
        }
        let skip = self.start_chunk(n);
        for (b, s) in self.buf.iter_mut().zip(channels) {
            b.extend_from_slice(&s[skip..]);
        }
        self.pushed += n as u64;
        Ok(())
    }

    /// Prepares for a chunk of `n` samples per channel and returns how many of its leading
    /// samples lie before the next window and need not be stored (only when `hop > len`).
    fn start_chunk(&mut self, n: usize) -> usize {
        let skip = self.next_start.saturating_sub(self.pushed).min(n as u64);
        // The buffers are empty whenever the next window starts beyond them (see `compact`).
        if self.buf[0].is_empty() {
            self.buf_start = self.pushed + skip;
        }
        skip as usize
    }

    /// Whether a complete window is ready.
    pub fn has_window(&self) -> bool {
        self.next_start >= self.buf_start
            && self.next_start + self.spec.len as u64 <= self.buf_start + self.buf[0].len() as u64
    }

    /// Copies the next complete window (`channels × len`, channel-major) into `out` and returns
    /// the stream index of its first sample, or `None` when more samples are needed.
    ///
    /// `out` must hold exactly `channels × len` samples.
    pub fn next_window(&mut self, out: &mut [C32]) -> Result<Option<u64>, DspError> {
        exact_shape("out", out.len(), self.spec.channels, self.spec.len)?;
        if !self.has_window() {
            return Ok(None);
        }
        let len = self.spec.len;
        let offset = (self.next_start - self.buf_start) as usize;
        for (ch, o) in out.chunks_exact_mut(len).enumerate() {
            o.copy_from_slice(&self.buf[ch][offset..offset + len]);
        }
        let start = self.next_start;
        self.next_start += self.spec.hop as u64;
        self.compact();
        Ok(Some(start))
    }

    /// Calls `f(first_sample_index, window)` for every complete window, reusing `scratch`
    /// (resized to `channels × len` once) as the window buffer.
    pub fn drain_windows(
        &mut self,
        scratch: &mut Vec<C32>,
        mut f: impl FnMut(u64, &[C32]),
    ) -> usize {
        scratch.resize(self.spec.window_samples(), C32::new(0.0, 0.0));
        let mut count = 0;
        while let Ok(Some(start)) = self.next_window(scratch) {
            f(start, scratch);
            count += 1;
        }
        count
    }

    /// Drops buffered samples that no future window needs.
    fn compact(&mut self) {
        let held = self.buf[0].len() as u64;
        let drop = self.next_start.saturating_sub(self.buf_start).min(held) as usize;
        // Move only when the dead prefix outweighs what is left, so copying stays amortised O(1).
        if drop == 0 || drop < self.buf[0].len() - drop {
            return;
        }
        for b in &mut self.buf {
            b.copy_within(drop.., 0);
            let keep = b.len() - drop;
            b.truncate(keep);
        }
        self.buf_start += drop as u64;
    }
}
