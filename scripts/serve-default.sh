#!/usr/bin/env bash
# The main job: `arbor serve` on the bundled default model. Uses the trained pair under models/
# (target + DFlash drafter) when it is there; otherwise makes a synthetic model first
# (scripts/default-model.sh: random weights, the real Qwen tokenizer). Extra arguments go to serve.
# Usage: scripts/serve-default.sh BUILD_DIR [serve args...]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}; shift || true
target=models/arbor-tiny-target.gguf
draft=models/arbor-tiny-dflash.gguf
if [ -f "$target" ] && [ -f "$draft" ]; then
    exec "$BUILD/arbor" serve -m "$target" --draft "$draft" "$@"
fi
scripts/default-model.sh models/default-q8_0.gguf "$BUILD/arbor"
exec "$BUILD/arbor" serve -m models/default-q8_0.gguf "$@"
