//! specwatch's integration tests: one binary, one module per area.

mod common;

mod api;
mod channel;
mod cli;
#[cfg(feature = "train")]
mod compose;
mod daemon;
mod dataset;
mod deploy;
mod dsp;
mod eval;
#[cfg(feature = "train")]
mod export;
mod infer;
mod iq_files;
#[cfg(feature = "train")]
mod objectives;
mod onnx;
mod radioml;
mod store;
mod synth;
#[cfg(feature = "train")]
mod train;
