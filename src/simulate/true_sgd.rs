//! True nonlinear SGD near a minimum, model (S) of THEORY.md §0:
//! `θ_{t+1} = θ_t − η (1/B) Σ_{i∈ξ_t} ∇ℓ_i(θ_t)`, `ℓ_i = ½‖f(x_i) − y_i‖²`, started at
//! `θ_0 = θ* + δ·u_0` with `‖u_0‖ = 1`.
//!
//! The run records the full training loss `ℒ(θ_t)` and the distance `‖θ_t − θ*‖` on a grid of
//! times. It **escapes** when the distance exceeds `distance_factor × δ` (default 10×, checked
//! every step) or the loss exceeds `loss_factor × ℒ(θ_0)` (default 100×, checked at the
//! recording times), or when a loss or parameter becomes non-finite (then the run stops). A run
//! that escapes is continued to the end, so that a return to another minimum is visible.
//!
//! The linearization (THEORY.md §0) predicts `θ_t − θ* ≈ δ·u_t` for small δ, where `u_t` follows
//! the linearized recursion with the same batches: with the same seed and trial, the batches are
//! those of linearized trial `trial`, so the two can be compared path by path.

use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;
use serde::Serialize;

use super::batch_stream;
use super::network::{SimNetwork, Tangent};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::train::{BatchSampler, BatchScheme};

/// Options of [`run_true_sgd`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrueSgdOptions {
    /// Learning rate η (theory convention, THEORY.md §0).
    pub lr: f64,
    /// Batch size B.
    pub batch: usize,
    /// BatchScheme scheme (model S by default).
    pub sampling: BatchScheme,
    /// Seed of the batch stream.
    pub seed: u64,
    /// Use the batch stream of this linearized trial ([`batch_stream`]).
    pub trial: usize,
    /// Escape when `‖θ_t − θ*‖ > distance_factor · δ` (default 10).
    pub distance_factor: f64,
    /// Escape when `ℒ(θ_t) > loss_factor · ℒ(θ_0)` (default 100).
    pub loss_factor: f64,
}

impl Default for TrueSgdOptions {
    fn default() -> Self {
        Self {
            lr: 0.1,
            batch: 1,
            sampling: BatchScheme::IidSubsets,
            seed: 0,
            trial: 0,
            distance_factor: 10.0,
            loss_factor: 100.0,
        }
    }
}

/// Why a run escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EscapeReason {
    /// `‖θ_t − θ*‖ > distance_factor · δ`.
    Distance,
    /// `ℒ(θ_t) > loss_factor · ℒ(θ_0)`.
    Loss,
    /// A loss or a parameter became non-finite.
    Diverged,
}

/// One true-SGD run from `θ* + δ·u_0`.
#[derive(Debug, Clone, Serialize)]
pub struct TrueSgdRun {
    /// δ.
    pub delta: f64,
    /// Recording times actually reached.
    pub times: Vec<u64>,
    /// `ℒ(θ_t)` at those times.
    pub loss: Vec<f64>,
    /// `‖θ_t − θ*‖` at those times.
    pub distance: Vec<f64>,
    /// `ℒ(θ*)` (0 at an exact interpolating minimum).
    pub minimum_loss: f64,
    /// `ℒ(θ_0)`.
    pub start_loss: f64,
    /// Whether the run escaped (see the module docs).
    pub escaped: bool,
    /// First step at which an escape criterion held.
    pub escape_step: Option<u64>,
    /// Which criterion held first.
    pub escape_reason: Option<EscapeReason>,
    /// True when the run stopped on a non-finite loss or parameter.
    pub diverged: bool,
    /// SGD steps applied.
    pub steps_done: u64,
    /// `max_t ‖θ_t − θ*‖ / δ` over all steps done.
    pub max_distance_ratio: f64,
}

/// Full-data loss `ℒ = (1/n)Σ_i ½‖f(x_i) − y_i‖²` (THEORY.md §0) of any [`SimNetwork`] (for an
/// MLP, blocks of 256 samples summed in order).
pub fn dataset_loss<N: SimNetwork>(net: &N, data: &Dataset) -> Result<f64> {
    net.loss(data)
}

/// Record the first escape.
fn escape(run: &mut TrueSgdRun, t: u64, why: EscapeReason) {
    if !run.escaped {
        run.escaped = true;
        run.escape_step = Some(t);
        run.escape_reason = Some(why);
    }
}

/// The residual forcing of SGD at θ\* (THEORY.md T5 failure mode (i)): with `res_i ≠ 0` each step
/// adds `−η g_ξ`, `g_ξ = (1/B)Σ_{i∈ξ} J_iᵀres_i`, to the linear recursion. Returns the RMS kick
/// `η·√E‖g_ξ‖²`, with `E‖g_ξ‖² = (1−p)‖∇ℒ‖² + p·(1/n)Σ_i‖∇ℓ_i‖²` (the vector form of F3; p of
/// THEORY.md §0). Perturbations δ at or below the kick accumulated over the run are dominated by
/// this noise, not by the linear dynamics. One reverse pass per sample.
pub fn forcing_kick<N: SimNetwork>(net: &N, data: &Dataset, eta: f64, p: f64) -> Result<f64> {
    if data.outputs().is_none() {
        return Err(Error::invalid_argument(
            "--y",
            "the residual forcing needs targets y",
        ));
    }
    let mut mean: Option<N::Vector> = None;
    let mut mean_sq = 0.0;
    for i in 0..data.len() {
        // ∇ℓ_i = J_iᵀres_i: the batch gradient of the batch {i}.
        let g = net.batch_gradient(data, &[i])?;
        mean_sq += g.dot(&g);
        match &mut mean {
            Some(m) => m.axpy(1.0, &g),
            // 0 + g = g: the first term starts the sum.
            None => mean = Some(g.clone()),
        }
    }
    let Some(mut mean) = mean else {
        return Err(Error::invalid_argument("n", "no samples"));
    };
    let nf = data.len() as f64;
    mean.scale(1.0 / nf);
    let e = (1.0 - p) * mean.dot(&mean) + p * mean_sq / nf;
    Ok(eta * e.max(0.0).sqrt())
}

/// Run true SGD from `θ* + δ·u_0` for `times.last()` steps, recording at `times` (increasing,
/// starting at 0). `u_0` must have the network's shapes (it is used as given; pass a unit vector
/// so that `‖θ_0 − θ*‖ = δ`). `on_step` is called every 64 steps with the count done.
pub fn run_true_sgd<N: SimNetwork>(
    net_star: &N,
    data: &Dataset,
    u0: &N::Vector,
    delta: f64,
    times: &[u64],
    opts: &TrueSgdOptions,
    on_step: &(dyn Fn(u64) + Sync),
) -> Result<TrueSgdRun> {
    if !(delta.is_finite() && delta > 0.0) {
        return Err(Error::invalid_argument(
            "--deltas",
            format!("each δ must be finite and > 0, got {delta}"),
        ));
    }
    if !(opts.lr.is_finite() && opts.lr > 0.0) {
        return Err(Error::invalid_argument(
            "--lr",
            format!("must be finite and > 0, got {}", opts.lr),
        ));
    }
    if data.outputs().is_none() {
        return Err(Error::invalid_argument("--y", "true SGD needs targets y"));
    }
    net_star.check_data(data)?;
    let n = data.len();
    let mut sampler = BatchSampler::new(opts.sampling, n, opts.batch)?;
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    rng.set_stream(batch_stream(opts.trial));

    let star = net_star.theta();
    let mut theta = star.clone();
    theta.axpy(delta, u0);
    let mut net = net_star.at(&theta)?;
    let minimum_loss = net_star.loss(data)?;
    let start_loss = net.loss(data)?;
    let d0 = theta.distance(&star);
    let steps = times.last().copied().unwrap_or(0);
    let mut run = TrueSgdRun {
        delta,
        times: Vec::with_capacity(times.len()),
        loss: Vec::with_capacity(times.len()),
        distance: Vec::with_capacity(times.len()),
        minimum_loss,
        start_loss,
        escaped: false,
        escape_step: None,
        escape_reason: None,
        diverged: false,
        steps_done: 0,
        max_distance_ratio: d0 / delta,
    };
    let mut next = 0usize;
    let mut pending = 0u64;
    for t in 0..=steps {
        let dist = theta.distance(&star);
        run.max_distance_ratio = run.max_distance_ratio.max(dist / delta);
        if dist > opts.distance_factor * delta {
            escape(&mut run, t, EscapeReason::Distance);
        }
        if next < times.len() && times[next] == t {
            let loss = if t == 0 { start_loss } else { net.loss(data)? };
            run.times.push(t);
            run.loss.push(loss);
            run.distance.push(dist);
            next += 1;
            if !loss.is_finite() {
                escape(&mut run, t, EscapeReason::Diverged);
                run.diverged = true;
                break;
            }
            if loss > opts.loss_factor * start_loss {
                escape(&mut run, t, EscapeReason::Loss);
            }
        }
        if t == steps {
            break;
        }
        let xi = sampler.next_batch(&mut rng);
        let grad = net.batch_gradient(data, xi)?;
        theta.axpy(-opts.lr, &grad);
        run.steps_done = t + 1;
        match net_star.at(&theta) {
            Ok(m) => net = m,
            Err(_) => {
                escape(&mut run, t + 1, EscapeReason::Diverged);
                run.diverged = true;
                break;
            }
        }
        pending += 1;
        if pending == 64 {
            on_step(pending);
            pending = 0;
        }
    }
    if pending > 0 {
        on_step(pending);
    }
    Ok(run)
}
