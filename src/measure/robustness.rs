//! Adversarial robustness (THEORY.md T9) and generalization near the training set (T8), on top of
//! the certified local Lipschitz bounds `L_i(ε)` of T10 ([`super::lipschitz`]).
//!
//! Per training point ([`certify_points`]):
//! - **T9(b) regression**: radius ε is τ-certified at `x_i` if `ε·L_i(ε) ≤ τ` (then every ε′ ≤ ε
//!   is, by T10 nesting).
//! - **T9(c) classification** (y the class index, argmax of the one-hot/score row `y_i`): certified
//!   at ε if `f_y(x_i) − f_c(x_i) > ε·min(√2·L_i(ε), L_i^{(y,c)}(ε))` for every `c ≠ y`, with the
//!   difference-network bound `L_i^{(y,c)}`. The outputs `f(x_i)` come from a rigorous enclosure
//!   (T10 propagation at radius 0), so the margins used are **lower bounds** of the exact margins.
//! - **Certified radius**: a bisection on `[0, ε_max]` with a fixed number of steps that keeps the
//!   invariant "lo is verified". Because the midpoint–radius bound need not be monotone in ε, the
//!   result is a *lower bound on the largest certified radius* (kind lower), not necessarily that
//!   radius; it is sound: every radius ≤ the result is certified.
//! - **T8(c) excess variation** `ω_i = max(0, L_i − g_i)`, rounded up, with `g_i = ‖J_x(x_i)‖₂`.
//!   *Direction:* T8(c)/T9(d) use `L_i ≤ g_i + ω_i` for the **exact** `g_i` (Markov is applied to the
//!   exact `g_i^{2k}`, e.g. bounded by T7). So `ω_i` must be ≥ `L_i − g_i^exact`, which holds when it
//!   is computed from a **lower** bound of `g_i`: `ω_i := up(L_i^upper − g_i^lower)`. Conversely, a
//!   measured `G_{2k}` must be built from **upper** bounds of `g_i`.
//!
//! Summaries: the exact certified fraction at ε (a count), radius quantiles, `G_{2k}` for the
//! T9(d) Markov fraction bounds (whose rule is `flatcert_bounds::t9`), the T8(b)/(c)
//! generalization bounds ([`generalization_bound`]) and held-out coverage ([`coverage`]) for the
//! hypothesis (D_ε) that no training-set computation can verify.

use nalgebra::DMatrix;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::QuantityMap;
use super::lipschitz::{
    BallNorm, JacobianNormBounds, LIBM_HYPOTHESIS, LayerBox, LipschitzBound, LipschitzOptions,
    PairwiseLipschitz, Prepared, evaluate, jacobian_bounds, output_box,
};
use super::names;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::model::Mlp;
use crate::quantity::{Quantity, UNIT_ROUNDOFF, gamma, round_down, round_up};

const U: f64 = UNIT_ROUNDOFF;

/// Default number of bisection steps of the certified-radius search (relative resolution
/// `2^−30 ≈ 1e-9` of `ε_max`, plus the candidate step described at [`RadiusSearch`]).
pub const DEFAULT_BISECTION_STEPS: usize = 30;

/// The quantile levels reported for the certified radii.
pub const RADIUS_QUANTILES: [f64; 7] = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0];

/// What "robust" means at a point (T9(b) or T9(c)): the theorem layer's task.
pub use flatcert_bounds::t9::Task;

/// The certified-radius search of T9(b)/(c).
///
/// Steps: (1) if `ε_max` is certified, return it; (2) candidate `r_0 = ρ(ε_max)·(1 − 8u)`, where
/// `ρ(r)` is the radius the bound at r would certify if it did not change (`τ/L(r)`, resp.
/// `min_c gap_c/L^{(y,c)}(r)`), verified directly; (3) `steps` bisection steps on `[lo, hi]`,
/// `lo` always verified. The candidate makes the result exact up to rounding when `L(ε)` is
/// constant in ε (THEORY §5: radius `0.5·(1 − O(u))`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RadiusSearch {
    /// Upper end of the search interval (> 0).
    pub eps_max: f64,
    /// Number of bisection steps (fixed; at most 200).
    pub steps: usize,
}

impl RadiusSearch {
    /// A search on `[0, eps_max]` with [`DEFAULT_BISECTION_STEPS`] steps.
    pub fn new(eps_max: f64) -> Self {
        Self {
            eps_max,
            steps: DEFAULT_BISECTION_STEPS,
        }
    }
}

/// Configuration of [`certify_points`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RobustnessConfig {
    /// The radius ε at which `L_i(ε)` and the certified fraction are computed (> 0).
    pub eps: f64,
    /// The ball's norm. T8 and ω (T8c) are ℓ2 statements and are computed only for ℓ2.
    pub norm: BallNorm,
    /// Regression (τ) or classification.
    pub task: Task,
    /// Certified-radius search per point, if wanted.
    pub radius: Option<RadiusSearch>,
    /// Options of the T10 bounds (intervals are never kept here).
    pub lipschitz: LipschitzOptions,
}

impl RobustnessConfig {
    /// ε, norm and task, no radius search, default T10 options.
    pub fn new(eps: f64, norm: BallNorm, task: Task) -> Self {
        Self {
            eps,
            norm,
            task,
            radius: None,
            lipschitz: LipschitzOptions {
                keep_intervals: false,
                spectral_per_layer: true,
            },
        }
    }
}

/// Everything T8/T9 certify at one training point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointCertificate {
    /// Sample index i.
    pub index: usize,
    /// `L_i(ε)` (T10), kind upper, with the three bounds and the winner.
    pub lipschitz: LipschitzBound,
    /// Classification: the label y (argmax of `y_i`, first on ties).
    pub label: Option<usize>,
    /// argmax of the computed `f(x_i)` (midpoints of the rigorous output enclosure).
    pub predicted: usize,
    /// Classification: a rigorous lower bound of the margin `m_i = f_y − max_{c≠y} f_c` (kind
    /// lower). A margin ≤ 0 is never certified.
    pub margin: Option<Quantity>,
    /// Classification: the effective pair bounds `min(√2·L_i, L_i^{(y,c)})` at ε (entry y: 0).
    pub pair_bounds: Option<Vec<Quantity>>,
    /// With targets: an upper bound of `‖res_i‖ = ‖f(x_i) − y_i‖` (kind upper).
    pub residual_norm: Option<Quantity>,
    /// Rigorous bounds on `g_i = ‖J_x(x_i)‖₂`.
    pub jacobian_norm: JacobianNormBounds,
    /// ℓ2 only: `ω_i = max(0, L_i − g_i^lower)` rounded up (T8c), kind upper.
    pub omega: Option<Quantity>,
    /// T9(b)/(c) at ε.
    pub certified_at_eps: bool,
    /// The certified radius (kind lower), if a search was requested.
    pub certified_radius: Option<Quantity>,
}

/// The per-point certificates of a data set at one ε.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointCertificates {
    /// The radius ε.
    pub eps: f64,
    /// The ball's norm.
    pub norm: BallNorm,
    /// Regression or classification.
    pub task: Task,
    /// One entry per sample, in sample order.
    pub points: Vec<PointCertificate>,
}

/// One quantile of the certified radii (kind lower: order statistics of lower bounds are lower
/// bounds of the order statistics).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RadiusQuantile {
    /// The level q ∈ [0, 1] (inverse-CDF: the smallest radius r with F(r) ≥ q).
    pub q: f64,
    /// The quantile.
    pub radius: Quantity,
}

/// T9 "Check" summary: the exact certified fraction first, then the distribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RobustnessSummary {
    /// The radius ε.
    pub eps: f64,
    /// The ball's norm.
    pub norm: BallNorm,
    /// Number of points n.
    pub n: usize,
    /// Number certified at ε (exact count given the bounds).
    pub certified_count: usize,
    /// `certified_count / n`, kind exact.
    pub certified_fraction: Quantity,
    /// Mean of `L_i(ε)`, kind upper.
    pub lipschitz_mean: Quantity,
    /// Max of `L_i(ε)`, kind upper.
    pub lipschitz_max: Quantity,
    /// ℓ2: mean of ω_i (T8c), kind upper.
    pub omega_mean: Option<Quantity>,
    /// ℓ2: `ω_max = max_i ω_i` (T9d), kind upper.
    pub omega_max: Option<Quantity>,
    /// Classification: number of points whose margin lower bound is ≤ 0.
    pub margin_nonpositive: Option<usize>,
    /// Quantiles of the certified radii at [`RADIUS_QUANTILES`], if radii were searched.
    pub radius_quantiles: Option<Vec<RadiusQuantile>>,
}

/// T8 moment form (c) for one k.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MomentForm {
    /// The moment order k (the power is 2k).
    pub k: u32,
    /// `G_{2k} = ((1/n) Σ g_i^{2k})^{1/(2k)}` from upper bounds of `g_i`, kind upper.
    pub g2k: Quantity,
    /// `ω̄`, kind upper.
    pub omega_mean: Quantity,
    /// `r̄ + ε_y + ε(G_{2k} + ω̄)`, kind upper.
    pub bound: Quantity,
}

/// T8 certified generalization bounds near the training set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneralizationBound {
    /// The radius ε of (D_ε).
    pub eps: f64,
    /// The label radius ε_y of (D_ε).
    pub eps_y: f64,
    /// (b) `E‖f(x) − y‖ ≤ Σ_i w_i(‖res_i‖ + εL_i + ε_y)`, kind upper.
    pub mean_abs: Quantity,
    /// (b) `E½‖f(x) − y‖² ≤ Σ_i w_i ½(‖res_i‖ + εL_i + ε_y)²`, kind upper.
    pub mean_half_sq: Quantity,
    /// The part `r̄ = Σ w_i ‖res_i‖`, kind upper.
    pub residual_mean: Quantity,
    /// The part `ε Σ w_i L_i`, kind upper.
    pub lipschitz_term: Quantity,
    /// (c) for each requested k (uniform weights only).
    pub moment_forms: Vec<MomentForm>,
    /// (e) classification: `P(error) ≤ Σ_i w_i 1{i not certified at ε}`, kind upper.
    pub classification_error: Option<Quantity>,
    /// The hypotheses, to be printed with the bound (T8 "Check").
    pub assumptions: Vec<String>,
}

/// The label condition of (D_ε) for [`coverage_with`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "condition", rename_all = "snake_case")]
pub enum LabelCondition {
    /// Same class (argmax of the target rows).
    SameClass,
    /// `‖y − y_I‖₂ ≤ ε_y`.
    TargetWithin {
        /// ε_y ≥ 0.
        eps_y: f64,
    },
}

/// Held-out coverage for T8 (D_ε): how close test inputs are to the training inputs (ℓ2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Coverage {
    /// The radius ε.
    pub eps: f64,
    /// Per test point: distance to the nearest training input (recomputed directly).
    pub nearest_distances: Vec<f64>,
    /// Per test point: index of that training input.
    pub nearest_index: Vec<usize>,
    /// Fraction of test points with a training input within ε, kind exact.
    pub fraction_within_eps: Quantity,
    /// The label condition used, if any.
    pub label_condition: Option<LabelCondition>,
    /// Per test point: distance to the nearest training input meeting the label condition
    /// (+∞ if none).
    pub nearest_label_distances: Option<Vec<f64>>,
    /// Fraction of test points with a training input within ε meeting the label condition.
    pub fraction_within_eps_same_label: Option<Quantity>,
}

// ---------------------------------------------------------------------------------------------
// Small rigorous helpers.
// ---------------------------------------------------------------------------------------------

/// `x^n` rounded up for `x ≥ 0` (one round-up per multiplication).
fn pow_up(x: f64, n: u32) -> f64 {
    (0..n).fold(1.0, |acc, _| round_up(acc * x))
}

/// `x^n` rounded down for `x ≥ 0`.
fn pow_down(x: f64, n: u32) -> f64 {
    (0..n).fold(1.0, |acc, _| round_down(acc * x).max(0.0))
}

/// A rigorous upper bound of `x^{1/n}` (x ≥ 0): a libm guess, increased until a rounded-down
/// power certifies `y^n ≥ x`.
fn root_up(x: f64, n: u32) -> f64 {
    if x <= 0.0 || !x.is_finite() {
        return x.max(0.0);
    }
    let mut y = x.powf(1.0 / f64::from(n));
    for _ in 0..64 {
        if pow_down(y, n) >= x {
            return y;
        }
        y = round_up(y);
    }
    let mut y = y * (1.0 + 1e-12);
    while pow_down(y, n) < x && y.is_finite() {
        y *= 2.0;
    }
    y
}

/// Sum of nonnegative numbers with one round-up per addition.
fn sum_up(v: impl Iterator<Item = f64>) -> f64 {
    v.fold(0.0, |acc, x| round_up(acc + x))
}

/// The class index of a target (or score) row: argmax, first on ties.
pub fn class_index(row: &[f64]) -> usize {
    let mut best = 0;
    for (c, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = c;
        }
    }
    best
}

fn check_eps(name: &str, eps: f64, allow_zero: bool) -> Result<()> {
    if eps.is_finite() && (eps > 0.0 || (allow_zero && eps == 0.0)) {
        Ok(())
    } else {
        let what = if allow_zero { ">= 0" } else { "> 0" };
        Err(Error::invalid_argument(
            name,
            format!("must be finite and {what}, got {eps}"),
        ))
    }
}

fn check_search(s: &RadiusSearch) -> Result<()> {
    check_eps("eps_max", s.eps_max, false)?;
    if s.steps > 200 {
        return Err(Error::invalid_argument(
            "steps",
            format!("at most 200 bisection steps, got {}", s.steps),
        ));
    }
    Ok(())
}

fn check_task(task: &Task) -> Result<()> {
    if let Task::Regression { tau } = task {
        check_eps("tau", *tau, true)?;
    }
    Ok(())
}

/// The radius search of [`RadiusSearch`]. `check(r)` returns (certified at r, candidate ρ(r)).
fn search_radius<F>(s: RadiusSearch, mut check: F) -> Result<f64>
where
    F: FnMut(f64) -> Result<(bool, f64)>,
{
    let (ok, cand) = check(s.eps_max)?;
    if ok {
        return Ok(s.eps_max);
    }
    let (mut lo, mut hi) = (0.0, s.eps_max);
    let c0 = round_down(cand * (1.0 - 8.0 * U));
    if c0.is_finite() && c0 > 0.0 && c0 < hi {
        if check(c0)?.0 {
            lo = c0;
        } else {
            hi = c0;
        }
    }
    for _ in 0..s.steps {
        let mid = lo + 0.5 * (hi - lo);
        if mid <= lo || mid >= hi {
            break;
        }
        if check(mid)?.0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

/// Rigorous lower bounds of `f_y(x) − f_c(x)` for every c (entry y: +∞) from an output enclosure.
fn gaps(out: &super::lipschitz::LayerBox, y: usize) -> Vec<f64> {
    (0..out.lo.len())
        .map(|c| {
            if c == y {
                f64::INFINITY
            } else {
                round_down(out.lo[y] - out.hi[c])
            }
        })
        .collect()
}

/// What the per-point T9/T10 certification needs of a network (THEORY T9, T10, §7(d)): a dense
/// MLP ([`Prepared`]) or a layered network ([`crate::net::NetIbp`]). Every number is rigorous
/// (outward-rounded interval propagation).
pub(crate) trait PointEngine: Sync {
    /// Number of outputs C.
    fn outputs(&self) -> usize;
    /// The γ index of a margin read from the output box (the dense depth, or the layer count).
    fn depth(&self) -> usize;
    /// A rigorous box for f(x) (radius 0).
    fn output_box(&self, x: &[f64]) -> Result<LayerBox>;
    /// Rigorous bounds of ‖J_x(x)‖₂.
    fn jacobian_bounds(&self, x: &[f64]) -> Result<JacobianNormBounds>;
    /// T10 on the ball of radius r around x.
    fn lipschitz(
        &self,
        x: &[f64],
        r: f64,
        norm: BallNorm,
        opts: LipschitzOptions,
    ) -> Result<LipschitzBound>;
    /// T10 and the pairwise bounds of the difference networks f_y − f_c.
    fn pairwise(
        &self,
        x: &[f64],
        r: f64,
        norm: BallNorm,
        opts: LipschitzOptions,
        label: usize,
    ) -> Result<(LipschitzBound, PairwiseLipschitz)>;
}

impl PointEngine for Prepared<'_> {
    fn outputs(&self) -> usize {
        self.mlp.output_dim()
    }
    fn depth(&self) -> usize {
        self.mlp.depth()
    }
    fn output_box(&self, x: &[f64]) -> Result<LayerBox> {
        Ok(output_box(self, x, 0.0, BallNorm::L2))
    }
    fn jacobian_bounds(&self, x: &[f64]) -> Result<JacobianNormBounds> {
        jacobian_bounds(self, x)
    }
    fn lipschitz(
        &self,
        x: &[f64],
        r: f64,
        norm: BallNorm,
        opts: LipschitzOptions,
    ) -> Result<LipschitzBound> {
        Ok(evaluate(self, x, r, norm, opts, None, false)?.bound)
    }
    fn pairwise(
        &self,
        x: &[f64],
        r: f64,
        norm: BallNorm,
        opts: LipschitzOptions,
        label: usize,
    ) -> Result<(LipschitzBound, PairwiseLipschitz)> {
        let ev = evaluate(self, x, r, norm, opts, Some(label), false)?;
        let pairs = ev
            .pairs
            .ok_or_else(|| Error::Internal("pairwise bounds missing".into()))?;
        Ok((ev.bound, pairs))
    }
}

impl PointEngine for crate::net::NetIbp<'_> {
    fn outputs(&self) -> usize {
        self.net().output_dim()
    }
    fn depth(&self) -> usize {
        self.net().layers().len()
    }
    fn output_box(&self, x: &[f64]) -> Result<LayerBox> {
        self.output_enclosure(x, 0.0, BallNorm::L2)
    }
    fn jacobian_bounds(&self, x: &[f64]) -> Result<JacobianNormBounds> {
        self.jacobian_norm_bounds(x)
    }
    fn lipschitz(
        &self,
        x: &[f64],
        r: f64,
        norm: BallNorm,
        opts: LipschitzOptions,
    ) -> Result<LipschitzBound> {
        crate::net::NetIbp::lipschitz(self, x, r, norm, opts)
    }
    fn pairwise(
        &self,
        x: &[f64],
        r: f64,
        norm: BallNorm,
        _opts: LipschitzOptions,
        label: usize,
    ) -> Result<(LipschitzBound, PairwiseLipschitz)> {
        crate::net::NetIbp::pairwise(self, x, r, norm, label)
    }
}

/// Regression check at r: `(up(r·L(r)) ≤ τ, τ/L(r))`.
fn regression_check<E: PointEngine + ?Sized>(
    prep: &E,
    x: &[f64],
    r: f64,
    tau: f64,
    norm: BallNorm,
    opts: LipschitzOptions,
) -> Result<(bool, f64)> {
    let l = prep.lipschitz(x, r, norm, opts)?.lip.value;
    Ok((round_up(r * l) <= tau, round_down(tau / l)))
}

/// Classification check at r: for all c ≠ y, `gap_c > up(r·L^{(y,c)}(r))`; candidate
/// `min_c gap_c / L^{(y,c)}(r)`.
fn classification_check<E: PointEngine + ?Sized>(
    prep: &E,
    x: &[f64],
    r: f64,
    y: usize,
    gap: &[f64],
    norm: BallNorm,
    opts: LipschitzOptions,
) -> Result<(bool, f64, LipschitzBound, Vec<Quantity>)> {
    let (bound, pairs) = prep.pairwise(x, r, norm, opts, y)?;
    let mut ok = true;
    let mut cand = f64::INFINITY;
    for (c, q) in pairs.effective.iter().enumerate() {
        if c == y {
            continue;
        }
        ok &= gap[c] > round_up(r * q.value);
        cand = cand.min(round_down(gap[c] / q.value));
    }
    Ok((ok, cand, bound, pairs.effective))
}

fn validate_targets(c_out: usize, y: Option<&[f64]>, task: &Task) -> Result<()> {
    match (y, task) {
        (None, Task::Classification) => Err(Error::invalid_argument(
            "y",
            "classification (T9c) needs targets (one-hot or score rows) to define the label",
        )),
        (Some(row), _) if row.len() != c_out => Err(Error::invalid_argument(
            "y",
            format!(
                "targets have {} columns, the network has C = {c_out} outputs",
                row.len()
            ),
        )),
        (_, Task::Classification) if c_out < 2 => Err(Error::invalid_argument(
            "task",
            "classification needs a network with C >= 2 outputs",
        )),
        _ => Ok(()),
    }
}

fn certify_one<E: PointEngine + ?Sized>(
    prep: &E,
    index: usize,
    x: &[f64],
    y: Option<&[f64]>,
    cfg: &RobustnessConfig,
) -> Result<PointCertificate> {
    let opts = LipschitzOptions {
        keep_intervals: false,
        ..cfg.lipschitz
    };
    let out = prep.output_box(x)?;
    let mid: Vec<f64> = out
        .lo
        .iter()
        .zip(&out.hi)
        .map(|(l, h)| 0.5 * (l + h))
        .collect();
    let predicted = class_index(&mid);
    // ‖f(x_i) − y_i‖ ≤ ‖max(|hi − y|, |y − lo|)‖ entrywise, rounded up.
    let residual_norm = y.map(|yr| {
        let e: Vec<f64> = yr
            .iter()
            .enumerate()
            .map(|(c, &t)| {
                round_up(out.hi[c] - t)
                    .max(round_up(t - out.lo[c]))
                    .max(0.0)
            })
            .collect();
        let s = sum_up(e.iter().map(|v| round_up(v * v)));
        let v = round_up(s.sqrt());
        Quantity::upper(v, gamma(e.len() + 2) * v).with_method("output-enclosure")
    });
    let jacobian_norm = prep.jacobian_bounds(x)?;
    let eps = cfg.eps;
    let (lipschitz, label, margin, pair_bounds, certified_at_eps, radius) = match cfg.task {
        Task::Regression { tau } => {
            let bound = prep.lipschitz(x, eps, cfg.norm, opts)?;
            let ok = round_up(eps * bound.lip.value) <= tau;
            let radius = match cfg.radius {
                Some(s) => Some(search_radius(s, |r| {
                    regression_check(prep, x, r, tau, cfg.norm, opts)
                })?),
                None => None,
            };
            (bound, None, None, None, ok, radius)
        }
        Task::Classification => {
            let yr = y.ok_or_else(|| Error::Internal("targets checked above".into()))?;
            let label = class_index(yr);
            let gap = gaps(&out, label);
            let m = gap.iter().copied().fold(f64::INFINITY, f64::min);
            let (ok, _, bound, pairs) =
                classification_check(prep, x, eps, label, &gap, cfg.norm, opts)?;
            let radius = match cfg.radius {
                Some(_) if m <= 0.0 => Some(0.0),
                Some(s) => Some(search_radius(s, |r| {
                    classification_check(prep, x, r, label, &gap, cfg.norm, opts)
                        .map(|(ok, cand, _, _)| (ok, cand))
                })?),
                None => None,
            };
            let margin = Quantity::lower(m, gamma(prep.depth() + 2) * m.abs())
                .with_method("output-enclosure");
            (
                bound,
                Some(label),
                Some(margin),
                Some(pairs),
                ok && m > 0.0,
                radius,
            )
        }
    };
    let omega = match cfg.norm {
        BallNorm::L2 => {
            let w = round_up(lipschitz.lip.value - jacobian_norm.lower).max(0.0);
            Some(Quantity::upper(w, 0.0).with_method("lip-minus-jacobian-lower"))
        }
        BallNorm::LInf => None,
    };
    let certified_radius = radius.map(|r| {
        let q = Quantity::lower(r, 0.0).with_method("bisection-lo-verified");
        if margin.as_ref().is_some_and(|m| m.value <= 0.0) {
            q.with_note("margin <= 0: not certified even at radius 0")
        } else {
            q
        }
    });
    Ok(PointCertificate {
        index,
        lipschitz,
        label,
        predicted,
        margin,
        pair_bounds,
        residual_norm,
        jacobian_norm,
        omega,
        certified_at_eps,
        certified_radius,
    })
}

/// T9 (and the per-point inputs of T8) at every sample of `ds`, in parallel over samples (rayon;
/// sample order, each point sequential, so results do not depend on the thread count).
///
/// Errors: ε ≤ 0, τ < 0, a bad radius search, a dimension mismatch, or classification without
/// targets / with `C < 2` ([`Error::InvalidArgument`]).
pub fn certify_points(
    mlp: &Mlp,
    ds: &Dataset,
    cfg: &RobustnessConfig,
) -> Result<PointCertificates> {
    let prep = Prepared::new(mlp)?;
    check_eps("eps", cfg.eps, false)?;
    check_task(&cfg.task)?;
    if let Some(s) = &cfg.radius {
        check_search(s)?;
    }
    if ds.dim() != mlp.input_dim() {
        return Err(Error::bad_input(
            &ds.x_source,
            "shape",
            format!(
                "samples have {} features, the network expects {}",
                ds.dim(),
                mlp.input_dim()
            ),
        ));
    }
    certify_points_with(&prep, ds, cfg)
}

/// [`certify_points`] with any [`PointEngine`] (a dense MLP or a layered network); the data's
/// dimension is the caller's to check.
pub(crate) fn certify_points_with<E: PointEngine>(
    engine: &E,
    ds: &Dataset,
    cfg: &RobustnessConfig,
) -> Result<PointCertificates> {
    check_eps("eps", cfg.eps, false)?;
    check_task(&cfg.task)?;
    if let Some(s) = &cfg.radius {
        check_search(s)?;
    }
    validate_targets(engine.outputs(), ds.y_row(0), &cfg.task)?;
    let points = (0..ds.len())
        .into_par_iter()
        .map(|i| certify_one(engine, i, ds.x_row(i), ds.y_row(i), cfg))
        .collect::<Result<Vec<_>>>()?;
    Ok(PointCertificates {
        eps: cfg.eps,
        norm: cfg.norm,
        task: cfg.task,
        points,
    })
}

/// T9 at a single point `x0` (targets `y` needed for classification and for the residual).
pub fn certify_point(
    mlp: &Mlp,
    x0: &[f64],
    y: Option<&[f64]>,
    cfg: &RobustnessConfig,
) -> Result<PointCertificate> {
    let prep = Prepared::new(mlp)?;
    prep.check_point(x0, cfg.eps, false)?;
    check_task(&cfg.task)?;
    if let Some(s) = &cfg.radius {
        check_search(s)?;
    }
    validate_targets(mlp.output_dim(), y, &cfg.task)?;
    certify_one(&prep, 0, x0, y, cfg)
}

/// T9(b): is radius ε τ-certified at `x0`, i.e. `ε·L(ε) ≤ τ` (rounded up)?
pub fn is_certified_regression(
    mlp: &Mlp,
    x0: &[f64],
    eps: f64,
    tau: f64,
    norm: BallNorm,
) -> Result<bool> {
    let prep = Prepared::new(mlp)?;
    prep.check_point(x0, eps, false)?;
    check_eps("tau", tau, true)?;
    Ok(regression_check(&prep, x0, eps, tau, norm, LipschitzOptions::default())?.0)
}

/// T9(c): is `x0` certified at radius ε for class `label`, i.e. `f_y − f_c > ε·L^{(y,c)}` for all
/// `c ≠ y` with rigorous margins?
pub fn is_certified_classification(
    mlp: &Mlp,
    x0: &[f64],
    label: usize,
    eps: f64,
    norm: BallNorm,
) -> Result<bool> {
    let prep = Prepared::new(mlp)?;
    prep.check_point(x0, eps, false)?;
    let out = output_box(&prep, x0, 0.0, BallNorm::L2);
    if label >= out.lo.len() || out.lo.len() < 2 {
        return Err(Error::invalid_argument(
            "label",
            format!("class {label} with C = {} outputs", out.lo.len()),
        ));
    }
    let gap = gaps(&out, label);
    let opts = LipschitzOptions::default();
    Ok(classification_check(&prep, x0, eps, label, &gap, norm, opts)?.0)
}

/// T9(b): a certified radius `ε(τ)` at `x0` (kind lower: every radius ≤ it is τ-certified; a lower
/// bound on the largest certified radius).
pub fn certified_radius_regression(
    mlp: &Mlp,
    x0: &[f64],
    tau: f64,
    norm: BallNorm,
    search: RadiusSearch,
) -> Result<Quantity> {
    let prep = Prepared::new(mlp)?;
    check_search(&search)?;
    prep.check_point(x0, search.eps_max, false)?;
    check_eps("tau", tau, true)?;
    let opts = LipschitzOptions {
        keep_intervals: false,
        spectral_per_layer: true,
    };
    let r = search_radius(search, |r| regression_check(&prep, x0, r, tau, norm, opts))?;
    Ok(Quantity::lower(r, 0.0).with_method("bisection-lo-verified"))
}

/// T9(c): a certified radius at `x0` for class `label` (kind lower; 0 if the rigorous margin is
/// ≤ 0, in which case the point is not certified at any radius).
pub fn certified_radius_classification(
    mlp: &Mlp,
    x0: &[f64],
    label: usize,
    norm: BallNorm,
    search: RadiusSearch,
) -> Result<Quantity> {
    let prep = Prepared::new(mlp)?;
    check_search(&search)?;
    prep.check_point(x0, search.eps_max, false)?;
    let out = output_box(&prep, x0, 0.0, BallNorm::L2);
    if label >= out.lo.len() || out.lo.len() < 2 {
        return Err(Error::invalid_argument(
            "label",
            format!("class {label} with C = {} outputs", out.lo.len()),
        ));
    }
    let gap = gaps(&out, label);
    if gap.iter().any(|&g| g <= 0.0) {
        return Ok(Quantity::lower(0.0, 0.0).with_note("margin <= 0: not certified"));
    }
    let opts = LipschitzOptions {
        keep_intervals: false,
        spectral_per_layer: true,
    };
    let r = search_radius(search, |r| {
        classification_check(&prep, x0, r, label, &gap, norm, opts).map(|(ok, c, _, _)| (ok, c))
    })?;
    Ok(Quantity::lower(r, 0.0).with_method("bisection-lo-verified"))
}

impl PointCertificates {
    /// The T9 "Check" summary.
    pub fn summary(&self) -> RobustnessSummary {
        let n = self.points.len();
        let certified_count = self.points.iter().filter(|p| p.certified_at_eps).count();
        let frac = certified_count as f64 / n.max(1) as f64;
        let lips: Vec<f64> = self.points.iter().map(|p| p.lipschitz.lip.value).collect();
        let lmax = lips.iter().copied().fold(0.0, f64::max);
        let lmean = round_up(sum_up(lips.iter().copied()) / n.max(1) as f64);
        let omegas: Option<Vec<f64>> = self
            .points
            .iter()
            .map(|p| p.omega.as_ref().map(|q| q.value))
            .collect();
        let (omega_mean, omega_max) = match omegas {
            Some(w) if !w.is_empty() => (
                Some(
                    Quantity::upper(round_up(sum_up(w.iter().copied()) / n as f64), 0.0)
                        .with_method("mean-omega"),
                ),
                Some(
                    Quantity::upper(w.iter().copied().fold(0.0, f64::max), 0.0)
                        .with_method("max-omega"),
                ),
            ),
            _ => (None, None),
        };
        let margin_nonpositive = match self.task {
            Task::Classification => Some(
                self.points
                    .iter()
                    .filter(|p| p.margin.as_ref().is_some_and(|m| m.value <= 0.0))
                    .count(),
            ),
            Task::Regression { .. } => None,
        };
        let radii: Option<Vec<f64>> = self
            .points
            .iter()
            .map(|p| p.certified_radius.as_ref().map(|q| q.value))
            .collect();
        let radius_quantiles = radii.filter(|r| !r.is_empty()).map(|mut r| {
            r.sort_by(f64::total_cmp);
            RADIUS_QUANTILES
                .iter()
                .map(|&q| {
                    let k = ((q * r.len() as f64).ceil() as usize).clamp(1, r.len()) - 1;
                    RadiusQuantile {
                        q,
                        radius: Quantity::lower(r[k], 0.0).with_method("inverse-cdf"),
                    }
                })
                .collect()
        });
        RobustnessSummary {
            eps: self.eps,
            norm: self.norm,
            n,
            certified_count,
            certified_fraction: Quantity::exact(frac, U * frac).with_method("count"),
            lipschitz_mean: Quantity::upper(lmean, 0.0).with_method("mean-ibp"),
            lipschitz_max: Quantity::upper(lmax, 0.0).with_method("max-ibp"),
            omega_mean,
            omega_max,
            margin_nonpositive,
            radius_quantiles,
        }
    }

    /// A measured `G_{2k} = ((1/n) Σ g_i^{2k})^{1/(2k)}` from the **upper** bounds of
    /// `g_i = ‖J_x(x_i)‖₂` (T8c), kind upper. Errors on k = 0.
    pub fn input_jacobian_moment(&self, k: u32) -> Result<Quantity> {
        flatcert_bounds::moments::power_mean_order(k)
            .map_err(|e| Error::invalid_argument("k", e.to_string()))?;
        let n = self.points.len().max(1) as f64;
        let s = sum_up(
            self.points
                .iter()
                .map(|p| pow_up(p.jacobian_norm.upper, 2 * k)),
        );
        let mut v = root_up(round_up(s / n), 2 * k);
        let m = self
            .points
            .iter()
            .map(|p| p.jacobian_norm.upper)
            .fold(0.0f64, f64::max);
        if !v.is_finite() && m.is_finite() && m > 0.0 {
            // ‖J‖^{2k} overflowed (large k): the same power mean scaled by the largest norm, every
            // step rounded up (the scaled sum is ≥ 1/n, so nothing underflows).
            let s = sum_up(
                self.points
                    .iter()
                    .map(|p| pow_up(round_up(p.jacobian_norm.upper / m), 2 * k)),
            );
            v = round_up(m * root_up(round_up(s / n), 2 * k));
        }
        Ok(Quantity::upper(v, 0.0).with_method(format!("power-mean-2k={}", 2 * k)))
    }
}

/// T8: certified generalization bounds from per-point certificates computed with ℓ2 balls and
/// targets. `weights` are the `w_i = P(I = i)` (default uniform 1/n; must be ≥ 0 and sum to 1
/// within 1e-9). The moment form (c) is computed for each k in `moment_k` and needs uniform
/// weights. Every sum and product is rounded up.
pub fn generalization_bound(
    points: &PointCertificates,
    eps_y: f64,
    weights: Option<&[f64]>,
    moment_k: &[u32],
) -> Result<GeneralizationBound> {
    check_eps("eps_y", eps_y, true)?;
    if points.norm != BallNorm::L2 {
        return Err(Error::invalid_argument(
            "norm",
            "T8 is an l2 statement: compute the certificates with BallNorm::L2",
        ));
    }
    let n = points.points.len();
    if n == 0 {
        return Err(Error::invalid_argument("points", "no training points"));
    }
    let res: Vec<f64> = points
        .points
        .iter()
        .map(|p| p.residual_norm.as_ref().map(|q| q.value))
        .collect::<Option<Vec<f64>>>()
        .ok_or_else(|| Error::invalid_argument("y", "T8 needs targets to bound the residuals"))?;
    let uniform = round_up(1.0 / n as f64);
    let w: Vec<f64> = match weights {
        None => vec![uniform; n],
        Some(w) => {
            if w.len() != n {
                return Err(Error::invalid_argument(
                    "weights",
                    format!("{} weights for {n} points", w.len()),
                ));
            }
            if let Some(i) = w.iter().position(|v| !(v.is_finite() && *v >= 0.0)) {
                return Err(Error::invalid_argument(
                    "weights",
                    format!("weight {i} is {} (must be finite and >= 0)", w[i]),
                ));
            }
            let s: f64 = w.iter().sum();
            if (s - 1.0).abs() > 1e-9 {
                return Err(Error::invalid_argument(
                    "weights",
                    format!("weights sum to {s}, expected 1"),
                ));
            }
            w.to_vec()
        }
    };
    let eps = points.eps;
    let terms: Vec<f64> = points
        .points
        .iter()
        .zip(&res)
        .map(|(p, &r)| round_up(round_up(r + round_up(eps * p.lipschitz.lip.value)) + eps_y))
        .collect();
    let wsum = |v: &mut dyn Iterator<Item = f64>| -> f64 {
        sum_up(v.zip(&w).map(|(t, &wi)| round_up(t * wi)))
    };
    let mean_abs = wsum(&mut terms.iter().copied());
    let mean_half_sq = wsum(&mut terms.iter().map(|t| round_up(0.5 * round_up(t * t))));
    let residual_mean = wsum(&mut res.iter().copied());
    let lip_term = round_up(eps * wsum(&mut points.points.iter().map(|p| p.lipschitz.lip.value)));
    let mut moment_forms = Vec::new();
    if !moment_k.is_empty() {
        if weights.is_some() {
            return Err(Error::invalid_argument(
                "weights",
                "the T8(c) moment form needs uniform weights",
            ));
        }
        let omegas: Vec<f64> = points
            .points
            .iter()
            .map(|p| p.omega.as_ref().map_or(f64::INFINITY, |q| q.value))
            .collect();
        let omega_mean = round_up(sum_up(omegas.iter().copied()) / n as f64);
        for &k in moment_k {
            let g2k = points.input_jacobian_moment(k)?;
            let inner = round_up(g2k.value + omega_mean);
            let bound = round_up(round_up(residual_mean + eps_y) + round_up(eps * inner));
            moment_forms.push(MomentForm {
                k,
                g2k,
                omega_mean: Quantity::upper(omega_mean, 0.0).with_method("mean-omega"),
                bound: Quantity::upper(bound, 0.0).with_method("t8c-moment"),
            });
        }
    }
    let classification_error = match points.task {
        Task::Classification => {
            let v = sum_up(
                points
                    .points
                    .iter()
                    .zip(&w)
                    .filter(|(p, _)| !p.certified_at_eps)
                    .map(|(_, &wi)| wi),
            );
            Some(Quantity::upper(v.min(1.0), 0.0).with_method("t8e-uncertified-weight"))
        }
        Task::Regression { .. } => None,
    };
    let q = |v: f64, m: &str| Quantity::upper(v, gamma(n + 4) * v).with_method(m.to_string());
    Ok(GeneralizationBound {
        eps,
        eps_y,
        mean_abs: q(mean_abs, "t8b-mean"),
        mean_half_sq: q(mean_half_sq, "t8b-mean-half-square"),
        residual_mean: q(residual_mean, "mean-residual"),
        lipschitz_term: q(lip_term, "eps-mean-lipschitz"),
        moment_forms,
        classification_error,
        assumptions: vec![
            format!(
                "(D_eps) assumed: every test pair (x, y) has a training index I ~ w with \
                 ||x - x_I||_2 <= {eps} and ||y - y_I|| <= {eps_y}; not verifiable from training \
                 data, measure it with held-out coverage"
            ),
            "(L) checked: L_i = Lip(x_i, eps) from T10 (interval bound propagation)".into(),
            format!("assumed: {LIBM_HYPOTHESIS}"),
            "deterministic covering bound, not a PAC bound: no sample-size term; if (D_eps) holds \
             only with probability 1 - delta and the loss is bounded by l_max, add delta * l_max"
                .into(),
        ],
    })
}

impl RobustnessSummary {
    /// Insert under canonical names: `robust_certified_fraction` (exact), `lipschitz_local_mean`,
    /// `lipschitz_local_max`, `omega_mean`, `omega_max` (upper), `robust_radius_q{00,10,…,100}`
    /// (lower).
    pub fn insert_into(&self, map: &mut QuantityMap) {
        map.insert(
            names::ROBUST_CERTIFIED_FRACTION.into(),
            self.certified_fraction.clone(),
        );
        map.insert(
            names::LIPSCHITZ_LOCAL_MEAN.into(),
            self.lipschitz_mean.clone(),
        );
        map.insert(
            names::LIPSCHITZ_LOCAL_MAX.into(),
            self.lipschitz_max.clone(),
        );
        if let Some(q) = &self.omega_mean {
            map.insert(names::OMEGA_MEAN.into(), q.clone());
        }
        if let Some(q) = &self.omega_max {
            map.insert(names::OMEGA_MAX.into(), q.clone());
        }
        for rq in self.radius_quantiles.iter().flatten() {
            let name = format!(
                "{}{:02}",
                names::ROBUST_RADIUS_Q,
                (rq.q * 100.0).round() as u32
            );
            map.insert(name, rq.radius.clone());
        }
    }
}

impl GeneralizationBound {
    /// Insert under canonical names: `gen_bound_mean_abs`, `gen_bound_mean_half_sq`,
    /// `gen_residual_mean`, `gen_lipschitz_term`, `gen_bound_moment_k{k}`,
    /// `input_jacobian_g2k_k{k}`, `gen_bound_classification_error` (all upper).
    pub fn insert_into(&self, map: &mut QuantityMap) {
        map.insert(names::GEN_BOUND_MEAN_ABS.into(), self.mean_abs.clone());
        map.insert(
            names::GEN_BOUND_MEAN_HALF_SQ.into(),
            self.mean_half_sq.clone(),
        );
        map.insert(names::GEN_RESIDUAL_MEAN.into(), self.residual_mean.clone());
        map.insert(
            names::GEN_LIPSCHITZ_TERM.into(),
            self.lipschitz_term.clone(),
        );
        for m in &self.moment_forms {
            map.insert(
                names::per_k(names::GEN_BOUND_MOMENT_K, m.k),
                m.bound.clone(),
            );
            map.insert(
                names::per_k(names::INPUT_JACOBIAN_G2K_K, m.k),
                m.g2k.clone(),
            );
        }
        if let Some(q) = &self.classification_error {
            map.insert(names::GEN_BOUND_CLASSIFICATION_ERROR.into(), q.clone());
        }
    }
}

impl Coverage {
    /// Insert under canonical names: `coverage_within_eps`, `coverage_within_eps_label` (exact),
    /// `coverage_nn_distance_median` (exact).
    pub fn insert_into(&self, map: &mut QuantityMap) {
        map.insert(
            names::COVERAGE_WITHIN_EPS.into(),
            self.fraction_within_eps.clone(),
        );
        if let Some(q) = &self.fraction_within_eps_same_label {
            map.insert(names::COVERAGE_WITHIN_EPS_LABEL.into(), q.clone());
        }
        let mut d = self.nearest_distances.clone();
        if !d.is_empty() {
            d.sort_by(f64::total_cmp);
            let med = d[(d.len() - 1) / 2];
            map.insert(
                names::COVERAGE_NN_DISTANCE_MEDIAN.into(),
                Quantity::exact(med, 4.0 * U * med).with_method("lower-median"),
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Coverage (T8 failure modes): brute-force nearest neighbours with GEMM distances.
// ---------------------------------------------------------------------------------------------

const TEST_BLOCK: usize = 64;
const TRAIN_BLOCK: usize = 512;

/// `‖a − b‖²` computed directly (the "exact recheck").
fn direct_d2(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// T8 (D_ε) measured on held-out data with the automatic label condition: same class (argmax)
/// when both sets have targets with `C ≥ 2`, none otherwise. See [`coverage_with`].
pub fn coverage(train: &Dataset, test: &Dataset, eps: f64) -> Result<Coverage> {
    let cond = match (train.outputs(), test.outputs()) {
        (Some(a), Some(b)) if a == b && a >= 2 => Some(LabelCondition::SameClass),
        _ => None,
    };
    coverage_with(train, test, eps, cond)
}

/// Nearest training input (ℓ2) of every test input, by brute force: blocked GEMM distances
/// `‖a‖² + ‖b‖² − 2aᵀb` (tiny negatives clamped to 0), then the winner's distance recomputed
/// directly. Every training point whose GEMM distance is within the GEMM error bound
/// `γ_{d+3}(‖a‖² + ‖b‖² + 2‖a‖‖b‖)` of the current best is rechecked directly too, so the winner is
/// the true nearest neighbour up to the rounding of the direct sums. Parallel over test blocks.
pub fn coverage_with(
    train: &Dataset,
    test: &Dataset,
    eps: f64,
    condition: Option<LabelCondition>,
) -> Result<Coverage> {
    check_eps("eps", eps, true)?;
    if train.dim() != test.dim() {
        return Err(Error::bad_input(
            &test.x_source,
            "shape",
            format!(
                "test inputs have {} features, training inputs {}",
                test.dim(),
                train.dim()
            ),
        ));
    }
    if let Some(c) = condition {
        if let LabelCondition::TargetWithin { eps_y } = c {
            check_eps("eps_y", eps_y, true)?;
        }
        match (train.outputs(), test.outputs()) {
            (Some(a), Some(b)) if a == b => {}
            _ => {
                return Err(Error::invalid_argument(
                    "y",
                    "a label condition needs targets of the same width on both sets",
                ));
            }
        }
    }
    let d = train.dim();
    let g = gamma(d + 3);
    let train_sq: Vec<f64> = (0..train.len())
        .map(|j| train.x_row(j).iter().map(|v| v * v).sum())
        .collect();
    let class_of = |ds: &Dataset, i: usize| ds.y_row(i).map(class_index).unwrap_or(0);
    let train_class: Vec<usize> = (0..train.len()).map(|j| class_of(train, j)).collect();
    let matches = |i: usize, j: usize| -> bool {
        match condition {
            None => false,
            Some(LabelCondition::SameClass) => class_of(test, i) == train_class[j],
            Some(LabelCondition::TargetWithin { eps_y }) => match (test.y_row(i), train.y_row(j)) {
                (Some(a), Some(b)) => direct_d2(a, b).sqrt() <= eps_y,
                _ => false,
            },
        }
    };
    let blocks = test.blocks(TEST_BLOCK);
    let per_block: Vec<Vec<(f64, usize, f64)>> = blocks
        .par_iter()
        .map(|&(s, e)| {
            let a = test.x_block(s, e);
            let bt = e - s;
            let test_sq: Vec<f64> = (s..e)
                .map(|i| test.x_row(i).iter().map(|v| v * v).sum())
                .collect();
            // (best d², best j, best label-matching d²)
            let mut best = vec![(f64::INFINITY, 0usize, f64::INFINITY); bt];
            for (ts, te) in train.blocks(TRAIN_BLOCK) {
                let b = train.x_block(ts, te);
                let gram: DMatrix<f64> = a.tr_mul(&b);
                for (ii, slot) in best.iter_mut().enumerate() {
                    let i = s + ii;
                    let xi = test.x_row(i);
                    let na = test_sq[ii];
                    let approx = |jj: usize| {
                        let nb = train_sq[ts + jj];
                        let v = (na + nb - 2.0 * gram[(ii, jj)]).max(0.0);
                        let err = g * (na + nb + 2.0 * (na * nb).sqrt());
                        (v, err)
                    };
                    // Pass 1: the block's GEMM winner, rechecked directly.
                    let mut jstar = 0;
                    let mut vstar = f64::INFINITY;
                    for jj in 0..te - ts {
                        let (v, _) = approx(jj);
                        if v < vstar {
                            vstar = v;
                            jstar = jj;
                        }
                    }
                    let dstar = direct_d2(xi, train.x_row(ts + jstar));
                    if dstar < slot.0 {
                        *slot = (dstar, ts + jstar, slot.2);
                    }
                    // Pass 2: any point that could still beat the best (or match the label).
                    for jj in 0..te - ts {
                        let (v, err) = approx(jj);
                        let lower = v - err;
                        let j = ts + jj;
                        if lower <= slot.0 && jj != jstar {
                            let dj = direct_d2(xi, train.x_row(j));
                            if dj < slot.0 {
                                slot.0 = dj;
                                slot.1 = j;
                            }
                        }
                        if condition.is_some() && lower <= slot.2 && matches(i, j) {
                            let dj = direct_d2(xi, train.x_row(j));
                            if dj < slot.2 {
                                slot.2 = dj;
                            }
                        }
                    }
                }
            }
            best
        })
        .collect();
    let all: Vec<(f64, usize, f64)> = per_block.into_iter().flatten().collect();
    let nt = all.len();
    let nearest_distances: Vec<f64> = all.iter().map(|t| t.0.sqrt()).collect();
    let nearest_index: Vec<usize> = all.iter().map(|t| t.1).collect();
    // A distance is Σ(a − b)² over d coordinates, then √: relative error ≤ ½γ_{d+1} + u <
    // (d + 3)u. A point whose computed distance is within that band of ε may be on either side,
    // so the exact fraction is the count ± the ambiguous ones (plus the division's u).
    let band = (train.dim() + 3) as f64 * U;
    let frac = |d: &[f64]| {
        let k = d.iter().filter(|&&v| v <= eps).count();
        let ambiguous = d
            .iter()
            .filter(|&&v| (v - eps).abs() <= band * v.max(eps))
            .count();
        let f = k as f64 / nt as f64;
        Quantity::exact(f, U * f + ambiguous as f64 / nt as f64).with_method("count")
    };
    let within = frac(&nearest_distances);
    let (nearest_label_distances, fraction_label) = if condition.is_some() {
        let dl: Vec<f64> = all.iter().map(|t| t.2.sqrt()).collect();
        let q = frac(&dl);
        (Some(dl), Some(q))
    } else {
        (None, None)
    };
    Ok(Coverage {
        eps,
        nearest_distances,
        nearest_index,
        fraction_within_eps: within,
        label_condition: condition,
        nearest_label_distances,
        fraction_within_eps_same_label: fraction_label,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::lipschitz::tests::{ALL, abs_net, normal, random_net, sample_ball};
    use crate::model::Activation;
    use crate::quantity::Kind;
    use flatcert_bounds::t9::markov_fraction_bound_regression;
    use nalgebra::DVector;
    use rand::rngs::ChaCha8Rng;
    use rand::{RngExt, SeedableRng};

    fn f_at(mlp: &Mlp, x: &[f64]) -> DVector<f64> {
        let xm = DMatrix::from_column_slice(x.len(), 1, x);
        mlp.forward(xm.as_view()).column(0).into_owned()
    }

    fn abs_data() -> Dataset {
        // THEORY.md §5: x = (−1, 1, 2), y = (1, 1, 2).
        Dataset::new(
            vec![-1.0, 1.0, 2.0],
            3,
            1,
            Some((vec![1.0, 1.0, 2.0], 1)),
            "x",
            "y",
        )
        .unwrap()
    }

    #[test]
    fn golden_regression_radius() {
        // THEORY §5: at x0 = 1, τ = 0.5 the radius is 0.5 because the T10 bound is 1 for every ε;
        // with outward rounding it is 0.5·(1 − O(u)): never above 0.5 (sound), below by at most
        // 1e-12 relative (the candidate step lands within ~10u).
        let mlp = abs_net();
        for eps_max in [0.7, 4.0, 100.0] {
            let r = certified_radius_regression(
                &mlp,
                &[1.0],
                0.5,
                BallNorm::L2,
                RadiusSearch::new(eps_max),
            )
            .unwrap();
            assert_eq!(r.kind, Kind::Lower);
            assert!(
                r.value <= 0.5 && r.value >= 0.5 * (1.0 - 1e-12),
                "{}",
                r.value
            );
            assert!(is_certified_regression(&mlp, &[1.0], r.value, 0.5, BallNorm::L2).unwrap());
        }
        // ε_max itself certified: returned as is.
        let r =
            certified_radius_regression(&mlp, &[1.0], 0.5, BallNorm::L2, RadiusSearch::new(0.25))
                .unwrap();
        assert_eq!(r.value, 0.25);
    }

    #[test]
    fn golden_generalization_bound() {
        // THEORY §5 T8: ε = 0.5, ε_y = 0, uniform I, every L_i = 1: E|f(x) − y| ≤ 0.5 (tight).
        let mlp = abs_net();
        let cfg = RobustnessConfig::new(0.5, BallNorm::L2, Task::Regression { tau: 0.5 });
        let pts = certify_points(&mlp, &abs_data(), &cfg).unwrap();
        let g = generalization_bound(&pts, 0.0, None, &[1, 2]).unwrap();
        // Outward rounding only: ≥ 0.5 and within 1e-12 relative.
        assert!(g.mean_abs.value >= 0.5 && g.mean_abs.value <= 0.5 * (1.0 + 1e-12));
        assert!(g.mean_half_sq.value >= 0.125 && g.mean_half_sq.value <= 0.125 * (1.0 + 1e-12));
        assert!(g.residual_mean.value <= 1e-14);
        for m in &g.moment_forms {
            // g_i = |f′(x_i)| = 1, ω_i ≈ 0: the moment form is also 0.5 up to rounding.
            assert!(m.g2k.value >= 1.0 && m.g2k.value <= 1.0 + 1e-12);
            assert!(m.omega_mean.value <= 1e-12);
            assert!(m.bound.value >= 0.5 && m.bound.value <= 0.5 * (1.0 + 1e-11));
        }
        assert!(g.assumptions.iter().any(|a| a.contains("D_eps")));
        // Weighted form with all mass on one point is the same here.
        let g = generalization_bound(&pts, 0.1, Some(&[1.0, 0.0, 0.0]), &[]).unwrap();
        assert!(g.mean_abs.value >= 0.6 && g.mean_abs.value <= 0.6 * (1.0 + 1e-12));
        assert!(generalization_bound(&pts, 0.0, Some(&[0.5, 0.0, 0.0]), &[]).is_err());
        assert!(generalization_bound(&pts, 0.0, Some(&[1.0, 0.0, 0.0]), &[1]).is_err());
        let mut map = QuantityMap::new();
        g.insert_into(&mut map);
        pts.summary().insert_into(&mut map);
        assert!(map.contains_key("gen_bound_mean_abs") && map.contains_key("omega_max"));
    }

    fn ball_points_keep_label(
        mlp: &Mlp,
        x0: &[f64],
        label: usize,
        r: f64,
        norm: BallNorm,
        rng: &mut ChaCha8Rng,
    ) {
        for _ in 0..200 {
            let x = sample_ball(rng, x0, r, norm);
            let f = f_at(mlp, &x);
            let pred = class_index(f.as_slice());
            // Certified means f_y − f_c > 0 with a margin ≥ the rounding of the forward pass
            // (the rigorous margin already covers it), so the computed argmax is y.
            assert_eq!(
                pred, label,
                "argmax changed inside a certified ball of radius {r}"
            );
        }
    }

    #[test]
    fn classification_certificate_against_sampling() {
        let mut rng = ChaCha8Rng::seed_from_u64(77);
        let mut certified = 0;
        for trial in 0..48 {
            let act = ALL[trial % ALL.len()];
            let mlp = random_net(&mut rng, act, 2);
            let d = mlp.input_dim();
            let norm = if trial % 2 == 0 {
                BallNorm::L2
            } else {
                BallNorm::LInf
            };
            let x0: Vec<f64> = (0..d).map(|_| normal(&mut rng)).collect();
            let label = class_index(f_at(&mlp, &x0).as_slice());
            let r = certified_radius_classification(&mlp, &x0, label, norm, RadiusSearch::new(3.0))
                .unwrap();
            if r.value > 0.0 {
                certified += 1;
                ball_points_keep_label(&mlp, &x0, label, r.value, norm, &mut rng);
                // Monotonicity: certified at r ⇒ at r/2 (T10 nesting).
                assert!(is_certified_classification(&mlp, &x0, label, r.value, norm).unwrap());
                assert!(
                    is_certified_classification(&mlp, &x0, label, r.value / 2.0, norm).unwrap()
                );
            }
            // A random ε: if certified, sample; a wrong label is never certified.
            let eps = 10f64.powf(rng.random_range(-3.0..0.0));
            if is_certified_classification(&mlp, &x0, label, eps, norm).unwrap() {
                ball_points_keep_label(&mlp, &x0, label, eps, norm, &mut rng);
                assert!(is_certified_classification(&mlp, &x0, label, eps / 2.0, norm).unwrap());
            }
            let wrong = (label + 1) % mlp.output_dim();
            assert!(!is_certified_classification(&mlp, &x0, wrong, eps, norm).unwrap());
        }
        assert!(
            certified >= 20,
            "only {certified} certified points: the test is too weak"
        );
    }

    #[test]
    fn regression_radius_against_sampling() {
        let mut rng = ChaCha8Rng::seed_from_u64(78);
        for trial in 0..36 {
            let act = ALL[trial % ALL.len()];
            let mlp = random_net(&mut rng, act, 1);
            let d = mlp.input_dim();
            let norm = if trial % 2 == 0 {
                BallNorm::L2
            } else {
                BallNorm::LInf
            };
            let x0: Vec<f64> = (0..d).map(|_| normal(&mut rng)).collect();
            let tau = 10f64.powf(rng.random_range(-2.0..0.0));
            let r = certified_radius_regression(&mlp, &x0, tau, norm, RadiusSearch::new(5.0))
                .unwrap()
                .value;
            assert!(r > 0.0);
            assert!(is_certified_regression(&mlp, &x0, r, tau, norm).unwrap());
            assert!(is_certified_regression(&mlp, &x0, r / 2.0, tau, norm).unwrap());
            let f0 = f_at(&mlp, &x0);
            for _ in 0..100 {
                let x = sample_ball(&mut rng, &x0, r, norm);
                // Forward rounding ~1e-15·(1 + ‖f‖): tolerance 1e-12·(1 + ‖f‖).
                let df = (f_at(&mlp, &x) - &f0).norm();
                assert!(
                    df <= tau + 1e-12 * (1.0 + f0.norm()),
                    "{act}: {df} > τ = {tau}"
                );
            }
        }
    }

    fn classification_data(rng: &mut ChaCha8Rng, mlp: &Mlp, n: usize, noisy: bool) -> Dataset {
        let d = mlp.input_dim();
        let c = mlp.output_dim();
        let x: Vec<f64> = (0..n * d).map(|_| normal(rng)).collect();
        let mut y = vec![0.0; n * c];
        for i in 0..n {
            let mut k = class_index(f_at(mlp, &x[i * d..(i + 1) * d]).as_slice());
            if noisy && i % 4 == 0 {
                k = (k + 1) % c;
            }
            y[i * c + k] = 1.0;
        }
        Dataset::new(x, n, d, Some((y, c)), "x", "y").unwrap()
    }

    #[test]
    fn dataset_certificates_and_summary() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mlp = crate::testutil::random_mlp(&[3, 8, 6, 3], Activation::Tanh, 12);
        let ds = classification_data(&mut rng, &mlp, 40, true);
        let mut cfg = RobustnessConfig::new(0.05, BallNorm::L2, Task::Classification);
        cfg.radius = Some(RadiusSearch {
            eps_max: 2.0,
            steps: 20,
        });
        let pts = certify_points(&mlp, &ds, &cfg).unwrap();
        let again = certify_points(&mlp, &ds, &cfg).unwrap();
        assert_eq!(pts, again, "deterministic");
        let s = pts.summary();
        assert_eq!(s.n, 40);
        assert_eq!(
            s.certified_count,
            pts.points.iter().filter(|p| p.certified_at_eps).count()
        );
        for p in &pts.points {
            let m = p.margin.as_ref().unwrap();
            let r = p.certified_radius.as_ref().unwrap().value;
            // Mislabelled points (every 4th) have a negative margin: never certified.
            if p.index % 4 == 0 {
                assert!(m.value < 0.0 && !p.certified_at_eps && r == 0.0);
            }
            // Certified at ε ⇔ the radius search finds at least ε (up to the bisection's
            // resolution, which can only make the radius smaller: check one direction).
            if r >= cfg.eps {
                let ok = is_certified_classification(
                    &mlp,
                    ds.x_row(p.index),
                    p.label.unwrap(),
                    cfg.eps,
                    cfg.norm,
                )
                .unwrap();
                assert!(ok);
            }
            assert!(p.omega.as_ref().unwrap().value >= 0.0);
            assert!(p.jacobian_norm.lower <= p.jacobian_norm.upper);
            assert!(p.jacobian_norm.upper <= p.lipschitz.lip.value * (1.0 + 1e-12));
        }
        assert_eq!(s.margin_nonpositive, Some(10));
        let q = s.radius_quantiles.as_ref().unwrap();
        assert!(q.windows(2).all(|w| w[0].radius.value <= w[1].radius.value));
        assert_eq!(q[0].radius.value, 0.0);
        // T8(e): P(error) ≤ uncertified weight = 1 − certified fraction.
        let g = generalization_bound(&pts, 0.0, None, &[]).unwrap();
        let e = g.classification_error.unwrap().value;
        assert!(e >= 1.0 - s.certified_fraction.value - 1e-12);
        // Errors: classification without targets, or with C = 1.
        let nox = Dataset::new(ds.x().to_vec(), 40, 3, None, "x", "y").unwrap();
        assert!(certify_points(&mlp, &nox, &cfg).is_err());
        let bad = RobustnessConfig::new(-1.0, BallNorm::L2, Task::Classification);
        assert!(certify_points(&mlp, &ds, &bad).is_err());
        let linf = certify_points(
            &mlp,
            &ds,
            &RobustnessConfig::new(0.05, BallNorm::LInf, Task::Classification),
        )
        .unwrap();
        assert!(linf.points[0].omega.is_none());
        assert!(generalization_bound(&linf, 0.0, None, &[]).is_err());
    }

    #[test]
    fn markov_bounds_hold_on_random_data() {
        // T9(d): #{ε L_i > τ}/n ≤ (εG_{2k})^{2k}/(τ − εω_max)^{2k} with the measured G_{2k} and
        // ω_max; the event "εL_i > τ" is exactly "not τ-certified at ε".
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        for (trial, &act) in ALL.iter().enumerate() {
            let mlp = crate::testutil::random_mlp(&[2, 6, 1], act, 40 + trial as u64);
            let n = 60;
            let x: Vec<f64> = (0..2 * n).map(|_| normal(&mut rng)).collect();
            let ds = Dataset::new(x, n, 2, Some((vec![0.0; n], 1)), "x", "y").unwrap();
            let eps = 0.05;
            let pts = certify_points(
                &mlp,
                &ds,
                &RobustnessConfig::new(eps, BallNorm::L2, Task::Regression { tau: 1.0 }),
            )
            .unwrap();
            let s = pts.summary();
            let wmax = s.omega_max.unwrap().value;
            for k in [1, 2, 3] {
                let g = pts.input_jacobian_moment(k).unwrap().value;
                for tau_scale in [1.5, 2.0, 4.0] {
                    let tau = eps * (wmax + tau_scale * g);
                    let frac = pts
                        .points
                        .iter()
                        .filter(|p| eps * p.lipschitz.lip.value > tau)
                        .count() as f64
                        / n as f64;
                    let bound = markov_fraction_bound_regression(eps, g, k, wmax, tau).unwrap();
                    assert!(frac <= bound, "{act} k={k}: {frac} > {bound}");
                }
            }
        }
        // The closed forms and edges (odd k, bounds above 1, vacuous) are tested in
        // `flatcert_bounds::t9`.
    }

    #[test]
    fn g2k_is_an_upper_power_mean() {
        let mlp = crate::testutil::random_mlp(&[3, 5, 2], Activation::Softplus, 2);
        let x = crate::testutil::random_data(3, 25, 6);
        let ds = Dataset::new(x.as_slice().to_vec(), 25, 3, None, "x", "y").unwrap();
        let pts = certify_points(
            &mlp,
            &ds,
            &RobustnessConfig::new(0.1, BallNorm::L2, Task::Regression { tau: 0.1 }),
        )
        .unwrap();
        for k in [1u32, 2, 3, 5] {
            let g = pts.input_jacobian_moment(k).unwrap().value;
            let m: f64 = pts
                .points
                .iter()
                .map(|p| p.jacobian_norm.upper.powi(2 * k as i32))
                .sum::<f64>()
                / 25.0;
            let naive = m.powf(1.0 / (2 * k) as f64);
            assert!(
                g >= naive && g <= naive * (1.0 + 1e-12),
                "k={k}: {g} vs {naive}"
            );
        }
        assert!(pts.input_jacobian_moment(0).is_err());
        for (x, n) in [(2.0, 3u32), (1e-300, 6), (7.5e200, 4), (0.0, 2)] {
            let r = root_up(x, n);
            assert!(pow_down(r, n) >= x);
        }
    }

    fn naive_nearest(train: &Dataset, a: &[f64]) -> (f64, usize) {
        (0..train.len())
            .map(|j| (direct_d2(a, train.x_row(j)).sqrt(), j))
            .fold((f64::INFINITY, 0), |b, t| if t.0 < b.0 { t } else { b })
    }

    /// A held-out point at a computed distance of exactly ε may truly be on either side: the
    /// exact coverage fraction carries it in its tol (issue 12 item 7), a far point does not.
    #[test]
    fn coverage_tol_covers_points_on_the_boundary() {
        let train = Dataset::new(vec![0.0], 1, 1, None, "x", "y").unwrap();
        let test = Dataset::new(vec![0.3, 5.0], 2, 1, None, "x", "y").unwrap();
        let q = coverage(&train, &test, 0.3).unwrap().fraction_within_eps;
        assert_eq!(q.kind, crate::quantity::Kind::Exact);
        assert_eq!(q.value, 0.5);
        assert!(q.tol >= 0.5 && q.tol < 0.5 + 1e-15, "{q:?}");
        let q = coverage(&train, &test, 1.0).unwrap().fraction_within_eps;
        assert!(q.tol < 1e-15, "{q:?}");
    }

    #[test]
    fn coverage_matches_brute_force() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let (d, n, nt, c) = (5, 1300, 150, 3);
        // Large common offset: ‖a‖² ≫ ‖a − b‖², where the GEMM formula cancels badly and only
        // the direct recheck gives the right winner and distance.
        let offset = 1e4;
        let mk = |rng: &mut ChaCha8Rng, m: usize| {
            let x: Vec<f64> = (0..m * d).map(|_| offset + normal(rng)).collect();
            let y: Vec<f64> = (0..m)
                .flat_map(|i| (0..c).map(move |k| if k == i % c { 1.0 } else { 0.0 }))
                .collect();
            Dataset::new(x, m, d, Some((y, c)), "x", "y").unwrap()
        };
        let train = mk(&mut rng, n);
        let mut test = mk(&mut rng, nt);
        // Make some test points exact duplicates of training points (distance 0).
        let mut xt = test.x().to_vec();
        xt[..d].copy_from_slice(train.x_row(7));
        test = Dataset::new(xt, nt, d, test.y().map(|y| (y.to_vec(), c)), "x", "y").unwrap();
        let eps = 1.5;
        let cov = coverage(&train, &test, eps).unwrap();
        assert_eq!(cov.nearest_distances[0], 0.0);
        let mut within = 0;
        let mut within_label = 0;
        for i in 0..nt {
            let (dist, j) = naive_nearest(&train, test.x_row(i));
            assert_eq!(cov.nearest_distances[i], dist, "test point {i}");
            assert_eq!(
                direct_d2(test.x_row(i), train.x_row(cov.nearest_index[i])).sqrt(),
                dist
            );
            let _ = j;
            within += usize::from(dist <= eps);
            let cls = class_index(test.y_row(i).unwrap());
            let dl = (0..n)
                .filter(|&j| class_index(train.y_row(j).unwrap()) == cls)
                .map(|j| direct_d2(test.x_row(i), train.x_row(j)).sqrt())
                .fold(f64::INFINITY, f64::min);
            assert_eq!(cov.nearest_label_distances.as_ref().unwrap()[i], dl);
            within_label += usize::from(dl <= eps);
        }
        assert_eq!(cov.fraction_within_eps.value, within as f64 / nt as f64);
        assert_eq!(
            cov.fraction_within_eps_same_label.as_ref().unwrap().value,
            within_label as f64 / nt as f64
        );
        // Regression-style label condition and argument checks.
        let cov2 = coverage_with(
            &train,
            &test,
            eps,
            Some(LabelCondition::TargetWithin { eps_y: 0.0 }),
        )
        .unwrap();
        assert!(
            cov2.fraction_within_eps_same_label.unwrap().value <= cov.fraction_within_eps.value
        );
        let other = Dataset::new(vec![0.0; 4], 1, 4, None, "x", "y").unwrap();
        assert!(coverage(&train, &other, eps).is_err());
        assert!(coverage(&train, &test, -1.0).is_err());
    }
}
