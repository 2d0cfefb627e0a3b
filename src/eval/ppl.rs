//! The window loop of llama.cpp's `llama-perplexity`: fresh context per window, score the second half.

use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use super::model::MAX_SEQ;
use super::{score_position, EvalError, LlamaModel, ScoreSummary, Scores};

/// The evaluation parameters; `ctx = 512`, `chunks = Some(48)`, `bos = None` reproduces the
/// llama.cpp anchors for SmolLM2.
#[derive(Debug, Clone, PartialEq)]
pub struct PplConfig {
    /// Window length in tokens (at least 4, at most 32768).
    pub ctx: usize,
    /// Use at most this many windows (all complete windows if `None`).
    pub chunks: Option<usize>,
    /// BOS id written over the first token of every window, if the tokenizer adds BOS
    /// (see [`super::EvalTokenizer::bos_for_eval`]); `None` leaves windows untouched.
    pub bos: Option<u32>,
}

/// Everything `tpk eval` reports. Field names are stable (they are the JSON keys); baseline
/// fields are `null` without a baseline. See [`super::score`] for the exact definitions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalReport {
    /// Window length used.
    pub ctx: usize,
    /// Windows evaluated.
    pub n_windows: usize,
    /// The statistics (flattened into this object in JSON).
    #[serde(flatten)]
    pub stats: ScoreSummary,
    /// Throughput of the evaluated model's forward pass: n_windows * ctx / seconds spent in it
    /// (baseline and scoring time excluded). The one non-deterministic field.
    pub tokens_per_second: f64,
    /// Wall-clock seconds for the whole evaluation, baseline and scoring included.
    pub seconds_total: f64,
}

/// Evaluates `model` on `tokens` window by window (and `baseline` on the same windows, for KLD
/// and top-1 agreement), holding at most one window of logits per model in memory.
/// `progress(done, total)` is called after each window.
pub fn perplexity(
    model: &LlamaModel,
    tokens: &[u32],
    cfg: &PplConfig,
    baseline: Option<&LlamaModel>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<EvalReport, EvalError> {
    let start = Instant::now();
    let ctx = cfg.ctx;
    if !(4..=MAX_SEQ).contains(&ctx) {
        return Err(EvalError::Params(format!(
            "ctx must be within 4..={MAX_SEQ}, got {ctx}"
        )));
    }
    let vocab = model.vocab_size();
    if let Some(b) = baseline {
        if b.vocab_size() != vocab {
            return Err(EvalError::VocabMismatch {
                model: vocab,
                base: b.vocab_size(),
            });
        }
    }
    if let Some(bos) = cfg.bos {
        if bos as usize >= vocab {
            return Err(EvalError::TokenOutOfRange { token: bos, vocab });
        }
    }
    let mut n_windows = tokens.len() / ctx;
    if let Some(c) = cfg.chunks {
        n_windows = n_windows.min(c);
    }
    if n_windows == 0 {
        return Err(EvalError::TooFewTokens {
            have: tokens.len(),
            need: ctx,
        });
    }
    let first = ctx / 2;
    let mut scores = Scores::default();
    let mut model_secs = 0.0;
    for w in 0..n_windows {
        // w < n_windows <= tokens.len() / ctx, so the range is in bounds.
        let mut window = tokens[w * ctx..(w + 1) * ctx].to_vec();
        if let Some(bos) = cfg.bos {
            window[0] = bos;
        }
        let t0 = Instant::now();
        let logits = model.forward_from(&window, first)?;
        model_secs += t0.elapsed().as_secs_f64();
        let base_logits = baseline
            .map(|b| b.forward_from(&window, first))
            .transpose()?;
        // Positions are scored in parallel but collected in order: the result does not depend
        // on the thread count.
        let window_scores: Vec<_> = (first..ctx - 1)
            .into_par_iter()
            .map(|pos| {
                // Row r of the returned logits is position first + r.
                let r = pos - first;
                let m = &logits[r * vocab..(r + 1) * vocab];
                let b = base_logits
                    .as_deref()
                    .map(|b| &b[r * vocab..(r + 1) * vocab]);
                score_position(m, b, window[pos + 1])
            })
            .collect::<Result<_, _>>()?;
        for s in window_scores {
            scores.push(s);
        }
        progress(w + 1, n_windows);
    }
    let scored_tokens = (n_windows * ctx) as f64;
    Ok(EvalReport {
        ctx,
        n_windows,
        stats: scores.summary(),
        tokens_per_second: if model_secs > 0.0 {
            scored_tokens / model_secs
        } else {
            0.0
        },
        seconds_total: start.elapsed().as_secs_f64(),
    })
}
