"""What a gradient check measured, element by element, and how it reports a failure."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: How many failing elements a failure message lists before it stops.
MAX_REPORTED_ELEMENTS = 5


@dataclass(frozen=True)
class SmallerStep:
    """One element that failed at the default step h0 and was measured again at h_k = h0 / 2^k
    (lib.gradcheck.kinks, docs/checking_at_kinks.md).

    Attributes:
        index: its flat index in x.
        k: the halving that decided it (the last one measured when undecided; 0: none could be).
        step: h_k, the nominal step in x's units; width: its realised width w+ + w-.
        verdict: "converged" or "subgradient" (passed); "converged elsewhere", "not a
            subgradient", or undecided: "rounding" (above the tolerance), "spacing" (the
            step fell below the dtype's spacing), "no decision" (K_MAX halvings), or
            "forward(x) changed" (forward did not repeat itself between two calls at x).
        central: the central slope n_k; slope_minus, slope_plus: the one-sided slopes s-, s+.
        in_float64: measured with x given to forward as float64 (forward computes in float64),
            so the outputs' rounding is float64's; otherwise in x's dtype.
        halvings_before_float64: when in_float64, the halvings first measured in x's dtype
            (float16/float32), which rounding left undecided, before the float64 ones from h0 / 2
            (k counts only those); 0 otherwise. Kept because each halving cost forward calls.
    """

    index: int
    k: int
    step: float
    width: float
    verdict: str
    central: float
    slope_minus: float
    slope_plus: float
    in_float64: bool = False
    halvings_before_float64: int = 0

    @property
    def passed(self) -> bool:
        return self.verdict in ("converged", "subgradient")

    @property
    def halvings(self) -> int:
        """Every halving measured for this element, in x's dtype and in float64: 3 forward calls each."""
        return self.k + self.halvings_before_float64


@dataclass(frozen=True)
class GradCheckResult:
    """Everything a check measured, element by element (arrays have x's shape).

    Attributes:
        passed: every element met the pass rule.
        dtype: name of x's dtype, e.g. "float32".
        analytical: backward(grad_output, x) as float64.
        numerical: central-difference gradient, float64.
        tolerance: atol + rtol * max(|analytical|, |numerical|) + noise per element
            (atol + rtol * |numerical| under the failure-era rule).
        step: the realised width x+ - x- of each central difference (the
            nominal 2*eps when `divide_by == "nominal"`).
        rtol, atol: the tolerances used.
        divide_by: "realised" (this checker) or "nominal" (the original).
        forward_calls: how many times forward was called.
        input_mutated: forward or backward changed the array it was given.
        noise: the slack the arithmetic explains, per element: NOISE_FACTOR times
            the bound on the rounding of the outputs, or, for an element
            re-measured in float64, the measured difference (zeros under
            strict=True and for the replica's checkers).
        probe_results: the same check for random upstream gradients (one result each).
        smaller_steps: the elements that still failed at the default step after the
            noise allowance and were measured again at halving steps, one SmallerStep
            each; their numerical, tolerance, noise and step are that measurement's.
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
    noise: np.ndarray | None = None
    probe_results: tuple[GradCheckResult, ...] = ()
    smaller_steps: tuple[SmallerStep, ...] = ()

    @property
    def subgradient_indices(self) -> np.ndarray:
        """Flat indices of the elements that passed as a subgradient at a kink, ascending."""
        return np.array(sorted(r.index for r in self.smaller_steps if r.verdict == "subgradient"), dtype=np.int64)

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
        ) + smaller_steps_summary(self)

    def report(self, max_rows: int = MAX_REPORTED_ELEMENTS) -> str:
        """A failure report in the layout of numpy's assert_allclose."""
        shown, label = self, ""
        if not self.failing_indices.size:
            # the caller's grad_output passed: show the first random probe that did not
            for k, probe in enumerate(self.probe_results, start=1):
                if probe.failing_indices.size:
                    shown, label = probe, f" for random grad_output {k} of {len(self.probe_results)}"
                    break
        failing = shown.failing_indices
        n = shown.analytical.size
        if self.input_mutated:
            head = f"Gradient check failed for {self.dtype}: an input array was modified (see the last lines)"
            if failing.size:  # both are wrong: a fixed copy would still fail on the mismatch
                head += mismatch_clause(failing.size, n, shown.max_error_ratio) + label
        elif failing.size:
            head = f"Gradient check failed for {self.dtype}: gradient mismatch at index {int(failing[0])}{label}"
        else:
            head = f"Gradient check passed for {self.dtype}"
        lines = [
            head,
            tolerance_line(self),
            f"Mismatched elements: {failing.size} / {n} ({100.0 * failing.size / max(n, 1):.1f}%){label}",
            f"Max error/tolerance: {shown.max_error_ratio:.4g} at index {shown.worst_index}",
            f"Numerical gradient divided by the {self.divide_by} step",
        ]
        rows = failing[:max_rows] if failing.size else np.array([shown.worst_index])
        lines.append(format_element_table(shown, rows))
        if failing.size > max_rows:
            lines.append(f"  ... and {failing.size - max_rows} more failing elements")
        for result in ([self] if shown is self else [self, shown]):
            lines.extend(smaller_steps_lines(result, max_rows))
        if label:
            lines.append("The backward passes with your grad_output but not with a random one: it does not "
                         "compute grad_output^T J (does it ignore, square or misread grad_output?)")
        if self.input_mutated and not self.notes:
            lines.append("Warning: forward or backward modified the array it was given.")
        lines.extend(self.notes)
        return "\n".join(lines)

    @property
    def has_noise(self) -> bool:
        """The pass band includes a rounding allowance (not strict, not a replica checker)."""
        return self.noise is not None and bool(np.any(self.noise))


def tolerance_line(result: GradCheckResult) -> str:
    """The report's second line: the tolerances and the pass rule they enter."""
    noise = " + arithmetic noise" if result.has_noise else ""
    return (f"{'Within' if result.passed else 'Not within'} tolerance rtol={result.rtol:g}, "
            f"atol={result.atol:g} (pass rule: |a - n| <= atol + rtol * {PASS_RULES[result.pass_rule]}{noise})")


def mismatch_clause(count: int, size: int, worst: float) -> str:
    """The headline's second finding beside an input mutation: how many elements mismatch, and by how much."""
    return f", and the gradient mismatches at {count} of {size} elements (max error/tolerance {worst:.4g})"


def smaller_steps_summary(result: GradCheckResult) -> str:
    """The summary's note on the smaller steps ("" when no element needed one)."""
    records = result.smaller_steps
    if not records:
        return ""
    kinks = sum(r.verdict == "subgradient" for r in records)
    return (f"; {len(records)} element{'s' if len(records) != 1 else ''} measured at smaller steps"
            + (f" ({kinks} passed as a subgradient)" if kinks else ""))


#: How each verdict of the smaller steps reads in a report.
VERDICT_TEXT = {
    "converged": "converged", "subgradient": "subgradient (on a kink)",
    "converged elsewhere": "FAIL: converged elsewhere", "not a subgradient": "FAIL: kink, not between the slopes",
    "rounding": "FAIL: undecided (rounding)", "spacing": "FAIL: undecided (dtype spacing)",
    "no decision": "FAIL: undecided",
    "forward(x) changed": "FAIL: forward(x) changed between calls",
}


def smaller_steps_lines(result: GradCheckResult, max_rows: int = MAX_REPORTED_ELEMENTS) -> list[str]:
    """The report's lines on the elements measured again at smaller steps (none when there were none)."""
    records = result.smaller_steps
    if not records:
        return []
    passed = sum(r.passed for r in records)
    kinks = sum(r.verdict == "subgradient" for r in records)
    lines = [
        f"Smaller steps: {len(records)} element{'s' if len(records) != 1 else ''} failed at the default step and "
        f"{'was' if len(records) == 1 else 'were'} measured again at h0/2^k (docs/checking_at_kinks.md): "
        f"{passed} passed ({kinks} as a subgradient), {len(records) - passed} failed",
        f"{'index':>10} {'k':>3} {'step h_k':>11} {'central':>14} {'slope(-)':>14} {'slope(+)':>14}  verdict",
    ]
    shown = sorted(records, key=lambda r: r.passed)[:max_rows]  # failures first
    for r in shown:
        lines.append(f"{_where(r.index, result.analytical.shape):>10} {r.k:>3} {r.step:>11.4e} {r.central:>14.8g} "
                     f"{r.slope_minus:>14.8g} {r.slope_plus:>14.8g}  {VERDICT_TEXT[r.verdict]}"
                     + (" (in float64)" if r.in_float64 else ""))
    if len(records) > max_rows:
        lines.append(f"  ... and {len(records) - max_rows} more")
    return lines


def _where(i: int, shape: tuple) -> str:
    """Flat index i as the report prints it: [i] for up to 1-D, [i, j, ...] otherwise."""
    return f"[{i}]" if len(shape) <= 1 else "[" + ", ".join(str(int(k)) for k in np.unravel_index(i, shape)) + "]"


def format_element_table(result: GradCheckResult, flat_indices, step: np.ndarray | None = None) -> str:
    """Aligned rows of analytical, numerical, difference, tolerance, step (`step`: x's shape, default
    result.step: the realised width each element was measured with)."""
    shape = result.analytical.shape
    noise = result.noise.ravel() if result.has_noise else None
    header = (
        f"{'index':>10} {'analytical':>14} {'numerical':>14} {'difference':>12} "
        f"{'tolerance':>11}{' ' + format('noise', '>12') if noise is not None else ''} {'step':>11} {'err/tol':>8}"
    )
    rows = [header]
    a, n = result.analytical.ravel(), result.numerical.ravel()
    step = (result.step if step is None else step).ravel()
    tol, ratio = result.tolerance.ravel(), result.error_ratio.ravel()
    for i in np.asarray(flat_indices, dtype=int):
        where = _where(i, shape)
        slack = f" {noise[i]:>12.4e}" if noise is not None else ""
        rows.append(
            f"{where:>10} {a[i]:>14.8g} {n[i]:>14.8g} {a[i] - n[i]:>12.4e} "
            f"{tol[i]:>11.4e}{slack} {step[i]:>11.4e} {ratio[i]:>8.3g}"
        )
    return "\n".join(rows)


class GradientCheckError(AssertionError):
    """Raised by a failing check; `.result` holds the full GradCheckResult."""

    def __init__(self, result: GradCheckResult, message: str | None = None):
        super().__init__(message if message is not None else result.report())
        self.result = result


#: Above this many elements a failure's hint suggests diagnosing a slice around the localised
#: elements: a diagnosis costs 2N to 4N forward calls, seconds for a cheap forward at this size.
SLICE_HINT_SIZE = 4096


def diagnosis_hint(size: int, localised=(), *, dtype=None, failing: int = 0) -> str:
    """The last line of a failure's message: how to learn why, and about what it costs.

    A diagnosis is never run implicitly; the user asks for it. A failing check costs it one
    dense pass (2N calls) and 5 at x, a second dense pass in float64 when x is float16/float32,
    and per failing element what check_gradient spends on it: 3 calls per halving of its
    step, 2 in float64 for a float16/float32 x, so 3 to 8 for an element that settles at the
    first halving (lib.diagnose.diagnose states the whole cost). Above SLICE_HINT_SIZE
    elements the hint suggests a slice around the elements a fast check localised.

    Args:
        size: N, x's element count; localised: flat indices a fast check named.
        dtype: x's dtype (None: not known, the float64 cost is given); failing: how many
            elements failed (0: not known).
    """
    call = "lib.diagnose.diagnose(forward, backward, x, grad_output)"
    low_precision = dtype is not None and np.dtype(dtype).itemsize < 8
    base = (4 if low_precision else 2) * size + 5
    # Each failing element costs 3 to 8 calls per pass that fails it, more when it needs several
    # halvings; the hint gives the floor, which the size of x sets.
    cost = (f"about {base} more forward calls" if failing == 0 else
            f"at least {base + 3 * failing} more forward calls, a few more for each of the {failing} failing "
            f"element{'s' if failing != 1 else ''}")
    if size <= SLICE_HINT_SIZE or len(localised) == 0:
        return f"Why: {call} names the most likely cause ({cost})."
    where = ", ".join(str(int(i)) for i in localised)
    return (f"Why: {call} names the most likely cause ({cost}); on a slice of x around element(s) {where} "
            "that still fails it costs far less.")


#: The scale rtol multiplies, by rule name, as the report prints it.
PASS_RULES = {"symmetric": "max(|a|, |n|)", "numerical": "|n|"}


def tolerance_for(analytical, numerical, rtol: float, atol: float, rule: str = "symmetric") -> np.ndarray:
    """The per-element pass band: atol + rtol * max(|a|, |n|), float64.

    rule="numerical" gives atol + rtol * |n|, the band of the checker that
    failed (it scaled by the numerical side only, as PyTorch's gradcheck does).
    """
    scale = np.abs(numerical) if rule == "numerical" else np.maximum(np.abs(analytical), np.abs(numerical))
    return atol + rtol * scale


#: How many output roundings per output the pass rule allows for (see lib.gradcheck.differences):
#: the bound counts one rounding of each output; a forward rounds a few times on the way there.
NOISE_FACTOR = 4.0


def build_result(analytical, numerical, step, *, dtype, rtol, atol, divide_by="realised",
                 forward_calls=0, input_mutated=False, pass_rule="symmetric", slack=None,
                 probes=(), notes=(), band=None, smaller_steps=()) -> GradCheckResult:
    """Assemble a GradCheckResult from measured arrays (used by every checker here).

    slack: the allowance for the arithmetic in each numerical value (x's shape),
    added to the pass band as it is; None adds nothing (the plain rule).
    band: None, or x's shape with the whole pass band of the elements measured at
    smaller steps and NaN elsewhere (lib.gradcheck.kinks: a kink's band is not
    the rule's T(a, n)); smaller_steps: their SmallerStep records.
    """
    analytical = np.asarray(analytical, dtype=np.float64)
    numerical = np.asarray(numerical, dtype=np.float64)
    slack = np.zeros_like(numerical) if slack is None else np.asarray(slack, dtype=np.float64)
    tolerance = tolerance_for(analytical, numerical, rtol, atol, pass_rule) + slack
    if band is not None:
        band = np.asarray(band, dtype=np.float64).reshape(tolerance.shape)
        tolerance = np.where(np.isnan(band), tolerance, band)
    with np.errstate(invalid="ignore"):
        # inf <= inf holds, so an infinite gradient would pass without the finiteness test
        within = (np.abs(analytical - numerical) <= tolerance) & np.isfinite(analytical) & np.isfinite(numerical)
    return GradCheckResult(
        passed=bool(np.all(within)) and not input_mutated and all(p.passed for p in probes),
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
        noise=slack,
        probe_results=tuple(probes),
        notes=tuple(notes),
        smaller_steps=tuple(smaller_steps),
    )

