//! Round-trips raw f32 data through tenpak's ggml-type quantizer: the tenpak side of the
//! comparison with ggml's reference quantizer (BENCHMARKS.md, "tpk's ggml quantizers against
//! ggml's"; the ggml side is `scripts/ggml_ref_quant.c`, with the same arguments).
//!
//! ```text
//! cargo run --release --example ggml_quant_roundtrip -- TYPE N_PER_ROW IN.f32 OUT.f32
//! ```
//!
//! IN.f32 is raw little-endian f32, a whole number of rows of N_PER_ROW elements. Every row is
//! quantized with `quantize_row(ty, row, None, ..)` (what `tpk convert --codec TYPE` and
//! `tpk export --to gguf --type TYPE` do), dequantized, and written to OUT.f32.

use std::process::ExitCode;

use anyhow::{bail, Context};
use tenpak::codec::ggml::{dequantize_row, quantize_row, row_bytes, GgmlType};

fn run(args: &[String]) -> anyhow::Result<()> {
    let [ty, n_per_row, input, output] = args else {
        bail!("usage: ggml_quant_roundtrip TYPE N_PER_ROW IN.f32 OUT.f32");
    };
    let ty = GgmlType::from_name(ty).with_context(|| format!("unknown ggml type {ty}"))?;
    let n: usize = n_per_row.parse().context("N_PER_ROW")?;
    let rb = row_bytes(ty, n)
        .filter(|_| n > 0)
        .with_context(|| format!("{n} is not a multiple of the {ty} block size"))?;
    let bytes = std::fs::read(input).with_context(|| input.clone())?;
    if bytes.is_empty() || bytes.len() % (4 * n) != 0 {
        bail!(
            "{input}: {} bytes is not a whole number of rows",
            bytes.len()
        );
    }
    let x: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let mut q = vec![0u8; rb];
    let mut y = vec![0f32; n];
    let mut out = Vec::with_capacity(bytes.len());
    for row in x.chunks_exact(n) {
        quantize_row(ty, row, None, &mut q)?;
        dequantize_row(ty, &q, &mut y)?;
        out.extend(y.iter().flat_map(|v| v.to_le_bytes()));
    }
    std::fs::write(output, out).with_context(|| output.clone())?;
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
