#!/usr/bin/env bash
# bench/pair.sh — speculative decoding on a target + DFlash drafter pair: arbor (plain, chain, DDTree)
# and llama.cpp (plain, DFlash chain) on the same files, the same prompt and threads, in one run.
#
# Usage: bench/pair.sh [-t THREADS] [-n TOKENS] [-f PROMPT_FILE] [--budget LIST] [TARGET DRAFTER]
#   defaults: 2 threads, 192 tokens, the first 1,500 bytes of /usr/include/linux/resource.h, budgets
#   4,16,64,auto, and the bundled pair models/arbor-tiny-target.gguf + models/arbor-tiny-dflash.gguf.
# env: ARBOR (default build/arbor), LLAMA_SPEC (default build/oracle/llama-speculative-simple),
#      LLAMA_BENCH (default build/oracle/llama-bench; both from scripts/oracle.sh [--bench-tools]).
#
# arbor:     arbor run -m TARGET [--draft DRAFTER [--budget B]] -f PROMPT -n N --temp 0: plain, chain and
#            DDTree at each budget of LIST (greedy; the table says whether each output equals plain's)
# llama.cpp: llama-bench -m TARGET -p 0 -n N                                         (plain decode t/s)
#            llama-speculative-simple -m TARGET -md DRAFTER --spec-type draft-dflash
#                --spec-draft-n-max 15 -f PROMPT -n N --temp 0 --top-k 1             (DFlash t/s, acceptance)
# Raw outputs go to bench/results/pair-YYYYMMDD-HHMMSS/; the summary is printed.
set -euo pipefail

die() { echo "pair.sh: $*" >&2; exit 1; }

threads=2 n_gen=192 prompt="" budgets=4,16,64,auto
while [ $# -gt 0 ]; do
    case $1 in
        -t) threads=${2:?-t needs a value}; shift 2 ;;
        -n) n_gen=${2:?-n needs a value}; shift 2 ;;
        -f) prompt=${2:?-f needs a file}; shift 2 ;;
        --budget) budgets=${2:?--budget needs a list}; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) break ;;
    esac
done
target=${1:-models/arbor-tiny-target.gguf}
drafter=${2:-models/arbor-tiny-dflash.gguf}
ARBOR=${ARBOR:-build/arbor}
LLAMA_SPEC=${LLAMA_SPEC:-build/oracle/llama-speculative-simple}
LLAMA_BENCH=${LLAMA_BENCH:-build/oracle/llama-bench}
for f in "$target" "$drafter"; do [ -f "$f" ] || die "no such model file: $f"; done
[ -x "$ARBOR" ] || die "no arbor binary at $ARBOR (make, or set ARBOR=)"
[ -x "$LLAMA_SPEC" ] || die "no $LLAMA_SPEC (run scripts/oracle.sh)"
[ -x "$LLAMA_BENCH" ] || die "no $LLAMA_BENCH (run scripts/oracle.sh --bench-tools)"

out=bench/results/pair-$(date -u +%Y%m%d-%H%M%S)
mkdir -p "$out"
if [ -z "$prompt" ]; then
    prompt=$out/prompt.txt
    head -c 1500 /usr/include/linux/resource.h > "$prompt"
fi
echo "pair.sh: $target + $drafter, prompt $prompt, $n_gen tokens, $threads threads -> $out" >&2
load() { cut -d' ' -f1-3 /proc/loadavg; }

echo "load before arbor: $(load)" > "$out/load.txt"
# arbor: plain, chain (the drafter's block) and DDTree at each budget, greedy, on the same prompt; the
# generated text must be identical in every mode (verification is lossless)
modes=(plain chain)
IFS=, read -r -a blist <<< "$budgets"
for b in "${blist[@]}"; do modes+=("ddtree-$b"); done
for mode in "${modes[@]}"; do
    args=()
    case $mode in
        plain) ;;
        chain) args=(--draft "$drafter") ;;
        ddtree-*) args=(--draft "$drafter" --budget "${mode#ddtree-}") ;;
    esac
    "$ARBOR" run -m "$target" "${args[@]}" -f "$prompt" -n "$n_gen" --temp 0 -t "$threads" \
        > "$out/arbor-$mode.txt" 2> "$out/arbor-$mode.err" || die "arbor run ($mode) failed: $(tail -3 "$out/arbor-$mode.err")"
done
echo "load before llama-bench: $(load)" >> "$out/load.txt"
"$LLAMA_BENCH" -m "$target" -t "$threads" -p 0 -n "$n_gen" -r 3 > "$out/llama-bench.txt" 2> "$out/llama-bench.err" \
    || die "llama-bench failed: $(tail -3 "$out/llama-bench.err")"
echo "load before llama-speculative-simple: $(load)" >> "$out/load.txt"
"$LLAMA_SPEC" -m "$target" -md "$drafter" -f "$prompt" --spec-type draft-dflash --spec-draft-n-max 15 \
    -n "$n_gen" --temp 0 --top-k 1 -t "$threads" -c 4096 > "$out/llama-spec.txt" 2>&1 \
    || die "llama-speculative-simple failed: $(tail -3 "$out/llama-spec.txt")"
echo "load at the end: $(load)" >> "$out/load.txt"

llama_plain=$(awk -F'|' '/ tg[0-9]+ /{gsub(/ /,"",$(NF-1)); split($(NF-1),a,"±"); print a[1]}' "$out/llama-bench.txt" | tail -1)
llama_spec=$(sed -n 's/.*decoded .* speed: *\([0-9.]*\) t\/s.*/\1/p' "$out/llama-spec.txt" | tail -1)
n_pred=$(sed -n 's/.*n_predict *= *\([0-9]*\).*/\1/p' "$out/llama-spec.txt" | tail -1)
n_acc=$(sed -n 's/.*n_accept *= *\([0-9]*\).*/\1/p' "$out/llama-spec.txt" | tail -1)
tau=$(awk -v p="$n_pred" -v a="$n_acc" 'BEGIN { if (p > a) printf "%.2f", p / (p - a); else print "?" }')
{
    echo "## arbor ($ARBOR run [--draft DRAFTER [--budget B]] -f PROMPT -n $n_gen --temp 0 -t $threads)"
    echo
    echo "| mode | acceptance length (tokens/step) | t/s | output identical to plain |"
    echo "| --- | ---: | ---: | :-: |"
    ref=$(md5sum < "$out/arbor-plain.txt" | cut -c1-32)
    for mode in "${modes[@]}"; do
        tps=$(sed -n 's/.*generation: [0-9]* tokens in [0-9.]* s (\([0-9.]*\) t\/s).*/\1/p' "$out/arbor-$mode.err" | tail -1)
        acc=$(sed -n 's/.*acceptance length \([0-9.]*\) tokens\/step.*/\1/p' "$out/arbor-$mode.err" | tail -1)
        same=$([ "$(md5sum < "$out/arbor-$mode.txt" | cut -c1-32)" = "$ref" ] && echo yes || echo NO)
        echo "| $mode | ${acc:-1.00} | $tps | $same |"
    done
    echo
    echo "## llama.cpp (same files, prompt, threads)"
    echo
    echo "| mode | acceptance length (tokens/step) | t/s |"
    echo "| --- | ---: | ---: |"
    echo "| plain (llama-bench tg$n_gen) | 1.00 | $llama_plain |"
    echo "| DFlash chain, 15 drafts (llama-speculative-simple) | $tau | $llama_spec |"
    echo
    cat "$out/load.txt"
} | tee "$out/summary.md"
