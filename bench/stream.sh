#!/usr/bin/env bash
# Streaming benchmark: writes a LLaMA-shaped model with random BF16 weights
# (bench/gen_llama) and quantizes its first layers with bench_stream (peak
# RSS against the floor, time per layer by phase). Models go under
# MODELS_DIR (default BUILD_DIR/models), never into the repository.
#   bash bench/stream.sh [BUILD_DIR] [MODELS_DIR]
# Environment (defaults): SHAPE=7b GEN_LAYERS=2 NSAMPLES=128 SEQLEN=2048
#   LAYERS=1 PLAN=gptq:bits=4,group_size=128 BUDGET_GIB=12 (0 = none)
#   MAX_SECONDS=0: when > 0 and the estimate is longer, NSAMPLES is halved
#   until it fits (the run says so).
set -euo pipefail
build=${1:-build}
models=${2:-$build/models}
bin=${BIN:-$build/bench}
SHAPE=${SHAPE:-7b} GEN_LAYERS=${GEN_LAYERS:-2} NSAMPLES=${NSAMPLES:-128}
SEQLEN=${SEQLEN:-2048} LAYERS=${LAYERS:-1} PLAN=${PLAN:-gptq:bits=4,group_size=128}
BUDGET_GIB=${BUDGET_GIB:-12} MAX_SECONDS=${MAX_SECONDS:-0}
dir=$models/$SHAPE-$GEN_LAYERS
mkdir -p "$models"
[ -f "$dir/config.json" ] || "$bin/gen_llama" "$SHAPE" "$dir" "$GEN_LAYERS"
if [ "$MAX_SECONDS" -gt 0 ]; then
  while :; do
    est=$(BENCH_ESTIMATE_ONLY=1 "$bin/bench_stream" "$dir" "$NSAMPLES" "$SEQLEN" "$LAYERS" "$PLAN" \
          "$models/out.qerr" | sed -n 's/.*GiB (spilled), \([0-9.]*\) s.*/\1/p')
    if [ "${est%.*}" -le "$MAX_SECONDS" ] || [ "$NSAMPLES" -le 1 ]; then break; fi
    echo "estimate ${est} s > ${MAX_SECONDS} s: NSAMPLES $NSAMPLES -> $((NSAMPLES / 2))"
    NSAMPLES=$((NSAMPLES / 2))
  done
fi
"$bin/bench_stream" "$dir" "$NSAMPLES" "$SEQLEN" "$LAYERS" "$PLAN" "$models/out.qerr" "$BUDGET_GIB"
rm -f "$models/out.qerr"
