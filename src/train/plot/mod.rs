//! The charts of an evaluation report, drawn without any system library: a small anti-aliased
//! raster ([`canvas`]) with an embedded font, encoded by the `png` crate.
//!
//! - [`canvas`]: [`Canvas`] — rectangles, lines, discs and text on RGB pixels; PNG output.
//! - [`accuracy`]: accuracy against SNR, overall and per class, with the chance level
//!   ([`accuracy_vs_snr`], always [`ACCURACY_SIZE`]).
//! - [`lines`]: the generic line chart — curves against SNR, a linear or log y axis, dashed
//!   reference levels, a legend ([`line_chart`], always [`LINE_SIZE`]); the accuracy chart is
//!   one, so is the angle-error chart (MAE against SNR beside MUSIC and the Cramér–Rao bound).
//! - [`confusion`]: the row-normalised confusion matrix as a heat map with class names on both
//!   axes, percentages in the cells and window counts per row ([`confusion_matrix`], sized by
//!   [`confusion_size`]).
//!
//! The font is DejaVu Sans (regular and bold), subset to the characters the charts draw and
//! embedded in the binary; its licence is `src/train/plot/fonts/LICENSE`.

pub mod accuracy;
pub mod canvas;
pub mod confusion;
pub mod lines;

use std::path::PathBuf;

pub use accuracy::{ACCURACY_SIZE, AccuracyChart, Series, accuracy_vs_snr};
pub use canvas::{Align, Canvas, Rgb, TextStyle, Weight};
pub use confusion::{ConfusionChart, confusion_matrix, confusion_size};
pub use lines::{LINE_SIZE, Line, LineChart, Reference, YAxis, line_chart};

/// Why a chart could not be drawn or written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The embedded font did not parse (a broken build).
    #[error("embedded font {font}: {message}")]
    Font { font: &'static str, message: String },
    /// A canvas with no pixels was asked for.
    #[error("a chart of {width} × {height} pixels has no pixels")]
    Size { width: usize, height: usize },
    /// The chart's data cannot be drawn.
    #[error("{chart}: {problem}")]
    Data {
        chart: &'static str,
        problem: String,
    },
    /// The PNG file could not be written.
    #[error("{path}: cannot write the PNG: {message}")]
    Write { path: PathBuf, message: String },
}

/// Colours shared by the charts.
pub(crate) mod colors {
    use super::Rgb;

    pub const BACKGROUND: Rgb = Rgb::hex(0xffffff);
    pub const TEXT: Rgb = Rgb::hex(0x111827);
    pub const MUTED: Rgb = Rgb::hex(0x4b5563);
    pub const FAINT: Rgb = Rgb::hex(0x9ca3af);
    pub const AXIS: Rgb = Rgb::hex(0x6b7280);
    pub const GRID: Rgb = Rgb::hex(0xe5e7eb);
    pub const EMPTY: Rgb = Rgb::hex(0xf3f4f6);

    /// Tableau's 20 categorical colours, dark shades first, then the light ones.
    pub const CATEGORICAL: [Rgb; 20] = [
        Rgb::hex(0x1f77b4),
        Rgb::hex(0xff7f0e),
        Rgb::hex(0x2ca02c),
        Rgb::hex(0xd62728),
        Rgb::hex(0x9467bd),
        Rgb::hex(0x8c564b),
        Rgb::hex(0xe377c2),
        Rgb::hex(0x7f7f7f),
        Rgb::hex(0xbcbd22),
        Rgb::hex(0x17becf),
        Rgb::hex(0xaec7e8),
        Rgb::hex(0xffbb78),
        Rgb::hex(0x98df8a),
        Rgb::hex(0xff9896),
        Rgb::hex(0xc5b0d5),
        Rgb::hex(0xc49c94),
        Rgb::hex(0xf7b6d2),
        Rgb::hex(0xc7c7c7),
        Rgb::hex(0xdbdb8d),
        Rgb::hex(0x9edae5),
    ];

    /// matplotlib's sequential "Blues" map at `t` in [0, 1] (white → dark blue).
    pub fn blues(t: f32) -> Rgb {
        const STOPS: [Rgb; 9] = [
            Rgb::hex(0xf7fbff),
            Rgb::hex(0xdeebf7),
            Rgb::hex(0xc6dbef),
            Rgb::hex(0x9ecae1),
            Rgb::hex(0x6baed6),
            Rgb::hex(0x4292c6),
            Rgb::hex(0x2171b5),
            Rgb::hex(0x08519c),
            Rgb::hex(0x08306b),
        ];
        let x = t.clamp(0.0, 1.0) * (STOPS.len() - 1) as f32;
        let k = (x.floor() as usize).min(STOPS.len() - 2);
        STOPS[k].mix(STOPS[k + 1], x - k as f32)
    }
}

/// Formats a number for an axis or a label: integers without decimals, a proper minus sign.
pub(crate) fn format_tick(v: f64) -> String {
    let text = if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    };
    text.replace('-', "−")
}

/// A "nice" tick step (1, 2, 2.5 or 5 × 10ᵏ) giving at most `max_ticks` ticks over `span`.
pub(crate) fn nice_step(span: f64, max_ticks: usize) -> f64 {
    if !(span.is_finite() && span > 0.0) {
        return 1.0;
    }
    let raw = span / max_ticks.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_numbers() {
        assert_eq!(nice_step(38.0, 12), 5.0);
        assert_eq!(nice_step(10.0, 12), 1.0);
        assert_eq!(nice_step(100.0, 10), 10.0);
        assert_eq!(format_tick(-20.0), "−20");
        assert_eq!(format_tick(2.5), "2.5");
        assert_eq!(format_tick(0.0), "0");
    }

    #[test]
    fn blues_runs_from_white_to_dark_blue() {
        assert_eq!(colors::blues(0.0), Rgb::hex(0xf7fbff));
        assert_eq!(colors::blues(1.0), Rgb::hex(0x08306b));
        let mid = colors::blues(0.5);
        assert_eq!(mid, Rgb::hex(0x6baed6));
    }
}
