//! The `.tpk` container: layout, streaming writer and zero-copy reader.
//!
//! The format knows sections, not codec math: it stores typed byte ranges and a directory
//! that says which tensor uses which. What the bytes mean is [`crate::codec`]'s business.
//! `spec/tpk.md` is the normative description; this module implements it.

pub mod layout;
pub mod limits;
mod reader;
mod types;
mod writer;

pub use reader::{OpenOptions, SectionInfo, SectionView, TensorView, TpkFile};
pub use types::{CodecId, Dtype, ElemType, SectionKind};
pub use writer::{SectionId, TensorEntry, TpkWriter, WriterOptions};
