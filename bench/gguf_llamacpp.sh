#!/usr/bin/env bash
# Dev-only check of libqerr's GGUF files by llama.cpp itself: for each model
# and GGUF type, `qerr quantize --format gguf` writes the file, `qerr ppl`
# reads it back (libqerr's perplexity of those exact weights) and llama.cpp
# computes the perplexity of the same file over the same windows; for F32 and
# F16 the two must agree within 1e-4 relative; for quantized types (whose
# activations llama.cpp's CPU kernels quantize to 8 bits) the difference is
# reported and the file's weights must equal ggml's own dequantization
# (bench/gguf_ggml_dequant.py). llama.cpp comes from npm's node-llama-cpp
# (prebuilt, no build); the script skips when it is absent.
#
#   bench/gguf_llamacpp.sh BUILD_DIR [MODEL...]
#   env: TYPES="F32 F16 Q4_K_M ..." (default F32 F16), CTX (256), WINDOWS (0 = all),
#        MIX (ftype), NODE_LLAMA_CPP_DIR (folder with node_modules/node-llama-cpp),
#        LLAMACPP_PPL (llama.cpp perplexity script over a token file), DATA (../shared/data),
#        OUT (a scratch folder), TOL (1e-4)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 1 ] || { echo "usage: $0 BUILD_DIR [MODEL...]" >&2; exit 2; }
qerr="$1/tools/qerr"; [ -x "$qerr" ] || qerr="$root/$1/tools/qerr"
[ -x "$qerr" ] || { echo "gguf_llamacpp: no qerr binary under $1" >&2; exit 2; }
shift
models=("$@"); [ ${#models[@]} -gt 0 ] || models=(tiny-llama tinystories-656k stories260k)
data=${DATA:-$root/../shared/data}
ppl_js=${LLAMACPP_PPL:-$root/../shared/tools/llamacpp_ppl.mjs}
types=${TYPES:-F32 F16}
ctx=${CTX:-256}
windows=${WINDOWS:-0}
mix=${MIX:-ftype}
tol=${TOL:-1e-4}
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"

nl=${NODE_LLAMA_CPP_DIR:-}
if ! command -v node >/dev/null || [ ! -f "$ppl_js" ] ||
   { [ -n "$nl" ] && [ ! -d "$nl/node-llama-cpp" ]; } ||
   { [ -z "$nl" ] && ! (cd "$(dirname "$ppl_js")" && node -e 'require.resolve("node-llama-cpp")' 2>/dev/null); }; then
  echo "gguf_llamacpp: SKIPPED (needs node, node-llama-cpp and $ppl_js; set NODE_LLAMA_CPP_DIR)"
  exit 0
fi
[ -d "$data" ] || { echo "gguf_llamacpp: SKIPPED (no $data)"; exit 0; }

fail=0
printf '| model | type | mix | file MiB | quantize+write s | libqerr ppl | llama.cpp ppl | rel. diff |\n'
printf '|---|---|---|---|---|---|---|---|\n'
for model in "${models[@]}"; do
  dir="$data/$model"; eval_tok="$dir/eval.u32"
  for type in $types; do
    f="$out/$model-$type-$mix.gguf"
    t0=$(date +%s.%N)
    "$qerr" quantize --format gguf --type "$type" --mix "$mix" --model "$dir" \
      --calib "$dir/calib.u32" --out "$f" --quiet > "$out/$model-$type.quantize.log"
    t1=$(date +%s.%N)
    ours=$("$qerr" ppl --model "$f" --eval "$eval_tok" --ctx "$ctx" --max-windows "$windows" \
           --quiet | awk '$1 == "ppl" {print $2}')
    theirs=$(NODE_LLAMA_CPP_DIR="${nl}" node "$ppl_js" "$f" "$eval_tok" "$ctx" \
             $([ "$windows" -gt 0 ] && echo "$windows") 2>/dev/null | awk '$1 == "ppl" {print $2}')
    rel=$(awk -v a="$ours" -v b="$theirs" 'BEGIN { d = (a - b) / b; if (d < 0) d = -d; printf "%.2e", d }')
    if [ "$type" = F32 ] || [ "$type" = F16 ]; then
      ok=$(awk -v r="$rel" -v t="$tol" 'BEGIN { print (r + 0 <= t + 0) ? "ok" : "FAIL" }')
    else
      # llama.cpp's CPU dot products quantize the activations (to Q8_0 / Q8_K) for
      # quantized weights, so its perplexity is not that of the float forward; the
      # file's weights are checked instead: ggml's own dequantization, bit for bit
      if NODE_LLAMA_CPP_DIR="$nl" QERR_LIBRARY="$(dirname "$qerr")/../libqerr.so" \
         ${PYTHON:-python3} "$root/bench/gguf_ggml_dequant.py" "$f" > "$out/$model-$type.dequant.log"; then
        ok="ok (weights bit-identical to ggml's dequantization)"
      else
        ok="FAIL (weights differ from ggml's dequantization)"
      fi
    fi
    case $ok in ok*) ;; *) fail=1 ;; esac
    mib=$(awk -v n="$(stat -c %s "$f")" 'BEGIN { printf "%.2f", n / 1048576 }')
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    printf '| %s | %s | %s | %s | %s | %s | %s | %s %s |\n' "$model" "$type" "$mix" "$mib" "$secs" \
      "$ours" "$theirs" "$rel" "$ok"
  done
done
exit $fail
