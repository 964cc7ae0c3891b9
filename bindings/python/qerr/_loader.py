"""Find and open libqerr.so.

Order: $QERR_LIBRARY (a file, or a directory holding the library), then a
build tree above this package (build*/libqerr.so*), then the system
(ctypes.util.find_library, then `pkg-config --variable=libdir qerr`). The
versioned soname libqerr.so.<major> is preferred over the libqerr.so link.
"""
import ctypes
import ctypes.util
import glob
import os
import subprocess

from ._version import ABI_MAJOR

SONAME = "libqerr.so.%d" % ABI_MAJOR


class LibraryNotFound(OSError):
    """libqerr could not be found or opened; the message says where we looked."""


def _in_dir(directory):
    """Best library file in a directory: the soname first, then any other."""
    for name in (SONAME, "libqerr.so"):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    others = sorted(glob.glob(os.path.join(directory, "libqerr.so.*")))
    return others[0] if others else None


def _sanitized(lib):
    """True for an ASan build: loading it into python aborts the process
    unless the sanitizer runtime was preloaded."""
    try:
        with open(lib, "rb") as f:
            return b"libasan.so" in f.read()
    except OSError:
        return False


def _build_trees():
    """Directories build*/ holding libqerr, searched upward from the package;
    at the first level that has any, the most recently built one wins
    (sanitizer builds are passed over)."""
    here = os.path.dirname(os.path.abspath(__file__))
    level = here
    while True:
        parent = os.path.dirname(level)
        found = []
        for d in glob.glob(os.path.join(parent, "build*")):
            lib = _in_dir(d) if os.path.isdir(d) else None
            if lib and not _sanitized(lib):
                found.append(lib)
        if found:
            found.sort(key=os.path.getmtime, reverse=True)
            return found, parent
        if parent == level:
            return [], None
        level = parent


def _pkg_config_libdir():
    try:
        out = subprocess.run(["pkg-config", "--variable=libdir", "qerr"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    libdir = out.stdout.strip()
    return os.path.normpath(libdir) if out.returncode == 0 and libdir else None


def candidates():
    """(description, path-or-name) pairs in the order they are tried."""
    tried = []
    env = os.environ.get("QERR_LIBRARY")
    if env:
        path = _in_dir(env) if os.path.isdir(env) else env
        tried.append(("$QERR_LIBRARY=%s" % env, path))
        return tried  # an explicit choice is never silently replaced
    libs, top = _build_trees()
    if libs:
        tried.extend(("build tree under %s" % top, lib) for lib in libs)
    else:
        tried.append(("build*/ directories above %s" % os.path.dirname(__file__), None))
    name = ctypes.util.find_library("qerr")
    tried.append(("ctypes.util.find_library('qerr')", name))
    libdir = _pkg_config_libdir()
    tried.append(("pkg-config --variable=libdir qerr (%s)" % (libdir or "no answer"),
                  _in_dir(libdir) if libdir else None))
    tried.append(("the dynamic loader's default path", SONAME))
    return tried


def load():
    """Open the first candidate that loads; raise LibraryNotFound otherwise."""
    notes = []
    for where, path in candidates():
        if not path:
            notes.append("  %s: nothing found" % where)
            continue
        try:
            return ctypes.CDLL(path), path
        except OSError as e:
            notes.append("  %s: %s: %s" % (where, path, e))
    raise LibraryNotFound(
        "cannot load libqerr; set QERR_LIBRARY to the path of %s. Looked in:\n%s"
        % (SONAME, "\n".join(notes)))
