//! Writer -> reader round trips, layout rules, determinism and writer refusals.

mod gguf_common;

use std::path::Path;

use gguf_common::rand_bytes;
use tenpak_converters::gguf::{
    ggml_type, GgufArray, GgufError, GgufFile, GgufTensorSpec, GgufValue, GgufWriter,
};

fn all_kinds_kv() -> Vec<(String, GgufValue)> {
    let kv = |k: &str, v| (k.to_string(), v);
    vec![
        kv("general.architecture", GgufValue::str("llama")),
        kv("general.alignment", GgufValue::U32(64)),
        kv("t.u8", GgufValue::U8(200)),
        kv("t.i8", GgufValue::I8(-100)),
        kv("t.u16", GgufValue::U16(60_000)),
        kv("t.i16", GgufValue::I16(-30_000)),
        kv("t.u32", GgufValue::U32(4_000_000_000)),
        kv("t.i32", GgufValue::I32(-2_000_000_000)),
        kv("t.f32", GgufValue::F32(1e-5)),
        kv("t.bool", GgufValue::Bool(true)),
        kv("t.u64", GgufValue::U64(u64::MAX)),
        kv("t.i64", GgufValue::I64(i64::MIN)),
        kv("t.f64", GgufValue::F64(-0.1)),
        kv("t.str", GgufValue::str("héllo ✓")),
        kv("t.a.u8", GgufValue::Array(GgufArray::U8(vec![1, 2, 255]))),
        kv("t.a.i8", GgufValue::Array(GgufArray::I8(vec![-1, 2]))),
        kv("t.a.u16", GgufValue::Array(GgufArray::U16(vec![1, 65535]))),
        kv("t.a.i16", GgufValue::Array(GgufArray::I16(vec![-1]))),
        kv("t.a.u32", GgufValue::Array(GgufArray::U32(vec![7, 8, 9]))),
        kv("t.a.i32", GgufValue::Array(GgufArray::I32(vec![1, -3]))),
        kv(
            "t.a.f32",
            GgufValue::Array(GgufArray::F32(vec![0.5, -0.0, 3.25])),
        ),
        kv(
            "t.a.bool",
            GgufValue::Array(GgufArray::Bool(vec![true, false])),
        ),
        kv("t.a.u64", GgufValue::Array(GgufArray::U64(vec![1 << 40]))),
        kv(
            "t.a.i64",
            GgufValue::Array(GgufArray::I64(vec![-(1 << 40)])),
        ),
        kv("t.a.f64", GgufValue::Array(GgufArray::F64(vec![1e300]))),
        kv(
            "t.a.str",
            GgufValue::Array(GgufArray::String(vec![
                "a b".into(),
                "".into(),
                "Ġx".into(),
            ])),
        ),
        kv("t.a.empty", GgufValue::Array(GgufArray::String(vec![]))),
    ]
}

fn specs() -> Vec<(GgufTensorSpec, Vec<u8>)> {
    let mk = |name: &str, dims: Vec<u64>, ty: u32, n: u64, seed: u64| {
        (
            GgufTensorSpec {
                name: name.into(),
                dims,
                ggml_type: ty,
                n_bytes: n,
            },
            rand_bytes(seed, n as usize),
        )
    };
    vec![
        mk(
            "token_embd.weight",
            vec![64, 10],
            ggml_type::Q8_0,
            2 * 34 * 10,
            1,
        ),
        mk("output_norm.weight", vec![7], ggml_type::F32, 28, 2),
        mk(
            "blk.0.attn_q.weight",
            vec![256, 3],
            ggml_type::Q4_K,
            144 * 3,
            3,
        ),
        mk("h", vec![3, 1, 1, 5], ggml_type::F16, 30, 4),
        mk("empty", vec![0], ggml_type::F32, 0, 5),
    ]
}

fn write(path: &Path, kv: &[(String, GgufValue)], t: &[(GgufTensorSpec, Vec<u8>)]) {
    let sp: Vec<_> = t.iter().map(|(s, _)| s.clone()).collect();
    let mut w = GgufWriter::create(path, kv, &sp, &[]).unwrap();
    for (s, d) in t {
        w.write_tensor(&s.name, d).unwrap();
    }
    w.finish().unwrap();
}

#[test]
fn write_read_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.gguf");
    let kv = all_kinds_kv();
    let t = specs();
    write(&p, &kv, &t);
    let f = GgufFile::open(&p).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.metadata(), &kv[..]);
    assert_eq!(f.alignment(), 64);
    assert!(f.strict_offsets());
    assert_eq!(f.data_offset() % 64, 0);
    assert_eq!(f.tensors().len(), t.len());
    let mut expect_off = 0;
    for (info, (s, d)) in f.tensors().iter().zip(&t) {
        assert_eq!(info.name, s.name);
        assert_eq!(info.dims, s.dims);
        assert_eq!(info.ggml_type, s.ggml_type);
        assert_eq!(info.n_bytes, s.n_bytes);
        assert_eq!(info.offset, expect_off);
        expect_off += s.n_bytes.div_ceil(64) * 64;
        assert_eq!(f.tensor_data(info), &d[..]);
    }
    // File ends right after the last padded tensor, padding is zero.
    let bytes = std::fs::read(&p).unwrap();
    assert_eq!(bytes.len() as u64, f.data_offset() + expect_off);
    let last_q = &f.tensors()[3];
    let pad_start = (f.data_offset() + last_q.offset + last_q.n_bytes) as usize;
    assert!(bytes[pad_start..].iter().all(|&b| b == 0));
    // Typed getters are type-exact.
    assert_eq!(f.get_u32("t.u32"), Some(4_000_000_000));
    assert_eq!(f.get_u32("t.u64"), None);
    assert_eq!(f.get_f32("t.f32"), Some(1e-5));
    assert_eq!(f.get_str("t.str"), Some("héllo ✓"));
    assert_eq!(f.get_array_str("t.a.str").unwrap()[2], "Ġx");
    assert_eq!(f.get_array_i32("t.a.i32"), Some(&[1, -3][..]));
    assert_eq!(f.get_bool("t.bool"), Some(true));
    assert_eq!(f.tensor("h").unwrap().shape_rowmajor(), vec![5, 1, 1, 3]);
    // The in-memory parser agrees with the mmap one.
    let g = GgufFile::parse(&bytes).unwrap();
    assert_eq!(g.metadata(), f.metadata());
    assert_eq!(g.tensors(), f.tensors());
}

#[test]
fn deterministic_and_default_alignment() {
    let dir = tempfile::tempdir().unwrap();
    let kv: Vec<_> = all_kinds_kv()
        .into_iter()
        .filter(|(k, _)| k != "general.alignment")
        .collect();
    let (a, b) = (dir.path().join("a.gguf"), dir.path().join("b.gguf"));
    write(&a, &kv, &specs());
    write(&b, &kv, &specs());
    let (x, y) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert_eq!(x, y);
    let f = GgufFile::parse(&x).unwrap();
    assert_eq!(f.alignment(), 32);
    assert!(f.strict_offsets());
    assert_eq!(f.tensors()[1].offset, 704); // 680 bytes of Q8_0 padded to 32
                                            // Only the final file remains in the folder (temp file renamed).
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn writer_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.gguf");
    let input = dir.path().join("in.gguf");
    std::fs::write(&input, b"precious").unwrap();
    let sp: Vec<_> = specs().into_iter().map(|(s, _)| s).collect();
    let kv = all_kinds_kv();

    // Protected path, also through a `..` detour.
    let detour = dir.path().join("sub/../in.gguf");
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    for target in [&input, &detour] {
        let e = GgufWriter::create(target, &kv, &sp, &[input.as_path()]).unwrap_err();
        assert!(matches!(e, GgufError::ProtectedPath(_)));
    }
    assert_eq!(std::fs::read(&input).unwrap(), b"precious");

    let err = |kv: &[(String, GgufValue)], sp: &[GgufTensorSpec]| {
        GgufWriter::create(&out, kv, sp, &[]).unwrap_err()
    };
    let mut dup = kv.clone();
    dup.push(("t.u8".into(), GgufValue::U8(1)));
    assert!(matches!(err(&dup, &sp), GgufError::DuplicateKey(_)));
    let mut al = kv.clone();
    al[1].1 = GgufValue::U32(48);
    assert!(matches!(err(&al, &sp), GgufError::BadAlignment(48)));
    al[1].1 = GgufValue::U64(64);
    assert!(matches!(err(&al, &sp), GgufError::AlignmentWrongType));
    let mut bad = sp.clone();
    bad[0].n_bytes += 1;
    assert!(matches!(err(&kv, &bad), GgufError::SizeMismatch { .. }));
    let mut bad = sp.clone();
    bad[1].name = bad[0].name.clone();
    assert!(matches!(err(&kv, &bad), GgufError::DuplicateTensorName(_)));
    let mut bad = sp.clone();
    bad[1].name = "x".repeat(64);
    assert!(matches!(err(&kv, &bad), GgufError::BadTensorName { .. }));
    let mut bad = sp.clone();
    bad[1].dims = vec![1; 5];
    assert!(matches!(err(&kv, &bad), GgufError::TooManyDims { .. }));
    let mut bad = sp.clone();
    bad[0].dims = vec![33, 10];
    assert!(matches!(
        err(&kv, &bad),
        GgufError::RowNotBlockMultiple { .. }
    ));

    // Streaming order and size checks; an abandoned writer leaves no file.
    let t = specs();
    let mut w = GgufWriter::create(&out, &kv, &sp, &[]).unwrap();
    assert!(matches!(
        w.write_tensor("output_norm.weight", &t[1].1),
        Err(GgufError::TensorOrder { .. })
    ));
    assert!(matches!(
        w.write_tensor("token_embd.weight", &t[0].1[1..]),
        Err(GgufError::SizeMismatch { .. })
    ));
    w.write_tensor("token_embd.weight", &t[0].1).unwrap();
    assert!(matches!(
        w.finish(),
        Err(GgufError::MissingTensors { missing: 4 })
    ));
    assert!(!out.exists());
    let mut w = GgufWriter::create(&out, &kv, &sp[..1], &[]).unwrap();
    w.write_tensor("token_embd.weight", &t[0].1).unwrap();
    assert!(matches!(
        w.write_tensor("token_embd.weight", &t[0].1),
        Err(GgufError::TensorOrder { .. })
    ));
    drop(w);
    assert!(!out.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2); // in.gguf + sub
}
