#!/usr/bin/env bash
# Makes the default model for `make run` if it is not there yet: a synthetic qwen35 model
# (random weights, the real Qwen tokenizer from llama.cpp's vocab file), quantized to Q8_0.
# Replaced by the bundled trained pair once it exists.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-models/default-q8_0.gguf}
arbor=${2:-build/arbor}
[ -f "$out" ] && exit 0
mkdir -p "$(dirname "$out")"
vocab=build/oracle/llama.cpp/models/ggml-vocab-qwen35.gguf
[ -f "$vocab" ] || { echo "default-model: $vocab missing; run scripts/deps.sh first" >&2; exit 1; }
"$arbor" mkmodel -o "$out" --preset tiny --vocab "$vocab" --type q8_0 --seed 1
