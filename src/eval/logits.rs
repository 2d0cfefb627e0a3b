//! Saved baseline logits: run the reference model once, then compare any number of compressed
//! models against the file instead of re-running the reference forward pass each time
//! (llama.cpp's `--kl-divergence-base` does the same). The logits are stored as exact f32, so
//! every figure is bit-identical to a live baseline.
//!
//! Layout (little-endian): a 64-byte [`LogitsHeader`], then for each window its scored rows
//! (positions `first .. ctx - 1`), each `vocab` f32 values. The header pins down everything that
//! decides which logits a run needs (ctx, first scored position, window count, vocabulary and a
//! CRC32 of the window tokens after BOS substitution), so a file made for another text, context
//! or tokenizer is refused rather than silently compared.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use zerocopy::little_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// First bytes of a saved-logits file (a high-bit byte and a newline, as the .tpk magic has).
pub const LOGITS_MAGIC: [u8; 8] = *b"\x89TPKLGT\n";
/// The one version this code reads and writes.
pub const LOGITS_VERSION: u32 = 1;
/// Largest vocabulary accepted in a header.
pub const MAX_LOGITS_VOCAB: u32 = 1 << 21;
/// Largest window count accepted in a header.
pub const MAX_LOGITS_WINDOWS: u32 = 1 << 20;
/// Largest window length accepted in a header (the forward pass's own limit).
pub const MAX_LOGITS_CTX: u32 = super::model::MAX_SEQ as u32;

/// The fixed header at offset 0.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct LogitsHeader {
    /// [`LOGITS_MAGIC`].
    pub magic: [u8; 8],
    /// [`LOGITS_VERSION`].
    pub version: U32,
    /// Window length in tokens.
    pub ctx: U32,
    /// First scored position of each window (ctx / 2).
    pub first: U32,
    /// Rows stored per window: ctx - 1 - first.
    pub rows: U32,
    /// Windows stored.
    pub n_windows: U32,
    /// Logits per row.
    pub vocab: U32,
    /// CRC32 of the windows' tokens (u32 little-endian, BOS already written over token 0).
    pub tokens_crc: U32,
    /// Zero.
    pub reserved: [u8; 24],
    /// CRC32 of header bytes 0..60.
    pub crc: U32,
}

const _: () = assert!(std::mem::size_of::<LogitsHeader>() == 64);

/// What a run needs from a saved-logits file; compared field by field with its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogitsShape {
    /// Window length.
    pub ctx: u32,
    /// First scored position.
    pub first: u32,
    /// Windows.
    pub n_windows: u32,
    /// Vocabulary size.
    pub vocab: u32,
    /// CRC32 of the window tokens.
    pub tokens_crc: u32,
}

impl LogitsShape {
    fn rows(&self) -> u32 {
        self.ctx.saturating_sub(1).saturating_sub(self.first)
    }

    fn header(&self) -> LogitsHeader {
        let mut h = LogitsHeader {
            magic: LOGITS_MAGIC,
            version: LOGITS_VERSION.into(),
            ctx: self.ctx.into(),
            first: self.first.into(),
            rows: self.rows().into(),
            n_windows: self.n_windows.into(),
            vocab: self.vocab.into(),
            tokens_crc: self.tokens_crc.into(),
            reserved: [0; 24],
            crc: 0.into(),
        };
        h.crc = crc32fast::hash(&h.as_bytes()[..60]).into();
        h
    }

    /// Values per window (rows * vocab), checked.
    fn window_values(&self) -> Option<usize> {
        (self.rows() as usize).checked_mul(self.vocab as usize)
    }
}

/// Why a saved-logits file was refused.
#[derive(Debug, thiserror::Error)]
pub enum LogitsError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is shorter than its header.
    #[error("{path}: {len} bytes, shorter than the 64-byte header")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: u64,
    },
    /// The first eight bytes are not [`LOGITS_MAGIC`].
    #[error("{path}: not a tpk saved-logits file (bad magic)")]
    BadMagic {
        /// The file.
        path: PathBuf,
    },
    /// The header's CRC does not match its bytes.
    #[error("{path}: header checksum mismatch")]
    HeaderCrc {
        /// The file.
        path: PathBuf,
    },
    /// A version this code does not read.
    #[error("{path}: saved-logits version {version}, this tpk reads {LOGITS_VERSION}")]
    Version {
        /// The file.
        path: PathBuf,
        /// The file's version.
        version: u32,
    },
    /// A header field is outside the stated limits or inconsistent with the others.
    #[error("{path}: header field {field} = {value} is invalid")]
    BadField {
        /// The file.
        path: PathBuf,
        /// Which field.
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// The file's length is not what its header implies.
    #[error("{path}: {len} bytes, the header implies {expected}")]
    Size {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: u64,
        /// Header + windows * rows * vocab * 4.
        expected: u64,
    },
    /// The file was made for another run (text, context, window count, tokenizer or vocabulary).
    #[error(
        "{path}: saved for {field} = {file}, this run has {run} (re-save the baseline logits)"
    )]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// Which field differs.
        field: &'static str,
        /// The file's value.
        file: u64,
        /// This run's value.
        run: u64,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LogitsError + '_ {
    move |source| LogitsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads a saved-logits file window by window, in order. Holds one window in memory.
pub struct LogitsReader {
    path: PathBuf,
    file: File,
    shape: LogitsShape,
    next: u32,
    buf: Vec<u8>,
}

impl LogitsReader {
    /// Opens `path` and validates its header and length (with checked arithmetic) against the
    /// stated limits. Nothing is allocated until the file is known to hold the data.
    pub fn open(path: &Path) -> Result<Self, LogitsError> {
        let mut file = File::open(path).map_err(io(path))?;
        let len = file.metadata().map_err(io(path))?.len();
        let p = || path.to_path_buf();
        if len < 64 {
            return Err(LogitsError::Truncated { path: p(), len });
        }
        let mut raw = [0u8; 64];
        file.read_exact(&mut raw).map_err(io(path))?;
        let h = LogitsHeader::read_from_bytes(&raw).expect("64 bytes for a 64-byte header");
        if h.magic != LOGITS_MAGIC {
            return Err(LogitsError::BadMagic { path: p() });
        }
        if h.crc.get() != crc32fast::hash(&raw[..60]) {
            return Err(LogitsError::HeaderCrc { path: p() });
        }
        if h.version.get() != LOGITS_VERSION {
            return Err(LogitsError::Version {
                path: p(),
                version: h.version.get(),
            });
        }
        let bad = |field, value: u32| LogitsError::BadField {
            path: p(),
            field,
            value: u64::from(value),
        };
        let (ctx, first) = (h.ctx.get(), h.first.get());
        if !(4..=MAX_LOGITS_CTX).contains(&ctx) {
            return Err(bad("ctx", ctx));
        }
        if first >= ctx - 1 {
            return Err(bad("first", first));
        }
        if h.rows.get() != ctx - 1 - first {
            return Err(bad("rows", h.rows.get()));
        }
        if h.n_windows.get() == 0 || h.n_windows.get() > MAX_LOGITS_WINDOWS {
            return Err(bad("n_windows", h.n_windows.get()));
        }
        if h.vocab.get() == 0 || h.vocab.get() > MAX_LOGITS_VOCAB {
            return Err(bad("vocab", h.vocab.get()));
        }
        if h.reserved != [0; 24] {
            return Err(bad("reserved", 0));
        }
        let shape = LogitsShape {
            ctx,
            first,
            n_windows: h.n_windows.get(),
            vocab: h.vocab.get(),
            tokens_crc: h.tokens_crc.get(),
        };
        // Bounded by the limits above: < 2^15 * 2^21 * 2^20 * 4 < 2^63.
        let expected = u64::from(shape.rows())
            .checked_mul(u64::from(shape.vocab))
            .and_then(|v| v.checked_mul(u64::from(shape.n_windows)))
            .and_then(|v| v.checked_mul(4))
            .and_then(|v| v.checked_add(64))
            .ok_or(LogitsError::Size {
                path: p(),
                len,
                expected: u64::MAX,
            })?;
        if len != expected {
            return Err(LogitsError::Size {
                path: p(),
                len,
                expected,
            });
        }
        Ok(Self {
            path: p(),
            file,
            shape,
            next: 0,
            buf: Vec::new(),
        })
    }

    /// The header's fields.
    pub fn shape(&self) -> LogitsShape {
        self.shape
    }

    /// Refuses the file unless it was saved for exactly this run (same ctx, scored positions,
    /// vocabulary, window count and window tokens).
    pub fn check(&self, run: &LogitsShape) -> Result<(), LogitsError> {
        let f = &self.shape;
        let mism = |field, file: u32, run: u32| LogitsError::Mismatch {
            path: self.path.clone(),
            field,
            file: u64::from(file),
            run: u64::from(run),
        };
        if f.ctx != run.ctx {
            return Err(mism("ctx", f.ctx, run.ctx));
        }
        if f.first != run.first {
            return Err(mism("first scored position", f.first, run.first));
        }
        if f.vocab != run.vocab {
            return Err(mism("vocab", f.vocab, run.vocab));
        }
        if f.n_windows != run.n_windows {
            return Err(mism("windows", f.n_windows, run.n_windows));
        }
        if f.tokens_crc != run.tokens_crc {
            return Err(mism("tokens CRC32", f.tokens_crc, run.tokens_crc));
        }
        Ok(())
    }

    /// The next window's rows, `rows * vocab` values.
    pub fn next_window(&mut self) -> Result<Vec<f32>, LogitsError> {
        let n = self
            .shape
            .window_values()
            .expect("validated at open: rows * vocab fits the file");
        if self.next >= self.shape.n_windows {
            return Err(LogitsError::BadField {
                path: self.path.clone(),
                field: "n_windows",
                value: u64::from(self.shape.n_windows),
            });
        }
        self.buf.resize(n * 4, 0);
        self.file
            .read_exact(&mut self.buf)
            .map_err(io(&self.path))?;
        self.next += 1;
        Ok(self
            .buf
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }
}

/// Writes a saved-logits file: to a temporary file beside the target, renamed on `finish`.
pub struct LogitsWriter {
    target: PathBuf,
    tmp: Option<tempfile::NamedTempFile>,
    out: BufWriter<File>,
    shape: LogitsShape,
    written: u32,
}

impl LogitsWriter {
    /// Starts a file for `shape`. `target` must not be an input of the run (the CLI checks).
    pub fn create(target: &Path, shape: LogitsShape) -> Result<Self, LogitsError> {
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let tmp = tempfile::Builder::new()
            .prefix(".tpk-logits-")
            .tempfile_in(&dir)
            .map_err(io(target))?;
        let file = tmp.reopen().map_err(io(target))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(shape.header().as_bytes())
            .map_err(io(target))?;
        Ok(Self {
            target: target.to_path_buf(),
            tmp: Some(tmp),
            out,
            shape,
            written: 0,
        })
    }

    /// Appends one window's scored rows (`rows * vocab` values, in order).
    pub fn push_window(&mut self, rows: &[f32]) -> Result<(), LogitsError> {
        let n = self.shape.window_values().unwrap_or(usize::MAX);
        if rows.len() != n || self.written >= self.shape.n_windows {
            return Err(LogitsError::BadField {
                path: self.target.clone(),
                field: "window length",
                value: rows.len() as u64,
            });
        }
        let mut bytes = Vec::with_capacity(rows.len() * 4);
        for x in rows {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        self.out.write_all(&bytes).map_err(io(&self.target))?;
        self.written += 1;
        Ok(())
    }

    /// Flushes, syncs and renames the file into place; refuses an incomplete file.
    pub fn finish(mut self) -> Result<(), LogitsError> {
        if self.written != self.shape.n_windows {
            return Err(LogitsError::BadField {
                path: self.target.clone(),
                field: "windows written",
                value: u64::from(self.written),
            });
        }
        self.out.flush().map_err(io(&self.target))?;
        self.out.get_ref().sync_all().map_err(io(&self.target))?;
        let tmp = self.tmp.take().expect("finish runs once");
        tmp.persist(&self.target)
            .map_err(|e| io(&self.target)(e.error))?;
        Ok(())
    }
}

/// CRC32 of the tokens of windows `0..n_windows` of length `ctx`, BOS written over token 0.
pub fn windows_crc(tokens: &[u32], ctx: usize, n_windows: usize, bos: Option<u32>) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for w in 0..n_windows {
        for (i, &t) in tokens[w * ctx..(w + 1) * ctx].iter().enumerate() {
            let t = match (i, bos) {
                (0, Some(b)) => b,
                _ => t,
            };
            h.update(&t.to_le_bytes());
        }
    }
    h.finalize()
}
