//! Codecs: the stages that turn f32 weights into typed sections and back.

pub mod bits;
pub mod ggml;
pub mod int;
pub mod kernels;
pub mod lowrank;
pub mod stage;
pub mod vq;
