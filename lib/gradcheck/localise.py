"""Fast mode's localisation: group testing for the elements behind a failing probe.

The screen
----------
A probe's tolerance T (lib.gradcheck.projection) guarantees no false alarm,
but it is wide: its errors part adds up what the dense rule accepts at every
element. A residual can stand far out of its rounding floor while staying
within T. The floor is lam * (rounding + backward rounding) + accumulation:
what a correct backward of a linear forward cannot leave, the outputs'
rounding and eps_x * ||a * w||_2 for the backward's own rounding in x's
dtype. Such a probe does not fail; it starts the search below, and the check
then fails only if the search isolates an element that fails the dense rule
(measured by lib.gradcheck.dense's confirm_elements, the dense mode's own rule
with its rounding allowance). So the verdict on a named element is always the
dense verdict, and a single wrong element is found far below the guaranteed
threshold (the blind spot, lib.gradcheck.fast_result) whenever the other
elements' errors are small. A search started by the screen alone stops at the
first element it isolates, so a correct non-linear layer costs at most one
search when truncation lifts the residual over the floor.

How small an error the screen sees is set by the outputs' rounding, which
grows like sqrt(N). Among 1e6 float32 outputs of dropout it leaves a probe
residual of a few 1e-5, about what one typical element at 10x its dense
tolerance adds, and the floor that bounds it is far higher: the screen sees
such an element from about 100x its tolerance (notebook 12, section 8,
measures each of these). With
probe_dtype="float64" the probes and the search hand forward float64 points
at float64's default step: the outputs' rounding falls by about 2**-29,
truncation with the step, and the floor is the backward's own float32
rounding; the same element is then seen from a few times its tolerance, and
is still judged by the dense rule in x's dtype.

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
as the dense mode re-measures a failing element, then 2 per halving (and one
call at x per check) when it still fails (lib.gradcheck.kinks).
"""

from __future__ import annotations

import math

import numpy as np

from lib.gradcheck.blockwise import _U64, _dot, _norm
from lib.gradcheck.dense import confirmed
from lib.gradcheck.kinks import Reference
from lib.gradcheck.prober import _Prober
from lib.gradcheck.projection import _Group, _ratio


class _Search:
    """Group testing over one failing probe.

    The elements are laid out once in `order` (flat indices, int64) so that
    every group the search meets is a contiguous run order[lo:hi]; the
    analytical gradient, the realised widths and the probe's signs are permuted
    the same way, so a group's analytical side and tolerance come from slices.
    """

    def __init__(self, prober: _Prober, lam: float, order: np.ndarray, positive: np.ndarray,
                 plus, minus, width, a64, *, rtol: float, atol: float, backward_eps: float, confirm=None):
        self.prober, self.lam, self.order = prober, lam, order
        self.confirm = confirm
        self.backward_eps = backward_eps
        self.rtol, self.atol = rtol, atol
        self.positive = positive[order]
        self.w = width[order]
        self.a = a64[order]
        self.plus_values, self.minus_values = plus, minus
        self.search_calls = 0
        self.detail_calls = 0
        self.smaller_steps: list = []  # SmallerStep records of the elements measured alone

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
                      accumulation, analytical, self.backward_eps * _norm(abs_aw))

    def inferred(self, lo: int, hi: int, residual: float, rounding: float, accumulation: float) -> _Group:
        _, _, abs_aw, tw = self._slices(lo, hi)
        return _Group(lo, hi, residual, None, _norm(tw), rounding, accumulation, None,
                      self.backward_eps * _norm(abs_aw))

    def run(self, start: list[_Group], *, rtol: float, atol: float, localise: int, screen_only: bool = False):
        """Search the failing groups in `start` for elements that fail the dense rule.

        Returns:
            (leaves, stopped): leaves lists (flat index, numerical gradient,
            its _Group, its dense tolerance, its realised width in x's dtype) for every element measured alone;
            stopped is True when the forward-call budget ran out first.
        """
        n = self.order.size
        call_cap = 2 * localise * (max(math.ceil(math.log2(n)), 0) + 1)
        found = 0
        leaves: list[tuple[int, float, _Group, float, float]] = []
        stack = _worth_searching(start, self.lam)
        while stack and found < localise:
            group = stack.pop()
            if group.size == 1:
                # The element alone, measured and judged exactly as the dense mode does.
                j = int(self.order[group.lo])
                numerical, tolerance, width, calls, smaller = self.confirm(j)
                self.detail_calls += calls
                self.smaller_steps.extend(smaller)
                leaves.append((j, numerical, group, tolerance, width))
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


def _start_search(prober, lam, groups, signs, flips, chosen, plus, minus, width, a_flat, *, rtol, atol,
                  backward_eps, confirm):
    """The search over probe `chosen`, and the groups it starts from."""
    n = a_flat.size
    root = groups[chosen]
    if len(groups) == 1 or n == 1:
        search = _Search(prober, lam, np.arange(n), signs[chosen], plus, minus, width, a_flat,
                         rtol=rtol, atol=atol, backward_eps=backward_eps, confirm=confirm)
        return search, [root]
    partner = 1 if chosen == 0 else 0
    flip = flips[max(chosen, partner)]
    other = groups[partner]
    order = np.concatenate([np.flatnonzero(~flip), np.flatnonzero(flip)])
    search = _Search(prober, lam, order, signs[chosen], plus, minus, width, a_flat, rtol=rtol, atol=atol,
                     backward_eps=backward_eps, confirm=confirm)
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


def _dense_confirm(forward, x: np.ndarray, grad_output, analytical: np.ndarray, prober: _Prober, *,
                   rtol: float, atol: float, eps, reference: Reference | None = None):
    """confirm(j) -> (numerical, dense tolerance, realised width, forward calls, SmallerStep records) for
    flat index j: element j perturbed alone and judged exactly as the dense mode does (lib.gradcheck.dense),
    smaller steps included (lib.gradcheck.kinks). The calls share one y0 = forward(x), made only if some
    element needs a smaller step."""

    # The element is measured at x's own dtype. With float64 probes forward's output dtype at x
    # was never seen; x's dtype is the rounding it must at least allow for.
    out_dtype = prober.f_plus.dtype if prober.native is None else x.dtype
    reference = reference if reference is not None else Reference(forward, x, np.asarray(grad_output).shape)

    def confirm(j):
        done = confirmed(forward, x, grad_output, analytical, [j], rtol=rtol, atol=atol, eps=eps,
                         out_dtype=out_dtype, reference=reference)
        return (float(done.numerical[0]), float(done.tolerance[0]), float(done.step.reshape(-1)[0]),
                done.forward_calls, done.smaller_steps)

    confirm.reference = reference  # y0, for later confirmations in the same check (lib.gradcheck.reprobe)
    return confirm


def _localisation_notes(lam, root, leaves, a_flat, localise, stopped, *, rtol, atol, excused=0) -> list[str]:
    """Say when the elements found do not account for the failing probe.

    excused: how many of the elements measured passed only at a smaller step;
    their default-step slopes straddled a kink, which moved the probe too.
    """
    notes = []
    failing = 0
    # What is left of the probe's residual once the measured elements' own
    # residuals, (a_j - n_j) * d_j, are taken out; each leaf measurement adds
    # its rounding to the budget.
    remaining = root.residual
    budget = root.tolerance(lam)
    for j, value, group, band, _ in leaves:
        remaining -= group.residual
        budget += lam * group.rounding + group.accumulation
        with np.errstate(invalid="ignore"):
            if not abs(a_flat[j] - value) <= band:
                failing += 1
    if stopped:
        notes.append("Localisation stopped at its forward-call budget; check_gradient lists every element.")
    if failing == 0 and excused:
        notes.append(
            f"No single failing element was isolated; {excused} element{'s' if excused != 1 else ''} measured "
            "alone passed only at a smaller step (a kink within the default step), which moves the probes too: "
            "they are measured again with those elements held still."
        )
    elif failing == 0:
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
