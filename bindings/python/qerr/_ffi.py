"""ctypes declarations of every function in qerr.h and qerr/model.h, and
the library itself, opened on first use.

Every signature is declared (ctypes' default int restype would truncate
pointers). Functions returning a status get an errcheck that raises
QerrError. Model-level functions may be absent from an older or partial
build: they are then left out of `lib` and `missing` names them.
"""
from __future__ import annotations

import ctypes
import threading
from typing import Any, Dict, List, Optional
from ctypes import (POINTER, c_char_p, c_double, c_int, c_int64, c_size_t,
                    c_uint, c_uint32, c_uint64, c_void_p)

from . import _loader
from ._errors import E_UNSUPPORTED, QerrError, bind, check_status
from ._version import ABI_MAJOR

H = c_void_p  # every opaque handle
PH = POINTER(c_void_p)  # out-parameter for a handle
S = "status"  # marker: int status, raise on < 0

LOG_FN = ctypes.CFUNCTYPE(None, c_void_p, c_int, c_char_p)
PROGRESS_FN = ctypes.CFUNCTYPE(c_int, c_void_p, c_char_p, c_double)

_SIGNATURES = {
    # version and errors
    "qerr_version_number": (c_uint, []),
    "qerr_version_string": (c_char_p, []),
    "qerr_status_string": (c_char_p, [c_int]),
    "qerr_last_error": (c_char_p, []),
    # context
    "qerr_ctx_create": (S, [PH]),
    "qerr_ctx_free": (None, [H]),
    "qerr_ctx_set_threads": (S, [H, c_int]),
    "qerr_ctx_threads": (c_int, [H]),
    "qerr_ctx_set_seed": (S, [H, c_uint64]),
    "qerr_ctx_seed": (c_uint64, [H]),
    "qerr_ctx_set_log": (S, [H, LOG_FN, c_void_p, c_int]),
    "qerr_ctx_set_progress": (S, [H, PROGRESS_FN, c_void_p]),
    # tensors
    "qerr_dtype_size": (c_size_t, [c_int]),
    "qerr_dtype_name": (c_char_p, [c_int]),
    "qerr_tensor_create": (S, [PH, c_int, c_int, POINTER(c_int64)]),
    "qerr_tensor_from_data": (S, [PH, c_int, c_int, POINTER(c_int64), c_void_p]),
    "qerr_tensor_wrap": (S, [PH, c_int, c_int, POINTER(c_int64), c_void_p]),
    "qerr_tensor_free": (None, [H]),
    "qerr_tensor_ndim": (c_int, [H]),
    "qerr_tensor_dim": (c_int64, [H, c_int]),
    "qerr_tensor_dtype": (c_int, [H]),
    "qerr_tensor_numel": (c_int64, [H]),
    "qerr_tensor_nbytes": (c_size_t, [H]),
    "qerr_tensor_data": (c_void_p, [H]),
    "qerr_tensor_to_f32": (S, [H, PH]),
    # calibration sets
    "qerr_calib_create": (S, [PH, c_int64]),
    "qerr_calib_free": (None, [H]),
    "qerr_calib_add": (S, [H, H]),
    "qerr_calib_add_f32": (S, [H, POINTER(ctypes.c_float), c_int64]),
    "qerr_calib_from_gram": (S, [PH, POINTER(c_double), c_int64, c_int64]),
    "qerr_calib_merge": (S, [H, H]),
    "qerr_calib_set_reservoir": (S, [H, c_int64, c_uint64]),
    "qerr_calib_in_features": (c_int64, [H]),
    "qerr_calib_nsamples": (c_int64, [H]),
    "qerr_calib_gram": (S, [H, POINTER(c_double), c_int64]),
    "qerr_calib_reservoir": (S, [H, POINTER(POINTER(ctypes.c_float)), POINTER(c_int64)]),
    "qerr_calib_save": (S, [H, c_char_p]),
    "qerr_calib_load": (S, [PH, c_char_p]),
    # methods and plans
    "qerr_method_count": (c_int, []),
    "qerr_method_name": (c_char_p, [c_int]),
    "qerr_method_summary": (c_char_p, [c_char_p]),
    "qerr_method_param_count": (S, [c_char_p]),
    "qerr_method_scopes": (S, [c_char_p]),
    "qerr_method_param_info": (S, [c_char_p, c_int, POINTER(c_char_p), POINTER(c_int),
                                   POINTER(c_char_p), POINTER(c_double), POINTER(c_double),
                                   POINTER(c_char_p), POINTER(c_char_p)]),
    "qerr_plan_create": (S, [PH, c_char_p]),
    "qerr_plan_parse": (S, [PH, c_char_p]),
    "qerr_plan_clone": (S, [H, PH]),
    "qerr_plan_free": (None, [H]),
    "qerr_plan_method": (c_char_p, [H]),
    "qerr_plan_set_int": (S, [H, c_char_p, c_int64]),
    "qerr_plan_set_double": (S, [H, c_char_p, c_double]),
    "qerr_plan_set": (S, [H, c_char_p, c_char_p]),
    "qerr_plan_get_int": (S, [H, c_char_p, POINTER(c_int64)]),
    "qerr_plan_get_double": (S, [H, c_char_p, POINTER(c_double)]),
    "qerr_plan_get_string": (S, [H, c_char_p, c_char_p, c_size_t]),
    "qerr_plan_to_string": (S, [H, c_char_p, c_size_t, POINTER(c_size_t)]),
    # quantization and results
    "qerr_quantize": (S, [H, H, H, H, PH]),
    "qerr_result_free": (None, [H]),
    "qerr_result_rows": (c_int64, [H]),
    "qerr_result_cols": (c_int64, [H]),
    "qerr_result_bits": (c_int, [H]),
    "qerr_result_group_size": (c_int64, [H]),
    "qerr_result_groups": (c_int64, [H]),
    "qerr_result_plan": (c_char_p, [H]),
    "qerr_result_codes": (S, [H, c_void_p, c_size_t]),
    "qerr_result_packed_size": (c_size_t, [H]),
    "qerr_result_packed": (S, [H, c_void_p, c_size_t]),
    "qerr_result_scales": (S, [H, c_void_p, c_size_t]),
    "qerr_result_zeros": (S, [H, c_void_p, c_size_t]),
    "qerr_result_mins": (S, [H, c_void_p, c_size_t]),
    "qerr_result_g_idx": (S, [H, c_void_p, c_size_t]),
    "qerr_result_outlier_count": (c_int64, [H]),
    "qerr_result_outliers": (S, [H, c_void_p, c_void_p, c_void_p, c_size_t]),
    "qerr_result_extra_count": (c_int, [H]),
    "qerr_result_extra": (S, [H, c_int, POINTER(c_char_p), POINTER(c_int), POINTER(c_int64),
                              POINTER(POINTER(ctypes.c_float))]),
    "qerr_result_dequantize": (S, [H, c_void_p, c_size_t]),
    "qerr_result_bits_per_weight": (c_double, [H]),
    "qerr_result_diag": (S, [H, c_char_p, POINTER(c_double)]),
    "qerr_result_diag_count": (c_int, [H]),
    "qerr_result_diag_at": (S, [H, c_int, POINTER(c_char_p), POINTER(c_double)]),
    "qerr_layer_error": (S, [H, H, H, POINTER(c_double)]),
    # model level (qerr/model.h)
    "qerr_tokens_read": (S, [c_char_p, POINTER(POINTER(c_uint32)), POINTER(c_int64)]),
    "qerr_free": (None, [c_void_p]),
    "qerr_model_load": (S, [PH, c_char_p]),
    "qerr_model_free": (None, [H]),
    "qerr_model_config_int": (S, [H, c_char_p, POINTER(c_int64)]),
    "qerr_model_config_double": (S, [H, c_char_p, POINTER(c_double)]),
    "qerr_model_tensor_count": (c_int, [H]),
    "qerr_model_tensor_name": (c_char_p, [H, c_int]),
    "qerr_model_tensor": (S, [H, c_char_p, PH]),
    "qerr_model_perplexity": (S, [H, H, POINTER(c_uint32), c_int64, c_int64, c_int64,
                                  POINTER(c_double), POINTER(c_double), POINTER(c_int64)]),
    "qerr_qmodel_create": (S, [PH]),
    "qerr_qmodel_free": (None, [H]),
    "qerr_qmodel_add": (S, [H, c_char_p, H]),
    "qerr_qmodel_count": (c_int, [H]),
    "qerr_qmodel_name": (c_char_p, [H, c_int]),
    "qerr_qmodel_get": (S, [H, c_char_p, PH]),
    "qerr_qmodel_set_meta": (S, [H, c_char_p, c_char_p]),
    "qerr_qmodel_meta": (c_char_p, [H, c_char_p]),
    "qerr_qmodel_save": (S, [H, c_char_p]),
    "qerr_qmodel_load": (S, [PH, c_char_p]),
    "qerr_model_quantize": (S, [H, H, c_char_p, c_char_p, POINTER(c_uint32), c_int64, c_int64,
                                c_int64, PH]),
    "qerr_model_apply": (S, [H, H]),
    # export (qerr/export.h)
    "qerr_gguf_tensor_type": (S, [H, c_char_p, c_char_p, c_char_p, c_char_p, c_size_t]),
    "qerr_gguf_quantize": (S, [H, H, c_char_p, c_char_p, c_char_p, POINTER(c_uint32), c_int64,
                               c_int64, c_int64, PH]),
    "qerr_gguf_save": (S, [H, H, c_char_p, c_char_p, c_char_p]),
    "qerr_export_gptq": (S, [H, H, c_char_p, c_char_p]),
    "qerr_export_gptq_ctx": (S, [H, H, H, c_char_p, c_char_p]),
    # tokenizers (qerr/tokenizer.h)
    "qerr_tokenizer_load": (S, [PH, c_char_p]),
    "qerr_tokenizer_free": (None, [H]),
    "qerr_tokenizer_vocab_size": (c_int64, [H]),
    "qerr_tokenizer_bos_id": (c_int64, [H]),
    "qerr_tokenizer_eos_id": (c_int64, [H]),
    "qerr_tokenizer_encode": (S, [H, c_char_p, c_size_t, ctypes.c_uint,
                                  POINTER(POINTER(c_uint32)), POINTER(c_int64)]),
    "qerr_tokenizer_decode": (S, [H, POINTER(c_uint32), c_int64, ctypes.c_uint,
                                  POINTER(c_void_p), POINTER(c_size_t)]),
    "qerr_tokenizer_token_text": (c_void_p, [H, c_uint32, POINTER(c_size_t),
                                             POINTER(c_int)]),
    "qerr_tokenizer_encode_file": (S, [H, c_char_p, ctypes.c_uint, POINTER(POINTER(c_uint32)),
                                       POINTER(c_int64), POINTER(c_int64)]),
}

# Functions the core needs; their absence means this is not libqerr.
_MODEL_PREFIXES = ("qerr_model_", "qerr_qmodel_", "qerr_tokens_", "qerr_free", "qerr_gguf_",
                   "qerr_export_", "qerr_tokenizer_")


class _Lib:
    """Namespace holding the declared foreign functions."""


def _declare(cdll, path):
    lib = _Lib()
    missing = []
    for name, (restype, argtypes) in _SIGNATURES.items():
        try:
            fn = getattr(cdll, name)
        except AttributeError:
            if name.startswith(_MODEL_PREFIXES):
                missing.append(name)
                continue
            raise _loader.LibraryNotFound("%s lacks %s: not a usable libqerr" % (path, name))
        if restype == S:
            fn.restype = c_int
            fn.errcheck = check_status
        else:
            fn.restype = restype
        fn.argtypes = argtypes
        setattr(lib, name, fn)
    return lib, missing


def check_abi(number: int, major: int = ABI_MAJOR, where: Optional[str] = None) -> None:
    """Refuse a library whose major version is not the package's."""
    if number // 10000 != major:
        raise _loader.LibraryNotFound(
            "%s is libqerr %d.%d.%d (ABI major %d) but this package needs ABI major %d"
            % (where or _state["path"], number // 10000, number // 100 % 100, number % 100,
               number // 10000, major))


# The library is opened on first use, not at import: `import qerr` and
# qerr.__version__ work on a machine without it, and the first call that
# needs it raises LibraryNotFound saying where it looked.
_state: Dict[str, Any] = {"lib": None, "path": None, "missing": None, "version": None}
_lock = threading.Lock()


def ensure() -> _Lib:
    """The declared library, loading it on the first call."""
    lib = _state["lib"]
    if lib is not None:
        return lib
    with _lock:
        if _state["lib"] is None:
            cdll, path = _loader.load()
            declared, missing = _declare(cdll, path)
            version = declared.qerr_version_number()
            check_abi(version, where=path)
            bind(declared.qerr_last_error, declared.qerr_status_string)
            _state.update(path=path, missing=missing, version=version, lib=declared)
    return _state["lib"]


class _LazyLib:
    """Stands for the library: the first attribute read loads it."""

    def __getattr__(self, name: str) -> Any:
        return getattr(ensure(), name)


lib: Any = _LazyLib()


def path() -> str:
    """Path (or soname) of the loaded library; loads it if needed."""
    ensure()
    return _state["path"]


def missing() -> List[str]:
    """Model-level functions the loaded library lacks."""
    ensure()
    return list(_state["missing"])


def version_number() -> int:
    ensure()
    return _state["version"]


def require(name: str) -> Any:
    """The foreign function `name`, or QerrError(E_UNSUPPORTED) if this build
    of the library lacks it (the model API of a partial build)."""
    fn = getattr(ensure(), name, None)
    if fn is None:
        raise QerrError(E_UNSUPPORTED, "%s is not in %s (library built without it)"
                        % (name, _state["path"]))
    return fn
