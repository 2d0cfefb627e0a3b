//! `tpk convert`: a Hugging Face safetensors model in, a `.tpk` file out.
//!
//! Source reader -> codec -> writer, one tensor at a time: the source is mapped, each tensor
//! is widened to f32, encoded (in parallel over fixed row chunks, so the bytes never depend
//! on the thread count) and streamed to the writer. Memory stays near one tensor's working
//! set whatever the model's size.

pub mod export_st;
pub mod policy;

use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;
use serde_json::{json, Map, Value};
use tenpak_converters::safetensors::{Dtype as StDtype, SafetensorsModel, TensorInfo};

use crate::codec::encode::encode_tensor_in_place;
use crate::codec::{spec, staged};
use crate::error::{Error, Result};
use crate::format::{CodecId, Dtype, TensorEntry, TpkWriter, WriterOptions};
pub use policy::Policy;

/// What to convert, where to, and how.
#[derive(Clone, Debug)]
pub struct ConvertOptions {
    /// A `.safetensors` file, an index JSON, or a folder holding either.
    pub input: PathBuf,
    /// The `.tpk` file to write.
    pub output: PathBuf,
    /// The codec rules.
    pub policy: Policy,
    /// Convert tensors holding NaN or infinity instead of refusing them.
    pub allow_nonfinite: bool,
    /// Free-form keys stored under `"user"` in the metadata.
    pub user: Option<Value>,
}

/// Progress reports, one per tensor, for a progress bar or a log.
#[derive(Clone, Debug)]
pub enum Event<'a> {
    /// Conversion starts.
    Start {
        /// Tensors to convert.
        tensors: usize,
        /// Bytes of source weights.
        source_bytes: u64,
    },
    /// A tensor was written.
    Tensor {
        /// Position, from 0.
        index: usize,
        /// Name.
        name: &'a str,
        /// Codec label.
        codec: &'a str,
        /// Source bytes of the tensor.
        source_bytes: u64,
        /// Bytes of its sections.
        stored_bytes: u64,
        /// Its relative MSE.
        rel_mse: f64,
        /// A note on how its recipe was fitted, if it was changed.
        note: Option<&'a str>,
    },
}

/// Error totals of the tensors sharing one codec label.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CodecStats {
    /// Codec label.
    pub codec: String,
    /// Tensors.
    pub tensors: usize,
    /// Weights.
    pub elements: u64,
    /// Bytes of their sections.
    pub stored_bytes: u64,
    /// Sum of squared source values.
    pub signal: f64,
    /// Sum of squared errors.
    pub noise: f64,
}

impl CodecStats {
    /// noise / signal.
    pub fn rel_mse(&self) -> f64 {
        if self.signal > 0.0 {
            self.noise / self.signal
        } else {
            0.0
        }
    }

    /// Signal-to-quantization-noise ratio in dB (infinite when lossless).
    pub fn sqnr_db(&self) -> f64 {
        10.0 * (self.signal / self.noise).log10()
    }
}

/// What a conversion produced.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Output file size.
    pub file_size: u64,
    /// Weights converted.
    pub elements: u64,
    /// Source weights' size in their dtypes.
    pub source_bytes: u64,
    /// Source files' total size on disk.
    pub source_file_bytes: u64,
    /// Per codec error totals.
    pub codecs: Vec<CodecStats>,
    /// Wall-clock seconds.
    pub seconds: f64,
}

impl Summary {
    /// Bits per weight of the whole file.
    pub fn bpw(&self) -> f64 {
        self.file_size as f64 * 8.0 / self.elements.max(1) as f64
    }
}

fn dtype_of(d: StDtype) -> Dtype {
    match d {
        StDtype::F16 => Dtype::F16,
        StDtype::BF16 => Dtype::BF16,
        _ => Dtype::F32,
    }
}

/// Reads a JSON side file, naming it in the error.
fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Metadata(format!("{}: {e}", path.display())))
}

/// Converts a safetensors model to a `.tpk` file.
pub fn convert(opts: &ConvertOptions, on_event: &mut dyn FnMut(&Event<'_>)) -> Result<Summary> {
    let start = Instant::now();
    let model = SafetensorsModel::open(&opts.input)?;
    let mut protected: Vec<PathBuf> = model.shard_files().iter().map(|(p, _)| p.clone()).collect();
    let side = model.side_files().to_vec();
    protected.extend(side.iter().cloned());
    if let Some(idx) = model.index_file() {
        protected.push(idx.to_path_buf());
    }

    // Every tensor's recipe is known from the header alone; it goes in the metadata first.
    struct Plan {
        stages: Vec<staged::Stage>,
        note: Option<String>,
        dtype: Dtype,
        shape: Vec<u64>,
    }
    let mut plans = Vec::with_capacity(model.tensors().len());
    let mut per_tensor = Map::new();
    let mut source_bytes = 0u64;
    for t in model.tensors() {
        let dtype = dtype_of(t.dtype);
        let shape: Vec<u64> = t.shape.iter().map(|&d| d as u64).collect();
        let (recipe, reason) = opts.policy.recipe(&t.name, &shape, dtype);
        let (stages, note) = policy::fit(&recipe, &shape);
        let n: u64 =
            crate::format::limits::element_count(&shape).ok_or_else(|| Error::ShapeOverflow {
                tensor: t.name.clone(),
                shape: shape.clone(),
            })?;
        source_bytes += n * dtype.size();
        let mut entry = json!({"stages": spec::to_string(&stages), "rule": reason});
        if let Some(n) = &note {
            entry["note"] = json!(n);
        }
        per_tensor.insert(t.name.clone(), entry);
        plans.push(Plan {
            stages,
            note,
            dtype,
            shape,
        });
    }

    let mut meta = Map::new();
    meta.insert(
        "tenpak".into(),
        json!({"version": env!("CARGO_PKG_VERSION"), "command": "convert"}),
    );
    let files: Vec<Value> = model
        .shard_files()
        .iter()
        .map(|(p, size)| json!({"name": p.file_name().map(|n| n.to_string_lossy().into_owned()), "size": size}))
        .collect();
    let source_file_bytes: u64 = model.shard_files().iter().map(|(_, s)| s).sum();
    let mut dtypes: Vec<String> = plans.iter().map(|p| p.dtype.to_string()).collect();
    dtypes.sort();
    dtypes.dedup();
    meta.insert("source".into(), json!({"files": files, "dtypes": dtypes}));
    for path in &side {
        // config.json -> "config", tokenizer.json -> "tokenizer", ...
        let key = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        meta.insert(key, read_json(path)?);
    }
    let mut pol = serde_json::to_value(&opts.policy).map_err(|e| Error::Metadata(e.to_string()))?;
    pol["tensors"] = Value::Object(per_tensor);
    meta.insert("policy".into(), pol);
    if let Some(u) = &opts.user {
        meta.insert("user".into(), u.clone());
    }

    let mut w = TpkWriter::create_with(&opts.output, WriterOptions { protected })?;
    // The metadata is written last, so each tensor's measured error can be recorded in it
    // (a GGUF export uses it to pick types no worse than the tpk codec).
    on_event(&Event::Start {
        tensors: plans.len(),
        source_bytes,
    });

    let mut stats: Vec<CodecStats> = Vec::new();
    // One working buffer for every tensor, allocated zeroed at the largest tensor's size
    // (fresh zero pages, no fill pass) and never grown: each tensor's read overwrites its
    // prefix.
    let largest = model
        .tensors()
        .iter()
        .map(|t| t.shape.iter().product::<usize>())
        .max()
        .unwrap_or(0);
    let mut buf: Vec<f32> = Vec::new();
    buf.try_reserve_exact(largest)
        .map_err(|_| Error::OutOfMemory {
            what: "the f32 working copy of the largest tensor".into(),
            bytes: largest as u64 * 4,
        })?;
    buf.resize(largest, 0.0);
    let mut elements = 0u64;
    for (i, (t, plan)) in model.tensors().iter().zip(&plans).enumerate() {
        let n = t.shape.iter().product::<usize>();
        let buf = &mut buf[..n];
        read_parallel(&model, t, buf, opts.allow_nonfinite)?;
        // The f32 working copy is all the encoder needs: drop the source pages so peak RSS
        // stays near the largest tensor rather than the model size.
        model.release(t)?;
        // `buf` is refilled for every tensor, so the encoder may keep its residual in it.
        let enc = encode_tensor_in_place(&t.name, buf, &plan.shape, &plan.stages)?;
        let mut ids = Vec::with_capacity(enc.sections.len());
        let mut stored = 0u64;
        for s in &enc.sections {
            ids.push(w.add_section(s.kind, s.elem, &s.bytes)?);
            stored += s.bytes.len() as u64;
        }
        w.add_tensor(TensorEntry {
            name: t.name.clone(),
            shape: plan.shape.clone(),
            source_dtype: plan.dtype,
            codec: CodecId::Staged,
            params: staged::encode_params(&enc.stages),
            sections: ids,
        })?;
        let label = staged::label(&enc.stages);
        let st = match stats.iter_mut().position(|s| s.codec == label) {
            Some(k) => &mut stats[k],
            None => {
                stats.push(CodecStats {
                    codec: label.clone(),
                    ..Default::default()
                });
                stats.last_mut().expect("just pushed")
            }
        };
        st.tensors += 1;
        st.elements += n as u64;
        st.stored_bytes += stored;
        st.signal += enc.signal;
        st.noise += enc.noise;
        elements += n as u64;
        if let Some(e) = meta
            .get_mut("policy")
            .and_then(|p| p.get_mut("tensors"))
            .and_then(|m| m.get_mut(&t.name))
        {
            e["rel_mse"] = json!(enc.rel_mse());
        }
        on_event(&Event::Tensor {
            index: i,
            name: &t.name,
            codec: &label,
            source_bytes: n as u64 * plan.dtype.size(),
            stored_bytes: stored,
            rel_mse: enc.rel_mse(),
            note: plan.note.as_deref(),
        });
    }
    w.set_metadata(&Value::Object(meta))?;
    let file_size = w.finish()?;
    stats.sort_by(|a, b| b.elements.cmp(&a.elements).then(a.codec.cmp(&b.codec)));
    Ok(Summary {
        file_size,
        elements,
        source_bytes,
        source_file_bytes,
        codecs: stats,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Values per slice of [`read_parallel`].
const READ_SLICE: usize = 1 << 16;

/// [`SafetensorsModel::read_f32_into`] in parallel slices of rows: the widening is otherwise
/// the one single-threaded step of a conversion. On non-finite values the error is the one
/// a sequential read gives (the lowest slice's first), whatever the thread count.
fn read_parallel(
    model: &SafetensorsModel,
    t: &TensorInfo,
    out: &mut [f32],
    allow_nonfinite: bool,
) -> Result<()> {
    let row_len = t.row_len().max(1);
    let rows_per = (READ_SLICE / row_len).max(1);
    let results: Vec<_> = out
        .par_chunks_mut(rows_per * row_len)
        .enumerate()
        .map(|(i, o)| {
            let r0 = i * rows_per;
            model.read_rows_f32(t, r0..r0 + o.len() / row_len, o, allow_nonfinite)
        })
        .collect();
    for r in results {
        r?;
    }
    Ok(())
}
