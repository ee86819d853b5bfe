//! Inference with ONNX models through ONNX Runtime (the `ort` crate, runtime library loaded
//! at run time).
//!
//! - [`runtime`]: finds and loads the ONNX Runtime shared library once per process — from the
//!   config, `ORT_DYLIB_PATH`, or well-known places — and says what it tried when it cannot.
//! - [`card`]: the model card `models/<name>.json` beside `models/<name>.onnx`, parsed strictly
//!   and checked against the ONNX graph's inputs and outputs.
//! - [`session`]: [`Model`] — a validated session that turns batches of IQ windows into class
//!   probabilities, top-k and angles, preprocessing them through [`crate::dsp`] (the one path
//!   shared with the trainer); execution-provider choice (CUDA → CPU) and reused buffers.
//! - [`batch`]: [`Batcher`] — collects windows until a batch is full or a deadline passes.
//!
//! ```text
//! card.json ──▶ ModelCard ─┐
//! model.onnx ──▶ Session ──┴─▶ validate ──▶ Model
//! windows ──▶ Batcher ──▶ Model::run: normalise ─▶ representation ─▶ ort ─▶ softmax ─▶ Output
//! ```

pub mod batch;
pub mod card;
pub mod runtime;
pub mod session;

use std::path::PathBuf;

pub use batch::Batcher;
pub use card::ModelCard;
pub use runtime::{ExecutionPreference, Runtime, RuntimeOptions};
pub use session::{Model, Output, Provider};

/// Why loading the runtime, reading a model card, loading a model or running it failed. Each
/// message names the file (or model) and what to fix.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    /// No candidate ONNX Runtime library could be loaded.
    #[error("{}", runtime::not_found_message(.tried))]
    RuntimeNotFound {
        /// Every place tried, in order, with why it did not work.
        tried: Vec<runtime::Attempt>,
    },
    /// A different runtime library is already loaded in this process.
    #[error(
        "ONNX Runtime is already loaded from {loaded} in this process and cannot be swapped for \
         {requested}; use one runtime library per process (set the same path everywhere)"
    )]
    RuntimeConflict {
        /// The library loaded first.
        loaded: PathBuf,
        /// The library asked for now.
        requested: PathBuf,
    },
    /// The runtime library loaded but its environment could not be created.
    #[error("ONNX Runtime from {library}: cannot create its environment: {message}")]
    RuntimeInit {
        /// The library.
        library: PathBuf,
        /// ONNX Runtime's message.
        message: String,
    },
    /// A model card cannot be read, parsed, or disagrees with itself or with its ONNX graph.
    #[error("model card {path}: {message}")]
    Card {
        /// The card file.
        path: PathBuf,
        /// What is wrong, naming the field.
        message: String,
    },
    /// An ONNX model has no card beside it.
    #[error(
        "model {onnx}: no model card at {card}; a model is only served with its card (the \
         trainer's export writes both)"
    )]
    MissingCard {
        /// The model file.
        onnx: PathBuf,
        /// Where the card was expected.
        card: PathBuf,
    },
    /// ONNX Runtime refused the model file or the session options.
    #[error("model {path}: ONNX Runtime cannot load it: {message}")]
    Model {
        /// The model file.
        path: PathBuf,
        /// ONNX Runtime's message.
        message: String,
    },
    /// The execution provider asked for is not available.
    #[error("model {path}: execution provider {provider} is not available: {reason}")]
    Provider {
        /// The model file.
        path: PathBuf,
        /// The provider asked for.
        provider: &'static str,
        /// Why not.
        reason: String,
    },
    /// The windows handed to [`Model::run`] do not fit the model's card.
    #[error("model '{model}': {message}")]
    Input {
        /// The model's name (from its card).
        model: String,
        /// What does not fit.
        message: String,
    },
    /// A [`Batcher`] was misused or misconfigured.
    #[error("batcher: {0}")]
    Batcher(String),
    /// ONNX Runtime failed while running, or returned outputs that disagree with the card.
    #[error("model '{model}': inference failed: {message}")]
    Run {
        /// The model's name (from its card).
        model: String,
        /// What failed.
        message: String,
    },
}

/// Result alias of this module.
pub type Result<T, E = InferError> = std::result::Result<T, E>;
