//! Fixed-layout ggml block structs, one per quantized type.
//!
//! Every struct mirrors the byte order of the corresponding GGUF block exactly, so a row of
//! bytes can be viewed as `[Block*]` with zerocopy and no copying. All fields are byte arrays,
//! which makes every struct `Unaligned` (GGUF tensors are only 32-byte aligned as a whole and
//! a block inside a row may start at any byte). f16 fields are stored as little-endian `[u8; 2]`.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Decodes a little-endian IEEE half stored in a block header.
#[inline(always)]
pub(crate) fn f16_le(b: [u8; 2]) -> f32 {
    half::f16::from_le_bytes(b).to_f32()
}

/// Encodes an f32 as a little-endian IEEE half (round to nearest even).
#[inline(always)]
pub(crate) fn f16_bytes(v: f32) -> [u8; 2] {
    half::f16::from_f32(v).to_le_bytes()
}

/// q4_0: d, then 32 4-bit values (elem j in the low nibble of `qs[j]`, elem j+16 in the high nibble).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct BlockQ4_0 {
    /// Block scale (f16).
    pub d: [u8; 2],
    /// Packed nibbles.
    pub qs: [u8; 16],
}

/// q4_1: d, m, then nibbles as q4_0; x = q*d + m.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct BlockQ4_1 {
    /// Block scale (f16).
    pub d: [u8; 2],
    /// Block offset (f16).
    pub m: [u8; 2],
    /// Packed nibbles.
    pub qs: [u8; 16],
}

/// q5_0: d, 32 high bits (u32 LE), nibbles as q4_0; x = (q-16)*d.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct BlockQ5_0 {
    /// Block scale (f16).
    pub d: [u8; 2],
    /// Bit j = fifth bit of element j.
    pub qh: [u8; 4],
    /// Packed low nibbles.
    pub qs: [u8; 16],
}

/// q5_1: d, m, high bits, nibbles; x = q*d + m.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct BlockQ5_1 {
    /// Block scale (f16).
    pub d: [u8; 2],
    /// Block offset (f16).
    pub m: [u8; 2],
    /// Bit j = fifth bit of element j.
    pub qh: [u8; 4],
    /// Packed low nibbles.
    pub qs: [u8; 16],
}

/// q8_0: d, then 32 signed bytes; x = q*d.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct BlockQ8_0 {
    /// Block scale (f16).
    pub d: [u8; 2],
    /// Signed 8-bit values (stored as raw bytes).
    pub qs: [u8; 32],
}

/// q2_k: 256 elements in 16 sub-blocks of 16, 2-bit values with 4-bit scale and min each.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct BlockQ2K {
    /// Low nibble = scale, high nibble = min, per sub-block.
    pub scales: [u8; 16],
    /// Packed 2-bit values.
    pub qs: [u8; 64],
    /// Super-block scale of the scales (f16).
    pub d: [u8; 2],
    /// Super-block scale of the mins (f16).
    pub dmin: [u8; 2],
}

/// q3_k: 256 elements in 16 sub-blocks of 16, 3-bit values, signed 6-bit scales.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct BlockQ3K {
    /// High bit of each value (set = no -4 offset).
    pub hmask: [u8; 32],
    /// Low 2 bits of each value.
    pub qs: [u8; 64],
    /// 16 packed 6-bit scales (offset -32).
    pub scales: [u8; 12],
    /// Super-block scale (f16).
    pub d: [u8; 2],
}

/// q4_k: 256 elements in 8 sub-blocks of 32, 4-bit values, 6-bit scale and min each.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct BlockQ4K {
    /// Super-block scale of the scales (f16).
    pub d: [u8; 2],
    /// Super-block scale of the mins (f16).
    pub dmin: [u8; 2],
    /// 8 packed (6-bit scale, 6-bit min) pairs.
    pub scales: [u8; 12],
    /// Packed nibbles, 4 chunks of 32 bytes.
    pub qs: [u8; 128],
}

/// q5_k: q4_k plus a fifth bit per element.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct BlockQ5K {
    /// Super-block scale of the scales (f16).
    pub d: [u8; 2],
    /// Super-block scale of the mins (f16).
    pub dmin: [u8; 2],
    /// 8 packed (6-bit scale, 6-bit min) pairs.
    pub scales: [u8; 12],
    /// Fifth bits: bit 2c / 2c+1 of `qh[l]` for chunk c.
    pub qh: [u8; 32],
    /// Packed low nibbles.
    pub qs: [u8; 128],
}

/// q6_k: 256 elements in 16 sub-blocks of 16, 6-bit values, int8 scales.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct BlockQ6K {
    /// Low 4 bits.
    pub ql: [u8; 128],
    /// High 2 bits.
    pub qh: [u8; 64],
    /// Signed 8-bit sub-block scales (raw bytes).
    pub scales: [u8; 16],
    /// Super-block scale (f16).
    pub d: [u8; 2],
}

/// iq4_nl: d, then 32 codebook indices packed as q4_0.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct BlockIq4Nl {
    /// Block scale (f16).
    pub d: [u8; 2],
    /// Packed codebook indices.
    pub qs: [u8; 16],
}

/// iq4_xs: 256 elements in 8 sub-blocks of 32, 6-bit sub-block scales, iq4_nl codebook.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct BlockIq4Xs {
    /// Super-block scale (f16).
    pub d: [u8; 2],
    /// High 2 bits of each sub-block scale (u16 LE, 2 bits per sub-block).
    pub scales_h: [u8; 2],
    /// Low 4 bits of each sub-block scale.
    pub scales_l: [u8; 4],
    /// Packed codebook indices, 16 bytes per sub-block.
    pub qs: [u8; 128],
}

const _: () = assert!(size_of::<BlockQ4_0>() == 18);
const _: () = assert!(size_of::<BlockQ4_1>() == 20);
const _: () = assert!(size_of::<BlockQ5_0>() == 22);
const _: () = assert!(size_of::<BlockQ5_1>() == 24);
const _: () = assert!(size_of::<BlockQ8_0>() == 34);
const _: () = assert!(size_of::<BlockQ2K>() == 84);
const _: () = assert!(size_of::<BlockQ3K>() == 110);
const _: () = assert!(size_of::<BlockQ4K>() == 144);
const _: () = assert!(size_of::<BlockQ5K>() == 176);
const _: () = assert!(size_of::<BlockQ6K>() == 210);
const _: () = assert!(size_of::<BlockIq4Nl>() == 18);
const _: () = assert!(size_of::<BlockIq4Xs>() == 136);

/// The iq4_nl / iq4_xs non-linear codebook.
pub const IQ4_NL_VALUES: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// Unpacks the (scale, min) pair of sub-block `j` (0..8) from the 12 q4_k/q5_k scale bytes.
#[inline(always)]
pub(crate) fn scale_min_k4(j: usize, b: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (b[j] & 63, b[j + 4] & 63)
    } else {
        (
            (b[j + 4] & 0xF) | ((b[j - 4] >> 6) << 4),
            (b[j + 4] >> 4) | ((b[j] >> 6) << 4),
        )
    }
}

/// Packs 8 (scale, min) pairs of 6 bits each into the q4_k/q5_k layout (inverse of [`scale_min_k4`]).
pub(crate) fn pack_scale_min_k4(sc: &[u8; 8], m: &[u8; 8]) -> [u8; 12] {
    let mut b = [0u8; 12];
    for j in 0..8 {
        let (s, mm) = (sc[j] & 63, m[j] & 63);
        if j < 4 {
            b[j] |= s;
            b[j + 4] |= mm;
        } else {
            b[j + 4] |= (s & 0xF) | ((mm & 0xF) << 4);
            b[j - 4] |= (s >> 4) << 6;
            b[j] |= (mm >> 4) << 6;
        }
    }
    b
}

/// Unpacks the 16 signed q3_k scales (already offset by -32).
#[inline(always)]
pub(crate) fn q3k_scales(b: &[u8; 12]) -> [i8; 16] {
    let mut out = [0i8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        let low4 = if i < 8 { b[i] & 0xF } else { b[i - 8] >> 4 };
        let high2 = (b[8 + i % 4] >> (2 * (i / 4))) & 3;
        *o = ((high2 << 4) | low4) as i8 - 32;
    }
    out
}

/// Packs 16 q3_k scales in -32..=31 (inverse of [`q3k_scales`]).
pub(crate) fn pack_q3k_scales(s: &[i8; 16]) -> [u8; 12] {
    let mut b = [0u8; 12];
    for (i, &v) in s.iter().enumerate() {
        let u = (v.clamp(-32, 31) + 32) as u8;
        let low4 = u & 0xF;
        let high2 = u >> 4;
        if i < 8 {
            b[i] |= low4;
        } else {
            b[i - 8] |= low4 << 4;
        }
        b[8 + i % 4] |= high2 << (2 * (i / 4));
    }
    b
}
