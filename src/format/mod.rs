//! The `.tpk` container: layout, streaming writer and zero-copy reader.
//!
//! The format knows sections, not codec math: it stores typed byte ranges and a directory
//! that says which tensor uses which. What the bytes mean is [`crate::codec`]'s business.
//! `spec/tpk.md` is the normative description; this module implements it.

mod fuzz;
pub mod layout;
pub mod limits;
mod reader;
mod types;
mod writer;

pub use reader::{OpenOptions, SectionInfo, SectionView, TensorView, TpkFile};
pub use types::{CodecId, Dtype, ElemType, SectionKind};
pub use writer::{SectionId, TensorEntry, TpkWriter, WriterOptions};

/// Opens arbitrary bytes as a `.tpk` file and walks everything reachable, for the fuzz
/// target and the stable corpus test; it must never panic, whatever `data` holds.
#[doc(hidden)]
pub fn fuzz_open(data: &[u8]) {
    fuzz::fuzz_open(data)
}
