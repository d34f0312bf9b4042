//! T2 — per-sample input-gradient inequality.
//!
//! (T2a) s_min(W)·‖J_W(x)‖_F ≤ ‖J_x(x)‖_F·‖x‖ ≤ ‖W‖₂·‖J_W(x)‖_F; (T2b) the same with spectral
//! norms; (T2c) Σ_c‖∇_x f_c‖_q^q·‖x‖_q^q ≤ N_q(W)^q·Σ_c‖∇_W f_c‖_q^q with
//! N_q(W) ≤ rowsum(W)^{1/q}·colsum(W)^{1−1/q}. ‖W‖₂ must be an **upper** bound; a power-iteration
//! (lower) value turns every bound into an estimate.

use serde::{Deserialize, Serialize};

use crate::error::{BoundsError, Result, non_empty, nonneg};
use crate::kind::{Scalar, Value};
use crate::round::UNIT_ROUNDOFF;
use crate::verdict::{Check, Verdict};

/// Per-sample norms for T2 (all kind exact, relative rounding `rel_tol` of [`T2Input`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct T2Sample {
    /// ‖J_x(x_i)‖_F.
    pub jx_fro: f64,
    /// ‖x_i‖₂.
    pub x_norm: f64,
    /// ‖J_W(x_i)‖_F = ‖Δ‖_F‖x_i‖.
    pub jw_fro: f64,
    /// ‖J_x(x_i)‖₂ (T2b), if measured.
    #[serde(default)]
    pub jx_spec: Option<f64>,
    /// ‖J_W(x_i)‖₂ = ‖Δ‖₂‖x_i‖ (T2b), if measured.
    #[serde(default)]
    pub jw_spec: Option<f64>,
}

/// Entrywise form T2c for one q = 2k.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct T2cInput {
    /// q = 2k ≥ 2.
    pub q: u32,
    /// Max absolute row sum of W (= ‖Wᵀ‖_{1→1}).
    pub rowsum: f64,
    /// Max absolute column sum of W (= ‖Wᵀ‖_{∞→∞}).
    pub colsum: f64,
    /// Per sample Σ_c‖∇_x f_c‖_q^q·‖x‖_q^q.
    pub lhs: Vec<f64>,
    /// Per sample Σ_c‖∇_W f_c‖_q^q.
    pub jw: Vec<f64>,
}

/// T2 input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct T2Input {
    /// ‖W‖₂, which must be an upper bound (kind upper, interval or exact).
    pub w_spectral: Value,
    /// s_min(W) = min_{‖u‖=1}‖Wᵀu‖ (σ_m(W) if m ≤ d, else 0), a lower bound, if known.
    #[serde(default)]
    pub s_min: Option<Value>,
    /// Per-sample norms.
    pub samples: Vec<T2Sample>,
    /// A-priori relative rounding of the per-sample norms.
    #[serde(default)]
    pub rel_tol: f64,
    /// Optional entrywise form.
    #[serde(default)]
    pub entrywise: Option<T2cInput>,
}

/// N_q(W) ≤ rowsum(W)^{1/q}·colsum(W)^{1−1/q} (Riesz–Thorin, T2c). For q = 2 use ‖W‖₂ instead.
///
/// ```
/// use flatcert_bounds::t2::n_q_bound;
/// // W = (1, −1)ᵀ: rowsum 1, colsum 2.
/// assert!((n_q_bound(1.0, 2.0, 4).unwrap() - 2f64.powf(0.75)).abs() < 1e-15);
/// ```
pub fn n_q_bound<N: Scalar>(rowsum: N, colsum: N, q: u32) -> Result<N> {
    if q < 1 {
        return Err(BoundsError::Precondition {
            what: "T2c",
            reason: "q must be at least 1",
        });
    }
    let t = 1.0 / q as f64;
    Ok(rowsum.powf(t) * colsum.powf(1.0 - t))
}

/// Tightness ‖J_x‖_F‖x‖ / (‖W‖₂‖J_W‖_F) of one sample (in [s_min/‖W‖₂, 1]; 0/0 := 0).
pub fn tightness(sample: &T2Sample, w_spectral: f64) -> f64 {
    let den = w_spectral * sample.jw_fro;
    if den == 0.0 {
        0.0
    } else {
        sample.jx_fro * sample.x_norm / den
    }
}

fn rel(x: f64, rel_tol: f64) -> Value {
    Value::exact(x, rel_tol * x.abs())
}

/// T2 verdict: the worst sample against the upper inequality (and the lower one when s_min is
/// known), T2b and T2c when given; conclusions are the extreme tightness ratios.
pub fn check(input: &T2Input) -> Result<Verdict> {
    non_empty("T2 samples", &input.samples)?;
    input.w_spectral.validate_nonneg("‖W‖₂")?;
    let rt = nonneg("T2 rel_tol", input.rel_tol)?;
    for s in &input.samples {
        nonneg("‖J_x‖_F", s.jx_fro)?;
        nonneg("‖x‖", s.x_norm)?;
        nonneg("‖J_W‖_F", s.jw_fro)?;
    }
    let w = input.w_spectral.only_upper();
    let w_up = input.w_spectral.upper();
    let w_point = if w_up.is_finite() {
        w_up
    } else {
        input.w_spectral.value
    };
    let ratios: Vec<f64> = input
        .samples
        .iter()
        .map(|s| tightness(s, w_point))
        .collect();
    let (i_max, r_max) = argmax(&ratios);
    let (i_min, r_min) = argmin(&ratios);
    let mut v = Verdict::new("T2", "Per-sample input-gradient inequality");
    let s = &input.samples[i_max];
    v.hyp(Check::le_bound(
        "upper_inequality",
        format!("‖J_x(x_i)‖_F‖x_i‖ ≤ ‖W‖₂‖J_W(x_i)‖_F at the tightest sample i = {i_max} (T2a)"),
        rel(s.jx_fro * s.x_norm, 2.0 * rt + UNIT_ROUNDOFF),
        w * rel(s.jw_fro, rt),
    ));
    if let Some(smin) = input.s_min {
        smin.validate_nonneg("s_min(W)")?;
        let s = &input.samples[i_min];
        v.hyp(Check::bound_le(
            "lower_inequality",
            format!(
                "s_min(W)‖J_W(x_i)‖_F ≤ ‖J_x(x_i)‖_F‖x_i‖ at the loosest sample i = {i_min} (T2a)"
            ),
            smin.only_lower() * rel(s.jw_fro, rt),
            rel(s.jx_fro * s.x_norm, 2.0 * rt + UNIT_ROUNDOFF),
        ));
        v.conclude(
            "ratio_floor",
            "s_min(W)/‖W‖₂, the floor of the tightness",
            smin.only_lower() / w,
        );
    }
    spectral_form(&mut v, input, w, rt)?;
    if let Some(e) = &input.entrywise {
        entrywise_form(&mut v, e, w)?;
    }
    let ratio_kind = if input.w_spectral.has_upper() {
        Value::lower_bound(r_max, 0.0)
    } else {
        Value::estimate(r_max, 0.0)
    };
    v.conclude(
        "max_tightness",
        format!("max_i ‖J_x‖_F‖x‖/(‖W‖₂‖J_W‖_F), at i = {i_max} (≤ 1)"),
        ratio_kind,
    );
    v.conclude(
        "min_tightness",
        format!("min_i ‖J_x‖_F‖x‖/(‖W‖₂‖J_W‖_F), at i = {i_min}"),
        Value {
            value: r_min,
            ..ratio_kind
        },
    );
    if !input.w_spectral.has_upper() {
        v.note(
            "‖W‖₂ is not an upper bound (e.g. power iteration gives a lower bound): the upper \
             inequality cannot be certified with it.",
        );
    }
    if input.samples.iter().any(|s| s.x_norm == 0.0) {
        v.note("x = 0 turns the inequality into 0 ≤ 0 for that sample.");
    }
    Ok(v)
}

fn spectral_form(v: &mut Verdict, input: &T2Input, w: Value, rt: f64) -> Result<()> {
    let mut worst: Option<(usize, f64)> = None;
    for (i, s) in input.samples.iter().enumerate() {
        if let (Some(jx), Some(jw)) = (s.jx_spec, s.jw_spec) {
            nonneg("‖J_x‖₂", jx)?;
            nonneg("‖J_W‖₂", jw)?;
            let r = if jw == 0.0 { 0.0 } else { jx * s.x_norm / jw };
            if worst.is_none_or(|(_, b)| r > b) {
                worst = Some((i, r));
            }
        }
    }
    if let Some((i, _)) = worst {
        let s = &input.samples[i];
        let (jx, jw) = (s.jx_spec.unwrap_or(0.0), s.jw_spec.unwrap_or(0.0));
        v.hyp(Check::le_bound(
            "spectral_inequality",
            format!("‖J_x(x_i)‖₂‖x_i‖ ≤ ‖W‖₂‖J_W(x_i)‖₂ at the tightest sample i = {i} (T2b)"),
            rel(jx * s.x_norm, 2.0 * rt + UNIT_ROUNDOFF),
            w * rel(jw, rt),
        ));
    }
    Ok(())
}

fn entrywise_form(v: &mut Verdict, e: &T2cInput, w: Value) -> Result<()> {
    crate::error::same_len("T2c jw", e.lhs.len(), e.jw.len())?;
    non_empty("T2c samples", &e.lhs)?;
    let nq = if e.q == 2 {
        w
    } else {
        let r = Value::exact(nonneg("rowsum(W)", e.rowsum)?, 0.0);
        let c = Value::exact(nonneg("colsum(W)", e.colsum)?, 0.0);
        n_q_bound(r, c, e.q)?
    };
    let nqq = nq.powf(e.q as f64);
    let mut worst = (0, f64::NEG_INFINITY);
    for (i, (&l, &j)) in e.lhs.iter().zip(&e.jw).enumerate() {
        nonneg("T2c lhs", l)?;
        nonneg("T2c jw", j)?;
        let r = if j == 0.0 { 0.0 } else { l / j };
        if r > worst.1 {
            worst = (i, r);
        }
    }
    let i = worst.0;
    v.hyp(Check::le_bound(
        "entrywise_inequality",
        format!(
            "Σ_c‖∇_x f_c‖_q^q‖x‖_q^q ≤ N_q(W)^q Σ_c‖∇_W f_c‖_q^q, q = {}, at sample i = {i} (T2c)",
            e.q
        ),
        Value::exact(e.lhs[i], 0.0),
        nqq * Value::exact(e.jw[i], 0.0),
    ));
    v.conclude(
        "n_q",
        format!("N_q(W) ≤ rowsum^(1/q)·colsum^(1−1/q), q = {}", e.q),
        nq,
    );
    Ok(())
}

pub(crate) fn argmax(xs: &[f64]) -> (usize, f64) {
    xs.iter().copied().enumerate().fold(
        (0, f64::NEG_INFINITY),
        |b, (i, x)| if x > b.1 { (i, x) } else { b },
    )
}

pub(crate) fn argmin(xs: &[f64]) -> (usize, f64) {
    xs.iter().copied().enumerate().fold(
        (0, f64::INFINITY),
        |b, (i, x)| if x < b.1 { (i, x) } else { b },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::round::sqrt_up;
    use crate::verdict::Status;

    /// THEORY §5: f(x) = |x| with W = (1, −1)ᵀ, ‖W‖₂ = √2, x = (−1, 1, 2). At each x exactly one
    /// unit is active: ‖J_x‖_F = 1, ‖J_W‖_F = |x|, so the tightness is 1/√2 everywhere.
    fn golden() -> T2Input {
        let samples = [-1.0f64, 1.0, 2.0]
            .iter()
            .map(|x| T2Sample {
                jx_fro: 1.0,
                x_norm: x.abs(),
                jw_fro: x.abs(),
                jx_spec: Some(1.0),
                jw_spec: Some(x.abs()),
            })
            .collect();
        T2Input {
            w_spectral: Value::upper_bound(sqrt_up(2.0), 0.0),
            s_min: Some(Value::exact(0.0, 0.0)), // m = 2 > d = 1
            samples,
            rel_tol: 0.0,
            entrywise: Some(T2cInput {
                q: 4,
                rowsum: 1.0,
                colsum: 2.0,
                lhs: vec![1.0, 1.0, 16.0],
                jw: vec![1.0, 1.0, 16.0],
            }),
        }
    }

    #[test]
    fn golden_tightness() {
        let v = check(&golden()).unwrap();
        assert_eq!(v.status(), Status::Certified, "{v:#?}");
        let t = v.conclusion("max_tightness").unwrap().value.value;
        assert!((t - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-15);
    }

    #[test]
    fn lower_bound_norm_gives_estimates() {
        let mut i = golden();
        i.w_spectral = Value::lower_bound(1.4, 0.0);
        let v = check(&i).unwrap();
        assert_eq!(
            v.check("upper_inequality").unwrap().status,
            Status::Estimated
        );
        assert!(!v.all_certified());
    }

    #[test]
    fn too_small_norm_is_refuted() {
        let mut i = golden();
        i.w_spectral = Value::upper_bound(0.5, 0.0);
        let v = check(&i).unwrap();
        assert_eq!(
            v.check("upper_inequality").unwrap().status,
            Status::Violated
        );
    }
}
