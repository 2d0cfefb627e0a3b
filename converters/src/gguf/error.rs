//! The one error type of the GGUF module.

use std::path::PathBuf;

/// Everything that can go wrong reading, writing or converting GGUF.
///
/// GGUF files come from strangers, so every malformed input maps to its own variant
/// instead of a panic; callers can match on the class of damage (and tests can prove
/// that each hostile pattern is caught by the intended check).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GgufError {
    /// Opening, reading, writing, syncing or renaming a file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file being accessed.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The input ends before a field that the header says is there.
    #[error("unexpected end of input reading {what} at byte {offset}")]
    UnexpectedEof {
        /// The field being read.
        what: &'static str,
        /// Absolute byte offset of the field.
        offset: u64,
    },
    /// The first four bytes are not `GGUF`.
    #[error("bad magic {0:02x?}, expected \"GGUF\"")]
    BadMagic([u8; 4]),
    /// Only versions 2 and 3 (little-endian) are understood.
    #[error("unsupported GGUF version {0} (only 2 and 3)")]
    UnsupportedVersion(u32),
    /// The tensor count exceeds the stated limit.
    #[error("tensor count {count} exceeds the limit {max}")]
    TooManyTensors {
        /// Claimed count.
        count: u64,
        /// Limit in force.
        max: u64,
    },
    /// The key/value count exceeds the stated limit.
    #[error("metadata key count {count} exceeds the limit {max}")]
    TooManyKeys {
        /// Claimed count.
        count: u64,
        /// Limit in force.
        max: u64,
    },
    /// A string is longer than the limit (or than the remaining input).
    #[error("string of {len} bytes at byte {offset} exceeds the limit {max}")]
    StringTooLong {
        /// Claimed length.
        len: u64,
        /// Limit in force (the smaller of the configured limit and the bytes left).
        max: u64,
        /// Absolute offset of the length field.
        offset: u64,
    },
    /// A string is not valid UTF-8.
    #[error("string at byte {offset} is not valid UTF-8")]
    InvalidUtf8 {
        /// Absolute offset of the string bytes.
        offset: u64,
    },
    /// A metadata key is empty or longer than 65535 bytes.
    #[error("metadata key at byte {offset} has invalid length {len}")]
    BadKeyLength {
        /// Length in bytes.
        len: u64,
        /// Absolute offset of the key.
        offset: u64,
    },
    /// The same key appears twice.
    #[error("duplicate metadata key {0:?}")]
    DuplicateKey(String),
    /// A value type id is not one of the 13 GGUF value types.
    #[error("key {key:?}: unknown value type {type_id}")]
    UnknownValueType {
        /// Key owning the value.
        key: String,
        /// The unknown id.
        type_id: u32,
    },
    /// An array of arrays (llama.cpp rejects these; so do we).
    #[error("key {0:?}: nested arrays are not allowed")]
    NestedArray(String),
    /// An array has more elements than the limit or than the remaining input can hold.
    #[error("key {key:?}: array of {len} elements exceeds the limit {max}")]
    ArrayTooLong {
        /// Key owning the array.
        key: String,
        /// Claimed element count.
        len: u64,
        /// Limit in force (the smaller of the configured limit and what the bytes left can hold).
        max: u64,
    },
    /// A bool byte is neither 0 nor 1.
    #[error("key {key:?}: bool byte {value} is neither 0 nor 1")]
    BadBool {
        /// Key owning the value.
        key: String,
        /// The byte found.
        value: u8,
    },
    /// The header (KV pairs plus tensor infos) is larger than the limit.
    #[error("metadata section of {bytes} bytes exceeds the limit {max}")]
    MetadataTooLarge {
        /// Bytes consumed so far.
        bytes: u64,
        /// Limit in force.
        max: u64,
    },
    /// `general.alignment` is present but not a u32.
    #[error("general.alignment must be a UINT32 value")]
    AlignmentWrongType,
    /// `general.alignment` is zero or not a power of two.
    #[error("general.alignment {0} is not a non-zero power of two")]
    BadAlignment(u32),
    /// A tensor name is empty or has 64 bytes or more (ggml keeps 63 + NUL).
    #[error("tensor name {name:?} has invalid length {len} (must be 1..=63 bytes)")]
    BadTensorName {
        /// The name.
        name: String,
        /// Its length in bytes.
        len: usize,
    },
    /// Two tensors share a name.
    #[error("duplicate tensor name {0:?}")]
    DuplicateTensorName(String),
    /// More than 4 dimensions.
    #[error("tensor {name:?} has {n_dims} dimensions (max 4)")]
    TooManyDims {
        /// Tensor name.
        name: String,
        /// Claimed dimension count.
        n_dims: u32,
    },
    /// A dimension does not fit in i64 (ggml stores ne as int64).
    #[error("tensor {name:?} dimension {dim} is larger than i64::MAX")]
    DimTooLarge {
        /// Tensor name.
        name: String,
        /// The dimension.
        dim: u64,
    },
    /// The ggml type id has no known block layout (unknown, removed or beyond the table).
    #[error("tensor {name:?} has unknown or removed ggml type {type_id}")]
    UnknownGgmlType {
        /// Tensor name.
        name: String,
        /// The type id.
        type_id: u32,
    },
    /// `ne[0]` is not a multiple of the type's block size.
    #[error("tensor {name:?}: row length {ne0} is not a multiple of block size {block}")]
    RowNotBlockMultiple {
        /// Tensor name.
        name: String,
        /// `ne[0]`.
        ne0: u64,
        /// Block size of the type.
        block: u64,
    },
    /// The product of the dimensions overflows i64.
    #[error("tensor {0:?}: element count overflows")]
    ElementCountOverflow(String),
    /// The byte size (elements / block × type size) overflows.
    #[error("tensor {0:?}: byte size overflows")]
    ByteSizeOverflow(String),
    /// A tensor offset is not a multiple of the alignment.
    #[error("tensor {name:?}: offset {offset} is not a multiple of alignment {alignment}")]
    MisalignedOffset {
        /// Tensor name.
        name: String,
        /// Offset relative to the data section.
        offset: u64,
        /// Alignment in force.
        alignment: u32,
    },
    /// data start + offset + size overflows u64.
    #[error("tensor {0:?}: data offset plus size overflows")]
    OffsetOverflow(String),
    /// A tensor's bytes reach past the end of the file.
    #[error(
        "tensor {name:?}: bytes {start}..{end} lie past the end of the file ({file_len} bytes)"
    )]
    TensorOutOfBounds {
        /// Tensor name.
        name: String,
        /// Absolute start.
        start: u64,
        /// Absolute end (exclusive).
        end: u64,
        /// File length.
        file_len: u64,
    },
    /// Two tensors' byte ranges overlap.
    #[error("tensors {a:?} and {b:?} overlap")]
    TensorOverlap {
        /// First tensor (lower offset).
        a: String,
        /// Second tensor.
        b: String,
    },
    /// The writer was given a declared byte size that does not match dims and type.
    #[error("tensor {name:?}: declared {declared} bytes but dims and type give {expected}")]
    SizeMismatch {
        /// Tensor name.
        name: String,
        /// Size the caller declared or supplied.
        declared: u64,
        /// Size computed from dims and type.
        expected: u64,
    },
    /// The writer was fed tensors out of declared order, too many, or an unexpected name.
    #[error("expected tensor {expected:?} next, got {got:?}")]
    TensorOrder {
        /// The tensor that should come next (empty when all were written).
        expected: String,
        /// The tensor supplied.
        got: String,
    },
    /// `finish` was called before every declared tensor was written.
    #[error("{missing} declared tensors were never written")]
    MissingTensors {
        /// How many are missing.
        missing: usize,
    },
    /// The output path is one of the protected input paths.
    #[error("refusing to overwrite protected input {0}")]
    ProtectedPath(PathBuf),
    /// A slice passed to the Q/K row permutation does not describe whole rows/heads.
    #[error("bad Q/K permutation shape: {0}")]
    BadPermuteShape(String),
    /// A config.json / tokenizer.json field is missing or of the wrong type or range.
    #[error("field {field:?}: {reason}")]
    BadField {
        /// JSON key or GGUF key involved.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// The model or tokenizer kind is not one this converter handles.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

/// Shorthand used throughout the module.
pub type Result<T> = std::result::Result<T, GgufError>;
