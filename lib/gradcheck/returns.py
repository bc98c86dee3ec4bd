"""What forward and backward return: real numeric arrays of the expected shape, or a clear error."""

from __future__ import annotations

import numpy as np


def _describe(value) -> str:
    if value is None:
        return "None"
    array = np.asarray(value) if not isinstance(value, str) else None
    if array is None or array.dtype.kind in "OUSV":
        return f"{type(value).__name__} {str(value)[:60]!r}" if array is None or array.ndim == 0 else \
            f"an array of dtype {array.dtype}"
    return f"an array of dtype {array.dtype} and shape {array.shape}"


def numeric_output(returned, who: str) -> np.ndarray:
    """`returned` as a real numeric ndarray, or TypeError naming `who` and what it returned."""
    array = None if returned is None or isinstance(returned, str) else np.asarray(returned)
    if array is None or array.dtype.kind not in "biuf":
        kind = "complex" if array is not None and array.dtype.kind == "c" else "non-numeric"
        raise TypeError(f"{who} must return a real numeric array; it returned {kind} {_describe(returned)}")
    return array


def check_returned(returned, shape: tuple, who: str, like: str) -> np.ndarray:
    """A real numeric array of `shape`, else an error naming `who`, what it returned and `like`'s shape."""
    array = numeric_output(returned, who)
    if array.shape != shape:
        raise ValueError(f"{who} must return an array of {like}'s shape {shape}; it returned {_describe(array)}")
    return array
