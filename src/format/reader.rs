//! Zero-copy `.tpk` reader.
//!
//! [`TpkFile::open`] maps the file and validates the header, trailer and directory once,
//! with checked arithmetic and the limits of [`super::limits`]. Afterwards every
//! [`TensorView`] and [`SectionView`] is a borrow of the mapping that needs no further
//! checks. Opening reads only the header, the trailer and the directory, so it costs
//! O(number of tensors) whatever the size of the file.

use std::collections::HashMap;
use std::fs::File;
use std::ops::Range;
use std::path::Path;

use half::{bf16, f16};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::layout::*;
use super::limits;
use super::types::{CodecId, Dtype, ElemType, SectionKind};
use crate::error::{Error, Result};

/// Options for [`TpkFile::open_with`].
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenOptions {
    /// Check every section's CRC32 at open (reads the whole file once).
    pub verify_checksums: bool,
}

/// A 64-byte aligned chunk, so that owned buffers give the same alignment as a mapping.
#[derive(Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C, align(64))]
struct Chunk([u8; 64]);

enum Backing {
    Map(memmap2::Mmap),
    Owned { chunks: Vec<Chunk>, len: usize },
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Backing::Map(m) => m,
            Backing::Owned { chunks, len } => &chunks.as_bytes()[..*len],
        }
    }
}

/// A section as the directory describes it, after validation.
#[derive(Clone, Copy, Debug)]
pub struct SectionInfo {
    /// Absolute offset in the file.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
    /// Stored CRC32.
    pub crc: u32,
    /// What it holds.
    pub kind: SectionKind,
    /// Its element type.
    pub elem: ElemType,
}

#[derive(Clone, Debug)]
struct TensorInfo {
    name: String,
    dims: Range<usize>,
    refs: Range<usize>,
    params: Range<usize>,
    codec: CodecId,
    dtype: Dtype,
    n_elements: u64,
}

/// An open, validated `.tpk` file.
pub struct TpkFile {
    backing: Backing,
    major: u16,
    minor: u16,
    flags: u32,
    dir_offset: u64,
    dir_len: u64,
    sections: Vec<SectionInfo>,
    tensors: Vec<TensorInfo>,
    by_name: HashMap<String, u32>,
    dims: Vec<u64>,
    refs: Vec<u32>,
    params: Range<usize>,
    metadata: Option<u32>,
}

impl std::fmt::Debug for TpkFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TpkFile")
            .field("version", &(self.major, self.minor))
            .field("len", &self.len())
            .field("tensors", &self.tensors.len())
            .field("sections", &self.sections.len())
            .finish()
    }
}

impl TpkFile {
    /// Maps and validates the file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, OpenOptions::default())
    }

    /// Maps and validates the file at `path` with `opts`.
    pub fn open_with(path: impl AsRef<Path>, opts: OpenOptions) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if len < HEADER_LEN + TRAILER_LEN {
            return Err(Error::Truncated {
                what: "header and trailer",
                needed: HEADER_LEN + TRAILER_LEN,
                len,
            });
        }
        // SAFETY: the mapping is read-only and private to this value. Like every mmap-based
        // reader (safetensors, llama.cpp) we rely on the file not being truncated or rewritten
        // by another process while it is open; the format is written by rename, never in place.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        Self::from_backing(Backing::Map(map), opts)
    }

    /// Validates a file held in memory (used by tests and fuzzing).
    pub fn from_bytes(bytes: &[u8], opts: OpenOptions) -> Result<Self> {
        let mut chunks = vec![Chunk([0; 64]); bytes.len().div_ceil(64)];
        chunks.as_mut_bytes()[..bytes.len()].copy_from_slice(bytes);
        Self::from_backing(
            Backing::Owned {
                chunks,
                len: bytes.len(),
            },
            opts,
        )
    }

    fn from_backing(backing: Backing, opts: OpenOptions) -> Result<Self> {
        let parsed = parse(backing.bytes())?;
        let Parsed {
            major,
            minor,
            flags,
            dir_offset,
            dir_len,
            sections,
            tensors,
            by_name,
            dims,
            refs,
            params,
            metadata,
        } = parsed;
        let f = TpkFile {
            backing,
            major,
            minor,
            flags,
            dir_offset,
            dir_len,
            sections,
            tensors,
            by_name,
            dims,
            refs,
            params,
            metadata,
        };
        for t in f.tensors() {
            crate::codec::validate(&t)?;
        }
        if opts.verify_checksums {
            f.verify()?;
        }
        Ok(f)
    }
}

/// Everything [`TpkFile`] holds but the bytes: the result of validating them.
struct Parsed {
    major: u16,
    minor: u16,
    flags: u32,
    dir_offset: u64,
    dir_len: u64,
    sections: Vec<SectionInfo>,
    tensors: Vec<TensorInfo>,
    by_name: HashMap<String, u32>,
    dims: Vec<u64>,
    refs: Vec<u32>,
    params: Range<usize>,
    metadata: Option<u32>,
}

/// Validates header, trailer and directory of a whole file held in `data`.
fn parse(data: &[u8]) -> Result<Parsed> {
    let file_len = data.len() as u64;
    if file_len < HEADER_LEN + TRAILER_LEN {
        return Err(Error::Truncated {
            what: "header and trailer",
            needed: HEADER_LEN + TRAILER_LEN,
            len: file_len,
        });
    }
    let (header, _) = Header::read_from_prefix(data).map_err(|_| Error::Truncated {
        what: "header",
        needed: HEADER_LEN,
        len: file_len,
    })?;
    check_magic(&header.magic)?;
    let (major, minor) = (header.major.get(), header.minor.get());
    if major != VERSION_MAJOR {
        return Err(Error::UnsupportedVersion {
            major,
            minor,
            supported: VERSION_MAJOR,
        });
    }
    let computed = crc32fast::hash(&data[..60]);
    if computed != header.crc.get() {
        return Err(Error::ChecksumMismatch {
            what: "header",
            stored: header.crc.get(),
            computed,
        });
    }
    let flags = header.flags.get();
    if flags & REQUIRED_FLAGS_MASK != 0 {
        return Err(Error::UnknownRequiredFlags {
            flags: flags & REQUIRED_FLAGS_MASK,
        });
    }
    let header_len = u64::from(header.header_len.get());
    if header_len < HEADER_LEN || header_len > file_len - TRAILER_LEN {
        return Err(Error::DirectoryLayout(format!(
            "header length {header_len} is out of range"
        )));
    }
    // A newer minor version may add codes we do not know; then they are skipped, not refused.
    let newer = minor > VERSION_MINOR;

    let tstart = (file_len - TRAILER_LEN) as usize;
    let (trailer, _) =
        Trailer::read_from_prefix(&data[tstart..]).map_err(|_| Error::Truncated {
            what: "trailer",
            needed: TRAILER_LEN,
            len: file_len,
        })?;
    if trailer.end_magic != END_MAGIC {
        return Err(Error::BadTrailer);
    }
    let computed = crc32fast::hash(&data[tstart..tstart + 52]);
    if computed != trailer.crc.get() {
        return Err(Error::ChecksumMismatch {
            what: "trailer",
            stored: trailer.crc.get(),
            computed,
        });
    }
    if trailer.major.get() != major || trailer.minor.get() != minor {
        return Err(Error::DirectoryLayout(
            "the trailer's version differs from the header's".into(),
        ));
    }
    let (dir_offset, dir_len) = (trailer.dir_offset.get(), trailer.dir_len.get());
    if dir_len > limits::MAX_DIRECTORY {
        return Err(Error::LimitExceeded {
            what: "directory size",
            value: dir_len,
            limit: limits::MAX_DIRECTORY,
        });
    }
    if dir_offset < header_len
        || dir_offset.checked_add(dir_len) != Some(file_len - TRAILER_LEN)
        || dir_len < DIR_HEADER_LEN
    {
        return Err(Error::DirectoryOutOfBounds {
            offset: dir_offset,
            len: dir_len,
            file_len,
        });
    }
    let dir = &data[dir_offset as usize..(dir_offset + dir_len) as usize];
    let computed = crc32fast::hash(dir);
    if computed != trailer.dir_crc.get() {
        return Err(Error::ChecksumMismatch {
            what: "directory",
            stored: trailer.dir_crc.get(),
            computed,
        });
    }
    let (dh, _) = DirHeader::read_from_prefix(dir).map_err(|_| Error::Truncated {
        what: "directory header",
        needed: DIR_HEADER_LEN,
        len: dir_len,
    })?;

    let tensor_count = u64::from(dh.tensor_count.get());
    let section_count = u64::from(dh.section_count.get());
    limit("tensor count", tensor_count, limits::MAX_TENSORS)?;
    limit("section count", section_count, limits::MAX_SECTIONS)?;
    let tstride = u64::from(dh.tensor_stride.get());
    let sstride = u64::from(dh.section_stride.get());
    if tstride < 64 || sstride < 32 {
        return Err(Error::DirectoryLayout(format!(
            "record strides {tstride}/{sstride} are below 64/32"
        )));
    }
    let tensors_tab = table(
        dir,
        "tensor table",
        dh.tensors_off.get(),
        tensor_count,
        tstride,
    )?;
    let sections_tab = table(
        dir,
        "section table",
        dh.sections_off.get(),
        section_count,
        sstride,
    )?;
    let refs_tab = table(
        dir,
        "section references",
        dh.refs_off.get(),
        dh.refs_count.get().into(),
        4,
    )?;
    let dims_tab = table(
        dir,
        "dimension table",
        dh.dims_off.get(),
        dh.dims_count.get().into(),
        8,
    )?;
    let params_tab = table(
        dir,
        "parameter blob",
        dh.params_off.get(),
        dh.params_len.get().into(),
        1,
    )?;
    let strings = table(
        dir,
        "string table",
        dh.strings_off.get(),
        dh.strings_len.get().into(),
        1,
    )?;

    // Sections: in increasing offset order, aligned, inside the data area, not overlapping.
    let mut sections = Vec::with_capacity(section_count as usize);
    let mut prev_end = header_len;
    for (i, rec) in sections_tab.chunks_exact(sstride as usize).enumerate() {
        let i = i as u32;
        let (r, _) =
            SectionRecord::read_from_prefix(rec).map_err(|_| layout_err("section record"))?;
        let (offset, len) = (r.offset.get(), r.length.get());
        let kind = SectionKind::from_code(r.kind);
        let elem = ElemType::from_code(r.elem);
        if !newer && !kind.is_known() {
            return Err(Error::UnknownCode {
                what: "section kind",
                value: r.kind.into(),
            });
        }
        if !newer && !elem.is_known() {
            return Err(Error::UnknownCode {
                what: "element type",
                value: r.elem.into(),
            });
        }
        if offset % ALIGNMENT != 0 {
            return Err(Error::SectionMisaligned { section: i, offset });
        }
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= dir_offset && offset >= header_len);
        let Some(end) = end else {
            return Err(Error::SectionOutOfBounds {
                section: i,
                offset,
                len,
                data_end: dir_offset,
            });
        };
        if offset < prev_end {
            return Err(Error::SectionOverlap {
                section: i,
                offset,
                previous: i.saturating_sub(1),
                previous_end: prev_end,
            });
        }
        if len % elem.size() != 0 {
            return Err(Error::SectionElemMismatch {
                section: i,
                len,
                elem_size: elem.size(),
            });
        }
        prev_end = end;
        sections.push(SectionInfo {
            offset,
            len,
            crc: r.crc.get(),
            kind,
            elem,
        });
    }

    let metadata = match dh.metadata_section.get() {
        NO_SECTION => None,
        m => {
            let s = sections
                .get(m as usize)
                .ok_or_else(|| layout_err("metadata section index"))?;
            if s.kind != SectionKind::Metadata {
                return Err(Error::DirectoryLayout(format!(
                    "metadata section {m} has kind {}",
                    s.kind
                )));
            }
            limit("metadata size", s.len, limits::MAX_METADATA)?;
            let bytes = &data[s.offset as usize..(s.offset + s.len) as usize];
            std::str::from_utf8(bytes).map_err(|e| Error::Metadata(format!("not UTF-8: {e}")))?;
            Some(m)
        }
    };

    let refs: Vec<u32> = refs_tab
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let dims: Vec<u64> = dims_tab
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("chunks_exact(8) gives 8 bytes")))
        .collect();
    let params_base = dir_offset as usize + dh.params_off.get() as usize;

    let mut tensors = Vec::with_capacity(tensor_count as usize);
    let mut by_name = HashMap::with_capacity(tensor_count as usize);
    for (i, rec) in tensors_tab.chunks_exact(tstride as usize).enumerate() {
        let index = i as u32;
        let oob = |what| Error::TensorRefOutOfBounds { index, what };
        let (r, _) =
            TensorRecord::read_from_prefix(rec).map_err(|_| layout_err("tensor record"))?;
        let name_len = u64::from(r.name_len.get());
        if name_len == 0 || name_len > limits::MAX_NAME_LEN {
            return Err(Error::LimitExceeded {
                what: "tensor name length",
                value: name_len,
                limit: limits::MAX_NAME_LEN,
            });
        }
        let name_bytes =
            sub(strings, r.name_off.get(), r.name_len.get()).ok_or_else(|| oob("name"))?;
        let name = std::str::from_utf8(name_bytes).map_err(|_| Error::NameNotUtf8 { index })?;
        let rank = u64::from(r.rank.get());
        limit("tensor rank", rank, limits::MAX_RANK)?;
        let dims_r =
            range(r.dims_first.get(), r.rank.get(), dims.len()).ok_or_else(|| oob("dimensions"))?;
        let n_elements =
            limits::element_count(&dims[dims_r.clone()]).ok_or_else(|| Error::ShapeOverflow {
                tensor: name.to_string(),
                shape: dims[dims_r.clone()].to_vec(),
            })?;
        limit(
            "sections of one tensor",
            r.refs_count.get().into(),
            limits::MAX_SECTIONS_PER_TENSOR,
        )?;
        let refs_r = range(r.refs_first.get(), r.refs_count.get(), refs.len())
            .ok_or_else(|| oob("section list"))?;
        for &s in &refs[refs_r.clone()] {
            if s as usize >= sections.len() || Some(s) == metadata {
                return Err(oob("section"));
            }
        }
        limit(
            "codec parameter length",
            r.params_len.get().into(),
            limits::MAX_PARAMS_LEN,
        )?;
        let params_r = range(r.params_off.get(), r.params_len.get(), params_tab.len())
            .ok_or_else(|| oob("codec parameters"))?;
        let codec = CodecId::from_code(r.codec.get());
        let dtype = Dtype::from_code(r.source_dtype);
        if !newer && !codec.is_known() {
            return Err(Error::UnknownCode {
                what: "codec",
                value: codec.code().into(),
            });
        }
        if !newer && !dtype.is_known() {
            return Err(Error::UnknownCode {
                what: "source dtype",
                value: dtype.code().into(),
            });
        }
        if by_name.insert(name.to_string(), index).is_some() {
            return Err(Error::DuplicateName(name.to_string()));
        }
        tensors.push(TensorInfo {
            name: name.to_string(),
            dims: dims_r,
            refs: refs_r,
            params: params_base + params_r.start..params_base + params_r.end,
            codec,
            dtype,
            n_elements,
        });
    }

    Ok(Parsed {
        major,
        minor,
        flags,
        dir_offset,
        dir_len,
        sections,
        tensors,
        by_name,
        dims,
        refs,
        params: params_base..params_base + params_tab.len(),
        metadata,
    })
}

impl TpkFile {
    /// The whole file's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.backing.bytes()
    }

    /// File size in bytes.
    pub fn len(&self) -> u64 {
        self.bytes().len() as u64
    }

    /// Always false: a valid file holds at least a header and a trailer.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// (major, minor) version of the file.
    pub fn version(&self) -> (u16, u16) {
        (self.major, self.minor)
    }

    /// The header's flag word.
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// Where the directory starts and how long it is.
    pub fn directory_extent(&self) -> (u64, u64) {
        (self.dir_offset, self.dir_len)
    }

    /// Number of tensors.
    pub fn tensor_count(&self) -> usize {
        self.tensors.len()
    }

    /// The tensors, in directory order.
    pub fn tensors(&self) -> impl ExactSizeIterator<Item = TensorView<'_>> + '_ {
        (0..self.tensors.len()).map(move |i| TensorView {
            file: self,
            index: i,
        })
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<TensorView<'_>> {
        self.by_name.get(name).map(|&i| TensorView {
            file: self,
            index: i as usize,
        })
    }

    /// All sections, in file order.
    pub fn sections(&self) -> impl ExactSizeIterator<Item = SectionView<'_>> + '_ {
        (0..self.sections.len()).map(move |i| self.section_view(i as u32))
    }

    fn section_view(&self, index: u32) -> SectionView<'_> {
        let info = &self.sections[index as usize];
        SectionView {
            index,
            info,
            bytes: &self.bytes()[info.offset as usize..(info.offset + info.len) as usize],
        }
    }

    /// Index of the metadata section, if any.
    pub fn metadata_section(&self) -> Option<u32> {
        self.metadata
    }

    /// The metadata JSON text (validated as UTF-8 at open).
    pub fn metadata_str(&self) -> Option<&str> {
        self.metadata
            .map(|m| std::str::from_utf8(self.section_view(m).bytes).unwrap_or(""))
    }

    /// The metadata, parsed; `Value::Null` when the file has none.
    pub fn metadata(&self) -> Result<serde_json::Value> {
        match self.metadata_str() {
            None => Ok(serde_json::Value::Null),
            Some(s) => serde_json::from_str(s).map_err(|e| Error::Metadata(e.to_string())),
        }
    }

    /// Checks every section's CRC32 and fails on the first bad one, naming it.
    pub fn verify(&self) -> Result<()> {
        for s in self.sections() {
            s.verify_with(|| self.section_owner(s.index))?;
        }
        Ok(())
    }

    /// Who uses section `index`: "metadata", the first tensor that lists it, or "unused".
    pub fn section_owner(&self, index: u32) -> String {
        if Some(index) == self.metadata {
            return "metadata".into();
        }
        self.tensors()
            .find(|t| t.section_indices().contains(&index))
            .map(|t| format!("tensor {}", t.name()))
            .unwrap_or_else(|| "unused".into())
    }

    /// The codec parameter blob of the whole directory (for accounting).
    pub fn params_blob_len(&self) -> usize {
        self.params.len()
    }
}

/// A borrowed, validated view of one tensor.
#[derive(Clone, Copy)]
pub struct TensorView<'a> {
    file: &'a TpkFile,
    index: usize,
}

impl std::fmt::Debug for TensorView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TensorView")
            .field("name", &self.name())
            .field("shape", &self.shape())
            .field("codec", &self.codec())
            .finish()
    }
}

impl<'a> TensorView<'a> {
    fn info(&self) -> &'a TensorInfo {
        &self.file.tensors[self.index]
    }

    /// The file this view borrows from.
    pub fn file(&self) -> &'a TpkFile {
        self.file
    }

    /// Position in the directory.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The tensor's name.
    pub fn name(&self) -> &'a str {
        &self.info().name
    }

    /// Row-major shape.
    pub fn shape(&self) -> &'a [u64] {
        &self.file.dims[self.info().dims.clone()]
    }

    /// Number of elements (checked against the limits at open).
    pub fn n_elements(&self) -> u64 {
        self.info().n_elements
    }

    /// The dtype the tensor had in its source.
    pub fn source_dtype(&self) -> Dtype {
        self.info().dtype
    }

    /// Its codec.
    pub fn codec(&self) -> CodecId {
        self.info().codec
    }

    /// Its codec's parameter header.
    pub fn params(&self) -> &'a [u8] {
        &self.file.bytes()[self.info().params.clone()]
    }

    /// Indices of its sections, in codec order.
    pub fn section_indices(&self) -> &'a [u32] {
        &self.file.refs[self.info().refs.clone()]
    }

    /// Its sections, in codec order.
    pub fn sections(&self) -> impl ExactSizeIterator<Item = SectionView<'a>> + 'a {
        let file = self.file;
        self.section_indices()
            .iter()
            .map(move |&i| file.section_view(i))
    }

    /// Its `i`-th section.
    pub fn section(&self, i: usize) -> Option<SectionView<'a>> {
        self.section_indices()
            .get(i)
            .map(|&s| self.file.section_view(s))
    }
}

/// A borrowed view of one section's bytes, with typed access.
#[derive(Clone, Copy, Debug)]
pub struct SectionView<'a> {
    index: u32,
    info: &'a SectionInfo,
    bytes: &'a [u8],
}

macro_rules! typed {
    ($(#[$m:meta])* $fn:ident, $t:ty, $elem:path, $label:expr) => {
        $(#[$m])*
        pub fn $fn(&self) -> Result<&'a [$t]> {
            if self.info.elem != $elem {
                return Err(self.type_err($label));
            }
            <[$t]>::ref_from_bytes(self.bytes).map_err(|_| self.type_err($label))
        }
    };
}

impl<'a> SectionView<'a> {
    /// Index in the file's section table.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The directory's description.
    pub fn info(&self) -> &'a SectionInfo {
        self.info
    }

    /// What it holds.
    pub fn kind(&self) -> SectionKind {
        self.info.kind
    }

    /// Its element type.
    pub fn elem(&self) -> ElemType {
        self.info.elem
    }

    /// Its raw bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Number of elements of its element type (bytes for packed codes).
    pub fn len_elems(&self) -> u64 {
        self.info.len / self.info.elem.size()
    }

    fn type_err(&self, requested: &'static str) -> Error {
        Error::SectionType {
            section: self.index,
            actual: self.info.elem.to_string(),
            requested,
        }
    }

    /// Byte-sized contents: u8, i8 or packed codes, as bytes.
    pub fn as_u8(&self) -> Result<&'a [u8]> {
        match self.info.elem.size() {
            1 => Ok(self.bytes),
            _ => Err(self.type_err("bytes")),
        }
    }

    typed!(
        /// The contents as IEEE halves.
        as_f16, f16, ElemType::F16, "f16");
    typed!(
        /// The contents as bfloat16.
        as_bf16, bf16, ElemType::BF16, "bf16");
    typed!(
        /// The contents as f32.
        as_f32, f32, ElemType::F32, "f32");
    typed!(
        /// The contents as u16.
        as_u16, u16, ElemType::U16, "u16");
    typed!(
        /// The contents as i8.
        as_i8, i8, ElemType::I8, "i8");

    /// Checks the CRC32, naming the owner in the error.
    pub fn verify_with(&self, owner: impl FnOnce() -> String) -> Result<()> {
        let computed = crc32fast::hash(self.bytes);
        if computed != self.info.crc {
            return Err(Error::SectionChecksum {
                section: self.index,
                owner: owner(),
                stored: self.info.crc,
                computed,
            });
        }
        Ok(())
    }
}

fn check_magic(m: &[u8; 8]) -> Result<()> {
    if *m == MAGIC {
        return Ok(());
    }
    // A transfer that rewrites bytes keeps "TPK" but damages what surrounds it: newline
    // conversion rewrites the CR/LF bytes after it, a 7-bit channel clears the high bit of
    // 0x89, a byte-dropping one loses it. Any other first byte is plain corruption, or
    // another format, not a transfer's damage.
    let first_byte_ok = m[0] == MAGIC[0] || m[0] == MAGIC[0] & 0x7f;
    if (m[1..4] == *b"TPK" && first_byte_ok) || m[..3] == *b"TPK" {
        return Err(Error::TextModeMangled);
    }
    Err(Error::BadMagic { found: *m })
}

fn limit(what: &'static str, value: u64, limit: u64) -> Result<()> {
    if value > limit {
        return Err(Error::LimitExceeded { what, value, limit });
    }
    Ok(())
}

fn layout_err(what: &str) -> Error {
    Error::DirectoryLayout(format!("{what} is malformed"))
}

/// The bytes of a table of `count` records of `stride` bytes at `off` in the directory.
fn table<'d>(dir: &'d [u8], what: &str, off: u32, count: u64, stride: u64) -> Result<&'d [u8]> {
    let end = count
        .checked_mul(stride)
        .and_then(|n| n.checked_add(u64::from(off)))
        .filter(|&e| e <= dir.len() as u64 && u64::from(off) >= DIR_HEADER_LEN);
    match end {
        Some(e) => Ok(&dir[off as usize..e as usize]),
        None => Err(Error::DirectoryLayout(format!(
            "{what} lies outside the directory"
        ))),
    }
}

/// `[first, first + count)` if it lies within `0..len`.
fn range(first: u32, count: u32, len: usize) -> Option<Range<usize>> {
    let (first, count) = (first as usize, count as usize);
    let end = first.checked_add(count)?;
    (end <= len).then_some(first..end)
}

fn sub(bytes: &[u8], off: u32, len: u32) -> Option<&[u8]> {
    range(off, len, bytes.len()).map(|r| &bytes[r])
}
