//! Codecs: the stages that turn f32 weights into typed sections and back.

pub mod ggml;
pub mod int;
pub mod lowrank;
pub mod vq;
