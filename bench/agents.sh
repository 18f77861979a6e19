#!/usr/bin/env bash
# bench/agents.sh — agent load benchmark (issue #8): arbor serve vs llama.cpp's llama-server on the same
# GGUF, same threads, in the same run, under 1, 4 and 10 concurrent streaming "coding agents".
#
# Usage: bench/agents.sh [options]
#   -m MODEL          GGUF for both engines (default models/arbor-tiny-target.gguf)
#   -t N              threads for both engines (default 2)
#   --agents LIST     concurrent agents, one server start per engine and count (default 1,4,10);
#                     each server gets --parallel N (llama.cpp: --parallel N, -c N x the context)
#   --turns N         turns per conversation (default 4)
#   --convs K         conversations per agent (default 1; ignored with --duration)
#   --duration S      soak mode: agents start new conversations until S seconds have passed; the table
#                     adds the RSS slope (whole run / second half)
#   --engines LIST    arbor,llama (default both; in this order for every agent count)
#   --arbor-port P    (default 8090)   --llama-port P (default 8091)
#   --system-tokens N shared prefix as rendered (system prompt + tool definitions; default 4096)
#   --tool-tokens N   tool result size (default 300)
#   --max-tokens N    per turn (default 64)
#   --ctx N           context per sequence (default: system + 512 + turns x (tool + max + 128), rounded up to
#                     256; both engines cap it at the model's training context)
#   --cache-mib N     arbor's prefix cache (default 1024)
#   --llama-template F  llama-server --chat-template-file F. arbor renders the Qwen3.5 template (tok/chat.h)
#                     whatever the GGUF holds; for a GGUF whose own template differs (the synthetic mid
#                     models carry plain ChatML) give llama.cpp the same one:
#                     build/oracle/llama.cpp/models/templates/Qwen3.5-4B.jinja (the driver warns when the
#                     shared prefix renders to different token counts on the two engines)
#   --stagger-ms MS   agent k starts k x MS ms after the first (default 0: all at once)
#   --think-ms MS     each agent waits MS ms before its next turn (default 0); wall tok/s then counts the waits
#   --no-tools        send no tool definitions (default: 4 function tools in every request)
#   --nice N          run servers and driver under nice -n N (default 0)
#   --burst N         after the traffic, on the same server: N-token answers to as many short prompts as
#                     agents, all at once (agents.mjs burst: decode scaling with no prompts in the way; the
#                     table's last column); default 128, 0: none
#   --scaling P       then, on each server with N > 1 agents: P pairs of such bursts with 1 and with N streams,
#                     the order alternating, seconds apart (agents.mjs scaling): decode at N streams over decode
#                     at one measured in the same minutes, so the host's drift between the 1-agent and the
#                     N-agent runs does not enter the ratio; default 3, 0: none
# env: ARBOR (default build/arbor), LLAMA_SERVER (default build/oracle/llama-server, from
#      `scripts/oracle.sh --server-tools`), NODE (default node, >= 18), ARBOR_ARGS / LLAMA_SERVER_ARGS:
#      extra server flags (e.g. LLAMA_SERVER_ARGS="--poll 0").
#
# Servers: `arbor serve -m MODEL --parallel N --cache-mib 1024 -t T -c CTX --port P` and
# `llama-server -m MODEL -t T -tb T --parallel N -c N*CTX --jinja --cache-reuse 256 --ctx-checkpoints 32
# --cache-ram 8192 --no-webui --metrics --port P` (slots are not unified: -c is split over the N slots;
# prompt caching is on by default; llama.cpp disables --cache-reuse (KV shifting) for qwen35's recurrent
# layers itself and reuses prefixes through its context checkpoints and the RAM prompt cache).
# The traffic, the measurements and the table are bench/agents.mjs's (see its header). Everything goes to
# bench/results/agents-YYYYMMDD-HHMMSS/: traffic.json (the shared system prompt), per run ENGINE-aN/
# (server.log, requests.jsonl, rss.csv = VmRSS every second, summary.json, /metrics before and after for
# arbor), summary.md (also printed).
set -euo pipefail

die() { echo "agents.sh: $*" >&2; exit 1; }

model=models/arbor-tiny-target.gguf threads=2 agents_list=1,4,10 turns=4 convs=1 duration=0
engines=arbor,llama arbor_port=8090 llama_port=8091 system_tokens=4096 tool_tokens=300 max_tokens=64
ctx=0 cache_mib=1024 stagger=0 think=0 tools=1 nice_n=0 llama_template='' burst=128 scaling=3
while [ $# -gt 0 ]; do
    case $1 in
        -m) model=${2:?-m needs a model}; shift 2 ;;
        -t) threads=${2:?-t needs a value}; shift 2 ;;
        --agents) agents_list=${2:?--agents needs a list}; shift 2 ;;
        --turns) turns=${2:?--turns needs a value}; shift 2 ;;
        --convs) convs=${2:?--convs needs a value}; shift 2 ;;
        --duration) duration=${2:?--duration needs seconds}; shift 2 ;;
        --engines) engines=${2:?--engines needs a list}; shift 2 ;;
        --arbor-port) arbor_port=${2:?--arbor-port needs a port}; shift 2 ;;
        --llama-port) llama_port=${2:?--llama-port needs a port}; shift 2 ;;
        --system-tokens) system_tokens=${2:?--system-tokens needs a value}; shift 2 ;;
        --tool-tokens) tool_tokens=${2:?--tool-tokens needs a value}; shift 2 ;;
        --max-tokens) max_tokens=${2:?--max-tokens needs a value}; shift 2 ;;
        --ctx) ctx=${2:?--ctx needs a value}; shift 2 ;;
        --cache-mib) cache_mib=${2:?--cache-mib needs a value}; shift 2 ;;
        --llama-template) llama_template=${2:?--llama-template needs a file}; shift 2 ;;
        --stagger-ms) stagger=${2:?--stagger-ms needs a value}; shift 2 ;;
        --think-ms) think=${2:?--think-ms needs a value}; shift 2 ;;
        --no-tools) tools=0; shift ;;
        --nice) nice_n=${2:?--nice needs a value}; shift 2 ;;
        --burst) burst=${2:?--burst needs a value}; shift 2 ;;
        --scaling) scaling=${2:?--scaling needs a value}; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done
for v in "$threads" "$turns" "$convs" "$duration" "$arbor_port" "$llama_port" "$system_tokens" "$tool_tokens" \
         "$max_tokens" "$ctx" "$cache_mib" "$stagger" "$think" "$nice_n" "$burst" "$scaling"; do
    [[ $v =~ ^[0-9]+$ ]] || die "'$v' is not a non-negative integer"
done
[[ $agents_list =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || die "--agents: '$agents_list' is not a list like 1,4,10"
[[ $engines =~ ^(arbor|llama)(,(arbor|llama))?$ ]] || die "--engines: '$engines' is not arbor, llama or arbor,llama"
[ "$threads" -gt 0 ] && [ "$turns" -gt 0 ] && [ "$max_tokens" -gt 0 ] || die "-t, --turns and --max-tokens must be > 0"
[ -r "$model" ] || die "cannot read model '$model'"
[ -z "$llama_template" ] || [ -r "$llama_template" ] || die "cannot read chat template '$llama_template'"
[ -z "$llama_template" ] || llama_template=$(realpath "$llama_template")
model=$(realpath "$model")

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
ARBOR=$(realpath -m "${ARBOR:-build/arbor}")
LLAMA_SERVER=$(realpath -m "${LLAMA_SERVER:-build/oracle/llama-server}")
NODE=${NODE:-node}
command -v "$NODE" >/dev/null || die "'$NODE' not found (Node.js >= 18 runs bench/agents.mjs)"
node_major=$("$NODE" -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 18 ] || die "Node.js >= 18 needed, found $("$NODE" --version)"
command -v curl >/dev/null || die "curl not found"
IFS=, read -r -a engine_list <<< "$engines"
IFS=, read -r -a counts <<< "$agents_list"
for e in "${engine_list[@]}"; do
    case $e in
        arbor) [ -x "$ARBOR" ] || die "no arbor binary at $ARBOR (run make, or set ARBOR=build-x/arbor)" ;;
        llama) [ -x "$LLAMA_SERVER" ] || die "no llama-server at $LLAMA_SERVER (run scripts/oracle.sh --server-tools)" ;;
    esac
done
if [ "$ctx" = 0 ]; then
    ctx=$(( system_tokens + 512 + turns * (tool_tokens + max_tokens + 128) ))
    ctx=$(( (ctx + 255) / 256 * 256 ))
fi
read -r -a arbor_extra <<< "${ARBOR_ARGS:-}"
read -r -a llama_extra <<< "${LLAMA_SERVER_ARGS:-}"
nice_cmd=()
[ "$nice_n" = 0 ] || nice_cmd=(nice -n "$nice_n")

stamp=$(date +%Y%m%d-%H%M%S)
out=bench/results/agents-$stamp
mkdir -p "$out"
summary=$out/summary.md
traffic=$out/traffic.json
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

server_pid=
stop_server() {
    [ -n "$server_pid" ] || return 0
    if kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$server_pid" 2>/dev/null && kill -KILL "$server_pid" 2>/dev/null || true
    fi
    wait "$server_pid" 2>/dev/null || true
    server_pid=
}
trap stop_server EXIT
trap 'stop_server; exit 130' INT TERM

# wait_ready PORT LOG: /health answers 200 (both engines answer 503 while loading)
wait_ready() {
    local port=$1 log=$2 i
    for i in $(seq 1 1800); do
        kill -0 "$server_pid" 2>/dev/null || { tail -n 20 "$log" >&2; die "the server exited while loading (log: $log)"; }
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health" 2>/dev/null)" = 200 ] && return 0
        sleep 0.5
    done
    die "the server on port $port was not ready after 15 minutes (log: $log)"
}
port_free() { ! curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$1/" 2>/dev/null; }

git_rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -z "$(GIT_OPTIONAL_LOCKS=0 git status --porcelain --untracked-files=no 2>/dev/null)" ] || git_rev="$git_rev + uncommitted changes"
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -n 1)
ncpu=$(nproc)
load0=$(loadavg)
mode="$convs conversation(s) per agent"
[ "$duration" = 0 ] || mode="soak: new conversations for $duration s per run"
{
    echo "# agents benchmark — $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "- machine: $cpu, $ncpu CPUs; load average at the start $load0"
    echo "- model $model ($(du -h "$model" | cut -f1)), $threads threads; arbor $ARBOR built $( [ -x "$ARBOR" ] && date -r "$ARBOR" '+%Y-%m-%d %H:%M' || echo '-'), source tree $git_rev"
    echo "- traffic: $mode, $turns turns; shared system prompt ~$system_tokens tokens$( [ $tools = 1 ] && echo ' + 4 tool definitions'), tool results ~$tool_tokens tokens, max_tokens $max_tokens, temperature 0, streamed with usage, thinking off; agents start $( [ "$stagger" = 0 ] && echo 'together' || echo "${stagger} ms apart"); next turn $( [ "$think" = 0 ] && echo 'at once' || echo "after ${think} ms")"
    echo "- context per sequence $ctx; arbor: \`arbor serve -m MODEL --parallel N --cache-mib $cache_mib -t $threads -c $ctx${ARBOR_ARGS:+ $ARBOR_ARGS}\`"
    echo "- llama.cpp: \`llama-server -m MODEL -t $threads -tb $threads --parallel N -c N*$ctx --jinja --cache-reuse 256 --ctx-checkpoints 32 --cache-ram 8192 --no-webui --metrics${llama_template:+ --chat-template-file $llama_template}${LLAMA_SERVER_ARGS:+ $LLAMA_SERVER_ARGS}\`"
    echo "- gen tok/s = completion tokens / wall time of the run; decode tok/s = tokens after the first / time some stream was decoding;"
    echo "  TTFT to the first content token; ITL = gaps between streamed token chunks; turn 2 / turn 1 = median over conversations of"
    echo "  TTFT(turn 2) / TTFT(turn 1); prefix-cache hit = cached prompt tokens / prompt tokens (arbor: usage.prompt_tokens_details,"
    echo "  and /metrics arbor_prompt_cached_tokens_total / arbor_prompt_tokens_total; llama.cpp: timings.cache_n / (cache_n + prompt_n))"
    [ "$burst" = 0 ] || echo "- burst decode tok/s: after the traffic, on the same server, N short prompts at once with $burst-token answers: the sum of the streams' decode rates (and the mean per stream)"
    [ "$scaling" = 0 ] || [ "$burst" = 0 ] || echo "- decode scaling: then, on each server with N > 1, $scaling pairs of such bursts with 1 and N streams, the order alternating"
    echo
} > "$summary"

dirs=()
peak=0
for n in "${counts[@]}"; do
    for e in "${engine_list[@]}"; do
        run=$out/$e-a$n
        mkdir -p "$run"
        if [ "$e" = arbor ]; then
            port=$arbor_port
            cmd=("$ARBOR" serve -m "$model" --parallel "$n" --cache-mib "$cache_mib" -t "$threads" -c "$ctx" --port "$port"
                 ${arbor_extra[@]+"${arbor_extra[@]}"})
        else
            port=$llama_port
            cmd=("$LLAMA_SERVER" -m "$model" -t "$threads" -tb "$threads" --parallel "$n" -c $(( n * ctx )) --host 127.0.0.1
                 --port "$port" --jinja --cache-reuse 256 --ctx-checkpoints 32 --cache-ram 8192 --no-webui --metrics
                 ${llama_template:+--chat-template-file "$llama_template"}
                 ${llama_extra[@]+"${llama_extra[@]}"})
        fi
        port_free "$port" || die "port $port is in use (choose another with --$e-port)"
        printf '%q ' "${nice_cmd[@]+"${nice_cmd[@]}"}" "${cmd[@]}" > "$run/cmd.txt"; echo >> "$run/cmd.txt"
        echo "agents.sh: $e, $n agent(s): starting the server (load $(loadavg))" >&2
        t_load=$(date +%s.%N)
        "${nice_cmd[@]+"${nice_cmd[@]}"}" "${cmd[@]}" > "$run/server.log" 2>&1 &
        server_pid=$!
        wait_ready "$port" "$run/server.log"
        echo "agents.sh: $e ready in $(awk -v a="$t_load" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s; driving $n agent(s)" >&2
        la0=$(loadavg)
        drv=(run --url "http://127.0.0.1:$port" --engine "$e" --agents "$n" --turns "$turns" --convs "$convs"
             --system-tokens "$system_tokens" --tool-tokens "$tool_tokens" --max-tokens "$max_tokens"
             --stagger-ms "$stagger" --think-ms "$think" --pid "$server_pid" --out "$run" --traffic "$traffic" --label "$e")
        [ "$duration" = 0 ] || drv+=(--duration "$duration")
        [ "$tools" = 1 ] || drv+=(--no-tools)
        "${nice_cmd[@]+"${nice_cmd[@]}"}" "$NODE" bench/agents.mjs "${drv[@]}" 2> >(tee "$run/driver.log" >&2) \
            || { stop_server; die "the driver failed for $e with $n agent(s) (see $run/driver.log)"; }
        if [ "$burst" -gt 0 ] && kill -0 "$server_pid" 2>/dev/null; then
            "${nice_cmd[@]+"${nice_cmd[@]}"}" "$NODE" bench/agents.mjs burst --url "http://127.0.0.1:$port" --engine "$e" \
                --agents "$n" --max-tokens "$burst" --out "$run" 2> >(tee -a "$run/driver.log" >&2) \
                || echo "agents.sh: the burst driver failed for $e with $n agent(s) (see $run/driver.log)" >&2
            if [ "$scaling" -gt 0 ] && [ "$n" -gt 1 ] && kill -0 "$server_pid" 2>/dev/null; then
                "${nice_cmd[@]+"${nice_cmd[@]}"}" "$NODE" bench/agents.mjs scaling --url "http://127.0.0.1:$port" --engine "$e" \
                    --agents "$n" --pairs "$scaling" --max-tokens "$burst" --out "$run" 2> >(tee -a "$run/driver.log" >&2) \
                    || echo "agents.sh: the scaling driver failed for $e with $n agent(s) (see $run/driver.log)" >&2
            fi
        fi
        if ! kill -0 "$server_pid" 2>/dev/null; then
            echo "agents.sh: the $e server exited during the run (log: $run/server.log)" >&2
            echo "$e x$n: **the server exited during the run** (log: $run/server.log)" >> "$out/load.txt"
        fi
        la1=$(loadavg)
        for s in "$la0" "$la1"; do peak=$(awk -v a="${s%% *}" -v b="$peak" 'BEGIN { print (a > b) ? a : b }'); done
        echo "$e x$n: load average $la0 -> $la1" >> "$out/load.txt"
        stop_server
        dirs+=("$run")
    done
done

"$NODE" bench/agents.mjs report "${dirs[@]}" >> "$summary"
{
    echo
    sed 's/^/- load: /' "$out/load.txt"
    if awk -v p="$peak" -v n="$ncpu" 'BEGIN { exit !(p > n + 1) }'; then
        echo
        echo "**WARNING: the 1-minute load average reached $peak during the run ($ncpu CPUs, $threads threads per engine): other work competed for the cores.**"
    fi
    echo
    echo "raw outputs: $out/"
} >> "$summary"
cat "$summary"
