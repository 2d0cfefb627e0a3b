//! Shared helpers of the GGUF tests: models, conversion, export, python runner.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tenpak::convert::{convert, ConvertOptions, Policy};
use tenpak::export::gguf::{export_gguf, ExportType, GgufExportOptions, GgufExportReport};
use tenpak::TpkFile;
use tenpak_converters::safetensors::{Dtype as StDtype, SafetensorsWriter};
use tenpak_fixtures::{write_llama_tiny, Dtype};

/// The fixture model (hidden 80) in `dir`; returns the safetensors path.
pub fn tiny(dir: &Path) -> PathBuf {
    write_llama_tiny(dir, Dtype::F16).expect("fixture writes to a temp dir")
}

/// A one-layer LLaMA whose rows are multiples of 256 (K-quants fit): hidden 256, 4 heads,
/// 2 KV heads, ffn 512, vocab 288, with the fixture's tokenizer and an f32 safetensors.
pub fn wide(dir: &Path) -> PathBuf {
    let src = dir.join("fixture");
    tiny(&src);
    std::fs::create_dir_all(dir).expect("temp dir");
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(src.join(f), dir.join(f)).expect("copy side file");
    }
    let cfg_text = std::fs::read_to_string(src.join("config.json")).expect("fixture config");
    let mut cfg: Value = serde_json::from_str(&cfg_text).expect("fixture config is JSON");
    cfg["hidden_size"] = 256.into();
    cfg["intermediate_size"] = 512.into();
    cfg["num_hidden_layers"] = 1.into();
    cfg["num_attention_heads"] = 4.into();
    cfg["num_key_value_heads"] = 2.into();
    cfg["head_dim"] = 64.into();
    cfg["vocab_size"] = 288.into();
    cfg["tie_word_embeddings"] = false.into();
    cfg["torch_dtype"] = "float32".into();
    std::fs::write(dir.join("config.json"), cfg.to_string()).expect("write config");
    let shapes: Vec<(&str, Vec<usize>)> = vec![
        ("model.embed_tokens.weight", vec![288, 256]),
        ("model.layers.0.input_layernorm.weight", vec![256]),
        ("model.layers.0.self_attn.q_proj.weight", vec![256, 256]),
        ("model.layers.0.self_attn.k_proj.weight", vec![128, 256]),
        ("model.layers.0.self_attn.v_proj.weight", vec![128, 256]),
        ("model.layers.0.self_attn.o_proj.weight", vec![256, 256]),
        ("model.layers.0.post_attention_layernorm.weight", vec![256]),
        ("model.layers.0.mlp.gate_proj.weight", vec![512, 256]),
        ("model.layers.0.mlp.up_proj.weight", vec![512, 256]),
        ("model.layers.0.mlp.down_proj.weight", vec![256, 512]),
        ("model.norm.weight", vec![256]),
        ("lm_head.weight", vec![288, 256]),
    ];
    let data: Vec<Vec<u8>> = shapes
        .iter()
        .enumerate()
        .map(|(k, (name, s))| {
            let n: usize = s.iter().product();
            (0..n)
                .flat_map(|i| {
                    let v = if name.contains("norm") {
                        1.0 + 0.1 * ((i as f32) * 0.37).sin()
                    } else {
                        // Varied magnitudes so the quantizers' scale searches matter.
                        let x = ((i * 7919 + k * 104_729) % 10_007) as f32 / 10_007.0 - 0.5;
                        x * 0.08 * (1.0 + ((i / 32) % 5) as f32) + 0.01 * ((i as f32) * 0.013).sin()
                    };
                    v.to_le_bytes()
                })
                .collect()
        })
        .collect();
    let tensors: Vec<(&str, StDtype, &[usize], &[u8])> = shapes
        .iter()
        .zip(&data)
        .map(|((n, s), d)| (*n, StDtype::F32, s.as_slice(), d.as_slice()))
        .collect();
    SafetensorsWriter::write_all(dir, None, &[], &tensors).expect("write wide model");
    dir.join("model.safetensors")
}

/// Converts `input` with `codec` into `out`.
pub fn to_tpk(input: &Path, out: &Path, codec: &str) {
    let opts = ConvertOptions {
        input: input.to_path_buf(),
        output: out.to_path_buf(),
        policy: Policy::new(codec, &[], &[]).expect("valid codec"),
        allow_nonfinite: false,
        user: None,
    };
    convert(&opts, &mut |_| {}).expect("convert");
}

/// Exports `tpk` as GGUF of type `ty` into `out`.
pub fn to_gguf(tpk: &Path, out: &Path, ty: &str) -> GgufExportReport {
    let f = TpkFile::open(tpk).expect("open tpk");
    let opts = GgufExportOptions {
        output: out.to_path_buf(),
        ty: ExportType::parse(ty).expect("valid type"),
        alignment: 32,
    };
    export_gguf(&f, Some(tpk), &opts, &mut |_| {}).expect("export")
}

/// Runs a script of tests/py with python3; `None` (after a SKIP line) when python3 or the
/// gguf package is missing and TENPAK_REQUIRE_PY is not 1.
pub fn python(script: &str, args: &[&str]) -> Option<String> {
    let required = std::env::var("TENPAK_REQUIRE_PY").is_ok_and(|v| v == "1");
    let probe = Command::new("python3")
        .args(["-c", "import gguf, numpy"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        assert!(!required, "python3 with gguf and numpy is required");
        println!("SKIP: python3 with gguf/numpy not available");
        return None;
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/py")
        .join(script);
    let out = Command::new("python3")
        .arg(path)
        .args(args)
        .output()
        .expect("python3 runs");
    let so = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script} failed:\n{so}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(so)
}
