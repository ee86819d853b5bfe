//! [`SyntheticSource`]: the signal generator as a live source — bursts of random classes at
//! random SNRs in a steady noise floor.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futuresdr::prelude::*;
use futuresdr::runtime::dev::prelude::*;
use rand::Rng;
use rand_distr::StandardNormal;

use super::{StartSignal, StreamInfo, time};
use crate::config::{ReplayMode, SyntheticSource as SyntheticConfig};
use crate::iq::C32;
use crate::synth::channel::mean_power;
use crate::synth::recipe::Recipe;
use crate::synth::{SynthRng, window_rng};
use crate::telemetry::Metrics;

/// Longest sleep between paced windows, so a stop request is seen promptly.
const MAX_PACING_SLEEP: Duration = Duration::from_millis(20);

/// Generates a continuous stream of recipe windows (each `recipe.window_len` samples on
/// `recipe.channels` channels), in bursts of `burst_windows` windows of one class and SNR.
///
/// Every window is scaled so its noise has unit mean power: the noise floor is steady (as a
/// receiver sees it) and a burst at SNR `s` dB has signal power `10^(s/10)`. A burst is noise
/// only with probability `1 − occupancy`. Window `k` draws from its own random stream
/// ([`window_rng`]`(seed, k)`), so a run is reproducible.
///
/// # Stream Inputs
///
/// None.
///
/// # Stream Outputs
///
/// `output`: `C32` frames of `recipe.channels` samples.
///
/// # Usage
/// ```no_run
/// # use std::sync::Arc;
/// # use specwatch::flowgraph::{StreamInfo, SyntheticSource};
/// # use specwatch::synth::recipe::Recipe;
/// # let metrics = specwatch::telemetry::Metrics::new();
/// let config: specwatch::config::SyntheticSource =
///     toml::from_str("recipe = \"rml2016a\"\nsnr_db = [0.0, 18.0]").expect("config");
/// let recipe = Recipe::by_name("rml2016a", &Default::default(), 1).expect("recipe");
/// let info = Arc::new(StreamInfo::new("synth", "synthetic", 200e3, None, 1, None));
/// let src = SyntheticSource::new(recipe, (0..11).collect(), &config, info, metrics);
/// ```
#[derive(Block)]
#[blocking]
pub struct SyntheticSource {
    #[output]
    output: DefaultCpuWriter<C32>,
    recipe: Recipe,
    classes: Vec<usize>,
    snr_db: [f32; 2],
    occupancy: f64,
    burst_windows: usize,
    max_windows: Option<u64>,
    mode: ReplayMode,
    seed: u64,
    /// Windows generated so far.
    window: u64,
    /// The current burst: class index (None: noise only) and SNR.
    burst: (Option<usize>, f32),
    /// Frames of the current window not yet written.
    pending: Vec<C32>,
    pending_at: usize,
    emitted: u64,
    started: Instant,
    info: Arc<StreamInfo>,
    metrics: Arc<Metrics>,
    start: StartSignal,
}

impl SyntheticSource {
    /// A source drawing `classes` (indexes into `recipe.classes`) as `config` says.
    pub fn new(
        recipe: Recipe,
        classes: Vec<usize>,
        config: &SyntheticConfig,
        info: Arc<StreamInfo>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            output: super::source_output(recipe.channels),
            recipe,
            classes,
            snr_db: config.snr_db,
            occupancy: config.occupancy,
            burst_windows: config.burst_windows.max(1),
            max_windows: config.windows,
            mode: config.mode,
            seed: config.seed,
            window: 0,
            burst: (None, 0.0),
            pending: Vec::new(),
            pending_at: 0,
            emitted: 0,
            started: Instant::now(),
            info,
            metrics,
            start: StartSignal::already_open(),
        }
    }

    /// Holds the first sample back until `start` opens (see [`StartSignal`]); the station
    /// does this for every source.
    pub fn held_until(mut self, start: StartSignal) -> Self {
        self.start = start;
        self
    }

    /// Generates window `self.window` into `pending` as interleaved frames.
    fn next_window(&mut self) {
        let mut rng: SynthRng = window_rng(self.seed, self.window);
        if self.window.is_multiple_of(self.burst_windows as u64) {
            let class = (rng.random::<f64>() < self.occupancy && !self.classes.is_empty())
                .then(|| self.classes[rng.random_range(0..self.classes.len())]);
            let [lo, hi] = self.snr_db;
            let snr = if hi > lo {
                rng.random_range(lo..=hi)
            } else {
                lo
            };
            self.burst = (class, snr);
            match class {
                Some(c) => debug!(
                    "source '{}': burst of {} at {snr:.1} dB from sample {}",
                    self.info.name, self.recipe.classes[c], self.emitted
                ),
                None => debug!(
                    "source '{}': noise only from sample {}",
                    self.info.name, self.emitted
                ),
            }
        }
        let (len, channels) = (self.recipe.window_len, self.recipe.channels);
        let planar: Vec<C32> = match self.burst {
            (Some(class), snr) => {
                let parts = self.recipe.generate_parts(&mut rng, class, snr);
                let pn = mean_power(&parts.noise);
                let scale = if pn > 0.0 {
                    (1.0 / pn.sqrt()) as f32
                } else {
                    1.0
                };
                parts
                    .signal
                    .iter()
                    .zip(&parts.noise)
                    .map(|(s, n)| (s + n) * scale)
                    .collect()
            }
            (None, _) => {
                let sigma = std::f32::consts::FRAC_1_SQRT_2;
                (0..len * channels)
                    .map(|_| {
                        C32::new(
                            sigma * rng.sample::<f32, _>(StandardNormal),
                            sigma * rng.sample::<f32, _>(StandardNormal),
                        )
                    })
                    .collect()
            }
        };
        self.pending.clear();
        self.pending.resize(len * channels, C32::new(0.0, 0.0));
        for c in 0..channels {
            for i in 0..len {
                self.pending[i * channels + c] = planar[c * len + i];
            }
        }
        self.pending_at = 0;
        self.window += 1;
    }
}

impl Kernel for SyntheticSource {
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
        let channels = self.recipe.channels;
        if self.pending_at >= self.pending.len() {
            if self.max_windows.is_some_and(|m| self.window >= m) {
                io.finished = true;
                return Ok(());
            }
            if self.mode == ReplayMode::Paced {
                let due = (self.started.elapsed().as_secs_f64() * self.info.sample_rate_hz) as u64;
                if due < self.emitted + self.recipe.window_len as u64 {
                    let missing = self.emitted + self.recipe.window_len as u64 - due;
                    let wait = Duration::from_secs_f64(missing as f64 / self.info.sample_rate_hz)
                        .min(MAX_PACING_SLEEP);
                    io.block_on(Timer::after(wait).map(|_| ()));
                    return Ok(());
                }
            }
            self.next_window();
        }
        let out = self.output.slice();
        let frames = (out.len() / channels).min((self.pending.len() - self.pending_at) / channels);
        if frames == 0 {
            return Ok(());
        }
        let n = frames * channels;
        out[..n].copy_from_slice(&self.pending[self.pending_at..self.pending_at + n]);
        self.output.produce(n);
        self.pending_at += n;
        self.emitted += frames as u64;
        self.metrics
            .samples_in_total
            .with_label_values(&[self.info.name.as_str()])
            .inc_by(frames as u64);
        io.call_again = true;
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
