//! Rasterises a [`Scene`] into an RGB image and encodes it as PNG.
//!
//! Lines and dots are anti-aliased by coverage: a pixel's coverage is how far its centre lies
//! inside the stroke (distance to the segment vs half the width), clamped to [0, 1]. All
//! segments of one polyline go into one coverage mask (taking the maximum), which is blended
//! once, so joints are not drawn twice. Text uses the bitmap font at an integer scale.

use super::font::{self, ADVANCE, ASCENT, GLYPH_W};
use super::scene::{text_width, Anchor, Prim, Rgb, Scene};
use crate::error::{Error, Result};

/// A line segment from one point to another, in pixels.
type Seg = ((f64, f64), (f64, f64));

/// An 8-bit RGB image.
pub struct Canvas {
    w: usize,
    h: usize,
    px: Vec<u8>,
}

impl Canvas {
    fn new(w: u32, h: u32) -> Self {
        let (w, h) = (w as usize, h as usize);
        Canvas {
            w,
            h,
            px: vec![255; w * h * 3],
        }
    }

    #[inline]
    fn blend(&mut self, x: usize, y: usize, c: Rgb, a: f64) {
        if x >= self.w || y >= self.h || a <= 0.0 {
            return;
        }
        let a = a.min(1.0);
        let i = (y * self.w + x) * 3;
        for (p, &ck) in self.px[i..i + 3].iter_mut().zip(&c) {
            let v = *p as f64;
            *p = (v + (ck as f64 - v) * a).round().clamp(0.0, 255.0) as u8;
        }
    }

    /// Pixel rectangle `[x0, x1) x [y0, y1)` from float bounds, clamped to the canvas.
    fn clip(&self, x0: f64, y0: f64, x1: f64, y1: f64) -> Option<(usize, usize, usize, usize)> {
        let cx = |v: f64| v.clamp(0.0, self.w as f64) as usize;
        let cy = |v: f64| v.clamp(0.0, self.h as f64) as usize;
        let (a, b, c, d) = (cx(x0.floor()), cy(y0.floor()), cx(x1.ceil()), cy(y1.ceil()));
        if a < c && b < d {
            Some((a, b, c, d))
        } else {
            None
        }
    }

    fn fill_rect(&mut self, x: f64, y: f64, w: f64, h: f64, c: Rgb, opacity: f64) {
        if let Some((x0, y0, x1, y1)) =
            self.clip(x.round(), y.round(), (x + w).round(), (y + h).round())
        {
            for yy in y0..y1 {
                for xx in x0..x1 {
                    self.blend(xx, yy, c, opacity);
                }
            }
        }
    }

    /// Draws round-capped segments (and dots, as zero-length segments) of half-width `hw`
    /// through one shared coverage mask.
    fn strokes(&mut self, segs: &[Seg], hw: f64, c: Rgb) {
        let reach = hw + 1.0;
        let mut bb = (
            f64::INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NEG_INFINITY,
        );
        for &((ax, ay), (bx, by)) in segs {
            bb = (
                bb.0.min(ax.min(bx)),
                bb.1.min(ay.min(by)),
                bb.2.max(ax.max(bx)),
                bb.3.max(ay.max(by)),
            );
        }
        let Some((mx0, my0, mx1, my1)) =
            self.clip(bb.0 - reach, bb.1 - reach, bb.2 + reach, bb.3 + reach)
        else {
            return;
        };
        let mw = mx1 - mx0;
        let mut mask = vec![0f32; mw * (my1 - my0)];
        for &((ax, ay), (bx, by)) in segs {
            let Some((x0, y0, x1, y1)) = self.clip(
                ax.min(bx) - reach,
                ay.min(by) - reach,
                ax.max(bx) + reach,
                ay.max(by) + reach,
            ) else {
                continue;
            };
            let (dx, dy) = (bx - ax, by - ay);
            let len2 = dx * dx + dy * dy;
            for y in y0..y1 {
                let py = y as f64 + 0.5;
                for x in x0..x1 {
                    let px = x as f64 + 0.5;
                    let t = if len2 > 0.0 {
                        (((px - ax) * dx + (py - ay) * dy) / len2).clamp(0.0, 1.0)
                    } else {
                        0.0
                    };
                    let (ex, ey) = (px - (ax + t * dx), py - (ay + t * dy));
                    let cov = (hw + 0.5 - (ex * ex + ey * ey).sqrt()).clamp(0.0, 1.0) as f32;
                    let m = &mut mask[(y - my0) * mw + (x - mx0)];
                    if cov > *m {
                        *m = cov;
                    }
                }
            }
        }
        for y in my0..my1 {
            for x in mx0..mx1 {
                let a = mask[(y - my0) * mw + (x - mx0)];
                if a > 0.0 {
                    self.blend(x, y, c, a as f64);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)] // mirrors the fields of `Prim::Text`
    fn text(
        &mut self,
        x: f64,
        y: f64,
        text: &str,
        scale: u32,
        c: Rgb,
        anchor: Anchor,
        vertical: bool,
    ) {
        let tw = text_width(text, scale);
        let start = match anchor {
            Anchor::Start => 0.0,
            Anchor::Middle => -(tw / 2.0).round(),
            Anchor::End => -tw,
        };
        let (ox, oy) = (x.round() as i64, y.round() as i64);
        let s = scale as i64;
        for (i, ch) in text.chars().enumerate() {
            let g = font::glyph(ch);
            let u0 = start as i64 + i as i64 * (ADVANCE as i64) * s;
            for (row, bits) in g.iter().enumerate() {
                for col in 0..GLYPH_W as i64 {
                    if bits & (1 << (GLYPH_W as i64 - 1 - col)) == 0 {
                        continue;
                    }
                    // (u, v): along the text and down from the baseline.
                    let u = u0 + col * s;
                    let v = (row as i64 - ASCENT as i64) * s;
                    for du in 0..s {
                        for dv in 0..s {
                            let (sx, sy) = if vertical {
                                (ox + v + dv, oy - (u + du) - 1)
                            } else {
                                (ox + u + du, oy + v + dv)
                            };
                            if sx >= 0 && sy >= 0 {
                                self.blend(sx as usize, sy as usize, c, 1.0);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Splits a polyline into dash segments of `on` length separated by `off` gaps; the pattern
/// continues across vertices.
fn dashed(pts: &[(f64, f64)], on: f64, off: f64) -> Vec<Seg> {
    let mut out = Vec::new();
    if !(on >= 0.5 && off >= 0.0 && on.is_finite() && off.is_finite()) {
        return out;
    }
    let mut drawing = true; // in the "on" part of the pattern
    let mut left = on; // length left in the current part
    for w in pts.windows(2) {
        let (a, b) = (w[0], w[1]);
        let len = ((b.0 - a.0).powi(2) + (b.1 - a.1).powi(2)).sqrt();
        if len.is_nan() || len <= 0.0 || len > 1e7 {
            continue;
        }
        let at = |d: f64| (a.0 + (b.0 - a.0) * d / len, a.1 + (b.1 - a.1) * d / len);
        let mut d = 0.0;
        // Each pass either ends this segment or finishes a part of the pattern, and parts
        // are at least `on` or `off` long, so this terminates; the cap is a second guard.
        for _ in 0..(4.0 * len / (on + off) + 4.0) as usize {
            if len - d < left {
                if drawing {
                    out.push((at(d), b));
                }
                left -= len - d;
                break;
            }
            if drawing {
                out.push((at(d), at(d + left)));
            }
            d += left;
            drawing = !drawing || off == 0.0;
            left = if drawing { on } else { off };
        }
    }
    out
}

/// Rasterises the scene.
pub fn render(scene: &Scene) -> Canvas {
    let mut cv = Canvas::new(scene.width, scene.height);
    for p in &scene.prims {
        match p {
            Prim::Rect {
                x,
                y,
                w,
                h,
                fill,
                opacity,
            } => cv.fill_rect(*x, *y, *w, *h, *fill, *opacity),
            Prim::Line {
                pts,
                color,
                width,
                dash,
            } => {
                let segs = match dash {
                    Some((on, off)) => dashed(pts, *on, *off),
                    None => pts.windows(2).map(|w| (w[0], w[1])).collect(),
                };
                cv.strokes(&segs, width / 2.0, *color);
            }
            Prim::Dots { pts, r, color } => {
                // One small mask per dot: far-apart dots never share a huge bounding box.
                for &p in pts {
                    cv.strokes(&[(p, p)], *r, *color);
                }
            }
            Prim::Text {
                x,
                y,
                text,
                scale,
                color,
                anchor,
                vertical,
            } => cv.text(*x, *y, text, *scale, *color, *anchor, *vertical),
        }
    }
    cv
}

/// Rasterises the scene and encodes it as an 8-bit RGB PNG.
pub fn render_png(scene: &Scene) -> Result<Vec<u8>> {
    let cv = render(scene);
    let mut out = Vec::new();
    let err = |e: png::EncodingError| Error::format("<png>", format!("PNG encoding failed: {e}"));
    {
        let mut enc = png::Encoder::new(&mut out, scene.width, scene.height);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header().map_err(err)?;
        wr.write_image_data(&cv.px).map_err(err)?;
        wr.finish().map_err(err)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dashes_cover_about_on_fraction() {
        let segs = dashed(&[(0.0, 0.0), (100.0, 0.0)], 6.0, 4.0);
        let total: f64 = segs.iter().map(|(a, b)| b.0 - a.0).sum();
        assert!((total - 60.0).abs() < 1e-9, "{total}");
        assert!(dashed(&[(0.0, 0.0), (f64::NAN, 1.0)], 6.0, 4.0).is_empty());
        // Long polylines with awkward lengths keep their pattern to the end.
        let pts: Vec<(f64, f64)> = (0..2000)
            .map(|i| (i as f64 * 0.4371, (i as f64).sin() * 0.3))
            .collect();
        let segs = dashed(&pts, 12.0, 7.0);
        let last = segs.last().unwrap().1;
        assert!(last.0 > 874.0 - 19.0, "dashes stop at {last:?}");
        assert!(!dashed(&[(0.0, 0.0), (10.0, 0.0)], 3.0, 0.0).is_empty());
    }
}
