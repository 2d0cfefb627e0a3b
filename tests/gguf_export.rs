//! `.tpk` -> GGUF export: bit-exact block copies, gguf-py agreement, fallbacks, metadata.

mod gguf_common;

use std::path::Path;

use gguf_common::*;
use tenpak::codec::ggml::{self, GgmlType};
use tenpak::codec::staged::Stage;
use tenpak::TpkFile;
use tenpak_converters::gguf::{permute_qk_rows, qk_proj, GgufFile, QkProj};

/// Our decode of every GGUF tensor, written as `<name>.f32` for the python checker.
fn write_decodes(g: &GgufFile, dir: &Path) {
    std::fs::create_dir_all(dir).expect("dir");
    for t in g.tensors() {
        let ty = GgmlType::from_id(t.ggml_type).expect("supported type");
        let cols = t.dims[0] as usize;
        let rb = ggml::row_bytes(ty, cols).expect("whole blocks");
        let mut row = vec![0f32; cols];
        let mut bytes = Vec::new();
        for r in g.tensor_data(t).chunks_exact(rb) {
            ggml::dequantize_row(ty, r, &mut row).expect("dequantize");
            bytes.extend(row.iter().flat_map(|v| v.to_le_bytes()));
        }
        std::fs::write(dir.join(format!("{}.f32", t.name)), bytes).expect("write");
    }
}

fn permuted(name: &str, data: &[u8], rows: usize, heads: (usize, usize)) -> Vec<u8> {
    match qk_proj(name) {
        Some(p) => {
            let h = if p == QkProj::Q { heads.0 } else { heads.1 };
            permute_qk_rows(data, rows, data.len() / rows, h).expect("permute")
        }
        None => data.to_vec(),
    }
}

#[test]
fn native_codecs_are_copied_bit_exact_and_gguf_py_agrees() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let model = wide(&tmp.path().join("wide"));
    for codec in [
        "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "iq4_nl",
    ] {
        let tpk = tmp.path().join(format!("{codec}.tpk"));
        let out = tmp.path().join(format!("{codec}.gguf"));
        to_tpk(&model, &tpk, codec);
        let rep = to_gguf(&tpk, &out, "auto");
        let f = TpkFile::open(&tpk).expect("open");
        let g = GgufFile::open(&out).expect("gguf reads back");
        let want = GgmlType::from_name(codec).expect("type");
        let mut copied = 0;
        for e in &rep.tensors {
            let t = f.tensor(&e.name).expect("tensor");
            let gt = g.tensor(&e.gguf_name).expect("gguf tensor");
            if t.stages().expect("stages") == vec![Stage::Ggml { type_id: want.id() }] {
                assert!(e.copied, "{codec} {}: not copied", e.name);
                assert_eq!(e.ty, want);
                let sec = t.section(0).expect("section").bytes();
                let rows = t.shape()[0] as usize;
                assert_eq!(
                    g.tensor_data(gt),
                    permuted(&e.name, sec, rows, (4, 2)).as_slice(),
                    "{codec} {}: bytes differ",
                    e.name
                );
                copied += 1;
            }
        }
        assert!(copied >= 7, "{codec}: only {copied} tensors copied");
        assert_eq!(
            g.get_u32("general.file_type"),
            Some(tenpak::export::gguf::llama_file_type(want))
        );
        assert_eq!(g.get_str("tokenizer.ggml.model"), Some("gpt2"));
        let exp = tmp.path().join(format!("{codec}.expect"));
        write_decodes(&g, &exp);
        let (o, e) = (out.to_string_lossy(), exp.to_string_lossy());
        python("gguf_check.py", &[&o, &e, "values"]);
    }
}

#[test]
fn q8_0_and_q4_0_bytes_equal_gguf_py_quantize() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let model = wide(&tmp.path().join("wide"));
    let tpk = tmp.path().join("f32.tpk");
    to_tpk(&model, &tpk, "f32");
    let f = TpkFile::open(&tpk).expect("open");
    for ty in ["q8_0", "q4_0"] {
        let out = tmp.path().join(format!("{ty}.gguf"));
        let rep = to_gguf(&tpk, &out, ty);
        let exp = tmp.path().join(format!("{ty}.expect"));
        std::fs::create_dir_all(&exp).expect("dir");
        for e in &rep.tensors {
            let t = f.tensor(&e.name).expect("tensor");
            let v: Vec<u8> = t
                .to_f32_vec()
                .expect("decode")
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect();
            let rows = t.shape()[0] as usize;
            let p = permuted(&e.name, &v, rows, (4, 2));
            std::fs::write(exp.join(format!("{}.f32", e.gguf_name)), p).expect("write");
            if t.shape().len() == 2 {
                assert_eq!(e.ty.name(), ty, "{}", e.name);
            }
        }
        let (o, x) = (out.to_string_lossy(), exp.to_string_lossy());
        python("gguf_check.py", &[&o, &x, "requant"]);
    }
}

#[test]
fn fixture_falls_back_and_reports_error_per_type() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let model = tiny(&tmp.path().join("tiny"));
    let tpk = tmp.path().join("f16.tpk");
    to_tpk(&model, &tpk, "f16");
    // Rows of 80 and 200 elements: no 32- or 256-element block fits, everything falls to f16.
    let rep = to_gguf(&tpk, &tmp.path().join("q4k.gguf"), "q4_k");
    for e in rep.tensors.iter().filter(|e| !e.gguf_name.contains("norm")) {
        assert_eq!(e.ty, GgmlType::F16, "{}", e.name);
        assert_eq!(e.fallback_from, Some(GgmlType::Q4K), "{}", e.name);
    }
    // The wide model exercises every type; print the relative error of each.
    let wide_m = wide(&tmp.path().join("wide"));
    let wtpk = tmp.path().join("wide.tpk");
    to_tpk(&wide_m, &wtpk, "f32");
    for ty in [
        "f32", "f16", "bf16", "q8_0", "q6_k", "q5_1", "q5_0", "q5_k", "q4_1", "q4_0", "q4_k",
        "iq4_nl", "iq4_xs", "q3_k", "q2_k",
    ] {
        let rep = to_gguf(&wtpk, &tmp.path().join(format!("w_{ty}.gguf")), ty);
        let (mut num, mut den) = (0f64, 0f64);
        for e in &rep.tensors {
            num += e.rel_err * e.elements as f64;
            den += e.elements as f64;
        }
        let rel = num / den;
        println!("export rel err {ty}: {rel:.3e}");
        let bound = match ty {
            "f32" => 0.0,
            "f16" | "bf16" => 1e-4,
            "q8_0" | "q6_k" => 1e-3,
            "q2_k" => 0.2,
            _ => 0.05,
        };
        assert!(rel <= bound, "{ty}: rel err {rel}");
    }
}

#[test]
fn auto_copies_raw_and_picks_types_no_worse_than_the_codec() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let model = wide(&tmp.path().join("wide"));
    let tpk = tmp.path().join("int4.tpk");
    to_tpk(&model, &tpk, "int4_g32");
    let f = TpkFile::open(&tpk).expect("open");
    let meta = f.metadata().expect("metadata");
    let rep = to_gguf(&tpk, &tmp.path().join("auto.gguf"), "auto");
    for e in rep.tensors.iter().filter(|e| !e.gguf_name.contains("norm")) {
        let rec = meta["policy"]["tensors"][&e.name]["rel_mse"]
            .as_f64()
            .expect("convert records rel_mse");
        assert!(e.rel_err <= rec, "{}: {} > {rec}", e.name, e.rel_err);
        assert!(!e.copied);
    }
    // The int4 projections must come out as a quantized type, not a float copy.
    let q = rep
        .tensors
        .iter()
        .filter(|e| e.name.contains("proj") && e.ty.block_size() > 1)
        .count();
    assert_eq!(
        q,
        7,
        "{:?}",
        rep.tensors.iter().map(|e| e.ty).collect::<Vec<_>>()
    );
}

#[test]
fn fixed_type_copies_only_blocks_of_that_type() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let model = wide(&tmp.path().join("wide"));
    let tpk = tmp.path().join("q5_0.tpk");
    to_tpk(&model, &tpk, "q5_0");
    let f = TpkFile::open(&tpk).expect("open");
    // A fixed type copies exactly the tensors stored in that type (the embeddings, int8 by
    // policy, are re-encoded); a different type re-encodes everything.
    let rep = to_gguf(&tpk, &tmp.path().join("q5_0.gguf"), "q5_0");
    let q5 = GgmlType::Q5_0.id();
    for e in &rep.tensors {
        let st = f.tensor(&e.name).expect("t").stages().expect("stages");
        assert_eq!(
            e.copied,
            st == vec![Stage::Ggml { type_id: q5 }],
            "{}",
            e.name
        );
    }
    let rep = to_gguf(&tpk, &tmp.path().join("q4_k.gguf"), "q4_k");
    assert!(rep.tensors.iter().all(|e| !e.copied));
}

/// `tpk export --to gguf` end to end: the file the CLI writes is the library's, the chosen
/// types are reported, and bad arguments exit 2 with one line and no output file.
#[test]
fn cli_export_to_gguf() {
    use std::process::Command;
    let tmp = tempfile::tempdir().expect("tempdir");
    let model = wide(&tmp.path().join("wide"));
    let tpk = tmp.path().join("q4k.tpk");
    to_tpk(&model, &tpk, "q4_k");
    let lib = tmp.path().join("lib.gguf");
    to_gguf(&tpk, &lib, "auto");
    let cli = tmp.path().join("cli.gguf");
    let run = |args: &[&std::ffi::OsStr]| {
        Command::new(env!("CARGO_BIN_EXE_tpk"))
            .args(args)
            .output()
            .expect("tpk runs")
    };
    let o = run(&[
        "export".as_ref(),
        tpk.as_os_str(),
        "--to".as_ref(),
        "gguf".as_ref(),
        "-o".as_ref(),
        cli.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("copied bit-exact"), "{text}");
    assert_eq!(
        std::fs::read(&cli).expect("cli file"),
        std::fs::read(&lib).expect("lib file"),
        "the CLI and the library write the same bytes"
    );
    let g = GgufFile::open(&cli).expect("our GGUF reads back");
    assert!(g
        .tensors()
        .iter()
        .any(|t| GgmlType::from_id(t.ggml_type) == Some(GgmlType::Q4K)));

    let bad = tmp.path().join("bad.gguf");
    for extra in [&["--type", "q9_9"][..], &["--alignment", "3"][..]] {
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "export".as_ref(),
            tpk.as_os_str(),
            "--to".as_ref(),
            "gguf".as_ref(),
            "-o".as_ref(),
            bad.as_os_str(),
        ];
        args.extend(extra.iter().map(|s| -> &std::ffi::OsStr { s.as_ref() }));
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{extra:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{extra:?}: {err}");
        assert!(!bad.exists());
    }
    // Never over the input.
    let o = run(&[
        "export".as_ref(),
        tpk.as_os_str(),
        "--to".as_ref(),
        "gguf".as_ref(),
        "-o".as_ref(),
        tpk.as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(TpkFile::open(&tpk).is_ok(), "the input is intact");
}
