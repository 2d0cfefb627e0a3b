//! The library's one error type.
//!
//! Every failure a hostile or broken file can cause has its own variant, so a caller (and a
//! test) can tell them apart without matching on message text. Offsets and lengths are
//! reported as the file states them, which is what a user needs to find the fault.

use std::path::PathBuf;

/// Everything that can go wrong in tenpak.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system error on a named path.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is shorter than a header plus a trailer, or than a structure it declares.
    #[error("truncated file: {what} needs {needed} bytes but the file has {len}")]
    Truncated {
        /// The structure that does not fit.
        what: &'static str,
        /// Bytes it needs.
        needed: u64,
        /// Bytes present.
        len: u64,
    },
    /// The first eight bytes are not the `.tpk` magic.
    #[error("not a .tpk file (bad magic {found:02x?})")]
    BadMagic {
        /// The bytes found.
        found: [u8; 8],
    },
    /// The magic is recognisable but its CR/LF bytes were rewritten by a text-mode transfer.
    #[error("the file was mangled by a text-mode transfer (CR/LF bytes rewritten); copy it in binary mode")]
    TextModeMangled,
    /// The major version is not one this reader implements.
    #[error("unsupported .tpk version {major}.{minor} (this reader implements major version {supported})")]
    UnsupportedVersion {
        /// The file's major version.
        major: u16,
        /// The file's minor version.
        minor: u16,
        /// The major version this reader implements.
        supported: u16,
    },
    /// A required-feature flag that this reader does not know is set.
    #[error("the file requires features this reader lacks (flags {flags:#010x})")]
    UnknownRequiredFlags {
        /// The unknown required flag bits.
        flags: u32,
    },
    /// A stored CRC32 does not match the bytes it covers (header, trailer or directory).
    #[error("{what} checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    ChecksumMismatch {
        /// Which structure: "header", "trailer" or "directory".
        what: &'static str,
        /// CRC stored in the file.
        stored: u32,
        /// CRC of the bytes present.
        computed: u32,
    },
    /// The trailer's end magic is wrong: the file was cut or appended to.
    #[error(
        "bad trailer: the file does not end with the .tpk end marker (truncated or appended to?)"
    )]
    BadTrailer,
    /// The directory's declared position does not lie inside the file just before the trailer.
    #[error("directory at offset {offset} with length {len} does not end at the trailer (file is {file_len} bytes)")]
    DirectoryOutOfBounds {
        /// Declared directory offset.
        offset: u64,
        /// Declared directory length.
        len: u64,
        /// File length.
        file_len: u64,
    },
    /// A directory table or string lies outside the directory, or a record stride is too small.
    #[error("malformed directory: {0}")]
    DirectoryLayout(String),
    /// A count or size exceeds a limit the spec sets.
    #[error("{what} is {value}, over the limit of {limit}")]
    LimitExceeded {
        /// What was counted.
        what: &'static str,
        /// The value found.
        value: u64,
        /// The limit.
        limit: u64,
    },
    /// A section runs past the end of the data area (into the directory or past EOF).
    #[error("section {section} (offset {offset}, length {len}) runs past the data area, which ends at {data_end}")]
    SectionOutOfBounds {
        /// Section index.
        section: u32,
        /// Declared offset.
        offset: u64,
        /// Declared length.
        len: u64,
        /// First byte after the data area.
        data_end: u64,
    },
    /// A section starts before the previous one ends.
    #[error("section {section} at offset {offset} overlaps section {previous}, which ends at {previous_end}")]
    SectionOverlap {
        /// Section index.
        section: u32,
        /// Its offset.
        offset: u64,
        /// Index of the section it overlaps.
        previous: u32,
        /// Where that section ends.
        previous_end: u64,
    },
    /// A section does not start on a 64-byte boundary.
    #[error("section {section} starts at offset {offset}, not a multiple of 64")]
    SectionMisaligned {
        /// Section index.
        section: u32,
        /// Its offset.
        offset: u64,
    },
    /// A section's length is not a whole number of its elements.
    #[error("section {section} has length {len}, not a multiple of its element size {elem_size}")]
    SectionElemMismatch {
        /// Section index.
        section: u32,
        /// Declared length.
        len: u64,
        /// Element size in bytes.
        elem_size: u64,
    },
    /// A kind, element type, dtype or codec code this reader does not know, in a file of its own minor version or older.
    #[error("unknown {what} code {value}")]
    UnknownCode {
        /// Which code.
        what: &'static str,
        /// The value found.
        value: u32,
    },
    /// The product of a tensor's dimensions overflows 64 bits or the element limit.
    #[error("tensor {tensor:?}: shape {shape:?} has too many elements")]
    ShapeOverflow {
        /// Tensor name.
        tensor: String,
        /// Its shape.
        shape: Vec<u64>,
    },
    /// Two tensors have the same name.
    #[error("duplicate tensor name {0:?}")]
    DuplicateName(String),
    /// A tensor name is not valid UTF-8.
    #[error("tensor {index}: name is not valid UTF-8")]
    NameNotUtf8 {
        /// Tensor index in the directory.
        index: u32,
    },
    /// A tensor refers to a section, dimension, parameter or name byte that does not exist.
    #[error("tensor {index}: {what} out of range")]
    TensorRefOutOfBounds {
        /// Tensor index in the directory.
        index: u32,
        /// What it refers to.
        what: &'static str,
    },
    /// A tensor's codec parameters are malformed.
    #[error("tensor {tensor:?}: bad codec parameters: {reason}")]
    BadCodecParams {
        /// Tensor name.
        tensor: String,
        /// What is wrong.
        reason: String,
    },
    /// A section's kind, type or length differs from what the tensor's codec parameters imply.
    #[error("tensor {tensor:?}: section {section} is {actual}, but its codec needs {expected}")]
    SectionMismatch {
        /// Tensor name.
        tensor: String,
        /// Section index.
        section: u32,
        /// What the codec needs.
        expected: String,
        /// What the file has.
        actual: String,
    },
    /// A section's bytes do not match its CRC32.
    #[error("section {section} ({owner}) is corrupt: CRC32 stored {stored:#010x}, computed {computed:#010x}")]
    SectionChecksum {
        /// Section index.
        section: u32,
        /// Who uses it: a tensor name, or "metadata".
        owner: String,
        /// CRC stored in the directory.
        stored: u32,
        /// CRC of the bytes present.
        computed: u32,
    },
    /// The metadata section is not valid UTF-8 JSON.
    #[error("metadata is not valid JSON: {0}")]
    Metadata(String),
    /// A section was asked for as a type it does not hold.
    #[error("section {section} holds {actual}, not {requested}")]
    SectionType {
        /// Section index.
        section: u32,
        /// The type it holds.
        actual: String,
        /// The type asked for.
        requested: &'static str,
    },
    /// A buffer the input asks for could not be allocated (a small file may declare a huge
    /// tensor, for example a low-rank stage's `rows x cols`).
    #[error("out of memory: {what} needs {bytes} bytes")]
    OutOfMemory {
        /// What the buffer was for.
        what: String,
        /// Bytes requested.
        bytes: u64,
    },
    /// The writer was asked to write over one of its own inputs.
    #[error("refusing to overwrite the input file {0}")]
    OverwritesInput(PathBuf),
    /// A caller gave the writer or a codec an invalid argument.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A codec specification string could not be parsed.
    #[error("bad codec spec {spec:?}: {reason}")]
    CodecSpec {
        /// The spec as given.
        spec: String,
        /// What is wrong.
        reason: String,
    },
    /// Source weights contain NaN or infinity.
    #[error("tensor {tensor:?} contains NaN or infinite values (use --allow-nonfinite to convert anyway)")]
    NonFinite {
        /// Tensor name.
        tensor: String,
    },
    /// A codec stage refused its input (non-finite values, bad parameters, an index past the codebook).
    #[error(transparent)]
    Stage(#[from] crate::codec::StageError),
    /// A safetensors file could not be read or written.
    #[error(transparent)]
    Safetensors(#[from] tenpak_converters::SafetensorsError),
    /// A GGUF file could not be read or written.
    #[error(transparent)]
    Gguf(#[from] tenpak_converters::gguf::GgufError),
}

/// Shorthand for results with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
