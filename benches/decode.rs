//! Decode throughput per stage on one core, against a memcpy of the same output size.
//!
//! `cargo bench --bench decode` (harness = false). One 576 x 1536 tensor (a SmolLM-135M
//! `down_proj`; 1536 is a multiple of every group and of ggml's 256) of N(0, 0.02^2) values
//! is encoded once per stage and decoded repeatedly into f32 with `dequantize_into` on a
//! one-thread rayon pool. Reported: GB/s of f32 output and the ratio to a memcpy of the same
//! size timed in alternating rounds with it (best of 7 each), so load on a shared machine
//! hits both alike. Names filter the stages: `cargo bench --bench decode -- int:b=4`.
//!
//! Then a memory-bound run of the int stages: a 4096 x 8192 tensor (128 MiB of f32 output,
//! far larger than the caches) decoded the same way, against a memcpy of 128 MiB in the same
//! run. Decoding reads ~4..8x fewer bytes than it writes, so this is the fair comparison for
//! "half the speed of memcpy"; the cache-resident ratio is the harder one.

use std::hint::black_box;
use std::time::Instant;

use tenpak::codec::encode::encode_tensor;
use tenpak::codec::{spec, staged};
use tenpak::format::{CodecId, Dtype, TensorEntry};
use tenpak::{TpkFile, TpkWriter};
use tenpak_fixtures::Gaussian;

const ROWS: u64 = 576;
const COLS: u64 = 1536;

/// Writes `x` (row-major `shape`) encoded with `spec_str` to `path` as tensor "w".
fn write_tpk(path: &std::path::Path, x: &[f32], shape: &[u64], spec_str: &str) {
    let stages = spec::parse(spec_str).expect("bench specs are valid");
    let enc = encode_tensor("w", x, shape, &stages).expect("bench tensor encodes");
    let mut w = TpkWriter::create(path).expect("writer starts");
    let ids = enc
        .sections
        .iter()
        .map(|s| {
            w.add_section(s.kind, s.elem, &s.bytes)
                .expect("section fits")
        })
        .collect();
    w.add_tensor(TensorEntry {
        name: "w".into(),
        shape: shape.to_vec(),
        source_dtype: Dtype::F32,
        codec: CodecId::Staged,
        params: staged::encode_params(&enc.stages),
        sections: ids,
    })
    .expect("tensor fits");
    w.finish().expect("writer finishes");
}

/// Seconds per call of `f`, best of 5 rounds of at least 0.2 s each.
fn time(mut f: impl FnMut()) -> f64 {
    f();
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        best = best.min(round(&mut f, 0.2));
    }
    best
}

/// Seconds per call of `f` over one round of at least `secs`.
fn round(f: &mut impl FnMut(), secs: f64) -> f64 {
    let t = Instant::now();
    let mut n = 0u32;
    while t.elapsed().as_secs_f64() < secs {
        f();
        n += 1;
    }
    t.elapsed().as_secs_f64() / f64::from(n)
}

/// Seconds per call of `a` and of `b`, measured in alternating rounds (7 of at least 0.1 s
/// each, best kept), so both see the same machine load: on a shared machine the ratio of
/// the pair is far steadier than either figure alone.
fn time_pair(mut a: impl FnMut(), mut b: impl FnMut()) -> (f64, f64) {
    a();
    b();
    let (mut ba, mut bb) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..7 {
        ba = ba.min(round(&mut a, 0.1));
        bb = bb.min(round(&mut b, 0.1));
    }
    (ba, bb)
}

/// Whether `spec_str` is selected by the command line's filters (substrings; all when none,
/// e.g. `cargo bench --bench decode -- int:b=4 residual`).
fn wanted(spec_str: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    filters.is_empty() || filters.iter().any(|f| spec_str.contains(f.as_str()))
}

fn main() {
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build_global()
        .expect("the global pool is configured once, before any use");
    println!("backend: {:?}", tenpak::codec::kernels::detect());
    let dir = tempfile::tempdir().expect("a temporary folder can be created");
    let gaussian = |seed: u64, n: u64| -> Vec<f32> {
        let mut g = Gaussian::new(seed);
        (0..n).map(|_| (g.sample() * 0.02) as f32).collect()
    };
    table(
        "decode throughput, one core",
        dir.path(),
        &gaussian(42, ROWS * COLS),
        [ROWS, COLS],
        &[
            "raw:dtype=f16",
            "raw:dtype=bf16",
            "int:b=4,g=32",
            "int:b=8,g=32,sym",
            "int:b=2,g=16",
            "int:b=4,g=8",
            "int:b=4,g=16",
            "int:b=4,g=64",
            "int:b=4,g=128",
            "int4_residual",
            "int:b=3,g=32",
            "int:b=5,g=32",
            "int:b=6,g=32",
            "int:b=8,g=32",
            "int:b=4,g=128,sym",
            "vq:d=4,k=256",
            "lowrank:r=32",
            "q4_k",
            "q8_0",
            "tenpak_x",
        ],
    );
    // The memory-bound comparison: 4096 x 8192 (128 MiB of f32 output).
    const R: u64 = 4096;
    const C: u64 = 8192;
    println!();
    table(
        "memory-bound",
        dir.path(),
        &gaussian(7, R * C),
        [R, C],
        &[
            "int:b=4,g=32",
            "int:b=8,g=32,sym",
            "int:b=2,g=16",
            "int:b=4,g=8",
            "int:b=4,g=16",
            "int4_residual",
            "q4_k",
        ],
    );
}

/// One table: `x` (row-major `shape`) encoded with each of `specs` (those the command line
/// selects) and decoded, each decode timed against a memcpy of the same output size.
fn table(title: &str, dir: &std::path::Path, x: &[f32], shape: [u64; 2], specs: &[&str]) {
    let n = x.len();
    let out_bytes = (n * 4) as f64;
    let mut dst = vec![0f32; n];
    let mut memcpy = || {
        dst.copy_from_slice(black_box(x));
        black_box(&mut dst);
    };
    let memcpy_gbs = out_bytes / time(&mut memcpy) / 1e9;
    println!(
        "{title}: {}x{} tensor ({:.1} MB of f32 output)",
        shape[0],
        shape[1],
        out_bytes / 1e6
    );
    header(memcpy_gbs);
    let mut out = vec![0f32; n];
    for &spec_str in specs {
        if !wanted(spec_str) {
            continue;
        }
        let path = dir.join("b.tpk");
        write_tpk(&path, x, &shape, spec_str);
        let f = TpkFile::open(&path).expect("bench file opens");
        let t = f.tensor("w").expect("tensor w was written");
        let (secs, mem) = time_pair(
            || {
                t.dequantize_into(black_box(&mut out)).expect("decodes");
            },
            &mut memcpy,
        );
        row(spec_str, out_bytes, secs, mem);
    }
}

/// The table's header and its first line, a memcpy timed alone.
fn header(memcpy_gbs: f64) {
    println!(
        "{:<22} {:>9} {:>12} {:>9}",
        "stage", "GB/s", "memcpy GB/s", "x memcpy"
    );
    println!(
        "{:<22} {:>9.2} {:>12.2} {:>9.2}",
        "memcpy (alone)", memcpy_gbs, memcpy_gbs, 1.0
    );
}

/// One line: the decode and the memcpy timed alongside it (see [`time_pair`]).
fn row(spec_str: &str, out_bytes: f64, secs: f64, mem: f64) {
    let gbs = out_bytes / secs / 1e9;
    let mgbs = out_bytes / mem / 1e9;
    println!(
        "{:<22} {:>9.2} {:>12.2} {:>9.2}",
        spec_str,
        gbs,
        mgbs,
        mem / secs
    );
}
