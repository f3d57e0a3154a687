#!/usr/bin/env bash
# Memory planner against measured peak RSS: three random Llamas, one sample each scored by
# `circuitdiff score` in its own process (peak RSS from /usr/bin/time), beside the estimate of
# `circuitdiff inspect --json`.
# usage: benches/memory.sh [SEQ_LEN...]   (default: 512)
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${CIRCUITDIFF_CACHE:-$HOME/.cache/circuitdiff}"
cargo build --release --quiet
BIN=./target/release/circuitdiff
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
printf "%-28s %6s %12s %12s %12s %8s\n" model tokens "estimate GiB" "peak GiB" "peak KB" error
for shape in 512,8,8,8,1376,32000 1024,16,16,4,2816,32000 2048,12,16,16,5632,32000; do
    dir="$CACHE/mem-llama-${shape//,/-}"
    [ -f "$dir/model.safetensors" ] || $BIN bench --write-random-llama "$dir" --random-shape "$shape" >/dev/null
    for t in "${@:-512}"; do
        k=$(( t / 20 > 0 ? t / 20 : 1 ))
        python3 -c "import json, sys; t, k = $t, $k
ids = [(i * 2654435761 >> 7) % 32000 for i in range(t)]
json.dump([{'id': 's', 'prompt_ids': ids[:t - k], 'answer_ids': ids[t - k:]}], open(sys.argv[1], 'w'))" "$TMP/s.json"
        est=$($BIN inspect "$dir" --seq-len "$t" --json | python3 -c "import json, sys; print(json.load(sys.stdin)['memory']['total'])")
        kb=$( { /usr/bin/time -f "%M" $BIN score --model "$dir" --samples "$TMP/s.json" --cut "$k" --out "$TMP/run-${shape//,/-}-$t" >/dev/null; } 2>&1 | tail -1)
        python3 -c "e, m = $est, $kb * 1024; print(f'{\"$shape\":<28} {$t:>6} {e / 2**30:>12.3f} {m / 2**30:>12.3f} {$kb:>12} {100 * (e - m) / m:>+7.1f}%')"
    done
done
