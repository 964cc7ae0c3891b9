"""PEP 517 build backend of the qerr wheel: builds libqerr with CMake from
the source tree this package sits in and puts it inside the wheel
(qerr/_lib/libqerr.so.<major>), so the installed package needs nothing
else set. Standard library only, so that `pip install bindings/python`
works offline (Debian 12 has no scikit-build-core).

Settings (pip --config-settings, -C):
  bundle=no             a pure-Python wheel without the library, which is
                        then found on the system (pkg-config, the loader)
Settings (environment):
  QERR_CMAKE_BUILD_DIR  reuse this CMake build directory (incremental
                        builds); by default a temporary one is used
  QERR_CMAKE_ARGS       extra arguments for the configure step
  QERR_BUILD_JOBS       parallel build jobs (default: the CPU count)
"""
import base64
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
PKG_ROOT = os.path.dirname(HERE)  # bindings/python
SRC_ROOT = os.path.dirname(os.path.dirname(PKG_ROOT))  # the libqerr checkout
NAME = "qerr"


def _version():
    text = open(os.path.join(PKG_ROOT, NAME, "_version.py")).read()
    return re.search(r'__version__ = "([^"]+)"', text).group(1)


def _abi_major():
    return int(_version().split(".")[0])


def _bundle(config_settings):
    value = (config_settings or {}).get("bundle", "yes")
    if value not in ("yes", "no"):
        raise RuntimeError("qerr_build: bundle=%s: use bundle=yes or bundle=no" % value)
    return value == "yes"


def _tag(bundle=True):
    # pure ctypes, any Python 3; the bundled library ties it to the platform
    if not bundle:
        return "py3-none-any"
    plat = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    return "py3-none-" + plat


def _metadata():
    readme = open(os.path.join(PKG_ROOT, "README.md")).read()
    return ("Metadata-Version: 2.1\n"
            "Name: %s\n"
            "Version: %s\n"
            "Summary: ctypes bindings of libqerr: post-training quantization of LLM weights\n"
            "License: see the libqerr repository\n"
            "Requires-Python: >=3.8\n"
            "Requires-Dist: numpy\n"
            "Provides-Extra: test\n"
            "Requires-Dist: pytest; extra == \"test\"\n"
            "Description-Content-Type: text/markdown\n"
            "\n%s" % (NAME, _version(), readme))


def _wheel_file(bundle=True):
    return ("Wheel-Version: 1.0\n"
            "Generator: qerr_build (in-tree)\n"
            "Root-Is-Purelib: %s\n"
            "Tag: %s\n" % ("false" if bundle else "true", _tag(bundle)))


def _dist_info():
    return "%s-%s.dist-info" % (NAME, _version())


def _run(cmd):
    print("qerr_build: " + " ".join(shlex.quote(c) for c in cmd), file=sys.stderr)
    subprocess.run(cmd, check=True, stdout=sys.stderr)


def _build_library(build_dir):
    """Configure and build the shared library; returns its real file."""
    if not os.path.isfile(os.path.join(SRC_ROOT, "CMakeLists.txt")) or \
            not os.path.isfile(os.path.join(SRC_ROOT, "include", "qerr.h")):
        raise RuntimeError("qerr_build: the libqerr sources are not at %s; build the wheel from "
                           "a libqerr checkout (pip install <checkout>/bindings/python)" % SRC_ROOT)
    cmake = shutil.which("cmake")
    if not cmake:
        raise RuntimeError("qerr_build: cmake is not installed (Debian: apt-get install cmake "
                           "build-essential pkg-config libopenblas-dev liblapacke-dev zlib1g-dev "
                           "libpcre2-dev libutf8proc-dev)")
    configure = [cmake, "-S", SRC_ROOT, "-B", build_dir, "-DCMAKE_BUILD_TYPE=Release",
                 "-DQERR_BUILD_TESTS=OFF", "-DQERR_BUILD_EXAMPLES=OFF", "-DQERR_BUILD_TOOLS=OFF"]
    configure += shlex.split(os.environ.get("QERR_CMAKE_ARGS", ""))
    _run(configure)
    jobs = os.environ.get("QERR_BUILD_JOBS") or str(os.cpu_count() or 1)
    _run([cmake, "--build", build_dir, "--target", "qerr", "-j", jobs])
    soname = os.path.join(build_dir, "libqerr.so.%d" % _abi_major())
    if not os.path.exists(soname):
        raise RuntimeError("qerr_build: the build made no %s" % soname)
    return os.path.realpath(soname)


def _package_files():
    """(path in the wheel, file on disk) of the Python package."""
    out = []
    pkg = os.path.join(PKG_ROOT, NAME)
    for name in sorted(os.listdir(pkg)):
        if name.endswith(".py") or name == "py.typed":
            out.append(("%s/%s" % (NAME, name), os.path.join(pkg, name)))
    return out


def _record_line(arcname, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return "%s,sha256=%s,%d" % (arcname, digest, len(data))


def _write_wheel(wheel_directory, library):
    dist_info = _dist_info()
    bundle = library is not None
    filename = "%s-%s-%s.whl" % (NAME, _version(), _tag(bundle))
    path = os.path.join(wheel_directory, filename)
    entries = []
    for arcname, src in _package_files():
        with open(src, "rb") as f:
            entries.append((arcname, f.read(), 0o644))
    if bundle:
        with open(library, "rb") as f:
            entries.append(("%s/_lib/libqerr.so.%d" % (NAME, _abi_major()), f.read(), 0o755))
    entries.append(("%s/METADATA" % dist_info, _metadata().encode(), 0o644))
    entries.append(("%s/WHEEL" % dist_info, _wheel_file(bundle).encode(), 0o644))
    record = [_record_line(a, d) for a, d, _ in entries] + ["%s/RECORD,," % dist_info]
    entries.append(("%s/RECORD" % dist_info, ("\n".join(record) + "\n").encode(), 0o644))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for arcname, data, mode in entries:
            info = zipfile.ZipInfo(arcname, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    return filename


# ---- PEP 517 hooks -------------------------------------------------------------
def get_requires_for_build_wheel(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    d = os.path.join(metadata_directory, _dist_info())
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "METADATA"), "w") as f:
        f.write(_metadata())
    with open(os.path.join(d, "WHEEL"), "w") as f:
        f.write(_wheel_file(_bundle(config_settings)))
    return _dist_info()


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    if not _bundle(config_settings):
        return _write_wheel(wheel_directory, None)
    build_dir = os.environ.get("QERR_CMAKE_BUILD_DIR")
    if build_dir:
        return _write_wheel(wheel_directory, _build_library(os.path.abspath(build_dir)))
    with tempfile.TemporaryDirectory(prefix="qerr-wheel-") as tmp:
        return _write_wheel(wheel_directory, _build_library(tmp))
