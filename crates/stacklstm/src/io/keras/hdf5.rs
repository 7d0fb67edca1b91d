//! A small, hostile-input-safe HDF5 reader for exactly what Keras 3 writes.
//!
//! # Why a hand-written reader
//!
//! Three options were weighed:
//!
//! * **A pure-Rust HDF5 crate.** Several exist (`hdf5-rust`, `hdf5-reader`, `rustyhdf5`,
//!   `hdf5-pure`, ...), all young, each with a different owner and no clear leader. None could
//!   be assessed for hardening against hostile files, and any of them would pull in far more
//!   format surface (and attack surface) than Keras needs.
//! * **libhdf5 through a binding crate** (`hdf5-metno`). Robust, but needs the system
//!   `libhdf5-dev` on every developer machine and in CI, links C code, and the C library is not
//!   built to survive malicious files.
//! * **This reader.** Keras 3 saves weights with h5py's defaults: superblock version 0, version-1
//!   object headers, symbol-table groups (v1 B-tree + local heap), and uncompressed contiguous
//!   little-endian float32 datasets (checked on every fixture with h5py). That subset, with
//!   the later forms listed below, fits in this one file (about 900 lines of code; its tests
//!   are in `tests/`), has no system dependency, and can be fuzzed completely.
//!
//! Supported: superblock v0-v3, object headers v1 and v2 (with continuation blocks),
//! symbol-table groups and compact link-message groups, contiguous and compact layouts
//! (layout message v1-v4), IEEE float32 in either byte order. Anything else (chunked or
//! filtered datasets, dense link storage in a fractal heap, soft/external links, shared
//! messages, other datatypes) is a clear [`Error::Format`]. Checksums of v2 structures are not
//! verified (v0 files, which Keras writes, have none).
//!
//! # Hostile input
//!
//! Every offset and length read from the file is bounds-checked against the buffer before
//! use; recursion depth, the number of objects/nodes/messages visited and the bytes of dataset
//! data copied out (at most the file's own size in total) are all limited, and each object
//! header may be visited only once (no cycles).

use std::collections::HashSet;

use crate::error::{Error, Result};

use super::{KerasWeights, Tensor};

/// HDF5 file signature.
const SIGNATURE: [u8; 8] = [0x89, b'H', b'D', b'F', b'\r', b'\n', 0x1a, b'\n'];
/// Deepest group nesting (and B-tree height) accepted.
const MAX_DEPTH: usize = 32;
/// Most object headers, B-tree nodes, symbol nodes and continuation blocks visited per file.
const MAX_NODES: usize = 100_000;
/// Most header messages parsed per file.
const MAX_MESSAGES: usize = 1_000_000;
/// Highest dataspace rank accepted (the HDF5 format maximum).
const MAX_RANK: usize = 32;

// Header message types used here.
const MSG_DATASPACE: u16 = 0x0001;
const MSG_LINK_INFO: u16 = 0x0002;
const MSG_DATATYPE: u16 = 0x0003;
const MSG_LINK: u16 = 0x0006;
const MSG_LAYOUT: u16 = 0x0008;
const MSG_FILTERS: u16 = 0x000B;
const MSG_CONTINUATION: u16 = 0x0010;
const MSG_SYMBOL_TABLE: u16 = 0x0011;

/// Reads the Keras variables of an HDF5 weights file held in memory.
///
/// Each child `L` of the root group `layers` becomes one entry `(L, vars)`, where `vars` are
/// the datasets of every group named `vars` inside `layers/L` (the layer's own `vars` first,
/// then those of nested objects such as `cell/vars`, by path), each ordered by its numeric
/// name `0, 1, 2, ...`. Layers appear in the order the file stores them (by name for the
/// symbol-table groups that h5py writes).
pub fn read_weights(bytes: &[u8], file: &str) -> Result<KerasWeights> {
    let mut r = Reader::new(bytes, file)?;
    let root = r.root;
    let root_children = r
        .group_children(root, "/")?
        .ok_or_else(|| r.err("the root object is not a group"))?;
    let layers_addr = root_children
        .iter()
        .find(|(n, _)| n == "layers")
        .map(|(_, a)| *a)
        .ok_or_else(|| {
            let names: Vec<&str> = root_children.iter().map(|(n, _)| n.as_str()).collect();
            r.err(format!(
                "no 'layers' group at the root (found: {:?}); this is not a Keras 3 weights file \
                 (legacy Keras 2 .h5 files with 'model_weights' are not supported)",
                names
            ))
        })?;
    let layer_list = r
        .group_children(layers_addr, "/layers")?
        .ok_or_else(|| r.err("'/layers' is not a group"))?;
    let mut layers = Vec::with_capacity(layer_list.len());
    for (name, addr) in layer_list {
        let path = format!("/layers/{name}");
        let mut found: Vec<VarEntry> = Vec::new();
        r.collect_vars(addr, &path, &mut found)?;
        layers.push((name, order_vars(found, &path, file)?));
    }
    Ok(KerasWeights { layers })
}

/// One dataset found inside a `vars` group: the group's path relative to the layer, its index.
struct VarEntry {
    group: String,
    index: usize,
    tensor: Tensor,
}

/// Orders a layer's variables: the layer's own `vars` group first, then the others by path;
/// inside each group by index, which must run 0, 1, ..., n-1.
fn order_vars(mut found: Vec<VarEntry>, layer_path: &str, file: &str) -> Result<Vec<Tensor>> {
    found.sort_by(|a, b| {
        let ka = (a.group != "vars", a.group.as_str(), a.index);
        let kb = (b.group != "vars", b.group.as_str(), b.index);
        ka.cmp(&kb)
    });
    let mut expected = 0usize;
    let mut prev_group: Option<&str> = None;
    for v in &found {
        if prev_group != Some(v.group.as_str()) {
            expected = 0;
            prev_group = Some(v.group.as_str());
        }
        if v.index != expected {
            return Err(Error::format(
                file,
                format!(
                    "{layer_path}/{}: variables are not numbered 0..n (expected '{expected}', found '{}')",
                    v.group, v.index
                ),
            ));
        }
        expected += 1;
    }
    Ok(found.into_iter().map(|v| v.tensor).collect())
}

/// A header message: its type, flags and body (borrowed from the file).
struct Message<'a> {
    kind: u16,
    flags: u8,
    data: &'a [u8],
}

/// What an object header describes.
enum Object<'a> {
    Group(Vec<Message<'a>>),
    Dataset(Vec<Message<'a>>),
    Other,
}

struct Reader<'a> {
    buf: &'a [u8],
    file: &'a str,
    offset_size: usize,
    length_size: usize,
    /// Absolute position that file addresses are relative to.
    base: u64,
    root: u64,
    nodes: usize,
    messages: usize,
    /// Bytes of dataset data still allowed to be copied out (starts at the file size).
    data_budget: usize,
    visited: HashSet<u64>,
}

/// A bounds-checked little-endian cursor over part of the file.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    file: &'a str,
    what: &'static str,
    offset_size: usize,
    length_size: usize,
}

impl<'a> Cursor<'a> {
    fn err(&self, msg: impl Into<String>) -> Error {
        Error::format(self.file, format!("{}: {}", self.what, msg.into()))
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| {
                self.err(format!(
                    "truncated: needs {n} bytes at position {} of a {}-byte structure",
                    self.pos,
                    self.buf.len()
                ))
            })?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| self.err("truncated"))?;
        self.pos = end;
        Ok(s)
    }

    fn skip(&mut self, n: usize) -> Result<()> {
        self.bytes(n).map(|_| ())
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.bytes(1)?.first().copied().unwrap_or(0))
    }

    fn u16(&mut self) -> Result<u16> {
        Ok(self.uint(2)? as u16)
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(self.uint(4)? as u32)
    }

    /// An unsigned little-endian integer of `n` (1..=8) bytes.
    fn uint(&mut self, n: usize) -> Result<u64> {
        let b = self.bytes(n)?;
        Ok(b.iter()
            .rev()
            .fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    }

    /// A file address; `None` for the "undefined address" (all bits set).
    fn addr(&mut self) -> Result<Option<u64>> {
        let n = self.offset_size;
        let v = self.uint(n)?;
        let undefined = if n >= 8 {
            u64::MAX
        } else {
            (1u64 << (8 * n)) - 1
        };
        Ok(if v == undefined { None } else { Some(v) })
    }

    fn length(&mut self) -> Result<u64> {
        self.uint(self.length_size)
    }

    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], file: &'a str) -> Result<Self> {
        let mut r = Reader {
            buf,
            file,
            offset_size: 8,
            length_size: 8,
            base: 0,
            root: 0,
            nodes: 0,
            messages: 0,
            data_budget: buf.len(),
            visited: HashSet::new(),
        };
        r.read_superblock()?;
        Ok(r)
    }

    fn err(&self, msg: impl Into<String>) -> Error {
        Error::format(self.file, msg.into())
    }

    /// A cursor over `len` bytes at absolute position `pos`.
    fn cursor_abs(&self, pos: u64, len: u64, what: &'static str) -> Result<Cursor<'a>> {
        let end = pos.checked_add(len);
        let slice = match end {
            Some(end) if end <= self.buf.len() as u64 => self.buf.get(pos as usize..end as usize),
            _ => None,
        }
        .ok_or_else(|| {
            self.err(format!(
                "{what} at byte {pos} ({len} bytes) lies outside the {}-byte file (truncated or corrupt)",
                self.buf.len()
            ))
        })?;
        Ok(Cursor {
            buf: slice,
            pos: 0,
            file: self.file,
            what,
            offset_size: self.offset_size,
            length_size: self.length_size,
        })
    }

    /// A cursor from file address `addr` (relative to the base) to the end of the file.
    fn cursor_at(&self, addr: u64, what: &'static str) -> Result<Cursor<'a>> {
        let pos = self
            .base
            .checked_add(addr)
            .ok_or_else(|| self.err(format!("{what}: address {addr} overflows")))?;
        let len = (self.buf.len() as u64).saturating_sub(pos);
        if pos >= self.buf.len() as u64 {
            return Err(self.err(format!(
                "{what} at address {addr} lies outside the {}-byte file (truncated or corrupt)",
                self.buf.len()
            )));
        }
        self.cursor_abs(pos, len, what)
    }

    /// A cursor over exactly `len` bytes at file address `addr`.
    fn cursor_len(&self, addr: u64, len: u64, what: &'static str) -> Result<Cursor<'a>> {
        let pos = self
            .base
            .checked_add(addr)
            .ok_or_else(|| self.err(format!("{what}: address {addr} overflows")))?;
        self.cursor_abs(pos, len, what)
    }

    fn count_node(&mut self, what: &str) -> Result<()> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(self.err(format!(
                "more than {MAX_NODES} objects/nodes while reading {what}: file is corrupt or hostile"
            )));
        }
        Ok(())
    }

    fn read_superblock(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Err(self.err("empty file, not HDF5"));
        }
        // The superblock sits at 0, 512, 1024, 2048, ...
        let mut at: u64 = 0;
        loop {
            let sig = self.buf.get(at as usize..at as usize + 8);
            if sig == Some(&SIGNATURE[..]) {
                break;
            }
            at = if at == 0 { 512 } else { at * 2 };
            if at + 8 > self.buf.len() as u64 {
                return Err(self.err("no HDF5 signature found: not an HDF5 file"));
            }
        }
        let mut c = self.cursor_abs(at, self.buf.len() as u64 - at, "superblock")?;
        c.skip(8)?;
        let version = c.u8()?;
        let eof;
        match version {
            0 | 1 => {
                c.skip(3)?; // free-space, root symbol table entry, reserved
                c.skip(1)?; // shared header message format version
                let (o, l) = (c.u8()? as usize, c.u8()? as usize);
                self.set_sizes(o, l)?;
                c.offset_size = o;
                c.length_size = l;
                c.skip(1)?; // reserved
                c.skip(4)?; // group leaf / internal node K
                c.skip(4)?; // file consistency flags
                if version == 1 {
                    c.skip(4)?; // indexed storage K + reserved
                }
                let base = c.addr()?.unwrap_or(at);
                c.addr()?; // free-space info
                eof = c.addr()?;
                c.addr()?; // driver information block
                           // Root group symbol table entry.
                c.addr()?; // link name offset
                self.base = base;
                self.root = c
                    .addr()?
                    .ok_or_else(|| self.err("superblock: root group address is undefined"))?;
                c.skip(4 + 4 + 16)?; // cache type, reserved, scratch
            }
            2 | 3 => {
                let (o, l) = (c.u8()? as usize, c.u8()? as usize);
                self.set_sizes(o, l)?;
                c.offset_size = o;
                c.length_size = l;
                c.skip(1)?; // flags
                let base = c.addr()?.unwrap_or(at);
                c.addr()?; // superblock extension
                eof = c.addr()?;
                self.base = base;
                self.root = c
                    .addr()?
                    .ok_or_else(|| self.err("superblock: root group address is undefined"))?;
                c.skip(4)?; // checksum
            }
            v => return Err(self.err(format!("unsupported HDF5 superblock version {v}"))),
        }
        if self.base > self.buf.len() as u64 {
            return Err(self.err("superblock: base address lies outside the file"));
        }
        if let Some(eof) = eof {
            let need = self.base.saturating_add(eof);
            if need > self.buf.len() as u64 {
                return Err(self.err(format!(
                    "file is truncated: the superblock says it ends at byte {need}, but it has {} bytes",
                    self.buf.len()
                )));
            }
        }
        Ok(())
    }

    fn set_sizes(&mut self, o: usize, l: usize) -> Result<()> {
        if !matches!(o, 2 | 4 | 8) || !matches!(l, 2 | 4 | 8) {
            return Err(self.err(format!(
                "superblock: unsupported offset/length sizes {o}/{l}"
            )));
        }
        self.offset_size = o;
        self.length_size = l;
        Ok(())
    }

    /// Parses the object header at `addr` into its messages (following continuations).
    fn object_header(&mut self, addr: u64, path: &str) -> Result<Vec<Message<'a>>> {
        self.count_node(path)?;
        if !self.visited.insert(addr) {
            return Err(self.err(format!(
                "{path}: object header at address {addr} is reached twice (cycle or shared object)"
            )));
        }
        let mut c = self.cursor_at(addr, "object header")?;
        let mut out = Vec::new();
        let mut pending: Vec<(u64, u64)> = Vec::new();
        let first = c.bytes(4)?;
        if first == b"OHDR" {
            let version = c.u8()?;
            if version != 2 {
                return Err(self.err(format!(
                    "{path}: unsupported object header version {version}"
                )));
            }
            let flags = c.u8()?;
            if flags & 0x20 != 0 {
                c.skip(16)?; // times
            }
            if flags & 0x10 != 0 {
                c.skip(4)?; // attribute phase change
            }
            let size = c.uint(1 << (flags & 0x03))?;
            let start = c.pos as u64;
            let abs = self.base.saturating_add(addr).saturating_add(start);
            let block = self.cursor_abs(abs, size, "object header messages")?;
            self.parse_v2_messages(block, flags & 0x04 != 0, &mut out, &mut pending, path)?;
            self.follow_continuations(&mut out, pending, Some(flags & 0x04 != 0), path)?;
        } else {
            c.pos = 0;
            let version = c.u8()?;
            if version != 1 {
                return Err(self.err(format!(
                    "{path}: unsupported object header version {version} at address {addr}"
                )));
            }
            c.skip(1)?; // reserved
            c.u16()?; // number of messages (the block's size bounds the parse)
            c.u32()?; // reference count
            let size = c.u32()? as u64;
            c.skip(4)?; // alignment padding
            let abs = self.base.saturating_add(addr).saturating_add(16);
            let block = self.cursor_abs(abs, size, "object header messages")?;
            self.parse_v1_messages(block, &mut out, &mut pending, path)?;
            self.follow_continuations(&mut out, pending, None, path)?;
        }
        Ok(out)
    }

    fn follow_continuations(
        &mut self,
        out: &mut Vec<Message<'a>>,
        mut pending: Vec<(u64, u64)>,
        v2_creation_order: Option<bool>,
        path: &str,
    ) -> Result<()> {
        let mut seen = HashSet::new();
        while let Some((addr, len)) = pending.pop() {
            self.count_node(path)?;
            if !seen.insert(addr) {
                return Err(self.err(format!(
                    "{path}: header continuation block at {addr} is used twice"
                )));
            }
            let mut block = self.cursor_len(addr, len, "header continuation block")?;
            match v2_creation_order {
                Some(order) => {
                    if block.bytes(4)? != b"OCHK" {
                        return Err(
                            self.err(format!("{path}: continuation block without OCHK signature"))
                        );
                    }
                    let inner_len = len.saturating_sub(8); // signature + checksum
                    let abs = self.base.saturating_add(addr).saturating_add(4);
                    let inner = self.cursor_abs(abs, inner_len, "header continuation block")?;
                    self.parse_v2_messages(inner, order, out, &mut pending, path)?;
                }
                None => self.parse_v1_messages(block, out, &mut pending, path)?,
            }
        }
        Ok(())
    }

    fn push_message(
        &mut self,
        msg: Message<'a>,
        out: &mut Vec<Message<'a>>,
        pending: &mut Vec<(u64, u64)>,
        path: &str,
    ) -> Result<()> {
        self.messages += 1;
        if self.messages > MAX_MESSAGES {
            return Err(self.err(format!("{path}: more than {MAX_MESSAGES} header messages")));
        }
        if msg.kind == MSG_CONTINUATION {
            let mut c = self.msg_cursor(msg.data, "continuation message");
            let addr = c
                .addr()?
                .ok_or_else(|| self.err(format!("{path}: continuation to undefined address")))?;
            let len = c.length()?;
            pending.push((addr, len));
        } else {
            out.push(msg);
        }
        Ok(())
    }

    fn msg_cursor(&self, data: &'a [u8], what: &'static str) -> Cursor<'a> {
        Cursor {
            buf: data,
            pos: 0,
            file: self.file,
            what,
            offset_size: self.offset_size,
            length_size: self.length_size,
        }
    }

    fn parse_v1_messages(
        &mut self,
        mut c: Cursor<'a>,
        out: &mut Vec<Message<'a>>,
        pending: &mut Vec<(u64, u64)>,
        path: &str,
    ) -> Result<()> {
        while c.remaining() >= 8 {
            let kind = c.u16()?;
            let size = c.u16()? as usize;
            let flags = c.u8()?;
            c.skip(3)?;
            let data = c.bytes(size)?;
            self.push_message(Message { kind, flags, data }, out, pending, path)?;
        }
        Ok(())
    }

    fn parse_v2_messages(
        &mut self,
        mut c: Cursor<'a>,
        creation_order: bool,
        out: &mut Vec<Message<'a>>,
        pending: &mut Vec<(u64, u64)>,
        path: &str,
    ) -> Result<()> {
        let head = if creation_order { 6 } else { 4 };
        while c.remaining() >= head {
            let kind = u16::from(c.u8()?);
            let size = c.u16()? as usize;
            let flags = c.u8()?;
            if creation_order {
                c.skip(2)?;
            }
            let data = c.bytes(size)?;
            self.push_message(Message { kind, flags, data }, out, pending, path)?;
        }
        Ok(())
    }

    fn classify(&mut self, addr: u64, path: &str) -> Result<Object<'a>> {
        let msgs = self.object_header(addr, path)?;
        if msgs
            .iter()
            .any(|m| matches!(m.kind, MSG_SYMBOL_TABLE | MSG_LINK | MSG_LINK_INFO))
        {
            Ok(Object::Group(msgs))
        } else if msgs.iter().any(|m| m.kind == MSG_LAYOUT) {
            Ok(Object::Dataset(msgs))
        } else {
            Ok(Object::Other)
        }
    }

    /// The children (name, object header address) of the group at `addr`, or `None` when the
    /// object is not a group.
    fn group_children(&mut self, addr: u64, path: &str) -> Result<Option<Vec<(String, u64)>>> {
        match self.classify(addr, path)? {
            Object::Group(msgs) => self.links(&msgs, path).map(Some),
            _ => Ok(None),
        }
    }

    fn links(&mut self, msgs: &[Message<'a>], path: &str) -> Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        for m in msgs {
            match m.kind {
                MSG_SYMBOL_TABLE => {
                    let mut c = self.msg_cursor(m.data, "symbol table message");
                    let btree = c.addr()?;
                    let heap = c
                        .addr()?
                        .ok_or_else(|| self.err(format!("{path}: group has no local heap")))?;
                    let heap_data = self.local_heap(heap, path)?;
                    if let Some(btree) = btree {
                        self.btree_group(btree, heap_data, None, 0, path, &mut out)?;
                    }
                }
                MSG_LINK => out.push(self.link_message(m.data, path)?),
                MSG_LINK_INFO => {
                    let mut c = self.msg_cursor(m.data, "link info message");
                    c.skip(1)?; // version
                    let flags = c.u8()?;
                    if flags & 0x01 != 0 {
                        c.skip(8)?;
                    }
                    if c.addr()?.is_some() {
                        return Err(self.err(format!(
                            "{path}: group uses dense link storage (fractal heap), which is not supported"
                        )));
                    }
                }
                _ => {}
            }
        }
        for (name, _) in &out {
            if name.is_empty() || name.contains('/') || name.len() > 4096 {
                return Err(self.err(format!("{path}: invalid link name {name:?}")));
            }
        }
        Ok(out)
    }

    fn link_message(&self, data: &'a [u8], path: &str) -> Result<(String, u64)> {
        let mut c = self.msg_cursor(data, "link message");
        let version = c.u8()?;
        if version != 1 {
            return Err(self.err(format!(
                "{path}: unsupported link message version {version}"
            )));
        }
        let flags = c.u8()?;
        let link_type = if flags & 0x08 != 0 { c.u8()? } else { 0 };
        if flags & 0x04 != 0 {
            c.skip(8)?;
        }
        if flags & 0x10 != 0 {
            c.skip(1)?;
        }
        let name_len = c.uint(1 << (flags & 0x03))?;
        let name_len =
            usize::try_from(name_len).map_err(|_| self.err("link name length overflows"))?;
        let name = String::from_utf8_lossy(c.bytes(name_len)?).into_owned();
        if link_type != 0 {
            return Err(self.err(format!(
                "{path}/{name}: soft or external links (type {link_type}) are not supported"
            )));
        }
        let addr = c
            .addr()?
            .ok_or_else(|| self.err(format!("{path}/{name}: link to undefined address")))?;
        Ok((name, addr))
    }

    /// The data segment of the local heap at `addr`.
    fn local_heap(&mut self, addr: u64, path: &str) -> Result<&'a [u8]> {
        self.count_node(path)?;
        let mut c = self.cursor_at(addr, "local heap")?;
        if c.bytes(4)? != b"HEAP" {
            return Err(self.err(format!(
                "{path}: local heap at {addr} has no HEAP signature"
            )));
        }
        c.skip(4)?; // version + reserved
        let size = c.length()?;
        c.length()?; // free list head
        let data = c
            .addr()?
            .ok_or_else(|| self.err(format!("{path}: local heap data address undefined")))?;
        Ok(self.cursor_len(data, size, "local heap data")?.buf)
    }

    /// Walks a version-1 group B-tree, appending each symbol's (name, address).
    fn btree_group(
        &mut self,
        addr: u64,
        heap: &'a [u8],
        parent_level: Option<u8>,
        depth: usize,
        path: &str,
        out: &mut Vec<(String, u64)>,
    ) -> Result<()> {
        self.count_node(path)?;
        if depth > MAX_DEPTH {
            return Err(self.err(format!("{path}: group B-tree deeper than {MAX_DEPTH}")));
        }
        let mut c = self.cursor_at(addr, "group B-tree node")?;
        if c.bytes(4)? != b"TREE" {
            return Err(self.err(format!(
                "{path}: group B-tree node at {addr} has no TREE signature"
            )));
        }
        let node_type = c.u8()?;
        if node_type != 0 {
            return Err(self.err(format!(
                "{path}: B-tree node type {node_type} where a group node was expected"
            )));
        }
        let level = c.u8()?;
        if let Some(p) = parent_level {
            if level >= p {
                return Err(self.err(format!("{path}: B-tree levels do not decrease (corrupt)")));
            }
        }
        let entries = c.u16()? as usize;
        c.addr()?; // left sibling
        c.addr()?; // right sibling
        let mut children = Vec::with_capacity(entries.min(1024));
        for _ in 0..entries {
            c.length()?; // key
            let child = c
                .addr()?
                .ok_or_else(|| self.err(format!("{path}: B-tree child address undefined")))?;
            children.push(child);
        }
        for child in children {
            if level > 0 {
                self.btree_group(child, heap, Some(level), depth + 1, path, out)?;
            } else {
                self.symbol_node(child, heap, path, out)?;
            }
        }
        Ok(())
    }

    fn symbol_node(
        &mut self,
        addr: u64,
        heap: &'a [u8],
        path: &str,
        out: &mut Vec<(String, u64)>,
    ) -> Result<()> {
        self.count_node(path)?;
        let mut c = self.cursor_at(addr, "symbol table node")?;
        if c.bytes(4)? != b"SNOD" {
            return Err(self.err(format!(
                "{path}: symbol table node at {addr} has no SNOD signature"
            )));
        }
        c.skip(2)?; // version + reserved
        let count = c.u16()? as usize;
        for _ in 0..count {
            let name_off = c.length_or_offset()?;
            let obj = c
                .addr()?
                .ok_or_else(|| self.err(format!("{path}: symbol with undefined address")))?;
            c.skip(4 + 4 + 16)?; // cache type, reserved, scratch pad
            let name = heap_string(heap, name_off).ok_or_else(|| {
                self.err(format!(
                    "{path}: symbol name offset {name_off} outside the group's local heap"
                ))
            })?;
            out.push((name, obj));
        }
        Ok(())
    }

    /// Collects the datasets inside `vars` groups below the object at `addr`.
    fn collect_vars(&mut self, addr: u64, path: &str, out: &mut Vec<VarEntry>) -> Result<()> {
        match self.classify(addr, path)? {
            Object::Group(msgs) => self.collect_group(&msgs, path, "", 1, out),
            _ => Ok(()),
        }
    }

    fn collect_group(
        &mut self,
        msgs: &[Message<'a>],
        path: &str,
        rel: &str,
        depth: usize,
        out: &mut Vec<VarEntry>,
    ) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(self.err(format!("{path}: groups nested deeper than {MAX_DEPTH}")));
        }
        let children = self.links(msgs, path)?;
        let is_vars = rel == "vars" || rel.ends_with("/vars");
        for (name, child) in children {
            let child_path = format!("{path}/{name}");
            match self.classify(child, &child_path)? {
                Object::Dataset(msgs) => {
                    if !is_vars {
                        continue;
                    }
                    let index: usize = name.parse().map_err(|_| {
                        self.err(format!("{child_path}: variable name is not a number"))
                    })?;
                    let tensor = self.read_dataset(&msgs, &child_path)?;
                    out.push(VarEntry {
                        group: rel.to_string(),
                        index,
                        tensor,
                    });
                }
                Object::Group(msgs) => {
                    let child_rel = if rel.is_empty() {
                        name.clone()
                    } else {
                        format!("{rel}/{name}")
                    };
                    self.collect_group(&msgs, &child_path, &child_rel, depth + 1, out)?;
                }
                Object::Other => {}
            }
        }
        Ok(())
    }

    fn read_dataset(&mut self, msgs: &[Message<'a>], path: &str) -> Result<Tensor> {
        let find = |kind: u16| msgs.iter().find(|m| m.kind == kind);
        for m in msgs {
            if m.flags & 0x02 != 0 && matches!(m.kind, MSG_DATASPACE | MSG_DATATYPE | MSG_LAYOUT) {
                return Err(self.err(format!("{path}: shared header messages are not supported")));
            }
        }
        let space = find(MSG_DATASPACE)
            .ok_or_else(|| self.err(format!("{path}: dataset without dataspace")))?;
        let dtype = find(MSG_DATATYPE)
            .ok_or_else(|| self.err(format!("{path}: dataset without datatype")))?;
        let layout =
            find(MSG_LAYOUT).ok_or_else(|| self.err(format!("{path}: dataset without layout")))?;
        if let Some(f) = find(MSG_FILTERS) {
            let nfilters = f.data.get(1).copied().unwrap_or(0);
            if nfilters > 0 {
                return Err(self.err(format!(
                    "{path}: filtered (compressed) datasets are not supported ({nfilters} filters)"
                )));
            }
        }
        let shape = self.dataspace(space.data, path)?;
        let big_endian = self.datatype(dtype.data, path)?;
        let count = shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| self.err(format!("{path}: dataset element count overflows")))?;
        let nbytes = count
            .checked_mul(4)
            .ok_or_else(|| self.err(format!("{path}: dataset size overflows")))?;
        if nbytes > self.data_budget {
            return Err(self.err(format!(
                "{path}: dataset needs {nbytes} bytes, more than the file can hold (corrupt or hostile)"
            )));
        }
        let raw = self.layout(layout.data, nbytes, path)?;
        self.data_budget -= nbytes;
        let data = raw
            .chunks_exact(4)
            .map(|b| {
                let a: [u8; 4] = b.try_into().unwrap_or([0; 4]); // always 4 bytes (chunks_exact)
                if big_endian {
                    f32::from_be_bytes(a)
                } else {
                    f32::from_le_bytes(a)
                }
            })
            .collect();
        Ok(Tensor { shape, data })
    }

    fn dataspace(&self, data: &'a [u8], path: &str) -> Result<Vec<usize>> {
        let mut c = self.msg_cursor(data, "dataspace message");
        let version = c.u8()?;
        let rank = c.u8()? as usize;
        let _flags = c.u8()?;
        match version {
            1 => c.skip(5)?,
            2 => {
                let kind = c.u8()?;
                if kind == 2 {
                    return Err(self.err(format!("{path}: null dataspace (no data)")));
                }
            }
            v => return Err(self.err(format!("{path}: unsupported dataspace version {v}"))),
        }
        if rank > MAX_RANK {
            return Err(self.err(format!("{path}: dataspace rank {rank} exceeds {MAX_RANK}")));
        }
        let mut shape = Vec::with_capacity(rank);
        for _ in 0..rank {
            let d = c.length()?;
            shape.push(
                usize::try_from(d)
                    .map_err(|_| self.err(format!("{path}: dimension {d} too large")))?,
            );
        }
        Ok(shape)
    }

    /// Checks that the datatype is IEEE float32; returns whether it is big-endian.
    fn datatype(&self, data: &'a [u8], path: &str) -> Result<bool> {
        let mut c = self.msg_cursor(data, "datatype message");
        let class_version = c.u8()?;
        let bits0 = c.u8()?;
        c.skip(2)?;
        let size = c.u32()?;
        let class = class_version & 0x0F;
        if class != 1 || size != 4 {
            return Err(self.err(format!(
                "{path}: datatype class {class} of {size} bytes; only IEEE float32 is supported"
            )));
        }
        let offset = c.u16()?;
        let precision = c.u16()?;
        if offset != 0 || precision != 32 || bits0 & 0x40 != 0 {
            return Err(self.err(format!(
                "{path}: unusual float layout (offset {offset}, precision {precision}); only IEEE float32 is supported"
            )));
        }
        Ok(bits0 & 0x01 != 0)
    }

    /// The raw bytes (exactly `nbytes`) of a contiguous or compact dataset.
    fn layout(&self, data: &'a [u8], nbytes: usize, path: &str) -> Result<&'a [u8]> {
        let mut c = self.msg_cursor(data, "layout message");
        let version = c.u8()?;
        enum Where<'b> {
            Compact(&'b [u8]),
            Contiguous(Option<u64>, Option<u64>),
        }
        let place = match version {
            1 | 2 => {
                let rank = c.u8()? as usize;
                let class = c.u8()?;
                c.skip(5)?;
                let addr = if class != 0 { c.addr()? } else { None };
                c.skip(
                    rank.checked_mul(4)
                        .ok_or_else(|| self.err("layout rank overflows"))?,
                )?;
                match class {
                    0 => {
                        let size = c.u32()? as usize;
                        Where::Compact(c.bytes(size)?)
                    }
                    1 => Where::Contiguous(addr, None),
                    k => return Err(self.unsupported_layout(path, k)),
                }
            }
            3 | 4 => {
                let class = c.u8()?;
                match class {
                    0 => {
                        let size = c.u16()? as usize;
                        Where::Compact(c.bytes(size)?)
                    }
                    1 => {
                        let addr = c.addr()?;
                        let size = c.length()?;
                        Where::Contiguous(addr, Some(size))
                    }
                    k => return Err(self.unsupported_layout(path, k)),
                }
            }
            v => return Err(self.err(format!("{path}: unsupported data layout version {v}"))),
        };
        let raw = match place {
            Where::Compact(b) => b,
            Where::Contiguous(addr, size) => {
                if let Some(size) = size {
                    if size < nbytes as u64 {
                        return Err(self.err(format!(
                            "{path}: storage holds {size} bytes but the shape needs {nbytes}"
                        )));
                    }
                }
                match addr {
                    Some(a) => self.cursor_len(a, nbytes as u64, "dataset data")?.buf,
                    None if nbytes == 0 => &[],
                    None => return Err(self.err(format!("{path}: dataset has no data written"))),
                }
            }
        };
        raw.get(..nbytes).ok_or_else(|| {
            self.err(format!(
                "{path}: storage holds {} bytes but the shape needs {nbytes}",
                raw.len()
            ))
        })
    }

    fn unsupported_layout(&self, path: &str, class: u8) -> Error {
        let what = match class {
            2 => "chunked",
            3 => "virtual",
            _ => "unknown",
        };
        self.err(format!(
            "{path}: {what} dataset layout (class {class}) is not supported; only contiguous and compact"
        ))
    }
}

impl Cursor<'_> {
    /// Symbol-table entries store the name offset with the offset size.
    fn length_or_offset(&mut self) -> Result<u64> {
        self.uint(self.offset_size)
    }
}

/// The NUL-terminated string at `off` in a local heap's data segment.
fn heap_string(heap: &[u8], off: u64) -> Option<String> {
    let start = usize::try_from(off).ok()?;
    let rest = heap.get(start..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    let bytes = rest.get(..end)?;
    Some(String::from_utf8_lossy(bytes).into_owned())
}
