#!/usr/bin/env python3
"""Build the smooth base from the grid base by exact per-channel rescaling (eval/SOURCES.md).

usage: make_smooth_base.py GRID_DIR SCALES.safetensors OUT_DIR

The model computes the same function (the checks in fetch-eval-assets.sh compare perplexity),
but its linear weights no longer sit on the Q4_1 grid the GGUF file was quantized to.
Every scale is applied in F32. Needs numpy and safetensors (scripts/requirements-test.txt).
"""
import json
import os
import shutil
import sys

import numpy as np
from safetensors.numpy import load_file, save_file


def main():
    grid, scales_path, out = sys.argv[1:4]
    w = load_file(os.path.join(grid, "model.safetensors"))
    sc = load_file(scales_path)
    cfg = json.load(open(os.path.join(grid, "config.json")))
    n_layers = cfg["num_hidden_layers"]
    n_head = cfg["num_attention_heads"]
    n_kv = cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or cfg["hidden_size"] // n_head
    group = n_head // n_kv
    for l in range(n_layers):
        p = f"model.layers.{l}."
        s = sc[p + "attn_in_scale"].astype(np.float32)
        s2 = sc[p + "mlp_in_scale"].astype(np.float32)
        t = sc[p + "v_row_scale"].astype(np.float32)
        u = sc[p + "up_row_scale"].astype(np.float32)
        w[p + "input_layernorm.weight"] = w[p + "input_layernorm.weight"] * s
        for n in ("q_proj", "k_proj", "v_proj"):
            w[p + f"self_attn.{n}.weight"] = w[p + f"self_attn.{n}.weight"] / s[None, :]
        w[p + "post_attention_layernorm.weight"] = w[p + "post_attention_layernorm.weight"] * s2
        for n in ("gate_proj", "up_proj"):
            w[p + f"mlp.{n}.weight"] = w[p + f"mlp.{n}.weight"] / s2[None, :]
        w[p + "self_attn.v_proj.weight"] = w[p + "self_attn.v_proj.weight"] * t[:, None]
        # o_proj input column for query head h, dim d reads the value of KV head h // group.
        cols = np.array([(h // group) * hd + d for h in range(n_head) for d in range(hd)])
        w[p + "self_attn.o_proj.weight"] = w[p + "self_attn.o_proj.weight"] / t[cols][None, :]
        w[p + "mlp.up_proj.weight"] = w[p + "mlp.up_proj.weight"] * u[:, None]
        w[p + "mlp.down_proj.weight"] = w[p + "mlp.down_proj.weight"] / u[None, :]
    os.makedirs(out, exist_ok=True)
    w = {k: np.ascontiguousarray(v.astype(np.float32)) for k, v in w.items()}
    tmp = os.path.join(out, "model.safetensors.tmp")
    save_file(w, tmp, metadata={"format": "pt"})
    os.replace(tmp, os.path.join(out, "model.safetensors"))
    for f in ("config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        if os.path.exists(os.path.join(grid, f)):
            shutil.copyfile(os.path.join(grid, f), os.path.join(out, f))


if __name__ == "__main__":
    main()
