//! The registry from class name to modulator.
//!
//! Names follow the recipes that use them: RadioML 2016.10a (`8PSK, AM-DSB, AM-SSB, BPSK,
//! CPFSK, GFSK, PAM4, QAM16, QAM64, QPSK, WBFM`), RadioML 2018.01A (24 classes), the zero-shot
//! set (`2ASK, 4ASK, …`) and the AoA set (`CW-AM`, …). Where recipes name the same modulation
//! differently the names map to the same modulator: `QAM16` = `16QAM`, `QAM64` = `64QAM`,
//! `AM-DSB` = `AM-DSB-WC`, `AM-SSB` = `AM-SSB-SC`, `2ASK` = `OOK`. `PAM4` (bipolar) and `4ASK`
//! (unipolar) differ; see [`crate::synth::digital`].
//!
//! | class | modulator |
//! |---|---|
//! | BPSK, QPSK, 8PSK, 16PSK, 32PSK | [`Linear`] PSK, RRC α = `rolloff`, `sps` |
//! | QAM16/16QAM, 32QAM, QAM64/64QAM, 128QAM, 256QAM | [`Linear`] square or cross QAM |
//! | PAM4 | [`Linear`] bipolar 4-PAM |
//! | OOK/2ASK, 4ASK, 8ASK | [`Linear`] unipolar ASK |
//! | 16APSK, 32APSK, 64APSK, 128APSK | [`Linear`] DVB-S2/S2X rings |
//! | OQPSK | [`Linear`] QPSK, Q branch half a symbol late |
//! | CPFSK | [`ContinuousPhase`] k = 0.5 |
//! | GFSK | [`ContinuousPhase`] sensitivity 0.1 rad/sample, BT 0.35 |
//! | GMSK | [`ContinuousPhase`] h = 0.5, BT 0.3 |
//! | AM-DSB/AM-DSB-WC, AM-DSB-SC, AM-SSB/AM-SSB-SC, AM-SSB-WC | [`Am`] |
//! | WBFM | [`Wbfm`] (GNU Radio `wfm_tx`) |
//! | FM | [`Fm`] ±25 kHz |
//! | CW-AM | [`CwAm`] |

use std::f64::consts::PI;
use std::sync::Arc;

use crate::synth::analog::{Am, AmKind, CwAm, FM_DEVIATION_HZ, Fm, Wbfm};
use crate::synth::audio::AudioBank;
use crate::synth::digital::{Constellation, Linear};
use crate::synth::fsk::ContinuousPhase;
use crate::synth::{Modulator, SynthError};

/// What the modulators share: the audio bank and the pulse-shaping parameters.
#[derive(Debug, Clone)]
pub struct ModContext {
    /// Audio for the analog classes.
    pub audio: Arc<AudioBank>,
    /// Samples per symbol of the digital classes.
    pub samples_per_symbol: usize,
    /// Root-raised-cosine roll-off of the linear classes.
    pub rolloff: f32,
}

impl ModContext {
    /// 8 samples per symbol, roll-off 0.35 (the RadioML settings).
    pub fn new(audio: Arc<AudioBank>) -> Self {
        ModContext {
            audio,
            samples_per_symbol: 8,
            rolloff: 0.35,
        }
    }
}

/// Every class name [`modulator`] accepts.
pub fn known_classes() -> &'static [&'static str] {
    &[
        "BPSK",
        "QPSK",
        "8PSK",
        "16PSK",
        "32PSK",
        "OQPSK",
        "QAM16",
        "16QAM",
        "32QAM",
        "QAM64",
        "64QAM",
        "128QAM",
        "256QAM",
        "PAM4",
        "OOK",
        "2ASK",
        "4ASK",
        "8ASK",
        "16APSK",
        "32APSK",
        "64APSK",
        "128APSK",
        "CPFSK",
        "GFSK",
        "GMSK",
        "AM-DSB",
        "AM-DSB-WC",
        "AM-DSB-SC",
        "AM-SSB",
        "AM-SSB-SC",
        "AM-SSB-WC",
        "WBFM",
        "FM",
        "CW-AM",
    ]
}

/// Builds the modulator for a class name (exact, case-sensitive names; see the module table).
/// Unknown names are refused with [`SynthError::UnknownClass`].
pub fn modulator(class: &str, ctx: &ModContext) -> Result<Box<dyn Modulator>, SynthError> {
    if ctx.samples_per_symbol == 0 || ctx.samples_per_symbol > 64 {
        return Err(SynthError::Param {
            name: "samples_per_symbol",
            problem: format!("is {}; it must be 1 to 64", ctx.samples_per_symbol),
        });
    }
    if !(0.0..=1.0).contains(&ctx.rolloff) {
        return Err(SynthError::Param {
            name: "rolloff",
            problem: format!("is {}; it must be 0 to 1", ctx.rolloff),
        });
    }
    let sps = ctx.samples_per_symbol;
    let linear =
        |c: Constellation| -> Box<dyn Modulator> { Box::new(Linear::new(c, sps, ctx.rolloff)) };
    let am = |kind| -> Box<dyn Modulator> { Box::new(Am::new(ctx.audio.clone(), kind)) };
    Ok(match class {
        "BPSK" => linear(Constellation::psk(2, 0.0)),
        "QPSK" => linear(Constellation::psk(4, PI / 4.0)),
        "8PSK" => linear(Constellation::psk(8, 0.0)),
        "16PSK" => linear(Constellation::psk(16, 0.0)),
        "32PSK" => linear(Constellation::psk(32, 0.0)),
        "OQPSK" => Box::new(Linear::oqpsk(sps, ctx.rolloff)),
        "QAM16" | "16QAM" => linear(Constellation::qam_square(16)),
        "QAM64" | "64QAM" => linear(Constellation::qam_square(64)),
        "256QAM" => linear(Constellation::qam_square(256)),
        "32QAM" => linear(Constellation::qam_cross(32)),
        "128QAM" => linear(Constellation::qam_cross(128)),
        "PAM4" => linear(Constellation::pam(4)),
        "OOK" | "2ASK" => linear(Constellation::ask(2)),
        "4ASK" => linear(Constellation::ask(4)),
        "8ASK" => linear(Constellation::ask(8)),
        "16APSK" => linear(Constellation::apsk16()),
        "32APSK" => linear(Constellation::apsk32()),
        "64APSK" => linear(Constellation::apsk64()),
        "128APSK" => linear(Constellation::apsk128()),
        "CPFSK" => Box::new(ContinuousPhase::cpfsk(sps, 0.5)),
        "GFSK" => Box::new(ContinuousPhase::gfsk(sps, 0.1, 0.35)),
        "GMSK" => Box::new(ContinuousPhase::gmsk(sps, 0.3)),
        "AM-DSB" | "AM-DSB-WC" => am(AmKind::DsbWc),
        "AM-DSB-SC" => am(AmKind::DsbSc),
        "AM-SSB" | "AM-SSB-SC" => am(AmKind::SsbSc),
        "AM-SSB-WC" => am(AmKind::SsbWc),
        "WBFM" => Box::new(Wbfm::new(ctx.audio.clone())),
        "FM" => Box::new(Fm::new(ctx.audio.clone(), FM_DEVIATION_HZ)),
        "CW-AM" => Box::new(CwAm),
        other => return Err(SynthError::UnknownClass(other.to_string())),
    })
}
