"""check_gradient's whole pass rule on one dense pass of the diagnosis (docs/checking_at_kinks.md).

An element that fails |a - n| <= atol + rtol * max(|a|, |n|) at the default step is
measured again before it is blamed, by lib.gradcheck's own code, as its dense
mode does: stage 1 (lib.gradcheck.arithmetic) allows for the outputs' rounding,
from the sums the pass already measured (no call), and re-measures in float64 at
the same points what still fails (2 calls); stage 2 (lib.gradcheck.kinks) halves
the step of what fails after that (3 calls per halving: the two points and
forward(x) again, against the outputs at x the diagnosis already has), so that a
kink within the step (relu near 0, a max between near-ties) is not a failure.

Every upstream gradient of the pass (the caller's and the random ones) is judged
on its own, so row 0 is exactly check_gradient(..., probes=0). `plain` is
check_gradient's strict=True: the rule alone, no noise term, no smaller steps.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

from lib.gradcheck.arithmetic import plain_failures, remeasure_in_float64, rounding_slack
from lib.gradcheck.differences import Differences
from lib.gradcheck.kinks import Reference, remeasure_failing
from lib.gradcheck.result import SmallerStep, tolerance_for


@dataclass(frozen=True)
class Judged:
    """What the pass rule's stages gave one pass (k upstream gradients, n elements, float64).

    slack: (k, n) stage 1's noise term (0 where the plain rule passes).
    numerical, band: (k, n) stage 2's measurement and its whole pass band, NaN where
        the default step's measurement and rule stand.
    records: per row, a SmallerStep for each element that row measured at smaller steps.
    row_calls: the forward calls check_gradient(probes=0) spends on row 0 beyond its 2n + 1.
    """

    slack: np.ndarray
    numerical: np.ndarray
    band: np.ndarray
    records: tuple[tuple[SmallerStep, ...], ...]
    row_calls: int

    @staticmethod
    def nothing(shape) -> Judged:
        """The plain rule: no slack, nothing measured again."""
        return Judged(np.zeros(shape), np.full(shape, np.nan), np.full(shape, np.nan), ((),) * shape[0], 0)


def _failing(analytical, numerical, slack, rtol, atol) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return ~(np.abs(analytical - numerical) <= tolerance_for(analytical, numerical, rtol, atol) + slack)


def _counted(session):
    """forward on a private copy of its argument, counted among the session's calls."""
    def forward(a):
        session.forward_calls += 1
        return session.forward_fn(np.array(a, copy=True))
    return forward


def _stage_one(session, x, found: Differences, weights, analytical, rtol, atol):
    """(slack, calls row 0 costs check_gradient): rounding, then float64 at the same points."""
    slack = np.zeros_like(found.numerical)
    suspects = plain_failures(analytical, found, rtol, atol)
    if suspects.size == 0:
        return slack, 0
    slack[:, suspects] = rounding_slack(found)[:, suspects]
    own = int(np.sum(_failing(analytical[0], found.numerical[0], 0.0, rtol, atol)))
    wider = int(np.sum(_failing(analytical[0], found.numerical[0], slack[0], rtol, atol)))
    before = session.forward_calls
    with contextlib.suppress(Exception):  # a forward that refuses float64 keeps the rounding slack
        slack, _ = remeasure_in_float64(_counted(session), x, found, weights, analytical, slack, rtol=rtol,
                                        atol=atol)
    in_float64 = 0 if x.dtype == np.float64 else min(2 * wider, session.forward_calls - before)
    return slack, 2 * own + in_float64


def judge(session, x: np.ndarray, found: Differences, weights: np.ndarray, analytical: np.ndarray, *,
          rtol: float, atol: float, eps, out_dtype, y0: np.ndarray | None, plain: bool, smaller: bool,
          raising: bool) -> Judged:
    """Stages 1 and 2 for every row of a pass whose slopes, rounding sums and points are `found`.

    session: the diagnosis's Session (its forward, its call count, the output's shape);
    weights: (k, M) the upstream gradients; analytical: (k, n) backward's values; eps: the
    pass's step (None: the default); out_dtype: what forward returned in this pass; y0:
    forward(x) as measured already, or None (one call on first need); plain: the rule
    alone; smaller: whether stage 2 applies (the realised divide only); raising: whether
    an error of forward in stage 2 propagates (else the stage ends and its elements fail).
    """
    if plain:
        return Judged.nothing(found.numerical.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        slack, row_calls = _stage_one(session, x, found, weights, analytical, rtol, atol)
    # Each row on its own, as a check with that upstream gradient alone: no slack where it passes the plain rule.
    slack[~_failing(analytical, found.numerical, 0.0, rtol, atol)] = 0.0
    unchanged = Judged.nothing(slack.shape)
    judged = Judged(slack, unchanged.numerical, unchanged.band, unchanged.records, row_calls)
    if not smaller:
        return judged
    forward = _counted(session)
    try:
        measured = remeasure_failing(forward, x, np.arange(x.size), found, weights, analytical, slack,
                                     Reference(forward, x, session.out_shape, y0), eps=eps, out_dtype=out_dtype,
                                     rtol=rtol, atol=atol)
    except Exception:
        if raising:
            raise
        return judged
    if measured is None:
        return judged
    row_calls += _smaller_step_calls(measured.records[0], x.dtype)
    return Judged(slack, measured.numerical, measured.band, measured.records, row_calls)


def _smaller_step_calls(records, dtype) -> int:
    """The forward calls check_gradient(probes=0) spends on row 0's smaller steps, from their records.

    Three per halving, those in x's dtype that an element redone in float64 took first included
    (its k counts only the float64 ones). forward(x) in float64 is one call per check, made as soon
    as rounding leaves an element undecided in float16/float32, also when forward turns out to keep
    its own dtype (the element then stays "rounding", measured in x's dtype).
    """
    asked = any(r.in_float64 or (r.verdict == "rounding" and dtype != np.float64) for r in records)
    return 3 * sum(r.halvings for r in records) + asked
