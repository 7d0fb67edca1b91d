//! The CSV series reader on arbitrary bytes, with automatic and explicit column choices and
//! every fill mode, then windowing and scaling of whatever it accepts.
#![no_main]
use libfuzzer_sys::fuzz_target;
use stacklstm::data::window::{make_windows, WindowSpec};
use stacklstm::data::{read_csv_bytes, CsvOptions, FillMode, Scaler, ScalerKind};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let fill = match mode % 4 {
        0 => FillMode::Error,
        1 => FillMode::Ffill,
        2 => FillMode::Interpolate,
        _ => FillMode::Drop,
    };
    // The first header cell is the target, so every file gets a valid-looking request.
    let first = rest
        .split(|b| *b == b',' || *b == b'\n')
        .next()
        .map(|c| String::from_utf8_lossy(c).trim().to_string())
        .unwrap_or_default();
    let opts = CsvOptions {
        target: vec![first],
        fill,
        sort_by_date: mode & 8 != 0,
        ..CsvOptions::default()
    };
    if let Ok(s) = read_csv_bytes(rest, "fuzz.csv", &opts) {
        if let Ok(sc) = Scaler::fit(ScalerKind::Standard, s.values.view()) {
            if let Ok(v) = sc.transform(s.values.view()) {
                let spec = WindowSpec::new(1 + usize::from(mode >> 5), 1, 1).expect("valid spec");
                let _ = make_windows(v.view(), &s.target_idx, &spec);
            }
        }
    }
});
