//! Turning the evaluation text into token ids with a Hugging Face `tokenizer.json`, and deciding
//! whether windows start with BOS (llama.cpp writes BOS over the first token of each window only
//! when the tokenizer adds one).

use std::path::Path;

use serde_json::Value;

use super::{EvalError, LlamaConfig};

/// Largest `tokenizer.json` accepted (real ones are a few MB).
pub const MAX_TOKENIZER_BYTES: u64 = 256 << 20;

/// A loaded tokenizer, wrapped so the rest of tenpak does not depend on the `tokenizers` API.
pub struct EvalTokenizer {
    inner: tokenizers::Tokenizer,
}

/// Loads a `tokenizer.json` file (size-limited), because the evaluation text must be tokenized
/// exactly as the model was trained.
pub fn load_tokenizer(path: &Path) -> Result<EvalTokenizer, EvalError> {
    let len = std::fs::metadata(path)?.len();
    if len > MAX_TOKENIZER_BYTES {
        return Err(EvalError::Tokenizer(format!(
            "{} is {len} bytes, limit {MAX_TOKENIZER_BYTES}",
            path.display()
        )));
    }
    tokenizer_from_json(&std::fs::read(path)?)
}

/// Builds a tokenizer from the bytes of a `tokenizer.json` (e.g. one embedded in a `.tpk`).
pub fn tokenizer_from_json(json: &[u8]) -> Result<EvalTokenizer, EvalError> {
    let inner =
        tokenizers::Tokenizer::from_bytes(json).map_err(|e| EvalError::Tokenizer(e.to_string()))?;
    Ok(EvalTokenizer { inner })
}

impl EvalTokenizer {
    /// Tokenizes the whole text once with no special tokens added, as llama-perplexity does.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, EvalError> {
        let enc = self
            .inner
            .encode_fast(text, false)
            .map_err(|e| EvalError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The id of a token string (e.g. `"<|endoftext|>"`), if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Decides the BOS written over each window's first token: `None` if the tokenizer does not
    /// add BOS. `add_bos_token` in `tokenizer_config` decides if present; otherwise the
    /// tokenizer's own post-processor is probed (does encoding with special tokens prepend a
    /// token?). The id comes from `tokenizer_config.bos_token`, else the probed token, else the
    /// model config's `bos_token_id`; if BOS is wanted but no id can be found, that is an error.
    pub fn bos_for_eval(
        &self,
        tokenizer_config: Option<&Value>,
        model: &LlamaConfig,
    ) -> Result<Option<u32>, EvalError> {
        let tc = tokenizer_config.and_then(Value::as_object);
        let explicit = tc
            .and_then(|o| o.get("add_bos_token"))
            .and_then(Value::as_bool);
        let probed = self.probe_prefix()?;
        let adds = explicit.unwrap_or(probed.is_some());
        if !adds {
            return Ok(None);
        }
        let named = tc
            .and_then(|o| o.get("bos_token"))
            .and_then(|b| {
                b.as_str()
                    .or_else(|| b.get("content").and_then(Value::as_str))
            })
            .and_then(|s| self.token_id(s));
        named
            .or(probed)
            .or(model.bos_token_id)
            .map(Some)
            .ok_or_else(|| EvalError::Tokenizer("tokenizer adds BOS but no BOS id is known".into()))
    }

    /// The token the post-processor prepends, if any.
    fn probe_prefix(&self) -> Result<Option<u32>, EvalError> {
        let enc = |special| {
            self.inner
                .encode_fast("a", special)
                .map(|e| e.get_ids().to_vec())
                .map_err(|e| EvalError::Tokenizer(e.to_string()))
        };
        let plain = enc(false)?;
        let with = enc(true)?;
        Ok(match with.split_first() {
            Some((&first, rest)) if with.len() > plain.len() && rest.starts_with(&plain) => {
                Some(first)
            }
            _ => None,
        })
    }
}
