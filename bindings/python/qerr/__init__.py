"""Python bindings of libqerr (post-training quantization of LLM weights).

Pure ctypes. The shared library is opened on the first call that needs it
(importing qerr and reading qerr.__version__ never need it), from
$QERR_LIBRARY, the copy bundled in the wheel, or the system (see
qerr._loader); qerr.LibraryNotFound says where it looked.

    import numpy as np, qerr
    c = qerr.Calibration(W.shape[1]); c.add(X)
    r = qerr.quantize(W, c, "gptq:bits=4,group_size=128", threads=2)
    Wq = r.dequantize(); print(r.bits_per_weight, r.diagnostics)
"""
from ._version import __version__
from ._errors import (E_ABI, E_CANCELLED, E_CHECKSUM, E_FORMAT, E_INTERNAL, E_INVALID_ARG,
                      E_IO, E_NOMEM, E_NONFINITE, E_NOT_FOUND, E_NOT_PD, E_NUMERIC, E_RANGE,
                      E_SHAPE, E_UNKNOWN_KEY, E_UNKNOWN_METHOD, E_UNSUPPORTED, OK, QerrError)
from ._loader import LibraryNotFound
from ._ffi import path as _library_path
from ._arrays import DTYPE_BF16, DTYPE_F16, DTYPE_F32
from ._core import (Calibration, Outliers, Plan, Result, layer_error, method_params,
                    method_scopes, method_summary, methods, quantize, version)
from ._model import (Model, Perplexity, QModel, has_model_api, quantize_model, read_tokens)
from ._export import export_gguf, gguf_quantize, gguf_save, gguf_tensor_type
from ._tokenizer import Tokenizer

__all__ = [
    "__version__", "version", "library_path", "QerrError", "LibraryNotFound",
    "DTYPE_F32", "DTYPE_F16", "DTYPE_BF16", "methods", "method_summary", "method_params",
    "method_scopes",
    "Plan", "Calibration", "Result", "Outliers", "quantize", "layer_error",
    "Model", "QModel", "Perplexity", "quantize_model", "read_tokens", "has_model_api",
    "gguf_quantize", "gguf_save", "gguf_tensor_type", "export_gguf", "Tokenizer",
    "OK", "E_INVALID_ARG", "E_SHAPE", "E_NOMEM", "E_NONFINITE", "E_NOT_PD", "E_IO", "E_FORMAT",
    "E_UNKNOWN_METHOD", "E_UNKNOWN_KEY", "E_RANGE", "E_UNSUPPORTED", "E_CANCELLED",
    "E_CHECKSUM", "E_ABI", "E_INTERNAL", "E_NOT_FOUND", "E_NUMERIC",
]


def __getattr__(name):
    # qerr.library_path: read lazily, it loads the library
    if name == "library_path":
        return _library_path()
    raise AttributeError("module 'qerr' has no attribute %r" % name)
