//! Encoding a tensor through its stage list.
//!
//! Each stage encodes what the previous stages left, computed from the values they will
//! actually decode to (f16 parameters and all), so no error is hidden between stages.

use half::{bf16, f16};
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

/// Encodes `x` (row-major, `shape`) through `stages`.
pub fn encode_tensor(
    name: &str,
    x: &[f32],
    shape: &[u64],
    stages: &[Stage],
) -> Result<EncodedTensor> {
    let m = Matrix::of_shape(shape);
    let (rows, cols) = (m.rows as usize, m.cols as usize);
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
    let needs_importance = stages.iter().any(|s| {
        matches!(
            s,
            Stage::LowRank { weighted: true, .. } | Stage::Vq { weighted: true, .. }
        )
    });
    let importance = needs_importance.then(|| column_importance(x, m));
    // The residual is only materialized between stages; the last stage's decode is
    // consumed chunk by chunk. Signal and noise are the same sequential f64 sums as
    // `x.iter().map(v²).sum()` and `residual.iter().map(v²).sum()`, fused in one pass.
    let mut residual: std::borrow::Cow<'_, [f32]> = std::borrow::Cow::Borrowed(x);
    let mut sections = Vec::with_capacity(want.len());
    let (mut signal, mut noise) = (0.0f64, 0.0f64);
    let sq = |v: f32| f64::from(v) * f64::from(v);
    for (si, &stage) in stages.iter().enumerate() {
        let secs = encode_stage(&residual, m, stage, importance.as_deref())?;
        let bytes: Vec<&[u8]> = secs.iter().map(|s| s.bytes.as_slice()).collect();
        if si + 1 < stages.len() {
            let mut decoded = vec![0f32; x.len()];
            decode_stage_owned(&secs, m, stage, &mut decoded)?;
            residual
                .to_mut()
                .par_chunks_mut(ROW_CHUNK * cols.max(1))
                .zip(decoded.par_chunks(ROW_CHUNK * cols.max(1)))
                .for_each(|(r, d)| {
                    for (a, b) in r.iter_mut().zip(d) {
                        *a -= b;
                    }
                });
        } else {
            let mut dec = vec![0f32; ROW_CHUNK.min(rows) * cols];
            for r0 in (0..rows).step_by(ROW_CHUNK) {
                let r1 = (r0 + ROW_CHUNK).min(rows);
                let d = &mut dec[..(r1 - r0) * cols];
                super::decode::decode_stage(&bytes, m, stage, r0..r1, d, super::decode::Mode::Set)?;
                let span = r0 * cols..r1 * cols;
                for ((&xv, &rv), &dv) in x[span.clone()].iter().zip(&residual[span]).zip(d.iter()) {
                    signal += sq(xv);
                    noise += sq(rv - dv);
                }
            }
        }
        sections.extend(secs);
    }
    if stages.is_empty() {
        signal = x.iter().map(|&v| sq(v)).sum();
        noise = signal;
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
                let v: Vec<f16> = x.iter().map(|&f| f16::from_f32(f)).collect();
                vec![sec(SectionKind::Raw, ElemType::F16, f16_bytes(&v))]
            }
            Dtype::BF16 => {
                let v: Vec<bf16> = x.iter().map(|&f| bf16::from_f32(f)).collect();
                vec![sec(SectionKind::Raw, ElemType::BF16, v.as_bytes().to_vec())]
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
            let refine = if refine {
                int::Refine::Opt { max_iters: 20 }
            } else {
                int::Refine::None
            };
            let int::IntEncoded {
                codes,
                scales,
                offsets,
            } = int::encode(x, rows, cols, &p, refine, None)?;
            let elem = ElemType::packed(bits)
                .ok_or_else(|| Error::InvalidArgument(format!("int bits {bits}")))?;
            let mut v = vec![
                sec(SectionKind::Codes, elem, codes),
                sec(SectionKind::Scales, ElemType::F16, f16_bytes(&scales)),
            ];
            if !symmetric {
                v.push(sec(
                    SectionKind::Offsets,
                    ElemType::F16,
                    f16_bytes(&offsets),
                ));
            }
            v
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

fn decode_stage_owned(
    secs: &[EncodedSection],
    m: Matrix,
    stage: Stage,
    out: &mut [f32],
) -> Result<()> {
    let bytes: Vec<&[u8]> = secs.iter().map(|s| s.bytes.as_slice()).collect();
    super::decode::decode_stage(
        &bytes,
        m,
        stage,
        0..m.rows as usize,
        out,
        super::decode::Mode::Set,
    )
}
