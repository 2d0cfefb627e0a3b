//! config.json / tokenizer.json <-> GGUF metadata conversion.

use serde_json::{json, Value};
use tenpak_converters::gguf::{
    arch_needs_qk_permute, config_from_gguf, ggml_type, llama_arch_kv, tokenizer_config_from_gguf,
    tokenizer_json_from_gguf, tokenizer_kv, GgufArray, GgufError, GgufFile, GgufTensorSpec,
    GgufValue, GgufWriter,
};

const LLAMA3_RE: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn smollm2_config() -> Value {
    json!({"architectures":["LlamaForCausalLM"],"bos_token_id":1,"eos_token_id":2,
        "hidden_act":"silu","hidden_size":576,"initializer_range":0.041666666666666664,
        "intermediate_size":1536,"max_position_embeddings":8192,"model_type":"llama",
        "num_attention_heads":9,"num_hidden_layers":30,"num_key_value_heads":3,
        "pretraining_tp":1,"rms_norm_eps":1e-05,"rope_scaling":null,"rope_theta":100000,
        "tie_word_embeddings":true,"torch_dtype":"bfloat16","vocab_size":10})
}

fn smollm2_pre() -> Value {
    json!({"type":"Sequence","pretokenizers":[
        {"type":"Digits","individual_digits":true},
        {"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true}]})
}

fn tokenizer(pre: Value, pair_merges: bool) -> Value {
    let merges = if pair_merges {
        json!([["a", "b"], ["Ġ", "ab"]])
    } else {
        json!(["a b", "Ġ ab"])
    };
    json!({
        "version": "1.0",
        "added_tokens": [
            {"id":0,"content":"<|endoftext|>","special":true},
            {"id":1,"content":"<|im_start|>","special":true},
            {"id":2,"content":"<|im_end|>","special":true}],
        "pre_tokenizer": pre,
        "decoder": {"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,"use_regex":true},
        "model": {"type":"BPE","vocab":{"<|endoftext|>":0,"<|im_start|>":1,"<|im_end|>":2,
            "a":3,"b":4,"ab":5,"Ġ":6,"Ġab":7},"merges": merges}
    })
}

fn tok_config() -> Value {
    json!({"bos_token":"<|im_start|>","eos_token":{"content":"<|im_end|>"},
           "unk_token":"<|endoftext|>","pad_token":null,"chat_template":"{{ x }}"})
}

fn get<'a>(kv: &'a [(String, GgufValue)], k: &str) -> &'a GgufValue {
    &kv.iter()
        .find(|(key, _)| key == k)
        .unwrap_or_else(|| panic!("{k} missing"))
        .1
}

#[test]
fn arch_kv_types_are_exact() {
    let kv = llama_arch_kv(&smollm2_config(), "SmolLM2-135M", 7, 32).unwrap();
    let u = GgufValue::U32;
    for (k, v) in [
        ("general.architecture", GgufValue::str("llama")),
        ("general.name", GgufValue::str("SmolLM2-135M")),
        ("general.alignment", u(32)),
        ("general.file_type", u(7)),
        ("general.quantization_version", u(2)),
        ("llama.context_length", u(8192)),
        ("llama.embedding_length", u(576)),
        ("llama.block_count", u(30)),
        ("llama.feed_forward_length", u(1536)),
        ("llama.attention.head_count", u(9)),
        ("llama.attention.head_count_kv", u(3)),
        (
            "llama.attention.layer_norm_rms_epsilon",
            GgufValue::F32(1e-5),
        ),
        ("llama.rope.freq_base", GgufValue::F32(100000.0)),
        ("llama.rope.dimension_count", u(64)),
        ("llama.vocab_size", u(10)),
    ] {
        assert_eq!(get(&kv, k), &v, "{k}");
    }
    assert!(kv.iter().all(|(k, _)| !k.contains("key_length")));
    assert!(arch_needs_qk_permute("llama"));

    // Mistral-style explicit head_dim != hidden/heads adds key/value length.
    let mut c = smollm2_config();
    c["head_dim"] = json!(128);
    c["model_type"] = json!("mistral");
    let kv = llama_arch_kv(&c, "m", 1, 32).unwrap();
    assert_eq!(get(&kv, "llama.rope.dimension_count"), &u(128));
    assert_eq!(get(&kv, "llama.attention.key_length"), &u(128));
    // qwen2 keeps its own prefix and needs no permutation.
    let mut c = smollm2_config();
    c["model_type"] = json!("qwen2");
    c["architectures"] = json!(["Qwen2ForCausalLM"]);
    let kv = llama_arch_kv(&c, "q", 1, 32).unwrap();
    assert_eq!(get(&kv, "qwen2.block_count"), &u(30));
    assert!(!arch_needs_qk_permute("qwen2"));
    // Linear rope scaling.
    let mut c = smollm2_config();
    c["rope_scaling"] = json!({"type":"linear","factor":2.0});
    let kv = llama_arch_kv(&c, "m", 1, 32).unwrap();
    assert_eq!(
        get(&kv, "llama.rope.scaling.type"),
        &GgufValue::str("linear")
    );
    assert_eq!(get(&kv, "llama.rope.scaling.factor"), &GgufValue::F32(2.0));
}

#[test]
fn arch_kv_errors() {
    let e = |f: &dyn Fn(&mut Value)| {
        let mut c = smollm2_config();
        f(&mut c);
        llama_arch_kv(&c, "m", 1, 32).unwrap_err()
    };
    assert!(
        matches!(e(&|c| { c.as_object_mut().unwrap().remove("hidden_size"); }),
        GgufError::BadField { field, .. } if field == "hidden_size")
    );
    assert!(matches!(
        e(&|c| c["num_hidden_layers"] = json!(-1)),
        GgufError::BadField { .. }
    ));
    assert!(matches!(
        e(&|c| c["num_hidden_layers"] = json!(1u64 << 40)),
        GgufError::BadField { .. }
    ));
    assert!(matches!(
        e(&|c| c["intermediate_size"] = json!("1536")),
        GgufError::BadField { .. }
    ));
    assert!(matches!(
        e(&|c| c["num_key_value_heads"] = json!(4)),
        GgufError::BadField { .. }
    ));
    assert!(matches!(
        e(&|c| c["rms_norm_eps"] = json!(1e300)),
        GgufError::BadField { .. }
    ));
    assert!(matches!(
        e(&|c| {
            c["model_type"] = json!("gpt2");
            c["architectures"] = json!(["GPT2LMHeadModel"]);
        }),
        GgufError::Unsupported(_)
    ));
    assert!(matches!(
        e(&|c| c["rope_scaling"] = json!({"rope_type":"llama3","factor":8.0})),
        GgufError::Unsupported(_)
    ));
    assert!(matches!(
        llama_arch_kv(&json!([1]), "m", 1, 32),
        Err(GgufError::BadField { .. })
    ));
    assert!(matches!(
        llama_arch_kv(&smollm2_config(), "m", 1, 48),
        Err(GgufError::BadAlignment(48))
    ));
}

#[test]
fn tokenizer_kv_smollm2_style() {
    let kv = tokenizer_kv(
        &tokenizer(smollm2_pre(), false),
        Some(&tok_config()),
        Some(10),
    )
    .unwrap();
    assert_eq!(get(&kv, "tokenizer.ggml.model"), &GgufValue::str("gpt2"));
    assert_eq!(get(&kv, "tokenizer.ggml.pre"), &GgufValue::str("smollm"));
    let GgufValue::Array(GgufArray::String(tokens)) = get(&kv, "tokenizer.ggml.tokens") else {
        panic!("tokens not a string array")
    };
    assert_eq!(tokens.len(), 10);
    assert_eq!(tokens[1], "<|im_start|>");
    assert_eq!(tokens[7], "Ġab");
    assert_eq!(tokens[9], "[PAD9]");
    assert_eq!(
        get(&kv, "tokenizer.ggml.token_type"),
        &GgufValue::Array(GgufArray::I32(vec![3, 3, 3, 1, 1, 1, 1, 1, 5, 5]))
    );
    let merges = GgufValue::Array(GgufArray::String(vec!["a b".into(), "Ġ ab".into()]));
    assert_eq!(get(&kv, "tokenizer.ggml.merges"), &merges);
    assert_eq!(get(&kv, "tokenizer.ggml.bos_token_id"), &GgufValue::U32(1));
    assert_eq!(get(&kv, "tokenizer.ggml.eos_token_id"), &GgufValue::U32(2));
    assert_eq!(
        get(&kv, "tokenizer.ggml.unknown_token_id"),
        &GgufValue::U32(0)
    );
    assert!(kv
        .iter()
        .all(|(k, _)| k != "tokenizer.ggml.padding_token_id"));
    assert_eq!(
        get(&kv, "tokenizer.ggml.add_bos_token"),
        &GgufValue::Bool(false)
    );
    assert_eq!(
        get(&kv, "tokenizer.chat_template"),
        &GgufValue::str("{{ x }}")
    );
    // List-form chat templates: the "default" entry is taken.
    let mut tc = tok_config();
    tc["chat_template"] =
        json!([{"name":"tool_use","template":"T"},{"name":"default","template":"D"}]);
    let kv3 = tokenizer_kv(&tokenizer(smollm2_pre(), false), Some(&tc), Some(10)).unwrap();
    assert_eq!(get(&kv3, "tokenizer.chat_template"), &GgufValue::str("D"));
    // Pair-form merges give identical KVs.
    let kv2 = tokenizer_kv(
        &tokenizer(smollm2_pre(), true),
        Some(&tok_config()),
        Some(10),
    )
    .unwrap();
    assert_eq!(kv, kv2);
}

#[test]
fn pre_detection() {
    let pre_of = |pre: Value| {
        let kv = tokenizer_kv(&tokenizer(pre, false), None, None).unwrap();
        match get(&kv, "tokenizer.ggml.pre") {
            GgufValue::String(s) => s.clone(),
            v => panic!("{v:?}"),
        }
    };
    let split = |re: &str| json!({"type":"Split","pattern":{"Regex":re},"behavior":"Isolated","invert":false});
    let bl = |r: bool| json!({"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":r});
    assert_eq!(pre_of(smollm2_pre()), "smollm");
    assert_eq!(
        pre_of(json!({"type":"Sequence","pretokenizers":[split(r"\p{N}"), bl(true)]})),
        "smollm"
    );
    assert_eq!(
        pre_of(json!({"type":"Sequence","pretokenizers":[split(LLAMA3_RE), bl(false)]})),
        "llama-bpe"
    );
    let qwen = LLAMA3_RE.replace(r"\p{N}{1,3}", r"\p{N}");
    assert_eq!(
        pre_of(json!({"type":"Sequence","pretokenizers":[split(&qwen), bl(false)]})),
        "qwen2"
    );
    assert_eq!(pre_of(bl(true)), "gpt-2");
    assert_eq!(
        pre_of(json!({"type":"Sequence","pretokenizers":[split("x+"), bl(false)]})),
        "default"
    );
}

#[test]
fn tokenizer_kv_errors() {
    let mut t = tokenizer(smollm2_pre(), false);
    t["model"]["type"] = json!("Unigram");
    assert!(matches!(
        tokenizer_kv(&t, None, None),
        Err(GgufError::Unsupported(_))
    ));
    let mut t = tokenizer(json!({"type":"Metaspace"}), false);
    t["decoder"] = json!({"type":"Metaspace"});
    assert!(matches!(
        tokenizer_kv(&t, None, None),
        Err(GgufError::Unsupported(_))
    ));
    // A token id of 2^40 is refused before any table is sized by it.
    let mut t = tokenizer(smollm2_pre(), false);
    t["model"]["vocab"]["huge"] = json!(1u64 << 40);
    assert!(matches!(
        tokenizer_kv(&t, None, None),
        Err(GgufError::BadField { .. })
    ));
    let t = tokenizer(smollm2_pre(), false);
    assert!(matches!(
        tokenizer_kv(&t, None, Some(5)),
        Err(GgufError::BadField { .. })
    ));
    assert!(matches!(
        tokenizer_kv(&t, None, Some(1 << 30)),
        Err(GgufError::BadField { .. })
    ));
    assert!(matches!(
        tokenizer_kv(&t, Some(&json!({"bos_token":"<nope>"})), None),
        Err(GgufError::BadField { field, .. }) if field == "bos_token"
    ));
    let mut t = tokenizer(smollm2_pre(), false);
    t["model"]["merges"] = json!([["a", "b", "c"]]);
    assert!(matches!(
        tokenizer_kv(&t, None, None),
        Err(GgufError::BadField { .. })
    ));
    let mut t = tokenizer(smollm2_pre(), false);
    t["model"]["vocab"]["dup"] = json!(3);
    assert!(matches!(
        tokenizer_kv(&t, None, None),
        Err(GgufError::BadField { .. })
    ));
}

/// Writes a GGUF with the given KVs and a tiny token_embd (and optionally output).
fn gguf_with(kv: &[(String, GgufValue)], with_output: bool) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.gguf");
    let mut specs = vec![GgufTensorSpec {
        name: "token_embd.weight".into(),
        dims: vec![4, 10],
        ggml_type: ggml_type::F32,
        n_bytes: 160,
    }];
    if with_output {
        specs.push(GgufTensorSpec {
            name: "output.weight".into(),
            ..specs[0].clone()
        });
    }
    let mut w = GgufWriter::create(&p, kv, &specs, &[]).unwrap();
    for s in &specs {
        w.write_tensor(&s.name, &[0u8; 160]).unwrap();
    }
    w.finish().unwrap();
    std::fs::read(&p).unwrap()
}

#[test]
fn export_import_round_trip() {
    let cfg = smollm2_config();
    let tj = tokenizer(smollm2_pre(), false);
    let mut kv = llama_arch_kv(&cfg, "SmolLM2", 0, 32).unwrap();
    kv.extend(tokenizer_kv(&tj, Some(&tok_config()), Some(10)).unwrap());
    let bytes = gguf_with(&kv, false);
    let f = GgufFile::parse(&bytes).unwrap();

    let c = config_from_gguf(&f).unwrap();
    for k in [
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "max_position_embeddings",
        "vocab_size",
        "model_type",
        "architectures",
        "tie_word_embeddings",
        "bos_token_id",
        "eos_token_id",
    ] {
        assert_eq!(c[k], cfg[k], "{k}");
    }
    // Floats compare as f64 (HF writes 100000 or 100000.0 interchangeably); 1e-5 must
    // come back as exactly 1e-5, not as the f32's long decimal expansion.
    assert_eq!(c["rms_norm_eps"].as_f64(), Some(1e-5));
    assert_eq!(c["rope_theta"].as_f64(), Some(100000.0));
    assert_eq!(c["head_dim"], json!(64));
    assert_eq!(
        config_from_gguf(&GgufFile::parse(&gguf_with(&kv, true)).unwrap()).unwrap()
            ["tie_word_embeddings"],
        json!(false)
    );

    let t2 = tokenizer_json_from_gguf(&f).unwrap();
    assert_eq!(t2["pre_tokenizer"], smollm2_pre());
    assert_eq!(t2["model"]["merges"], json!(["a b", "Ġ ab"]));
    let vocab = t2["model"]["vocab"].as_object().unwrap();
    assert_eq!(vocab.len(), 8, "unused [PAD] fillers are not HF tokens");
    for (tok, id) in tj["model"]["vocab"].as_object().unwrap() {
        assert_eq!(&vocab[tok], id, "{tok}");
    }
    let added = t2["added_tokens"].as_array().unwrap();
    assert_eq!(added.len(), 3);
    assert_eq!(added[1]["content"], json!("<|im_start|>"));
    assert_eq!(added[1]["special"], json!(true));
    assert_eq!(t2["post_processor"], Value::Null);
    let tc2 = tokenizer_config_from_gguf(&f).unwrap();
    assert_eq!(tc2["bos_token"], json!("<|im_start|>"));
    assert_eq!(tc2["eos_token"], json!("<|im_end|>"));
    assert_eq!(tc2["chat_template"], json!("{{ x }}"));
    assert_eq!(tc2["model_max_length"], json!(8192));

    // Fixed point: exporting the imported tokenizer gives the same KVs.
    let again = tokenizer_kv(&t2, Some(&tc2), Some(10)).unwrap();
    let orig = tokenizer_kv(&tj, Some(&tok_config()), Some(10)).unwrap();
    assert_eq!(again, orig);
}

#[test]
fn bos_template_round_trip_and_every_pre() {
    let split = |re: &str| json!({"type":"Split","pattern":{"Regex":re},"behavior":"Isolated","invert":false});
    let bl = |r: bool| json!({"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":r});
    for (pre, name) in [
        (smollm2_pre(), "smollm"),
        (
            json!({"type":"Sequence","pretokenizers":[split(LLAMA3_RE), bl(false)]}),
            "llama-bpe",
        ),
        (
            json!({"type":"Sequence","pretokenizers":[split(&LLAMA3_RE.replace(r"\p{N}{1,3}", r"\p{N}")), bl(false)]}),
            "qwen2",
        ),
        (bl(true), "gpt-2"),
    ] {
        let mut tc = tok_config();
        tc["add_bos_token"] = json!(true);
        let mut kv = llama_arch_kv(&smollm2_config(), "m", 0, 32).unwrap();
        kv.extend(tokenizer_kv(&tokenizer(pre, false), Some(&tc), Some(10)).unwrap());
        assert_eq!(get(&kv, "tokenizer.ggml.pre"), &GgufValue::str(name));
        let bytes = gguf_with(&kv, false);
        let f = GgufFile::parse(&bytes).unwrap();
        let t2 = tokenizer_json_from_gguf(&f).unwrap();
        assert_eq!(t2["post_processor"]["type"], json!("TemplateProcessing"));
        assert_eq!(
            t2["post_processor"]["special_tokens"]["<|im_start|>"]["ids"],
            json!([1])
        );
        // Without tokenizer_config the template alone yields add_bos = true again,
        // and the pre name survives the trip.
        let kv2 = tokenizer_kv(&t2, None, Some(10)).unwrap();
        assert_eq!(
            get(&kv2, "tokenizer.ggml.add_bos_token"),
            &GgufValue::Bool(true)
        );
        assert_eq!(
            get(&kv2, "tokenizer.ggml.add_eos_token"),
            &GgufValue::Bool(false)
        );
        assert_eq!(get(&kv2, "tokenizer.ggml.pre"), &GgufValue::str(name));
    }
}

#[test]
fn import_errors() {
    let mut kv = llama_arch_kv(&smollm2_config(), "m", 0, 32).unwrap();
    kv.retain(|(k, _)| k != "llama.block_count");
    let b = gguf_with(&kv, false);
    let f = GgufFile::parse(&b).unwrap();
    assert!(
        matches!(config_from_gguf(&f), Err(GgufError::BadField { field, .. }) if field == "llama.block_count")
    );
    assert!(matches!(
        tokenizer_json_from_gguf(&f),
        Err(GgufError::BadField { .. })
    ));
    // Wrong value type for a count (u64 instead of u32), as llama.cpp would refuse.
    let mut kv = llama_arch_kv(&smollm2_config(), "m", 0, 32).unwrap();
    for (k, v) in kv.iter_mut() {
        if k == "llama.block_count" {
            *v = GgufValue::U64(30);
        }
    }
    let b = gguf_with(&kv, false);
    assert!(matches!(
        config_from_gguf(&GgufFile::parse(&b).unwrap()),
        Err(GgufError::BadField { .. })
    ));
    // SentencePiece tokenizers are not imported as byte-level BPE.
    let kv = vec![
        ("tokenizer.ggml.model".to_string(), GgufValue::str("llama")),
        ("general.architecture".to_string(), GgufValue::str("falcon")),
    ];
    let b = gguf_with(&kv, false);
    let f = GgufFile::parse(&b).unwrap();
    assert!(matches!(
        tokenizer_json_from_gguf(&f),
        Err(GgufError::Unsupported(_))
    ));
    assert!(matches!(
        config_from_gguf(&f),
        Err(GgufError::Unsupported(_))
    ));
    // Special token id past the vocabulary.
    let mut kv = tokenizer_kv(&tokenizer(smollm2_pre(), false), Some(&tok_config()), None).unwrap();
    for (k, v) in kv.iter_mut() {
        if k == "tokenizer.ggml.bos_token_id" {
            *v = GgufValue::U32(1000);
        }
    }
    kv.retain(|(k, _)| k != "tokenizer.ggml.add_bos_token");
    kv.push(("tokenizer.ggml.add_bos_token".into(), GgufValue::Bool(true)));
    let b = gguf_with(&kv, false);
    assert!(matches!(
        tokenizer_json_from_gguf(&GgufFile::parse(&b).unwrap()),
        Err(GgufError::BadField { .. })
    ));
}
