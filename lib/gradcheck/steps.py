"""Where a central difference evaluates: the default step and the points x +- eps as stored."""

from __future__ import annotations

import numpy as np


def default_step(x: np.ndarray) -> np.ndarray:
    """The default step cbrt(eps_dtype) * max(1, |x|), float64, x's shape."""
    scale = np.cbrt(float(np.finfo(x.dtype).eps))  # in float64: cbrt rounded to float16 moves x-h
    return scale * np.maximum(1.0, np.abs(x.astype(np.float64)))


def _realised_points(x: np.ndarray, half: np.ndarray, zero_width_ok: bool = False):
    """x + half and x - half stored in x's dtype, and their exact distance.

    Returns flat (plus, minus, width): plus and minus in x's dtype, width =
    plus - minus in float64 (exact: both are values of x's dtype). Raises
    ValueError at the first element where x + half overflows and, unless
    `zero_width_ok` (a checker that divides by the nominal 2*eps), at the first
    whose two points round to the same value.
    """
    x64 = x.astype(np.float64).reshape(-1)
    flat_half = half.reshape(-1)
    # The sum is rounded to float64 first, then to x's dtype: the same two
    # roundings as converting each element on its own.
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow to inf is reported below, naming x
        shifted = np.add(x64, flat_half)
        plus = shifted.astype(x.dtype)
        minus = np.subtract(x64, flat_half, out=shifted).astype(x.dtype)
        # Both operands are cast to float64 before subtracting, so width is exact.
        width = np.subtract(plus, minus, dtype=np.float64)
    if not np.all(np.isfinite(width)):
        i = int(np.flatnonzero(~np.isfinite(width))[0])
        raise ValueError(
            f"x[{i}] = {float(x.reshape(-1)[i]):g} is too close to the largest {x.dtype} value for a step of "
            f"{flat_half[i]:g}: x+eps overflows to inf; pass a smaller eps or rescale x"
        )
    if not zero_width_ok and not np.all(width):
        i = int(np.flatnonzero(width == 0.0)[0])
        original = x.reshape(-1)[i]
        raise ValueError(
            f"eps={flat_half[i]:g} is too small for {x.dtype} at index {i} "
            f"(x={float(original):g}): x+eps and x-eps round to the same value; "
            f"use eps >= {float(np.spacing(np.abs(original))):.3g}"
        )
    return plus, minus, width

