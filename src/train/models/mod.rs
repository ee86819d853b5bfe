//! The architectures, one file each, and the registry that builds them by name.
//!
//! Adding an architecture: a file here with its `#[derive(Module)]` struct implementing
//! [`Architecture`] (its name, its own options, how it is built, its embedding, its classifier
//! head, and the same computation written with [`crate::onnx::ops`]), and one line in the
//! `registry!` invocation below. Everything else — the CLI's `--arch` and `--arch-opt`, run
//! configs, model cards, export, warm starts, the parity tests that iterate over
//! [`ARCHITECTURES`] — follows from that line.
//!
//! - [`vtcnn2`]: VT-CNN2 (O'Shea et al. 2016), two convolutions and two dense layers.
//! - [`resnet1d`]: a 1-D residual network (O'Shea et al. 2018 family), conv + batch-norm.
//! - [`cldnn`]: CLDNN (West & O'Shea 2017), convolutions + LSTM + dense.
//! - [`gru2`]: two stacked GRUs over the time steps + dense.
//! - [`transformer`]: patch embedding + Transformer encoder + mean pool + dense.
//! - [`sejnnet`]: SE-JNNet (Wang, Wang & Lu), a normalizing-flow enhancer and phase correction,
//!   then JNNet: convolutions with 2-D sparse attention (ℓ1 on its weights) + two GRUs + dense.
//! - [`caic`]: CAIC-Net (Wu et al. 2026), a ConvLSTM branch and a Transformer branch fused by a
//!   cross-attention unit routed per window by its SNR (the one architecture that reads the SNR).
//! - [`onnx_layers`]: burn layers → the weights `onnx::ops` writes.
//! - [`onnx_weights`]: an exported graph → the weights of a model (the inverse of `to_onnx`).
//!
//! **Options.** What every architecture is built from is a [`ModelSpec`]: the data's shape,
//! the classes, dropout, a width multiplier, and the architecture's own options
//! ([`Architecture::Options`], a serde struct of the architecture's file; e.g. resnet1d's
//! `depth` and `amplitude_rows`). Options are given as `key=value` pairs (`--arch-opt`) or a
//! JSON object, checked against that struct (an unknown key or a wrong type is refused, naming
//! the key and listing the architecture's options) and recorded in full, defaults included.
//!
//! **Embedding and head.** Every architecture computes an embedding — the vector before its last
//! layer, `[B, E]` — and a classifier head on it; `forward` is the head on the embedding, so
//! objectives that need features (contrastive pretraining, probes, prototypes) take them from
//! any architecture.
//!
//! **SNR.** An architecture may read the window's SNR (dB) beside the window
//! ([`Architecture::reads_snr`]; e.g. caic routes its cross-attention by it): it computes
//! [`Architecture::embedding_with_snr`] and writes [`Architecture::embedding_with_snr_to_onnx`],
//! whose graph takes the second input `snr_db` `[N, 1]` ([`Model::to_onnx`] declares it). Only an
//! objective that feeds an SNR can train such an architecture ([`check_snr_fed`]: today
//! `multitask` with `snr_input`, which then gives it the SNR instead of its per-class bias).

pub mod onnx_layers;
pub mod onnx_weights;
#[cfg(test)]
pub(crate) mod testing;

use std::fmt::Debug;

use burn::module::Module;
pub use burn::module::ParamGroup;
use burn::tensor::{Device, Tensor};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::TrainError;
use super::interface::Interface;
use crate::dsp::normalize::Normalization;
use crate::dsp::repr::Representation;
use crate::onnx::{GraphBuilder, OnnxError};

/// Name of the exported graph's input, `[N, rows, len]`.
pub const ONNX_INPUT: &str = "iq";

/// Name of the exported graph's output, `[N, num_classes]` logits.
pub const ONNX_OUTPUT: &str = "logits";

/// An architecture's own options as recorded: a JSON object of its [`Architecture::Options`].
pub type ArchOptions = Map<String, Value>;

/// What every architecture is built from: the data's shape, the classes and the
/// regularisation, a width multiplier for small test models, and the architecture's own options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub num_classes: usize,
    /// Input rows `2C`.
    pub rows: usize,
    /// Samples per row `L`.
    pub window_len: usize,
    /// Dropout probability.
    pub dropout: f64,
    /// Scales every layer's filter/unit count (1 = as published).
    pub width: f64,
    /// What the input rows hold (records written before this field existed: I/Q).
    #[serde(default)]
    pub representation: Representation,
    /// The architecture's own options ([`Architecture::Options`]); absent keys take their
    /// defaults. (Records written before options existed: see [`migrate_legacy_options`].)
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub options: ArchOptions,
}

/// Moves resnet1d's `depth` and `amplitude_rows` — fields of their own in records written before
/// architectures had options (a run's settings and its model spec) — out of `record` into its
/// options object under `key`.
pub fn migrate_legacy_options(record: &mut Map<String, Value>, key: &str) {
    let depth = record
        .remove("depth")
        .and_then(|v| v.as_u64())
        .map(|d| d as usize);
    let amplitude_rows = record.remove("amplitude_rows").and_then(|v| v.as_bool());
    let options = record
        .entry(key)
        .or_insert_with(|| Value::Object(ArchOptions::new()));
    if let Some(options) = options.as_object_mut() {
        fold_legacy_options(options, depth, amplitude_rows);
    }
}

/// Moves the resnet1d settings records kept beside the shape before options existed into
/// `options`, where they live now (their published values, depth 1 and no amplitude rows, are
/// the defaults and need no entry).
pub fn fold_legacy_options(
    options: &mut ArchOptions,
    depth: Option<usize>,
    amplitude_rows: Option<bool>,
) {
    if let Some(d) = depth.filter(|&d| d != 1) {
        options.entry("depth").or_insert(Value::from(d));
    }
    if let Some(true) = amplitude_rows {
        options.entry("amplitude_rows").or_insert(Value::Bool(true));
    }
}

impl ModelSpec {
    /// This spec with other architecture options.
    pub fn with_options(&self, options: ArchOptions) -> Self {
        Self {
            options,
            ..self.clone()
        }
    }

    /// `n` filters or units scaled by the width multiplier (at least 1).
    pub fn scaled(&self, n: usize) -> usize {
        ((n as f64 * self.width).round() as usize).max(1)
    }
}

/// The width `E` of `model`'s embedding (an architecture built for `spec`), measured on one
/// window.
pub fn embedding_width(model: &Model, spec: &ModelSpec) -> usize {
    let probe = Tensor::<3>::zeros([1, spec.rows, spec.window_len], &Device::flex());
    model.valid().embedding(probe).dims()[1]
}

/// What an architecture of the registry provides.
pub trait Architecture: Module + Debug + Sized {
    /// The registry name (`--arch`).
    const NAME: &'static str;
    /// Its own options, as published by default. `#[serde(default, deny_unknown_fields)]`, so a
    /// run config names only what differs and a misspelt key is refused.
    type Options: Serialize + DeserializeOwned + Default + Clone + PartialEq + Debug;

    /// A fresh model for `spec` with `options` on `device`; errors name the option at fault.
    fn build(
        spec: &ModelSpec,
        options: &Self::Options,
        device: &Device,
    ) -> Result<Self, TrainError>;

    /// The embedding, the vector before the last layer.
    ///
    /// # Shapes
    /// - `x`: `[batch, rows, len]`
    /// - returns: `[batch, embedding_dim]`
    fn embedding(&self, x: Tensor<3>) -> Tensor<2>;

    /// Whether the embedding reads the window's SNR (see the module documentation). Default:
    /// no.
    fn reads_snr(&self) -> bool {
        false
    }

    /// [`Self::embedding`] of windows whose SNR (dB) `snr_db` `[batch]` is known. Default: the
    /// SNR is ignored.
    fn embedding_with_snr(&self, x: Tensor<3>, snr_db: Option<Tensor<1>>) -> Tensor<2> {
        let _ = snr_db;
        self.embedding(x)
    }

    /// Class logits `[batch, num_classes]` from an embedding (dropout, then the last layer).
    fn classify(&self, embedding: Tensor<2>) -> Tensor<2>;

    /// Writes [`Self::embedding`] into `g`, reading `x` `[N, rows, len]`; returns its value.
    /// Dropout is the identity at inference and batch-norm uses its running statistics.
    fn embedding_to_onnx(&self, g: &mut GraphBuilder, x: &str) -> Result<String, OnnxError>;

    /// Writes [`Self::embedding_with_snr`] into `g`, reading `x` and the SNR value `snr`
    /// `[N, 1]` (dB) when the graph has one. Default: [`Self::embedding_to_onnx`].
    fn embedding_with_snr_to_onnx(
        &self,
        g: &mut GraphBuilder,
        x: &str,
        snr: Option<&str>,
    ) -> Result<String, OnnxError> {
        let _ = snr;
        self.embedding_to_onnx(g, x)
    }

    /// Writes [`Self::classify`] into `g`, reading an embedding value; returns the logits'.
    fn classify_to_onnx(&self, g: &mut GraphBuilder, embedding: &str) -> Result<String, OnnxError>;

    /// The parameters of the classifier head (the rest is the encoder): for learning rates
    /// of their own.
    fn head_params(&self) -> ParamGroup;

    /// This model's embedding layers with `fresh`'s classifier head (a model of the same
    /// architecture and options, built for other classes): a pretrained encoder under a new
    /// head.
    fn with_head_of(self, fresh: Self) -> Self;

    /// Class logits of windows: the head on the embedding.
    fn forward(&self, x: Tensor<3>) -> Tensor<2> {
        self.classify(self.embedding(x))
    }

    /// [`Self::embedding`] of a training batch with the architecture's own penalty on it, a
    /// scalar `[1]` the training loss adds (e.g. sejnnet's ℓ1 on its attention weights, which
    /// are activations of this very forward pass). Default: no penalty.
    fn embedding_and_penalty(&self, x: Tensor<3>) -> (Tensor<2>, Option<Tensor<1>>) {
        (self.embedding(x), None)
    }

    /// The model with what it initialises from data set from `x` `[batch, rows, len]`, the
    /// first training batch of a run (e.g. actnorm's data-dependent initialisation). A model
    /// that holds that state already (resumed, warm-started) comes back unchanged. Default:
    /// nothing to initialise.
    fn data_init(self, x: Tensor<3>) -> Self {
        let _ = x;
        self
    }

    /// Writes [`Self::forward`] into `g`, reading `x`; returns the logits' value.
    fn to_onnx(&self, g: &mut GraphBuilder, x: &str) -> Result<String, OnnxError> {
        let embedding = self.embedding_to_onnx(g, x)?;
        self.classify_to_onnx(g, &embedding)
    }

    /// `trained`, built with options `from`, carried into a model with options `to` (`fresh`
    /// is one, newly built for `spec`), so that it computes what `trained` computed — a warm
    /// start into a grown model. By default only equal options carry over; an error says what
    /// cannot change.
    fn grow(
        trained: Self,
        from: &Self::Options,
        fresh: Self,
        to: &Self::Options,
        spec: &ModelSpec,
    ) -> Result<Self, String> {
        let _ = (fresh, spec);
        if from == to {
            Ok(trained)
        } else {
            Err(format!(
                "its {} options are {}, this run's {}; a {} model's options cannot change in a \
                 warm start",
                Self::NAME,
                options_json(from),
                options_json(to),
                Self::NAME
            ))
        }
    }
}

fn options_json<O: Serialize>(options: &O) -> String {
    serde_json::to_string(options).unwrap_or_default()
}

/// `options` read as architecture `A`'s options; an unknown key or a value of the wrong type
/// is refused, naming it and listing `A`'s options with their defaults.
fn typed_options<A: Architecture>(options: &ArchOptions) -> Result<A::Options, TrainError> {
    let value = Value::Object(options.clone());
    serde_path_to_error::deserialize(value).map_err(|e| {
        TrainError::param(
            "arch-opt",
            format!(
                "{}: {} ({}'s options and their defaults: {})",
                e.path(),
                e.inner(),
                A::NAME,
                options_json(&A::Options::default())
            ),
        )
    })
}

/// `options` with every option of `A` written out, defaults included.
fn full_options<A: Architecture>(options: &ArchOptions) -> Result<ArchOptions, TrainError> {
    match serde_json::to_value(typed_options::<A>(options)?) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Ok(ArchOptions::new()),
    }
}

fn build_one<A: Architecture>(spec: &ModelSpec, device: &Device) -> Result<A, TrainError> {
    A::build(spec, &typed_options::<A>(&spec.options)?, device)
}

fn grow_one<A: Architecture>(
    trained: A,
    from: &ModelSpec,
    fresh: A,
    to: &ModelSpec,
) -> Result<A, String> {
    let typed = |s: &ModelSpec| typed_options::<A>(&s.options).map_err(|e| e.to_string());
    A::grow(trained, &typed(from)?, fresh, &typed(to)?, to)
}

/// The registry: one line per architecture, `Variant => module::Type`. It declares the
/// architecture's module (its file), and makes [`Model`] (an enum of them all),
/// [`ARCHITECTURES`], and the functions that dispatch on the name.
macro_rules! registry {
    ($($variant:ident => $module:ident :: $ty:ident),+ $(,)?) => {
        $(pub mod $module;)+

        /// Architecture names [`build`] knows, in registry order.
        pub const ARCHITECTURES: &[&str] = &[$(<$module::$ty as Architecture>::NAME),+];

        /// Any model of the registry.
        // Variants hold their layers inline (burn has no `Module` for `Box`); a model is moved
        // about once per training step, beside which a few kilobytes of copy are nothing.
        #[allow(clippy::large_enum_variant)]
        #[derive(Module, Debug)]
        pub enum Model {
            $($variant($module::$ty)),+
        }

        impl Model {
            /// The registry name of this model's architecture.
            pub fn arch(&self) -> &'static str {
                match self {
                    $(Model::$variant(_) => <$module::$ty as Architecture>::NAME),+
                }
            }

            /// The embedding `[batch, E]` of windows `[batch, rows, len]`.
            pub fn embedding(&self, x: Tensor<3>) -> Tensor<2> {
                match self {
                    $(Model::$variant(m) => m.embedding(x)),+
                }
            }

            /// Whether the architecture reads the window's SNR ([`Architecture::reads_snr`]).
            pub fn reads_snr(&self) -> bool {
                match self {
                    $(Model::$variant(m) => m.reads_snr()),+
                }
            }

            /// The embedding `[batch, E]` of windows `[batch, rows, len]` whose SNR (dB)
            /// `[batch]` is `snr_db` ([`Architecture::embedding_with_snr`]).
            pub fn embedding_with_snr(
                &self,
                x: Tensor<3>,
                snr_db: Option<Tensor<1>>,
            ) -> Tensor<2> {
                match self {
                    $(Model::$variant(m) => m.embedding_with_snr(x, snr_db)),+
                }
            }

            /// Writes the embedding into `g`, reading `x` and the SNR value `snr` when the graph
            /// has one; returns its value.
            pub fn embedding_with_snr_to_onnx(
                &self,
                g: &mut GraphBuilder,
                x: &str,
                snr: Option<&str>,
            ) -> Result<String, OnnxError> {
                match self {
                    $(Model::$variant(m) => m.embedding_with_snr_to_onnx(g, x, snr)),+
                }
            }

            /// The parameters of the classifier head ([`Architecture::head_params`]).
            pub fn head_params(&self) -> ParamGroup {
                match self {
                    $(Model::$variant(m) => m.head_params()),+
                }
            }

            /// Class logits `[batch, num_classes]` from an embedding.
            pub fn classify(&self, embedding: Tensor<2>) -> Tensor<2> {
                match self {
                    $(Model::$variant(m) => m.classify(embedding)),+
                }
            }

            /// Class logits of a training batch and the architecture's penalty on it
            /// ([`Architecture::embedding_and_penalty`]).
            pub fn forward_and_penalty(&self, x: Tensor<3>) -> (Tensor<2>, Option<Tensor<1>>) {
                match self {
                    $(Model::$variant(m) => {
                        let (embedding, penalty) = m.embedding_and_penalty(x);
                        (m.classify(embedding), penalty)
                    }),+
                }
            }

            /// The model initialised from the first training batch `x`
            /// ([`Architecture::data_init`]).
            pub fn data_init(self, x: Tensor<3>) -> Model {
                match self {
                    $(Model::$variant(m) => Model::$variant(m.data_init(x))),+
                }
            }

            /// Writes the embedding into `g`, reading `x`; returns its value.
            pub fn embedding_to_onnx(
                &self,
                g: &mut GraphBuilder,
                x: &str,
            ) -> Result<String, OnnxError> {
                match self {
                    $(Model::$variant(m) => m.embedding_to_onnx(g, x)),+
                }
            }

            /// Writes the classifier head into `g`, reading an embedding; returns the logits.
            pub fn classify_to_onnx(
                &self,
                g: &mut GraphBuilder,
                embedding: &str,
            ) -> Result<String, OnnxError> {
                match self {
                    $(Model::$variant(m) => m.classify_to_onnx(g, embedding)),+
                }
            }
        }

        /// Builds architecture `arch` for `spec` with fresh weights on `device`.
        pub fn build(arch: &str, spec: &ModelSpec, device: &Device) -> Result<Model, TrainError> {
            check_spec(spec)?;
            $(
                if arch == <$module::$ty as Architecture>::NAME {
                    return build_one::<$module::$ty>(spec, device).map(Model::$variant);
                }
            )+
            Err(unknown(arch))
        }

        /// `options` checked against `arch`'s options and written out in full (defaults
        /// included): what run configs and model cards record.
        pub fn normalize_options(
            arch: &str,
            options: &ArchOptions,
        ) -> Result<ArchOptions, TrainError> {
            $(
                if arch == <$module::$ty as Architecture>::NAME {
                    return full_options::<$module::$ty>(options);
                }
            )+
            Err(unknown(arch))
        }

        /// `encoder`'s embedding layers under `fresh`'s classifier head
        /// ([`Architecture::with_head_of`]); `None` for models of two architectures.
        pub fn with_head_of(encoder: Model, fresh: Model) -> Option<Model> {
            match (encoder, fresh) {
                $((Model::$variant(e), Model::$variant(f)) => Some(Model::$variant(e.with_head_of(f))),)+
                _ => None,
            }
        }

        /// `trained`, built for `from`, carried into `fresh`, built for `to` (the same
        /// architecture and shape, other options), computing what `trained` did
        /// ([`Architecture::grow`]).
        pub fn grow(
            trained: Model,
            from: &ModelSpec,
            fresh: Model,
            to: &ModelSpec,
        ) -> Result<Model, String> {
            match (trained, fresh) {
                $(
                    (Model::$variant(t), Model::$variant(f)) => {
                        grow_one(t, from, f, to).map(Model::$variant)
                    }
                )+
                (t, f) => Err(format!(
                    "a {} model cannot be carried into a {} model",
                    t.arch(),
                    f.arch()
                )),
            }
        }
    };
}

registry! {
    VtCnn2 => vtcnn2::VtCnn2,
    ResNet1d => resnet1d::ResNet1d,
    Cldnn => cldnn::Cldnn,
    Gru2 => gru2::Gru2,
    Transformer => transformer::Transformer,
    Sejnnet => sejnnet::Sejnnet,
    Caic => caic::Caic,
}

fn unknown(arch: &str) -> TrainError {
    TrainError::UnknownArch {
        name: arch.to_string(),
        known: ARCHITECTURES.join(", "),
    }
}

/// Refuses to train `model` under an objective that feeds it no SNR (`snr_fed` false) when its
/// architecture reads one, naming the objective that does.
pub fn check_snr_fed(model: &Model, snr_fed: bool) -> Result<(), TrainError> {
    if model.reads_snr() && !snr_fed {
        return Err(TrainError::param(
            "objective",
            format!(
                "the {} architecture reads each window's SNR, which this objective does not feed; \
                 train it with --objective '{{\"kind\":\"multitask\",\"angles\":false,\
                 \"snr_input\":\"estimate\"}}' (or \"snr_input\":\"true\" for the dataset's SNR)",
                model.arch()
            ),
        ));
    }
    Ok(())
}

fn check_spec(spec: &ModelSpec) -> Result<(), TrainError> {
    if !(spec.width.is_finite() && spec.width > 0.0) {
        return Err(TrainError::param(
            "width",
            format!("is {}; expected a positive multiplier", spec.width),
        ));
    }
    if !(spec.dropout.is_finite() && (0.0..1.0).contains(&spec.dropout)) {
        return Err(TrainError::param(
            "dropout",
            format!("is {}; expected a probability in [0, 1)", spec.dropout),
        ));
    }
    Ok(())
}

/// Parses `--arch-opt key=value` pairs into options: a value is read as JSON when it is JSON
/// (`3`, `true`, `0.5`, `[32,64]`), as a string otherwise. A key given twice is refused.
pub fn parse_arch_opts(pairs: &[String]) -> Result<ArchOptions, TrainError> {
    let mut options = ArchOptions::new();
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(TrainError::param(
                "arch-opt",
                format!("is '{pair}'; expected key=value, e.g. depth=2"),
            ));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(TrainError::param(
                "arch-opt",
                format!("is '{pair}'; the key before '=' is empty"),
            ));
        }
        let value = serde_json::from_str(value.trim())
            .unwrap_or_else(|_| Value::String(value.trim().to_string()));
        if options.insert(key.to_string(), value).is_some() {
            return Err(TrainError::param(
                "arch-opt",
                format!("gives '{key}' twice"),
            ));
        }
    }
    Ok(options)
}

impl Model {
    /// Class logits.
    ///
    /// # Shapes
    /// - `x`: `[batch, rows, len]`
    /// - returns: `[batch, num_classes]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<2> {
        self.classify(self.embedding(x))
    }

    /// Class logits of windows whose SNR (dB) `[batch]` is `snr_db` (see [`Self::to_onnx`]).
    pub fn forward_with_snr(&self, x: Tensor<3>, snr_db: Option<Tensor<1>>) -> Tensor<2> {
        self.classify(self.embedding_with_snr(x, snr_db))
    }

    /// The ONNX graph of this model (call it on trained weights, e.g. a [`Module::valid`]
    /// copy): input [`ONNX_INPUT`] `[N, rows, len]` with a dynamic batch `N`, output
    /// [`ONNX_OUTPUT`] `[N, num_classes]` logits, as built for `spec`. Dropout is left out (the
    /// identity at inference) and BatchNorm uses its running statistics. An architecture that
    /// reads the SNR takes it as a second input `snr_db` `[N, 1]` ([`Self::forward_with_snr`]).
    pub fn to_onnx(&self, spec: &ModelSpec, graph_name: &str) -> Result<GraphBuilder, OnnxError> {
        // The normalisation is the card's business, not the graph's.
        let mut interface = Interface::classifier(spec, Normalization::UnitRms);
        interface.snr_input = self.reads_snr();
        interface.graph(graph_name, |g, x, snr| {
            let embedding = self.embedding_with_snr_to_onnx(g, x, snr)?;
            Ok(vec![self.classify_to_onnx(g, &embedding)?])
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(options: ArchOptions) -> ModelSpec {
        ModelSpec {
            num_classes: 3,
            rows: 2,
            window_len: 16,
            dropout: 0.0,
            width: 0.25,
            representation: Representation::Iq,
            options,
        }
    }

    #[test]
    fn arch_opts_parse_as_json_or_text_and_refuse_repeats() {
        let o = parse_arch_opts(&["depth=2".into(), "amplitude_rows=true".into()]).unwrap();
        assert_eq!(o["depth"], Value::from(2));
        assert_eq!(o["amplitude_rows"], Value::Bool(true));
        let o = parse_arch_opts(&["name=abc".into()]).unwrap();
        assert_eq!(o["name"], Value::String("abc".into()));
        let e = parse_arch_opts(&["depth".into()]).unwrap_err().to_string();
        assert!(
            e.contains("'arch-opt' is 'depth'") && e.contains("key=value"),
            "{e}"
        );
        let e = parse_arch_opts(&["depth=1".into(), "depth=2".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("'depth' twice"), "{e}");
    }

    #[test]
    fn options_are_checked_against_the_architecture_and_written_in_full() {
        let full = normalize_options("resnet1d", &ArchOptions::new()).unwrap();
        assert_eq!(full["depth"], Value::from(1));
        assert_eq!(full["amplitude_rows"], Value::Bool(false));
        let asked = parse_arch_opts(&["depth=3".into()]).unwrap();
        assert_eq!(
            normalize_options("resnet1d", &asked).unwrap()["depth"],
            Value::from(3)
        );
        // A key the architecture does not have, or a value of the wrong type, is named.
        let e = normalize_options("gru2", &asked).unwrap_err().to_string();
        assert!(e.contains("'arch-opt'") && e.contains("depth"), "{e}");
        let bad = parse_arch_opts(&["depth=deep".into()]).unwrap();
        let e = build("resnet1d", &spec(bad), &Device::flex())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("depth") && e.contains("resnet1d's options"),
            "{e}"
        );
        let e = build("nope", &spec(ArchOptions::new()), &Device::flex())
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown architecture 'nope'"), "{e}");
    }

    #[test]
    fn every_architecture_builds_and_its_forward_is_the_head_on_the_embedding() {
        let device = Device::flex();
        for arch in ARCHITECTURES {
            let model = build(arch, &spec(ArchOptions::new()), &device).unwrap();
            assert_eq!(model.arch(), *arch);
            let x = Tensor::<3>::ones([2, 2, 16], &device);
            let e = model.embedding(x.clone());
            assert_eq!(e.dims()[0], 2, "{arch}");
            let a: Vec<f32> = model.forward(x).into_data().try_to_vec::<f32>().unwrap();
            let b: Vec<f32> = model.classify(e).into_data().try_to_vec::<f32>().unwrap();
            assert_eq!(a, b, "{arch}");
            assert_eq!(a.len(), 6, "{arch}");
        }
    }
}
