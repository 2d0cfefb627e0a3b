//! Opens arbitrary bytes as a `.tpk` file and walks everything reachable.
//! The body lives in `tenpak::format::fuzz_open` so `tests/fuzz_corpus.rs` runs the same
//! code over the committed corpus on the stable toolchain.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tenpak::format::fuzz_open(data);
});
