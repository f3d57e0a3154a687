#!/usr/bin/env bash
# Transformer throughput, circuitdiff beside PyTorch in the same run, at 1 and 2 threads.
# usage: benches/model.sh [MODEL_DIR GGUF_NAME]   (default: the SmolLM2 GGUF that .ci/setup fetches)
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${CIRCUITDIFF_CACHE:-$HOME/.cache/circuitdiff}"
DIR="${1:-$CACHE/smollm2}"
GGUF="${2:-SmolLM2-135M-Instruct.Q4_1.gguf}"
cargo build --release --quiet
for t in 1 2; do
    echo "== threads $t: circuitdiff"
    RAYON_NUM_THREADS=$t ./target/release/circuitdiff bench --model "$DIR/$GGUF"
    echo "== threads $t: pytorch"
    OMP_NUM_THREADS=$t "$CACHE/venv/bin/python" benches/torch_model.py "$DIR" "$GGUF" --threads "$t" 2>/dev/null
done
