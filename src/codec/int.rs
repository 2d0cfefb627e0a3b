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
use half::slice::HalfFloatSliceExt;
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

    pub(crate) fn group_bytes(&self) -> usize {
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

/// The largest f32 below 0.5.
const BELOW_HALF: f32 = 0.499_999_97; // 0.5 - 2^-25

/// `v.round()` (nearest, halfway cases away from zero) as an integer clamped to
/// `-1024..=1024`, without a libm call: adding the largest f32 below 0.5 with `v`'s sign and
/// truncating gives exactly `v.round()` for every finite f32 (the sum rounds up to the next
/// integer precisely when `v`'s fraction is >= 0.5), and values beyond the clamp range only
/// ever meet the code clamp. `tests` checks it against `f32::round`.
#[inline(always)]
fn round_clamped(v: f32) -> i32 {
    let r = (v + BELOW_HALF.copysign(v)).clamp(-1024.0, 1024.0);
    // What `r as i32` gives (NaN to 0), without the saturation checks that keep that cast
    // from vectorizing.
    let r = if r.is_nan() { 0.0 } else { r };
    // SAFETY: `r` is not NaN and lies in -1024..=1024, so it truncates to an i32.
    unsafe { r.to_int_unchecked::<i32>() }
}

/// The code of `xv` under (s, m) as decoded: the same value as
/// `((xv / sf).round() + half).clamp(0, qmax)` (symmetric) or
/// `((xv - mf) / sf).round().clamp(0, qmax)` (asymmetric) computed in f32.
#[inline(always)]
fn code_of(xv: f32, sym: bool, sf: f32, mf: f32, half: i32, qmax: i32) -> i32 {
    if sym {
        (round_clamped(xv / sf) + half).clamp(0, qmax)
    } else {
        // Clamped to [0, qmax] before rounding rather than after: rounding is monotone and
        // the bounds are integers, so the same code (NaN goes to 0 as before), and in range
        // the very same `v + BELOW_HALF` truncation as `round_clamped`.
        let v = (xv - mf) / sf;
        let qf = qmax as f32;
        let u = if v > 0.0 { v } else { 0.0 };
        let u = if u < qf { u } else { qf };
        // SAFETY: `u` is in 0..=qmax (<= 255), not NaN, so it truncates to an i32.
        unsafe { (u + BELOW_HALF).to_int_unchecked::<i32>() }
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
    quantize_codes_f(x, bits, sym, s.to_f32(), m.to_f32(), q)
}

/// [`quantize_codes`] with the parameters already widened (`sf`, `mf` = `s`, `m` as f32).
#[inline(always)]
fn quantize_codes_f(x: &[f32], bits: u8, sym: bool, sf: f32, mf: f32, q: &mut [u8]) {
    let qmax = (1i32 << bits) - 1;
    let half = 1i32 << (bits - 1);
    for (&xv, qv) in x.iter().zip(q.iter_mut()) {
        *qv = code_of(xv, sym, sf, mf, half, qmax) as u8;
    }
}

/// Plain min/max (asymmetric) or signed-absmax (symmetric) parameters of one group, as
/// the plain encoder stores them and the refinement starts from them.
///
/// The asymmetric minimum and maximum are taken 8 lanes at a time (it vectorizes); any
/// order gives the same values except for the sign of a zero, and neither sign matters:
/// the offset is stored as `mn + 0.0` (a zero minimum is always +0.0), and the scale only
/// sees `mx - mn`. So the bytes do not depend on the order or the compiler. The symmetric
/// extreme keeps the first element of largest magnitude (its sign matters).
#[inline(always)]
fn init_params(x: &[f32], p: &IntParams) -> (f16, f16) {
    let (s, m) = raw_params(x, p);
    let s0 = f16::from_f32(s);
    // A zero (or underflowed) range: any nonzero scale decodes every code 0 to m.
    let s0 = if s0.to_f32() == 0.0 { f16::ONE } else { s0 };
    (s0, f16::from_f32(m))
}

/// [`init_params`] before the f16 rounding: the scale and offset as f32, clamped as
/// `to_f16` clamps (the offset is 0 when symmetric).
#[inline(always)]
fn raw_params(x: &[f32], p: &IntParams) -> (f32, f32) {
    let (s, m) = if p.symmetric {
        let half = (1i32 << (p.bits - 1)) as f32;
        let ext = x
            .iter()
            .copied()
            .fold(0.0f32, |a, v| if v.abs() > a.abs() { v } else { a });
        (-ext / half, 0.0)
    } else {
        let qmax = ((1u32 << p.bits) - 1) as f32;
        let (mn, mx) = min_max(x);
        ((mx - mn) / qmax, mn + 0.0)
    };
    (s.clamp(-F16_MAX, F16_MAX), m.clamp(-F16_MAX, F16_MAX))
}

/// The minimum and maximum of `x` (finite values; +-inf for an empty slice), in 8 lanes.
#[inline(always)]
fn min_max(x: &[f32]) -> (f32, f32) {
    let mut mn = [f32::INFINITY; 8];
    let mut mx = [f32::NEG_INFINITY; 8];
    let mut it = x.chunks_exact(8);
    for c in &mut it {
        for j in 0..8 {
            mn[j] = if c[j] < mn[j] { c[j] } else { mn[j] };
            mx[j] = if c[j] > mx[j] { c[j] } else { mx[j] };
        }
    }
    for (j, &v) in it.remainder().iter().enumerate() {
        mn[j] = if v < mn[j] { v } else { mn[j] };
        mx[j] = if v > mx[j] { v } else { mx[j] };
    }
    let lo = mn
        .iter()
        .fold(f32::INFINITY, |a, &v| if v < a { v } else { a });
    let hi = mx
        .iter()
        .fold(f32::NEG_INFINITY, |a, &v| if v > a { v } else { a });
    (lo, hi)
}

/// [`init_params`] of a row's first groups, with the f16 rounding and widening of all of
/// them done in one batched (F16C where the CPU has it) conversion each, rather than five
/// dispatched scalar conversions per group.
struct RowInit {
    s: Vec<f16>,
    m: Vec<f16>,
    /// `s`, `m` as f32.
    sf: Vec<f32>,
    mf: Vec<f32>,
}

impl RowInit {
    /// The parameters of groups `0..n` of `xrow` (whole groups of `p.group` values): the
    /// same values as [`init_params`] gives group by group.
    #[inline(always)]
    fn of(xrow: &[f32], p: &IntParams, n: usize) -> Self {
        let (mut rs, mut rm) = (vec![0f32; n], vec![0f32; n]);
        for ((s, m), x) in rs
            .iter_mut()
            .zip(rm.iter_mut())
            .zip(xrow.chunks_exact(p.group))
        {
            (*s, *m) = raw_params(x, p);
        }
        let mut r = RowInit {
            s: vec![f16::ZERO; n],
            m: vec![f16::ZERO; n],
            sf: vec![0f32; n],
            mf: vec![0f32; n],
        };
        r.s.convert_from_f32_slice(&rs);
        r.s.convert_to_f32_slice(&mut r.sf);
        if !p.symmetric {
            r.m.convert_from_f32_slice(&rm);
            r.m.convert_to_f32_slice(&mut r.mf);
        }
        // A zero (or underflowed) range: any nonzero scale decodes every code 0 to m.
        for (s, sf) in r.s.iter_mut().zip(r.sf.iter_mut()) {
            if *sf == 0.0 {
                *s = f16::ONE;
                *sf = 1.0;
            }
        }
        r
    }
}

/// Least-squares (s, m) from the weighted sums `[sw, sq, sqq, sx, sqx]` of the current
/// codes, rounded to f16; `None` when the fit is singular or unusable (the refinement
/// stops there).
#[inline(always)]
fn fit(sym: bool, sums: [f64; 5]) -> Option<(f16, f16)> {
    let [sw, sq, sqq, sx, sqx] = sums;
    let (s, m) = if sym {
        if sqq <= 0.0 {
            return None;
        }
        (sqx / sqq, 0.0)
    } else {
        let det = sw * sqq - sq * sq;
        if det <= 1e-12 * sw * sqq || sw <= 0.0 {
            return None;
        }
        let s = (sw * sqx - sq * sx) / det;
        (s, (sx - s * sq) / sw)
    };
    let s16 = to_f16(s as f32);
    let m16 = to_f16(m as f32);
    if !(s.is_finite() && m.is_finite()) || s16.to_f32() == 0.0 || (!sym && s16.to_f32() < 0.0) {
        return None;
    }
    Some((s16, m16))
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
    let half = (1i32 << (bits - 1)) as f32;
    let Refine::Opt { max_iters } = refine else {
        let (s0, m0) = init_params(x, p);
        quantize_codes(x, bits, sym, s0, m0, q);
        return (s0, m0);
    };
    let (s0, m0) = init_params(x, p);
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
        let Some((s16, m16)) = fit(sym, [sw, sq, sqq, sx, sqx]) else {
            break;
        };
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

/// Groups refined side by side by [`encode_groups_opt`]: two AVX-512 registers of f64 per
/// sum, so each f64 add's latency is covered by the other register's (8 measured slightly
/// slower).
const LANES: usize = 16;

/// What a lane of [`encode_groups_opt`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    /// No group: the row has no more.
    Empty,
    /// A group just loaded: the next pass measures its min/max parameters.
    Fresh,
    /// A group whose fitted candidate the next pass measures.
    Candidate,
}

/// The sums one pass computes for every lane: the candidate's weighted squared error, and
/// the code sums the next least-squares fit needs (`sq`, `sqq`, `sqx`).
struct PassSums {
    err: [f64; LANES],
    sq: [f64; LANES],
    sqq: [f64; LANES],
    sqx: [f64; LANES],
}

/// One [`quantize`] per lane fused with the code sums of [`encode_group`]'s fit, every
/// lane's sums in element order (the same f64 operations, so the same values). `xt` and
/// `wt` are lane-interleaved: element `j` of lane `l` at `j * LANES + l`.
#[inline(always)]
fn lanes_pass<const SYM: bool, const WEIGHTED: bool>(
    xt: &[f32],
    wt: &[f32],
    bits: u8,
    sf: &[f32; LANES],
    mf: &[f32; LANES],
) -> PassSums {
    let qmax = (1i32 << bits) - 1;
    let half = 1i32 << (bits - 1);
    let half64 = half as f32 as f64;
    let mut r = PassSums {
        err: [0.0; LANES],
        sq: [0.0; LANES],
        sqq: [0.0; LANES],
        sqx: [0.0; LANES],
    };
    // Unweighted, the code sums `sq` and `sqq` are sums of integers: exact in i32 (at most
    // 4096 * 255^2 < 2^31) and exact in the scalar f64 order too, so the same values.
    let (mut isq, mut isqq) = ([0i32; LANES], [0i32; LANES]);
    for (j, xj) in xt.chunks_exact(LANES).enumerate() {
        for l in 0..LANES {
            let xv = xj[l];
            let c = code_of(xv, SYM, sf[l], mf[l], half, qmax);
            let dec = if SYM {
                (c - half) as f32 * sf[l]
            } else {
                c as f32 * sf[l] + mf[l]
            };
            let e = (dec - xv) as f64;
            let qv = if SYM { c as f64 - half64 } else { c as f64 };
            if WEIGHTED {
                let w = wt[j * LANES + l] as f64;
                r.err[l] += w * e * e;
                r.sq[l] += w * qv;
                r.sqq[l] += w * qv * qv;
                r.sqx[l] += w * qv * xv as f64;
            } else {
                let qi = if SYM { c - half } else { c };
                r.err[l] += e * e;
                isq[l] += qi;
                isqq[l] += qi * qi;
                r.sqx[l] += qv * xv as f64;
            }
        }
    }
    if !WEIGHTED {
        for l in 0..LANES {
            r.sq[l] = f64::from(isq[l]);
            r.sqq[l] = f64::from(isqq[l]);
        }
    }
    r
}

/// The state of [`encode_groups_opt`]'s lanes.
struct Lanes {
    /// Lane-interleaved group elements (element `j` of lane `l` at `j * LANES + l`).
    xt: Vec<f32>,
    /// Lane-interleaved column weights (empty when unweighted).
    wt: Vec<f32>,
    lane: [Lane; LANES],
    /// The group each lane holds.
    gi: [usize; LANES],
    /// Fits done so far.
    it: [usize; LANES],
    /// Parameters the next pass measures, and as f32.
    cur: [(f16, f16); LANES],
    sf: [f32; LANES],
    mf: [f32; LANES],
    best: [(f16, f16); LANES],
    /// `best` as f32.
    best_f: [(f32, f32); LANES],
    best_err: [f64; LANES],
    /// The fit's code-free sums `sw`, `sx`, the same every round.
    sw: [f64; LANES],
    sx: [f64; LANES],
}

impl Lanes {
    /// Puts the group `x` (weights `w`), number `k` in the row, into lane `l` with its
    /// min/max parameters from `init`. `sx` is the group's `encode_group` sum `sx` when
    /// unweighted (computed ahead by [`plain_sums`]); weighted groups sum theirs here.
    #[inline(always)]
    fn load(&mut self, l: usize, k: usize, x: &[f32], w: Option<&[f32]>, sx: f64, init: &RowInit) {
        self.cur[l] = (init.s[k], init.m[k]);
        self.sf[l] = init.sf[k];
        self.mf[l] = init.mf[k];
        for (j, &xv) in x.iter().enumerate() {
            self.xt[j * LANES + l] = xv;
        }
        match w {
            Some(w) => {
                // `encode_group`'s `sw` and `sx`, in its order.
                let (mut sw, mut sx) = (0.0f64, 0.0f64);
                for (j, &xv) in x.iter().enumerate() {
                    self.wt[j * LANES + l] = w[j];
                    sw += w[j] as f64;
                    sx += w[j] as f64 * xv as f64;
                }
                self.sw[l] = sw;
                self.sx[l] = sx;
            }
            None => {
                // A sum of ones: exact.
                self.sw[l] = x.len() as f64;
                self.sx[l] = sx;
            }
        }
        self.gi[l] = k;
        self.lane[l] = Lane::Fresh;
    }
}

/// `encode_group`'s unweighted `sx` (the f64 sum of a group's values in element order) of
/// the first `n` groups of `xrow`, [`LANES`] groups side by side so the sums' dependency
/// chains overlap (each group's own sum keeps its order, so the same values).
fn plain_sums(xrow: &[f32], g: usize, n: usize) -> Vec<f64> {
    let mut out = vec![0f64; n];
    for (b, o) in out.chunks_mut(LANES).enumerate() {
        let base = b * LANES * g;
        let mut acc = [0f64; LANES];
        for j in 0..g {
            for (l, a) in acc.iter_mut().enumerate().take(o.len()) {
                *a += xrow[base + l * g + j] as f64;
            }
        }
        o.copy_from_slice(&acc[..o.len()]);
    }
    out
}

/// [`fit`] for every lane at once.
struct LaneFits {
    /// Whether [`fit`] returns `Some`.
    ok: [bool; LANES],
    s16: [f16; LANES],
    m16: [f16; LANES],
    /// `s16`, `m16` as f32.
    sf: [f32; LANES],
    mf: [f32; LANES],
}

/// [`fit`] for every lane, branch-free (the same operations on the same values; where
/// [`fit`] returns `None` early, the values computed here are unused, `ok` is false).
// The negated comparisons are [`fit`]'s early returns as written (NaN included).
#[allow(clippy::neg_cmp_op_on_partial_ord)]
#[inline(always)]
fn fit_lanes(
    sym: bool,
    sw: &[f64; LANES],
    sq: &[f64; LANES],
    sqq: &[f64; LANES],
    sx: &[f64; LANES],
    sqx: &[f64; LANES],
) -> LaneFits {
    let mut ok = [false; LANES];
    let (mut s32, mut m32) = ([0f32; LANES], [0f32; LANES]);
    for l in 0..LANES {
        let (s, m, good) = if sym {
            (sqx[l] / sqq[l], 0.0, !(sqq[l] <= 0.0))
        } else {
            let det = sw[l] * sqq[l] - sq[l] * sq[l];
            let s = (sw[l] * sqx[l] - sq[l] * sx[l]) / det;
            let good = !(det <= 1e-12 * sw[l] * sqq[l] || sw[l] <= 0.0);
            (s, (sx[l] - s * sq[l]) / sw[l], good)
        };
        // `to_f16`'s clamp, before a batched conversion.
        s32[l] = (s as f32).clamp(-F16_MAX, F16_MAX);
        m32[l] = (m as f32).clamp(-F16_MAX, F16_MAX);
        ok[l] = good & s.is_finite() & m.is_finite();
    }
    let mut f = LaneFits {
        ok,
        s16: [f16::ZERO; LANES],
        m16: [f16::ZERO; LANES],
        sf: [0.0; LANES],
        mf: [0.0; LANES],
    };
    f.s16.convert_from_f32_slice(&s32);
    f.m16.convert_from_f32_slice(&m32);
    f.s16.convert_to_f32_slice(&mut f.sf);
    f.m16.convert_to_f32_slice(&mut f.mf);
    for l in 0..LANES {
        f.ok[l] &= f.sf[l] != 0.0 && (sym || !(f.sf[l] < 0.0));
    }
    f
}

/// [`encode_group`] with `Refine::Opt` for the first `n` (full) groups of a row, `LANES`
/// groups at a time: each lane runs one group's refinement with exactly the scalar
/// operations in the scalar order, so the dependency chains of different groups overlap
/// instead of waiting on each other; a lane whose group is done takes the row's next one.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn encode_groups_opt(
    xrow: &[f32],
    ws: Option<&[f32]>,
    p: &IntParams,
    max_iters: usize,
    n: usize,
    init: &RowInit,
    crow: &mut [u8],
    srow: &mut [f16],
    orow: &mut [f16],
) {
    let g = p.group;
    let gb = p.group_bytes();
    let sym = p.symmetric;
    let group = |k: usize| {
        (
            &xrow[k * g..(k + 1) * g],
            ws.map(|w| &w[k * g..(k + 1) * g]),
        )
    };
    let mut st = Lanes {
        xt: vec![0f32; g * LANES],
        wt: vec![0f32; if ws.is_some() { g * LANES } else { 0 }],
        lane: [Lane::Empty; LANES],
        gi: [0; LANES],
        it: [0; LANES],
        cur: [(f16::ONE, f16::ZERO); LANES],
        sf: [1.0; LANES],
        mf: [0.0; LANES],
        best: [(f16::ONE, f16::ZERO); LANES],
        best_f: [(1.0, 0.0); LANES],
        best_err: [0.0; LANES],
        sw: [0.0; LANES],
        sx: [0.0; LANES],
    };
    let mut q = vec![0u8; g];
    let sxs = if ws.is_none() {
        plain_sums(xrow, g, n)
    } else {
        vec![0.0; n]
    };
    let mut next = 0usize;
    for (l, &sx) in sxs.iter().enumerate().take(LANES) {
        let (x, w) = group(l);
        st.load(l, l, x, w, sx, init);
        next += 1;
    }
    while st.lane.iter().any(|&s| s != Lane::Empty) {
        let r = match (sym, ws.is_some()) {
            (true, false) => lanes_pass::<true, false>(&st.xt, &st.wt, p.bits, &st.sf, &st.mf),
            (true, true) => lanes_pass::<true, true>(&st.xt, &st.wt, p.bits, &st.sf, &st.mf),
            (false, false) => lanes_pass::<false, false>(&st.xt, &st.wt, p.bits, &st.sf, &st.mf),
            (false, true) => lanes_pass::<false, true>(&st.xt, &st.wt, p.bits, &st.sf, &st.mf),
        };
        let f = fit_lanes(sym, &st.sw, &r.sq, &r.sqq, &st.sx, &r.sqx);
        for l in 0..LANES {
            let improved = match st.lane[l] {
                Lane::Empty => continue,
                Lane::Fresh => {
                    st.it[l] = 0;
                    true
                }
                Lane::Candidate => r.err[l] < st.best_err[l],
            };
            if improved {
                st.best[l] = st.cur[l];
                st.best_f[l] = (st.sf[l], st.mf[l]);
                st.best_err[l] = r.err[l];
                if st.it[l] < max_iters {
                    st.it[l] += 1;
                    if f.ok[l] {
                        st.cur[l] = (f.s16[l], f.m16[l]);
                        st.sf[l] = f.sf[l];
                        st.mf[l] = f.mf[l];
                        st.lane[l] = Lane::Candidate;
                        continue;
                    }
                }
            }
            // The group is done: its codes are those of its best parameters.
            let k = st.gi[l];
            let (s, m) = st.best[l];
            let (sf, mf) = st.best_f[l];
            quantize_codes_f(group(k).0, p.bits, sym, sf, mf, &mut q[..g]);
            pack_group(&q[..g], p.bits, &mut crow[k * gb..(k + 1) * gb]);
            srow[k] = s;
            orow[k] = m;
            if next < n {
                let (x, w) = group(next);
                st.load(l, next, x, w, sxs[next], init);
                next += 1;
            } else {
                st.lane[l] = Lane::Empty;
            }
        }
    }
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

/// The same as [`encode_row`], compiled for AVX-512 (8 f64 lanes in one register; the
/// same IEEE operations, so the same bytes).
///
/// # Safety
/// The CPU must support AVX-512 F, BW, VL and VBMI, AVX2 and F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi,avx2,f16c")]
unsafe fn encode_row_avx512(
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
    // Scratch of one group, sized to it: a MAX_GROUP stack array would be zeroed (4 KiB)
    // per row, more than the codes of a short row.
    let mut q = vec![0u8; g];
    let mut tmp = vec![0u8; g];
    // Full groups of a refined row go through the lanes (the same bytes as
    // `encode_group`, several groups at a time); the rest one by one.
    // Plain full groups take their min/max parameters as they are.
    let mut first = 0;
    let full = (cols / g).min(gn);
    match refine {
        Refine::Opt { max_iters } if full >= 2 => {
            let init = RowInit::of(xrow, p, full);
            encode_groups_opt(xrow, ws, p, max_iters, full, &init, crow, srow, orow);
            first = full;
        }
        Refine::None if full >= 1 => {
            let init = RowInit::of(xrow, p, full);
            for k in 0..full {
                let x = &xrow[k * g..(k + 1) * g];
                quantize_codes_f(x, p.bits, p.symmetric, init.sf[k], init.mf[k], &mut q[..g]);
                pack_group(&q[..g], p.bits, &mut crow[k * gb..(k + 1) * gb]);
            }
            srow[..full].copy_from_slice(&init.s);
            orow[..full].copy_from_slice(&init.m);
            first = full;
        }
        _ => {}
    }
    for gi in first..gn {
        let c0 = gi * g;
        let c1 = (c0 + g).min(cols);
        let xs = &xrow[c0..c1];
        let ws = ws.map(|w| &w[c0..c1]);
        // Padding codes of a partial last group are 0.
        q[xs.len()..g].fill(0);
        let (s, m) = encode_group(xs, ws, p, refine, &mut q[..xs.len()], &mut tmp);
        srow[gi] = s;
        orow[gi] = m;
        pack_group(&q[..g], p.bits, &mut crow[gi * gb..(gi + 1) * gb]);
    }
}

/// Packs one group's `g` codes into its `g*b/8` bytes.
#[inline(always)]
fn pack_group(q: &[u8], bits: u8, dst: &mut [u8]) {
    match bits {
        // Same bytes as `bits::pack` (codes are < 2^bits), without its
        // bit accumulator.
        8 => dst.copy_from_slice(q),
        4 => {
            for (o, c) in dst.iter_mut().zip(q.chunks_exact(2)) {
                *o = c[0] | (c[1] << 4);
            }
        }
        2 => {
            for (o, c) in dst.iter_mut().zip(q.chunks_exact(4)) {
                *o = c[0] | (c[1] << 2) | (c[2] << 4) | (c[3] << 6);
            }
        }
        _ => {
            // Lengths match by construction (g codes into g*b/8 bytes).
            let ok = bits::pack(q, bits, dst);
            debug_assert!(ok);
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
    // Branch-free per chunk, so it vectorizes.
    if !x
        .chunks(4096)
        .all(|c| c.iter().fold(true, |ok, v| ok & v.is_finite()))
    {
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
            encode_row_with(be, xrow, col_weights, p, refine, crow, srow, orow);
        });
    offsets.truncate(lay.n_offsets);
    Ok(IntEncoded {
        codes,
        scales,
        offsets,
    })
}

/// [`encode_row`] on the backend `be` (from `kernels::detect`).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn encode_row_with(
    be: Backend,
    xrow: &[f32],
    ws: Option<&[f32]>,
    p: &IntParams,
    refine: Refine,
    crow: &mut [u8],
    srow: &mut [f16],
    orow: &mut [f16],
) {
    match be {
        #[cfg(target_arch = "x86_64")]
        Backend::Avx512 => {
            // SAFETY: `be` is Avx512 only when `kernels::detect` found AVX-512 F, BW, VL
            // and VBMI, AVX2 and F16C.
            unsafe { encode_row_avx512(xrow, ws, p, refine, crow, srow, orow) }
        }
        #[cfg(target_arch = "x86_64")]
        Backend::Avx2 => {
            // SAFETY: `be` is Avx2 only when `kernels::detect` found AVX2 and F16C.
            unsafe { encode_row_avx2(xrow, ws, p, refine, crow, srow, orow) }
        }
        _ => encode_row(xrow, ws, p, refine, crow, srow, orow),
    }
}

/// One block of whole rows' int buffers, for [`encode_rows_into`]: the rows' part of the
/// [`encode`] layout, with `offsets` as long as `scales` even when symmetric.
pub struct IntRowsMut<'a> {
    /// Packed codes of the rows.
    pub codes: &'a mut [u8],
    /// One scale per group of the rows.
    pub scales: &'a mut [f16],
    /// One offset per group of the rows (left zero when symmetric).
    pub offsets: &'a mut [f16],
}

/// [`encode`] (unweighted) of a block of whole rows `x` into `out`, on the calling thread:
/// for callers that run a whole pipeline per block of rows while it is in cache. Gives the
/// same bytes for these rows as [`encode`] of the whole tensor.
pub fn encode_rows_into(
    x: &[f32],
    cols: usize,
    p: &IntParams,
    refine: Refine,
    out: IntRowsMut<'_>,
) -> Result<(), StageError> {
    p.validate()?;
    if cols == 0 {
        return super::stage::check_len("int input", x.len(), 0);
    }
    let rows = x.len() / cols;
    super::stage::check_len("int input", x.len(), rows * cols)?;
    let lay = layout(rows, cols, p).ok_or(StageError::Overflow)?;
    super::stage::check_len("int codes", out.codes.len(), lay.codes_bytes)?;
    super::stage::check_len("int scales", out.scales.len(), lay.n_scales)?;
    super::stage::check_len("int offsets", out.offsets.len(), lay.n_scales)?;
    let (gn, gb) = (lay.groups_per_row, p.group_bytes());
    let be = kernels::detect();
    for (xrow, ((crow, srow), orow)) in x.chunks_exact(cols).zip(
        out.codes
            .chunks_exact_mut(gn * gb)
            .zip(out.scales.chunks_exact_mut(gn))
            .zip(out.offsets.chunks_exact_mut(gn)),
    ) {
        // Branch-free, so it vectorizes; the row is in cache for the encoder next.
        if !xrow.iter().fold(true, |ok, v| ok & v.is_finite()) {
            return Err(StageError::NonFinite);
        }
        encode_row_with(be, xrow, None, p, refine, crow, srow, orow);
    }
    Ok(())
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
    let Some(r) = rows_of(enc, cols, p, &rows, out.len())? else {
        return Ok(());
    };
    let ok = kernels::int_rows(
        be,
        p.bits,
        p.group,
        p.symmetric,
        r.codes,
        r.scales,
        r.offsets,
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

/// Decodes rows `rows` of two int stages of one tensor into `out` at once: `first` then
/// `second` added, bit for bit as [`decode_rows_with`] with `Mode::Set` then `Mode::Add`,
/// in one pass where a fused kernel applies (`kernels::int_pair_rows`). Returns `false`,
/// writing nothing, where none does.
#[allow(clippy::too_many_arguments)]
pub fn decode_pair_rows_with(
    be: Backend,
    first: IntRef<'_>,
    p1: &IntParams,
    second: IntRef<'_>,
    p2: &IntParams,
    cols: usize,
    rows: Range<usize>,
    out: &mut [f32],
) -> Result<bool, StageError> {
    let (Some(a), Some(b)) = (
        rows_of(first, cols, p1, &rows, out.len())?,
        rows_of(second, cols, p2, &rows, out.len())?,
    ) else {
        return Ok(true);
    };
    Ok(kernels::int_pair_rows(
        be,
        a.stage(p1),
        b.stage(p2),
        cols,
        out,
    ))
}

impl<'a> IntRef<'a> {
    /// These buffers with `p` as a kernel's stage.
    fn stage(self, p: &IntParams) -> kernels::IntStage<'a> {
        kernels::IntStage {
            bits: p.bits,
            group: p.group,
            symmetric: p.symmetric,
            codes: self.codes,
            scales: self.scales,
            offsets: self.offsets,
        }
    }
}

/// The codes, scales and offsets of rows `rows` of `enc` (a `rows.end x cols` prefix at
/// least), after checking `p`, the buffers' lengths and `n_out` (= `rows.len() * cols`);
/// `None` when there is nothing to decode.
fn rows_of<'e>(
    enc: IntRef<'e>,
    cols: usize,
    p: &IntParams,
    rows: &Range<usize>,
    n_out: usize,
) -> Result<Option<IntRef<'e>>, StageError> {
    p.validate()?;
    check_rows(rows, usize::MAX)?;
    let lay = layout(rows.end, cols, p).ok_or(StageError::Overflow)?;
    let nrows = rows.end - rows.start;
    let need_out = nrows.checked_mul(cols).ok_or(StageError::Overflow)?;
    super::stage::check_len("int output", n_out, need_out)?;
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
        return Ok(None);
    }
    let gn = lay.groups_per_row;
    let gb = p.group_bytes();
    // Both products are bounded by the layout sizes checked above.
    let (k0, k1) = (rows.start * gn, rows.end * gn);
    Ok(Some(IntRef {
        codes: &enc.codes[k0 * gb..k1 * gb],
        scales: &enc.scales[k0..k1],
        offsets: if p.symmetric {
            &[]
        } else {
            &enc.offsets[k0..k1]
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every group through the scalar [`encode_group`], one by one: the reference the
    /// lanes must match bit for bit.
    fn reference_row(
        xrow: &[f32],
        ws: Option<&[f32]>,
        p: &IntParams,
        refine: Refine,
        crow: &mut [u8],
        srow: &mut [f16],
        orow: &mut [f16],
    ) {
        let (g, gb, cols) = (p.group, p.group_bytes(), xrow.len());
        let mut q = [0u8; MAX_GROUP];
        let mut tmp = [0u8; MAX_GROUP];
        for gi in 0..srow.len() {
            let (c0, c1) = (gi * g, ((gi + 1) * g).min(cols));
            q[..g].fill(0);
            let (s, m) = encode_group(
                &xrow[c0..c1],
                ws.map(|w| &w[c0..c1]),
                p,
                refine,
                &mut q[..c1 - c0],
                &mut tmp,
            );
            srow[gi] = s;
            orow[gi] = m;
            pack_group(&q[..g], p.bits, &mut crow[gi * gb..(gi + 1) * gb]);
        }
    }

    /// [`reference_row`] compiled for AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn reference_row_avx2(
        xrow: &[f32],
        ws: Option<&[f32]>,
        p: &IntParams,
        refine: Refine,
        crow: &mut [u8],
        srow: &mut [f16],
        orow: &mut [f16],
    ) {
        reference_row(xrow, ws, p, refine, crow, srow, orow)
    }

    /// The crate's test generator with the two draws these tests use.
    struct Rng(crate::codec::stage::SplitMix64);
    impl Rng {
        fn new(seed: u64) -> Self {
            Self(crate::codec::stage::SplitMix64::new(seed))
        }
        fn next(&mut self) -> u64 {
            self.0.next_u64()
        }
        /// Uniform in [0, 1).
        fn unit(&mut self) -> f32 {
            (self.next() >> 40) as f32 / (1u64 << 24) as f32
        }
    }

    /// One row of test data: groups of random kinds (uniform, gaussian-ish, constant,
    /// zeros of both signs, huge, tiny, one outlier).
    fn test_row(rng: &mut Rng, cols: usize, g: usize) -> Vec<f32> {
        let mut x = Vec::with_capacity(cols);
        while x.len() < cols {
            let kind = rng.next() % 9;
            let scale = match rng.next() % 4 {
                0 => 1e-3,
                1 => 0.02,
                2 => 1.0,
                _ => 300.0,
            };
            let c = rng.unit() - 0.5;
            for j in 0..g {
                let u = rng.unit() - 0.5;
                let v = match kind {
                    0 => u * scale,
                    1 => (u + rng.unit() + rng.unit() - 1.0) * scale,
                    2 => c * scale,
                    3 => {
                        if rng.next().is_multiple_of(2) {
                            0.0
                        } else {
                            -0.0
                        }
                    }
                    4 => u * 6.0e4,
                    5 => u * 1e-7,
                    6 => {
                        if j == 3 {
                            c * 1e3
                        } else {
                            u * scale
                        }
                    }
                    7 => (u * 4.0).round() * scale,
                    _ => {
                        if rng.next().is_multiple_of(3) {
                            if rng.next().is_multiple_of(2) {
                                0.0
                            } else {
                                -0.0
                            }
                        } else {
                            u.abs() * scale
                        }
                    }
                };
                x.push(v);
            }
        }
        x.truncate(cols);
        x
    }

    type RowFn = fn(&[f32], Option<&[f32]>, &IntParams, Refine, &mut [u8], &mut [f16], &mut [f16]);

    /// Runs one row encoder, returning codes and the bits of scales and offsets.
    fn run_row(
        f: RowFn,
        x: &[f32],
        ws: Option<&[f32]>,
        p: &IntParams,
        refine: Refine,
    ) -> (Vec<u8>, Vec<u16>, Vec<u16>) {
        let gn = x.len().div_ceil(p.group);
        let (mut c, mut s, mut o) = (
            vec![0u8; gn * p.group_bytes()],
            vec![f16::ZERO; gn],
            vec![f16::ZERO; gn],
        );
        f(x, ws, p, refine, &mut c, &mut s, &mut o);
        let bits = |v: &[f16]| v.iter().map(|h| h.to_bits()).collect::<Vec<_>>();
        (c, bits(&s), bits(&o))
    }

    /// The row encoders to check against [`reference_row`]: the lanes, and on AVX2 CPUs
    /// the lanes and the reference compiled for AVX2.
    fn row_encoders() -> Vec<(&'static str, RowFn)> {
        let mut v: Vec<(&'static str, RowFn)> = vec![("encode_row", encode_row)];
        #[cfg(target_arch = "x86_64")]
        if kernels::detect().has_avx2() {
            v.push(("encode_row_avx2", |x, ws, p, r, c, s, o| {
                // SAFETY: `detect` found AVX2 and F16C.
                unsafe { encode_row_avx2(x, ws, p, r, c, s, o) }
            }));
            v.push(("reference_row_avx2", |x, ws, p, r, c, s, o| {
                // SAFETY: `detect` found AVX2 and F16C.
                unsafe { reference_row_avx2(x, ws, p, r, c, s, o) }
            }));
        }
        #[cfg(target_arch = "x86_64")]
        if kernels::detect() == Backend::Avx512 {
            v.push(("encode_row_avx512", |x, ws, p, r, c, s, o| {
                // SAFETY: `detect` found AVX-512 F, BW, VL and VBMI, AVX2 and F16C.
                unsafe { encode_row_avx512(x, ws, p, r, c, s, o) }
            }));
        }
        v
    }

    /// A group whose minimum is a zero present with both signs stores a +0.0 offset
    /// whatever the order of the zeros and whichever row encoder runs (the bytes must not
    /// depend on how a min/max reduction treats signed zeros), refined or not.
    #[test]
    fn zero_minimum_offset_is_positive_zero_in_any_order() {
        let g = 16;
        let mut rows: Vec<Vec<f32>> = Vec::new();
        for first_neg in [false, true] {
            for pos in [0usize, 3, 8, 15] {
                let mut x: Vec<f32> = (0..g).map(|i| 0.25 + i as f32 * 0.5).collect();
                let (a, b) = if first_neg { (-0.0, 0.0) } else { (0.0, -0.0) };
                x[pos] = a;
                x[(pos + 5) % g] = b;
                rows.push(x);
            }
        }
        for refine in [Refine::None, Refine::Opt { max_iters: 20 }] {
            let p = IntParams {
                bits: 4,
                group: g,
                symmetric: false,
            };
            let mut want: Option<(Vec<u8>, Vec<u16>, Vec<u16>)> = None;
            for (name, f) in row_encoders() {
                for x in &rows {
                    let mut c = vec![0u8; g / 2];
                    let mut s = vec![f16::ZERO; 1];
                    let mut o = vec![f16::ZERO; 1];
                    f(x, None, &p, refine, &mut c, &mut s, &mut o);
                    if refine == Refine::None {
                        assert_eq!(o[0].to_bits(), 0, "{name}: offset {:?}", o[0]);
                    }
                    assert_ne!(o[0].to_bits(), 0x8000, "{name} {refine:?}");
                }
                // Every encoder gives the same bytes for the same row.
                let x = &rows[0];
                let mut c = vec![0u8; g / 2];
                let mut s = vec![f16::ZERO; 1];
                let mut o = vec![f16::ZERO; 1];
                f(x, None, &p, refine, &mut c, &mut s, &mut o);
                let got = (
                    c,
                    s.iter().map(|v| v.to_bits()).collect(),
                    o.iter().map(|v| v.to_bits()).collect(),
                );
                match &want {
                    None => want = Some(got),
                    Some(w) => assert_eq!(w, &got, "{name} {refine:?}"),
                }
            }
        }
    }

    /// The specialised packings give `bits::pack`'s bytes.
    #[test]
    fn pack_group_matches_bits_pack() {
        let mut rng = Rng::new(7);
        for bits in 2..=8u8 {
            for g in [8usize, 16, 64] {
                let q: Vec<u8> = (0..g).map(|_| (rng.next() % (1 << bits)) as u8).collect();
                let mut want = vec![0u8; g * bits as usize / 8];
                assert!(bits::pack(&q, bits, &mut want));
                let mut got = vec![0u8; want.len()];
                pack_group(&q, bits, &mut got);
                assert_eq!(got, want, "b={bits} g={g}");
            }
        }
    }

    /// The lanes give every group the bytes of the scalar `encode_group`, for every width,
    /// both modes, weighted or not, any iteration bound, odd column counts, and groups of
    /// constants, signed zeros, huge and tiny values.
    #[test]
    fn lanes_match_scalar_groups() {
        let mut rng = Rng::new(0x9E37_79B9_7F4A_7C15);
        let encoders = row_encoders();
        let mut checked = 0usize;
        for bits in 2..=8u8 {
            for symmetric in [false, true] {
                for (group, cols) in [
                    (16, 16 * 40),
                    (16, 16 * 21 + 5),
                    (8, 8 * 3),
                    (32, 32 * 9 + 31),
                    (64, 64 * 4 + 8),
                ] {
                    for weighted in [false, true] {
                        for max_iters in [20, 0, 1, 3] {
                            let p = IntParams {
                                bits,
                                group,
                                symmetric,
                            };
                            let x = test_row(&mut rng, cols, group);
                            let w: Vec<f32> = (0..cols)
                                .map(|j| match j % 5 {
                                    0 => 0.0,
                                    1 => 2.0,
                                    _ => rng.unit() * 3.0,
                                })
                                .collect();
                            let ws = weighted.then_some(w.as_slice());
                            let refine = Refine::Opt { max_iters };
                            let want = run_row(reference_row, &x, ws, &p, refine);
                            for &(name, f) in &encoders {
                                let got = run_row(f, &x, ws, &p, refine);
                                assert!(
                                    got == want,
                                    "{name}: b={bits} sym={symmetric} g={group} cols={cols} \
                                     w={weighted} it={max_iters}"
                                );
                            }
                            checked += cols.div_ceil(group);
                        }
                    }
                }
            }
        }
        assert!(checked >= 8000, "{checked}");
    }

    /// `code_of` as it was written before (round, then clamp): the reference.
    fn code_of_round_then_clamp(xv: f32, sym: bool, sf: f32, mf: f32, half: i32, qmax: i32) -> i32 {
        let r = |v: f32| v.round().clamp(-1024.0, 1024.0) as i32;
        if sym {
            (r(xv / sf) + half).clamp(0, qmax)
        } else {
            r((xv - mf) / sf).clamp(0, qmax)
        }
    }

    #[test]
    fn code_of_matches_round_then_clamp() {
        let mut rng = Rng::new(0xC0DE);
        let mut n = 0usize;
        for bits in 2..=8u8 {
            let (half, qmax) = (1i32 << (bits - 1), (1i32 << bits) - 1);
            for sym in [false, true] {
                for _ in 0..20_000 {
                    let sf = f16::from_f32(
                        (rng.unit() - 0.3) * 4.0 * 10f32.powi((rng.next() % 9) as i32 - 6),
                    );
                    let sf = if sf.to_f32() == 0.0 { 1.0 } else { sf.to_f32() };
                    let mf = f16::from_f32((rng.unit() - 0.5) * 100.0).to_f32();
                    // Around every code boundary, and anywhere.
                    let k = (rng.next() % (qmax as u64 + 5)) as f32 - 2.0;
                    let xv = match rng.next() % 4 {
                        0 => (k + 0.5) * sf + mf,
                        1 => f32::from_bits(
                            ((k + 0.5) * sf + mf)
                                .to_bits()
                                .wrapping_add((rng.next() % 5) as u32)
                                .wrapping_sub(2),
                        ),
                        2 => k * sf + mf,
                        _ => f32::from_bits(rng.next() as u32),
                    };
                    if !xv.is_finite() {
                        continue;
                    }
                    let want = code_of_round_then_clamp(xv, sym, sf, mf, half, qmax);
                    assert_eq!(
                        code_of(xv, sym, sf, mf, half, qmax),
                        want,
                        "{xv:e} {sf:e} {mf:e} b={bits} sym={sym}"
                    );
                    n += 1;
                }
                for xv in [
                    0.0,
                    -0.0,
                    1e30,
                    -1e30,
                    f32::MAX,
                    f32::MIN,
                    f32::MIN_POSITIVE,
                    -f32::MIN_POSITIVE,
                ] {
                    for (sf, mf) in [
                        (1.0, 0.0),
                        (6e-8, 0.0),
                        (-3.0, 65504.0),
                        (65504.0, -65504.0),
                    ] {
                        let want = code_of_round_then_clamp(xv, sym, sf, mf, half, qmax);
                        assert_eq!(
                            code_of(xv, sym, sf, mf, half, qmax),
                            want,
                            "{xv:e} {sf:e} {mf:e}"
                        );
                    }
                }
            }
        }
        assert!(n > 200_000, "{n}");
    }

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
