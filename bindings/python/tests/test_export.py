"""GGUF export through the bindings: an F32 file loads back with the same
weights and perplexity, llama-quantize's per-tensor types, clear errors and
no file on a bad request. Skipped without the model API or shared data."""
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


def test_f32_gguf_round_trip(stories, tmp_path):
    path = tmp_path / "s.gguf"
    q = qerr.export_gguf(stories, path, "F32")
    assert len(q) == 0
    with open(path, "rb") as f:
        assert f.read(4) == b"GGUF"
    g = qerr.Model.load(path)
    try:
        assert sorted(g.tensor_names()) == sorted(stories.tensor_names())
        for name in stories.tensor_names():
            np.testing.assert_array_equal(g.tensor(name), stories.tensor(name))
        toks = qerr.read_tokens(DATA / "stories260k" / "eval.u32")
        assert g.perplexity(toks, 128, max_windows=4) == stories.perplexity(toks, 128, 4)
    finally:
        g.close()


def test_f16_gguf_rounds_matrices(stories, tmp_path):
    path = tmp_path / "h.gguf"
    qerr.gguf_save(stories, path, "f16")
    g = qerr.Model.load(path)
    try:
        name = "model.layers.1.mlp.down_proj.weight"
        want = stories.tensor(name).astype(np.float16).astype(np.float32)
        np.testing.assert_array_equal(g.tensor(name), want)
        norm = "model.layers.1.input_layernorm.weight"
        np.testing.assert_array_equal(g.tensor(norm), stories.tensor(norm))
    finally:
        g.close()


def test_tensor_types(stories):
    # tied head of 64 columns: Q8_0; ffn_down rows of 172 fit no ggml block: F16
    assert qerr.gguf_tensor_type(stories, "lm_head.weight", "Q4_K_M") == "Q8_0"
    assert qerr.gguf_tensor_type(stories, "model.layers.0.mlp.down_proj.weight", "Q4_K") == "F16"
    assert qerr.gguf_tensor_type(stories, "model.layers.0.self_attn.q_proj.weight",
                                 "Q4_K_M") == "Q5_0"
    assert qerr.gguf_tensor_type(stories, "model.norm.weight", "Q4_0") == "F32"


def test_bad_requests_leave_no_file(stories, tmp_path):
    path = tmp_path / "bad.gguf"
    with pytest.raises(qerr.QerrError) as e:
        qerr.gguf_save(stories, path, "Q9_K")
    assert e.value.code == qerr.E_INVALID_ARG and "Q9_K" in str(e.value)
    with pytest.raises(qerr.QerrError) as e:
        qerr.gguf_save(stories, path, "Q4_0")  # quantized tensors are missing
    assert e.value.code == qerr.E_NOT_FOUND
    with pytest.raises(qerr.QerrError) as e:
        qerr.gguf_save(stories, path, "F32", mix="most")
    assert e.value.code == qerr.E_INVALID_ARG
    assert not path.exists()


def test_quantized_gguf_holds_the_pipeline_results(stories, tmp_path):
    toks = qerr.read_tokens(DATA / "stories260k" / "calib.u32")
    path = tmp_path / "q8.gguf"
    q = qerr.export_gguf(stories, path, "Q8_0", toks, ggml_opts="solver=gptq", nsamples=4,
                         seqlen=64)
    try:
        name = "model.layers.1.self_attn.k_proj.weight"
        assert name in q and "lm_head.weight" in q
        g = qerr.Model.load(path)
        try:
            np.testing.assert_array_equal(g.tensor(name), q[name].dequantize())
            # tied: the file's one token_embd is the output projection's result
            np.testing.assert_array_equal(g.tensor("model.embed_tokens.weight"),
                                          q["lm_head.weight"].dequantize())
        finally:
            g.close()
        with pytest.raises(qerr.QerrError) as e:
            qerr.gguf_save(stories, tmp_path / "other.gguf", "Q4_0", q)
        assert e.value.code == qerr.E_INVALID_ARG
    finally:
        q.close()
