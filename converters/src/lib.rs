//! Foreign weight formats for tenpak.
//!
//! This crate reads and writes safetensors and GGUF containers. It moves bytes and
//! metadata only: it knows nothing of `.tpk` and nothing of codec math, so the
//! `tenpak` crate can depend on it without a cycle.
#![deny(missing_docs)]

pub mod gguf;
pub mod safetensors;

pub use safetensors::{SafetensorsError, SafetensorsModel, SafetensorsWriter};
