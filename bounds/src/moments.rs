//! Moment orders k: which k each theorem and each command accepts (THEORY T6–T9).
//!
//! Two theorem rules:
//! - **k-th moment stability** (T6, T7): k even and ≥ 2; for odd k T6(e)'s bound proves nothing
//!   ((1 − ηX)^k ≥ 0 needs k even). [`stability_order`].
//! - **power means of order 2k** (G_{2k} of T8(c)/T9(d), |f|_{1,2k} of T7(c), the per-sample
//!   moments): any k ≥ 1 — the exponent 2k is even for every k, and Markov's inequality on
//!   g_i^{2k} holds for every k ≥ 1. [`power_mean_order`].
//!
//! On top of them each command has a practical range, its [`KDomain`]; [`validate_k`] checks a
//! list of k against it. It is the one definition of the four `--k` domains.

use crate::error::{BoundsError, Result};

/// A k-th moment stability order (T6, T7): even and ≥ 2.
///
/// ```
/// use flatcert_bounds::moments::stability_order;
/// assert_eq!(stability_order(4), Ok(4));
/// assert!(stability_order(3).is_err() && stability_order(0).is_err());
/// ```
pub fn stability_order(k: u32) -> Result<u32> {
    if k >= 2 && k.is_multiple_of(2) {
        Ok(k)
    } else {
        Err(BoundsError::InvalidMomentOrder(k))
    }
}

/// A power-mean order k (the power is 2k: G_{2k}, |f|_{1,2k}, T9(d)): any k ≥ 1.
///
/// ```
/// use flatcert_bounds::moments::power_mean_order;
/// assert_eq!(power_mean_order(3), Ok(3));
/// assert!(power_mean_order(0).is_err());
/// ```
pub fn power_mean_order(k: u32) -> Result<u32> {
    if k >= 1 {
        Ok(k)
    } else {
        Err(BoundsError::InvalidPowerMeanOrder(k))
    }
}

/// The orders k a command accepts: its theorem rule ([`stability_order`] or
/// [`power_mean_order`]) and a practical maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KDomain {
    /// `measure --k`: power-mean orders, k in 1..=64 (the moments of order 2k are evaluated in
    /// scaled form, but orders beyond 64 carry no information a user can act on).
    Measure,
    /// `simulate --k`: the fitted growth rates of E‖u_t‖^k (T6), k even in 2..=8.
    Simulate,
    /// `stability --k`: the k-th moment critical rates (T6), k even in 2..=16.
    Stability,
    /// `certify --k`: T6/T7 at each k, k even in 2..=64.
    Certify,
}

impl KDomain {
    /// Whether the domain needs k-th moment stability (even k ≥ 2) rather than a power mean.
    pub fn needs_even(self) -> bool {
        !matches!(self, KDomain::Measure)
    }

    /// The smallest k: 2 for even domains, else 1.
    pub fn min(self) -> u32 {
        if self.needs_even() { 2 } else { 1 }
    }

    /// The largest k accepted.
    pub fn max(self) -> u32 {
        match self {
            KDomain::Measure | KDomain::Certify => 64,
            KDomain::Simulate => 8,
            KDomain::Stability => 16,
        }
    }

    /// Whether k lies in the domain.
    ///
    /// ```
    /// use flatcert_bounds::moments::KDomain;
    /// assert!(KDomain::Measure.contains(3) && !KDomain::Measure.contains(65));
    /// assert!(KDomain::Stability.contains(16) && !KDomain::Stability.contains(18));
    /// assert!(!KDomain::Certify.contains(3) && !KDomain::Simulate.contains(10));
    /// ```
    pub fn contains(self, k: u32) -> bool {
        let rule = if self.needs_even() {
            stability_order(k)
        } else {
            power_mean_order(k)
        };
        rule.is_ok() && k <= self.max()
    }
}

/// Every k of `ks` in `domain`, and at least one.
///
/// ```
/// use flatcert_bounds::moments::{validate_k, KDomain};
/// assert!(validate_k(KDomain::Certify, &[2, 4]).is_ok());
/// assert!(validate_k(KDomain::Certify, &[2, 3]).is_err());
/// assert!(validate_k(KDomain::Measure, &[]).is_err());
/// ```
pub fn validate_k(domain: KDomain, ks: &[u32]) -> Result<()> {
    if ks.is_empty() {
        return Err(BoundsError::NoMomentOrder {
            even: domain.needs_even(),
        });
    }
    match ks.iter().find(|&&k| !domain.contains(k)) {
        Some(&k) => Err(BoundsError::MomentOrderOutOfDomain {
            k,
            min: domain.min(),
            max: domain.max(),
            even: domain.needs_even(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The four domains of the commands before they were unified (cli measure 1..=64, simulate
    /// even 2..=8, stability even 2..=16, certify even 2..=64).
    #[test]
    fn the_four_domains() {
        let accepted = |d: KDomain| (0..=70).filter(|&k| d.contains(k)).collect::<Vec<u32>>();
        assert_eq!(accepted(KDomain::Measure), (1..=64).collect::<Vec<_>>());
        assert_eq!(accepted(KDomain::Simulate), vec![2, 4, 6, 8]);
        assert_eq!(
            accepted(KDomain::Stability),
            vec![2, 4, 6, 8, 10, 12, 14, 16]
        );
        assert_eq!(
            accepted(KDomain::Certify),
            (2..=64).step_by(2).collect::<Vec<_>>()
        );
        assert_eq!(
            validate_k(KDomain::Stability, &[2, 18]),
            Err(BoundsError::MomentOrderOutOfDomain {
                k: 18,
                min: 2,
                max: 16,
                even: true
            })
        );
        assert_eq!(
            validate_k(KDomain::Simulate, &[]),
            Err(BoundsError::NoMomentOrder { even: true })
        );
        let msg = validate_k(KDomain::Measure, &[0]).unwrap_err().to_string();
        assert_eq!(msg, "each k must lie in 1..=64, got 0");
        let msg = validate_k(KDomain::Certify, &[3]).unwrap_err().to_string();
        assert!(msg.contains("even") && msg.contains("2..=64"), "{msg}");
    }
}
