//! "θ* is a minimum": λ_min(H) ≥ 0 (THEORY T4 failure modes, T5(i)).
//!
//! The stability theorems T4–T7 linearize SGD around θ* with the Gauss–Newton matrix G ⪰ 0. At an
//! interpolating minimum (every residual 0) H = G and θ* is a minimum. With a residual
//! H = G + (1/n)Σ_i Σ_c res_ic ∇²f_c(x_i) may be indefinite; a negative eigenvalue of H means θ* is
//! not a minimum of the training loss and the first moment is unstable for every η (THEORY T4).
//! This is a separate verdict so that a failure is named for what it is, not as T4's GD condition
//! (issue 12 item 3).
//!
//! Rule:
//! - zero residual: H = G ⪰ 0, certified;
//! - a Lanczos θ_min plus its allowance is an **upper** bound of λ_min(H) (THEORY §3): it can refute
//!   "λ_min(H) ≥ 0" (violated when it is < 0) but never certify it;
//! - [`Curvature::Exact`] (the default): a refutation is a violated hypothesis; otherwise the
//!   hypothesis is *assumed* (not refuted, not certifiable from an upper bound), with its size;
//! - [`Curvature::GaussNewton`]: the user accepts the Gauss–Newton model (the verdicts are about
//!   the linearization with G); the hypothesis is *assumed* in every case, listed with its size
//!   (how far below 0 the upper bound of λ_min(H) is, or the largest residual), and the Lanczos
//!   comparison is kept as a diagnostic.

use serde::{Deserialize, Serialize};

use crate::error::{Result, nonneg};
use crate::kind::{Scalar, Value};
use crate::verdict::{Check, Status, Verdict};

/// Which curvature the stability verdicts are held to (`--curvature`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Curvature {
    /// The true Hessian H: a certified negative eigenvalue of H fails the certificate.
    #[default]
    Exact,
    /// The Gauss–Newton model: H is replaced by G, an assumed hypothesis with its size.
    GaussNewton,
}

impl Curvature {
    /// `exact` or `gauss-newton`.
    pub fn name(&self) -> &'static str {
        match self {
            Curvature::Exact => "exact",
            Curvature::GaussNewton => "gauss-newton",
        }
    }
}

/// Input of the minimum check.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MinimumInput {
    /// The policy.
    #[serde(default)]
    pub curvature: Curvature,
    /// An upper bound of λ_min(H) (Lanczos θ_min plus allowance), when measured.
    #[serde(default)]
    pub lambda_min: Option<Value>,
    /// A rigorous upper bound of max_ic |res_ic|, when targets are known (the size of the
    /// assumed hypotheses).
    #[serde(default)]
    pub max_abs_residual: Option<f64>,
    /// H = G is proven: the residual is proven 0 *and* ∇²f exists at every training point
    /// ([`crate::residual::ResidualEvidence::hessian_is_gauss_newton`]). Only then is the
    /// minimum certified; a computed residual of 0 is not enough.
    #[serde(default)]
    pub hessian_is_gauss_newton: bool,
}

/// Verdict id of the minimum check in a certificate.
pub const ID: &str = "Min";

/// Title of the minimum check.
pub const TITLE: &str = "Minimum: λ_min(H) ≥ 0 (θ* is a minimum of the training loss)";

const STATEMENT: &str = "0 ≤ λ_min(H): θ* is a minimum of the training loss (a negative \
                         eigenvalue of H means first-moment instability for every η)";

/// The minimum verdict (module docs give the rule).
///
/// ```
/// use flatcert_bounds::minimum::{check, Curvature, MinimumInput};
/// use flatcert_bounds::{Status, Value};
/// let i = MinimumInput {
///     curvature: Curvature::Exact,
///     lambda_min: Some(Value::upper_bound(-0.5, 0.0)),
///     max_abs_residual: Some(0.1),
///     hessian_is_gauss_newton: false,
/// };
/// assert_eq!(check(&i).unwrap().status(), Status::Violated);
/// let i = MinimumInput { curvature: Curvature::GaussNewton, ..i };
/// assert_eq!(check(&i).unwrap().status(), Status::Assumed);
/// ```
pub fn check(input: &MinimumInput) -> Result<Verdict> {
    let mut v = Verdict::new(ID, TITLE);
    let residual = match input.max_abs_residual {
        Some(r) => Some(nonneg("max|res_ic|", r)?),
        None => None,
    };
    if input.hessian_is_gauss_newton {
        v.hyp(Check::given(
            "minimum",
            format!("{STATEMENT}; certified: every residual is proven 0, so H = G ⪰ 0"),
            Status::Certified,
        ));
        return Ok(v);
    }
    let residual_text = residual.map_or("unknown (no targets)".to_string(), |r| format!("{r:.3e}"));
    let lanczos = match input.lambda_min {
        Some(l) => {
            l.validate("λ_min(H)")?;
            Some(Check::le("minimum", STATEMENT, Value::constant(0.0), l))
        }
        None => None,
    };
    let refuted = lanczos
        .as_ref()
        .is_some_and(|c| c.status == Status::Violated);
    // How far below 0 the certified upper bound of λ_min(H) is, when it is.
    let depth = input
        .lambda_min
        .filter(|l| l.has_upper() && l.upper() < 0.0)
        .map(|l| -l.upper());
    match (input.curvature, lanczos) {
        (Curvature::Exact, Some(c)) if refuted => {
            v.hyp(c);
            v.note(
                "λ_min(H) < 0 is certified: θ* is not a minimum of the training loss and the \
                 first moment is unstable for every learning rate. The G-verdicts (T4–T7) are \
                 about the Gauss–Newton model; to accept that model explicitly, use \
                 --curvature gauss-newton.",
            );
        }
        (Curvature::Exact, lanczos) => {
            let how = match &lanczos {
                Some(_) => {
                    "not refuted by the Lanczos upper bound of λ_min(H), which cannot certify it"
                }
                None => "λ_min(H) not measured (piecewise-linear σ, or the Hessian was not probed)",
            };
            v.hyp(Check::assumed(
                "minimum",
                format!("assumed: {STATEMENT}; {how}; max|res_ic| = {residual_text}"),
                residual,
            ));
            if let Some(c) = lanczos {
                v.diag(c);
            }
        }
        (Curvature::GaussNewton, lanczos) => {
            let how = match depth {
                Some(d) => format!(
                    "H has a certified negative eigenvalue (λ_min(H) ≤ −{d:.3e}): θ* is not a \
                     minimum of the true loss"
                ),
                None if lanczos.is_some() => {
                    "λ_min(H) ≥ 0 is not refuted (upper bound only)".to_string()
                }
                None => "λ_min(H) not measured".to_string(),
            };
            v.hyp(Check::assumed(
                "gauss_newton_curvature",
                format!(
                    "assumed (--curvature gauss-newton): H is replaced by the Gauss–Newton matrix \
                     G ⪰ 0 and θ* is treated as a minimum; {how}; max|res_ic| = {residual_text}"
                ),
                depth.or(residual),
            ));
            if let Some(c) = lanczos {
                v.diag(c);
            }
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(curvature: Curvature, lmin: Option<f64>, res: Option<f64>) -> MinimumInput {
        MinimumInput {
            curvature,
            lambda_min: lmin.map(|l| Value::upper_bound(l, 0.0)),
            max_abs_residual: res,
            hessian_is_gauss_newton: res == Some(0.0),
        }
    }

    #[test]
    fn zero_residual_certifies() {
        for c in [Curvature::Exact, Curvature::GaussNewton] {
            let v = check(&input(c, Some(-1.0), Some(0.0))).unwrap();
            assert_eq!(v.status(), Status::Certified);
        }
    }

    /// A computed residual of 0 (upper side 0) without the proof that H = G (e.g. a unit near a
    /// ReLU kink) is not a certified minimum.
    #[test]
    fn zero_residual_without_proof_is_assumed() {
        let i = MinimumInput {
            hessian_is_gauss_newton: false,
            ..input(Curvature::Exact, None, Some(0.0))
        };
        assert_eq!(check(&i).unwrap().status(), Status::Assumed);
    }

    #[test]
    fn exact_refutes_gauss_newton_assumes_with_size() {
        let v = check(&input(Curvature::Exact, Some(-0.25), Some(0.1))).unwrap();
        assert_eq!(v.status(), Status::Violated);
        assert_eq!(v.check("minimum").unwrap().status, Status::Violated);
        let v = check(&input(Curvature::GaussNewton, Some(-0.25), Some(0.1))).unwrap();
        assert_eq!(v.status(), Status::Assumed);
        let a = v.check("gauss_newton_curvature").unwrap();
        assert_eq!(a.size, Some(0.25));
        assert!(a.statement.contains("certified negative eigenvalue"));
        // The refutation stays visible as a diagnostic.
        assert_eq!(v.diagnostics[0].status, Status::Violated);
    }

    #[test]
    fn not_refuted_is_assumed_never_certified() {
        for c in [Curvature::Exact, Curvature::GaussNewton] {
            let v = check(&input(c, Some(0.5), Some(0.1))).unwrap();
            assert_eq!(v.status(), Status::Assumed);
            assert_eq!(v.hypotheses[0].size, Some(0.1));
            let v = check(&input(c, None, None)).unwrap();
            assert_eq!(v.status(), Status::Assumed);
            assert!(v.hypotheses[0].statement.contains("not measured"));
        }
        assert!(check(&input(Curvature::Exact, None, Some(-1.0))).is_err());
    }
}
