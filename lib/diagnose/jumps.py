"""Does the forward jump inside the step? Located by bisection (3 to 14 forward calls).

One difference quotient across a jump makes every slope meaningless, so the
rules look for a jump before they read slopes.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from lib.diagnose.evidence import Pass, Session, Unavailable
from lib.diagnose.findings import Finding, finding

# Bisections of the step when looking for a jump: enough to tell a jump from
# a kink anywhere but within 1/4096 of the step's ends.
_BISECTIONS = 12



class Jump(NamedTuple):
    """A jump of forward inside [x_i - eps, x_i + eps], located by bisection."""

    index: int  # flat index of the element of x that was moved
    probe: int  # the probe whose worst element this is
    value: float  # x_i
    half: float  # eps at x_i
    total: float  # max |change of any output| between x_i - eps and x_i + eps
    change: float  # the same over the final interval
    low: float  # the final interval, as stored in x's dtype
    high: float
    splits: int  # bisections done
    adjacent: bool  # the final interval's ends are neighbouring values of the dtype
    zero_moves: int  # other outputs switching between zero and nonzero across it


def locate_jump(session: Session, pass_: Pass, element: tuple[int, int] | None = None) -> Jump | None:
    """Does forward jump between x-eps and x+eps at the worst element? (3 to 14 forward calls)

    A continuous forward's change over an interval splits between the two
    halves, so bisecting towards the larger half soon finds one that holds
    little of it; across a jump one half always holds the whole jump. This
    finds a jump anywhere in the step (not only close to x), and tells it from
    a kink, whose change splits once the interval is narrower than its
    distance to the kink. `element` (probe, flat index) picks where to look;
    default: the worst element of the pass.
    """
    if element is None:
        r = pass_.ratios()
        probe = 0 if np.any(r[0] > 1.0) else int(np.argmax(r.max(axis=1)))
        element = probe, int(np.argmax(r[probe]))
    probe, i = element
    cast = pass_.x.dtype.type
    value, h = float(pass_.x.reshape(-1)[i]), float(pass_.half[i])

    def at(point) -> np.ndarray:
        work = pass_.x.copy()
        work.reshape(-1)[i] = point
        return session.forward(work, strict=False).reshape(-1)

    def zero_moves(a: np.ndarray, b: np.ndarray) -> int:
        moved = (a == 0) != (b == 0)
        if moved.size == pass_.x.size:
            moved[i] = False  # element i's own output may cross zero (a kink), others must not move
        return int(moved.sum())

    low, high = cast(value - h), cast(value + h)
    try:
        out_low, out_high = at(low), at(high)
        total = float(np.max(np.abs(out_high - out_low)))
        scale = max(float(np.max(np.abs(out_low))), float(np.max(np.abs(out_high))))
        # The change must be a visible part of the output.
        if not total > 1e-3 * scale:
            return None
        moves = zero_moves(out_low, out_high)
        change, splits, adjacent = total, 0, False
        for splits in range(1, _BISECTIONS + 1):
            middle = cast((float(low) + float(high)) / 2.0)
            if middle in (low, high):
                adjacent, splits = True, splits - 1
                break
            out_middle = at(middle)
            left = float(np.max(np.abs(out_middle - out_low)))
            right = float(np.max(np.abs(out_high - out_middle)))
            if max(left, right) < 0.75 * change:
                return None  # the change splits: continuous at this scale
            if left >= right:
                high, out_high, change = middle, out_middle, left
            else:
                low, out_low, change = middle, out_middle, right
    except Unavailable:
        return None
    moves = max(moves, zero_moves(out_low, out_high))
    return Jump(i, probe, value, h, total, change, float(low), float(high), splits, adjacent, moves)


def _interval(low: float, high: float) -> str:
    """low and high with just enough digits to tell them apart."""
    for digits in range(4, 18):
        a, b = f"{low:.{digits}g}", f"{high:.{digits}g}"
        if a != b:
            return f"{a} and {b}"
    return f"{low!r} and {high!r}"


def _jump_text(jump: Jump) -> str:
    where = "between neighbouring floats" if jump.adjacent else f"after {jump.splits} bisections of the step"
    return (f"forward gives identical outputs at the same x but jumps within the step: at flat index "
            f"{jump.index} (x = {jump.value:.6g}, eps = {jump.half:.3g}) its output changes by up to "
            f"{jump.total:.4g}, and still by {jump.change:.4g} {where}, between x = "
            f"{_interval(jump.low, jump.high)}, where a continuous function's change would split between the halves")


def jump_finding(pass_: Pass, jump: Jump, lead: str = "", where: str = "") -> Finding:
    """The finding for a located jump; `lead` says how the diagnosis got here."""
    text = lead + _jump_text(jump)
    if jump.zero_moves:
        return finding(
            "nondeterministic-forward",
            f"{text}; {jump.zero_moves} outputs switch between zero and nonzero: the mask depends on x's values, "
            f"so the check's +eps and -eps calls use different masks{where}",
            "draw the mask independently of x's values (a fixed seed, or the mask of the test's own forward call)",
        )
    k, i = jump.probe, jump.index
    distance = abs(0.5 * (jump.low + jump.high) - jump.value)
    return finding(
        "wrong-backward",
        f"{text}; the jump lies {distance:.3g} from x. No finite difference across a jump can check a "
        f"gradient: the backward gives {pass_.analytical[k, i]:.6g} there, the numerical gradient is "
        f"{pass_.numerical[k, i]:.6g}. Counted as wrong-backward: the backward has no term for the jump (no "
        f"backward can return one), and neither rounding nor a mask explains the mismatch{where}",
        "check at points farther than eps from the discontinuity (rounding, branches, thresholds), or test "
        "the pieces apart; do not loosen rtol, which would hide real errors",
    )

