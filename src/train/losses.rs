//! The training objectives' loss terms and the pieces they share.
//!
//! Plain functions over burn tensors on whatever device the tensors are on (training runs on
//! `Device::flex().autodiff()`); each returns a one-element tensor `[1]` (a mean) unless said
//! otherwise. Every softmax-based loss goes through `log_softmax` (max-subtracted), never through
//! `log(softmax)`.
//!
//! # Classification
//! - [`cross_entropy`]: `CE = −(1/B) Σ_b log p_b,y_b`, `log p = log_softmax(logits)`; the same
//!   value as burn's `CrossEntropyLoss` without weights or smoothing.
//! - [`focal`]: focal loss (Lin et al., "Focal Loss for Dense Object Detection", 2017),
//!   `FL = −(1/B) Σ_b α_y_b (1 − p_b,y_b)^γ log p_b,y_b`; `γ = 0`, no `α` is cross-entropy. A
//!   plain mean over the batch (burn's weighted cross-entropy divides by `Σ α_y` instead).
//!   [`focal_weighted`] multiplies each sample's term by a weight `w_b`: CAIC-Net's "adaptive
//!   weighted focal loss" (Wu et al., Sensors 2026) has a per-sample difficulty coefficient whose
//!   rule the text lost; [`difficulty_weights`] is the project's proposal for it,
//!   `w_b = sg(1 − p_b,y_b) / mean(sg(1 − p_y))` (`sg` = stop-gradient).
//!
//! # Contrastive
//! Embeddings are L2-normalised inside every contrastive loss ([`l2_normalize`]), so the logits
//! are cosine similarities over a temperature `τ`.
//! - [`info_nce`]: in-batch InfoNCE, `CE(q̂ k̂ᵀ/τ, target = arange(B))` — positives on the
//!   diagonal, the other keys of the batch as negatives.
//! - [`moco_v3_loss`]: MoCo v3 (Chen, Xie, He, "An Empirical Study of Training Self-Supervised
//!   Vision Transformers", 2021), as used by the multi-task radio SSL paper (its eq. 1 was lost;
//!   the form is MoCo v3's reference code): `L = ctr(q₁, k₂) + ctr(q₂, k₁)`,
//!   `ctr(q, k) = 2τ · info_nce(q, k, τ)`. The `2τ` factor is MoCo v3's: it keeps the gradient's
//!   scale independent of `τ` (the paper's τ moves between 0.1 and 0.2 during training).
//! - [`info_nce_queued`] with a [`NegativeQueue`]: MoCo v2 / MAC (Li et al., Nat. Commun. 2025,
//!   eq. 5), `logits = [q̂·k̂ | q̂ Qᵀ] / τ` (`Q` = the queue's `[K, D]` keys), target index 0.
//!   MAC keeps one queue per domain: several `NegativeQueue`s.
//! - [`supcon`] and [`contrastive_masked`]: supervised contrastive loss (Khosla et al.,
//!   "Supervised Contrastive Learning", 2020, `L_out`) over an arbitrary positives mask `P` and
//!   denominator mask `A` (anchor always excluded):
//!   `L = (1/|I|) Σ_{i∈I} −(1/|P(i)|) Σ_{p∈P(i)} log[exp(ẑᵢ·ẑ_p/τ) / Σ_{a∈A(i)} exp(ẑᵢ·ẑ_a/τ)]`,
//!   `I` = the anchors with at least one positive. [`supcon`] is the labels' mask (positives =
//!   same class, `A` = every other window). CAIC-Net's cross-SNR term (CSCL) is
//!   [`PairMasks::cross_snr`]: positives = same class at a *different* SNR, `A` = positives ∪
//!   other classes, so same-class windows at the same SNR are neither positive nor negative.
//!   CAIC's text has one positive `p(i)` per anchor; with several, each counts (SupCon's
//!   average over positives) — pass a mask with one positive per row for the text's form.
//!
//! Keys are constants: [`info_nce`], [`moco_v3_loss`] and [`info_nce_queued`] `detach()` their
//! keys (burn's stop-gradient: the result leaves the autodiff graph), and the queue only ever
//! holds detached keys, so no gradient reaches the momentum encoder. SupCon's embeddings are not
//! detached (both sides of every pair are the trained model's).
//!
//! # Angles
//! - [`angle_l1_deg`]: `mean(|wrap(az̃ − az)|, |el̃ − el|)` over the batch and both angles,
//!   `wrap(d) = d − 360·⌊(d + 180)/360⌋ ∈ [−180, 180)`, so 179° against −179° is 2°.
//! - [`angle_sincos_mse`]: regression of `(sin az, cos az, sin el, cos el)`, mean squared error
//!   over the four outputs; [`sincos_to_deg`] turns predictions back (`atan2(sin, cos)`).
//!
//! # Momentum copies
//! - [`ema_update`]: `θ_t ← m·θ_t + (1 − m)·θ_o` over every float tensor of the module (MoCo's
//!   key encoder, BYOL's target). Batch-norm running means and variances are float tensors burn
//!   visits too, and they are averaged the same way (as timm's `ModelEmaV2` does), so the
//!   target's statistics follow the online model's; a target run in training mode (MoCo's key
//!   encoder normalises with batch statistics) does not read them. burn's module visitors read a
//!   running state's last synchronised value, which may be one batch-norm update behind the
//!   online model's newest (immaterial to a moving average). The result is detached and keeps
//!   each target tensor's gradient flag.
//! - [`cosine_momentum`]: MoCo v3 / BYOL's schedule `m_k = 1 − (1 − m₀)(cos(πk/K) + 1)/2`,
//!   from `m₀` at step 0 to 1 at step `K`.
//!
//! # Gradient penalty
//! [`gradient_penalty`]: WGAN-GP (Gulrajani et al., "Improved Training of Wasserstein GANs",
//! 2017; SigZSLNet's critic, λ = 10 applied by the caller),
//! `GP = (1/B) Σ_b (‖∇ₓD(x̂_b)‖₂ − 1)²`, `x̂ = ε·real + (1 − ε)·fake`, with the gradient written
//! as a first-order expression by [`Mlp::input_gradient`] (burn has no second-order gradients).
//! A conditional critic `D(x, a)` reads `[x | a]` and the gradient is taken with respect to `x`
//! only.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use super::TrainError;
use super::mlp::Mlp;

/// Norms below this are treated as this when normalising (a zero vector stays zero).
const NORM_FLOOR: f64 = 1e-12;

/// Added to logits a mask excludes, far below any `cos/τ`: `exp` of it is 0 in `f32`.
const EXCLUDED: f64 = -1e9;

// ───────────────────────────────────────────── classification ──

/// Mean cross-entropy of `logits` `[B, K]` against class indices `targets` `[B]`:
/// `−(1/B) Σ_b log_softmax(logits)_b,y_b`.
pub fn cross_entropy(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    target_log_probs(logits, targets).mean().neg()
}

/// Focal loss `−(1/B) Σ_b α_y_b (1 − p_b,y_b)^γ log p_b,y_b` (Lin et al. 2017); `alpha`, when
/// given, holds one weight per class (see [`check_focal`]). `γ = 0` without `alpha` is
/// [`cross_entropy`].
pub fn focal(
    logits: Tensor<2>,
    targets: Tensor<1, Int>,
    gamma: f64,
    alpha: Option<&[f32]>,
) -> Tensor<1> {
    focal_terms(logits, targets, gamma, alpha).mean()
}

/// [`focal`] with each sample's term multiplied by `weights` `[B]`:
/// `−(1/B) Σ_b w_b α_y_b (1 − p_b,y_b)^γ log p_b,y_b` (CAIC-Net's adaptive weighted focal loss;
/// see [`difficulty_weights`]). The weights are used as given (detach them if they come from the
/// model).
pub fn focal_weighted(
    logits: Tensor<2>,
    targets: Tensor<1, Int>,
    gamma: f64,
    alpha: Option<&[f32]>,
    weights: Tensor<1>,
) -> Tensor<1> {
    (focal_terms(logits, targets, gamma, alpha) * weights).mean()
}

/// CAIC-Net's per-sample difficulty coefficients as this project proposes them (the paper lost
/// the rule): `w_b = (1 − p_b,y_b) / mean_b(1 − p_b,y_b)`, detached, so the batch's mean weight
/// is 1 and hard samples weigh more. `[B]`.
pub fn difficulty_weights(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    let miss = target_log_probs(logits.detach(), targets)
        .exp()
        .neg()
        .add_scalar(1.0);
    let mean = miss.clone().mean().clamp_min(NORM_FLOOR);
    miss / mean
}

/// Checks focal-loss parameters for `num_classes` classes: `γ ≥ 0` and finite; `α`, when given,
/// one finite weight ≥ 0 per class.
pub fn check_focal(
    gamma: f64,
    alpha: Option<&[f32]>,
    num_classes: usize,
) -> Result<(), TrainError> {
    if !(gamma.is_finite() && gamma >= 0.0) {
        return Err(TrainError::param(
            "focal_gamma",
            format!("must be a finite number ≥ 0, got {gamma}"),
        ));
    }
    if let Some(alpha) = alpha {
        if alpha.len() != num_classes {
            return Err(TrainError::param(
                "focal_alpha",
                format!(
                    "needs one weight per class ({num_classes}), got {}",
                    alpha.len()
                ),
            ));
        }
        if let Some(bad) = alpha.iter().find(|a| !(a.is_finite() && **a >= 0.0)) {
            return Err(TrainError::param(
                "focal_alpha",
                format!("weights must be finite and ≥ 0, got {bad}"),
            ));
        }
    }
    Ok(())
}

/// `log p_b,y_b` `[B]`.
fn target_log_probs(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    let [batch] = targets.dims();
    log_softmax(logits, 1)
        .gather(1, targets.reshape([batch, 1]))
        .reshape([batch])
}

/// Per-sample focal terms `−α_y (1 − p_y)^γ log p_y` `[B]`.
fn focal_terms(
    logits: Tensor<2>,
    targets: Tensor<1, Int>,
    gamma: f64,
    alpha: Option<&[f32]>,
) -> Tensor<1> {
    let device = logits.device();
    let log_p = target_log_probs(logits, targets.clone());
    let mut terms = log_p.clone().neg();
    if gamma != 0.0 {
        // (1 − p)^γ; the floor keeps the derivative γ(1 − p)^(γ−1) finite for γ < 1 at p = 1.
        let miss = log_p.exp().neg().add_scalar(1.0).clamp_min(NORM_FLOOR);
        terms = terms * miss.powf_scalar(gamma);
    }
    if let Some(alpha) = alpha {
        let alpha = Tensor::<1>::from_data(TensorData::new(alpha.to_vec(), [alpha.len()]), &device);
        terms = terms * alpha.gather(0, targets);
    }
    terms
}

// ─────────────────────────────────────────────── contrastive ──

/// Each row divided by its L2 norm (norms below 1e-12 count as 1e-12). `[B, D]` → `[B, D]`.
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x
        .clone()
        .powi_scalar(2)
        .sum_dim(1)
        .sqrt()
        .clamp_min(NORM_FLOOR);
    x / norm
}

/// Checks a contrastive temperature: finite and above 0.
pub fn check_temperature(temperature: f64) -> Result<(), TrainError> {
    if temperature.is_finite() && temperature > 0.0 {
        Ok(())
    } else {
        Err(TrainError::param(
            "temperature",
            format!("must be a finite number above 0, got {temperature}"),
        ))
    }
}

/// In-batch InfoNCE: `CE(q̂ k̂ᵀ/τ, arange(B))`, `q̂`, `k̂` the L2-normalised rows of `q` and
/// `k` `[B, D]`; the keys are detached (constants).
pub fn info_nce(q: Tensor<2>, k: Tensor<2>, temperature: f64) -> Tensor<1> {
    let [batch, _] = q.dims();
    let device = q.device();
    let logits = l2_normalize(q)
        .matmul(l2_normalize(k.detach()).transpose())
        .div_scalar(temperature);
    cross_entropy(logits, Tensor::<1, Int>::arange(0..batch as i64, &device))
}

/// MoCo v3's symmetric loss `ctr(q₁, k₂) + ctr(q₂, k₁)`, `ctr(q, k) = 2τ·info_nce(q, k, τ)`:
/// `q₁`, `q₂` the online branch's predictions for the two views, `k₁`, `k₂` the momentum
/// branch's projections (detached here). All `[B, D]`.
pub fn moco_v3_loss(
    q1: Tensor<2>,
    q2: Tensor<2>,
    k1: Tensor<2>,
    k2: Tensor<2>,
    temperature: f64,
) -> Tensor<1> {
    (info_nce(q1, k2, temperature) + info_nce(q2, k1, temperature)).mul_scalar(2.0 * temperature)
}

/// InfoNCE against a queue of negatives (MoCo v2, MAC eq. 5):
/// `CE([q̂·k̂ | q̂ Qᵀ]/τ, 0)`, `q`, `k` `[B, D]` (keys detached), `Q` the queue's `[K, D]`.
pub fn info_nce_queued(
    q: Tensor<2>,
    k: Tensor<2>,
    queue: &NegativeQueue,
    temperature: f64,
) -> Tensor<1> {
    let [batch, _] = q.dims();
    let q = l2_normalize(q);
    let k = l2_normalize(k.detach());
    let positive = (q.clone() * k).sum_dim(1); // [B, 1]
    let negative = q.matmul(queue.as_tensor().transpose()); // [B, K]
    let logits = Tensor::cat(vec![positive, negative], 1).div_scalar(temperature);
    log_softmax(logits, 1).slice([0..batch, 0..1]).mean().neg()
}

/// A first-in, first-out ring of `K` detached, L2-normalised keys `[K, D]` (MoCo v2's
/// dictionary, one per domain in MAC). It starts full of random unit vectors (drawn from a seed)
/// so the loss always sees `K` negatives; [`NegativeQueue::enqueue`] overwrites the oldest rows.
/// Row `i` of [`NegativeQueue::as_tensor`] is slot `i` of the ring (the order does not matter to
/// the loss); the next key goes to slot [`NegativeQueue::next_slot`].
#[derive(Debug, Clone)]
pub struct NegativeQueue {
    keys: Tensor<2>,
    next: usize,
    enqueued: u64,
}

/// A [`NegativeQueue`]'s contents on the host, to checkpoint and restore it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueSnapshot {
    pub capacity: usize,
    pub dim: usize,
    /// The slot the next key goes to.
    pub next: usize,
    /// Keys enqueued since the queue was made.
    pub enqueued: u64,
    /// The `[capacity, dim]` keys, row-major.
    pub keys: Vec<f32>,
}

impl NegativeQueue {
    /// A queue of `capacity` keys of `dim` values on `device`, filled with random unit vectors
    /// (normalised standard-normal draws from `seed`).
    pub fn new(
        capacity: usize,
        dim: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Self, TrainError> {
        if capacity == 0 {
            return Err(TrainError::param("queue_size", "must be above 0"));
        }
        if dim == 0 {
            return Err(TrainError::param("queue_dim", "must be above 0"));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut values: Vec<f32> = (0..capacity * dim)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        for row in values.chunks_mut(dim) {
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            row.iter_mut().for_each(|v| *v /= norm);
        }
        let keys = Tensor::<2>::from_data(TensorData::new(values, [capacity, dim]), device);
        Ok(Self {
            keys,
            next: 0,
            enqueued: 0,
        })
    }

    /// Puts `keys` `[B, D]` (normalised and detached here) in the oldest slots, in row order, as
    /// `B` single enqueues would: with `B > K` only the last `K` rows stay.
    pub fn enqueue(&mut self, keys: Tensor<2>) {
        let [batch, dim] = keys.dims();
        if batch == 0 {
            return;
        }
        let capacity = self.capacity();
        let keys = l2_normalize(keys.detach()).detach();
        let (keys, kept) = if batch > capacity {
            (keys.slice([batch - capacity..batch, 0..dim]), capacity)
        } else {
            (keys, batch)
        };
        // Row r of the batch goes to slot (next + r) mod K; the rows kept start at r = B − kept.
        let start = (self.next + batch - kept) % capacity;
        let first = kept.min(capacity - start);
        let mut ring = self.keys.clone();
        ring = ring.slice_assign(
            [start..start + first, 0..dim],
            keys.clone().slice([0..first, 0..dim]),
        );
        if first < kept {
            ring = ring.slice_assign([0..kept - first, 0..dim], keys.slice([first..kept, 0..dim]));
        }
        self.keys = ring;
        self.next = (self.next + batch) % capacity;
        self.enqueued += batch as u64;
    }

    /// The keys `[K, D]`, slot by slot.
    pub fn as_tensor(&self) -> Tensor<2> {
        self.keys.clone()
    }

    /// `K`, the number of negatives the loss sees (the queue is always full).
    pub fn len(&self) -> usize {
        self.capacity()
    }

    /// Never true: a queue holds at least one key.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// `K`.
    pub fn capacity(&self) -> usize {
        self.keys.dims()[0]
    }

    /// `D`.
    pub fn dim(&self) -> usize {
        self.keys.dims()[1]
    }

    /// The slot the next enqueued key goes to.
    pub fn next_slot(&self) -> usize {
        self.next
    }

    /// Keys enqueued so far; the queue holds only real keys (no initial random ones) once this
    /// reaches `K`.
    pub fn enqueued(&self) -> u64 {
        self.enqueued
    }

    /// The queue's contents on the host.
    pub fn snapshot(&self) -> QueueSnapshot {
        QueueSnapshot {
            capacity: self.capacity(),
            dim: self.dim(),
            next: self.next,
            enqueued: self.enqueued,
            keys: self
                .keys
                .to_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap_or_default(),
        }
    }

    /// A queue with a snapshot's contents on `device`.
    pub fn restore(snapshot: &QueueSnapshot, device: &Device) -> Result<Self, TrainError> {
        let QueueSnapshot {
            capacity,
            dim,
            next,
            enqueued,
            ref keys,
        } = *snapshot;
        if capacity == 0 || dim == 0 || keys.len() != capacity * dim || next >= capacity {
            return Err(TrainError::param(
                "queue",
                format!(
                    "snapshot of {capacity}×{dim} keys with next slot {next} holds {} values",
                    keys.len()
                ),
            ));
        }
        let keys = Tensor::<2>::from_data(TensorData::new(keys.clone(), [capacity, dim]), device);
        Ok(Self {
            keys,
            next,
            enqueued,
        })
    }
}

/// Which pairs of a batch a masked contrastive loss uses, as `[B, B]` 0/1 float masks:
/// `positives[i][j] = 1` when `j` is a positive of anchor `i`; `candidates[i][j] = 1` when `j` is
/// in anchor `i`'s denominator. The diagonal is ignored (an anchor is never its own pair) and
/// positives count only where they are candidates.
#[derive(Debug, Clone)]
pub struct PairMasks {
    pub positives: Tensor<2>,
    pub candidates: Tensor<2>,
}

impl PairMasks {
    /// SupCon's masks: positives = the same class, candidates = every other window.
    pub fn same_class(labels: Tensor<1, Int>) -> Self {
        let same = same_key(labels);
        let ones = same.ones_like();
        Self {
            positives: same,
            candidates: ones,
        }
    }

    /// CAIC-Net's cross-SNR masks: positives = the same class at a different SNR, candidates =
    /// the positives and every window of another class (same-class windows at the same SNR are
    /// left out). `snr_keys` `[B]` identifies a window's SNR (e.g. the dataset's SNR rounded to
    /// its grid); two windows are "at the same SNR" when their keys are equal.
    pub fn cross_snr(labels: Tensor<1, Int>, snr_keys: Tensor<1, Int>) -> Self {
        let same_class = same_key(labels);
        let same_snr = same_key(snr_keys);
        let positives = same_class.clone() * same_snr.neg().add_scalar(1.0);
        let candidates = positives.clone() + same_class.neg().add_scalar(1.0);
        Self {
            positives,
            candidates,
        }
    }
}

/// `[B, B]` 1 where `keys[i] == keys[j]`, else 0.
fn same_key(keys: Tensor<1, Int>) -> Tensor<2> {
    let [batch] = keys.dims();
    let rows = keys.clone().reshape([batch, 1]).expand([batch, batch]);
    let cols = keys.reshape([1, batch]).expand([batch, batch]);
    rows.equal(cols).float()
}

/// Supervised contrastive loss (Khosla et al. 2020, `L_out`) of embeddings `z` `[B, D]` with
/// class `labels` `[B]`: positives = the other windows of the anchor's class, denominator =
/// every other window. See [`contrastive_masked`].
pub fn supcon(z: Tensor<2>, labels: Tensor<1, Int>, temperature: f64) -> Tensor<1> {
    contrastive_masked(z, PairMasks::same_class(labels), temperature)
}

/// The masked contrastive loss of the module documentation:
/// `(1/|I|) Σ_{i∈I} −(1/|P(i)|) Σ_{p∈P(i)} log[exp(ẑᵢ·ẑ_p/τ) / Σ_{a∈A(i)} exp(ẑᵢ·ẑ_a/τ)]`,
/// `I` = the anchors with a positive (0 when no anchor has one).
pub fn contrastive_masked(z: Tensor<2>, masks: PairMasks, temperature: f64) -> Tensor<1> {
    let [batch, _] = z.dims();
    let device = z.device();
    let off_diagonal = Tensor::<2>::eye(batch, &device).neg().add_scalar(1.0);
    let candidates = masks.candidates * off_diagonal;
    let positives = masks.positives * candidates.clone();

    let z = l2_normalize(z);
    let logits = z.clone().matmul(z.transpose()).div_scalar(temperature);
    let logits = logits + candidates.sub_scalar(1.0).mul_scalar(-EXCLUDED);
    let log_prob = log_softmax(logits, 1);

    let count = positives.clone().sum_dim(1).reshape([batch]); // |P(i)|
    let per_anchor =
        (positives * log_prob).sum_dim(1).reshape([batch]).neg() / count.clone().clamp_min(1.0);
    let anchors = count.greater_elem(0.0).float();
    let used = anchors.clone().sum().clamp_min(1.0);
    (per_anchor * anchors).sum() / used
}

// ──────────────────────────────────────────────────── angles ──

/// `d − 360·⌊(d + 180)/360⌋`: degrees wrapped to `[−180, 180)`.
pub fn wrap_deg<const D: usize>(degrees: Tensor<D>) -> Tensor<D> {
    let turns = degrees.clone().add_scalar(180.0).div_scalar(360.0).floor();
    degrees - turns.mul_scalar(360.0)
}

/// Absolute angle errors in degrees `[B, 2]` of predictions `pred` against `target`, both
/// `[B, 2]` = (azimuth, elevation) in degrees: `|wrap(az̃ − az)|`, `|el̃ − el|`.
pub fn angle_abs_error_deg(pred: Tensor<2>, target: Tensor<2>) -> Tensor<2> {
    let [batch, _] = pred.dims();
    let diff = pred - target;
    let azimuth = wrap_deg(diff.clone().slice([0..batch, 0..1]));
    let elevation = diff.slice([0..batch, 1..2]);
    Tensor::cat(vec![azimuth, elevation], 1).abs()
}

/// L1 loss on angles: the mean of [`angle_abs_error_deg`] over the batch and both angles.
pub fn angle_l1_deg(pred: Tensor<2>, target: Tensor<2>) -> Tensor<1> {
    angle_abs_error_deg(pred, target).mean()
}

/// `(sin az, cos az, sin el, cos el)` `[B, 4]` of angles `[B, 2]` in degrees.
pub fn deg_to_sincos(degrees: Tensor<2>) -> Tensor<2> {
    let [batch, _] = degrees.dims();
    let radians = degrees.mul_scalar(std::f64::consts::PI / 180.0);
    let azimuth = radians.clone().slice([0..batch, 0..1]);
    let elevation = radians.slice([0..batch, 1..2]);
    Tensor::cat(
        vec![
            azimuth.clone().sin(),
            azimuth.cos(),
            elevation.clone().sin(),
            elevation.cos(),
        ],
        1,
    )
}

/// Mean squared error of `pred_sincos` `[B, 4]` against [`deg_to_sincos`] of `target_deg`
/// `[B, 2]`, over the batch and the four outputs.
pub fn angle_sincos_mse(pred_sincos: Tensor<2>, target_deg: Tensor<2>) -> Tensor<1> {
    (pred_sincos - deg_to_sincos(target_deg))
        .powi_scalar(2)
        .mean()
}

/// Angles in degrees `[B, 2]` (azimuth in `(−180, 180]`, elevation likewise) from
/// `(sin az, cos az, sin el, cos el)` predictions `[B, 4]` (need not be unit pairs):
/// `atan2(sin, cos)`.
pub fn sincos_to_deg(pred_sincos: Tensor<2>) -> Tensor<2> {
    let [batch, _] = pred_sincos.dims();
    let column = |c: usize| pred_sincos.clone().slice([0..batch, c..c + 1]);
    let azimuth = column(0).atan2(column(1));
    let elevation = column(2).atan2(column(3));
    Tensor::cat(vec![azimuth, elevation], 1).mul_scalar(180.0 / std::f64::consts::PI)
}

// ─────────────────────────────────────────── momentum copies ──

/// `θ_t ← m·θ_t + (1 − m)·θ_o` over every float tensor of `target` (parameters and batch-norm
/// running statistics, see the module documentation), `θ_o` the same tensor of `online`. The
/// two must be the same architecture (same tensors in the same order and shapes); `m` in
/// `[0, 1]` (1 leaves the target as it is).
pub fn ema_update<M: Module>(target: M, online: &M, momentum: f64) -> Result<M, TrainError> {
    if !(0.0..=1.0).contains(&momentum) {
        return Err(TrainError::param(
            "momentum",
            format!("must lie in [0, 1], got {momentum}"),
        ));
    }
    let mut online_tensors = Collect::default();
    online.visit(&mut online_tensors);
    let mut target_shapes = Collect::default();
    target.visit(&mut target_shapes);
    if online_tensors.shapes != target_shapes.shapes {
        return Err(TrainError::param(
            "ema target",
            format!(
                "has {} tensors of shapes {:?}; the online model has {} of shapes {:?}",
                target_shapes.shapes.len(),
                target_shapes.shapes,
                online_tensors.shapes.len(),
                online_tensors.shapes
            ),
        ));
    }
    Ok(target.map(&mut Blend {
        online: online_tensors.values.into_iter(),
        momentum,
    }))
}

/// MoCo v3 / BYOL's momentum at `step` of `total`: `1 − (1 − m₀)(cos(π·step/total) + 1)/2`,
/// `m₀` = `base`; 1 from `total` on (and when `total` is 0).
pub fn cosine_momentum(step: u64, total: u64, base: f64) -> f64 {
    if total == 0 || step >= total {
        return 1.0;
    }
    let progress = step as f64 / total as f64;
    1.0 - (1.0 - base) * ((std::f64::consts::PI * progress).cos() + 1.0) / 2.0
}

/// Every float tensor of a module, flattened and detached, with its shape.
#[derive(Default)]
struct Collect {
    values: Vec<Tensor<1>>,
    shapes: Vec<Vec<usize>>,
}

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val().detach();
        let shape = value.dims().to_vec();
        self.values
            .push(value.reshape([shape.iter().product::<usize>()]));
        self.shapes.push(shape);
    }
}

/// `t ← m·t + (1 − m)·o`, the online tensors taken in visiting order.
struct Blend {
    online: std::vec::IntoIter<Tensor<1>>,
    momentum: f64,
}

impl ModuleMapper for Blend {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        // `ema_update` checked that both modules hold the same tensors in the same order.
        let Some(online) = self.online.next() else {
            return param;
        };
        let momentum = self.momentum;
        param.map(|t| {
            let require_grad = t.is_require_grad();
            let online = online.reshape(t.dims()).detach();
            (t.detach().mul_scalar(momentum) + online.mul_scalar(1.0 - momentum))
                .detach()
                .set_require_grad(require_grad)
        })
    }
}

// ────────────────────────────────────────── gradient penalty ──

/// `x̂ = ε·real + (1 − ε)·fake`, `real`, `fake` `[B, D]`, `ε` `[B, 1]` (WGAN-GP draws it from
/// U[0, 1] per sample).
pub fn interpolate(real: Tensor<2>, fake: Tensor<2>, epsilon: Tensor<2>) -> Tensor<2> {
    real * epsilon.clone() + fake * epsilon.neg().add_scalar(1.0)
}

/// WGAN-GP's penalty `(1/B) Σ_b (‖∇ₓD(x̂_b)‖₂ − 1)²` at `x̂` = [`interpolate`]`(real, fake, ε)`
/// for an MLP critic with one output (λ is the caller's). `real`, `fake` `[B, Dx]`, `ε`
/// `[B, 1]`; `condition` `[B, Da]` for a conditional critic `D(x, a)` reading `[x | a]`
/// (`critic.input_size() = Dx + Da`), whose gradient is taken with respect to `x` only.
/// `x̂` and `a` are detached: the penalty trains the critic only. The norm is
/// `√(Σ g² + 1e-12)` so its gradient stays finite at `g = 0`.
pub fn gradient_penalty(
    critic: &Mlp,
    real: Tensor<2>,
    fake: Tensor<2>,
    epsilon: Tensor<2>,
    condition: Option<Tensor<2>>,
) -> Tensor<1> {
    let x_hat = interpolate(real, fake, epsilon).detach();
    let [batch, dx] = x_hat.dims();
    let input = match condition {
        Some(a) => Tensor::cat(vec![x_hat, a.detach()], 1),
        None => x_hat,
    };
    let grad = critic.input_gradient(input).slice([0..batch, 0..dx]);
    let norm = grad.powi_scalar(2).sum_dim(1).add_scalar(1e-12).sqrt();
    norm.sub_scalar(1.0).powi_scalar(2).mean()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::mlp::MlpConfig;
    use crate::train::mlp::tests::FixedWeights;
    use burn::nn::BatchNormConfig;
    use burn::nn::loss::CrossEntropyLossConfig;

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f64> {
        t.into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect()
    }

    fn scalar(t: Tensor<1>) -> f64 {
        values(t)[0]
    }

    fn matrix(rows: &[&[f64]], device: &Device) -> Tensor<2> {
        let cols = rows[0].len();
        let flat: Vec<f32> = rows
            .iter()
            .flat_map(|r| r.iter().map(|&v| v as f32))
            .collect();
        Tensor::from_data(TensorData::new(flat, [rows.len(), cols]), device)
    }

    fn ints(v: &[i64], device: &Device) -> Tensor<1, Int> {
        Tensor::from_data(TensorData::new(v.to_vec(), [v.len()]), device)
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * (1.0 + b.abs())
    }

    /// log softmax of one row, in f64.
    fn log_softmax_row(row: &[f64]) -> Vec<f64> {
        let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = max + row.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
        row.iter().map(|v| v - lse).collect()
    }

    fn normalized(row: &[f64]) -> Vec<f64> {
        let n = row.iter().map(|v| v * v).sum::<f64>().sqrt();
        row.iter().map(|v| v / n).collect()
    }

    fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    const LOGITS: [&[f64]; 3] = [&[1.0, 2.0, 0.5], &[0.1, -1.0, 3.0], &[2.5, 0.0, -0.5]];
    const TARGETS: [i64; 3] = [1, 2, 1];

    #[test]
    fn cross_entropy_matches_hand_value_and_burn() {
        let device = Device::flex();
        let logits = matrix(&LOGITS, &device);
        let targets = ints(&TARGETS, &device);
        let expected = LOGITS
            .iter()
            .zip(TARGETS)
            .map(|(row, y)| -log_softmax_row(row)[y as usize])
            .sum::<f64>()
            / 3.0;
        let ours = scalar(cross_entropy(logits.clone(), targets.clone()));
        let burns = scalar(
            CrossEntropyLossConfig::new()
                .init(&device)
                .forward(logits, targets),
        );
        assert!(close(ours, expected, 1e-6), "{ours} vs {expected}");
        assert!(close(ours, burns, 1e-6), "{ours} vs burn's {burns}");
    }

    #[test]
    fn focal_matches_hand_value() {
        let device = Device::flex();
        let (gamma, alpha) = (2.0, [0.25f32, 0.5, 1.0]);
        let expected = LOGITS
            .iter()
            .zip(TARGETS)
            .map(|(row, y)| {
                let log_p = log_softmax_row(row)[y as usize];
                -f64::from(alpha[y as usize]) * (1.0 - log_p.exp()).powf(gamma) * log_p
            })
            .sum::<f64>()
            / 3.0;
        let got = scalar(focal(
            matrix(&LOGITS, &device),
            ints(&TARGETS, &device),
            gamma,
            Some(&alpha),
        ));
        assert!(close(got, expected, 1e-5), "{got} vs {expected}");

        // Per-sample weights multiply each term.
        let weights = [2.0f32, 0.5, 1.0];
        let expected_weighted = LOGITS
            .iter()
            .zip(TARGETS)
            .zip(weights)
            .map(|((row, y), w)| {
                let log_p = log_softmax_row(row)[y as usize];
                -f64::from(w) * (1.0 - log_p.exp()).powf(gamma) * log_p
            })
            .sum::<f64>()
            / 3.0;
        let got = scalar(focal_weighted(
            matrix(&LOGITS, &device),
            ints(&TARGETS, &device),
            gamma,
            None,
            Tensor::from_data(TensorData::new(weights.to_vec(), [3]), &device),
        ));
        assert!(close(got, expected_weighted, 1e-5));
    }

    #[test]
    fn focal_without_focusing_or_weights_is_cross_entropy() {
        let device = Device::flex();
        let logits = matrix(&LOGITS, &device);
        let targets = ints(&TARGETS, &device);
        let ce = scalar(cross_entropy(logits.clone(), targets.clone()));
        let fl = scalar(focal(logits, targets, 0.0, None));
        assert!(close(fl, ce, 1e-7), "{fl} vs {ce}");
    }

    #[test]
    fn difficulty_weights_have_mean_one_and_follow_the_miss() {
        let device = Device::flex();
        let w = values(difficulty_weights(
            matrix(&LOGITS, &device),
            ints(&TARGETS, &device),
        ));
        let miss: Vec<f64> = LOGITS
            .iter()
            .zip(TARGETS)
            .map(|(row, y)| 1.0 - log_softmax_row(row)[y as usize].exp())
            .collect();
        let mean = miss.iter().sum::<f64>() / 3.0;
        for (w, m) in w.iter().zip(&miss) {
            assert!(close(*w, m / mean, 1e-5));
        }
    }

    #[test]
    fn focal_parameters_are_checked() {
        assert!(check_focal(2.0, Some(&[1.0, 1.0]), 2).is_ok());
        assert!(check_focal(-1.0, None, 2).is_err());
        assert!(check_focal(2.0, Some(&[1.0]), 2).is_err());
        assert!(check_focal(2.0, Some(&[1.0, f32::NAN]), 2).is_err());
        assert!(check_temperature(0.07).is_ok());
        assert!(check_temperature(0.0).is_err());
    }

    const Q: [&[f64]; 3] = [&[1.0, 0.0, 1.0], &[0.5, -1.0, 0.2], &[-0.3, 0.4, 2.0]];
    const K: [&[f64]; 3] = [&[0.9, 0.1, 1.2], &[0.2, -0.8, 0.0], &[0.1, 0.6, 1.5]];

    /// In-batch InfoNCE in f64.
    fn info_nce_f64(q: &[&[f64]], k: &[&[f64]], tau: f64) -> f64 {
        let k: Vec<Vec<f64>> = k.iter().map(|r| normalized(r)).collect();
        q.iter()
            .enumerate()
            .map(|(i, row)| {
                let q = normalized(row);
                let logits: Vec<f64> = k.iter().map(|k| dot(&q, k) / tau).collect();
                -log_softmax_row(&logits)[i]
            })
            .sum::<f64>()
            / q.len() as f64
    }

    #[test]
    fn info_nce_matches_hand_value() {
        let device = Device::flex();
        let tau = 0.2;
        let got = scalar(info_nce(matrix(&Q, &device), matrix(&K, &device), tau));
        let expected = info_nce_f64(&Q, &K, tau);
        assert!(close(got, expected, 1e-5), "{got} vs {expected}");
    }

    #[test]
    fn moco_v3_loss_is_symmetric_and_scaled_by_two_tau() {
        let device = Device::flex();
        let tau = 0.15;
        let (q1, q2, k1, k2) = (Q, K, [Q[2], Q[0], Q[1]], [K[1], K[2], K[0]]);
        let got = scalar(moco_v3_loss(
            matrix(&q1, &device),
            matrix(&q2, &device),
            matrix(&k1, &device),
            matrix(&k2, &device),
            tau,
        ));
        let expected = 2.0 * tau * (info_nce_f64(&q1, &k2, tau) + info_nce_f64(&q2, &k1, tau));
        assert!(close(got, expected, 1e-5), "{got} vs {expected}");
    }

    #[test]
    fn keys_get_no_gradient() {
        let device = Device::flex().autodiff();
        let q = matrix(&Q, &device).require_grad();
        let k = matrix(&K, &device).require_grad();
        let grads = info_nce(q.clone(), k.clone(), 0.2).backward();
        let q_grad = q.grad(&grads).map(values).unwrap_or_default();
        assert!(
            q_grad.iter().any(|g| g.abs() > 1e-6),
            "the query has a gradient"
        );
        assert!(k.grad(&grads).is_none(), "the keys are constants");
    }

    fn queue_rows(queue: &NegativeQueue) -> Vec<Vec<f64>> {
        let dim = queue.dim();
        values(queue.as_tensor())
            .chunks(dim)
            .map(|r| r.to_vec())
            .collect()
    }

    #[test]
    fn queue_starts_with_unit_keys_and_wraps_around_in_order() {
        let device = Device::flex();
        let mut queue = NegativeQueue::new(4, 2, 7, &device).unwrap();
        assert_eq!((queue.len(), queue.dim(), queue.next_slot()), (4, 2, 0));
        for row in queue_rows(&queue) {
            assert!(close(dot(&row, &row), 1.0, 1e-6));
        }
        // Distinct directions at 0°, 10°, 20°, … (unit already, so normalisation keeps them).
        let key = |deg: f64| [deg.to_radians().cos(), deg.to_radians().sin()];
        let batch = |degs: &[f64]| {
            let rows: Vec<[f64; 2]> = degs.iter().map(|&d| key(d)).collect();
            let rows: Vec<&[f64]> = rows.iter().map(|r| r.as_slice()).collect();
            matrix(&rows, &device)
        };
        queue.enqueue(batch(&[0.0, 10.0, 20.0]));
        queue.enqueue(batch(&[30.0, 40.0, 50.0]));
        // slots: 0 ← 40°, 1 ← 50°, 2 ← 20°, 3 ← 30°
        let expected = [40.0, 50.0, 20.0, 30.0];
        for (row, deg) in queue_rows(&queue).iter().zip(expected) {
            assert!(close(row[0], key(deg)[0], 1e-6) && close(row[1], key(deg)[1], 1e-6));
        }
        assert_eq!((queue.next_slot(), queue.enqueued()), (2, 6));

        // More keys than slots: the last K stay, where single enqueues would have put them.
        queue.enqueue(batch(&[60.0, 70.0, 80.0, 90.0, 100.0, 110.0]));
        // rows 60..110 go to slots 2,3,0,1,2,3 → 0 ← 80, 1 ← 90, 2 ← 100, 3 ← 110
        let expected = [80.0, 90.0, 100.0, 110.0];
        for (row, deg) in queue_rows(&queue).iter().zip(expected) {
            assert!(close(row[0], key(deg)[0], 1e-6) && close(row[1], key(deg)[1], 1e-6));
        }
        assert_eq!(queue.next_slot(), 0);

        // Keys are stored normalised.
        queue.enqueue(matrix(&[&[3.0, 4.0]], &device));
        let first = &queue_rows(&queue)[0];
        assert!(close(first[0], 0.6, 1e-6) && close(first[1], 0.8, 1e-6));

        let restored = NegativeQueue::restore(&queue.snapshot(), &device).unwrap();
        assert_eq!(restored.snapshot(), queue.snapshot());
        assert!(NegativeQueue::new(0, 2, 1, &device).is_err());
    }

    #[test]
    fn queued_info_nce_matches_hand_value() {
        let device = Device::flex();
        let negatives: [&[f64]; 2] = [&[0.0, 1.0, 0.0], &[0.6, 0.0, -0.8]];
        let queue = NegativeQueue::restore(
            &QueueSnapshot {
                capacity: 2,
                dim: 3,
                next: 0,
                enqueued: 0,
                keys: negatives
                    .iter()
                    .flat_map(|r| r.iter().map(|&v| v as f32))
                    .collect(),
            },
            &device,
        )
        .unwrap();
        let tau = 0.07;
        let got = scalar(info_nce_queued(
            matrix(&Q, &device),
            matrix(&K, &device),
            &queue,
            tau,
        ));
        let expected = Q
            .iter()
            .zip(K)
            .map(|(q, k)| {
                let q = normalized(q);
                let mut logits = vec![dot(&q, &normalized(k)) / tau];
                logits.extend(negatives.iter().map(|n| dot(&q, n) / tau));
                -log_softmax_row(&logits)[0]
            })
            .sum::<f64>()
            / 3.0;
        assert!(close(got, expected, 1e-5), "{got} vs {expected}");
    }

    const Z: [&[f64]; 4] = [&[1.0, 0.2], &[0.8, 0.5], &[-0.3, 1.0], &[0.1, -1.0]];

    /// The masked contrastive loss in f64 with predicates for positives and candidates.
    fn masked_f64(
        z: &[&[f64]],
        tau: f64,
        positive: impl Fn(usize, usize) -> bool,
        candidate: impl Fn(usize, usize) -> bool,
    ) -> f64 {
        let z: Vec<Vec<f64>> = z.iter().map(|r| normalized(r)).collect();
        let (mut sum, mut anchors) = (0.0, 0);
        for i in 0..z.len() {
            let denom: f64 = (0..z.len())
                .filter(|&a| a != i && candidate(i, a))
                .map(|a| (dot(&z[i], &z[a]) / tau).exp())
                .sum();
            let pos: Vec<usize> = (0..z.len())
                .filter(|&p| p != i && positive(i, p) && candidate(i, p))
                .collect();
            if pos.is_empty() {
                continue;
            }
            let term: f64 = pos
                .iter()
                .map(|&p| -((dot(&z[i], &z[p]) / tau).exp() / denom).ln())
                .sum::<f64>()
                / pos.len() as f64;
            sum += term;
            anchors += 1;
        }
        sum / anchors as f64
    }

    #[test]
    fn supcon_matches_hand_value() {
        let device = Device::flex();
        let labels = [0i64, 0, 1, 2]; // the class-2 anchor has no positive and is left out
        let tau = 0.5;
        let got = scalar(supcon(matrix(&Z, &device), ints(&labels, &device), tau));
        let expected = masked_f64(&Z, tau, |i, j| labels[i] == labels[j], |_, _| true);
        assert!(close(got, expected, 1e-5), "{got} vs {expected}");
    }

    #[test]
    fn cross_snr_contrast_matches_hand_value() {
        let device = Device::flex();
        let labels = [0i64, 0, 0, 1];
        let snr = [0i64, 10, 0, 10];
        let tau = 0.1;
        let masks = PairMasks::cross_snr(ints(&labels, &device), ints(&snr, &device));
        let got = scalar(contrastive_masked(matrix(&Z, &device), masks, tau));
        let positive = |i: usize, j: usize| labels[i] == labels[j] && snr[i] != snr[j];
        let candidate = |i: usize, j: usize| positive(i, j) || labels[i] != labels[j];
        let expected = masked_f64(&Z, tau, positive, candidate);
        assert!(close(got, expected, 1e-5), "{got} vs {expected}");
    }

    #[test]
    fn angle_l1_wraps_azimuth_only() {
        let device = Device::flex();
        let pred = matrix(&[&[179.0, 10.0], &[-90.0, 5.0], &[10.0, 60.0]], &device);
        let target = matrix(&[&[-179.0, 12.0], &[90.0, -5.0], &[350.0, -60.0]], &device);
        // az: |wrap(358)| = 2, |wrap(−180)| = 180, |wrap(−340)| = 20; el: 2, 10, 120
        let errors = values(angle_abs_error_deg(pred.clone(), target.clone()));
        let expected = [2.0, 2.0, 180.0, 10.0, 20.0, 120.0];
        for (e, x) in errors.iter().zip(expected) {
            assert!(close(*e, x, 1e-5), "{errors:?}");
        }
        let got = scalar(angle_l1_deg(pred, target));
        assert!(close(got, expected.iter().sum::<f64>() / 6.0, 1e-6));
    }

    #[test]
    fn angle_sincos_mse_matches_hand_value_and_round_trips() {
        let device = Device::flex();
        let target_deg = [[30.0f64, -45.0], [170.0, 20.0]];
        let pred = [[0.4, 0.9, -0.7, 0.7], [0.1, -1.0, 0.3, 0.95]];
        let mut sum = 0.0;
        for (t, p) in target_deg.iter().zip(&pred) {
            let (az, el) = (t[0].to_radians(), t[1].to_radians());
            let truth = [az.sin(), az.cos(), el.sin(), el.cos()];
            sum += truth
                .iter()
                .zip(p)
                .map(|(a, b)| (a - b).powi(2))
                .sum::<f64>();
        }
        let rows_t: Vec<&[f64]> = target_deg.iter().map(|r| r.as_slice()).collect();
        let rows_p: Vec<&[f64]> = pred.iter().map(|r| r.as_slice()).collect();
        let got = scalar(angle_sincos_mse(
            matrix(&rows_p, &device),
            matrix(&rows_t, &device),
        ));
        assert!(close(got, sum / 8.0, 1e-5), "{got} vs {}", sum / 8.0);

        let back = values(sincos_to_deg(deg_to_sincos(matrix(&rows_t, &device))));
        for (b, t) in back.iter().zip(target_deg.iter().flatten()) {
            assert!((b - t).abs() < 1e-3, "{back:?}");
        }
        // Unnormalised pairs: atan2(2, −2) = 135°.
        let back = values(sincos_to_deg(matrix(&[&[2.0, -2.0, -1.0, 0.0]], &device)));
        assert!((back[0] - 135.0).abs() < 1e-3 && (back[1] + 90.0).abs() < 1e-3);
    }

    #[test]
    fn ema_update_follows_the_formula() {
        let device = Device::flex();
        let config = MlpConfig::new(vec![3, 4, 2]);
        let target = config.init(&device).unwrap().map(&mut FixedWeights(1));
        let online = config.init(&device).unwrap().map(&mut FixedWeights(2));
        let before: Vec<Vec<f64>> = target
            .layers()
            .iter()
            .map(|l| values(l.weight.val()))
            .collect();
        let theirs: Vec<Vec<f64>> = online
            .layers()
            .iter()
            .map(|l| values(l.weight.val()))
            .collect();
        let bias_t = values(target.layers()[1].bias.as_ref().unwrap().val());
        let bias_o = values(online.layers()[1].bias.as_ref().unwrap().val());

        let updated = ema_update(target, &online, 0.9).unwrap();
        for (l, layer) in updated.layers().iter().enumerate() {
            for ((after, t), o) in values(layer.weight.val())
                .iter()
                .zip(&before[l])
                .zip(&theirs[l])
            {
                assert!((after - (0.9 * t + 0.1 * o)).abs() < 1e-6);
            }
        }
        let bias = values(updated.layers()[1].bias.as_ref().unwrap().val());
        for ((after, t), o) in bias.iter().zip(&bias_t).zip(&bias_o) {
            assert!((after - (0.9 * t + 0.1 * o)).abs() < 1e-6);
        }

        // Momentum 1 leaves the target as it was.
        let kept = ema_update(updated.clone(), &online, 1.0).unwrap();
        for (a, b) in kept.layers().iter().zip(updated.layers()) {
            assert_eq!(values(a.weight.val()), values(b.weight.val()));
        }

        // Another architecture, or a momentum outside [0, 1], is refused.
        let other = MlpConfig::new(vec![3, 5, 2]).init(&device).unwrap();
        assert!(ema_update(other, &online, 0.9).is_err());
        assert!(ema_update(kept, &online, 1.5).is_err());
    }

    #[test]
    fn ema_update_blends_running_statistics_and_keeps_gradient_flags() {
        let device = Device::flex().autodiff();
        let target = BatchNormConfig::new(3).init(&device);
        let online = BatchNormConfig::new(3).init(&device);
        online
            .running_mean
            .update(Tensor::from_data([1.0f32, 2.0, -4.0], &device));
        // burn's visitors read a running state's last synchronised value.
        online.running_mean.value_sync();
        let updated = ema_update(target, &online, 0.75).unwrap();
        let mean = values(updated.running_mean.value());
        for (m, o) in mean.iter().zip([1.0, 2.0, -4.0]) {
            assert!((m - 0.25 * o).abs() < 1e-6, "{mean:?}");
        }
        assert!(updated.gamma.val().is_require_grad());
        assert!(!updated.running_mean.value().is_require_grad());
    }

    #[test]
    fn cosine_momentum_runs_from_base_to_one() {
        assert!((cosine_momentum(0, 100, 0.996) - 0.996).abs() < 1e-12);
        assert!((cosine_momentum(50, 100, 0.996) - 0.998).abs() < 1e-12);
        assert_eq!(cosine_momentum(100, 100, 0.996), 1.0);
        assert_eq!(cosine_momentum(7, 0, 0.99), 1.0);
        // 1 − (1 − m₀)(cos(π/4) + 1)/2 at a quarter.
        let quarter = 1.0 - 0.004 * ((std::f64::consts::FRAC_PI_4).cos() + 1.0) / 2.0;
        assert!((cosine_momentum(25, 100, 0.996) - quarter).abs() < 1e-12);
    }

    #[test]
    fn gradient_penalty_of_a_linear_critic_is_its_weight_norm() {
        // D(x) = w·x + b: ∇ₓD = w everywhere, GP = (‖w‖ − 1)².
        let device = Device::flex();
        let critic = MlpConfig::new(vec![2, 1])
            .init(&device)
            .unwrap()
            .map(&mut FixedWeights(9));
        let w = values(critic.layers()[0].weight.val());
        let expected = ((w[0] * w[0] + w[1] * w[1]).sqrt() - 1.0).powi(2);
        let real = matrix(&[&[1.0, 2.0], &[0.0, -1.0]], &device);
        let fake = matrix(&[&[0.5, 0.5], &[3.0, 1.0]], &device);
        let eps = matrix(&[&[0.3], &[0.9]], &device);
        let got = scalar(gradient_penalty(&critic, real, fake, eps, None));
        assert!(close(got, expected, 1e-5), "{got} vs {expected}");
    }

    /// Adds `delta` to element `element` of the first float tensor visited (the first layer's
    /// weight).
    struct Nudge {
        element: usize,
        delta: f32,
        seen: usize,
    }

    impl ModuleMapper for Nudge {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            self.seen += 1;
            if self.seen != 1 {
                return param;
            }
            param.map(|t| {
                let (shape, device) = (t.shape(), t.device());
                let mut v: Vec<f32> = t.into_data().convert::<f32>().try_to_vec().unwrap();
                v[self.element] += self.delta;
                Tensor::from_data(TensorData::new(v, shape), &device)
            })
        }
    }

    fn check_penalty_gradient(conditional: bool) {
        let (batch, dx, da, hidden) = (3, 4, 2, 6);
        let d_in = if conditional { dx + da } else { dx };
        let config = MlpConfig::new(vec![d_in, hidden, hidden, 1]).with_leaky_slope(0.2);
        let data = |device: &Device| {
            let real: Vec<f32> = (0..batch * dx)
                .map(|i| ((i * 7 % 11) as f32 - 5.0) / 3.0)
                .collect();
            let fake: Vec<f32> = (0..batch * dx)
                .map(|i| ((i * 5 % 13) as f32 - 6.0) / 4.0)
                .collect();
            let cond: Vec<f32> = (0..batch * da)
                .map(|i| ((i * 3 % 5) as f32 - 2.0) / 2.0)
                .collect();
            (
                Tensor::<2>::from_data(TensorData::new(real, [batch, dx]), device),
                Tensor::<2>::from_data(TensorData::new(fake, [batch, dx]), device),
                Tensor::<2>::from_data(
                    TensorData::new(vec![0.2f32, 0.7, 0.45], [batch, 1]),
                    device,
                ),
                conditional
                    .then(|| Tensor::<2>::from_data(TensorData::new(cond, [batch, da]), device)),
            )
        };

        // Autodiff gradient of the penalty with respect to the first layer's weights.
        let ad = Device::flex().autodiff();
        let critic = config.init(&ad).unwrap().map(&mut FixedWeights(21));
        let (real, fake, eps, cond) = data(&ad);
        let grads = gradient_penalty(&critic, real, fake, eps, cond).backward();
        let analytic = values(critic.layers()[0].weight.val().grad(&grads).unwrap());

        // Central differences of the penalty's value over single weights.
        let plain = Device::flex();
        let h = 1e-3f32;
        let penalty_with = |element: usize, delta: f32| {
            let critic = config
                .init(&plain)
                .unwrap()
                .map(&mut FixedWeights(21))
                .map(&mut Nudge {
                    element,
                    delta,
                    seen: 0,
                });
            let (real, fake, eps, cond) = data(&plain);
            scalar(gradient_penalty(&critic, real, fake, eps, cond))
        };
        let mut checked = 0;
        for element in [0, 5, 7, hidden * dx - 1, hidden * (d_in - 1)] {
            let numeric =
                (penalty_with(element, h) - penalty_with(element, -h)) / (2.0 * f64::from(h));
            let a = analytic[element];
            assert!(
                (numeric - a).abs() <= 1e-2 * a.abs().max(0.1),
                "weight {element}: autodiff {a}, central difference {numeric}"
            );
            checked += usize::from(a.abs() > 1e-3);
        }
        assert!(
            checked >= 3,
            "most checked weights have a non-trivial gradient"
        );
    }

    #[test]
    fn gradient_penalty_gradient_matches_finite_differences() {
        check_penalty_gradient(false);
    }

    #[test]
    fn conditional_gradient_penalty_gradient_matches_finite_differences() {
        check_penalty_gradient(true);
    }
}
