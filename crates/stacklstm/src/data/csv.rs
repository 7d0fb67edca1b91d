//! Numeric time series from CSV files.
//!
//! The reader accepts one header row followed by data rows, comma separated, with:
//!
//! * quoted fields (`"a, b"`, with `""` for a literal quote; a quoted field may span lines),
//! * LF, CRLF (or lone CR) line endings,
//! * UTF-8 text, with or without a byte-order mark,
//! * blank lines anywhere (skipped; so in a one-column file an empty cell reads as a skipped
//!   line, not as a missing value).
//!
//! Every error names the file (or the name given for in-memory text), the 1-based line where
//! the offending record starts (the header is line 1) and, where it applies, the column name and
//! the cell text.
//!
//! # Which columns become features
//!
//! With [`CsvOptions::features`] `None`, every *numeric* column is a feature, in file order: a
//! column is numeric when every non-missing cell parses as a number and at least one cell is
//! not missing (cells such as `inf` count as numbers here, so that they are reported as errors
//! instead of silently dropping the column). The date column is never auto-selected. Target
//! columns are always selected, numeric or not, so a bad target cell is reported.
//!
//! With `features` given, exactly those columns are used in that order, and any target not
//! listed is appended at the end.
//!
//! # Missing values
//!
//! A cell is missing when, trimmed, it is empty or one of `NA`, `N/A`, `na`, `NaN`, `nan`,
//! `NAN`, `null`, `NULL`, `None`. What happens is chosen by [`FillMode`]. `inf`, `-inf`,
//! `infinity` and numbers outside the `f32` range are errors in every mode.

use crate::error::{Error, Result};
use ndarray::Array2;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// Cell texts (after trimming) that mean "missing value".
pub const MISSING_TOKENS: &[&str] = &[
    "", "NA", "N/A", "na", "NaN", "nan", "NAN", "null", "NULL", "None",
];

/// What to do with missing cells in the selected columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FillMode {
    /// Any missing cell is an error naming its line and column (the default).
    #[default]
    Error,
    /// Forward fill: a missing cell takes the last value above it in the same column.
    /// A *leading* gap (missing cells before the column's first value) is an error: filling it
    /// backwards would copy a future value into the past.
    Ffill,
    /// Linear interpolation by row position between the nearest values above and below.
    /// A trailing gap holds the last value (as forward fill); a leading gap is an error, as
    /// for [`FillMode::Ffill`].
    Interpolate,
    /// Drop every row that has a missing cell in any selected column.
    Drop,
}

impl std::str::FromStr for FillMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "error" => Ok(FillMode::Error),
            "ffill" => Ok(FillMode::Ffill),
            "interpolate" => Ok(FillMode::Interpolate),
            "drop" => Ok(FillMode::Drop),
            other => Err(Error::config(format!(
                "unknown fill mode '{other}'; expected one of: error, ffill, interpolate, drop"
            ))),
        }
    }
}

impl std::fmt::Display for FillMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FillMode::Error => "error",
            FillMode::Ffill => "ffill",
            FillMode::Interpolate => "interpolate",
            FillMode::Drop => "drop",
        })
    }
}

/// How to turn a CSV file into a [`Series`]. Saved with a model, so it derives serde.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CsvOptions {
    /// The column(s) to forecast. At least one is required.
    pub target: Vec<String>,
    /// The input columns, in order. `None`: every numeric column (see the module docs).
    /// Targets not listed are appended.
    pub features: Option<Vec<String>>,
    /// A date / time column. It is never a feature unless listed in `features`; its text is
    /// kept in [`Series::dates`], and it is the sort key when `sort_by_date` is set.
    pub date_column: Option<String>,
    /// Sort the rows by `date_column` before filling. When every date cell is a number the
    /// sort is numeric, otherwise it compares the text, which is chronological for ISO 8601
    /// dates (`1949-01`, `2020-03-01 12:00`) but not for e.g. `3/1/2020`. The sort is stable.
    pub sort_by_date: bool,
    /// What to do with missing cells.
    pub fill: FillMode,
}

impl CsvOptions {
    /// Options for the given target column(s) with every other field at its default.
    pub fn with_target<S: Into<String>>(target: impl IntoIterator<Item = S>) -> Self {
        CsvOptions {
            target: target.into_iter().map(Into::into).collect(),
            ..Default::default()
        }
    }
}

/// A numeric multivariate time series read from CSV.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Feature column names, in the order of `values`' columns.
    pub columns: Vec<String>,
    /// The values, `[rows, n_features]`, rows in file order (or date order when sorted).
    pub values: Array2<f32>,
    /// Indices into `columns` of the target columns, in the order of [`CsvOptions::target`].
    pub target_idx: Vec<usize>,
    /// The date column's text for each row of `values`, when a date column was given.
    pub dates: Option<Vec<String>>,
}

impl Series {
    /// Number of rows (time steps).
    pub fn n_rows(&self) -> usize {
        self.values.nrows()
    }

    /// Number of feature columns.
    pub fn n_features(&self) -> usize {
        self.values.ncols()
    }

    /// The names of the target columns.
    pub fn target_names(&self) -> Vec<&str> {
        self.target_idx
            .iter()
            .filter_map(|&i| self.columns.get(i).map(String::as_str))
            .collect()
    }

    /// The target columns alone, `[rows, n_targets]`.
    pub fn targets(&self) -> Array2<f32> {
        self.values.select(ndarray::Axis(1), &self.target_idx)
    }
}

/// One data record of a CSV file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRow {
    /// 1-based line on which the record starts.
    pub line: usize,
    /// The fields, unquoted, not trimmed.
    pub fields: Vec<String>,
}

/// A parsed CSV file: the header and the records, all as text. Every row has as many fields
/// as the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawTable {
    /// Column names (trimmed).
    pub header: Vec<String>,
    /// Data records.
    pub rows: Vec<RawRow>,
}

fn data_err(file: &str, line: usize, msg: impl Into<String>) -> Error {
    Error::Data {
        file: file.to_string(),
        line,
        msg: msg.into(),
    }
}

/// Splits CSV text into records. `file` is used in error messages only.
///
/// Errors: an unterminated quoted field, text after a closing quote, an empty input, a header
/// without data rows, duplicate column names, a record whose field count differs from the
/// header's.
pub fn parse_table(text: &str, file: &str) -> Result<RawTable> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut records: Vec<RawRow> = Vec::new();
    let mut fields: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    let mut was_quoted = false; // the current field started with a quote
    let mut after_quote = false; // the closing quote of the current field has been seen
    let mut line = 1usize;
    let mut rec_line = 1usize;
    let mut quote_line = 1usize;
    let mut chars = text.chars().peekable();

    let end_record = |fields: &mut Vec<String>,
                      cur: &mut String,
                      was_quoted: bool,
                      rec_line: usize,
                      records: &mut Vec<RawRow>| {
        let blank = fields.is_empty() && cur.trim().is_empty() && !was_quoted;
        fields.push(std::mem::take(cur));
        let f = std::mem::take(fields);
        if !blank {
            records.push(RawRow {
                line: rec_line,
                fields: f,
            });
        }
    };

    while let Some(c) = chars.next() {
        if in_quotes {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    cur.push('"');
                } else {
                    in_quotes = false;
                    after_quote = true;
                }
            } else {
                if c == '\n' || (c == '\r' && chars.peek() != Some(&'\n')) {
                    line += 1;
                }
                cur.push(c);
            }
            continue;
        }
        match c {
            ',' => {
                fields.push(std::mem::take(&mut cur));
                was_quoted = false;
                after_quote = false;
            }
            '\r' | '\n' => {
                if c == '\r' && chars.peek() == Some(&'\n') {
                    chars.next();
                }
                end_record(&mut fields, &mut cur, was_quoted, rec_line, &mut records);
                was_quoted = false;
                after_quote = false;
                line += 1;
                rec_line = line;
            }
            '"' if cur.trim().is_empty() && !was_quoted => {
                cur.clear();
                in_quotes = true;
                was_quoted = true;
                quote_line = line;
            }
            _ if after_quote => {
                if !c.is_whitespace() {
                    return Err(data_err(
                        file,
                        line,
                        format!("unexpected character {c:?} after a closing quote (a quote inside a quoted field must be doubled: \"\")"),
                    ));
                }
            }
            _ => cur.push(c),
        }
    }
    if in_quotes {
        return Err(data_err(
            file,
            quote_line,
            "unterminated quoted field: the closing quote is missing",
        ));
    }
    if !fields.is_empty() || !cur.is_empty() || was_quoted {
        end_record(&mut fields, &mut cur, was_quoted, rec_line, &mut records);
    }

    let mut it = records.into_iter();
    let header_row = it
        .next()
        .ok_or_else(|| data_err(file, 1, "empty file: expected a header row and data rows"))?;
    let header: Vec<String> = header_row
        .fields
        .iter()
        .map(|s| s.trim().to_string())
        .collect();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, h) in header.iter().enumerate() {
        if let Some(prev) = seen.insert(h.as_str(), i) {
            return Err(data_err(
                file,
                header_row.line,
                format!(
                    "duplicate column name '{h}' (columns {} and {})",
                    prev + 1,
                    i + 1
                ),
            ));
        }
    }
    let rows: Vec<RawRow> = it.collect();
    if rows.is_empty() {
        return Err(data_err(
            file,
            header_row.line,
            "the file has a header but no data rows",
        ));
    }
    for r in &rows {
        if r.fields.len() != header.len() {
            return Err(data_err(
                file,
                r.line,
                format!(
                    "wrong number of fields: expected {} (as in the header), found {}",
                    header.len(),
                    r.fields.len()
                ),
            ));
        }
    }
    Ok(RawTable { header, rows })
}

enum Cell {
    Missing,
    Number(f64),
    Text,
}

fn classify(cell: &str) -> Cell {
    let t = cell.trim();
    if MISSING_TOKENS.contains(&t) {
        return Cell::Missing;
    }
    match t.parse::<f64>() {
        Ok(v) => Cell::Number(v),
        Err(_) => Cell::Text,
    }
}

/// Reads a series from a CSV file on disk. The file name appears in every error.
pub fn read_csv_path(path: impl AsRef<Path>, opts: &CsvOptions) -> Result<Series> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    read_csv_bytes(&bytes, &path.display().to_string(), opts)
}

/// Reads a series from CSV bytes, which must be UTF-8 (a BOM is allowed). `file` names the
/// source in errors; invalid UTF-8 is reported with its line.
pub fn read_csv_bytes(bytes: &[u8], file: &str, opts: &CsvOptions) -> Result<Series> {
    match std::str::from_utf8(bytes) {
        Ok(s) => read_csv_str(s, file, opts),
        Err(e) => {
            let upto = bytes.get(..e.valid_up_to()).unwrap_or(&[]);
            let line = 1 + upto.iter().filter(|&&b| b == b'\n').count();
            Err(data_err(
                file,
                line,
                format!(
                    "the file is not valid UTF-8 (invalid byte at offset {})",
                    e.valid_up_to()
                ),
            ))
        }
    }
}

/// Reads a series from CSV text held in memory (e.g. a dataset embedded with `include_str!`).
/// `file` names the source in errors (e.g. `"<memory>"` or the original file name).
pub fn read_csv_str(text: &str, file: &str, opts: &CsvOptions) -> Result<Series> {
    let table = parse_table(text, file)?;
    series_from_table(&table, file, opts)
}

/// Builds a [`Series`] from an already parsed table; see [`read_csv_str`].
pub fn series_from_table(table: &RawTable, file: &str, opts: &CsvOptions) -> Result<Series> {
    let header = &table.header;
    let lookup = |name: &str| -> Result<usize> {
        header.iter().position(|h| h == name.trim()).ok_or_else(|| {
            data_err(
                file,
                1,
                format!(
                    "no column named '{name}'; available columns: {}",
                    header.join(", ")
                ),
            )
        })
    };

    if opts.target.is_empty() {
        return Err(Error::config(format!(
            "no target column given; available columns: {}",
            header.join(", ")
        )));
    }
    let mut targets = Vec::with_capacity(opts.target.len());
    for t in &opts.target {
        let i = lookup(t)?;
        if targets.contains(&i) {
            return Err(Error::config(format!("target column '{t}' is given twice")));
        }
        targets.push(i);
    }
    let date_idx = match &opts.date_column {
        Some(d) => Some(lookup(d)?),
        None => None,
    };
    if opts.sort_by_date && date_idx.is_none() {
        return Err(Error::config(
            "sort_by_date needs a date column (--date-column NAME)",
        ));
    }

    // Selected columns, as indices into the header.
    let mut selected: Vec<usize> = Vec::new();
    match &opts.features {
        Some(list) => {
            if list.is_empty() && targets.is_empty() {
                return Err(Error::config("the feature list is empty"));
            }
            for f in list {
                let i = lookup(f)?;
                if selected.contains(&i) {
                    return Err(Error::config(format!(
                        "feature column '{f}' is given twice"
                    )));
                }
                selected.push(i);
            }
            for &t in &targets {
                if !selected.contains(&t) {
                    selected.push(t);
                }
            }
        }
        None => {
            for c in 0..header.len() {
                if Some(c) == date_idx {
                    continue;
                }
                if targets.contains(&c) {
                    selected.push(c);
                    continue;
                }
                let mut any_number = false;
                let mut all_ok = true;
                for r in &table.rows {
                    match r.fields.get(c).map(|s| classify(s)) {
                        Some(Cell::Number(_)) => any_number = true,
                        Some(Cell::Missing) => {}
                        Some(Cell::Text) | None => {
                            all_ok = false;
                            break;
                        }
                    }
                }
                if all_ok && any_number {
                    selected.push(c);
                }
            }
        }
    }

    // Row order.
    let mut order: Vec<usize> = (0..table.rows.len()).collect();
    if let (true, Some(d)) = (opts.sort_by_date, date_idx) {
        let mut keys_num: Vec<f64> = Vec::with_capacity(order.len());
        let mut all_num = true;
        for r in &table.rows {
            let cell = r.fields.get(d).map(|s| s.trim()).unwrap_or("");
            if MISSING_TOKENS.contains(&cell) {
                return Err(data_err(
                    file,
                    r.line,
                    format!(
                        "column '{}': missing date, cannot sort by date",
                        header.get(d).map(String::as_str).unwrap_or("")
                    ),
                ));
            }
            match cell.parse::<f64>() {
                Ok(v) if v.is_finite() => keys_num.push(v),
                _ => all_num = false,
            }
        }
        if all_num {
            order.sort_by(|&a, &b| {
                let ka = keys_num.get(a).copied().unwrap_or(0.0);
                let kb = keys_num.get(b).copied().unwrap_or(0.0);
                ka.total_cmp(&kb)
            });
        } else {
            let key = |i: usize| -> &str {
                table
                    .rows
                    .get(i)
                    .and_then(|r| r.fields.get(d))
                    .map(|s| s.trim())
                    .unwrap_or("")
            };
            order.sort_by(|&a, &b| key(a).cmp(key(b)));
        }
    }
    let rows: Vec<&RawRow> = order.iter().filter_map(|&i| table.rows.get(i)).collect();

    // Parse the selected columns, column-major.
    let mut cols: Vec<Vec<Option<f32>>> = Vec::with_capacity(selected.len());
    for &c in &selected {
        let name = header.get(c).map(String::as_str).unwrap_or("");
        let mut col = Vec::with_capacity(rows.len());
        for r in &rows {
            let raw = r.fields.get(c).map(String::as_str).unwrap_or("");
            match classify(raw) {
                Cell::Missing => col.push(None),
                Cell::Text => {
                    return Err(data_err(
                        file,
                        r.line,
                        format!("column '{name}': cannot parse '{}' as a number", raw.trim()),
                    ))
                }
                Cell::Number(v) => {
                    let f = v as f32;
                    if !v.is_finite() {
                        return Err(data_err(
                            file,
                            r.line,
                            format!(
                                "column '{name}': non-finite value '{}' is not allowed",
                                raw.trim()
                            ),
                        ));
                    }
                    if !f.is_finite() {
                        return Err(data_err(
                            file,
                            r.line,
                            format!(
                                "column '{name}': value '{}' is outside the f32 range",
                                raw.trim()
                            ),
                        ));
                    }
                    col.push(Some(f));
                }
            }
        }
        cols.push(col);
    }

    // Missing values.
    let mut keep: Vec<bool> = vec![true; rows.len()];
    match opts.fill {
        FillMode::Error => {
            for (ri, r) in rows.iter().enumerate() {
                for (k, col) in cols.iter().enumerate() {
                    if let Some(None) = col.get(ri) {
                        let c = selected.get(k).copied().unwrap_or(0);
                        let name = header.get(c).map(String::as_str).unwrap_or("");
                        let raw = r.fields.get(c).map(|s| s.trim()).unwrap_or("");
                        let what = if raw.is_empty() {
                            "an empty cell".to_string()
                        } else {
                            format!("'{raw}'")
                        };
                        return Err(data_err(
                            file,
                            r.line,
                            format!("column '{name}': missing value ({what}); choose how to fill it with --fill ffill|interpolate|drop"),
                        ));
                    }
                }
            }
        }
        FillMode::Drop => {
            for (ri, k) in keep.iter_mut().enumerate() {
                *k = cols.iter().all(|col| matches!(col.get(ri), Some(Some(_))));
            }
            if !keep.iter().any(|&k| k) {
                return Err(data_err(
                    file,
                    rows.first().map(|r| r.line).unwrap_or(1),
                    "every row has a missing value in a selected column: nothing is left after --fill drop",
                ));
            }
        }
        FillMode::Ffill | FillMode::Interpolate => {
            for (k, col) in cols.iter_mut().enumerate() {
                let c = selected.get(k).copied().unwrap_or(0);
                let name = header.get(c).map(String::as_str).unwrap_or("");
                fill_column(col, opts.fill).map_err(|ri| {
                    let line = rows.get(ri).map(|r| r.line).unwrap_or(1);
                    data_err(
                        file,
                        line,
                        format!("column '{name}': missing value before the column's first value; --fill {} cannot fill a leading gap (use --fill drop or trim the file)", opts.fill),
                    )
                })?;
            }
        }
    }

    let n_kept = keep.iter().filter(|&&k| k).count();
    let mut values = Array2::<f32>::zeros((n_kept, selected.len()));
    let mut out_r = 0usize;
    for (ri, &k) in keep.iter().enumerate() {
        if !k {
            continue;
        }
        for (j, col) in cols.iter().enumerate() {
            if let (Some(Some(v)), Some(dst)) = (col.get(ri), values.get_mut((out_r, j))) {
                *dst = *v;
            }
        }
        out_r += 1;
    }
    let dates = date_idx.map(|d| {
        rows.iter()
            .zip(&keep)
            .filter(|(_, &k)| k)
            .map(|(r, _)| {
                r.fields
                    .get(d)
                    .map(|s| s.trim().to_string())
                    .unwrap_or_default()
            })
            .collect()
    });
    let target_idx = targets
        .iter()
        .filter_map(|t| selected.iter().position(|s| s == t))
        .collect();
    let columns = selected
        .iter()
        .filter_map(|&c| header.get(c).cloned())
        .collect();
    Ok(Series {
        columns,
        values,
        target_idx,
        dates,
    })
}

/// Fills the gaps of one column in place. Returns the index of the first missing cell of a
/// leading gap as the error.
fn fill_column(col: &mut [Option<f32>], mode: FillMode) -> std::result::Result<(), usize> {
    let Some(first) = col.iter().position(Option::is_some) else {
        return Err(0);
    };
    if first > 0 {
        return Err(0);
    }
    let n = col.len();
    let mut i = 0;
    while i < n {
        if col.get(i).is_some_and(Option::is_some) {
            i += 1;
            continue;
        }
        // Gap [i, j): col[i-1] is Some (i > 0 since the first cell is Some).
        let prev = col.get(i.wrapping_sub(1)).copied().flatten().unwrap_or(0.0);
        let mut j = i;
        while j < n && col.get(j).is_some_and(Option::is_none) {
            j += 1;
        }
        let next = col.get(j).copied().flatten();
        for (g, cell) in col.iter_mut().enumerate().take(j).skip(i) {
            let v = match (mode, next) {
                (FillMode::Interpolate, Some(nv)) => {
                    let a = (i - 1) as f64;
                    let t = (g as f64 - a) / (j as f64 - a);
                    (prev as f64 + (nv as f64 - prev as f64) * t) as f32
                }
                _ => prev,
            };
            *cell = Some(v);
        }
        i = j;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(target: &[&str]) -> CsvOptions {
        CsvOptions::with_target(target.iter().copied())
    }

    fn err_msg(r: Result<Series>) -> (usize, String) {
        match r {
            Err(Error::Data { line, msg, .. }) => (line, msg),
            other => panic!("expected a Data error, got {other:?}"),
        }
    }

    #[test]
    fn basic_auto_features_skip_text_columns() {
        let s = read_csv_str(
            "date,a,name,b\n2020-01,1,x,2.5\n2020-02,3,y,4\n",
            "t.csv",
            &opts(&["b"]),
        )
        .unwrap();
        assert_eq!(s.columns, vec!["a", "b"]);
        assert_eq!(s.target_idx, vec![1]);
        assert_eq!(s.values, ndarray::array![[1.0, 2.5], [3.0, 4.0]]);
        assert_eq!(s.target_names(), vec!["b"]);
        assert_eq!(s.targets(), ndarray::array![[2.5], [4.0]]);
        assert!(s.dates.is_none());
    }

    #[test]
    fn quoting_crlf_bom_blank_lines() {
        let text = "\u{feff}\"na,me\",\"v\"\"q\",x\r\n\"a, b\",1,2\r\n\r\n\"multi\nline\",3,4\r\n";
        let t = parse_table(text, "q.csv").unwrap();
        assert_eq!(t.header, vec!["na,me", "v\"q", "x"]);
        assert_eq!(t.rows.len(), 2);
        assert_eq!(t.rows[0].fields, vec!["a, b", "1", "2"]);
        assert_eq!(t.rows[0].line, 2);
        assert_eq!(t.rows[1].fields, vec!["multi\nline", "3", "4"]);
        assert_eq!(t.rows[1].line, 4);
        let s = read_csv_str(text, "q.csv", &opts(&["x"])).unwrap();
        assert_eq!(s.columns, vec!["v\"q", "x"]);
        assert_eq!(s.values, ndarray::array![[1.0, 2.0], [3.0, 4.0]]);
        // no trailing newline, quoted numbers
        let s = read_csv_str("a,b\n\"1\",\"2\"", "q.csv", &opts(&["a"])).unwrap();
        assert_eq!(s.values, ndarray::array![[1.0, 2.0]]);
    }

    #[test]
    fn explicit_features_and_targets_appended() {
        let text = "a,b,c\n1,2,3\n4,5,6\n";
        let mut o = opts(&["a"]);
        o.features = Some(vec!["c".into(), "b".into()]);
        let s = read_csv_str(text, "t", &o).unwrap();
        assert_eq!(s.columns, vec!["c", "b", "a"]);
        assert_eq!(s.target_idx, vec![2]);
        assert_eq!(s.values, ndarray::array![[3.0, 2.0, 1.0], [6.0, 5.0, 4.0]]);
    }

    #[test]
    fn errors_empty_and_header_only() {
        let (l, m) = err_msg(read_csv_str("", "e.csv", &opts(&["a"])));
        assert_eq!(l, 1);
        assert!(m.contains("empty file"), "{m}");
        let (l, m) = err_msg(read_csv_str("\u{feff}\n\n", "e.csv", &opts(&["a"])));
        assert_eq!(l, 1);
        assert!(m.contains("empty file"), "{m}");
        let (l, m) = err_msg(read_csv_str("a,b\n", "e.csv", &opts(&["a"])));
        assert_eq!(l, 1);
        assert!(m.contains("no data rows"), "{m}");
        let e = read_csv_str("a,b\n", "e.csv", &opts(&["a"])).unwrap_err();
        assert!(e.to_string().starts_with("e.csv: line 1:"), "{e}");
    }

    #[test]
    fn error_wrong_field_count() {
        let (l, m) = err_msg(read_csv_str("a,b\n1,2\n3\n", "w.csv", &opts(&["a"])));
        assert_eq!(l, 3);
        assert!(m.contains("expected 2") && m.contains("found 1"), "{m}");
        let (l, m) = err_msg(read_csv_str("a,b\n1,2\n3,4,5\n", "w.csv", &opts(&["a"])));
        assert_eq!(l, 3);
        assert!(m.contains("found 3"), "{m}");
    }

    #[test]
    fn error_unknown_column_lists_available() {
        let (_, m) = err_msg(read_csv_str("a,b\n1,2\n", "u.csv", &opts(&["zz"])));
        assert!(
            m.contains("'zz'") && m.contains("available columns: a, b"),
            "{m}"
        );
        let mut o = opts(&["a"]);
        o.features = Some(vec!["q".into()]);
        let (_, m) = err_msg(read_csv_str("a,b\n1,2\n", "u.csv", &o));
        assert!(m.contains("'q'") && m.contains("a, b"), "{m}");
        let mut o = opts(&["a"]);
        o.date_column = Some("when".into());
        let (_, m) = err_msg(read_csv_str("a,b\n1,2\n", "u.csv", &o));
        assert!(m.contains("'when'"), "{m}");
    }

    #[test]
    fn error_no_target_and_duplicates() {
        assert!(matches!(
            read_csv_str("a\n1\n", "t", &CsvOptions::default()),
            Err(Error::InvalidConfig(_))
        ));
        assert!(matches!(
            read_csv_str("a\n1\n", "t", &opts(&["a", "a"])),
            Err(Error::InvalidConfig(_))
        ));
        let (l, m) = err_msg(read_csv_str("a,a\n1,2\n", "t", &opts(&["a"])));
        assert_eq!(l, 1);
        assert!(m.contains("duplicate column name 'a'"), "{m}");
        let mut o = opts(&["a"]);
        o.sort_by_date = true;
        assert!(matches!(
            read_csv_str("a\n1\n", "t", &o),
            Err(Error::InvalidConfig(_))
        ));
    }

    #[test]
    fn error_non_numeric_cell_in_target_names_line_column_text() {
        let (l, m) = err_msg(read_csv_str(
            "a,b\n1,2\n3,4\n5,oops\n",
            "n.csv",
            &opts(&["b"]),
        ));
        assert_eq!(l, 4);
        assert!(m.contains("'b'") && m.contains("'oops'"), "{m}");
        // a named feature too
        let mut o = opts(&["a"]);
        o.features = Some(vec!["b".into()]);
        let (l, m) = err_msg(read_csv_str("a,b\n1,x1\n", "n.csv", &o));
        assert_eq!(l, 2);
        assert!(m.contains("'b'") && m.contains("'x1'"), "{m}");
    }

    #[test]
    fn error_inf_and_f32_overflow() {
        for bad in ["inf", "-inf", "Infinity", "1e39"] {
            let text = format!("a,b\n1,2\n{bad},4\n");
            let (l, m) = err_msg(read_csv_str(&text, "i.csv", &opts(&["b"])));
            assert_eq!(l, 3, "{bad}");
            assert!(m.contains("'a'") && m.contains(bad), "{m}");
        }
    }

    #[test]
    fn error_missing_suggests_fill() {
        for tok in ["", "NA", "NaN", "nan", "null", " "] {
            let text = format!("a,b\n1,2\n3,{tok}\n5,6\n");
            let (l, m) = err_msg(read_csv_str(&text, "m.csv", &opts(&["a"])));
            assert_eq!(l, 3);
            assert!(
                m.contains("'b'") && m.contains("--fill ffill|interpolate|drop"),
                "{m}"
            );
        }
    }

    #[test]
    fn error_quote_problems() {
        let (l, m) = err_msg(read_csv_str("a,b\n1,\"2\n3,4\n", "q.csv", &opts(&["a"])));
        assert_eq!(l, 2);
        assert!(m.contains("unterminated"), "{m}");
        let (l, m) = err_msg(read_csv_str("a,b\n1,\"2\"x\n", "q.csv", &opts(&["a"])));
        assert_eq!(l, 2);
        assert!(m.contains("after a closing quote"), "{m}");
    }

    #[test]
    fn error_invalid_utf8_names_line() {
        let bytes = b"a,b\n1,2\n3,\xff\n";
        match read_csv_bytes(bytes, "bad.csv", &opts(&["a"])) {
            Err(Error::Data { line, msg, file }) => {
                assert_eq!(line, 3);
                assert_eq!(file, "bad.csv");
                assert!(msg.contains("UTF-8"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fill_modes() {
        let text = "t,a,b\n1,1,10\n2,,\n3,NA,\n4,4,40\n5,,50\n";
        let mut o = opts(&["b"]);
        o.date_column = Some("t".into());
        o.fill = FillMode::Ffill;
        let s = read_csv_str(text, "f", &o).unwrap();
        assert_eq!(s.columns, vec!["a", "b"]);
        assert_eq!(
            s.values,
            ndarray::array![[1., 10.], [1., 10.], [1., 10.], [4., 40.], [4., 50.]]
        );
        o.fill = FillMode::Interpolate;
        let s = read_csv_str(text, "f", &o).unwrap();
        assert_eq!(
            s.values,
            ndarray::array![[1., 10.], [2., 20.], [3., 30.], [4., 40.], [4., 50.]]
        );
        o.fill = FillMode::Drop;
        let s = read_csv_str(text, "f", &o).unwrap();
        assert_eq!(s.values, ndarray::array![[1., 10.], [4., 40.]]);
        assert_eq!(s.dates, Some(vec!["1".to_string(), "4".to_string()]));
    }

    #[test]
    fn fill_leading_gap_is_error() {
        let text = "a,b\n1,\n2,3\n";
        for mode in [FillMode::Ffill, FillMode::Interpolate] {
            let mut o = opts(&["a"]);
            o.fill = mode;
            let (l, m) = err_msg(read_csv_str(text, "g.csv", &o));
            assert_eq!(l, 2);
            assert!(m.contains("'b'") && m.contains("leading gap"), "{m}");
        }
        let mut o = opts(&["a"]);
        o.fill = FillMode::Drop;
        o.features = Some(vec!["b".into()]);
        let s = read_csv_str(text, "g.csv", &o).unwrap();
        assert_eq!(s.values, ndarray::array![[3.0, 2.0]]);
        let (_, m) = err_msg(read_csv_str("a,b\n1,\n2,NA\n", "g.csv", &o));
        assert!(m.contains("nothing is left"), "{m}");
    }

    #[test]
    fn sort_by_date_text_and_numeric() {
        let text = "d,v\n2020-03,3\n2020-01,1\n2020-02,2\n";
        let mut o = opts(&["v"]);
        o.date_column = Some("d".into());
        o.sort_by_date = true;
        let s = read_csv_str(text, "s", &o).unwrap();
        assert_eq!(s.values.column(0).to_vec(), vec![1.0, 2.0, 3.0]);
        assert_eq!(s.dates.unwrap(), vec!["2020-01", "2020-02", "2020-03"]);
        let s = read_csv_str("d,v\n10,3\n9,1\n100,2\n", "s", &o).unwrap();
        assert_eq!(s.values.column(0).to_vec(), vec![1.0, 3.0, 2.0]);
        // unsorted without the flag: file order, and the numeric date is not a feature
        o.sort_by_date = false;
        let s = read_csv_str("d,v\n10,3\n9,1\n", "s", &o).unwrap();
        assert_eq!(s.columns, vec!["v"]);
        assert_eq!(s.values.column(0).to_vec(), vec![3.0, 1.0]);
        // the line number of an error after sorting is the original line
        o.sort_by_date = true;
        let (l, _) = err_msg(read_csv_str("d,v\n2,1\n1,x\n", "s", &o));
        assert_eq!(l, 3);
    }

    #[test]
    fn fill_mode_parse() {
        assert_eq!("FFILL".parse::<FillMode>().unwrap(), FillMode::Ffill);
        assert_eq!("drop".parse::<FillMode>().unwrap(), FillMode::Drop);
        assert!("zero".parse::<FillMode>().is_err());
        let o = CsvOptions {
            fill: FillMode::Interpolate,
            ..opts(&["a"])
        };
        let j = serde_json::to_string(&o).unwrap();
        assert!(j.contains("\"interpolate\""));
        assert_eq!(serde_json::from_str::<CsvOptions>(&j).unwrap(), o);
    }

    #[test]
    fn never_panics_on_odd_inputs() {
        for text in [
            "\"",
            "\"\"",
            ",",
            "\n,\n",
            "a\n\"",
            "a,\"b\"\"\n",
            "a\r",
            "a\r\r1\r",
            "\u{feff}",
            "a,b\n,\n",
            "a\n-\n",
            "\"a\"\"\"\n1",
        ] {
            let _ = read_csv_str(text, "x", &opts(&["a"]));
        }
        let s = read_csv_str("a\r1\r2", "x", &opts(&["a"])).unwrap();
        assert_eq!(s.values.column(0).to_vec(), vec![1.0, 2.0]);
    }

    proptest::proptest! {
        #[test]
        fn random_text_never_panics(text in "[a1,\"\r\n .NA\u{feff}é-]{0,60}") {
            if let Ok(t) = parse_table(&text, "p") {
                for r in &t.rows {
                    proptest::prop_assert_eq!(r.fields.len(), t.header.len());
                }
            }
            let mut o = opts(&["a"]);
            for fill in [FillMode::Error, FillMode::Ffill, FillMode::Interpolate, FillMode::Drop] {
                o.fill = fill;
                if let Ok(s) = read_csv_str(&text, "p", &o) {
                    proptest::prop_assert!(s.values.iter().all(|v| v.is_finite()));
                    proptest::prop_assert_eq!(s.values.ncols(), s.columns.len());
                }
            }
        }
    }

    #[test]
    fn real_airline_passengers() {
        let dir = crate::data::shared_dir().expect(
            "shared/ (data and fixtures) not found beside the repository; set STACKLSTM_SHARED",
        );
        let p = dir.join("data/airline_passengers/airline_passengers.csv");
        let mut o = opts(&["Passengers"]);
        o.date_column = Some("Date".into());
        let s = read_csv_path(&p, &o).unwrap();
        assert_eq!(s.columns, vec!["Passengers"]);
        assert_eq!(s.n_rows(), 144);
        assert_eq!(s.values[[0, 0]], 112.0);
        assert_eq!(s.values[[1, 0]], 118.0);
        let dates = s.dates.unwrap();
        assert_eq!(dates.first().map(String::as_str), Some("1949-01"));
        assert_eq!(dates.last().map(String::as_str), Some("1960-12"));
        // auto-detection alone also skips the Date column
        let s2 = read_csv_path(&p, &opts(&["Passengers"])).unwrap();
        assert_eq!(s2.values, s.values);
    }

    #[test]
    fn real_sunspots() {
        let dir = crate::data::shared_dir().expect(
            "shared/ (data and fixtures) not found beside the repository; set STACKLSTM_SHARED",
        );
        let p = dir.join("data/sunspots_monthly/sunspots_monthly.csv");
        let s = read_csv_path(&p, &opts(&["sunspots"])).unwrap();
        assert_eq!(s.columns, vec!["sunspots"]);
        assert_eq!(s.n_rows(), 2820);
        assert_eq!(s.values[[0, 0]], 58.0);
        assert_eq!(s.values[[1, 0]], 62.6);
        assert_eq!(s.values[[2819, 0]], 33.4);
        // the embedded-text path gives the same result
        let text = std::fs::read_to_string(&p).unwrap();
        let s2 = read_csv_str(&text, "<memory>", &opts(&["sunspots"])).unwrap();
        assert_eq!(s2, s);
    }
}
