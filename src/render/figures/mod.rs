//! The figures flatcert draws, one module per figure, all on the one SVG stack of
//! [`super::svg`] (same palette, axes, legend glyphs and error):
//!
//! | module | command | figure |
//! |---|---|---|
//! | [`curvature`] | `certify --report` | T6(e): the per-sample curvature λ_i (sorted) against the thresholds β_k |
//! | [`sobolev`] | `certify --report` | T7: each measured Sobolev quantity against its bound (log axis, ratio printed) |
//! | [`radii`] | `certify --report` | T9: the fraction of training points certified at radius ≥ r, with ε and the certified fraction |
//! | [`stability`] | `stability --plot` | T4–T6: the stable region of SGD in the (B, η) plane |
//! | [`simulation`] | `simulate --plot` | E‖u_t‖^k and true-SGD distances against the step t (log scale) |
//!
//! The report figures ([`Figure`], `docs/report.md`) have a title, axis labels, a legend band and
//! a caption band; values that cannot be drawn (NaN, ±∞, or ≤ 0 on a logarithmic axis) are
//! skipped and counted in the caption. Output is deterministic: the same inputs give the same
//! bytes.

pub mod curvature;
pub mod radii;
pub mod simulation;
pub mod sobolev;
pub mod stability;

use flatcert_bounds::{Status, Verdict};

/// One rendered figure of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// The theorem it illustrates (`"T6"`, `"T7"`, `"T9"`).
    pub theorem: &'static str,
    /// File name inside the report directory (`t6_curvature.svg`, …).
    pub file: &'static str,
    /// Title (also the Markdown image's alt text).
    pub title: String,
    /// What is drawn and what was skipped (also drawn under the plot).
    pub caption: String,
    /// The SVG document.
    pub svg: String,
}

/// " At this (η, B) the hypothesis `k_stable_k2` is VIOLATED (…)." for the violated stability
/// hypotheses (`k_stable…`) of `v`, or nothing: the thresholds of T6 and the bounds of T7 are then
/// not implied by SGD stability at this (η, B).
pub(crate) fn borrowed_stability_sentence(v: &Verdict) -> String {
    let names: Vec<&str> = v
        .hypotheses
        .iter()
        .filter(|c| c.status == Status::Violated && c.name.starts_with("k_stable"))
        .map(|c| c.name.as_str())
        .collect();
    match names.len() {
        0 => String::new(),
        1 => format!(
            " At this (η, B) the hypothesis {} is VIOLATED (certified mean-square \
             unstable: T5, or T4's first-moment instability), so what is drawn here is not implied by SGD stability.",
            names[0]
        ),
        _ => format!(
            " At this (η, B) the hypotheses {} are VIOLATED (certified mean-square \
             unstable: T5, or T4's first-moment instability), so what is drawn here is not implied by SGD stability.",
            names.join(", ")
        ),
    }
}

/// "n values were not drawn (…)" or nothing.
pub(crate) fn skipped_sentence(count: usize, what: &str, why: &str) -> String {
    match count {
        0 => String::new(),
        1 => format!(" 1 {what} was not drawn ({why})."),
        c => format!(" {c} {what}s were not drawn ({why})."),
    }
}
