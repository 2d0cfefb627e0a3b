//! Runs the fuzz targets' entry points (`tenpak::format::fuzz_open` and
//! `tenpak::fuzz::decode_all`) over every committed input on the stable toolchain: the
//! spec's test vectors, `fuzz/corpus-seed/tpk_open/*` and `fuzz/corpus-seed/tpk_decode/*`.
//! A crash the fuzzer finds is committed as a seed and stays a regression test here.
//!
//! `TENPAK_BLESS=1` regenerates the seeds: a copy of each vector plus deterministic mutants
//! whose header, directory and trailer CRCs are repaired, so they reach the deep checks; and
//! for the decode target, small files written by the real encoder with every preset family
//! and ggml type, plus mutants of their directory and of their section bytes.

use std::path::{Path, PathBuf};

use tenpak::codec::encode::encode_tensor;
use tenpak::codec::{spec, staged};
use tenpak::convert::policy;
use tenpak::format::{CodecId, Dtype, OpenOptions, TensorEntry};
use tenpak::{Error, TpkFile, TpkWriter};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files_in(dir: &Path, ext: Option<&str>) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("folder entry").path())
        .filter(|p| p.is_file())
        .filter(|p| ext.is_none_or(|x| p.extension().is_some_and(|e| e == x)))
        .collect();
    v.sort();
    v
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

fn repair_crcs(m: &mut [u8]) {
    if m.len() < 128 {
        return;
    }
    let c = crc32fast::hash(&m[..60]);
    m[60..64].copy_from_slice(&c.to_le_bytes());
    let t = m.len() - 64;
    let rd = |o: usize| u64::from_le_bytes(m[o..o + 8].try_into().expect("8 bytes"));
    let (d, l) = (rd(t), rd(t + 8));
    if d.checked_add(l) == Some(t as u64) {
        let c = crc32fast::hash(&m[d as usize..t]);
        m[t + 16..t + 20].copy_from_slice(&c.to_le_bytes());
    }
    let c = crc32fast::hash(&m[t..t + 52]);
    m[t + 52..t + 56].copy_from_slice(&c.to_le_bytes());
}

/// A mutant that changes one byte of the directory (where most checks live), then repairs
/// the checksums.
fn mutant(rng: &mut Rng, b: &[u8]) -> Vec<u8> {
    let mut m = b.to_vec();
    let t = m.len() - 64;
    let d = u64::from_le_bytes(m[t..t + 8].try_into().expect("8 bytes")) as usize;
    let at = d + rng.below(t - d);
    m[at] = match rng.below(3) {
        0 => m[at] ^ (1 << rng.below(8)),
        1 => 0xff,
        _ => rng.next() as u8,
    };
    repair_crcs(&mut m);
    m
}

/// A mutant that changes one to four bytes anywhere between the header and the trailer
/// (section bytes included), then repairs the checksums.
fn mutant_any(rng: &mut Rng, b: &[u8]) -> Vec<u8> {
    let mut m = b.to_vec();
    let t = m.len() - 64;
    for _ in 0..1 + rng.below(4) {
        let at = 64 + rng.below(t - 64);
        m[at] = match rng.below(4) {
            0 => m[at] ^ (1 << rng.below(8)),
            1 => 0xff,
            2 => 0,
            _ => rng.next() as u8,
        };
    }
    repair_crcs(&mut m);
    m
}

/// Stage strings the decode seeds are written with: the preset families (int, vq, low-rank,
/// raw) and every quantized ggml type.
const DECODE_SPECS: &[&str] = &[
    "int4_g32",
    "int4_opt",
    "int8",
    "int4_residual",
    "pocketllm",
    "tenpak_x",
    "int:b=2,g=16,sym",
    "int:b=3,g=8",
    "vq:d=2,k=16",
    "lowrank:r=4",
    "lowrank:r=2+int:b=4,g=32",
    "f16",
    "bf16",
    "f32",
    "q4_0",
    "q4_1",
    "q5_0",
    "q5_1",
    "q8_0",
    "q2_k",
    "q3_k",
    "q4_k",
    "q5_k",
    "q6_k",
    "iq4_nl",
    "iq4_xs",
];

/// One tensor of `shape` (N(0, 0.05^2)) encoded with `codec` through the real pipeline.
fn encoded_file(codec: &str, shape: &[u64], seed: u64) -> Vec<u8> {
    let n: u64 = shape.iter().product();
    let mut g = tenpak_fixtures::Gaussian::new(seed);
    let x: Vec<f32> = (0..n).map(|_| (g.sample() * 0.05) as f32).collect();
    let recipe = spec::parse(codec).expect("spec parses");
    let (stages, _) = policy::fit(&recipe, shape);
    let enc = encode_tensor("w", &x, shape, &stages).expect("encodes");
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("s.tpk");
    let mut w = TpkWriter::create(&path).expect("writer");
    let ids = enc
        .sections
        .iter()
        .map(|s| w.add_section(s.kind, s.elem, &s.bytes).expect("section"))
        .collect();
    w.add_tensor(TensorEntry {
        name: "w".into(),
        shape: shape.to_vec(),
        source_dtype: Dtype::F32,
        codec: CodecId::Staged,
        params: staged::encode_params(&enc.stages),
        sections: ids,
    })
    .expect("tensor");
    w.finish().expect("finish");
    std::fs::read(&path).expect("read back")
}

#[test]
fn decode_corpus_never_panics() {
    let seeds_dir = root().join("fuzz/corpus-seed/tpk_decode");
    if std::env::var_os("TENPAK_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(&seeds_dir).expect("seed folder");
        let mut rng = Rng(0x6465_636f_6465_7a7a);
        for (i, codec) in DECODE_SPECS.iter().enumerate() {
            let shape: &[u64] = if i % 5 == 4 { &[2, 3, 256] } else { &[5, 256] };
            let b = encoded_file(codec, shape, 0x5eed + i as u64);
            let stem: String = codec
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            std::fs::write(seeds_dir.join(format!("enc-{stem}")), &b).expect("seed");
            for k in 0..2 {
                let m = mutant(&mut rng, &b);
                std::fs::write(seeds_dir.join(format!("mutdir-{stem}-{k}")), m).expect("seed");
            }
            for k in 0..3 {
                let m = mutant_any(&mut rng, &b);
                std::fs::write(seeds_dir.join(format!("mutany-{stem}-{k}")), m).expect("seed");
            }
        }
    }
    let seeds = files_in(&seeds_dir, None);
    assert!(
        seeds.len() >= DECODE_SPECS.len(),
        "decode seeds are committed"
    );
    let vectors = files_in(&root().join("spec/vectors"), Some("tpk"));
    let open_seeds = files_in(&root().join("fuzz/corpus-seed/tpk_open"), None);
    for p in vectors.iter().chain(&open_seeds).chain(&seeds) {
        let b = std::fs::read(p).expect("input readable");
        tenpak::fuzz::decode_all(&b);
    }
    // Every unmutated seed opens and decodes: the target reaches the codec kernels.
    for p in seeds.iter().filter(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("enc-"))
    }) {
        let b = std::fs::read(p).expect("seed readable");
        let f = TpkFile::from_bytes(&b, OpenOptions::default())
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        for t in f.tensors() {
            t.to_f32_vec()
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        }
    }
}

/// A low-rank tensor stores `rank * (rows + cols)` values for `rows * cols` outputs: 32 MiB
/// of sections here declare 2^46 elements (256 TiB of f32). Decoding it whole must be a
/// typed error, not an allocation abort.
#[test]
fn huge_lowrank_shape_is_out_of_memory() {
    let shape = [1u64 << 23, 1 << 23];
    let stage = staged::Stage::LowRank {
        rank: 1,
        weighted: false,
    };
    let specs = stage
        .sections(staged::Matrix::of_shape(&shape))
        .expect("sections");
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("huge.tpk");
    let mut w = TpkWriter::create(&path).expect("writer");
    let ids = specs
        .iter()
        .map(|s| {
            let bytes = vec![0u8; usize::try_from(s.len).expect("fits")];
            w.add_section(s.kind, s.elem, &bytes).expect("section")
        })
        .collect();
    w.add_tensor(TensorEntry {
        name: "huge".into(),
        shape: shape.to_vec(),
        source_dtype: Dtype::F16,
        codec: CodecId::Staged,
        params: staged::encode_params(&[stage]),
        sections: ids,
    })
    .expect("tensor");
    w.finish().expect("finish");
    let f = TpkFile::open(&path).expect("a valid file");
    let t = f.tensor("huge").expect("tensor");
    assert_eq!(t.n_elements(), 1 << 46);
    match t.to_f32_vec() {
        Err(Error::OutOfMemory { bytes, .. }) => assert_eq!(bytes, 1 << 48),
        other => panic!("expected OutOfMemory, got {:?}", other.map(|v| v.len())),
    }
    // Rows still decode on their own.
    let mut row = vec![0f32; 1 << 23];
    t.dequantize_rows_into(7..8, &mut row).expect("one row");
    // The fuzz entry skips it rather than allocating.
    let b = std::fs::read(&path).expect("read");
    tenpak::fuzz::decode_all(&b);
}

#[test]
fn corpus_never_panics() {
    let seeds_dir = root().join("fuzz/corpus-seed/tpk_open");
    let vectors = files_in(&root().join("spec/vectors"), Some("tpk"));
    assert!(vectors.len() >= 6, "the spec's vectors are present");
    if std::env::var_os("TENPAK_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(&seeds_dir).expect("seed folder");
        let mut rng = Rng(0x7470_6b5f_6675_7a7a);
        for v in &vectors {
            let b = std::fs::read(v).expect("vector readable");
            let stem = v.file_stem().expect("name").to_string_lossy().into_owned();
            std::fs::write(seeds_dir.join(format!("vector-{stem}")), &b).expect("seed");
            for k in 0..4 {
                let m = mutant(&mut rng, &b);
                std::fs::write(seeds_dir.join(format!("mutant-{stem}-{k}")), m).expect("seed");
            }
        }
    }
    let seeds = files_in(&seeds_dir, None);
    assert!(seeds.len() >= vectors.len(), "seeds are committed");
    for p in vectors.iter().chain(&seeds) {
        let b = std::fs::read(p).expect("input readable");
        tenpak::format::fuzz_open(&b);
    }
    // The vectors themselves are valid, with every section checksum right.
    for v in &vectors {
        let b = std::fs::read(v).expect("vector readable");
        TpkFile::from_bytes(
            &b,
            OpenOptions {
                verify_checksums: true,
            },
        )
        .unwrap_or_else(|e| panic!("{}: {e}", v.display()));
    }
}

#[test]
fn fuzz_open_survives_edge_inputs() {
    // Sizes around the header + trailer minimum, all zeros and all ones.
    for n in [0usize, 1, 63, 64, 127, 128, 129, 192, 4096] {
        tenpak::format::fuzz_open(&vec![0u8; n]);
        tenpak::format::fuzz_open(&vec![0xffu8; n]);
    }
}
