"""Shared fixtures: correlated calibration data, the shared model directory."""
import os
import pathlib

import numpy as np
import pytest

import qerr

REPO = pathlib.Path(__file__).resolve().parents[3]


def shared_data():
    """/work/shared/data-like directory, or None (tests using it are skipped)."""
    env = os.environ.get("QERR_SHARED_DATA")
    for d in ([pathlib.Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if (d / "README.md").is_file():
            return d
    return None


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def layer(rng):
    """(W [64, 128], X [1024, 128]) with strongly correlated, uneven inputs,
    the case where GPTQ's error feedback pays off."""
    n = 128
    mix = rng.standard_normal((n, n)).astype(np.float32) / np.sqrt(n)
    mix += np.eye(n, dtype=np.float32) * 0.2
    scale = np.exp(rng.standard_normal(n)).astype(np.float32)
    X = (rng.standard_normal((1024, n)).astype(np.float32) @ mix) * scale
    W = rng.standard_normal((64, n)).astype(np.float32)
    return W, X.astype(np.float32)


@pytest.fixture
def calib(layer):
    W, X = layer
    c = qerr.Calibration(W.shape[1])
    c.add(X)
    yield c
    c.close()


def requires_model_api():
    return pytest.mark.skipif(not qerr.has_model_api(),
                              reason="libqerr was built without the model API (qerr/model.h)")
