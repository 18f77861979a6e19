#!/usr/bin/env bash
# The main job: `arbor serve` on the bundled default model, models/arbor-tiny-target.gguf (trained
# here, see models/README.md); without it, a synthetic model made first (scripts/default-model.sh:
# random weights, the real Qwen tokenizer). Extra arguments go to serve, e.g.
# `--draft models/arbor-tiny-dflash.gguf --parallel 1` for speculative decoding with the bundled
# drafter (on this 20M-parameter target a forward costs ~1 ms, so drafting does not pay on a CPU;
# docs/BENCHMARKS.md).
# Usage: scripts/serve-default.sh BUILD_DIR [serve args...]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}; shift || true
target=models/arbor-tiny-target.gguf
if [ -f "$target" ]; then
    exec "$BUILD/arbor" serve -m "$target" "$@"
fi
scripts/default-model.sh models/default-q8_0.gguf "$BUILD/arbor"
exec "$BUILD/arbor" serve -m models/default-q8_0.gguf "$@"
