//! The Markdown report of a certificate (`flatcert certify --format markdown`, and `report.md` of
//! `--report DIR`; `docs/report.md`): a header with the inputs and their SHA-256, η in both
//! conventions, B, n and the sampling model; the summary with the exit code and what it means;
//! one section per theorem T1 … T10 with its hypotheses, diagnostics and conclusions as Markdown
//! tables (every number with its kind), the "what this means" paragraph, the notes and, where
//! drawn, its figure; and a key to the kinds.
//!
//! Deterministic: the text depends only on the certificate and the list of figures (no clock, no
//! paths other than those recorded in the certificate).

use crate::quantity::shortest;
use std::fmt::Write as _;

use flatcert_bounds::{Check, Conclusion, Kind, Relation, Status, Value, Verdict};

use super::{meaning, num, value};
use crate::certify::Certificate;
use crate::certify::bound::BoundReport;
use crate::certify::certificate::{THEOREMS, VerdictEntry, Verdicts};
use crate::certify::plan::Hyper;
use crate::certify::summary::{HypothesisRef, Summary, status_label, status_name};

/// A figure the Markdown links to (relative path inside the report directory).
#[derive(Debug, Clone, PartialEq)]
pub struct FigureLink {
    /// The theorem whose section shows it.
    pub theorem: String,
    /// Relative file name (`t6_curvature.svg`).
    pub file: String,
    /// Alt text / title.
    pub title: String,
    /// Caption under the image.
    pub caption: String,
}

/// The theorem titles of THEORY.md, for sections whose verdict is `not_computed`.
fn theorem_title(id: &str) -> &'static str {
    match id {
        "T1" => "Multiplicative identity of the first layer",
        "T2" => "Per-sample input-gradient inequality",
        "T3" => "Flatness bounds input smoothness on the data",
        "T4" => "First moment (the GD condition)",
        "Min" => flatcert_bounds::minimum::TITLE,
        "T5" => "Second moment: critical learning rate and certificate",
        "T6" => "k-th moments: per-sample bound and directional test",
        "T7" => "Sobolev regularization of SGD",
        "T8" => "Generalization near the training set",
        "T9" => "Adversarial robustness",
        "T10" => "Certified local Lipschitz bound by interval bound propagation",
        _ => "",
    }
}

/// Escape text for a Markdown table cell or paragraph: the characters that would end a cell or
/// start emphasis, code or HTML (`\ | * _ ` < >`), and line breaks.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' | '|' | '*' | '_' | '`' => {
                out.push('\\');
                out.push(c);
            }
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\n' | '\r' => out.push(' '),
            _ => out.push(c),
        }
    }
    out
}

/// A value with its kind, as in the table ([`value`]), estimates with their error: `≈ 0.97 ±
/// 0.01 (estimate)`.
pub fn value_md(v: &Value) -> String {
    match v.kind {
        Kind::Estimate => format!("≈ {} ± {} (estimate)", num(v.value), num(v.tol)),
        _ => value(v),
    }
}

fn relation(r: Option<Relation>) -> &'static str {
    match r {
        Some(Relation::Le) => "≤",
        Some(Relation::Lt) => "<",
        Some(Relation::LeBound) => "≤ bound",
        Some(Relation::BoundLe) => "bound ≤",
        None => "—",
    }
}

fn status_cell(c: &Check) -> String {
    match c.status {
        Status::Violated => status_label("**VIOLATED**", c.confidence),
        Status::Inconclusive => "**inconclusive**".into(),
        other => status_label(status_name(other), c.confidence),
    }
}

fn checks_table(out: &mut String, checks: &[Check]) {
    out.push_str(
        "| check | statement | A (lhs) | relation | B (rhs) | status | margin | relative margin |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for c in checks {
        let side =
            |v: &Option<Value>| v.as_ref().map_or("—".to_string(), |v| escape(&value_md(v)));
        let margin = match (c.margin, c.size) {
            (Some(m), _) => num(m),
            (None, Some(s)) => format!("size {}", num(s)),
            _ => "—".into(),
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {} | {} | {} |",
            c.name,
            escape(&c.statement),
            side(&c.lhs),
            relation(c.relation),
            side(&c.rhs),
            status_cell(c),
            escape(&margin),
            c.relative_margin.map_or("—".into(), num)
        );
    }
    out.push('\n');
}

fn conclusions_table(out: &mut String, list: &[Conclusion]) {
    out.push_str("| conclusion | value (kind) | statement |\n|---|---|---|\n");
    for c in list {
        let _ = writeln!(
            out,
            "| `{}` | {}{} | {} |",
            c.name,
            escape(&value_md(&c.value)),
            if c.vacuous { " — vacuous" } else { "" },
            escape(&c.statement)
        );
    }
    out.push('\n');
}

fn header(out: &mut String, cert: &Certificate) {
    let h = &cert.hyper;
    let i = &cert.inputs;
    out.push_str("# flatcert certificate\n\n");
    let _ = writeln!(
        out,
        "Schema `{}`, issued by flatcert {}. Every number is labelled with its kind (key at the \
         end).\n",
        cert.schema, h.flatcert_version
    );
    out.push_str("| | |\n|---|---|\n");
    let mut row = |k: &str, v: String| {
        let _ = writeln!(out, "| {k} | {v} |");
    };
    match &i.files {
        Some(f) => {
            let file = |label: &str, rec: &crate::measurements::InputFile| {
                format!(
                    "`{}` — SHA-256 `{}`{}",
                    rec.path.replace('`', "'"),
                    rec.sha256,
                    if label.is_empty() {
                        String::new()
                    } else {
                        format!(" ({label})")
                    }
                )
            };
            row("model", file("", &f.model));
            row(
                "training inputs x",
                file(
                    &if f.x_scale == 1.0 {
                        String::new()
                    } else {
                        format!("scaled by {}", f.x_scale)
                    },
                    &f.x,
                ),
            );
            if let Some(y) = &f.y {
                row(
                    "training targets y",
                    file(
                        &f.one_hot.map_or(String::new(), |c| {
                            format!("labels one-hot over {c} classes")
                        }),
                        y,
                    ),
                );
            }
            if let Some(t) = &f.test_x {
                row("held-out inputs", file("", t));
            }
            if let Some(t) = &f.test_y {
                row("held-out targets", file("", t));
            }
        }
        None => row(
            "inputs",
            "in-memory (library call): no files, so this certificate cannot be verified".into(),
        ),
    }
    row(
        "network",
        escape(&crate::measurements::network_label(
            &i.activation,
            &i.widths,
            i.parameters,
            i.architecture.as_ref(),
        )),
    );
    row(
        "samples",
        format!(
            "n = {}{}",
            i.n,
            i.test_n
                .map_or(String::new(), |t| format!(" (held-out: {t})"))
        ),
    );
    hyper_rows(out, h);
    let _ = writeln!(out, "| seed | {} |", h.seed);

    out.push('\n');
    if !cert.measurements.notes.is_empty() {
        out.push_str("Notes on the measurements:\n\n");
        for n in &cert.measurements.notes {
            let _ = writeln!(out, "- {}", escape(n));
        }
        out.push('\n');
    }
}

/// The table rows of the hyper-parameters (η in both conventions, B with p and π, k, the sampling
/// model, ε), shared by the certificate's and the bound calculator's headers.
fn hyper_rows(out: &mut String, h: &Hyper) {
    let mut row = |k: &str, v: String| {
        let _ = writeln!(out, "| {k} | {v} |");
    };
    row(
        "learning rate",
        format!(
            "η = {} in the theory convention (ℓ_i = ½‖f(x_i) − y_i‖² summed over the C = {} \
             outputs); given {} as `{}`; PyTorch `MSELoss()` equivalent η_torch = {}",
            shortest(h.eta),
            h.outputs,
            shortest(h.lr_given),
            h.lr_convention.name(),
            shortest(h.eta_torch_mse)
        ),
    );
    row(
        "batch",
        format!(
            "B = {}, p = {}, π = P(i ∈ ξ) = {}",
            h.batch,
            num(h.p),
            num(h.pi)
        ),
    );
    row(
        "moment orders",
        format!(
            "k = {}",
            h.k.iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    row("sampling", escape(&h.sampling_model));
    row(
        "robustness radius",
        match h.epsilon {
            Some(e) => format!(
                "ε = {e} (ℓ2), ε_y = {}{}",
                h.epsilon_y,
                h.tau.map_or(String::new(), |t| format!(", τ = {t}"))
            ),
            None => "none (T8–T10 need `--epsilon`)".into(),
        },
    );
}

fn refs(out: &mut String, label: &str, list: &[HypothesisRef]) {
    if list.is_empty() {
        return;
    }
    let _ = writeln!(out, "**{label}**\n");
    for h in list {
        let size = h
            .size
            .map_or(String::new(), |s| format!(" (size {})", num(s)));
        let _ = writeln!(
            out,
            "- `{}.{}`: {}{size}",
            h.theorem,
            h.name,
            escape(&h.statement)
        );
    }
    out.push('\n');
}

fn summary(out: &mut String, s: &Summary, verdicts: &Verdicts) {
    out.push_str("## Summary\n\n");
    if s.certified() {
        let _ = writeln!(
            out,
            "**{}** — exit code {}: every checked hypothesis of every computed theorem is \
             certified{}. Assumed hypotheses are listed below; they are not checked and never fail.\n",
            status_label("CERTIFIED", s.confidence),
            s.exit_code,
            s.confidence.map_or(String::new(), |c| format!(
                ", some only with probability ≥ 1 − {:e} over the seeded random start of the \
                 λ_max(G) bound (THEORY §3 item 8)",
                c.delta
            ))
        );
    } else {
        let _ = writeln!(
            out,
            "**NOT CERTIFIED** — exit code {}: at least one hypothesis is violated, inconclusive or \
             only estimated (listed below). The numbers were computed; the certificate says which \
             statement does not hold.\n",
            s.exit_code
        );
    }
    out.push_str("| theorem | title | status |\n|---|---|---|\n");
    for t in &s.theorems {
        let title = verdicts
            .verdict(&t.theorem)
            .map_or(theorem_title(&t.theorem), |v| v.title.as_str());
        let st = match t.status.as_str() {
            "violated" => "**VIOLATED**".to_string(),
            "inconclusive" => "**inconclusive**".to_string(),
            "not_computed" => "not computed".to_string(),
            other => status_label(other, t.confidence),
        };
        let _ = writeln!(
            out,
            "| [{id}](#{anchor}) | {} | {st} |",
            escape(title),
            id = t.theorem,
            anchor = t.theorem.to_lowercase()
        );
    }
    out.push('\n');
    refs(out, "Violated", &s.violated);
    refs(out, "Inconclusive", &s.inconclusive);
    refs(out, "Estimated (no rigorous side)", &s.estimated);
    refs(out, "Assumed (listed, not failing)", &s.assumed);
    refs(
        out,
        "Violated diagnostics (they do not decide; worth a look)",
        &s.diagnostic_violations,
    );
    if !s.not_computed.is_empty() {
        out.push_str("**Not computed**\n\n");
        for n in &s.not_computed {
            let _ = writeln!(out, "- {}: {}", n.theorem, escape(&n.reason));
        }
        out.push('\n');
    }
    if let Some(g) = &s.gauss_newton {
        let _ = writeln!(out, "{}\n", escape(g));
    }
    let _ = writeln!(out, "Sampling: {}.\n", escape(&s.sampling_caveat));
    out.push_str(
        "Exit codes of `flatcert certify`: 0 = every checked hypothesis certified; 1 = computed, \
         but some hypothesis is violated or inconclusive; 2 = bad input or usage; 3 = internal or \
         numerical error.\n\n",
    );
}

fn theorem_section(out: &mut String, id: &str, entry: &VerdictEntry, figures: &[FigureLink]) {
    let _ = writeln!(out, "<a id=\"{}\"></a>\n", id.to_lowercase());
    match entry {
        VerdictEntry::NotComputed(reason) => {
            let _ = writeln!(
                out,
                "## {id} — {} — not computed\n\n{}\n",
                theorem_title(id),
                escape(reason)
            );
        }
        VerdictEntry::Computed(v) => computed_section(out, id, v, figures),
    }
}

fn computed_section(out: &mut String, id: &str, v: &Verdict, figures: &[FigureLink]) {
    let st = v.status();
    let _ = writeln!(
        out,
        "## {id} — {} — {}\n",
        escape(&v.title),
        status_label(&status_name(st).to_uppercase(), v.confidence())
    );
    if !v.hypotheses.is_empty() {
        out.push_str("**Hypotheses** (they decide the verdict)\n\n");
        checks_table(out, &v.hypotheses);
    }
    if !v.diagnostics.is_empty() {
        out.push_str("**Diagnostics** (reported; they do not decide the verdict)\n\n");
        checks_table(out, &v.diagnostics);
    }
    if !v.conclusions.is_empty() {
        out.push_str("**Conclusions**\n\n");
        conclusions_table(out, &v.conclusions);
    }
    let m = meaning(v);
    if !m.is_empty() {
        let _ = writeln!(out, "**What this means.** {}\n", escape(&m));
    }
    for f in figures.iter().filter(|f| f.theorem == id) {
        let _ = writeln!(
            out,
            "![{}]({})\n\n*Figure ({id}).* {}\n",
            escape(&f.title),
            f.file,
            escape(&f.caption)
        );
    }
    if !v.notes.is_empty() {
        out.push_str("Notes:\n\n");
        for n in &v.notes {
            let _ = writeln!(out, "- {}", escape(n));
        }
        out.push('\n');
    }
}

const KEY: &str = "## Key to the numbers\n\n\
| written | kind | meaning |\n\
|---|---|---|\n\
| `1.2345 (exact)` | exact | computed in floating point with an a-priori rounding tolerance (THEORY §3) |\n\
| `≤ 3.2 (upper)` | rigorous upper bound | the true value is at most this |\n\
| `≥ 0.6 (lower)` | rigorous lower bound | the true value is at least this |\n\
| `[1, 2] (interval)` | interval | both ends rigorous |\n\
| `≈ 0.97 ± 0.01 (estimate)` | estimate ± error | stochastic or non-rigorous, with its standard error or residual: no rigorous statement |\n\n\
A check \"A ≤ B\" is *certified* when upper(A) ≤ lower(B), *violated* when lower(A) > upper(B), \
*inconclusive* otherwise, *estimated* when an estimate entered; \"≤ bound\" compares a measured \
value with a stated upper bound. margin = lower(B) − upper(A); relative margin = margin/|upper(B)|. \
Assumed hypotheses are not checked (their size, when known, is the neglected error). Diagnostics \
never decide a verdict.\n";

/// The Markdown report of `cert`, linking `figures` (relative paths) in their theorems' sections.
/// Without figures (`--format markdown` without `--report`), a line says how to get them.
pub fn render_markdown(cert: &Certificate, figures: &[FigureLink]) -> String {
    let mut out = String::new();
    header(&mut out, cert);
    if figures.is_empty() {
        out.push_str(
            "Figures (per-sample curvature, Sobolev bounds, certified radii) are written with \
             `flatcert certify … --report DIR`.\n\n",
        );
    }
    body(
        &mut out,
        &cert.summary,
        &cert.verdicts,
        figures,
        "certificate",
    );
    if let Some(pp) = &cert.per_point {
        per_point_table(&mut out, pp);
    }
    out
}

/// Rows of the per-point table of the Markdown report.
pub const WORST_POINTS: usize = 10;

/// `--per-point`: the [`WORST_POINTS`] worst training points (smallest certified radius, then
/// largest Lipschitz bound), each number with its kind (issue 12 item 4).
fn per_point_table(out: &mut String, pp: &crate::certify::certificate::PerPoint) {
    let _ = writeln!(
        out,
        "## Per-point results: the {} worst of {} training points

At ε = {} (ℓ2, inputs after \
         `--x-scale`); every point is in the certificate's `per_point` section.

| point | \
         certified at ε (T9) | certified radius (T9, lower) | L_i(ε) (T10, upper) | margin \
         (lower) | ‖res_i‖ (upper) |\n|---|---|---|---|---|---|",
        WORST_POINTS.min(pp.points.len()),
        pp.points.len(),
        shortest(pp.epsilon)
    );
    let opt = |q: &Option<crate::quantity::Quantity>, side: &str| {
        q.as_ref()
            .map_or("—".into(), |q| format!("{side} {}", num(q.value)))
    };
    for p in pp.worst(WORST_POINTS) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | ≤ {} | {} | {} |",
            p.index,
            if p.certified_at_eps { "yes" } else { "**no**" },
            opt(&p.certified_radius, "≥"),
            num(p.lipschitz.value),
            opt(&p.margin, "≥"),
            opt(&p.residual_norm, "≤")
        );
    }
    out.push('\n');
}

/// The summary, one section per theorem T1 … T10 and the key; `document` names what a missing
/// theorem is absent from.
fn body(
    out: &mut String,
    s: &Summary,
    verdicts: &Verdicts,
    figures: &[FigureLink],
    document: &str,
) {
    summary(out, s, verdicts);
    for id in THEOREMS {
        match verdicts.get(id) {
            Some(e) => theorem_section(out, id, e, figures),
            None => {
                let _ = writeln!(
                    out,
                    "<a id=\"{}\"></a>\n\n## {id} — {} — not computed\n\nabsent from the \
                     {document}\n",
                    id.to_lowercase(),
                    theorem_title(id)
                );
            }
        }
    }
    out.push_str(KEY);
}

/// The Markdown report of the bound calculator (`flatcert bound --format markdown`): the document
/// the numbers came from (path, SHA-256, schema), the hyper-parameters, then the same summary,
/// theorem sections and key as [`render_markdown`]. No figures: they need the per-sample data,
/// which a measurements document or certificate does not hold.
pub fn render_bound_markdown(report: &BoundReport) -> String {
    let mut out = String::new();
    out.push_str("# flatcert bound\n\n");
    let _ = writeln!(
        out,
        "Schema `{}`: the theorems evaluated from measured numbers alone (no network, no data). \
         Every number is labelled with its kind (key at the end).\n",
        report.schema
    );
    out.push_str("| | |\n|---|---|\n");
    let src = &report.source;
    let _ = writeln!(
        out,
        "| numbers from | `{}` — SHA-256 `{}`, schema `{}` |",
        src.path.replace('`', "'"),
        src.sha256,
        escape(&src.schema)
    );
    let _ = writeln!(out, "| samples | n = {} |", report.hyper.n);
    hyper_rows(&mut out, &report.hyper);
    out.push('\n');
    body(
        &mut out,
        &report.summary,
        &report.verdicts,
        &[],
        "bound report",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::test_support::certificate_with;
    use flatcert_bounds::Verdict;

    fn sample() -> Certificate {
        let mut t4 = Verdict::new("T4", "First moment (the GD condition)");
        t4.hypotheses.push(Check::le(
            "gd_condition",
            "λ_max(H) ≤ 2/η",
            Value::interval(5.87, 5.88),
            Value::exact(10.0, 0.0),
        ));
        t4.hypotheses.push(Check::assumed(
            "gauss_newton_model",
            "assumed: G for H",
            Some(4.5e-3),
        ));
        t4.conclusions.push(Conclusion::new(
            "eta_gd",
            "η_GD* = 2/λ_max",
            Value::interval(0.34, 0.341),
        ));
        let mut t5 = Verdict::new(
            "T5",
            "Second moment: critical learning rate and certificate",
        );
        t5.hypotheses.push(Check::le(
            "stability",
            "η·λ_max(𝒟̃) ≤ 1 | with a pipe",
            Value::interval(1.2, 1.3),
            Value::exact(1.0, 0.0),
        ));
        t5.diagnostics.push(Check::le(
            "wme_sufficient",
            "Wu–Ma–E λ_max(M_WME) ≤ 1",
            Value::estimate(0.99, 0.01),
            Value::exact(1.0, 0.0),
        ));
        t5.notes.push("a note".into());
        certificate_with(vec![t4, t5], &[2, 4], None)
    }

    #[test]
    fn every_theorem_has_a_section_and_every_check_a_row() {
        let cert = sample();
        let md = render_markdown(&cert, &[]);
        for id in THEOREMS {
            assert!(md.contains(&format!("\n## {id} — ")), "section {id}");
            assert!(md.contains(&format!("<a id=\"{}\"></a>", id.to_lowercase())));
        }
        assert!(md.contains("## T4 — First moment (the GD condition) — CERTIFIED"));
        assert!(
            md.contains("## T5 — Second moment: critical learning rate and certificate — VIOLATED")
        );
        assert!(md.contains("## T8 — Generalization near the training set — not computed"));
        // One row per hypothesis / diagnostic / conclusion, with kinds.
        assert!(md.contains(
            "| `gd_condition` | λ\\_max(H) ≤ 2/η | [5.8700, 5.8800] (interval) | ≤ | 10.000 (exact) | certified | 4.1200 | 0.41200 |"
        ), "{md}");
        assert!(md.contains(
            "| `gauss_newton_model` | assumed: G for H | — | — | — | assumed | size 0.0045000 | — |"
        ));
        assert!(md.contains("≈ 0.99000 ± 0.010000 (estimate)"));
        assert!(
            md.contains("| `eta_gd` | [0.34000, 0.34100] (interval) | η\\_GD\\* = 2/λ\\_max |")
        );
        assert!(md.contains("with a pipe"));
        assert!(
            !md.contains("≤ 1 | with a pipe"),
            "pipes in cells are escaped"
        );
        assert!(md.contains("**NOT CERTIFIED** — exit code 1"));
        assert!(md.contains("- `T5.stability`: "));
        assert!(
            md.contains(
                "**What this means.** SGD at this (η, B) is certified mean-square UNSTABLE"
            )
        );
        assert!(md.contains("are written with `flatcert certify … --report DIR`"));
        assert!(md.contains("| learning rate | η = 0.2 in the theory convention"));
        assert!(md.contains("PyTorch `MSELoss()` equivalent η_torch = 1"));
        assert!(md.contains("| batch | B = 16,"));
        assert!(md.contains("| samples | n = 256 |"));
        assert!(md.contains("## Key to the numbers"));
        // Every table row has the same number of cells as its header.
        let mut cols = None;
        for line in md.lines() {
            if line.starts_with("| ") || line.starts_with("|---") {
                let n = line.replace("\\|", "").matches('|').count();
                if line.starts_with("|---") {
                    cols = Some(n);
                } else if let Some(c) = cols {
                    assert_eq!(n, c, "{line}");
                }
            } else {
                cols = None;
            }
        }
    }

    #[test]
    fn figures_are_linked_in_their_sections_and_output_is_deterministic() {
        let cert = sample();
        let figs = vec![FigureLink {
            theorem: "T5".into(),
            file: "t5_x.svg".into(),
            title: "a figure".into(),
            caption: "what it shows".into(),
        }];
        let md = render_markdown(&cert, &figs);
        let t5 = md.find("## T5").unwrap();
        let t6 = md.find("## T6").unwrap();
        let link = md.find("![a figure](t5_x.svg)").unwrap();
        assert!(t5 < link && link < t6);
        assert!(md.contains("*Figure (T5).* what it shows"));
        assert!(!md.contains("--report DIR`."));
        assert_eq!(md, render_markdown(&cert, &figs));
    }

    #[test]
    fn escaping() {
        assert_eq!(escape("a|b*c_d`e<f>\\"), "a\\|b\\*c\\_d\\`e&lt;f&gt;\\\\");
        assert_eq!(value_md(&Value::upper_bound(2.0, 0.0)), "≤ 2.0000 (upper)");
    }
}
