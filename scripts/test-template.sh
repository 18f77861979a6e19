#!/usr/bin/env bash
# The reference side of tests/test_template.c: tests/template/render.js renders generated chat requests with
# @huggingface/jinja (pinned by tests/template/package-lock.json) and llama.cpp's Qwen3.5 template.
#
#   scripts/test-template.sh --install   install tests/template/node_modules, idempotently (scripts/deps.sh)
#   scripts/test-template.sh [BUILD]     install, then run BUILD/tests/test_template (default build)
#
# Install scripts of npm packages are never run. Needs node >= 18 and npm; the renderer needs the llama.cpp
# source tree in ARBOR_LLAMA_SRC (default build/oracle/llama.cpp, cloned by scripts/oracle.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=tests/template
PKG=$DIR/node_modules/@huggingface/jinja/package.json
want=$(sed -n 's/^ *"@huggingface\/jinja": "\(.*\)"$/\1/p' $DIR/package.json)
have=$([ -f "$PKG" ] && sed -n 's/^  "version": "\(.*\)",$/\1/p' "$PKG" || true)
if [ "$have" != "$want" ] || [ $DIR/package-lock.json -nt "$PKG" ]; then
    command -v npm >/dev/null 2>&1 || { echo "test-template: npm not found: run scripts/deps.sh (installs nodejs and npm)" >&2; exit 1; }
    echo "test-template: installing @huggingface/jinja $want into $DIR/node_modules"
    (cd $DIR && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) \
        || { echo "test-template: npm ci in $DIR failed (needs the npm registry)" >&2; exit 1; }
    touch "$PKG"
fi
[ "${1:-}" = --install ] && exit 0

BUILD=${1:-build}
export ARBOR_LLAMA_SRC=${ARBOR_LLAMA_SRC:-$PWD/build/oracle/llama.cpp}
exec "$BUILD/tests/test_template"
