#!/usr/bin/env bash
# bench/compare.sh — arbor vs llama.cpp on the same GGUF files, in the same run, same threads.
#
# Usage: bench/compare.sh [options] MODEL.gguf [MODEL.gguf ...]
#   -t N             threads for both engines (default 2)
#   -r R             repetitions (default 3; both engines also do one untimed warm-up)
#   -p P             prompt test ppP (default 512)
#   -n N             decode test tgN (default 128)
#   --verify LIST    batch sizes M of the verify test (default 1,2,4,8,16,32,64)
#   --depth D        committed prefix before each verify forward (default 64)
#   --no-all-logits  skip llama.cpp's all-logits verify timing (llama_oracle bench --verify)
#   --plot PNG       where the verify-scaling plot goes (default docs/verify-scaling.png; "none": no plot)
#   --isa avx2       both engines as on a CPU without AVX-512: arbor with ARBOR_CPU_ISA=avx2, llama.cpp
#                    with only its "haswell" CPU variant (AVX2 + FMA + F16C) beside copies of its tools
# env: ARBOR (default build/arbor), LLAMA_BENCH (default build/oracle/llama-bench),
#      LLAMA_ORACLE (default build/oracle/llama_oracle). llama-bench and llama_oracle come from
#      `scripts/oracle.sh --bench-tools`. LLAMA_BENCH_ARGS: extra llama-bench flags (e.g. "--poll 0":
#      llama.cpp threads busy-wait by default, which collapses when the CPUs are oversubscribed).
#
# Per model it runs, one after the other:
#   arbor bench -m MODEL -t T -r R -p P -n N --verify LIST --depth D --roofline
#   llama-bench -m MODEL -t T -r R -p P -n N                         (pp, tg)
#   llama-bench -m MODEL -t T -r R -p LIST -n 0 -d D                 (one batch of M after D tokens;
#                                                                      logits of the LAST token only)
#   llama_oracle bench MODEL -t T -r R --verify LIST --prefix D      (one batch of M after D tokens,
#                                                                      logits of EVERY token = verify)
# and prints ratios arbor / llama.cpp in speed terms (> 1: arbor is faster): t/s over t/s for pp and
# tg, and llama.cpp ms / arbor ms for verify M. Everything (raw outputs, the summary, the .dat files
# and a copy of the plot) goes to bench/results/YYYYMMDD-HHMMSS/; the summary is also printed.
# The machine is shared: the summary records the load average before and after each engine.
set -euo pipefail

die() { echo "compare.sh: $*" >&2; exit 1; }

threads=2 reps=3 n_prompt=512 n_gen=128 verify=1,2,4,8,16,32,64 depth=64 all_logits=1 isa=native
plot=docs/verify-scaling.png
models=()
while [ $# -gt 0 ]; do
    case $1 in
        -t) threads=${2:?-t needs a value}; shift 2 ;;
        -r) reps=${2:?-r needs a value}; shift 2 ;;
        -p) n_prompt=${2:?-p needs a value}; shift 2 ;;
        -n) n_gen=${2:?-n needs a value}; shift 2 ;;
        --verify) verify=${2:?--verify needs a list}; shift 2 ;;
        --depth) depth=${2:?--depth needs a value}; shift 2 ;;
        --no-all-logits) all_logits=0; shift ;;
        --plot) plot=${2:?--plot needs a path}; shift 2 ;;
        --isa) isa=${2:?--isa needs a value}; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option '$1' (see --help)" ;;
        *) [ -r "$1" ] || die "cannot read model '$1'"; models+=("$(realpath "$1")"); shift ;;
    esac
done
[ ${#models[@]} -gt 0 ] || die "usage: bench/compare.sh [options] MODEL.gguf [MODEL.gguf ...] (see --help)"
for v in "$threads" "$reps" "$n_prompt" "$n_gen" "$depth"; do
    [[ $v =~ ^[0-9]+$ ]] || die "'$v' is not a non-negative integer"
done
[[ $verify =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--verify: '$verify' is not a list like 1,2,4,8"
[ "$n_prompt" -gt 0 ] && [ "$n_gen" -gt 0 ] || die "-p and -n must be > 0"
case $isa in native|avx2) ;; *) die "--isa: '$isa' is not native or avx2" ;; esac

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
[ "$plot" = none ] || plot=$(realpath -m "$plot")
ARBOR=$(realpath -m "${ARBOR:-build/arbor}")
LLAMA_BENCH=$(realpath -m "${LLAMA_BENCH:-build/oracle/llama-bench}")
LLAMA_ORACLE=$(realpath -m "${LLAMA_ORACLE:-build/oracle/llama_oracle}")
[ -x "$ARBOR" ] || die "no arbor binary at $ARBOR (run make, or set ARBOR=build-x/arbor)"
[ -x "$LLAMA_BENCH" ] || die "no llama-bench at $LLAMA_BENCH (run scripts/oracle.sh --bench-tools)"
[ "$all_logits" = 0 ] || [ -x "$LLAMA_ORACLE" ] || die "no llama_oracle at $LLAMA_ORACLE (run scripts/oracle.sh, or --no-all-logits)"

stamp=$(date +%Y%m%d-%H%M%S)
out=bench/results/$stamp
mkdir -p "$out"

# llama.cpp loads the best of the CPU variants (libggml-cpu-*.so) it finds beside its executable or in
# the working directory; --isa avx2 gives it a directory holding only the haswell one.
llama_dir=$root
export ARBOR_CPU_ISA=$isa
if [ "$isa" = avx2 ]; then
    llama_dir=$root/$out/llama-avx2
    variant=$(dirname "$LLAMA_BENCH")/libggml-cpu-haswell.so
    [ -r "$variant" ] || die "no $variant (llama.cpp's AVX2 CPU variant) beside llama-bench"
    mkdir -p "$llama_dir"
    cp "$LLAMA_BENCH" "$variant" "$llama_dir/"
    LLAMA_BENCH=$llama_dir/llama-bench
    if [ "$all_logits" = 1 ]; then cp "$LLAMA_ORACLE" "$llama_dir/"; LLAMA_ORACLE=$llama_dir/llama_oracle; fi
fi
in_llama_dir() { (cd "$llama_dir" && "$@"); }
summary=$out/summary.md
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# mdget FILE TEST COLUMN: the first word of COLUMN in the markdown-table row whose "test" cell is TEST
# (tables are found by their header row, so arbor's and llama-bench's tables read the same way).
mdget() {
    awk -F'|' -v test="$2" -v col="$3" '
        function trim(s) { gsub(/^[ \t]+|[ \t]+$/, "", s); return s }
        /^\|/ {
            hdr = 0
            for (i = 2; i < NF; i++) if (trim($i) == "test") hdr = 1
            if (hdr) { delete h; for (i = 2; i < NF; i++) h[trim($i)] = i; next }
            if (("test" in h) && (col in h) && trim($(h["test"])) == test) {
                split(trim($(h[col])), w, " "); print w[1]; exit
            }
        }' "$1"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "?"; else printf "%.2f", a / b }'; }
ms_of_rate() { awk -v m="$1" -v r="$2" 'BEGIN { if (r == "" || r + 0 == 0) print "?"; else printf "%.2f", 1000 * m / r }'; }
or_q() { [ -n "$1" ] && echo "$1" || echo "?"; }

git_rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -z "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] || git_rev="$git_rev + uncommitted changes"
arbor_built=$(date -r "$ARBOR" "+%Y-%m-%d %H:%M")
read -r -a llama_extra <<< "${LLAMA_BENCH_ARGS:-}"
load0=$(loadavg)
busy=$(awk -v l="${load0%% *}" -v n="$(nproc)" "BEGIN { print (l > n) ? 1 : 0 }")
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -n 1)
ncpu=$(nproc)
l3=$(lscpu | sed -n 's/^L3 cache: *//p' | head -n 1)
mem=$(free -g | awk '/^Mem:/ { print $2 " GiB" }')

{
    echo "# arbor vs llama.cpp — $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "- machine: $cpu, $ncpu CPUs, L3 $l3, RAM $mem; load average at the start $load0"
    echo "- arbor binary $ARBOR built $arbor_built; source tree at $git_rev"
    if [ "$busy" = 1 ]; then
        echo "- **WARNING: the load average ($load0) exceeds the $ncpu CPUs: other work competes for the cores and these"
        echo "  timings are not representative (llama.cpp suffers most: its threads busy-wait). Rerun on an idle machine.**"
    fi
    echo "- threads $threads, repetitions $reps (+1 warm-up), verify after a $depth-token prefix"
    [ "$isa" = native ] || echo "- **kernels capped at $isa**: arbor with ARBOR_CPU_ISA=$isa, llama.cpp with only its haswell CPU variant"
    echo "- arbor: \`$ARBOR bench -m MODEL -t $threads -r $reps -p $n_prompt -n $n_gen --verify $verify --depth $depth --roofline\`"
    echo "- llama.cpp: \`llama-bench -m MODEL -t $threads -r $reps -p $n_prompt -n $n_gen${LLAMA_BENCH_ARGS:+ $LLAMA_BENCH_ARGS}\` and \`-p $verify -n 0 -d $depth${LLAMA_BENCH_ARGS:+ $LLAMA_BENCH_ARGS}\`"
    [ "$all_logits" = 0 ] || echo "  and \`llama_oracle bench MODEL -t $threads -r $reps --verify $verify --prefix $depth\` (all logits)"
    echo "- ratios are arbor / llama.cpp in speed (> 1 = arbor faster); verify ratio = llama.cpp ms / arbor ms"
    echo
} > "$summary"

dats=()
peak=0
for model in "${models[@]}"; do
    name=$(basename "$model" .gguf)
    tag=$(printf '%s' "$name" | tr -c 'A-Za-z0-9._-' '_')
    echo "compare.sh: $name: arbor bench (load $(loadavg))" >&2
    la_a0=$(loadavg)
    "$ARBOR" bench -m "$model" -t "$threads" -r "$reps" -p "$n_prompt" -n "$n_gen" \
        --verify "$verify" --depth "$depth" --roofline > "$out/$tag.arbor.md" 2> "$out/$tag.arbor.log" \
        || die "arbor bench failed on $model (see $out/$tag.arbor.log)"
    la_a1=$(loadavg)

    echo "compare.sh: $name: llama-bench (load $(loadavg))" >&2
    la_l0=$(loadavg)
    in_llama_dir "$LLAMA_BENCH" -m "$model" -t "$threads" -r "$reps" -p "$n_prompt" ${llama_extra[@]+"${llama_extra[@]}"} -n "$n_gen" \
        > "$out/$tag.llama-bench.md" 2> "$out/$tag.llama-bench.log" \
        || die "llama-bench failed on $model (see $out/$tag.llama-bench.log)"
    [ "$isa" = native ] || grep -q "libggml-cpu-haswell" "$out/$tag.llama-bench.log" \
        || die "llama-bench did not load the haswell CPU variant (see $out/$tag.llama-bench.log)"
    in_llama_dir "$LLAMA_BENCH" -m "$model" -t "$threads" -r "$reps" -p "$verify" ${llama_extra[@]+"${llama_extra[@]}"} -n 0 -d "$depth" \
        > "$out/$tag.llama-bench-verify.md" 2> "$out/$tag.llama-bench-verify.log" \
        || die "llama-bench failed on $model (see $out/$tag.llama-bench-verify.log)"
    if [ "$all_logits" = 1 ]; then
        echo "compare.sh: $name: llama_oracle all-logits verify (load $(loadavg))" >&2
        in_llama_dir "$LLAMA_ORACLE" bench "$model" -t "$threads" -r "$reps" --verify "$verify" --prefix "$depth" \
            > "$out/$tag.llama-verify.txt" 2> "$out/$tag.llama-verify.log" \
            || die "llama_oracle bench failed on $model (see $out/$tag.llama-verify.log)"
    fi
    la_l1=$(loadavg)
    for s in "$la_a0" "$la_a1" "$la_l0" "$la_l1"; do
        peak=$(awk -v a="${s%% *}" -v b="$peak" "BEGIN { print (a > b) ? a : b }")
    done

    pp_a=$(mdget "$out/$tag.arbor.md" "pp$n_prompt" "t/s")
    tg_a=$(mdget "$out/$tag.arbor.md" "tg$n_gen" "t/s")
    pp_l=$(mdget "$out/$tag.llama-bench.md" "pp$n_prompt" "t/s")
    tg_l=$(mdget "$out/$tag.llama-bench.md" "tg$n_gen" "t/s")
    roof=$(grep -E "^\| tg$n_gen \|" "$out/$tag.arbor.md" | tail -n 1 || true)
    {
        echo "## $name"
        echo
        echo "load average: arbor $la_a0 → $la_a1; llama.cpp $la_l0 → $la_l1"
        echo
        echo "| test | arbor | llama.cpp | arbor / llama.cpp |"
        echo "| ---: | ----: | --------: | ----------------: |"
        echo "| pp$n_prompt | $(or_q "$pp_a") t/s | $(or_q "$pp_l") t/s | $(ratio "$pp_a" "$pp_l") |"
        echo "| tg$n_gen | $(or_q "$tg_a") t/s | $(or_q "$tg_l") t/s | $(ratio "$tg_a" "$tg_l") |"
        echo
        if [ -n "$roof" ]; then
            echo "arbor decode roofline (weights/token, ms/token, GB/s read, machine GB/s, %): $roof"
            echo
        fi
        echo "verify M after $depth tokens, ms per forward (llama-bench: last logits only; all logits: every row, as verify needs):"
        echo
        echo "| M | arbor ms | arbor fwd(M)/fwd(1) | llama-bench ms | ratio | llama.cpp all-logits ms | ratio |"
        echo "| -: | -------: | ------------------: | -------------: | ----: | ----------------------: | ----: |"
    } >> "$summary"

    dat=$out/$tag.dat
    printf '# model: %s\n# M arbor_ms llama_bench_ms llama_all_logits_ms (verify after %s tokens, %s threads)\n' \
        "$name" "$depth" "$threads" > "$dat"
    IFS=, read -r -a ms_list <<< "$verify"
    for m in "${ms_list[@]}"; do
        a_ms=$(mdget "$out/$tag.arbor.md" "verify$m" "ms/forward")
        a_rel=$(mdget "$out/$tag.arbor.md" "verify$m" "fwd(M)/fwd(1)")
        if [ "$depth" -gt 0 ]; then lb_test="pp$m @ d$depth"; else lb_test="pp$m"; fi
        lb_ms=$(ms_of_rate "$m" "$(mdget "$out/$tag.llama-bench-verify.md" "$lb_test" "t/s")")
        lo_ms="?"
        if [ "$all_logits" = 1 ]; then
            lo_ms=$(awk -v t="verify$m" '$1 == t { print $2; exit }' "$out/$tag.llama-verify.txt")
            lo_ms=$(or_q "$lo_ms")
        fi
        a_ms=$(or_q "$a_ms")
        echo "| $m | $a_ms | $(or_q "$a_rel") | $lb_ms | $(ratio "$lb_ms" "$a_ms") | $lo_ms | $(ratio "$lo_ms" "$a_ms") |" >> "$summary"
        echo "$m $a_ms $lb_ms $lo_ms" >> "$dat"
    done
    echo >> "$summary"
    dats+=("$dat")
done

if [ "$plot" != none ]; then
    if command -v gnuplot >/dev/null; then
        TITLE="forward time vs M (verify after $depth tokens), $threads threads, $cpu, $stamp" \
            bench/plot.sh "$out/verify-scaling.png" "${dats[@]}" >&2
        mkdir -p "$(dirname "$plot")"
        cp "$out/verify-scaling.png" "$plot"
        echo "plot: $plot (copy in $out/verify-scaling.png)" >> "$summary"
    else
        echo "compare.sh: gnuplot not found (apt-get install gnuplot-nox): no plot" >&2
    fi
fi
if awk -v p="$peak" -v n="$ncpu" "BEGIN { exit !(p > n + 1) }"; then
    echo "**WARNING: the 1-minute load average reached $peak during the run ($ncpu CPUs, this run uses $threads threads): the timings are disturbed by other work.**" >> "$summary"
fi
echo "raw outputs: $out/" >> "$summary"
cat "$summary"
