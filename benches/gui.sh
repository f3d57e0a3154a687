#!/usr/bin/env bash
# Frame time of the circuit graph on the software renderer: wgpu on Mesa's lavapipe in an Xvfb
# window (both installed by .ci/setup), no vsync: an empty window (the baseline), then the block
# graph of a 32-layer model (4,193 edges) and the head-level graph of a 28-layer model with 28
# query and 4 key/value heads (408,227 edges), each at the app's default settings and with every
# edge in the top-k (level of detail and culling).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
BIN=./target/release/circuitdiff
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
export WGPU_BACKEND=vulkan
run() { xvfb-run -a -s "-screen 0 1400x900x24" "$BIN" bench-gui "$@" 2>/dev/null; }
FRAMES="${FRAMES:-300}"
echo "== empty window"
run --layers 2 --draw empty --frames "$FRAMES"
for draw in default all-edges; do
  echo "== block graph, 32 layers, $draw"
  run --layers 32 --draw "$draw" --frames "$FRAMES"
  echo "== head graph, 28 layers, 28 heads, 4 kv heads, $draw"
  run --layers 28 --heads 28 --kv-heads 4 --draw "$draw" --frames "$FRAMES"
done
