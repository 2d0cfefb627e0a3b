//! Parses arbitrary bytes as a GGUF file and, if they parse, touches every value, every
//! tensor byte range and the metadata importers. The body lives in
//! `tenpak_converters::gguf::fuzz_parse` so `converters/tests/gguf_fuzz_corpus.rs` runs the
//! same code over the committed corpus on the stable toolchain.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tenpak_converters::gguf::fuzz_parse(data);
});
