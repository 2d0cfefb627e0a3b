//! Hostile-input-safe GGUF v2/v3 reader.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use memmap2::Mmap;

use super::types::{tensor_nbytes, value_type, GgufArray, GgufValue};
use super::{GgufError, Result};

/// GGUF magic as bytes.
pub(crate) const MAGIC: [u8; 4] = *b"GGUF";
/// Alignment used when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u32 = 32;
/// ggml's name buffer is 64 bytes including the NUL, so names are at most 63 bytes.
pub const MAX_TENSOR_NAME: usize = 63;
/// ggml tensors have at most four dimensions.
pub const MAX_DIMS: u32 = 4;
/// The spec caps keys at 65535 bytes.
pub const MAX_KEY_LEN: u64 = 65_535;

/// Caps applied while parsing so that a header cannot make the reader allocate or loop
/// in proportion to numbers it merely claims. Every count is additionally checked
/// against the bytes actually left in the input before anything is allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GgufLimits {
    /// Maximum tensor count (default 2^20; real models have at most a few tens of thousands).
    pub max_tensors: u64,
    /// Maximum metadata key count (default 2^16).
    pub max_kv: u64,
    /// Maximum length of one string value in bytes (default 16 MiB; chat templates are KBs).
    pub max_string_len: u64,
    /// Maximum element count of one array (default 2^24; vocabularies are ~2^18).
    pub max_array_len: u64,
    /// Maximum size of the whole header (KVs + tensor infos) in bytes (default 256 MiB).
    pub max_metadata_bytes: u64,
}

impl Default for GgufLimits {
    fn default() -> Self {
        GgufLimits {
            max_tensors: 1 << 20,
            max_kv: 1 << 16,
            max_string_len: 1 << 24,
            max_array_len: 1 << 24,
            max_metadata_bytes: 1 << 28,
        }
    }
}

/// Description of one tensor as stored in the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufTensorInfo {
    /// Tensor name (1..=63 bytes, unique in the file).
    pub name: String,
    /// Dimensions in GGUF order: `dims[0]` is `ne[0]`, the fastest-varying (row length).
    pub dims: Vec<u64>,
    /// ggml type id.
    pub ggml_type: u32,
    /// Offset relative to the data section start.
    pub offset: u64,
    /// Byte size computed from dims and type (ggml's `nbytes`).
    pub n_bytes: u64,
}

impl GgufTensorInfo {
    /// Shape in row-major (PyTorch/numpy/safetensors) order, i.e. `dims` reversed,
    /// because HF `[out, in]` is stored as GGUF `[in, out]`.
    pub fn shape_rowmajor(&self) -> Vec<u64> {
        self.dims.iter().rev().copied().collect()
    }

    /// Element count (product of dims; 1 for zero dims). Validated not to overflow at parse.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().fold(1u64, |a, &d| a.saturating_mul(d))
    }
}

/// Everything parsed from a GGUF header, independent of where the bytes live.
#[derive(Debug, Clone)]
struct Header {
    version: u32,
    metadata: Vec<(String, GgufValue)>,
    index: HashMap<String, usize>,
    tensors: Vec<GgufTensorInfo>,
    alignment: u32,
    data_offset: u64,
    strict_offsets: bool,
}

/// A parsed GGUF file over some byte storage (`Mmap` for files, `&[u8]` for buffers).
/// The header is fully validated up front, so `tensor_data` is a plain slice.
#[derive(Debug)]
pub struct GgufFile<B = Mmap> {
    bytes: B,
    h: Header,
}

impl GgufFile<Mmap> {
    /// Memory-maps and parses a file with default limits; tensor bytes are not copied.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with_limits(path, GgufLimits::default())
    }

    /// As [`GgufFile::open`] with explicit limits.
    pub fn open_with_limits(path: impl AsRef<Path>, limits: GgufLimits) -> Result<Self> {
        let path = path.as_ref();
        let io = |source| GgufError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the map is read-only and we never hand out references that outlive it.
        // If another process truncates or rewrites the file while mapped, reads may fault
        // or see changed bytes; that is the documented contract of memory-mapped input
        // (as for safetensors) and cannot cause writes through this mapping.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        let h = parse_header(&map, &limits)?;
        Ok(GgufFile { bytes: map, h })
    }
}

impl<'a> GgufFile<&'a [u8]> {
    /// Parses an in-memory buffer with default limits, borrowing it.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        Self::parse_with_limits(bytes, GgufLimits::default())
    }

    /// As [`GgufFile::parse`] with explicit limits.
    pub fn parse_with_limits(bytes: &'a [u8], limits: GgufLimits) -> Result<Self> {
        let h = parse_header(bytes, &limits)?;
        Ok(GgufFile { bytes, h })
    }
}

impl<B: AsRef<[u8]>> GgufFile<B> {
    /// GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.h.version
    }

    /// All key/value pairs in file order.
    pub fn metadata(&self) -> &[(String, GgufValue)] {
        &self.h.metadata
    }

    /// Value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.h.index.get(key).map(|&i| &self.h.metadata[i].1)
    }

    /// `key` as UINT32; `None` if absent or of another type (llama.cpp is that strict too).
    pub fn get_u32(&self, key: &str) -> Option<u32> {
        match self.get(key)? {
            GgufValue::U32(v) => Some(*v),
            _ => None,
        }
    }

    /// `key` as INT32.
    pub fn get_i32(&self, key: &str) -> Option<i32> {
        match self.get(key)? {
            GgufValue::I32(v) => Some(*v),
            _ => None,
        }
    }

    /// `key` as UINT64.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        match self.get(key)? {
            GgufValue::U64(v) => Some(*v),
            _ => None,
        }
    }

    /// `key` as FLOAT32.
    pub fn get_f32(&self, key: &str) -> Option<f32> {
        match self.get(key)? {
            GgufValue::F32(v) => Some(*v),
            _ => None,
        }
    }

    /// `key` as BOOL.
    pub fn get_bool(&self, key: &str) -> Option<bool> {
        match self.get(key)? {
            GgufValue::Bool(v) => Some(*v),
            _ => None,
        }
    }

    /// `key` as STRING.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        match self.get(key)? {
            GgufValue::String(v) => Some(v),
            _ => None,
        }
    }

    /// `key` as any ARRAY.
    pub fn get_array(&self, key: &str) -> Option<&GgufArray> {
        match self.get(key)? {
            GgufValue::Array(a) => Some(a),
            _ => None,
        }
    }

    /// `key` as ARRAY of STRING (token lists, merges).
    pub fn get_array_str(&self, key: &str) -> Option<&[String]> {
        match self.get_array(key)? {
            GgufArray::String(v) => Some(v),
            _ => None,
        }
    }

    /// `key` as ARRAY of INT32 (token types).
    pub fn get_array_i32(&self, key: &str) -> Option<&[i32]> {
        match self.get_array(key)? {
            GgufArray::I32(v) => Some(v),
            _ => None,
        }
    }

    /// `key` as ARRAY of FLOAT32 (token scores).
    pub fn get_array_f32(&self, key: &str) -> Option<&[f32]> {
        match self.get_array(key)? {
            GgufArray::F32(v) => Some(v),
            _ => None,
        }
    }

    /// Tensor infos in header order.
    pub fn tensors(&self) -> &[GgufTensorInfo] {
        &self.h.tensors
    }

    /// Info of the tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.h.tensors.iter().find(|t| t.name == name)
    }

    /// Alignment in force (`general.alignment` or 32).
    pub fn alignment(&self) -> u32 {
        self.h.alignment
    }

    /// Absolute file offset of the data section.
    pub fn data_offset(&self) -> u64 {
        self.h.data_offset
    }

    /// True when tensors are packed in info order with minimal padding, the layout that
    /// llama.cpp's loader insists on. Files with gaps or reordered data parse fine here
    /// but would be refused by llama.cpp, so exporters and importers can warn.
    pub fn strict_offsets(&self) -> bool {
        self.h.strict_offsets
    }

    /// The bytes of a tensor. Ranges were bounds-checked at parse; an info that does not
    /// belong to this file and lies outside it yields an empty slice rather than a panic.
    pub fn tensor_data(&self, info: &GgufTensorInfo) -> &[u8] {
        let bytes = self.bytes.as_ref();
        let range = self
            .h
            .data_offset
            .checked_add(info.offset)
            .and_then(|s| Some((s, s.checked_add(info.n_bytes)?)))
            .and_then(|(s, e)| Some(usize::try_from(s).ok()?..usize::try_from(e).ok()?));
        range.and_then(|r| bytes.get(r)).unwrap_or(&[])
    }
}

/// Bounded little-endian cursor. Every read checks the metadata budget first (so a huge
/// claimed length fails as `MetadataTooLarge`) and then the input length.
struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
    max_meta: u64,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        // pos <= b.len() is an invariant of `take`.
        (self.b.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: &'static str) -> Result<&'a [u8]> {
        let end = (self.pos as u64).checked_add(n);
        match end {
            Some(e) if e > self.max_meta => Err(GgufError::MetadataTooLarge {
                bytes: e,
                max: self.max_meta,
            }),
            Some(e) if e <= self.b.len() as u64 => {
                let start = self.pos;
                // e <= b.len() so it fits in usize.
                self.pos = e as usize;
                Ok(&self.b[start..self.pos])
            }
            _ => Err(GgufError::UnexpectedEof {
                what,
                offset: self.pos as u64,
            }),
        }
    }

    fn arr<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8> {
        Ok(self.arr::<1>(what)?[0])
    }
    fn u32(&mut self, what: &'static str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.arr(what)?))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.arr(what)?))
    }

    /// Reads a GGUF string whose length must be within `max` bytes.
    fn string(&mut self, max: u64, what: &'static str) -> Result<String> {
        let at = self.pos as u64;
        let len = self.u64(what)?;
        if len > max {
            return Err(GgufError::StringTooLong {
                len,
                max,
                offset: at,
            });
        }
        let start = self.pos as u64;
        let raw = self.take(len, what)?;
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| GgufError::InvalidUtf8 { offset: start })
    }
}

/// Minimum bytes a KV pair occupies: key len + 1 key byte + type + 1 value byte.
const MIN_KV_BYTES: u64 = 8 + 1 + 4 + 1;
/// Minimum bytes of a tensor info: name len + 1 byte + n_dims + type + offset.
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 1 + 4 + 4 + 8;

fn read_value(c: &mut Cursor<'_>, ty: u32, key: &str, lim: &GgufLimits) -> Result<GgufValue> {
    use value_type::*;
    Ok(match ty {
        UINT8 => GgufValue::U8(c.u8("u8 value")?),
        INT8 => GgufValue::I8(i8::from_le_bytes(c.arr("i8 value")?)),
        UINT16 => GgufValue::U16(u16::from_le_bytes(c.arr("u16 value")?)),
        INT16 => GgufValue::I16(i16::from_le_bytes(c.arr("i16 value")?)),
        UINT32 => GgufValue::U32(c.u32("u32 value")?),
        INT32 => GgufValue::I32(i32::from_le_bytes(c.arr("i32 value")?)),
        FLOAT32 => GgufValue::F32(f32::from_le_bytes(c.arr("f32 value")?)),
        BOOL => GgufValue::Bool(read_bool(c, key)?),
        STRING => GgufValue::String(c.string(lim.max_string_len, "string value")?),
        UINT64 => GgufValue::U64(c.u64("u64 value")?),
        INT64 => GgufValue::I64(i64::from_le_bytes(c.arr("i64 value")?)),
        FLOAT64 => GgufValue::F64(f64::from_le_bytes(c.arr("f64 value")?)),
        ARRAY => GgufValue::Array(read_array(c, key, lim)?),
        other => {
            return Err(GgufError::UnknownValueType {
                key: key.to_string(),
                type_id: other,
            })
        }
    })
}

fn read_bool(c: &mut Cursor<'_>, key: &str) -> Result<bool> {
    match c.u8("bool value")? {
        0 => Ok(false),
        1 => Ok(true),
        value => Err(GgufError::BadBool {
            key: key.to_string(),
            value,
        }),
    }
}

fn read_array(c: &mut Cursor<'_>, key: &str, lim: &GgufLimits) -> Result<GgufArray> {
    use value_type::*;
    let elem = c.u32("array element type")?;
    let len = c.u64("array length")?;
    let elem_size: u64 = match elem {
        UINT8 | INT8 | BOOL => 1,
        UINT16 | INT16 => 2,
        UINT32 | INT32 | FLOAT32 => 4,
        UINT64 | INT64 | FLOAT64 => 8,
        STRING => 8, // at least the length field
        ARRAY => return Err(GgufError::NestedArray(key.to_string())),
        other => {
            return Err(GgufError::UnknownValueType {
                key: key.to_string(),
                type_id: other,
            })
        }
    };
    // Never allocate for elements that cannot be present in the input.
    let fit = c.remaining() / elem_size;
    let max = lim.max_array_len.min(fit);
    if len > max {
        return Err(GgufError::ArrayTooLong {
            key: key.to_string(),
            len,
            max,
        });
    }
    // len <= remaining bytes, which fit in usize.
    let n = len as usize;
    macro_rules! fixed {
        ($variant:ident, $t:ty, $what:literal) => {{
            let raw = c.take(len * elem_size, $what)?;
            GgufArray::$variant(
                raw.chunks_exact(std::mem::size_of::<$t>())
                    .map(|ch| {
                        let mut a = [0u8; std::mem::size_of::<$t>()];
                        a.copy_from_slice(ch);
                        <$t>::from_le_bytes(a)
                    })
                    .collect(),
            )
        }};
    }
    Ok(match elem {
        UINT8 => GgufArray::U8(c.take(len, "u8 array")?.to_vec()),
        INT8 => fixed!(I8, i8, "i8 array"),
        UINT16 => fixed!(U16, u16, "u16 array"),
        INT16 => fixed!(I16, i16, "i16 array"),
        UINT32 => fixed!(U32, u32, "u32 array"),
        INT32 => fixed!(I32, i32, "i32 array"),
        FLOAT32 => fixed!(F32, f32, "f32 array"),
        UINT64 => fixed!(U64, u64, "u64 array"),
        INT64 => fixed!(I64, i64, "i64 array"),
        FLOAT64 => fixed!(F64, f64, "f64 array"),
        BOOL => {
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(read_bool(c, key)?);
            }
            GgufArray::Bool(v)
        }
        _ => {
            // STRING (ARRAY and unknown ids returned above).
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(c.string(lim.max_string_len, "string array element")?);
            }
            GgufArray::String(v)
        }
    })
}

fn parse_header(bytes: &[u8], lim: &GgufLimits) -> Result<Header> {
    let mut c = Cursor {
        b: bytes,
        pos: 0,
        max_meta: lim.max_metadata_bytes.max(24),
    };
    let magic: [u8; 4] = c.arr("magic")?;
    if magic != MAGIC {
        return Err(GgufError::BadMagic(magic));
    }
    let version = c.u32("version")?;
    if version != 2 && version != 3 {
        return Err(GgufError::UnsupportedVersion(version));
    }
    let n_tensors = c.u64("tensor count")?;
    let n_kv = c.u64("kv count")?;
    let max_kv = lim.max_kv.min(c.remaining() / MIN_KV_BYTES);
    if n_kv > max_kv {
        return Err(GgufError::TooManyKeys {
            count: n_kv,
            max: max_kv,
        });
    }
    // The KV section takes bytes too, but checking against the whole rest is enough to
    // bound the allocation; the per-field reads catch the rest.
    let max_t = lim.max_tensors.min(c.remaining() / MIN_TENSOR_INFO_BYTES);
    if n_tensors > max_t {
        return Err(GgufError::TooManyTensors {
            count: n_tensors,
            max: max_t,
        });
    }

    let mut metadata: Vec<(String, GgufValue)> = Vec::with_capacity(n_kv as usize);
    let mut index = HashMap::with_capacity(n_kv as usize);
    for _ in 0..n_kv {
        let at = c.pos as u64;
        let key = c.string(MAX_KEY_LEN, "key")?;
        if key.is_empty() {
            return Err(GgufError::BadKeyLength { len: 0, offset: at });
        }
        if index.contains_key(&key) {
            return Err(GgufError::DuplicateKey(key));
        }
        let ty = c.u32("value type")?;
        let value = read_value(&mut c, ty, &key, lim)?;
        index.insert(key.clone(), metadata.len());
        metadata.push((key, value));
    }

    let alignment = match index.get("general.alignment").map(|&i| &metadata[i].1) {
        None => DEFAULT_ALIGNMENT,
        Some(GgufValue::U32(a)) if a.is_power_of_two() => *a,
        Some(GgufValue::U32(a)) => return Err(GgufError::BadAlignment(*a)),
        Some(_) => return Err(GgufError::AlignmentWrongType),
    };

    let mut tensors: Vec<GgufTensorInfo> = Vec::with_capacity(n_tensors as usize);
    let mut names = HashSet::with_capacity(n_tensors as usize);
    for _ in 0..n_tensors {
        let name = c.string(lim.max_string_len, "tensor name")?;
        if name.is_empty() || name.len() > MAX_TENSOR_NAME {
            let len = name.len();
            return Err(GgufError::BadTensorName { name, len });
        }
        if !names.insert(name.clone()) {
            return Err(GgufError::DuplicateTensorName(name));
        }
        let n_dims = c.u32("n_dims")?;
        if n_dims > MAX_DIMS {
            return Err(GgufError::TooManyDims { name, n_dims });
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(c.u64("dim")?);
        }
        let ggml_type = c.u32("tensor type")?;
        let offset = c.u64("tensor offset")?;
        let n_bytes = tensor_nbytes(&name, &dims, ggml_type)?;
        if offset % u64::from(alignment) != 0 {
            return Err(GgufError::MisalignedOffset {
                name,
                offset,
                alignment,
            });
        }
        tensors.push(GgufTensorInfo {
            name,
            dims,
            ggml_type,
            offset,
            n_bytes,
        });
    }

    let header_end = c.pos as u64;
    let data_offset = align_up(header_end, alignment)
        .ok_or(GgufError::OffsetOverflow("<data section>".to_string()))?;
    let file_len = bytes.len() as u64;

    // Bounds of every tensor, and the llama.cpp strict-packing check.
    let mut expected = 0u64;
    let mut strict = true;
    for t in &tensors {
        let start = data_offset
            .checked_add(t.offset)
            .ok_or_else(|| GgufError::OffsetOverflow(t.name.clone()))?;
        let end = start
            .checked_add(t.n_bytes)
            .ok_or_else(|| GgufError::OffsetOverflow(t.name.clone()))?;
        if end > file_len {
            return Err(GgufError::TensorOutOfBounds {
                name: t.name.clone(),
                start,
                end,
                file_len,
            });
        }
        if strict {
            if t.offset != expected {
                strict = false;
            } else {
                // n_bytes <= file_len here, so this cannot overflow; stay checked anyway.
                expected = align_up(t.n_bytes, alignment)
                    .and_then(|p| expected.checked_add(p))
                    .ok_or_else(|| GgufError::OffsetOverflow(t.name.clone()))?;
            }
        }
    }
    // Overlap: sort non-empty ranges by start and compare neighbours.
    let mut order: Vec<usize> = (0..tensors.len())
        .filter(|&i| tensors[i].n_bytes > 0)
        .collect();
    order.sort_by_key(|&i| (tensors[i].offset, i));
    for w in order.windows(2) {
        let (a, b) = (&tensors[w[0]], &tensors[w[1]]);
        // Both ends were checked against the file length above.
        if a.offset + a.n_bytes > b.offset {
            return Err(GgufError::TensorOverlap {
                a: a.name.clone(),
                b: b.name.clone(),
            });
        }
    }

    Ok(Header {
        version,
        metadata,
        index,
        tensors,
        alignment,
        data_offset,
        strict_offsets: strict,
    })
}

/// Rounds `x` up to a multiple of the power of two `a`, `None` on overflow.
pub(crate) fn align_up(x: u64, a: u32) -> Option<u64> {
    let a = u64::from(a);
    if a == 0 {
        return None;
    }
    x.checked_add(a - 1).map(|v| v / a * a)
}
