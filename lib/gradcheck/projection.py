"""Fast mode's probes: random sign directions, both sides of each probe, and its tolerance.

A probe checks the gradient of L(x) = sum(forward(x) * grad_output) along one
random sign direction: forward at two points (2 calls, whatever the size of x)
against backward's gradient projected on the same direction. The outputs of the
first RANDOM_UPSTREAM probes are also contracted with random upstream
gradients, one backward call each and no forward call.

What one probe compares
-----------------------
Write g = grad_output, a = backward(g, x) (the analytical gradient), gamma = the
exact gradient of L, e = a - gamma, and h_i for the dense mode's step. A
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
midpoint of x+ and x-, which is within half a unit of rounding of x, so N
matches gamma . d up to truncation and rounding. The report divides A, N and the tolerance by ||d||_2,
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
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lib.gradcheck.blockwise import _BLOCK, _U64, _WIDE_BLOCK, _Norm
from lib.gradcheck.dense import upstream_from_uniform
from lib.gradcheck.differences import check_returned
from lib.gradcheck.prober import _Prober
from lib.gradcheck.steps import _realised_points, default_step

#: Probability that a backward which passes the dense rule everywhere fails the fast check.
FALSE_ALARM = 1e-6

#: Probe pairs whose forward outputs are reused with a random upstream gradient each
#: (one backward call each, no forward call), so that a backward that ignores or
#: squares grad_output fails even when grad_output is all ones. One, as the dense
#: mode's default: such a backward misses a random gradient by far (lib.catalogue's
#: upstream bugs by 12x and more), so a second adds a backward call and no finding.
RANDOM_UPSTREAM = 1


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


@dataclass
class _Group:
    """A run order[lo:hi] of elements and what is known of its residual under one probe's signs.

    Attributes:
        lo, hi: the group is order[lo:hi] (see lib.gradcheck.localise._Search).
        residual: a . d - g . (f(x+) - f(x-)) restricted to the group, float.
        numerical: g . (f(x+) - f(x-)) when this exact group was perturbed and
            measured; None when the residual was inferred from other groups.
        analytical: a . d over the group when measured, else None.
        hoeffding: ||t * w||_2 over the group.
        rounding: the rounding scale of the measurements the residual came from.
        accumulation: float64 dot-product error bound of those measurements.
        backward_rounding: eps * ||a * w||_2 over the group, eps the machine
            epsilon of x's dtype: the scale of the rounding a correct backward
            leaves in a. Part of the screen's floor only (the tolerance's
            errors part already allows it); negligible beside `rounding`
            unless the probes are measured in float64 for a float32 x.
    """

    lo: int
    hi: int
    residual: float
    numerical: float | None
    hoeffding: float
    rounding: float
    accumulation: float
    analytical: float | None = None
    backward_rounding: float = 0.0

    @property
    def size(self) -> int:
        return self.hi - self.lo

    def tolerance(self, lam: float) -> float:
        # A correct backward's own rounding is inside the errors part: t_i >= eps |a_i| when rtol >= eps.
        return lam * (self.hoeffding + self.rounding) + self.accumulation

    def screen_ratio(self, lam: float) -> float:
        """Residual over the rounding floor alone (the forward's and the backward's): above 1,
        something besides rounding moved it."""
        return _ratio(self.residual, lam * (self.rounding + self.backward_rounding) + self.accumulation)

    def ratio(self, lam: float) -> float:
        return _ratio(self.residual, self.tolerance(lam))


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


def _numerical_sides(prober: _Prober, signs, plus: np.ndarray, minus: np.ndarray, upstream_seed: int):
    """Each probe's (g . (f(x+) - f(x-)), rounding scale, accumulation bound); and whether
    forward wrote to the array it was given (checked on the first call: a forward that
    writes to its input does so on every call).

    The first RANDOM_UPSTREAM pairs are also contracted with random upstream
    gradients drawn, a block at a time, from a Generator seeded upstream_seed
    (prober.upstream_sides; _random_upstream_groups draws the same values again).
    """
    buffer = np.empty(prober.shape, dtype=plus.dtype)
    draws = np.random.default_rng(upstream_seed)
    sides, intact = [], True
    for k, positive in enumerate(signs):
        side, ok = prober.full(buffer, positive, plus, minus, check_input=k == 0,
                               upstream=draws if k < RANDOM_UPSTREAM else None)
        sides.append(side)
        intact = intact and ok
    return sides, not intact


def _probe_groups(sides, signs, width: np.ndarray, a_flat: np.ndarray, *, rtol: float, atol: float,
                  backward_eps: float):
    """Each probe's residual a . d - g . (f(x+) - f(x-)) over every element, as a _Group;
    and ||d||_2 = ||w||_2, the realised step length shared by every probe.
    backward_eps: machine epsilon of x's dtype, the scale of backward's own rounding.

    Block by block through reused buffers: a . d is twice the sum of a_i w_i
    over + signs minus the sum over all, and ||t * w||_2 (t = (atol +
    rtol |a|) / (1 - rtol)) expands into sums of non-negative terms.
    """
    n = a_flat.size
    aw_block, sign_block = np.empty(min(n, _BLOCK)), np.empty(min(n, _BLOCK))
    aw_total = abs_aw_total = 0.0
    tw_norm, w_norm, aw_norm = _Norm(), _Norm(), _Norm()
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
            aw_norm.add(aw)
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
                             analytical, backward_eps * aw_norm.value))
    return groups, w_norm.value


def _random_upstream_groups(prober: _Prober, backward, grad_output, work, upstream_seed: int, signs, width, *,
                            rtol, atol, backward_eps):
    """One _Group per pair contracted with a random upstream gradient, each with its own backward call.

    The gradients are drawn again, whole this time and one at a time, from the
    Generator seeded upstream_seed that the pairs drew them from block by block.
    Each group is a probe's (_probe_groups) with v and backward(v, x) in place of
    grad_output and a: the outputs' side comes from prober.upstream_sides.
    """
    grad = np.asarray(grad_output)
    draws = np.random.default_rng(upstream_seed)
    groups = []
    for (numerical, abs_dv, rounding, eps), positive in zip(prober.upstream_sides, signs, strict=False):
        v = upstream_from_uniform(draws.random(grad.size, dtype=np.float32), grad.dtype).reshape(grad.shape)
        a_v = check_returned(backward(v, work), work.shape, "backward", "x")
        # The outputs' float64 dot products add at most this to v . (f+ - f-).
        side = (numerical, eps * rounding, 4 * grad.size * _U64 * abs_dv)
        group, _ = _probe_groups([side], [positive], width, np.asarray(a_v).reshape(-1), rtol=rtol, atol=atol,
                                 backward_eps=backward_eps)
        groups.extend(group)
    return groups
