//! T9 — adversarial robustness from certified local Lipschitz bounds (T10).
//!
//! - (b) regression: ε is τ-certified at x_i if ε·L_i(ε) ≤ τ (and then so is every ε′ ≤ ε);
//! - (c) classification: certified at ε if f_y − f_c > ε·L_i^{(y,c)}(ε) for all c ≠ y, with
//!   L^{(y,c)} = min(√2·L_i, L of the difference network); the simplest form is m_i > √2εL_i;
//! - (d) Markov fraction bound, for τ > εω_max:
//!   (1/n)#{i : sup_{‖δ‖≤ε}‖f(x_i+δ) − f(x_i)‖ > τ} ≤ (εG_{2k})^{2k}/(τ − εω_max)^{2k}; for
//!   classification at margin level γ > √2εω_max the non-certified fraction is at most
//!   (1/n)#{m_i ≤ γ} + (√2εG_{2k})^{2k}/(γ − √2εω_max)^{2k}.
//!
//! The certified radii need the network (bisection on ε with T10 at every step) and live in the
//! main crate; this module decides single radii and aggregates. All statements are ℓ2.

use serde::{Deserialize, Serialize};

use crate::error::{Result, non_empty, nonneg};
use crate::kind::{Scalar, Value};
use crate::moments::power_mean_order;
use crate::round::{div_down, div_up, mul_up, pow_down, pow_up, sub_down};
use crate::verdict::{Check, Status, Verdict};

/// One competing class c ≠ y of a classification point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PairGap {
    /// f_y(x_i) − f_c(x_i) (exact).
    pub gap: f64,
    /// T10 bound of the difference network (last layer `W_L[y] − W_L[c]`), if computed.
    #[serde(default)]
    pub lipschitz: Option<Value>,
}

/// What "robust" means at a point (T9(b) or T9(c)).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "snake_case")]
pub enum Task {
    /// T9(b): `sup_{‖δ‖≤ε} ‖f(x_i+δ) − f(x_i)‖ ≤ ε·L_i(ε) ≤ τ`.
    Regression {
        /// The tolerated output change τ ≥ 0.
        tau: f64,
    },
    /// T9(c): the argmax stays the label on the whole ball (needs `C ≥ 2` and targets).
    Classification,
}

/// Per training point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct T9Point {
    /// L_i(ε) (upper; T10 at radius ε).
    pub lipschitz: Value,
    /// For classification: one entry per c ≠ y.
    #[serde(default)]
    pub pairs: Vec<PairGap>,
}

/// Inputs of the Markov fraction bound (d).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarkovInput {
    /// The order k ≥ 1 (the power is 2k; [`crate::moments::power_mean_order`]).
    pub k: u32,
    /// G_{2k} = ((1/n)Σ‖J_x(x_i)‖₂^{2k})^{1/(2k)} (upper side used).
    pub g_2k: Value,
    /// ω_max = max_i ω_i(ε) (T8c; upper side used).
    pub omega_max: Value,
    /// Classification: margin level γ and the fraction (1/n)#{m_i ≤ γ}.
    #[serde(default)]
    pub margin_level: Option<(f64, f64)>,
}

/// T9 input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct T9Input {
    /// Radius ε (ℓ2).
    pub epsilon: f64,
    /// Regression (τ) or classification.
    pub task: Task,
    /// Per training point.
    pub points: Vec<T9Point>,
    /// Markov fraction bound inputs, if available.
    #[serde(default)]
    pub markov: Option<MarkovInput>,
}

/// (b) The check "ε·L_i(ε) ≤ τ" (certified only with a rigorous upper side of L_i).
///
/// ```
/// use flatcert_bounds::{Status, Value};
/// use flatcert_bounds::t9::regression_check;
/// // THEORY §5: at x_0 = 1 the T10 bound is 1 for every ε; τ = 0.5 certifies ε = 0.5.
/// assert_eq!(regression_check(0.5, Value::upper_bound(1.0, 0.0), 0.5).status, Status::Certified);
/// ```
pub fn regression_check(eps: f64, lipschitz: Value, tau: f64) -> Check {
    Check::le(
        "regression_radius",
        "ε·L_i(ε) ≤ τ (T9b)",
        Value::constant(eps) * lipschitz.only_upper(),
        Value::constant(tau),
    )
}

/// (c) Whether a classification point is certified at ε: every gap f_y − f_c exceeds
/// ε·min(√2·L_i, L^{(y,c)}) rigorously. A margin ≤ 0 is never certified; no pairs ⇒ false.
pub fn classification_certified(eps: f64, lipschitz: Value, pairs: &[PairGap]) -> bool {
    let sqrt2l = Value::constant(2.0).sqrt() * lipschitz.only_upper();
    !pairs.is_empty()
        && pairs.iter().all(|pg| {
            let l = match pg.lipschitz {
                Some(ld) => Scalar::min(sqrt2l, ld.only_upper()),
                None => sqrt2l,
            };
            pg.gap > 0.0
                && Check::lt("", "", Value::constant(eps) * l, Value::constant(pg.gap)).status
                    == Status::Certified
        })
}

/// The largest ε with ε·L ≤ τ in rounded-up arithmetic: a certified regression radius when L
/// bounds the local Lipschitz constant on a ball of radius ≥ that ε (nesting, T10).
///
/// ```
/// use flatcert_bounds::t9::radius_for_bound;
/// assert_eq!(radius_for_bound(0.5, 1.0), 0.5);
/// assert!(radius_for_bound(1.0, 3.0) <= 1.0 / 3.0);
/// ```
pub fn radius_for_bound(tau: f64, lipschitz_upper: f64) -> f64 {
    if lipschitz_upper <= 0.0 {
        return f64::INFINITY;
    }
    let mut e = div_down(tau, lipschitz_upper);
    while e > 0.0 && mul_up(e, lipschitz_upper) > tau {
        e = e.next_down();
    }
    e.max(0.0)
}

/// The exact certified fraction (1/n)#{certified}.
pub fn certified_fraction(flags: &[bool]) -> Result<f64> {
    non_empty("certified flags", flags)?;
    Ok(flags.iter().filter(|f| **f).count() as f64 / flags.len() as f64)
}

/// (d) regression: (εG_{2k})^{2k}/(τ − εω_max)^{2k}, rounded up; +∞ (vacuous) when
/// τ ≤ εω_max. `g_2k` and `omega_max` must be upper bounds. Any k ≥ 1 (the power 2k is even).
/// Not clamped at 1 (THEORY errata, revision 2): a value ≥ 1 is vacuous and [`check`] says so.
///
/// ```
/// use flatcert_bounds::t9::markov_fraction_bound_regression;
/// let b = markov_fraction_bound_regression(0.1, 1.0, 2, 0.0, 0.5).unwrap();
/// assert!((b - 0.2f64.powi(4)).abs() < 1e-16);
/// ```
pub fn markov_fraction_bound_regression(
    eps: f64,
    g_2k: f64,
    k: u32,
    omega_max: f64,
    tau: f64,
) -> Result<f64> {
    power_mean_order(k)?;
    let (eps, g, om, tau) = (
        nonneg("ε", eps)?,
        nonneg("G_2k", g_2k)?,
        nonneg("ω_max", omega_max)?,
        nonneg("τ", tau)?,
    );
    Ok(markov_ratio(
        mul_up(eps, g),
        sub_down(tau, mul_up(eps, om)),
        k,
    ))
}

/// (d) classification: frac_le_gamma + (√2εG_{2k})^{2k}/(γ − √2εω_max)^{2k}, rounded up; +∞
/// when γ ≤ √2εω_max. `frac_le_gamma` = (1/n)#{m_i ≤ γ} (count `m_i^lower ≤ γ` with the
/// rigorous margin lower bounds: over-counting keeps the bound sound). Any k ≥ 1; not clamped.
pub fn markov_fraction_bound_classification(
    eps: f64,
    g_2k: f64,
    k: u32,
    omega_max: f64,
    gamma: f64,
    frac_le_gamma: f64,
) -> Result<f64> {
    power_mean_order(k)?;
    let (eps, g, om, gamma, frac) = (
        nonneg("ε", eps)?,
        nonneg("G_2k", g_2k)?,
        nonneg("ω_max", omega_max)?,
        nonneg("γ", gamma)?,
        nonneg("fraction", frac_le_gamma)?,
    );
    let s2e = mul_up(crate::round::sqrt_up(2.0), eps);
    let tail = markov_ratio(mul_up(s2e, g), sub_down(gamma, mul_up(s2e, om)), k);
    Ok(crate::round::add_up(frac, tail))
}

fn markov_ratio(num: f64, den: f64, k: u32) -> f64 {
    if den <= 0.0 {
        return f64::INFINITY;
    }
    let q = 2.0 * f64::from(k);
    div_up(pow_up(num, q), pow_down(den, q))
}

/// T9 verdict: per-point decisions aggregated into the exact certified fraction, plus the Markov
/// bound when its inputs are given.
pub fn check(input: &T9Input) -> Result<Verdict> {
    let eps = nonneg("ε", input.epsilon)?;
    non_empty("T9 points", &input.points)?;
    for p in &input.points {
        p.lipschitz.validate_nonneg("L_i(ε)")?;
    }
    let mut v = Verdict::new("T9", "Adversarial robustness");
    let all_upper = input.points.iter().all(|p| p.lipschitz.has_upper());
    v.hyp(Check::given(
        "lipschitz",
        "(L) L_i(ε) ≥ sup‖J_x‖₂ on B(x_i, ε) for every i (T10; libm hypothesis for smooth σ)",
        if all_upper {
            Status::Certified
        } else {
            Status::Estimated
        },
    ));
    let flags: Vec<bool> = match input.task {
        Task::Regression { tau } => {
            let tau = nonneg("τ", tau)?;
            input
                .points
                .iter()
                .map(|p| regression_check(eps, p.lipschitz, tau).status == Status::Certified)
                .collect()
        }
        Task::Classification => input
            .points
            .iter()
            .map(|p| classification_certified(eps, p.lipschitz, &p.pairs))
            .collect(),
    };
    let count = flags.iter().filter(|f| **f).count();
    v.conclude(
        "certified_count",
        "points certified at ε",
        Value::exact(count as f64, 0.0),
    );
    v.conclude(
        "certified_fraction",
        "exact certified fraction at ε (the primary number)",
        Value::computed(certified_fraction(&flags)?, 1),
    );
    if let Some(m) = &input.markov {
        markov(&mut v, input, m, eps)?;
    }
    v.note(
        "These are ℓ2 statements; for ℓ∞ use B_∞(x, ε) ⊂ B_2(x, √d·ε) or the ℓ∞ variant of T10.",
    );
    Ok(v)
}

fn markov(v: &mut Verdict, input: &T9Input, m: &MarkovInput, eps: f64) -> Result<()> {
    m.g_2k.validate_nonneg("G_2k")?;
    m.omega_max.validate_nonneg("ω_max")?;
    let rigorous = m.g_2k.has_upper() && m.omega_max.has_upper();
    let (g, om) = if rigorous {
        (m.g_2k.upper(), m.omega_max.upper())
    } else {
        (m.g_2k.value, m.omega_max.value)
    };
    let (name, statement, b) = match (input.task, m.margin_level) {
        (Task::Regression { tau }, _) => (
            "markov_regression",
            "(1/n)#{sup‖f(x_i+δ) − f(x_i)‖ > τ} ≤ (εG_2k)^(2k)/(τ − εω_max)^(2k) (T9d)",
            markov_fraction_bound_regression(eps, g, m.k, om, tau)?,
        ),
        (Task::Classification, Some((gamma, frac))) => (
            "markov_classification",
            "non-certified fraction ≤ (1/n)#{m_i ≤ γ} + (√2εG_2k)^(2k)/(γ − √2εω_max)^(2k) (T9d)",
            markov_fraction_bound_classification(eps, g, m.k, om, gamma, frac)?,
        ),
        (Task::Classification, None) => return Ok(()),
    };
    let value = if rigorous {
        Value::upper_bound(b, 0.0)
    } else {
        Value::estimate(b, 0.0)
    };
    v.conclude(name, statement, value);
    if b.is_infinite() {
        v.note("The Markov bound is vacuous: the threshold does not exceed ε·ω_max.");
    } else if b >= 1.0 {
        v.note("The Markov bound is ≥ 1 and therefore vacuous at this ε.");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_regression_radius() {
        // THEORY §5: x_0 = 1, τ = 0.5, L = 1 for every ε ⇒ radius 0.5 (1 − O(u) allowed).
        let r = radius_for_bound(0.5, 1.0);
        assert!((0.5 * (1.0 - 4.0 * f64::EPSILON)..=0.5).contains(&r));
        let input = T9Input {
            epsilon: 0.5,
            task: Task::Regression { tau: 0.5 },
            points: vec![
                T9Point {
                    lipschitz: Value::upper_bound(1.0, 0.0),
                    pairs: vec![]
                };
                3
            ],
            markov: Some(MarkovInput {
                k: 2,
                g_2k: Value::upper_bound(1.0, 0.0),
                omega_max: Value::upper_bound(0.0, 0.0),
                margin_level: None,
            }),
        };
        let v = check(&input).unwrap();
        assert_eq!(v.conclusion("certified_fraction").unwrap().value.value, 1.0);
        // (0.5·1)^4 / 0.5^4 = 1: the Markov bound is vacuous here.
        let b = v.conclusion("markov_regression").unwrap().value.upper();
        assert!((b - 1.0).abs() < 1e-15);
    }

    #[test]
    fn classification_uses_the_smaller_lipschitz_bound() {
        let l = Value::upper_bound(1.0, 0.0);
        // Gap 1, ε = 0.5: √2·0.5 = 0.707 < 1 certifies; with ε = 0.8 only the pair bound 1.0 helps.
        let pairs = [PairGap {
            gap: 1.0,
            lipschitz: None,
        }];
        assert!(classification_certified(0.5, l, &pairs));
        assert!(!classification_certified(0.8, l, &pairs));
        let pairs = [PairGap {
            gap: 1.0,
            lipschitz: Some(Value::upper_bound(1.0, 0.0)),
        }];
        assert!(classification_certified(0.8, l, &pairs));
        // Margin ≤ 0 never certified, even at ε = 0.
        let pairs = [PairGap {
            gap: 0.0,
            lipschitz: None,
        }];
        assert!(!classification_certified(0.0, l, &pairs));
        // An estimated L never certifies.
        let pairs = [PairGap {
            gap: 1.0,
            lipschitz: None,
        }];
        assert!(!classification_certified(
            0.1,
            Value::estimate(1.0, 0.0),
            &pairs
        ));
    }

    #[test]
    fn markov_edges() {
        assert!(
            markov_fraction_bound_regression(1.0, 1.0, 2, 1.0, 0.5)
                .unwrap()
                .is_infinite()
        );
        // k = 0 has no power mean; every k ≥ 1, odd included, is valid (the power is 2k).
        assert!(markov_fraction_bound_regression(1.0, 1.0, 0, 0.0, 0.5).is_err());
        assert!(markov_fraction_bound_classification(0.1, 1.0, 0, 0.0, 1.0, 0.25).is_err());
        let b = markov_fraction_bound_classification(0.1, 1.0, 2, 0.0, 1.0, 0.25).unwrap();
        let expect = 0.25 + (2f64.sqrt() * 0.1).powi(4);
        assert!(b >= expect && b - expect < 1e-15);
    }

    /// The closed forms of the former `measure::robustness` copies, at odd k: (0.1·1)²/0.5² = 0.04
    /// (k = 1) and 1/4 + (√2·0.1)²/0.5² = 0.33; and a bound above 1 is returned as is, never
    /// capped (THEORY revision 2 errata), and reported vacuous by [`check`].
    #[test]
    fn markov_odd_k_and_bounds_above_one() {
        let b = markov_fraction_bound_regression(0.1, 1.0, 1, 0.0, 0.5).unwrap();
        assert!((0.04..=0.04 * (1.0 + 1e-14)).contains(&b), "{b}");
        let b = markov_fraction_bound_regression(0.1, 1.0, 3, 0.0, 0.5).unwrap();
        assert!(
            (0.2f64.powi(6)..=0.2f64.powi(6) * (1.0 + 1e-14)).contains(&b),
            "{b}"
        );
        let c = markov_fraction_bound_classification(0.1, 1.0, 1, 0.0, 0.5, 0.25).unwrap();
        assert!((0.33..=0.33 * (1.0 + 1e-14)).contains(&c), "{c}");
        // (1·1)^6/0.5^6 = 64 at k = 3: a fraction bound above 1, not capped.
        let big = markov_fraction_bound_regression(1.0, 1.0, 3, 0.0, 0.5).unwrap();
        assert!((64.0..=64.0 * (1.0 + 1e-14)).contains(&big), "{big}");
        let c = markov_fraction_bound_classification(1.0, 1.0, 1, 0.0, 0.5, 0.5).unwrap();
        assert!(c > 1.0, "{c}");
        let input = T9Input {
            epsilon: 1.0,
            task: Task::Regression { tau: 0.5 },
            points: vec![T9Point {
                lipschitz: Value::upper_bound(1.0, 0.0),
                pairs: vec![],
            }],
            markov: Some(MarkovInput {
                k: 3,
                g_2k: Value::upper_bound(1.0, 0.0),
                omega_max: Value::upper_bound(0.0, 0.0),
                margin_level: None,
            }),
        };
        let v = check(&input).unwrap();
        let m = v.conclusion("markov_regression").unwrap().value;
        assert!(m.upper() >= 64.0);
        assert!(
            v.notes
                .iter()
                .any(|n| n.contains("≥ 1 and therefore vacuous"))
        );
        // τ ≤ εω_max: +∞, vacuous.
        let inf = markov_fraction_bound_regression(1.0, 1.0, 1, 0.5, 0.5).unwrap();
        assert!(inf.is_infinite());
    }
}
