"""Model-level API (qerr/model.h): token files, float models, perplexity,
layer-by-layer quantization of a whole model, quantized-model containers.

These functions exist only in builds that include the model layers (lib/llama,
lib/pipeline); on another build each raises QerrError(E_UNSUPPORTED) and has_model_api() is False."""
from __future__ import annotations

import collections
import ctypes
from typing import Dict, Iterator, List, Optional, Tuple, Union
from ctypes import byref, c_double, c_int64, c_uint32, c_void_p

import numpy as np

from ._arrays import tensor_to_numpy
from ._core import _b, _Context, _Handle, _path, _result, _s
from ._errors import E_INVALID_ARG, E_NOT_FOUND, QerrError
from ._ffi import lib, missing, require
from ._core import Plan, Result
from ._types import ArrayLike, LogFn, PathLike, ProgressFn

Perplexity = collections.namedtuple("Perplexity", "ppl mean_nll scored")

CONFIG_INT_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers",
                   "num_attention_heads", "num_key_value_heads", "vocab_size",
                   "tie_word_embeddings", "head_dim", "attention_bias", "mlp_bias",
                   "qk_norm", "sliding_window")
CONFIG_DOUBLE_KEYS = ("rope_theta", "rms_norm_eps", "rope_scaling.factor",
                      "rope_scaling.low_freq_factor", "rope_scaling.high_freq_factor",
                      "rope_scaling.original_max_position_embeddings")


def has_model_api() -> bool:
    """True when the loaded library has every function of qerr/model.h."""
    return not missing()


def _tokens(tokens):
    a = np.asarray(tokens)
    if a.ndim != 1:
        raise QerrError(E_INVALID_ARG, "tokens must be 1-D, got shape %s" % (a.shape,))
    if a.dtype != np.uint32:
        if a.dtype.kind not in "iu":
            raise QerrError(E_INVALID_ARG, "tokens must be integers, got %s" % a.dtype)
        if a.size and (a.min() < 0 or a.max() > 0xFFFFFFFF):
            raise QerrError(E_INVALID_ARG, "token ids must fit in uint32")
    a = np.ascontiguousarray(a, dtype=np.uint32)
    return a, a.ctypes.data_as(ctypes.POINTER(c_uint32))


def read_tokens(path: PathLike) -> np.ndarray:
    """A token file (little-endian uint32 ids, no header) as a uint32 array."""
    ptr, count = ctypes.POINTER(c_uint32)(), c_int64()
    require("qerr_tokens_read")(_path(path), byref(ptr), byref(count))
    try:
        if count.value == 0:
            return np.empty(0, dtype=np.uint32)
        return np.ctypeslib.as_array(ptr, shape=(count.value,)).copy()
    finally:
        lib.qerr_free(ptr)


class QModel(_Handle):
    """Named quantization results plus string metadata; saved as one
    compressed, checksummed file."""

    _free_name = "qerr_qmodel_free"
    _kind = "quantized model"

    def __init__(self):
        h = c_void_p()
        require("qerr_qmodel_create")(byref(h))
        self._adopt(h)

    @classmethod
    def load(cls, path: PathLike) -> "QModel":
        h = c_void_p()
        require("qerr_qmodel_load")(byref(h), _path(path))
        return cls.__new__(cls)._adopt(h)

    def save(self, path: PathLike) -> None:
        lib.qerr_qmodel_save(self._h, _path(path))

    def add(self, name: str, result: Result) -> None:
        """Store `result` under `name`. The QModel takes the C object over:
        afterwards `result` is a view that lives as long as this QModel."""
        h = result._release()
        try:
            lib.qerr_qmodel_add(self._h, _b(name), h)
        except QerrError:
            result._handle = None  # the library freed it
            raise
        result._adopt(h, owner=self)

    def names(self) -> List[str]:
        return [_s(lib.qerr_qmodel_name(self._h, i)) for i in range(len(self))]

    def __len__(self) -> int:
        return lib.qerr_qmodel_count(self._h)

    def __contains__(self, name: object) -> bool:
        return name in self.names()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __getitem__(self, name: str) -> Result:
        """The result stored under `name` (a view kept valid by this QModel)."""
        out = c_void_p()
        try:
            lib.qerr_qmodel_get(self._h, _b(name), byref(out))
        except QerrError as e:
            if e.code == E_NOT_FOUND:
                raise KeyError(name) from e
            raise
        return _result(out, owner=self)

    def items(self) -> List[Tuple[str, Result]]:
        return [(n, self[n]) for n in self.names()]

    def set_meta(self, key: str, value: str) -> None:
        lib.qerr_qmodel_set_meta(self._h, _b(key), _b(value))

    def meta(self, key: str, default: Optional[str] = None) -> Optional[str]:
        raw = lib.qerr_qmodel_meta(self._h, _b(key))
        return _s(raw) if raw is not None else default

    def __repr__(self):
        return "qerr.QModel(%d tensors)" % len(self) if not self.closed else \
            "qerr.QModel(<closed>)"


class Model(_Handle):
    """A LLaMA-family model in Hugging Face layout, held in float32."""

    _free_name = "qerr_model_free"
    _kind = "model"

    def __init__(self):
        raise TypeError("use qerr.Model.load(directory)")

    @classmethod
    def load(cls, directory: PathLike) -> "Model":
        h = c_void_p()
        require("qerr_model_load")(byref(h), _path(directory))
        return cls.__new__(cls)._adopt(h)

    def config_value(self, key: str) -> Union[int, float]:
        """A config.json value: int keys as int, the others as float."""
        if key in CONFIG_DOUBLE_KEYS:
            v = c_double()
            lib.qerr_model_config_double(self._h, _b(key), byref(v))
            return v.value
        v = c_int64()
        lib.qerr_model_config_int(self._h, _b(key), byref(v))
        return v.value

    @property
    def config(self) -> Dict[str, Union[int, float]]:
        return {k: self.config_value(k) for k in CONFIG_INT_KEYS + CONFIG_DOUBLE_KEYS}

    def tensor_names(self) -> List[str]:
        n = lib.qerr_model_tensor_count(self._h)
        return [_s(lib.qerr_model_tensor_name(self._h, i)) for i in range(n)]

    def tensor(self, name: str) -> np.ndarray:
        """A copy of a weight, by its Hugging Face name."""
        t = c_void_p()
        lib.qerr_model_tensor(self._h, _b(name), byref(t))
        return tensor_to_numpy(t)

    def evaluate(self, tokens: ArrayLike, ctx_len: int, max_windows: int = 0,
                 threads: Optional[int] = None) -> Perplexity:
        """Perplexity(ppl, mean_nll, scored) over non-overlapping windows."""
        toks, ptr = _tokens(tokens)
        ppl, nll, scored = c_double(), c_double(), c_int64()
        with _Context(threads) as ctx:
            ctx.call(lib.qerr_model_perplexity, ctx._h, self._h, ptr, toks.size, int(ctx_len),
                     int(max_windows), byref(ppl), byref(nll), byref(scored))
        return Perplexity(ppl.value, nll.value, scored.value)

    def perplexity(self, tokens: ArrayLike, ctx_len: int, max_windows: int = 0,
                   threads: Optional[int] = None) -> float:
        """exp(mean NLL) over floor(len/ctx_len) windows of ctx_len tokens."""
        return self.evaluate(tokens, ctx_len, max_windows, threads).ppl

    def apply(self, qmodel: QModel) -> "Model":
        """Replace this model's weights by the dequantized tensors of `qmodel`."""
        lib.qerr_model_apply(self._h, qmodel._h)
        return self

    def export_gptq(self, qmodel: QModel, directory: PathLike,
                    checkpoint_format: str = "gptq") -> PathLike:
        """Write this model with the linear layers quantized in `qmodel` as a
        GPTQ checkpoint directory (transformers, vLLM, ExLlamaV2, GPTQModel);
        checkpoint_format "gptq" (v1) or "gptq_v2". Model.load reads it back."""
        require("qerr_export_gptq")(self._h, qmodel._h, _path(directory),
                                     _b(checkpoint_format))
        return directory

    def quantize(self, tokens: ArrayLike, plan: Union[str, Plan],
                 overrides: Optional[str] = None, nsamples: int = 128, seqlen: int = 256,
                 threads: Optional[int] = None, seed: int = 0,
                 progress: Optional[ProgressFn] = None, log: Optional[LogFn] = None) -> QModel:
        """See quantize_model()."""
        return quantize_model(self, tokens, plan, overrides, nsamples, seqlen, threads, seed,
                              progress, log)


def quantize_model(model: Model, tokens: ArrayLike, plan: Union[str, Plan],
                   overrides: Optional[str] = None, nsamples: int = 128, seqlen: int = 256,
                   threads: Optional[int] = None, seed: int = 0,
                   progress: Optional[ProgressFn] = None,
                   log: Optional[LogFn] = None) -> QModel:
    """Calibrate and quantize every linear layer of `model` in order, with
    `plan` as the default spec and `overrides` a ';'-separated list of
    'glob=spec' (spec may be 'float'). Calibration windows (nsamples x
    seqlen tokens) are drawn from `tokens` with `seed`. Returns a QModel."""
    toks, ptr = _tokens(tokens)
    out = c_void_p()
    fn = require("qerr_model_quantize")
    with _Context(threads, seed, progress, log, pipeline=True) as ctx:
        try:
            ctx.call(fn, ctx._h, model._h, _b(str(plan)), _b(overrides) if overrides else None,
                     ptr, toks.size, int(nsamples), int(seqlen), byref(out))
        finally:  # owned (and freed if a callback's exception is raised) either way
            q = QModel.__new__(QModel)._adopt(out) if out.value else None
    return q
