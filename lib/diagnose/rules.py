"""Attributing a mismatch that rounding does not explain: the rules, as an ordered table.

Each rule reads the evidence of one dense pass and returns its findings, or
None when it does not apply; `explain` asks the rules in the order of RULES
and stops at the first that answers. The order is the argument: properties
of the backward alone (finite, repeatable, uses grad_output, linear, not the
identity) come first because they need no trust in the forward's slopes; a
jump inside the step comes next because it makes every slope meaningless;
then the slopes are read, elementwise (keep patterns, factors, branches) or
as one constant ratio; `no_pattern` always answers. Every rule after
BACKWARD_RULES trusts the forward to be a function of x alone: `explain` says
when the answer came from one of them, and the diagnosis then makes sure of
the forward's determinism (lib.diagnose.determinism) before it blames the
backward.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lib.diagnose.evidence import Pass, Session
from lib.diagnose.findings import Finding, finding
from lib.diagnose.jumps import jump_finding, locate_jump
from lib.diagnose.patterns import (
    dropout_factor_name,
    generic_factor_name,
    mask_relation,
    pattern_tolerance,
    same,
    two_level,
    worst_element,
    wrong_branch,
)


@dataclass(frozen=True)
class Evidence:
    """What every rule reads.

    pass_: the dense pass to explain (k probes, n elements, float64).
    context: how the failure showed, prefixed to every finding's evidence.
    where: the pass's dtype and any note, appended to it.
    rel: how far apart two slopes may be and still count as equal.
    """

    session: Session
    pass_: Pass
    x_shape: tuple
    user_failed: bool
    context: str
    where: str
    rel: float

    @property
    def a(self) -> np.ndarray:
        return self.pass_.analytical

    @property
    def probes(self) -> np.ndarray:
        return self.pass_.probes

    def worst(self) -> str:
        return worst_element(self.pass_, 0 if self.user_failed else 1)

    def wrong(self, evidence: str, suggestion: str) -> list[Finding]:
        return [finding("wrong-backward", f"{self.context}{evidence}", suggestion)]


Rule = Callable[[Evidence], "list[Finding] | None"]


def non_finite_backward(e: Evidence):
    if np.all(np.isfinite(e.a)):
        return None
    bad = int(np.sum(~np.isfinite(e.a[0])))
    return e.wrong(f"backward returns non-finite values at {bad}/{e.a.shape[1]} elements{e.where}",
                   "find the division by zero or overflow in the backward")


def differs_between_calls(e: Evidence):
    """Same arguments, different result: the backward draws something anew per call."""
    repeat, a1 = e.pass_.repeat, e.a[1]
    if np.all(same(repeat, a1, 0.0)):
        return None
    differ = int(np.sum(~same(repeat, a1, 0.0)))
    flips = int(np.sum((repeat == 0) != (a1 == 0)))
    told = (f"{e.context}backward gives different gradients on two calls with identical arguments "
            f"({differ}/{e.a.shape[1]} elements differ")
    if flips:
        return [finding("mask-mismatch",
                        f"{told}; {flips} switch between zero and nonzero): it draws its own mask on every call "
                        f"instead of using the forward's{e.where}",
                        "pass the backward the mask the forward returned; never draw a mask in the backward")]
    return [finding("wrong-backward", f"{told}, by up to {np.max(np.abs(repeat - a1)):.3g}){e.where}",
                    "make the backward deterministic (no random draws, no state that changes between calls)")]


def ignores_grad_output(e: Evidence):
    """The same array for two different random probes. All zeros is the same for every probe
    too, but legitimately so (the zero map is linear): the forward's slopes judge it later."""
    a, probes = e.a, e.probes
    if not np.any(a) or not np.all(same(a[1], a[2], 0.0)) or np.all(same(probes[1], probes[2], 0.0)):
        return None
    return e.wrong(f"backward ignores grad_output: it returned the same gradient for two different random "
                   f"grad_outputs (max difference {np.max(np.abs(a[1] - a[2])):.3g}){e.where}",
                   "multiply by grad_output: grad_x = grad_output * d out / d x (an all-ones grad_output hides "
                   "this)")


def not_linear(e: Evidence):
    """Exact homogeneity: scaling grad_output by -2 must scale grad_x by -2."""
    linear = same(e.pass_.homogeneous, -2.0 * e.a[1], 1e-6)
    if np.all(linear):
        return None
    return e.wrong(f"backward is not linear in grad_output: backward(-2 g) != -2 backward(g) at "
                   f"{int(np.sum(~linear))}/{linear.size} elements{e.where}",
                   "the vector-Jacobian product is linear in grad_output: no squares, abs, clipping or "
                   "constants applied to grad_output")


def returns_grad_output(e: Evidence):
    a, probes = e.a, e.probes
    if a.shape[1] != probes.shape[1] or not all(np.all(same(a[j], probes[j], e.rel)) for j in (1, 2)):
        return None
    return e.wrong(f"backward returns grad_output unchanged at all {a.shape[1]} elements, for two random "
                   f"grad_outputs{e.where}; {e.worst()}",
                   "apply the forward's local derivative: grad_x = grad_output * d out / d x")


def jump_within_step(e: Evidence):
    """A jump inside the step makes every slope below meaningless (one quotient is jump / step)."""
    jump = locate_jump(e.session, e.pass_)
    return None if jump is None else [jump_finding(e.pass_, jump, e.context, e.where)]


def _moving(values: np.ndarray, rel: float) -> np.ndarray:
    """Where |values| is a visible part of its largest magnitude."""
    return np.abs(values) > rel * max(float(np.max(np.abs(values))), 1e-300)


def zeros_where_forward_moves(e: Evidence):
    if np.any(e.a):
        return None
    moving = np.any(_moving(e.pass_.realised, e.rel), axis=0)
    return e.wrong(f"backward returns zeros for every grad_output, while the numerical gradient is nonzero at "
                   f"{int(moving.sum())}/{moving.size} elements, with no jump inside the step at the worst one; "
                   f"{e.worst()}{e.where}",
                   "return grad_output times the forward's local derivative (for dropout, grad_output * mask / "
                   "(1 - p)), not zeros")


def elementwise_slopes(e: Evidence) -> tuple[np.ndarray, np.ndarray] | None:
    """(forward's, backward's) local slope per element, or None when the pair is not elementwise.

    The backward's slope at i is a_i / r_i for either random probe r; divide by
    the larger of the two so that no element leans on a near-zero weight, and
    require the two readings to agree where both are usable (a backward that
    mixes elements gives different readings).
    """
    f = e.pass_.slope
    if f is None or not np.all(np.isfinite(f)):
        return None
    if float(np.max(e.pass_.cross)) > 1e-9 * max(float(np.max(np.abs(f))), 1e-300):
        return None  # some output moved when another element of x did: not elementwise
    r1, r2 = np.abs(e.probes[1]), np.abs(e.probes[2])
    floor = 1e-3 * max(float(np.max(r1)), float(np.max(r2)))
    if np.any(np.maximum(r1, r2) <= floor):
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        b1, b2 = e.a[1] / e.probes[1], e.a[2] / e.probes[2]
    both = (r1 > floor) & (r2 > floor)
    if not np.all(same(b1[both], b2[both], 10 * e.rel)):
        return None  # the backward mixes elements: its slopes are not a diagonal
    return f, np.where(r1 >= r2, b1, b2)


def same_pattern_wrong_factor(e: Evidence, f, b, keep_f, c_f, keep_b, c_b):
    if not (np.array_equal(keep_f, keep_b) and c_f != 0):
        return None
    k = c_b / c_f
    dropout_name = dropout_factor_name(k, c_f)
    n = f.size
    head = (f"forward and backward have constant slopes ({c_f:.5g} and {c_b:.5g}) on all {n} elements"
            if keep_f.all() else f"forward and backward keep the same {int(keep_f.sum())}/{n} elements")
    return e.wrong(f"{head}, but a/n = {k:.3f} on all {int(keep_f.sum())} of them; "
                   f"{dropout_name or generic_factor_name(k)}{e.where}",
                   "scale the backward exactly as the forward: grad_output * mask * (1 / (1 - p))" if dropout_name
                   else f"remove the stray factor {k:.4g} from the backward")


def backward_applies_no_mask(e: Evidence, f, b, keep_f, c_f, keep_b, c_b):
    if not (keep_b.all() and not keep_f.all()):
        return None
    return e.wrong(f"backward keeps all {f.size} elements (scale {c_b:.5g}) while the forward drops "
                   f"{int((~keep_f).sum())}{e.where}: the backward applies no mask",
                   "multiply by the mask the forward used")


def _threshold(keep: np.ndarray, x: np.ndarray) -> tuple[float, float] | None:
    """(low, high) when keep is exactly x > t for every t in [low, high), else None."""
    if keep.all() or not keep.any():
        return None
    low, high = float(np.max(x[~keep])), float(np.min(x[keep]))
    return (low, high) if low < high else None


def threshold_mismatch(e: Evidence, f, b, keep_f, c_f, keep_b, c_b):
    """Both patterns keep the elements of x above a threshold, at different thresholds: not a mask
    drawn elsewhere but a branch condition of the backward (relu's x > 0 written as x > 0.01)."""
    x = np.asarray(e.pass_.x, dtype=np.float64).reshape(-1)
    cut_f, cut_b = _threshold(keep_f, x), _threshold(keep_b, x)
    if cut_f is None or cut_b is None:
        return None
    differ = x[keep_f != keep_b]
    low, high = float(differ.min()), float(differ.max())
    where = f"x = {low:.4g}" if low == high else f"x from {low:.4g} to {high:.4g}"
    return e.wrong(f"the forward is elementwise; it has a nonzero slope exactly where x > t for a t between "
                   f"{cut_f[0]:.4g} and {cut_f[1]:.4g}, the backward where x > t for a t between {cut_b[0]:.4g} and "
                   f"{cut_b[1]:.4g}: they disagree at {differ.size}/{x.size} elements, {where}{e.where}",
                   "give the backward the forward's branch condition (the same comparison with the same "
                   "threshold, e.g. x > 0 for relu)")


def mask_mismatch(e: Evidence, f, b, keep_f, c_f, keep_b, c_b):
    """Two keep patterns that differ: the mask, and the kept scale if that differs too."""
    n = f.size
    backward_only, forward_only = int(np.sum(keep_b & ~keep_f)), int(np.sum(keep_f & ~keep_b))
    same_scale = abs(c_b - c_f) <= 10 * e.rel * abs(c_f)
    scale_text = (f"; both scale kept elements by {c_f:.5g}" if same_scale
                  else f"; kept elements scaled by {c_b:.5g} in the backward, {c_f:.5g} in the forward")
    findings = [finding(
        "mask-mismatch",
        f"{e.context}forward keeps {int(keep_f.sum())}/{n} elements, backward {int(keep_b.sum())}/{n}; they "
        f"disagree on {backward_only + forward_only} (backward keeps {backward_only} the forward drops, drops "
        f"{forward_only} it keeps); {mask_relation(keep_f, keep_b, e.x_shape)}{e.where}{scale_text}",
        "give the backward the very mask the forward used (return it from the forward call that is checked, or "
        "draw both from the same seed at the same shape)",
    )]
    if not same_scale and c_f != 0:
        k = c_b / c_f
        findings.append(finding(
            "wrong-backward",
            f"besides the mask, the kept scale differs: ratio {k:.3f}; "
            f"{dropout_factor_name(k, c_f) or generic_factor_name(k)}",
            "scale the backward exactly as the forward: grad_output * mask * (1 / (1 - p))",
        ))
    return findings


#: Rules for an elementwise pair whose forward and backward slopes are both two-level (mask-like).
MASK_RULES = (same_pattern_wrong_factor, backward_applies_no_mask, threshold_mismatch, mask_mismatch)


def smooth_constant_factor(e: Evidence, f, b):
    big = _moving(f, e.rel)
    if not np.any(big):
        return None
    ratio = b[big] / f[big]
    k = float(np.median(ratio))
    if k == 0 or abs(k - 1) <= e.rel or not np.all(np.abs(ratio - k) <= 10 * e.rel * abs(k)):
        return None
    return e.wrong(f"the forward is elementwise; the backward's slope / forward's slope = {k:.4g} on all "
                   f"{int(big.sum())} elements{e.where}: {generic_factor_name(k)}",
                   f"remove the stray factor {k:.4g} from the backward")


def one_wrong_branch(e: Evidence, f, b):
    wrong = ~same(b, f, 10 * e.rel)
    branch = wrong_branch(b, f, wrong, _moving(f, e.rel), np.asarray(e.pass_.x, dtype=np.float64).reshape(-1),
                          e.rel)
    if not branch:
        return None
    return e.wrong(f"the forward is elementwise; {branch}{e.where}",
                   "re-derive the derivative on that branch (the backward's factor there is off by the stated "
                   "ratio)")


def slopes_differ(e: Evidence, f, b):
    wrong = ~same(b, f, 10 * e.rel)
    i = int(np.argmax(np.abs(b - f)))
    return e.wrong(f"the forward is elementwise; the backward's local slope differs from the forward's at "
                   f"{int(wrong.sum())}/{f.size} elements, with no constant ratio (worst at flat index {i}: "
                   f"backward {b[i]:.6g}, forward {f[i]:.6g}){e.where}",
                   "re-derive d out_i / d x_i and evaluate it at the forward's input (not at its output, or "
                   "vice versa)")


#: Rules for an elementwise pair with smooth (not mask-like) slopes; the last always answers.
SMOOTH_RULES = (smooth_constant_factor, one_wrong_branch, slopes_differ)


def elementwise(e: Evidence):
    """Local slopes of forward and backward compared element by element."""
    slopes = elementwise_slopes(e)
    if slopes is None:
        return None
    f, b = slopes
    levels_f, levels_b = two_level(f, e.rel), two_level(b, e.rel)
    if levels_f is not None and levels_b is not None:
        return _first(MASK_RULES, e, f, b, *levels_f, *levels_b)
    return _first(SMOOTH_RULES, e, f, b)


def constant_ratio(e: Evidence):
    """Not elementwise (or no pattern there): one constant ratio a/n over all probes?"""
    n, a = e.pass_.realised, e.a
    big = _moving(n, e.rel)
    if not np.any(big):
        return None
    ratio = a[big] / n[big]
    k = float(np.median(ratio))
    small_ok = np.all(np.abs(a[~big]) <= e.rel * float(np.max(np.abs(a))) + 1e-300)
    if k == 0 or not np.all(np.abs(ratio - k) <= 10 * e.rel * abs(k)) or not small_ok or abs(k - 1) <= e.rel:
        return None
    return e.wrong(f"a/n = {k:.4g} on all {int(big.sum())} probe-elements with a nonzero numerical gradient"
                   f"{e.where}: {generic_factor_name(k)}", f"remove the stray factor {k:.4g} from the backward")


def no_pattern(e: Evidence):
    random_failed = not bool(np.all(e.pass_.passes()[1:]))
    probe = 0 if e.user_failed or not random_failed else 1
    which = "your grad_output" if probe == 0 else "a random grad_output"
    return e.wrong(f"for {which}, {worst_element(e.pass_, probe)}{e.where}; forward deterministic, no keep "
                   "pattern and no constant ratio explain it",
                   "re-derive the backward's chain-rule step; compare it column by column with "
                   "lib.gradcheck.numerical_gradient on a small input")


#: The rules that read the backward alone: their findings hold whatever the forward does.
BACKWARD_RULES: tuple[Rule, ...] = (
    non_finite_backward,
    differs_between_calls,
    ignores_grad_output,
    not_linear,
    returns_grad_output,
)

#: The order in which the rules are asked; see the module docstring for why.
RULES: tuple[Rule, ...] = (
    *BACKWARD_RULES,
    jump_within_step,
    zeros_where_forward_moves,
    elementwise,
    constant_ratio,
    no_pattern,
)


def _first(rules, *args) -> list[Finding] | None:
    for rule in rules:
        found = rule(*args)
        if found:
            return found
    return None


def explain(session: Session, pass_: Pass, x_shape: tuple, user_failed: bool,
            note: str) -> tuple[list[Finding], bool]:
    """Findings for a mismatch rounding does not explain: mask-mismatch or wrong-backward.

    `note` is appended to where the pass was measured (e.g. why float64 was unavailable).
    Returns (findings, trusts_forward): trusts_forward is False when a rule of
    BACKWARD_RULES answered (the findings hold for any forward).
    """
    context = "" if user_failed else (f"passes with your grad_output but not with random ones (max "
                                      f"error/tolerance {pass_.trial().random:.3g}); ")
    evidence = Evidence(session, pass_, x_shape, user_failed, context, f" (measured in {pass_.dtype}{note})",
                        pattern_tolerance(pass_.dtype))
    backward_alone = _first(BACKWARD_RULES, evidence)
    if backward_alone:
        return backward_alone, False
    return _first(RULES[len(BACKWARD_RULES):], evidence), True
