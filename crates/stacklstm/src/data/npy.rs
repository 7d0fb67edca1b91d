//! NumPy `.npy` files.
//!
//! Reading accepts format versions 1.0, 2.0 and 3.0, C order, and the little-endian dtypes
//! `<f4`, `<f8`, `<i4`, `<i8`, `<i2`, `<u2`, `<u4`, `<u8` plus the one-byte `|u1`, `|i1` and
//! `|b1`; every value is converted to `f32` (64-bit values are rounded to the nearest `f32`).
//! Rejected with a clear error: `fortran_order: True`, big-endian dtypes, other dtypes, a header
//! longer than [`MAX_HEADER_LEN`], more than [`MAX_NDIM`] dimensions, and any file whose data size
//! is not exactly what the shape needs. The shape product is computed with overflow checks and
//! compared with the file size *before* anything is allocated, so a hostile header claiming
//! 10^12 elements in a 100-byte file is an error, not an allocation.
//!
//! Writing produces `<f4`, version 1.0, C order, with the header padded so that the data
//! starts at a multiple of 64 bytes, as NumPy does; the file is written atomically with
//! [`crate::io::write_atomic`].

use crate::error::{Error, Result};
use ndarray::{ArrayBase, ArrayD, Data, Dimension, IxDyn};
use std::path::Path;

/// The largest header accepted when reading, in bytes.
pub const MAX_HEADER_LEN: usize = 1 << 20;
/// The largest number of dimensions accepted when reading.
pub const MAX_NDIM: usize = 32;

const MAGIC: &[u8] = b"\x93NUMPY";

/// Reads a `.npy` file into an `f32` array of its shape.
pub fn read_npy(path: impl AsRef<Path>) -> Result<ArrayD<f32>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    read_npy_bytes(&bytes, &path.display().to_string())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DType {
    F4,
    F8,
    I1,
    I2,
    I4,
    I8,
    U1,
    U2,
    U4,
    U8,
    B1,
}

impl DType {
    fn size(self) -> usize {
        match self {
            DType::I1 | DType::U1 | DType::B1 => 1,
            DType::I2 | DType::U2 => 2,
            DType::F4 | DType::I4 | DType::U4 => 4,
            DType::F8 | DType::I8 | DType::U8 => 8,
        }
    }

    fn parse(descr: &str, name: &str) -> Result<Self> {
        let supported = "<f4, <f8, <i2, <i4, <i8, <u2, <u4, <u8, |u1, |i1, |b1";
        let (order, code) = descr.split_at(descr.char_indices().nth(1).map_or(0, |(i, _)| i));
        let little = cfg!(target_endian = "little");
        let dt = match code {
            "f4" => DType::F4,
            "f8" => DType::F8,
            "i1" => DType::I1,
            "i2" => DType::I2,
            "i4" => DType::I4,
            "i8" => DType::I8,
            "u1" => DType::U1,
            "u2" => DType::U2,
            "u4" => DType::U4,
            "u8" => DType::U8,
            "b1" => DType::B1,
            _ => {
                return Err(Error::format(
                    name,
                    format!("unsupported dtype '{descr}'; supported: {supported}"),
                ))
            }
        };
        let ok = match order {
            "<" => true,
            "|" => dt.size() == 1,
            "=" => little || dt.size() == 1,
            ">" => {
                if dt.size() == 1 {
                    true
                } else {
                    return Err(Error::format(
                        name,
                        format!("big-endian dtype '{descr}' is not supported; save it little-endian, e.g. arr.astype('<{code}')"),
                    ));
                }
            }
            _ => false,
        };
        if !ok {
            return Err(Error::format(
                name,
                format!("unsupported dtype '{descr}'; supported: {supported}"),
            ));
        }
        Ok(dt)
    }
}

/// The parsed header dictionary.
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// A minimal parser for the Python dict literal of a `.npy` header.
struct HeaderParser<'a> {
    s: &'a [u8],
    pos: usize,
    name: &'a str,
}

enum Value {
    Str(String),
    Bool(bool),
    Tuple(Vec<usize>),
}

impl<'a> HeaderParser<'a> {
    fn err(&self, msg: impl std::fmt::Display) -> Error {
        Error::format(
            self.name,
            format!("malformed .npy header ({msg} at byte {})", self.pos),
        )
    }

    fn ws(&mut self) {
        while self
            .s
            .get(self.pos)
            .is_some_and(|b| b.is_ascii_whitespace())
        {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.pos).copied()
    }

    fn expect(&mut self, c: u8) -> Result<()> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(format!("expected '{}'", c as char)))
        }
    }

    fn string(&mut self) -> Result<String> {
        let q = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            _ => return Err(self.err("expected a string")),
        };
        self.pos += 1;
        let start = self.pos;
        while let Some(&b) = self.s.get(self.pos) {
            if b == q {
                let raw = self.s.get(start..self.pos).unwrap_or(&[]);
                self.pos += 1;
                return std::str::from_utf8(raw)
                    .map(str::to_string)
                    .map_err(|_| self.err("non-UTF-8 string"));
            }
            if b == b'\\' {
                return Err(self.err("escape sequences are not supported"));
            }
            self.pos += 1;
        }
        Err(self.err("unterminated string"))
    }

    fn ident(&mut self) -> &'a [u8] {
        self.ws();
        let start = self.pos;
        while self
            .s
            .get(self.pos)
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
        {
            self.pos += 1;
        }
        self.s.get(start..self.pos).unwrap_or(&[])
    }

    fn tuple(&mut self) -> Result<Vec<usize>> {
        self.expect(b'(')?;
        let mut dims = Vec::new();
        loop {
            if self.peek() == Some(b')') {
                self.pos += 1;
                return Ok(dims);
            }
            let tok = self.ident();
            let tok = std::str::from_utf8(tok).unwrap_or("");
            let tok = tok.strip_suffix('L').unwrap_or(tok); // Python 2 longs
            let d: usize = tok
                .parse()
                .map_err(|_| self.err(format!("bad dimension '{tok}'")))?;
            dims.push(d);
            if dims.len() > MAX_NDIM {
                return Err(self.err(format!("more than {MAX_NDIM} dimensions")));
            }
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b')') => {}
                _ => return Err(self.err("expected ',' or ')' in the shape")),
            }
        }
    }

    fn value(&mut self) -> Result<Value> {
        match self.peek() {
            Some(b'\'' | b'"') => Ok(Value::Str(self.string()?)),
            Some(b'(') => Ok(Value::Tuple(self.tuple()?)),
            _ => match self.ident() {
                b"True" => Ok(Value::Bool(true)),
                b"False" => Ok(Value::Bool(false)),
                _ => Err(self.err("expected a string, a tuple, True or False")),
            },
        }
    }

    fn header(mut self) -> Result<Header> {
        self.expect(b'{')?;
        let (mut descr, mut fortran, mut shape) = (None, None, None);
        loop {
            if self.peek() == Some(b'}') {
                self.pos += 1;
                break;
            }
            let key = self.string()?;
            self.expect(b':')?;
            let v = self.value()?;
            match (key.as_str(), v) {
                ("descr", Value::Str(s)) if descr.is_none() => descr = Some(s),
                ("fortran_order", Value::Bool(b)) if fortran.is_none() => fortran = Some(b),
                ("shape", Value::Tuple(t)) if shape.is_none() => shape = Some(t),
                (k, _) => return Err(self.err(format!("unexpected or repeated key '{k}'"))),
            }
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {}
                _ => return Err(self.err("expected ',' or '}'")),
            }
        }
        if self.peek().is_some() {
            return Err(self.err("trailing text after the dictionary"));
        }
        match (descr, fortran, shape) {
            (Some(descr), Some(fortran_order), Some(shape)) => Ok(Header {
                descr,
                fortran_order,
                shape,
            }),
            _ => Err(self.err("the keys 'descr', 'fortran_order' and 'shape' are all required")),
        }
    }
}

/// Reads `.npy` bytes (see the module docs). `name` names the source in errors.
pub fn read_npy_bytes(bytes: &[u8], name: &str) -> Result<ArrayD<f32>> {
    if bytes.len() < 10 || bytes.get(..6) != Some(MAGIC) {
        return Err(Error::format(
            name,
            "not a .npy file (missing the \\x93NUMPY magic)",
        ));
    }
    let major = bytes.get(6).copied().unwrap_or(0);
    let minor = bytes.get(7).copied().unwrap_or(0);
    let (hlen, hstart) = match (major, minor) {
        (1, 0) => {
            let b = match bytes.get(8..10) {
                Some(&[lo, hi]) => [lo, hi],
                _ => [0, 0],
            };
            (u16::from_le_bytes(b) as usize, 10usize)
        }
        (2, 0) | (3, 0) => {
            let b = bytes.get(8..12).ok_or_else(|| {
                Error::format(name, "truncated .npy file: the header length is cut off")
            })?;
            let mut a = [0u8; 4];
            a.copy_from_slice(b);
            (u32::from_le_bytes(a) as usize, 12usize)
        }
        _ => {
            return Err(Error::UnsupportedFormat {
                found: format!("{name}: .npy format version {major}.{minor}"),
                supported: "1.0, 2.0, 3.0".into(),
            })
        }
    };
    if hlen > MAX_HEADER_LEN {
        return Err(Error::format(
            name,
            format!("the .npy header claims {hlen} bytes, more than the limit of {MAX_HEADER_LEN}"),
        ));
    }
    let hend = hstart + hlen;
    let header_bytes = bytes.get(hstart..hend).ok_or_else(|| {
        Error::format(
            name,
            format!(
                "truncated .npy file: the header claims {hlen} bytes but only {} follow",
                bytes.len().saturating_sub(hstart)
            ),
        )
    })?;
    if major < 3 && !header_bytes.is_ascii() {
        // Versions 1 and 2 are latin-1; every valid header is ASCII in practice.
        return Err(Error::format(
            name,
            "malformed .npy header (non-ASCII bytes)",
        ));
    }
    let header = HeaderParser {
        s: header_bytes,
        pos: 0,
        name,
    }
    .header()?;
    let dt = DType::parse(&header.descr, name)?;
    if header.fortran_order {
        return Err(Error::format(
            name,
            "fortran_order=True is not supported; save a C-ordered array (np.ascontiguousarray(a))",
        ));
    }
    let mut count: usize = 1;
    for &d in &header.shape {
        count = count.checked_mul(d).ok_or_else(|| {
            Error::format(
                name,
                format!("the shape {:?} overflows the element count", header.shape),
            )
        })?;
    }
    let need = count.checked_mul(dt.size()).ok_or_else(|| {
        Error::format(
            name,
            format!("the shape {:?} overflows the byte count", header.shape),
        )
    })?;
    let data = bytes.get(hend..).unwrap_or(&[]);
    if data.len() != need {
        return Err(Error::format(
            name,
            format!(
                "the shape {:?} of '{}' needs {need} data bytes but the file has {}{}",
                header.shape,
                header.descr,
                data.len(),
                if data.len() < need {
                    " (truncated file)"
                } else {
                    ""
                }
            ),
        ));
    }
    let sz = dt.size();
    let mut out = Vec::with_capacity(count);
    for c in data.chunks_exact(sz) {
        let mut b = [0u8; 8];
        if let Some(dst) = b.get_mut(..sz) {
            dst.copy_from_slice(c);
        }
        let v = match dt {
            DType::F4 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            DType::F8 => f64::from_le_bytes(b) as f32,
            DType::I1 => b[0] as i8 as f32,
            DType::U1 => b[0] as f32,
            DType::B1 => (b[0] != 0) as u8 as f32,
            DType::I2 => i16::from_le_bytes([b[0], b[1]]) as f32,
            DType::U2 => u16::from_le_bytes([b[0], b[1]]) as f32,
            DType::I4 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
            DType::U4 => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
            DType::I8 => i64::from_le_bytes(b) as f32,
            DType::U8 => u64::from_le_bytes(b) as f32,
        };
        out.push(v);
    }
    ArrayD::from_shape_vec(IxDyn(&header.shape), out)
        .map_err(|e| Error::format(name, format!("cannot build the array: {e}")))
}

/// The bytes of a `.npy` file (version 1.0, `<f4`, C order) holding `array`.
pub fn npy_bytes<S, D>(array: &ArrayBase<S, D>) -> Result<Vec<u8>>
where
    S: Data<Elem = f32>,
    D: Dimension,
{
    let dims: Vec<String> = array.shape().iter().map(|d| d.to_string()).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims.concat()),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    // magic (6) + version (2) + length (2) + header + '\n' is a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    let pad = (64 - unpadded % 64) % 64;
    header.extend(std::iter::repeat_n(' ', pad));
    header.push('\n');
    let hlen = u16::try_from(header.len()).map_err(|_| {
        Error::input(format!(
            "array with {} dimensions is too large for a version 1.0 .npy header",
            array.ndim()
        ))
    })?;
    let data_len = array
        .len()
        .checked_mul(4)
        .ok_or_else(|| Error::input("array too large"))?;
    let mut out = Vec::with_capacity(10 + header.len() + data_len);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&hlen.to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for &v in array.iter() {
        out.extend_from_slice(&v.to_le_bytes());
    }
    Ok(out)
}

/// Writes `array` as a `.npy` file (version 1.0, `<f4`, C order, whatever the array's memory
/// layout), atomically.
pub fn write_npy<S, D>(path: impl AsRef<Path>, array: &ArrayBase<S, D>) -> Result<()>
where
    S: Data<Elem = f32>,
    D: Dimension,
{
    let bytes = npy_bytes(array)?;
    crate::io::write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array3};
    use proptest::prelude::*;

    fn file(version: u8, header: &str, data: &[u8]) -> Vec<u8> {
        let mut v = MAGIC.to_vec();
        v.push(version);
        v.push(0);
        if version == 1 {
            v.extend_from_slice(&(header.len() as u16).to_le_bytes());
        } else {
            v.extend_from_slice(&(header.len() as u32).to_le_bytes());
        }
        v.extend_from_slice(header.as_bytes());
        v.extend_from_slice(data);
        v
    }

    fn msg(r: Result<ArrayD<f32>>) -> String {
        match r {
            Err(e) => e.to_string(),
            Ok(a) => panic!("expected an error, got {a:?}"),
        }
    }

    #[test]
    fn round_trip_and_alignment() {
        let a = Array3::from_shape_fn((2, 3, 4), |(i, j, k)| (i * 100 + j * 10 + k) as f32 - 0.5);
        let bytes = npy_bytes(&a).unwrap();
        let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0);
        assert_eq!(bytes[10 + hlen - 1], b'\n');
        let back = read_npy_bytes(&bytes, "m").unwrap();
        assert_eq!(back.shape(), &[2, 3, 4]);
        assert_eq!(back, a.into_dyn());
        // 1-D, 0-D, empty, transposed (non-C memory order) arrays
        let v = array![1.0f32, f32::NAN, f32::INFINITY];
        let back = read_npy_bytes(&npy_bytes(&v).unwrap(), "m").unwrap();
        assert_eq!(back.shape(), &[3]);
        assert!(back[[1]].is_nan() && back[[2]] == f32::INFINITY);
        assert!(String::from_utf8_lossy(&npy_bytes(&v).unwrap()).contains("'shape': (3,)"));
        let s = ndarray::arr0(7.0f32);
        assert_eq!(
            read_npy_bytes(&npy_bytes(&s).unwrap(), "m").unwrap(),
            s.into_dyn()
        );
        let e = ndarray::Array2::<f32>::zeros((0, 5));
        assert_eq!(
            read_npy_bytes(&npy_bytes(&e).unwrap(), "m")
                .unwrap()
                .shape(),
            &[0, 5]
        );
        let t = array![[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]];
        let tt = t.t();
        let back = read_npy_bytes(&npy_bytes(&tt).unwrap(), "m").unwrap();
        assert_eq!(back, tt.to_owned().into_dyn());
    }

    #[test]
    fn write_and_read_file() {
        let dir = std::env::temp_dir().join(format!("stacklstm_npy_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.npy");
        let a = array![[1.5f32, -2.0], [3.0, 4.25]];
        write_npy(&p, &a).unwrap();
        assert_eq!(read_npy(&p).unwrap(), a.clone().into_dyn());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(
            read_npy(dir.join("missing.npy")),
            Err(Error::Io { .. })
        ));
    }

    #[test]
    fn dtypes_and_versions() {
        let h = |d: &str, s: &str| {
            format!("{{'descr': '{d}', 'fortran_order': False, 'shape': {s}, }}\n")
        };
        let f8: Vec<u8> = [1.5f64, -2.25]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        for ver in [1u8, 2, 3] {
            let a = read_npy_bytes(&file(ver, &h("<f8", "(2,)"), &f8), "m").unwrap();
            assert_eq!(a.into_raw_vec_and_offset().0, vec![1.5, -2.25]);
        }
        let i4: Vec<u8> = [7i32, -3].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(
            read_npy_bytes(&file(1, &h("<i4", "(1, 2)"), &i4), "m")
                .unwrap()
                .shape(),
            &[1, 2]
        );
        let i8: Vec<u8> = [1i64 << 40, -5]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let a = read_npy_bytes(&file(1, &h("<i8", "(2,)"), &i8), "m").unwrap();
        assert_eq!(
            a.into_raw_vec_and_offset().0,
            vec![(1u64 << 40) as f32, -5.0]
        );
        let a = read_npy_bytes(&file(1, &h("|u1", "(3,)"), &[0, 128, 255]), "m").unwrap();
        assert_eq!(a.into_raw_vec_and_offset().0, vec![0.0, 128.0, 255.0]);
        let a = read_npy_bytes(&file(1, &h("|i1", "(1,)"), &[255]), "m").unwrap();
        assert_eq!(a.into_raw_vec_and_offset().0, vec![-1.0]);
        let a = read_npy_bytes(&file(1, &h("|b1", "(2,)"), &[0, 1]), "m").unwrap();
        assert_eq!(a.into_raw_vec_and_offset().0, vec![0.0, 1.0]);
        // double quotes, other key order, no trailing comma
        let a = read_npy_bytes(
            &file(
                1,
                "{\"shape\": (1,), \"fortran_order\": False, \"descr\": \"<f4\"}",
                &2.0f32.to_le_bytes(),
            ),
            "m",
        )
        .unwrap();
        assert_eq!(a.into_raw_vec_and_offset().0, vec![2.0]);
    }

    #[test]
    fn rejects_fortran_big_endian_and_unknown_dtypes() {
        let d = [0u8; 8];
        let m = msg(read_npy_bytes(
            &file(
                1,
                "{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }",
                &d,
            ),
            "f.npy",
        ));
        assert!(
            m.contains("fortran_order=True") && m.starts_with("f.npy"),
            "{m}"
        );
        let m = msg(read_npy_bytes(
            &file(
                1,
                "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }",
                &d,
            ),
            "b.npy",
        ));
        assert!(m.contains("big-endian"), "{m}");
        for bad in ["<c8", "<U3", "O", "", "<f2"] {
            let h = format!("{{'descr': '{bad}', 'fortran_order': False, 'shape': (2,), }}");
            let m = msg(read_npy_bytes(&file(1, &h, &d), "u.npy"));
            assert!(m.contains("unsupported dtype"), "{m}");
        }
        let mut v = file(
            1,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }",
            &d,
        );
        v[6] = 4;
        assert!(matches!(
            read_npy_bytes(&v, "v"),
            Err(Error::UnsupportedFormat { .. })
        ));
    }

    #[test]
    fn hostile_inputs() {
        let good = npy_bytes(&array![[1.0f32, 2.0], [3.0, 4.0]]).unwrap();
        // truncated at every length
        for n in 0..good.len() {
            assert!(
                read_npy_bytes(&good[..n], "t").is_err(),
                "length {n} accepted"
            );
        }
        let m = msg(read_npy_bytes(&good[..good.len() - 3], "t.npy"));
        assert!(m.contains("truncated"), "{m}");
        // trailing garbage
        let mut long = good.clone();
        long.push(0);
        assert!(read_npy_bytes(&long, "t").is_err());
        // huge claimed shape in a 100-byte file: an error, no allocation
        for shape in [
            "(1000000, 1000000)",
            "(1000000000000,)",
            "(18446744073709551615, 2)",
            "(4294967296, 4294967296, 4294967296)",
        ] {
            let h = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
            let f = file(1, &h, &[0u8; 16]);
            assert!(f.len() < 120);
            let m = msg(read_npy_bytes(&f, "h.npy"));
            assert!(m.contains("needs") || m.contains("overflow"), "{m}");
        }
        // header length beyond the file / beyond the limit
        let mut f = good.clone();
        f[8] = 0xff;
        f[9] = 0xff;
        assert!(msg(read_npy_bytes(&f, "x")).contains("truncated"));
        let mut f = file(2, "{}", &[]);
        f[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(msg(read_npy_bytes(&f, "x")).contains("limit"));
        // garbage headers
        for h in [
            "",
            "garbage",
            "{",
            "{'descr': '<f4'",
            "{'descr': '<f4', 'fortran_order': False}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'shape': (2,)}",
            "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2,)}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (-2,)}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2.5,)}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} trailing",
            "{'descr': '<f\\x34', 'fortran_order': False, 'shape': (2,)}",
            "{'descr': 5, 'fortran_order': False, 'shape': (2,)}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2,,)}",
        ] {
            let m = msg(read_npy_bytes(&file(1, h, &[0u8; 8]), "g.npy"));
            assert!(m.starts_with("g.npy"), "{m}");
        }
        let many = format!(
            "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}), }}",
            "1, ".repeat(40)
        );
        assert!(msg(read_npy_bytes(&file(1, &many, &[0u8; 4]), "d")).contains("dimensions"));
        // non-ASCII header in v1, bad magic
        assert!(read_npy_bytes(&file(1, "{'descr': '<f4\u{e9}'}", &[]), "x").is_err());
        assert!(msg(read_npy_bytes(b"\x93NUMPX\x01\x00\x00\x00", "x")).contains("magic"));
    }

    proptest! {
        #[test]
        fn round_trip_any_shape(dims in proptest::collection::vec(0usize..5, 0..5), seed in any::<u32>()) {
            let n: usize = dims.iter().product();
            let data: Vec<f32> = (0..n).map(|i| (i as u32 ^ seed) as f32 * 0.37 - 3.0).collect();
            let a = ArrayD::from_shape_vec(IxDyn(&dims), data).unwrap();
            let back = read_npy_bytes(&npy_bytes(&a).unwrap(), "p").unwrap();
            prop_assert_eq!(back, a);
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = read_npy_bytes(&bytes, "r");
            let mut v = MAGIC.to_vec();
            v.extend_from_slice(&[1, 0]);
            v.extend_from_slice(&bytes);
            let _ = read_npy_bytes(&v, "r");
        }
    }

    /// Every fixture's `x.npy` equals the `input` tensor of its `case.json`.
    #[test]
    fn real_fixtures_x_npy() {
        let dir = crate::data::shared_dir().expect(
            "shared/ (data and fixtures) not found beside the repository; set STACKLSTM_SHARED",
        );
        let mut seen = 0;
        for entry in std::fs::read_dir(dir.join("fixtures")).unwrap() {
            let case = entry.unwrap().path();
            let x_path = case.join("x.npy");
            if !x_path.is_file() {
                continue;
            }
            let x = read_npy(&x_path).unwrap();
            let json: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(case.join("case.json")).unwrap())
                    .unwrap();
            let shape: Vec<usize> = json["input"]["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            let data: Vec<f32> = json["input"]["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_f64().unwrap() as f32)
                .collect();
            assert_eq!(x.shape(), &shape[..], "{}", case.display());
            assert_eq!(x.ndim(), 3);
            assert_eq!(
                x.iter().copied().collect::<Vec<_>>(),
                data,
                "{}",
                case.display()
            );
            // and our writer reproduces a file numpy reads the same way
            let again = read_npy_bytes(&npy_bytes(&x).unwrap(), "again").unwrap();
            assert_eq!(again, x);
            seen += 1;
        }
        assert!(seen >= 8, "only {seen} fixture cases found");
    }
}
