//! When is the Gauss–Newton matrix G the Hessian H? (THEORY T4 and T5 failure mode (i), §3.)
//!
//! `H = G + (1/n) Σ_{i,c} res_ic ∇²f_c(x_i)`. G may stand for H without an assumption only
//! when that sum is **proven** 0: the residual is proven 0 (its rigorous upper side `max|res_ic|`
//! is 0) and `∇²f_c` exists at every training point. For a smooth σ it always exists; for a
//! piecewise-linear σ (ReLU, leaky ReLU, identity) it exists only where no pre-activation can
//! lie on a kink, i.e. with no near-kink unit (`|ẑ| ≤ e`, THEORY §3 item 1).
//!
//! In floating point a residual is essentially never *proven* 0: even when the computed residual
//! is 0, its rounding bound (the running forward bound) is positive, so "|res| ≤ tol" is all that
//! is known and G stays an assumed model of H. A computed 0 never certifies interpolation.

use crate::kind::Value;
use crate::verdict::{Check, Status};

/// What decides whether H = G is proven.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResidualEvidence {
    /// `max_{i,c} |res_ic|` with its kind and tol (`None`: not measured, no targets).
    pub max_abs: Option<Value>,
    /// σ is piecewise linear (ReLU, leaky ReLU, identity).
    pub piecewise_linear: bool,
    /// Number of hidden units within their error bound of a kink (`None`: unknown).
    pub near_kink_units: Option<usize>,
}

impl ResidualEvidence {
    /// The rigorous upper bound of `max|res_ic|` (+∞ when unknown or one-sided from below).
    pub fn upper(&self) -> f64 {
        self.max_abs.map_or(f64::INFINITY, |v| v.upper())
    }

    /// True iff the residual is proven 0: a rigorous upper side equal to 0.
    pub fn residual_proven_zero(&self) -> bool {
        self.max_abs
            .is_some_and(|v| v.has_upper() && v.upper() <= 0.0)
    }

    /// True iff `∇²f_c` provably exists at every training point (no possible kink).
    pub fn hessian_defined(&self) -> bool {
        !self.piecewise_linear || self.near_kink_units == Some(0)
    }

    /// True iff H = G is proven (residual proven 0 and ∇²f defined), so that no Gauss–Newton
    /// hypothesis is needed.
    ///
    /// ```
    /// use flatcert_bounds::residual::ResidualEvidence;
    /// use flatcert_bounds::Value;
    /// // A computed 0 with a positive rounding bound proves nothing.
    /// let e = ResidualEvidence {
    ///     max_abs: Some(Value::exact(0.0, 3e-17)),
    ///     piecewise_linear: false,
    ///     near_kink_units: None,
    /// };
    /// assert!(!e.hessian_is_gauss_newton());
    /// let proven = ResidualEvidence { max_abs: Some(Value::exact(0.0, 0.0)), ..e };
    /// assert!(proven.hessian_is_gauss_newton());
    /// ```
    pub fn hessian_is_gauss_newton(&self) -> bool {
        self.residual_proven_zero() && self.hessian_defined()
    }

    /// The residual as text: `max|res_ic| = v (|res| ≤ upper)`.
    fn describe(&self) -> String {
        match self.max_abs {
            Some(v) if v.has_upper() => format!(
                "computed max|res_ic| = {:.3e}, rigorously ≤ {:.3e} (forward-pass rounding included)",
                v.value,
                v.upper()
            ),
            Some(v) => format!(
                "computed max|res_ic| = {:.3e}, without a rigorous upper side",
                v.value
            ),
            None => "the residual was not measured (no targets)".to_string(),
        }
    }

    /// The assumed "Gauss–Newton model" hypothesis, or `None` when H = G is proven. Its size is
    /// the rigorous upper bound of `max|res_ic|` (+∞ → no size).
    pub fn gauss_newton_check(&self, grad_norm: Option<f64>) -> Option<Check> {
        if self.hessian_is_gauss_newton() {
            return None;
        }
        let why = if self.max_abs.is_none() {
            "the residual is unknown".to_string()
        } else if !self.residual_proven_zero() {
            "the residual is not proven 0".to_string()
        } else {
            format!(
                "the residual is proven 0 but ∇²f is not defined at {} near-kink units",
                self.near_kink_units
                    .map_or("an unknown number of".to_string(), |k| k.to_string())
            )
        };
        let grad = grad_norm.map_or(String::new(), |g| format!(", ‖∇ℒ‖ = {g:.3e}"));
        Some(Check::assumed(
            "gauss_newton_model",
            format!(
                "assumed: H is replaced by the Gauss–Newton matrix G (Gauss–Newton model): {why} \
                 ({}{grad}), so H = G + (1/n)Σ res_ic∇²f_c is not certified by G",
                self.describe()
            ),
            finite(self.upper()),
        ))
    }

    /// The interpolation hypothesis of T3's flatness form and T7 (all res_i = 0, so
    /// H_i = J_iᵀJ_i): certified only when H = G is proven, else assumed with the rigorous upper
    /// bound of the residual as its size.
    pub fn interpolation_check(&self) -> Check {
        let statement = format!(
            "interpolation, H_i = J_iᵀJ_i (all res_i = 0); {}",
            self.describe()
        );
        if self.hessian_is_gauss_newton() {
            Check::given(
                "interpolation",
                format!("proven: {statement}"),
                Status::Certified,
            )
        } else {
            Check::assumed(
                "interpolation",
                format!("assumed: {statement}"),
                finite(self.upper()),
            )
        }
    }
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(v: Option<Value>, pl: bool, kinks: Option<usize>) -> ResidualEvidence {
        ResidualEvidence {
            max_abs: v,
            piecewise_linear: pl,
            near_kink_units: kinks,
        }
    }

    #[test]
    fn computed_zero_is_not_interpolation() {
        // The issue-15 softplus case: a computed 0 with a positive running bound.
        let e = ev(Some(Value::exact(0.0, 1.6e-16)), false, None);
        assert!(!e.hessian_is_gauss_newton());
        let c = e.gauss_newton_check(Some(0.0)).unwrap();
        assert_eq!(c.status, Status::Assumed);
        assert_eq!(c.size, Some(1.6e-16));
        assert_eq!(e.interpolation_check().status, Status::Assumed);
    }

    #[test]
    fn proven_zero_needs_a_defined_hessian() {
        let zero = Some(Value::exact(0.0, 0.0));
        assert!(ev(zero, false, None).hessian_is_gauss_newton());
        assert!(ev(zero, true, Some(0)).hessian_is_gauss_newton());
        assert!(!ev(zero, true, Some(3)).hessian_is_gauss_newton());
        assert!(!ev(zero, true, None).hessian_is_gauss_newton());
        let c = ev(zero, true, Some(3)).gauss_newton_check(None).unwrap();
        assert!(c.statement.contains("3 near-kink units"), "{}", c.statement);
        assert_eq!(
            ev(zero, true, Some(0)).interpolation_check().status,
            Status::Certified
        );
    }

    #[test]
    fn unknown_or_one_sided_residual_is_assumed() {
        assert!(!ev(None, false, None).hessian_is_gauss_newton());
        // A lower bound 0 (or an estimate 0) is not an upper side.
        assert!(!ev(Some(Value::lower_bound(0.0, 0.0)), false, None).hessian_is_gauss_newton());
        assert!(!ev(Some(Value::estimate(0.0, 0.0)), false, None).hessian_is_gauss_newton());
        assert_eq!(
            ev(None, false, None).gauss_newton_check(None).unwrap().size,
            None
        );
    }
}
