#!/usr/bin/env python3
"""Compares tpk's ggml-type quantizers with ggml's own quantizer (no imatrix).

usage: ggml_quant_compare.py GGML_REF_QUANT TPK_ROUNDTRIP WORKDIR TINY_FIXTURE_DIR [SMOOTH_BASE_DIR]

GGML_REF_QUANT is scripts/ggml_ref_quant.c built against ggml, TPK_ROUNDTRIP is
examples/ggml_quant_roundtrip.rs; both take `TYPE N_PER_ROW IN.f32 OUT.f32` and round-trip the
data through their quantizer. Every data set is a stream of 256-element rows, so blocks are the
same on both sides. Prints a markdown table with the relative MSE sum((x-y)^2)/sum(x^2) of each
side and their ratio, and, for information, the same ratio for the x^2-weighted error
sum(x^2 (x-y)^2)/sum(x^4) (the objective ggml's reference K-quant/iq4 searches weight towards).
Run by scripts/llamacpp-check.sh --quant.
"""
import os
import subprocess
import sys

import numpy as np
from safetensors.numpy import load_file

TYPES = ["q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "iq4_nl", "iq4_xs"]
ggml_bin, tpk_bin, work, tiny = sys.argv[1:5]
smooth = sys.argv[5] if len(sys.argv) > 5 else None
os.makedirs(work, exist_ok=True)

def blocks256(arrs):
    x = np.concatenate([a.astype(np.float32).ravel() for a in arrs])
    return x[: len(x) // 256 * 256]

data = {}
data["gaussian 256x4096"] = np.random.default_rng(0).standard_normal((256, 4096)).astype(np.float32).ravel()
t = load_file(os.path.join(tiny, "model.safetensors"))
data["tiny fixture, 2-D tensors"] = blocks256([t[k] for k in sorted(t) if t[k].ndim == 2])
if smooth:
    s = load_file(os.path.join(smooth, "model.safetensors"))
    names = [f"model.layers.{l}.{p}.weight" for l in (0, 15, 29)
             for p in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                       "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")]
    data["SmolLM2 smooth, layers 0/15/29 linears"] = blocks256([s[n] for n in names])

print("| type | data | elements | ggml rel MSE | tpk rel MSE | tpk / ggml | x²-weighted: tpk / ggml |")
print("|---|---|---|---|---|---|---|")
for ty in TYPES:
    for di, (dname, x) in enumerate(data.items()):
        src = os.path.join(work, f"d{di}.f32")
        if not os.path.exists(src) or os.path.getsize(src) != x.nbytes:
            x.astype("<f4").tofile(src)
        sse, wse = {}, {}
        x64 = x.astype(np.float64)
        for side, b in (("ggml", ggml_bin), ("tpk", tpk_bin)):
            out = os.path.join(work, f"d{di}.{ty}.{side}.f32")
            subprocess.run([b, ty, "256", src, out], check=True)
            y = np.fromfile(out, dtype="<f4")
            e2 = (x64 - y) ** 2
            sse[side] = float(np.sum(e2) / np.sum(x64**2))
            wse[side] = float(np.sum(x64**2 * e2) / np.sum(x64**4))
        print(f"| {ty} | {dname} | {len(x):,} | {sse['ggml']:.4e} | {sse['tpk']:.4e} | {sse['tpk'] / sse['ggml']:.4f} | {wse['tpk'] / wse['ggml']:.3f} |", flush=True)
