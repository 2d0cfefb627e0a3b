#!/usr/bin/env python3
# Conformance oracle for tenpak::codec::ggml against llama.cpp's own Python package.
# Install: pip install gguf numpy        (tested with gguf 0.19.0, numpy 2.2)
#
# Usage: python3 scripts/ggml_conformance.py DIR
# DIR is written by tests/ggml_conformance.rs and holds manifest.txt, whose lines are
#   <case> <type_name> <type_id> <n> <has_weighted 0|1>
# and per case: <case>.src.f32 (input), <case>.q (our bytes, no importance), <case>.deq.f32
# (our dequantization of <case>.q), and if has_weighted: <case>.w.f32 (importance) and
# <case>.wq (our bytes quantized with that importance).
#
# Checks, per case:
#  1. gguf.quants.dequantize(our bytes) == our f32, bit for bit (every type).
#  2. gguf.quants.quantize(src) == our bytes exactly (types gguf-py can quantize).
#  3. quality: our error <= gguf-py reference quantizer's error, unweighted and (with importance)
#     importance-weighted (types gguf-py can quantize).
# Exit 0 = all pass, 1 = a check failed, 2 = gguf/numpy not importable (caller decides to skip).
import os
import sys

try:
    import numpy as np
    import gguf
    from gguf.quants import quantize, dequantize
    from gguf.constants import GGMLQuantizationType as T
except ImportError as e:  # pragma: no cover - environment dependent
    print(f"SKIP: cannot import gguf/numpy ({e}); pip install gguf numpy")
    sys.exit(2)

CAN_QUANTIZE = {T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0}


def load_f32(path):
    return np.fromfile(path, dtype="<f4")


def main(d):
    failures = []
    lines = open(os.path.join(d, "manifest.txt")).read().split("\n")
    try:
        from importlib.metadata import version

        gv = version("gguf")
    except Exception:  # pragma: no cover - metadata missing in odd installs
        gv = "?"
    print(f"gguf-py {gv}, numpy {np.__version__}")
    for line in lines:
        if not line.strip():
            continue
        case, name, tid, n, has_w = line.split()
        qt = T(int(tid))
        n = int(n)
        p = lambda ext: os.path.join(d, f"{case}.{ext}")
        src = load_f32(p("src.f32"))
        ours_q = np.fromfile(p("q"), dtype=np.uint8)
        ours_deq = load_f32(p("deq.f32"))
        assert src.size == n and ours_deq.size == n

        # 1. dequantization, bit-exact
        ref_deq = np.asarray(dequantize(ours_q, qt), dtype=np.float32).reshape(-1)
        if ref_deq.size != n or not np.array_equal(ref_deq.view(np.uint32), ours_deq.view(np.uint32)):
            bad = np.nonzero(ref_deq.view(np.uint32) != ours_deq.view(np.uint32))[0] if ref_deq.size == n else []
            failures.append(f"{case}: dequantize differs at {len(bad)} elems, first {bad[:5]}")
            continue
        msg = f"{case:18} dequant bit-exact"

        if qt in CAN_QUANTIZE:
            # 2. quantization bytes
            ref_q = np.asarray(quantize(src, qt)).view(np.uint8).reshape(-1)
            if not np.array_equal(ref_q, ours_q):
                bad = np.nonzero(ref_q != ours_q)[0] if ref_q.size == ours_q.size else []
                failures.append(f"{case}: quantize bytes differ ({len(bad)} bytes, first {bad[:5]})")
                continue
            msg += ", quantize bytes identical"
            # 3. quality vs the reference quantizer
            ref_rt = np.asarray(dequantize(ref_q, qt), dtype=np.float32).reshape(-1)
            e_ref = float(np.sum((src.astype(np.float64) - ref_rt) ** 2))
            e_ours = float(np.sum((src.astype(np.float64) - ours_deq) ** 2))
            if e_ours > e_ref:
                failures.append(f"{case}: our MSE {e_ours} > gguf-py {e_ref}")
            if has_w == "1":
                w = load_f32(p("w.f32")).astype(np.float64)
                wq = np.fromfile(p("wq"), dtype=np.uint8)
                ours_w = np.asarray(dequantize(wq, qt), dtype=np.float32).reshape(-1)
                we_ours = float(np.sum(w * (src - ours_w.astype(np.float64)) ** 2))
                we_ref = float(np.sum(w * (src - ref_rt.astype(np.float64)) ** 2))
                if we_ours > we_ref:
                    failures.append(f"{case}: weighted error {we_ours} > gguf-py {we_ref}")
                msg += f", weighted err ours/gguf-py = {we_ours / max(we_ref, 1e-30):.4f}"
        print(msg)
    if failures:
        for f in failures:
            print("FAIL:", f)
        sys.exit(1)
    print("ALL OK")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__ or "usage: ggml_conformance.py DIR")
        sys.exit(1)
    main(sys.argv[1])
