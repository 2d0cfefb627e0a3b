//! GGUF -> `.tpk` / safetensors import: round trips, kept blocks, HF names, error exits.

mod gguf_common;

use std::process::Command;

use gguf_common::*;
use serde_json::Value;
use tenpak::codec::ggml::{self, GgmlType};
use tenpak::codec::staged::Stage;
use tenpak::import::gguf::{import_gguf_to_safetensors, import_gguf_to_tpk};
use tenpak::TpkFile;
use tenpak_converters::safetensors::SafetensorsModel;

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn f32_round_trip_is_identical() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let model = tiny(&tmp.path().join("tiny"));
    let a = tmp.path().join("a.tpk");
    to_tpk(&model, &a, "f32");
    let g = tmp.path().join("a.gguf");
    let rep = to_gguf(&a, &g, "f32");
    assert!(rep.warnings.is_empty(), "{:?}", rep.warnings);
    let b = tmp.path().join("b.tpk");
    let irep = import_gguf_to_tpk(&g, &b, false).expect("import");
    assert!(irep.tensors.iter().any(|t| t.unpermuted));
    let (fa, fb) = (TpkFile::open(&a).expect("a"), TpkFile::open(&b).expect("b"));
    assert_eq!(fa.tensor_count(), fb.tensor_count());
    for t in fa.tensors() {
        let u = fb.tensor(t.name()).expect("same HF name");
        assert_eq!(t.shape(), u.shape());
        assert_eq!(
            bits(&t.to_f32_vec().expect("a")),
            bits(&u.to_f32_vec().expect("b")),
            "{}",
            t.name()
        );
    }
    let (ma, mb) = (fa.metadata().expect("ma"), fb.metadata().expect("mb"));
    for k in [
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "vocab_size",
        "max_position_embeddings",
    ] {
        assert_eq!(ma["config"][k], mb["config"][k], "config {k}");
    }
    assert_eq!(
        ma["tokenizer"]["model"]["vocab"], mb["tokenizer"]["model"]["vocab"],
        "vocab"
    );
    assert_eq!(
        ma["tokenizer"]["model"]["merges"].as_array().map(Vec::len),
        mb["tokenizer"]["model"]["merges"].as_array().map(Vec::len),
        "merges"
    );

    // The same file as a safetensors folder gives the same values and config.json.
    let dir = tmp.path().join("st");
    import_gguf_to_safetensors(&g, &dir).expect("import st");
    let st = SafetensorsModel::open(&dir).expect("open st");
    for t in st.tensors() {
        let mut v = vec![0f32; t.shape.iter().product()];
        st.read_f32_into(t, &mut v, false).expect("read");
        let want = fa.tensor(&t.name).expect("name").to_f32_vec().expect("a");
        assert_eq!(bits(&v), bits(&want), "{}", t.name);
    }
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).expect("cfg"))
            .expect("json");
    assert_eq!(cfg["hidden_size"], ma["config"]["hidden_size"]);
}

#[test]
fn kept_q8_0_blocks_are_identical() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let model = wide(&tmp.path().join("wide"));
    let a = tmp.path().join("a.tpk");
    to_tpk(&model, &a, "f32");
    let g = tmp.path().join("a.gguf");
    to_gguf(&a, &g, "q8_0");
    let b = tmp.path().join("b.tpk");
    import_gguf_to_tpk(&g, &b, true).expect("import");
    let (fa, fb) = (TpkFile::open(&a).expect("a"), TpkFile::open(&b).expect("b"));
    let mut kept = 0;
    for t in fa.tensors().filter(|t| t.shape().len() == 2) {
        let u = fb.tensor(t.name()).expect("name");
        assert_eq!(
            u.stages().expect("stages"),
            vec![Stage::Ggml {
                type_id: GgmlType::Q8_0.id()
            }]
        );
        // Quantizing the original HF rows gives exactly the imported (un-permuted) blocks.
        let x = t.to_f32_vec().expect("a");
        let cols = t.shape()[1] as usize;
        let rb = ggml::row_bytes(GgmlType::Q8_0, cols).expect("fits");
        let mut want = vec![0u8; x.len() / cols * rb];
        for (s, d) in x.chunks_exact(cols).zip(want.chunks_exact_mut(rb)) {
            ggml::quantize_row(GgmlType::Q8_0, s, None, d).expect("quantize");
        }
        assert_eq!(
            u.section(0).expect("sec").bytes(),
            want.as_slice(),
            "{}",
            t.name()
        );
        kept += 1;
    }
    assert_eq!(kept, 9);
}

#[test]
fn garbage_and_truncated_gguf_exit_2_with_one_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let model = tiny(&tmp.path().join("tiny"));
    let a = tmp.path().join("a.tpk");
    to_tpk(&model, &a, "f16");
    let g = tmp.path().join("a.gguf");
    to_gguf(&a, &g, "auto");
    let full = std::fs::read(&g).expect("read");
    let trunc = tmp.path().join("trunc.gguf");
    std::fs::write(&trunc, &full[..full.len() / 2]).expect("write");
    let garbage = tmp.path().join("garbage.gguf");
    std::fs::write(
        &garbage,
        b"GGUF\x03\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff",
    )
    .expect("w");
    for bad in [&trunc, &garbage] {
        let o = Command::new(env!("CARGO_BIN_EXE_tpk"))
            .arg("import")
            .arg(bad)
            .arg("-o")
            .arg(tmp.path().join("out.tpk"))
            .output()
            .expect("tpk runs");
        assert_eq!(o.status.code(), Some(2), "{}", bad.display());
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(!tmp.path().join("out.tpk").exists());
    }
}

#[test]
fn gguf_py_written_file_imports_with_hf_names_and_unpermuted_rows() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wide");
    let model = wide(&dir);
    let g = tmp.path().join("py.gguf");
    let (d, o) = (dir.to_string_lossy(), g.to_string_lossy());
    if python("gguf_write.py", &[&d, &o]).is_none() {
        return;
    }
    let b = tmp.path().join("b.tpk");
    let rep = import_gguf_to_tpk(&g, &b, false).expect("import");
    assert_eq!(rep.tensors.iter().filter(|t| t.unpermuted).count(), 2);
    let fb = TpkFile::open(&b).expect("b");
    let st = SafetensorsModel::open(&model).expect("st");
    assert_eq!(fb.tensor_count(), st.tensors().len());
    for t in st.tensors() {
        let mut x = vec![0f32; t.shape.iter().product()];
        st.read_f32_into(t, &mut x, false).expect("read");
        let cols = *t.shape.last().expect("shape");
        let want: Vec<f32> = if t.name.contains("norm") || t.name.contains("mlp") {
            x.clone()
        } else if t.name.contains("embed") || t.name.contains("lm_head") {
            x.iter().map(|v| half::f16::from_f32(*v).to_f32()).collect()
        } else {
            let rb = ggml::row_bytes(GgmlType::Q8_0, cols).expect("fits");
            let mut q = vec![0u8; rb];
            let mut out = vec![0f32; x.len()];
            for (s, d) in x.chunks_exact(cols).zip(out.chunks_exact_mut(cols)) {
                ggml::quantize_row(GgmlType::Q8_0, s, None, &mut q).expect("quantize");
                ggml::dequantize_row(GgmlType::Q8_0, &q, d).expect("dequantize");
            }
            out
        };
        let u = fb.tensor(&t.name).expect("HF name");
        assert_eq!(
            bits(&u.to_f32_vec().expect("decode")),
            bits(&want),
            "{}",
            t.name
        );
    }
    let m = fb.metadata().expect("meta");
    assert_eq!(m["config"]["hidden_size"], 256);
    assert_eq!(m["config"]["num_attention_heads"], 4);
    assert_eq!(m["config"]["num_key_value_heads"], 2);
    assert_eq!(m["config"]["intermediate_size"], 512);
    assert_eq!(m["config"]["num_hidden_layers"], 1);
    assert!(m["tokenizer"]["model"]["vocab"].is_object());
}
