//! ggml block formats (q4_0, q4_k, ...), bit-compatible with GGUF.
//!
//! tenpak imports GGUF tensors and exports GGUF files, so it must read and write ggml's block
//! formats exactly as llama.cpp does. This module provides one row-level entry point per
//! direction ([`quantize_row`], [`dequantize_row`]) over every supported [`GgmlType`].
//!
//! * Decoding is bit-identical to ggml's reference dequantizers (checked against gguf-py). The
//!   hot types (q4_0, q8_0, q4_k, iq4_nl, iq4_xs, q5_0, q5_1) have AVX2 kernels chosen at run time in one place
//!   ([`dequantize_row`]); they produce the same bits as the scalar reference.
//! * Encoding of q8_0/q4_0/q4_1/q5_0/q5_1 without importance follows ggml's reference rule, so the
//!   bytes equal ggml's. With importance, and for the K-quants, iq4_nl and iq4_xs, a weighted
//!   least-squares scale search is used instead (K-quant output is not unique in ggml either).

mod blocks;
mod dequant;
mod quant;
#[cfg(target_arch = "x86_64")]
mod simd;

pub use blocks::{
    BlockIq4Nl, BlockIq4Xs, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K,
    BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8_0, IQ4_NL_VALUES,
};

use zerocopy::FromBytes;

/// A ggml tensor element type that tenpak can read (and write), numbered as in `ggml.h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum GgmlType {
    /// IEEE single precision, one element per "block".
    F32,
    /// IEEE half precision.
    F16,
    /// 32 elements: f16 scale + 4-bit values, symmetric.
    Q4_0,
    /// 32 elements: f16 scale and offset + 4-bit values.
    Q4_1,
    /// 32 elements: f16 scale + 5-bit values, symmetric.
    Q5_0,
    /// 32 elements: f16 scale and offset + 5-bit values.
    Q5_1,
    /// 32 elements: f16 scale + 8-bit values.
    Q8_0,
    /// 256-element super-block, 2-bit values, 4-bit scales and mins.
    Q2K,
    /// 256-element super-block, 3-bit values, 6-bit signed scales.
    Q3K,
    /// 256-element super-block, 4-bit values, 6-bit scales and mins.
    Q4K,
    /// 256-element super-block, 5-bit values, 6-bit scales and mins.
    Q5K,
    /// 256-element super-block, 6-bit values, 8-bit signed scales.
    Q6K,
    /// 32 elements: f16 scale + 4-bit indices into a non-linear codebook.
    IQ4NL,
    /// 256-element super-block of iq4_nl-coded sub-blocks with 6-bit scales.
    IQ4XS,
    /// bfloat16: the top half of an f32.
    BF16,
}

impl GgmlType {
    /// Every supported type, in ggml id order (for iteration in tools and tests).
    pub const ALL: &'static [GgmlType] = &[
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q2K,
        GgmlType::Q3K,
        GgmlType::Q4K,
        GgmlType::Q5K,
        GgmlType::Q6K,
        GgmlType::IQ4NL,
        GgmlType::IQ4XS,
        GgmlType::BF16,
    ];

    /// Maps the `type` field of a GGUF tensor info; `None` for types tenpak does not handle.
    pub fn from_id(id: u32) -> Option<Self> {
        Self::ALL.iter().copied().find(|t| t.id() == id)
    }

    /// The ggml_type number written into GGUF tensor infos.
    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q5_0 => 6,
            GgmlType::Q5_1 => 7,
            GgmlType::Q8_0 => 8,
            GgmlType::Q2K => 10,
            GgmlType::Q3K => 11,
            GgmlType::Q4K => 12,
            GgmlType::Q5K => 13,
            GgmlType::Q6K => 14,
            GgmlType::IQ4NL => 20,
            GgmlType::IQ4XS => 23,
            GgmlType::BF16 => 30,
        }
    }

    /// Lower-case ggml name, as used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "f32",
            GgmlType::F16 => "f16",
            GgmlType::Q4_0 => "q4_0",
            GgmlType::Q4_1 => "q4_1",
            GgmlType::Q5_0 => "q5_0",
            GgmlType::Q5_1 => "q5_1",
            GgmlType::Q8_0 => "q8_0",
            GgmlType::Q2K => "q2_k",
            GgmlType::Q3K => "q3_k",
            GgmlType::Q4K => "q4_k",
            GgmlType::Q5K => "q5_k",
            GgmlType::Q6K => "q6_k",
            GgmlType::IQ4NL => "iq4_nl",
            GgmlType::IQ4XS => "iq4_xs",
            GgmlType::BF16 => "bf16",
        }
    }

    /// Parses a user-supplied type name, ignoring case ("Q4_K" and "q4_k" are the same).
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|t| t.name().eq_ignore_ascii_case(s))
    }

    /// Elements per block; a row length must be a multiple of it.
    pub fn block_size(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1,
            GgmlType::Q4_0
            | GgmlType::Q4_1
            | GgmlType::Q5_0
            | GgmlType::Q5_1
            | GgmlType::Q8_0
            | GgmlType::IQ4NL => 32,
            GgmlType::Q2K
            | GgmlType::Q3K
            | GgmlType::Q4K
            | GgmlType::Q5K
            | GgmlType::Q6K
            | GgmlType::IQ4XS => 256,
        }
    }

    /// Bytes per block, for sizing tensors and validating file offsets.
    pub fn type_size(self) -> usize {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 | GgmlType::BF16 => 2,
            GgmlType::Q4_0 => size_of::<BlockQ4_0>(),
            GgmlType::Q4_1 => size_of::<BlockQ4_1>(),
            GgmlType::Q5_0 => size_of::<BlockQ5_0>(),
            GgmlType::Q5_1 => size_of::<BlockQ5_1>(),
            GgmlType::Q8_0 => size_of::<BlockQ8_0>(),
            GgmlType::Q2K => size_of::<BlockQ2K>(),
            GgmlType::Q3K => size_of::<BlockQ3K>(),
            GgmlType::Q4K => size_of::<BlockQ4K>(),
            GgmlType::Q5K => size_of::<BlockQ5K>(),
            GgmlType::Q6K => size_of::<BlockQ6K>(),
            GgmlType::IQ4NL => size_of::<BlockIq4Nl>(),
            GgmlType::IQ4XS => size_of::<BlockIq4Xs>(),
        }
    }

    /// Whether [`quantize_row`] can produce this type (all supported types can).
    pub fn can_quantize(self) -> bool {
        true
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a row could not be (de)quantized. Every variant comes from caller-supplied sizes or
/// values, never from an internal fault.
#[derive(Debug, thiserror::Error)]
pub enum GgmlError {
    /// The row length is not a whole number of blocks (ggml refuses such rows too).
    #[error("{n} elements is not a multiple of the {ty} block size {block}")]
    NotBlockMultiple {
        /// The type whose block size applies.
        ty: GgmlType,
        /// Row length in elements.
        n: usize,
        /// Elements per block.
        block: usize,
    },
    /// A buffer does not have the size the row length implies.
    #[error("{ty}: {what} has length {got}, expected {expected}")]
    LengthMismatch {
        /// The type being processed.
        ty: GgmlType,
        /// Which buffer ("dst bytes", "src bytes", "importance", ...).
        what: &'static str,
        /// Required length.
        expected: usize,
        /// Actual length.
        got: usize,
    },
    /// The row size in bytes overflows `usize`.
    #[error("{ty}: row of {n} elements overflows the address space")]
    Overflow {
        /// The type being processed.
        ty: GgmlType,
        /// Row length in elements.
        n: usize,
    },
    /// A quantized type was asked to encode NaN or infinity, which would poison a block scale.
    #[error("{ty}: non-finite input value at element {index}")]
    NonFinite {
        /// The target type.
        ty: GgmlType,
        /// Index of the first offending element.
        index: usize,
    },
    /// Importance weights must be finite and non-negative for the least-squares search.
    #[error("{ty}: invalid importance weight at element {index}")]
    BadImportance {
        /// The target type.
        ty: GgmlType,
        /// Index of the first offending weight.
        index: usize,
    },
    /// A block scale would not fit in f16 (inputs beyond ~65504·127 in magnitude).
    #[error("{ty}: block scale overflows f16 (input magnitude too large)")]
    ScaleOverflow {
        /// The target type.
        ty: GgmlType,
    },
    /// The operation is not available for this type.
    #[error("{ty}: {op} is not supported")]
    Unsupported {
        /// The type.
        ty: GgmlType,
        /// The operation.
        op: &'static str,
    },
}

/// Bytes taken by a row of `n` elements; `None` if `n` is not a whole number of blocks or the
/// size overflows. Lets readers validate tensor sizes before touching data.
pub fn row_bytes(ty: GgmlType, n: usize) -> Option<usize> {
    if !n.is_multiple_of(ty.block_size()) {
        return None;
    }
    (n / ty.block_size()).checked_mul(ty.type_size())
}

fn checked_row_bytes(ty: GgmlType, n: usize) -> Result<usize, GgmlError> {
    if !n.is_multiple_of(ty.block_size()) {
        return Err(GgmlError::NotBlockMultiple {
            ty,
            n,
            block: ty.block_size(),
        });
    }
    row_bytes(ty, n).ok_or(GgmlError::Overflow { ty, n })
}

/// Casts a byte slice to a block slice. Callers have already checked the length is
/// `n_blocks * size_of::<B>()`, so a failure here is a length mismatch report, not a panic.
fn blocks_ref<B: FromBytes + zerocopy::KnownLayout + zerocopy::Immutable>(
    ty: GgmlType,
    b: &[u8],
) -> Result<&[B], GgmlError> {
    <[B]>::ref_from_bytes(b).map_err(|_| GgmlError::LengthMismatch {
        ty,
        what: "src bytes",
        expected: b.len() / size_of::<B>() * size_of::<B>(),
        got: b.len(),
    })
}

fn blocks_mut<B: FromBytes + zerocopy::IntoBytes + zerocopy::KnownLayout>(
    ty: GgmlType,
    b: &mut [u8],
) -> Result<&mut [B], GgmlError> {
    let len = b.len();
    <[B]>::mut_from_bytes(b).map_err(|_| GgmlError::LengthMismatch {
        ty,
        what: "dst bytes",
        expected: len / size_of::<B>() * size_of::<B>(),
        got: len,
    })
}

/// Quantizes one row of `src.len()` elements into `dst` (exactly `row_bytes(ty, n)` bytes).
///
/// `importance` optionally weights each element's squared error (an imatrix row, same length as
/// `src`); it steers the least-squares scale search. Without it the legacy types use ggml's
/// reference rule (byte-identical to ggml and gguf-py) and the searched types weight all
/// elements equally. Output is deterministic.
pub fn quantize_row(
    ty: GgmlType,
    src: &[f32],
    importance: Option<&[f32]>,
    dst: &mut [u8],
) -> Result<(), GgmlError> {
    let n = src.len();
    let nb = checked_row_bytes(ty, n)?;
    if dst.len() != nb {
        return Err(GgmlError::LengthMismatch {
            ty,
            what: "dst bytes",
            expected: nb,
            got: dst.len(),
        });
    }
    if let Some(w) = importance {
        if w.len() != n {
            return Err(GgmlError::LengthMismatch {
                ty,
                what: "importance",
                expected: n,
                got: w.len(),
            });
        }
        if let Some(index) = w.iter().position(|v| !(v.is_finite() && *v >= 0.0)) {
            return Err(GgmlError::BadImportance { ty, index });
        }
    }
    match ty {
        GgmlType::F32 => {
            for (o, v) in dst.chunks_exact_mut(4).zip(src) {
                o.copy_from_slice(&v.to_le_bytes());
            }
            return Ok(());
        }
        GgmlType::F16 => {
            for (o, v) in dst.chunks_exact_mut(2).zip(src) {
                o.copy_from_slice(&half::f16::from_f32(*v).to_le_bytes());
            }
            return Ok(());
        }
        GgmlType::BF16 => {
            for (o, v) in dst.chunks_exact_mut(2).zip(src) {
                o.copy_from_slice(&half::bf16::from_f32(*v).to_le_bytes());
            }
            return Ok(());
        }
        _ => {}
    }
    if let Some(index) = src.iter().position(|v| !v.is_finite()) {
        return Err(GgmlError::NonFinite { ty, index });
    }
    // Weights for the searched types; uniform when no importance is given.
    let uniform;
    let w_all: &[f32] = match importance {
        Some(w) => w,
        None => {
            uniform = vec![1.0f32; if needs_weights(ty) { n } else { 0 }];
            &uniform
        }
    };
    let w = importance;
    match ty {
        GgmlType::Q4_0 => quant::q4_0(src, w, blocks_mut(ty, dst)?),
        GgmlType::Q4_1 => quant::q4_1(src, w, blocks_mut(ty, dst)?),
        GgmlType::Q5_0 => quant::q5_0(src, w, blocks_mut(ty, dst)?),
        GgmlType::Q5_1 => quant::q5_1(src, w, blocks_mut(ty, dst)?),
        GgmlType::Q8_0 => quant::q8_0(src, w, blocks_mut(ty, dst)?),
        GgmlType::Q2K => quant::q2_k(src, w_all, true, blocks_mut(ty, dst)?),
        GgmlType::Q3K => quant::q3_k(src, w_all, true, blocks_mut(ty, dst)?),
        GgmlType::Q4K => quant::q4_k(src, w_all, true, blocks_mut(ty, dst)?),
        GgmlType::Q5K => quant::q5_k(src, w_all, true, blocks_mut(ty, dst)?),
        GgmlType::Q6K => quant::q6_k(src, w_all, true, blocks_mut(ty, dst)?),
        GgmlType::IQ4NL => quant::iq4_nl(src, w_all, true, blocks_mut(ty, dst)?),
        GgmlType::IQ4XS => quant::iq4_xs(src, w_all, true, blocks_mut(ty, dst)?),
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => {}
    }
    check_scales(ty, dst)
}

fn needs_weights(ty: GgmlType) -> bool {
    ty.block_size() == 256 || ty == GgmlType::IQ4NL
}

/// Rejects rows whose stored f16 scales overflowed (llama.cpp refuses such rows).
fn check_scales(ty: GgmlType, dst: &[u8]) -> Result<(), GgmlError> {
    let ts = ty.type_size();
    // Offsets of the f16 fields inside each block.
    let offs: &[usize] = match ty {
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 | GgmlType::IQ4NL | GgmlType::IQ4XS => {
            &[0]
        }
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4K | GgmlType::Q5K => &[0, 2],
        GgmlType::Q2K => &[80, 82],
        GgmlType::Q3K => &[108],
        GgmlType::Q6K => &[208],
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => &[],
    };
    for blk in dst.chunks_exact(ts) {
        for &o in offs {
            let v = half::f16::from_le_bytes([blk[o], blk[o + 1]]);
            if !v.is_finite() {
                return Err(GgmlError::ScaleOverflow { ty });
            }
        }
    }
    Ok(())
}

/// Dequantizes one row: `src` holds exactly `row_bytes(ty, dst.len())` bytes.
///
/// This is the single place that selects SIMD kernels at run time; any byte pattern is
/// accepted (NaN/Inf scales simply decode to NaN/Inf, as in ggml).
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), GgmlError> {
    check_dequant_sizes(ty, src, dst)?;
    #[cfg(target_arch = "x86_64")]
    if simd::available() {
        // SAFETY: AVX2 presence was just checked at run time; the kernels only touch memory
        // through the block and output slices, whose lengths match (checked above).
        let handled = unsafe {
            match ty {
                GgmlType::Q4_0 => {
                    simd::q4_0(blocks_ref(ty, src)?, dst);
                    true
                }
                GgmlType::Q8_0 => {
                    simd::q8_0(blocks_ref(ty, src)?, dst);
                    true
                }
                GgmlType::Q4K => {
                    simd::q4_k(blocks_ref(ty, src)?, dst);
                    true
                }
                GgmlType::IQ4NL => {
                    simd::iq4_nl(blocks_ref(ty, src)?, dst);
                    true
                }
                GgmlType::IQ4XS => {
                    simd::iq4_xs(blocks_ref(ty, src)?, dst);
                    true
                }
                GgmlType::Q5_0 => {
                    simd::q5_0(blocks_ref(ty, src)?, dst);
                    true
                }
                GgmlType::Q5_1 => {
                    simd::q5_1(blocks_ref(ty, src)?, dst);
                    true
                }
                _ => false,
            }
        };
        if handled {
            return Ok(());
        }
    }
    dequantize_scalar(ty, src, dst)
}

fn check_dequant_sizes(ty: GgmlType, src: &[u8], dst: &[f32]) -> Result<(), GgmlError> {
    let nb = checked_row_bytes(ty, dst.len())?;
    if src.len() != nb {
        return Err(GgmlError::LengthMismatch {
            ty,
            what: "src bytes",
            expected: nb,
            got: src.len(),
        });
    }
    Ok(())
}

/// The scalar reference decoder (also used for types without a SIMD kernel).
pub(crate) fn dequantize_scalar(
    ty: GgmlType,
    src: &[u8],
    dst: &mut [f32],
) -> Result<(), GgmlError> {
    check_dequant_sizes(ty, src, dst)?;
    match ty {
        GgmlType::F32 => {
            if cfg!(target_endian = "little") {
                // GGUF f32 is little-endian, so on LE hosts this is a plain copy.
                zerocopy::IntoBytes::as_mut_bytes(dst).copy_from_slice(src);
            } else {
                for (o, b) in dst.iter_mut().zip(src.chunks_exact(4)) {
                    *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
        }
        GgmlType::F16 => {
            // Chunked so half's vectorised (F16C when available) slice conversion can run;
            // it is exact, so the result equals the per-element conversion.
            use half::slice::HalfFloatSliceExt;
            let mut buf = [half::f16::ZERO; 256];
            for (o, b) in dst.chunks_mut(256).zip(src.chunks(512)) {
                let h = &mut buf[..o.len()];
                for (hv, c) in h.iter_mut().zip(b.chunks_exact(2)) {
                    *hv = half::f16::from_le_bytes([c[0], c[1]]);
                }
                h.convert_to_f32_slice(o);
            }
        }
        GgmlType::BF16 => {
            for (o, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *o = f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16);
            }
        }
        GgmlType::Q4_0 => dequant::q4_0(blocks_ref(ty, src)?, dst),
        GgmlType::Q4_1 => dequant::q4_1(blocks_ref(ty, src)?, dst),
        GgmlType::Q5_0 => dequant::q5_0(blocks_ref(ty, src)?, dst),
        GgmlType::Q5_1 => dequant::q5_1(blocks_ref(ty, src)?, dst),
        GgmlType::Q8_0 => dequant::q8_0(blocks_ref(ty, src)?, dst),
        GgmlType::Q2K => dequant::q2_k(blocks_ref(ty, src)?, dst),
        GgmlType::Q3K => dequant::q3_k(blocks_ref(ty, src)?, dst),
        GgmlType::Q4K => dequant::q4_k(blocks_ref(ty, src)?, dst),
        GgmlType::Q5K => dequant::q5_k(blocks_ref(ty, src)?, dst),
        GgmlType::Q6K => dequant::q6_k(blocks_ref(ty, src)?, dst),
        GgmlType::IQ4NL => dequant::iq4_nl(blocks_ref(ty, src)?, dst),
        GgmlType::IQ4XS => dequant::iq4_xs(blocks_ref(ty, src)?, dst),
    }
    Ok(())
}

/// Plain min/max (no search) quantization for the searched types: the baseline the quality
/// tests compare the least-squares search against.
#[cfg(test)]
pub(crate) fn quantize_row_plain(
    ty: GgmlType,
    src: &[f32],
    dst: &mut [u8],
) -> Result<(), GgmlError> {
    let w = vec![1.0f32; src.len()];
    match ty {
        GgmlType::Q2K => quant::q2_k(src, &w, false, blocks_mut(ty, dst)?),
        GgmlType::Q3K => quant::q3_k(src, &w, false, blocks_mut(ty, dst)?),
        GgmlType::Q4K => quant::q4_k(src, &w, false, blocks_mut(ty, dst)?),
        GgmlType::Q5K => quant::q5_k(src, &w, false, blocks_mut(ty, dst)?),
        GgmlType::Q6K => quant::q6_k(src, &w, false, blocks_mut(ty, dst)?),
        GgmlType::IQ4NL => quant::iq4_nl(src, &w, false, blocks_mut(ty, dst)?),
        GgmlType::IQ4XS => quant::iq4_xs(src, &w, false, blocks_mut(ty, dst)?),
        _ => quantize_row(ty, src, None, dst)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests;
