//! The one low-level SVG stack of flatcert (plotters, SVG backend only; the backend writes into a
//! `String`, so no file is touched here). Every figure of [`super::figures`] draws with it:
//!
//! - the **palette** (`BLUE`, `RED`, `GREEN`, `ORANGE`, `PURPLE`, `BROWN`, `GREY`, `LIGHT_GREEN`,
//!   `GRID`, and the series orders `SERIES`, `CYCLE`): the only colour constants of the crate's
//!   figures, with fixed meanings — data and critical rates blue, bounds and violations red,
//!   certified green, inconclusive orange, further series purple / brown / grey, secondary lines
//!   and text grey, the certified-stable region light green;
//! - the **error** of a drawing failure (`draw_err`): a plotters error is a bug (the SVG backend
//!   writes to memory), reported as [`crate::Error::Internal`];
//! - **axes**: `LogAxis` (log₁₀ coordinate labelled with the value) and `RowAxis` (categorical
//!   rows), and the number formats of ticks and legends (`tick`, `four_significant`, `fmt_sig`,
//!   `subscript`);
//! - **legends and titles**: one `Glyph` set drawn by `draw_glyph`, and `draw_title`;
//! - the **framed canvas** of the report figures (`render`: title band, legend band, chart,
//!   caption band) and the [`xml`] well-formedness check every framed figure passes.
//!
//! Output is deterministic: the same inputs give the same bytes.

pub mod xml;

use std::ops::Range;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, Ranged, ValueFormatter};
use plotters::prelude::*;

use crate::error::{Error, Result};

/// Width in pixels of the framed report figures ([`render`]).
pub(crate) const WIDTH: u32 = 1000;

/// Data, and the critical learning rate η*(B) of the stability figure.
pub(crate) const BLUE: RGBColor = RGBColor(31, 100, 180);
/// Bounds, violations, certified-unstable verdicts.
pub(crate) const RED: RGBColor = RGBColor(200, 30, 30);
/// Certified (stable) verdicts.
pub(crate) const GREEN: RGBColor = RGBColor(27, 120, 55);
/// Inconclusive verdicts.
pub(crate) const ORANGE: RGBColor = RGBColor(230, 140, 0);
/// A further series (e.g. the k-th moment critical rate η*_k).
pub(crate) const PURPLE: RGBColor = RGBColor(130, 50, 160);
/// A further series.
pub(crate) const BROWN: RGBColor = RGBColor(140, 86, 75);
/// Secondary lines (η_GD*), secondary text (subtitles, captions), a further series.
pub(crate) const GREY: RGBColor = RGBColor(90, 90, 90);
/// The certified-stable region of the stability figure (drawn at 60 % opacity).
pub(crate) const LIGHT_GREEN: RGBColor = RGBColor(190, 230, 190);
/// Bold grid lines.
pub(crate) const GRID: RGBColor = RGBColor(222, 222, 222);

/// Colours of successive series whose order carries no meaning beyond "the i-th" (e.g. one
/// threshold per k in the T6 figure).
pub(crate) const SERIES: [RGBColor; 5] = [GREEN, PURPLE, ORANGE, BROWN, GREY];

/// The colour cycle of the simulation figure: its callers pick a colour by index (modulo 8).
pub(crate) const CYCLE: [RGBColor; 8] = [BLUE, RED, GREEN, ORANGE, PURPLE, BROWN, BLACK, GREY];

/// The colour of series `i` in a figure drawn outside the crate (the examples): the colour cycle
/// of the simulation figure (blue, red, green, orange, purple, brown, black, grey), so that
/// examples draw with the crate's one palette.
pub fn series_colour(i: usize) -> RGBColor {
    CYCLE[i % CYCLE.len()]
}

/// A legend glyph.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Glyph {
    /// A filled box.
    Fill(RGBColor),
    /// A solid line of the given width.
    Line(RGBColor, u32),
    /// A dashed line of the given width.
    Dashed(RGBColor, u32),
    /// A filled circle.
    Dot(RGBColor),
    /// A filled triangle.
    Triangle(RGBColor),
    /// A bold cross.
    Cross(RGBColor),
    /// A ring.
    Ring(RGBColor),
    /// A bold ring with a cross (a highlighted point).
    Target(RGBColor),
}

/// Draw `glyph` in the legend slot `x0 ..= x1` (pixels) on the line `y` of `area`; point glyphs
/// are centred in the slot.
pub(crate) fn draw_glyph<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    glyph: Glyph,
    (x0, x1): (i32, i32),
    y: i32,
) -> Result<()> {
    let xm = (x0 + x1) / 2;
    match glyph {
        Glyph::Fill(c) => area
            .draw(&Rectangle::new([(x0, y - 7), (x1, y + 7)], c.filled()))
            .map_err(draw_err)?,
        Glyph::Line(c, w) => area
            .draw(&PathElement::new([(x0, y), (x1, y)], c.stroke_width(w)))
            .map_err(draw_err)?,
        Glyph::Dashed(c, w) => {
            for x in (x0..x1).step_by(8) {
                area.draw(&PathElement::new(
                    [(x, y), ((x + 5).min(x1), y)],
                    c.stroke_width(w),
                ))
                .map_err(draw_err)?;
            }
        }
        Glyph::Dot(c) => area
            .draw(&Circle::new((xm, y), 5, c.filled()))
            .map_err(draw_err)?,
        Glyph::Triangle(c) => area
            .draw(&TriangleMarker::new((xm, y), 6, c.filled()))
            .map_err(draw_err)?,
        Glyph::Cross(c) => area
            .draw(&Cross::new((xm, y), 5, c.stroke_width(3)))
            .map_err(draw_err)?,
        Glyph::Ring(c) => area
            .draw(&Circle::new((xm, y), 7, c.stroke_width(2)))
            .map_err(draw_err)?,
        Glyph::Target(c) => {
            area.draw(&Circle::new((xm, y), 9, c.stroke_width(3)))
                .map_err(draw_err)?;
            area.draw(&Cross::new((xm, y), 5, c.stroke_width(2)))
                .map_err(draw_err)?;
        }
    }
    Ok(())
}

/// A drawing failure of plotters' SVG backend as an internal error. The backend writes into a
/// `String`, so a failure is a bug, never bad input.
pub(crate) fn draw_err<E: std::fmt::Debug>(e: E) -> Error {
    Error::Internal(format!("svg: {e:?}"))
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
        return super::num(x);
    }
    let mag = x.abs().log10().floor() as i32;
    if (-3..5).contains(&mag) {
        four_significant(x, mag)
    } else {
        let s = format!("{x:.1e}");
        s.replace(".0e", "e")
    }
}

/// `x` (of decimal magnitude `mag` = ⌊log₁₀|x|⌋) with 4 significant digits in fixed notation,
/// trailing zeros and a trailing point removed. Shared by the tick labels of every figure.
pub(crate) fn four_significant(x: f64, mag: i32) -> String {
    let decimals = (3 - mag).max(0) as usize;
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Short number for legends: 6 significant digits ([`super::significant`]).
pub(crate) fn fmt_sig(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    super::significant(x, 6)
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
        root.fill(&WHITE).map_err(draw_err)?;
        let (head, rest) = root.split_vertically(TITLE_H);
        let (legend_area, rest) = rest.split_vertically(legend_h);
        let (chart_area, caption_area) = rest.split_vertically(chart_height);
        draw_title(&head, &frame.title, &frame.subtitle, (20, 14))?;
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
                .map_err(draw_err)?;
        }
        root.present().map_err(draw_err)?;
    }
    xml::well_formed(&svg).map_err(|e| Error::Internal(format!("svg: {e}")))?;
    Ok(svg)
}

/// The legend band of [`render`]: one glyph per entry, on the first line of its wrapped text.
fn draw_legend(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    lines: &[(Option<Glyph>, String)],
) -> Result<()> {
    let font = ("sans-serif", 14).into_font();
    for (i, (glyph, text)) in lines.iter().enumerate() {
        let y = 4 + LINE_H as i32 * i as i32;
        if let Some(g) = glyph {
            draw_glyph(area, *g, (20, 48), y + 7)?;
        }
        area.draw(&Text::new(text.clone(), (58, y), font.clone()))
            .map_err(draw_err)?;
    }
    Ok(())
}

/// The title (bold, `title_px`) and the subtitle (grey, `subtitle_px`) of a figure's head band.
pub(crate) fn draw_title<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    subtitle: &str,
    (title_px, subtitle_px): (u32, u32),
) -> Result<()> {
    area.draw(&Text::new(
        title.to_string(),
        (16, 10),
        ("sans-serif", title_px).into_font().style(FontStyle::Bold),
    ))
    .map_err(draw_err)?;
    area.draw(&Text::new(
        subtitle.to_string(),
        (16, 38),
        ("sans-serif", subtitle_px).into_font().color(&GREY),
    ))
    .map_err(draw_err)?;
    Ok(())
}

/// `k` in Unicode subscript digits (`4` → `₄`).
pub(crate) fn subscript(k: impl ToString) -> String {
    k.to_string()
        .chars()
        .map(|c| {
            c.to_digit(10)
                .and_then(|d| char::from_u32(0x2080 + d))
                .unwrap_or(c)
        })
        .collect()
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
