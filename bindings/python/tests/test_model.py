"""Model-level API on the shared real models. Skipped when the library was
built without qerr/model.h's functions or when the data directory is absent."""
import numpy as np
import pytest

import qerr
from conftest import requires_model_api, shared_data

DATA = shared_data()
pytestmark = [requires_model_api(),
              pytest.mark.skipif(DATA is None, reason="shared model data not found "
                                 "(set QERR_SHARED_DATA)")]


@pytest.fixture(scope="module")
def stories():
    m = qerr.Model.load(DATA / "stories260k")
    yield m
    m.close()


@pytest.fixture(scope="module")
def eval_tokens():
    return qerr.read_tokens(DATA / "stories260k" / "eval.u32")


def test_read_tokens(eval_tokens):
    raw = np.fromfile(DATA / "stories260k" / "eval.u32", dtype="<u4")
    assert eval_tokens.dtype == np.uint32 and eval_tokens.shape == (15526,)
    np.testing.assert_array_equal(eval_tokens, raw)
    with pytest.raises(qerr.QerrError) as e:
        qerr.read_tokens(DATA / "stories260k" / "no-such-file.u32")
    assert e.value.code in (qerr.E_IO, qerr.E_NOT_FOUND)


def test_config_and_tensors(stories):
    assert stories.config_value("hidden_size") == 64
    assert stories.config_value("intermediate_size") == 172
    assert stories.config_value("num_hidden_layers") == 5
    assert stories.config_value("rms_norm_eps") == pytest.approx(1e-5)
    names = stories.tensor_names()
    q = "model.layers.0.self_attn.q_proj.weight"
    assert q in names
    w = stories.tensor(q)
    assert w.shape == (64, 64) and w.dtype == np.float32 and np.isfinite(w).all()
    with pytest.raises(qerr.QerrError) as e:
        stories.tensor("model.layers.99.nothing")
    assert e.value.code == qerr.E_NOT_FOUND


def test_float_perplexity_matches_reference(stories, eval_tokens):
    # README of the shared data: ctx 128 -> 121 windows, 15,367 scored, ppl 5.873547
    r = stories.evaluate(eval_tokens, 128)
    assert r.scored == 15367
    assert r.ppl == pytest.approx(5.873547, rel=1e-4)
    assert r.mean_nll == pytest.approx(1.770459, rel=1e-4)
    assert stories.perplexity(eval_tokens, 128, max_windows=10) > 1.0


def test_quantize_model_save_load_apply(tmp_path, eval_tokens):
    calib = qerr.read_tokens(DATA / "stories260k" / "calib.u32")
    with qerr.Model.load(DATA / "stories260k") as m:
        base = m.perplexity(eval_tokens, 128, max_windows=40)
        q = qerr.quantize_model(m, calib, "gptq:bits=4,group_size=32,ragged_groups=1",
                                overrides="lm_head=float", nsamples=16, seqlen=128, seed=1)
        names = q.names()
        assert any(n.endswith("q_proj.weight") for n in names)
        assert not any(n.startswith("lm_head") for n in names)
        q.set_meta("note", "python test")
        path = tmp_path / "model.qerr"
        q.save(path)
        back = qerr.QModel.load(path)
        assert back.names() == names and back.meta("note") == "python test"
        n0 = names[0]
        np.testing.assert_array_equal(back[n0].codes, q[n0].codes)
        np.testing.assert_array_equal(back[n0].dequantize(), q[n0].dequantize())
        m.apply(back)
        quant = m.perplexity(eval_tokens, 128, max_windows=40)
        assert base < quant < 1.5 * base, (base, quant)


def test_qmodel_owns_added_results(rng):
    W = rng.standard_normal((16, 32)).astype(np.float32)
    q = qerr.QModel()
    r = qerr.quantize(W, None, "rtn:bits=4")
    codes = r.codes
    q.add("layer", r)
    np.testing.assert_array_equal(r.codes, codes)  # now a view owned by q
    np.testing.assert_array_equal(q["layer"].codes, codes)
    assert len(q) == 1 and "layer" in q
    with pytest.raises(KeyError):
        q["absent"]
    assert q.meta("absent") is None
    view = q["layer"]
    q.close()
    with pytest.raises(qerr.QerrError):  # no use after the owner is freed
        view.codes
    with pytest.raises(qerr.QerrError):
        r.codes


def test_model_load_error(tmp_path):
    with pytest.raises(qerr.QerrError) as e:
        qerr.Model.load(tmp_path / "empty")
    assert e.value.code in (qerr.E_IO, qerr.E_NOT_FOUND, qerr.E_FORMAT)


def test_progress_fraction_never_goes_back(stories):
    """quantize_model's progress gets the whole call's fraction: a method's
    stage inside the pipeline (its own 0..1 over one weight) never pulls it
    back."""
    tokens = qerr.read_tokens(DATA / "stories260k" / "calib.u32")
    seen = []
    q = stories.quantize(tokens, "gptq:bits=4,group_size=32", nsamples=2, seqlen=32,
                         progress=lambda s, f: seen.append((s, f)))
    q.close()
    stages = {s.split(" ")[0] for s, _ in seen}
    assert "gptq" in stages and "layer" in stages  # both kinds were reported
    fractions = [f for _, f in seen]
    assert all(0.0 <= f <= 1.0 for f in fractions)
    assert all(b >= a for a, b in zip(fractions, fractions[1:])), seen
    assert fractions[-1] == pytest.approx(1.0)


def test_export_gptq_reads_back(tmp_path):
    tiny = DATA / "tiny-llama"
    calib = qerr.read_tokens(tiny / "calib.u32")
    with qerr.Model.load(tiny) as m:
        q = qerr.quantize_model(m, calib, "rtn:bits=4,group_size=128,symmetric=1",
                                nsamples=4, seqlen=64)
        out = tmp_path / "gptq"
        m.export_gptq(q, out)
        cfg = (out / "config.json").read_text()
        assert '"quant_method": "gptq"' in cfg and '"bits": 4' in cfg
        name = "model.layers.0.mlp.down_proj.weight"
        want = q[name].dequantize()
        with qerr.Model.load(out) as back:
            got = back.tensor(name)
        # the checkpoint stores scales in float16: the weights differ from the
        # float32-scale result by at most that rounding
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-6)
        with pytest.raises(qerr.QerrError) as e:
            m.export_gptq(q, out)  # never overwrites a checkpoint
        assert e.value.code == qerr.E_IO
        with pytest.raises(qerr.QerrError) as e:
            m.export_gptq(q, tmp_path / "v3", "gptq_v3")
        assert e.value.code == qerr.E_INVALID_ARG
