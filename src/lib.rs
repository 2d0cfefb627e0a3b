//! tenpak: compressed LLM weights.
//!
//! The crate is organised along the one-way data flow of the tool:
//! a source reader (`tenpak_converters`) feeds the [`codec`] stages, whose sections the
//! [`format`](mod@format) writer streams into a `.tpk` file; the [`format`](mod@format) reader maps a `.tpk`
//! file, validates it once and hands out zero-copy views that [`codec`] decodes.
#![deny(missing_docs)]

#[cfg(target_endian = "big")]
compile_error!("tenpak's zero-copy views assume a little-endian host");

pub mod codec;
pub mod convert;
mod error;
pub mod eval;
pub mod export;
pub mod format;
pub mod fuzz;
pub mod import;
pub mod inspect;

pub use error::{Error, Result};
pub use format::{TensorView, TpkFile, TpkWriter};
