//! Encoding a tensor through its stage list.
//!
//! Each stage encodes what the previous stages left, computed from the values they will
//! actually decode to (f16 parameters and all), so no error is hidden between stages.

use half::{bf16, f16, slice::HalfFloatSliceExt};
use rayon::prelude::*;
use zerocopy::IntoBytes;

use super::staged::{Matrix, SectionSpec, Stage};
use super::{ggml, int, lowrank, vq};
use crate::error::{Error, Result};
use crate::format::{Dtype, ElemType, SectionKind};

/// One encoded section, ready for the writer.
#[derive(Clone, Debug)]
pub struct EncodedSection {
    /// Kind.
    pub kind: SectionKind,
    /// Element type.
    pub elem: ElemType,
    /// Bytes.
    pub bytes: Vec<u8>,
}

/// A tensor encoded through its stages, with its reconstruction error.
#[derive(Clone, Debug)]
pub struct EncodedTensor {
    /// The stages, as they go into the codec parameter header.
    pub stages: Vec<Stage>,
    /// Their sections, in order.
    pub sections: Vec<EncodedSection>,
    /// Sum of squared source values.
    pub signal: f64,
    /// Sum of squared reconstruction errors.
    pub noise: f64,
}

impl EncodedTensor {
    /// Relative mean squared error, noise / signal.
    pub fn rel_mse(&self) -> f64 {
        if self.signal > 0.0 {
            self.noise / self.signal
        } else {
            0.0
        }
    }
}

/// Rows per parallel work item: fixed, so the split never depends on the thread count.
const ROW_CHUNK: usize = 64;

/// Per-column importance as in the research `tenpak_x`: mean |w| of each input column,
/// normalised by its mean and clamped to [0.5, 2].
pub fn column_importance(x: &[f32], m: Matrix) -> Vec<f32> {
    let (rows, cols) = (m.rows as usize, m.cols as usize);
    let mut imp = vec![0f64; cols];
    for r in 0..rows {
        for (acc, v) in imp.iter_mut().zip(&x[r * cols..(r + 1) * cols]) {
            *acc += f64::from(v.abs());
        }
    }
    let mean = imp.iter().sum::<f64>() / cols.max(1) as f64;
    imp.iter()
        .map(|&v| {
            if mean > 0.0 {
                (v / mean).clamp(0.5, 2.0) as f32
            } else {
                1.0
            }
        })
        .collect()
}

/// Encodes `x` (row-major, `shape`) through `stages`; `x` is left as it was.
pub fn encode_tensor(
    name: &str,
    x: &[f32],
    shape: &[u64],
    stages: &[Stage],
) -> Result<EncodedTensor> {
    encode_core(
        name,
        Residual::Copy(std::borrow::Cow::Borrowed(x)),
        shape,
        stages,
    )
}

/// [`encode_tensor`] that uses `x` itself for the residual between stages (no copy of the
/// tensor): afterwards `x` holds what the stages before the last one left. Same sections
/// and the same error as [`encode_tensor`].
pub fn encode_tensor_in_place(
    name: &str,
    x: &mut [f32],
    shape: &[u64],
    stages: &[Stage],
) -> Result<EncodedTensor> {
    encode_core(name, Residual::Mut(x), shape, stages)
}

/// The values the next stage encodes: the source itself until a stage leaves a residual,
/// which goes into a copy of a borrowed source or straight into a lent buffer.
enum Residual<'a> {
    Copy(std::borrow::Cow<'a, [f32]>),
    Mut(&'a mut [f32]),
}

impl Residual<'_> {
    fn get(&self) -> &[f32] {
        match self {
            Residual::Copy(x) => x,
            Residual::Mut(x) => x,
        }
    }

    fn get_mut(&mut self) -> &mut [f32] {
        match self {
            Residual::Copy(x) => x.to_mut(),
            Residual::Mut(x) => x,
        }
    }
}

/// Lanes of the error sums: each value goes to lane `i % LANES` of its row chunk, lanes
/// are summed in a fixed order, so the sums vectorize and do not depend on the thread count.
const LANES: usize = 8;

/// `sum (a[i] - b[i])^2` (or `sum a[i]^2` when `b` is `None`) in f64, per lane, with the
/// widest vectors the CPU has (the same operations per lane either way).
fn lane_sq_sums(a: &[f32], b: Option<&[f32]>) -> [f64; LANES] {
    #[cfg(target_arch = "x86_64")]
    if super::kernels::detect().has_avx2() {
        // SAFETY: `has_avx2` is true only after runtime detection of AVX2.
        return unsafe { lane_sq_sums_avx2(a, b) };
    }
    lane_sq_sums_portable(a, b)
}

/// [`lane_sq_sums_portable`] compiled for AVX2.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn lane_sq_sums_avx2(a: &[f32], b: Option<&[f32]>) -> [f64; LANES] {
    lane_sq_sums_portable(a, b)
}

#[inline(always)]
fn lane_sq_sums_portable(a: &[f32], b: Option<&[f32]>) -> [f64; LANES] {
    let mut acc = [0f64; LANES];
    let sq = |v: f32| f64::from(v) * f64::from(v);
    match b {
        None => {
            let mut it = a.chunks_exact(LANES);
            for c in &mut it {
                for (l, &v) in acc.iter_mut().zip(c) {
                    *l += sq(v);
                }
            }
            for (l, &v) in acc.iter_mut().zip(it.remainder()) {
                *l += sq(v);
            }
        }
        Some(b) => {
            let mut ia = a.chunks_exact(LANES);
            let mut ib = b.chunks_exact(LANES);
            for (ca, cb) in (&mut ia).zip(&mut ib) {
                for ((l, &va), &vb) in acc.iter_mut().zip(ca).zip(cb) {
                    *l += sq(va - vb);
                }
            }
            for ((l, &va), &vb) in acc.iter_mut().zip(ia.remainder()).zip(ib.remainder()) {
                *l += sq(va - vb);
            }
        }
    }
    acc
}

/// The total of per-chunk lane sums, in chunk then lane order.
fn total(chunks: &[[f64; LANES]]) -> f64 {
    let mut lanes = [0f64; LANES];
    for c in chunks {
        for (l, v) in lanes.iter_mut().zip(c) {
            *l += v;
        }
    }
    lanes.iter().sum()
}

fn encode_core(
    name: &str,
    mut residual: Residual<'_>,
    shape: &[u64],
    stages: &[Stage],
) -> Result<EncodedTensor> {
    let m = Matrix::of_shape(shape);
    let (rows, cols) = (m.rows as usize, m.cols as usize);
    let x = residual.get();
    if x.len() != rows * cols {
        return Err(Error::InvalidArgument(format!(
            "{name}: {} values for shape {shape:?}",
            x.len()
        )));
    }
    let want = super::staged::expected_sections(stages, shape).map_err(|reason| {
        Error::BadCodecParams {
            tensor: name.to_string(),
            reason,
        }
    })?;
    if let Some(ints) = int_stages(stages) {
        let (sections, signal, noise) = encode_int_rows(&mut residual, m, &ints)?;
        for (s, w) in sections.iter().zip(&want) {
            check_section(name, s, w)?;
        }
        return Ok(EncodedTensor {
            stages: stages.to_vec(),
            sections,
            signal,
            noise,
        });
    }
    let needs_importance = stages.iter().any(|s| {
        matches!(
            s,
            Stage::LowRank { weighted: true, .. } | Stage::Vq { weighted: true, .. }
        )
    });
    let importance = needs_importance.then(|| column_importance(x, m));
    let chunk = ROW_CHUNK * cols.max(1);
    // Signal and noise: per row chunk lane sums (see `LANES`), so both come from vectorized
    // parallel passes and are the same for any thread count. The signal is summed in the
    // first pass that reads the source anyway: the error pass of a single stage, or the
    // first stage's subtract pass of several.
    let fused = stages.len() == 1;
    let mut signal = 0.0;
    let mut noise = 0.0;
    let mut sections = Vec::with_capacity(want.len());
    for (si, &stage) in stages.iter().enumerate() {
        let secs = encode_stage(residual.get(), m, stage, importance.as_deref())?;
        let bytes: Vec<&[u8]> = secs.iter().map(|s| s.bytes.as_slice()).collect();
        let n_chunks = rows.div_ceil(ROW_CHUNK);
        let rows_of = |c: usize| c * ROW_CHUNK..((c + 1) * ROW_CHUNK).min(rows);
        if si + 1 < stages.len() {
            // Subtract this stage's decode, a row chunk at a time, in place (the first
            // stage's pass sums the source's signal first).
            let sig = residual
                .get_mut()
                .par_chunks_mut(chunk)
                .enumerate()
                .map_init(Vec::new, |d, (c, r)| -> Result<[f64; LANES]> {
                    let sig = if si == 0 {
                        lane_sq_sums(r, None)
                    } else {
                        [0.0; LANES]
                    };
                    // Scratch reused across the chunks of one worker; every value is set.
                    d.resize(r.len(), 0.0);
                    let d = &mut d[..r.len()];
                    let mode = super::decode::Mode::Set;
                    super::decode::decode_stage(&bytes, m, stage, rows_of(c), d, mode)?;
                    for (a, b) in r.iter_mut().zip(d.iter()) {
                        *a -= b;
                    }
                    Ok(sig)
                })
                .collect::<Result<Vec<_>>>()?;
            if si == 0 {
                signal = total(&sig);
            }
        } else {
            let res = residual.get();
            let sums = (0..n_chunks)
                .into_par_iter()
                .map_init(Vec::new, |d, c| -> Result<[[f64; LANES]; 2]> {
                    let span = rows_of(c);
                    let r = &res[span.start * cols..span.end * cols];
                    d.resize(r.len(), 0.0);
                    let d = &mut d[..r.len()];
                    let mode = super::decode::Mode::Set;
                    super::decode::decode_stage(&bytes, m, stage, span, d, mode)?;
                    let sig = if fused {
                        lane_sq_sums(r, None)
                    } else {
                        [0.0; LANES]
                    };
                    Ok([sig, lane_sq_sums(r, Some(d))])
                })
                .collect::<Result<Vec<_>>>()?;
            if fused {
                signal = total(&sums.iter().map(|s| s[0]).collect::<Vec<_>>());
            }
            noise = total(&sums.iter().map(|s| s[1]).collect::<Vec<_>>());
        }
        sections.extend(secs);
    }
    for (s, w) in sections.iter().zip(&want) {
        check_section(name, s, w)?;
    }
    Ok(EncodedTensor {
        stages: stages.to_vec(),
        sections,
        signal,
        noise,
    })
}

/// The parameters of a stage list made of int stages only, or `None`.
fn int_stages(stages: &[Stage]) -> Option<Vec<(int::IntParams, int::Refine)>> {
    stages
        .iter()
        .map(|s| match *s {
            Stage::Int {
                bits,
                group,
                symmetric,
                refine,
            } => Some((
                int::IntParams {
                    bits,
                    group: group as usize,
                    symmetric,
                },
                int_refine(refine),
            )),
            _ => None,
        })
        .collect()
}

/// The refinement an int stage's `refine` flag stands for.
fn int_refine(refine: bool) -> int::Refine {
    if refine {
        int::Refine::Opt { max_iters: 20 }
    } else {
        int::Refine::None
    }
}

/// One row chunk's part of every int stage's buffers.
type ChunkOut<'a> = Vec<int::IntRowsMut<'a>>;

/// A stage list of int stages only, run as one pipeline per chunk of [`ROW_CHUNK`] rows
/// while the chunk is in cache: every stage works row by row, so each chunk is encoded by
/// the first stage, decoded and subtracted, encoded by the next, and so on, with the
/// signal and error sums taken on the way. Other stage lists go stage by stage over the
/// whole tensor, reading it from memory once per pass; this is the same bytes and the same
/// sums (the same chunks, the same kernels) with one pass.
///
/// Returns the sections, the signal and the noise; `residual` ends as in the stage-by-stage
/// path (what the stages before the last left).
fn encode_int_rows(
    residual: &mut Residual<'_>,
    m: Matrix,
    ints: &[(int::IntParams, int::Refine)],
) -> Result<(Vec<EncodedSection>, f64, f64)> {
    let (rows, cols) = (m.rows as usize, m.cols as usize);
    let mut bufs = Vec::with_capacity(ints.len());
    for (p, _) in ints {
        let lay = int::layout(rows, cols, p).ok_or(super::StageError::Overflow)?;
        bufs.push((
            vec![0u8; lay.codes_bytes],
            vec![f16::ZERO; lay.n_scales],
            vec![f16::ZERO; lay.n_scales],
            lay,
        ));
    }
    let n_chunks = rows.div_ceil(ROW_CHUNK);
    // Each stage's buffers split at the same row chunks, regrouped per chunk.
    let mut per_chunk: Vec<ChunkOut<'_>> = (0..n_chunks).map(|_| Vec::new()).collect();
    for ((p, _), (codes, scales, offsets, lay)) in ints.iter().zip(bufs.iter_mut()) {
        let gn = lay.groups_per_row;
        let gb = p.group_bytes();
        let parts = codes
            .chunks_mut((ROW_CHUNK * gn * gb).max(1))
            .zip(scales.chunks_mut((ROW_CHUNK * gn).max(1)))
            .zip(offsets.chunks_mut((ROW_CHUNK * gn).max(1)));
        for (c, ((codes, scales), offsets)) in parts.enumerate() {
            per_chunk[c].push(int::IntRowsMut {
                codes,
                scales,
                offsets,
            });
        }
    }
    // A borrowed source is copied a chunk at a time into a worker's scratch.
    let chunk = (ROW_CHUNK * cols).max(1);
    let run =
        |v: &mut [f32], outs: &mut ChunkOut<'_>, d: &mut Vec<f32>| -> Result<[[f64; LANES]; 2]> {
            let sig = lane_sq_sums(v, None);
            d.resize(v.len(), 0.0);
            let d = &mut d[..v.len()];
            let nrows = v.len().checked_div(cols).unwrap_or(0);
            let mut noise = [0.0; LANES];
            for (si, ((p, refine), out)) in ints.iter().zip(outs.iter_mut()).enumerate() {
                int::encode_rows_into(
                    v,
                    cols,
                    p,
                    *refine,
                    int::IntRowsMut {
                        codes: &mut *out.codes,
                        scales: &mut *out.scales,
                        offsets: &mut *out.offsets,
                    },
                )?;
                let enc = int::IntRef {
                    codes: out.codes,
                    scales: out.scales,
                    offsets: if p.symmetric { &[] } else { out.offsets },
                };
                int::decode_rows(enc, cols, p, 0..nrows, d, super::decode::Mode::Set)?;
                if si + 1 < ints.len() {
                    for (a, b) in v.iter_mut().zip(d.iter()) {
                        *a -= b;
                    }
                } else {
                    noise = lane_sq_sums(v, Some(d));
                }
            }
            Ok([sig, noise])
        };
    let sums: Vec<[[f64; LANES]; 2]> = if rows == 0 || cols == 0 {
        Vec::new()
    } else {
        match residual {
            Residual::Mut(x) => x
                .par_chunks_mut(chunk)
                .zip(per_chunk.par_iter_mut())
                .map_init(Vec::new, |d, (v, outs)| run(v, outs, d))
                .collect::<Result<_>>()?,
            Residual::Copy(x) => x
                .par_chunks(chunk)
                .zip(per_chunk.par_iter_mut())
                .map_init(
                    || (Vec::new(), Vec::new()),
                    |(v, d), (src, outs)| {
                        v.clear();
                        v.extend_from_slice(src);
                        run(v, outs, d)
                    },
                )
                .collect::<Result<_>>()?,
        }
    };
    drop(per_chunk);
    let signal = total(&sums.iter().map(|s| s[0]).collect::<Vec<_>>());
    let noise = total(&sums.iter().map(|s| s[1]).collect::<Vec<_>>());
    let mut sections = Vec::new();
    for ((p, _), (codes, scales, mut offsets, lay)) in ints.iter().zip(bufs) {
        offsets.truncate(lay.n_offsets);
        sections.extend(int_sections(p, codes, &scales, &offsets)?);
    }
    Ok((sections, signal, noise))
}

/// An int stage's sections from its buffers.
fn int_sections(
    p: &int::IntParams,
    codes: Vec<u8>,
    scales: &[f16],
    offsets: &[f16],
) -> Result<Vec<EncodedSection>> {
    let elem = ElemType::packed(p.bits)
        .ok_or_else(|| Error::InvalidArgument(format!("int bits {}", p.bits)))?;
    let mut v = vec![
        sec(SectionKind::Codes, elem, codes),
        sec(SectionKind::Scales, ElemType::F16, f16_bytes(scales)),
    ];
    if !p.symmetric {
        v.push(sec(SectionKind::Offsets, ElemType::F16, f16_bytes(offsets)));
    }
    Ok(v)
}

fn check_section(name: &str, s: &EncodedSection, w: &SectionSpec) -> Result<()> {
    if s.kind != w.kind || s.elem != w.elem || s.bytes.len() as u64 != w.len {
        return Err(Error::SectionMismatch {
            tensor: name.to_string(),
            section: 0,
            expected: w.to_string(),
            actual: format!("{} {} of {} bytes", s.kind, s.elem, s.bytes.len()),
        });
    }
    Ok(())
}

fn sec(kind: SectionKind, elem: ElemType, bytes: Vec<u8>) -> EncodedSection {
    EncodedSection { kind, elem, bytes }
}

/// `x` rounded to a 16-bit float type (to nearest, as `half` does), straight into section
/// bytes through a small block: the output is allocated once, with no intermediate vector
/// of the narrow type (which would be a second copy of the tensor at peak memory).
fn narrow_bytes<T>(x: &[f32], conv: impl Fn(&[f32], &mut [T])) -> Vec<u8>
where
    T: IntoBytes + zerocopy::Immutable + Default + Copy,
{
    const BLOCK: usize = 1024;
    let mut out = Vec::with_capacity(x.len() * std::mem::size_of::<T>());
    let mut tmp = [T::default(); BLOCK];
    for c in x.chunks(BLOCK) {
        let t = &mut tmp[..c.len()];
        conv(c, t);
        out.extend_from_slice(t.as_bytes());
    }
    out
}

fn f16_bytes(v: &[f16]) -> Vec<u8> {
    v.as_bytes().to_vec()
}

fn encode_stage(
    x: &[f32],
    m: Matrix,
    stage: Stage,
    importance: Option<&[f32]>,
) -> Result<Vec<EncodedSection>> {
    let (rows, cols) = (m.rows as usize, m.cols as usize);
    Ok(match stage {
        Stage::Raw { dtype } => match dtype {
            Dtype::F16 => {
                let b = narrow_bytes::<f16>(x, |s, d| d.convert_from_f32_slice(s));
                vec![sec(SectionKind::Raw, ElemType::F16, b)]
            }
            Dtype::BF16 => {
                let b = narrow_bytes::<bf16>(x, |s, d| d.convert_from_f32_slice(s));
                vec![sec(SectionKind::Raw, ElemType::BF16, b)]
            }
            _ => vec![sec(SectionKind::Raw, ElemType::F32, x.as_bytes().to_vec())],
        },
        Stage::Int {
            bits,
            group,
            symmetric,
            refine,
        } => {
            let p = int::IntParams {
                bits,
                group: group as usize,
                symmetric,
            };
            let e = int::encode(x, rows, cols, &p, int_refine(refine), None)?;
            int_sections(&p, e.codes, &e.scales, &e.offsets)?
        }
        Stage::Vq { dim, k, weighted } => {
            let p = vq::VqParams {
                d: dim as usize,
                k: k as usize,
                iters: 15,
                seed: 0x7E4A_9C5D,
            };
            let weights = match (weighted, importance) {
                (true, Some(imp)) => Some(vector_weights(imp, rows, cols, dim as usize)),
                _ => None,
            };
            let e = vq::encode(x, rows, cols, &p, weights.as_deref())?;
            let elem = if k <= 256 {
                ElemType::U8
            } else {
                ElemType::U16
            };
            vec![
                sec(SectionKind::Codebook, ElemType::F16, f16_bytes(&e.codebook)),
                sec(SectionKind::Indices, elem, e.indices),
            ]
        }
        Stage::LowRank { rank, weighted } => {
            let imp = if weighted { importance } else { None };
            let e = lowrank::encode(x, rows, cols, rank as usize, imp)?;
            vec![
                sec(SectionKind::LowRankLeft, ElemType::F16, f16_bytes(&e.left)),
                sec(
                    SectionKind::LowRankRight,
                    ElemType::F16,
                    f16_bytes(&e.right),
                ),
            ]
        }
        Stage::Ggml { type_id } => {
            let ty = ggml::GgmlType::from_id(type_id)
                .ok_or_else(|| Error::InvalidArgument(format!("ggml type {type_id}")))?;
            let rb = ggml::row_bytes(ty, cols)
                .ok_or_else(|| Error::InvalidArgument(format!("{} rows of {cols}", ty.name())))?;
            let mut out = vec![0u8; rb * rows];
            out.par_chunks_mut(rb.max(1))
                .zip(x.par_chunks(cols.max(1)))
                .try_for_each(|(o, r)| ggml::quantize_row(ty, r, None, o))
                .map_err(|e| Error::InvalidArgument(format!("{}: {e}", ty.name())))?;
            vec![sec(SectionKind::GgmlBlocks, ElemType::U8, out)]
        }
    })
}

/// The weight of each vector: the mean importance of the columns it covers.
fn vector_weights(imp: &[f32], rows: usize, cols: usize, d: usize) -> Vec<f32> {
    let per_row: Vec<f32> = (0..cols.div_ceil(d))
        .map(|v| {
            let c = &imp[v * d..((v + 1) * d).min(cols)];
            c.iter().sum::<f32>() / c.len() as f32
        })
        .collect();
    let mut w = Vec::with_capacity(rows * per_row.len());
    for _ in 0..rows {
        w.extend_from_slice(&per_row);
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::spec;
    use crate::codec::stage::SplitMix64;
    use crate::codec::Mode;

    /// An all-int stage list, run per row chunk, gives the sections the stages give one
    /// after another over the whole tensor (`int::encode`, a whole decode, the residual),
    /// with several row chunks, partial groups and each kind of int stage; a non-finite
    /// value anywhere is refused.
    #[test]
    fn int_pipeline_matches_stage_by_stage() {
        let mut rng = SplitMix64::new(11);
        for (preset, rows, cols) in [
            ("int4_residual", 150usize, 96usize),
            ("int4_residual", 70, 100),
            ("int4_opt", 130, 72),
            ("int8", 129, 40),
            ("int:b=3,g=24+int:b=2,g=8,sym+int:b=5,g=16", 67, 50),
        ] {
            let x: Vec<f32> = (0..rows * cols)
                .map(|_| (rng.next_f64() - 0.5) as f32 * 0.1)
                .collect();
            let shape = [rows as u64, cols as u64];
            let stages = spec::parse(preset).unwrap();
            let got = encode_tensor("w", &x, &shape, &stages).unwrap();
            let ints = int_stages(&stages).expect("int stages");
            let mut r = x.clone();
            let mut want: Vec<Vec<u8>> = Vec::new();
            for (si, (p, refine)) in ints.iter().enumerate() {
                let e = int::encode(&r, rows, cols, p, *refine, None).unwrap();
                let mut d = vec![0f32; r.len()];
                int::decode_rows(e.as_ref(), cols, p, 0..rows, &mut d, Mode::Set).unwrap();
                if si + 1 < ints.len() {
                    r.iter_mut().zip(&d).for_each(|(a, b)| *a -= b);
                }
                for sec in int_sections(p, e.codes.clone(), &e.scales, &e.offsets).unwrap() {
                    want.push(sec.bytes);
                }
            }
            let got_bytes: Vec<Vec<u8>> = got.sections.iter().map(|s| s.bytes.clone()).collect();
            assert_eq!(got_bytes, want, "{preset} {rows}x{cols}");
            let mut bad = x.clone();
            bad[rows * cols - 3] = f32::NAN;
            assert!(matches!(
                encode_tensor("w", &bad, &shape, &stages),
                Err(Error::Stage(super::super::StageError::NonFinite))
            ));
        }
    }

    /// The in-place encoder gives the same sections and the same error sums as the borrowing
    /// one, and the error it reports is the error of the decoded tensor: noise equals the
    /// squared distance between the source and its full decode (summed in another order, so
    /// to a relative 1e-9).
    #[test]
    fn in_place_matches_borrowed_and_error_is_real() {
        let rows = 70usize;
        let mut rng = SplitMix64::new(3);
        for (preset, cols) in [
            ("int4_g32", 100usize),
            ("int4_residual", 100),
            ("pocketllm", 100),
            ("tenpak_x", 100),
            ("q4_k", 256),
            ("f16", 100),
        ] {
            let x: Vec<f32> = (0..rows * cols)
                .map(|_| (rng.next_f64() - 0.5) as f32 * 0.1)
                .collect();
            let shape = [rows as u64, cols as u64];
            let stages = spec::parse(preset).unwrap();
            let a = encode_tensor("w", &x, &shape, &stages).unwrap();
            let mut y = x.clone();
            let b = encode_tensor_in_place("w", &mut y, &shape, &stages).unwrap();
            assert_eq!(a.sections.len(), b.sections.len(), "{preset}");
            for (s, t) in a.sections.iter().zip(&b.sections) {
                assert_eq!(s.bytes, t.bytes, "{preset}");
            }
            assert_eq!(a.signal.to_bits(), b.signal.to_bits(), "{preset}");
            assert_eq!(a.noise.to_bits(), b.noise.to_bits(), "{preset}");
            // The full decode, stage by stage.
            let m = Matrix::of_shape(&shape);
            let mut dec = vec![0f32; x.len()];
            let mut k = 0;
            for (i, st) in a.stages.iter().enumerate() {
                let n = st.sections(m).unwrap().len();
                let secs: Vec<&[u8]> = a.sections[k..k + n]
                    .iter()
                    .map(|s| s.bytes.as_slice())
                    .collect();
                k += n;
                let mode = if i == 0 {
                    super::super::decode::Mode::Set
                } else {
                    super::super::decode::Mode::Add
                };
                super::super::decode::decode_stage(&secs, m, *st, 0..rows, &mut dec, mode).unwrap();
            }
            let sig: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
            let noise: f64 = x
                .iter()
                .zip(&dec)
                .map(|(&a, &b)| {
                    let e = f64::from(a - b);
                    e * e
                })
                .sum();
            assert!(
                (a.signal - sig).abs() <= 1e-9 * sig,
                "{preset}: {} vs {sig}",
                a.signal
            );
            assert!(
                (a.noise - noise).abs() <= 1e-6 * noise.max(1e-30),
                "{preset}: {} vs {noise}",
                a.noise
            );
        }
    }
}
