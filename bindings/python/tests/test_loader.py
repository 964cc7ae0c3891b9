"""Finding and opening the library, version check, declared signatures."""
import ctypes
import os
import subprocess
import sys

import pytest

import qerr
from qerr import _ffi


def _import_in_child(env_extra):
    env = dict(os.environ)
    env.update(env_extra)
    pkg = os.path.dirname(os.path.dirname(os.path.abspath(qerr.__file__)))
    env["PYTHONPATH"] = pkg + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", "import qerr; print(qerr.library_path)"],
                          env=env, capture_output=True, text=True, timeout=60)


def test_library_loaded_and_versions_agree():
    assert os.path.exists(qerr.library_path) or "/" not in qerr.library_path
    assert qerr.version() == qerr.__version__
    assert _ffi.version_number // 10000 == int(qerr.__version__.split(".")[0])


def test_soname_preferred():
    # the versioned soname, not the unversioned development link
    if os.environ.get("QERR_LIBRARY", "").endswith("libqerr.so"):
        return
    assert os.path.basename(qerr.library_path).startswith("libqerr.so.")


def test_bad_qerr_library_gives_clear_error(tmp_path):
    missing = tmp_path / "nope" / "libqerr.so.0"
    p = _import_in_child({"QERR_LIBRARY": str(missing)})
    assert p.returncode != 0
    assert "LibraryNotFound" in p.stderr
    assert str(missing) in p.stderr and "QERR_LIBRARY" in p.stderr


def test_qerr_library_may_name_a_directory():
    d = os.path.dirname(os.path.abspath(qerr.library_path))
    p = _import_in_child({"QERR_LIBRARY": d})
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().startswith(d)


def test_every_function_declared_with_a_restype():
    lib = _ffi.lib
    # pointer-returning functions must not keep ctypes' default int restype
    assert lib.qerr_tensor_data.restype is ctypes.c_void_p
    assert lib.qerr_last_error.restype is ctypes.c_char_p
    assert lib.qerr_tensor_numel.restype is ctypes.c_int64
    for name in _ffi._SIGNATURES:
        if name in _ffi.missing:
            continue
        assert getattr(lib, name).argtypes is not None, name


def test_missing_model_symbols_only():
    assert all(n.startswith(("qerr_model_", "qerr_qmodel_", "qerr_tokens_", "qerr_free"))
               for n in _ffi.missing)


def test_build_tree_found_without_qerr_library():
    from qerr import _loader
    libs, top = _loader._build_trees()
    if not libs:
        pytest.skip("package is not inside a source tree with a build directory")
    env = {k: v for k, v in os.environ.items() if k != "QERR_LIBRARY"}
    pkg = os.path.dirname(os.path.dirname(os.path.abspath(qerr.__file__)))
    env["PYTHONPATH"] = pkg
    p = subprocess.run([sys.executable, "-c", "import qerr; print(qerr.library_path)"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == libs[0]
    assert os.path.basename(os.path.dirname(libs[0])).startswith("build")



def test_abi_major_mismatch_is_refused():
    _ffi.check_abi(_ffi.version_number)  # the loaded library passes
    with pytest.raises(qerr.LibraryNotFound) as e:
        _ffi.check_abi(_ffi.version_number, major=7)
    assert "ABI major 7" in str(e.value) and qerr.library_path in str(e.value)
    with pytest.raises(qerr.LibraryNotFound):
        _ffi.check_abi(10000 * (_ffi.version_number // 10000 + 1))
