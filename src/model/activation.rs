//! Activation functions σ applied between dense layers (THEORY.md §0, §6 item 11).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A scalar activation σ, applied elementwise between dense layers (none after the last).
///
/// Derivative conventions (THEORY.md §6 item 11): T1–T7 use σ′(0) = 0 for ReLU and σ′(0) = α for
/// leaky ReLU, as PyTorch and JAX do. tanh′ and sigmoid′ are evaluated in the relative-error forms
/// of T10 (`4t/(1+t)²` with `t = e^{−2|z|}`, `t/(1+t)²` with `t = e^{−|z|}`), so they stay accurate
/// where `1 − tanh²` would round to 0.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum Activation {
    /// max(z, 0).
    Relu,
    /// z for z > 0, αz otherwise (0 ≤ α ≤ 1 for certified T10 statements).
    LeakyRelu {
        /// Negative slope α.
        alpha: f64,
    },
    /// tanh(z).
    Tanh,
    /// 1 / (1 + e^{−z}).
    Sigmoid,
    /// ln(1 + e^z).
    Softplus,
    /// z (a deep linear network).
    Identity,
}

impl Activation {
    /// Parse a name as accepted by `--activation`: `relu`, `leaky_relu` (α = 0.01, PyTorch's
    /// default), `leaky_relu:0.2`, `tanh`, `sigmoid`, `softplus`, `identity` (alias `linear`).
    pub fn parse(name: &str) -> Result<Self> {
        let lower = name.trim().to_ascii_lowercase();
        let (base, arg) = match lower.split_once([':', '=']) {
            Some((b, a)) => (b.to_string(), Some(a.to_string())),
            None => (lower.clone(), None),
        };
        let act = match (base.as_str(), arg) {
            ("relu", None) => Activation::Relu,
            ("leaky_relu" | "leakyrelu" | "leaky-relu", None) => {
                Activation::LeakyRelu { alpha: 0.01 }
            }
            ("leaky_relu" | "leakyrelu" | "leaky-relu", Some(a)) => {
                let alpha: f64 = a.parse().map_err(|_| {
                    Error::invalid_argument(
                        "--activation",
                        format!("leaky_relu slope '{a}' is not a number"),
                    )
                })?;
                if !alpha.is_finite() || !(0.0..=1.0).contains(&alpha) {
                    return Err(Error::invalid_argument(
                        "--activation",
                        format!("leaky_relu slope must lie in [0, 1], got {alpha}"),
                    ));
                }
                Activation::LeakyRelu { alpha }
            }
            ("tanh", None) => Activation::Tanh,
            ("sigmoid", None) => Activation::Sigmoid,
            ("softplus", None) => Activation::Softplus,
            ("identity" | "linear" | "none", None) => Activation::Identity,
            _ => {
                return Err(Error::invalid_argument(
                    "--activation",
                    format!(
                        "unknown activation '{name}'; expected one of relu, leaky_relu[:alpha], tanh, sigmoid, softplus, identity"
                    ),
                ));
            }
        };
        Ok(act)
    }

    /// Canonical name, inverse of [`Activation::parse`] (`leaky_relu:0.01` carries α).
    pub fn name(&self) -> String {
        match self {
            Activation::Relu => "relu".into(),
            Activation::LeakyRelu { alpha } => format!("leaky_relu:{alpha}"),
            Activation::Tanh => "tanh".into(),
            Activation::Sigmoid => "sigmoid".into(),
            Activation::Softplus => "softplus".into(),
            Activation::Identity => "identity".into(),
        }
    }

    /// True for ReLU, leaky ReLU and identity: f is affine in each layer's parameters wherever the
    /// activation pattern is locally constant, so tr H = tr G (THEORY.md T3).
    pub fn is_piecewise_linear(&self) -> bool {
        matches!(
            self,
            Activation::Relu | Activation::LeakyRelu { .. } | Activation::Identity
        )
    }

    /// σ(z).
    #[inline]
    pub fn value(&self, z: f64) -> f64 {
        match *self {
            Activation::Relu => {
                if z > 0.0 {
                    z
                } else {
                    0.0
                }
            }
            Activation::LeakyRelu { alpha } => {
                if z > 0.0 {
                    z
                } else {
                    alpha * z
                }
            }
            Activation::Tanh => z.tanh(),
            Activation::Sigmoid => {
                if z >= 0.0 {
                    1.0 / (1.0 + (-z).exp())
                } else {
                    let e = z.exp();
                    e / (1.0 + e)
                }
            }
            Activation::Softplus => z.max(0.0) + (-z.abs()).exp().ln_1p(),
            Activation::Identity => z,
        }
    }

    /// σ′(z), with σ′(0) = 0 for ReLU and α for leaky ReLU.
    #[inline]
    pub fn derivative(&self, z: f64) -> f64 {
        match *self {
            Activation::Relu => {
                if z > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Activation::LeakyRelu { alpha } => {
                if z > 0.0 {
                    1.0
                } else {
                    alpha
                }
            }
            Activation::Tanh => {
                let t = (-2.0 * z.abs()).exp();
                4.0 * t / ((1.0 + t) * (1.0 + t))
            }
            Activation::Sigmoid => sigmoid_derivative(z),
            Activation::Softplus => Activation::Sigmoid.value(z),
            Activation::Identity => 1.0,
        }
    }

    /// σ″(z) (0 for the piecewise-linear activations, as an R-operator uses it; THEORY.md §4).
    #[inline]
    pub fn second_derivative(&self, z: f64) -> f64 {
        match *self {
            Activation::Relu | Activation::LeakyRelu { .. } | Activation::Identity => 0.0,
            Activation::Tanh => -2.0 * z.tanh() * self.derivative(z),
            Activation::Sigmoid => {
                sigmoid_derivative(z) * (1.0 - 2.0 * Activation::Sigmoid.value(z))
            }
            Activation::Softplus => sigmoid_derivative(z),
        }
    }
}

/// sigmoid′(z) = t/(1+t)² with t = e^{−|z|} (relative error ≤ 8u; THEORY.md T10).
#[inline]
fn sigmoid_derivative(z: f64) -> f64 {
    let t = (-z.abs()).exp();
    t / ((1.0 + t) * (1.0 + t))
}

impl std::fmt::Display for Activation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Activation; 6] = [
        Activation::Relu,
        Activation::LeakyRelu { alpha: 0.1 },
        Activation::Tanh,
        Activation::Sigmoid,
        Activation::Softplus,
        Activation::Identity,
    ];

    #[test]
    fn derivatives_match_central_differences() {
        // Away from the kink at 0, a central difference with h = 1e-6 has truncation error
        // O(h²·|σ'''|) ≈ 1e-12 and cancellation error O(u/h) ≈ 1e-10: tolerance 1e-8.
        for act in ALL {
            for &z in &[-3.0, -0.7, -0.01, 0.02, 0.5, 2.5, 7.0] {
                let h = 1e-6;
                let fd = (act.value(z + h) - act.value(z - h)) / (2.0 * h);
                assert!((fd - act.derivative(z)).abs() < 1e-8, "{act} at {z}");
                let fd2 = (act.derivative(z + h) - act.derivative(z - h)) / (2.0 * h);
                assert!(
                    (fd2 - act.second_derivative(z)).abs() < 1e-7,
                    "{act}'' at {z}"
                );
            }
        }
    }

    #[test]
    fn saturated_derivatives_stay_positive() {
        // 1 − tanh(20)² rounds to 0 in f64; the relative-error form does not (THEORY.md T10).
        assert!(Activation::Tanh.derivative(20.0) > 0.0);
        assert!(Activation::Sigmoid.derivative(-40.0) > 0.0);
        assert_eq!(Activation::Softplus.value(-800.0), 0.0);
        assert!((Activation::Softplus.value(800.0) - 800.0).abs() < 1e-9);
    }

    #[test]
    fn parse_round_trips_and_rejects_unknown() {
        for act in ALL {
            assert_eq!(Activation::parse(&act.name()).unwrap(), act);
        }
        assert!(Activation::parse("gelu").is_err());
        assert!(Activation::parse("leaky_relu:2").is_err());
        assert_eq!(
            Activation::parse("leaky_relu").unwrap(),
            Activation::LeakyRelu { alpha: 0.01 }
        );
    }

    #[test]
    fn relu_kink_convention() {
        assert_eq!(Activation::Relu.derivative(0.0), 0.0);
        assert_eq!(Activation::LeakyRelu { alpha: 0.2 }.derivative(0.0), 0.2);
    }
}
