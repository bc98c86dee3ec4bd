"""Gathering evidence: every call of the user's functions, and one dense pass of central differences.

A Session passes private copies to forward and backward, counts the calls and
records the first write into each argument. run_pass differences every element
once and contracts the output differences with several upstream gradients at
once, so the caller's grad_output and the random probes cost no extra forward
calls; on the way it reads each element's local slope and whether other
outputs moved (is the forward elementwise?).

A pass judges by check_gradient's own rule, the whole of it (lib.diagnose.stages):
|a - n| <= atol + rtol * max(|a|, |n|) + noise, the noise term from
lib.gradcheck.arithmetic given the outputs the pass measured (the rounding sums
cost no call) and, for an element that still fails, its re-measurement in
float64 at the same points (2 calls); then, for what still fails, the smaller
steps of lib.gradcheck.kinks (3 calls per halving), whose measurement replaces
the default step's, as in check_gradient's report.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lib.diagnose.findings import Finding, Trial, finding
from lib.diagnose.stages import judge
from lib.gradcheck import sweep
from lib.gradcheck.differences import Differences, numeric_output, unit_roundoff
from lib.gradcheck.result import tolerance_for
from lib.gradcheck.steps import _realised_points


class Unavailable(Exception):
    """A supplementary pass could not run (forward refused the dtype, non-finite output)."""


class Session:
    """Calls the user's functions on private copies, counts the calls, records who wrote where."""

    def __init__(self, forward, backward):
        self.forward_fn, self.backward_fn = forward, backward
        self.forward_calls = self.backward_calls = 0
        # (who, which array, changed elements, size, flat index, before, after) of the first mutation
        self.mutations: dict[tuple[str, str], tuple[int, int, int, float, float]] = {}
        self.out_shape: tuple | None = None
        self.out_dtype = np.dtype(np.float64)  # of forward's first output: the blocks of a pass store it as is
        self.nonzero_seen = False  # has any call of forward returned a nonzero output?

    def record(self, who: str, what: str, before: np.ndarray, after: np.ndarray) -> None:
        if (who, what) in self.mutations or np.array_equal(before, after, equal_nan=True):
            return
        changed = np.flatnonzero(~((before == after) | (np.isnan(before) & np.isnan(after))))
        i = int(changed[0]) if changed.size else 0
        self.mutations[(who, what)] = (
            int(changed.size), int(before.size), i, float(before.reshape(-1)[i]), float(after.reshape(-1)[i])
        )

    def forward(self, x: np.ndarray, strict: bool = True) -> np.ndarray:
        """forward on a private copy of x -> float64 copy of its output."""
        arg = x.copy()
        self.forward_calls += 1
        try:
            raw = numeric_output(self.forward_fn(arg), "forward")
            if self.forward_calls == 1:
                self.out_dtype = raw.dtype
            # Copy at once: an output that is a view of `arg` must not change later.
            out = np.array(raw, dtype=np.float64)
            self.nonzero_seen = self.nonzero_seen or bool(np.any(out))
        except Exception as error:
            if strict:
                raise
            raise Unavailable(f"forward raised {type(error).__name__}: {error}") from error
        self.record("forward", "x", x, arg)
        if self.out_shape is not None and out.shape != self.out_shape:
            if strict:
                raise ValueError(
                    f"forward returned shape {out.shape} on a perturbed input but {self.out_shape} on x"
                )
            raise Unavailable(f"forward returned shape {out.shape}, not {self.out_shape}")
        if not np.all(np.isfinite(out)):
            if strict:
                raise ValueError(
                    "forward(x) returned non-finite values (inf or NaN); the check needs finite outputs"
                )
            raise Unavailable("forward returned non-finite values")
        return out

    def backward(self, g: np.ndarray, x: np.ndarray, strict: bool = True) -> np.ndarray:
        """backward on private copies of (g, x) -> float64 copy of grad_x, x's shape."""
        g_arg, x_arg = g.copy(), x.copy()
        self.backward_calls += 1
        try:
            grad = np.array(numeric_output(self.backward_fn(g_arg, x_arg), "backward"), dtype=np.float64)
        except Exception as error:
            if strict:
                raise
            raise Unavailable(f"backward raised {type(error).__name__}: {error}") from error
        self.record("backward", "x", x, x_arg)
        self.record("backward", "grad_output", g, g_arg)
        if grad.shape != x.shape:
            raise ValueError(f"backward must return an array of x's shape {x.shape}; it returned an array of "
                             f"shape {grad.shape}")
        return grad


@dataclass
class Pass:
    """Everything one pass measured. k probes, n = x.size, all float64.

    analytical, numerical, realised: (k, n); `numerical` is divided the way
    this pass's check divides, `realised` always by the realised step.
    noise: (k, n) how far rounding of the forward's outputs alone can move
    `realised`: machine eps of x's dtype times the probe-weighted size of
    the outputs that changed, over the realised step (inf where x+eps and
    x-eps round to the same value).
    still: (n,) bool, forward returned identical outputs at x+eps and x-eps
    (no output moved), so the default step's slope there is exactly 0.
    slack: (k, n) check_gradient's noise term for `realised` (zero where the
    plain rule passes, and everywhere under the plain rule, strict=True).
    band: (k, n) the whole pass band of an element measured at smaller steps
    (lib.gradcheck.kinks), NaN elsewhere; `realised` (and `numerical`, when it
    is realised) holds that measurement there, `default` the default step's.
    smaller_steps: per probe, the SmallerStep of each element it measured so.
    checker_calls: the forward calls check_gradient(probes=0) spends on the
    caller's grad_output beyond its 2n + 1 (stages 1 and 2).
    plain: judged by the plain rule alone (strict=True).
    divide_by: how `numerical` is divided; the noise term and the smaller steps
    apply to the realised division only (the nominal one is the failure-era
    checker's, whose rule had neither).
    slope: (n,) d out_i / d x_i (realised step) when out.size == n, else None;
    cross: (n,) max |d out_j / d x_i| over j != i, same condition.
    homogeneous: (n,) backward(-2 r1) for the first random probe r1.
    repeat: (n,) backward(r1) called a second time with identical arguments.
    x: the input of this pass (x, or x upcast to float64).
    """

    label: str
    dtype: np.dtype
    probes: np.ndarray
    analytical: np.ndarray
    numerical: np.ndarray
    realised: np.ndarray
    noise: np.ndarray
    half: np.ndarray
    width: np.ndarray
    still: np.ndarray
    slope: np.ndarray | None
    cross: np.ndarray | None
    homogeneous: np.ndarray
    repeat: np.ndarray
    x: np.ndarray
    rtol: float
    atol: float
    slack: np.ndarray
    band: np.ndarray
    default: np.ndarray
    smaller_steps: tuple = ()
    checker_calls: int = 0
    divide_by: str = "realised"
    plain: bool = False

    def ratios(self, which: str = "numerical", noise: bool = True) -> np.ndarray:
        """(k, n) |a - n| / tolerance, check_gradient's rule; NaN (a zero-width step) counts as a failure.

        noise=False: the plain rule at the default step, without the arithmetic's noise
        term or the smaller steps.
        """
        realised = which == "realised" or self.divide_by == "realised"
        a = self.analytical
        n = self.default if realised and not noise else getattr(self, which)
        tol = tolerance_for(a, n, self.rtol, self.atol)
        if noise and realised:
            tol = np.where(np.isnan(self.band), tol + self.slack, self.band)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.abs(a - n) / tol
        r[(a == n) & (tol == 0)] = 0.0
        r[np.isnan(r)] = np.inf
        return r

    def trial(self, which: str = "numerical", setting: str | None = None) -> Trial:
        r = self.ratios(which).max(axis=1)
        return Trial(setting or self.label, float(r[0]), float(r[1:].max()))

    def passes(self, which: str = "numerical") -> np.ndarray:
        """(k,) True where the probe's check passes."""
        return np.all(self.ratios(which) <= 1.0, axis=1)


def probe_arrays(grad_output: np.ndarray, randoms: np.ndarray, dtype: np.dtype) -> list[np.ndarray]:
    """The upstream gradients of a pass: the caller's, then the random ones in x's dtype."""
    # The caller's grad_output goes to backward as given (check_gradient does
    # the same); random probes in x's dtype, as an upstream layer would send.
    return [grad_output, *(np.asarray(r, dtype=dtype) for r in randoms)]


def _column(y_plus: np.ndarray, y_minus: np.ndarray, i: int, weights: np.ndarray, elementwise: bool):
    """What one pair of forward calls measured: (projected (k,), noise sums (k,), checker's sums (k,),
    slope, cross, whether no output moved).

    Only the outputs where the two calls differ are differenced (a comparison
    in their own dtype finds them exactly; the others cancel exactly and count
    nothing). Outputs that changed carry a rounding error of about one unit of
    their size, and so does x_i's own output (it may round to the same value
    on both sides), and every output when none changed. The checker's sums
    are check_gradient's own (`sweep.contract`), over the outputs that changed.
    """
    projected, checker_sums = sweep.contract(y_plus, y_minus, weights, np.abs(weights))
    up, down, moved, d = sweep.moved_outputs(y_plus, y_minus)
    counted = moved if not elementwise else np.union1d(moved, [i])
    if counted.size == 0:
        counted = np.arange(up.size)
    size = np.maximum(np.abs(up[counted]), np.abs(down[counted]), dtype=np.float64)
    slope = cross = np.nan
    if elementwise:
        own = moved == i
        slope = float(d[own][0]) if own.any() else 0.0
        cross = float(np.max(np.abs(d[~own]), initial=0.0))
    return projected, np.abs(weights[:, counted]) @ size, checker_sums, slope, cross, moved.size == 0


def _differences(session: Session, x: np.ndarray, weights: np.ndarray, plus, minus, strict: bool):
    """(projected, noise sums, checker's sums, slope, cross, still, output dtype) for every element, before
    division by the step; still: no output moved; the output dtype is the one forward returns in this pass
    (its rounding is the checker's unit)."""
    work = np.array(x, copy=True, order="C")
    forward = session.forward_fn
    if ("forward", "x") in session.mutations:
        # A forward known to write into its input gets a fresh copy per call, so that
        # one call's writes do not move the point of the next.
        def forward(a, fn=session.forward_fn):
            return fn(a.copy())
    elementwise = weights.shape[1] == x.size
    shape = session.out_shape if session.out_shape is not None else (weights.shape[1],)
    projected, sums, checker_sums = np.empty((3, weights.shape[0], x.size))
    slope, cross = np.full((2, x.size), np.nan)
    still = np.zeros(x.size, dtype=bool)
    out_dtype = session.out_dtype
    try:
        pairs = sweep.pairs(forward, work, np.arange(x.size), plus, minus, shape, session.out_dtype)
        for i, (y_plus, y_minus) in enumerate(pairs):
            session.forward_calls += 2
            out_dtype = y_minus.dtype
            session.nonzero_seen = session.nonzero_seen or bool(y_plus.any() or y_minus.any())
            (projected[:, i], sums[:, i], checker_sums[:, i], slope[i], cross[i],
             still[i]) = _column(y_plus, y_minus, i, weights, elementwise)
    except Exception as error:
        if strict:
            raise
        ours = isinstance(error, ValueError) and str(error).startswith("forward")  # a check of sweep's or ours
        raise Unavailable(str(error) if ours else f"forward raised {type(error).__name__}: {error}") from error
    session.record("forward", "x", x, work)
    return projected, sums, checker_sums, slope, cross, still, out_dtype


def run_pass(session: Session, label: str, x: np.ndarray, probes: list[np.ndarray], half: np.ndarray,
             divide_by: str, rtol: float, atol: float, strict: bool, *, eps=None, y0: np.ndarray | None = None,
             plain: bool = False) -> Pass:
    """One dense pass: every element of x differenced (2 forward calls each), 5 backward calls,
    and check_gradient's rule for the elements that fail at this step (lib.diagnose.stages: 2
    calls each re-measured in float64, 3 per halving of the step for those that still fail).

    probes: k upstream gradients of the output's shape (the caller's first);
    half: x's shape, the step at every element, `eps` as the caller gave it (None:
    the default step); y0: forward(x) already measured (else stage 2 makes the
    call when it needs it); strict: errors of forward or backward propagate (else
    Unavailable); plain: the plain rule, check_gradient's strict=True. Returns a
    Pass, all float64. The forward calls of the pass go through lib.gradcheck.sweep
    (outputs gathered in blocks), on one working copy of x checked for writes after it.
    """
    weights = np.stack([np.asarray(p, dtype=np.float64).reshape(-1) for p in probes])  # (k, m)
    flat_half = half.reshape(-1)
    plus, minus, width = _realised_points(x, flat_half, zero_width_ok=divide_by == "nominal")
    projected, sums, checker_sums, slope, cross, still, out_dtype = _differences(session, x, weights, plus,
                                                                                 minus, strict)
    with np.errstate(divide="ignore", invalid="ignore"):  # a zero width (nominal division only) gives inf/NaN
        realised = np.where(width != 0.0, projected / width, np.nan)
        noise = np.where(width != 0.0, float(np.finfo(x.dtype).eps) * sums / width, np.inf)
        checker_noise = unit_roundoff(out_dtype) * checker_sums / np.abs(width)
        slope, cross = (np.where(width != 0.0, values / width, np.nan) for values in (slope, cross))
    elementwise = weights.shape[1] == x.size
    analytical = np.stack([session.backward(p, x, strict).reshape(-1) for p in probes])
    found = Differences(realised.copy(), checker_noise, width, 2 * x.size, plus, minus)
    judged = judge(session, x, found, weights, analytical, rtol=rtol, atol=atol, eps=eps, out_dtype=out_dtype,
                   y0=y0, plain=plain, smaller=divide_by == "realised", raising=strict)
    default = realised.copy()
    _measured_smaller(realised, slope if elementwise else None, judged.numerical, weights)
    numerical = realised if divide_by == "realised" else projected / (2.0 * flat_half)
    # -2 r1 is exact in any binary float dtype, so a linear backward meets it bit for bit.
    homogeneous = session.backward(np.asarray(probes[1] * probes[1].dtype.type(-2)), x, strict).reshape(-1)
    repeat = session.backward(probes[1], x, strict).reshape(-1)
    return Pass(label, x.dtype, weights, analytical, numerical, realised, noise, flat_half.copy(), width, still,
                slope if elementwise else None, cross if elementwise else None, homogeneous, repeat, x,
                rtol, atol, judged.slack, judged.band, default, judged.records, judged.row_calls, divide_by, plain)


def _measured_smaller(realised: np.ndarray, slope: np.ndarray | None, smaller: np.ndarray,
                      weights: np.ndarray) -> None:
    """Put what the smaller steps measured in place of the default step's slopes (in place).

    realised, smaller: (k, n), smaller NaN where the default step stands. slope:
    (n,) an elementwise forward's d out_i / d x_i, or None: where the probe with the
    largest weight on output i was measured at smaller steps, that slope is its
    measurement over the weight (the elementwise forward's contraction is g_i times it).
    """
    measured = ~np.isnan(smaller)
    realised[measured] = smaller[measured]
    if slope is None:
        return
    columns = np.arange(slope.size)
    heaviest = np.argmax(np.abs(weights), axis=0)
    weight = weights[heaviest, columns]
    use = measured[heaviest, columns] & (weight != 0)
    slope[use] = smaller[heaviest, columns][use] / weight[use]


def mutation_findings(session: Session) -> list[Finding]:
    """One input-mutation finding per (function, argument) the session saw written."""
    findings = []
    for (who, what), (changed, size, i, before, after) in session.mutations.items():
        if who == "forward":
            why = ("a checker perturbs x and restores only the element it changed, so every later "
                   "difference is taken at a corrupted point")
        elif what == "x":
            why = "the caller's x (and any checker's working copy) silently changes"
        else:
            why = "grad_output is often shared with other layers, which then see the changed values"
        findings.append(finding(
            "input-mutation",
            f"{who} changed {changed}/{size} elements of the {what} it was given "
            f"(first at flat index {i}: {before:.6g} -> {after:.6g}); {why}",
            f"compute into a new array in the {who} (out = x * m, not x *= m; no out= pointing at an argument)",
        ))
    return findings
