//! `tpk inspect` and `tpk verify`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use tenpak::inspect::{report, GroupReport, Report};
use tenpak::TpkFile;

use super::{out, SortKey};

pub fn run(path: &Path, json: bool, list: bool, sort: SortKey) -> Result<()> {
    let f = TpkFile::open(path)?;
    let mut r = report(&f);
    match sort {
        SortKey::Name => r.tensors.sort_by(|a, b| a.name.cmp(&b.name)),
        SortKey::Size => r
            .tensors
            .sort_by(|a, b| b.bytes.total_cmp(&a.bytes).then(a.name.cmp(&b.name))),
        SortKey::Bpw => r
            .tensors
            .sort_by(|a, b| b.bpw.total_cmp(&a.bpw).then(a.name.cmp(&b.name))),
    }
    if json {
        let mut s = serde_json::to_string_pretty(&r).context("serializing the report")?;
        s.push('\n');
        return out(&s);
    }
    out(&text(path, &r, list))
}

pub fn verify(path: &Path) -> Result<()> {
    let f = TpkFile::open(path)?;
    f.verify()?;
    out(&format!(
        "{}: OK ({} sections, {} tensors, {} bytes, all CRC32s match)\n",
        path.display(),
        f.sections().len(),
        f.tensor_count(),
        f.len()
    ))
}

/// Human-readable size: 1.23 MB (decimal units, as file managers show).
fn human(bytes: f64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.2} {}", units[u])
    }
}

/// A bits-per-weight figure in at most five columns.
fn bpw5(x: f64) -> String {
    if x < 10.0 {
        format!("{x:.3}")
    } else if x < 100.0 {
        format!("{x:.2}")
    } else if x < 100_000.0 {
        format!("{x:.0}")
    } else {
        "huge".into()
    }
}

/// Fits `s` into `w` columns, keeping its end (the distinctive part of a tensor name).
fn fit(s: &str, w: usize) -> String {
    let n = s.chars().count();
    if n <= w {
        s.to_string()
    } else {
        let tail: String = s.chars().skip(n - (w - 1)).collect();
        format!("~{tail}")
    }
}

fn group_table(s: &mut String, title: &str, groups: &[GroupReport], total_bytes: f64) {
    let _ = writeln!(
        s,
        "\n{:<28} {:>7} {:>14} {:>11} {:>6} {:>6}",
        title, "tensors", "weights", "bytes", "share", "bpw"
    );
    for g in groups {
        let _ = writeln!(
            s,
            "{:<28} {:>7} {:>14} {:>11} {:>5.1}% {:>6.3}",
            fit(&g.name, 28),
            g.tensors,
            g.elements,
            human(g.bytes),
            100.0 * g.bytes / total_bytes.max(1.0),
            g.bpw
        );
    }
}

fn text(path: &Path, r: &Report, list: bool) -> String {
    let mut s = String::new();
    let rest = format!(
        ".tpk {}, {} tensors, {} weights",
        r.version, r.tensor_count, r.elements
    );
    // The path takes what the 80-column line leaves (at least 20 columns).
    let room = 78usize.saturating_sub(rest.chars().count()).max(20);
    let _ = writeln!(s, "{}: {rest}", fit(&path.display().to_string(), room));
    if list {
        let _ = writeln!(
            s,
            "\n{:<33} {:<16} {:>13} {:>9} {:>5}",
            "tensor", "codec", "shape", "bytes", "bpw"
        );
        for t in &r.tensors {
            let shape: Vec<String> = t.shape.iter().map(u64::to_string).collect();
            let _ = writeln!(
                s,
                "{:<33} {:<16} {:>13} {:>9} {:>5}",
                fit(&t.name, 33),
                fit(&t.codec, 16),
                fit(&shape.join("x"), 13),
                human(t.bytes),
                bpw5(t.bpw)
            );
        }
    }
    let total = r.file_size as f64;
    group_table(&mut s, "codec", &r.by_codec, total);
    group_table(&mut s, "role", &r.by_role, total);
    let _ = writeln!(s);
    let _ = writeln!(s, "file size     {} ({} bytes)", human(total), r.file_size);
    let _ = writeln!(
        s,
        "bits/weight   {:.4} (whole file, {} weights)",
        r.bpw, r.elements
    );
    let _ = writeln!(
        s,
        "overhead      {} (header, directory, metadata {})",
        human(r.overhead_bytes as f64),
        human(r.metadata_bytes as f64)
    );
    let _ = writeln!(
        s,
        "vs source     {:.3}x smaller than {} in its source dtypes",
        r.ratio_vs_source,
        human(r.source_bytes as f64)
    );
    let _ = writeln!(
        s,
        "vs FP32       {:.3}x smaller than {} in FP32",
        r.ratio_vs_fp32,
        human(r.fp32_bytes as f64)
    );
    s
}
