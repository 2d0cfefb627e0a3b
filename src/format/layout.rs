//! The on-disk records of `.tpk` v1, exactly as `spec/tpk.md` defines them.
//!
//! Every record is a fixed-size little-endian struct read with zerocopy, so the reader
//! needs no parsing loop and the layout can be checked at compile time.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// The magic number. Like PNG's, it holds a high-bit byte (caught by 7-bit channels), a
/// CR LF pair and a lone LF (caught by text-mode newline conversion) and a ^Z (stops
/// `type` on DOS-family systems).
pub const MAGIC: [u8; 8] = *b"\x89TPK\r\n\x1a\n";
/// The marker in the last eight bytes of every file.
pub const END_MAGIC: [u8; 8] = *b"TPK-END\n";
/// Major version this code reads and writes.
pub const VERSION_MAJOR: u16 = 1;
/// Minor version this code writes; it reads any minor of [`VERSION_MAJOR`].
pub const VERSION_MINOR: u16 = 0;
/// Every section starts at a multiple of this, for typed views and SIMD loads.
pub const ALIGNMENT: u64 = 64;
/// Bytes of the fixed header.
pub const HEADER_LEN: u64 = 64;
/// Bytes of the fixed trailer.
pub const TRAILER_LEN: u64 = 64;
/// Bytes of the directory header.
pub const DIR_HEADER_LEN: u64 = 64;
/// `metadata_section` value meaning "no metadata".
pub const NO_SECTION: u32 = u32::MAX;
/// Flag bits 16..31 are "required": a reader that does not know one must refuse the file.
pub const REQUIRED_FLAGS_MASK: u32 = 0xFFFF_0000;

/// The fixed 64-byte header at offset 0.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct Header {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// Major version.
    pub major: U16,
    /// Minor version.
    pub minor: U16,
    /// Feature flags; none are defined in 1.0.
    pub flags: U32,
    /// Header length, 64 in 1.0.
    pub header_len: U32,
    /// Zero.
    pub reserved: [u8; 40],
    /// CRC32 of bytes 0..60.
    pub crc: U32,
}

/// The fixed 64-byte trailer in the last 64 bytes of the file.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct Trailer {
    /// Offset of the directory.
    pub dir_offset: U64,
    /// Length of the directory.
    pub dir_len: U64,
    /// CRC32 of the directory bytes.
    pub dir_crc: U32,
    /// Major version, repeated so a reader starting from the end can check it.
    pub major: U16,
    /// Minor version, repeated.
    pub minor: U16,
    /// Zero.
    pub reserved: [u8; 28],
    /// CRC32 of trailer bytes 0..52.
    pub crc: U32,
    /// [`END_MAGIC`].
    pub end_magic: [u8; 8],
}

/// The 64-byte header at the start of the directory. Offsets are relative to the directory.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct DirHeader {
    /// Number of tensor records.
    pub tensor_count: U32,
    /// Bytes per tensor record (>= 64; larger in later minor versions).
    pub tensor_stride: U32,
    /// Number of section records.
    pub section_count: U32,
    /// Bytes per section record (>= 32).
    pub section_stride: U32,
    /// Offset of the tensor records.
    pub tensors_off: U32,
    /// Offset of the section records.
    pub sections_off: U32,
    /// Offset of the section reference table (u32 section indices).
    pub refs_off: U32,
    /// Number of section references.
    pub refs_count: U32,
    /// Offset of the dimension table (u64).
    pub dims_off: U32,
    /// Number of dimensions.
    pub dims_count: U32,
    /// Offset of the codec parameter blob.
    pub params_off: U32,
    /// Length of the codec parameter blob.
    pub params_len: U32,
    /// Offset of the string table.
    pub strings_off: U32,
    /// Length of the string table.
    pub strings_len: U32,
    /// Index of the metadata section, or [`NO_SECTION`].
    pub metadata_section: U32,
    /// Zero.
    pub reserved: U32,
}

/// One tensor's directory record (64 bytes in 1.0).
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct TensorRecord {
    /// Name offset in the string table.
    pub name_off: U32,
    /// Name length in bytes.
    pub name_len: U32,
    /// Index of the first dimension in the dimension table.
    pub dims_first: U32,
    /// Number of dimensions.
    pub rank: U32,
    /// Index of the first section reference.
    pub refs_first: U32,
    /// Number of section references.
    pub refs_count: U32,
    /// Offset of the codec parameters in the parameter blob.
    pub params_off: U32,
    /// Length of the codec parameters.
    pub params_len: U32,
    /// Codec id.
    pub codec: U16,
    /// Source dtype code.
    pub source_dtype: u8,
    /// Zero.
    pub reserved0: u8,
    /// Zero.
    pub reserved: [u8; 28],
}

/// One section's directory record (32 bytes in 1.0).
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct SectionRecord {
    /// Absolute file offset, a multiple of [`ALIGNMENT`].
    pub offset: U64,
    /// Length in bytes.
    pub length: U64,
    /// CRC32 of the section's bytes.
    pub crc: U32,
    /// Section kind code.
    pub kind: u8,
    /// Element type code.
    pub elem: u8,
    /// Zero.
    pub reserved: [u8; 10],
}

const _: () = assert!(size_of::<Header>() == HEADER_LEN as usize);
const _: () = assert!(size_of::<Trailer>() == TRAILER_LEN as usize);
const _: () = assert!(size_of::<DirHeader>() == DIR_HEADER_LEN as usize);
const _: () = assert!(size_of::<TensorRecord>() == 64);
const _: () = assert!(size_of::<SectionRecord>() == 32);

/// Pads `n` up to the next multiple of [`ALIGNMENT`], or `None` on overflow.
pub fn align_up(n: u64) -> Option<u64> {
    n.checked_add(ALIGNMENT - 1).map(|v| v & !(ALIGNMENT - 1))
}
