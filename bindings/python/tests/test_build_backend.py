"""The in-tree PEP 517 backend (build_backend/qerr_build.py): wheel layout,
metadata and RECORD. The full build with the library inside (CMake) is
tests/check_wheel.sh, run by .ci/run."""
import base64
import hashlib
import os
import sys
import zipfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "build_backend"))
import qerr_build  # noqa: E402

import qerr  # noqa: E402


def test_requires_nothing_to_build():
    assert qerr_build.get_requires_for_build_wheel() == []


def test_pure_wheel_layout_and_record(tmp_path):
    name = qerr_build.build_wheel(str(tmp_path), {"bundle": "no"})
    assert name == "qerr-%s-py3-none-any.whl" % qerr.__version__
    with zipfile.ZipFile(str(tmp_path / name)) as z:
        names = set(z.namelist())
        assert {"qerr/__init__.py", "qerr/_loader.py", "qerr/py.typed"} <= names
        assert not any(n.startswith("qerr/_lib/") for n in names)  # no library without bundle
        dist = "qerr-%s.dist-info" % qerr.__version__
        meta = z.read(dist + "/METADATA").decode()
        assert "Name: qerr\n" in meta and "Version: %s\n" % qerr.__version__ in meta
        assert "Requires-Dist: numpy\n" in meta
        assert "Root-Is-Purelib: true" in z.read(dist + "/WHEEL").decode()
        record = z.read(dist + "/RECORD").decode().splitlines()
        listed = {line.split(",")[0] for line in record}
        assert listed == names
        for line in record:
            path, digest, size = line.split(",")
            if path.endswith("RECORD"):
                continue
            data = z.read(path)
            want = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert digest == "sha256=" + want and int(size) == len(data), path


def test_bundled_wheel_is_platform_specific():
    assert qerr_build._tag(True).startswith("py3-none-linux")
    assert "Root-Is-Purelib: false" in qerr_build._wheel_file(True)


def test_bad_setting_is_refused(tmp_path):
    with pytest.raises(RuntimeError):
        qerr_build.build_wheel(str(tmp_path), {"bundle": "maybe"})


def test_metadata_hook(tmp_path):
    d = qerr_build.prepare_metadata_for_build_wheel(str(tmp_path))
    assert (tmp_path / d / "METADATA").is_file()
