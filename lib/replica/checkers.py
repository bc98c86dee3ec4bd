"""The two checkers of the story, written the way the Mojo twin writes them.

`original_check_gradient` is the checker that failed (REFERENCE.md: the
failure-era commit 27a95c94). For every element it reads x[i] as float64,
writes `x[i] + eps` rounded to x's dtype, runs the forward, sums the loss
`sum(out * grad_output)` in float64 one term after another, writes `x[i] -
eps`, runs the forward again, and divides the difference of the two losses by
the nominal 2*eps. It stores that quotient in an array of x's dtype and
compares with the pass rule |a - n| <= atol + rtol * |n|. Its "copies" shared
the caller's buffer (a shallow copy constructor), so it perturbed the caller's
x and never put an element back: x leaves the check at x - eps element by
element (the deep copy came in 25aabfce, 94 seconds before the fix commit
4395c468).

`fixed_check_gradient` is the complete fix, with the same loop: the
default step cbrt(eps_dtype) * max(1, |x|), private copies, element-wise
differences of the outputs accumulated in float64, the realised step, and the
symmetric rule |a - n| <= atol + rtol * max(|a|, |n|). `lib.check_gradient` is
that checker for any function; this copy exists so that Python and Mojo can
be compared operation by operation.

Both loops sum in index order, as Mojo's loops do, so the replica's numbers
equal Mojo's bit for bit (numpy's pairwise sums would differ in the last bit).
"""

from __future__ import annotations

import numpy as np

from lib.gradcheck import GradCheckResult, build_result


def _sequential_sum(terms: np.ndarray) -> float:
    """terms[0] + terms[1] + ... in float64, left to right (np.cumsum adds in order)."""
    return float(np.cumsum(terms)[-1]) if terms.size else 0.0


def _forward64(forward, x: np.ndarray) -> np.ndarray:
    return np.asarray(forward(x), dtype=np.float64).ravel()


def original_check_gradient(forward, backward, x: np.ndarray, grad_output: np.ndarray, *, rtol: float = 1e-3,
                            atol: float = 1e-6, eps: float = 1e-5, divide_by: str = "nominal",
                            restore_input: bool = False) -> GradCheckResult:
    """The failure-era checker; `x` is modified in place unless restore_input (the leak).

    Args:
        forward: forward(x) -> array; called 2 * x.size times.
        backward: backward(grad_output, x) -> array of x's shape; called first, once.
        x: float16/32/64 array (the caller's buffer).
        grad_output: array of the forward's output shape.
        eps: the step, applied in float64 and rounded to x's dtype.
        divide_by: "nominal" (2*eps, the original) or "realised" (x+ - x-, the minimal patch).
        restore_input: False perturbs x itself and never restores it (the original);
            True perturbs a private copy for every evaluation (the deep-copy checker).
    Returns:
        GradCheckResult with pass_rule "numerical"; its numerical gradient holds
        the dtype-rounded values the original compared.
    """
    dtype = x.dtype
    grad64 = np.asarray(grad_output, dtype=np.float64).ravel()
    analytical = np.asarray(backward(grad_output, x), dtype=dtype)
    numerical = np.empty(x.size, dtype=dtype)
    width = np.empty(x.size, dtype=np.float64)
    flat = x.reshape(-1)  # a view: writes reach the caller, as the shallow copy's did
    for i in range(x.size):
        old = float(flat[i])
        losses, stored = [], []
        for value in (old + eps, old - eps):
            target = x.copy() if restore_input else x
            target.reshape(-1)[i] = dtype.type(value)
            stored.append(float(target.reshape(-1)[i]))
            losses.append(_sequential_sum(_forward64(forward, target) * grad64))
        width[i] = 2.0 * eps if divide_by == "nominal" else stored[0] - stored[1]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            numerical[i] = dtype.type((losses[0] - losses[1]) / width[i])
    return build_result(analytical, numerical.reshape(x.shape), width.reshape(x.shape), dtype=dtype, rtol=rtol,
                        atol=atol, divide_by=divide_by, forward_calls=2 * x.size, pass_rule="numerical")


def dtype_aware_step(x: np.ndarray) -> np.ndarray:
    """cbrt(eps_dtype) * max(1, |x|) in float64: the default step, the complete fix's."""
    return np.cbrt(float(np.finfo(x.dtype).eps)) * np.maximum(1.0, np.abs(x.astype(np.float64)))


def fixed_check_gradient(forward, backward, x: np.ndarray, grad_output: np.ndarray, *, rtol: float = 1e-3,
                         atol: float = 1e-6, divide_by: str = "realised") -> GradCheckResult:
    """The complete fix, loop for loop as the Mojo twin's; never modifies `x`.

    divide_by="nominal" divides by 2*h instead of the realised step (to show
    what the step size alone buys).
    """
    dtype = x.dtype
    grad64 = np.asarray(grad_output, dtype=np.float64).ravel()
    analytical = np.asarray(backward(grad_output, x), dtype=dtype)
    half = dtype_aware_step(x).ravel()
    numerical = np.empty(x.size, dtype=np.float64)
    width = np.empty(x.size, dtype=np.float64)
    for i in range(x.size):
        old = float(x.reshape(-1)[i])
        plus, minus = x.copy(), x.copy()
        plus.reshape(-1)[i] = dtype.type(old + half[i])
        minus.reshape(-1)[i] = dtype.type(old - half[i])
        differences = _forward64(forward, plus) - _forward64(forward, minus)
        realised = float(plus.reshape(-1)[i]) - float(minus.reshape(-1)[i])
        width[i] = realised if divide_by == "realised" else 2.0 * half[i]
        numerical[i] = _sequential_sum(differences * grad64) / width[i]
    return build_result(analytical, numerical.reshape(x.shape), width.reshape(x.shape), dtype=dtype, rtol=rtol,
                        atol=atol, divide_by=divide_by, forward_calls=2 * x.size)
