"""Methods, plans, calibration sets, quantize(), results, errors."""
import gc
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import qerr
from qerr._arrays import Tensor


def unpack(packed, bits, cols):
    """Reference unpacking: codes LSB-first, every row starts on a byte."""
    rows = packed.shape[0]
    bitstream = np.unpackbits(packed, axis=1, bitorder="little")
    out = np.zeros((rows, cols), dtype=np.int64)
    for b in range(bits):
        out |= bitstream[:, b:cols * bits:bits].astype(np.int64) << b
    return out


# ---- introspection -------------------------------------------------------------
def test_methods_and_params():
    names = qerr.methods()
    assert "rtn" in names and "gptq" in names
    assert qerr.method_summary("gptq")
    params = {p["key"]: p for p in qerr.method_params("gptq")}
    bits = params["bits"]
    assert bits["type"] == "int" and bits["default"] == 4
    assert bits["min"] == 2 and bits["max"] == 8 and bits["help"]
    assert params["damp"]["type"] == "double" and isinstance(params["damp"]["default"], float)
    assert params["act_order"]["type"] == "bool" and params["act_order"]["default"] is False
    for name in names:
        for p in qerr.method_params(name):
            assert set(p) == {"key", "type", "default", "min", "max", "choices", "help"}
            if p["type"] == "choice":
                assert p["default"] in p["choices"]
            else:
                assert p["choices"] == []


def test_unknown_method_raises():
    with pytest.raises(qerr.QerrError) as e:
        qerr.method_params("nosuchmethod")
    assert e.value.code == qerr.E_UNKNOWN_METHOD
    assert "nosuchmethod" in e.value.message
    with pytest.raises(qerr.QerrError) as e:
        qerr.Plan("nosuchmethod:bits=4")
    assert e.value.code == qerr.E_UNKNOWN_METHOD


def test_plan_roundtrip_and_errors():
    p = qerr.Plan("gptq:bits=3,group_size=32", act_order=True, damp=0.05)
    assert p.method == "gptq"
    assert p.get("bits") == 3 and p.get("group_size") == 32
    assert p.get("act_order") is True and p.get("damp") == pytest.approx(0.05)
    spec = str(p)
    assert spec.startswith("gptq:bits=3,group_size=32")
    assert str(qerr.Plan(spec)) == spec
    q = p.copy()
    q.set("bits", 8)
    assert p.get("bits") == 3 and q.get("bits") == 8
    with pytest.raises(qerr.QerrError) as e:
        p.set("no_such_key", 1)
    assert e.value.code == qerr.E_UNKNOWN_KEY and "no_such_key" in str(e.value)
    with pytest.raises(qerr.QerrError) as e:
        p.set("bits", 1)
    assert e.value.code == qerr.E_RANGE and "bits" in e.value.message
    assert p.get("bits") == 3  # a refused value changes nothing
    p.close()
    p.close()  # idempotent
    with pytest.raises(qerr.QerrError):
        p.get("bits")


# ---- calibration ---------------------------------------------------------------
def test_calibration_gram_matches_numpy(layer):
    W, X = layer
    with qerr.Calibration(X.shape[1]) as c:
        c.add(X[:500])
        c.add(X[500:])
        assert c.nsamples == X.shape[0] and c.in_features == X.shape[1]
        ref = X.astype(np.float64).T @ X.astype(np.float64)
        np.testing.assert_allclose(c.gram(), ref, rtol=1e-4, atol=1e-3)


def test_calibration_dtypes(rng):
    X = rng.standard_normal((64, 16)).astype(np.float32)
    x16 = X.astype(np.float16)
    bf16 = (X.view(np.uint32) >> 16).astype(np.uint16)  # truncation to bfloat16
    bf16_as_f32 = (bf16.astype(np.uint32) << 16).view(np.float32)
    for data, dtype, ref in ((x16, None, x16.astype(np.float32)),
                             (bf16, qerr.DTYPE_BF16, bf16_as_f32),
                             (X.astype(np.float64), None, X)):
        c = qerr.Calibration(16)
        c.add(data, dtype=dtype)
        np.testing.assert_allclose(c.gram(), ref.astype(np.float64).T @ ref, rtol=1e-5,
                                   atol=1e-4)
    with pytest.raises(qerr.QerrError) as e:
        qerr.Calibration(16).add(bf16)  # uint16 without dtype is ambiguous
    assert e.value.code == qerr.E_INVALID_ARG


def test_calibration_errors():
    c = qerr.Calibration(8)
    with pytest.raises(qerr.QerrError) as e:
        c.add(np.ones((4, 9), np.float32))
    assert e.value.code == qerr.E_SHAPE
    with pytest.raises(qerr.QerrError) as e:
        qerr.Calibration(-1)
    assert e.value.code in (qerr.E_INVALID_ARG, qerr.E_RANGE, qerr.E_SHAPE)
    with pytest.raises(qerr.QerrError) as e:
        qerr.Calibration.from_gram(np.ones((3, 4)), 10)
    assert e.value.code == qerr.E_SHAPE


def test_calibration_from_gram_save_load(tmp_path, layer):
    W, X = layer
    H = X.astype(np.float64).T @ X
    c = qerr.Calibration.from_gram(H, X.shape[0])
    assert c.nsamples == X.shape[0]
    np.testing.assert_array_equal(c.gram(), H)
    path = tmp_path / "layer.calib"
    c.save(path)
    d = qerr.Calibration.load(str(path))
    np.testing.assert_array_equal(d.gram(), H)
    assert d.nsamples == c.nsamples
    d.merge(c)
    assert d.nsamples == 2 * c.nsamples
    np.testing.assert_allclose(d.gram(), 2 * H)
    # a damaged file is refused with a status, not read
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    bad = tmp_path / "bad.calib"
    bad.write_bytes(bytes(raw))
    with pytest.raises(qerr.QerrError) as e:
        qerr.Calibration.load(bad)
    assert e.value.code in (qerr.E_FORMAT, qerr.E_CHECKSUM)
    with pytest.raises(qerr.QerrError) as e:
        qerr.Calibration.load(tmp_path / "absent.calib")
    assert e.value.code in (qerr.E_IO, qerr.E_NOT_FOUND)


def test_calibration_reservoir(rng):
    X = rng.standard_normal((100, 8)).astype(np.float32)
    c = qerr.Calibration(8, reservoir=10, seed=3)
    c.add(X)
    kept = c.reservoir()
    assert kept.shape == (10, 8)
    # every kept row is one of the input rows
    for row in kept:
        assert np.any(np.all(X == row, axis=1))
    assert qerr.Calibration(8).reservoir().shape == (0, 8)


# ---- quantize -------------------------------------------------------------------
def test_rtn_result_is_consistent(layer):
    W, _ = layer
    r = qerr.quantize(W, None, "rtn:bits=3,group_size=32")
    assert r.shape == W.shape and r.bits == 3 and r.group_size == 32 and r.groups == 4
    codes = r.codes
    assert codes.dtype == np.uint8 and codes.max() <= 7
    s, z, g = r.scales, r.zeros, r.g_idx
    assert s.shape == (64, 4) and z.shape == (64, 4)
    np.testing.assert_array_equal(g, np.arange(128) // 32)
    rec = s[:, g] * (codes.astype(np.float32) - z[:, g])
    np.testing.assert_allclose(r.dequantize(), rec, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(unpack(r.packed, 3, 128), codes)
    assert r.packed.shape == (64, 128 * 3 // 8)
    # rounding to the nearest grid point: error within half a step
    assert np.all(np.abs(r.dequantize() - W) <= s[:, g] / 2 + 1e-5)
    assert 3.0 < r.bits_per_weight < 4.5
    assert r.plan.startswith("rtn:bits=3,group_size=32")
    assert len(r.outliers.values) == 0 and r.extras == {}


def test_ggml_result_has_offsets(rng):
    W = rng.standard_normal((8, 256)).astype(np.float32)
    r = qerr.quantize(W, None, "ggml:type=q4_k,solver=rtn")
    s, z, m, g = r.scales, r.zeros, r.mins, r.g_idx
    assert m.shape == (8, 8) and np.all(m >= 0) and np.any(m > 0)
    rec = s[:, g] * (r.codes.astype(np.float32) - z[:, g]) - m[:, g]
    np.testing.assert_array_equal(r.dequantize(), rec)
    assert r.bits_per_weight == 4.5
    assert np.all(qerr.quantize(W, None, "rtn:bits=4").mins == 0)


def test_gptq_beats_rtn_on_correlated_data(layer, calib):
    W, _ = layer
    rtn = qerr.quantize(W, calib, "rtn:bits=3,group_size=32")
    gptq = qerr.quantize(W, calib, "gptq:bits=3,group_size=32", threads=2)
    e_rtn = qerr.layer_error(W, rtn.dequantize(), calib)
    e_gptq = qerr.layer_error(W, gptq.dequantize(), calib)
    assert e_gptq < 0.8 * e_rtn, (e_gptq, e_rtn)
    assert gptq.diagnostics["layer_error"] == pytest.approx(e_gptq, rel=1e-3)
    assert gptq.diag("layer_error") == pytest.approx(e_gptq, rel=1e-3)
    with pytest.raises(qerr.QerrError) as e:
        gptq.diag("no_such_diag")
    assert e.value.code == qerr.E_NOT_FOUND


def test_layer_error_matches_definition(layer, calib):
    W, _ = layer
    assert qerr.layer_error(W, W, calib) == 0.0
    Wq = W + 0.01 * np.sign(W)
    H = calib.gram()
    D = (W - Wq).astype(np.float64)
    ref = np.trace(D @ H @ D.T) / np.trace(W.astype(np.float64) @ H @ W.T)
    assert qerr.layer_error(W, Wq, calib) == pytest.approx(ref, rel=1e-4)


def test_keyword_overrides_and_plan_objects(layer, calib):
    W, _ = layer
    r = qerr.quantize(W, calib, "gptq", bits=8)
    assert r.bits == 8
    p = qerr.Plan("gptq:bits=2")
    r2 = qerr.quantize(W, calib, p)
    assert r2.bits == 2 and p.get("bits") == 2
    assert qerr.layer_error(W, r.dequantize(), calib) < qerr.layer_error(W, r2.dequantize(), calib)


def test_deterministic_and_thread_independent(layer, calib):
    W, _ = layer
    a = qerr.quantize(W, calib, "gptq:bits=4,group_size=32", threads=1, seed=7).codes
    b = qerr.quantize(W, calib, "gptq:bits=4,group_size=32", threads=1, seed=7).codes
    c = qerr.quantize(W, calib, "gptq:bits=4,group_size=32", threads=2, seed=7).codes
    np.testing.assert_array_equal(a, b)
    assert np.mean(a != c) < 0.01  # identical up to BLAS rounding


def test_input_dtypes_and_layouts(layer):
    W, _ = layer
    ref = qerr.quantize(W, None, "rtn:bits=4").codes
    np.testing.assert_array_equal(qerr.quantize(W.astype(np.float64), None, "rtn").codes, ref)
    # a non-contiguous view is copied, not misread
    Wt = np.asfortranarray(W)
    np.testing.assert_array_equal(qerr.quantize(Wt, None, "rtn").codes, ref)
    strided = W[:, ::2]
    np.testing.assert_array_equal(qerr.quantize(strided, None, "rtn").codes,
                                  qerr.quantize(strided.copy(), None, "rtn").codes)
    h = W.astype(np.float16)
    np.testing.assert_array_equal(qerr.quantize(h, None, "rtn").codes,
                                  qerr.quantize(h.astype(np.float32), None, "rtn").codes)
    bf = (W.view(np.uint32) >> 16).astype(np.uint16)
    r = qerr.quantize(bf, None, "rtn", dtype=qerr.DTYPE_BF16)
    np.testing.assert_array_equal(
        r.codes, qerr.quantize((bf.astype(np.uint32) << 16).view(np.float32), None, "rtn").codes)


def test_zero_copy_borrow(layer):
    W, _ = layer
    t = Tensor(W, ndim=2)
    assert np.shares_memory(t.array, W)  # float32 C-contiguous: borrowed as is
    t.close()
    t2 = Tensor(W.T, ndim=2)
    assert not np.shares_memory(t2.array, W)  # needed a contiguous copy
    t2.close()


def test_errors_map_to_codes(layer, calib):
    W, _ = layer
    cases = [
        (lambda: qerr.quantize(W[:, :100], calib, "gptq"), qerr.E_SHAPE),
        (lambda: qerr.quantize(W, None, "gptq"), qerr.E_INVALID_ARG),
        (lambda: qerr.quantize(W[None], None, "rtn"), qerr.E_SHAPE),
        (lambda: qerr.quantize(W, None, "rtn:bits=9"), qerr.E_RANGE),
        (lambda: qerr.quantize(W, None, "rtn:nokey=1"), qerr.E_UNKNOWN_KEY),
        (lambda: qerr.quantize(W, None, "rtn", threads=-1), qerr.E_RANGE),
        (lambda: qerr.quantize(np.ones((2, 2), np.complex64), None, "rtn"), qerr.E_INVALID_ARG),
    ]
    bad = W.copy()
    bad[3, 5] = np.nan
    cases.append((lambda: qerr.quantize(bad, None, "rtn"), qerr.E_NONFINITE))
    for fn, code in cases:
        with pytest.raises(qerr.QerrError) as e:
            fn()
        assert e.value.code == code, (e.value, code)
        assert e.value.message  # the library's explanation, not empty
    with pytest.raises(qerr.QerrError) as e:
        qerr.quantize(bad, None, "rtn")
    assert "[3][5]" in e.value.message


def test_progress_callback_and_cancel(layer, calib):
    W, _ = layer
    seen = []
    qerr.quantize(W, calib, "gptq:block_size=16", progress=lambda s, f: seen.append((s, f)))
    fractions = [f for _, f in seen]
    assert len(seen) >= 4 and fractions == sorted(fractions) and fractions[-1] == 1.0
    assert all(isinstance(s, str) and s for s, _ in seen)
    with pytest.raises(qerr.QerrError) as e:
        qerr.quantize(W, calib, "gptq:block_size=16", progress=lambda s, f: f > 0.3)
    assert e.value.code == qerr.E_CANCELLED

    class Boom(Exception):
        pass

    def explode(stage, fraction):
        raise Boom("from the callback")

    with pytest.raises(Boom):
        qerr.quantize(W, calib, "gptq:block_size=16", progress=explode)

    def explode_at_end(stage, fraction):
        if fraction >= 1.0:
            raise Boom("after the work")

    with pytest.raises(Boom):  # never swallowed, even if the call had finished
        qerr.quantize(W, calib, "gptq:block_size=16", progress=explode_at_end)


def test_closed_and_context_managers(layer):
    W, _ = layer
    with qerr.quantize(W, None, "rtn") as r:
        assert r.rows == 64
    assert r.closed
    with pytest.raises(qerr.QerrError):
        r.codes
    with pytest.raises(TypeError):
        qerr.Result()


def _rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def test_no_leak_under_repeated_use(rng):
    n = 512
    W = rng.standard_normal((n, n)).astype(np.float32)
    X = rng.standard_normal((n + 8, n)).astype(np.float32)

    def once():
        c = qerr.Calibration(n)  # 2 MiB Gram matrix
        c.add(X)
        r = qerr.quantize(W, c, "rtn:bits=4,group_size=128")  # ~0.3 MiB of result
        r.dequantize()
        with qerr.Plan("gptq") as p:
            str(p)
        try:
            qerr.quantize(W, c, "rtn:bits=1")
        except qerr.QerrError:
            pass

    for _ in range(10):
        once()
    gc.collect()
    before = _rss_mb()
    for _ in range(60):  # a leaked Gram holds 120 MiB here, a leaked result 18 MiB
        once()
    gc.collect()
    grown = _rss_mb() - before
    assert grown < 8, "RSS grew by %.1f MiB" % grown


def test_threads_share_plan_and_calibration(layer, calib):
    # qerr.h: read-only use of one plan / calibration set from several threads
    W, _ = layer
    plan = qerr.Plan("gptq:bits=4,group_size=32")
    ref = qerr.quantize(W, calib, plan, threads=1).codes
    with ThreadPoolExecutor(3) as pool:
        outs = list(pool.map(lambda _: qerr.quantize(W, calib, plan, threads=1).codes, range(6)))
    for codes in outs:
        np.testing.assert_array_equal(codes, ref)
