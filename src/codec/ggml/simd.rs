//! AVX2 dequantizers for the hot types (q4_0, q8_0, q4_k, iq4_nl, iq4_xs, q5_0, q5_1).
//!
//! Each kernel performs exactly the scalar reference's f32 operations (an exact int→f32
//! conversion, then the same multiplies and subtractions, no FMA), so the output is bit-identical
//! to [`super::dequant`]; `tests::simd_matches_scalar` checks this on random bytes.

#![cfg(target_arch = "x86_64")]

use super::blocks::*;
use std::arch::x86_64::*;

/// Whether the AVX2 kernels may run on this CPU (cached by the std macro).
#[inline]
pub(crate) fn available() -> bool {
    is_x86_feature_detected!("avx2")
}

/// Converts 8 signed bytes (low 64 bits of `v`) to 8 f32 lanes.
#[inline]
#[target_feature(enable = "avx2")]
fn i8x8_to_ps(v: __m128i) -> __m256 {
    _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v))
}

/// Multiplies 16 signed bytes by `d` and stores them to `out[0..16]`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn store16(v: __m128i, d: __m256, out: &mut [f32]) {
    assert!(out.len() >= 16, "callers pass 16-element slices");
    // SAFETY: AVX2 is enabled by the callers; `out` has at least 16 elements (asserted), and
    // the stores are unaligned.
    unsafe {
        let a = _mm256_mul_ps(i8x8_to_ps(v), d);
        let b = _mm256_mul_ps(i8x8_to_ps(_mm_srli_si128(v, 8)), d);
        _mm256_storeu_ps(out.as_mut_ptr(), a);
        _mm256_storeu_ps(out.as_mut_ptr().add(8), b);
    }
}

/// Splits 16 packed bytes into (low nibbles, high nibbles) as 16 bytes each.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn nibbles(qs: &[u8; 16]) -> (__m128i, __m128i) {
    // SAFETY: `qs` is exactly 16 readable bytes; the load is unaligned.
    unsafe {
        let v = _mm_loadu_si128(qs.as_ptr().cast());
        let m = _mm_set1_epi8(0x0F);
        (_mm_and_si128(v, m), _mm_and_si128(_mm_srli_epi16(v, 4), m))
    }
}

/// AVX2 q4_0 dequantization.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn q4_0(blocks: &[BlockQ4_0], y: &mut [f32]) {
    // SAFETY: the caller checked AVX2; all memory access goes through checked slices.
    unsafe {
        let eight = _mm_set1_epi8(8);
        for (b, y) in blocks.iter().zip(y.chunks_exact_mut(32)) {
            let d = _mm256_set1_ps(f16_le(b.d));
            let (lo, hi) = nibbles(&b.qs);
            let (lo_out, hi_out) = y.split_at_mut(16);
            store16(_mm_sub_epi8(lo, eight), d, lo_out);
            store16(_mm_sub_epi8(hi, eight), d, hi_out);
        }
    }
}

/// AVX2 iq4_nl dequantization (codebook lookup with a byte shuffle).
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn iq4_nl(blocks: &[BlockIq4Nl], y: &mut [f32]) {
    // SAFETY: the caller checked AVX2; the codebook load reads exactly 16 bytes.
    unsafe {
        let table = _mm_loadu_si128(IQ4_NL_VALUES.as_ptr().cast());
        for (b, y) in blocks.iter().zip(y.chunks_exact_mut(32)) {
            let d = _mm256_set1_ps(f16_le(b.d));
            let (lo, hi) = nibbles(&b.qs);
            let (lo_out, hi_out) = y.split_at_mut(16);
            store16(_mm_shuffle_epi8(table, lo), d, lo_out);
            store16(_mm_shuffle_epi8(table, hi), d, hi_out);
        }
    }
}

/// AVX2 q8_0 dequantization.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn q8_0(blocks: &[BlockQ8_0], y: &mut [f32]) {
    // SAFETY: the caller checked AVX2; each load reads 16 of the block's 32 bytes.
    unsafe {
        for (b, y) in blocks.iter().zip(y.chunks_exact_mut(32)) {
            let d = _mm256_set1_ps(f16_le(b.d));
            let v0 = _mm_loadu_si128(b.qs.as_ptr().cast());
            let v1 = _mm_loadu_si128(b.qs.as_ptr().add(16).cast());
            let (a, c) = y.split_at_mut(16);
            store16(v0, d, a);
            store16(v1, d, c);
        }
    }
}

/// AVX2 q4_k dequantization: y = (d*sc)*q - (dmin*m) per sub-block of 32.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn q4_k(blocks: &[BlockQ4K], y: &mut [f32]) {
    // SAFETY: the caller checked AVX2; loads read 16-byte halves of each 32-byte chunk, and all
    // stores go through 8-element sub-slices.
    unsafe {
        let m4 = _mm_set1_epi8(0x0F);
        for (b, y) in blocks.iter().zip(y.chunks_exact_mut(256)) {
            let (d, dmin) = (f16_le(b.d), f16_le(b.dmin));
            for c in 0..4 {
                let (s0, n0) = scale_min_k4(2 * c, &b.scales);
                let (s1, n1) = scale_min_k4(2 * c + 1, &b.scales);
                let d0 = _mm256_set1_ps(d * s0 as f32);
                let m0 = _mm256_set1_ps(dmin * n0 as f32);
                let d1 = _mm256_set1_ps(d * s1 as f32);
                let m1 = _mm256_set1_ps(dmin * n1 as f32);
                let yc = &mut y[64 * c..64 * c + 64];
                for half in 0..2 {
                    let v = _mm_loadu_si128(b.qs.as_ptr().add(32 * c + 16 * half).cast());
                    let lo = _mm_and_si128(v, m4);
                    let hi = _mm_and_si128(_mm_srli_epi16(v, 4), m4);
                    for (k, src) in [lo, _mm_srli_si128(lo, 8)].into_iter().enumerate() {
                        let f = _mm256_sub_ps(_mm256_mul_ps(d0, i8x8_to_ps(src)), m0);
                        let o = &mut yc[16 * half + 8 * k..16 * half + 8 * k + 8];
                        _mm256_storeu_ps(o.as_mut_ptr(), f);
                    }
                    for (k, src) in [hi, _mm_srli_si128(hi, 8)].into_iter().enumerate() {
                        let f = _mm256_sub_ps(_mm256_mul_ps(d1, i8x8_to_ps(src)), m1);
                        let o = &mut yc[32 + 16 * half + 8 * k..32 + 16 * half + 8 * k + 8];
                        _mm256_storeu_ps(o.as_mut_ptr(), f);
                    }
                }
            }
        }
    }
}

/// AVX2 iq4_xs dequantization: iq4_nl lookups with a per-sub-block scale d*(ls-32).
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn iq4_xs(blocks: &[BlockIq4Xs], y: &mut [f32]) {
    // SAFETY: the caller checked AVX2; the codebook load reads exactly 16 bytes and each
    // sub-block's 16 qs bytes are passed as a checked 16-byte array.
    unsafe {
        let table = _mm_loadu_si128(IQ4_NL_VALUES.as_ptr().cast());
        for (b, y) in blocks.iter().zip(y.chunks_exact_mut(256)) {
            let d = f16_le(b.d);
            for (ib, ys) in y.chunks_exact_mut(32).enumerate() {
                let dl = _mm256_set1_ps(d * super::dequant::iq4xs_scale(b, ib) as f32);
                let mut qs = [0u8; 16];
                qs.copy_from_slice(&b.qs[16 * ib..16 * ib + 16]);
                let (lo, hi) = nibbles(&qs);
                let (lo_out, hi_out) = ys.split_at_mut(16);
                store16(_mm_shuffle_epi8(table, lo), dl, lo_out);
                store16(_mm_shuffle_epi8(table, hi), dl, hi_out);
            }
        }
    }
}

/// Expands 16 bits into 16 bytes holding 0x10 where the bit is set (the fifth bit of q5_*).
#[inline]
#[target_feature(enable = "avx2")]
fn high_bits16(bits: u16) -> __m128i {
    let v = _mm_set1_epi16(bits as i16);
    let b = _mm_shuffle_epi8(
        v,
        _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
    );
    let mask = _mm_setr_epi8(1, 2, 4, 8, 16, 32, 64, -128, 1, 2, 4, 8, 16, 32, 64, -128);
    let sel = _mm_cmpeq_epi8(_mm_and_si128(b, mask), mask);
    _mm_and_si128(sel, _mm_set1_epi8(0x10))
}

/// Stores d*q + m for 16 unsigned-byte levels (< 128) to `out[0..16]`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn store16_affine(v: __m128i, d: __m256, m: __m256, out: &mut [f32]) {
    assert!(out.len() >= 16, "callers pass 16-element slices");
    let a = _mm256_add_ps(_mm256_mul_ps(i8x8_to_ps(v), d), m);
    let b = _mm256_add_ps(_mm256_mul_ps(i8x8_to_ps(_mm_srli_si128(v, 8)), d), m);
    // SAFETY: `out` has at least 16 elements (asserted); the stores are unaligned.
    unsafe {
        _mm256_storeu_ps(out.as_mut_ptr(), a);
        _mm256_storeu_ps(out.as_mut_ptr().add(8), b);
    }
}

/// AVX2 q5_0 dequantization: y = d * (q - 16).
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn q5_0(blocks: &[BlockQ5_0], y: &mut [f32]) {
    let sixteen = _mm_set1_epi8(16);
    for (b, y) in blocks.iter().zip(y.chunks_exact_mut(32)) {
        let d = _mm256_set1_ps(f16_le(b.d));
        let qh = u32::from_le_bytes(b.qh);
        // SAFETY: AVX2 checked by the caller; `nibbles` reads the block's 16 qs bytes.
        let (lo, hi) = unsafe { nibbles(&b.qs) };
        let lo = _mm_sub_epi8(_mm_or_si128(lo, high_bits16(qh as u16)), sixteen);
        let hi = _mm_sub_epi8(_mm_or_si128(hi, high_bits16((qh >> 16) as u16)), sixteen);
        let (lo_out, hi_out) = y.split_at_mut(16);
        // SAFETY: both halves are 16 elements.
        unsafe {
            store16(lo, d, lo_out);
            store16(hi, d, hi_out);
        }
    }
}

/// AVX2 q5_1 dequantization: y = d * q + m.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn q5_1(blocks: &[BlockQ5_1], y: &mut [f32]) {
    for (b, y) in blocks.iter().zip(y.chunks_exact_mut(32)) {
        let d = _mm256_set1_ps(f16_le(b.d));
        let m = _mm256_set1_ps(f16_le(b.m));
        let qh = u32::from_le_bytes(b.qh);
        // SAFETY: AVX2 checked by the caller; `nibbles` reads the block's 16 qs bytes.
        let (lo, hi) = unsafe { nibbles(&b.qs) };
        let lo = _mm_or_si128(lo, high_bits16(qh as u16));
        let hi = _mm_or_si128(hi, high_bits16((qh >> 16) as u16));
        let (lo_out, hi_out) = y.split_at_mut(16);
        // SAFETY: both halves are 16 elements.
        unsafe {
            store16_affine(lo, d, m, lo_out);
            store16_affine(hi, d, m, hi_out);
        }
    }
}
