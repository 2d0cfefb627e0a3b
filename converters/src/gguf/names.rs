//! HF <-> GGUF tensor names for the LLaMA family, and the RoPE Q/K row permutation.

use super::{GgufError, Result};

/// Per-layer suffix pairs (HF after `model.layers.N.`, GGUF after `blk.N.`).
const LAYER_MAP: &[(&str, &str)] = &[
    ("input_layernorm.weight", "attn_norm.weight"),
    ("self_attn.q_proj.weight", "attn_q.weight"),
    ("self_attn.k_proj.weight", "attn_k.weight"),
    ("self_attn.v_proj.weight", "attn_v.weight"),
    ("self_attn.o_proj.weight", "attn_output.weight"),
    ("self_attn.q_proj.bias", "attn_q.bias"),
    ("self_attn.k_proj.bias", "attn_k.bias"),
    ("self_attn.v_proj.bias", "attn_v.bias"),
    ("self_attn.o_proj.bias", "attn_output.bias"),
    ("post_attention_layernorm.weight", "ffn_norm.weight"),
    ("mlp.gate_proj.weight", "ffn_gate.weight"),
    ("mlp.up_proj.weight", "ffn_up.weight"),
    ("mlp.down_proj.weight", "ffn_down.weight"),
    ("mlp.gate_proj.bias", "ffn_gate.bias"),
    ("mlp.up_proj.bias", "ffn_up.bias"),
    ("mlp.down_proj.bias", "ffn_down.bias"),
];

/// Whole-model name pairs.
const GLOBAL_MAP: &[(&str, &str)] = &[
    ("model.embed_tokens.weight", "token_embd.weight"),
    ("model.norm.weight", "output_norm.weight"),
    ("lm_head.weight", "output.weight"),
];

fn split_layer<'a>(name: &'a str, prefix: &str) -> Option<(&'a str, &'a str)> {
    let rest = name.strip_prefix(prefix)?;
    let (n, suffix) = rest.split_once('.')?;
    // Canonical decimal only, so the map is a bijection ("01" is not layer 1).
    let ok =
        !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && (n == "0" || !n.starts_with('0'));
    ok.then_some((n, suffix))
}

/// GGUF name for an HF LLaMA-family tensor name; `None` for names that have no GGUF
/// counterpart (e.g. `rotary_emb.inv_freq`, which llama.cpp recomputes).
pub fn hf_to_gguf_name(hf: &str) -> Option<String> {
    if let Some(&(_, g)) = GLOBAL_MAP.iter().find(|(h, _)| *h == hf) {
        return Some(g.to_string());
    }
    let (n, suffix) = split_layer(hf, "model.layers.")?;
    let &(_, g) = LAYER_MAP.iter().find(|(h, _)| *h == suffix)?;
    Some(format!("blk.{n}.{g}"))
}

/// HF name for a GGUF LLaMA-family tensor name; `None` for tensors HF checkpoints do
/// not carry (e.g. `rope_freqs.weight`).
pub fn gguf_to_hf_name(gguf: &str) -> Option<String> {
    if let Some(&(h, _)) = GLOBAL_MAP.iter().find(|(_, g)| *g == gguf) {
        return Some(h.to_string());
    }
    let (n, suffix) = split_layer(gguf, "blk.")?;
    let &(h, _) = LAYER_MAP.iter().find(|(_, g)| *g == suffix)?;
    Some(format!("model.layers.{n}.{h}"))
}

/// Which RoPE projection a tensor is, because Q is permuted with `n_head` and K with
/// `n_head_kv` (they differ under GQA).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QkProj {
    /// q_proj / attn_q (weight or bias).
    Q,
    /// k_proj / attn_k (weight or bias).
    K,
}

/// Whether an HF or GGUF tensor name needs the Q/K row permutation (for the `llama`
/// architecture), and with which head count.
pub fn qk_proj(name: &str) -> Option<QkProj> {
    let suffix = split_layer(name, "model.layers.")
        .or_else(|| split_layer(name, "blk."))?
        .1;
    match suffix {
        "self_attn.q_proj.weight" | "self_attn.q_proj.bias" | "attn_q.weight" | "attn_q.bias" => {
            Some(QkProj::Q)
        }
        "self_attn.k_proj.weight" | "self_attn.k_proj.bias" | "attn_k.weight" | "attn_k.bias" => {
            Some(QkProj::K)
        }
        _ => None,
    }
}

fn check_shape(len: usize, n_rows: usize, row_bytes: usize, n_head: usize) -> Result<usize> {
    let bad = |m: String| GgufError::BadPermuteShape(m);
    let total = n_rows
        .checked_mul(row_bytes)
        .ok_or_else(|| bad("n_rows * row_bytes overflows".into()))?;
    if total != len {
        return Err(bad(format!(
            "{len} bytes given, {n_rows} rows of {row_bytes} bytes expected"
        )));
    }
    if n_head == 0 || !n_rows.is_multiple_of(n_head) {
        return Err(bad(format!(
            "{n_rows} rows do not split into {n_head} heads"
        )));
    }
    let hd = n_rows / n_head;
    if !hd.is_multiple_of(2) {
        return Err(bad(format!("head dim {hd} is odd")));
    }
    Ok(hd)
}

/// Moves whole rows: `dst row map(r) = src row r` for the given row map.
fn move_rows(
    data: &[u8],
    n_rows: usize,
    row_bytes: usize,
    n_head: usize,
    forward: bool,
) -> Result<Vec<u8>> {
    let hd = check_shape(data.len(), n_rows, row_bytes, n_head)?;
    let half = hd / 2;
    let mut out = vec![0u8; data.len()];
    for h in 0..n_head {
        for i in 0..half {
            for j in 0..2 {
                // HF (rotate-half) row and GGUF (interleaved) row of the same feature.
                let hf = h * hd + j * half + i;
                let gg = h * hd + 2 * i + j;
                let (src, dst) = if forward { (hf, gg) } else { (gg, hf) };
                out[dst * row_bytes..(dst + 1) * row_bytes]
                    .copy_from_slice(&data[src * row_bytes..(src + 1) * row_bytes]);
            }
        }
    }
    Ok(out)
}

/// HF → GGUF row order for q_proj/k_proj (weights or biases): new row `h·hd + 2i + j`
/// takes old row `h·hd + j·hd/2 + i`. Rows are opaque byte strings (one output row;
/// quant blocks run along the input dim), so quantized rows move bit-exactly.
/// `n_head` is the head count of that projection (`n_head_kv` for K).
pub fn permute_qk_rows(
    data: &[u8],
    n_rows: usize,
    row_bytes: usize,
    n_head: usize,
) -> Result<Vec<u8>> {
    move_rows(data, n_rows, row_bytes, n_head, true)
}

/// GGUF → HF, the exact inverse of [`permute_qk_rows`], for importing llama.cpp files.
pub fn unpermute_qk_rows(
    data: &[u8],
    n_rows: usize,
    row_bytes: usize,
    n_head: usize,
) -> Result<Vec<u8>> {
    move_rows(data, n_rows, row_bytes, n_head, false)
}
