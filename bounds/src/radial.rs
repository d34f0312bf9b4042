//! THEORY.md §7(b): the radial forms of T2, T3 and T7, which hold for every bilinear first layer
//! (a dense layer or a convolution with any padding and stride).
//!
//! From T1b, Σ_c⟨x_i, ∇_x f_c(x_i)⟩² ≤ ‖W‖_F²·‖J_W(x_i)‖_F² (Cauchy–Schwarz), hence
//! - (T2, radial) ‖J_x(x_i) x_i‖ ≤ ‖W‖_F·‖J_W(x_i)‖_F for every sample;
//! - (T3, radial) (1/n)Σ‖J_x(x_i) x_i‖² ≤ ‖W‖_F² tr G_W ≤ ‖W‖_F² tr G ≤ 2C‖W‖_F²/(ηp), the last
//!   under mean-square stability and interpolation (T5(g));
//! - (T7, radial) ((1/n)Σ‖J_x(x_i)x_i‖^{2k})^{1/(2k)} ≤ ‖W‖_F·((1/n)Σ‖J_W(x_i)‖_F^{2k})^{1/(2k)}.
//!
//! J_x(x_i)x_i is the derivative of f along the ray through x_i (the sensitivity to rescaling
//! the input, e.g. its contrast). The full-gradient forms of T2, T3 and T7 need a dense first
//! layer, where ∇_W f_c = δ_c xᵀ is rank one (§7(a)).

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::kind::Value;
use crate::t3::middle;
use crate::verdict::{Check, Verdict};

/// Why the full-gradient forms are absent, as every radial verdict notes it.
pub const WHY_RADIAL: &str = "Radial form (THEORY §7(b)): the first layer is not dense, so its \
     weight gradient Σ_t δ_t p_tᵀ can be far smaller than ‖δ‖‖x‖ through cancellation across \
     positions, and no bound of the full input gradient by the weight gradient exists (§7(a)); \
     the bound holds for J_x(x_i)x_i, the derivative along the ray through x_i.";

/// T1 for a non-dense bilinear first layer (THEORY §7(a)): T1b only, with the residual's
/// expected rounding size `expected` (the engine's a-priori estimate), at `points_checked` of
/// `points_total` samples. ⟨x, ∇_x f_c⟩ comes from forward mode (a JVP along x), independent
/// of the backward pass.
pub fn check_t1b(
    residual: f64,
    expected: f64,
    points_checked: usize,
    points_total: usize,
) -> Result<Verdict> {
    let r = crate::error::nonneg("T1b residual", residual)?;
    let e = crate::error::nonneg("T1b expected size", expected)?;
    let mut v = Verdict::new(
        "T1",
        "Multiplicative identity of the first layer (T1b, bilinear first layer)",
    );
    v.hyp(Check::le(
        "identity_scalar",
        "max|⟨x, ∇_x f_c⟩ − ⟨W, ∇_W f_c⟩_F| ≤ its expected rounding size (T1b, THEORY §7(a))",
        Value::exact(r, 0.0),
        Value::exact(e, 0.0),
    ));
    v.conclude(
        "max_residual",
        "max residual of T1b (kind exact)",
        Value::exact(r, 0.0),
    );
    v.conclude(
        "points_checked",
        format!("points checked, of {points_total}"),
        Value::exact(points_checked as f64, 0.0),
    );
    v.note(
        "T1a (∇_x f xᵀ = Wᵀ∇_W f) is specific to dense first layers (THEORY §7(a)); T1b holds for \
         every bilinear first layer and is checked with ⟨x, ∇_x f_c⟩ from forward mode, \
         independent of the backward pass. The expected size is an a-priori rounding estimate: \
         the check tests the engine, not the network.",
    );
    Ok(v)
}

/// One sample of the radial T2: ‖J_x(x_i) x_i‖ and ‖J_W(x_i)‖_F (both computed, exact up to
/// rounding).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RadialSample {
    /// ‖J_x(x_i) x_i‖.
    pub radial: f64,
    /// ‖J_W(x_i)‖_F.
    pub jw_fro: f64,
}

/// Radial T2 input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RadialT2Input {
    /// ‖W‖_F of the first layer's weight (an upper bound is used).
    pub w_frobenius: Value,
    /// The samples.
    pub samples: Vec<RadialSample>,
    /// Relative rounding of the per-sample norms (a-priori estimate).
    pub rel_tol: f64,
}

/// Radial T2: the tightest sample decides ‖J_x(x_i)x_i‖ ≤ ‖W‖_F‖J_W(x_i)‖_F.
pub fn check_t2(input: &RadialT2Input) -> Result<Verdict> {
    input.w_frobenius.validate_nonneg("‖W‖_F")?;
    let w = input.w_frobenius.only_upper();
    let mut v = Verdict::new("T2", "Per-sample input-gradient inequality (radial form)");
    // The tightest sample: largest ratio radial / (‖W‖_F‖J_W‖_F); a zero right side with a
    // positive left side is the worst case.
    let worst = input
        .samples
        .iter()
        .map(|s| {
            let rhs = w.upper() * s.jw_fro;
            let ratio = if rhs > 0.0 {
                s.radial / rhs
            } else if s.radial > 0.0 {
                f64::INFINITY
            } else {
                0.0
            };
            (ratio, s)
        })
        .fold(
            None,
            |acc: Option<(f64, &RadialSample)>, (r, s)| match acc {
                Some((m, _)) if m >= r => acc,
                _ => Some((r, s)),
            },
        );
    let Some((_, s)) = worst else {
        v.note("No samples.");
        return Ok(v);
    };
    let lhs = Value::exact(s.radial, s.radial * input.rel_tol);
    let rhs = Value::upper_bound(w.upper() * s.jw_fro * (1.0 + input.rel_tol), 0.0);
    v.hyp(Check::le_bound(
        "radial_inequality",
        "‖J_x(x_i)x_i‖ ≤ ‖W‖_F‖J_W(x_i)‖_F at the tightest sample (THEORY §7(b))",
        lhs,
        rhs,
    ));
    v.conclude(
        "tightest_lhs",
        "‖J_x(x_i)x_i‖ at the tightest sample (exact)",
        lhs,
    );
    v.conclude(
        "tightest_rhs",
        "‖W‖_F‖J_W(x_i)‖_F at the tightest sample (upper)",
        rhs,
    );
    v.note(WHY_RADIAL);
    Ok(v)
}

/// Radial T3 input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RadialT3Input {
    /// (1/n)Σ‖J_x(x_i)x_i‖² (exact).
    pub radial_mean_sq: Value,
    /// ‖W‖_F (upper bound).
    pub w_frobenius: Value,
    /// tr G_W (exact).
    pub tr_gw: Value,
    /// tr G (exact).
    pub tr_g: Value,
    /// The flatness link of T3 (η, B, C and the stability hypothesis), if η and B are known.
    #[serde(default)]
    pub flatness: Option<crate::t3::T3Flatness>,
}

/// Radial T3: the chain left ≤ middle ≤ right with margins, and the flatness form
/// 2C‖W‖_F²/(ηp) under mean-square stability and interpolation.
pub fn check_t3(input: &RadialT3Input) -> Result<Verdict> {
    input.radial_mean_sq.validate_nonneg("(1/n)Σ‖J_x x‖²")?;
    input.w_frobenius.validate_nonneg("‖W‖_F")?;
    input.tr_gw.validate_nonneg("tr G_W")?;
    input.tr_g.validate_nonneg("tr G")?;
    let w = input.w_frobenius.only_upper();
    let mid = middle(w, input.tr_gw);
    let right = middle(w, input.tr_g);
    let mut v = Verdict::new(
        "T3",
        "Flatness bounds input smoothness on the data (radial form)",
    );
    v.hyp(Check::le_bound(
        "left_le_middle",
        "(1/n)Σ‖J_x(x_i)x_i‖² ≤ ‖W‖_F² tr G_W",
        input.radial_mean_sq,
        mid,
    ));
    v.hyp(Check::le(
        "trace_block",
        "tr G_W ≤ tr G (G_W is a diagonal block of G)",
        input.tr_gw,
        input.tr_g,
    ));
    v.conclude("left", "(1/n)Σ‖J_x(x_i)x_i‖² (exact)", input.radial_mean_sq);
    v.conclude("middle", "‖W‖_F² tr G_W (upper)", mid);
    v.conclude("right", "‖W‖_F² tr G (upper)", right);
    if let Some(f) = &input.flatness {
        crate::t3::flatness_form(&mut v, f, w, "(1/n)Σ‖J_x(x_i)x_i‖²", "‖W‖_F")?;
    }
    v.note(WHY_RADIAL);
    Ok(v)
}

/// Radial T7 input: for one order k, the two moments of §7(b).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RadialT7Input {
    /// The order k ≥ 1.
    pub k: u32,
    /// ((1/n)Σ‖J_x(x_i)x_i‖^{2k})^{1/(2k)} (exact).
    pub radial_moment: Value,
    /// ((1/n)Σ‖J_W(x_i)‖_F^{2k})^{1/(2k)} (exact).
    pub first_layer_moment: Value,
    /// ‖W‖_F (upper bound).
    pub w_frobenius: Value,
}

/// Radial T7 over the orders k: each moment inequality of §7(b) as a hypothesis, and the bound
/// ‖W‖_F·M_W(k) as a conclusion.
pub fn check_t7(inputs: &[RadialT7Input]) -> Result<Verdict> {
    let mut v = Verdict::new("T7", "Sobolev regularization of SGD (radial moment form)");
    for i in inputs {
        i.radial_moment.validate_nonneg("radial moment")?;
        i.first_layer_moment.validate_nonneg("first-layer moment")?;
        i.w_frobenius.validate_nonneg("‖W‖_F")?;
        let bound = i.w_frobenius.only_upper() * i.first_layer_moment.only_upper();
        let k = i.k;
        v.hyp(Check::le_bound(
            format!("radial_moment_k{k}"),
            format!(
                "((1/n)Σ‖J_x(x_i)x_i‖^{0})^(1/{0}) ≤ ‖W‖_F·((1/n)Σ‖J_W(x_i)‖_F^{0})^(1/{0})",
                2 * k
            ),
            i.radial_moment,
            bound,
        ));
        v.conclude(
            &format!("radial_moment_k{k}"),
            format!("((1/n)Σ‖J_x(x_i)x_i‖^{0})^(1/{0}) (exact)", 2 * k),
            i.radial_moment,
        );
        v.conclude(
            &format!("radial_bound_k{k}"),
            format!("‖W‖_F·((1/n)Σ‖J_W(x_i)‖_F^{0})^(1/{0}) (upper)", 2 * k),
            bound,
        );
    }
    v.note(WHY_RADIAL);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::Status;

    #[test]
    fn t1b_residual_against_its_expected_size() {
        assert_eq!(
            check_t1b(1e-16, 1e-15, 3, 3).unwrap().status(),
            Status::Certified
        );
        assert_eq!(
            check_t1b(1e-12, 1e-15, 3, 3).unwrap().status(),
            Status::Violated
        );
        assert!(check_t1b(-1.0, 1e-15, 3, 3).is_err());
    }

    #[test]
    fn t2_tightest_sample_decides_and_violation_is_reported() {
        let w = Value::upper_bound(2.0, 0.0);
        let ok = check_t2(&RadialT2Input {
            w_frobenius: w,
            samples: vec![
                RadialSample {
                    radial: 1.0,
                    jw_fro: 1.0,
                },
                RadialSample {
                    radial: 1.9,
                    jw_fro: 1.0,
                },
            ],
            rel_tol: 0.0,
        })
        .unwrap();
        assert_eq!(ok.status(), Status::Certified);
        // The tightest sample is the second (ratio 0.95): margin 2 − 1.9.
        let m = ok.check("radial_inequality").unwrap().margin.unwrap();
        assert!((m - 0.1).abs() < 1e-12, "{m}");
        let bad = check_t2(&RadialT2Input {
            w_frobenius: w,
            samples: vec![RadialSample {
                radial: 2.5,
                jw_fro: 1.0,
            }],
            rel_tol: 0.0,
        })
        .unwrap();
        assert_eq!(bad.status(), Status::Violated);
    }

    #[test]
    fn t3_chain_and_flatness_bound() {
        use crate::sampling::{BatchModel, Sampling};
        // left 1 ≤ ‖W‖_F² tr G_W = 4·0.5 = 2 ≤ ‖W‖_F² tr G = 4·1 = 4; flatness 2·1·4/(0.1·p).
        let batch = BatchModel::new(10, 2, Sampling::WithReplacement).unwrap();
        let v = check_t3(&RadialT3Input {
            radial_mean_sq: Value::exact(1.0, 0.0),
            w_frobenius: Value::upper_bound(2.0, 0.0),
            tr_gw: Value::exact(0.5, 0.0),
            tr_g: Value::exact(1.0, 0.0),
            flatness: Some(crate::t3::T3Flatness {
                eta: 0.1,
                batch,
                outputs: 1,
                stability: None,
                interpolation: None,
            }),
        })
        .unwrap();
        assert_eq!(v.check("left_le_middle").unwrap().status, Status::Certified);
        assert_eq!(v.conclusion("middle").unwrap().value.upper(), 2.0);
        assert_eq!(v.conclusion("right").unwrap().value.upper(), 4.0);
        let p = batch.p_value().lower();
        let f = v.conclusion("flatness_bound").unwrap().value.upper();
        assert!((f - 8.0 / (0.1 * p)).abs() <= 1e-12 * f, "{f}");
        assert_eq!(
            v.check("mean_square_stable").unwrap().status,
            Status::Assumed
        );
    }

    #[test]
    fn t7_each_order_is_a_hypothesis() {
        let v = check_t7(&[
            RadialT7Input {
                k: 1,
                radial_moment: Value::exact(1.0, 0.0),
                first_layer_moment: Value::exact(1.0, 0.0),
                w_frobenius: Value::upper_bound(1.5, 0.0),
            },
            RadialT7Input {
                k: 2,
                radial_moment: Value::exact(2.0, 0.0),
                first_layer_moment: Value::exact(1.0, 0.0),
                w_frobenius: Value::upper_bound(1.5, 0.0),
            },
        ])
        .unwrap();
        assert_eq!(
            v.check("radial_moment_k1").unwrap().status,
            Status::Certified
        );
        assert_eq!(
            v.check("radial_moment_k2").unwrap().status,
            Status::Violated
        );
        assert_eq!(v.status(), Status::Violated);
    }
}
