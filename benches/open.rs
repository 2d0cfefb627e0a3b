//! Open + directory validation time must not depend on the file's size.
//!
//! Writes two files of 1,000 tensors each, about 10 MB and 1 GB, then times `TpkFile::open`
//! on each (median of many runs) and prints the ratio. Run: `cargo bench --bench open`.
//! Set TENPAK_BENCH_DIR to choose where the files go (default: the system temp folder).

use std::path::Path;
use std::time::Instant;

use tenpak::codec::staged::{encode_params, Stage};
use tenpak::format::{CodecId, Dtype, ElemType, SectionKind, TensorEntry, TpkWriter};
use tenpak::TpkFile;

const TENSORS: usize = 1000;

fn write(path: &Path, bytes_per_tensor: usize) {
    let mut w = TpkWriter::create(path).expect("create");
    w.set_metadata(&serde_json::json!({"bench": true}))
        .expect("metadata");
    let n = bytes_per_tensor / 2;
    let data: Vec<u8> = (0..n * 2).map(|i| (i * 31 % 251) as u8).collect();
    for i in 0..TENSORS {
        let s = w
            .add_section(SectionKind::Raw, ElemType::F16, &data)
            .expect("section");
        w.add_tensor(TensorEntry {
            name: format!("model.layers.{}.mlp.t{i}.weight", i / 10),
            shape: vec![(n / 64) as u64, 64],
            source_dtype: Dtype::F16,
            codec: CodecId::Staged,
            params: encode_params(&[Stage::Raw { dtype: Dtype::F16 }]),
            sections: vec![s],
        })
        .expect("tensor");
    }
    w.finish().expect("finish");
}

fn median_open_us(path: &Path, runs: usize) -> f64 {
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            let f = TpkFile::open(path).expect("open");
            assert_eq!(f.tensor_count(), TENSORS);
            s.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[runs / 2]
}

fn main() {
    let dir = std::env::var_os("TENPAK_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let small = dir.join("tenpak-bench-10MB.tpk");
    let big = dir.join("tenpak-bench-1GB.tpk");
    write(&small, 10 * 1024);
    write(&big, 1024 * 1024);
    let (ss, sb) = (
        std::fs::metadata(&small).unwrap().len(),
        std::fs::metadata(&big).unwrap().len(),
    );
    // Interleave the measurements so machine noise hits both alike.
    let mut a = Vec::new();
    let mut b = Vec::new();
    for _ in 0..5 {
        a.push(median_open_us(&small, 41));
        b.push(median_open_us(&big, 41));
    }
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (ma, mb) = (a[2], b[2]);
    println!("open + validate, {TENSORS} tensors:");
    println!("  {:>13} bytes: {ma:9.1} us", ss);
    println!("  {:>13} bytes: {mb:9.1} us", sb);
    println!("  ratio 1 GB / 10 MB: {:.3}", mb / ma);
    let _ = std::fs::remove_file(&small);
    let _ = std::fs::remove_file(&big);
}
