#!/usr/bin/env bash
# Convert throughput and peak RSS of `tpk convert` per preset (see BENCHMARKS.md).
#
# usage: scripts/bench-convert.sh [WORKDIR]   (env: MB=500 PRESETS="...")
#
# - a ~MB MiB f16 LLaMA-shaped model from `gen-fixtures big`, converted with every preset
#   (int, ggml, raw and the vq-based ones) at --threads 2 and 1 under /usr/bin/time -v
#   (wall time, peak RSS);
# - tenpak_x on a SmolLM-135M-shaped model (hidden 576, 30 layers, ffn 1536, vocab 49152,
#   9 heads / 3 KV heads of 64), f16 random weights written by numpy + safetensors.
# Prints one TSV line per run: preset model threads wall_s cpu_s src_MB MB/s(wall)
# MB/s/core(cpu) rss_MB bound_MB sha256(16). Per-core throughput uses user+sys CPU seconds, so
# it holds up when other jobs share the machine; wall-clock MB/s does not. The two thread
# counts of a preset must print the same sha256 (output independent of the thread count).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-/tmp/tenpak-bench-convert}
MB=${MB:-500}
PRESETS=${PRESETS:-"int4_g8 int4_g16 int4_g32 int4_g64 int4_g128 int8 int4_opt int4_residual q8_0 q4_k f16 pocketllm tenpak_x"}
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (apt-get install -y time)" >&2; exit 1; }
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cargo build --release -q --bin tpk -p tenpak
  cargo build --release -q --bin gen-fixtures -p tenpak-fixtures
fi
TPK=target/release/tpk
GEN=target/release/gen-fixtures
mkdir -p "$WORK"
[ -f "$WORK/big/model.safetensors" ] || $GEN big "$WORK/big" --mb "$MB" >/dev/null
if [ ! -f "$WORK/smol135m/model.safetensors" ]; then
  mkdir -p "$WORK/smol135m"
  python3 - "$WORK/smol135m" <<'PY'
import sys, json, numpy as np
from safetensors.numpy import save_file
out = sys.argv[1]
h, ffn, L, V, heads, kvh, hd = 576, 1536, 30, 49152, 9, 3, 64
rng = np.random.default_rng(0)
def w(*s):
    return (rng.standard_normal(s, dtype=np.float32) * 0.02).astype(np.float16)
t = {"model.embed_tokens.weight": w(V, h), "model.norm.weight": np.ones(h, np.float16)}
for l in range(L):
    p = f"model.layers.{l}."
    t[p + "input_layernorm.weight"] = np.ones(h, np.float16)
    t[p + "post_attention_layernorm.weight"] = np.ones(h, np.float16)
    t[p + "self_attn.q_proj.weight"] = w(heads * hd, h)
    t[p + "self_attn.k_proj.weight"] = w(kvh * hd, h)
    t[p + "self_attn.v_proj.weight"] = w(kvh * hd, h)
    t[p + "self_attn.o_proj.weight"] = w(h, heads * hd)
    t[p + "mlp.gate_proj.weight"] = w(ffn, h)
    t[p + "mlp.up_proj.weight"] = w(ffn, h)
    t[p + "mlp.down_proj.weight"] = w(h, ffn)
save_file(t, out + "/model.safetensors")
n = sum(v.size for v in t.values())
print(f"smol135m: {n} parameters", file=sys.stderr)
PY
fi

# largest tensor (bytes) of a model, from its safetensors header
largest() {
  python3 - "$1" <<'PY'
import sys, json, struct
f = open(sys.argv[1] + "/model.safetensors", "rb")
n = struct.unpack("<Q", f.read(8))[0]
h = json.loads(f.read(n))
print(max(v["data_offsets"][1] - v["data_offsets"][0] for k, v in h.items() if k != "__metadata__"))
PY
}

run() { # preset model threads
  local p=$1 m=$2 th=$3 out="$WORK/out.tpk" log="$WORK/time.log"
  /usr/bin/time -v "$TPK" convert "$WORK/$m" -o "$out" --codec "$p" --threads "$th" >/dev/null 2>"$log"
  local wall cpu rss src big
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/{n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$log")
  cpu=$(awk -F': ' '/User time|System time/{s+=$2} END{print s}' "$log")
  rss=$(awk -F': ' '/Maximum resident/{print $2/1024}' "$log")
  src=$(stat -c %s "$WORK/$m/model.safetensors")
  big=$(largest "$WORK/$m")
  awk -v p="$p" -v m="$m" -v th="$th" -v w="$wall" -v c="$cpu" -v s="$src" -v r="$rss" -v b="$big" 'BEGIN{
    mb=s/1e6; printf "%s\t%s\t%d\t%.2f\t%.2f\t%.0f\t%.1f\t%.1f\t%.0f\t%.0f\t", p, m, th, w, c, mb, mb/w, mb/c, r, 2*b/1048576+100 }'
  sha256sum "$out" | cut -c1-16
  rm -f "$out"
}

echo -e "preset\tmodel\tthreads\twall_s\tcpu_s\tsrc_MB\tMB/s\tMB/s/core\trss_MB\tbound_MB\tsha256"
for p in $PRESETS; do for th in 2 1; do run "$p" big "$th"; done; done
run tenpak_x smol135m 2
