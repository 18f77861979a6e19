#!/usr/bin/env bash
# Makes the test fixtures in $ARBOR_FIXTURES (default build/fixtures), idempotently: a stamp file
# records the recipe version, and a second run with the same recipe and all files present returns
# at once. Bump RECIPE whenever the commands below or the output of `arbor mkmodel` change.
#
#   vocab-qwen35.gguf(.inp/.out)  copied from $ARBOR_LLAMA_SRC/models (llama.cpp's tokenizer vectors)
#   tiny-f32.gguf tiny-f16.gguf tiny-bf16.gguf
#                                 `arbor mkmodel --preset tiny --vocab small:4096` (seed 1)
#   tiny-q8_0.gguf tiny-q4_k_m.gguf tiny-q5_k_m.gguf tiny-q6_k.gguf tiny-q3_k_m.gguf tiny-q2_k.gguf
#                                 tiny-f32 quantized BY LLAMA.CPP ($ARBOR_ORACLE quantize IN OUT TYPE)
#
# Usage: scripts/fixtures.sh [ARBOR_BIN]   (default $ARBOR_BIN, else build/arbor)
# Env: ARBOR_FIXTURES, ARBOR_LLAMA_SRC (default build/oracle/llama.cpp), ARBOR_ORACLE
#      (default build/oracle/llama_oracle); scripts/oracle.sh installs the last two.
set -euo pipefail
cd "$(dirname "$0")/.."

RECIPE=2
ARBOR=${1:-${ARBOR_BIN:-build/arbor}}
FIX=${ARBOR_FIXTURES:-build/fixtures}
LLAMA_SRC=${ARBOR_LLAMA_SRC:-build/oracle/llama.cpp}
ORACLE=${ARBOR_ORACLE:-build/oracle/llama_oracle}
STAMP=$FIX/.fixtures-stamp

VOCAB_FILES=(vocab-qwen35.gguf vocab-qwen35.gguf.inp vocab-qwen35.gguf.out)
ARBOR_MODELS=(f32 f16 bf16)
LLAMA_QUANTS=(q8_0 q4_k_m q5_k_m q6_k q3_k_m q2_k)

fail() {
    echo "fixtures: $*" >&2
    exit 1
}

all_present() {
    [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "recipe $RECIPE" ] || return 1
    local f
    for f in "${VOCAB_FILES[@]}"; do [ -s "$FIX/$f" ] || return 1; done
    for f in "${ARBOR_MODELS[@]}" "${LLAMA_QUANTS[@]}"; do [ -s "$FIX/tiny-$f.gguf" ] || return 1; done
}

all_present && exit 0

mkdir -p "$FIX"
# Several builds (normal, ASan) may run their tests at once: one generator at a time.
exec 9>"$FIX/.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi
all_present && exit 0
rm -f "$STAMP"
t0=$(date +%s.%N)

[ -x "$ARBOR" ] || fail "arbor binary '$ARBOR' not found (build it with make, or pass its path)"
for f in "${VOCAB_FILES[@]}"; do
    src="$LLAMA_SRC/models/${f/vocab-qwen35/ggml-vocab-qwen35}"
    [ -f "$src" ] || fail "$src not found: run scripts/oracle.sh (it clones llama.cpp into build/oracle/llama.cpp) or set ARBOR_LLAMA_SRC"
    cp "$src" "$FIX/$f.tmp"
    mv "$FIX/$f.tmp" "$FIX/$f"
done

for t in "${ARBOR_MODELS[@]}"; do
    out="$FIX/tiny-$t.gguf"
    "$ARBOR" mkmodel -q -o "$out.tmp" --preset tiny --vocab small:4096 --vocab-src "$FIX/vocab-qwen35.gguf" \
        --type "$t" --seed 1 || fail "arbor mkmodel failed for $out"
    mv "$out.tmp" "$out"
done

[ -x "$ORACLE" ] || fail "llama.cpp oracle '$ORACLE' not found: run scripts/oracle.sh (or set ARBOR_ORACLE); it quantizes the tiny-q* fixtures"
for q in "${LLAMA_QUANTS[@]}"; do
    out="$FIX/tiny-$q.gguf"
    if ! "$ORACLE" quantize "$FIX/tiny-f32.gguf" "$out.tmp" "$q" >"$FIX/quantize.log" 2>&1; then
        tail -n 20 "$FIX/quantize.log" >&2
        fail "oracle quantize $q failed (log above)"
    fi
    mv "$out.tmp" "$out"
done
rm -f "$FIX/quantize.log"

echo "recipe $RECIPE" >"$STAMP"
echo "fixtures: made in $FIX ($(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s)"
