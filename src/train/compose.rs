//! Two exported classifiers → one served model (`specwatch-train compose`): a base model over all
//! classes, and a specialist trained on a few of them that tells those apart better.
//!
//! ```text
//! BASE.{json,onnx} ───────┐        ┌─ base/…        ─▶ L [N, C] ─┐
//!                         ├─▶ iq ──┤                             ├─▶ logits [N, C]
//! SPECIALIST.{json,onnx} ─┘        └─ specialist/…  ─▶ E [N, k] ─┘
//! ```
//!
//! The specialist's classes G (k ≥ 2 of them) are some of the base's, matched by name. The
//! composed model keeps the base's probability that a window is one of G, and splits it within
//! G by the product of the two models' opinions (a product of experts over G; both were trained
//! on classes of equal prior):
//!
//! ```text
//! p(c) = p_base(c)                                                         c ∉ G
//! p(c) = p_base(G) · p_base(c) p_spec(c) / Σ_{g ∈ G} p_base(g) p_spec(g)     c ∈ G
//! ```
//!
//! In logits, which is what the graph outputs: `out_c = L_c` for c ∉ G and
//! `out_c = L_c + E_c + lse(L_G) − lse(L_G + E_G)` for c ∈ G, so `softmax(out)` is `p` above.
//! A specialist that is unsure (equal logits over G) leaves the base's split as it was; a sure
//! one decides it. Classes outside G are never touched.
//!
//! The graph holds both components whole (renamed `base/…` and `specialist/…`, reading the one
//! `iq` input) and adds `Gather`, `ReduceLogSumExp`, `Add`/`Sub` and a `MatMul` by a constant
//! one-hot matrix that scatters the G columns back. Both must take the same input: one window
//! input of the same layout, representation and normalisation, the same window length,
//! channels and sample rate, and no extra inputs. Only graphs specwatch wrote are taken.
//!
//! Before anything is put in place the composed graph is checked against the two components
//! run separately through ONNX Runtime and combined by the formula above (largest |logit
//! difference| ≤ [`PARITY_TOLERANCE`]), and its accuracy is measured on a dataset folder none of
//! the two was trained on (nor any model they were warm-started from), through
//! [`crate::train::eval`] — the daemon's code path. The card records both components (name,
//! version, SHA-256 of their ONNX files, their own cards' training and metrics) and the
//! figures measured.

use std::path::{Path, PathBuf};

use prost::Message;
use serde_json::{Value, json};

use super::TrainError;
use super::eval::{EvalOptions, evaluate};
use crate::infer::card::{ModelCard, OutputKind, Task};
use crate::infer::{Model as Served, RuntimeOptions};
use crate::iq::dataset::{Dataset, Manifest};
use crate::onnx::proto::{AttributeProto, ModelProto};
use crate::onnx::{Dim, GraphBuilder, OPSET};

/// Largest |composed graph − components combined| logit difference accepted.
pub const PARITY_TOLERANCE: f32 = 1e-4;

/// Windows of the measuring dataset used for the parity check.
const PARITY_WINDOWS: usize = 256;

/// What [`compose`] reads and writes.
#[derive(Debug, Clone)]
pub struct ComposeOptions {
    /// The base model's card (`models/NAME.json`).
    pub base: PathBuf,
    /// The specialist's card.
    pub specialist: PathBuf,
    /// Destination stem: `models/NAME` writes `models/NAME.onnx` and `models/NAME.json`.
    pub out: PathBuf,
    /// Model name (default: the file stem of `out`).
    pub name: Option<String>,
    /// Model version for the card.
    pub version: String,
    /// A dataset folder to measure the composed model on (neither component trained on it).
    pub data: PathBuf,
    /// Runtime for the parity check and the measurement.
    pub runtime: RuntimeOptions,
    /// The command line that made the model, for the card.
    pub command: Option<String>,
}

/// What [`compose`] made.
#[derive(Debug, Clone)]
pub struct ComposeReport {
    pub onnx_path: PathBuf,
    pub card_path: PathBuf,
    pub card: ModelCard,
    /// Largest |composed − combined components| logit difference on the parity windows.
    pub parity_max_abs: f32,
}

/// One component: its card, its graph, and the SHA-256 of its ONNX file.
struct Component {
    role: &'static str,
    card_path: PathBuf,
    card: ModelCard,
    model: ModelProto,
    onnx_sha256: String,
}

fn refuse(role: &str, path: &Path, problem: impl std::fmt::Display) -> TrainError {
    TrainError::Param {
        name: if role == "base" { "base" } else { "specialist" },
        problem: format!("is {}, which {problem}", path.display()),
    }
}

impl Component {
    fn load(role: &'static str, card_path: &Path) -> Result<Self, TrainError> {
        let card = ModelCard::load(card_path)?;
        let onnx_path = ModelCard::onnx_path(card_path);
        let bytes = std::fs::read(&onnx_path).map_err(TrainError::io(&onnx_path))?;
        let model = ModelProto::decode(bytes.as_slice()).map_err(|e| {
            refuse(
                role,
                card_path,
                format!("has an ONNX file that is not a readable model: {e}"),
            )
        })?;
        if model.producer_name != "specwatch" {
            return Err(refuse(
                role,
                card_path,
                format!(
                    "has a graph made by '{}'; only graphs specwatch wrote are composed",
                    model.producer_name
                ),
            ));
        }
        if model.opset_import.len() != 1
            || !model.opset_import[0].domain.is_empty()
            || model.opset_import[0].version != OPSET
        {
            return Err(refuse(
                role,
                card_path,
                format!("is not written against the default operator set {OPSET} alone"),
            ));
        }
        if card.task != Task::Amc || card.class_output().map(|o| o.kind) != Some(OutputKind::Logits)
        {
            return Err(refuse(
                role,
                card_path,
                "is not a classifier with a logits output",
            ));
        }
        Ok(Component {
            role,
            card_path: card_path.to_path_buf(),
            card,
            model,
            onnx_sha256: super::fit::sha256_hex(&bytes),
        })
    }

    fn graph(&self) -> &crate::onnx::proto::GraphProto {
        self.model
            .graph
            .as_ref()
            .expect("checked when loaded: a model with a graph")
    }

    /// The manifest digests of every dataset behind this model: its own and those of the models
    /// it was warm-started from.
    fn training_digests(&self) -> Vec<String> {
        let mut out = vec![self.card.dataset.manifest_sha256.clone()];
        let mut next = self.card.training.get("init_from");
        while let Some(init) = next {
            if let Some(d) = init.get("dataset_manifest_digest").and_then(Value::as_str) {
                out.push(d.to_string());
            }
            next = init.get("init");
        }
        for part in ["base", "specialist"] {
            if let Some(d) = self
                .card
                .training
                .get(part)
                .and_then(|p| p.get("dataset"))
                .and_then(|d| d.get("manifest_sha256"))
                .and_then(Value::as_str)
            {
                out.push(d.to_string());
            }
        }
        out
    }

    fn record(&self) -> Value {
        json!({
            "model": format!("{} {}", self.card.name, self.card.version),
            "card": self.card_path,
            "onnx_sha256": self.onnx_sha256,
            "classes": self.card.classes,
            "dataset": self.card.dataset,
            "training": self.card.training,
            "metrics": self.card.metrics,
        })
    }
}

/// The composed logits of one window from the base's logits `l` and the specialist's `e`;
/// `groups` pairs each specialist class with its base class, `(base index, specialist index)`.
/// Computed in f64: the reference the graph is checked against.
pub fn combine(l: &[f32], e: &[f32], groups: &[(usize, usize)]) -> Vec<f32> {
    let lse = |v: &[f64]| {
        let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
    };
    let base: Vec<f64> = groups.iter().map(|&(i, _)| f64::from(l[i])).collect();
    let joint: Vec<f64> = groups
        .iter()
        .map(|&(i, j)| f64::from(l[i]) + f64::from(e[j]))
        .collect();
    let shift = lse(&base) - lse(&joint);
    let mut out = l.to_vec();
    for &(i, j) in groups {
        out[i] = (f64::from(l[i]) + f64::from(e[j]) + shift) as f32;
    }
    out
}

/// Composes the two models (see the module documentation). Errors name the option, the card or
/// the file at fault.
pub fn compose(options: &ComposeOptions) -> Result<ComposeReport, TrainError> {
    let (onnx_path, card_path, file_name) = super::export::destination(&options.out)?;
    let name = super::export::model_name(options.name.as_deref(), file_name, &options.version)?;
    let base = Component::load("base", &options.base)?;
    let specialist = Component::load("specialist", &options.specialist)?;
    let groups = check_compatible(&base, &specialist)?;

    let data_digest = Manifest::digest_of_file(&options.data)?;
    for part in [&base, &specialist] {
        if part.training_digests().contains(&data_digest) {
            return Err(TrainError::param(
                "data",
                format!(
                    "is {}, a dataset the {} {} {} (or a model it started from) was trained on; \
                     measure on a freshly generated set",
                    options.data.display(),
                    part.role,
                    part.card.name,
                    part.card.version
                ),
            ));
        }
    }

    let graph = build_graph(&base, &specialist, &groups, &name, &options.version)?;
    let mut card = base.card.clone();
    card.name = name;
    card.version = options.version.clone();
    card.metrics = serde_json::Map::new();
    let mut training = json!({
        "composition": "specialist_product",
        "rule": "p(c) = p_base(c) outside the specialist's classes G; inside G the base's \
                 p_base(G) split in proportion to p_base(c) * p_specialist(c)",
        "specialist_classes": specialist.card.classes,
        "base": base.record(),
        "specialist": specialist.record(),
        "specwatch_version": env!("CARGO_PKG_VERSION"),
    });
    if let Some(cmd) = &options.command {
        training["command"] = Value::String(cmd.clone());
    }
    let Value::Object(training) = training else {
        unreachable!("a JSON object literal")
    };
    card.training = training;

    // Stage both files beside their destination, check and measure, then move them into place.
    let parity = super::export::place_model(
        &onnx_path,
        &card_path,
        "compose",
        |staged_onnx, staged_card| {
            graph.save(staged_onnx)?;
            super::write_json(staged_card, &card)?;
            let parity = largest_parity_gap(staged_card, &base, &specialist, &groups, options)?;
            if parity > PARITY_TOLERANCE {
                return Err(TrainError::Onnx(crate::onnx::OnnxError::Graph {
                    graph: card.name.clone(),
                    what: format!(
                        "the composed graph's logits differ from its components' combined by up \
                         to {parity:e} (tolerance {PARITY_TOLERANCE:e}); the composition is wrong"
                    ),
                }));
            }
            let eval_options = EvalOptions {
                runtime: options.runtime.clone(),
                ..EvalOptions::default()
            };
            let evaluation = evaluate(staged_card, &options.data, &eval_options, &mut |_, _| {})?;
            card.metrics = metrics_json(&evaluation, &options.data, &data_digest, parity);
            super::write_json(staged_card, &card)?;
            Served::load(staged_card, &options.runtime)?;
            Ok(parity)
        },
    )?;
    Ok(ComposeReport {
        onnx_path,
        card_path,
        card,
        parity_max_abs: parity,
    })
}

/// Both take the same windows; the specialist's classes are some of the base's. Returns the
/// `(base index, specialist index)` pairs.
fn check_compatible(
    base: &Component,
    specialist: &Component,
) -> Result<Vec<(usize, usize)>, TrainError> {
    let (b, s) = (&base.card, &specialist.card);
    let path = &specialist.card_path;
    for (what, theirs, ours) in [
        ("window length", s.window_len as f64, b.window_len as f64),
        ("channel count", s.channels as f64, b.channels as f64),
        ("sample rate (Hz)", s.sample_rate_hz, b.sample_rate_hz),
    ] {
        if theirs != ours {
            return Err(refuse(
                "specialist",
                path,
                format!("has {what} {theirs}, the base {ours}; both must take the same windows"),
            ));
        }
    }
    for part in [base, specialist] {
        if part.card.inputs.len() != 1 || !part.card.extra_inputs.is_empty() {
            return Err(refuse(
                part.role,
                &part.card_path,
                "does not take exactly one window input and nothing else",
            ));
        }
    }
    let (bi, si) = (&b.inputs[0], &s.inputs[0]);
    if (&bi.layout, bi.dtype, bi.representation, bi.normalization)
        != (&si.layout, si.dtype, si.representation, si.normalization)
    {
        return Err(refuse(
            "specialist",
            path,
            format!(
                "takes {:?} {:?} {:?} input laid out {:?}, the base {:?} {:?} {:?} laid out {:?}; \
                 both must read the same tensor",
                si.dtype,
                si.normalization,
                si.representation,
                si.layout,
                bi.dtype,
                bi.normalization,
                bi.representation,
                bi.layout
            ),
        ));
    }
    let mut groups = Vec::with_capacity(s.classes.len());
    for (j, class) in s.classes.iter().enumerate() {
        let Some(i) = b.classes.iter().position(|c| c == class) else {
            return Err(refuse(
                "specialist",
                path,
                format!(
                    "knows class '{class}', which the base does not ([{}]); a specialist splits \
                     some of the base's classes",
                    b.classes.join(", ")
                ),
            ));
        };
        groups.push((i, j));
    }
    if groups.len() < 2 {
        return Err(refuse(
            "specialist",
            path,
            "knows fewer than 2 classes; it must tell at least two of the base's classes apart",
        ));
    }
    Ok(groups)
}

/// The graph's output named by a component's class output.
fn class_output_index(part: &Component) -> Result<usize, TrainError> {
    let name = &part
        .card
        .class_output()
        .expect("checked when loaded: a class output")
        .name;
    part.graph()
        .output
        .iter()
        .position(|o| &o.name == name)
        .ok_or_else(|| {
            refuse(
                part.role,
                &part.card_path,
                format!("names output '{name}', which its graph does not have"),
            )
        })
}

fn build_graph(
    base: &Component,
    specialist: &Component,
    groups: &[(usize, usize)],
    name: &str,
    version: &str,
) -> Result<GraphBuilder, TrainError> {
    let input = &base.card.inputs[0];
    let dims: Vec<Dim> = input
        .layout
        .iter()
        .map(|d| match d {
            crate::infer::card::Dim::Batch => Dim::batch(),
            crate::infer::card::Dim::Fixed(n) => Dim::from(*n),
        })
        .collect();
    let classes = base.card.classes.len();
    let k = groups.len();
    let out_name = &base
        .card
        .class_output()
        .expect("checked when loaded: a class output")
        .name;

    let mut g = GraphBuilder::new(name);
    let iq = g.input(&input.name, &dims)?;
    let l =
        g.embed("base", base.graph(), &[(&input.name, &iq)])?[class_output_index(base)?].clone();
    let spec_input = &specialist.card.inputs[0].name;
    let e = g.embed("specialist", specialist.graph(), &[(spec_input, &iq)])?
        [class_output_index(specialist)?]
    .clone();

    let base_idx: Vec<i64> = groups.iter().map(|&(i, _)| i as i64).collect();
    let spec_idx: Vec<i64> = groups.iter().map(|&(_, j)| j as i64).collect();
    let base_idx = g.constant_i64("compose/base_classes", &base_idx, &[k])?;
    let spec_idx = g.constant_i64("compose/specialist_classes", &spec_idx, &[k])?;
    let axis1 = || vec![AttributeProto::int("axis", 1)];
    let lse_attrs = || {
        vec![
            AttributeProto::ints("axes", &[1]),
            AttributeProto::int("keepdims", 1),
        ]
    };
    let l_group = g.op("Gather", &[&l, &base_idx], axis1(), "compose/base_group")?;
    let e_group = g.op(
        "Gather",
        &[&e, &spec_idx],
        axis1(),
        "compose/specialist_group",
    )?;
    let joint = g.op("Add", &[&l_group, &e_group], vec![], "compose/joint")?;
    let lse_base = g.op(
        "ReduceLogSumExp",
        &[&l_group],
        lse_attrs(),
        "compose/base_lse",
    )?;
    let lse_joint = g.op(
        "ReduceLogSumExp",
        &[&joint],
        lse_attrs(),
        "compose/joint_lse",
    )?;
    let shift = g.op("Sub", &[&lse_base, &lse_joint], vec![], "compose/shift")?;
    let delta = g.op("Add", &[&e_group, &shift], vec![], "compose/delta")?;
    let mut one_hot = vec![0.0f32; k * classes];
    for (row, &(i, _)) in groups.iter().enumerate() {
        one_hot[row * classes + i] = 1.0;
    }
    let scatter = g.initializer_f32("compose/scatter", &one_hot, &[k, classes])?;
    let spread = g.op("MatMul", &[&delta, &scatter], vec![], "compose/spread")?;
    g.node("Add", &[&l, &spread], &[out_name], vec![])?;
    g.output(out_name, &[Dim::batch(), Dim::from(classes)])?;
    g.doc_string(&format!(
        "{} {} (base) with {} {} (specialist in {}), composed by specwatch-train: the base's \
         probability of the specialist's classes split by the product of both models' opinions",
        base.card.name,
        base.card.version,
        specialist.card.name,
        specialist.card.version,
        specialist.card.classes.join("/")
    ));
    g.metadata("specwatch_arch", "composed")?;
    g.metadata("specwatch_model_version", version)?;
    Ok(g)
}

/// Runs the first windows of the measuring set through the composed graph and through both
/// components; returns the largest |composed − [`combine`]d| logit difference.
fn largest_parity_gap(
    composed_card: &Path,
    base: &Component,
    specialist: &Component,
    groups: &[(usize, usize)],
    options: &ComposeOptions,
) -> Result<f32, TrainError> {
    let mut dataset = Dataset::open(&options.data)?;
    if (dataset.manifest.channels, dataset.manifest.window_len)
        != (base.card.channels, base.card.window_len)
    {
        return Err(TrainError::param(
            "data",
            format!(
                "is {}, whose windows are {} channel(s) × {} samples; the models take {} × {}",
                options.data.display(),
                dataset.manifest.channels,
                dataset.manifest.window_len,
                base.card.channels,
                base.card.window_len
            ),
        ));
    }
    let n = PARITY_WINDOWS.min(dataset.len());
    if n == 0 {
        return Err(TrainError::param(
            "data",
            format!("is {}, which holds no windows", options.data.display()),
        ));
    }
    let windows = dataset.read_windows(0, n)?;
    let mut composed = Served::load(composed_card, &options.runtime)?;
    let mut base_model = Served::load(&base.card_path, &options.runtime)?;
    let mut spec_model = Served::load(&specialist.card_path, &options.runtime)?;
    let got = composed.run(&windows, n)?.clone();
    let l = base_model.run(&windows, n)?.clone();
    let e = spec_model.run(&windows, n)?;
    let mut worst = 0.0f32;
    for i in 0..n {
        let want = combine(l.scores(i), e.scores(i), groups);
        for (a, b) in got.scores(i).iter().zip(&want) {
            worst = worst.max((a - b).abs());
        }
    }
    Ok(worst)
}

fn metrics_json(
    evaluation: &super::eval::Evaluation,
    data: &Path,
    digest: &str,
    parity: f32,
) -> serde_json::Map<String, Value> {
    let mut by_snr = serde_json::Map::new();
    let mut windows_by_snr = serde_json::Map::new();
    for b in &evaluation.buckets {
        let key = super::eval::snr_key(b.snr_db);
        by_snr.insert(
            key.clone(),
            json!(b.correct as f64 / b.windows.max(1) as f64),
        );
        windows_by_snr.insert(key, json!(b.windows));
    }
    let value = json!({
        "split": "fresh dataset",
        "dataset": {
            "name": data.file_name().and_then(|n| n.to_str()).unwrap_or_default(),
            "manifest_sha256": digest,
        },
        "windows": evaluation.windows(),
        "accuracy": evaluation.accuracy(),
        "mean_accuracy_over_snr": evaluation.mean_snr_accuracy(),
        "accuracy_by_snr_db": by_snr,
        "windows_by_snr_db": windows_by_snr,
        "measured_with": format!(
            "ONNX Runtime ({}) through specwatch::infer, as specwatch-train eval",
            evaluation.model.provider
        ),
        "composed_vs_components_max_abs_logit_diff": parity,
    });
    match value {
        Value::Object(m) => m,
        _ => unreachable!("a JSON object literal"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The daemon's softmax ([`crate::infer::session::softmax`]), into a new vector.
    fn softmax(x: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0; x.len()];
        crate::infer::session::softmax(x, &mut out);
        out
    }

    #[test]
    fn combine_splits_the_base_mass_of_the_group_by_the_product_of_both_opinions() {
        let l = [1.0f32, -0.5, 2.0, 0.3];
        // The specialist knows base classes 3 and 1, in that order.
        let e = [0.7f32, -1.2];
        let groups = [(3, 0), (1, 1)];
        let p = softmax(&combine(&l, &e, &groups));
        let q = softmax(&l);
        let r = softmax(&e);
        // Outside the group: the base's probabilities.
        assert!((p[0] - q[0]).abs() < 1e-6 && (p[2] - q[2]).abs() < 1e-6);
        // Inside: the base's mass, split in proportion to p_base · p_specialist.
        let mass = q[3] + q[1];
        let (a, b) = (q[3] * r[0], q[1] * r[1]);
        assert!((p[3] - mass * a / (a + b)).abs() < 1e-6, "{p:?}");
        assert!((p[1] - mass * b / (a + b)).abs() < 1e-6, "{p:?}");
    }

    #[test]
    fn an_unsure_specialist_leaves_the_base_as_it_was() {
        let l = [0.2f32, 1.5, -0.7];
        let out = combine(&l, &[4.0, 4.0], &[(0, 0), (2, 1)]);
        for (a, b) in out.iter().zip(&l) {
            assert!((a - b).abs() < 1e-6, "{out:?}");
        }
    }
}
