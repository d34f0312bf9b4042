//! The stability figure of `flatcert stability --plot`.
//!
//! [`stability_svg`] draws the stable region of SGD in the (B, η) plane for `flatcert stability`
//! (THEORY.md T4–T6): the certified bracket of the mean-square critical learning rate η*(B)
//! (T5f) over the batch sizes on a log₂ axis, the region below its certified lower end shaded as
//! "certified stable", the B-independent GD line η_GD* = 2/λ_max (T4, necessary for every B),
//! optionally the k-th moment critical rate η*_k (T6, tiny problems only), and the user's η at
//! each batch size (and, when known, the training (B, η)) coloured by its verdict.
//!
//! Every learning rate is in the **theory convention** (loss ½‖f(x) − y‖² summed over outputs,
//! THEORY.md §0); the axis label says so and gives the PyTorch `MSELoss` conversion.

use std::ops::Range;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, Ranged, ValueFormatter};
use plotters::prelude::*;

use crate::error::{Error, Result};
use crate::measure::stability::Verdict;
use crate::render::svg::{
    BLUE, GREEN, GREY, GRID, Glyph, LIGHT_GREEN, ORANGE, PURPLE, RED, draw_err, draw_glyph,
    draw_title, fmt_sig, four_significant, subscript, wrap,
};

/// One batch size of the stability figure.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotRow {
    /// Batch size B.
    pub batch: usize,
    /// Certified lower end of η*(B); `None` when η* = +∞ (G = 0).
    pub eta_lower: Option<f64>,
    /// Upper end of η*(B); `None` when unbounded.
    pub eta_upper: Option<f64>,
    /// η*_k(B) for the plotted k, where computed (exact 𝒬_k, tiny r only).
    pub eta_k: Option<f64>,
    /// Verdict of the user's η at this B (None when no η was given).
    pub verdict: Option<Verdict>,
}

/// The highlighted (B, η) point, e.g. the hyper-parameters the checkpoint was trained with.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotMarker {
    /// Batch size.
    pub batch: usize,
    /// Learning rate (theory convention).
    pub eta: f64,
    /// Its verdict.
    pub verdict: Verdict,
    /// Legend text (e.g. "trained (B = 16, η = 0.2): certified stable, margin +12 %").
    pub label: String,
}

/// Everything [`stability_svg`] draws.
#[derive(Debug, Clone, PartialEq)]
pub struct StabilityPlot {
    /// Title line.
    pub title: String,
    /// Second title line (n, C, sampling scheme, …).
    pub subtitle: String,
    /// One entry per batch size (any order; drawn sorted by B).
    pub rows: Vec<PlotRow>,
    /// Bracket of η_GD* = 2/λ_max(G) (lower, upper), if finite.
    pub gd: Option<(f64, f64)>,
    /// k of `PlotRow::eta_k` (for the legend).
    pub k: usize,
    /// The user's learning rate η (theory convention), drawn at every batch size.
    pub eta: Option<f64>,
    /// The highlighted point.
    pub marker: Option<PlotMarker>,
    /// Number of outputs C (for the PyTorch conversion in the axis label).
    pub outputs: usize,
}

/// Figure size in pixels.
const SIZE: (u32, u32) = (1120, 640);

/// The colours of this figure, from the one palette: verdicts (green / red / orange), η*(B)
/// (blue), η_GD* (grey), η*_k (purple) and the certified-stable region (light green).
const STABLE: RGBColor = GREEN;
const UNSTABLE: RGBColor = RED;
const INCONCLUSIVE: RGBColor = ORANGE;
const ETA_STAR: RGBColor = BLUE;
const GD: RGBColor = GREY;
const K_MOMENT: RGBColor = PURPLE;
const FILL: RGBColor = LIGHT_GREEN;

/// The colour of a verdict.
fn verdict_color(v: Verdict) -> RGBColor {
    match v {
        Verdict::CertifiedStable => STABLE,
        Verdict::CertifiedUnstable => UNSTABLE,
        Verdict::Inconclusive => INCONCLUSIVE,
    }
}

/// The legend glyph of a verdict: the shape of its chart marker ([`verdict_marker`]).
fn verdict_glyph(v: Verdict) -> Glyph {
    let c = verdict_color(v);
    match v {
        Verdict::CertifiedStable => Glyph::Dot(c),
        Verdict::Inconclusive => Glyph::Triangle(c),
        Verdict::CertifiedUnstable => Glyph::Cross(c),
    }
}

/// Tick label of a log₂ batch coordinate: the batch size, as an integer when it is one.
fn batch_label(x: f64) -> String {
    let b = x.exp2();
    if (b - b.round()).abs() < 1e-6 * b.max(1.0) {
        format!("{}", b.round())
    } else {
        format!("{b:.3}")
    }
}

/// The batch axis: log₂ B, with grid lines and labels exactly at the plotted batch sizes.
struct BatchAxis {
    range: Range<f64>,
    keys: Vec<f64>,
}

impl Ranged for BatchAxis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let (a, b) = (self.range.start, self.range.end);
        let t = (value - a) / (b - a);
        limit.0 + (t * (limit.1 - limit.0) as f64).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.keys.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.range.clone()
    }
}

impl ValueFormatter<f64> for BatchAxis {
    fn format(value: &f64) -> String {
        batch_label(*value)
    }
}

/// Tick label of the η axis: up to 4 significant digits, trailing zeros removed.
fn eta_tick(y: f64) -> String {
    if y == 0.0 {
        return "0".into();
    }
    let mag = y.abs().log10().floor() as i32;
    if (-4..5).contains(&mag) {
        four_significant(y, mag)
    } else {
        format!("{y:.2e}")
    }
}

/// Render the stability figure as an SVG document (THEORY.md T4–T6; module docs). Fails only on
/// an empty row list or a non-finite or non-positive value (never draws a fake number).
pub fn stability_svg(plot: &StabilityPlot) -> Result<String> {
    let mut rows = plot.rows.clone();
    rows.sort_by_key(|r| r.batch);
    if rows.is_empty() {
        return Err(Error::invalid_argument("--plot", "no batch sizes to plot"));
    }
    let finite_pos = |v: f64| v.is_finite() && v > 0.0;
    let mut values: Vec<f64> = Vec::new();
    for r in &rows {
        if r.batch == 0 {
            return Err(Error::invalid_argument("--plot", "batch size 0"));
        }
        values.extend(r.eta_lower.iter().chain(&r.eta_upper).chain(&r.eta_k));
    }
    values.extend(plot.gd.iter().flat_map(|(a, b)| [*a, *b]));
    values.extend(plot.eta.iter().chain(plot.marker.as_ref().map(|m| &m.eta)));
    if let Some(bad) = values.iter().find(|v| !finite_pos(**v)) {
        return Err(Error::Internal(format!(
            "plot: learning rate {bad} is not a positive finite number"
        )));
    }
    let y_top = values.iter().copied().fold(0.0f64, f64::max);
    let y_max = if y_top > 0.0 { y_top * 1.12 } else { 1.0 };
    let log_b = |b: usize| (b as f64).log2();
    let mut xs: Vec<f64> = rows.iter().map(|r| log_b(r.batch)).collect();
    if let Some(m) = &plot.marker {
        xs.push(log_b(m.batch));
    }
    let (x_lo, x_hi) = xs
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    let pad = ((x_hi - x_lo) * 0.05).max(0.3);
    let (x0, x1) = (x_lo - pad, x_hi + pad);
    let mut key_points: Vec<f64> = rows.iter().map(|r| log_b(r.batch)).collect();
    if let Some(m) = &plot.marker {
        key_points.push(log_b(m.batch));
        key_points.sort_by(f64::total_cmp);
    }
    key_points.dedup();
    // Thin dense tick sets (many batch sizes) to at most ~12 labels.
    if key_points.len() > 12 {
        let step = key_points.len().div_ceil(12);
        let last = key_points.last().copied();
        key_points = key_points.into_iter().step_by(step).collect();
        if let Some(l) = last
            && key_points.last() != Some(&l)
        {
            key_points.push(l);
        }
    }

    let mut legend: Vec<(Glyph, String)> = Vec::new();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let (head, body) = root.split_vertically(64);
        draw_title(&head, &plot.title, &plot.subtitle, (21, 15))?;
        let (chart_area, legend_area) = body.split_horizontally(SIZE.0 - LEGEND_WIDTH);
        let mut chart = ChartBuilder::on(&chart_area)
            .margin_left(12)
            .margin_right(16)
            .margin_bottom(8)
            .x_label_area_size(56)
            .y_label_area_size(80)
            .build_cartesian_2d(
                BatchAxis {
                    range: x0..x1,
                    keys: key_points,
                },
                0f64..y_max,
            )
            .map_err(draw_err)?;
        let y_desc = format!(
            "learning rate η (theory convention; PyTorch MSELoss η_torch = {}·η)",
            plot.outputs as f64 / 2.0
        );
        chart
            .configure_mesh()
            .x_desc("batch size B (log scale)")
            .y_desc(y_desc)
            .y_label_formatter(&|y| eta_tick(*y))
            .y_labels(8)
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 16))
            .light_line_style(WHITE)
            .bold_line_style(GRID)
            .draw()
            .map_err(draw_err)?;

        // Certified-stable region: below the certified lower end of η*(B).
        let lower: Vec<(f64, f64)> = rows
            .iter()
            .map(|r| (log_b(r.batch), r.eta_lower.unwrap_or(y_max)))
            .collect();
        let mut poly = lower.clone();
        if poly.len() == 1 {
            // One batch size: a narrow column so the region is visible.
            let (x, y) = poly[0];
            poly = vec![(x - 0.12, y), (x + 0.12, y)];
        }
        let (first_x, last_x) = (poly[0].0, poly[poly.len() - 1].0);
        poly.push((last_x, 0.0));
        poly.push((first_x, 0.0));
        chart
            .draw_series(std::iter::once(Polygon::new(poly, FILL.mix(0.6))))
            .map_err(draw_err)?;
        legend.push((
            Glyph::Fill(FILL),
            "certified mean-square stable: η ≤ certified lower end of η*(B)".into(),
        ));

        if let Some((gd_lo, gd_hi)) = plot.gd {
            chart
                .draw_series(DashedLineSeries::new(
                    [(x0, gd_lo), (x1, gd_lo)],
                    10,
                    6,
                    GD.stroke_width(2),
                ))
                .map_err(draw_err)?;
            legend.push((
                Glyph::Dashed(GD, 2),
                format!(
                    "η_GD* = 2/λ_max(G) ∈ [{}, {}] (T4; the same for every B; necessary)",
                    fmt_sig(gd_lo),
                    fmt_sig(gd_hi)
                ),
            ));
        }

        let finite_lower: Vec<(f64, f64)> = rows
            .iter()
            .filter_map(|r| r.eta_lower.map(|e| (log_b(r.batch), e)))
            .collect();
        chart
            .draw_series(LineSeries::new(
                finite_lower.clone(),
                ETA_STAR.stroke_width(3),
            ))
            .map_err(draw_err)?;
        chart
            .draw_series(
                finite_lower
                    .iter()
                    .map(|&p| Circle::new(p, 4, ETA_STAR.filled())),
            )
            .map_err(draw_err)?;
        legend.push((
            Glyph::Line(ETA_STAR, 3),
            "η*(B) = 1/λ_max(𝒟̃), mean-square critical rate (T5f): certified lower end".into(),
        ));
        let finite_upper: Vec<(f64, f64)> = rows
            .iter()
            .filter_map(|r| r.eta_upper.map(|e| (log_b(r.batch), e)))
            .collect();
        if !finite_upper.is_empty() {
            chart
                .draw_series(DashedLineSeries::new(
                    finite_upper,
                    5,
                    4,
                    ETA_STAR.mix(0.8).stroke_width(1),
                ))
                .map_err(draw_err)?;
            legend.push((
                Glyph::Dashed(ETA_STAR, 1),
                "upper end of the η*(B) bracket; above it: certified unstable".into(),
            ));
        }

        let eta_k: Vec<(f64, f64)> = rows
            .iter()
            .filter_map(|r| r.eta_k.map(|e| (log_b(r.batch), e)))
            .collect();
        if !eta_k.is_empty() {
            let k = plot.k;
            chart
                .draw_series(LineSeries::new(eta_k.clone(), K_MOMENT.stroke_width(2)))
                .map_err(draw_err)?;
            chart
                .draw_series(
                    eta_k
                        .iter()
                        .map(|&p| TriangleMarker::new(p, 5, K_MOMENT.filled())),
                )
                .map_err(draw_err)?;
            legend.push((
                Glyph::Line(K_MOMENT, 2),
                format!(
                    "η*{}(B): {k}-th moment critical rate (T6, exact 𝒬{}; estimate)",
                    subscript(k),
                    subscript(k)
                ),
            ));
        }

        if let Some(eta) = plot.eta {
            chart
                .draw_series(DashedLineSeries::new(
                    [(x0, eta), (x1, eta)],
                    2,
                    4,
                    BLACK.mix(0.7).stroke_width(1),
                ))
                .map_err(draw_err)?;
            legend.push((
                Glyph::Dashed(GREY, 1),
                format!("your η = {eta}; verdict at each B:"),
            ));
            for v in [
                Verdict::CertifiedStable,
                Verdict::Inconclusive,
                Verdict::CertifiedUnstable,
            ] {
                let pts: Vec<(f64, f64)> = rows
                    .iter()
                    .filter(|r| r.verdict == Some(v))
                    .map(|r| (log_b(r.batch), eta))
                    .collect();
                if pts.is_empty() {
                    continue;
                }
                chart
                    .draw_series(pts.iter().map(|&p| verdict_marker(p, v)))
                    .map_err(draw_err)?;
                legend.push((verdict_glyph(v), v.name().to_string()));
            }
        }

        if let Some(m) = &plot.marker {
            let p = (log_b(m.batch), m.eta);
            let c = verdict_color(m.verdict);
            chart
                .draw_series([EmptyElement::at(p) + Circle::new((0, 0), 11, c.stroke_width(3))])
                .map_err(draw_err)?;
            chart
                .draw_series([EmptyElement::at(p) + Cross::new((0, 0), 6, c.stroke_width(2))])
                .map_err(draw_err)?;
            legend.push((Glyph::Target(c), m.label.clone()));
        }
        draw_legend(&legend_area, &legend)?;
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

/// Width of the legend panel on the right.
const LEGEND_WIDTH: u32 = 330;

/// Draw the legend panel: one glyph and wrapped text per entry.
fn draw_legend(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    entries: &[(Glyph, String)],
) -> Result<()> {
    let font = ("sans-serif", 14).into_font();
    let line_h = 18;
    let mut y = 28;
    area.draw(&Text::new(
        "Legend",
        (8, y - 20),
        ("sans-serif", 15).into_font().style(FontStyle::Bold),
    ))
    .map_err(draw_err)?;
    for (glyph, text) in entries {
        let gy = y + 7;
        draw_glyph(area, *glyph, (8, 34), gy)?;
        for line in wrap(text, 38) {
            area.draw(&Text::new(line, (42, y), font.clone()))
                .map_err(draw_err)?;
            y += line_h;
        }
        y += 8;
    }
    Ok(())
}

/// The marker of a verdict at a chart coordinate: filled circle (stable), diamond-ish triangle
/// (inconclusive), cross (unstable).
fn verdict_marker<DB: DrawingBackend>(
    p: (f64, f64),
    v: Verdict,
) -> DynElement<'static, DB, (f64, f64)> {
    let c = verdict_color(v);
    match v {
        Verdict::CertifiedStable => Circle::new(p, 6, c.filled()).into_dyn(),
        Verdict::Inconclusive => TriangleMarker::new(p, 7, c.filled()).into_dyn(),
        Verdict::CertifiedUnstable => Cross::new(p, 6, c.stroke_width(3)).into_dyn(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StabilityPlot {
        StabilityPlot {
            title: "SGD stability region".into(),
            subtitle: "n = 3".into(),
            rows: vec![
                PlotRow {
                    batch: 1,
                    eta_lower: Some(0.24),
                    eta_upper: Some(0.2401),
                    eta_k: Some(0.22),
                    verdict: Some(Verdict::CertifiedStable),
                },
                PlotRow {
                    batch: 3,
                    eta_lower: Some(0.43),
                    eta_upper: Some(0.4317),
                    eta_k: None,
                    verdict: Some(Verdict::CertifiedStable),
                },
            ],
            gd: Some((0.4316, 0.4317)),
            k: 4,
            eta: Some(0.22),
            marker: Some(PlotMarker {
                batch: 2,
                eta: 0.22,
                verdict: Verdict::Inconclusive,
                label: "trained".into(),
            }),
            outputs: 1,
        }
    }

    #[test]
    fn renders_an_svg_document() {
        let svg = stability_svg(&sample()).expect("svg");
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("batch size B"));
    }

    #[test]
    fn refuses_non_finite_values_and_empty_rows() {
        let mut p = sample();
        p.eta = Some(f64::NAN);
        assert!(stability_svg(&p).is_err());
        p.rows.clear();
        assert!(stability_svg(&p).is_err());
    }

    #[test]
    fn labels_batch_sizes_as_integers() {
        assert_eq!(batch_label(4.0), "16");
        assert_eq!(batch_label(3f64.log2()), "3");
        assert_eq!(fmt_sig(0.2400821025), "0.240082");
    }
}
