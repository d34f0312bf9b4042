//! Dynamics against the predictions: simulate SGD near an interpolating minimum θ* and compare
//! with the linear-stability theory (THEORY.md §0, T4, T5, T6).
//!
//! - [`linearized`]: the random linear recursion `u_{t+1} = (I − ηH_{ξ_t})u_t` of THEORY.md §0
//!   ("Linearization") with `H_ξ = (1/B)Σ_{i∈ξ} J_iᵀJ_i` (the Gauss–Newton Hessian, which is the
//!   Hessian at an interpolating minimum), **matrix-free**: one JVP and one VJP on the `B` sampled
//!   columns per step, on a forward pass cached once for all samples; never a `P × P` matrix.
//!   Batches follow model (S) (a fresh uniform `B`-subset per step, [`crate::train::BatchSampler`]).
//! - [`growth`]: the per-step growth rate of `E‖u_t‖^k` from the trials by a log-linear fit over
//!   the second half of the run, with a bootstrap confidence interval over trials, and the
//!   "typical" rate `exp(k·d/dt E log‖u_t‖)` with its standard error (Jensen: typical ≤ moment).
//! - [`true_sgd`]: plain nonlinear SGD, model (S), from `θ* + δ·u_0`: the training loss and
//!   `‖θ_t − θ*‖` over time and whether the run *escapes* (distance beyond 10× its start or loss
//!   beyond 100× its start).
//! - [`exact`]: exact expectations without Monte Carlo noise: the reduced second-moment operator
//!   `𝒬_r` of THEORY.md T5(e) iterated on `Σ_0`, and, for tiny problems and tests, the full-space
//!   `𝒬` of T5(a) from materialized `H_i = J_iᵀJ_i`.
//! - [`predict`](mod@predict): the predictions the simulation is compared with: the T4 verdict, the T5(f)
//!   η\* bracket and verdict (the stability decision), the diagnostic λ_max(𝒬_r) (T5e; its
//!   caveat: `1 − λ_max(𝒬_r) ≤ 2ηλ_min(K_r)`, it tracks the flattest kept direction) and, where
//!   exact enumeration is feasible, λ_max(𝒬_k) for even k ≥ 4 (T6).
//! - [`network`]: what the simulation needs of a network ([`SimNetwork`]: a cached forward pass
//!   for the recursion, plain SGD steps, the loss, the Gram spectrum, materialized `J_i`),
//!   implemented for the dense [`crate::model::Mlp`] (its fast engine, unchanged) and, in
//!   [`layered`], for a [`crate::net::Sequential`] (CNNs, THEORY.md §7(c)): one session, one
//!   recursion driver and one true-SGD loop for both ([`run`], [`run_layered`], [`run_loaded`]).
//! - the figure (an SVG of `E‖u_t‖^k`, log scale, and of the true-SGD distances against t, with
//!   the predictions as reference lines) is drawn by [`crate::render::figures::simulation`].
//!
//! **What is compared with what.** T5(d)/T6(b): the k-th moment is bounded iff
//! `λ_max(𝒬_k) ≤ 1`, and `ρ(𝒬_k) = lim_t (sup_{‖u_0‖=1} E‖u_t‖^k)^{1/t}`. A finite-horizon fit
//! from random starts estimates the growth of the modes the start excites over that window; at a
//! stable η it is at most λ_max(𝒬_k) asymptotically, and at an unstable η it approaches
//! λ_max(𝒬_k) > 1 from below. Monte Carlo means of `‖u_t‖^k` are dominated by rare large
//! trajectories when the moment grows through its tail, so with few trials the estimate leans
//! toward the typical rate; the report gives both.

pub mod exact;
pub mod growth;
pub mod layered;
pub mod linearized;
pub mod network;
pub mod plan;
pub mod predict;
mod session;
mod text;
pub mod true_sgd;

pub use growth::{GrowthFit, GrowthOptions, fit_growth, log_moment_curve};
pub use layered::LayeredLinearization;
pub use linearized::{Linearization, LinearizedRun, LinearizedSgd, LinearizedTrial};
pub use network::{SimNetwork, Tangent};
pub use plan::{PredictMode, SimulatePlan};
pub use predict::{Prediction, PredictionOptions, predict};
pub use session::{SimulateDoc, run, run_layered, run_loaded};
pub use text::{render_plot, render_text};
pub use true_sgd::{EscapeReason, TrueSgdOptions, TrueSgdRun, forcing_kick, run_true_sgd};

use crate::error::{Error, Result};
use crate::measure::stability::Sampling as TheorySampling;
use crate::train::BatchScheme;

/// ChaCha8 stream of trial `r`'s start vector `u_0` (cotangents `w`).
pub const fn start_stream(trial: usize) -> u64 {
    2 * trial as u64
}

/// ChaCha8 stream of trial `r`'s batches `ξ_0, ξ_1, …`.
pub const fn batch_stream(trial: usize) -> u64 {
    2 * trial as u64 + 1
}

/// The theory's name of a simulation sampling scheme: (S) ↦ without replacement, (S′) ↦ with
/// replacement (THEORY.md §0). Per-epoch reshuffling is refused: the theory does not cover it.
pub fn theory_sampling(sampling: BatchScheme) -> Result<TheorySampling> {
    match sampling {
        BatchScheme::IidSubsets => Ok(TheorySampling::WithoutReplacement),
        BatchScheme::IidWithReplacement => Ok(TheorySampling::WithReplacement),
        BatchScheme::EpochReshuffle => Err(Error::invalid_argument(
            "--sampling",
            "per-epoch reshuffling is not covered by the theory (THEORY.md §0); simulate model S or S′",
        )),
    }
}

/// Recording times `0 = t_0 < t_1 < … < t_m = steps` on a grid of stride
/// `⌈steps / max_points⌉` (the last step is always included).
pub fn record_times(steps: u64, max_points: usize) -> Vec<u64> {
    let stride = steps.div_ceil(max_points.max(1) as u64).max(1);
    let mut t: Vec<u64> = (0..=steps).step_by(stride as usize).collect();
    if t.last() != Some(&steps) {
        t.push(steps);
    }
    t
}

#[cfg(test)]
mod tests;
