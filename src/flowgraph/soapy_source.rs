//! [`SoapySource`]: a SoapySDR receiver (build feature `soapy`).

use std::sync::Arc;

use futuresdr::prelude::*;
use futuresdr::runtime::dev::prelude::*;
use soapysdr::{Device, Direction, ErrorCode};

use super::hardware::{self, ReceiveThread, Session, hardware_work};
use super::{Fault, StartSignal, StreamInfo};
use crate::config::SoapySource as SoapyConfig;
use crate::iq::C32;
use crate::telemetry::Metrics;

/// Samples per channel per device read.
const READ_SAMPLES: usize = 16_384;

/// One streaming session: open, configure, activate, read until a stop or an error.
fn session(config: &SoapyConfig, s: &mut Session<'_>) -> Result<(), String> {
    let args = config.args.as_str();
    let device =
        Device::new(args).map_err(|e| format!("cannot open Soapy device '{args}': {e}"))?;
    let channels: Vec<usize> = config.channels.iter().map(|&c| c as usize).collect();
    for &c in &channels {
        let ctx = |what: &str, e: soapysdr::Error| format!("channel {c}: cannot set {what}: {e}");
        device
            .set_sample_rate(Direction::Rx, c, config.sample_rate_hz)
            .map_err(|e| ctx("sample rate", e))?;
        device
            .set_frequency(Direction::Rx, c, config.center_freq_hz, ())
            .map_err(|e| ctx("frequency", e))?;
        match config.gain_db {
            Some(g) => device
                .set_gain(Direction::Rx, c, g)
                .map_err(|e| ctx("gain", e))?,
            None => {
                if device.has_gain_mode(Direction::Rx, c).unwrap_or(false) {
                    device
                        .set_gain_mode(Direction::Rx, c, true)
                        .map_err(|e| ctx("automatic gain", e))?;
                }
            }
        }
        if let Some(a) = &config.antenna {
            device
                .set_antenna(Direction::Rx, c, a.as_str())
                .map_err(|e| ctx("antenna", e))?;
        }
    }
    let mut stream = device
        .rx_stream::<C32>(&channels)
        .map_err(|e| format!("cannot open a receive stream on channels {channels:?}: {e}"))?;
    stream
        .activate(None)
        .map_err(|e| format!("cannot start streaming: {e}"))?;
    let mut buffers = vec![vec![C32::new(0.0, 0.0); READ_SAMPLES]; channels.len()];
    while !s.stopping() {
        let mut slices: Vec<&mut [C32]> = buffers.iter_mut().map(|b| b.as_mut_slice()).collect();
        match stream.read(&mut slices, 100_000) {
            Ok(n) => s.deliver(&buffers, n),
            Err(e) if e.code == ErrorCode::Timeout => {}
            Err(e) if e.code == ErrorCode::Overflow => s.overflow("device"),
            Err(e) => {
                let _ = stream.deactivate(None);
                return Err(format!("stream error: {e}"));
            }
        }
    }
    stream
        .deactivate(None)
        .map_err(|e| format!("cannot stop streaming: {e}"))
}

/// Streams a Soapy device's channels as frames, reconnecting with backoff after errors;
/// overflows and stream errors are counted.
///
/// # Stream Inputs
///
/// None.
///
/// # Stream Outputs
///
/// `output`: `C32` frames of `channels.len()` samples.
///
/// # Usage
/// ```no_run
/// # use std::sync::Arc;
/// # use specwatch::flowgraph::{SoapySource, StreamInfo};
/// # let metrics = specwatch::telemetry::Metrics::new();
/// let config: specwatch::config::SoapySource =
///     toml::from_str("args = \"driver=rtlsdr\"\ncenter_freq_hz = 433.9e6\nsample_rate_hz = 1e6")
///         .expect("config");
/// let info = Arc::new(StreamInfo::new("rtl", "soapy", 2.4e6, Some(433.92e6), 1, None));
/// let src = SoapySource::new(config, info, metrics, Default::default());
/// ```
#[derive(Block)]
#[blocking]
pub struct SoapySource {
    #[output]
    output: DefaultCpuWriter<C32>,
    config: SoapyConfig,
    receiver: Option<ReceiveThread>,
    info: Arc<StreamInfo>,
    metrics: Arc<Metrics>,
    fault: Fault,
    start: StartSignal,
}

impl SoapySource {
    /// A source for `config`; the device is opened when the flowgraph starts.
    pub fn new(
        config: SoapyConfig,
        info: Arc<StreamInfo>,
        metrics: Arc<Metrics>,
        fault: Fault,
    ) -> Self {
        Self {
            output: super::source_output(info.channels),
            config,
            receiver: None,
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
}

impl Kernel for SoapySource {
    async fn init(&mut self, _mo: &mut MessageOutputs, _meta: &mut BlockMeta) -> Result<()> {
        let config = self.config.clone();
        self.receiver = Some(hardware::spawn(
            move |s| session(&config, s),
            self.config.retry(),
            self.info.clone(),
            self.metrics.clone(),
            self.fault.clone(),
        ));
        Ok(())
    }

    async fn work(
        &mut self,
        io: &mut WorkIo,
        _mo: &mut MessageOutputs,
        _meta: &mut BlockMeta,
    ) -> Result<()> {
        hardware_work!(self, io)
    }

    async fn deinit(&mut self, _mo: &mut MessageOutputs, _meta: &mut BlockMeta) -> Result<()> {
        if let Some(mut r) = self.receiver.take() {
            r.stop();
        }
        Ok(())
    }
}

/// Soapy devices this host can see, one line each.
pub fn devices() -> Vec<String> {
    match soapysdr::enumerate("") {
        Ok(list) if list.is_empty() => vec!["Soapy: no devices found".to_string()],
        Ok(list) => list.iter().map(|a| format!("Soapy: {a}")).collect(),
        Err(e) => vec![format!("Soapy: cannot enumerate devices: {e}")],
    }
}
