"""Small functions with kinks and exact zeros for the fixed checker, as mojo/kink_cases.mojo has them.

    relu                 max(x, 0) at x = [1e-4, 0, -0.3, 0.7] (float32), correct backward
                         (1 where x > 0): 1e-4 converges at k = 7, 0 passes as a subgradient
    relu_zeroing_small   the same, with a backward that also zeroes 0 < x < 0.01: 1e-4 fails,
                         converged to 1 at k = 7
    centre               x - mean(x) (float32): every gradient is exactly 0, and the numerical
                         side measures rounding that the noise term passes at the default step

Every case runs `fixed_check_gradient` with grad_output all ones, rtol 1e-3, atol 1e-6 and
the realised step.
"""

from __future__ import annotations

import numpy as np

from lib.replica.checkers import FixedCheckResult, fixed_check_gradient

RELU_INPUT = (1e-4, 0.0, -0.3, 0.7)
CENTRE_INPUT = (1.5, -2.25, 3.1, 0.45, -0.8)


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, x.dtype.type(0))


def centre(x: np.ndarray) -> np.ndarray:
    """x - mean(x), the mean summed left to right in x's dtype, as the Mojo loop sums it."""
    total = x.dtype.type(0)
    for value in x.ravel():
        total = x.dtype.type(total + value)
    mean = x.dtype.type(total / x.dtype.type(x.size))
    return x - mean


def _relu_backward(threshold: float, inclusive: bool):
    def backward(grad: np.ndarray, x: np.ndarray) -> np.ndarray:
        on = x >= x.dtype.type(threshold) if inclusive else x > x.dtype.type(threshold)
        return np.where(on, grad, 0).astype(x.dtype)
    return backward


def kink_cases() -> list[tuple[str, object, object, np.ndarray]]:
    """(name, forward, backward, x) of each case, in the twin's order."""
    relu_x = np.array(RELU_INPUT, dtype=np.float32)
    return [
        ("relu", relu, _relu_backward(0.0, False), relu_x),
        ("relu_zeroing_small", relu, _relu_backward(0.01, True), relu_x.copy()),
        ("centre", centre, lambda grad, x: np.zeros_like(x), np.array(CENTRE_INPUT, dtype=np.float32)),
    ]


def run_kink_case(forward, backward, x: np.ndarray) -> FixedCheckResult:
    return fixed_check_gradient(forward, backward, x, np.ones_like(x), rtol=1e-3, atol=1e-6, divide_by="realised")
