//! The model card: `models/<name>.json` beside `models/<name>.onnx`, saying everything the
//! daemon needs to feed the model and read its outputs, and where the model came from.
//!
//! ```json
//! {
//!   "name": "amc-cnn",
//!   "version": "1.0.0",
//!   "task": "amc",
//!   "window_len": 128,
//!   "channels": 1,
//!   "sample_rate_hz": 200000.0,
//!   "inputs": [
//!     { "name": "iq", "layout": ["N", 2, 128], "dtype": "float32",
//!       "representation": "iq", "normalization": "unit_rms" }
//!   ],
//!   "extra_inputs": [
//!     { "name": "snr_db", "kind": "snr_db", "layout": ["N", 1], "dtype": "float32" }
//!   ],
//!   "outputs": [ { "name": "logits", "kind": "logits" } ],
//!   "classes": ["BPSK", "QPSK", "QAM16"],
//!   "dataset": { "name": "rml-like-v1", "manifest_sha256": "<64 hex digits>" },
//!   "metrics": { "accuracy": 0.91, "accuracy_by_snr_db": { "0": 0.88, "10": 0.97 } },
//!   "training": { "command": "specwatch-train train ...", "arch": "cnn2", "epochs": 40 }
//! }
//! ```
//!
//! * `task`: `amc` (classes), `aoa` (angles), `amc+aoa` (both).
//! * `inputs`: the window inputs. Each window (`channels × window_len` complex samples) is
//!   normalised ([`Normalization`]) and turned into planar rows ([`Representation`], shape
//!   `[2·channels, window_len]`) by [`crate::dsp`]; `layout` is the tensor shape, `"N"` the
//!   dynamic batch (first, and only there), and the other dimensions must hold exactly
//!   `2·channels·window_len` values in that row-major order (so `[N, 2, 128]` and
//!   `[N, 1, 2, 128]` both fit one 128-sample channel). `dtype` is `float32`.
//! * `extra_inputs` (optional): `snr_db` — the window's SNR estimate in dB, `[N, 1]` or `[N]`.
//! * `outputs`: `logits` or `probabilities` (`[N, classes]`), `azimuth` / `elevation`
//!   (`[N]` or `[N, 1]`) or `azimuth_elevation` (`[N, 2]`), angles in degrees. Graph outputs the
//!   card does not name are computed but ignored.
//! * `classes`: names in output order (required with a class output, empty otherwise).
//! * `dataset.manifest_sha256`: the SHA-256 of the dataset's `manifest.json`
//!   ([`crate::iq::dataset::Manifest::digest_of_file`]).
//! * `metrics`, `training`: free-form JSON objects (measured figures; how it was made).
//!
//! Unknown fields are refused. [`ModelCard::validate_against`] checks the card against the
//! ONNX graph: names, element types, ranks and static dimensions of every input and output,
//! and the class count against the logits dimension.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{InferError, Result};
use crate::dsp::normalize::Normalization;
use crate::dsp::repr::Representation;

/// What a model does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Task {
    /// Automatic modulation classification.
    #[serde(rename = "amc")]
    Amc,
    /// Angle-of-arrival regression.
    #[serde(rename = "aoa")]
    Aoa,
    /// Both at once.
    #[serde(rename = "amc+aoa")]
    AmcAoa,
}

impl Task {
    fn classifies(self) -> bool {
        matches!(self, Task::Amc | Task::AmcAoa)
    }

    fn locates(self) -> bool {
        matches!(self, Task::Aoa | Task::AmcAoa)
    }
}

/// One dimension of a card layout: the dynamic batch `"N"` or a fixed size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dim {
    /// The batch, `"N"`.
    Batch,
    /// A fixed size.
    Fixed(usize),
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Batch => f.write_str("N"),
            Dim::Fixed(n) => write!(f, "{n}"),
        }
    }
}

impl Serialize for Dim {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Dim::Batch => s.serialize_str("N"),
            Dim::Fixed(n) => s.serialize_u64(*n as u64),
        }
    }
}

impl<'de> Deserialize<'de> for Dim {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Dim;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a dimension: a size ≥ 1 or \"N\" (the batch)")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<Dim, E> {
                if v == 0 {
                    return Err(E::invalid_value(serde::de::Unexpected::Unsigned(0), &self));
                }
                usize::try_from(v)
                    .map(Dim::Fixed)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<Dim, E> {
                match u64::try_from(v) {
                    Ok(u) => self.visit_u64(u),
                    Err(_) => Err(E::invalid_value(serde::de::Unexpected::Signed(v), &self)),
                }
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<Dim, E> {
                if v == "N" {
                    Ok(Dim::Batch)
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Str(v), &self))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Formats dimensions as `[N,2,128]`.
fn dims_string<T: fmt::Display>(dims: &[T]) -> String {
    let parts: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(","))
}

/// Element type of a tensor, by ONNX's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DType {
    /// 32-bit float — the only type specwatch feeds and reads.
    Float32,
    /// 16-bit float.
    Float16,
    /// 64-bit float.
    Float64,
    /// 32-bit integer.
    Int32,
    /// 64-bit integer.
    Int64,
}

impl DType {
    /// The name as in cards (`float32`, …).
    pub fn name(self) -> &'static str {
        match self {
            DType::Float32 => "float32",
            DType::Float16 => "float16",
            DType::Float64 => "float64",
            DType::Int32 => "int32",
            DType::Int64 => "int64",
        }
    }
}

/// A window input: preprocessing and tensor layout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowInput {
    /// Input name in the ONNX graph.
    pub name: String,
    /// Tensor shape, `"N"` first.
    pub layout: Vec<Dim>,
    /// Element type (`float32`).
    pub dtype: DType,
    /// How the normalised window becomes rows.
    pub representation: Representation,
    /// How the window is normalised first.
    pub normalization: Normalization,
}

/// What an extra (non-window) input carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExtraKind {
    /// The window's SNR estimate in dB.
    SnrDb,
}

/// An extra input, one value per window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraInput {
    /// Input name in the ONNX graph.
    pub name: String,
    /// What it carries.
    pub kind: ExtraKind,
    /// `["N", 1]` or `["N"]`.
    pub layout: Vec<Dim>,
    /// Element type (`float32`).
    pub dtype: DType,
}

/// What an output means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    /// Unnormalised class scores `[N, classes]` (softmax gives probabilities).
    Logits,
    /// Class probabilities `[N, classes]`.
    Probabilities,
    /// Azimuth in degrees, `[N]` or `[N, 1]`.
    Azimuth,
    /// Elevation in degrees, `[N]` or `[N, 1]`.
    Elevation,
    /// Azimuth and elevation in degrees, `[N, 2]`.
    AzimuthElevation,
}

impl OutputKind {
    fn is_class(self) -> bool {
        matches!(self, OutputKind::Logits | OutputKind::Probabilities)
    }

    fn is_angle(self) -> bool {
        !self.is_class()
    }
}

/// An output the daemon reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Output name in the ONNX graph.
    pub name: String,
    /// What it means.
    pub kind: OutputKind,
}

/// The dataset a model was trained on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetRef {
    /// Dataset name.
    pub name: String,
    /// SHA-256 (hex) of its `manifest.json`.
    pub manifest_sha256: String,
}

/// A model card (see the module doc for the file format).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCard {
    /// Model name (the file stem, by convention).
    pub name: String,
    /// Model version.
    pub version: String,
    /// What it does.
    pub task: Task,
    /// Samples per channel in one window.
    pub window_len: usize,
    /// Channels per window.
    pub channels: usize,
    /// Nominal sample rate the model was trained at, Hz.
    pub sample_rate_hz: f64,
    /// Window inputs.
    pub inputs: Vec<WindowInput>,
    /// Extra inputs (SNR estimate).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_inputs: Vec<ExtraInput>,
    /// Outputs read.
    pub outputs: Vec<OutputSpec>,
    /// Class names in output order.
    #[serde(default)]
    pub classes: Vec<String>,
    /// Training data.
    pub dataset: DatasetRef,
    /// Measured figures (free-form).
    #[serde(default)]
    pub metrics: serde_json::Map<String, serde_json::Value>,
    /// How it was trained (free-form: command, arch, epochs, …).
    #[serde(default)]
    pub training: serde_json::Map<String, serde_json::Value>,
}

/// One dimension of an ONNX graph input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphDim {
    /// Fixed size.
    Fixed(usize),
    /// Dynamic, with its symbolic name (may be empty).
    Dynamic(String),
}

/// An ONNX graph input or output as ONNX Runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphTensor {
    /// Name.
    pub name: String,
    /// Element type by ONNX's name (`float32`, `float64`, …), or what the value is when it is
    /// not a tensor (`sequence`, `map`, …).
    pub dtype: String,
    /// Dimensions (empty for a non-tensor).
    pub dims: Vec<GraphDim>,
}

impl GraphTensor {
    /// `[N,1,2,128]`: a dynamic first dimension shows as `N`, other dynamic ones by their
    /// symbol (or `?`).
    fn dims_string(&self) -> String {
        let parts: Vec<String> = self
            .dims
            .iter()
            .enumerate()
            .map(|(i, d)| match d {
                GraphDim::Fixed(n) => n.to_string(),
                GraphDim::Dynamic(_) if i == 0 => "N".into(),
                GraphDim::Dynamic(s) if !s.is_empty() => s.clone(),
                GraphDim::Dynamic(_) => "?".into(),
            })
            .collect();
        format!("[{}]", parts.join(","))
    }
}

/// The inputs and outputs of an ONNX graph.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GraphSignature {
    /// Graph inputs (those that must be fed).
    pub inputs: Vec<GraphTensor>,
    /// Graph outputs.
    pub outputs: Vec<GraphTensor>,
}

impl GraphSignature {
    /// The signature of a loaded session.
    pub fn of_session(session: &ort::session::Session) -> Self {
        let conv = |o: &ort::value::Outlet| graph_tensor(o.name(), o.dtype());
        GraphSignature {
            inputs: session.inputs().iter().map(conv).collect(),
            outputs: session.outputs().iter().map(conv).collect(),
        }
    }
}

fn graph_tensor(name: &str, ty: &ort::value::ValueType) -> GraphTensor {
    use ort::value::ValueType;
    match ty {
        ValueType::Tensor {
            ty,
            shape,
            dimension_symbols,
        } => GraphTensor {
            name: name.to_string(),
            dtype: element_name(*ty),
            dims: shape
                .iter()
                .enumerate()
                .map(|(i, &d)| match usize::try_from(d) {
                    Ok(n) => GraphDim::Fixed(n),
                    Err(_) => {
                        GraphDim::Dynamic(dimension_symbols.get(i).cloned().unwrap_or_default())
                    }
                })
                .collect(),
        },
        ValueType::Sequence(_) => non_tensor(name, "sequence"),
        ValueType::Map { .. } => non_tensor(name, "map"),
        ValueType::Optional(_) => non_tensor(name, "optional"),
    }
}

fn non_tensor(name: &str, what: &str) -> GraphTensor {
    GraphTensor {
        name: name.to_string(),
        dtype: what.to_string(),
        dims: Vec::new(),
    }
}

fn element_name(t: ort::value::TensorElementType) -> String {
    use ort::value::TensorElementType as T;
    match t {
        T::Float32 => "float32".into(),
        T::Float16 => "float16".into(),
        T::Float64 => "float64".into(),
        T::Int32 => "int32".into(),
        T::Int64 => "int64".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}

impl ModelCard {
    /// Reads, parses and checks a card file (see [`ModelCard::check`]). Errors name the file and
    /// the field (parse errors give its line and column).
    pub fn load(path: &Path) -> Result<ModelCard> {
        let text = std::fs::read_to_string(path).map_err(|e| InferError::Card {
            path: path.to_path_buf(),
            message: format!("cannot read it: {e}"),
        })?;
        let card: ModelCard = serde_json::from_str(&text).map_err(|e| InferError::Card {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        card.check(path)?;
        Ok(card)
    }

    /// The `.onnx` file a card at `card_path` describes (same stem, same folder).
    pub fn onnx_path(card_path: &Path) -> PathBuf {
        card_path.with_extension("onnx")
    }

    /// The card file that must sit beside `onnx_path`.
    pub fn card_path(onnx_path: &Path) -> PathBuf {
        onnx_path.with_extension("json")
    }

    /// Values one window input tensor holds per window (`2·channels·window_len`).
    pub fn values_per_window(&self) -> usize {
        2 * self.channels * self.window_len
    }

    /// The class output, if the model classifies.
    pub fn class_output(&self) -> Option<&OutputSpec> {
        self.outputs.iter().find(|o| o.kind.is_class())
    }

    /// Checks the card on its own: sizes, layouts against `window_len × channels`, types,
    /// names, the outputs the task needs, classes, the dataset digest. `path` is for messages.
    pub fn check(&self, path: &Path) -> Result<()> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(InferError::Card {
                path: path.to_path_buf(),
                message: problems.join("; "),
            })
        }
    }

    fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.name.trim().is_empty() {
            p.push("'name' is empty".to_string());
        }
        if self.version.trim().is_empty() {
            p.push("'version' is empty".to_string());
        }
        if self.window_len == 0 {
            p.push("'window_len' is 0; expected at least 1".to_string());
        }
        if self.channels == 0 {
            p.push("'channels' is 0; expected at least 1".to_string());
        }
        if !(self.sample_rate_hz.is_finite() && self.sample_rate_hz > 0.0) {
            p.push(format!(
                "'sample_rate_hz' is {}; expected a positive rate in Hz",
                self.sample_rate_hz
            ));
        }
        if self.inputs.is_empty() {
            p.push("'inputs' is empty; a model takes at least one window input".to_string());
        }
        let input_names = self
            .inputs
            .iter()
            .map(|i| i.name.as_str())
            .chain(self.extra_inputs.iter().map(|i| i.name.as_str()));
        let mut names: Vec<&str> = Vec::new();
        for name in input_names {
            if names.contains(&name) {
                p.push(format!("input name '{name}' appears twice"));
            }
            names.push(name);
        }
        let per_window = self.values_per_window();
        for i in &self.inputs {
            if let Some(msg) = layout_problem(&i.layout) {
                p.push(format!("input '{}': 'layout' {msg}", i.name));
            } else {
                let values: usize = i.layout[1..].iter().map(dim_size).product();
                if values != per_window {
                    p.push(format!(
                        "input '{}': 'layout' {} holds {values} values per window but a window \
                         of 'channels' = {} × 'window_len' = {} takes 2·{}·{} = {per_window}",
                        i.name,
                        dims_string(&i.layout),
                        self.channels,
                        self.window_len,
                        self.channels,
                        self.window_len
                    ));
                }
            }
            if i.dtype != DType::Float32 {
                p.push(format!(
                    "input '{}': 'dtype' is {}; specwatch feeds float32",
                    i.name,
                    i.dtype.name()
                ));
            }
            if self.window_len > 0
                && let Err(e) = i.representation.check_len(self.window_len)
            {
                p.push(format!(
                    "input '{}': 'representation' does not fit 'window_len' = {}: {e}",
                    i.name, self.window_len
                ));
            }
        }
        for i in &self.extra_inputs {
            if let Some(msg) = layout_problem(&i.layout) {
                p.push(format!("extra input '{}': 'layout' {msg}", i.name));
            } else if i.layout.len() > 2
                || i.layout[1..].iter().map(dim_size).product::<usize>() != 1
            {
                p.push(format!(
                    "extra input '{}': 'layout' is {}; expected [N,1] or [N]",
                    i.name,
                    dims_string(&i.layout)
                ));
            }
            if i.dtype != DType::Float32 {
                p.push(format!(
                    "extra input '{}': 'dtype' is {}; specwatch feeds float32",
                    i.name,
                    i.dtype.name()
                ));
            }
        }
        let mut out_names: Vec<&str> = Vec::new();
        for o in &self.outputs {
            if out_names.contains(&o.name.as_str()) {
                p.push(format!("output name '{}' appears twice", o.name));
            }
            out_names.push(&o.name);
        }
        let count = |f: fn(OutputKind) -> bool| self.outputs.iter().filter(|o| f(o.kind)).count();
        let class_outputs = count(OutputKind::is_class);
        if class_outputs > 1 {
            p.push("'outputs' has more than one logits/probabilities output".to_string());
        }
        for kind in [
            OutputKind::Azimuth,
            OutputKind::Elevation,
            OutputKind::AzimuthElevation,
        ] {
            if self.outputs.iter().filter(|o| o.kind == kind).count() > 1 {
                p.push(format!("'outputs' has more than one {kind:?} output"));
            }
        }
        let has_az = self
            .outputs
            .iter()
            .any(|o| matches!(o.kind, OutputKind::Azimuth | OutputKind::AzimuthElevation));
        if self
            .outputs
            .iter()
            .any(|o| o.kind == OutputKind::AzimuthElevation)
            && self
                .outputs
                .iter()
                .any(|o| matches!(o.kind, OutputKind::Azimuth | OutputKind::Elevation))
        {
            p.push(
                "'outputs' has azimuth_elevation and a separate azimuth/elevation output"
                    .to_string(),
            );
        }
        let task = match self.task {
            Task::Amc => "amc",
            Task::Aoa => "aoa",
            Task::AmcAoa => "amc+aoa",
        };
        if self.task.classifies() && class_outputs == 0 {
            p.push(format!(
                "'task' is {task} but 'outputs' has no logits or probabilities output"
            ));
        }
        if !self.task.classifies() && class_outputs > 0 {
            p.push(format!(
                "'task' is {task} but 'outputs' has a logits/probabilities output"
            ));
        }
        if self.task.locates() && !has_az {
            p.push(format!(
                "'task' is {task} but 'outputs' has no azimuth or azimuth_elevation output"
            ));
        }
        if !self.task.locates() && count(OutputKind::is_angle) > 0 {
            p.push(format!(
                "'task' is {task} but 'outputs' has an angle output"
            ));
        }
        if class_outputs > 0 && self.classes.is_empty() {
            p.push("'classes' is empty but the model has a class output".to_string());
        }
        if class_outputs == 0 && !self.classes.is_empty() {
            p.push("'classes' is given but the model has no class output".to_string());
        }
        for (k, c) in self.classes.iter().enumerate() {
            if c.trim().is_empty() {
                p.push(format!("'classes'[{k}] is empty"));
            } else if self.classes[..k].contains(c) {
                p.push(format!("'classes' lists '{c}' twice"));
            }
        }
        let d = &self.dataset.manifest_sha256;
        if d.len() != 64 || !d.bytes().all(|b| b.is_ascii_hexdigit()) {
            p.push(format!(
                "'dataset.manifest_sha256' is '{d}'; expected the 64 hex digits of the \
                 dataset manifest's SHA-256"
            ));
        }
        p
    }

    /// Checks the card against the ONNX graph: every card input and output exists with the same
    /// element type, rank and static dimensions (a graph dimension left dynamic accepts the
    /// card's size; the batch must be dynamic), every graph input is described by the card, and
    /// the class count equals the class output's last dimension. All disagreements are reported
    /// at once, e.g. `input 'iq' is [N,2,128] but the ONNX graph expects [N,1,2,128]`.
    pub fn validate_against(&self, graph: &GraphSignature, path: &Path) -> Result<()> {
        let mut p = Vec::new();
        let graph_names = |ts: &[GraphTensor]| {
            let n: Vec<String> = ts.iter().map(|t| format!("'{}'", t.name)).collect();
            n.join(", ")
        };
        let card_inputs = self
            .inputs
            .iter()
            .map(|i| (&i.name, &i.layout, i.dtype))
            .chain(
                self.extra_inputs
                    .iter()
                    .map(|i| (&i.name, &i.layout, i.dtype)),
            );
        for (name, layout, dtype) in card_inputs {
            let Some(g) = graph.inputs.iter().find(|g| &g.name == name) else {
                p.push(format!(
                    "input '{name}' is not in the ONNX graph (its inputs: {})",
                    graph_names(&graph.inputs)
                ));
                continue;
            };
            if g.dtype != dtype.name() {
                p.push(format!(
                    "input '{name}' is {} but the ONNX graph expects {}",
                    dtype.name(),
                    g.dtype
                ));
            }
            if let Some(why) = shape_disagreement(layout, &g.dims) {
                p.push(format!(
                    "input '{name}' is {} but the ONNX graph expects {}{why}",
                    dims_string(layout),
                    g.dims_string()
                ));
            }
        }
        for g in &graph.inputs {
            let described = self.inputs.iter().any(|i| i.name == g.name)
                || self.extra_inputs.iter().any(|i| i.name == g.name);
            if !described {
                p.push(format!(
                    "the ONNX graph has input '{}' ({} {}) that the card does not describe",
                    g.name,
                    g.dtype,
                    g.dims_string()
                ));
            }
        }
        for o in &self.outputs {
            let Some(g) = graph.outputs.iter().find(|g| g.name == o.name) else {
                p.push(format!(
                    "output '{}' is not in the ONNX graph (its outputs: {})",
                    o.name,
                    graph_names(&graph.outputs)
                ));
                continue;
            };
            if g.dtype != DType::Float32.name() {
                p.push(format!(
                    "output '{}' is float32 in the card but the ONNX graph gives {}",
                    o.name, g.dtype
                ));
            }
            let expected: Vec<Dim> = match o.kind {
                OutputKind::Logits | OutputKind::Probabilities => {
                    vec![Dim::Batch, Dim::Fixed(self.classes.len().max(1))]
                }
                OutputKind::AzimuthElevation => vec![Dim::Batch, Dim::Fixed(2)],
                OutputKind::Azimuth | OutputKind::Elevation => {
                    if g.dims.len() == 1 {
                        vec![Dim::Batch]
                    } else {
                        vec![Dim::Batch, Dim::Fixed(1)]
                    }
                }
            };
            if let Some(why) = shape_disagreement(&expected, &g.dims) {
                let what = if o.kind.is_class() {
                    format!(
                        "{} classes in the card, so {}",
                        self.classes.len(),
                        dims_string(&expected)
                    )
                } else {
                    dims_string(&expected)
                };
                p.push(format!(
                    "output '{}' ({:?}) is {what} but the ONNX graph gives {}{why}",
                    o.name,
                    o.kind,
                    g.dims_string()
                ));
            }
        }
        if p.is_empty() {
            Ok(())
        } else {
            Err(InferError::Card {
                path: path.to_path_buf(),
                message: p.join("; "),
            })
        }
    }
}

fn dim_size(d: &Dim) -> usize {
    match d {
        Dim::Batch => 1,
        Dim::Fixed(n) => *n,
    }
}

/// `"N"` must come first and only there.
fn layout_problem(layout: &[Dim]) -> Option<String> {
    if layout.first() != Some(&Dim::Batch) {
        return Some(format!(
            "is {}; it must start with \"N\", the batch",
            dims_string(layout)
        ));
    }
    if layout[1..].contains(&Dim::Batch) {
        return Some(format!(
            "is {}; \"N\" (the batch) may only come first",
            dims_string(layout)
        ));
    }
    None
}

/// Why a card layout and graph dimensions disagree (`Some("")` when just the dims differ).
fn shape_disagreement(card: &[Dim], graph: &[GraphDim]) -> Option<String> {
    if card.len() != graph.len() {
        return Some(String::new());
    }
    if let Some(GraphDim::Fixed(_)) = graph.first() {
        return Some(" (the batch dimension must be dynamic in the graph)".into());
    }
    let differs = card.iter().zip(graph).skip(1).any(|(c, g)| match (c, g) {
        (Dim::Fixed(a), GraphDim::Fixed(b)) => a != b,
        _ => false,
    });
    differs.then(String::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn example_json() -> String {
        serde_json::json!({
            "name": "amc-test",
            "version": "0.1.0",
            "task": "amc",
            "window_len": 128,
            "channels": 1,
            "sample_rate_hz": 200000.0,
            "inputs": [{"name": "iq", "layout": ["N", 2, 128], "dtype": "float32",
                        "representation": "iq", "normalization": "unit_rms"}],
            "outputs": [{"name": "logits", "kind": "logits"}],
            "classes": ["BPSK", "QPSK", "QAM16"],
            "dataset": {"name": "d", "manifest_sha256": "ab".repeat(32)},
            "metrics": {"accuracy": 0.9},
            "training": {"epochs": 3}
        })
        .to_string()
    }

    fn card() -> ModelCard {
        serde_json::from_str(&example_json()).expect("example parses")
    }

    fn graph(input: &[GraphDim], classes: usize) -> GraphSignature {
        GraphSignature {
            inputs: vec![GraphTensor {
                name: "iq".into(),
                dtype: "float32".into(),
                dims: input.to_vec(),
            }],
            outputs: vec![GraphTensor {
                name: "logits".into(),
                dtype: "float32".into(),
                dims: vec![GraphDim::Dynamic("N".into()), GraphDim::Fixed(classes)],
            }],
        }
    }

    fn n() -> GraphDim {
        GraphDim::Dynamic("N".into())
    }

    #[test]
    fn example_card_checks_and_round_trips() {
        let c = card();
        c.check(Path::new("x.json")).expect("valid");
        let back: ModelCard =
            serde_json::from_str(&serde_json::to_string(&c).expect("ser")).expect("de");
        assert_eq!(back, c);
    }

    #[test]
    fn matching_graph_validates() {
        let g = graph(&[n(), GraphDim::Fixed(2), GraphDim::Fixed(128)], 3);
        card()
            .validate_against(&g, Path::new("m.json"))
            .expect("agrees");
        // A dynamic graph dimension accepts the card's size.
        let g = graph(&[n(), GraphDim::Fixed(2), GraphDim::Dynamic("L".into())], 3);
        card()
            .validate_against(&g, Path::new("m.json"))
            .expect("agrees");
    }

    #[test]
    fn layout_disagreement_is_named() {
        let g = graph(
            &[
                n(),
                GraphDim::Fixed(1),
                GraphDim::Fixed(2),
                GraphDim::Fixed(128),
            ],
            3,
        );
        let err = card()
            .validate_against(&g, Path::new("models/x.json"))
            .expect_err("disagrees")
            .to_string();
        assert_eq!(
            err,
            "model card models/x.json: input 'iq' is [N,2,128] but the ONNX graph expects \
             [N,1,2,128]"
        );
    }

    #[test]
    fn static_batch_is_refused() {
        let g = graph(
            &[GraphDim::Fixed(1), GraphDim::Fixed(2), GraphDim::Fixed(128)],
            3,
        );
        let err = card()
            .validate_against(&g, Path::new("m.json"))
            .expect_err("static batch")
            .to_string();
        assert!(err.contains("batch dimension must be dynamic"), "{err}");
    }

    #[test]
    fn class_count_must_match_logits() {
        let g = graph(&[n(), GraphDim::Fixed(2), GraphDim::Fixed(128)], 4);
        let err = card()
            .validate_against(&g, Path::new("m.json"))
            .expect_err("3 vs 4")
            .to_string();
        assert!(
            err.contains("output 'logits' (Logits) is 3 classes in the card, so [N,3] but the ONNX graph gives [N,4]"),
            "{err}"
        );
    }

    #[test]
    fn undescribed_graph_input_is_refused() {
        let mut g = graph(&[n(), GraphDim::Fixed(2), GraphDim::Fixed(128)], 3);
        g.inputs.push(GraphTensor {
            name: "snr".into(),
            dtype: "float32".into(),
            dims: vec![n(), GraphDim::Fixed(1)],
        });
        let err = card()
            .validate_against(&g, Path::new("m.json"))
            .expect_err("extra input")
            .to_string();
        assert!(
            err.contains(
                "the ONNX graph has input 'snr' (float32 [N,1]) that the card does not describe"
            ),
            "{err}"
        );
    }

    #[test]
    fn card_layout_must_hold_one_window() {
        let mut c = card();
        c.inputs[0].layout = vec![Dim::Batch, Dim::Fixed(2), Dim::Fixed(64)];
        let err = c.check(Path::new("m.json")).expect_err("bad").to_string();
        assert!(
            err.contains("input 'iq': 'layout' [N,2,64] holds 128 values"),
            "{err}"
        );
        c.inputs[0].layout = vec![Dim::Fixed(2), Dim::Batch, Dim::Fixed(128)];
        let err = c.check(Path::new("m.json")).expect_err("bad").to_string();
        assert!(err.contains("must start with \"N\""), "{err}");
    }

    #[test]
    fn task_needs_its_outputs() {
        let mut c = card();
        c.task = Task::AmcAoa;
        let err = c
            .check(Path::new("m.json"))
            .expect_err("no angles")
            .to_string();
        assert!(
            err.contains("'task' is amc+aoa but 'outputs' has no azimuth"),
            "{err}"
        );
        let mut c = card();
        c.classes.clear();
        let err = c
            .check(Path::new("m.json"))
            .expect_err("no classes")
            .to_string();
        assert!(err.contains("'classes' is empty"), "{err}");
    }

    #[test]
    fn unknown_field_and_bad_dim_are_named() {
        let mut v: serde_json::Value = serde_json::from_str(&example_json()).expect("json");
        v["inputs"][0]["scale"] = serde_json::json!(2.0);
        let err = serde_json::from_value::<ModelCard>(v)
            .expect_err("unknown")
            .to_string();
        assert!(err.contains("unknown field `scale`"), "{err}");
        let mut v: serde_json::Value = serde_json::from_str(&example_json()).expect("json");
        v["inputs"][0]["layout"] = serde_json::json!(["B", 2, 128]);
        let err = serde_json::from_value::<ModelCard>(v)
            .expect_err("bad dim")
            .to_string();
        assert!(err.contains("\"N\" (the batch)"), "{err}");
    }

    #[test]
    fn digest_must_be_sha256_hex() {
        let mut c = card();
        c.dataset.manifest_sha256 = "abc".into();
        let err = c.check(Path::new("m.json")).expect_err("short").to_string();
        assert!(err.contains("'dataset.manifest_sha256' is 'abc'"), "{err}");
    }
}
