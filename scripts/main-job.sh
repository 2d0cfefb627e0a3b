#!/usr/bin/env bash
# The main job, end to end on SmolLM2-135M: fetch the eval assets, compress the smooth base with
# tenpak_x, show where the bits go, and measure the quality cost against the smooth base
# (llama.cpp's method: ctx 512, 48 windows of eval/enwiki_excerpt.txt, KLD vs the base).
# usage: scripts/main-job.sh [ASSETS]   (default ./eval-assets or $TENPAK_EVAL_ASSETS)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
assets=${1:-${TENPAK_EVAL_ASSETS:-$root/eval-assets}}
"$root/scripts/fetch-eval-assets.sh" "$assets"
tpk="$root/target/release/tpk"   # built by fetch-eval-assets.sh
out="$assets/smollm2-tenpak_x.tpk"
echo "== tpk convert $assets/smooth-base --codec tenpak_x"
"$tpk" convert "$assets/smooth-base" --codec tenpak_x -o "$out"
echo "== tpk inspect $out"
"$tpk" inspect "$out"
echo "== tpk eval $out --baseline $assets/smooth-base"
"$tpk" eval "$out" --text "$root/eval/enwiki_excerpt.txt" --ctx 512 --chunks 48 \
  --baseline "$assets/smooth-base"
