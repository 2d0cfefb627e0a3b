//! The evaluation tokenizer on a hand-written byte-level BPE `tokenizer.json` (SmolLM2-style
//! pre-tokenizer: digits split one by one, then GPT-2 byte-level splitting, no prefix space).

use serde_json::{json, Value};
use tenpak::eval::{load_tokenizer, tokenizer_from_json, EvalError, LlamaConfig};

fn tokenizer_json(post_processor: Value) -> Vec<u8> {
    let vocab = json!({
        "<|endoftext|>": 0, "h": 1, "e": 2, "l": 3, "o": 4, "w": 5, "r": 6, "d": 7, "Ġ": 8,
        "1": 9, "2": 10, "3": 11, "4": 12, "!": 13, "he": 14, "ll": 15, "hell": 16, "hello": 17,
        "Ġw": 18, "or": 19, "Ġwor": 20, "Ġworl": 21, "Ġworld": 22, "12": 23, "<s>": 24
    });
    let special = |id: u32, content: &str| {
        json!({"id": id, "content": content, "single_word": false, "lstrip": false,
               "rstrip": false, "normalized": false, "special": true})
    };
    json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [special(0, "<|endoftext|>"), special(24, "<s>")],
        "normalizer": null,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}
        ]},
        "post_processor": post_processor,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab,
                  "merges": ["h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "Ġwor l",
                             "Ġworl d", "1 2"]}
    })
    .to_string()
    .into_bytes()
}

fn bos_template() -> Value {
    json!({"type": "TemplateProcessing",
           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
           "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
           "special_tokens": {"<s>": {"id": "<s>", "ids": [24], "tokens": ["<s>"]}}})
}

fn model_cfg(bos: Option<u32>) -> LlamaConfig {
    let mut c = json!({"architectures": ["LlamaForCausalLM"], "hidden_size": 8, "intermediate_size": 8,
        "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 25, "rms_norm_eps": 1e-5});
    if let Some(b) = bos {
        c["bos_token_id"] = json!(b);
    }
    LlamaConfig::from_json(&c).unwrap()
}

#[test]
fn byte_level_bpe_with_single_digits() {
    let tok = tokenizer_from_json(&tokenizer_json(Value::Null)).unwrap();
    // "hello" merges fully; " world" becomes Ġworld; the space before the digits stays alone;
    // digits are split one by one, so the "1 2" merge never applies.
    assert_eq!(
        tok.tokenize("hello world 1234!").unwrap(),
        vec![17, 22, 8, 9, 10, 11, 12, 13]
    );
    // No special tokens are added, even with a BOS template in the post-processor.
    let tok = tokenizer_from_json(&tokenizer_json(bos_template())).unwrap();
    assert_eq!(tok.tokenize("hello").unwrap(), vec![17]);
    assert_eq!(tok.token_id("<s>"), Some(24));

    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("tokenizer.json");
    std::fs::write(&p, tokenizer_json(Value::Null)).unwrap();
    assert_eq!(
        load_tokenizer(&p).unwrap().tokenize("hello").unwrap(),
        vec![17]
    );
}

#[test]
fn bos_decision() {
    let plain = tokenizer_from_json(&tokenizer_json(Value::Null)).unwrap();
    let templ = tokenizer_from_json(&tokenizer_json(bos_template())).unwrap();
    // SmolLM2 case: no BOS in the post-processor, add_bos_token false (or absent).
    assert_eq!(
        plain
            .bos_for_eval(Some(&json!({"add_bos_token": false})), &model_cfg(Some(0)))
            .unwrap(),
        None
    );
    assert_eq!(plain.bos_for_eval(None, &model_cfg(Some(0))).unwrap(), None);
    // The post-processor prepends <s>: BOS = 24, unless tokenizer_config says otherwise.
    assert_eq!(
        templ.bos_for_eval(None, &model_cfg(None)).unwrap(),
        Some(24)
    );
    assert_eq!(
        templ
            .bos_for_eval(Some(&json!({"add_bos_token": false})), &model_cfg(None))
            .unwrap(),
        None
    );
    // Explicit add_bos_token with a named BOS (string or AddedToken object form).
    let tc = json!({"add_bos_token": true, "bos_token": "<s>"});
    assert_eq!(
        plain.bos_for_eval(Some(&tc), &model_cfg(Some(0))).unwrap(),
        Some(24)
    );
    let tc = json!({"add_bos_token": true, "bos_token": {"content": "<|endoftext|>"}});
    assert_eq!(
        plain.bos_for_eval(Some(&tc), &model_cfg(None)).unwrap(),
        Some(0)
    );
    // Falls back to the model config's bos_token_id, and errors if nothing names a BOS.
    let tc = json!({"add_bos_token": true});
    assert_eq!(
        plain.bos_for_eval(Some(&tc), &model_cfg(Some(3))).unwrap(),
        Some(3)
    );
    assert!(matches!(
        plain.bos_for_eval(Some(&tc), &model_cfg(None)),
        Err(EvalError::Tokenizer(_))
    ));
}

#[test]
fn bad_tokenizer_files_are_errors() {
    assert!(matches!(
        tokenizer_from_json(b"{not json"),
        Err(EvalError::Tokenizer(_))
    ));
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        load_tokenizer(&dir.path().join("absent.json")),
        Err(EvalError::Io(_))
    ));
}
