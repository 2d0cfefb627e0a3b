//! AVX2 + F16C fast paths. Each function repeats its scalar reference's arithmetic
//! exactly: the int decode does one f32 multiply then one f32 add per element (no FMA),
//! and the f16 widening is exact in both paths.

use std::arch::x86_64::*;

use half::f16;

use super::{Affine, Mode};

/// Writes (or adds) 8 lanes to `o[..8]`.
#[target_feature(enable = "avx2")]
fn store8(o: &mut [f32], v: __m256, mode: Mode) {
    let o = &mut o[..8];
    let p = o.as_mut_ptr();
    // SAFETY: `o` has exactly 8 f32 (the slice above panics otherwise; callers pass
    // 8-element chunks), and unaligned loads/stores are used.
    unsafe {
        match mode {
            Mode::Set => _mm256_storeu_ps(p, v),
            Mode::Add => _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), v)),
        }
    }
}

#[target_feature(enable = "avx2")]
fn affine8(q: __m256i, aff: Affine) -> __m256 {
    match aff {
        Affine::Asym { s, m } => {
            let f = _mm256_cvtepi32_ps(q);
            _mm256_add_ps(_mm256_mul_ps(f, _mm256_set1_ps(s)), _mm256_set1_ps(m))
        }
        Affine::Sym { s, half } => {
            let f = _mm256_cvtepi32_ps(_mm256_sub_epi32(q, _mm256_set1_epi32(half)));
            _mm256_mul_ps(f, _mm256_set1_ps(s))
        }
    }
}

/// int decode for b=4 and b=8; `codes` holds the packed bytes of `out.len()` codes.
///
/// # Safety
/// The CPU must support AVX2 and F16C.
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn int_group(bits: u8, codes: &[u8], aff: Affine, out: &mut [f32], mode: Mode) {
    let n8 = out.len() / 8 * 8;
    let (head, tail) = out.split_at_mut(n8);
    let per8 = bits as usize; // bytes per 8 codes (4 for b=4, 8 for b=8)
    for (k, o) in head.chunks_exact_mut(8).enumerate() {
        let src = &codes[k * per8..k * per8 + per8];
        let q = if bits == 4 {
            _mm256_cvtepu8_epi32(nibbles(load4(src)).0)
        } else {
            let w = u64::from_le_bytes([
                src[0], src[1], src[2], src[3], src[4], src[5], src[6], src[7],
            ]);
            _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(w as i64))
        };
        store8(o, affine8(q, aff), mode);
    }
    // Tail of a partial last group: same arithmetic, one element at a time.
    let rest = &codes[n8 * bits as usize / 8..];
    super::int_group_scalar(bits, rest, aff, tail, mode);
}

/// Widens `c` (f16) into `o` (same length), setting or adding.
///
/// # Safety
/// The CPU must support AVX2 and F16C.
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn copy_f16(c: &[f16], o: &mut [f32], mode: Mode) {
    let n = o.len().min(c.len());
    let mut i = 0;
    while i + 8 <= n {
        let src = &c[i..i + 8];
        // SAFETY: `src` is 8 f16 = 16 bytes; unaligned load.
        let h = unsafe { _mm_loadu_si128(src.as_ptr() as *const __m128i) };
        store8(&mut o[i..i + 8], _mm256_cvtph_ps(h), mode);
        i += 8;
    }
    if i + 4 <= n {
        let src = &c[i..i + 4];
        let bits = u64::from(src[0].to_bits())
            | u64::from(src[1].to_bits()) << 16
            | u64::from(src[2].to_bits()) << 32
            | u64::from(src[3].to_bits()) << 48;
        let v = _mm_cvtph_ps(_mm_cvtsi64_si128(bits as i64));
        let o4 = &mut o[i..i + 4];
        let p = o4.as_mut_ptr();
        // SAFETY: `o4` has exactly 4 f32; unaligned load/store.
        unsafe {
            match mode {
                Mode::Set => _mm_storeu_ps(p, v),
                Mode::Add => _mm_storeu_ps(p, _mm_add_ps(_mm_loadu_ps(p), v)),
            }
        }
        i += 4;
    }
    super::copy_f16_scalar(&c[i..n], &mut o[i..n], mode);
}

/// AVX2 version of `super::lowrank_rows_scalar`: blocks of 4 rows x 16 columns held in
/// eight accumulators while the rank runs, so each 16 values of `right` loaded serve 4
/// rows. Per element the same operations in the same order as the reference.
///
/// # Safety
/// The CPU must support AVX2; `left.len() == rows*rank`, `right.len() == rank*cols` and
/// `out.len() == rows*cols` with `rank, cols > 0` (checked by the caller; the accesses
/// below are bounds-checked slices anyway).
#[target_feature(enable = "avx2")]
pub(super) unsafe fn lowrank_rows(
    left: &[f32],
    right: &[f32],
    rank: usize,
    cols: usize,
    out: &mut [f32],
    mode: Mode,
) {
    let rows = out.len() / cols;
    let mut r = 0;
    while r + 4 <= rows {
        lowrank_block::<4>(
            &left[r * rank..(r + 4) * rank],
            right,
            rank,
            cols,
            &mut out[r * cols..(r + 4) * cols],
            mode,
        );
        r += 4;
    }
    while r < rows {
        lowrank_block::<1>(
            &left[r * rank..(r + 1) * rank],
            right,
            rank,
            cols,
            &mut out[r * cols..(r + 1) * cols],
            mode,
        );
        r += 1;
    }
}

/// `R` rows of [`lowrank_rows`]: 16 columns at a time, then 8, then one by one (the
/// reference's own loop).
#[target_feature(enable = "avx2")]
fn lowrank_block<const R: usize>(
    left: &[f32],
    right: &[f32],
    rank: usize,
    cols: usize,
    out: &mut [f32],
    mode: Mode,
) {
    let mut j = 0;
    while j + 16 <= cols {
        lowrank_tile::<R, 2>(left, right, rank, cols, j, out, mode);
        j += 16;
    }
    while j + 8 <= cols {
        lowrank_tile::<R, 1>(left, right, rank, cols, j, out, mode);
        j += 8;
    }
    for jj in j..cols {
        for i in 0..R {
            let mut a = left[i * rank] * right[jj];
            for t in 1..rank {
                a += left[i * rank + t] * right[t * cols + jj];
            }
            super::put(&mut out[i * cols + jj], a, mode);
        }
    }
}

/// Columns `j..j + 8*W` of `R` rows of [`lowrank_rows`], in `R x W` accumulators of 8 lanes.
#[inline]
#[target_feature(enable = "avx2")]
fn lowrank_tile<const R: usize, const W: usize>(
    left: &[f32],
    right: &[f32],
    rank: usize,
    cols: usize,
    j: usize,
    out: &mut [f32],
    mode: Mode,
) {
    // The 8*W values of right-factor row `t` at these columns.
    let load = |t: usize| -> [__m256; W] {
        let src = &right[t * cols + j..t * cols + j + 8 * W];
        // SAFETY: `src` holds exactly 8*W f32, so each 8-lane load at 8*w stays inside it;
        // unaligned loads.
        std::array::from_fn(|w| unsafe { _mm256_loadu_ps(src.as_ptr().add(8 * w)) })
    };
    let r0 = load(0);
    let mut acc: [[__m256; W]; R] = std::array::from_fn(|i| {
        let l = _mm256_set1_ps(left[i * rank]);
        std::array::from_fn(|w| _mm256_mul_ps(l, r0[w]))
    });
    for t in 1..rank {
        let rt = load(t);
        for (i, a) in acc.iter_mut().enumerate() {
            let l = _mm256_set1_ps(left[i * rank + t]);
            for (aw, rw) in a.iter_mut().zip(&rt) {
                *aw = _mm256_add_ps(*aw, _mm256_mul_ps(l, *rw));
            }
        }
    }
    for (i, a) in acc.iter().enumerate() {
        let o = &mut out[i * cols + j..i * cols + j + 8 * W];
        for (o8, aw) in o.chunks_exact_mut(8).zip(a) {
            store8(o8, *aw, mode);
        }
    }
}

/// AVX2 version of `super::nearest`: 8 centroids per step, per-lane running minimum
/// with strict `<` (so each lane keeps its lowest index), then a lowest-index reduction.
///
/// # Safety
/// The CPU must support AVX2 and F16C; `ct.len() >= x.len() * k`.
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn nearest(x: &[f32], ct: &[f32], k: usize) -> usize {
    let k8 = k / 8 * 8;
    let n = x.len().min(16);
    let x = &x[..n];
    let mut xb = [_mm256_setzero_ps(); 16];
    for (b, &v) in xb.iter_mut().zip(x) {
        *b = _mm256_set1_ps(v);
    }
    let base = ct.as_ptr();
    // Distances of the 8 centroids starting at c, as `((0 + e0²) + e1²) + ...`.
    let block = |c: usize| -> __m256 {
        let mut acc = _mm256_setzero_ps();
        for (j, xj) in xb[..n].iter().enumerate() {
            // SAFETY: j < x.len() and c + 8 <= k, so j*k + c + 8 <= x.len()*k <= ct.len()
            // (checked by the caller); unaligned load.
            let cv = unsafe { _mm256_loadu_ps(base.add(j * k + c)) };
            let e = _mm256_sub_ps(*xj, cv);
            acc = _mm256_add_ps(acc, _mm256_mul_ps(e, e));
        }
        acc
    };
    let mut best_d = _mm256_set1_ps(f32::INFINITY);
    let mut best_i = _mm256_setzero_si256();
    let mut idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let step = _mm256_set1_epi32(8);
    let mut c = 0;
    let mut take = |acc: __m256, idx: __m256i| {
        let lt = _mm256_cmp_ps::<_CMP_LT_OQ>(acc, best_d);
        best_d = _mm256_blendv_ps(best_d, acc, lt);
        best_i = _mm256_blendv_epi8(best_i, idx, _mm256_castps_si256(lt));
    };
    // Four independent blocks per step for instruction-level parallelism; they are
    // compared in increasing index order, exactly as one block at a time would be.
    while c + 32 <= k8 {
        let (a0, a1, a2, a3) = (block(c), block(c + 8), block(c + 16), block(c + 24));
        take(a0, idx);
        idx = _mm256_add_epi32(idx, step);
        take(a1, idx);
        idx = _mm256_add_epi32(idx, step);
        take(a2, idx);
        idx = _mm256_add_epi32(idx, step);
        take(a3, idx);
        idx = _mm256_add_epi32(idx, step);
        c += 32;
    }
    while c < k8 {
        take(block(c), idx);
        idx = _mm256_add_epi32(idx, step);
        c += 8;
    }
    let mut ds = [0.0f32; 8];
    let mut is = [0i32; 8];
    // SAFETY: both arrays hold exactly 8 lanes; unaligned stores.
    unsafe {
        _mm256_storeu_ps(ds.as_mut_ptr(), best_d);
        _mm256_storeu_si256(is.as_mut_ptr() as *mut __m256i, best_i);
    }
    nearest_finish(&ds, &is, x, ct, k, k8)
}

/// The end of [`nearest`] and [`nearest512`]: the lowest-index minimum over the lanes'
/// running minima (`ds`, with their indices `is`), then the centroids `from..k` the vector
/// steps did not cover, one by one (all with larger indices, so strict `<` keeps ties low).
fn nearest_finish(ds: &[f32], is: &[i32], x: &[f32], ct: &[f32], k: usize, from: usize) -> usize {
    let mut bd = f32::INFINITY;
    let mut bi = 0usize;
    for (&d, &i) in ds.iter().zip(is) {
        let i = i as usize;
        if d < bd || (d == bd && i < bi) {
            bd = d;
            bi = i;
        }
    }
    for cc in from..k {
        let mut s = 0.0f32;
        for (j, &xj) in x.iter().enumerate() {
            let e = xj - ct[j * k + cc];
            s += e * e;
        }
        if s < bd {
            bd = s;
            bi = cc;
        }
    }
    bi
}

/// AVX-512 version of `super::nearest`: [`nearest`] with 16 centroids per step (the same
/// per-centroid distances, so the same answer, ties to the lowest index).
///
/// # Safety
/// The CPU must support AVX-512 F; `ct.len() >= x.len() * k`.
#[target_feature(enable = "avx512f,avx2")]
pub(super) unsafe fn nearest512(x: &[f32], ct: &[f32], k: usize) -> usize {
    let k16 = k / 16 * 16;
    let n = x.len().min(16);
    let x = &x[..n];
    let mut xb = [_mm512_setzero_ps(); 16];
    for (b, &v) in xb.iter_mut().zip(x) {
        *b = _mm512_set1_ps(v);
    }
    let base = ct.as_ptr();
    // Distances of the 16 centroids starting at c, as `((0 + e0²) + e1²) + ...`.
    let block = |c: usize| -> __m512 {
        let mut acc = _mm512_setzero_ps();
        for (j, xj) in xb[..n].iter().enumerate() {
            // SAFETY: j < x.len() and c + 16 <= k, so j*k + c + 16 <= x.len()*k <= ct.len()
            // (checked by the caller); unaligned load.
            let cv = unsafe { _mm512_loadu_ps(base.add(j * k + c)) };
            let e = _mm512_sub_ps(*xj, cv);
            acc = _mm512_add_ps(acc, _mm512_mul_ps(e, e));
        }
        acc
    };
    let mut best_d = _mm512_set1_ps(f32::INFINITY);
    let mut best_i = _mm512_setzero_si512();
    let mut idx = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let step = _mm512_set1_epi32(16);
    let mut take = |acc: __m512, idx: __m512i| {
        let lt = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(acc, best_d);
        best_d = _mm512_mask_blend_ps(lt, best_d, acc);
        best_i = _mm512_mask_blend_epi32(lt, best_i, idx);
    };
    // Two independent blocks per step; compared in increasing index order.
    let mut c = 0;
    while c + 32 <= k16 {
        let (a0, a1) = (block(c), block(c + 16));
        take(a0, idx);
        idx = _mm512_add_epi32(idx, step);
        take(a1, idx);
        idx = _mm512_add_epi32(idx, step);
        c += 32;
    }
    while c < k16 {
        take(block(c), idx);
        idx = _mm512_add_epi32(idx, step);
        c += 16;
    }
    let mut ds = [0.0f32; 16];
    let mut is = [0i32; 16];
    // SAFETY: both arrays hold exactly 16 lanes; unaligned stores.
    unsafe {
        _mm512_storeu_ps(ds.as_mut_ptr(), best_d);
        _mm512_storeu_si512(is.as_mut_ptr() as *mut __m512i, best_i);
    }
    nearest_finish(&ds, &is, x, ct, k, k16)
}

/// f16 bits widened to f32 with F16C (exact, like `half`'s conversion).
#[target_feature(enable = "avx2,f16c")]
fn f16_to_f32(h: f16) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(h.to_bits()))))
}

/// The 8 little-endian bytes at `codes[off..]`, zero-filled past the end of `codes`.
#[inline(always)]
fn load_u64(codes: &[u8], off: usize) -> u64 {
    match codes.get(off..off + 8) {
        Some(s) => u64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]),
        None => {
            let mut b = [0u8; 8];
            if let Some(s) = codes.get(off..) {
                b[..s.len()].copy_from_slice(s);
            }
            u64::from_le_bytes(b)
        }
    }
}

/// Codes 8k..8k+8 of a group of `bits`-bit codes (bytes `k*bits..k*bits+bits`) as eight
/// u32 lanes: every lane gets the two bytes holding its code via a byte shuffle, then a
/// per-lane shift and mask. Works for any `bits` in 1..=8.
#[target_feature(enable = "avx2")]
fn codes8_generic(w: u64, shuf: __m256i, shift: __m256i, mask: __m256i) -> __m256i {
    let v = _mm256_set1_epi64x(w as i64);
    let v = _mm256_shuffle_epi8(v, shuf);
    _mm256_and_si256(_mm256_srlv_epi32(v, shift), mask)
}

/// The first 16 bytes of `s` (unaligned load; panics if `s` is shorter).
#[inline]
#[target_feature(enable = "avx2")]
fn load16(s: &[u8]) -> __m128i {
    let s = &s[..16];
    // SAFETY: `s` is exactly 16 bytes; unaligned load.
    unsafe { _mm_loadu_si128(s.as_ptr() as *const __m128i) }
}

/// The first 8 bytes of `s` in the low half (unaligned; panics if `s` is shorter).
#[inline]
#[target_feature(enable = "avx2")]
fn load8(s: &[u8]) -> __m128i {
    let s = &s[..8];
    // SAFETY: `s` is exactly 8 bytes; unaligned 64-bit load.
    unsafe { _mm_loadl_epi64(s.as_ptr() as *const __m128i) }
}

/// The first 4 bytes of `s` in the low lane (panics if `s` is shorter).
#[inline]
#[target_feature(enable = "avx2")]
fn load4(s: &[u8]) -> __m128i {
    _mm_cvtsi32_si128(i32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// The 4-bit codes of the bytes of `v` (low nibble first) as one byte each, in element
/// order: codes 0..16 (from bytes 0..8) and codes 16..32.
#[inline]
#[target_feature(enable = "avx2")]
fn nibbles(v: __m128i) -> (__m128i, __m128i) {
    let nib = _mm_set1_epi8(0x0F);
    let lo = _mm_and_si128(v, nib);
    let hi = _mm_and_si128(_mm_srli_epi16::<4>(v), nib);
    (_mm_unpacklo_epi8(lo, hi), _mm_unpackhi_epi8(lo, hi))
}

/// The 2-bit codes of the low 8 bytes of `v` as one byte each, in element order: codes
/// 0..16 (from bytes 0..4) and codes 16..32. Byte k's codes are its bits 0-1, 2-3, 4-5 and
/// 6-7: split into four byte vectors, then interleaved back.
#[inline]
#[target_feature(enable = "avx2")]
fn crumbs(v: __m128i) -> (__m128i, __m128i) {
    let three = _mm_set1_epi8(3);
    let c0 = _mm_and_si128(v, three);
    let c1 = _mm_and_si128(_mm_srli_epi16::<2>(v), three);
    let c2 = _mm_and_si128(_mm_srli_epi16::<4>(v), three);
    let c3 = _mm_and_si128(_mm_srli_epi16::<6>(v), three);
    let c01 = _mm_unpacklo_epi8(c0, c1);
    let c23 = _mm_unpacklo_epi8(c2, c3);
    (_mm_unpacklo_epi16(c01, c23), _mm_unpackhi_epi16(c01, c23))
}

/// 32 byte codes (`a`: codes 0..16, `b`: 16..32) as four vectors of 8 u32 lanes.
#[inline]
#[target_feature(enable = "avx2")]
fn widen32(a: __m128i, b: __m128i) -> [__m256i; 4] {
    [
        _mm256_cvtepu8_epi32(a),
        _mm256_cvtepu8_epi32(_mm_srli_si128::<8>(a)),
        _mm256_cvtepu8_epi32(b),
        _mm256_cvtepu8_epi32(_mm_srli_si128::<8>(b)),
    ]
}

/// Groups whose parameters [`whole_groups_pow2`] widens from f16 at once.
const SEG: usize = 64;

/// Widens `src` into `dst` (same length) with F16C, 8 at a time.
#[target_feature(enable = "avx2,f16c")]
fn widen(src: &[f16], dst: &mut [f32]) {
    let mut d8 = dst.chunks_exact_mut(8);
    let mut s8 = src.chunks_exact(8);
    for (d, s) in (&mut d8).zip(&mut s8) {
        // SAFETY: `s` is exactly 8 f16 = 16 bytes and `d` exactly 8 f32; unaligned
        // load and store.
        unsafe {
            let h = _mm_loadu_si128(s.as_ptr() as *const __m128i);
            _mm256_storeu_ps(d.as_mut_ptr(), _mm256_cvtph_ps(h));
        }
    }
    for (d, s) in d8.into_remainder().iter_mut().zip(s8.remainder()) {
        *d = f16_to_f32(*s);
    }
}

/// The whole groups of one row when the group size is a power of two: `o` holds
/// `scales.len()` groups, and `codes` starts at the row's first code. The codes of a
/// row's whole groups are one flat bit stream (element i at bit i*b), so this walks
/// them 32 at a time whatever the group size, widening the parameters of [`SEG`]
/// groups at once and broadcasting each 8-output chunk's own from a small buffer.
/// Same arithmetic as the scalar reference, element by element.
#[target_feature(enable = "avx2,f16c")]
fn whole_groups_pow2<const SYM: bool, const ADD: bool>(
    sh: &super::IntRowsShape,
    codes: &[u8],
    scales: &[f16],
    offsets: &[f16],
    o: &mut [f32],
    (shuf, shift): (__m256i, __m256i),
) {
    let mode = if ADD { Mode::Add } else { Mode::Set };
    let bits = sh.bits as usize;
    let gshift = sh.group.trailing_zeros();
    let mask = _mm256_set1_epi32((1i32 << bits) - 1);
    let half = _mm256_set1_epi32(1i32 << (bits - 1));
    let mut sb = [0f32; SEG];
    let mut mb = [0f32; SEG];
    let seg_elems = SEG << gshift;
    for (si, os) in o.chunks_mut(seg_elems).enumerate() {
        let g0 = si * SEG;
        let ng = os.len() >> gshift;
        widen(&scales[g0..g0 + ng], &mut sb[..ng]);
        if !SYM {
            widen(&offsets[g0..g0 + ng], &mut mb[..ng]);
        }
        // Byte offset of this segment's codes (each segment is whole groups, so whole bytes).
        let c = &codes[(g0 << gshift) * bits / 8..];
        // Chunk of 8 outputs starting at segment element `i`, codes `q`.
        let emit = |oo: &mut [f32], i: usize, q: __m256i| {
            let gi = i >> gshift;
            let s = _mm256_set1_ps(sb[gi]);
            let v = if SYM {
                _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(q, half)), s)
            } else {
                let m = _mm256_set1_ps(mb[gi]);
                _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(q), s), m)
            };
            store8(oo, v, mode);
        };
        let n = os.len();
        let mut i = 0;
        match bits {
            4 | 2 => {
                // 32 codes per step: 16 bytes at b=4, 8 at b=2.
                while i + 32 <= n {
                    let (a, b) = if bits == 4 {
                        nibbles(load16(&c[i / 2..]))
                    } else {
                        crumbs(load8(&c[i / 4..]))
                    };
                    for (k, (oo, q)) in os[i..i + 32]
                        .chunks_exact_mut(8)
                        .zip(widen32(a, b))
                        .enumerate()
                    {
                        emit(oo, i + 8 * k, q);
                    }
                    i += 32;
                }
                while i < n {
                    let q = if bits == 4 {
                        _mm256_cvtepu8_epi32(nibbles(load4(&c[i / 2..])).0)
                    } else {
                        codes8_generic(load_u64(c, i / 4), shuf, shift, mask)
                    };
                    emit(&mut os[i..i + 8], i, q);
                    i += 8;
                }
            }
            8 => {
                for (k, (oo, src)) in os.chunks_exact_mut(8).zip(c.chunks_exact(8)).enumerate() {
                    emit(oo, k * 8, _mm256_cvtepu8_epi32(load8(src)));
                }
            }
            _ => {
                for (k, oo) in os.chunks_exact_mut(8).enumerate() {
                    // Bytes past this chunk's codes belong to the next ones (or are zero
                    // past the end); the mask drops them.
                    let w = match c.get(k * bits..k * bits + 8) {
                        // SAFETY: `s` is exactly 8 bytes; unaligned 64-bit load.
                        Some(s) => unsafe {
                            _mm256_broadcastq_epi64(_mm_loadl_epi64(s.as_ptr() as *const __m128i))
                        },
                        None => _mm256_set1_epi64x(load_u64(c, k * bits) as i64),
                    };
                    let q = _mm256_and_si256(
                        _mm256_srlv_epi32(_mm256_shuffle_epi8(w, shuf), shift),
                        mask,
                    );
                    emit(oo, k * 8, q);
                }
            }
        }
    }
}

/// Writes (or, with `ADD`, adds) 16 lanes to `o[..16]`.
#[target_feature(enable = "avx512f")]
fn store16<const ADD: bool>(o: &mut [f32], v: __m512) {
    let o = &mut o[..16];
    let p = o.as_mut_ptr();
    // SAFETY: `o` has exactly 16 f32 (the slice above panics otherwise); unaligned
    // loads and stores.
    unsafe {
        if ADD {
            _mm512_storeu_ps(p, _mm512_add_ps(_mm512_loadu_ps(p), v));
        } else {
            _mm512_storeu_ps(p, v);
        }
    }
}

/// AVX-512 version of [`whole_groups_pow2`] for groups of 16 or more (so 16 consecutive
/// outputs share one group), 16 outputs per step: each lane converts, multiplies and
/// (asymmetric) adds as the reference does.
///
/// # Safety
/// The CPU must support AVX-512 F, BW and VL, AVX2 and F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,f16c")]
unsafe fn whole_groups_pow2_512<const SYM: bool, const ADD: bool>(
    sh: &super::IntRowsShape,
    codes: &[u8],
    scales: &[f16],
    offsets: &[f16],
    o: &mut [f32],
) {
    let bits = sh.bits as usize;
    let gshift = sh.group.trailing_zeros();
    let mask = _mm512_set1_epi32((1i32 << bits) - 1);
    let half = _mm512_set1_epi32(1i32 << (bits - 1));
    // Generic widths: lane j takes bytes (j*b)/8 and (j*b)/8 + 1 of a 16-byte window
    // (the same window in each 128-bit lane) and shifts right by (j*b)%8.
    let mut shuf = [-1i8; 64];
    let mut shift = [0i32; 16];
    for j in 0..16 {
        let byte = j * bits / 8;
        shuf[(j / 4) * 16 + (j % 4) * 4] = byte as i8;
        shuf[(j / 4) * 16 + (j % 4) * 4 + 1] = (byte + 1) as i8;
        shift[j] = (j * bits % 8) as i32;
    }
    // SAFETY: the arrays are exactly 64 bytes; unaligned loads.
    let (shuf, shift) = unsafe {
        (
            _mm512_loadu_si512(shuf.as_ptr() as *const __m512i),
            _mm512_loadu_si512(shift.as_ptr() as *const __m512i),
        )
    };
    let mut sb = [0f32; SEG];
    let mut mb = [0f32; SEG];
    let seg_elems = SEG << gshift;
    for (si, os) in o.chunks_mut(seg_elems).enumerate() {
        let g0 = si * SEG;
        let ng = os.len() >> gshift;
        widen(&scales[g0..g0 + ng], &mut sb[..ng]);
        if !SYM {
            widen(&offsets[g0..g0 + ng], &mut mb[..ng]);
        }
        let c = &codes[(g0 << gshift) * bits / 8..];
        // The parameter `v` (scales or offsets) of the 16 outputs from segment element `i`,
        // which all lie in one group.
        let param = |v: &[f32; SEG], i: usize| -> __m512 { _mm512_set1_ps(v[i >> gshift]) };
        // The 16 values of codes `q` (u32 lanes) starting at segment element `i`.
        let value = |q: __m512i, i: usize| -> __m512 {
            let s = param(&sb, i);
            if SYM {
                _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(q, half)), s)
            } else {
                _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(q), s), param(&mb, i))
            }
        };
        let n = os.len();
        let n16 = n / 16 * 16;
        let mut i = 0;
        match bits {
            8 => {
                while i < n16 {
                    let q = _mm512_cvtepu8_epi32(load16(&c[i..]));
                    store16::<ADD>(&mut os[i..i + 16], value(q, i));
                    i += 16;
                }
            }
            4 | 2 => {
                // 32 codes per step (16 bytes at b=4, 8 at b=2), then a last 16 when the
                // segment holds an odd number of 16-element groups.
                while i + 32 <= n16 {
                    let (a, b) = if bits == 4 {
                        nibbles(load16(&c[i / 2..]))
                    } else {
                        crumbs(load8(&c[i / 4..]))
                    };
                    let (o0, o1) = os[i..i + 32].split_at_mut(16);
                    store16::<ADD>(o0, value(_mm512_cvtepu8_epi32(a), i));
                    store16::<ADD>(o1, value(_mm512_cvtepu8_epi32(b), i + 16));
                    i += 32;
                }
                if i < n16 {
                    let a = if bits == 4 {
                        nibbles(load8(&c[i / 2..])).0
                    } else {
                        crumbs(load4(&c[i / 4..])).0
                    };
                    store16::<ADD>(&mut os[i..i + 16], value(_mm512_cvtepu8_epi32(a), i));
                    i += 16;
                }
            }
            _ => {
                while i < n16 {
                    let off = i * bits / 8;
                    let mut buf = [0u8; 16];
                    let src = match c.get(off..off + 16) {
                        Some(s) => s,
                        None => {
                            // Near the end of the buffer: zero-fill (the mask drops the
                            // bytes past this chunk's codes anyway).
                            let s = c.get(off..).unwrap_or(&[]);
                            buf[..s.len()].copy_from_slice(s);
                            &buf[..]
                        }
                    };
                    let w = _mm512_broadcast_i32x4(load16(src));
                    let q = _mm512_and_si512(
                        _mm512_srlv_epi32(_mm512_shuffle_epi8(w, shuf), shift),
                        mask,
                    );
                    store16::<ADD>(&mut os[i..i + 16], value(q, i));
                    i += 16;
                }
            }
        }
        if i < n {
            // Not reached for groups of 16 or more (whole groups are multiples of 16);
            // kept so the function is total: the scalar reference.
            let gi = i >> gshift;
            let aff = sh.affine(sb[gi], if SYM { 0.0 } else { mb[gi] });
            let mode = if ADD { Mode::Add } else { Mode::Set };
            super::int_group_scalar(sh.bits, &c[i * bits / 8..], aff, &mut os[i..], mode);
        }
    }
}

/// AVX2 version of `super::int_rows_scalar`, bit-identical: per element one f32 convert,
/// one multiply and (asymmetric) one add, as the scalar reference does.
///
/// With `wide`, the whole groups of power-of-two sizes go through the AVX-512 kernel
/// [`whole_groups_pow2_512`] where it covers the width.
///
/// # Safety
/// The CPU must support AVX2 and F16C, and with `wide` also AVX-512 F, BW and VL.
/// (Buffer lengths are checked by `IntRowsShape::check`; every access below is a
/// bounds-checked slice.)
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn int_rows(
    sh: &super::IntRowsShape,
    codes: &[u8],
    scales: &[f16],
    offsets: &[f16],
    out: &mut [f32],
    mode: Mode,
    wide: bool,
) {
    // One copy of the loops per (symmetric, mode), so the inner loops do not branch on them.
    match (sh.symmetric, mode) {
        (false, Mode::Set) => int_rows_impl::<false, false>(sh, codes, scales, offsets, out, wide),
        (false, Mode::Add) => int_rows_impl::<false, true>(sh, codes, scales, offsets, out, wide),
        (true, Mode::Set) => int_rows_impl::<true, false>(sh, codes, scales, offsets, out, wide),
        (true, Mode::Add) => int_rows_impl::<true, true>(sh, codes, scales, offsets, out, wide),
    }
}

/// [`int_rows`] for one (symmetric, mode) pair.
#[target_feature(enable = "avx2,f16c")]
fn int_rows_impl<const SYM: bool, const ADD: bool>(
    sh: &super::IntRowsShape,
    codes: &[u8],
    scales: &[f16],
    offsets: &[f16],
    out: &mut [f32],
    wide: bool,
) {
    let mode = if ADD { Mode::Add } else { Mode::Set };
    let bits = sh.bits as usize;
    // Shuffle and shift tables of the generic 8-codes step: lane j reads bytes
    // (j*b)/8 and (j*b)/8 + 1 of the 8-byte word and shifts right by (j*b)%8.
    let mut shuf = [-1i8; 32];
    let mut shift = [0i32; 8];
    for j in 0..8 {
        let byte = j * bits / 8;
        let half = (j / 4) * 16; // lanes 4..7 live in the upper 128-bit half
        shuf[half + (j % 4) * 4] = byte as i8;
        shuf[half + (j % 4) * 4 + 1] = (byte + 1) as i8;
        shift[j] = (j * bits % 8) as i32;
    }
    // SAFETY: both arrays are exactly 32 bytes; unaligned loads.
    let (shuf, shift) = unsafe {
        (
            _mm256_loadu_si256(shuf.as_ptr() as *const __m256i),
            _mm256_loadu_si256(shift.as_ptr() as *const __m256i),
        )
    };
    let mask = _mm256_set1_epi32((1i32 << bits) - 1);
    let half = _mm256_set1_epi32(1i32 << (bits - 1));
    let sym = SYM;
    for r in 0..sh.rows {
        let orow = &mut out[r * sh.cols..(r + 1) * sh.cols];
        // The row's whole groups through zipped exact chunks (no per-element bounds
        // checks): 8 codes per step for b=8 and the generic widths, 32 for b=4 when the
        // group is a multiple of 32. The partial last group, if any, goes the general way
        // below. Same arithmetic in every path.
        let full = sh.cols / sh.group;
        if sh.group.is_power_of_two() {
            let k0 = r * sh.gn;
            let o = &mut orow[..full * sh.group];
            let (rs, ro) = (&scales[k0..k0 + full], offsets);
            let ro = if sym { ro } else { &ro[k0..k0 + full] };
            let c = &codes[k0 * sh.gb..];
            // 8-element groups stay on AVX2: two groups per 16 lanes would need blended
            // parameters, which measured slower than two 8-lane steps.
            if wide && sh.group >= 16 {
                // SAFETY: `wide` is set only when the caller found AVX-512 F, BW, VL and VBMI.
                unsafe { whole_groups_pow2_512::<SYM, ADD>(sh, c, rs, ro, o) }
            } else {
                whole_groups_pow2::<SYM, ADD>(sh, c, rs, ro, o, (shuf, shift));
            }
        } else {
            let k0 = r * sh.gn;
            let rc = &codes[k0 * sh.gb..(k0 + full) * sh.gb];
            let rs = &scales[k0..k0 + full];
            for (gi, (o, gc)) in orow[..full * sh.group]
                .chunks_exact_mut(sh.group)
                .zip(rc.chunks_exact(sh.gb))
                .enumerate()
            {
                let s = _mm256_set1_ps(f16_to_f32(rs[gi]));
                let m = if sym {
                    _mm256_setzero_ps()
                } else {
                    _mm256_set1_ps(f16_to_f32(offsets[k0 + gi]))
                };
                let aff8 = |q: __m256i| -> __m256 {
                    if sym {
                        _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(q, half)), s)
                    } else {
                        _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(q), s), m)
                    }
                };
                if sh.bits == 8 {
                    for (oo, src) in o.chunks_exact_mut(8).zip(gc.chunks_exact(8)) {
                        store8(oo, aff8(_mm256_cvtepu8_epi32(load8(src))), mode);
                    }
                    continue;
                }
                if sh.bits != 4 || !sh.group.is_multiple_of(32) {
                    let base = (k0 + gi) * sh.gb;
                    for (j, oo) in o.chunks_exact_mut(8).enumerate() {
                        // Bytes past the group belong to the next group (or are zero past
                        // the end); the mask drops them.
                        let w = load_u64(codes, base + j * bits);
                        store8(oo, aff8(codes8_generic(w, shuf, shift, mask)), mode);
                    }
                    continue;
                }
                for (oo, src) in o.chunks_exact_mut(32).zip(gc.chunks_exact(16)) {
                    let (a, b) = nibbles(load16(src));
                    for (o8, q) in oo.chunks_exact_mut(8).zip(widen32(a, b)) {
                        store8(o8, aff8(q), mode);
                    }
                }
            }
        }
        for gi in full..sh.gn {
            let k = r * sh.gn + gi;
            let sf = f16_to_f32(scales[k]);
            let mf = if sym { 0.0 } else { f16_to_f32(offsets[k]) };
            let s = _mm256_set1_ps(sf);
            let m = _mm256_set1_ps(mf);
            let c0 = gi * sh.group;
            let c1 = (c0 + sh.group).min(sh.cols);
            let o = &mut orow[c0..c1];
            let gstart = k * sh.gb;
            let gc = &codes[gstart..gstart + sh.gb];
            let aff8 = |q: __m256i| -> __m256 {
                if sym {
                    _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(q, half)), s)
                } else {
                    _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(q), s), m)
                }
            };
            let n8 = o.len() / 8 * 8;
            let mut i = 0;
            if bits == 4 {
                // 32 codes (16 bytes) per step: low and high nibbles interleaved.
                while i + 32 <= n8 {
                    let (a, b) = nibbles(load16(&gc[i / 2..]));
                    for (o8, q) in o[i..i + 32].chunks_exact_mut(8).zip(widen32(a, b)) {
                        store8(o8, aff8(q), mode);
                    }
                    i += 32;
                }
            }
            while i < n8 {
                let q = if bits == 8 {
                    let w = load_u64(codes, gstart + i);
                    _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(w as i64))
                } else {
                    // Bytes past the group belong to the next group (or are zero past
                    // the end); the mask drops them.
                    codes8_generic(load_u64(codes, gstart + i / 8 * bits), shuf, shift, mask)
                };
                store8(&mut o[i..i + 8], aff8(q), mode);
                i += 8;
            }
            if i < o.len() {
                let aff = sh.affine(sf, mf);
                super::int_group_scalar(sh.bits, &gc[i / 8 * bits..], aff, &mut o[i..], mode);
            }
        }
    }
}

/// The control of [`codes16_512`]'s bit selection for `B`-bit codes: byte 0 of lane j
/// takes the 8 bits from bit `j*B` of its 64-bit lane (mod 64, so code 15 of a 4-bit
/// qword wraps to bits 60..63 and 0..3; the mask keeps 60..63).
#[inline]
#[target_feature(enable = "avx512f")]
fn shift_control<const B: usize>() -> __m512i {
    let mut c = [0u8; 64];
    for j in 0..16 {
        c[4 * j] = ((j * B) % 64) as u8;
    }
    // SAFETY: `c` is exactly 64 bytes; unaligned load.
    unsafe { _mm512_loadu_si512(c.as_ptr() as *const __m512i) }
}

/// The codes of elements `i..i + 16` of a flat stream of `B`-bit codes (`B` = 2, 4 or 8;
/// `i` a multiple of 16) as 16 u32 lanes. For 2 and 4 bits the 16 codes (32 or 64 bits)
/// are broadcast to every 64-bit lane and each u32 lane picks its own with one
/// `vpmultishiftqb` (`ctl` from [`shift_control`]) and a mask: two vector operations.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi,avx2")]
fn codes16_512<const B: usize>(c: &[u8], i: usize, ctl: __m512i) -> __m512i {
    let mask = _mm512_set1_epi32((1 << B) - 1);
    match B {
        8 => _mm512_cvtepu8_epi32(load16(&c[i..])),
        4 => {
            let w = u64::from_le_bytes(c[i / 2..i / 2 + 8].try_into().unwrap_or([0; 8]));
            let v = _mm512_set1_epi64(w as i64);
            _mm512_and_si512(_mm512_multishift_epi64_epi8(ctl, v), mask)
        }
        _ => {
            let w = u32::from_le_bytes(c[i / 4..i / 4 + 4].try_into().unwrap_or([0; 4]));
            let v = _mm512_set1_epi32(w as i32);
            _mm512_and_si512(_mm512_multishift_epi64_epi8(ctl, v), mask)
        }
    }
}

/// Two asymmetric int stages decoded in one pass, `out = (q1*s1 + m1) + (q2*s2 + m2)` per
/// element: exactly what the first stage's [`int_rows`] (set) then the second's (add)
/// compute, without writing and reading back the first stage's values. `B1`, `B2` are
/// the stages' widths (2, 4 or 8); both use one power-of-two group size of 16 or more
/// (`1 << gshift`) that divides the row length, so the calls' groups, across rows, form
/// one flat stream: group k covers `out[k << gshift..]`, with codes `c1`, `c2`, scales
/// `s1`, `s2` and offsets `m1`, `m2` (checked by the caller).
///
/// # Safety
/// The CPU must support AVX-512 F, BW, VL and VBMI, AVX2 and F16C.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi,avx2,f16c")]
pub(super) unsafe fn int_pair_512<const B1: usize, const B2: usize>(
    gshift: u32,
    c1: &[u8],
    s1: &[f16],
    m1: &[f16],
    c2: &[u8],
    s2: &[f16],
    m2: &[f16],
    out: &mut [f32],
) {
    let (ctl1, ctl2) = (shift_control::<B1>(), shift_control::<B2>());
    let mut p = [[0f32; SEG]; 4];
    for (si, os) in out.chunks_mut(SEG << gshift).enumerate() {
        let g0 = si * SEG;
        let ng = os.len() >> gshift;
        widen(&s1[g0..g0 + ng], &mut p[0][..ng]);
        widen(&m1[g0..g0 + ng], &mut p[1][..ng]);
        widen(&s2[g0..g0 + ng], &mut p[2][..ng]);
        widen(&m2[g0..g0 + ng], &mut p[3][..ng]);
        let e0 = g0 << gshift;
        let (c1, c2) = (&c1[e0 * B1 / 8..], &c2[e0 * B2 / 8..]);
        // The 16 values from segment element `i` (all in one group), codes `q1`, `q2`.
        let value = |q1: __m512i, q2: __m512i, i: usize| -> __m512 {
            let k = i >> gshift;
            let v1 = _mm512_add_ps(
                _mm512_mul_ps(_mm512_cvtepi32_ps(q1), _mm512_set1_ps(p[0][k])),
                _mm512_set1_ps(p[1][k]),
            );
            let v2 = _mm512_add_ps(
                _mm512_mul_ps(_mm512_cvtepi32_ps(q2), _mm512_set1_ps(p[2][k])),
                _mm512_set1_ps(p[3][k]),
            );
            _mm512_add_ps(v1, v2)
        };
        for (j, o) in os.chunks_exact_mut(16).enumerate() {
            let i = j * 16;
            let (q1, q2) = (
                codes16_512::<B1>(c1, i, ctl1),
                codes16_512::<B2>(c2, i, ctl2),
            );
            store16::<false>(o, value(q1, q2, i));
        }
    }
}
