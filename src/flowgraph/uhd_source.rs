//! [`UhdSource`]: USRPs through UHD's native API (build feature `uhd`) — the X300 array: two
//! motherboards on a shared external 10 MHz and PPS, their clocks aligned at a PPS edge, four
//! channels started together at one device time.

use std::sync::Arc;
use std::time::Duration;

use futuresdr::prelude::*;
use futuresdr::runtime::dev::prelude::*;
use uhd::{
    ReceiveErrorKind, StreamArgs, StreamCommand, StreamCommandType, StreamTime, TuneRequest, Usrp,
};

use super::hardware::{self, ReceiveThread, Session, hardware_work};
use super::{Fault, StartSignal, StreamInfo};
use crate::config::UhdSource as UhdConfig;
use crate::iq::C32;
use crate::telemetry::Metrics;

/// Samples per channel per receive call.
const READ_SAMPLES: usize = 16_384;

/// A UHD error with UHD's own last message, which says what really went wrong.
fn uhd_error(what: &str, e: uhd::Error) -> String {
    match uhd::last_error_message().filter(|m| !m.trim().is_empty()) {
        Some(m) => format!("{what}: {e} ({})", m.trim()),
        None => format!("{what}: {e}"),
    }
}

/// One streaming session: open every motherboard, share clock and time, tune, start all
/// channels at one future device time, receive until a stop or an error.
fn session(config: &UhdConfig, s: &mut Session<'_>) -> Result<(), String> {
    let args = config.device_args();
    let mut usrp =
        Usrp::open(&args).map_err(|e| uhd_error(&format!("cannot open USRPs '{args}'"), e))?;
    let boards = usrp
        .get_num_motherboards()
        .map_err(|e| uhd_error("cannot count motherboards", e))?;
    if boards != config.addresses.len() {
        return Err(format!(
            "UHD found {boards} motherboard(s) for {} address(es) {:?}",
            config.addresses.len(),
            config.addresses
        ));
    }
    for m in 0..boards {
        usrp.set_clock_source(&config.clock_source, m)
            .map_err(|e| {
                uhd_error(
                    &format!("motherboard {m}: clock source '{}'", config.clock_source),
                    e,
                )
            })?;
        usrp.set_time_source(&config.time_source, m).map_err(|e| {
            uhd_error(
                &format!("motherboard {m}: time source '{}'", config.time_source),
                e,
            )
        })?;
    }
    let available = usrp
        .get_num_rx_channels()
        .map_err(|e| uhd_error("cannot count receive channels", e))?;
    let channels: Vec<usize> = config.channels.iter().map(|&c| c as usize).collect();
    if let Some(bad) = channels.iter().find(|&&c| c >= available) {
        return Err(format!(
            "channel {bad} does not exist: the motherboards have {available} receive channel(s)"
        ));
    }
    for &c in &channels {
        usrp.set_rx_sample_rate(config.sample_rate_hz, c)
            .map_err(|e| {
                uhd_error(
                    &format!("channel {c}: sample rate {}", config.sample_rate_hz),
                    e,
                )
            })?;
        usrp.set_rx_frequency(&TuneRequest::with_frequency(config.center_freq_hz), c)
            .map_err(|e| {
                uhd_error(
                    &format!("channel {c}: frequency {}", config.center_freq_hz),
                    e,
                )
            })?;
        usrp.set_rx_gain(config.gain_db, c, "")
            .map_err(|e| uhd_error(&format!("channel {c}: gain {}", config.gain_db), e))?;
        if let Some(a) = &config.antenna {
            usrp.set_rx_antenna(a, c)
                .map_err(|e| uhd_error(&format!("channel {c}: antenna '{a}'"), e))?;
        }
    }
    if config.time_source != "internal" {
        // Sets time 0 on every board at the next PPS edge (waits for it).
        usrp.set_time_unknown_pps(0, 0.0)
            .map_err(|e| uhd_error("cannot set the device time at a PPS edge", e))?;
        if boards > 1 && !usrp.get_time_synchronized().unwrap_or(false) {
            return Err(
                "the motherboards' times are not synchronized after the PPS edge; check the \
                 shared PPS cabling"
                    .into(),
            );
        }
    }
    let now = usrp
        .get_current_time(0)
        .map_err(|e| uhd_error("cannot read the device time", e))?;
    let start_ns = now.into_nanos() + (config.start_delay_s * 1e9) as i64;
    let stream_args = StreamArgs::<C32>::builder()
        .wire_format("sc16".to_string())
        .channels(channels.clone())
        .build();
    let mut streamer = usrp.get_rx_stream(&stream_args).map_err(|e| {
        uhd_error(
            &format!("cannot open a receive stream on channels {channels:?}"),
            e,
        )
    })?;
    streamer
        .send_command(&StreamCommand {
            command_type: StreamCommandType::StartContinuous,
            time: StreamTime::Later(Duration::from_nanos(start_ns.max(0) as u64)),
        })
        .map_err(|e| uhd_error("cannot issue the timed stream start", e))?;
    let mut buffers = vec![vec![C32::new(0.0, 0.0); READ_SAMPLES]; channels.len()];
    let mut timeout = config.start_delay_s + 1.0;
    let result = loop {
        if s.stopping() {
            break Ok(());
        }
        let mut slices: Vec<&mut [C32]> = buffers.iter_mut().map(|b| b.as_mut_slice()).collect();
        let md = match streamer.receive(&mut slices, timeout, false) {
            Ok(md) => md,
            Err(e) => break Err(uhd_error("receive failed", e)),
        };
        match md.last_error() {
            None => {}
            Some(err) => match err.kind() {
                ReceiveErrorKind::Overflow => s.overflow("device"),
                ReceiveErrorKind::Timeout if s.delivered => {
                    break Err("no samples for 0.5 s (stream timeout)".to_string());
                }
                ReceiveErrorKind::Timeout => {
                    break Err(format!(
                        "no samples by the timed start {:.1} s after the PPS edge (is the PPS connected?)",
                        config.start_delay_s
                    ));
                }
                other => {
                    break Err(format!(
                        "stream error {other:?}: {}",
                        err.message().unwrap_or("no message")
                    ));
                }
            },
        }
        s.deliver(&buffers, md.samples());
        timeout = 0.5;
    };
    let _ = streamer.send_command(&StreamCommand {
        command_type: StreamCommandType::StopContinuous,
        time: StreamTime::Now,
    });
    result
}

/// Streams aligned channels of one or more USRP motherboards as frames, with a timed start
/// on a shared external clock and time; reconnects with backoff after errors and counts
/// overflows and stream errors.
///
/// # Stream Inputs
///
/// None.
///
/// # Stream Outputs
///
/// `output`: `C32` frames of `channels.len()` samples (four for the X300 array).
///
/// # Usage
/// ```no_run
/// # use std::sync::Arc;
/// # use specwatch::flowgraph::{StreamInfo, UhdSource};
/// # let metrics = specwatch::telemetry::Metrics::new();
/// let config: specwatch::config::UhdSource = toml::from_str(
///     "addresses = [\"addr=192.168.10.2\", \"addr=192.168.20.2\"]\n\
///      center_freq_hz = 2.45e9\nsample_rate_hz = 1e6",
/// )
/// .expect("config");
/// let info = Arc::new(StreamInfo::new("x300", "uhd", 1e6, Some(2.45e9), 4, None));
/// let src = UhdSource::new(config, info, metrics, Default::default());
/// ```
#[derive(Block)]
#[blocking]
pub struct UhdSource {
    #[output]
    output: DefaultCpuWriter<C32>,
    config: UhdConfig,
    receiver: Option<ReceiveThread>,
    info: Arc<StreamInfo>,
    metrics: Arc<Metrics>,
    fault: Fault,
    start: StartSignal,
}

impl UhdSource {
    /// A source for `config`; the devices are opened when the flowgraph starts.
    pub fn new(
        config: UhdConfig,
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

impl Kernel for UhdSource {
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

/// USRPs this host can see, one line each.
pub fn devices() -> Vec<String> {
    match Usrp::find("") {
        Ok(list) if list.is_empty() => vec!["UHD: no devices found".to_string()],
        Ok(list) => list.into_iter().map(|a| format!("UHD: {a}")).collect(),
        Err(e) => vec![uhd_error("UHD: cannot search for devices", e)],
    }
}
