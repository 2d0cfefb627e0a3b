#!/usr/bin/env python3
"""Conformance peer for tenpak's GGUF code, using llama.cpp's own `gguf` package.

  gguf_conformance.py read PATH    -> JSON dump of PATH as gguf.GGUFReader sees it
  gguf_conformance.py write PATH   -> writes PATH with gguf.GGUFWriter and prints the
                                      JSON of what it was asked to write
  gguf_conformance.py tok PATH TEXT... -> loads PATH (a tokenizer.json) with HF
                                      `tokenizers` and prints [{"ids", "decoded"}] per TEXT

The JSON shape is the same in both modes so the Rust side compares one structure:
{"alignment": int, "kv": [{"key", "type", "elem_type" (arrays only), "value"}],
 "tensors": [{"name", "dims" (GGUF ne order), "type", "n_bytes", "data_hex"}]}
"""
import json
import sys

try:
    import numpy as np
    import gguf
    from gguf import GGUFValueType as VT, GGMLQuantizationType as QT
except ImportError:  # the `tok` mode needs only `tokenizers`
    if sys.argv[1:2] != ["tok"]:
        raise


def plain(v):
    if isinstance(v, (np.generic,)):
        return v.item()
    if isinstance(v, list):
        return [plain(x) for x in v]
    return v


def read(path):
    r = gguf.GGUFReader(path)
    kvs = []
    for key, field in r.fields.items():
        if key.startswith("GGUF."):
            continue
        e = {"key": key, "type": int(field.types[0]), "value": plain(field.contents())}
        if field.types[0] == VT.ARRAY:
            e["elem_type"] = int(field.types[-1]) if len(field.types) > 1 else None
        kvs.append(e)
    tensors = []
    for t in r.tensors:
        raw = bytes(r.data[t.data_offset:t.data_offset + t.n_bytes])
        tensors.append({
            "name": t.name,
            "dims": [int(d) for d in t.shape],
            "type": int(t.tensor_type),
            "n_bytes": int(t.n_bytes),
            "data_hex": raw.hex(),
        })
    return {"alignment": int(r.alignment), "kv": kvs, "tensors": tensors}


def write(path):
    w = gguf.GGUFWriter(path, arch="llama")
    expect = [{"key": "general.architecture", "type": int(VT.STRING), "value": "llama"}]

    def kv(key, val, vt, sub=None):
        w.add_key_value(key, val, vt, sub_type=sub)
        e = {"key": key, "type": int(vt), "value": plain(val)}
        if sub is not None:
            e["elem_type"] = int(sub)
        expect.append(e)

    kv("general.name", "py-written ✓", VT.STRING)
    kv("llama.block_count", 3, VT.UINT32)
    kv("llama.attention.layer_norm_rms_epsilon", float(np.float32(1e-5)), VT.FLOAT32)
    kv("t.i32", -7, VT.INT32)
    kv("t.u64", 2**63 + 5, VT.UINT64)
    kv("t.f64", 0.1, VT.FLOAT64)
    kv("t.bool", True, VT.BOOL)
    kv("t.u8", 255, VT.UINT8)
    kv("tokenizer.ggml.tokens", ["<s>", "Ġa", "b c", ""], VT.ARRAY, VT.STRING)
    kv("tokenizer.ggml.token_type", [3, 1, 1, 5], VT.ARRAY, VT.INT32)
    kv("tokenizer.ggml.scores", [float(np.float32(x)) for x in (0.0, -1.5, 2.25)], VT.ARRAY, VT.FLOAT32)
    kv("t.a.u32", [1, 2, 4000000000], VT.ARRAY, VT.UINT32)
    kv("t.a.bool", [True, False, True], VT.ARRAY, VT.BOOL)

    rng = np.random.default_rng(1234)
    tensors = []

    def add(name, arr, raw_dtype=None):
        if raw_dtype is None:
            w.add_tensor(name, arr)
            ty = QT.F32 if arr.dtype == np.float32 else QT.F16
            dims = list(reversed(arr.shape))
        else:
            w.add_tensor(name, arr, raw_dtype=raw_dtype)
            ty = raw_dtype
            dims = list(reversed(gguf.quant_shape_from_byte_shape(arr.shape, raw_dtype)))
        tensors.append({"name": name, "dims": [int(d) for d in dims], "type": int(ty),
                        "n_bytes": int(arr.nbytes), "data_hex": arr.tobytes().hex()})

    add("output_norm.weight", rng.standard_normal(7).astype(np.float32))
    add("blk.0.attn_v.weight", rng.standard_normal((3, 5)).astype(np.float16))
    q = gguf.quants.quantize(rng.standard_normal((4, 64)).astype(np.float32), QT.Q8_0)
    add("token_embd.weight", q, QT.Q8_0)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return {"alignment": 32, "kv": expect, "tensors": tensors}


def tok(path, texts):
    from tokenizers import Tokenizer
    t = Tokenizer.from_file(path)
    out = []
    for text in texts:
        ids = t.encode(text).ids
        out.append({"ids": ids, "decoded": t.decode(ids, skip_special_tokens=False)})
    return out


def main():
    mode, path = sys.argv[1], sys.argv[2]
    if mode == "tok":
        out = tok(path, sys.argv[3:])
    else:
        out = read(path) if mode == "read" else write(path)
    json.dump(out, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
