//! GGUF (llama.cpp's container): a hostile-input-safe reader, a streaming writer that
//! produces files llama.cpp's strict loader accepts, the LLaMA-family HF <-> GGUF name
//! map with the RoPE Q/K row permutation, and config/tokenizer metadata conversion.
//!
//! Tensor data are opaque bytes with a ggml type id; only block geometry (elements per
//! block, bytes per block) is known here, from [`ggml_type_info`].

mod error;
mod meta;
mod names;
mod reader;
mod types;
mod writer;

pub use error::{GgufError, Result};
pub use meta::{
    arch_needs_qk_permute, config_from_gguf, llama_arch_kv, tokenizer_config_from_gguf,
    tokenizer_json_from_gguf, tokenizer_kv, MAX_VOCAB,
};
pub use names::{
    gguf_to_hf_name, hf_to_gguf_name, permute_qk_rows, qk_proj, unpermute_qk_rows, QkProj,
};
pub use reader::{
    GgufFile, GgufLimits, GgufTensorInfo, DEFAULT_ALIGNMENT, MAX_DIMS, MAX_KEY_LEN, MAX_TENSOR_NAME,
};
pub use types::{ggml_type, ggml_type_info, value_type, GgmlTypeInfo, GgufArray, GgufValue};
pub use writer::{GgufTensorSpec, GgufWriter};

/// Fuzzing entry point: parses `data` and, if it parses, touches every value and every
/// tensor byte range and runs the metadata importers, so a fuzzer exercises all code
/// that consumes untrusted input. Never panics by contract; the result is discarded.
pub fn fuzz_parse(data: &[u8]) {
    let Ok(f) = GgufFile::parse(data) else {
        return;
    };
    let mut acc = 0u64;
    for (k, v) in f.metadata() {
        acc = acc.wrapping_add(k.len() as u64);
        acc = acc.wrapping_add(touch_value(v));
        let _ = std::hint::black_box(f.get(k));
    }
    for t in f.tensors() {
        let d = f.tensor_data(t);
        acc = acc.wrapping_add(d.len() as u64);
        acc = acc.wrapping_add(d.iter().map(|&b| u64::from(b)).sum::<u64>());
        acc = acc.wrapping_add(t.shape_rowmajor().len() as u64 + t.n_elements());
    }
    let _ = std::hint::black_box(config_from_gguf(&f));
    let _ = std::hint::black_box(tokenizer_json_from_gguf(&f));
    let _ = std::hint::black_box(tokenizer_config_from_gguf(&f));
    std::hint::black_box(acc);
}

fn touch_value(v: &GgufValue) -> u64 {
    match v {
        GgufValue::String(s) => s.len() as u64,
        GgufValue::Array(GgufArray::String(a)) => a.iter().map(|s| s.len() as u64).sum(),
        GgufValue::Array(a) => a.len() as u64,
        other => u64::from(other.type_id()),
    }
}
