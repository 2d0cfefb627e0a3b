//! GGUF -> `.tpk` or safetensors: bring llama.cpp files back to HF names, row order and
//! config files.
//!
//! Every supported ggml type is decoded to f32 with the Q/K RoPE permutation undone. With
//! `keep_blocks`, quantized tensors keep their ggml blocks (rows moved bit-exact) as a single
//! ggml stage, so nothing is lost.

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};
use tenpak_converters::gguf::{
    arch_needs_qk_permute, config_from_gguf, gguf_to_hf_name, qk_proj, tokenizer_config_from_gguf,
    tokenizer_json_from_gguf, unpermute_qk_rows, GgufFile, GgufTensorInfo, QkProj,
};
use tenpak_converters::safetensors::{Dtype as StDtype, SafetensorsWriter, TensorPlan};

use crate::codec::ggml::{self, GgmlType};
use crate::codec::staged::{self, Stage};
use crate::error::{Error, Result};
use crate::format::{CodecId, Dtype, ElemType, SectionKind, TensorEntry, TpkWriter, WriterOptions};

/// How one tensor was imported.
#[derive(Clone, Debug)]
pub struct TensorImport {
    /// Name in the GGUF file.
    pub gguf_name: String,
    /// HF name written.
    pub name: String,
    /// GGUF type read.
    pub ty: GgmlType,
    /// Whether the ggml blocks were kept as they are.
    pub kept_blocks: bool,
    /// Whether the Q/K row permutation was undone.
    pub unpermuted: bool,
}

/// What an import produced.
#[derive(Clone, Debug, Default)]
pub struct GgufImportReport {
    /// One entry per tensor.
    pub tensors: Vec<TensorImport>,
    /// Side files / metadata keys rebuilt (config, tokenizer, tokenizer_config).
    pub rebuilt: Vec<String>,
    /// Things the user should know.
    pub warnings: Vec<String>,
}

struct Prepared {
    gguf_name: String,
    name: String,
    ty: GgmlType,
    shape: Vec<u64>,
    unpermuted: bool,
}

struct Source {
    file: GgufFile,
    side: Vec<(&'static str, Value)>,
    heads: Option<(usize, usize)>,
    warnings: Vec<String>,
    tensors: Vec<Prepared>,
}

fn open(path: &Path) -> Result<Source> {
    let file = GgufFile::open(path)?;
    let mut warnings = Vec::new();
    let mut side = Vec::new();
    let arch = file
        .get_str("general.architecture")
        .unwrap_or("")
        .to_string();
    let permute = arch_needs_qk_permute(&arch);
    let mut heads = None;
    match config_from_gguf(&file) {
        Ok(c) => {
            let h = c.get("num_attention_heads").and_then(Value::as_u64);
            let kv = c.get("num_key_value_heads").and_then(Value::as_u64).or(h);
            if let (Some(h), Some(kv)) = (h, kv) {
                heads = Some((h as usize, kv as usize));
            }
            side.push(("config", c));
        }
        Err(e) => warnings.push(format!("no config rebuilt: {e}")),
    }
    match tokenizer_json_from_gguf(&file) {
        Ok(t) => side.push(("tokenizer", t)),
        Err(e) => warnings.push(format!("no tokenizer rebuilt: {e}")),
    }
    match tokenizer_config_from_gguf(&file) {
        Ok(t) => side.push(("tokenizer_config", t)),
        Err(e) => warnings.push(format!("no tokenizer_config rebuilt: {e}")),
    }
    let mut tensors = Vec::new();
    for info in file.tensors() {
        let ty = GgmlType::from_id(info.ggml_type).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{}: ggml type {} is not supported",
                info.name, info.ggml_type
            ))
        })?;
        let name = gguf_to_hf_name(&info.name).unwrap_or_else(|| info.name.clone());
        let unpermuted = permute && qk_proj(&info.name).is_some();
        if unpermuted && heads.is_none() {
            return Err(Error::InvalidArgument(format!(
                "{}: Q/K rows need head counts, but the file has no usable config",
                info.name
            )));
        }
        tensors.push(Prepared {
            gguf_name: info.name.clone(),
            name,
            ty,
            shape: info.shape_rowmajor(),
            unpermuted,
        });
    }
    Ok(Source {
        file,
        side,
        heads,
        warnings,
        tensors,
    })
}

/// The tensor's bytes in HF row order.
fn hf_bytes(src: &Source, info: &GgufTensorInfo, p: &Prepared) -> Result<Vec<u8>> {
    let data = src.file.tensor_data(info);
    if !p.unpermuted {
        return Ok(data.to_vec());
    }
    let (h, kv) = src.heads.unwrap_or((0, 0));
    let heads = if qk_proj(&info.name) == Some(QkProj::Q) {
        h
    } else {
        kv
    };
    let rows = p.shape.first().copied().unwrap_or(1) as usize;
    let rb = data.len().checked_div(rows).unwrap_or(0);
    Ok(unpermute_qk_rows(data, rows, rb, heads)?)
}

fn decode(name: &str, ty: GgmlType, bytes: &[u8], shape: &[u64]) -> Result<Vec<f32>> {
    let n = usize::try_from(shape.iter().product::<u64>())
        .map_err(|_| Error::InvalidArgument(format!("{name}: too large")))?;
    let cols = shape.last().copied().unwrap_or(1) as usize;
    let mut out = vec![0f32; n];
    if n == 0 || cols == 0 {
        return Ok(out);
    }
    let rb = ggml::row_bytes(ty, cols)
        .ok_or_else(|| Error::InvalidArgument(format!("{name}: rows of {cols} as {ty}")))?;
    if bytes.len() != (n / cols) * rb {
        return Err(Error::InvalidArgument(format!("{name}: data size")));
    }
    for (src, dst) in bytes.chunks_exact(rb).zip(out.chunks_exact_mut(cols)) {
        ggml::dequantize_row(ty, src, dst)
            .map_err(|e| Error::InvalidArgument(format!("{name}: {e}")))?;
    }
    Ok(out)
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Imports a GGUF file into a `.tpk` file; `keep_blocks` keeps quantized tensors' ggml blocks.
pub fn import_gguf_to_tpk(path: &Path, out: &Path, keep_blocks: bool) -> Result<GgufImportReport> {
    let src = open(path)?;
    let mut meta = Map::new();
    meta.insert(
        "tenpak".into(),
        json!({"version": env!("CARGO_PKG_VERSION"), "command": "import"}),
    );
    meta.insert(
        "source".into(),
        json!({"format": "gguf", "version": src.file.version()}),
    );
    let mut rebuilt = Vec::new();
    for (k, v) in &src.side {
        meta.insert((*k).to_string(), v.clone());
        rebuilt.push((*k).to_string());
    }
    let mut w = TpkWriter::create_with(
        out,
        WriterOptions {
            protected: vec![path.to_path_buf()],
        },
    )?;
    w.set_metadata(&Value::Object(meta))?;
    let mut report = Vec::new();
    for (info, p) in src.file.tensors().iter().zip(&src.tensors) {
        let bytes = hf_bytes(&src, info, p)?;
        let keep = keep_blocks && p.ty.block_size() > 1;
        let (stage, kind, elem, data, dtype) = if keep {
            (
                Stage::Ggml { type_id: p.ty.id() },
                SectionKind::GgmlBlocks,
                ElemType::U8,
                bytes,
                Dtype::F32,
            )
        } else {
            let v = decode(&p.name, p.ty, &bytes, &p.shape)?;
            let dtype = match p.ty {
                GgmlType::F16 => Dtype::F16,
                GgmlType::BF16 => Dtype::BF16,
                _ => Dtype::F32,
            };
            (
                Stage::Raw { dtype: Dtype::F32 },
                SectionKind::Raw,
                ElemType::F32,
                f32_bytes(&v),
                dtype,
            )
        };
        let id = w.add_section(kind, elem, &data)?;
        w.add_tensor(TensorEntry {
            name: p.name.clone(),
            shape: p.shape.clone(),
            source_dtype: dtype,
            codec: CodecId::Staged,
            params: staged::encode_params(&[stage]),
            sections: vec![id],
        })?;
        report.push(TensorImport {
            gguf_name: p.gguf_name.clone(),
            name: p.name.clone(),
            ty: p.ty,
            kept_blocks: keep,
            unpermuted: p.unpermuted,
        });
    }
    w.finish()?;
    Ok(GgufImportReport {
        tensors: report,
        rebuilt,
        warnings: src.warnings,
    })
}

/// Imports a GGUF file into a folder of F32 safetensors plus config/tokenizer JSON files.
pub fn import_gguf_to_safetensors(path: &Path, out_dir: &Path) -> Result<GgufImportReport> {
    let src = open(path)?;
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let plan: Vec<TensorPlan> = src
        .tensors
        .iter()
        .map(|p| TensorPlan {
            name: p.name.clone(),
            dtype: StDtype::F32,
            shape: p.shape.iter().map(|&d| d as usize).collect(),
        })
        .collect();
    let protected: Vec<PathBuf> = vec![path.to_path_buf()];
    let mut w = SafetensorsWriter::create(out_dir, None, &protected, plan)?;
    let mut report = Vec::new();
    for (info, p) in src.file.tensors().iter().zip(&src.tensors) {
        let bytes = hf_bytes(&src, info, p)?;
        let v = decode(&p.name, p.ty, &bytes, &p.shape)?;
        w.write_tensor_f32(&p.name, &v)?;
        report.push(TensorImport {
            gguf_name: p.gguf_name.clone(),
            name: p.name.clone(),
            ty: p.ty,
            kept_blocks: false,
            unpermuted: p.unpermuted,
        });
    }
    w.finish()?;
    let mut rebuilt = Vec::new();
    for (k, v) in &src.side {
        let file = out_dir.join(format!("{k}.json"));
        let text = serde_json::to_string_pretty(v).map_err(|e| Error::Metadata(e.to_string()))?;
        std::fs::write(&file, text).map_err(|e| Error::io(&file, e))?;
        rebuilt.push(format!("{k}.json"));
    }
    Ok(GgufImportReport {
        tensors: report,
        rebuilt,
        warnings: src.warnings,
    })
}
