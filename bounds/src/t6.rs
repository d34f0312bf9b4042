//! T6 — k-th moments (even k ≥ 2): per-sample bound, exact directional test, moment corollary.
//!
//! - (e) λ_i = λ_max(H_i) ≤ β_k := (B/η)(1 + π^(−1/k)) for every i, under k-th moment stability.
//! - (d) For every unit v: E_ξ[(1 − η vᵀH_ξv)^k] ≤ 1. With x_j := vᵀH_jv and z_j := 1 − ηx_j,
//!   E[(1 − ηX_ξ)^k] = E[S^k]/B^k where S = Σ_{j∈ξ} z_j (|ξ| = B). E[S^k] is computed on z (no
//!   alternating sum) by the exact dynamic programme of T6(d) or by the closed forms for k ≤ 4.
//! - (f) (1/n)Σλ_i^k ≤ β_k^k ≤ 2^{k−1}(B/η)^k(1 + 1/π); (1/n)Σ(tr H_i)^k ≤ C^kβ_k^k.
//!
//! The hypothesis "k-th moment stable at (η, B)" cannot be checked for real networks when k ≥ 4:
//! it is *assumed* unless the caller supplies a certified check. A violated per-sample or
//! directional test refutes **the k-th moment only**: mean-square stability may still hold.

use serde::{Deserialize, Serialize};

use crate::error::{Result, even_order, finite, learning_rate, non_empty, nonneg};
use crate::kind::{Scalar, Value};
use crate::round::gamma;
use crate::sampling::{BatchModel, Sampling, falling_factorial};
use crate::verdict::{Check, Status, Verdict};

/// β_k = (B/η)(1 + π^(−1/k)) (T6e) as an exact [`Value`] with its rounding tolerance
/// (`powf` under the libm hypothesis). Errors for odd k or k = 0.
///
/// ```
/// use flatcert_bounds::{BatchModel, Sampling};
/// use flatcert_bounds::t6::beta_k;
/// // THEORY §5: B = 1, k = 4 at η = η*_4 = 0.2198950262 gives β_4 = 10.532635.
/// let m = BatchModel::new(3, 1, Sampling::WithoutReplacement).unwrap();
/// let b = beta_k(0.2198950262, &m, 4).unwrap();
/// assert!((b.value - 10.532635).abs() < 5e-7);
/// assert!(beta_k(0.2, &m, 3).is_err());
/// ```
pub fn beta_k(eta: f64, batch: &BatchModel, k: u32) -> Result<Value> {
    let eta = learning_rate(eta)?;
    even_order(k)?;
    batch.validate()?;
    let one = Value::constant(1.0);
    let b_over_eta = Value::constant(batch.batch as f64) / Value::constant(eta);
    Ok(b_over_eta * (one + batch.pi_value().powf(-1.0 / k as f64)))
}

/// Upper bound of (1/n)Σλ_i^k (T6f, relaxed): 2^{k−1}(B/η)^k(1 + 1/π).
pub fn moment_corollary_relaxed(eta: f64, batch: &BatchModel, k: u32) -> Result<Value> {
    let eta = learning_rate(eta)?;
    even_order(k)?;
    batch.validate()?;
    let b_over_eta = Value::constant(batch.batch as f64) / Value::constant(eta);
    let one = Value::constant(1.0);
    Ok(Value::constant(2f64.powi(k as i32 - 1))
        * b_over_eta.powf(k as f64)
        * (one + one / batch.pi_value()))
}

/// max_i λ_i/β_k and its argmax (T6 Check).
pub fn per_sample_ratio(lambdas: &[f64], beta: f64) -> Result<(f64, usize)> {
    non_empty("λ_i", lambdas)?;
    let beta = crate::error::positive("β_k", beta)?;
    let mut best = (f64::NEG_INFINITY, 0);
    for (i, &l) in lambdas.iter().enumerate() {
        let r = nonneg("λ_i", l)? / beta;
        if r > best.0 {
            best = (r, i);
        }
    }
    Ok(best)
}

/// Binomial coefficients C(q, l) for q, l ≤ k, exact in f64 for k ≤ 56.
fn binomials(k: usize) -> Vec<Vec<f64>> {
    let mut c = vec![vec![0.0; k + 1]; k + 1];
    for q in 0..=k {
        c[q][0] = 1.0;
        for l in 1..=q {
            c[q][l] = c[q - 1][l - 1] + if l < q { c[q - 1][l] } else { 0.0 };
        }
    }
    c
}

fn validate_z(z: &[f64], batch: usize, sampling: Sampling) -> Result<BatchModel> {
    non_empty("z", z)?;
    for &x in z {
        finite("z_j", x)?;
    }
    BatchModel::new(z.len(), batch, sampling)
}

/// E[S^q] for q = 0..=k, S = Σ_{j∈ξ} z_j over a uniform batch of size B from the n = `z.len()`
/// values (T6(d) dynamic programme).
///
/// - Without replacement: `F[b][q] := E[S^q·1{b chosen so far}]`, `F[0][0] = 1`; sample i (ν
///   samples left) is taken with probability (B − b)/ν:
///   `F[b+1][q] += ((B−b)/ν)·Σ_{l≤q} C(q,l)·z_i^(q−l)·F[b][l]`, `F[b][q] ·= 1 − (B−b)/ν`,
///   iterating b **downwards** in place (§6 item 8). Cost O(nBk²).
/// - With replacement: m^{(b)}_q = Σ_{l≤q} C(q,l) m^{(b−1)}_l m_{q−l} with m_q = (1/n)Σz_j^q.
///
/// ```
/// use flatcert_bounds::Sampling;
/// use flatcert_bounds::t6::batch_sum_moments_dp;
/// // n = 2, B = 1: S is z_1 or z_2 with probability ½.
/// let m = batch_sum_moments_dp(&[1.0, 3.0], 1, 2, Sampling::WithoutReplacement).unwrap();
/// assert_eq!(m, vec![1.0, 2.0, 5.0]);
/// ```
pub fn batch_sum_moments_dp(
    z: &[f64],
    batch: usize,
    k: u32,
    sampling: Sampling,
) -> Result<Vec<f64>> {
    let model = validate_z(z, batch, sampling)?;
    let k = k as usize;
    let c = binomials(k);
    let n = model.n;
    match sampling {
        Sampling::WithReplacement => {
            let mut m = vec![0.0; k + 1];
            for &zj in z {
                let mut pw = 1.0;
                for mq in m.iter_mut() {
                    *mq += pw;
                    pw *= zj;
                }
            }
            m.iter_mut().for_each(|x| *x /= n as f64);
            let mut mo = vec![0.0; k + 1];
            mo[0] = 1.0;
            for _ in 0..batch {
                mo = (0..=k)
                    .map(|q| (0..=q).map(|l| c[q][l] * mo[l] * m[q - l]).sum())
                    .collect();
            }
            Ok(mo)
        }
        Sampling::WithoutReplacement => {
            let mut f = vec![vec![0.0; k + 1]; batch + 1];
            f[0][0] = 1.0;
            let mut zp = vec![1.0; k + 1];
            for (i, &zi) in z.iter().enumerate() {
                for q in 1..=k {
                    zp[q] = zp[q - 1] * zi;
                }
                let left = n - i;
                for b in (0..=batch.min(i)).rev() {
                    let need = batch - b;
                    if need == 0 || need > left {
                        continue; // b = B stays with probability 1; need > left has mass 0
                    }
                    let take = need as f64 / left as f64;
                    let stay = (left - need) as f64 / left as f64;
                    let (lower, upper) = f.split_at_mut(b + 1);
                    let (fb, fb1) = (&mut lower[b], &mut upper[0]);
                    for q in 0..=k {
                        let s: f64 = (0..=q).map(|l| c[q][l] * zp[q - l] * fb[l]).sum();
                        fb1[q] += take * s;
                    }
                    fb.iter_mut().for_each(|x| *x *= stay);
                }
            }
            Ok(f.swap_remove(batch))
        }
    }
}

/// E[S^k] by the T6(d) dynamic programme; see [`batch_sum_moments_dp`].
pub fn batch_sum_moment_dp(z: &[f64], batch: usize, k: u32, sampling: Sampling) -> Result<f64> {
    Ok(batch_sum_moments_dp(z, batch, k, sampling)?[k as usize])
}

/// One term of a closed form: (number of distinct samples s, coefficient, exponents of P_1..P_4).
type Term = (usize, f64, [u8; 4]);

/// Closed forms of T6(d) without replacement: E S^k = Σ coef·π_s·Π P_q^{e_q}.
const WITHOUT: [&[Term]; 5] = [
    &[(0, 1.0, [0, 0, 0, 0])],
    &[(1, 1.0, [1, 0, 0, 0])],
    &[
        (1, 1.0, [0, 1, 0, 0]),
        (2, 1.0, [2, 0, 0, 0]),
        (2, -1.0, [0, 1, 0, 0]),
    ],
    &[
        (1, 1.0, [0, 0, 1, 0]),
        (2, 3.0, [1, 1, 0, 0]),
        (2, -3.0, [0, 0, 1, 0]),
        (3, 1.0, [3, 0, 0, 0]),
        (3, -3.0, [1, 1, 0, 0]),
        (3, 2.0, [0, 0, 1, 0]),
    ],
    &[
        (1, 1.0, [0, 0, 0, 1]),
        (2, 4.0, [1, 0, 1, 0]),
        (2, 3.0, [0, 2, 0, 0]),
        (2, -7.0, [0, 0, 0, 1]),
        (3, 6.0, [2, 1, 0, 0]),
        (3, -6.0, [0, 2, 0, 0]),
        (3, -12.0, [1, 0, 1, 0]),
        (3, 12.0, [0, 0, 0, 1]),
        (4, 1.0, [4, 0, 0, 0]),
        (4, -6.0, [2, 1, 0, 0]),
        (4, 3.0, [0, 2, 0, 0]),
        (4, 8.0, [1, 0, 1, 0]),
        (4, -6.0, [0, 0, 0, 1]),
    ],
];

/// Closed forms with replacement: E S^k = Σ coef·(B)_s·Π m_q^{e_q}, m_q = P_q/n (sum over set
/// partitions of the k factors; s blocks).
const WITH: [&[Term]; 5] = [
    &[(0, 1.0, [0, 0, 0, 0])],
    &[(1, 1.0, [1, 0, 0, 0])],
    &[(1, 1.0, [0, 1, 0, 0]), (2, 1.0, [2, 0, 0, 0])],
    &[
        (1, 1.0, [0, 0, 1, 0]),
        (2, 3.0, [1, 1, 0, 0]),
        (3, 1.0, [3, 0, 0, 0]),
    ],
    &[
        (1, 1.0, [0, 0, 0, 1]),
        (2, 4.0, [1, 0, 1, 0]),
        (2, 3.0, [0, 2, 0, 0]),
        (3, 6.0, [2, 1, 0, 0]),
        (4, 1.0, [4, 0, 0, 0]),
    ],
];

/// Evaluate a closed form: (value, magnitude) where the magnitude uses |coef| and the power sums
/// of |z| and bounds every rounded intermediate.
fn eval_closed(
    terms: &[Term],
    weight: impl Fn(usize) -> f64,
    sums: &[f64; 5],
    abs_sums: &[f64; 5],
) -> (f64, f64) {
    let mono = |s: &[f64; 5], e: &[u8; 4]| -> f64 {
        (0..4).map(|q| s[q + 1].powi(i32::from(e[q]))).product()
    };
    terms.iter().fold((0.0, 0.0), |(v, m), (s, coef, e)| {
        let w = weight(*s);
        (
            v + coef * w * mono(sums, e),
            m + coef.abs() * w * mono(abs_sums, e),
        )
    })
}

fn power_sums(z: &[f64], scale: f64) -> ([f64; 5], [f64; 5]) {
    let mut p = [0.0; 5];
    let mut a = [0.0; 5];
    for &x in z {
        let mut pw = 1.0;
        let mut aw = 1.0;
        for q in 0..5 {
            p[q] += pw;
            a[q] += aw;
            pw *= x;
            aw *= x.abs();
        }
    }
    (p.map(|x| x * scale), a.map(|x| x * scale))
}

fn closed_with_magnitude(
    z: &[f64],
    batch: usize,
    k: u32,
    sampling: Sampling,
) -> Result<Option<(f64, f64)>> {
    let model = validate_z(z, batch, sampling)?;
    if k > 4 {
        return Ok(None);
    }
    let k = k as usize;
    Ok(Some(match sampling {
        Sampling::WithoutReplacement => {
            let (p, a) = power_sums(z, 1.0);
            eval_closed(WITHOUT[k], |s| model.pi_s(s), &p, &a)
        }
        Sampling::WithReplacement => {
            let (m, a) = power_sums(z, 1.0 / model.n as f64);
            eval_closed(WITH[k], |s| falling_factorial(batch, s), &m, &a)
        }
    }))
}

/// E[S^k] by the O(n) closed forms of T6(d) for k ≤ 4 (`None` for k > 4). With
/// P_q := Σ_j z_j^q and π_s := (B)_s/(n)_s:
/// E S² = π_1P_2 + π_2(P_1² − P_2);
/// E S³ = π_1P_3 + 3π_2(P_1P_2 − P_3) + π_3(P_1³ − 3P_1P_2 + 2P_3);
/// E S⁴ = π_1P_4 + π_2(4P_1P_3 + 3P_2² − 7P_4) + 6π_3(P_1²P_2 − P_2² − 2P_1P_3 + 2P_4)
///        + π_4(P_1⁴ − 6P_1²P_2 + 3P_2² + 8P_1P_3 − 6P_4);
/// with replacement (m_q := P_q/n) E S² = Bm_2 + (B)_2m_1², E S³ = Bm_3 + 3(B)_2m_1m_2 + (B)_3m_1³,
/// E S⁴ = Bm_4 + (B)_2(4m_1m_3 + 3m_2²) + 6(B)_3m_1²m_2 + (B)_4m_1⁴.
pub fn batch_sum_moment_closed(
    z: &[f64],
    batch: usize,
    k: u32,
    sampling: Sampling,
) -> Result<Option<f64>> {
    Ok(closed_with_magnitude(z, batch, k, sampling)?.map(|(v, _)| v))
}

/// Work budget (n·B·(k+1)²) below which the directional test uses the dynamic programme.
const DP_BUDGET: f64 = 2e7;

/// The exact directional test value E_ξ[(1 − ηX_ξ)^k] = E[S^k]/B^k on z_j = 1 − ηx_j (T6d, §6
/// item 7), as an exact [`Value`] whose tol is an a-priori running-error estimate
/// γ_m·E[(Σ|z|)^k]/B^k (m = n(k+3) + 2k + 8; the same computation on |z| bounds every
/// intermediate). Uses the dynamic programme when n·B·(k+1)² ≤ 2·10⁷ or k > 4, else the closed
/// form.
///
/// ```
/// use flatcert_bounds::Sampling;
/// use flatcert_bounds::t6::directional_test;
/// // THEORY §5: B = 1, k = 2, η = 0.9η*_2, v = a_1/2: x = (4, 0.25, 0.25) gives 0.602726.
/// let eta = 0.9 * 0.2400821025;
/// let t = directional_test(&[4.0, 0.25, 0.25], eta, 1, 2, Sampling::WithoutReplacement).unwrap();
/// assert!((t.value - 0.602726).abs() < 5e-7);
/// ```
pub fn directional_test(
    x: &[f64],
    eta: f64,
    batch: usize,
    k: u32,
    sampling: Sampling,
) -> Result<Value> {
    let eta = learning_rate(eta)?;
    even_order(k)?;
    non_empty("x", x)?;
    let z: Vec<f64> = x
        .iter()
        .map(|&xj| finite("x_j", xj).map(|xj| 1.0 - eta * xj))
        .collect::<Result<_>>()?;
    let n = z.len();
    let work = n as f64 * batch as f64 * f64::from(k + 1).powi(2);
    let (value, magnitude) = if work <= DP_BUDGET || k > 4 {
        let v = batch_sum_moment_dp(&z, batch, k, sampling)?;
        let za: Vec<f64> = z.iter().map(|x| x.abs()).collect();
        (v, batch_sum_moment_dp(&za, batch, k, sampling)?)
    } else {
        closed_with_magnitude(&z, batch, k, sampling)?.unwrap_or((f64::NAN, f64::NAN))
    };
    let bk = (batch as f64).powi(k as i32);
    if !(value.is_finite() && magnitude.is_finite() && bk.is_finite()) {
        return Ok(overflow_lower_bound(&z, k));
    }
    let ops = n * (k as usize + 3) + 2 * k as usize + 8;
    let tol = crate::round::mul_up(gamma(ops), magnitude / bk);
    Ok(Value::exact(value / bk, tol))
}

/// The directional test when E[S^k] or B^k overflows f64 (|1 − ηx_j| ≳ 2^(1024/k)): Jensen's
/// inequality for the convex t ↦ t^k (k even) gives E[(S/B)^k] ≥ (E[S/B])^k = z̄^k, z̄ = (1/n)Σz_j
/// (the batch mean is unbiased under both sampling schemes). Returned as a rigorous lower bound
/// (kind `lower`, capped at `f64::MAX`): it refutes the test when it exceeds 1 and is otherwise
/// inconclusive, never a NaN and never a certified pass. The rounding of z_j = 1 − ηx_j
/// (≤ u(1 + 2|z_j|)) and of the mean (γ_n·mean|z|) is subtracted.
fn overflow_lower_bound(z: &[f64], k: u32) -> Value {
    use crate::round::{add_up, mul_up, pow_down, sub_down};
    let n = z.len() as f64;
    let mean = z.iter().sum::<f64>() / n;
    let mean_abs = mul_up(
        z.iter().map(|x| x.abs()).sum::<f64>() / n,
        1.0 + gamma(z.len() + 2),
    );
    let err = mul_up(gamma(z.len() + 4), add_up(1.0, mul_up(2.0, mean_abs)));
    let lower_abs = sub_down(mean.abs(), err).max(0.0);
    let lower = pow_down(lower_abs, f64::from(k));
    Value::lower_bound(if lower.is_finite() { lower } else { f64::MAX }, 0.0)
}

/// One directional test result, computed by the caller with [`directional_test`] for
/// v = the top eigenvector of H_i.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DirectionalResult {
    /// The sample i whose top eigenvector is the direction.
    pub sample: usize,
    /// E_ξ[(1 − η vᵀH_ξv)^k].
    pub value: Value,
}

/// T6 input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct T6Input {
    /// η (theory convention), the user's learning rate.
    pub eta: f64,
    /// (n, B, sampling).
    pub batch: BatchModel,
    /// Even moment order k ≥ 2.
    pub k: u32,
    /// Number of outputs C.
    pub outputs: usize,
    /// λ_i = λ_max(J_iᵀJ_i) for every sample (kind exact).
    pub lambdas: Vec<f64>,
    /// A-priori relative rounding of the λ_i.
    #[serde(default)]
    pub lambda_rel_tol: f64,
    /// Directional test results (possibly for a subset of samples).
    #[serde(default)]
    pub directional: Vec<DirectionalResult>,
    /// A certified check of k-th moment stability (e.g. the T5 stability check for k = 2);
    /// `None` ⇒ the hypothesis is assumed.
    #[serde(default)]
    pub k_stability: Option<Check>,
}

/// T6 verdict: per-sample bound, worst directional test, moment corollary.
pub fn check(input: &T6Input) -> Result<Verdict> {
    let k = even_order(input.k)?;
    let beta = beta_k(input.eta, &input.batch, k)?;
    crate::error::same_len("λ_i (one per sample)", input.batch.n, input.lambdas.len())?;
    let rt = nonneg("λ relative tolerance", input.lambda_rel_tol)?;
    let (ratio, imax) = per_sample_ratio(&input.lambdas, beta.value)?;
    let lmax = input.lambdas[imax];
    let mut v = Verdict::new("T6", "k-th moments: per-sample bound and directional test");
    match &input.k_stability {
        Some(c) => v.hyp(Check {
            name: "k_stable".into(),
            ..c.clone()
        }),
        None => v.hyp(Check::assumed(
            "k_stable",
            format!("assumed: {k}-th moment stable at (η, B)"),
            None,
        )),
    }
    v.hyp(Check::le(
        "per_sample",
        format!(
            "max_i λ_i ≤ β_{k} = (B/η)(1 + π^(−1/{k})) (necessary for {k}-th moment stability, T6e)"
        ),
        Value::exact(lmax, rt * lmax),
        beta,
    ));
    if !input.directional.is_empty() {
        let mut worst = &input.directional[0];
        let mut failures = 0;
        for d in &input.directional {
            d.value.validate("directional test")?;
            if d.value.value > worst.value.value {
                worst = d;
            }
            if Check::le("", "", d.value, Value::constant(1.0)).status == Status::Violated {
                failures += 1;
            }
        }
        v.hyp(Check::le(
            "directional",
            format!(
                "E_ξ[(1 − η vᵀH_ξv)^{k}] ≤ 1 for v = top eigenvector of H_i, worst i = {} \
                 (necessary for {k}-th moment stability, T6d)",
                worst.sample
            ),
            worst.value,
            Value::constant(1.0),
        ));
        v.conclude(
            "directional_failures",
            format!(
                "directions with a violated test, of {}",
                input.directional.len()
            ),
            Value::exact(failures as f64, 0.0),
        );
    }
    v.conclude("beta_k", format!("β_{k} at the user's η"), beta);
    v.conclude(
        "max_ratio",
        format!("max_i λ_i/β_{k} (≤ 1 under {k}-th moment stability)"),
        Value::computed(ratio, 2),
    );
    v.conclude(
        "argmax",
        "argmax_i λ_i/β_k (sample index)",
        Value::exact(imax as f64, 0.0),
    );
    corollary(&mut v, input, beta)?;
    if v.hypotheses
        .iter()
        .any(|c| c.status == Status::Violated && c.name != "k_stable")
    {
        v.note(if k == 2 {
            "A necessary test is violated: the second moment is not stable at (η, B), i.e. SGD \
             is not mean-square stable there (T5)."
                .to_string()
        } else {
            format!(
                "A necessary test is violated: the {k}-th moment is not stable at (η, B). This \
                 refutes the {k}-th moment only; mean-square stability (T5) may still hold."
            )
        });
    }
    if k > 2 {
        v.note(
            "β_k is evaluated at the user's η, never at η*_2 (k-stability needs η ≤ η*_k ≤ η*_2).",
        );
    }
    if input.batch.batch == input.batch.n {
        v.note("B = n: β = 2n/η is weaker than T4 because other samples are ignored; see the directional test.");
    }
    Ok(v)
}

fn corollary(v: &mut Verdict, input: &T6Input, beta: Value) -> Result<()> {
    let k = input.k;
    let kf = f64::from(k);
    let n = input.lambdas.len() as f64;
    let mean_pow = input.lambdas.iter().map(|l| l.powi(k as i32)).sum::<f64>() / n;
    let bk = beta.powf(kf);
    v.diag(Check::le_bound(
        "moment_corollary",
        format!("(1/n)Σλ_i^{k} ≤ β_{k}^{k} (T6f)"),
        Value::computed(mean_pow, input.lambdas.len() + 2 * k as usize),
        bk,
    ));
    v.conclude("beta_k_pow", format!("β_{k}^{k}"), bk);
    v.conclude(
        "moment_relaxed",
        format!("2^(k−1)(B/η)^k(1 + 1/π) ≥ β_{k}^{k} (T6f)"),
        moment_corollary_relaxed(input.eta, &input.batch, k)?,
    );
    v.conclude(
        "trace_moment",
        format!("(1/n)Σ(tr H_i)^{k} ≤ C^k β_k^k (T6f)"),
        Value::constant(input.outputs as f64).powf(kf) * bk,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflowing_directional_test_is_a_finite_lower_bound() {
        // |1 − ηx| = 1e6: (1e6)^64 overflows f64. The Jensen bound refutes the test (z̄^64 > 1)
        // with a finite value instead of a NaN.
        let x = [1e7, 1e7, 0.0];
        for s in [Sampling::WithoutReplacement, Sampling::WithReplacement] {
            let t = directional_test(&x, 0.1, 2, 64, s).unwrap();
            assert_eq!(t.kind, crate::kind::Kind::Lower, "{t:?}");
            assert!(t.value.is_finite() && t.value > 1.0, "{t:?}");
            assert!(t.validate("t").is_ok());
            let c = Check::le("d", "", t, Value::constant(1.0));
            assert_eq!(c.status, Status::Violated);
        }
        // z = 1 ∓ 1e6 averages to 1: the lower bound is just below 1, so the test is
        // inconclusive, never certified.
        let x = [1e7, -1e7];
        let t = directional_test(&x, 0.1, 1, 64, Sampling::WithoutReplacement).unwrap();
        assert_eq!(t.kind, crate::kind::Kind::Lower, "{t:?}");
        let c = Check::le("d", "", t, Value::constant(1.0));
        assert_ne!(c.status, Status::Certified);
    }

    fn model(b: usize, s: Sampling) -> BatchModel {
        BatchModel::new(3, b, s).unwrap()
    }

    #[test]
    fn binomials_are_exact() {
        let c = binomials(6);
        assert_eq!(c[6], vec![1.0, 6.0, 15.0, 20.0, 15.0, 6.0, 1.0]);
    }

    #[test]
    fn odd_or_zero_k_is_rejected() {
        let m = model(1, Sampling::WithoutReplacement);
        for k in [0, 1, 3, 5] {
            assert!(beta_k(0.2, &m, k).is_err());
            assert!(directional_test(&[1.0], 0.2, 1, k, Sampling::WithoutReplacement).is_err());
        }
        assert!(batch_sum_moment_dp(&[1.0, 2.0], 3, 2, Sampling::WithoutReplacement).is_err());
        assert!(batch_sum_moment_dp(&[], 1, 2, Sampling::WithReplacement).is_err());
    }

    #[test]
    fn verdict_never_says_sgd_unstable() {
        // Far too large η: every per-sample bound fails.
        let eta = 5.0;
        let x = [4.0, 0.25, 0.25];
        let d = directional_test(&x, eta, 1, 4, Sampling::WithoutReplacement).unwrap();
        let input = T6Input {
            eta,
            batch: model(1, Sampling::WithoutReplacement),
            k: 4,
            outputs: 1,
            lambdas: vec![4.0, 4.0, 10.0],
            lambda_rel_tol: 0.0,
            directional: vec![DirectionalResult {
                sample: 0,
                value: d,
            }],
            k_stability: None,
        };
        let v = check(&input).unwrap();
        assert_eq!(v.status(), Status::Violated);
        assert_eq!(v.check("k_stable").unwrap().status, Status::Assumed);
        let text = serde_json::to_string(&v).unwrap().to_lowercase();
        assert!(!text.contains("sgd unstable") && !text.contains("sgd is unstable"));
        assert!(
            v.notes
                .iter()
                .any(|n| n.contains("refutes the 4-th moment only"))
        );
    }
}

/// The k-th moment stability hypothesis of T6/T7/T8 from the mean-square one
/// ([`crate::t5::mean_square_hypothesis`]): for k = 2 it is that check itself; for k ≥ 4 a
/// *violation* refutes k-th moment stability too (E‖u‖^k ≥ (E‖u‖²)^{k/2}, so η*_k ≤ η*_2,
/// THEORY T6), while a certified or inconclusive one says nothing about k ≥ 4 (`None`: assumed).
pub fn k_stability(k: u32, mean_square: Option<&Check>) -> Option<Check> {
    let c = mean_square?.clone();
    if k == 2 {
        return Some(Check {
            statement: format!("mean-square (k = 2) stability at (η, B): {}", c.statement),
            ..c
        });
    }
    (c.status == Status::Violated).then(|| Check {
        statement: format!(
            "{k}-th moment stability at (η, B) fails because mean-square stability fails ({}) \
             and η*_{k} ≤ η*_2 (THEORY T6)",
            c.statement
        ),
        ..c
    })
}

#[cfg(test)]
mod k_stability_tests {
    use super::*;

    #[test]
    fn only_a_mean_square_violation_transfers_to_higher_k() {
        let ok = Check::given("stability", "s", Status::Certified);
        let bad = Check::given("stability", "s", Status::Violated);
        assert_eq!(
            k_stability(2, Some(&ok)).map(|c| c.status),
            Some(Status::Certified)
        );
        assert!(k_stability(4, Some(&ok)).is_none());
        let c = k_stability(4, Some(&bad)).unwrap();
        assert_eq!(c.status, Status::Violated);
        assert!(c.statement.contains("η*_4 ≤ η*_2"));
        assert!(k_stability(2, None).is_none());
    }
}
