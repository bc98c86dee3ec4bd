"""How much of a mismatch the arithmetic explains: the noise term of the pass rule.

Only an element that fails the plain rule needs either; a passing element
gets no slack and costs nothing beyond its two forward calls. A failing one is
measured again, in two stages, both without trusting the backward:

1. Rounding of the outputs (two more forward calls, at the same points, so
   the slopes are the same): every output the perturbation moved was rounded
   to its dtype at least once, by up to u * |y| (u the unit roundoff); their
   weighted sum over the realised step bounds what rounding can do to the
   slope (`sweep.contract`). A forward rounds a few times on the way to
   an output, hence NOISE_FACTOR.
2. Re-measurement in float64 (two more forward calls, only for an element
   that still fails): the same two points x_i +- h_i, given to the forward as
   float64. A forward that then computes in float64 gives the slope without
   float32's internal rounding (cancellation inside the forward, outputs too
   small to move). The element passes if the backward agrees with that slope
   by the same rule, and the measured float32-float64 difference becomes its
   noise. A wrong backward disagrees with both slopes and still fails; a
   forward that does not compute in float64 is not re-measured.

Truncation (the h**2 term) is not in the noise: the default step keeps it
below rtol for smooth functions, and an element it fails is a real question.
"""

from __future__ import annotations

import numpy as np

from lib.gradcheck import sweep
from lib.gradcheck.differences import Differences, unit_roundoff
from lib.gradcheck.result import NOISE_FACTOR, tolerance_for


def plain_failures(analytical: np.ndarray, found: Differences, rtol, atol) -> np.ndarray:
    """Columns where some row fails the plain rule (no slack): the only ones that need a noise term."""
    return np.flatnonzero(np.any(_failing(analytical, found.numerical, 0.0, rtol, atol), axis=0))


def rounding_slack(found: Differences) -> np.ndarray:
    """(k, N) allowance for output rounding: NOISE_FACTOR times the bound of `found.noise`."""
    return NOISE_FACTOR * found.noise


def _failing(analytical: np.ndarray, numerical: np.ndarray, slack: np.ndarray, rtol, atol) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return ~(np.abs(analytical - numerical) <= tolerance_for(analytical, numerical, rtol, atol) + slack)


def remeasure_in_float64(forward, x, found: Differences, grads, analytical, slack, *, rtol, atol, columns=None):
    """Re-measure the elements that fail in float64 at the same points; widen where the arithmetic explains.

    Args:
        x: the caller's x (not float64); found: its Differences; grads: (k, M) float64.
        analytical: (k, N) float64 backward results; slack: (k, N) from `rounding_slack`.
        columns: the flat index in x of each of found's N columns (default: all of x, in order).
    Returns:
        (slack, calls): the new (k, N) slack and the extra forward calls.
    """
    suspects = np.flatnonzero(np.any(_failing(analytical, found.numerical, slack, rtol, atol), axis=0))
    if x.dtype == np.float64 or suspects.size == 0:
        return slack, 0
    columns = np.arange(x.size) if columns is None else np.asarray(columns)
    slack = slack.copy()
    work = x.astype(np.float64).reshape(-1)
    magnitudes = np.abs(grads)
    calls = 0
    for i in suspects:
        outputs = []
        for point in (found.plus[i], found.minus[i]):
            trial = work.copy()
            trial[columns[i]] = float(point)
            returned = np.asarray(forward(trial.reshape(x.shape)))
            calls += 1
            if returned.dtype != np.float64 or returned.size != grads.shape[1]:
                return slack, calls  # this forward does not compute in float64
            outputs.append(returned.astype(np.float64))
        values, sums = sweep.contract(outputs[0], outputs[1], grads, magnitudes)
        width = abs(float(found.width.reshape(-1)[i]))
        n64, noise64 = values / width, NOISE_FACTOR * unit_roundoff(np.float64) * sums / width
        agrees = ~_failing(analytical[:, i], n64, noise64, rtol, atol)
        measured = np.abs(found.numerical[:, i] - n64) * (1 + rtol) + noise64
        slack[:, i] = np.where(agrees, np.maximum(slack[:, i], measured), slack[:, i])
    return slack, calls
