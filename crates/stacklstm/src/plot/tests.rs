use super::*;
use std::path::PathBuf;

fn loss_chart() -> Chart {
    let loss: Vec<f64> = (0..40).map(|e| 0.02 + (-(e as f64) / 8.0).exp()).collect();
    let val: Vec<f64> = (0..40)
        .map(|e| 0.05 + 1.1 * (-(e as f64) / 9.0).exp() + 0.0005 * e as f64)
        .collect();
    Chart::loss_curves("Training <loss> & \"val\"", &loss, Some(&val))
}

fn forecast_chart() -> Chart {
    let actual: Vec<f64> = (0..120)
        .map(|t| (t as f64 / 8.0).sin() * 10.0 + t as f64 * 0.1)
        .collect();
    let pred: Vec<f64> = actual[90..].iter().map(|v| v + 0.7).collect();
    let fc: Vec<f64> = (120..150)
        .map(|t| (t as f64 / 8.0).sin() * 9.0 + t as f64 * 0.1)
        .collect();
    Chart::forecast("Forecast", &actual, 90, &pred, &fc)
}

fn decode(bytes: &[u8]) -> (png::OutputInfo, Vec<u8>) {
    let dec = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut r = dec.read_info().expect("png header");
    let mut buf = vec![0; r.output_buffer_size().unwrap()];
    let info = r.next_frame(&mut buf).expect("png frame");
    buf.truncate(info.buffer_size());
    (info, buf)
}

fn distinct_colors(buf: &[u8]) -> usize {
    let mut set = std::collections::HashSet::new();
    for p in buf.chunks(3) {
        set.insert([p[0], p[1], p[2]]);
    }
    set.len()
}

fn parse_ok(svg: &str) -> roxmltree::Document<'_> {
    roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("bad XML: {e}\n{svg}"))
}

fn texts(doc: &roxmltree::Document) -> Vec<String> {
    doc.descendants()
        .filter(|n| n.has_tag_name("text") || n.has_tag_name("title"))
        .map(|n| n.text().unwrap_or("").to_string())
        .collect()
}

#[test]
fn svg_is_well_formed_and_has_labels_and_legend() {
    let c = loss_chart();
    let svg = c.to_svg().unwrap();
    let doc = parse_ok(&svg);
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let t = texts(&doc);
    for want in ["Training <loss> & \"val\"", "epoch", "loss", "val_loss"] {
        assert!(t.iter().any(|s| s == want), "missing {want:?} in {t:?}");
    }
    assert!(svg.contains("&lt;loss&gt; &amp; &quot;val&quot;"));
    assert!(!svg.contains("<loss>"));
    assert!(
        doc.descendants()
            .filter(|n| n.has_tag_name("polyline"))
            .count()
            > 2
    );
}

#[test]
fn svg_escapes_everything_hostile() {
    let c = Chart::new("a<b>&c'd\"e\u{1}f\u{FFFE}g\nh")
        .x_label("</svg><script>")
        .y_label("&amp;")
        .line("]]><!--", vec![(0.0, 1.0), (1.0, 2.0)])
        .marker(0.5, "train | test <split>");
    let svg = c.to_svg().unwrap();
    let doc = parse_ok(&svg);
    let t = texts(&doc);
    assert!(t.iter().any(|s| s == "</svg><script>"), "{t:?}");
    assert!(t.iter().any(|s| s == "&amp;"));
    assert!(t.iter().any(|s| s == "]]><!--"));
    assert!(t.iter().any(|s| s == "train | test <split>"));
    assert!(t.iter().any(|s| s == "a<b>&c'd\"e f\u{FFFD}g h"), "{t:?}");
}

#[test]
fn png_decodes_to_requested_size_and_is_not_blank() {
    for (c, w, h) in [
        (loss_chart(), 960, 540),
        (forecast_chart().size(400, 300), 400, 300),
    ] {
        let bytes = c.to_png().unwrap();
        let (info, buf) = decode(&bytes);
        assert_eq!((info.width, info.height), (w, h));
        assert_eq!(info.color_type, png::ColorType::Rgb);
        assert!(
            distinct_colors(&buf) >= 6,
            "only {} colours",
            distinct_colors(&buf)
        );
        // The series colours themselves appear.
        let has = |rgb: [u8; 3]| buf.chunks(3).any(|p| p == rgb);
        assert!(has(PALETTE[0]) && has(PALETTE[1]));
    }
}

#[test]
fn png_has_text_ink_in_title_area() {
    let bytes = Chart::new("TITLE").to_png().unwrap();
    let (info, buf) = decode(&bytes);
    let w = info.width as usize;
    let dark = (0..40)
        .flat_map(|y| (0..w).map(move |x| (y, x)))
        .filter(|&(y, x)| buf[(y * w + x) * 3] < 100)
        .count();
    assert!(dark > 50, "title not drawn ({dark} dark pixels)");
}

fn weird_charts() -> Vec<Chart> {
    let nan = f64::NAN;
    let inf = f64::INFINITY;
    vec![
        Chart::new(""),
        Chart::new("empty series").line("e", vec![]),
        Chart::new("single").line("one", vec![(3.0, 4.0)]),
        Chart::new("single points").series(Series::new("p", vec![(3.0, 4.0)]).style(Style::Points)),
        Chart::new("all nan").line("n", vec![(nan, nan), (1.0, nan), (nan, 1.0)]),
        Chart::new("gaps").line(
            "g",
            vec![
                (0.0, 1.0),
                (1.0, nan),
                (2.0, 3.0),
                (3.0, inf),
                (4.0, 2.0),
                (5.0, 1.0),
            ],
        ),
        Chart::new("flat").line("f", vec![(0.0, 5.0), (1.0, 5.0), (2.0, 5.0)]),
        Chart::new("flat zero").line("z", vec![(0.0, 0.0), (0.0, 0.0)]),
        Chart::new("huge").line("h", vec![(0.0, 1e300), (1.0, -1e300)]),
        Chart::new("tiny").line("t", vec![(0.0, 1e-300), (1e-300, 2e-300)]),
        Chart::new("log with non-positive")
            .log_y(true)
            .line("l", vec![(0.0, 0.0), (1.0, -1.0), (2.0, 1e-3), (3.0, 10.0)]),
        Chart::new("log all non-positive")
            .log_y(true)
            .line("l", vec![(0.0, 0.0), (1.0, -1.0)]),
        Chart::new("log one point")
            .log_y(true)
            .line("l", vec![(1.0, 0.5)]),
        Chart::new("markers only")
            .marker(3.0, "m")
            .marker(nan, "nan marker")
            .marker(3.0, "again"),
        Chart::new("dashed single").series(Series::new("d", vec![(0.0, 1.0)]).style(Style::Dashed)),
        Chart::new("x".repeat(500))
            .x_label("y".repeat(500))
            .y_label("z".repeat(500))
            .line("n".repeat(500), vec![(0.0, 1.0), (1.0, 0.0)]),
        Chart::new("many series")
            .size(160, 160)
            .line("a", vec![(0.0, 1.0)])
            .line("b", vec![(1.0, 0.0)]),
        Chart::new("unicode ünïcødé — µ").line("σ²", vec![(0.0, 1.0), (1.0, 2.0)]),
        Chart::loss_curves("empty loss", &[], Some(&[])),
        Chart::forecast("empty forecast", &[], 0, &[], &[]),
        Chart::forecast("forecast only", &[], 0, &[], &[1.0, 2.0]),
        Chart::new("reversed x").line("r", vec![(5.0, 1.0), (1.0, 2.0), (-3.0, 0.5)]),
        Chart::new("big values").line("b", vec![(1e12, 3.5e9), (2e12, 4.5e9)]),
    ]
}

#[test]
fn odd_inputs_render_or_fail_cleanly() {
    for c in weird_charts() {
        let svg = c.to_svg();
        let png = c.to_png();
        match (&svg, &png) {
            (Ok(s), Ok(p)) => {
                parse_ok(s);
                let (info, _) = decode(p);
                assert_eq!((info.width, info.height), (c.width, c.height));
            }
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
            _ => panic!("svg and png disagree for {:?}", c.title),
        }
    }
    // Only the unrepresentable range is an error.
    let bad = Chart::new("overflow").line("o", vec![(0.0, -f64::MAX), (1.0, f64::MAX)]);
    assert!(matches!(bad.to_svg(), Err(Error::InvalidInput(_))));
    assert!(bad.to_png().is_err());
}

#[test]
fn too_large_range_error_is_clear_and_sizes_are_checked() {
    let bad = Chart::new("overflow").line("o", vec![(0.0, -f64::MAX), (1.0, f64::MAX)]);
    let msg = bad.to_svg().unwrap_err().to_string();
    assert!(msg.contains("too large"), "{msg}");
    for (w, h) in [
        (0, 100),
        (100, 0),
        (10, 10),
        (MAX_SIZE + 1, 500),
        (u32::MAX, u32::MAX),
    ] {
        let e = Chart::new("t").size(w, h).to_png().unwrap_err();
        assert!(matches!(e, Error::InvalidConfig(_)), "{e}");
    }
    // The smallest size with long labels on every side.
    let small = Chart::new("t")
        .size(MIN_SIZE, MIN_SIZE)
        .x_label("x")
        .y_label("y")
        .line("s", vec![(0.0, 12345.678), (1.0, -9999.5)]);
    small.to_png().unwrap();
}

#[test]
fn empty_chart_says_no_data() {
    let svg = Chart::new("nothing").to_svg().unwrap();
    assert!(svg.contains(">no data<"));
    let svg = Chart::new("nan")
        .line("n", vec![(f64::NAN, 1.0)])
        .to_svg()
        .unwrap();
    assert!(svg.contains(">no finite data<"));
}

#[test]
fn gaps_split_lines() {
    let c = Chart::new("g").line(
        "g",
        vec![
            (0.0, 1.0),
            (1.0, 2.0),
            (2.0, f64::NAN),
            (3.0, 3.0),
            (4.0, 1.0),
        ],
    );
    let svg = c.to_svg().unwrap();
    let doc = parse_ok(&svg);
    let data_lines = doc
        .descendants()
        .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke") == Some("#0072b2"))
        .count();
    assert_eq!(data_lines, 3, "two runs plus the legend swatch"); // 2 runs + legend
}

#[test]
fn markers_are_drawn_with_labels() {
    let svg = forecast_chart().to_svg().unwrap();
    let doc = parse_ok(&svg);
    let t = texts(&doc);
    assert!(
        t.iter().any(|s| s == "test") && t.iter().any(|s| s == "forecast"),
        "{t:?}"
    );
    assert!(svg.contains("stroke-dasharray"));
}

#[test]
fn log_axis_labels_are_powers_of_ten() {
    let svg = loss_chart().log_y(true).to_svg().unwrap();
    let t = texts(&parse_ok(&svg));
    assert!(
        t.iter().any(|s| s == "0.1") && t.iter().any(|s| s == "1"),
        "{t:?}"
    );
}

fn scratch_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("stacklstm-plot-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn listing(d: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn save_picks_format_by_extension_and_leaves_no_temp_file() {
    let d = scratch_dir("save");
    let c = loss_chart();
    c.save(&d.join("a.svg")).unwrap();
    c.save(&d.join("b.PNG")).unwrap();
    assert_eq!(listing(&d), ["a.svg", "b.PNG"]);
    assert!(std::fs::read_to_string(d.join("a.svg"))
        .unwrap()
        .starts_with("<svg"));
    assert_eq!(
        &std::fs::read(d.join("b.PNG")).unwrap()[..8],
        b"\x89PNG\r\n\x1a\n"
    );
    // Overwrite in place.
    Chart::new("second").save(&d.join("a.svg")).unwrap();
    assert!(std::fs::read_to_string(d.join("a.svg"))
        .unwrap()
        .contains("second"));
    assert_eq!(listing(&d), ["a.svg", "b.PNG"]);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn save_rejects_other_extensions() {
    let d = scratch_dir("ext");
    for name in ["x.jpg", "x", "x.svg.bak"] {
        match loss_chart().save(&d.join(name)) {
            Err(Error::UnsupportedFormat { supported, .. }) => assert_eq!(supported, "svg, png"),
            other => panic!("{name}: {other:?}"),
        }
    }
    assert!(listing(&d).is_empty());
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn save_keeps_previous_file_on_error() {
    let d = scratch_dir("atomic");
    let p = d.join("chart.png");
    loss_chart().save(&p).unwrap();
    let before = std::fs::read(&p).unwrap();
    // A render error: nothing is written.
    let bad = Chart::new("bad").size(0, 0);
    assert!(bad.save(&p).is_err());
    assert_eq!(std::fs::read(&p).unwrap(), before);
    // A rename error (the target is a non-empty directory): the temp file is cleaned up.
    let dir_target = d.join("taken.png");
    std::fs::create_dir(&dir_target).unwrap();
    std::fs::write(dir_target.join("keep"), b"x").unwrap();
    let e = loss_chart().save(&dir_target).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
    assert_eq!(listing(&d), ["chart.png", "taken.png"]);
    assert_eq!(listing(&dir_target), ["keep"]);
    // A missing directory is an I/O error naming the path.
    let e = loss_chart().save(&d.join("missing/sub.png")).unwrap_err();
    assert!(e.to_string().contains("missing"), "{e}");
    assert_eq!(std::fs::read(&p).unwrap(), before);
    std::fs::remove_dir_all(&d).unwrap();
}
