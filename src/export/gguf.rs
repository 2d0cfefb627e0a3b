//! `.tpk` -> GGUF, for llama.cpp and the runtimes that read its files.
//!
//! A tensor already stored as ggml blocks is copied bit-exact; everything else is decoded to
//! f32 and re-quantized with [`crate::codec::ggml::quantize_row`]. The GGUF header needs every
//! tensor's type and size before any data, so each tensor is encoded once into a spool file
//! beside the output and copied afterwards: memory stays near one tensor.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;
use tenpak_converters::gguf::{
    arch_needs_qk_permute, hf_to_gguf_name, llama_arch_kv, permute_qk_rows, qk_proj, tokenizer_kv,
    GgufTensorSpec, GgufValue, GgufWriter, QkProj, MAX_TENSOR_NAME,
};

use crate::codec::ggml::{self, GgmlType};
use crate::codec::staged::Stage;
use crate::error::{Error, Result};
use crate::format::{Dtype, TensorView, TpkFile};

/// The GGUF type asked for on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportType {
    /// Per tensor: copy ggml blocks and raw floats as they are, else the smallest type whose
    /// error is no worse than the tpk codec's own (q8_0 when that is not recorded).
    Auto,
    /// Every 2-D tensor in this type (with block-size fallbacks).
    Fixed(GgmlType),
}

impl ExportType {
    /// Parses `auto` or a ggml type name, for the command line.
    pub fn parse(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("auto") {
            return Some(ExportType::Auto);
        }
        GgmlType::from_name(s).map(ExportType::Fixed)
    }
}

/// What to export and how.
#[derive(Clone, Debug)]
pub struct GgufExportOptions {
    /// The GGUF file to write (replaced atomically).
    pub output: PathBuf,
    /// Target type.
    pub ty: ExportType,
    /// Data alignment (a power of two; llama.cpp's default is 32).
    pub alignment: u32,
}

/// How one tensor was exported.
#[derive(Clone, Debug)]
pub struct TensorExport {
    /// Name in the `.tpk` file.
    pub name: String,
    /// Name in the GGUF file.
    pub gguf_name: String,
    /// GGUF type written.
    pub ty: GgmlType,
    /// Whether the stored bytes were copied without decoding.
    pub copied: bool,
    /// The requested type, when a block-size fallback replaced it.
    pub fallback_from: Option<GgmlType>,
    /// Relative squared error of the written values against the `.tpk` decode (0 if copied).
    pub rel_err: f64,
    /// Elements.
    pub elements: u64,
}

/// What an export produced, for the CLI summary.
#[derive(Clone, Debug)]
pub struct GgufExportReport {
    /// One entry per exported tensor, in file order.
    pub tensors: Vec<TensorExport>,
    /// llama.cpp file type written, if runtime metadata was written.
    pub file_type: Option<u32>,
    /// Things the user should know (no metadata written, tensors skipped, ...).
    pub warnings: Vec<String>,
}

/// Progress, one event per tensor.
#[derive(Clone, Debug)]
pub enum GgufExportEvent<'a> {
    /// A tensor was encoded into the spool.
    Tensor {
        /// Position from 0.
        index: usize,
        /// Total tensors.
        total: usize,
        /// The entry.
        entry: &'a TensorExport,
    },
}

/// llama.cpp's `LlamaFileType` for a file whose majority quantized type is `t`.
pub fn llama_file_type(t: GgmlType) -> u32 {
    match t {
        GgmlType::F32 => 0,
        GgmlType::F16 => 1,
        GgmlType::Q4_0 => 2,
        GgmlType::Q4_1 => 3,
        GgmlType::Q8_0 => 7,
        GgmlType::Q5_0 => 8,
        GgmlType::Q5_1 => 9,
        GgmlType::Q2K => 10,
        GgmlType::Q3K => 12,
        GgmlType::Q4K => 15,
        GgmlType::Q5K => 17,
        GgmlType::Q6K => 18,
        GgmlType::IQ4NL => 25,
        GgmlType::IQ4XS => 30,
        GgmlType::BF16 => 32,
    }
}

/// The type used when `t`'s block does not divide a row of `cols` (as llama.cpp falls back).
pub fn block_fallback(t: GgmlType, cols: usize) -> GgmlType {
    let mut t = t;
    // At most two steps (e.g. q4_k -> q5_0 -> f16).
    for _ in 0..3 {
        if cols.is_multiple_of(t.block_size()) {
            return t;
        }
        t = match t {
            GgmlType::Q4K => GgmlType::Q5_0,
            GgmlType::Q5K => GgmlType::Q5_1,
            GgmlType::Q6K => GgmlType::Q8_0,
            GgmlType::Q2K | GgmlType::Q3K | GgmlType::IQ4XS => GgmlType::IQ4NL,
            _ => GgmlType::F16,
        };
    }
    GgmlType::F16
}

fn bpw(t: GgmlType) -> f64 {
    t.type_size() as f64 * 8.0 / t.block_size() as f64
}

fn ggml_err(name: &str, e: ggml::GgmlError) -> Error {
    Error::InvalidArgument(format!("{name}: {e}"))
}

/// Encodes `rows` of `x` (row length `cols`) as `t`.
fn encode_rows(name: &str, t: GgmlType, x: &[f32], cols: usize) -> Result<Vec<u8>> {
    let rb = ggml::row_bytes(t, cols)
        .ok_or_else(|| Error::InvalidArgument(format!("{name}: row of {cols} as {t}")))?;
    let rows = x.len().checked_div(cols).unwrap_or(0);
    let total = rows
        .checked_mul(rb)
        .ok_or_else(|| Error::InvalidArgument(format!("{name}: size overflows")))?;
    let mut out = vec![0u8; total];
    if rb == 0 {
        return Ok(out);
    }
    for (src, dst) in x.chunks_exact(cols).zip(out.chunks_exact_mut(rb)) {
        ggml::quantize_row(t, src, None, dst).map_err(|e| ggml_err(name, e))?;
    }
    Ok(out)
}

/// Relative squared error of the rows in `bytes` (type `t`) against `x`.
fn rel_err_of(name: &str, t: GgmlType, bytes: &[u8], x: &[f32], cols: usize) -> Result<f64> {
    let rb = ggml::row_bytes(t, cols).unwrap_or(0);
    if rb == 0 || cols == 0 {
        return Ok(0.0);
    }
    let mut row = vec![0f32; cols];
    let (mut sig, mut noise) = (0f64, 0f64);
    for (src, b) in x.chunks_exact(cols).zip(bytes.chunks_exact(rb)) {
        ggml::dequantize_row(t, b, &mut row).map_err(|e| ggml_err(name, e))?;
        for (a, r) in src.iter().zip(&row) {
            sig += f64::from(*a) * f64::from(*a);
            let d = f64::from(*a) - f64::from(*r);
            noise += d * d;
        }
    }
    Ok(if sig > 0.0 { noise / sig } else { noise })
}

/// The recorded codec error of `name` in the convert metadata, if any.
fn recorded_rel_mse(meta: &Value, name: &str) -> Option<f64> {
    meta.get("policy")?
        .get("tensors")?
        .get(name)?
        .get("rel_mse")?
        .as_f64()
}

fn is_norm(name: &str) -> bool {
    name.contains("norm")
}

/// Runtime metadata for a LLaMA-family model; `None` with a reason otherwise.
struct Runtime {
    kv: Vec<(String, GgufValue)>,
    permute: bool,
    heads: usize,
    kv_heads: usize,
}

fn qk_heads(cfg: &Value) -> (usize, usize) {
    let h = cfg
        .get("num_attention_heads")
        .and_then(Value::as_u64)
        .unwrap_or(0) as usize;
    let kv = cfg
        .get("num_key_value_heads")
        .and_then(Value::as_u64)
        .map_or(h, |v| v as usize);
    (h, kv)
}

/// One tensor's GGUF bytes: (type, bytes, copied, fallback_from, rel_err).
type Encoded = (GgmlType, Vec<u8>, bool, Option<GgmlType>, f64);

/// Decides one tensor's type and bytes.
fn encode_tensor_for_gguf(
    t: &TensorView<'_>,
    ty: ExportType,
    recorded: Option<f64>,
) -> Result<Encoded> {
    let name = t.name();
    let shape = t.shape();
    let cols = shape.last().copied().unwrap_or(1) as usize;
    let stages = t.stages()?;
    let one_d = shape.len() <= 1 || is_norm(name);
    if !one_d {
        if let [st] = stages.as_slice() {
            let copy_as = match *st {
                Stage::Ggml { type_id } => GgmlType::from_id(type_id),
                Stage::Raw { dtype } => match dtype {
                    Dtype::F16 => Some(GgmlType::F16),
                    Dtype::BF16 => Some(GgmlType::BF16),
                    Dtype::F32 => Some(GgmlType::F32),
                    _ => None,
                },
                _ => None,
            };
            if let Some(c) = copy_as {
                // A fixed type is compared after its block-size fallback, so blocks that
                // convert already fell back to are still copied.
                let (wanted, from) = match ty {
                    ExportType::Auto => (true, None),
                    ExportType::Fixed(f) => {
                        let eff = block_fallback(f, cols);
                        (eff == c, (eff != f).then_some(f))
                    }
                };
                if wanted {
                    let sec = t
                        .section(0)
                        .ok_or_else(|| Error::InvalidArgument(format!("{name}: no section")))?;
                    return Ok((c, sec.bytes().to_vec(), true, from, 0.0));
                }
            }
        }
    }
    let x = t.to_f32_vec()?;
    if one_d {
        let b: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
        return Ok((GgmlType::F32, b, false, None, 0.0));
    }
    match ty {
        ExportType::Fixed(want) => {
            let got = block_fallback(want, cols);
            let bytes = encode_rows(name, got, &x, cols)?;
            let e = rel_err_of(name, got, &bytes, &x, cols)?;
            Ok((got, bytes, false, (got != want).then_some(want), e))
        }
        ExportType::Auto => {
            let Some(target) = recorded else {
                let got = block_fallback(GgmlType::Q8_0, cols);
                let bytes = encode_rows(name, got, &x, cols)?;
                let e = rel_err_of(name, got, &bytes, &x, cols)?;
                return Ok((got, bytes, false, None, e));
            };
            let mut cands: Vec<GgmlType> = GgmlType::ALL
                .iter()
                .copied()
                .filter(|c| cols.is_multiple_of(c.block_size()) && *c != GgmlType::BF16)
                .collect();
            cands.sort_by(|a, b| bpw(*a).total_cmp(&bpw(*b)).then(a.id().cmp(&b.id())));
            for c in cands {
                let bytes = encode_rows(name, c, &x, cols)?;
                let e = rel_err_of(name, c, &bytes, &x, cols)?;
                if e <= target || c == GgmlType::F32 {
                    return Ok((c, bytes, false, None, e));
                }
            }
            Err(Error::InvalidArgument(format!("{name}: no GGUF type fits")))
        }
    }
}

fn spool_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::io(path, e)
}

/// Exports `f` (opened from `source`, which is protected from being overwritten) as GGUF.
pub fn export_gguf(
    f: &TpkFile,
    source: Option<&Path>,
    opts: &GgufExportOptions,
    on_event: &mut dyn FnMut(&GgufExportEvent<'_>),
) -> Result<GgufExportReport> {
    if !opts.alignment.is_power_of_two() {
        return Err(Error::InvalidArgument(format!(
            "alignment {} is not a power of two",
            opts.alignment
        )));
    }
    let meta = f.metadata().unwrap_or(Value::Null);
    let mut warnings = Vec::new();
    let config = meta.get("config").filter(|c| c.is_object());
    let runtime = match config {
        None => {
            warnings.push("no config in the metadata: tensors only, no runtime metadata written (llama.cpp cannot load this file)".into());
            None
        }
        Some(cfg) => {
            let name = cfg
                .get("_name_or_path")
                .and_then(Value::as_str)
                .unwrap_or("tenpak export");
            match llama_arch_kv(cfg, name, 0, opts.alignment) {
                Ok(kv) => {
                    let arch = kv
                        .iter()
                        .find(|(k, _)| k == "general.architecture")
                        .and_then(|(_, v)| match v {
                            GgufValue::String(s) => Some(s.clone()),
                            _ => None,
                        })
                        .unwrap_or_default();
                    let (heads, kv_heads) = qk_heads(cfg);
                    Some(Runtime {
                        kv,
                        permute: arch_needs_qk_permute(&arch),
                        heads,
                        kv_heads,
                    })
                }
                Err(e) => {
                    warnings.push(format!(
                        "{e}: tensors only with HF names, no runtime metadata written"
                    ));
                    None
                }
            }
        }
    };

    let out = &opts.output;
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut spool = tempfile::tempfile_in(&dir).map_err(spool_err(&dir))?;
    let total = f.tensor_count();
    let mut entries: Vec<TensorExport> = Vec::with_capacity(total);
    let mut specs: Vec<GgufTensorSpec> = Vec::with_capacity(total);
    let mut vocab_rows: Option<u32> = None;
    for (index, t) in f.tensors().enumerate() {
        let name = t.name();
        let gguf_name = if runtime.is_some() {
            match hf_to_gguf_name(name) {
                Some(g) => g,
                None => {
                    warnings.push(format!("{name}: no GGUF counterpart, skipped"));
                    continue;
                }
            }
        } else {
            name.to_string()
        };
        if gguf_name.len() > MAX_TENSOR_NAME {
            return Err(Error::InvalidArgument(format!(
                "{name}: name longer than GGUF's {MAX_TENSOR_NAME} bytes"
            )));
        }
        if gguf_name == "token_embd.weight" {
            vocab_rows = t.shape().first().and_then(|&r| u32::try_from(r).ok());
        }
        let (ty, mut bytes, copied, fallback_from, rel_err) =
            encode_tensor_for_gguf(&t, opts.ty, recorded_rel_mse(&meta, name))?;
        if let Some(rt) = runtime.as_ref().filter(|r| r.permute) {
            if let Some(p) = qk_proj(name) {
                let heads = if p == QkProj::Q {
                    rt.heads
                } else {
                    rt.kv_heads
                };
                let rows = t.shape().first().copied().unwrap_or(1) as usize;
                let rb = bytes.len().checked_div(rows).unwrap_or(0);
                bytes = permute_qk_rows(&bytes, rows, rb, heads)?;
            }
        }
        spool.write_all(&bytes).map_err(spool_err(&dir))?;
        specs.push(GgufTensorSpec {
            name: gguf_name.clone(),
            dims: t.shape().iter().rev().copied().collect(),
            ggml_type: ty.id(),
            n_bytes: bytes.len() as u64,
        });
        entries.push(TensorExport {
            name: name.to_string(),
            gguf_name,
            ty,
            copied,
            fallback_from,
            rel_err,
            elements: t.n_elements(),
        });
        on_event(&GgufExportEvent::Tensor {
            index,
            total,
            entry: entries.last().expect("just pushed"),
        });
    }

    // Majority quantized type by elements (2-D tensors), for general.file_type.
    let mut counts: Vec<(GgmlType, u64)> = Vec::new();
    for e in &entries {
        if e.gguf_name.contains("norm") {
            continue;
        }
        match counts.iter_mut().find(|(t, _)| *t == e.ty) {
            Some(c) => c.1 += e.elements,
            None => counts.push((e.ty, e.elements)),
        }
    }
    let major = counts
        .iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.id().cmp(&a.0.id())))
        .map_or(GgmlType::F32, |c| c.0);

    let mut kv: Vec<(String, GgufValue)> = Vec::new();
    let mut file_type = None;
    match runtime {
        Some(rt) => {
            let ft = llama_file_type(major);
            file_type = Some(ft);
            for (k, v) in rt.kv {
                if k == "general.file_type" {
                    kv.push((k, GgufValue::U32(ft)));
                } else {
                    kv.push((k, v));
                }
            }
            match meta.get("tokenizer") {
                Some(tok) => {
                    let n_vocab = vocab_rows.or_else(|| {
                        config
                            .and_then(|c| c.get("vocab_size"))
                            .and_then(Value::as_u64)
                            .and_then(|v| u32::try_from(v).ok())
                    });
                    match tokenizer_kv(tok, meta.get("tokenizer_config"), n_vocab) {
                        Ok(t) => kv.extend(t),
                        Err(e) => warnings.push(format!("tokenizer not exported: {e}")),
                    }
                }
                None => warnings.push("no tokenizer in the metadata: none exported".into()),
            }
        }
        None => {
            kv.push(("general.alignment".into(), GgufValue::U32(opts.alignment)));
        }
    }

    let protected: Vec<&Path> = source.into_iter().collect();
    let mut w = GgufWriter::create(out, &kv, &specs, &protected)?;
    spool.seek(SeekFrom::Start(0)).map_err(spool_err(&dir))?;
    let mut buf = Vec::new();
    for s in &specs {
        let n = usize::try_from(s.n_bytes)
            .map_err(|_| Error::InvalidArgument("tensor too large".into()))?;
        buf.clear();
        buf.resize(n, 0);
        spool.read_exact(&mut buf).map_err(spool_err(&dir))?;
        w.write_tensor(&s.name, &buf)?;
    }
    w.finish()?;
    Ok(GgufExportReport {
        tensors: entries,
        file_type,
        warnings,
    })
}
