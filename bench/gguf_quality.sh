#!/usr/bin/env bash
# Dev-only quality table: libqerr's GGUF file against llama.cpp's own
# quantization of the same model (ggml's quantizer with an importance matrix
# from the same calibration file, as llama-imatrix + llama-quantize make it),
# both at llama-quantize's per-tensor mix for the type, both measured by
# llama.cpp itself over the same windows. Skips when a peer is absent.
#
#   bench/gguf_quality.sh BUILD_DIR MODEL TYPE...      (TYPE: Q8_0 Q4_0 Q4_K_M Q3_K_M Q2_K)
#   env: NODE_LLAMA_CPP_DIR (folder with node_modules/node-llama-cpp), GGUF_PY (gguf-py of a
#        llama.cpp checkout), TO_GGUF (the HF-to-GGUF converter + quantizer script),
#        LLAMACPP_PPL (llama.cpp perplexity script), DATA (../shared/data), CTX (256),
#        WINDOWS (0 = all), NSAMPLES (128), OUT (scratch folder), PYTHON (python3)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 3 ] || { echo "usage: $0 BUILD_DIR MODEL TYPE..." >&2; exit 2; }
qerr="$1/tools/qerr"; [ -x "$qerr" ] || qerr="$root/$1/tools/qerr"
model=$2; shift 2
data=${DATA:-$root/../shared/data}
ppl_js=${LLAMACPP_PPL:-$root/../shared/tools/llamacpp_ppl.mjs}
to_gguf=${TO_GGUF:-$root/../shared/tools/to_gguf.py}
py=${PYTHON:-python3}
ctx=${CTX:-256}; windows=${WINDOWS:-0}; nsamples=${NSAMPLES:-128}
out=${OUT:-$(mktemp -d)}; mkdir -p "$out"
nl=${NODE_LLAMA_CPP_DIR:-}
if ! command -v node >/dev/null || [ ! -f "$ppl_js" ] || [ ! -f "$to_gguf" ] ||
   [ -z "$nl" ] || [ ! -d "$nl/node-llama-cpp" ] || [ -z "${GGUF_PY:-}" ]; then
  echo "gguf_quality: SKIPPED (needs node, NODE_LLAMA_CPP_DIR, GGUF_PY, $ppl_js and $to_gguf)"
  exit 0
fi
dir="$data/$model"; calib="$dir/calib.u32"; eval_tok="$dir/eval.u32"
lower() { tr '[:upper:]' '[:lower:]' <<<"$1"; }
llama_ppl() {
  NODE_LLAMA_CPP_DIR="$nl" node "$ppl_js" "$1" "$eval_tok" "$ctx" \
    $([ "$windows" -gt 0 ] && echo "$windows") 2>/dev/null | awk '$1 == "ppl" {print $2}'
}
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

f32="$out/$model-f32.gguf"
"$qerr" quantize --format gguf --type F32 --model "$dir" --calib "$calib" --out "$f32" --quiet >/dev/null
base=$(llama_ppl "$f32")
echo "model $model, eval $(basename "$eval_tok") ctx $ctx windows ${windows/#0/all}, float (llama.cpp) $base"
printf '| model | type | libqerr MiB | llama.cpp MiB | libqerr ppl | llama.cpp ppl | libqerr +%% | llama.cpp +%% | ratio | libqerr s | llama.cpp s |\n'
printf '|---|---|---|---|---|---|---|---|---|---|---|\n'
for type in "$@"; do
  case $type in
    Q8_0) t=q8_0 ;; Q4_0) t=q4_0 ;; Q4_K_M|Q4_K) t=q4_k ;; Q3_K_M|Q3_K) t=q3_k ;; Q2_K) t=q2_k ;;
    *) echo "gguf_quality: llama.cpp's side has no $type here" >&2; continue ;;
  esac
  ours="$out/$model-$type-qerr.gguf"; theirs="$out/$model-$type-llamacpp.gguf"
  t0=$(now)
  "$qerr" quantize --format gguf --type "$type" --model "$dir" --calib "$calib" \
    --nsamples "$nsamples" --seqlen "$ctx" --out "$ours" --quiet > "$out/$model-$type-qerr.log"
  t1=$(now)
  GGUF_PY="$GGUF_PY" NODE_LLAMA_CPP_DIR="$nl" "$py" "$to_gguf" "$dir" "$theirs" --type "$t" \
    --mix ftype --imatrix-from "$calib" --imatrix-ctx "$ctx" --imatrix-windows "$nsamples" \
    2> "$out/$model-$type-llamacpp.log"
  t2=$(now)
  p1=$(llama_ppl "$ours"); p2=$(llama_ppl "$theirs")
  awk -v m="$model" -v ty="$type" -v b="$base" -v p1="$p1" -v p2="$p2" \
      -v s1="$(stat -c %s "$ours")" -v s2="$(stat -c %s "$theirs")" \
      -v t1="$(secs "$t0" "$t1")" -v t2="$(secs "$t1" "$t2")" 'BEGIN {
    d1 = 100 * (p1 - b) / b; d2 = 100 * (p2 - b) / b
    printf "| %s | %s | %.3f | %.3f | %.6f | %.6f | %+.3f%% | %+.3f%% | %.2f | %s | %s |\n",
      m, ty, s1 / 1048576, s2 / 1048576, p1, p2, d1, d2, (d2 != 0 ? d1 / d2 : 0), t1, t2 }'
done
