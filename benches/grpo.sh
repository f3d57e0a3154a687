#!/usr/bin/env bash
# A GRPO step of `circuitdiff lab tune` beside TRL's GRPOTrainer (benches/trl_grpo.py) in the same
# run: SmolLM2-135M-Instruct (the GGUF .ci/setup fetches, dequantised once to the float32 folder
# both tools train), LoRA rank 2 α 4 on every linear layer, 3 questions × 5 answers of at most 40
# new tokens at temperature 1, β 0.04, lr 5e-4, at 1 and 2 threads; each tool prints the median
# wall time of the steps after the first, and /usr/bin/time the process's peak RSS.
# usage: benches/grpo.sh [STEPS] [MICRO_BATCH]   (default 4 steps, all 15 rows in one pass)
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${CIRCUITDIFF_CACHE:-$HOME/.cache/circuitdiff}"
PY="$CACHE/venv/bin/python"
GGUF="$CACHE/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
STEPS="${1:-4}"
MICRO="${2:-}"
DATA=assets/zoo/smollm2_grpo/sums19.jsonl
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$PY" benches/trl_grpo.py --convert "$GGUF" "$WORK/model" 2>/dev/null
cargo build --release --quiet --no-default-features
for t in 1 2; do
    echo "== threads $t: circuitdiff"
    /usr/bin/time -f "peak RSS %M KiB" ./target/release/circuitdiff --threads "$t" lab tune \
        "$WORK/model" --dataset "$DATA" --out "$WORK/cd-$t" --lora-rank 2 --lora-alpha 4 \
        --lora-targets all-linear --lr 5e-4 --steps "$STEPS" --save-every 1000 \
        --max-new-tokens 40 --eval-questions 1 --questions 3 --group 5 --seed 1 \
        ${MICRO:+--micro-batch "$MICRO"} 2>&1 | grep -E '^(step time|peak RSS)'
    echo "== threads $t: trl"
    OMP_NUM_THREADS=$t /usr/bin/time -f "peak RSS %M KiB" "$PY" benches/trl_grpo.py \
        "$WORK/model" "$DATA" --threads "$t" --steps "$STEPS" ${MICRO:+--micro-batch "$MICRO"} \
        2>&1 | grep -E '^(\{"tool"|peak RSS)'
done
