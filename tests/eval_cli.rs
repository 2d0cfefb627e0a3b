//! `tpk eval` end to end on the tiny fixture model: safetensors and lossless .tpk agree, a model
//! against itself has zero divergence, a lossy file diverges, and bad inputs fail cleanly.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tenpak_fixtures::{write_llama_tiny, Dtype};

fn tpk(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_tpk"))
        .args(args)
        .output()
        .expect("run tpk");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn s(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

struct Setup {
    _dir: tempfile::TempDir,
    model: PathBuf,
    text: PathBuf,
    root: PathBuf,
}

/// The fixture model in a folder and ~3 kB of the evaluation text (cut at a line end).
fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    write_llama_tiny(&model, Dtype::F32).unwrap();
    let full = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("eval/enwiki_excerpt.txt"),
    )
    .unwrap();
    let cut = full[..3000].rfind('\n').unwrap();
    let text = dir.path().join("text.txt");
    std::fs::write(&text, &full[..cut]).unwrap();
    Setup {
        root: dir.path().to_path_buf(),
        _dir: dir,
        model,
        text,
    }
}

fn convert(st: &Setup, codec: &str) -> PathBuf {
    let out = st
        .root
        .join(format!("{}.tpk", codec.replace([':', ',', '='], "_")));
    let (code, _, err) = tpk(&["convert", s(&st.model), "-o", s(&out), "--codec", codec]);
    assert_eq!(code, 0, "convert failed: {err}");
    out
}

fn eval_json(st: &Setup, model: &Path, baseline: Option<&Path>) -> Value {
    let mut args = vec![
        "eval",
        s(model),
        "--text",
        s(&st.text),
        "--ctx",
        "64",
        "--chunks",
        "6",
        "--json",
    ];
    if let Some(b) = baseline {
        args.extend(["--baseline", s(b)]);
    }
    let (code, out, err) = tpk(&args);
    assert_eq!(code, 0, "eval failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("bad JSON {e}: {out}"))
}

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64()
        .unwrap_or_else(|| panic!("{k} missing or not a number in {v}"))
}

#[test]
fn safetensors_and_lossless_tpk_agree() {
    let st = setup();
    let lossless = convert(&st, "f32");
    let a = eval_json(&st, &st.model, None);
    let b = eval_json(&st, &lossless, None);
    assert_eq!(a["n_windows"], 6);
    assert_eq!(a["n_tokens_scored"], 6 * 31);
    // The same f32 weights through the same forward pass: identical to the last bit.
    assert_eq!(f(&a, "nll_mean"), f(&b, "nll_mean"));
    assert_eq!(f(&a, "ppl"), f(&b, "ppl"));
    assert!(f(&a, "ppl") > 1.0 && f(&a, "ppl").is_finite());
    assert!(a["kld_mean"].is_null());
    // The tokenizer came from the .tpk metadata, so tokens (and figures) matched without a flag;
    // the text output carries the same PPL.
    let (code, out, _) = tpk(&[
        "eval",
        s(&lossless),
        "--text",
        s(&st.text),
        "--ctx",
        "64",
        "--chunks",
        "6",
    ]);
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!("{:.4}", f(&a, "ppl"))),
        "text report lacks the PPL: {out}"
    );
}

#[test]
fn model_against_itself_has_zero_divergence() {
    let st = setup();
    let lossless = convert(&st, "f32");
    let r = eval_json(&st, &lossless, Some(&st.model));
    assert_eq!(f(&r, "kld_mean"), 0.0);
    assert_eq!(f(&r, "kld_p99"), 0.0);
    assert_eq!(f(&r, "top1_agree"), 1.0);
    assert_eq!(f(&r, "delta_ppl_pct"), 0.0);
    assert_eq!(f(&r, "ppl"), f(&r, "base_ppl"));
}

#[test]
fn lossy_tpk_diverges_from_its_source() {
    let st = setup();
    let lossy = convert(&st, "int4_g32");
    let base = eval_json(&st, &st.model, None);
    let r = eval_json(&st, &lossy, Some(&st.model));
    let kld = f(&r, "kld_mean");
    assert!(kld > 0.0 && kld.is_finite(), "kld {kld}");
    assert!(f(&r, "kld_max") >= f(&r, "kld_p99"));
    assert_ne!(f(&r, "ppl"), f(&r, "base_ppl"));
    // The baseline figures inside the comparison are the source's own.
    assert_eq!(f(&r, "base_ppl"), f(&base, "ppl"));
    let top1 = f(&r, "top1_agree");
    assert!((0.0..=1.0).contains(&top1));
}

#[test]
fn token_check_passes_and_fails() {
    let st = setup();
    let tok = tenpak::eval::load_tokenizer(&st.model.join("tokenizer.json")).unwrap();
    let text = std::fs::read_to_string(&st.text).unwrap();
    let ids = tok.tokenize(&text).unwrap();
    let good: Vec<String> = ids[..100].iter().map(u32::to_string).collect();
    let good_file = st.root.join("good.txt");
    std::fs::write(&good_file, good.join(" ")).unwrap();
    let mut bad = good.clone();
    bad[37] = ((ids[37] + 1) % 288).to_string();
    let bad_file = st.root.join("bad.txt");
    std::fs::write(&bad_file, bad.join(" ")).unwrap();
    let run = |f: &Path| {
        tpk(&[
            "eval",
            s(&st.model),
            "--text",
            s(&st.text),
            "--ctx",
            "64",
            "--chunks",
            "1",
            "--check-tokens",
            s(f),
        ])
    };
    let (code, _, err) = run(&good_file);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("first 100 tokens match"), "{err}");
    let (code, _, err) = run(&bad_file);
    assert_eq!(code, 2);
    assert!(err.contains("token 37 is"), "{err}");
}

#[test]
fn errors_exit_2_with_one_line() {
    let st = setup();
    // The error is one line, the last one on stderr (progress lines may precede it).
    let one_line = |err: &str| {
        let errs: Vec<&str> = err.lines().filter(|l| l.starts_with("tpk: ")).collect();
        assert_eq!(errs.len(), 1, "not one error line: {err:?}");
        assert_eq!(err.trim_end().lines().last(), Some(errs[0]), "{err:?}");
    };
    // Missing model.
    let missing = st.root.join("nope.tpk");
    let (code, out, err) = tpk(&["eval", s(&missing), "--text", s(&st.text)]);
    assert_eq!(code, 2);
    assert!(out.is_empty());
    one_line(&err);
    assert!(err.contains("nope.tpk"), "{err}");
    // Missing text.
    let (code, _, err) = tpk(&["eval", s(&st.model), "--text", s(&missing)]);
    assert_eq!(code, 2);
    one_line(&err);
    // No tokenizer anywhere: a folder without tokenizer.json.
    std::fs::remove_file(st.model.join("tokenizer.json")).unwrap();
    let (code, _, err) = tpk(&["eval", s(&st.model), "--text", s(&st.text), "--ctx", "64"]);
    assert_eq!(code, 2);
    one_line(&err);
    assert!(err.contains("--tokenizer"), "{err}");
    // A .tpk converted from a folder without config.json cannot be evaluated.
    let bare = st.root.join("bare");
    std::fs::create_dir_all(&bare).unwrap();
    std::fs::copy(
        st.model.join("model.safetensors"),
        bare.join("model.safetensors"),
    )
    .unwrap();
    let bare_tpk = st.root.join("bare.tpk");
    let (code, _, err) = tpk(&["convert", s(&bare), "-o", s(&bare_tpk), "--codec", "f32"]);
    assert_eq!(code, 0, "{err}");
    let tokjson = st.root.join("tok.json");
    std::fs::write(&tokjson, tenpak_fixtures::tokenizer_json()).unwrap();
    let (code, _, err) = tpk(&[
        "eval",
        s(&bare_tpk),
        "--text",
        s(&st.text),
        "--tokenizer",
        s(&tokjson),
    ]);
    assert_eq!(code, 2);
    one_line(&err);
    assert!(err.contains("no model config"), "{err}");
    // Too little text for one window.
    let short = st.root.join("short.txt");
    std::fs::write(&short, "ab").unwrap();
    let (code, _, err) = tpk(&[
        "eval",
        s(&st.model),
        "--text",
        s(&short),
        "--tokenizer",
        s(&tokjson),
    ]);
    assert_eq!(code, 2);
    one_line(&err);
    assert!(err.contains("need at least one window"), "{err}");
}

#[test]
fn saved_logits_baseline_matches_the_live_baseline() {
    let st = setup();
    let lossy = convert(&st, "int4_g32");
    let logits = st.root.join("base.logits");
    let args = |m: &Path| {
        vec![
            "eval".to_string(),
            s(m).to_string(),
            "--text".into(),
            s(&st.text).into(),
            "--ctx".into(),
            "64".into(),
            "--chunks".into(),
            "6".into(),
            "--json".into(),
        ]
    };
    let mut save = args(&st.model);
    save.extend(["--save-logits".into(), s(&logits).into()]);
    let save: Vec<&str> = save.iter().map(String::as_str).collect();
    let (code, _, err) = tpk(&save);
    assert_eq!(code, 0, "{err}");
    let live = eval_json(&st, &lossy, Some(&st.model));
    let saved = eval_json(&st, &lossy, Some(&logits));
    for k in [
        "ppl",
        "base_ppl",
        "kld_mean",
        "kld_p99",
        "top1_agree",
        "delta_ppl_pct",
    ] {
        assert_eq!(f(&live, k), f(&saved, k), "{k}");
    }
    // Another window count is refused with one line naming the mismatch.
    let mut other = args(&lossy);
    other[7] = "5".into();
    other.extend(["--baseline".into(), s(&logits).into()]);
    let other: Vec<&str> = other.iter().map(String::as_str).collect();
    let (code, _, err) = tpk(&other);
    assert_eq!(code, 2);
    assert!(err.contains("windows"), "{err}");
    // --save-logits never overwrites an input.
    let before = std::fs::read(&st.text).unwrap();
    let mut clobber = args(&lossy);
    clobber.extend(["--save-logits".into(), s(&st.text).into()]);
    let clobber: Vec<&str> = clobber.iter().map(String::as_str).collect();
    let (code, _, err) = tpk(&clobber);
    assert_eq!(code, 2);
    assert!(err.contains("input"), "{err}");
    assert_eq!(std::fs::read(&st.text).unwrap(), before);
}
