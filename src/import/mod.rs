//! Imports of other runtimes' formats into `.tpk` files or plain safetensors.

pub mod gguf;
