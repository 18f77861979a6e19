#!/usr/bin/env bash
# Checks that every #include "X/..." in a layer points at the same or a lower layer
# (docs/ARCHITECTURE.md: base < format < tok < compute < model < spec < engine < server < cli).
# Prints one line per violation and the closing line "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."
rank() {
    case "$1" in
    base) echo 0 ;; format) echo 1 ;; tok) echo 2 ;; compute) echo 3 ;; model) echo 4 ;;
    spec) echo 5 ;; engine) echo 6 ;; include) echo 7 ;; server) echo 8 ;; cli) echo 9 ;; *) echo -1 ;;
    esac
}
pass=0; fail=0
for f in base/*.[ch] format/*.[ch] tok/*.[ch] compute/*.[ch] compute/cpu/*.[ch] model/*.[ch] \
         spec/*.[ch] engine/*.[ch] include/*.h server/*.[ch] cli/*.[ch]; do
    [ -f "$f" ] || continue
    from=${f%%/*}; rf=$(rank "$from")
    while IFS= read -r inc; do
        to=${inc%%/*}
        [ "$to" = "$inc" ] && continue            # "arbor.h" via -Iinclude, or a sibling
        rt=$(rank "$to"); [ "$rt" -lt 0 ] && continue
        if [ "$rt" -gt "$rf" ]; then
            echo "layer violation: $f includes \"$inc\" ($from must not depend on $to)"; fail=$((fail + 1))
        else
            pass=$((pass + 1))
        fi
    done < <(sed -n 's/^#include "\([^"]*\)".*/\1/p' "$f")
done
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
