//! Codecs: the stages that turn f32 weights into typed sections and back.
//!
//! A tensor's codec is recorded in the file. The one codec of format 1.0, `staged`, decodes
//! a tensor as the sum of its stages' reconstructions; [`staged`] defines its parameters.

pub mod ggml;
pub mod int;
pub mod lowrank;
pub mod staged;
pub mod vq;

use crate::error::{Error, Result};
use crate::format::{CodecId, TensorView};

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
