//! T7 — Sobolev regularization of SGD: bounds (a)–(e) next to the measured values.
//!
//! Hypotheses: interpolation (H_i = J_iᵀJ_i), k-th moment stability at (η, B) for an even k, and
//! x_i ≠ 0. β_k is T6(e) **at the user's η** (never at η*_2 for k > 2). Every bound is returned by
//! a small generic function (evaluate it on `f64` for the number, on [`Value`] for the rigorous
//! upper side); [`check`] confronts each measured value with its bound and reports
//! bound/measured.

use serde::{Deserialize, Serialize};

use crate::error::{Result, learning_rate, positive};
use crate::kind::{Scalar, Value};
use crate::sampling::BatchModel;
use crate::t6::beta_k;
use crate::verdict::{Check, Verdict};

/// (a) ‖J_x(x_i)‖₂ ≤ ‖W‖₂√β_k/‖x_i‖ (use λ_i in place of β_k for the tighter middle form).
pub fn bound_a_spectral<N: Scalar>(w_spectral: N, beta: N, x_norm: N) -> N {
    w_spectral * beta.sqrt() / x_norm
}

/// (a) ‖J_x(x_i)‖_F ≤ √C·‖W‖₂√β_k/‖x_i‖.
pub fn bound_a_frobenius<N: Scalar>(w_spectral: N, beta: N, x_norm: N, outputs: N) -> N {
    outputs.sqrt() * bound_a_spectral(w_spectral, beta, x_norm)
}

/// (b) max_i ‖J_x(x_i)‖₂ ≤ ‖W‖₂√β_k / min_i‖x_i‖.
///
/// ```
/// use flatcert_bounds::t7::bound_b;
/// // THEORY §5 (B = 1, k = 2, η = η*_2): √2·√11.379652 / 1 = 4.770671.
/// assert!((bound_b(2f64.sqrt(), 11.379652, 1.0) - 4.770671).abs() < 5e-7);
/// ```
pub fn bound_b<N: Scalar>(w_spectral: N, beta: N, min_x_norm: N) -> N {
    bound_a_spectral(w_spectral, beta, min_x_norm)
}

/// (c) |f|_{1,2k} ≤ √C·‖W‖₂√β_k / min_i‖x_i‖.
pub fn bound_c_seminorm<N: Scalar>(w_spectral: N, beta: N, min_x_norm: N, outputs: N) -> N {
    bound_a_frobenius(w_spectral, beta, min_x_norm, outputs)
}

/// (c) weighted: ((1/n)Σ(‖J_x‖_F‖x_i‖)^{2k})^{1/(2k)} ≤ √C·‖W‖₂√β_k.
pub fn bound_c_weighted<N: Scalar>(w_spectral: N, beta: N, outputs: N) -> N {
    outputs.sqrt() * w_spectral * beta.sqrt()
}

/// (c) without replacement: √β_k ≤ √(2B/η)·(n/B)^{1/(2k)}.
pub fn sqrt_beta_relaxed<N: Scalar>(eta: N, batch: N, n: N, k: u32) -> N {
    (N::constant(2.0) * batch / eta).sqrt() * (n / batch).powf(1.0 / (2.0 * f64::from(k)))
}

/// (d) trace route, k = 2: ((1/n)Σ‖J_x‖_F⁴‖x_i‖⁴)^{1/4} ≤ ‖W‖₂((1/n)Σ(tr H_i)²)^{1/4}.
pub fn bound_d_mean_trace<N: Scalar>(w_spectral: N, mean_tr_hi2: N) -> N {
    w_spectral * mean_tr_hi2.powf(0.25)
}

/// (d) ≤ ‖W‖₂(2C·tr H/(ηp))^{1/4} (+∞ at p = 0).
pub fn bound_d_trace<N: Scalar>(w_spectral: N, outputs: N, trace_h: N, eta: N, p: N) -> N {
    w_spectral * (N::constant(2.0) * outputs * trace_h / (eta * p)).powf(0.25)
}

/// (d) ≤ ‖W‖₂√(2C/(ηp)) (+∞ at p = 0); divide by min‖x_i‖ to bound |f|_{1,4}.
///
/// ```
/// use flatcert_bounds::t7::bound_d_route;
/// // THEORY §5: √2·√(2/η*_2) = 4.081785 at B = 1 (p = 1), C = 1.
/// assert!((bound_d_route(2f64.sqrt(), 1.0, 0.2400821025, 1.0) - 4.081785).abs() < 5e-7);
/// ```
pub fn bound_d_route<N: Scalar>(w_spectral: N, outputs: N, eta: N, p: N) -> N {
    w_spectral * (N::constant(2.0) * outputs / (eta * p)).sqrt()
}

/// (d) order 2: (1/n)Σ‖J_x‖_F²‖x_i‖² ≤ 2C‖W‖₂²/(ηp).
pub fn bound_d_order2<N: Scalar>(w_spectral: N, outputs: N, eta: N, p: N) -> N {
    crate::t3::flatness_bound(w_spectral, outputs, eta, p)
}

/// (e) g_x(k) ≤ N_{2k}(W)·g_W(k)/min_i‖x_i‖_{2k} (T2c; no stability needed).
pub fn bound_e_gx<N: Scalar>(n_2k: N, g_w: N, min_x_2k: N) -> N {
    n_2k * g_w / min_x_2k
}

/// (e) g_W(k) ≤ √(Cβ_k) under the hypotheses.
pub fn bound_e_gw<N: Scalar>(outputs: N, beta: N) -> N {
    (outputs * beta).sqrt()
}

/// Measured values for T7 (each optional; a bound is reported only when its inputs exist).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct T7Measured {
    /// max_i ‖J_x(x_i)‖₂ (b).
    #[serde(default)]
    pub max_jx_spectral: Option<Value>,
    /// max_i ‖J_x(x_i)‖_F‖x_i‖ (a, Frobenius, weighted per point).
    #[serde(default)]
    pub max_jx_fro_times_x: Option<Value>,
    /// |f|_{1,2k} = ((1/n)Σ‖J_x(x_i)‖_F^{2k})^{1/(2k)} (c).
    #[serde(default)]
    pub sobolev: Option<Value>,
    /// ((1/n)Σ(‖J_x(x_i)‖_F‖x_i‖)^{2k})^{1/(2k)} (c, weighted).
    #[serde(default)]
    pub sobolev_weighted: Option<Value>,
    /// |f|_{1,4} (d; k = 2 route).
    #[serde(default)]
    pub sobolev_4: Option<Value>,
    /// ((1/n)Σ‖J_x‖_F⁴‖x_i‖⁴)^{1/4} (d).
    #[serde(default)]
    pub sobolev_4_weighted: Option<Value>,
    /// (1/n)Σ‖J_x‖_F²‖x_i‖² (d, order 2).
    #[serde(default)]
    pub order2_weighted: Option<Value>,
    /// (1/n)Σ(tr H_i)² (d).
    #[serde(default)]
    pub mean_tr_hi2: Option<Value>,
    /// tr H (d).
    #[serde(default)]
    pub trace_h: Option<Value>,
    /// g_x(k) (e).
    #[serde(default)]
    pub g_x: Option<Value>,
    /// g_W(k) (e).
    #[serde(default)]
    pub g_w: Option<Value>,
    /// N_{2k}(W) upper bound (e; T2c).
    #[serde(default)]
    pub n_2k: Option<Value>,
    /// min_i ‖x_i‖_{2k} (e).
    #[serde(default)]
    pub min_x_2k: Option<Value>,
}

/// T7 input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct T7Input {
    /// η (theory convention), the user's learning rate.
    pub eta: f64,
    /// (n, B, sampling).
    pub batch: BatchModel,
    /// Even moment order k ≥ 2.
    pub k: u32,
    /// Number of outputs C.
    pub outputs: usize,
    /// ‖W‖₂ (upper bound).
    pub w_spectral: Value,
    /// min_i ‖x_i‖₂ (exact).
    pub min_x_norm: Value,
    /// mean_i ‖x_i‖₂, to say when min‖x_i‖ is small.
    #[serde(default)]
    pub mean_x_norm: Option<f64>,
    /// Measured values.
    #[serde(default)]
    pub measured: T7Measured,
    /// Certified k-th moment stability, if available (else assumed).
    #[serde(default)]
    pub k_stability: Option<Check>,
    /// Certified interpolation (all res_i = 0), if available (else assumed).
    #[serde(default)]
    pub interpolation: Option<Check>,
}

/// Compare a measured value with its bound and record bound/measured.
fn compare(v: &mut Verdict, name: &str, statement: String, measured: Option<Value>, bound: Value) {
    let Some(m) = measured else {
        v.conclude(&format!("{name}_bound"), statement, bound);
        return;
    };
    let ratio = bound.only_upper() / m.only_lower();
    v.conclude(&format!("{name}_bound"), statement.clone(), bound);
    v.conclusions.push(
        crate::verdict::Conclusion::new(
            format!("{name}_ratio"),
            format!("bound/measured for: {statement}"),
            ratio,
        )
        .with_vacuous(bound.value.is_infinite()),
    );
    v.diag(Check::le_bound(name, statement, m, bound));
}

/// T7 verdict: every bound with its measured value and ratio; hypotheses listed.
pub fn check(input: &T7Input) -> Result<Verdict> {
    let eta_f = learning_rate(input.eta)?;
    let k = input.k;
    let beta = beta_k(eta_f, &input.batch, k)?;
    input.w_spectral.validate_nonneg("‖W‖₂")?;
    input.min_x_norm.validate_nonneg("min‖x_i‖")?;
    let w = input.w_spectral.only_upper();
    let mx = input.min_x_norm.only_lower();
    let c = Value::constant(input.outputs as f64);
    let eta = Value::constant(eta_f);
    let p = input.batch.p_value();
    let me = &input.measured;
    let mut v = Verdict::new("T7", "Sobolev regularization of SGD");
    v.hyp(match &input.interpolation {
        Some(ch) => Check {
            name: "interpolation".into(),
            ..ch.clone()
        },
        None => Check::assumed(
            "interpolation",
            "assumed: interpolation, H_i = J_iᵀJ_i (all res_i = 0)",
            None,
        ),
    });
    v.hyp(match &input.k_stability {
        Some(ch) => Check {
            name: "k_stable".into(),
            ..ch.clone()
        },
        None => Check::assumed(
            "k_stable",
            format!("assumed: {k}-th moment stable at (η, B)"),
            None,
        ),
    });
    v.hyp(Check::lt(
        "x_nonzero",
        "0 < min_i‖x_i‖",
        Value::constant(0.0),
        input.min_x_norm,
    ));
    v.conclude("beta_k", format!("β_{k} at the user's η (T6e)"), beta);
    compare(
        &mut v,
        "b",
        "max_i ‖J_x(x_i)‖₂ ≤ ‖W‖₂√β_k / min_i‖x_i‖ (T7b)".into(),
        me.max_jx_spectral,
        bound_b(w, beta, mx),
    );
    compare(
        &mut v,
        "a_weighted",
        "max_i ‖J_x(x_i)‖_F‖x_i‖ ≤ √C‖W‖₂√β_k (T7a)".into(),
        me.max_jx_fro_times_x,
        bound_c_weighted(w, beta, c),
    );
    compare(
        &mut v,
        "c",
        format!("|f|_(1,{}) ≤ √C‖W‖₂√β_k / min_i‖x_i‖ (T7c)", 2 * k),
        me.sobolev,
        bound_c_seminorm(w, beta, mx, c),
    );
    compare(
        &mut v,
        "c_weighted",
        format!(
            "((1/n)Σ(‖J_x‖_F‖x_i‖)^{}) ^(1/{}) ≤ √C‖W‖₂√β_k (T7c)",
            2 * k,
            2 * k
        ),
        me.sobolev_weighted,
        bound_c_weighted(w, beta, c),
    );
    if input.batch.sampling == crate::sampling::Sampling::WithoutReplacement {
        v.conclude(
            "sqrt_beta_relaxed",
            "√β_k ≤ √(2B/η)(n/B)^(1/(2k)) (T7c, without replacement)",
            sqrt_beta_relaxed(
                eta,
                Value::constant(input.batch.batch as f64),
                Value::constant(input.batch.n as f64),
                k,
            ),
        );
    }
    trace_route(&mut v, input, w, mx, c, eta, p);
    entrywise(&mut v, input, beta, c);
    notes(&mut v, input)?;
    Ok(v)
}

fn trace_route(
    v: &mut Verdict,
    input: &T7Input,
    w: Value,
    mx: Value,
    c: Value,
    eta: Value,
    p: Value,
) {
    let me = &input.measured;
    let vac = if p.value == 0.0 {
        " — vacuous at p = 0"
    } else {
        ""
    };
    let route = bound_d_route(w, c, eta, p);
    compare(
        v,
        "d_weighted",
        format!("((1/n)Σ‖J_x‖_F⁴‖x_i‖⁴)^(1/4) ≤ ‖W‖₂√(2C/(ηp)) (T7d, mean-square stability){vac}"),
        me.sobolev_4_weighted,
        route,
    );
    compare(
        v,
        "d",
        format!("|f|_(1,4) ≤ ‖W‖₂√(2C/(ηp)) / min_i‖x_i‖ (T7d, mean-square stability){vac}"),
        me.sobolev_4,
        route / mx,
    );
    compare(
        v,
        "d_order2",
        format!("(1/n)Σ‖J_x‖_F²‖x_i‖² ≤ 2C‖W‖₂²/(ηp) (T7d){vac}"),
        me.order2_weighted,
        bound_d_order2(w, c, eta, p),
    );
    if let Some(m) = me.mean_tr_hi2 {
        compare(
            v,
            "d_mean_trace",
            "((1/n)Σ‖J_x‖_F⁴‖x_i‖⁴)^(1/4) ≤ ‖W‖₂((1/n)Σ(tr H_i)²)^(1/4) (T7d)".into(),
            me.sobolev_4_weighted,
            bound_d_mean_trace(w, m),
        );
    }
    if let Some(t) = me.trace_h {
        compare(
            v,
            "d_trace",
            format!("((1/n)Σ‖J_x‖_F⁴‖x_i‖⁴)^(1/4) ≤ ‖W‖₂(2C·tr H/(ηp))^(1/4) (T7d){vac}"),
            me.sobolev_4_weighted,
            bound_d_trace(w, c, t, eta, p),
        );
    }
}

fn entrywise(v: &mut Verdict, input: &T7Input, beta: Value, c: Value) {
    let me = &input.measured;
    compare(
        v,
        "e_gw",
        "g_W(k) ≤ √(Cβ_k) (T7e)".into(),
        me.g_w,
        bound_e_gw(c, beta),
    );
    if let (Some(nq), Some(gw), Some(mx)) = (me.n_2k, me.g_w, me.min_x_2k) {
        compare(
            v,
            "e_gx",
            "g_x(k) ≤ N_2k(W)·g_W(k)/min_i‖x_i‖_2k (T7e via T2c; no stability needed)".into(),
            me.g_x,
            bound_e_gx(nq.only_upper(), gw, mx.only_lower()),
        );
    }
    if let (Some(gx), Some(s)) = (me.g_x, me.sobolev) {
        v.diag(Check::le(
            "e_gx_sobolev",
            "g_x(k) ≤ |f|_(1,2k) (T7e)",
            gx,
            s,
        ));
    }
}

fn notes(v: &mut Verdict, input: &T7Input) -> Result<()> {
    if input.min_x_norm.value == 0.0 {
        v.note("min_i‖x_i‖ = 0: the bounds (b) and (c) are vacuous (+∞); use the weighted forms.");
    } else if let Some(mean) = input.mean_x_norm {
        let mean = positive("mean‖x_i‖", mean)?;
        if input.min_x_norm.value < 0.1 * mean {
            v.note(
                "min_i‖x_i‖ is small compared with the typical ‖x_i‖: (b) and (c) are loose or \
                 vacuous; the weighted forms are the informative ones.",
            );
        }
    }
    v.note(
        "‖W‖₂ is measured at θ*: the regularization is conditional on the size of W. In tests the \
         bounds are 5–20× loose, mostly because of T2.",
    );
    if input.k > 2 {
        v.note("β_k is evaluated at the user's η, never at η*_2 (wrong for k > 2).");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::round::sqrt_up;
    use crate::sampling::Sampling;
    use crate::verdict::Status;

    /// THEORY §5, T7 at B = 1, k = 2, η = η*_2: max|f′| = 1 ≤ 4.770671; |f|_{1,4} = 1 ≤ 4.081785.
    #[test]
    fn golden_t7() {
        let input = T7Input {
            eta: 0.2400821025,
            batch: BatchModel::new(3, 1, Sampling::WithoutReplacement).unwrap(),
            k: 2,
            outputs: 1,
            w_spectral: Value::upper_bound(sqrt_up(2.0), 0.0),
            min_x_norm: Value::exact(1.0, 0.0),
            mean_x_norm: Some(4.0 / 3.0),
            measured: T7Measured {
                max_jx_spectral: Some(Value::exact(1.0, 0.0)),
                sobolev_4: Some(Value::exact(1.0, 0.0)),
                ..T7Measured::default()
            },
            k_stability: None,
            interpolation: None,
        };
        let v = check(&input).unwrap();
        let b = v.conclusion("b_bound").unwrap().value;
        assert!((b.value - 4.770671).abs() < 5e-7 && b.upper() >= b.value);
        let d = v.conclusion("d_bound").unwrap().value;
        assert!((d.value - 4.081785).abs() < 5e-7);
        assert_eq!(v.check("b").unwrap().status, Status::Certified);
        assert_eq!(v.check("d").unwrap().status, Status::Certified);
        let r = v.conclusion("b_ratio").unwrap().value;
        assert!((r.value - 4.770671).abs() < 5e-7);
        // Hypotheses: interpolation and k-stability assumed, x ≠ 0 certified.
        assert!(v.all_certified());
        assert_eq!(v.status(), Status::Certified);
    }

    #[test]
    fn zero_input_norm_is_vacuous() {
        let input = T7Input {
            eta: 0.1,
            batch: BatchModel::new(3, 3, Sampling::WithoutReplacement).unwrap(),
            k: 2,
            outputs: 1,
            w_spectral: Value::upper_bound(1.0, 0.0),
            min_x_norm: Value::exact(0.0, 0.0),
            mean_x_norm: None,
            measured: T7Measured::default(),
            k_stability: None,
            interpolation: None,
        };
        let v = check(&input).unwrap();
        assert!(v.conclusion("b_bound").unwrap().vacuous);
        assert!(v.conclusion("d_weighted_bound").unwrap().vacuous); // p = 0
        assert_eq!(v.check("x_nonzero").unwrap().status, Status::Violated);
        assert!(v.is_well_formed());
    }
}
