//! Runs the fuzz target's entry point (`tenpak::format::fuzz_open`) over every committed
//! input on the stable toolchain: the spec's test vectors and `fuzz/corpus-seed/tpk_open/*`.
//! A crash the fuzzer finds is committed as a seed and stays a regression test here.
//!
//! `TENPAK_BLESS=1` regenerates the seeds: a copy of each vector plus deterministic mutants
//! whose header, directory and trailer CRCs are repaired, so they reach the deep checks.

use std::path::{Path, PathBuf};

use tenpak::format::OpenOptions;
use tenpak::TpkFile;

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
