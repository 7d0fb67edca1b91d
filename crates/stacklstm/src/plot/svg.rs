//! Writes a [`Scene`] as a standalone SVG document.

use std::fmt::Write;

use super::scene::{Anchor, Prim, Rgb, Scene};

/// Font size per unit of text scale: sans-serif digits at 9.5 px are about as wide as the
/// bitmap font's 6-px advance, and capitals about as tall as its 7 rows.
const FONT_PX: f64 = 9.5;

/// Escapes text for XML content and attribute values. Characters that XML 1.0 does not allow
/// at all (most control characters, U+FFFE, U+FFFF) become U+FFFD.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// A coordinate with at most two decimals and no trailing zeros.
fn num(v: f64) -> String {
    let s = format!("{:.2}", v);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

fn rgb(c: Rgb) -> String {
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

/// The SVG document.
pub fn render(scene: &Scene) -> String {
    let mut o = String::with_capacity(16 * 1024);
    let (w, h) = (scene.width, scene.height);
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="DejaVu Sans, Verdana, Arial, Helvetica, sans-serif">"#
    );
    if !scene.title.is_empty() {
        let _ = writeln!(o, "<title>{}</title>", escape(&scene.title));
    }
    for p in &scene.prims {
        match p {
            Prim::Rect {
                x,
                y,
                w,
                h,
                fill,
                opacity,
            } => {
                let _ = write!(
                    o,
                    r#"<rect x="{}" y="{}" width="{}" height="{}" fill="{}""#,
                    num(*x),
                    num(*y),
                    num(*w),
                    num(*h),
                    rgb(*fill)
                );
                if *opacity < 1.0 {
                    let _ = write!(o, r#" fill-opacity="{}""#, num(*opacity));
                }
                o.push_str("/>\n");
            }
            Prim::Line {
                pts,
                color,
                width,
                dash,
            } => {
                if pts.len() < 2 {
                    continue;
                }
                o.push_str(r#"<polyline points=""#);
                for (i, (x, y)) in pts.iter().enumerate() {
                    if i > 0 {
                        o.push(' ');
                    }
                    let _ = write!(o, "{},{}", num(*x), num(*y));
                }
                let _ = write!(
                    o,
                    r#"" fill="none" stroke="{}" stroke-width="{}" stroke-linejoin="round""#,
                    rgb(*color),
                    num(*width)
                );
                if let Some((on, off)) = dash {
                    let _ = write!(o, r#" stroke-dasharray="{} {}""#, num(*on), num(*off));
                } else if pts.len() > 2 || *width > 1.0 {
                    o.push_str(r#" stroke-linecap="round""#);
                }
                o.push_str("/>\n");
            }
            Prim::Dots { pts, r, color } => {
                let _ = write!(o, r#"<g fill="{}">"#, rgb(*color));
                for (x, y) in pts {
                    let _ = write!(
                        o,
                        r#"<circle cx="{}" cy="{}" r="{}"/>"#,
                        num(*x),
                        num(*y),
                        num(*r)
                    );
                }
                o.push_str("</g>\n");
            }
            Prim::Text {
                x,
                y,
                text,
                scale,
                color,
                anchor,
                vertical,
            } => {
                let anchor = match anchor {
                    Anchor::Start => "start",
                    Anchor::Middle => "middle",
                    Anchor::End => "end",
                };
                let _ = write!(
                    o,
                    r#"<text x="{}" y="{}" font-size="{}" fill="{}" text-anchor="{anchor}""#,
                    num(*x),
                    num(*y),
                    num(FONT_PX * *scale as f64),
                    rgb(*color)
                );
                if *vertical {
                    let _ = write!(o, r#" transform="rotate(-90 {} {})""#, num(*x), num(*y));
                }
                let _ = writeln!(o, ">{}</text>", escape(text));
            }
        }
    }
    o.push_str("</svg>\n");
    o
}
