//! The safetensors container, read and written by hand.
//!
//! Layout: an 8-byte little-endian header length `N`, `N` bytes of UTF-8 JSON, then the data.
//! The JSON maps each tensor name to `{"dtype", "shape", "data_offsets": [begin, end]}`
//! (offsets relative to the start of the data) and may hold a `"__metadata__"` map of strings.
//!
//! Why not the `safetensors` crate: the format is small enough to read in ~200 lines, and
//! doing it ourselves lets every check run on the header alone, before the data is read or
//! any buffer is sized from the file: a header length that lies, offsets that overlap, leave
//! gaps or point past the end, shapes whose element count overflows or disagrees with the
//! byte range, duplicate names, non-F32 tensors. Each gives an [`Error::Format`] naming the
//! file and the tensor. The writer produces what Python's `safetensors` expects (tensors
//! packed back to back in the order given, header padded with spaces to a multiple of 8).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The largest JSON header accepted (100 MB, Python's `safetensors` limit).
pub const MAX_HEADER_BYTES: u64 = 100_000_000;
/// The most tensors one file may declare.
pub const MAX_TENSORS: usize = 100_000;
/// The most dimensions one tensor may have.
pub const MAX_RANK: usize = 8;

/// One tensor's entry in the header (F32 only), its data not yet read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// The tensor's name.
    pub name: String,
    /// Its dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Byte range in the data section.
    pub begin: usize,
    /// End of the byte range (exclusive).
    pub end: usize,
}

impl TensorInfo {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        (self.end - self.begin) / 4
    }
}

/// A validated header: every tensor is F32, its byte range matches its shape, and the ranges
/// tile the data section exactly.
#[derive(Debug, Clone, Default)]
pub struct Header {
    /// The `__metadata__` string map (empty when absent).
    pub metadata: BTreeMap<String, String>,
    /// The tensors, in the order of their data.
    pub tensors: Vec<TensorInfo>,
    /// Length of the data section in bytes.
    pub data_len: usize,
}

impl Header {
    /// The entry called `name`.
    pub fn get(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// Whether `bytes` starts like a safetensors file (a plausible header length, then `{`).
pub fn looks_like(bytes: &[u8]) -> bool {
    if bytes.len() < 9 {
        return false;
    }
    let mut n = [0u8; 8];
    n.copy_from_slice(&bytes[..8]);
    let n = u64::from_le_bytes(n);
    (2..=MAX_HEADER_BYTES).contains(&n) && bytes[8] == b'{'
}

/// Parses and validates the header JSON, given the length of the data section after it.
///
/// # Errors
/// [`Error::Format`] for anything malformed (see the module documentation).
pub fn parse_header(json: &[u8], data_len: usize, file: &str) -> Result<Header> {
    let bad = |msg: String| Error::format(file, msg);
    let text = std::str::from_utf8(json)
        .map_err(|_| bad("safetensors header is not UTF-8".to_string()))?;
    let root: Map<String, Value> = serde_json::from_str(text)
        .map_err(|e| bad(format!("safetensors header is not a JSON object: {e}")))?;
    if root.len() > MAX_TENSORS + 1 {
        return Err(bad(format!(
            "safetensors header declares {} entries, the limit is {MAX_TENSORS}",
            root.len()
        )));
    }
    let mut header = Header {
        data_len,
        ..Header::default()
    };
    for (name, v) in &root {
        if name == "__metadata__" {
            let m = v
                .as_object()
                .ok_or_else(|| bad("__metadata__ is not an object".to_string()))?;
            for (k, v) in m {
                let s = v
                    .as_str()
                    .ok_or_else(|| bad(format!("__metadata__ value of '{k}' is not a string")))?;
                header.metadata.insert(k.clone(), s.to_string());
            }
            continue;
        }
        header.tensors.push(parse_entry(name, v, data_len, file)?);
    }
    header.tensors.sort_by_key(|t| (t.begin, t.end));
    let mut pos = 0usize;
    for t in &header.tensors {
        if t.begin != pos {
            return Err(bad(format!(
                "tensor '{}' starts at byte {} of the data, expected {pos}: offsets overlap or leave a gap",
                t.name, t.begin
            )));
        }
        pos = t.end;
    }
    if pos != data_len {
        return Err(bad(format!(
            "the tensors cover {pos} bytes of data but the file holds {data_len} (truncated or padded file)"
        )));
    }
    Ok(header)
}

fn parse_entry(name: &str, v: &Value, data_len: usize, file: &str) -> Result<TensorInfo> {
    let bad = |msg: String| Error::format(file, format!("tensor '{name}': {msg}"));
    let o = v
        .as_object()
        .ok_or_else(|| bad("entry is not an object".to_string()))?;
    match o.get("dtype").and_then(Value::as_str) {
        Some("F32") => {}
        Some(other) => {
            return Err(Error::UnsupportedFormat {
                found: format!("{file}: tensor '{name}' of dtype {other}"),
                supported: "F32 tensors".to_string(),
            })
        }
        None => return Err(bad("dtype missing".to_string())),
    }
    let dims = o
        .get("shape")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("shape missing".to_string()))?;
    if dims.len() > MAX_RANK {
        return Err(bad(format!(
            "rank {} exceeds the limit of {MAX_RANK}",
            dims.len()
        )));
    }
    let mut shape = Vec::with_capacity(dims.len());
    let mut numel: u128 = 1;
    for d in dims {
        let d = d
            .as_u64()
            .and_then(|d| usize::try_from(d).ok())
            .ok_or_else(|| bad(format!("dimension {d} is not a non-negative integer")))?;
        numel = numel.saturating_mul(d as u128);
        shape.push(d);
    }
    let offs = o
        .get("data_offsets")
        .and_then(Value::as_array)
        .filter(|a| a.len() == 2)
        .ok_or_else(|| bad("data_offsets is not a pair".to_string()))?;
    let off = |i: usize| {
        offs[i]
            .as_u64()
            .and_then(|x| usize::try_from(x).ok())
            .ok_or_else(|| bad("data_offsets are not non-negative integers".to_string()))
    };
    let (begin, end) = (off(0)?, off(1)?);
    if begin > end || end > data_len {
        return Err(bad(format!(
            "data_offsets [{begin}, {end}] out of range of the {data_len} data bytes"
        )));
    }
    if numel.saturating_mul(4) != (end - begin) as u128 {
        return Err(bad(format!(
            "shape {shape:?} needs {} bytes but data_offsets span {}",
            numel.saturating_mul(4),
            end - begin
        )));
    }
    Ok(TensorInfo {
        name: name.to_string(),
        shape,
        begin,
        end,
    })
}

/// Splits a whole file held in memory into its validated header and data section.
///
/// # Errors
/// [`Error::Format`] for a truncated file, a header length that lies, or a bad header.
pub fn parse_bytes<'a>(bytes: &'a [u8], file: &str) -> Result<(Header, &'a [u8])> {
    if bytes.len() < 8 {
        return Err(Error::format(
            file,
            format!(
                "{} bytes is too short for a safetensors file (8-byte header length)",
                bytes.len()
            ),
        ));
    }
    let n = header_len(&bytes[..8], bytes.len() as u64, file)?;
    let json = &bytes[8..8 + n];
    let data = &bytes[8 + n..];
    let header = parse_header(json, data.len(), file)?;
    Ok((header, data))
}

/// Checks the header length field against the file length.
fn header_len(field: &[u8], file_len: u64, file: &str) -> Result<usize> {
    let mut b = [0u8; 8];
    b.copy_from_slice(field);
    let n = u64::from_le_bytes(b);
    if n > MAX_HEADER_BYTES || n > file_len.saturating_sub(8) {
        return Err(Error::format(
            file,
            format!(
                "safetensors header length {n} does not fit in the {file_len}-byte file (limit {MAX_HEADER_BYTES}): truncated or not a safetensors file"
            ),
        ));
    }
    Ok(n as usize)
}

/// Reads a safetensors file: the header first (validated against the file's length), then
/// the data section, whose size is then known to be exactly what the tensors need.
///
/// # Errors
/// [`Error::Io`] when the file cannot be read, [`Error::Format`] when it is malformed.
pub fn read_file(path: &Path) -> Result<(Header, Vec<u8>)> {
    let file = path.display().to_string();
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let len = f.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut field = [0u8; 8];
    f.read_exact(&mut field).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::format(
                &file,
                format!("{len} bytes is too short for a safetensors file"),
            )
        } else {
            Error::io(path, e)
        }
    })?;
    let n = header_len(&field, len, &file)?;
    let mut json = vec![0u8; n];
    f.read_exact(&mut json).map_err(|e| Error::io(path, e))?;
    let data_len = usize::try_from(len - 8 - n as u64)
        .map_err(|_| Error::format(&file, "file too large for this platform"))?;
    let header = parse_header(&json, data_len, &file)?;
    let mut data = Vec::with_capacity(data_len);
    (&mut f)
        .take(data_len as u64)
        .read_to_end(&mut data)
        .map_err(|e| Error::io(path, e))?;
    if data.len() != data_len {
        return Err(Error::format(
            &file,
            "the file changed size while it was read",
        ));
    }
    Ok((header, data))
}

/// The f32 values of `t` (little-endian) from the data section.
pub fn tensor_data(t: &TensorInfo, data: &[u8]) -> Vec<f32> {
    data[t.begin..t.end]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Serialises tensors `(name, shape, values)` and a metadata map as a safetensors file.
///
/// # Errors
/// [`Error::InvalidInput`] for a duplicate name, the reserved name `__metadata__`, or values
/// whose count does not match the shape.
pub fn to_bytes(
    tensors: &[(String, Vec<usize>, &[f32])],
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    let mut root = Map::new();
    if !metadata.is_empty() {
        let m: Map<String, Value> = metadata
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        root.insert("__metadata__".into(), Value::Object(m));
    }
    let mut pos = 0usize;
    for (name, shape, values) in tensors {
        if name == "__metadata__" || root.contains_key(name) {
            return Err(Error::input(format!(
                "safetensors: duplicate or reserved tensor name '{name}'"
            )));
        }
        if shape.iter().product::<usize>() != values.len() {
            return Err(Error::input(format!(
                "safetensors: tensor '{name}' has {} values for shape {shape:?}",
                values.len()
            )));
        }
        let end = pos + 4 * values.len();
        root.insert(
            name.clone(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [pos, end]}),
        );
        pos = end;
    }
    let mut json = Value::Object(root).to_string().into_bytes();
    while !json.len().is_multiple_of(8) {
        json.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + json.len() + pos);
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    for (_, _, values) in tensors {
        for v in values.iter() {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let a = [1.0f32, 2.0, 3.0];
        let b = [4.0f32];
        let mut meta = BTreeMap::new();
        meta.insert("k".to_string(), "v".to_string());
        to_bytes(
            &[
                ("a".into(), vec![3], &a[..]),
                ("b".into(), vec![1, 1], &b[..]),
            ],
            &meta,
        )
        .unwrap()
    }

    #[test]
    fn round_trip() {
        let bytes = sample();
        let (h, data) = parse_bytes(&bytes, "mem").unwrap();
        assert_eq!(h.metadata["k"], "v");
        assert_eq!(tensor_data(h.get("a").unwrap(), data), vec![1.0, 2.0, 3.0]);
        assert_eq!(h.get("b").unwrap().shape, vec![1, 1]);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = sample();
        for n in 0..bytes.len() {
            assert!(parse_bytes(&bytes[..n], "mem").is_err(), "prefix {n}");
        }
    }

    fn with_header(json: &str, data: &[u8]) -> Vec<u8> {
        let mut out = (json.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(json.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn hostile_headers_are_errors() {
        let cases = [
            // overlapping
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
            // gap
            r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
            // out of range
            r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,
            // shape / bytes disagree
            r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
            // overflowing shape
            r#"{"a":{"dtype":"F32","shape":[18446744073709551615,18446744073709551615],"data_offsets":[0,8]}}"#,
            // negative
            r#"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,8]}}"#,
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#,
            r#"{"__metadata__":{"x":1}}"#,
            r#"[]"#,
            r#"{"a":{"dtype":"F16","shape":[4],"data_offsets":[0,8]}}"#,
        ];
        for json in cases {
            let bytes = with_header(json, &[0u8; 8]);
            assert!(parse_bytes(&bytes, "mem").is_err(), "{json}");
        }
        // A header length that lies.
        let mut bytes = with_header("{}", &[]);
        bytes[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(parse_bytes(&bytes, "mem").is_err());
    }
}
