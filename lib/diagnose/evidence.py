"""Gathering evidence: every call of the user's functions, and one dense pass of central differences.

A Session passes private copies to forward and backward, counts the calls and
records the first write into each argument. run_pass differences every element
once and contracts the output differences with several upstream gradients at
once, so the caller's grad_output and the random probes cost no extra forward
calls; on the way it reads each element's local slope and whether other
outputs moved (is the forward elementwise?).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from lib.diagnose.findings import Finding, Trial, finding
from lib.gradcheck.differences import numeric_output
from lib.gradcheck.result import tolerance_for


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

    def _record(self, who: str, what: str, before: np.ndarray, after: np.ndarray) -> None:
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
            # Copy at once: an output that is a view of `arg` must not change later.
            out = np.array(raw, dtype=np.float64)
        except Exception as error:
            if strict:
                raise
            raise Unavailable(f"forward raised {type(error).__name__}: {error}") from error
        self._record("forward", "x", x, arg)
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
        self._record("backward", "x", x, x_arg)
        self._record("backward", "grad_output", g, g_arg)
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
    slope: np.ndarray | None
    cross: np.ndarray | None
    homogeneous: np.ndarray
    repeat: np.ndarray
    x: np.ndarray
    rtol: float
    atol: float

    def ratios(self, which: str = "numerical") -> np.ndarray:
        """(k, n) |a - n| / tolerance; NaN (a zero-width step) counts as a failure."""
        a, n = self.analytical, getattr(self, which)
        tol = tolerance_for(a, n, self.rtol, self.atol)
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


class _Column(NamedTuple):
    """Element i of x moved alone: what one pair of forward calls measured, for k probes."""

    numerical: np.ndarray  # (k,) divided as the pass divides
    realised: np.ndarray  # (k,) divided by the realised step
    noise: np.ndarray  # (k,) rounding of the outputs that moved, over the step
    width: float  # the realised step x+ - x-
    slope: float  # d out_i / d x_i (elementwise shapes only, else NaN)
    cross: float  # max |d out_j / d x_i| over j != i (same condition)


def _forward_at(session: Session, x: np.ndarray, i: int, value, strict: bool) -> np.ndarray:
    work = x.copy()
    work.reshape(-1)[i] = value
    return session.forward(work, strict)


def _difference_column(session: Session, x: np.ndarray, half: np.ndarray, i: int, weights: np.ndarray,
                       divide_by: str, strict: bool) -> _Column:
    """Central difference of forward at flat index i, contracted with every probe (rows of `weights`)."""
    value = float(x.reshape(-1)[i])
    cast = x.dtype.type
    plus, minus = cast(value + half[i]), cast(value - half[i])
    w = float(plus) - float(minus)  # exact: both are values of x's dtype
    if w == 0.0 and divide_by == "realised":
        raise ValueError(
            f"eps={half[i]:g} is too small for {x.dtype} at index {i} (x={value:g}): "
            f"x+eps and x-eps round to the same value; use eps >= {float(np.spacing(abs(value))):.3g}"
        )
    out_plus, out_minus = _forward_at(session, x, i, plus, strict), _forward_at(session, x, i, minus, strict)
    # Subtract element by element before weighting, so that large equal
    # terms cancel exactly instead of inside a rounded sum.
    d = (out_plus - out_minus).reshape(-1)
    projected = weights @ d
    elementwise = d.size == x.size
    # Outputs computed identically on both sides cancel exactly; each output
    # that changed carries a rounding error of about one unit of its size.
    # So does x_i's own output (which may round to the same value on both
    # sides), and every output when none changed.
    counted = d != 0.0
    if elementwise:
        counted[i] = True
    if not counted.any():
        counted[:] = True
    size = np.where(counted, np.maximum(np.abs(out_plus), np.abs(out_minus)).reshape(-1), 0.0)
    unit = float(np.finfo(x.dtype).eps)
    k = weights.shape[0]
    slope = cross = np.nan
    if elementwise and w:
        others = np.abs(d)
        others[i] = 0.0
        slope, cross = d[i] / w, np.max(others) / w
    return _Column(
        numerical=projected / (w if divide_by == "realised" else 2.0 * half[i]),
        realised=projected / w if w else np.full(k, np.nan),
        noise=unit * (np.abs(weights) @ size) / w if w else np.full(k, np.inf),
        width=w, slope=slope, cross=cross,
    )


def run_pass(session: Session, label: str, x: np.ndarray, probes: list[np.ndarray], half: np.ndarray,
             divide_by: str, rtol: float, atol: float, strict: bool) -> Pass:
    """One dense pass: every element of x differenced (2 forward calls each), 5 backward calls.

    probes: k upstream gradients of the output's shape (the caller's first);
    half: x's shape, the half-step at every element. Returns a Pass, all float64.
    """
    weights = np.stack([np.asarray(p, dtype=np.float64).reshape(-1) for p in probes])  # (k, m)
    flat_half = half.reshape(-1)
    columns = [_difference_column(session, x, flat_half, i, weights, divide_by, strict) for i in range(x.size)]
    numerical, realised, noise = (np.stack([getattr(c, name) for c in columns], axis=1)
                                  for name in ("numerical", "realised", "noise"))
    elementwise = weights.shape[1] == x.size
    slope = np.array([c.slope for c in columns]) if elementwise else None
    cross = np.array([c.cross for c in columns]) if elementwise else None
    analytical = np.stack([session.backward(p, x, strict).reshape(-1) for p in probes])
    # -2 r1 is exact in any binary float dtype, so a linear backward meets it bit for bit.
    homogeneous = session.backward(np.asarray(probes[1] * probes[1].dtype.type(-2)), x, strict).reshape(-1)
    repeat = session.backward(probes[1], x, strict).reshape(-1)
    width = np.array([c.width for c in columns])
    return Pass(label, x.dtype, weights, analytical, numerical, realised, noise, flat_half.copy(), width,
                slope, cross, homogeneous, repeat, x, rtol, atol)


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


def nondeterminism(*outs: np.ndarray) -> Finding | None:
    """A finding when forward's outputs at the same x differ between calls; None when identical."""
    base = outs[0]
    differs = np.zeros(base.shape, dtype=bool)
    zero_flips = np.zeros(base.shape, dtype=bool)
    for other in outs[1:]:
        differs |= ~((base == other) | (np.isnan(base) & np.isnan(other)))
        zero_flips |= (base == 0) != (other == 0)
    if not differs.any():
        return None
    spread = max(float(np.max(np.abs(o - base))) for o in outs[1:])
    masks = (f"; the set of zero outputs changes in {int(zero_flips.sum())} elements, as a fresh "
             "dropout mask on each call would" if zero_flips.any() else "")
    return finding(
        "nondeterministic-forward",
        f"outputs of {len(outs)} calls at the same x differ in {int(differs.sum())}/{differs.size} "
        f"elements (max difference {spread:.3g}){masks}",
        "make the forward a function of x alone: draw the mask from a fixed seed on every call (not "
        "seed=0 or None, not a shared or global generator), or use the mask of the test's own forward "
        "call; keep running statistics frozen during the check",
    )
