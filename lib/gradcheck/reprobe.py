"""Fast mode's probes measured again with the elements that passed only at a smaller step held still.

Why a probe that failed can still let the check pass
----------------------------------------------------
A probe moves every element by its default step h0 at once. An element with a
kink within h0 (relu at x = 1e-4) is measured there as a mixture of the kink's
two sides, 0.51 against a correct 1 in float32, and its share of the probe's
residual, (a_i - n_i) s_i w_i, is about 0.49 w_i: far beyond the tolerance T,
which bounds what errors the dense rule *accepts* can add up to. The probe
fails; the search isolates the element and the dense rule, smaller steps
included (lib.gradcheck.kinks), passes it on evidence: its slope converges to
a, or a lies between its one-sided slopes at a kink.

That evidence covers the element, not the rest of the probe. So the failing
verdict is not simply dropped: every probe, and the pair contracted with the
random upstream gradient, is measured again with those elements held at x
(d_i = 0, so they add nothing to either side) and judged against its
tolerance over the remaining elements. If all of them pass, the probe's
guarantee holds for every element that was not measured alone and the check
passes; if one still fails, something else is wrong (another kink the search
did not reach, or a wrong element) and the check fails. This costs 2 forward
calls per probe and one backward call with the random upstream gradient, and
only when a probe failed and the search excused an element.

With grad_output all ones, two kinked elements can cancel in every probe of
grad_output (relu at 1e-4 is measured 0.49 low, relu at -1e-4 0.49 high) and
stand out only in the pair contracted with the random upstream gradient v.
When that pair alone fails and grad_output's probes excused nothing, it is
searched as grad_output's probes are (`search_upstream`: v in place of
grad_output, backward(v) in place of a, the dense rule on each element found,
smaller steps included), and the elements it excuses are held still in turn.
An element that fails there is a backward that misreads grad_output: the
check fails, as it did before.

Holding some elements still can leave others standing out that cancelled
before (or that the search did not reach), so this goes in rounds: measure
again, and if a probe still fails, search it (or the random pair) again with
the held elements inert, hold what it excuses too, measure again; at most
MAX_ROUNDS rounds. The check passes only when every probe passes in some
round; a round that finds nothing new, or an element that fails, ends it.

A backward that misreads grad_output only at such an element is not seen by
the random upstream gradient (the element is held still there), as no probe
sees an element that the dense mode's random probes would; the dense mode
checks every element with its random upstream gradients too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lib.gradcheck.dense import upstream_from_uniform
from lib.gradcheck.differences import check_returned
from lib.gradcheck.localise import _dense_confirm, _start_search
from lib.gradcheck.prober import _Prober
from lib.gradcheck.projection import _numerical_sides, _probe_groups, _random_upstream_groups

#: Rounds of (measure again, search what still fails) before the check gives up and fails.
MAX_ROUNDS = 4


@dataclass(frozen=True)
class Reprobed:
    """The probes measured again with `held` (flat indices, int64) held at x.

    probe_ratio: (probes,) float64, each probe's residual over its tolerance;
    random_ratio: the largest such ratio of the random upstream gradients' pairs;
    forward_wrote: forward changed the array it was given on the first call;
    upstream_calls: forward calls of the searches made besides probed.prober's.
    groups, randoms, points: the probes' and random pairs' _Groups and the
    (plus, minus, width) they were measured at, for the next round's search.
    """

    held: np.ndarray
    probe_ratio: np.ndarray
    random_ratio: float
    forward_wrote: bool
    upstream_calls: int = 0
    groups: list = field(default_factory=list, repr=False)
    randoms: list = field(default_factory=list, repr=False)
    points: tuple = field(default=(), repr=False)

    @property
    def passed(self) -> bool:
        return bool(np.all(self.probe_ratio <= 1.0)) and self.random_ratio <= 1.0


def reprobe(probed, held, lam: float) -> Reprobed:
    """Measure every probe again (2 forward calls each, through probed.prober, which counts them)
    with the elements `held` unperturbed; one backward call for the random upstream gradient.

    probed: lib.gradcheck.fast's _Probed (points, signs, the prober, the upstream seed).
    """
    inputs, prober = probed.inputs, probed.prober
    held = np.unique(np.asarray(held, dtype=np.int64))
    still = inputs.x_probe.reshape(-1)[held]
    plus, minus, width = probed.plus.copy(), probed.minus.copy(), probed.width.copy()
    plus[held], minus[held], width[held] = still, still, 0.0
    kept, prober.upstream_sides = prober.upstream_sides, []
    try:
        sides, wrote = _numerical_sides(prober, probed.signs, plus, minus, probed.upstream_seed)
        a_flat = probed.backward.analytical.reshape(-1)
        settings = {"rtol": inputs.rtol, "atol": inputs.atol, "backward_eps": inputs.backward_eps}
        groups, _ = _probe_groups(sides, probed.signs, width, a_flat, **settings)
        randoms = _random_upstream_groups(prober, inputs.backward, inputs.grad_output, probed.backward.work,
                                          probed.upstream_seed, probed.signs, width, **settings)
    finally:
        prober.upstream_sides = kept
    ratios = np.array([group.ratio(lam) for group in groups])
    return Reprobed(held, ratios, max((group.ratio(lam) for group in randoms), default=0.0), wrote,
                    groups=groups, randoms=randoms, points=(plus, minus, width))


def excused(probed, lam: float, search, ratios: np.ndarray, random_ratio: float,
            leaf_failed: bool) -> Reprobed | None:
    """The probes measured again without the elements that passed only at a smaller step, in rounds,
    when a probe failed and nothing else decides the check (this module's docstring); None when no
    element could be excused.

    search: grad_output's _Search (None if none ran); ratios: its probes' error ratios;
    random_ratio: the random upstream gradient's; leaf_failed: an element failed the dense rule.
    """
    if leaf_failed or (bool(np.all(ratios <= 1.0)) and random_ratio <= 1.0):
        return None
    if probed.forward_wrote or probed.backward.wrote:
        return None  # measurements that perturb a private copy of x cannot be trusted
    reference = getattr(search.confirm, "reference", None) if search is not None else None
    held = [r.index for r in search.smaller_steps if r.passed] if search is not None else []
    outcome, calls = None, 0
    for _ in range(MAX_ROUNDS):
        if outcome is not None or not held:
            found, spent, failed = _search_again(probed, lam, outcome, reference)
            calls += spent
            if failed or not set(found) - set(held):
                break
            held += found
        outcome = reprobe(probed, held, lam)
        if outcome.passed or outcome.forward_wrote:
            break
    if outcome is None:
        return None
    return Reprobed(outcome.held, outcome.probe_ratio, outcome.random_ratio, outcome.forward_wrote, calls)


def _search_again(probed, lam: float, outcome: Reprobed | None, reference) -> tuple[list[int], int, bool]:
    """Search the first probe that still fails (else the random pair) with the held elements inert.

    Returns (the elements it excused, forward calls not counted by probed.prober, whether an element
    it isolated failed the dense rule).
    """
    inputs = probed.inputs
    plus, minus, width = outcome.points if outcome is not None else (probed.plus, probed.minus, probed.width)
    randoms = outcome.randoms if outcome is not None else probed.backward.random_groups
    failing = [] if outcome is None else [k for k, r in enumerate(outcome.probe_ratio) if r > 1.0]
    if failing:
        prober, grad, a = probed.prober, inputs.grad_output, probed.backward.analytical
        groups, chosen = outcome.groups, failing[0]
    elif randoms and randoms[0].ratio(lam) > 1.0:
        prober, grad, a = _upstream(probed)
        groups, chosen = [randoms[0]], 0
    else:
        return [], 0, False
    confirm = _dense_confirm(inputs.forward, inputs.x, grad, a, probed.prober, rtol=inputs.rtol, atol=inputs.atol,
                             eps=inputs.eps, reference=reference)
    signs, flips = (probed.signs, probed.flips) if failing else ([probed.signs[0]], [None])
    search, start = _start_search(prober, lam, groups, signs, flips, chosen, plus, minus, width, a.reshape(-1),
                                  rtol=inputs.rtol, atol=inputs.atol, backward_eps=inputs.backward_eps,
                                  confirm=confirm)
    leaves, _ = search.run(start, rtol=inputs.rtol, atol=inputs.atol, localise=max(inputs.localise, 1))
    # probed.prober's calls are counted through it; a prober of v's own is counted here
    spent = search.detail_calls + (prober.calls if prober is not probed.prober else 0)
    with np.errstate(invalid="ignore"):
        failed = any(not abs(a.reshape(-1)[j] - value) <= band for j, value, _, band, _ in leaves)
    return [r.index for r in search.smaller_steps if r.passed], spent, failed


def _upstream(probed):
    """(a _Prober over v, v, backward(v, x) as float64) for the random upstream gradient v of the first
    pair, drawn as _random_upstream_groups draws it; one backward call."""
    inputs = probed.inputs
    grad = np.asarray(inputs.grad_output)
    draws = np.random.default_rng(probed.upstream_seed)
    v = upstream_from_uniform(draws.random(grad.size, dtype=np.float32), grad.dtype).reshape(grad.shape)
    a_v = np.asarray(check_returned(inputs.backward(np.array(v, copy=True), probed.backward.work),
                                    inputs.x.shape, "backward", "x"), dtype=np.float64)
    return _Prober(inputs.forward, inputs.x_probe, v, native=inputs.x.dtype), v, a_v
