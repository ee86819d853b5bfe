//! Throughput of the signal layer, printed as figures: `cargo bench --bench signals`.
//!
//! - Generator: the whole rml2016a set (220,000 windows) written to disk — wall time and the
//!   process's peak RSS — then windows/s on one core and on all cores.
//! - Framing + unit-RMS normalisation + Hann periodogram of 128-sample windows, one channel on one
//!   core, in MS/s, beside a plain copy of the same samples into windows measured in the same
//!   run (the ratio is what the DSP costs over moving the bytes).
//! - SNR estimation in ns/window at 128 and 1024 samples, beside M2M4 (a few multiply-adds per
//!   sample) as the cheap peer.
//! - Every recipe in µs/window, whole window beside its channel + noise alone; every modulator
//!   class in µs/window at 128 and 1024 samples.
//!
//! Each figure is the best of several repetitions; the machine is shared, so read ratios rather
//! than absolute numbers. `SPECWATCH_BENCH_QUICK=1` skips the full-set run.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;

use specwatch::dsp::frame::{FrameSpec, Framer};
use specwatch::dsp::normalize::Normalization;
use specwatch::dsp::psd::{Psd, WelchConfig, WindowFn};
use specwatch::dsp::snr::{SpectralSnr, m2m4_snr_db};
use specwatch::iq::C32;
use specwatch::synth::audio::AudioBank;
use specwatch::synth::channel::exact_noise;
use specwatch::synth::classes::{ModContext, known_classes, modulator};
use specwatch::synth::generate::{GenerateSpec, generate_dataset};
use specwatch::synth::recipe::{RECIPES, Recipe};
use specwatch::synth::{RecipeOptions, window_rng};

/// Best wall time in seconds of `reps` runs of `f`.
fn best_of(reps: usize, mut f: impl FnMut()) -> f64 {
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() {
    let cores = rayon::current_num_threads();
    println!("specwatch signal benchmarks ({cores} worker threads)\n");
    let recipe = Recipe::by_name("rml2016a", &RecipeOptions::default(), 1).expect("rml2016a");

    if std::env::var("SPECWATCH_BENCH_QUICK").as_deref() != Ok("1") {
        let dir = tempfile::tempdir().expect("temporary folder");
        let spec = GenerateSpec::for_recipe(&recipe, Some(1000), None, 1).expect("spec");
        let t = Instant::now();
        let m = generate_dataset(&recipe, &spec, dir.path(), &|_| {}).expect("generate");
        let secs = t.elapsed().as_secs_f64();
        println!(
            "generator  rml2016a full set to disk: {} windows in {secs:.2} s ({:.0} windows/s), peak RSS {:.0} MiB",
            m.count,
            m.count as f64 / secs,
            peak_rss_mib().unwrap_or(f64::NAN)
        );
    }

    let n = 22_000usize;
    let generate = |i: usize| {
        let mut rng = window_rng(7, i as u64);
        let w = recipe.generate(&mut rng, i % 11, -20.0 + 2.0 * ((i / 11) % 20) as f32);
        black_box(w.iq.len())
    };
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("one-thread pool");
    let t1 = best_of(3, || {
        one.install(|| black_box((0..n).into_par_iter().map(generate).sum::<usize>()));
    });
    let tn = best_of(3, || {
        black_box((0..n).into_par_iter().map(generate).sum::<usize>());
    });
    println!(
        "generator  rml2016a in memory: 1 core {:.0} windows/s ({:.1} µs/window); {cores} cores {:.0} windows/s (speed-up {:.2}×)",
        n as f64 / t1,
        t1 / n as f64 * 1e6,
        n as f64 / tn,
        t1 / tn
    );

    // One channel of noise-like samples, framed into 128-sample windows.
    let samples = 1usize << 22;
    let mut rng = window_rng(3, 0);
    let stream: Vec<C32> = {
        use rand_distr::{Distribution, StandardNormal};
        (0..samples)
            .map(|_| {
                C32::new(
                    StandardNormal.sample(&mut rng),
                    StandardNormal.sample(&mut rng),
                )
            })
            .collect()
    };
    let spec = FrameSpec::new(128, 128, 1).expect("frame spec");
    let mut window = vec![C32::new(0.0, 0.0); 128];
    let mut psd_out = vec![0f32; 128];
    let mut psd = Psd::new(WelchConfig::periodogram(128, WindowFn::Hann)).expect("psd");
    let t_dsp = best_of(5, || {
        let mut framer = Framer::new(spec);
        for chunk in stream.chunks(8192) {
            framer.push(chunk).expect("push");
            while framer.next_window(&mut window).expect("window").is_some() {
                Normalization::UnitRms.apply(&mut window);
                psd.periodogram(&window, &mut psd_out).expect("psd");
                black_box(&psd_out);
            }
        }
    });
    let t_copy = best_of(5, || {
        for w in stream.chunks_exact(128) {
            window.copy_from_slice(w);
            black_box(&window);
        }
    });
    println!(
        "dsp        frame+unit-RMS+PSD (128): {:.0} MS/s on one core; plain copy {:.0} MS/s (DSP costs {:.1}× a copy)",
        samples as f64 / t_dsp / 1e6,
        samples as f64 / t_copy / 1e6,
        t_dsp / t_copy
    );

    for len in [128usize, 1024] {
        let windows: Vec<&[C32]> = stream.chunks_exact(len).take(4096).collect();
        let mut est = SpectralSnr::new(len).expect("estimator");
        let t_spec = best_of(3, || {
            for w in &windows {
                black_box(est.estimate(w).expect("estimate"));
            }
        });
        let t_m2m4 = best_of(3, || {
            for w in &windows {
                black_box(m2m4_snr_db(w, 1.0).expect("m2m4"));
            }
        });
        let per = |t: f64| t / windows.len() as f64 * 1e9;
        println!(
            "snr        {len:>4} samples: spectral {:.0} ns/window; M2M4 {:.0} ns/window ({:.1}×)",
            per(t_spec),
            per(t_m2m4),
            t_spec / t_m2m4
        );
    }

    println!();
    for name in RECIPES {
        let r = Recipe::by_name(name, &RecipeOptions::default(), 1).expect("recipe");
        let n = if r.window_len > 128 { 2_000 } else { 20_000 };
        let t_all = best_of(3, || {
            for i in 0..n {
                let w = r.generate(&mut window_rng(1, i as u64), i % r.classes.len(), 0.0);
                black_box(w.iq[0]);
            }
        });
        let ch = r.channel();
        let len = r.window_len;
        let input: Vec<C32> = (0..ch.input_len(len))
            .map(|k| C32::from_polar(1.0, 0.1 * k as f32))
            .collect();
        let t_chan = best_of(3, || {
            for i in 0..n {
                let mut rng = window_rng(1, i as u64);
                let y = ch.propagate(&mut rng, &input, len);
                black_box(exact_noise(&mut rng, &y, 0.0));
            }
        });
        println!(
            "recipe     {name:>8}: {:6.1} µs/window in all; channel + noise {:6.1} µs/window (one core)",
            t_all / n as f64 * 1e6,
            t_chan / n as f64 * 1e6
        );
    }

    println!();
    let ctx = ModContext::new(Arc::new(AudioBank::speech_like(1, 10.0)));
    for name in known_classes() {
        let m = modulator(name, &ctx).expect("known class");
        let mut line = format!("modulator  {name:>10}:");
        for len in [128usize, 1024] {
            let reps = if len == 128 { 2_000 } else { 300 };
            let t = best_of(5, || {
                for i in 0..reps {
                    black_box(m.generate(&mut window_rng(2, i), len));
                }
            });
            line += &format!("  len {len:>4} {:6.2} µs", t / reps as f64 * 1e6);
        }
        println!("{line}");
    }
}
