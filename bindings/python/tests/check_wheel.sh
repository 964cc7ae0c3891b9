#!/usr/bin/env bash
# The qerr wheel carries libqerr: `pip install bindings/python` (offline: the
# in-tree build backend builds the library with CMake) into a fresh venv,
# then import and use it from another directory with nothing set (no
# QERR_LIBRARY, LD_LIBRARY_PATH or PYTHONPATH).
#   usage: bindings/python/tests/check_wheel.sh [CMAKE_BUILD_DIR]
# A build directory given is reused (incremental); else a temporary one.
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
PY=${PY:-/usr/bin/python3}
[ -x "$PY" ] || PY=python3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
[ $# -ge 1 ] && export QERR_CMAKE_BUILD_DIR=$(realpath -m "$1")
# numpy comes from the system (Debian's python3-numpy): no package index needed
"$PY" -m venv --system-site-packages "$work/venv"
"$work/venv/bin/python" -m pip install --no-index --no-cache-dir --disable-pip-version-check \
  --quiet "$root/bindings/python"
cd "$work"
env -u QERR_LIBRARY -u LD_LIBRARY_PATH -u PYTHONPATH "$work/venv/bin/python" - <<'PYEOF'
import os
import numpy as np
import qerr

site = os.path.dirname(os.path.abspath(qerr.__file__))
assert "/venv/" in site, site
assert qerr.library_path == os.path.join(site, "_lib", "libqerr.so.0"), qerr.library_path
assert qerr.version() == qerr.__version__
assert os.path.isfile(os.path.join(site, "py.typed"))
W = np.random.default_rng(0).standard_normal((16, 64)).astype(np.float32)
r = qerr.quantize(W, None, "rtn:bits=4,group_size=32")
err = float(np.abs(r.dequantize() - W).max())
assert 0 < err < 1, err
print("wheel: qerr %s from %s; rtn W4 max |error| %.3f; methods: %s"
      % (qerr.__version__, qerr.library_path, err, " ".join(qerr.methods())))
PYEOF
echo "check_wheel: ok"
