//! Scalar reference dequantizers, one per block type.
//!
//! These define the output bit for bit: every SIMD path must reproduce them exactly, so each
//! formula uses the same f32 operation order as ggml (`dl = d*sc; ml = dmin*m; y = dl*q - ml`),
//! and nothing relies on fused multiply-add.

use super::blocks::*;

/// q4_0: y = d * (q - 8).
pub(crate) fn q4_0(blocks: &[BlockQ4_0], y: &mut [f32]) {
    for (b, y) in blocks.iter().zip(y.chunks_exact_mut(32)) {
        let d = f16_le(b.d);
        for j in 0..16 {
            y[j] = d * ((b.qs[j] & 0xF) as i32 - 8) as f32;
            y[j + 16] = d * ((b.qs[j] >> 4) as i32 - 8) as f32;
        }
    }
}

/// q4_1: y = d * q + m.
pub(crate) fn q4_1(blocks: &[BlockQ4_1], y: &mut [f32]) {
    for (b, y) in blocks.iter().zip(y.chunks_exact_mut(32)) {
        let (d, m) = (f16_le(b.d), f16_le(b.m));
        for j in 0..16 {
            y[j] = d * (b.qs[j] & 0xF) as f32 + m;
            y[j + 16] = d * (b.qs[j] >> 4) as f32 + m;
        }
    }
}

/// q5_0: y = d * (q - 16), the fifth bit of element j is bit j of qh.
pub(crate) fn q5_0(blocks: &[BlockQ5_0], y: &mut [f32]) {
    for (b, y) in blocks.iter().zip(y.chunks_exact_mut(32)) {
        let d = f16_le(b.d);
        let qh = u32::from_le_bytes(b.qh);
        for j in 0..16 {
            let lo = (b.qs[j] & 0xF) | ((((qh >> j) & 1) as u8) << 4);
            let hi = (b.qs[j] >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
            y[j] = d * (lo as i32 - 16) as f32;
            y[j + 16] = d * (hi as i32 - 16) as f32;
        }
    }
}

/// q5_1: y = d * q + m.
pub(crate) fn q5_1(blocks: &[BlockQ5_1], y: &mut [f32]) {
    for (b, y) in blocks.iter().zip(y.chunks_exact_mut(32)) {
        let (d, m) = (f16_le(b.d), f16_le(b.m));
        let qh = u32::from_le_bytes(b.qh);
        for j in 0..16 {
            let lo = (b.qs[j] & 0xF) | ((((qh >> j) & 1) as u8) << 4);
            let hi = (b.qs[j] >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
            y[j] = d * lo as f32 + m;
            y[j + 16] = d * hi as f32 + m;
        }
    }
}

/// q8_0: y = q * d.
pub(crate) fn q8_0(blocks: &[BlockQ8_0], y: &mut [f32]) {
    for (b, y) in blocks.iter().zip(y.chunks_exact_mut(32)) {
        let d = f16_le(b.d);
        for (o, &q) in y.iter_mut().zip(b.qs.iter()) {
            *o = q as i8 as f32 * d;
        }
    }
}

/// q2_k: y = (d*sc)*q - (dmin*m), order as described in the format facts.
pub(crate) fn q2_k(blocks: &[BlockQ2K], y: &mut [f32]) {
    for (b, y) in blocks.iter().zip(y.chunks_exact_mut(256)) {
        let (d, dmin) = (f16_le(b.d), f16_le(b.dmin));
        let mut out = 0;
        for h in 0..2 {
            let qs = &b.qs[32 * h..32 * h + 32];
            for j in 0..4 {
                let shift = 2 * j;
                for part in 0..2 {
                    let sc = b.scales[8 * h + 2 * j + part];
                    let dl = d * (sc & 0xF) as f32;
                    let ml = dmin * (sc >> 4) as f32;
                    for l in 0..16 {
                        let q = (qs[16 * part + l] >> shift) & 3;
                        y[out] = dl * q as f32 - ml;
                        out += 1;
                    }
                }
            }
        }
    }
}

/// q3_k: y = (d*s)*q with q = low2 - (hmask bit clear ? 4 : 0).
pub(crate) fn q3_k(blocks: &[BlockQ3K], y: &mut [f32]) {
    for (b, y) in blocks.iter().zip(y.chunks_exact_mut(256)) {
        let d = f16_le(b.d);
        let sc = q3k_scales(&b.scales);
        let mut out = 0;
        let mut is = 0;
        let mut mask = 1u8;
        for h in 0..2 {
            let qs = &b.qs[32 * h..32 * h + 32];
            for j in 0..4 {
                let shift = 2 * j;
                for part in 0..2 {
                    let dl = d * sc[is] as f32;
                    is += 1;
                    for l in 0..16 {
                        let idx = 16 * part + l;
                        let low = ((qs[idx] >> shift) & 3) as i8;
                        let q = low - if b.hmask[idx] & mask != 0 { 0 } else { 4 };
                        y[out] = dl * q as f32;
                        out += 1;
                    }
                }
                mask = mask.wrapping_shl(1);
            }
        }
    }
}

/// q4_k: chunk c of 64 elements: low nibbles of qs[32c..] then high nibbles.
pub(crate) fn q4_k(blocks: &[BlockQ4K], y: &mut [f32]) {
    for (b, y) in blocks.iter().zip(y.chunks_exact_mut(256)) {
        let (d, dmin) = (f16_le(b.d), f16_le(b.dmin));
        for c in 0..4 {
            let qs = &b.qs[32 * c..32 * c + 32];
            let (s0, m0) = scale_min_k4(2 * c, &b.scales);
            let (s1, m1) = scale_min_k4(2 * c + 1, &b.scales);
            let (d0, n0) = (d * s0 as f32, dmin * m0 as f32);
            let (d1, n1) = (d * s1 as f32, dmin * m1 as f32);
            let yc = &mut y[64 * c..64 * c + 64];
            for l in 0..32 {
                yc[l] = d0 * (qs[l] & 0xF) as f32 - n0;
                yc[l + 32] = d1 * (qs[l] >> 4) as f32 - n1;
            }
        }
    }
}

/// q5_k: q4_k plus the fifth bit from qh (bits 2c and 2c+1).
pub(crate) fn q5_k(blocks: &[BlockQ5K], y: &mut [f32]) {
    for (b, y) in blocks.iter().zip(y.chunks_exact_mut(256)) {
        let (d, dmin) = (f16_le(b.d), f16_le(b.dmin));
        for c in 0..4 {
            let qs = &b.qs[32 * c..32 * c + 32];
            let (s0, m0) = scale_min_k4(2 * c, &b.scales);
            let (s1, m1) = scale_min_k4(2 * c + 1, &b.scales);
            let (d0, n0) = (d * s0 as f32, dmin * m0 as f32);
            let (d1, n1) = (d * s1 as f32, dmin * m1 as f32);
            let yc = &mut y[64 * c..64 * c + 64];
            for l in 0..32 {
                let hlo = ((b.qh[l] >> (2 * c)) & 1) << 4;
                let hhi = ((b.qh[l] >> (2 * c + 1)) & 1) << 4;
                yc[l] = d0 * ((qs[l] & 0xF) | hlo) as f32 - n0;
                yc[l + 32] = d1 * ((qs[l] >> 4) | hhi) as f32 - n1;
            }
        }
    }
}

/// q6_k: two halves of 128 elements, y = (d*sc)*(q-32).
pub(crate) fn q6_k(blocks: &[BlockQ6K], y: &mut [f32]) {
    for (b, y) in blocks.iter().zip(y.chunks_exact_mut(256)) {
        let d = f16_le(b.d);
        for h in 0..2 {
            let ql = &b.ql[64 * h..64 * h + 64];
            let qh = &b.qh[32 * h..32 * h + 32];
            let sc = &b.scales[8 * h..8 * h + 8];
            let yh = &mut y[128 * h..128 * h + 128];
            for l in 0..32 {
                let is = l / 16;
                let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
                let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                yh[l] = (d * sc[is] as i8 as f32) * q1 as f32;
                yh[l + 32] = (d * sc[is + 2] as i8 as f32) * q2 as f32;
                yh[l + 64] = (d * sc[is + 4] as i8 as f32) * q3 as f32;
                yh[l + 96] = (d * sc[is + 6] as i8 as f32) * q4 as f32;
            }
        }
    }
}

/// iq4_nl: y = d * K[q].
pub(crate) fn iq4_nl(blocks: &[BlockIq4Nl], y: &mut [f32]) {
    for (b, y) in blocks.iter().zip(y.chunks_exact_mut(32)) {
        let d = f16_le(b.d);
        for j in 0..16 {
            y[j] = d * IQ4_NL_VALUES[(b.qs[j] & 0xF) as usize] as f32;
            y[j + 16] = d * IQ4_NL_VALUES[(b.qs[j] >> 4) as usize] as f32;
        }
    }
}

/// The 6-bit scale of iq4_xs sub-block `ib`, minus 32.
#[inline(always)]
pub(crate) fn iq4xs_scale(b: &BlockIq4Xs, ib: usize) -> i32 {
    let sh = u16::from_le_bytes(b.scales_h);
    let lo = (b.scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF;
    let hi = ((sh >> (2 * ib)) & 3) as u8;
    (lo | (hi << 4)) as i32 - 32
}

/// iq4_xs: sub-block ib: y = (d*(ls-32)) * K[q].
pub(crate) fn iq4_xs(blocks: &[BlockIq4Xs], y: &mut [f32]) {
    for (b, y) in blocks.iter().zip(y.chunks_exact_mut(256)) {
        let d = f16_le(b.d);
        for ib in 0..8 {
            let dl = d * iq4xs_scale(b, ib) as f32;
            let qs = &b.qs[16 * ib..16 * ib + 16];
            let ys = &mut y[32 * ib..32 * ib + 32];
            for j in 0..16 {
                ys[j] = dl * IQ4_NL_VALUES[(qs[j] & 0xF) as usize] as f32;
                ys[j + 16] = dl * IQ4_NL_VALUES[(qs[j] >> 4) as usize] as f32;
            }
        }
    }
}
