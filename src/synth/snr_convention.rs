//! Which SNR axis a generated dataset's `snr.npy` is on: the contract's true per-window SNR (the
//! default, [`SnrConvention::True`]) or RadioML 2016.10a's nominal label
//! ([`SnrConvention::Radioml`]), with the noise set exactly as the published generator set it,
//! so that per-SNR tables can be drawn on the papers' axis.
//!
//! # What the published generator did
//! `generate_RML2016.10a.py` (repository radioML/dataset, commit b8eee90 of 2016-09-12, run with
//! GNU Radio 3.7) sets, for each nominal `snr` of `range(-20,20,2)`:
//!
//! ```text
//!               noise_amp = 10**(-snr/10.0)
//!               chan = channels.dynamic_channel_model( 200e3, 0.01, 50, .01, 0.5e3, 8, fD, True, 4, delays, mags, ntaps, noise_amp, 0x1337 )
//! ```
//!
//! with `delays = [0.0, 0.9, 1.7]` and `mags = [1, 0.8, 0.3]`, connects
//! `tb.connect(src, mod, chan, snk)` — the modulator's output goes into the channel as it is, with
//! no power normalisation — and normalises each 128-sample slice of the channel's output after the
//! noise:
//!
//! ```text
//!                   # Normalize the energy in this vector to be 1
//!                   energy = np.sum((np.abs(sampled_vector)))
//!                   sampled_vector = sampled_vector / energy
//! ```
//!
//! (the "energy" is the sum of magnitudes, an L1 norm, which scales the window but leaves its SNR
//! alone). Inside GNU Radio 3.7.10 (`gr-channels/lib/dynamic_channel_model_impl.cc`) the noise is
//!
//! ```text
//!       d_noise = analog::fastnoise_source_c::make(analog::GR_GAUSSIAN,
//!                                                  noise_amp, noise_seed, 1024*8);
//! ```
//!
//! added after the selective fading, whose taps are `d_taps[k] += ff_H * interpmag * d_mags[j];`
//! (`selective_fading_model_impl.cc`: the path magnitudes are used as given, not normalised), and
//! the complex noise source (`gr-analog/lib/fastnoise_source_X_impl.cc.t`, complex since 3.7.8)
//! has `d_ampl(ampl/sqrtf(2.0f)),` and `d_samples[i] = d_ampl * d_rng.rayleigh_complex();`, with
//! `rayleigh_complex()` returning `gr_complex(gasdev(),gasdev())`: each of I and Q has standard
//! deviation `noise_amp/√2`, so the noise power is `noise_amp² = 10^(−snr/5)`.
//!
//! # The relation between the label and the true SNR
//! With faders of unit mean power, the channel's mean power gain is `G = Σ mags² = 1.73`
//! (+2.38 dB), so for a transmitter of mean power `P` the true SNR of a window is
//!
//! ```text
//! true_dB = 10·log10(G·P_window / 10^(−snr/5)) = 2·snr + 10·log10(G) + 10·log10(P_window)
//!         ≈ 2·snr + 2.38 dB          (unit-power transmitters)
//! ```
//!
//! — the nominal "SNR" counts an amplitude in tenths of a decibel, so one nominal dB is two true
//! ones, and the nominal grid −20..18 spans true SNRs of about −37.6..+38.4 dB. `P_window` varies
//! with the fading and, for the analog classes, with the audio (silent stretches of AM-DSB carry
//! only the carrier).
//!
//! # How [`SnrConvention::Radioml`] reproduces it
//! Every class here leaves its modulator at unit long-run mean power and the channel normalises
//! its path gains to unit total power. The RadioML convention multiplies the received signal by
//! `√G` (the script's un-normalised path gains; `G` is computed from the recipe's channel), adds
//! complex white Gaussian noise whose I and Q each have standard deviation `noise_amp/√2` with
//! `noise_amp = 10^(−snr/10)` — a realisation, not rescaled to an exact power, as GNU Radio's —
//! and divides the window by the sum of its magnitudes, as the script did. `snr.npy` then holds
//! the nominal `snr` and `snr_true.npy` the true SNR measured from the window's own signal and
//! noise (see [`crate::synth::recipe::Recipe::snr_definition`]).
//!
//! What is not reproduced: the script's transmitters' own power levels. Its CPFSK, GFSK and WBFM
//! are constant-envelope (`P = 1`, as here); its linear classes come from gr-mapper, whose
//! constellation scaling changed on 2016-10-11 (from a scale set by the last constellation point,
//! which made QAM64 about 32 dB stronger than BPSK, to unit mean magnitude), so which one made the
//! published files is not known; its AM-SSB flowgraph multiplies by a 0 Hz sine and emits zeros
//! (see [`crate::synth::analog`]). Here every class transmits at unit mean power.

use std::path::Path;
use std::str::FromStr;

use rand::Rng;
use rand_distr::StandardNormal;

use super::channel::measured_snr_db;
use super::{SynthError, SynthRng};
use crate::iq::C32;
use crate::iq::dataset::{DatasetError, DatasetSource, Manifest};
use crate::iq::npy;

/// The file beside `snr.npy` that holds the true per-window SNR under [`SnrConvention::Radioml`].
pub const TRUE_SNR_FILE: &str = "snr_true.npy";

/// The key of the recipe parameters (`manifest.source.params`) that names the convention.
pub const PARAMS_KEY: &str = "snr_convention";

/// What the numbers in a generated dataset's `snr.npy` are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnrConvention {
    /// The true per-window SNR (the dataset contract): noise scaled so that the window's
    /// `mean|s|² / mean|n|²` is the requested value.
    #[default]
    True,
    /// RadioML 2016.10a's nominal label: the noise set as its published script set it
    /// (`noise_amp = 10**(-snr/10.0)`), the true SNR kept in [`TRUE_SNR_FILE`].
    Radioml,
}

impl SnrConvention {
    /// The name used on the command line and in manifests.
    pub fn name(self) -> &'static str {
        match self {
            SnrConvention::True => "true",
            SnrConvention::Radioml => "radioml",
        }
    }

    /// The convention `snr.npy` of the dataset described by `manifest` follows: what the
    /// generator recorded in its parameters, `true` for generated datasets that predate the
    /// record, and `radioml` for imported RadioML files (whose labels are nominal settings).
    pub fn of_manifest(manifest: &Manifest) -> SnrConvention {
        match &manifest.source {
            DatasetSource::Radioml { .. } => SnrConvention::Radioml,
            // Stated by the recordings' sidecars or estimated per window: dB of true SNR.
            DatasetSource::Recordings { .. } => SnrConvention::True,
            DatasetSource::Synth { params, .. } => params
                .get(PARAMS_KEY)
                .and_then(|v| v.as_str())
                .and_then(|s| s.parse().ok())
                .unwrap_or_default(),
        }
    }
}

impl std::fmt::Display for SnrConvention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SnrConvention {
    type Err = SynthError;

    fn from_str(text: &str) -> Result<Self, SynthError> {
        match text.trim() {
            "true" => Ok(SnrConvention::True),
            "radioml" => Ok(SnrConvention::Radioml),
            other => Err(SynthError::Param {
                name: "snr-convention",
                problem: format!("is '{other}'; expected 'true' or 'radioml'"),
            }),
        }
    }
}

/// The RadioML 2016.10a generator's noise amplitude for nominal SNR `snr_db`: `10^(−snr/10)`, the
/// RMS of its complex noise (power `10^(−snr/5)`).
pub fn radioml_noise_amp(snr_db: f32) -> f64 {
    10f64.powf(-f64::from(snr_db) / 10.0)
}

/// Complex white Gaussian noise as the RadioML 2016.10a generator added it at nominal SNR
/// `snr_db`: I and Q each `N(0, noise_amp²/2)`, not rescaled. Returns the noise and the true SNR
/// of `signal` against it (dB; −∞ for a silent signal).
///
/// # Panics
/// If `snr_db` is NaN or −∞ (+∞ adds no noise).
pub fn radioml_noise(rng: &mut SynthRng, signal: &[C32], snr_db: f32) -> (Vec<C32>, f32) {
    assert!(
        !snr_db.is_nan() && snr_db != f32::NEG_INFINITY,
        "SNR must be a number or +inf, got {snr_db}"
    );
    let sigma = (radioml_noise_amp(snr_db) * std::f64::consts::FRAC_1_SQRT_2) as f32;
    let noise: Vec<C32> = (0..signal.len())
        .map(|_| {
            C32::new(
                sigma * rng.sample::<f32, _>(StandardNormal),
                sigma * rng.sample::<f32, _>(StandardNormal),
            )
        })
        .collect();
    let snr = measured_snr_db(signal, &noise);
    (noise, snr)
}

/// The scale the script gave each window: one over the sum of its magnitudes (1 for an all-zero
/// window).
pub fn l1_scale(signal: &[C32], noise: &[C32]) -> f32 {
    let sum: f64 = signal
        .iter()
        .zip(noise)
        .map(|(s, n)| f64::from((s + n).norm()))
        .sum();
    if sum > 0.0 { (1.0 / sum) as f32 } else { 1.0 }
}

/// The true per-window SNR of the dataset in `dir`: [`TRUE_SNR_FILE`] when the dataset follows
/// the RadioML convention, `None` when `snr.npy` already is the true SNR. The file must hold one
/// value per window.
pub fn read_true_snr_db(dir: &Path, manifest: &Manifest) -> Result<Option<Vec<f32>>, DatasetError> {
    let path = dir.join(TRUE_SNR_FILE);
    if !path.exists() {
        if SnrConvention::of_manifest(manifest) == SnrConvention::Radioml
            && matches!(manifest.source, DatasetSource::Synth { .. })
        {
            return Err(DatasetError::Data {
                path,
                problem:
                    "is missing, but manifest.json says snr.npy holds RadioML's nominal labels"
                        .into(),
            });
        }
        return Ok(None);
    }
    let values = npy::read_array::<f32>(&path)?.data;
    if values.len() != manifest.count {
        return Err(DatasetError::Data {
            path,
            problem: format!(
                "holds {} values but manifest.json counts {} windows",
                values.len(),
                manifest.count
            ),
        });
    }
    Ok(Some(values))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::RecipeOptions;
    use crate::synth::channel::mean_power;
    use crate::synth::generate::{GenerateSpec, generate_dataset};
    use crate::synth::recipe::Recipe;
    use crate::synth::window_rng;

    #[test]
    fn names_parse_and_print_and_bad_ones_name_the_parameter() {
        for c in [SnrConvention::True, SnrConvention::Radioml] {
            assert_eq!(c.name().parse::<SnrConvention>().unwrap(), c);
            assert_eq!(c.to_string(), c.name());
        }
        let e = "nominal".parse::<SnrConvention>().unwrap_err().to_string();
        assert!(
            e.contains("'snr-convention'") && e.contains("'nominal'"),
            "{e}"
        );
    }

    /// The script's noise: power `noise_amp² = 10^(−snr/5)`, split evenly between I and Q, so a
    /// unit-power signal has a true SNR of `2·snr` dB. Checked on 64 windows of 4096 samples per
    /// nominal value (the power estimate is good to about ±1 %, so ±0.1 dB).
    #[test]
    fn noise_has_the_scripts_power_so_true_snr_is_twice_the_nominal() {
        let signal = vec![
            C32::new(
                std::f32::consts::FRAC_1_SQRT_2,
                -std::f32::consts::FRAC_1_SQRT_2
            );
            4096
        ];
        for nominal in [-20.0f32, -6.0, 0.0, 8.0, 18.0] {
            let (mut pn, mut pi, mut pq) = (0.0, 0.0, 0.0);
            let mut true_db = 0.0;
            for i in 0..64 {
                let (noise, snr) = radioml_noise(&mut window_rng(3, i), &signal, nominal);
                pn += mean_power(&noise) / 64.0;
                pi += noise.iter().map(|n| f64::from(n.re * n.re)).sum::<f64>() / 4096.0 / 64.0;
                pq += noise.iter().map(|n| f64::from(n.im * n.im)).sum::<f64>() / 4096.0 / 64.0;
                true_db += f64::from(snr) / 64.0;
            }
            let expect = 10f64.powf(-f64::from(nominal) / 5.0);
            assert!(
                (pn / expect - 1.0).abs() < 0.01,
                "{nominal} dB: noise power {pn} vs {expect}"
            );
            assert!(
                (pi / pq - 1.0).abs() < 0.02,
                "{nominal} dB: I {pi} vs Q {pq}"
            );
            assert!(
                (true_db - 2.0 * f64::from(nominal)).abs() < 0.1,
                "{nominal} dB nominal: true {true_db} dB, expected {}",
                2.0 * nominal
            );
        }
    }

    fn rml2016a(convention: SnrConvention) -> Recipe {
        let mut r = Recipe::by_name("rml2016a", &RecipeOptions::default(), 1).unwrap();
        r.set_snr_convention(convention).unwrap();
        r
    }

    /// The relation the script's formula implies for the recipe's windows: a unit-power
    /// transmitter through the RadioML channel with its path gains as given (mean power
    /// G = 1 + 0.8² + 0.3² = 1.73) has a true SNR of `2·nominal + 10·log10(G)` = 2·nominal + 2.38 dB
    /// in the mean over windows (the power mean: fading makes single windows vary). Checked for
    /// constant-envelope CPFSK and GFSK, 400 windows per nominal value: the mean of
    /// `10^((true − 2·nominal)/10)` is within ±10 % of G (Rician K = 4 window powers have a
    /// spread of 60 %, so the mean of 400 is good to about 3 %).
    #[test]
    fn true_snr_is_twice_the_nominal_plus_the_scripts_path_power() {
        let r = rml2016a(SnrConvention::Radioml);
        let g = r.radioml_path_power();
        assert!((g - 1.73).abs() < 1e-9, "path power {g}");
        for class in ["CPFSK", "GFSK"] {
            let k = r.classes.iter().position(|c| c == class).unwrap();
            for nominal in [-10.0f32, 0.0, 6.0, 12.0] {
                let mut ratio = 0.0;
                for i in 0..400 {
                    let p = r.generate_parts(&mut window_rng(11, i), k, nominal);
                    assert_eq!(p.snr_db, nominal, "the label is the nominal value");
                    let measured = measured_snr_db(&p.signal, &p.noise);
                    assert_eq!(p.true_snr_db, measured);
                    ratio += 10f64.powf(f64::from(measured - 2.0 * nominal) / 10.0) / 400.0;
                }
                assert!(
                    (ratio / g - 1.0).abs() < 0.10,
                    "{class} at nominal {nominal} dB: mean true−2·nominal {:.2} dB, expected {:.2} dB",
                    10.0 * ratio.log10(),
                    10.0 * g.log10()
                );
            }
        }
    }

    /// Windows are `gain · (signal + noise)` with the script's normalisation: the magnitudes of
    /// each window sum to 1.
    #[test]
    fn radioml_windows_are_normalised_as_the_script_did() {
        let r = rml2016a(SnrConvention::Radioml);
        for (i, nominal) in [-20.0f32, 0.0, 18.0].into_iter().enumerate() {
            let parts = r.generate_parts(&mut window_rng(2, i as u64), 3, nominal);
            let w = r.generate(&mut window_rng(2, i as u64), 3, nominal);
            assert_eq!(w, parts.clone().into_window());
            assert_eq!((w.snr_db, w.true_snr_db), (nominal, parts.true_snr_db));
            let sum: f64 = w.iq.iter().map(|z| f64::from(z.norm())).sum();
            assert!((sum - 1.0).abs() < 1e-4, "sum of magnitudes {sum}");
        }
    }

    /// The default convention labels windows with their true SNR and leaves everything else as
    /// it was: the RadioML convention changes the noise, not the signal's shape.
    #[test]
    fn true_convention_labels_are_the_measured_snr() {
        let r = rml2016a(SnrConvention::True);
        let p = r.generate_parts(&mut window_rng(4, 0), 0, 7.0);
        assert_eq!(p.snr_db, p.true_snr_db);
        assert!((p.snr_db - 7.0).abs() < 1e-3);
        let q = rml2016a(SnrConvention::Radioml).generate_parts(&mut window_rng(4, 0), 0, 7.0);
        let level = 1.73f32.sqrt();
        for (a, b) in p.signal.iter().zip(&q.signal) {
            assert!((a * level - b).norm() < 1e-5);
        }
    }

    #[test]
    fn radioml_convention_is_refused_for_recipes_without_a_published_script() {
        for name in ["rml2018a", "zsl7", "aoa4"] {
            let mut r = Recipe::by_name(name, &RecipeOptions::default(), 1).unwrap();
            let e = r
                .set_snr_convention(SnrConvention::Radioml)
                .unwrap_err()
                .to_string();
            assert!(e.contains("'snr-convention'") && e.contains(name), "{e}");
            assert_eq!(r.snr_convention(), SnrConvention::True);
        }
    }

    /// `gen --snr-convention radioml`: snr.npy holds the nominal grid values, snr_true.npy the
    /// true SNRs, the manifest says which is which; generating on the true axis into the same
    /// folder removes the stale snr_true.npy. A manifest without the record reads as `true`.
    #[test]
    fn radioml_datasets_keep_both_snrs_and_say_so() {
        let tmp = tempfile::tempdir().unwrap();
        let mut r = rml2016a(SnrConvention::Radioml);
        r.keep_classes(&["BPSK".into(), "WBFM".into()]).unwrap();
        let spec = GenerateSpec::for_recipe(&r, Some(3), Some(vec![-4.0, 10.0]), 5).unwrap();
        let manifest = generate_dataset(&r, &spec, tmp.path(), &|_| {}).unwrap();
        assert_eq!(
            SnrConvention::of_manifest(&manifest),
            SnrConvention::Radioml
        );
        assert!(
            manifest.snr_definition.contains("nominal"),
            "{}",
            manifest.snr_definition
        );
        assert!(manifest.snr_definition.contains(TRUE_SNR_FILE));
        let ds = crate::iq::dataset::Dataset::open(tmp.path()).unwrap();
        let labels = ds.snr_db().unwrap();
        let truth = read_true_snr_db(tmp.path(), &ds.manifest).unwrap().unwrap();
        assert_eq!(truth.len(), labels.len());
        let mean_true_at = |nominal: f32| {
            let t: Vec<f32> = labels
                .iter()
                .zip(&truth)
                .filter(|(l, _)| **l == nominal)
                .map(|(_, t)| *t)
                .collect();
            assert_eq!(t.len(), 6, "3 windows × 2 classes at {nominal} dB");
            assert!(t.iter().all(|v| v.is_finite()), "{t:?}");
            t.iter().sum::<f32>() / t.len() as f32
        };
        assert!(
            labels.iter().all(|l| [-4.0, 10.0].contains(l)),
            "{labels:?}"
        );
        // 14 nominal dB apart are 28 true dB apart (single windows fade by several dB).
        let gap = mean_true_at(10.0) - mean_true_at(-4.0);
        assert!((gap - 28.0).abs() < 6.0, "true SNRs {gap} dB apart");
        // The same folder, on the true axis.
        let r = rml2016a(SnrConvention::True);
        let spec = GenerateSpec::for_recipe(&r, Some(1), Some(vec![0.0]), 5).unwrap();
        let manifest = generate_dataset(&r, &spec, tmp.path(), &|_| {}).unwrap();
        assert_eq!(SnrConvention::of_manifest(&manifest), SnrConvention::True);
        assert!(!tmp.path().join(TRUE_SNR_FILE).exists());
        assert_eq!(read_true_snr_db(tmp.path(), &manifest).unwrap(), None);
        // A manifest written before the convention was recorded.
        let mut old = manifest.clone();
        if let DatasetSource::Synth { params, .. } = &mut old.source {
            params.as_object_mut().unwrap().remove(PARAMS_KEY);
        }
        assert_eq!(SnrConvention::of_manifest(&old), SnrConvention::True);
    }

    #[test]
    fn l1_scale_makes_the_magnitudes_sum_to_one() {
        let s = [C32::new(3.0, 4.0), C32::new(0.0, 1.0)];
        let n = [C32::new(0.0, 0.0), C32::new(0.0, 1.0)];
        assert!((l1_scale(&s, &n) - 1.0 / 7.0).abs() < 1e-7);
        assert_eq!(l1_scale(&[C32::new(0.0, 0.0)], &[C32::new(0.0, 0.0)]), 1.0);
    }
}
