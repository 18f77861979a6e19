#!/usr/bin/env bash
# Runs every test binary of a build directory plus the script-driven suites (layer check, NEON
# kernels under qemu, client SDKs against a live server), then prints the combined closing line.
# Usage: scripts/run-tests.sh BUILD_DIR
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
export ARBOR_FIXTURES=${ARBOR_FIXTURES:-$PWD/build/fixtures}
export ARBOR_ORACLE=${ARBOR_ORACLE:-$PWD/build/oracle/llama_oracle}
export ARBOR_LLAMA_SRC=${ARBOR_LLAMA_SRC:-$PWD/build/oracle/llama.cpp}
export ARBOR_BIN=$PWD/$BUILD/arbor

total_pass=0; total_fail=0; failed_suites=()

# run_suite NAME CMD...: runs one suite, shows its failures and closing line, adds its counts.
run_suite() {
    local name=$1; shift
    echo "== $name"
    local out rc line p f
    out=$("$@" 2>&1); rc=$?
    echo "$out" | grep -v '^ok ' | tail -n 40
    line=$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -n 1)
    p=$(echo "$line" | awk '{print $1}'); f=$(echo "$line" | awk '{print $3}')
    p=${p:-0}; f=${f:-0}
    if [ $rc -ne 0 ] && [ "$f" = 0 ]; then f=1; echo "$name exited $rc"; fi
    [ "$f" != 0 ] && failed_suites+=("$name")
    total_pass=$((total_pass + p)); total_fail=$((total_fail + f))
}

# Fixtures (synthetic models made by arbor mkmodel, quantized by the oracle) are shared by all builds.
if ! scripts/fixtures.sh "$ARBOR_BIN"; then
    echo "fixtures failed"; echo "0 passed, 1 failed"; exit 1
fi

for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    run_suite "$(basename "$t")" "$t"
done

# The AVX2 kernels as a CPU without AVX-512 runs them (ARBOR_CPU_ISA caps the feature table; test_gemm
# already forces each ISA itself): attention, the GDN step, SiLU, the norms and the convolution against their references, the forward
# against llama.cpp.
if grep -qw avx2 /proc/cpuinfo 2>/dev/null; then
    for t in test_attn test_gdn test_act test_norm test_qwen35 test_parity; do
        [ -x "$BUILD/tests/$t" ] && run_suite "$t (ARBOR_CPU_ISA=avx2)" env ARBOR_CPU_ISA=avx2 "$BUILD/tests/$t"
    done
fi
run_suite layers scripts/check-layers.sh
if [ "${ARBOR_SANITIZED:-0}" != 1 ]; then
    # The NEON kernels, cross-compiled for AArch64 and run under qemu-user (normal build only).
    run_suite "test_gemm (aarch64 NEON under qemu)" scripts/test-neon.sh "$BUILD/neon"
fi
# End-to-end: the official client SDKs against a running `arbor serve` (tests/server).
run_suite "sdk (scripts/test-server.sh)" scripts/test-server.sh "$BUILD"

[ ${#failed_suites[@]} -gt 0 ] && echo "failed suites: ${failed_suites[*]}"
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" = 0 ]
