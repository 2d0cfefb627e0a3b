//! The LLaMA-family forward pass on candle (CPU, f32), whole window at once, returning the
//! logits at every position because perplexity scores many positions per window.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};

use super::{EvalError, LlamaConfig};

/// One tensor as a weight source hands it over: (row-major shape, f32 values).
pub type TensorF32 = (Vec<usize>, Vec<f32>);

/// Where weights come from, so the same engine evaluates a `.tpk` file (dequantized on demand),
/// a safetensors folder or an in-memory fixture.
pub trait WeightSource {
    /// Returns the Hugging Face tensor `name` as (row-major shape, f32 values), or `Ok(None)` if
    /// the source has no such tensor (e.g. `lm_head.weight` with tied embeddings).
    fn tensor_f32(&self, name: &str) -> Result<Option<TensorF32>, EvalError>;
}

/// In-memory weights keyed by Hugging Face name: handy for tests and for callers that already
/// decoded everything.
impl WeightSource for HashMap<String, TensorF32> {
    fn tensor_f32(&self, name: &str) -> Result<Option<TensorF32>, EvalError> {
        Ok(self.get(name).cloned())
    }
}

/// Largest window the forward pass accepts; bounds the attention score buffer.
pub const MAX_SEQ: usize = 1 << 15;

struct Layer {
    input_norm: Tensor,
    /// q, k and v projections stacked by rows: [(H + 2 KV) * D, hidden], so one matmul does all three.
    qkv: Tensor,
    qkv_bias: Option<Tensor>,
    o: Tensor,
    o_bias: Option<Tensor>,
    post_norm: Tensor,
    /// gate and up stacked by rows: [2 * ffn, hidden].
    gate_up: Tensor,
    gate_up_bias: Option<Tensor>,
    down: Tensor,
    down_bias: Option<Tensor>,
}

/// A loaded model whose every tensor has been checked against its config; evaluating it cannot
/// hit a shape error on untrusted data.
pub struct LlamaModel {
    cfg: LlamaConfig,
    embed: Tensor,
    layers: Vec<Layer>,
    final_norm: Tensor,
    /// `[vocab, hidden]`; the embedding itself when tied.
    lm_head: Tensor,
    device: Device,
}

fn fetch(
    src: &dyn WeightSource,
    name: &str,
    expected: &[usize],
) -> Result<Option<Vec<f32>>, EvalError> {
    let Some((shape, data)) = src.tensor_f32(name)? else {
        return Ok(None);
    };
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n == data.len());
    if n.is_none() {
        return Err(EvalError::TensorLength {
            name: name.to_string(),
            shape,
            len: data.len(),
        });
    }
    if shape != expected {
        return Err(EvalError::TensorShape {
            name: name.to_string(),
            expected: expected.to_vec(),
            got: shape,
        });
    }
    Ok(Some(data))
}

fn required(src: &dyn WeightSource, name: &str, expected: &[usize]) -> Result<Vec<f32>, EvalError> {
    fetch(src, name, expected)?.ok_or_else(|| EvalError::MissingTensor {
        name: name.to_string(),
    })
}

/// Stacks row blocks `[r_i, cols]` into one `[sum r_i, cols]` tensor.
fn stack_rows(parts: Vec<Vec<f32>>, cols: usize, dev: &Device) -> Result<Tensor, EvalError> {
    let rows: usize = parts.iter().map(|p| p.len() / cols).sum();
    let data: Vec<f32> = parts.into_iter().flatten().collect();
    Ok(Tensor::from_vec(data, (rows, cols), dev)?)
}

/// Stacks optional biases of the given lengths; absent ones become zeros, all absent gives `None`.
fn stack_bias(
    parts: Vec<(Option<Vec<f32>>, usize)>,
    dev: &Device,
) -> Result<Option<Tensor>, EvalError> {
    if parts.iter().all(|(p, _)| p.is_none()) {
        return Ok(None);
    }
    let data: Vec<f32> = parts
        .into_iter()
        .flat_map(|(p, n)| p.unwrap_or_else(|| vec![0.0; n]))
        .collect();
    let n = data.len();
    Ok(Some(Tensor::from_vec(data, n, dev)?))
}

impl LlamaModel {
    /// Loads every tensor the config calls for from `src`, checking each shape, so that a
    /// truncated or mismatched weight file is refused before any evaluation starts.
    pub fn load(cfg: &LlamaConfig, src: &dyn WeightSource) -> Result<Self, EvalError> {
        let dev = Device::Cpu;
        let h = cfg.hidden_size;
        let f = cfg.intermediate_size;
        let v = cfg.vocab_size;
        // Bounded by the config limits (heads, head_dim), so no overflow.
        let qd = cfg.num_attention_heads * cfg.head_dim;
        let kvd = cfg.num_key_value_heads * cfg.head_dim;

        let embed = required(src, "model.embed_tokens.weight", &[v, h])?;
        let embed = Tensor::from_vec(embed, (v, h), &dev)?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{l}.");
            let vec1 = |name: &str, n: usize| -> Result<Tensor, EvalError> {
                Ok(Tensor::from_vec(
                    required(src, &format!("{p}{name}"), &[n])?,
                    n,
                    &dev,
                )?)
            };
            let mat = |name: &str, r: usize, c: usize| -> Result<Vec<f32>, EvalError> {
                required(src, &format!("{p}{name}.weight"), &[r, c])
            };
            let bias = |name: &str, n: usize| -> Result<(Option<Vec<f32>>, usize), EvalError> {
                Ok((fetch(src, &format!("{p}{name}.bias"), &[n])?, n))
            };
            let input_norm = vec1("input_layernorm.weight", h)?;
            let post_norm = vec1("post_attention_layernorm.weight", h)?;
            let qkv = stack_rows(
                vec![
                    mat("self_attn.q_proj", qd, h)?,
                    mat("self_attn.k_proj", kvd, h)?,
                    mat("self_attn.v_proj", kvd, h)?,
                ],
                h,
                &dev,
            )?;
            let qkv_bias = stack_bias(
                vec![
                    bias("self_attn.q_proj", qd)?,
                    bias("self_attn.k_proj", kvd)?,
                    bias("self_attn.v_proj", kvd)?,
                ],
                &dev,
            )?;
            let o = Tensor::from_vec(mat("self_attn.o_proj", h, qd)?, (h, qd), &dev)?;
            let o_bias = stack_bias(vec![bias("self_attn.o_proj", h)?], &dev)?;
            let gate_up = stack_rows(
                vec![mat("mlp.gate_proj", f, h)?, mat("mlp.up_proj", f, h)?],
                h,
                &dev,
            )?;
            let gate_up_bias = stack_bias(
                vec![bias("mlp.gate_proj", f)?, bias("mlp.up_proj", f)?],
                &dev,
            )?;
            let down = Tensor::from_vec(mat("mlp.down_proj", h, f)?, (h, f), &dev)?;
            let down_bias = stack_bias(vec![bias("mlp.down_proj", h)?], &dev)?;
            layers.push(Layer {
                input_norm,
                qkv,
                qkv_bias,
                o,
                o_bias,
                post_norm,
                gate_up,
                gate_up_bias,
                down,
                down_bias,
            });
        }
        let final_norm = Tensor::from_vec(required(src, "model.norm.weight", &[h])?, h, &dev)?;
        let lm_head = if cfg.tie_word_embeddings {
            embed.clone()
        } else {
            Tensor::from_vec(required(src, "lm_head.weight", &[v, h])?, (v, h), &dev)?
        };
        Ok(Self {
            cfg: cfg.clone(),
            embed,
            layers,
            final_norm,
            lm_head,
            device: dev,
        })
    }

    /// The config the model was loaded with (vocabulary size, BOS fallback...).
    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// `x [T, in] @ w[out, in]^T (+ b)`.
    fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor, EvalError> {
        let y = x.matmul(&w.t()?)?;
        Ok(match b {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }

    /// RoPE tables `[T, D/2]` for positions 0..T, angles computed in f64 then rounded.
    fn rope_tables(&self, t: usize) -> Result<(Tensor, Tensor), EvalError> {
        let half = self.cfg.head_dim / 2;
        let d = self.cfg.head_dim as f64;
        let mut cos = Vec::with_capacity(t * half);
        let mut sin = Vec::with_capacity(t * half);
        for pos in 0..t {
            for i in 0..half {
                let inv = self.cfg.rope_theta.powf(-((2 * i) as f64) / d);
                let a = pos as f64 * inv;
                cos.push(a.cos() as f32);
                sin.push(a.sin() as f32);
            }
        }
        Ok((
            Tensor::from_vec(cos, (t, half), &self.device)?,
            Tensor::from_vec(sin, (t, half), &self.device)?,
        ))
    }

    /// Runs the model on one fresh context and returns the logits at every position, row-major
    /// `[tokens.len()][vocab]`, because perplexity needs many positions from one pass.
    pub fn forward_all(&self, tokens: &[u32]) -> Result<Vec<f32>, EvalError> {
        self.forward_from(tokens, 0)
    }

    /// Like [`Self::forward_all`] but returns only the logits of positions `first..tokens.len()`,
    /// row-major `[tokens.len() - first][vocab]`: perplexity scores only the second half of a
    /// window, and the LM head is a fifth of the model's work.
    pub fn forward_from(&self, tokens: &[u32], first: usize) -> Result<Vec<f32>, EvalError> {
        let c = &self.cfg;
        let t = tokens.len();
        if t == 0 || t > MAX_SEQ || first >= t {
            return Err(EvalError::Params(format!(
                "forward pass needs 1..={MAX_SEQ} tokens and a first logits position inside them, got {t} tokens, first {first}"
            )));
        }
        if let Some(w) = c.sliding_window {
            if t > w {
                return Err(EvalError::SlidingWindow { len: t, window: w });
            }
        }
        if let Some(&bad) = tokens.iter().find(|&&id| id as usize >= c.vocab_size) {
            return Err(EvalError::TokenOutOfRange {
                token: bad,
                vocab: c.vocab_size,
            });
        }
        let (nh, nkv, hd) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim);
        let rep = nh / nkv;
        let eps = c.rms_norm_eps as f32;
        let qd = nh * hd;
        let kvd = nkv * hd;
        let f = c.intermediate_size;
        let dev = &self.device;

        let ids = Tensor::from_slice(tokens, t, dev)?;
        let mut x = self.embed.index_select(&ids, 0)?; // [T, H]
        let (cos, sin) = self.rope_tables(t)?;
        let mask: Vec<f32> = (0..t)
            .flat_map(|i| (0..t).map(move |j| if j <= i { 0.0 } else { f32::NEG_INFINITY }))
            .collect();
        let mask = Tensor::from_vec(mask, (t, t), dev)?;
        let scale = 1.0 / (hd as f64).sqrt();

        for layer in &self.layers {
            let xn = candle_nn::ops::rms_norm(&x, &layer.input_norm, eps)?;
            let qkv = Self::linear(&xn, &layer.qkv, layer.qkv_bias.as_ref())?; // [T, qd + 2 kvd]
            let heads = |start: usize, n: usize| -> Result<Tensor, EvalError> {
                Ok(qkv
                    .narrow(1, start, n * hd)?
                    .reshape((t, n, hd))?
                    .transpose(0, 1)?
                    .contiguous()?
                    .unsqueeze(0)?) // [1, n, T, hd]
            };
            let q = candle_nn::rotary_emb::rope(&heads(0, nh)?, &cos, &sin)?;
            let k = candle_nn::rotary_emb::rope(&heads(qd, nkv)?, &cos, &sin)?;
            let v = heads(qd + kvd, nkv)?;
            // Query head h uses KV head h / rep, so the rep query heads of one KV group are
            // consecutive: view q as [KV, rep*T, hd] and avoid repeating k and v.
            let q = (q.reshape((nkv, rep * t, hd))? * scale)?;
            let k = k.reshape((nkv, t, hd))?;
            let v = v.reshape((nkv, t, hd))?;
            let scores = q.matmul(&k.t()?)?.reshape((nkv, rep, t, t))?;
            let scores = scores.broadcast_add(&mask)?;
            let probs = candle_nn::ops::softmax_last_dim(&scores)?.reshape((nkv, rep * t, t))?;
            let attn = probs
                .matmul(&v)? // [KV, rep*T, hd]
                .reshape((nh, t, hd))?
                .transpose(0, 1)?
                .contiguous()?
                .reshape((t, qd))?;
            let o = Self::linear(&attn, &layer.o, layer.o_bias.as_ref())?;
            x = (x + o)?;

            let xn = candle_nn::ops::rms_norm(&x, &layer.post_norm, eps)?;
            let gu = Self::linear(&xn, &layer.gate_up, layer.gate_up_bias.as_ref())?; // [T, 2F]
            let gate = gu.narrow(1, 0, f)?;
            let up = gu.narrow(1, f, f)?;
            let act = (candle_nn::ops::silu(&gate)? * up)?;
            let down = Self::linear(&act, &layer.down, layer.down_bias.as_ref())?;
            x = (x + down)?;
        }
        let x = x.narrow(0, first, t - first)?;
        let xn = candle_nn::ops::rms_norm(&x, &self.final_norm, eps)?;
        let logits = xn.matmul(&self.lm_head.t()?)?;
        debug_assert_eq!(logits.dtype(), DType::F32);
        Ok(logits.flatten_all()?.to_vec1::<f32>()?)
    }

    /// Number of values in one logits row.
    pub fn vocab_size(&self) -> usize {
        self.cfg.vocab_size
    }
}
