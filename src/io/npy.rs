//! NumPy `.npy` arrays (format versions 1.0, 2.0 and 3.0), as written by `np.save`.
//!
//! The parser is self-contained: the header is a small Python dict literal
//! (`{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }`) that is parsed here with a
//! bounded recursion depth, and the size it declares is checked against the bytes actually present
//! before any buffer is allocated. Supported element types: bool, `i1`/`u1`, `i2`/`u2`,
//! `i4`/`u4`, `i8`/`u8`, `f2`, `f4`, `f8`, little- or big-endian; C or Fortran order (Fortran
//! arrays are reordered to C order).

use std::path::Path;

use super::{display_name, one_line, read_file, write_atomic};
use crate::error::{Error, Result};

/// A decoded `.npy` array in C (row-major) order.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// The elements converted to f64 (exact for every type except 64-bit integers beyond 2⁵³).
    pub data: Vec<f64>,
    /// The shape as stored in the file.
    pub shape: Vec<usize>,
    /// True when the stored dtype is an integer or bool type.
    pub is_integer: bool,
}

/// Element types accepted in `.npy` files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ElemKind {
    Bool,
    Signed,
    Unsigned,
    Float,
}

/// The validated header of a `.npy` file.
#[derive(Debug, Clone)]
struct NpyHeader {
    kind: ElemKind,
    /// Bytes per element.
    size: usize,
    little_endian: bool,
    fortran: bool,
    shape: Vec<usize>,
    /// Offset of the first data byte.
    data_offset: usize,
    /// Number of elements (product of the shape).
    count: usize,
    /// The dtype string as written, for messages.
    descr: String,
}

const MAGIC: &[u8] = b"\x93NUMPY";
const SUPPORTED: &str =
    "bool, int8, uint8, int16, uint16, int32, uint32, int64, uint64, float16, float32, float64";

fn shape_str(shape: &[usize]) -> String {
    match shape {
        [one] => format!("({one},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Parse and validate the header of a `.npy` file held in `bytes`.
fn parse_header(bytes: &[u8], name: &str) -> Result<NpyHeader> {
    let bad = |field: &str, msg: String| Error::bad_input(name, field, msg);
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(bad(
            "magic",
            "not a .npy file: expected the magic bytes \\x93NUMPY at the start (save with numpy.save)"
                .into(),
        ));
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (prefix, header_len) = match major {
        1 => (10usize, u16::from_le_bytes([bytes[8], bytes[9]]) as usize),
        2 | 3 => {
            let Some(len) = bytes.get(8..12) else {
                return Err(bad(
                    "header",
                    "file ends inside the header length field".into(),
                ));
            };
            (
                12usize,
                u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize,
            )
        }
        _ => {
            return Err(bad(
                "version",
                format!(
                    "unsupported .npy format version {major}.{minor}; expected 1.0, 2.0 or 3.0"
                ),
            ));
        }
    };
    let Some(data_offset) = prefix.checked_add(header_len) else {
        return Err(bad("header", "header length overflows".into()));
    };
    let Some(text) = bytes.get(prefix..data_offset) else {
        return Err(bad(
            "header",
            format!(
                "header length {header_len} extends beyond the end of the file ({} bytes): file truncated or corrupt",
                bytes.len()
            ),
        ));
    };
    let text = std::str::from_utf8(text)
        .map_err(|_| bad("header", "header is not valid UTF-8 text".into()))?;
    let dict = match py::parse(text) {
        Ok(py::Value::Dict(d)) => d,
        Ok(_) => {
            return Err(bad(
                "header",
                "expected a Python dict literal with keys 'descr', 'fortran_order', 'shape'".into(),
            ));
        }
        Err(msg) => return Err(bad("header", format!("malformed header dict: {msg}"))),
    };
    let get = |key: &str| {
        dict.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
            .ok_or_else(|| bad(key, format!("header dict has no '{key}' entry")))
    };
    let descr = match get("descr")? {
        py::Value::Str(s) => s.clone(),
        py::Value::List(_) => {
            return Err(bad(
                "descr",
                format!(
                    "structured (record) arrays are not supported; expected a plain numeric dtype ({SUPPORTED})"
                ),
            ));
        }
        _ => return Err(bad("descr", "expected a dtype string such as '<f8'".into())),
    };
    let fortran = match get("fortran_order")? {
        py::Value::Bool(b) => *b,
        _ => return Err(bad("fortran_order", "expected True or False".into())),
    };
    let shape = match get("shape")? {
        py::Value::Tuple(items) | py::Value::List(items) => {
            let mut shape = Vec::with_capacity(items.len());
            for (i, it) in items.iter().enumerate() {
                match it {
                    py::Value::Int(v) if *v >= 0 => match usize::try_from(*v) {
                        Ok(v) => shape.push(v),
                        Err(_) => {
                            return Err(bad("shape", format!("dimension {i} ({v}) is too large")));
                        }
                    },
                    _ => {
                        return Err(bad(
                            "shape",
                            format!("dimension {i} is not a non-negative integer"),
                        ));
                    }
                }
            }
            shape
        }
        _ => return Err(bad("shape", "expected a tuple of integers".into())),
    };
    let (little_endian, kind, size) = parse_descr(&descr).ok_or_else(|| {
        bad(
            "descr",
            format!("unsupported dtype '{descr}'; expected one of {SUPPORTED}"),
        )
    })?;
    let count = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad("shape", format!("shape {} is too large", shape_str(&shape))))?;
    let needed = count.checked_mul(size).ok_or_else(|| {
        bad(
            "shape",
            format!("shape {} of '{descr}' is too large", shape_str(&shape)),
        )
    })?;
    let present = bytes.len() - data_offset;
    if needed > present {
        return Err(bad(
            "shape",
            format!(
                "file truncated: shape {} of '{descr}' needs {needed} data bytes but only {present} follow the header",
                shape_str(&shape)
            ),
        ));
    }
    if needed < present {
        return Err(bad(
            "shape",
            format!(
                "{present} data bytes follow the header but shape {} of '{descr}' accounts for only {needed}: file corrupt",
                shape_str(&shape)
            ),
        ));
    }
    Ok(NpyHeader {
        kind,
        size,
        little_endian,
        fortran,
        shape,
        data_offset,
        count,
        descr,
    })
}

/// `'<f8'` → (little endian, kind, bytes). `None` for unsupported types.
fn parse_descr(descr: &str) -> Option<(bool, ElemKind, usize)> {
    let native_little = cfg!(target_endian = "little");
    let (endian, rest) = match descr.as_bytes().first()? {
        b'<' => (Some(true), &descr[1..]),
        b'>' => (Some(false), &descr[1..]),
        b'=' => (Some(native_little), &descr[1..]),
        b'|' => (None, &descr[1..]),
        _ => (None, descr),
    };
    let (kind, size) = match rest {
        "?" | "b1" => (ElemKind::Bool, 1),
        "i1" | "b" => (ElemKind::Signed, 1),
        "u1" | "B" => (ElemKind::Unsigned, 1),
        "i2" => (ElemKind::Signed, 2),
        "u2" => (ElemKind::Unsigned, 2),
        "i4" => (ElemKind::Signed, 4),
        "u4" => (ElemKind::Unsigned, 4),
        "i8" => (ElemKind::Signed, 8),
        "u8" => (ElemKind::Unsigned, 8),
        "f2" | "e" => (ElemKind::Float, 2),
        "f4" | "f" => (ElemKind::Float, 4),
        "f8" | "d" => (ElemKind::Float, 8),
        _ => return None,
    };
    let little = match endian {
        Some(l) => l,
        // '|' (byte order not applicable) is only meaningful for one-byte types.
        None if size == 1 => true,
        None => return None,
    };
    Some((little, kind, size))
}

/// One element's bytes, in little-endian order, as a u64 bit pattern.
fn raw_bits(chunk: &[u8], little: bool) -> u64 {
    let mut buf = [0u8; 8];
    let n = chunk.len().min(8);
    if little {
        buf[..n].copy_from_slice(&chunk[..n]);
    } else {
        for (dst, src) in buf[..n].iter_mut().zip(chunk[..n].iter().rev()) {
            *dst = *src;
        }
    }
    u64::from_le_bytes(buf)
}

/// A decoded element: integers kept exact, floats as f64.
#[derive(Debug, Clone, Copy)]
enum Elem {
    Int(i128),
    Float(f64),
}

fn decode_elem(chunk: &[u8], h: &NpyHeader) -> Elem {
    let bits = raw_bits(chunk, h.little_endian);
    match (h.kind, h.size) {
        (ElemKind::Bool, _) => Elem::Int(i128::from(bits != 0)),
        (ElemKind::Unsigned, _) => Elem::Int(i128::from(bits)),
        (ElemKind::Signed, s) => {
            // Sign-extend the low `8·s` bits.
            let shift = 64 - 8 * s as u32;
            Elem::Int(i128::from(((bits << shift) as i64) >> shift))
        }
        (ElemKind::Float, 2) => Elem::Float(half::f16::from_bits(bits as u16).to_f64()),
        (ElemKind::Float, 4) => Elem::Float(f64::from(f32::from_bits(bits as u32))),
        (ElemKind::Float, _) => Elem::Float(f64::from_bits(bits)),
    }
}

/// Decode every element in C order (Fortran arrays are reordered).
fn decode_all<T>(
    bytes: &[u8],
    h: &NpyHeader,
    mut f: impl FnMut(usize, Elem) -> Result<T>,
) -> Result<Vec<T>> {
    let data = &bytes[h.data_offset..h.data_offset + h.count * h.size];
    let mut out = Vec::with_capacity(h.count);
    if h.count == 0 {
        return Ok(out);
    }
    if !h.fortran || h.shape.len() < 2 {
        for (i, chunk) in data.chunks_exact(h.size).enumerate() {
            out.push(f(i, decode_elem(chunk, h))?);
        }
        return Ok(out);
    }
    // Fortran order: element (i_0, …, i_k) lives at Σ i_j · Π_{l<j} shape_l.
    let rank = h.shape.len();
    let mut fstride = vec![1usize; rank];
    for j in 1..rank {
        fstride[j] = fstride[j - 1] * h.shape[j - 1];
    }
    let mut idx = vec![0usize; rank];
    let mut offset = 0usize;
    for i in 0..h.count {
        let start = offset * h.size;
        out.push(f(i, decode_elem(&data[start..start + h.size], h))?);
        // Advance the C-order odometer (last index fastest), keeping `offset` in sync.
        for j in (0..rank).rev() {
            idx[j] += 1;
            offset += fstride[j];
            if idx[j] < h.shape[j] {
                break;
            }
            offset -= fstride[j] * idx[j];
            idx[j] = 0;
        }
    }
    Ok(out)
}

/// Parse a `.npy` file held in memory; `name` is used in error messages.
pub fn parse_npy(bytes: &[u8], name: &str) -> Result<NpyArray> {
    let h = parse_header(bytes, name).map_err(one_line)?;
    let data = decode_all(bytes, &h, |_, e| {
        Ok(match e {
            Elem::Int(v) => v as f64,
            Elem::Float(v) => v,
        })
    })?;
    Ok(NpyArray {
        data,
        shape: h.shape,
        is_integer: h.kind != ElemKind::Float,
    })
}

/// Load any supported `.npy` array, converted to f64 in C order.
pub fn load_npy_any(path: &Path) -> Result<NpyArray> {
    parse_npy(&read_file(path)?, &display_name(path))
}

/// View an array as an `n × d` matrix: `[n, d]`, or `[n, a, b, …]` flattened per sample
/// (`d = a·b·…`). 0-D and 1-D arrays are rejected (a single feature must be saved as `[n, 1]`).
pub(crate) fn array_to_matrix(arr: NpyArray, name: &str) -> Result<(Vec<f64>, usize, usize)> {
    match arr.shape.as_slice() {
        [] | [_] => Err(Error::bad_input(
            name,
            "shape",
            format!(
                "array of shape {} has {} dimension(s); expected a 2-D array [n, d] (or N-D [n, ...] flattened per sample); reshape a single feature to (n, 1)",
                shape_str(&arr.shape),
                arr.shape.len()
            ),
        )),
        [n, rest @ ..] => {
            let d = rest.iter().product();
            Ok((arr.data, *n, d))
        }
    }
}

/// Parse a `.npy` matrix from memory (see [`load_npy_matrix`]).
pub fn parse_npy_matrix(bytes: &[u8], name: &str) -> Result<(Vec<f64>, usize, usize)> {
    array_to_matrix(parse_npy(bytes, name)?, name)
}

/// Load a `.npy` array as a row-major `n × d` f64 matrix `(data, n, d)`. A 2-D array `[n, d]`
/// is taken as is; an N-D array `[n, a, b, …]` is flattened per sample (`d = a·b·…`).
pub fn load_npy_matrix(path: &Path) -> Result<(Vec<f64>, usize, usize)> {
    parse_npy_matrix(&read_file(path)?, &display_name(path))
}

/// Parse integer labels from a `.npy` file in memory (see [`load_npy_labels`]).
pub fn parse_npy_labels(bytes: &[u8], name: &str) -> Result<Vec<i64>> {
    let h = parse_header(bytes, name).map_err(one_line)?;
    if !matches!(h.shape.as_slice(), [_] | [_, 1]) {
        return Err(Error::bad_input(
            name,
            "shape",
            format!(
                "labels have shape {}; expected a 1-D array (n,) or a column (n, 1) of integer class labels",
                shape_str(&h.shape)
            ),
        ));
    }
    let descr = h.descr.clone();
    decode_all(bytes, &h, |i, e| {
        let v = match e {
            Elem::Int(v) => i64::try_from(v).ok(),
            Elem::Float(v) if v.fract() == 0.0 && v.abs() < 9.2e18 => Some(v as i64),
            Elem::Float(_) => None,
        };
        v.ok_or_else(|| {
            let shown = match e {
                Elem::Int(v) => v.to_string(),
                Elem::Float(v) => v.to_string(),
            };
            Error::bad_input(
                name,
                format!("label[{i}]"),
                format!("value {shown} (dtype '{descr}') is not an integer class label"),
            )
        })
    })
}

/// Load integer class labels from a 1-D (`(n,)`) or column (`(n, 1)`) `.npy` array. Integer
/// and bool dtypes are read exactly; float arrays are accepted when every value is integral.
pub fn load_npy_labels(path: &Path) -> Result<Vec<i64>> {
    parse_npy_labels(&read_file(path)?, &display_name(path))
}

/// Serialize a row-major `n × d` f64 matrix as `.npy` (format 1.0, `'<f8'`, C order).
pub fn npy_matrix_bytes(data: &[f64], n: usize, d: usize) -> Result<Vec<u8>> {
    if n.checked_mul(d) != Some(data.len()) {
        return Err(Error::invalid_argument(
            "data",
            format!("{} values do not form an {n} × {d} matrix", data.len()),
        ));
    }
    let mut header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': ({n}, {d}), }}");
    // Pad with spaces so that magic + version + length + header + '\n' is a multiple of 64.
    let total = (10 + header.len() + 1).next_multiple_of(64);
    header.extend(std::iter::repeat_n(' ', total - 10 - header.len() - 1));
    header.push('\n');
    let header_len = u16::try_from(header.len())
        .map_err(|_| Error::Internal("npy header longer than 65535 bytes".into()))?;
    let mut out = Vec::with_capacity(total + 8 * data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&header_len.to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    Ok(out)
}

/// Write a row-major `n × d` f64 matrix to `path` as `.npy`, atomically.
pub fn save_npy_matrix(path: &Path, data: &[f64], n: usize, d: usize) -> Result<()> {
    write_atomic(path, &npy_matrix_bytes(data, n, d)?)
}

/// A minimal parser for the Python literals that appear in `.npy` headers.
mod py {
    /// A Python literal value.
    #[derive(Debug, Clone, PartialEq)]
    pub enum Value {
        Str(String),
        Bool(bool),
        None,
        Int(i128),
        Float,
        Tuple(Vec<Value>),
        List(Vec<Value>),
        Dict(Vec<(String, Value)>),
    }

    const MAX_DEPTH: usize = 16;

    struct Parser<'a> {
        s: &'a [u8],
        pos: usize,
    }

    /// Parse one literal spanning the whole of `text` (surrounding whitespace allowed).
    pub fn parse(text: &str) -> Result<Value, String> {
        let mut p = Parser {
            s: text.as_bytes(),
            pos: 0,
        };
        let v = p.value(0)?;
        p.ws();
        if p.pos != p.s.len() {
            return Err(format!("unexpected text at byte {}", p.pos));
        }
        Ok(v)
    }

    impl Parser<'_> {
        fn ws(&mut self) {
            while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
                self.pos += 1;
            }
        }
        fn peek(&self) -> Option<u8> {
            self.s.get(self.pos).copied()
        }
        fn expect(&mut self, c: u8) -> Result<(), String> {
            self.ws();
            if self.peek() == Some(c) {
                self.pos += 1;
                Ok(())
            } else {
                Err(format!("expected '{}' at byte {}", c as char, self.pos))
            }
        }
        fn value(&mut self, depth: usize) -> Result<Value, String> {
            if depth > MAX_DEPTH {
                return Err("nesting too deep".into());
            }
            self.ws();
            match self.peek() {
                None => Err("unexpected end of header".into()),
                Some(b'{') => {
                    self.pos += 1;
                    let mut items: Vec<(String, Value)> = Vec::new();
                    // Keys seen so far: a set, so that a huge header cannot make parsing
                    // quadratic.
                    let mut keys = std::collections::HashSet::new();
                    loop {
                        self.ws();
                        if self.peek() == Some(b'}') {
                            self.pos += 1;
                            return Ok(Value::Dict(items));
                        }
                        let key = match self.value(depth + 1)? {
                            Value::Str(k) => k,
                            _ => return Err("dict keys must be strings".into()),
                        };
                        if !keys.insert(key.clone()) {
                            return Err(format!("duplicate key '{key}'"));
                        }
                        self.expect(b':')?;
                        let v = self.value(depth + 1)?;
                        items.push((key, v));
                        self.ws();
                        match self.peek() {
                            Some(b',') => self.pos += 1,
                            Some(b'}') => {}
                            _ => return Err(format!("expected ',' or '}}' at byte {}", self.pos)),
                        }
                    }
                }
                Some(open @ (b'(' | b'[')) => {
                    self.pos += 1;
                    let close = if open == b'(' { b')' } else { b']' };
                    let mut items = Vec::new();
                    loop {
                        self.ws();
                        if self.peek() == Some(close) {
                            self.pos += 1;
                            return Ok(if open == b'(' {
                                Value::Tuple(items)
                            } else {
                                Value::List(items)
                            });
                        }
                        items.push(self.value(depth + 1)?);
                        self.ws();
                        match self.peek() {
                            Some(b',') => self.pos += 1,
                            Some(c) if c == close => {}
                            _ => {
                                return Err(format!(
                                    "expected ',' or '{}' at byte {}",
                                    close as char, self.pos
                                ));
                            }
                        }
                    }
                }
                Some(q @ (b'\'' | b'"')) => {
                    self.pos += 1;
                    let mut out = Vec::new();
                    loop {
                        match self.peek() {
                            None => return Err("unterminated string".into()),
                            Some(b'\\') => {
                                self.pos += 1;
                                match self.peek() {
                                    None => return Err("unterminated string".into()),
                                    Some(c) => out.push(c),
                                }
                                self.pos += 1;
                            }
                            Some(c) if c == q => {
                                self.pos += 1;
                                break;
                            }
                            Some(c) => {
                                out.push(c);
                                self.pos += 1;
                            }
                        }
                    }
                    String::from_utf8(out)
                        .map(Value::Str)
                        .map_err(|_| "string is not valid UTF-8".into())
                }
                Some(c) if c.is_ascii_alphabetic() => {
                    let start = self.pos;
                    while self
                        .peek()
                        .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
                    {
                        self.pos += 1;
                    }
                    match &self.s[start..self.pos] {
                        b"True" => Ok(Value::Bool(true)),
                        b"False" => Ok(Value::Bool(false)),
                        b"None" => Ok(Value::None),
                        other => Err(format!("unknown name '{}'", String::from_utf8_lossy(other))),
                    }
                }
                Some(c) if c.is_ascii_digit() || c == b'-' || c == b'+' || c == b'.' => {
                    let start = self.pos;
                    self.pos += 1;
                    while self.peek().is_some_and(|c| {
                        c.is_ascii_alphanumeric() || matches!(c, b'.' | b'+' | b'-')
                    }) {
                        self.pos += 1;
                    }
                    let tok = std::str::from_utf8(&self.s[start..self.pos])
                        .map_err(|_| "invalid number".to_string())?;
                    let tok = tok.strip_suffix('L').unwrap_or(tok);
                    if let Ok(v) = tok.parse::<i128>() {
                        Ok(Value::Int(v))
                    } else if tok.parse::<f64>().is_ok() {
                        Ok(Value::Float)
                    } else {
                        Err(format!("invalid number '{tok}'"))
                    }
                }
                Some(c) => Err(format!(
                    "unexpected character '{}' at byte {}",
                    c.escape_ascii(),
                    self.pos
                )),
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use npyz::WriterBuilder;
    use std::panic::{AssertUnwindSafe, catch_unwind};

    /// A `.npy` file written by the independent `npyz` writer.
    pub(crate) fn npyz_bytes<T: npyz::AutoSerialize + Clone>(data: &[T], shape: &[u64]) -> Vec<u8> {
        let mut buf = Vec::new();
        {
            let mut w = npyz::WriteOptions::new()
                .default_dtype()
                .shape(shape)
                .writer(&mut buf)
                .begin_nd()
                .unwrap();
            w.extend(data.iter().cloned()).unwrap();
            w.finish().unwrap();
        }
        buf
    }

    /// A `.npy` file with an arbitrary header dict and data bytes.
    fn raw_npy(dict: &str, data: &[u8]) -> Vec<u8> {
        let mut header = dict.to_string();
        let total = (10 + header.len() + 1).next_multiple_of(64);
        header.extend(std::iter::repeat_n(' ', total - 11 - dict.len()));
        header.push('\n');
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    fn err(bytes: &[u8]) -> String {
        parse_npy(bytes, "x.npy").unwrap_err().to_string()
    }

    #[test]
    fn round_trip_u8_i32_i64_f32_f64_f16() {
        let shape = [2u64, 3];
        let want: Vec<f64> = vec![0.0, 1.0, 2.0, 3.0, 4.0, 255.0];
        let cases: Vec<(Vec<u8>, bool)> = vec![
            (npyz_bytes(&[0u8, 1, 2, 3, 4, 255], &shape), true),
            (npyz_bytes(&[0i32, 1, 2, 3, 4, 255], &shape), true),
            (npyz_bytes(&[0i64, 1, 2, 3, 4, 255], &shape), true),
            (npyz_bytes(&[0u16, 1, 2, 3, 4, 255], &shape), true),
            (npyz_bytes(&[0i8, 1, 2, 3, 4, -1], &shape), true),
            (
                npyz_bytes(&[0f32, 1.0, 2.0, 3.0, 4.0, 255.0], &shape),
                false,
            ),
            (
                npyz_bytes(&[0f64, 1.0, 2.0, 3.0, 4.0, 255.0], &shape),
                false,
            ),
            (
                npyz_bytes(
                    &[0.0f32, 1.0, 2.0, 3.0, 4.0, 255.0].map(half::f16::from_f32),
                    &shape,
                ),
                false,
            ),
        ];
        for (k, (bytes, is_int)) in cases.iter().enumerate() {
            let a = parse_npy(bytes, "x.npy").unwrap();
            assert_eq!(a.shape, vec![2, 3], "case {k}");
            assert_eq!(a.is_integer, *is_int, "case {k}");
            let mut expect = want.clone();
            if k == 4 {
                expect[5] = -1.0;
            }
            assert_eq!(a.data, expect, "case {k}");
        }
        // Exact values that need every bit.
        let vals = [0.1f64, -1e-300, 1.0 / 3.0, f64::MAX];
        let a = parse_npy(&npyz_bytes(&vals, &[4, 1]), "x.npy").unwrap();
        assert_eq!(a.data, vals);
        let h = [half::f16::from_bits(0x0001), half::f16::MAX];
        let a = parse_npy(&npyz_bytes(&h, &[2, 1]), "x.npy").unwrap();
        assert_eq!(a.data, vec![2f64.powi(-24), 65504.0]);
    }

    #[test]
    fn own_writer_round_trips_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.npy");
        let data: Vec<f64> = (0..12).map(|i| f64::from(i) / 7.0 - 0.5).collect();
        save_npy_matrix(&p, &data, 3, 4).unwrap();
        assert_eq!(load_npy_matrix(&p).unwrap(), (data.clone(), 3, 4));
        // And npyz agrees on what we wrote.
        let bytes = std::fs::read(&p).unwrap();
        let f = npyz::NpyFile::new(&bytes[..]).unwrap();
        assert_eq!(f.shape(), &[3, 4]);
        assert_eq!(f.into_vec::<f64>().unwrap(), data);
    }

    #[test]
    fn nd_arrays_are_flattened_per_sample() {
        let data: Vec<f32> = (0..24).map(|i| i as f32).collect();
        let (x, n, d) = parse_npy_matrix(&npyz_bytes(&data, &[2, 3, 4]), "x.npy").unwrap();
        assert_eq!((n, d), (2, 12));
        assert_eq!(x, (0..24).map(f64::from).collect::<Vec<_>>());
    }

    #[test]
    fn fortran_order_is_reordered_to_c_order() {
        // C-order matrix [[0, 1, 2], [3, 4, 5]] stored column by column.
        let fdata: Vec<u8> = [0.0f64, 3.0, 1.0, 4.0, 2.0, 5.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let b = raw_npy(
            "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }",
            &fdata,
        );
        let a = parse_npy(&b, "x.npy").unwrap();
        assert_eq!(a.data, vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        // 3-D: element (i, j, k) at i + 2j + 4k for shape (2, 2, 2).
        let f3: Vec<u8> = (0..8u8).collect();
        let b = raw_npy(
            "{'descr': '|u1', 'fortran_order': True, 'shape': (2, 2, 2), }",
            &f3,
        );
        let a = parse_npy(&b, "x.npy").unwrap();
        assert_eq!(a.data, vec![0.0, 4.0, 2.0, 6.0, 1.0, 5.0, 3.0, 7.0]);
    }

    #[test]
    fn big_endian_is_decoded() {
        let data: Vec<u8> = [1.5f64, -2.0]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect();
        let b = raw_npy(
            "{'descr': '>f8', 'fortran_order': False, 'shape': (2, 1), }",
            &data,
        );
        assert_eq!(parse_npy(&b, "x.npy").unwrap().data, vec![1.5, -2.0]);
        let data: Vec<u8> = [-7i32, 300].iter().flat_map(|v| v.to_be_bytes()).collect();
        let b = raw_npy(
            "{'descr': '>i4', 'fortran_order': False, 'shape': (2,), }",
            &data,
        );
        assert_eq!(parse_npy_labels(&b, "y.npy").unwrap(), vec![-7, 300]);
    }

    #[test]
    fn labels_int64_and_integral_floats() {
        let b = npyz_bytes(&[3i64, 0, 9], &[3]);
        assert_eq!(parse_npy_labels(&b, "y.npy").unwrap(), vec![3, 0, 9]);
        let b = npyz_bytes(&[3.0f64, 0.0], &[2, 1]);
        assert_eq!(parse_npy_labels(&b, "y.npy").unwrap(), vec![3, 0]);
        let b = npyz_bytes(&[3.0f64, 0.5], &[2]);
        let e = parse_npy_labels(&b, "y.npy").unwrap_err().to_string();
        assert!(
            e.contains("y.npy") && e.contains("label[1]") && e.contains("0.5"),
            "{e}"
        );
        let b = npyz_bytes(&[1i64, 2, 3, 4], &[2, 2]);
        let e = parse_npy_labels(&b, "y.npy").unwrap_err().to_string();
        assert!(e.contains("shape") && e.contains("(2, 2)"), "{e}");
    }

    #[test]
    fn one_dimensional_matrix_is_rejected_clearly() {
        let e = parse_npy_matrix(&npyz_bytes(&[1.0f64, 2.0], &[2]), "x.npy")
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.npy: shape") && e.contains("(n, 1)"), "{e}");
    }

    #[test]
    fn malformed_npy_errors_name_the_field() {
        assert!(err(b"not an npy file at all").contains("x.npy: magic"));
        assert!(err(b"").contains("magic"));
        let mut b = npyz_bytes(&[1.0f64], &[1, 1]);
        b[6] = 9;
        assert!(err(&b).contains("version 9.0"), "{}", err(&b));
        let b = raw_npy("{'descr': '<f8', 'shape': (1, 1), }", &[0; 8]);
        assert!(err(&b).contains("x.npy: fortran_order:"), "{}", err(&b));
        let b = raw_npy(
            "{'descr': '<c16', 'fortran_order': False, 'shape': (1, 1), }",
            &[0; 16],
        );
        assert!(err(&b).contains("unsupported dtype '<c16'"), "{}", err(&b));
        let b = raw_npy(
            "{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (1,), }",
            &[0; 8],
        );
        assert!(err(&b).contains("structured"), "{}", err(&b));
        let b = raw_npy(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (1, -1), }",
            &[0; 8],
        );
        assert!(err(&b).contains("x.npy: shape: dimension 1"), "{}", err(&b));
        let b = raw_npy("{'descr': '<f8' 'fortran_order': False}", &[]);
        assert!(err(&b).contains("malformed header"), "{}", err(&b));
        let b = raw_npy(&format!("{}{}", "(".repeat(100), ")".repeat(100)), &[]);
        assert!(err(&b).contains("nesting too deep"), "{}", err(&b));
        // Truncated data and trailing data.
        let b = npyz_bytes(&[1.0f64, 2.0, 3.0], &[3, 1]);
        let e = err(&b[..b.len() - 3]);
        assert!(
            e.contains("truncated") && e.contains("needs 24") && e.contains("only 21"),
            "{e}"
        );
        let mut b2 = b.clone();
        b2.push(0);
        assert!(err(&b2).contains("accounts for only 24"), "{}", err(&b2));
        // Header length beyond the file.
        let mut b3 = b.clone();
        b3[8] = 0xff;
        b3[9] = 0xff;
        assert!(
            err(&b3).contains("header length 65535 extends beyond"),
            "{}",
            err(&b3)
        );
    }

    #[test]
    fn huge_declared_shape_on_tiny_file_errors_without_allocating() {
        // 2^27 × 1 float64 = 1 GiB declared, 16 bytes present.
        let b = raw_npy(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (134217728, 1), }",
            &[0; 16],
        );
        let e = err(&b);
        assert!(e.contains("needs 1073741824 data bytes but only 16"), "{e}");
        // Overflowing products are errors too, not panics.
        let b = raw_npy(
            "{'descr': '<f8', 'fortran_order': True, 'shape': (18446744073709551615, 18446744073709551615), }",
            &[],
        );
        assert!(err(&b).contains("too large"), "{}", err(&b));
    }

    #[test]
    fn missing_file_is_io_error() {
        let e = load_npy_matrix(Path::new("/nonexistent/dir/x.npy")).unwrap_err();
        assert!(matches!(e, Error::Io { .. }));
        assert!(e.to_string().contains("/nonexistent/dir/x.npy"), "{e}");
    }

    #[test]
    fn real_digits_data_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/digits");
        let (xp, yp) = (dir.join("x.npy"), dir.join("labels.npy"));
        if !xp.exists() {
            eprintln!("skipping: {} not present", xp.display());
            return;
        }
        let (x, n, d) = load_npy_matrix(&xp).unwrap();
        assert_eq!((n, d, x.len()), (1797, 64, 1797 * 64));
        assert!(x.iter().all(|v| (0.0..=16.0).contains(v)));
        let y = load_npy_labels(&yp).unwrap();
        assert_eq!(y.len(), 1797);
        assert!(y.iter().all(|l| (0..10).contains(l)));
        assert_eq!(y.iter().copied().max(), Some(9));
    }

    #[test]
    fn byte_mutations_never_panic() {
        use rand::rngs::ChaCha8Rng;
        use rand::{RngExt, SeedableRng};
        let data: Vec<f32> = (0..24).map(|i| i as f32 * 0.5).collect();
        let valid = npyz_bytes(&data, &[4, 6]);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for round in 0..2000 {
            let mut b = valid.clone();
            match round % 4 {
                0 => b.truncate(rng.random_range(0..valid.len())),
                1 => {
                    for _ in 0..rng.random_range(1..4) {
                        let i = rng.random_range(0..b.len());
                        b[i] = rng.random();
                    }
                }
                2 => {
                    let i = rng.random_range(8..12);
                    b[i] = rng.random();
                }
                _ => {
                    // Flip a byte inside the header text only.
                    let i = rng.random_range(10..80);
                    b[i] = rng.random_range(32..127);
                }
            }
            let r = catch_unwind(AssertUnwindSafe(|| {
                let _ = parse_npy(&b, "m.npy");
                let _ = parse_npy_labels(&b, "m.npy");
            }));
            assert!(r.is_ok(), "panic on mutation round {round}");
        }
    }
}
