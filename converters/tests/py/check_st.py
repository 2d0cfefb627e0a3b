"""Peer check of tenpak's safetensors files against the reference `safetensors` package.

usage: check_st.py read DIR   -> prints JSON {name: {dtype, shape, hex}} for every tensor of
                                 every *.safetensors in DIR, parsed by safetensors.deserialize,
                                 cross-checked with safetensors.numpy for F32/F16, and the
                                 index (if any) checked against the shards.
       check_st.py write FILE -> writes known F32/F16 arrays with safetensors.numpy.save_file.
Exit code 3 when the safetensors or numpy package is missing.
"""
import json
import os
import sys

try:
    import numpy as np
    import safetensors
    from safetensors import safe_open
    from safetensors.numpy import save_file
except ImportError as e:  # pragma: no cover
    print(f"missing python package: {e}", file=sys.stderr)
    sys.exit(3)

NAMES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}


def read(d):
    out = {}
    files = sorted(f for f in os.listdir(d) if f.endswith(".safetensors"))
    owner = {}
    for f in files:
        path = os.path.join(d, f)
        with open(path, "rb") as fh:
            raw = fh.read()
        tensors = safetensors.deserialize(raw)
        with safe_open(path, framework="numpy") as np_view:
            np_keys = set(np_view.keys())
        for name, t in tensors:
            dt = NAMES.get(str(t["dtype"]), str(t["dtype"]))
            data = bytes(t["data"])
            assert name in np_keys, name
            if dt in ("F32", "F16"):
                with safe_open(path, framework="numpy") as sf:
                    arr = sf.get_tensor(name)
                assert list(arr.shape) == list(t["shape"]), name
                assert arr.tobytes() == data, name
            assert name not in out, f"duplicate {name}"
            out[name] = {"dtype": dt, "shape": list(t["shape"]), "hex": data.hex()}
            owner[name] = f
    idx = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as fh:
            wm = json.load(fh)["weight_map"]
        assert wm == owner, "index weight_map disagrees with shards"
    print(json.dumps(out))


def write(path):
    a = (np.arange(12, dtype=np.float32).reshape(3, 4) - 5.5) * 0.25
    b = (np.arange(10, dtype=np.float32) * -1.5 + 3.0).astype(np.float16)
    c = np.array([[1e-8, -2.0, 65504.0]], dtype=np.float32)
    save_file({"a.weight": a, "b.bias": b, "c": c}, path, metadata={"format": "np"})


if __name__ == "__main__":
    {"read": read, "write": write}[sys.argv[1]](sys.argv[2])
