//! Lanczos with full reorthogonalization and Hutchinson trace estimation on symmetric operators
//! given only through products (THEORY.md §3 item 5, T3, T4), plus the curvature quantities of the
//! operator path built on them: `gauss_newton_lambda_max`, `hessian_lambda_max`,
//! `hessian_lambda_min`, `hessian_trace`, `hessian_gn_trace_difference`.
//!
//! **What is rigorous.** Only the Rayleigh quotient of the final Ritz vector, recomputed with one
//! product, bounds λ_max from below (and, for the smallest end, λ_min from above), up to the product's
//! rounding, for which an a-priori allowance `γ_k‖v‖·max(‖Av‖, max_j|θ_j|‖v‖)` is subtracted (listed as *assumed*,
//! THEORY.md §3 item 5). Everything else (the error estimate, Hutchinson traces) is an estimate.
//!
//! **Error estimate (`tol` of the estimate quantity).** With ρ the recomputed Rayleigh quotient and
//! `r = ‖Av − ρv‖` the recomputed residual of the unit Ritz vector v:
//! - always valid: some eigenvalue lies in `[ρ − r, ρ + r]`;
//! - Kato–Temple: if `λ_2 < ρ`, then `ρ ≤ λ_max ≤ ρ + r²/(ρ − λ_2)`.
//!
//! λ_2 is unknown; we use `θ_2 + r_2` (the second Ritz value plus its residual) as its estimate and
//! report `min(r, r²/(ρ − θ_2 − r_2)) + allowance` (just `r + allowance` when that gap is not
//! positive). By interlacing θ_2 ≤ λ_2, so the gap estimate can be too large only when λ_2 exceeds
//! θ_2 by more than the residual r_2, i.e. while θ_2 is still far from converged; the added r_2 makes
//! the estimate conservative once the second Ritz pair has begun to converge, which it has long done
//! by the time the top pair meets a 1e-6..1e-8 tolerance. The tests compare the estimate with the
//! true error on dense problems (clustered, graded and random spectra) and never see it below.

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

use super::QuantityMap;
use super::hvp::{CurvatureOp, dot, norm_sq};
use super::names;
use crate::error::{Error, Result};
use crate::linalg::sym_eigen;
use crate::quantity::{Quantity, gamma, round_down, round_up};
use nalgebra::DMatrix;

/// Which end of the spectrum Lanczos converges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The largest algebraic eigenvalue λ_max.
    Largest,
    /// The smallest algebraic eigenvalue λ_min.
    Smallest,
}

/// Options of [`lanczos`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LanczosOptions {
    /// Which extreme eigenvalue to converge.
    pub target: Target,
    /// Stop when the relative error estimate is at most this (default 1e-8); 0: never stop on
    /// the error estimate (the stopping hook of [`lanczos_with`] and `max_iter` decide).
    pub tol: f64,
    /// Cap on Lanczos steps (products); default 300.
    pub max_iter: usize,
    /// Seed of the ChaCha8 start vector (default 0).
    pub seed: u64,
    /// Start from b = g/‖g‖, g ~ N(0, I) (required by the randomized upper bound of THEORY §3
    /// item 8), instead of the default uniform [−1, 1] start.
    pub gaussian_start: bool,
    /// Length of the longest rounding chain inside one product (see
    /// [`CurvatureOp::rounding_depth`]); the a-priori allowance of the Rayleigh quotient is
    /// `γ_{depth + dim}‖v‖·max(‖Av‖, max_j|θ_j|‖v‖)`.
    pub rounding_depth: usize,
}

impl Default for LanczosOptions {
    fn default() -> Self {
        Self {
            target: Target::Largest,
            tol: 1e-8,
            max_iter: 300,
            seed: 0,
            gaussian_start: false,
            rounding_depth: 0,
        }
    }
}

/// Outcome of a Lanczos run (values refer to the operator itself, not its negation).
#[derive(Debug, Clone)]
pub struct LanczosResult {
    /// Ritz values of the final tridiagonal matrix, decreasing.
    pub ritz_values: Vec<f64>,
    /// Their Lanczos residual norms `β_j|s_{j,i}|`, same order.
    pub ritz_residuals: Vec<f64>,
    /// Number of operator products, including the final recomputation.
    pub products: usize,
    /// Whether the error estimate met the tolerance (or an invariant subspace was found).
    pub converged: bool,
    /// The final unit Ritz vector of the target eigenvalue.
    pub vector: Vec<f64>,
    /// Its Rayleigh quotient ρ = vᵀAv/vᵀv, recomputed with one product.
    pub rayleigh: f64,
    /// `‖Av − ρv‖`, recomputed.
    pub residual_norm: f64,
    /// Gap estimate `|ρ − (θ_2 ± r_2)|` used by Kato–Temple (`None` with one Ritz value).
    pub gap_estimate: Option<f64>,
    /// Error estimate of ρ against the target eigenvalue (module docs), allowance included.
    pub error_estimate: f64,
    /// A-priori rounding allowance of ρ, `γ_k‖v‖·max(‖Av‖, max_j|θ_j|‖v‖)` (assumed).
    pub allowance: f64,
    /// The k off-diagonals β_1 … β_k of the final tridiagonal T_k (β_k = ‖r_k‖, the last
    /// residual norm), of the operator in the sign Lanczos ran on.
    pub betas: Vec<f64>,
}

/// What the stopping hook of [`lanczos_with`] sees after each step.
#[derive(Debug, Clone, Copy)]
pub struct LanczosStep<'a> {
    /// Ritz values of T_k, decreasing, in the sign Lanczos runs on.
    pub ritz_values: &'a [f64],
    /// β_1 … β_k (β_k = ‖r_k‖).
    pub betas: &'a [f64],
    /// Products so far.
    pub products: usize,
}

impl LanczosResult {
    /// The rigorous side (THEORY.md §3 item 5): `ρ − allowance ≤ λ_max` for [`Target::Largest`],
    /// `ρ + allowance ≥ λ_min` for [`Target::Smallest`].
    pub fn bound(&self, target: Target) -> f64 {
        match target {
            Target::Largest => round_down(self.rayleigh - self.allowance),
            Target::Smallest => round_up(self.rayleigh + self.allowance),
        }
    }
}

/// Kato–Temple error estimate for the top eigenvalue (module docs): `min(r, r²/gap)` when the gap
/// estimate is positive, else `r`.
fn kato_temple(residual: f64, gap: Option<f64>) -> f64 {
    match gap {
        Some(g) if g > 0.0 => residual.min(residual * residual / g),
        _ => residual,
    }
}

fn axpy(y: &mut [f64], a: f64, x: &[f64]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

/// Classical Gram–Schmidt against all basis vectors, twice ("twice is enough").
fn reorthogonalize(w: &mut [f64], basis: &[Vec<f64>]) {
    for _ in 0..2 {
        let coeffs: Vec<f64> = basis.iter().map(|q| dot(q, w)).collect();
        for (q, c) in basis.iter().zip(coeffs) {
            axpy(w, -c, q);
        }
    }
}

/// The unit start vector from the seeded ChaCha8 stream: uniform on [−1, 1]^dim, or b = g/‖g‖
/// with g ~ N(0, I) (`gaussian`), as the randomized upper bound of THEORY §3 item 8 requires
/// (its failure probability is over g).
fn start_vector(dim: usize, seed: u64, gaussian: bool) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut v: Vec<f64> = if gaussian {
        (0..dim).map(|_| StandardNormal.sample(&mut rng)).collect()
    } else {
        (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect()
    };
    let nv = norm_sq(&v).sqrt();
    v.iter_mut().for_each(|x| *x /= nv);
    v
}

fn apply<F>(op: &mut F, v: &[f64], sign: f64) -> Result<Vec<f64>>
where
    F: FnMut(&[f64]) -> Result<Vec<f64>>,
{
    let mut w = op(v)?;
    if w.len() != v.len() {
        return Err(Error::Internal(format!(
            "operator returned {} entries for a vector of {}",
            w.len(),
            v.len()
        )));
    }
    if w.iter().any(|x| !x.is_finite()) {
        return Err(Error::Numerical("operator product is not finite".into()));
    }
    if sign < 0.0 {
        w.iter_mut().for_each(|x| *x = -*x);
    }
    Ok(w)
}

/// Eigen-decomposition of the Lanczos tridiagonal `T` (decreasing).
fn tridiagonal_eigen(alpha: &[f64], beta: &[f64]) -> Result<crate::linalg::SymEigen> {
    let k = alpha.len();
    let t = DMatrix::from_fn(k, k, |i, j| {
        if i == j {
            alpha[i]
        } else if i == j + 1 {
            beta[j]
        } else if j == i + 1 {
            beta[i]
        } else {
            0.0
        }
    });
    sym_eigen(&t)
}

/// Lanczos with full reorthogonalization for the largest (or smallest) algebraic eigenvalue of a
/// symmetric operator on `ℝ^dim` given by its products (THEORY.md §3 item 5, T4). Starts from a
/// seeded ChaCha8 vector, stops when the error estimate (module docs) is at most
/// `tol·|θ|`, at `max_iter` steps, or on an invariant subspace; then recomputes the Rayleigh
/// quotient and residual of the Ritz vector with one more product.
pub fn lanczos<F>(dim: usize, opts: &LanczosOptions, op: F) -> Result<LanczosResult>
where
    F: FnMut(&[f64]) -> Result<Vec<f64>>,
{
    lanczos_with(dim, opts, op, |_| false)
}

/// [`lanczos`] with a stopping hook: after every step, `stop` sees the Ritz values and the
/// off-diagonals of T_k and may end the run early (e.g. once the randomized upper bound of
/// THEORY §3 item 8 decides a verdict). The run also ends as [`lanczos`] does.
pub fn lanczos_with<F, S>(
    dim: usize,
    opts: &LanczosOptions,
    mut op: F,
    mut stop: S,
) -> Result<LanczosResult>
where
    F: FnMut(&[f64]) -> Result<Vec<f64>>,
    S: FnMut(&LanczosStep<'_>) -> bool,
{
    if dim == 0 {
        return Err(Error::invalid_argument("dim", "Lanczos on an empty space"));
    }
    if opts.tol.is_nan() || opts.tol < 0.0 || opts.max_iter == 0 {
        return Err(Error::invalid_argument(
            "tol/max_iter",
            "need tol >= 0 and at least one iteration",
        ));
    }
    let sign = match opts.target {
        Target::Largest => 1.0,
        Target::Smallest => -1.0,
    };
    let mut basis: Vec<Vec<f64>> = vec![start_vector(dim, opts.seed, opts.gaussian_start)];
    let (mut alpha, mut beta): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
    let mut products = 0;
    let mut converged = false;
    let steps = opts.max_iter.min(dim);
    let mut eig;
    let mut last_beta;
    loop {
        let j = alpha.len();
        let mut w = apply(&mut op, &basis[j], sign)?;
        products += 1;
        let a = dot(&basis[j], &w);
        axpy(&mut w, -a, &basis[j]);
        if j > 0 {
            axpy(&mut w, -beta[j - 1], &basis[j - 1]);
        }
        reorthogonalize(&mut w, &basis);
        alpha.push(a);
        last_beta = norm_sq(&w).sqrt();
        eig = tridiagonal_eigen(&alpha, &beta)?;
        let k = alpha.len();
        let res0 = last_beta * eig.vectors[(k - 1, 0)].abs();
        let gap = (k > 1).then(|| {
            let res1 = last_beta * eig.vectors[(k - 1, 1)].abs();
            eig.values[0] - eig.values[1] - res1
        });
        let scale = eig.values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let err = kato_temple(res0, gap);
        let breakdown = last_beta <= 1e-13 * scale.max(f64::MIN_POSITIVE);
        // Below the products' rounding floor no further step helps.
        let floor = gamma(opts.rounding_depth + dim) * scale;
        let converged_estimate = opts.tol > 0.0 && err <= opts.tol * eig.values[0].abs() + floor;
        if converged_estimate || breakdown || k == dim {
            converged = true;
            break;
        }
        if k >= steps {
            break;
        }
        let mut betas = beta.clone();
        betas.push(last_beta);
        let step = LanczosStep {
            ritz_values: eig.values.as_slice(),
            betas: &betas,
            products,
        };
        if stop(&step) {
            break;
        }
        beta.push(last_beta);
        w.iter_mut().for_each(|x| *x /= last_beta);
        basis.push(w);
    }
    beta.push(last_beta);
    finish(
        &mut op, opts, sign, &basis, &eig, &beta, products, converged,
    )
}

/// Ritz vector, recomputed Rayleigh quotient and residual, error estimate (module docs).
#[allow(clippy::too_many_arguments)]
fn finish<F>(
    op: &mut F,
    opts: &LanczosOptions,
    sign: f64,
    basis: &[Vec<f64>],
    eig: &crate::linalg::SymEigen,
    betas: &[f64],
    products: usize,
    converged: bool,
) -> Result<LanczosResult>
where
    F: FnMut(&[f64]) -> Result<Vec<f64>>,
{
    let dim = basis[0].len();
    let k = eig.values.len();
    let last_beta = betas[k - 1];
    let mut v = vec![0.0; dim];
    for (i, q) in basis.iter().take(k).enumerate() {
        axpy(&mut v, eig.vectors[(i, 0)], q);
    }
    let nv = norm_sq(&v).sqrt();
    v.iter_mut().for_each(|x| *x /= nv);
    let av = apply(op, &v, sign)?;
    let vv = norm_sq(&v);
    let rho = dot(&v, &av) / vv;
    let residual_norm = av
        .iter()
        .zip(&v)
        .map(|(a, x)| (a - rho * x).powi(2))
        .sum::<f64>()
        .sqrt();
    let ritz_residuals: Vec<f64> = (0..k)
        .map(|i| last_beta * eig.vectors[(k - 1, i)].abs())
        .collect();
    let gap_estimate = (k > 1).then(|| rho - eig.values[1] - ritz_residuals[1]);
    // A-priori: the product's rounding is relative to the operator's scale, not to ‖Av‖ (which is
    // tiny for an eigenvalue near 0); max |θ_j| (≈ ‖A‖₂ once the extremes have converged) stands for
    // that scale.
    let scale = eig.values.iter().fold(0.0f64, |m, t| m.max(t.abs()));
    let allowance = round_up(
        gamma(opts.rounding_depth + dim) * vv.sqrt() * (norm_sq(&av).sqrt().max(scale * vv.sqrt())),
    );
    let error_estimate = round_up(kato_temple(residual_norm, gap_estimate) + allowance);
    // Report in the operator's own sign: values decreasing.
    let mut ritz: Vec<(f64, f64)> = eig
        .values
        .iter()
        .zip(&ritz_residuals)
        .map(|(t, r)| (sign * t, *r))
        .collect();
    if sign < 0.0 {
        ritz.reverse();
    }
    Ok(LanczosResult {
        ritz_values: ritz.iter().map(|p| p.0).collect(),
        ritz_residuals: ritz.iter().map(|p| p.1).collect(),
        products: products + 1,
        converged,
        vector: v,
        rayleigh: sign * rho,
        residual_norm,
        gap_estimate,
        error_estimate,
        allowance,
        betas: betas.to_vec(),
    })
}

/// A Hutchinson trace estimate with its standard error.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TraceEstimate {
    /// Mean of `zᵀAz` over the probes.
    pub mean: f64,
    /// Standard error `s/√m` of the mean (sample standard deviation s over m probes).
    pub std_err: f64,
    /// Number of probes m.
    pub probes: usize,
    /// Seed of the ChaCha8 Rademacher stream.
    pub seed: u64,
}

/// Hutchinson's estimator `tr A ≈ (1/m) Σ_k z_kᵀAz_k` with seeded Rademacher probes z_k
/// (THEORY.md T3 failure modes). Needs at least two probes for a standard error.
pub fn hutchinson<F>(dim: usize, probes: usize, seed: u64, mut op: F) -> Result<TraceEstimate>
where
    F: FnMut(&[f64]) -> Result<Vec<f64>>,
{
    if probes < 2 || dim == 0 {
        return Err(Error::invalid_argument(
            "--probes",
            "Hutchinson needs at least 2 probes on a nonempty space",
        ));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut samples = Vec::with_capacity(probes);
    for _ in 0..probes {
        let z: Vec<f64> = (0..dim)
            .map(|_| if rng.random::<bool>() { 1.0 } else { -1.0 })
            .collect();
        let az = apply(&mut op, &z, 1.0)?;
        samples.push(dot(&z, &az));
    }
    let m = probes as f64;
    let mean = samples.iter().sum::<f64>() / m;
    let var = samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (m - 1.0);
    Ok(TraceEstimate {
        mean,
        std_err: (var / m).sqrt(),
        probes,
        seed,
    })
}

/// A Lanczos extreme eigenvalue as two quantities: the estimate (value ρ, tol = the error
/// estimate of the module docs) and the rigorous side (lower for λ_max, upper for λ_min).
#[derive(Debug, Clone)]
pub struct SpectralEstimate {
    /// The Lanczos run.
    pub lanczos: LanczosResult,
    /// ρ with kind estimate; `tol` = error estimate (≥ the true error in every test).
    pub estimate: Quantity,
    /// `ρ ∓ allowance`, kind lower (λ_max) or upper (λ_min); the allowance is an a-priori
    /// product-rounding estimate (assumed).
    pub bound: Quantity,
}

impl SpectralEstimate {
    fn new(lanczos: LanczosResult, target: Target, method: &str, operator: &str) -> Self {
        let bound_value = lanczos.bound(target);
        let converged = if lanczos.converged {
            ""
        } else {
            " NOT converged to the requested tolerance;"
        };
        let estimate = Quantity::estimate(lanczos.rayleigh, lanczos.error_estimate)
            .with_method(method)
            .with_note(format!(
                "Lanczos on {operator}, {} products;{converged} tol is the Kato–Temple error \
                 estimate min(r, r²/gap) with gap from the second Ritz pair (an estimate)",
                lanczos.products
            ));
        let note = format!(
            "Rayleigh quotient of the final Ritz vector, recomputed, {} the a-priori product \
             rounding allowance (assumed)",
            if target == Target::Largest {
                "minus"
            } else {
                "plus"
            }
        );
        let bound = match target {
            Target::Largest => Quantity::lower(bound_value, lanczos.allowance),
            Target::Smallest => Quantity::upper(bound_value, lanczos.allowance),
        }
        .with_method(method)
        .with_note(note);
        Self {
            lanczos,
            estimate,
            bound,
        }
    }

    /// Insert as `name` (estimate) and `name_suffix` (the rigorous side).
    pub fn insert_into(&self, map: &mut QuantityMap, name: &str, bound_suffix: &str) {
        map.insert(name.to_string(), self.estimate.clone());
        map.insert(format!("{name}_{bound_suffix}"), self.bound.clone());
    }
}

/// `gauss_newton_lambda_max` on the operator path (THEORY.md T4, §4): Lanczos on the Gram operator
/// K = (1/n)𝐉𝐉ᵀ (dimension nC) or on G (dimension P), whichever is smaller; both have the same
/// nonzero spectrum. Returns the estimate (`gauss_newton_lambda_max`, tol = error estimate) and
/// the rigorous lower bound (`gauss_newton_lambda_max_lower`).
pub fn gauss_newton_lambda_max<O: CurvatureOp + ?Sized>(
    op: &O,
    opts: &LanczosOptions,
) -> Result<SpectralEstimate> {
    let opts = LanczosOptions {
        target: Target::Largest,
        rounding_depth: op.rounding_depth(),
        ..*opts
    };
    let res = if op.gram_dim() <= op.num_params() {
        lanczos(op.gram_dim(), &opts, |w| op.gram_product(w))?
    } else {
        lanczos(op.num_params(), &opts, |v| op.gn_product_flat(v))?
    };
    let space = if op.gram_dim() <= op.num_params() {
        "K = (1/n)JJᵀ"
    } else {
        "G"
    };
    Ok(SpectralEstimate::new(
        res,
        Target::Largest,
        "lanczos-gauss-newton",
        space,
    ))
}

/// Options of the randomized upper bound of λ_max(G) (THEORY §3 item 8).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UpperBoundOptions {
    /// Failure probability δ ∈ (0, 1) over the Gaussian start (default 1e-9).
    pub delta: f64,
    /// Cap on operator products, the final Rayleigh-quotient product included (default 300).
    pub max_products: usize,
    /// Seed of the ChaCha8 Gaussian start (reported).
    pub seed: u64,
    /// Stop once the upper bound is within this relative distance of the top Ritz value
    /// (default 1e-4): more products would only sharpen an already decided number.
    pub rel_gap: f64,
}

impl Default for UpperBoundOptions {
    fn default() -> Self {
        Self {
            delta: DEFAULT_DELTA,
            max_products: DEFAULT_MAX_PRODUCTS,
            seed: 0,
            rel_gap: 1e-4,
        }
    }
}

/// Default failure probability δ of the randomized upper bound (`--delta`).
pub const DEFAULT_DELTA: f64 = 1e-9;

/// Default product budget of the randomized upper bound (`--max-products`).
pub const DEFAULT_MAX_PRODUCTS: usize = 300;

impl UpperBoundOptions {
    /// Validate δ ∈ (0, 1) and a budget of at least 2 products (one step and the recomputation).
    /// The errors name the CLI flags `--delta` and `--max-products` (exit 2).
    pub fn validate(&self) -> Result<()> {
        if flatcert_bounds::randomized::validate_delta(self.delta).is_err() {
            return Err(Error::invalid_argument(
                "--delta",
                format!(
                    "the failure probability δ must lie strictly between 0 and 1, got {}",
                    self.delta
                ),
            ));
        }
        if self.max_products < 2 {
            return Err(Error::invalid_argument(
                "--max-products",
                format!(
                    "must be at least 2 (one Lanczos step and the Rayleigh quotient), got {}",
                    self.max_products
                ),
            ));
        }
        if self.rel_gap.is_nan() || self.rel_gap < 0.0 {
            return Err(Error::invalid_argument("rel_gap", "must be >= 0"));
        }
        Ok(())
    }
}

/// λ_max(G) at scale (THEORY §3 items 5 and 8): the Lanczos estimate, its rigorous lower bound
/// and an upper bound valid with probability ≥ 1 − δ over the seeded Gaussian start.
#[derive(Debug, Clone)]
pub struct RandomizedSpectrum {
    /// Estimate (`gauss_newton_lambda_max`) and rigorous lower bound (`…_lower`).
    pub spectral: SpectralEstimate,
    /// The §3 item 8 evaluation on the final T_k.
    pub bound: flatcert_bounds::randomized::RandomizedUpper,
    /// `gauss_newton_lambda_max_upper`: kind upper, with the confidence 1 − δ.
    pub upper: Quantity,
    /// Whether `decides` holds on the final bracket (rigorous lower bound, randomized upper
    /// bound); false: the budget ran out (or the bound converged) with the gap still open.
    pub decided: bool,
}

impl RandomizedSpectrum {
    /// Insert `gauss_newton_lambda_max` (estimate), `…_lower` and `…_upper` (only when finite:
    /// with too few products for the dimension both bounds of §3 item 8 can be vacuous).
    pub fn insert_into(&self, map: &mut QuantityMap) {
        self.spectral
            .insert_into(map, names::GAUSS_NEWTON_LAMBDA_MAX, "lower");
        if self.upper.value.is_finite() {
            map.insert(
                names::GAUSS_NEWTON_LAMBDA_MAX_UPPER.into(),
                self.upper.clone(),
            );
        }
    }
}

/// λ_max(G) with the randomized upper bound of THEORY §3 item 8: Lanczos with full
/// reorthogonalization from a seeded Gaussian start on K = (1/n)JJᵀ or on G (the smaller
/// dimension N; same nonzero spectrum). After every step the upper bound (min of the a priori and
/// a posteriori bounds, each at δ/2, plus allowances) is evaluated; the run stops when
/// `decides(lower_proxy, upper)` (the top Ritz value and the current bound: a rule of the bounds
/// crate such as [`flatcert_bounds::t5::sharpness_decides`]), when the bound is within
/// `rel_gap` of the top Ritz value, on an invariant subspace, or at `max_products`.
pub fn gauss_newton_lambda_max_randomized<O: CurvatureOp + ?Sized>(
    op: &O,
    opts: &UpperBoundOptions,
    mut decides: impl FnMut(f64, f64) -> bool,
) -> Result<RandomizedSpectrum> {
    opts.validate()?;
    let on_gram = op.gram_dim() <= op.num_params();
    let dim = if on_gram {
        op.gram_dim()
    } else {
        op.num_params()
    };
    let depth = op.rounding_depth();
    let lopts = LanczosOptions {
        target: Target::Largest,
        // The stopping hook decides: a converged top Ritz value does not end the run, since the
        // a posteriori bound keeps tightening while the other Ritz values converge.
        tol: 0.0,
        max_iter: opts.max_products - 1,
        seed: opts.seed,
        gaussian_start: true,
        rounding_depth: depth,
    };
    let delta = opts.delta;
    let hook = |st: &LanczosStep<'_>| -> bool {
        let top = st.ritz_values[0];
        let scale = st.ritz_values.iter().fold(0.0f64, |m, t| m.max(t.abs()));
        let allowance = gamma(depth + dim) * scale;
        let Ok(b) = flatcert_bounds::randomized::upper_bound(
            st.ritz_values,
            st.betas,
            dim,
            delta,
            allowance,
        ) else {
            return false;
        };
        decides(top, b.upper) || b.upper - top <= opts.rel_gap * top.abs()
    };
    let res = if on_gram {
        lanczos_with(dim, &lopts, |w| op.gram_product(w), hook)?
    } else {
        lanczos_with(dim, &lopts, |v| op.gn_product_flat(v), hook)?
    };
    let space = if on_gram { "K = (1/n)JJᵀ" } else { "G" };
    let scale = res.ritz_values.iter().fold(0.0f64, |m, t| m.max(t.abs()));
    let allowance = res.allowance.max(gamma(depth + dim) * scale);
    let bound = flatcert_bounds::randomized::upper_bound(
        &res.ritz_values,
        &res.betas,
        dim,
        delta,
        allowance,
    )
    .map_err(|e| Error::Internal(format!("randomized upper bound of λ_max(G): {e}")))?;
    let spectral = SpectralEstimate::new(res, Target::Largest, "lanczos-gauss-newton", space);
    let decided = decides(spectral.bound.value, bound.upper);
    let res = &spectral.lanczos;
    let upper = Quantity::upper(bound.upper, bound.allowance)
        .with_method("lanczos-randomized-upper (THEORY §3 item 8)")
        .with_note(format!(
            "λ_max(G) ≤ {:.6e} with probability ≥ 1 − {delta:e} over the Gaussian start (seed {}); \
             Lanczos on {space} (N = {dim}), {} products; min of the a priori (KW) bound {:.6e} and \
             the a posteriori bound {:.6e}, each at δ/2, plus the assumed allowance {:.3e} \
             (10·k·u·θ_k and the products' rounding)",
            bound.upper,
            opts.seed,
            res.products,
            bound.a_priori,
            bound.a_posteriori,
            bound.allowance
        ))
        .with_delta(
            delta,
            flatcert_bounds::Confidence::event_id("lanczos-gauss-newton-randomized", opts.seed),
        );
    Ok(RandomizedSpectrum {
        spectral,
        bound,
        upper,
        decided,
    })
}

/// `hessian_lambda_max` or `hessian_lambda_min` (THEORY.md T4 failure modes): Lanczos on exact
/// Hessian products (R-operator). For λ_min the rigorous side is an **upper** bound: it certifies
/// `λ_min(H) < 0` only when negative. Needs targets.
pub fn hessian_extreme<O: CurvatureOp + ?Sized>(
    op: &O,
    target: Target,
    opts: &LanczosOptions,
) -> Result<SpectralEstimate> {
    let opts = LanczosOptions {
        target,
        rounding_depth: op.rounding_depth(),
        ..*opts
    };
    let res = lanczos(op.num_params(), &opts, |v| op.hessian_product_flat(v))?;
    Ok(SpectralEstimate::new(
        res,
        target,
        "lanczos-hessian-rop",
        "H",
    ))
}

/// The residual-honesty trace quantities (THEORY.md T3 failure modes):
/// - `hessian_gn_trace_difference` = |tr H − tr G|: **exactly 0** for piecewise-linear σ (ReLU,
///   leaky ReLU, identity; THEORY T3), else a Hutchinson estimate on `(H − G)v` (seeded
///   Rademacher probes, tol = standard error);
/// - `hessian_trace` = tr G (exact, [`CurvatureOp::gauss_newton_trace`]) + that difference
///   (signed), kind exact for piecewise-linear σ, estimate otherwise.
///
/// Needs targets.
pub fn hessian_trace<O: CurvatureOp + ?Sized>(
    op: &O,
    probes: usize,
    seed: u64,
) -> Result<QuantityMap> {
    let tr_g = op.gauss_newton_trace();
    let mut map = QuantityMap::new();
    if op.is_piecewise_linear() {
        op.require_targets()?;
        map.insert(
            names::HESSIAN_GN_TRACE_DIFFERENCE.into(),
            Quantity::exact(0.0, 0.0)
                .with_method("theory-T3")
                .with_note("exactly 0 for piecewise-linear activations (THEORY T3)"),
        );
        map.insert(
            names::HESSIAN_TRACE.into(),
            Quantity::exact(tr_g.value, tr_g.tol)
                .with_method("gauss-newton-trace")
                .with_note("tr H = tr G for piecewise-linear activations (THEORY T3)"),
        );
        return Ok(map);
    }
    let est = hutchinson(op.num_params(), probes, seed, |v| {
        op.hessian_minus_gn_flat(v)
    })?;
    let note = format!(
        "Hutchinson, {} Rademacher probes, seed {}",
        est.probes, est.seed
    );
    map.insert(
        names::HESSIAN_GN_TRACE_DIFFERENCE.into(),
        Quantity::estimate(est.mean.abs(), est.std_err)
            .with_method("hutchinson-(H-G)")
            .with_note(note.clone()),
    );
    map.insert(
        names::HESSIAN_TRACE.into(),
        Quantity::estimate(tr_g.value + est.mean, est.std_err + tr_g.tol)
            .with_method("trace-G-plus-hutchinson-(H-G)")
            .with_note(note),
    );
    Ok(map)
}

/// `hessian_gn_difference_norm`: `max(|θ_min|, |θ_max|)` of Lanczos on `H − G` (THEORY.md §3 item 5):
/// a lower bound of ‖H − G‖₂ in exact arithmetic, hence only an **estimate** of it (a certified
/// use of the T5 residual bound needs an upper bound, which this is not). Needs targets.
pub fn hessian_gn_difference_norm<O: CurvatureOp + ?Sized>(
    op: &O,
    opts: &LanczosOptions,
) -> Result<Quantity> {
    let diff = |v: &[f64]| op.hessian_minus_gn_flat(v);
    // (|ρ|, its Lanczos error estimate against the end eigenvalue, allowance included): the tol
    // of an estimate is its error bar (issue 12 item 7: it was 0).
    let mut best = (0.0f64, 0.0f64);
    let mut products = 0;
    for target in [Target::Largest, Target::Smallest] {
        let o = LanczosOptions { target, ..*opts };
        let res = lanczos(op.num_params(), &o, diff)?;
        if res.rayleigh.abs() >= best.0 {
            best = (res.rayleigh.abs(), res.error_estimate);
        }
        products += res.products;
    }
    Ok(Quantity::estimate(best.0, best.1)
        .with_method("lanczos-(H-G)")
        .with_note(format!(
            "max |Rayleigh quotient| of H − G over both ends, {products} products: a lower \
             bound of ‖H − G‖₂ in exact arithmetic, an estimate only (THEORY §3 item 5); tol = \
             the Lanczos error estimate of that end (not a rigorous bound)"
        )))
}

#[cfg(test)]
mod tests {
    use nalgebra::{DMatrix, DVector};

    use super::*;
    use crate::measure::hvp::testkit::{dataset, jacobian};
    use crate::measure::hvp::{CurvatureOperator, OperatorOptions};
    use crate::model::Activation;
    use crate::testutil::{random_data, random_mlp};

    /// `Q diag(λ) Qᵀ` with a seeded random orthogonal Q.
    fn with_spectrum(lams: &[f64], seed: u64) -> DMatrix<f64> {
        let n = lams.len();
        let q = random_data(n, n, seed).qr().q();
        &q * DMatrix::from_diagonal(&DVector::from_column_slice(lams)) * q.transpose()
    }

    fn dense_op(a: &DMatrix<f64>) -> impl FnMut(&[f64]) -> Result<Vec<f64>> + '_ {
        move |v| Ok((a * DVector::from_column_slice(v)).as_slice().to_vec())
    }

    /// THEORY §3 item 8 on dense PSD matrices with known λ_max = 1 (the spectra of
    /// check_theory.py's `checks_scale`: a 1e-3 gap, a cluster of three within 2e-6, 1/j decay;
    /// N = 300), 40 fixed seeds per (k, δ): the randomized upper bound falls below λ_max no more
    /// often than δ allows, and is tight once converged.
    #[test]
    fn randomized_upper_bound_is_never_below_lambda_max() {
        let n = 300;
        let gap: Vec<f64> = (0..n)
            .map(|j| match j {
                0 => 1.0,
                1 => 0.999,
                _ => 0.9 * (j - 2) as f64 / (n - 3) as f64,
            })
            .collect();
        let cluster: Vec<f64> = (0..n)
            .map(|j| match j {
                0 => 1.0,
                1 => 1.0 - 1e-6,
                2 => 1.0 - 2e-6,
                _ => 0.99 * (j - 3) as f64 / (n - 4) as f64,
            })
            .collect();
        let decay: Vec<f64> = (0..n).map(|j| 1.0 / (j + 1) as f64).collect();
        for (name, spec) in [("gap", gap), ("cluster", cluster), ("decay", decay)] {
            let a = with_spectrum(&spec, 11);
            let mut worst_tight = 0.0f64;
            for (steps, delta) in [(20usize, 0.1), (60, 1e-3), (120, 1e-9)] {
                let mut failures = 0;
                for seed in 0..40u64 {
                    let opts = LanczosOptions {
                        tol: 0.0,
                        max_iter: steps,
                        seed,
                        gaussian_start: true,
                        ..LanczosOptions::default()
                    };
                    let r = lanczos_with(n, &opts, dense_op(&a), |_| false).unwrap();
                    assert_eq!(r.betas.len(), r.ritz_values.len());
                    let b = flatcert_bounds::randomized::upper_bound(
                        &r.ritz_values,
                        &r.betas,
                        n,
                        delta,
                        r.allowance,
                    )
                    .unwrap();
                    if b.upper < 1.0 {
                        failures += 1;
                    }
                    if steps == 120 {
                        worst_tight = worst_tight.max(b.upper - 1.0);
                    }
                }
                // The bound may fail with probability δ per start: at δ = 0.1, the oracle's rule
                // (check_theory.py) "failures ≤ δ·T + 3"; at δ ≤ 1e-3 none (a failure among 40
                // fixed seeds has probability ≤ 4 %, and these seeds are fixed: none occurs).
                let allowed = if delta >= 0.1 {
                    (delta * 40.0) as usize + 3
                } else {
                    0
                };
                assert!(
                    failures <= allowed,
                    "{name}, k = {steps}, δ = {delta}: {failures} of 40 bounds below λ_max = 1"
                );
            }
            // Tight once converged (check_theory.py: ≤ 2e-3 for the cluster, ≤ 1e-9 gapped at
            // k = 60–120; the 1/j spectrum converges as fast).
            assert!(
                worst_tight < 5e-3,
                "{name}: worst upper − 1 = {worst_tight:e}"
            );
        }
    }

    /// The randomized run on the Gauss–Newton operator of a small net: the upper bound is ≥ the
    /// exact λ_max(G) from the dense Jacobian, carries δ and its event, and a `decides` rule that
    /// always holds stops the run after one step.
    #[test]
    fn gauss_newton_randomized_bounds_the_dense_lambda_max() {
        // P = 542 > nC = 200: Lanczos runs on K (N = 200), where e^{−0.1534·N} ≪ δ/2, so the a
        // posteriori bound is available (for N ≲ 100 only the looser a priori one is).
        let mlp = random_mlp(&[3, 20, 20, 2], Activation::Tanh, 4);
        let x = random_data(3, 100, 5);
        let data = dataset(&x, None);
        let op = CurvatureOperator::new(&mlp, &data, OperatorOptions::default()).unwrap();
        let j = jacobian(&mlp, &x);
        let g = j.transpose() * &j / 100.0;
        let exact = crate::linalg::sym_eigen(&g).unwrap().values[0];
        let opts = UpperBoundOptions {
            delta: 1e-6,
            ..UpperBoundOptions::default()
        };
        let r = gauss_newton_lambda_max_randomized(&op, &opts, |_, _| false).unwrap();
        assert!(r.upper.value >= exact, "{} < {exact}", r.upper.value);
        assert!(r.spectral.bound.value <= exact * (1.0 + 1e-12));
        assert!((r.upper.value - exact) / exact < 1e-3);
        let c = r.upper.confidence.unwrap();
        assert_eq!(c.delta, 1e-6);
        assert!(c.event.is_some());
        let quick = gauss_newton_lambda_max_randomized(&op, &opts, |_, _| true).unwrap();
        assert_eq!(quick.spectral.lanczos.products, 2);
        assert!(quick.decided);
        assert!(quick.upper.value >= exact);
        for bad in [0.0, 1.0, f64::NAN] {
            let o = UpperBoundOptions { delta: bad, ..opts };
            assert!(gauss_newton_lambda_max_randomized(&op, &o, |_, _| false).is_err());
        }
        let o = UpperBoundOptions {
            max_products: 1,
            ..opts
        };
        assert!(gauss_newton_lambda_max_randomized(&op, &o, |_, _| false).is_err());
    }

    fn spectra() -> Vec<Vec<f64>> {
        let n = 120;
        vec![
            // Clustered top: relative gap 1e-3.
            (0..n)
                .map(|j| {
                    if j == 0 {
                        1.0
                    } else {
                        0.999 - 0.5 * j as f64 / n as f64
                    }
                })
                .collect(),
            // Graded, like a network's GN spectrum.
            (0..n).map(|j| 0.85f64.powi(j)).collect(),
            // Near-degenerate top pair (gap 1e-9) and negative part.
            (0..n)
                .map(|j| match j {
                    0 => 2.0,
                    1 => 2.0 - 1e-9,
                    _ => 1.5 - 3.0 * j as f64 / n as f64,
                })
                .collect(),
            // Indefinite, symmetric about 0.
            (0..n).map(|j| (j as f64 - 59.5) / 10.0).collect(),
        ]
    }

    #[test]
    fn lanczos_matches_dense_eigenvalues_and_never_underestimates_its_error() {
        for (s, lams) in spectra().into_iter().enumerate() {
            let a = with_spectrum(&lams, 7 + s as u64);
            let truth = sym_eigen(&a).unwrap();
            for (target, exact) in [
                (Target::Largest, truth.values[0]),
                (Target::Smallest, *truth.values.last().unwrap()),
            ] {
                for tol in [1e-6, 1e-10] {
                    let opts = LanczosOptions {
                        target,
                        tol,
                        ..LanczosOptions::default()
                    };
                    let r = lanczos(a.nrows(), &opts, dense_op(&a)).unwrap();
                    let err = (r.rayleigh - exact).abs();
                    assert!(r.converged, "spectrum {s} {target:?}");
                    assert!(
                        err <= r.error_estimate,
                        "spectrum {s} {target:?} tol {tol}: true error {err:e} > estimate {:e}",
                        r.error_estimate
                    );
                    // Converged to the tolerance, or to the rounding floor for eigenvalues near 0.
                    assert!(
                        r.error_estimate <= tol * exact.abs() * 1.5 + 3.0 * r.allowance,
                        "spectrum {s}: estimate {:e}",
                        r.error_estimate
                    );
                    match target {
                        Target::Largest => assert!(r.bound(target) <= exact),
                        Target::Smallest => assert!(r.bound(target) >= exact),
                    }
                }
            }
        }
    }

    #[test]
    fn gauss_newton_lambda_max_matches_dense_on_tiny_networks() {
        // K-space (nC ≤ P) and P-space (nC > P) paths against the dense eigendecomposition of
        // K = 𝐉𝐉ᵀ/n; tolerance 1e-10 relative, the estimate must cover the true error.
        for (s, act) in [Activation::Relu, Activation::Tanh, Activation::Softplus]
            .iter()
            .enumerate()
        {
            for (widths, n) in [(vec![3, 4, 2], 3), (vec![2, 2, 1], 20)] {
                let mlp = random_mlp(&widths, *act, 300 + s as u64);
                let x = random_data(widths[0], n, 310 + s as u64);
                let ds = dataset(&x, None);
                let op = CurvatureOperator::new(
                    &mlp,
                    &ds,
                    OperatorOptions {
                        block: 4,
                        ..Default::default()
                    },
                )
                .unwrap();
                let jac = jacobian(&mlp, &x);
                let k = &jac * jac.transpose() / n as f64;
                let exact = sym_eigen(&k).unwrap().values[0];
                let opts = LanczosOptions {
                    tol: 1e-10,
                    ..LanczosOptions::default()
                };
                let est = gauss_newton_lambda_max(&op, &opts).unwrap();
                let err = (est.estimate.value - exact).abs();
                assert!(
                    err <= est.estimate.tol,
                    "{act}: {err:e} > {:e}",
                    est.estimate.tol
                );
                assert!(err <= 1e-9 * exact);
                assert!(est.bound.value <= exact && est.bound.kind == crate::quantity::Kind::Lower);
            }
        }
    }

    #[test]
    fn hutchinson_is_within_a_few_standard_errors() {
        let a = with_spectrum(
            &(0..40).map(|j| (j as f64).sin() + 0.3).collect::<Vec<_>>(),
            3,
        );
        let t = hutchinson(40, 400, 11, dense_op(&a)).unwrap();
        assert!(
            (t.mean - a.trace()).abs() < 4.0 * t.std_err,
            "{t:?} vs {}",
            a.trace()
        );
        // Seeded: the same seed gives the same bits.
        assert_eq!(t, hutchinson(40, 400, 11, dense_op(&a)).unwrap());
    }

    #[test]
    fn hessian_quantities_on_tiny_networks() {
        for (s, act) in [Activation::Relu, Activation::Tanh].iter().enumerate() {
            let mlp = random_mlp(&[2, 3, 2], *act, 400 + s as u64);
            let x = random_data(2, 6, 410 + s as u64);
            let y = random_data(2, 6, 420 + s as u64);
            let ds = dataset(&x, Some(&y));
            let op = CurvatureOperator::new(&mlp, &ds, OperatorOptions::default()).unwrap();
            let p = mlp.num_params();
            let mut h = DMatrix::zeros(p, p);
            for q in 0..p {
                let mut e = vec![0.0; p];
                e[q] = 1.0;
                h.column_mut(q)
                    .copy_from_slice(&op.hessian_product_flat(&e).unwrap());
            }
            let eig = sym_eigen(&h).unwrap();
            let opts = LanczosOptions::default();
            let top = hessian_extreme(&op, Target::Largest, &opts).unwrap();
            let bottom = hessian_extreme(&op, Target::Smallest, &opts).unwrap();
            assert!((top.estimate.value - eig.values[0]).abs() <= top.estimate.tol);
            assert!((bottom.estimate.value - eig.values[p - 1]).abs() <= bottom.estimate.tol);
            assert!(top.bound.value <= eig.values[0] && bottom.bound.value >= eig.values[p - 1]);
            let g = DMatrix::from_fn(p, p, |_, _| 0.0);
            let _ = g;
            let tr = hessian_trace(&op, 200, 5).unwrap();
            let diff = tr["hessian_gn_trace_difference"].clone();
            let tr_g = op.gauss_newton_trace().value;
            if act.is_piecewise_linear() {
                assert_eq!(diff.value, 0.0);
                assert!((h.trace() - tr_g).abs() < 1e-12 * tr_g);
            } else {
                let true_diff = (h.trace() - tr_g).abs();
                assert!(
                    (diff.value - true_diff).abs() < 5.0 * diff.tol + 1e-12,
                    "{diff:?} vs {true_diff}"
                );
                assert!(
                    (tr["hessian_trace"].value - h.trace()).abs()
                        < 5.0 * tr["hessian_trace"].tol + 1e-12
                );
            }
            let dn =
                hessian_gn_difference_norm(&op, &LanczosOptions { tol: 1e-10, ..opts }).unwrap();
            assert!(dn.value > 0.0);
            // Its tol is an error bar (issue 12 item 7), and it covers the dense ‖H − G‖₂.
            let mut g = DMatrix::zeros(p, p);
            for q in 0..p {
                let mut e = vec![0.0; p];
                e[q] = 1.0;
                g.column_mut(q)
                    .copy_from_slice(&op.gn_product_flat(&e).unwrap());
            }
            let d = sym_eigen(&(&h - &g)).unwrap();
            let true_norm = d.values[0].abs().max(d.values[p - 1].abs());
            assert!(dn.tol > 0.0 && dn.tol.is_finite(), "{dn:?}");
            assert!(
                (dn.value - true_norm).abs() <= 5.0 * dn.tol + 1e-12 * true_norm.max(1.0),
                "{dn:?} vs {true_norm}"
            );
        }
    }

    /// W2-like timing (issue 3): 784-512-512-10 ReLU, He init, n = 2048 Gaussian inputs,
    /// targets = outputs. Run with
    /// `cargo test --release --lib measure::lanczos::tests::w2_timing -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn w2_timing() {
        use rand::SeedableRng;
        use rand::rngs::ChaCha8Rng;
        use rand_distr::{Distribution, StandardNormal};
        let widths = [784usize, 512, 512, 10];
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let layers = widths
            .windows(2)
            .map(|w| {
                let sd = (2.0 / w[0] as f64).sqrt();
                let g: f64 = 0.0;
                let _ = g;
                crate::model::Dense {
                    weight: DMatrix::from_fn(w[1], w[0], |_, _| {
                        sd * <StandardNormal as Distribution<f64>>::sample(
                            &StandardNormal,
                            &mut rng,
                        )
                    }),
                    bias: DVector::from_fn(w[1], |_, _| {
                        0.01 * <StandardNormal as Distribution<f64>>::sample(
                            &StandardNormal,
                            &mut rng,
                        )
                    }),
                }
            })
            .collect();
        let mlp = crate::model::Mlp::new(layers, Activation::Relu).unwrap();
        let n = 2048;
        let x = DMatrix::from_fn(784, n, |_, _| {
            <StandardNormal as Distribution<f64>>::sample(&StandardNormal, &mut rng)
        });
        let y = mlp.forward(x.as_view());
        let ds = dataset(&x, Some(&y));
        let t0 = std::time::Instant::now();
        let op = CurvatureOperator::new(&mlp, &ds, OperatorOptions::default()).unwrap();
        let t1 = t0.elapsed().as_secs_f64();
        let est = gauss_newton_lambda_max(
            &op,
            &LanczosOptions {
                tol: 1e-6,
                ..Default::default()
            },
        )
        .unwrap();
        let t2 = t0.elapsed().as_secs_f64();
        println!(
            "setup {t1:.2}s, lanczos(tol 1e-6) total {t2:.2}s, products {}, value {}, est tol {:e} (rel {:e})",
            est.lanczos.products,
            est.estimate.value,
            est.estimate.tol,
            est.estimate.tol / est.estimate.value
        );
        let t3 = std::time::Instant::now();
        let reference = gauss_newton_lambda_max(
            &op,
            &LanczosOptions {
                tol: 1e-13,
                max_iter: 400,
                ..Default::default()
            },
        )
        .unwrap();
        println!(
            "reference {} ({} products, {:.2}s, est {:e}); true rel error of the 1e-6 run {:e}",
            reference.estimate.value,
            reference.lanczos.products,
            t3.elapsed().as_secs_f64(),
            reference.estimate.tol,
            (reference.estimate.value - est.estimate.value).abs() / reference.estimate.value
        );
    }

    /// The peer's own W2 files (`jax_peer.py make --sizes 784,512,512,10 --n 2048 --out /tmp/w2`;
    /// directory from `FLATCERT_W2`, default `/tmp/w2`; skipped when absent). Run with
    /// `cargo test --release --lib measure::lanczos::tests::w2_peer_workload -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn w2_peer_workload() {
        let dir = std::env::var("FLATCERT_W2").unwrap_or_else(|_| "/tmp/w2".into());
        let Ok(model) = std::fs::read(format!("{dir}/model.safetensors")) else {
            println!("no workload in {dir}; skipped");
            return;
        };
        let st = safetensors::SafeTensors::deserialize(&model).unwrap();
        let f32s = |name: &str| -> Vec<f64> {
            let t = st.tensor(name).unwrap();
            t.data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64)
                .collect()
        };
        let mut layers = Vec::new();
        for i in 0..3 {
            let w = f32s(&format!("{}.weight", 2 * i));
            let b = f32s(&format!("{}.bias", 2 * i));
            let rows = b.len();
            layers.push(crate::model::Dense {
                weight: DMatrix::from_row_slice(rows, w.len() / rows, &w),
                bias: DVector::from_vec(b),
            });
        }
        let mlp = crate::model::Mlp::new(layers, Activation::Relu).unwrap();
        let npy = |name: &str| -> Vec<f64> {
            let bytes = std::fs::read(format!("{dir}/{name}")).unwrap();
            let f = npyz::NpyFile::new(&bytes[..]).unwrap();
            f.into_vec::<f32>()
                .unwrap()
                .into_iter()
                .map(f64::from)
                .collect()
        };
        let x = npy("x.npy");
        let y = npy("y.npy");
        let n = x.len() / 784;
        let ds = crate::data::Dataset::new(x, n, 784, Some((y, 10)), "x.npy", "y.npy").unwrap();
        let t0 = std::time::Instant::now();
        let op = CurvatureOperator::new(&mlp, &ds, OperatorOptions::default()).unwrap();
        for tol in [1e-6, 1e-8] {
            let est = gauss_newton_lambda_max(
                &op,
                &LanczosOptions {
                    tol,
                    ..Default::default()
                },
            )
            .unwrap();
            println!(
                "tol {tol:e}: {:.2}s since start, {} products, value {:.9}, est rel {:e}, true rel vs 428.890436 {:e}",
                t0.elapsed().as_secs_f64(),
                est.lanczos.products,
                est.estimate.value,
                est.estimate.tol / est.estimate.value,
                (est.estimate.value - 428.890436).abs() / 428.890436
            );
        }
    }
}
