//! One crafted file per reader error variant: each must be refused with that exact variant,
//! naming the file (and the tensor where there is one), never a panic.

use std::path::{Path, PathBuf};

use tenpak_converters::safetensors::{
    Dtype, SafetensorsError as E, SafetensorsModel, SafetensorsWriter,
};

fn st(header: &str, data: &[u8]) -> Vec<u8> {
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    v.extend_from_slice(data);
    v
}

fn open_bytes(dir: &Path, bytes: &[u8]) -> (PathBuf, Result<SafetensorsModel, E>) {
    let p = dir.join("x.safetensors");
    std::fs::write(&p, bytes).unwrap();
    let r = SafetensorsModel::open(&p);
    (p, r)
}

fn err_of(bytes: &[u8]) -> (PathBuf, E) {
    let dir = tempfile::tempdir().unwrap();
    let (p, r) = open_bytes(dir.path(), bytes);
    let e = r.expect_err("must be refused");
    let msg = e.to_string();
    assert!(
        msg.contains("x.safetensors"),
        "error must name the file: {msg}"
    );
    (p, e)
}

const T: &str = r#""dtype":"F32","shape":[2],"data_offsets":[0,8]"#;

#[test]
fn truncated_and_header_length_errors() {
    assert!(matches!(err_of(&[]).1, E::Truncated { len: 0, .. }));
    assert!(matches!(err_of(&[1, 2, 3]).1, E::Truncated { len: 3, .. }));
    let mut past = 1000u64.to_le_bytes().to_vec();
    past.extend_from_slice(b"{}");
    assert!(matches!(
        err_of(&past).1,
        E::HeaderPastEof {
            header_len: 1000,
            file_len: 10,
            ..
        }
    ));
    let mut big = 100_000_001u64.to_le_bytes().to_vec();
    big.extend_from_slice(b"{}");
    assert!(matches!(
        err_of(&big).1,
        E::HeaderTooLarge {
            len: 100_000_001,
            ..
        }
    ));
    let mut huge = u64::MAX.to_le_bytes().to_vec();
    huge.extend_from_slice(b"{}");
    assert!(matches!(err_of(&huge).1, E::HeaderTooLarge { .. }));
}

#[test]
fn header_content_errors() {
    let mut nu = 4u64.to_le_bytes().to_vec();
    nu.extend_from_slice(&[b'{', 0xff, 0xfe, b'}']);
    assert!(matches!(err_of(&nu).1, E::HeaderNotUtf8 { .. }));
    assert!(matches!(err_of(&st("{\"a\":", &[])).1, E::BadJson { .. }));
    assert!(matches!(err_of(&st("[]", &[])).1, E::BadJson { .. }));
    assert!(matches!(
        err_of(&st(r#"{"a":3}"#, &[])).1,
        E::BadJson { .. }
    ));
    assert!(matches!(
        err_of(&st(r#"{"__metadata__":{"k":1}}"#, &[])).1,
        E::BadJson { .. }
    ));
    for h in [
        r#"{"a":{"dtype":"F32","shape":[2]}}"#,
        r#"{"a":{"shape":[2],"data_offsets":[0,8]}}"#,
        r#"{"a":{"dtype":"F32","data_offsets":[0,8]}}"#,
        r#"{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#,
        r#"{"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}}"#,
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8,9]}}"#,
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}}"#,
        r#"{"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
        r#"{"a":{"dtype":3,"shape":[2],"data_offsets":[0,8]}}"#,
    ] {
        let (_, e) = err_of(&st(h, &[0; 8]));
        assert!(
            matches!(&e, E::BadTensorEntry { tensor, .. } if tensor == "a"),
            "{h}: {e}"
        );
    }
    let (_, e) = err_of(&st(
        r#"{"a":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}}"#,
        &[0; 8],
    ));
    assert!(matches!(&e, E::UnknownDtype { tensor, dtype, .. } if tensor == "a" && dtype == "F33"));
}

#[test]
fn shape_and_offset_errors() {
    let e = |h: &str, n: usize| err_of(&st(h, &vec![0u8; n])).1;
    assert!(matches!(
        e(
            r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}}"#,
            8
        ),
        E::ShapeOverflow { .. }
    ));
    assert!(matches!(
        e(
            r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
            8
        ),
        E::ByteLengthMismatch {
            expected: 12,
            actual: 8,
            ..
        }
    ));
    assert!(matches!(
        e(
            r#"{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}"#,
            8
        ),
        E::OffsetsReversed {
            begin: 8,
            end: 0,
            ..
        }
    ));
    // Overlap: b starts inside a.
    let overlap =
        format!(r#"{{"a":{{{T}}},"b":{{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}}}"#);
    assert!(matches!(
        e(&overlap, 12),
        E::OffsetsNotContiguous {
            expected: 8,
            begin: 4,
            ..
        }
    ));
    // Lying offsets leaving a gap at the start.
    assert!(matches!(
        e(
            r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
            8
        ),
        E::OffsetsNotContiguous {
            expected: 0,
            begin: 4,
            ..
        }
    ));
    // Past the end of the file (truncated data).
    assert!(matches!(
        e(
            r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,
            11
        ),
        E::OffsetsOutOfBounds {
            end: 16,
            data_len: 11,
            ..
        }
    ));
    assert!(matches!(
        e(&format!(r#"{{"a":{{{T}}}}}"#), 12),
        E::TrailingBytes {
            data_len: 12,
            covered: 8,
            ..
        }
    ));
    let dup = format!(r#"{{"a":{{{T}}},"a":{{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}}}"#);
    assert!(matches!(e(&dup, 16), E::DuplicateTensor { .. }));
}

#[test]
fn every_fixture_malformed_file_is_refused() {
    let cases = tenpak_fixtures::malformed_safetensors();
    assert!(cases.len() >= 20);
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in cases {
        let (_, r) = open_bytes(dir.path(), &bytes);
        assert!(r.is_err(), "{name} was accepted");
    }
}

fn sharded(dtype: tenpak_fixtures::Dtype) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    tenpak_fixtures::write_llama_sharded(dir.path(), dtype, 2).unwrap();
    dir
}

fn edit_index(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("model.safetensors.index.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
}

#[test]
fn index_errors() {
    let s1 = "model-00001-of-00002.safetensors";
    let s2 = "model-00002-of-00002.safetensors";
    // Missing shard file.
    let d = sharded(tenpak_fixtures::Dtype::F16);
    std::fs::remove_file(d.path().join(s2)).unwrap();
    assert!(
        matches!(SafetensorsModel::open(d.path()), Err(E::IndexMissingShard { shard, .. }) if shard == s2)
    );
    // Index lists a tensor no shard has.
    let d = sharded(tenpak_fixtures::Dtype::F16);
    edit_index(d.path(), |v| v["weight_map"]["ghost.weight"] = s1.into());
    assert!(
        matches!(SafetensorsModel::open(d.path()), Err(E::IndexMissingTensor { tensor, .. }) if tensor == "ghost.weight")
    );
    // Index omits a tensor, or maps it to the wrong shard.
    let d = sharded(tenpak_fixtures::Dtype::F16);
    edit_index(d.path(), |v| {
        v["weight_map"]
            .as_object_mut()
            .unwrap()
            .remove("model.norm.weight");
    });
    assert!(
        matches!(SafetensorsModel::open(d.path()), Err(E::IndexUnlistedTensor { tensor, .. }) if tensor == "model.norm.weight")
    );
    let d = sharded(tenpak_fixtures::Dtype::F16);
    edit_index(d.path(), |v| {
        let wm = v["weight_map"].as_object_mut().unwrap();
        let cur = wm["lm_head.weight"].as_str().unwrap().to_string();
        wm["lm_head.weight"] = if cur == s1 { s2 } else { s1 }.into();
    });
    assert!(matches!(
        SafetensorsModel::open(d.path()),
        Err(E::IndexUnlistedTensor { .. })
    ));
    // Path traversal in a shard name.
    let d = sharded(tenpak_fixtures::Dtype::F16);
    edit_index(d.path(), |v| {
        v["weight_map"]["lm_head.weight"] = "../evil.safetensors".into()
    });
    assert!(matches!(
        SafetensorsModel::open(d.path()),
        Err(E::IndexBadShardName { .. })
    ));
    // Malformed index JSON.
    let d = sharded(tenpak_fixtures::Dtype::F16);
    std::fs::write(
        d.path().join("model.safetensors.index.json"),
        "{\"weight_map\": [",
    )
    .unwrap();
    assert!(matches!(
        SafetensorsModel::open(d.path()),
        Err(E::BadJson { .. })
    ));
    // Duplicate key inside weight_map.
    std::fs::write(
        d.path().join("model.safetensors.index.json"),
        format!(r#"{{"weight_map": {{"lm_head.weight": "{s1}", "lm_head.weight": "{s2}"}}}}"#),
    )
    .unwrap();
    assert!(matches!(
        SafetensorsModel::open(d.path()),
        Err(E::DuplicateTensor { .. })
    ));
}

#[test]
fn duplicate_tensor_across_shards() {
    let d = tempfile::tempdir().unwrap();
    let one = [0u8; 8];
    for s in ["a-1.safetensors", "a-2.safetensors"] {
        std::fs::write(d.path().join(s), st(&format!(r#"{{"w":{{{T}}}}}"#), &one)).unwrap();
    }
    std::fs::write(
        d.path().join("model.safetensors.index.json"),
        r#"{"metadata":{},"weight_map":{"w":"a-1.safetensors","x":"a-2.safetensors"}}"#,
    )
    .unwrap();
    let e = SafetensorsModel::open(d.path()).unwrap_err();
    assert!(
        matches!(&e, E::DuplicateTensor { tensor, first, second }
            if tensor == "w" && first.ends_with("a-1.safetensors") && second.ends_with("a-2.safetensors")),
        "{e}"
    );
}

#[test]
fn not_found_and_io() {
    let d = tempfile::tempdir().unwrap();
    assert!(matches!(
        SafetensorsModel::open(d.path()),
        Err(E::NotFound { .. })
    ));
    assert!(matches!(
        SafetensorsModel::open(d.path().join("nope.safetensors")),
        Err(E::Io { .. })
    ));
}

#[test]
fn non_finite_refused_unless_allowed_and_other_read_errors() {
    let d = tempfile::tempdir().unwrap();
    let vals = [1.0f32, f32::NAN, 2.0, f32::INFINITY, 3.0, 4.0];
    let f32b: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
    let f16b: Vec<u8> = vals
        .iter()
        .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
        .collect();
    SafetensorsWriter::write_all(
        d.path(),
        None,
        &[],
        &[
            ("nan32", Dtype::F32, &[3, 2], &f32b),
            ("nan16", Dtype::F16, &[3, 2], &f16b),
        ],
    )
    .unwrap();
    // An integer tensor is listable but not convertible: append one by hand-writing a file.
    let m = SafetensorsModel::open(d.path()).unwrap();
    for name in ["nan32", "nan16"] {
        let t = m.tensor(name).unwrap();
        let mut out = vec![0f32; 6];
        let e = m.read_f32_into(t, &mut out, false).unwrap_err();
        assert!(
            matches!(&e, E::NonFinite { tensor, index: 1, .. } if tensor == name),
            "{e}"
        );
        assert!(e.to_string().contains("model.safetensors"));
        m.read_f32_into(t, &mut out, true).unwrap();
        assert!(out[1].is_nan() && out[3] == f32::INFINITY && out[5] == 4.0);
        // Row reads report the index within the whole tensor; row 2 is clean.
        let mut row = vec![0f32; 2];
        assert!(matches!(
            m.read_rows_f32(t, 1..2, &mut row, false),
            Err(E::NonFinite { index: 3, .. })
        ));
        m.read_rows_f32(t, 2..3, &mut row, false).unwrap();
        assert_eq!(row, [3.0, 4.0]);
        assert!(matches!(
            m.read_rows_f32(t, 2..4, &mut row, false),
            Err(E::RowRange { .. })
        ));
        assert!(matches!(
            m.read_f32_into(t, &mut row, true),
            Err(E::OutputLength {
                expected: 6,
                actual: 2,
                ..
            })
        ));
        let mut forged = t.clone();
        forged.byte_range.end += 1000;
        assert!(matches!(m.raw_bytes(&forged), Err(E::ForeignTensor { .. })));
    }
    let (_, r) = open_bytes(
        d.path(),
        &st(
            r#"{"ids":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}}"#,
            &[0; 8],
        ),
    );
    let m = r.unwrap();
    let t = m.tensor("ids").unwrap();
    assert_eq!(m.raw_bytes(t).unwrap(), &[0u8; 8]);
    let mut out = vec![0f32; 2];
    let e = m.read_f32_into(t, &mut out, true).unwrap_err();
    assert!(
        matches!(&e, E::UnsupportedDtype { tensor, dtype: Dtype::I32, .. } if tensor == "ids"),
        "{e}"
    );
}
