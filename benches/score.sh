#!/usr/bin/env bash
# Scoring time per sample and peak RSS, circuitdiff beside plain PyTorch in the same run, for
# SmolLM2-135M and a random Llama (hidden 512, 8 layers, 8 heads, vocabulary 32000), 256 tokens,
# 1 and 2 threads, and the pass's weight products run alone (their rate on weights streamed from
# memory, and their share of the pass's time). Each measurement is its own process so that its
# peak RSS is its own; each time is the median of 10 repetitions after one warm-up, and each
# matmul rate the median of those measured after each repetition. Ends with a Markdown table for
# BENCHMARKS.md that names the CPU and both matmul rates.
# usage: benches/score.sh            (BIN=path/to/circuitdiff to measure another build)
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${CIRCUITDIFF_CACHE:-$HOME/.cache/circuitdiff}"
PY="$CACHE/venv/bin/python"
if [ -z "${BIN:-}" ]; then
    cargo build --release --quiet
    BIN=./target/release/circuitdiff
fi
RANDOM_LLAMA="$CACHE/bench-random-llama"
[ -f "$RANDOM_LLAMA/model.safetensors" ] || $BIN bench --write-random-llama "$RANDOM_LLAMA"
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
for t in 1 2; do
    echo "== SmolLM2-135M, threads $t"
    RAYON_NUM_THREADS=$t $BIN bench --score-only --repeat 10 --model "$CACHE/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" | tee "$OUT/smollm2-$t-circuitdiff.json"
    OMP_NUM_THREADS=$t $PY benches/torch_model.py "$CACHE/smollm2" SmolLM2-135M-Instruct.Q4_1.gguf --threads "$t" --repeat 10 --score-only 2>/dev/null | tee "$OUT/smollm2-$t-pytorch.json"
    echo "== random Llama 512x8, threads $t"
    RAYON_NUM_THREADS=$t $BIN bench --score-only --repeat 10 --model "$RANDOM_LLAMA" | tee "$OUT/llama-$t-circuitdiff.json"
    OMP_NUM_THREADS=$t $PY benches/torch_model.py "$RANDOM_LLAMA" --threads "$t" --repeat 10 --score-only 2>/dev/null | tee "$OUT/llama-$t-pytorch.json"
done
"$PY" - "$OUT" <<'EOF'
import json, sys
out = sys.argv[1]
load = lambda n: json.load(open(f"{out}/{n}.json"))
cpu = load("smollm2-1-circuitdiff").get("cpu", {"model": "?", "cores": "?", "matmul_kernel": "?"})
torch = load("smollm2-1-pytorch")
print(f"\nCPU: {cpu['model']} ({cpu.get('id')}), {cpu['cores']} cores; candle matmul kernel {cpu['matmul_kernel']}, "
      f"PyTorch {torch['torch']} CPU capability {torch['cpu_capability']}\n")
print("| model | threads | circuitdiff s/sample | PyTorch s/sample | ratio | GFLOP/sample "
      "| circuitdiff GFLOP/s | candle matmul GFLOP/s | share of matmul rate "
      "| weight products alone: share of matmul rate | weight products' share of the pass "
      "| PyTorch matmul GFLOP/s | candle / PyTorch matmul | peak RSS circuitdiff / PyTorch |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for name, label in [("smollm2", "SmolLM2-135M"), ("llama", "random Llama 512×8")]:
    for t in (1, 2):
        c, p = load(f"{name}-{t}-circuitdiff"), load(f"{name}-{t}-pytorch")
        print(f"| {label} | {t} | {c['score_s_per_sample']:.3f} | {p['score_s_per_sample']:.3f} "
              f"| {c['score_s_per_sample'] / p['score_s_per_sample']:.2f} "
              f"| {c['score_gflop_per_sample']:.1f} | {c['score_gflop_per_s']:.1f} "
              f"| {c['matmul_gflop_per_s']:.1f} | {100 * c['share_of_matmul_rate']:.0f} % "
              f"| {100 * c['weight_products_share_of_matmul_rate']:.0f} % "
              f"| {100 * c['weight_products_share_of_score_time']:.0f} % "
              f"| {p['matmul_gflop_per_s']:.1f} "
              f"| {100 * c['matmul_gflop_per_s'] / p['matmul_gflop_per_s']:.0f} % "
              f"| {c['peak_rss_bytes'] / 1e9:.2f} / {p['peak_rss_bytes'] / 1e9:.2f} GB |")
EOF
