//! `tpk export --to safetensors`: a `.tpk` file back to a Hugging Face model folder.
//!
//! Every tensor is decoded on its own (`dequantize_into` and friends) and streamed into the
//! converters' [`SafetensorsWriter`], so memory stays near one tensor whatever the model's
//! size. The side files a runtime needs next to the weights (`config.json`, the tokenizer
//! files, `generation_config.json`) are rebuilt from the metadata the converter stored.
//! Every output file is written to a temporary name and renamed into place, and the input
//! `.tpk` is never an output path.

use std::io::Write;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use serde_json::Value;
use tenpak_converters::safetensors::{Dtype as StDtype, SafetensorsWriter, TensorPlan};
use zerocopy::IntoBytes;

use crate::error::{Error, Result};
use crate::format::TpkFile;

/// The element type written to the exported safetensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportDtype {
    /// IEEE single precision: the decoded values exactly.
    F32,
    /// IEEE half precision, rounded to nearest even.
    F16,
    /// bfloat16, rounded to nearest even.
    BF16,
}

impl ExportDtype {
    fn st(self) -> StDtype {
        match self {
            ExportDtype::F32 => StDtype::F32,
            ExportDtype::F16 => StDtype::F16,
            ExportDtype::BF16 => StDtype::BF16,
        }
    }
}

/// What to export and where.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// The `.tpk` file to read.
    pub input: PathBuf,
    /// The folder to write (created if missing).
    pub out_dir: PathBuf,
    /// Element type of the written tensors.
    pub dtype: ExportDtype,
    /// Split into HF-style shards of at most this many bytes of tensor data (a tensor larger
    /// than the limit gets a shard of its own); `None` writes one `model.safetensors`.
    pub max_shard_bytes: Option<u64>,
}

/// What an export wrote.
#[derive(Clone, Debug)]
pub struct ExportSummary {
    /// Every file written: the shards in order, the index if any, then the side files.
    pub files: Vec<PathBuf>,
    /// Tensors written.
    pub tensors: usize,
    /// Bytes of tensor data written.
    pub tensor_bytes: u64,
}

/// Metadata keys holding the side files, and the file names they are written back to.
pub const SIDE_FILES: &[(&str, &str)] = &[
    ("config", "config.json"),
    ("tokenizer", "tokenizer.json"),
    ("tokenizer_config", "tokenizer_config.json"),
    ("generation_config", "generation_config.json"),
];

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename, so a
/// reader never sees a half-written file.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let io = |e| Error::io(path, e);
    let mut tmp = tempfile::Builder::new()
        .prefix(".tenpak-export-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// Decodes every tensor of `opts.input` and writes a Hugging Face model folder.
///
/// `on_tensor(index, total, name)` is called after each tensor is written (for progress).
pub fn export_safetensors(
    opts: &ExportOptions,
    on_tensor: &mut dyn FnMut(usize, usize, &str),
) -> Result<ExportSummary> {
    let file = TpkFile::open(&opts.input)?;
    let meta = file.metadata()?;
    std::fs::create_dir_all(&opts.out_dir).map_err(|e| Error::io(&opts.out_dir, e))?;

    let mut plan = Vec::with_capacity(file.tensor_count());
    let mut tensor_bytes = 0u64;
    for t in file.tensors() {
        let shape = t
            .shape()
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<std::result::Result<Vec<usize>, _>>()
            .map_err(|_| Error::ShapeOverflow {
                tensor: t.name().to_string(),
                shape: t.shape().to_vec(),
            })?;
        let size = opts.dtype.st().size_bytes() as u64;
        tensor_bytes = t
            .n_elements()
            .checked_mul(size)
            .and_then(|b| tensor_bytes.checked_add(b))
            .ok_or_else(|| Error::ShapeOverflow {
                tensor: t.name().to_string(),
                shape: t.shape().to_vec(),
            })?;
        plan.push(TensorPlan {
            name: t.name().to_string(),
            dtype: opts.dtype.st(),
            shape,
        });
    }
    // The input is never an output path, whatever the folder.
    let protected = vec![opts.input.clone()];
    for (_, fname) in SIDE_FILES {
        if same_file(&opts.out_dir.join(fname), &opts.input) {
            return Err(Error::InvalidArgument(format!(
                "{}: output would overwrite the input",
                opts.out_dir.join(fname).display()
            )));
        }
    }
    let mut w = SafetensorsWriter::create(&opts.out_dir, opts.max_shard_bytes, &protected, plan)?;

    let total = file.tensor_count();
    let mut f32buf: Vec<f32> = Vec::new();
    let mut f16buf: Vec<f16> = Vec::new();
    let mut bf16buf: Vec<bf16> = Vec::new();
    for (i, t) in file.tensors().enumerate() {
        let n = usize::try_from(t.n_elements()).map_err(|_| Error::ShapeOverflow {
            tensor: t.name().to_string(),
            shape: t.shape().to_vec(),
        })?;
        match opts.dtype {
            ExportDtype::F32 => {
                f32buf.clear();
                f32buf.resize(n, 0.0);
                t.dequantize_into(&mut f32buf)?;
                w.write_tensor(t.name(), f32buf.as_bytes())?;
            }
            ExportDtype::F16 => {
                f16buf.clear();
                f16buf.resize(n, f16::ZERO);
                t.dequantize_f16_into(&mut f16buf)?;
                w.write_tensor(t.name(), f16buf.as_bytes())?;
            }
            ExportDtype::BF16 => {
                bf16buf.clear();
                bf16buf.resize(n, bf16::ZERO);
                t.dequantize_bf16_into(&mut bf16buf)?;
                w.write_tensor(t.name(), bf16buf.as_bytes())?;
            }
        }
        on_tensor(i, total, t.name());
    }
    let mut files = w.finish()?;
    for f in &files {
        make_readable(f)?;
    }

    for (key, fname) in SIDE_FILES {
        if let Some(v) = meta.get(*key) {
            if v.is_null() {
                continue;
            }
            let text = serde_json::to_string_pretty(v)
                .map_err(|e| Error::Metadata(format!("{key}: {e}")))?;
            let path = opts.out_dir.join(fname);
            write_atomic(&path, text.as_bytes())?;
            make_readable(&path)?;
            files.push(path);
        }
    }
    Ok(ExportSummary {
        files,
        tensors: total,
        tensor_bytes,
    })
}

/// Temporary files are created owner-only; a model folder is meant to be shared like any
/// file the user writes, so the final files get the usual 0644.
fn make_readable(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
            .map_err(|e| Error::io(path, e))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Whether two paths name the same existing file (after resolving links).
fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// The side-file keys present in a metadata object (for reports).
pub fn side_keys(meta: &Value) -> Vec<&'static str> {
    SIDE_FILES
        .iter()
        .filter(|(k, _)| meta.get(*k).is_some_and(|v| !v.is_null()))
        .map(|(k, _)| *k)
        .collect()
}
