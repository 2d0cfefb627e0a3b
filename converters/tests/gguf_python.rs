//! Conformance with llama.cpp's own Python `gguf` package (pip install gguf numpy):
//! (i) files we write are read by `gguf.GGUFReader` with the same KVs (types and
//! values), tensor names, ne-order dims, types and bytes; (ii) files written by
//! `gguf.GGUFWriter` (F32/F16/Q8_0 tensors, string/array/u32/f32/... KVs) are read by our
//! reader with the same values.
//!
//! The interpreter is `$TENPAK_PYTHON` (default `python3`). Without `gguf`/`numpy` the
//! tests print a skip line and pass, unless `TENPAK_REQUIRE_PY=1` (set in CI).

mod gguf_common;

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};
use tenpak_converters::gguf::{
    ggml_type, llama_arch_kv, GgufArray, GgufFile, GgufTensorSpec, GgufValue, GgufWriter,
};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/gguf_conformance.py");

fn python() -> Option<String> {
    let py = std::env::var("TENPAK_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&py)
        .args(["-c", "import gguf, numpy"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if ok {
        return Some(py);
    }
    if std::env::var("TENPAK_REQUIRE_PY").as_deref() == Ok("1") {
        panic!("TENPAK_REQUIRE_PY=1 but {py} cannot import gguf and numpy");
    }
    eprintln!("SKIP gguf python conformance: {py} cannot import gguf/numpy (set TENPAK_PYTHON)");
    None
}

fn run(py: &str, mode: &str, path: &Path) -> Value {
    let out = Command::new(py)
        .arg(SCRIPT)
        .arg(mode)
        .arg(path)
        .output()
        .expect("spawning the interpreter that just imported gguf");
    assert!(
        out.status.success(),
        "python {mode} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the script prints one JSON document")
}

fn f32j(x: f32) -> Value {
    json!(f64::from(x))
}

/// Our value in the script's JSON shape: (type, elem_type, value).
fn value_json(v: &GgufValue) -> (u32, Option<u32>, Value) {
    let val = match v {
        GgufValue::U8(x) => json!(x),
        GgufValue::I8(x) => json!(x),
        GgufValue::U16(x) => json!(x),
        GgufValue::I16(x) => json!(x),
        GgufValue::U32(x) => json!(x),
        GgufValue::I32(x) => json!(x),
        GgufValue::F32(x) => f32j(*x),
        GgufValue::Bool(x) => json!(x),
        GgufValue::String(x) => json!(x),
        GgufValue::U64(x) => json!(x),
        GgufValue::I64(x) => json!(x),
        GgufValue::F64(x) => json!(x),
        GgufValue::Array(a) => match a {
            GgufArray::U8(v) => json!(v),
            GgufArray::I8(v) => json!(v),
            GgufArray::U16(v) => json!(v),
            GgufArray::I16(v) => json!(v),
            GgufArray::U32(v) => json!(v),
            GgufArray::I32(v) => json!(v),
            GgufArray::F32(v) => Value::Array(v.iter().map(|&x| f32j(x)).collect()),
            GgufArray::Bool(v) => json!(v),
            GgufArray::String(v) => json!(v),
            GgufArray::U64(v) => json!(v),
            GgufArray::I64(v) => json!(v),
            GgufArray::F64(v) => json!(v),
        },
    };
    let elem = match v {
        GgufValue::Array(a) => Some(a.elem_type()),
        _ => None,
    };
    (v.type_id(), elem, val)
}

fn kv_json(kv: &[(String, GgufValue)]) -> Value {
    Value::Array(
        kv.iter()
            .map(|(k, v)| {
                let (t, e, val) = value_json(v);
                let mut o = json!({"key": k, "type": t, "value": val});
                if let Some(e) = e {
                    o["elem_type"] = json!(e);
                }
                o
            })
            .collect(),
    )
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn ours_as_json(f: &GgufFile) -> Value {
    let tensors: Vec<Value> = f
        .tensors()
        .iter()
        .map(|t| {
            json!({"name": t.name, "dims": t.dims, "type": t.ggml_type,
                   "n_bytes": t.n_bytes, "data_hex": hex(f.tensor_data(t))})
        })
        .collect();
    json!({"alignment": f.alignment(), "kv": kv_json(f.metadata()), "tensors": tensors})
}

#[test]
fn file_we_write_is_read_by_gguf_py() {
    let Some(py) = python() else { return };
    let cfg = json!({"architectures":["LlamaForCausalLM"],"model_type":"llama",
        "hidden_size":576,"intermediate_size":1536,"max_position_embeddings":8192,
        "num_attention_heads":9,"num_hidden_layers":30,"num_key_value_heads":3,
        "rms_norm_eps":1e-05,"rope_theta":100000,"vocab_size":49152});
    let mut kv = llama_arch_kv(&cfg, "tenpak-written", 7, 64).unwrap();
    let s = |k: &str, v| (k.to_string(), v);
    kv.extend([
        s("t.u8", GgufValue::U8(200)),
        s("t.i8", GgufValue::I8(-100)),
        s("t.u16", GgufValue::U16(60_000)),
        s("t.i16", GgufValue::I16(-30_000)),
        s("t.i32", GgufValue::I32(i32::MIN)),
        s("t.bool", GgufValue::Bool(false)),
        s("t.u64", GgufValue::U64(u64::MAX)),
        s("t.i64", GgufValue::I64(i64::MIN)),
        s("t.f64", GgufValue::F64(-0.1)),
        s(
            "tokenizer.ggml.tokens",
            GgufValue::Array(GgufArray::String(vec![
                "<s>".into(),
                "Ġé".into(),
                "a b".into(),
            ])),
        ),
        s(
            "tokenizer.ggml.token_type",
            GgufValue::Array(GgufArray::I32(vec![3, 1, 1])),
        ),
        s(
            "tokenizer.ggml.scores",
            GgufValue::Array(GgufArray::F32(vec![0.0, -1.25, 1e-3])),
        ),
        s("t.a.u8", GgufValue::Array(GgufArray::U8(vec![0, 255]))),
        s("t.a.i16", GgufValue::Array(GgufArray::I16(vec![-2, 3]))),
        s("t.a.u64", GgufValue::Array(GgufArray::U64(vec![u64::MAX]))),
        s("t.a.f64", GgufValue::Array(GgufArray::F64(vec![1.5, -2.0]))),
        s(
            "t.a.bool",
            GgufValue::Array(GgufArray::Bool(vec![true, false])),
        ),
    ]);
    let tensors = [
        (
            "token_embd.weight",
            vec![64u64, 3],
            ggml_type::Q8_0,
            2 * 34 * 3,
        ),
        ("output_norm.weight", vec![7], ggml_type::F32, 28),
        ("blk.0.attn_q.weight", vec![256, 2], ggml_type::Q4_K, 288),
        ("blk.0.attn_v.weight", vec![5, 3], ggml_type::F16, 30),
        ("blk.0.ffn_up.weight", vec![3, 2], ggml_type::BF16, 12),
        ("blk.0.ffn_down.weight", vec![32, 1, 2], ggml_type::Q4_0, 36),
    ];
    let specs: Vec<GgufTensorSpec> = tensors
        .iter()
        .map(|(n, d, t, b)| GgufTensorSpec {
            name: n.to_string(),
            dims: d.clone(),
            ggml_type: *t,
            n_bytes: *b,
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ours.gguf");
    let mut w = GgufWriter::create(&path, &kv, &specs, &[]).unwrap();
    let mut expect_t = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        let data = gguf_common::rand_bytes(i as u64 + 10, s.n_bytes as usize);
        w.write_tensor(&s.name, &data).unwrap();
        expect_t.push(json!({"name": s.name, "dims": s.dims, "type": s.ggml_type,
                             "n_bytes": s.n_bytes, "data_hex": hex(&data)}));
    }
    w.finish().unwrap();

    let got = run(&py, "read", &path);
    let expect = json!({"alignment": 64, "kv": kv_json(&kv), "tensors": expect_t});
    assert_eq!(got["alignment"], expect["alignment"]);
    let (gk, ek) = (
        got["kv"].as_array().unwrap(),
        expect["kv"].as_array().unwrap(),
    );
    assert_eq!(gk.len(), ek.len());
    for (g, e) in gk.iter().zip(ek) {
        assert_eq!(g, e);
    }
    assert_eq!(got["tensors"], expect["tensors"]);
}

#[test]
fn file_gguf_py_writes_is_read_by_us() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("py.gguf");
    let expect = run(&py, "write", &path);
    let f = GgufFile::open(&path).unwrap();
    assert!(
        f.strict_offsets(),
        "gguf-py packs tensors the llama.cpp way"
    );
    let got = ours_as_json(&f);
    let (gk, ek) = (
        got["kv"].as_array().unwrap(),
        expect["kv"].as_array().unwrap(),
    );
    assert_eq!(gk.len(), ek.len(), "{got}");
    for (g, e) in gk.iter().zip(ek) {
        assert_eq!(g, e);
    }
    assert_eq!(got["tensors"], expect["tensors"]);
    assert_eq!(f.tensors().len(), 3);
    // Also read back through the reader in the other direction (py read of py file) to
    // pin that both readers agree on the same bytes.
    let py_read = run(&py, "read", &path);
    assert_eq!(py_read["tensors"], got["tensors"]);
    assert_eq!(py_read["kv"], got["kv"]);
}
