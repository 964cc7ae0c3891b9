"""Methods, plans, calibration sets, quantization results."""
from __future__ import annotations

import collections
import ctypes
import os
import weakref
from typing import Any, Dict, List, Optional, Tuple, Union
from ctypes import byref, c_char_p, c_double, c_int, c_int64, c_void_p

import numpy as np

from ._arrays import Tensor, out_ptr
from ._errors import E_INVALID_ARG, QerrError
from ._ffi import LOG_FN, PROGRESS_FN, lib
from ._types import ArrayLike, LogFn, PathLike, ProgressFn

_TYPE_NAMES = {1: "int", 2: "double", 3: "bool", 4: "choice"}


def _b(text):
    return text.encode("utf-8") if isinstance(text, str) else bytes(text)


def _s(raw):
    return raw.decode("utf-8", "replace") if raw is not None else None


def _path(path):
    return os.fsencode(os.fspath(path))


class _Handle:
    """Owns one libqerr handle; frees it on close(), `with` exit or collection.
    A borrowed handle (owner given) keeps its owner alive and frees nothing."""

    _free_name = ""  # the qerr_*_free function of this kind of handle
    _kind = "handle"

    def _adopt(self, handle, owner=None):
        self._handle = c_void_p(handle.value if isinstance(handle, c_void_p) else handle)
        self._owner = owner
        if owner is None:
            self._finalizer = weakref.finalize(self, getattr(lib, self._free_name), self._handle)
        else:
            self._finalizer = None
        return self

    @property
    def _h(self):
        h = getattr(self, "_handle", None)
        if h is None or not h.value:
            raise QerrError(E_INVALID_ARG, "this %s is closed" % self._kind)
        if self._owner is not None and self._owner.closed:
            raise QerrError(E_INVALID_ARG, "the owner of this %s was closed" % self._kind)
        return h

    def _release(self):
        """Give up ownership: the caller now owns the C handle."""
        h = self._h
        if self._finalizer is not None:
            self._finalizer.detach()
        self._handle = None
        return h

    def close(self) -> None:
        """Free the C object now (idempotent)."""
        if getattr(self, "_finalizer", None) is not None:
            self._finalizer()
        self._handle = None
        self._owner = None

    @property
    def closed(self) -> bool:
        h = getattr(self, "_handle", None)
        return h is None or not h.value

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---- version and methods -----------------------------------------------------
def version() -> str:
    """Version string of the loaded library, e.g. '0.1.0'."""
    return _s(lib.qerr_version_string())


def methods() -> List[str]:
    """Names of the quantization methods compiled into the library."""
    return [_s(lib.qerr_method_name(i)) for i in range(lib.qerr_method_count())]


def method_summary(name: str) -> str:
    """One-line description of a method."""
    text = lib.qerr_method_summary(_b(name))
    if text is None:
        lib.qerr_method_param_count(_b(name))  # raises E_UNKNOWN_METHOD
    return _s(text)


SCOPE_LAYER = 1
SCOPE_BLOCK = 2


def method_scopes(name: str) -> List[str]:
    """Where a method works: ["layer"] (one weight with quantize(), or each
    layer of a model), ["block"] (whole decoder blocks of a model only:
    quantize() refuses a single weight), or both (chosen by the key scope)."""
    bits = lib.qerr_method_scopes(_b(name))
    return [w for b, w in ((SCOPE_LAYER, "layer"), (SCOPE_BLOCK, "block")) if bits & b]


def _typed(kind, text):
    if kind == "int":
        return int(text)
    if kind == "double":
        return float(text)
    if kind == "bool":
        return text not in ("0", "false")
    return text


def method_params(name: str) -> List[Dict[str, Any]]:
    """Parameters of a method: a list of dicts with key, type ('int',
    'double', 'bool' or 'choice'), default (typed), min, max, choices (list
    of words, empty unless a choice) and help."""
    out = []
    for i in range(lib.qerr_method_param_count(_b(name))):
        key, dv, ch, hp = c_char_p(), c_char_p(), c_char_p(), c_char_p()
        typ, lo, hi = c_int(), c_double(), c_double()
        lib.qerr_method_param_info(_b(name), i, byref(key), byref(typ), byref(dv), byref(lo),
                                   byref(hi), byref(ch), byref(hp))
        kind = _TYPE_NAMES.get(typ.value, str(typ.value))
        choices = _s(ch.value)
        out.append({"key": _s(key.value), "type": kind, "default": _typed(kind, _s(dv.value)),
                    "min": lo.value, "max": hi.value,
                    "choices": choices.split("|") if choices else [], "help": _s(hp.value)})
    return out


# ---- plans -------------------------------------------------------------------
class Plan(_Handle):
    """A method and its settings, from a spec such as
    'gptq:bits=4,group_size=128' (or just 'gptq'); keyword arguments
    override keys of the spec."""

    _free_name = "qerr_plan_free"
    _kind = "plan"

    def __init__(self, spec: str = "rtn", **params: Any) -> None:
        h = c_void_p()
        lib.qerr_plan_parse(byref(h), _b(spec))
        self._adopt(h)
        for key, value in params.items():
            self.set(key, value)

    def set(self, key: str, value: Any) -> "Plan":
        """Set one key: bool, int, float or a word (choice parameters)."""
        if isinstance(value, bool):
            lib.qerr_plan_set(self._h, _b(key), b"1" if value else b"0")
        elif isinstance(value, (int, np.integer)):
            lib.qerr_plan_set_int(self._h, _b(key), int(value))
        elif isinstance(value, (float, np.floating)):
            lib.qerr_plan_set_double(self._h, _b(key), float(value))
        else:
            lib.qerr_plan_set(self._h, _b(key), _b(str(value)))
        return self

    def get(self, key: str) -> Any:
        """Value of `key`, typed as the method's table says."""
        kinds = {p["key"]: p["type"] for p in method_params(self.method)}
        buf = ctypes.create_string_buffer(128)
        lib.qerr_plan_get_string(self._h, _b(key), buf, len(buf))
        return _typed(kinds.get(key, "choice"), _s(buf.value))

    @property
    def method(self) -> str:
        return _s(lib.qerr_plan_method(self._h))

    def params(self) -> Dict[str, Any]:
        """Every key and its value, in table order."""
        return {p["key"]: self.get(p["key"]) for p in method_params(self.method)}

    def copy(self) -> "Plan":
        h = c_void_p()
        lib.qerr_plan_clone(self._h, byref(h))
        return Plan.__new__(Plan)._adopt(h)

    def __str__(self):
        need = ctypes.c_size_t()
        try:
            lib.qerr_plan_to_string(self._h, None, 0, byref(need))
        except QerrError:
            pass  # E_RANGE is how the length is asked for
        buf = ctypes.create_string_buffer(need.value)
        lib.qerr_plan_to_string(self._h, buf, len(buf), None)
        return _s(buf.value)

    def __repr__(self):
        return "qerr.Plan(%r)" % (str(self) if not self.closed else "<closed>")


def _as_plan(plan, params):
    if isinstance(plan, Plan):
        if not params:
            return plan, False
        p = plan.copy()
        for k, v in params.items():
            p.set(k, v)
        return p, True
    return Plan(plan, **params), True


# ---- context -----------------------------------------------------------------
class _Context(_Handle):
    """A qerr_ctx for one call: threads, seed and Python callbacks. An
    exception raised in a callback cancels the call and is re-raised."""

    _free_name = "qerr_ctx_free"
    _kind = "context"

    def __init__(self, threads=None, seed=0, progress=None, log=None, log_level=2,
                 pipeline=False):
        h = c_void_p()
        lib.qerr_ctx_create(byref(h))
        self._adopt(h)
        self.error = None
        if threads is not None:
            lib.qerr_ctx_set_threads(self._h, int(threads))
        lib.qerr_ctx_set_seed(self._h, int(seed) & 0xFFFFFFFFFFFFFFFF)
        self._progress_cb = self._log_cb = None
        if progress is not None:
            # The library reports two kinds of fraction: a pipeline's over the
            # whole model ("layer 3/6 mlp.down_proj") and, inside it, each
            # method's over its current weight ("gptq"). The callback gets
            # one fraction, the whole call's, never decreasing: in a pipeline
            # a method's stage keeps the pipeline's fraction.
            state = {"fraction": 0.0}
            names = set(methods()) if pipeline else set()

            def on_progress(user, stage, fraction):
                try:
                    text = _s(stage) or ""
                    if pipeline and text.split(" ", 1)[0] in names:
                        fraction = state["fraction"]
                    fraction = max(state["fraction"], min(1.0, float(fraction)))
                    state["fraction"] = fraction
                    return 1 if progress(text, fraction) else 0
                except BaseException as e:  # noqa: B902 - re-raised after the call
                    self.error = e
                    return 1
            self._progress_cb = PROGRESS_FN(on_progress)
            lib.qerr_ctx_set_progress(self._h, self._progress_cb, None)
        if log is not None:
            def on_log(user, level, message):
                try:
                    log(level, _s(message))
                except BaseException as e:  # noqa: B902
                    self.error = self.error or e
            self._log_cb = LOG_FN(on_log)
            lib.qerr_ctx_set_log(self._h, self._log_cb, None, int(log_level))

    def call(self, fn, *args):
        """fn(*args), re-raising an exception a callback raised meanwhile
        (even when the call itself still succeeded)."""
        try:
            result = fn(*args)
        except QerrError as e:
            err, self.error = self.error, None
            if err is not None:
                raise err from e
            raise
        err, self.error = self.error, None
        if err is not None:
            raise err
        return result


# ---- calibration sets --------------------------------------------------------
class Calibration(_Handle):
    """Statistics of one linear layer's inputs: H = sum of x^T x over rows
    (float64, in_features x in_features) and the number of rows."""

    _free_name = "qerr_calib_free"
    _kind = "calibration set"

    def __init__(self, in_features: int, reservoir: int = 0, seed: int = 0) -> None:
        h = c_void_p()
        lib.qerr_calib_create(byref(h), int(in_features))
        self._adopt(h)
        if reservoir:
            lib.qerr_calib_set_reservoir(self._h, int(reservoir), int(seed))

    @classmethod
    def from_gram(cls, H: ArrayLike, nsamples: int) -> "Calibration":
        """A set from a symmetric Gram matrix H (n x n) that summed `nsamples` rows."""
        g = np.ascontiguousarray(H, dtype=np.float64)
        if g.ndim != 2 or g.shape[0] != g.shape[1]:
            from ._errors import E_SHAPE
            raise QerrError(E_SHAPE, "H must be a square matrix, got shape %s" % (g.shape,))
        h = c_void_p()
        lib.qerr_calib_from_gram(byref(h), g.ctypes.data_as(ctypes.POINTER(c_double)),
                                 g.shape[0], int(nsamples))
        return cls.__new__(cls)._adopt(h)

    @classmethod
    def load(cls, path: PathLike) -> "Calibration":
        h = c_void_p()
        lib.qerr_calib_load(byref(h), _path(path))
        return cls.__new__(cls)._adopt(h)

    def save(self, path: PathLike) -> None:
        lib.qerr_calib_save(self._h, _path(path))

    def add(self, X: ArrayLike, dtype: Any = None) -> "Calibration":
        """Accumulate activation rows X [rows, in_features] (float32, float16,
        bfloat16 as uint16 with dtype=DTYPE_BF16; others are converted)."""
        a = np.asarray(X)
        if a.ndim == 1:
            a = a.reshape(1, -1)
        with Tensor(a, dtype, ndim=2, what="X") as t:
            lib.qerr_calib_add(self._h, t.handle)
        return self

    def merge(self, other: "Calibration") -> "Calibration":
        """self += other (Gram matrices, sample counts, reservoirs)."""
        lib.qerr_calib_merge(self._h, other._h)
        return self

    @property
    def in_features(self) -> int:
        return lib.qerr_calib_in_features(self._h)

    @property
    def nsamples(self) -> int:
        return lib.qerr_calib_nsamples(self._h)

    def gram(self) -> np.ndarray:
        """A copy of H (float64, n x n)."""
        n = self.in_features
        out = np.empty((n, n), dtype=np.float64)
        lib.qerr_calib_gram(self._h, out.ctypes.data_as(ctypes.POINTER(c_double)), n)
        return out

    def reservoir(self) -> np.ndarray:
        """A copy of the rows kept in the reservoir (float32, [k, n])."""
        rows, k = ctypes.POINTER(ctypes.c_float)(), c_int64()
        lib.qerr_calib_reservoir(self._h, byref(rows), byref(k))
        n = self.in_features
        if k.value == 0:
            return np.empty((0, n), dtype=np.float32)
        return np.ctypeslib.as_array(rows, shape=(k.value, n)).copy()

    def __repr__(self):
        if self.closed:
            return "qerr.Calibration(<closed>)"
        return "qerr.Calibration(in_features=%d, nsamples=%d)" % (self.in_features, self.nsamples)


# ---- results -----------------------------------------------------------------
Outliers = collections.namedtuple("Outliers", "rows cols values")


class Result(_Handle):
    """A quantized weight: codes, grid (scales, zeros, g_idx), outliers,
    side tensors and diagnostics. Every array property returns a fresh copy."""

    _free_name = "qerr_result_free"
    _kind = "result"

    def __init__(self):
        raise TypeError("results come from qerr.quantize() or a QModel")

    @property
    def rows(self) -> int:
        return lib.qerr_result_rows(self._h)

    @property
    def cols(self) -> int:
        return lib.qerr_result_cols(self._h)

    @property
    def shape(self) -> Tuple[int, int]:
        return (self.rows, self.cols)

    @property
    def bits(self) -> int:
        return lib.qerr_result_bits(self._h)

    @property
    def group_size(self) -> int:
        return lib.qerr_result_group_size(self._h)

    @property
    def groups(self) -> int:
        return lib.qerr_result_groups(self._h)

    @property
    def plan(self) -> str:
        """Canonical spec of the plan that made this result."""
        return _s(lib.qerr_result_plan(self._h))

    def _fill(self, fn, shape, dtype):
        out = np.empty(shape, dtype=dtype)
        fn(self._h, out_ptr(out), out.size)
        return out

    @property
    def codes(self) -> np.ndarray:
        """Integer codes, one uint8 per weight, [rows, cols]."""
        return self._fill(lib.qerr_result_codes, self.shape, np.uint8)

    @property
    def packed(self) -> np.ndarray:
        """Bit-packed codes (LSB first, rows start on a byte), [rows, bytes per row]."""
        n = lib.qerr_result_packed_size(self._h)
        out = np.empty((self.rows, n // max(self.rows, 1)), dtype=np.uint8)
        lib.qerr_result_packed(self._h, out_ptr(out), n)
        return out

    @property
    def scales(self) -> np.ndarray:
        return self._fill(lib.qerr_result_scales, (self.rows, self.groups), np.float32)

    @property
    def zeros(self) -> np.ndarray:
        return self._fill(lib.qerr_result_zeros, (self.rows, self.groups), np.int32)

    @property
    def mins(self) -> np.ndarray:
        """Per-group offsets m (w = scale * (code - zero) - m); zeros when none."""
        return self._fill(lib.qerr_result_mins, (self.rows, self.groups), np.float32)

    @property
    def g_idx(self) -> np.ndarray:
        """Group of each input column, [cols]."""
        return self._fill(lib.qerr_result_g_idx, (self.cols,), np.int32)

    @property
    def outliers(self) -> Outliers:
        """Sparse full-precision part as Outliers(rows, cols, values), COO."""
        n = lib.qerr_result_outlier_count(self._h)
        r = np.empty(n, np.int32)
        c = np.empty(n, np.int32)
        v = np.empty(n, np.float32)
        lib.qerr_result_outliers(self._h, out_ptr(r), out_ptr(c), out_ptr(v), n)
        return Outliers(r, c, v)

    @property
    def extras(self) -> Dict[str, np.ndarray]:
        """Learned side tensors by name (float32 copies)."""
        out = {}
        for i in range(lib.qerr_result_extra_count(self._h)):
            name, nd = c_char_p(), c_int()
            shape = (c_int64 * 4)()
            data = ctypes.POINTER(ctypes.c_float)()
            lib.qerr_result_extra(self._h, i, byref(name), byref(nd), shape, byref(data))
            dims = tuple(shape[:nd.value])
            count = int(np.prod(dims)) if dims else 0
            arr = np.ctypeslib.as_array(data, shape=(count,)).copy() if count else \
                np.empty(0, np.float32)
            out[_s(name.value)] = arr.reshape(dims)
        return out

    def dequantize(self) -> np.ndarray:
        """The quantized weight as float32 [rows, cols] (grid and outliers)."""
        return self._fill(lib.qerr_result_dequantize, self.shape, np.float32)

    @property
    def bits_per_weight(self) -> float:
        return lib.qerr_result_bits_per_weight(self._h)

    @property
    def diagnostics(self) -> Dict[str, float]:
        """Every diagnostic by name ('layer_error', 'damp', 'seconds', ...)."""
        out = {}
        for i in range(lib.qerr_result_diag_count(self._h)):
            name, value = c_char_p(), c_double()
            lib.qerr_result_diag_at(self._h, i, byref(name), byref(value))
            out[_s(name.value)] = value.value
        return out

    def diag(self, name: str) -> float:
        """One diagnostic (QerrError E_NOT_FOUND when absent)."""
        value = c_double()
        lib.qerr_result_diag(self._h, _b(name), byref(value))
        return value.value

    def __repr__(self):
        if self.closed:
            return "qerr.Result(<closed>)"
        return "qerr.Result(%dx%d, %r, %.3f bits/weight)" % (self.rows, self.cols, self.plan,
                                                             self.bits_per_weight)


def _result(handle, owner=None):
    return Result.__new__(Result)._adopt(handle, owner)


def quantize(weight: ArrayLike, calib: Optional[Calibration] = None,
             plan: Union[str, Plan] = "rtn", threads: Optional[int] = None, seed: int = 0,
             progress: Optional[ProgressFn] = None, log: Optional[LogFn] = None,
             dtype: Any = None, **params: Any) -> Result:
    """Quantize `weight` [out, in] with `plan` (a spec string or a Plan;
    keyword arguments override its keys). `calib` is a Calibration, or None
    for methods that need none (rtn). progress(stage, fraction) may return
    True to cancel (QerrError E_CANCELLED); log(level, message) gets the
    library's messages. Returns a Result."""
    p, own_plan = _as_plan(plan, params)
    try:
        with _Context(threads, seed, progress, log) as ctx, \
                Tensor(weight, dtype, ndim=2, what="weight") as w:
            out = c_void_p()
            try:
                ctx.call(lib.qerr_quantize, ctx._h, p._h, w.handle,
                         calib._h if calib is not None else None, byref(out))
            finally:  # owned (and freed if a callback's exception is raised) either way
                res = _result(out) if out.value else None
            return res
    finally:
        if own_plan:
            p.close()


def layer_error(weight: ArrayLike, dequantized: ArrayLike, calib: Calibration) -> float:
    """tr((W - Wq) H (W - Wq)^T) / tr(W H W^T) for the set's H."""
    out = c_double()
    with Tensor(weight, ndim=2, what="weight") as w, \
            Tensor(dequantized, ndim=2, what="dequantized") as q:
        lib.qerr_layer_error(w.handle, q.handle, calib._h, byref(out))
    return out.value
