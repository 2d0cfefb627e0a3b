//! Codec specifications as users write them: preset names and `--codec` strings.
//!
//! A spec is a `+`-separated list of stages, each `name[:key=value,flag,...]`:
//! `lowrank:r=32,w+vq:d=4,k=256,w+int:b=4,g=32`. Presets are names for such strings, so
//! `tpk convert --codec tenpak_x` and the explicit string give the same bytes.

use super::staged::Stage;
use crate::error::{Error, Result};
use crate::format::Dtype;

/// The named presets and the stage lists they stand for.
pub const PRESETS: &[(&str, &str)] = &[
    ("f32", "raw:dtype=f32"),
    ("f16", "raw:dtype=f16"),
    ("bf16", "raw:dtype=bf16"),
    ("int4_g8", "int:b=4,g=8"),
    ("int4_g16", "int:b=4,g=16"),
    ("int4_g32", "int:b=4,g=32"),
    ("int4_g64", "int:b=4,g=64"),
    ("int4_g128", "int:b=4,g=128"),
    ("int8", "int:b=8,g=32,sym"),
    ("int4_opt", "int:b=4,g=16,opt"),
    ("int4_residual", "int:b=4,g=16,opt+int:b=2,g=16"),
    ("pocketllm", "vq:d=4,k=256+int:b=4,g=16,opt"),
    ("tenpak_x", "lowrank:r=32,w+vq:d=4,k=256,w+int:b=4,g=32"),
];

/// The stage string of a preset name.
pub fn preset(name: &str) -> Option<&'static str> {
    PRESETS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// Parses a preset name, a ggml type name (`q4_k`) or a stage string into stages.
pub fn parse(spec: &str) -> Result<Vec<Stage>> {
    let text = preset(spec).unwrap_or(spec);
    let err = |reason: String| Error::CodecSpec {
        spec: spec.to_string(),
        reason,
    };
    let mut stages = Vec::new();
    for part in text.split('+') {
        let part = part.trim();
        let (name, args) = part.split_once(':').unwrap_or((part, ""));
        let mut kv: Vec<(&str, &str)> = Vec::new();
        for a in args.split(',').map(str::trim).filter(|a| !a.is_empty()) {
            kv.push(a.split_once('=').unwrap_or((a, "")));
        }
        let mut used = vec![false; kv.len()];
        let mut get = |key: &str| -> Option<&str> {
            let i = kv.iter().position(|(k, _)| *k == key)?;
            used[i] = true;
            Some(kv[i].1)
        };
        let num = |v: Option<&str>,
                   key: &str,
                   default: Option<u32>|
         -> std::result::Result<u32, String> {
            match v {
                Some(s) => s.parse().map_err(|_| format!("{key}={s} is not a number")),
                None => default.ok_or_else(|| format!("stage {name} needs {key}=")),
            }
        };
        let stage = match name {
            "raw" => {
                let d = get("dtype").unwrap_or("f16");
                Stage::Raw {
                    dtype: Dtype::parse(d).ok_or_else(|| err(format!("unknown dtype {d}")))?,
                }
            }
            "f32" | "f16" | "bf16" => Stage::Raw {
                dtype: Dtype::parse(name).expect("matched a dtype name"),
            },
            "int" => {
                let bits = num(get("b"), "b", None).map_err(err)?;
                let group = num(get("g"), "g", Some(32)).map_err(err)?;
                Stage::Int {
                    bits: u8::try_from(bits).map_err(|_| err(format!("b={bits}")))?,
                    group,
                    symmetric: get("sym").is_some(),
                    refine: get("opt").is_some(),
                }
            }
            "vq" => Stage::Vq {
                dim: num(get("d"), "d", Some(4)).map_err(err)?,
                k: num(get("k"), "k", Some(256)).map_err(err)?,
                weighted: get("w").is_some(),
            },
            "lowrank" | "lr" => Stage::LowRank {
                rank: num(get("r"), "r", None).map_err(err)?,
                weighted: get("w").is_some(),
            },
            other => match super::ggml_id(other) {
                Some(type_id) => Stage::Ggml { type_id },
                None => return Err(err(format!("unknown stage or preset {other:?}"))),
            },
        };
        if let Some(i) = used.iter().position(|u| !u) {
            return Err(err(format!("stage {name} has no option {:?}", kv[i].0)));
        }
        stage.check().map_err(err)?;
        stages.push(stage);
    }
    if stages.len() > super::staged::MAX_STAGES {
        return Err(err(format!(
            "more than {} stages",
            super::staged::MAX_STAGES
        )));
    }
    Ok(stages)
}

/// Renders stages back as a stage string that [`parse`] accepts.
pub fn to_string(stages: &[Stage]) -> String {
    let parts: Vec<String> = stages
        .iter()
        .map(|s| match *s {
            Stage::Raw { dtype } => format!("raw:dtype={dtype}"),
            Stage::Int {
                bits,
                group,
                symmetric,
                refine,
            } => format!(
                "int:b={bits},g={group}{}{}",
                if symmetric { ",sym" } else { "" },
                if refine { ",opt" } else { "" }
            ),
            Stage::Vq { dim, k, weighted } => {
                format!("vq:d={dim},k={k}{}", if weighted { ",w" } else { "" })
            }
            Stage::LowRank { rank, weighted } => {
                format!("lowrank:r={rank}{}", if weighted { ",w" } else { "" })
            }
            Stage::Ggml { type_id } => super::ggml_name(type_id),
        })
        .collect();
    parts.join("+")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_parses_and_round_trips() {
        for (name, text) in PRESETS {
            let a = parse(name).unwrap();
            let b = parse(text).unwrap();
            assert_eq!(a, b, "{name}");
            assert_eq!(parse(&to_string(&a)).unwrap(), a, "{name}");
        }
    }

    #[test]
    fn tenpak_x_is_three_stages() {
        let s = parse("tenpak_x").unwrap();
        assert_eq!(
            s,
            vec![
                Stage::LowRank {
                    rank: 32,
                    weighted: true
                },
                Stage::Vq {
                    dim: 4,
                    k: 256,
                    weighted: true
                },
                Stage::Int {
                    bits: 4,
                    group: 32,
                    symmetric: false,
                    refine: false
                },
            ]
        );
    }

    #[test]
    fn bad_specs_are_refused() {
        for bad in [
            "",
            "int",
            "int:b=9",
            "int:b=4,g=12",
            "vq:d=0",
            "lowrank",
            "int:b=4,zz=1",
            "nope",
            "int:b=x",
        ] {
            assert!(matches!(parse(bad), Err(Error::CodecSpec { .. })), "{bad}");
        }
    }
}
