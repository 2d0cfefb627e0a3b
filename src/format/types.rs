//! The codes stored in directory records: section kinds, element types, dtypes and codecs.
//!
//! Each enum maps to one byte (or u16) of the file. Unknown codes are kept as `Other` so a
//! reader can skip what a newer minor version added; the reader decides when that is allowed.

use std::fmt;

macro_rules! code_enum {
    ($(#[$m:meta])* $name:ident : $repr:ty { $($(#[$vm:meta])* $var:ident = $val:expr, $label:expr;)* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vm])* $var,)*
            /// A code this version does not define (written by a newer minor version).
            Other($repr),
        }
        impl $name {
            /// Decodes a stored code.
            pub fn from_code(c: $repr) -> Self {
                match c { $($val => $name::$var,)* o => $name::Other(o) }
            }
            /// The stored code.
            pub fn code(self) -> $repr {
                match self { $($name::$var => $val,)* $name::Other(o) => o }
            }
            /// Whether this version defines the code.
            pub fn is_known(self) -> bool {
                !matches!(self, $name::Other(_))
            }
            /// Short lower-case name, as `tpk inspect` prints it.
            pub fn label(self) -> &'static str {
                match self { $($name::$var => $label,)* $name::Other(_) => "unknown" }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $name::Other(c) => write!(f, "unknown({c})"),
                    k => f.write_str(k.label()),
                }
            }
        }
    };
}

code_enum! {
    /// What a section holds.
    SectionKind: u8 {
        /// UTF-8 JSON metadata.
        Metadata = 1, "metadata";
        /// Unquantized tensor values.
        Raw = 2, "raw";
        /// Packed integer codes.
        Codes = 3, "codes";
        /// Per-group scales.
        Scales = 4, "scales";
        /// Per-group offsets.
        Offsets = 5, "offsets";
        /// A vector-quantization codebook.
        Codebook = 6, "codebook";
        /// Vector-quantization indices.
        Indices = 7, "indices";
        /// Left low-rank factor (rows x rank).
        LowRankLeft = 8, "lowrank_l";
        /// Right low-rank factor (rank x cols).
        LowRankRight = 9, "lowrank_r";
        /// ggml quantization blocks, bit-compatible with GGUF.
        GgmlBlocks = 10, "ggml_blocks";
        /// Codec-specific auxiliary data.
        Aux = 11, "aux";
    }
}

code_enum! {
    /// The element type of a section, which fixes the typed view it can give.
    ElemType: u8 {
        /// Bytes.
        U8 = 1, "u8";
        /// Signed bytes.
        I8 = 2, "i8";
        /// Little-endian u16.
        U16 = 3, "u16";
        /// Little-endian i16.
        I16 = 4, "i16";
        /// Little-endian u32.
        U32 = 5, "u32";
        /// Little-endian i32.
        I32 = 6, "i32";
        /// IEEE 754 binary16.
        F16 = 7, "f16";
        /// bfloat16.
        BF16 = 8, "bf16";
        /// IEEE 754 binary32.
        F32 = 9, "f32";
        /// Packed 1-bit codes.
        Packed1 = 17, "packed1";
        /// Packed 2-bit codes.
        Packed2 = 18, "packed2";
        /// Packed 3-bit codes.
        Packed3 = 19, "packed3";
        /// Packed 4-bit codes.
        Packed4 = 20, "packed4";
        /// Packed 5-bit codes.
        Packed5 = 21, "packed5";
        /// Packed 6-bit codes.
        Packed6 = 22, "packed6";
        /// Packed 7-bit codes.
        Packed7 = 23, "packed7";
        /// Packed 8-bit codes.
        Packed8 = 24, "packed8";
    }
}

impl ElemType {
    /// Bytes per element; packed codes and unknown types count as bytes.
    pub fn size(self) -> u64 {
        match self {
            ElemType::U16 | ElemType::I16 | ElemType::F16 | ElemType::BF16 => 2,
            ElemType::U32 | ElemType::I32 | ElemType::F32 => 4,
            _ => 1,
        }
    }

    /// The packed-code type for `bits` (1..=8).
    pub fn packed(bits: u8) -> Option<Self> {
        match bits {
            1..=8 => Some(ElemType::from_code(16 + bits)),
            _ => None,
        }
    }
}

code_enum! {
    /// The dtype a tensor had in its source file.
    Dtype: u8 {
        /// 32-bit float.
        F32 = 1, "f32";
        /// 16-bit float.
        F16 = 2, "f16";
        /// bfloat16.
        BF16 = 3, "bf16";
    }
}

impl Dtype {
    /// Bytes per element in the source (4 for unknown dtypes, as if FP32).
    pub fn size(self) -> u64 {
        match self {
            Dtype::F16 | Dtype::BF16 => 2,
            _ => 4,
        }
    }

    /// Parses "f32", "f16" or "bf16" (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Some(Dtype::F32),
            "f16" | "float16" => Some(Dtype::F16),
            "bf16" | "bfloat16" => Some(Dtype::BF16),
            _ => None,
        }
    }
}

code_enum! {
    /// How a tensor's sections decode to values.
    CodecId: u16 {
        /// The sum of a list of stages (raw, int, vq, lowrank, ggml); see `spec/tpk.md`.
        Staged = 1, "staged";
    }
}
