//! The staged codec (codec id 1): a tensor is the sum of a list of stages.
//!
//! The stage list is the codec's parameter header, so a reader needs no table of preset
//! names to decode a file. This module owns that header's byte layout and the rule that
//! ties each stage's parameters to the sections it must have. It is the one place that
//! knows both, so the reader can reject a section whose length does not match.

use crate::error::{Error, Result};
use crate::format::{Dtype, ElemType, SectionKind, TensorView};

/// Most stages in one tensor.
pub const MAX_STAGES: usize = 8;
/// Bytes before the stage records in the parameter header.
pub const PARAMS_PREFIX: usize = 4;
/// Bytes of one stage record.
pub const STAGE_RECORD: usize = 16;

/// One stage of a staged tensor, with the parameters decoding needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Values stored as they are.
    Raw {
        /// Stored element type.
        dtype: Dtype,
    },
    /// Grouped integer quantization along rows.
    Int {
        /// Bits per code, 2..=8.
        bits: u8,
        /// Elements per group, a multiple of 8 in 8..=4096.
        group: u32,
        /// Symmetric (scale only) rather than asymmetric (scale and offset).
        symmetric: bool,
        /// Encode hint: refine scale and offset (never worse than min/max). Not needed to decode.
        refine: bool,
    },
    /// Vector quantization of consecutive row elements.
    Vq {
        /// Vector length, 1..=16.
        dim: u32,
        /// Codebook size, 2..=65536.
        k: u32,
        /// Encode hint: importance-weighted centroids.
        weighted: bool,
    },
    /// A low-rank product L·R.
    LowRank {
        /// Rank, 1..=4096.
        rank: u32,
        /// Encode hint: importance-weighted columns.
        weighted: bool,
    },
    /// ggml blocks of a GGUF quantization type.
    Ggml {
        /// The ggml type id.
        type_id: u32,
    },
}

const KIND_RAW: u8 = 0;
const KIND_INT: u8 = 1;
const KIND_VQ: u8 = 2;
const KIND_LOWRANK: u8 = 3;
const KIND_GGML: u8 = 4;
const FLAG_SYMMETRIC: u8 = 1;
const FLAG_HINT: u8 = 2;

/// What a tensor is, seen as a matrix: `cols` is the last dimension, `rows` the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Matrix {
    /// Product of all dimensions but the last (1 for 1-D and 0-D tensors).
    pub rows: u64,
    /// The last dimension (1 for 0-D tensors).
    pub cols: u64,
}

impl Matrix {
    /// The matrix view of a row-major shape whose element count is within the limits.
    pub fn of_shape(shape: &[u64]) -> Matrix {
        match shape.split_last() {
            None => Matrix { rows: 1, cols: 1 },
            Some((&cols, rest)) => Matrix {
                rows: rest.iter().product(),
                cols,
            },
        }
    }
}

/// A section a stage must have: its kind, element type and exact length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SectionSpec {
    /// Kind.
    pub kind: SectionKind,
    /// Element type.
    pub elem: ElemType,
    /// Length in bytes.
    pub len: u64,
}

impl std::fmt::Display for SectionSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} of {} bytes", self.kind, self.elem, self.len)
    }
}

/// (elements per block, bytes per block) of the ggml types tenpak stores.
pub fn ggml_block_layout(type_id: u32) -> Option<(u64, u64)> {
    crate::codec::ggml::GgmlType::from_id(type_id)
        .map(|t| (t.block_size() as u64, t.type_size() as u64))
}

impl Stage {
    /// Checks the parameters against the limits of `spec/tpk.md`.
    pub fn check(&self) -> std::result::Result<(), String> {
        match *self {
            Stage::Raw { dtype } if !dtype.is_known() => Err(format!("raw dtype {dtype}")),
            Stage::Int { bits, group, .. } if !(2..=8).contains(&bits) => {
                let _ = group;
                Err(format!("int bits {bits} not in 2..=8"))
            }
            Stage::Int { group, .. } if group % 8 != 0 || !(8..=4096).contains(&group) => Err(
                format!("int group {group} is not a multiple of 8 in 8..=4096"),
            ),
            Stage::Vq { dim, .. } if !(1..=16).contains(&dim) => {
                Err(format!("vq d {dim} not in 1..=16"))
            }
            Stage::Vq { k, .. } if !(2..=65536).contains(&k) => {
                Err(format!("vq k {k} not in 2..=65536"))
            }
            Stage::LowRank { rank, .. } if !(1..=4096).contains(&rank) => {
                Err(format!("lowrank rank {rank} not in 1..=4096"))
            }
            Stage::Ggml { type_id } if ggml_block_layout(type_id).is_none() => {
                Err(format!("ggml type {type_id} is not supported"))
            }
            _ => Ok(()),
        }
    }

    /// The sections this stage needs for matrix `m`, in order, or why it cannot apply.
    pub fn sections(&self, m: Matrix) -> std::result::Result<Vec<SectionSpec>, String> {
        self.check()?;
        let Matrix { rows, cols } = m;
        let ov = || "section size overflows".to_string();
        let mul = |a: u64, b: u64| a.checked_mul(b).ok_or_else(ov);
        let s = |kind, elem, len| SectionSpec { kind, elem, len };
        Ok(match *self {
            Stage::Raw { dtype } => {
                let elem = match dtype {
                    Dtype::F16 => ElemType::F16,
                    Dtype::BF16 => ElemType::BF16,
                    _ => ElemType::F32,
                };
                vec![s(
                    SectionKind::Raw,
                    elem,
                    mul(mul(rows, cols)?, dtype.size())?,
                )]
            }
            Stage::Int {
                bits,
                group,
                symmetric,
                ..
            } => {
                let p = super::int::IntParams {
                    bits,
                    group: group as usize,
                    symmetric,
                };
                let l = super::int::layout(usize_of(rows)?, usize_of(cols)?, &p).ok_or_else(ov)?;
                let elem = ElemType::packed(bits).ok_or_else(|| format!("int bits {bits}"))?;
                let mut v = vec![
                    s(SectionKind::Codes, elem, l.codes_bytes as u64),
                    s(
                        SectionKind::Scales,
                        ElemType::F16,
                        mul(l.n_scales as u64, 2)?,
                    ),
                ];
                if !symmetric {
                    v.push(s(
                        SectionKind::Offsets,
                        ElemType::F16,
                        mul(l.n_offsets as u64, 2)?,
                    ));
                }
                v
            }
            Stage::Vq { dim, k, .. } => {
                let p = super::vq::VqParams {
                    d: dim as usize,
                    k: k as usize,
                    iters: 0,
                    seed: 0,
                };
                let l = super::vq::layout(usize_of(rows)?, usize_of(cols)?, &p).ok_or_else(ov)?;
                let elem = if k <= 256 {
                    ElemType::U8
                } else {
                    ElemType::U16
                };
                vec![
                    s(
                        SectionKind::Codebook,
                        ElemType::F16,
                        mul(l.codebook_len as u64, 2)?,
                    ),
                    s(SectionKind::Indices, elem, l.index_bytes as u64),
                ]
            }
            Stage::LowRank { rank, .. } => {
                let l = super::lowrank::layout(usize_of(rows)?, usize_of(cols)?, rank as usize)
                    .ok_or_else(|| {
                        format!("lowrank rank {rank} exceeds min(rows {rows}, cols {cols})")
                    })?;
                vec![
                    s(
                        SectionKind::LowRankLeft,
                        ElemType::F16,
                        mul(l.left_len as u64, 2)?,
                    ),
                    s(
                        SectionKind::LowRankRight,
                        ElemType::F16,
                        mul(l.right_len as u64, 2)?,
                    ),
                ]
            }
            Stage::Ggml { type_id } => {
                let (block, size) =
                    ggml_block_layout(type_id).ok_or_else(|| format!("ggml type {type_id}"))?;
                if cols % block != 0 {
                    return Err(format!(
                        "row length {cols} is not a multiple of the ggml block size {block}"
                    ));
                }
                vec![s(
                    SectionKind::GgmlBlocks,
                    ElemType::U8,
                    mul(mul(rows, cols / block)?, size)?,
                )]
            }
        })
    }

    fn record(&self) -> [u8; STAGE_RECORD] {
        let mut r = [0u8; STAGE_RECORD];
        let (kind, a, flags, p1, p2) = match *self {
            Stage::Raw { dtype } => (KIND_RAW, dtype.code(), 0, 0, 0),
            Stage::Int {
                bits,
                group,
                symmetric,
                refine,
            } => (
                KIND_INT,
                bits,
                (u8::from(symmetric) * FLAG_SYMMETRIC) | (u8::from(refine) * FLAG_HINT),
                group,
                0,
            ),
            Stage::Vq { dim, k, weighted } => (KIND_VQ, 0, u8::from(weighted) * FLAG_HINT, dim, k),
            Stage::LowRank { rank, weighted } => {
                (KIND_LOWRANK, 0, u8::from(weighted) * FLAG_HINT, rank, 0)
            }
            Stage::Ggml { type_id } => (KIND_GGML, 0, 0, type_id, 0),
        };
        r[0] = kind;
        r[1] = a;
        r[2] = flags;
        r[4..8].copy_from_slice(&p1.to_le_bytes());
        r[8..12].copy_from_slice(&p2.to_le_bytes());
        r
    }

    fn from_record(r: &[u8]) -> std::result::Result<Stage, String> {
        let u32_at = |o: usize| u32::from_le_bytes([r[o], r[o + 1], r[o + 2], r[o + 3]]);
        let (kind, a, flags, p1, p2) = (r[0], r[1], r[2], u32_at(4), u32_at(8));
        if r[3] != 0 || u32_at(12) != 0 {
            return Err("reserved stage bytes are not zero".into());
        }
        let hint = flags & FLAG_HINT != 0;
        let st = match kind {
            KIND_RAW => Stage::Raw {
                dtype: Dtype::from_code(a),
            },
            KIND_INT => Stage::Int {
                bits: a,
                group: p1,
                symmetric: flags & FLAG_SYMMETRIC != 0,
                refine: hint,
            },
            KIND_VQ => Stage::Vq {
                dim: p1,
                k: p2,
                weighted: hint,
            },
            KIND_LOWRANK => Stage::LowRank {
                rank: p1,
                weighted: hint,
            },
            KIND_GGML => Stage::Ggml { type_id: p1 },
            k => return Err(format!("unknown stage kind {k}")),
        };
        st.check()?;
        Ok(st)
    }
}

/// `v` as a usize, or the overflow message.
fn usize_of(v: u64) -> std::result::Result<usize, String> {
    usize::try_from(v).map_err(|_| "section size overflows".to_string())
}

/// Serializes a stage list as the staged codec's parameter header.
pub fn encode_params(stages: &[Stage]) -> Vec<u8> {
    let mut v = vec![0u8; PARAMS_PREFIX];
    v[0] = stages.len() as u8;
    for s in stages {
        v.extend_from_slice(&s.record());
    }
    v
}

/// Parses the staged codec's parameter header.
pub fn decode_params(p: &[u8]) -> std::result::Result<Vec<Stage>, String> {
    let n = *p.first().ok_or("empty parameter header")? as usize;
    if n == 0 || n > MAX_STAGES {
        return Err(format!("stage count {n} not in 1..={MAX_STAGES}"));
    }
    if p.len() != PARAMS_PREFIX + n * STAGE_RECORD {
        return Err(format!(
            "parameter header is {} bytes, {n} stages need {}",
            p.len(),
            PARAMS_PREFIX + n * STAGE_RECORD
        ));
    }
    if p[1..PARAMS_PREFIX].iter().any(|&b| b != 0) {
        return Err("reserved header bytes are not zero".into());
    }
    p[PARAMS_PREFIX..]
        .chunks_exact(STAGE_RECORD)
        .map(Stage::from_record)
        .collect()
}

/// All sections, in order, that `stages` need for `shape`.
pub fn expected_sections(
    stages: &[Stage],
    shape: &[u64],
) -> std::result::Result<Vec<SectionSpec>, String> {
    let m = Matrix::of_shape(shape);
    let mut v = Vec::new();
    for s in stages {
        v.extend(s.sections(m)?);
    }
    Ok(v)
}

/// Checks a staged tensor's parameters and sections; called once by the reader at open.
pub fn validate(t: &TensorView<'_>) -> Result<Vec<Stage>> {
    let bad = |reason: String| Error::BadCodecParams {
        tensor: t.name().to_string(),
        reason,
    };
    let stages = decode_params(t.params()).map_err(bad)?;
    let want = expected_sections(&stages, t.shape()).map_err(bad)?;
    if want.len() != t.section_indices().len() {
        return Err(bad(format!(
            "its stages need {} sections, the tensor lists {}",
            want.len(),
            t.section_indices().len()
        )));
    }
    for (w, s) in want.iter().zip(t.sections()) {
        if s.kind() != w.kind || s.elem() != w.elem || s.info().len != w.len {
            return Err(Error::SectionMismatch {
                tensor: t.name().to_string(),
                section: s.index(),
                expected: w.to_string(),
                actual: format!("{} {} of {} bytes", s.kind(), s.elem(), s.info().len),
            });
        }
    }
    Ok(stages)
}

/// A compact label of a stage list, e.g. `lr32w+vq4x256w+int4g32`, as `tpk inspect` shows it.
pub fn label(stages: &[Stage]) -> String {
    let parts: Vec<String> = stages
        .iter()
        .map(|s| match *s {
            Stage::Raw { dtype } => dtype.to_string(),
            Stage::Int {
                bits,
                group,
                symmetric,
                refine,
            } => format!(
                "int{bits}g{group}{}{}",
                if symmetric { "s" } else { "" },
                if refine { "o" } else { "" }
            ),
            Stage::Vq { dim, k, weighted } => {
                format!("vq{dim}x{k}{}", if weighted { "w" } else { "" })
            }
            Stage::LowRank { rank, weighted } => {
                format!("lr{rank}{}", if weighted { "w" } else { "" })
            }
            Stage::Ggml { type_id } => crate::codec::ggml_name(type_id),
        })
        .collect();
    parts.join("+")
}
