#!/usr/bin/env python3
"""Independent numpy (float64) reference of the LLaMA-family forward pass, for tenpak's eval tests.

Usage: ref_forward.py DIR
DIR/manifest.json = {"config": <HF config.json>, "tokens": [ids],
                     "tensors": {hf_name: {"shape": [...], "file": "relative.f32"}}}
Each tensor file holds little-endian f32 values, row-major.
Writes DIR/logits.f32: little-endian f32 logits, [len(tokens)][vocab_size].
Written from the Hugging Face modelling description (RMSNorm, rotate_half RoPE, GQA, SwiGLU).
"""
import json
import os
import sys

import numpy as np


def main(d):
    with open(os.path.join(d, "manifest.json")) as f:
        man = json.load(f)
    cfg = man["config"]
    toks = np.array(man["tokens"], dtype=np.int64)

    def get(name):
        meta = man["tensors"].get(name)
        if meta is None:
            return None
        a = np.fromfile(os.path.join(d, meta["file"]), dtype="<f4").astype(np.float64)
        return a.reshape(meta["shape"])

    hid = cfg["hidden_size"]
    nh = cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads", nh)
    hd = cfg.get("head_dim") or hid // nh
    eps = cfg["rms_norm_eps"]
    theta = cfg.get("rope_theta", 10000.0)
    T = len(toks)

    def rms(x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w

    def lin(x, name):
        y = x @ get(name + ".weight").T
        b = get(name + ".bias")
        return y if b is None else y + b

    inv = theta ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)  # [hd/2]
    ang = np.arange(T, dtype=np.float64)[:, None] * inv[None, :]  # [T, hd/2]
    cos = np.concatenate([np.cos(ang)] * 2, axis=-1)  # [T, hd]
    sin = np.concatenate([np.sin(ang)] * 2, axis=-1)

    def rope(x):  # x [heads, T, hd]
        h = hd // 2
        rot = np.concatenate([-x[..., h:], x[..., :h]], axis=-1)
        return x * cos + rot * sin

    emb = get("model.embed_tokens.weight")
    x = emb[toks]
    causal = np.triu(np.ones((T, T), dtype=bool), k=1)
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        xn = rms(x, get(p + "input_layernorm.weight"))
        q = lin(xn, p + "self_attn.q_proj").reshape(T, nh, hd).transpose(1, 0, 2)
        k = lin(xn, p + "self_attn.k_proj").reshape(T, nkv, hd).transpose(1, 0, 2)
        v = lin(xn, p + "self_attn.v_proj").reshape(T, nkv, hd).transpose(1, 0, 2)
        q, k = rope(q), rope(k)
        rep = nh // nkv
        k = np.repeat(k, rep, axis=0)  # head h uses kv head h // rep
        v = np.repeat(v, rep, axis=0)
        s = q @ k.transpose(0, 2, 1) / np.sqrt(hd)
        s[:, causal] = -np.inf
        s = s - s.max(axis=-1, keepdims=True)
        pr = np.exp(s)
        pr /= pr.sum(axis=-1, keepdims=True)
        a = (pr @ v).transpose(1, 0, 2).reshape(T, nh * hd)
        x = x + lin(a, p + "self_attn.o_proj")
        xn = rms(x, get(p + "post_attention_layernorm.weight"))
        g = lin(xn, p + "mlp.gate_proj")
        u = lin(xn, p + "mlp.up_proj")
        x = x + lin(g / (1.0 + np.exp(-g)) * u, p + "mlp.down_proj")
    x = rms(x, get("model.norm.weight"))
    head = emb if cfg.get("tie_word_embeddings", False) else get("lm_head.weight")
    logits = x @ head.T
    logits.astype("<f4").tofile(os.path.join(d, "logits.f32"))


if __name__ == "__main__":
    main(sys.argv[1])
