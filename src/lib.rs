//! tenpak: compressed LLM weights.
//!
//! The crate is organised along the one-way data flow of the tool:
//! a source reader (`tenpak_converters`) feeds the [`codec`] stages, whose sections the
//! [`format`] writer streams into a `.tpk` file; the [`format`] reader maps a `.tpk`
//! file, validates it once and hands out zero-copy views that [`codec`] decodes.
#![deny(missing_docs)]

pub mod codec;
pub mod eval;
pub mod format;
