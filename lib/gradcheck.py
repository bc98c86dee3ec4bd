"""A careful finite-difference gradient checker.

The checker compares an analytical gradient (your `backward`) with a numerical
one: the central-difference slope of the scalar loss

    L(x) = sum(forward(x) * grad_output)

whose gradient is exactly the vector-Jacobian product `backward` must return.

Three choices make it trustworthy in float32, where fixed-step checkers fail:

1. The step is relative and dtype-aware: h_i = cbrt(machine eps) * max(1, |x_i|),
   which balances truncation error (~h^2) against rounding error (~eps/h).
2. It divides by the *realised* step, x_i+ - x_i- as actually stored in x's
   dtype (exact in float64), not the nominal 2h. In float32, x = -0.5 and
   h = 1e-5 store values 2.0027e-5 apart: dividing by 2e-5 is 0.14 % off,
   which alone fails an rtol=1e-3 check.
3. It subtracts the two outputs element by element (in float64) before
   reducing with grad_output, so the sum never adds large equal terms whose
   difference it then needs.

The caller's `x` is never touched: the checker perturbs a private copy and
restores each element in a `finally` block.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lib import _checks

#: How many failing elements a failure message lists before it stops.
MAX_REPORTED_ELEMENTS = 5


@dataclass(frozen=True)
class GradCheckResult:
    """Everything a check measured, element by element (arrays have x's shape).

    Attributes:
        passed: every element met the pass rule.
        dtype: name of x's dtype, e.g. "float32".
        analytical: backward(grad_output, x) as float64.
        numerical: central-difference gradient, float64.
        tolerance: atol + rtol * max(|analytical|, |numerical|) per element
            (atol + rtol * |numerical| under the failure-era rule).
        step: the realised width x+ - x- of each central difference (the
            nominal 2*eps when `divide_by == "nominal"`).
        rtol, atol: the tolerances used.
        divide_by: "realised" (this checker) or "nominal" (the original).
        forward_calls: how many times forward was called.
        input_mutated: forward or backward changed the array it was given.
        pass_rule: "symmetric" (max(|a|, |n|), this checker's) or "numerical"
            (|n| alone, the rule of the checker that failed).
    """

    passed: bool
    dtype: str
    analytical: np.ndarray
    numerical: np.ndarray
    tolerance: np.ndarray
    step: np.ndarray
    rtol: float
    atol: float
    divide_by: str = "realised"
    forward_calls: int = 0
    input_mutated: bool = False
    notes: tuple[str, ...] = field(default=())
    pass_rule: str = "symmetric"

    @property
    def difference(self) -> np.ndarray:
        """analytical - numerical, float64."""
        return self.analytical - self.numerical

    @property
    def error_ratio(self) -> np.ndarray:
        """|analytical - numerical| / tolerance; an element passes when <= 1."""
        diff = np.abs(self.difference)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.array(diff / self.tolerance, dtype=np.float64)  # 0-d stays an array
        # 0/0 (both gradients exactly 0 with atol=0) is a pass, not NaN.
        ratio[(diff == 0) & (self.tolerance == 0)] = 0.0
        ratio[np.isnan(ratio)] = np.inf
        return ratio

    @property
    def max_error_ratio(self) -> float:
        return float(np.max(self.error_ratio)) if self.error_ratio.size else 0.0

    @property
    def worst_index(self) -> int:
        """Flat index of the element with the largest error ratio."""
        return int(np.argmax(self.error_ratio)) if self.error_ratio.size else 0

    @property
    def failing_indices(self) -> np.ndarray:
        """Flat indices of the failing elements, ascending."""
        return np.flatnonzero(~(self.error_ratio <= 1.0))

    @property
    def first_failing_index(self) -> int | None:
        failing = self.failing_indices
        return int(failing[0]) if failing.size else None

    def summary(self) -> str:
        """One line: PASS/FAIL, worst error ratio and where."""
        verdict = "PASS" if self.passed else "FAIL"
        n_fail, n = self.failing_indices.size, self.analytical.size
        return (
            f"{verdict}: {n - n_fail}/{n} elements within tolerance, "
            f"max error/tolerance {self.max_error_ratio:.4g} at index {self.worst_index}"
        )

    def report(self, max_rows: int = MAX_REPORTED_ELEMENTS) -> str:
        """A failure report in the layout of numpy's assert_allclose."""
        failing = self.failing_indices
        n = self.analytical.size
        first = int(failing[0]) if failing.size else self.worst_index
        if failing.size:
            head = f"Gradient check failed for {self.dtype}: gradient mismatch at index {first}"
        elif not self.passed:
            head = f"Gradient check failed for {self.dtype}: the input array was modified"
        else:
            head = f"Gradient check passed for {self.dtype}"
        lines = [
            head,
            tolerance_line(self),
            f"Mismatched elements: {failing.size} / {n} ({100.0 * failing.size / max(n, 1):.1f}%)",
            f"Max error/tolerance: {self.max_error_ratio:.4g} at index {self.worst_index}",
            f"Numerical gradient divided by the {self.divide_by} step",
        ]
        rows = failing[:max_rows] if failing.size else np.array([self.worst_index])
        lines.append(format_element_table(self, rows))
        if failing.size > max_rows:
            lines.append(f"  ... and {failing.size - max_rows} more failing elements")
        if self.input_mutated:
            lines.append("Warning: forward or backward modified the array it was given.")
        lines.extend(self.notes)
        return "\n".join(lines)


def tolerance_line(result: GradCheckResult) -> str:
    """The report's second line: the tolerances and the pass rule they enter."""
    return (f"{'Within' if result.passed else 'Not within'} tolerance rtol={result.rtol:g}, "
            f"atol={result.atol:g} (pass rule: |a - n| <= atol + rtol * {PASS_RULES[result.pass_rule]})")


def format_element_table(result: GradCheckResult, flat_indices) -> str:
    """Aligned rows of analytical, numerical, difference, tolerance, step."""
    shape = result.analytical.shape
    header = (
        f"{'index':>10} {'analytical':>14} {'numerical':>14} {'difference':>12} "
        f"{'tolerance':>11} {'step':>11} {'err/tol':>8}"
    )
    rows = [header]
    a, n = result.analytical.ravel(), result.numerical.ravel()
    tol, step, ratio = result.tolerance.ravel(), result.step.ravel(), result.error_ratio.ravel()
    for i in np.asarray(flat_indices, dtype=int):
        where = f"[{i}]" if len(shape) <= 1 else "[" + ", ".join(str(int(k)) for k in np.unravel_index(i, shape)) + "]"
        rows.append(
            f"{where:>10} {a[i]:>14.8g} {n[i]:>14.8g} {a[i] - n[i]:>12.4e} "
            f"{tol[i]:>11.4e} {step[i]:>11.4e} {ratio[i]:>8.3g}"
        )
    return "\n".join(rows)


class GradientCheckError(AssertionError):
    """Raised by a failing check; `.result` holds the full GradCheckResult."""

    def __init__(self, result: GradCheckResult, message: str | None = None):
        super().__init__(message if message is not None else result.report())
        self.result = result


def default_step(x: np.ndarray) -> np.ndarray:
    """The dtype-aware half-step cbrt(eps_dtype) * max(1, |x|), float64, x's shape."""
    scale = np.cbrt(float(np.finfo(x.dtype).eps))  # in float64: cbrt rounded to float16 moves x-h
    return scale * np.maximum(1.0, np.abs(x.astype(np.float64)))


def _call_forward(forward, x: np.ndarray, expected_shape=None) -> np.ndarray:
    # Copy to float64 at once: a forward that returns a view of its input would
    # otherwise change under us when the next element is perturbed.
    returned = forward(x)
    try:
        out = np.array(returned, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"forward must return a numeric array; got {type(returned).__name__}") from None
    if returned is None or out.dtype == object:
        raise TypeError(f"forward must return a numeric array; got {type(returned).__name__}")
    if expected_shape is not None and out.shape != expected_shape:
        raise ValueError(
            f"forward returned shape {out.shape} on a perturbed input but {expected_shape} on x"
        )
    if not np.all(np.isfinite(out)):
        raise ValueError("forward(x) returned non-finite values (inf or NaN); the check needs finite outputs")
    return out


def _validated_inputs(forward, x, grad_output):
    _checks.callable_arg(forward, "forward")
    x = _checks.float_array(x, "x")
    # C order, so that work.reshape(-1) is a view and a perturbation reaches forward.
    work = np.array(x, copy=True, order="C")
    out = _call_forward(forward, work)
    grad_output = np.asarray(grad_output)
    if grad_output.shape != out.shape:
        raise ValueError(
            f"grad_output must have the shape of forward(x), {out.shape}; got {grad_output.shape}"
        )
    if not np.issubdtype(grad_output.dtype, np.number) or np.iscomplexobj(grad_output):
        raise TypeError(f"grad_output must be a real numeric array; got dtype {grad_output.dtype}")
    if not np.all(np.isfinite(grad_output)):
        raise ValueError("grad_output must be finite")
    return x, work, out.shape, grad_output.astype(np.float64)


def _realised_points(x: np.ndarray, half: np.ndarray):
    """x + half and x - half stored in x's dtype, and their exact distance.

    Returns flat (plus, minus, width): plus and minus in x's dtype, width =
    plus - minus in float64 (exact: both are values of x's dtype). Raises
    ValueError at the first element whose two points round to the same value.
    """
    x64 = x.astype(np.float64).reshape(-1)
    flat_half = half.reshape(-1)
    # The sum is rounded to float64 first, then to x's dtype: the same two
    # roundings as converting each element on its own.
    shifted = np.add(x64, flat_half)
    with np.errstate(over="ignore"):  # an overflow to inf is reported below, naming x
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
    if not np.all(width):
        i = int(np.flatnonzero(width == 0.0)[0])
        original = x.reshape(-1)[i]
        raise ValueError(
            f"eps={flat_half[i]:g} is too small for {x.dtype} at index {i} "
            f"(x={float(original):g}): x+eps and x-eps round to the same value; "
            f"use eps >= {float(np.spacing(np.abs(original))):.3g}"
        )
    return plus, minus, width


def _raise_if_not_finite(*outputs: np.ndarray) -> None:
    for out in outputs:
        if not np.all(np.isfinite(out)):
            raise ValueError(
                "forward(x) returned non-finite values (inf or NaN); the check needs finite outputs"
            )


def _central_differences(forward, x, work, out_shape, grad64, eps):
    """Core loop. Returns (numerical, realised step, forward calls); never changes x.

    The loop body does only what each element needs (two forward calls, two
    float64 copies, one subtraction, one dot product); everything that can be
    done for all elements at once (the perturbed values, the realised widths,
    the division) is done outside it, so the checker costs little beyond the
    2N forward calls themselves.
    """
    half = default_step(x) if eps is None else np.full(x.shape, _checks.positive_step(eps))
    plus, minus, width = _realised_points(x, half)
    flat_work = work.reshape(-1)
    g = grad64.reshape(-1)
    numerical = np.empty(x.size, dtype=np.float64)
    for i in range(x.size):
        original = flat_work[i]
        try:
            flat_work[i] = plus[i]
            # Copy to float64 at once: a forward that returns a view of its input
            # would otherwise change under us when the element is moved again.
            out_plus = np.array(forward(work), dtype=np.float64)
            flat_work[i] = minus[i]
            out_minus = np.array(forward(work), dtype=np.float64)
        finally:
            flat_work[i] = original
        if out_plus.shape != out_shape or out_minus.shape != out_shape:
            bad = out_plus.shape if out_plus.shape != out_shape else out_minus.shape
            raise ValueError(f"forward returned shape {bad} on a perturbed input but {out_shape} on x")
        # Subtract element by element in float64, then reduce with grad_output.
        value = np.dot((out_plus - out_minus).reshape(-1), g)
        # Any inf or NaN in either output makes the difference, and so the dot
        # product, non-finite: one scalar test instead of two array scans.
        if not -np.inf < value < np.inf:
            _raise_if_not_finite(out_plus, out_minus)
        numerical[i] = value
    # Divide by the realised width, x_i+ - x_i- as stored, not the nominal 2*eps.
    numerical /= width
    return numerical.reshape(x.shape), width.reshape(x.shape), 2 * x.size


def numerical_gradient(forward, x, grad_output, eps=None) -> np.ndarray:
    """Central-difference gradient of sum(forward(x) * grad_output), float64, x's shape.

    Args:
        forward: callable, forward(x) -> array; must be deterministic.
        x: floating array (float16/32/64); never modified.
        grad_output: array of forward(x)'s shape (the upstream gradient).
        eps: half-step. None picks cbrt(eps_dtype) * max(1, |x_i|); a number is
            used as given for every element.
    """
    x, work, out_shape, grad64 = _validated_inputs(forward, x, grad_output)
    numerical, _, _ = _central_differences(forward, x, work, out_shape, grad64, eps)
    return numerical


#: The scale rtol multiplies, by rule name, as the report prints it.
PASS_RULES = {"symmetric": "max(|a|, |n|)", "numerical": "|n|"}


def tolerance_for(analytical, numerical, rtol: float, atol: float, rule: str = "symmetric") -> np.ndarray:
    """The per-element pass band: atol + rtol * max(|a|, |n|), float64.

    rule="numerical" gives atol + rtol * |n|, the band of the checker that
    failed (it scaled by the numerical side only, as PyTorch's gradcheck does).
    """
    scale = np.abs(numerical) if rule == "numerical" else np.maximum(np.abs(analytical), np.abs(numerical))
    return atol + rtol * scale


def build_result(analytical, numerical, step, *, dtype, rtol, atol, divide_by="realised",
                 forward_calls=0, input_mutated=False, pass_rule="symmetric") -> GradCheckResult:
    """Assemble a GradCheckResult from measured arrays (used by every checker here)."""
    analytical = np.asarray(analytical, dtype=np.float64)
    numerical = np.asarray(numerical, dtype=np.float64)
    tolerance = tolerance_for(analytical, numerical, rtol, atol, pass_rule)
    with np.errstate(invalid="ignore"):
        # inf <= inf holds, so an infinite gradient would pass without the finiteness test
        within = (np.abs(analytical - numerical) <= tolerance) & np.isfinite(analytical) & np.isfinite(numerical)
    return GradCheckResult(
        passed=bool(np.all(within)) and not input_mutated,
        dtype=str(np.dtype(dtype)),
        analytical=analytical,
        numerical=numerical,
        tolerance=tolerance,
        step=np.asarray(step, dtype=np.float64),
        rtol=float(rtol),
        atol=float(atol),
        divide_by=divide_by,
        forward_calls=forward_calls,
        input_mutated=input_mutated,
        pass_rule=pass_rule,
    )


def check_gradient(forward, backward, x, grad_output, *, rtol=1e-3, atol=1e-6, eps=None,
                   raise_on_failure=True, mode="dense", probes=2) -> GradCheckResult:
    """Check backward against central differences of forward.

    mode="dense" (default) differences every element: 2N forward calls, and
    on failure the message ends with lib.diagnose's findings. mode="fast"
    checks `probes` random projections in 2*probes forward calls and, on
    failure, localises the failing elements by group testing (see
    lib.fastcheck.check_gradient_fast, which returns a FastCheckResult).

    Args:
        forward: forward(x) -> y, any output shape; must be deterministic.
        backward: backward(grad_output, x) -> grad_x of x's shape.
        x: floating array (float16/32/64), never modified.
        grad_output: array of y's shape; the loss is sum(y * grad_output).
        rtol, atol: an element passes when |a - n| <= atol + rtol * max(|a|, |n|).
        eps: half-step; None picks a dtype-aware relative step.
        raise_on_failure: raise GradientCheckError (with `.result`) on failure.
        mode: "dense" or "fast".
        probes: random projections in fast mode (ignored in dense mode).

    Returns:
        GradCheckResult with per-element analytical, numerical, tolerance, step.
    """
    _checks.choice(mode, "mode", ("dense", "fast"))
    _checks.callable_arg(backward, "backward")
    raise_on_failure = _checks.boolean(raise_on_failure, "raise_on_failure")
    probes = _checks.positive_int(probes, "probes")
    if mode == "fast":
        from lib.fastcheck import check_gradient_fast  # lib.fastcheck imports this module

        return check_gradient_fast(forward, backward, x, grad_output, probes=probes, rtol=rtol, atol=atol,
                                   eps=eps, raise_on_failure=raise_on_failure)
    rtol = _checks.non_negative(rtol, "rtol")
    atol = _checks.non_negative(atol, "atol")
    if eps is not None:
        _checks.positive_step(eps)
    x, work, out_shape, grad64 = _validated_inputs(forward, x, grad_output)

    analytical = np.asarray(backward(np.asarray(grad_output).copy(), work))
    if analytical.shape != x.shape:
        raise ValueError(f"backward must return an array of x's shape {x.shape}; got {analytical.shape}")
    numerical, step, calls = _central_differences(forward, x, work, out_shape, grad64, eps)
    mutated = not np.array_equal(work, x, equal_nan=True)

    result = build_result(analytical, numerical, step, dtype=x.dtype, rtol=rtol, atol=atol,
                          forward_calls=calls + 1, input_mutated=mutated)
    if not result.passed and raise_on_failure:
        message = result.report()
        try:
            # Imported here: lib.diagnose imports this module. diagnose never calls
            # check_gradient, and inside a running diagnosis failure_lines returns
            # nothing, so this cannot recurse.
            from lib.diagnose import failure_lines

            lines = failure_lines(forward, backward, x, grad_output, rtol=rtol, atol=atol, eps=eps)
        except Exception as error:  # a broken diagnosis must not hide the failure it explains
            lines = [f"Diagnosis unavailable ({type(error).__name__}: {error})"]
        raise GradientCheckError(result, "\n".join([message, *lines]))
    return result
