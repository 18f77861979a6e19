#!/usr/bin/env bash
# Runs the client SDK tests (tests/server, `node --test`: the OpenAI SDK on chat completions,
# completions and responses, the Anthropic SDK on messages) against a real `arbor serve`:
#   1. installs the pinned SDKs (npm ci --ignore-scripts in tests/server; skipped when already there),
#   2. starts `arbor serve` on the tiny-f32 fixture, on a free loopback port (--port 0), with a
#      random API key,
#   3. waits for /health, runs the tests, prints the closing line "N passed, M failed",
#   4. stops the server (SIGTERM; its log is shown when something failed).
# Usage: scripts/test-server.sh [BUILD_DIR]      (default build)
# Env: ARBOR_BIN (default BUILD_DIR/arbor), ARBOR_FIXTURES (default build/fixtures).
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
ARBOR=${ARBOR_BIN:-$PWD/$BUILD/arbor}
FIX=${ARBOR_FIXTURES:-$PWD/build/fixtures}
MODEL=$FIX/tiny-f32.gguf
DIR=tests/server

fail() {
    echo "test-server: $*" >&2
    echo "0 passed, 1 failed"
    exit 1
}

[ -x "$ARBOR" ] || fail "arbor binary '$ARBOR' not found (build it with make)"
[ -f "$MODEL" ] || fail "fixture $MODEL not found (run scripts/fixtures.sh)"
command -v node >/dev/null || fail "node is not installed (scripts/deps.sh installs it)"
command -v npm >/dev/null || fail "npm is not installed (scripts/deps.sh installs it)"

# 1. the SDKs, exactly as locked
installed() {   # prints "ok" when every dependency of package.json is installed at its pinned version
    node -e '
        const dir = process.argv[1], deps = require(dir + "/package.json").dependencies;
        for (const [name, want] of Object.entries(deps)) {
            let have = "";
            try { have = require(dir + "/node_modules/" + name + "/package.json").version; } catch {}
            if (have !== want) process.exit(1);
        }
        console.log("ok");' "$PWD/$DIR" 2>/dev/null
}
if [ "$(installed)" != ok ]; then
    (cd "$DIR" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) || fail "npm ci in $DIR failed"
fi

# 2. the server
LOG=$(mktemp)
KEY="test-$RANDOM$RANDOM"
ARBOR_API_KEY=$KEY "$ARBOR" serve -m "$MODEL" --host 127.0.0.1 --port 0 -t 2 --alias arbor-tiny --chat-family qwen3.5 >"$LOG" 2>&1 &
PID=$!
stop_server() {
    if kill -0 "$PID" 2>/dev/null; then
        kill -TERM "$PID" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$PID" 2>/dev/null
    fi
    wait "$PID" 2>/dev/null
}
trap 'stop_server; rm -f "$LOG"' EXIT

PORT=
for _ in $(seq 100); do
    PORT=$(sed -n 's/^arbor serve: port \([0-9][0-9]*\)$/\1/p' "$LOG" | head -n 1)
    [ -n "$PORT" ] && break
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
done
[ -n "$PORT" ] || { cat "$LOG" >&2; fail "the server did not start"; }

# 3. ready?
ready=0
for _ in $(seq 300); do
    if node -e 'fetch(process.argv[1]).then(r => process.exit(r.status === 200 ? 0 : 1), () => process.exit(1))' \
        "http://127.0.0.1:$PORT/health" 2>/dev/null; then ready=1; break; fi
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
done
[ "$ready" = 1 ] || { cat "$LOG" >&2; fail "the server did not become ready on port $PORT"; }

OUT=$(mktemp)
(cd "$DIR" && ARBOR_BASE_URL="http://127.0.0.1:$PORT/v1" ARBOR_API_KEY=$KEY \
    timeout 300 node --test --test-reporter=tap) >"$OUT" 2>&1
rc=$?
grep -E '^(not ok|# Subtest|ok )|^\s+(error|expected|actual|message):' "$OUT" | sed 's/^/  /' | tail -n 60
pass=$(sed -n 's/^# pass \([0-9][0-9]*\)$/\1/p' "$OUT" | tail -n 1)
failn=$(sed -n 's/^# fail \([0-9][0-9]*\)$/\1/p' "$OUT" | tail -n 1)
pass=${pass:-0}
failn=${failn:-0}
if [ "$rc" -ne 0 ] && [ "$failn" = 0 ]; then
    failn=1
    tail -n 40 "$OUT"
fi
if [ "$failn" != 0 ]; then
    echo "--- server log (tail)"
    tail -n 30 "$LOG"
fi
rm -f "$OUT"
echo "$pass passed, $failn failed"
[ "$failn" = 0 ]
