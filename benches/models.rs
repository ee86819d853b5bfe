//! Throughput of the model zoo, printed as figures: `cargo bench --bench models`.
//!
//! - Training: windows/s of one optimisation step (forward + backward + Adam update) for every
//!   architecture at width 1 (the published sizes a user would train), batch 256 of 128-sample
//!   single-channel windows, on burn's CPU backend — with each one's ratio to VT-CNN2 measured
//!   in the same run (the machine is shared, so read ratios rather than absolute numbers).
//! - Inference: windows/s through ONNX Runtime (`specwatch::infer::Model`, CPU, preprocessing
//!   included) at batch 1, 64 and 512 for every `models/*.json` card in the repository; skipped,
//!   with the reason printed, when there is none or the runtime library cannot be found.
//!
//! Each figure is the best of several repetitions. `SPECWATCH_BENCH_QUICK=1` measures one small
//! step per architecture and one repetition per batch size (a smoke run that the bench works).

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use specwatch::infer::{ExecutionPreference, Model as Served, RuntimeOptions};
use specwatch::iq::C32;
use specwatch::train::models::{self, ModelSpec};

const LEN: usize = 128;
const ROWS: usize = 2;
const CLASSES: usize = 11;

/// How much to measure.
struct Plan {
    batch: usize,
    steps: usize,
    reps: usize,
    quick: bool,
}

impl Plan {
    fn from_env() -> Self {
        if std::env::var("SPECWATCH_BENCH_QUICK").as_deref() == Ok("1") {
            Plan {
                batch: 16,
                steps: 1,
                reps: 1,
                quick: true,
            }
        } else {
            Plan {
                batch: 256,
                steps: 3,
                reps: 5,
                quick: false,
            }
        }
    }
}

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

/// Training windows/s of `arch` at width 1 (best step of `plan.steps`, after one warm-up step).
fn train_rate(arch: &str, plan: &Plan) -> f64 {
    let spec = ModelSpec {
        num_classes: CLASSES,
        rows: ROWS,
        window_len: LEN,
        dropout: 0.5,
        width: 1.0,
        representation: specwatch::dsp::repr::Representation::Iq,
        options: Default::default(),
    };
    let device = Device::flex().autodiff();
    device.seed(1);
    let mut model = models::build(arch, &spec, &device).expect("build");
    let mut optim: ModuleOptimizer = AdamConfig::new().init();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let targets: Vec<i64> = (0..plan.batch)
        .map(|_| rng.random_range(0..CLASSES as i64))
        .collect();
    let targets: Tensor<1, Int> =
        Tensor::from_data(TensorData::new(targets, [plan.batch]), &device);
    let inputs = Tensor::<3>::random(
        [plan.batch, ROWS, LEN],
        Distribution::Normal(0.0, 1.0),
        &device,
    );
    let mut best = f64::INFINITY;
    for step in 0..=plan.steps {
        let t = Instant::now();
        let logits = model.forward(inputs.clone());
        let loss = loss_fn.forward(logits, targets.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-3, model, grads);
        let loss: f32 = loss.into_scalar(); // waits for the step to finish
        black_box(loss);
        if step > 0 {
            best = best.min(t.elapsed().as_secs_f64());
        }
    }
    plan.batch as f64 / best
}

fn model_cards() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let mut cards: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect()
        })
        .unwrap_or_default();
    cards.sort();
    cards
}

fn random_windows(n: usize, rng: &mut ChaCha8Rng) -> Vec<C32> {
    (0..n)
        .map(|_| C32::new(rng.random_range(-1.0..1.0), rng.random_range(-1.0..1.0)))
        .collect()
}

fn inference(plan: &Plan) {
    let cards = model_cards();
    if cards.is_empty() {
        println!(
            "inference: SKIPPED — no model cards in models/ (export one with `specwatch-train \
             export --run RUN --out models/NAME`)"
        );
        return;
    }
    let options = RuntimeOptions {
        execution: ExecutionPreference::Cpu,
        ..RuntimeOptions::default()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for card in cards {
        let mut model = match Served::load(&card, &options) {
            Ok(m) => m,
            Err(e) => {
                println!("inference {}: SKIPPED — {e}", card.display());
                continue;
            }
        };
        let name = model.card().name.clone();
        let mut line = format!("inference {name:<24}");
        for batch in [1usize, 64, 512] {
            let windows = random_windows(batch * model.window_size(), &mut rng);
            let runs = if plan.quick { 1 } else { (2048 / batch).max(3) };
            model.run(&windows, batch).expect("warm-up run");
            let secs = best_of(plan.reps, || {
                for _ in 0..runs {
                    black_box(model.run(&windows, batch).expect("run").len());
                }
            });
            line += &format!(
                "  batch {batch:>3}: {:>9.0} windows/s",
                (batch * runs) as f64 / secs
            );
        }
        println!("{line}");
    }
}

fn main() {
    let plan = Plan::from_env();
    println!(
        "specwatch model benchmarks ({} worker threads){}\n",
        rayon::current_num_threads(),
        if plan.quick {
            " — QUICK: tiny batch, one step, figures are not representative"
        } else {
            ""
        }
    );
    // VT-CNN2 first: every other figure is read against it.
    let order = std::iter::once("vtcnn2").chain(
        models::ARCHITECTURES
            .iter()
            .copied()
            .filter(|a| *a != "vtcnn2"),
    );
    let mut vtcnn2 = f64::NAN;
    for arch in order {
        let rate = train_rate(arch, &plan);
        if arch == "vtcnn2" {
            vtcnn2 = rate;
        }
        println!(
            "train {arch:<12} batch {} × [{ROWS}, {LEN}], width 1: {rate:>8.0} windows/s  \
             ({:.2}× VT-CNN2)",
            plan.batch,
            rate / vtcnn2
        );
    }
    println!();
    inference(&plan);
}
