//! safetensors in and out.
//!
//! The reader ([`SafetensorsModel`]) maps every shard of a model, validates each header
//! exactly once (size cap, JSON shape, dtypes, checked shape arithmetic, contiguous and
//! in-bounds offsets, no duplicate names, index consistency) and then hands out zero-copy
//! byte views and f32 conversions of single tensors, so peak memory stays near one tensor.
//!
//! The writer ([`SafetensorsWriter`]) takes a plan of every tensor first so the headers can
//! be computed up front, then accepts tensor bytes one at a time in any order, writing
//! into temporary files that are renamed into place only when everything arrived.
//!
//! The header parser is our own (serde_json) rather than the `safetensors` crate: we need
//! every error to name the file and tensor, duplicate keys inside one header to be caught
//! (a plain JSON map silently keeps the last one), strict rejection of unknown fields, and
//! cross-shard checks against the index, none of which that crate exposes.

mod error;
mod header;
mod reader;
mod writer;

pub use error::SafetensorsError;
pub use header::{parse_header, ParsedHeader, MAX_HEADER_BYTES};
pub use reader::{SafetensorsModel, TensorInfo, MAX_INDEX_BYTES, SIDE_FILE_NAMES};
pub use writer::{SafetensorsWriter, TensorPlan};

use std::fmt;

/// Result alias so every safetensors function reports a [`SafetensorsError`].
pub type Result<T, E = SafetensorsError> = std::result::Result<T, E>;

/// Element types a safetensors header may declare.
///
/// All of them are accepted when listing a model so that foreign tensors (token-type ids,
/// masks) do not make a whole checkpoint unreadable; only [`Dtype::F32`], [`Dtype::F16`]
/// and [`Dtype::BF16`] can be converted to f32 or written.
#[allow(clippy::upper_case_acronyms, non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dtype {
    /// Boolean stored as one byte.
    BOOL,
    /// Unsigned 8-bit integer.
    U8,
    /// Signed 8-bit integer.
    I8,
    /// 8-bit float, 5 exponent bits.
    F8_E5M2,
    /// 8-bit float, 4 exponent bits.
    F8_E4M3,
    /// Signed 16-bit integer.
    I16,
    /// Unsigned 16-bit integer.
    U16,
    /// IEEE half precision.
    F16,
    /// bfloat16 (the top half of an f32).
    BF16,
    /// Signed 32-bit integer.
    I32,
    /// Unsigned 32-bit integer.
    U32,
    /// IEEE single precision.
    F32,
    /// IEEE double precision.
    F64,
    /// Signed 64-bit integer.
    I64,
    /// Unsigned 64-bit integer.
    U64,
}

impl Dtype {
    /// Bytes per element, needed to check that offsets agree with shapes.
    pub fn size_bytes(self) -> usize {
        match self {
            Dtype::BOOL | Dtype::U8 | Dtype::I8 | Dtype::F8_E5M2 | Dtype::F8_E4M3 => 1,
            Dtype::I16 | Dtype::U16 | Dtype::F16 | Dtype::BF16 => 2,
            Dtype::I32 | Dtype::U32 | Dtype::F32 => 4,
            Dtype::F64 | Dtype::I64 | Dtype::U64 => 8,
        }
    }

    /// The exact spelling used in safetensors headers, so written files match HF's.
    pub fn as_str(self) -> &'static str {
        match self {
            Dtype::BOOL => "BOOL",
            Dtype::U8 => "U8",
            Dtype::I8 => "I8",
            Dtype::F8_E5M2 => "F8_E5M2",
            Dtype::F8_E4M3 => "F8_E4M3",
            Dtype::I16 => "I16",
            Dtype::U16 => "U16",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
            Dtype::I32 => "I32",
            Dtype::U32 => "U32",
            Dtype::F32 => "F32",
            Dtype::F64 => "F64",
            Dtype::I64 => "I64",
            Dtype::U64 => "U64",
        }
    }

    /// Parses a header spelling; `None` for anything not in the safetensors spec.
    pub fn parse(s: &str) -> Option<Dtype> {
        Some(match s {
            "BOOL" => Dtype::BOOL,
            "U8" => Dtype::U8,
            "I8" => Dtype::I8,
            "F8_E5M2" => Dtype::F8_E5M2,
            "F8_E4M3" => Dtype::F8_E4M3,
            "I16" => Dtype::I16,
            "U16" => Dtype::U16,
            "F16" => Dtype::F16,
            "BF16" => Dtype::BF16,
            "I32" => Dtype::I32,
            "U32" => Dtype::U32,
            "F32" => Dtype::F32,
            "F64" => Dtype::F64,
            "I64" => Dtype::I64,
            "U64" => Dtype::U64,
            _ => return None,
        })
    }

    /// Whether tenpak can convert this dtype to f32 and write it back.
    pub fn is_float_supported(self) -> bool {
        matches!(self, Dtype::F32 | Dtype::F16 | Dtype::BF16)
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
