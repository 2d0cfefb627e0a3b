//! Memory-mapped, validated access to a (possibly sharded) safetensors model.

use std::collections::BTreeMap;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use serde::Deserialize;

use super::header::{parse_header, Entries};
use super::{Dtype, Result, SafetensorsError};

/// Largest `model.safetensors.index.json` we read into memory (real ones are well under 1 MB).
pub const MAX_INDEX_BYTES: u64 = 64 * 1024 * 1024;

/// Files beside the weights that a converter carries along (architecture, tokenizer).
pub const SIDE_FILE_NAMES: [&str; 4] = [
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "generation_config.json",
];

const INDEX_NAME: &str = "model.safetensors.index.json";
const SINGLE_NAME: &str = "model.safetensors";

/// Where one tensor lives and what it is; obtained from [`SafetensorsModel::tensors`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// Tensor name as in the header (e.g. `model.layers.0.mlp.up_proj.weight`).
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Shape, outermost dimension first (row-major).
    pub shape: Vec<usize>,
    /// Index into [`SafetensorsModel::shard_files`].
    pub shard: usize,
    /// Absolute byte range of the data inside the shard file.
    pub byte_range: Range<u64>,
}

impl TensorInfo {
    /// Number of elements (validated not to overflow when the model was opened).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Rows as seen by row-wise readers: the first dimension (1 for a scalar).
    pub fn rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(1)
    }

    /// Elements per row: the product of all dimensions but the first (1 for 0-D or 1-D).
    pub fn row_len(&self) -> usize {
        self.shape.iter().skip(1).product()
    }
}

struct Shard {
    path: PathBuf,
    map: Mmap,
}

/// A validated, memory-mapped safetensors model (one file or an index with shards).
///
/// All validation happens in [`SafetensorsModel::open`]; afterwards reads cannot fail on
/// structure, only on dtype support, non-finite values or caller mistakes.
pub struct SafetensorsModel {
    shards: Vec<Shard>,
    shard_files: Vec<(PathBuf, u64)>,
    /// Sorted by name.
    tensors: Vec<TensorInfo>,
    metadata: Vec<BTreeMap<String, String>>,
    side_files: Vec<PathBuf>,
    index: Option<PathBuf>,
}

impl std::fmt::Debug for SafetensorsModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafetensorsModel")
            .field("shard_files", &self.shard_files)
            .field("tensors", &self.tensors.len())
            .field("index", &self.index)
            .finish()
    }
}

#[derive(Deserialize)]
struct IndexFile {
    weight_map: Entries<String>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SafetensorsError + '_ {
    move |source| SafetensorsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn map_file(path: &Path) -> Result<Mmap> {
    let file = File::open(path).map_err(io_err(path))?;
    let len = file.metadata().map_err(io_err(path))?.len();
    if len < 8 {
        return Err(SafetensorsError::Truncated {
            file: path.to_path_buf(),
            len,
        });
    }
    // SAFETY: the map is read-only and private to this process. Memory safety relies on
    // nobody truncating or rewriting the file while it is mapped; that is the documented
    // contract of `SafetensorsModel` (as for every mmap-based model loader) and the writer
    // never touches an input it was told about.
    unsafe { Mmap::map(&file) }.map_err(io_err(path))
}

fn is_plain_file_name(s: &str) -> bool {
    let p = Path::new(s);
    !s.is_empty()
        && !s.contains('/')
        && !s.contains('\\')
        && s != "."
        && s != ".."
        && p.file_name().map(|f| f == p.as_os_str()).unwrap_or(false)
}

impl SafetensorsModel {
    /// Opens a model from a `.safetensors` file, a `model.safetensors.index.json`, or a folder
    /// holding one of them (the index wins when both exist).
    ///
    /// Maps every shard and validates every header (see [`super::parse_header`]), refuses a
    /// tensor name that occurs twice across shards, and checks the index's `weight_map`
    /// against the shards exactly (no tensor missing, none unlisted). The index's
    /// `metadata.total_size` is not checked because real checkpoints disagree about what it
    /// counts. Tensors are listed sorted by name, so the order does not depend on sharding.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let meta = std::fs::metadata(path).map_err(io_err(path))?;
        if meta.is_dir() {
            let idx = path.join(INDEX_NAME);
            if idx.is_file() {
                return Self::open_index(&idx);
            }
            let single = path.join(SINGLE_NAME);
            if single.is_file() {
                return Self::open_files(vec![single], None, path);
            }
            return Err(SafetensorsError::NotFound {
                path: path.to_path_buf(),
            });
        }
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        if path.extension().is_some_and(|e| e == "json") {
            return Self::open_index(path);
        }
        Self::open_files(vec![path.to_path_buf()], None, &dir)
    }

    fn open_index(index: &Path) -> Result<Self> {
        let file = File::open(index).map_err(io_err(index))?;
        let len = file.metadata().map_err(io_err(index))?.len();
        if len > MAX_INDEX_BYTES {
            return Err(SafetensorsError::BadJson {
                file: index.to_path_buf(),
                detail: format!("index is {len} bytes, over the {MAX_INDEX_BYTES}-byte limit"),
            });
        }
        let bytes = std::fs::read(index).map_err(io_err(index))?;
        let text = std::str::from_utf8(&bytes).map_err(|_| SafetensorsError::BadJson {
            file: index.to_path_buf(),
            detail: "not UTF-8".into(),
        })?;
        let parsed: IndexFile =
            serde_json::from_str(text).map_err(|e| SafetensorsError::BadJson {
                file: index.to_path_buf(),
                detail: e.to_string(),
            })?;
        let dir = index.parent().unwrap_or(Path::new(".")).to_path_buf();
        let mut weight_map: BTreeMap<String, String> = BTreeMap::new();
        for (tensor, shard) in parsed.weight_map.0 {
            if !is_plain_file_name(&shard) {
                return Err(SafetensorsError::IndexBadShardName {
                    index: index.to_path_buf(),
                    shard,
                });
            }
            if weight_map.insert(tensor.clone(), shard).is_some() {
                return Err(SafetensorsError::DuplicateTensor {
                    tensor,
                    first: index.to_path_buf(),
                    second: index.to_path_buf(),
                });
            }
        }
        let mut shard_names: Vec<&String> = weight_map.values().collect();
        shard_names.sort();
        shard_names.dedup();
        let mut files = Vec::with_capacity(shard_names.len());
        for s in &shard_names {
            let p = dir.join(s);
            if !p.is_file() {
                return Err(SafetensorsError::IndexMissingShard {
                    index: index.to_path_buf(),
                    shard: (*s).clone(),
                });
            }
            files.push(p);
        }
        let model = Self::open_files(files, Some(index.to_path_buf()), &dir)?;
        // Exact agreement between weight_map and shard contents.
        for t in &model.tensors {
            let shard_name = model.shard_files[t.shard]
                .0
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            match weight_map.get(&t.name) {
                Some(s) if *s == shard_name => {}
                _ => {
                    return Err(SafetensorsError::IndexUnlistedTensor {
                        index: index.to_path_buf(),
                        tensor: t.name.clone(),
                        shard: shard_name,
                    })
                }
            }
        }
        for (tensor, shard) in &weight_map {
            if model.tensor(tensor).is_none() {
                return Err(SafetensorsError::IndexMissingTensor {
                    index: index.to_path_buf(),
                    tensor: tensor.clone(),
                    shard: shard.clone(),
                });
            }
        }
        Ok(model)
    }

    fn open_files(files: Vec<PathBuf>, index: Option<PathBuf>, dir: &Path) -> Result<Self> {
        let mut shards = Vec::with_capacity(files.len());
        let mut shard_files = Vec::with_capacity(files.len());
        let mut tensors = Vec::new();
        let mut metadata = Vec::with_capacity(files.len());
        for (i, path) in files.into_iter().enumerate() {
            let map = map_file(&path)?;
            let h = parse_header(&path, &map)?;
            for (name, dtype, shape, begin, end) in h.tensors {
                // Offsets were checked against the file length, so these additions fit.
                tensors.push(TensorInfo {
                    name,
                    dtype,
                    shape,
                    shard: i,
                    byte_range: h.data_start + begin..h.data_start + end,
                });
            }
            metadata.push(h.metadata);
            shard_files.push((path.clone(), map.len() as u64));
            shards.push(Shard { path, map });
        }
        tensors.sort_by(|a, b| a.name.cmp(&b.name));
        for w in tensors.windows(2) {
            if w[0].name == w[1].name {
                return Err(SafetensorsError::DuplicateTensor {
                    tensor: w[0].name.clone(),
                    first: shards[w[0].shard.min(w[1].shard)].path.clone(),
                    second: shards[w[0].shard.max(w[1].shard)].path.clone(),
                });
            }
        }
        let side_files = SIDE_FILE_NAMES
            .iter()
            .map(|n| dir.join(n))
            .filter(|p| p.is_file())
            .collect();
        Ok(SafetensorsModel {
            shards,
            shard_files,
            tensors,
            metadata,
            side_files,
            index,
        })
    }

    /// Every tensor, sorted by name (byte order), independent of how the model is sharded.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// Looks a tensor up by exact name (binary search over the sorted list).
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors
            .binary_search_by(|t| t.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.tensors[i])
    }

    /// Shard paths and sizes in bytes; single-file models have one entry. Shards of an index
    /// are sorted by file name.
    pub fn shard_files(&self) -> &[(PathBuf, u64)] {
        &self.shard_files
    }

    /// The index file the model was opened through, if any.
    pub fn index_file(&self) -> Option<&Path> {
        self.index.as_deref()
    }

    /// Each shard's `__metadata__` map, parallel to [`Self::shard_files`].
    pub fn metadata(&self) -> &[BTreeMap<String, String>] {
        &self.metadata
    }

    /// Paths of the [`SIDE_FILE_NAMES`] that exist beside the model, in that order.
    pub fn side_files(&self) -> &[PathBuf] {
        &self.side_files
    }

    /// Path of the file holding `info`, for messages.
    fn file_of(&self, info: &TensorInfo) -> PathBuf {
        self.shards
            .get(info.shard)
            .map(|s| s.path.clone())
            .unwrap_or_default()
    }

    /// Checks `info` is one of ours (it has public fields, so it could be forged or stale).
    fn own<'a>(&'a self, info: &TensorInfo) -> Result<&'a TensorInfo> {
        match self.tensor(&info.name) {
            Some(t) if t == info => Ok(t),
            _ => Err(SafetensorsError::ForeignTensor {
                tensor: info.name.clone(),
            }),
        }
    }

    /// The tensor's little-endian bytes, straight from the map (zero-copy).
    pub fn raw_bytes(&self, info: &TensorInfo) -> Result<&[u8]> {
        let t = self.own(info)?;
        let map = &self.shards[t.shard].map;
        // Validated at open: the range lies inside this shard's file.
        Ok(&map[t.byte_range.start as usize..t.byte_range.end as usize])
    }

    /// Tells the kernel the tensor's source pages are no longer needed, so a convert that
    /// reads each tensor once does not keep the whole mapped model resident (peak RSS would
    /// otherwise grow to the model's size). Purely advisory: a later read of the same bytes
    /// faults them back in from the file. Errors of the advice itself are ignored.
    pub fn release(&self, info: &TensorInfo) -> Result<()> {
        let t = self.own(info)?;
        #[cfg(unix)]
        {
            let map = &self.shards[t.shard].map;
            let start = t.byte_range.start as usize;
            let len = (t.byte_range.end - t.byte_range.start) as usize;
            // SAFETY: `map` is a read-only mapping of a file we never write through, so it has
            // no private dirty pages: MADV_DONTNEED only drops clean pages, and any later
            // access, including through a slice handed out by `raw_bytes` that is still alive,
            // faults the same file bytes back in. No reference can observe a change (the
            // zero-fill semantics of DONTNEED apply to anonymous memory, not to file-backed
            // maps). The range was validated at open to lie inside the map; memmap2 aligns its
            // start down to a page, which at worst also drops clean pages of a neighbour.
            let _ = unsafe {
                map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, len)
            };
        }
        #[cfg(not(unix))]
        let _ = t;
        Ok(())
    }

    /// Converts the whole tensor to f32 into `out` (length must equal the element count).
    ///
    /// F16 and BF16 widen exactly. NaN or infinity is refused with [`SafetensorsError::NonFinite`]
    /// unless `allow_non_finite`, because a quantizer fed such values silently produces garbage.
    pub fn read_f32_into(
        &self,
        info: &TensorInfo,
        out: &mut [f32],
        allow_non_finite: bool,
    ) -> Result<()> {
        let rows = info.rows();
        self.read_rows_f32(info, 0..rows, out, allow_non_finite)
    }

    /// Converts rows `rows` (along the first dimension; each row holds [`TensorInfo::row_len`]
    /// values) to f32, so a large matrix can be processed in slices. `out.len()` must equal
    /// `rows.len() * row_len`. Non-finite handling as in [`Self::read_f32_into`]; the error's
    /// element index is relative to the whole tensor.
    pub fn read_rows_f32(
        &self,
        info: &TensorInfo,
        rows: Range<usize>,
        out: &mut [f32],
        allow_non_finite: bool,
    ) -> Result<()> {
        let t = self.own(info)?;
        let file = || self.file_of(t);
        if !t.dtype.is_float_supported() {
            return Err(SafetensorsError::UnsupportedDtype {
                file: file(),
                tensor: t.name.clone(),
                dtype: t.dtype,
            });
        }
        let nrows = t.rows();
        if rows.start > rows.end || rows.end > nrows {
            return Err(SafetensorsError::RowRange {
                file: file(),
                tensor: t.name.clone(),
                start: rows.start,
                end: rows.end,
                rows: nrows,
            });
        }
        let row_len = t.row_len();
        // Bounded by numel, which was checked at open.
        let first = rows.start * row_len;
        let count = (rows.end - rows.start) * row_len;
        if out.len() != count {
            return Err(SafetensorsError::OutputLength {
                file: file(),
                tensor: t.name.clone(),
                expected: count,
                actual: out.len(),
            });
        }
        let size = t.dtype.size_bytes();
        let bytes = self.raw_bytes(t)?;
        let src = &bytes[first * size..(first + count) * size];
        // Whether every value is finite, found block by block while the block is in cache.
        let finite = match t.dtype {
            Dtype::F32 => {
                let mut ok = true;
                for (o, c) in out.chunks_mut(BLOCK).zip(src.chunks(4 * BLOCK)) {
                    for (v, b) in o.iter_mut().zip(c.chunks_exact(4)) {
                        *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    }
                    ok &= all_finite(o);
                }
                ok
            }
            // Widened in blocks with `half`'s slice conversion (F16C/SIMD when the CPU has
            // it; the per-element call re-checks the CPU every time). Exact either way.
            Dtype::F16 => widen_blocks(src, out, half::f16::from_bits),
            Dtype::BF16 => widen_blocks(src, out, half::bf16::from_bits),
            _ => unreachable!("dtype support was checked above"),
        };
        if !allow_non_finite && !finite {
            if let Some((i, v)) = out.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                return Err(SafetensorsError::NonFinite {
                    file: file(),
                    tensor: t.name.clone(),
                    index: first + i,
                    value: *v,
                });
            }
        }
        Ok(())
    }
}

/// Values per block of [`widen_blocks`] and of the f32 read.
const BLOCK: usize = 1024;

/// Whether every value of `v` is finite: branch-free, so it vectorizes.
fn all_finite(v: &[f32]) -> bool {
    v.iter().fold(true, |ok, x| ok & x.is_finite())
}

/// Widens little-endian 16-bit floats `src` (2 bytes each) into `out` (same count),
/// [`BLOCK`] at a time with `HalfFloatSliceExt::convert_to_f32_slice`, and returns whether
/// every value is finite. Bytes aligned for `u16` (on a little-endian CPU) are converted in
/// place; others go through a stack block first.
fn widen_blocks<T>(src: &[u8], out: &mut [f32], from_bits: fn(u16) -> T) -> bool
where
    T: Copy + Default + zerocopy::FromBytes + zerocopy::Immutable + zerocopy::KnownLayout,
    [T]: half::slice::HalfFloatSliceExt,
{
    use half::slice::HalfFloatSliceExt;
    use zerocopy::FromBytes;
    let in_place = if cfg!(target_endian = "little") {
        <[T]>::ref_from_bytes(src).ok()
    } else {
        None
    };
    let mut tmp = [T::default(); BLOCK];
    let mut ok = true;
    for (k, o) in out.chunks_mut(BLOCK).enumerate() {
        let h = match in_place {
            Some(v) => &v[k * BLOCK..k * BLOCK + o.len()],
            None => {
                let t = &mut tmp[..o.len()];
                let c = &src[2 * k * BLOCK..];
                for (h, b) in t.iter_mut().zip(c.chunks_exact(2)) {
                    *h = from_bits(u16::from_le_bytes([b[0], b[1]]));
                }
                &*t
            }
        };
        h.convert_to_f32_slice(o);
        ok &= all_finite(o);
    }
    ok
}

#[cfg(test)]
mod tests {
    #[test]
    fn model_is_send_sync() {
        fn f<T: Send + Sync>() {}
        f::<super::SafetensorsModel>();
    }

    /// Aligned bytes (widened in place) and the same bytes one byte off (through the
    /// stack block) give the same values, and both report a non-finite value in any block.
    #[test]
    fn widen_blocks_aligned_and_unaligned_agree() {
        use half::f16;
        let n = 3 * super::BLOCK + 17;
        let vals: Vec<f16> = (0..n)
            .map(|i| f16::from_f32((i as f32 - 900.0) * 0.37))
            .collect();
        let mut bytes = vec![0u8; 2 * n + 2];
        for off in [0usize, 1] {
            for (i, v) in vals.iter().enumerate() {
                bytes[off + 2 * i..off + 2 * i + 2].copy_from_slice(&v.to_le_bytes());
            }
            let src = &bytes[off..off + 2 * n];
            let mut out = vec![0f32; n];
            assert!(
                super::widen_blocks(src, &mut out, f16::from_bits),
                "offset {off}"
            );
            let want: Vec<f32> = vals.iter().map(|v| v.to_f32()).collect();
            assert_eq!(out, want, "offset {off}");
            for bad in [0, super::BLOCK + 5, n - 1] {
                let mut b = bytes.clone();
                b[off + 2 * bad..off + 2 * bad + 2].copy_from_slice(&f16::INFINITY.to_le_bytes());
                let mut o = vec![0f32; n];
                assert!(!super::widen_blocks(
                    &b[off..off + 2 * n],
                    &mut o,
                    f16::from_bits
                ));
            }
        }
    }

    #[test]
    fn plain_file_names() {
        use super::is_plain_file_name as p;
        assert!(p("model-00001-of-00002.safetensors"));
        for bad in [
            "",
            ".",
            "..",
            "../x.safetensors",
            "/etc/passwd",
            "a/b",
            "a\\b",
        ] {
            assert!(!p(bad), "{bad}");
        }
    }
}
