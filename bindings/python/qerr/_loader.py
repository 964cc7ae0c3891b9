"""Find and open libqerr.so.

Order: $QERR_LIBRARY (a file, or a directory holding the library: how a
development checkout points at its build tree), then the library bundled
in this package (qerr/_lib/, put there by the wheel build), then the system
(ctypes.util.find_library, then `pkg-config --variable=libdir qerr`, then
the dynamic loader's default path). Nothing else is searched: an installed
package never picks up a build tree that happens to lie above it. The
versioned soname libqerr.so.<major> is preferred over the libqerr.so link.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import subprocess
from typing import List, Optional, Tuple

from ._version import ABI_MAJOR

SONAME = "libqerr.so.%d" % ABI_MAJOR
BUNDLED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_lib")


class LibraryNotFound(OSError):
    """libqerr could not be found or opened; the message says where we looked."""


def _in_dir(directory: str) -> Optional[str]:
    """Best library file in a directory: the soname first, then any other."""
    for name in (SONAME, "libqerr.so"):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    others = sorted(glob.glob(os.path.join(directory, "libqerr.so.*")))
    return others[0] if others else None


def _pkg_config_libdir() -> Optional[str]:
    try:
        out = subprocess.run(["pkg-config", "--variable=libdir", "qerr"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    libdir = out.stdout.strip()
    return os.path.normpath(libdir) if out.returncode == 0 and libdir else None


def candidates() -> List[Tuple[str, Optional[str]]]:
    """(description, path-or-name) pairs in the order they are tried."""
    tried: List[Tuple[str, Optional[str]]] = []
    env = os.environ.get("QERR_LIBRARY")
    if env:
        path = _in_dir(env) if os.path.isdir(env) else env
        tried.append(("$QERR_LIBRARY=%s" % env, path))
        return tried  # an explicit choice is never silently replaced
    tried.append(("the library bundled with the package (%s)" % BUNDLED_DIR,
                  _in_dir(BUNDLED_DIR) if os.path.isdir(BUNDLED_DIR) else None))
    name = ctypes.util.find_library("qerr")
    tried.append(("ctypes.util.find_library('qerr')", name))
    libdir = _pkg_config_libdir()
    tried.append(("pkg-config --variable=libdir qerr (%s)" % (libdir or "no answer"),
                  _in_dir(libdir) if libdir else None))
    tried.append(("the dynamic loader's default path", SONAME))
    return tried


def load() -> Tuple[ctypes.CDLL, str]:
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
        "cannot load libqerr; install the qerr wheel (it bundles the library), install "
        "libqerr on the system, or set QERR_LIBRARY to the path of %s (or its build "
        "directory). Looked in:\n%s" % (SONAME, "\n".join(notes)))
