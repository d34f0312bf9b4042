//! T4 — first moment (the GD condition).
//!
//! E u_{t+1} = (I − ηH) E u_t, so θ* is first-moment stable ⇔ spec(H) ⊂ [0, 2/η]. At an
//! interpolating minimum H = G ⪰ 0 and the condition is λ_max(H) ≤ 2/η. Verdict "stable" if
//! upper(λ_max) ≤ 2/η, "unstable" if lower(λ_max) > 2/η; margin 2/η − λ_max;
//! η_GD* = 2/λ_max ∈ [2/upper, 2/lower]. With a residual H may be indefinite; whether θ* is a
//! minimum (λ_min(H) ≥ 0) is its own verdict, [`crate::minimum`].

use serde::{Deserialize, Serialize};

use crate::error::{Result, learning_rate, nonneg};
use crate::kind::{Scalar, Value};
use crate::verdict::{Check, Verdict};

/// What is known about the residual and whether G replaced H (T4/T5 failure modes).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct ModelInfo {
    /// True when the Gauss–Newton matrix G was used in place of H.
    pub gauss_newton: bool,
    /// ‖∇ℒ(θ*)‖.
    #[serde(default)]
    pub grad_norm: Option<f64>,
    /// max_i ‖res_i‖.
    #[serde(default)]
    pub max_residual: Option<f64>,
    /// √(2ℒ).
    #[serde(default)]
    pub sqrt_two_loss: Option<f64>,
}

impl ModelInfo {
    /// Add the "Gauss–Newton model" label and the residual numbers to a verdict.
    pub(crate) fn report(&self, v: &mut Verdict) -> Result<()> {
        if self.gauss_newton {
            v.note(
                "Gauss–Newton model: G was used in place of H. |λ_max(H) − λ_max(G)| ≤ ‖H − G‖₂ \
                 (Weyl); with a nonzero residual the true linearization is not certified by G.",
            );
        }
        let items = [
            ("grad_norm", "‖∇ℒ(θ*)‖", self.grad_norm),
            ("max_residual", "max_i ‖res_i‖", self.max_residual),
            ("sqrt_two_loss", "√(2ℒ)", self.sqrt_two_loss),
        ];
        for (name, what, x) in items {
            if let Some(x) = x {
                let x = nonneg(what, x)?;
                v.conclude(name, what, Value::exact(x, 0.0));
            }
        }
        if self.max_residual.is_some_and(|r| r > 0.0) {
            v.note(
                "Residual ≠ 0: SGD has forcing noise and H may be indefinite; the linear-stability \
                 statements hold for the linearization only.",
            );
        }
        Ok(())
    }
}

/// T4 input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct T4Input {
    /// η (theory convention).
    pub eta: f64,
    /// λ_max(H) (or of G; see `model`): an interval, upper, lower or estimate.
    pub lambda_max: Value,
    /// Gauss–Newton label and residual numbers.
    #[serde(default)]
    pub model: ModelInfo,
}

/// η_GD* = 2/λ_max (T4), +∞ when λ_max = 0. With a [`Value`] it is a bracket [2/upper, 2/lower].
///
/// ```
/// use flatcert_bounds::t4::eta_gd;
/// assert!((eta_gd(4.6332385972) - 0.4316635023).abs() < 1e-10);
/// ```
pub fn eta_gd<N: Scalar>(lambda_max: N) -> N {
    N::constant(2.0) / lambda_max
}

/// The T4 threshold 2/η on λ_max (round to nearest: for estimates and reports; verdicts use
/// [`gd_status`] or [`check`], which round it outward).
pub fn gd_threshold(eta: f64) -> f64 {
    2.0 / eta
}

/// T4's GD condition on a bracket [lower, upper] of λ_max at η, with the rule of [`check`]
/// (outward-rounded 2/η): `stable` iff upper ≤ 2/η, `unstable` iff lower > 2/η, else
/// `inconclusive` — the one definition used by `stability`, `simulate` and the Gram-path
/// quantities, which have the bracket but no [`T4Input`]. Also returns the certified margin
/// lower(2/η) − upper(λ_max).
///
/// ```
/// use flatcert_bounds::t4::{gd_status, GdStatus};
/// assert_eq!(gd_status(4.0, 4.1, 0.4).0, GdStatus::Stable); // 2/η = 5
/// assert_eq!(gd_status(5.1, 5.2, 0.4).0, GdStatus::Unstable);
/// assert_eq!(gd_status(4.9, 5.1, 0.4).0, GdStatus::Inconclusive);
/// ```
pub fn gd_status(lambda_lower: f64, lambda_upper: f64, eta: f64) -> (GdStatus, f64) {
    let c = Check::le(
        "gd_condition",
        "λ_max ≤ 2/η",
        Value::interval(lambda_lower, lambda_upper),
        Value::constant(2.0) / Value::constant(eta),
    );
    (
        GdStatus::from_status(c.status),
        c.margin.unwrap_or(f64::NEG_INFINITY),
    )
}

/// The first-moment verdict at η (T4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GdStatus {
    /// upper(λ_max) ≤ 2/η: first-moment stable.
    Stable,
    /// lower(λ_max) > 2/η: certified first-moment unstable.
    Unstable,
    /// The bracket straddles 2/η.
    Inconclusive,
}

impl GdStatus {
    /// The first-moment verdict of a [`Check`] status of "λ_max ≤ 2/η" (certified ⇒ stable,
    /// violated ⇒ unstable, anything else ⇒ inconclusive), e.g. of [`check`]'s `gd_condition`.
    pub fn from_status(status: crate::verdict::Status) -> GdStatus {
        match status {
            crate::verdict::Status::Certified => GdStatus::Stable,
            crate::verdict::Status::Violated => GdStatus::Unstable,
            _ => GdStatus::Inconclusive,
        }
    }

    /// `stable`, `unstable` or `inconclusive` (the words of the stability and simulate reports).
    pub fn name(self) -> &'static str {
        match self {
            GdStatus::Stable => "stable",
            GdStatus::Unstable => "unstable",
            GdStatus::Inconclusive => "inconclusive",
        }
    }
}

/// T4 verdict.
pub fn check(input: &T4Input) -> Result<Verdict> {
    let eta = learning_rate(input.eta)?;
    input.lambda_max.validate("λ_max(H)")?;
    let two_over_eta = Value::constant(2.0) / Value::constant(eta);
    let mut v = Verdict::new("T4", "First moment (the GD condition)");
    v.hyp(Check::le(
        "gd_condition",
        "λ_max(H) ≤ 2/η (first-moment stability; certified stable / violated ⇒ unstable)",
        input.lambda_max,
        two_over_eta,
    ));
    let lam_nonneg = input.lambda_max.clamp_nonneg();
    v.conclude(
        "eta_gd",
        "η_GD* = 2/λ_max(H), bracket [2/upper, 2/lower]",
        eta_gd(lam_nonneg),
    );
    v.conclude("two_over_eta", "2/η", two_over_eta);
    v.conclude("margin", "2/η − λ_max(H)", two_over_eta - input.lambda_max);
    input.model.report(&mut v)?;
    v.note("First-moment stability is necessary for k-th moment stability for every k ≥ 1.");
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::Status;

    #[test]
    fn golden_eta_gd() {
        // THEORY §5: λ_max(H) = 4.6332385972 (10 decimals) ⇒ η_GD* = 0.4316635023.
        let i = T4Input {
            eta: 0.4,
            lambda_max: Value::interval(4.6332385972, 4.6332385972),
            model: ModelInfo::default(),
        };
        let v = check(&i).unwrap();
        assert_eq!(v.status(), Status::Certified);
        let e = v.conclusion("eta_gd").unwrap().value;
        // Both sides agree with the golden value to the 10 printed decimals.
        assert!((e.lower() - 0.4316635023).abs() < 1e-10);
        assert!((e.upper() - 0.4316635023).abs() < 1e-10);
        let i = T4Input { eta: 0.44, ..i };
        assert_eq!(check(&i).unwrap().status(), Status::Violated);
    }

    /// THEORY §3 item 8 at scale: a deterministic Lanczos lower bound and a randomized upper
    /// bound. Certifying reads the upper side (confidence 1 − δ); refuting reads only the
    /// deterministic lower side, so a violation carries no confidence.
    #[test]
    fn randomized_upper_side_certifies_with_confidence_only() {
        let upper = Value::upper_bound(10.1, 0.0).with_delta(1e-9, Some(3));
        let lambda_max = Value::lower_bound(10.0, 0.0).intersect(upper);
        let at = |eta| {
            check(&T4Input {
                eta,
                lambda_max,
                model: ModelInfo::default(),
            })
            .unwrap()
        };
        let v = at(0.1); // 2/η = 20 ≥ 10.1
        let c = v.check("gd_condition").unwrap();
        assert_eq!(c.status, Status::Certified);
        assert_eq!(c.confidence.map(|c| c.delta), Some(1e-9));
        let v = at(0.25); // 2/η = 8 < 10 (deterministic side)
        let c = v.check("gd_condition").unwrap();
        assert_eq!(c.status, Status::Violated);
        assert_eq!(c.confidence, None);
        assert_eq!(v.confidence(), None);
        // η_GD* = 2/λ_max: its lower side 2/upper carries the confidence, its upper side not.
        let e = v.conclusion("eta_gd").unwrap().value;
        assert!(e.lower_confidence().is_some() && e.upper_confidence().is_none());
    }

    #[test]
    fn indefinite_and_one_sided() {
        let i = T4Input {
            eta: 0.1,
            lambda_max: Value::lower_bound(1.0, 0.0), // Lanczos: lower bound only
            model: ModelInfo {
                gauss_newton: true,
                ..ModelInfo::default()
            },
        };
        let v = check(&i).unwrap();
        assert_eq!(
            v.check("gd_condition").unwrap().status,
            Status::Inconclusive
        );
        // λ_min(H) ≥ 0 is not a T4 hypothesis: it is the `minimum` verdict's.
        assert!(v.check("psd").is_none());
        // The words of the reports come from the one mapping (estimated ⇒ inconclusive too).
        let gd = v.check("gd_condition").unwrap().status;
        assert_eq!(GdStatus::from_status(gd), GdStatus::Inconclusive);
        assert_eq!(
            GdStatus::from_status(Status::Estimated),
            GdStatus::Inconclusive
        );
        assert_eq!(GdStatus::from_status(Status::Violated).name(), "unstable");
        assert!(v.notes.iter().any(|n| n.contains("Gauss–Newton model")));
        // η_GD* from a lower bound of λ_max is an upper bound of η_GD*.
        let e = v.conclusion("eta_gd").unwrap().value;
        assert_eq!(e.upper(), 2.0);
        assert!(!e.has_lower());
    }
}
