//! Numbers that say what they are (THEORY §3 "Kinds"), and outward-rounded arithmetic on them.
//!
//! A [`Value`] is a reported number with its [`Kind`]. Its rigorous sides are
//!
//! | kind | `lower()` | `upper()` |
//! |---|---|---|
//! | `exact` | value − tol (rounded down) | value + tol (rounded up) |
//! | `upper` | −∞ | value |
//! | `lower` | value | +∞ |
//! | `interval` | lo | hi |
//! | `estimate` | −∞ (no rigorous side) | +∞ (no rigorous side) |
//!
//! `interval` is this crate's addition to the four kinds of §3: a two-sided bracket such as the
//! T5(h) cone bracket of λ_max(𝒟̃), whose lower side comes from a Rayleigh quotient and whose
//! upper side comes from a Collatz–Wielandt certificate. Its `value` is a point inside.
//!
//! Values form a small interval arithmetic (the [`Scalar`] trait, also implemented for `f64`):
//! every operation rounds the sides outward with [`crate::round`], keeps a side only if the
//! operands' sides determine it, and turns the result into an estimate as soon as an estimate
//! enters. **Quantities without a known lower side are taken to be ≥ 0 in products and
//! quotients**, which holds for everything this crate multiplies (norms, eigenvalues of PSD
//! matrices, traces, β_k, p, π).

use std::ops::{Add, Div, Mul, Sub};

use serde::{Deserialize, Serialize};

use crate::error::{BoundsError, Result};
use crate::round::{
    add_down, add_up, div_down, div_up, gamma, mul_down, mul_up, pow_down, pow_up, sqrt_down,
    sqrt_up, sub_down, sub_up,
};
use crate::serde_ext::{ext_f64, ext_f64_opt};

/// What a reported number is (THEORY §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Closed form, only rounding; `tol` is an a-priori rounding estimate.
    Exact,
    /// A rigorous upper bound, rounding included (`tol` = allowance already added).
    Upper,
    /// A rigorous lower bound, rounding included (`tol` = allowance already subtracted).
    Lower,
    /// A rigorous two-sided bracket `[lo, hi]` (e.g. the T5(h) cone bracket).
    Interval,
    /// Stochastic or not rigorous; `tol` is a standard error or a convergence residual.
    Estimate,
}

/// A number with its kind (THEORY §3). See the [module docs](self) for its rigorous sides.
///
/// Serialized as `{"value", "kind", "tol", "lo"?, "hi"?}`; infinite floats as `"+inf"`/`"-inf"`.
///
/// ```
/// use flatcert_bounds::{Kind, Value};
/// let w = Value::upper_bound(1.5, 0.0);            // ‖W‖₂ ≤ 1.5
/// let x = Value::exact(2.0, 0.0);
/// let b = w * x;                              // an upper bound of ‖W‖₂·2
/// assert_eq!(b.kind, Kind::Upper);
/// assert_eq!(b.upper(), 3.0);
/// assert_eq!(b.lower(), f64::NEG_INFINITY);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Value {
    /// The number: the point value (exact, interval, estimate) or the bound (upper, lower).
    #[serde(with = "ext_f64")]
    pub value: f64,
    /// What the number is.
    pub kind: Kind,
    /// Rounding estimate (exact), allowance (upper/lower), or standard error (estimate).
    #[serde(default, with = "ext_f64")]
    pub tol: f64,
    /// Rigorous lower side of an `interval`.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "ext_f64_opt")]
    pub lo: Option<f64>,
    /// Rigorous upper side of an `interval`.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "ext_f64_opt")]
    pub hi: Option<f64>,
    /// Set when a rigorous side holds only with a stated probability over a seeded random start
    /// (THEORY §3 item 8); `None`: the sides are deterministic.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<Confidence>,
}

/// The probability with which a rigorous side holds (THEORY §3 item 8): a bound built on a
/// Gaussian random start is valid except on an event of probability at most δ over that start.
/// Combining values adds the δs of *different* random events (a union bound); values from the
/// same event (the same seeded run, `event`) fail together, so their δ is not added again.
///
/// Serialized as keys next to the value's own: `"confidence": 1 − δ` (what a reader wants),
/// `"delta": δ` (exact; 1 − δ is not representable for small δ, and `delta` is what is read
/// back) and `"event"` when the bound comes from one identified random run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Confidence {
    /// 1 − δ, for display.
    pub confidence: f64,
    /// δ, the failure probability.
    pub delta: f64,
    /// Identifier of the random event (one seeded run; [`Confidence::event_id`]); `None` once
    /// several events were combined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<u64>,
    /// Which rigorous sides of the value hold only with this confidence (the other side, if
    /// any, is deterministic). Serialized as `"confidence_sides"`.
    #[serde(default, rename = "confidence_sides")]
    pub sides: Sides,
}

/// The rigorous sides a [`Confidence`] applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sides {
    /// Only the lower side.
    Lower,
    /// Only the upper side.
    Upper,
    /// Both sides (the conservative default).
    #[default]
    Both,
}

impl Confidence {
    /// The confidence 1 − δ of a failure probability δ ∈ (0, 1) of the random event `event`.
    pub fn from_delta(delta: f64, event: Option<u64>) -> Confidence {
        Confidence {
            confidence: 1.0 - delta,
            delta,
            event,
            sides: Sides::Both,
        }
    }

    /// A stable identifier of a random event: what was run (`what`) and its seed (FNV-1a, so the
    /// same run gets the same id on every machine).
    pub fn event_id(what: &str, seed: u64) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in what.bytes().chain(seed.to_le_bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h
    }

    /// The failure probability of a statement that needs several bounds at once: the larger δ
    /// for one event, the sum (union bound) for different events.
    pub fn combine(a: Option<Confidence>, b: Option<Confidence>) -> Option<Confidence> {
        match (a, b) {
            (None, x) | (x, None) => x,
            (Some(x), Some(y)) if x.event.is_some() && x.event == y.event => {
                Some(Confidence::from_delta(x.delta.max(y.delta), x.event))
            }
            (Some(x), Some(y)) => Some(Confidence::from_delta(
                add_up(x.delta, y.delta).min(1.0),
                None,
            )),
        }
    }

    /// "confidence 1 − 1e-9": how reports show it.
    pub fn label(&self) -> String {
        format!("confidence 1 − {:e}", self.delta)
    }
}

impl Value {
    fn plain(value: f64, kind: Kind, tol: f64) -> Self {
        Self {
            value,
            kind,
            tol,
            lo: None,
            hi: None,
            confidence: None,
        }
    }

    /// An exact value with an a-priori rounding tolerance (`tol ≥ 0`).
    pub fn exact(value: f64, tol: f64) -> Self {
        Self::plain(value, Kind::Exact, tol)
    }

    /// An exact value computed in `ops` rounded operations: tol = γ_{ops+1}·|value|.
    pub fn computed(value: f64, ops: usize) -> Self {
        let tol = if value.is_finite() {
            mul_up(gamma(ops + 1), value.abs())
        } else {
            0.0
        };
        Self::exact(value, tol)
    }

    /// A rigorous upper bound; `allowance` is the rounding allowance already added.
    pub fn upper_bound(value: f64, allowance: f64) -> Self {
        Self::plain(value, Kind::Upper, allowance)
    }

    /// A rigorous lower bound; `allowance` is the rounding allowance already subtracted.
    pub fn lower_bound(value: f64, allowance: f64) -> Self {
        Self::plain(value, Kind::Lower, allowance)
    }

    /// A stochastic or non-rigorous value with its standard error or residual.
    pub fn estimate(value: f64, std_err: f64) -> Self {
        Self::plain(value, Kind::Estimate, std_err)
    }

    /// A rigorous bracket `[lo, hi]`; the point value is the midpoint (or `lo` if `hi` is +∞).
    pub fn interval(lo: f64, hi: f64) -> Self {
        let mid = if hi.is_finite() && lo.is_finite() {
            lo + 0.5 * (hi - lo)
        } else if lo.is_finite() {
            lo
        } else {
            hi
        };
        Self::interval_at(lo, hi, mid)
    }

    /// A rigorous bracket `[lo, hi]` with a chosen point value inside it.
    pub fn interval_at(lo: f64, hi: f64, value: f64) -> Self {
        Self {
            value,
            kind: Kind::Interval,
            tol: 0.0,
            lo: Some(lo),
            hi: Some(hi),
            confidence: None,
        }
    }

    /// The same value, valid except with probability δ over the random event `event` (THEORY §3
    /// item 8; [`Confidence::event_id`]).
    pub fn with_delta(mut self, delta: f64, event: Option<u64>) -> Self {
        self.confidence =
            Confidence::combine(self.confidence, Some(Confidence::from_delta(delta, event)));
        self
    }

    /// The failure probability δ of the rigorous sides (0 when deterministic).
    pub fn delta(&self) -> f64 {
        self.confidence.map_or(0.0, |c| c.delta)
    }

    /// The confidence of the rigorous lower side (`None`: deterministic).
    pub fn lower_confidence(&self) -> Option<Confidence> {
        self.confidence.filter(|c| c.sides != Sides::Upper)
    }

    /// The confidence of the rigorous upper side (`None`: deterministic).
    pub fn upper_confidence(&self) -> Option<Confidence> {
        self.confidence.filter(|c| c.sides != Sides::Lower)
    }

    /// The one [`Confidence`] field from the confidences of the two sides.
    fn side_confidence(lo: Option<Confidence>, hi: Option<Confidence>) -> Option<Confidence> {
        let tag = |c: Confidence, sides| Some(Confidence { sides, ..c });
        match (lo, hi) {
            (None, None) => None,
            (Some(l), None) => tag(l, Sides::Lower),
            (None, Some(h)) => tag(h, Sides::Upper),
            (Some(l), Some(h)) => {
                Confidence::combine(Some(l), Some(h)).and_then(|c| tag(c, Sides::Both))
            }
        }
    }

    /// The value usable as a rigorous lower side (−∞ if there is none; see the module table).
    pub fn lower(&self) -> f64 {
        match self.kind {
            Kind::Exact if self.tol == 0.0 => self.value,
            Kind::Exact => sub_down(self.value, self.tol),
            Kind::Lower => self.value,
            Kind::Interval => self.lo.unwrap_or(self.value),
            Kind::Upper | Kind::Estimate => f64::NEG_INFINITY,
        }
    }

    /// The value usable as a rigorous upper side (+∞ if there is none; see the module table).
    pub fn upper(&self) -> f64 {
        match self.kind {
            Kind::Exact if self.tol == 0.0 => self.value,
            Kind::Exact => add_up(self.value, self.tol),
            Kind::Upper => self.value,
            Kind::Interval => self.hi.unwrap_or(self.value),
            Kind::Lower | Kind::Estimate => f64::INFINITY,
        }
    }

    /// Whether the value is an estimate (no rigorous side).
    pub fn is_estimate(&self) -> bool {
        self.kind == Kind::Estimate
    }

    /// Whether [`Value::lower`] is a rigorous side.
    pub fn has_lower(&self) -> bool {
        matches!(self.kind, Kind::Exact | Kind::Lower | Kind::Interval)
    }

    /// Whether [`Value::upper`] is a rigorous side.
    pub fn has_upper(&self) -> bool {
        matches!(self.kind, Kind::Exact | Kind::Upper | Kind::Interval)
    }

    /// Validate: no NaN, tol ≥ 0, an interval has `lo ≤ value ≤ hi` (value may be ±∞ only as a
    /// vacuous bound).
    pub fn validate(&self, what: &'static str) -> Result<()> {
        let bad = |reason| Err(BoundsError::InvalidValue { what, reason });
        if self.value.is_nan() {
            return bad("value is NaN");
        }
        if self.tol.is_nan() || self.tol < 0.0 {
            return bad("tol must be >= 0");
        }
        if self.kind == Kind::Interval {
            match (self.lo, self.hi) {
                (Some(lo), Some(hi)) if lo.is_nan() || hi.is_nan() => return bad("NaN side"),
                (Some(lo), Some(hi)) if lo > hi => return bad("lo > hi"),
                (Some(_), Some(_)) => {}
                _ => return bad("an interval needs both lo and hi"),
            }
        }
        Ok(())
    }

    /// Validate a quantity that must be ≥ 0: rejected only when it is *certainly* negative (its
    /// rigorous upper side is < 0). A lower bound below 0 is merely weak, and an estimate may
    /// scatter below 0; products and quotients clamp such sides at 0.
    pub fn validate_nonneg(&self, what: &'static str) -> Result<()> {
        self.validate(what)?;
        if self.has_upper() && self.upper() < 0.0 {
            return Err(BoundsError::Negative {
                what,
                value: self.value,
            });
        }
        Ok(())
    }

    /// The same quantity used only as an upper bound: upper kinds keep their upper side, a lower
    /// bound or an estimate becomes an estimate (a power-iteration ‖W‖₂ cannot serve as an upper
    /// bound, THEORY T2 failure modes).
    pub fn only_upper(&self) -> Value {
        if self.has_upper() {
            Value {
                confidence: Value::side_confidence(None, self.upper_confidence()),
                ..Value::upper_bound(self.upper(), 0.0)
            }
        } else {
            Value::estimate(self.value, self.tol)
        }
    }

    /// The same quantity used only as a lower bound (mirror of [`Value::only_upper`]).
    pub fn only_lower(&self) -> Value {
        if self.has_lower() {
            Value {
                confidence: Value::side_confidence(self.lower_confidence(), None),
                ..Value::lower_bound(self.lower(), 0.0)
            }
        } else {
            Value::estimate(self.value, self.tol)
        }
    }

    /// The tightest enclosure that two enclosures of the same quantity give: the larger rigorous
    /// lower side and the smaller rigorous upper side (each keeps its confidence, THEORY §3 item
    /// 8). Two estimates stay `self`. Used to combine routes to one quantity (T5: the exact
    /// bracket of (f) with the necessary bounds of (g) and the sufficient bound of (i)).
    ///
    /// ```
    /// use flatcert_bounds::{Kind, Value};
    /// let v = Value::interval(1.0, 4.0).intersect(Value::lower_bound(2.0, 0.0));
    /// assert_eq!((v.kind, v.lower(), v.upper()), (Kind::Interval, 2.0, 4.0));
    /// ```
    pub fn intersect(self, other: Value) -> Value {
        type SideConfidence = fn(&Value) -> Option<Confidence>;
        let side = |a: &Value,
                    b: &Value,
                    has: fn(&Value) -> bool,
                    get: fn(&Value) -> f64,
                    better: fn(f64, f64) -> bool,
                    conf: SideConfidence| {
            match (has(a), has(b)) {
                (true, true) if better(get(b), get(a)) => Some((get(b), conf(b))),
                (true, _) => Some((get(a), conf(a))),
                (false, true) => Some((get(b), conf(b))),
                (false, false) => None,
            }
        };
        let lo = side(
            &self,
            &other,
            Value::has_lower,
            Value::lower,
            |x, y| x > y,
            Value::lower_confidence,
        );
        let hi = side(
            &self,
            &other,
            Value::has_upper,
            Value::upper,
            |x, y| x < y,
            Value::upper_confidence,
        );
        let conf = Value::side_confidence(lo.and_then(|l| l.1), hi.and_then(|h| h.1));
        let v = match (lo, hi) {
            (Some((lo, _)), Some((hi, _))) => {
                let (lo, hi) = (lo.min(hi), hi.max(lo));
                Value::interval_at(lo, hi, self.value.clamp(lo, hi))
            }
            (Some((lo, _)), None) => Value::lower_bound(lo, 0.0),
            (None, Some((hi, _))) => Value::upper_bound(hi, 0.0),
            (None, None) => return self,
        };
        Value {
            confidence: conf,
            ..v
        }
    }

    /// max(self, 0) with sides clamped at 0: "quantities that must be ≥ 0 but can round below 0
    /// are clamped at 0 after rounding up" (THEORY §3 Edge cases, ω_i in T8(c)).
    ///
    /// An `exact` value within its tol of 0 cannot stay exact (its sides are symmetric about the
    /// value, so the lower side would stay below 0): it becomes the interval [0, upper].
    pub fn clamp_nonneg(self) -> Value {
        let v = Scalar::max(self, Value::exact(0.0, 0.0));
        if v.has_lower() && v.lower() < 0.0 {
            Value {
                confidence: v.confidence,
                ..Value::interval_at(0.0, v.upper().max(0.0), v.value.max(0.0))
            }
        } else {
            v
        }
    }
}

/// Arithmetic shared by `f64` (plain round-to-nearest) and [`Value`] (outward-rounded sides),
/// so that each formula of THEORY is written once and evaluated both ways.
pub trait Scalar:
    Copy + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> + Div<Output = Self>
{
    /// An exact constant.
    fn constant(c: f64) -> Self;
    /// Square root (of a quantity ≥ 0).
    fn sqrt(self) -> Self;
    /// Power with a real exponent (of a quantity ≥ 0). Fractional exponents rest on libm.
    fn powf(self, e: f64) -> Self;
    /// Minimum.
    fn min(self, other: Self) -> Self;
    /// Maximum.
    fn max(self, other: Self) -> Self;
    /// The point value.
    fn point(self) -> f64;
}

impl Scalar for f64 {
    fn constant(c: f64) -> Self {
        c
    }
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    fn powf(self, e: f64) -> Self {
        f64::powf(self, e)
    }
    fn min(self, other: Self) -> Self {
        f64::min(self, other)
    }
    fn max(self, other: Self) -> Self {
        f64::max(self, other)
    }
    fn point(self) -> f64 {
        self
    }
}

/// Working form of a [`Value`]: point, sides with "known" flags, exactness and an absolute error
/// used only for estimates (first-order propagation).
#[derive(Clone, Copy, Debug)]
struct Enc {
    point: f64,
    lo: f64,
    hi: f64,
    lo_ok: bool,
    hi_ok: bool,
    exact: bool,
    est: bool,
    err: f64,
    conf_lo: Option<Confidence>,
    conf_hi: Option<Confidence>,
}

impl Enc {
    fn of(v: &Value) -> Enc {
        let (lo_ok, hi_ok) = (v.has_lower(), v.has_upper());
        Enc {
            point: v.value,
            lo: v.lower(),
            hi: v.upper(),
            lo_ok,
            hi_ok,
            exact: v.kind == Kind::Exact,
            est: v.is_estimate(),
            err: v.tol,
            conf_lo: v.lower_confidence(),
            conf_hi: v.upper_confidence(),
        }
    }

    /// Lower side for products and quotients: an unknown lower side is 0 (quantity ≥ 0).
    fn lo_nn(&self) -> f64 {
        if self.lo_ok { self.lo } else { 0.0 }
    }

    fn into_value(self) -> Value {
        let Enc {
            point,
            lo,
            hi,
            lo_ok,
            hi_ok,
            exact,
            est,
            err,
            conf_lo,
            conf_hi,
        } = self;
        let conf = Value::side_confidence(conf_lo.filter(|_| lo_ok), conf_hi.filter(|_| hi_ok));
        let err = if err.is_nan() { 0.0 } else { err.abs() };
        // Never produce NaN (e.g. 0/0 or ∞ − ∞ on vacuous sides): an unknown result is +∞ above,
        // which is always a valid upper side, and has no lower side.
        let lo_ok = lo_ok && !lo.is_nan();
        let (hi, hi_ok) = if hi.is_nan() {
            (f64::INFINITY, hi_ok)
        } else {
            (hi, hi_ok)
        };
        let point = if point.is_nan() { hi } else { point };
        let lo = if lo.is_nan() { f64::NEG_INFINITY } else { lo };
        if est || (!lo_ok && !hi_ok) {
            return Value::estimate(point, err);
        }
        if exact && lo_ok && hi_ok {
            let tol = if point.is_finite() {
                let a = if hi.is_finite() {
                    sub_up(hi, point)
                } else {
                    0.0
                };
                let b = if lo.is_finite() {
                    sub_up(point, lo)
                } else {
                    0.0
                };
                a.max(b).max(0.0)
            } else {
                0.0
            };
            return Value {
                confidence: conf,
                ..Value::exact(point, tol)
            };
        }
        let v = match (lo_ok, hi_ok) {
            (true, true) => Value::interval_at(lo, hi, point.clamp(lo, hi)),
            (false, true) => Value::upper_bound(hi, positive_gap(hi, point)),
            _ => Value::lower_bound(lo, positive_gap(point, lo)),
        };
        Value {
            confidence: conf,
            ..v
        }
    }

    fn add(a: Enc, b: Enc) -> Enc {
        Enc {
            point: a.point + b.point,
            lo: add_down(a.lo, b.lo),
            hi: add_up(a.hi, b.hi),
            lo_ok: a.lo_ok && b.lo_ok,
            hi_ok: a.hi_ok && b.hi_ok,
            exact: a.exact && b.exact,
            est: a.est || b.est,
            err: a.err + b.err,
            conf_lo: Confidence::combine(a.conf_lo, b.conf_lo),
            conf_hi: Confidence::combine(a.conf_hi, b.conf_hi),
        }
    }

    fn sub(a: Enc, b: Enc) -> Enc {
        Enc {
            point: a.point - b.point,
            lo: sub_down(a.lo, b.hi),
            hi: sub_up(a.hi, b.lo),
            lo_ok: a.lo_ok && b.hi_ok,
            hi_ok: a.hi_ok && b.lo_ok,
            exact: a.exact && b.exact,
            est: a.est || b.est,
            err: a.err + b.err,
            conf_lo: Confidence::combine(a.conf_lo, b.conf_hi),
            conf_hi: Confidence::combine(a.conf_hi, b.conf_lo),
        }
    }

    fn mul(a: Enc, b: Enc) -> Enc {
        let point = a.point * b.point;
        let err = a.point.abs() * b.err + b.point.abs() * a.err;
        let (exact, est) = (a.exact && b.exact, a.est || b.est);
        let nonneg = |e: &Enc| !e.lo_ok || e.lo >= 0.0;
        if nonneg(&a) && nonneg(&b) {
            return Enc {
                point,
                lo: mul_down(a.lo_nn(), b.lo_nn()),
                hi: mul_up(a.hi, b.hi),
                lo_ok: a.lo_ok && b.lo_ok,
                hi_ok: a.hi_ok && b.hi_ok,
                exact,
                est,
                err,
                conf_lo: Confidence::combine(a.conf_lo, b.conf_lo),
                conf_hi: Confidence::combine(a.conf_hi, b.conf_hi),
            };
        }
        // Signed operands: the general interval product needs all four sides.
        let ok = a.lo_ok && a.hi_ok && b.lo_ok && b.hi_ok;
        let all_conf = Confidence::combine(
            Confidence::combine(a.conf_lo, a.conf_hi),
            Confidence::combine(b.conf_lo, b.conf_hi),
        );
        let pairs = [(a.lo, b.lo), (a.lo, b.hi), (a.hi, b.lo), (a.hi, b.hi)];
        let lo = pairs
            .iter()
            .map(|&(x, y)| mul_down(x, y))
            .fold(f64::INFINITY, f64::min);
        let hi = pairs
            .iter()
            .map(|&(x, y)| mul_up(x, y))
            .fold(f64::NEG_INFINITY, f64::max);
        Enc {
            point,
            lo,
            hi,
            lo_ok: ok,
            hi_ok: ok,
            exact,
            est,
            err,
            conf_lo: all_conf,
            conf_hi: all_conf,
        }
    }

    fn div(a: Enc, b: Enc) -> Enc {
        // The denominator is a positive quantity; an unknown lower side is 0 (⇒ unbounded).
        let point = a.point / b.point;
        let err = (a.err + (point * b.err).abs()) / b.point.abs();
        let blo = b.lo_nn();
        let (lo, lo_ok, conf_lo) = if !a.lo_ok || a.lo >= 0.0 {
            (
                div_down(a.lo_nn(), b.hi),
                a.lo_ok && b.hi_ok,
                Confidence::combine(a.conf_lo, b.conf_hi),
            )
        } else {
            (
                div_down(a.lo, blo),
                a.lo_ok && b.lo_ok,
                Confidence::combine(a.conf_lo, b.conf_lo),
            )
        };
        let (hi, hi_ok, conf_hi) = if a.hi >= 0.0 {
            (
                div_up(a.hi, blo),
                a.hi_ok && b.lo_ok,
                Confidence::combine(a.conf_hi, b.conf_lo),
            )
        } else {
            (
                div_up(a.hi, b.hi),
                a.hi_ok && b.hi_ok,
                Confidence::combine(a.conf_hi, b.conf_hi),
            )
        };
        let denominator_ok = !b.lo_ok || b.lo >= 0.0;
        Enc {
            point,
            lo,
            hi,
            lo_ok: lo_ok && denominator_ok,
            hi_ok: hi_ok && denominator_ok,
            exact: a.exact && b.exact,
            est: a.est || b.est,
            err,
            conf_lo,
            conf_hi,
        }
    }

    /// A monotone nondecreasing map on quantities ≥ 0.
    fn monotone(a: Enc, point: f64, up: impl Fn(f64) -> f64, down: impl Fn(f64) -> f64) -> Enc {
        Enc {
            point,
            lo: down(a.lo_nn()),
            hi: up(a.hi),
            ..a
        }
    }
}

fn positive_gap(a: f64, b: f64) -> f64 {
    if a.is_finite() && b.is_finite() {
        sub_up(a, b).max(0.0)
    } else {
        0.0
    }
}

macro_rules! value_op {
    ($trait:ident, $method:ident, $enc:ident) => {
        impl $trait for Value {
            type Output = Value;
            fn $method(self, rhs: Value) -> Value {
                Enc::$enc(Enc::of(&self), Enc::of(&rhs)).into_value()
            }
        }
    };
}
value_op!(Add, add, add);
value_op!(Sub, sub, sub);
value_op!(Mul, mul, mul);
value_op!(Div, div, div);

impl Scalar for Value {
    fn constant(c: f64) -> Self {
        Value::exact(c, 0.0)
    }

    fn sqrt(self) -> Self {
        let a = Enc::of(&self);
        let point = a.point.max(0.0).sqrt();
        let mut r = Enc::monotone(a, point, sqrt_up, sqrt_down);
        r.err = if point > 0.0 {
            a.err / (2.0 * point)
        } else {
            a.err.sqrt()
        };
        r.into_value()
    }

    fn powf(self, e: f64) -> Self {
        let a = Enc::of(&self);
        let point = a.point.max(0.0).powf(e);
        let mut r = if e >= 0.0 {
            Enc::monotone(a, point, |x| pow_up(x, e), |x| pow_down(x, e))
        } else {
            // Decreasing: the sides swap.
            Enc {
                point,
                lo: pow_down(a.hi, e),
                hi: pow_up(a.lo_nn(), e),
                lo_ok: a.hi_ok,
                hi_ok: a.lo_ok,
                conf_lo: a.conf_hi,
                conf_hi: a.conf_lo,
                ..a
            }
        };
        r.err = if a.point > 0.0 {
            (e * point / a.point).abs() * a.err
        } else {
            0.0
        };
        r.into_value()
    }

    fn min(self, other: Self) -> Self {
        let (a, b) = (Enc::of(&self), Enc::of(&other));
        let (point, lo, hi) = (a.point.min(b.point), a.lo.min(b.lo), a.hi.min(b.hi));
        Enc {
            point,
            lo,
            hi,
            lo_ok: a.lo_ok && b.lo_ok,
            // min(x, y) ≤ any known upper side.
            hi_ok: a.hi_ok || b.hi_ok,
            // Exact (symmetric about the point) only if that loses neither side.
            exact: a.exact && b.exact && point - lo <= hi - point,
            est: a.est || b.est,
            err: a.err.max(b.err),
            conf_lo: Confidence::combine(a.conf_lo, b.conf_lo),
            conf_hi: Confidence::combine(a.conf_hi, b.conf_hi),
        }
        .into_value()
    }

    fn max(self, other: Self) -> Self {
        let (a, b) = (Enc::of(&self), Enc::of(&other));
        let (point, lo, hi) = (a.point.max(b.point), a.lo.max(b.lo), a.hi.max(b.hi));
        Enc {
            point,
            lo,
            hi,
            lo_ok: a.lo_ok || b.lo_ok,
            hi_ok: a.hi_ok && b.hi_ok,
            // An exact value is symmetric about its point: it stays exact only if that loses
            // neither side (else an interval, e.g. max(0 ± t, 0) = [0, t]).
            exact: a.exact && b.exact && hi - point <= point - lo,
            est: a.est || b.est,
            err: a.err.max(b.err),
            conf_lo: Confidence::combine(a.conf_lo, b.conf_lo),
            conf_hi: Confidence::combine(a.conf_hi, b.conf_hi),
        }
        .into_value()
    }

    fn point(self) -> f64 {
        self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_follow_the_kind_table() {
        let e = Value::exact(2.0, 0.5);
        assert_eq!((e.lower(), e.upper()), (1.5, 2.5));
        assert_eq!(Value::upper_bound(3.0, 0.0).lower(), f64::NEG_INFINITY);
        assert_eq!(Value::lower_bound(3.0, 0.0).upper(), f64::INFINITY);
        let i = Value::interval(1.0, 4.0);
        assert_eq!((i.lower(), i.value, i.upper()), (1.0, 2.5, 4.0));
        let s = Value::estimate(1.0, 0.1);
        assert!(!s.has_lower() && !s.has_upper());
    }

    #[test]
    fn arithmetic_keeps_the_right_sides() {
        let w = Value::upper_bound(2.0, 0.0);
        let x = Value::lower_bound(4.0, 0.0);
        // upper / lower = upper
        let q = w / x;
        assert_eq!(q.kind, Kind::Upper);
        assert_eq!(q.upper(), 0.5);
        // upper * lower has no rigorous side: an estimate.
        assert_eq!((w * x).kind, Kind::Estimate);
        // exact ⊕ exact stays exact and encloses the true value.
        let third = Value::exact(1.0, 0.0) / Value::exact(3.0, 0.0);
        assert_eq!(third.kind, Kind::Exact);
        assert!(3.0f64.mul_add(third.lower(), -1.0) <= 0.0);
        assert!(3.0f64.mul_add(third.upper(), -1.0) >= 0.0);
        // estimates are contagious.
        assert_eq!((w + Value::estimate(1.0, 0.1)).kind, Kind::Estimate);
        // interval reciprocal swaps the sides.
        let r = Value::exact(1.0, 0.0) / Value::interval(2.0, 4.0);
        assert_eq!((r.lower(), r.upper()), (0.25, 0.5));
        // 1 / [0, 2] is [0.5, +∞].
        let r = Value::exact(1.0, 0.0) / Value::interval(0.0, 2.0);
        assert_eq!((r.lower(), r.upper()), (0.5, f64::INFINITY));
    }

    #[test]
    fn min_of_upper_bounds_is_an_upper_bound() {
        let a = Value::upper_bound(2.0, 0.0);
        let b = Value::upper_bound(1.0, 0.0);
        let m = Scalar::min(a, b);
        assert_eq!((m.kind, m.upper()), (Kind::Upper, 1.0));
        let c = Value::clamp_nonneg(Value::exact(-1e-17, 1e-18));
        assert_eq!(c.upper(), 0.0);
    }

    #[test]
    fn powers_and_roots() {
        let v = Value::exact(3.0, 0.0).powf(-0.25);
        assert!(v.lower() < 3f64.powf(-0.25) && 3f64.powf(-0.25) < v.upper());
        let s = Scalar::sqrt(Value::upper_bound(2.0, 0.0));
        assert_eq!(s.kind, Kind::Upper);
        assert!(s.upper() >= std::f64::consts::SQRT_2);
    }

    #[test]
    fn validation() {
        assert!(Value::exact(f64::NAN, 0.0).validate("x").is_err());
        assert!(Value::interval(2.0, 1.0).validate("x").is_err());
        assert!(Value::exact(1.0, -1.0).validate("x").is_err());
        assert!(Value::exact(f64::INFINITY, 0.0).validate("x").is_ok());
        assert!(Value::exact(-1.0, 0.0).validate_nonneg("x").is_err());
    }

    #[test]
    fn serde_round_trip_with_infinities() {
        let v = Value::interval(0.25, f64::INFINITY);
        let s = serde_json::to_string(&v).unwrap();
        assert!(s.contains("\"hi\":\"+inf\""), "{s}");
        assert!(s.contains("\"kind\":\"interval\""), "{s}");
        let back: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back, v);
        assert!(serde_json::to_string(&Value::exact(f64::NAN, 0.0)).is_err());
    }
}
