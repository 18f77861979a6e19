#!/usr/bin/env bash
# Cross-compiles the matrix kernels and tests/test_gemm.c for AArch64 (NEON + dotprod) and runs
# the test under qemu-user, so the NEON paths are checked on an x86 machine. Slow, not fast.
# Needs the Debian packages gcc-aarch64-linux-gnu and qemu-user (installed here if missing).
# Usage: scripts/test-neon.sh [BUILD_DIR]   (default build-neon)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-build-neon}

if ! command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || ! command -v qemu-aarch64 >/dev/null 2>&1; then
    echo "test-neon: installing gcc-aarch64-linux-gnu qemu-user"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
fi

SRC=(base/*.c format/quant.c compute/cpu/*.c tests/test_gemm.c)   # ops.c: test_gemm checks packed ar_weights
[ -f format/quant_encode.c ] && SRC+=(format/quant_encode.c)
mkdir -p "$OUT"
aarch64-linux-gnu-gcc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -O2 -march=armv8.2-a+dotprod \
    -static -pthread -I. -Iinclude "${SRC[@]}" -lm -o "$OUT/test_gemm_aarch64"
# -cpu max: an emulated CPU with the dot-product extension (HWCAP_ASIMDDP)
qemu-aarch64 -cpu max "$OUT/test_gemm_aarch64"
