//! Streaming safetensors writer for export.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use super::{Dtype, Result, SafetensorsError};

/// One tensor the writer must make room for; the full plan is given up front so every header
/// (which precedes the data) can be computed before any tensor's bytes exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorPlan {
    /// Tensor name (must be unique and not `__metadata__`).
    pub name: String,
    /// Element type: F32, F16 or BF16.
    pub dtype: Dtype,
    /// Shape, outermost first.
    pub shape: Vec<usize>,
}

/// A tensor's header entry: name, dtype, shape, data begin and end (relative to the data section).
type Entry<'a> = (&'a str, Dtype, &'a [usize], u64, u64);

struct Slot {
    shard: usize,
    /// Absolute offset in the shard file.
    offset: u64,
    nbytes: u64,
    dtype: Dtype,
    written: bool,
}

struct ShardOut {
    tmp: NamedTempFile,
    name: String,
}

/// Writes a model as `model.safetensors`, or as HF-style `model-0000i-of-0000N.safetensors`
/// shards plus `model.safetensors.index.json`, one tensor at a time.
///
/// Output bytes depend only on the plan, `max_shard_bytes` and the tensor data: header keys are
/// sorted, `__metadata__` is `{"format":"pt"}`, the header is space-padded to a multiple of 8,
/// and within a shard tensors are laid out in plan order. Data goes to temporary files in the
/// output folder that are renamed into place by [`SafetensorsWriter::finish`]; dropping the
/// writer earlier leaves no partial output behind.
pub struct SafetensorsWriter {
    out_dir: PathBuf,
    shards: Vec<ShardOut>,
    slots: BTreeMap<String, Slot>,
    index_json: Option<String>,
}

impl std::fmt::Debug for SafetensorsWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafetensorsWriter")
            .field("out_dir", &self.out_dir)
            .field("shards", &self.shards.len())
            .field("tensors", &self.slots.len())
            .finish()
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    let (Ok(ca), Ok(cb)) = (a.canonicalize(), b.canonicalize()) else {
        return false;
    };
    if ca == cb {
        return true;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(ma), Ok(mb)) = (std::fs::metadata(&ca), std::fs::metadata(&cb)) {
            return ma.dev() == mb.dev() && ma.ino() == mb.ino();
        }
    }
    false
}

/// Serializes a header: sorted keys, compact JSON, padded with spaces to a multiple of 8.
fn header_json(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut parts: Vec<(String, String)> = entries
        .iter()
        .map(|(name, dtype, shape, b, e)| {
            let shape_s: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            (
                name.to_string(),
                format!(
                    "{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{b},{e}]}}",
                    dtype.as_str(),
                    shape_s.join(",")
                ),
            )
        })
        .collect();
    parts.push(("__metadata__".into(), "{\"format\":\"pt\"}".into()));
    parts.sort_by(|a, b| a.0.cmp(&b.0));
    let mut s = String::from("{");
    for (i, (k, v)) in parts.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&serde_json::to_string(k).expect("serializing a String cannot fail"));
        s.push(':');
        s.push_str(v);
    }
    s.push('}');
    while s.len() % 8 != 0 {
        s.push(' ');
    }
    s.into_bytes()
}

impl SafetensorsWriter {
    /// Plans the output in `out_dir` (created if missing) and opens the temporary shard files.
    ///
    /// Tensors are assigned to shards in plan order, a new shard starting when the next tensor
    /// would push the current one's data past `max_shard_bytes` (a tensor larger than the limit
    /// gets a shard of its own); with `None`, or when everything fits, a single
    /// `model.safetensors` is written. Refuses when an output path is one of `protected`
    /// (the input files, compared after resolving links), when `out_dir` holds an index that
    /// would shadow a single-file output, or when the plan has duplicates, `__metadata__`,
    /// empty names, unsupported dtypes or overflowing sizes.
    pub fn create(
        out_dir: impl AsRef<Path>,
        max_shard_bytes: Option<u64>,
        protected: &[PathBuf],
        plan: Vec<TensorPlan>,
    ) -> Result<Self> {
        let out_dir = out_dir.as_ref().to_path_buf();
        let werr = |tensor: &str, detail: String| SafetensorsError::Writer {
            file: out_dir.clone(),
            tensor: tensor.to_string(),
            detail,
        };
        // Validate the plan and compute sizes.
        let mut sizes = Vec::with_capacity(plan.len());
        let mut seen = std::collections::HashSet::new();
        for t in &plan {
            if t.name.is_empty() || t.name == "__metadata__" {
                return Err(werr(&t.name, "reserved or empty tensor name".into()));
            }
            if !seen.insert(t.name.as_str()) {
                return Err(werr(&t.name, "tensor planned twice".into()));
            }
            if !t.dtype.is_float_supported() {
                return Err(SafetensorsError::UnsupportedDtype {
                    file: out_dir.clone(),
                    tensor: t.name.clone(),
                    dtype: t.dtype,
                });
            }
            let nbytes = t
                .shape
                .iter()
                .try_fold(t.dtype.size_bytes() as u64, |a, &d| a.checked_mul(d as u64))
                .ok_or_else(|| werr(&t.name, "byte size overflows".into()))?;
            sizes.push(nbytes);
        }
        // Shard assignment.
        let mut assign = Vec::with_capacity(plan.len());
        let mut shard_sizes: Vec<u64> = vec![0];
        let mut shard_counts: Vec<usize> = vec![0];
        for &nb in &sizes {
            let last = shard_sizes.len() - 1;
            if let Some(max) = max_shard_bytes {
                if shard_counts[last] > 0 && shard_sizes[last].saturating_add(nb) > max {
                    shard_sizes.push(0);
                    shard_counts.push(0);
                }
            }
            let last = shard_sizes.len() - 1;
            shard_sizes[last] = shard_sizes[last]
                .checked_add(nb)
                .ok_or_else(|| werr("", "total size overflows".into()))?;
            shard_counts[last] += 1;
            assign.push(last);
        }
        let n = shard_sizes.len();
        let names: Vec<String> = if n == 1 {
            vec!["model.safetensors".into()]
        } else {
            (1..=n)
                .map(|i| format!("model-{i:05}-of-{n:05}.safetensors"))
                .collect()
        };
        std::fs::create_dir_all(&out_dir).map_err(|source| SafetensorsError::Io {
            path: out_dir.clone(),
            source,
        })?;
        let mut outputs: Vec<PathBuf> = names.iter().map(|s| out_dir.join(s)).collect();
        let index_path = out_dir.join("model.safetensors.index.json");
        if n > 1 {
            outputs.push(index_path.clone());
        } else if index_path.exists() {
            return Err(werr(
                "",
                "folder holds model.safetensors.index.json which would shadow the new model.safetensors".into(),
            ));
        }
        let canon_dir = out_dir
            .canonicalize()
            .map_err(|source| SafetensorsError::Io {
                path: out_dir.clone(),
                source,
            })?;
        for o in &outputs {
            let canon_o = canon_dir.join(o.file_name().expect("output names are plain files"));
            for p in protected {
                let hit =
                    same_file(o, p) || p.canonicalize().map(|cp| cp == canon_o).unwrap_or(false);
                if hit {
                    return Err(SafetensorsError::WouldOverwriteInput { path: p.clone() });
                }
            }
        }
        // Layout within shards (plan order) and headers.
        let mut per_shard: Vec<Vec<Entry<'_>>> = vec![Vec::new(); n];
        let mut cursor = vec![0u64; n];
        for ((t, &nb), &s) in plan.iter().zip(&sizes).zip(&assign) {
            let b = cursor[s];
            cursor[s] = b + nb; // bounded by shard_sizes, checked above
            per_shard[s].push((t.name.as_str(), t.dtype, t.shape.as_slice(), b, b + nb));
        }
        let mut shards = Vec::with_capacity(n);
        let mut slots = BTreeMap::new();
        for (s, entries) in per_shard.iter().enumerate() {
            let header = header_json(entries);
            let data_start = 8 + header.len() as u64;
            let io = |source| SafetensorsError::Io {
                path: out_dir.join(&names[s]),
                source,
            };
            let mut tmp = tempfile::Builder::new()
                .prefix(".tenpak-st-")
                .suffix(".tmp")
                .tempfile_in(&out_dir)
                .map_err(io)?;
            let f = tmp.as_file_mut();
            f.write_all(&(header.len() as u64).to_le_bytes())
                .map_err(io)?;
            f.write_all(&header).map_err(io)?;
            f.set_len(data_start + cursor[s]).map_err(io)?;
            for &(name, dtype, _, b, e) in entries {
                slots.insert(
                    name.to_string(),
                    Slot {
                        shard: s,
                        offset: data_start + b,
                        nbytes: e - b,
                        dtype,
                        written: false,
                    },
                );
            }
            shards.push(ShardOut {
                tmp,
                name: names[s].clone(),
            });
        }
        let index_json = (n > 1).then(|| {
            let total: u64 = sizes.iter().sum();
            let mut s = format!("{{\n  \"metadata\": {{\n    \"total_size\": {total}\n  }},\n  \"weight_map\": {{\n");
            let mut entries: Vec<(&str, &str)> = plan
                .iter()
                .zip(&assign)
                .map(|(t, &a)| (t.name.as_str(), names[a].as_str()))
                .collect();
            entries.sort();
            for (i, (t, f)) in entries.iter().enumerate() {
                let sep = if i + 1 < entries.len() { "," } else { "" };
                s.push_str(&format!(
                    "    {}: \"{f}\"{sep}\n",
                    serde_json::to_string(t).expect("serializing a str cannot fail")
                ));
            }
            s.push_str("  }\n}\n");
            s
        });
        Ok(SafetensorsWriter {
            out_dir,
            shards,
            slots,
            index_json,
        })
    }

    fn slot(&mut self, name: &str, nbytes: u64) -> Result<(&mut File, u64, PathBuf)> {
        let werr = |detail: String| SafetensorsError::Writer {
            file: self.out_dir.clone(),
            tensor: name.to_string(),
            detail,
        };
        let slot = self
            .slots
            .get(name)
            .ok_or_else(|| werr("tensor was not planned".into()))?;
        if slot.written {
            return Err(werr("tensor written twice".into()));
        }
        if slot.nbytes != nbytes {
            return Err(werr(format!(
                "got {nbytes} bytes, plan needs {}",
                slot.nbytes
            )));
        }
        let (shard, offset) = (slot.shard, slot.offset);
        let path = self.out_dir.join(&self.shards[shard].name);
        Ok((self.shards[shard].tmp.as_file_mut(), offset, path))
    }

    /// Writes one planned tensor's little-endian bytes (any order; each exactly once).
    pub fn write_tensor(&mut self, name: &str, data: &[u8]) -> Result<()> {
        let (f, offset, path) = self.slot(name, data.len() as u64)?;
        let io = |source| SafetensorsError::Io { path, source };
        f.seek(SeekFrom::Start(offset))
            .and_then(|_| f.write_all(data))
            .map_err(io)?;
        if let Some(s) = self.slots.get_mut(name) {
            s.written = true;
        }
        Ok(())
    }

    /// Writes one planned tensor from f32 values, rounding to its planned dtype (round to
    /// nearest even for F16/BF16) in bounded chunks so no second full copy is held.
    pub fn write_tensor_f32(&mut self, name: &str, values: &[f32]) -> Result<()> {
        let dtype = match self.slots.get(name) {
            Some(s) => s.dtype,
            None => {
                return Err(SafetensorsError::Writer {
                    file: self.out_dir.clone(),
                    tensor: name.to_string(),
                    detail: "tensor was not planned".into(),
                })
            }
        };
        let size = dtype.size_bytes();
        let nbytes = (values.len() as u64).saturating_mul(size as u64);
        let (f, offset, path) = self.slot(name, nbytes)?;
        let io = |source| SafetensorsError::Io { path, source };
        let mut res = f.seek(SeekFrom::Start(offset)).map(|_| ());
        let mut buf = Vec::with_capacity(65536 * size);
        for chunk in values.chunks(65536) {
            if res.is_err() {
                break;
            }
            buf.clear();
            for &v in chunk {
                match dtype {
                    Dtype::F16 => buf.extend_from_slice(&half::f16::from_f32(v).to_le_bytes()),
                    Dtype::BF16 => buf.extend_from_slice(&half::bf16::from_f32(v).to_le_bytes()),
                    _ => buf.extend_from_slice(&v.to_le_bytes()),
                }
            }
            res = f.write_all(&buf);
        }
        res.map_err(io)?;
        if let Some(s) = self.slots.get_mut(name) {
            s.written = true;
        }
        Ok(())
    }

    /// Checks every planned tensor was written, flushes to disk, renames the shards (then the
    /// index) into place and returns the final paths (shards in order, index last).
    pub fn finish(self) -> Result<Vec<PathBuf>> {
        if let Some((name, _)) = self.slots.iter().find(|(_, s)| !s.written) {
            return Err(SafetensorsError::Writer {
                file: self.out_dir.clone(),
                tensor: name.clone(),
                detail: "planned tensor was never written".into(),
            });
        }
        let mut out = Vec::with_capacity(self.shards.len() + 1);
        for sh in self.shards {
            let path = self.out_dir.join(&sh.name);
            sh.tmp
                .as_file()
                .sync_all()
                .map_err(|source| SafetensorsError::Io {
                    path: path.clone(),
                    source,
                })?;
            sh.tmp.persist(&path).map_err(|e| SafetensorsError::Io {
                path: path.clone(),
                source: e.error,
            })?;
            out.push(path);
        }
        if let Some(json) = self.index_json {
            let path = self.out_dir.join("model.safetensors.index.json");
            let io = |source| SafetensorsError::Io {
                path: path.clone(),
                source,
            };
            let mut tmp = tempfile::Builder::new()
                .prefix(".tenpak-st-")
                .suffix(".tmp")
                .tempfile_in(&self.out_dir)
                .map_err(io)?;
            tmp.write_all(json.as_bytes()).map_err(io)?;
            tmp.as_file().sync_all().map_err(io)?;
            tmp.persist(&path).map_err(|e| SafetensorsError::Io {
                path: path.clone(),
                source: e.error,
            })?;
            out.push(path);
        }
        Ok(out)
    }

    /// One-call export of tensors already in memory (tests, small models): plans, writes each
    /// `(name, dtype, shape, bytes)` and finishes.
    pub fn write_all(
        out_dir: impl AsRef<Path>,
        max_shard_bytes: Option<u64>,
        protected: &[PathBuf],
        tensors: &[(&str, Dtype, &[usize], &[u8])],
    ) -> Result<Vec<PathBuf>> {
        let plan = tensors
            .iter()
            .map(|(n, d, s, _)| TensorPlan {
                name: n.to_string(),
                dtype: *d,
                shape: s.to_vec(),
            })
            .collect();
        let mut w = Self::create(out_dir, max_shard_bytes, protected, plan)?;
        for (n, _, _, b) in tensors {
            w.write_tensor(n, b)?;
        }
        w.finish()
    }
}
