//! Which codec each tensor gets.
//!
//! The rules, first match wins:
//! 1. `--keep PATTERN`: stored as it is, in its source dtype.
//! 2. `--codec-for PATTERN=SPEC`, in the order given.
//! 3. Tensors of rank 0 or 1 (norms, biases): stored as they are. They are a tiny share of
//!    the weights and every runtime needs them exact.
//! 4. Token embeddings and the output head (`embed_tokens`, `lm_head`, `wte`, `token_embd`,
//!    `output.weight`): the `int8` preset (8.5 bits per weight), unless the main codec is a raw
//!    one. They are a large share of a small model's weights and very sensitive; llama.cpp
//!    keeps them at 6 to 8 bits for the same reason.
//! 5. Everything else: the main `--codec`.
//!
//! Patterns are globs on tensor names: `*` matches any run of characters, `?` one character.

use serde::Serialize;

use crate::codec::spec;
use crate::codec::staged::{Matrix, Stage};
use crate::error::{Error, Result};
use crate::format::Dtype;

/// A glob on tensor names.
#[derive(Clone, Debug, Serialize)]
#[serde(transparent)]
pub struct Glob(String);

impl Glob {
    /// Compiles a pattern (any string is a valid pattern).
    pub fn new(p: &str) -> Self {
        Glob(p.to_string())
    }

    /// Whether `name` matches the whole pattern.
    pub fn matches(&self, name: &str) -> bool {
        let (p, s): (Vec<char>, Vec<char>) = (self.0.chars().collect(), name.chars().collect());
        // Iterative matcher with one backtrack point: linear in practice, no recursion.
        let (mut pi, mut si, mut star, mut mark) = (0, 0, None, 0);
        while si < s.len() {
            if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
                pi += 1;
                si += 1;
            } else if pi < p.len() && p[pi] == '*' {
                star = Some(pi);
                mark = si;
                pi += 1;
            } else if let Some(st) = star {
                pi = st + 1;
                mark += 1;
                si = mark;
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|&c| c == '*')
    }
}

/// Why a tensor got its codec, recorded in the metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// `--keep`.
    Keep,
    /// `--codec-for`.
    CodecFor,
    /// Rank 0 or 1.
    Vector,
    /// Embedding or output head rule.
    Embedding,
    /// The main codec.
    Default,
}

/// The codec choice rules of one conversion.
#[derive(Clone, Debug, Serialize)]
pub struct Policy {
    /// The main codec spec, as given.
    pub codec: String,
    /// `--keep` patterns.
    pub keep: Vec<Glob>,
    /// `--codec-for` rules, as given.
    pub codec_for: Vec<(Glob, String)>,
    /// The embeddings rule's spec.
    pub embeddings: String,
    #[serde(skip)]
    main: Vec<Stage>,
    #[serde(skip)]
    rules: Vec<Vec<Stage>>,
    #[serde(skip)]
    embed: Vec<Stage>,
}

/// Whether a name is a token embedding or output head.
pub fn is_embedding(name: &str) -> bool {
    name.contains("embed_tokens")
        || name.contains("lm_head")
        || name.contains("wte")
        || name.starts_with("token_embd")
        || name == "output.weight"
}

impl Policy {
    /// Builds a policy from the command line's codec, `--keep` and `--codec-for` values.
    pub fn new(codec: &str, keep: &[String], codec_for: &[String]) -> Result<Self> {
        let main = spec::parse(codec)?;
        let mut rules = Vec::new();
        let mut cf = Vec::new();
        for r in codec_for {
            let (pat, s) = r.split_once('=').ok_or_else(|| {
                Error::InvalidArgument(format!("--codec-for {r:?} is not PATTERN=SPEC"))
            })?;
            rules.push(spec::parse(s)?);
            cf.push((Glob::new(pat), s.to_string()));
        }
        let raw_main = main.iter().all(|s| matches!(s, Stage::Raw { .. }));
        let embeddings = if raw_main {
            codec.to_string()
        } else {
            "int8".to_string()
        };
        let embed = spec::parse(&embeddings)?;
        Ok(Policy {
            codec: codec.to_string(),
            keep: keep.iter().map(|k| Glob::new(k)).collect(),
            codec_for: cf,
            embeddings,
            main,
            rules,
            embed,
        })
    }

    /// The stage recipe for a tensor, before it is fitted to the tensor's shape.
    pub fn recipe(&self, name: &str, shape: &[u64], dtype: Dtype) -> (Vec<Stage>, Reason) {
        if self.keep.iter().any(|g| g.matches(name)) {
            return (vec![Stage::Raw { dtype }], Reason::Keep);
        }
        if let Some(i) = self.codec_for.iter().position(|(g, _)| g.matches(name)) {
            return (self.rules[i].clone(), Reason::CodecFor);
        }
        if shape.len() <= 1 {
            return (vec![Stage::Raw { dtype }], Reason::Vector);
        }
        if is_embedding(name) {
            return (self.embed.clone(), Reason::Embedding);
        }
        (self.main.clone(), Reason::Default)
    }
}

/// Fits a recipe to a tensor: clamps low-rank ranks to min(r, rows/2, cols/2) and drops the
/// stage when that is 0, and replaces a ggml stage whose block does not divide the row length
/// by the int stage of the same width. Returns the stages and a note on any change.
pub fn fit(recipe: &[Stage], shape: &[u64]) -> (Vec<Stage>, Option<String>) {
    let m = Matrix::of_shape(shape);
    let mut out = Vec::with_capacity(recipe.len());
    let mut notes = Vec::new();
    for &s in recipe {
        match s {
            Stage::LowRank { rank, weighted } => {
                let r = u64::from(rank).min(m.rows / 2).min(m.cols / 2);
                if r == 0 {
                    notes.push("low-rank stage dropped (tensor too small)".to_string());
                    continue;
                }
                if r < u64::from(rank) {
                    notes.push(format!("rank {rank} clamped to {r}"));
                }
                out.push(Stage::LowRank {
                    rank: r as u32,
                    weighted,
                });
            }
            Stage::Ggml { type_id } => match crate::codec::staged::ggml_block_layout(type_id) {
                Some((block, _)) if m.cols.is_multiple_of(block) => out.push(s),
                _ => {
                    let fb = ggml_fallback(type_id, m.cols);
                    notes.push(format!(
                        "{} does not fit rows of {}: {} used",
                        crate::codec::ggml_name(type_id),
                        m.cols,
                        spec::to_string(&[fb])
                    ));
                    out.push(fb);
                }
            },
            s => out.push(s),
        }
    }
    if out.is_empty() {
        out.push(Stage::Raw { dtype: Dtype::F16 });
    }
    let note = (!notes.is_empty()).then(|| notes.join("; "));
    (out, note)
}

/// The stage used when a ggml type's block size does not divide the row length: the 32-block
/// ggml type of the same width if 32 divides it (as llama.cpp falls back), else our int stage,
/// which pads rows.
fn ggml_fallback(type_id: u32, cols: u64) -> Stage {
    let name = crate::codec::ggml_name(type_id);
    let (q32, bits): (&str, u8) = match name.as_str() {
        "q2_k" | "q3_k" => ("iq4_nl", 4),
        "q4_k" | "iq4_xs" => ("q5_0", 5),
        "q5_k" => ("q5_1", 5),
        _ => ("q8_0", 8),
    };
    match crate::codec::ggml_id(q32) {
        Some(id) if cols.is_multiple_of(32) => Stage::Ggml { type_id: id },
        _ => Stage::Int {
            bits,
            group: 32,
            symmetric: false,
            refine: true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let g = Glob::new("model.layers.*.mlp.*");
        assert!(g.matches("model.layers.3.mlp.down_proj.weight"));
        assert!(!g.matches("model.layers.3.self_attn.q_proj.weight"));
        assert!(Glob::new("*").matches(""));
        assert!(Glob::new("a?c").matches("abc"));
        assert!(!Glob::new("a?c").matches("ac"));
        assert!(Glob::new("*norm*").matches("model.norm.weight"));
        assert!(!Glob::new("norm").matches("model.norm.weight"));
    }

    #[test]
    fn rule_order() {
        let p = Policy::new(
            "tenpak_x",
            &["*.layers.0.*".into()],
            &["*down_proj*=int8".into(), "*proj*=int4_g32".into()],
        )
        .unwrap();
        let r = |n: &str, s: &[u64]| p.recipe(n, s, Dtype::F16).1;
        assert_eq!(
            r("model.layers.0.mlp.down_proj.weight", &[4, 4]),
            Reason::Keep
        );
        assert_eq!(
            r("model.layers.1.mlp.down_proj.weight", &[4, 4]),
            Reason::CodecFor
        );
        assert_eq!(
            r("model.layers.1.input_layernorm.weight", &[4]),
            Reason::Vector
        );
        assert_eq!(r("model.embed_tokens.weight", &[4, 4]), Reason::Embedding);
        assert_eq!(r("model.layers.1.foo.weight", &[4, 4]), Reason::Default);
        assert_eq!(
            p.recipe("model.layers.1.mlp.down_proj.weight", &[4, 4], Dtype::F16)
                .0,
            spec::parse("int8").unwrap()
        );
    }

    #[test]
    fn fitting_clamps_rank_and_falls_back() {
        let (s, note) = fit(&spec::parse("tenpak_x").unwrap(), &[2, 80]);
        assert_eq!(
            s[0],
            Stage::LowRank {
                rank: 1,
                weighted: true
            }
        );
        assert!(note.is_some());
        let (s, _) = fit(&spec::parse("tenpak_x").unwrap(), &[1, 80]);
        assert_eq!(s.len(), 2, "rank 0 drops the stage");
        let (s, note) = fit(&spec::parse("q4_k").unwrap(), &[8, 576]);
        assert_eq!(spec::to_string(&s), "q5_0");
        assert!(note.unwrap().contains("q4_k"));
        let (s, _) = fit(&spec::parse("q4_k").unwrap(), &[8, 80]);
        assert!(matches!(s[0], Stage::Int { bits: 5, .. }));
        let (s, note) = fit(&spec::parse("q4_k").unwrap(), &[8, 512]);
        assert_eq!(spec::to_string(&s), "q4_k");
        assert!(note.is_none());
    }
}
