//! The SGD sampling model and the learning-rate convention (THEORY §0, §6 items 1 and 3).
//!
//! | quantity | model (S), without replacement | model (S′), with replacement |
//! |---|---|---|
//! | p | (n − B)/(B(n − 1)), p := 0 at n = 1 | 1/B |
//! | π = P(i ∈ ξ) | B/n | 1 − (1 − 1/n)^B |
//! | π_s = (B)_s/(n)_s | joint inclusion of s distinct samples | — |

use serde::{Deserialize, Serialize};

use crate::error::{BoundsError, Result, learning_rate};
use crate::kind::Value;
use crate::round::UNIT_ROUNDOFF;

/// How a batch is drawn (THEORY §0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampling {
    /// Model (S): i.i.d. uniform B-subsets (no duplicates inside a batch).
    #[default]
    WithoutReplacement,
    /// Model (S′): B i.i.d. uniform indices, duplicates counted.
    WithReplacement,
}

impl Sampling {
    /// Short human-readable name (`"without replacement"`, `"with replacement"`).
    pub fn name(&self) -> &'static str {
        match self {
            Sampling::WithoutReplacement => "without replacement",
            Sampling::WithReplacement => "with replacement",
        }
    }
}

/// A validated (n, B, sampling) triple.
///
/// ```
/// use flatcert_bounds::{BatchModel, Sampling};
/// let m = BatchModel::new(3, 2, Sampling::WithoutReplacement).unwrap();
/// assert_eq!(m.p(), 0.25);
/// assert!((m.pi() - 2.0 / 3.0).abs() < 1e-16);
/// assert!(BatchModel::new(3, 4, Sampling::WithoutReplacement).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BatchModel {
    /// Number of samples n ≥ 1.
    pub n: usize,
    /// Batch size B ≥ 1 (≤ n without replacement).
    pub batch: usize,
    /// Sampling scheme.
    pub sampling: Sampling,
}

impl BatchModel {
    /// Validate n ≥ 1, B ≥ 1 and B ≤ n without replacement.
    pub fn new(n: usize, batch: usize, sampling: Sampling) -> Result<BatchModel> {
        let m = BatchModel { n, batch, sampling };
        m.validate()?;
        Ok(m)
    }

    /// Re-validate (e.g. after deserialization).
    pub fn validate(&self) -> Result<()> {
        if self.n == 0 {
            return Err(BoundsError::NoSamples);
        }
        if self.batch == 0 {
            return Err(BoundsError::ZeroBatch);
        }
        if self.sampling == Sampling::WithoutReplacement && self.batch > self.n {
            return Err(BoundsError::BatchTooLarge {
                batch: self.batch,
                n: self.n,
            });
        }
        Ok(())
    }

    /// p of §0: (n − B)/(B(n − 1)) (p := 0 at n = 1) without replacement, 1/B with.
    pub fn p(&self) -> f64 {
        match self.sampling {
            Sampling::WithoutReplacement if self.n == 1 => 0.0,
            Sampling::WithoutReplacement => {
                (self.n - self.batch) as f64 / (self.batch as f64 * (self.n - 1) as f64)
            }
            Sampling::WithReplacement => 1.0 / self.batch as f64,
        }
    }

    /// π = P(i ∈ ξ) of §0: B/n without replacement, 1 − (1 − 1/n)^B with.
    pub fn pi(&self) -> f64 {
        match self.sampling {
            Sampling::WithoutReplacement => self.batch as f64 / self.n as f64,
            // 1 − (1 − 1/n)^B = −expm1(B·ln(1 − 1/n)), accurate for small B/n.
            Sampling::WithReplacement => {
                -f64::exp_m1(self.batch as f64 * f64::ln_1p(-1.0 / self.n as f64))
            }
        }
    }

    /// p as an exact [`Value`] with its a-priori rounding tolerance (3 roundings).
    pub fn p_value(&self) -> Value {
        Value::computed(self.p(), 3)
    }

    /// π as an exact [`Value`]. Without replacement one rounding; with replacement the libm
    /// `ln_1p`/`exp_m1` route, allowed 16u relative (libm hypothesis).
    pub fn pi_value(&self) -> Value {
        let pi = self.pi();
        match self.sampling {
            Sampling::WithoutReplacement => Value::computed(pi, 1),
            Sampling::WithReplacement => Value::exact(pi, 16.0 * UNIT_ROUNDOFF * pi),
        }
    }

    /// π_s = (B)_s/(n)_s, the probability that s given distinct samples are all in the batch
    /// (model S; 0 for s > B). Computed as Π_{j<s} (B − j)/(n − j).
    pub fn pi_s(&self, s: usize) -> f64 {
        falling_factorial_ratio(self.batch, self.n, s)
    }
}

/// p(n, B) of §0 (validated). See [`BatchModel::p`].
///
/// ```
/// use flatcert_bounds::sampling::{p, Sampling};
/// assert_eq!(p(3, 1, Sampling::WithoutReplacement).unwrap(), 1.0);
/// assert_eq!(p(3, 3, Sampling::WithoutReplacement).unwrap(), 0.0);
/// assert_eq!(p(3, 2, Sampling::WithReplacement).unwrap(), 0.5);
/// assert_eq!(p(1, 1, Sampling::WithoutReplacement).unwrap(), 0.0); // n = 1: p := 0
/// ```
pub fn p(n: usize, batch: usize, sampling: Sampling) -> Result<f64> {
    Ok(BatchModel::new(n, batch, sampling)?.p())
}

/// π(n, B) = P(i ∈ ξ) of §0 (validated). See [`BatchModel::pi`].
pub fn pi(n: usize, batch: usize, sampling: Sampling) -> Result<f64> {
    Ok(BatchModel::new(n, batch, sampling)?.pi())
}

/// The falling factorial (a)_s = a(a − 1)⋯(a − s + 1) as f64 (0 when s > a).
pub fn falling_factorial(a: usize, s: usize) -> f64 {
    (0..s)
        .map(|j| a as f64 - j as f64)
        .product::<f64>()
        .max(0.0)
}

/// π_s = (B)_s/(n)_s for B ≤ n (0 for s > B), as Π_{j<s}(B − j)/(n − j).
pub fn falling_factorial_ratio(batch: usize, n: usize, s: usize) -> f64 {
    if s > batch {
        return 0.0;
    }
    (0..s)
        .map(|j| (batch - j) as f64 / (n - j) as f64)
        .product()
}

/// The learning-rate convention of the user's η (THEORY §0 "Loss and learning-rate conversion",
/// §6 item 1). The theory uses ℓ_i = ½‖res_i‖² averaged over the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(tag = "convention", rename_all = "kebab-case")]
pub enum LrConvention {
    /// η is already in the theory convention.
    #[default]
    Theory,
    /// PyTorch `MSELoss(reduction='mean')` over B·C entries: η = 2·η_torch/C.
    TorchMse {
        /// Number of outputs C.
        outputs: usize,
    },
    /// PyTorch `MSELoss(reduction='sum')`: η = 2B·η_torch.
    TorchSum {
        /// Batch size B.
        batch: usize,
    },
}

impl LrConvention {
    /// η_theory / η_given: 1, 2/C or 2B.
    pub fn factor(&self) -> Result<f64> {
        match *self {
            LrConvention::Theory => Ok(1.0),
            LrConvention::TorchMse { outputs: 0 } => Err(BoundsError::Precondition {
                what: "torch-mse convention",
                reason: "the number of outputs C must be at least 1",
            }),
            LrConvention::TorchMse { outputs } => Ok(2.0 / outputs as f64),
            LrConvention::TorchSum { batch: 0 } => Err(BoundsError::ZeroBatch),
            LrConvention::TorchSum { batch } => Ok(2.0 * batch as f64),
        }
    }

    /// Convert a learning rate in this convention to the theory's η.
    ///
    /// ```
    /// use flatcert_bounds::LrConvention;
    /// let c = LrConvention::TorchMse { outputs: 1 };
    /// assert_eq!(c.to_theory(0.1).unwrap(), 0.2); // η_torch = η/2 for C = 1
    /// assert_eq!(LrConvention::TorchSum { batch: 4 }.to_theory(0.1).unwrap(), 0.8);
    /// ```
    pub fn to_theory(&self, lr: f64) -> Result<f64> {
        learning_rate(lr)?;
        Ok(lr * self.factor()?)
    }

    /// Convert the theory's η to this convention.
    pub fn from_theory(&self, eta: f64) -> Result<f64> {
        learning_rate(eta)?;
        Ok(eta / self.factor()?)
    }

    /// Convert an eigenvalue (Hessian, λ_i, …) measured in this convention to the theory's:
    /// λ_theory = λ_given / factor, so that η·λ is unchanged (§6 item 1: convert both together).
    pub fn eigenvalue_to_theory(&self, lambda: f64) -> Result<f64> {
        Ok(lambda / self.factor()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p_and_pi_table() {
        // THEORY §5 table: (B, p, π) = (1, 1, 1/3), (2, 1/4, 2/3), (3, 0, 1), (2 repl, 1/2, 5/9).
        let rows = [
            (1, Sampling::WithoutReplacement, 1.0, 1.0 / 3.0),
            (2, Sampling::WithoutReplacement, 0.25, 2.0 / 3.0),
            (3, Sampling::WithoutReplacement, 0.0, 1.0),
            (2, Sampling::WithReplacement, 0.5, 5.0 / 9.0),
        ];
        for (b, s, p_, pi_) in rows {
            let m = BatchModel::new(3, b, s).unwrap();
            assert!((m.p() - p_).abs() <= 1e-16, "p B={b}");
            assert!((m.pi() - pi_).abs() <= 2e-16, "pi B={b}");
            assert!(m.pi_value().lower() <= pi_ && pi_ <= m.pi_value().upper());
        }
    }

    #[test]
    fn errors() {
        assert_eq!(
            BatchModel::new(0, 1, Sampling::WithReplacement),
            Err(BoundsError::NoSamples)
        );
        assert_eq!(
            BatchModel::new(3, 0, Sampling::WithReplacement),
            Err(BoundsError::ZeroBatch)
        );
        assert!(matches!(
            BatchModel::new(3, 4, Sampling::WithoutReplacement),
            Err(BoundsError::BatchTooLarge { batch: 4, n: 3 })
        ));
        assert!(BatchModel::new(3, 4, Sampling::WithReplacement).is_ok());
        assert!(LrConvention::Theory.to_theory(0.0).is_err());
        assert!(LrConvention::Theory.to_theory(f64::NAN).is_err());
        assert!(
            LrConvention::TorchMse { outputs: 0 }
                .to_theory(0.1)
                .is_err()
        );
    }

    #[test]
    fn edge_values() {
        // n = 1: p := 0; with replacement π = 1.
        assert_eq!(p(1, 1, Sampling::WithoutReplacement).unwrap(), 0.0);
        assert_eq!(pi(1, 5, Sampling::WithReplacement).unwrap(), 1.0);
        assert_eq!(falling_factorial_ratio(2, 3, 3), 0.0);
        assert_eq!(falling_factorial_ratio(2, 3, 2), 1.0 / 3.0);
        assert_eq!(falling_factorial(5, 3), 60.0);
        assert_eq!(falling_factorial(2, 3), 0.0);
        // Small B/n with replacement: π ≈ B/n − B(B−1)/(2n²).
        let pi_ = pi(1_000_000, 2, Sampling::WithReplacement).unwrap();
        assert!((pi_ - (2e-6 - 1e-12)).abs() < 1e-20);
    }

    #[test]
    fn lr_conventions_convert_eta_and_lambda_together() {
        let c = LrConvention::TorchMse { outputs: 10 };
        let eta_t = 0.05;
        let lam_t = 3.0;
        let eta = c.to_theory(eta_t).unwrap();
        let lam = c.eigenvalue_to_theory(lam_t).unwrap();
        assert!((eta * lam - eta_t * lam_t).abs() < 1e-15);
        assert!((c.from_theory(eta).unwrap() - eta_t).abs() < 1e-17);
        let s = serde_json::to_string(&c).unwrap();
        assert_eq!(s, r#"{"convention":"torch-mse","outputs":10}"#);
    }
}
