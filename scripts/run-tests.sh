#!/usr/bin/env bash
# Runs every test binary of a build directory, then prints the combined closing line.
# Usage: scripts/run-tests.sh BUILD_DIR
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
export ARBOR_FIXTURES=${ARBOR_FIXTURES:-$PWD/build/fixtures}
export ARBOR_ORACLE=${ARBOR_ORACLE:-$PWD/build/oracle/llama_oracle}
export ARBOR_LLAMA_SRC=${ARBOR_LLAMA_SRC:-$PWD/build/oracle/llama.cpp}
export ARBOR_BIN=$PWD/$BUILD/arbor

# Fixtures (synthetic models made by arbor mkmodel, quantized by the oracle) are shared by all builds.
scripts/fixtures.sh "$PWD/$BUILD/arbor" || { echo "fixtures failed"; echo "0 passed, 1 failed"; exit 1; }

total_pass=0; total_fail=0; failed_suites=()
for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    echo "== $name"
    out=$("$t" 2>&1); rc=$?
    echo "$out" | grep -v '^ok ' | tail -n 40
    line=$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -n 1)
    p=$(echo "$line" | awk '{print $1}'); f=$(echo "$line" | awk '{print $3}')
    p=${p:-0}; f=${f:-0}
    if [ $rc -ne 0 ] && [ "$f" = 0 ]; then f=1; echo "$name exited $rc"; fi
    [ "$f" != 0 ] && failed_suites+=("$name")
    total_pass=$((total_pass + p)); total_fail=$((total_fail + f))
done
# The NEON kernels, cross-compiled for AArch64 and run under qemu-user (normal build only).
if [ "${ARBOR_SANITIZED:-0}" != 1 ]; then
    echo "== test_gemm (aarch64 NEON under qemu)"
    out=$(scripts/test-neon.sh "$BUILD/neon" 2>&1); rc=$?
    echo "$out" | grep -v '^ok ' | tail -n 20
    line=$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -n 1)
    p=$(echo "$line" | awk '{print $1}'); f=$(echo "$line" | awk '{print $3}')
    p=${p:-0}; f=${f:-0}
    if [ $rc -ne 0 ] && [ "$f" = 0 ]; then f=1; fi
    [ "$f" != 0 ] && failed_suites+=("neon")
    total_pass=$((total_pass + p)); total_fail=$((total_fail + f))
fi

# End-to-end: the official client SDKs against a running `arbor serve` (tests/server).
echo "== sdk (scripts/test-server.sh)"
out=$(scripts/test-server.sh "$BUILD" 2>&1); rc=$?
echo "$out" | tail -n 40
line=$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -n 1)
p=$(echo "$line" | awk '{print $1}'); f=$(echo "$line" | awk '{print $3}')
p=${p:-0}; f=${f:-0}
if [ $rc -ne 0 ] && [ "$f" = 0 ]; then f=1; fi
[ "$f" != 0 ] && failed_suites+=("sdk")
total_pass=$((total_pass + p)); total_fail=$((total_fail + f))

[ ${#failed_suites[@]} -gt 0 ] && echo "failed suites: ${failed_suites[*]}"
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" = 0 ]
