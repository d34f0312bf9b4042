//! What the plans of `measure`, `stability` and `simulate` share (issue 13 item 4): the checks of
//! a learning rate and of the moment orders k, both by the rules of `flatcert_bounds` (so every
//! command words them the same), and the memory limit.

use flatcert_bounds::moments::{KDomain, validate_k};

use crate::error::{Error, Result};

/// The memory limit in bytes of a plan's large allocations: `limit`, else
/// [`crate::memory::default_memory_limit`].
pub fn memory_limit_bytes(limit: Option<usize>) -> usize {
    limit.unwrap_or_else(crate::memory::default_memory_limit)
}

/// A learning rate the caller gave (field `lr`; `None`: not given): finite and > 0
/// ([`flatcert_bounds::error::learning_rate`], THEORY §0), else a usage error naming `lr`.
pub fn check_lr(lr: Option<f64>) -> Result<()> {
    match lr {
        Some(lr) => flatcert_bounds::error::learning_rate(lr)
            .map(|_| ())
            .map_err(|e| Error::invalid_argument("lr", e.to_string())),
        None => Ok(()),
    }
}

/// The moment orders of field `k`: at least one, each in the command's `domain`
/// ([`flatcert_bounds::moments::validate_k`], THEORY T6–T9), else a usage error naming `k`.
pub fn check_k(domain: KDomain, ks: &[u32]) -> Result<()> {
    validate_k(domain, ks).map_err(|e| Error::invalid_argument("k", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_message_per_rule() {
        assert!(check_lr(None).is_ok() && check_lr(Some(0.1)).is_ok());
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let e = check_lr(Some(bad)).unwrap_err().to_string();
            assert!(e.contains("lr") && e.contains("positive and finite"), "{e}");
        }
        assert!(check_k(KDomain::Simulate, &[2, 8]).is_ok());
        let e = check_k(KDomain::Simulate, &[2, 10])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("k") && e.contains("2..=8") && e.contains("got 10"),
            "{e}"
        );
        let e = check_k(KDomain::Measure, &[]).unwrap_err().to_string();
        assert!(e.contains("at least one order k ≥ 1"), "{e}");
        assert!(memory_limit_bytes(Some(7)) == 7 && memory_limit_bytes(None) > 0);
    }
}
