//! The one entry point shared by the cargo-fuzz target and the stable corpus test.
//!
//! Keeping it in the library means the corpus test (`tests/fuzz_corpus.rs`, stable
//! toolchain) exercises exactly the code the fuzzer does, so every committed crash seed
//! stays a regression test even where nightly is not available.

use super::{OpenOptions, TpkFile};

/// Opens `data` as a `.tpk` file and, if it is valid, touches everything a consumer can
/// reach: every tensor view, every typed accessor of every section, the metadata and the
/// section checksums. Errors are the expected outcome for most inputs; only a panic, an
/// abort or a huge allocation is a finding.
pub fn fuzz_open(data: &[u8]) {
    for verify_checksums in [false, true] {
        let Ok(f) = TpkFile::from_bytes(data, OpenOptions { verify_checksums }) else {
            continue;
        };
        let _ = (f.version(), f.flags(), f.directory_extent(), f.len());
        let _ = f.params_blob_len();
        let _ = f.metadata_str();
        let _ = f.metadata();
        for s in f.sections() {
            let _ = (s.kind(), s.elem(), s.len_elems(), s.bytes().len());
            let _ = s.as_u8();
            let _ = s.as_i8();
            let _ = s.as_u16();
            let _ = s.as_f16();
            let _ = s.as_bf16();
            let _ = s.as_f32();
            let _ = f.section_owner(s.index());
        }
        for t in f.tensors() {
            let _ = (
                t.name(),
                t.shape(),
                t.n_elements(),
                t.source_dtype(),
                t.codec(),
            );
            let again = f.tensor(t.name()).map(|u| u.index());
            debug_assert_eq!(again, Some(t.index()), "names are unique after open");
            if let Ok(stages) = crate::codec::staged::decode_params(t.params()) {
                let _ = crate::codec::staged::expected_sections(&stages, t.shape());
            }
            for i in 0..=t.section_indices().len() {
                if let Some(s) = t.section(i) {
                    let _ = (s.as_u8(), s.as_f16(), s.as_f32());
                }
            }
            for s in t.sections() {
                let _ = s.info();
            }
        }
        let _ = f.verify();
    }
}
