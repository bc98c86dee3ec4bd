"""Stage 2 of the pass rule: an element that still fails is measured again at halving steps.

The default step h0 = cbrt(eps) * max(1, |x_i|) is about 4.9e-3 in float32. A
kink within h0 of x_i (relu at 0, abs, max between near-ties, smooth_l1 at
|d| = beta, elu's second derivative at 0) sits inside the central difference,
which then measures a mixture of the two sides: relu at x = 1e-4 is measured as
0.51 against a correct 1. No rounding allowance explains that; a smaller step
does. docs/checking_at_kinks.md is the specification (a Mojo implementation
follows the same page), and this module follows it rule by rule:

    h_k = h0 / 2^k, k = 1 .. K_MAX; at each step the one-sided differences
    d+ = g . (f(p+) - f(x)), d- = g . (f(x) - f(p-)) at the stored points
    p+- = fl(x_i +- h_k), with their rounding bounds r+, r- (stage 1's
    formula, NOISE_FACTOR * u * sum |g| (|y| + |y0|) over the outputs that
    moved), give the central slope n_k, its noise v_k and the one-sided
    slopes s+, s- with theirs.

An element passes only on evidence: two successive steps agree and the
analytical value a lies within T(a, n_k) + v_k of them (converged), or the
point sits on a kink (the one-sided slopes disagree at every step, each has
settled, their gap does not shrink) and a lies between them (a subgradient).
Everything else fails: converged elsewhere with no kink at that step, a kink
with a outside the one-sided slopes, rounding above the tolerance, a step
below the dtype's spacing, or K_MAX halvings without a decision.

Each upstream gradient (row) is decided on its own; an element is halved
until every row that failed at the default step is decided, three forward
calls per halving: the two points, and forward(x) again. y0 = forward(x) is
made once per check, when the first element reaches this stage (`Reference`);
the dense mode already has it. Only a forward that repeats itself is trusted:
one whose output at x changes between two calls (a fresh dropout mask per
call) would, over many steps, now and then agree with itself by chance. The
first repeat that differs from y0 fails its element ("forward(x) changed") and
ends the stage for the check.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lib.gradcheck import sweep
from lib.gradcheck.differences import Differences, unit_roundoff
from lib.gradcheck.result import NOISE_FACTOR, SmallerStep, tolerance_for
from lib.gradcheck.steps import default_step

#: The last halving: h0 / 2**30 is below float32's spacing near 1 long before, and float64's near 1e-3.
K_MAX = 30

#: A kink's gap |s+ - s-| keeps at least this share from one step to the next; a smooth
#: function's gap is h |f''| and halves with the step.
KEEPS = 0.75


class Reference:
    """y0 = forward(x) as a flat float64 copy, made at most once (on first use) and counted in `calls`.

    `in_float64()` is the same for x given to forward as float64, when forward computes in float64.
    """

    def __init__(self, forward, x: np.ndarray, out_shape: tuple, y0: np.ndarray | None = None):
        self.forward, self.x, self.out_shape = forward, x, out_shape
        self._y0 = None if y0 is None else np.asarray(y0, dtype=np.float64).reshape(-1)
        self._y0_64: np.ndarray | bool | None = False  # False: not asked yet; None: forward is not float64
        self.calls = 0

    def in_float64(self) -> np.ndarray | None:
        """forward(x as float64), flat, when x is float16/float32 and forward returns float64 of the
        same shape, finite; otherwise None. One forward call, made on first use."""
        if self._y0_64 is False:
            self._y0_64 = None
            if self.x.dtype != np.float64:
                returned = np.asarray(self.forward(np.array(self.x, dtype=np.float64, order="C")))
                self.calls += 1
                if (returned.dtype == np.float64 and returned.shape == tuple(self.out_shape)
                        and np.isfinite(returned).all()):
                    self._y0_64 = np.array(returned, dtype=np.float64).reshape(-1)
        return self._y0_64

    def values(self) -> np.ndarray:
        if self._y0 is None:
            # A private copy: the caller's x is never given to forward.
            returned = sweep.accept(self.forward(np.array(self.x, copy=True, order="C")), self.out_shape)
            self._y0 = np.array(returned, dtype=np.float64).reshape(-1)
            self.calls += 1
            if not np.isfinite(self._y0).all():
                raise ValueError(sweep.FINITE_MESSAGE)
        return self._y0


@dataclass(frozen=True)
class _Step:
    """One halving of one element: (rows,) float64 arrays over the upstream gradients.

    central, noise: n_k and v_k; plus, minus: s+ and s-; plus_noise, minus_noise:
    r+ / w+ and r- / w-. h: the nominal step h0 / 2^k; width: w+ + w-.
    """

    k: int
    h: float
    width: float
    central: np.ndarray
    noise: np.ndarray
    plus: np.ndarray
    minus: np.ndarray
    plus_noise: np.ndarray
    minus_noise: np.ndarray

    @property
    def gap(self) -> np.ndarray:
        return np.abs(self.plus - self.minus)

    @property
    def sides_noise(self) -> np.ndarray:
        return self.plus_noise + self.minus_noise


def _band(p, q, rtol: float, atol: float) -> np.ndarray:
    """T(p, q) = atol + rtol * max(|p|, |q|), float64."""
    return atol + rtol * np.maximum(np.abs(p), np.abs(q))


def _measure(forward, work: np.ndarray, i: int, k: int, h0: float, y0: np.ndarray, grads: np.ndarray,
             magnitudes: np.ndarray, u: float) -> _Step | None:
    """Element i of `work` (C order, x's values) at h0 / 2^k: two forward calls, or None (and no call)
    when either realised one-sided width is 0 (the step is below the dtype's spacing).

    y0: forward(x) in its shape, float64; grads, magnitudes: (rows, M) float64,
    the upstream gradients and their absolute values; u: the unit roundoff of
    forward's output dtype.
    """
    flat = work.reshape(-1)
    original = flat[i]
    x_i, h = float(original), h0 / 2.0**k
    kind = flat.dtype.type
    # Rounded to float64, then to x's dtype: the same two roundings as the default step's points.
    high, low = kind(x_i + h), kind(x_i - h)
    w_plus, w_minus = float(high) - x_i, x_i - float(low)  # exact for float16/32 values in float64
    if w_plus == 0.0 or w_minus == 0.0:
        return None
    outputs = []
    try:
        for point in (high, low):
            flat[i] = point
            # A float64 copy at once: forward may return a view of its input or reuse a buffer.
            outputs.append(np.array(sweep.accept(forward(work), y0.shape), dtype=np.float64))
    finally:
        flat[i] = original
    # Each output differenced in float64 against y0 before the sum (sweep.contract).
    d_plus, r_plus = sweep.contract(outputs[0], y0, grads, magnitudes)
    d_minus, r_minus = sweep.contract(y0, outputs[1], grads, magnitudes)
    r_plus, r_minus = NOISE_FACTOR * u * r_plus, NOISE_FACTOR * u * r_minus
    width = w_plus + w_minus
    return _Step(k, h, width, (d_plus + d_minus) / width, (r_plus + r_minus) / width, d_plus / w_plus,
                 d_minus / w_minus, r_plus / w_plus, r_minus / w_minus)


#: The verdict of an element whose forward(x) changed between two calls.
NOT_REPEATED = "forward(x) changed"


def _repeats(forward, work: np.ndarray, y0: np.ndarray) -> bool:
    """Whether forward(x) called again gives y0 (a NaN matching a NaN); work holds x's values."""
    again = np.array(sweep.accept(forward(work), y0.shape), dtype=np.float64)
    return bool(np.array_equal(again, y0, equal_nan=True))


def _decide(a: np.ndarray, step: _Step, central: np.ndarray, noise: np.ndarray, previous: _Step | None,
            kinked: np.ndarray, *, rtol: float, atol: float) -> np.ndarray:
    """The verdict of each row at this step, in the specification's order ("" to go on halving).

    central, noise: n_{k-1} and v_{k-1} (the default-step measurement at k = 1);
    previous: the step before (None at k = 1, which has no one-sided slopes);
    kinked: (rows,) bool, a kink at every step so far, this one included.
    """
    n, v = step.central, step.noise
    band = _band(a, n, rtol, atol)
    settled = np.abs(n - central) <= _band(n, central, rtol, atol) + v + noise
    kink = step.gap > _band(step.plus, step.minus, rtol, atol) + step.sides_noise
    at_kink = np.zeros_like(kinked)
    if previous is not None:
        # Both one-sided slopes settled, and their gap not shrinking as a smooth function's would.
        sides_settled = ((np.abs(step.plus - previous.plus)
                          <= _band(step.plus, previous.plus, rtol, atol) + step.plus_noise + previous.plus_noise)
                         & (np.abs(step.minus - previous.minus)
                            <= _band(step.minus, previous.minus, rtol, atol) + step.minus_noise
                            + previous.minus_noise))
        at_kink = kinked & sides_settled & (step.gap >= KEEPS * previous.gap)
    sides_band = _band(step.plus, step.minus, rtol, atol) + step.sides_noise
    # finite slopes only: an infinite one would put every a "between" them
    between = ((np.minimum(step.plus, step.minus) - sides_band <= a)
               & (a <= np.maximum(step.plus, step.minus) + sides_band) & np.isfinite(step.plus + step.minus))
    with np.errstate(invalid="ignore"):
        return np.select(
            [v > band, settled & (np.abs(a - n) <= band + v), settled & ~kink, at_kink & between, at_kink],
            ["rounding", "converged", "converged elsewhere", "subgradient", "not a subgradient"], "")


def _halve(forward, work, i: int, h0: float, y0, grads, magnitudes, u: float, a, central, noise, *, rtol, atol):
    """Halve the step of element i until every row is decided.

    a, central, noise: (rows,) the analytical values and the default-step n_0, v_0
    of the rows to decide. Returns ([(verdict, its _Step or None)] per row, forward calls,
    whether forward(x) repeated itself at every step).
    """
    decided: list = [None] * a.size
    kinked = np.ones(a.size, dtype=bool)
    previous, calls = None, 0
    for k in range(1, K_MAX + 1):
        step = _measure(forward, work, i, k, h0, y0, grads, magnitudes, u)
        if step is None:
            break  # the step is below the dtype's spacing: undecided
        calls += 3
        if not _repeats(forward, work, y0):
            return [d if d is not None else (NOT_REPEATED, step) for d in decided], calls, False
        kinked &= step.gap > _band(step.plus, step.minus, rtol, atol) + step.sides_noise
        verdicts = _decide(a, step, central, noise, previous, kinked, rtol=rtol, atol=atol)
        for r in np.flatnonzero((verdicts != "") & np.array([d is None for d in decided])):
            decided[r] = (str(verdicts[r]), step)
        if all(d is not None for d in decided):
            return decided, calls, True
        previous, central, noise = step, step.central, step.noise
    reason = "spacing" if k < K_MAX or step is None else "no decision"
    return [d if d is not None else (reason, previous) for d in decided], calls, True


#: What each verdict passes (the rest fail) and how it is reported.
PASSING = ("converged", "subgradient")


@dataclass(frozen=True)
class Remeasured:
    """What the smaller steps found for m elements (columns) over the rows (upstream gradients).

    numerical, noise, band, width: (rows, m) float64, the values the result
    reports in place of the default step's, NaN where that measurement stands
    (a row that passed at the default step, or an undecided one, which fails
    there). A converged element reports n_k with noise v_k and band
    T(a, n_k) + v_k; an element on a kink reports the slope between s- and s+
    nearest to a, with noise r+/w+ + r-/w- and band T(s+, s-) plus that noise,
    so |a - numerical| <= band is the specification's verdict in both cases.
    records: per row, the SmallerStep of each element that row re-measured.
    columns: (m,) int64, the flat index in x of each column.
    calls: the forward calls made (y0's, if this made it, not included).
    """

    columns: np.ndarray
    numerical: np.ndarray
    noise: np.ndarray
    band: np.ndarray
    width: np.ndarray
    records: tuple[tuple[SmallerStep, ...], ...]
    calls: int

    def applied(self, row: int, numerical: np.ndarray, noise: np.ndarray, width: np.ndarray, *,
                over_columns: bool = False):
        """Flat float64 copies (numerical, noise, width, band) of one row's arrays over x, with this
        stage's values put in (band NaN where the default rule applies). over_columns: the arrays
        hold the m columns only, in order, not all of x."""
        numerical, noise, width = (np.array(v, dtype=np.float64).reshape(-1) for v in (numerical, noise, width))
        band = np.full(numerical.shape, np.nan)
        replaced = ~np.isnan(self.numerical[row])
        at = np.flatnonzero(replaced) if over_columns else self.columns[replaced]
        for target, source in ((numerical, self.numerical), (noise, self.noise), (band, self.band),
                               (width, self.width)):
            target[at] = source[row][replaced]
        return numerical, noise, width, band


def _reported(a: float, verdict: str, step: _Step | None, r: int, *, rtol: float, atol: float):
    """(numerical, noise, band, width) one row reports for its verdict; NaN when undecided."""
    if verdict in ("converged", "converged elsewhere"):
        n, v = step.central[r], step.noise[r]
        return n, v, float(_band(a, n, rtol, atol)) + v, step.width
    if verdict in ("subgradient", "not a subgradient"):
        s_plus, s_minus, v = step.plus[r], step.minus[r], step.sides_noise[r]
        nearest = min(max(a, min(s_plus, s_minus)), max(s_plus, s_minus))
        return nearest, v, float(_band(s_plus, s_minus, rtol, atol)) + v, step.width
    return np.nan, np.nan, np.nan, np.nan


def smaller_steps(forward, x: np.ndarray, columns, grads: np.ndarray, analytical: np.ndarray,
                  central: np.ndarray, noise: np.ndarray, failing: np.ndarray, reference: Reference, *,
                  h0: np.ndarray, out_dtype, rtol: float, atol: float) -> Remeasured:
    """Measure the failing rows of each element in `columns` again at h0 / 2^k (the module docstring).

    Args:
        forward: the checked function; x: its input (never modified: a private copy is perturbed).
        columns: (m,) flat indices in x; h0: (m,) float64, each one's default (nominal) step.
        grads: (rows, M) float64 upstream gradients; analytical: (rows, m) float64, backward's values.
        central, noise: (rows, m) float64, the default-step slope n_0 and its noise v_0.
        failing: (rows, m) bool, the rows still failing after the rounding allowance: the ones decided here.
        reference: y0 = forward(x), made on first need; out_dtype: forward's output dtype (its roundoff).
    """
    columns = np.asarray(columns, dtype=np.int64)
    shape = (analytical.shape[0], columns.size)
    numerical, noise_out, band, width = (np.full(shape, np.nan) for _ in range(4))
    records: list[list[SmallerStep]] = [[] for _ in range(shape[0])]
    work = np.array(x, copy=True, order="C")
    grads = np.atleast_2d(grads)
    magnitudes, u, calls = np.abs(grads), unit_roundoff(out_dtype), 0
    settings = dict(rtol=rtol, atol=atol)
    for c, i in enumerate(columns.tolist()):
        rows = np.flatnonzero(failing[:, c] & np.isfinite(analytical[:, c]))
        if rows.size == 0:
            continue
        y0 = reference.values().reshape(reference.out_shape)
        decided, spent, repeated = _halve(forward, work, i, float(h0[c]), y0, grads[rows], magnitudes[rows], u,
                                          analytical[rows, c], central[rows, c], noise[rows, c], **settings)
        calls += spent
        # each row's (verdict, step, its row in that step's arrays, measured in float64, halvings in x's
        # dtype before float64: the record keeps them, as they cost calls the deciding step's k omits)
        found = [(verdict, step, j, False, 0) for j, (verdict, step) in enumerate(decided)]
        again = np.flatnonzero([verdict == "rounding" for verdict, _ in decided]) if repeated else []
        if len(again):
            picked = rows[again]
            spent, repeated = _in_float64(forward, reference, i, float(h0[c]), grads[picked], analytical[picked, c],
                                          central[picked, c], noise[picked, c], found, again, settings)
            calls += spent
        for r, (verdict, step, j, in_float64, before) in zip(rows.tolist(), found, strict=True):
            a = float(analytical[r, c])
            numerical[r, c], noise_out[r, c], band[r, c], width[r, c] = _reported(a, verdict, step, j, **settings)
            records[r].append(_record(i, verdict, step, j, float(h0[c]), in_float64, before))
        if not repeated:
            break  # no later element may pass on a forward that does not repeat itself
    return Remeasured(columns, numerical, noise_out, band, width, tuple(tuple(r) for r in records), calls)


def _in_float64(forward, reference: Reference, i: int, h0: float, grads, a, central, noise, found: list,
                again: np.ndarray, settings: dict) -> tuple[int, bool]:
    """Halve again in float64 the rows that rounding left undecided in x's dtype; their
    (verdict, step, row in the step's arrays, True, the halvings in x's dtype that ended in
    "rounding") go into `found` in place. Returns (forward calls,
    whether forward(x) repeated itself); forward(x) in float64 is the Reference's call, counted in
    its `calls`.

    The bound on the outputs' rounding (stage 1's four roundings per moved output) grows as the step
    shrinks, and it is a bound, not a measurement: a max-pool near-tie at 0.3, 1e-4 apart, needs a
    step below 1e-4, where the float32 bound (2.4e-3 over the step) passes the tolerance although
    the outputs are exact copies of x. When forward computes in float64 (as stage 1's float64
    re-measurement asks), the same steps measured with x given as float64 carry float64's bound,
    and decide. A forward that keeps its own dtype leaves them undecided, as the Mojo checker does.
    """
    y0_64 = reference.in_float64()
    if y0_64 is None:
        return 0, True
    work = np.array(reference.x, dtype=np.float64, order="C")
    decided, spent, repeated = _halve(forward, work, i, h0, y0_64.reshape(reference.out_shape), grads,
                                      np.abs(grads), unit_roundoff(np.float64), a, central, noise, **settings)
    for position, (j, (verdict, step)) in enumerate(zip(np.asarray(again).tolist(), decided, strict=True)):
        found[j] = (verdict, step, position, True, found[j][1].k)  # a "rounding" verdict always has its step
    return spent, repeated


def _record(index: int, verdict: str, step: _Step | None, j: int, h0: float, in_float64: bool,
            before: int) -> SmallerStep:
    """Row j's SmallerStep; before: the halvings in x's dtype preceding the float64 ones (0 if none)."""
    if step is None:  # not even the first halving could be measured
        return SmallerStep(index, 0, h0, np.nan, verdict, np.nan, np.nan, np.nan, in_float64, before)
    return SmallerStep(index, step.k, step.h, step.width, verdict, float(step.central[j]), float(step.minus[j]),
                       float(step.plus[j]), in_float64, before)


def remeasure_failing(forward, x: np.ndarray, columns, found: Differences, grads: np.ndarray,
                      analytical: np.ndarray, slack: np.ndarray, reference: Reference, *, eps, out_dtype,
                      rtol: float, atol: float) -> Remeasured | None:
    """Stage 2 for the rows that still fail after the noise allowance; None when none does.

    found: the default-step Differences of the m elements `columns` (flat indices
    in x), its noise measured; analytical, slack: (rows, m) float64, backward's
    values and the allowance stage 1 gave them. n_0 and v_0 are found's slope
    and NOISE_FACTOR times its rounding bound (the float64 re-measurement's
    widening is the Python checker's own, so v_0 is what both implementations have).
    eps: the caller's step, or None for the default cbrt(eps) * max(1, |x_i|).
    """
    columns = np.asarray(columns, dtype=np.int64)
    with np.errstate(invalid="ignore"):
        failing = ~(np.abs(analytical - found.numerical)
                    <= tolerance_for(analytical, found.numerical, rtol, atol) + slack)
    if not np.any(failing & np.isfinite(analytical)):
        return None
    h0 = default_step(x.reshape(-1)[columns]) if eps is None else np.full(columns.size, float(eps))
    return smaller_steps(forward, x, columns, grads, analytical, found.numerical, NOISE_FACTOR * found.noise,
                         failing, reference, h0=h0, out_dtype=out_dtype, rtol=rtol, atol=atol)
