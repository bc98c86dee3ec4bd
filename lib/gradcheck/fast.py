"""Fast gradient check: random projections of the gradient, and localisation of failures.

The dense check (`lib.gradcheck.check_gradient`) costs two forward calls per
input element. This module checks the same quantity, the gradient of

    L(x) = sum(forward(x) * grad_output),

along a few random directions instead. Each probe costs two forward calls
whatever the size of x (there is no extra call at x itself), and backward is
called once. When a probe fails, the
failing elements are found by splitting the probe's support in halves (group
testing), one pair of forward calls per halving, and each element found is then
measured exactly as the dense mode measures it.

What one probe compares
-----------------------
Write g = grad_output, a = backward(g, x) (the analytical gradient), gamma = the
exact gradient of L, e = a - gamma, and h_i for the dense mode's half-step. A
probe draws random signs s_i in {-1, +1} and evaluates forward at

    x+ = x + h * s   and   x- = x - h * s,   both stored in x's dtype.

The perturbation that was actually applied is the difference of the two stored
arrays, d = x+ - x-. It is a vector, and in float32 it is not 2 h s: each of
its components is rounded on its own (x = -0.5, h = 1e-5 gives 2.0027e-5, not
2e-5). So no single number can be divided out of the numerator the way the
dense mode divides by its realised width. Instead both sides are evaluated
along the realised direction d itself:

    numerical   N = g . (f(x+) - f(x-))   = gamma . d + O(|d|^3)
    analytical  A = a . d                 (= u . backward(v, x) with u = d, v = g)

The output side is weighted by grad_output itself (v = g, not a random v): the
probe checks the same vector-Jacobian product as the dense mode, so a fast
failure means a dense failure, and the elements it localises are elements of
backward(grad_output). Central differences are exact to second order about the
midpoint of x+ and x-,
which is within half a unit of rounding of x, so N matches gamma . d up to
truncation and rounding. The report divides A, N and the tolerance by ||d||_2,
the length of the realised step: the directional derivative along the unit
vector d / ||d||. |d_i| = w_i, the dense mode's realised width of element i,
whatever the sign, so d = s * w exactly (float64 holds it without rounding).

The tolerance
-------------
A - N = sum_i e_i s_i w_i - rho, where rho collects the rounding of the stored
forward outputs. The dense pass rule accepts element i when
|a_i - n_i| <= atol + rtol * max(|a_i|, |n_i|); given a_i, the largest error it
accepts is

    t_i = (atol + rtol * |a_i|) / (1 - rtol).

If every element passes (|e_i| <= t_i), then sum_i e_i s_i w_i is a sum of
independent fair signs with fixed weights, and Hoeffding's inequality gives
P(|sum| >= lam * ||t * w||_2) <= 2 exp(-lam^2 / 2). For rounding, each stored
output is taken to be within eps * |f_j| of its exact value with independent,
mean-zero errors (eps: machine epsilon of the coarser of x's and the output's
dtype; the same model under which the dense step cbrt(eps) balances rounding
and truncation). Hoeffding again bounds |rho| by
lam * eps * ||g * (|f(x+)| + |f(x-)|)||_2 <= lam * eps * (||g f(x+)||_2 + ||g f(x-)||_2)
with the same probability; outputs that come out bitwise equal at x+ and x-
(those the perturbed elements do not reach) cancel exactly and are left out.
Each float64 dot product adds at most a small multiple of n * 2**-53 * sum(|terms|).
The tolerance is the sum of the three:

    T = lam * (||t * w||_2 + eps * (||g f(x+)||_2 + ||g f(x-)||_2)) + accumulation,
    lam = sqrt(2 ln(4 k / FALSE_ALARM))   for k probes (two bounds per probe).

Nothing in T is tuned: a backward that passes the dense rule everywhere fails
the fast check with probability at most FALSE_ALARM, so a fast failure is
evidence that the dense check fails too. Truncation (O(h^2) relative) is
neglected, as in the dense mode.

The blind spot
--------------
The price is sensitivity. One element off by e_j puts e_j s_j w_j into every
probe's residual; the rest of the residual (the other elements' errors and the
rounding) stays within the probe's T, which is what T bounds. So a probe is
certain to fail (up to FALSE_ALARM) once |e_j| w_j > 2 T, and the smallest
single-element error the check is guaranteed to see is

    2 min_k T_k / w_j        (FastCheckResult.detection_threshold)

roughly 2 lam * sqrt(sum_i (t_i w_i)^2) / w_j, which grows like sqrt(N). A
smaller error may or may not be seen (it is seen when it stands out of T
alone, from about half the threshold when the rest of the residual is small);
the dense mode sees every error above its own tolerance t_j. The result
reports the largest threshold over the elements (max_detection_threshold) in
its summary, pass or fail.

The screen
----------
T guarantees no false alarm, but it is wide: its errors part adds up what
the dense rule accepts at every element. A residual can stand far out of its
rounding part, lam * rounding + accumulation (the floor a correct, linear
forward cannot leave), while staying within T. Such a probe does not fail; it
starts the search below, and the check then fails only if the search isolates
an element that fails the dense rule (measured by lib.gradcheck.dense's
confirm_elements, the dense mode's own rule with its rounding allowance). So
the verdict on a named element is always the dense verdict, and a single
wrong element is found far below the guaranteed threshold whenever the other
elements' errors are small. A search started by the screen alone stops at the
first element it isolates, so a correct non-linear layer costs at most one
search when truncation lifts the residual over the floor.

Localisation
------------
The probes share one random sign vector; probe q > 0 flips it on its own random
half of the elements (each probe is still a uniformly random sign vector). So
any failing probe and a partner measure each half separately with no extra
call: (r_p + r_q) / 2 and (r_p - r_q) / 2 are the residuals A - N of the two
halves under probe p's signs. From there each group is split in two; the first
half is measured (two forward calls, perturbing only that half), the second is
inferred as the parent's residual minus the first's, with the rounding budgets
of both measurements. Groups whose residual exceeds their own tolerance are
searched, largest ratio first; if neither half does, the larger ratio is
followed, because the parent's failure must come from one of them. A single
wrong element among N is found in at most 2 * (ceil(log2 N) - 1) <= 2 log2 N
forward calls (2 * ceil(log2 N) with a single probe, which has no partner),
plus 2 to measure the element alone (the dense mode's central difference and
pass rule, rounding allowance included) and 2 more in float64 when it fails,
as the dense mode re-measures a failing element.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from lib import _checks
from lib.gradcheck.dense import confirm_elements, probe_gradients
from lib.gradcheck.differences import check_returned, numeric_output, require_finite
from lib.gradcheck.result import (
    MAX_REPORTED_ELEMENTS,
    GradCheckResult,
    GradientCheckError,
    diagnosis_hint,
    format_element_table,
    tolerance_line,
)
from lib.gradcheck.steps import _realised_points, default_step

#: Probability that a backward which passes the dense rule everywhere fails the fast check.
FALSE_ALARM = 1e-6

#: Two probes: the second doubles as the localisation's first split.
DEFAULT_PROBES = 2

#: The probes are drawn from a Generator seeded with this unless told otherwise.
DEFAULT_SEED = 0

#: Probe pairs whose forward outputs are reused with a random upstream gradient each
#: (one backward call each, no forward call), so that a backward that ignores or
#: squares grad_output fails even when grad_output is all ones.
RANDOM_UPSTREAM = 2

#: How many failing elements a failed fast check tracks down by default.
DEFAULT_LOCALISE = 3


# Unit roundoff of float64, for the accumulation error of each dot product.
_U64 = 2.0**-53

# Elements per block when a pass over a large array is cut into cache-sized
# pieces (64 KiB of float64). Small enough, too, that OpenBLAS computes each dot
# product on one thread: threaded dot products stall whenever the other core is
# busy, which on a shared 2-core machine is often.
_BLOCK = 1 << 13

# Passes with no dot product (element-wise arithmetic and comparisons) take
# bigger blocks (512 KiB of float64), for fewer calls from Python.
_WIDE_BLOCK = 1 << 16


def hoeffding_multiplier(probes: int) -> float:
    """lam = sqrt(2 ln(4 k / FALSE_ALARM)): the number of 'sigmas' in each probe's tolerance.

    Each probe makes two Hoeffding bounds (elements' errors, rounding), each
    exceeded with probability 2 exp(-lam^2 / 2); the union over 2k bounds is
    FALSE_ALARM.
    """
    return math.sqrt(2.0 * math.log(4.0 * probes / FALSE_ALARM))


def _ratio(residual: float, tolerance: float) -> float:
    """|residual| / tolerance; NaN, inf or a non-finite tolerance count as failures."""
    if residual == 0.0 and tolerance == 0.0:
        return 0.0
    if not math.isfinite(tolerance) or not math.isfinite(residual):
        return math.inf
    return math.inf if tolerance == 0.0 else abs(residual) / tolerance


@dataclass(frozen=True)
class FastCheckResult(GradCheckResult):
    """A GradCheckResult from the fast mode.

    The element arrays have x's shape, as in the dense mode: `analytical`
    (backward's output, float64) and `step` (each element's realised width
    x_i+ - x_i-, float64) are complete; `numerical` and `tolerance` hold values
    only where `measured` is True and NaN elsewhere (read-only views that take
    no memory when nothing was measured). Measured elements are the ones the
    localisation perturbed one at a time, exactly as the dense mode does.
    `error_ratio` is 0 for elements that were never measured. forward_calls
    counts every call: 2 per probe (there is no separate call at x itself),
    then search_calls and detail_calls.

    Probe arrays have shape (probes,), float64, in units of a directional
    derivative along the realised unit direction d / ||d|| (module docstring):

    Attributes (beyond GradCheckResult's):
        seed: the seed of the probes' Generator (None: fresh OS entropy).
        probe_analytical: (a . d) / ||d||, a = backward(grad_output, x).
        probe_numerical: grad_output . (f(x+) - f(x-)) / ||d||.
        probe_tolerance: T / ||d||, the tolerance derived from the pass rule.
        probe_step: ||d||_2, the length of the realised perturbation.
        measured: bool, x's shape: elements with a dense-mode measurement.
        localised_probe: the probe the localisation split, or None.
        search_calls: forward calls spent splitting groups of elements.
        detail_calls: forward calls spent measuring elements reached by inference.
        mutated_by: who wrote into the array it was given: "", "forward",
            "backward" or "forward and backward".

    Properties beyond the probe and element views: detection_threshold (x's
    shape) and max_detection_threshold, the blind spot of the probes (module
    docstring): a single-element error below it can go unseen.
    """

    seed: int | None = None
    probe_analytical: np.ndarray = field(default_factory=lambda: np.zeros(0))
    probe_numerical: np.ndarray = field(default_factory=lambda: np.zeros(0))
    probe_tolerance: np.ndarray = field(default_factory=lambda: np.zeros(0))
    probe_step: np.ndarray = field(default_factory=lambda: np.zeros(0))
    measured: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    localised_probe: int | None = None
    search_calls: int = 0
    detail_calls: int = 0
    mutated_by: str = ""

    @property
    def probes(self) -> int:
        return int(self.probe_analytical.size)

    @property
    def detection_threshold(self) -> np.ndarray:
        """2 min_k T_k / w_i, float64, x's shape: the smallest error in element i alone that
        some probe is certain to see (up to FALSE_ALARM).

        T_k = probe_tolerance * probe_step is probe k's tolerance on a . d;
        w_i is element i's realised width (`step`). An error below this in one
        element can pass the fast check while the dense mode fails it.
        """
        if not self.probes:
            return np.zeros(self.step.shape)
        tolerance = float(np.min(self.probe_tolerance * self.probe_step))
        with np.errstate(invalid="ignore", over="ignore"):
            return 2.0 * tolerance / self.step

    @property
    def max_detection_threshold(self) -> float:
        """The largest detection_threshold over the elements (the widest blind spot); 0 for an empty x."""
        threshold = self.detection_threshold
        return float(np.max(threshold)) if threshold.size else 0.0

    def _mutation_text(self) -> str:
        who = self.mutated_by or "forward or backward"
        return f"{who} modified the array it was given"

    @property
    def probe_error_ratio(self) -> np.ndarray:
        """|analytical - numerical| / tolerance per probe; a probe passes when <= 1."""
        return np.array([
            _ratio(a - n, t)
            for a, n, t in zip(self.probe_analytical, self.probe_numerical, self.probe_tolerance, strict=True)
        ])

    @property
    def probes_passed(self) -> np.ndarray:
        return self.probe_error_ratio <= 1.0

    @property
    def error_ratio(self) -> np.ndarray:
        """|a - n| / tolerance on measured elements (the dense rule), 0 elsewhere."""
        ratio = np.zeros(self.analytical.shape)
        m = self.measured
        diff = np.abs(self.analytical[m] - self.numerical[m])
        tol = self.tolerance[m]
        with np.errstate(divide="ignore", invalid="ignore"):
            r = diff / tol
        r[(diff == 0) & (tol == 0)] = 0.0
        r[np.isnan(r)] = np.inf
        ratio[m] = r
        return ratio

    def summary(self) -> str:
        """One line: PASS/FAIL, probes within tolerance, failing elements found, the blind spot."""
        verdict = "PASS" if self.passed else "FAIL"
        ratios = self.probe_error_ratio
        worst = float(np.max(ratios)) if ratios.size else 0.0
        line = (
            f"{verdict}: {int(np.sum(ratios <= 1.0))}/{ratios.size} probes within tolerance, "
            f"max error/tolerance {worst:.4g}"
        )
        failing = self.failing_indices
        if failing.size:
            line += f"; failing elements found: {failing.tolist()}"
        if self.input_mutated:
            line += f"; {self._mutation_text()}"
        return line + f"; a single-element error below {self.max_detection_threshold:.4g} can go unseen"

    def report(self, max_rows: int = MAX_REPORTED_ELEMENTS) -> str:
        """The dense report's layout: tolerance, then the probes, then the elements found."""
        failing = self.failing_indices
        n_failed_probes = int(np.sum(~self.probes_passed))
        if self.input_mutated:
            # The reason for the failure whatever the probes say: a forward that
            # writes to its input corrupts the points it is evaluated at.
            head = f"Gradient check failed for {self.dtype}: {self._mutation_text()} (input mutation)"
            if failing.size:
                head += f"; gradient mismatch at index {int(failing[0])}"
        elif failing.size:
            head = f"Gradient check failed for {self.dtype}: gradient mismatch at index {int(failing[0])}"
        elif n_failed_probes:
            head = (
                f"Gradient check failed for {self.dtype}: a random projection of the gradient is off "
                "(no failing element localised)"
            )
        else:
            head = f"Gradient check passed for {self.dtype}"
        threshold = self.detection_threshold.reshape(-1)
        blind = ""
        if threshold.size:
            worst = int(np.argmax(threshold))
            blind = (f"; a single-element error below {threshold[worst]:.4g} can go unseen "
                     f"(2T/w, largest at index {worst})")
        lines = [
            head,
            tolerance_line(self),
            f"Fast mode: {n_failed_probes} of {self.probes} random projections failed (seed {self.seed}); "
            "each compares a.d with grad_output.(f(x+) - f(x-)) along the realised step d,",
            f"with a tolerance derived from the pass rule and the rounding budget (lib.gradcheck.fast){blind}",
            format_probe_table(self),
        ]
        measured = np.flatnonzero(self.measured.ravel())
        if measured.size:
            lines.append(
                f"Localised {failing.size} failing element{'s' if failing.size != 1 else ''} "
                f"by splitting probe {self.localised_probe} in {self.search_calls} forward calls "
                f"(+{self.detail_calls} to measure elements reached by inference); "
                f"each element perturbed alone, as in the dense mode:"
            )
            rows = failing[:max_rows] if failing.size else measured[:max_rows]
            lines.append(format_element_table(self, rows))
            if failing.size > max_rows:
                lines.append(f"  ... and {failing.size - max_rows} more failing elements")
        lines.append(f"Numerical gradient divided by the {self.divide_by} step")
        if self.input_mutated:
            lines.append(f"Warning: {self._mutation_text()}.")
        lines.extend(self.notes)
        return "\n".join(lines)


def format_probe_table(result: FastCheckResult) -> str:
    """Aligned rows per probe: analytical, numerical, difference, tolerance, step, err/tol."""
    header = (
        f"{'probe':>10} {'analytical':>14} {'numerical':>14} {'difference':>12} "
        f"{'tolerance':>11} {'step':>11} {'err/tol':>8}"
    )
    rows = [header]
    ratios = result.probe_error_ratio
    for k in range(result.probes):
        a, n = result.probe_analytical[k], result.probe_numerical[k]
        rows.append(
            f"{k:>10} {a:>14.8g} {n:>14.8g} {a - n:>12.4e} "
            f"{result.probe_tolerance[k]:>11.4e} {result.probe_step[k]:>11.4e} {ratios[k]:>8.3g}"
        )
    return "\n".join(rows)


@dataclass
class _Group:
    """A run order[lo:hi] of elements and what is known of its residual under one probe's signs.

    Attributes:
        lo, hi: the group is order[lo:hi] (see _Search).
        residual: a . d - g . (f(x+) - f(x-)) restricted to the group, float.
        numerical: g . (f(x+) - f(x-)) when this exact group was perturbed and
            measured; None when the residual was inferred from other groups.
        analytical: a . d over the group when measured, else None.
        hoeffding: ||t * w||_2 over the group.
        rounding: the rounding scale of the measurements the residual came from.
        accumulation: float64 dot-product error bound of those measurements.
    """

    lo: int
    hi: int
    residual: float
    numerical: float | None
    hoeffding: float
    rounding: float
    accumulation: float
    analytical: float | None = None

    @property
    def size(self) -> int:
        return self.hi - self.lo

    def tolerance(self, lam: float) -> float:
        return lam * (self.hoeffding + self.rounding) + self.accumulation

    def screen_ratio(self, lam: float) -> float:
        """Residual over the rounding floor alone: above 1, something besides rounding moved it."""
        return _ratio(self.residual, lam * self.rounding + self.accumulation)

    def ratio(self, lam: float) -> float:
        return _ratio(self.residual, self.tolerance(lam))


class _Norm:
    """A Euclidean norm added up block by block without overflow.

    Sums of squares are added as they are while they stay finite (the common
    case, one dot product a block); once a square overflows, as it does for
    values beyond about 1e154 in float64, the sum is kept as scale * sqrt(ssq)
    with every block divided by the running scale first (LAPACK's nrm2 idea).
    """

    __slots__ = ("scale", "ssq")

    def __init__(self) -> None:
        self.scale, self.ssq = 0.0, 0.0  # scale 0: ssq is a plain sum of squares

    def add(self, v: np.ndarray) -> None:
        if self.scale == 0.0:
            with np.errstate(over="ignore"):
                total = self.ssq + float(np.dot(v, v))
            if math.isfinite(total):
                self.ssq = total
                return
            self.scale, self.ssq = math.sqrt(self.ssq) or 1.0, 1.0 if self.ssq else 0.0
        largest = float(np.max(np.abs(v))) if v.size else 0.0
        if largest > self.scale:
            self.ssq *= (self.scale / largest) ** 2
            self.scale = largest
        if largest:
            r = v / self.scale
            self.ssq += float(np.dot(r, r))

    @property
    def value(self) -> float:
        return math.sqrt(self.ssq) if self.scale == 0.0 else self.scale * math.sqrt(self.ssq)


def _norm(v: np.ndarray) -> float:
    norm = _Norm()
    norm.add(np.asarray(v, dtype=np.float64).reshape(-1))
    return norm.value


class _Prober:
    """Evaluates g . (f(x+) - f(x-)) and its rounding budget for a perturbation.

    Holds x (flat, its dtype), a private copy of it that localisation perturbs
    and restores (made on first use), a copy buffer for one output (its dtype),
    grad_output (flat, its own dtype: converted to float64 a block at a time)
    and block-sized float64 buffers, reused so that a 1e6-element check touches
    little fresh memory. Counts forward calls.
    """

    def __init__(self, forward, x: np.ndarray, grad: np.ndarray):
        self.forward = forward
        self.shape = x.shape
        self.x_flat = x.reshape(-1)
        self._work: np.ndarray | None = None
        self.grad_shape = grad.shape
        self.out_shape = None
        self.f_plus: np.ndarray | None = None
        self.g = grad.reshape(-1)
        block = min(self.g.size, _BLOCK)
        self.diff, self.scratch, self.g_block = np.empty(block), np.empty(block), np.empty(block)
        self.x_eps = float(np.finfo(x.dtype).eps)
        self.calls = 0
        self.record = False
        self.recorded: list[tuple[np.ndarray, np.ndarray, float]] = []

    @property
    def work(self) -> np.ndarray:
        if self._work is None:
            self._work = self.x_flat.copy()
        return self._work

    def _call(self, arr: np.ndarray) -> tuple[np.ndarray, float]:
        """(forward(arr) as an array, the machine epsilon of its dtype, at least x's)."""
        raw = numeric_output(self.forward(arr), "forward")
        self.calls += 1
        if self.out_shape is None:
            # The first call tells the output's shape, which grad_output must have.
            if raw.shape != self.grad_shape:
                raise ValueError(
                    f"grad_output must have the shape of forward(x), {raw.shape}; got {self.grad_shape}")
            self.out_shape = raw.shape
        elif raw.shape != self.out_shape:
            raise ValueError(f"forward returned shape {raw.shape} on one perturbed input but {self.out_shape} on "
                             "another")
        if np.issubdtype(raw.dtype, np.floating):
            return raw, max(self.x_eps, float(np.finfo(raw.dtype).eps))
        return raw, self.x_eps

    def _pair(self, x_plus: np.ndarray, x_minus: np.ndarray, before_minus=None, *, few_change: bool = False):
        raw, eps_plus = self._call(x_plus)
        # Copy at once (in its own dtype): a forward may return a view of its
        # input, or a buffer it reuses on its next call.
        if self.f_plus is None or self.f_plus.dtype != raw.dtype:
            self.f_plus = np.empty(raw.size, dtype=raw.dtype)
        np.copyto(self.f_plus, raw.reshape(-1))
        if before_minus is not None:
            before_minus()
        f_minus, eps_minus = self._call(x_minus)
        if self.record:  # kept for the random upstream gradient, which reuses these two calls
            self.recorded.append((self.f_plus.copy(), np.array(f_minus).reshape(-1), max(eps_plus, eps_minus)))
            self.record = False
        # Used right away, before anything else runs: no copy needed.
        return self._difference(f_minus.reshape(-1), max(eps_plus, eps_minus), few_change=few_change)

    def full(self, buffer: np.ndarray, positive: np.ndarray, plus: np.ndarray, minus: np.ndarray, *,
             check_input: bool = False):
        """Evaluate with every element perturbed along the signs `positive`.

        `buffer` (x's shape and dtype) holds x+ for the first call, then is
        turned into x- in place. Returns the _difference triple and, when
        check_input, whether forward left x+ as it was given.
        """
        _fill_plus(buffer, positive, plus, minus)
        intact = [True]

        def turn_to_minus():
            if check_input:
                intact[0] = _holds_plus(buffer, positive, plus, minus)
            _flip_points(buffer, plus, minus)

        return self._pair(buffer, buffer, before_minus=turn_to_minus), intact[0]

    def part(self, index: np.ndarray, plus: np.ndarray, minus: np.ndarray, original: np.ndarray):
        """Evaluate with only x[index] moved, to `plus` then `minus`; the private copy is restored."""
        flat = self.work
        work = flat.reshape(self.shape)

        def move_to_minus():
            flat[index] = minus

        try:
            flat[index] = plus
            return self._pair(work, work, before_minus=move_to_minus, few_change=index.size < flat.size // 2)
        finally:
            flat[index] = original

    def _difference(self, f_minus: np.ndarray, eps: float, *, few_change: bool = False):
        """(g . (f+ - f-), rounding scale, float64 accumulation bound).

        Walks the outputs in cache-sized blocks through reused buffers: each
        output is read from memory once, and nothing output-sized is allocated.
        few_change: only some elements moved, so look for outputs that did not.
        """
        f_plus, g = self.f_plus, self.g
        numerical = 0.0
        plus_norm, minus_norm, diff_norm, g_norm = _Norm(), _Norm(), _Norm(), _Norm()
        size = g.size
        for lo in range(0, size, _BLOCK):
            hi = lo + _BLOCK
            p, m, gb = f_plus[lo:hi], f_minus[lo:hi], g[lo:hi]
            if gb.dtype != np.float64:
                gb = self.g_block[: gb.size]
                np.copyto(gb, g[lo:hi])
            d = self.diff[: gb.size]
            # Subtract element by element in float64 (exact for float32
            # outputs), then reduce with grad_output. With at most _BLOCK
            # outputs this is one np.dot, the dense mode's exact arithmetic.
            np.subtract(p, m, out=d, dtype=np.float64)
            numerical += float(np.dot(d, gb))
            # An output that comes out bitwise equal at x+ and x- does not
            # depend on the perturbed elements: both evaluations did the same
            # arithmetic and its rounding cancels in the difference. Leaving
            # such outputs out pays when they are many (a localisation group);
            # otherwise keeping them in is merely conservative.
            if few_change:
                changed = np.count_nonzero(d)
                if changed == 0:
                    continue
                if 2 * changed < d.size:
                    keep = np.flatnonzero(d)
                    p, m, d, gb = p[keep], m[keep], d[keep], gb[keep]
            scratch = self.scratch[: d.size]
            # The Hoeffding scale ||g * (|f+| + |f-|)||_2, bounded above by
            # ||g * f+||_2 + ||g * f-||_2.
            np.multiply(p, gb, out=scratch)
            plus_norm.add(scratch)
            np.multiply(m, gb, out=scratch)
            minus_norm.add(scratch)
            diff_norm.add(d)
            g_norm.add(gb)
        if not math.isfinite(numerical) and not (np.all(np.isfinite(f_plus)) and np.all(np.isfinite(f_minus))):
            raise ValueError("forward(x) returned non-finite values (inf or NaN); the check needs finite outputs")
        rounding = eps * (plus_norm.value + minus_norm.value)
        # sum |diff_j g_j| <= ||diff||_2 ||g||_2 over the outputs kept (Cauchy-Schwarz).
        accumulation = size * _U64 * diff_norm.value * g_norm.value
        return numerical, rounding, accumulation

    def still_intact(self) -> bool:
        """The private copy, if made, still equals x (a forward that writes to its input breaks this)."""
        return self._work is None or _same_bits(self._work, self.x_flat)


_UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def _dot(u: np.ndarray, v: np.ndarray) -> float:
    """u . v in float64, summed over _BLOCK-sized pieces (each a one-thread BLAS call)."""
    return float(sum(np.dot(u[lo : lo + _BLOCK], v[lo : lo + _BLOCK]) for lo in range(0, u.size, _BLOCK)))


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Bitwise equality of two arrays of one float dtype (NaN equals the same NaN)."""
    kind = _UNSIGNED[a.dtype.itemsize]
    return bool(np.array_equal(np.ascontiguousarray(a).view(kind), np.ascontiguousarray(b).view(kind)))


def _fill_plus(buffer: np.ndarray, positive: np.ndarray, plus: np.ndarray, minus: np.ndarray) -> None:
    """buffer = plus where positive else minus (flat views of x's dtype), by bit operations.

    A mask-driven np.where on random signs mispredicts half its branches;
    these are streaming integer passes over cached blocks and give the same bits.
    """
    kind = _UNSIGNED[plus.dtype.itemsize]
    out, plus_bits, minus_bits = buffer.reshape(-1).view(kind), plus.view(kind), minus.view(kind)
    flip = np.empty(min(plus.size, _WIDE_BLOCK), dtype=kind)
    for lo in range(0, plus.size, _WIDE_BLOCK):
        hi = lo + _WIDE_BLOCK
        bits = out[lo:hi]
        flip_block = flip[: bits.size]
        np.bitwise_xor(plus_bits[lo:hi], minus_bits[lo:hi], out=flip_block)  # plus ^ minus
        np.copyto(bits, positive[lo:hi].view(np.uint8), casting="unsafe")  # 1 where positive
        np.subtract(bits, 1, out=bits)  # 0 where positive, all ones elsewhere
        bits &= flip_block  # plus ^ minus where negative, 0 elsewhere
        bits ^= plus_bits[lo:hi]  # plus where positive, minus elsewhere


def _flip_points(buffer: np.ndarray, plus: np.ndarray, minus: np.ndarray) -> None:
    """Replace each element of buffer (plus or minus) by the other of its two points."""
    kind = _UNSIGNED[plus.dtype.itemsize]
    out, plus_bits, minus_bits = buffer.reshape(-1).view(kind), plus.view(kind), minus.view(kind)
    for lo in range(0, plus.size, _WIDE_BLOCK):
        hi = lo + _WIDE_BLOCK
        out[lo:hi] ^= plus_bits[lo:hi]
        out[lo:hi] ^= minus_bits[lo:hi]


def _holds_plus(buffer: np.ndarray, positive: np.ndarray, plus: np.ndarray, minus: np.ndarray) -> bool:
    """buffer still holds exactly what _fill_plus put there (a forward may write to its input)."""
    kind = _UNSIGNED[plus.dtype.itemsize]
    given = buffer.reshape(-1).view(kind)
    again = np.empty(min(plus.size, _WIDE_BLOCK), dtype=plus.dtype)
    for lo in range(0, plus.size, _WIDE_BLOCK):
        hi = lo + _WIDE_BLOCK
        block = again[: given[lo:hi].size]
        _fill_plus(block, positive[lo:hi], plus[lo:hi], minus[lo:hi])
        if not np.array_equal(block.view(kind), given[lo:hi]):
            return False
    return True


def _random_half(rng: np.random.Generator, n: int) -> np.ndarray:
    """A uniformly random subset of exactly n // 2 of n elements, as a bool mask.

    Fair coins, then the surplus side thinned by clearing uniformly random
    members one at a time (drawn in batches, repeats and non-members skipped):
    uniform over subsets of that size, since every element is treated alike,
    and with no index array of size n.
    """
    flip = rng.integers(0, 2, size=n, dtype=bool)
    excess = int(np.count_nonzero(flip)) - n // 2
    surplus = excess > 0  # True: too many set, clear some; False: too few, set some
    excess = abs(excess)
    while excess:
        draws = rng.integers(0, n, size=2 * excess + 16)
        draws = draws[flip[draws] == surplus]
        _, first = np.unique(draws, return_index=True)
        chosen = draws[np.sort(first)][:excess]  # in order of drawing, repeats dropped
        flip[chosen] = not surplus
        excess -= chosen.size
    return flip


class _Search:
    """Group testing over one failing probe.

    The elements are laid out once in `order` (flat indices, int64) so that
    every group the search meets is a contiguous run order[lo:hi]; the
    analytical gradient, the realised widths and the probe's signs are permuted
    the same way, so a group's analytical side and tolerance come from slices.
    """

    def __init__(self, prober: _Prober, lam: float, order: np.ndarray, positive: np.ndarray,
                 plus, minus, width, a64, *, rtol: float, atol: float, confirm=None):
        self.prober, self.lam, self.order = prober, lam, order
        self.confirm = confirm
        self.rtol, self.atol = rtol, atol
        self.positive = positive[order]
        self.w = width[order]
        self.a = a64[order]
        self.plus_values, self.minus_values = plus, minus
        self.search_calls = 0
        self.detail_calls = 0

    def _slices(self, lo: int, hi: int):
        """(a, d, |a| w, t w) of the group order[lo:hi], float64."""
        a, w = self.a[lo:hi], self.w[lo:hi]
        d = np.where(self.positive[lo:hi], w, -w)
        abs_aw = np.abs(a) * w
        with np.errstate(invalid="ignore", over="ignore"):
            tw = (self.atol * w + self.rtol * abs_aw) / (1.0 - self.rtol)
        return a, d, abs_aw, tw

    def measure(self, lo: int, hi: int) -> _Group:
        index = self.order[lo:hi]
        up = self.positive[lo:hi]
        plus, minus = self.plus_values[index], self.minus_values[index]
        numerical, rounding, accumulation = self.prober.part(
            index, np.where(up, plus, minus), np.where(up, minus, plus), self.prober.x_flat[index])
        a, d, abs_aw, tw = self._slices(lo, hi)
        analytical = _dot(a, d)
        accumulation += (hi - lo) * _U64 * float(np.sum(abs_aw))
        return _Group(lo, hi, analytical - numerical, numerical, _norm(tw), rounding,
                      accumulation, analytical)

    def inferred(self, lo: int, hi: int, residual: float, rounding: float, accumulation: float) -> _Group:
        tw = self._slices(lo, hi)[3]
        return _Group(lo, hi, residual, None, _norm(tw), rounding, accumulation)

    def run(self, start: list[_Group], *, rtol: float, atol: float, localise: int, screen_only: bool = False):
        """Search the failing groups in `start` for elements that fail the dense rule.

        Returns:
            (leaves, stopped): leaves lists (flat index, numerical gradient,
            its _Group, its dense tolerance) for every element measured alone;
            stopped is True when the forward-call budget ran out first.
        """
        n = self.order.size
        call_cap = 2 * localise * (max(math.ceil(math.log2(n)), 0) + 1)
        found = 0
        leaves: list[tuple[int, float, _Group]] = []
        stack = _worth_searching(start, self.lam)
        while stack and found < localise:
            group = stack.pop()
            if group.size == 1:
                # The element alone, measured and judged exactly as the dense mode does.
                j = int(self.order[group.lo])
                numerical, tolerance, calls = self.confirm(j)
                self.detail_calls += calls
                leaves.append((j, numerical, group, tolerance))
                with np.errstate(invalid="ignore"):
                    passes = abs(self.a[group.lo] - numerical) <= tolerance
                found += not passes
                if screen_only and passes:
                    # only the rounding floor was crossed, and the likeliest element is fine
                    return leaves, False
                continue
            if self.search_calls + 2 > call_cap:
                return leaves, True
            cut = group.lo + group.size // 2
            left = self.measure(group.lo, cut)
            self.search_calls += 2
            right = self.inferred(cut, group.hi, group.residual - left.residual,
                                  group.rounding + left.rounding, group.accumulation + left.accumulation)
            stack.extend(_worth_searching((left, right), self.lam))
        return leaves, False


def _worth_searching(halves, lam: float) -> list[_Group]:
    """The halves of a failing group to search, in stack order (the largest ratio last).

    Halves over their own tolerance are searched; if neither is, the parent's
    excess still lies in one of them, most likely the one nearer to failing.
    """
    ordered = sorted(halves, key=lambda g: g.ratio(lam))
    over = [g for g in ordered if g.ratio(lam) > 1.0]
    return over if over else ordered[-1:]


def _points(x: np.ndarray, eps):
    """Flat (plus, minus, width) exactly as lib.gradcheck's dense mode computes them.

    plus, minus: x +- h in x's dtype; width = plus - minus in float64 (exact);
    h = default_step(x) = scale * max(1, |x|) (scale read off default_step
    itself) or the given eps. The same element-wise arithmetic as the dense
    mode, done in cache-sized blocks through reused buffers; a step too small
    to move some element raises the dense mode's error.
    """
    flat = x.reshape(-1)
    plus = np.empty(flat.size, dtype=x.dtype)
    minus = np.empty_like(plus)
    width = np.empty(flat.size)
    scale = float(default_step(np.ones(1, dtype=x.dtype))[0])  # scale * max(1, 1)
    size = min(flat.size, _WIDE_BLOCK)
    x64, half, shifted = np.empty(size), np.empty(size), np.empty(size)
    for lo in range(0, flat.size, _WIDE_BLOCK):
        hi = lo + _WIDE_BLOCK
        k = flat[lo:hi].size
        xb, hb, sb = x64[:k], half[:k], shifted[:k]
        np.copyto(xb, flat[lo:hi])
        if eps is None:
            np.abs(xb, out=hb)
            np.maximum(hb, 1.0, out=hb)
            np.multiply(hb, scale, out=hb)
        else:
            hb.fill(float(eps))
        # Rounded to float64, then to x's dtype, as in the dense mode; an overflow
        # to inf is reported below with the dense mode's message, naming x.
        with np.errstate(over="ignore", invalid="ignore"):
            np.add(xb, hb, out=sb)
            plus[lo:hi] = sb
            np.subtract(xb, hb, out=sb)
            minus[lo:hi] = sb
            np.subtract(plus[lo:hi], minus[lo:hi], out=width[lo:hi], dtype=np.float64)
    if not np.all(width) or not np.all(np.isfinite(width)):
        step = default_step(x) if eps is None else np.full(x.shape, float(eps))
        _realised_points(x, step)  # raises the dense mode's message for the first such element
    return plus, minus, width


def _draw_probes(rng: np.random.Generator, n: int, probes: int):
    """The probes' signs (bool, True is +1, shape (n,) each) and the half each later one flips.

    One shared random sign vector; probe q > 0 flips it on its own random half,
    so every probe is a uniformly random sign vector and any two of them
    measure each half of their disagreement separately.
    """
    signs = [rng.integers(0, 2, size=n, dtype=bool)]
    flips: list[np.ndarray | None] = [None]
    for _ in range(1, probes):
        flips.append(_random_half(rng, n))
        signs.append(signs[0] ^ flips[-1])
    return signs, flips


def _numerical_sides(prober: _Prober, signs, plus: np.ndarray, minus: np.ndarray):
    """Each probe's (g . (f(x+) - f(x-)), rounding scale, accumulation bound); and whether
    forward wrote to the array it was given (checked on the first call: a forward that
    writes to its input does so on every call)."""
    buffer = np.empty(prober.shape, dtype=plus.dtype)
    sides, intact = [], True
    for k, positive in enumerate(signs):
        prober.record = k < RANDOM_UPSTREAM
        side, ok = prober.full(buffer, positive, plus, minus, check_input=k == 0)
        sides.append(side)
        intact = intact and ok
    return sides, not intact


def _probe_groups(sides, signs, width: np.ndarray, a_flat: np.ndarray, *, rtol: float, atol: float):
    """Each probe's residual a . d - g . (f(x+) - f(x-)) over every element, as a _Group;
    and ||d||_2 = ||w||_2, the realised step length shared by every probe.

    Block by block through reused buffers: a . d is twice the sum of a_i w_i
    over + signs minus the sum over all, and ||t * w||_2 (t = (atol +
    rtol |a|) / (1 - rtol)) expands into sums of non-negative terms.
    """
    n = a_flat.size
    aw_block, sign_block = np.empty(min(n, _BLOCK)), np.empty(min(n, _BLOCK))
    aw_total = abs_aw_total = 0.0
    tw_norm, w_norm = _Norm(), _Norm()
    plus_sides = [0.0] * len(signs)
    with np.errstate(invalid="ignore", over="ignore"):
        for lo in range(0, n, _BLOCK):
            hi = lo + _BLOCK
            w = width[lo:hi]
            aw = aw_block[: w.size]
            np.multiply(a_flat[lo:hi], w, out=aw)
            aw_total += float(np.sum(aw))
            for k, positive in enumerate(signs):
                block = sign_block[: w.size]
                np.copyto(block, positive[lo:hi], casting="unsafe")
                plus_sides[k] += float(np.dot(aw, block))
            np.abs(aw, out=aw)
            abs_aw_total += float(np.sum(aw))
            # t_i w_i = atol w_i + rtol |a_i| w_i (over 1 - rtol, applied at the end)
            np.multiply(aw, rtol, out=aw)
            aw += atol * w
            tw_norm.add(aw)
            w_norm.add(w)
        hoeffding = tw_norm.value / (1.0 - rtol)
    groups = []
    for (numerical, rounding, accumulation), plus_side in zip(sides, plus_sides, strict=True):
        analytical = 2.0 * plus_side - aw_total
        # The cancellation in 2 * plus_side - total stays within 3 n u sum |a_i w_i|.
        accumulation += 3 * n * _U64 * abs_aw_total
        groups.append(_Group(0, n, analytical - numerical, numerical, hoeffding, rounding, accumulation,
                             analytical))
    return groups, w_norm.value


def _random_upstream_group(recorded, v: np.ndarray, a_v: np.ndarray, positive: np.ndarray,
                           width: np.ndarray, *, rtol: float, atol: float) -> _Group:
    """One probe's pair of forward calls (`recorded`) contracted with a random upstream gradient v.

    Its analytical side is backward(v, x) . d: one backward call, no forward call.
    Tolerance as for the probes, with v and backward(v) in place of g and a.
    """
    f_plus, f_minus, eps = recorded
    v64 = v.reshape(-1).astype(np.float64)
    diff = np.subtract(f_plus, f_minus, dtype=np.float64)
    numerical = float(np.dot(diff, v64))
    moved = diff != 0.0
    rounding = eps * (_norm(v64[moved] * f_plus[moved]) + _norm(v64[moved] * f_minus[moved]))
    d = np.where(positive, width, -width)
    analytical = float(np.dot(a_v, d))
    with np.errstate(over="ignore", invalid="ignore"):
        tw = (atol * width + rtol * np.abs(a_v) * width) / (1.0 - rtol)
    accumulation = 4 * (a_v.size + v64.size) * _U64 * (float(np.sum(np.abs(a_v * d))) +
                                                         float(np.sum(np.abs(diff * v64))))
    return _Group(0, a_v.size, analytical - numerical, numerical, _norm(tw), rounding,
                  accumulation, analytical)


def _random_upstream_groups(prober: _Prober, backward, grad_output, work, rng, signs, width, *, rtol, atol):
    """One _Group per recorded probe pair, each with its own random upstream gradient and backward call."""
    grad = np.asarray(grad_output)
    upstream = probe_gradients(grad.shape, grad.dtype, len(prober.recorded), int(rng.integers(2**63)))
    groups = []
    for recorded, v, positive in zip(prober.recorded, upstream, signs, strict=False):
        a_v = check_returned(backward(v.copy(), work), work.shape, "backward", "x")
        groups.append(_random_upstream_group(recorded, v, np.asarray(a_v, dtype=np.float64).reshape(-1),
                                             positive, width, rtol=rtol, atol=atol))
    prober.recorded.clear()  # the copies of the outputs are not needed any more
    return groups


def _start_search(prober, lam, groups, signs, flips, chosen, plus, minus, width, a_flat, *, rtol, atol,
                  confirm):
    """The search over probe `chosen`, and the groups it starts from."""
    n = a_flat.size
    root = groups[chosen]
    if len(groups) == 1 or n == 1:
        search = _Search(prober, lam, np.arange(n), signs[chosen], plus, minus, width, a_flat,
                         rtol=rtol, atol=atol, confirm=confirm)
        return search, [root]
    partner = 1 if chosen == 0 else 0
    flip = flips[max(chosen, partner)]
    other = groups[partner]
    order = np.concatenate([np.flatnonzero(~flip), np.flatnonzero(flip)])
    search = _Search(prober, lam, order, signs[chosen], plus, minus, width, a_flat, rtol=rtol, atol=atol,
                     confirm=confirm)
    # On the unflipped half the two probes agree, on the flipped half they
    # disagree: half the sum and half the difference of their residuals are
    # the two halves' residuals under the chosen probe's signs. Free.
    cut = n - n // 2
    rounding = 0.5 * (root.rounding + other.rounding)
    accumulation = 0.5 * (root.accumulation + other.accumulation)
    return search, [
        search.inferred(0, cut, 0.5 * (root.residual + other.residual), rounding, accumulation),
        search.inferred(cut, n, 0.5 * (root.residual - other.residual), rounding, accumulation),
    ]


def _validated_grad_output(grad_output) -> np.ndarray:
    """grad_output as a real array (its shape is checked against forward's first output)."""
    grad = np.asarray(grad_output)
    if not np.issubdtype(grad.dtype, np.number) or np.iscomplexobj(grad):
        raise TypeError(f"grad_output must be a real numeric array; got dtype {grad.dtype}")
    if not np.all(np.isfinite(grad)):
        raise ValueError("grad_output must be finite")
    return grad


def check_gradient_fast(forward, backward, x, grad_output, *, probes=DEFAULT_PROBES, rtol=1e-3, atol=1e-6,
                        eps=None, seed=DEFAULT_SEED, localise=DEFAULT_LOCALISE,
                        raise_on_failure=True) -> FastCheckResult:
    """Check backward against central differences of forward along random directions.

    Checks the same loss as the dense mode, L(x) = sum(forward(x) * grad_output),
    but along `probes` random sign directions: 2 * probes forward calls and one
    backward call, whatever x's size. A probe compares a . d with
    grad_output . (f(x+) - f(x-)), where d = x+ - x- is the perturbation as
    actually stored in x's dtype; its tolerance is the largest value the dense
    pass rule allows for a random-sign sum of per-element errors, plus a
    rounding budget (module docstring). A backward that passes the dense rule
    everywhere fails with probability at most FALSE_ALARM.

    On failure, up to `localise` failing elements are found by splitting the
    failing probe's support in halves, and each is measured alone (the dense
    mode's central difference) and reported with its analytical, numerical,
    difference, tolerance and realised step.

    Args:
        forward: forward(x) -> y, any output shape; must be deterministic.
        backward: backward(grad_output, x) -> grad_x of x's shape.
        x: floating array (float16/32/64), any shape; never modified.
        grad_output: array of y's shape; the loss is sum(y * grad_output).
        probes: number of random directions, an integer >= 1.
        rtol, atol: the dense pass rule |a - n| <= atol + rtol * max(|a|, |n|);
            rtol must be < 1 here (the rule bounds |a - n| only then).
        eps: half-step; None picks the dense mode's cbrt(eps_dtype) * max(1, |x_i|).
        seed: seed of the checker's own Generator (never the global RNG); the
            same seed gives the same probes. None draws fresh OS entropy.
        localise: how many failing elements to track down (0: none).
        raise_on_failure: raise GradientCheckError (with `.result`) on failure; its
            message is the report and a line saying how to ask lib.diagnose why.

    Returns:
        FastCheckResult: per-probe values (shape (probes,)), per-element
        analytical and realised step (x's shape), and dense-mode numerical and
        tolerance for the elements the localisation measured.
    """
    if not callable(forward):
        raise TypeError(f"forward must be callable, forward(x) -> y; got {type(forward).__name__}")
    if not callable(backward):
        raise TypeError(f"backward must be callable, backward(grad_output, x) -> grad_x; got "
                        f"{type(backward).__name__}")
    rtol = _checks.non_negative(rtol, "rtol")
    if rtol >= 1.0:
        raise ValueError(f"rtol must be < 1 in fast mode (the pass rule bounds |a - n| only then); got {rtol!r}")
    atol = _checks.non_negative(atol, "atol")
    probes = _checks.positive_int(probes, "probes", low=1)
    localise = _checks.positive_int(localise, "localise", low=0)
    if eps is not None:
        _checks.positive_step(eps)
    rng = _checks.seed_or_rng(seed, None)
    x = require_finite(_checks.float_array(x, "x"))
    grad = _validated_grad_output(grad_output)
    plus, minus, width = _points(x, eps)
    prober = _Prober(forward, x, grad)
    lam = hoeffding_multiplier(probes)

    # Forward first: its first call also tells grad_output's expected shape.
    # There is no separate call at x itself; every call is part of a probe.
    signs, flips = _draw_probes(rng, x.size, probes)
    if x.size:
        sides, forward_wrote = _numerical_sides(prober, signs, plus, minus)
    else:
        prober._call(x.copy())  # nothing to perturb; still check grad_output's shape
        sides, forward_wrote = [], False
    # backward gets a private copy of x, never x itself.
    work = x.copy()
    given = np.array(grad_output, copy=True)
    analytical = check_returned(backward(given, work), x.shape, "backward", "x")
    grad_wrote = not _same_bits(given, np.asarray(grad_output))
    a64 = np.asarray(analytical, dtype=np.float64)
    random_groups = _random_upstream_groups(prober, backward, grad_output, work, rng, signs, width,
                                            rtol=rtol, atol=atol) if x.size else []
    a_flat = a64.reshape(-1)
    backward_wrote = not _same_bits(work, x) or grad_wrote
    mutated_early = forward_wrote or backward_wrote
    if x.size == 0:
        return FastCheckResult(passed=not mutated_early, dtype=str(x.dtype), analytical=a64,
                               numerical=a64.copy(), tolerance=a64.copy(), step=a64.copy(), rtol=rtol, atol=atol,
                               forward_calls=prober.calls, input_mutated=mutated_early, seed=seed,
                               measured=np.zeros(x.shape, dtype=bool),
                               mutated_by=_writers(forward_wrote, backward_wrote))
    # Reported per unit of the realised step length ||d||_2 (directional derivatives).
    groups, step_length = _probe_groups(sides, signs, width, a_flat, rtol=rtol, atol=atol)
    probe_analytical = np.array([g.analytical / step_length for g in groups])
    probe_numerical = np.array([g.numerical / step_length for g in groups])
    probe_tolerance = np.array([g.tolerance(lam) / step_length for g in groups])
    ratios = np.array([_ratio(a - n, t) for a, n, t in zip(probe_analytical, probe_numerical, probe_tolerance,
                                                           strict=True)])

    search = chosen = None
    leaves: list = []
    notes: list[str] = []
    screens = np.array([g.screen_ratio(lam) for g in groups])
    dense_calls = [0]

    def confirm(j):
        numerical, tolerance, _, calls = confirm_elements(forward, x, grad_output, a64, [j], rtol=rtol, atol=atol,
                                                          eps=eps, out_dtype=prober.f_plus.dtype)
        dense_calls[0] += calls
        return float(numerical[0]), float(tolerance[0]), calls

    if localise > 0 and np.any(screens > 1.0):
        if mutated_early:
            notes.append("Localisation skipped: forward or backward modified its input, so measurements "
                         "made by perturbing a private copy of x cannot be trusted.")
        else:
            chosen = int(np.argmax(screens))
            search, start = _start_search(prober, lam, groups, signs, flips, chosen, plus, minus, width,
                                          a_flat, rtol=rtol, atol=atol, confirm=confirm)
            leaves, stopped = search.run(start, rtol=rtol, atol=atol, localise=localise,
                                         screen_only=bool(np.all(ratios <= 1.0)))
            notes.extend(_localisation_notes(lam, groups[chosen], leaves, a_flat, localise, stopped,
                                             rtol=rtol, atol=atol))

    random_ratio = max((group.ratio(lam) for group in random_groups), default=0.0)
    if random_ratio > 1.0:
        notes.append(f"With a random grad_output the probe misses its tolerance by {random_ratio:.3g}x while "
                     "grad_output itself may pass: the backward does not compute grad_output^T J (does it "
                     "ignore, square or misread grad_output?). check_gradient names the elements.")
    if grad_wrote:
        notes.append("Input mutation: backward wrote into grad_output.")
    forward_wrote = forward_wrote or not prober.still_intact()
    backward_wrote = backward_wrote or not _same_bits(work, x)
    mutated = forward_wrote or backward_wrote
    leaf_failed = False
    if leaves:
        numerical = np.full(x.shape, np.nan)
        measured = np.zeros(x.shape, dtype=bool)
        tolerance = np.full(x.shape, np.nan)
        for j, value, _, band in leaves:
            numerical.reshape(-1)[j] = value
            measured.reshape(-1)[j] = True
            tolerance.reshape(-1)[j] = band
            with np.errstate(invalid="ignore"):
                leaf_failed |= not abs(a_flat[j] - value) <= band
    else:
        # Nothing measured element by element: read-only views that take no memory.
        numerical = tolerance = np.broadcast_to(np.float64(np.nan), x.shape)
        measured = np.broadcast_to(np.False_, x.shape)
    result = FastCheckResult(
        # A probe over its full tolerance is a dense failure somewhere (up to FALSE_ALARM);
        # an element the search isolated fails by the dense rule itself.
        passed=bool(np.all(ratios <= 1.0)) and not leaf_failed and not mutated and random_ratio <= 1.0,
        dtype=str(x.dtype),
        analytical=a64,
        numerical=numerical,
        tolerance=tolerance,
        step=width.reshape(x.shape),
        rtol=rtol,
        atol=atol,
        divide_by="realised",
        forward_calls=prober.calls + dense_calls[0],
        input_mutated=mutated,
        notes=tuple(notes),
        seed=seed,
        probe_analytical=probe_analytical,
        probe_numerical=probe_numerical,
        probe_tolerance=probe_tolerance,
        probe_step=np.full(probes, step_length),
        measured=measured,
        localised_probe=chosen,
        search_calls=search.search_calls if search else 0,
        detail_calls=search.detail_calls if search else 0,
        mutated_by=_writers(forward_wrote, backward_wrote),
    )
    if not result.passed and raise_on_failure:
        hint = diagnosis_hint(x.size, result.failing_indices)
        raise GradientCheckError(result, "\n".join([result.report(), hint]))
    return result


def _writers(forward_wrote: bool, backward_wrote: bool) -> str:
    """Who wrote into the array it was given, for FastCheckResult.mutated_by."""
    return " and ".join(who for who, wrote in (("forward", forward_wrote), ("backward", backward_wrote)) if wrote)


def _localisation_notes(lam, root, leaves, a_flat, localise, stopped, *, rtol, atol) -> list[str]:
    """Say when the elements found do not account for the failing probe."""
    notes = []
    failing = 0
    # What is left of the probe's residual once the measured elements' own
    # residuals, (a_j - n_j) * d_j, are taken out; each leaf measurement adds
    # its rounding to the budget.
    remaining = root.residual
    budget = root.tolerance(lam)
    for j, value, group, band in leaves:
        remaining -= group.residual
        budget += lam * group.rounding + group.accumulation
        with np.errstate(invalid="ignore"):
            if not abs(a_flat[j] - value) <= band:
                failing += 1
    if stopped:
        notes.append("Localisation stopped at its forward-call budget; check_gradient lists every element.")
    if failing == 0:
        notes.append(
            "No single failing element was isolated: errors in several elements may cancel within the "
            "groups that were split. check_gradient (dense mode) lists every element."
        )
    elif not _ratio(remaining, budget) <= 1.0:
        more = f" (localisation stops after localise={localise})" if failing >= localise else ""
        found = "The failing element found does" if failing == 1 else f"The {failing} failing elements found do"
        notes.append(
            f"{found} not account for the whole failure of the probe: other elements are wrong too{more}. "
            "check_gradient lists every element."
        )
    return notes
