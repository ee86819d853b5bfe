//! A generic line chart: curves against one numeric x axis (SNR in the reports), a linear or
//! logarithmic y axis, dashed horizontal reference levels, a legend on the right. Always
//! [`LINE_SIZE`] pixels. The accuracy chart ([`super::accuracy`]) and the angle-error chart
//! (MAE against SNR with MUSIC and the Cramér–Rao bound) are both drawn by [`render`].
//!
//! - **Axes.** x spans the points of every curve, padded by 3 % each side (±5 around a single
//!   x value), with round ticks (`nice_step`). A linear y axis is given its range and tick step
//!   (labels multiplied by `label_scale`, so fractions can read as percent). A log y axis spans
//!   whole decades around the positive points: decades are labelled and gridded, the 2…9
//!   multiples are faint grid lines (labelled 2 and 5 too when the chart spans at most two
//!   decades). On a log axis a point with `y ≤ 0` cannot be drawn and is left out.
//! - **Order.** The first curve is the legend's first entry and is drawn last, on top.

use std::path::Path;

use super::canvas::{Align, Canvas, Rgb, TextStyle, Weight};
use super::{PlotError, colors, format_tick, nice_step};

/// Width and height of a line chart, px.
pub const LINE_SIZE: (usize, usize) = (1280, 720);

const LEFT: f32 = 92.0;
const TOP: f32 = 104.0;
const BOTTOM_MARGIN: f32 = 78.0;
const LEGEND_WIDTH: f32 = 250.0;

/// One curve and how it is drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub label: String,
    /// `(x, y)` points, sorted by x.
    pub points: Vec<(f64, f64)>,
    pub color: Rgb,
    /// Stroke width, px.
    pub width: f32,
    pub dashed: bool,
    /// A ringed disc at every point.
    pub markers: bool,
    /// Legend label in bold.
    pub bold: bool,
}

impl Line {
    /// A plain solid curve of width 2 without markers.
    pub fn new(label: impl Into<String>, points: Vec<(f64, f64)>, color: Rgb) -> Line {
        Line {
            label: label.into(),
            points,
            color,
            width: 2.0,
            dashed: false,
            markers: false,
            bold: false,
        }
    }
}

/// A dashed horizontal level with its label at the right end (e.g. chance accuracy).
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    pub y: f64,
    pub label: String,
}

/// The y axis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum YAxis {
    /// `min..=max` with ticks every `step`, each labelled `value × label_scale`.
    Linear {
        min: f64,
        max: f64,
        step: f64,
        label_scale: f64,
    },
    /// Whole decades around the positive points.
    Log,
}

/// What a line chart shows.
#[derive(Debug, Clone, PartialEq)]
pub struct LineChart {
    pub title: String,
    /// One line under the title (model, dataset, headline figures).
    pub subtitle: String,
    pub x_label: String,
    pub y_label: String,
    pub y_axis: YAxis,
    /// Curves in legend order (the first drawn on top).
    pub lines: Vec<Line>,
    /// Dashed levels drawn under the curves, inside the y range only.
    pub references: Vec<Reference>,
}

/// Draws `chart` and writes it to `path` as PNG ([`LINE_SIZE`]).
pub fn line_chart(chart: &LineChart, path: &Path) -> Result<(), PlotError> {
    render(chart)?.save_png(path)
}

/// The y range actually drawn, as a map from value to a fraction of the plot height.
enum YMap {
    Linear { lo: f64, hi: f64 },
    Log { lo_exp: i32, hi_exp: i32 },
}

impl YMap {
    /// Height fraction of `y` (0 at the bottom), or `None` for a value a log axis cannot show.
    fn fraction(&self, y: f64) -> Option<f64> {
        match *self {
            YMap::Linear { lo, hi } => Some((y - lo) / (hi - lo)),
            YMap::Log { lo_exp, hi_exp } => {
                (y > 0.0).then(|| (y.log10() - f64::from(lo_exp)) / f64::from(hi_exp - lo_exp))
            }
        }
    }
}

/// A tick label for `10^exp × mantissa` on a log axis: `0.05`, `2`, `100`.
fn log_tick(mantissa: f64, exp: i32) -> String {
    let v = mantissa * 10f64.powi(exp);
    let decimals = (-exp).max(0) as usize;
    format!("{v:.decimals$}")
}

/// Draws `chart` on a new canvas.
pub fn render(chart: &LineChart) -> Result<Canvas, PlotError> {
    let bad = |problem: String| PlotError::Data {
        chart: "line chart",
        problem,
    };
    let all_points = || chart.lines.iter().flat_map(|l| l.points.iter());
    if let Some((x, y)) = all_points().find(|(x, y)| !(x.is_finite() && y.is_finite())) {
        return Err(bad(format!("point ({x}, {y}) is not finite")));
    }
    let ymap = match chart.y_axis {
        YAxis::Linear {
            min,
            max,
            step,
            label_scale,
        } => {
            if !(min.is_finite() && max.is_finite() && min < max && step > 0.0) {
                return Err(bad(format!(
                    "linear y axis {min}..{max} step {step}: expected min < max and a positive step"
                )));
            }
            if !(label_scale.is_finite() && label_scale != 0.0) {
                return Err(bad(format!("label scale {label_scale} is not usable")));
            }
            YMap::Linear { lo: min, hi: max }
        }
        YAxis::Log => {
            let (lo, hi) = all_points()
                .map(|p| p.1)
                .filter(|y| *y > 0.0)
                .fold((f64::MAX, f64::MIN), |(lo, hi), y| (lo.min(y), hi.max(y)));
            if lo > hi {
                return Err(bad("a log y axis needs at least one point above 0".into()));
            }
            let lo_exp = lo.log10().floor() as i32;
            let hi_exp = (hi.log10().ceil() as i32).max(lo_exp + 1);
            YMap::Log { lo_exp, hi_exp }
        }
    };
    let drawable = |y: f64| ymap.fraction(y).is_some();
    if !all_points().any(|(_, y)| drawable(*y)) {
        return Err(bad("no curve has a point to draw".into()));
    }

    let (width, height) = LINE_SIZE;
    let mut c = Canvas::new(width, height, colors::BACKGROUND)?;
    let (w, h) = (width as f32, height as f32);
    let right = w - LEGEND_WIDTH;
    let bottom = h - BOTTOM_MARGIN;

    // Title and subtitle.
    c.text(
        LEFT - 60.0,
        42.0,
        &chart.title,
        TextStyle::new(24.0, Weight::Bold, colors::TEXT),
        Align::Start,
    );
    let subtitle = c.fit_text(&chart.subtitle, 15.0, Weight::Regular, w - LEFT);
    c.text(
        LEFT - 60.0,
        70.0,
        &subtitle,
        TextStyle::new(15.0, Weight::Regular, colors::MUTED),
        Align::Start,
    );

    // x range over every point (padded).
    let (mut x_min, mut x_max) = all_points().fold((f64::MAX, f64::MIN), |(lo, hi), (x, _)| {
        (lo.min(*x), hi.max(*x))
    });
    if x_max - x_min < 1e-9 {
        x_min -= 5.0;
        x_max += 5.0;
    }
    let x_step = nice_step(x_max - x_min, 14);
    let pad = (x_max - x_min) * 0.03;
    let (x_lo, x_hi) = (x_min - pad, x_max + pad);
    let px = |x: f64| LEFT + ((x - x_lo) / (x_hi - x_lo)) as f32 * (right - LEFT);
    let py = |f: f64| bottom - f as f32 * (bottom - TOP);
    let tick_style = TextStyle::new(14.0, Weight::Regular, colors::MUTED);

    // y grid and tick labels.
    let y_tick = |c: &mut Canvas, f: f64, label: Option<String>, strong: bool| {
        let y = py(f).round() + 0.5;
        let grid = if f.abs() < 1e-9 {
            colors::AXIS
        } else if strong {
            colors::GRID
        } else {
            colors::EMPTY
        };
        c.fill_rect(LEFT, y - 0.5, right, y + 0.5, grid);
        if let Some(text) = label {
            c.text_centered_v(LEFT - 10.0, y, &text, tick_style, Align::End);
        }
    };
    match (&ymap, chart.y_axis) {
        (
            YMap::Linear { lo, hi },
            YAxis::Linear {
                step, label_scale, ..
            },
        ) => {
            let first = (lo / step).ceil() as i64;
            let last = (hi / step + 1e-9).floor() as i64;
            for k in first..=last {
                let v = k as f64 * step;
                y_tick(
                    &mut c,
                    (v - lo) / (hi - lo),
                    Some(format_tick(v * label_scale)),
                    true,
                );
            }
        }
        (YMap::Log { lo_exp, hi_exp }, _) => {
            let few_decades = hi_exp - lo_exp <= 2;
            for e in *lo_exp..*hi_exp {
                for m in 2..=9 {
                    let f = ymap.fraction(f64::from(m) * 10f64.powi(e)).unwrap_or(0.0);
                    let label = (few_decades && (m == 2 || m == 5)).then(|| log_tick(m.into(), e));
                    y_tick(&mut c, f, label, false);
                }
            }
            for e in *lo_exp..=*hi_exp {
                let f = ymap.fraction(10f64.powi(e)).unwrap_or(0.0);
                y_tick(&mut c, f, Some(log_tick(1.0, e)), true);
            }
        }
        _ => {}
    }

    // x grid and tick labels.
    let mut tick = (x_min / x_step).ceil() * x_step;
    while tick <= x_max + 1e-9 {
        let x = px(tick).round() + 0.5;
        c.fill_rect(x - 0.5, TOP, x + 0.5, bottom, colors::GRID);
        c.fill_rect(x - 0.5, bottom, x + 0.5, bottom + 6.0, colors::AXIS);
        c.text(
            x,
            bottom + 26.0,
            &format_tick(tick),
            tick_style,
            Align::Center,
        );
        tick += x_step;
    }
    let left_spine = LEFT.round() - 0.5;
    c.fill_rect(
        left_spine - 0.5,
        TOP,
        left_spine + 0.5,
        bottom + 0.5,
        colors::AXIS,
    );
    c.fill_rect(LEFT, bottom - 0.5, right, bottom + 0.5, colors::AXIS);
    let axis_style = TextStyle::new(16.0, Weight::Regular, colors::TEXT);
    c.text(
        (LEFT + right) / 2.0,
        h - 20.0,
        &chart.x_label,
        axis_style,
        Align::Center,
    );
    c.text_vertical(
        28.0,
        (TOP + bottom) / 2.0,
        &chart.y_label,
        axis_style,
        Align::Center,
    );

    // Reference levels.
    for r in &chart.references {
        let Some(f) = ymap.fraction(r.y).filter(|f| (0.0..=1.0).contains(f)) else {
            continue;
        };
        let y = py(f);
        c.dashed_polyline(&[(LEFT, y), (right, y)], 1.5, 7.0, 5.0, colors::FAINT);
        c.text(
            right - 4.0,
            y - 6.0,
            &r.label,
            TextStyle::new(13.0, Weight::Regular, colors::FAINT),
            Align::End,
        );
    }

    // Curves, the first on top.
    for line in chart.lines.iter().rev() {
        let pts: Vec<(f32, f32)> = line
            .points
            .iter()
            .filter_map(|&(x, y)| ymap.fraction(y).map(|f| (px(x), py(f))))
            .collect();
        if line.dashed {
            c.dashed_polyline(&pts, line.width, 6.0, 4.0, line.color);
        } else {
            c.polyline(&pts, line.width, line.color);
        }
        if line.markers {
            for &(x, y) in &pts {
                c.disc(x, y, line.width + 2.3, colors::BACKGROUND);
                c.disc(x, y, line.width + 0.8, line.color);
            }
        } else if pts.len() == 1 {
            c.disc(pts[0].0, pts[0].1, line.width * 1.7, line.color);
        }
    }

    // Legend.
    let lx = right + 36.0;
    let spacing = ((bottom - TOP - 30.0) / chart.lines.len().max(1) as f32).clamp(12.0, 24.0);
    let label_size = (spacing * 0.62).clamp(10.0, 14.0);
    let label_width = w - lx - 40.0 - 12.0;
    for (k, line) in chart.lines.iter().enumerate() {
        let y = TOP + 6.0 + k as f32 * spacing;
        let seg = [(lx, y), (lx + 30.0, y)];
        if line.dashed {
            c.dashed_polyline(&seg, line.width, 6.0, 4.0, line.color);
        } else {
            c.polyline(&seg, line.width, line.color);
        }
        if line.markers {
            c.disc(lx + 15.0, y, line.width + 0.8, line.color);
        }
        let weight = if line.bold {
            Weight::Bold
        } else {
            Weight::Regular
        };
        let label = c.fit_text(&line.label, label_size, weight, label_width);
        c.text_centered_v(
            lx + 40.0,
            y,
            &label,
            TextStyle::new(label_size, weight, colors::TEXT),
            Align::Start,
        );
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(y_axis: YAxis, points: Vec<(f64, f64)>) -> LineChart {
        LineChart {
            title: "MAE against SNR".into(),
            subtitle: "model · MUSIC · CRB (°)".into(),
            x_label: "SNR (dB)".into(),
            y_label: "Error (°)".into(),
            y_axis,
            lines: vec![Line::new("model", points, colors::CATEGORICAL[0])],
            references: vec![],
        }
    }

    /// Pixel rows (y) where column `x` holds the curve's colour.
    fn curve_rows(c: &Canvas, x: usize, color: Rgb) -> Vec<usize> {
        (0..c.height())
            .filter(|y| c.pixel(x, *y) == Some(color))
            .collect()
    }

    #[test]
    fn log_axis_puts_each_decade_the_same_height_apart() {
        // A straight line in log space: 0.1 at x = 0, 1 at x = 10, 10 at x = 20.
        let pts = vec![(0.0, 0.1), (10.0, 1.0), (20.0, 10.0)];
        let c = render(&chart(YAxis::Log, pts)).unwrap();
        assert_eq!((c.width(), c.height()), LINE_SIZE);
        let right = LINE_SIZE.0 as f32 - LEGEND_WIDTH;
        // x = 5 and x = 15 sit a quarter and three quarters of the way along the data.
        let (lo, hi) = (-0.6, 20.6);
        let col = |x: f64| (LEFT + ((x - lo) / (hi - lo)) as f32 * (right - LEFT)) as usize;
        let color = colors::CATEGORICAL[0];
        let mid = |rows: Vec<usize>| rows.iter().sum::<usize>() as f32 / rows.len() as f32;
        let (a, b) = (
            mid(curve_rows(&c, col(5.0), color)),
            mid(curve_rows(&c, col(15.0), color)),
        );
        let bottom = LINE_SIZE.1 as f32 - BOTTOM_MARGIN;
        let decade = (bottom - TOP) / 2.0; // 0.1..10 is two decades
        assert!((a - (bottom - 0.5 * decade)).abs() < 2.0, "{a}");
        assert!((b - (bottom - 1.5 * decade)).abs() < 2.0, "{b}");
    }

    #[test]
    fn log_axis_leaves_out_points_at_or_below_zero_and_needs_one_above() {
        assert!(render(&chart(YAxis::Log, vec![(0.0, 0.0), (1.0, 2.0)])).is_ok());
        let e = render(&chart(YAxis::Log, vec![(0.0, 0.0), (1.0, -1.0)]))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("at least one point above 0"), "{e}");
    }

    #[test]
    fn non_finite_points_and_bad_linear_axes_are_refused() {
        let linear = YAxis::Linear {
            min: 0.0,
            max: 1.0,
            step: 0.1,
            label_scale: 100.0,
        };
        let e = render(&chart(linear, vec![(0.0, f64::NAN)]))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("is not finite"), "{e}");
        let upside_down = YAxis::Linear {
            min: 1.0,
            max: 0.0,
            step: 0.1,
            label_scale: 1.0,
        };
        assert!(render(&chart(upside_down, vec![(0.0, 0.5)])).is_err());
        assert!(render(&chart(linear, vec![(0.0, 0.5)])).is_ok());
    }

    #[test]
    fn log_tick_labels_read_plainly() {
        assert_eq!(log_tick(1.0, -2), "0.01");
        assert_eq!(log_tick(5.0, -1), "0.5");
        assert_eq!(log_tick(2.0, 0), "2");
        assert_eq!(log_tick(1.0, 2), "100");
    }
}
