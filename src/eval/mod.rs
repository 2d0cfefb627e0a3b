//! Perplexity and KL-divergence evaluation of a LLaMA-family model.
//!
//! The numbers follow llama.cpp's `llama-perplexity` method (see `/work/shared/eval/README.md`) so
//! that tenpak's quality figures compare one to one with llama.cpp's anchors:
//! [`config`] parses and validates a Hugging Face `config.json`, [`model`] runs a whole-window
//! forward pass on candle (CPU, f32) from any [`WeightSource`], [`score`] holds the loss and
//! divergence arithmetic on raw logits, [`ppl`] drives the windows, and [`tokenizer`] turns the
//! evaluation text into ids.

pub mod config;
pub mod logits;
pub mod model;
pub mod ppl;
pub mod score;
pub mod source;
pub mod tokenizer;

pub use config::{ConfigError, LlamaConfig};
pub use logits::{LogitsError, LogitsReader, LogitsShape, LogitsWriter};
pub use model::{LlamaModel, TensorF32, WeightSource};
pub use ppl::{logits_shape, perplexity, perplexity_with, Baseline, EvalReport, PplConfig};
pub use score::{score_position, PositionScore, ScoreSummary, Scores};
pub use source::{open_model, OpenedModel, SafetensorsSource, SourceError, TpkSource};
pub use tokenizer::{load_tokenizer, tokenizer_from_json, EvalTokenizer};

/// Everything that can go wrong while evaluating; typed so the CLI can tell a bad input
/// (config, weights, tokens) from an internal failure.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The model's `config.json` is missing a field, has a bad value or asks for an unsupported feature.
    #[error("model config: {0}")]
    Config(#[from] ConfigError),
    /// The weight source failed (I/O, decoding); carries the implementor's own error.
    #[error("weight source: {0}")]
    Source(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A tensor the architecture needs is not in the weight source.
    #[error("missing tensor {name}")]
    MissingTensor {
        /// Hugging Face tensor name.
        name: String,
    },
    /// A tensor's shape disagrees with the config.
    #[error("tensor {name}: shape {got:?}, config requires {expected:?}")]
    TensorShape {
        /// Hugging Face tensor name.
        name: String,
        /// Shape implied by the config.
        expected: Vec<usize>,
        /// Shape the source returned.
        got: Vec<usize>,
    },
    /// A tensor's value count disagrees with its own stated shape.
    #[error("tensor {name}: {len} values for shape {shape:?}")]
    TensorLength {
        /// Hugging Face tensor name.
        name: String,
        /// Shape the source returned.
        shape: Vec<usize>,
        /// Number of values the source returned.
        len: usize,
    },
    /// A token id is outside the model's vocabulary.
    #[error("token id {token} out of range for vocabulary of {vocab}")]
    TokenOutOfRange {
        /// The offending id.
        token: u32,
        /// The model's vocabulary size.
        vocab: usize,
    },
    /// The sequence is longer than the model's sliding attention window, which this engine does not implement.
    #[error("sequence of {len} tokens exceeds the sliding attention window of {window}")]
    SlidingWindow {
        /// Tokens in the forward pass.
        len: usize,
        /// The config's sliding window.
        window: usize,
    },
    /// The evaluation parameters are unusable (context too small or too large, empty input...).
    #[error("invalid evaluation parameters: {0}")]
    Params(String),
    /// Fewer tokens than one evaluation window.
    #[error("{have} tokens, need at least one window of {need}")]
    TooFewTokens {
        /// Tokens available.
        have: usize,
        /// Tokens per window.
        need: usize,
    },
    /// The model and its baseline cannot be compared (different vocabularies).
    #[error("baseline vocabulary {base} differs from the model's {model}")]
    VocabMismatch {
        /// Model vocabulary size.
        model: usize,
        /// Baseline vocabulary size.
        base: usize,
    },
    /// A logits row has the wrong length or a target is out of range (scoring input error).
    #[error("scoring input: {0}")]
    Scoring(String),
    /// The tokenizer could not be loaded or failed to encode.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A saved-logits baseline file is unusable or was saved for another run.
    #[error("saved logits: {0}")]
    Logits(#[from] LogitsError),
    /// Reading a file failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// candle failed inside the forward pass.
    #[error("tensor computation: {0}")]
    Candle(#[from] candle_core::Error),
}
