//! The eval engine on tiny deterministic LLaMA-family models: forward pass against an independent
//! numpy reference, the window/scoring rules of llama-perplexity, and weight validation.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};
use tenpak::eval::{
    perplexity, score_position, EvalError, LlamaConfig, LlamaModel, PplConfig, Scores,
};

type Weights = HashMap<String, (Vec<usize>, Vec<f32>)>;

struct SplitMix64(u64);
impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        ((self.next() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize, scale: f32, offset: f32) -> Vec<f32> {
        (0..n).map(|_| offset + scale * self.unit()).collect()
    }
}

struct Shape {
    arch: &'static str,
    hidden: usize,
    heads: usize,
    kv: usize,
    head_dim: usize,
    ffn: usize,
    layers: usize,
    vocab: usize,
    tied: bool,
    qkv_bias: bool,
}

const TINY: Shape = Shape {
    arch: "LlamaForCausalLM",
    hidden: 80,
    heads: 4,
    kv: 2,
    head_dim: 20,
    ffn: 200,
    layers: 2,
    vocab: 288,
    tied: false,
    qkv_bias: false,
};

fn config_json(s: &Shape) -> Value {
    json!({
        "architectures": [s.arch], "hidden_size": s.hidden, "intermediate_size": s.ffn,
        "num_hidden_layers": s.layers, "num_attention_heads": s.heads,
        "num_key_value_heads": s.kv, "head_dim": s.head_dim, "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0, "vocab_size": s.vocab, "tie_word_embeddings": s.tied,
        "max_position_embeddings": 512, "hidden_act": "silu"
    })
}

fn build(s: &Shape, seed: u64) -> (LlamaConfig, Weights) {
    let mut r = SplitMix64(seed);
    let mut w = Weights::new();
    let put = |w: &mut Weights, name: String, shape: Vec<usize>, data: Vec<f32>| {
        w.insert(name, (shape, data));
    };
    let (h, qd, kvd, f) = (s.hidden, s.heads * s.head_dim, s.kv * s.head_dim, s.ffn);
    let lin = |r: &mut SplitMix64, o: usize, i: usize| r.vec(o * i, (3.0 / i as f32).sqrt(), 0.0);
    put(
        &mut w,
        "model.embed_tokens.weight".into(),
        vec![s.vocab, h],
        r.vec(s.vocab * h, 1.0, 0.0),
    );
    for l in 0..s.layers {
        let p = format!("model.layers.{l}.");
        for (n, o, i) in [
            ("self_attn.q_proj", qd, h),
            ("self_attn.k_proj", kvd, h),
            ("self_attn.v_proj", kvd, h),
            ("self_attn.o_proj", h, qd),
            ("mlp.gate_proj", f, h),
            ("mlp.up_proj", f, h),
            ("mlp.down_proj", h, f),
        ] {
            let d = lin(&mut r, o, i);
            put(&mut w, format!("{p}{n}.weight"), vec![o, i], d);
            if s.qkv_bias && n.starts_with("self_attn.") && n != "self_attn.o_proj" {
                let b = r.vec(o, 0.2, 0.0);
                put(&mut w, format!("{p}{n}.bias"), vec![o], b);
            }
        }
        for n in ["input_layernorm.weight", "post_attention_layernorm.weight"] {
            let d = r.vec(h, 0.2, 1.0);
            put(&mut w, format!("{p}{n}"), vec![h], d);
        }
    }
    put(
        &mut w,
        "model.norm.weight".into(),
        vec![h],
        r.vec(h, 0.2, 1.0),
    );
    if !s.tied {
        put(
            &mut w,
            "lm_head.weight".into(),
            vec![s.vocab, h],
            r.vec(s.vocab * h, 1.0, 0.0),
        );
    }
    (LlamaConfig::from_json(&config_json(s)).unwrap(), w)
}

fn tokens(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut r = SplitMix64(seed);
    (0..n).map(|_| (r.next() % vocab as u64) as u32).collect()
}

/// Runs scripts/ref_forward.py; `None` if python3/numpy is unavailable (and not required).
fn numpy_logits(s: &Shape, w: &Weights, toks: &[u32]) -> Option<Vec<f32>> {
    let dir = tempfile::tempdir().unwrap();
    let mut tensors = serde_json::Map::new();
    for (i, (name, (shape, data))) in w.iter().enumerate() {
        let file = format!("t{i}.f32");
        let bytes: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        std::fs::write(dir.path().join(&file), bytes).unwrap();
        tensors.insert(name.clone(), json!({"shape": shape, "file": file}));
    }
    let man = json!({"config": config_json(s), "tokens": toks, "tensors": tensors});
    std::fs::write(dir.path().join("manifest.json"), man.to_string()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/ref_forward.py");
    let required = std::env::var("TENPAK_REQUIRE_PY").is_ok_and(|v| v == "1");
    let out = Command::new("python3")
        .arg(&script)
        .arg(dir.path())
        .output();
    let ok = matches!(&out, Ok(o) if o.status.success());
    if !ok {
        let why = match &out {
            Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
            Err(e) => e.to_string(),
        };
        assert!(
            !required,
            "TENPAK_REQUIRE_PY=1 but the numpy reference failed: {why}"
        );
        println!("SKIP: numpy reference unavailable ({why})");
        return None;
    }
    let bytes = std::fs::read(dir.path().join("logits.f32")).unwrap();
    Some(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

#[test]
fn forward_matches_numpy_reference() {
    let qwen = Shape {
        arch: "Qwen2ForCausalLM",
        tied: true,
        qkv_bias: true,
        ..TINY
    };
    for (i, s) in [TINY, qwen].iter().enumerate() {
        let (cfg, w) = build(s, 7 + i as u64);
        let model = LlamaModel::load(&cfg, &w).unwrap();
        let toks = tokens(40, s.vocab, 99 + i as u64);
        let ours = model.forward_all(&toks).unwrap();
        assert_eq!(ours.len(), toks.len() * s.vocab);
        let Some(reference) = numpy_logits(s, &w, &toks) else {
            return;
        };
        assert_eq!(reference.len(), ours.len());
        let max_diff = ours
            .iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        let max_abs = reference.iter().map(|x| x.abs()).fold(0f32, f32::max);
        println!(
            "{}: max |logit| {max_abs:.3}, max abs diff {max_diff:.2e}",
            s.arch
        );
        assert!(
            max_abs > 1.0,
            "logits too small to be a meaningful comparison"
        );
        assert!(max_diff < 1e-4, "{}: max abs diff {max_diff}", s.arch);
    }
}

#[test]
fn model_against_itself_has_zero_kld() {
    let (cfg, w) = build(&TINY, 3);
    let model = LlamaModel::load(&cfg, &w).unwrap();
    let toks = tokens(16 * 3 + 5, TINY.vocab, 4);
    let pc = PplConfig {
        ctx: 16,
        chunks: None,
        bos: None,
    };
    let r = perplexity(&model, &toks, &pc, Some(&model), &mut |_, _| {}).unwrap();
    let s = &r.stats;
    assert_eq!(s.n_tokens_scored, 3 * 7);
    assert_eq!(s.kld_mean, Some(0.0));
    assert_eq!(s.kld_p99, Some(0.0));
    assert_eq!(s.kld_max, Some(0.0));
    assert_eq!(s.top1_agree, Some(1.0));
    assert_eq!(s.delta_ppl_pct, Some(0.0));
    assert_eq!(s.base_ppl, Some(s.ppl));
    assert!(s.ppl > 1.0 && s.ppl.is_finite());
    // The JSON report is flat, with the documented stable keys.
    let j = serde_json::to_value(&r).unwrap();
    for key in [
        "ctx",
        "n_windows",
        "n_tokens_scored",
        "nll_mean",
        "ppl",
        "ppl_stderr",
        "base_ppl",
        "base_ppl_stderr",
        "delta_ppl_pct",
        "delta_ppl_pct_stderr",
        "kld_mean",
        "kld_stderr",
        "kld_p99",
        "kld_max",
        "top1_agree",
        "top1_stderr",
        "tokens_per_second",
        "seconds_total",
    ] {
        assert!(j.get(key).is_some(), "missing key {key}");
    }
    assert_eq!(j["kld_mean"], json!(0.0));
    assert_eq!(j.as_object().unwrap().len(), 18);
}

/// perplexity() must equal the llama-perplexity rules applied by hand: window i = tokens
/// [ctx i, ctx i + ctx), BOS written over position 0, positions ctx/2 ..= ctx-2 predict the next token.
#[test]
fn windows_and_scoring_follow_llama_perplexity() {
    let (cfg, w) = build(&TINY, 11);
    let model = LlamaModel::load(&cfg, &w).unwrap();
    let (cfg2, w2) = build(&TINY, 12);
    let other = LlamaModel::load(&cfg2, &w2).unwrap();
    let ctx = 12;
    let toks = tokens(ctx * 4 + 3, TINY.vocab, 5);
    for bos in [None, Some(1u32)] {
        let pc = PplConfig {
            ctx,
            chunks: Some(3),
            bos,
        };
        let mut calls = Vec::new();
        let r = perplexity(&model, &toks, &pc, Some(&other), &mut |d, n| {
            calls.push((d, n))
        })
        .unwrap();
        assert_eq!(calls, vec![(1, 3), (2, 3), (3, 3)]);
        let mut manual = Scores::default();
        for i in 0..3 {
            let mut win = toks[ctx * i..ctx * i + ctx].to_vec();
            if let Some(b) = bos {
                win[0] = b;
            }
            let lm = model.forward_all(&win).unwrap();
            let lb = other.forward_all(&win).unwrap();
            let v = TINY.vocab;
            for pos in ctx / 2..ctx - 1 {
                let row = |l: &[f32]| l[pos * v..(pos + 1) * v].to_vec();
                manual.push(score_position(&row(&lm), Some(&row(&lb)), win[pos + 1]).unwrap());
            }
        }
        assert_eq!(r.n_windows, 3);
        // perplexity() computes only the scored rows (forward_from), whose matmuls may round
        // differently from the all-rows pass: compare to 1e-9 relative, not bit for bit.
        let (got, want) = (&r.stats, manual.summary());
        assert_eq!(got.n_tokens_scored, want.n_tokens_scored);
        assert_eq!(got.top1_agree, want.top1_agree);
        for (a, b) in [
            (got.ppl, want.ppl),
            (got.ppl_stderr, want.ppl_stderr),
            (got.base_ppl.unwrap(), want.base_ppl.unwrap()),
            (got.kld_mean.unwrap(), want.kld_mean.unwrap()),
            (got.kld_stderr.unwrap(), want.kld_stderr.unwrap()),
            (got.kld_p99.unwrap(), want.kld_p99.unwrap()),
            (got.top1_stderr.unwrap(), want.top1_stderr.unwrap()),
        ] {
            assert!((a - b).abs() <= 1e-5 * b.abs().max(1e-3), "{a} vs {b}");
        }
        assert_eq!(r.stats.n_tokens_scored, 3 * 5);
        assert!(r.stats.kld_mean.unwrap() > 0.0);
    }
    // BOS replacement changes the context, so the result changes.
    let a = perplexity(
        &model,
        &toks,
        &PplConfig {
            ctx,
            chunks: None,
            bos: None,
        },
        None,
        &mut |_, _| {},
    );
    let b = perplexity(
        &model,
        &toks,
        &PplConfig {
            ctx,
            chunks: None,
            bos: Some(1),
        },
        None,
        &mut |_, _| {},
    );
    assert_ne!(a.unwrap().stats.ppl, b.unwrap().stats.ppl);
}

#[test]
fn forward_from_returns_the_tail_rows() {
    let (cfg, w) = build(&TINY, 21);
    let model = LlamaModel::load(&cfg, &w).unwrap();
    let toks = tokens(30, TINY.vocab, 22);
    let all = model.forward_all(&toks).unwrap();
    let tail = model.forward_from(&toks, 17).unwrap();
    assert_eq!(tail.len(), 13 * TINY.vocab);
    let d = all[17 * TINY.vocab..]
        .iter()
        .zip(&tail)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(d < 1e-5, "max diff {d}");
    assert!(matches!(
        model.forward_from(&toks, 30),
        Err(EvalError::Params(_))
    ));
}

#[test]
fn bad_parameters_are_errors() {
    let (cfg, w) = build(&TINY, 1);
    let model = LlamaModel::load(&cfg, &w).unwrap();
    let toks = tokens(20, TINY.vocab, 2);
    let run = |ctx, bos| {
        perplexity(
            &model,
            &toks,
            &PplConfig {
                ctx,
                chunks: None,
                bos,
            },
            None,
            &mut |_, _| {},
        )
    };
    assert!(matches!(
        run(32, None),
        Err(EvalError::TooFewTokens { have: 20, need: 32 })
    ));
    assert!(matches!(run(3, None), Err(EvalError::Params(_))));
    assert!(matches!(
        run(8, Some(288)),
        Err(EvalError::TokenOutOfRange { token: 288, .. })
    ));
    assert!(matches!(
        model.forward_all(&[1, 288]),
        Err(EvalError::TokenOutOfRange {
            token: 288,
            vocab: 288
        })
    ));
    let small = Shape { vocab: 100, ..TINY };
    let (c2, w2) = build(&small, 1);
    let m2 = LlamaModel::load(&c2, &w2).unwrap();
    let r = perplexity(
        &model,
        &toks,
        &PplConfig {
            ctx: 8,
            chunks: None,
            bos: None,
        },
        Some(&m2),
        &mut |_, _| {},
    );
    assert!(matches!(
        r,
        Err(EvalError::VocabMismatch {
            model: 288,
            base: 100
        })
    ));
}

#[test]
fn weights_are_validated_against_the_config() {
    let (cfg, w) = build(&TINY, 1);
    let mut missing = w.clone();
    missing.remove("model.layers.1.mlp.up_proj.weight");
    assert!(matches!(
        LlamaModel::load(&cfg, &missing),
        Err(EvalError::MissingTensor { name }) if name == "model.layers.1.mlp.up_proj.weight"
    ));
    let mut no_head = w.clone();
    no_head.remove("lm_head.weight");
    assert!(matches!(
        LlamaModel::load(&cfg, &no_head),
        Err(EvalError::MissingTensor { .. })
    ));
    let mut wrong = w.clone();
    wrong.insert(
        "model.layers.0.self_attn.k_proj.weight".into(),
        (vec![80, 40], vec![0.0; 3200]),
    );
    assert!(matches!(
        LlamaModel::load(&cfg, &wrong),
        Err(EvalError::TensorShape { expected, got, .. }) if expected == vec![40, 80] && got == vec![80, 40]
    ));
    let mut short = w.clone();
    short.insert("model.norm.weight".into(), (vec![80], vec![1.0; 79]));
    assert!(matches!(
        LlamaModel::load(&cfg, &short),
        Err(EvalError::TensorLength { len: 79, .. })
    ));
    let mut overflow = w.clone();
    overflow.insert(
        "model.norm.weight".into(),
        (vec![usize::MAX, 2], vec![1.0; 80]),
    );
    assert!(matches!(
        LlamaModel::load(&cfg, &overflow),
        Err(EvalError::TensorLength { .. })
    ));
    let mut bad_bias = w;
    bad_bias.insert(
        "model.layers.0.self_attn.q_proj.bias".into(),
        (vec![81], vec![0.0; 81]),
    );
    assert!(matches!(
        LlamaModel::load(&cfg, &bad_bias),
        Err(EvalError::TensorShape { .. })
    ));
}

/// Throughput on a random model of SmolLM2-135M's exact shape (not a test of correctness):
/// `cargo test --release --test eval_model -- --ignored --nocapture smollm2_shape_throughput`
#[test]
#[ignore]
fn smollm2_shape_throughput() {
    let s = Shape {
        hidden: 576,
        heads: 9,
        kv: 3,
        head_dim: 64,
        ffn: 1536,
        layers: 30,
        vocab: 49152,
        tied: true,
        ..TINY
    };
    let (cfg, w) = build(&s, 1);
    let model = LlamaModel::load(&cfg, &w).unwrap();
    drop(w);
    let toks = tokens(512 * 3, s.vocab, 2);
    // Warm-up; its checksum lets runs with different RAYON_NUM_THREADS be compared bit for bit.
    let warm = model.forward_all(&toks[..512]).unwrap();
    let sum = warm.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, x| {
        (h ^ u64::from(x.to_bits())).wrapping_mul(0x100_0000_01b3)
    });
    println!("logits checksum {sum:016x}");
    let pc = PplConfig {
        ctx: 512,
        chunks: Some(2),
        bos: None,
    };
    let r = perplexity(&model, &toks[512..], &pc, None, &mut |_, _| {}).unwrap();
    println!(
        "SmolLM2-135M shape, ctx 512, {} windows: {:.1} tokens/s (forward), {:.2} s total, rayon threads {}",
        r.n_windows,
        r.tokens_per_second,
        r.seconds_total,
        rayon::current_num_threads()
    );
}

/// A baseline read back from `--save-logits` gives exactly the figures of the live baseline
/// model, and a file saved for another run is refused.
#[test]
fn saved_baseline_logits_equal_the_live_baseline() {
    use tenpak::eval::{logits_shape, perplexity_with, Baseline, LogitsReader, LogitsWriter};
    let (cfg, w) = build(&TINY, 31);
    let base = LlamaModel::load(&cfg, &w).unwrap();
    let (_, w2) = build(&TINY, 32);
    let other = LlamaModel::load(&cfg, &w2).unwrap();
    let toks = tokens(70, TINY.vocab, 33);
    let pc = PplConfig {
        ctx: 16,
        chunks: Some(4),
        bos: Some(1),
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("base.logits");
    let shape = logits_shape(&toks, &pc, TINY.vocab).unwrap();
    let mut wr = LogitsWriter::create(&file, shape).unwrap();
    let own = perplexity_with(&base, &toks, &pc, None, Some(&mut wr), &mut |_, _| {}).unwrap();
    wr.finish().unwrap();
    // 64-byte header + 4 windows x 7 scored rows (positions 8..15) x vocab f32.
    let len = std::fs::metadata(&file).unwrap().len();
    assert_eq!(len, 64 + 4 * 7 * TINY.vocab as u64 * 4);
    let live = perplexity(&other, &toks, &pc, Some(&base), &mut |_, _| {}).unwrap();
    let mut r = LogitsReader::open(&file).unwrap();
    let saved = perplexity_with(
        &other,
        &toks,
        &pc,
        Some(Baseline::Saved(&mut r)),
        None,
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(live.stats, saved.stats);
    assert_eq!(saved.stats.base_ppl, Some(own.stats.ppl));
    assert!(saved.stats.kld_mean.unwrap() > 0.0);

    // Another text, ctx, BOS or window count is refused before any forward pass.
    let mut moved = toks.clone();
    moved[20] = (moved[20] + 1) % TINY.vocab as u32;
    for (t, c) in [
        (&moved, pc.clone()),
        (
            &toks,
            PplConfig {
                ctx: 14,
                ..pc.clone()
            },
        ),
        (
            &toks,
            PplConfig {
                bos: None,
                ..pc.clone()
            },
        ),
        (
            &toks,
            PplConfig {
                chunks: Some(3),
                ..pc.clone()
            },
        ),
    ] {
        let mut r = LogitsReader::open(&file).unwrap();
        let e = perplexity_with(
            &other,
            t,
            &c,
            Some(Baseline::Saved(&mut r)),
            None,
            &mut |_, _| {},
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                EvalError::Logits(tenpak::eval::LogitsError::Mismatch { .. })
            ),
            "{e}"
        );
    }
}

/// Each way a saved-logits file can be broken has its own error.
#[test]
fn saved_logits_errors() {
    use tenpak::eval::logits::LogitsHeader;
    use tenpak::eval::{LogitsError as E, LogitsReader, LogitsShape, LogitsWriter};
    use zerocopy::{FromBytes, IntoBytes};
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    let shape = LogitsShape {
        ctx: 8,
        first: 4,
        n_windows: 2,
        vocab: 5,
        tokens_crc: 7,
    };
    let mut w = LogitsWriter::create(&good, shape).unwrap();
    assert!(matches!(w.push_window(&[0.0; 14]), Err(E::BadField { .. })));
    w.push_window(&[1.5; 15]).unwrap();
    // Unfinished files are refused and leave nothing behind.
    assert!(matches!(w.finish(), Err(E::BadField { .. })));
    assert!(!good.exists());
    let mut w = LogitsWriter::create(&good, shape).unwrap();
    w.push_window(&[1.5; 15]).unwrap();
    w.push_window(&[-2.0; 15]).unwrap();
    w.finish().unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let mut r = LogitsReader::open(&good).unwrap();
    assert_eq!(r.shape(), shape);
    assert_eq!(r.next_window().unwrap(), vec![1.5; 15]);
    assert_eq!(r.next_window().unwrap(), vec![-2.0; 15]);
    assert!(matches!(r.next_window(), Err(E::BadField { .. })));

    let reseal = |h: &mut LogitsHeader| {
        h.crc = crc32fast::hash(&h.as_bytes()[..60]).into();
    };
    let case = |name: &str, b: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, b).unwrap();
        LogitsReader::open(&p).err().expect("must be refused")
    };
    assert!(matches!(
        case("short", &bytes[..63]),
        E::Truncated { len: 63, .. }
    ));
    let mut m = bytes.clone();
    m[1] = b'X';
    assert!(matches!(case("magic", &m), E::BadMagic { .. }));
    let mut m = bytes.clone();
    m[70] ^= 1; // data bytes carry no checksum; the header's does
    assert!(LogitsReader::open(&{
        let p = dir.path().join("data");
        std::fs::write(&p, &m).unwrap();
        p
    })
    .is_ok());
    let mut m = bytes.clone();
    m[20] ^= 1;
    assert!(matches!(case("crc", &m), E::HeaderCrc { .. }));
    let edit = |f: &dyn Fn(&mut LogitsHeader)| {
        let mut m = bytes.clone();
        let mut h = LogitsHeader::read_from_bytes(&m[..64]).unwrap();
        f(&mut h);
        reseal(&mut h);
        m[..64].copy_from_slice(h.as_bytes());
        m
    };
    assert!(matches!(
        case("version", &edit(&|h| h.version = 2.into())),
        E::Version { version: 2, .. }
    ));
    for (field, m) in [
        ("ctx", edit(&|h| h.ctx = 3.into())),
        ("first", edit(&|h| h.first = 7.into())),
        ("rows", edit(&|h| h.rows = 2.into())),
        ("n_windows", edit(&|h| h.n_windows = 0.into())),
        ("vocab", edit(&|h| h.vocab = (1 << 22).into())),
        ("reserved", edit(&|h| h.reserved[3] = 1)),
    ] {
        match case(field, &m) {
            E::BadField { field: f, .. } => assert_eq!(f, field),
            e => panic!("{field}: {e}"),
        }
    }
    // A header that promises more data than the file holds.
    assert!(matches!(
        case("size", &edit(&|h| h.n_windows = 3.into())),
        E::Size { expected, .. } if expected == 64 + 3 * 15 * 4
    ));
    let mut m = bytes.clone();
    m.push(0);
    assert!(matches!(case("long", &m), E::Size { .. }));
    assert!(matches!(
        LogitsReader::open(&dir.path().join("missing")),
        Err(E::Io { .. })
    ));
}
