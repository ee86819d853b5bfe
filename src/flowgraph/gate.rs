//! [`Gate`]: passes the windows worth classifying, counts the others.

use std::sync::Arc;

use futuresdr::prelude::*;
use futuresdr::runtime::dev::prelude::*;

use super::Window;
use crate::config::{GateConfig, GateKind};
use crate::dsp::energy::EnergyDetector;
use crate::dsp::snr::window_snr_db;
use crate::telemetry::Metrics;

/// How a gate judges one window.
#[derive(Debug)]
enum Rule {
    /// Energy over a tracked noise floor.
    Energy(Box<EnergyDetector>),
    /// Estimated SNR at least this many dB.
    Snr(f32),
    /// Everything passes.
    PassAll,
}

/// Passes windows to inference by energy, SNR or unconditionally.
///
/// # Stream Inputs
///
/// `input`: [`Window`]s.
///
/// # Stream Outputs
///
/// `output`: the windows that pass (an SNR gate leaves its estimate in [`Window::snr_db`]).
///
/// # Usage
/// ```no_run
/// # use specwatch::config::GateConfig;
/// # use specwatch::flowgraph::Gate;
/// # let metrics = specwatch::telemetry::Metrics::new();
/// let gate = Gate::new(&GateConfig::default(), 1, "synth", metrics).expect("valid gate");
/// ```
#[derive(Block)]
pub struct Gate {
    #[input]
    input: slab::Reader<Window>,
    #[output]
    output: slab::Writer<Window>,
    rule: Rule,
    channels: usize,
    source: String,
    metrics: Arc<Metrics>,
}

impl Gate {
    /// A gate for windows of `channels` channels from `source`.
    pub fn new(
        config: &GateConfig,
        channels: usize,
        source: &str,
        metrics: Arc<Metrics>,
    ) -> std::result::Result<Self, crate::dsp::DspError> {
        let rule = match config.kind {
            GateKind::Energy => Rule::Energy(Box::new(EnergyDetector::new(config.energy())?)),
            GateKind::Snr => Rule::Snr(config.snr_threshold_db()),
            GateKind::PassAll => Rule::PassAll,
        };
        Ok(Self {
            input: Default::default(),
            output: {
                let mut w = slab::Writer::default();
                super::hand_over_at_once(&mut w);
                w
            },
            rule,
            channels,
            source: source.to_string(),
            metrics,
        })
    }
}

impl Kernel for Gate {
    async fn work(
        &mut self,
        io: &mut WorkIo,
        _mo: &mut MessageOutputs,
        _meta: &mut BlockMeta,
    ) -> Result<()> {
        let input = self.input.slice();
        let out = self.output.slice();
        let (mut consumed, mut produced, mut rejected) = (0, 0, 0u64);
        while consumed < input.len() && produced < out.len() {
            let w = &input[consumed];
            consumed += 1;
            let pass = match &mut self.rule {
                Rule::PassAll => true,
                Rule::Energy(d) => d.update(&w.iq).pass,
                Rule::Snr(threshold) => {
                    let snr = window_snr_db(&w.iq, self.channels);
                    if snr >= *threshold {
                        out[produced] = Window {
                            snr_db: Some(snr),
                            ..w.clone()
                        };
                        produced += 1;
                    } else {
                        rejected += 1;
                    }
                    continue;
                }
            };
            if pass {
                out[produced] = w.clone();
                produced += 1;
            } else {
                rejected += 1;
            }
        }
        let more = consumed < input.len();
        self.input.consume(consumed);
        self.output.produce(produced);
        if rejected > 0 {
            self.metrics
                .windows_gate_rejected_total
                .with_label_values(&[self.source.as_str()])
                .inc_by(rejected);
        }
        // Input left means the output filled up; one more call takes the next slab if there
        // is one, else the block waits for the downstream block to free space.
        io.call_again = more && produced > 0;
        if self.input.finished() && self.input.slice().is_empty() {
            io.finished = true;
        }
        Ok(())
    }
}
