#!/usr/bin/env bash
# Installs and builds the llama.cpp reference oracle used by the differential tests, idempotently
# (well under a second when everything is already there; scripts/deps.sh calls it on every `make test`).
#
#   1. tests/oracle/node_modules: node-llama-cpp 3.22.1 + its prebuilt linux-x64 CPU libs (llama.cpp 0.5.0),
#      pinned by tests/oracle/package-lock.json; install scripts are never run (they would download/build).
#   2. build/oracle/llama.cpp: the matching llama.cpp source, cloned from the git bundle inside the package
#      (headers, tokenizer test vectors, tools sources).
#   3. build/oracle/llama_oracle: tests/oracle/llama_oracle.c linked against the shipped libs.
#   4. build/oracle/dflash_oracle: tests/oracle/dflash_oracle.cpp (C++17, llama-ext.h from the cloned src/):
#      one DFlash step of llama.cpp (tap features + draft logits) for tests/test_dflash.c.
#   5. build/oracle/llama-speculative-simple: llama.cpp's examples/speculative-simple (C++17, links the
#      shipped libllama-common.so), the reference DFlash loop; links to the CPU backends sit next to it.
#
# Usage: scripts/oracle.sh [--bench-tools] [--server-tools]
#   --bench-tools  also builds llama.cpp's own tools/llama-bench into build/oracle/llama-bench (C++17).
#   --server-tools also builds llama.cpp's tools/server into build/oracle/llama-server (C++17; no web UI).
# Needs: npm, git, gcc, g++; scripts/deps.sh installs them on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

BENCH_TOOLS=0
SERVER_TOOLS=0
for a in "$@"; do
    case "$a" in
        --bench-tools) BENCH_TOOLS=1 ;;
        --server-tools) SERVER_TOOLS=1 ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "oracle: unknown argument '$a' (try --help)" >&2; exit 2 ;;
    esac
done

PKG=tests/oracle
NM=$PKG/node_modules
BINS=$ROOT/$NM/@node-llama-cpp/linux-x64/bins/linux-x64
BUNDLE=$NM/node-llama-cpp/llama/gitRelease.bundle
STAMP=$NM/.arbor-oracle-installed
OUT=build/oracle
SRC=$OUT/llama.cpp
SRC_STAMP=$SRC/.arbor-cloned
ORACLE=$OUT/llama_oracle
LIBS=(-l:libllama.v0.5.0.so -l:libggml.v0.5.0.so -l:libggml-base.so)

fail() {
    echo "oracle: $*" >&2
    exit 1
}
need() {
    command -v "$1" >/dev/null 2>&1 || fail "'$1' not found: $2"
}

# One run at a time (parallel `make test` runs in several build directories share build/oracle).
mkdir -p "$OUT"
exec 9>"$OUT/.lock"
if command -v flock >/dev/null 2>&1; then
    flock 9
fi

case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) ;;
    *) fail "the pinned llama.cpp binaries are for linux x86-64 (glibc) only; this is $(uname -s)-$(uname -m)" ;;
esac

# ---- 1. npm package (reinstalled when missing, or when package.json / the lock changed since the install)
if [ ! -f "$STAMP" ] || [ "$PKG/package-lock.json" -nt "$STAMP" ] || [ "$PKG/package.json" -nt "$STAMP" ] \
    || [ ! -f "$BINS/libllama.v0.5.0.so" ] || [ ! -f "$BUNDLE" ]; then
    need npm "run scripts/deps.sh (installs nodejs and npm on Debian 12) or install Node.js >= 18 with npm"
    echo "oracle: installing node-llama-cpp 3.22.1 (linux-x64 CPU libs only) into $NM"
    rm -rf "$NM"
    # Not `npm ci`: the lock cannot list node-llama-cpp's mac/win/riscv optional packages (the registry
    # used to create it does not serve them), and npm ci refuses a lock without them. `npm install` with
    # the lock present installs exactly the locked versions (integrity-checked) and skips the optional ones.
    if ! (cd "$PKG" && npm install --ignore-scripts --omit=optional --no-save --no-audit --no-fund \
            --loglevel=error); then
        fail "npm install in $PKG failed (needs access to the npm registry; see the npm error above)"
    fi
    [ -f "$BINS/libllama.v0.5.0.so" ] || fail "npm installed no prebuilt libs in $BINS"
    [ -f "$BUNDLE" ] || fail "npm installed no llama.cpp source bundle at $BUNDLE"
    ver=$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$NM/node-llama-cpp/package.json")
    [ "$ver" = 3.22.1 ] || fail "expected node-llama-cpp 3.22.1, npm installed '$ver'"
    touch "$STAMP"
fi

# ---- 2. llama.cpp source tree of the same release (re-cloned after a reinstall)
if [ ! -f "$SRC_STAMP" ] || [ "$STAMP" -nt "$SRC_STAMP" ] || [ ! -f "$SRC/include/llama.h" ]; then
    need git "run scripts/deps.sh or install git"
    echo "oracle: cloning the llama.cpp source from $BUNDLE into $SRC"
    rm -rf "$SRC"
    git -c advice.detachedHead=false clone -q "$BUNDLE" "$SRC" || fail "git clone of $BUNDLE failed"
    [ -f "$SRC/include/llama.h" ] || fail "$SRC has no include/llama.h after the clone"
    touch "$SRC_STAMP"
fi

# ---- 3. the C harness (rebuilt when missing, older than its source or the tree, or unable to start)
if [ ! -x "$ORACLE" ] || [ $PKG/llama_oracle.c -nt "$ORACLE" ] || [ "$SRC_STAMP" -nt "$ORACLE" ] \
    || ! "$ORACLE" help >/dev/null 2>&1; then
    CC_ORACLE=${ORACLE_CC:-gcc}
    need "$CC_ORACLE" "run scripts/deps.sh (build-essential) or install gcc"
    echo "oracle: building $ORACLE"
    "$CC_ORACLE" -O2 -g -std=c11 -D_GNU_SOURCE -Wall -Wextra \
        -I"$SRC/include" -I"$SRC/ggml/include" $PKG/llama_oracle.c -o "$ORACLE.tmp.$$" \
        -L"$BINS" -Wl,-rpath,"$BINS" "${LIBS[@]}" -ldl -lm \
        || fail "compiling $PKG/llama_oracle.c failed"
    mv "$ORACLE.tmp.$$" "$ORACLE"
    "$ORACLE" help >/dev/null 2>&1 || fail "$ORACLE was built but does not start (missing shared libs in $BINS?)"
fi

# ---- 4. the DFlash harness (C++: the DFlash hooks of llama-ext.h are exported C++-mangled)
DFLASH_ORACLE=$OUT/dflash_oracle
if [ ! -x "$DFLASH_ORACLE" ] || [ $PKG/dflash_oracle.cpp -nt "$DFLASH_ORACLE" ] || [ "$SRC_STAMP" -nt "$DFLASH_ORACLE" ] \
    || ! "$DFLASH_ORACLE" --help >/dev/null 2>&1; then
    need g++ "run scripts/deps.sh (build-essential) or install g++"
    echo "oracle: building $DFLASH_ORACLE"
    g++ -std=c++17 -O2 -g -Wall -Wextra -I"$SRC/include" -I"$SRC/ggml/include" -I"$SRC/src" \
        $PKG/dflash_oracle.cpp -o "$DFLASH_ORACLE.tmp.$$" -L"$BINS" -Wl,-rpath,"$BINS" "${LIBS[@]}" -ldl \
        || fail "compiling $PKG/dflash_oracle.cpp failed"
    mv "$DFLASH_ORACLE.tmp.$$" "$DFLASH_ORACLE"
    "$DFLASH_ORACLE" --help >/dev/null 2>&1 || fail "$DFLASH_ORACLE was built but does not start"
fi

# Tools built from llama.cpp's sources call ggml_backend_load_all(), which searches only the
# executable's directory and the cwd: links to the CPU backend variants go next to them.
link_cpu_backends() {
    local so
    for so in "$BINS"/libggml-cpu-*.so; do
        [ "$(readlink "$OUT/$(basename "$so")" 2>/dev/null)" = "$so" ] || ln -sf "$so" "$OUT/$(basename "$so")"
    done
}

# ---- 5. llama.cpp's speculative-simple (the reference DFlash loop), from the cloned source
SPEC=$OUT/llama-speculative-simple
SPEC_SRC=$SRC/examples/speculative-simple/speculative-simple.cpp
[ -f "$SPEC_SRC" ] || fail "$SPEC_SRC is missing from the cloned source"
if [ ! -x "$SPEC" ] || [ "$SRC_STAMP" -nt "$SPEC" ]; then
    need g++ "run scripts/deps.sh (build-essential) or install g++"
    echo "oracle: building $SPEC (C++17, links the shipped libllama-common.so)"
    g++ -std=c++17 -O2 -DNDEBUG -I"$SRC/include" -I"$SRC/ggml/include" -I"$SRC/common" -I"$SRC/vendor" -I"$SRC/src" \
        "$SPEC_SRC" -o "$SPEC.tmp.$$" -L"$BINS" -Wl,-rpath,"$BINS" -l:libllama-common.so "${LIBS[@]}" -lpthread \
        || fail "compiling speculative-simple failed"
    mv "$SPEC.tmp.$$" "$SPEC"
fi
link_cpu_backends
"$SPEC" --help >/dev/null 2>&1 || fail "$SPEC was built but does not start"

# ---- optional: llama.cpp's own llama-bench, built from the cloned source against the shipped libs
if [ "$BENCH_TOOLS" = 1 ]; then
    BENCH=$OUT/llama-bench
    BDIR=$SRC/tools/llama-bench
    BSRC=("$BDIR/llama-bench.cpp" "$BDIR/main.cpp")
    for f in "${BSRC[@]}"; do [ -f "$f" ] || fail "$f is missing from the cloned source"; done
    if [ ! -x "$BENCH" ] || [ "$SRC_STAMP" -nt "$BENCH" ]; then
        need g++ "run scripts/deps.sh (build-essential) or install g++"
        echo "oracle: building $BENCH (C++17, links the shipped libllama-common.so)"
        g++ -std=c++17 -O2 -DNDEBUG -I"$SRC/include" -I"$SRC/ggml/include" -I"$SRC/common" -I"$SRC/vendor" \
            -I"$SRC/src" -I"$BDIR" "${BSRC[@]}" -o "$BENCH.tmp.$$" -L"$BINS" -Wl,-rpath,"$BINS" -l:libllama-common.so "${LIBS[@]}" \
            -lpthread || fail "compiling llama-bench failed"
        mv "$BENCH.tmp.$$" "$BENCH"
    fi
    "$BENCH" --help >/dev/null 2>&1 || fail "$BENCH was built but does not start"
    echo "oracle: llama-bench ready: $BENCH -m MODEL -t 2 -p 512 -n 128"
fi

# ---- optional: llama.cpp's own llama-server (tools/server), built from the cloned source against the
# shipped libs. The shipped libs hold llama, ggml and llama-common (with cpp-httplib, built without
# OpenSSL, and with LLAMA_SUBPROCESS), but not mtmd (multimodal), which the server links: mtmd and
# the vendored hashes are compiled from the source here too. The web UI (npm build or a Hugging Face
# download in llama.cpp's cmake) is left out: ui.h/ui.cpp are generated with no assets, as llama.cpp's
# own build does when no assets are found, so the API works and "/" has no page.
if [ "$SERVER_TOOLS" = 1 ]; then
    SERVER=$OUT/llama-server
    SDIR=$SRC/tools/server
    MDIR=$SRC/tools/mtmd
    SBUILD=$OUT/llama-server.build
    if [ ! -x "$SERVER" ] || [ "$SRC_STAMP" -nt "$SERVER" ]; then
        need g++ "run scripts/deps.sh (build-essential) or install g++"
        need gcc "run scripts/deps.sh (build-essential) or install gcc"
        for f in "$SDIR/main.cpp" "$SDIR/server.cpp" "$MDIR/mtmd.cpp" "$MDIR/clip.cpp" "$SRC/tools/ui/ui.h.in" \
                "$SRC/tools/ui/ui.cpp.in" "$SRC/vendor/hash/hash.cpp" "$SRC/vendor/cpp-httplib/httplib.h"; do
            [ -f "$f" ] || fail "$f is missing from the cloned source"
        done
        rm -rf "$SBUILD"
        mkdir -p "$SBUILD/ui"
        sed -e 's/^#cmakedefine LLAMA_UI_HAS_ASSETS 1$/\/* #undef LLAMA_UI_HAS_ASSETS *\//' -e 's/@N_ASSETS@/0/g' \
            "$SRC/tools/ui/ui.h.in" > "$SBUILD/ui/ui.h"
        sed -e 's/@ASSET_ARRAYS@//' -e 's/@ASSET_TABLE@//' -e 's/@N_ASSETS@/0/g' -e 's/@USE_GZIP@/false/' \
            "$SRC/tools/ui/ui.cpp.in" > "$SBUILD/ui/ui.cpp"
        # The source lists of tools/server/CMakeLists.txt (server-context, llama-server-impl, llama-server),
        # tools/mtmd/CMakeLists.txt (mtmd) and vendor/hash/CMakeLists.txt.
        ssrc=("$SDIR"/main.cpp "$SDIR"/server*.cpp "$MDIR"/mtmd.cpp "$MDIR"/mtmd-audio.cpp "$MDIR"/mtmd-image.cpp
              "$MDIR"/mtmd-helper.cpp "$MDIR"/mtmd-helper-gen.cpp "$MDIR"/clip.cpp "$MDIR"/models/*.cpp
              "$SRC"/vendor/hash/hash.cpp "$SBUILD"/ui/ui.cpp)
        echo "oracle: building $SERVER (C++17, ${#ssrc[@]} sources + mtmd/hash C files, links the shipped libllama-common.so; a few minutes)"
        export SRC SBUILD
        # One compile per source, as many at once as there are CPUs; objects named after their path.
        compile_one() {
            local src=$1 obj
            obj=$SBUILD/$(printf '%s' "${src#"$SRC"/}" | tr '/' '_').o
            case "$src" in
                */sha1/sha1.c) g++ -std=c++17 -O2 -DNDEBUG -w -x c++ -I"$SRC/vendor/hash" -c "$src" -o "$obj" ;;
                *.c) gcc -O2 -DNDEBUG -w -I"$SRC/vendor/hash" -c "$src" -o "$obj" ;;
                *) g++ -std=c++17 -O2 -DNDEBUG -DLLAMA_SUBPROCESS -DMTMD_VIDEO -Wno-cast-qual \
                       -I"$SRC/include" -I"$SRC/ggml/include" -I"$SRC/common" -I"$SRC/vendor" -I"$SRC/src" \
                       -I"$SRC/tools/mtmd" -I"$SRC/tools/server" -I"$SBUILD/ui" -I"$SRC" -c "$src" -o "$obj" ;;
            esac || { echo "oracle: compiling $src failed" >&2; return 1; }
        }
        export -f compile_one
        printf '%s\n' "${ssrc[@]}" "$SRC"/vendor/hash/xxhash/xxhash.c "$SRC"/vendor/hash/sha1/sha1.c \
            "$SRC"/vendor/hash/sha256/sha256.c \
            | xargs -d '\n' -P "$(nproc)" -n 1 bash -c 'compile_one "$1"' _ \
            || fail "compiling llama-server failed (see the compiler errors above)"
        g++ "$SBUILD"/*.o -o "$SERVER.tmp.$$" -L"$BINS" -Wl,-rpath,"$BINS" -l:libllama-common.so "${LIBS[@]}" \
            -lpthread || fail "linking llama-server failed"
        mv "$SERVER.tmp.$$" "$SERVER"
        rm -rf "$SBUILD"
    fi
    link_cpu_backends
    "$SERVER" --help >/dev/null 2>&1 || fail "$SERVER was built but does not start"
    echo "oracle: llama-server ready: $SERVER -m MODEL -t 2 --port 8081"
fi

echo "oracle: ready: $ORACLE, $DFLASH_ORACLE, $SPEC (llama.cpp 0.5.0 from node-llama-cpp 3.22.1; source $SRC)"
