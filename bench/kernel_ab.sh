#!/usr/bin/env bash
# bench/kernel_ab.sh — A/B of two kernel builds on bench/tile_bench.c or bench/gemm_bench.c, alternating.
#
# This machine is shared and its speed moves from minute to minute (docs/BENCHMARKS.md): two runs a
# minute apart can differ by more than the change being measured. So the two builds run in turn, round
# after round, and the summary gives each side's best and median over the rounds.
#
# Usage: bench/kernel_ab.sh [-n ROUNDS] [-m M] A B -- tile|gemm ARGS...
#   A, B      what to link the bench against, comma-separated: a library (build-lead/libarbor.a), or
#             objects put ahead of one (/tmp/x/gemm_avx512.o,build-lead/libarbor.a: a scratch variant of
#             one kernel file, compiled with the Makefile's flags for that file, replaces its member)
#   -n ROUNDS rounds (default 6)
#   -m M      gemm: the row of the table to report (default 1); tile_bench reports its one figure
#   tile ARGS bench/tile_bench.c's arguments (TYPE N_OUT M N_IN CALLS): ns per tile, lower is better
#   gemm ARGS bench/gemm_bench.c's arguments (TYPE N_IN N_OUT ISA REPS hot|cold [tiles]): GB/s of weights
#             at M = -m, per thread count, higher is better
# Each side's outputs also carry the bench's checksum (tile_bench: y0), printed so that a variant that
# changes the results is seen. Example (the m1_q3q2 change of fedce05):
#   bench/kernel_ab.sh -n 4 /tmp/base/libarbor.a build-lead/libarbor.a -- gemm q3_K 5120 17408 best 5 cold tiles
set -euo pipefail

die() { echo "kernel_ab: $*" >&2; exit 2; }

rounds=6 mrow=1
while [ $# -gt 0 ]; do
    case $1 in
        -n) rounds=${2:?-n needs a number}; shift 2 ;;
        -m) mrow=${2:?-m needs a number}; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) break ;;
    esac
done
[ $# -ge 4 ] || die "usage: bench/kernel_ab.sh [-n ROUNDS] [-m M] A B -- tile|gemm ARGS..."
side_a=$1 side_b=$2
[ "$3" = "--" ] || die "expected -- after the two builds, got '$3'"
kind=$4
shift 4
case $kind in tile|gemm) ;; *) die "the bench is tile or gemm, not '$kind'" ;; esac
case $rounds in ''|*[!0-9]*|0) die "-n needs a positive whole number" ;; esac
bargs=("$@")   # the bench's own arguments

cd "$(dirname "$0")/.."
tmp=$(mktemp -d /tmp/kernel_ab.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

build() {   # build SIDE OUT
    local inputs=() f
    IFS=, read -r -a inputs <<< "$1"
    for f in "${inputs[@]}"; do [ -f "$f" ] || die "no such file: $f"; done
    cc -O2 -std=c11 -D_GNU_SOURCE -I. -Iinclude "bench/${kind}_bench.c" "${inputs[@]}" -lm -pthread -o "$2" ||
        die "cannot build bench/${kind}_bench.c against $1"
}
build "$side_a" "$tmp/a"
build "$side_b" "$tmp/b"

# one figure per line: "SIDE KEY VALUE CHECK"
measure() {   # measure SIDE
    if [ "$kind" = tile ]; then
        "$tmp/$1" "${bargs[@]}" | awk -v s="$1" '/ns per tile/ { c = $NF; sub(/\]$/, "", c); print s, "ns/tile", $8, c }'
    else
        "$tmp/$1" "${bargs[@]}" | awk -v s="$1" -v m="$mrow" '
            /^threads/ { t = $2 }
            $1 == m && NF >= 4 && t != "" { print s, "GB/s@" t "thr", $3, "-" }'
    fi
}

echo "kernel_ab: ${kind}_bench ${bargs[*]}, $rounds rounds, A = $side_a, B = $side_b"
for _ in $(seq "$rounds"); do
    for s in a b; do
        measure "$s" >> "$tmp/all" || die "the bench failed on side $s"
    done
done
awk '
    { k = $2; v[$1, k, ++n[$1, k]] = $3; keys[k] = 1; chk[$1, k] = $4 }
    END {
        for (k in keys) {
            lower = (k ~ /^ns/)
            for (si = 1; si <= 2; si++) {
                s = si == 1 ? "a" : "b"; c = n[s, k]
                for (i = 1; i <= c; i++) x[i] = v[s, k, i]
                for (i = 1; i <= c; i++) for (j = i + 1; j <= c; j++) if (x[j] < x[i]) { t = x[i]; x[i] = x[j]; x[j] = t }
                best = lower ? x[1] : x[c]; med = x[int((c + 1) / 2)]
                line = ""
                for (i = 1; i <= c; i++) line = line " " v[s, k, i]
                printf "%s %-12s best %8s  median %8s  (rounds:%s)  check %s\n", toupper(s), k, best, med, line, chk[s, k]
            }
        }
    }' "$tmp/all" | sort -k2,2 -k1,1
