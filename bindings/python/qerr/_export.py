"""Export API (qerr/export.h): a model, quantized or not, as a GGUF file for
llama.cpp. `type` is a llama-quantize file type ("F32", "F16", "Q8_0", "Q4_0",
"Q4_K_M", ...), `mix` "ftype" (llama-quantize's per-tensor rules, default),
"pure" or "layers". A GGUF file loads back with qerr.Model.load(path)."""
import ctypes
from ctypes import byref, c_void_p

import numpy as np

from ._core import _b, _Context, _path, _s
from ._ffi import lib, require
from ._model import QModel, _tokens


def gguf_tensor_type(model, name, type, mix=None):
    """The ggml type ("Q6_K", "F16", ...) tensor `name` gets in such a file."""
    buf = ctypes.create_string_buffer(32)
    require("qerr_gguf_tensor_type")(model._h, _b(type), _b(mix) if mix else None, _b(name),
                                     buf, len(buf))
    return _s(buf.value)


def gguf_quantize(model, tokens, type, mix=None, ggml_opts=None, nsamples=128, seqlen=256,
                  threads=None, seed=0, progress=None, log=None):
    """The quantized tensors of a GGUF file type (the true-sequential pipeline
    with the ggml method on each tensor's type). Returns a QModel (empty for
    F32 / F16)."""
    toks, ptr = _tokens(tokens if tokens is not None else np.empty(0, dtype=np.uint32))
    out = c_void_p()
    fn = require("qerr_gguf_quantize")
    with _Context(threads, seed, progress, log) as ctx:
        try:
            ctx.call(fn, ctx._h, model._h, _b(type), _b(mix) if mix else None,
                     _b(ggml_opts) if ggml_opts else None, ptr, toks.size, int(nsamples),
                     int(seqlen), byref(out))
        finally:
            q = QModel.__new__(QModel)._adopt(out) if out.value else None
    return q


def gguf_save(model, path, type, qmodel=None, mix=None):
    """Write `model` (with the tensors of `qmodel` from gguf_quantize) as a
    GGUF v3 file; nothing appears at `path` on error."""
    require("qerr_gguf_save")(model._h, qmodel._h if qmodel is not None else None, _b(type),
                              _b(mix) if mix else None, _path(path))


def export_gguf(model, path, type, tokens=None, mix=None, ggml_opts=None, nsamples=128,
                seqlen=256, threads=None, seed=0):
    """gguf_quantize + gguf_save in one call; returns the QModel."""
    q = gguf_quantize(model, tokens, type, mix, ggml_opts, nsamples, seqlen, threads, seed)
    try:
        gguf_save(model, path, type, q, mix)
    except BaseException:
        q.close()
        raise
    return q
