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

/// The ggml type id of a lower-case type name (`q4_k`), for codec specs.
pub fn ggml_id(name: &str) -> Option<u32> {
    // TEMPORARY until the ggml module lands.
    const T: &[(&str, u32)] = &[
        ("q4_0", 2),
        ("q4_1", 3),
        ("q5_0", 6),
        ("q5_1", 7),
        ("q8_0", 8),
        ("q2_k", 10),
        ("q3_k", 11),
        ("q4_k", 12),
        ("q5_k", 13),
        ("q6_k", 14),
        ("iq4_nl", 20),
        ("iq4_xs", 23),
    ];
    T.iter().find(|(n, _)| *n == name).map(|(_, i)| *i)
}

/// The name of a ggml type id.
pub fn ggml_name(id: u32) -> String {
    const T: &[(&str, u32)] = &[
        ("q4_0", 2),
        ("q4_1", 3),
        ("q5_0", 6),
        ("q5_1", 7),
        ("q8_0", 8),
        ("q2_k", 10),
        ("q3_k", 11),
        ("q4_k", 12),
        ("q5_k", 13),
        ("q6_k", 14),
        ("iq4_nl", 20),
        ("iq4_xs", 23),
    ];
    T.iter()
        .find(|(_, i)| *i == id)
        .map_or_else(|| format!("ggml{id}"), |(n, _)| n.to_string())
}
