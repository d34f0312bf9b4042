//! T8 — generalization near the training set.
//!
//! Under (D_ε) (each test pair lies within ε of a training input x_I, P(I = i) = w_i, with
//! ‖y − y_I‖ ≤ ε_y) and (L) (L_i bounds the input Jacobian on B(x_i, ε), e.g. T10):
//! - (a) ‖f(x) − y‖ ≤ ‖res_I‖ + εL_I + ε_y almost surely;
//! - (b) E‖f(x) − y‖ ≤ Σ_i w_i(‖res_i‖ + εL_i + ε_y), E½‖f(x) − y‖² ≤ Σ_i w_i½(‖res_i‖ + εL_i + ε_y)²;
//! - (c) uniform w: E‖f(x) − y‖ ≤ r̄ + ε_y + ε(G_{2k} + ω̄), ω_i := max(0, L_i − g_i) rounded up;
//! - (d) theory route: E‖f(x) − y‖ ≤ ε_y + ε(‖W‖₂√β_k/min_i‖x_i‖ + ω̄);
//! - (e) classification: P(error) ≤ Σ_i w_i·1{i not certified at ε}.
//!
//! (D_ε) cannot be verified from the training data: it is always listed as assumed, with the
//! held-out coverage when measured. This is a deterministic covering bound, not a PAC bound.

use serde::{Deserialize, Serialize};

use crate::error::{BoundsError, Result, non_empty, nonneg, same_len};
use crate::kind::{Scalar, Value};
use crate::round::add_up;
use crate::verdict::{Check, Status, Verdict};

/// Per training point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct T8Point {
    /// ‖res_i‖ = ‖f(x_i) − y_i‖ (exact).
    pub residual_norm: Value,
    /// L_i ≥ sup of ‖J_x‖₂ on B(x_i, ε) (upper; T10).
    pub lipschitz: Value,
    /// g_i = ‖J_x(x_i)‖₂ (exact), for the moment form (c).
    #[serde(default)]
    pub jacobian_norm: Option<Value>,
    /// Whether sample i is certified at radius ε (T9c), for the classification bound (e).
    #[serde(default)]
    pub certified: Option<bool>,
}

/// Held-out measurement of (D_ε).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Coverage {
    /// Number of held-out points.
    pub test_points: usize,
    /// Fraction of them with a training point within ε that meets the label condition: a count
    /// over the held-out points, kind exact.
    pub fraction_within: f64,
    /// Its tol: the division's rounding plus the share of points whose computed distance is
    /// within rounding of ε (they may be on either side).
    #[serde(default)]
    pub fraction_tol: f64,
    /// Median nearest-training-point distance.
    #[serde(default)]
    pub median_distance: Option<f64>,
    /// Largest nearest-training-point distance.
    #[serde(default)]
    pub max_distance: Option<f64>,
}

/// Inputs of the theory route (d).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct T8Theory {
    /// ‖W‖₂ (upper).
    pub w_spectral: Value,
    /// β_k at the user's η (T6e).
    pub beta_k: Value,
    /// min_i ‖x_i‖ (exact).
    pub min_x_norm: Value,
    /// The k-th moment stability hypothesis of T7 when it was checked (e.g. T5's verdict for
    /// k = 2, or its refutation for every k since η*_k ≤ η*_2); `None`: assumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k_stability: Option<Check>,
}

/// T8 input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct T8Input {
    /// ε: input radius of (D_ε).
    pub epsilon: f64,
    /// ε_y: label radius of (D_ε).
    pub epsilon_y: f64,
    /// Per training point.
    pub points: Vec<T8Point>,
    /// P(I = i) = w_i (default uniform 1/n); must be ≥ 0 and sum to 1 (within 1e-12·n).
    #[serde(default)]
    pub weights: Option<Vec<f64>>,
    /// Even k for the moment form (c).
    #[serde(default)]
    pub k: Option<u32>,
    /// Theory route (d).
    #[serde(default)]
    pub theory: Option<T8Theory>,
    /// Held-out coverage.
    #[serde(default)]
    pub coverage: Option<Coverage>,
    /// If (D_ε) holds only with probability 1 − δ and the loss is bounded by ℓ_max: (δ, ℓ_max).
    #[serde(default)]
    pub failure: Option<(f64, f64)>,
    /// mean_i ‖x_i‖, to say when ε is of the order of ‖x‖ (vacuous bound).
    #[serde(default)]
    pub mean_x_norm: Option<f64>,
}

/// (a) ‖res_I‖ + εL_I + ε_y.
pub fn pointwise_bound<N: Scalar>(residual: N, eps: N, lipschitz: N, eps_y: N) -> N {
    residual + eps * lipschitz + eps_y
}

/// ω_i = max(0, L_i − g_i) rounded up (T8c; §3 edge cases): an upper bound when L_i is an upper
/// bound and g_i exact.
pub fn omega(lipschitz: Value, jacobian_norm: Value) -> Value {
    (lipschitz.only_upper() - jacobian_norm).clamp_nonneg()
}

/// Power mean ((1/n)Σ x_i^q)^{1/q} (G_{2k} with q = 2k). When x^q overflows (large q), the same
/// mean is evaluated scaled by the largest point value m: m·((1/n)Σ(x_i/m)^q)^{1/q}.
pub fn power_mean<N: Scalar>(xs: &[N], q: f64) -> Result<N> {
    non_empty("power mean", xs)?;
    let n = N::constant(xs.len() as f64);
    let mean = |scale: N| {
        let s = xs
            .iter()
            .map(|&x| (x / scale).powf(q))
            .fold(N::constant(0.0), |a, b| a + b);
        scale * (s / n).powf(1.0 / q)
    };
    let s = xs
        .iter()
        .map(|&x| x.powf(q))
        .fold(N::constant(0.0), |a, b| a + b);
    let direct = (s / n).powf(1.0 / q);
    let m = xs.iter().map(|x| x.point()).fold(0.0f64, f64::max);
    if direct.point().is_finite() || !(m.is_finite() && m > 0.0) {
        return Ok(direct);
    }
    Ok(mean(N::constant(m)))
}

/// (c) r̄ + ε_y + ε(G_{2k} + ω̄).
pub fn moment_form_bound<N: Scalar>(r_mean: N, eps_y: N, eps: N, g_2k: N, omega_mean: N) -> N {
    r_mean + eps_y + eps * (g_2k + omega_mean)
}

/// (d) ε_y + ε(‖W‖₂√β_k/min_i‖x_i‖ + ω̄).
pub fn theory_route_bound<N: Scalar>(
    eps_y: N,
    eps: N,
    w_spectral: N,
    beta: N,
    min_x: N,
    omega_mean: N,
) -> N {
    eps_y + eps * (w_spectral * beta.sqrt() / min_x + omega_mean)
}

/// (e) Σ_i w_i·1{i not certified}, rounded up.
pub fn classification_error_bound(weights: &[f64], certified: &[bool]) -> Result<f64> {
    same_len("certified flags", weights.len(), certified.len())?;
    Ok(weights
        .iter()
        .zip(certified)
        .filter(|(_, c)| !**c)
        .fold(0.0, |a, (w, _)| add_up(a, *w)))
}

/// Weighted mean Σ w_i x_i (uniform: (1/n)Σx_i) with outward rounding.
fn weighted_mean(weights: Option<&[f64]>, xs: &[Value]) -> Value {
    match weights {
        Some(w) => w
            .iter()
            .zip(xs)
            .map(|(&wi, &x)| Value::constant(wi) * x)
            .fold(Value::constant(0.0), |a, b| a + b),
        None => {
            xs.iter().fold(Value::constant(0.0), |a, &b| a + b) / Value::constant(xs.len() as f64)
        }
    }
}

fn validate(input: &T8Input) -> Result<()> {
    nonneg("ε", input.epsilon)?;
    nonneg("ε_y", input.epsilon_y)?;
    non_empty("T8 points", &input.points)?;
    for p in &input.points {
        p.residual_norm.validate_nonneg("‖res_i‖")?;
        p.lipschitz.validate_nonneg("L_i")?;
        if let Some(g) = p.jacobian_norm {
            g.validate_nonneg("‖J_x(x_i)‖₂")?;
        }
    }
    if let Some(w) = &input.weights {
        same_len("weights", input.points.len(), w.len())?;
        let mut s = 0.0;
        for &wi in w {
            s += nonneg("w_i", wi)?;
        }
        if (s - 1.0).abs() > 1e-12 * w.len() as f64 {
            return Err(BoundsError::Precondition {
                what: "T8 weights",
                reason: "the weights w_i must sum to 1",
            });
        }
    }
    Ok(())
}

/// T8 verdict: the certified bound (b) and, when possible, (c), (d), (e), with every assumption.
pub fn check(input: &T8Input) -> Result<Verdict> {
    validate(input)?;
    let w = input.weights.as_deref();
    let eps = Value::constant(input.epsilon);
    let eps_y = Value::constant(input.epsilon_y);
    let res: Vec<Value> = input.points.iter().map(|p| p.residual_norm).collect();
    let lip: Vec<Value> = input
        .points
        .iter()
        .map(|p| p.lipschitz.only_upper())
        .collect();
    let per: Vec<Value> = res
        .iter()
        .zip(&lip)
        .map(|(&r, &l)| pointwise_bound(r, eps, l, eps_y))
        .collect();
    let mut v = Verdict::new("T8", "Generalization near the training set");
    v.hyp(Check::assumed(
        "d_eps",
        format!(
            "assumed (D_ε): every test pair (x, y) has a training index I, P(I = i) = w_i, with \
             ‖x − x_I‖₂ ≤ ε = {} and ‖y − y_I‖ ≤ ε_y = {}; not verifiable from training data",
            input.epsilon, input.epsilon_y
        ),
        None,
    ));
    let all_upper = input.points.iter().all(|p| p.lipschitz.has_upper());
    v.hyp(Check::given(
        "lipschitz",
        "(L) L_i ≥ sup‖J_x‖₂ on B(x_i, ε) for every i (T10; rests on the libm hypothesis for smooth σ)",
        if all_upper { Status::Certified } else { Status::Estimated },
    ));
    let r_mean = weighted_mean(w, &res);
    let l_mean = weighted_mean(w, &lip);
    let mut bound = weighted_mean(w, &per);
    let sq: Vec<Value> = per.iter().map(|&b| Value::constant(0.5) * b * b).collect();
    let mut bound_sq = weighted_mean(w, &sq);
    if let Some((delta, loss_max)) = input.failure {
        let extra =
            Value::constant(nonneg("δ", delta)?) * Value::constant(nonneg("ℓ_max", loss_max)?);
        bound = bound + extra;
        bound_sq = bound_sq + extra;
        v.note("(D_ε) holds only with probability 1 − δ: δ·ℓ_max is added to both bounds.");
    }
    v.conclude(
        "expected_error",
        "E‖f(x) − y‖ ≤ Σ w_i(‖res_i‖ + εL_i + ε_y) (T8b)",
        bound,
    );
    v.conclude(
        "expected_half_sq_error",
        "E½‖f(x) − y‖² ≤ Σ w_i ½(‖res_i‖ + εL_i + ε_y)² (T8b)",
        bound_sq,
    );
    v.conclude("part_residual", "r̄ = Σ w_i‖res_i‖", r_mean);
    v.conclude("part_lipschitz", "ε·Σ w_i L_i", eps * l_mean);
    v.conclude("part_label", "ε_y", eps_y);
    moment_and_theory(&mut v, input, eps, eps_y, r_mean)?;
    classification(&mut v, input)?;
    coverage(&mut v, input)?;
    v.note("This is a deterministic covering bound, not a PAC bound: it has no sample-size term.");
    Ok(v)
}

fn moment_and_theory(
    v: &mut Verdict,
    input: &T8Input,
    eps: Value,
    eps_y: Value,
    r_mean: Value,
) -> Result<()> {
    let gs: Option<Vec<Value>> = input.points.iter().map(|p| p.jacobian_norm).collect();
    let Some(gs) = gs else { return Ok(()) };
    if input.weights.is_some() {
        v.note(
            "The moment form (c) and the theory route (d) assume uniform weights; not reported.",
        );
        return Ok(());
    }
    let omegas: Vec<Value> = input
        .points
        .iter()
        .zip(&gs)
        .map(|(p, &g)| omega(p.lipschitz, g))
        .collect();
    let omega_mean = weighted_mean(None, &omegas);
    let omega_max = omegas
        .iter()
        .fold(Value::constant(0.0), |a, &b| Scalar::max(a, b));
    v.conclude(
        "omega_mean",
        "ω̄ = mean max(0, L_i − ‖J_x(x_i)‖₂), rounded up (T8c)",
        omega_mean,
    );
    v.conclude("omega_max", "ω_max = max_i ω_i (T9d)", omega_max);
    if let Some(k) = input.k {
        crate::error::even_order(k)?;
        let g2k = power_mean(&gs, 2.0 * f64::from(k))?;
        v.conclude(
            "g_2k",
            format!("G_{} = ((1/n)Σ‖J_x(x_i)‖₂^{})^(1/{})", 2 * k, 2 * k, 2 * k),
            g2k,
        );
        v.conclude(
            "moment_form",
            "E‖f(x) − y‖ ≤ r̄ + ε_y + ε(G_2k + ω̄) (T8c)",
            moment_form_bound(r_mean, eps_y, eps, g2k, omega_mean),
        );
    }
    if let Some(t) = &input.theory {
        t.w_spectral.validate_nonneg("‖W‖₂")?;
        t.beta_k.validate_nonneg("β_k")?;
        t.min_x_norm.validate_nonneg("min‖x_i‖")?;
        let refuted = t
            .k_stability
            .as_ref()
            .is_some_and(|c| c.status == Status::Violated);
        match &t.k_stability {
            // The theory route's stability hypothesis is refuted: its number would mean nothing,
            // so it is not computed; (a)–(c) do not use stability and keep their status.
            Some(ch) if refuted => {
                v.diag(Check {
                    name: "k_stable".into(),
                    ..ch.clone()
                });
                v.note(
                    "Theory route (d) not computed: its hypothesis \"k-th moment stable at \
                     (η, B)\" is refuted (see k_stable); the bounds (a)–(c) do not use stability.",
                );
            }
            Some(ch) => {
                v.hyp(Check {
                    name: "k_stable".into(),
                    ..ch.clone()
                });
                v.hyp(Check::assumed(
                    "t7_hypotheses",
                    "assumed for (d): interpolation (T7)",
                    None,
                ));
            }
            None => v.hyp(Check::assumed(
                "t7_hypotheses",
                "assumed for (d): interpolation and k-th moment stability at (η, B) (T7)",
                None,
            )),
        }
        if !refuted {
            v.conclude(
                "theory_route",
                "E‖f(x) − y‖ ≤ ε_y + ε(‖W‖₂√β_k/min_i‖x_i‖ + ω̄) (T8d; ω̄ is not controlled by stability)",
                theory_route_bound(
                    eps_y,
                    eps,
                    t.w_spectral.only_upper(),
                    t.beta_k,
                    t.min_x_norm.only_lower(),
                    omega_mean,
                ),
            );
        }
    }
    Ok(())
}

fn classification(v: &mut Verdict, input: &T8Input) -> Result<()> {
    let flags: Option<Vec<bool>> = input.points.iter().map(|p| p.certified).collect();
    let Some(flags) = flags else { return Ok(()) };
    let n = flags.len();
    let uniform = vec![1.0 / n as f64; n];
    let w = input.weights.as_deref().unwrap_or(&uniform);
    let b = if input.weights.is_none() {
        // Exact count / n, rounded up.
        crate::round::div_up(flags.iter().filter(|c| !**c).count() as f64, n as f64)
    } else {
        classification_error_bound(w, &flags)?
    };
    v.conclude(
        "classification_error",
        "P(error) ≤ Σ_i w_i·1{i not certified at ε} (T8e; needs the test class = class of x_I)",
        Value::upper_bound(b, 0.0),
    );
    Ok(())
}

fn coverage(v: &mut Verdict, input: &T8Input) -> Result<()> {
    if let Some(c) = &input.coverage {
        let f = nonneg("coverage fraction", c.fraction_within)?;
        v.conclude(
            "coverage",
            format!(
                "held-out fraction within ε of a training point ({} test points)",
                c.test_points
            ),
            Value::exact(f, nonneg("coverage tol", c.fraction_tol)?),
        );
        if let Some(d) = c.median_distance {
            v.conclude(
                "median_nn_distance",
                "median nearest-training-point distance",
                Value::exact(nonneg("distance", d)?, 0.0),
            );
        }
        if let Some(d) = c.max_distance {
            v.conclude(
                "max_nn_distance",
                "max nearest-training-point distance",
                Value::exact(nonneg("distance", d)?, 0.0),
            );
        }
        if f < 1.0 {
            v.note(format!(
                "(D_ε) fails on held-out data for a fraction {:.4} of the test points; the bound \
                 needs δ·ℓ_max added (δ ≈ that fraction) or a larger ε.",
                1.0 - f
            ));
        }
    }
    if let Some(m) = input.mean_x_norm
        && input.epsilon >= 0.5 * nonneg("mean‖x‖", m)?
    {
        v.note("ε is of the order of ‖x‖: the bound is vacuous in practice (typical for images).");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// THEORY §5: ε = 0.5, ε_y = 0, uniform I, every L_i = 1, interpolation ⇒ E|f(x) − y| ≤ 0.5.
    #[test]
    fn golden_half() {
        let p = T8Point {
            residual_norm: Value::exact(0.0, 0.0),
            lipschitz: Value::upper_bound(1.0, 0.0),
            jacobian_norm: Some(Value::exact(1.0, 0.0)),
            certified: Some(true),
        };
        let input = T8Input {
            epsilon: 0.5,
            epsilon_y: 0.0,
            points: vec![p; 3],
            weights: None,
            k: Some(2),
            theory: None,
            coverage: None,
            failure: None,
            mean_x_norm: None,
        };
        let v = check(&input).unwrap();
        let b = v.conclusion("expected_error").unwrap().value;
        assert_eq!(b.upper(), 0.5);
        assert_eq!(v.conclusion("omega_mean").unwrap().value.upper(), 0.0);
        let m = v.conclusion("moment_form").unwrap().value;
        assert_eq!(m.upper(), 0.5);
        assert_eq!(
            v.conclusion("classification_error").unwrap().value.upper(),
            0.0
        );
        assert_eq!(v.check("d_eps").unwrap().status, Status::Assumed);
        // Held-out coverage is a count: exact with its tol, as in the measurements (issue 12
        // item 7: it was "estimate ± 0" here and exact there).
        let input = T8Input {
            coverage: Some(Coverage {
                test_points: 4,
                fraction_within: 0.75,
                fraction_tol: 0.25,
                median_distance: None,
                max_distance: None,
            }),
            ..input
        };
        let c = check(&input).unwrap().conclusion("coverage").unwrap().value;
        assert_eq!(c.kind, crate::kind::Kind::Exact);
        assert_eq!((c.lower(), c.upper()), (0.5, 1.0));
    }

    #[test]
    fn omega_is_clamped_and_rounded_up() {
        // L slightly below g in floating point: ω = 0, not negative.
        let w = omega(
            Value::upper_bound(1.0, 0.0),
            Value::exact(1.0 + 1e-16 * 2.0, 0.0),
        );
        assert_eq!(w.upper(), 0.0);
        let w = omega(Value::upper_bound(1.3, 0.0), Value::exact(1.0, 0.0));
        assert!(w.upper() >= 0.3);
    }

    #[test]
    fn weights_must_sum_to_one() {
        let p = T8Point {
            residual_norm: Value::exact(0.0, 0.0),
            lipschitz: Value::upper_bound(1.0, 0.0),
            jacobian_norm: None,
            certified: Some(false),
        };
        let mut input = T8Input {
            epsilon: 0.5,
            epsilon_y: 0.25,
            points: vec![p; 2],
            weights: Some(vec![0.5, 0.6]),
            k: None,
            theory: None,
            coverage: None,
            failure: None,
            mean_x_norm: None,
        };
        assert!(check(&input).is_err());
        input.weights = Some(vec![0.25, 0.75]);
        let v = check(&input).unwrap();
        assert_eq!(v.conclusion("expected_error").unwrap().value.upper(), 0.75);
        assert_eq!(
            v.conclusion("classification_error").unwrap().value.upper(),
            1.0
        );
    }
}
