#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) into build-fuzz/, writes a seed corpus of
# small valid GGUFs into build-fuzz/seeds, and fuzzes the GGUF reader for SECONDS seconds.
# New interesting inputs accumulate in build-fuzz/corpus (kept between runs); a crash is saved in
# build-fuzz/crashes/ and makes this script exit non-zero.
#
# Usage: scripts/fuzz.sh [SECONDS]   (default 60; `make fuzz FUZZ_SECONDS=N` calls this)
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${1:-60}
case "$SECS" in ''|*[!0-9]*) echo "fuzz: SECONDS must be a whole number, not '$SECS'" >&2; exit 2 ;; esac
CC=${FUZZ_CC:-clang}
OUT=build-fuzz
command -v "$CC" >/dev/null 2>&1 || { echo "fuzz: '$CC' not found (libFuzzer needs clang; scripts/deps.sh installs it)" >&2; exit 2; }

mkdir -p "$OUT/seeds" "$OUT/corpus" "$OUT/crashes"
CFLAGS=(-std=c11 -D_GNU_SOURCE -Wall -Wextra -O1 -g -fno-omit-frame-pointer -I. -Iinclude -pthread)
LIB_SRC=(base/*.c format/gguf.c format/gguf_get.c format/quant.c)

echo "fuzz: building $OUT/fuzz_gguf"
"$CC" "${CFLAGS[@]}" -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    "${LIB_SRC[@]}" fuzz/fuzz_gguf.c -o "$OUT/fuzz_gguf" -lm
"$CC" "${CFLAGS[@]}" -fsanitize=address,undefined "${LIB_SRC[@]}" format/gguf_write.c fuzz/mkseeds.c \
    -o "$OUT/mkseeds" -lm
rm -f "$OUT"/seeds/*
"$OUT/mkseeds" "$OUT/seeds"
echo "fuzz: $(ls "$OUT/seeds" | wc -l) seeds, $(ls "$OUT/corpus" | wc -l) corpus inputs; running for ${SECS}s"

# -timeout catches inputs that make the reader slow (quadratic paths), not only crashes.
"$OUT/fuzz_gguf" -max_total_time="$SECS" -rss_limit_mb=2048 -timeout=10 -max_len=16384 \
    -print_final_stats=1 -artifact_prefix="$OUT/crashes/" "$OUT/corpus" "$OUT/seeds"
echo "fuzz: no crash in ${SECS}s"
