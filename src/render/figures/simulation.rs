//! The figure of `flatcert simulate --plot`: panels of curves against the step t with a logarithmic y
//! axis (values are passed as `log10`, ticks show `10^v`). Solid lines are simulations,
//! dashed lines references (predictions, thresholds).

use plotters::prelude::*;

use crate::error::Result;
use crate::render::svg::{CYCLE, draw_err};

/// One curve: `(t, log10 value)` points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// Points `(t, log10 y)`; non-finite points are dropped.
    pub points: Vec<(f64, f64)>,
    /// Dashed (a reference) or solid (a simulation).
    pub dashed: bool,
    /// Colour index into the palette's colour cycle (blue, red, green, orange, purple, brown,
    /// black, grey; taken modulo 8).
    pub colour: usize,
}

/// One panel.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    /// Caption.
    pub title: String,
    /// y-axis description (the axis shows `10^v` for the `log10` values v).
    pub y_label: String,
    /// The curves.
    pub series: Vec<Series>,
}

/// Render panels stacked vertically into an SVG string (x axis: step t).
pub fn render_svg(panels: &[Panel], width: u32, panel_height: u32) -> Result<String> {
    let mut svg = String::new();
    {
        let height = panel_height * panels.len().max(1) as u32;
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let areas = root.split_evenly((panels.len().max(1), 1));
        for (area, panel) in areas.iter().zip(panels) {
            draw_panel(area, panel)?;
        }
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    panel: &Panel,
) -> Result<()> {
    let finite = |s: &Series| -> Vec<(f64, f64)> {
        s.points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect()
    };
    let all: Vec<(f64, f64)> = panel.series.iter().flat_map(finite).collect();
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for &(x, y) in &all {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if all.is_empty() {
        (x0, x1, y0, y1) = (0.0, 1.0, -1.0, 1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.05).max(0.25);
    let (y0, y1) = (y0 - pad, y1 + pad);
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 17))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(65)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc("step t")
        .y_desc(panel.y_label.as_str())
        .y_label_formatter(&|v| log10_label(*v))
        .draw()
        .map_err(draw_err)?;
    for s in &panel.series {
        let pts = finite(s);
        if pts.is_empty() {
            continue;
        }
        let colour = CYCLE[s.colour % CYCLE.len()];
        let style = colour.stroke_width(2);
        if s.dashed {
            chart
                .draw_series(DashedLineSeries::new(pts, 7, 5, style))
                .map_err(draw_err)?
                .label(s.label.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                });
        } else {
            chart
                .draw_series(LineSeries::new(pts, style))
                .map_err(draw_err)?
                .label(s.label.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                });
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(draw_err)?;
    Ok(())
}

/// The tick label of log10 value `v` (the data are plotted as log10): `10^v` in `1.0e5` form,
/// built from the exponent so that values beyond f64 (E‖u_t‖⁴ of an unstable run reaches 1e400)
/// are labelled, not printed as `inf`.
fn log10_label(v: f64) -> String {
    if !v.is_finite() {
        return String::new();
    }
    let e = v.floor();
    let m = 10f64.powf(v - e);
    // Rounding of the mantissa to one decimal can give 10.0: carry into the exponent.
    let (m, e) = if format!("{m:.1}") == "10.0" {
        (1.0, e + 1.0)
    } else {
        (m, e)
    };
    format!("{m:.1}e{}", e as i64)
}

#[cfg(test)]
mod label_tests {
    use super::log10_label;

    #[test]
    fn labels_beyond_f64_are_exponents_not_inf() {
        assert_eq!(log10_label(0.0), "1.0e0");
        assert_eq!(log10_label(50.0), "1.0e50");
        assert_eq!(log10_label(400.0), "1.0e400");
        assert_eq!(log10_label(-3.0), "1.0e-3");
        assert_eq!(log10_label(2.0f64.log10() + 7.0), "2.0e7");
        assert_eq!(log10_label(0.99999), "1.0e1");
    }
}
