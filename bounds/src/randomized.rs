//! λ_max of a PSD operator at scale: an upper bound with a stated confidence (THEORY §3 item 8).
//!
//! From products alone no deterministic upper bound of λ_max exists (Kuczyński–Woźniakowski 1992).
//! With a Gaussian random start b = g/‖g‖, k Lanczos steps with full reorthogonalization give a
//! tridiagonal T_k with Ritz values θ_1 ≤ … ≤ θ_k and off-diagonals β_1 … β_k (β_k the norm of the
//! last residual). Two bounds hold, each with probability ≥ 1 − δ′ over the start:
//!
//! - **(a) a priori** (KW 1992): λ_max ≤ θ_k/(1 − ε), √ε := ln(1.648·√N/δ′)/(2k − 1), when ε < 1;
//! - **(b) a posteriori**: λ_max ≤ μ_c, the root μ ≥ θ_k of Σ_j ln(μ − θ_j) = Σ_j ln β_j − ln c,
//!   with c := (δ′ − e^{−0.1534·N})·√π/(2√N) (when c > 0).
//!
//! **Union bound (an erratum to THEORY rev. 2).** THEORY reports min((a), (b)) with each bound at
//! δ. The minimum fails whenever *either* bound fails, so its failure probability is at most the
//! sum: 2δ. [`upper_bound`] therefore evaluates each at δ′ = δ/2, so that the reported minimum holds
//! with probability ≥ 1 − δ, the confidence it states.
//!
//! Added to the minimum, both listed as *assumed* (a-priori rounding estimates): the allowance on
//! the Ritz values 10·k·u·θ_k of §3 item 8 (the a posteriori bound was never seen to fall short by
//! more than 2.1e-15 relative), and the product's own a-priori rounding (§3 item 5), which the
//! caller passes in. The evaluation of the log sums is outward-safe: the root is bracketed so that
//! the log-sum at the returned μ exceeds the target by more than the sum's own rounding error.

use serde::{Deserialize, Serialize};

use crate::error::{BoundsError, Result};
use crate::round::{UNIT_ROUNDOFF, add_up, div_up, gamma, mul_up, sub_down};

/// The KW constant of the a priori bound: P[θ_k < (1 − ε)λ_max] ≤ 1.648·√N·e^{−√ε(2k−1)}.
pub const KW_CONSTANT: f64 = 1.648;

/// The χ² Chernoff exponent: P(‖g‖² > 2N) ≤ e^{−0.1534·N} ((1 − ln 2)/2 = 0.15343…, rounded down).
pub const CHI2_EXPONENT: f64 = 0.1534;

/// The allowance factor on the Ritz values: 10·k·u·θ_k (THEORY §3 item 8).
pub const RITZ_ALLOWANCE_FACTOR: f64 = 10.0;

/// One evaluation of the §3 item 8 bound after k Lanczos steps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RandomizedUpper {
    /// The failure probability δ of the reported bound (over the Gaussian start).
    pub delta: f64,
    /// Lanczos steps k.
    pub steps: usize,
    /// Dimension N of the space the operator acts on.
    pub dim: usize,
    /// θ_k, the largest Ritz value.
    pub top_ritz: f64,
    /// (a) at δ/2, without allowances (+∞ while ε ≥ 1).
    pub a_priori: f64,
    /// (b) at δ/2, without allowances (+∞ while c ≤ 0).
    pub a_posteriori: f64,
    /// 10·k·u·θ_k + the products' rounding allowance (assumed).
    pub allowance: f64,
    /// min((a), (b)) + allowance, rounded up: λ_max ≤ `upper` with probability ≥ 1 − δ.
    pub upper: f64,
}

/// Validate δ ∈ (0, 1).
pub fn validate_delta(delta: f64) -> Result<f64> {
    if delta.is_nan() || delta <= 0.0 || delta >= 1.0 {
        return Err(BoundsError::Precondition {
            what: "δ (failure probability)",
            reason: "must lie strictly between 0 and 1",
        });
    }
    Ok(delta)
}

/// (a): θ_k/(1 − ε_δ′) with √ε_δ′ = ln(1.648√N/δ′)/(2k − 1), rounded up; +∞ when ε ≥ 1.
///
/// The logarithm rests on the libm hypothesis (relative error ≤ 2u); a 4u allowance covers it.
pub fn a_priori(top_ritz: f64, steps: usize, dim: usize, delta_part: f64) -> f64 {
    if steps == 0 || dim == 0 || !top_ritz.is_finite() {
        return f64::INFINITY;
    }
    let arg = div_up(
        mul_up(KW_CONSTANT, (dim as f64).sqrt().next_up()),
        delta_part,
    );
    let ln = arg.ln();
    let ln = ln + (4.0 * UNIT_ROUNDOFF * ln.abs()).next_up();
    let sqrt_eps = div_up(ln.max(0.0), (2 * steps - 1) as f64);
    let eps = mul_up(sqrt_eps, sqrt_eps);
    if eps >= 1.0 {
        return f64::INFINITY;
    }
    div_up(top_ritz.max(0.0), sub_down(1.0, eps))
}

/// c_δ′ = (δ′ − e^{−0.1534·N})·√π/(2√N), rounded down (a smaller c only weakens the bound); ≤ 0
/// when N is too small for δ′.
pub fn gamma_threshold(dim: usize, delta_part: f64) -> f64 {
    let n = dim as f64;
    let tail = (-CHI2_EXPONENT * n).exp();
    let tail = tail + 4.0 * UNIT_ROUNDOFF * tail; // libm exp, rounded up
    let num = sub_down(delta_part, tail);
    if num <= 0.0 {
        return 0.0;
    }
    let sqrt_pi = std::f64::consts::PI.sqrt().next_down();
    let den = mul_up(2.0, n.sqrt().next_up());
    let c = num * sqrt_pi / den;
    c * (1.0 - 4.0 * UNIT_ROUNDOFF)
}

/// (b): the root μ ≥ θ_k of Σ_j ln(μ − θ_j) = Σ_j ln β_j − ln c, returned from above. `ritz` are
/// the k Ritz values (any order), `betas` the k off-diagonals β_1 … β_k (β_k the last residual
/// norm). A β_j = 0 (an invariant subspace) gives μ = θ_k. +∞ when c ≤ 0 or an input is not finite.
pub fn a_posteriori(ritz: &[f64], betas: &[f64], c: f64) -> f64 {
    let k = ritz.len();
    if k == 0 || betas.len() != k || c <= 0.0 {
        return f64::INFINITY;
    }
    if ritz.iter().chain(betas).any(|x| !x.is_finite()) {
        return f64::INFINITY;
    }
    let top = ritz.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if betas.iter().any(|&b| b <= 0.0) {
        return top;
    }
    let sum_ln = |xs: &mut dyn Iterator<Item = f64>| -> (f64, f64) {
        // (sum, absolute error bound): each ln within 2u relative (libm) + the sum's γ_k.
        let (mut s, mut a) = (0.0f64, 0.0f64);
        for x in xs {
            let l = x.ln();
            s += l;
            a += l.abs();
        }
        (s, mul_up(gamma(2 * k + 4), a))
    };
    let (ln_beta, err_beta) = sum_ln(&mut betas.iter().copied());
    let target = ln_beta - c.ln();
    let err_target = err_beta + 4.0 * UNIT_ROUNDOFF * c.ln().abs();
    // f(μ) ≥ 0 certifies μ ≥ root once f is evaluated with its error bound included.
    let certified_above = |mu: f64| -> bool {
        if mu <= top {
            return false;
        }
        let mut it = ritz.iter().map(|t| sub_down(mu, *t));
        let (s, e) = sum_ln(&mut it);
        s - target > e + err_target
    };
    let scale = top.abs().max(f64::MIN_POSITIVE);
    let mut hi = add_up(top, scale);
    let mut guard = 0;
    while !certified_above(hi) {
        hi = add_up(hi, hi - top);
        guard += 1;
        if guard > 2100 || !hi.is_finite() {
            return f64::INFINITY;
        }
    }
    let mut lo = top;
    for _ in 0..200 {
        let mid = lo + 0.5 * (hi - lo);
        if mid <= lo || mid >= hi {
            break;
        }
        if certified_above(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

/// The §3 item 8 upper bound of λ_max with failure probability δ over the Gaussian start: min of
/// (a) and (b), each at δ/2 (module docs), plus 10·k·u·θ_k and `product_allowance` (the products'
/// a-priori rounding, §3 item 5), rounded up.
///
/// `ritz` are the Ritz values of T_k, `betas` its k off-diagonals β_1 … β_k (β_k = ‖r_k‖), `dim`
/// the dimension N of the space.
///
/// ```
/// use flatcert_bounds::randomized::upper_bound;
/// // A converged run: Ritz values 1 and 3 with a tiny last residual.
/// let b = upper_bound(&[1.0, 3.0], &[0.5, 1e-15], 1000, 1e-9, 0.0).unwrap();
/// assert!(b.upper >= 3.0 && b.upper < 3.0 + 1e-3);
/// ```
pub fn upper_bound(
    ritz: &[f64],
    betas: &[f64],
    dim: usize,
    delta: f64,
    product_allowance: f64,
) -> Result<RandomizedUpper> {
    let delta = validate_delta(delta)?;
    if ritz.is_empty() {
        return Err(BoundsError::Empty("Ritz values"));
    }
    if betas.len() != ritz.len() {
        return Err(BoundsError::LengthMismatch {
            what: "Lanczos off-diagonals β_1 … β_k",
            expected: ritz.len(),
            got: betas.len(),
        });
    }
    if product_allowance.is_nan() || product_allowance < 0.0 {
        return Err(BoundsError::Negative {
            what: "product rounding allowance",
            value: product_allowance,
        });
    }
    let k = ritz.len();
    let top = ritz.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let part = delta / 2.0;
    let a = a_priori(top, k, dim, part);
    // k ≥ N: the Krylov space is the whole space (full reorthogonalization), T_k is similar to A
    // and θ_k = λ_max up to rounding, whatever the start: the allowance below covers it. This is
    // what decides tiny operators, where c_δ ≤ 0 and the a priori bound is vacuous.
    let b = if k >= dim {
        top
    } else {
        a_posteriori(ritz, betas, gamma_threshold(dim, part))
    };
    let allowance = add_up(
        mul_up(RITZ_ALLOWANCE_FACTOR * k as f64 * UNIT_ROUNDOFF, top.abs()),
        product_allowance,
    );
    Ok(RandomizedUpper {
        delta,
        steps: k,
        dim,
        top_ritz: top,
        a_priori: a,
        a_posteriori: b,
        allowance,
        upper: add_up(a.min(b), allowance),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_priori_matches_theory_numbers() {
        // THEORY §3 item 8: N = 1e6, δ = 1e-9, k = 100 gives ε = 2.0 %; k = 300 gives 0.22 %.
        for (k, eps) in [(100usize, 0.020), (300, 0.0022)] {
            let b = a_priori(1.0, k, 1_000_000, 1e-9);
            let got = 1.0 - 1.0 / b;
            assert!((got - eps).abs() < 0.05 * eps, "k = {k}: ε = {got}");
        }
        assert!(a_priori(1.0, 2, 1_000_000, 1e-9).is_infinite());
    }

    #[test]
    fn a_posteriori_is_the_root_from_above() {
        // One Ritz value θ = 2, β = 1e-3, c = 1e-2: root μ = 2 + β/c = 2.1.
        let mu = a_posteriori(&[2.0], &[1e-3], 1e-2);
        assert!((2.1..2.1 * (1.0 + 1e-12)).contains(&mu), "{mu}");
        // Invariant subspace: μ = θ_k.
        assert_eq!(a_posteriori(&[1.0, 2.0], &[0.3, 0.0], 1e-2), 2.0);
        assert!(a_posteriori(&[1.0], &[0.1], 0.0).is_infinite());
    }

    #[test]
    fn small_dimension_has_no_a_posteriori_bound() {
        // e^{−0.1534·N} ≥ δ′ for N = 10, δ′ = 1e-9: c ≤ 0.
        assert_eq!(gamma_threshold(10, 1e-9), 0.0);
        assert!(gamma_threshold(10_000, 1e-9) > 0.0);
    }

    #[test]
    fn full_dimension_is_exact_up_to_the_allowance() {
        let b = upper_bound(&[1.0, 4.0, 2.0], &[0.5, 0.5, 1e-17], 3, 1e-9, 0.0).unwrap();
        assert_eq!(b.a_posteriori, 4.0);
        assert!(b.upper >= 4.0 && b.upper < 4.0 * (1.0 + 1e-13));
    }

    #[test]
    fn bad_inputs() {
        assert!(upper_bound(&[1.0], &[0.1], 100, 0.0, 0.0).is_err());
        assert!(upper_bound(&[1.0], &[0.1], 100, 1.0, 0.0).is_err());
        assert!(upper_bound(&[1.0], &[0.1], 100, f64::NAN, 0.0).is_err());
        assert!(upper_bound(&[], &[], 100, 1e-3, 0.0).is_err());
        assert!(upper_bound(&[1.0], &[0.1, 0.2], 100, 1e-3, 0.0).is_err());
        assert!(upper_bound(&[1.0], &[0.1], 100, 1e-3, -1.0).is_err());
    }
}
