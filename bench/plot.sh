#!/usr/bin/env bash
# bench/plot.sh — PNG of forward time vs batch size M (the cost of verifying M draft tokens) for
# arbor and llama.cpp, from the .dat files bench/compare.sh writes.
#
# Usage: bench/plot.sh OUT.png FILE.dat [FILE.dat ...]
#   env TITLE overrides the plot title.
#
# A .dat file is whitespace-separated, '#' comments, one line per M:
#   M  arbor_ms  llama_bench_ms  llama_all_logits_ms
# where llama_bench_ms is llama-bench's pp-M (one batch of M, logits of the last token only) and
# llama_all_logits_ms is `llama_oracle bench --verify` (one batch of M, logits of every token, as
# verification needs). '?' marks a missing value. A line "# model: NAME" names the series.
# Needs gnuplot (Debian package gnuplot-nox).
set -euo pipefail

die() { echo "plot.sh: $*" >&2; exit 1; }
[ $# -ge 2 ] || die "usage: bench/plot.sh OUT.png FILE.dat [FILE.dat ...]"
command -v gnuplot >/dev/null || die "gnuplot not found (apt-get install gnuplot-nox)"
out=$1; shift
for f in "$@"; do [ -r "$f" ] || die "cannot read '$f'"; done

term=png
gnuplot -e 'set terminal' 2>/dev/null | grep -q pngcairo && term=pngcairo
title=${TITLE:-"forward time vs batch size M (verify cost)"}

esc() { printf '%s' "$1" | sed 's/"/\\"/g'; }

plots=()
i=0
for f in "$@"; do
    i=$((i + 1))
    name=$(sed -n 's/^# model: *//p' "$f" | head -n 1)
    [ -n "$name" ] || name=$(basename "$f" .dat)
    name=$(esc "$name")
    fe=$(esc "$f")
    # colour = engine; dash and point type = model
    pts=(7 5 9 11 13 15); pt=${pts[$(( (i - 1) % 6 ))]}
    plots+=("\"$fe\" using 1:2 with linespoints lc rgb \"#1b9e77\" dt $i pt $pt lw 2 title \"arbor $name\"")
    plots+=("\"$fe\" using 1:4 with linespoints lc rgb \"#d95f02\" dt $i pt $pt lw 1.5 title \"llama.cpp all logits $name\"")
    plots+=("\"$fe\" using 1:3 with linespoints lc rgb \"#7570b3\" dt $i pt $pt lw 1 title \"llama-bench pp-M (last logits) $name\"")
done
joined=$(printf '%s, ' "${plots[@]}")
joined=${joined%, }

gnuplot <<EOF
set terminal $term size 1000,640 font ",11" noenhanced
set output "$(esc "$out")"
set title "$(esc "$title")"
set datafile missing "?"
set logscale x 2
set xlabel "M = nodes in one forward (all wanting logits for arbor / llama.cpp all logits)"
set ylabel "ms per forward"
set key top left
set grid
set yrange [0:*]
plot $joined
EOF
echo "plot.sh: wrote $out"
