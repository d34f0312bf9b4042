//! T10 — certified local Lipschitz bound by interval bound propagation: the verdict layer.
//!
//! The propagation itself needs the network and lives in the main crate. Given the three bounds
//! (a) per layer, (b) |W|-product, (c) midpoint–radius (each an upper bound), Lip := min of them
//! (kind upper) on B(x_0, ε); the check confronts Lip with sampled Jacobian norms and
//! finite-difference slopes (which must not exceed it) and reports the looseness
//! Lip / (empirical max). Smooth activations rest on the assumed hypothesis "libm exp and tanh
//! have relative error ≤ 2u"; non-monotone σ (GELU) are excluded.

use serde::{Deserialize, Serialize};

use crate::error::{BoundsError, Result, nonneg};
use crate::kind::{Scalar, Value};
use crate::verdict::{Check, Verdict};

/// The assumed libm hypothesis, printed verbatim in certificates.
pub const LIBM_HYPOTHESIS: &str = "libm exp and tanh have relative error ≤ 2u";

/// The ball's norm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ball {
    /// ℓ2 ball; Lip bounds ‖J‖₂.
    #[default]
    L2,
    /// ℓ∞ ball; Lip bounds ‖J‖_{∞→2}.
    Linf,
}

/// T10 input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct T10Input {
    /// Radius ε.
    pub epsilon: f64,
    /// Norm of the ball.
    #[serde(default)]
    pub ball: Ball,
    /// (a) ‖W_L‖₂·Π‖diag(d_hi,l)W_l‖₂ (upper), if computed.
    #[serde(default)]
    pub per_layer: Option<Value>,
    /// (b) ‖ |W_L| diag(d_hi) |W_{L−1}| ⋯ |W_1| ‖₂ (upper), if computed.
    #[serde(default)]
    pub abs_product: Option<Value>,
    /// (c) ‖P_c‖₂ + ‖P_r‖₂ (upper), if computed.
    #[serde(default)]
    pub midpoint_radius: Option<Value>,
    /// Jacobian norms at sampled points of the ball.
    #[serde(default)]
    pub sampled_jacobian_norms: Vec<f64>,
    /// Slopes ‖f(x) − f(x′)‖/‖x − x′‖ at sampled pairs of the ball.
    #[serde(default)]
    pub sampled_slopes: Vec<f64>,
    /// True for tanh, sigmoid, softplus (the bounds use libm exp/tanh).
    pub uses_libm: bool,
    /// σ nondecreasing with σ′ ≥ 0 (false for GELU and other non-monotone σ).
    pub monotone_activation: bool,
}

/// Lip = min of the available bounds and the index of the winner (0 = a, 1 = b, 2 = c).
///
/// ```
/// use flatcert_bounds::Value;
/// use flatcert_bounds::t10::lipschitz_min;
/// // THEORY §5: x_0 = 1, ε = 2 gives (a, b, c) = (2, 2, 1): (c) wins with the exact constant 1.
/// let u = |x| Some(Value::upper_bound(x, 0.0));
/// let (lip, winner) = lipschitz_min([u(2.0), u(2.0), u(1.0)]).unwrap();
/// assert_eq!((lip.upper(), winner), (1.0, 2));
/// ```
pub fn lipschitz_min(bounds: [Option<Value>; 3]) -> Result<(Value, usize)> {
    let mut best: Option<(Value, usize)> = None;
    for (i, b) in bounds.iter().enumerate() {
        let Some(b) = b else { continue };
        b.validate_nonneg("T10 bound")?;
        let b = b.only_upper();
        best = Some(match best {
            None => (b, i),
            Some((cur, j)) => {
                let m = Scalar::min(cur, b);
                if b.value < cur.value { (m, i) } else { (m, j) }
            }
        });
    }
    best.ok_or(BoundsError::Empty("T10 bounds (a), (b), (c)"))
}

const NAMES: [&str; 3] = ["(a) per layer", "(b) |W|-product", "(c) midpoint–radius"];

/// T10 verdict.
pub fn check(input: &T10Input) -> Result<Verdict> {
    let eps = nonneg("ε", input.epsilon)?;
    let (lip, winner) = lipschitz_min([input.per_layer, input.abs_product, input.midpoint_radius])?;
    let norm = match input.ball {
        Ball::L2 => "‖J_x‖₂",
        Ball::Linf => "‖J_x‖_(∞→2)",
    };
    let mut v = Verdict::new(
        "T10",
        "Certified local Lipschitz bound (interval propagation)",
    );
    v.hyp(Check::no_failures(
        "monotone_activation",
        "σ nondecreasing with σ′ ≥ 0 (GELU and other non-monotone σ are excluded)",
        usize::from(!input.monotone_activation),
    ));
    if input.uses_libm {
        v.hyp(Check::assumed(
            "libm",
            format!("assumed: {LIBM_HYPOTHESIS}"),
            None,
        ));
    }
    let emp_j = max_of("sampled Jacobian norm", &input.sampled_jacobian_norms)?;
    let emp_s = max_of("sampled slope", &input.sampled_slopes)?;
    if let Some(j) = emp_j {
        v.hyp(Check::le_bound(
            "sampled_jacobian",
            format!("max sampled {norm} on the ball ≤ Lip"),
            Value::exact(j, 0.0),
            lip,
        ));
    }
    if let Some(s) = emp_s {
        v.hyp(Check::le_bound(
            "sampled_slope",
            "max sampled ‖f(x) − f(x′)‖/‖x − x′‖ on the ball ≤ Lip (mean-value lemma)",
            Value::exact(s, 0.0),
            lip,
        ));
    }
    v.conclude(
        "lipschitz",
        format!(
            "Lip(x_0, ε = {eps}) = min of the available bounds; {} wins",
            NAMES[winner]
        ),
        lip,
    );
    let named = [
        ("per_layer", input.per_layer),
        ("abs_product", input.abs_product),
        ("midpoint_radius", input.midpoint_radius),
    ];
    for ((name, b), label) in named.into_iter().zip(NAMES) {
        if let Some(b) = b {
            v.conclude(name, format!("bound {label}"), b.only_upper());
        }
    }
    let emp = emp_j
        .into_iter()
        .chain(emp_s)
        .fold(f64::NEG_INFINITY, f64::max);
    if emp > 0.0 {
        v.conclude(
            "looseness",
            "Lip / (empirical max): ≥ 1 when Lip is valid (median 1.0 for ReLU, 1.7 for tanh in tests)",
            lip / Value::lower_bound(emp, 0.0),
        );
    }
    v.note("A bound computed at ε is valid for every smaller radius (nesting).");
    Ok(v)
}

fn max_of(what: &'static str, xs: &[f64]) -> Result<Option<f64>> {
    let mut m: Option<f64> = None;
    for &x in xs {
        let x = nonneg(what, x)?;
        m = Some(m.map_or(x, |c| c.max(x)));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::round::sqrt_up;
    use crate::verdict::Status;

    fn golden(a: f64, b: f64, c: f64) -> T10Input {
        T10Input {
            epsilon: 0.5,
            ball: Ball::L2,
            per_layer: Some(Value::upper_bound(a, 0.0)),
            abs_product: Some(Value::upper_bound(b, 0.0)),
            midpoint_radius: Some(Value::upper_bound(c, 0.0)),
            sampled_jacobian_norms: vec![1.0, 1.0],
            sampled_slopes: vec![1.0],
            uses_libm: false,
            monotone_activation: true,
        }
    }

    #[test]
    fn golden_bounds() {
        // THEORY §5: (√2, 1, 1) at x_0 = ±1, ε = 0.5; (2, 2, 1) at x_0 = 1, ε = 2.
        for (a, b, c) in [(sqrt_up(2.0), 1.0, 1.0), (2.0, 2.0, 1.0)] {
            let v = check(&golden(a, b, c)).unwrap();
            assert_eq!(v.conclusion("lipschitz").unwrap().value.upper(), 1.0);
            assert_eq!(v.status(), Status::Certified);
            assert_eq!(v.conclusion("looseness").unwrap().value.upper(), 1.0);
        }
    }

    #[test]
    fn invalid_bound_and_gelu_are_caught() {
        let mut i = golden(2.0, 2.0, 0.9);
        assert_eq!(check(&i).unwrap().status(), Status::Violated);
        i.midpoint_radius = Some(Value::upper_bound(1.0, 0.0));
        i.monotone_activation = false;
        assert_eq!(check(&i).unwrap().status(), Status::Violated);
        i.monotone_activation = true;
        i.uses_libm = true;
        let v = check(&i).unwrap();
        assert!(
            v.hypotheses
                .iter()
                .any(|c| c.statement.contains(LIBM_HYPOTHESIS))
        );
        i.per_layer = None;
        i.abs_product = None;
        i.midpoint_radius = None;
        assert!(check(&i).is_err());
    }
}
