#!/usr/bin/env python3
"""Renders scripts/bench-quality.sh's results: a markdown table into BENCHMARKS.md between
<!-- quality:begin --> and <!-- quality:end -->, and a bpw-vs-KLD plot (PNG) with llama.cpp's
points from eval/llamacpp-anchors.md."""
import argparse, glob, json, os, re, struct, sys

BEGIN, END = "<!-- quality:begin -->", "<!-- quality:end -->"


def params_of(base):
    """Parameter count of a safetensors model (file or folder; single file or index)."""
    if os.path.isdir(base):
        idx = os.path.join(base, "model.safetensors.index.json")
        files = (sorted({os.path.join(base, f) for f in json.load(open(idx))["weight_map"].values()})
                 if os.path.exists(idx) else [os.path.join(base, "model.safetensors")])
    else:
        files = [base]
    n = 0
    for f in files:
        with open(f, "rb") as fh:
            (hl,) = struct.unpack("<Q", fh.read(8))
            hdr = json.loads(fh.read(hl))
        for k, v in hdr.items():
            if k != "__metadata__":
                p = 1
                for d in v["shape"]:
                    p *= d
                n += p
    return n


def anchors(path):
    """(type, bpw file, mean KLD) rows of llama.cpp's table."""
    out, cols = [], None
    for line in open(path, encoding="utf-8"):
        if not line.startswith("|"):
            cols = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cols is None:
            cols = cells
            continue
        if set(cells[0]) <= set("-: "):
            continue
        row = dict(zip(cols, cells))
        try:
            bpw = float(row["bpw (file)"])
            kld = float(row["mean KLD ±"].split("±")[0])
        except (KeyError, ValueError):
            continue
        out.append((row["type"], bpw, kld))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--base")
    ap.add_argument("--params", type=int)
    ap.add_argument("--anchors", required=True)
    ap.add_argument("--md", required=True)
    ap.add_argument("--png", required=True)
    ap.add_argument("--machine", default="")
    ap.add_argument("--command", default="scripts/bench-quality.sh")
    a = ap.parse_args()
    params = a.params or params_of(a.base)
    rows = [json.load(open(f)) for f in sorted(glob.glob(os.path.join(a.results, "*.json")))
            if not f.endswith(".eval.json")]
    if not rows:
        sys.exit("bench-quality: no results in " + a.results)
    rows.sort(key=lambda r: r["bytes"])
    full = max(r["eval"]["n_windows"] for r in rows)
    lines = [
        f"Smooth SmolLM2-135M base ({params:,} params), eval/enwiki_excerpt.txt, ctx "
        f"{rows[0]['eval']['ctx']}, KLD against the F32 smooth base's logits (llama.cpp's method, "
        "see README \"Evaluating\"). Rows marked * use fewer windows than the others.",
        "",
        "| preset | file bytes | bpw (whole file) | ratio vs FP16 | ratio vs FP32 | PPL | ΔPPL % | KLD | top-1 % | convert s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    pts = []
    for r in rows:
        e, b = r["eval"], r["bytes"]
        bpw = 8 * b / params
        name = "`" + r["spec"] + "`" + ("" if e["n_windows"] == full else f" *({e['n_windows']} windows)")
        lines.append(
            f"| {name} | {b:,} | {bpw:.3f} | {2 * params / b:.2f} | {4 * params / b:.2f} | "
            f"{e['ppl']:.4f} ± {e['ppl_stderr']:.4f} | {e['delta_ppl_pct']:+.2f} | "
            f"{e['kld_mean']:.5f} ± {e['kld_stderr']:.5f} | {100 * e['top1_agree']:.2f} ± "
            f"{100 * e['top1_stderr']:.2f} | {r['convert_s']:.1f} |")
        pts.append((r["spec"], bpw, e["kld_mean"]))
    speeds = [r["eval"]["tokens_per_second"] for r in rows]
    lines += ["",
              f"Eval speed: {min(speeds):.0f}-{max(speeds):.0f} tokens/s (model forward). "
              f"Machine: {a.machine}. Command: `{a.command}`.",
              "", f"![bpw vs KLD]({os.path.basename(a.png)})"]
    block = BEGIN + "\n" + "\n".join(lines) + "\n" + END
    md = open(a.md, encoding="utf-8").read() if os.path.exists(a.md) else "# Benchmarks\n"
    if BEGIN in md and END in md:
        pre, rest = md.split(BEGIN, 1)
        md = pre + block + rest.split(END, 1)[1]
    else:
        md = md.rstrip("\n") + "\n\n## Quality versus size\n\n" + block + "\n"
    open(a.md + ".part", "w", encoding="utf-8").write(md)
    os.replace(a.md + ".part", a.md)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9, 6), dpi=110)
    anc = anchors(a.anchors)
    ax.scatter([p[1] for p in anc], [p[2] for p in anc], marker="s", color="tab:gray",
               label="llama.cpp (same base, text, method)")
    for n, x, y in anc:
        ax.annotate(n, (x, y), fontsize=7, color="tab:gray", xytext=(3, 3), textcoords="offset points")
    ax.scatter([p[1] for p in pts], [p[2] for p in pts], color="tab:red", label="tenpak")
    for n, x, y in pts:
        ax.annotate(n, (x, y), fontsize=7, color="tab:red", xytext=(3, -9), textcoords="offset points")
    ax.set_yscale("log")
    ax.set_xlabel("bits per weight (whole file)")
    ax.set_ylabel("mean KL divergence vs F32 base (log)")
    ax.set_title("SmolLM2-135M smooth base: size vs quality (lower left is better)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(a.png)
    print(f"wrote {a.md} and {a.png}", file=sys.stderr)


if __name__ == "__main__":
    main()
