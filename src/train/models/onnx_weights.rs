//! An exported ONNX graph → the weights of a burn model of the registry: the inverse of
//! `Model::to_onnx`, so a bundled model (`models/NAME.onnx` + card) can be trained further
//! without the run folder that made it (`specwatch-train train --init-from models/NAME.json`).
//!
//! The exporter maps burn parameters onto ONNX initializers with nothing but moves: reshapes,
//! transposes, gate reorders and concatenations (every layer of [`super::onnx_layers`] and
//! [`crate::onnx::ops`]). So the inverse is found rather than written per architecture:
//!
//! ```text
//! fresh model of the same arch + spec, every parameter element i set to the marker BASE + i
//!   ──▶ Model::to_onnx ──▶ probe initializers: the marker at (initializer, position) says which
//!       parameter element was moved there
//! target .onnx initializers ──▶ element i = target[initializer][position] ──▶ the model's params
//! the loaded model ──▶ Model::to_onnx again ──▶ must equal the target initializer for
//!   initializer, bit for bit, with the same operators in the same order
//! ```
//!
//! Markers are integers in `[BASE, BASE + n)`, exact in `f32` while `BASE + n ≤ 2²⁴`; a value the
//! exporter computed from several parameters (none does today) would not be a marker of the range,
//! its elements would be found nowhere, and the import would be refused, as it would be by the
//! final round trip. Batch-norm running statistics are parameters of the mapping too (burn visits
//! its `RunningState`s), so an imported model also normalises exactly as the exported graph does.

use std::collections::{HashMap, HashSet};

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor, TensorData};
use prost::Message;

use super::{Model, ModelSpec, build};
use crate::onnx::proto::{DataType, ModelProto, TensorProto};
use crate::train::TrainError;

/// First marker value; markers stay exact in `f32` up to 2²⁴, which bounds a model's size to
/// 2²⁴ − `MARKER_BASE` parameter elements (about 8.4 million).
const MARKER_BASE: f32 = 8_388_608.0; // 2^23

/// Largest parameter count whose markers are all exact `f32` integers.
const MAX_ELEMENTS: usize = (1 << 24) - (1 << 23);

/// Why an ONNX graph's weights cannot be loaded into the model asked for.
fn refuse(problem: impl Into<String>) -> TrainError {
    TrainError::param("init-from", problem.into())
}

/// Loads the initializers of the ONNX model `onnx` (bytes of a `.onnx` file specwatch-train
/// exported) into `model`, built as architecture `arch` for `spec`; `source` names the file in
/// errors. Refuses a graph that another architecture, input shape or class count wrote, and
/// checks the result by exporting it again (see the module documentation).
pub fn load_onnx_weights(
    model: Model,
    arch: &str,
    spec: &ModelSpec,
    onnx: &[u8],
    source: &str,
) -> Result<Model, TrainError> {
    let target = ModelProto::decode(onnx)
        .map_err(|e| refuse(format!("{source} is not an ONNX model: {e}")))?;
    let target_graph = target
        .graph
        .as_ref()
        .ok_or_else(|| refuse(format!("{source} holds no graph")))?;
    let target_floats = float_initializers(&target_graph.initializer, source)?;
    let target: HashMap<&str, &[f32]> = target_floats
        .iter()
        .map(|(name, values)| (name.as_str(), values.as_slice()))
        .collect();

    // Where the exporter moves every parameter element.
    let mut counter = ElementCounter::default();
    model.visit(&mut counter);
    let n = counter.elements;
    if n > MAX_ELEMENTS {
        return Err(refuse(format!(
            "the {arch} model has {n} parameter elements; weights can be imported into models \
             of at most {MAX_ELEMENTS}"
        )));
    }
    let probe = build(arch, spec, &Device::flex())?.map(&mut Marker { next: 0 });
    let probe_graph = probe
        .to_onnx(spec, "probe")?
        .build()?
        .graph
        .expect("the exporter writes a graph");
    let mut place: Vec<Option<(usize, usize)>> = vec![None; n];
    let probe_floats = float_initializers(&probe_graph.initializer, "the exporter's graph")?;
    for (slot, (name, probe_values)) in probe_floats.iter().enumerate() {
        let Some(theirs) = target.get(name.as_str()) else {
            return Err(refuse(format!(
                "{source} has no initializer '{name}', which a {arch} model for {} classes, {} \
                 input rows and {}-sample windows writes; it was exported from another \
                 architecture or input",
                spec.num_classes, spec.rows, spec.window_len
            )));
        };
        if theirs.len() != probe_values.len() {
            return Err(refuse(format!(
                "{source}: initializer '{name}' holds {} values; a {arch} model for this input \
                 and class count has {} there (another width or class count?)",
                theirs.len(),
                probe_values.len()
            )));
        }
        for (position, &v) in probe_values.iter().enumerate() {
            if let Some(element) = marker_index(v, n) {
                place[element].get_or_insert((slot, position));
            }
        }
    }
    let mut values = Vec::with_capacity(n);
    for (element, found) in place.iter().enumerate() {
        let Some((slot, position)) = *found else {
            return Err(refuse(format!(
                "parameter element {element} of the {arch} model has no place of its own in the \
                 exported graph, so its value cannot be read back from {source}"
            )));
        };
        values.push(target[probe_floats[slot].0.as_str()][position]);
    }

    let model = model.map(&mut Loader {
        values: &values,
        next: 0,
    });

    // The round trip: the loaded model must export to exactly the target's weights and operators.
    let again = model
        .valid()
        .to_onnx(spec, "check")?
        .build()?
        .graph
        .expect("the exporter writes a graph");
    let ops = |g: &crate::onnx::proto::GraphProto| -> Vec<String> {
        g.node.iter().map(|n| n.op_type.clone()).collect()
    };
    if ops(&again) != ops(target_graph) {
        return Err(refuse(format!(
            "{source}: its operators differ from those a {arch} model for this input exports \
             (it has {} nodes, the architecture {}); it was not exported from this architecture \
             by this version of specwatch-train",
            target_graph.node.len(),
            again.node.len()
        )));
    }
    for (name, mine) in float_initializers(&again.initializer, "the re-exported graph")? {
        let same = target.get(name.as_str()).is_some_and(|t| {
            t.len() == mine.len() && t.iter().zip(&mine).all(|(a, b)| a.to_bits() == b.to_bits())
        });
        if !same {
            return Err(refuse(format!(
                "{source}: initializer '{name}' does not come back unchanged through the {arch} \
                 model; its weights are not a {arch} export this version can read"
            )));
        }
    }
    Ok(model)
}

/// The float initializers of a graph, in order, as `(name, values)`.
fn float_initializers(
    initializers: &[TensorProto],
    source: &str,
) -> Result<Vec<(String, Vec<f32>)>, TrainError> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for t in initializers {
        if t.data_type != DataType::Float as i32 {
            continue;
        }
        let numel: i64 = t.dims.iter().product();
        let values: Vec<f32> = if !t.raw_data.is_empty() {
            if t.raw_data.len() % 4 != 0 {
                return Err(refuse(format!(
                    "{source}: initializer '{}' has {} raw bytes, not a whole number of float32 \
                     values",
                    t.name,
                    t.raw_data.len()
                )));
            }
            t.raw_data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        } else {
            t.float_data.clone()
        };
        if values.len() as i64 != numel {
            return Err(refuse(format!(
                "{source}: initializer '{}' holds {} values but its shape {:?} holds {numel}",
                t.name,
                values.len(),
                t.dims
            )));
        }
        if !seen.insert(t.name.as_str()) {
            return Err(refuse(format!(
                "{source}: initializer '{}' is defined twice",
                t.name
            )));
        }
        out.push((t.name.clone(), values));
    }
    Ok(out)
}

/// The parameter element a probe value marks, if it is a marker of a model with `n` elements.
fn marker_index(v: f32, n: usize) -> Option<usize> {
    if v.fract() != 0.0 || v < MARKER_BASE {
        return None;
    }
    let index = (v - MARKER_BASE) as usize;
    (index < n).then_some(index)
}

/// Counts parameter elements in visiting order.
#[derive(Default)]
struct ElementCounter {
    elements: usize,
}

impl ModuleVisitor for ElementCounter {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.elements += param.val().shape().num_elements();
    }
}

/// Sets every parameter element to its marker, in visiting order.
struct Marker {
    next: usize,
}

impl ModuleMapper for Marker {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let start = self.next;
        param.map(|t| {
            let shape = t.shape();
            let count = shape.num_elements();
            let markers: Vec<f32> = (start..start + count)
                .map(|i| MARKER_BASE + i as f32)
                .collect();
            self.next += count;
            replace(t, markers)
        })
    }
}

/// Sets every parameter element to the loaded values, in visiting order.
struct Loader<'a> {
    values: &'a [f32],
    next: usize,
}

impl ModuleMapper for Loader<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|t| {
            let count = t.shape().num_elements();
            let values = self.values[self.next..self.next + count].to_vec();
            self.next += count;
            replace(t, values)
        })
    }
}

/// A tensor like `t` (shape, device, gradient tracking) holding `values`.
fn replace<const D: usize>(t: Tensor<D>, values: Vec<f32>) -> Tensor<D> {
    let device = t.device();
    let require_grad = t.is_require_grad();
    Tensor::<D>::from_data(TensorData::new(values, t.shape()), &device)
        .set_require_grad(require_grad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::models::ARCHITECTURES;

    fn spec() -> ModelSpec {
        ModelSpec {
            num_classes: 3,
            rows: 2,
            window_len: 32,
            dropout: 0.0,
            width: 0.25,
            representation: crate::dsp::repr::Representation::Iq,
            options: Default::default(),
        }
    }

    #[test]
    fn every_architecture_comes_back_from_its_export_unchanged() {
        let device = Device::flex();
        let x = Tensor::<3>::random(
            [4, 2, 32],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        for arch in ARCHITECTURES {
            // Every element its own value, batch-norm running statistics included (a fresh
            // model's are all 0 and 1, which would hide a statistic that is not imported).
            let fresh = build(arch, &spec(), &device).unwrap();
            let mut counter = ElementCounter::default();
            fresh.visit(&mut counter);
            let values: Vec<f32> = (0..counter.elements)
                .map(|i| 0.05 + 0.25 * ((i as f32 * 12.9898).sin() * 43_758.547).fract().abs())
                .collect();
            let trained = fresh.map(&mut Loader {
                values: &values,
                next: 0,
            });
            let bytes = trained.to_onnx(&spec(), arch).unwrap().to_bytes().unwrap();
            let logits = |m: &Model| {
                m.valid()
                    .forward(x.clone())
                    .into_data()
                    .try_to_vec::<f32>()
                    .unwrap()
            };
            let fresh = build(arch, &spec(), &device).unwrap();
            let want = logits(&trained);
            assert_ne!(
                logits(&fresh),
                want,
                "{arch}: a fresh model already computes what the exported one does"
            );
            let loaded = load_onnx_weights(fresh, arch, &spec(), &bytes, "test.onnx").unwrap();
            assert_eq!(
                logits(&loaded),
                want,
                "{arch}: the loaded model computes what the exported one did"
            );
        }
    }

    #[test]
    fn another_architecture_or_class_count_is_refused_naming_the_initializer() {
        let device = Device::flex();
        let bytes = build("vtcnn2", &spec(), &device)
            .unwrap()
            .to_onnx(&spec(), "v")
            .unwrap()
            .to_bytes()
            .unwrap();
        let resnet = build("resnet1d", &spec(), &device).unwrap();
        let e = load_onnx_weights(resnet, "resnet1d", &spec(), &bytes, "v.onnx")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("v.onnx has no initializer 'stem.conv.weight'"),
            "{e}"
        );

        let more = ModelSpec {
            num_classes: 5,
            ..spec()
        };
        let vtcnn2 = build("vtcnn2", &more, &device).unwrap();
        let e = load_onnx_weights(vtcnn2, "vtcnn2", &more, &bytes, "v.onnx")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("holds") && e.contains("another width or class count"),
            "{e}"
        );

        let e = load_onnx_weights(
            build("vtcnn2", &spec(), &device).unwrap(),
            "vtcnn2",
            &spec(),
            b"not onnx",
            "junk.onnx",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("junk.onnx"), "{e}");
    }
}
