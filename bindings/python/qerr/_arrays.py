"""numpy <-> qerr_tensor: borrow C-contiguous float32/float16 arrays (and
bfloat16 stored as uint16) without copying; convert anything else once."""
import ctypes
import weakref

import numpy as np

from ._errors import E_INVALID_ARG, E_SHAPE, QerrError
from ._ffi import lib

DTYPE_F32 = 1
DTYPE_F16 = 2
DTYPE_BF16 = 3

_DTYPE_WORDS = {"f32": DTYPE_F32, "float32": DTYPE_F32, "f16": DTYPE_F16,
                "float16": DTYPE_F16, "bf16": DTYPE_BF16, "bfloat16": DTYPE_BF16}
_NUMPY_OF = {DTYPE_F32: np.float32, DTYPE_F16: np.float16, DTYPE_BF16: np.uint16}


def _dtype_code(dtype):
    if dtype is None:
        return None
    if isinstance(dtype, str):
        code = _DTYPE_WORDS.get(dtype.lower())
    else:
        code = int(dtype) if int(dtype) in _NUMPY_OF else None
    if code is None:
        raise QerrError(E_INVALID_ARG, "unknown dtype %r (use DTYPE_F32, DTYPE_F16 or DTYPE_BF16)"
                        % (dtype,))
    return code


def prepare(array, dtype=None, ndim=None, what="array"):
    """(C-contiguous ndarray, qerr dtype code) ready to be borrowed.

    float32 and float16 pass through (zero-copy when already C-contiguous).
    bfloat16 comes as uint16 with dtype=DTYPE_BF16, or as an ml_dtypes
    bfloat16 array. Other real dtypes are converted to float32 (a copy)."""
    a = np.asarray(array)
    code = _dtype_code(dtype)
    if a.dtype.name == "bfloat16":  # ml_dtypes / jax arrays
        a = a.view(np.uint16)
        code = code or DTYPE_BF16
    if code == DTYPE_BF16:
        if a.dtype != np.uint16:
            raise QerrError(E_INVALID_ARG, "%s: dtype=DTYPE_BF16 needs the raw bits as a uint16 "
                            "array, got %s" % (what, a.dtype))
    elif code is None:
        if a.dtype == np.float16:
            code = DTYPE_F16
        elif a.dtype == np.uint16:
            raise QerrError(E_INVALID_ARG, "%s: uint16 is ambiguous; pass dtype=DTYPE_BF16 if it "
                            "holds bfloat16 bits" % what)
        elif a.dtype.kind in "fiub":
            code = DTYPE_F32
        else:
            raise QerrError(E_INVALID_ARG, "%s: cannot quantize dtype %s" % (what, a.dtype))
    a = np.ascontiguousarray(a, dtype=_NUMPY_OF[code])
    if ndim is not None and a.ndim != ndim:
        raise QerrError(E_SHAPE, "%s must be %d-D, got shape %s" % (what, ndim, a.shape))
    return a, code


class Tensor:
    """A qerr_tensor borrowing a numpy array (kept alive by this object)."""

    def __init__(self, array, dtype=None, ndim=None, what="array"):
        self.array, code = prepare(array, dtype, ndim, what)
        a = self.array
        if not 1 <= a.ndim <= 4:
            raise QerrError(E_SHAPE, "%s must have 1 to 4 dimensions, got %d" % (what, a.ndim))
        shape = (ctypes.c_int64 * a.ndim)(*a.shape)
        h = ctypes.c_void_p()
        lib.qerr_tensor_wrap(ctypes.byref(h), code, a.ndim, shape, a.ctypes.data_as(ctypes.c_void_p))
        self.handle = h
        self._free = weakref.finalize(self, lib.qerr_tensor_free, h)

    def close(self):
        self._free()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def tensor_to_numpy(handle):
    """Copy of a qerr_tensor's data as an ndarray of its own dtype."""
    ndim = lib.qerr_tensor_ndim(handle)
    shape = tuple(lib.qerr_tensor_dim(handle, i) for i in range(ndim))
    code = lib.qerr_tensor_dtype(handle)
    dt = _NUMPY_OF.get(code)
    if dt is None:
        raise QerrError(E_INVALID_ARG, "tensor has unknown dtype %d" % code)
    out = np.empty(shape, dtype=dt)
    ptr = lib.qerr_tensor_data(handle)
    if out.nbytes:
        ctypes.memmove(out.ctypes.data, ptr, out.nbytes)
    return out


def out_ptr(array):
    """void* to an ndarray the library writes into."""
    return array.ctypes.data_as(ctypes.c_void_p)
