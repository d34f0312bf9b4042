//! T1 — multiplicative identity of the first layer.
//!
//! For f(x) = g(Wx + b): ∇_x f_c(x)·xᵀ = Wᵀ∇_W f_c(x) (T1a) and ⟨x, ∇_x f_c⟩ = ⟨W, ∇_W f_c⟩_F
//! (T1b). The check compares the measured residuals (kind exact) with the expected rounding size
//! ≲ 10u‖W‖‖δ_c‖‖x‖, and requires that ∇_x f was obtained independently of Wᵀδ_c (a JVP through
//! the whole network); otherwise the residual is 0 by construction and proves nothing.

use serde::{Deserialize, Serialize};

use crate::error::{Result, nonneg};
use crate::kind::Value;
use crate::round::{UNIT_ROUNDOFF, mul_up};
use crate::verdict::{Check, Verdict};

/// Measured T1 residuals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct T1Input {
    /// max over checked points and outputs of max|∇_x f_c xᵀ − Wᵀ∇_W f_c| (T1a).
    pub max_residual_matrix: f64,
    /// max over checked points and outputs of |⟨x, ∇_x f_c⟩ − ⟨W, ∇_W f_c⟩_F| (T1b), if measured.
    #[serde(default)]
    pub max_residual_scalar: Option<f64>,
    /// max over checked points of ‖W‖‖δ_c‖‖x‖ (the scale of the expected rounding residual).
    pub scale: f64,
    /// Points at which the identity was checked.
    pub points_checked: usize,
    /// Points in the data set.
    pub points_total: usize,
    /// Whether ∇_x f_c was obtained by an independent path (forward-mode JVP), not as Wᵀδ_c.
    pub independent_path: bool,
}

/// Expected size of a T1 residual: 10u·‖W‖‖δ_c‖‖x‖ (THEORY T1 Check), rounded up.
///
/// ```
/// use flatcert_bounds::t1::expected_residual;
/// assert!(expected_residual(1.0) < 2e-15);
/// ```
pub fn expected_residual(scale: f64) -> f64 {
    mul_up(10.0 * UNIT_ROUNDOFF, scale)
}

/// T1 verdict: residuals within the expected rounding size, obtained non-circularly.
pub fn check(input: &T1Input) -> Result<Verdict> {
    let r = nonneg("T1 matrix residual", input.max_residual_matrix)?;
    let scale = nonneg("T1 residual scale", input.scale)?;
    let expected = Value::exact(expected_residual(scale), 0.0);
    let mut v = Verdict::new("T1", "Multiplicative identity of the first layer");
    v.hyp(Check::no_failures(
        "independent_path",
        "∇_x f_c obtained independently of Wᵀδ_c (forward-mode JVP); otherwise the residual is 0 \
         by construction",
        usize::from(!input.independent_path),
    ));
    v.hyp(Check::le(
        "identity_matrix",
        "max|∇_x f_c·xᵀ − Wᵀ∇_W f_c| ≤ 10u·‖W‖‖δ_c‖‖x‖ (T1a)",
        Value::exact(r, 0.0),
        expected,
    ));
    if let Some(s) = input.max_residual_scalar {
        let s = nonneg("T1 scalar residual", s)?;
        v.hyp(Check::le(
            "identity_scalar",
            "max|⟨x, ∇_x f_c⟩ − ⟨W, ∇_W f_c⟩_F| ≤ 10u·‖W‖‖δ_c‖‖x‖ (T1b)",
            Value::exact(s, 0.0),
            expected,
        ));
    }
    v.conclude(
        "max_residual",
        "max residual of T1a (kind exact)",
        Value::exact(r, 0.0),
    );
    v.conclude(
        "points_checked",
        format!("points checked, of {}", input.points_total),
        Value::exact(input.points_checked as f64, 0.0),
    );
    v.note(
        "The expected size 10u‖W‖‖δ_c‖‖x‖ is an a-priori rounding estimate; T1 is an algebraic \
         identity and this check tests the engine, not the network.",
    );
    if input.points_checked < input.points_total {
        v.note(format!(
            "The identity was checked on a sample of {} of {} points.",
            input.points_checked, input.points_total
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::Status;

    fn input() -> T1Input {
        // THEORY §5: at x = −1, ⟨x, f′(x)⟩ = 1 = ⟨W, ∇_W f⟩, so the residual is 0.
        T1Input {
            max_residual_matrix: 0.0,
            max_residual_scalar: Some(0.0),
            scale: 2f64.sqrt(),
            points_checked: 3,
            points_total: 3,
            independent_path: true,
        }
    }

    #[test]
    fn golden_example_certifies() {
        let v = check(&input()).unwrap();
        assert_eq!(v.status(), Status::Certified);
    }

    #[test]
    fn circular_or_large_residual_fails() {
        let mut i = input();
        i.independent_path = false;
        assert_eq!(check(&i).unwrap().status(), Status::Violated);
        let mut i = input();
        i.max_residual_matrix = 1e-10;
        assert_eq!(
            check(&i).unwrap().check("identity_matrix").unwrap().status,
            Status::Violated
        );
        i.max_residual_matrix = -1.0;
        assert!(check(&i).is_err());
    }
}
