//! `tpk convert`.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result};
use tenpak::convert::{convert, ConvertOptions, Event, Policy};

use super::out;

/// Arguments of `tpk convert`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A .safetensors file, a model.safetensors.index.json, or a folder holding either.
    pub input: PathBuf,
    /// The .tpk file to write (replaced atomically; never one of the inputs).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Codec: a preset (int4_g32, int8, int4_opt, int4_residual, pocketllm, tenpak_x, f16,
    /// q4_k, ...) or a stage string such as "lowrank:r=32+vq:d=4,k=256+int:b=4,g=32".
    #[arg(short, long, default_value = "tenpak_x")]
    pub codec: String,
    /// Store tensors whose names match this glob as they are (repeatable).
    #[arg(long, value_name = "PATTERN")]
    pub keep: Vec<String>,
    /// Use SPEC for tensors whose names match PATTERN (repeatable; first match wins).
    #[arg(long, value_name = "PATTERN=SPEC")]
    pub codec_for: Vec<String>,
    /// Worker threads (default: all cores). The output is the same for any value.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Convert tensors that hold NaN or infinity instead of refusing them.
    #[arg(long)]
    pub allow_nonfinite: bool,
    /// A JSON object stored under "user" in the file's metadata.
    #[arg(long, value_name = "JSON")]
    pub user_meta: Option<String>,
}

fn human(b: f64) -> String {
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.2} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{b:.0} B")
    }
}

pub fn run(a: Args) -> Result<()> {
    super::set_threads(a.threads)?;
    let user = match &a.user_meta {
        Some(s) => Some(serde_json::from_str(s).context("--user-meta is not valid JSON")?),
        None => None,
    };
    let policy = Policy::new(&a.codec, &a.keep, &a.codec_for)?;
    let opts = ConvertOptions {
        input: a.input,
        output: a.output.clone(),
        policy,
        allow_nonfinite: a.allow_nonfinite,
        user,
    };
    let tty = std::io::stderr().is_terminal();
    let mut bar: Option<indicatif::ProgressBar> = None;
    let mut total = 0usize;
    // The whole conversion runs on a worker of the pool, so the codecs' parallel loops are
    // nested rayon calls (run inline or stolen) instead of jobs injected from outside the
    // pool, each of which parks and wakes a thread: k-means++ seeding alone makes a few
    // hundred such calls per tensor.
    let mut on_event = |ev: &Event<'_>| match ev {
        Event::Start {
            tensors,
            source_bytes,
        } => {
            total = *tensors;
            if tty {
                let b = indicatif::ProgressBar::new(*source_bytes);
                b.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{bar:30} {bytes}/{total_bytes} {msg} [{elapsed} eta {eta}]",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                bar = Some(b);
            } else {
                eprintln!(
                    "converting {tensors} tensors, {} of source weights",
                    human(*source_bytes as f64)
                );
            }
        }
        Event::Tensor {
            index,
            name,
            codec,
            source_bytes,
            stored_bytes,
            rel_mse,
            note,
        } => {
            if let Some(b) = &bar {
                b.inc(*source_bytes);
                b.set_message(format!("{}/{total} tensors", index + 1));
                if let Some(n) = note {
                    b.println(format!("note: {name}: {n}"));
                }
            } else {
                eprintln!(
                    "[{}/{total}] {name} {codec} {} -> {} rel-mse {rel_mse:.3e}{}",
                    index + 1,
                    human(*source_bytes as f64),
                    human(*stored_bytes as f64),
                    note.map(|n| format!(" ({n})")).unwrap_or_default()
                );
            }
        }
    };
    let summary = rayon::scope(|_| convert(&opts, &mut on_event))?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let mut s = String::new();
    use std::fmt::Write as _;
    let _ = writeln!(s, "wrote {}", a.output.display());
    let _ = writeln!(
        s,
        "file size    {} ({} bytes)",
        human(summary.file_size as f64),
        summary.file_size
    );
    let _ = writeln!(
        s,
        "bits/weight  {:.4} over {} weights (whole file)",
        summary.bpw(),
        summary.elements
    );
    let _ = writeln!(
        s,
        "ratio        {:.3}x vs source dtypes ({}), {:.3}x vs FP32 ({})",
        summary.source_bytes as f64 / summary.file_size as f64,
        human(summary.source_bytes as f64),
        summary.elements as f64 * 4.0 / summary.file_size as f64,
        human(summary.elements as f64 * 4.0)
    );
    let _ = writeln!(
        s,
        "{:<28} {:>7} {:>14} {:>11} {:>9}",
        "codec", "tensors", "weights", "rel MSE", "SQNR dB"
    );
    for c in &summary.codecs {
        let sq = c.sqnr_db();
        let sq = if sq.is_finite() {
            format!("{sq:.2}")
        } else {
            "lossless".into()
        };
        let _ = writeln!(
            s,
            "{:<28} {:>7} {:>14} {:>11.3e} {:>9}",
            c.codec,
            c.tensors,
            c.elements,
            c.rel_mse(),
            sq
        );
    }
    let _ = writeln!(s, "time         {:.2} s", summary.seconds);
    out(&s)
}
