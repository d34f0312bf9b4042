//! Rendering of the stability document: the human-readable table, the JSON text (every float
//! checked finite) and the list of rows not certified stable at η.

use serde_json::Value;

use super::{Bracket, StabilityDoc};
use crate::certify::summary::status_label;
use crate::error::{Error, Result};
use crate::measure::names;
use crate::measure::stability::Verdict;

/// `x` as a signed percentage.
pub(crate) fn fmt_percent(x: f64) -> String {
    format!("{:+.2}%", 100.0 * x)
}

/// `x` with 10 significant digits (the brackets are typically 1e-9 wide).
fn fmt10(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let mag = x.abs().log10().floor() as i32;
    if (-3..5).contains(&mag) {
        let decimals = (9 - mag).max(0) as usize;
        format!("{x:.decimals$}")
    } else {
        format!("{x:.9e}")
    }
}

/// `[lo, hi]` with 10 significant digits, `+∞` for an unbounded end.
fn fmt_bracket(lo: Option<f64>, hi: Option<f64>) -> String {
    let side = |v: Option<f64>| v.map_or("+∞".to_string(), fmt10);
    format!("[{}, {}]", side(lo), side(hi))
}

/// The human-readable table.
pub fn render_table(doc: &StabilityDoc) -> String {
    let mut out = String::new();
    let i = &doc.inputs;
    out.push_str(&format!(
        "flatcert stability — model {} ({}), data {} (n = {}, C = {})\n",
        i.model.path,
        i.network_label(),
        i.x.path,
        doc.n,
        doc.c
    ));
    let lambda = fmt_bracket(
        doc.gauss_newton_lambda_max.lower,
        doc.gauss_newton_lambda_max.upper,
    );
    match (doc.r, doc.tau) {
        (Some(r), Some(tau)) => out.push_str(&format!(
            "Gram path: r = {r} (τ = {tau:e}), λ_max(G) ∈ {lambda}; sampling {}\n",
            doc.sampling
        )),
        _ => out.push_str(&format!(
            "matrix-free (T5(i), T5(g)): λ_max(G) ∈ {lambda}{}; sampling {}\n",
            doc.gauss_newton_lambda_max
                .confidence
                .map_or(String::new(), |c| format!(
                    " (upper end with {})",
                    c.label()
                )),
            doc.sampling
        )),
    }
    match &doc.eta {
        Some(e) => out.push_str(&format!(
            "η = {} (theory convention; PyTorch MSELoss η_torch = {}) from {}\n",
            crate::quantity::shortest(e.theory),
            crate::quantity::shortest(e.torch_mse),
            e.source
        )),
        None => out.push_str("no η (give --lr): brackets only, no verdicts\n"),
    }
    let ks: Vec<String> = doc
        .rows
        .first()
        .map(|r| r.k_moments.keys().cloned().collect())
        .unwrap_or_default();
    let mut header = format!(
        "\n{:>6}  {:>9}  {:<30}  {:<30}",
        "B", "p", "η_GD* = 2/λ_max(G) bracket", "η*(B) certified bracket"
    );
    for k in &ks {
        let short = k.trim_start_matches(names::K_MOMENT_CRITICAL_LR_K);
        header.push_str(&format!("  {:<14}", format!("η*_{short} (T6)")));
    }
    if doc.eta.is_some() {
        header.push_str("  verdict at η (certified margin)");
    }
    out.push_str(&header);
    out.push('\n');
    for row in &doc.rows {
        let ms = &row.mean_square_critical_lr;
        let mut line = format!(
            "{:>6}  {:>9.6}  {:<30}  {:<30}",
            row.batch,
            row.p,
            fmt_bracket(row.gd_critical_lr.lower, row.gd_critical_lr.upper),
            fmt_bracket(ms.lower, ms.upper)
        );
        for k in &ks {
            let cell = match row.k_moments.get(k) {
                Some(Value::Object(o)) => o
                    .get("value")
                    .and_then(Value::as_f64)
                    .map_or("?".into(), |v| format!("{v:.10}")),
                Some(Value::String(s)) if s.contains("r too large") => "r too large".into(),
                _ => "not computed".into(),
            };
            line.push_str(&format!("  {cell:<14}"));
        }
        if let Some(v) = &row.verdict {
            line.push_str(&format!(
                "  {}{}",
                // The row's confidence may come from the GD verdict alone: an inconclusive
                // mean-square verdict asserts nothing, so it carries none.
                status_label(
                    v.mean_square,
                    v.confidence
                        .filter(|_| super::verdict_of(v.mean_square) != Verdict::Inconclusive)
                ),
                v.certified_relative_margin
                    .map(|m| format!(" ({})", fmt_percent(m)))
                    .unwrap_or_else(|| " (η* = +∞)".into())
            ));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if let Some(m) = &doc.marker {
        out.push_str(&format!(
            "\ntrained at (B = {}, η = {}): {}{}; η*({}) ∈ {}\n",
            m.batch,
            m.eta,
            m.verdict,
            m.certified_relative_margin
                .map(|x| format!(", certified relative margin {}", fmt_percent(x)))
                .unwrap_or_default(),
            m.batch,
            fmt_bracket(
                m.mean_square_critical_lr.lower,
                m.mean_square_critical_lr.upper
            )
        ));
    }
    let k_notes: Vec<String> = doc
        .rows
        .iter()
        .flat_map(|r| r.k_moments.values())
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    if let Some(first) = k_notes.first() {
        out.push_str(&format!("η*_k: {first}\n"));
    }
    for note in &doc.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    out
}

/// Serialize the document. Every number must be finite (JSON has no ∞/NaN; serde_json would
/// silently write `null`), so the floats are checked first; unbounded ends are `null` by design.
pub fn to_json(doc: &StabilityDoc) -> Result<String> {
    let opt = |v: &Option<f64>| v.is_none_or(f64::is_finite);
    let bracket = |b: &Bracket| opt(&b.lower) && opt(&b.upper);
    let mut ok = opt(&doc.tau)
        && opt(&doc.discarded_mass)
        && bracket(&doc.gauss_newton_lambda_max)
        && doc
            .eta
            .as_ref()
            .is_none_or(|e| e.theory.is_finite() && e.torch_mse.is_finite())
        && doc.residual.as_ref().is_none_or(|r| {
            r.max_abs_residual.is_finite()
                && r.rms_residual.is_finite()
                && r.loss_gradient_norm.is_finite()
        })
        && doc.marker.as_ref().is_none_or(|m| {
            m.eta.is_finite()
                && opt(&m.certified_relative_margin)
                && bracket(&m.mean_square_critical_lr)
        });
    for row in &doc.rows {
        let ms = &row.mean_square_critical_lr;
        ok &= row.p.is_finite()
            && bracket(&row.gd_critical_lr)
            && opt(&ms.lower)
            && opt(&ms.upper)
            && bracket(&ms.lambda_max_dtilde)
            && ms.truncation_allowance.is_finite()
            && ms.rounding_allowance_assumed.is_finite()
            && row
                .verdict
                .as_ref()
                .is_none_or(|v| opt(&v.certified_relative_margin));
    }
    if !ok {
        return Err(Error::Numerical("a stability result is not finite".into()));
    }
    serde_json::to_string_pretty(doc).map_err(|e| Error::Internal(format!("JSON: {e}")))
}

/// The rows (and marker) whose verdict at η is not "certified stable" for both T5 (mean square)
/// and T4 (GD), as `B = …` labels; empty without an η.
pub fn not_certified(doc: &StabilityDoc) -> Vec<String> {
    let mut out: Vec<String> = doc
        .rows
        .iter()
        .filter(|row| {
            row.verdict.as_ref().is_some_and(|v| {
                v.mean_square != Verdict::CertifiedStable.name() || v.gd != "stable"
            })
        })
        .map(|row| format!("B = {}", row.batch))
        .collect();
    if let Some(m) = &doc.marker
        && m.verdict != Verdict::CertifiedStable.name()
        && !out.contains(&format!("B = {}", m.batch))
    {
        out.push(format!("B = {} (trained)", m.batch));
    }
    out
}
