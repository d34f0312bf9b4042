//! Checks, conclusions and verdicts (THEORY §3 "Verdicts").
//!
//! A [`Check`] compares two [`Value`]s. For "A ≤ B" ([`Relation::Le`]) it is
//! - `certified` if upper(A) ≤ lower(B),
//! - `violated` if lower(A) > upper(B),
//! - `inconclusive` otherwise,
//! - `estimated` if an estimate entered it (then the margin is computed from the point values),
//!
//! with margin := lower(B) − upper(A) and relative margin := margin/|upper(B)|, omitted when
//! upper(B) is 0 or infinite. Hypotheses that are not checked are `assumed` (with the size of the
//! neglected error when known). A [`Verdict`] lists the hypotheses that decide it, diagnostic
//! checks that do not, and the conclusions with their kinds.
//!
//! Infinite floats (vacuous bounds, one-sided margins) serialize as `"+inf"`/`"-inf"`
//! (see [`Value`]); a [`Conclusion`] whose value is infinite also carries `vacuous: true`.

use serde::{Deserialize, Serialize};

use crate::kind::{Confidence, Value};
use crate::serde_ext::ext_f64_opt;

/// Outcome of one check (THEORY §3 "Verdicts").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Holds rigorously.
    Certified,
    /// Fails rigorously.
    Violated,
    /// The rigorous sides overlap the threshold.
    Inconclusive,
    /// An estimate entered: no rigorous statement.
    Estimated,
    /// Not checked; assumed (with its size when known).
    Assumed,
}

impl Status {
    /// Lower-case name, as serialized: `"certified"`, `"violated"`, …
    pub fn name(self) -> &'static str {
        match self {
            Status::Certified => "certified",
            Status::Violated => "violated",
            Status::Inconclusive => "inconclusive",
            Status::Estimated => "estimated",
            Status::Assumed => "assumed",
        }
    }

    /// Severity used to aggregate hypotheses: violated > inconclusive > estimated > certified >
    /// assumed.
    fn severity(self) -> u8 {
        match self {
            Status::Violated => 4,
            Status::Inconclusive => 3,
            Status::Estimated => 2,
            Status::Certified => 1,
            Status::Assumed => 0,
        }
    }
}

/// How a check compares its two sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Relation {
    /// Quantity A ≤ quantity B (§3 rule).
    Le,
    /// Quantity A < quantity B (strict; used by T9(c)): certified if upper(A) < lower(B),
    /// violated if lower(A) ≥ upper(B).
    Lt,
    /// A measured quantity is at most a *stated* upper bound: the threshold is upper(B), which
    /// must be a rigorous side (else the check is `estimated`). Used to confront measurements with
    /// the bounds this crate reports (T2, T3, T7, T10).
    LeBound,
    /// A *stated* lower bound is at most a measured quantity: the threshold is lower(A).
    BoundLe,
}

/// One checked, assumed or externally established statement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// Short machine key, unique inside a verdict (e.g. `"stability"`).
    pub name: String,
    /// The statement in words and symbols, e.g. `"η·λ_max(𝒟̃) ≤ 1"`.
    pub statement: String,
    /// The outcome.
    pub status: Status,
    /// How `lhs` and `rhs` are compared (absent for assumed or given statements).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relation: Option<Relation>,
    /// Left side A.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lhs: Option<Value>,
    /// Right side B.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rhs: Option<Value>,
    /// lower(B) − upper(A) (point values for estimates); ±∞ when a side is missing.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "ext_f64_opt")]
    pub margin: Option<f64>,
    /// margin / |upper(B)|, omitted when upper(B) is 0 or infinite.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "ext_f64_opt")]
    pub relative_margin: Option<f64>,
    /// For assumed statements: the size of the neglected error, when known.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "ext_f64_opt")]
    pub size: Option<f64>,
    /// Set when the decided status (certified or violated) rests on a side that holds only with
    /// probability 1 − δ over a random start (THEORY §3 item 8): "certified (confidence 1 − δ)",
    /// never plain "certified". Serialized as `"confidence": 1 − δ` and `"delta": δ`.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<Confidence>,
}

/// Status, margin and relative margin of a comparison.
fn evaluate(rel: Relation, a: &Value, b: &Value) -> (Status, Option<f64>, Option<f64>) {
    let finite_or_none = |x: f64| if x.is_nan() { None } else { Some(x) };
    let relative = |m: f64, t: f64| {
        if t == 0.0 || !t.is_finite() || m.is_nan() {
            None
        } else {
            Some(m / t.abs())
        }
    };
    let estimated = match rel {
        Relation::Le | Relation::Lt => a.is_estimate() || b.is_estimate(),
        Relation::LeBound => a.is_estimate() || !b.has_upper(),
        Relation::BoundLe => b.is_estimate() || !a.has_lower(),
    };
    if estimated {
        let m = b.value - a.value;
        return (Status::Estimated, finite_or_none(m), relative(m, b.value));
    }
    let (a_lo, a_hi, b_lo, b_hi) = match rel {
        Relation::Le | Relation::Lt => (a.lower(), a.upper(), b.lower(), b.upper()),
        Relation::LeBound => (a.lower(), a.upper(), b.upper(), b.upper()),
        Relation::BoundLe => (a.lower(), a.lower(), b.lower(), b.upper()),
    };
    let status = match rel {
        Relation::Lt if a_hi < b_lo => Status::Certified,
        Relation::Lt if a_lo >= b_hi => Status::Violated,
        Relation::Lt => Status::Inconclusive,
        _ if a_hi <= b_lo => Status::Certified,
        _ if a_lo > b_hi => Status::Violated,
        _ => Status::Inconclusive,
    };
    let m = b_lo - a_hi;
    (status, finite_or_none(m), relative(m, b_hi))
}

/// The confidence of a decided comparison: the union bound of its two sides' failure
/// probabilities (THEORY §3 item 8); `None` for undecided statuses and deterministic sides.
fn decided_confidence(rel: Relation, status: Status, a: &Value, b: &Value) -> Option<Confidence> {
    // The sides each decision reads (see `evaluate`): only their confidences matter.
    let (lo, hi) = (Value::lower_confidence, Value::upper_confidence);
    type SideConfidence = fn(&Value) -> Option<Confidence>;
    let (fa, fb): (SideConfidence, SideConfidence) = match (rel, status) {
        (Relation::Le | Relation::Lt, Status::Certified) => (hi, lo),
        (Relation::LeBound, Status::Certified) => (hi, hi),
        (Relation::BoundLe, Status::Certified) => (lo, lo),
        (_, Status::Violated) => (lo, hi),
        _ => return None,
    };
    Confidence::combine(fa(a), fb(b)).map(|c| Confidence {
        sides: crate::kind::Sides::Both,
        ..c
    })
}

impl Check {
    /// The status in words, with its confidence when it has one: `"certified"`,
    /// `"certified (confidence 1 − 1e-9)"`.
    pub fn status_label(&self) -> String {
        let s = self.status.name();
        match self.confidence {
            Some(c) => format!("{s} ({})", c.label()),
            None => s.to_string(),
        }
    }

    fn compare(
        rel: Relation,
        name: impl Into<String>,
        statement: impl Into<String>,
        lhs: Value,
        rhs: Value,
    ) -> Check {
        let (status, margin, relative_margin) = evaluate(rel, &lhs, &rhs);
        let confidence = decided_confidence(rel, status, &lhs, &rhs);
        Check {
            name: name.into(),
            statement: statement.into(),
            status,
            relation: Some(rel),
            lhs: Some(lhs),
            rhs: Some(rhs),
            margin,
            relative_margin,
            size: None,
            confidence,
        }
    }

    /// "A ≤ B" with the §3 rule (certified iff upper(A) ≤ lower(B), …).
    ///
    /// ```
    /// use flatcert_bounds::{Check, Status, Value};
    /// let c = Check::le("gd", "λ_max ≤ 2/η", Value::interval(4.0, 4.1), Value::exact(5.0, 0.0));
    /// assert_eq!(c.status, Status::Certified);
    /// assert_eq!(c.margin, Some(5.0 - 4.1));
    /// let c = Check::le("gd", "λ_max ≤ 2/η", Value::estimate(1.0, 0.0), Value::exact(5.0, 0.0));
    /// assert_eq!(c.status, Status::Estimated);
    /// ```
    pub fn le(
        name: impl Into<String>,
        statement: impl Into<String>,
        lhs: Value,
        rhs: Value,
    ) -> Check {
        Check::compare(Relation::Le, name, statement, lhs, rhs)
    }

    /// "A < B" (strict), see [`Relation::Lt`].
    pub fn lt(
        name: impl Into<String>,
        statement: impl Into<String>,
        lhs: Value,
        rhs: Value,
    ) -> Check {
        Check::compare(Relation::Lt, name, statement, lhs, rhs)
    }

    /// "measured ≤ stated upper bound", see [`Relation::LeBound`].
    pub fn le_bound(
        name: impl Into<String>,
        statement: impl Into<String>,
        measured: Value,
        bound: Value,
    ) -> Check {
        Check::compare(Relation::LeBound, name, statement, measured, bound)
    }

    /// "stated lower bound ≤ measured", see [`Relation::BoundLe`].
    pub fn bound_le(
        name: impl Into<String>,
        statement: impl Into<String>,
        bound: Value,
        measured: Value,
    ) -> Check {
        Check::compare(Relation::BoundLe, name, statement, bound, measured)
    }

    /// "number of failures ≤ 0": certified iff `failures == 0`, violated otherwise.
    pub fn no_failures(
        name: impl Into<String>,
        statement: impl Into<String>,
        failures: usize,
    ) -> Check {
        Check::le(
            name,
            statement,
            Value::exact(failures as f64, 0.0),
            Value::exact(0.0, 0.0),
        )
    }

    /// An assumed hypothesis, with the size of the neglected error when known (§3: "an error
    /// source bounded only by an a-priori estimate is an assumed hypothesis, with its size").
    pub fn assumed(
        name: impl Into<String>,
        statement: impl Into<String>,
        size: Option<f64>,
    ) -> Check {
        Check {
            name: name.into(),
            statement: statement.into(),
            status: Status::Assumed,
            relation: None,
            lhs: None,
            rhs: None,
            margin: None,
            relative_margin: None,
            size,
            confidence: None,
        }
    }

    /// A statement whose status was established elsewhere (e.g. by another theorem's verdict).
    pub fn given(name: impl Into<String>, statement: impl Into<String>, status: Status) -> Check {
        Check {
            status,
            ..Check::assumed(name, statement, None)
        }
    }

    /// Recompute the status from `relation`, `lhs` and `rhs` (what `flatcert verify` does);
    /// assumed and given checks return their stored status.
    pub fn recompute(&self) -> Status {
        match (self.relation, &self.lhs, &self.rhs) {
            (Some(rel), Some(a), Some(b)) => evaluate(rel, a, b).0,
            _ => self.status,
        }
    }

    /// Recompute the confidence from `relation`, `lhs` and `rhs` (THEORY §3 item 8; what
    /// `flatcert verify` does); assumed and given checks return their stored confidence.
    pub fn recompute_confidence(&self) -> Option<Confidence> {
        match (self.relation, &self.lhs, &self.rhs) {
            (Some(rel), Some(a), Some(b)) => decided_confidence(rel, evaluate(rel, a, b).0, a, b),
            _ => self.confidence,
        }
    }

    /// Whether the check is neither assumed nor certified.
    pub fn is_open(&self) -> bool {
        !matches!(self.status, Status::Certified | Status::Assumed)
    }
}

/// One conclusion of a theorem: a number with its kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conclusion {
    /// Short machine key, unique inside a verdict (e.g. `"eta_star"`).
    pub name: String,
    /// What the number is, in words and symbols.
    pub statement: String,
    /// The number.
    pub value: Value,
    /// True when the bound carries no information (+∞, e.g. 2C/(ηp) at p = 0).
    pub vacuous: bool,
}

impl Conclusion {
    /// A conclusion; `vacuous` is set when the value is infinite.
    pub fn new(name: impl Into<String>, statement: impl Into<String>, value: Value) -> Conclusion {
        Conclusion {
            name: name.into(),
            statement: statement.into(),
            vacuous: value.value.is_infinite(),
            value,
        }
    }

    /// Override the vacuity flag.
    pub fn with_vacuous(mut self, vacuous: bool) -> Conclusion {
        self.vacuous = vacuous;
        self
    }
}

/// The result of one theorem: its hypotheses as checks, diagnostics, conclusions and notes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Theorem id, `"T1"` … `"T10"`.
    pub theorem: String,
    /// Human title.
    pub title: String,
    /// Checks that decide the verdict: hypotheses and decisive tests.
    pub hypotheses: Vec<Check>,
    /// Checks reported for information only; they do not enter [`Verdict::status`].
    #[serde(default)]
    pub diagnostics: Vec<Check>,
    /// The numbers the theorem concludes, with their kinds.
    pub conclusions: Vec<Conclusion>,
    /// Caveats and explanations.
    pub notes: Vec<String>,
}

impl Verdict {
    /// An empty verdict.
    pub fn new(theorem: &str, title: &str) -> Verdict {
        Verdict {
            theorem: theorem.to_owned(),
            title: title.to_owned(),
            hypotheses: Vec::new(),
            diagnostics: Vec::new(),
            conclusions: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// The confidence of the verdict's status when it rests on bounds that hold only with a
    /// stated probability (THEORY §3 item 8): the union bound over the hypotheses whose status
    /// equals the verdict's. `None` when the verdict is deterministic.
    pub fn confidence(&self) -> Option<Confidence> {
        let status = self.status();
        self.hypotheses
            .iter()
            .filter(|c| c.status == status)
            .fold(None, |acc, c| Confidence::combine(acc, c.confidence))
    }

    /// True when every checked (non-assumed) hypothesis is certified.
    pub fn all_certified(&self) -> bool {
        self.hypotheses.iter().all(|c| !c.is_open())
    }

    /// Aggregate status: the worst hypothesis (violated > inconclusive > estimated > certified);
    /// `assumed` when every hypothesis is assumed or there are none.
    pub fn status(&self) -> Status {
        self.hypotheses
            .iter()
            .map(|c| c.status)
            .max_by_key(|s| s.severity())
            .unwrap_or(Status::Assumed)
    }

    /// The hypothesis or diagnostic named `name`.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.hypotheses
            .iter()
            .chain(&self.diagnostics)
            .find(|c| c.name == name)
    }

    /// The conclusion named `name`.
    pub fn conclusion(&self, name: &str) -> Option<&Conclusion> {
        self.conclusions.iter().find(|c| c.name == name)
    }

    /// Every float in the verdict is finite or ±∞ (never NaN), as the certificate requires.
    pub fn is_well_formed(&self) -> bool {
        let ok = |v: &Value| {
            v.validate("value").is_ok()
                && !v.lo.is_some_and(f64::is_nan)
                && !v.hi.is_some_and(f64::is_nan)
        };
        let check_ok = |c: &Check| {
            c.lhs.as_ref().is_none_or(ok)
                && c.rhs.as_ref().is_none_or(ok)
                && !c.margin.is_some_and(f64::is_nan)
                && !c.relative_margin.is_some_and(f64::is_nan)
        };
        self.hypotheses
            .iter()
            .chain(&self.diagnostics)
            .all(check_ok)
            && self.conclusions.iter().all(|c| ok(&c.value))
    }

    pub(crate) fn hyp(&mut self, c: Check) {
        self.hypotheses.push(c);
    }
    pub(crate) fn diag(&mut self, c: Check) {
        self.diagnostics.push(c);
    }
    pub(crate) fn conclude(&mut self, name: &str, statement: impl Into<String>, value: Value) {
        self.conclusions
            .push(Conclusion::new(name, statement, value));
    }
    pub(crate) fn note(&mut self, n: impl Into<String>) {
        self.notes.push(n.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(x: f64) -> Value {
        Value::exact(x, 0.0)
    }

    #[test]
    fn le_rule_on_hand_made_cases() {
        // Certified, violated, inconclusive brackets.
        assert_eq!(
            Check::le("a", "", Value::interval(1.0, 2.0), ex(2.0)).status,
            Status::Certified
        );
        assert_eq!(
            Check::le("a", "", Value::interval(2.5, 3.0), ex(2.0)).status,
            Status::Violated
        );
        let c = Check::le("a", "", Value::interval(1.5, 2.5), ex(2.0));
        assert_eq!(c.status, Status::Inconclusive);
        assert_eq!(c.margin, Some(-0.5));
        assert_eq!(c.relative_margin, Some(-0.25));
        // An upper bound alone can certify "≤" but never refute it.
        assert_eq!(
            Check::le("a", "", Value::upper_bound(1.0, 0.0), ex(2.0)).status,
            Status::Certified
        );
        assert_eq!(
            Check::le("a", "", Value::upper_bound(3.0, 0.0), ex(2.0)).status,
            Status::Inconclusive
        );
        // A lower bound alone can refute but never certify.
        assert_eq!(
            Check::le("a", "", Value::lower_bound(3.0, 0.0), ex(2.0)).status,
            Status::Violated
        );
        assert_eq!(
            Check::le("a", "", Value::lower_bound(1.0, 0.0), ex(2.0)).status,
            Status::Inconclusive
        );
    }

    #[test]
    fn estimates_never_certify() {
        // An optimistic estimate (far below the threshold) is still only "estimated".
        let c = Check::le("a", "", Value::estimate(1e-9, 0.0), ex(1.0));
        assert_eq!(c.status, Status::Estimated);
        let c = Check::le("a", "", ex(0.0), Value::estimate(1.0, 0.0));
        assert_eq!(c.status, Status::Estimated);
        // A lower bound used as a stated upper bound is not rigorous either.
        let c = Check::le_bound("a", "", ex(0.5), Value::lower_bound(1.0, 0.0));
        assert_eq!(c.status, Status::Estimated);
        let mut v = Verdict::new("T0", "test");
        v.hyp(c);
        assert!(!v.all_certified());
        assert_eq!(v.status(), Status::Estimated);
    }

    #[test]
    fn stated_bounds_and_strict_checks() {
        let c = Check::le_bound("b", "", ex(1.0), Value::upper_bound(4.0, 0.0));
        assert_eq!((c.status, c.margin), (Status::Certified, Some(3.0)));
        let c = Check::le_bound("b", "", ex(5.0), Value::upper_bound(4.0, 0.0));
        assert_eq!(c.status, Status::Violated);
        let c = Check::bound_le("b", "", Value::lower_bound(0.5, 0.0), ex(1.0));
        assert_eq!(c.status, Status::Certified);
        assert_eq!(
            Check::lt("s", "", ex(1.0), ex(1.0)).status,
            Status::Violated
        );
        assert_eq!(
            Check::lt("s", "", ex(0.5), ex(1.0)).status,
            Status::Certified
        );
        assert_eq!(Check::no_failures("f", "", 0).status, Status::Certified);
        assert_eq!(Check::no_failures("f", "", 2).status, Status::Violated);
    }

    #[test]
    fn vacuous_right_side_and_zero_threshold() {
        let c = Check::le("t", "", ex(6.0), ex(f64::INFINITY));
        assert_eq!(c.status, Status::Certified);
        assert_eq!(c.margin, Some(f64::INFINITY));
        assert_eq!(c.relative_margin, None);
        let c = Check::le("z", "", ex(0.0), ex(0.0));
        assert_eq!((c.status, c.relative_margin), (Status::Certified, None));
    }

    #[test]
    fn aggregation_and_recompute() {
        let mut v = Verdict::new("T0", "test");
        v.hyp(Check::assumed("x", "assumed", Some(1e-16)));
        assert_eq!(v.status(), Status::Assumed);
        assert!(v.all_certified());
        v.hyp(Check::le("a", "", ex(1.0), ex(2.0)));
        assert_eq!(v.status(), Status::Certified);
        v.hyp(Check::le("b", "", Value::interval(1.5, 2.5), ex(2.0)));
        assert_eq!(v.status(), Status::Inconclusive);
        v.hyp(Check::le("c", "", ex(3.0), ex(2.0)));
        assert_eq!(v.status(), Status::Violated);
        v.diag(Check::le("d", "", Value::estimate(3.0, 0.0), ex(2.0)));
        for c in v.hypotheses.iter().chain(&v.diagnostics) {
            assert_eq!(c.recompute(), c.status);
        }
        let json = serde_json::to_string(&v).unwrap();
        let back: Verdict = serde_json::from_str(&json).unwrap();
        assert_eq!(back, v);
        assert!(back.is_well_formed());
    }
}
