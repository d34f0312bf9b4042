//! T9 figure: the certified radii of the training points as a survival curve — the fraction of
//! training points certified at every radius ≤ r, against r — with the radius ε of the
//! certificate and the certified fraction at ε (the T9 verdict's primary number, computed
//! directly at ε).
//!
//! Each radius is the lower end of a bisection on [0, 4ε] that keeps "lo is verified" (THEORY
//! T9b): a lower bound of the point's largest certified radius. A radius equal to the cap means
//! "at least the cap".

use plotters::prelude::*;

use super::{Figure, skipped_sentence};
use crate::certify::Certificate;
use crate::error::Result;
use crate::render::num;
use crate::render::svg::{BLUE, Frame, GREY, Glyph, RED, draw_err, render, tick};

/// File name in the report directory.
pub const FILE: &str = "t9_radii.svg";

/// The survival curve of `radii` (finite, ≥ 0): the step polyline of r ↦ #{i : radius_i ≥ r}/n
/// from r = 0 to `cap`, with n the number of radii.
fn survival(radii: &[f64], cap: f64) -> Vec<(f64, f64)> {
    let n = radii.len() as f64;
    let mut sorted = radii.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut pts = vec![(0.0, 1.0)];
    let mut below = 0usize; // radii strictly below the current r
    let mut j = 0;
    while j < sorted.len() {
        let r = sorted[j];
        let mut same = 0;
        while j + same < sorted.len() && sorted[j + same] == r {
            same += 1;
        }
        let before = (sorted.len() - below) as f64 / n;
        let after = (sorted.len() - below - same) as f64 / n;
        if r > 0.0 && r <= cap {
            pts.push((r, before));
        }
        if r < cap {
            pts.push((r, after));
        }
        below += same;
        j += same;
    }
    let last = pts.last().map_or(1.0, |p| p.1);
    pts.push((cap, last));
    pts
}

/// The figure, or `None` when T9 was not computed or no radii were searched.
pub fn figure(
    cert: &Certificate,
    radii: Option<&[f64]>,
    cap: Option<f64>,
) -> Result<Option<Figure>> {
    let (Some(v), Some(radii), Some(eps)) =
        (cert.verdicts.verdict("T9"), radii, cert.hyper.epsilon)
    else {
        return Ok(None);
    };
    if radii.is_empty() || !(eps.is_finite() && eps > 0.0) {
        return Ok(None);
    }
    let cap = cap
        .filter(|c| c.is_finite() && *c > 0.0)
        .unwrap_or(4.0 * eps);
    let finite: Vec<f64> = radii
        .iter()
        .copied()
        .filter(|r| r.is_finite() && *r >= 0.0)
        .collect();
    let skipped = radii.len() - finite.len();
    let frac = v
        .conclusion("certified_fraction")
        .map(|c| c.value.value)
        .filter(|f| f.is_finite());
    let task = match cert.hyper.tau {
        Some(t) if v.conclusion("markov_regression").is_some() => {
            format!("regression: the output moves by at most τ = {t}")
        }
        _ => "classification: the predicted class cannot change".into(),
    };
    let n = radii.len();
    let curve = survival(&finite, cap);
    let at_eps = finite.iter().filter(|r| **r >= eps).count() as f64 / finite.len().max(1) as f64;
    let at_cap = finite.iter().filter(|r| **r >= cap).count();
    let mut legend = vec![(
        Glyph::Line(BLUE, 2),
        format!(
            "fraction of the {} training points whose certified radius is ≥ r ({task} on the \
             ℓ2 ball of radius r)",
            finite.len()
        ),
    )];
    legend.push((
        Glyph::Dashed(GREY, 2),
        format!("ε = {eps}: the radius of the certificate (T8–T10)"),
    ));
    if let Some(f) = frac {
        legend.push((
            Glyph::Dot(RED),
            format!(
                "certified fraction at ε = {} (T9's primary number, checked directly at ε)",
                num(f)
            ),
        ));
    }
    let mut caption = format!(
        "T9: a point is certified at radius r when its certified Lipschitz bound L_i(r) (T10) and \
         its rigorous margin (or τ) guarantee the output on the whole ball. Radii are lower bounds \
         from a bisection on [0, {}] ({} steps); {at_cap} of {n} points reach the cap, i.e. are \
         certified at least that far. The curve gives {} at ε.",
        num(cap),
        cert.hyper.radius_steps,
        num(at_eps)
    );
    if let Some(f) = frac
        && (f - at_eps).abs() > 1e-12
    {
        caption.push_str(&format!(
            " The direct check at ε gives {} (the bisection's radii are lower bounds and the \
             certificate need not be monotone in r).",
            num(f)
        ));
    }
    caption.push_str(&skipped_sentence(
        skipped,
        "radius",
        "not a finite number ≥ 0",
    ));
    let h = &cert.hyper;
    let frame = Frame {
        title: format!(
            "T9 certified radii over the training points — ε = {eps}, n = {}",
            h.n
        ),
        subtitle: format!(
            "ℓ2 ball; network {}; η = {}, B = {} (the radii do not depend on η or B)",
            cert.inputs.activation, h.eta, h.batch
        ),
        legend,
        caption: caption.clone(),
    };
    let x1 = cap * 1.04;
    let svg = render(&frame, 440, |area| {
        let mut chart = ChartBuilder::on(area)
            .margin_left(16)
            .margin_right(24)
            .margin_top(8)
            .x_label_area_size(48)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..x1, 0f64..1.04)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .x_desc("radius r (ℓ2)")
            .y_desc("fraction certified at radius ≥ r")
            .x_label_formatter(&|x| tick(*x))
            .y_label_formatter(&|y| tick(*y))
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 15))
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(225, 225, 225))
            .draw()
            .map_err(draw_err)?;
        chart
            .draw_series(DashedLineSeries::new(
                [(eps, 0.0), (eps, 1.04)],
                8,
                6,
                GREY.stroke_width(2),
            ))
            .map_err(draw_err)?;
        chart
            .draw_series(LineSeries::new(curve.clone(), BLUE.stroke_width(2)))
            .map_err(draw_err)?;
        if let Some(f) = frac {
            chart
                .draw_series([Circle::new((eps, f), 6, RED.filled())])
                .map_err(draw_err)?;
        }
        Ok(())
    })?;
    Ok(Some(Figure {
        theorem: "T9",
        file: FILE,
        title: "T9: fraction of training points certified at radius ≥ r".into(),
        caption,
        svg,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::test_support::certificate_with;
    use flatcert_bounds::{Value, Verdict};

    #[test]
    fn survival_steps_down_at_each_radius() {
        let s = survival(&[0.0, 0.5, 0.5, 2.0], 2.0);
        assert_eq!(
            s,
            vec![
                (0.0, 1.0),
                (0.0, 0.75),
                (0.5, 0.75),
                (0.5, 0.25),
                (2.0, 0.25),
                (2.0, 0.25)
            ]
        );
    }

    fn t9(frac: f64) -> Verdict {
        let mut v = Verdict::new("T9", "Adversarial robustness");
        v.conclusions.push(flatcert_bounds::Conclusion::new(
            "certified_fraction",
            "fraction certified at ε",
            Value::exact(frac, 0.0),
        ));
        v
    }

    #[test]
    fn draws_the_curve_eps_and_the_fraction() {
        let cert = certificate_with(vec![t9(0.5)], &[2], Some(0.1));
        let radii = [0.0, 0.05, 0.1, 0.4, f64::NAN];
        let f = figure(&cert, Some(&radii), Some(0.4)).unwrap().unwrap();
        crate::render::svg::xml::well_formed(&f.svg).unwrap();
        assert!(f.svg.contains("ε = 0.1"));
        assert!(f.caption.contains("1 radius was not drawn"));
        assert!(f.caption.contains("1 of 5 points reach the cap"));
        assert!(f.caption.contains("The curve gives 0.50000 at ε"));
        assert!(figure(&cert, None, None).unwrap().is_none());
        let no_eps = certificate_with(vec![t9(0.5)], &[2], None);
        assert!(figure(&no_eps, Some(&radii), None).unwrap().is_none());
    }
}
