"""QerrError: the one exception libqerr failures raise, with the status code
and the library's message for the failing call."""

# Status codes of qerr.h (stable numbers).
OK = 0
E_INVALID_ARG = -1
E_SHAPE = -2
E_NOMEM = -3
E_NONFINITE = -4
E_NOT_PD = -5
E_IO = -6
E_FORMAT = -7
E_UNKNOWN_METHOD = -8
E_UNKNOWN_KEY = -9
E_RANGE = -10
E_UNSUPPORTED = -11
E_CANCELLED = -12
E_CHECKSUM = -13
E_ABI = -14
E_INTERNAL = -15
E_NOT_FOUND = -16
E_NUMERIC = -17

_NAMES = {v: k for k, v in globals().items() if k.startswith("E_")}

_last_error = None  # set by _ffi once the library is loaded
_status_string = None


class QerrError(Exception):
    """A libqerr call failed. `code` is the negative status (compare with
    qerr.E_SHAPE etc.), `message` the library's explanation."""

    def __init__(self, code, message):
        super().__init__(code, message)
        self.code = code
        self.message = message

    @property
    def name(self):
        """Symbolic name of the code, e.g. 'E_SHAPE'."""
        return _NAMES.get(self.code, "E_%d" % self.code)

    def __str__(self):
        return "%s [%s]" % (self.message, self.name)


def bind(last_error, status_string):
    global _last_error, _status_string
    _last_error, _status_string = last_error, status_string


def error_for(code, fallback=""):
    """QerrError for `code` carrying the calling thread's last message."""
    msg = _last_error().decode("utf-8", "replace") if _last_error else ""
    if not msg:
        msg = fallback or (_status_string(code).decode() if _status_string else "error")
    return QerrError(code, msg)


def check_status(result, func, args):
    """ctypes errcheck: a negative status becomes QerrError."""
    if result < 0:
        raise error_for(result, "%s failed" % getattr(func, "__name__", "libqerr call"))
    return result
