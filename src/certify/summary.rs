//! The certificate's `summary`: the overall status (certified iff every checked hypothesis of
//! every computed theorem is certified; assumed hypotheses are listed, never failing), the open
//! hypotheses by kind with their theorem ids, the theorems not computed, the Gauss–Newton
//! substitution and the sampling-model caveat (THEORY §0, §3 "Verdicts").

use serde::{Deserialize, Serialize};

use flatcert_bounds::{Check, Confidence, Status};

use super::verdicts::{VerdictEntry, Verdicts};

/// One hypothesis (or diagnostic) referenced by the summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HypothesisRef {
    /// Theorem id, `"T1"` … `"T10"`.
    pub theorem: String,
    /// The check's machine key inside its verdict.
    pub name: String,
    /// The statement.
    pub statement: String,
    /// For assumed hypotheses: the size of the neglected error, when known and finite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<f64>,
}

impl HypothesisRef {
    fn of(theorem: &str, c: &Check) -> Self {
        Self {
            theorem: theorem.to_string(),
            name: c.name.clone(),
            statement: c.statement.clone(),
            size: c.size.filter(|s| s.is_finite()),
        }
    }
}

/// A theorem that could not be evaluated, with the reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotComputedRef {
    /// Theorem id.
    pub theorem: String,
    /// Why (e.g. "needs --epsilon", "missing mean_square_dtilde_lambda_max").
    pub reason: String,
}

/// Status of one theorem in the summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TheoremStatus {
    /// Theorem id.
    pub theorem: String,
    /// `certified`, `violated`, `inconclusive`, `estimated`, `assumed` (the worst hypothesis,
    /// bounds crate rule) or `not_computed`.
    pub status: String,
    /// Set when the status rests on a bound that holds with probability 1 − δ over a random
    /// start (THEORY §3 item 8): `"confidence": 1 − δ`, `"delta": δ`.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<Confidence>,
}

/// The certificate's summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// `certified` (every checked hypothesis certified) or `not_certified`.
    pub status: String,
    /// The CLI exit code that goes with it: 0 certified, 1 not certified.
    pub exit_code: i32,
    /// Per theorem, in order.
    pub theorems: Vec<TheoremStatus>,
    /// Hypotheses that fail rigorously.
    pub violated: Vec<HypothesisRef>,
    /// Hypotheses whose rigorous sides straddle the threshold.
    pub inconclusive: Vec<HypothesisRef>,
    /// Hypotheses decided only by an estimate (never certified).
    pub estimated: Vec<HypothesisRef>,
    /// Hypotheses that were not checked but assumed (with their size when known).
    pub assumed: Vec<HypothesisRef>,
    /// Diagnostics (which do not decide a verdict) that are violated: worth a look.
    pub diagnostic_violations: Vec<HypothesisRef>,
    /// Theorems that could not be computed.
    pub not_computed: Vec<NotComputedRef>,
    /// The Gauss–Newton substitution, when G replaced H (residual ≠ 0).
    pub gauss_newton: Option<String>,
    /// Always: the sampling model the stability theorems assume.
    pub sampling_caveat: String,
    /// Set when a certified hypothesis rests on a bound that holds only with probability
    /// 1 − δ over a seeded random start (THEORY §3 item 8): the whole certificate then holds with
    /// confidence 1 − Σδ (union bound), `"confidence"` and `"delta"`; absent: deterministic.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<Confidence>,
}

/// Lower-case status name (the bounds crate's [`Status::name`]).
pub fn status_name(s: Status) -> &'static str {
    s.name()
}

/// A status in words with its confidence, when it has one: `"certified (confidence 1 − 1e-9)"`.
/// Every renderer uses it, so that a verdict certified with confidence never reads as plain
/// "certified" (THEORY §3 item 8).
pub fn status_label(status: &str, confidence: Option<Confidence>) -> String {
    match confidence {
        Some(c) => format!("{status} ({})", c.label()),
        None => status.to_string(),
    }
}

/// Build the summary of `verdicts`.
pub fn summarize(
    verdicts: &Verdicts,
    gauss_newton: Option<String>,
    sampling_caveat: String,
) -> Summary {
    let mut s = Summary {
        status: String::new(),
        exit_code: 0,
        theorems: Vec::new(),
        violated: Vec::new(),
        inconclusive: Vec::new(),
        estimated: Vec::new(),
        assumed: Vec::new(),
        diagnostic_violations: Vec::new(),
        not_computed: Vec::new(),
        gauss_newton,
        sampling_caveat,
        confidence: None,
    };
    for (id, entry) in verdicts.iter() {
        match entry {
            VerdictEntry::NotComputed(reason) => {
                s.not_computed.push(NotComputedRef {
                    theorem: id.to_string(),
                    reason: reason.clone(),
                });
                s.theorems.push(TheoremStatus {
                    theorem: id.to_string(),
                    status: "not_computed".into(),
                    confidence: None,
                });
            }
            VerdictEntry::Computed(v) => {
                s.theorems.push(TheoremStatus {
                    theorem: id.to_string(),
                    status: status_name(v.status()).into(),
                    confidence: v.confidence(),
                });
                for c in &v.hypotheses {
                    let r = HypothesisRef::of(id, c);
                    match c.status {
                        Status::Violated => s.violated.push(r),
                        Status::Inconclusive => s.inconclusive.push(r),
                        Status::Estimated => s.estimated.push(r),
                        Status::Assumed => s.assumed.push(r),
                        Status::Certified => {
                            s.confidence = Confidence::combine(s.confidence, c.confidence);
                        }
                    }
                }
                for c in &v.diagnostics {
                    if c.status == Status::Violated {
                        s.diagnostic_violations.push(HypothesisRef::of(id, c));
                    }
                }
            }
        }
    }
    let open = !(s.violated.is_empty() && s.inconclusive.is_empty() && s.estimated.is_empty());
    if open {
        s.confidence = None;
    }
    s.status = if open { "not_certified" } else { "certified" }.into();
    s.exit_code = i32::from(open);
    s
}

impl Summary {
    /// True when every checked hypothesis is certified.
    pub fn certified(&self) -> bool {
        self.exit_code == 0
    }

    /// One line naming the first open hypothesis (`"T5.stability violated: …"`), if any.
    pub fn first_open(&self) -> Option<String> {
        let lists = [
            ("violated", &self.violated),
            ("inconclusive", &self.inconclusive),
            ("estimated", &self.estimated),
        ];
        lists.iter().find_map(|(what, l)| {
            l.first()
                .map(|h| format!("{}.{} {what}: {}", h.theorem, h.name, h.statement))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flatcert_bounds::{Value, Verdict};

    #[test]
    fn status_follows_the_worst_checked_hypothesis() {
        let mut v = Verdict::new("T4", "t");
        v.hypotheses
            .push(Check::assumed("a", "assumed thing", Some(1e-3)));
        v.hypotheses.push(Check::le(
            "b",
            "1 ≤ 2",
            Value::exact(1.0, 0.0),
            Value::exact(2.0, 0.0),
        ));
        let mut vs = Verdicts::default();
        vs.set("T4", VerdictEntry::Computed(Box::new(v.clone())));
        vs.set("T8", VerdictEntry::NotComputed("needs --epsilon".into()));
        let s = summarize(&vs, None, "c".into());
        assert!(s.certified());
        assert_eq!(s.assumed.len(), 1);
        assert_eq!(s.assumed[0].size, Some(1e-3));
        assert_eq!(s.not_computed[0].theorem, "T8");
        v.hypotheses.push(Check::le(
            "c",
            "3 ≤ 2",
            Value::exact(3.0, 0.0),
            Value::exact(2.0, 0.0),
        ));
        vs.set("T4", VerdictEntry::Computed(Box::new(v)));
        let s = summarize(&vs, None, "c".into());
        assert_eq!((s.status.as_str(), s.exit_code), ("not_certified", 1));
        assert!(s.first_open().unwrap().starts_with("T4.c violated"));
    }
}
