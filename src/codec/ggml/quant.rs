//! Quantizers: ggml's plain reference rules for the legacy types (byte-compatible with
//! ggml/gguf-py when no importance is given) and weighted least-squares scale searches for the
//! K-quants, iq4_nl and iq4_xs.
//!
//! The searches are written from the format facts: for every sub-block we try a fan of candidate
//! inverse scales around the "map the extreme value onto the extreme level" rule, round, then
//! refit the scale (and min) by weighted least squares for the chosen integer levels and keep the
//! candidate with the smallest weighted squared error. Super-block scales are then quantized and
//! the elements re-rounded against the final (stored) scales, so the stored integers are the best
//! ones for the scales a decoder actually sees.

use super::blocks::*;

/// Number of candidate steps on each side of the nominal inverse scale.
const STEPS: i32 = 10;
/// Relative step between candidates.
const STEP: f32 = 0.1;

/// Round half away from zero (C `roundf`, numpy `np_roundf` in gguf-py), written without a
/// libm call: x86-64's baseline has no rounding instruction, and this is the innermost
/// operation of every search. Equal to `f32::round` except for the sign of a zero result.
#[inline(always)]
fn roundf(v: f32) -> f32 {
    if v.abs() < 8_388_608.0 {
        // |v| < 2^23: the truncation is exact in f32 and so is the fractional part v - t.
        // Branch-free: the comparisons are data-dependent coin flips in the searches, and a
        // mispredicted branch per element costs more than the whole rounding.
        let t = v as i32;
        let f = v - t as f32;
        (t + (f >= 0.5) as i32 - (f <= -0.5) as i32) as f32
    } else {
        // Already integral (or NaN/infinite, which the callers' casts saturate).
        v
    }
}

/// Clamp to [lo, hi] then round to nearest (ties to even), in pure f32 arithmetic so the
/// search loops vectorise. Only used inside searches, where the tie rule does not matter (the
/// ggml-compatible reference paths use [`roundf`]). After the clamp |v| <= 128 < 2^22, where
/// adding and removing 1.5·2^23 rounds exactly to an integer.
#[inline(always)]
fn round_clamp(v: f32, lo: f32, hi: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (v.max(lo).min(hi) + MAGIC) - MAGIC
}

/// Signed value of largest magnitude (first one on ties, as ggml), and its magnitude.
fn signed_absmax(x: &[f32]) -> (f32, f32) {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    (max, amax)
}

/// Weighted symmetric fit x ≈ s·q with integer q in [-nmax, nmax-1]. Fills `q`, returns s.
pub(crate) fn fit_symmetric(x: &[f32], w: &[f32], nmax: i32, q: &mut [i32]) -> f32 {
    let (max, amax) = signed_absmax(x);
    if amax == 0.0 {
        q.fill(0);
        return 0.0;
    }
    let lo = -nmax;
    let hi = nmax - 1;
    let mut best: Option<(f32, f32)> = None; // (score, scale)
    let try_iscale = |iscale: f32, best: &mut Option<(f32, f32)>| {
        let (mut sqx, mut sq2) = (0.0f32, 0.0f32);
        for (&v, &wv) in x.iter().zip(w) {
            let l = round_clamp(iscale * v, lo as f32, hi as f32);
            sqx += wv * l * v;
            sq2 += wv * l * l;
        }
        if sq2 > 0.0 {
            let score = sqx * sqx / sq2;
            if best.is_none_or(|(s, _)| score > s) {
                *best = Some((score, sqx / sq2));
            }
        }
    };
    for step in -STEPS..=STEPS {
        let k = step as f32 * STEP;
        // Map the extreme onto the long (negative) end, and onto the short (positive) end.
        try_iscale(-(nmax as f32 + k) / max, &mut best);
        try_iscale((hi as f32 + k) / max, &mut best);
    }
    // One refinement: round against the least-squares scale itself.
    if let Some((_, s)) = best {
        if s != 0.0 {
            try_iscale(1.0 / s, &mut best);
        }
    }
    let s = match best {
        Some((_, s)) => s,
        None => {
            // All weights zero: fall back to the plain rule.
            max / -(nmax as f32)
        }
    };
    let is = if s != 0.0 { 1.0 / s } else { 0.0 };
    for (qv, &v) in q.iter_mut().zip(x) {
        *qv = (roundf(is * v) as i32).clamp(lo, hi);
    }
    s
}

/// Weighted asymmetric fit x ≈ s·q + b with q in [0, nmax]. With `nonpos_offset` the offset is
/// constrained to b <= 0 (the K-quants store -b as an unsigned min). Returns (s, b); `q` is filled.
/// With `search == false` this is plain min/max rounding (the baseline the tests compare with).
pub(crate) fn fit_asymmetric(
    x: &[f32],
    w: &[f32],
    nmax: i32,
    nonpos_offset: bool,
    search: bool,
    q: &mut [i32],
) -> (f32, f32) {
    let mut mn = x.iter().copied().fold(f32::INFINITY, f32::min);
    let mx = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if nonpos_offset {
        mn = mn.min(0.0);
    }
    if mx <= mn {
        q.fill(0);
        return (0.0, mn);
    }
    let round_with = |s: f32, b: f32, q: &mut [i32]| {
        let is = if s > 0.0 { 1.0 / s } else { 0.0 };
        for (qv, &v) in q.iter_mut().zip(x) {
            *qv = (roundf((v - b) * is) as i32).clamp(0, nmax);
        }
    };
    let err_of = |s: f32, b: f32, q: &[i32]| -> f32 {
        x.iter()
            .zip(w)
            .zip(q)
            .map(|((&v, &wv), &l)| {
                let e = s * l as f32 + b - v;
                wv * e * e
            })
            .sum()
    };
    let plain_s = (mx - mn) / nmax as f32;
    round_with(plain_s, mn, q);
    if !search {
        return (plain_s, mn);
    }
    let mut best = (err_of(plain_s, mn, q), plain_s, mn);
    let (mut sw, mut sx, mut sx2) = (0.0f32, 0.0f32, 0.0f32);
    for (&v, &wv) in x.iter().zip(w) {
        sw += wv;
        sx += wv * v;
        sx2 += wv * v * v;
    }
    // Least-squares (s, b) for one set of levels, given its sums; the error follows from the
    // normal equations without a second pass over the data.
    let solve = |sq: f32, sq2: f32, sqx: f32, best: &mut (f32, f32, f32)| {
        let det = sw * sq2 - sq * sq;
        if det <= 0.0 {
            return;
        }
        let mut s = (sw * sqx - sq * sx) / det;
        let mut b = (sq2 * sx - sq * sqx) / det;
        if nonpos_offset && b > 0.0 {
            b = 0.0;
            s = sqx / sq2;
        }
        if s.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
            || !s.is_finite()
            || !b.is_finite()
        {
            return;
        }
        let e = sx2 - 2.0 * s * sqx - 2.0 * b * sx + s * s * sq2 + 2.0 * s * b * sq + b * b * sw;
        if e < best.0 {
            *best = (e, s, b);
        }
    };
    let sums = |iscale: f32, off: f32| {
        let (mut sq, mut sq2, mut sqx) = (0.0f32, 0.0f32, 0.0f32);
        for (&v, &wv) in x.iter().zip(w) {
            let l = round_clamp(iscale * (v - off), 0.0, nmax as f32);
            sq += wv * l;
            sq2 += wv * l * l;
            sqx += wv * l * v;
        }
        (sq, sq2, sqx)
    };
    for step in -STEPS..=STEPS {
        let iscale = (nmax as f32 + step as f32 * STEP) / (mx - mn);
        let (sq, sq2, sqx) = sums(iscale, mn);
        solve(sq, sq2, sqx, &mut best);
    }
    // Refinement: re-round against the best (s, b) and refit once.
    let (_, s0, b0) = best;
    let (sq, sq2, sqx) = sums(1.0 / s0, b0);
    solve(sq, sq2, sqx, &mut best);
    let (_, s, b) = best;
    round_with(s, b, q);
    (s, b)
}

/// Index of the codebook value nearest to v (ties to the lower index).
#[inline(always)]
pub(crate) fn nearest_iq4(v: f32) -> u8 {
    /// Midpoints between consecutive codebook values (exact in f32).
    const MID: [f32; 15] = {
        let mut m = [0.0f32; 15];
        let mut k = 0;
        while k < 15 {
            m[k] = (IQ4_NL_VALUES[k] as i32 + IQ4_NL_VALUES[k + 1] as i32) as f32 * 0.5;
            k += 1;
        }
        m
    };
    // Branch-light binary search for the number of midpoints strictly below v.
    let mut i = if v > MID[7] { 8 } else { 0 };
    if v > MID[i + 3] {
        i += 4;
    }
    if v > MID[i + 1] {
        i += 2;
    }
    if v > MID[i] {
        i += 1;
    }
    i as u8
}

/// Weighted fit x ≈ s·K[q] over the iq4_nl codebook. Returns s (may be negative).
pub(crate) fn fit_codebook(x: &[f32], w: &[f32]) -> f32 {
    let (max, amax) = signed_absmax(x);
    if amax == 0.0 {
        return 0.0;
    }
    let mut best: Option<(f32, f32)> = None;
    let try_iscale = |iscale: f32, best: &mut Option<(f32, f32)>| {
        let (mut skx, mut sk2) = (0.0f32, 0.0f32);
        for (&v, &wv) in x.iter().zip(w) {
            let k = IQ4_NL_VALUES[nearest_iq4(iscale * v) as usize] as f32;
            skx += wv * k * v;
            sk2 += wv * k * k;
        }
        if sk2 > 0.0 {
            let score = skx * skx / sk2;
            if best.is_none_or(|(s, _)| score > s) {
                *best = Some((score, skx / sk2));
            }
        }
    };
    for step in -STEPS..=STEPS {
        let k = step as f32;
        try_iscale((IQ4_NL_VALUES[0] as f32 + k) / max, &mut best);
        try_iscale((IQ4_NL_VALUES[15] as f32 + k) / max, &mut best);
    }
    if let Some((_, s)) = best {
        if s != 0.0 {
            try_iscale(1.0 / s, &mut best);
        }
    }
    match best {
        Some((_, s)) => s,
        None => max / IQ4_NL_VALUES[0] as f32,
    }
}

// ---------------------------------------------------------------------------------------------
// Legacy 32-element types.

/// q8_0 reference rule: d = amax/127, q = round(x/d) computed with the f32 (unrounded) d.
pub(crate) fn q8_0(x: &[f32], w: Option<&[f32]>, out: &mut [BlockQ8_0]) {
    for (bi, b) in out.iter_mut().enumerate() {
        let xb = &x[32 * bi..32 * bi + 32];
        let (d, id) = match w {
            None => {
                let amax = xb.iter().fold(0.0f32, |a, v| a.max(v.abs()));
                let d = amax / 127.0;
                (d, if d != 0.0 { 1.0 / d } else { 0.0 })
            }
            Some(w) => {
                let mut q = [0i32; 32];
                let s = fit_symmetric(xb, &w[32 * bi..32 * bi + 32], 128, &mut q);
                let d = f16_round(s);
                (d, if d != 0.0 { 1.0 / d } else { 0.0 })
            }
        };
        b.d = f16_bytes(d);
        for (o, &v) in b.qs.iter_mut().zip(xb) {
            *o = (roundf(v * id) as i32).clamp(-128, 127) as i8 as u8;
        }
    }
}

/// Rounds to the nearest f16 and back, so quantizers can work with the scale a decoder sees.
#[inline(always)]
fn f16_round(v: f32) -> f32 {
    half::f16::from_f32(v).to_f32()
}

/// Symmetric legacy rule for q4_0 (nmax 8) and q5_0 (nmax 16): returns (d_f32, levels 0..2nmax).
fn legacy_symmetric(xb: &[f32], w: Option<&[f32]>, nmax: i32, q: &mut [u8; 32]) -> f32 {
    match w {
        None => {
            let (max, _) = signed_absmax(xb);
            let d = max / -(nmax as f32);
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let bias = nmax as f32 + 0.5;
            for (o, &v) in q.iter_mut().zip(xb) {
                // `as` truncates toward zero, then clamp: ggml's (int8)(x*id + nmax + 0.5).
                *o = ((v * id + bias) as i32).clamp(0, 2 * nmax - 1) as u8;
            }
            d
        }
        Some(w) => {
            let mut l = [0i32; 32];
            let s = fit_symmetric(xb, w, nmax, &mut l);
            let d = f16_round(s);
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            for (o, &v) in q.iter_mut().zip(xb) {
                *o = ((roundf(v * id) as i32).clamp(-nmax, nmax - 1) + nmax) as u8;
            }
            d
        }
    }
}

/// Asymmetric legacy rule for q4_1 (nmax 15) and q5_1 (nmax 31): returns (d, m).
fn legacy_asymmetric(xb: &[f32], w: Option<&[f32]>, nmax: i32, q: &mut [u8; 32]) -> (f32, f32) {
    match w {
        None => {
            let mn = xb.iter().copied().fold(f32::MAX, f32::min);
            let mx = xb.iter().copied().fold(-f32::MAX, f32::max);
            let d = (mx - mn) / nmax as f32;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            for (o, &v) in q.iter_mut().zip(xb) {
                *o = (((v - mn) * id + 0.5) as i32).clamp(0, nmax) as u8;
            }
            (d, mn)
        }
        Some(w) => {
            let mut l = [0i32; 32];
            let (s, b) = fit_asymmetric(xb, w, nmax, false, true, &mut l);
            let (d, m) = (f16_round(s), f16_round(b));
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            for (o, &v) in q.iter_mut().zip(xb) {
                *o = (roundf((v - m) * id) as i32).clamp(0, nmax) as u8;
            }
            (d, m)
        }
    }
}

/// Packs 32 nibbles in q4_0 order (elem j low, elem j+16 high).
fn pack_nibbles(q: &[u8; 32], qs: &mut [u8; 16]) {
    for j in 0..16 {
        qs[j] = (q[j] & 0xF) | ((q[j + 16] & 0xF) << 4);
    }
}

/// Packs bit 4 of each of 32 values into a little-endian u32.
fn pack_qh(q: &[u8; 32]) -> [u8; 4] {
    let mut h = 0u32;
    for (j, &v) in q.iter().enumerate() {
        h |= (((v >> 4) & 1) as u32) << j;
    }
    h.to_le_bytes()
}

fn sub(w: Option<&[f32]>, r: std::ops::Range<usize>) -> Option<&[f32]> {
    w.map(|w| &w[r])
}

pub(crate) fn q4_0(x: &[f32], w: Option<&[f32]>, out: &mut [BlockQ4_0]) {
    for (bi, b) in out.iter_mut().enumerate() {
        let r = 32 * bi..32 * bi + 32;
        let mut q = [0u8; 32];
        let d = legacy_symmetric(&x[r.clone()], sub(w, r), 8, &mut q);
        b.d = f16_bytes(d);
        pack_nibbles(&q, &mut b.qs);
    }
}

pub(crate) fn q5_0(x: &[f32], w: Option<&[f32]>, out: &mut [BlockQ5_0]) {
    for (bi, b) in out.iter_mut().enumerate() {
        let r = 32 * bi..32 * bi + 32;
        let mut q = [0u8; 32];
        let d = legacy_symmetric(&x[r.clone()], sub(w, r), 16, &mut q);
        b.d = f16_bytes(d);
        b.qh = pack_qh(&q);
        pack_nibbles(&q, &mut b.qs);
    }
}

pub(crate) fn q4_1(x: &[f32], w: Option<&[f32]>, out: &mut [BlockQ4_1]) {
    for (bi, b) in out.iter_mut().enumerate() {
        let r = 32 * bi..32 * bi + 32;
        let mut q = [0u8; 32];
        let (d, m) = legacy_asymmetric(&x[r.clone()], sub(w, r), 15, &mut q);
        b.d = f16_bytes(d);
        b.m = f16_bytes(m);
        pack_nibbles(&q, &mut b.qs);
    }
}

pub(crate) fn q5_1(x: &[f32], w: Option<&[f32]>, out: &mut [BlockQ5_1]) {
    for (bi, b) in out.iter_mut().enumerate() {
        let r = 32 * bi..32 * bi + 32;
        let mut q = [0u8; 32];
        let (d, m) = legacy_asymmetric(&x[r.clone()], sub(w, r), 31, &mut q);
        b.d = f16_bytes(d);
        b.m = f16_bytes(m);
        b.qh = pack_qh(&q);
        pack_nibbles(&q, &mut b.qs);
    }
}

// ---------------------------------------------------------------------------------------------
// K-quants.

/// Quantizes non-negative sub-block values onto `0..=qmax` with one shared f16 super-scale.
/// Returns the stored super-scale (as f32) and the integer levels.
fn quantize_super_unsigned(v: &[f32], qmax: i32, levels: &mut [u8]) -> f32 {
    let max = v.iter().copied().fold(0.0f32, f32::max);
    let d = f16_round(max / qmax as f32);
    let id = if d > 0.0 { 1.0 / d } else { 0.0 };
    for (l, &s) in levels.iter_mut().zip(v) {
        *l = (roundf(s * id) as i32).clamp(0, qmax) as u8;
    }
    d
}

/// Quantizes signed sub-block scales onto `-n..=n-1` with one shared f16 super-scale, mapping
/// the scale of largest magnitude onto the long (negative) end.
fn quantize_super_signed(v: &[f32], n: i32, levels: &mut [i8]) -> f32 {
    let (max, _) = signed_absmax(v);
    let d = f16_round(max / -(n as f32));
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    for (l, &s) in levels.iter_mut().zip(v) {
        *l = (roundf(s * id) as i32).clamp(-n, n - 1) as i8;
    }
    d
}

/// Shared core of q2_k/q4_k/q5_k: per sub-block asymmetric fit with b <= 0, then super-block
/// quantization of scales and mins, then re-rounding of the elements against the stored values.
/// Returns (d, dmin, scale levels, min levels, element levels).
#[derive(Clone)]
struct AsymK {
    d: f32,
    dmin: f32,
    sc: [u8; 16],
    m: [u8; 16],
    q: [u8; 256],
}

fn asym_k(x: &[f32], w: &[f32], sub_len: usize, nmax: i32, smax: i32, search: bool) -> AsymK {
    let nsub = 256 / sub_len;
    let mut scales = [0.0f32; 16];
    let mut mins = [0.0f32; 16];
    let mut l = [0i32; 32];
    for j in 0..nsub {
        let r = sub_len * j..sub_len * (j + 1);
        let (s, b) = fit_asymmetric(&x[r.clone()], &w[r], nmax, true, search, &mut l[..sub_len]);
        scales[j] = s.max(0.0);
        mins[j] = (-b).max(0.0);
    }
    let mut out = AsymK {
        d: 0.0,
        dmin: 0.0,
        sc: [0; 16],
        m: [0; 16],
        q: [0; 256],
    };
    out.d = quantize_super_unsigned(&scales[..nsub], smax, &mut out.sc[..nsub]);
    out.dmin = quantize_super_unsigned(&mins[..nsub], smax, &mut out.m[..nsub]);
    let p = AsymParams {
        sub_len,
        nsub,
        nmax,
        smax,
    };
    let mut err = total_asym(x, w, &p, &mut out);
    if search {
        refine_asym(x, w, &p, &scales, &mins, &mut out, &mut err);
    }
    out
}

/// Shape of an asymmetric K-quant super-block.
struct AsymParams {
    sub_len: usize,
    nsub: usize,
    nmax: i32,
    smax: i32,
}

/// Clamps four candidate integers to [lo, hi] and drops repeats (order kept, deterministic).
fn uniq4(c: [i32; 4], lo: i32, hi: i32) -> ([i32; 4], usize) {
    let mut out = [0i32; 4];
    let mut n = 0;
    for v in c {
        let v = v.clamp(lo, hi);
        if !out[..n].contains(&v) {
            out[n] = v;
            n += 1;
        }
    }
    (out, n)
}

/// Re-rounds one sub-block against the decoder's (dl, ml) and returns its weighted error.
fn requant_asym(x: &[f32], w: &[f32], dl: f32, ml: f32, nmax: i32, q: &mut [u8]) -> f32 {
    let id = if dl > 0.0 { 1.0 / dl } else { 0.0 };
    let mut e = 0.0f32;
    for ((qv, &v), &wv) in q.iter_mut().zip(x).zip(w) {
        let l = round_clamp((v + ml) * id, 0.0, nmax as f32);
        *qv = l as u8;
        let r = dl * l - ml - v;
        e += wv * r * r;
    }
    e
}

fn total_asym(x: &[f32], w: &[f32], p: &AsymParams, o: &mut AsymK) -> f32 {
    let mut e = 0.0f32;
    for j in 0..p.nsub {
        let r = p.sub_len * j..p.sub_len * (j + 1);
        let dl = o.d * o.sc[j] as f32;
        let ml = o.dmin * o.m[j] as f32;
        e += requant_asym(&x[r.clone()], &w[r.clone()], dl, ml, p.nmax, &mut o.q[r]);
    }
    e
}

/// Alternates a least-squares refit of the two super-block scales (the model is linear in
/// (d, dmin) once the integer scales, mins and levels are fixed) with a neighbourhood search of
/// each sub-block's integer (scale, min); keeps a step only if the stored-value error drops.
fn refine_asym(
    x: &[f32],
    w: &[f32],
    p: &AsymParams,
    scales: &[f32; 16],
    mins: &[f32; 16],
    out: &mut AsymK,
    err: &mut f32,
) {
    for _ in 0..3 {
        let mut c = out.clone();
        let (mut saa, mut sab, mut sbb, mut sxa, mut sxb) =
            (0.0f32, 0.0f32, 0.0f32, 0.0f32, 0.0f32);
        for j in 0..p.nsub {
            let b = c.m[j] as f32;
            for i in p.sub_len * j..p.sub_len * (j + 1) {
                let a = c.sc[j] as f32 * c.q[i] as f32;
                let wv = w[i];
                saa += wv * a * a;
                sab += wv * a * b;
                sbb += wv * b * b;
                sxa += wv * x[i] * a;
                sxb += wv * x[i] * b;
            }
        }
        if saa <= 0.0 {
            return;
        }
        let det = sab * sab - saa * sbb;
        let (mut d, mut dm) = if det != 0.0 {
            ((sab * sxb - sxa * sbb) / det, (saa * sxb - sab * sxa) / det)
        } else {
            (sxa / saa, c.dmin)
        };
        if dm.is_nan() || dm < 0.0 {
            dm = 0.0;
            d = sxa / saa;
        }
        if !(d > 0.0 && d.is_finite() && dm.is_finite()) {
            return;
        }
        c.d = f16_round(d);
        c.dmin = f16_round(dm);
        let mut total = 0.0f32;
        let mut qbuf = [0u8; 32];
        for j in 0..p.nsub {
            let r = p.sub_len * j..p.sub_len * (j + 1);
            let (xs, ws) = (&x[r.clone()], &w[r.clone()]);
            let ts = if c.d > 0.0 {
                roundf(scales[j] / c.d) as i32
            } else {
                0
            };
            let tm = if c.dmin > 0.0 {
                roundf(mins[j] / c.dmin) as i32
            } else {
                0
            };
            let (cs, cm) = (c.sc[j] as i32, c.m[j] as i32);
            let mut best = (f32::INFINITY, c.sc[j], c.m[j]);
            let (sl, sn) = uniq4([cs - 1, cs, cs + 1, ts], 0, p.smax);
            let (ml, mn) = uniq4([cm - 1, cm, cm + 1, tm], 0, p.smax);
            for &s in &sl[..sn] {
                for &m in &ml[..mn] {
                    let e = requant_asym(
                        xs,
                        ws,
                        c.d * s as f32,
                        c.dmin * m as f32,
                        p.nmax,
                        &mut qbuf[..p.sub_len],
                    );
                    if e < best.0 {
                        best = (e, s as u8, m as u8);
                    }
                }
            }
            c.sc[j] = best.1;
            c.m[j] = best.2;
            let (dl, ml) = (c.d * best.1 as f32, c.dmin * best.2 as f32);
            total += requant_asym(xs, ws, dl, ml, p.nmax, &mut c.q[r]);
        }
        if total < *err {
            *err = total;
            *out = c;
        } else {
            return;
        }
    }
}

pub(crate) fn q2_k(x: &[f32], w: &[f32], search: bool, out: &mut [BlockQ2K]) {
    for (bi, b) in out.iter_mut().enumerate() {
        let r = 256 * bi..256 * bi + 256;
        let k = asym_k(&x[r.clone()], &w[r], 16, 3, 15, search);
        b.d = f16_bytes(k.d);
        b.dmin = f16_bytes(k.dmin);
        for j in 0..16 {
            b.scales[j] = k.sc[j] | (k.m[j] << 4);
        }
        b.qs = [0; 64];
        // Element order: half h, shift j, part p, l -> elem 128h + 32j + 16p + l.
        for h in 0..2 {
            for j in 0..4 {
                for p in 0..2 {
                    for l in 0..16 {
                        let e = 128 * h + 32 * j + 16 * p + l;
                        b.qs[32 * h + 16 * p + l] |= k.q[e] << (2 * j);
                    }
                }
            }
        }
    }
}

pub(crate) fn q4_k(x: &[f32], w: &[f32], search: bool, out: &mut [BlockQ4K]) {
    for (bi, b) in out.iter_mut().enumerate() {
        let r = 256 * bi..256 * bi + 256;
        let k = asym_k(&x[r.clone()], &w[r], 32, 15, 63, search);
        b.d = f16_bytes(k.d);
        b.dmin = f16_bytes(k.dmin);
        b.scales = pack_scale_min_k4(&first8(&k.sc), &first8(&k.m));
        for c in 0..4 {
            for l in 0..32 {
                b.qs[32 * c + l] = k.q[64 * c + l] | (k.q[64 * c + 32 + l] << 4);
            }
        }
    }
}

pub(crate) fn q5_k(x: &[f32], w: &[f32], search: bool, out: &mut [BlockQ5K]) {
    for (bi, b) in out.iter_mut().enumerate() {
        let r = 256 * bi..256 * bi + 256;
        let k = asym_k(&x[r.clone()], &w[r], 32, 31, 63, search);
        b.d = f16_bytes(k.d);
        b.dmin = f16_bytes(k.dmin);
        b.scales = pack_scale_min_k4(&first8(&k.sc), &first8(&k.m));
        b.qh = [0; 32];
        for c in 0..4 {
            for l in 0..32 {
                let (lo, hi) = (k.q[64 * c + l], k.q[64 * c + 32 + l]);
                b.qs[32 * c + l] = (lo & 0xF) | ((hi & 0xF) << 4);
                b.qh[l] |= ((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1));
            }
        }
    }
}

fn first8(v: &[u8; 16]) -> [u8; 8] {
    let mut o = [0u8; 8];
    o.copy_from_slice(&v[..8]);
    o
}

/// Shared core of q3_k/q6_k: per sub-block of 16 symmetric fit on [-nmax, nmax-1], then signed
/// super-block quantization of the scales on [-smax, smax-1], then re-rounding.
fn sym_k(x: &[f32], w: &[f32], nmax: i32, smax: i32, search: bool) -> (f32, [i8; 16], [i32; 256]) {
    let mut scales = [0.0f32; 16];
    let mut l = [0i32; 16];
    for (j, s) in scales.iter_mut().enumerate() {
        let r = 16 * j..16 * j + 16;
        *s = if search {
            fit_symmetric(&x[r.clone()], &w[r], nmax, &mut l)
        } else {
            signed_absmax(&x[r]).0 / -(nmax as f32)
        };
    }
    let mut sc = [0i8; 16];
    let mut d = quantize_super_signed(&scales, smax, &mut sc);
    let mut q = [0i32; 256];
    let mut err = 0.0f32;
    for (j, &s) in sc.iter().enumerate() {
        let r = 16 * j..16 * j + 16;
        err += requant_sym(&x[r.clone()], &w[r.clone()], d * s as f32, nmax, &mut q[r]);
    }
    if search {
        // Alternate a least-squares refit of d (x ≈ d·sc_j·q_i is linear in d) with a
        // neighbourhood search of each integer sub-block scale; keep only improvements.
        for _ in 0..3 {
            let (mut saa, mut sxa) = (0.0f32, 0.0f32);
            for i in 0..256 {
                let a = sc[i / 16] as f32 * q[i] as f32;
                saa += w[i] * a * a;
                sxa += w[i] * x[i] * a;
            }
            if saa <= 0.0 {
                break;
            }
            let nd = f16_round(sxa / saa);
            if !(nd.is_finite() && nd != 0.0) {
                break;
            }
            let (mut nsc, mut nq, mut total) = (sc, [0i32; 256], 0.0f32);
            let mut qbuf = [0i32; 16];
            for j in 0..16 {
                let r = 16 * j..16 * j + 16;
                let (xs, ws) = (&x[r.clone()], &w[r.clone()]);
                let cs = sc[j] as i32;
                let mut best = (f32::INFINITY, sc[j]);
                for s in [cs - 1, cs, cs + 1, roundf(scales[j] / nd) as i32] {
                    let s = s.clamp(-smax, smax - 1);
                    let e = requant_sym(xs, ws, nd * s as f32, nmax, &mut qbuf);
                    if e < best.0 {
                        best = (e, s as i8);
                    }
                }
                nsc[j] = best.1;
                total += requant_sym(xs, ws, nd * best.1 as f32, nmax, &mut nq[r]);
            }
            if total < err {
                (err, d, sc, q) = (total, nd, nsc, nq);
            } else {
                break;
            }
        }
    }
    (d, sc, q)
}

/// Re-rounds one symmetric sub-block against the decoder's scale and returns its weighted error.
fn requant_sym(x: &[f32], w: &[f32], dl: f32, nmax: i32, q: &mut [i32]) -> f32 {
    let id = if dl != 0.0 { 1.0 / dl } else { 0.0 };
    let mut e = 0.0f32;
    for ((qv, &v), &wv) in q.iter_mut().zip(x).zip(w) {
        let l = round_clamp(v * id, -nmax as f32, (nmax - 1) as f32);
        *qv = l as i32;
        let r = dl * l - v;
        e += wv * r * r;
    }
    e
}

pub(crate) fn q3_k(x: &[f32], w: &[f32], search: bool, out: &mut [BlockQ3K]) {
    for (bi, b) in out.iter_mut().enumerate() {
        let r = 256 * bi..256 * bi + 256;
        let (d, sc, q) = sym_k(&x[r.clone()], &w[r], 4, 32, search);
        b.d = f16_bytes(d);
        b.scales = pack_q3k_scales(&sc);
        b.qs = [0; 64];
        b.hmask = [0; 32];
        // Same element order as q2_k; the hmask bit index runs over the 8 (half, shift) steps.
        for h in 0..2 {
            for j in 0..4 {
                let bit = 4 * h + j;
                for p in 0..2 {
                    for l in 0..16 {
                        let e = 128 * h + 32 * j + 16 * p + l;
                        let u = (q[e] + 4) as u8; // 0..=7
                        b.qs[32 * h + 16 * p + l] |= (u & 3) << (2 * j);
                        b.hmask[16 * p + l] |= (u >> 2) << bit;
                    }
                }
            }
        }
    }
}

pub(crate) fn q6_k(x: &[f32], w: &[f32], search: bool, out: &mut [BlockQ6K]) {
    for (bi, b) in out.iter_mut().enumerate() {
        let r = 256 * bi..256 * bi + 256;
        let (d, sc, q) = sym_k(&x[r.clone()], &w[r], 32, 128, search);
        b.d = f16_bytes(d);
        for (o, &s) in b.scales.iter_mut().zip(&sc) {
            *o = s as u8;
        }
        b.ql = [0; 128];
        b.qh = [0; 64];
        for h in 0..2 {
            for l in 0..32 {
                let e = |k: usize| (q[128 * h + 32 * k + l] + 32) as u8;
                let (q1, q2, q3, q4) = (e(0), e(1), e(2), e(3));
                b.ql[64 * h + l] = (q1 & 0xF) | ((q3 & 0xF) << 4);
                b.ql[64 * h + l + 32] = (q2 & 0xF) | ((q4 & 0xF) << 4);
                b.qh[32 * h + l] =
                    (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Non-linear codebook types.

/// Fills 32 codebook indices for x with the stored scale d.
fn assign_iq4(x: &[f32], d: f32, q: &mut [u8; 32]) {
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    for (o, &v) in q.iter_mut().zip(x) {
        *o = nearest_iq4(v * id);
    }
}

pub(crate) fn iq4_nl(x: &[f32], w: &[f32], search: bool, out: &mut [BlockIq4Nl]) {
    for (bi, b) in out.iter_mut().enumerate() {
        let r = 32 * bi..32 * bi + 32;
        let xb = &x[r.clone()];
        let s = if search {
            fit_codebook(xb, &w[r])
        } else {
            signed_absmax(xb).0 / IQ4_NL_VALUES[0] as f32
        };
        let mut d = f16_round(s);
        if search {
            // Refit d by least squares for the indices the stored d picks; keep if better.
            let wb = &w[32 * bi..32 * bi + 32];
            let mut err = iq4_err(xb, wb, d);
            for _ in 0..2 {
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                let (mut skx, mut sk2) = (0.0f32, 0.0f32);
                for (&v, &wv) in xb.iter().zip(wb) {
                    let k = IQ4_NL_VALUES[nearest_iq4(v * id) as usize] as f32;
                    skx += wv * k * v;
                    sk2 += wv * k * k;
                }
                if sk2 <= 0.0 {
                    break;
                }
                let nd = f16_round(skx / sk2);
                let e = iq4_err(xb, wb, nd);
                if nd.is_finite() && e < err {
                    (err, d) = (e, nd);
                } else {
                    break;
                }
            }
        }
        let mut q = [0u8; 32];
        assign_iq4(xb, d, &mut q);
        b.d = f16_bytes(d);
        pack_nibbles(&q, &mut b.qs);
    }
}

pub(crate) fn iq4_xs(x: &[f32], w: &[f32], search: bool, out: &mut [BlockIq4Xs]) {
    for (bi, b) in out.iter_mut().enumerate() {
        let xs = &x[256 * bi..256 * bi + 256];
        let ws = &w[256 * bi..256 * bi + 256];
        let mut scales = [0.0f32; 8];
        for (ib, s) in scales.iter_mut().enumerate() {
            let r = 32 * ib..32 * ib + 32;
            *s = if search {
                fit_codebook(&xs[r.clone()], &ws[r])
            } else {
                signed_absmax(&xs[r]).0 / IQ4_NL_VALUES[0] as f32
            };
        }
        let mut ls = [0i8; 8];
        let mut d = quantize_super_signed(&scales, 32, &mut ls);
        if search {
            refine_iq4xs(xs, ws, &scales, &mut d, &mut ls);
        }
        b.d = f16_bytes(d);
        let mut sh = 0u16;
        b.scales_l = [0; 4];
        for ib in 0..8 {
            let u = (ls[ib] as i32 + 32) as u8; // 0..=63
            b.scales_l[ib / 2] |= (u & 0xF) << (4 * (ib % 2));
            sh |= ((u >> 4) as u16) << (2 * ib);
            let dl = d * ls[ib] as f32;
            let mut q = [0u8; 32];
            assign_iq4(&xs[32 * ib..32 * ib + 32], dl, &mut q);
            let mut qs = [0u8; 16];
            pack_nibbles(&q, &mut qs);
            b.qs[16 * ib..16 * ib + 16].copy_from_slice(&qs);
        }
        b.scales_h = sh.to_le_bytes();
    }
}

/// Weighted error of one iq4 sub-block coded with scale dl (indices re-picked as nearest).
fn iq4_err(x: &[f32], w: &[f32], dl: f32) -> f32 {
    let id = if dl != 0.0 { 1.0 / dl } else { 0.0 };
    x.iter()
        .zip(w)
        .map(|(&v, &wv)| {
            let r = dl * IQ4_NL_VALUES[nearest_iq4(v * id) as usize] as f32 - v;
            wv * r * r
        })
        .sum()
}

/// iq4_xs counterpart of the K-quant refinement: LS refit of d given the integer sub-block
/// scales and codebook indices, then a ±1 search of each sub-block scale; keeps improvements.
fn refine_iq4xs(x: &[f32], w: &[f32], scales: &[f32; 8], d: &mut f32, ls: &mut [i8; 8]) {
    let total = |d: f32, ls: &[i8; 8]| -> f32 {
        (0..8)
            .map(|j| {
                let r = 32 * j..32 * j + 32;
                iq4_err(&x[r.clone()], &w[r], d * ls[j] as f32)
            })
            .sum()
    };
    let mut err = total(*d, ls);
    for _ in 0..3 {
        let (mut saa, mut sxa) = (0.0f32, 0.0f32);
        for (j, &l) in ls.iter().enumerate() {
            let dl = *d * l as f32;
            let id = if dl != 0.0 { 1.0 / dl } else { 0.0 };
            for i in 32 * j..32 * j + 32 {
                let a = l as f32 * IQ4_NL_VALUES[nearest_iq4(x[i] * id) as usize] as f32;
                saa += w[i] * a * a;
                sxa += w[i] * x[i] * a;
            }
        }
        if saa <= 0.0 {
            return;
        }
        let nd = f16_round(sxa / saa);
        if !(nd.is_finite() && nd != 0.0) {
            return;
        }
        let mut nls = *ls;
        for j in 0..8 {
            let r = 32 * j..32 * j + 32;
            let cs = ls[j] as i32;
            let mut best = (f32::INFINITY, ls[j]);
            for s in [cs - 1, cs, cs + 1, roundf(scales[j] / nd) as i32] {
                let s = s.clamp(-32, 31);
                let e = iq4_err(&x[r.clone()], &w[r.clone()], nd * s as f32);
                if e < best.0 {
                    best = (e, s as i8);
                }
            }
            nls[j] = best.1;
        }
        let e = total(nd, &nls);
        if e < err {
            (err, *d, *ls) = (e, nd, nls);
        } else {
            return;
        }
    }
}
