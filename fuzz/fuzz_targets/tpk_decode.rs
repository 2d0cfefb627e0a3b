//! Opens arbitrary bytes as a `.tpk` file and decodes every tensor of a valid file with the
//! codec layer: whole into f32, f16 and bf16 buffers, and row by row.
//! The body lives in `tenpak::fuzz::decode_all` so `tests/fuzz_corpus.rs` runs the same
//! code over the committed corpus on the stable toolchain.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tenpak::fuzz::decode_all(data);
});
