//! The limits every reader and writer enforces (spec section "Limits").
//!
//! They bound what a hostile file can make a reader allocate or loop over, while staying far
//! above any real model: a 1T-parameter model has a few thousand tensors.

/// Largest directory, in bytes.
pub const MAX_DIRECTORY: u64 = 256 << 20;
/// Largest metadata section, in bytes (tokenizers of big vocabularies are a few MB).
pub const MAX_METADATA: u64 = 64 << 20;
/// Most tensors in a file.
pub const MAX_TENSORS: u64 = 1 << 20;
/// Most sections in a file.
pub const MAX_SECTIONS: u64 = 1 << 22;
/// Most sections one tensor may list.
pub const MAX_SECTIONS_PER_TENSOR: u64 = 64;
/// Longest tensor name, in bytes.
pub const MAX_NAME_LEN: u64 = 1024;
/// Highest tensor rank.
pub const MAX_RANK: u64 = 8;
/// Most elements in one tensor (2^48).
pub const MAX_ELEMENTS: u64 = 1 << 48;
/// Longest codec parameter header of one tensor, in bytes.
pub const MAX_PARAMS_LEN: u64 = 4096;

/// The number of elements of `shape`, or `None` if it overflows or passes [`MAX_ELEMENTS`].
/// A rank-0 tensor (a scalar) has one element.
pub fn element_count(shape: &[u64]) -> Option<u64> {
    shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= MAX_ELEMENTS)
}
