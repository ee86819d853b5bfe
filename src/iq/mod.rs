//! Sample types and file I/O for IQ data.
//!
//! - [`npy`]: the NumPy `.npy` format — header parsing and streaming typed readers/writers,
//!   so large captures and datasets never have to be held in memory whole.
//! - [`capture`]: capture files (`.npy` complex64/complex128 `(channels, samples)` or `(samples,)`)
//!   read in chunks, with their optional JSON sidecar ([`sidecar`]).
//! - [`sigmf`]: SigMF recordings (`cf32_le`, `ci16_le`) read and written, detections as annotations.
//! - [`dataset`]: the dataset folder contract (`manifest.json`, `x.npy`, `y.npy`, `snr.npy`,
//!   `angles.npy`) shared by the generator, the RadioML importers and the trainer.
//! - [`radioml`]: loaders for the public RadioML files (2016.10a/b pickles, 2018.01A HDF5).
//! - [`recordings`]: long labelled recordings (`.npy` + sidecar each) cut into windows as a
//!   dataset that remembers each window's recording, so training splits by recording.

pub mod capture;
pub mod dataset;
pub mod npy;
pub mod radioml;
pub mod recordings;
pub mod sidecar;
pub mod sigmf;

/// One complex baseband sample, as every part of specwatch passes them around.
pub type C32 = num_complex::Complex<f32>;
