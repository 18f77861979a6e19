#!/usr/bin/env bash
# Installs everything the build and the tests need, idempotently, on Debian 12 as root:
# Debian packages, then the pinned llama.cpp oracle from npm (tests/oracle), then builds the oracle harness.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(build-essential pkg-config git clang libpcre2-dev libutf8proc-dev libmicrohttpd-dev
      libjansson-dev libcurl4-openssl-dev nodejs npm
      gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user gnuplot-nox)
missing=()
for p in "${PKGS[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
# A machine may already have node/npm from elsewhere; do not fight it.
if command -v npm >/dev/null 2>&1; then
    missing=($(printf '%s\n' "${missing[@]}" | grep -vx -e nodejs -e npm || true))
fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

scripts/oracle.sh
scripts/test-template.sh --install
