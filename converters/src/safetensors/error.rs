//! Typed errors of the safetensors reader and writer.

use std::path::PathBuf;

/// Everything that can go wrong reading or writing safetensors.
///
/// Every variant names the file involved and, where one is involved, the tensor, so a user
/// of a multi-shard checkpoint can find the offending bytes without a debugger.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SafetensorsError {
    /// The operating system refused an open, read, map, write or rename.
    #[error("{path}: {source}")]
    Io {
        /// File or folder the operation was on.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A folder holds neither `model.safetensors.index.json` nor `model.safetensors`.
    #[error("{path}: no model.safetensors.index.json or model.safetensors found")]
    NotFound {
        /// The folder searched.
        path: PathBuf,
    },
    /// The file is shorter than the 8-byte header-length prefix.
    #[error("{file}: file is {len} bytes, too short for the 8-byte header length")]
    Truncated {
        /// Offending file.
        file: PathBuf,
        /// Its length.
        len: u64,
    },
    /// The declared header length exceeds our cap (a hostile file could ask for gigabytes).
    #[error("{file}: header length {len} exceeds the limit of {limit} bytes")]
    HeaderTooLarge {
        /// Offending file.
        file: PathBuf,
        /// Declared header length.
        len: u64,
        /// The cap.
        limit: u64,
    },
    /// The declared header runs past the end of the file.
    #[error("{file}: header length {header_len} runs past the end of the {file_len}-byte file")]
    HeaderPastEof {
        /// Offending file.
        file: PathBuf,
        /// Declared header length.
        header_len: u64,
        /// Actual file length.
        file_len: u64,
    },
    /// The header bytes are not UTF-8.
    #[error("{file}: header is not valid UTF-8")]
    HeaderNotUtf8 {
        /// Offending file.
        file: PathBuf,
    },
    /// The header (or index) is not well-formed JSON or does not have the expected structure.
    #[error("{file}: invalid JSON: {detail}")]
    BadJson {
        /// Offending file.
        file: PathBuf,
        /// Parser message or structural problem.
        detail: String,
    },
    /// A tensor entry lacks a field, has an extra one, or a field has the wrong type.
    #[error("{file}: tensor {tensor:?}: {detail}")]
    BadTensorEntry {
        /// Offending file.
        file: PathBuf,
        /// Tensor name.
        tensor: String,
        /// What is wrong.
        detail: String,
    },
    /// A dtype spelling that is not in the safetensors spec.
    #[error("{file}: tensor {tensor:?}: unknown dtype {dtype:?}")]
    UnknownDtype {
        /// Offending file.
        file: PathBuf,
        /// Tensor name.
        tensor: String,
        /// The spelling found.
        dtype: String,
    },
    /// The product of the shape times the element size overflows.
    #[error("{file}: tensor {tensor:?}: shape {shape:?} byte size overflows")]
    ShapeOverflow {
        /// Offending file.
        file: PathBuf,
        /// Tensor name.
        tensor: String,
        /// The declared shape.
        shape: Vec<u64>,
    },
    /// `data_offsets` span a different number of bytes than dtype times shape.
    #[error(
        "{file}: tensor {tensor:?}: offsets span {actual} bytes but dtype*shape needs {expected}"
    )]
    ByteLengthMismatch {
        /// Offending file.
        file: PathBuf,
        /// Tensor name.
        tensor: String,
        /// Bytes required by dtype and shape.
        expected: u64,
        /// Bytes spanned by the offsets.
        actual: u64,
    },
    /// `data_offsets` has its end before its begin.
    #[error("{file}: tensor {tensor:?}: data_offsets [{begin}, {end}] are reversed")]
    OffsetsReversed {
        /// Offending file.
        file: PathBuf,
        /// Tensor name.
        tensor: String,
        /// Declared begin.
        begin: u64,
        /// Declared end.
        end: u64,
    },
    /// Tensors overlap or leave a gap (the data must be tiled exactly, as the spec requires).
    #[error("{file}: tensor {tensor:?}: data starts at {begin} but the previous tensor ends at {expected}")]
    OffsetsNotContiguous {
        /// Offending file.
        file: PathBuf,
        /// Tensor name.
        tensor: String,
        /// Where the data should start.
        expected: u64,
        /// Where it claims to start.
        begin: u64,
    },
    /// A tensor's data runs past the end of the file.
    #[error("{file}: tensor {tensor:?}: data ends at {end} past the {data_len}-byte data section")]
    OffsetsOutOfBounds {
        /// Offending file.
        file: PathBuf,
        /// Tensor name.
        tensor: String,
        /// Declared end (relative to the data section).
        end: u64,
        /// Length of the data section.
        data_len: u64,
    },
    /// The data section holds bytes no tensor claims (hidden payload or a truncated header).
    #[error("{file}: data section is {data_len} bytes but tensors cover only {covered}")]
    TrailingBytes {
        /// Offending file.
        file: PathBuf,
        /// Length of the data section.
        data_len: u64,
        /// Bytes covered by tensors.
        covered: u64,
    },
    /// The same tensor name appears twice (in one header or in two shards).
    #[error("tensor {tensor:?} appears in both {first} and {second}")]
    DuplicateTensor {
        /// Tensor name.
        tensor: String,
        /// First file holding it.
        first: PathBuf,
        /// Second file holding it.
        second: PathBuf,
    },
    /// The index names a shard with a path component (absolute, `..`, separators).
    #[error("{index}: shard name {shard:?} is not a plain file name")]
    IndexBadShardName {
        /// The index file.
        index: PathBuf,
        /// The shard name.
        shard: String,
    },
    /// The index names a shard that does not exist beside it.
    #[error("{index}: shard {shard:?} is missing")]
    IndexMissingShard {
        /// The index file.
        index: PathBuf,
        /// The missing shard name.
        shard: String,
    },
    /// The index maps a tensor to a shard that does not contain it.
    #[error("{index}: tensor {tensor:?} is mapped to {shard:?} which does not contain it")]
    IndexMissingTensor {
        /// The index file.
        index: PathBuf,
        /// Tensor name.
        tensor: String,
        /// Shard file name.
        shard: String,
    },
    /// A shard contains a tensor the index does not map to it.
    #[error("{index}: shard {shard:?} holds tensor {tensor:?} which the weight_map does not assign to it")]
    IndexUnlistedTensor {
        /// The index file.
        index: PathBuf,
        /// Tensor name.
        tensor: String,
        /// Shard file name.
        shard: String,
    },
    /// The tensor's dtype cannot be converted to f32 (or written).
    #[error("{file}: tensor {tensor:?}: dtype {dtype} is not supported (only F32, F16, BF16)")]
    UnsupportedDtype {
        /// File holding the tensor (the output path for the writer).
        file: PathBuf,
        /// Tensor name.
        tensor: String,
        /// Its dtype.
        dtype: super::Dtype,
    },
    /// A NaN or infinity was found and the caller did not allow it.
    #[error("{file}: tensor {tensor:?}: non-finite value {value} at element {index}")]
    NonFinite {
        /// File holding the tensor.
        file: PathBuf,
        /// Tensor name.
        tensor: String,
        /// Flat element index of the first non-finite value.
        index: usize,
        /// The value.
        value: f32,
    },
    /// The caller's output buffer has the wrong length for the request.
    #[error(
        "{file}: tensor {tensor:?}: output buffer holds {actual} values but {expected} are needed"
    )]
    OutputLength {
        /// File holding the tensor.
        file: PathBuf,
        /// Tensor name.
        tensor: String,
        /// Values the request produces.
        expected: usize,
        /// Buffer length given.
        actual: usize,
    },
    /// A row range outside the tensor's first dimension.
    #[error("{file}: tensor {tensor:?}: rows {start}..{end} outside 0..{rows}")]
    RowRange {
        /// File holding the tensor.
        file: PathBuf,
        /// Tensor name.
        tensor: String,
        /// Requested start.
        start: usize,
        /// Requested end.
        end: usize,
        /// Rows in the tensor.
        rows: usize,
    },
    /// A [`super::TensorInfo`] that does not belong to this model.
    #[error("tensor {tensor:?} does not belong to this model")]
    ForeignTensor {
        /// Tensor name carried by the info.
        tensor: String,
    },
    /// The writer would replace a file the caller declared as an input.
    #[error("{path}: refusing to overwrite an input file")]
    WouldOverwriteInput {
        /// The protected path.
        path: PathBuf,
    },
    /// The writer was misused: bad plan, unplanned or repeated tensor, wrong byte count, missing tensors.
    #[error("{file}: tensor {tensor:?}: {detail}")]
    Writer {
        /// Output folder.
        file: PathBuf,
        /// Tensor name (empty when not about one tensor).
        tensor: String,
        /// What is wrong.
        detail: String,
    },
}
