//! T6(e) figure: the per-sample curvature λ_i = λ_max(J_iᵀJ_i) = ‖J_θ(x_i)‖₂² of every training
//! sample, sorted from the sharpest, against the thresholds β_k = (B/η)(1 + π^(−1/k)) of the
//! `per_sample` checks (max_i λ_i ≤ β_k is necessary for k-th moment stability at (η, B)). The
//! thresholds are read from the certificate's T6 checks, so the figure shows exactly what the
//! check compared.

use crate::quantity::shortest;
use flatcert_bounds::{Check, Status};
use plotters::prelude::*;

use super::{Figure, borrowed_stability_sentence, skipped_sentence};
use crate::certify::Certificate;
use crate::certify::summary::status_name;
use crate::error::Result;
use crate::render::num;
use crate::render::svg::{BLUE, Frame, Glyph, LogAxis, RED, SERIES, draw_err, render, subscript};

/// File name in the report directory.
pub const FILE: &str = "t6_curvature.svg";

/// Largest number of points of the drawn curve (larger n is subsampled evenly, keeping the
/// sharpest and the flattest sample).
const MAX_POINTS: usize = 1500;
/// Up to this many samples, every sample also gets a marker.
const MARKERS_UP_TO: usize = 400;

/// One threshold line: the `per_sample` check of one k.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// The moment order, when the check names one (None: the same β for every k).
    pub k: Option<u32>,
    /// β_k (the check's right side).
    pub beta: f64,
    /// The check's status.
    pub status: Status,
}

/// The `per_sample` / `per_sample_k{k}` checks of the T6 verdict as thresholds (k from the name,
/// or from the certificate's single k).
pub fn thresholds(cert: &Certificate) -> Vec<Threshold> {
    let Some(v) = cert.verdicts.verdict("T6") else {
        return Vec::new();
    };
    let single_k = (cert.hyper.k.len() == 1).then(|| cert.hyper.k[0]);
    v.hypotheses
        .iter()
        .filter_map(|c: &Check| {
            let k = if c.name == "per_sample" {
                single_k
            } else {
                c.name.strip_prefix("per_sample_k")?.parse().ok()
            };
            let beta = c.rhs?.value;
            Some(Threshold {
                k,
                beta,
                status: c.status,
            })
        })
        .collect()
}

/// The figure, or `None` when T6 was not computed or there are no λ_i.
pub fn figure(cert: &Certificate, lambdas: &[f64]) -> Result<Option<Figure>> {
    let th = thresholds(cert);
    if th.is_empty() || lambdas.is_empty() {
        return Ok(None);
    }
    let n = lambdas.len();
    // Sort by λ_i, sharpest first (non-finite values last); ties by sample index.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| {
        let (la, lb) = (lambdas[a], lambdas[b]);
        lb.is_finite()
            .cmp(&la.is_finite())
            .then(lb.total_cmp(&la))
            .then(a.cmp(&b))
    });
    let non_finite = lambdas.iter().filter(|l| !l.is_finite()).count();
    let non_positive = lambdas
        .iter()
        .filter(|l| l.is_finite() && **l <= 0.0)
        .count();
    let drawable: Vec<(f64, f64)> = order
        .iter()
        .enumerate()
        .filter(|(_, i)| lambdas[**i].is_finite() && lambdas[**i] > 0.0)
        .map(|(rank, i)| ((rank + 1) as f64, lambdas[*i].log10()))
        .collect();
    let finite_betas: Vec<&Threshold> = th
        .iter()
        .filter(|t| t.beta.is_finite() && t.beta > 0.0)
        .collect();
    let mut range_values: Vec<f64> = drawable.iter().map(|p| 10f64.powf(p.1)).collect();
    range_values.extend(finite_betas.iter().map(|t| t.beta));
    let Some(y_axis) = LogAxis::covering(&range_values, 0.15) else {
        return Ok(None);
    };
    let (y0, y1) = (y_axis.start(), y_axis.end());
    let x0 = 0.5;
    let x1 = n as f64 + 0.5;
    let h = &cert.hyper;
    let sharpest = order.first().copied().filter(|i| lambdas[*i].is_finite());

    let mut legend = vec![(
        Glyph::Line(BLUE, 2),
        format!(
            "λ_i = λ_max(J_iᵀJ_i) = ‖J_θ(x_i)‖₂² of the {n} training samples, sorted from the \
             sharpest (exact, relative rounding ≤ the per-sample tolerance)"
        ),
    )];
    if let Some(i) = sharpest {
        legend.push((
            Glyph::Ring(RED),
            format!(
                "max_i λ_i = {} at sample {i}: the left side of every per_sample check",
                num(lambdas[i])
            ),
        ));
    }
    let mut lines = Vec::new();
    for (j, t) in th.iter().enumerate() {
        let colour = SERIES[j % SERIES.len()];
        let (sym, kk) = match t.k {
            Some(k) => (format!("β{}", subscript(k)), format!("k = {k}")),
            None => ("β_k".to_string(), "every k".to_string()),
        };
        let ratio = sharpest.map_or(String::new(), |i| {
            format!("; max_i λ_i/{sym} = {}", num(lambdas[i] / t.beta))
        });
        legend.push((
            Glyph::Dashed(colour, 2),
            format!(
                "{sym} = (B/η)(1 + π^(−1/{})) = {} ({kk}){ratio} — per_sample check {}",
                t.k.map_or("k".to_string(), |k| k.to_string()),
                num(t.beta),
                status_name(t.status)
            ),
        ));
        if t.beta.is_finite() && t.beta > 0.0 {
            lines.push((t.beta.log10(), colour));
        }
    }
    let mut caption = String::from(
        "T6(e): k-th moment stability of SGD at (η, B) implies λ_i ≤ β_k for every sample i \
         (necessary, not sufficient; β_k is evaluated at the user's η). The check compares \
         max_i λ_i with each β_k: a curve reaching a dashed line refutes k-th moment stability. \
         Logarithmic y axis.",
    );
    if let Some(v) = cert.verdicts.verdict("T6") {
        caption.push_str(&borrowed_stability_sentence(v));
    }
    caption.push_str(&skipped_sentence(
        non_positive,
        "sample with λ_i = 0",
        "0 has no place on a logarithmic axis",
    ));
    caption.push_str(&skipped_sentence(non_finite, "non-finite λ_i", "NaN or ±∞"));
    caption.push_str(&skipped_sentence(
        th.len() - finite_betas.len(),
        "non-finite threshold",
        "β_k not a positive finite number",
    ));
    if drawable.len() > MAX_POINTS {
        caption.push_str(&format!(
            " The curve is drawn through {MAX_POINTS} evenly spaced ranks of {}.",
            drawable.len()
        ));
    }
    let frame = Frame {
        title: format!(
            "T6(e) per-sample curvature against β_k — η = {}, B = {}, n = {}",
            shortest(h.eta),
            h.batch,
            h.n
        ),
        subtitle: format!(
            "η in the theory convention (PyTorch MSELoss η_torch = {}); π = P(i ∈ ξ) = {}; {}",
            shortest(h.eta_torch_mse),
            num(h.pi),
            h.sampling.replace('_', " ")
        ),
        legend,
        caption: caption.clone(),
    };
    let curve = subsample(&drawable, MAX_POINTS);
    let svg = render(&frame, 460, |area| {
        let mut chart = ChartBuilder::on(area)
            .margin_left(16)
            .margin_right(24)
            .margin_top(8)
            .x_label_area_size(48)
            .y_label_area_size(78)
            .build_cartesian_2d(x0..x1, y_axis)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .x_desc("training samples ranked by λ_i (1 = sharpest)")
            .y_desc("λ_i = ‖J_θ(x_i)‖₂² (log scale)")
            .x_label_formatter(&|x| {
                if (x - x.round()).abs() < 1e-9 {
                    format!("{}", x.round())
                } else {
                    String::new()
                }
            })
            .x_labels(10)
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 15))
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(225, 225, 225))
            .draw()
            .map_err(draw_err)?;
        for (y, colour) in &lines {
            if *y >= y0 && *y <= y1 {
                chart
                    .draw_series(DashedLineSeries::new(
                        [(x0, *y), (x1, *y)],
                        10,
                        6,
                        colour.stroke_width(2),
                    ))
                    .map_err(draw_err)?;
            }
        }
        chart
            .draw_series(LineSeries::new(curve.clone(), BLUE.stroke_width(2)))
            .map_err(draw_err)?;
        if drawable.len() <= MARKERS_UP_TO {
            chart
                .draw_series(drawable.iter().map(|&p| Circle::new(p, 2, BLUE.filled())))
                .map_err(draw_err)?;
        }
        if let Some(&p) = drawable.first()
            && sharpest.is_some()
        {
            chart
                .draw_series([Circle::new(p, 8, RED.stroke_width(2))])
                .map_err(draw_err)?;
        }
        Ok(())
    })?;
    Ok(Some(Figure {
        theorem: "T6",
        file: FILE,
        title: "T6(e): per-sample curvature λ_i against β_k".into(),
        caption,
        svg,
    }))
}

/// At most `max` points, evenly spaced, always keeping the first and the last.
fn subsample(points: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    if points.len() <= max || max < 2 {
        return points.to_vec();
    }
    let last = points.len() - 1;
    let mut out: Vec<(f64, f64)> = (0..max)
        .map(|j| points[(j * last).div_ceil(max - 1).min(last)])
        .collect();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::test_support::certificate_with;
    use flatcert_bounds::{Value, Verdict};

    fn t6(betas: &[(u32, f64)], lmax: f64) -> Verdict {
        let mut v = Verdict::new("T6", "k-th moments");
        for &(k, b) in betas {
            v.hypotheses.push(Check::le(
                format!("per_sample_k{k}"),
                "max_i λ_i ≤ β_k",
                Value::exact(lmax, 0.0),
                Value::exact(b, 0.0),
            ));
        }
        v
    }

    #[test]
    fn draws_the_thresholds_the_checks_compared() {
        let cert = certificate_with(vec![t6(&[(2, 400.0), (4, 240.0)], 51.3)], &[2, 4], None);
        let th = thresholds(&cert);
        assert_eq!(th.len(), 2);
        assert_eq!((th[0].k, th[0].beta), (Some(2), 400.0));
        let lambdas = [3.0, 51.3, 0.0, f64::NAN, 12.0];
        let f = figure(&cert, &lambdas).unwrap().unwrap();
        crate::render::svg::xml::well_formed(&f.svg).unwrap();
        assert!(f.svg.contains("β₂ = (B/η)"), "legend names β₂");
        assert!(f.svg.contains("at sample 1"), "the sharpest sample");
        assert!(f.caption.contains("1 sample with λ_i = 0 was not drawn"));
        assert!(f.caption.contains("1 non-finite λ_i was not drawn"));
    }

    #[test]
    fn no_figure_without_t6_or_samples() {
        let cert = certificate_with(vec![], &[2], None);
        assert!(figure(&cert, &[1.0]).unwrap().is_none());
        let cert = certificate_with(vec![t6(&[(2, 4.0)], 1.0)], &[2], None);
        assert!(figure(&cert, &[]).unwrap().is_none());
        // Nothing drawable at all (every λ_i = 0 and β non-finite) is still no figure, not an error.
        let mut v = t6(&[(2, 4.0)], 0.0);
        v.hypotheses[0].rhs = Some(Value::exact(f64::INFINITY, 0.0));
        let cert = certificate_with(vec![v], &[2], None);
        assert!(figure(&cert, &[0.0, 0.0]).unwrap().is_none());
    }

    #[test]
    fn large_n_is_subsampled() {
        let pts: Vec<(f64, f64)> = (0..10_000).map(|i| (i as f64, 0.0)).collect();
        let s = subsample(&pts, 100);
        assert!(s.len() <= 100);
        assert_eq!(s.first(), pts.first());
        assert_eq!(s.last(), pts.last());
    }
}
