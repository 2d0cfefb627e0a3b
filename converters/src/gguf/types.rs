//! GGUF value model and the ggml type size table.

/// GGUF value type ids (`gguf_type`), kept as plain constants so callers can match raw ids.
pub mod value_type {
    /// u8.
    pub const UINT8: u32 = 0;
    /// i8.
    pub const INT8: u32 = 1;
    /// u16.
    pub const UINT16: u32 = 2;
    /// i16.
    pub const INT16: u32 = 3;
    /// u32.
    pub const UINT32: u32 = 4;
    /// i32.
    pub const INT32: u32 = 5;
    /// f32.
    pub const FLOAT32: u32 = 6;
    /// bool, one byte 0/1.
    pub const BOOL: u32 = 7;
    /// u64 length + UTF-8.
    pub const STRING: u32 = 8;
    /// elem type u32 + count u64 + elements.
    pub const ARRAY: u32 = 9;
    /// u64.
    pub const UINT64: u32 = 10;
    /// i64.
    pub const INT64: u32 = 11;
    /// f64.
    pub const FLOAT64: u32 = 12;
}

/// A typed array. Arrays are stored per element type (not as `Vec<GgufValue>`) so a
/// 150k-entry token list costs its payload, not 32 bytes of enum per byte of input.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufArray {
    /// Array of u8.
    U8(Vec<u8>),
    /// Array of i8.
    I8(Vec<i8>),
    /// Array of u16.
    U16(Vec<u16>),
    /// Array of i16.
    I16(Vec<i16>),
    /// Array of u32.
    U32(Vec<u32>),
    /// Array of i32.
    I32(Vec<i32>),
    /// Array of f32.
    F32(Vec<f32>),
    /// Array of bool.
    Bool(Vec<bool>),
    /// Array of strings.
    String(Vec<String>),
    /// Array of u64.
    U64(Vec<u64>),
    /// Array of i64.
    I64(Vec<i64>),
    /// Array of f64.
    F64(Vec<f64>),
}

impl GgufArray {
    /// The GGUF value type id of the elements, which is what goes on disk after `ARRAY`.
    pub fn elem_type(&self) -> u32 {
        use value_type::*;
        match self {
            GgufArray::U8(_) => UINT8,
            GgufArray::I8(_) => INT8,
            GgufArray::U16(_) => UINT16,
            GgufArray::I16(_) => INT16,
            GgufArray::U32(_) => UINT32,
            GgufArray::I32(_) => INT32,
            GgufArray::F32(_) => FLOAT32,
            GgufArray::Bool(_) => BOOL,
            GgufArray::String(_) => STRING,
            GgufArray::U64(_) => UINT64,
            GgufArray::I64(_) => INT64,
            GgufArray::F64(_) => FLOAT64,
        }
    }

    /// Element count, needed for the on-disk count field and for limits.
    pub fn len(&self) -> usize {
        match self {
            GgufArray::U8(v) => v.len(),
            GgufArray::I8(v) => v.len(),
            GgufArray::U16(v) => v.len(),
            GgufArray::I16(v) => v.len(),
            GgufArray::U32(v) => v.len(),
            GgufArray::I32(v) => v.len(),
            GgufArray::F32(v) => v.len(),
            GgufArray::Bool(v) => v.len(),
            GgufArray::String(v) => v.len(),
            GgufArray::U64(v) => v.len(),
            GgufArray::I64(v) => v.len(),
            GgufArray::F64(v) => v.len(),
        }
    }

    /// True when the array has no elements (clippy wants it next to `len`).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One metadata value. The variant is the on-disk type, which matters: llama.cpp checks
/// value types exactly (a u64 `block_count` fails to load), so conversions must pick them.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    /// UINT8.
    U8(u8),
    /// INT8.
    I8(i8),
    /// UINT16.
    U16(u16),
    /// INT16.
    I16(i16),
    /// UINT32.
    U32(u32),
    /// INT32.
    I32(i32),
    /// FLOAT32.
    F32(f32),
    /// BOOL.
    Bool(bool),
    /// STRING.
    String(String),
    /// ARRAY (never nested).
    Array(GgufArray),
    /// UINT64.
    U64(u64),
    /// INT64.
    I64(i64),
    /// FLOAT64.
    F64(f64),
}

impl GgufValue {
    /// The GGUF value type id written before this value.
    pub fn type_id(&self) -> u32 {
        use value_type::*;
        match self {
            GgufValue::U8(_) => UINT8,
            GgufValue::I8(_) => INT8,
            GgufValue::U16(_) => UINT16,
            GgufValue::I16(_) => INT16,
            GgufValue::U32(_) => UINT32,
            GgufValue::I32(_) => INT32,
            GgufValue::F32(_) => FLOAT32,
            GgufValue::Bool(_) => BOOL,
            GgufValue::String(_) => STRING,
            GgufValue::Array(_) => ARRAY,
            GgufValue::U64(_) => UINT64,
            GgufValue::I64(_) => INT64,
            GgufValue::F64(_) => FLOAT64,
        }
    }

    /// Shorthand for building string values in KV lists.
    pub fn str(s: impl Into<String>) -> Self {
        GgufValue::String(s.into())
    }
}

/// ggml type ids that appear in the exporter and importer, named for readability.
pub mod ggml_type {
    /// F32.
    pub const F32: u32 = 0;
    /// F16.
    pub const F16: u32 = 1;
    /// Q4_0.
    pub const Q4_0: u32 = 2;
    /// Q4_1.
    pub const Q4_1: u32 = 3;
    /// Q5_0.
    pub const Q5_0: u32 = 6;
    /// Q5_1.
    pub const Q5_1: u32 = 7;
    /// Q8_0.
    pub const Q8_0: u32 = 8;
    /// Q2_K.
    pub const Q2_K: u32 = 10;
    /// Q3_K.
    pub const Q3_K: u32 = 11;
    /// Q4_K.
    pub const Q4_K: u32 = 12;
    /// Q5_K.
    pub const Q5_K: u32 = 13;
    /// Q6_K.
    pub const Q6_K: u32 = 14;
    /// BF16.
    pub const BF16: u32 = 30;
    /// MXFP4 (newer ggml only; the b4747 llama.cpp build rejects it).
    pub const MXFP4: u32 = 39;
}

/// (block size in elements, bytes per block) for ggml type ids 0..=39; (0, 0) marks
/// removed or unknown ids. Sizes from the GGUF facts sheet; Q8_1 uses ggml's 36.
const GGML_TYPE_TABLE: [(u32, u32); 40] = [
    (1, 4),     // 0 F32
    (1, 2),     // 1 F16
    (32, 18),   // 2 Q4_0
    (32, 20),   // 3 Q4_1
    (0, 0),     // 4 removed Q4_2
    (0, 0),     // 5 removed Q4_3
    (32, 22),   // 6 Q5_0
    (32, 24),   // 7 Q5_1
    (32, 34),   // 8 Q8_0
    (32, 36),   // 9 Q8_1
    (256, 84),  // 10 Q2_K
    (256, 110), // 11 Q3_K
    (256, 144), // 12 Q4_K
    (256, 176), // 13 Q5_K
    (256, 210), // 14 Q6_K
    (256, 292), // 15 Q8_K
    (256, 66),  // 16 IQ2_XXS
    (256, 74),  // 17 IQ2_XS
    (256, 98),  // 18 IQ3_XXS
    (256, 50),  // 19 IQ1_S
    (32, 18),   // 20 IQ4_NL
    (256, 110), // 21 IQ3_S
    (256, 82),  // 22 IQ2_S
    (256, 136), // 23 IQ4_XS
    (1, 1),     // 24 I8
    (1, 2),     // 25 I16
    (1, 4),     // 26 I32
    (1, 8),     // 27 I64
    (1, 8),     // 28 F64
    (256, 56),  // 29 IQ1_M
    (1, 2),     // 30 BF16
    (0, 0),     // 31 removed Q4_0_4_4
    (0, 0),     // 32 removed Q4_0_4_8
    (0, 0),     // 33 removed Q4_0_8_8
    (256, 54),  // 34 TQ1_0
    (256, 66),  // 35 TQ2_0
    (0, 0),     // 36 removed IQ4_NL_4_4
    (0, 0),     // 37 removed IQ4_NL_4_8
    (0, 0),     // 38 removed IQ4_NL_8_8
    (32, 17),   // 39 MXFP4
];

/// Block geometry of a ggml type: the only thing this crate knows about quantization,
/// enough to size and bounds-check tensor bytes without interpreting them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GgmlTypeInfo {
    /// Elements per block (1 for plain types).
    pub block_size: u64,
    /// Bytes per block.
    pub type_size: u64,
}

/// Block geometry for a ggml type id, or `None` for removed/unknown ids, so readers
/// reject tensors whose size cannot be computed.
pub fn ggml_type_info(type_id: u32) -> Option<GgmlTypeInfo> {
    let (b, t) = *GGML_TYPE_TABLE.get(usize::try_from(type_id).ok()?)?;
    if b == 0 {
        return None;
    }
    Some(GgmlTypeInfo {
        block_size: u64::from(b),
        type_size: u64::from(t),
    })
}

/// Byte size of a tensor with `dims` (ne order) and `type_id`, with every step checked.
/// Shared by reader and writer so both agree with ggml's `nbytes` formula.
pub(crate) fn tensor_nbytes(name: &str, dims: &[u64], type_id: u32) -> super::Result<u64> {
    use super::GgufError;
    let ti = ggml_type_info(type_id).ok_or_else(|| GgufError::UnknownGgmlType {
        name: name.to_string(),
        type_id,
    })?;
    let mut n: u64 = 1;
    for &d in dims {
        if d > i64::MAX as u64 {
            return Err(GgufError::DimTooLarge {
                name: name.to_string(),
                dim: d,
            });
        }
        n = n
            .checked_mul(d)
            .filter(|&v| v <= i64::MAX as u64)
            .ok_or_else(|| GgufError::ElementCountOverflow(name.to_string()))?;
    }
    let ne0 = dims.first().copied().unwrap_or(1);
    if ne0 % ti.block_size != 0 {
        return Err(GgufError::RowNotBlockMultiple {
            name: name.to_string(),
            ne0,
            block: ti.block_size,
        });
    }
    // ne0 divisible by block ⇒ n divisible by block.
    (n / ti.block_size)
        .checked_mul(ti.type_size)
        .filter(|&v| v <= i64::MAX as u64)
        .ok_or_else(|| GgufError::ByteSizeOverflow(name.to_string()))
}
