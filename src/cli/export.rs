//! `tpk export`.

use std::path::PathBuf;

use anyhow::Result;
use clap::ValueEnum;
use tenpak::convert::export_st::{export_safetensors, ExportDtype, ExportOptions};

use super::out;

/// Formats `tpk export` can write.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Target {
    /// A Hugging Face folder: model.safetensors (or shards + index) and the side files.
    Safetensors,
    /// A GGUF v3 file that llama.cpp loads (LLaMA-family metadata and tokenizer included).
    Gguf,
}

/// Element types of the exported weights.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DtypeArg {
    /// Single precision: the decoded values exactly.
    F32,
    /// Half precision, rounded to nearest even.
    F16,
    /// bfloat16, rounded to nearest even.
    Bf16,
}

/// Arguments of `tpk export`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The .tpk file.
    pub input: PathBuf,
    /// Output format.
    #[arg(long, value_enum)]
    pub to: Target,
    /// Element type of the written weights (safetensors only; default f16).
    #[arg(long, value_enum)]
    pub dtype: Option<DtypeArg>,
    /// Output: a folder for safetensors (created if missing), a file for gguf. Files are
    /// replaced atomically, never the input.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Split the weights into shards of at most this many MiB, plus an index (safetensors only).
    #[arg(long, value_name = "N")]
    pub max_shard_mb: Option<u64>,
    /// GGUF tensor type (gguf only): auto (copy ggml blocks, else the smallest type no worse
    /// than the tpk codec) or f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, q4_k,
    /// q5_k, q6_k, iq4_nl, iq4_xs.
    #[arg(long = "type", value_name = "TYPE")]
    pub ty: Option<String>,
    /// GGUF tensor data alignment, a power of two (gguf only; default 32).
    #[arg(long)]
    pub alignment: Option<u32>,
    /// Worker threads for decoding (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

pub fn run(a: Args) -> Result<()> {
    super::set_threads(a.threads)?;
    let max_shard_bytes = match a.max_shard_mb {
        Some(0) => anyhow::bail!("--max-shard-mb must be at least 1"),
        Some(mb) => Some(
            mb.checked_mul(1 << 20)
                .ok_or_else(|| anyhow::anyhow!("--max-shard-mb {mb} is too large"))?,
        ),
        None => None,
    };
    match a.to {
        Target::Gguf if a.dtype.is_some() || a.max_shard_mb.is_some() => {
            anyhow::bail!("--dtype and --max-shard-mb apply to --to safetensors only")
        }
        Target::Safetensors if a.ty.is_some() || a.alignment.is_some() => {
            anyhow::bail!("--type and --alignment apply to --to gguf only")
        }
        _ => {}
    }
    let dtype = match a.dtype.unwrap_or(DtypeArg::F16) {
        DtypeArg::F32 => ExportDtype::F32,
        DtypeArg::F16 => ExportDtype::F16,
        DtypeArg::Bf16 => ExportDtype::BF16,
    };
    match a.to {
        Target::Gguf => super::gguf::export_gguf_cli(&super::gguf::GgufExportArgs {
            file: &a.input,
            output: &a.output,
            ty: a.ty.as_deref().unwrap_or("auto"),
            alignment: a.alignment.unwrap_or(32),
        }),
        Target::Safetensors => {
            let opts = ExportOptions {
                input: a.input,
                out_dir: a.output,
                dtype,
                max_shard_bytes,
            };
            let s = export_safetensors(&opts, &mut |i, total, name| {
                eprintln!("[{}/{total}] {name}", i + 1);
            })?;
            let mut text = format!(
                "exported {} tensors ({} bytes of weights) to {}\n",
                s.tensors,
                s.tensor_bytes,
                opts.out_dir.display()
            );
            for f in &s.files {
                text.push_str(&format!("  {}\n", f.display()));
            }
            out(&text)
        }
    }
}
