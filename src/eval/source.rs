//! Weight sources for the eval engine: a `.tpk` file (decoded tensor by tensor from the mmap, so
//! only one decoded tensor is alive besides the model being built) and a safetensors model (a
//! file, an index or a folder), plus [`open_model`], which finds a model's config and tokenizer
//! wherever that kind of model keeps them.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tenpak_converters::safetensors::SafetensorsModel;

use super::model::TensorF32;
use super::tokenizer::MAX_TOKENIZER_BYTES;
use super::{EvalError, WeightSource};
use crate::format::TpkFile;

/// Largest `config.json` / `tokenizer_config.json` accepted (real ones are a few kB).
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// Why a model could not be opened; carried inside [`EvalError::Source`].
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The `.tpk` container is malformed or a tensor failed to decode.
    #[error("{path}: {source}")]
    Tpk {
        /// The file.
        path: PathBuf,
        /// The container's error.
        #[source]
        source: crate::Error,
    },
    /// The safetensors model is malformed or a tensor could not be widened to f32.
    #[error(transparent)]
    Safetensors(#[from] tenpak_converters::SafetensorsError),
    /// The model carries no architecture config, so it cannot be evaluated.
    #[error("{path}: no model config ({hint})")]
    NoConfig {
        /// The model.
        path: PathBuf,
        /// Where it was looked for.
        hint: &'static str,
    },
    /// A side JSON file is unreadable, too large or not JSON.
    #[error("{path}: {detail}")]
    SideFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A tensor's shape does not fit in memory on this platform.
    #[error("tensor {name}: shape does not fit in memory")]
    Shape {
        /// Tensor name.
        name: String,
    },
}

impl From<SourceError> for EvalError {
    fn from(e: SourceError) -> Self {
        EvalError::Source(Box::new(e))
    }
}

/// A `.tpk` file as a weight source: every request decodes the tensor from the mmapped sections.
pub struct TpkSource {
    file: TpkFile,
    path: PathBuf,
}

impl TpkSource {
    /// Opens and validates `path` (structure only; CRCs are checked by `tpk verify`).
    pub fn open(path: &Path) -> Result<Self, SourceError> {
        let file = TpkFile::open(path).map_err(|source| SourceError::Tpk {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self::new(file, path))
    }

    /// Wraps an already opened file; `path` is only used in messages.
    pub fn new(file: TpkFile, path: &Path) -> Self {
        Self {
            file,
            path: path.to_path_buf(),
        }
    }

    /// The underlying container, e.g. for its metadata.
    pub fn file(&self) -> &TpkFile {
        &self.file
    }
}

impl WeightSource for TpkSource {
    fn tensor_f32(&self, name: &str) -> Result<Option<TensorF32>, EvalError> {
        let Some(view) = self.file.tensor(name) else {
            return Ok(None);
        };
        let shape = view
            .shape()
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<Result<Vec<usize>, _>>()
            .map_err(|_| SourceError::Shape { name: name.into() })?;
        let values = view.to_f32_vec().map_err(|source| SourceError::Tpk {
            path: self.path.clone(),
            source,
        })?;
        Ok(Some((shape, values)))
    }
}

/// A safetensors model as a weight source; F32, F16 and BF16 widen exactly to f32, and
/// non-finite values are refused (a model holding them cannot give a meaningful perplexity).
pub struct SafetensorsSource {
    model: SafetensorsModel,
}

impl SafetensorsSource {
    /// Opens a `.safetensors` file, a `model.safetensors.index.json` or a folder holding either.
    pub fn open(path: &Path) -> Result<Self, SourceError> {
        Ok(Self {
            model: SafetensorsModel::open(path)?,
        })
    }
}

impl WeightSource for SafetensorsSource {
    fn tensor_f32(&self, name: &str) -> Result<Option<TensorF32>, EvalError> {
        let Some(info) = self.model.tensor(name) else {
            return Ok(None);
        };
        // The element count was validated against the mapped file at open, so this allocation
        // is bounded by the file's size.
        let mut values = vec![0f32; info.numel()];
        self.model
            .read_f32_into(info, &mut values, false)
            .map_err(SourceError::from)?;
        Ok(Some((info.shape.clone(), values)))
    }
}

/// A model ready for evaluation: its weights and what it says about itself.
pub struct OpenedModel {
    /// The Hugging Face `config.json` (parse it with [`super::LlamaConfig::from_json`]).
    pub config: Value,
    /// The `tokenizer.json` bytes, if the model carries one.
    pub tokenizer: Option<Vec<u8>>,
    /// The `tokenizer_config.json`, if present (it decides BOS handling).
    pub tokenizer_config: Option<Value>,
    /// The weights.
    pub weights: Box<dyn WeightSource>,
}

/// Whether `path` names a `.tpk` file: its first 8 bytes are the tpk magic. Anything else
/// (a folder, a `.safetensors` file, an index) is treated as safetensors.
fn is_tpk(path: &Path) -> Result<bool, EvalError> {
    use std::io::Read;
    if std::fs::metadata(path)?.is_dir() {
        return Ok(false);
    }
    let mut head = [0u8; 8];
    let mut f = std::fs::File::open(path)?;
    let mut got = 0;
    while got < head.len() {
        let n = f.read(&mut head[got..])?;
        if n == 0 {
            return Ok(false);
        }
        got += n;
    }
    Ok(head == crate::format::layout::MAGIC)
}

/// Reads a side JSON file if it exists, refusing anything above `limit` bytes.
fn read_side(path: &Path, limit: u64) -> Result<Option<Vec<u8>>, SourceError> {
    let err = |detail: String| SourceError::SideFile {
        path: path.to_path_buf(),
        detail,
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(e.to_string())),
    };
    if meta.len() > limit {
        return Err(err(format!("{} bytes, limit {limit}", meta.len())));
    }
    std::fs::read(path)
        .map(Some)
        .map_err(|e| err(e.to_string()))
}

fn parse_side(path: &Path, bytes: &[u8]) -> Result<Value, SourceError> {
    serde_json::from_slice(bytes).map_err(|e| SourceError::SideFile {
        path: path.to_path_buf(),
        detail: format!("not valid JSON: {e}"),
    })
}

/// Opens a model for evaluation, whatever its kind:
/// - a `.tpk` file (recognised by its magic) takes `config`, `tokenizer` and `tokenizer_config`
///   from its metadata (where `tpk convert` stores the source folder's JSON files);
/// - anything else is opened as safetensors, and `config.json`, `tokenizer.json` and
///   `tokenizer_config.json` are read from the folder (or, for a file, the folder holding it).
///
/// A missing config is an error; a missing tokenizer is not (the caller may supply one).
pub fn open_model(path: &Path) -> Result<OpenedModel, EvalError> {
    if is_tpk(path)? {
        let src = TpkSource::open(path)?;
        let meta = src.file().metadata().map_err(|source| SourceError::Tpk {
            path: path.to_path_buf(),
            source,
        })?;
        let config = match meta.get("config") {
            Some(c @ Value::Object(_)) => c.clone(),
            _ => {
                return Err(SourceError::NoConfig {
                    path: path.to_path_buf(),
                    hint: "the metadata has no \"config\" object; convert from a folder holding config.json",
                }
                .into())
            }
        };
        let tokenizer = match meta.get("tokenizer") {
            Some(t @ Value::Object(_)) => {
                Some(serde_json::to_vec(t).map_err(|e| SourceError::SideFile {
                    path: path.to_path_buf(),
                    detail: format!("metadata tokenizer: {e}"),
                })?)
            }
            _ => None,
        };
        let tokenizer_config = meta
            .get("tokenizer_config")
            .filter(|v| v.is_object())
            .cloned();
        return Ok(OpenedModel {
            config,
            tokenizer,
            tokenizer_config,
            weights: Box::new(src),
        });
    }
    let weights = SafetensorsSource::open(path)?;
    let dir = if std::fs::metadata(path)?.is_dir() {
        path.to_path_buf()
    } else {
        path.parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    };
    let cfg_path = dir.join("config.json");
    let config = match read_side(&cfg_path, MAX_CONFIG_BYTES)? {
        Some(b) => parse_side(&cfg_path, &b)?,
        None => {
            return Err(SourceError::NoConfig {
                path: path.to_path_buf(),
                hint: "no config.json beside the weights",
            }
            .into())
        }
    };
    let tokenizer = read_side(&dir.join("tokenizer.json"), MAX_TOKENIZER_BYTES)?;
    let tc_path = dir.join("tokenizer_config.json");
    let tokenizer_config = read_side(&tc_path, MAX_CONFIG_BYTES)?
        .map(|b| parse_side(&tc_path, &b))
        .transpose()?;
    Ok(OpenedModel {
        config,
        tokenizer,
        tokenizer_config,
        weights: Box::new(weights),
    })
}
