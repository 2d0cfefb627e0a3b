//! Conformance of `tenpak::codec::ggml` with llama.cpp's own Python package (`gguf`).
//!
//! Writes, per type and dataset, the input, our quantized bytes and our dequantized f32 to a
//! temporary directory and runs `scripts/ggml_conformance.py` on it, which checks gguf-py's
//! dequantizer reproduces our f32 bit for bit, that gguf-py's quantizer gives our bytes for the
//! types it supports, and that our (weighted) error is no worse than gguf-py's reference.
//! Without python3 or the package the test prints a skip line, unless TENPAK_REQUIRE_PY=1.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use tenpak::codec::ggml::{dequantize_row, quantize_row, row_bytes, GgmlType};

/// splitmix64 + Box-Muller, deterministic.
struct Rng(u64);
impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn gauss(&mut self) -> f32 {
        let (u1, u2) = (self.uniform(), self.uniform());
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }
}

fn write_f32(path: &Path, v: &[f32]) {
    let mut f = std::fs::File::create(path).expect("temp dir is writable");
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    f.write_all(&bytes).expect("temp dir is writable");
}

fn datasets(n: usize) -> Vec<(&'static str, Vec<f32>)> {
    let mut r = Rng(0x5EED);
    let gauss: Vec<f32> = (0..n).map(|_| r.gauss()).collect();
    // Heavy tails: Gaussian with occasional 20x outliers, scaled down like real weights.
    let heavy: Vec<f32> = (0..n)
        .map(|_| {
            let g = r.gauss() * 0.02;
            if r.next_u64().is_multiple_of(50) {
                g * 20.0
            } else {
                g
            }
        })
        .collect();
    // Half-integer grid: exact rounding ties for the reference rules, plus one all-zero block.
    let grid: Vec<f32> = (0..n)
        .map(|i| {
            if i < 256 {
                0.0
            } else {
                ((r.next_u64() % 33) as i32 - 16) as f32 * 0.5
            }
        })
        .collect();
    vec![("gauss", gauss), ("heavy", heavy), ("grid", grid)]
}

#[test]
fn gguf_py_conformance() {
    let require = std::env::var("TENPAK_REQUIRE_PY").is_ok_and(|v| v == "1");
    let dir = tempfile::tempdir().expect("can create a temp dir");
    let n = 256 * 32;
    let mut manifest = String::new();
    let mut r = Rng(77);
    let w: Vec<f32> = (0..n).map(|_| (0.05 + 2.0 * r.uniform()) as f32).collect();
    for (tag, x) in datasets(n) {
        for &ty in GgmlType::ALL {
            let case = format!("{}_{}", ty.name(), tag);
            let nb = row_bytes(ty, n).expect("n is a multiple of every block size");
            let mut q = vec![0u8; nb];
            quantize_row(ty, &x, None, &mut q).expect("finite data quantizes");
            let mut y = vec![0.0f32; n];
            dequantize_row(ty, &q, &mut y).expect("sizes match");
            let p = |ext: &str| dir.path().join(format!("{case}.{ext}"));
            write_f32(&p("src.f32"), &x);
            std::fs::write(p("q"), &q).expect("temp dir is writable");
            write_f32(&p("deq.f32"), &y);
            let weighted = !matches!(ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16);
            if weighted {
                let mut wq = vec![0u8; nb];
                quantize_row(ty, &x, Some(&w), &mut wq).expect("finite data quantizes");
                write_f32(&p("w.f32"), &w);
                std::fs::write(p("wq"), &wq).expect("temp dir is writable");
            }
            manifest.push_str(&format!(
                "{case} {} {} {n} {}\n",
                ty.name(),
                ty.id(),
                weighted as u8
            ));
        }
    }
    std::fs::write(dir.path().join("manifest.txt"), manifest).expect("temp dir is writable");

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/ggml_conformance.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(dir.path())
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            assert!(!require, "TENPAK_REQUIRE_PY=1 but python3 cannot run: {e}");
            println!("SKIP gguf_py_conformance: python3 not available ({e})");
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    match out.status.code() {
        Some(0) => assert!(stdout.contains("ALL OK"), "script exited 0 without ALL OK"),
        Some(2) => {
            assert!(
                !require,
                "TENPAK_REQUIRE_PY=1 but gguf/numpy missing: {stdout}"
            );
            println!("SKIP gguf_py_conformance: gguf/numpy not installed (pip install gguf numpy)");
        }
        other => panic!("gguf-py conformance failed (exit {other:?}):\n{stdout}\n{stderr}"),
    }
}
