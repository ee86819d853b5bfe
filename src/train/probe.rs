//! Heads fitted on a trained encoder's cached features, in seconds rather than epochs: the
//! evaluation of a pretrained (e.g. self-supervised) encoder, and few-shot classification.
//!
//! ```text
//! RUN_DIR (encoder) + dataset ──▶ embeddings of the training pool and the test windows (once)
//!   repeat r = 0..R: N labelled windows per class and SNR cell (seed + r) ──▶ fit each head
//!                    ──▶ accuracy on the test windows, overall and per SNR
//!   ──▶ mean ± sd over the repeats
//! ```
//!
//! Heads (all on L2-normalised embeddings):
//! - `prototype`: each class's mean embedding (normalised); a window takes the class of the
//!   most cosine-similar prototype.
//! - `knn`: the `k` most cosine-similar labelled embeddings vote (ties go to the larger summed
//!   similarity).
//! - `linear`: multinomial logistic regression, full-batch gradient descent (Adam, 300 steps,
//!   learning rate 0.05, no regularisation), weights from zero — deterministic.
//!
//! Cost: k-NN compares every test window with every labelled one, and the linear head makes 300
//! passes over the labelled windows — seconds for few-shot budgets (`--labelled-per-cell`), but
//! minutes for a whole training split of 10⁵ windows.
//!
//! The split: on the dataset the encoder trained on, its own `split.json` (the pool is its
//! training split, so no window it trained on is tested); on any other dataset a stratified split
//! with the given seed.

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::module::Module;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::data::{Batcher, Split, SplitFractions};
use super::export::load_trained;
use super::fit::SPLIT_FILE;
use super::{TrainError, sampler};

/// A head fitted on cached features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeHead {
    Prototype,
    Knn,
    Linear,
}

impl ProbeHead {
    /// Parses `prototype`, `knn` or `linear`.
    pub fn parse(name: &str) -> Result<Self, TrainError> {
        serde_json::from_value(serde_json::Value::String(name.to_string())).map_err(|_| {
            TrainError::param(
                "heads",
                format!("names '{name}'; expected prototype, knn or linear"),
            )
        })
    }
}

/// What [`probe`] does.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// The encoder's run folder.
    pub encoder: PathBuf,
    /// The dataset folder.
    pub data: PathBuf,
    pub heads: Vec<ProbeHead>,
    /// Neighbours that vote in `knn`.
    pub k: usize,
    /// Labelled windows per class and SNR cell of the pool (all of the pool when `None`).
    pub labelled_per_cell: Option<usize>,
    /// Draws of the labelled windows (seeds `seed`, `seed + 1`, …).
    pub repeats: usize,
    pub seed: u64,
    /// The split of a dataset the encoder did not train on.
    pub split: SplitFractions,
}

/// One head's figures over the repeats.
#[derive(Debug, Clone, Serialize)]
pub struct HeadReport {
    pub head: ProbeHead,
    /// Test accuracy of each repeat.
    pub accuracies: Vec<f64>,
    pub mean: f64,
    /// Sample standard deviation over the repeats (0 for one).
    pub sd: f64,
    /// Mean test accuracy per SNR grid point (dB, as text) over the repeats.
    pub mean_by_snr: BTreeMap<String, f64>,
}

/// What [`probe`] measured.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    pub encoder: PathBuf,
    pub data: PathBuf,
    pub embedding_dim: usize,
    /// Labelled windows each head was fitted on (per repeat).
    pub labelled_windows: usize,
    pub test_windows: usize,
    pub labelled_per_cell: Option<usize>,
    pub repeats: usize,
    pub seed: u64,
    /// Whether the split is the encoder's own (the dataset it trained on).
    pub encoders_split: bool,
    pub heads: Vec<HeadReport>,
}

/// Fits the heads on the encoder's features and measures them (see the module documentation).
pub fn probe(options: &ProbeOptions) -> Result<ProbeReport, TrainError> {
    if options.repeats == 0 {
        return Err(TrainError::param("repeats", "is 0; expected at least 1"));
    }
    if options.k == 0 {
        return Err(TrainError::param(
            "k",
            "is 0; expected at least 1 neighbour",
        ));
    }
    if options.heads.is_empty() {
        return Err(TrainError::param(
            "heads",
            "is empty; expected at least one head",
        ));
    }
    let (record, model) = load_trained(&options.encoder)?;
    let mut data = Batcher::open(&options.data, record.train.prep)?;
    let encoders_split = data.manifest_digest() == record.dataset.manifest_digest;
    let split = if encoders_split {
        let split = Split::load(&options.encoder.join(SPLIT_FILE))?;
        split.check_fits(data.source(), &options.encoder)?;
        split
    } else {
        Split::stratified(data.source(), options.split, options.seed)?
    };
    if split.test.is_empty() {
        return Err(TrainError::Run {
            dir: options.encoder.clone(),
            problem: "its split holds no test windows to measure the heads on".into(),
        });
    }
    let classes = data.num_classes();
    let grid = data.manifest().snr_grid_db.clone();
    let labels = data.source().labels().to_vec();
    let snr = data.source().snr_db().to_vec();

    // Every embedding once.
    let device = Device::flex();
    let model = model.valid();
    let mut features: BTreeMap<u32, Vec<f32>> = BTreeMap::new();
    let mut dim = 0;
    let wanted: Vec<u32> = split.train.iter().chain(&split.test).copied().collect();
    for chunk in wanted.chunks(256) {
        let batch = data.batch(chunk, &device)?;
        let e = model.embedding(batch.inputs);
        dim = e.dims()[1];
        let values: Vec<f32> = e
            .into_data()
            .try_into_vec()
            .map_err(|e| TrainError::param("encoder", format!("embeddings are not f32: {e:?}")))?;
        for (i, row) in chunk.iter().zip(values.chunks_exact(dim)) {
            features.insert(*i, normalised(row));
        }
    }

    let test: Vec<(&[f32], usize, f32)> = split
        .test
        .iter()
        .map(|&i| {
            (
                features[&i].as_slice(),
                labels[i as usize] as usize,
                nearest(&grid, snr[i as usize]),
            )
        })
        .collect();
    let mut per_head: Vec<Tally> = vec![Tally::default(); options.heads.len()];
    let mut labelled_windows = 0;
    for r in 0..options.repeats {
        let seed = options.seed.wrapping_add(r as u64);
        let labelled = match options.labelled_per_cell {
            Some(n) => sampler::labelled_subset(&split.train, &labels, &snr, &grid, n, seed)?,
            None => split.train.clone(),
        };
        labelled_windows = labelled.len();
        let train: Vec<(&[f32], usize)> = labelled
            .iter()
            .map(|&i| (features[&i].as_slice(), labels[i as usize] as usize))
            .collect();
        for (h, head) in options.heads.iter().enumerate() {
            let predict = fit_head(*head, &train, classes, dim, options.k);
            let mut hits = 0usize;
            let mut by_snr: BTreeMap<String, (usize, usize)> = BTreeMap::new();
            for (x, y, point) in &test {
                let hit = predict(x) == *y;
                hits += usize::from(hit);
                let e = by_snr.entry(format!("{point}")).or_default();
                e.0 += usize::from(hit);
                e.1 += 1;
            }
            per_head[h].accuracies.push(hits as f64 / test.len() as f64);
            for (point, (hit, n)) in by_snr {
                let e = per_head[h].by_snr.entry(point).or_default();
                e.0 += hit as f64 / n as f64;
                e.1 += 1;
            }
        }
    }
    let heads = options
        .heads
        .iter()
        .zip(per_head)
        .map(|(head, Tally { accuracies, by_snr })| {
            let (mean, sd) = mean_sd(&accuracies);
            HeadReport {
                head: *head,
                accuracies,
                mean,
                sd,
                mean_by_snr: by_snr
                    .into_iter()
                    .map(|(k, (sum, n))| (k, sum / n as f64))
                    .collect(),
            }
        })
        .collect();
    Ok(ProbeReport {
        encoder: options.encoder.clone(),
        data: options.data.clone(),
        embedding_dim: dim,
        labelled_windows,
        test_windows: test.len(),
        labelled_per_cell: options.labelled_per_cell,
        repeats: options.repeats,
        seed: options.seed,
        encoders_split,
        heads,
    })
}

/// One head's test accuracy per repeat, and per SNR point the sum of the repeats' accuracies
/// and their count.
#[derive(Debug, Clone, Default)]
struct Tally {
    accuracies: Vec<f64>,
    by_snr: BTreeMap<String, (f64, usize)>,
}

/// A fitted head: the class it predicts for a normalised embedding.
type Predictor<'a> = Box<dyn Fn(&[f32]) -> usize + 'a>;

fn nearest(grid: &[f32], snr: f32) -> f32 {
    let cell = sampler::snr_cell(grid, snr);
    if grid.is_empty() {
        cell as f32
    } else {
        grid[cell as usize]
    }
}

fn normalised(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter().map(|x| x / norm).collect()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Mean and sample standard deviation.
fn mean_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n.max(1.0);
    let sd = if values.len() > 1 {
        (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    (mean, sd)
}

/// The classifier `head` fitted on `train` (normalised features, class); classes no labelled
/// window has are never predicted.
fn fit_head<'a>(
    head: ProbeHead,
    train: &'a [(&'a [f32], usize)],
    classes: usize,
    dim: usize,
    k: usize,
) -> Predictor<'a> {
    match head {
        ProbeHead::Prototype => {
            let mut sums = vec![vec![0.0f32; dim]; classes];
            let mut seen = vec![false; classes];
            for (x, y) in train {
                seen[*y] = true;
                for (s, v) in sums[*y].iter_mut().zip(x.iter()) {
                    *s += v;
                }
            }
            let prototypes: Vec<Option<Vec<f32>>> = sums
                .iter()
                .zip(&seen)
                .map(|(s, &seen)| seen.then(|| normalised(s)))
                .collect();
            Box::new(move |x| {
                let mut best = (0, f32::NEG_INFINITY);
                for (c, p) in prototypes.iter().enumerate() {
                    if let Some(p) = p {
                        let s = dot(x, p);
                        if s > best.1 {
                            best = (c, s);
                        }
                    }
                }
                best.0
            })
        }
        ProbeHead::Knn => Box::new(move |x| {
            let mut sims: Vec<(f32, usize)> = train.iter().map(|(t, y)| (dot(x, t), *y)).collect();
            let k = k.min(sims.len());
            if k > 0 && k < sims.len() {
                // The k most similar first, in no particular order: all a vote needs.
                sims.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
            }
            let mut votes = vec![(0usize, 0.0f32); classes];
            for (s, y) in sims.iter().take(k) {
                votes[*y].0 += 1;
                votes[*y].1 += s;
            }
            let mut best = 0;
            for c in 1..classes {
                if (votes[c].0, votes[c].1) > (votes[best].0, votes[best].1) {
                    best = c;
                }
            }
            best
        }),
        ProbeHead::Linear => {
            let (w, b) = logistic_regression(train, classes, dim);
            Box::new(move |x| {
                let mut best = (0, f32::NEG_INFINITY);
                for c in 0..classes {
                    let z = b[c] + dot(x, &w[c * dim..(c + 1) * dim]);
                    if z > best.1 {
                        best = (c, z);
                    }
                }
                best.0
            })
        }
    }
}

/// Multinomial logistic regression by full-batch Adam from zero weights; returns the weights
/// `[classes × dim]` and biases.
fn logistic_regression(
    train: &[(&[f32], usize)],
    classes: usize,
    dim: usize,
) -> (Vec<f32>, Vec<f32>) {
    const STEPS: usize = 300;
    const LR: f32 = 0.05;
    let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-8f32);
    let params = classes * dim + classes;
    let mut theta = vec![0.0f32; params];
    let (mut m, mut v) = (vec![0.0f32; params], vec![0.0f32; params]);
    let n = train.len().max(1) as f32;
    let mut z = vec![0.0f32; classes];
    for t in 1..=STEPS {
        let mut grad = vec![0.0f32; params];
        for (x, y) in train {
            let (w, b) = theta.split_at(classes * dim);
            for c in 0..classes {
                z[c] = b[c] + dot(x, &w[c * dim..(c + 1) * dim]);
            }
            let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let sum: f32 = z.iter().map(|v| (v - max).exp()).sum();
            for c in 0..classes {
                let p = (z[c] - max).exp() / sum - f32::from(u8::from(c == *y));
                for (g, xi) in grad[c * dim..(c + 1) * dim].iter_mut().zip(x.iter()) {
                    *g += p * xi / n;
                }
                grad[classes * dim + c] += p / n;
            }
        }
        let (c1, c2) = (1.0 - b1.powi(t as i32), 1.0 - b2.powi(t as i32));
        for i in 0..params {
            m[i] = b1 * m[i] + (1.0 - b1) * grad[i];
            v[i] = b2 * v[i] + (1.0 - b2) * grad[i] * grad[i];
            theta[i] -= LR * (m[i] / c1) / ((v[i] / c2).sqrt() + eps);
        }
    }
    let b = theta.split_off(classes * dim);
    (theta, b)
}

/// The report as indented text.
pub fn render(report: &ProbeReport) -> String {
    let mut out = format!(
        "encoder {} ({}-dim embedding) on {}: {} labelled windows{}, {} test windows, {} repeat(s){}\n",
        report.encoder.display(),
        report.embedding_dim,
        report.data.display(),
        report.labelled_windows,
        report
            .labelled_per_cell
            .map(|n| format!(" ({n} per class and SNR)"))
            .unwrap_or_default(),
        report.test_windows,
        report.repeats,
        if report.encoders_split {
            " (the encoder's own split)"
        } else {
            ""
        }
    );
    for h in &report.heads {
        out += &format!(
            "  {:<9} {:6.2}% ± {:.2}",
            serde_json::to_value(h.head)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            100.0 * h.mean,
            100.0 * h.sd
        );
        let mut by_snr: Vec<(f32, f64)> = h
            .mean_by_snr
            .iter()
            .filter_map(|(k, v)| k.parse::<f32>().ok().map(|k| (k, *v)))
            .collect();
        by_snr.sort_by(|a, b| a.0.total_cmp(&b.0));
        let parts: Vec<String> = by_snr
            .iter()
            .map(|(k, v)| format!("{k} dB {:.1}%", 100.0 * v))
            .collect();
        out += &format!("  ({})\n", parts.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three well-separated clusters in 4 dimensions.
    fn clusters() -> (Vec<Vec<f32>>, Vec<usize>) {
        let centres = [
            [1.0, 0.1, 0.0, 0.0],
            [0.0, 1.0, 0.1, 0.0],
            [0.0, 0.0, 1.0, 0.2],
        ];
        let mut xs = Vec::new();
        let mut ys = Vec::new();
        for (c, centre) in centres.iter().enumerate() {
            for j in 0..6 {
                let jitter = 0.05 * (j as f32 - 2.5);
                let v: Vec<f32> = centre.iter().map(|x| x + jitter * 0.3).collect();
                xs.push(normalised(&v));
                ys.push(c);
            }
        }
        (xs, ys)
    }

    #[test]
    fn every_head_separates_separable_clusters() {
        let (xs, ys) = clusters();
        let train: Vec<(&[f32], usize)> = xs.iter().map(Vec::as_slice).zip(ys.clone()).collect();
        for head in [ProbeHead::Prototype, ProbeHead::Knn, ProbeHead::Linear] {
            let predict = fit_head(head, &train, 3, 4, 3);
            for (x, y) in &train {
                assert_eq!(predict(x), *y, "{head:?}");
            }
            // A new point near the second centre.
            assert_eq!(predict(&normalised(&[0.05, 0.9, 0.1, 0.0])), 1, "{head:?}");
        }
    }

    #[test]
    fn a_class_without_labelled_windows_is_never_predicted_by_the_prototypes() {
        let (xs, ys) = clusters();
        let train: Vec<(&[f32], usize)> = xs
            .iter()
            .map(Vec::as_slice)
            .zip(ys)
            .filter(|(_, y)| *y != 2)
            .collect();
        let predict = fit_head(ProbeHead::Prototype, &train, 3, 4, 3);
        assert_ne!(predict(&normalised(&[0.0, 0.0, 1.0, 0.2])), 2);
    }

    #[test]
    fn mean_and_sample_sd() {
        let (m, s) = mean_sd(&[0.5, 0.7, 0.6]);
        assert!(
            (m - 0.6).abs() < 1e-12 && (s - 0.1).abs() < 1e-12,
            "{m} {s}"
        );
        assert_eq!(mean_sd(&[0.4]), (0.4, 0.0));
    }

    #[test]
    fn head_names_parse() {
        assert_eq!(ProbeHead::parse("knn").unwrap(), ProbeHead::Knn);
        let e = ProbeHead::parse("svm").unwrap_err().to_string();
        assert!(
            e.contains("'heads'") && e.contains("prototype, knn or linear"),
            "{e}"
        );
    }
}
