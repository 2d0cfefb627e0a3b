//! Command-line parsing and the subcommands. Only this layer prints.

mod convert;
mod eval;
mod export;
mod gguf;
mod inspect;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};

/// tpk: compress LLM weights into .tpk files, audit them, and move them to other runtimes.
#[derive(Parser, Debug)]
#[command(name = "tpk", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show where every bit goes: bits per weight per tensor, per codec, per role and in total.
    Inspect {
        /// The .tpk file.
        file: PathBuf,
        /// Print the stable JSON report (schema tenpak.inspect/1) instead of text.
        #[arg(long)]
        json: bool,
        /// List every tensor.
        #[arg(long)]
        tensors: bool,
        /// Order of the tensor list.
        #[arg(long, value_enum, default_value_t = SortKey::Name)]
        sort: SortKey,
    },
    /// Compress a safetensors model into a .tpk file.
    Convert(convert::Args),
    /// Write a .tpk file as GGUF (for llama.cpp) or as a Hugging Face safetensors folder.
    Export(export::Args),
    /// Measure quality: perplexity, and with --baseline KL divergence and top-1 agreement.
    Eval(eval::Args),
    /// Check every section's CRC32; names the first bad section.
    Verify {
        /// The .tpk file.
        file: PathBuf,
    },
    /// Convert a GGUF file into a .tpk file or a safetensors folder.
    Import(gguf::ImportArgs),
}

/// Tensor list order for `inspect`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SortKey {
    /// Highest bits per weight first.
    Bpw,
    /// Largest first.
    Size,
    /// By name.
    Name,
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Inspect {
            file,
            json,
            tensors,
            sort,
        } => inspect::run(&file, json, tensors, sort),
        Command::Verify { file } => inspect::verify(&file),
        Command::Convert(a) => convert::run(a),
        Command::Export(a) => export::run(a),
        Command::Import(a) => gguf::import_cli(&a),
        Command::Eval(a) => eval::run(a),
    }
}

/// Writes to stdout, passing a closed pipe up as an error that `main` treats as success.
pub fn out(text: &str) -> Result<()> {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    o.write_all(text.as_bytes())?;
    o.flush()?;
    Ok(())
}

/// Sets the worker thread count (all cores when `None`).
pub fn set_threads(n: Option<usize>) -> Result<()> {
    if let Some(n) = n {
        if n == 0 {
            anyhow::bail!("--threads must be at least 1");
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()?;
    }
    Ok(())
}
