"""The fixed checker's second look at an element that fails: docs/checking_at_kinks.md, as Mojo does it.

Stage 1 is the outputs' rounding (`rounding_bound`), added to the pass band of
every default-step measurement. Stage 2 (`remeasure`) measures an element that
still fails at halving steps h0 / 2**k, k = 1 ... K_MAX, and decides it by the
settled / kink / converged / subgradient / stop rules of the specification.

Every number is a Python float (IEEE float64, one rounding per operation, no
fused multiply-add), combined in the order mojo/kinks.mojo combines it, so the
two agree bit for bit. Where the specification leaves a choice, this module and
the Mojo one make the same one:

* the subgradient rule needs a previous step's one-sided slopes, so it applies
  from k = 2 on; "settled" for a one-sided slope uses the noises of both steps,
  as the central slope's rule does;
* an element whose analytical value is not finite fails without stage 2 (no
  measurement can agree with it), and no pass accepts a non-finite slope;
* an element left undecided (rounding above the tolerance, a step below the
  dtype's spacing, or K_MAX steps) fails and keeps the last step it measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Output roundings allowed per output (the specification's NOISE_FACTOR).
NOISE_FACTOR = 4.0
#: The most halvings an element is measured at.
K_MAX = 30
#: A kink's one-sided gap keeps at least this share of the previous step's (a smooth gap halves).
GAP_KEPT = 0.75


def sequential_sum(terms: np.ndarray) -> float:
    """terms[0] + terms[1] + ... in float64, left to right (np.cumsum adds in order)."""
    return float(np.cumsum(terms)[-1]) if terms.size else 0.0


def unit_roundoff(dtype) -> float:
    """Half the machine epsilon of `dtype`: 2**-24 for float32, 2**-53 for float64."""
    return float(np.finfo(dtype).eps) / 2.0


def larger(p: float, q: float) -> float:
    """max(p, q) as Mojo's max computes it: a NaN argument gives the other one."""
    if math.isnan(p):
        return q
    if math.isnan(q):
        return p
    return p if p >= q else q


def smaller(p: float, q: float) -> float:
    """min(p, q) as Mojo's min computes it: a NaN argument gives the other one."""
    if math.isnan(p):
        return q
    if math.isnan(q):
        return p
    return p if p <= q else q


def band(p: float, q: float, rtol: float, atol: float) -> float:
    """T(p, q) = atol + rtol * max(|p|, |q|)."""
    return atol + rtol * larger(abs(p), abs(q))


def rounding_bound(grad: list[float], first: list[float], second: list[float], u: float) -> float:
    """NOISE_FACTOR * u * sum |g_j| (|first_j| + |second_j|) over the outputs that differ, in index order."""
    total = 0.0
    for g, p, q in zip(grad, first, second, strict=True):
        if p != q:
            total += abs(g) * (abs(p) + abs(q))
    return (NOISE_FACTOR * u) * total


def repeats(again: list[float], first: list[float]) -> bool:
    """Whether a second forward(x) gave the first one's outputs: equal, or NaN where the first was NaN."""
    return len(again) == len(first) and all(p == q or (math.isnan(p) and math.isnan(q))
                                            for p, q in zip(again, first, strict=True))


def divide(p: float, q: float) -> float:
    """p / q in float64 with IEEE results for q == 0 (inf or NaN) instead of an exception."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(p) / np.float64(q))


@dataclass(frozen=True)
class Measurement:
    """One halving step of one element: the central slope and the two one-sided ones, with noises."""

    numerical: float
    noise: float
    width: float
    plus: float
    minus: float
    plus_noise: float
    minus_noise: float


@dataclass(frozen=True)
class Decision:
    """How stage 2 decided an element; `last` is its last measurement (None: it measured nothing)."""

    passed: bool
    halvings: int = 0
    step: float = 0.0
    subgradient: bool = False
    last: Measurement | None = None
    repeated: bool = True


@dataclass(frozen=True)
class Probe:
    """What stage 2 needs about the function: forward, x, the weights g, y0 = forward(x), and u."""

    forward: object
    x: np.ndarray
    grad: list[float]
    y0: list[float]
    u: float

    def outputs_at_x(self) -> list[float]:
        return np.asarray(self.forward(self.x.copy()), dtype=np.float64).ravel().tolist()

    def outputs(self, index: int, value) -> list[float]:
        moved = self.x.copy()
        moved.reshape(-1)[index] = value
        return np.asarray(self.forward(moved), dtype=np.float64).ravel().tolist()


def measure(probe: Probe, index: int, old: float, h: float) -> Measurement | None:
    """Both one-sided differences at x_i +- h; None when either point rounds back to x_i."""
    dtype = probe.x.dtype.type
    p_plus, p_minus = dtype(old + h), dtype(old - h)
    w_plus, w_minus = float(p_plus) - old, old - float(p_minus)
    if w_plus == 0.0 or w_minus == 0.0:
        return None
    y_plus, y_minus = probe.outputs(index, p_plus), probe.outputs(index, p_minus)
    g = np.asarray(probe.grad)
    d_plus = sequential_sum((np.asarray(y_plus) - np.asarray(probe.y0)) * g)
    d_minus = sequential_sum((np.asarray(probe.y0) - np.asarray(y_minus)) * g)
    r_plus = rounding_bound(probe.grad, y_plus, probe.y0, probe.u)
    r_minus = rounding_bound(probe.grad, probe.y0, y_minus, probe.u)
    width = w_plus + w_minus
    return Measurement(numerical=divide(d_plus + d_minus, width), noise=divide(r_plus + r_minus, width),
                       width=width, plus=divide(d_plus, w_plus), minus=divide(d_minus, w_minus),
                       plus_noise=divide(r_plus, w_plus), minus_noise=divide(r_minus, w_minus))


def _sides_settled(now: Measurement, before: Measurement, rtol: float, atol: float) -> bool:
    """Each one-sided slope within its own band and noises of its value at the previous step."""
    plus = abs(now.plus - before.plus) <= band(now.plus, before.plus, rtol, atol) + now.plus_noise + before.plus_noise
    minus = (abs(now.minus - before.minus)
             <= band(now.minus, before.minus, rtol, atol) + now.minus_noise + before.minus_noise)
    return plus and minus


def remeasure(probe: Probe, index: int, analytical: float, default: tuple[float, float, float], *,
              rtol: float, atol: float) -> Decision:
    """Stage 2 for element `index`; `default` is (n0, v0, h0): the default step's slope, noise and step."""
    a = analytical
    previous_n, previous_v, h = default
    old = float(probe.x.reshape(-1)[index])
    before: Measurement | None = None
    kinks_throughout = True
    last = Decision(False)
    for k in range(1, K_MAX + 1):
        h = h * 0.5
        now = measure(probe, index, old, h)
        if now is None:
            return last  # the step is below the dtype's spacing
        if not repeats(probe.outputs_at_x(), probe.y0):
            # forward(x) changed between two calls: agreement at these steps may be chance
            return Decision(False, k, h, last=now, repeated=False)
        last = Decision(False, k, h, last=now)
        if now.noise > band(a, now.numerical, rtol, atol):
            return last  # rounding exceeds the tolerance: smaller steps only add rounding
        settled = (abs(now.numerical - previous_n)
                   <= band(now.numerical, previous_n, rtol, atol) + now.noise + previous_v)
        side_band = band(now.plus, now.minus, rtol, atol) + now.plus_noise + now.minus_noise
        gap = abs(now.plus - now.minus)
        kink = gap > side_band
        if settled and math.isfinite(now.numerical) and abs(a - now.numerical) <= band(
                a, now.numerical, rtol, atol) + now.noise:
            return Decision(True, k, h, last=now)
        if settled and not kink:
            return last  # converged elsewhere: smooth here, and its slope is not a
        kinks_throughout = kinks_throughout and kink
        if (kinks_throughout and before is not None and _sides_settled(now, before, rtol, atol)
                and gap >= GAP_KEPT * abs(before.plus - before.minus)):
            inside = (smaller(now.plus, now.minus) - side_band <= a <= larger(now.plus, now.minus) + side_band
                      and math.isfinite(now.plus) and math.isfinite(now.minus))
            return Decision(inside, k, h, subgradient=True, last=now)
        before, previous_n, previous_v = now, now.numerical, now.noise
    return last
