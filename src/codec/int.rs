//! The `int` codec stage: per-group affine integer quantization of a row-major
//! `rows x cols` matrix, the workhorse of every tenpak preset.
//!
//! Normative layout (see the module docs of [`crate::codec::bits`] for the bit order):
//! each row is split into `G = ceil(cols/g)` groups of `g` elements (a group never spans
//! two rows; the last one is padded with code 0). For every row, for every group, the
//! group's `g` codes take `g*b/8` bytes. Scales (and, if asymmetric, offsets) are IEEE
//! f16, one per group, `[rows][G]`. Decoding is `x = f32(q)*f32(s) + f32(m)`
//! (asymmetric) or `x = f32(q - 2^(b-1)) * f32(s)` (symmetric), a multiply then an add,
//! never fused.
//!
//! The symmetric scale may be negative: the encoder maps the element of largest
//! magnitude exactly onto the level `-2^(b-1)`, so the full code range is used whatever
//! that element's sign (the q4_0 idea).

use std::ops::Range;

use half::f16;
use rayon::prelude::*;

use super::bits;
use super::kernels::{self, Backend};
use super::stage::{check_rows, Mode, StageError};

/// Largest group size; bounds the per-group scratch buffers.
pub const MAX_GROUP: usize = 4096;

/// Parameters of an int stage, stored in the tensor's header by the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntParams {
    /// Bits per code, 2..=8.
    pub bits: u8,
    /// Group size along a row, a multiple of 8 in 8..=4096 (so a group is whole bytes).
    pub group: usize,
    /// Symmetric (scale only) or asymmetric (scale and offset).
    pub symmetric: bool,
}

impl IntParams {
    /// Rejects parameters outside the ranges the layout is defined for.
    pub fn validate(&self) -> Result<(), StageError> {
        if !(2..=8).contains(&self.bits) {
            return Err(StageError::InvalidParams("int bits must be in 2..=8"));
        }
        if self.group < 8 || self.group > MAX_GROUP || !self.group.is_multiple_of(8) {
            return Err(StageError::InvalidParams(
                "int group must be a multiple of 8 in 8..=4096",
            ));
        }
        Ok(())
    }

    fn group_bytes(&self) -> usize {
        self.group * self.bits as usize / 8
    }
}

/// Sizes of an int stage's buffers, so the container can validate sections at open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntLayout {
    /// Groups per row, `ceil(cols/group)`.
    pub groups_per_row: usize,
    /// Length of the codes buffer in bytes.
    pub codes_bytes: usize,
    /// Number of f16 scales.
    pub n_scales: usize,
    /// Number of f16 offsets (0 when symmetric).
    pub n_offsets: usize,
}

/// Buffer sizes for a `rows x cols` tensor, or `None` on invalid parameters or overflow.
pub fn layout(rows: usize, cols: usize, p: &IntParams) -> Option<IntLayout> {
    p.validate().ok()?;
    let g = cols.div_ceil(p.group);
    let n = rows.checked_mul(g)?;
    let codes_bytes = n.checked_mul(p.group_bytes())?;
    Some(IntLayout {
        groups_per_row: g,
        codes_bytes,
        n_scales: n,
        n_offsets: if p.symmetric { 0 } else { n },
    })
}

/// Optional search for better per-group parameters than plain min/max.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refine {
    /// Plain min/max (asymmetric) or signed-absmax (symmetric).
    None,
    /// Alternating least squares on (s, m): fit the parameters to the current codes,
    /// round them to f16, re-quantize, and keep the best by actual decoded error;
    /// stops when the error stops falling. Never worse than `None`.
    Opt {
        /// Upper bound on fit/re-quantize rounds per group.
        max_iters: usize,
    },
}

/// An encoded int stage, owning its buffers.
#[derive(Debug, Clone, PartialEq)]
pub struct IntEncoded {
    /// Packed codes, `[rows][G][g*b/8]`.
    pub codes: Vec<u8>,
    /// f16 scales, `[rows][G]`.
    pub scales: Vec<f16>,
    /// f16 offsets, `[rows][G]`; empty when symmetric.
    pub offsets: Vec<f16>,
}

impl IntEncoded {
    /// Borrowed view, the same shape the decoder gets from a mapped file.
    pub fn as_ref(&self) -> IntRef<'_> {
        IntRef {
            codes: &self.codes,
            scales: &self.scales,
            offsets: &self.offsets,
        }
    }
}

/// Borrowed int stage buffers (zero-copy views into a mapped file).
#[derive(Debug, Clone, Copy)]
pub struct IntRef<'a> {
    /// Packed codes.
    pub codes: &'a [u8],
    /// f16 scales.
    pub scales: &'a [f16],
    /// f16 offsets (ignored when symmetric).
    pub offsets: &'a [f16],
}

/// Largest finite f16, used to clamp parameters so they never round to infinity.
const F16_MAX: f32 = 65504.0;

#[inline(always)]
fn to_f16(v: f32) -> f16 {
    f16::from_f32(v.clamp(-F16_MAX, F16_MAX))
}

/// Per-group encoder state: params as decoded and the codes that go with them.
struct GroupFit {
    s: f16,
    m: f16,
    err: f64,
}

/// `v.round()` (nearest, halfway cases away from zero) as an integer clamped to
/// `-1024..=1024`, without a libm call: adding the largest f32 below 0.5 with `v`'s sign and
/// truncating gives exactly `v.round()` for every finite f32 (the sum rounds up to the next
/// integer precisely when `v`'s fraction is >= 0.5), and values beyond the clamp range only
/// ever meet the code clamp. `tests` checks it against `f32::round`.
#[inline(always)]
fn round_clamped(v: f32) -> i32 {
    const BELOW_HALF: f32 = 0.499_999_97; // 0.5 - 2^-25
    (v + BELOW_HALF.copysign(v)).clamp(-1024.0, 1024.0) as i32
}

/// The code of `xv` under (s, m) as decoded: the same value as
/// `((xv / sf).round() + half).clamp(0, qmax)` (symmetric) or
/// `((xv - mf) / sf).round().clamp(0, qmax)` (asymmetric) computed in f32.
#[inline(always)]
fn code_of(xv: f32, sym: bool, sf: f32, mf: f32, half: i32, qmax: i32) -> i32 {
    if sym {
        (round_clamped(xv / sf) + half).clamp(0, qmax)
    } else {
        round_clamped((xv - mf) / sf).clamp(0, qmax)
    }
}

/// Nearest codes for `x` under (s, m) as decoded, written to `q`; returns the
/// weighted squared error of the decoded values.
#[inline(always)]
fn quantize(
    x: &[f32],
    w: Option<&[f32]>,
    bits: u8,
    sym: bool,
    s: f16,
    m: f16,
    q: &mut [u8],
) -> f64 {
    let qmax = (1i32 << bits) - 1;
    let sf = s.to_f32();
    let mf = m.to_f32();
    let half = 1i32 << (bits - 1);
    let mut err = 0.0f64;
    for (j, (&xv, qv)) in x.iter().zip(q.iter_mut()).enumerate() {
        let c = code_of(xv, sym, sf, mf, half, qmax);
        let dec = if sym {
            (c - half) as f32 * sf
        } else {
            c as f32 * sf + mf
        };
        // `c` is in 0..=qmax <= 255.
        *qv = c as u8;
        let e = (dec - xv) as f64;
        let wt = w.map_or(1.0, |w| w[j] as f64);
        err += wt * e * e;
    }
    err
}

/// [`quantize`]'s codes without the error (plain min/max needs no error): a loop the
/// compiler vectorizes.
#[inline(always)]
fn quantize_codes(x: &[f32], bits: u8, sym: bool, s: f16, m: f16, q: &mut [u8]) {
    let qmax = (1i32 << bits) - 1;
    let sf = s.to_f32();
    let mf = m.to_f32();
    let half = 1i32 << (bits - 1);
    for (&xv, qv) in x.iter().zip(q.iter_mut()) {
        *qv = code_of(xv, sym, sf, mf, half, qmax) as u8;
    }
}

/// Encodes one group's real elements `x` into codes `q` (len = x.len()).
#[inline(always)]
fn encode_group(
    x: &[f32],
    w: Option<&[f32]>,
    p: &IntParams,
    refine: Refine,
    q: &mut [u8],
    tmp: &mut [u8],
) -> (f16, f16) {
    let bits = p.bits;
    let sym = p.symmetric;
    let qmax = ((1u32 << bits) - 1) as f32;
    let half = (1i32 << (bits - 1)) as f32;
    let (s0, m0) = if sym {
        let ext = x
            .iter()
            .copied()
            .fold(0.0f32, |a, v| if v.abs() > a.abs() { v } else { a });
        (to_f16(-ext / half), f16::ZERO)
    } else {
        let mn = x.iter().copied().fold(f32::INFINITY, f32::min);
        let mx = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        (to_f16((mx - mn) / qmax), to_f16(mn))
    };
    // A zero (or underflowed) range: any nonzero scale decodes every code 0 to m.
    let s0 = if s0.to_f32() == 0.0 { f16::ONE } else { s0 };
    let Refine::Opt { max_iters } = refine else {
        quantize_codes(x, bits, sym, s0, m0, q);
        return (s0, m0);
    };
    let err0 = quantize(x, w, bits, sym, s0, m0, q);
    let mut best = GroupFit {
        s: s0,
        m: m0,
        err: err0,
    };
    let tmp = &mut tmp[..x.len()];
    tmp.copy_from_slice(q);
    for _ in 0..max_iters {
        // Least-squares (s, m) for the current codes `tmp`, weighted.
        let (mut sw, mut sq, mut sqq, mut sx, mut sqx) = (0.0f64, 0.0, 0.0, 0.0, 0.0);
        for (j, (&xv, &c)) in x.iter().zip(tmp.iter()).enumerate() {
            let wt = w.map_or(1.0, |w| w[j] as f64);
            let qv = if sym {
                c as f64 - half as f64
            } else {
                c as f64
            };
            sw += wt;
            sq += wt * qv;
            sqq += wt * qv * qv;
            sx += wt * xv as f64;
            sqx += wt * qv * xv as f64;
        }
        let (s, m) = if sym {
            if sqq <= 0.0 {
                break;
            }
            (sqx / sqq, 0.0)
        } else {
            let det = sw * sqq - sq * sq;
            if det <= 1e-12 * sw * sqq || sw <= 0.0 {
                break;
            }
            let s = (sw * sqx - sq * sx) / det;
            (s, (sx - s * sq) / sw)
        };
        let s16 = to_f16(s as f32);
        let m16 = to_f16(m as f32);
        if !(s.is_finite() && m.is_finite()) || s16.to_f32() == 0.0 || (!sym && s16.to_f32() < 0.0)
        {
            break;
        }
        let err = quantize(x, w, bits, sym, s16, m16, tmp);
        if err < best.err {
            best = GroupFit {
                s: s16,
                m: m16,
                err,
            };
            q.copy_from_slice(tmp);
        } else {
            break;
        }
    }
    (best.s, best.m)
}

/// The same as [`encode_row`], compiled for AVX2 (wider vectors for the same IEEE
/// operations, so the same bytes).
///
/// # Safety
/// The CPU must support AVX2 and F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
unsafe fn encode_row_avx2(
    xrow: &[f32],
    ws: Option<&[f32]>,
    p: &IntParams,
    refine: Refine,
    crow: &mut [u8],
    srow: &mut [f16],
    orow: &mut [f16],
) {
    encode_row(xrow, ws, p, refine, crow, srow, orow)
}

/// Encodes one row: codes into `crow`, scales into `srow`, offsets into `orow`.
#[inline(always)]
fn encode_row(
    xrow: &[f32],
    ws: Option<&[f32]>,
    p: &IntParams,
    refine: Refine,
    crow: &mut [u8],
    srow: &mut [f16],
    orow: &mut [f16],
) {
    let g = p.group;
    let gb = p.group_bytes();
    let cols = xrow.len();
    let gn = srow.len();
    let mut q = [0u8; MAX_GROUP];
    let mut tmp = [0u8; MAX_GROUP];
    for gi in 0..gn {
        let c0 = gi * g;
        let c1 = (c0 + g).min(cols);
        let xs = &xrow[c0..c1];
        let ws = ws.map(|w| &w[c0..c1]);
        // Padding codes of a partial last group are 0.
        q[xs.len()..g].fill(0);
        let (s, m) = encode_group(xs, ws, p, refine, &mut q[..xs.len()], &mut tmp);
        srow[gi] = s;
        orow[gi] = m;
        let dst = &mut crow[gi * gb..(gi + 1) * gb];
        match p.bits {
            // Same bytes as `bits::pack` (codes are < 2^bits), without its
            // bit accumulator.
            8 => dst.copy_from_slice(&q[..g]),
            4 => {
                for (o, c) in dst.iter_mut().zip(q[..g].chunks_exact(2)) {
                    *o = c[0] | (c[1] << 4);
                }
            }
            _ => {
                // Lengths match by construction (g codes into g*b/8 bytes).
                let ok = bits::pack(&q[..g], p.bits, dst);
                debug_assert!(ok);
            }
        }
    }
}

/// Encodes a row-major `rows x cols` matrix. `col_weights` (len `cols`, finite, >= 0)
/// weights each column's squared error in the refinement (e.g. activation importance).
/// Rows are encoded in parallel; the output is identical for any thread count.
pub fn encode(
    x: &[f32],
    rows: usize,
    cols: usize,
    p: &IntParams,
    refine: Refine,
    col_weights: Option<&[f32]>,
) -> Result<IntEncoded, StageError> {
    p.validate()?;
    let lay = layout(rows, cols, p).ok_or(StageError::Overflow)?;
    let n = rows.checked_mul(cols).ok_or(StageError::Overflow)?;
    super::stage::check_len("int input", x.len(), n)?;
    if x.iter().any(|v| !v.is_finite()) {
        return Err(StageError::NonFinite);
    }
    if let Some(w) = col_weights {
        super::stage::check_len("int column weights", w.len(), cols)?;
        if w.iter().any(|v| !v.is_finite() || *v < 0.0) {
            return Err(StageError::InvalidParams(
                "column weights must be finite and >= 0",
            ));
        }
    }
    let mut codes = vec![0u8; lay.codes_bytes];
    let mut scales = vec![f16::ZERO; lay.n_scales];
    let mut offsets = vec![f16::ZERO; lay.n_scales];
    if n == 0 {
        offsets.truncate(lay.n_offsets);
        return Ok(IntEncoded {
            codes,
            scales,
            offsets,
        });
    }
    let gn = lay.groups_per_row;
    let gb = p.group_bytes();
    let be = kernels::detect();
    codes
        .par_chunks_mut(gn * gb)
        .zip(scales.par_chunks_mut(gn))
        .zip(offsets.par_chunks_mut(gn))
        .enumerate()
        .for_each(|(r, ((crow, srow), orow))| {
            let xrow = &x[r * cols..(r + 1) * cols];
            let ws = col_weights;
            match be {
                #[cfg(target_arch = "x86_64")]
                Backend::Avx2 | Backend::Avx512 => {
                    // SAFETY: `be` is Avx2 or Avx512 only when `kernels::detect` found AVX2 and F16C.
                    unsafe { encode_row_avx2(xrow, ws, p, refine, crow, srow, orow) }
                }
                _ => encode_row(xrow, ws, p, refine, crow, srow, orow),
            }
        });
    offsets.truncate(lay.n_offsets);
    Ok(IntEncoded {
        codes,
        scales,
        offsets,
    })
}

/// Decodes `rows` of the tensor into `out` (len `rows.len() * cols`), with the
/// fastest backend this CPU supports.
pub fn decode_rows(
    enc: IntRef<'_>,
    cols: usize,
    p: &IntParams,
    rows: Range<usize>,
    out: &mut [f32],
    mode: Mode,
) -> Result<(), StageError> {
    decode_rows_with(kernels::detect(), enc, cols, p, rows, out, mode)
}

/// [`decode_rows`] with a chosen backend (falls back to scalar if the CPU lacks it),
/// so tests and benchmarks can compare the paths.
pub fn decode_rows_with(
    be: Backend,
    enc: IntRef<'_>,
    cols: usize,
    p: &IntParams,
    rows: Range<usize>,
    out: &mut [f32],
    mode: Mode,
) -> Result<(), StageError> {
    p.validate()?;
    check_rows(&rows, usize::MAX)?;
    let lay = layout(rows.end, cols, p).ok_or(StageError::Overflow)?;
    let nrows = rows.end - rows.start;
    let need_out = nrows.checked_mul(cols).ok_or(StageError::Overflow)?;
    super::stage::check_len("int output", out.len(), need_out)?;
    if enc.codes.len() < lay.codes_bytes {
        return Err(StageError::Length {
            what: "int codes",
            expected: lay.codes_bytes,
            got: enc.codes.len(),
        });
    }
    if enc.scales.len() < lay.n_scales {
        return Err(StageError::Length {
            what: "int scales",
            expected: lay.n_scales,
            got: enc.scales.len(),
        });
    }
    if enc.offsets.len() < lay.n_offsets {
        return Err(StageError::Length {
            what: "int offsets",
            expected: lay.n_offsets,
            got: enc.offsets.len(),
        });
    }
    if need_out == 0 {
        return Ok(());
    }
    let gn = lay.groups_per_row;
    let gb = p.group_bytes();
    // Both products are bounded by the layout sizes checked above.
    let (k0, k1) = (rows.start * gn, rows.end * gn);
    let ok = kernels::int_rows(
        be,
        p.bits,
        p.group,
        p.symmetric,
        &enc.codes[k0 * gb..k1 * gb],
        &enc.scales[k0..k1],
        if p.symmetric {
            &[]
        } else {
            &enc.offsets[k0..k1]
        },
        cols,
        out,
        mode,
    );
    if !ok {
        return Err(StageError::InvalidParams(
            "int buffers do not match the layout",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_clamped_equals_round() {
        let check = |v: f32| {
            let want = v.round().clamp(-1024.0, 1024.0) as i32;
            assert_eq!(round_clamped(v), want, "{v:e} ({:#x})", v.to_bits());
        };
        // Every f32 around the halfway points of small integers, and a stride through all
        // finite bit patterns.
        for k in -600i32..600 {
            let h = k as f32 + 0.5;
            let mut v = h;
            let mut u = h;
            for _ in 0..64 {
                check(v);
                check(u);
                v = f32::from_bits(v.to_bits() + 1);
                u = f32::from_bits(u.to_bits() - 1);
            }
        }
        for b in (0..u32::MAX).step_by(4099) {
            let v = f32::from_bits(b);
            if v.is_finite() {
                check(v);
            }
        }
        for v in [
            0.0,
            -0.0,
            0.5,
            -0.5,
            0.49999997,
            -0.49999997,
            1.5,
            2.5,
            8388607.5,
            1e30,
            -1e30,
        ] {
            check(v);
        }
    }
}
