//! The channel model, the antenna-array source and the dataset recipes: exact SNR labels,
//! determinism, the recipes' contract, the dynamic channel's statistics, and array geometry.

use num_complex::Complex64;
use rand::SeedableRng;
use specwatch::dsp::array::{ArrayGeometry, ArrayLayout};
use specwatch::iq::C32;
use specwatch::synth::antenna::{ArrayConfig, ArraySource};
use specwatch::synth::channel::{
    Channel, ChannelConfig, OffsetWalk, exact_noise, mean_power, measured_snr_db,
};
use specwatch::synth::recipe::{RECIPES, Recipe, snr_grid_values};
use specwatch::synth::{RecipeOptions, SynthRng, window_rng};

fn recipe(name: &str) -> Recipe {
    Recipe::by_name(name, &RecipeOptions::default(), 7).expect("recipe builds")
}

fn tone(len: usize, cycles_per_sample: f64) -> Vec<C32> {
    (0..len)
        .map(|n| {
            let p = 2.0 * std::f64::consts::PI * cycles_per_sample * n as f64;
            C32::new(p.cos() as f32, p.sin() as f32)
        })
        .collect()
}

/// Frequency of a (nearly) pure tone in Hz: the mean phase step between neighbours.
fn tone_frequency_hz(x: &[C32], fs: f64) -> f64 {
    let acc: Complex64 = x
        .windows(2)
        .map(|w| {
            let p = w[1] * w[0].conj();
            Complex64::new(f64::from(p.re), f64::from(p.im))
        })
        .sum();
    acc.arg() * fs / (2.0 * std::f64::consts::PI)
}

/// A recipe's contract: name, classes, window length, channels, SNR grid, count, angles.
type Expected = (
    &'static str,
    &'static [&'static str],
    usize,
    usize,
    (f32, f32, f32),
    usize,
    bool,
);

#[test]
fn recipes_have_the_published_shapes_and_class_lists() {
    let want: [Expected; 4] = [
        (
            "rml2016a",
            &[
                "8PSK", "AM-DSB", "AM-SSB", "BPSK", "CPFSK", "GFSK", "PAM4", "QAM16", "QAM64",
                "QPSK", "WBFM",
            ],
            128,
            1,
            (-20.0, 18.0, 2.0),
            1000,
            false,
        ),
        (
            "rml2018a",
            &[
                "OOK",
                "4ASK",
                "8ASK",
                "BPSK",
                "QPSK",
                "8PSK",
                "16PSK",
                "32PSK",
                "16APSK",
                "32APSK",
                "64APSK",
                "128APSK",
                "16QAM",
                "32QAM",
                "64QAM",
                "128QAM",
                "256QAM",
                "AM-SSB-WC",
                "AM-SSB-SC",
                "AM-DSB-WC",
                "AM-DSB-SC",
                "FM",
                "GMSK",
                "OQPSK",
            ],
            1024,
            1,
            (-20.0, 30.0, 2.0),
            200,
            false,
        ),
        (
            "zsl7",
            &["BPSK", "QPSK", "2ASK", "4ASK", "16QAM", "32QAM", "64QAM"],
            1024,
            1,
            (0.0, 10.0, 1.0),
            400,
            false,
        ),
        (
            "aoa4",
            &["16QAM", "64QAM", "BPSK", "QPSK", "PAM4", "CW-AM"],
            1024,
            4,
            (-10.0, 20.0, 2.0),
            100,
            true,
        ),
    ];
    assert_eq!(RECIPES, ["rml2016a", "rml2018a", "zsl7", "aoa4"]);
    for (name, classes, len, channels, grid, per, angles) in want {
        let r = recipe(name);
        assert_eq!(r.name, name);
        assert_eq!(r.classes, classes, "{name}");
        assert_eq!((r.window_len, r.channels), (len, channels), "{name}");
        assert_eq!(r.default_snr_grid_db, grid, "{name}");
        assert_eq!(r.default_per_class_snr, per, "{name}");
        assert_eq!(r.has_angles, angles, "{name}");
        let mut rng = window_rng(1, 0);
        let w = r.generate(&mut rng, classes.len() - 1, 10.0);
        assert_eq!(w.iq.len(), channels * len, "{name}");
        assert_eq!(w.angles_deg.is_some(), angles, "{name}");
        assert!(
            w.iq.iter().all(|v| v.re.is_finite() && v.im.is_finite()),
            "{name}"
        );
        let p = r.params_json();
        assert_eq!(p["recipe"], name);
        assert_eq!(p["classes"].as_array().map(Vec::len), Some(classes.len()));
        assert!(
            p["snr_definition"]
                .as_str()
                .is_some_and(|s| s.contains("not"))
        );
        assert!(p["channel"].is_object() && !p["audio"].is_null());
        assert_eq!(r.array_json().is_some(), angles);
        assert!(!r.notes().is_empty());
    }
    assert_eq!(rml2016a_rate(), 200e3);
}

fn rml2016a_rate() -> f64 {
    recipe("rml2016a").sample_rate_hz
}

#[test]
fn snr_label_matches_the_noise_added_within_0_1_db() {
    // Tolerance 0.1 dB (in practice the match is to float rounding).
    for name in ["rml2016a", "zsl7", "aoa4", "rml2018a"] {
        let array = name == "aoa4";
        let options = RecipeOptions {
            phase_noise: true,
            iq_imbalance: true,
            random_gain: true,
            element_errors: array,
            multipath: array,
            ..RecipeOptions::default()
        };
        for opts in [RecipeOptions::default(), options] {
            let r = Recipe::by_name(name, &opts, 1).expect("recipe builds");
            for class in 0..r.classes.len() {
                for (i, snr) in [-20.0f32, -3.0, 0.0, 7.0, 18.0].into_iter().enumerate() {
                    let index = (class * 10 + i) as u64;
                    let parts = r.generate_parts(&mut window_rng(5, index), class, snr);
                    let measured = measured_snr_db(&parts.signal, &parts.noise);
                    assert!(
                        (measured - snr).abs() < 0.1,
                        "{name} class {class}: {measured} vs {snr}"
                    );
                    assert!(
                        (parts.snr_db - snr).abs() < 0.1,
                        "{name}: label {}",
                        parts.snr_db
                    );
                    // The window is exactly gain · (signal + noise), from the same stream.
                    let gain = parts.gain;
                    let expect = parts.clone().into_window();
                    let w = r.generate(&mut window_rng(5, index), class, snr);
                    assert_eq!(w, expect, "{name}");
                    if opts.random_gain {
                        assert!(
                            (0.316..=3.163).contains(&gain),
                            "gain {gain} outside −10..+10 dB"
                        );
                    } else {
                        assert_eq!(gain, 1.0);
                    }
                }
            }
        }
    }
}

#[test]
fn exact_noise_is_exact_and_white() {
    // Measured SNR within 1e-3 dB of the request; noise mean ≈ 0 (|mean| < 0.1·rms) and I/Q
    // powers equal within 20 % over 4096 samples.
    let mut rng = SynthRng::seed_from_u64(9);
    let s = tone(4096, 0.01);
    let (n, snr) = exact_noise(&mut rng, &s, 3.0);
    assert!((snr - 3.0).abs() < 1e-3);
    assert!((measured_snr_db(&s, &n) - 3.0).abs() < 1e-3);
    let rms = mean_power(&n).sqrt() as f32;
    let mean = n.iter().sum::<C32>() / n.len() as f32;
    assert!(mean.norm() < 0.1 * rms);
    let pi: f32 = n.iter().map(|v| v.re * v.re).sum();
    let pq: f32 = n.iter().map(|v| v.im * v.im).sum();
    assert!((pi / pq - 1.0).abs() < 0.2, "I/Q power ratio {}", pi / pq);
    let (n, snr) = exact_noise(&mut rng, &s, f32::INFINITY);
    assert!(snr.is_infinite() && n.iter().all(|v| *v == C32::new(0.0, 0.0)));
}

#[test]
fn same_seed_and_index_give_the_same_window() {
    for name in ["rml2016a", "aoa4"] {
        let r = recipe(name);
        let a = r.generate(&mut window_rng(42, 17), 3, 4.0);
        let b = r.generate(&mut window_rng(42, 17), 3, 4.0);
        let c = r.generate(&mut window_rng(42, 18), 3, 4.0);
        let d = r.generate(&mut window_rng(43, 17), 3, 4.0);
        assert_eq!(a, b, "{name}");
        assert_ne!(a.iq, c.iq, "{name}");
        assert_ne!(a.iq, d.iq, "{name}");
        // A recipe built again (same audio seed) makes the same window.
        let again = recipe(name).generate(&mut window_rng(42, 17), 3, 4.0);
        assert_eq!(a, again, "{name}");
    }
}

#[test]
fn dynamic_channel_keeps_mean_power_gain_near_1() {
    // Mean output/input power over 2000 windows within 10 % of 1 (the fading paths are
    // normalised to unit total power); a slow tone stands in for a band-limited signal.
    let ch = Channel::new(ChannelConfig::rml2016a(200e3)).unwrap();
    let len = 128;
    let input = tone(ch.input_len(len), 0.02);
    let mut total = 0.0;
    let windows = 2000;
    let mut lowest = f64::INFINITY;
    let mut highest = 0.0f64;
    for i in 0..windows {
        let y = ch.propagate(&mut window_rng(3, i), &input, len);
        let p = mean_power(&y);
        total += p;
        lowest = lowest.min(p);
        highest = highest.max(p);
    }
    let mean = total / windows as f64;
    assert!((mean - 1.0).abs() < 0.1, "mean power gain {mean}");
    // It does fade: some windows are 6 dB down, some 3 dB up.
    assert!(
        lowest < 0.25 && highest > 2.0,
        "power gain range {lowest}..{highest}"
    );
}

#[test]
fn rml2016a_carrier_offset_is_a_walk_from_zero_a_few_hz_wide() {
    // RadioML's walks start at 0 Hz in runs of 320,000 samples: after k uniform in 0..320,000
    // steps of σ 0.01 Hz the offset is N(0, k·σ²), RMS 0.01·√160,000 = 4 Hz over windows, and
    // below 5·0.01·√320,000 ≈ 28 Hz always.
    let fs = 200e3;
    let cfo_only = ChannelConfig {
        carrier_offset: ChannelConfig::rml2016a(fs).carrier_offset,
        ..ChannelConfig::ideal(fs)
    };
    assert_eq!(
        cfo_only.carrier_offset.map(|w| w.run_samples),
        Some(Some(specwatch::synth::channel::RML_RUN_SAMPLES))
    );
    let len = 1024;
    let ch = Channel::new(cfo_only).unwrap();
    let input = vec![C32::new(1.0, 0.0); ch.input_len(len)];
    let windows = 400;
    let mut sum_sq = 0.0;
    for i in 0..windows {
        let (y, trace) = ch.propagate_traced(&mut window_rng(13, i), &input, len);
        let f = tone_frequency_hz(&y, fs);
        assert!(f.abs() <= 28.3, "window {i}: {f} Hz");
        assert!(
            f >= trace.cfo_hz.0 - 0.05 && f <= trace.cfo_hz.1 + 0.05,
            "window {i}: {f} Hz, walk {:?}",
            trace.cfo_hz
        );
        sum_sq += f * f;
    }
    let rms = (sum_sq / windows as f64).sqrt();
    assert!(
        (3.0..5.0).contains(&rms),
        "RMS offset {rms} Hz, expected ≈ 4 Hz"
    );
}

#[test]
fn stationary_carrier_offset_stays_within_500_hz_and_spreads() {
    // A walk without a run length starts from its stationary spread: a constant input (0 Hz)
    // comes out at the walk's frequency (within 0.05 Hz; the walk moves < 1 Hz in a window),
    // |f| ≤ 500 Hz + 0.05 Hz, and more than a third of the windows are beyond ±250 Hz.
    let fs = 200e3;
    let cfo_only = ChannelConfig {
        carrier_offset: Some(OffsetWalk {
            std_dev_hz: 0.01,
            max_dev_hz: 500.0,
            run_samples: None,
        }),
        ..ChannelConfig::ideal(fs)
    };
    let len = 1024;
    let ch = Channel::new(cfo_only).unwrap();
    let input = vec![C32::new(1.0, 0.0); ch.input_len(len)];
    let mut beyond_half = 0;
    for i in 0..300 {
        let (y, trace) = ch.propagate_traced(&mut window_rng(11, i), &input, len);
        let f = tone_frequency_hz(&y, fs);
        assert!(f.abs() <= 500.05, "window {i}: {f} Hz");
        assert!(
            trace.cfo_hz.0 >= -500.0 && trace.cfo_hz.1 <= 500.0,
            "{trace:?}"
        );
        assert!(
            f >= trace.cfo_hz.0 - 0.05 && f <= trace.cfo_hz.1 + 0.05,
            "window {i}: {f} Hz, walk {:?}",
            trace.cfo_hz
        );
        if f.abs() > 250.0 {
            beyond_half += 1;
        }
    }
    assert!(
        beyond_half > 100,
        "only {beyond_half} of 300 windows beyond ±250 Hz"
    );
    // The whole dynamic channel: the fading's random FM (1 Hz Doppler, faster phase changes in
    // a fade) moves the tone by a few Hz around the walk: |f| ≤ 28 + 20 Hz, and 95 % of the
    // windows within 3 Hz of the walk.
    let ch = Channel::new(ChannelConfig::rml2016a(fs)).unwrap();
    let input = vec![C32::new(1.0, 0.0); ch.input_len(len)];
    let mut near = 0;
    for i in 0..300 {
        let (y, trace) = ch.propagate_traced(&mut window_rng(12, i), &input, len);
        let f = tone_frequency_hz(&y, fs);
        assert!(f.abs() <= 48.0, "window {i}: {f} Hz");
        if f >= trace.cfo_hz.0 - 3.0 && f <= trace.cfo_hz.1 + 3.0 {
            near += 1;
        }
    }
    assert!(
        near >= 285,
        "only {near} of 300 windows within 3 Hz of the walk"
    );
}

#[test]
fn sample_rate_offset_is_bounded() {
    // Resampling by 1 + sro/fs moves a tone at f0 to f0·(1 + sro/fs): the offset measured from a
    // tone at fs/8 is within ±50 Hz (+1 Hz tolerance) and within 1 Hz of the walk's range.
    let fs = 200e3;
    let cfg = ChannelConfig {
        sample_rate_offset: Some(OffsetWalk {
            std_dev_hz: 0.01,
            max_dev_hz: 50.0,
            run_samples: None,
        }),
        ..ChannelConfig::ideal(fs)
    };
    let ch = Channel::new(cfg).unwrap();
    let len = 1024;
    let f0 = 0.125;
    let input = tone(ch.input_len(len), f0);
    let mut largest = 0.0f64;
    for i in 0..200 {
        let (y, trace) = ch.propagate_traced(&mut window_rng(13, i), &input, len);
        let f = tone_frequency_hz(&y, fs);
        let sro = (f / (f0 * fs) - 1.0) * fs;
        assert!(sro.abs() <= 51.0, "window {i}: SRO {sro} Hz");
        assert!(
            trace.sro_hz.0 >= -50.0 && trace.sro_hz.1 <= 50.0,
            "{trace:?}"
        );
        assert!(
            sro >= trace.sro_hz.0 - 1.0 && sro <= trace.sro_hz.1 + 1.0,
            "{sro} vs {trace:?}"
        );
        largest = largest.max(sro.abs());
    }
    assert!(
        largest > 25.0,
        "the offset never exceeded 25 Hz ({largest})"
    );
}

/// Principal eigenvector of the spatial covariance of a `[channels, len]` window.
fn principal_eigenvector(x: &[C32], channels: usize) -> Vec<Complex64> {
    let len = x.len() / channels;
    let z = |c: usize, n: usize| {
        let v = x[c * len + n];
        Complex64::new(f64::from(v.re), f64::from(v.im))
    };
    let mut r = vec![Complex64::new(0.0, 0.0); channels * channels];
    for n in 0..len {
        for i in 0..channels {
            for j in 0..channels {
                r[i * channels + j] += z(i, n) * z(j, n).conj();
            }
        }
    }
    let mut v: Vec<Complex64> = (0..channels)
        .map(|i| Complex64::new(1.0, 0.1 * i as f64))
        .collect();
    for _ in 0..300 {
        let w: Vec<Complex64> = (0..channels)
            .map(|i| (0..channels).map(|j| r[i * channels + j] * v[j]).sum())
            .collect();
        let norm = w.iter().map(|c| c.norm_sqr()).sum::<f64>().sqrt();
        v = w.into_iter().map(|c| c / norm).collect();
    }
    v
}

fn steering_match(a: &[Complex64], v: &[Complex64]) -> f64 {
    let dot: Complex64 = a.iter().zip(v).map(|(a, v)| a.conj() * v).sum();
    let na = a.iter().map(|c| c.norm_sqr()).sum::<f64>().sqrt();
    let nv = v.iter().map(|c| c.norm_sqr()).sum::<f64>().sqrt();
    dot.norm() / (na * nv)
}

#[test]
fn aoa4_windows_point_at_their_recorded_angles() {
    // At 30 dB without element errors or multipath, |aᴴv|/‖a‖ ≥ 0.99 for the principal
    // eigenvector v of the spatial covariance and the steering vector a of the recorded angles.
    let r = recipe("aoa4");
    let g = ArrayGeometry::default_aoa4();
    for i in 0..60u64 {
        let class = (i as usize) % r.classes.len();
        let w = r.generate(&mut window_rng(21, i), class, 30.0);
        let [az, el] = w.angles_deg.expect("aoa4 has angles");
        assert!(az.abs() <= 70.0 && el.abs() <= 70.0, "({az}, {el})");
        let v = principal_eigenvector(&w.iq, 4);
        let a = g.steering(f64::from(az), f64::from(el));
        let m = steering_match(&a, &v);
        assert!(m >= 0.99, "window {i} ({az}, {el}): match {m}");
    }
}

#[test]
fn array_source_follows_the_steering_vector_for_every_layout() {
    // Noise-free: |aᴴv|/‖a‖ ≥ 0.999 for ULA, URA and UCA; a ULA records elevation 0.
    for (kind, n) in [("ula", 4), ("ura", 6), ("uca", 5)] {
        let g = ArrayGeometry::from_kind(kind, n, 0.5).unwrap();
        let a = ArraySource::new(ArrayConfig::new(g.clone())).unwrap();
        assert_eq!(a.channels(), n);
        let mut rng = SynthRng::seed_from_u64(4);
        let src = tone(a.input_len(256), 0.03);
        for _ in 0..20 {
            let p = a.draw_placement(&mut rng);
            if kind == "ula" {
                assert_eq!(p.elevation_deg, 0.0);
            }
            assert!(p.azimuth_deg.abs() <= 70.0 && p.elevation_deg.abs() <= 70.0);
            let x = a.render(&mut rng, &src, 256, p);
            assert_eq!(x.len(), n * 256);
            let v = principal_eigenvector(&x, n);
            let m = steering_match(&g.steering(p.azimuth_deg, p.elevation_deg), &v);
            assert!(m >= 0.999, "{kind}: {m}");
        }
    }
}

#[test]
fn ula_recipe_records_elevation_zero() {
    let options = RecipeOptions {
        array: Some(ArrayGeometry::from_kind("ula", 4, 0.5).unwrap()),
        ..RecipeOptions::default()
    };
    let r = Recipe::by_name("aoa4", &options, 1).unwrap();
    assert_eq!(r.channels, 4);
    for i in 0..50 {
        let w = r.generate(&mut window_rng(2, i), 0, 10.0);
        let [az, el] = w.angles_deg.unwrap();
        assert_eq!(el, 0.0);
        assert!(az.abs() <= 70.0);
    }
    // The channel count follows the array.
    let options = RecipeOptions {
        array: Some(ArrayGeometry::from_kind("uca", 8, 0.5).unwrap()),
        ..RecipeOptions::default()
    };
    let r = Recipe::by_name("aoa4", &options, 1).unwrap();
    assert_eq!(r.channels, 8);
    assert_eq!(
        r.generate(&mut window_rng(2, 0), 0, 10.0).iq.len(),
        8 * 1024
    );
}

#[test]
fn multipath_and_element_errors_move_the_array_response() {
    // With both options the steering match drops below 0.999 in some window (they do
    // something), and labels stay exact (0.1 dB).
    let options = RecipeOptions {
        element_errors: true,
        multipath: true,
        ..RecipeOptions::default()
    };
    let r = Recipe::by_name("aoa4", &options, 1).unwrap();
    let g = ArrayGeometry::default_aoa4();
    let mut worst = 1.0f64;
    for i in 0..30 {
        let p = r.generate_parts(&mut window_rng(8, i), 2, 40.0);
        assert!((measured_snr_db(&p.signal, &p.noise) - 40.0).abs() < 0.1);
        let [az, el] = p.angles_deg.unwrap();
        let v = principal_eigenvector(&p.signal, 4);
        worst = worst.min(steering_match(
            &g.steering(f64::from(az), f64::from(el)),
            &v,
        ));
    }
    assert!(worst < 0.999, "worst match {worst}");
}

#[test]
fn bad_options_name_the_parameter() {
    let err = |name: &str, o: &RecipeOptions| Recipe::by_name(name, o, 1).unwrap_err().to_string();
    let e = err("rml2017", &RecipeOptions::default());
    assert!(e.contains("rml2017") && e.contains("rml2016a"), "{e}");
    let one = ArrayGeometry {
        layout: ArrayLayout::Ula {
            elements: 1,
            spacing_wavelengths: 0.5,
        },
        positions_wavelengths: vec![[0.0, 0.0, 0.0]],
    };
    let e = err(
        "aoa4",
        &RecipeOptions {
            array: Some(one),
            ..RecipeOptions::default()
        },
    );
    assert!(e.contains("'array'") && e.contains("1 element"), "{e}");
    let e = ArrayGeometry::from_kind("ula", 1, 0.5)
        .unwrap_err()
        .to_string();
    assert!(e.contains("'elements'"), "{e}");
    let e = err(
        "rml2016a",
        &RecipeOptions {
            array: Some(ArrayGeometry::default_aoa4()),
            ..RecipeOptions::default()
        },
    );
    assert!(e.contains("'array'") && e.contains("aoa4"), "{e}");
    let e = err(
        "zsl7",
        &RecipeOptions {
            multipath: true,
            ..RecipeOptions::default()
        },
    );
    assert!(e.contains("'multipath'"), "{e}");
    let mut cfg = ChannelConfig::rml2016a(200e3);
    cfg.carrier_offset = Some(OffsetWalk {
        std_dev_hz: -1.0,
        max_dev_hz: 500.0,
        run_samples: None,
    });
    let e = Channel::new(cfg.clone()).unwrap_err().to_string();
    assert!(e.contains("'carrier_offset'"), "{e}");
    cfg.carrier_offset = Some(OffsetWalk {
        std_dev_hz: 0.01,
        max_dev_hz: 500.0,
        run_samples: Some(0),
    });
    let e = Channel::new(cfg).unwrap_err().to_string();
    assert!(
        e.contains("'carrier_offset'") && e.contains("run_samples"),
        "{e}"
    );
    let e = snr_grid_values((10.0, 0.0, 1.0)).unwrap_err().to_string();
    assert!(e.contains("'snr_grid'"), "{e}");
}

#[test]
fn snr_grid_values_hit_the_grid_exactly() {
    let v = snr_grid_values((-20.0, 18.0, 2.0)).unwrap();
    assert_eq!(v.len(), 20);
    assert_eq!((v[0], v[19]), (-20.0, 18.0));
    assert_eq!(snr_grid_values((0.0, 10.0, 1.0)).unwrap().len(), 11);
    assert_eq!(snr_grid_values((5.0, 5.0, 0.0)).unwrap(), vec![5.0]);
}
