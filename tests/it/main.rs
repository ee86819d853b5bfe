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
#[cfg(feature = "train")]
mod pretrain;
mod radioml;
#[cfg(feature = "train")]
mod recordings;
mod store;
mod synth;
#[cfg(feature = "train")]
mod train;
