//! The window loop of llama.cpp's `llama-perplexity`: fresh context per window, score the second half.

use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use super::logits::{windows_crc, LogitsReader, LogitsShape, LogitsWriter};
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

/// Where the reference logits come from.
pub enum Baseline<'a> {
    /// Run this model on every window.
    Model(&'a LlamaModel),
    /// Read them from a file saved by an earlier run (see [`super::logits`]); the figures are
    /// bit-identical to running the model that saved it.
    Saved(&'a mut LogitsReader),
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
    perplexity_with(
        model,
        tokens,
        cfg,
        baseline.map(Baseline::Model),
        None,
        progress,
    )
}

/// The shape a saved-logits file for this run must have (see [`super::logits`]).
pub fn logits_shape(
    tokens: &[u32],
    cfg: &PplConfig,
    vocab: usize,
) -> Result<LogitsShape, EvalError> {
    let n_windows = n_windows(tokens, cfg)?;
    let too_big = |what: &str| EvalError::Params(format!("{what} does not fit a u32"));
    Ok(LogitsShape {
        ctx: u32::try_from(cfg.ctx).map_err(|_| too_big("ctx"))?,
        first: u32::try_from(cfg.ctx / 2).map_err(|_| too_big("ctx"))?,
        n_windows: u32::try_from(n_windows).map_err(|_| too_big("window count"))?,
        vocab: u32::try_from(vocab).map_err(|_| too_big("vocab"))?,
        tokens_crc: windows_crc(tokens, cfg.ctx, n_windows, cfg.bos),
    })
}

fn n_windows(tokens: &[u32], cfg: &PplConfig) -> Result<usize, EvalError> {
    let ctx = cfg.ctx;
    if !(4..=MAX_SEQ).contains(&ctx) {
        return Err(EvalError::Params(format!(
            "ctx must be within 4..={MAX_SEQ}, got {ctx}"
        )));
    }
    let mut n = tokens.len() / ctx;
    if let Some(c) = cfg.chunks {
        n = n.min(c);
    }
    if n == 0 {
        return Err(EvalError::TooFewTokens {
            have: tokens.len(),
            need: ctx,
        });
    }
    Ok(n)
}

/// [`perplexity`] with a baseline from either source, and optionally saving this model's
/// scored logits to `save` (which must have been created with [`logits_shape`] of this run)
/// so that later runs can use them as a [`Baseline::Saved`].
pub fn perplexity_with(
    model: &LlamaModel,
    tokens: &[u32],
    cfg: &PplConfig,
    mut baseline: Option<Baseline<'_>>,
    mut save: Option<&mut LogitsWriter>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<EvalReport, EvalError> {
    let start = Instant::now();
    let ctx = cfg.ctx;
    let n_windows = n_windows(tokens, cfg)?;
    let vocab = model.vocab_size();
    match &baseline {
        Some(Baseline::Model(b)) if b.vocab_size() != vocab => {
            return Err(EvalError::VocabMismatch {
                model: vocab,
                base: b.vocab_size(),
            });
        }
        Some(Baseline::Saved(r)) => r.check(&logits_shape(tokens, cfg, vocab)?)?,
        _ => {}
    }
    if let Some(bos) = cfg.bos {
        if bos as usize >= vocab {
            return Err(EvalError::TokenOutOfRange { token: bos, vocab });
        }
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
        let scored = (ctx - 1 - first) * vocab;
        if let Some(w) = save.as_deref_mut() {
            w.push_window(&logits[..scored])?;
        }
        let base_logits = match baseline.as_mut() {
            None => None,
            Some(Baseline::Model(b)) => Some(b.forward_from(&window, first)?),
            Some(Baseline::Saved(r)) => Some(r.next_window()?),
        };
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
