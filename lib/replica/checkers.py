"""The two checkers of the story, written the way the Mojo twin writes them.

`original_check_gradient` is the checker that failed (docs/history.md: the
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
symmetric rule |a - n| <= atol + rtol * max(|a|, |n|) + noise, the noise being
the outputs' rounding; an element that still fails is measured again at
halving steps (docs/checking_at_kinks.md; lib.replica.kinks). `lib.check_gradient`
is that checker for any function; this copy exists so that Python and Mojo can
be compared operation by operation.

Both loops sum in index order, as Mojo's loops do, so the replica's numbers
equal Mojo's bit for bit (numpy's pairwise sums would differ in the last bit).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lib.gradcheck import GradCheckResult, build_result
from lib.replica.kinks import (
    Decision,
    Probe,
    band,
    divide,
    remeasure,
    rounding_bound,
    sequential_sum,
    unit_roundoff,
)


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
            losses.append(sequential_sum(_forward64(forward, target) * grad64))
        width[i] = 2.0 * eps if divide_by == "nominal" else stored[0] - stored[1]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            numerical[i] = dtype.type((losses[0] - losses[1]) / width[i])
    return build_result(analytical, numerical.reshape(x.shape), width.reshape(x.shape), dtype=dtype, rtol=rtol,
                        atol=atol, divide_by=divide_by, forward_calls=2 * x.size, pass_rule="numerical")


def dtype_aware_step(x: np.ndarray) -> np.ndarray:
    """cbrt(eps_dtype) * max(1, |x|) in float64: the default step, the complete fix's."""
    return np.cbrt(float(np.finfo(x.dtype).eps)) * np.maximum(1.0, np.abs(x.astype(np.float64)))


@dataclass(frozen=True)
class FixedCheckResult(GradCheckResult):
    """A GradCheckResult with the fixed checker's per-element verdicts and stage-2 record.

    For an element decided at halving steps, numerical, step, noise and tolerance
    (atol + rtol * max(|a|, |n|) + noise) describe its last measurement, the
    central difference at h_k. Its verdict is `element_passed`, not |a - n| <=
    tolerance: a kink at the point passes when a lies between the one-sided
    slopes (`slope_minus`, `slope_plus`), whatever the central slope.

    Attributes (x's shape):
        element_passed: the verdict of each element.
        halvings: k of the step that decided it (0: the default step).
        decided_step: that step h0 / 2**k (0 at the default step).
        subgradient: decided by the kink-at-the-point rule (passed or not).
        slope_plus, slope_minus: the one-sided slopes at that step (0 at the default step).
    """

    element_passed: np.ndarray | None = None
    halvings: np.ndarray | None = None
    decided_step: np.ndarray | None = None
    subgradient: np.ndarray | None = None
    slope_plus: np.ndarray | None = None
    slope_minus: np.ndarray | None = None

    @property
    def failing_indices(self) -> np.ndarray:
        return np.flatnonzero(~self.element_passed.ravel())


def _default_step(forward, x, grad: list[float], half: np.ndarray, divide_by: str) -> dict[str, list]:
    """Stage 1 for every element: slope, width and rounding noise at the default step h0."""
    u = unit_roundoff(x.dtype)
    g = np.asarray(grad)
    measured: dict[str, list] = {"numerical": [], "step": [], "noise": []}
    for i in range(x.size):
        old = float(x.reshape(-1)[i])
        plus, minus = x.copy(), x.copy()
        plus.reshape(-1)[i] = x.dtype.type(old + half[i])
        minus.reshape(-1)[i] = x.dtype.type(old - half[i])
        y_plus, y_minus = _forward64(forward, plus), _forward64(forward, minus)
        realised = float(plus.reshape(-1)[i]) - float(minus.reshape(-1)[i])
        width = realised if divide_by == "realised" else 2.0 * float(half[i])
        measured["numerical"].append(divide(sequential_sum((y_plus - y_minus) * g), width))
        measured["step"].append(width)
        measured["noise"].append(divide(rounding_bound(grad, y_plus.tolist(), y_minus.tolist(), u), width))
    return measured


def fixed_check_gradient(forward, backward, x: np.ndarray, grad_output: np.ndarray, *, rtol: float = 1e-3,
                         atol: float = 1e-6, divide_by: str = "realised") -> FixedCheckResult:
    """The complete fix, loop for loop as the Mojo twin's; never modifies `x`.

    Stage 1 measures every element at the default step and passes it when
    |a - n| <= atol + rtol * max(|a|, |n|) + noise. Then, if any element with a
    finite analytical value failed, y0 = forward(x) is computed once and each
    such element, in index order, goes through stage 2 (lib.replica.kinks),
    which calls forward(x) again at every step: once it differs from y0, that
    element fails and stage 2 ends (the forward does not repeat itself).
    divide_by="nominal" divides stage 1's slope and noise by 2*h instead of the
    realised width (to show what the step size alone buys); stage 2 always uses
    the realised widths.
    """
    grad = np.asarray(grad_output, dtype=np.float64).ravel().tolist()
    a = np.asarray(backward(grad_output, x), dtype=x.dtype).astype(np.float64).ravel().tolist()
    half = dtype_aware_step(x).ravel()
    m = _default_step(forward, x, grad, half, divide_by)
    n = x.size
    record = {"passed": [], "halvings": [0] * n, "decided_step": [0.0] * n, "subgradient": [False] * n,
              "slope_plus": [0.0] * n, "slope_minus": [0.0] * n}
    for i in range(n):
        tolerance = band(a[i], m["numerical"][i], rtol, atol) + m["noise"][i]
        record["passed"].append(math.isfinite(a[i]) and math.isfinite(m["numerical"][i])
                                and abs(a[i] - m["numerical"][i]) <= tolerance)
    calls = 2 * n
    again = [i for i in range(n) if not record["passed"][i] and math.isfinite(a[i])]
    if again:
        probe = Probe(forward, x, grad, _forward64(forward, x.copy()).tolist(), unit_roundoff(x.dtype))
        calls += 1
    for i in again:
        decision = remeasure(probe, i, a[i], (m["numerical"][i], m["noise"][i], float(half[i])),
                             rtol=rtol, atol=atol)
        calls += 3 * decision.halvings  # both points and y0's repeat at every step
        _settle(record, m, i, decision)
        if not decision.repeated:
            break  # a forward that does not repeat itself: no later element enters stage 2
    tolerance = [band(a[i], m["numerical"][i], rtol, atol) + m["noise"][i] for i in range(n)]
    shaped = {key: np.asarray(values).reshape(x.shape) for key, values in {**record, **m}.items()}
    return FixedCheckResult(
        passed=all(record["passed"]), dtype=str(x.dtype), analytical=np.asarray(a).reshape(x.shape),
        numerical=shaped["numerical"], tolerance=np.asarray(tolerance).reshape(x.shape), step=shaped["step"],
        rtol=float(rtol), atol=float(atol), divide_by=divide_by, forward_calls=calls, noise=shaped["noise"],
        element_passed=shaped["passed"], halvings=shaped["halvings"], decided_step=shaped["decided_step"],
        subgradient=shaped["subgradient"], slope_plus=shaped["slope_plus"], slope_minus=shaped["slope_minus"])


def _settle(record: dict, measured: dict, i: int, decision: Decision) -> None:
    """Write stage 2's verdict for element i, and its last measurement where it made one."""
    record["passed"][i] = decision.passed
    record["subgradient"][i] = decision.subgradient
    last = decision.last
    if last is None:
        return
    record["halvings"][i], record["decided_step"][i] = decision.halvings, decision.step
    record["slope_plus"][i], record["slope_minus"][i] = last.plus, last.minus
    measured["numerical"][i], measured["step"][i], measured["noise"][i] = last.numerical, last.width, last.noise
