//! Accuracy against SNR: the overall curve (bold, with markers), one thin curve per class, a
//! dashed chance level, a legend on the right — a [`LineChart`] with a 0–100 % y axis. Always
//! [`ACCURACY_SIZE`] pixels.

use std::path::Path;

use super::canvas::Canvas;
use super::lines::{self, Line, LineChart, Reference, YAxis};
use super::{PlotError, colors};

/// Width and height of the accuracy chart, px.
pub const ACCURACY_SIZE: (usize, usize) = lines::LINE_SIZE;

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

/// Draws `chart` and writes it to `path` as PNG ([`ACCURACY_SIZE`]).
pub fn accuracy_vs_snr(chart: &AccuracyChart, path: &Path) -> Result<(), PlotError> {
    render(chart)?.save_png(path)
}

/// The line chart that shows `chart`: classes in the categorical colours (dashed once those run
/// out), the overall curve first in the legend and on top.
pub fn line_chart(chart: &AccuracyChart) -> LineChart {
    let overall = Line {
        width: 3.2,
        markers: true,
        bold: true,
        ..Line::new(
            chart.overall.label.clone(),
            chart.overall.points.clone(),
            colors::TEXT,
        )
    };
    let classes = chart.per_class.iter().enumerate().map(|(k, s)| Line {
        width: 1.8,
        dashed: k >= colors::CATEGORICAL.len(),
        ..Line::new(
            s.label.clone(),
            s.points.clone(),
            colors::CATEGORICAL[k % colors::CATEGORICAL.len()],
        )
    });
    LineChart {
        title: chart.title.clone(),
        subtitle: chart.subtitle.clone(),
        x_label: "SNR (dB)".into(),
        y_label: "Accuracy (%)".into(),
        y_axis: YAxis::Linear {
            min: 0.0,
            max: 1.0,
            step: 0.1,
            label_scale: 100.0,
        },
        lines: std::iter::once(overall).chain(classes).collect(),
        references: chart
            .chance
            .filter(|p| (0.0..=1.0).contains(p))
            .map(|p| Reference {
                y: p,
                label: format!("chance {:.1} %", 100.0 * p),
            })
            .into_iter()
            .collect(),
    }
}

/// Draws `chart` on a new canvas.
pub fn render(chart: &AccuracyChart) -> Result<Canvas, PlotError> {
    if chart.overall.points.is_empty() {
        return Err(PlotError::Data {
            chart: "accuracy vs SNR",
            problem: "the overall curve has no points".into(),
        });
    }
    lines::render(&line_chart(chart))
}
