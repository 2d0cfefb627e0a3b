//! Parsing and validation of one safetensors header.
//!
//! Layout: `u64` little-endian header length `n`, then `n` bytes of UTF-8 JSON, then the data
//! section. The JSON maps tensor names to `{"dtype", "shape", "data_offsets"}` (offsets relative
//! to the data section) plus an optional `"__metadata__"` string-to-string map.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::path::Path;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

use super::{Dtype, Result, SafetensorsError};

/// Largest header we accept (the same cap as the reference implementation): a hostile length
/// prefix must not make us allocate or scan gigabytes.
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// A validated header: every tensor's dtype, shape and data range are consistent with each
/// other and with the file length.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedHeader {
    /// Absolute file offset where the data section begins (`8 + n`).
    pub data_start: u64,
    /// The `__metadata__` map (empty if absent).
    pub metadata: BTreeMap<String, String>,
    /// Tensors in data-section order: (name, dtype, shape, begin, end), offsets relative to
    /// `data_start`.
    pub tensors: Vec<(String, Dtype, Vec<usize>, u64, u64)>,
}

/// A JSON object read as an ordered list of entries, so duplicate keys are seen instead of
/// silently collapsed as a map would.
pub(crate) struct Entries<T>(pub(crate) Vec<(String, T)>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Entries<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Entries<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<Entries<T>, A::Error> {
                let mut v = Vec::new();
                while let Some((k, val)) = m.next_entry::<String, T>()? {
                    v.push((k, val));
                }
                Ok(Entries(v))
            }
        }
        d.deserialize_map(V(PhantomData))
    }
}

/// Parses a JSON object into ordered entries, refusing duplicate keys; shared with the index
/// reader so `weight_map` duplicates are caught too.
pub(crate) fn parse_object_entries<'a, T: Deserialize<'a>>(
    file: &Path,
    text: &'a str,
) -> Result<Vec<(String, T)>> {
    let Entries(entries) =
        serde_json::from_str::<Entries<T>>(text).map_err(|e| SafetensorsError::BadJson {
            file: file.to_path_buf(),
            detail: e.to_string(),
        })?;
    Ok(entries)
}

fn entry_err(file: &Path, tensor: &str, detail: impl Into<String>) -> SafetensorsError {
    SafetensorsError::BadTensorEntry {
        file: file.to_path_buf(),
        tensor: tensor.to_string(),
        detail: detail.into(),
    }
}

/// Validates the header of a whole safetensors file given as bytes (typically a mmap).
///
/// `file` is used only for error messages. Checks, in order: the length prefix is present,
/// within [`MAX_HEADER_BYTES`] and inside the file; the header is UTF-8 JSON object without
/// duplicate keys; `__metadata__` is a string map; each tensor has exactly `dtype`, `shape`,
/// `data_offsets` with a known dtype, a shape whose byte size does not overflow, and offsets
/// spanning exactly that many bytes; sorted by offset the tensors tile the data section with no
/// gap, overlap or trailing byte.
pub fn parse_header(file: &Path, bytes: &[u8]) -> Result<ParsedHeader> {
    let file_len = bytes.len() as u64;
    let prefix: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| SafetensorsError::Truncated {
            file: file.to_path_buf(),
            len: file_len,
        })?;
    let n = u64::from_le_bytes(prefix);
    if n > MAX_HEADER_BYTES {
        return Err(SafetensorsError::HeaderTooLarge {
            file: file.to_path_buf(),
            len: n,
            limit: MAX_HEADER_BYTES,
        });
    }
    // n <= 1e8, so 8 + n cannot overflow.
    let data_start = 8 + n;
    if data_start > file_len {
        return Err(SafetensorsError::HeaderPastEof {
            file: file.to_path_buf(),
            header_len: n,
            file_len,
        });
    }
    let data_len = file_len - data_start;
    let header_bytes = &bytes[8..data_start as usize];
    let text = std::str::from_utf8(header_bytes).map_err(|_| SafetensorsError::HeaderNotUtf8 {
        file: file.to_path_buf(),
    })?;
    let entries: Vec<(String, Entries<Value>)> = parse_object_entries(file, text)?;

    let mut metadata = BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    let mut tensors = Vec::with_capacity(entries.len());
    for (name, Entries(fields)) in entries {
        if !seen.insert(name.clone()) {
            return Err(SafetensorsError::DuplicateTensor {
                tensor: name,
                first: file.to_path_buf(),
                second: file.to_path_buf(),
            });
        }
        if name == "__metadata__" {
            for (k, v) in fields {
                match v {
                    Value::String(s) => {
                        if metadata.insert(k.clone(), s).is_some() {
                            return Err(SafetensorsError::BadJson {
                                file: file.to_path_buf(),
                                detail: format!("duplicate __metadata__ key {k:?}"),
                            });
                        }
                    }
                    _ => {
                        return Err(SafetensorsError::BadJson {
                            file: file.to_path_buf(),
                            detail: format!("__metadata__ value of {k:?} is not a string"),
                        })
                    }
                }
            }
            continue;
        }
        let (mut dtype_v, mut shape_v, mut offs_v) = (None, None, None);
        for (k, v) in fields {
            let slot = match k.as_str() {
                "dtype" => &mut dtype_v,
                "shape" => &mut shape_v,
                "data_offsets" => &mut offs_v,
                _ => return Err(entry_err(file, &name, format!("unexpected field {k:?}"))),
            };
            if slot.replace(v).is_some() {
                return Err(entry_err(file, &name, format!("duplicate field {k:?}")));
            }
        }
        let dtype_s = match dtype_v {
            Some(Value::String(s)) => s,
            Some(_) => return Err(entry_err(file, &name, "dtype is not a string")),
            None => return Err(entry_err(file, &name, "missing dtype")),
        };
        let dtype = Dtype::parse(&dtype_s).ok_or_else(|| SafetensorsError::UnknownDtype {
            file: file.to_path_buf(),
            tensor: name.clone(),
            dtype: dtype_s.clone(),
        })?;
        let shape64: Vec<u64> = match shape_v {
            Some(Value::Array(a)) => a
                .iter()
                .map(|d| d.as_u64())
                .collect::<Option<Vec<u64>>>()
                .ok_or_else(|| entry_err(file, &name, "shape holds a non-integer or negative"))?,
            Some(_) => return Err(entry_err(file, &name, "shape is not an array")),
            None => return Err(entry_err(file, &name, "missing shape")),
        };
        let offs: Vec<u64> = match offs_v {
            Some(Value::Array(a)) if a.len() == 2 => a
                .iter()
                .map(|d| d.as_u64())
                .collect::<Option<Vec<u64>>>()
                .ok_or_else(|| entry_err(file, &name, "data_offsets hold a non-integer"))?,
            Some(_) => return Err(entry_err(file, &name, "data_offsets is not [begin, end]")),
            None => return Err(entry_err(file, &name, "missing data_offsets")),
        };
        let (begin, end) = (offs[0], offs[1]);
        let overflow = || SafetensorsError::ShapeOverflow {
            file: file.to_path_buf(),
            tensor: name.clone(),
            shape: shape64.clone(),
        };
        let numel = shape64
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .ok_or_else(overflow)?;
        let nbytes = numel
            .checked_mul(dtype.size_bytes() as u64)
            .ok_or_else(overflow)?;
        let shape = shape64
            .iter()
            .map(|&d| usize::try_from(d).ok())
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(overflow)?;
        if usize::try_from(nbytes).is_err() {
            return Err(overflow());
        }
        if end < begin {
            return Err(SafetensorsError::OffsetsReversed {
                file: file.to_path_buf(),
                tensor: name,
                begin,
                end,
            });
        }
        if end - begin != nbytes {
            return Err(SafetensorsError::ByteLengthMismatch {
                file: file.to_path_buf(),
                tensor: name,
                expected: nbytes,
                actual: end - begin,
            });
        }
        if end > data_len {
            return Err(SafetensorsError::OffsetsOutOfBounds {
                file: file.to_path_buf(),
                tensor: name,
                end,
                data_len,
            });
        }
        tensors.push((name, dtype, shape, begin, end));
    }
    tensors.sort_by(|a, b| (a.3, a.4, &a.0).cmp(&(b.3, b.4, &b.0)));
    let mut covered = 0u64;
    for t in &tensors {
        if t.3 != covered {
            return Err(SafetensorsError::OffsetsNotContiguous {
                file: file.to_path_buf(),
                tensor: t.0.clone(),
                expected: covered,
                begin: t.3,
            });
        }
        covered = t.4;
    }
    if covered != data_len {
        return Err(SafetensorsError::TrailingBytes {
            file: file.to_path_buf(),
            data_len,
            covered,
        });
    }
    Ok(ParsedHeader {
        data_start,
        metadata,
        tensors,
    })
}
