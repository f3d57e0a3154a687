#!/usr/bin/env bash
# Scoring time per sample and peak RSS, circuitdiff beside plain PyTorch in the same run, for
# SmolLM2-135M and a random Llama (hidden 512, 8 layers, 8 heads, vocabulary 32000), 256 tokens,
# 1 and 2 threads. Each measurement is its own process so that its peak RSS is its own; each
# time is the median of 10 repetitions after one warm-up.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${CIRCUITDIFF_CACHE:-$HOME/.cache/circuitdiff}"
PY="$CACHE/venv/bin/python"
cargo build --release --quiet
BIN=./target/release/circuitdiff
RANDOM_LLAMA="$CACHE/bench-random-llama"
[ -f "$RANDOM_LLAMA/model.safetensors" ] || $BIN bench --write-random-llama "$RANDOM_LLAMA"
for t in 1 2; do
    echo "== SmolLM2-135M, threads $t"
    RAYON_NUM_THREADS=$t $BIN bench --score-only --repeat 10 --model "$CACHE/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    OMP_NUM_THREADS=$t $PY benches/torch_model.py "$CACHE/smollm2" SmolLM2-135M-Instruct.Q4_1.gguf --threads "$t" --repeat 10 --score-only 2>/dev/null
    echo "== random Llama 512x8, threads $t"
    RAYON_NUM_THREADS=$t $BIN bench --score-only --repeat 10 --model "$RANDOM_LLAMA"
    OMP_NUM_THREADS=$t $PY benches/torch_model.py "$RANDOM_LLAMA" --threads "$t" --repeat 10 --score-only 2>/dev/null
done
