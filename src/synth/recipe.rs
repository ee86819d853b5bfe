//! The named dataset recipes: which classes, how long a window, how many channels, which
//! channel and array, which SNR grid — everything a manifest must record to say how a dataset
//! was made.
//!
//! | recipe | classes | window | channels | SNR grid (dB) | per class & SNR | channel |
//! |---|---|---|---|---|---|---|
//! | `rml2016a` | 11 (RadioML 2016.10a) | 128 | 1 | −20..18 step 2 | 1000 | RadioML 2016.10a dynamic channel |
//! | `rml2018a` | 24 (RadioML 2018.01A) | 1024 | 1 | −20..30 step 2 | 200 | the same dynamic channel |
//! | `zsl7` | 7 (SigZSLNet) | 1024 | 1 | 0..10 step 1 | 400 | random carrier phase, small CFO |
//! | `aoa4` | 6 (MoCo X300 testbed) | 1024 | array (4) | −10..20 step 2 | 100 | flat Rician + CFO, array |
//!
//! Every recipe adds noise at an exact per-window SNR ([`Recipe::snr_definition`]); `rml2016a` can
//! instead add it as RadioML 2016.10a's published script did and label windows with its nominal
//! values ([`Recipe::set_snr_convention`], [`super::snr_convention`]).

use std::fmt;
use std::sync::Arc;

use super::antenna::{ArrayConfig, ArraySource, ElementErrors, Multipath};
use super::audio::AudioBank;
use super::channel::{Channel, ChannelConfig, Fading, OffsetWalk, exact_noise};
use super::classes::{ModContext, modulator};
use super::snr_convention::{self, SnrConvention};
use super::{GENERATOR_REVISION, Modulator, RecipeOptions, SynthError, SynthRng};
use crate::dsp::array::ArrayGeometry;
use crate::iq::C32;

/// Names of the recipes [`Recipe::by_name`] knows.
pub const RECIPES: [&str; 4] = ["rml2016a", "rml2018a", "zsl7", "aoa4"];

/// Seconds of built-in speech-like audio the analog classes draw from.
const AUDIO_SECONDS: f32 = 10.0;

const RML2016A_CLASSES: [&str; 11] = [
    "8PSK", "AM-DSB", "AM-SSB", "BPSK", "CPFSK", "GFSK", "PAM4", "QAM16", "QAM64", "QPSK", "WBFM",
];
/// The 24 classes of RadioML 2018.01A, in the order of its (corrected) one-hot columns, so a
/// generated set and an imported one label classes alike.
const RML2018A_CLASSES: [&str; 24] = crate::iq::radioml::CLASSES_2018;
const ZSL7_CLASSES: [&str; 7] = ["BPSK", "QPSK", "2ASK", "4ASK", "16QAM", "32QAM", "64QAM"];
const AOA4_CLASSES: [&str; 6] = ["16QAM", "64QAM", "BPSK", "QPSK", "PAM4", "CW-AM"];

/// One generated window.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedWindow {
    /// `channels × window_len` samples, channel-major.
    pub iq: Vec<C32>,
    /// The window's SNR label (dB): under [`SnrConvention::True`] the SNR measured from the
    /// signal and the noise added, under [`SnrConvention::Radioml`] the nominal RadioML value.
    pub snr_db: f32,
    /// The window's true SNR measured from the signal and the noise added (dB); equal to
    /// `snr_db` under [`SnrConvention::True`].
    pub true_snr_db: f32,
    /// Azimuth and elevation of the source in degrees (array recipes).
    pub angles_deg: Option<[f32; 2]>,
}

/// A generated window before signal and noise are summed: `iq = gain · (signal + noise)`.
/// Made from the random stream exactly as [`Recipe::generate`] makes its window.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowParts {
    /// The received signal without noise, `[channels, window_len]`.
    pub signal: Vec<C32>,
    /// The noise added, `[channels, window_len]`.
    pub noise: Vec<C32>,
    /// The gain applied to signal and noise together: the random receiver gain (1 unless the
    /// option is on), times, under [`SnrConvention::Radioml`], the script's per-window
    /// normalisation (one over the sum of the window's magnitudes).
    pub gain: f32,
    /// The label (see [`GeneratedWindow::snr_db`]).
    pub snr_db: f32,
    /// The true SNR of `signal` against `noise` (dB).
    pub true_snr_db: f32,
    pub angles_deg: Option<[f32; 2]>,
}

impl WindowParts {
    /// The window these parts make.
    pub fn into_window(self) -> GeneratedWindow {
        let WindowParts {
            mut signal,
            noise,
            gain,
            snr_db,
            true_snr_db,
            angles_deg,
        } = self;
        for (s, n) in signal.iter_mut().zip(&noise) {
            *s = (*s + n) * gain;
        }
        GeneratedWindow {
            iq: signal,
            snr_db,
            true_snr_db,
            angles_deg,
        }
    }
}

/// A dataset recipe, ready to generate windows.
pub struct Recipe {
    pub name: String,
    pub classes: Vec<String>,
    pub window_len: usize,
    pub channels: usize,
    pub sample_rate_hz: f64,
    /// Default SNR grid: (min, max, step) in dB.
    pub default_snr_grid_db: (f32, f32, f32),
    /// Default number of windows per class and SNR.
    pub default_per_class_snr: usize,
    /// Whether windows carry azimuth/elevation labels.
    pub has_angles: bool,
    modulators: Vec<Box<dyn Modulator>>,
    samples_per_symbol: usize,
    rolloff: f32,
    channel: Channel,
    array: Option<ArraySource>,
    options: RecipeOptions,
    snr_convention: SnrConvention,
    audio: serde_json::Value,
    notes: Vec<String>,
    /// The recipe's full class list, when [`keep_classes`](Self::keep_classes) kept a subset.
    class_subset_of: Option<Vec<String>>,
}

impl fmt::Debug for Recipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recipe")
            .field("name", &self.name)
            .field("classes", &self.classes)
            .field("window_len", &self.window_len)
            .field("channels", &self.channels)
            .field("sample_rate_hz", &self.sample_rate_hz)
            .field("channel", self.channel.config())
            .field("array", &self.array.as_ref().map(|a| a.config()))
            .field("options", &self.options)
            .field("snr_convention", &self.snr_convention)
            .finish_non_exhaustive()
    }
}

/// What differs between the recipes.
struct Spec {
    name: &'static str,
    classes: &'static [&'static str],
    window_len: usize,
    sample_rate_hz: f64,
    snr_grid: (f32, f32, f32),
    per_class_snr: usize,
    channel: ChannelConfig,
    array: bool,
    notes: Vec<&'static str>,
}

impl Recipe {
    /// Builds the recipe `name` with `options`. The analog classes modulate `options.wav` when
    /// given, else a speech-like source made from `audio_seed`.
    pub fn by_name(
        name: &str,
        options: &RecipeOptions,
        audio_seed: u64,
    ) -> Result<Recipe, SynthError> {
        let spec = spec(name)?;
        if !spec.array {
            let misplaced = [
                ("array", options.array.is_some()),
                ("element_errors", options.element_errors),
                ("multipath", options.multipath),
            ];
            if let Some((param, _)) = misplaced.iter().find(|(_, set)| *set) {
                return Err(SynthError::Param {
                    name: param,
                    problem: format!(
                        "applies only to array recipes (aoa4), not to '{}'",
                        spec.name
                    ),
                });
            }
        }
        let array = if spec.array {
            let geometry = options
                .array
                .clone()
                .unwrap_or_else(ArrayGeometry::default_aoa4);
            let mut config = ArrayConfig::new(geometry);
            config.element_errors = options.element_errors.then(ElementErrors::default);
            config.multipath = options.multipath.then(Multipath::default);
            Some(ArraySource::new(config)?)
        } else {
            None
        };
        let channel = Channel::new(spec.channel.with_options(options))?;
        let audio = match &options.wav {
            Some(path) => AudioBank::from_wav(path)?,
            None => AudioBank::speech_like(audio_seed, AUDIO_SECONDS),
        };
        let audio_json = audio.describe();
        let ctx = ModContext::new(Arc::new(audio));
        let modulators = spec
            .classes
            .iter()
            .map(|c| modulator(c, &ctx))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Recipe {
            name: spec.name.to_string(),
            classes: spec.classes.iter().map(|c| c.to_string()).collect(),
            window_len: spec.window_len,
            channels: array.as_ref().map_or(1, ArraySource::channels),
            sample_rate_hz: spec.sample_rate_hz,
            default_snr_grid_db: spec.snr_grid,
            default_per_class_snr: spec.per_class_snr,
            has_angles: array.is_some(),
            modulators,
            samples_per_symbol: ctx.samples_per_symbol,
            rolloff: ctx.rolloff,
            channel,
            array,
            options: options.clone(),
            snr_convention: SnrConvention::True,
            audio: audio_json,
            notes: spec.notes.iter().map(|n| n.to_string()).collect(),
            class_subset_of: None,
        })
    }

    /// Keeps only the named classes (in the recipe's order), for a dataset that teaches one
    /// distinction, such as a specialist between two classes. Each name must be one of the
    /// recipe's classes, given once; the recipe's other parameters stay as they are.
    pub fn keep_classes(&mut self, names: &[String]) -> Result<(), SynthError> {
        let bad = |problem: String| SynthError::Param {
            name: "classes",
            problem,
        };
        if names.is_empty() {
            return Err(bad("is empty; expected at least one class name".into()));
        }
        for (k, name) in names.iter().enumerate() {
            if !self.classes.contains(name) {
                return Err(bad(format!(
                    "names '{name}', which recipe '{}' does not have; expected some of {}",
                    self.name,
                    self.classes.join(", ")
                )));
            }
            if names[..k].contains(name) {
                return Err(bad(format!("names '{name}' twice")));
            }
        }
        let all = std::mem::take(&mut self.classes);
        let modulators = std::mem::take(&mut self.modulators);
        for (class, modulator) in all.iter().zip(modulators) {
            if names.contains(class) {
                self.classes.push(class.clone());
                self.modulators.push(modulator);
            }
        }
        // Kept twice, the subset is still of the recipe's full list.
        if self.class_subset_of.is_none() {
            self.class_subset_of = Some(all);
        }
        Ok(())
    }

    /// Which SNR axis [`generate`](Self::generate) labels windows on ([`SnrConvention::True`]
    /// unless [`set_snr_convention`](Self::set_snr_convention) said otherwise).
    pub fn snr_convention(&self) -> SnrConvention {
        self.snr_convention
    }

    /// Makes [`generate`](Self::generate) add noise by `convention`: the true per-window SNR
    /// (the default), or RadioML 2016.10a's nominal SNR, which only `rml2016a` — the recipe whose
    /// generator was published — accepts.
    pub fn set_snr_convention(&mut self, convention: SnrConvention) -> Result<(), SynthError> {
        if convention == SnrConvention::Radioml && self.name != "rml2016a" {
            return Err(SynthError::Param {
                name: "snr-convention",
                problem: format!(
                    "is 'radioml', which only recipe rml2016a has (RadioML 2016.10a's published \
                     script), not '{}'",
                    self.name
                ),
            });
        }
        self.snr_convention = convention;
        Ok(())
    }

    /// The mean power gain of the RadioML channel's paths as the script gave them (`Σ mags²`,
    /// 1.73 for `[1, 0.8, 0.3]`), which this recipe's channel normalises to 1.
    pub fn radioml_path_power(&self) -> f64 {
        self.channel
            .config()
            .fading
            .as_ref()
            .map_or(1.0, |f| f.gains.iter().map(|g| g * g).sum())
    }

    /// Generates one window of class index `class` at `snr_db`, drawing everything from `rng`.
    /// Under [`SnrConvention::Radioml`], `snr_db` is the nominal RadioML value.
    ///
    /// # Panics
    /// If `class` is not below `classes.len()`, or `snr_db` is NaN or −∞.
    pub fn generate(&self, rng: &mut SynthRng, class: usize, snr_db: f32) -> GeneratedWindow {
        self.generate_parts(rng, class, snr_db).into_window()
    }

    /// [`generate`](Self::generate), with signal and noise kept apart.
    pub fn generate_parts(&self, rng: &mut SynthRng, class: usize, snr_db: f32) -> WindowParts {
        let len = self.window_len;
        let placement = self.array.as_ref().map(|a| a.draw_placement(rng));
        let propagated_len = self.array.as_ref().map_or(len, |a| a.input_len(len));
        let source = self.modulators[class].generate(rng, self.channel.input_len(propagated_len));
        let propagated = self.channel.propagate(rng, &source, propagated_len);
        let mut signal = match (&self.array, placement) {
            (Some(array), Some(p)) => array.render(rng, &propagated, len, p),
            _ => propagated,
        };
        self.channel.receive(rng, &mut signal, self.channels);
        let angles_deg = placement.map(|p| [p.azimuth_deg as f32, p.elevation_deg as f32]);
        match self.snr_convention {
            SnrConvention::True => {
                let (noise, snr_db) = exact_noise(rng, &signal, snr_db);
                let gain = self.channel.draw_gain(rng);
                WindowParts {
                    signal,
                    noise,
                    gain,
                    snr_db,
                    true_snr_db: snr_db,
                    angles_deg,
                }
            }
            SnrConvention::Radioml => {
                // The script's levels: its path gains were not normalised.
                let level = self.radioml_path_power().sqrt() as f32;
                signal.iter_mut().for_each(|s| *s *= level);
                let (noise, true_snr_db) = snr_convention::radioml_noise(rng, &signal, snr_db);
                let gain = self.channel.draw_gain(rng) * snr_convention::l1_scale(&signal, &noise);
                WindowParts {
                    signal,
                    noise,
                    gain,
                    snr_db,
                    true_snr_db,
                    angles_deg,
                }
            }
        }
    }

    /// The recipe's channel (propagation, receiver impairments, gain).
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Every setting, for the dataset manifest.
    pub fn params_json(&self) -> serde_json::Value {
        let (lo, hi, step) = self.default_snr_grid_db;
        let mut params = serde_json::json!({
            "recipe": self.name,
            "generator_revision": GENERATOR_REVISION,
            "classes": self.classes,
            "window_len": self.window_len,
            "channels": self.channels,
            "layout": "channel-major [channels, window_len]",
            "sample_rate_hz": self.sample_rate_hz,
            "default_snr_grid_db": { "min": lo, "max": hi, "step": step },
            "default_per_class_snr": self.default_per_class_snr,
            "has_angles": self.has_angles,
            "modulation": {
                "samples_per_symbol": self.samples_per_symbol,
                "rrc_rolloff": self.rolloff,
                "power": "each modulator's output has long-run unit mean power before the channel",
            },
            "audio": self.audio,
            "channel": self.channel.config().to_json(),
            "array": self.array_json(),
            "options": self.options,
            "snr_definition": self.snr_definition(),
            "notes": self.notes(),
        });
        params[snr_convention::PARAMS_KEY] = serde_json::json!(self.snr_convention.name());
        if self.snr_convention == SnrConvention::Radioml {
            params["true_snr_file"] = serde_json::json!(snr_convention::TRUE_SNR_FILE);
            params["radioml_path_power"] = serde_json::json!(self.radioml_path_power());
        }
        // Only a subset adds the key, so the parameters of a full recipe (and the digests of its
        // datasets) stay as they were.
        if let Some(all) = &self.class_subset_of {
            params["class_subset_of"] = serde_json::json!(all);
        }
        params
    }

    /// The array and source placement, for array recipes.
    pub fn array_json(&self) -> Option<serde_json::Value> {
        self.array.as_ref().map(ArraySource::to_json)
    }

    /// What the SNR label means.
    pub fn snr_definition(&self) -> String {
        if self.snr_convention == SnrConvention::Radioml {
            return format!(
                "RadioML 2016.10a's nominal SNR in dB (snr_convention 'radioml'), not a measured SNR: the noise is \
                 set as the published generate_RML2016.10a.py set it, complex white Gaussian noise of RMS \
                 noise_amp = 10**(-snr/10.0) (power 10^(-snr/5)) added to the received signal at the script's level \
                 (unit-power transmitter, multipath path gains [1, 0.8, 0.3] not normalised: mean power {:.2}), and \
                 each window is then divided by the sum of its magnitudes, as the script did. For a unit-power \
                 transmitter the true SNR is about 2*snr + {:.2} dB. The true per-window SNR of each window — \
                 10*log10(mean|s|^2 / mean|n|^2) over the window, measured from the signal and noise added, over the \
                 full sampled bandwidth ({} Hz) — is in {}.",
                self.radioml_path_power(),
                10.0 * self.radioml_path_power().log10(),
                self.sample_rate_hz,
                snr_convention::TRUE_SNR_FILE
            );
        }
        let over = if self.channels > 1 {
            "all channels of the window together (each element receives the same mean power, so the per-element SNR equals the window SNR on average)"
        } else {
            "the window"
        };
        format!(
            "True per-window SNR: 10·log10(mean|s|² / mean|n|²) over {over}, where s is the received signal \
             after the channel and receiver impairments and n is the complex white Gaussian noise added to it; the \
             noise realisation is scaled so this equals the requested value (measured value recorded, within 1e-4 dB). \
             Power is measured over the full sampled bandwidth ({} Hz): a signal occupying less of it has a higher \
             in-band SNR. The random receiver gain, when enabled, scales signal and noise alike after this. \
             RadioML's own labels are not this quantity: they are the nominal setting of GNU Radio's noise source \
             relative to the modulator's nominal power before an un-normalised multipath channel, so the true SNR \
             of a RadioML window differs from its label.",
            self.sample_rate_hz
        )
    }

    /// The documented choices behind this recipe.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = self.notes.clone();
        if self.snr_convention == SnrConvention::Radioml {
            notes.retain(|n| n != TRUE_SNR_NOTE);
            notes.push(RADIOML_SNR_NOTE.to_string());
        }
        notes
    }
}

/// The values of an SNR grid `(min, max, step)`: `min + k·step` up to `max` (within step/1000).
/// The error names the parameter `snr_grid`.
pub fn snr_grid_values((min, max, step): (f32, f32, f32)) -> Result<Vec<f32>, SynthError> {
    let bad = |problem: String| SynthError::Param {
        name: "snr_grid",
        problem,
    };
    if !(min.is_finite() && max.is_finite() && step.is_finite()) {
        return Err(bad(format!(
            "is {min}..{max} step {step}; expected finite numbers"
        )));
    }
    if min > max {
        return Err(bad(format!("is {min}..{max}; min must not exceed max")));
    }
    if step <= 0.0 && max > min {
        return Err(bad(format!("step is {step}; expected a positive step")));
    }
    let count = if max > min {
        (f64::from(max - min) / f64::from(step) + 1e-3).floor() as usize + 1
    } else {
        1
    };
    if count > 10_000 {
        return Err(bad(format!("has {count} values; expected at most 10000")));
    }
    Ok((0..count)
        .map(|k| (f64::from(min) + k as f64 * f64::from(step)) as f32)
        .collect())
}

/// The note on SNR labels of a dataset on the true-SNR axis.
const TRUE_SNR_NOTE: &str = "SNR labels are true per-window SNRs (see snr_definition); RadioML's published labels are nominal noise settings, not true SNRs.";

/// The note on SNR labels of a dataset on RadioML's nominal axis.
const RADIOML_SNR_NOTE: &str = "snr.npy holds RadioML 2016.10a's nominal SNR labels (snr_convention 'radioml'): the noise is set as the published script set it (noise_amp = 10**(-snr/10.0), an amplitude, so one nominal dB is two true ones) and windows are divided by the sum of their magnitudes as the script did; snr_true.npy holds each window's true SNR. Every class transmits at unit mean power here; the script's linear classes took gr-mapper's constellation scaling, which changed in October 2016, and its AM-SSB flowgraph emitted zeros.";

fn spec(name: &str) -> Result<Spec, SynthError> {
    const COMMON: [&str; 3] = [
        "Generated by specwatch's implementation of the published recipe; not the original dataset files.",
        "Each window is a slice of a run of the channel: walks with a run length (run_samples) start at 0 Hz at the run's start, as GNU Radio's do, and the window at a uniformly random sample of the run; walks without one start from their stationary spread (uniform within ±max). Faders start with fresh phases at a random time, and the carrier phase is uniform.",
        TRUE_SNR_NOTE,
    ];
    let rml_fs = 200e3;
    let spec = match name {
        "rml2016a" => Spec {
            name: "rml2016a",
            classes: &RML2016A_CLASSES,
            window_len: 128,
            sample_rate_hz: rml_fs,
            snr_grid: (-20.0, 18.0, 2.0),
            per_class_snr: 1000,
            channel: ChannelConfig::rml2016a(rml_fs),
            array: false,
            notes: vec![
                "Channel: GNU Radio dynamic_channel_model(200e3, 0.01, 50, 0.01, 500, 8, 1.0, True, 4, [0.0, 0.9, 1.7], [1, 0.8, 0.3], 8, noise, seed), with path gains normalised to unit total power.",
            ],
        },
        "rml2018a" => Spec {
            name: "rml2018a",
            classes: &RML2018A_CLASSES,
            window_len: 1024,
            sample_rate_hz: rml_fs,
            snr_grid: (-20.0, 30.0, 2.0),
            per_class_snr: 200,
            channel: ChannelConfig::rml2016a(rml_fs),
            array: false,
            notes: vec![
                "Channel: RadioML 2018.01A's exact synthetic channel settings are unpublished; this uses the same dynamic-channel family as 2016.10a (SRO, CFO, Rician multipath fading) at a nominal 200 kHz.",
                "RadioML 2018.01A has 4096 windows per class and SNR; the default here is 200 per class and SNR to keep the set small (set a larger count to match).",
            ],
        },
        "zsl7" => Spec {
            name: "zsl7",
            classes: &ZSL7_CLASSES,
            window_len: 1024,
            sample_rate_hz: rml_fs,
            snr_grid: (0.0, 10.0, 1.0),
            per_class_snr: 400,
            channel: ChannelConfig {
                carrier_offset: Some(OffsetWalk {
                    std_dev_hz: 0.0,
                    max_dev_hz: 50.0,
                    run_samples: None,
                }),
                ..ChannelConfig::ideal(rml_fs)
            },
            array: false,
            notes: vec![
                "SigZSLNet's data was made in MATLAB 2019b with unpublished channel settings; here: uniform random carrier phase, a constant carrier offset uniform within ±50 Hz at a nominal 200 kHz (at most a quarter turn across a window), then AWGN.",
                "1024-sample windows because SigZSLNet's CNN was pre-trained on RadioML 2018.01A windows; 400 windows per class and SNR as in the paper (300 train, 100 test).",
            ],
        },
        "aoa4" => Spec {
            name: "aoa4",
            classes: &AOA4_CLASSES,
            window_len: 1024,
            sample_rate_hz: 1e6,
            snr_grid: (-10.0, 20.0, 2.0),
            per_class_snr: 100,
            channel: ChannelConfig {
                carrier_offset: Some(OffsetWalk {
                    std_dev_hz: 0.01,
                    max_dev_hz: 500.0,
                    run_samples: None,
                }),
                fading: Some(Fading {
                    sinusoids: 8,
                    doppler_hz: 1.0,
                    rician_k: Some(4.0),
                    delays_samples: vec![0.0],
                    gains: vec![1.0],
                }),
                ..ChannelConfig::ideal(1e6)
            },
            array: true,
            notes: vec![
                "Modelled on the MoCo paper's USRP X300 testbed (4 receive channels, azimuth and elevation −70°..70°); the testbed's sample rate and SNRs are unpublished: nominal 1 MHz here and an SNR grid of −10..20 dB step 2.",
                "Flat Rician fading (K = 4, 8 sinusoids, 1 Hz Doppler) and a carrier-offset walk (σ 0.01 Hz, max 500 Hz) common to all elements, then the narrowband steering vector of the array; noise independent per element.",
                "A uniform linear array cannot resolve elevation: with a ULA the elevation is drawn and recorded as 0.",
                "Element errors (option): gain σ 0.5 dB and phase σ 5° per element, drawn per window. Multipath (option): 1–2 coherent copies from other random directions, delay 0.1..1.5 samples, power −15..−6 dB, random phase.",
            ],
        },
        other => return Err(SynthError::UnknownRecipe(other.to_string())),
    };
    let mut spec = spec;
    spec.notes.splice(0..0, COMMON);
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::window_rng;

    fn rml2016a() -> Recipe {
        Recipe::by_name("rml2016a", &RecipeOptions::default(), 1).unwrap()
    }

    #[test]
    fn keeping_classes_keeps_the_recipes_order_and_their_modulators() {
        let full = rml2016a();
        let mut pair = rml2016a();
        pair.keep_classes(&["QPSK".into(), "QAM16".into()]).unwrap();
        assert_eq!(pair.classes, ["QAM16", "QPSK"]);
        // A subset class generates what the full recipe generates for it.
        let qpsk = full.classes.iter().position(|c| c == "QPSK").unwrap();
        let a = full.generate(&mut window_rng(3, 0), qpsk, 10.0);
        let b = pair.generate(&mut window_rng(3, 0), 1, 10.0);
        assert_eq!(a.iq, b.iq);
        let params = pair.params_json();
        assert_eq!(params["classes"], serde_json::json!(["QAM16", "QPSK"]));
        assert_eq!(params["class_subset_of"], serde_json::json!(full.classes));
        // The full recipe's parameters are as they were (its datasets' digests stay put).
        assert!(full.params_json().get("class_subset_of").is_none());
        // Narrowed again, the record still names the recipe's full list.
        pair.keep_classes(&["QPSK".into()]).unwrap();
        assert_eq!(pair.classes, ["QPSK"]);
        assert_eq!(
            pair.params_json()["class_subset_of"],
            serde_json::json!(full.classes)
        );
    }

    #[test]
    fn keeping_unknown_repeated_or_no_classes_is_refused() {
        let mut r = rml2016a();
        let err = r.keep_classes(&["QAM32".into()]).unwrap_err().to_string();
        assert!(
            err.contains("'classes'") && err.contains("'QAM32'"),
            "{err}"
        );
        let err = r
            .keep_classes(&["BPSK".into(), "BPSK".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("twice"), "{err}");
        assert!(r.keep_classes(&[]).is_err());
        assert_eq!(
            r.classes.len(),
            11,
            "a refused subset leaves the recipe whole"
        );
    }
}
