"""Is the forward a function of x alone? Calls at the same x, and how much their agreement proves.

Calls that differ prove a nondeterministic forward. Calls that agree prove
little when they agree trivially: a forward that draws a fresh dropout mask
on every call returns the same all-zero output on most calls at p = 0.9 and
one element (two draws both drop with probability 0.81), and the same
all-kept output on most calls at p = 0.05. The finite differences of such a
forward compare two different functions, and a diagnosis that trusted the
agreement would blame a correct backward.

So a blame that rests on the forward's slopes waits until the agreement is
strong evidence. The alternative it has to rule out: a forward that drops each
output independently, with a probability p between SMALLEST_DROP and
1 - SMALLEST_DROP, on every call. k calls that all keep the same m nonzero
outputs have probability (1 - p)^(k m) <= (1 - SMALLEST_DROP)^(k m) under it. An
output that is zero on every call counts for nothing: it may be zero whatever
the mask (x_i = 0, a ReLU). The calls at x go on until that bound is below
CHANCE, which takes

    k = ceil(log(CHANCE) / (m * log(1 - SMALLEST_DROP)))  (at least the 3 already made)

calls: 3 for m >= 45 nonzero outputs (no extra call), 14 for m = 10, 135 for
m = 1. Each call is compared with the first bit for bit, which also compares
which outputs are zero. With no nonzero output at all (m = 0), identical calls
prove nothing; after MOST_CALLS calls without a difference the diagnosis is
inconclusive, and says so, instead of blaming the backward.
"""

from __future__ import annotations

import math

import numpy as np

from lib.diagnose.evidence import Session, Unavailable
from lib.diagnose.findings import INCONCLUSIVE, Finding, finding

#: The smallest (and 1 - the largest) per-call drop probability of the stochastic forward ruled out.
SMALLEST_DROP = 0.05

#: Identical calls establish determinism once a stochastic forward would give them with at most this probability.
CHANCE = 1e-3

#: The calls at x that determinism needs at the least (the ones every diagnosis makes).
FEWEST_CALLS = 3


def _calls_for(nonzero: int) -> int:
    return max(FEWEST_CALLS, math.ceil(math.log(CHANCE) / (nonzero * math.log1p(-SMALLEST_DROP))))


#: The most calls at x the diagnosis makes: what a single nonzero output needs (135).
MOST_CALLS = _calls_for(1)


def calls_needed(nonzero: int) -> int:
    """How many identical calls at x, with `nonzero` nonzero outputs each, establish determinism.

    With none (every output zero), MOST_CALLS: enough to see a nonzero output
    of a forward that keeps each one with probability SMALLEST_DROP.
    """
    return _calls_for(nonzero) if nonzero > 0 else MOST_CALLS


def chance_of_agreement(nonzero: int, calls: int) -> float:
    """Bound on the probability that a forward with a fresh mask keeps `nonzero` outputs on all `calls` calls."""
    return (1.0 - SMALLEST_DROP) ** (nonzero * calls) if nonzero > 0 else 1.0


def _differ(base: np.ndarray, other: np.ndarray) -> np.ndarray:
    return ~((base == other) | (np.isnan(base) & np.isnan(other)))


def nondeterminism(*outs: np.ndarray, lead: str = "") -> Finding | None:
    """A finding when forward's outputs at the same x differ between calls; None when identical."""
    base = outs[0]
    differs = np.zeros(base.shape, dtype=bool)
    zero_flips = np.zeros(base.shape, dtype=bool)
    for other in outs[1:]:
        differs |= _differ(base, other)
        zero_flips |= (base == 0) != (other == 0)
    if not differs.any():
        return None
    spread = max(float(np.max(np.abs(o - base))) for o in outs[1:])
    masks = (f"; the set of zero outputs changes in {int(zero_flips.sum())} elements, as a fresh "
             "dropout mask on each call would" if zero_flips.any() else "")
    return finding(
        "nondeterministic-forward",
        f"{lead}outputs of {len(outs)} calls at the same x differ in {int(differs.sum())}/{differs.size} "
        f"elements (max difference {spread:.3g}){masks}",
        "make the forward a function of x alone: draw the mask from a fixed seed on every call (not "
        "seed=0 or None, not a shared or global generator), or use the mask of the test's own forward "
        "call; keep running statistics frozen during the check",
    )


def confirm(session: Session, x: np.ndarray, outs: list[np.ndarray], blame: str) -> Finding | None:
    """None when identical calls at x establish determinism; else the finding that replaces `blame`.

    outs: forward's outputs at x so far, all identical (the diagnosis's first
    calls); more calls are made, up to calls_needed(nonzero outputs), and
    stop at the first that differs. Returns a nondeterministic-forward finding
    when one differs, an inconclusive one when none does but the agreement
    proves nothing (every output zero) or a call fails.
    """
    base = outs[0]
    nonzero = int(np.count_nonzero(base))
    need = calls_needed(nonzero)
    while len(outs) < need:
        try:
            out = session.forward(x, strict=False)
        except Unavailable as why:
            return _inconclusive(f"forward could not be called again at x ({why}) after {len(outs)} identical "
                                 "calls", blame)
        outs.append(out)
        if _differ(base, out).any():
            lead = (f"the first {len(outs) - 1} calls at x agreed, with {nonzero}/{base.size} outputs nonzero, as "
                    f"a forward with a fresh mask often does; call {len(outs)} differs: ")
            return nondeterminism(base, out, lead=lead)
    if nonzero:
        return None
    where = ("" if session.nonzero_seen else
             ", and at every perturbed point of the check: the forward was the zero function for every draw it "
             "saw")
    return _inconclusive(
        f"forward returned all {base.size} outputs zero on all {len(outs)} calls at x{where}; identical zeros "
        f"prove nothing about determinism (a forward that drops each output with probability p gives them with "
        f"probability p^{base.size * len(outs)}, which is not small for p close to 1)", blame)


def _inconclusive(reason: str, blame: str) -> Finding:
    return finding(
        INCONCLUSIVE,
        f"{reason}. Blaming the backward needs a deterministic forward, so the mismatch is not attributed "
        f"(on a deterministic forward the rules would have named {blame})",
        "check at an x where the forward's outputs are nonzero; if the forward draws a mask, draw it from a fixed "
        "seed (or use the mask of the checked call) and diagnose again; do not change the backward on this "
        "evidence",
    )
