//! The `lowrank` codec stage: a rank-r factorization `x ≈ L·R` (the first stage of
//! `tenpak_x`), which captures the few large singular directions that make grouped
//! quantization of the remainder cheap.
//!
//! Normative layout: `L` is f16 `[rows][r]`, `R` is f16 `[r][cols]`. Decoding is
//! `x[i][j] = Σ_t f32(L[i][t]) * f32(R[t][j])`, with the sum starting from the t = 0
//! product and adding the products for t = 1, 2, ... in f32 in that order, each a
//! separate multiply and add (no FMA).
//!
//! Encoder: randomized SVD in f64 of `W·diag(√imp)` with a splitmix64 Gaussian test
//! matrix (rank + 8 columns), two power iterations with re-orthonormalisation
//! (Gram-Schmidt applied twice), then an exact SVD of the small projected matrix with
//! `faer`. Then `L = U·diag(σ)` and `R = Vᵀ·diag(1/√imp)`, each rounded to f16.

use std::ops::Range;

use faer::Mat;
use half::f16;

use super::stage::{check_len, check_rows, Mode, SplitMix64, StageError};

/// Extra sketch columns beyond the rank (randomized SVD oversampling).
const OVERSAMPLE: usize = 8;
/// Power iterations of the range finder.
const POWER_ITERS: usize = 2;
/// Seed of the Gaussian test matrix (fixed: the stage has no seed parameter).
const SEED: u64 = 0x7465_6e70_616b_4c52;
/// Columns decoded per block; bounds the stack scratch of the Add mode.
const BLOCK: usize = 256;

/// Sizes of a lowrank stage's buffers, for validation at open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LowRankLayout {
    /// f16 values in `L`, `rows*r`.
    pub left_len: usize,
    /// f16 values in `R`, `r*cols`.
    pub right_len: usize,
}

/// Buffer sizes, or `None` if `rank` is 0, exceeds `min(rows, cols)`, or sizes overflow.
pub fn layout(rows: usize, cols: usize, rank: usize) -> Option<LowRankLayout> {
    if rank == 0 || rank > rows.min(cols) {
        return None;
    }
    Some(LowRankLayout {
        left_len: rows.checked_mul(rank)?,
        right_len: rank.checked_mul(cols)?,
    })
}

/// An encoded lowrank stage, owning its factors.
#[derive(Debug, Clone, PartialEq)]
pub struct LowRankEncoded {
    /// f16 `[rows][r]`.
    pub left: Vec<f16>,
    /// f16 `[r][cols]`.
    pub right: Vec<f16>,
}

impl LowRankEncoded {
    /// Borrowed view, the same shape the decoder gets from a mapped file.
    pub fn as_ref(&self) -> LowRankRef<'_> {
        LowRankRef {
            left: &self.left,
            right: &self.right,
        }
    }
}

/// Borrowed lowrank factors (zero-copy views into a mapped file).
#[derive(Debug, Clone, Copy)]
pub struct LowRankRef<'a> {
    /// f16 `[rows][r]`.
    pub left: &'a [f16],
    /// f16 `[r][cols]`.
    pub right: &'a [f16],
}

/// Orthonormalizes the columns of `m` in place (modified Gram-Schmidt, applied twice
/// for numerical orthogonality). A column that vanishes is replaced by zeros.
fn orthonormalize(m: &mut Mat<f64>) {
    let (nr, nc) = (m.nrows(), m.ncols());
    for _pass in 0..2 {
        for j in 0..nc {
            for i in 0..j {
                let mut dot = 0.0;
                for t in 0..nr {
                    dot += m[(t, i)] * m[(t, j)];
                }
                for t in 0..nr {
                    let v = m[(t, i)];
                    m[(t, j)] -= dot * v;
                }
            }
            let mut nrm = 0.0;
            for t in 0..nr {
                nrm += m[(t, j)] * m[(t, j)];
            }
            let nrm = nrm.sqrt();
            let inv = if nrm > 1e-300 { 1.0 / nrm } else { 0.0 };
            for t in 0..nr {
                m[(t, j)] *= inv;
            }
        }
    }
}

fn matmul(a: faer::MatRef<'_, f64>, b: faer::MatRef<'_, f64>) -> Mat<f64> {
    let mut c = Mat::<f64>::zeros(a.nrows(), b.ncols());
    faer::linalg::matmul::matmul(c.as_mut(), faer::Accum::Replace, a, b, 1.0, faer::Par::Seq);
    c
}

/// Factorizes a row-major `rows x cols` matrix at `rank`. `col_importance` (len
/// `cols`, finite, > 0) weights the columns' squared error. Deterministic (fixed seed,
/// sequential linear algebra).
pub fn encode(
    x: &[f32],
    rows: usize,
    cols: usize,
    rank: usize,
    col_importance: Option<&[f32]>,
) -> Result<LowRankEncoded, StageError> {
    let lay = layout(rows, cols, rank).ok_or(StageError::InvalidParams(
        "lowrank rank must be in 1..=min(rows, cols)",
    ))?;
    check_len(
        "lowrank input",
        x.len(),
        rows.checked_mul(cols).ok_or(StageError::Overflow)?,
    )?;
    if x.iter().any(|v| !v.is_finite()) {
        return Err(StageError::NonFinite);
    }
    let sq: Vec<f64> = match col_importance {
        Some(imp) => {
            check_len("lowrank column importance", imp.len(), cols)?;
            if imp.iter().any(|v| !v.is_finite() || *v <= 0.0) {
                return Err(StageError::InvalidParams(
                    "column importance must be finite and > 0",
                ));
            }
            imp.iter().map(|&v| (v as f64).sqrt()).collect()
        }
        None => vec![1.0; cols],
    };
    let a = Mat::<f64>::from_fn(rows, cols, |i, j| x[i * cols + j] as f64 * sq[j]);
    let l = (rank + OVERSAMPLE).min(rows.min(cols));
    let mut rng = SplitMix64::new(SEED);
    let omega = Mat::<f64>::from_fn(cols, l, |_, _| rng.next_gaussian());
    let mut q = matmul(a.as_ref(), omega.as_ref());
    orthonormalize(&mut q);
    for _ in 0..POWER_ITERS {
        let mut z = matmul(a.transpose(), q.as_ref());
        orthonormalize(&mut z);
        q = matmul(a.as_ref(), z.as_ref());
        orthonormalize(&mut q);
    }
    // B = Qᵀ A (l x cols). Bᵀ = Q2 R2 with Q2 (cols x l) orthonormal, so
    // B = R2ᵀ Q2ᵀ and only the l x l matrix R2ᵀ needs an exact SVD.
    let bt = matmul(a.transpose(), q.as_ref());
    let mut q2 = bt.clone();
    orthonormalize(&mut q2);
    let r2t = matmul(bt.transpose(), q2.as_ref()); // = B Q2 = R2ᵀ (l x l)
    let svd = r2t
        .thin_svd()
        .map_err(|_| StageError::InvalidParams("lowrank SVD did not converge"))?;
    let u = matmul(q.as_ref(), svd.U()); // rows x l
    let v = matmul(q2.as_ref(), svd.V()); // cols x l
    let s = svd.S().column_vector();
    let mut left = vec![f16::ZERO; lay.left_len];
    for i in 0..rows {
        for t in 0..rank {
            left[i * rank + t] = to_f16(u[(i, t)] * s[t]);
        }
    }
    let mut right = vec![f16::ZERO; lay.right_len];
    for t in 0..rank {
        for j in 0..cols {
            right[t * cols + j] = to_f16(v[(j, t)] / sq[j]);
        }
    }
    Ok(LowRankEncoded { left, right })
}

fn to_f16(v: f64) -> f16 {
    f16::from_f64(v.clamp(-65504.0, 65504.0))
}

/// Decodes `rows` into `out` (len `rows.len()*cols`). Allocation-free: columns are
/// processed in blocks with a stack accumulator.
pub fn decode_rows(
    enc: LowRankRef<'_>,
    cols: usize,
    rank: usize,
    rows: Range<usize>,
    out: &mut [f32],
    mode: Mode,
) -> Result<(), StageError> {
    check_rows(&rows, usize::MAX)?;
    if rank == 0 {
        return Err(StageError::InvalidParams("lowrank rank must be >= 1"));
    }
    let left_need = rows.end.checked_mul(rank).ok_or(StageError::Overflow)?;
    let right_need = rank.checked_mul(cols).ok_or(StageError::Overflow)?;
    let nrows = rows.end - rows.start;
    check_len(
        "lowrank output",
        out.len(),
        nrows.checked_mul(cols).ok_or(StageError::Overflow)?,
    )?;
    if enc.left.len() < left_need || enc.right.len() < right_need {
        return Err(StageError::Length {
            what: "lowrank factors",
            expected: left_need + right_need,
            got: enc.left.len().saturating_add(enc.right.len()),
        });
    }
    if cols == 0 {
        return Ok(());
    }
    let right = &enc.right[..right_need];
    for (orow, r) in out.chunks_exact_mut(cols).zip(rows) {
        let lrow = &enc.left[r * rank..(r + 1) * rank];
        for c0 in (0..cols).step_by(BLOCK) {
            let c1 = (c0 + BLOCK).min(cols);
            let mut acc = [0.0f32; BLOCK];
            let acc = &mut acc[..c1 - c0];
            let l0 = lrow[0].to_f32();
            for (a, rv) in acc.iter_mut().zip(&right[c0..c1]) {
                *a = l0 * rv.to_f32();
            }
            for (t, lv) in lrow.iter().enumerate().skip(1) {
                let lt = lv.to_f32();
                let rrow = &right[t * cols + c0..t * cols + c1];
                for (a, rv) in acc.iter_mut().zip(rrow) {
                    *a += lt * rv.to_f32();
                }
            }
            let o = &mut orow[c0..c1];
            match mode {
                Mode::Set => o.copy_from_slice(acc),
                Mode::Add => {
                    for (o, a) in o.iter_mut().zip(acc.iter()) {
                        *o += *a;
                    }
                }
            }
        }
    }
    Ok(())
}
