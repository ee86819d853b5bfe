//! Pure signal-processing functions shared by the trainer and the daemon: one preprocessing path,
//! so training and serving cannot drift apart.
//!
//! - [`frame`]: cutting (multi-channel, aligned) streams into windows with a hop.
//! - [`normalize`]: unit-RMS, L1 (as RadioML did) and peak normalisation.
//! - [`repr`]: model-input representations — I/Q, amplitude/phase, instantaneous frequency,
//!   FFT, wavelet — written as planar f32 rows.
//! - [`wavelet`]: multi-level discrete wavelet transform (Haar, Daubechies) and its inverse.
//! - [`psd`]: periodograms and Welch power spectral density.
//! - [`snr`]: per-window SNR estimators (spectral noise floor — the default — and M2M4).
//! - [`energy`]: energy detector with a tracked noise floor.
//! - [`array`]: array geometry and steering vectors.
//! - [`doa`]: classical direction finding (Bartlett, MUSIC) and the Cramér–Rao bound.
//! - [`linalg`]: small complex matrices and the Hermitian eigendecomposition (Jacobi).
//! - [`error`]: [`DspError`], the module's one error type.

pub mod array;
pub mod doa;
pub mod energy;
pub mod error;
pub mod frame;
pub mod linalg;
pub mod normalize;
pub mod psd;
pub mod repr;
pub mod snr;
pub mod wavelet;

pub use error::DspError;
