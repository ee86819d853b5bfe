//! Accuracy against SNR: the overall curve (bold, with markers), one thin curve per class, a
//! dashed chance level, a legend on the right. Always [`ACCURACY_SIZE`] pixels.

use std::path::Path;

use super::canvas::{Align, Canvas, TextStyle, Weight};
use super::{PlotError, colors, format_tick, nice_step};

/// Width and height of the accuracy chart, px.
pub const ACCURACY_SIZE: (usize, usize) = (1280, 720);

/// One curve: accuracy in [0, 1] at SNR points in dB (sorted by SNR).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// What the accuracy chart shows.
#[derive(Debug, Clone, PartialEq)]
pub struct AccuracyChart {
    pub title: String,
    /// One line under the title (model, dataset, headline figures).
    pub subtitle: String,
    /// Accuracy over all evaluated classes.
    pub overall: Series,
    /// Accuracy of each class (may be empty).
    pub per_class: Vec<Series>,
    /// Accuracy of guessing, in [0, 1], drawn as a dashed line.
    pub chance: Option<f64>,
}

const LEFT: f32 = 92.0;
const TOP: f32 = 104.0;
const BOTTOM_MARGIN: f32 = 78.0;
const LEGEND_WIDTH: f32 = 250.0;

/// Draws `chart` and writes it to `path` as PNG ([`ACCURACY_SIZE`]).
pub fn accuracy_vs_snr(chart: &AccuracyChart, path: &Path) -> Result<(), PlotError> {
    render(chart)?.save_png(path)
}

/// Draws `chart` on a new canvas.
pub fn render(chart: &AccuracyChart) -> Result<Canvas, PlotError> {
    let bad = |problem: String| PlotError::Data {
        chart: "accuracy vs SNR",
        problem,
    };
    if chart.overall.points.is_empty() {
        return Err(bad("the overall curve has no points".into()));
    }
    let all_points = || {
        std::iter::once(&chart.overall)
            .chain(&chart.per_class)
            .flat_map(|s| s.points.iter())
    };
    if let Some((x, y)) = all_points().find(|(x, y)| !(x.is_finite() && y.is_finite())) {
        return Err(bad(format!("point ({x}, {y}) is not finite")));
    }
    let (width, height) = ACCURACY_SIZE;
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

    // Axes' ranges: x over the SNR points (padded), y 0–100 %.
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
    let py = |y: f64| bottom - y as f32 * (bottom - TOP);

    // Grid and tick labels.
    for k in 0..=10 {
        let y = (py(k as f64 / 10.0)).round() + 0.5;
        let grid = if k == 0 { colors::AXIS } else { colors::GRID };
        c.fill_rect(LEFT, y - 0.5, right, y + 0.5, grid);
        c.text_centered_v(
            LEFT - 10.0,
            y,
            &format_tick(f64::from(k) * 10.0),
            TextStyle::new(14.0, Weight::Regular, colors::MUTED),
            Align::End,
        );
    }
    let mut tick = (x_min / x_step).ceil() * x_step;
    while tick <= x_max + 1e-9 {
        let x = px(tick).round() + 0.5;
        c.fill_rect(x - 0.5, TOP, x + 0.5, bottom, colors::GRID);
        c.fill_rect(x - 0.5, bottom, x + 0.5, bottom + 6.0, colors::AXIS);
        c.text(
            x,
            bottom + 26.0,
            &format_tick(tick),
            TextStyle::new(14.0, Weight::Regular, colors::MUTED),
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
    c.text(
        (LEFT + right) / 2.0,
        h - 20.0,
        "SNR (dB)",
        TextStyle::new(16.0, Weight::Regular, colors::TEXT),
        Align::Center,
    );
    c.text_vertical(
        28.0,
        (TOP + bottom) / 2.0,
        "Accuracy (%)",
        TextStyle::new(16.0, Weight::Regular, colors::TEXT),
        Align::Center,
    );

    // Chance level.
    if let Some(p) = chart.chance.filter(|p| (0.0..=1.0).contains(p)) {
        let y = py(p);
        c.dashed_polyline(&[(LEFT, y), (right, y)], 1.5, 7.0, 5.0, colors::FAINT);
        c.text(
            right - 4.0,
            y - 6.0,
            &format!("chance {:.1} %", 100.0 * p),
            TextStyle::new(13.0, Weight::Regular, colors::FAINT),
            Align::End,
        );
    }

    // Curves: classes first (thin), the overall curve on top.
    let style = |k: usize| {
        (
            colors::CATEGORICAL[k % colors::CATEGORICAL.len()],
            k >= colors::CATEGORICAL.len(),
        )
    };
    for (k, s) in chart.per_class.iter().enumerate() {
        let pts: Vec<(f32, f32)> = s.points.iter().map(|&(x, y)| (px(x), py(y))).collect();
        let (color, dashed) = style(k);
        if dashed {
            c.dashed_polyline(&pts, 1.8, 6.0, 4.0, color);
        } else {
            c.polyline(&pts, 1.8, color);
        }
        if pts.len() == 1 {
            c.disc(pts[0].0, pts[0].1, 3.0, color);
        }
    }
    let overall: Vec<(f32, f32)> = chart
        .overall
        .points
        .iter()
        .map(|&(x, y)| (px(x), py(y)))
        .collect();
    c.polyline(&overall, 3.2, colors::TEXT);
    for &(x, y) in &overall {
        c.disc(x, y, 5.5, colors::BACKGROUND);
        c.disc(x, y, 4.0, colors::TEXT);
    }

    // Legend.
    let lx = right + 36.0;
    let entries = 1 + chart.per_class.len();
    let spacing = ((bottom - TOP - 30.0) / entries as f32).clamp(12.0, 24.0);
    let label_size = (spacing * 0.62).clamp(10.0, 14.0);
    let label_width = w - lx - 40.0 - 12.0;
    let mut y = TOP + 6.0;
    let overall_label = c.fit_text(&chart.overall.label, label_size, Weight::Bold, label_width);
    c.polyline(&[(lx, y), (lx + 30.0, y)], 3.2, colors::TEXT);
    c.disc(lx + 15.0, y, 4.0, colors::TEXT);
    c.text_centered_v(
        lx + 40.0,
        y,
        &overall_label,
        TextStyle::new(label_size, Weight::Bold, colors::TEXT),
        Align::Start,
    );
    for (k, s) in chart.per_class.iter().enumerate() {
        y += spacing;
        let (color, dashed) = style(k);
        if dashed {
            c.dashed_polyline(&[(lx, y), (lx + 30.0, y)], 2.0, 6.0, 4.0, color);
        } else {
            c.polyline(&[(lx, y), (lx + 30.0, y)], 2.0, color);
        }
        let label = c.fit_text(&s.label, label_size, Weight::Regular, label_width);
        c.text_centered_v(
            lx + 40.0,
            y,
            &label,
            TextStyle::new(label_size, Weight::Regular, colors::TEXT),
            Align::Start,
        );
    }
    Ok(c)
}
