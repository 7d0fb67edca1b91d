//! Line charts for training curves and forecasts, written as SVG or PNG.
//!
//! A [`Chart`] holds a title, axis labels, [`Series`] and vertical [`Marker`]s. It is laid out
//! once into a list of drawing primitives, which is then either written as hand-made SVG
//! ([`Chart::to_svg`]) or rasterised by this module itself and encoded as PNG
//! ([`Chart::to_png`]), so both formats show the same picture. [`Chart::save`] picks the format
//! from the file extension and writes atomically.
//!
//! # Why the PNG is rasterised here
//!
//! The alternatives were `resvg`/`tiny-skia` (renders the SVG, but needs a TrueType font
//! embedded in the binary and adds a large dependency tree — well over 30 s of clean build on
//! two cores) or `plotters` (also heavy, and its bitmap text needs a system font or
//! `ab_glyph` plus an embedded font). Drawing anti-aliased lines, dots and rectangles is a few
//! hundred lines, and text uses a small hand-drawn bitmap font ([`font`]) scaled by an integer
//! factor. The only dependency is the `png` encoder (pure Rust; with `flate2`, `miniz_oxide`,
//! `fdeflate`, `crc32fast` it adds about 7 s to a clean release build on two cores: 15 s for
//! this module, `thiserror` and `png` together, against 5 s for `thiserror` alone).
//!
//! ```no_run
//! use stacklstm::plot::{Chart, Series, Style};
//! # fn main() -> stacklstm::error::Result<()> {
//! let loss = [0.9, 0.5, 0.3, 0.22, 0.2];
//! let val = [1.0, 0.6, 0.4, 0.35, 0.36];
//! Chart::loss_curves("Training", &loss, Some(&val))
//!     .log_y(true)
//!     .save(std::path::Path::new("loss.png"))?;
//! # Ok(()) }
//! ```

use std::path::Path;

use crate::error::{Error, Result};

pub mod font;
mod raster;
mod scene;
mod svg;
pub mod ticks;

pub use ticks::{log_ticks, nice_ticks, Ticks};

/// Okabe–Ito colours, distinguishable with the common forms of colour blindness. Series without
/// an explicit colour take them in this order (yellow last: it is faint on white).
pub const PALETTE: [[u8; 3]; 8] = [
    [0, 114, 178],   // blue
    [213, 94, 0],    // vermillion
    [0, 158, 115],   // bluish green
    [204, 121, 167], // reddish purple
    [230, 159, 0],   // orange
    [86, 180, 233],  // sky blue
    [0, 0, 0],       // black
    [240, 228, 66],  // yellow
];

/// Smallest accepted width or height, in pixels.
pub const MIN_SIZE: u32 = 160;
/// Largest accepted width or height, in pixels.
pub const MAX_SIZE: u32 = 4096;

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Style {
    /// A solid line through the points.
    #[default]
    Line,
    /// A dashed line through the points (e.g. a forecast).
    Dashed,
    /// A dot at each point, no line.
    Points,
}

/// One named set of `(x, y)` points.
///
/// Non-finite points (and, on a log axis, points with `y <= 0`) are skipped and break the line.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Name shown in the legend (an empty name keeps the series out of the legend).
    pub name: String,
    /// The points, drawn in the given order.
    pub points: Vec<(f64, f64)>,
    /// Line, dashed line or dots.
    pub style: Style,
    /// Colour; `None` takes the next colour of [`PALETTE`].
    pub color: Option<[u8; 3]>,
}

impl Series {
    /// A solid-line series.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Series {
            name: name.into(),
            points,
            style: Style::Line,
            color: None,
        }
    }

    /// A series whose x values are `x0, x0 + 1, ...` for the values `ys`.
    pub fn from_values(name: impl Into<String>, x0: f64, ys: &[f64]) -> Self {
        let points = ys
            .iter()
            .enumerate()
            .map(|(i, &y)| (x0 + i as f64, y))
            .collect();
        Series::new(name, points)
    }

    /// Sets the style.
    pub fn style(mut self, style: Style) -> Self {
        self.style = style;
        self
    }

    /// Sets an explicit colour.
    pub fn color(mut self, rgb: [u8; 3]) -> Self {
        self.color = Some(rgb);
        self
    }
}

/// A vertical dashed line with a label, e.g. where the test split or the forecast starts.
///
/// A marker with a non-finite `x` is not drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    /// Position on the x axis.
    pub x: f64,
    /// Text drawn next to the top of the line.
    pub label: String,
}

impl Marker {
    /// A marker at `x`.
    pub fn new(x: f64, label: impl Into<String>) -> Self {
        Marker {
            x,
            label: label.into(),
        }
    }
}

/// A line chart. Build it with [`Chart::new`] and the builder methods, or set the fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// Title above the plot (may be empty).
    pub title: String,
    /// Label under the x axis (may be empty).
    pub x_label: String,
    /// Label left of the y axis, drawn rotated (may be empty).
    pub y_label: String,
    /// The series, drawn in order (later ones on top).
    pub series: Vec<Series>,
    /// Vertical marker lines.
    pub markers: Vec<Marker>,
    /// Width in pixels (SVG user units), [`MIN_SIZE`]..=[`MAX_SIZE`].
    pub width: u32,
    /// Height in pixels, [`MIN_SIZE`]..=[`MAX_SIZE`].
    pub height: u32,
    /// Logarithmic y axis; points with `y <= 0` are then skipped.
    pub log_y: bool,
}

impl Chart {
    /// An empty 960x540 chart with a title.
    pub fn new(title: impl Into<String>) -> Self {
        Chart {
            title: title.into(),
            x_label: String::new(),
            y_label: String::new(),
            series: Vec::new(),
            markers: Vec::new(),
            width: 960,
            height: 540,
            log_y: false,
        }
    }

    /// Loss curves: `loss` (and `val_loss` if given) against 1-based epochs.
    pub fn loss_curves(title: impl Into<String>, loss: &[f64], val_loss: Option<&[f64]>) -> Self {
        let mut c = Chart::new(title)
            .x_label("epoch")
            .y_label("loss")
            .series(Series::from_values("loss", 1.0, loss));
        if let Some(v) = val_loss {
            c = c.series(Series::from_values("val_loss", 1.0, v));
        }
        c
    }

    /// A forecast plot over time steps `0, 1, ...`:
    ///
    /// * `actual`: the whole observed series (solid);
    /// * `predicted`: the model's predictions for `actual[test_start..]` (solid, drawn from
    ///   `test_start`), with a marker "test" at `test_start`;
    /// * `forecast`: a multi-step forecast past the end (dashed, from `actual.len()`, joined to
    ///   the last actual value), with a marker "forecast" there.
    ///
    /// Empty slices are left out, and so are their markers.
    pub fn forecast(
        title: impl Into<String>,
        actual: &[f64],
        test_start: usize,
        predicted: &[f64],
        forecast: &[f64],
    ) -> Self {
        let mut c = Chart::new(title).x_label("time step").y_label("value");
        c = c.series(Series::from_values("actual", 0.0, actual));
        if !predicted.is_empty() {
            c = c
                .series(Series::from_values(
                    "predicted (test)",
                    test_start as f64,
                    predicted,
                ))
                .marker(test_start as f64, "test");
        }
        if !forecast.is_empty() {
            let start = actual.len() as f64;
            let mut s = Series::from_values("forecast", start, forecast).style(Style::Dashed);
            if let Some(&last) = actual.last() {
                s.points.insert(0, (start - 1.0, last));
            }
            c = c.series(s).marker(start - 0.5, "forecast");
        }
        c
    }

    /// Sets the x-axis label.
    pub fn x_label(mut self, label: impl Into<String>) -> Self {
        self.x_label = label.into();
        self
    }

    /// Sets the y-axis label.
    pub fn y_label(mut self, label: impl Into<String>) -> Self {
        self.y_label = label.into();
        self
    }

    /// Sets the size in pixels.
    pub fn size(mut self, width: u32, height: u32) -> Self {
        self.width = width;
        self.height = height;
        self
    }

    /// Uses a logarithmic y axis.
    pub fn log_y(mut self, on: bool) -> Self {
        self.log_y = on;
        self
    }

    /// Adds a series.
    pub fn series(mut self, series: Series) -> Self {
        self.series.push(series);
        self
    }

    /// Adds a solid-line series.
    pub fn line(self, name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        self.series(Series::new(name, points))
    }

    /// Adds a vertical marker.
    pub fn marker(mut self, x: f64, label: impl Into<String>) -> Self {
        self.markers.push(Marker::new(x, label));
        self
    }

    /// The chart as an SVG document.
    ///
    /// Errors: [`Error::InvalidConfig`] for a size outside [`MIN_SIZE`]..=[`MAX_SIZE`] or one
    /// too small for the labels; [`Error::InvalidInput`] for data whose range cannot be
    /// represented (e.g. from `-f64::MAX` to `f64::MAX`).
    pub fn to_svg(&self) -> Result<String> {
        let scene = scene::layout(self)?;
        Ok(svg::render(&scene))
    }

    /// The chart as PNG bytes (8-bit RGB). Same errors as [`Chart::to_svg`].
    pub fn to_png(&self) -> Result<Vec<u8>> {
        let scene = scene::layout(self)?;
        raster::render_png(&scene)
    }

    /// Writes the chart to `path`, as SVG or PNG by its extension (case-insensitive).
    ///
    /// The file is written atomically: rendered in memory, written to a temporary file in the
    /// same directory, flushed to disk, then renamed over `path`. On any error the previous
    /// file (if any) is untouched and the temporary file is removed.
    ///
    /// Errors: [`Error::UnsupportedFormat`] for another extension, the rendering errors of
    /// [`Chart::to_svg`], [`Error::Io`] for file-system errors.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = match check_path(path)? {
            ChartFormat::Svg => self.to_svg()?.into_bytes(),
            ChartFormat::Png => self.to_png()?,
        };
        crate::io::write_atomic(path, &bytes)
    }
}

/// The file formats [`Chart::save`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChartFormat {
    /// `.svg`
    Svg,
    /// `.png`
    Png,
}

/// The format [`Chart::save`] would write to `path`, by its extension (case-insensitive):
/// lets a program refuse a bad plot path before doing the work the plot shows.
///
/// Errors: [`Error::UnsupportedFormat`] for an extension other than `.svg` or `.png`.
pub fn check_path(path: &Path) -> Result<ChartFormat> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "svg" => Ok(ChartFormat::Svg),
        "png" => Ok(ChartFormat::Png),
        _ => Err(Error::UnsupportedFormat {
            found: if ext.is_empty() {
                format!(
                    "chart file name {:?} (no extension)",
                    path.display().to_string()
                )
            } else {
                format!("chart file extension .{ext}")
            },
            supported: "svg, png".into(),
        }),
    }
}

#[cfg(test)]
mod tests;
