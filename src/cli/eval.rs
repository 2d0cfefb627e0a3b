//! `tpk eval`: perplexity, and against a baseline KL divergence and top-1 agreement, computed
//! exactly as llama.cpp's `llama-perplexity` does so the figures compare one to one.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use tenpak::eval::logits::LOGITS_MAGIC;
use tenpak::eval::{
    load_tokenizer, logits_shape, open_model, perplexity_with, tokenizer_from_json, Baseline,
    EvalReport, EvalTokenizer, LlamaConfig, LlamaModel, LogitsReader, LogitsWriter, PplConfig,
};

use super::out;

/// Largest evaluation text accepted.
const MAX_TEXT_BYTES: u64 = 1 << 30;
/// Largest `--check-tokens` file accepted.
const MAX_IDS_BYTES: u64 = 256 << 20;

/// Arguments of `tpk eval`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model: a .tpk file or a safetensors model (file, index or folder with config.json).
    pub model: PathBuf,
    /// The evaluation text (UTF-8), tokenized whole with no special tokens.
    #[arg(long)]
    pub text: PathBuf,
    /// tokenizer.json to use instead of the one the model carries (.tpk metadata or the
    /// folder's tokenizer.json).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Window length in tokens; the second half of each window is scored.
    #[arg(long, default_value_t = 512)]
    pub ctx: usize,
    /// Evaluate only the first N windows (all complete windows by default).
    #[arg(long)]
    pub chunks: Option<usize>,
    /// Reference for KL divergence, top-1 agreement and ΔPPL: a model (.tpk or safetensors),
    /// or a logits file saved by `--save-logits` on the same text, ctx and chunks (much
    /// faster: the reference model is not run again).
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Save this model's scored logits (exact f32, ~(ctx/2) * vocab * 4 bytes per window) to
    /// FILE for later use as `--baseline FILE`.
    #[arg(long, value_name = "FILE")]
    pub save_logits: Option<PathBuf>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Check that the text's first tokens equal the space-separated ids in FILE, and fail
    /// naming the first difference (e.g. against llama.cpp's tokenization).
    #[arg(long, value_name = "FILE")]
    pub check_tokens: Option<PathBuf>,
    /// Worker threads (default: all cores). The figures are the same for any value.
    #[arg(long)]
    pub threads: Option<usize>,
}

fn read_limited(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("{what} {}", path.display()))?
        .len();
    if len > limit {
        bail!("{what} {} is {len} bytes, limit {limit}", path.display());
    }
    std::fs::read(path).with_context(|| format!("{what} {}", path.display()))
}

/// Compares the text's tokens with a reference id list; returns how many were compared.
fn check_tokens(tokens: &[u32], path: &Path) -> Result<usize> {
    let bytes = read_limited(path, MAX_IDS_BYTES, "token id file")?;
    let text = std::str::from_utf8(&bytes)
        .with_context(|| format!("token id file {} is not UTF-8", path.display()))?;
    let mut n = 0usize;
    for (i, word) in text.split_ascii_whitespace().enumerate() {
        let want: u32 = word.parse().with_context(|| {
            format!(
                "token id file {}: item {i} {word:?} is not a token id",
                path.display()
            )
        })?;
        match tokens.get(i) {
            None => bail!(
                "token check: the text has only {} tokens, {} lists more",
                tokens.len(),
                path.display()
            ),
            Some(&got) if got != want => bail!(
                "token check: token {i} is {got}, {} has {want}",
                path.display()
            ),
            Some(_) => n += 1,
        }
    }
    Ok(n)
}

/// Whether `path` is a file that starts with the saved-logits magic.
fn is_saved_logits(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && head == LOGITS_MAGIC
}

/// Refuses a `--save-logits` target that is one of the run's inputs.
fn check_not_input(target: &Path, inputs: &[&Path]) -> Result<()> {
    let Ok(t) = target.canonicalize() else {
        return Ok(()); // does not exist yet, so it is no input
    };
    for i in inputs {
        if i.canonicalize().is_ok_and(|c| c == t) {
            bail!(
                "--save-logits {} is an input of this run; refusing to overwrite it",
                target.display()
            );
        }
    }
    Ok(())
}

fn load_model(path: &Path, what: &str) -> Result<(LlamaModel, tenpak::eval::OpenedModel)> {
    let opened = open_model(path).with_context(|| format!("{what} {}", path.display()))?;
    let cfg = LlamaConfig::from_json(&opened.config)
        .with_context(|| format!("{what} {}", path.display()))?;
    let model = LlamaModel::load(&cfg, opened.weights.as_ref())
        .with_context(|| format!("{what} {}", path.display()))?;
    Ok((model, opened))
}

fn pick_tokenizer(a: &Args, carried: Option<&[u8]>) -> Result<EvalTokenizer> {
    if let Some(p) = &a.tokenizer {
        return load_tokenizer(p).with_context(|| format!("tokenizer {}", p.display()));
    }
    match carried {
        Some(json) => tokenizer_from_json(json)
            .with_context(|| format!("tokenizer of {}", a.model.display())),
        None => bail!(
            "{} carries no tokenizer (no tokenizer in the .tpk metadata, no tokenizer.json beside the weights); pass --tokenizer",
            a.model.display()
        ),
    }
}

fn text_report(a: &Args, r: &EvalReport) -> String {
    let s = &r.stats;
    let mut t = format!(
        "model     {}\nwindows   {} x {} tokens, {} tokens scored\nPPL       {:.4} ± {:.4}\n",
        a.model.display(),
        r.n_windows,
        r.ctx,
        s.n_tokens_scored,
        s.ppl,
        s.ppl_stderr
    );
    if let (Some(bp), Some(bpe)) = (s.base_ppl, s.base_ppl_stderr) {
        let base = a
            .baseline
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        t += &format!("baseline  {base}\nbase PPL  {bp:.4} ± {bpe:.4}\n");
    }
    if let (Some(d), Some(de)) = (s.delta_ppl_pct, s.delta_ppl_pct_stderr) {
        t += &format!("ΔPPL      {d:+.3} ± {de:.3} %\n");
    }
    if let (Some(k), Some(ke)) = (s.kld_mean, s.kld_stderr) {
        t += &format!("mean KLD  {k:.6} ± {ke:.6}\n");
    }
    if let Some(p) = s.kld_p99 {
        t += &format!("KLD p99   {p:.6}\n");
    }
    if let (Some(p), Some(pe)) = (s.top1_agree, s.top1_stderr) {
        t += &format!("top-1     {:.2} ± {:.2} %\n", 100.0 * p, 100.0 * pe);
    }
    t += &format!(
        "speed     {:.1} tokens/s (model forward), {:.1} s in all\n",
        r.tokens_per_second, r.seconds_total
    );
    t
}

pub fn run(a: Args) -> Result<()> {
    super::set_threads(a.threads)?;
    if let Some(c) = a.chunks {
        if c == 0 {
            bail!("--chunks must be at least 1");
        }
    }
    // Cheap checks first, so a typo fails before gigabytes are decoded.
    let text = read_limited(&a.text, MAX_TEXT_BYTES, "text")?;
    let text = String::from_utf8(text)
        .map_err(|e| anyhow::anyhow!("text {} is not UTF-8: {e}", a.text.display()))?;
    let (model, opened) = load_model(&a.model, "model")?;
    let tok = pick_tokenizer(&a, opened.tokenizer.as_deref())?;
    let tokens = tok.tokenize(&text).context("tokenizing the text")?;
    eprintln!("{} tokens in {}", tokens.len(), a.text.display());
    if let Some(p) = &a.check_tokens {
        let n = check_tokens(&tokens, p)?;
        eprintln!("token check: the first {n} tokens match {}", p.display());
    }
    let bos = tok
        .bos_for_eval(opened.tokenizer_config.as_ref(), model.config())
        .context("deciding BOS")?;
    drop(opened);
    let cfg = PplConfig {
        ctx: a.ctx,
        chunks: a.chunks,
        bos,
    };
    let mut saved_base = None;
    let mut base_model = None;
    if let Some(p) = &a.baseline {
        if is_saved_logits(p) {
            let r = LogitsReader::open(p)?;
            r.check(&logits_shape(&tokens, &cfg, model.vocab_size())?)?;
            saved_base = Some(r);
        } else {
            base_model = Some(load_model(p, "baseline")?.0);
        }
    }
    let baseline = match (&mut saved_base, &base_model) {
        (Some(r), _) => Some(Baseline::Saved(r)),
        (None, Some(m)) => Some(Baseline::Model(m)),
        (None, None) => None,
    };
    let mut writer = match &a.save_logits {
        Some(p) => {
            let mut inputs = vec![a.model.as_path(), a.text.as_path()];
            inputs.extend(a.baseline.as_deref());
            inputs.extend(a.tokenizer.as_deref());
            check_not_input(p, &inputs)?;
            Some(LogitsWriter::create(
                p,
                logits_shape(&tokens, &cfg, model.vocab_size())?,
            )?)
        }
        None => None,
    };
    let mut last = std::time::Instant::now();
    let start = last;
    let report = perplexity_with(
        &model,
        &tokens,
        &cfg,
        baseline,
        writer.as_mut(),
        &mut |done, total| {
            let now = std::time::Instant::now();
            if done == total || now.duration_since(last).as_secs_f64() >= 2.0 {
                last = now;
                eprintln!(
                    "[{done}/{total}] windows, {:.0} s",
                    now.duration_since(start).as_secs_f64()
                );
            }
        },
    )
    .context("evaluating")?;
    if let (Some(w), Some(p)) = (writer, &a.save_logits) {
        w.finish()?;
        eprintln!("saved the scored logits to {}", p.display());
    }
    if a.json {
        let mut s = serde_json::to_string_pretty(&report)?;
        s.push('\n');
        out(&s)
    } else {
        out(&text_report(&a, &report))
    }
}
