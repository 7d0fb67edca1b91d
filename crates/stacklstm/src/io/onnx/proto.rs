//! A minimal protobuf writer for the subset of `onnx.proto` (proto2) that the exporter emits.
//!
//! Only encoding is needed, so every message is built bottom-up into a `Vec<u8>` and embedded
//! into its parent as a length-delimited field. Repeated scalar fields that `onnx.proto` does not
//! declare `[packed = true]` (`dims`, attribute `ints`/`floats`) are written unpacked, one tag
//! per element, as the reference serializer does. Tensor contents go into `raw_data`
//! (little-endian), which every ONNX reader accepts.
//!
//! Field numbers follow `onnx.proto`:
//! ModelProto{ir_version=1, producer_name=2, producer_version=3, graph=7, opset_import=8},
//! OperatorSetIdProto{domain=1, version=2},
//! GraphProto{node=1, name=2, initializer=5, input=11, output=12},
//! NodeProto{input=1, output=2, name=3, op_type=4, attribute=5},
//! AttributeProto{name=1, f=2, i=3, s=4, floats=7, ints=8, strings=9, type=20},
//! TensorProto{dims=1, data_type=2, name=8, raw_data=9},
//! ValueInfoProto{name=1, type=2}, TypeProto{tensor_type=1}, TypeProto.Tensor{elem_type=1,
//! shape=2}, TensorShapeProto{dim=1}, Dimension{dim_value=1, dim_param=2}.

use crate::layers::onnx::OnnxAttr as Attr;

/// Protobuf wire types.
const WIRE_VARINT: u64 = 0;
const WIRE_FIXED32: u64 = 5;
const WIRE_LEN: u64 = 2;

/// `TensorProto.DataType.FLOAT`.
pub const DT_FLOAT: i64 = 1;
/// `TensorProto.DataType.INT64`.
pub const DT_INT64: i64 = 7;

/// `AttributeProto.AttributeType` values used here.
const AT_FLOAT: i64 = 1;
const AT_INT: i64 = 2;
const AT_STRING: i64 = 3;
const AT_FLOATS: i64 = 6;
const AT_INTS: i64 = 7;
const AT_STRINGS: i64 = 8;

/// Appends `v` as a base-128 varint.
pub fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// A protobuf message being written.
#[derive(Debug, Default, Clone)]
pub struct Msg {
    buf: Vec<u8>,
}

impl Msg {
    pub fn new() -> Self {
        Msg::default()
    }

    /// The encoded bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// The encoded length so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    fn key(&mut self, field: u32, wire: u64) {
        put_varint(&mut self.buf, (u64::from(field) << 3) | wire);
    }

    /// An `int64`/`int32`/enum field (negative values use the 10-byte two's-complement form).
    pub fn int(&mut self, field: u32, v: i64) -> &mut Self {
        self.key(field, WIRE_VARINT);
        put_varint(&mut self.buf, v as u64);
        self
    }

    /// A `float` field.
    pub fn float(&mut self, field: u32, v: f32) -> &mut Self {
        self.key(field, WIRE_FIXED32);
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// A `bytes` field.
    pub fn bytes(&mut self, field: u32, v: &[u8]) -> &mut Self {
        self.key(field, WIRE_LEN);
        put_varint(&mut self.buf, v.len() as u64);
        self.buf.extend_from_slice(v);
        self
    }

    /// A `string` field.
    pub fn string(&mut self, field: u32, v: &str) -> &mut Self {
        self.bytes(field, v.as_bytes())
    }

    /// An embedded message field.
    pub fn msg(&mut self, field: u32, m: &Msg) -> &mut Self {
        self.bytes(field, &m.buf)
    }
}

/// `OperatorSetIdProto` for the default (`ai.onnx`) domain.
pub fn opset(version: i64) -> Msg {
    let mut m = Msg::new();
    m.string(1, "").int(2, version);
    m
}

/// A float tensor initializer (`TensorProto`).
pub fn tensor_f32(name: &str, dims: &[usize], data: &[f32]) -> Msg {
    let mut raw = Vec::with_capacity(data.len() * 4);
    for v in data {
        raw.extend_from_slice(&v.to_le_bytes());
    }
    tensor_raw(name, dims, DT_FLOAT, &raw)
}

/// An int64 tensor initializer (`TensorProto`).
pub fn tensor_i64(name: &str, dims: &[usize], data: &[i64]) -> Msg {
    let mut raw = Vec::with_capacity(data.len() * 8);
    for v in data {
        raw.extend_from_slice(&v.to_le_bytes());
    }
    tensor_raw(name, dims, DT_INT64, &raw)
}

fn tensor_raw(name: &str, dims: &[usize], data_type: i64, raw: &[u8]) -> Msg {
    let mut m = Msg::new();
    for &d in dims {
        m.int(1, d as i64);
    }
    m.int(2, data_type).string(8, name).bytes(9, raw);
    m
}

/// One dimension of a value's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    /// A fixed size.
    Value(usize),
    /// A symbolic size, e.g. `batch`.
    Param(String),
}

/// `ValueInfoProto` of a float tensor with the given shape.
pub fn value_info_f32(name: &str, dims: &[Dim]) -> Msg {
    let mut shape = Msg::new();
    for d in dims {
        let mut dim = Msg::new();
        match d {
            Dim::Value(v) => dim.int(1, *v as i64),
            Dim::Param(p) => dim.string(2, p),
        };
        shape.msg(1, &dim);
    }
    let mut tensor = Msg::new();
    tensor.int(1, DT_FLOAT).msg(2, &shape);
    let mut ty = Msg::new();
    ty.msg(1, &tensor);
    let mut m = Msg::new();
    m.string(1, name).msg(2, &ty);
    m
}

/// `AttributeProto`.
pub fn attribute(name: &str, value: &Attr) -> Msg {
    let mut m = Msg::new();
    m.string(1, name);
    match value {
        Attr::Float(f) => {
            m.float(2, *f).int(20, AT_FLOAT);
        }
        Attr::Int(i) => {
            m.int(3, *i).int(20, AT_INT);
        }
        Attr::Str(s) => {
            m.string(4, s).int(20, AT_STRING);
        }
        Attr::Floats(fs) => {
            for f in fs {
                m.float(7, *f);
            }
            m.int(20, AT_FLOATS);
        }
        Attr::Ints(is) => {
            for i in is {
                m.int(8, *i);
            }
            m.int(20, AT_INTS);
        }
        Attr::Strs(ss) => {
            for s in ss {
                m.string(9, s);
            }
            m.int(20, AT_STRINGS);
        }
    }
    m
}

/// `NodeProto` in the default domain. An empty string in `outputs` marks an optional output
/// that is not produced.
pub fn node(
    name: &str,
    op_type: &str,
    inputs: &[&str],
    outputs: &[&str],
    attrs: &[(&str, Attr)],
) -> Msg {
    let mut m = Msg::new();
    for i in inputs {
        m.string(1, i);
    }
    for o in outputs {
        m.string(2, o);
    }
    m.string(3, name).string(4, op_type);
    for (n, v) in attrs {
        m.msg(5, &attribute(n, v));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(v: u64) -> Vec<u8> {
        let mut b = Vec::new();
        put_varint(&mut b, v);
        b
    }

    #[test]
    fn varints() {
        assert_eq!(varint(0), [0x00]);
        assert_eq!(varint(1), [0x01]);
        assert_eq!(varint(127), [0x7f]);
        assert_eq!(varint(128), [0x80, 0x01]);
        assert_eq!(varint(150), [0x96, 0x01]);
        assert_eq!(varint(300), [0xac, 0x02]);
        assert_eq!(varint(16_384), [0x80, 0x80, 0x01]);
        assert_eq!(varint(u64::MAX).len(), 10);
        // int64 -1 is ten bytes: nine 0xff then 0x01.
        let mut m = Msg::new();
        m.int(1, -1);
        let mut want = vec![0x08];
        want.extend_from_slice(&[0xff; 9]);
        want.push(0x01);
        assert_eq!(m.into_bytes(), want);
    }

    #[test]
    fn keys_and_lengths() {
        let mut m = Msg::new();
        m.int(1, 8); // ir_version = 8
        assert_eq!(m.clone().into_bytes(), [0x08, 0x08]);
        let mut m = Msg::new();
        m.string(2, "ab"); // field 2, wire 2
        assert_eq!(m.into_bytes(), [0x12, 0x02, b'a', b'b']);
        let mut m = Msg::new();
        m.int(20, 2); // field 20 needs a two-byte key: (20<<3)|0 = 160
        assert_eq!(m.into_bytes(), [0xa0, 0x01, 0x02]);
        let mut m = Msg::new();
        m.float(2, 1.0);
        assert_eq!(m.into_bytes(), [0x15, 0x00, 0x00, 0x80, 0x3f]);
        // A length prefix over 127 takes two bytes.
        let mut m = Msg::new();
        m.bytes(9, &[7u8; 200]);
        let b = m.into_bytes();
        assert_eq!(&b[..3], &[0x4a, 0xc8, 0x01]);
        assert_eq!(b.len(), 203);
    }

    #[test]
    fn nested_message_and_tensor() {
        let t = tensor_i64("ax", &[1], &[-1]);
        let b = t.into_bytes();
        // dims: 08 01 ; data_type: 10 07 ; name: 42 02 'a' 'x' ; raw_data: 4a 08 ff*8
        let mut want = vec![0x08, 0x01, 0x10, 0x07, 0x42, 0x02, b'a', b'x', 0x4a, 0x08];
        want.extend_from_slice(&[0xff; 8]);
        assert_eq!(b, want);

        let a = attribute("activations", &Attr::Strs(vec!["Tanh".into()]));
        let b = a.into_bytes();
        let mut want = vec![0x0a, 11];
        want.extend_from_slice(b"activations");
        want.extend_from_slice(&[0x4a, 4]);
        want.extend_from_slice(b"Tanh");
        want.extend_from_slice(&[0xa0, 0x01, 8]);
        assert_eq!(b, want);
    }

    #[test]
    fn value_info_shape() {
        let v = value_info_f32("x", &[Dim::Param("batch".into()), Dim::Value(3)]);
        let b = v.into_bytes();
        // name
        assert_eq!(&b[..3], &[0x0a, 0x01, b'x']);
        // type{ tensor_type{ elem_type=1, shape{ dim{dim_param="batch"}, dim{dim_value=3} } } }
        let shape_inner: Vec<u8> = [
            vec![0x0a, 7, 0x12, 5],
            b"batch".to_vec(),
            vec![0x0a, 2, 0x08, 3],
        ]
        .concat();
        let tensor_inner: Vec<u8> =
            [vec![0x08, 0x01, 0x12, shape_inner.len() as u8], shape_inner].concat();
        let type_inner: Vec<u8> = [vec![0x0a, tensor_inner.len() as u8], tensor_inner].concat();
        let want: Vec<u8> = [vec![0x12, type_inner.len() as u8], type_inner].concat();
        assert_eq!(&b[3..], &want[..]);
    }
}
