//! Fuzz entry points that need the codec layer, shared by the cargo-fuzz targets and the
//! stable corpus tests.
//!
//! [`crate::format::fuzz_open`] stops at views because the format module must not depend on
//! codec math (data flows format -> codec). [`decode_all`] lives here, at crate level, and
//! goes one step further: every tensor of a valid file is decoded whole into f32, f16 and
//! bf16 buffers and row by row, and the row-wise values must equal the whole-tensor ones.

use half::{bf16, f16};

use crate::format::{OpenOptions, TensorView, TpkFile};

/// Tensors with more elements than this are skipped, so that a small hostile file declaring
/// a huge shape (a low-rank stage stores `rank * (rows + cols)` values for `rows * cols`
/// outputs) cannot make the fuzzer allocate gigabytes. 2^24 f32 values are 64 MiB.
pub const MAX_DECODE_ELEMENTS: u64 = 1 << 24;

/// Runs [`crate::format::fuzz_open`] on `data`, then, if `data` opens, decodes every tensor
/// of at most [`MAX_DECODE_ELEMENTS`] elements with every decode entry point. Errors are the
/// expected outcome for most inputs; only a panic, an abort, a huge allocation or row-wise
/// values that differ from the whole-tensor decode are findings.
pub fn decode_all(data: &[u8]) {
    crate::format::fuzz_open(data);
    let Ok(f) = TpkFile::from_bytes(
        data,
        OpenOptions {
            verify_checksums: false,
        },
    ) else {
        return;
    };
    for t in f.tensors() {
        decode_tensor(&t);
    }
}

/// `vec![zero; n]` with a fallible reservation: `None` instead of an abort.
fn try_zeroed<T: Clone>(n: usize, zero: T) -> Option<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).ok()?;
    v.resize(n, zero);
    Some(v)
}

fn decode_tensor(t: &TensorView<'_>) {
    let n_elements = t.n_elements();
    if n_elements > MAX_DECODE_ELEMENTS {
        // Not even `to_f32_vec`, whose fallible reservation libFuzzer's malloc limit would
        // still report; `tests/fuzz_corpus.rs` checks it returns `Error::OutOfMemory`.
        return;
    }
    let Ok(n) = usize::try_from(n_elements) else {
        return;
    };
    let m = t.matrix();
    let (Ok(rows), Ok(cols)) = (usize::try_from(m.rows), usize::try_from(m.cols)) else {
        return;
    };
    let Some(whole) = try_zeroed(n, 0f32) else {
        return;
    };
    let mut whole = whole;
    let ok = t.dequantize_into(&mut whole).is_ok();
    // A wrong-sized buffer is an error, never a panic.
    let _ = t.dequantize_into(&mut whole[..n.saturating_sub(1)]);
    if let Some(mut h) = try_zeroed(n, f16::ZERO) {
        let r = t.dequantize_f16_into(&mut h);
        assert_eq!(
            r.is_ok(),
            ok,
            "f16 decode agrees with f32 decode on success"
        );
    }
    if let Some(mut b) = try_zeroed(n, bf16::ZERO) {
        let r = t.dequantize_bf16_into(&mut b);
        assert_eq!(
            r.is_ok(),
            ok,
            "bf16 decode agrees with f32 decode on success"
        );
    }
    if let Ok(v) = t.to_f32_vec() {
        assert!(ok, "to_f32_vec succeeds only where dequantize_into does");
        assert!(
            v.iter()
                .zip(&whole)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "to_f32_vec equals dequantize_into"
        );
    }
    if rows.checked_mul(cols) != Some(n) {
        return;
    }
    // Row by row, and in uneven row ranges, the values must equal the whole decode.
    let Some(mut row) = try_zeroed(cols, 0f32) else {
        return;
    };
    for r in 0..rows {
        let res = t.dequantize_rows_into(r..r + 1, &mut row);
        if ok && res.is_ok() && cols > 0 {
            let want = &whole[r * cols..(r + 1) * cols];
            assert!(
                row.iter()
                    .zip(want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "row {r} decodes as in the whole tensor"
            );
        }
        if res.is_err() {
            break;
        }
    }
    // Out-of-range rows and a wrong-sized buffer are errors, never panics.
    let _ = t.dequantize_rows_into(rows..rows + 1, &mut row);
    let _ = t.dequantize_rows_into(0..1, &mut row[..cols.saturating_sub(1)]);
    let mut r0 = 0;
    let mut step = 3;
    while r0 < rows {
        let r1 = (r0 + step).min(rows);
        let Some(mut buf) = try_zeroed((r1 - r0) * cols, 0f32) else {
            return;
        };
        let res = t.dequantize_rows_into(r0..r1, &mut buf);
        if ok && res.is_ok() {
            assert!(
                buf.iter()
                    .zip(&whole[r0 * cols..r1 * cols])
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "rows {r0}..{r1} decode as in the whole tensor"
            );
        }
        r0 = r1;
        step = step * 2 + 1;
    }
}
