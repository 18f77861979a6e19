#!/usr/bin/env bash
# tools/train/build.sh - the bundled tiny model pair from scratch:
#   corpus -> tokenizer -> target -> drafter -> export (GGUF) -> check (vs llama.cpp) -> install (models/)
#
# Environment:
#   WORK=DIR       checkpoints and intermediate files (default /work/scratch/train/build; never the repo)
#   DEVICE=cpu|cuda  where the two training stages run (default cpu)
#   SCALE=cpu|full|dry  cpu (default with DEVICE=cpu) = the CPU recipe: the bundled shapes trained with bf16
#                  autocast on fewer tokens so that every stage fits in an hour on the 2-core dev machine;
#                  full (default with DEVICE=cuda) = the recipe of the bundled models (models/README.md);
#                  dry = tiny shapes and a few steps, to check the whole pipeline in minutes
#                  (only SCALE=full installs into models/)
#   STAGES="..."   subset of: deps corpus tokenizer target drafter export check install (default: all)
#   ARBOR_LLAMA_SRC  llama.cpp source tree for gguf-py and the chat template (default build/oracle/llama.cpp);
#                  the check stage needs build/oracle (scripts/oracle.sh): llama_oracle, dflash_oracle,
#                  llama-speculative-simple.
# The training stages are seeded and resumable (rerun the same command after an interruption).
# SCALE=full on a CPU is slow: the bundled target saw 49 M tokens (1502 steps of 64 x 512); the 2-core dev
# machine trains it at ~770 tokens/s in fp32 (18+ hours). The bundled pair was trained with DEVICE=cuda on
# one H200 (target 161 s, drafter 80 s + 23 s of data generation); the other stages ran on the dev machine.
# SCALE=cpu trains the same shapes with bfloat16 autocast (~1700 tokens/s there): target 800 steps of
# 8 x 512 (3.3 M tokens), drafter 600 steps of 16 x 320 on 1024 target continuations; the measured stage
# times are in models/README.md. SCALE=dry runs every stage in about a minute.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
T=$ROOT/tools/train
PY=${PY:-/usr/bin/python3}
WORK=${WORK:-/work/scratch/train/build}
DEVICE=${DEVICE:-cpu}
if [ "$DEVICE" = cpu ]; then SCALE=${SCALE:-cpu}; else SCALE=${SCALE:-full}; fi
STAGES=${STAGES:-deps corpus tokenizer target drafter export check install}
export PYTHONDONTWRITEBYTECODE=1
export ARBOR_LLAMA_SRC=${ARBOR_LLAMA_SRC:-$ROOT/build/oracle/llama.cpp}
NICE="nice -n 5"
mkdir -p "$WORK"

has() { [[ " $STAGES " == *" $1 "* ]]; }
say() { echo "== build.sh: $* ($(date +%H:%M:%S))"; }

if [ "$SCALE" = full ]; then
    CORPUS_SCALE=1.0
    TARGET_ARGS=(--preset full --batch 64 --seq 512 --steps 1502 --lr 2e-3 --warmup 200 --seed 1234
                 --eval-every 400 --eval-windows 128)
    DRAFT_ARGS=(--preset full --batch 64 --anchors 32 --steps 1120 --lr 2e-3 --warmup 100 --seed 4321
                --gen-seqs 4096 --gen-test 256 --gen-batch 1024 --eval-every 400)
    CHECK_ARGS=(--windows 2 --seq 256 --prompts 16 --gen 192)
elif [ "$SCALE" = cpu ]; then
    CORPUS_SCALE=1.0
    TARGET_ARGS=(--preset full --bf16 --batch 8 --seq 512 --steps 800 --lr 1e-3 --warmup 100 --seed 1234
                 --eval-every 200 --eval-windows 32 --ckpt-every 100)
    DRAFT_ARGS=(--preset full --bf16 --batch 16 --seq 320 --anchors 32 --steps 600 --lr 2e-3 --warmup 60 --seed 4321
                --gen-seqs 1024 --gen-test 64 --gen-batch 512 --eval-every 200 --ckpt-every 100)
    CHECK_ARGS=(--windows 2 --seq 256 --prompts 16 --gen 192)
elif [ "$SCALE" = dry ]; then
    CORPUS_SCALE=0.05
    TARGET_ARGS=(--preset tiny --batch 8 --steps 30 --seed 1234 --final-eval-windows 8)
    DRAFT_ARGS=(--preset tiny --batch 4 --anchors 4 --steps 20 --seed 4321 --gen-seqs 16 --gen-test 8 --gen-batch 8)
    CHECK_ARGS=(--windows 1 --seq 128 --prompts 2 --gen 32)
else
    echo "build.sh: SCALE must be cpu, full or dry" >&2; exit 1
fi

if has deps; then
    if ! $PY -c 'import torch, numpy, regex, tqdm' 2>/dev/null; then
        say "installing Debian's python3-torch python3-numpy python3-regex python3-tqdm libopenblas0-pthread"
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            python3-torch python3-numpy python3-regex python3-tqdm libopenblas0-pthread
    fi
fi
if has corpus; then
    say "corpus"
    $NICE $PY "$T/corpus.py" --out "$WORK/corpus" --scale "$CORPUS_SCALE"
fi
if has tokenizer; then
    say "tokenizer"
    $NICE $PY "$T/tokenizer.py" train --corpus "$WORK/corpus" --out "$WORK/tok.json" --vocab 8192
    $NICE $PY "$T/tokenizer.py" encode --tok "$WORK/tok.json" --corpus "$WORK/corpus" --out "$WORK"
fi
if has target; then
    say "target ($DEVICE)"
    (cd "$T" && $NICE $PY train_target.py --data "$WORK" --out "$WORK/target" --device "$DEVICE" "${TARGET_ARGS[@]}")
fi
if has drafter; then
    say "drafter ($DEVICE)"
    (cd "$T" && $NICE $PY train_drafter.py --data "$WORK" --tok "$WORK/tok.json" --target "$WORK/target/target.pt" \
        --out "$WORK/drafter" --device "$DEVICE" "${DRAFT_ARGS[@]}")
fi
if has export; then
    say "export"
    for ty in f32 q8_0; do
        $PY "$T/export_gguf.py" --tok "$WORK/tok.json" --target "$WORK/target/target.pt" \
            --drafter "$WORK/drafter/drafter.pt" --type $ty --ctx 2048 \
            --out-target "$WORK/arbor-tiny-target-$ty.gguf" --out-drafter "$WORK/arbor-tiny-dflash-$ty.gguf"
    done
fi
if has check; then
    say "check against llama.cpp"
    $NICE $PY "$T/check_llama.py" --tok "$WORK/tok.json" --corpus "$WORK/corpus" --data "$WORK" \
        --target "$WORK/target/target.pt" --drafter "$WORK/drafter/drafter.pt" \
        --target-f32 "$WORK/arbor-tiny-target-f32.gguf" --drafter-f32 "$WORK/arbor-tiny-dflash-f32.gguf" \
        --target-gguf "$WORK/arbor-tiny-target-q8_0.gguf" --drafter-gguf "$WORK/arbor-tiny-dflash-q8_0.gguf" \
        "${CHECK_ARGS[@]}" --report "$WORK/check.json"
fi
if has install && [ "$SCALE" = full ]; then
    say "install into models/"
    mkdir -p models
    cp "$WORK/arbor-tiny-target-q8_0.gguf" models/arbor-tiny-target.gguf
    cp "$WORK/arbor-tiny-dflash-q8_0.gguf" models/arbor-tiny-dflash.gguf
    ls -l models/arbor-tiny-target.gguf models/arbor-tiny-dflash.gguf
fi
say "done"
