//! The ONNX writer: builds standard ONNX graphs from trained weights and writes `.onnx` files.
//!
//! - [`proto`]: the ONNX IR subset as prost messages (hand-written, field numbers of
//!   `onnx.proto3`).
//! - [`graph`]: [`GraphBuilder`] — inputs/outputs with a symbolic batch axis, initializers, nodes
//!   with unique names, whole model graphs embedded under a prefix (`embed`), model metadata,
//!   `to_bytes` / `save`.
//! - [`ops`]: layer helpers that map framework weights (burn's layouts, and PyTorch's where they
//!   differ) onto standard operators: convolutions, normalisation, activations, pooling, LSTM,
//!   GRU (unrolled: the writer has no sub-graph attributes), multi-head self- and
//!   cross-attention; and weightless helpers for the families' arithmetic — elementwise
//!   functions, slices and splits, reductions, routing by a condition (`less`, `where_`,
//!   `cast`), `atan2`, L2 normalisation and cosine similarity to a stored table.
//!
//! Models target ONNX IR version [`IR_VERSION`] and the default-domain operator set [`OPSET`]
//! (the first with `LayerNormalization`), which onnxruntime ≥ 1.12 and `onnx.checker` accept.
//!
//! ```
//! use specwatch::onnx::{Dim, GraphBuilder, ops};
//!
//! let mut g = GraphBuilder::new("tiny");
//! let x = g.input("x", &[Dim::batch(), Dim::from(4)]).unwrap();
//! let y = ops::relu(&mut g, &x).unwrap();
//! g.output(&y, &[Dim::batch(), Dim::from(4)]).unwrap();
//! let bytes = g.to_bytes().unwrap();
//! assert!(!bytes.is_empty());
//! ```

pub mod graph;
pub mod ops;
pub mod proto;

pub use graph::{Dim, GraphBuilder, Weights};

use std::path::PathBuf;

/// ONNX IR version written into every model (IR 8: onnx 1.12+, onnxruntime 1.12+).
pub const IR_VERSION: i64 = 8;

/// Version of the default (`ai.onnx`) operator set the graphs are written against.
pub const OPSET: i64 = 17;

/// Name of the symbolic batch dimension used by [`Dim::batch`].
pub const BATCH: &str = "N";

/// What can go wrong while building or writing a model. Messages name the layer (or graph, or
/// file) and say what was expected.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// A weight's data length disagrees with its own declared shape.
    #[error("layer '{layer}': {tensor} has {len} values but its shape {shape:?} holds {expected}")]
    WeightLen {
        layer: String,
        tensor: String,
        shape: Vec<usize>,
        len: usize,
        expected: usize,
    },
    /// A weight has the wrong shape for the layer.
    #[error("layer '{layer}': {tensor} is {got:?} but expected {expected:?} ({meaning})")]
    WeightShape {
        layer: String,
        tensor: String,
        got: Vec<usize>,
        expected: Vec<usize>,
        meaning: String,
    },
    /// A layer option that has no faithful ONNX form, or an inconsistent option.
    #[error("layer '{layer}': {what}")]
    Layer { layer: String, what: String },
    /// The graph is malformed: unknown value, value defined twice, duplicate metadata, …
    #[error("graph '{graph}': {what}")]
    Graph { graph: String, what: String },
    /// The model file could not be written.
    #[error("write ONNX model {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Result alias of this module.
pub type Result<T, E = OnnxError> = std::result::Result<T, E>;
