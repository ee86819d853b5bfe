//! The confusion matrix as a heat map: rows are true classes, columns predicted classes, each row
//! normalised to 100 % and coloured white → blue, with the percentage in every non-empty cell
//! (bold on the diagonal), the number of windows of each row on the right, a colour bar, and
//! class names on both axes (the column names turned upright). Rows without windows are grey.
//!
//! # Size
//! With `K` classes the cells are `c = 64` px for `K ≤ 8`, else `max(28, ⌊720 / K⌋)` px; the
//! image is `max(760, 390 + K·c)` × `310 + K·c` px ([`confusion_size`]).

use std::path::Path;

use super::canvas::{Align, Canvas, Rgb, TextStyle, Weight};
use super::{PlotError, colors};

/// What the confusion chart shows.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfusionChart {
    pub title: String,
    /// One line under the title.
    pub subtitle: String,
    /// Class names, the order of rows and columns.
    pub classes: Vec<String>,
    /// `counts[true][predicted]`: windows of class `true` classified as `predicted`.
    pub counts: Vec<Vec<u64>>,
}

const MATRIX_X: usize = 200;
const MATRIX_Y: usize = 110;
/// Room under the matrix for the turned column labels and the axis title.
const BELOW: usize = 200;
/// Room right of the matrix for the row counts and the colour bar.
const RIGHT: usize = 190;
const MIN_WIDTH: usize = 760;
/// Longest class label drawn, px (longer ones end in "…").
const LABEL_ROOM: f32 = 130.0;

fn cell_size(classes: usize) -> usize {
    if classes <= 8 {
        64
    } else {
        (720 / classes).max(28)
    }
}

/// Width and height in px of the confusion chart of `classes` classes.
pub fn confusion_size(classes: usize) -> (usize, usize) {
    let side = classes * cell_size(classes);
    (
        (MATRIX_X + side + RIGHT).max(MIN_WIDTH),
        MATRIX_Y + side + BELOW,
    )
}

/// Draws `chart` and writes it to `path` as PNG ([`confusion_size`]).
pub fn confusion_matrix(chart: &ConfusionChart, path: &Path) -> Result<(), PlotError> {
    render(chart)?.save_png(path)
}

/// Draws `chart` on a new canvas.
pub fn render(chart: &ConfusionChart) -> Result<Canvas, PlotError> {
    let k = chart.classes.len();
    if k == 0 {
        return Err(PlotError::Data {
            chart: "confusion matrix",
            problem: "no classes".into(),
        });
    }
    if chart.counts.len() != k || chart.counts.iter().any(|r| r.len() != k) {
        return Err(PlotError::Data {
            chart: "confusion matrix",
            problem: format!(
                "counts must be {k} × {k} (one row and one column per class) but are {} rows of \
                 lengths {:?}",
                chart.counts.len(),
                chart.counts.iter().map(Vec::len).collect::<Vec<_>>()
            ),
        });
    }
    let (width, height) = confusion_size(k);
    let mut c = Canvas::new(width, height, colors::BACKGROUND)?;
    let cell = cell_size(k) as f32;
    let side = cell * k as f32;
    let (x0, y0) = (MATRIX_X as f32, MATRIX_Y as f32);
    let label_size = if cell >= 40.0 { 14.0 } else { 12.0 };
    let value_size = (cell * 0.40).min(15.0);

    c.text(
        28.0,
        42.0,
        &chart.title,
        TextStyle::new(24.0, Weight::Bold, colors::TEXT),
        Align::Start,
    );
    let subtitle = c.fit_text(&chart.subtitle, 15.0, Weight::Regular, width as f32 - 56.0);
    c.text(
        28.0,
        70.0,
        &subtitle,
        TextStyle::new(15.0, Weight::Regular, colors::MUTED),
        Align::Start,
    );

    // Cells.
    for (t, row) in chart.counts.iter().enumerate() {
        let total: u64 = row.iter().sum();
        let top = y0 + t as f32 * cell;
        if total == 0 {
            c.fill_rect(x0, top, x0 + side, top + cell - 1.0, colors::EMPTY);
            if side >= 140.0 {
                c.text_centered_v(
                    x0 + side / 2.0,
                    top + cell / 2.0,
                    "no windows of this class",
                    TextStyle::new(value_size.min(12.0), Weight::Regular, colors::FAINT),
                    Align::Center,
                );
            }
            continue;
        }
        for (p, &n) in row.iter().enumerate() {
            let share = n as f64 / total as f64;
            let left = x0 + p as f32 * cell;
            c.fill_rect(
                left,
                top,
                left + cell - 1.0,
                top + cell - 1.0,
                colors::blues(share as f32),
            );
            if n == 0 {
                continue;
            }
            let pct = 100.0 * share;
            // Rounded half away from zero (format! would round 0.5 to even, to "0").
            let text = if pct < 0.5 {
                "<1".to_string()
            } else {
                format!("{}", pct.round() as i64)
            };
            let ink = if share >= 0.5 {
                Rgb::hex(0xffffff)
            } else {
                colors::TEXT
            };
            let weight = if p == t {
                Weight::Bold
            } else {
                Weight::Regular
            };
            c.text_centered_v(
                left + (cell - 1.0) / 2.0,
                top + (cell - 1.0) / 2.0,
                &text,
                TextStyle::new(value_size, weight, ink),
                Align::Center,
            );
        }
    }

    // Class names: rows on the left, columns below (read upwards); the axis titles sit just
    // beyond the longest name.
    let labels: Vec<String> = chart
        .classes
        .iter()
        .map(|name| c.fit_text(name, label_size, Weight::Regular, LABEL_ROOM))
        .collect();
    let longest = labels
        .iter()
        .map(|l| c.text_width(l, label_size, Weight::Regular))
        .fold(0.0f32, f32::max);
    for (i, label) in labels.iter().enumerate() {
        let mid = i as f32 * cell + (cell - 1.0) / 2.0;
        c.text_centered_v(
            x0 - 10.0,
            y0 + mid,
            label,
            TextStyle::new(label_size, Weight::Regular, colors::TEXT),
            Align::End,
        );
        c.text_vertical(
            x0 + mid,
            y0 + side + 10.0,
            label,
            TextStyle::new(label_size, Weight::Regular, colors::TEXT),
            Align::End,
        );
    }
    c.text_vertical(
        x0 - 10.0 - longest - 22.0,
        y0 + side / 2.0,
        "True class",
        TextStyle::new(16.0, Weight::Bold, colors::TEXT),
        Align::Center,
    );
    c.text(
        x0 + side / 2.0,
        y0 + side + 10.0 + longest + 34.0,
        "Predicted class",
        TextStyle::new(16.0, Weight::Bold, colors::TEXT),
        Align::Center,
    );

    // Windows per row.
    let counts_x = x0 + side + 72.0;
    c.text(
        counts_x,
        y0 - 10.0,
        "windows",
        TextStyle::new(12.0, Weight::Regular, colors::MUTED),
        Align::End,
    );
    for (t, row) in chart.counts.iter().enumerate() {
        let total: u64 = row.iter().sum();
        c.text_centered_v(
            counts_x,
            y0 + t as f32 * cell + (cell - 1.0) / 2.0,
            &group_thousands(total),
            TextStyle::new(label_size.min(13.0), Weight::Regular, colors::MUTED),
            Align::End,
        );
    }

    // Colour bar: 100 % at the top.
    let bar_x = counts_x + 24.0;
    let bar_h = side.max(120.0);
    for j in 0..bar_h as usize {
        let t = 1.0 - j as f32 / (bar_h - 1.0);
        c.fill_rect(
            bar_x,
            y0 + j as f32,
            bar_x + 16.0,
            y0 + j as f32 + 1.0,
            colors::blues(t),
        );
    }
    c.text(
        bar_x,
        y0 - 10.0,
        "% of row",
        TextStyle::new(12.0, Weight::Regular, colors::MUTED),
        Align::Start,
    );
    for pct in [0, 25, 50, 75, 100] {
        let y = (y0 + (1.0 - pct as f32 / 100.0) * (bar_h - 1.0)).round() + 0.5;
        c.fill_rect(bar_x + 16.0, y - 0.5, bar_x + 21.0, y + 0.5, colors::AXIS);
        c.text_centered_v(
            bar_x + 25.0,
            y,
            &pct.to_string(),
            TextStyle::new(12.0, Weight::Regular, colors::MUTED),
            Align::Start,
        );
    }
    Ok(c)
}

/// `12345` → `12 345` (thin grouping for counts).
fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_follows_the_documented_formula() {
        assert_eq!(confusion_size(3), (760, 502));
        assert_eq!(confusion_size(24), (1110, 1030));
        assert_eq!(confusion_size(100), (3190, 3110));
    }

    #[test]
    fn diagonal_cell_of_a_perfect_row_is_darkest() {
        let chart = ConfusionChart {
            title: "t".into(),
            subtitle: "s".into(),
            classes: vec!["A".into(), "B".into()],
            counts: vec![vec![10, 0], vec![5, 5]],
        };
        let c = render(&chart).unwrap();
        // A corner of each cell (away from its text).
        let corner = |row: usize, col: usize| {
            c.pixel(MATRIX_X + col * 64 + 2, MATRIX_Y + row * 64 + 2)
                .unwrap()
        };
        assert_eq!(corner(0, 0), colors::blues(1.0));
        assert_eq!(corner(0, 1), colors::blues(0.0));
        assert_eq!(corner(1, 0), colors::blues(0.5));
    }

    #[test]
    fn counts_that_are_not_square_are_refused() {
        let chart = ConfusionChart {
            title: "t".into(),
            subtitle: "s".into(),
            classes: vec!["A".into(), "B".into()],
            counts: vec![vec![1, 2, 3], vec![1, 2]],
        };
        let e = render(&chart).err().expect("refused").to_string();
        assert!(e.contains("counts must be 2 × 2"), "{e}");
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(group_thousands(7), "7");
        assert_eq!(group_thousands(1234), "1 234");
        assert_eq!(group_thousands(1234567), "1 234 567");
    }
}
