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
        if self.group < 8 || self.group > MAX_GROUP || self.group % 8 != 0 {
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

fn to_f16(v: f32) -> f16 {
    f16::from_f32(v.clamp(-F16_MAX, F16_MAX))
}

/// Per-group encoder state: params as decoded and the codes that go with them.
struct GroupFit {
    s: f16,
    m: f16,
    err: f64,
}

/// Nearest codes for `x` under (s, m) as decoded, written to `q`; returns the
/// weighted squared error of the decoded values.
fn quantize(
    x: &[f32],
    w: Option<&[f32]>,
    bits: u8,
    sym: bool,
    s: f16,
    m: f16,
    q: &mut [u8],
) -> f64 {
    let qmax = ((1u32 << bits) - 1) as f32;
    let sf = s.to_f32();
    let mf = m.to_f32();
    let half = (1i32 << (bits - 1)) as f32;
    let mut err = 0.0f64;
    for (j, (&xv, qv)) in x.iter().zip(q.iter_mut()).enumerate() {
        let (code, dec) = if sym {
            let c = ((xv / sf).round() + half).clamp(0.0, qmax);
            (c, (c as i32 - half as i32) as f32 * sf)
        } else {
            let c = ((xv - mf) / sf).round().clamp(0.0, qmax);
            (c, c * sf + mf)
        };
        // `c` is finite (inputs are checked finite, s != 0) and in 0..=qmax.
        *qv = code as u8;
        let e = (dec - xv) as f64;
        let wt = w.map_or(1.0, |w| w[j] as f64);
        err += wt * e * e;
    }
    err
}

/// Encodes one group's real elements `x` into codes `q` (len = x.len()).
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
    let err0 = quantize(x, w, bits, sym, s0, m0, q);
    let mut best = GroupFit {
        s: s0,
        m: m0,
        err: err0,
    };
    let Refine::Opt { max_iters } = refine else {
        return (best.s, best.m);
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
    let g = p.group;
    let gn = lay.groups_per_row;
    let gb = p.group_bytes();
    codes
        .par_chunks_mut(gn * gb)
        .zip(scales.par_chunks_mut(gn))
        .zip(offsets.par_chunks_mut(gn))
        .enumerate()
        .for_each(|(r, ((crow, srow), orow))| {
            let xrow = &x[r * cols..(r + 1) * cols];
            let mut q = [0u8; MAX_GROUP];
            let mut tmp = [0u8; MAX_GROUP];
            for gi in 0..gn {
                let c0 = gi * g;
                let c1 = (c0 + g).min(cols);
                let xs = &xrow[c0..c1];
                let ws = col_weights.map(|w| &w[c0..c1]);
                q[..g].fill(0);
                let (s, m) = encode_group(xs, ws, p, refine, &mut q[..xs.len()], &mut tmp);
                srow[gi] = s;
                orow[gi] = m;
                // Lengths match by construction (g codes into g*b/8 bytes).
                let ok = bits::pack(&q[..g], p.bits, &mut crow[gi * gb..(gi + 1) * gb]);
                debug_assert!(ok);
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
