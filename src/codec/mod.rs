//! Codecs: the stages that turn f32 weights into typed sections and back.
//!
//! A tensor's codec is recorded in the file. The one codec of format 1.0, `staged`, decodes
//! a tensor as the sum of its stages' reconstructions; [`staged`] defines its parameters.

pub mod bits;
pub mod decode;
pub mod encode;
pub mod ggml;
pub mod int;
pub mod kernels;
pub mod lowrank;
pub mod spec;
pub mod stage;
pub mod staged;
pub mod vq;

use crate::error::{Error, Result};
use crate::format::{CodecId, TensorView};
pub use stage::{Mode, StageError};

/// Checks that a tensor's codec parameters and sections agree. The reader calls this once
/// per tensor at open, so decoders can trust section lengths afterwards.
pub fn validate(t: &TensorView<'_>) -> Result<()> {
    match t.codec() {
        CodecId::Staged => staged::validate(t).map(|_| ()),
        // A newer minor version's codec: the file opens, decoding it reports the codec.
        CodecId::Other(_) => Ok(()),
    }
}

/// The error for a tensor whose codec this version cannot decode.
pub fn unknown_codec(t: &TensorView<'_>) -> Error {
    Error::UnknownCode {
        what: "codec",
        value: t.codec().code().into(),
    }
}

/// The ggml type id of a quantized type name (`q4_k`), for codec specs. The float types
/// are raw stages, not ggml stages.
pub fn ggml_id(name: &str) -> Option<u32> {
    ggml::GgmlType::from_name(name)
        .filter(|t| t.block_size() > 1)
        .map(ggml::GgmlType::id)
}

/// The name of a ggml type id.
pub fn ggml_name(id: u32) -> String {
    ggml::GgmlType::from_id(id).map_or_else(|| format!("ggml{id}"), |t| t.name().to_string())
}
