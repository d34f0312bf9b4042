//! SVG figures of the Markdown report (`flatcert certify --report DIR`, `docs/report.md`), drawn
//! with plotters' SVG backend like [`crate::plot`]. One module per figure:
//!
//! | module | figure |
//! |---|---|
//! | [`curvature`] | T6(e): the per-sample curvature λ_i (sorted) against the thresholds β_k |
//! | [`sobolev`] | T7: each measured Sobolev quantity against its bound (log axis, ratio printed) |
//! | [`radii`] | T9: the fraction of training points certified at radius ≥ r, with ε and the certified fraction |
//! | [`xml`] | a well-formedness check every figure passes before it is written |
//!
//! Every figure has a title, axis labels, a legend band and a caption band; values that cannot be
//! drawn (NaN, ±∞, or ≤ 0 on a logarithmic axis) are skipped and counted in the caption. Output is
//! deterministic: the same inputs give the same bytes.

pub mod curvature;
pub mod radii;
pub mod sobolev;
pub mod xml;

use std::ops::Range;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, Ranged, ValueFormatter};
use plotters::prelude::*;

use crate::error::{Error, Result};

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

/// Figure width in pixels.
pub(crate) const WIDTH: u32 = 1000;

/// Palette: data (blue), bounds / violations (red), certified (green), inconclusive (orange),
/// extra series (purple, brown, grey).
pub(crate) const BLUE: RGBColor = RGBColor(31, 100, 180);
pub(crate) const RED: RGBColor = RGBColor(200, 30, 30);
pub(crate) const GREEN: RGBColor = RGBColor(27, 120, 55);
pub(crate) const ORANGE: RGBColor = RGBColor(230, 140, 0);
pub(crate) const PURPLE: RGBColor = RGBColor(130, 50, 160);
pub(crate) const BROWN: RGBColor = RGBColor(140, 86, 75);
pub(crate) const GREY: RGBColor = RGBColor(90, 90, 90);

/// Colours of successive series (e.g. one threshold per k).
pub(crate) const SERIES: [RGBColor; 5] = [GREEN, PURPLE, ORANGE, BROWN, GREY];

/// A legend glyph.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Glyph {
    /// A solid line of the given width.
    Line(RGBColor, u32),
    /// A dashed line of the given width.
    Dashed(RGBColor, u32),
    /// A filled circle.
    Dot(RGBColor),
    /// A filled triangle.
    Triangle(RGBColor),
    /// A ring.
    Ring(RGBColor),
}

/// A plotters failure (a bug: the SVG backend writes to a string) as an internal error.
pub(crate) fn plot_err<E: std::fmt::Debug>(e: E) -> Error {
    Error::Internal(format!("report figure: {e:?}"))
}

/// Wrap `text` into lines of at most `width` characters (at spaces).
pub(crate) fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cur = String::new();
    for word in text.split(' ') {
        if !cur.is_empty() && cur.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    lines
}

/// A tick label: up to 4 significant digits with trailing zeros removed, or `1e-5` style outside
/// [1e-3, 1e5).
pub(crate) fn tick(x: f64) -> String {
    if x == 0.0 {
        return "0".into();
    }
    if !x.is_finite() {
        return crate::report::num(x);
    }
    let mag = x.abs().log10().floor() as i32;
    if (-3..5).contains(&mag) {
        crate::plot::four_significant(x, mag)
    } else {
        let s = format!("{x:.1e}");
        s.replace(".0e", "e")
    }
}

/// A logarithmic axis whose coordinate is log₁₀ of the value: key points at the powers of ten
/// (and at 2·10^j, 5·10^j when the range spans at most two decades), labelled with the value.
pub(crate) struct LogAxis {
    range: Range<f64>,
}

impl LogAxis {
    /// The axis covering the positive finite `values` (log₁₀ applied here), padded by `pad`
    /// decades on each side and at least one decade wide. `None` when no value is drawable.
    pub(crate) fn covering(values: &[f64], pad: f64) -> Option<Self> {
        let logs: Vec<f64> = values
            .iter()
            .filter(|v| v.is_finite() && **v > 0.0)
            .map(|v| v.log10())
            .collect();
        let lo = logs.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if !lo.is_finite() || !hi.is_finite() {
            return None;
        }
        let (mut a, mut b) = (lo - pad, hi + pad);
        if b - a < 1.0 {
            let mid = 0.5 * (a + b);
            a = mid - 0.5;
            b = mid + 0.5;
        }
        Some(Self { range: a..b })
    }

    /// Extend the upper end by `decades`.
    pub(crate) fn extend_right(mut self, decades: f64) -> Self {
        self.range.end += decades;
        self
    }

    /// The lower end (log₁₀).
    pub(crate) fn start(&self) -> f64 {
        self.range.start
    }

    /// The upper end (log₁₀).
    pub(crate) fn end(&self) -> f64 {
        self.range.end
    }
}

impl Ranged for LogAxis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let (a, b) = (self.range.start, self.range.end);
        let t = (value - a) / (b - a);
        limit.0 + (t * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        // Only bold (labelled) key points; no light grid lines.
        if hint.weight().allow_light_points() {
            return Vec::new();
        }
        let (a, b) = (self.range.start, self.range.end);
        let mut keys = Vec::new();
        let fine = b - a <= 2.5;
        let mut e = a.floor() as i32;
        while f64::from(e) <= b {
            let base = f64::from(e);
            let steps: &[f64] = if fine { &[1.0, 2.0, 5.0] } else { &[1.0] };
            for &m in steps {
                let k = base + m.log10();
                if k >= a && k <= b {
                    keys.push(k);
                }
            }
            e += 1;
        }
        // Too many decades: keep every second or third power of ten.
        let max = hint.max_num_points().max(2);
        if keys.len() > max {
            let step = keys.len().div_ceil(max);
            keys = keys.into_iter().step_by(step).collect();
        }
        keys
    }

    fn range(&self) -> Range<f64> {
        self.range.clone()
    }
}

impl ValueFormatter<f64> for LogAxis {
    fn format(value: &f64) -> String {
        tick(10f64.powf(*value))
    }
}

/// A categorical axis of `rows` rows: row i is centred at coordinate i, labels drawn by a
/// formatter closure.
pub(crate) struct RowAxis {
    pub(crate) rows: usize,
}

impl Ranged for RowAxis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let (a, b) = (-0.5, self.rows as f64 - 0.5);
        let t = (value - a) / (b - a);
        limit.0 + (t * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            return Vec::new();
        }
        (0..self.rows).map(|i| i as f64).collect()
    }

    fn range(&self) -> Range<f64> {
        -0.5..self.rows as f64 - 0.5
    }
}

impl ValueFormatter<f64> for RowAxis {
    fn format(value: &f64) -> String {
        format!("{value}")
    }
}

/// The fixed parts of a figure: title, subtitle, legend entries and caption.
pub(crate) struct Frame {
    pub(crate) title: String,
    pub(crate) subtitle: String,
    pub(crate) legend: Vec<(Glyph, String)>,
    pub(crate) caption: String,
}

const TITLE_H: u32 = 62;
const LINE_H: u32 = 19;
const CAPTION_WRAP: usize = 125;
const LEGEND_WRAP: usize = 120;

/// Render a figure: the title band, the legend band, the chart (drawn by `draw` on an area of
/// `chart_height` pixels) and the caption band.
pub(crate) fn render(
    frame: &Frame,
    chart_height: u32,
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<()>,
) -> Result<String> {
    let legend_lines: Vec<(Option<Glyph>, String)> = frame
        .legend
        .iter()
        .flat_map(|(g, text)| {
            wrap(text, LEGEND_WRAP)
                .into_iter()
                .enumerate()
                .map(move |(i, l)| ((i == 0).then_some(*g), l))
        })
        .collect();
    let caption_lines = wrap(&frame.caption, CAPTION_WRAP);
    let legend_h = LINE_H * legend_lines.len() as u32 + 10;
    let caption_h = LINE_H * caption_lines.len() as u32 + 14;
    let height = TITLE_H + legend_h + chart_height + caption_h;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let (head, rest) = root.split_vertically(TITLE_H);
        let (legend_area, rest) = rest.split_vertically(legend_h);
        let (chart_area, caption_area) = rest.split_vertically(chart_height);
        head.draw(&Text::new(
            frame.title.clone(),
            (16, 10),
            ("sans-serif", 20).into_font().style(FontStyle::Bold),
        ))
        .map_err(plot_err)?;
        head.draw(&Text::new(
            frame.subtitle.clone(),
            (16, 38),
            ("sans-serif", 14).into_font().color(&GREY),
        ))
        .map_err(plot_err)?;
        draw_legend(&legend_area, &legend_lines)?;
        draw(&chart_area)?;
        let font = ("sans-serif", 13).into_font().color(&GREY);
        for (i, line) in caption_lines.iter().enumerate() {
            caption_area
                .draw(&Text::new(
                    line.clone(),
                    (16, 6 + LINE_H as i32 * i as i32),
                    font.clone(),
                ))
                .map_err(plot_err)?;
        }
        root.present().map_err(plot_err)?;
    }
    xml::well_formed(&svg).map_err(|e| Error::Internal(format!("report figure: {e}")))?;
    Ok(svg)
}

fn draw_legend(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    lines: &[(Option<Glyph>, String)],
) -> Result<()> {
    let font = ("sans-serif", 14).into_font();
    for (i, (glyph, text)) in lines.iter().enumerate() {
        let y = 4 + LINE_H as i32 * i as i32;
        let gy = y + 7;
        let (gx0, gx1) = (20, 48);
        match glyph {
            None => {}
            Some(Glyph::Line(c, w)) => area
                .draw(&PathElement::new(
                    [(gx0, gy), (gx1, gy)],
                    c.stroke_width(*w),
                ))
                .map_err(plot_err)?,
            Some(Glyph::Dashed(c, w)) => {
                for x in (gx0..gx1).step_by(8) {
                    area.draw(&PathElement::new(
                        [(x, gy), ((x + 5).min(gx1), gy)],
                        c.stroke_width(*w),
                    ))
                    .map_err(plot_err)?;
                }
            }
            Some(Glyph::Dot(c)) => area
                .draw(&Circle::new((34, gy), 5, c.filled()))
                .map_err(plot_err)?,
            Some(Glyph::Triangle(c)) => area
                .draw(&TriangleMarker::new((34, gy), 6, c.filled()))
                .map_err(plot_err)?,
            Some(Glyph::Ring(c)) => area
                .draw(&Circle::new((34, gy), 7, c.stroke_width(2)))
                .map_err(plot_err)?,
        }
        area.draw(&Text::new(text.clone(), (58, y), font.clone()))
            .map_err(plot_err)?;
    }
    Ok(())
}

/// `k` in Unicode subscript digits (`4` → `₄`).
pub(crate) fn subscript(k: u32) -> String {
    k.to_string()
        .chars()
        .map(|c| {
            c.to_digit(10)
                .and_then(|d| char::from_u32(0x2080 + d))
                .unwrap_or(c)
        })
        .collect()
}

/// " At this (η, B) the hypothesis `k_stable_k2` is VIOLATED (…)." for the violated stability
/// hypotheses (`k_stable…`) of `v`, or nothing: the thresholds of T6 and the bounds of T7 are then
/// not implied by SGD stability at this (η, B).
pub(crate) fn borrowed_stability_sentence(v: &flatcert_bounds::Verdict) -> String {
    let names: Vec<&str> = v
        .hypotheses
        .iter()
        .filter(|c| c.status == flatcert_bounds::Status::Violated && c.name.starts_with("k_stable"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_short() {
        assert_eq!(tick(400.0), "400");
        assert_eq!(tick(0.125), "0.125");
        assert_eq!(tick(51.3104), "51.31");
        assert_eq!(tick(1e6), "1e6");
        assert_eq!(tick(2e-5), "2e-5");
    }

    #[test]
    fn log_axis_keys_are_powers_of_ten() {
        let ax = LogAxis::covering(&[1.0, 1000.0, f64::NAN, -1.0, 0.0], 0.0).unwrap();
        assert_eq!((ax.start(), ax.end()), (0.0, 3.0));
        let keys = ax.key_points(plotters::coord::ranged1d::BoldPoints(10));
        assert_eq!(keys, vec![0.0, 1.0, 2.0, 3.0]);
        assert!(LogAxis::covering(&[0.0, f64::INFINITY], 0.1).is_none());
        let narrow = LogAxis::covering(&[2.0, 3.0], 0.0).unwrap();
        assert!(narrow.end() - narrow.start() >= 1.0);
    }

    #[test]
    fn a_frame_renders_well_formed_svg() {
        let frame = Frame {
            title: "t <&> \"q\"".into(),
            subtitle: "s".into(),
            legend: vec![
                (Glyph::Line(BLUE, 2), "a line".into()),
                (Glyph::Dashed(RED, 1), "dashed".into()),
                (Glyph::Dot(GREEN), "dot".into()),
                (Glyph::Triangle(ORANGE), "tri".into()),
                (Glyph::Ring(PURPLE), "ring".into()),
            ],
            caption: "caption ".repeat(40),
        };
        let svg = render(&frame, 200, |_| Ok(())).unwrap();
        assert!(svg.starts_with("<svg"));
        xml::well_formed(&svg).unwrap();
        assert!(svg.contains("t &lt;&amp;&gt;"));
    }
}
