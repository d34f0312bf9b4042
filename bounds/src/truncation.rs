//! T5(f) on a truncated spectrum: the **proven** truncation allowance and the rules that order a
//! search over candidate ranks (THEORY T5(f) "Truncation allowance", §3 item 7).
//!
//! 𝒟̃_r, built on the top r eigenpairs of K, is the compression of the untruncated 𝒟̃ to Sym(r),
//! so λ_max(𝒟̃_r) ≤ λ_max(𝒟̃): lower sides and unstable verdicts survive truncation. Conversely
//!
//! `λ_max(𝒟̃) ≤ λ_max(𝒟̃_r) + (1−p)·λ_d + 4p·ω`, `ω = max_i ‖Y_{i,d}‖₂²`
//!
//! (λ_d the largest discarded eigenvalue of K): [`truncation_allowance`], added to the upper side.
//!
//! The search rules rest on one a-priori bound, λ_1/2 ≤ λ_max(𝒟̃_r) for every r ≥ 1 (Σ = e_1e_1ᵀ
//! and Jensen, [`dtilde_lower_apriori`]): a rank whose allowance keeps η(λ_1/2 + allowance) above
//! 1 cannot certify stability ([`can_certify_stable`]). They choose which brackets to compute,
//! never a verdict: each verdict is [`crate::t5::ms_status`] of the bracket computed.

use crate::kind::Scalar;
use crate::t5::MsStatus;

/// (1−p)·λ_d + 4p·ω: the T5(f) truncation allowance at a rank whose largest discarded eigenvalue
/// of K is λ_d (≥ 0) and whose ω = max_i ‖Y_{i,d}‖₂² (an upper bound of it gives an upper bound).
/// On `f64` the number (the caller rounds it up); on [`crate::Value`] its rigorous sides.
pub fn truncation_allowance<N: Scalar>(p: N, lambda_d: N, omega: N) -> N {
    (N::constant(1.0) - p) * lambda_d + N::constant(4.0) * p * omega
}

/// λ_1/2, λ_1 = λ_max(K): an a-priori lower bound of λ_max(𝒟̃_r) for every kept rank r ≥ 1 (and
/// so of λ_max(𝒟̃)), the scale against which an allowance is small (T5(f)).
pub fn dtilde_lower_apriori<N: Scalar>(lambda_1: N) -> N {
    lambda_1 / N::constant(2.0)
}

/// Whether a rank with this truncation allowance can still certify stability at η (T5(f)
/// decision η·upper ≤ 1 with upper ≥ λ_1/2 + allowance). A search rule on computed numbers, not a
/// verdict: a `false` only skips a bracket that could not certify.
pub fn can_certify_stable(eta: f64, lambda_1: f64, allowance: f64) -> bool {
    eta * (dtilde_lower_apriori(lambda_1) + allowance) <= 1.0
}

/// The index of the rank for one bracket of relative width `rel_tol`: the first candidate (ranks
/// increasing, allowances decreasing) whose allowance is at most `rel_tol`·λ_1/2, else the last
/// (the cap).
pub fn bracket_rank(allowances: &[f64], rel_tol: f64, lambda_1: f64) -> usize {
    let target = rel_tol * dtilde_lower_apriori(lambda_1);
    allowances
        .iter()
        .position(|&a| a <= target)
        .unwrap_or(allowances.len().saturating_sub(1))
}

/// How to search the candidate ranks for a verdict at η ([`decide_order`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecideSearch {
    /// The learning rate (theory convention) the verdict is for.
    pub eta: f64,
    /// λ_1 = λ_max(K).
    pub lambda_1: f64,
    /// Start no earlier than the first rank whose allowance is at most this fraction of λ_1/2
    /// (so that the certified margin is informative, not merely positive)…
    pub target_fraction: f64,
    /// …unless that rank is above the first candidate ≥ this rank.
    pub start_rank: usize,
}

/// The order in which candidate ranks (increasing, with decreasing `allowances`) are tried to
/// decide the T5(f) verdict at η: the smallest rank first (a cheap refutation: the lower side
/// needs no allowance), then, in increasing order, the ranks from the first that can certify
/// stability ([`can_certify_stable`]; the allowance decreases with r, so those are a suffix) and
/// is on target ([`DecideSearch`]) up to the cap. Indices into `ranks`.
pub fn decide_order(ranks: &[usize], allowances: &[f64], s: &DecideSearch) -> Vec<usize> {
    let last = ranks.len().saturating_sub(1);
    let first_useful = (1..ranks.len())
        .find(|&k| can_certify_stable(s.eta, s.lambda_1, allowances[k]))
        .unwrap_or(last);
    let on_target = allowances
        .iter()
        .position(|&a| a <= s.target_fraction * dtilde_lower_apriori(s.lambda_1))
        .unwrap_or(last);
    let start_cap = ranks
        .iter()
        .position(|&r| r >= s.start_rank)
        .unwrap_or(last);
    let start = first_useful.max(on_target.min(start_cap)).max(1);
    let mut order = vec![0];
    order.extend(start..ranks.len());
    order
}

/// Whether the search of [`decide_order`] stops at a bracket with this verdict: at the smallest
/// of several ranks only a refutation (certified unstable survives truncation; a stable verdict
/// there is trusted only with the allowance of a larger rank in view), elsewhere any decided
/// verdict.
pub fn decide_stops(status: MsStatus, smallest_of_several: bool) -> bool {
    if smallest_of_several {
        status == MsStatus::CertifiedUnstable
    } else {
        status != MsStatus::Inconclusive
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Value;

    #[test]
    fn allowance_is_the_t5f_formula() {
        // p = 1/4, λ_d = 2, ω = 3: (3/4)·2 + 4·(1/4)·3 = 1.5 + 3 = 4.5 (exact in binary64).
        assert_eq!(truncation_allowance(0.25, 2.0, 3.0), 4.5);
        // p = 0 (full batch): only the discarded eigenvalue; p = 1: only 4ω.
        assert_eq!(truncation_allowance(0.0, 2.0, 3.0), 2.0);
        assert_eq!(truncation_allowance(1.0, 2.0, 3.0), 12.0);
        // On Values the sides enclose the real number of the given floats, and the f64 formula.
        let (p, ld, om) = (0.1, 1.0 / 3.0, 0.7);
        let v = truncation_allowance(
            Value::exact(p, 0.0),
            Value::exact(ld, 0.0),
            Value::exact(om, 0.0),
        );
        let real = truncation_allowance(p, ld, om);
        assert!(v.lower() < v.upper());
        assert!(v.lower() <= real && real <= v.upper(), "{v:?}");
    }

    #[test]
    fn a_priori_lower_bound_and_the_certify_test() {
        assert_eq!(dtilde_lower_apriori(3.0), 1.5);
        // η(λ_1/2 + a) ≤ 1: at η = 0.5, λ_1 = 2: a ≤ 1 can certify, a > 1 cannot.
        assert!(can_certify_stable(0.5, 2.0, 1.0));
        assert!(!can_certify_stable(0.5, 2.0, 1.0 + 1e-12));
    }

    #[test]
    fn bracket_rank_is_the_first_on_target_else_the_cap() {
        let allow = [1.0, 0.1, 0.01];
        // λ_1 = 2: target rel_tol·1.
        assert_eq!(bracket_rank(&allow, 0.5, 2.0), 1);
        assert_eq!(bracket_rank(&allow, 0.01, 2.0), 2);
        assert_eq!(bracket_rank(&allow, 1e-6, 2.0), 2);
        assert_eq!(bracket_rank(&allow, 2.0, 2.0), 0);
    }

    #[test]
    fn decide_order_tries_the_smallest_rank_then_a_useful_suffix() {
        let ranks = [16, 32, 64, 128, 256, 300];
        let allow = [8.0, 3.0, 2.0, 0.5, 0.04, 0.01];
        let s = DecideSearch {
            eta: 0.2,
            lambda_1: 2.0, // λ_1/2 = 1: rank k can certify iff 1 + allow[k] ≤ 5.
            target_fraction: 0.05,
            start_rank: 256,
        };
        // First useful: index 1 (1 + 3 ≤ 5); on target (≤ 0.05): index 4; start cap: index 4.
        assert_eq!(decide_order(&ranks, &allow, &s), vec![0, 4, 5]);
        // A start cap below the on-target rank starts earlier, but never before the first useful.
        let s2 = DecideSearch {
            start_rank: 32,
            ..s
        };
        assert_eq!(decide_order(&ranks, &allow, &s2), vec![0, 1, 2, 3, 4, 5]);
        let s3 = DecideSearch { eta: 0.6, ..s2 }; // 0.6·(1 + a) ≤ 1 needs a ≤ 2/3: index 3.
        assert_eq!(decide_order(&ranks, &allow, &s3), vec![0, 3, 4, 5]);
        // Nothing useful: the cap alone after the smallest rank.
        let s4 = DecideSearch { eta: 2.0, ..s2 };
        assert_eq!(decide_order(&ranks, &allow, &s4), vec![0, 5]);
        // One candidate: just it.
        assert_eq!(decide_order(&[16], &[1.0], &s), vec![0]);
    }

    #[test]
    fn only_a_refutation_stops_at_the_smallest_rank() {
        assert!(decide_stops(MsStatus::CertifiedUnstable, true));
        assert!(!decide_stops(MsStatus::CertifiedStable, true));
        assert!(!decide_stops(MsStatus::Inconclusive, true));
        assert!(decide_stops(MsStatus::CertifiedStable, false));
        assert!(decide_stops(MsStatus::CertifiedUnstable, false));
        assert!(!decide_stops(MsStatus::Inconclusive, false));
    }
}
