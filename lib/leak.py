"""A gradient checker that does not restore what it perturbs (notebook 08).

A finite-difference checker moves one input element to x_i + eps, then to
x_i - eps, and must put it back before it moves the next one. A checker whose
"copy" of x is a view of the caller's buffer, and that never restores, leaves
every element it has visited at x_i - eps. Two things follow:

* the caller's array is changed after the check (a drift of -eps per element);
* element i is differenced at the drifted point x(i) = (x_0 - eps, ...,
  x_{i-1} - eps, x_i, x_{i+1}, ...) instead of at x, so the check compares
  the analytical gradient at x with a numerical gradient somewhere else.

The second matters only when dL/dx_i depends on the elements visited before i.
For an elementwise function the j-th output depends on x_j alone, so the drift
of the other elements cancels exactly in f(x + eps e_i) - f(x - eps e_i); for a
linear one such as dropout the gradient does not depend on x at all. For a
non-separable function (a quadratic form, softmax) the error at element i is,
to first order in eps,

    n_i - g_i(x) = -eps * sum_{j < i} H_ij        H = Hessian of L at x

which grows linearly with eps and crosses any tolerance at a finite step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lib import _checks
from lib.gradcheck import tolerance_for

DIVISIONS = ("nominal", "realised")


@dataclass(frozen=True)
class LeakRun:
    """What one run of `central_differences` measured.

    Attributes:
        numerical: (n,) float64 numerical gradient, flat order of x.
        width: (n,) float64 divisor used per element (2*eps or the realised step).
        x_before, x_after: copies of the caller's array before and after the run
            (x's shape and dtype).
        restore: whether the checker put each element back.
    """

    numerical: np.ndarray
    width: np.ndarray
    x_before: np.ndarray
    x_after: np.ndarray
    restore: bool

    @property
    def drift(self) -> np.ndarray:
        """x_after - x_before in float64, x's shape (all zero when the checker restores)."""
        return drift(self.x_before, self.x_after)

    @property
    def changed_caller(self) -> bool:
        return not np.array_equal(self.x_before, self.x_after, equal_nan=True)


def drift(before, after) -> np.ndarray:
    """Element-by-element change after - before, computed in float64 (exact for float16/32)."""
    return np.asarray(after, dtype=np.float64) - np.asarray(before, dtype=np.float64)


def central_differences(forward: Callable, x: np.ndarray, grad_output, eps: float, *,
                        restore: bool = True, divide_by: str = "realised") -> LeakRun:
    """Central differences of L(x) = sum(forward(x) * grad_output), perturbing `x` IN PLACE.

    Args:
        forward: forward(x) -> array of grad_output's shape; any function.
        x: floating ndarray (float16/32/64), any shape. The caller's buffer is
            perturbed directly, as a checker holding a view of it would.
        grad_output: array of forward(x)'s shape (cast to float64).
        eps: nominal half-step; x_i + dtype(eps) is rounded to x's dtype.
        restore: True puts each element back in a `finally` block (x is
            unchanged on return, even if forward raises); False leaves element
            i at x_i - eps and moves on (the leak).
        divide_by: "realised" (stored x+ minus stored x-) or "nominal" (2*eps).

    Returns:
        LeakRun with the (n,) float64 numerical gradient (flat order) and the
        caller's array before and after.
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x must be a numpy array (the checker perturbs it in place); got {type(x).__name__}")
    _checks.float_array(x, "x")
    _checks.choice(divide_by, "divide_by", DIVISIONS)
    eps = _checks.positive_step(eps)
    g = np.asarray(grad_output, dtype=np.float64).reshape(-1)
    before = x.copy()
    flat = x.reshape(-1)
    if not np.shares_memory(flat, x):
        raise ValueError("x must be contiguous so that the checker can perturb it in place")
    step_t = x.dtype.type(eps)
    numerical = np.empty(x.size, dtype=np.float64)
    width = np.empty(x.size, dtype=np.float64)
    for i in range(x.size):
        saved = flat[i]
        try:
            flat[i] = saved + step_t
            plus = float(flat[i])
            out_plus = np.array(forward(x), dtype=np.float64).reshape(-1)
            flat[i] = saved - step_t
            minus = float(flat[i])
            out_minus = np.array(forward(x), dtype=np.float64).reshape(-1)
        finally:
            if restore:
                flat[i] = saved
        width[i] = 2.0 * eps if divide_by == "nominal" else plus - minus
        # Subtract element by element, then reduce: outputs that did not move cancel exactly.
        with np.errstate(divide="ignore", invalid="ignore"):
            numerical[i] = np.dot(out_plus - out_minus, g) / width[i]
    return LeakRun(numerical=numerical, width=width, x_before=before, x_after=x.copy(), restore=restore)


def drifted_point(x, i: int, eps: float) -> np.ndarray:
    """The point at which a leaking checker differences element i (flat index).

    Elements 0 .. i-1 sit at x_j - dtype(eps) rounded to x's dtype; the rest
    are untouched. Returns a copy with x's shape and dtype.
    """
    x = _checks.float_array(x, "x")
    point = x.copy()
    flat = point.reshape(-1)
    flat[:i] = flat[:i] - x.dtype.type(_checks.positive_step(eps))
    return point


def gradient_at_drifted_points(gradient: Callable, x, eps: float) -> np.ndarray:
    """(n,) float64: element i of gradient(drifted_point(x, i, eps)) for every i.

    `gradient(x)` returns the exact gradient of L at x (x's shape). This is the
    value a leaking checker's numerical gradient approaches, instead of gradient(x).
    """
    x = _checks.float_array(x, "x")
    return np.array([np.asarray(gradient(drifted_point(x, i, eps)), dtype=np.float64).reshape(-1)[i]
                     for i in range(x.size)])


def error_over_tolerance(analytical, numerical, rtol: float, atol: float) -> np.ndarray:
    """|a - n| / (atol + rtol * max(|a|, |n|)) per element; the check fails where it exceeds 1."""
    a = np.asarray(analytical, dtype=np.float64)
    n = np.asarray(numerical, dtype=np.float64)
    tol = tolerance_for(a, n, rtol, atol)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.abs(a - n) / tol
    ratio[(a == n) & (tol == 0)] = 0.0
    return ratio


def error_vs_step(forward: Callable, gradient: Callable, x, grad_output, steps, *, restore: bool,
                  rtol: float = 1e-3, atol: float = 1e-6) -> np.ndarray:
    """Worst error/tolerance of the (leaking or restoring) checker for each step.

    Args:
        forward, gradient: the function and its exact gradient of
            L = sum(forward(x) * grad_output) (gradient(x) has x's shape).
        x: floating array; each run works on a fresh copy, so x is not changed.
        steps: (k,) nominal half-steps.
        restore: see `central_differences`.

    Returns:
        (k,) float64: max over elements of error_over_tolerance(gradient(x), numerical).
    """
    x = _checks.float_array(x, "x")
    exact = np.asarray(gradient(x), dtype=np.float64).reshape(-1)
    out = np.empty(len(steps))
    for k, h in enumerate(np.asarray(steps, dtype=np.float64)):
        run = central_differences(forward, x.copy(), grad_output, float(h), restore=restore)
        out[k] = np.max(error_over_tolerance(exact, run.numerical, rtol, atol))
    return out


def leak_slopes(hessian) -> np.ndarray:
    """c_i = sum_{j<i} H_ij for an (n, n) Hessian: the leak moves n_i by about -eps * c_i. (n,) float64."""
    h = np.asarray(hessian, dtype=np.float64)
    return np.array([h[i, :i].sum() for i in range(h.shape[0])])


def predicted_crossing(hessian, grad, rtol: float = 1e-3, atol: float = 1e-6) -> tuple[float, int]:
    """First-order estimate of the smallest step at which the leak fails the check.

    Element i fails once eps * |c_i| > atol + rtol * |g_i| (c from `leak_slopes`).
    Returns (eps*, i) for the element that fails first; (inf, -1) if none can.
    """
    c = np.abs(leak_slopes(hessian))
    tol = atol + rtol * np.abs(np.asarray(grad, dtype=np.float64).reshape(-1))
    with np.errstate(divide="ignore"):
        crossing = np.where(c > 0, tol / c, np.inf)
    i = int(np.argmin(crossing))
    return (float(crossing[i]), i) if np.isfinite(crossing[i]) else (float("inf"), -1)


def first_crossing(steps, ratio, threshold: float = 1.0) -> float:
    """Smallest step on the rising branch (right of the curve's minimum) where `ratio`
    reaches `threshold`, interpolated on log-log axes; NaN if it never does."""
    steps = np.asarray(steps, dtype=np.float64)
    ratio = np.asarray(ratio, dtype=np.float64)
    start = int(np.nanargmin(np.where(ratio > 0, ratio, np.nan))) if np.any(ratio > 0) else 0
    for k in range(max(start, 1), steps.size):
        if ratio[k] >= threshold > ratio[k - 1]:
            lo, hi = np.log(ratio[k - 1]), np.log(ratio[k])
            t = (np.log(threshold) - lo) / (hi - lo)
            return float(np.exp(np.log(steps[k - 1]) + t * (np.log(steps[k]) - np.log(steps[k - 1]))))
    return float("nan")


# Two non-separable examples, with exact gradients and Hessians.

def quadratic_form(a) -> tuple[Callable, Callable, np.ndarray]:
    """L(x) = x^T A x for an (n, n) matrix A.

    Returns (forward, gradient, hessian): forward(x) is a 0-d array in x's dtype
    (use grad_output = np.float64(1)), gradient(x) = (A + A^T) x in float64,
    hessian = A + A^T, (n, n) float64.
    """
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"A must be a square matrix; got shape {a.shape}")
    sym = a + a.T

    def forward(x):
        x = np.asarray(x)
        return np.asarray(x @ a.astype(x.dtype) @ x)

    def gradient(x):
        return sym @ np.asarray(x, dtype=np.float64)

    return forward, gradient, sym


def softmax(x) -> np.ndarray:
    """Softmax of a 1-D array, in x's dtype (shifted by max(x) for stability)."""
    x = np.asarray(x)
    e = np.exp(x - np.max(x))
    return e / np.sum(e)


def softmax_loss(weights) -> tuple[Callable, Callable, Callable]:
    """L(x) = sum(softmax(x) * w) for a fixed (n,) weight vector w (the grad_output).

    Returns (forward, gradient, hessian): forward = softmax; gradient(x) =
    s * (w - s.w) in float64; hessian(x) the (n, n) float64 matrix of L.
    """
    w = np.asarray(weights, dtype=np.float64)

    def gradient(x):
        s = softmax(np.asarray(x, dtype=np.float64))
        return s * (w - s @ w)

    def hessian(x):
        s = softmax(np.asarray(x, dtype=np.float64))
        g = s * (w - s @ w)
        return np.diag(g) - np.outer(s, g) - np.outer(g, s)

    return softmax, gradient, hessian
