//! Typed input errors. Every public function validates its numbers and returns a
//! [`BoundsError`] instead of panicking.

/// Why a theorem could not be evaluated on the given numbers.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BoundsError {
    /// n = 0: there is no training set.
    #[error("the number of samples n must be at least 1")]
    NoSamples,
    /// B = 0.
    #[error("the batch size B must be at least 1")]
    ZeroBatch,
    /// B > n under model (S): a batch of distinct samples cannot be larger than the data set.
    #[error("batch size B = {batch} exceeds n = {n}; sampling without replacement needs B <= n")]
    BatchTooLarge {
        /// The batch size B.
        batch: usize,
        /// The number of samples n.
        n: usize,
    },
    /// η ≤ 0 or not finite.
    #[error("the learning rate must be positive and finite, got {0}")]
    InvalidLearningRate(f64),
    /// The moment order k must be even and ≥ 2 (THEORY T6(e): odd k proves nothing).
    #[error("the moment order k = {0} must be even and at least 2 (THEORY T6)")]
    InvalidMomentOrder(u32),
    /// A power-mean order k (the power is 2k: G_{2k}, THEORY T7–T9) must be ≥ 1.
    #[error("k must be ≥ 1 (a power mean of order 2k), got {0}")]
    InvalidPowerMeanOrder(u32),
    /// An empty list of moment orders.
    #[error("give at least one {} k ≥ {}", if *even { "even order" } else { "order" }, if *even { 2 } else { 1 })]
    NoMomentOrder {
        /// Whether the orders must be even (k-th moment stability).
        even: bool,
    },
    /// A moment order outside the domain of a command ([`crate::moments::KDomain`]).
    #[error("{}", moment_domain_message(*k, *min, *max, *even))]
    MomentOrderOutOfDomain {
        /// The offending k.
        k: u32,
        /// The smallest accepted k.
        min: u32,
        /// The largest accepted k.
        max: u32,
        /// Whether k must be even.
        even: bool,
    },
    /// A number that must be finite (or ±∞ where allowed) is NaN or infinite.
    #[error("{what} must be finite, got {value}")]
    NonFinite {
        /// The quantity.
        what: &'static str,
        /// The offending value.
        value: f64,
    },
    /// A number that must be ≥ 0 is negative.
    #[error("{what} must be >= 0, got {value}")]
    Negative {
        /// The quantity.
        what: &'static str,
        /// The offending value.
        value: f64,
    },
    /// A number that must be > 0 is not.
    #[error("{what} must be > 0, got {value}")]
    NotPositive {
        /// The quantity.
        what: &'static str,
        /// The offending value.
        value: f64,
    },
    /// A list that must not be empty is empty.
    #[error("{0} must not be empty")]
    Empty(&'static str),
    /// Two lists that must have the same length do not.
    #[error("{what}: expected length {expected}, got {got}")]
    LengthMismatch {
        /// The quantity.
        what: &'static str,
        /// The expected length.
        expected: usize,
        /// The given length.
        got: usize,
    },
    /// A value's enclosure is malformed (lower side above upper side, missing side, NaN).
    #[error("{what}: invalid value ({reason})")]
    InvalidValue {
        /// The quantity.
        what: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Any other precondition of a theorem.
    #[error("{what}: {reason}")]
    Precondition {
        /// The quantity or theorem.
        what: &'static str,
        /// The violated precondition.
        reason: &'static str,
    },
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, BoundsError>;

/// `x` must be finite.
pub(crate) fn finite(what: &'static str, x: f64) -> Result<f64> {
    if x.is_finite() {
        Ok(x)
    } else {
        Err(BoundsError::NonFinite { what, value: x })
    }
}

/// `x` must be finite and ≥ 0.
pub(crate) fn nonneg(what: &'static str, x: f64) -> Result<f64> {
    finite(what, x)?;
    if x < 0.0 {
        Err(BoundsError::Negative { what, value: x })
    } else {
        Ok(x)
    }
}

/// `x` must be finite and > 0.
pub(crate) fn positive(what: &'static str, x: f64) -> Result<f64> {
    finite(what, x)?;
    if x > 0.0 {
        Ok(x)
    } else {
        Err(BoundsError::NotPositive { what, value: x })
    }
}

/// η must be finite and > 0 (theory convention, §0): the one learning-rate check, also of the
/// `flatcert` plans.
pub fn learning_rate(eta: f64) -> Result<f64> {
    if eta.is_finite() && eta > 0.0 {
        Ok(eta)
    } else {
        Err(BoundsError::InvalidLearningRate(eta))
    }
}

/// k must be even and ≥ 2 (T6(e)).
pub(crate) fn even_order(k: u32) -> Result<u32> {
    crate::moments::stability_order(k)
}

fn moment_domain_message(k: u32, min: u32, max: u32, even: bool) -> String {
    if even {
        format!(
            "each k must be even and in {min}..={max} (THEORY T6/T7 need even k; odd k prove \
             nothing), got {k}"
        )
    } else {
        format!("each k must lie in {min}..={max}, got {k}")
    }
}

/// A slice must be non-empty.
pub(crate) fn non_empty<T>(what: &'static str, xs: &[T]) -> Result<()> {
    if xs.is_empty() {
        Err(BoundsError::Empty(what))
    } else {
        Ok(())
    }
}

/// Two lengths must agree.
pub(crate) fn same_len(what: &'static str, expected: usize, got: usize) -> Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(BoundsError::LengthMismatch {
            what,
            expected,
            got,
        })
    }
}
