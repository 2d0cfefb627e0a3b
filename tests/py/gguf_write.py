"""Writes a LLaMA GGUF with gguf-py's GGUFWriter, as llama.cpp's converter would.

usage: gguf_write.py MODEL_DIR OUT.gguf
MODEL_DIR holds an f32 model.safetensors, config.json and tokenizer.json. Norms are F32,
the embedding and lm_head F16, the attention projections Q8_0, the MLP F32; attn_q/attn_k
rows are permuted for RoPE as llama.cpp's converter does.
"""
import json
import os
import struct
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q

src, out = sys.argv[1], sys.argv[2]
cfg = json.load(open(os.path.join(src, "config.json")))
tok = json.load(open(os.path.join(src, "tokenizer.json")))

with open(os.path.join(src, "model.safetensors"), "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
    base = 8 + n
    blob = open(os.path.join(src, "model.safetensors"), "rb").read()
tensors = {}
for name, info in header.items():
    if name == "__metadata__":
        continue
    assert info["dtype"] == "F32"
    a, b = info["data_offsets"]
    tensors[name] = np.frombuffer(blob[base + a:base + b], dtype="<f4").reshape(info["shape"])

LAYER = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
GLOBAL = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}

def gguf_name(hf):
    if hf in GLOBAL:
        return GLOBAL[hf]
    parts = hf.split(".", 3)
    return f"blk.{parts[2]}.{LAYER[parts[3]]}"

def permute(w, n_head):
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

heads, kv_heads = cfg["num_attention_heads"], cfg["num_key_value_heads"]
w = gguf.GGUFWriter(out, "llama")
w.add_name("gguf-py test model")
w.add_block_count(cfg["num_hidden_layers"])
w.add_context_length(cfg["max_position_embeddings"])
w.add_embedding_length(cfg["hidden_size"])
w.add_feed_forward_length(cfg["intermediate_size"])
w.add_head_count(heads)
w.add_head_count_kv(kv_heads)
w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
w.add_rope_freq_base(cfg.get("rope_theta", 10000.0))
w.add_rope_dimension_count(cfg["hidden_size"] // heads)
w.add_vocab_size(cfg["vocab_size"])
w.add_file_type(7)
w.add_tokenizer_model("gpt2")
w.add_tokenizer_pre("default")
vocab = tok["model"]["vocab"]
tokens = [None] * cfg["vocab_size"]
for t, i in vocab.items():
    tokens[i] = t
for a in tok.get("added_tokens", []):
    tokens[a["id"]] = a["content"]
types = [1 if t is not None else 5 for t in tokens]
tokens = [t if t is not None else f"[PAD{i}]" for i, t in enumerate(tokens)]
w.add_token_list(tokens)
w.add_token_types(types)
merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
w.add_token_merges(merges)

for hf, arr in tensors.items():
    name = gguf_name(hf)
    if name.endswith("attn_q.weight"):
        arr = permute(arr, heads)
    elif name.endswith("attn_k.weight"):
        arr = permute(arr, kv_heads)
    if "norm" in name or "ffn" in name:
        w.add_tensor(name, np.ascontiguousarray(arr, dtype=np.float32))
    elif name in ("token_embd.weight", "output.weight"):
        w.add_tensor(name, np.ascontiguousarray(arr, dtype=np.float16))
    else:
        q = gguf.quants.quantize(np.ascontiguousarray(arr, dtype=np.float32), Q.Q8_0)
        w.add_tensor(name, q, raw_dtype=Q.Q8_0)

w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
print("OK")
