#!/usr/bin/env bash
# Does llama.cpp load and run tpk's GGUF exports, and agree with `tpk eval`?
#
# Fetches llama.cpp's source at run time (the copy vendored in PyPI's llama-cpp-python sdist,
# pinned by version and sha256; nothing of llama.cpp is kept in this repository), builds
# llama-perplexity and llama-tokenize in a cache folder, then for each codec:
#   tpk convert smooth-base --codec C -> C.tpk;  tpk export C.tpk --to gguf --type auto -> C.gguf
#   llama-perplexity -m C.gguf (ctx 512, CHUNKS windows, 2 threads)  vs  tpk eval C.tpk
# and prints one table row per codec. It also checks that llama.cpp's tokenizer, built from
# the GGUF's metadata, reproduces eval/enwiki_excerpt.first24576.token-ids.txt and tpk's count.
#
# With --quant it also compares tpk's ggml-type quantizers with ggml's own (no imatrix, the
# path llama-quantize takes) on Gaussian data, the tiny fixture model and SmolLM2 tensors:
# scripts/ggml_ref_quant.c (ggml side) and examples/ggml_quant_roundtrip.rs (tpk side) round-trip
# the same f32 data, scripts/ggml_quant_compare.py prints relative MSEs.
#
# NOT part of CI (.ci/run): the llama.cpp build alone takes ~5-15 minutes on 2 cores.
#
# usage: scripts/llamacpp-check.sh [--quant] [--no-ppl] [CODEC...]
#   CODEC  tpk convert presets (default: f32 f16 q8_0 q6_k q4_k q4_0 iq4_nl tenpak_x)
# env: LLAMACPP_CACHE (default ~/.cache/tenpak-llamacpp): llama.cpp source and build
#      WORK (default $LLAMACPP_CACHE/run): .tpk, .gguf and logs (kept: delete to re-measure)
#      TENPAK_EVAL_ASSETS (default ./eval-assets), CHUNKS (48), TPK (a tpk binary to use)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
ver=0.3.16
sdist_sha=34ed0f9bd9431af045bb63d9324ae620ad0536653740e9bb163a2e1fcb973be6
cache=${LLAMACPP_CACHE:-$HOME/.cache/tenpak-llamacpp}
work=${WORK:-$cache/run}
assets=${TENPAK_EVAL_ASSETS:-$root/eval-assets}
chunks=${CHUNKS:-48}
text="$root/eval/enwiki_excerpt.txt"
ids_ref="$root/eval/enwiki_excerpt.first24576.token-ids.txt"
quant=0 ppl=1 codecs=()
for a in "$@"; do
  case "$a" in
    --quant) quant=1 ;;
    --no-ppl) ppl=0 ;;
    -*) echo "llamacpp-check: unknown option $a" >&2; exit 2 ;;
    *) codecs+=("$a") ;;
  esac
done
[ ${#codecs[@]} -gt 0 ] || codecs=(f32 f16 q8_0 q6_k q4_k q4_0 iq4_nl tenpak_x)
mkdir -p "$cache" "$work"

# --- llama.cpp source (sha256-checked sdist) and build ------------------------------------
llama="$cache/llama_cpp_python-$ver/vendor/llama.cpp"
bin="$llama/build/bin"
if [ ! -x "$bin/llama-perplexity" ] || [ ! -x "$bin/llama-tokenize" ]; then
  sdist="$cache/llama_cpp_python-$ver.tar.gz"
  if [ ! -f "$sdist" ]; then
    python3 -m pip download --quiet --disable-pip-version-check --no-deps \
      --no-binary :all: "llama-cpp-python==$ver" -d "$cache"
  fi
  got=$(sha256sum "$sdist" | cut -d' ' -f1)
  if [ "$got" != "$sdist_sha" ]; then
    echo "llamacpp-check: $sdist has sha256 $got, expected $sdist_sha" >&2
    exit 1
  fi
  [ -d "$llama" ] || tar -xzf "$sdist" -C "$cache"
  command -v cmake >/dev/null || python3 -m pip install --quiet --only-binary :all: cmake
  echo "== building llama.cpp (llama-perplexity, llama-tokenize)" >&2
  cmake -S "$llama" -B "$llama/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_SERVER=OFF -DGGML_OPENMP=OFF >"$cache/cmake-configure.log" 2>&1 ||
    { tail -20 "$cache/cmake-configure.log" >&2; exit 1; }
  nice -n 10 cmake --build "$llama/build" -j2 \
    --target llama-perplexity llama-tokenize >"$cache/cmake-build.log" 2>&1 ||
    { tail -20 "$cache/cmake-build.log" >&2; exit 1; }
fi
echo "llama.cpp: $("$bin/llama-perplexity" --version 2>&1 | grep -m1 -i 'version\|build' || true)" >&2

if [ -z "${TPK:-}" ]; then (cd "$root" && cargo build --release --quiet --bin tpk); fi
tpk=${TPK:-$root/target/release/tpk}
[ -f "$assets/smooth-base/model.safetensors" ] && [ -f "$assets/.checked-v1" ] ||
  "$root/scripts/fetch-eval-assets.sh" "$assets"
base="$assets/smooth-base"

# --- perplexity: llama.cpp on the GGUF export against tpk eval on the .tpk ------------------
if [ "$ppl" = 1 ]; then
  rows=()
  tok_checked=0
  for c in "${codecs[@]}"; do
    f="$work/$c"
    if [ ! -f "$f.tpk" ]; then
      echo "== $c: convert" >&2
      nice -n 10 "$tpk" convert "$base" --codec "$c" -o "$f.tpk" >"$f.convert.log" 2>&1
    fi
    if [ ! -f "$f.gguf" ]; then
      nice -n 10 "$tpk" export "$f.tpk" --to gguf --type auto -o "$f.gguf" >"$f.export.log" 2>&1
    fi
    if [ "$tok_checked" = 0 ]; then
      # llama.cpp's tokenizer comes from our GGUF metadata: it must give the reference ids.
      "$bin/llama-tokenize" -m "$f.gguf" -f "$text" --ids --no-bos --no-escape \
        --no-parse-special --log-disable >"$work/llama-tokenize.ids" 2>/dev/null
      python3 - "$work/llama-tokenize.ids" "$ids_ref" <<'EOF'
import ast, sys
ids = ast.literal_eval(open(sys.argv[1]).read())
ref = [int(v) for v in open(sys.argv[2]).read().split()]
ok = ids[: len(ref)] == ref
print(f"llama-tokenize on the GGUF: {len(ids)} tokens; first {len(ref)} equal the reference ids: {ok}", file=sys.stderr)
sys.exit(0 if ok else 1)
EOF
      tok_checked=1
    fi
    if [ ! -f "$f.llama.log" ] || ! grep -q "Final estimate" "$f.llama.log"; then
      echo "== $c: llama-perplexity" >&2
      nice -n 10 "$bin/llama-perplexity" -m "$f.gguf" -f "$text" -c 512 --chunks "$chunks" \
        -t 2 >"$f.llama.log" 2>&1
    fi
    if [ ! -f "$f.eval.json" ]; then
      echo "== $c: tpk eval" >&2
      nice -n 10 "$tpk" eval "$f.tpk" --text "$text" --ctx 512 --chunks "$chunks" --json \
        >"$f.eval.json" 2>"$f.eval.log"
    fi
    rows+=("$(python3 - "$c" "$f" <<'EOF'
import json, os, re, sys
c, f = sys.argv[1], sys.argv[2]
log = open(f + ".llama.log").read()
m = re.search(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", log)
types = ", ".join(f"{n} {t}" for t, n in re.findall(r"- type +(\w+): +(\d+) tensors", log))
lp, le = float(m.group(1)), float(m.group(2))
e = json.load(open(f + ".eval.json"))
tp, te = e["ppl"], e["ppl_stderr"]
toks = re.search(r"^(\d+) tokens in", open(f + ".eval.log").read(), re.M)
mb = os.path.getsize(f + ".gguf") / 1e6
print(f"| `{c}` | {mb:.1f} | {types} | {lp:.4f} ± {le:.4f} | {tp:.4f} ± {te:.4f} | {lp - tp:+.4f} ({100 * (lp - tp) / tp:+.2f} %) |")
EOF
)")
  done
  echo
  echo "Smooth SmolLM2-135M base, $(basename "$text"), ctx 512, $chunks windows; llama.cpp $ver (PyPI llama-cpp-python sdist), -t 2"
  echo
  echo "| codec | GGUF MB | GGUF tensor types | llama.cpp PPL | tpk eval PPL | llama.cpp − tpk |"
  echo "|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
fi

# --- quantizer comparison against ggml's reference (no imatrix) ----------------------------
if [ "$quant" = 1 ]; then
  q="$work/quant"
  mkdir -p "$q"
  cc -O2 -o "$q/ggml_ref_quant" "$root/scripts/ggml_ref_quant.c" -I"$llama/ggml/include" \
    -L"$bin" -lggml-base -Wl,-rpath,"$bin"
  (cd "$root" && cargo build --release --quiet --example ggml_quant_roundtrip &&
    cargo run --release --quiet -p tenpak-fixtures --bin gen-fixtures -- tiny "$q/tiny" >/dev/null)
  nice -n 10 python3 "$root/scripts/ggml_quant_compare.py" "$q/ggml_ref_quant" \
    "$root/target/release/examples/ggml_quant_roundtrip" "$q/data" "$q/tiny" "$base"
fi
