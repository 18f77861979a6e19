#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) into build-fuzz/ and runs each for SECONDS:
#   gguf     the GGUF reader (fuzz/fuzz_gguf.c); seeds: small valid GGUFs written by fuzz/mkseeds.c
#            into build-fuzz/seeds; corpus build-fuzz/corpus
#   request  request bodies -> every HTTP dialect's translation (OpenAI chat / completions, Anthropic
#            messages, OpenAI Responses) -> the chat template (fuzz/fuzz_request.c); seeds: request
#            bodies written below into build-fuzz/seeds-request, with a JSON dictionary; corpus
#            build-fuzz/corpus-request
#   toolcall model output -> the incremental tool-call parser, whole and in pieces (fuzz/fuzz_toolcall.c);
#            seeds: outputs written below into build-fuzz/seeds-toolcall, with a dictionary of the tags;
#            corpus build-fuzz/corpus-toolcall
#   tokenize prompt bytes -> the tokenizer on the Qwen3.5 vocab (build/fixtures/vocab-qwen35.gguf, made by
#            the test suite; ARBOR_FUZZ_VOCAB overrides) -> the bytes back, whole and streamed; or any token
#            ids -> the streaming detokenizer (fuzz/fuzz_tokenize.c); seeds written below into
#            build-fuzz/seeds-tokenize; corpus build-fuzz/corpus-tokenize
# New interesting inputs accumulate in the corpus folders (kept between runs); a crash is saved in
# build-fuzz/crashes/ and makes this script exit non-zero.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]   (default 60 seconds, every target; `make fuzz
#        FUZZ_SECONDS=N` calls this)
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${1:-60}
case "$SECS" in ''|*[!0-9]*) echo "fuzz: SECONDS must be a whole number, not '$SECS'" >&2; exit 2 ;; esac
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(gguf request toolcall tokenize)
for t in "${TARGETS[@]}"; do
    case "$t" in gguf|request|toolcall|tokenize) ;; *) echo "fuzz: unknown target '$t' (gguf, request, toolcall, tokenize)" >&2; exit 2 ;; esac
done
CC=${FUZZ_CC:-clang}
OUT=build-fuzz
command -v "$CC" >/dev/null 2>&1 || { echo "fuzz: '$CC' not found (libFuzzer needs clang; scripts/deps.sh installs it)" >&2; exit 2; }

mkdir -p "$OUT/crashes"
CFLAGS=(-std=c11 -D_GNU_SOURCE -Wall -Wextra -O1 -g -fno-omit-frame-pointer -I. -Iinclude -pthread)
FUZZ_FLAGS=(-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all)

# build_target NAME SOURCES... -- LIBS...: fuzz/fuzz_NAME.c with SOURCES into $OUT/fuzz_NAME
build_target() {
    local name=$1 src=() libs=()
    shift
    while [ $# -gt 0 ] && [ "$1" != -- ]; do src+=("$1"); shift; done
    [ $# -gt 0 ] && shift
    libs=("$@")
    mkdir -p "$OUT/seeds-$name" "$OUT/corpus-$name"
    echo "fuzz: building $OUT/fuzz_$name"
    "$CC" "${CFLAGS[@]}" "${FUZZ_FLAGS[@]}" "${src[@]}" "fuzz/fuzz_$name.c" -o "$OUT/fuzz_$name" "${libs[@]}"
}

# run_target NAME MAX_LEN [libFuzzer flags...]: $OUT/fuzz_NAME over its corpus and seeds for SECS. The seeds
# are written afresh by NAME_seeds DIR; a NAME_dict FILE function, where there is one, writes the dictionary.
run_target() {
    local name=$1 max_len=$2 seeds=$OUT/seeds-$1 corpus=$OUT/corpus-$1 dict=()
    shift 2
    rm -f "$seeds"/*
    "${name}_seeds" "$seeds"
    if declare -F "${name}_dict" >/dev/null; then
        "${name}_dict" "$OUT/$name.dict"
        dict=(-dict="$OUT/$name.dict")
    fi
    echo "fuzz: $name: $(ls "$seeds" | wc -l) seeds, $(ls "$corpus" | wc -l) corpus inputs; running for ${SECS}s"
    "$OUT/fuzz_$name" -max_total_time="$SECS" -rss_limit_mb=2048 -timeout=10 -max_len="$max_len" "${dict[@]}" "$@" \
        -print_final_stats=1 -artifact_prefix="$OUT/crashes/" "$corpus" "$seeds"
    echo "fuzz: $name: no crash in ${SECS}s"
}

fuzz_gguf() {
    mkdir -p "$OUT/seeds" "$OUT/corpus"
    local lib=(base/*.c format/gguf.c format/gguf_get.c format/quant.c)
    echo "fuzz: building $OUT/fuzz_gguf"
    "$CC" "${CFLAGS[@]}" "${FUZZ_FLAGS[@]}" "${lib[@]}" fuzz/fuzz_gguf.c -o "$OUT/fuzz_gguf" -lm
    "$CC" "${CFLAGS[@]}" -fsanitize=address,undefined "${lib[@]}" format/gguf_write.c fuzz/mkseeds.c -o "$OUT/mkseeds" -lm
    rm -f "$OUT"/seeds/*
    "$OUT/mkseeds" "$OUT/seeds"
    echo "fuzz: gguf: $(ls "$OUT/seeds" | wc -l) seeds, $(ls "$OUT/corpus" | wc -l) corpus inputs; running for ${SECS}s"
    # -timeout catches inputs that make the reader slow (quadratic paths), not only crashes.
    "$OUT/fuzz_gguf" -max_total_time="$SECS" -rss_limit_mb=2048 -timeout=10 -max_len=16384 \
        -print_final_stats=1 -artifact_prefix="$OUT/crashes/" "$OUT/corpus" "$OUT/seeds"
    echo "fuzz: gguf: no crash in ${SECS}s"
}

# Request bodies of every dialect, one file each: the shapes clients really send.
request_seeds() {
    local d=$1
    cat >"$d/chat.json" <<'EOF'
{"model":"m","messages":[{"role":"system","content":"s"},{"role":"developer","content":[{"type":"text","text":"d"}]},{"role":"user","content":"hi"},{"role":"assistant","content":null,"reasoning_content":"r","tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},{"role":"tool","tool_call_id":"call_1","content":"ok"}],"tools":[{"type":"function","function":{"name":"f","description":"x","parameters":{"type":"object","properties":{"a":{"type":"integer"}}}}}],"tool_choice":{"type":"function","function":{"name":"f"}},"stream":true,"stream_options":{"include_usage":true},"max_tokens":5,"temperature":0.5,"top_p":0.9,"top_k":20,"stop":["a","b"],"seed":1,"logprobs":true,"top_logprobs":2,"chat_template_kwargs":{"enable_thinking":false},"reasoning_effort":"none","parallel_tool_calls":false}
EOF
    cat >"$d/completion.json" <<'EOF'
{"model":"m","prompt":[[1,2,3]],"max_tokens":3,"stop":"x","logprobs":2,"echo":false,"best_of":1,"suffix":""}
EOF
    cat >"$d/messages.json" <<'EOF'
{"model":"claude","max_tokens":100,"system":[{"type":"text","text":"x-anthropic-billing-header: cch=1"},{"type":"text","text":"You are Claude Code.","cache_control":{"type":"ephemeral"}}],"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]},{"role":"assistant","content":[{"type":"thinking","thinking":"t","signature":"s"},{"type":"redacted_thinking","data":"x"},{"type":"text","text":"ok"},{"type":"tool_use","id":"toolu_1","name":"Bash","input":{"command":"ls"}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"text","text":"a b"}],"is_error":true},{"type":"text","text":"next"}]}],"tools":[{"name":"Bash","description":"run","input_schema":{"type":"object","properties":{"command":{"type":"string"}},"required":["command"]}},{"type":"web_search_20250305","name":"web_search"}],"tool_choice":{"type":"tool","name":"Bash","disable_parallel_tool_use":true},"thinking":{"type":"enabled","budget_tokens":2048},"stop_sequences":["END"],"temperature":1,"top_k":5,"metadata":{"user_id":"u"},"stream":true}
EOF
    cat >"$d/count_tokens.json" <<'EOF'
{"model":"claude","system":"s","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"yo"},{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AA"}}]}],"tools":[{"name":"f","input_schema":{"type":"object"}}],"tool_choice":{"type":"any"},"thinking":{"type":"disabled"}}
EOF
    cat >"$d/responses.json" <<'EOF'
{"model":"gpt","instructions":"be brief","input":[{"type":"message","role":"developer","content":[{"type":"input_text","text":"d"}]},{"role":"user","content":"hi"},{"type":"reasoning","id":"rs_1","summary":[{"type":"summary_text","text":"s"}],"content":[{"type":"reasoning_text","text":"r"}],"encrypted_content":null},{"type":"message","role":"assistant","content":[{"type":"output_text","text":"ok","annotations":[]}]},{"type":"function_call","id":"fc_1","call_id":"call_1","name":"shell","arguments":"{\"command\":[\"ls\"]}"},{"type":"function_call_output","call_id":"call_1","output":"a"},{"type":"custom_tool_call","call_id":"call_2","name":"apply_patch","input":"*** Begin Patch"},{"type":"custom_tool_call_output","call_id":"call_2","output":[{"type":"input_text","text":"done"}]},{"type":"local_shell_call","call_id":"c3","action":{}},{"type":"item_reference","id":"x"}],"tools":[{"type":"function","name":"shell","description":"d","strict":false,"parameters":{"type":"object","properties":{"command":{"type":"array","items":{"type":"string"}}}}},{"type":"custom","name":"apply_patch","description":"p","format":{"type":"grammar"}},{"type":"web_search"}],"tool_choice":{"type":"allowed_tools","mode":"required","tools":[]},"parallel_tool_calls":true,"reasoning":{"effort":"minimal","summary":"auto"},"store":false,"stream":true,"include":["reasoning.encrypted_content"],"prompt_cache_key":"k","max_output_tokens":64,"text":{"format":{"type":"text"}},"previous_response_id":null}
EOF
    cat >"$d/responses_string.json" <<'EOF'
{"input":"hello","tool_choice":"none","temperature":0.2,"top_p":1,"metadata":{}}
EOF
}

# libFuzzer dictionaries: printf repeats its format for each word, one entry per line.
request_dict() {
    printf '"\\"%s\\""\n' model messages role content system developer user assistant tool tool_calls tool_call_id \
        function name arguments parameters description type text tools tool_choice auto none required any stream \
        stream_options include_usage max_tokens max_completion_tokens temperature top_p top_k min_p seed stop logprobs \
        top_logprobs reasoning_content chat_template_kwargs enable_thinking reasoning_effort prompt thinking enabled \
        disabled adaptive budget_tokens stop_sequences tool_use tool_result tool_use_id is_error input input_schema image \
        document redacted_thinking signature cache_control metadata disable_parallel_tool_use instructions input_text \
        output_text function_call function_call_output call_id output custom_tool_call custom_tool_call_output \
        item_reference summary summary_text reasoning_text reasoning effort max_output_tokens previous_response_id \
        conversation parallel_tool_calls custom allowed_tools mode strict x-anthropic-billing-header: null true false >"$1"
    printf '"{"\n"}"\n"["\n"]"\n":"\n","\n"\\"\\\\u0000\\""\n"\\"\\\\ud800\\""\n"1e999"\n"-1"\n"0"\n"2.5"\n' >>"$1"
}

fuzz_request() {
    build_target request base/*.c server/json.c server/request.c server/request_anthropic.c server/request_responses.c \
        server/render.c tok/chat.c spec/sample.c -- -ljansson -lm
    run_target request 8192
}

# Model outputs, one file each; the first byte is the target's flags (bit 0: the prompt opened <think>).
toolcall_seeds() {
    local d=$1
    printf '\001I should read it.\n</think>\n\nLet me look.\n\n<tool_call>\n<function=read_file>\n<parameter=path>\nsrc/main.c\n</parameter>\n<parameter=offset>\n10\n</parameter>\n<parameter=limit>\nnull\n</parameter>\n</function>\n</tool_call>' >"$d/reasoning_call"
    printf '\000<tool_call>\n<function=bash>\n<parameter=command>\nls -la | grep "x"\n</parameter>\n</function>\n</tool_call>\n<tool_call>\n<function=Edit>\n<parameter=old>\na\\nb \xc3\xa9\n</parameter>\n<parameter=n>\n3\n</parameter>\n<parameter=mode>\nfast\n</parameter>\n</function>\n</tool_call>' >"$d/parallel"
    printf '\000<think>\nplan\n</think>\nDone: {"a": [1, 2]} \xe2\x9c\x93 \xff\xfe <tool_call>\n<function=nope>\n</function>\n</tool_call>' >"$d/content_unknown"
    printf '\001\n</think>\n\n<tool_call>\n<function=read_file>\n<parameter=opts>\n{"a": {"b": [true, 1.5e3]}}\n</parameter>\n<parameter=lines>\n[1, 2\n</parameter>\n<parameter=binary>\ntrue\n</parameter>\n<parameter=scale>\n-0.25\n</parameter>\n<parameter=either>\n7\n</parameter>\n<parameter=any>\n"q"\n</parameter>\n<parameter=path>\nunterminated' >"$d/typed_unterminated"
}

toolcall_dict() {
    printf '"%s"\n' '<think>' '</think>' '<tool_call>' '</tool_call>' '<function=' '</function>' '<parameter=' \
        '</parameter>' 'read_file' 'bash' 'Edit' 'path' 'offset' 'limit' 'binary' 'opts' 'lines' 'scale' 'either' 'any' \
        'command' 'old' 'mode' 'null' 'true' 'false' '\\n' '>\\n' '\\n</parameter>\\n' '\\xc3\\xa9' '\\xe2\\x80' \
        '\\xf0\\x9f\\x98\\x80' >"$1"
}

fuzz_toolcall() {
    build_target toolcall base/*.c tok/toolcall.c server/json.c -- -ljansson -lm
    run_target toolcall 4096
}

# Prompt texts, one file each; the first byte is the target's flags (bit 0: parse special tokens).
tokenize_seeds() {
    local d=$1
    printf '\001<|im_start|>system\nYou are a coding agent.<|im_end|>\n<|im_start|>user\nFix parse.c<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n' >"$d/chat"
    printf '\000int main(void) {\n\treturn 0;   // caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80\n}\n\n\n    x = 12345678901234567890;\r\n' >"$d/code"
    printf '\000bad \xff\xfe \xc3 \xe2\x82 \xed\xa0\x80 \xf4\x90\x80\x80 \xc0\xaf end <|im_end|> <tool_call>' >"$d/invalid_utf8"
    printf '\006\x3a\x2d\x01\x00\x01\x00\xff\xff\x03\x10\x27\x00\x9b\xc8\x03' >"$d/ids"   # flags 6: ids, specials as text
    printf "\\001  \\n\\n\\n   It's 'quoted' and don't; I'll we've <|endoftext|>\\u00a0\\xc2\\xa0\\xe3\\x80\\x80" >"$d/spaces"
}

fuzz_tokenize() {
    local vocab=${ARBOR_FUZZ_VOCAB:-build/fixtures/vocab-qwen35.gguf}
    [ -f "$vocab" ] || { echo "fuzz: tokenize: $vocab not found (make test writes it; or set ARBOR_FUZZ_VOCAB)" >&2; exit 2; }
    build_target tokenize base/*.c format/gguf.c format/gguf_get.c format/quant.c tok/vocab.c tok/bpe.c server/json.c \
        -- -lpcre2-8 -lutf8proc -ljansson -lm
    ARBOR_FUZZ_VOCAB=$vocab run_target tokenize 4096
}

for t in "${TARGETS[@]}"; do "fuzz_$t"; done
