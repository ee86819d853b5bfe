//! Pure signal-processing functions shared by the trainer and the daemon: one preprocessing path,
//! so training and serving cannot drift apart.
//!
//! - [`frame`]: cutting (multi-channel, aligned) streams into windows with a hop.
//! - [`normalize`]: unit-RMS, L1 (as RadioML did) and peak normalisation.
//! - [`repr`]: derived representations — amplitude/phase, instantaneous frequency, FFT.
//! - [`wavelet`]: discrete wavelet transform.
//! - [`psd`]: periodograms and Welch power spectral density.
//! - [`snr`]: per-window SNR estimators (M2M4, eigenvalue-based).
//! - [`energy`]: energy detector with a tracked noise floor.
//! - [`array`]: array geometry and steering vectors.
//! - [`doa`]: classical direction finding (Bartlett, MUSIC) and the Cramér–Rao bound.

pub mod array;
pub mod doa;
pub mod energy;
pub mod frame;
pub mod normalize;
pub mod psd;
pub mod repr;
pub mod snr;
pub mod wavelet;
