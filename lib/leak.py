"""A gradient checker that does not restore what it perturbs (notebook 08).

A finite-difference checker moves one input element to x_i + eps, then to
x_i - eps, and must put it back before it moves the next one. A checker whose
"copy" of x is a view of the caller's buffer, that sets each element from a
saved value and never restores it, leaves every element it has visited at
x_i - eps. Two things follow:

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

That is one way to leak (`leak="saved"`): the checker saves x_i and assigns
x_i + eps and x_i - eps from the saved value, so it never evaluates at x_i
itself. A checker that writes literally

    x_plus = x; x_plus[i] += eps; x_minus = x; x_minus[i] -= eps
    forward(x_plus); forward(x_minus)

has three names for one buffer, and leaks differently (`leak="aliased"`):
both updates land on x before either evaluation, so both sides see
(x_i + eps) - eps, about x_i, and the numerical gradient of a deterministic
function is 0. Evaluating each side right after its update
(`leak="aliased-in-turn"`) puts the plus side at x_i + eps and the minus
side back at about x_i: a one-sided difference over eps divided by 2*eps,
about half the gradient. Both leave the caller's x where it was, up to the
rounding of (x_i + eps) - eps.

`replay_with_checker` runs the original test (lib.replica's dropout, RNG and
nominal divide) with any of these checkers, to compare each with the reported
numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lib import _checks
from lib.gradcheck import GradCheckResult, build_result, tolerance_for
from lib.replica import ORIGINAL, GlobalRNG, original_dropout, original_dropout_backward

DIVISIONS = ("nominal", "realised")

#: How a checker that does not restore handles element i (see the module docstring).
LEAKS = ("saved", "aliased", "aliased-in-turn")

#: Every checker `replay_with_checker` can run: the restoring one, then the leaks.
CHECKERS = ("restores", *LEAKS)


class _CallerArray:
    """What a run did to the caller's array (needs x_before and x_after)."""

    @property
    def drift(self) -> np.ndarray:
        """x_after - x_before in float64, x's shape (all zero when the checker restores)."""
        return drift(self.x_before, self.x_after)

    @property
    def changed_caller(self) -> bool:
        return not np.array_equal(self.x_before, self.x_after, equal_nan=True)


@dataclass(frozen=True)
class LeakRun(_CallerArray):
    """What one run of `central_differences` measured.

    Attributes:
        numerical: (n,) float64 numerical gradient, flat order of x.
        width: (n,) float64 divisor used per element (2*eps or the realised step).
        x_before, x_after: copies of the caller's array before and after the run
            (x's shape and dtype).
        restore: whether the checker put each element back.
        at_plus, at_minus: (n,) float64 value of element i while the plus and
            the minus side of its difference were evaluated.
        leak: how a checker that does not restore handled each element (one of
            LEAKS; "saved" when restore is True, which then does not apply).
    """

    numerical: np.ndarray
    width: np.ndarray
    x_before: np.ndarray
    x_after: np.ndarray
    restore: bool
    at_plus: np.ndarray
    at_minus: np.ndarray
    leak: str = "saved"



def drift(before, after) -> np.ndarray:
    """Element-by-element change after - before, computed in float64 (exact for float16/32)."""
    return np.asarray(after, dtype=np.float64) - np.asarray(before, dtype=np.float64)


def _validated_leak(restore: bool, leak: str) -> str:
    _checks.choice(leak, "leak", LEAKS)
    if restore and leak != "saved":
        raise ValueError(f"leak={leak!r} describes a checker that does not restore; pass restore=False")
    return leak


def _visit(flat: np.ndarray, i: int, step, evaluate: Callable, restore: bool, leak: str):
    """Evaluate both sides of element i's difference the way the chosen checker does.

    `flat` is a flat view of the array `evaluate` reads. Returns
    (plus, minus, at_plus, at_minus): evaluate()'s two results and the value of
    flat[i] during each.
    """
    saved = flat[i]
    dtype = flat.dtype.type

    def move(start, delta):  # as Mojo wrote it: read as float64, add, round to x's dtype
        flat[i] = dtype(float(start) + delta)

    try:
        if restore or leak == "saved":  # assign from the saved value
            move(saved, step)
            at_plus = float(flat[i])
            plus = evaluate()
            move(saved, -step)
            at_minus = float(flat[i])
            minus = evaluate()
        elif leak == "aliased":  # x_plus[i] += eps; x_minus[i] -= eps on one buffer, then evaluate both
            move(flat[i], step)
            move(flat[i], -step)
            at_plus = at_minus = float(flat[i])
            plus = evaluate()
            minus = evaluate()
        else:  # "aliased-in-turn": x_plus[i] += eps, evaluate; x_minus[i] -= eps, evaluate
            move(flat[i], step)
            at_plus = float(flat[i])
            plus = evaluate()
            move(flat[i], -step)
            at_minus = float(flat[i])
            minus = evaluate()
    finally:
        if restore:
            flat[i] = saved
    return plus, minus, at_plus, at_minus


def _flat_view(x: np.ndarray) -> np.ndarray:
    flat = x.reshape(-1)
    if not np.shares_memory(flat, x):
        raise ValueError("x must be contiguous so that the checker can perturb it in place")
    return flat


def central_differences(forward: Callable, x: np.ndarray, grad_output, eps: float, *,
                        restore: bool = True, leak: str = "saved", divide_by: str = "realised") -> LeakRun:
    """Central differences of L(x) = sum(forward(x) * grad_output), perturbing `x` IN PLACE.

    Args:
        forward: forward(x) -> array of grad_output's shape; any function.
        x: floating ndarray (float16/32/64), any shape. The caller's buffer is
            perturbed directly, as a checker holding a view of it would.
        grad_output: array of forward(x)'s shape (cast to float64).
        eps: nominal half-step; x_i + dtype(eps) is rounded to x's dtype.
        restore: True puts each element back in a `finally` block (x is
            unchanged on return, even if forward raises); False leaks, as `leak` says.
        leak: with restore=False, how element i is perturbed (see the module docstring):
            "saved" assigns x_i + eps and x_i - eps from a saved x_i and leaves
            x_i - eps behind; "aliased" applies += eps and -= eps to the one
            buffer before evaluating both sides (both at about x_i);
            "aliased-in-turn" evaluates after each update (plus side at x_i + eps,
            minus side at about x_i). With restore=True only "saved" is accepted.
        divide_by: "nominal" (2*eps) or "realised": the difference between the
            values element i had during the two evaluations (0 for "aliased",
            whose numerical gradient is then NaN or infinite).

    Returns:
        LeakRun with the (n,) float64 numerical gradient (flat order) and the
        caller's array before and after.
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x must be a numpy array (the checker perturbs it in place); got {type(x).__name__}")
    _checks.float_array(x, "x")
    _checks.choice(divide_by, "divide_by", DIVISIONS)
    leak = _validated_leak(restore, leak)
    eps = _checks.positive_step(eps)
    g = np.asarray(grad_output, dtype=np.float64).reshape(-1)
    before = x.copy()
    flat = _flat_view(x)
    numerical = np.empty(x.size, dtype=np.float64)
    width = np.empty(x.size, dtype=np.float64)
    at_plus = np.empty(x.size, dtype=np.float64)
    at_minus = np.empty(x.size, dtype=np.float64)

    def evaluate():
        return np.array(forward(x), dtype=np.float64).reshape(-1)

    for i in range(x.size):
        out_plus, out_minus, at_plus[i], at_minus[i] = _visit(flat, i, eps, evaluate, restore, leak)
        width[i] = 2.0 * eps if divide_by == "nominal" else at_plus[i] - at_minus[i]
        # Subtract element by element, then reduce: outputs that did not move cancel exactly.
        with np.errstate(divide="ignore", invalid="ignore"):
            numerical[i] = np.dot(out_plus - out_minus, g) / width[i]
    return LeakRun(numerical=numerical, width=width, x_before=before, x_after=x.copy(), restore=restore,
                   at_plus=at_plus, at_minus=at_minus, leak=leak)


@dataclass(frozen=True)
class LeakReplay(_CallerArray):
    """The original test, run with one checker of CHECKERS (see `replay_with_checker`).

    Attributes:
        checker: one of CHECKERS.
        result: the check's GradCheckResult (analytical, numerical, tolerance, ...).
        at_plus, at_minus: (n,) float64 value of x[i] during the plus and the
            minus evaluation of element i.
        x_before, x_after: the test's input array before and after the check.
    """

    checker: str
    result: GradCheckResult
    at_plus: np.ndarray
    at_minus: np.ndarray
    x_before: np.ndarray
    x_after: np.ndarray



def replay_with_checker(checker: str = "restores", *, dtype: str = ORIGINAL["dtype"], p: float = ORIGINAL["p"],
                        seed: int = ORIGINAL["seed"], eps: float = ORIGINAL["eps"], values=ORIGINAL["values"],
                        divide_by: str = ORIGINAL["divide_by"], rtol: float = ORIGINAL["rtol"],
                        atol: float = ORIGINAL["atol"]) -> LeakReplay:
    """Run the original test with the checker `checker` instead of the original one.

    The test is lib.replica's with its other switches at their originals: the
    process-wide RNG reseeded on every dropout call when seed > 0 (seed 0
    draws on from a fixed start), a forward that calls dropout again, the
    backward bound to the test's own mask, grad_output all ones. The checker
    sums each side's loss in float64 and divides the difference by 2*eps
    ("nominal", the original's) or by the realised step, as lib.replica's
    does. "restores" and "saved" reproduce lib.replica's restore_input=True
    and False bit for bit; "aliased" and "aliased-in-turn" are the two leaks
    of a checker whose x_plus and x_minus are names of x itself.
    """
    checker = _checks.choice(checker, "checker", CHECKERS)
    dt = _checks.dtype_from_name(dtype)
    p = _checks.drop_probability(p)
    seed = _checks.positive_int(seed, "seed", low=0, high=2**63 - 1)
    eps = _checks.positive_step(eps)
    _checks.choice(divide_by, "divide_by", DIVISIONS)
    rtol, atol = _checks.non_negative(rtol, "rtol"), _checks.non_negative(atol, "atol")
    with np.errstate(over="ignore"):
        x = np.array(np.asarray(values, dtype=np.float64), dtype=dt).reshape(-1)
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError(f"values must be a non-empty sequence of numbers finite in {dt}; got {values!r}")
    state = GlobalRNG()
    before = x.copy()
    _, mask = original_dropout(x, p, seed, state, True)  # the test's own call
    grad64 = np.ones(x.size, dtype=np.float64)
    analytical = np.asarray(original_dropout_backward(np.ones_like(x), mask, p), dtype=np.float64)
    restore = checker == "restores"
    leak = "saved" if restore else checker
    flat = _flat_view(x)

    def evaluate():  # the loss summed in float64 in index order, as the original did
        return float(np.cumsum(np.asarray(original_dropout(x, p, seed, state, True)[0], np.float64) * grad64)[-1])

    numerical = np.empty(x.size, dtype=dt)
    widths = np.empty(x.size, dtype=np.float64)
    at_plus = np.empty(x.size, dtype=np.float64)
    at_minus = np.empty(x.size, dtype=np.float64)
    for i in range(x.size):
        loss_plus, loss_minus, at_plus[i], at_minus[i] = _visit(flat, i, eps, evaluate, restore, leak)
        widths[i] = 2.0 * eps if divide_by == "nominal" else at_plus[i] - at_minus[i]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            numerical[i] = dt.type((loss_plus - loss_minus) / widths[i])  # stored in x's dtype, as the original
    result = build_result(analytical, numerical, widths, dtype=dt, rtol=rtol, atol=atol, divide_by=divide_by,
                          forward_calls=2 * x.size, pass_rule="numerical")
    return LeakReplay(checker=checker, result=result, at_plus=at_plus, at_minus=at_minus,
                      x_before=before, x_after=x.copy())


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
                  leak: str = "saved", rtol: float = 1e-3, atol: float = 1e-6) -> np.ndarray:
    """Worst error/tolerance of the (leaking or restoring) checker for each step.

    Args:
        forward, gradient: the function and its exact gradient of
            L = sum(forward(x) * grad_output) (gradient(x) has x's shape).
        x: floating array; each run works on a fresh copy, so x is not changed.
        steps: (k,) nominal half-steps.
        restore, leak: see `central_differences`.

    Returns:
        (k,) float64: max over elements of error_over_tolerance(gradient(x), numerical).
    """
    x = _checks.float_array(x, "x")
    exact = np.asarray(gradient(x), dtype=np.float64).reshape(-1)
    out = np.empty(len(steps))
    for k, h in enumerate(np.asarray(steps, dtype=np.float64)):
        run = central_differences(forward, x.copy(), grad_output, float(h), restore=restore, leak=leak)
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
