"""Type aliases of the public API's annotations."""
import os
from typing import Any, Callable, Optional, Union

try:
    from numpy.typing import ArrayLike
except ImportError:  # numpy < 1.20
    ArrayLike = Any  # type: ignore[misc]

PathLike = Union[str, bytes, os.PathLike]
# progress(stage, fraction) -> True to cancel; fraction is the whole call's, never decreasing
ProgressFn = Callable[[str, float], Optional[bool]]
# log(level, message); level is QERR_LOG_* (1 error .. 4 debug)
LogFn = Callable[[int, str], None]
