//! Measured numbers that say what they are (THEORY.md §3 "Kinds").

use serde::{Deserialize, Serialize};

use flatcert_bounds::Confidence;

/// What a reported number is (THEORY.md §3): the bounds crate's one definition. A [`Quantity`]
/// holds one number, so it is never [`Kind::Interval`] (a two-sided bracket is two quantities,
/// an upper and a lower one); the measurement-document reader refuses that kind.
pub use flatcert_bounds::Kind;

/// Read a [`Quantity`]'s kind: one of the four kinds of a single number.
fn point_kind<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Kind, D::Error> {
    match Kind::deserialize(d)? {
        Kind::Interval => Err(serde::de::Error::custom(
            "kind `interval` is not the kind of one number: expected exact, upper, lower or \
             estimate (a bracket is an upper and a lower quantity)",
        )),
        k => Ok(k),
    }
}

/// One measured number with its kind, tolerance and method.
///
/// `tol` is, by kind: the a-priori rounding estimate (exact), the allowance already included in the
/// bound (upper/lower), or the standard error / residual (estimate).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quantity {
    /// The number.
    pub value: f64,
    /// What the number is (never [`Kind::Interval`]: refused when read).
    #[serde(deserialize_with = "point_kind")]
    pub kind: Kind,
    /// Rounding estimate, allowance, or standard error (see the type's docs).
    pub tol: f64,
    /// How it was computed (e.g. `"gram-eigh+weyl"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Free-text caveat shown to users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Set when the bound holds only with probability 1 − δ over a seeded random start (THEORY
    /// §3 item 8): serialized as `"confidence": 1 − δ` and `"delta": δ`. Absent: deterministic.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<Confidence>,
}

impl Quantity {
    /// An exact value with an a-priori rounding tolerance.
    pub fn exact(value: f64, tol: f64) -> Self {
        Self::new(value, Kind::Exact, tol)
    }
    /// A rigorous upper bound; `allowance` is the rounding allowance already added.
    pub fn upper(value: f64, allowance: f64) -> Self {
        Self::new(value, Kind::Upper, allowance)
    }
    /// A rigorous lower bound; `allowance` is the rounding allowance already subtracted.
    pub fn lower(value: f64, allowance: f64) -> Self {
        Self::new(value, Kind::Lower, allowance)
    }
    /// An estimate with its standard error or residual.
    pub fn estimate(value: f64, std_err: f64) -> Self {
        Self::new(value, Kind::Estimate, std_err)
    }
    /// A quantity of any kind.
    pub fn new(value: f64, kind: Kind, tol: f64) -> Self {
        Self {
            value,
            kind,
            tol,
            method: None,
            note: None,
            confidence: None,
        }
    }
    /// Builder: attach the method name.
    pub fn with_method(mut self, method: impl Into<String>) -> Self {
        self.method = Some(method.into());
        self
    }
    /// Builder: the bound holds except with probability δ over the random event `event` (one
    /// seeded run, [`Confidence::event_id`]; THEORY §3 item 8).
    pub fn with_delta(mut self, delta: f64, event: u64) -> Self {
        self.confidence = Some(Confidence::from_delta(delta, Some(event)));
        self
    }
    /// Builder: attach a caveat.
    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }
}

/// Unit roundoff of f64, u = 2⁻⁵³ (the bounds crate's constant).
pub use flatcert_bounds::round::UNIT_ROUNDOFF;

/// Higham's γ_k = k·u / (1 − k·u), rounded up (THEORY.md §3): the bounds crate's one
/// definition. +∞ when k·u ≥ 1.
pub use flatcert_bounds::round::gamma;

/// Pad a computed result upward: `x·(1 + 2u) + MIN_POSITIVE` (`x·(1 − 2u) + MIN_POSITIVE` for
/// `x < 0`): at least one ulp of `x` above `x` in the normal range (`MIN_POSITIVE` covers
/// underflow), so a value produced by one round-to-nearest operation becomes an upper bound of
/// the exact result; used to make sums and products of bounds upward-rounded (THEORY.md §3). A pad, not an exact directed rounding: the
/// bounds crate's `round::{add_up, mul_up, …}` round the operation itself, and
/// `round::ulp_up` steps exactly one ulp.
pub fn round_up(x: f64) -> f64 {
    if x >= 0.0 {
        x * (1.0 + 2.0 * UNIT_ROUNDOFF) + f64::MIN_POSITIVE
    } else {
        x * (1.0 - 2.0 * UNIT_ROUNDOFF) + f64::MIN_POSITIVE
    }
}

/// Pad a computed result downward (mirror of [`round_up`]: `−round_up(−x)`).
pub fn round_down(x: f64) -> f64 {
    -round_up(-x)
}

/// The shortest decimal form of `x` for echoing a number that came from user input (η, η_torch,
/// ε, …; issue 12 item 7): the fewest significant digits (1 … 17) whose value is within 4 ulp of
/// `x`, printed in plain notation for 10⁻⁵ ≤ |x| < 10¹⁶, else in scientific notation. A number
/// the user typed with ≤ 15 digits reads back as typed even after the few correctly rounded
/// conversions applied to it (η = 2η_torch/C, η_torch = ηC/2: each adds ≤ ½ ulp, so 4 ulp covers
/// a round trip with margin), and a number that needs 17 digits keeps them. Display only: JSON
/// documents keep every bit.
///
/// ```
/// use flatcert::quantity::shortest;
/// assert_eq!(shortest(0.15000000000000002), "0.15");
/// assert_eq!(shortest(0.2), "0.2");
/// assert_eq!(shortest(1.0 / 3.0), "0.3333333333333333");
/// assert_eq!(shortest(16.0), "16");
/// assert_eq!(shortest(2.5e-7), "2.5e-7");
/// ```
pub fn shortest(x: f64) -> String {
    if !x.is_finite() || x == 0.0 {
        return format!("{x}");
    }
    let tol = 4.0 * f64::EPSILON * x.abs();
    let y = (1..=17)
        .filter_map(|p| format!("{:.*e}", p - 1, x).parse::<f64>().ok())
        .find(|y| (y - x).abs() <= tol)
        .unwrap_or(x);
    if (1e-5..1e16).contains(&y.abs()) {
        format!("{y}")
    } else {
        format!("{y:e}")
    }
}

#[cfg(test)]
mod tests {

    /// One Kind for measured numbers and bounds values; a single number is never an interval.
    #[test]
    fn a_quantity_is_never_read_as_an_interval() {
        let ok: Quantity =
            serde_json::from_str(r#"{"value": 1.0, "kind": "upper", "tol": 0.0}"#).unwrap();
        assert_eq!(ok.kind, Kind::Upper);
        let err =
            serde_json::from_str::<Quantity>(r#"{"value": 1.0, "kind": "interval", "tol": 0.0}"#)
                .unwrap_err()
                .to_string();
        assert!(err.contains("not the kind of one number"), "{err}");
    }

    use super::*;

    #[test]
    fn rounding_brackets_the_value() {
        for &x in &[0.0, 1.0, -1.0, 1e-300, -3.5e200, 7.25] {
            // The pad moves at least as far as the bounds crate's one-ulp step.
            assert!(round_up(x) >= flatcert_bounds::round::ulp_up(x), "{x}");
            assert!(round_down(x) <= flatcert_bounds::round::ulp_down(x), "{x}");
        }
        assert!(gamma(10) > 10.0 * UNIT_ROUNDOFF);
        assert!(gamma(usize::MAX).is_infinite());
    }

    #[test]
    fn kind_serializes_lowercase() {
        let q = Quantity::upper(2.0, 1e-15);
        let s = serde_json::to_string(&q).unwrap();
        assert!(s.contains("\"kind\":\"upper\""), "{s}");
    }
}
