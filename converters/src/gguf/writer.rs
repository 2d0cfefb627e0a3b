//! Streaming GGUF v3 writer with llama.cpp's strict packing.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use super::reader::{align_up, DEFAULT_ALIGNMENT, MAGIC, MAX_DIMS, MAX_KEY_LEN, MAX_TENSOR_NAME};
use super::types::{tensor_nbytes, GgufArray, GgufValue};
use super::{GgufError, Result};

/// What the writer must know about a tensor before any data is written: the header
/// (which precedes all data) holds every offset, so sizes are fixed up front.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufTensorSpec {
    /// Tensor name (1..=63 bytes, unique).
    pub name: String,
    /// Dimensions in GGUF order (`ne[0]` first).
    pub dims: Vec<u64>,
    /// ggml type id.
    pub ggml_type: u32,
    /// Byte size; must equal what dims and type give (checked).
    pub n_bytes: u64,
}

/// Writes a GGUF v3 file one tensor at a time, so exporting never holds more than one
/// tensor in memory. Output goes to a temp file in the target folder and is renamed into
/// place by [`GgufWriter::finish`]; dropping the writer early leaves nothing behind.
pub struct GgufWriter {
    out: BufWriter<NamedTempFile>,
    target: PathBuf,
    specs: Vec<GgufTensorSpec>,
    next: usize,
    alignment: u32,
}

impl std::fmt::Debug for GgufWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufWriter")
            .field("target", &self.target)
            .field("next", &self.next)
            .field("tensors", &self.specs.len())
            .finish()
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> GgufError + '_ {
    move |source| GgufError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Best-effort canonical form of a path that may not exist yet: canonicalize the parent
/// and re-attach the file name, so `a/../x.gguf` and `x.gguf` compare equal.
fn canonical_or_parent(p: &Path) -> PathBuf {
    if let Ok(c) = p.canonicalize() {
        return c;
    }
    match (p.parent(), p.file_name()) {
        (Some(par), Some(name)) => {
            let par = if par.as_os_str().is_empty() {
                Path::new(".")
            } else {
                par
            };
            par.canonicalize()
                .map(|c| c.join(name))
                .unwrap_or_else(|_| p.to_path_buf())
        }
        _ => p.to_path_buf(),
    }
}

fn check_value(key: &str, v: &GgufValue) -> Result<()> {
    if let GgufValue::String(s) = v {
        if s.len() as u64 > GgufLimitsForWrite::MAX_STRING {
            return Err(GgufError::StringTooLong {
                len: s.len() as u64,
                max: GgufLimitsForWrite::MAX_STRING,
                offset: 0,
            });
        }
    }
    if let GgufValue::Array(a) = v {
        if a.len() as u64 > GgufLimitsForWrite::MAX_ARRAY {
            return Err(GgufError::ArrayTooLong {
                key: key.to_string(),
                len: a.len() as u64,
                max: GgufLimitsForWrite::MAX_ARRAY,
            });
        }
    }
    Ok(())
}

/// The writer refuses to produce what the default reader limits would refuse.
struct GgufLimitsForWrite;
impl GgufLimitsForWrite {
    const MAX_STRING: u64 = 1 << 24;
    const MAX_ARRAY: u64 = 1 << 24;
}

impl GgufWriter {
    /// Validates the KV list and tensor specs, creates the temp file next to `path` and
    /// writes header, KVs, tensor infos and padding. Fails with `ProtectedPath` when
    /// `path` names one of `protected` (the inputs being converted), so a conversion can
    /// never clobber its own source.
    pub fn create(
        path: impl AsRef<Path>,
        kv: &[(String, GgufValue)],
        tensors: &[GgufTensorSpec],
        protected: &[&Path],
    ) -> Result<Self> {
        let path = path.as_ref();
        let canon = canonical_or_parent(path);
        for p in protected {
            if canonical_or_parent(p) == canon {
                return Err(GgufError::ProtectedPath(path.to_path_buf()));
            }
        }

        // KV validation (same rules as the reader).
        let mut keys = HashSet::new();
        let mut alignment = DEFAULT_ALIGNMENT;
        for (k, v) in kv {
            if k.is_empty() || k.len() as u64 > MAX_KEY_LEN {
                return Err(GgufError::BadKeyLength {
                    len: k.len() as u64,
                    offset: 0,
                });
            }
            if !keys.insert(k.as_str()) {
                return Err(GgufError::DuplicateKey(k.clone()));
            }
            check_value(k, v)?;
            if k == "general.alignment" {
                match v {
                    GgufValue::U32(a) if a.is_power_of_two() => alignment = *a,
                    GgufValue::U32(a) => return Err(GgufError::BadAlignment(*a)),
                    _ => return Err(GgufError::AlignmentWrongType),
                }
            }
        }
        if kv.len() as u64 > (1 << 16) {
            return Err(GgufError::TooManyKeys {
                count: kv.len() as u64,
                max: 1 << 16,
            });
        }
        if tensors.len() as u64 > (1 << 20) {
            return Err(GgufError::TooManyTensors {
                count: tensors.len() as u64,
                max: 1 << 20,
            });
        }

        let mut names = HashSet::new();
        for t in tensors {
            if t.name.is_empty() || t.name.len() > MAX_TENSOR_NAME {
                return Err(GgufError::BadTensorName {
                    name: t.name.clone(),
                    len: t.name.len(),
                });
            }
            if !names.insert(t.name.as_str()) {
                return Err(GgufError::DuplicateTensorName(t.name.clone()));
            }
            if t.dims.len() > MAX_DIMS as usize {
                return Err(GgufError::TooManyDims {
                    name: t.name.clone(),
                    n_dims: t.dims.len() as u32,
                });
            }
            let expected = tensor_nbytes(&t.name, &t.dims, t.ggml_type)?;
            if expected != t.n_bytes {
                return Err(GgufError::SizeMismatch {
                    name: t.name.clone(),
                    declared: t.n_bytes,
                    expected,
                });
            }
        }

        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let tmp = tempfile::Builder::new()
            .prefix(".tenpak-gguf-")
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(io_err(dir))?;
        let mut w = GgufWriter {
            out: BufWriter::with_capacity(1 << 20, tmp),
            target: path.to_path_buf(),
            specs: tensors.to_vec(),
            next: 0,
            alignment,
        };
        let header = encode_header(kv, tensors, alignment)?;
        w.put(&header)?;
        w.put_zeros(padding(header.len() as u64, alignment))?;
        Ok(w)
    }

    fn put(&mut self, b: &[u8]) -> Result<()> {
        let target = self.target.clone();
        self.out.write_all(b).map_err(io_err(&target))
    }

    /// Writes the bytes of the next tensor (in declared order) plus zero padding to the
    /// alignment. The name is checked so a caller's ordering bug cannot silently
    /// mislabel data.
    pub fn write_tensor(&mut self, name: &str, data: &[u8]) -> Result<()> {
        let Some(spec) = self.specs.get(self.next) else {
            return Err(GgufError::TensorOrder {
                expected: String::new(),
                got: name.to_string(),
            });
        };
        if spec.name != name {
            return Err(GgufError::TensorOrder {
                expected: spec.name.clone(),
                got: name.to_string(),
            });
        }
        if data.len() as u64 != spec.n_bytes {
            return Err(GgufError::SizeMismatch {
                name: name.to_string(),
                declared: data.len() as u64,
                expected: spec.n_bytes,
            });
        }
        let pad = padding(spec.n_bytes, self.alignment);
        self.next += 1;
        self.put(data)?;
        self.put_zeros(pad)
    }

    fn put_zeros(&mut self, mut n: usize) -> Result<()> {
        const ZEROS: [u8; 4096] = [0; 4096];
        while n > 0 {
            let k = n.min(ZEROS.len());
            self.put(&ZEROS[..k])?;
            n -= k;
        }
        Ok(())
    }

    /// Flushes, fsyncs and atomically renames the temp file onto the target path.
    pub fn finish(self) -> Result<()> {
        let missing = self.specs.len() - self.next;
        if missing != 0 {
            return Err(GgufError::MissingTensors { missing });
        }
        let target = self.target;
        let tmp = self
            .out
            .into_inner()
            .map_err(|e| io_err(&target)(e.into_error()))?;
        tmp.as_file().sync_all().map_err(io_err(&target))?;
        tmp.persist(&target).map_err(|e| io_err(&target)(e.error))?;
        // Make the rename itself durable where the platform allows opening directories.
        if let Some(dir) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

fn padding(n: u64, alignment: u32) -> usize {
    let a = u64::from(alignment);
    ((a - n % a) % a) as usize
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &GgufValue) {
    match v {
        GgufValue::U8(x) => out.push(*x),
        GgufValue::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::Bool(x) => out.push(u8::from(*x)),
        GgufValue::String(s) => put_str(out, s),
        GgufValue::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::Array(a) => {
            out.extend_from_slice(&a.elem_type().to_le_bytes());
            out.extend_from_slice(&(a.len() as u64).to_le_bytes());
            macro_rules! each {
                ($v:expr) => {
                    for x in $v {
                        out.extend_from_slice(&x.to_le_bytes());
                    }
                };
            }
            match a {
                GgufArray::U8(v) => out.extend_from_slice(v),
                GgufArray::I8(v) => each!(v),
                GgufArray::U16(v) => each!(v),
                GgufArray::I16(v) => each!(v),
                GgufArray::U32(v) => each!(v),
                GgufArray::I32(v) => each!(v),
                GgufArray::F32(v) => each!(v),
                GgufArray::U64(v) => each!(v),
                GgufArray::I64(v) => each!(v),
                GgufArray::F64(v) => each!(v),
                GgufArray::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
                GgufArray::String(v) => {
                    for s in v {
                        put_str(out, s);
                    }
                }
            }
        }
    }
}

/// Encodes everything before the data section except the final padding, with offsets
/// packed in info order (llama.cpp's strict rule).
fn encode_header(
    kv: &[(String, GgufValue)],
    tensors: &[GgufTensorSpec],
    alignment: u32,
) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(kv.len() as u64).to_le_bytes());
    for (k, v) in kv {
        put_str(&mut out, k);
        out.extend_from_slice(&v.type_id().to_le_bytes());
        put_value(&mut out, v);
    }
    let mut offset = 0u64;
    for t in tensors {
        put_str(&mut out, &t.name);
        out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
        for d in &t.dims {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&t.ggml_type.to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
        offset = align_up(t.n_bytes, alignment)
            .and_then(|p| offset.checked_add(p))
            .ok_or_else(|| GgufError::OffsetOverflow(t.name.clone()))?;
    }
    Ok(out)
}
