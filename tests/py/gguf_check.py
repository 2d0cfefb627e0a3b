"""Checks a GGUF file written by `tpk export --to gguf` with gguf-py (the reference reader).

usage: gguf_check.py FILE.gguf EXPECT_DIR MODE
  EXPECT_DIR/<gguf name>.f32 holds tenpak's decode of each tensor (GGUF row order).
  MODE "values": gguf-py's dequantize must equal it exactly.
  MODE "requant": q8_0/q4_0 tensors' bytes must equal gguf.quants.quantize of it.
Also checks the llama KVs and their types. Prints OK or raises.
"""
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q, GGUFValueType as VT

path, exp_dir, mode = sys.argv[1], sys.argv[2], sys.argv[3]
r = gguf.GGUFReader(path)

def field(name):
    f = r.fields.get(name)
    assert f is not None, f"missing KV {name}"
    return f

for key, vt in [
    ("llama.block_count", VT.UINT32),
    ("llama.context_length", VT.UINT32),
    ("llama.embedding_length", VT.UINT32),
    ("llama.feed_forward_length", VT.UINT32),
    ("llama.attention.head_count", VT.UINT32),
    ("llama.attention.head_count_kv", VT.UINT32),
    ("llama.attention.layer_norm_rms_epsilon", VT.FLOAT32),
    ("llama.rope.freq_base", VT.FLOAT32),
    ("general.file_type", VT.UINT32),
    ("general.quantization_version", VT.UINT32),
]:
    f = field(key)
    assert f.types == [vt], f"{key}: types {f.types}"
assert field("general.architecture").contents() == "llama"
assert field("tokenizer.ggml.model").contents() == "gpt2"
assert len(field("tokenizer.ggml.tokens").contents()) > 0
assert len(field("tokenizer.ggml.merges").contents()) > 0

n = 0
for t in r.tensors:
    exp = np.fromfile(os.path.join(exp_dir, t.name + ".f32"), dtype="<f4")
    got = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1)
    if mode == "requant" and t.tensor_type in (Q.Q8_0, Q.Q4_0):
        rows = exp.reshape(-1, int(t.shape[0]))
        want = gguf.quants.quantize(rows, t.tensor_type).reshape(-1)
        have = np.asarray(t.data).reshape(-1).view(np.uint8)
        assert np.array_equal(want.view(np.uint8), have), f"{t.name}: bytes differ from gguf.quants.quantize"
        n += 1
        continue
    if mode == "values":
        assert got.shape == exp.shape, f"{t.name}: {got.shape} vs {exp.shape}"
        assert np.array_equal(got.view(np.uint32), exp.view(np.uint32)) or np.array_equal(got, exp), \
            f"{t.name} ({t.tensor_type.name}): max diff {np.max(np.abs(got - exp))}"
        n += 1
assert n > 0, "nothing checked"
print("OK", n)
