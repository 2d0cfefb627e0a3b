//! Every preset through the real `convert` pipeline on the tiny LLaMA fixture (f32, f16 and
//! bf16 sources): reopen, verify, decode every tensor and check the decoded values against
//! the source and against the error the encoder reported.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use tenpak::convert::{convert, ConvertOptions, Event, Policy};
use tenpak::TpkFile;
use tenpak_converters::safetensors::{Dtype as StDtype, SafetensorsModel, SafetensorsWriter};
use tenpak_fixtures::{write_llama_sharded, write_llama_tiny, Dtype};

const PRESETS: &[&str] = &[
    "int4_g8",
    "int4_g16",
    "int4_g32",
    "int4_g64",
    "int4_g128",
    "int8",
    "int4_opt",
    "int4_residual",
    "pocketllm",
    "tenpak_x",
    "f16",
    "f32",
    "bf16",
    "q8_0",
    "q4_k",
];

/// Per tensor: reported rel MSE, recomputed rel MSE, rule, whether bit-exact.
#[derive(Debug, Clone)]
struct TensorResult {
    reported: f64,
    measured: f64,
    rule: String,
    exact: bool,
    rank: usize,
}

fn source(dir: &Path) -> BTreeMap<String, Vec<f32>> {
    let m = SafetensorsModel::open(dir).expect("fixture opens");
    m.tensors()
        .iter()
        .map(|t| {
            let mut v = vec![0f32; t.numel()];
            m.read_f32_into(t, &mut v, false)
                .expect("fixture is finite");
            (t.name.clone(), v)
        })
        .collect()
}

fn run_convert(
    input: &Path,
    output: &Path,
    policy: Policy,
    allow_nonfinite: bool,
) -> tenpak::Result<BTreeMap<String, f64>> {
    let mut reported = BTreeMap::new();
    let opts = ConvertOptions {
        input: input.to_path_buf(),
        output: output.to_path_buf(),
        policy,
        allow_nonfinite,
        user: None,
    };
    convert(&opts, &mut |ev| {
        if let Event::Tensor { name, rel_mse, .. } = ev {
            reported.insert(name.to_string(), *rel_mse);
        }
    })?;
    Ok(reported)
}

/// Converts `input` with `codec` and checks the file against `src`.
fn convert_and_check(
    input: &Path,
    out: &Path,
    codec: &str,
    src: &BTreeMap<String, Vec<f32>>,
) -> BTreeMap<String, TensorResult> {
    let policy = Policy::new(codec, &[], &[]).expect("preset parses");
    let reported = run_convert(input, out, policy, false)
        .unwrap_or_else(|e| panic!("convert {codec} {}: {e}", input.display()));
    let f = TpkFile::open(out).expect("output opens");
    f.verify().expect("CRCs check");
    let meta = f.metadata().expect("metadata");
    assert_eq!(f.tensor_count(), src.len(), "{codec}: tensor count");
    let mut res = BTreeMap::new();
    for t in f.tensors() {
        let x = &src[t.name()];
        let d = t.to_f32_vec().expect("decodes");
        assert_eq!(d.len(), x.len());
        let (mut sig, mut noise) = (0f64, 0f64);
        for (a, b) in x.iter().zip(&d) {
            sig += f64::from(*a) * f64::from(*a);
            noise += (f64::from(*a) - f64::from(*b)).powi(2);
        }
        let measured = if sig > 0.0 { noise / sig } else { 0.0 };
        let exact = x.iter().zip(&d).all(|(a, b)| a.to_bits() == b.to_bits());
        let rule = meta["policy"]["tensors"][t.name()]["rule"]
            .as_str()
            .expect("rule recorded")
            .to_string();
        res.insert(
            t.name().to_string(),
            TensorResult {
                reported: reported[t.name()],
                measured,
                rule,
                exact,
                rank: t.shape().len(),
            },
        );
    }
    res
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// Whether `preset` stores values of `dtype` exactly.
fn lossless(preset: &str, dtype: Dtype) -> bool {
    matches!(
        (preset, dtype),
        ("f32", _) | ("f16", Dtype::F16) | ("bf16", Dtype::BF16)
    )
}

#[test]
fn every_preset_round_trips_on_every_source_dtype() {
    for dtype in [Dtype::F32, Dtype::F16, Dtype::BF16] {
        let dir = tmp();
        let model = dir.path().join("model");
        write_llama_tiny(&model, dtype).expect("fixture");
        let src = source(&model);
        let mut first_stage_cache: BTreeMap<&str, BTreeMap<String, TensorResult>> = BTreeMap::new();
        let mut all: BTreeMap<&str, BTreeMap<String, TensorResult>> = BTreeMap::new();
        for &p in PRESETS {
            let out = dir.path().join(format!("{p}.tpk"));
            let r = convert_and_check(&model, &out, p, &src);
            for (name, t) in &r {
                // 1-D tensors stay in their source dtype whatever the preset; raw presets
                // that can hold the source dtype (embeddings included) are exact.
                if t.rank < 2 || lossless(p, dtype) {
                    assert!(t.exact, "{p} {dtype:?} {name}: not bit-exact");
                    assert_eq!(t.reported, 0.0, "{p} {dtype:?} {name}: reported error");
                }
                // The error the encoder reported is the error a reader gets.
                let tol = 1e-3 * t.measured.max(t.reported) + 1e-15;
                assert!(
                    (t.reported - t.measured).abs() <= tol,
                    "{p} {dtype:?} {name}: reported {} measured {}",
                    t.reported,
                    t.measured
                );
                if t.rule == "default" && t.rank == 2 && !["f16", "bf16", "f32"].contains(&p) {
                    assert!(t.measured > 0.0, "{p} {dtype:?} {name}: lossy but exact?");
                }
            }
            all.insert(p, r);
        }
        // Composed presets beat their first stage alone on every 2-D tensor under the main
        // codec (the embeddings rule gives int8 to both).
        for (p, first) in [
            ("int4_residual", "int:b=4,g=16,opt"),
            ("pocketllm", "vq:d=4,k=256"),
            ("tenpak_x", "lowrank:r=32,w"),
        ] {
            let out = dir.path().join(format!("first_{p}.tpk"));
            let r1 = convert_and_check(&model, &out, first, &src);
            first_stage_cache.insert(p, r1);
        }
        for (p, r1) in &first_stage_cache {
            let mut compared = 0;
            for (name, t) in &all[p] {
                if t.rank != 2 || t.rule != "default" {
                    continue;
                }
                let alone = &r1[name];
                assert!(
                    t.measured < alone.measured,
                    "{p} {dtype:?} {name}: composed {} vs first stage {}",
                    t.measured,
                    alone.measured
                );
                compared += 1;
            }
            assert!(compared >= 10, "{p}: only {compared} tensors compared");
        }
        // int4_opt never worse than plain int4_g16.
        let mut compared = 0;
        for (name, t) in &all["int4_opt"] {
            if t.rule != "default" || t.rank != 2 {
                continue;
            }
            let plain = &all["int4_g16"][name];
            assert!(
                t.measured <= plain.measured,
                "{dtype:?} {name}: int4_opt {} > int4_g16 {}",
                t.measured,
                plain.measured
            );
            compared += 1;
        }
        assert!(compared >= 10);
    }
}

fn tpk_bin() -> &'static str {
    env!("CARGO_BIN_EXE_tpk")
}

fn cli_convert(input: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(tpk_bin())
        .arg("convert")
        .arg(input)
        .arg("-o")
        .arg(out)
        .args(extra)
        .output()
        .expect("tpk runs")
}

#[test]
fn output_bytes_do_not_depend_on_thread_count() {
    let dir = tmp();
    let model = dir.path().join("model");
    write_llama_tiny(&model, Dtype::F16).expect("fixture");
    for codec in ["tenpak_x", "int4_residual", "pocketllm", "int4_g32", "q4_k"] {
        let mut files = Vec::new();
        for threads in ["1", "2"] {
            let out = dir.path().join(format!("{codec}_{threads}.tpk"));
            let o = cli_convert(&model, &out, &["--codec", codec, "--threads", threads]);
            assert!(
                o.status.success(),
                "{codec} -t{threads}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            files.push(std::fs::read(&out).expect("output"));
        }
        assert!(
            files[0] == files[1],
            "{codec}: bytes differ between 1 and 2 threads"
        );
    }
}

#[test]
fn sharded_input_gives_the_same_tensors_as_single_file() {
    let dir = tmp();
    let single = dir.path().join("single");
    let sharded = dir.path().join("sharded");
    write_llama_tiny(&single, Dtype::BF16).expect("fixture");
    write_llama_sharded(&sharded, Dtype::BF16, 3).expect("fixture");
    let a = dir.path().join("a.tpk");
    let b = dir.path().join("b.tpk");
    for (i, o) in [(&single, &a), (&sharded, &b)] {
        run_convert(
            i,
            o,
            Policy::new("tenpak_x", &[], &[]).expect("preset"),
            false,
        )
        .expect("convert");
    }
    let (fa, fb) = (TpkFile::open(&a).expect("a"), TpkFile::open(&b).expect("b"));
    assert_eq!(fa.tensor_count(), fb.tensor_count());
    for (ta, tb) in fa.tensors().zip(fb.tensors()) {
        assert_eq!(ta.name(), tb.name());
        assert_eq!(ta.shape(), tb.shape());
        assert_eq!(ta.params(), tb.params(), "{}", ta.name());
        let sa: Vec<&[u8]> = ta.sections().map(|s| s.bytes()).collect();
        let sb: Vec<&[u8]> = tb.sections().map(|s| s.bytes()).collect();
        assert!(sa == sb, "{}: section bytes differ", ta.name());
    }
    // Metadata differs only in the list of source files.
    let (mut ma, mut mb) = (fa.metadata().expect("meta"), fb.metadata().expect("meta"));
    assert_ne!(ma["source"]["files"], mb["source"]["files"]);
    ma.as_object_mut().expect("object").remove("source");
    mb.as_object_mut().expect("object").remove("source");
    assert_eq!(ma, mb);
    // Same metadata size class, so the files differ only by the source list: same payload.
    assert_eq!(
        fa.sections().count(),
        fb.sections().count(),
        "section count"
    );
}

#[test]
fn keep_and_codec_for_apply_and_are_recorded() {
    let dir = tmp();
    let model = dir.path().join("model");
    write_llama_tiny(&model, Dtype::F32).expect("fixture");
    let src = source(&model);
    let out = dir.path().join("mixed.tpk");
    let o = cli_convert(
        &model,
        &out,
        &[
            "--codec",
            "int4_g32",
            "--keep",
            "*.q_proj.weight",
            "--codec-for",
            "*mlp.down_proj*=int8",
            "--codec-for",
            "lm_head.weight=q8_0",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let f = TpkFile::open(&out).expect("open");
    let meta = f.metadata().expect("meta");
    let pol = &meta["policy"];
    assert_eq!(pol["codec"], "int4_g32");
    assert_eq!(pol["keep"], serde_json::json!(["*.q_proj.weight"]));
    assert_eq!(
        pol["codec_for"],
        serde_json::json!([["*mlp.down_proj*", "int8"], ["lm_head.weight", "q8_0"]])
    );
    let tensors = &pol["tensors"];
    for l in 0..2 {
        let q = format!("model.layers.{l}.self_attn.q_proj.weight");
        assert_eq!(tensors[&q]["rule"], "keep");
        assert_eq!(tensors[&q]["stages"], "raw:dtype=f32");
        let d = f.tensor(&q).expect("q").to_f32_vec().expect("decode");
        assert!(d
            .iter()
            .zip(&src[&q])
            .all(|(a, b)| a.to_bits() == b.to_bits()));
        let down = format!("model.layers.{l}.mlp.down_proj.weight");
        assert_eq!(tensors[&down]["rule"], "codec_for");
        assert!(
            tensors[&down]["stages"]
                .as_str()
                .expect("str")
                .starts_with("int:b=8"),
            "{}",
            tensors[&down]["stages"]
        );
        let k = format!("model.layers.{l}.self_attn.k_proj.weight");
        assert_eq!(tensors[&k]["rule"], "default");
    }
    assert_eq!(tensors["lm_head.weight"]["rule"], "codec_for");
    assert_eq!(tensors["model.embed_tokens.weight"]["rule"], "embedding");
}

/// An f32 safetensors model of three 2-D tensors; `nan_in` gets a NaN (by name).
fn write_model_with_nan(dir: &Path, nan_in: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("dir");
    let names = ["a.weight", "b.weight", "z.weight"];
    let mut data: Vec<Vec<u8>> = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let mut v: Vec<f32> = (0..16 * 64)
            .map(|j| ((j * 7 + i * 13) % 23) as f32 / 23.0 - 0.5)
            .collect();
        if *n == nan_in {
            v[5 * 64 + 3] = f32::NAN;
        }
        data.push(v.iter().flat_map(|x| x.to_le_bytes()).collect());
    }
    let shape = [16usize, 64];
    let tensors: Vec<(&str, StDtype, &[usize], &[u8])> = names
        .iter()
        .zip(&data)
        .map(|(n, d)| (*n, StDtype::F32, &shape[..], d.as_slice()))
        .collect();
    SafetensorsWriter::write_all(dir, None, &[], &tensors).expect("write");
    dir.join("model.safetensors")
}

#[test]
fn nan_is_refused_by_name_and_leaves_no_output() {
    let dir = tmp();
    let model = write_model_with_nan(&dir.path().join("m"), "z.weight");
    let out = dir.path().join("out.tpk");
    let err = run_convert(
        &model,
        &out,
        Policy::new("int4_g32", &[], &[]).expect("p"),
        false,
    )
    .expect_err("NaN must be refused");
    let msg = err.to_string();
    assert!(
        msg.contains("z.weight"),
        "error does not name the tensor: {msg}"
    );
    // The failure came after two tensors were written: nothing may be left behind.
    assert!(!out.exists(), "partial output left behind");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .filter(|n| n != "m")
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    // The CLI says the same and exits non-zero.
    let o = cli_convert(&model, &out, &["--codec", "int4_g32"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("z.weight"));
    assert!(!out.exists());

    // Accepted on request.
    let o = cli_convert(&model, &out, &["--codec", "f32", "--allow-nonfinite"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let f = TpkFile::open(&out).expect("open");
    let z = f
        .tensor("z.weight")
        .expect("z")
        .to_f32_vec()
        .expect("decode");
    assert!(z[5 * 64 + 3].is_nan());
    assert_eq!(z.iter().filter(|v| v.is_nan()).count(), 1);
}

#[test]
fn output_equal_to_input_is_refused_and_input_untouched() {
    let dir = tmp();
    let model = dir.path().join("model");
    let st = write_llama_tiny(&model, Dtype::F16).expect("fixture");
    let before = std::fs::read(&st).expect("read");
    let r = run_convert(
        &model,
        &st,
        Policy::new("int4_g32", &[], &[]).expect("p"),
        false,
    );
    assert!(r.is_err(), "writing over the input must be refused");
    assert_eq!(std::fs::read(&st).expect("read"), before, "input changed");
    let cfg = model.join("config.json");
    let cfg_before = std::fs::read(&cfg).expect("read");
    let o = cli_convert(&model, &cfg, &["--codec", "int8"]);
    assert!(!o.status.success(), "side file overwritten");
    assert_eq!(std::fs::read(&cfg).expect("read"), cfg_before);
}

/// A tensor of two int stages decodes whole (one fused pass where the CPU has it) to
/// exactly the bits of its stages decoded one by one, the first set and the second added,
/// for the whole tensor and for a range of rows.
#[test]
fn two_int_stages_decode_as_their_stages_one_by_one() {
    use tenpak::codec::decode::decode_stage;
    use tenpak::codec::Mode;
    let dir = tmp();
    let input = write_llama_tiny(dir.path(), Dtype::F16).expect("fixture writes");
    let out = dir.path().join("r.tpk");
    let policy = Policy::new("int4_residual", &[], &[]).expect("preset parses");
    run_convert(&input, &out, policy, false).expect("converts");
    let f = TpkFile::open(&out).expect("output opens");
    let mut checked = 0;
    for t in f.tensors() {
        let stages = t.stages().expect("stages");
        if stages.len() != 2 {
            continue;
        }
        let m = t.matrix();
        let (rows, cols) = (m.rows as usize, m.cols as usize);
        let mut want = vec![0f32; rows * cols];
        let mut next = 0;
        for (i, st) in stages.iter().enumerate() {
            let count = st.sections(m).expect("sections").len();
            let secs: Vec<&[u8]> = (next..next + count)
                .map(|j| t.section(j).expect("section").bytes())
                .collect();
            next += count;
            let mode = if i == 0 { Mode::Set } else { Mode::Add };
            decode_stage(&secs, m, *st, 0..rows, &mut want, mode).expect("stage decodes");
        }
        let got = t.to_f32_vec().expect("decodes");
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&want), "{}", t.name());
        let r = rows / 3..rows;
        let mut part = vec![0f32; r.len() * cols];
        t.dequantize_rows_into(r.clone(), &mut part)
            .expect("rows decode");
        assert_eq!(
            bits(&part),
            bits(&want[r.start * cols..]),
            "{} rows",
            t.name()
        );
        checked += 1;
    }
    assert!(checked > 0, "int4_residual gives two-stage tensors");
}
