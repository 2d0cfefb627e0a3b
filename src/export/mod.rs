//! Exports of `.tpk` files to other runtimes' formats.

pub mod gguf;
