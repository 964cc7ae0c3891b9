#!/usr/bin/env bash
# Consumers of the INSTALLED library, as a user outside the source tree
# would build them:
#   1. cmake --install BUILD_DIR into a temporary prefix
#   2. the C example through pkg-config (shared, and static via --static)
#   3. the C example through CMake find_package(qerr CONFIG) (shared, static)
#   4. the Python tests against the installed library (QERR_LIBRARY), and the
#      package installed with pip finding it through pkg-config
#   5. the Rust example, linked from the prefix through PKG_CONFIG_PATH
#   and the installed qerr tool, run from outside the source tree
# usage: tests/consumer/run.sh BUILD_DIR      (exits non-zero on any failure)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
[ $# -eq 1 ] || { echo "usage: $0 BUILD_DIR" >&2; exit 2; }
build=$1
[ -d "$build" ] || build="$root/$1"
build=$(cd "$build" && pwd)
[ -f "$build/libqerr.so" ] || { echo "consumer: $build has no libqerr.so" >&2; exit 2; }
PY=${PY:-/usr/bin/python3}
[ -x "$PY" ] || PY=python3
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/qerr-consumer.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prefix="$tmp/prefix"
step() { printf -- '--- consumer: %s\n' "$*"; }
# the program resolves libqerr.so.0 inside the prefix (no pipe into grep -q:
# with pipefail, an early grep exit would fail the pipeline through SIGPIPE)
uses_prefix() {
  local deps
  deps=$(ldd "$1")
  grep -q "libqerr.so.0 => $prefix" <<<"$deps"
}

step "install into $prefix"
cmake --install "$build" --prefix "$prefix" >/dev/null
libdir=$(dirname "$(find "$prefix" -name 'libqerr.so.*' -type f | head -n 1)")
export PKG_CONFIG_PATH="$libdir/pkgconfig"
unset QERR_LIBRARY QERR_LIB_DIR
[ "$(pkg-config --modversion qerr)" = "$(sed -n 's/^Version: //p' "$libdir/pkgconfig/qerr.pc")" ]
[ -f "$(pkg-config --variable=includedir qerr)/qerr.h" ] ||
  { echo "consumer: pkg-config's includedir has no qerr.h" >&2; exit 1; }

if [ -x "$prefix/bin/qerr" ]; then
  step "the installed qerr tool, run outside the source tree"
  # nothing defaults to a path in the repository: --model is asked for, and a
  # model directory alone brings its own token files
  if (cd "$tmp" && "$prefix/bin/qerr" ppl >"$tmp/qerr.log" 2>&1); then
    echo "consumer: qerr ppl without --model succeeded" >&2; exit 1
  fi
  grep -q -- "--model DIR is required" "$tmp/qerr.log" || { cat "$tmp/qerr.log"; exit 1; }
  if [ -f "$root/data/tiny-llama/model.safetensors" ]; then
    (cd "$tmp" && "$prefix/bin/qerr" ppl --model "$root/data/tiny-llama" --max-windows 1 \
       --quiet >"$tmp/qerr.log" 2>&1) || { cat "$tmp/qerr.log"; exit 1; }
    grep -q "^ppl " "$tmp/qerr.log" || { cat "$tmp/qerr.log"; exit 1; }
  fi
fi

step "C through pkg-config (shared)"
cc -std=c11 -Wall -Wextra -Werror "$here/consumer.c" $(pkg-config --cflags --libs qerr) -lm \
   -Wl,-rpath,"$(pkg-config --variable=libdir qerr)" -o "$tmp/consumer_pc"
"$tmp/consumer_pc"
uses_prefix "$tmp/consumer_pc" ||
  { echo "consumer: consumer_pc did not load the installed libqerr" >&2; exit 1; }

step "C through pkg-config --static"
cc -std=c11 "$here/consumer.c" $(pkg-config --cflags qerr) "$libdir/libqerr.a" \
   $(pkg-config --static --libs-only-l qerr | sed 's/-lqerr//') -lm -o "$tmp/consumer_pc_static"
"$tmp/consumer_pc_static"

step "C through CMake find_package(qerr CONFIG)"
cmake -S "$here" -B "$tmp/cmake" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release \
      >"$tmp/cmake.log" || { cat "$tmp/cmake.log"; exit 1; }
cmake --build "$tmp/cmake" >"$tmp/cmake-build.log" || { cat "$tmp/cmake-build.log"; exit 1; }
"$tmp/cmake/consumer_shared"
"$tmp/cmake/consumer_static"

step "Python tests against the installed library"
QERR_LIBRARY="$libdir/libqerr.so.0" PYTHONPATH="$root/bindings/python" \
  "$PY" -m pytest -q -p no:cacheprovider "$root/bindings/python/tests"

if "$PY" -m pip --version >/dev/null 2>&1; then
  step "Python package installed with pip (offline), library found through pkg-config"
  "$PY" -m pip install -q --no-build-isolation --no-index --no-deps --target "$tmp/py" \
    --config-settings bundle=no "$root/bindings/python" >"$tmp/pip.log" 2>&1 || { cat "$tmp/pip.log"; exit 1; }
  (cd "$tmp" && PYTHONPATH="$tmp/py" "$PY" -c "
import qerr, sys
assert qerr.__file__.startswith('$tmp/py'), qerr.__file__
assert qerr.library_path.startswith('$prefix'), qerr.library_path
print('found', qerr.library_path)")
  (cd "$tmp" && PYTHONPATH="$tmp/py" "$PY" "$root/bindings/python/examples/quantize_layer.py" \
     --rows 64 --cols 256 --samples 512)
else
  step "pip not available: skipping the pip-installed package check"
fi

if command -v cargo >/dev/null 2>&1; then
  step "Rust example linked from the prefix (PKG_CONFIG_PATH)"
  (cd "$root/bindings/rust" && CARGO_TARGET_DIR="$tmp/cargo" \
     cargo run --offline -q --example quantize_layer -- 64 256 4 128)
  uses_prefix "$tmp/cargo/debug/examples/quantize_layer" ||
    { echo "consumer: the Rust example did not load the installed libqerr" >&2; exit 1; }
else
  step "cargo not available: skipping the Rust example"
fi
step "all consumers passed"
