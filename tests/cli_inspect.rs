//! `tpk inspect` and `tpk verify` on files from the writer, corrupted files and junk.

use std::path::{Path, PathBuf};
use std::process::Command;

use tenpak::codec::staged::{encode_params, Stage};
use tenpak::format::{CodecId, Dtype, ElemType, SectionKind, TensorEntry, TpkWriter};

fn tpk(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_tpk"))
        .args(args)
        .output()
        .expect("run tpk");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A file with two raw f32 tensors, one f16 tensor and metadata.
fn sample(dir: &Path) -> PathBuf {
    let path = dir.join("s.tpk");
    let mut w = TpkWriter::create(&path).unwrap();
    w.set_metadata(&serde_json::json!({"user": {"note": "test"}}))
        .unwrap();
    for (name, rows, cols, dtype) in [
        (
            "model.layers.0.self_attn.q_proj.weight",
            8u64,
            12u64,
            Dtype::F32,
        ),
        ("model.layers.0.mlp.up_proj.weight", 16, 12, Dtype::F32),
        ("model.norm.weight", 1, 12, Dtype::F16),
    ] {
        let n = (rows * cols) as usize;
        let (elem, bytes): (ElemType, Vec<u8>) = match dtype {
            Dtype::F16 => (
                ElemType::F16,
                (0..n)
                    .flat_map(|i| half::f16::from_f32(i as f32).to_le_bytes())
                    .collect(),
            ),
            _ => (
                ElemType::F32,
                (0..n)
                    .flat_map(|i| (i as f32 * 0.5).to_le_bytes())
                    .collect(),
            ),
        };
        let s = w.add_section(SectionKind::Raw, elem, &bytes).unwrap();
        let shape = if rows == 1 {
            vec![cols]
        } else {
            vec![rows, cols]
        };
        w.add_tensor(TensorEntry {
            name: name.into(),
            shape,
            source_dtype: dtype,
            codec: CodecId::Staged,
            params: encode_params(&[Stage::Raw { dtype }]),
            sections: vec![s],
        })
        .unwrap();
    }
    w.finish().unwrap();
    path
}

#[test]
fn inspect_json_states_real_size_and_bpw() {
    let dir = tempfile::tempdir().unwrap();
    let p = sample(dir.path());
    let (code, out, err) = tpk(&["inspect", "--json", p.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let size = std::fs::metadata(&p).unwrap().len();
    assert_eq!(v["schema"], "tenpak.inspect/1");
    assert_eq!(v["file_size"].as_u64().unwrap(), size);
    let elements = 8 * 12 + 16 * 12 + 12;
    assert_eq!(v["elements"].as_u64().unwrap(), elements);
    let bpw = v["bpw"].as_f64().unwrap();
    assert!((bpw - size as f64 * 8.0 / elements as f64).abs() < 1e-9);
    // Per-tensor bytes add up to the file size.
    let sum: f64 = v["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["bytes"].as_f64().unwrap())
        .sum();
    assert!((sum - size as f64).abs() < 1e-6, "{sum} vs {size}");
    assert_eq!(
        v["source_bytes"].as_u64().unwrap(),
        (8 * 12 + 16 * 12) * 4 + 12 * 2
    );
    let roles: Vec<&str> = v["by_role"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert!(roles.contains(&"attention") && roles.contains(&"mlp") && roles.contains(&"norms"));
}

#[test]
fn inspect_text_fits_80_columns() {
    let dir = tempfile::tempdir().unwrap();
    // A long path must be shortened, not push the first line past 80 columns.
    let deep = dir
        .path()
        .join("a-rather-long-folder-name-for-the-eighty-column-check/and-one-more-level");
    std::fs::create_dir_all(&deep).unwrap();
    let p = sample(&deep);
    for sort in ["bpw", "size", "name"] {
        let (code, out, _) = tpk(&["inspect", "--tensors", "--sort", sort, p.to_str().unwrap()]);
        assert_eq!(code, 0);
        for line in out.lines() {
            assert!(
                line.chars().count() <= 80,
                "{} columns: {line}",
                line.chars().count()
            );
        }
        assert!(out.contains("bits/weight"));
    }
}

#[test]
fn verify_names_the_section_of_any_flipped_bit() {
    let dir = tempfile::tempdir().unwrap();
    let p = sample(dir.path());
    let (code, out, _) = tpk(&["verify", p.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains("OK"));
    let f = tenpak::TpkFile::open(&p).unwrap();
    let sections: Vec<(u32, u64, u64)> = f
        .sections()
        .map(|s| (s.index(), s.info().offset, s.info().len))
        .collect();
    drop(f);
    let good = std::fs::read(&p).unwrap();
    let bad_path = dir.path().join("bad.tpk");
    for (index, offset, len) in sections {
        // First, middle and last byte of every section, a different bit each time.
        for (k, at) in [offset, offset + len / 2, offset + len - 1]
            .into_iter()
            .enumerate()
        {
            let mut b = good.clone();
            b[at as usize] ^= 1 << (k * 3);
            std::fs::write(&bad_path, &b).unwrap();
            let (code, _, err) = tpk(&["verify", bad_path.to_str().unwrap()]);
            assert_eq!(code, 2, "flip at {at}");
            assert!(err.contains(&format!("section {index} ")), "{err}");
            assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        }
    }
}

#[test]
fn truncated_and_random_files_exit_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = sample(dir.path());
    let good = std::fs::read(&p).unwrap();
    let bad = dir.path().join("bad.tpk");
    let mut seed = 0x9E3779B97F4A7C15u64;
    let mut cases: Vec<Vec<u8>> = vec![
        Vec::new(),
        good[..10].to_vec(),
        good[..good.len() - 1].to_vec(),
        good[..good.len() / 2].to_vec(),
    ];
    for len in [1usize, 63, 128, 4096] {
        let mut v = Vec::with_capacity(len);
        for _ in 0..len {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            v.push(seed as u8);
        }
        cases.push(v);
    }
    for (i, c) in cases.iter().enumerate() {
        std::fs::write(&bad, c).unwrap();
        for cmd in ["inspect", "verify"] {
            let (code, out, err) = tpk(&[cmd, bad.to_str().unwrap()]);
            assert_eq!(code, 2, "case {i} {cmd}: {out}{err}");
            assert_eq!(err.trim_end().lines().count(), 1, "case {i}: {err}");
            assert!(err.starts_with("tpk: "), "{err}");
            assert!(!err.contains("panicked"));
        }
    }
    let (code, _, err) = tpk(&["inspect", dir.path().join("missing.tpk").to_str().unwrap()]);
    assert_eq!(code, 2);
    assert_eq!(err.trim_end().lines().count(), 1);
    let (code, _, err) = tpk(&["inspect", "--sort", "nonsense", p.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}
