"""The two teaching tools of the notebooks: a numerical Jacobian and the relative error.

One definition of each, for every notebook: the Jacobian's index convention is
`J[j, i] = d out_j / d x_i` (row j: an output, column i: an input), and the
relative error of an analytical value `a` against a numerical one `n` is
`|a - n| / max(|a|, |n|)`, 0 where both are 0. It is symmetric, lies in
[0, 2] (2 for opposite signs), and is 1 for a gradient where there should be
none or none where there should be one.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lib.gradcheck.steps import default_step


def numerical_jacobian(f: Callable[[np.ndarray], np.ndarray], at, eps: float | None = None) -> np.ndarray:
    """J[j, i] = d f(at)_j / d at_i by central differences in float64; `at` is never changed.

    Args:
        f: the function, taking and returning arrays (any shapes; both are flattened).
        at: the point, shape (n,) or any shape with n elements; upcast to float64.
        eps: the step; None takes lib's default step, cbrt(float64 eps) * max(1, |at_i|).
    Returns:
        float64 array of shape (f(at).size, at.size). Each column is divided by the
        step actually stored, (at_i + h) - (at_i - h), not by the nominal 2h.
    """
    at = np.array(at, dtype=np.float64)
    step = default_step(at) if eps is None else np.full(at.shape, float(eps))
    columns = []
    for i in range(at.size):  # column i: every output's slope along the input x_i
        plus, minus = at.copy(), at.copy()
        plus.flat[i] += step.flat[i]
        minus.flat[i] -= step.flat[i]
        columns.append((np.ravel(f(plus)) - np.ravel(f(minus))) / (plus.flat[i] - minus.flat[i]))
    return np.stack(columns, axis=1)


def relative_error(analytical, numerical) -> np.ndarray:
    """|a - n| / max(|a|, |n|) element by element, float64; 0 where both are 0.

    Args:
        analytical, numerical: arrays of the same shape (or scalars).
    Returns:
        float64 array of that shape, each value in [0, 2]; take `.max()` for the worst.
    """
    a = np.asarray(analytical, dtype=np.float64)
    n = np.asarray(numerical, dtype=np.float64)
    diff, larger = np.abs(a - n), np.maximum(np.abs(a), np.abs(n))
    return np.divide(diff, larger, out=np.zeros(np.broadcast(a, n).shape), where=larger > 0)
