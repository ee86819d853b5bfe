//! The signal generator: modulators, an audio source for the analog classes, channel impairments,
//! antenna arrays, and the published dataset recipes that combine them.
//!
//! - [`pulse`]: root-raised-cosine and Gaussian pulse shaping, polyphase interpolation.
//! - [`digital`]: linearly modulated classes (PSK, QAM, PAM/ASK, APSK, OOK, OQPSK).
//! - [`fsk`]: continuous-phase classes (CPFSK, GFSK, GMSK).
//! - [`analog`]: AM-DSB / AM-SSB (with and without carrier), WBFM/FM.
//! - [`audio`]: the speech-like audio source (or a user's WAV file) the analog classes modulate.
//! - [`classes`]: the registry from class name to modulator.
//! - [`channel`]: the RadioML dynamic channel (sample-rate and carrier offset, Rician multipath
//!   fading), AWGN at an exact per-window SNR, phase noise, IQ imbalance, random gain.
//! - [`antenna`]: a source seen by an antenna array (steering, element errors, coherent multipath).
//! - [`recipe`]: the named recipes (`rml2016a`, `rml2018a`, `zsl7`, `aoa4`).
//! - [`generate`]: deterministic, parallel generation of a whole dataset folder.
//! - [`snr_convention`]: the SNR axis of `snr.npy` — true per-window SNR, or RadioML 2016.10a's
//!   nominal label with the noise set as its published script set it.
//!
//! Determinism: every window draws from its own random stream, derived from the dataset seed and
//! the window's index ([`window_rng`]), so the data does not depend on the number of threads.

pub mod analog;
pub mod antenna;
pub mod audio;
pub mod channel;
pub mod classes;
pub mod digital;
pub mod fsk;
pub mod generate;
pub mod pulse;
pub mod recipe;
pub mod snr_convention;

use std::path::PathBuf;

use rand::SeedableRng;

use crate::dsp::array::{ArrayError, ArrayGeometry};
use crate::iq::C32;

/// The random generator every part of the synthesiser draws from.
pub type SynthRng = rand_chacha::ChaCha8Rng;

/// Revision of the generator's signal models; recorded in every manifest and bumped whenever
/// the same seed would produce different samples.
pub const GENERATOR_REVISION: u32 = 1;

/// The random stream of window `index` of a dataset made with `seed`.
pub fn window_rng(seed: u64, index: u64) -> SynthRng {
    let mut rng = SynthRng::seed_from_u64(seed);
    rng.set_stream(index);
    rng
}

/// A source of complex baseband samples of one modulation class.
pub trait Modulator: Send + Sync {
    /// Generates `len` samples of a fresh random stretch of the signal (random payload, random
    /// symbol timing), scaled so that the signal's long-run mean power is 1.
    fn generate(&self, rng: &mut SynthRng, len: usize) -> Vec<C32>;
}

/// Settings that change what a recipe makes, beyond its defaults. Every field is recorded in the
/// manifest of a generated dataset.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct RecipeOptions {
    /// A WAV file whose audio the analog classes modulate instead of the built-in speech-like source.
    pub wav: Option<PathBuf>,
    /// The array of a multi-channel recipe (aoa4 defaults to a 2×2 URA at λ/2).
    pub array: Option<ArrayGeometry>,
    /// Per-element gain and phase errors (aoa4).
    pub element_errors: bool,
    /// Coherent multipath: delayed copies arriving from other directions (aoa4).
    pub multipath: bool,
    /// Oscillator phase noise.
    pub phase_noise: bool,
    /// Receiver IQ gain/phase imbalance.
    pub iq_imbalance: bool,
    /// A random receiver gain per window (−10..+10 dB), so models must not rely on absolute level.
    pub random_gain: bool,
}

/// Errors from the generator; each names the recipe, class, parameter or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("unknown recipe '{0}'; expected one of rml2016a, rml2018a, zsl7, aoa4")]
    UnknownRecipe(String),
    #[error("unknown modulation class '{0}'")]
    UnknownClass(String),
    #[error("parameter '{name}' {problem}")]
    Param { name: &'static str, problem: String },
    #[error("audio file {path}: {problem}")]
    Audio { path: PathBuf, problem: String },
    #[error(transparent)]
    Array(#[from] ArrayError),
    #[error(transparent)]
    Dataset(#[from] crate::iq::dataset::DatasetError),
}
