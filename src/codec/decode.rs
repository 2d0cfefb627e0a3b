//! Decoding tensors: a staged tensor is the sum of its stages, added in stage order.
//!
//! The reader validated every section length against the stage parameters at open, so the
//! kernels here get slices of the right size. Rows can be decoded on their own, which is
//! what a runtime that pages weights in needs.

use std::borrow::Cow;
use std::ops::Range;

use half::{bf16, f16, slice::HalfFloatSliceExt};
use rayon::prelude::*;
use zerocopy::FromBytes;

use super::staged::{self, Matrix, Stage};
use super::{ggml, int, kernels, lowrank, vq};
use crate::error::{Error, Result};
use crate::format::{CodecId, Dtype, TensorView};

pub use super::Mode;

/// Rows per parallel work item when decoding a whole tensor.
const ROW_CHUNK: usize = 64;

/// Views `b` as `T`s, copying only if the bytes are not aligned for `T` (never for sections
/// of a mapped file, which start on 64-byte boundaries).
fn typed<T: FromBytes + zerocopy::Immutable + zerocopy::KnownLayout + Clone>(
    b: &[u8],
) -> Result<Cow<'_, [T]>> {
    match <[T]>::ref_from_bytes(b) {
        Ok(v) => Ok(Cow::Borrowed(v)),
        Err(_) => {
            let size = std::mem::size_of::<T>();
            if !b.len().is_multiple_of(size) {
                return Err(Error::InvalidArgument(
                    "section length is not a whole number of elements".into(),
                ));
            }
            let v: Vec<T> = b
                .chunks_exact(size)
                .map(|c| {
                    T::read_from_bytes(c).map_err(|_| Error::InvalidArgument("element read".into()))
                })
                .collect::<Result<_>>()?;
            Ok(Cow::Owned(v))
        }
    }
}

/// Checks that `secs` are the sections `stage` has for a matrix `m`, by count and length.
fn check_sections(secs: &[&[u8]], m: Matrix, stage: Stage) -> Result<()> {
    let want = stage.sections(m).map_err(Error::InvalidArgument)?;
    if secs.len() != want.len() || secs.iter().zip(&want).any(|(s, w)| s.len() as u64 != w.len) {
        return Err(sections_mismatch());
    }
    Ok(())
}

fn sections_mismatch() -> Error {
    Error::InvalidArgument("section lengths do not match the stage".into())
}

/// An int stage's parameters and typed views of its (checked) sections.
struct IntPart<'s> {
    p: int::IntParams,
    codes: &'s [u8],
    scales: Cow<'s, [f16]>,
    offsets: Cow<'s, [f16]>,
}

impl<'s> IntPart<'s> {
    /// `None` for a stage that is not int; an error for sections that do not fit it
    /// (callers check lengths with [`check_sections`] first; this only relies on the count).
    fn of(secs: &[&'s [u8]], stage: Stage) -> Option<Result<Self>> {
        let Stage::Int {
            bits,
            group,
            symmetric,
            ..
        } = stage
        else {
            return None;
        };
        let part = || -> Result<Self> {
            let (codes, scales, offsets) = match (secs, symmetric) {
                ([c, s], true) => (*c, typed::<f16>(s)?, Cow::Borrowed(&[][..])),
                ([c, s, o], false) => (*c, typed::<f16>(s)?, typed::<f16>(o)?),
                _ => return Err(sections_mismatch()),
            };
            Ok(Self {
                p: int::IntParams {
                    bits,
                    group: group as usize,
                    symmetric,
                },
                codes,
                scales,
                offsets,
            })
        };
        Some(part())
    }

    fn as_ref(&self) -> int::IntRef<'_> {
        int::IntRef {
            codes: self.codes,
            scales: &self.scales,
            offsets: &self.offsets,
        }
    }
}

/// Decodes rows `rows` of one stage whose section bytes are `secs` into `out`
/// (`rows.len() * cols` values), overwriting or adding per `mode`.
pub fn decode_stage(
    secs: &[&[u8]],
    m: Matrix,
    stage: Stage,
    rows: Range<usize>,
    out: &mut [f32],
    mode: Mode,
) -> Result<()> {
    let cols = m.cols as usize;
    let n = rows.len() * cols;
    if out.len() != n || rows.end as u64 > m.rows {
        return Err(Error::InvalidArgument(format!(
            "decode of rows {rows:?} of a {}x{} tensor into {} values",
            m.rows,
            m.cols,
            out.len()
        )));
    }
    check_sections(secs, m, stage)?;
    let span = rows.start * cols..rows.end * cols;
    match stage {
        Stage::Raw { dtype } => match dtype {
            Dtype::F16 => {
                let v = typed::<f16>(secs[0])?;
                let src = &v[span];
                match mode {
                    Mode::Set => src.convert_to_f32_slice(out),
                    Mode::Add => out.iter_mut().zip(src).for_each(|(d, s)| *d += s.to_f32()),
                }
            }
            Dtype::BF16 => {
                let v = typed::<bf16>(secs[0])?;
                let src = &v[span];
                match mode {
                    Mode::Set => src.convert_to_f32_slice(out),
                    Mode::Add => out.iter_mut().zip(src).for_each(|(d, s)| *d += s.to_f32()),
                }
            }
            _ => {
                let v = typed::<f32>(secs[0])?;
                mode.write(out, &v[span]);
            }
        },
        Stage::Int { .. } => {
            if let Some(part) = IntPart::of(secs, stage) {
                let part = part?;
                int::decode_rows(part.as_ref(), cols, &part.p, rows, out, mode)?;
            }
        }
        Stage::Vq { dim, k, .. } => {
            let p = vq::VqParams {
                d: dim as usize,
                k: k as usize,
                iters: 0,
                seed: 0,
            };
            let codebook = typed::<f16>(secs[0])?;
            vq::decode_rows(
                vq::VqRef {
                    codebook: &codebook,
                    indices: secs[1],
                },
                cols,
                &p,
                rows,
                out,
                mode,
            )?;
        }
        Stage::LowRank { rank, .. } => {
            let l = typed::<f16>(secs[0])?;
            let r = typed::<f16>(secs[1])?;
            let rn = (rank as usize).checked_mul(cols);
            if let Some(r) = rn.and_then(|rn| r.get(..rn)) {
                let rf = widen_f16(r, || "low-rank factor".into())?;
                if lowrank_rows_f32(&l, &rf, cols, rank as usize, rows.clone(), out, mode) {
                    return Ok(());
                }
            }
            // Bad lengths: the reference kernel reports the error.
            lowrank::decode_rows(
                lowrank::LowRankRef {
                    left: &l,
                    right: &r,
                },
                cols,
                rank as usize,
                rows,
                out,
                mode,
            )?;
        }
        Stage::Ggml { type_id } => {
            let ty = ggml::GgmlType::from_id(type_id)
                .ok_or_else(|| Error::InvalidArgument(format!("ggml type {type_id}")))?;
            let rb = ggml::row_bytes(ty, cols)
                .ok_or_else(|| Error::InvalidArgument("ggml row".into()))?;
            let mut scratch = if mode == Mode::Add {
                vec![0f32; cols]
            } else {
                Vec::new()
            };
            for (i, r) in rows.enumerate() {
                let src = &secs[0][r * rb..(r + 1) * rb];
                let dst = &mut out[i * cols..(i + 1) * cols];
                let res = match mode {
                    Mode::Set => ggml::dequantize_row(ty, src, dst),
                    Mode::Add => ggml::dequantize_row(ty, src, &mut scratch)
                        .map(|()| Mode::Add.write(dst, &scratch)),
                };
                res.map_err(|e| Error::InvalidArgument(format!("{}: {e}", ty.name())))?;
            }
        }
    }
    Ok(())
}

/// Low-rank rows `rows` as `left[rows] x right`, with `right` already widened to f32 (once
/// per call by the caller) and only these rows of the f16 `left` widened here: the reference
/// kernel's per-element `to_f32` kept it at ~0.02 GB/s. Same arithmetic in the same order
/// (`acc = l0*r0`, then `acc += lt*rt`, then stored or added; see `kernels::lowrank_rows`),
/// so the values are bit-identical to `lowrank::decode_rows`. Returns false, touching
/// nothing, when the lengths do not fit.
fn lowrank_rows_f32(
    left: &[f16],
    right: &[f32],
    cols: usize,
    rank: usize,
    rows: Range<usize>,
    out: &mut [f32],
    mode: Mode,
) -> bool {
    let (Some(l0), Some(l1)) = (rows.start.checked_mul(rank), rows.end.checked_mul(rank)) else {
        return false;
    };
    let Some(l) = left.get(l0..l1) else {
        return false;
    };
    let mut lf = vec![0f32; l.len()];
    l.convert_to_f32_slice(&mut lf);
    crate::codec::kernels::lowrank_rows(
        crate::codec::kernels::detect(),
        &lf,
        right,
        rank,
        cols,
        out,
        mode,
    )
}

/// `src` widened to f32, or [`Error::OutOfMemory`] naming `what` if it cannot be allocated.
fn widen_f16(src: &[f16], what: impl FnOnce() -> String) -> Result<Vec<f32>> {
    let mut v = Vec::new();
    v.try_reserve_exact(src.len())
        .map_err(|_| Error::OutOfMemory {
            what: what(),
            bytes: src.len() as u64 * 4,
        })?;
    v.resize(src.len(), 0f32);
    src.convert_to_f32_slice(&mut v);
    Ok(v)
}

impl<'a> TensorView<'a> {
    /// The tensor's stage list (validated at open).
    pub fn stages(&self) -> Result<Vec<Stage>> {
        match self.codec() {
            CodecId::Staged => {
                staged::decode_params(self.params()).map_err(|reason| Error::BadCodecParams {
                    tensor: self.name().to_string(),
                    reason,
                })
            }
            _ => Err(super::unknown_codec(self)),
        }
    }

    /// The tensor as a rows x cols matrix (cols = last dimension).
    pub fn matrix(&self) -> Matrix {
        Matrix::of_shape(self.shape())
    }

    /// Decodes rows `rows` into `out` (`rows.len() * cols` values).
    pub fn dequantize_rows_into(&self, rows: Range<usize>, out: &mut [f32]) -> Result<()> {
        self.plan()?.decode_rows(rows, out)
    }

    /// The stage list with each stage's section bytes, resolved once per decode call.
    fn plan(&self) -> Result<Plan<'a>> {
        let m = self.matrix();
        let mut next = 0;
        let stages = self
            .stages()?
            .into_iter()
            .map(|st| {
                let count = st.sections(m).map_err(Error::InvalidArgument)?.len();
                let secs: Vec<&'a [u8]> = (next..next + count)
                    .map(|j| self.section(j).map(|s| s.bytes()))
                    .collect::<Option<_>>()
                    .ok_or_else(|| Error::InvalidArgument("missing section".into()))?;
                next += count;
                Ok((st, secs))
            })
            .collect::<Result<Vec<_>>>()?;
        let right = stages
            .iter()
            .map(|(st, secs)| widened_right(*st, secs, m, self.name()))
            .collect::<Result<Vec<_>>>()?;
        Ok(Plan { m, stages, right })
    }

    /// Decodes the whole tensor into `out` (`n_elements` values), in parallel over rows.
    pub fn dequantize_into(&self, out: &mut [f32]) -> Result<()> {
        let m = self.matrix();
        if out.len() as u64 != self.n_elements() {
            return Err(Error::InvalidArgument(format!(
                "{}: {} values wanted, buffer holds {}",
                self.name(),
                self.n_elements(),
                out.len()
            )));
        }
        let cols = (m.cols as usize).max(1);
        if m.cols == 0 || m.rows == 0 {
            return Ok(());
        }
        let plan = self.plan()?;
        row_chunks(out, cols, |rows, chunk| plan.decode_rows(rows, chunk))
    }

    /// Decodes the whole tensor into a new vector. A shape too large to allocate (a small
    /// low-rank tensor may declare 2^48 elements) is [`Error::OutOfMemory`], not an abort.
    pub fn to_f32_vec(&self) -> Result<Vec<f32>> {
        let n_elements = self.n_elements();
        let oom = || Error::OutOfMemory {
            what: format!("decoded tensor {:?}", self.name()),
            bytes: n_elements.saturating_mul(4),
        };
        let n = usize::try_from(n_elements).map_err(|_| oom())?;
        let mut v = Vec::new();
        v.try_reserve_exact(n).map_err(|_| oom())?;
        v.resize(n, 0f32);
        self.dequantize_into(&mut v)?;
        Ok(v)
    }

    /// Decodes the whole tensor into f16 values (rounded to nearest).
    pub fn dequantize_f16_into(&self, out: &mut [f16]) -> Result<()> {
        self.dequantize_converted(out, |src, dst| dst.convert_from_f32_slice(src))
    }

    /// Decodes the whole tensor into bf16 values (rounded to nearest).
    pub fn dequantize_bf16_into(&self, out: &mut [bf16]) -> Result<()> {
        self.dequantize_converted(out, |src, dst| dst.convert_from_f32_slice(src))
    }

    fn dequantize_converted<T: Send>(
        &self,
        out: &mut [T],
        conv: impl Fn(&[f32], &mut [T]) + Sync,
    ) -> Result<()> {
        let m = self.matrix();
        if out.len() as u64 != self.n_elements() {
            return Err(Error::InvalidArgument(format!(
                "{}: buffer size",
                self.name()
            )));
        }
        if m.cols == 0 || m.rows == 0 {
            return Ok(());
        }
        let cols = m.cols as usize;
        let plan = self.plan()?;
        row_chunks(out, cols, |rows, chunk| {
            let mut tmp = vec![0f32; chunk.len()];
            plan.decode_rows(rows, &mut tmp)?;
            conv(&tmp, chunk);
            Ok(())
        })
    }
}

/// Below this many output values a whole-tensor decode stays on the calling thread: handing
/// work to the rayon pool and waking it costs tens of microseconds, as long as decoding a
/// megabyte. A one-thread pool never gains from the hand-off either.
const PAR_MIN_ELEMS: usize = 256 * 1024;

/// Runs `work(rows, values)` over `out` in chunks of [`ROW_CHUNK`] rows of `cols` values,
/// in parallel unless the decode is small or the pool has one thread (see
/// [`PAR_MIN_ELEMS`]). The chunks are independent and each is decoded the same way, so the
/// result is the same either way.
fn row_chunks<T: Send>(
    out: &mut [T],
    cols: usize,
    work: impl Fn(Range<usize>, &mut [T]) -> Result<()> + Sync,
) -> Result<()> {
    let run = |(c, chunk): (usize, &mut [T])| {
        let r0 = c * ROW_CHUNK;
        work(r0..r0 + chunk.len() / cols, chunk)
    };
    if out.len() < PAR_MIN_ELEMS || rayon::current_num_threads() <= 1 {
        return out
            .chunks_mut(ROW_CHUNK * cols)
            .enumerate()
            .try_for_each(run);
    }
    out.par_chunks_mut(ROW_CHUNK * cols)
        .enumerate()
        .try_for_each(run)
}

/// Output values per slice when a tensor has several stages: each stage after the first
/// adds into values the previous one just wrote, so a slice this size (64 KiB of f32) is
/// still in the core's L2 cache when the next stage reads it back.
const FUSE_ELEMS: usize = 16 * 1024;

/// A tensor's stages with their section bytes (see `TensorView::plan`).
struct Plan<'a> {
    m: Matrix,
    stages: Vec<(Stage, Vec<&'a [u8]>)>,
    /// Per stage: a low-rank stage's right factor widened to f32, once per call rather
    /// than once per slice of rows.
    right: Vec<Option<Vec<f32>>>,
}

/// The right factor of a low-rank stage as f32, or `None` for other stages (and for
/// sections whose length does not fit the stage, which `decode_stage` then reports).
fn widened_right(st: Stage, secs: &[&[u8]], m: Matrix, name: &str) -> Result<Option<Vec<f32>>> {
    let Stage::LowRank { rank, .. } = st else {
        return Ok(None);
    };
    let Some(rsec) = secs.get(1) else {
        return Ok(None);
    };
    let r = typed::<f16>(rsec)?;
    if Some(r.len()) != (rank as usize).checked_mul(m.cols as usize) {
        return Ok(None);
    }
    widen_f16(&r, || format!("low-rank factor of {name:?}")).map(Some)
}

impl Plan<'_> {
    /// Decodes rows `rows` into `out`: the first stage sets, the others add, in stage
    /// order for every element (so slicing the rows changes no bit of the result).
    fn decode_rows(&self, rows: Range<usize>, out: &mut [f32]) -> Result<()> {
        let cols = self.m.cols as usize;
        let step = if self.stages.len() > 1 && cols > 0 {
            (FUSE_ELEMS / cols).max(1)
        } else {
            rows.len().max(1)
        };
        if out.len() != rows.len().saturating_mul(cols)
            || rows.start > rows.end
            || rows.end as u64 > self.m.rows
        {
            return Err(Error::InvalidArgument(format!(
                "decode of rows {rows:?} of a {}x{} tensor into {} values",
                self.m.rows,
                self.m.cols,
                out.len()
            )));
        }
        if let [(s1, secs1), (s2, secs2)] = &self.stages[..] {
            if let (Some(a), Some(b)) = (IntPart::of(secs1, *s1), IntPart::of(secs2, *s2)) {
                check_sections(secs1, self.m, *s1)?;
                check_sections(secs2, self.m, *s2)?;
                let (a, b) = (a?, b?);
                let be = kernels::detect();
                let (ra, rb) = (a.as_ref(), b.as_ref());
                if int::decode_pair_rows_with(be, ra, &a.p, rb, &b.p, cols, rows.clone(), out)? {
                    return Ok(());
                }
            }
        }
        let mut r0 = rows.start;
        for chunk in out.chunks_mut(step * cols.max(1)) {
            let r1 = r0 + chunk.len() / cols.max(1);
            for (i, ((st, secs), right)) in self.stages.iter().zip(&self.right).enumerate() {
                let mode = if i == 0 { Mode::Set } else { Mode::Add };
                if let (Stage::LowRank { rank, .. }, Some(rf)) = (st, right) {
                    let left = typed::<f16>(secs[0])?;
                    if lowrank_rows_f32(&left, rf, cols, *rank as usize, r0..r1, chunk, mode) {
                        continue;
                    }
                }
                decode_stage(secs, self.m, *st, r0..r1, chunk, mode)?;
            }
            r0 = r1;
        }
        Ok(())
    }
}
