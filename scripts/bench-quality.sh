#!/usr/bin/env bash
# Bits versus quality on SmolLM2-135M: converts the smooth base with each codec, times the
# conversion, evaluates each file against the smooth base (llama.cpp's method: ctx 512, KLD vs
# the base's logits), then writes the table into BENCHMARKS.md between
# <!-- quality:begin --> and <!-- quality:end --> and plots bpw vs KLD (with llama.cpp's
# points from eval/llamacpp-anchors.md) into bench-quality.png beside it.
#
# usage: scripts/bench-quality.sh [--all] [--sweep] [--report-only]
#   default   int4_g8 int4_g32 int4_g128 int8 int4_opt int4_residual pocketllm tenpak_x, 48 windows
#             (each eval also runs the base's forward, ~3-4 min per codec on 2 cores)
#   --all     adds int4_g16 and int4_g64 (48 windows)
#   --sweep   adds a --codec sweep across bit widths at SWEEP_CHUNKS windows (default 16; the
#             table says so per row)
#   --report-only  rebuilds table and plot from the saved results
# env: TENPAK_EVAL_ASSETS (default ./eval-assets), CHUNKS (48), SWEEP_CHUNKS (16)
# Results are cached per codec in $ASSETS/bench/*.json (delete them to re-measure).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
assets=${TENPAK_EVAL_ASSETS:-$root/eval-assets}
chunks=${CHUNKS:-48}
sweep_chunks=${SWEEP_CHUNKS:-16}
all=0 sweep=0 report_only=0
for a in "$@"; do
  case "$a" in
    --all) all=1 ;;
    --sweep) sweep=1 ;;
    --report-only) report_only=1 ;;
    *) echo "bench-quality: unknown argument $a" >&2; exit 2 ;;
  esac
done
bench="$assets/bench"
mkdir -p "$bench"

presets=(int4_g8 int4_g32 int4_g128 int8 int4_opt int4_residual pocketllm tenpak_x)
[ "$all" = 1 ] && presets+=(int4_g16 int4_g64)
sweep_specs=(
  "int:b=3,g=32" "int:b=5,g=32" "int:b=6,g=32" "int:b=2,g=16,opt"
  "lowrank:r=32,w+int:b=3,g=32" "lowrank:r=32,w+int:b=4,g=32" "lowrank:r=64,w+int:b=3,g=32"
)

if [ "$report_only" = 0 ]; then
  [ -f "$assets/smooth-base/model.safetensors" ] && [ -f "$assets/.checked-v1" ] ||
    "$root/scripts/fetch-eval-assets.sh" "$assets"
  (cd "$root" && cargo build --release --quiet --bin tpk)
  tpk="$root/target/release/tpk"
  base="$assets/smooth-base"
  run() { # SPEC CHUNKS
    local spec=$1 n=$2 key out t0 t1
    key=$(printf '%s' "$spec" | tr ':,=+' '_.-~')
    [ -f "$bench/$key.json" ] && { echo "cached: $spec" >&2; return; }
    out="$bench/$key.tpk"
    echo "== $spec: convert" >&2
    t0=$(date +%s.%N)
    "$tpk" convert "$base" --codec "$spec" -o "$out" >"$bench/$key.convert.txt" 2>&1
    t1=$(date +%s.%N)
    echo "== $spec: eval ($n windows)" >&2
    "$tpk" eval "$out" --text "$root/eval/enwiki_excerpt.txt" --ctx 512 --chunks "$n" \
      --baseline "$base" --json >"$bench/$key.eval.json"
    python3 - "$spec" "$out" "$t0" "$t1" "$bench/$key.eval.json" "$bench/$key.json" <<'PY'
import json, os, sys
spec, out, t0, t1, ev, dst = sys.argv[1:7]
r = {"spec": spec, "bytes": os.path.getsize(out), "convert_s": float(t1) - float(t0),
     "eval": json.load(open(ev))}
json.dump(r, open(dst + ".part", "w"), indent=1)
os.replace(dst + ".part", dst)
PY
    rm -f "$out"
  }
  for p in "${presets[@]}"; do run "$p" "$chunks"; done
  if [ "$sweep" = 1 ]; then for p in "${sweep_specs[@]}"; do run "$p" "$sweep_chunks"; done; fi
fi

python3 -c 'import matplotlib' 2>/dev/null ||
  python3 -m pip install --quiet --disable-pip-version-check matplotlib
machine="$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(uname -sm)"
python3 "$root/scripts/bench_quality_report.py" \
  --results "$bench" --base "$assets/smooth-base" --anchors "$root/eval/llamacpp-anchors.md" \
  --md "$root/BENCHMARKS.md" --png "$root/bench-quality.png" \
  --machine "$machine" --command "scripts/bench-quality.sh $*"
