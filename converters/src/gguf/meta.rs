//! config.json / tokenizer.json <-> GGUF metadata for LLaMA-family models.
//!
//! All functions are pure: JSON in, KV list out (export), or parsed GGUF in, JSON out
//! (import). JSON is untrusted too: every field is type- and range-checked.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Map, Value};

use super::reader::GgufFile;
use super::types::{GgufArray, GgufValue};
use super::{GgufError, Result};

/// Vocabulary sizes above 2^21 are refused (the largest real vocabularies are ~2^18), so
/// a token id of 2^60 in a JSON file cannot make us allocate a table for it.
pub const MAX_VOCAB: u64 = 1 << 21;

/// Llama-3's pre-tokenizer split regex (llama.cpp pre name `llama-bpe`).
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's pre-tokenizer split regex (llama.cpp pre name `qwen2`): single digits.
const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn bad(field: &str, reason: impl Into<String>) -> GgufError {
    GgufError::BadField {
        field: field.to_string(),
        reason: reason.into(),
    }
}

fn kv(k: &str, v: GgufValue) -> (String, GgufValue) {
    (k.to_string(), v)
}

/// True for architectures whose llama.cpp RoPE is the interleaved ("NORM") kind, where
/// HF q_proj/k_proj rows must go through [`super::permute_qk_rows`]. Qwen2 uses NEOX
/// RoPE, which matches HF's rotate-half layout, so it needs no permutation.
pub fn arch_needs_qk_permute(arch: &str) -> bool {
    arch == "llama"
}

fn opt_u32(cfg: &Value, key: &str) -> Result<Option<u32>> {
    match cfg.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|x| u32::try_from(x).ok())
            .map(Some)
            .ok_or_else(|| bad(key, format!("expected an integer in 0..2^32, got {v}"))),
    }
}

fn req_u32(cfg: &Value, key: &str) -> Result<u32> {
    let v = opt_u32(cfg, key)?.ok_or_else(|| bad(key, "missing"))?;
    if v == 0 {
        return Err(bad(key, "must be at least 1"));
    }
    Ok(v)
}

fn opt_f32(cfg: &Value, key: &str) -> Result<Option<f32>> {
    match cfg.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let x = v
                .as_f64()
                .ok_or_else(|| bad(key, format!("expected a number, got {v}")))?;
            let f = x as f32;
            if !f.is_finite() {
                return Err(bad(key, "not finite as f32"));
            }
            Ok(Some(f))
        }
    }
}

/// Maps an HF config to the llama.cpp architecture name.
fn arch_of(cfg: &Value) -> Result<&'static str> {
    let mt = cfg.get("model_type").and_then(Value::as_str).unwrap_or("");
    let a0 = cfg
        .get("architectures")
        .and_then(|a| a.get(0))
        .and_then(Value::as_str)
        .unwrap_or("");
    match (mt, a0) {
        ("llama" | "mistral", _) | (_, "LlamaForCausalLM" | "MistralForCausalLM") => Ok("llama"),
        ("qwen2", _) | (_, "Qwen2ForCausalLM") => Ok("qwen2"),
        _ => Err(GgufError::Unsupported(format!(
            "model_type {mt:?} / architecture {a0:?} (llama, mistral, qwen2 and SmolLM are handled)"
        ))),
    }
}

/// GGUF `general.*` and architecture KVs for an HF LLaMA-family `config.json` (llama,
/// mistral, qwen2, SmolLM), with the exact value types llama.cpp's loader checks (u32
/// counts, f32 epsilon and RoPE base). `file_type` is llama.cpp's LlamaFileType of the
/// export; `alignment` is written as `general.alignment`. `rope_scaling` of type
/// `llama3` is refused because it needs a generated `rope_freqs` tensor.
pub fn llama_arch_kv(
    config: &Value,
    name: &str,
    file_type: u32,
    alignment: u32,
) -> Result<Vec<(String, GgufValue)>> {
    if !config.is_object() {
        return Err(bad("config.json", "not a JSON object"));
    }
    if !alignment.is_power_of_two() {
        return Err(GgufError::BadAlignment(alignment));
    }
    let arch = arch_of(config)?;
    let hidden = req_u32(config, "hidden_size")?;
    let layers = req_u32(config, "num_hidden_layers")?;
    let ff = req_u32(config, "intermediate_size")?;
    let heads = req_u32(config, "num_attention_heads")?;
    let kv_heads = opt_u32(config, "num_key_value_heads")?.unwrap_or(heads);
    if kv_heads == 0 || heads % kv_heads != 0 {
        return Err(bad(
            "num_key_value_heads",
            format!("{kv_heads} does not divide num_attention_heads {heads}"),
        ));
    }
    let ctx = req_u32(config, "max_position_embeddings")?;
    let eps = opt_f32(config, "rms_norm_eps")?.ok_or_else(|| bad("rms_norm_eps", "missing"))?;
    let theta = opt_f32(config, "rope_theta")?.unwrap_or(10_000.0);
    let head_dim = match opt_u32(config, "head_dim")? {
        Some(hd) if hd > 0 => hd,
        _ => {
            if hidden % heads != 0 {
                return Err(bad(
                    "hidden_size",
                    format!("{hidden} is not a multiple of num_attention_heads {heads}"),
                ));
            }
            hidden / heads
        }
    };
    if head_dim % 2 != 0 {
        return Err(bad(
            "head_dim",
            format!("{head_dim} is odd (RoPE pairs dims)"),
        ));
    }
    let vocab = opt_u32(config, "vocab_size")?;

    let p = |k: &str| format!("{arch}.{k}");
    let mut out = vec![
        kv("general.architecture", GgufValue::str(arch)),
        kv("general.name", GgufValue::str(name)),
        kv("general.alignment", GgufValue::U32(alignment)),
        kv("general.file_type", GgufValue::U32(file_type)),
        kv("general.quantization_version", GgufValue::U32(2)),
        (p("context_length"), GgufValue::U32(ctx)),
        (p("embedding_length"), GgufValue::U32(hidden)),
        (p("block_count"), GgufValue::U32(layers)),
        (p("feed_forward_length"), GgufValue::U32(ff)),
        (p("attention.head_count"), GgufValue::U32(heads)),
        (p("attention.head_count_kv"), GgufValue::U32(kv_heads)),
        (p("attention.layer_norm_rms_epsilon"), GgufValue::F32(eps)),
        (p("rope.freq_base"), GgufValue::F32(theta)),
        (p("rope.dimension_count"), GgufValue::U32(head_dim)),
    ];
    if u64::from(head_dim) * u64::from(heads) != u64::from(hidden) {
        out.push((p("attention.key_length"), GgufValue::U32(head_dim)));
        out.push((p("attention.value_length"), GgufValue::U32(head_dim)));
    }
    if let Some(v) = vocab {
        out.push((p("vocab_size"), GgufValue::U32(v)));
    }
    match config.get("rope_scaling") {
        None | Some(Value::Null) => {}
        Some(rs) => {
            let ty = rs
                .get("rope_type")
                .or_else(|| rs.get("type"))
                .and_then(Value::as_str)
                .unwrap_or("");
            let factor =
                opt_f32(rs, "factor")?.ok_or_else(|| bad("rope_scaling.factor", "missing"))?;
            match ty {
                "linear" => {
                    out.push((p("rope.scaling.type"), GgufValue::str("linear")));
                    out.push((p("rope.scaling.factor"), GgufValue::F32(factor)));
                }
                "yarn" => {
                    out.push((p("rope.scaling.type"), GgufValue::str("yarn")));
                    out.push((p("rope.scaling.factor"), GgufValue::F32(factor)));
                    if let Some(o) = opt_u32(rs, "original_max_position_embeddings")? {
                        out.push((p("rope.scaling.original_context_length"), GgufValue::U32(o)));
                    }
                }
                other => {
                    return Err(GgufError::Unsupported(format!(
                        "rope_scaling type {other:?}"
                    )))
                }
            }
        }
    }
    Ok(out)
}

/// The pre-tokenizers of a `pre_tokenizer` node, flattening one `Sequence` level.
fn pre_list(pt: &Value) -> Vec<&Value> {
    match pt.get("type").and_then(Value::as_str) {
        Some("Sequence") => pt
            .get("pretokenizers")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default(),
        Some(_) => vec![pt],
        None => vec![],
    }
}

fn split_regex(p: &Value) -> Option<&str> {
    (p.get("type")?.as_str()? == "Split")
        .then(|| p.get("pattern")?.get("Regex")?.as_str())
        .flatten()
}

/// llama.cpp's `tokenizer.ggml.pre` name for an HF pre-tokenizer. llama.cpp itself
/// identifies pre-tokenizers by hashing sample tokenizations; we recognise the
/// structures of the families we export instead, and fall back to "default".
fn detect_pre(pt: Option<&Value>) -> &'static str {
    let Some(pt) = pt else { return "default" };
    let list = pre_list(pt);
    let ty = |p: &Value| p.get("type").and_then(Value::as_str).map(str::to_owned);
    let is_bytelevel = |p: &&Value| ty(p).as_deref() == Some("ByteLevel");
    let digits = list.iter().any(|p| {
        (ty(p).as_deref() == Some("Digits")
            && p.get("individual_digits").and_then(Value::as_bool) == Some(true))
            || (split_regex(p) == Some(r"\p{N}")
                && p.get("behavior").and_then(Value::as_str) == Some("Isolated"))
    });
    let bl_regex = list
        .iter()
        .any(|p| is_bytelevel(p) && p.get("use_regex").and_then(Value::as_bool).unwrap_or(true));
    if list.len() == 2 && digits && bl_regex {
        return "smollm";
    }
    if list.len() == 2 && list.iter().any(is_bytelevel) {
        match list.iter().find_map(|p| split_regex(p)) {
            Some(r) if r == LLAMA3_REGEX => return "llama-bpe",
            Some(r) if r == QWEN2_REGEX => return "qwen2",
            _ => {}
        }
    }
    if list.len() == 1 && bl_regex {
        return "gpt-2";
    }
    "default"
}

fn token_content(v: Option<&Value>) -> Option<&str> {
    match v? {
        Value::String(s) => Some(s),
        Value::Object(o) => o.get("content")?.as_str(),
        _ => None,
    }
}

fn json_id(v: &Value, field: &str) -> Result<u32> {
    v.as_u64()
        .filter(|&x| x < MAX_VOCAB)
        .map(|x| x as u32)
        .ok_or_else(|| {
            bad(
                field,
                format!("token id {v} is not an integer below {MAX_VOCAB}"),
            )
        })
}

/// Whether the post-processor adds a special token before / after the sequence.
fn template_adds(tj: &Value) -> (bool, bool) {
    let pp = tj.get("post_processor");
    let procs: Vec<&Value> = match pp {
        Some(p) if p.get("type").and_then(Value::as_str) == Some("Sequence") => p
            .get("processors")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default(),
        Some(p) => vec![p],
        None => vec![],
    };
    for p in procs {
        if p.get("type").and_then(Value::as_str) != Some("TemplateProcessing") {
            continue;
        }
        let Some(single) = p.get("single").and_then(Value::as_array) else {
            continue;
        };
        let seq = single.iter().position(|e| e.get("Sequence").is_some());
        let Some(seq) = seq else { continue };
        let special = |e: &Value| e.get("SpecialToken").is_some();
        return (
            single[..seq].iter().any(special),
            single[seq + 1..].iter().any(special),
        );
    }
    (false, false)
}

/// Tokenizer KVs for an HF byte-level BPE `tokenizer.json` (+ optional
/// `tokenizer_config.json`) in the form llama.cpp's `gpt2` vocab loader expects:
/// tokens padded to `n_vocab` (the embedding rows, usually config `vocab_size`) with
/// `[PAD{i}]` unused entries, i32 token types (1 normal, 3 control for special added
/// tokens, 4 user-defined for other added tokens, 5 unused), merges as "a b", the
/// detected `pre` name (smollm, llama-bpe, qwen2, gpt-2, else default), special token
/// ids as u32, add_bos/add_eos bools and the chat template.
pub fn tokenizer_kv(
    tokenizer_json: &Value,
    tokenizer_config: Option<&Value>,
    n_vocab: Option<u32>,
) -> Result<Vec<(String, GgufValue)>> {
    let model = tokenizer_json
        .get("model")
        .ok_or_else(|| bad("model", "missing"))?;
    if model.get("type").and_then(Value::as_str) != Some("BPE") {
        return Err(GgufError::Unsupported(
            "tokenizer model is not BPE (only byte-level BPE is exported)".into(),
        ));
    }
    let byte_level = tokenizer_json
        .get("decoder")
        .and_then(|d| d.get("type"))
        .and_then(Value::as_str)
        == Some("ByteLevel")
        || tokenizer_json
            .get("pre_tokenizer")
            .map(|p| {
                pre_list(p)
                    .iter()
                    .any(|q| q.get("type").and_then(Value::as_str) == Some("ByteLevel"))
            })
            .unwrap_or(false);
    if !byte_level {
        return Err(GgufError::Unsupported(
            "BPE tokenizer without ByteLevel (SentencePiece-style BPE is not exported)".into(),
        ));
    }
    let vocab = model
        .get("vocab")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("model.vocab", "missing or not an object"))?;
    // id -> (content, type)
    let mut table: BTreeMap<u32, (String, i32)> = BTreeMap::new();
    for (tok, id) in vocab {
        let id = json_id(id, "model.vocab")?;
        if table.insert(id, (tok.clone(), 1)).is_some() {
            return Err(bad("model.vocab", format!("id {id} assigned twice")));
        }
    }
    if let Some(added) = tokenizer_json.get("added_tokens") {
        let added = added
            .as_array()
            .ok_or_else(|| bad("added_tokens", "not an array"))?;
        for t in added {
            let id = json_id(t.get("id").unwrap_or(&Value::Null), "added_tokens.id")?;
            let content = t
                .get("content")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("added_tokens.content", "missing or not a string"))?;
            let special = t.get("special").and_then(Value::as_bool).unwrap_or(false);
            table.insert(id, (content.to_string(), if special { 3 } else { 4 }));
        }
    }
    let max_id_plus1 = table.keys().next_back().map_or(0, |&m| u64::from(m) + 1);
    let n = match n_vocab {
        Some(v) if u64::from(v) < max_id_plus1 => {
            return Err(bad(
                "vocab_size",
                format!("{v} is smaller than the tokenizer's {max_id_plus1} ids"),
            ))
        }
        Some(v) if u64::from(v) > MAX_VOCAB => {
            return Err(bad("vocab_size", format!("{v} exceeds {MAX_VOCAB}")))
        }
        Some(v) => u64::from(v),
        None => max_id_plus1,
    } as u32;
    let mut tokens = Vec::with_capacity(n as usize);
    let mut types = Vec::with_capacity(n as usize);
    let mut by_content: HashMap<&str, u32> = HashMap::new();
    for i in 0..n {
        match table.get(&i) {
            Some((s, t)) => {
                tokens.push(s.clone());
                types.push(*t);
            }
            None => {
                tokens.push(format!("[PAD{i}]"));
                types.push(5);
            }
        }
    }
    for (&id, (s, _)) in &table {
        by_content.entry(s.as_str()).or_insert(id);
    }

    let merges_v = model
        .get("merges")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("model.merges", "missing or not an array"))?;
    if merges_v.len() as u64 > MAX_VOCAB {
        return Err(bad("model.merges", "too many merges"));
    }
    let mut merges = Vec::with_capacity(merges_v.len());
    for m in merges_v {
        match m {
            Value::String(s) => merges.push(s.clone()),
            Value::Array(pair) => match pair.as_slice() {
                [Value::String(a), Value::String(b)] => merges.push(format!("{a} {b}")),
                _ => return Err(bad("model.merges", "pair is not two strings")),
            },
            _ => return Err(bad("model.merges", "entry is neither a string nor a pair")),
        }
    }

    let pre = detect_pre(tokenizer_json.get("pre_tokenizer"));
    let mut out = vec![
        kv("tokenizer.ggml.model", GgufValue::str("gpt2")),
        kv("tokenizer.ggml.pre", GgufValue::str(pre)),
        kv(
            "tokenizer.ggml.tokens",
            GgufValue::Array(GgufArray::String(tokens)),
        ),
        kv(
            "tokenizer.ggml.token_type",
            GgufValue::Array(GgufArray::I32(types)),
        ),
        kv(
            "tokenizer.ggml.merges",
            GgufValue::Array(GgufArray::String(merges)),
        ),
    ];
    let empty = Value::Object(Map::new());
    let tc = tokenizer_config.unwrap_or(&empty);
    for (field, key) in [
        ("bos_token", "tokenizer.ggml.bos_token_id"),
        ("eos_token", "tokenizer.ggml.eos_token_id"),
        ("unk_token", "tokenizer.ggml.unknown_token_id"),
        ("pad_token", "tokenizer.ggml.padding_token_id"),
    ] {
        if let Some(content) = token_content(tc.get(field)) {
            let id = by_content
                .get(content)
                .ok_or_else(|| bad(field, format!("token {content:?} is not in the vocabulary")))?;
            out.push(kv(key, GgufValue::U32(*id)));
        }
    }
    let (tpl_bos, tpl_eos) = template_adds(tokenizer_json);
    let add_bos = tc
        .get("add_bos_token")
        .and_then(Value::as_bool)
        .unwrap_or(tpl_bos);
    let add_eos = tc
        .get("add_eos_token")
        .and_then(Value::as_bool)
        .unwrap_or(tpl_eos);
    out.push(kv("tokenizer.ggml.add_bos_token", GgufValue::Bool(add_bos)));
    out.push(kv("tokenizer.ggml.add_eos_token", GgufValue::Bool(add_eos)));
    // A string, or (newer transformers) a list of {name, template}: take "default".
    let template = match tc.get("chat_template") {
        Some(Value::String(t)) => Some(t.as_str()),
        Some(Value::Array(list)) => list
            .iter()
            .find(|e| e.get("name").and_then(Value::as_str) == Some("default"))
            .and_then(|e| e.get("template"))
            .and_then(Value::as_str),
        _ => None,
    };
    if let Some(t) = template {
        out.push(kv("tokenizer.chat_template", GgufValue::str(t)));
    }
    Ok(out)
}

/// JSON number for an f32, via its shortest decimal form so `1e-5f32` becomes `1e-05`
/// rather than `9.999999747378752e-06`.
fn f32_json(x: f32, field: &str) -> Result<Value> {
    let d: f64 = format!("{x}")
        .parse()
        .map_err(|_| bad(field, "unprintable float"))?;
    serde_json::Number::from_f64(d)
        .map(Value::Number)
        .ok_or_else(|| bad(field, "not finite"))
}

fn g_u32<B: AsRef<[u8]>>(f: &GgufFile<B>, key: &str) -> Result<u32> {
    match f.get(key) {
        None => Err(bad(key, "missing")),
        Some(GgufValue::U32(v)) => Ok(*v),
        Some(GgufValue::Array(_)) => Err(GgufError::Unsupported(format!(
            "{key} as a per-layer array"
        ))),
        Some(v) => Err(bad(
            key,
            format!("expected UINT32, got type {}", v.type_id()),
        )),
    }
}

fn g_opt_u32<B: AsRef<[u8]>>(f: &GgufFile<B>, key: &str) -> Result<Option<u32>> {
    match f.get(key) {
        None => Ok(None),
        Some(_) => g_u32(f, key).map(Some),
    }
}

/// HF `config.json` (LlamaForCausalLM, or Qwen2ForCausalLM for `qwen2`) rebuilt from a
/// GGUF's KVs, so an imported llama.cpp model loads in transformers.
/// `tie_word_embeddings` is true when the file has no `output.weight`.
pub fn config_from_gguf<B: AsRef<[u8]>>(f: &GgufFile<B>) -> Result<Value> {
    let arch = f
        .get_str("general.architecture")
        .ok_or_else(|| bad("general.architecture", "missing or not a string"))?;
    let (hf_arch, model_type) = match arch {
        "llama" => ("LlamaForCausalLM", "llama"),
        "qwen2" => ("Qwen2ForCausalLM", "qwen2"),
        other => {
            return Err(GgufError::Unsupported(format!(
                "GGUF architecture {other:?}"
            )))
        }
    };
    let k = |s: &str| format!("{arch}.{s}");
    let hidden = g_u32(f, &k("embedding_length"))?;
    let layers = g_u32(f, &k("block_count"))?;
    let ff = g_u32(f, &k("feed_forward_length"))?;
    let heads = g_u32(f, &k("attention.head_count"))?;
    if heads == 0 {
        return Err(bad(&k("attention.head_count"), "is zero"));
    }
    let kv_heads = g_opt_u32(f, &k("attention.head_count_kv"))?.unwrap_or(heads);
    let ctx = g_u32(f, &k("context_length"))?;
    let eps = f
        .get_f32(&k("attention.layer_norm_rms_epsilon"))
        .ok_or_else(|| {
            bad(
                &k("attention.layer_norm_rms_epsilon"),
                "missing or not FLOAT32",
            )
        })?;
    let theta = match f.get(&k("rope.freq_base")) {
        None => 10_000.0,
        Some(GgufValue::F32(v)) => *v,
        Some(_) => return Err(bad(&k("rope.freq_base"), "not FLOAT32")),
    };
    let head_dim = match g_opt_u32(f, &k("attention.key_length"))? {
        Some(v) => v,
        None => g_opt_u32(f, &k("rope.dimension_count"))?.unwrap_or(hidden / heads),
    };
    let vocab = match g_opt_u32(f, &k("vocab_size"))? {
        Some(v) => u64::from(v),
        None => match f.get_array_str("tokenizer.ggml.tokens") {
            Some(t) => t.len() as u64,
            None => f
                .tensor("token_embd.weight")
                .and_then(|t| t.dims.get(1).copied())
                .ok_or_else(|| bad("vocab_size", "no vocab_size, tokens or token_embd"))?,
        },
    };
    let mut c = json!({
        "architectures": [hf_arch],
        "model_type": model_type,
        "hidden_size": hidden,
        "intermediate_size": ff,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "max_position_embeddings": ctx,
        "rms_norm_eps": f32_json(eps, "rms_norm_eps")?,
        "rope_theta": f32_json(theta, "rope_theta")?,
        "vocab_size": vocab,
        "hidden_act": "silu",
        "tie_word_embeddings": f.tensor("output.weight").is_none(),
        "attention_bias": f.tensor("blk.0.attn_q.bias").is_some(),
        "mlp_bias": f.tensor("blk.0.ffn_up.bias").is_some(),
        "rope_scaling": Value::Null,
        "torch_dtype": "float32",
        "use_cache": true,
    });
    let obj = c
        .as_object_mut()
        .expect("json! of an object literal is an object");
    for (src, dst) in [
        ("tokenizer.ggml.bos_token_id", "bos_token_id"),
        ("tokenizer.ggml.eos_token_id", "eos_token_id"),
        ("tokenizer.ggml.padding_token_id", "pad_token_id"),
    ] {
        if let Some(v) = g_opt_u32(f, src)? {
            obj.insert(dst.into(), json!(v));
        }
    }
    if let Some(ty) = f.get_str(&k("rope.scaling.type")) {
        if ty != "none" {
            let factor = f
                .get_f32(&k("rope.scaling.factor"))
                .ok_or_else(|| bad(&k("rope.scaling.factor"), "missing or not FLOAT32"))?;
            let mut rs =
                json!({"type": ty, "rope_type": ty, "factor": f32_json(factor, "factor")?});
            if let Some(o) = g_opt_u32(f, &k("rope.scaling.original_context_length"))? {
                rs["original_max_position_embeddings"] = json!(o);
            }
            obj.insert("rope_scaling".into(), rs);
        }
    }
    Ok(c)
}

/// Vocabulary pieces of a `gpt2` GGUF tokenizer, checked for consistency.
struct GgufVocab<'a> {
    tokens: &'a [String],
    types: Option<&'a [i32]>,
    merges: &'a [String],
    pre: &'a str,
}

fn gguf_vocab<B: AsRef<[u8]>>(f: &GgufFile<B>) -> Result<GgufVocab<'_>> {
    match f.get_str("tokenizer.ggml.model") {
        Some("gpt2") => {}
        Some(m) => {
            return Err(GgufError::Unsupported(format!(
                "tokenizer.ggml.model {m:?} (only gpt2 byte-level BPE is imported)"
            )))
        }
        None => return Err(bad("tokenizer.ggml.model", "missing or not a string")),
    }
    let tokens = f
        .get_array_str("tokenizer.ggml.tokens")
        .ok_or_else(|| bad("tokenizer.ggml.tokens", "missing or not a string array"))?;
    if tokens.len() as u64 > MAX_VOCAB {
        return Err(bad("tokenizer.ggml.tokens", "too many tokens"));
    }
    let types = match f.get("tokenizer.ggml.token_type") {
        None => None,
        Some(_) => {
            let t = f
                .get_array_i32("tokenizer.ggml.token_type")
                .ok_or_else(|| bad("tokenizer.ggml.token_type", "not an INT32 array"))?;
            if t.len() != tokens.len() {
                return Err(bad(
                    "tokenizer.ggml.token_type",
                    "length differs from tokens",
                ));
            }
            Some(t)
        }
    };
    let merges = f
        .get_array_str("tokenizer.ggml.merges")
        .ok_or_else(|| bad("tokenizer.ggml.merges", "missing or not a string array"))?;
    let pre = f.get_str("tokenizer.ggml.pre").unwrap_or("default");
    Ok(GgufVocab {
        tokens,
        types,
        merges,
        pre,
    })
}

fn special_token<'a>(
    f: &GgufFile<impl AsRef<[u8]>>,
    v: &GgufVocab<'a>,
    key: &str,
) -> Result<Option<(u32, &'a str)>> {
    match g_opt_u32(f, key)? {
        None => Ok(None),
        Some(id) => v
            .tokens
            .get(id as usize)
            .map(|s| Some((id, s.as_str())))
            .ok_or_else(|| bad(key, format!("id {id} is past the vocabulary"))),
    }
}

fn byte_level(add_prefix_space: bool, use_regex: bool) -> Value {
    json!({"type": "ByteLevel", "add_prefix_space": add_prefix_space, "trim_offsets": true, "use_regex": use_regex})
}

fn split(regex: &str) -> Value {
    json!({"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false})
}

/// HF `tokenizer.json` rebuilt from a `gpt2` GGUF tokenizer: byte-level BPE with vocab
/// (unused, type 5, filler tokens left out; ids are kept) and merges, control (type 3) and user-defined (type 4) tokens as added tokens, the
/// pre-tokenizer matching `tokenizer.ggml.pre` (smollm: digits isolated one by one,
/// then ByteLevel with its regex; llama-bpe / qwen2: their split regex then ByteLevel
/// without regex; gpt-2 / default: ByteLevel with regex), a ByteLevel decoder and a
/// TemplateProcessing post-processor when BOS/EOS are added.
pub fn tokenizer_json_from_gguf<B: AsRef<[u8]>>(f: &GgufFile<B>) -> Result<Value> {
    let v = gguf_vocab(f)?;
    let mut vocab = Map::new();
    let mut added = Vec::new();
    for (i, t) in v.tokens.iter().enumerate() {
        let ty = v.types.and_then(|ts| ts.get(i).copied()).unwrap_or(1);
        // UNUSED (5) entries are the `[PAD{i}]` fillers exporters put in the holes of
        // the id space (embedding rows without a token); HF has no token there.
        if ty == 5 {
            continue;
        }
        if vocab.insert(t.clone(), json!(i)).is_some() {
            return Err(bad(
                "tokenizer.ggml.tokens",
                format!("token {t:?} appears twice"),
            ));
        }
        if ty == 3 || ty == 4 {
            added.push(json!({
                "id": i, "content": t, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": ty == 4, "special": ty == 3,
            }));
        }
    }
    let pre_tokenizer = match v.pre {
        "smollm" => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true},
            byte_level(false, true),
        ]}),
        "llama-bpe" => json!({"type": "Sequence", "pretokenizers": [
            split(LLAMA3_REGEX), byte_level(false, false)]}),
        "qwen2" => json!({"type": "Sequence", "pretokenizers": [
            split(QWEN2_REGEX), byte_level(false, false)]}),
        "gpt-2" | "default" => byte_level(false, true),
        other => {
            return Err(GgufError::Unsupported(format!(
                "tokenizer.ggml.pre {other:?}"
            )))
        }
    };
    let add_bos = f.get_bool("tokenizer.ggml.add_bos_token").unwrap_or(false);
    let add_eos = f.get_bool("tokenizer.ggml.add_eos_token").unwrap_or(false);
    let bos = special_token(f, &v, "tokenizer.ggml.bos_token_id")?;
    let eos = special_token(f, &v, "tokenizer.ggml.eos_token_id")?;
    let post = build_template(
        add_bos.then_some(bos).flatten(),
        add_eos.then_some(eos).flatten(),
    );
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": post,
        "decoder": byte_level(true, true),
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": v.merges,
        },
    }))
}

fn build_template(bos: Option<(u32, &str)>, eos: Option<(u32, &str)>) -> Value {
    if bos.is_none() && eos.is_none() {
        return Value::Null;
    }
    let sp = |t: &str, ty: u32| json!({"SpecialToken": {"id": t, "type_id": ty}});
    let seq = |s: &str, ty: u32| json!({"Sequence": {"id": s, "type_id": ty}});
    let mut single = Vec::new();
    let mut pair = Vec::new();
    let mut specials = Map::new();
    for (part, ty) in [("A", 0u32), ("B", 1)] {
        if let Some((_, b)) = bos {
            pair.push(sp(b, ty));
            if ty == 0 {
                single.push(sp(b, 0));
            }
        }
        pair.push(seq(part, ty));
        if ty == 0 {
            single.push(seq(part, 0));
        }
        if let Some((_, e)) = eos {
            pair.push(sp(e, ty));
            if ty == 0 {
                single.push(sp(e, 0));
            }
        }
    }
    for (id, t) in [bos, eos].into_iter().flatten() {
        specials.insert(t.to_string(), json!({"id": t, "ids": [id], "tokens": [t]}));
    }
    json!({"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": specials})
}

/// HF `tokenizer_config.json` companion to [`tokenizer_json_from_gguf`]: special token
/// strings, add_bos/add_eos, chat template and context length.
pub fn tokenizer_config_from_gguf<B: AsRef<[u8]>>(f: &GgufFile<B>) -> Result<Value> {
    let v = gguf_vocab(f)?;
    let mut c = Map::new();
    c.insert(
        "add_bos_token".into(),
        json!(f.get_bool("tokenizer.ggml.add_bos_token").unwrap_or(false)),
    );
    c.insert(
        "add_eos_token".into(),
        json!(f.get_bool("tokenizer.ggml.add_eos_token").unwrap_or(false)),
    );
    for (key, field) in [
        ("tokenizer.ggml.bos_token_id", "bos_token"),
        ("tokenizer.ggml.eos_token_id", "eos_token"),
        ("tokenizer.ggml.unknown_token_id", "unk_token"),
        ("tokenizer.ggml.padding_token_id", "pad_token"),
    ] {
        if let Some((_, t)) = special_token(f, &v, key)? {
            c.insert(field.into(), json!(t));
        }
    }
    let mut decoder = Map::new();
    for (i, t) in v.tokens.iter().enumerate() {
        let ty = v.types.and_then(|ts| ts.get(i).copied()).unwrap_or(1);
        if ty == 3 || ty == 4 {
            decoder.insert(
                i.to_string(),
                json!({"content": t, "lstrip": false, "normalized": ty == 4,
                       "rstrip": false, "single_word": false, "special": ty == 3}),
            );
        }
    }
    c.insert("added_tokens_decoder".into(), Value::Object(decoder));
    if let Some(t) = f.get_str("tokenizer.chat_template") {
        c.insert("chat_template".into(), json!(t));
    }
    if let Some(arch) = f.get_str("general.architecture") {
        if let Some(ctx) = f.get_u32(&format!("{arch}.context_length")) {
            c.insert("model_max_length".into(), json!(ctx));
        }
    }
    c.insert("clean_up_tokenization_spaces".into(), json!(false));
    c.insert("tokenizer_class".into(), json!("PreTrainedTokenizerFast"));
    Ok(Value::Object(c))
}
