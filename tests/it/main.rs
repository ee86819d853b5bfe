//! specwatch's integration tests: one binary, one module per area.

mod common;

mod channel;
mod cli;
mod dataset;
mod dsp;
#[cfg(feature = "train")]
mod eval;
mod infer;
mod iq_files;
mod onnx;
mod radioml;
mod synth;
#[cfg(feature = "train")]
mod train;
