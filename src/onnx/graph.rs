//! [`GraphBuilder`]: assembles an ONNX model — graph inputs and outputs, constant initializers,
//! nodes in topological order, metadata — and serialises it.
//!
//! Values are referred to by name (`&str`). The builder hands out unique names
//! ([`GraphBuilder::fresh`]) and checks as it goes that every node input is already defined (a
//! graph input, an initializer or an earlier node's output) and that no value is defined twice,
//! so the node list is always topologically sorted.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use prost::Message;

use super::proto::{
    AttributeProto, AttributeType, DataType, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
    tensor_shape_proto, type_proto,
};
use super::{BATCH, IR_VERSION, OPSET, OnnxError, Result};

/// A dense `f32` tensor, row-major: the plain form in which layer weights reach the writer (the
/// trainer fills it from a burn tensor with `into_data().to_vec()` and `dims()`).
#[derive(Clone, Debug, PartialEq)]
pub struct Weights {
    /// Values in row-major order.
    pub data: Vec<f32>,
    /// Extent of each axis.
    pub shape: Vec<usize>,
}

impl Weights {
    /// A tensor of `shape` holding `data` (row-major). Its consistency is checked where it is used.
    pub fn new(data: Vec<f32>, shape: impl Into<Vec<usize>>) -> Self {
        Self {
            data,
            shape: shape.into(),
        }
    }

    /// Number of values the shape holds.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Checks that the data fills the declared shape and that the shape is `expected`;
    /// `tensor` and `meaning` name the weight and its axes in the error.
    pub fn expect(
        &self,
        layer: &str,
        tensor: &str,
        expected: &[usize],
        meaning: &str,
    ) -> Result<()> {
        self.expect_len(layer, tensor)?;
        if self.shape != expected {
            return Err(OnnxError::WeightShape {
                layer: layer.into(),
                tensor: tensor.into(),
                got: self.shape.clone(),
                expected: expected.to_vec(),
                meaning: meaning.into(),
            });
        }
        Ok(())
    }

    /// Checks only that the data fills the declared shape.
    pub fn expect_len(&self, layer: &str, tensor: &str) -> Result<()> {
        if self.data.len() != self.numel() {
            return Err(OnnxError::WeightLen {
                layer: layer.into(),
                tensor: tensor.into(),
                shape: self.shape.clone(),
                len: self.data.len(),
                expected: self.numel(),
            });
        }
        Ok(())
    }

    /// The transpose of a 2-D tensor (`[r, c]` → `[c, r]`); callers check the shape first.
    pub(crate) fn transposed(&self) -> Weights {
        let (r, c) = (self.shape[0], self.shape[1]);
        let mut data = vec![0.0; r * c];
        for i in 0..r {
            for j in 0..c {
                data[j * r + i] = self.data[i * c + j];
            }
        }
        Weights::new(data, [c, r])
    }
}

/// One axis of a graph input or output: a fixed size, or a symbolic name for an axis whose size
/// is chosen at run time (the batch axis, [`Dim::batch`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dim {
    Fixed(usize),
    Named(String),
}

impl Dim {
    /// The dynamic batch axis, named [`BATCH`] (`"N"`).
    pub fn batch() -> Self {
        Dim::Named(BATCH.into())
    }
}

impl From<usize> for Dim {
    fn from(n: usize) -> Self {
        Dim::Fixed(n)
    }
}

impl From<&str> for Dim {
    fn from(name: &str) -> Self {
        Dim::Named(name.into())
    }
}

impl AttributeProto {
    fn named(name: &str, kind: AttributeType) -> Self {
        Self {
            name: name.into(),
            r#type: kind as i32,
            ..Default::default()
        }
    }

    /// An `INT` attribute.
    pub fn int(name: &str, value: i64) -> Self {
        Self {
            i: value,
            ..Self::named(name, AttributeType::Int)
        }
    }

    /// An `INTS` attribute.
    pub fn ints(name: &str, values: &[i64]) -> Self {
        Self {
            ints: values.to_vec(),
            ..Self::named(name, AttributeType::Ints)
        }
    }

    /// A `FLOAT` attribute.
    pub fn float(name: &str, value: f32) -> Self {
        Self {
            f: value,
            ..Self::named(name, AttributeType::Float)
        }
    }

    /// A `FLOATS` attribute.
    pub fn floats(name: &str, values: &[f32]) -> Self {
        Self {
            floats: values.to_vec(),
            ..Self::named(name, AttributeType::Floats)
        }
    }

    /// A `STRING` attribute (UTF-8).
    pub fn string(name: &str, value: &str) -> Self {
        Self {
            s: value.as_bytes().to_vec(),
            ..Self::named(name, AttributeType::String)
        }
    }

    /// A `STRINGS` attribute (UTF-8).
    pub fn strings(name: &str, values: &[&str]) -> Self {
        Self {
            strings: values.iter().map(|s| s.as_bytes().to_vec()).collect(),
            ..Self::named(name, AttributeType::Strings)
        }
    }

    /// A `TENSOR` attribute (e.g. the `value` of a `Constant` node).
    pub fn tensor(name: &str, value: TensorProto) -> Self {
        Self {
            t: Some(value),
            ..Self::named(name, AttributeType::Tensor)
        }
    }
}

impl TensorProto {
    /// A float tensor stored as little-endian `raw_data`.
    pub fn from_f32(name: &str, data: &[f32], dims: &[usize]) -> Self {
        Self {
            name: name.into(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: DataType::Float as i32,
            raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        }
    }

    /// An int64 tensor stored in `int64_data`.
    pub fn from_i64(name: &str, data: &[i64], dims: &[usize]) -> Self {
        Self {
            name: name.into(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: DataType::Int64 as i32,
            int64_data: data.to_vec(),
            ..Default::default()
        }
    }
}

fn value_info(name: &str, elem: DataType, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match d {
                Dim::Fixed(n) => tensor_shape_proto::dimension::Value::DimValue(*n as i64),
                Dim::Named(s) => tensor_shape_proto::dimension::Value::DimParam(s.clone()),
            }),
            denotation: String::new(),
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: elem as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            denotation: String::new(),
        }),
        doc_string: String::new(),
    }
}

/// Builds one ONNX model. See the [module docs](self).
///
/// # Usage
/// ```
/// use specwatch::onnx::{Dim, GraphBuilder, Weights, ops};
///
/// let mut g = GraphBuilder::new("amc");
/// g.doc_string("toy classifier").metadata("card_sha256", "ab12").unwrap();
/// let x = g.input("x", &[Dim::batch(), Dim::from(3)]).unwrap();
/// let fc = ops::LinearWeights::burn(Weights::new(vec![0.5; 6], [3, 2]), None);
/// let y = ops::gemm(&mut g, "fc", &x, &fc).unwrap();
/// g.output(&y, &[Dim::batch(), Dim::from(2)]).unwrap();
/// # let dir = tempfile::tempdir().unwrap();
/// g.save(dir.path().join("amc.onnx")).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct GraphBuilder {
    name: String,
    doc_string: String,
    producer_version: String,
    model_version: i64,
    metadata: Vec<(String, String)>,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    /// Values that exist: graph inputs, initializers, node outputs.
    defined: HashSet<String>,
    /// Names handed out by `fresh` (values) and used by nodes.
    reserved: HashSet<String>,
    counters: HashMap<String, usize>,
}

impl GraphBuilder {
    /// An empty graph called `name`; producer `specwatch` at this crate's version.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            doc_string: String::new(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            model_version: 0,
            metadata: Vec::new(),
            nodes: Vec::new(),
            initializers: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            defined: HashSet::new(),
            reserved: HashSet::new(),
            counters: HashMap::new(),
        }
    }

    /// The graph's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn graph_err(&self, what: String) -> OnnxError {
        OnnxError::Graph {
            graph: self.name.clone(),
            what,
        }
    }

    /// Sets the model's human-readable description (Markdown).
    pub fn doc_string(&mut self, doc: &str) -> &mut Self {
        self.doc_string = doc.into();
        self
    }

    /// Overrides the producer version (default: this crate's version).
    pub fn producer_version(&mut self, version: &str) -> &mut Self {
        self.producer_version = version.into();
        self
    }

    /// Sets the model version (`ModelProto.model_version`).
    pub fn model_version(&mut self, version: i64) -> &mut Self {
        self.model_version = version;
        self
    }

    /// Adds a key-value metadata entry (e.g. the model card digest); keys must be distinct.
    pub fn metadata(&mut self, key: &str, value: &str) -> Result<&mut Self> {
        if self.metadata.iter().any(|(k, _)| k == key) {
            return Err(self.graph_err(format!("metadata key '{key}' given twice")));
        }
        self.metadata.push((key.into(), value.into()));
        Ok(self)
    }

    /// A value name not used yet, derived from `base` (`base`, `base_1`, `base_2`, …), reserved
    /// for the caller.
    pub fn fresh(&mut self, base: &str) -> String {
        let base = if base.is_empty() { "v" } else { base };
        let mut name = base.to_string();
        while self.reserved.contains(&name) || self.defined.contains(&name) {
            let k = self.counters.entry(base.to_string()).or_insert(0);
            *k += 1;
            name = format!("{base}_{k}");
        }
        self.reserved.insert(name.clone());
        name
    }

    fn define(&mut self, name: &str) -> Result<()> {
        if name.is_empty() {
            return Err(self.graph_err("a value needs a non-empty name".into()));
        }
        if !self.defined.insert(name.to_string()) {
            return Err(self.graph_err(format!("value '{name}' is defined twice")));
        }
        self.reserved.insert(name.to_string());
        Ok(())
    }

    /// Whether a value of this name exists (input, initializer or node output).
    pub fn is_defined(&self, name: &str) -> bool {
        self.defined.contains(name)
    }

    /// Declares a `float32` graph input; use [`Dim::batch`] for a dynamic batch axis.
    pub fn input(&mut self, name: &str, dims: &[Dim]) -> Result<String> {
        self.define(name)?;
        self.inputs.push(value_info(name, DataType::Float, dims));
        Ok(name.into())
    }

    /// Declares an existing `float32` value as a graph output, with its shape.
    pub fn output(&mut self, name: &str, dims: &[Dim]) -> Result<()> {
        if !self.defined.contains(name) {
            return Err(self.graph_err(format!(
                "output '{name}' is not produced by any node or input"
            )));
        }
        if self.outputs.iter().any(|o| o.name == name) {
            return Err(self.graph_err(format!("output '{name}' declared twice")));
        }
        self.outputs.push(value_info(name, DataType::Float, dims));
        Ok(())
    }

    /// Adds a float constant (an initializer) under a fresh name derived from `name`; returns
    /// that name. Stored as little-endian `raw_data`.
    pub fn initializer_f32(&mut self, name: &str, data: &[f32], dims: &[usize]) -> Result<String> {
        let numel: usize = dims.iter().product();
        if numel != data.len() {
            return Err(self.graph_err(format!(
                "initializer '{name}' has {} values but its shape {dims:?} holds {numel}",
                data.len()
            )));
        }
        let name = self.fresh(name);
        self.define(&name)?;
        self.initializers
            .push(TensorProto::from_f32(&name, data, dims));
        Ok(name)
    }

    /// Adds `w` as a float initializer (see [`initializer_f32`](Self::initializer_f32)).
    pub fn initializer(&mut self, name: &str, w: &Weights) -> Result<String> {
        self.initializer_f32(name, &w.data, &w.shape)
    }

    /// Adds an int64 constant (shapes for `Reshape`, axes, …); returns its name.
    pub fn constant_i64(&mut self, name: &str, data: &[i64], dims: &[usize]) -> Result<String> {
        let numel: usize = dims.iter().product();
        if numel != data.len() {
            return Err(self.graph_err(format!(
                "constant '{name}' has {} values but its shape {dims:?} holds {numel}",
                data.len()
            )));
        }
        let name = self.fresh(name);
        self.define(&name)?;
        self.initializers
            .push(TensorProto::from_i64(&name, data, dims));
        Ok(name)
    }

    /// Adds a node of the default domain. Every non-empty input must already exist (an empty
    /// string skips an optional input); outputs must be new names.
    pub fn node(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: Vec<AttributeProto>,
    ) -> Result<()> {
        for i in inputs {
            if !i.is_empty() && !self.defined.contains(*i) {
                return Err(self.graph_err(format!(
                    "{op_type} node reads '{i}', which no input, initializer or earlier node defines"
                )));
            }
        }
        if outputs.is_empty() {
            return Err(self.graph_err(format!("{op_type} node has no outputs")));
        }
        for o in outputs {
            self.define(o)?;
        }
        let name = {
            let base = format!("{}/{op_type}", outputs[0]);
            let k = self.counters.entry(format!("node:{base}")).or_insert(0);
            *k += 1;
            if *k == 1 { base } else { format!("{base}_{k}") }
        };
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            name,
            op_type: op_type.into(),
            attribute: attrs,
            ..Default::default()
        });
        Ok(())
    }

    /// Adds a single-output node whose output gets a fresh name derived from `out`; returns it.
    pub fn op(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
        out: &str,
    ) -> Result<String> {
        let name = self.fresh(out);
        self.node(op_type, inputs, &[&name], attrs)?;
        Ok(name)
    }

    /// Copies a whole model's graph into this one under `prefix`: each of its initializers,
    /// nodes and node outputs is renamed `prefix/NAME`, and its graph inputs read the values
    /// of this graph that `inputs` maps them to (`(embedded input, value here)`). Returns the
    /// names here of the embedded graph's outputs, in its order.
    ///
    /// Only what this writer itself produces is taken: default-domain nodes whose attributes
    /// hold plain values (a sub-graph attribute would not survive the copy, so it is refused).
    pub fn embed(
        &mut self,
        prefix: &str,
        graph: &GraphProto,
        inputs: &[(&str, &str)],
    ) -> Result<Vec<String>> {
        let what =
            |problem: String| format!("embedding graph '{}' as '{prefix}': {problem}", graph.name);
        let mut renamed: HashMap<String, String> = HashMap::new();
        let initialized: HashSet<&str> =
            graph.initializer.iter().map(|t| t.name.as_str()).collect();
        for input in graph
            .input
            .iter()
            .filter(|i| !initialized.contains(i.name.as_str()))
        {
            let Some((_, here)) = inputs.iter().find(|(name, _)| *name == input.name) else {
                return Err(self.graph_err(what(format!(
                    "its input '{}' is not connected to a value of this graph",
                    input.name
                ))));
            };
            if !self.defined.contains(*here) {
                return Err(self.graph_err(what(format!(
                    "its input '{}' is to read '{here}', which this graph does not define",
                    input.name
                ))));
            }
            renamed.insert(input.name.clone(), here.to_string());
        }
        for tensor in &graph.initializer {
            let name = format!("{prefix}/{}", tensor.name);
            self.define(&name)?;
            renamed.insert(tensor.name.clone(), name.clone());
            self.initializers.push(TensorProto {
                name,
                ..tensor.clone()
            });
        }
        const PLAIN: [AttributeType; 8] = [
            AttributeType::Float,
            AttributeType::Int,
            AttributeType::String,
            AttributeType::Tensor,
            AttributeType::Floats,
            AttributeType::Ints,
            AttributeType::Strings,
            AttributeType::Tensors,
        ];
        for node in &graph.node {
            if !node.domain.is_empty() {
                return Err(self.graph_err(what(format!(
                    "node '{}' ({}) is of domain '{}'; only the default ONNX domain is taken",
                    node.name, node.op_type, node.domain
                ))));
            }
            if let Some(a) = node
                .attribute
                .iter()
                .find(|a| !PLAIN.iter().any(|t| *t as i32 == a.r#type))
            {
                return Err(self.graph_err(what(format!(
                    "node '{}' ({}) has attribute '{}' of type {}, which is not a plain value \
                     (sub-graphs and sparse tensors are not copied)",
                    node.name, node.op_type, a.name, a.r#type
                ))));
            }
            let mut input = Vec::with_capacity(node.input.len());
            for i in &node.input {
                if i.is_empty() {
                    input.push(String::new());
                    continue;
                }
                let Some(here) = renamed.get(i) else {
                    return Err(self.graph_err(what(format!(
                        "node '{}' ({}) reads '{i}', which no input, initializer or earlier node \
                         of that graph defines",
                        node.name, node.op_type
                    ))));
                };
                input.push(here.clone());
            }
            let mut output = Vec::with_capacity(node.output.len());
            for o in &node.output {
                let name = format!("{prefix}/{o}");
                self.define(&name)?;
                renamed.insert(o.clone(), name.clone());
                output.push(name);
            }
            self.nodes.push(NodeProto {
                input,
                output,
                name: format!("{prefix}/{}", node.name),
                ..node.clone()
            });
        }
        graph
            .output
            .iter()
            .map(|o| {
                renamed.get(&o.name).cloned().ok_or_else(|| {
                    self.graph_err(what(format!(
                        "its output '{}' is produced by no node, input or initializer",
                        o.name
                    )))
                })
            })
            .collect()
    }

    /// The model: IR [`IR_VERSION`], opset [`OPSET`], producer `specwatch`. Fails when the graph
    /// has no input or no output.
    pub fn build(&self) -> Result<ModelProto> {
        if self.outputs.is_empty() {
            return Err(self.graph_err("the graph declares no output".into()));
        }
        if self.inputs.is_empty() {
            return Err(self.graph_err("the graph declares no input".into()));
        }
        Ok(ModelProto {
            ir_version: IR_VERSION,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: OPSET,
            }],
            producer_name: "specwatch".into(),
            producer_version: self.producer_version.clone(),
            domain: String::new(),
            model_version: self.model_version,
            doc_string: self.doc_string.clone(),
            graph: Some(GraphProto {
                node: self.nodes.clone(),
                name: self.name.clone(),
                initializer: self.initializers.clone(),
                doc_string: String::new(),
                input: self.inputs.clone(),
                output: self.outputs.clone(),
                value_info: Vec::new(),
            }),
            metadata_props: self
                .metadata
                .iter()
                .map(|(k, v)| StringStringEntryProto {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
        })
    }

    /// The serialised model (protobuf bytes of [`build`](Self::build)).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        Ok(self.build()?.encode_to_vec())
    }

    /// Writes the model to `path`; errors name the file.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes = self.to_bytes()?;
        std::fs::write(path, bytes).map_err(|source| OnnxError::Write {
            path: path.to_path_buf(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_protobuf() {
        let mut g = GraphBuilder::new("t");
        g.metadata("k", "v").unwrap();
        let x = g.input("x", &[Dim::batch(), Dim::from(3)]).unwrap();
        let w = g.initializer_f32("w", &[1.0, -2.0, 3.5], &[3]).unwrap();
        let y = g.op("Add", &[&x, &w], vec![], "y").unwrap();
        g.output(&y, &[Dim::batch(), Dim::from(3)]).unwrap();
        let model = g.build().unwrap();
        let back = ModelProto::decode(g.to_bytes().unwrap().as_slice()).unwrap();
        assert_eq!(back, model);
        let graph = back.graph.unwrap();
        assert_eq!(graph.initializer[0].raw_data.len(), 12);
        assert_eq!(
            &graph.initializer[0].raw_data[4..8],
            &(-2.0f32).to_le_bytes()
        );
        assert_eq!(back.producer_name, "specwatch");
        assert_eq!(back.opset_import[0].version, OPSET);
    }

    #[test]
    fn fresh_names_are_unique() {
        let mut g = GraphBuilder::new("t");
        g.input("a", &[Dim::from(1)]).unwrap();
        let names: HashSet<String> = (0..5).map(|_| g.fresh("a")).collect();
        assert_eq!(names.len(), 5);
        assert!(!names.contains("a"));
    }

    #[test]
    fn refuses_unknown_inputs_and_double_definitions() {
        let mut g = GraphBuilder::new("t");
        let x = g.input("x", &[Dim::from(2)]).unwrap();
        let err = g.node("Relu", &["nope"], &["y"], vec![]).unwrap_err();
        assert!(err.to_string().contains("'nope'"), "{err}");
        let err = g.node("Relu", &[&x], &[&x], vec![]).unwrap_err();
        assert!(err.to_string().contains("defined twice"), "{err}");
        let err = g
            .metadata("a", "1")
            .and_then(|g| g.metadata("a", "2"))
            .unwrap_err();
        assert!(err.to_string().contains("'a'"), "{err}");
        assert!(g.output("y", &[]).is_err());
    }

    /// A one-node model graph `y = Relu(x)`, input `x`.
    fn relu_graph() -> GraphProto {
        let mut g = GraphBuilder::new("inner");
        let x = g.input("x", &[Dim::batch(), Dim::from(2)]).unwrap();
        let w = g.initializer_f32("w", &[1.0, 2.0], &[2]).unwrap();
        let m = g.op("Mul", &[&x, &w], vec![], "m").unwrap();
        let y = g.op("Relu", &[&m], vec![], "y").unwrap();
        g.output(&y, &[Dim::batch(), Dim::from(2)]).unwrap();
        g.build().unwrap().graph.unwrap()
    }

    #[test]
    fn embedding_renames_a_graph_under_its_prefix_and_connects_its_input() {
        let inner = relu_graph();
        let mut g = GraphBuilder::new("outer");
        let x = g.input("iq", &[Dim::batch(), Dim::from(2)]).unwrap();
        let a = g.embed("a", &inner, &[("x", &x)]).unwrap();
        let b = g.embed("b", &inner, &[("x", &x)]).unwrap();
        assert_eq!((a, b), (vec!["a/y".to_string()], vec!["b/y".to_string()]));
        let s = g.op("Add", &["a/y", "b/y"], vec![], "s").unwrap();
        g.output(&s, &[Dim::batch(), Dim::from(2)]).unwrap();
        let graph = g.build().unwrap().graph.unwrap();
        assert_eq!(graph.node.len(), 5);
        assert_eq!(graph.node[0].input, ["iq", "a/w"]);
        assert_eq!(graph.node[1].name, "a/y/Relu");
        assert_eq!(graph.initializer.len(), 2);
        // The same prefix twice would define its values twice.
        let err = g.embed("a", &inner, &[("x", &x)]).unwrap_err();
        assert!(err.to_string().contains("defined twice"), "{err}");
    }

    #[test]
    fn embedding_refuses_an_unconnected_input_and_a_sub_graph_attribute() {
        let mut inner = relu_graph();
        let mut g = GraphBuilder::new("outer");
        let x = g.input("iq", &[Dim::from(2)]).unwrap();
        let err = g.embed("a", &inner, &[("z", &x)]).unwrap_err();
        assert!(
            err.to_string().contains("input 'x' is not connected"),
            "{err}"
        );
        let err = g.embed("a", &inner, &[("x", "nope")]).unwrap_err();
        assert!(err.to_string().contains("'nope'"), "{err}");
        inner.node[1]
            .attribute
            .push(AttributeProto::named("body", AttributeType::Graph));
        let err = g.embed("c", &inner, &[("x", &x)]).unwrap_err();
        assert!(err.to_string().contains("attribute 'body'"), "{err}");
    }

    #[test]
    fn save_errors_name_the_file() {
        let mut g = GraphBuilder::new("t");
        let x = g.input("x", &[Dim::from(2)]).unwrap();
        g.output(&x, &[Dim::from(2)]).unwrap();
        let err = g.save("/nonexistent-dir/m.onnx").unwrap_err();
        assert!(err.to_string().contains("/nonexistent-dir/m.onnx"), "{err}");
    }
}
