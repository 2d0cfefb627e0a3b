//! Streaming `.tpk` writer.
//!
//! Sections go to disk as they are added, so memory holds only the directory (a few dozen
//! bytes per tensor). The file is built in a temporary file beside the target and renamed
//! into place by [`TpkWriter::finish`]; until then the target is untouched, and dropping
//! the writer removes the temporary file.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use zerocopy::IntoBytes;

use super::layout::*;
use super::limits;
use super::types::{CodecId, Dtype, ElemType, SectionKind};
use crate::error::{Error, Result};

/// Handle to a section already written, for [`TensorEntry::sections`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SectionId(pub(crate) u32);

impl SectionId {
    /// The section's index in the directory.
    pub fn index(self) -> u32 {
        self.0
    }
}

/// One tensor's directory entry, given to [`TpkWriter::add_tensor`].
#[derive(Clone, Debug)]
pub struct TensorEntry {
    /// Unique UTF-8 name.
    pub name: String,
    /// Row-major shape, as PyTorch gives it.
    pub shape: Vec<u64>,
    /// The dtype of the source tensor.
    pub source_dtype: Dtype,
    /// The codec that decodes it.
    pub codec: CodecId,
    /// The codec's own parameter header.
    pub params: Vec<u8>,
    /// Its sections, in the order its codec defines.
    pub sections: Vec<SectionId>,
}

/// Options for [`TpkWriter::create_with`].
#[derive(Clone, Debug, Default)]
pub struct WriterOptions {
    /// Files the output must never replace (the converter's inputs).
    pub protected: Vec<PathBuf>,
}

/// Writes a `.tpk` file one section and one tensor at a time.
pub struct TpkWriter {
    target: PathBuf,
    tmp: Option<tempfile::NamedTempFile>,
    out: BufWriter<File>,
    pos: u64,
    sections: Vec<SectionRecord>,
    tensors: Vec<TensorRecord>,
    refs: Vec<u32>,
    dims: Vec<u64>,
    params: Vec<u8>,
    strings: Vec<u8>,
    names: HashSet<String>,
    metadata: u32,
}

impl TpkWriter {
    /// Starts a file that [`finish`](Self::finish) will place at `path`.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        Self::create_with(path, WriterOptions::default())
    }

    /// Starts a file at `path`, refusing if `path` is one of `opts.protected`.
    pub fn create_with(path: impl AsRef<Path>, opts: WriterOptions) -> Result<Self> {
        let target = path.as_ref().to_path_buf();
        for p in &opts.protected {
            if same_file(&target, p) {
                return Err(Error::OverwritesInput(target));
            }
        }
        if target.is_dir() {
            return Err(Error::InvalidArgument(format!(
                "output {} is a directory",
                target.display()
            )));
        }
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let tmp = tempfile::Builder::new()
            .prefix(".tpk-")
            .suffix(".tmp")
            .tempfile_in(&dir)
            .map_err(|e| Error::io(&dir, e))?;
        let file = tmp.reopen().map_err(|e| Error::io(tmp.path(), e))?;
        let mut w = TpkWriter {
            target,
            tmp: Some(tmp),
            out: BufWriter::with_capacity(1 << 20, file),
            pos: 0,
            sections: Vec::new(),
            tensors: Vec::new(),
            refs: Vec::new(),
            dims: Vec::new(),
            params: Vec::new(),
            strings: Vec::new(),
            names: HashSet::new(),
            metadata: NO_SECTION,
        };
        let mut h = Header {
            magic: MAGIC,
            major: VERSION_MAJOR.into(),
            minor: VERSION_MINOR.into(),
            flags: 0.into(),
            header_len: (HEADER_LEN as u32).into(),
            reserved: [0; 40],
            crc: 0.into(),
        };
        h.crc = crc32fast::hash(&h.as_bytes()[..60]).into();
        w.write(h.as_bytes())?;
        Ok(w)
    }

    fn write(&mut self, b: &[u8]) -> Result<()> {
        let path = self.tmp_path();
        self.out.write_all(b).map_err(|e| Error::io(path, e))?;
        self.pos += b.len() as u64;
        Ok(())
    }

    fn tmp_path(&self) -> PathBuf {
        self.tmp
            .as_ref()
            .map(|t| t.path().to_path_buf())
            .unwrap_or_default()
    }

    fn pad_to_alignment(&mut self) -> Result<()> {
        const ZEROS: [u8; ALIGNMENT as usize] = [0; ALIGNMENT as usize];
        let pad = (ALIGNMENT - self.pos % ALIGNMENT) % ALIGNMENT;
        self.write(&ZEROS[..pad as usize])
    }

    /// Writes a section's bytes now (64-byte aligned, CRC computed) and returns its handle.
    /// Several tensors may list the same handle; the bytes are stored once.
    pub fn add_section(
        &mut self,
        kind: SectionKind,
        elem: ElemType,
        bytes: &[u8],
    ) -> Result<SectionId> {
        if !kind.is_known() || !elem.is_known() {
            return Err(Error::InvalidArgument(format!(
                "unknown section kind {kind} or element type {elem}"
            )));
        }
        if !(bytes.len() as u64).is_multiple_of(elem.size()) {
            return Err(Error::InvalidArgument(format!(
                "section of {} bytes is not a whole number of {elem} elements",
                bytes.len()
            )));
        }
        if self.sections.len() as u64 >= limits::MAX_SECTIONS {
            return Err(Error::LimitExceeded {
                what: "section count",
                value: self.sections.len() as u64 + 1,
                limit: limits::MAX_SECTIONS,
            });
        }
        self.pad_to_alignment()?;
        let rec = SectionRecord {
            offset: self.pos.into(),
            length: (bytes.len() as u64).into(),
            crc: crc32fast::hash(bytes).into(),
            kind: kind.code(),
            elem: elem.code(),
            reserved: [0; 10],
        };
        self.write(bytes)?;
        let id = self.sections.len() as u32;
        self.sections.push(rec);
        Ok(SectionId(id))
    }

    /// Writes the metadata JSON as its own section. At most once per file.
    pub fn set_metadata(&mut self, json: &serde_json::Value) -> Result<()> {
        if self.metadata != NO_SECTION {
            return Err(Error::InvalidArgument(
                "metadata was already written".into(),
            ));
        }
        let bytes = serde_json::to_vec(json).map_err(|e| Error::Metadata(e.to_string()))?;
        if bytes.len() as u64 > limits::MAX_METADATA {
            return Err(Error::LimitExceeded {
                what: "metadata size",
                value: bytes.len() as u64,
                limit: limits::MAX_METADATA,
            });
        }
        let id = self.add_section(SectionKind::Metadata, ElemType::U8, &bytes)?;
        self.metadata = id.0;
        Ok(())
    }

    /// Adds a tensor's directory entry; its sections must already be written.
    pub fn add_tensor(&mut self, t: TensorEntry) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidArgument(format!("tensor {:?}: {m}", t.name)));
        if t.name.is_empty() || t.name.len() as u64 > limits::MAX_NAME_LEN {
            return bad(format!("name length must be 1..={}", limits::MAX_NAME_LEN));
        }
        if self.names.contains(&t.name) {
            return Err(Error::DuplicateName(t.name));
        }
        if t.shape.len() as u64 > limits::MAX_RANK {
            return bad(format!("rank over {}", limits::MAX_RANK));
        }
        if limits::element_count(&t.shape).is_none() {
            return Err(Error::ShapeOverflow {
                tensor: t.name,
                shape: t.shape,
            });
        }
        if t.params.len() as u64 > limits::MAX_PARAMS_LEN {
            return bad(format!(
                "codec parameters over {} bytes",
                limits::MAX_PARAMS_LEN
            ));
        }
        if t.sections.len() as u64 > limits::MAX_SECTIONS_PER_TENSOR {
            return bad(format!("over {} sections", limits::MAX_SECTIONS_PER_TENSOR));
        }
        if let Some(s) = t
            .sections
            .iter()
            .find(|s| s.0 as usize >= self.sections.len() || s.0 == self.metadata)
        {
            return bad(format!(
                "section {} is not a tensor section of this file",
                s.0
            ));
        }
        if self.tensors.len() as u64 >= limits::MAX_TENSORS {
            return Err(Error::LimitExceeded {
                what: "tensor count",
                value: self.tensors.len() as u64 + 1,
                limit: limits::MAX_TENSORS,
            });
        }
        let rec = TensorRecord {
            name_off: (self.strings.len() as u32).into(),
            name_len: (t.name.len() as u32).into(),
            dims_first: (self.dims.len() as u32).into(),
            rank: (t.shape.len() as u32).into(),
            refs_first: (self.refs.len() as u32).into(),
            refs_count: (t.sections.len() as u32).into(),
            params_off: (self.params.len() as u32).into(),
            params_len: (t.params.len() as u32).into(),
            codec: t.codec.code().into(),
            source_dtype: t.source_dtype.code(),
            ..Default::default()
        };
        self.strings.extend_from_slice(t.name.as_bytes());
        self.dims.extend_from_slice(&t.shape);
        self.refs.extend(t.sections.iter().map(|s| s.0));
        self.params.extend_from_slice(&t.params);
        self.names.insert(t.name);
        self.tensors.push(rec);
        Ok(())
    }

    /// Number of tensors added so far.
    pub fn tensor_count(&self) -> usize {
        self.tensors.len()
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.pos
    }

    /// Writes the directory and trailer, syncs, and renames the file into place.
    /// Returns the final file size.
    pub fn finish(mut self) -> Result<u64> {
        self.pad_to_alignment()?;
        let dir = self.build_directory()?;
        let dir_offset = self.pos;
        self.write(&dir)?;
        let mut t = Trailer {
            dir_offset: dir_offset.into(),
            dir_len: (dir.len() as u64).into(),
            dir_crc: crc32fast::hash(&dir).into(),
            major: VERSION_MAJOR.into(),
            minor: VERSION_MINOR.into(),
            reserved: [0; 28],
            crc: 0.into(),
            end_magic: END_MAGIC,
        };
        t.crc = crc32fast::hash(&t.as_bytes()[..52]).into();
        self.write(t.as_bytes())?;
        let tmp = self
            .tmp
            .take()
            .expect("finish runs once; tmp is only taken here");
        let tmp_path = tmp.path().to_path_buf();
        self.out.flush().map_err(|e| Error::io(&tmp_path, e))?;
        self.out
            .get_ref()
            .sync_all()
            .map_err(|e| Error::io(&tmp_path, e))?;
        tmp.persist(&self.target)
            .map_err(|e| Error::io(&self.target, e.error))?;
        if let Some(parent) = self.target.parent() {
            // Make the rename itself durable; not every platform can open a folder.
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            if let Ok(d) = File::open(parent) {
                let _ = d.sync_all();
            }
        }
        Ok(self.pos)
    }

    fn build_directory(&self) -> Result<Vec<u8>> {
        let over = |what, value: u64, limit| Error::LimitExceeded { what, value, limit };
        let tensors_off = DIR_HEADER_LEN;
        let sections_off = tensors_off + 64 * self.tensors.len() as u64;
        let refs_off = sections_off + 32 * self.sections.len() as u64;
        let dims_off = refs_off + 4 * self.refs.len() as u64;
        let params_off = dims_off + 8 * self.dims.len() as u64;
        let strings_off = params_off + self.params.len() as u64;
        let total = strings_off + self.strings.len() as u64;
        if total > limits::MAX_DIRECTORY {
            return Err(over("directory size", total, limits::MAX_DIRECTORY));
        }
        let h = DirHeader {
            tensor_count: (self.tensors.len() as u32).into(),
            tensor_stride: 64.into(),
            section_count: (self.sections.len() as u32).into(),
            section_stride: 32.into(),
            tensors_off: (tensors_off as u32).into(),
            sections_off: (sections_off as u32).into(),
            refs_off: (refs_off as u32).into(),
            refs_count: (self.refs.len() as u32).into(),
            dims_off: (dims_off as u32).into(),
            dims_count: (self.dims.len() as u32).into(),
            params_off: (params_off as u32).into(),
            params_len: (self.params.len() as u32).into(),
            strings_off: (strings_off as u32).into(),
            strings_len: (self.strings.len() as u32).into(),
            metadata_section: self.metadata.into(),
            reserved: 0.into(),
        };
        let mut d = Vec::with_capacity(total as usize);
        d.extend_from_slice(h.as_bytes());
        d.extend_from_slice(self.tensors.as_bytes());
        d.extend_from_slice(self.sections.as_bytes());
        for r in &self.refs {
            d.extend_from_slice(&r.to_le_bytes());
        }
        for x in &self.dims {
            d.extend_from_slice(&x.to_le_bytes());
        }
        d.extend_from_slice(&self.params);
        d.extend_from_slice(&self.strings);
        debug_assert_eq!(d.len() as u64, total);
        Ok(d)
    }
}

/// Whether two paths name the same existing file (same device and inode on Unix).
fn same_file(a: &Path, b: &Path) -> bool {
    let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        ma.dev() == mb.dev() && ma.ino() == mb.ino()
    }
    #[cfg(not(unix))]
    {
        let _ = (ma, mb);
        match (a.canonicalize(), b.canonicalize()) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        }
    }
}
