//! A trained model's interface, declared once: what it takes (the window, preprocessed as the
//! run trained it; the window's SNR when it asks for one) and what it gives (class logits,
//! azimuth and elevation). The one [`Interface`] drives the exported ONNX graph's inputs and
//! outputs ([`Interface::graph`]), the model card's `task`, `inputs`, `extra_inputs` and
//! `outputs` ([`Interface::card_inputs`], [`Interface::card_outputs`]), and the export's parity
//! check, which compares burn and ONNX Runtime on every declared output.
//!
//! ```text
//! Servable::interface ──▶ Interface ──▶ graph inputs/outputs ──▶ <name>.onnx
//!                                  └──▶ card task, inputs, extra_inputs, outputs ──▶ <name>.json
//! Servable::outputs (burn) ◀── parity, output by output ──▶ ONNX Runtime (infer::Model)
//! ```
//!
//! Graph names: the window input `iq` `[N, rows, len]`, the SNR input `snr_db` `[N, 1]`,
//! outputs `logits` `[N, classes]`, `azimuth` and `elevation` `[N, 1]` (degrees).

use burn::tensor::Tensor;

use super::models::{Model, ModelSpec, ONNX_INPUT, ONNX_OUTPUT};
use crate::dsp::normalize::Normalization;
use crate::dsp::repr::Representation;
use crate::infer::card::{
    DType, Dim as CardDim, ExtraInput, ExtraKind, OutputKind, OutputSpec, Task, WindowInput,
};
use crate::onnx::{Dim, GraphBuilder, OnnxError};

/// Name of the SNR input, `[N, 1]` dB.
pub const SNR_INPUT: &str = "snr_db";
/// Name of the azimuth output, `[N, 1]` degrees.
pub const AZIMUTH_OUTPUT: &str = "azimuth";
/// Name of the elevation output, `[N, 1]` degrees.
pub const ELEVATION_OUTPUT: &str = "elevation";

/// One output of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputDecl {
    /// Its name in the graph and on the card.
    pub name: &'static str,
    pub kind: OutputKind,
    /// Values per window.
    pub width: usize,
}

/// What a model takes and gives (see the module documentation).
#[derive(Debug, Clone, PartialEq)]
pub struct Interface {
    /// Input rows `2C` and samples per row.
    pub rows: usize,
    pub window_len: usize,
    pub normalization: Normalization,
    pub representation: Representation,
    /// Whether the model takes the window's SNR (dB) as a second input.
    pub snr_input: bool,
    /// Its outputs, in the order [`Servable::outputs`] gives them.
    pub outputs: Vec<OutputDecl>,
}

impl Interface {
    /// A classifier of `spec`'s windows: one input, class logits out.
    pub fn classifier(spec: &ModelSpec, normalization: Normalization) -> Self {
        Interface {
            rows: spec.rows,
            window_len: spec.window_len,
            normalization,
            representation: spec.representation,
            snr_input: false,
            outputs: vec![OutputDecl {
                name: ONNX_OUTPUT,
                kind: OutputKind::Logits,
                width: spec.num_classes,
            }],
        }
    }

    /// The card's task: classes, angles or both.
    pub fn task(&self) -> Task {
        let class = self.outputs.iter().any(|o| o.kind == OutputKind::Logits);
        let angle = self
            .outputs
            .iter()
            .any(|o| matches!(o.kind, OutputKind::Azimuth | OutputKind::Elevation));
        match (class, angle) {
            (true, true) => Task::AmcAoa,
            (false, true) => Task::Aoa,
            _ => Task::Amc,
        }
    }

    /// The card's window inputs.
    pub fn card_inputs(&self) -> Vec<WindowInput> {
        vec![WindowInput {
            name: ONNX_INPUT.into(),
            layout: vec![
                CardDim::Batch,
                CardDim::Fixed(self.rows),
                CardDim::Fixed(self.window_len),
            ],
            dtype: DType::Float32,
            representation: self.representation,
            normalization: self.normalization,
        }]
    }

    /// The card's extra inputs.
    pub fn card_extra_inputs(&self) -> Vec<ExtraInput> {
        if !self.snr_input {
            return Vec::new();
        }
        vec![ExtraInput {
            name: SNR_INPUT.into(),
            kind: ExtraKind::SnrDb,
            layout: vec![CardDim::Batch, CardDim::Fixed(1)],
            dtype: DType::Float32,
        }]
    }

    /// The card's outputs.
    pub fn card_outputs(&self) -> Vec<OutputSpec> {
        self.outputs
            .iter()
            .map(|o| OutputSpec {
                name: o.name.into(),
                kind: o.kind,
            })
            .collect()
    }

    /// A graph named `name` with this interface's inputs declared; `body` writes the model,
    /// reading the window (and the SNR) value(s) and returning one value per output, which are
    /// then declared as the graph's outputs under their names.
    pub fn graph(
        &self,
        name: &str,
        body: impl FnOnce(&mut GraphBuilder, &str, Option<&str>) -> Result<Vec<String>, OnnxError>,
    ) -> Result<GraphBuilder, OnnxError> {
        let mut g = GraphBuilder::new(name);
        let x = g.input(
            ONNX_INPUT,
            &[Dim::batch(), self.rows.into(), self.window_len.into()],
        )?;
        let snr = if self.snr_input {
            Some(g.input(SNR_INPUT, &[Dim::batch(), 1usize.into()])?)
        } else {
            None
        };
        let values = body(&mut g, &x, snr.as_deref())?;
        if values.len() != self.outputs.len() {
            return Err(OnnxError::Layer {
                layer: name.into(),
                what: format!(
                    "the model wrote {} outputs, its interface declares {}",
                    values.len(),
                    self.outputs.len()
                ),
            });
        }
        for (value, out) in values.iter().zip(&self.outputs) {
            g.node("Identity", &[value], &[out.name], vec![])?;
            g.output(out.name, &[Dim::batch(), out.width.into()])?;
        }
        Ok(g)
    }
}

/// A trained model that can be exported and served: its interface, its outputs computed by
/// burn, and the same computation written as ONNX.
pub trait Servable {
    fn interface(&self) -> &Interface;

    /// Every declared output, `[B, width]` each, in declaration order, for windows `x`
    /// `[B, rows, len]` and (when the interface takes it) their SNR `snr_db` `[B]` in dB.
    fn outputs(&self, x: Tensor<3>, snr_db: Option<Tensor<1>>) -> Vec<Tensor<2>>;

    /// The graph named `name` that computes [`Servable::outputs`].
    fn to_onnx(&self, name: &str) -> Result<GraphBuilder, OnnxError>;
}

/// A plain classifier of the registry: the architecture's logits.
pub struct Classifier {
    pub model: Model,
    pub interface: Interface,
}

impl Servable for Classifier {
    fn interface(&self) -> &Interface {
        &self.interface
    }

    fn outputs(&self, x: Tensor<3>, _: Option<Tensor<1>>) -> Vec<Tensor<2>> {
        vec![self.model.forward(x)]
    }

    fn to_onnx(&self, name: &str) -> Result<GraphBuilder, OnnxError> {
        self.interface.graph(name, |g, x, _| {
            let embedding = self.model.embedding_to_onnx(g, x)?;
            Ok(vec![self.model.classify_to_onnx(g, &embedding)?])
        })
    }
}
