//! Runs the `gguf_open` fuzz target's entry point (`tenpak_converters::gguf::fuzz_parse`)
//! over every committed seed in `fuzz/corpus-seed/gguf_open/` on the stable toolchain.
//!
//! `TENPAK_BLESS=1` regenerates the seeds: small GGUF files written by `GgufWriter` (typed
//! metadata of every kind, llama keys, f32/f16/q8_0/q4_k tensors) and deterministic mutants
//! of them (one to four bytes changed, or a length field set to an extreme value).

use std::path::{Path, PathBuf};

use tenpak_converters::gguf::{fuzz_parse, GgufArray, GgufTensorSpec, GgufValue, GgufWriter};

fn seeds_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus-seed/gguf_open")
}

/// xorshift64*, fixed seed: the same mutants on every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn kv(k: &str, v: GgufValue) -> (String, GgufValue) {
    (k.to_string(), v)
}

/// A small GGUF file: metadata plus `tensors` as (name, dims, ggml type, bytes per block,
/// elements per block).
fn written(extra: bool, tensors: &[(&str, Vec<u64>, u32, u64, u64)]) -> Vec<u8> {
    let mut meta = vec![
        kv("general.architecture", GgufValue::str("llama")),
        kv("general.alignment", GgufValue::U32(32)),
        kv("llama.context_length", GgufValue::U32(128)),
        kv("llama.embedding_length", GgufValue::U32(64)),
        kv("llama.block_count", GgufValue::U32(1)),
        kv("llama.attention.head_count", GgufValue::U32(2)),
        kv("tokenizer.ggml.model", GgufValue::str("gpt2")),
        kv(
            "tokenizer.ggml.tokens",
            GgufValue::Array(GgufArray::String(vec!["a".into(), "b".into(), "ab".into()])),
        ),
        kv(
            "tokenizer.ggml.merges",
            GgufValue::Array(GgufArray::String(vec!["a b".into()])),
        ),
    ];
    if extra {
        meta.extend([
            kv("t.i8", GgufValue::I8(-100)),
            kv("t.u64", GgufValue::U64(u64::MAX)),
            kv("t.f64", GgufValue::F64(-0.1)),
            kv("t.bool", GgufValue::Bool(true)),
            kv("t.a.f32", GgufValue::Array(GgufArray::F32(vec![0.5, -0.0]))),
            kv(
                "t.a.i64",
                GgufValue::Array(GgufArray::I64(vec![-(1 << 40)])),
            ),
        ]);
    }
    let specs: Vec<GgufTensorSpec> = tensors
        .iter()
        .map(|(name, dims, ty, bpb, epb)| GgufTensorSpec {
            name: (*name).to_string(),
            dims: dims.clone(),
            ggml_type: *ty,
            n_bytes: dims.iter().product::<u64>() / epb * bpb,
        })
        .collect();
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("s.gguf");
    let mut w = GgufWriter::create(&path, &meta, &specs, &[]).expect("writer");
    for (i, s) in specs.iter().enumerate() {
        let data: Vec<u8> = (0..s.n_bytes)
            .map(|j| (j as usize * 31 + i) as u8)
            .collect();
        w.write_tensor(&s.name, &data).expect("tensor");
    }
    w.finish().expect("finish");
    std::fs::read(&path).expect("read back")
}

fn mutant(rng: &mut Rng, b: &[u8]) -> Vec<u8> {
    let mut m = b.to_vec();
    if rng.below(3) == 0 && m.len() > 32 {
        // An extreme length or count field at a random 8-byte position.
        let at = 8 + rng.below(m.len() - 16);
        let v = [u64::MAX, 1 << 40, 1 << 32, 0xffff_ffff, 0][rng.below(5)];
        m[at..at + 8].copy_from_slice(&v.to_le_bytes());
    } else {
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(m.len());
            m[at] = match rng.below(3) {
                0 => m[at] ^ (1 << rng.below(8)),
                1 => 0xff,
                _ => rng.next() as u8,
            };
        }
    }
    m
}

#[test]
fn gguf_corpus_never_panics() {
    let dir = seeds_dir();
    if std::env::var_os("TENPAK_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(&dir).expect("seed folder");
        // (name, dims in GGUF order, type, bytes per block, elements per block)
        let files: Vec<(&str, Vec<u8>)> = vec![
            ("meta-only", written(true, &[])),
            (
                "f32",
                written(false, &[("token_embd.weight", vec![64, 3], 0, 4, 1)]),
            ),
            (
                "f16-q8_0",
                written(
                    true,
                    &[
                        ("blk.0.attn_q.weight", vec![64, 4], 1, 2, 1),
                        ("blk.0.attn_k.weight", vec![64, 2], 8, 34, 32),
                    ],
                ),
            ),
            (
                "q4_k",
                written(false, &[("output.weight", vec![256, 2], 12, 144, 256)]),
            ),
        ];
        let mut rng = Rng(0x6767_7566_7a7a);
        for (stem, b) in &files {
            std::fs::write(dir.join(format!("seed-{stem}")), b).expect("seed");
            for k in 0..6 {
                let m = mutant(&mut rng, b);
                std::fs::write(dir.join(format!("mutant-{stem}-{k}")), m).expect("seed");
            }
        }
    }
    let mut seeds: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 4, "seeds are committed");
    for p in &seeds {
        let b = std::fs::read(p).expect("seed readable");
        fuzz_parse(&b);
        if p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("seed-"))
        {
            tenpak_converters::gguf::GgufFile::parse(&b)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        }
    }
}
