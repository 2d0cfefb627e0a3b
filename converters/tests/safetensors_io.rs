//! Round trips of the safetensors writer and reader, and a peer check against the Python
//! `safetensors` package.

use std::path::{Path, PathBuf};
use std::process::Command;

use tenpak_converters::safetensors::{
    Dtype, SafetensorsError, SafetensorsModel, SafetensorsWriter, TensorPlan,
};

/// Values covering signs, subnormals, large magnitudes and exact halves.
fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let x = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed);
            let m = (x % 20001) as f32 / 1000.0 - 10.0;
            match i % 7 {
                0 => m * 1e-6,
                1 => m * 1000.0,
                _ => m,
            }
        })
        .collect()
}

fn encode(dtype: Dtype, v: &[f32]) -> Vec<u8> {
    let mut out = Vec::new();
    for &x in v {
        match dtype {
            Dtype::F32 => out.extend_from_slice(&x.to_le_bytes()),
            Dtype::F16 => out.extend_from_slice(&half::f16::from_f32(x).to_le_bytes()),
            Dtype::BF16 => out.extend_from_slice(&half::bf16::from_f32(x).to_le_bytes()),
            _ => unreachable!(),
        }
    }
    out
}

fn widen(dtype: Dtype, b: &[u8]) -> Vec<f32> {
    match dtype {
        Dtype::F32 => b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => b
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        _ => b
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
    }
}

struct Case {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for (i, (dtype, shape)) in [
        (Dtype::F32, vec![7, 13]),
        (Dtype::F16, vec![5, 3, 4]),
        (Dtype::BF16, vec![33]),
        (Dtype::F32, vec![]),
        (Dtype::F16, vec![0, 4]),
        (Dtype::BF16, vec![64, 80]),
        (Dtype::F32, vec![200, 20]),
    ]
    .into_iter()
    .enumerate()
    {
        let n = shape.iter().product();
        v.push(Case {
            name: format!("t{i}.{}\"q\u{e9}", dtype.as_str().to_lowercase()),
            dtype,
            bytes: encode(dtype, &values(n, i as u32)),
            shape,
        });
    }
    v
}

fn write_cases(dir: &Path, max: Option<u64>, cs: &[Case]) -> Vec<PathBuf> {
    let list: Vec<(&str, Dtype, &[usize], &[u8])> = cs
        .iter()
        .map(|c| {
            (
                c.name.as_str(),
                c.dtype,
                c.shape.as_slice(),
                c.bytes.as_slice(),
            )
        })
        .collect();
    SafetensorsWriter::write_all(dir, max, &[], &list).expect("write")
}

fn check_model(m: &SafetensorsModel, cs: &[Case]) {
    assert_eq!(m.tensors().len(), cs.len());
    let names: Vec<&str> = m.tensors().iter().map(|t| t.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "tensors() must be sorted by name");
    for c in cs {
        let t = m.tensor(&c.name).expect("tensor present");
        assert_eq!((t.dtype, &t.shape), (c.dtype, &c.shape));
        assert_eq!(m.raw_bytes(t).unwrap(), c.bytes.as_slice(), "{}", c.name);
        let mut out = vec![0f32; t.numel()];
        m.read_f32_into(t, &mut out, false).unwrap();
        let want = widen(c.dtype, &c.bytes);
        assert_eq!(
            out.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            want.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
        // Row slices agree with the full read.
        if t.shape.len() >= 2 && t.rows() >= 3 {
            let rl = t.row_len();
            let mut part = vec![0f32; 2 * rl];
            m.read_rows_f32(t, 1..3, &mut part, false).unwrap();
            assert_eq!(part, out[rl..3 * rl]);
        }
    }
}

#[test]
fn single_file_round_trip_is_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    let cs = cases();
    let files = write_cases(dir.path(), None, &cs);
    assert_eq!(files, vec![dir.path().join("model.safetensors")]);
    let m = SafetensorsModel::open(dir.path()).unwrap();
    assert_eq!(m.shard_files().len(), 1);
    assert_eq!(
        m.metadata()[0].get("format").map(String::as_str),
        Some("pt")
    );
    check_model(&m, &cs);
    // Header is 8-byte aligned and the output is deterministic.
    let bytes = std::fs::read(&files[0]).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    assert_eq!(n % 8, 0);
    let dir2 = tempfile::tempdir().unwrap();
    let files2 = write_cases(dir2.path(), None, &cs);
    assert_eq!(bytes, std::fs::read(&files2[0]).unwrap());
    // Opening the file directly works too.
    check_model(&SafetensorsModel::open(&files[0]).unwrap(), &cs);
}

#[test]
fn sharded_round_trip_with_index() {
    let dir = tempfile::tempdir().unwrap();
    let cs = cases();
    let files = write_cases(dir.path(), Some(5_000), &cs);
    let n = files.len() - 1;
    assert!(n >= 3, "expected several shards, got {files:?}");
    for (i, f) in files[..n].iter().enumerate() {
        let want = format!("model-{:05}-of-{:05}.safetensors", i + 1, n);
        assert_eq!(f.file_name().unwrap().to_str().unwrap(), want);
    }
    let idx = files[n].clone();
    assert!(idx.ends_with("model.safetensors.index.json"));
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&idx).unwrap()).unwrap();
    let total: usize = cs.iter().map(|c| c.bytes.len()).sum();
    assert_eq!(json["metadata"]["total_size"], total);
    for m in [
        SafetensorsModel::open(dir.path()).unwrap(),
        SafetensorsModel::open(&idx).unwrap(),
    ] {
        assert_eq!(m.shard_files().len(), n);
        assert_eq!(m.index_file(), Some(idx.as_path()));
        check_model(&m, &cs);
    }
}

#[test]
fn streaming_writer_accepts_any_order_and_f32_input() {
    let dir = tempfile::tempdir().unwrap();
    let plan = vec![
        TensorPlan {
            name: "b".into(),
            dtype: Dtype::BF16,
            shape: vec![3, 5],
        },
        TensorPlan {
            name: "a".into(),
            dtype: Dtype::F16,
            shape: vec![100_000],
        },
    ];
    let mut w = SafetensorsWriter::create(dir.path(), None, &[], plan).unwrap();
    let va = values(100_000, 9);
    let vb = values(15, 3);
    w.write_tensor_f32("a", &va).unwrap();
    assert!(matches!(
        w.write_tensor_f32("a", &va),
        Err(SafetensorsError::Writer { .. })
    ));
    assert!(matches!(
        w.write_tensor("zz", &[]),
        Err(SafetensorsError::Writer { .. })
    ));
    assert!(matches!(
        w.write_tensor("b", &[0; 4]),
        Err(SafetensorsError::Writer { .. })
    ));
    w.write_tensor("b", &encode(Dtype::BF16, &vb)).unwrap();
    w.finish().unwrap();
    let m = SafetensorsModel::open(dir.path()).unwrap();
    assert_eq!(
        m.raw_bytes(m.tensor("a").unwrap()).unwrap(),
        encode(Dtype::F16, &va)
    );
    assert_eq!(
        m.raw_bytes(m.tensor("b").unwrap()).unwrap(),
        encode(Dtype::BF16, &vb)
    );
    // No temporary files are left behind.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("model.safetensors")]);
}

#[test]
fn unfinished_writer_leaves_nothing_and_missing_tensor_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let plan = vec![TensorPlan {
        name: "a".into(),
        dtype: Dtype::F32,
        shape: vec![2],
    }];
    let w = SafetensorsWriter::create(dir.path(), None, &[], plan.clone()).unwrap();
    drop(w);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    let w = SafetensorsWriter::create(dir.path(), None, &[], plan).unwrap();
    assert!(matches!(w.finish(), Err(SafetensorsError::Writer { .. })));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn writer_refuses_to_overwrite_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let input = tenpak_fixtures::write_llama_tiny(dir.path(), tenpak_fixtures::Dtype::F16).unwrap();
    let before = std::fs::read(&input).unwrap();
    let plan = vec![TensorPlan {
        name: "a".into(),
        dtype: Dtype::F32,
        shape: vec![2],
    }];
    // Same folder, path spelled differently.
    let sneaky = dir.path().join(".").join("model.safetensors");
    let err = SafetensorsWriter::create(dir.path(), None, &[sneaky], plan.clone()).unwrap_err();
    assert!(
        matches!(err, SafetensorsError::WouldOverwriteInput { .. }),
        "{err}"
    );
    // Through a symlinked output folder.
    #[cfg(unix)]
    {
        let link = dir.path().parent().unwrap().join(format!(
            "{}-link",
            dir.path().file_name().unwrap().to_str().unwrap()
        ));
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(dir.path(), &link).unwrap();
        let err =
            SafetensorsWriter::create(&link, None, std::slice::from_ref(&input), plan.clone());
        std::fs::remove_file(&link).unwrap();
        assert!(matches!(
            err,
            Err(SafetensorsError::WouldOverwriteInput { .. })
        ));
    }
    assert_eq!(std::fs::read(&input).unwrap(), before);
    // A shadowing index in the output folder is refused for single-file output.
    let d2 = tempfile::tempdir().unwrap();
    std::fs::write(d2.path().join("model.safetensors.index.json"), "{}").unwrap();
    assert!(matches!(
        SafetensorsWriter::create(d2.path(), None, &[], plan),
        Err(SafetensorsError::Writer { .. })
    ));
}

#[test]
fn writer_rejects_bad_plans() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str, dtype, shape: Vec<usize>| TensorPlan {
        name: name.into(),
        dtype,
        shape,
    };
    for plan in [
        vec![p("a", Dtype::F32, vec![1]), p("a", Dtype::F32, vec![1])],
        vec![p("__metadata__", Dtype::F32, vec![1])],
        vec![p("", Dtype::F32, vec![1])],
        vec![p("a", Dtype::F32, vec![usize::MAX, 4])],
    ] {
        assert!(matches!(
            SafetensorsWriter::create(dir.path(), None, &[], plan),
            Err(SafetensorsError::Writer { .. })
        ));
    }
    assert!(matches!(
        SafetensorsWriter::create(dir.path(), None, &[], vec![p("a", Dtype::I32, vec![1])]),
        Err(SafetensorsError::UnsupportedDtype { .. })
    ));
}

#[test]
fn fixtures_parse_and_shards_match_single_file() {
    for dtype in [
        tenpak_fixtures::Dtype::F32,
        tenpak_fixtures::Dtype::F16,
        tenpak_fixtures::Dtype::BF16,
    ] {
        let d1 = tempfile::tempdir().unwrap();
        let d2 = tempfile::tempdir().unwrap();
        tenpak_fixtures::write_llama_tiny(d1.path(), dtype).unwrap();
        tenpak_fixtures::write_llama_sharded(d2.path(), dtype, 3).unwrap();
        let a = SafetensorsModel::open(d1.path()).unwrap();
        let b = SafetensorsModel::open(d2.path()).unwrap();
        assert_eq!(b.shard_files().len(), 3);
        let names: Vec<String> = a.tensors().iter().map(|t| t.name.clone()).collect();
        assert_eq!(names, tenpak_fixtures::llama_tiny_tensor_names());
        assert_eq!(names.len(), 3 + 9 * 2);
        for t in a.tensors() {
            let u = b.tensor(&t.name).unwrap();
            assert_eq!((t.dtype, &t.shape), (u.dtype, &u.shape));
            assert_eq!(a.raw_bytes(t).unwrap(), b.raw_bytes(u).unwrap());
            let mut out = vec![0f32; t.numel()];
            a.read_f32_into(t, &mut out, false).unwrap();
        }
        let side: Vec<_> = a
            .side_files()
            .iter()
            .map(|p| p.file_name().unwrap().to_owned())
            .collect();
        assert_eq!(
            side,
            [
                "config.json",
                "tokenizer.json",
                "tokenizer_config.json",
                "generation_config.json"
            ]
        );
        assert_eq!(a.tensor("lm_head.weight").unwrap().shape, vec![288, 80]);
        assert_eq!(
            a.tensor("model.layers.1.self_attn.k_proj.weight")
                .unwrap()
                .shape,
            vec![40, 80]
        );
    }
}

#[test]
fn big_fixture_parses_and_converts() {
    let d = tempfile::tempdir().unwrap();
    let target = 6 << 20;
    tenpak_fixtures::write_big_model(d.path(), target, tenpak_fixtures::Dtype::BF16).unwrap();
    let m = SafetensorsModel::open(d.path()).unwrap();
    let bytes: u64 = m.tensors().iter().map(|t| (t.numel() * 2) as u64).sum();
    let file_len = m.shard_files()[0].1;
    assert!(
        file_len > bytes && file_len - bytes < 64 * 1024,
        "header only"
    );
    assert!(bytes.abs_diff(target) < target / 4, "{bytes}");
    let mut buf = Vec::new();
    for t in m.tensors() {
        assert_eq!(t.dtype, Dtype::BF16);
        buf.resize(t.numel(), 0f32);
        m.read_f32_into(t, &mut buf, false).unwrap();
    }
    assert_eq!(m.side_files(), [d.path().join("config.json")]);
}

#[test]
fn python_safetensors_agrees() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/check_st.py");
    let require = std::env::var("TENPAK_REQUIRE_PY").as_deref() == Ok("1");
    let run = |args: &[&std::ffi::OsStr]| Command::new("python3").arg(&script).args(args).output();
    let probe = Command::new("python3")
        .args(["-c", "import safetensors, numpy"])
        .output();
    if !probe.map(|o| o.status.success()).unwrap_or(false) {
        assert!(
            !require,
            "TENPAK_REQUIRE_PY=1 but python3 with safetensors+numpy is missing"
        );
        eprintln!("skip: python3 with safetensors and numpy not available");
        return;
    }
    let cs = cases();
    for max in [None, Some(5_000)] {
        let dir = tempfile::tempdir().unwrap();
        write_cases(dir.path(), max, &cs);
        let out = run(&["read".as_ref(), dir.path().as_os_str()]).unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(got.as_object().unwrap().len(), cs.len());
        for c in &cs {
            let g = &got[&c.name];
            assert_eq!(g["dtype"], c.dtype.as_str(), "{}", c.name);
            assert_eq!(g["shape"], serde_json::json!(c.shape));
            let hex: String = c.bytes.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(g["hex"], hex.as_str(), "{}", c.name);
        }
    }
    // And the other way: a file written by Python reads back with the right values.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("py.safetensors");
    let out = run(&["write".as_ref(), f.as_os_str()]).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = SafetensorsModel::open(&f).unwrap();
    assert_eq!(
        m.metadata()[0].get("format").map(String::as_str),
        Some("np")
    );
    let read = |name: &str| {
        let t = m.tensor(name).unwrap();
        let mut v = vec![0f32; t.numel()];
        m.read_f32_into(t, &mut v, false).unwrap();
        (t.dtype, t.shape.clone(), v)
    };
    let a: Vec<f32> = (0..12).map(|i| (i as f32 - 5.5) * 0.25).collect();
    assert_eq!(read("a.weight"), (Dtype::F32, vec![3, 4], a));
    let b: Vec<f32> = (0..10).map(|i| i as f32 * -1.5 + 3.0).collect();
    assert_eq!(read("b.bias"), (Dtype::F16, vec![10], b));
    assert_eq!(
        read("c"),
        (Dtype::F32, vec![1, 3], vec![1e-8, -2.0, 65504.0])
    );
}

/// Manual measurement: `TENPAK_BIG_MODEL=DIR cargo test --release -p tenpak-converters --test
/// safetensors_io -- --ignored --nocapture` reads every tensor of a big model (e.g. from
/// `gen-fixtures big DIR --mb 500`) one at a time into a reused buffer.
#[test]
#[ignore]
fn read_big_model_tensor_by_tensor() {
    let Ok(dir) = std::env::var("TENPAK_BIG_MODEL") else {
        eprintln!("skip: TENPAK_BIG_MODEL not set");
        return;
    };
    let t0 = std::time::Instant::now();
    let m = SafetensorsModel::open(&dir).unwrap();
    let opened = t0.elapsed();
    let mut buf = Vec::new();
    let mut n = 0usize;
    let mut sum = 0f64;
    for t in m.tensors() {
        buf.resize(t.numel(), 0f32);
        m.read_f32_into(t, &mut buf, false).unwrap();
        sum += buf.iter().map(|&x| x as f64).sum::<f64>();
        n += t.numel();
    }
    assert!(sum.is_finite());
    eprintln!(
        "open {:?}, read {n} values of {} tensors in {:?} (checksum {sum})",
        opened,
        m.tensors().len(),
        t0.elapsed()
    );
}

/// Releasing a tensor's pages is advisory: the same values read back afterwards, including
/// through a raw slice taken before the release; a foreign tensor is refused.
#[test]
fn release_keeps_values_readable() {
    let dir = tempfile::tempdir().unwrap();
    tenpak_fixtures::write_llama_tiny(dir.path(), tenpak_fixtures::Dtype::F16).unwrap();
    let m = SafetensorsModel::open(dir.path()).unwrap();
    for t in m.tensors() {
        let raw = m.raw_bytes(t).unwrap();
        let before = raw.to_vec();
        let mut a = vec![0f32; t.numel()];
        m.read_f32_into(t, &mut a, false).unwrap();
        m.release(t).unwrap();
        assert_eq!(raw, &before[..], "{}: raw slice unchanged", t.name);
        let mut b = vec![0f32; t.numel()];
        m.read_f32_into(t, &mut b, false).unwrap();
        assert_eq!(a, b, "{}", t.name);
    }
    let mut forged = m.tensors()[0].clone();
    forged.byte_range.end += 1;
    assert!(m.release(&forged).is_err());
}
