"""Loads an exported folder with the `safetensors` package and compares it with raw f32 dumps.

usage: check_export.py OUT_DIR EXPECTED_DIR
EXPECTED_DIR holds NAME.f32 (little-endian f32 of the values the export should hold, already
rounded to the export dtype) for every tensor. Exit 0 = match, 1 = mismatch, 77 = missing
Python packages (the caller decides whether that is a skip).
"""
import json
import os
import sys

try:
    import numpy as np
    import safetensors
    from safetensors.numpy import load_file
except ImportError as e:  # pragma: no cover
    print(f"SKIP: {e}")
    sys.exit(77)


def main():
    out, exp = sys.argv[1], sys.argv[2]
    idx = os.path.join(out, "model.safetensors.index.json")
    if os.path.exists(idx):
        files = sorted(set(json.load(open(idx))["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    tensors = {}
    for f in files:
        path = os.path.join(out, f)
        # safetensors.deserialize parses every dtype (numpy has no bfloat16); load_file is
        # the usual entry point, checked too where numpy can hold the dtype.
        for k, info in safetensors.deserialize(open(path, "rb").read()):
            assert k not in tensors, f"{k} twice"
            raw = bytes(info["data"])
            dt = info["dtype"].upper()
            if dt == "BF16":
                v = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
            elif dt == "F16":
                v = np.frombuffer(raw, "<f2")
            elif dt == "F32":
                v = np.frombuffer(raw, "<f4")
            else:
                print(f"{k}: unexpected dtype {dt}")
                return 1
            tensors[k] = v.reshape(info["shape"])
        if all(t.upper() != "BF16" for t in [i["dtype"] for _, i in safetensors.deserialize(open(path, "rb").read())]):
            for k, v in load_file(path).items():
                if not np.array_equal(v, tensors[k]):
                    print(f"{k}: load_file and deserialize disagree")
                    return 1
    want = {n[: -len(".f32")] for n in os.listdir(exp) if n.endswith(".f32")}
    if set(tensors) != want:
        print(f"tensor names differ: {sorted(set(tensors) ^ want)}")
        return 1
    for name, v in sorted(tensors.items()):
        e = np.fromfile(os.path.join(exp, name + ".f32"), dtype="<f4")
        got = v.astype(np.float32).reshape(-1)
        if got.shape != e.shape or not np.array_equal(got.view(np.uint32), e.view(np.uint32)):
            print(f"{name}: values differ")
            return 1
    print(f"OK {len(tensors)} tensors from {len(files)} file(s)")
    return 0


sys.exit(main())
