//! Types shared by the composable codec stages (`int`, `vq`, `lowrank`).
//!
//! Stages are summed on decode (`out = stage1; out += stage2; ...`), so every decoder
//! takes a [`Mode`] and every stage reports bad parameters or buffer sizes through the
//! one [`StageError`] type instead of panicking.

use thiserror::Error;

/// How a decoder writes into its output, so residual stages can be stacked without
/// a temporary buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Overwrite `out` (the first stage of a tensor).
    Set,
    /// Add into `out` (every later stage: `out += stage`): the stage's value is computed
    /// exactly as in `Set`, then added with one f32 addition.
    Add,
}

impl Mode {
    /// Writes `src` into `dst` (same length): copies it, or adds it with one f32 addition
    /// per value.
    pub fn write(self, dst: &mut [f32], src: &[f32]) {
        match self {
            Mode::Set => dst.copy_from_slice(src),
            Mode::Add => dst.iter_mut().zip(src).for_each(|(d, s)| *d += s),
        }
    }
}

/// Why a stage refused to encode or decode: parameters outside the documented
/// ranges, sizes that overflow, or buffers whose lengths disagree with the layout.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StageError {
    /// A parameter is outside its documented range.
    #[error("invalid stage parameter: {0}")]
    InvalidParams(&'static str),
    /// A size computation overflowed `usize`.
    #[error("stage size overflows")]
    Overflow,
    /// A buffer has a different length than the layout requires.
    #[error("{what}: expected {expected} elements, got {got}")]
    Length {
        /// Which buffer.
        what: &'static str,
        /// Length required by the layout.
        expected: usize,
        /// Length supplied.
        got: usize,
    },
    /// The requested row range lies outside the tensor.
    #[error("row range {start}..{end} outside 0..{rows}")]
    RowRange {
        /// Start of the requested range.
        start: usize,
        /// End of the requested range.
        end: usize,
        /// Rows in the tensor.
        rows: usize,
    },
    /// A stored vq index points past the end of the codebook.
    #[error("vq index outside the codebook")]
    IndexOutOfRange,
    /// An input value is NaN or infinite (the encoders need finite weights).
    #[error("non-finite input value")]
    NonFinite,
}

/// Checks that a buffer has exactly the length the layout demands.
pub(crate) fn check_len(what: &'static str, got: usize, expected: usize) -> Result<(), StageError> {
    if got == expected {
        Ok(())
    } else {
        Err(StageError::Length {
            what,
            expected,
            got,
        })
    }
}

/// Checks that `rows` is a valid sub-range of `0..total`.
pub(crate) fn check_rows(rows: &std::ops::Range<usize>, total: usize) -> Result<(), StageError> {
    if rows.start <= rows.end && rows.end <= total {
        Ok(())
    } else {
        Err(StageError::RowRange {
            start: rows.start,
            end: rows.end,
            rows: total,
        })
    }
}

/// Deterministic PRNG (splitmix64) so every encoder gives the same bytes on every
/// machine without depending on the `rand` crate's versioned algorithms.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// Seeds the generator; equal seeds give equal streams forever.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform f64 in [0, 1) with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal sample (Box-Muller, one value per call for simplicity).
    pub fn next_gaussian(&mut self) -> f64 {
        // 1 - u is in (0, 1], so the log is finite.
        let u1 = 1.0 - self.next_f64();
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}
