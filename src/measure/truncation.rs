//! T5 on the Gram path within a rank budget (THEORY.md T5f): the certified bracket of
//! λ_max(𝒟̃) on the top r eigenpairs of K, with the **proven** truncation allowance
//!
//! `λ_max(𝒟̃) ≤ λ_max(𝒟̃_r) + (1−p)·λ_d + 4p·ω`, `ω = max_i ‖Y_{i,d}‖₂²`,
//!
//! (λ_d the largest discarded eigenvalue of K; the formula and the rules that order the rank
//! search are [`flatcert_bounds::truncation`]), added to the upper side by
//! [`crate::measure::stability`]; the lower side needs no allowance (𝒟̃_r is a compression of
//! 𝒟̃). A cone step on Sym(r) costs O(nCr² + r³), so for a full-rank K with nC in the thousands
//! (the bundled example: r = 2560) the untruncated bracket takes minutes, while a few hundred
//! directions already carry all but a small allowance. ω is bounded with the spectral norm its
//! definition uses ([`tight_omegas`]), up to C times below the Frobenius bound.
//!
//! [`RankBudget`] holds the candidate ranks 16, 32, 64, … up to a cap and their ω; its
//! [`RankBudget::critical_lr`] either decides the verdict at a given η with the cheapest rank
//! that does ([`Goal::DecideAt`], used by `flatcert certify`) or computes one bracket at the
//! smallest rank whose allowance meets the requested relative width ([`Goal::Bracket`], used by
//! `flatcert stability` and `flatcert simulate`). An inconclusive verdict at the cap is reported
//! as such (raise the cap: `--t5-rank`).

use nalgebra::DMatrix;

use flatcert_bounds::truncation::{
    DecideSearch, bracket_rank, decide_order, decide_stops, truncation_allowance,
};

use crate::error::{Error, Result};
use crate::linalg::{eigen_bounds, sym_eigen};
use crate::measure::gram::GramSpectrum;
use crate::measure::stability::{
    BracketOptions, CriticalLr, ReducedModel, Sampling, mean_square_critical_lr, noise_p,
};
use crate::quantity::{gamma, round_up};

/// The relative size of the truncation allowance aimed at, as a fraction of the a-priori lower
/// bound λ_1/2 of λ_max(𝒟̃): [`Goal::DecideAt`] starts at the first rank that meets it (so that
/// the certified margin it reports is informative, not merely positive), unless that is above
/// [`DECIDE_START_RANK`].
const TARGET: f64 = 0.05;

/// [`Goal::DecideAt`] starts no higher than this rank; larger ranks (up to the cap) are tried
/// only while the verdict stays inconclusive.
pub const DECIDE_START_RANK: usize = 256;

/// The spectrum with only the top `r` eigenpairs kept (everything else is "discarded" for the
/// truncation allowance of T5(f)). `r` is clamped to the spectrum's own rank.
pub fn truncate(spec: &GramSpectrum, r: usize) -> GramSpectrum {
    let mut s = spec.clone();
    let r = r.min(spec.rank);
    if r == spec.rank {
        return s;
    }
    s.rank = r;
    let top = spec.values.first().copied().unwrap_or(0.0);
    s.tau = if top > 0.0 {
        spec.values[r].max(0.0) / top
    } else {
        spec.tau
    };
    s.largest_discarded = spec.values[r].max(0.0);
    s.discarded_mass = round_up(spec.values[r..].iter().map(|v| v.abs()).sum());
    s
}

/// Rigorous upper bounds of ω(r) = max_i ‖Y_{i,d}‖₂² (THEORY T5(f)) for every r in `ranks`,
/// Y_{i,d} = √n·U_{(i),d}Λ_d^{1/2} the discarded columns of sample i's rows: λ_max of the C×C
/// matrix Y_{i,d}Y_{i,d}ᵀ by the sign-safe Weyl bound (§3 item 3) plus its formation error
/// γ_m‖Y_{i,d}‖_F² (any summation order), never above the Frobenius bound ‖Y_{i,d}‖_F² that
/// [`ReducedModel::from_spectrum`] uses (which can be C times larger). Both carry the same final
/// (1 + γ_{N+2}) factor for the rounding of Y. One pass over the discarded columns, from the
/// last one down, accumulating the C×C matrices.
pub fn tight_omegas(spec: &GramSpectrum, ranks: &[usize]) -> Result<Vec<f64>> {
    let (n, c) = (spec.n, spec.outputs);
    let big_n = spec.values.len().min(spec.vectors.ncols());
    let sn = (n as f64).sqrt();
    let mut acc: Vec<DMatrix<f64>> = vec![DMatrix::zeros(c, c); n];
    let mut fro = vec![0.0f64; n];
    let mut out = vec![0.0f64; ranks.len()];
    let lowest = ranks.iter().copied().min().unwrap_or(big_n).min(big_n);
    let mut col = vec![0.0f64; c];
    for j in (lowest..big_n).rev() {
        let scale = sn * spec.values[j].max(0.0).sqrt();
        if scale > 0.0 {
            let v = spec.vectors.column(j);
            for i in 0..n {
                for (a, x) in col.iter_mut().enumerate() {
                    *x = scale * v[i * c + a];
                }
                let m = &mut acc[i];
                for a in 0..c {
                    fro[i] += col[a] * col[a];
                    for b in 0..c {
                        m[(a, b)] += col[a] * col[b];
                    }
                }
            }
        }
        for (k, &r) in ranks.iter().enumerate() {
            if r == j {
                out[k] = omega_now(&acc, &fro, big_n - r, big_n)?;
            }
        }
    }
    Ok(out)
}

fn omega_now(acc: &[DMatrix<f64>], fro: &[f64], m: usize, big_n: usize) -> Result<f64> {
    let g = gamma(m + 2);
    let mut best = 0.0f64;
    for (mi, &f) in acc.iter().zip(fro) {
        let eig = sym_eigen(mi)?;
        let eb = eigen_bounds(mi, &eig);
        let spectral = round_up(eb.max_upper + round_up(g * f));
        let frob = round_up(f * (1.0 + g));
        best = best.max(spectral.min(frob));
    }
    Ok(round_up(best * (1.0 + gamma(big_n + 2))))
}

/// The T5(f) truncation allowance (1−p)λ_d + 4pω at rank r for a given ω
/// ([`truncation_allowance`]), rounded up.
fn allowance(spec: &GramSpectrum, p: f64, r: usize, omega: f64) -> f64 {
    let ld = spec.values.get(r).copied().unwrap_or(0.0).max(0.0);
    round_up(truncation_allowance(p, ld, omega))
}

/// The reduced model on the top r eigenpairs with the tight ω.
fn model_at(spec: &GramSpectrum, r: usize, omega: f64) -> ReducedModel {
    let mut model = ReducedModel::from_spectrum(&truncate(spec, r));
    if r < spec.rank {
        model.omega = model.omega.min(omega);
    }
    model
}

/// What a truncated T5 computation must achieve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Goal {
    /// Decide the verdict at this η (theory convention): ranks are tried in increasing order
    /// until the bracket is on one side of 1/η (`flatcert certify`).
    DecideAt(f64),
    /// The narrowest bracket within the budget: the smallest candidate rank whose proven
    /// allowance is at most `rel_tol`·λ_1/2 (a lower bound of λ_max(𝒟̃)), else the cap — one
    /// bracket computation (`flatcert stability`, `flatcert simulate`).
    Bracket,
}

/// The T5(f) bracket of η*(B) within a rank budget: the candidate ranks 16, 32, 64, … up to the
/// cap, each with its tight ω ([`tight_omegas`], computed once) and proven truncation allowance.
/// Build once per Gram spectrum and ask for as many batch sizes as needed.
#[derive(Debug, Clone)]
pub struct RankBudget<'a> {
    spec: &'a GramSpectrum,
    cap: usize,
    ranks: Vec<usize>,
    omegas: Vec<f64>,
}

impl<'a> RankBudget<'a> {
    /// The candidate ranks below `cap` (at least 1) and their ω. When the spectrum's own rank is
    /// at most `cap`, no truncation happens and every request uses the full reduced model.
    pub fn new(spec: &'a GramSpectrum, cap: usize) -> Result<Self> {
        let cap = cap.max(1);
        if spec.rank <= cap {
            return Ok(Self {
                spec,
                cap,
                ranks: Vec::new(),
                omegas: Vec::new(),
            });
        }
        let mut ranks: Vec<usize> = std::iter::successors(Some(16usize), |r| Some(r * 2))
            .take_while(|&r| r < cap)
            .collect();
        ranks.push(cap);
        let omegas = tight_omegas(spec, &ranks)?;
        Ok(Self {
            spec,
            cap,
            ranks,
            omegas,
        })
    }

    /// `true` when the full reduced model fits the budget (no truncation).
    pub fn is_exact(&self) -> bool {
        self.ranks.is_empty()
    }

    /// The rank cap.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// The T5 bracket at (B, sampling) for `goal`: returns the reduced model it was computed on
    /// (its rank is the one used) and the critical learning rate, truncation allowance included.
    /// With [`Goal::DecideAt`], the smallest rank is tried first (it can refute stability
    /// cheaply: the lower side needs no allowance); then ranks in increasing order from the first
    /// whose allowance is at most 5% of λ_1/2 (but not above [`DECIDE_START_RANK`], and never one
    /// that cannot certify stability because η(λ_1/2 + allowance) > 1, λ_1/2 being a lower bound
    /// of every λ_max(𝒟̃_r)) up to the cap, until the verdict is decided. An inconclusive verdict
    /// at the cap is returned as such.
    pub fn critical_lr(
        &self,
        batch: usize,
        sampling: Sampling,
        opts: &BracketOptions,
        goal: Goal,
    ) -> Result<(ReducedModel, CriticalLr)> {
        let spec = self.spec;
        if self.is_exact() {
            let model = ReducedModel::from_spectrum(spec);
            let crit = mean_square_critical_lr(&model, batch, sampling, opts)?;
            return Ok((model, crit));
        }
        let p = noise_p(spec.n, batch, sampling)?;
        let lam1 = spec.values.first().copied().unwrap_or(0.0).max(0.0);
        let allow: Vec<f64> = self
            .ranks
            .iter()
            .zip(&self.omegas)
            .map(|(&r, &om)| allowance(spec, p, r, om))
            .collect();
        let last = self.ranks.len() - 1;
        let order: Vec<usize> = match goal {
            Goal::Bracket => vec![bracket_rank(&allow, opts.rel_tol, lam1)],
            Goal::DecideAt(eta) => decide_order(
                &self.ranks,
                &allow,
                &DecideSearch {
                    eta,
                    lambda_1: lam1,
                    target_fraction: TARGET,
                    start_rank: DECIDE_START_RANK,
                },
            ),
        };
        let mut result: Option<(ReducedModel, CriticalLr)> = None;
        for k in order {
            let model = model_at(spec, self.ranks[k], self.omegas[k]);
            let crit = mean_square_critical_lr(&model, batch, sampling, opts)?;
            let decided = match goal {
                Goal::Bracket => true,
                Goal::DecideAt(eta) => decide_stops(crit.verdict(eta).0, k == 0 && last > 0),
            };
            result = Some((model, crit));
            if decided {
                break;
            }
        }
        result.ok_or_else(|| Error::Internal("T5: no rank candidate was tried".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::example;
    use crate::io::{CheckpointOptions, DataOptions};
    use crate::measure::gram::{GramOptions, gauss_newton_gram};
    use crate::measure::stability::Verdict;
    use std::time::Instant;

    /// Timing and allowance profile on the bundled example (run by hand:
    /// `cargo test --release --lib measure::truncation -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn bundled_profile() {
        let t = Instant::now();
        let mlp =
            crate::io::load_checkpoint_bytes(example::MODEL, "m", &CheckpointOptions::default())
                .unwrap()
                .mlp;
        let opts = DataOptions {
            one_hot: Some(10),
            x_scale: Some(example::X_SCALE),
            expected_dim: Some(64),
            sample_shape: None,
        };
        let ds = crate::io::load_dataset_bytes(
            example::X,
            "x.npy",
            Some((example::LABELS, "l.npy")),
            &opts,
        )
        .unwrap();
        let spec = gauss_newton_gram(&mlp, &ds, &GramOptions::default()).unwrap();
        eprintln!("gram {:?}", t.elapsed());
        let t1 = Instant::now();
        let budget = RankBudget::new(&spec, 256).unwrap();
        eprintln!("omegas {:?} in {:?}", budget.omegas, t1.elapsed());
        let bopts = BracketOptions {
            max_steps: 60,
            rel_tol: 1e-3,
            dense_limit: 1000,
            ..BracketOptions::default()
        };
        for goal in [Goal::DecideAt(0.2), Goal::DecideAt(0.8), Goal::Bracket] {
            let t1 = Instant::now();
            let (m, c) = budget
                .critical_lr(16, Sampling::WithoutReplacement, &bopts, goal)
                .unwrap();
            eprintln!(
                "{goal:?}: r {} η* ∈ [{:?}, {:?}], verdict at 0.2 {:?}, {} steps, in {:?}",
                m.rank(),
                c.eta_lower(),
                c.eta_upper(),
                c.verdict(0.2),
                c.bracket.as_ref().map_or(0, |b| b.steps),
                t1.elapsed()
            );
        }
    }

    /// A random full-rank spectrum: the truncated brackets at every candidate rank contain the
    /// untruncated one (the allowance is proven, THEORY.md T5f), both goals.
    /// K of a random 3-6-2 tanh network on 24 samples: full rank well above 16.
    fn small_spectrum() -> GramSpectrum {
        use crate::model::Activation;
        use crate::testutil::{random_data, random_mlp};
        let (n, d) = (24, 3);
        let mlp = random_mlp(&[d, 6, 2], Activation::Tanh, 7);
        let x = random_data(d, n, 8);
        let ds = crate::data::Dataset::new(x.as_slice().to_vec(), n, d, None, "x", "y").unwrap();
        gauss_newton_gram(&mlp, &ds, &GramOptions::default()).unwrap()
    }

    #[test]
    fn truncated_brackets_contain_the_exact_one() {
        let spec = small_spectrum();
        assert!(spec.rank > 20, "rank {}", spec.rank);
        let bopts = BracketOptions {
            rel_tol: 1e-9,
            max_steps: 400,
            ..BracketOptions::default()
        };
        let exact = RankBudget::new(&spec, spec.rank).unwrap();
        assert!(exact.is_exact());
        let batch = 4;
        let (_, full) = exact
            .critical_lr(batch, Sampling::WithoutReplacement, &bopts, Goal::Bracket)
            .unwrap();
        let (flo, fhi) = (full.eta_lower().unwrap(), full.eta_upper().unwrap());
        let budget = RankBudget::new(&spec, 16).unwrap();
        assert!(!budget.is_exact());
        for goal in [
            Goal::Bracket,
            Goal::DecideAt(flo * 0.5),
            Goal::DecideAt(fhi * 2.0),
        ] {
            let (m, c) = budget
                .critical_lr(batch, Sampling::WithoutReplacement, &bopts, goal)
                .unwrap();
            assert_eq!(m.rank(), 16);
            // η*'s certified lower end can only drop with truncation (allowance on the upper
            // side of λ_max(𝒟̃)), its upper end can only grow (𝒟̃_r is a compression).
            let lo = c.eta_lower().unwrap();
            assert!(lo <= flo, "{goal:?}: truncated lower {lo} > exact {flo}");
            if let Some(hi) = c.eta_upper() {
                assert!(hi >= fhi * (1.0 - 1e-12), "{goal:?}: {hi} < {fhi}");
            }
        }
        // Far below η* the truncated route still certifies stability, far above instability.
        let (_, c) = budget
            .critical_lr(
                batch,
                Sampling::WithoutReplacement,
                &bopts,
                Goal::DecideAt(flo * 0.01),
            )
            .unwrap();
        assert_eq!(c.verdict(flo * 0.01).0, Verdict::CertifiedStable);
        let (_, c) = budget
            .critical_lr(
                batch,
                Sampling::WithoutReplacement,
                &bopts,
                Goal::DecideAt(fhi * 4.0),
            )
            .unwrap();
        assert_eq!(c.verdict(fhi * 4.0).0, Verdict::CertifiedUnstable);
    }

    /// DecideAt escalates: at an η between the rank-16 lower end of η* and the exact one, rank 16
    /// is inconclusive, and a budget with a larger cap goes on to a rank that certifies
    /// stability; far from η* it stops at the first rank that decides.
    #[test]
    fn decide_at_escalates_only_while_inconclusive() {
        let spec = small_spectrum();
        // Brackets far tighter than the gap between the truncated and the exact lower ends.
        let bopts = BracketOptions {
            rel_tol: 1e-9,
            max_steps: 400,
            ..BracketOptions::default()
        };
        let (batch, s) = (4, Sampling::WithoutReplacement);
        let exact = RankBudget::new(&spec, spec.rank).unwrap();
        let (_, full) = exact.critical_lr(batch, s, &bopts, Goal::Bracket).unwrap();
        let flo = full.eta_lower().unwrap();
        let small = RankBudget::new(&spec, 16).unwrap();
        let (_, c16) = small.critical_lr(batch, s, &bopts, Goal::Bracket).unwrap();
        let lo16 = c16.eta_lower().unwrap();
        assert!(
            lo16 < (1.0 - 1e-3) * flo,
            "the allowance must matter: {lo16} vs {flo}"
        );
        let eta = 0.5 * (lo16 + flo);
        assert_eq!(c16.verdict(eta).0, Verdict::Inconclusive);
        let big = RankBudget::new(&spec, spec.rank - 1).unwrap();
        assert!(!big.is_exact());
        let (m, c) = big
            .critical_lr(batch, s, &bopts, Goal::DecideAt(eta))
            .unwrap();
        assert_eq!(c.verdict(eta).0, Verdict::CertifiedStable);
        assert!(m.rank() > 16, "rank {}", m.rank());
        // Far below η*: decided by the first rank tried after the cheap refutation attempt.
        let (m, c) = big
            .critical_lr(batch, s, &bopts, Goal::DecideAt(0.01 * flo))
            .unwrap();
        assert_eq!(c.verdict(0.01 * flo).0, Verdict::CertifiedStable);
        assert!(m.rank() < spec.rank - 1, "stopped at rank {}", m.rank());
    }
}
