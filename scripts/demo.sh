#!/usr/bin/env bash
# The main job: set up, build, quantize the shipped model with every method
# and print the quality table (bits/weight, perplexity, increase, time).
# Extra arguments go to `qerr compare` (see `build/tools/qerr compare --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DQERR_BUILD_TESTS=OFF >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
exec build/tools/qerr compare --model data/tiny-llama "$@"
