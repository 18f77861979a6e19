#!/usr/bin/env bash
# Tokenizer encode speed: `arbor tokenize -f FILE` vs llama.cpp (`llama_oracle tok MODEL -f FILE --time`),
# best of N runs each, tokenization time only (the vocab load is excluded on both sides); the ids must match.
# Usage: bench/tokenize.sh [MODEL] [FILE] [RUNS]
#   MODEL  a GGUF with a tokenizer (default: $ARBOR_FIXTURES/vocab-qwen35.gguf)
#   FILE   text to encode (default: 1 MiB of llama.cpp sources from $ARBOR_LLAMA_SRC/src, else arbor's own sources)
#   RUNS   default 5
set -euo pipefail
cd "$(dirname "$0")/.."
FIX=${ARBOR_FIXTURES:-$PWD/build/fixtures}
MODEL=${1:-$FIX/vocab-qwen35.gguf}
FILE=${2:-}
RUNS=${3:-5}
ARBOR=${ARBOR_BIN:-$PWD/build/arbor}
ORACLE=${ARBOR_ORACLE:-$PWD/build/oracle/llama_oracle}
LLAMA_SRC=${ARBOR_LLAMA_SRC:-$PWD/build/oracle/llama.cpp}

[ -f "$MODEL" ] || { echo "bench/tokenize.sh: no model $MODEL (run scripts/fixtures.sh or pass MODEL)" >&2; exit 1; }
[ -x "$ARBOR" ] || { echo "bench/tokenize.sh: no arbor binary $ARBOR (make, or set ARBOR_BIN)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ -z "$FILE" ]; then
    FILE=$tmp/src-1m.txt
    if ls "$LLAMA_SRC"/src/*.cpp >/dev/null 2>&1; then
        cat "$LLAMA_SRC"/src/*.cpp | head -c 1048576 > "$FILE" || true   # cat stops on SIGPIPE
    else
        while [ "$(stat -c %s "$FILE" 2>/dev/null || echo 0)" -lt 1048576 ]; do cat base/*.c format/*.c tok/*.c cli/*.c >> "$FILE"; done
        head -c 1048576 "$FILE" > "$tmp/cut" && mv "$tmp/cut" "$FILE"
    fi
fi
bytes=$(stat -c %s "$FILE")

# best (lowest) time over RUNS runs, from stderr: arbor prints "... in X ms ...", the oracle prints the
# seconds alone on a line; the ids of the last run go to $1
best_ms() {
    local out=$1 best="" t err; shift
    for _ in $(seq "$RUNS"); do
        err=$("$@" 2>&1 >"$out")
        t=$(printf '%s\n' "$err" | grep -oE '[0-9]+(\.[0-9]+)? ms' | head -n1 | cut -d' ' -f1 || true)
        [ -n "$t" ] || t=$(printf '%s\n' "$err" | grep -E '^[0-9]+(\.[0-9]+)?$' | tail -n1 | awk '{ print $1 * 1000 }')
        [ -n "$t" ] || { echo "bench/tokenize.sh: no timing from: $*" >&2; exit 1; }
        best=$(awk -v a="$t" -v b="$best" 'BEGIN { print (b == "" || a < b) ? a : b }')
    done
    echo "$best"
}

a_ms=$(best_ms "$tmp/arbor.ids" "$ARBOR" tokenize -m "$MODEL" -f "$FILE" --time)
a_n=$(wc -w < "$tmp/arbor.ids")
printf 'file: %s (%d bytes), model: %s, best of %d\n' "$FILE" "$bytes" "$MODEL" "$RUNS"
printf 'arbor      %9.2f ms  %7.2f MB/s  %d tokens\n' "$a_ms" "$(awk -v b="$bytes" -v t="$a_ms" 'BEGIN { print b / t / 1000 }')" "$a_n"
if [ -x "$ORACLE" ]; then
    l_ms=$(best_ms "$tmp/llama.ids" "$ORACLE" tok "$MODEL" -f "$FILE" --time)
    l_n=$(wc -w < "$tmp/llama.ids")
    printf 'llama.cpp  %9.2f ms  %7.2f MB/s  %d tokens\n' "$l_ms" "$(awk -v b="$bytes" -v t="$l_ms" 'BEGIN { print b / t / 1000 }')" "$l_n"
    printf 'speed-up   %9.2fx\n' "$(awk -v a="$a_ms" -v l="$l_ms" 'BEGIN { print l / a }')"
    if cmp -s <(tr -s ' \n' '\n\n' < "$tmp/arbor.ids" | grep .) <(tr -s ' \n' '\n\n' < "$tmp/llama.ids" | grep .); then
        echo "ids: identical"
    else
        echo "ids: DIFFER" >&2
        exit 1
    fi
else
    echo "llama.cpp: oracle $ORACLE not built (scripts/oracle.sh), no comparison" >&2
fi
