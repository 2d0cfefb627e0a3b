//! The `vq` codec stage: vector quantization of consecutive row elements against a
//! per-tensor f16 codebook (the `pocketllm` and `tenpak_x` presets).
//!
//! Normative layout: each row is cut into `V = ceil(cols/d)` vectors of `d`
//! consecutive elements (the last one zero-padded). The codebook is f16 `[k][d]`;
//! indices are `u8` when `k <= 256`, else little-endian `u16`, `[rows][V]`. Decoding
//! is `x[r][v*d + j] = f32(C[idx[r][v]][j])`, padding positions discarded.
//!
//! Encoder: weighted k-means++ seeding from a splitmix64 stream, then Lloyd iterations
//! with brute-force L2 assignment (ties to the lowest index) against the f16-rounded
//! codebook, so the stored indices are optimal for what is decoded. Padding positions
//! of a row's last vector are excluded from every distance and from the centroid
//! means (each centroid coordinate is the weighted mean over the vectors that have that
//! coordinate). An empty cluster keeps its previous centroid. If there are fewer
//! distinct vectors than `k`, the spare codebook rows repeat chosen centroids (never
//! selected, since ties go to the lowest index).

use std::ops::Range;

use half::f16;
use rayon::prelude::*;

use super::kernels::{self, Backend};
use super::stage::{check_len, check_rows, Mode, SplitMix64, StageError};

/// Vectors per parallel assignment chunk; fixed so results never depend on threads.
const CHUNK: usize = 2048;

/// Parameters of a vq stage. Only `d` and `k` are part of the stored format;
/// `iters` and `seed` steer the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VqParams {
    /// Vector dimension, 1..=16.
    pub d: usize,
    /// Codebook size, 2..=65536.
    pub k: usize,
    /// Maximum Lloyd iterations (the research default is 15); stops early at a fixed point.
    pub iters: usize,
    /// Seed of the k-means++ sampling.
    pub seed: u64,
}

impl VqParams {
    /// Rejects parameters outside the ranges the layout is defined for.
    pub fn validate(&self) -> Result<(), StageError> {
        if !(1..=16).contains(&self.d) {
            return Err(StageError::InvalidParams("vq d must be in 1..=16"));
        }
        if !(2..=65536).contains(&self.k) {
            return Err(StageError::InvalidParams("vq k must be in 2..=65536"));
        }
        Ok(())
    }

    fn index_bytes(&self) -> usize {
        if self.k <= 256 {
            1
        } else {
            2
        }
    }
}

/// Sizes of a vq stage's buffers, for validation at open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VqLayout {
    /// Vectors per row, `ceil(cols/d)`.
    pub vectors_per_row: usize,
    /// Number of f16 values in the codebook, `k*d`.
    pub codebook_len: usize,
    /// Bytes of the index buffer, `rows*V*(1 or 2)`.
    pub index_bytes: usize,
}

/// Buffer sizes for a `rows x cols` tensor, or `None` on invalid parameters or overflow.
pub fn layout(rows: usize, cols: usize, p: &VqParams) -> Option<VqLayout> {
    p.validate().ok()?;
    let v = cols.div_ceil(p.d);
    Some(VqLayout {
        vectors_per_row: v,
        codebook_len: p.k * p.d,
        index_bytes: rows.checked_mul(v)?.checked_mul(p.index_bytes())?,
    })
}

/// An encoded vq stage, owning its buffers.
#[derive(Debug, Clone, PartialEq)]
pub struct VqEncoded {
    /// f16 codebook `[k][d]`.
    pub codebook: Vec<f16>,
    /// Indices `[rows][V]`, u8 or little-endian u16.
    pub indices: Vec<u8>,
}

impl VqEncoded {
    /// Borrowed view, the same shape the decoder gets from a mapped file.
    pub fn as_ref(&self) -> VqRef<'_> {
        VqRef {
            codebook: &self.codebook,
            indices: &self.indices,
        }
    }
}

/// Borrowed vq stage buffers (zero-copy views into a mapped file).
#[derive(Debug, Clone, Copy)]
pub struct VqRef<'a> {
    /// f16 codebook `[k][d]`.
    pub codebook: &'a [f16],
    /// Indices `[rows][V]`.
    pub indices: &'a [u8],
}

/// Vectors gathered from the matrix, zero-padded, with their count of real coordinates.
struct Vectors {
    d: usize,
    data: Vec<f32>,
    v_per_row: usize,
    last_real: usize,
}

impl Vectors {
    fn len(&self) -> usize {
        self.data.len() / self.d
    }
    fn real(&self, i: usize) -> usize {
        if self.last_real != self.d && (i + 1).is_multiple_of(self.v_per_row) {
            self.last_real
        } else {
            self.d
        }
    }
    fn get(&self, i: usize) -> &[f32] {
        &self.data[i * self.d..i * self.d + self.real(i)]
    }
}

fn dist2(a: &[f32], c: &[f32]) -> f32 {
    let mut s = 0.0f32;
    for (x, y) in a.iter().zip(c) {
        let e = x - y;
        s += e * e;
    }
    s
}

fn round_f16(c: &mut [f32]) {
    for v in c {
        *v = f16::from_f32(v.clamp(-65504.0, 65504.0)).to_f32();
    }
}

/// Weighted k-means++ seeding; returns `k*d` centroids (f16-representable).
fn seed(vs: &Vectors, w: &[f64], k: usize, rng: &mut SplitMix64) -> Vec<f32> {
    let d = vs.d;
    let n = vs.len();
    let mut cents = vec![0.0f32; k * d];
    let pick = |weights: &mut dyn Iterator<Item = f64>, total: f64, r: f64| -> usize {
        let target = r * total;
        let mut acc = 0.0;
        let mut last = 0;
        for (i, wi) in weights.enumerate() {
            if wi > 0.0 {
                last = i;
                acc += wi;
                if acc > target {
                    return i;
                }
            }
        }
        last
    };
    let wtot: f64 = w.iter().sum();
    let first = if wtot > 0.0 {
        pick(&mut w.iter().copied(), wtot, rng.next_f64())
    } else {
        ((rng.next_f64() * n as f64) as usize).min(n - 1)
    };
    let put = |cents: &mut [f32], c: usize, i: usize| {
        let dst = &mut cents[c * d..(c + 1) * d];
        dst.copy_from_slice(&vs.data[i * d..(i + 1) * d]);
        round_f16(dst);
    };
    put(&mut cents, 0, first);
    let mut d2 = vec![f32::INFINITY; n];
    let mut chosen = 1;
    for c in 1..k {
        let cen = &cents[(c - 1) * d..c * d];
        // Update D² against the newest centroid; each fixed chunk also returns its
        // weighted D² sum, so the total and the sampling walk are ordered and cheap.
        let sums: Vec<f64> = d2
            .par_chunks_mut(CHUNK)
            .zip(w.par_chunks(CHUNK))
            .enumerate()
            .map(|(ci, (ch, wc))| {
                let mut sum = 0.0f64;
                for (t, (dv, &wt)) in ch.iter_mut().zip(wc).enumerate() {
                    let x = vs.get(ci * CHUNK + t);
                    let dd = dist2(x, &cen[..x.len()]);
                    if dd < *dv {
                        *dv = dd;
                    }
                    sum += *dv as f64 * wt;
                }
                sum
            })
            .collect();
        let total: f64 = sums.iter().sum();
        if total.is_nan() || total <= 0.0 {
            break;
        }
        let mut target = rng.next_f64() * total;
        // Find the chunk holding the sample, then the vector inside it.
        let mut ci = 0;
        while ci + 1 < sums.len() && target >= sums[ci] {
            target -= sums[ci];
            ci += 1;
        }
        let lo = ci * CHUNK;
        let hi = (lo + CHUNK).min(n);
        let i = pick(
            &mut d2[lo..hi]
                .iter()
                .zip(&w[lo..hi])
                .map(|(&a, &b)| a as f64 * b),
            sums[ci],
            target / sums[ci].max(f64::MIN_POSITIVE),
        );
        put(&mut cents, c, lo + i);
        chosen += 1;
    }
    // Fewer distinct (weighted) vectors than k: repeat the chosen centroids.
    for c in chosen..k {
        let src = (c % chosen) * d;
        cents.copy_within(src..src + d, c * d);
    }
    cents
}

/// Nearest centroid (ties to the lowest index) for every vector, against `cents`.
fn assign(vs: &Vectors, cents: &[f32], k: usize, idx: &mut [u32]) {
    let d = vs.d;
    // Structure of arrays: coordinate j of centroid c at ct[j*k + c], so the inner
    // loop runs over centroids and vectorizes.
    let mut ct = vec![0.0f32; k * d];
    for c in 0..k {
        for j in 0..d {
            ct[j * k + c] = cents[c * d + j];
        }
    }
    let be = kernels::detect();
    idx.par_chunks_mut(CHUNK).enumerate().for_each(|(ci, ch)| {
        let mut dist = vec![0.0f32; k];
        for (t, out) in ch.iter_mut().enumerate() {
            let x = vs.get(ci * CHUNK + t);
            *out = kernels::nearest(be, x, &ct, k, &mut dist) as u32;
        }
    });
}

/// Weighted means per coordinate; empty coordinates keep the old centroid.
fn update(vs: &Vectors, w: &[f64], idx: &[u32], cents: &mut [f32], k: usize) {
    let d = vs.d;
    let mut sum = vec![0.0f64; k * d];
    let mut wsum = vec![0.0f64; k * d];
    for (i, &c) in idx.iter().enumerate() {
        let base = c as usize * d;
        for (j, &x) in vs.get(i).iter().enumerate() {
            sum[base + j] += w[i] * x as f64;
            wsum[base + j] += w[i];
        }
    }
    for ((c, s), ws) in cents.iter_mut().zip(&sum).zip(&wsum) {
        if *ws > 0.0 {
            *c = (s / ws) as f32;
        }
    }
    round_f16(cents);
}

/// Encodes a row-major `rows x cols` matrix. `vec_weights` (len `rows*V`, finite,
/// non-negative) weights each vector in seeding and in the centroid means (the assignment is
/// unweighted). The output is identical for any rayon thread count.
pub fn encode(
    x: &[f32],
    rows: usize,
    cols: usize,
    p: &VqParams,
    vec_weights: Option<&[f32]>,
) -> Result<VqEncoded, StageError> {
    p.validate()?;
    let lay = layout(rows, cols, p).ok_or(StageError::Overflow)?;
    let n = rows.checked_mul(cols).ok_or(StageError::Overflow)?;
    check_len("vq input", x.len(), n)?;
    if x.iter().any(|v| !v.is_finite()) {
        return Err(StageError::NonFinite);
    }
    let v_per_row = lay.vectors_per_row;
    let nv = rows * v_per_row;
    let w: Vec<f64> = match vec_weights {
        Some(w) => {
            check_len("vq vector weights", w.len(), nv)?;
            if w.iter().any(|v| !v.is_finite() || *v < 0.0) {
                return Err(StageError::InvalidParams(
                    "vector weights must be finite and >= 0",
                ));
            }
            w.iter().map(|&v| v as f64).collect()
        }
        None => vec![1.0; nv],
    };
    let (d, k) = (p.d, p.k);
    if nv == 0 {
        return Ok(VqEncoded {
            codebook: vec![f16::ZERO; k * d],
            indices: Vec::new(),
        });
    }
    let padded = v_per_row * d;
    let mut data = vec![0.0f32; nv * d];
    for (dst, src) in data.chunks_exact_mut(padded).zip(x.chunks_exact(cols)) {
        dst[..cols].copy_from_slice(src);
    }
    let vs = Vectors {
        d,
        data,
        v_per_row,
        last_real: cols - (v_per_row - 1) * d,
    };
    let mut rng = SplitMix64::new(p.seed);
    // k-means++ costs k passes over the vectors; past 64 vectors per centroid it seeds from
    // whole rows picked at a fixed stride (deterministic, thread-count independent), and the
    // Lloyd iterations below still see every vector.
    let sub_rows = (64 * k).div_ceil(v_per_row.max(1));
    let mut cents = if nv > 64 * k && sub_rows < rows {
        let picked: Vec<usize> = (0..sub_rows).map(|j| j * rows / sub_rows).collect();
        let mut sdata = Vec::with_capacity(sub_rows * padded);
        let mut sw = Vec::with_capacity(sub_rows * v_per_row);
        for &r in &picked {
            sdata.extend_from_slice(&vs.data[r * padded..(r + 1) * padded]);
            sw.extend_from_slice(&w[r * v_per_row..(r + 1) * v_per_row]);
        }
        let sub = Vectors {
            d,
            data: sdata,
            v_per_row,
            last_real: vs.last_real,
        };
        seed(&sub, &sw, k, &mut rng)
    } else {
        seed(&vs, &w, k, &mut rng)
    };
    let mut idx = vec![0u32; nv];
    assign(&vs, &cents, k, &mut idx);
    let mut next = vec![0u32; nv];
    for _ in 0..p.iters {
        update(&vs, &w, &idx, &mut cents, k);
        assign(&vs, &cents, k, &mut next);
        if next == idx {
            break;
        }
        std::mem::swap(&mut idx, &mut next);
    }
    // `idx` is always the assignment against the current `cents` (a fixed point when
    // the loop broke early, the last assignment otherwise).
    let indices = if k <= 256 {
        idx.iter().map(|&i| i as u8).collect()
    } else {
        idx.iter().flat_map(|&i| (i as u16).to_le_bytes()).collect()
    };
    let codebook = cents.iter().map(|&v| f16::from_f32(v)).collect();
    Ok(VqEncoded { codebook, indices })
}

/// Decodes `rows` into `out` (len `rows.len()*cols`) with the fastest backend.
pub fn decode_rows(
    enc: VqRef<'_>,
    cols: usize,
    p: &VqParams,
    rows: Range<usize>,
    out: &mut [f32],
    mode: Mode,
) -> Result<(), StageError> {
    decode_rows_with(kernels::detect(), enc, cols, p, rows, out, mode)
}

/// [`decode_rows`] with a chosen backend (falls back to scalar if the CPU lacks it).
pub fn decode_rows_with(
    be: Backend,
    enc: VqRef<'_>,
    cols: usize,
    p: &VqParams,
    rows: Range<usize>,
    out: &mut [f32],
    mode: Mode,
) -> Result<(), StageError> {
    p.validate()?;
    check_rows(&rows, usize::MAX)?;
    let lay = layout(rows.end, cols, p).ok_or(StageError::Overflow)?;
    let nrows = rows.end - rows.start;
    let need_out = nrows.checked_mul(cols).ok_or(StageError::Overflow)?;
    check_len("vq output", out.len(), need_out)?;
    let Some(cb) = enc.codebook.get(..lay.codebook_len) else {
        return Err(StageError::Length {
            what: "vq codebook",
            expected: lay.codebook_len,
            got: enc.codebook.len(),
        });
    };
    if enc.indices.len() < lay.index_bytes {
        return Err(StageError::Length {
            what: "vq indices",
            expected: lay.index_bytes,
            got: enc.indices.len(),
        });
    }
    if need_out == 0 {
        return Ok(());
    }
    let v = lay.vectors_per_row;
    let ib = p.index_bytes();
    if kernels::usable(be) != Backend::Scalar && cb.len() <= need_out {
        let indices = &enc.indices[..lay.index_bytes];
        return decode_rows_widened(cb, p.d, indices, v, ib, cols, rows, out, mode);
    }
    for (orow, r) in out.chunks_exact_mut(cols).zip(rows) {
        let irow = &enc.indices[r * v * ib..(r + 1) * v * ib];
        let ok = if ib == 1 {
            kernels::vq_row(be, cb, p.d, irow.iter().map(|&i| i as usize), orow, mode)
        } else {
            let it = irow
                .chunks_exact(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize);
            kernels::vq_row(be, cb, p.d, it, orow, mode)
        };
        if !ok {
            return Err(StageError::IndexOutOfRange);
        }
    }
    Ok(())
}

/// The fast path of [`decode_rows_with`]: the codebook widened to f32 once per call (only
/// taken when it is no larger than the output), then every vector a fixed-size copy of
/// `d` values for the common `d`. The values equal the reference's: widening f16 to f32 is
/// exact either way, and `Add` adds each value once.
#[allow(clippy::too_many_arguments)]
fn decode_rows_widened(
    cb: &[f16],
    d: usize,
    indices: &[u8],
    v: usize,
    ib: usize,
    cols: usize,
    rows: Range<usize>,
    out: &mut [f32],
    mode: Mode,
) -> Result<(), StageError> {
    use half::slice::HalfFloatSliceExt;
    let mut cbf = vec![0f32; cb.len()];
    cb.convert_to_f32_slice(&mut cbf);
    for (orow, r) in out.chunks_exact_mut(cols).zip(rows) {
        let irow = &indices[r * v * ib..(r + 1) * v * ib];
        let ok = if ib == 1 {
            vq_row_widened(&cbf, d, irow.iter().map(|&i| i as usize), orow, mode)
        } else {
            let it = irow
                .chunks_exact(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize);
            vq_row_widened(&cbf, d, it, orow, mode)
        };
        if !ok {
            return Err(StageError::IndexOutOfRange);
        }
    }
    Ok(())
}

/// One row from a widened codebook; false if an index is outside it.
fn vq_row_widened(
    cbf: &[f32],
    d: usize,
    idx: impl Iterator<Item = usize>,
    orow: &mut [f32],
    mode: Mode,
) -> bool {
    match d {
        2 => vq_row_fixed::<2>(cbf, idx, orow, mode),
        4 => vq_row_fixed::<4>(cbf, idx, orow, mode),
        8 => vq_row_fixed::<8>(cbf, idx, orow, mode),
        16 => vq_row_fixed::<16>(cbf, idx, orow, mode),
        _ => {
            for (o, i) in orow.chunks_mut(d.max(1)).zip(idx) {
                let Some(c) = i.checked_mul(d).and_then(|s| cbf.get(s..s + o.len())) else {
                    return false;
                };
                mode.write(o, c);
            }
            true
        }
    }
}

/// [`vq_row_widened`] for a vector length known at compile time.
fn vq_row_fixed<const D: usize>(
    cbf: &[f32],
    idx: impl Iterator<Item = usize>,
    orow: &mut [f32],
    mode: Mode,
) -> bool {
    let full = orow.len() / D * D;
    let (head, tail) = orow.split_at_mut(full);
    let mut idx = idx;
    for (o, i) in head.chunks_exact_mut(D).zip(&mut idx) {
        let Some(c) = cbf.get(i * D..).and_then(|c| c.first_chunk::<D>()) else {
            return false;
        };
        mode.write(o, c);
    }
    if !tail.is_empty() {
        let Some(c) = idx.next().and_then(|i| cbf.get(i * D..i * D + tail.len())) else {
            return false;
        };
        mode.write(tail, c);
    }
    true
}
