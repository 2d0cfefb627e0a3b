//! Decode kernels of the codec stages: a plain scalar reference for every stage and x86
//! fast paths, chosen at run time in this one place ([`detect`]): AVX2/F16C for int rows
//! of every width, low-rank products, vq search and f16 widening, and AVX-512 (F, BW, VL
//! and VBMI) for int rows whose groups are 16 or longer and for two int stages decoded in
//! one pass ([`int_pair_rows`]).
//!
//! Every fast path performs exactly the same IEEE f32 operations in the same order as
//! its scalar reference (separate multiply and add, never a fused multiply-add), so the
//! two are bit-identical; the tests here and in `tests/codec_stages.rs` check every
//! backend the CPU has against the reference.

use std::sync::OnceLock;

use half::f16;

use super::stage::Mode;

#[cfg(target_arch = "x86_64")]
mod x86;

/// Which implementation a decoder uses; public so tests and benchmarks can pin one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Portable scalar reference.
    Scalar,
    /// x86-64 with AVX2 and F16C.
    Avx2,
    /// x86-64 with AVX2, F16C and AVX-512 F, BW, VL and VBMI (Ice Lake, Zen 4 and later):
    /// the int row kernels, the fused two-stage int kernel, the nearest-centroid search and
    /// the int encoder use 16-lane (or 8 x f64) registers; every other kernel runs its AVX2
    /// path.
    Avx512,
}

impl Backend {
    /// Every backend this CPU can run, scalar first (for tests and benchmarks).
    pub fn available() -> Vec<Backend> {
        let mut v = vec![Backend::Scalar];
        if usable(Backend::Avx2) == Backend::Avx2 {
            v.push(Backend::Avx2);
        }
        if usable(Backend::Avx512) == Backend::Avx512 {
            v.push(Backend::Avx512);
        }
        v
    }

    /// Whether the AVX2 + F16C paths may run (AVX2 itself, or AVX-512 on top of it).
    pub fn has_avx2(self) -> bool {
        matches!(self, Backend::Avx2 | Backend::Avx512)
    }
}

/// The fastest backend this CPU supports, detected once per process.
pub fn detect() -> Backend {
    static LEVEL: OnceLock<Backend> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("f16c")
            {
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("avx512vbmi")
                {
                    return Backend::Avx512;
                }
                return Backend::Avx2;
            }
        }
        Backend::Scalar
    })
}

/// Returns `be` if this CPU can run it, else the scalar reference, so a caller asking
/// for AVX2 on an old CPU can never execute an illegal instruction.
pub fn usable(be: Backend) -> Backend {
    match (be, detect()) {
        (Backend::Avx512, Backend::Avx512) => Backend::Avx512,
        (Backend::Avx2 | Backend::Avx512, d) if d.has_avx2() => Backend::Avx2,
        _ => Backend::Scalar,
    }
}

/// The affine map from a code q to a value, as the int stage defines it.
#[derive(Debug, Clone, Copy)]
pub enum Affine {
    /// x = f32(q) * s + m.
    Asym {
        /// Scale (already widened from f16).
        s: f32,
        /// Offset (already widened from f16).
        m: f32,
    },
    /// x = f32(q - half) * s.
    Sym {
        /// Scale (already widened from f16).
        s: f32,
        /// 2^(b-1).
        half: i32,
    },
}

impl Affine {
    #[inline(always)]
    fn apply(self, q: u32) -> f32 {
        match self {
            Affine::Asym { s, m } => q as f32 * s + m,
            Affine::Sym { s, half } => (q as i32 - half) as f32 * s,
        }
    }
}

#[inline(always)]
fn put(o: &mut f32, v: f32, mode: Mode) {
    match mode {
        Mode::Set => *o = v,
        Mode::Add => *o += v,
    }
}

/// Decodes the first `out.len()` codes of one group of `bits`-bit codes. Does nothing
/// if `bits` is not in 1..=8 or `codes` is too short (callers validate first).
pub fn int_group(be: Backend, bits: u8, codes: &[u8], aff: Affine, out: &mut [f32], mode: Mode) {
    if !(1..=8).contains(&bits) {
        return;
    }
    let need = (out.len() * bits as usize).div_ceil(8);
    let Some(codes) = codes.get(..need) else {
        return;
    };
    match usable(be) {
        #[cfg(target_arch = "x86_64")]
        Backend::Avx2 | Backend::Avx512 if bits == 4 || bits == 8 => {
            // SAFETY: `usable` returned Avx2 only after runtime detection of AVX2 and F16C.
            unsafe { x86::int_group(bits, codes, aff, out, mode) }
        }
        _ => int_group_scalar(bits, codes, aff, out, mode),
    }
}

/// Decodes whole rows of an int stage: `codes` holds `out.len() / cols` rows of
/// `ceil(cols/group)` groups of `group*bits/8` bytes, `scales` (and, when asymmetric,
/// `offsets`) one f16 per group of those rows. This is the one place the int decoder picks
/// its backend. Returns `false`, writing nothing, if the parameters or lengths disagree
/// (callers validate first, so this is never reached from a checked file).
#[allow(clippy::too_many_arguments)]
pub fn int_rows(
    be: Backend,
    bits: u8,
    group: usize,
    symmetric: bool,
    codes: &[u8],
    scales: &[f16],
    offsets: &[f16],
    cols: usize,
    out: &mut [f32],
    mode: Mode,
) -> bool {
    let Some(shape) = IntRowsShape::check(
        bits,
        group,
        symmetric,
        codes,
        scales,
        offsets,
        cols,
        out.len(),
    ) else {
        return false;
    };
    match usable(be) {
        #[cfg(target_arch = "x86_64")]
        Backend::Avx2 | Backend::Avx512 => {
            let wide = usable(be) == Backend::Avx512;
            // SAFETY: `usable` returned Avx2 or Avx512 only after runtime detection of AVX2
            // and F16C, and Avx512 (`wide`) only after detecting AVX-512 F, BW, VL and VBMI;
            // `shape` was checked against every buffer's length just above.
            unsafe { x86::int_rows(&shape, codes, scales, offsets, out, mode, wide) }
        }
        _ => int_rows_scalar(&shape, codes, scales, offsets, out, mode),
    }
    true
}

/// Checked geometry of an [`int_rows`] call.
#[derive(Debug, Clone, Copy)]
struct IntRowsShape {
    bits: u8,
    group: usize,
    symmetric: bool,
    cols: usize,
    /// Groups per row.
    gn: usize,
    /// Bytes per group.
    gb: usize,
    rows: usize,
}

impl IntRowsShape {
    #[allow(clippy::too_many_arguments)]
    fn check(
        bits: u8,
        group: usize,
        symmetric: bool,
        codes: &[u8],
        scales: &[f16],
        offsets: &[f16],
        cols: usize,
        n_out: usize,
    ) -> Option<Self> {
        if !(1..=8).contains(&bits)
            || group == 0
            || !group.is_multiple_of(8)
            || cols == 0
            || !n_out.is_multiple_of(cols)
        {
            return None;
        }
        let rows = n_out / cols;
        let gn = cols.div_ceil(group);
        let gb = group / 8 * bits as usize;
        let n_groups = rows.checked_mul(gn)?;
        if codes.len() != n_groups.checked_mul(gb)?
            || scales.len() != n_groups
            || (!symmetric && offsets.len() != n_groups)
        {
            return None;
        }
        Some(Self {
            bits,
            group,
            symmetric,
            cols,
            gn,
            gb,
            rows,
        })
    }

    /// The affine map of group `k` (row-major over all groups of the call).
    #[inline(always)]
    fn affine(&self, s: f32, m: f32) -> Affine {
        if self.symmetric {
            Affine::Sym {
                s,
                half: 1 << (self.bits - 1),
            }
        } else {
            Affine::Asym { s, m }
        }
    }
}

/// One int stage's buffers for the rows of an [`int_pair_rows`] call (the same layout as
/// [`int_rows`]'s arguments).
#[derive(Debug, Clone, Copy)]
pub struct IntStage<'a> {
    /// Bits per code.
    pub bits: u8,
    /// Group size.
    pub group: usize,
    /// Symmetric (no offsets).
    pub symmetric: bool,
    /// Packed codes of the rows.
    pub codes: &'a [u8],
    /// One scale per group of the rows.
    pub scales: &'a [f16],
    /// One offset per group of the rows (empty when symmetric).
    pub offsets: &'a [f16],
}

/// Decodes two int stages of the same rows at once: `out = first + second` element by
/// element, bit for bit what [`int_rows`] gives with `Mode::Set` for `first` then
/// `Mode::Add` for `second`, in one pass over `out` instead of two (a two-stage tensor such
/// as `int4_residual` otherwise writes its output, reads it back and writes it again).
///
/// Returns `false`, writing nothing, where no fused kernel applies; the caller then runs
/// the two passes. It applies on AVX-512 to two asymmetric stages of 2, 4 or 8 bits with
/// one power-of-two group size of 16 or more that divides `cols`.
pub fn int_pair_rows(
    be: Backend,
    first: IntStage<'_>,
    second: IntStage<'_>,
    cols: usize,
    out: &mut [f32],
) -> bool {
    let g = first.group;
    if usable(be) != Backend::Avx512
        || first.symmetric
        || second.symmetric
        || second.group != g
        || !g.is_power_of_two()
        || g < 16
        || cols == 0
        || !cols.is_multiple_of(g)
    {
        return false;
    }
    let shape = |s: &IntStage<'_>| {
        IntRowsShape::check(
            s.bits,
            s.group,
            s.symmetric,
            s.codes,
            s.scales,
            s.offsets,
            cols,
            out.len(),
        )
    };
    if shape(&first).is_none() || shape(&second).is_none() {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let gshift = g.trailing_zeros();
        let (a, b) = (first, second);
        macro_rules! pair {
            ($b1:literal, $b2:literal) => {
                // SAFETY: `usable` returned Avx512 only after runtime detection of AVX-512
                // F, BW, VL and VBMI, AVX2 and F16C; both stages' buffers were checked against
                // `cols` and `out.len()` above, with whole groups of 2^gshift >= 16.
                unsafe {
                    x86::int_pair_512::<$b1, $b2>(
                        gshift, a.codes, a.scales, a.offsets, b.codes, b.scales, b.offsets, out,
                    )
                }
            };
        }
        match (a.bits, b.bits) {
            (4, 2) => pair!(4, 2),
            (4, 4) => pair!(4, 4),
            (8, 2) => pair!(8, 2),
            (8, 4) => pair!(8, 4),
            (2, 2) => pair!(2, 2),
            (8, 8) => pair!(8, 8),
            (2, 4) => pair!(2, 4),
            (4, 8) => pair!(4, 8),
            (2, 8) => pair!(2, 8),
            _ => return false,
        }
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Scalar reference for [`int_rows`]: group by group, [`int_group_scalar`].
fn int_rows_scalar(
    sh: &IntRowsShape,
    codes: &[u8],
    scales: &[f16],
    offsets: &[f16],
    out: &mut [f32],
    mode: Mode,
) {
    for r in 0..sh.rows {
        let orow = &mut out[r * sh.cols..(r + 1) * sh.cols];
        for gi in 0..sh.gn {
            let k = r * sh.gn + gi;
            let m = if sh.symmetric {
                0.0
            } else {
                offsets[k].to_f32()
            };
            let aff = sh.affine(scales[k].to_f32(), m);
            let c0 = gi * sh.group;
            let c1 = (c0 + sh.group).min(sh.cols);
            int_group_scalar(
                sh.bits,
                &codes[k * sh.gb..(k + 1) * sh.gb],
                aff,
                &mut orow[c0..c1],
                mode,
            );
        }
    }
}

/// Scalar reference for [`int_group`]; `codes` holds at least the packed bytes of
/// `out.len()` codes (checked by the caller).
fn int_group_scalar(bits: u8, codes: &[u8], aff: Affine, out: &mut [f32], mode: Mode) {
    let mask = (1u32 << bits) - 1;
    let mut acc: u32 = 0;
    let mut nacc: u32 = 0;
    let mut it = codes.iter();
    for o in out.iter_mut() {
        if nacc < bits as u32 {
            acc |= (*it.next().unwrap_or(&0) as u32) << nacc;
            nacc += 8;
        }
        let q = acc & mask;
        acc >>= bits;
        nacc -= bits as u32;
        put(o, aff.apply(q), mode);
    }
}

/// Low-rank product rows: `out[i][j] (=|+=) sum_t left[i][t] * right[t][j]` for the
/// `out.len() / cols` rows of `left` (row-major, `rank` per row) against `right` (row-major
/// `rank x cols`), both already widened to f32. Every element is accumulated in the same
/// order by every backend, `acc = l0*r0`, then `acc = acc + lt*rt` for t = 1.., each
/// product and sum rounded to f32 (never fused), then stored or added; the backends differ
/// only in how many elements they carry at once. Returns `false`, writing nothing, if the
/// lengths disagree or `rank` or `cols` is 0.
pub fn lowrank_rows(
    be: Backend,
    left: &[f32],
    right: &[f32],
    rank: usize,
    cols: usize,
    out: &mut [f32],
    mode: Mode,
) -> bool {
    if rank == 0 || cols == 0 || !out.len().is_multiple_of(cols) {
        return false;
    }
    let rows = out.len() / cols;
    if rows.checked_mul(rank) != Some(left.len()) || rank.checked_mul(cols) != Some(right.len()) {
        return false;
    }
    match usable(be) {
        #[cfg(target_arch = "x86_64")]
        Backend::Avx2 | Backend::Avx512 => {
            // SAFETY: `usable` returned Avx2 or Avx512 only after runtime detection of AVX2;
            // the lengths were checked just above.
            unsafe { x86::lowrank_rows(left, right, rank, cols, out, mode) }
        }
        _ => lowrank_rows_scalar(left, right, rank, cols, out, mode),
    }
    true
}

/// Scalar reference for [`lowrank_rows`] (lengths checked by the caller).
fn lowrank_rows_scalar(
    left: &[f32],
    right: &[f32],
    rank: usize,
    cols: usize,
    out: &mut [f32],
    mode: Mode,
) {
    let mut acc = vec![0f32; cols];
    for (orow, lrow) in out.chunks_exact_mut(cols).zip(left.chunks_exact(rank)) {
        for (a, rv) in acc.iter_mut().zip(&right[..cols]) {
            *a = lrow[0] * rv;
        }
        for (t, &lt) in lrow.iter().enumerate().skip(1) {
            for (a, rv) in acc.iter_mut().zip(&right[t * cols..(t + 1) * cols]) {
                *a += lt * rv;
            }
        }
        for (o, &a) in orow.iter_mut().zip(&acc) {
            put(o, a, mode);
        }
    }
}

/// Decodes one row of a vq stage: `out[v*d + j] = C[idx[v]][j]` for the `out.len()`
/// real positions. `indices` yields one codebook index per vector. Returns `false`
/// (possibly after writing a prefix) if an index is outside the codebook or `d` is 0.
pub fn vq_row(
    be: Backend,
    codebook: &[f16],
    d: usize,
    indices: impl Iterator<Item = usize>,
    out: &mut [f32],
    mode: Mode,
) -> bool {
    if d == 0 {
        return false;
    }
    let be = usable(be);
    let mut chunks = out.chunks_mut(d);
    for idx in indices {
        let Some(o) = chunks.next() else {
            return true;
        };
        let Some(start) = idx.checked_mul(d) else {
            return false;
        };
        let Some(c) = codebook.get(start..start + o.len()) else {
            return false;
        };
        match be {
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2 | Backend::Avx512 => {
                // SAFETY: `usable` returned Avx2 only after runtime detection of AVX2 and F16C.
                unsafe { x86::copy_f16(c, o, mode) }
            }
            _ => copy_f16_scalar(c, o, mode),
        }
    }
    true
}

fn copy_f16_scalar(c: &[f16], o: &mut [f32], mode: Mode) {
    for (o, c) in o.iter_mut().zip(c) {
        put(o, c.to_f32(), mode);
    }
}

/// Index of the centroid nearest to `x` in squared L2 distance, ties to the lowest
/// index. Centroids are stored coordinate-major (`ct[j*k + c]` is coordinate j of
/// centroid c, `ct.len() >= x.len()*k`); only the `x.len()` given coordinates count.
/// `dist` is scalar scratch of length `>= k`. Each distance is computed as
/// `((0 + e0²) + e1²) + ...` in f32 by every backend, so all backends agree.
/// Returns 0 if the buffers are too short (callers size them; never out of bounds).
pub fn nearest(be: Backend, x: &[f32], ct: &[f32], k: usize, dist: &mut [f32]) -> usize {
    let Some(need) = x.len().checked_mul(k) else {
        return 0;
    };
    if ct.len() < need || k == 0 {
        return 0;
    }
    match usable(be) {
        #[cfg(target_arch = "x86_64")]
        Backend::Avx512 if x.len() <= 16 => {
            // SAFETY: `usable` returned Avx512 only after runtime detection of AVX-512 F, BW
            // and VL, AVX2 and F16C, and `ct.len() >= x.len()*k` was checked above.
            unsafe { x86::nearest512(x, ct, k) }
        }
        #[cfg(target_arch = "x86_64")]
        Backend::Avx2 if x.len() <= 16 => {
            // SAFETY: `usable` returned Avx2 only after runtime detection of AVX2 and F16C,
            // and `ct.len() >= x.len()*k` was checked above.
            unsafe { x86::nearest(x, ct, k) }
        }
        _ => {
            let Some(dist) = dist.get_mut(..k) else {
                return 0;
            };
            dist.fill(0.0);
            for (j, &xj) in x.iter().enumerate() {
                for (dv, &cv) in dist.iter_mut().zip(&ct[j * k..(j + 1) * k]) {
                    let e = xj - cv;
                    *dv += e * e;
                }
            }
            let mut best = 0usize;
            let mut bd = dist[0];
            for (c, &dv) in dist.iter().enumerate().skip(1) {
                if dv < bd {
                    bd = dv;
                    best = c;
                }
            }
            best
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::stage::SplitMix64;

    /// A random finite f16 (any bit pattern but infinities and NaNs).
    fn f16_finite(rng: &mut SplitMix64) -> f16 {
        loop {
            let h = f16::from_bits(rng.next_u64() as u16);
            if h.is_finite() {
                return h;
            }
        }
    }

    /// Random codes and random finite f16 parameters: the AVX2 rows kernel equals the
    /// scalar reference bit for bit for every width, group sizes that are not a multiple of
    /// 32, and row lengths that end in a partial (padded) group.
    #[test]
    fn int_rows_simd_matches_scalar_bit_exactly() {
        let mut rng = SplitMix64::new(77);
        for bits in 1..=8u8 {
            for group in [8usize, 16, 24, 32, 40, 64, 96, 128, 256, 4096] {
                for cols in [1usize, 7, 8, 9, 24, 31, 33, 63, 100, 257, 1064, 4100] {
                    for symmetric in [false, true] {
                        let rows = 3;
                        let gn = cols.div_ceil(group);
                        let gb = group / 8 * bits as usize;
                        let codes: Vec<u8> =
                            (0..rows * gn * gb).map(|_| rng.next_u64() as u8).collect();
                        let scales: Vec<f16> =
                            (0..rows * gn).map(|_| f16_finite(&mut rng)).collect();
                        let offsets: Vec<f16> = if symmetric {
                            Vec::new()
                        } else {
                            (0..rows * gn).map(|_| f16_finite(&mut rng)).collect()
                        };
                        let base: Vec<f32> = (0..rows * cols)
                            .map(|_| rng.next_f64() as f32 - 0.5)
                            .collect();
                        for mode in [Mode::Set, Mode::Add] {
                            let mut a = base.clone();
                            assert!(int_rows(
                                Backend::Scalar,
                                bits,
                                group,
                                symmetric,
                                &codes,
                                &scales,
                                &offsets,
                                cols,
                                &mut a,
                                mode
                            ));
                            let ab: Vec<u32> = a.iter().map(|f| f.to_bits()).collect();
                            for be in Backend::available() {
                                let mut b = base.clone();
                                assert!(int_rows(
                                    be, bits, group, symmetric, &codes, &scales, &offsets, cols,
                                    &mut b, mode
                                ));
                                let bb: Vec<u32> = b.iter().map(|f| f.to_bits()).collect();
                                assert_eq!(
                                    ab, bb,
                                    "{be:?} b={bits} g={group} cols={cols} sym={symmetric} {mode:?}"
                                );
                            }
                        }
                        // A short buffer is refused, nothing written.
                        let mut o = base.clone();
                        assert!(!int_rows(
                            Backend::Avx2,
                            bits,
                            group,
                            symmetric,
                            &codes[1..],
                            &scales,
                            &offsets,
                            cols,
                            &mut o,
                            Mode::Set
                        ));
                        assert_eq!(o, base);
                    }
                }
            }
        }
    }

    /// The fused two-stage int kernel equals the scalar reference's two passes (set, then
    /// add) bit for bit, for every width pair it takes, group sizes 16..256 and row lengths
    /// with an odd number of 16-element groups; it declines (writing nothing) every case
    /// it does not take, and on CPUs without it.
    #[test]
    fn int_pair_rows_matches_two_scalar_passes() {
        let mut rng = SplitMix64::new(5);
        let wide = usable(Backend::Avx512) == Backend::Avx512;
        let mut fused = 0;
        for (b1, b2) in [
            (4u8, 2u8),
            (4, 4),
            (8, 2),
            (8, 4),
            (2, 2),
            (8, 8),
            (2, 4),
            (4, 8),
            (2, 8),
            (3, 2),
        ] {
            for group in [16usize, 32, 64, 256] {
                for cols in [group, 3 * group, 4 * group, 1536, 1000] {
                    let rows = 3;
                    let gn = cols.div_ceil(group);
                    let mk = |rng: &mut SplitMix64, bits: u8| {
                        let codes: Vec<u8> = (0..rows * gn * group / 8 * bits as usize)
                            .map(|_| rng.next_u64() as u8)
                            .collect();
                        let scales: Vec<f16> = (0..rows * gn).map(|_| f16_finite(rng)).collect();
                        let offsets: Vec<f16> = (0..rows * gn).map(|_| f16_finite(rng)).collect();
                        (codes, scales, offsets)
                    };
                    let (c1, s1, m1) = mk(&mut rng, b1);
                    let (c2, s2, m2) = mk(&mut rng, b2);
                    let n = rows * cols;
                    let mut want = vec![0f32; n];
                    assert!(int_rows(
                        Backend::Scalar,
                        b1,
                        group,
                        false,
                        &c1,
                        &s1,
                        &m1,
                        cols,
                        &mut want,
                        Mode::Set
                    ));
                    assert!(int_rows(
                        Backend::Scalar,
                        b2,
                        group,
                        false,
                        &c2,
                        &s2,
                        &m2,
                        cols,
                        &mut want,
                        Mode::Add
                    ));
                    let st = |bits, codes, scales, offsets| IntStage {
                        bits,
                        group,
                        symmetric: false,
                        codes,
                        scales,
                        offsets,
                    };
                    let (a, b) = (
                        st(b1, &c1[..], &s1[..], &m1[..]),
                        st(b2, &c2[..], &s2[..], &m2[..]),
                    );
                    let takes = wide && b1 != 3 && cols.is_multiple_of(group);
                    for be in Backend::available() {
                        let mut got = vec![-7f32; n];
                        let did = int_pair_rows(be, a, b, cols, &mut got);
                        assert_eq!(
                            did,
                            takes && be == Backend::Avx512,
                            "{be:?} b={b1}+{b2} g={group} cols={cols}"
                        );
                        if did {
                            fused += 1;
                            let wb: Vec<u32> = want.iter().map(|f| f.to_bits()).collect();
                            let gb: Vec<u32> = got.iter().map(|f| f.to_bits()).collect();
                            assert_eq!(wb, gb, "b={b1}+{b2} g={group} cols={cols}");
                        } else {
                            assert!(got.iter().all(|&v| v == -7.0));
                        }
                    }
                    // Declined: a symmetric stage, different groups, short buffers.
                    let mut o = vec![-7f32; n];
                    let sym = IntStage {
                        symmetric: true,
                        offsets: &[],
                        ..a
                    };
                    assert!(!int_pair_rows(Backend::Avx512, sym, b, cols, &mut o));
                    let other = IntStage {
                        group: group * 2,
                        ..b
                    };
                    assert!(!int_pair_rows(Backend::Avx512, a, other, cols, &mut o));
                    let short = IntStage {
                        codes: &c2[1..],
                        ..b
                    };
                    assert!(!int_pair_rows(Backend::Avx512, a, short, cols, &mut o));
                    assert!(o.iter().all(|&v| v == -7.0));
                }
            }
        }
        assert_eq!(fused > 0, wide, "the fused kernel ran iff the CPU has it");
    }

    /// The blocked low-rank kernel equals the scalar reference bit for bit, for row counts
    /// and column counts around its block sizes, Set and Add; bad lengths are declined.
    #[test]
    fn lowrank_rows_simd_matches_scalar_bit_exactly() {
        let mut rng = SplitMix64::new(31);
        for rank in [1usize, 2, 7, 32] {
            for rows in [1usize, 3, 4, 5, 9] {
                for cols in [1usize, 7, 8, 15, 16, 17, 40, 100] {
                    let mut g = || (rng.next_f64() * 2.0 - 1.0) as f32;
                    let left: Vec<f32> = (0..rows * rank).map(|_| g()).collect();
                    let right: Vec<f32> = (0..rank * cols).map(|_| g()).collect();
                    let base: Vec<f32> = (0..rows * cols).map(|_| g()).collect();
                    for mode in [Mode::Set, Mode::Add] {
                        let mut want = base.clone();
                        assert!(lowrank_rows(
                            Backend::Scalar,
                            &left,
                            &right,
                            rank,
                            cols,
                            &mut want,
                            mode
                        ));
                        let w: Vec<u32> = want.iter().map(|f| f.to_bits()).collect();
                        for be in Backend::available() {
                            let mut got = base.clone();
                            assert!(lowrank_rows(be, &left, &right, rank, cols, &mut got, mode));
                            let gb: Vec<u32> = got.iter().map(|f| f.to_bits()).collect();
                            assert_eq!(w, gb, "{be:?} r={rank} {rows}x{cols} {mode:?}");
                        }
                    }
                    let mut o = base.clone();
                    assert!(!lowrank_rows(
                        detect(),
                        &left[1..],
                        &right,
                        rank,
                        cols,
                        &mut o,
                        Mode::Set
                    ));
                    assert!(!lowrank_rows(
                        detect(),
                        &left,
                        &right,
                        0,
                        cols,
                        &mut o,
                        Mode::Set
                    ));
                    assert_eq!(o, base);
                }
            }
        }
    }

    #[test]
    fn nearest_simd_matches_scalar_including_ties() {
        let mut rng = SplitMix64::new(9);
        for k in [2usize, 7, 8, 9, 15, 16, 17, 31, 48, 256, 300] {
            for d in 1..=16 {
                // Coarse values so exact ties (equal distances) are frequent.
                let mut ct: Vec<f32> = (0..k * d)
                    .map(|_| (rng.next_f64() * 4.0).floor() as f32)
                    .collect();
                // Duplicate centroid 0 at the end (ties must go to index 0).
                for j in 0..d {
                    ct[j * k + k - 1] = ct[j * k];
                }
                let mut dist = vec![0.0; k];
                for _ in 0..50 {
                    let n = 1 + (rng.next_u64() as usize) % d;
                    let x: Vec<f32> = (0..n)
                        .map(|_| (rng.next_f64() * 4.0).floor() as f32)
                        .collect();
                    let a = nearest(Backend::Scalar, &x, &ct, k, &mut dist);
                    for be in Backend::available() {
                        let b = nearest(be, &x, &ct, k, &mut dist);
                        assert_eq!(a, b, "{be:?} k={k} d={d} x={x:?}");
                    }
                }
            }
        }
    }
}
