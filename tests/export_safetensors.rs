//! `tpk export --to safetensors`: values, sharding, side files, and a load by the Python
//! `safetensors` package.

use std::path::Path;
use std::process::Command;

use tenpak::convert::export_st::{export_safetensors, ExportDtype, ExportOptions};
use tenpak::convert::{convert, ConvertOptions, Policy};
use tenpak::TpkFile;
use tenpak_converters::safetensors::{Dtype as StDtype, SafetensorsModel};
use tenpak_fixtures::{write_llama_tiny, Dtype};

fn to_tpk(model: &Path, out: &Path, codec: &str) {
    let opts = ConvertOptions {
        input: model.to_path_buf(),
        output: out.to_path_buf(),
        policy: Policy::new(codec, &[], &[]).expect("preset"),
        allow_nonfinite: false,
        user: None,
    };
    convert(&opts, &mut |_| {}).expect("convert");
}

fn export(input: &Path, out_dir: &Path, dtype: ExportDtype, shard: Option<u64>) -> Vec<String> {
    let s = export_safetensors(
        &ExportOptions {
            input: input.to_path_buf(),
            out_dir: out_dir.to_path_buf(),
            dtype,
            max_shard_bytes: shard,
        },
        &mut |_, _, _| {},
    )
    .expect("export");
    s.files
        .iter()
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect()
}

fn read_all(dir: &Path) -> Vec<(String, StDtype, Vec<usize>, Vec<f32>)> {
    let m = SafetensorsModel::open(dir).expect("exported folder opens");
    m.tensors()
        .iter()
        .map(|t| {
            let mut v = vec![0f32; t.numel()];
            m.read_f32_into(t, &mut v, false).expect("finite");
            (t.name.clone(), t.dtype, t.shape.clone(), v)
        })
        .collect()
}

#[test]
fn f32_export_of_lossless_file_equals_the_source() {
    let dir = tempfile::tempdir().expect("tmp");
    let model = dir.path().join("m");
    write_llama_tiny(&model, Dtype::F32).expect("fixture");
    let tpk = dir.path().join("a.tpk");
    to_tpk(&model, &tpk, "f32");
    let out = dir.path().join("out");
    let files = export(&tpk, &out, ExportDtype::F32, None);
    assert_eq!(
        files,
        [
            "model.safetensors",
            "config.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "generation_config.json"
        ]
    );
    let src = read_all(&model);
    let got = read_all(&out);
    assert_eq!(src.len(), got.len());
    for (a, b) in src.iter().zip(&got) {
        assert_eq!(a.0, b.0);
        assert_eq!(b.1, StDtype::F32);
        assert_eq!(a.2, b.2, "{}: shape", a.0);
        assert!(
            a.3.iter()
                .zip(&b.3)
                .all(|(x, y)| x.to_bits() == y.to_bits()),
            "{}: values differ",
            a.0
        );
    }
    // Side files carry the same JSON as the originals.
    for f in &files[1..] {
        let a: serde_json::Value =
            serde_json::from_slice(&std::fs::read(model.join(f)).expect("src")).expect("json");
        let b: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join(f)).expect("out")).expect("json");
        assert_eq!(a, b, "{f}");
    }
}

#[test]
fn f16_and_bf16_exports_are_the_decoded_values_rounded() {
    let dir = tempfile::tempdir().expect("tmp");
    let model = dir.path().join("m");
    write_llama_tiny(&model, Dtype::BF16).expect("fixture");
    let tpk = dir.path().join("a.tpk");
    to_tpk(&model, &tpk, "tenpak_x");
    let f = TpkFile::open(&tpk).expect("open");
    for (dt, st) in [
        (ExportDtype::F16, StDtype::F16),
        (ExportDtype::BF16, StDtype::BF16),
    ] {
        let out = dir.path().join(format!("{st:?}"));
        export(&tpk, &out, dt, None);
        let got = read_all(&out);
        assert_eq!(got.len(), f.tensor_count());
        for (name, d, shape, v) in &got {
            assert_eq!(*d, st);
            let t = f.tensor(name).expect("tensor");
            let want_shape: Vec<usize> = t.shape().iter().map(|&x| x as usize).collect();
            assert_eq!(*shape, want_shape);
            let dec = t.to_f32_vec().expect("decode");
            for (x, y) in dec.iter().zip(v) {
                let r = match dt {
                    ExportDtype::F16 => half::f16::from_f32(*x).to_f32(),
                    _ => half::bf16::from_f32(*x).to_f32(),
                };
                assert_eq!(r.to_bits(), y.to_bits(), "{name}");
            }
        }
    }
}

#[test]
fn max_shard_mb_splits_with_an_index_and_cli_works() {
    let dir = tempfile::tempdir().expect("tmp");
    let model = dir.path().join("m");
    write_llama_tiny(&model, Dtype::F32).expect("fixture");
    let tpk = dir.path().join("a.tpk");
    to_tpk(&model, &tpk, "int4_g32");
    let out = dir.path().join("out");
    // 180880 weights * 4 bytes = 723 kB: 1 MiB gives one file, the API's 256 kB gives shards.
    let o = Command::new(env!("CARGO_BIN_EXE_tpk"))
        .args(["export"])
        .arg(&tpk)
        .args([
            "--to",
            "safetensors",
            "--dtype",
            "f32",
            "--max-shard-mb",
            "1",
            "-o",
        ])
        .arg(&out)
        .output()
        .expect("tpk runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.join("model.safetensors").exists());
    assert!(!out.join("model.safetensors.index.json").exists());
    let single = read_all(&out);

    let sh = dir.path().join("sharded");
    let files = export(&tpk, &sh, ExportDtype::F32, Some(256 * 1024));
    let shards: Vec<&String> = files.iter().filter(|f| f.starts_with("model-")).collect();
    assert!(shards.len() >= 3, "{files:?}");
    assert!(files.contains(&"model.safetensors.index.json".to_string()));
    for s in &shards {
        let len = std::fs::metadata(sh.join(s)).expect("shard").len();
        // data <= limit unless a single tensor is larger (none is here), plus a small header
        assert!(len <= 256 * 1024 + 4096, "{s}: {len} bytes");
    }
    let sharded = read_all(&sh);
    assert_eq!(single, sharded, "sharded export holds other values");

    // The input is never overwritten: exporting into the folder that holds it is fine, but a
    // side-file name equal to the input is refused.
    let trap = dir.path().join("trap");
    std::fs::create_dir_all(&trap).expect("dir");
    let input_copy = trap.join("config.json");
    std::fs::copy(&tpk, &input_copy).expect("copy");
    let before = std::fs::read(&input_copy).expect("read");
    let r = export_safetensors(
        &ExportOptions {
            input: input_copy.clone(),
            out_dir: trap.clone(),
            dtype: ExportDtype::F16,
            max_shard_bytes: None,
        },
        &mut |_, _, _| {},
    );
    assert!(r.is_err(), "overwrote the input");
    assert_eq!(std::fs::read(&input_copy).expect("read"), before);
}

#[test]
fn python_safetensors_loads_the_export() {
    let require = std::env::var("TENPAK_REQUIRE_PY").is_ok_and(|v| v == "1");
    let dir = tempfile::tempdir().expect("tmp");
    let model = dir.path().join("m");
    write_llama_tiny(&model, Dtype::F16).expect("fixture");
    let tpk = dir.path().join("a.tpk");
    to_tpk(&model, &tpk, "pocketllm");
    let f = TpkFile::open(&tpk).expect("open");
    for (dt, shard) in [
        (ExportDtype::BF16, None),
        (ExportDtype::F16, Some(100 * 1024)),
        (ExportDtype::F32, Some(300 * 1024)),
    ] {
        let out = dir.path().join(format!("out_{dt:?}"));
        export(&tpk, &out, dt, shard);
        let exp = dir.path().join(format!("exp_{dt:?}"));
        std::fs::create_dir_all(&exp).expect("dir");
        for t in f.tensors() {
            let v = t.to_f32_vec().expect("decode");
            let bytes: Vec<u8> = v
                .iter()
                .map(|&x| match dt {
                    ExportDtype::F32 => x,
                    ExportDtype::F16 => half::f16::from_f32(x).to_f32(),
                    ExportDtype::BF16 => half::bf16::from_f32(x).to_f32(),
                })
                .flat_map(f32::to_le_bytes)
                .collect();
            std::fs::write(exp.join(format!("{}.f32", t.name())), bytes).expect("write");
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/check_export.py");
        let o = Command::new("python3")
            .arg(&script)
            .arg(&out)
            .arg(&exp)
            .output();
        let o = match o {
            Ok(o) => o,
            Err(e) => {
                assert!(!require, "python3 missing: {e}");
                println!("SKIP: python3 not found ({e})");
                return;
            }
        };
        let stdout = String::from_utf8_lossy(&o.stdout);
        if o.status.code() == Some(77) {
            assert!(!require, "TENPAK_REQUIRE_PY=1 but {stdout}");
            println!("{stdout}");
            return;
        }
        assert!(
            o.status.success(),
            "{dt:?}: {stdout}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(stdout.starts_with("OK 21 tensors"), "{stdout}");
    }
}
