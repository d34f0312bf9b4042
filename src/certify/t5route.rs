//! T5 on the Gram path within a time budget: the certified bracket of λ_max(𝒟̃) on the top r
//! eigenpairs of K, with the **proven** truncation allowance of THEORY T5(f),
//!
//! `λ_max(𝒟̃) ≤ λ_max(𝒟̃_r) + (1−p)·λ_d + 4p·ω`, `ω = max_i ‖Y_{i,d}‖₂²`,
//!
//! (λ_d the largest discarded eigenvalue of K), added to the upper side by
//! [`crate::measure::stability`]; the lower side needs no allowance (𝒟̃_r is a compression of
//! 𝒟̃). A cone step on Sym(r) costs O(nCr² + r³), so for a full-rank K with nC in the thousands
//! (the bundled example: r = 2560) the untruncated bracket takes minutes, while a few hundred
//! directions already carry all but a small allowance. ω is bounded with the spectral norm its
//! definition uses ([`tight_omegas`]), up to C times below the Frobenius bound.
//!
//! Ranks 16, 32, 64, … up to the cap `--t5-rank` are candidates: the smallest is tried first (it
//! can refute stability cheaply, since the lower side needs no allowance), then every rank from the
//! first whose allowance is at most 5% of λ_1/2 ≤ λ_max(𝒟̃), until the verdict at η is decided. An
//! inconclusive verdict at the cap is reported as such (raise `--t5-rank`).

use nalgebra::DMatrix;

use crate::error::{Error, Result};
use crate::linalg::{eigen_bounds, sym_eigen};
use crate::measure::gram::GramSpectrum;
use crate::measure::stability::{
    BracketOptions, CriticalLr, ReducedModel, Sampling, Verdict, mean_square_critical_lr,
};
use crate::quantity::{gamma, round_up};

/// The relative size of the truncation allowance accepted before a bracket is attempted, as a
/// fraction of the a-priori lower bound (1−p)λ_1/2 of λ_max(𝒟̃).
const TARGET: f64 = 0.05;

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

/// The T5(f) truncation allowance (1−p)λ_d + 4pω at rank r for a given ω.
fn allowance(spec: &GramSpectrum, p: f64, r: usize, omega: f64) -> f64 {
    let ld = spec.values.get(r).copied().unwrap_or(0.0).max(0.0);
    round_up((1.0 - p) * ld + 4.0 * p * omega)
}

/// The reduced model on the top r eigenpairs with the tight ω.
fn model_at(spec: &GramSpectrum, r: usize, omega: f64) -> ReducedModel {
    let mut model = ReducedModel::from_spectrum(&truncate(spec, r));
    if r < spec.rank {
        model.omega = model.omega.min(omega);
    }
    model
}

/// The T5 bracket at (B, sampling) decided at η within the rank cap: returns the reduced model
/// it was computed on and the critical learning rate. The untruncated model is used whenever
/// its rank is at most `cap`; otherwise ranks 16, 32, 64, … (and the cap) are tried in turn,
/// skipping those whose allowance exceeds 5% of (1−p)λ_1/2, until the verdict at η is decided.
pub fn critical_lr(
    spec: &GramSpectrum,
    eta: f64,
    batch: usize,
    sampling: Sampling,
    p: f64,
    cap: usize,
    opts: &BracketOptions,
) -> Result<(ReducedModel, CriticalLr)> {
    let full = spec.rank;
    if full <= cap {
        let model = ReducedModel::from_spectrum(spec);
        let crit = mean_square_critical_lr(&model, batch, sampling, opts)?;
        return Ok((model, crit));
    }
    let lam1 = spec.values.first().copied().unwrap_or(0.0).max(0.0);
    // (1−p)λ_1/2 + pλ_1/2 = λ_1/2 ≤ λ_max(𝒟̃) (Σ = e_1e_1ᵀ and Jensen): the scale of the allowance.
    let target = TARGET * lam1 / 2.0;
    let mut ranks: Vec<usize> = std::iter::successors(Some(16usize), |r| Some(r * 2))
        .take_while(|&r| r < cap)
        .collect();
    ranks.push(cap);
    let omegas = tight_omegas(spec, &ranks)?;
    let allow: Vec<f64> = ranks
        .iter()
        .zip(&omegas)
        .map(|(&r, &om)| allowance(spec, p, r, om))
        .collect();
    // The smallest rank first (cheap: it may already refute stability, whose lower side needs no
    // allowance), then from the first rank whose allowance meets the target upwards.
    let first_ok = allow
        .iter()
        .position(|&a| a <= target)
        .unwrap_or(ranks.len() - 1);
    let mut order = vec![0];
    order.extend((first_ok.max(1)..ranks.len()).filter(|&k| k != 0));
    let mut last: Option<(ReducedModel, CriticalLr)> = None;
    for k in order {
        let r = ranks[k];
        let model = model_at(spec, r, omegas[k]);
        let crit = mean_square_critical_lr(&model, batch, sampling, opts)?;
        let verdict = crit.verdict(eta).0;
        let decided = match k {
            // At the smallest rank only a refutation is trusted to stop the search.
            0 if ranks.len() > 1 => verdict == Verdict::CertifiedUnstable,
            _ => verdict != Verdict::Inconclusive,
        };
        last = Some((model, crit));
        if decided {
            break;
        }
    }
    match last {
        Some(x) => Ok(x),
        None => Err(Error::Internal("T5: no rank candidate was tried".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::example;
    use crate::io::{CheckpointOptions, DataOptions};
    use crate::measure::gram::{GramOptions, gauss_newton_gram};
    use std::time::Instant;

    /// Timing and allowance profile on the bundled example (run by hand:
    /// `cargo test --lib certify::t5route -- --ignored --nocapture`).
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
        let p = (256.0 - 16.0) / (16.0 * 255.0);
        let ranks = [16, 32, 64, 128, 256, 512];
        let t1 = Instant::now();
        let oms = tight_omegas(&spec, &ranks).unwrap();
        eprintln!("omegas {oms:?} in {:?}", t1.elapsed());
        let t1 = Instant::now();
        let (m, c) = critical_lr(
            &spec,
            0.2,
            16,
            Sampling::WithoutReplacement,
            p,
            256,
            &BracketOptions {
                max_steps: 60,
                rel_tol: 1e-4,
                dense_limit: 1000,
                ..BracketOptions::default()
            },
        )
        .unwrap();
        eprintln!(
            "route at 0.2: r {} {:?} in {:?}",
            m.rank(),
            c.verdict(0.2),
            t1.elapsed()
        );
        let t1 = Instant::now();
        let (m, c) = critical_lr(
            &spec,
            0.8,
            16,
            Sampling::WithoutReplacement,
            p,
            256,
            &BracketOptions {
                max_steps: 60,
                rel_tol: 1e-4,
                dense_limit: 1000,
                ..BracketOptions::default()
            },
        )
        .unwrap();
        eprintln!(
            "route at 0.8: r {} {:?} in {:?}",
            m.rank(),
            c.verdict(0.8),
            t1.elapsed()
        );
    }
}
