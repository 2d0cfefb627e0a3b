#!/usr/bin/env bash
# Bits versus quality on SmolLM2-135M: converts the smooth base with each codec, times the
# conversion, evaluates each file against the smooth base (llama.cpp's method: ctx 512, KLD vs
# the base's logits), then writes the table into BENCHMARKS.md between
# <!-- quality:begin --> and <!-- quality:end --> and plots bpw vs KLD (with llama.cpp's
# points from eval/llamacpp-anchors.md) into bench-quality.png beside it.
#
# usage: scripts/bench-quality.sh [--no-sweep] [--report-only]
#   Every preset, in this order: tenpak_x int4_g32 int8 int4_opt pocketllm int4_residual
#   int4_g128 int4_g64 int4_g16 int4_g8; then the ggml block types that llama.cpp's anchors
#   use; then a --codec sweep across bit widths; all at 48 windows. The base's logits are
#   computed once and saved (`tpk eval --save-logits`, 2.4 GB under $ASSETS/bench/base), so each
#   row costs one forward pass of its own (~300 tokens/s on 2 cores: ~1.5 min per row).
#   A time budget (BUDGET_MIN, default 38 minutes, asset fetching excluded) stops before a
#   run that would not finish in time; the skipped codecs are listed, and a second invocation
#   completes them (results are cached).
#   --no-sweep     presets only (no ggml rows, no sweep)
#   --report-only  rebuilds table and plot from the saved results
# env: TPK (a tpk binary to use instead of building one), TENPAK_EVAL_ASSETS (default ./eval-assets), CHUNKS (48), SWEEP_CHUNKS (= CHUNKS; rows with fewer windows are marked and run the base live), BUDGET_MIN (38)
# Results are cached per codec in $ASSETS/bench/*.json (delete them to re-measure).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
assets=${TENPAK_EVAL_ASSETS:-$root/eval-assets}
chunks=${CHUNKS:-48}
sweep_chunks=${SWEEP_CHUNKS:-$chunks}
budget=$(( ${BUDGET_MIN:-38} * 60 ))
sweep=1 report_only=0
for a in "$@"; do
  case "$a" in
    --no-sweep) sweep=0 ;;
    --report-only) report_only=1 ;;
    *) echo "bench-quality: unknown argument $a" >&2; exit 2 ;;
  esac
done
bench="$assets/bench"
mkdir -p "$bench"

presets=(tenpak_x int4_g32 int8 int4_opt pocketllm int4_residual int4_g128 int4_g64 int4_g16 int4_g8)
sweep_specs=(
  q8_0 q6_k q5_0 q4_k q4_0 iq4_nl
  "int:b=3,g=32" "int:b=5,g=32" "int:b=6,g=32" "int:b=2,g=16,opt"
  "lowrank:r=32,w+int:b=3,g=32" "lowrank:r=32,w+int:b=4,g=32" "lowrank:r=64,w+int:b=3,g=32"
)

if [ "$report_only" = 0 ]; then
  [ -f "$assets/smooth-base/model.safetensors" ] && [ -f "$assets/.checked-v1" ] ||
    "$root/scripts/fetch-eval-assets.sh" "$assets"
  if [ -z "${TPK:-}" ]; then (cd "$root" && cargo build --release --quiet --bin tpk); fi
  tpk=${TPK:-$root/target/release/tpk}
  base="$assets/smooth-base"
  start=$SECONDS last=0 skipped=()
  # The reference logits, once per window count: every row reads them instead of re-running
  # the base (bit-identical figures, half the time).
  base_logits() { # CHUNKS -> path
    local n=$1 d="$bench/base"
    mkdir -p "$d"
    if [ ! -f "$d/c$n.logits" ]; then
      echo "== smooth base: eval ($n windows), saving its logits" >&2
      "$tpk" eval "$base" --text "$root/eval/enwiki_excerpt.txt" --ctx 512 --chunks "$n" \
        --json --save-logits "$d/c$n.logits" >"$d/c$n.eval.json"
    fi
    echo "$d/c$n.logits"
  }
  ref=$(base_logits "$chunks")
  run() { # SPEC CHUNKS
    local spec=$1 n=$2 key out t0 t1 s0
    key=$(printf '%s' "$spec" | sed 's/[^A-Za-z0-9_]/_/g')
    [ -f "$bench/$key.json" ] && { echo "cached: $spec" >&2; return; }
    # Scale the last run's duration by the window count to predict this one.
    if [ $(( SECONDS - start + last * n / chunks )) -gt "$budget" ]; then
      skipped+=("$spec"); echo "skipped (time budget): $spec" >&2; return
    fi
    s0=$SECONDS
    out="$bench/$key.tpk"
    echo "== $spec: convert" >&2
    t0=$(date +%s.%N)
    "$tpk" convert "$base" --codec "$spec" -o "$out" >"$bench/$key.convert.txt" 2>&1
    t1=$(date +%s.%N)
    echo "== $spec: eval ($n windows)" >&2
    "$tpk" eval "$out" --text "$root/eval/enwiki_excerpt.txt" --ctx 512 --chunks "$n" \
      --baseline "$( [ "$n" = "$chunks" ] && echo "$ref" || echo "$base")" --json \
      >"$bench/$key.eval.json"
    python3 - "$spec" "$out" "$t0" "$t1" "$bench/$key.eval.json" "$bench/$key.json" <<'PY'
import json, os, sys
spec, out, t0, t1, ev, dst = sys.argv[1:7]
r = {"spec": spec, "bytes": os.path.getsize(out), "convert_s": float(t1) - float(t0),
     "eval": json.load(open(ev))}
json.dump(r, open(dst + ".part", "w"), indent=1)
os.replace(dst + ".part", dst)
PY
    rm -f "$out"
    last=$(( (SECONDS - s0) * chunks / n ))
  }
  for p in "${presets[@]}"; do run "$p" "$chunks"; done
  if [ "$sweep" = 1 ]; then for p in "${sweep_specs[@]}"; do run "$p" "$sweep_chunks"; done; fi
  if [ "${#skipped[@]}" -gt 0 ]; then
    echo "bench-quality: over the time budget, not measured: ${skipped[*]} (run again to add them)" >&2
  fi
fi

python3 -c 'import matplotlib' 2>/dev/null ||
  python3 -m pip install --quiet --disable-pip-version-check matplotlib
machine="$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(uname -sm)"
python3 "$root/scripts/bench_quality_report.py" \
  --results "$bench" --base "$assets/smooth-base" --anchors "$root/eval/llamacpp-anchors.md" \
  --md "$root/BENCHMARKS.md" --png "$root/bench-quality.png" \
  --machine "$machine" --command "scripts/bench-quality.sh $*"
