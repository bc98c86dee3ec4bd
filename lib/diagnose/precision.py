"""Is a failure the arithmetic's fault? Finite-difference budgets and the precision findings.

A failure that another step or float64 resolves is rounding only when it is
within a few times its budget (rounding of the outputs over the step plus a
smooth function's truncation); beyond that the step straddles something the
other pass does not reach: a jump (jumps.py) or a kink.
"""

from __future__ import annotations

import numpy as np

from lib.diagnose.evidence import Pass, Session
from lib.diagnose.findings import Finding, finding
from lib.diagnose.jumps import jump_finding, locate_jump
from lib.diagnose.patterns import EXACT

# A failure that another step or float64 resolves counts as rounding only
# when it is within this many times its finite-difference budget (see
# _budget_excess). Correct pairs in float16 and float32 stay below 4 (the
# catalogue's precision entries below 1); a unit jump inside float32's step
# misses by ~4e4, a kink by ~1e4, tanh(50 x) by ~1e3.
_BUDGET_MULTIPLE = 10.0

# Relative agreement that float64 central differences at the default step
# reach with ease (~1e-10); a float64 mismatch below it is a tolerance set
# tighter than finite differences can resolve, not a wrong gradient.
_FLOAT64_BUDGET = 1e-6


def collapsed(pass_: Pass) -> tuple[np.ndarray, np.ndarray]:
    """(k, n) bool twice: where the pass's step collapsed, so that its numerical gradient is 0 whatever
    the forward's slope.

    First: x+eps and x-eps are stored as the same value (a zero width). Second, of
    the rest: forward returned identical outputs at the two points and the
    numerical value is exactly 0 (the step moves no output by a unit of its
    dtype). Neither measures anything, so no finite-difference budget applies
    there: a multiple of one would be 0 or a number with no meaning.
    """
    same_x = np.broadcast_to(pass_.width == 0.0, pass_.numerical.shape)
    # numerical == 0: a smaller-step measurement put in place of the default step's is not collapsed
    same_y = ~same_x & pass_.still & (pass_.numerical == 0.0)
    return same_x, same_y


def budget_excess(pass_: Pass) -> tuple[float, int, int]:
    """How many times its finite-difference budget the pass's worst failing element misses by.

    The budget of numerical[k, i] is what a correct gradient can be off by:
    rounding of the outputs (`noise`), the exact effect of dividing by the
    nominal rather than the realised step, a smooth function's truncation
    error, taken as (eps / max(1, |x|))^2 relative (a function that bends on
    the scale of x itself), and a few units of the dtype for the backward's
    own rounding. Returns (multiple, probe, flat index) of the worst failing
    element; multiple 0 when no element fails. An element whose step
    collapsed (`collapsed`) has no limit: nothing at all can be measured
    there, so it counts 0, as does an infinite budget (an infinite a); a NaN
    counts inf. `budget_said` words a multiple of 0 or inf as what it is.
    """
    a, n = pass_.analytical, pass_.numerical
    failing = pass_.ratios() > 1.0
    if not failing.any():
        return 0.0, 0, 0
    unit = float(np.finfo(pass_.dtype).eps)
    relative_step = pass_.half / np.maximum(1.0, np.abs(pass_.x.reshape(-1).astype(np.float64)))
    with np.errstate(invalid="ignore"):
        width_error = np.abs(pass_.realised - n)
    width_error[np.isnan(width_error)] = np.inf
    budget = pass_.noise + width_error + (relative_step ** 2 + 4.0 * unit) * np.maximum(np.abs(a), np.abs(n))
    error = np.abs(a - n)
    with np.errstate(divide="ignore", invalid="ignore"):
        multiple = np.where(np.isinf(budget), 0.0, error / budget)
    multiple[np.isnan(multiple)] = np.inf  # non-finite gradients: no budget covers them
    # identical outputs measure nothing either (a zero width has an infinite noise, so 0 above)
    multiple[collapsed(pass_)[1]] = 0.0
    multiple[~failing] = 0.0
    k, i = np.unravel_index(int(np.argmax(multiple)), multiple.shape)
    return float(multiple[k, i]), int(k), int(i)


def budget_said(pass_: Pass, multiple: float) -> str:
    """The clause a precision finding gives `budget_excess`'s multiple: the multiple only when it is finite
    and above 0; the failing elements whose step collapsed, or whose value is not finite, said as such
    (a multiple of 0 or inf would say nothing true)."""
    said = ""
    if np.isfinite(multiple) and multiple > 0.0:
        said = (f"; the mismatch is {multiple:.2g} times {pass_.dtype}'s finite-difference budget at this step "
                "(rounding of the outputs plus a smooth function's truncation)")
    collapse = _collapse_said(pass_)
    if not (said or collapse):
        with np.errstate(invalid="ignore"):
            unmeasured = (pass_.ratios() > 1.0) & ~(np.isfinite(pass_.analytical) & np.isfinite(pass_.numerical))
        if unmeasured.any():
            collapse = (f"; {int(unmeasured.any(axis=0).sum())} failing elements have a gradient that is not "
                        "finite, which no finite-difference budget covers")
    return said + collapse


def _collapse_said(pass_: Pass) -> str:
    """"; the step collapsed at m/f failing elements: ..." (`collapsed`), or "" when none did."""
    failing = pass_.ratios() > 1.0
    same_x, same_y = (np.any(failing & where, axis=0) for where in collapsed(pass_))
    said_x = f"x + eps and x - eps are the same {pass_.dtype} number"
    said_y = "forward returned the same outputs at x + eps and x - eps"
    if not (same_x.any() or same_y.any()):
        return ""
    if same_x.any() and same_y.any():
        how = f"{said_x} at {int(same_x.sum())}, and {said_y} at {int(same_y.sum())}"
    else:
        how = f"{said_x if same_x.any() else said_y} there"
    return (f"; the step collapsed at {int(same_x.sum() + same_y.sum())}/{int(failing.any(axis=0).sum())} "
            f"failing elements: {how}, so the numerical gradient is 0 and says nothing about the backward")


def float64_within_budget(pass_: Pass) -> tuple[bool, float]:
    """float64 agreement far below any sane tolerance: the tolerance, not the gradient, is wrong."""
    a, n = pass_.analytical, pass_.realised
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(n))):
        return False, np.inf
    scale = max(float(np.max(np.abs(a))), float(np.max(np.abs(n))), 1e-300)
    rel = np.abs(a - n) / (np.abs(a) + np.abs(n) + EXACT * scale)
    worst = float(np.max(rel))
    return worst <= _FLOAT64_BUDGET, worst


def precision_finding(first: Pass, resolved_by: str, resolving: Pass | None, worst_rel: float,
                       eps, budget: str = "") -> Finding:
    """The precision finding for how the failure was resolved; budget: `budget_said`'s clause, if any."""
    before = first.trial().user
    if resolved_by == "realised":
        i = int(np.argmax(first.ratios()[0]))
        two_h = 2.0 * first.half[i]
        after = first.trial("realised").user
        return finding(
            "precision",
            f"max error/tolerance {before:.3g} dividing by the nominal 2*eps, {after:.3g} dividing by the "
            f"realised step: at the worst element (flat index {i}) {first.dtype} stores x+eps and x-eps "
            f"{first.width[i]:.5g} apart, not {two_h:.5g} ({100 * (first.width[i] / two_h - 1):+.3g}%)",
            "divide by the realised step (x+eps) - (x-eps) as stored, as lib.gradcheck does; do not loosen rtol",
        )
    if resolved_by == "default step":
        typical = float(np.median(resolving.half))
        after = resolving.trial().user
        collapsed = int(np.sum(first.width == 0))
        worst = int(np.argmax(first.ratios()[0]))
        if collapsed:
            why = (f"x+eps and x-eps round to x itself at {collapsed}/{first.width.size} elements, so the "
                   "difference there is 0 (rounding)")
        elif first.half[worst] > resolving.half[worst]:
            why = ("the step is coarser than the default one, and the central difference's truncation "
                   "error, of order eps^2 times the third derivative, dominates")
        else:
            why = "rounding noise, about machine eps / eps relative, swamps the difference"
        return finding(
            "precision",
            f"max error/tolerance {before:.3g} with eps={eps:g}, {after:.3g} with the default step "
            f"cbrt(machine eps) * max(1, |x|) (median {typical:.3g}) in {first.dtype}: at eps={eps:g} {why}"
            f"{budget}",
            "use eps=None (the default step) and divide by the realised step",
        )
    if resolved_by == "float64":
        after = resolving.trial().user
        return finding(
            "precision",
            f"max error/tolerance {before:.3g} in {first.dtype}, {after:.3g} for the same check in float64 "
            f"(x upcast, default step): the formula is right, {first.dtype} finite differences "
            f"are not accurate enough for this tolerance{budget}",
            f"check gradients in float64; if the check must run in {first.dtype}, loosen rtol to its "
            "rounding budget (about 1e-2 for float16)",
        )
    return finding(
        "precision",
        f"max error/tolerance {before:.3g}, yet in float64 at the default step analytical and numerical "
        f"agree to {worst_rel:.2g} relative: rtol={first.rtol:g}, atol={first.atol:g} asks for more than "
        "a central difference can resolve (its rounding and truncation error)",
        "use a tolerance above the finite-difference budget (rtol >= 1e-6 in float64, 1e-3 in float32)",
    )


def resolved_elsewhere(session: Session, first: Pass, failed: list[Pass], resolved_by: str,
                        resolving: Pass, eps, probe: bool) -> tuple[list[Finding], bool]:
    """A check that fails in x's dtype but passes at the default step or in float64.

    Precision only when the failure is within the failing pass's budget. Beyond
    it, the difference between the passes is the step: look for a jump the
    failing step straddles and the other does not reach (wrong-backward, or
    nondeterministic-forward when a mask moves with x); with no jump, it is
    truncation at a step too coarse for the forward (still precision, with
    another suggestion). `probe` False skips the jump search (a finding
    already explains a failure of the other pass). Returns (findings,
    beyond_budget): beyond the budget, the findings read the forward's
    behaviour within the step, which only a deterministic forward has.
    """
    (multiple, k, i), worst = max(((budget_excess(p), p) for p in failed), key=lambda e: e[0][0])
    if multiple <= _BUDGET_MULTIPLE:
        return [precision_finding(first, resolved_by, resolving, np.nan, eps, budget_said(worst, multiple))], False
    before = worst.trial().user
    after = resolving.trial().user
    other = ("in float64 (x upcast, default step)" if resolved_by == "float64"
             else "at the default step")
    head = (f"max error/tolerance {before:.3g} in {worst.dtype} at eps = {worst.half[i]:.3g} is "
            f"{_beyond(worst, multiple, k, i)}, so it is not rounding, although the check {other} "
            f"passes (max error/tolerance {after:.3g})")
    jump = locate_jump(session, worst, (k, i)) if probe else None
    if jump is not None:
        at = 0.5 * (jump.low + jump.high)
        reach = resolving.half[jump.index]
        why = (f" only because its step there, {reach:.3g}, does not reach the jump" if abs(at - jump.value) > reach
               else "")
        return [jump_finding(worst, jump, f"{head}{why}; ")], True
    bend = ("the forward has no jump there (its change splits between the halves when the step is bisected), "
            "so it bends on a scale below eps (a kink within the step, or curvature the step is too coarse "
            "for): the mismatch is the finite difference's truncation error, not the formula" if probe else
            "truncation at a kink or sharp curvature within eps of x would do this, and so would a jump "
            "there (not searched for: another finding explains the random grad_outputs' failure)")
    without = worst.plain or worst.divide_by == "nominal"  # a rule without check_gradient's smaller steps
    rule = ("judge by check_gradient's default rule (the realised step, strict=False), whose smaller steps "
            "measure a kink within the step, or " if without else "")
    return [finding(
        "precision",
        f"{head}: at the worst element (flat index {i}, x = {float(worst.x.reshape(-1)[i]):.6g}, "
        f"{'your grad_output' if k == 0 else 'a random grad_output'}) a = {worst.analytical[k, i]:.6g}, "
        f"n = {worst.numerical[k, i]:.6g}{_smaller_said(worst, k, i)}; {bend}",
        f"{rule}check with a step below the scale on which the forward bends (in float64, as the check that "
        "passed), or at points farther than eps from kinks; do not loosen rtol, which would hide real errors",
    )], True


def _beyond(pass_: Pass, multiple: float, k: int, i: int) -> str:
    """How far beyond its budget element i of probe k is: a multiple when finite, else why none applies."""
    if np.isfinite(multiple):
        return (f"{multiple:.3g} times the finite-difference budget there (rounding of the outputs over the "
                "step, plus a smooth function's truncation)")
    return (f"beyond any finite-difference budget (a = {pass_.analytical[k, i]:.6g}, n = "
            f"{pass_.numerical[k, i]:.6g} at flat index {i}: a value that is not finite)")


def _smaller_said(pass_: Pass, k: int, i: int) -> str:
    """What check_gradient's smaller steps found at element i for probe k ("" if it was not measured so)."""
    records = pass_.smaller_steps[k] if len(pass_.smaller_steps) > k else ()
    record = next((r for r in records if r.index == i), None)
    if record is None:
        return ""
    return (f"; check_gradient's smaller steps, halving eps {record.k} times to {record.step:.3g}, ended with "
            f"'{record.verdict}' (central slope {record.central:.6g}, one-sided {record.slope_minus:.6g} and "
            f"{record.slope_plus:.6g})")
