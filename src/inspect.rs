//! Where every byte of a `.tpk` file goes: the accounting behind `tpk inspect`.
//!
//! The rule (spec, "Accounting"): a tensor owns its sections' footprints (length plus the
//! alignment padding after them), a shared section is split among its users in proportion
//! to their element counts, and a tensor owns its own directory bytes. What belongs to no
//! tensor (header, trailer, directory header, metadata) is spread over all tensors by
//! element count. So the per-tensor bytes add up to the real file size, and the total bpw
//! is the file size in bits over the number of weights.

use serde::Serialize;

use crate::codec::staged;
use crate::format::{CodecId, TensorView, TpkFile};

/// The JSON schema name of [`Report`]; bumped on any incompatible change.
pub const SCHEMA: &str = "tenpak.inspect/1";

/// One tensor's accounting.
#[derive(Clone, Debug, Serialize)]
pub struct TensorReport {
    /// Tensor name.
    pub name: String,
    /// Row-major shape.
    pub shape: Vec<u64>,
    /// Role group: "attention", "mlp", "embeddings", "norms" or "other".
    pub role: &'static str,
    /// Codec label, e.g. `int4g32` or `lowrank32+vq4x256+int4g32`.
    pub codec: String,
    /// Source dtype.
    pub source_dtype: String,
    /// Number of weights.
    pub elements: u64,
    /// Bytes attributed to the tensor, overhead share included.
    pub bytes: f64,
    /// Bits per weight.
    pub bpw: f64,
}

/// Totals over a group of tensors (a codec or a role).
#[derive(Clone, Debug, Serialize)]
pub struct GroupReport {
    /// Group name.
    pub name: String,
    /// Tensors in the group.
    pub tensors: usize,
    /// Weights in the group.
    pub elements: u64,
    /// Bytes attributed to the group.
    pub bytes: f64,
    /// Bits per weight.
    pub bpw: f64,
}

/// The whole file's accounting.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// [`SCHEMA`].
    pub schema: &'static str,
    /// Format version, "major.minor".
    pub version: String,
    /// Real file size in bytes.
    pub file_size: u64,
    /// Number of tensors.
    pub tensor_count: usize,
    /// Number of weights.
    pub elements: u64,
    /// File size in bits per weight.
    pub bpw: f64,
    /// Bytes of the metadata section.
    pub metadata_bytes: u64,
    /// Bytes that belong to no tensor (header, trailer, directory header, metadata).
    pub overhead_bytes: u64,
    /// Size of the weights in their source dtypes.
    pub source_bytes: u64,
    /// Size of the weights in FP32.
    pub fp32_bytes: u64,
    /// source_bytes / file_size.
    pub ratio_vs_source: f64,
    /// fp32_bytes / file_size.
    pub ratio_vs_fp32: f64,
    /// Totals per codec label.
    pub by_codec: Vec<GroupReport>,
    /// Totals per role.
    pub by_role: Vec<GroupReport>,
    /// Every tensor, in directory order.
    pub tensors: Vec<TensorReport>,
}

/// The role group of a tensor name (HF or GGUF naming).
pub fn role_of(name: &str) -> &'static str {
    let n = name.to_ascii_lowercase();
    if n.contains("norm") || n.contains(".ln_") || n.starts_with("ln_") {
        "norms"
    } else if n.contains("embed")
        || n.contains("lm_head")
        || n.starts_with("token_embd")
        || n == "output.weight"
        || n.contains("wte")
    {
        "embeddings"
    } else if n.contains("attn") || n.contains("attention") {
        "attention"
    } else if n.contains("mlp") || n.contains("ffn") || n.contains("feed_forward") {
        "mlp"
    } else {
        "other"
    }
}

/// A short label for a tensor's codec.
pub fn codec_label(t: &TensorView<'_>) -> String {
    match t.codec() {
        CodecId::Staged => match staged::decode_params(t.params()) {
            Ok(stages) => staged::label(&stages),
            Err(_) => "staged?".into(),
        },
        c => c.to_string(),
    }
}

fn bpw(bytes: f64, elements: u64) -> f64 {
    if elements == 0 {
        0.0
    } else {
        bytes * 8.0 / elements as f64
    }
}

/// Computes the accounting of an open file.
pub fn report(f: &TpkFile) -> Report {
    let sections: Vec<_> = f.sections().collect();
    let (dir_offset, _) = f.directory_extent();
    // Footprint: from a section's start to the next section's start (or the directory).
    let footprint: Vec<u64> = (0..sections.len())
        .map(|i| {
            let next = sections.get(i + 1).map_or(dir_offset, |s| s.info().offset);
            next - sections[i].info().offset
        })
        .collect();
    let mut users_elems = vec![0u64; sections.len()];
    for t in f.tensors() {
        for &s in t.section_indices() {
            users_elems[s as usize] = users_elems[s as usize].saturating_add(t.n_elements().max(1));
        }
    }
    let mut tensors = Vec::with_capacity(f.tensor_count());
    let mut attributed = 0f64;
    for t in f.tensors() {
        let weight = t.n_elements().max(1) as f64;
        let mut bytes = 0f64;
        for &s in t.section_indices() {
            bytes += footprint[s as usize] as f64 * weight / users_elems[s as usize] as f64
                + 32.0 * weight / users_elems[s as usize] as f64;
        }
        bytes += (64
            + t.name().len()
            + 8 * t.shape().len()
            + 4 * t.section_indices().len()
            + t.params().len()) as f64;
        attributed += bytes;
        tensors.push(TensorReport {
            name: t.name().to_string(),
            shape: t.shape().to_vec(),
            role: role_of(t.name()),
            codec: codec_label(&t),
            source_dtype: t.source_dtype().to_string(),
            elements: t.n_elements(),
            bytes,
            bpw: 0.0,
        });
    }
    let file_size = f.len();
    let elements: u64 = tensors.iter().map(|t| t.elements).sum();
    let overhead = (file_size as f64 - attributed).max(0.0);
    let total_weight: f64 = tensors.iter().map(|t| t.elements.max(1) as f64).sum();
    for t in &mut tensors {
        if total_weight > 0.0 {
            t.bytes += overhead * t.elements.max(1) as f64 / total_weight;
        }
        t.bpw = bpw(t.bytes, t.elements);
    }
    let metadata_bytes = f
        .metadata_section()
        .map_or(0, |m| sections[m as usize].info().len);
    let group = |key: &dyn Fn(&TensorReport) -> String| {
        let mut groups: Vec<GroupReport> = Vec::new();
        for t in &tensors {
            let k = key(t);
            let g = match groups.iter_mut().position(|g| g.name == k) {
                Some(i) => &mut groups[i],
                None => {
                    groups.push(GroupReport {
                        name: k,
                        tensors: 0,
                        elements: 0,
                        bytes: 0.0,
                        bpw: 0.0,
                    });
                    groups.last_mut().expect("just pushed")
                }
            };
            g.tensors += 1;
            g.elements += t.elements;
            g.bytes += t.bytes;
        }
        for g in &mut groups {
            g.bpw = bpw(g.bytes, g.elements);
        }
        groups.sort_by(|a, b| b.bytes.total_cmp(&a.bytes).then(a.name.cmp(&b.name)));
        groups
    };
    let by_codec = group(&|t| t.codec.clone());
    let by_role = group(&|t| t.role.to_string());
    let source_bytes: u64 = f
        .tensors()
        .map(|t| t.n_elements() * t.source_dtype().size())
        .sum();
    let fp32_bytes = elements * 4;
    let (major, minor) = f.version();
    Report {
        schema: SCHEMA,
        version: format!("{major}.{minor}"),
        file_size,
        tensor_count: tensors.len(),
        elements,
        bpw: bpw(file_size as f64, elements),
        metadata_bytes,
        overhead_bytes: overhead.round() as u64,
        source_bytes,
        fp32_bytes,
        ratio_vs_source: source_bytes as f64 / file_size as f64,
        ratio_vs_fp32: fp32_bytes as f64 / file_size as f64,
        by_codec,
        by_role,
        tensors,
    }
}
