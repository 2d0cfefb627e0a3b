//! The `.tpk` test vectors of `spec/vectors/`: their generator and their check.
//!
//! `vectors_match_committed_files` rebuilds every vector (with `TpkWriter`, or byte by byte
//! for the 1.1 vector the writer cannot produce) together with its annotated hex dump, and
//! asserts both equal the committed files, so any change of the on-disk format fails here.
//! Run with `TENPAK_BLESS=1` to rewrite them after a deliberate change.
//!
//! `vectors_read_as_stated` opens the committed files and checks the values the spec says a
//! reader must produce; decoded values come from a decoder written from `spec/tpk.md` alone
//! and are compared bit-exactly with values computed by hand.

use std::path::{Path, PathBuf};

use half::f16;
use serde_json::json;
use tenpak::codec::staged::{self, Matrix, Stage};
use tenpak::format::layout::{self, NO_SECTION};
use tenpak::format::{CodecId, Dtype, ElemType, SectionKind, TensorEntry, TensorView};
use tenpak::{Error, TpkFile, TpkWriter};

/// What a reader must see in one tensor of a vector.
struct ExpTensor {
    name: &'static str,
    shape: Vec<u64>,
    dtype: Dtype,
    codec: CodecId,
    /// The decoded stage list; `None` for a codec the reader does not know.
    stages: Option<Vec<Stage>>,
    sections: Vec<u32>,
    /// Decoded values computed by hand from the spec; `None` when not stated.
    values: Option<Vec<f32>>,
}

/// What a reader must see in a vector.
struct Expect {
    version: (u16, u16),
    flags: u32,
    metadata: Option<serde_json::Value>,
    /// (offset, length, kind, element type) of every section, in order.
    sections: Vec<(u64, u64, SectionKind, ElemType)>,
    tensors: Vec<ExpTensor>,
}

struct Vector {
    name: &'static str,
    about: &'static str,
    bytes: Vec<u8>,
    expect: Expect,
}

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("spec/vectors")
}

/// Builds a file with the writer and returns its bytes.
fn with_writer(build: impl FnOnce(&mut TpkWriter) -> tenpak::Result<()>) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("a temporary folder can be created");
    let path = dir.path().join("v.tpk");
    let mut w = TpkWriter::create(&path).expect("writer starts");
    build(&mut w).expect("vector builds");
    w.finish().expect("writer finishes");
    std::fs::read(&path).expect("the written file is readable")
}

fn f16_bytes(v: &[f32]) -> Vec<u8> {
    v.iter()
        .flat_map(|&x| f16::from_f32(x).to_le_bytes())
        .collect()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn entry(
    name: &str,
    shape: &[u64],
    dtype: Dtype,
    stages: &[Stage],
    sections: Vec<tenpak::format::SectionId>,
) -> TensorEntry {
    TensorEntry {
        name: name.into(),
        shape: shape.to_vec(),
        source_dtype: dtype,
        codec: CodecId::Staged,
        params: staged::encode_params(stages),
        sections,
    }
}

fn v_empty() -> Vector {
    Vector {
        name: "empty",
        about: "(a) The smallest valid file: no sections, no tensors, no metadata. \
                Header, a directory made of its 64-byte header only, trailer: 192 bytes.",
        bytes: with_writer(|_| Ok(())),
        expect: Expect {
            version: (1, 0),
            flags: 0,
            metadata: None,
            sections: vec![],
            tensors: vec![],
        },
    }
}

fn v_raw_f32() -> Vector {
    let meta = json!({
        "source": {"dtypes": ["f32"], "files": [{"name": "model.safetensors", "size": 128}]},
        "tenpak": {"command": "convert", "version": "0.1.0"},
        "user": {"vector": "raw_f32"}
    });
    let values = [1.0f32, -2.0, 0.5, 3.25, 0.0, -0.125];
    let st = [Stage::Raw { dtype: Dtype::F32 }];
    let m = meta.clone();
    let bytes = with_writer(|w| {
        w.set_metadata(&m)?;
        let s = w.add_section(SectionKind::Raw, ElemType::F32, &f32_bytes(&values))?;
        w.add_tensor(entry("w", &[2, 3], Dtype::F32, &st, vec![s]))
    });
    let meta_len = serde_json::to_vec(&meta).expect("json serializes").len() as u64;
    Vector {
        name: "raw_f32",
        about: "(b) Metadata JSON (section 0) and one tensor `w` of shape [2, 3] stored as raw \
                f32 (section 1, after zero padding to the next multiple of 64).",
        bytes,
        expect: Expect {
            version: (1, 0),
            flags: 0,
            metadata: Some(meta),
            sections: vec![
                (64, meta_len, SectionKind::Metadata, ElemType::U8),
                (
                    64 + meta_len.div_ceil(64) * 64,
                    24,
                    SectionKind::Raw,
                    ElemType::F32,
                ),
            ],
            tensors: vec![ExpTensor {
                name: "w",
                shape: vec![2, 3],
                dtype: Dtype::F32,
                codec: CodecId::Staged,
                stages: Some(st.to_vec()),
                sections: vec![1],
                values: Some(values.to_vec()),
            }],
        },
    }
}

fn v_int4_asym() -> Vector {
    let st = [Stage::Int {
        bits: 4,
        group: 8,
        symmetric: false,
        refine: false,
    }];
    // Row 0 codes 0..=9, row 1 codes 15 down to 6; groups of 8 so the second group of each
    // row holds two real codes and six padding zeros. Element 2i is the low nibble.
    let codes: [u8; 16] = [
        0x10, 0x32, 0x54, 0x76, 0x98, 0, 0, 0, // row 0: groups 0 and 1
        0xEF, 0xCD, 0xAB, 0x89, 0x67, 0, 0, 0, // row 1: groups 0 and 1
    ];
    let scales = [0.5f32, 0.25, 2.0, 0.125];
    let offsets = [-1.0f32, 4.0, -16.0, 0.5];
    let bytes = with_writer(|w| {
        let c = w.add_section(SectionKind::Codes, ElemType::Packed4, &codes)?;
        let s = w.add_section(SectionKind::Scales, ElemType::F16, &f16_bytes(&scales))?;
        let o = w.add_section(SectionKind::Offsets, ElemType::F16, &f16_bytes(&offsets))?;
        w.add_tensor(entry("q", &[2, 10], Dtype::F16, &st, vec![c, s, o]))
    });
    // x = q * scale + offset, by hand.
    let values = vec![
        -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 6.0, 6.25, // row 0
        14.0, 12.0, 10.0, 8.0, 6.0, 4.0, 2.0, 0.0, 1.375, 1.25, // row 1
    ];
    Vector {
        name: "int4_asym",
        about: "(c) Tensor `q` of shape [2, 10]: one int stage, 4 bits, groups of 8, \
                asymmetric. Each row has G = ceil(10/8) = 2 groups and is padded to 16 codes; \
                padding codes are 0. Row 0 codes are 0..9 with scales [0.5, 0.25] and offsets \
                [-1, 4]; row 1 codes are 15..6 with scales [2, 0.125] and offsets [-16, 0.5]. \
                Decoded x = f32(q) * f32(scale) + f32(offset).",
        bytes,
        expect: Expect {
            version: (1, 0),
            flags: 0,
            metadata: None,
            sections: vec![
                (64, 16, SectionKind::Codes, ElemType::Packed4),
                (128, 8, SectionKind::Scales, ElemType::F16),
                (192, 8, SectionKind::Offsets, ElemType::F16),
            ],
            tensors: vec![ExpTensor {
                name: "q",
                shape: vec![2, 10],
                dtype: Dtype::F16,
                codec: CodecId::Staged,
                stages: Some(st.to_vec()),
                sections: vec![0, 1, 2],
                values: Some(values),
            }],
        },
    }
}

fn v_vq_shared() -> Vector {
    let st = [Stage::Vq {
        dim: 2,
        k: 4,
        weighted: false,
    }];
    let codebook = [0.0f32, 0.0, 1.0, -1.0, 0.5, 2.0, -3.0, 0.25];
    let bytes = with_writer(|w| {
        let cb = w.add_section(SectionKind::Codebook, ElemType::F16, &f16_bytes(&codebook))?;
        let ia = w.add_section(SectionKind::Indices, ElemType::U8, &[1, 2, 3, 0])?;
        let ib = w.add_section(SectionKind::Indices, ElemType::U8, &[2, 3])?;
        w.add_tensor(entry("a", &[2, 4], Dtype::BF16, &st, vec![cb, ia]))?;
        w.add_tensor(entry("b", &[3], Dtype::F32, &st, vec![cb, ib]))
    });
    Vector {
        name: "vq_shared",
        about: "(d) Two tensors sharing one VQ codebook (section 0, d = 2, k = 4, \
                C = [[0, 0], [1, -1], [0.5, 2], [-3, 0.25]]). `a` [2, 4] has indices \
                [[1, 2], [3, 0]]; `b` [3] (1-D: one row of 3, padded to 2 vectors) has \
                indices [2, 3], and the padding element of its last vector (0.25) is dropped.",
        bytes,
        expect: Expect {
            version: (1, 0),
            flags: 0,
            metadata: None,
            sections: vec![
                (64, 16, SectionKind::Codebook, ElemType::F16),
                (128, 4, SectionKind::Indices, ElemType::U8),
                (192, 2, SectionKind::Indices, ElemType::U8),
            ],
            tensors: vec![
                ExpTensor {
                    name: "a",
                    shape: vec![2, 4],
                    dtype: Dtype::BF16,
                    codec: CodecId::Staged,
                    stages: Some(st.to_vec()),
                    sections: vec![0, 1],
                    values: Some(vec![1.0, -1.0, 0.5, 2.0, -3.0, 0.25, 0.0, 0.0]),
                },
                ExpTensor {
                    name: "b",
                    shape: vec![3],
                    dtype: Dtype::F32,
                    codec: CodecId::Staged,
                    stages: Some(st.to_vec()),
                    sections: vec![0, 2],
                    values: Some(vec![0.5, 2.0, -3.0]),
                },
            ],
        },
    }
}

fn v_int8sym_f16() -> Vector {
    let st = [
        Stage::Int {
            bits: 8,
            group: 8,
            symmetric: true,
            refine: true,
        },
        Stage::Raw { dtype: Dtype::F16 },
    ];
    let residual = [0.25f32, 0.5, -1.5];
    let bytes = with_writer(|w| {
        let c = w.add_section(
            SectionKind::Codes,
            ElemType::Packed8,
            &[130, 126, 128, 0, 0, 0, 0, 0],
        )?;
        let s = w.add_section(SectionKind::Scales, ElemType::F16, &f16_bytes(&[0.5]))?;
        let r = w.add_section(SectionKind::Raw, ElemType::F16, &f16_bytes(&residual))?;
        w.add_tensor(entry("s", &[3], Dtype::F32, &st, vec![c, s, r]))
    });
    Vector {
        name: "int8sym_f16",
        about: "(f) Tensor `s` of shape [3] with two stages: int8 symmetric, group 8 (one group, \
                5 padding codes), with the \"refined\" encoder hint set (no effect on decoding), \
                codes [130, 126, 128] and scale 0.5, giving (q - 128) * 0.5 = [1, -1, 0]; then a \
                raw f16 stage [0.25, 0.5, -1.5]. The value is their f32 sum [1.25, -0.5, -1.5].",
        bytes,
        expect: Expect {
            version: (1, 0),
            flags: 0,
            metadata: None,
            sections: vec![
                (64, 8, SectionKind::Codes, ElemType::Packed8),
                (128, 2, SectionKind::Scales, ElemType::F16),
                (192, 6, SectionKind::Raw, ElemType::F16),
            ],
            tensors: vec![ExpTensor {
                name: "s",
                shape: vec![3],
                dtype: Dtype::F32,
                codec: CodecId::Staged,
                stages: Some(st.to_vec()),
                sections: vec![0, 1, 2],
                values: Some(vec![1.25, -0.5, -1.5]),
            }],
        },
    }
}

fn put(b: &mut [u8], off: usize, v: &[u8]) {
    b[off..off + v.len()].copy_from_slice(v);
}

/// Vector (e), byte by byte: what a 1.1 writer could produce.
fn v_minor11() -> Vector {
    const HL: usize = 128; // header with a 64-byte extension
    const DIR: usize = 256;
    let mut f = vec![0u8; DIR];
    // Header.
    put(&mut f, 0, &layout::MAGIC);
    put(&mut f, 8, &1u16.to_le_bytes());
    put(&mut f, 10, &1u16.to_le_bytes());
    put(&mut f, 12, &1u32.to_le_bytes()); // optional flag bit 0, unknown to 1.0
    put(&mut f, 16, &(HL as u32).to_le_bytes());
    let crc = crc32fast::hash(&f[..60]);
    put(&mut f, 60, &crc.to_le_bytes());
    f[64..HL].fill(0xEE); // header extension: ignored by a 1.0 reader
                          // Section 0: unknown kind 200, unknown element type 99, 5 bytes.
    let s0 = b"hello";
    put(&mut f, 128, s0);
    // Section 1: raw f16 values of tensor "h".
    let s1 = f16_bytes(&[1.5, -2.0]);
    put(&mut f, 192, &s1);

    // Directory: records with longer strides (80 and 48), trailing bytes filled.
    let (ts, ss) = (80usize, 48usize);
    let tensors_off = 64;
    let sections_off = tensors_off + 2 * ts;
    let refs_off = sections_off + 2 * ss;
    let dims_off = refs_off + 8;
    let params_off = dims_off + 16;
    let h_params = staged::encode_params(&[Stage::Raw { dtype: Dtype::F16 }]);
    let x_params = [1u8, 2, 3];
    let strings_off = params_off + h_params.len() + x_params.len();
    let dir_len = strings_off + 2;
    let mut d = vec![0u8; dir_len];
    let u32s = |d: &mut Vec<u8>, off: usize, vals: &[u32]| {
        for (i, v) in vals.iter().enumerate() {
            put(d, off + 4 * i, &v.to_le_bytes());
        }
    };
    u32s(
        &mut d,
        0,
        &[
            2,
            ts as u32,
            2,
            ss as u32,
            tensors_off as u32,
            sections_off as u32,
            refs_off as u32,
            2,
            dims_off as u32,
            2,
            params_off as u32,
            (h_params.len() + x_params.len()) as u32,
            strings_off as u32,
            2,
            NO_SECTION,
            0,
        ],
    );
    // Tensor 0 "h": staged raw f16, shape [2], section 1.
    let t0 = tensors_off;
    u32s(&mut d, t0, &[0, 1, 0, 1, 0, 1, 0, h_params.len() as u32]);
    put(&mut d, t0 + 32, &1u16.to_le_bytes());
    d[t0 + 34] = Dtype::F16.code();
    d[t0 + 64..t0 + ts].fill(0xAB);
    // Tensor 1 "x": unknown codec 7, unknown dtype 9, shape [5], section 0.
    let t1 = tensors_off + ts;
    u32s(
        &mut d,
        t1,
        &[
            1,
            1,
            1,
            1,
            1,
            1,
            h_params.len() as u32,
            x_params.len() as u32,
        ],
    );
    put(&mut d, t1 + 32, &7u16.to_le_bytes());
    d[t1 + 34] = 9;
    d[t1 + 64..t1 + ts].fill(0xAB);
    // Section records.
    for (i, (off, bytes, kind, elem)) in [(128u64, &s0[..], 200u8, 99u8), (192, &s1[..], 2, 7)]
        .into_iter()
        .enumerate()
    {
        let r = sections_off + i * ss;
        put(&mut d, r, &off.to_le_bytes());
        put(&mut d, r + 8, &(bytes.len() as u64).to_le_bytes());
        put(&mut d, r + 16, &crc32fast::hash(bytes).to_le_bytes());
        d[r + 20] = kind;
        d[r + 21] = elem;
        d[r + 32..r + ss].fill(0xCD);
    }
    u32s(&mut d, refs_off, &[1, 0]);
    put(&mut d, dims_off, &2u64.to_le_bytes());
    put(&mut d, dims_off + 8, &5u64.to_le_bytes());
    put(&mut d, params_off, &h_params);
    put(&mut d, params_off + h_params.len(), &x_params);
    put(&mut d, strings_off, b"hx");
    f.extend_from_slice(&d);
    // Trailer.
    let mut t = [0u8; 64];
    put(&mut t, 0, &(DIR as u64).to_le_bytes());
    put(&mut t, 8, &(dir_len as u64).to_le_bytes());
    put(&mut t, 16, &crc32fast::hash(&d).to_le_bytes());
    put(&mut t, 20, &1u16.to_le_bytes());
    put(&mut t, 22, &1u16.to_le_bytes());
    let crc = crc32fast::hash(&t[..52]);
    put(&mut t, 52, &crc.to_le_bytes());
    put(&mut t, 56, &layout::END_MAGIC);
    f.extend_from_slice(&t);

    Vector {
        name: "minor11",
        about: "(e) A version 1.1 file, as a later minor version could write it, that a 1.0 \
                reader MUST accept: optional flag bit 0 set, header_len 128 (a 64-byte header \
                extension filled with 0xEE), a section of unknown kind 200 and unknown element \
                type 99, tensor records of 80 bytes and section records of 48 bytes (trailing \
                bytes 0xAB and 0xCD), and a tensor `x` with unknown codec 7 and unknown source \
                dtype 9. Tensor `h` is an ordinary staged raw f16 tensor the reader decodes. \
                The same bytes with minor version 0 are rejected (unknown code).",
        bytes: f,
        expect: Expect {
            version: (1, 1),
            flags: 1,
            metadata: None,
            sections: vec![
                (128, 5, SectionKind::Other(200), ElemType::Other(99)),
                (192, 4, SectionKind::Raw, ElemType::F16),
            ],
            tensors: vec![
                ExpTensor {
                    name: "h",
                    shape: vec![2],
                    dtype: Dtype::F16,
                    codec: CodecId::Staged,
                    stages: Some(vec![Stage::Raw { dtype: Dtype::F16 }]),
                    sections: vec![1],
                    values: Some(vec![1.5, -2.0]),
                },
                ExpTensor {
                    name: "x",
                    shape: vec![5],
                    dtype: Dtype::Other(9),
                    codec: CodecId::Other(7),
                    stages: None,
                    sections: vec![0],
                    values: None,
                },
            ],
        },
    }
}

fn all_vectors() -> Vec<Vector> {
    vec![
        v_empty(),
        v_raw_f32(),
        v_int4_asym(),
        v_vq_shared(),
        v_minor11(),
        v_int8sym_f16(),
    ]
}

// ---------------------------------------------------------------------------------------
// A decoder written from spec/tpk.md section 10 alone (no ggml), to check stated values.

fn f16s(t: &TensorView<'_>, i: usize) -> Vec<f32> {
    let s = t.section(i).expect("validated section list");
    s.as_f16()
        .expect("validated f16 section")
        .iter()
        .map(|h| h.to_f32())
        .collect()
}

fn spec_decode(t: &TensorView<'_>) -> Vec<f32> {
    let stages = staged::decode_params(t.params()).expect("validated parameters");
    let Matrix { rows, cols } = Matrix::of_shape(t.shape());
    let (rows, cols) = (rows as usize, cols as usize);
    let mut out: Option<Vec<f32>> = None;
    let mut next = 0usize;
    for st in stages {
        let mut s = vec![0f32; rows * cols];
        match st {
            Stage::Raw { dtype } => {
                let sec = t.section(next).expect("validated");
                s = match dtype {
                    Dtype::F32 => sec.as_f32().expect("f32").to_vec(),
                    Dtype::F16 => f16s(t, next),
                    _ => sec
                        .as_bf16()
                        .expect("bf16")
                        .iter()
                        .map(|v| v.to_f32())
                        .collect(),
                };
                next += 1;
            }
            Stage::Int {
                bits,
                group,
                symmetric,
                ..
            } => {
                let (b, g) = (bits as usize, group as usize);
                let groups = cols.div_ceil(g);
                let codes = t.section(next).expect("validated").as_u8().expect("packed");
                let scales = f16s(t, next + 1);
                let offsets = if symmetric {
                    None
                } else {
                    Some(f16s(t, next + 2))
                };
                for r in 0..rows {
                    for c in 0..cols {
                        let (j, i) = (c / g, c % g);
                        let base_bit = (r * groups + j) * g * b + i * b;
                        let q: u32 = (0..b)
                            .map(|k| {
                                let bit = base_bit + k;
                                u32::from((codes[bit / 8] >> (bit % 8)) & 1) << k
                            })
                            .sum();
                        let sc = scales[r * groups + j];
                        s[r * cols + c] = match &offsets {
                            Some(m) => q as f32 * sc + m[r * groups + j],
                            None => (q as i32 - (1 << (b - 1))) as f32 * sc,
                        };
                    }
                }
                next += if symmetric { 2 } else { 3 };
            }
            Stage::Vq { dim, k, .. } => {
                let d = dim as usize;
                let vectors = cols.div_ceil(d);
                let cb = f16s(t, next);
                let sec = t.section(next + 1).expect("validated");
                let idx: Vec<usize> = if k <= 256 {
                    sec.as_u8()
                        .expect("u8")
                        .iter()
                        .map(|&v| v as usize)
                        .collect()
                } else {
                    sec.as_u16()
                        .expect("u16")
                        .iter()
                        .map(|&v| v as usize)
                        .collect()
                };
                for r in 0..rows {
                    for c in 0..cols {
                        let i = idx[r * vectors + c / d];
                        assert!(i < k as usize, "index {i} >= k must be rejected");
                        s[r * cols + c] = cb[i * d + c % d];
                    }
                }
                next += 2;
            }
            Stage::LowRank { rank, .. } => {
                let rk = rank as usize;
                let (l, rr) = (f16s(t, next), f16s(t, next + 1));
                for i in 0..rows {
                    for c in 0..cols {
                        let mut acc = 0f32;
                        for q in 0..rk {
                            acc += l[i * rk + q] * rr[q * cols + c];
                        }
                        s[i * cols + c] = acc;
                    }
                }
                next += 2;
            }
            Stage::Ggml { .. } => panic!("the vectors hold no ggml stage"),
        }
        out = Some(match out {
            None => s,
            Some(o) => o.iter().zip(&s).map(|(a, b)| a + b).collect(),
        });
    }
    out.expect("at least one stage")
}

// ---------------------------------------------------------------------------------------
// The annotated hex dump, written from the bytes alone (it does not use the reader).

struct Dump<'a> {
    b: &'a [u8],
    rows: Vec<(usize, usize, String, String)>,
}

impl<'a> Dump<'a> {
    fn u16(&self, o: usize) -> u16 {
        u16::from_le_bytes([self.b[o], self.b[o + 1]])
    }
    fn u32(&self, o: usize) -> u32 {
        u32::from_le_bytes(self.b[o..o + 4].try_into().expect("4 bytes"))
    }
    fn u64(&self, o: usize) -> u64 {
        u64::from_le_bytes(self.b[o..o + 8].try_into().expect("8 bytes"))
    }
    fn row(
        &mut self,
        off: usize,
        len: usize,
        field: impl Into<String>,
        meaning: impl Into<String>,
    ) {
        self.rows.push((off, len, field.into(), meaning.into()));
    }
    fn num(&mut self, off: usize, len: usize, field: &str, extra: &str) {
        let v = match len {
            1 => u64::from(self.b[off]),
            2 => u64::from(self.u16(off)),
            4 => u64::from(self.u32(off)),
            _ => self.u64(off),
        };
        let text = if extra.is_empty() {
            v.to_string()
        } else {
            format!("{v} ({extra})")
        };
        self.row(off, len, field, text);
    }
    fn crc(&mut self, off: usize, field: &str, covers: &str) {
        let v = self.u32(off);
        self.row(off, 4, field, format!("0x{v:08x}, CRC32 of {covers}"));
    }
    fn padding(&mut self, from: usize, to: usize, what: &str) {
        if to > from {
            self.row(from, to - from, what, "zero");
        }
    }

    fn render(&self) -> String {
        let mut s =
            String::from("| offset | bytes | field | value / meaning |\n|---:|---|---|---|\n");
        let mut expect = 0usize;
        for (off, len, field, meaning) in &self.rows {
            assert_eq!(*off, expect, "dump rows must tile the file ({field})");
            expect = off + len;
            let bytes = &self.b[*off..off + len];
            // Long runs: 16 bytes per row, meaning on the first.
            let chunks: Vec<&[u8]> = if bytes.is_empty() {
                vec![&[]]
            } else {
                bytes.chunks(16).collect()
            };
            for (i, c) in chunks.iter().enumerate() {
                let hex: Vec<String> = c.iter().map(|x| format!("{x:02x}")).collect();
                let (f, m) = if i == 0 {
                    (field.as_str(), meaning.as_str())
                } else {
                    ("", "")
                };
                s.push_str(&format!(
                    "| {} | `{}` | {} | {} |\n",
                    off + 16 * i,
                    hex.join(" "),
                    f,
                    m.replace('|', "\\|")
                ));
            }
        }
        assert_eq!(expect, self.b.len(), "dump rows must cover the file");
        s
    }
}

fn kind_name(c: u8) -> String {
    SectionKind::from_code(c).to_string()
}
fn elem_name(c: u8) -> String {
    ElemType::from_code(c).to_string()
}

fn annotate(b: &[u8]) -> String {
    let mut d = Dump { b, rows: vec![] };
    let n = b.len();
    d.row(0, 8, "magic", "\\x89 T P K \\r \\n ^Z \\n");
    d.num(8, 2, "major", "");
    d.num(10, 2, "minor", "");
    d.row(12, 4, "flags", format!("0x{:08x}", d.u32(12)));
    d.num(16, 4, "header_len", "");
    d.row(20, 40, "reserved", "zero");
    d.crc(60, "header crc", "bytes [0, 60)");
    let hl = d.u32(16) as usize;
    if hl > 64 {
        d.row(64, hl - 64, "header extension", "ignored by a 1.0 reader");
    }
    let t = n - 64;
    let (dir, dir_len) = (d.u64(t) as usize, d.u64(t + 8) as usize);
    let g = |o: usize| d.u32(dir + o) as usize;
    let (tc, tst, sc, sst) = (g(0), g(4), g(8), g(12));
    let (toff, soff, roff, rc, doff, dc, poff, plen, stoff, stlen, meta) = (
        g(16),
        g(20),
        g(24),
        g(28),
        g(32),
        g(36),
        g(40),
        g(44),
        g(48),
        g(52),
        d.u32(dir + 56),
    );
    // Data area.
    let mut pos = hl;
    for i in 0..sc {
        let r = dir + soff + i * sst;
        let (off, len) = (d.u64(r) as usize, d.u64(r + 8) as usize);
        let (kind, elem) = (b[r + 20], b[r + 21]);
        d.padding(pos, off, "padding");
        let head = format!("section {i}: {} {}", kind_name(kind), elem_name(elem));
        match ElemType::from_code(elem) {
            ElemType::F16 | ElemType::F32 | ElemType::U16 => {
                let size = ElemType::from_code(elem).size() as usize;
                for e in 0..len / size {
                    let o = off + e * size;
                    let v = match ElemType::from_code(elem) {
                        ElemType::F16 => format!("{}", f16::from_bits(d.u16(o)).to_f32()),
                        ElemType::F32 => format!("{}", f32::from_bits(d.u32(o))),
                        _ => format!("{}", d.u16(o)),
                    };
                    let f = if e == 0 { head.clone() } else { String::new() };
                    d.row(o, size, f, format!("[{e}] = {v}"));
                }
            }
            ElemType::Packed4 => {
                for e in 0..len {
                    let x = b[off + e];
                    let f = if e == 0 { head.clone() } else { String::new() };
                    d.row(
                        off + e,
                        1,
                        f,
                        format!("byte {e}: codes {} (low), {} (high)", x & 15, x >> 4),
                    );
                }
            }
            ElemType::Packed8 | ElemType::U8 if kind != 1 => {
                let v: Vec<String> = b[off..off + len].iter().map(|x| x.to_string()).collect();
                d.row(off, len, head, format!("[{}]", v.join(", ")));
            }
            _ => {
                let text = String::from_utf8_lossy(&b[off..off + len]).into_owned();
                d.row(off, len, head, format!("{len} bytes: `{text}`"));
            }
        }
        pos = off + len;
    }
    d.padding(pos, dir, "padding");
    // Directory header.
    let names = [
        "tensor_count",
        "tensor_stride",
        "section_count",
        "section_stride",
        "tensors_off",
        "sections_off",
        "refs_off",
        "refs_count",
        "dims_off",
        "dims_count",
        "params_off",
        "params_len",
        "strings_off",
        "strings_len",
    ];
    for (i, name) in names.iter().enumerate() {
        d.num(dir + 4 * i, 4, &format!("dir.{name}"), "");
    }
    let m = if meta == NO_SECTION {
        "0xffffffff: no metadata".to_string()
    } else {
        format!("section {meta}")
    };
    d.row(dir + 56, 4, "dir.metadata_section", m);
    d.row(dir + 60, 4, "dir.reserved", "zero");
    // Tables, in the order the writer lays them out (which the vectors follow).
    let mut params_ranges = vec![];
    let mut name_ranges = vec![];
    for i in 0..tc {
        let r = dir + toff + i * tst;
        let p = format!("tensor[{i}].");
        let fields = [
            "name_off",
            "name_len",
            "dims_first",
            "rank",
            "refs_first",
            "refs_count",
            "params_off",
            "params_len",
        ];
        for (k, f) in fields.iter().enumerate() {
            d.num(r + 4 * k, 4, &format!("{p}{f}"), "");
        }
        let codec = d.u16(r + 32);
        d.num(
            r + 32,
            2,
            &format!("{p}codec"),
            &CodecId::from_code(codec).to_string(),
        );
        d.num(
            r + 34,
            1,
            &format!("{p}source_dtype"),
            &Dtype::from_code(b[r + 34]).to_string(),
        );
        d.row(r + 35, 29, format!("{p}reserved"), "zero");
        if tst > 64 {
            d.row(
                r + 64,
                tst - 64,
                format!("{p}(newer fields)"),
                "ignored by a 1.0 reader",
            );
        }
        params_ranges.push((i, codec, d.u32(r + 24) as usize, d.u32(r + 28) as usize));
        name_ranges.push((i, d.u32(r) as usize, d.u32(r + 4) as usize));
    }
    for i in 0..sc {
        let r = dir + soff + i * sst;
        let p = format!("section[{i}].");
        d.num(r, 8, &format!("{p}offset"), "");
        d.num(r + 8, 8, &format!("{p}length"), "");
        d.row(
            r + 16,
            4,
            format!("{p}crc"),
            format!("0x{:08x}", d.u32(r + 16)),
        );
        d.num(r + 20, 1, &format!("{p}kind"), &kind_name(b[r + 20]));
        d.num(r + 21, 1, &format!("{p}elem"), &elem_name(b[r + 21]));
        d.row(r + 22, 10, format!("{p}reserved"), "zero");
        if sst > 32 {
            d.row(
                r + 32,
                sst - 32,
                format!("{p}(newer fields)"),
                "ignored by a 1.0 reader",
            );
        }
    }
    for i in 0..rc {
        d.num(
            dir + roff + 4 * i,
            4,
            &format!("refs[{i}]"),
            "section index",
        );
    }
    for i in 0..dc {
        d.num(dir + doff + 8 * i, 8, &format!("dims[{i}]"), "");
    }
    let mut pos = dir + poff;
    for (i, codec, off, len) in params_ranges {
        let o = dir + poff + off;
        d.padding(pos, o, "params (unused)");
        if codec == 1 && len >= 4 {
            let count = b[o];
            d.row(
                o,
                1,
                format!("tensor[{i}] params: stage count"),
                count.to_string(),
            );
            d.row(o + 1, 3, "reserved", "zero");
            for s in 0..(len - 4) / 16 {
                let r = o + 4 + 16 * s;
                let kind = ["raw", "int", "vq", "lowrank", "ggml"]
                    .get(b[r] as usize)
                    .copied()
                    .unwrap_or("?");
                let q = format!("stage[{s}].");
                d.num(r, 1, &format!("{q}kind"), kind);
                d.num(r + 1, 1, &format!("{q}a"), "");
                d.row(r + 2, 1, format!("{q}flags"), format!("0b{:02b}", b[r + 2]));
                d.row(r + 3, 1, format!("{q}reserved"), "zero");
                d.num(r + 4, 4, &format!("{q}p1"), "");
                d.num(r + 8, 4, &format!("{q}p2"), "");
                d.num(r + 12, 4, &format!("{q}p3"), "reserved");
            }
        } else {
            d.row(
                o,
                len,
                format!("tensor[{i}] params"),
                "opaque: unknown codec",
            );
        }
        pos = o + len;
    }
    d.padding(pos, dir + poff + plen, "params (unused)");
    let mut pos = dir + stoff;
    for (i, off, len) in name_ranges {
        let o = dir + stoff + off;
        d.padding(pos, o, "strings (unused)");
        let name = String::from_utf8_lossy(&b[o..o + len]).into_owned();
        d.row(o, len, format!("tensor[{i}] name"), format!("`{name}`"));
        pos = o + len;
    }
    d.padding(pos, dir + stoff + stlen, "strings (unused)");
    assert_eq!(
        dir + stoff + stlen,
        dir + dir_len,
        "strings end the directory"
    );
    d.num(t, 8, "trailer.dir_offset", "");
    d.num(t + 8, 8, "trailer.dir_len", "");
    d.crc(t + 16, "trailer.dir_crc", "the directory");
    d.num(t + 20, 2, "trailer.major", "");
    d.num(t + 22, 2, "trailer.minor", "");
    d.row(t + 24, 28, "trailer.reserved", "zero");
    d.crc(t + 52, "trailer.crc", "trailer bytes [0, 52)");
    d.row(t + 56, 8, "trailer.end_magic", "`TPK-END\\n`");
    d.render()
}

fn document(v: &Vector) -> String {
    let e = &v.expect;
    let mut s = format!(
        "# Test vector `{}.tpk`\n\n<!-- Generated by tests/format_vectors.rs (TENPAK_BLESS=1); do not edit. -->\n\n{}\n\n",
        v.name, v.about
    );
    s.push_str("## Expected reader output\n\n");
    s.push_str(&format!(
        "- file size: {} bytes; version {}.{}; flags 0x{:08x}\n",
        v.bytes.len(),
        e.version.0,
        e.version.1,
        e.flags
    ));
    match &e.metadata {
        None => s.push_str("- metadata: none\n"),
        Some(m) => s.push_str(&format!("- metadata (JSON): `{m}`\n")),
    }
    s.push_str(&format!(
        "- tensors: {}, sections: {}\n\n",
        e.tensors.len(),
        e.sections.len()
    ));
    if !e.sections.is_empty() {
        s.push_str(
            "| section | offset | length | kind | elem | CRC32 |\n|---:|---:|---:|---|---|---|\n",
        );
        for (i, (off, len, kind, elem)) in e.sections.iter().enumerate() {
            let crc = crc32fast::hash(&v.bytes[*off as usize..(off + len) as usize]);
            s.push_str(&format!(
                "| {i} | {off} | {len} | {kind} | {elem} | 0x{crc:08x} |\n"
            ));
        }
        s.push('\n');
    }
    for t in &e.tensors {
        s.push_str(&format!(
            "- tensor `{}`: shape {:?}, source dtype {}, codec {}, sections {:?}\n",
            t.name, t.shape, t.dtype, t.codec, t.sections
        ));
        match &t.stages {
            Some(st) => s.push_str(&format!("  - stages: {st:?}\n")),
            None => s.push_str("  - stages: not decodable (unknown codec)\n"),
        }
        if let Some(vals) = &t.values {
            s.push_str(&format!("  - decoded f32 values (row-major): {vals:?}\n"));
        }
    }
    let acct = spec_accounting(&v.bytes);
    if !acct.is_empty() {
        s.push_str("\n## Accounting (spec section 15)\n\n");
        s.push_str("| tensor | elements | bytes | bits per weight |\n|---|---:|---:|---:|\n");
        for (name, n, bytes) in &acct {
            let bpw = if *n == 0 {
                0.0
            } else {
                bytes * 8.0 / *n as f64
            };
            s.push_str(&format!("| `{name}` | {n} | {bytes:.3} | {bpw:.3} |\n"));
        }
        let total: u64 = acct.iter().map(|a| a.1).sum();
        s.push_str(&format!(
            "\nFile: {} bytes, {} elements, {:.3} bits per weight.\n",
            v.bytes.len(),
            total,
            v.bytes.len() as f64 * 8.0 / total as f64
        ));
    }
    s.push_str("\n## Annotated bytes\n\n");
    s.push_str(&annotate(&v.bytes));
    s
}

#[test]
fn vectors_match_committed_files() {
    let bless = std::env::var_os("TENPAK_BLESS").is_some_and(|v| v == "1");
    let dir = vectors_dir();
    let mut stale = vec![];
    for v in all_vectors() {
        let doc = document(&v);
        let (bin, md) = (
            dir.join(format!("{}.tpk", v.name)),
            dir.join(format!("{}.hex.md", v.name)),
        );
        if bless {
            std::fs::create_dir_all(&dir).expect("vectors folder can be created");
            std::fs::write(&bin, &v.bytes).expect("vector written");
            std::fs::write(&md, &doc).expect("hex dump written");
            continue;
        }
        if std::fs::read(&bin).ok().as_deref() != Some(&v.bytes[..]) {
            stale.push(bin.display().to_string());
        }
        if std::fs::read_to_string(&md).ok().as_deref() != Some(&doc[..]) {
            stale.push(md.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "the format changed or a vector is missing: {stale:?} (rebuild with TENPAK_BLESS=1 if intended)"
    );
}

#[test]
fn vectors_read_as_stated() {
    for v in all_vectors() {
        let path = vectors_dir().join(format!("{}.tpk", v.name));
        let f = TpkFile::open(&path).unwrap_or_else(|e| panic!("{}: {e}", v.name));
        let e = &v.expect;
        assert_eq!(f.version(), e.version, "{}", v.name);
        assert_eq!(f.flags(), e.flags, "{}", v.name);
        f.verify().unwrap_or_else(|err| panic!("{}: {err}", v.name));
        match &e.metadata {
            None => assert!(f.metadata_section().is_none() && f.metadata().unwrap().is_null()),
            Some(m) => assert_eq!(&f.metadata().expect("metadata parses"), m, "{}", v.name),
        }
        let secs: Vec<_> = f
            .sections()
            .map(|s| (s.info().offset, s.info().len, s.kind(), s.elem()))
            .collect();
        assert_eq!(secs, e.sections, "{}", v.name);
        assert_eq!(f.tensor_count(), e.tensors.len(), "{}", v.name);
        for (t, x) in f.tensors().zip(&e.tensors) {
            assert_eq!(t.name(), x.name);
            assert_eq!(f.tensor(x.name).map(|u| u.index()), Some(t.index()));
            assert_eq!(t.shape(), &x.shape[..], "{}", x.name);
            assert_eq!(t.source_dtype(), x.dtype, "{}", x.name);
            assert_eq!(t.codec(), x.codec, "{}", x.name);
            assert_eq!(t.section_indices(), &x.sections[..], "{}", x.name);
            match &x.stages {
                Some(st) => assert_eq!(&staged::decode_params(t.params()).unwrap(), st),
                None => assert!(!t.codec().is_known()),
            }
            if let Some(vals) = &x.values {
                let got = spec_decode(&t);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(vals), "{}: {got:?} vs {vals:?}", x.name);
            }
        }
    }
}

/// The stated hand-computed values also follow from the generator's inputs, so a typo in
/// either is caught: the int4 vector decodes from its own codes through the spec formula.
#[test]
fn int4_vector_codes_are_the_documented_ones() {
    let v = v_int4_asym();
    let f = TpkFile::from_bytes(&v.bytes, Default::default()).expect("vector opens");
    let t = f.tensor("q").expect("tensor q");
    let codes = t.section(0).expect("codes").as_u8().expect("bytes");
    let lo_hi: Vec<u8> = codes.iter().flat_map(|b| [b & 15, b >> 4]).collect();
    let row0: Vec<u8> = (0..10).collect();
    let row1: Vec<u8> = (6..16).rev().collect();
    assert_eq!(&lo_hi[..10], &row0[..]);
    assert_eq!(&lo_hi[16..26], &row1[..]);
    assert!(
        lo_hi[10..16].iter().chain(&lo_hi[26..]).all(|&c| c == 0),
        "padding codes are 0"
    );
}

#[test]
fn minor11_as_its_own_minor_is_rejected() {
    let mut b = v_minor11().bytes;
    // Rewrite the version to 1.0 in header and trailer and fix their CRCs.
    b[10] = 0;
    let crc = crc32fast::hash(&b[..60]);
    b[60..64].copy_from_slice(&crc.to_le_bytes());
    let t = b.len() - 64;
    b[t + 22] = 0;
    let crc = crc32fast::hash(&b[t..t + 52]);
    b[t + 52..t + 56].copy_from_slice(&crc.to_le_bytes());
    match TpkFile::from_bytes(&b, Default::default()) {
        Err(Error::UnknownCode { what, value }) => {
            assert_eq!((what, value), ("section kind", 200));
        }
        other => panic!("expected UnknownCode, got {other:?}"),
    }
}

#[test]
fn crc32_is_the_ieee_zlib_crc() {
    // The check value the spec quotes for the CRC-32/ISO-HDLC (zlib) parameters.
    assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
}

#[test]
fn empty_vector_is_192_bytes() {
    assert_eq!(v_empty().bytes.len(), 192);
}

#[test]
fn writer_is_deterministic_for_every_vector() {
    let a: Vec<Vec<u8>> = all_vectors().into_iter().map(|v| v.bytes).collect();
    let b: Vec<Vec<u8>> = all_vectors().into_iter().map(|v| v.bytes).collect();
    assert_eq!(a, b);
}

// ---------------------------------------------------------------------------------------
// spec/tpk.md's tables against the code, so the document cannot drift from the format.

fn spec_text() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("spec/tpk.md");
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The body rows (cells trimmed, backticks removed) of the `nth` table after `heading`.
fn spec_table(text: &str, heading: &str, nth: usize) -> Vec<Vec<String>> {
    let start = text
        .lines()
        .position(|l| l.starts_with('#') && l.contains(heading))
        .unwrap_or_else(|| panic!("heading {heading:?} in spec/tpk.md"));
    let lines: Vec<&str> = text.lines().skip(start + 1).collect();
    let mut tables: Vec<Vec<Vec<String>>> = vec![];
    let mut in_table = false;
    for l in lines {
        if l.starts_with('#') {
            break;
        }
        if l.starts_with('|') {
            if !in_table {
                tables.push(vec![]);
                in_table = true;
            }
            let cells: Vec<String> = l
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().replace('`', ""))
                .collect();
            tables.last_mut().expect("pushed").push(cells);
        } else {
            in_table = false;
        }
    }
    let t = tables
        .get(nth)
        .unwrap_or_else(|| panic!("table {nth} after {heading:?}"));
    t[2..].to_vec() // skip header and separator rows
}

/// (offset, size) of each named field in a record table.
fn field_map(rows: &[Vec<String>]) -> std::collections::HashMap<String, (usize, usize)> {
    rows.iter()
        .filter_map(|r| {
            let off = r[0].parse().ok()?;
            let size = r[1].parse().ok()?;
            Some((r[2].clone(), (off, size)))
        })
        .collect()
}

macro_rules! check_fields {
    ($text:expr, $heading:expr, $ty:ty, [$($f:ident),*]) => {{
        use zerocopy::FromZeros;
        let m = field_map(&spec_table($text, $heading, 0));
        let z = <$ty>::new_zeroed();
        $(
            let got = (std::mem::offset_of!($ty, $f), std::mem::size_of_val(&z.$f));
            assert_eq!(m.get(stringify!($f)), Some(&got), "{} field {}", $heading, stringify!($f));
        )*
        let total: usize = m.values().map(|&(_, s)| s).sum();
        assert_eq!(total, std::mem::size_of::<$ty>(), "{} sizes add up", $heading);
    }};
}

#[test]
fn spec_record_tables_match_the_layout() {
    let text = spec_text();
    check_fields!(
        &text,
        "5. Header",
        layout::Header,
        [magic, major, minor, flags, header_len, crc]
    );
    check_fields!(
        &text,
        "11. Trailer",
        layout::Trailer,
        [dir_offset, dir_len, dir_crc, major, minor, crc, end_magic]
    );
    check_fields!(
        &text,
        "8.1 Directory header",
        layout::DirHeader,
        [
            tensor_count,
            tensor_stride,
            section_count,
            section_stride,
            tensors_off,
            sections_off,
            refs_off,
            refs_count,
            dims_off,
            dims_count,
            params_off,
            params_len,
            strings_off,
            strings_len,
            metadata_section
        ]
    );
    check_fields!(
        &text,
        "8.2 Tensor record",
        layout::TensorRecord,
        [
            name_off,
            name_len,
            dims_first,
            rank,
            refs_first,
            refs_count,
            params_off,
            params_len,
            codec,
            source_dtype
        ]
    );
    check_fields!(
        &text,
        "8.3 Section record",
        layout::SectionRecord,
        [offset, length, crc, kind, elem]
    );
}

#[test]
fn spec_code_tables_match_the_enums() {
    let text = spec_text();
    let codes = |heading: &str, nth: usize| -> Vec<(u32, String)> {
        spec_table(&text, heading, nth)
            .into_iter()
            .filter_map(|r| Some((r[0].parse().ok()?, r[1].clone())))
            .collect()
    };
    let kinds = codes("6.1 Section kinds", 0);
    let known: Vec<(u32, String)> = (0..=255u8)
        .map(SectionKind::from_code)
        .filter(|k| k.is_known())
        .map(|k| (u32::from(k.code()), k.label().to_string()))
        .collect();
    assert_eq!(kinds, known);
    let elems = codes("6.2 Element types", 0);
    let known: Vec<(u32, String)> = (0..=255u8)
        .map(ElemType::from_code)
        .filter(|e| e.is_known() && e.code() < 17)
        .map(|e| (u32::from(e.code()), e.label().to_string()))
        .collect();
    assert_eq!(elems, known);
    for b in 1..=8u8 {
        let e = ElemType::packed(b).expect("1..=8");
        assert_eq!((e.code(), e.label()), (16 + b, &*format!("packed{b}")));
        assert_eq!(e.size(), 1);
    }
    for (code, name) in &elems {
        let e = ElemType::from_code(*code as u8);
        let row = spec_table(&text, "6.2 Element types", 0)
            .into_iter()
            .find(|r| &r[1] == name)
            .expect("row");
        assert_eq!(row[2], e.size().to_string(), "size of {name}");
    }
    let dtypes = codes("7. Source dtypes", 0);
    let known: Vec<(u32, String)> = (0..=255u8)
        .map(Dtype::from_code)
        .filter(|d| d.is_known())
        .map(|d| (u32::from(d.code()), d.label().to_string()))
        .collect();
    assert_eq!(dtypes, known);
    let codecs = codes("7. Source dtypes", 1);
    let known: Vec<(u32, String)> = (0..=u16::MAX)
        .map(CodecId::from_code)
        .filter(|c| c.is_known())
        .map(|c| (u32::from(c.code()), c.label().to_string()))
        .collect();
    assert_eq!(codecs, known);
}

#[test]
fn spec_ggml_table_matches_the_codec() {
    let text = spec_text();
    let mut rows: Vec<(u32, u64, u64)> = spec_table(&text, "10.6 ggml", 1)
        .into_iter()
        .map(|r| {
            let n = |i: usize| r[i].parse::<u64>().expect("number");
            (n(0) as u32, n(2), n(3))
        })
        .collect();
    rows.sort();
    let supported: Vec<(u32, u64, u64)> = (0..1024u32)
        .filter_map(|id| staged::ggml_block_layout(id).map(|(b, s)| (id, b, s)))
        .collect();
    assert_eq!(rows, supported);
}

#[test]
fn spec_stage_record_matches_the_encoder() {
    let rows = spec_table(&spec_text(), "10.1 Parameter header", 1);
    let m = field_map(&rows);
    let p = staged::encode_params(&[Stage::Vq {
        dim: 3,
        k: 300,
        weighted: true,
    }]);
    let rec = &p[4..];
    let at = |f: &str| m.get(f).unwrap_or_else(|| panic!("field {f}")).0;
    assert_eq!(rec[at("kind")], 2);
    assert_eq!(rec[at("flags")], 0b10);
    assert_eq!(&rec[at("p1")..at("p1") + 4], &3u32.to_le_bytes());
    assert_eq!(&rec[at("p2")..at("p2") + 4], &300u32.to_le_bytes());
    let p = staged::encode_params(&[Stage::Int {
        bits: 5,
        group: 64,
        symmetric: true,
        refine: false,
    }]);
    let rec = &p[4..];
    assert_eq!((rec[at("kind")], rec[at("a")], rec[at("flags")]), (1, 5, 1));
    assert_eq!(&rec[at("p1")..at("p1") + 4], &64u32.to_le_bytes());
    assert_eq!(&rec[at("p3")..at("p3") + 4], &[0; 4]);
    let sizes: usize = m.values().map(|&(_, s)| s).sum();
    assert_eq!(sizes, staged::STAGE_RECORD);
}

#[test]
fn spec_limits_table_matches_limits_rs() {
    use tenpak::format::limits::*;
    let rows = spec_table(&spec_text(), "13. Limits", 0);
    let value = |name: &str| -> u64 {
        let r = rows
            .iter()
            .find(|r| r[0] == name)
            .unwrap_or_else(|| panic!("limit {name:?} in the spec"));
        let v = &r[1];
        match v.find("2^") {
            Some(i) => {
                let exp: String = v[i + 2..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                1u64 << exp.parse::<u32>().expect("exponent")
            }
            None => {
                let n: String = v.chars().take_while(char::is_ascii_digit).collect();
                n.parse().expect("number")
            }
        }
    };
    assert_eq!(value("directory size"), MAX_DIRECTORY);
    assert_eq!(value("metadata size"), MAX_METADATA);
    assert_eq!(value("tensors"), MAX_TENSORS);
    assert_eq!(value("sections"), MAX_SECTIONS);
    assert_eq!(value("sections per tensor"), MAX_SECTIONS_PER_TENSOR);
    assert_eq!(value("name length"), MAX_NAME_LEN);
    assert_eq!(value("rank"), MAX_RANK);
    assert_eq!(value("elements per tensor"), MAX_ELEMENTS);
    assert_eq!(value("codec parameters"), MAX_PARAMS_LEN);
    assert_eq!(value("staged stages"), staged::MAX_STAGES as u64);
    assert_eq!(rows.len(), 10, "every limit is checked here");
}

/// Section 15 of the spec, implemented from its text: (name, elements, attributed bytes).
fn spec_accounting(bytes: &[u8]) -> Vec<(String, u64, f64)> {
    let f = TpkFile::from_bytes(bytes, Default::default()).expect("vector opens");
    let secs: Vec<(u64, u64)> = f
        .sections()
        .map(|s| (s.info().offset, s.info().len))
        .collect();
    let dir = f.directory_extent().0;
    let footprint = |i: usize| secs.get(i + 1).map_or(dir, |s| s.0) - secs[i].0;
    let w = |t: &TensorView<'_>| t.n_elements().max(1) as f64;
    let mut users = vec![0f64; secs.len()];
    for t in f.tensors() {
        for &s in t.section_indices() {
            users[s as usize] += w(&t);
        }
    }
    let mut out: Vec<(String, u64, f64)> = f
        .tensors()
        .map(|t| {
            let mut b = 0f64;
            for &s in t.section_indices() {
                b += (footprint(s as usize) + 32) as f64 * w(&t) / users[s as usize];
            }
            b += (64
                + t.name().len()
                + 8 * t.shape().len()
                + 4 * t.section_indices().len()
                + t.params().len()) as f64;
            (t.name().to_string(), t.n_elements(), b)
        })
        .collect();
    let attributed: f64 = out.iter().map(|o| o.2).sum();
    let overhead = (bytes.len() as f64 - attributed).max(0.0);
    let total_w: f64 = out.iter().map(|o| o.1.max(1) as f64).sum();
    for o in &mut out {
        o.2 += overhead * o.1.max(1) as f64 / total_w;
    }
    out
}

#[test]
fn accounting_adds_up_to_the_file_size() {
    for v in all_vectors() {
        let acct = spec_accounting(&v.bytes);
        if acct.is_empty() {
            continue;
        }
        let sum: f64 = acct.iter().map(|a| a.2).sum();
        assert!(
            (sum - v.bytes.len() as f64).abs() < 1e-6,
            "{}: {sum}",
            v.name
        );
    }
    // The shared codebook (64-byte footprint + 32-byte record) splits 8 : 3 between a and b.
    let acct = spec_accounting(&v_vq_shared().bytes);
    let own = |name_len: usize, rank: usize| (64 + name_len + 8 * rank + 4 * 2 + 20) as f64;
    let overhead = 690.0 - (96.0 * 3.0 + own(1, 2) + own(1, 1));
    let a = 96.0 * 8.0 / 11.0 + 96.0 + own(1, 2) + overhead * 8.0 / 11.0;
    assert!((acct[0].2 - a).abs() < 1e-9, "{} vs {a}", acct[0].2);
}
