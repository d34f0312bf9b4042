//! T7 figure: every measured Sobolev quantity against the bound SGD stability gives it, one row
//! per comparison of the T7 verdict (its `le_bound` diagnostics: measured value ≤ stated bound),
//! on a logarithmic axis, with the ratio bound/measured printed beside the bound. The rows are
//! named as in the certificate (`b_k2`, `c_weighted_k4`, `d_trace`, …; statements in the report's
//! T7 table).

use crate::quantity::shortest;
use flatcert_bounds::{Relation, Status};
use plotters::prelude::*;

use super::{Figure, skipped_sentence};
use crate::certify::Certificate;
use crate::error::Result;
use crate::render::num;
use crate::render::svg::{
    BLUE, Frame, GREEN, Glyph, LogAxis, ORANGE, RED, RowAxis, draw_err, render,
};

/// File name in the report directory.
pub const FILE: &str = "t7_sobolev.svg";

/// One comparison: measured value and its bound.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The check's name (`b_k2`, …).
    pub name: String,
    /// The measured value (point value of the left side).
    pub measured: f64,
    /// The bound (upper side of the right side; +∞ when vacuous).
    pub bound: f64,
    /// bound/measured: upper(bound)/lower(measured), as in the certificate's `*_ratio`.
    pub ratio: f64,
    /// The check's status.
    pub status: Status,
}

/// The `le_bound` diagnostics of the T7 verdict, in certificate order.
pub fn rows(cert: &Certificate) -> Vec<Row> {
    let Some(v) = cert.verdicts.verdict("T7") else {
        return Vec::new();
    };
    v.diagnostics
        .iter()
        .filter(|c| c.relation == Some(Relation::LeBound))
        .filter_map(|c| {
            let (m, b) = (c.lhs?, c.rhs?);
            Some(Row {
                name: c.name.clone(),
                measured: m.value,
                bound: b.upper(),
                ratio: b.upper() / m.lower(),
                status: c.status,
            })
        })
        .collect()
}

/// The figure, or `None` when T7 was not computed or has no measured-vs-bound comparison.
pub fn figure(cert: &Certificate) -> Result<Option<Figure>> {
    let rows = rows(cert);
    if rows.is_empty() {
        return Ok(None);
    }
    let ok = |x: f64| x.is_finite() && x > 0.0;
    let mut values: Vec<f64> = Vec::new();
    for r in &rows {
        values.extend([r.measured, r.bound].into_iter().filter(|x| ok(*x)));
    }
    let Some(x_axis) = LogAxis::covering(&values, 0.2) else {
        return Ok(None);
    };
    // Room for the ratio labels on the right.
    let x_axis = x_axis.extend_right(0.45);
    let (x0, x1) = (x_axis.start(), x_axis.end());
    let skipped_measured = rows.iter().filter(|r| !ok(r.measured)).count();
    let skipped_bound = rows.iter().filter(|r| !ok(r.bound)).count();
    let n_rows = rows.len();
    // Row 0 at the top.
    let y_of = |i: usize| (n_rows - 1 - i) as f64;
    let names: Vec<String> = rows.iter().map(|r| r.name.clone()).collect();
    let h = &cert.hyper;
    let violated = rows.iter().filter(|r| r.status == Status::Violated).count();
    let legend = vec![
        (
            Glyph::Dot(BLUE),
            "measured on the training data (exact unless the certificate says otherwise)".into(),
        ),
        (
            Glyph::Triangle(GREEN),
            "bound from T7 (rigorous upper side; it assumes the T7 hypotheses: interpolation and \
             k-th moment stability at (η, B))"
                .into(),
        ),
        (
            Glyph::Line(RED, 3),
            "a measured value above its bound (the comparison is violated)".into(),
        ),
        (
            Glyph::Line(ORANGE, 3),
            "inconclusive or estimated comparison".into(),
        ),
        (
            Glyph::Line(RGBColor(160, 160, 160), 1),
            "×r: the ratio bound/measured (how loose the bound is; < 1 means violated)".into(),
        ),
    ];
    let mut caption = format!(
        "T7: SGD stability caps the input gradients on the training data. Each row is one of the \
         {n_rows} measured-vs-bound comparisons of the certificate's T7 verdict (they are \
         diagnostics: they do not decide the verdict; {violated} violated). Logarithmic x axis."
    );
    if let Some(v) = cert.verdicts.verdict("T7") {
        caption.push_str(&super::borrowed_stability_sentence(v));
    }
    caption.push_str(&skipped_sentence(
        skipped_measured,
        "measured value",
        "not a positive finite number",
    ));
    caption.push_str(&skipped_sentence(
        skipped_bound,
        "bound",
        "+∞ (vacuous) or not a positive finite number",
    ));
    let frame = Frame {
        title: format!(
            "T7 Sobolev regularization: measured against bound — η = {}, B = {}, k = {:?}",
            shortest(h.eta),
            h.batch,
            h.k
        ),
        subtitle: format!(
            "n = {}, C = {}; η in the theory convention (PyTorch MSELoss η_torch = {})",
            h.n,
            h.outputs,
            shortest(h.eta_torch_mse)
        ),
        legend,
        caption: caption.clone(),
    };
    let chart_h = (30 * n_rows as u32 + 90).max(220);
    let svg = render(&frame, chart_h, |area| {
        let mut chart = ChartBuilder::on(area)
            .margin_left(16)
            .margin_right(24)
            .margin_top(8)
            .x_label_area_size(48)
            .y_label_area_size(150)
            .build_cartesian_2d(x_axis, RowAxis { rows: n_rows })
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .x_desc("value (log scale)")
            .y_desc("T7 comparison (certificate name)")
            .y_label_formatter(&|y| {
                let i = y.round();
                if i < 0.0 || i >= n_rows as f64 {
                    return String::new();
                }
                names
                    .get(n_rows - 1 - i as usize)
                    .cloned()
                    .unwrap_or_default()
            })
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 15))
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(230, 230, 230))
            .draw()
            .map_err(draw_err)?;
        for (i, r) in rows.iter().enumerate() {
            let y = y_of(i);
            let m = ok(r.measured).then(|| r.measured.log10());
            let b = ok(r.bound).then(|| r.bound.log10());
            let colour = match r.status {
                Status::Violated => RED,
                Status::Certified => RGBColor(160, 160, 160),
                _ => ORANGE,
            };
            if let (Some(m), Some(b)) = (m, b) {
                chart
                    .draw_series(LineSeries::new(
                        [(m, y), (b, y)],
                        colour.stroke_width(if r.status == Status::Certified { 1 } else { 3 }),
                    ))
                    .map_err(draw_err)?;
            }
            if let Some(m) = m {
                chart
                    .draw_series([Circle::new((m, y), 5, BLUE.filled())])
                    .map_err(draw_err)?;
            }
            if let Some(b) = b {
                chart
                    .draw_series([TriangleMarker::new((b, y), 6, GREEN.filled())])
                    .map_err(draw_err)?;
            }
            let label = if r.ratio.is_finite() {
                format!("×{}", num(r.ratio))
            } else {
                format!("×{} (not drawn)", num(r.ratio))
            };
            let at = [m, b].into_iter().flatten().fold(x0, f64::max).min(x1);
            chart
                .draw_series([EmptyElement::at((at, y))
                    + Text::new(label, (10, -7), ("sans-serif", 13).into_font())])
                .map_err(draw_err)?;
        }
        Ok(())
    })?;
    Ok(Some(Figure {
        theorem: "T7",
        file: FILE,
        title: "T7: measured Sobolev quantities against their bounds".into(),
        caption,
        svg,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::test_support::certificate_with;
    use flatcert_bounds::{Check, Value, Verdict};

    fn t7() -> Verdict {
        let mut v = Verdict::new("T7", "Sobolev regularization of SGD");
        v.diagnostics.push(Check::le_bound(
            "b_k2",
            "max_i ‖J_x(x_i)‖₂ ≤ ‖W‖₂√β_k / min_i‖x_i‖ (T7b)",
            Value::exact(2.1643, 0.0),
            Value::upper_bound(11.258, 0.0),
        ));
        v.diagnostics.push(Check::le_bound(
            "d_order2",
            "vacuous at p = 0",
            Value::exact(22.8, 0.0),
            Value::upper_bound(f64::INFINITY, 0.0),
        ));
        v.diagnostics.push(Check::le_bound(
            "broken",
            "measured above bound",
            Value::exact(30.0, 0.0),
            Value::upper_bound(3.0, 0.0),
        ));
        v.diagnostics.push(Check::le(
            "e_gx_sobolev_k2",
            "g_x(k) ≤ |f|_(1,2k): two measured values, not a bound",
            Value::exact(0.4, 0.0),
            Value::exact(1.3, 0.0),
        ));
        v
    }

    #[test]
    fn one_row_per_bound_with_the_ratio() {
        let cert = certificate_with(vec![t7()], &[2], None);
        let rs = rows(&cert);
        let names: Vec<&str> = rs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["b_k2", "d_order2", "broken"]);
        assert!((rs[0].ratio - 11.258 / 2.1643).abs() < 1e-12);
        assert_eq!(rs[2].status, Status::Violated);
        let f = figure(&cert).unwrap().unwrap();
        crate::render::svg::xml::well_formed(&f.svg).unwrap();
        assert!(f.svg.contains("×5.2017"), "ratio printed");
        assert!(f.svg.contains("b_k2") && f.svg.contains("broken"));
        assert!(f.caption.contains("1 bound was not drawn (+∞ (vacuous)"));
        assert!(f.caption.contains("1 violated"));
    }

    #[test]
    fn says_when_the_stability_hypothesis_fails() {
        let mut v = t7();
        v.hypotheses.push(Check::le(
            "k_stable_k2",
            "η·λ_max(𝒟̃) ≤ 1",
            Value::interval(1.2, 3.9),
            Value::exact(1.0, 0.0),
        ));
        let cert = certificate_with(vec![v], &[2], None);
        let f = figure(&cert).unwrap().unwrap();
        assert!(
            f.caption.contains("the hypothesis k_stable_k2 is VIOLATED"),
            "{}",
            f.caption
        );
    }

    #[test]
    fn no_figure_without_t7() {
        let cert = certificate_with(vec![], &[2], None);
        assert!(figure(&cert).unwrap().is_none());
    }
}
