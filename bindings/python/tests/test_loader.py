"""Finding and opening the library, version check, declared signatures."""
import ctypes
import os
import shutil
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
    assert _ffi.version_number() // 10000 == int(qerr.__version__.split(".")[0])


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
        if name in _ffi.missing():
            continue
        assert getattr(lib, name).argtypes is not None, name


def test_missing_model_symbols_only():
    assert all(n.startswith(("qerr_model_", "qerr_qmodel_", "qerr_tokens_", "qerr_free"))
               for n in _ffi.missing())


def _package_copy(tmp_path):
    """A copy of the package, as pip would install it, under tmp_path/site."""
    site = tmp_path / "site"
    src = os.path.dirname(os.path.abspath(qerr.__file__))
    shutil.copytree(src, str(site / "qerr"), ignore=shutil.ignore_patterns("__pycache__", "_lib"))
    return site


def _run(code, site, **env_extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("QERR_LIBRARY", "LD_LIBRARY_PATH", "PYTHONPATH")}
    env["PYTHONPATH"] = str(site)
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=str(site),
                          capture_output=True, text=True, timeout=60)


def test_import_never_needs_the_library(tmp_path):
    """`import qerr` and __version__ work without the library; the first call
    that needs it raises LibraryNotFound saying where it looked."""
    missing = tmp_path / "nope" / "libqerr.so.0"
    p = _run("import qerr\n"
             "print(qerr.__version__)\n"
             "try:\n"
             "    qerr.methods()\n"
             "except qerr.LibraryNotFound as e:\n"
             "    print('LibraryNotFound:', e)\n",
             _package_copy(tmp_path), QERR_LIBRARY=str(missing))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == qerr.__version__
    assert lines[1].startswith("LibraryNotFound:") and str(missing) in p.stdout


def test_build_trees_above_the_package_are_not_searched(tmp_path):
    """An installed package never loads a build tree that lies above it."""
    site = _package_copy(tmp_path)
    build = tmp_path / "build"
    build.mkdir()
    shutil.copy(qerr.library_path, str(build / "libqerr.so.0"))
    p = _run("import qerr\n"
             "try:\n"
             "    print(qerr.library_path)\n"
             "except qerr.LibraryNotFound:\n"
             "    print('none')\n", site)
    assert p.returncode == 0, p.stderr
    assert str(build) not in p.stdout


def test_bundled_library_is_used(tmp_path):
    """The library the wheel puts in qerr/_lib is found with nothing set."""
    site = _package_copy(tmp_path)
    (site / "qerr" / "_lib").mkdir()
    shutil.copy(qerr.library_path, str(site / "qerr" / "_lib" / "libqerr.so.0"))
    p = _run("import qerr; print(qerr.library_path); print(len(qerr.methods()))", site)
    assert p.returncode == 0, p.stderr
    path, count = p.stdout.split()
    assert path == str(site / "qerr" / "_lib" / "libqerr.so.0")
    assert int(count) == len(qerr.methods())


def test_typed_package():
    """PEP 561: the package says it is typed, and the API is annotated."""
    import typing
    pkg = os.path.dirname(os.path.abspath(qerr.__file__))
    assert os.path.isfile(os.path.join(pkg, "py.typed"))
    for fn in (qerr.quantize, qerr.layer_error, qerr.methods, qerr.method_params,
               qerr.method_scopes, qerr.quantize_model, qerr.read_tokens,
               qerr.Calibration.add, qerr.Calibration.from_gram, qerr.Model.load,
               qerr.Model.evaluate, qerr.QModel.load):
        hints = typing.get_type_hints(fn)
        assert "return" in hints, fn.__qualname__


def test_abi_major_mismatch_is_refused():
    _ffi.check_abi(_ffi.version_number())  # the loaded library passes
    with pytest.raises(qerr.LibraryNotFound) as e:
        _ffi.check_abi(_ffi.version_number(), major=7)
    assert "ABI major 7" in str(e.value) and qerr.library_path in str(e.value)
    with pytest.raises(qerr.LibraryNotFound):
        _ffi.check_abi(10000 * (_ffi.version_number() // 10000 + 1))
