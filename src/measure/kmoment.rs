//! k-th moments of the linearized SGD recursion (THEORY.md T6, even k ≥ 2).
//!
//! - **T6(d) directional test** `E_ξ[(1 − η vᵀH_ξv)^k] ≤ 1` for v = the top eigenvector of each
//!   `H_i = J_iᵀJ_i`. With `u_i` the top eigenvector of `J_iJ_iᵀ = n·K_(i),(i)` and
//!   `λ_i = λ_max(J_iJ_iᵀ)`, the values are `x_j = ‖(J_jJ_iᵀ)u_i‖²/λ_i = ‖n·K_(j),(i)u_i‖²/λ_i`, and the
//!   test is evaluated on `z_j = 1 − ηx_j`: `E[(1 − ηX_ξ)^k] = E[S^k]/B^k` with `S = Σ_{j∈ξ} z_j`
//!   (§6 item 7). `E[S^q]` comes from the closed forms for q ≤ 4 (`π_s = (B)_s/(n)_s`; the
//!   with-replacement forms in the moments `m_q` of the z_j) and from the exact dynamic programme
//!   otherwise. These functions mirror those of the `flatcert-bounds` crate on purpose (this crate
//!   must not depend on it yet); they are private-ish (`pub` only for the CLI) and tested against
//!   brute-force batch enumeration.
//! - **T6(e)** `λ_i ≤ β_k = (B/η)(1 + π^{−1/k})`: `per_sample_bound_ratio_k{k}` = max_i λ_i/β_k.
//! - **T6(a–c)** for tiny problems (r ≤ 12): the exact `𝒬_k = E[(I − ηh_ξ)^{⊗k}]` on `Sym^k(ℝ^r)`
//!   by enumerating batches, its λ_max, and `k_moment_critical_lr_k{k}` by bisection (the stable η
//!   form an interval, T6c).
//!
//! k-stability for k ≥ 4 cannot be checked on real networks: where it is only assumed the output
//! says so; a violated test proves **the k-th moment** unstable, never "SGD diverges" (T6 failure
//! modes).

use nalgebra::DMatrix;

use super::QuantityMap;
use super::gram::GramSpectrum;
use super::stability::{ReducedModel, Sampling, inclusion_pi, noise_p};
use crate::error::{Error, Result};
use crate::linalg::sym_eigen;
use crate::quantity::{Quantity, gamma};

/// Falling factorial `(a)_s = a(a−1)⋯(a−s+1)` as f64.
fn falling(a: usize, s: usize) -> f64 {
    (0..s).map(|t| a as f64 - t as f64).product()
}

fn binomial(q: usize, l: usize) -> f64 {
    (0..l).map(|t| (q - t) as f64 / (t + 1) as f64).product()
}

/// `E[S^q]` for `q = 0..=k`, `S = Σ_{j∈ξ} z_j`, by the exact dynamic programme of THEORY.md T6(d):
/// without replacement `F[b][q] = E[S^q·1{b chosen so far}]` over the samples in order (a fresh
/// array per sample, §6 item 8); with replacement the moments of a sum of B i.i.d. draws,
/// `m^{(b)}_q = Σ_l binom(q,l) m^{(b−1)}_l m_q`. Cost O(nBk²).
pub fn batch_sum_moments_dp(
    z: &[f64],
    batch: usize,
    k: usize,
    sampling: Sampling,
) -> Result<Vec<f64>> {
    let n = z.len();
    noise_p(n, batch, sampling)?;
    Ok(match sampling {
        Sampling::WithoutReplacement => dp_without(z, batch, k),
        Sampling::WithReplacement => dp_with(z, batch, k),
    })
}

fn dp_without(z: &[f64], batch: usize, k: usize) -> Vec<f64> {
    let n = z.len();
    let mut f = vec![vec![0.0; k + 1]; batch + 1];
    f[0][0] = 1.0;
    for (i, &zi) in z.iter().enumerate() {
        let nu = (n - i) as f64;
        let pows: Vec<f64> = (0..=k).map(|e| zi.powi(e as i32)).collect();
        let mut next = vec![vec![0.0; k + 1]; batch + 1];
        for b in 0..=batch {
            let take = (batch - b) as f64 / nu;
            for q in 0..=k {
                next[b][q] += (1.0 - take) * f[b][q];
                if b < batch {
                    let s: f64 = (0..=q)
                        .map(|l| binomial(q, l) * pows[q - l] * f[b][l])
                        .sum();
                    next[b + 1][q] += take * s;
                }
            }
        }
        f = next;
    }
    f[batch].clone()
}

fn dp_with(z: &[f64], batch: usize, k: usize) -> Vec<f64> {
    let n = z.len() as f64;
    let m: Vec<f64> = (0..=k)
        .map(|q| z.iter().map(|x| x.powi(q as i32)).sum::<f64>() / n)
        .collect();
    let mut cur = vec![0.0; k + 1];
    cur[0] = 1.0;
    for _ in 0..batch {
        cur = (0..=k)
            .map(|q| (0..=q).map(|l| binomial(q, l) * cur[l] * m[q - l]).sum())
            .collect();
    }
    cur
}

/// `E[S^q]` for `q = 1..=4` by the closed forms of THEORY.md T6(d) (O(n)): with `P_q = Σ z_j^q`
/// and `π_s = (B)_s/(n)_s` (0 for s > B) without replacement; with replacement in `m_q = P_q/n`
/// and falling factorials of B. Returns `[E S, E S², E S³, E S⁴]`.
pub fn batch_sum_moments_closed(z: &[f64], batch: usize, sampling: Sampling) -> Result<[f64; 4]> {
    let n = z.len();
    noise_p(n, batch, sampling)?;
    let pw = |q: i32| z.iter().map(|x| x.powi(q)).sum::<f64>();
    let (p1, p2, p3, p4) = (pw(1), pw(2), pw(3), pw(4));
    Ok(match sampling {
        Sampling::WithoutReplacement => {
            let pi = |s: usize| {
                if s > batch {
                    0.0
                } else {
                    falling(batch, s) / falling(n, s)
                }
            };
            [
                pi(1) * p1,
                pi(1) * p2 + pi(2) * (p1 * p1 - p2),
                pi(1) * p3
                    + 3.0 * pi(2) * (p1 * p2 - p3)
                    + pi(3) * (p1.powi(3) - 3.0 * p1 * p2 + 2.0 * p3),
                pi(1) * p4
                    + pi(2) * (4.0 * p1 * p3 + 3.0 * p2 * p2 - 7.0 * p4)
                    + 6.0 * pi(3) * (p1 * p1 * p2 - p2 * p2 - 2.0 * p1 * p3 + 2.0 * p4)
                    + pi(4)
                        * (p1.powi(4) - 6.0 * p1 * p1 * p2 + 3.0 * p2 * p2 + 8.0 * p1 * p3
                            - 6.0 * p4),
            ]
        }
        Sampling::WithReplacement => {
            let nf = n as f64;
            let (m1, m2, m3, m4) = (p1 / nf, p2 / nf, p3 / nf, p4 / nf);
            let b = |s: usize| falling(batch, s);
            [
                b(1) * m1,
                b(1) * m2 + b(2) * m1 * m1,
                b(1) * m3 + 3.0 * b(2) * m1 * m2 + b(3) * m1.powi(3),
                b(1) * m4
                    + b(2) * (4.0 * m1 * m3 + 3.0 * m2 * m2)
                    + 6.0 * b(3) * m1 * m1 * m2
                    + b(4) * m1.powi(4),
            ]
        }
    })
}

/// The directional test value `E_ξ[(1 − ηX_ξ)^k] = E[S^k]/B^k` on `z_j = 1 − ηx_j` (THEORY.md
/// T6d): closed forms for k ≤ 4, the dynamic programme otherwise. k must be ≥ 1.
pub fn directional_moment(
    x: &[f64],
    eta: f64,
    batch: usize,
    k: usize,
    sampling: Sampling,
) -> Result<f64> {
    if k == 0 {
        return Err(Error::invalid_argument(
            "--k",
            "the moment order must be at least 1",
        ));
    }
    let z: Vec<f64> = x.iter().map(|v| 1.0 - eta * v).collect();
    let es = if k <= 4 {
        batch_sum_moments_closed(&z, batch, sampling)?[k - 1]
    } else {
        batch_sum_moments_dp(&z, batch, k, sampling)?[k]
    };
    Ok(es / (batch as f64).powi(k as i32))
}

/// Per-sample curvature of T6: `λ_i = λ_max(J_iJ_iᵀ)`, the top eigenvector `u_i` (C-dim) of
/// `J_iJ_iᵀ = n·K_(i),(i)`, from the Gram matrix.
#[derive(Debug, Clone)]
pub struct PerSampleTop {
    /// λ_i for every sample.
    pub lambda: Vec<f64>,
    /// u_i for every sample (unit, C entries).
    pub u: Vec<Vec<f64>>,
}

/// λ_i and u_i from the diagonal C×C blocks of K (THEORY.md T6d).
pub fn per_sample_top(spec: &GramSpectrum) -> Result<PerSampleTop> {
    let nf = spec.n as f64;
    let mut lambda = Vec::with_capacity(spec.n);
    let mut u = Vec::with_capacity(spec.n);
    for i in 0..spec.n {
        let e = sym_eigen(&(spec.block(i, i) * nf))?;
        lambda.push(e.values[0].max(0.0));
        u.push(e.vectors.column(0).iter().copied().collect());
    }
    Ok(PerSampleTop { lambda, u })
}

/// The directional values `x_j = ‖n·K_(j),(i)u_i‖²/λ_i` (j = 1..n) for direction i (the top
/// eigenvector of H_i), THEORY.md T6(d). Empty-curvature samples (λ_i = 0) give all zeros.
pub fn directional_values(spec: &GramSpectrum, top: &PerSampleTop, i: usize) -> Vec<f64> {
    let nf = spec.n as f64;
    let ui = nalgebra::DVector::from_column_slice(&top.u[i]);
    (0..spec.n)
        .map(|j| {
            if top.lambda[i] <= 0.0 {
                0.0
            } else {
                (spec.block(j, i) * nf * &ui).norm_squared() / top.lambda[i]
            }
        })
        .collect()
}

/// `β_k = (B/η)(1 + π^{−1/k})` (THEORY.md T6e).
pub fn beta_k(n: usize, batch: usize, eta: f64, k: usize, sampling: Sampling) -> Result<f64> {
    let pi = inclusion_pi(n, batch, sampling)?;
    Ok(batch as f64 / eta * (1.0 + pi.powf(-1.0 / k as f64)))
}

/// T6(d, e) at (η, B, k) from the Gram path: `k_moment_directional_max_k{k}` (max over i of the
/// exact directional test value; ≤ 1 is necessary for k-stability; exact),
/// `per_sample_bound_ratio_k{k}` = max_i λ_i/β_k (exact; ≤ 1 under the *assumed* k-th moment
/// stability) and `per_sample_beta_k{k}` = β_k. k must be even.
pub fn t6_quantities(
    spec: &GramSpectrum,
    eta: f64,
    batch: usize,
    k: usize,
    sampling: Sampling,
) -> Result<QuantityMap> {
    if k == 0 || k % 2 == 1 {
        return Err(Error::invalid_argument(
            "--k",
            format!("k must be even and ≥ 2, got {k}"),
        ));
    }
    if eta.is_nan() || eta <= 0.0 {
        return Err(Error::invalid_argument(
            "--lr",
            format!("must be positive, got {eta}"),
        ));
    }
    let top = per_sample_top(spec)?;
    let mut worst = (f64::NEG_INFINITY, 0usize);
    for i in 0..spec.n {
        let x = directional_values(spec, &top, i);
        let v = directional_moment(&x, eta, batch, k, sampling)?;
        if v > worst.0 {
            worst = (v, i);
        }
    }
    let beta = beta_k(spec.n, batch, eta, k, sampling)?;
    let (lam_max, arg) =
        top.lambda.iter().enumerate().fold(
            (0.0f64, 0usize),
            |acc, (i, &l)| if l > acc.0 { (l, i) } else { acc },
        );
    let ctx = format!("η = {eta}, B = {batch}, {}", sampling.name());
    let g = gamma(spec.n * 8 + 16);
    let mut map = QuantityMap::new();
    let verdict = if worst.0 <= 1.0 {
        "passed"
    } else {
        "VIOLATED: the k-th moment is unstable (not a statement about SGD divergence)"
    };
    map.insert(
        format!("k_moment_directional_max_k{k}"),
        Quantity::exact(worst.0, g * worst.0.abs().max(1.0))
            .with_method(if k <= 4 { "closed-form-T6d" } else { "dp-T6d" })
            .with_note(format!(
                "max_i E[(1 − η v_iᵀH_ξv_i)^{k}] at sample {} (necessary: ≤ 1): {verdict}; {ctx}",
                worst.1
            )),
    );
    map.insert(
        format!("per_sample_beta_k{k}"),
        Quantity::exact(beta, g * beta)
            .with_method("T6e")
            .with_note(ctx.clone()),
    );
    map.insert(
        format!("per_sample_bound_ratio_k{k}"),
        Quantity::exact(lam_max / beta, g * lam_max / beta)
            .with_method("T6e")
            .with_note(format!(
                "max_i λ_i/β_k at sample {arg}; ≤ 1 under the assumed {k}-th moment stability at \
                 (η, B) (assumed, not checked); {ctx}"
            )),
    );
    Ok(map)
}

/// Sorted multi-indices of `Sym^k(ℝ^r)` and the number of their distinct permutations.
fn sym_tensor_basis(r: usize, k: usize) -> Vec<(Vec<usize>, f64)> {
    let mut out = Vec::new();
    let mut cur = Vec::with_capacity(k);
    fn rec(start: usize, r: usize, k: usize, cur: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if cur.len() == k {
            out.push(cur.clone());
            return;
        }
        for i in start..r {
            cur.push(i);
            rec(i, r, k, cur, out);
            cur.pop();
        }
    }
    let mut idx = Vec::new();
    rec(0, r, k, &mut cur, &mut idx);
    for a in idx {
        let mut count = (1..=k).map(|t| t as f64).product::<f64>();
        let mut i = 0;
        while i < a.len() {
            let mut j = i;
            while j < a.len() && a[j] == a[i] {
                j += 1;
            }
            count /= (1..=(j - i)).map(|t| t as f64).product::<f64>();
            i = j;
        }
        out.push((a, count));
    }
    out
}

/// Distinct permutations of a sorted multi-index.
fn distinct_permutations(a: &[usize]) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    let mut cur = a.to_vec();
    // Lexicographic next-permutation from the sorted start enumerates each distinct one once.
    loop {
        out.push(cur.clone());
        let Some(i) = (0..cur.len().saturating_sub(1))
            .rev()
            .find(|&i| cur[i] < cur[i + 1])
        else {
            break;
        };
        let j = (i + 1..cur.len())
            .rev()
            .find(|&j| cur[j] > cur[i])
            .unwrap_or(i + 1);
        cur.swap(i, j);
        cur[i + 1..].reverse();
    }
    out
}

/// The polynomial-in-η matrices `M_q` with `𝒬_k(η) = Σ_q η^q M_q` on `Sym^k(ℝ^r)`
/// (orthonormal symmetric-tensor basis), by enumerating batches (THEORY.md T6 "Check").
#[derive(Debug, Clone)]
pub struct ExactQk {
    /// k.
    pub k: usize,
    /// Coefficient matrices `M_0 … M_k`.
    pub coeffs: Vec<DMatrix<f64>>,
}

/// Upper limit on `batches × dim(Sym^k)² × k!` work units for [`exact_qk`].
pub const EXACT_QK_WORK_LIMIT: f64 = 4e10;

/// Build [`ExactQk`] from the reduced per-sample matrices `h_i = Y_iᵀY_i` of a [`ReducedModel`]
/// (r ≤ 12 is the intended range; refuses above [`EXACT_QK_WORK_LIMIT`]). The matrix element for
/// basis tensors α, β is `√(N_α/N_β)·Σ_{τ ∈ perms(β)} Π_m A[α_m, τ_m]` with `A = I − ηh_ξ`.
pub fn exact_qk(
    model: &ReducedModel,
    batch: usize,
    k: usize,
    sampling: Sampling,
) -> Result<ExactQk> {
    if k == 0 || k % 2 == 1 {
        return Err(Error::invalid_argument(
            "--k",
            format!("k must be even and ≥ 2, got {k}"),
        ));
    }
    let r = model.rank();
    let n = model.n;
    noise_p(n, batch, sampling)?;
    let c = model.outputs;
    let hs: Vec<DMatrix<f64>> = (0..n)
        .map(|i| {
            let yi = model.y.rows(i * c, c);
            yi.transpose() * yi
        })
        .collect();
    let basis = sym_tensor_basis(r, k);
    let perms: Vec<Vec<Vec<usize>>> = basis
        .iter()
        .map(|(b, _)| distinct_permutations(b))
        .collect();
    let batches = enumerate_batches(n, batch, sampling);
    let dim = basis.len();
    let work = batches.len() as f64 * (dim * dim) as f64 * (1..=k).product::<usize>() as f64;
    if work > EXACT_QK_WORK_LIMIT {
        return Err(Error::invalid_argument(
            "--k",
            format!(
                "exact 𝒬_{k} needs ~{work:.1e} operations (r = {r}, {} batches); refused",
                batches.len()
            ),
        ));
    }
    let mut coeffs = vec![DMatrix::zeros(dim, dim); k + 1];
    for (set, w) in &batches {
        let mut h = DMatrix::zeros(r, r);
        for &i in set {
            h += &hs[i];
        }
        h /= batch as f64;
        for (a, (alpha, na)) in basis.iter().enumerate() {
            for (b, (_, nb)) in basis.iter().enumerate() {
                let mut poly = vec![0.0; k + 1];
                for tau in &perms[b] {
                    let mut term = vec![0.0; k + 1];
                    term[0] = 1.0;
                    for m in 0..k {
                        let c0 = if alpha[m] == tau[m] { 1.0 } else { 0.0 };
                        let c1 = -h[(alpha[m], tau[m])];
                        for q in (0..=m + 1).rev() {
                            let prev = if q > 0 { term[q - 1] } else { 0.0 };
                            term[q] = term[q] * c0 + prev * c1;
                        }
                    }
                    for (p, t) in poly.iter_mut().zip(&term) {
                        *p += t;
                    }
                }
                let s = (na / nb).sqrt() * w;
                for (q, pq) in poly.iter().enumerate() {
                    coeffs[q][(a, b)] += s * pq;
                }
            }
        }
    }
    Ok(ExactQk { k, coeffs })
}

/// All batches with probabilities: uniform B-subsets, or B-multisets with multinomial weights.
pub(crate) fn enumerate_batches(n: usize, b: usize, sampling: Sampling) -> Vec<(Vec<usize>, f64)> {
    fn rec(
        start: usize,
        n: usize,
        b: usize,
        rep: bool,
        cur: &mut Vec<usize>,
        out: &mut Vec<Vec<usize>>,
    ) {
        if cur.len() == b {
            out.push(cur.clone());
            return;
        }
        for i in start..n {
            cur.push(i);
            rec(if rep { i } else { i + 1 }, n, b, rep, cur, out);
            cur.pop();
        }
    }
    let mut sets = Vec::new();
    rec(
        0,
        n,
        b,
        sampling == Sampling::WithReplacement,
        &mut Vec::new(),
        &mut sets,
    );
    let count = sets.len() as f64;
    let fact = |m: usize| (1..=m).map(|t| t as f64).product::<f64>();
    sets.into_iter()
        .map(|set| {
            let w = match sampling {
                Sampling::WithoutReplacement => 1.0 / count,
                Sampling::WithReplacement => {
                    let mut coef = fact(b);
                    let mut i = 0;
                    while i < set.len() {
                        let j = set[i..].iter().take_while(|&&v| v == set[i]).count();
                        coef /= fact(j);
                        i += j;
                    }
                    coef / (n as f64).powi(b as i32)
                }
            };
            (set, w)
        })
        .collect()
}

impl ExactQk {
    /// `𝒬_k(η) = Σ_q η^q M_q`, symmetrized.
    pub fn at(&self, eta: f64) -> DMatrix<f64> {
        let mut m = self.coeffs[0].clone();
        let mut e = 1.0;
        for c in &self.coeffs[1..] {
            e *= eta;
            m += c * e;
        }
        let t = m.transpose();
        (m + t) * 0.5
    }

    /// λ_max(𝒬_k(η)) on `Sym^k(ℝ^r)` (THEORY.md T6a: equals ρ).
    pub fn lambda_max(&self, eta: f64) -> Result<f64> {
        Ok(sym_eigen(&self.at(eta))?
            .values
            .first()
            .copied()
            .unwrap_or(1.0))
    }

    /// η*_k = sup{η : λ_max(𝒬_k(η)) ≤ 1} by bisection on `[0, hi]` (THEORY.md T6c: the stable η
    /// form an interval), `steps` halvings; returns the bracket `(stable, unstable)`. `hi` must be
    /// unstable (e.g. 1.01·η*_2, since η*_k ≤ η*_2).
    pub fn critical_lr(&self, hi: f64, steps: usize) -> Result<(f64, f64)> {
        let thresh = 1.0 + 1e-12;
        if self.lambda_max(hi)? <= thresh {
            return Err(Error::Numerical(format!(
                "bisection for η*_{}: the upper end {hi} is not unstable",
                self.k
            )));
        }
        let (mut lo, mut hi) = (0.0, hi);
        for _ in 0..steps {
            let mid = 0.5 * (lo + hi);
            if self.lambda_max(mid)? <= thresh {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Ok((lo, hi))
    }
}

/// `k_moment_critical_lr_k{k}` for tiny problems (THEORY.md T6c): bisection on the exact
/// `λ_max(𝒬_k(η))` on `Sym^k(ℝ^r)` below `eta2_upper` (an upper bound of η*_2, e.g.
/// [`super::stability::CriticalLr::eta_upper`]); kind estimate, tol the bisection width. Reduced
/// space (τ-truncation and the rounding of K are not covered).
pub fn k_moment_critical_lr(
    model: &ReducedModel,
    batch: usize,
    k: usize,
    sampling: Sampling,
    eta2_upper: f64,
) -> Result<Quantity> {
    if model.rank() == 0 {
        return Err(Error::invalid_argument("rank", "G = 0: η*_k = +∞"));
    }
    let q = exact_qk(model, batch, k, sampling)?;
    let (lo, hi) = q.critical_lr(eta2_upper * 1.01, 45)?;
    Ok(Quantity::estimate(lo, hi - lo)
        .with_method("exact-Qk-bisection")
        .with_note(format!(
            "λ_max(𝒬_{k}) on Sym^{k}(ℝ^{}) by batch enumeration, B = {batch}, {}; reduced space \
             (τ and the rounding of K not covered)",
            model.rank(),
            sampling.name()
        )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::gram::{GramOptions, gauss_newton_gram, golden};
    use crate::measure::stability::{BracketOptions, mean_square_critical_lr};
    use crate::testutil::random_data;

    fn brute_moments(z: &[f64], b: usize, k: usize, sampling: Sampling) -> Vec<f64> {
        let mut out = vec![0.0; k + 1];
        for (set, w) in enumerate_batches(z.len(), b, sampling) {
            let s: f64 = set.iter().map(|&i| z[i]).sum();
            for (q, o) in out.iter_mut().enumerate() {
                *o += w * s.powi(q as i32);
            }
        }
        out
    }

    #[test]
    fn closed_forms_and_dp_match_batch_enumeration() {
        // All three evaluate the same finite sums in different orders: 1e-12 relative to the
        // scale of S^k.
        for seed in 0..6u64 {
            let n = 2 + seed as usize;
            let z: Vec<f64> = random_data(n, 1, 900 + seed)
                .iter()
                .map(|v| 1.0 + v)
                .collect();
            for sampling in [Sampling::WithoutReplacement, Sampling::WithReplacement] {
                for b in 1..=n.min(5) {
                    let brute = brute_moments(&z, b, 6, sampling);
                    let dp = batch_sum_moments_dp(&z, b, 6, sampling).unwrap();
                    let closed = batch_sum_moments_closed(&z, b, sampling).unwrap();
                    let scale = brute.iter().fold(1.0f64, |m, v| m.max(v.abs()));
                    for q in 1..=6 {
                        assert!((dp[q] - brute[q]).abs() < 1e-12 * scale, "dp q={q}");
                    }
                    for q in 1..=4 {
                        assert!(
                            (closed[q - 1] - brute[q]).abs() < 1e-12 * scale,
                            "closed q={q} B={b} {sampling:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn golden_directional_tests_and_betas() {
        // THEORY §5 T6(d) at B = 1, k = 2, η = 0.9η*_2 (values printed to 6 digits).
        let spec =
            gauss_newton_gram(&golden::net(), &golden::data(), &GramOptions::default()).unwrap();
        let top = per_sample_top(&spec).unwrap();
        assert!((top.lambda[0] - 4.0).abs() < 1e-13 && (top.lambda[2] - 10.0).abs() < 1e-13);
        let eta = 0.9 * 0.2400821025;
        let expected_x = [[4.0, 0.25, 0.25], [0.25, 4.0, 9.0], [0.1, 3.6, 10.0]];
        let expected = [0.602726, 0.601896, 0.784637];
        for i in 0..3 {
            let x = directional_values(&spec, &top, i);
            for (a, b) in x.iter().zip(expected_x[i]) {
                assert!((a - b).abs() < 1e-13, "{x:?}");
            }
            let v = directional_moment(&x, eta, 1, 2, Sampling::WithoutReplacement).unwrap();
            assert!((v - expected[i]).abs() < 1e-6, "{v}");
            // k = 6 goes through the DP; it must agree with brute force.
            let z: Vec<f64> = x.iter().map(|v| 1.0 - eta * v).collect();
            let v6 = directional_moment(&x, eta, 2, 6, Sampling::WithoutReplacement).unwrap();
            assert!(
                (v6 - brute_moments(&z, 2, 6, Sampling::WithoutReplacement)[6] / 64.0).abs()
                    < 1e-14
            );
        }
        // β_k at η = η*_k: B = 1 (11.379652, 10.532635), B = 2 with replacement (15.064292,
        // 16.383928).
        for (b, s, eta2, eta4, b2, b4) in [
            (
                1,
                Sampling::WithoutReplacement,
                0.2400821025,
                0.2198950262,
                11.379652,
                10.532635,
            ),
            (
                2,
                Sampling::WithoutReplacement,
                0.3628739528,
                0.3340997154,
                12.261805,
                12.611097,
            ),
            (
                2,
                Sampling::WithReplacement,
                0.3108862653,
                0.2634645672,
                15.064292,
                16.383928,
            ),
        ] {
            assert!((beta_k(3, b, eta2, 2, s).unwrap() - b2).abs() < 1e-5);
            assert!((beta_k(3, b, eta4, 4, s).unwrap() - b4).abs() < 1e-5);
        }
        let q = t6_quantities(&spec, eta, 1, 2, Sampling::WithoutReplacement).unwrap();
        assert!((q["k_moment_directional_max_k2"].value - 0.784637).abs() < 1e-6);
        assert!(t6_quantities(&spec, eta, 1, 3, Sampling::WithoutReplacement).is_err());
    }

    #[test]
    fn golden_fourth_moment_critical_rates() {
        // η*_4 for the four rows of THEORY §5 (10 digits; bisection to 2^-45 of 1.01η*_2).
        let spec =
            gauss_newton_gram(&golden::net(), &golden::data(), &GramOptions::default()).unwrap();
        let m = ReducedModel::from_spectrum(&spec);
        for (b, s, eta4) in [
            (1, Sampling::WithoutReplacement, 0.2198950262),
            (2, Sampling::WithoutReplacement, 0.3340997154),
            (3, Sampling::WithoutReplacement, 0.4316635023),
            (2, Sampling::WithReplacement, 0.2634645672),
        ] {
            let crit = mean_square_critical_lr(&m, b, s, &BracketOptions::default()).unwrap();
            let q = k_moment_critical_lr(&m, b, 4, s, crit.eta_upper().unwrap()).unwrap();
            assert!((q.value - eta4).abs() < 1e-9, "B {b} {s:?}: {}", q.value);
            assert!(
                q.value <= crit.eta_upper().unwrap() * (1.0 + 1e-9),
                "η*_4 ≤ η*_2"
            );
            // k = 2 through the same machinery reproduces η*_2.
            let q2 = k_moment_critical_lr(&m, b, 2, s, crit.eta_upper().unwrap()).unwrap();
            assert!((q2.value - crit.eta_lower().unwrap()).abs() < 1e-9);
        }
    }

    /// λ_max of `E[A_ξ^{⊗4}]` on the symmetric subspace of `(ℝ^r)^{⊗4}`, from the full
    /// `r⁴ × r⁴` matrix and the symmetrizer (an independent construction).
    fn full_tensor_lambda_max(model: &ReducedModel, b: usize, sampling: Sampling, eta: f64) -> f64 {
        let r = model.rank();
        let c = model.outputs;
        let hs: Vec<DMatrix<f64>> = (0..model.n)
            .map(|i| {
                let yi = model.y.rows(i * c, c);
                yi.transpose() * yi
            })
            .collect();
        let dim = r.pow(4);
        let mut q = DMatrix::<f64>::zeros(dim, dim);
        for (set, w) in enumerate_batches(model.n, b, sampling) {
            let mut h = DMatrix::zeros(r, r);
            for &i in &set {
                h += &hs[i];
            }
            let a = DMatrix::<f64>::identity(r, r) - h * (eta / b as f64);
            let a2 = a.kronecker(&a);
            q += a2.kronecker(&a2) * w;
        }
        // Symmetrizer: average of the 24 index permutations.
        let mut sym = DMatrix::<f64>::zeros(dim, dim);
        let perms = distinct_permutations(&[0, 1, 2, 3]);
        for col in 0..dim {
            let digits = [col / r.pow(3), (col / r.pow(2)) % r, (col / r) % r, col % r];
            for p in &perms {
                let d: Vec<usize> = p.iter().map(|&k| digits[k]).collect();
                let row = ((d[0] * r + d[1]) * r + d[2]) * r + d[3];
                sym[(row, col)] += 1.0 / perms.len() as f64;
            }
        }
        let m: DMatrix<f64> = &sym * q * &sym;
        let m = (&m + m.transpose()) * 0.5;
        sym_eigen(&m).unwrap().values[0]
    }

    #[test]
    fn exact_q4_matches_the_full_tensor_operator_on_tiny_networks() {
        // Two constructions of λ_max(𝒬_4) (dense symmetric-tensor basis vs full r⁴ tensor space
        // with the symmetrizer); equal up to rounding (1e-11). Also k = 2 must equal λ_max(𝒬_r).
        use crate::measure::hvp::testkit::dataset;
        use crate::measure::stability::mean_square_rho;
        use crate::model::Activation;
        use crate::testutil::random_mlp;
        for seed in 0..4u64 {
            let act = [
                Activation::Relu,
                Activation::Tanh,
                Activation::Softplus,
                Activation::Identity,
            ][seed as usize];
            let mlp = random_mlp(&[1, 1, 1], act, 950 + seed);
            let x = random_data(1, 3, 960 + seed);
            let spec =
                gauss_newton_gram(&mlp, &dataset(&x, None), &GramOptions::default()).unwrap();
            let m = ReducedModel::from_spectrum(&spec);
            if m.rank() == 0 || m.rank() > 3 {
                continue;
            }
            for sampling in [Sampling::WithoutReplacement, Sampling::WithReplacement] {
                for b in 1..=3 {
                    let crit = mean_square_critical_lr(&m, b, sampling, &BracketOptions::default())
                        .unwrap();
                    let eta = 0.8 * crit.eta_lower().unwrap();
                    let q4 = exact_qk(&m, b, 4, sampling)
                        .unwrap()
                        .lambda_max(eta)
                        .unwrap();
                    let full = full_tensor_lambda_max(&m, b, sampling, eta);
                    assert!(
                        (q4 - full).abs() < 1e-11,
                        "seed {seed} B {b}: {q4} vs {full}"
                    );
                    let q2 = exact_qk(&m, b, 2, sampling)
                        .unwrap()
                        .lambda_max(eta)
                        .unwrap();
                    let rho = mean_square_rho(&m, eta, crit.p, &BracketOptions::default())
                        .unwrap()
                        .value;
                    assert!((q2 - rho).abs() < 1e-12, "seed {seed} B {b}: {q2} vs {rho}");
                }
            }
        }
    }

    #[test]
    fn sym_tensor_basis_is_complete() {
        // dim Sym^4(ℝ^3) = binom(6, 4) = 15, and the permutation counts sum to 3^4.
        let b = sym_tensor_basis(3, 4);
        assert_eq!(b.len(), 15);
        assert_eq!(b.iter().map(|x| x.1).sum::<f64>(), 81.0);
        assert_eq!(distinct_permutations(&[0, 0, 1, 2]).len(), 12);
    }
}
