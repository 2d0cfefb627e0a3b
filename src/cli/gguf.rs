//! `tpk export --to gguf` and `tpk import`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use tenpak::export::gguf::{export_gguf, ExportType, GgufExportOptions};
use tenpak::import::gguf::{import_gguf_to_safetensors, import_gguf_to_tpk, GgufImportReport};
use tenpak::TpkFile;

use super::out;

/// What the GGUF export needs from `tpk export`'s arguments.
pub struct GgufExportArgs<'a> {
    /// The .tpk file.
    pub file: &'a std::path::Path,
    /// The .gguf file to write.
    pub output: &'a std::path::Path,
    /// `auto` or a ggml type name.
    pub ty: &'a str,
    /// Tensor data alignment (a power of two).
    pub alignment: u32,
}

/// Target format of `tpk import`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ImportTarget {
    /// A .tpk file.
    Tpk,
    /// A folder with model.safetensors (F32) and the config/tokenizer JSON files.
    Safetensors,
}

/// Arguments of `tpk import`.
#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// The .gguf file.
    pub file: PathBuf,
    /// The .tpk file or the safetensors folder to write.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ImportTarget::Tpk)]
    pub to: ImportTarget,
    /// Keep quantized tensors' ggml blocks bit-exact (.tpk only) instead of decoding to f32.
    #[arg(long)]
    pub keep_blocks: bool,
}

/// Runs the GGUF export and prints what was chosen.
pub fn export_gguf_cli(args: &GgufExportArgs<'_>) -> Result<()> {
    let Some(ty) = ExportType::parse(args.ty) else {
        bail!("--type {}: not auto or a known ggml type", args.ty);
    };
    let f = TpkFile::open(args.file).with_context(|| args.file.display().to_string())?;
    let opts = GgufExportOptions {
        output: args.output.to_path_buf(),
        ty,
        alignment: args.alignment,
    };
    let rep = export_gguf(&f, Some(args.file), &opts, &mut |_| {})?;
    let mut s = String::new();
    let mut by_type: Vec<(String, usize, u64)> = Vec::new();
    for t in &rep.tensors {
        let key = t.ty.to_string();
        match by_type.iter_mut().find(|(k, _, _)| *k == key) {
            Some(e) => {
                e.1 += 1;
                e.2 += t.elements;
            }
            None => by_type.push((key, 1, t.elements)),
        }
    }
    s += &format!(
        "wrote {} ({} tensors)\n",
        args.output.display(),
        rep.tensors.len()
    );
    for (k, n, e) in &by_type {
        s += &format!("  {k:<7} {n:>4} tensors {e:>12} weights\n");
    }
    let copied = rep.tensors.iter().filter(|t| t.copied).count();
    s += &format!("  {copied} tensors copied bit-exact\n");
    for t in rep.tensors.iter().filter(|t| t.fallback_from.is_some()) {
        if let Some(f) = t.fallback_from {
            s += &format!("  fallback: {} {} -> {}\n", t.name, f, t.ty);
        }
    }
    if let Some(ft) = rep.file_type {
        s += &format!("  general.file_type {ft}\n");
    }
    for w in &rep.warnings {
        s += &format!("warning: {w}\n");
    }
    out(&s)
}

fn print_import(rep: &GgufImportReport, target: &std::path::Path) -> Result<()> {
    let mut s = format!(
        "wrote {} ({} tensors)\n",
        target.display(),
        rep.tensors.len()
    );
    let kept = rep.tensors.iter().filter(|t| t.kept_blocks).count();
    let unperm = rep.tensors.iter().filter(|t| t.unpermuted).count();
    s += &format!("  {kept} tensors kept as ggml blocks, {unperm} Q/K tensors un-permuted\n");
    if !rep.rebuilt.is_empty() {
        s += &format!("  rebuilt: {}\n", rep.rebuilt.join(", "));
    }
    for w in &rep.warnings {
        s += &format!("warning: {w}\n");
    }
    out(&s)
}

/// Runs `tpk import`.
pub fn import_cli(args: &ImportArgs) -> Result<()> {
    let rep = match args.to {
        ImportTarget::Tpk => import_gguf_to_tpk(&args.file, &args.output, args.keep_blocks)?,
        ImportTarget::Safetensors => {
            if args.keep_blocks {
                bail!("--keep-blocks needs --to tpk");
            }
            import_gguf_to_safetensors(&args.file, &args.output)?
        }
    };
    print_import(&rep, &args.output)
}
