//! k-th moments of the linearized SGD recursion (THEORY.md T6, even k ≥ 2).
//!
//! - **T6(d) inputs from the Gram path**: for the directional test `E_ξ[(1 − η vᵀH_ξv)^k] ≤ 1`
//!   with v = the top eigenvector of each `H_i = J_iᵀJ_i`: `u_i`, the top eigenvector of
//!   `J_iJ_iᵀ = n·K_(i),(i)`, `λ_i = λ_max(J_iJ_iᵀ)` ([`per_sample_top`]) and the values
//!   `x_j = ‖(J_jJ_iᵀ)u_i‖²/λ_i = ‖n·K_(j),(i)u_i‖²/λ_i` ([`directional_values`]). The test itself
//!   (closed forms for k ≤ 4, the exact dynamic programme otherwise) and T6(e)'s
//!   `β_k = (B/η)(1 + π^{−1/k})` are evaluated by `flatcert_bounds::t6` (`directional_test`,
//!   `beta_k`); the tests below check them against brute-force batch enumeration.
//! - **T6(a–c)** for tiny problems (r ≤ 12): the exact `𝒬_k = E[(I − ηh_ξ)^{⊗k}]` on `Sym^k(ℝ^r)`
//!   by enumerating batches, its λ_max, and `k_moment_critical_lr_k{k}` by bisection (the stable η
//!   form an interval, T6c).
//!
//! k-stability for k ≥ 4 cannot be checked on real networks: where it is only assumed the output
//! says so; a violated test proves **the k-th moment** unstable, never "SGD diverges" (T6 failure
//! modes).

use nalgebra::DMatrix;

use super::gram::GramSpectrum;
use super::stability::{ReducedModel, Sampling, noise_p};
use crate::error::{Error, Result};
use crate::linalg::sym_eigen;
use crate::quantity::Quantity;

/// Work of building the exact 𝒬_k by batch enumeration (THEORY T6(c)): the number of batches
/// (`binom(n, B)` for model S, `binom(n + B − 1, B)` multisets for S′) × `dim²` × `k!`, with
/// `dim = binom(r + k − 1, k)` the dimension of Sym^k(ℝ^r); +∞ when it overflows. Returns
/// `(batches, work)`; callers compare the work with their limit before calling [`exact_qk`].
pub fn enumeration_work(
    r: usize,
    n: usize,
    batch: usize,
    k: usize,
    sampling: Sampling,
) -> (f64, f64) {
    let dim = binomial_f64(r + k - 1, k);
    let batches = match sampling {
        Sampling::WithoutReplacement => binomial_f64(n, batch),
        Sampling::WithReplacement => binomial_f64(n + batch - 1, batch),
    };
    let fact: f64 = (1..=k).map(|t| t as f64).product();
    (batches, batches * dim * dim * fact)
}

/// `binom(a, b)` in floating point (+∞ when huge).
fn binomial_f64(a: usize, b: usize) -> f64 {
    let b = b.min(a.saturating_sub(b));
    (0..b).fold(1.0, |acc, t| acc * (a - t) as f64 / (t + 1) as f64)
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
    // k-th moment stability needs even k ≥ 2 (T6); a k beyond u32 saturates to an odd number.
    flatcert_bounds::moments::stability_order(u32::try_from(k).unwrap_or(u32::MAX))
        .map_err(|e| Error::invalid_argument("--k", e.to_string()))?;
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

    /// Counted by hand: n = 4, B = 2 has binom(4, 2) = 6 subsets (S) and binom(5, 2) = 10
    /// multisets (S′); r = 2, k = 2 gives dim Sym²(ℝ²) = 3 and k! = 2.
    #[test]
    fn enumeration_work_counts_batches_and_dimension() {
        assert_eq!(
            enumeration_work(2, 4, 2, 2, Sampling::WithoutReplacement),
            (6.0, 6.0 * 9.0 * 2.0)
        );
        assert_eq!(
            enumeration_work(2, 4, 2, 2, Sampling::WithReplacement),
            (10.0, 10.0 * 9.0 * 2.0)
        );
        assert!(enumeration_work(12, 100_000, 5_000, 4, Sampling::WithoutReplacement).1 > 1e300);
    }

    /// The bounds crate's T6(d) moments, against this crate's batch enumeration (an independent
    /// route: every batch and its probability, [`enumerate_batches`]).
    #[test]
    fn bounds_moments_match_batch_enumeration() {
        use flatcert_bounds::t6::{batch_sum_moment_closed, batch_sum_moments_dp};
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
                    let scale = brute.iter().fold(1.0f64, |m, v| m.max(v.abs()));
                    for q in 1..=6 {
                        assert!((dp[q] - brute[q]).abs() < 1e-12 * scale, "dp q={q}");
                    }
                    for q in 1..=4u32 {
                        let closed = batch_sum_moment_closed(&z, b, q, sampling)
                            .unwrap()
                            .unwrap();
                        assert!(
                            (closed - brute[q as usize]).abs() < 1e-12 * scale,
                            "closed q={q} B={b} {sampling:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn golden_directional_tests_and_betas() {
        use flatcert_bounds::BatchModel;
        use flatcert_bounds::t6::{beta_k, directional_test};
        // THEORY §5 T6(d) at B = 1, k = 2, η = 0.9η*_2 (values printed to 6 digits).
        let spec =
            gauss_newton_gram(&golden::net(), &golden::data(), &GramOptions::default()).unwrap();
        let top = per_sample_top(&spec).unwrap();
        assert!((top.lambda[0] - 4.0).abs() < 1e-13 && (top.lambda[2] - 10.0).abs() < 1e-13);
        let eta = 0.9 * 0.2400821025;
        let expected_x = [[4.0, 0.25, 0.25], [0.25, 4.0, 9.0], [0.1, 3.6, 10.0]];
        let expected = [0.602726, 0.601896, 0.784637];
        let wo = Sampling::WithoutReplacement;
        for i in 0..3 {
            let x = directional_values(&spec, &top, i);
            for (a, b) in x.iter().zip(expected_x[i]) {
                assert!((a - b).abs() < 1e-13, "{x:?}");
            }
            let v = directional_test(&x, eta, 1, 2, wo).unwrap().value;
            assert!((v - expected[i]).abs() < 1e-6, "{v}");
            // k = 6 goes through the DP; it must agree with brute force.
            let z: Vec<f64> = x.iter().map(|v| 1.0 - eta * v).collect();
            let v6 = directional_test(&x, eta, 2, 6, wo).unwrap().value;
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
            let m = BatchModel::new(3, b, s).unwrap();
            assert!((beta_k(eta2, &m, 2).unwrap().value - b2).abs() < 1e-5);
            assert!((beta_k(eta4, &m, 4).unwrap().value - b4).abs() < 1e-5);
        }
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
