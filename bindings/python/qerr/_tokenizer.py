"""Tokenizers (qerr/tokenizer.h): a model's own tokenizer, read from its
tokenizer.json (+ tokenizer_config.json) or a llama2.c tokenizer.bin, giving
the ids of Hugging Face's tokenizers.

    tok = qerr.Tokenizer("path/to/model")
    ids = tok.encode("Hello world")          # BOS per tokenizer_config.json
    text = tok.decode(ids, skip_special=True)
"""
from __future__ import annotations

import ctypes
from ctypes import byref, c_int, c_int64, c_size_t, c_uint32, c_void_p
from typing import Optional, Tuple, Union

import numpy as np

from ._core import _b, _Handle, _path
from ._ffi import lib, require
from ._model import _tokens
from ._types import ArrayLike, PathLike

ADD_SPECIAL = 1    # QERR_TOKENIZE_ADD_SPECIAL
PARSE_SPECIAL = 2  # QERR_TOKENIZE_PARSE_SPECIAL
SKIP_SPECIAL = 1   # QERR_DETOKENIZE_SKIP_SPECIAL


def _ids_array(ptr, count: int) -> np.ndarray:
    try:
        if count == 0:
            return np.empty(0, dtype=np.uint32)
        return np.ctypeslib.as_array(ptr, shape=(count,)).copy()
    finally:
        lib.qerr_free(ptr)


def _flags(add_special: bool, parse_special: bool) -> int:
    return (ADD_SPECIAL if add_special else 0) | (PARSE_SPECIAL if parse_special else 0)


class Tokenizer(_Handle):
    """A tokenizer loaded from a model directory, a tokenizer.json file or a
    llama2.c tokenizer.bin. Unsupported kinds raise QerrError(E_UNSUPPORTED)
    naming what is not supported. Read-only once loaded: threads may share it."""

    _free_name = "qerr_tokenizer_free"
    _kind = "tokenizer"

    def __init__(self, path: PathLike):
        out = c_void_p()
        require("qerr_tokenizer_load")(byref(out), _path(path))
        self._adopt(out)

    @classmethod
    def load(cls, path: PathLike) -> "Tokenizer":
        return cls(path)

    @property
    def vocab_size(self) -> int:
        """Number of ids (largest id + 1, added tokens included)."""
        return int(require("qerr_tokenizer_vocab_size")(self._h))

    def __len__(self) -> int:
        return self.vocab_size

    @property
    def bos_id(self) -> Optional[int]:
        v = int(require("qerr_tokenizer_bos_id")(self._h))
        return v if v >= 0 else None

    @property
    def eos_id(self) -> Optional[int]:
        v = int(require("qerr_tokenizer_eos_id")(self._h))
        return v if v >= 0 else None

    def encode(self, text: Union[str, bytes], add_special: bool = True,
               parse_special: bool = True) -> np.ndarray:
        """Token ids (uint32) of `text` (str, or UTF-8 bytes; invalid sequences
        read as U+FFFD). add_special: BOS/EOS by the tokenizer's rules;
        parse_special: special tokens written in the text become their ids
        (both Hugging Face's defaults)."""
        data = _b(text)
        ptr, count = ctypes.POINTER(c_uint32)(), c_int64()
        require("qerr_tokenizer_encode")(self._h, data, len(data),
                                         _flags(add_special, parse_special), byref(ptr),
                                         byref(count))
        return _ids_array(ptr, count.value)

    def encode_file(self, path: PathLike, add_special: bool = True,
                    parse_special: bool = True) -> Tuple[np.ndarray, int]:
        """(ids, text bytes) of a text file: plain UTF-8 is one document, JSON
        Lines (a "text" field per line) one document per line."""
        ptr, count, nbytes = ctypes.POINTER(c_uint32)(), c_int64(), c_int64()
        require("qerr_tokenizer_encode_file")(self._h, _path(path),
                                              _flags(add_special, parse_special), byref(ptr),
                                              byref(count), byref(nbytes))
        return _ids_array(ptr, count.value), int(nbytes.value)

    def decode_bytes(self, ids: ArrayLike, skip_special: bool = False) -> bytes:
        """The bytes the ids stand for (a cut inside a character stays cut)."""
        arr, ptr = _tokens(ids)
        out, n = c_void_p(), c_size_t()
        require("qerr_tokenizer_decode")(self._h, ptr, arr.size,
                                         SKIP_SPECIAL if skip_special else 0, byref(out), byref(n))
        try:
            return ctypes.string_at(out, n.value)
        finally:
            lib.qerr_free(out)

    def decode(self, ids: ArrayLike, skip_special: bool = False) -> str:
        """Decoded text; bytes that are not valid UTF-8 become U+FFFD."""
        return self.decode_bytes(ids, skip_special).decode("utf-8", "replace")

    def token_text(self, token_id: int) -> Tuple[bytes, bool]:
        """(the bytes token `token_id` stands for, whether it is special)."""
        n, special = c_size_t(), c_int()
        p = require("qerr_tokenizer_token_text")(self._h, int(token_id), byref(n), byref(special))
        if not p:
            raise IndexError("token id %d is outside the vocabulary of %d"
                             % (token_id, self.vocab_size))
        return ctypes.string_at(p, n.value), bool(special.value)

    def __repr__(self):
        if getattr(self, "_handle", None) is None or not self._handle.value:
            return "<qerr.Tokenizer (closed)>"
        return "<qerr.Tokenizer vocab=%d bos=%s eos=%s>" % (self.vocab_size, self.bos_id,
                                                            self.eos_id)
