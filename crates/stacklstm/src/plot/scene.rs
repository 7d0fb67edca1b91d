//! Lays a [`Chart`] out into pixel-space drawing primitives shared by the SVG and PNG writers.
//!
//! Text is measured with the bitmap font's metrics (6 px advance per character at scale 1,
//! 7 px cap height, 2 px descent); the SVG uses a font size whose sans-serif digits are about
//! as wide, so the same layout holds for both.

use super::font::{ADVANCE, ASCENT, DESCENT};
use super::ticks::{self, Ticks};
use super::{Chart, Style, MAX_SIZE, MIN_SIZE, PALETTE};
use crate::error::{Error, Result};

/// An RGB colour.
pub type Rgb = [u8; 3];

/// Horizontal alignment of text relative to its anchor point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    Start,
    Middle,
    End,
}

/// One drawing primitive, in pixels, y down.
#[derive(Debug, Clone, PartialEq)]
pub enum Prim {
    /// A filled rectangle.
    Rect {
        x: f64,
        y: f64,
        w: f64,
        h: f64,
        fill: Rgb,
        opacity: f64,
    },
    /// An open polyline; `dash` = (on, off) lengths.
    Line {
        pts: Vec<(f64, f64)>,
        color: Rgb,
        width: f64,
        dash: Option<(f64, f64)>,
    },
    /// Filled circles of radius `r`.
    Dots {
        pts: Vec<(f64, f64)>,
        r: f64,
        color: Rgb,
    },
    /// Text whose baseline passes through `(x, y)`; `vertical` turns it 90° anticlockwise
    /// about the anchor (reading bottom to top).
    Text {
        x: f64,
        y: f64,
        text: String,
        scale: u32,
        color: Rgb,
        anchor: Anchor,
        vertical: bool,
    },
}

/// A laid-out chart.
#[derive(Debug, Clone)]
pub struct Scene {
    pub width: u32,
    pub height: u32,
    pub title: String,
    pub prims: Vec<Prim>,
}

const WHITE: Rgb = [255, 255, 255];
const INK: Rgb = [34, 34, 34];
const AXIS: Rgb = [90, 90, 90];
const GRID: Rgb = [228, 228, 228];
const MUTED: Rgb = [110, 110, 110];

/// Width in pixels of `text` at `scale`.
pub fn text_width(text: &str, scale: u32) -> f64 {
    let n = text.chars().count() as f64;
    if n == 0.0 {
        0.0
    } else {
        (n * ADVANCE as f64 - 1.0) * scale as f64
    }
}

/// Control characters (newlines, tabs ...) become spaces; surrounding blanks are trimmed.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

/// Shortens `text` with a trailing "..." so it fits in `max_w` pixels at `scale`.
fn fit(text: &str, scale: u32, max_w: f64) -> String {
    if text_width(text, scale) <= max_w {
        return text.to_string();
    }
    let per = (ADVANCE * scale) as f64;
    let keep = ((max_w / per).floor() as usize).saturating_sub(3);
    let mut s: String = text.chars().take(keep).collect();
    s.push_str("...");
    s
}

/// Pixel x of a vertical 1-px line, snapped to a pixel centre so it stays crisp.
fn snap(v: f64) -> f64 {
    v.floor() + 0.5
}

/// Everything that is needed to map data to pixels.
struct Frame {
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
}

impl Frame {
    fn px(&self, x: f64) -> f64 {
        (self.left + (x - self.x0) / (self.x1 - self.x0) * (self.right - self.left))
            .clamp(-1e6, 1e6)
    }
    fn py(&self, y: f64) -> f64 {
        (self.bottom - (y - self.y0) / (self.y1 - self.y0) * (self.bottom - self.top))
            .clamp(-1e6, 1e6)
    }
}

/// Data range `[lo, hi]` widened if degenerate and padded by `frac` on each side.
fn domain(range: Option<(f64, f64)>, frac: f64, fallback: (f64, f64)) -> Result<(f64, f64)> {
    let (lo, hi) = range.unwrap_or(fallback);
    let too_large = || Error::input(format!("data range [{lo:e}, {hi:e}] is too large to plot"));
    let (lo, hi) = ticks::widen(lo, hi).ok_or_else(too_large)?;
    let pad = (hi - lo) * frac;
    let (a, b) = (lo - pad, hi + pad);
    if a.is_finite() && b.is_finite() && (b - a).is_finite() && b > a {
        Ok((a, b))
    } else {
        Err(too_large())
    }
}

fn extend(r: &mut Option<(f64, f64)>, v: f64) {
    *r = Some(match *r {
        None => (v, v),
        Some((a, b)) => (a.min(v), b.max(v)),
    });
}

/// Lays the chart out. Errors on a bad size, a chart too small for its text, or a data range
/// that overflows.
pub fn layout(c: &Chart) -> Result<Scene> {
    for (what, v) in [("width", c.width), ("height", c.height)] {
        if !(MIN_SIZE..=MAX_SIZE).contains(&v) {
            return Err(Error::config(format!(
                "chart {what} {v} is out of range; use {MIN_SIZE}..={MAX_SIZE} pixels"
            )));
        }
    }
    let (w, h) = (c.width as f64, c.height as f64);
    let s: u32 = if c.width >= 640 && c.height >= 360 {
        2
    } else {
        1
    };
    let sf = s as f64;
    let pad = 6.0 * sf + 4.0;
    let asc = |sc: u32| (ASCENT * sc) as f64;
    let line_h = |sc: u32| ((ASCENT + DESCENT) * sc) as f64;
    let tick_len = 5.0;

    // ---- data ---------------------------------------------------------------------------
    // Each series as runs of finite points (in axis units: log10(y) on a log axis).
    let y_of = |y: f64| {
        if c.log_y {
            if y > 0.0 {
                y.log10()
            } else {
                f64::NAN
            }
        } else {
            y
        }
    };
    let mut xr = None;
    let mut yr = None;
    let mut runs: Vec<Vec<Vec<(f64, f64)>>> = Vec::with_capacity(c.series.len());
    for ser in &c.series {
        let mut rs = vec![Vec::new()];
        for &(x, y) in &ser.points {
            let y = y_of(y);
            if x.is_finite() && y.is_finite() {
                extend(&mut xr, x);
                extend(&mut yr, y);
                rs.last_mut().unwrap().push((x, y));
            } else if !rs.last().unwrap().is_empty() {
                rs.push(Vec::new());
            }
        }
        rs.retain(|r| !r.is_empty());
        runs.push(rs);
    }
    let has_data = yr.is_some();
    let markers: Vec<(f64, String)> = c
        .markers
        .iter()
        .filter(|m| m.x.is_finite())
        .map(|m| (m.x, clean(&m.label)))
        .collect();
    for (x, _) in &markers {
        extend(&mut xr, *x);
    }
    let (x0, x1) = domain(xr, 0.02, (0.0, 1.0))?;
    let (y0, y1) = domain(yr, 0.05, (0.0, 1.0))?;

    let mut prims = vec![Prim::Rect {
        x: 0.0,
        y: 0.0,
        w,
        h,
        fill: WHITE,
        opacity: 1.0,
    }];
    let mut overlay = Vec::new(); // text and frame, drawn after the data

    // ---- top: title and legend ------------------------------------------------------------
    let avail = w - 2.0 * pad;
    let mut y = pad;
    let title = clean(&c.title);
    if !title.is_empty() {
        let mut ts = s + 1;
        while ts > s && text_width(&title, ts) > avail {
            ts -= 1;
        }
        let t = fit(&title, ts, avail);
        overlay.push(Prim::Text {
            x: w / 2.0,
            y: y + asc(ts),
            text: t,
            scale: ts,
            color: INK,
            anchor: Anchor::Middle,
            vertical: false,
        });
        y += line_h(ts) + pad * 0.75;
    }

    // Legend entries: (series index, text, width).
    let swatch = 14.0 * sf + 4.0;
    let gap = 5.0 * sf;
    let entries: Vec<(usize, String, f64)> = c
        .series
        .iter()
        .enumerate()
        .filter_map(|(i, ser)| {
            let name = clean(&ser.name);
            if name.is_empty() {
                return None;
            }
            let name = fit(&name, s, avail - swatch - gap);
            let ew = swatch + gap + text_width(&name, s);
            Some((i, name, ew))
        })
        .collect();
    // Once the palette wraps, solid lines without their own colour turn dashed, so series 0
    // and 8 (same colour) still look different.
    let styles: Vec<Style> = c
        .series
        .iter()
        .enumerate()
        .map(|(i, ser)| match ser.style {
            Style::Line if ser.color.is_none() && i >= PALETTE.len() => Style::Dashed,
            st => st,
        })
        .collect();
    let colors: Vec<Rgb> = c
        .series
        .iter()
        .enumerate()
        .map(|(i, ser)| ser.color.unwrap_or(PALETTE[i % PALETTE.len()]))
        .collect();
    let spacing = 12.0 * sf + 4.0;
    let mut rows: Vec<Vec<usize>> = Vec::new();
    let mut row_w = f64::INFINITY;
    for (k, e) in entries.iter().enumerate() {
        if row_w + spacing + e.2 > avail || rows.is_empty() {
            rows.push(vec![k]);
            row_w = e.2;
        } else {
            rows.last_mut().unwrap().push(k);
            row_w += spacing + e.2;
        }
    }
    let row_h = line_h(s) + 4.0 * sf;
    let mut legend = Vec::new();
    for row in &rows {
        let total: f64 =
            row.iter().map(|&k| entries[k].2).sum::<f64>() + spacing * (row.len() - 1) as f64;
        let mut x = (w - total) / 2.0;
        let base = y + asc(s);
        let mid = base - asc(s) / 2.0;
        for &k in row {
            let (i, ref name, ew) = entries[k];
            let col = colors[i];
            let lw = line_width(s);
            match styles[i] {
                Style::Line => legend.push(Prim::Line {
                    pts: vec![(x, mid), (x + swatch, mid)],
                    color: col,
                    width: lw,
                    dash: None,
                }),
                Style::Dashed => legend.push(Prim::Line {
                    pts: vec![(x, mid), (x + swatch, mid)],
                    color: col,
                    width: lw,
                    dash: Some(dash(s)),
                }),
                Style::Points => legend.push(Prim::Dots {
                    pts: vec![(x + swatch / 2.0, mid)],
                    r: dot_r(s) + 0.5,
                    color: col,
                }),
            }
            legend.push(Prim::Text {
                x: x + swatch + gap,
                y: base,
                text: name.clone(),
                scale: s,
                color: INK,
                anchor: Anchor::Start,
                vertical: false,
            });
            x += ew + spacing;
        }
        y += row_h;
    }
    if !rows.is_empty() {
        y += pad * 0.5;
    }
    let top = y.max(pad) + 2.0;

    // ---- bottom: x label and tick labels -------------------------------------------------
    let mut b = h - pad;
    let x_label = clean(&c.x_label);
    let x_label_base = b - (DESCENT * s) as f64;
    if !x_label.is_empty() {
        b -= line_h(s) + 4.0 * sf;
    }
    let x_tick_base = b - (DESCENT * s) as f64;
    b -= line_h(s) + tick_len + 3.0;
    let bottom = b;
    if bottom - top < 30.0 {
        return Err(Error::config(format!(
            "chart {}x{} is too small for its title, legend and labels; make it taller",
            c.width, c.height
        )));
    }

    // ---- y ticks, then the left margin ----------------------------------------------------
    let y_target = (((bottom - top) / (34.0 * sf)).floor() as usize).clamp(2, 12);
    let yt: Ticks = if c.log_y {
        ticks::log_ticks(y0, y1, y_target)
    } else {
        ticks::nice_ticks(y0, y1, y_target)
    };
    let max_yl = yt
        .labels
        .iter()
        .map(|l| text_width(l, s))
        .fold(0.0, f64::max);
    let y_label = clean(&c.y_label);
    let mut left = pad;
    let y_label_x = pad + asc(s);
    if !y_label.is_empty() {
        left += line_h(s) + 5.0 * sf;
    }
    left += max_yl + 4.0 + tick_len;
    let right = w - pad - 3.0 * sf;
    if right - left < 30.0 {
        return Err(Error::config(format!(
            "chart {}x{} is too narrow for its tick labels; make it wider",
            c.width, c.height
        )));
    }
    let (left, right, top, bottom) = (left.round(), right.round(), top.round(), bottom.round());
    let f = Frame {
        left,
        right,
        top,
        bottom,
        x0,
        x1,
        y0,
        y1,
    };

    // ---- x ticks: as many as fit without overlapping labels -------------------------------
    let plot_w = right - left;
    let mut x_target = ((plot_w / (40.0 * sf)).floor() as usize).clamp(2, 20);
    let xt = loop {
        let t = ticks::nice_ticks(x0, x1, x_target);
        let pos: Vec<f64> = t.values.iter().map(|&v| f.px(v)).collect();
        let ok = t.labels.windows(2).zip(pos.windows(2)).all(|(l, p)| {
            p[1] - p[0]
                >= (text_width(&l[0], s) + text_width(&l[1], s)) / 2.0
                    + 4.0 * ADVANCE as f64 * sf / 2.0
        });
        if ok || x_target <= 2 {
            break t;
        }
        x_target -= 1;
    };

    // ---- grid -------------------------------------------------------------------------------
    for &v in &yt.values {
        let yy = snap(f.py(v));
        prims.push(Prim::Line {
            pts: vec![(left, yy), (right, yy)],
            color: GRID,
            width: 1.0,
            dash: None,
        });
    }
    for &v in &xt.values {
        let xx = snap(f.px(v));
        prims.push(Prim::Line {
            pts: vec![(xx, top), (xx, bottom)],
            color: GRID,
            width: 1.0,
            dash: None,
        });
    }

    // ---- series -------------------------------------------------------------------------------
    for i in 0..c.series.len() {
        let col = colors[i];
        let lw = line_width(s);
        for run in &runs[i] {
            let pts: Vec<(f64, f64)> = run.iter().map(|&(x, y)| (f.px(x), f.py(y))).collect();
            match styles[i] {
                Style::Points => prims.push(Prim::Dots {
                    pts,
                    r: dot_r(s),
                    color: col,
                }),
                _ if pts.len() == 1 => prims.push(Prim::Dots {
                    pts,
                    r: dot_r(s),
                    color: col,
                }),
                Style::Line => prims.push(Prim::Line {
                    pts,
                    color: col,
                    width: lw,
                    dash: None,
                }),
                Style::Dashed => prims.push(Prim::Line {
                    pts,
                    color: col,
                    width: lw,
                    dash: Some(dash(s)),
                }),
            }
        }
    }

    // ---- markers ----------------------------------------------------------------------------
    // Lines first, then labels on white boxes, so no line crosses a label. A label goes right
    // of its line, or left where it would run past the plot or across another marker's line,
    // and drops to a lower row where it would touch a label already placed.
    let lines: Vec<f64> = markers.iter().map(|(mx, _)| snap(f.px(*mx))).collect();
    for &xx in &lines {
        prims.push(Prim::Line {
            pts: vec![(xx, top), (xx, bottom)],
            color: AXIS,
            width: 1.5,
            dash: Some((5.0 * sf, 3.0 * sf)),
        });
    }
    let mut label_rows: Vec<Vec<(f64, f64)>> = Vec::new();
    let min_gap = (ADVANCE * s) as f64;
    for ((_, label), &xx) in markers.iter().zip(&lines) {
        if label.is_empty() {
            continue;
        }
        let label = fit(label, s, (right - left) / 2.0);
        let tw = text_width(&label, s);
        let crosses = |a: f64, b: f64| {
            lines
                .iter()
                .any(|&l| l != xx && l >= a - 2.0 && l <= b + 2.0)
        };
        let right_x = xx + 4.0;
        let left_x = xx - 4.0 - tw;
        let fits_right = right_x + tw <= right - 2.0;
        let fits_left = left_x >= left + 2.0;
        let (lx0, anchor, tx) = if fits_right && !crosses(right_x, right_x + tw) {
            (right_x, Anchor::Start, right_x)
        } else if fits_left && !crosses(left_x, left_x + tw) {
            (left_x, Anchor::End, xx - 4.0)
        } else if fits_right {
            (right_x, Anchor::Start, right_x)
        } else {
            (left_x, Anchor::End, xx - 4.0)
        };
        let span = (lx0 - 3.0, lx0 + tw + 3.0);
        let row = label_rows
            .iter()
            .position(|r| {
                r.iter()
                    .all(|&(a, b)| span.1 + min_gap < a || span.0 > b + min_gap)
            })
            .unwrap_or_else(|| {
                label_rows.push(Vec::new());
                label_rows.len() - 1
            });
        label_rows[row].push(span);
        let base = top + 4.0 + asc(s) + row as f64 * (line_h(s) + 4.0);
        prims.push(Prim::Rect {
            x: span.0,
            y: base - asc(s) - 3.0,
            w: span.1 - span.0,
            h: line_h(s) + 4.0,
            fill: WHITE,
            opacity: 0.85,
        });
        prims.push(Prim::Text {
            x: tx,
            y: base,
            text: label,
            scale: s,
            color: INK,
            anchor,
            vertical: false,
        });
    }

    // ---- frame, ticks and labels ------------------------------------------------------------
    let (fl, fr, ft, fb) = (left - 0.5, right + 0.5, top - 0.5, bottom + 0.5);
    prims.push(Prim::Line {
        pts: vec![(fl, ft), (fr, ft), (fr, fb), (fl, fb), (fl, ft)],
        color: AXIS,
        width: 1.0,
        dash: None,
    });
    for (v, label) in yt.values.iter().zip(&yt.labels) {
        let yy = snap(f.py(*v));
        prims.push(Prim::Line {
            pts: vec![(fl - tick_len, yy), (fl, yy)],
            color: AXIS,
            width: 1.0,
            dash: None,
        });
        overlay.push(Prim::Text {
            x: fl - tick_len - 4.0,
            y: (yy + asc(s) / 2.0).round(),
            text: label.clone(),
            scale: s,
            color: INK,
            anchor: Anchor::End,
            vertical: false,
        });
    }
    for (v, label) in xt.values.iter().zip(&xt.labels) {
        let xx = snap(f.px(*v));
        prims.push(Prim::Line {
            pts: vec![(xx, fb), (xx, fb + tick_len)],
            color: AXIS,
            width: 1.0,
            dash: None,
        });
        let half = text_width(label, s) / 2.0;
        let cx = xx.clamp(half + 2.0, (w - half - 2.0).max(half + 2.0));
        overlay.push(Prim::Text {
            x: cx,
            y: x_tick_base,
            text: label.clone(),
            scale: s,
            color: INK,
            anchor: Anchor::Middle,
            vertical: false,
        });
    }
    if !x_label.is_empty() {
        overlay.push(Prim::Text {
            x: ((left + right) / 2.0).round(),
            y: x_label_base,
            text: fit(&x_label, s, w - 2.0 * pad),
            scale: s,
            color: INK,
            anchor: Anchor::Middle,
            vertical: false,
        });
    }
    if !y_label.is_empty() {
        overlay.push(Prim::Text {
            x: y_label_x,
            y: ((top + bottom) / 2.0).round(),
            text: fit(&y_label, s, bottom - top),
            scale: s,
            color: INK,
            anchor: Anchor::Middle,
            vertical: true,
        });
    }
    if !has_data {
        overlay.push(Prim::Text {
            x: ((left + right) / 2.0).round(),
            y: ((top + bottom) / 2.0).round(),
            text: if c.series.is_empty() {
                "no data".into()
            } else {
                "no finite data".into()
            },
            scale: s,
            color: MUTED,
            anchor: Anchor::Middle,
            vertical: false,
        });
    }
    prims.extend(legend);
    prims.extend(overlay);
    Ok(Scene {
        width: c.width,
        height: c.height,
        title,
        prims,
    })
}

fn line_width(s: u32) -> f64 {
    if s >= 2 {
        2.0
    } else {
        1.5
    }
}

fn dot_r(s: u32) -> f64 {
    1.5 + s as f64
}

fn dash(s: u32) -> (f64, f64) {
    (5.0 * s as f64 + 2.0, 3.0 * s as f64 + 1.0)
}
