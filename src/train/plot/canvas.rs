//! [`Canvas`]: an RGB raster with the few anti-aliased primitives the report charts need —
//! rectangles, lines and polylines (solid or dashed), discs, and text in the embedded DejaVu Sans
//! (regular and bold, horizontal or turned a quarter counter-clockwise) — written out as PNG.
//!
//! Coordinates are pixels, `x` to the right and `y` down, with pixel `(i, j)` covering
//! `[i, i+1) × [j, j+1)`; a 1-pixel line centred on `y = j + 0.5` is crisp.

use std::path::Path;

use ab_glyph::{Font, FontRef, GlyphId, PxScale, ScaleFont, point};

use super::PlotError;

/// An sRGB colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    /// `0xRRGGBB`.
    pub const fn hex(v: u32) -> Rgb {
        Rgb((v >> 16) as u8, (v >> 8) as u8, v as u8)
    }

    /// Linear mix: `t = 0` gives `self`, `t = 1` gives `other`.
    pub fn mix(self, other: Rgb, t: f32) -> Rgb {
        let t = t.clamp(0.0, 1.0);
        let m = |a: u8, b: u8| (f32::from(a) + (f32::from(b) - f32::from(a)) * t).round() as u8;
        Rgb(m(self.0, other.0), m(self.1, other.1), m(self.2, other.2))
    }
}

/// Font weight of the embedded DejaVu Sans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weight {
    Regular,
    Bold,
}

const REGULAR_TTF: &[u8] = include_bytes!("fonts/DejaVuSans.ttf");
const BOLD_TTF: &[u8] = include_bytes!("fonts/DejaVuSans-Bold.ttf");

fn font(weight: Weight) -> Result<FontRef<'static>, PlotError> {
    let (bytes, name) = match weight {
        Weight::Regular => (REGULAR_TTF, "DejaVuSans.ttf"),
        Weight::Bold => (BOLD_TTF, "DejaVuSans-Bold.ttf"),
    };
    FontRef::try_from_slice(bytes).map_err(|e| PlotError::Font {
        font: name,
        message: e.to_string(),
    })
}

/// Size (px, ascender to descender), weight and colour of a line of text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TextStyle {
    pub size: f32,
    pub weight: Weight,
    pub color: Rgb,
}

impl TextStyle {
    pub const fn new(size: f32, weight: Weight, color: Rgb) -> TextStyle {
        TextStyle {
            size,
            weight,
            color,
        }
    }
}

/// One segment of a stroke, from one point to another.
type Segment = ((f32, f32), (f32, f32));

/// Where the anchor point sits along a line of text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// The anchor is where the text starts.
    Start,
    /// The anchor is the middle of the text.
    Center,
    /// The anchor is where the text ends.
    End,
}

/// A line of text rendered to coverage values, before it is placed.
struct TextMask {
    width: usize,
    /// Row of the baseline inside the mask.
    baseline: f32,
    /// Height of a capital letter above the baseline, px.
    cap_height: f32,
    coverage: Vec<f32>,
}

/// An RGB image being drawn on.
pub struct Canvas {
    width: usize,
    height: usize,
    pixels: Vec<Rgb>,
    regular: FontRef<'static>,
    bold: FontRef<'static>,
}

impl Canvas {
    /// A `width × height` canvas filled with `background`.
    pub fn new(width: usize, height: usize, background: Rgb) -> Result<Canvas, PlotError> {
        if width == 0 || height == 0 {
            return Err(PlotError::Size { width, height });
        }
        Ok(Canvas {
            width,
            height,
            pixels: vec![background; width * height],
            regular: font(Weight::Regular)?,
            bold: font(Weight::Bold)?,
        })
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn height(&self) -> usize {
        self.height
    }

    /// The colour of pixel `(x, y)`, if it lies on the canvas.
    pub fn pixel(&self, x: usize, y: usize) -> Option<Rgb> {
        (x < self.width && y < self.height).then(|| self.pixels[y * self.width + x])
    }

    /// Blends `color` into pixel `(x, y)` with coverage `alpha` in [0, 1]; off-canvas is ignored.
    fn blend(&mut self, x: i64, y: i64, color: Rgb, alpha: f32) {
        if alpha <= 0.0 || x < 0 || y < 0 || x >= self.width as i64 || y >= self.height as i64 {
            return;
        }
        let p = &mut self.pixels[y as usize * self.width + x as usize];
        *p = p.mix(color, alpha);
    }

    /// Fills the rectangle `[x0, x1) × [y0, y1)`; fractional edges are blended by coverage.
    pub fn fill_rect(&mut self, x0: f32, y0: f32, x1: f32, y1: f32, color: Rgb) {
        let (x0, x1) = (x0.min(x1), x0.max(x1));
        let (y0, y1) = (y0.min(y1), y0.max(y1));
        for j in y0.floor() as i64..y1.ceil() as i64 {
            let cy = (y1.min(j as f32 + 1.0) - y0.max(j as f32)).clamp(0.0, 1.0);
            for i in x0.floor() as i64..x1.ceil() as i64 {
                let cx = (x1.min(i as f32 + 1.0) - x0.max(i as f32)).clamp(0.0, 1.0);
                self.blend(i, j, color, cx * cy);
            }
        }
    }

    /// Draws a connected line through `points`, `width` px wide with round joins and caps.
    pub fn polyline(&mut self, points: &[(f32, f32)], width: f32, color: Rgb) {
        let segments: Vec<_> = points.windows(2).map(|p| (p[0], p[1])).collect();
        self.stroke_segments(&segments, width, color);
    }

    /// As [`Canvas::polyline`], dashed: `dash` px drawn, `gap` px left out, along the line.
    pub fn dashed_polyline(
        &mut self,
        points: &[(f32, f32)],
        width: f32,
        dash: f32,
        gap: f32,
        color: Rgb,
    ) {
        let mut segments = Vec::new();
        let (dash, gap) = (dash.max(0.5), gap.max(0.5));
        // The pattern carries on across vertices: `remaining` px are left of the current dash
        // or gap.
        let mut in_dash = true;
        let mut remaining = dash;
        for p in points.windows(2) {
            let ((ax, ay), (bx, by)) = (p[0], p[1]);
            let len = ((bx - ax).powi(2) + (by - ay).powi(2)).sqrt();
            let at = |d: f32| (ax + (bx - ax) * d / len, ay + (by - ay) * d / len);
            let mut d = 0.0f32;
            while len - d > 1e-3 {
                let take = remaining.min(len - d);
                if in_dash {
                    segments.push((at(d), at(d + take)));
                }
                if d + take <= d {
                    break; // beyond f32 resolution; no canvas is this large
                }
                d += take;
                remaining -= take;
                if remaining <= 1e-3 {
                    in_dash = !in_dash;
                    remaining = if in_dash { dash } else { gap };
                }
            }
        }
        self.stroke_segments(&segments, width, color);
    }

    /// Strokes segments as one shape: each pixel takes the largest coverage of any segment, so
    /// joins are not blended twice.
    fn stroke_segments(&mut self, segments: &[Segment], width: f32, color: Rgb) {
        if segments.is_empty() {
            return;
        }
        let half = width / 2.0;
        let pad = half + 1.0;
        let (mut x0, mut y0, mut x1, mut y1) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
        for &((ax, ay), (bx, by)) in segments {
            x0 = x0.min(ax.min(bx));
            y0 = y0.min(ay.min(by));
            x1 = x1.max(ax.max(bx));
            y1 = y1.max(ay.max(by));
        }
        let bx0 = ((x0 - pad).floor() as i64).max(0);
        let by0 = ((y0 - pad).floor() as i64).max(0);
        let bx1 = ((x1 + pad).ceil() as i64).min(self.width as i64);
        let by1 = ((y1 + pad).ceil() as i64).min(self.height as i64);
        if bx0 >= bx1 || by0 >= by1 {
            return;
        }
        let mw = (bx1 - bx0) as usize;
        let mut mask = vec![0.0f32; mw * (by1 - by0) as usize];
        for &((ax, ay), (bx, by)) in segments {
            let sx0 = ((ax.min(bx) - pad).floor() as i64).max(bx0);
            let sy0 = ((ay.min(by) - pad).floor() as i64).max(by0);
            let sx1 = ((ax.max(bx) + pad).ceil() as i64).min(bx1);
            let sy1 = ((ay.max(by) + pad).ceil() as i64).min(by1);
            let (dx, dy) = (bx - ax, by - ay);
            let len2 = dx * dx + dy * dy;
            for j in sy0..sy1 {
                for i in sx0..sx1 {
                    let (px, py) = (i as f32 + 0.5, j as f32 + 0.5);
                    let t = if len2 > 0.0 {
                        (((px - ax) * dx + (py - ay) * dy) / len2).clamp(0.0, 1.0)
                    } else {
                        0.0
                    };
                    let d = ((px - ax - t * dx).powi(2) + (py - ay - t * dy).powi(2)).sqrt();
                    let c = (half + 0.5 - d).clamp(0.0, 1.0);
                    let m = &mut mask[(j - by0) as usize * mw + (i - bx0) as usize];
                    *m = m.max(c);
                }
            }
        }
        for (k, c) in mask.iter().enumerate() {
            self.blend(bx0 + (k % mw) as i64, by0 + (k / mw) as i64, color, *c);
        }
    }

    /// A filled disc of radius `r` centred on `(cx, cy)`.
    pub fn disc(&mut self, cx: f32, cy: f32, r: f32, color: Rgb) {
        for j in (cy - r - 1.0).floor() as i64..=(cy + r + 1.0).ceil() as i64 {
            for i in (cx - r - 1.0).floor() as i64..=(cx + r + 1.0).ceil() as i64 {
                let d = ((i as f32 + 0.5 - cx).powi(2) + (j as f32 + 0.5 - cy).powi(2)).sqrt();
                self.blend(i, j, color, (r + 0.5 - d).clamp(0.0, 1.0));
            }
        }
    }

    fn font(&self, weight: Weight) -> &FontRef<'static> {
        match weight {
            Weight::Regular => &self.regular,
            Weight::Bold => &self.bold,
        }
    }

    /// Width in px of `text` at font height `size` px (ascender to descender).
    pub fn text_width(&self, text: &str, size: f32, weight: Weight) -> f32 {
        let f = self.font(weight).as_scaled(PxScale::from(size));
        let mut width = 0.0;
        let mut previous: Option<GlyphId> = None;
        for c in text.chars() {
            let id = f.glyph_id(c);
            if let Some(p) = previous {
                width += f.kern(p, id);
            }
            width += f.h_advance(id);
            previous = Some(id);
        }
        width
    }

    /// `text` shortened with "…" so that it is at most `max_width` px wide.
    pub fn fit_text(&self, text: &str, size: f32, weight: Weight, max_width: f32) -> String {
        if self.text_width(text, size, weight) <= max_width {
            return text.to_string();
        }
        let chars: Vec<char> = text.chars().collect();
        for keep in (0..chars.len()).rev() {
            let s: String = chars[..keep].iter().collect::<String>() + "…";
            if self.text_width(&s, size, weight) <= max_width {
                return s;
            }
        }
        String::new()
    }

    fn render(&self, text: &str, size: f32, weight: Weight) -> TextMask {
        let font = self.font(weight);
        let f = font.as_scaled(PxScale::from(size));
        let width = self.text_width(text, size, weight).ceil() as usize + 2;
        let ascent = f.ascent();
        let height = (ascent - f.descent()).ceil() as usize + 2;
        let baseline = ascent.ceil() + 1.0;
        let cap_height = font
            .outline_glyph(f.scaled_glyph('H'))
            .map(|g| g.px_bounds().height())
            .unwrap_or(ascent * 0.75);
        let mut coverage = vec![0.0f32; width * height];
        let mut caret = 1.0f32;
        let mut previous: Option<GlyphId> = None;
        for c in text.chars() {
            let id = f.glyph_id(c);
            if let Some(p) = previous {
                caret += f.kern(p, id);
            }
            let glyph = id.with_scale_and_position(PxScale::from(size), point(caret, baseline));
            if let Some(outline) = font.outline_glyph(glyph) {
                let b = outline.px_bounds();
                outline.draw(|gx, gy, c| {
                    let x = b.min.x as i64 + i64::from(gx);
                    let y = b.min.y as i64 + i64::from(gy);
                    if x >= 0 && y >= 0 && (x as usize) < width && (y as usize) < height {
                        let m = &mut coverage[y as usize * width + x as usize];
                        *m = (*m + c).min(1.0);
                    }
                });
            }
            caret += f.h_advance(id);
            previous = Some(id);
        }
        TextMask {
            width,
            baseline,
            cap_height,
            coverage,
        }
    }

    /// Draws `text` with its baseline at `y`, placed along `x` by `align`.
    pub fn text(&mut self, x: f32, y: f32, text: &str, style: TextStyle, align: Align) {
        let m = self.render(text, style.size, style.weight);
        let w = m.width as f32 - 2.0;
        let start = match align {
            Align::Start => x,
            Align::Center => x - w / 2.0,
            Align::End => x - w,
        };
        let ox = (start - 1.0).round() as i64;
        let oy = (y - m.baseline).round() as i64;
        for (k, c) in m.coverage.iter().enumerate() {
            self.blend(
                ox + (k % m.width) as i64,
                oy + (k / m.width) as i64,
                style.color,
                *c,
            );
        }
    }

    /// Draws `text` with capital letters centred vertically on `y`, placed along `x` by `align`.
    pub fn text_centered_v(&mut self, x: f32, y: f32, text: &str, style: TextStyle, align: Align) {
        let cap = self.render("H", style.size, style.weight).cap_height;
        self.text(x, y + cap / 2.0, text, style, align);
    }

    /// Draws `text` turned a quarter counter-clockwise (read bottom to top), capital letters
    /// centred on the vertical line `x`, placed along `y` by `align` (`Start` = the text begins
    /// at `y` and runs upwards from it).
    pub fn text_vertical(&mut self, x: f32, y: f32, text: &str, style: TextStyle, align: Align) {
        let m = self.render(text, style.size, style.weight);
        let w = m.width as f32 - 2.0;
        // Along the text, mask column u maps to canvas row y_start − (u − 1).
        let y_start = match align {
            Align::Start => y,
            Align::Center => y + w / 2.0,
            Align::End => y + w,
        };
        // Across it, mask row v maps to canvas column x_base + v − baseline, with the middle of
        // the capitals (baseline − cap/2) on x.
        let x_base = x + m.cap_height / 2.0;
        for (k, c) in m.coverage.iter().enumerate() {
            let (u, v) = ((k % m.width) as f32, (k / m.width) as f32);
            let cx = (x_base + v - m.baseline).round() as i64;
            let cy = (y_start - u).round() as i64;
            self.blend(cx, cy, style.color, *c);
        }
    }

    /// Writes the canvas as an 8-bit RGB PNG.
    pub fn save_png(&self, path: &Path) -> Result<(), PlotError> {
        let err = |message: String| PlotError::Write {
            path: path.to_path_buf(),
            message,
        };
        let file = std::fs::File::create(path).map_err(|e| err(e.to_string()))?;
        let mut encoder = png::Encoder::new(
            std::io::BufWriter::new(file),
            self.width as u32,
            self.height as u32,
        );
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder
            .add_text_chunk("Software".into(), "specwatch".into())
            .map_err(|e| err(e.to_string()))?;
        let mut writer = encoder.write_header().map_err(|e| err(e.to_string()))?;
        let bytes: Vec<u8> = self.pixels.iter().flat_map(|p| [p.0, p.1, p.2]).collect();
        writer
            .write_image_data(&bytes)
            .map_err(|e| err(e.to_string()))?;
        writer.finish().map_err(|e| err(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WHITE: Rgb = Rgb(255, 255, 255);
    const BLACK: Rgb = Rgb(0, 0, 0);

    #[test]
    fn embedded_fonts_parse_and_cover_the_characters_drawn() {
        for weight in [Weight::Regular, Weight::Bold] {
            let f = font(weight).expect("embedded font parses");
            for c in "Accuracy vs SNR (dB) −20 … 100 % µ ≥ ≤ — → •".chars() {
                assert_ne!(f.glyph_id(c).0, 0, "{weight:?} lacks {c:?}");
            }
        }
    }

    #[test]
    fn crisp_rectangle_covers_exactly_its_pixels() {
        let mut c = Canvas::new(6, 4, WHITE).unwrap();
        c.fill_rect(1.0, 1.0, 3.0, 2.0, BLACK);
        assert_eq!(c.pixel(1, 1), Some(BLACK));
        assert_eq!(c.pixel(2, 1), Some(BLACK));
        assert_eq!(c.pixel(3, 1), Some(WHITE));
        assert_eq!(c.pixel(1, 2), Some(WHITE));
        // Half a pixel is blended half-way.
        c.fill_rect(4.0, 0.0, 4.5, 1.0, BLACK);
        assert_eq!(c.pixel(4, 0), Some(Rgb(128, 128, 128)));
    }

    #[test]
    fn line_is_drawn_along_its_path_only() {
        let mut c = Canvas::new(20, 20, WHITE).unwrap();
        c.polyline(&[(2.0, 10.5), (18.0, 10.5)], 1.0, BLACK);
        assert_eq!(c.pixel(10, 10), Some(BLACK));
        assert_eq!(c.pixel(10, 5), Some(WHITE));
        assert_eq!(c.pixel(10, 12), Some(WHITE));
    }

    #[test]
    fn dashes_alternate_along_a_long_line() {
        let mut c = Canvas::new(1100, 3, WHITE).unwrap();
        // Long enough that float steps near a dash boundary are far below one ulp of the
        // position along the line.
        c.dashed_polyline(
            &[(0.0, 1.5), (1000.0, 1.5), (1090.0, 1.5)],
            1.0,
            7.0,
            5.0,
            BLACK,
        );
        let inked: Vec<bool> = (0..1090).map(|x| c.pixel(x, 1) != Some(WHITE)).collect();
        assert!(inked[3] && !inked[9] && inked[15], "dash, gap, dash");
        // Ink per pixel along the line: 7 of every 12 px, plus what the round caps and the
        // anti-aliased ends add (half a pixel at each end of a dash).
        let ink: f32 = (0..1090)
            .map(|x| 1.0 - f32::from(c.pixel(x, 1).unwrap().0) / 255.0)
            .sum::<f32>()
            / 1090.0;
        assert!((7.0 / 12.0..8.5 / 12.0).contains(&ink), "{ink}");
    }

    #[test]
    fn text_lands_where_anchored() {
        let mut c = Canvas::new(200, 40, WHITE).unwrap();
        let w = c.text_width("ABC", 20.0, Weight::Regular);
        assert!(w > 20.0 && w < 60.0, "{w}");
        c.text(
            100.0,
            30.0,
            "ABC",
            TextStyle::new(20.0, Weight::Regular, BLACK),
            Align::End,
        );
        let inked = |c: &Canvas, x0: usize, x1: usize| {
            (x0..x1).any(|x| (0..40).any(|y| c.pixel(x, y) != Some(WHITE)))
        };
        assert!(inked(&c, 100 - w as usize, 100), "text left of the anchor");
        assert!(!inked(&c, 102, 200), "nothing right of an end anchor");
        assert!(
            !inked(&c, 0, 100 - w as usize - 2),
            "nothing before the text"
        );
    }

    #[test]
    fn fit_text_shortens_with_an_ellipsis() {
        let c = Canvas::new(1, 1, WHITE).unwrap();
        let long = "a rather long class name";
        let s = c.fit_text(long, 12.0, Weight::Regular, 60.0);
        assert!(s.ends_with('…') && s.len() < long.len(), "{s}");
        assert!(c.text_width(&s, 12.0, Weight::Regular) <= 60.0);
        assert_eq!(c.fit_text("ok", 12.0, Weight::Regular, 60.0), "ok");
    }
}
