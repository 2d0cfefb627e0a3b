//! Throughput probe for the ggml dequantizers (ignored by default; no timing assertions).
//!
//! Run: `cargo test --release --test ggml_bench -- --ignored --nocapture`
//! It prints output-side GB/s (f32 bytes written per second) per type next to a plain memcpy of
//! the same output size, which is the yardstick the dequantizers are aimed at (>= half of it).

use std::time::Instant;
use tenpak::codec::ggml::{dequantize_row, quantize_row, row_bytes, GgmlType};

#[test]
#[ignore = "throughput probe, run manually"]
fn dequant_throughput() {
    let n = 1 << 24; // 64 MiB of f32 output: far beyond cache, like real tensors
    let x: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let reps = 8;
    let mut y = vec![0.0f32; n];
    let mut src = vec![0.0f32; n];
    src.copy_from_slice(&x);
    // Best-of-`reps` timing: the machine is shared, so the minimum is the stable statistic.
    let best = |f: &mut dyn FnMut()| {
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    };
    let memcpy = (n * 4) as f64
        / best(&mut || {
            y.copy_from_slice(std::hint::black_box(&src));
            std::hint::black_box(&mut y);
        })
        / 1e9;
    println!("memcpy (f32 out)  {memcpy:7.2} GB/s");
    for &ty in GgmlType::ALL {
        let mut q = vec![0u8; row_bytes(ty, n).expect("block multiple")];
        quantize_row(ty, &x, None, &mut q).expect("finite");
        let gbs = (n * 4) as f64
            / best(&mut || {
                dequantize_row(ty, std::hint::black_box(&q), &mut y).expect("sizes match");
                std::hint::black_box(&mut y);
            })
            / 1e9;
        println!(
            "{:7} {gbs:7.2} GB/s  ({:.2}x memcpy)",
            ty.name(),
            gbs / memcpy
        );
    }
}

#[test]
#[ignore = "throughput probe, run manually"]
fn quant_throughput() {
    let n = 1 << 20;
    let x: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    for &ty in GgmlType::ALL {
        let mut q = vec![0u8; row_bytes(ty, n).expect("block multiple")];
        let t = Instant::now();
        quantize_row(ty, std::hint::black_box(&x), None, &mut q).expect("finite");
        let s = t.elapsed().as_secs_f64();
        println!(
            "quantize {:7} {:8.1} Melem/s",
            ty.name(),
            n as f64 / s / 1e6
        );
    }
}
