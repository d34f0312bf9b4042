//! The terminal table: one block per theorem (hypotheses with status and margin, diagnostics,
//! conclusions with value and kind, the one-sentence meaning, notes), then the summary. Colour
//! only when asked for ([`Style::detect`]: stdout is a terminal and `NO_COLOR` is unset).

use std::fmt::Write as _;
use std::io::IsTerminal;

use flatcert_bounds::{Check, Status};

use super::{meaning, num, value};
use crate::certify::certificate::{VerdictEntry, Verdicts};
use crate::certify::summary::{HypothesisRef, Summary, status_label, status_name};

/// How to render.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Style {
    /// ANSI colours.
    pub color: bool,
    /// Only the per-theorem status line and the summary (no hypotheses, conclusions, notes).
    pub brief: bool,
}

impl Style {
    /// Colour when stdout is a terminal and `NO_COLOR` is not set.
    pub fn detect(brief: bool) -> Self {
        Self {
            color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
            brief,
        }
    }

    fn paint(&self, s: &str, status: Option<Status>) -> String {
        if !self.color {
            return s.to_string();
        }
        let code = match status {
            Some(Status::Certified) => "32",
            Some(Status::Violated) => "1;31",
            Some(Status::Inconclusive) | Some(Status::Estimated) => "33",
            Some(Status::Assumed) => "36",
            None => "2",
        };
        format!("\u{1b}[{code}m{s}\u{1b}[0m")
    }
}

fn status_word(s: Status) -> String {
    match s {
        Status::Violated => "VIOLATED".into(),
        other => status_name(other).into(),
    }
}

fn check_line(out: &mut String, c: &Check, style: &Style) {
    let word = format!("{:<12}", status_label(&status_word(c.status), c.confidence));
    let _ = write!(
        out,
        "    {} {}: {}",
        style.paint(&word, Some(c.status)),
        c.name,
        c.statement
    );
    match (&c.lhs, &c.rhs) {
        (Some(a), Some(b)) => {
            let _ = write!(out, "\n                 {}  vs  {}", value(a), value(b));
            if let Some(m) = c.margin {
                let _ = write!(out, "; margin {}", num(m));
            }
            if let Some(r) = c.relative_margin {
                let _ = write!(out, " (relative {})", num(r));
            }
        }
        _ => {
            if let Some(s) = c.size {
                let _ = write!(out, " [size {}]", num(s));
            }
        }
    }
    out.push('\n');
}

/// Render verdicts and summary after the given header lines.
pub fn render(header: &[String], verdicts: &Verdicts, summary: &Summary, style: Style) -> String {
    let mut out = String::new();
    for h in header {
        out.push_str(h);
        out.push('\n');
    }
    for (id, entry) in verdicts.iter() {
        out.push('\n');
        match entry {
            VerdictEntry::NotComputed(reason) => {
                let _ = writeln!(
                    out,
                    "{id:<4}{}",
                    style.paint(&format!("not computed: {reason}"), None)
                );
            }
            VerdictEntry::Computed(v) => {
                let st = v.status();
                let _ = writeln!(
                    out,
                    "{id:<4}{}  —  {}",
                    v.title,
                    style.paint(
                        &status_label(&status_word(st).to_uppercase(), v.confidence()),
                        Some(st)
                    )
                );
                if style.brief {
                    continue;
                }
                if !v.hypotheses.is_empty() {
                    out.push_str("  hypotheses\n");
                    for c in &v.hypotheses {
                        check_line(&mut out, c, &style);
                    }
                }
                if !v.diagnostics.is_empty() {
                    out.push_str("  diagnostics (reported, they do not decide the verdict)\n");
                    for c in &v.diagnostics {
                        check_line(&mut out, c, &style);
                    }
                }
                if !v.conclusions.is_empty() {
                    out.push_str("  conclusions\n");
                    for c in &v.conclusions {
                        let _ = writeln!(
                            out,
                            "    {} = {}{}  — {}",
                            c.name,
                            value(&c.value),
                            if c.vacuous { " vacuous" } else { "" },
                            c.statement
                        );
                    }
                }
                let m = meaning(v);
                if !m.is_empty() {
                    let _ = writeln!(out, "  what this means: {m}");
                }
                for n in &v.notes {
                    let _ = writeln!(out, "  note: {n}");
                }
            }
        }
    }
    out.push('\n');
    render_summary(&mut out, summary, &style);
    out
}

fn refs(out: &mut String, label: &str, list: &[HypothesisRef], style: &Style, st: Status) {
    if list.is_empty() {
        return;
    }
    let _ = writeln!(out, "  {}", style.paint(label, Some(st)));
    for h in list {
        let size = h
            .size
            .map_or(String::new(), |s| format!(" [size {}]", num(s)));
        let _ = writeln!(out, "    {}.{}: {}{size}", h.theorem, h.name, h.statement);
    }
}

fn render_summary(out: &mut String, s: &Summary, style: &Style) {
    let head = if s.certified() {
        style.paint(
            &status_label("CERTIFIED", s.confidence),
            Some(Status::Certified),
        )
    } else {
        style.paint("NOT CERTIFIED", Some(Status::Violated))
    };
    let _ = writeln!(out, "summary: {head} (exit code {})", s.exit_code);
    let line: Vec<String> = s
        .theorems
        .iter()
        .map(|t| format!("{} {}", t.theorem, status_label(&t.status, t.confidence)))
        .collect();
    let _ = writeln!(out, "  {}", line.join(" | "));
    refs(out, "violated:", &s.violated, style, Status::Violated);
    refs(
        out,
        "inconclusive:",
        &s.inconclusive,
        style,
        Status::Inconclusive,
    );
    refs(
        out,
        "estimated (no rigorous side):",
        &s.estimated,
        style,
        Status::Estimated,
    );
    refs(
        out,
        "assumed (listed, not failing):",
        &s.assumed,
        style,
        Status::Assumed,
    );
    refs(
        out,
        "violated diagnostics (do not decide; worth a look):",
        &s.diagnostic_violations,
        style,
        Status::Inconclusive,
    );
    if !s.not_computed.is_empty() {
        let _ = writeln!(out, "  not computed:");
        for n in &s.not_computed {
            let _ = writeln!(out, "    {}: {}", n.theorem, n.reason);
        }
    }
    if let Some(g) = &s.gauss_newton {
        let _ = writeln!(out, "  {g}");
    }
    let _ = writeln!(out, "  sampling: {}", s.sampling_caveat);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certify::summary::summarize;
    use flatcert_bounds::{Value, Verdict};

    #[test]
    fn no_colour_codes_without_colour() {
        let mut v = Verdict::new("T4", "First moment");
        v.hypotheses.push(Check::le(
            "gd_condition",
            "λ ≤ 2/η",
            Value::interval(1.0, 2.0),
            Value::exact(3.0, 0.0),
        ));
        let mut vs = Verdicts::default();
        vs.set("T4", VerdictEntry::Computed(Box::new(v)));
        vs.set("T8", VerdictEntry::NotComputed("needs --epsilon".into()));
        let s = summarize(&vs, None, "model S".into());
        let text = render(&["head".into()], &vs, &s, Style::default());
        assert!(!text.contains('\u{1b}'));
        assert!(text.contains("T4  First moment  —  CERTIFIED"));
        assert!(text.contains("not computed: needs --epsilon"));
        assert!(text.contains("summary: CERTIFIED (exit code 0)"));
        let coloured = render(
            &[],
            &vs,
            &s,
            Style {
                color: true,
                brief: true,
            },
        );
        assert!(coloured.contains('\u{1b}'));
    }
}
