//! The LLaMA-family hyper-parameters, parsed from a Hugging Face `config.json` and validated once
//! so that the forward pass never has to re-check them.

use serde_json::Value;

/// Largest accepted hidden size, FFN size or head dimension: far above any LLaMA-family model,
/// low enough that shape products cannot overflow.
pub const MAX_DIM: usize = 1 << 18;
/// Largest accepted layer or head count.
pub const MAX_COUNT: usize = 4096;
/// Largest accepted vocabulary.
pub const MAX_VOCAB: usize = 1 << 22;

/// Why a `config.json` was refused; one variant per kind of defect so callers and tests can tell them apart.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// The document is not a JSON object.
    #[error("config is not a JSON object")]
    NotAnObject,
    /// A required field is absent (or null).
    #[error("missing field `{0}`")]
    Missing(&'static str),
    /// A field has the wrong JSON type.
    #[error("field `{field}` must be {expected}")]
    WrongType {
        /// Field name.
        field: &'static str,
        /// What the field must be.
        expected: &'static str,
    },
    /// A field's value is outside its accepted range.
    #[error("field `{field}` = {value} out of range: {reason}")]
    OutOfRange {
        /// Field name.
        field: &'static str,
        /// The value as written.
        value: String,
        /// The accepted range.
        reason: &'static str,
    },
    /// Fields are individually valid but contradict each other.
    #[error("inconsistent config: {0}")]
    Inconsistent(String),
    /// The architecture is not one this engine computes.
    #[error("unsupported architecture {0:?} (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)")]
    UnsupportedArchitecture(String),
    /// The config asks for a feature the forward pass does not implement (e.g. RoPE scaling).
    #[error("unsupported feature `{field}` = {value}")]
    UnsupportedFeature {
        /// Field name.
        field: &'static str,
        /// The value as written.
        value: String,
    },
}

/// The hyper-parameters the forward pass needs; built only through [`LlamaConfig::from_json`],
/// so every instance is internally consistent.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// The architecture string from `architectures`.
    pub architecture: String,
    /// Model width.
    pub hidden_size: usize,
    /// SwiGLU inner width.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention); defaults to the query heads.
    pub num_key_value_heads: usize,
    /// Per-head dimension; defaults to hidden / heads. Always even (RoPE pairs halves).
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base; defaults to 10000 like Hugging Face.
    pub rope_theta: f64,
    /// Vocabulary size (rows of the embedding).
    pub vocab_size: usize,
    /// Whether the LM head reuses the token embedding; defaults to false like Hugging Face.
    pub tie_word_embeddings: bool,
    /// Trained context length; defaults to 2048. Informational: longer windows are allowed.
    pub max_position_embeddings: usize,
    /// BOS id from the model config, if any (used only as a fallback when choosing BOS).
    pub bos_token_id: Option<u32>,
    /// Sliding attention window in force (Mistral `sliding_window`, Qwen2 with `use_sliding_window`).
    pub sliding_window: Option<usize>,
}

fn field<'a>(obj: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).filter(|v| !v.is_null())
}

fn req_usize(
    obj: &serde_json::Map<String, Value>,
    name: &'static str,
    max: usize,
) -> Result<usize, ConfigError> {
    let v = field(obj, name).ok_or(ConfigError::Missing(name))?;
    parse_usize(v, name, max)
}

fn opt_usize(
    obj: &serde_json::Map<String, Value>,
    name: &'static str,
    max: usize,
) -> Result<Option<usize>, ConfigError> {
    field(obj, name)
        .map(|v| parse_usize(v, name, max))
        .transpose()
}

fn parse_usize(v: &Value, name: &'static str, max: usize) -> Result<usize, ConfigError> {
    let n = v.as_u64().ok_or(ConfigError::WrongType {
        field: name,
        expected: "a non-negative integer",
    })?;
    if n == 0 || n > max as u64 {
        return Err(ConfigError::OutOfRange {
            field: name,
            value: n.to_string(),
            reason: "must be at least 1 and within the engine's size limits",
        });
    }
    usize::try_from(n).map_err(|_| ConfigError::OutOfRange {
        field: name,
        value: n.to_string(),
        reason: "does not fit in usize",
    })
}

fn parse_pos_f64(v: &Value, name: &'static str) -> Result<f64, ConfigError> {
    let x = v.as_f64().ok_or(ConfigError::WrongType {
        field: name,
        expected: "a number",
    })?;
    if !(x.is_finite() && x > 0.0) {
        return Err(ConfigError::OutOfRange {
            field: name,
            value: x.to_string(),
            reason: "must be finite and positive",
        });
    }
    Ok(x)
}

fn opt_bool(
    obj: &serde_json::Map<String, Value>,
    name: &'static str,
) -> Result<Option<bool>, ConfigError> {
    field(obj, name)
        .map(|v| {
            v.as_bool().ok_or(ConfigError::WrongType {
                field: name,
                expected: "a boolean",
            })
        })
        .transpose()
}

impl LlamaConfig {
    /// Parses and validates a Hugging Face `config.json` document, so that a bad or foreign
    /// config is refused with a precise reason before any weight is read.
    pub fn from_json(doc: &Value) -> Result<Self, ConfigError> {
        let obj = doc.as_object().ok_or(ConfigError::NotAnObject)?;
        let archs = field(obj, "architectures").ok_or(ConfigError::Missing("architectures"))?;
        let archs = archs.as_array().ok_or(ConfigError::WrongType {
            field: "architectures",
            expected: "an array of strings",
        })?;
        let [arch] = archs.as_slice() else {
            return Err(ConfigError::UnsupportedArchitecture(format!("{archs:?}")));
        };
        let arch = arch.as_str().ok_or(ConfigError::WrongType {
            field: "architectures",
            expected: "an array of strings",
        })?;
        if !matches!(
            arch,
            "LlamaForCausalLM" | "MistralForCausalLM" | "Qwen2ForCausalLM"
        ) {
            return Err(ConfigError::UnsupportedArchitecture(arch.to_string()));
        }

        let hidden_size = req_usize(obj, "hidden_size", MAX_DIM)?;
        let intermediate_size = req_usize(obj, "intermediate_size", MAX_DIM)?;
        let num_hidden_layers = req_usize(obj, "num_hidden_layers", MAX_COUNT)?;
        let num_attention_heads = req_usize(obj, "num_attention_heads", MAX_COUNT)?;
        let num_key_value_heads =
            opt_usize(obj, "num_key_value_heads", MAX_COUNT)?.unwrap_or(num_attention_heads);
        let vocab_size = req_usize(obj, "vocab_size", MAX_VOCAB)?;
        let rms_norm_eps = parse_pos_f64(
            field(obj, "rms_norm_eps").ok_or(ConfigError::Missing("rms_norm_eps"))?,
            "rms_norm_eps",
        )?;
        let rope_theta = field(obj, "rope_theta")
            .map(|v| parse_pos_f64(v, "rope_theta"))
            .transpose()?
            .unwrap_or(10000.0);
        let tie_word_embeddings = opt_bool(obj, "tie_word_embeddings")?.unwrap_or(false);
        let max_position_embeddings =
            opt_usize(obj, "max_position_embeddings", usize::MAX)?.unwrap_or(2048);
        let bos_token_id = opt_usize(obj, "bos_token_id", MAX_VOCAB)
            .or_else(|e| match field(obj, "bos_token_id") {
                // id 0 is a legitimate BOS id.
                Some(v) if v.as_u64() == Some(0) => Ok(Some(0)),
                _ => Err(e),
            })?
            .map(|b| b as u32);

        if num_attention_heads % num_key_value_heads != 0 {
            return Err(ConfigError::Inconsistent(format!(
                "num_attention_heads {num_attention_heads} is not a multiple of num_key_value_heads {num_key_value_heads}"
            )));
        }
        let head_dim = match opt_usize(obj, "head_dim", MAX_DIM)? {
            Some(d) => d,
            None => {
                if hidden_size % num_attention_heads != 0 {
                    return Err(ConfigError::Inconsistent(format!(
                        "hidden_size {hidden_size} is not a multiple of num_attention_heads {num_attention_heads} and head_dim is not given"
                    )));
                }
                hidden_size / num_attention_heads
            }
        };
        if head_dim % 2 != 0 {
            return Err(ConfigError::Inconsistent(format!(
                "head_dim {head_dim} is odd; RoPE needs pairs"
            )));
        }
        // Attention width must be representable (bounded by MAX_COUNT * MAX_DIM < 2^31).
        if num_attention_heads
            .checked_mul(head_dim)
            .is_none_or(|w| w > MAX_DIM * 16)
        {
            return Err(ConfigError::Inconsistent(
                "num_attention_heads * head_dim too large".into(),
            ));
        }

        if let Some(rs) = field(obj, "rope_scaling") {
            return Err(ConfigError::UnsupportedFeature {
                field: "rope_scaling",
                value: rs.to_string(),
            });
        }
        if let Some(act) = field(obj, "hidden_act") {
            if act.as_str() != Some("silu") {
                return Err(ConfigError::UnsupportedFeature {
                    field: "hidden_act",
                    value: act.to_string(),
                });
            }
        }
        let sliding_window = match arch {
            "MistralForCausalLM" => opt_usize(obj, "sliding_window", usize::MAX)?,
            "Qwen2ForCausalLM" if opt_bool(obj, "use_sliding_window")? == Some(true) => {
                opt_usize(obj, "sliding_window", usize::MAX)?
            }
            _ => None,
        };

        Ok(Self {
            architecture: arch.to_string(),
            hidden_size,
            intermediate_size,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps,
            rope_theta,
            vocab_size,
            tie_word_embeddings,
            max_position_embeddings,
            bos_token_id,
            sliding_window,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({
            "architectures": ["LlamaForCausalLM"],
            "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
            "num_attention_heads": 9, "num_key_value_heads": 3, "rms_norm_eps": 1e-5,
            "rope_theta": 100000.0, "vocab_size": 49152, "tie_word_embeddings": true,
            "max_position_embeddings": 8192, "bos_token_id": 0, "hidden_act": "silu",
            "rope_scaling": null
        })
    }

    fn with(key: &str, v: Value) -> Result<LlamaConfig, ConfigError> {
        let mut d = base();
        d[key] = v;
        LlamaConfig::from_json(&d)
    }

    #[test]
    fn smollm2_config_parses_with_defaults() {
        let c = LlamaConfig::from_json(&base()).unwrap();
        assert_eq!(c.head_dim, 64);
        assert_eq!(c.num_key_value_heads, 3);
        assert_eq!(c.bos_token_id, Some(0));
        assert!(c.tie_word_embeddings);
        assert_eq!(c.rope_theta, 100000.0);
        let mut d = base();
        d.as_object_mut().unwrap().remove("rope_theta");
        d.as_object_mut().unwrap().remove("num_key_value_heads");
        let c = LlamaConfig::from_json(&d).unwrap();
        assert_eq!((c.rope_theta, c.num_key_value_heads), (10000.0, 9));
    }

    #[test]
    fn not_an_object() {
        assert_eq!(
            LlamaConfig::from_json(&json!([1])),
            Err(ConfigError::NotAnObject)
        );
    }

    #[test]
    fn missing_field() {
        let mut d = base();
        d.as_object_mut().unwrap().remove("vocab_size");
        assert_eq!(
            LlamaConfig::from_json(&d),
            Err(ConfigError::Missing("vocab_size"))
        );
        assert_eq!(
            with("hidden_size", Value::Null),
            Err(ConfigError::Missing("hidden_size"))
        );
    }

    #[test]
    fn wrong_type() {
        assert!(matches!(
            with("hidden_size", json!("576")),
            Err(ConfigError::WrongType {
                field: "hidden_size",
                ..
            })
        ));
        assert!(matches!(
            with("tie_word_embeddings", json!(1)),
            Err(ConfigError::WrongType {
                field: "tie_word_embeddings",
                ..
            })
        ));
    }

    #[test]
    fn out_of_range() {
        assert!(matches!(
            with("num_hidden_layers", json!(0)),
            Err(ConfigError::OutOfRange {
                field: "num_hidden_layers",
                ..
            })
        ));
        assert!(matches!(
            with("vocab_size", json!(1u64 << 40)),
            Err(ConfigError::OutOfRange {
                field: "vocab_size",
                ..
            })
        ));
        assert!(matches!(
            with("rms_norm_eps", json!(-1.0)),
            Err(ConfigError::OutOfRange {
                field: "rms_norm_eps",
                ..
            })
        ));
    }

    #[test]
    fn inconsistent() {
        assert!(matches!(
            with("num_key_value_heads", json!(4)),
            Err(ConfigError::Inconsistent(_))
        ));
        assert!(matches!(
            with("head_dim", json!(63)),
            Err(ConfigError::Inconsistent(_))
        ));
        assert!(matches!(
            with("hidden_size", json!(577)),
            Err(ConfigError::Inconsistent(_))
        ));
    }

    #[test]
    fn unsupported_architecture() {
        assert_eq!(
            with("architectures", json!(["GPT2LMHeadModel"])),
            Err(ConfigError::UnsupportedArchitecture(
                "GPT2LMHeadModel".into()
            ))
        );
        assert!(matches!(
            with("architectures", json!([])),
            Err(ConfigError::UnsupportedArchitecture(_))
        ));
    }

    #[test]
    fn unsupported_feature() {
        assert!(matches!(
            with("rope_scaling", json!({"type": "llama3", "factor": 8.0})),
            Err(ConfigError::UnsupportedFeature {
                field: "rope_scaling",
                ..
            })
        ));
        assert!(matches!(
            with("hidden_act", json!("gelu")),
            Err(ConfigError::UnsupportedFeature {
                field: "hidden_act",
                ..
            })
        ));
    }

    #[test]
    fn sliding_window_only_when_in_force() {
        let mut d = base();
        d["architectures"] = json!(["Qwen2ForCausalLM"]);
        d["sliding_window"] = json!(4096);
        d["use_sliding_window"] = json!(false);
        assert_eq!(LlamaConfig::from_json(&d).unwrap().sliding_window, None);
        d["architectures"] = json!(["MistralForCausalLM"]);
        assert_eq!(
            LlamaConfig::from_json(&d).unwrap().sliding_window,
            Some(4096)
        );
    }
}
