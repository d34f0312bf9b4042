//! T3 — flatness bounds input smoothness on the data.
//!
//! (1/n)Σ‖J_x(x_i)‖_F²‖x_i‖² ≤ ‖W‖₂² tr G_W ≤ ‖W‖₂² tr G. The left side is exact; the middle and
//! right are upper bounds because ‖W‖₂ is. Under mean-square stability (T5g) and interpolation,
//! tr G = tr H ≤ 2C/(ηp), so the left side is ≤ 2C‖W‖₂²/(ηp) (+∞, vacuous, at p = 0).

use serde::{Deserialize, Serialize};

use crate::error::{Result, learning_rate};
use crate::kind::{Scalar, Value};
use crate::sampling::BatchModel;
use crate::verdict::{Check, Status, Verdict};

/// Optional link to flatness through T5(g).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct T3Flatness {
    /// η (theory convention).
    pub eta: f64,
    /// The batch model (gives p).
    pub batch: BatchModel,
    /// Number of outputs C.
    pub outputs: usize,
    /// A checked mean-square stability hypothesis (the T5 stability check, or T4's refutation),
    /// if available; `None` ⇒ assumed. A **violated** one refutes the flatness form: it is then
    /// shown as a diagnostic and `flatness_bound` is not computed (the rest of T3 does not use
    /// stability and keeps its status).
    #[serde(default)]
    pub stability: Option<Check>,
    /// The interpolation hypothesis of the flatness form (tr G = tr H), as the caller knows it
    /// (e.g. assumed with the measured residual as its size); `None` ⇒ a plain assumption.
    #[serde(default)]
    pub interpolation: Option<Check>,
}

/// T3 input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct T3Input {
    /// (1/n)Σ‖J_x(x_i)‖_F²‖x_i‖² (exact).
    pub weighted_mean: Value,
    /// ‖W‖₂ (upper bound).
    pub w_spectral: Value,
    /// tr G_W = (1/n)Σ‖J_W(x_i)‖_F² (exact).
    pub tr_gw: Value,
    /// tr G (exact).
    pub tr_g: Value,
    /// min_i ‖x_i‖, for the unweighted average, if known.
    #[serde(default)]
    pub min_x_norm: Option<Value>,
    /// Link to flatness, if η and B are known.
    #[serde(default)]
    pub flatness: Option<T3Flatness>,
    /// |tr H − tr G| (estimate, Hutchinson or R-op), when the residual is not zero.
    #[serde(default)]
    pub trace_gap: Option<Value>,
}

/// Middle of the chain: ‖W‖₂²·tr G_W (T3).
pub fn middle<N: Scalar>(w_spectral: N, tr_gw: N) -> N {
    w_spectral * w_spectral * tr_gw
}

/// Flatness form: 2C‖W‖₂²/(ηp), +∞ at p = 0 (T3 with T5g).
///
/// ```
/// use flatcert_bounds::t3::flatness_bound;
/// assert_eq!(flatness_bound(2f64.sqrt(), 1.0, 0.5, 1.0), 8.000000000000002);
/// assert!(flatness_bound(1.0, 1.0, 0.5, 0.0).is_infinite());
/// ```
pub fn flatness_bound<N: Scalar>(w_spectral: N, outputs: N, eta: N, p: N) -> N {
    N::constant(2.0) * outputs * w_spectral * w_spectral / (eta * p)
}

/// T3 verdict: the three numbers with the margins between them.
pub fn check(input: &T3Input) -> Result<Verdict> {
    input.weighted_mean.validate_nonneg("(1/n)Σ‖J_x‖_F²‖x‖²")?;
    input.w_spectral.validate_nonneg("‖W‖₂")?;
    input.tr_gw.validate_nonneg("tr G_W")?;
    input.tr_g.validate_nonneg("tr G")?;
    let w = input.w_spectral.only_upper();
    let mid = middle(w, input.tr_gw);
    let right = middle(w, input.tr_g);
    let mut v = Verdict::new("T3", "Flatness bounds input smoothness on the data");
    v.hyp(Check::le_bound(
        "left_le_middle",
        "(1/n)Σ‖J_x(x_i)‖_F²‖x_i‖² ≤ ‖W‖₂² tr G_W",
        input.weighted_mean,
        mid,
    ));
    v.hyp(Check::le(
        "trace_block",
        "tr G_W ≤ tr G (G_W is a diagonal block of G)",
        input.tr_gw,
        input.tr_g,
    ));
    v.conclude(
        "left",
        "(1/n)Σ‖J_x(x_i)‖_F²‖x_i‖² (exact)",
        input.weighted_mean,
    );
    v.conclude("middle", "‖W‖₂² tr G_W (upper)", mid);
    v.conclude("right", "‖W‖₂² tr G (upper)", right);
    if let Some(mx) = input.min_x_norm {
        mx.validate_nonneg("min‖x_i‖")?;
        v.conclude(
            "mean_jx_sq_bound",
            "(1/n)Σ‖J_x(x_i)‖_F² ≤ ‖W‖₂² tr G_W / min_i‖x_i‖²",
            mid / (mx.only_lower() * mx.only_lower()),
        );
    }
    if let Some(f) = &input.flatness {
        flatness_form(&mut v, f, w, "(1/n)Σ‖J_x‖_F²‖x‖²", "‖W‖₂")?;
    }
    if let Some(gap) = input.trace_gap {
        v.conclude(
            "trace_gap",
            "|tr H − tr G| (0 for ReLU where the pattern is locally constant)",
            gap,
        );
    }
    Ok(v)
}

/// T3's flatness form on `v` (shared by the dense T3 and the radial one of THEORY §7(b)):
/// `lhs ≤ 2C·w²/(ηp)` under mean-square stability and interpolation, with `w` the upper bound of
/// the first-layer norm named `w_name`. A violated stability check refutes it (shown as a
/// diagnostic, the bound not computed); the chain left ≤ middle ≤ right does not use stability.
pub(crate) fn flatness_form(
    v: &mut Verdict,
    f: &T3Flatness,
    w: Value,
    lhs: &str,
    w_name: &str,
) -> Result<()> {
    let eta = Value::exact(learning_rate(f.eta)?, 0.0);
    f.batch.validate()?;
    match &f.stability {
        Some(ch) if ch.status == Status::Violated => {
            v.diag(Check {
                name: "mean_square_stable".into(),
                ..ch.clone()
            });
            v.note(
                "Flatness form not computed: its hypothesis \"mean-square stable at (η, B)\" \
                 is refuted (see mean_square_stable); the chain left ≤ middle ≤ right does not \
                 use stability.",
            );
        }
        stability => {
            let b = flatness_bound(w, Value::constant(f.outputs as f64), eta, f.batch.p_value());
            v.conclude(
                "flatness_bound",
                format!(
                    "{lhs} ≤ 2C{w_name}²/(ηp) under mean-square stability and \
                     interpolation (vacuous at p = 0)"
                ),
                b,
            );
            match stability {
                Some(ch) => {
                    v.hyp(Check {
                        name: "mean_square_stable".into(),
                        ..ch.clone()
                    });
                    v.hyp(f.interpolation.clone().unwrap_or_else(|| {
                        Check::assumed(
                            "interpolation",
                            "assumed for the flatness form: interpolation (tr G = tr H)",
                            None,
                        )
                    }));
                }
                None => v.hyp(Check::assumed(
                    "mean_square_stable",
                    "mean-square stability at (η, B) (T5) and interpolation, for the \
                     flatness form",
                    None,
                )),
            }
        }
    }
    v.note("GD stability alone (T4) gives only tr G ≤ 2r/η: it is the SGD noise (p > 0) that bounds the trace.");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::round::sqrt_up;
    use crate::sampling::Sampling;

    /// THEORY §5's numbers: mean |f′|²x² = 2, ‖W‖₂ = √2, tr G_W = 2, tr G = 6, min|x| = 1, with
    /// the flatness form at (η, B, n = 3) when `flatness` is given.
    fn golden(flatness: Option<(f64, usize, Option<Check>)>) -> T3Input {
        T3Input {
            weighted_mean: Value::exact(2.0, 0.0),
            w_spectral: Value::upper_bound(sqrt_up(2.0), 0.0),
            tr_gw: Value::exact(2.0, 0.0),
            tr_g: Value::exact(6.0, 0.0),
            min_x_norm: Some(Value::exact(1.0, 0.0)),
            flatness: flatness.map(|(eta, b, stability)| T3Flatness {
                eta,
                batch: BatchModel::new(3, b, Sampling::WithoutReplacement).unwrap(),
                outputs: 1,
                stability,
                interpolation: None,
            }),
            trace_gap: None,
        }
    }

    #[test]
    fn golden_chain_2_4_12() {
        // THEORY §5: mean |f′|²x² = 2 ≤ ‖W‖₂² tr G_W = 4 ≤ ‖W‖₂² tr G = 12.
        let v = check(&golden(Some((0.2400821025, 3, None)))).unwrap();
        assert_eq!(v.status(), Status::Certified);
        // √2 rounded up, squared: a few ulps above the exact values.
        let mid = v.conclusion("middle").unwrap().value.upper();
        let right = v.conclusion("right").unwrap().value.upper();
        assert!((4.0..4.0 * (1.0 + 1e-15)).contains(&mid));
        assert!((12.0..12.0 * (1.0 + 1e-15)).contains(&right));
        let m = v.check("left_le_middle").unwrap().margin.unwrap();
        assert!((m - 2.0).abs() < 1e-14);
        // p = 0 at B = n: the flatness form is vacuous.
        assert!(v.conclusion("flatness_bound").unwrap().vacuous);
    }

    /// A refuted stability hypothesis removes the flatness form (shown as a diagnostic) and
    /// leaves the chain's status alone; a certified one replaces the assumption.
    #[test]
    fn refuted_stability_drops_the_flatness_form() {
        let with = |stability: Option<Check>| check(&golden(Some((0.2, 1, stability)))).unwrap();
        let refuted = Check::le(
            "stability",
            "η·λ ≤ 1",
            Value::exact(2.0, 0.0),
            Value::constant(1.0),
        );
        assert_eq!(refuted.status, Status::Violated);
        let v = with(Some(refuted));
        assert!(v.conclusion("flatness_bound").is_none());
        assert_eq!(
            v.status(),
            Status::Certified,
            "the chain does not use stability"
        );
        assert!(
            v.diagnostics
                .iter()
                .any(|c| c.name == "mean_square_stable" && c.status == Status::Violated)
        );
        let proven = Check::le(
            "stability",
            "η·λ ≤ 1",
            Value::exact(0.5, 0.0),
            Value::constant(1.0),
        );
        let v = with(Some(proven));
        assert!(v.conclusion("flatness_bound").is_some());
        let h = v.check("mean_square_stable").unwrap();
        assert_eq!(h.status, Status::Certified);
        assert!(v.check("interpolation").is_some());
        let v = with(None);
        assert_eq!(
            v.check("mean_square_stable").unwrap().status,
            Status::Assumed
        );
    }
}
