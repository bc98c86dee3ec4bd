"""diagnose(): the plain check, the reruns that test precision, then the rules.

The order of work: forward twice at x (determinism), one dense pass in x's
dtype with the caller's settings, forward once more at x; then, only while
the check keeps failing, the same pass divided by the realised step (free),
at the default step, and in float64. What the reruns resolve is precision
(precision.py); what they do not is attributed by the rules (rules.py). A
blame of the backward that rests on the forward's slopes is kept only once
more calls at x establish that the forward is deterministic (determinism.py).
Every pass judges by check_gradient's whole rule, the noise term and the
smaller steps for a kink within the step included (lib.diagnose.stages), so a
check that check_gradient passes is not a precision problem here either;
strict=True judges by the plain rule alone, as check_gradient(strict=True).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lib import _checks
from lib.diagnose.determinism import confirm, nondeterminism
from lib.diagnose.evidence import (
    Pass,
    Session,
    Unavailable,
    mutation_findings,
    probe_arrays,
    run_pass,
)
from lib.diagnose.findings import INCONCLUSIVE, Diagnosis, Finding, Trial, finding
from lib.diagnose.patterns import worst_element
from lib.diagnose.precision import float64_within_budget, precision_finding, resolved_elsewhere
from lib.diagnose.rules import explain
from lib.gradcheck.differences import require_finite
from lib.gradcheck.result import build_result
from lib.gradcheck.steps import default_step

DIVIDE_BY = ("realised", "nominal")



def _validated(forward, backward, x, grad_output, rtol, atol, eps, divide_by, seed, strict):
    for name, fn in (("forward", forward), ("backward", backward)):
        if not callable(fn):
            raise TypeError(f"{name} must be callable; got {type(fn).__name__} {fn!r}")
    x = require_finite(_checks.float_array(x, "x"))
    if x.size == 0:
        raise ValueError("x must have at least one element")
    rtol = _checks.non_negative(rtol, "rtol")
    atol = _checks.non_negative(atol, "atol")
    eps = None if eps is None else _checks.positive_step(eps)
    divide_by = _checks.choice(divide_by, "divide_by", DIVIDE_BY)
    seed = _checks.positive_int(seed, "seed", low=0, high=2**63 - 1)
    strict = _checks.boolean(strict, "strict")
    grad_output = np.asarray(grad_output)
    if not np.issubdtype(grad_output.dtype, np.number) or np.iscomplexobj(grad_output):
        raise TypeError(f"grad_output must be a real numeric array; got dtype {grad_output.dtype}")
    if not np.all(np.isfinite(grad_output)):
        raise ValueError("grad_output must be finite")
    return x.copy(), grad_output.copy(), rtol, atol, eps, divide_by, seed, strict


def diagnose(forward, backward, x, grad_output, *, rtol=1e-3, atol=1e-6, eps=None,
             divide_by="realised", seed=0, strict=False) -> Diagnosis:
    """Run a gradient check and say why it fails (or why a pass is not to be trusted).

    Args:
        forward: forward(x) -> y, an array of any shape.
        backward: backward(grad_output, x) -> grad_x, x's shape.
        x: floating array (float16/32/64), shape S, at least one element; never modified.
        grad_output: real array of y's shape; the check's loss is sum(y * grad_output).
        rtol, atol: |a - n| <= atol + rtol * max(|a|, |n|) + noise, check_gradient's whole rule:
            an element failing at the default step is measured again (noise term, then halving
            steps for a kink within the step, docs/checking_at_kinks.md); divide_by="realised" only.
        eps: the step; None picks the default step cbrt(machine eps) * max(1, |x|).
        divide_by: "realised" (x+ - x- as stored, like check_gradient) or "nominal"
            (2*eps, like the original checker).
        seed: seeds the Generator for the two random grad_output probes, so that a
            diagnosis is repeatable.
        strict: True: the plain rule, as check_gradient(strict=True), no noise term or smaller steps.

    Returns:
        Diagnosis: `.passed`, `.result` (GradCheckResult of the check with your
        grad_output and settings, as check_gradient with probes=0 reports it),
        `.findings` ranked with the primary cause first. Costs one dense check (2
        forward calls per element, 5 backward calls), 3 forward calls at x, and what
        check_gradient spends on an element failing at the default step: 2 calls in
        float64 (float16/float32 x) and 3 per halving of its step (relu 1e-4 from its
        kink in float32: 7 halvings); when the check fails, up to two more such dense
        checks (the float64 one: 1 more call, for forward(x)), at most 14 calls in a
        jump search, and, for a blame read from the forward's slopes, up to 132
        calls at x (lib.diagnose.determinism).

    Raises:
        TypeError / ValueError for bad arguments, a backward of the wrong shape, or a forward
        with non-finite output at x; errors raised by forward or backward propagate.
    """
    x, grad_output, rtol, atol, eps, divide_by, seed, strict = _validated(
        forward, backward, x, grad_output, rtol, atol, eps, divide_by, seed, strict)
    settings = {"rtol": rtol, "atol": atol, "eps": eps, "divide_by": divide_by, "seed": seed, "strict": strict}
    session = Session(forward, backward)
    out_first = session.forward(x)
    if grad_output.shape != out_first.shape:
        raise ValueError(f"grad_output must have the shape of forward(x), {out_first.shape}; "
                         f"got {grad_output.shape}")
    session.out_shape = out_first.shape
    out_second = session.forward(x)
    randoms = np.random.default_rng(seed).standard_normal((2, *out_first.shape))
    probes = probe_arrays(grad_output, randoms, x.dtype)
    half = default_step(x) if eps is None else np.full(x.shape, eps)
    first = run_pass(session, f"{x.dtype}, {_step_text(eps)}, {_divide_text(divide_by)}", x, probes, half,
                     divide_by, rtol, atol, strict=True, eps=eps, y0=out_first, plain=strict)
    out_after = session.forward(x)
    result = _plain_result(session, first, x, rtol, atol, divide_by, strict)
    findings = mutation_findings(session)
    moved = nondeterminism(out_first, out_second, out_after)
    if moved is not None:
        return _finish(result, [*findings, moved], [first.trial()], session, settings, first)
    reruns = _Reruns(first, [first.trial()], [first], plain=strict)
    reruns.run(session, x, probes, eps, divide_by, rtol, atol, out_first)
    findings += _vetted(session, x, [out_first, out_second, out_after], *_attribute(session, reruns, x.shape, eps))
    return _finish(result, findings, reruns.trials, session, settings, first)


def _vetted(session: Session, x, outs: list, attributed: list[Finding], reliant: list[Finding]) -> list[Finding]:
    """The attributed findings, once the forward is known to be deterministic if any of them needs it.

    `reliant` (a subset of `attributed`) read the forward's slopes: more calls at
    x (determinism.confirm) either establish determinism (all findings stand),
    find a difference (that alone is the finding, as with the first calls), or
    neither (an inconclusive finding replaces the reliant ones).
    """
    if not reliant:
        return attributed
    verdict = confirm(session, x, outs, reliant[0].code)
    if verdict is None:
        return attributed
    if verdict.code != INCONCLUSIVE:
        return [verdict]
    return [verdict, *(f for f in attributed if f not in reliant)]


def _noise_text(first: Pass) -> str:
    """What check_gradient's noise term and smaller steps did in the caller's pass, as information."""
    if first.divide_by != "realised":
        return ""
    plain = first.ratios("realised", noise=False)
    plain[~np.isnan(first.band)] = 0.0  # those are the smaller steps' (below)
    helped = np.any(first.slack > 0, axis=0) & np.any(plain > 1.0, axis=0)
    text = ""
    if helped.any():
        worst = plain.max(axis=1)
        text = (f" (by check_gradient's rule, whose noise term allows for the arithmetic: the outputs' rounding "
                f"and a float64 re-measurement at the same points; without it {int(helped.sum())}/{helped.size} "
                f"elements miss the plain band, max error/tolerance {worst[0]:.3g} and {worst[1:].max():.3g}, "
                "a difference the arithmetic explains)")
    return text + _smaller_text(first)


def _smaller_text(first: Pass, shown: int = 3) -> str:
    """The elements that passed only at smaller steps (a kink within the default step), as information."""
    row = next((r for r, records in enumerate(first.smaller_steps) if records), None)
    if row is None:
        return ""
    records = first.smaller_steps[row]
    said = []
    for r in records[:shown]:
        if r.verdict == "subgradient":
            said.append(f"flat index {r.index} sits on a kink (one-sided slopes {r.slope_minus:.4g} and "
                        f"{r.slope_plus:.4g}), a = {first.analytical[row, r.index]:.6g} lies between them: a "
                        "subgradient")
        else:
            said.append(f"flat index {r.index} {r.verdict} to {r.central:.6g} at h = {r.step:.3g} (k = {r.k})")
    more = f", and {len(records) - shown} more" if len(records) > shown else ""
    whose = "your grad_output" if row == 0 else "a random grad_output"
    return (f" ({len(records)}/{first.x.size} elements failed at the default step for {whose} and passed at "
            f"smaller steps, as check_gradient measures a kink within the step: {'; '.join(said)}{more})")


def _step_text(eps) -> str:
    return "default step" if eps is None else f"eps={eps:g}"


def _divide_text(divide_by: str) -> str:
    return "nominal 2*eps" if divide_by == "nominal" else "realised step"


def _plain_result(session: Session, first: Pass, x, rtol, atol, divide_by, strict):
    """The GradCheckResult of the caller's check, by check_gradient's rule and as it would count its calls.

    Dividing by the realised step, the pass band is check_gradient's (noise term
    and smaller steps, or the plain band under strict); dividing by the nominal
    one, it is the failure-era checker's plain band. An element measured at
    smaller steps reports that measurement: its slope, band and realised width.
    """
    x_changed = ("forward", "x") in session.mutations or ("backward", "x") in session.mutations
    realised = divide_by == "realised"
    divisor = first.width if realised else 2.0 * first.half
    records = first.smaller_steps[0] if realised and first.smaller_steps else ()
    widths = {r.index: r.width for r in records if not np.isnan(first.band[0, r.index])}
    if widths:  # the realised width of the step that decided the element, as check_gradient reports it
        divisor = divisor.copy()
        divisor[list(widths)] = list(widths.values())
    return build_result(first.analytical[0].reshape(x.shape), first.numerical[0].reshape(x.shape),
                        divisor.reshape(x.shape), dtype=x.dtype, rtol=rtol, atol=atol, divide_by=divide_by,
                        forward_calls=2 * x.size + 1 + (first.checker_calls if realised else 0),
                        slack=first.slack[0].reshape(x.shape) if realised and not strict else None,
                        input_mutated=x_changed, band=first.band[0].reshape(x.shape) if realised else None,
                        smaller_steps=records)


@dataclass
class _Reruns:
    """The passes that test precision, and what they resolved.

    best/best_which: the most trustworthy measurement so far (a Pass and which
    of its numerical columns to read); resolved_by: what made the caller's
    failing check pass ("realised", "default step", "float64", "budget"), with
    `resolving` the pass that did; failed: passes in x's dtype that failed.
    """

    first: Pass
    trials: list[Trial]
    failed: list[Pass]
    plain: bool = False  # the plain rule (strict=True) in every pass
    best: Pass | None = None
    best_which: str = "numerical"
    resolved_by: str | None = None
    resolving: Pass | None = None
    unavailable: str = ""
    worst_rel: float = np.nan
    within_budget: bool = False  # float64 fails, but only by less than finite differences resolve
    user_failed: bool = field(init=False)

    def __post_init__(self):
        self.best = self.first
        self.user_failed = not bool(self.first.passes()[0])

    def _resolve(self, how: str, by: Pass | None) -> None:
        if self.user_failed and self.resolved_by is None:
            self.resolved_by, self.resolving = how, by

    def still_failing(self) -> bool:
        return not np.all(self.best.passes(self.best_which))

    def run(self, session, x, probes, eps, divide_by, rtol, atol, y0) -> None:
        first = self.first
        if divide_by == "nominal" and not np.all(first.passes()):
            self.best_which = "realised"
            self.trials.append(first.trial("realised", f"{x.dtype}, {_step_text(eps)}, realised step"))
            if first.passes("realised")[0]:
                self._resolve("realised", None)
        if self.still_failing() and eps is not None:
            self.best, self.best_which = run_pass(session, f"{x.dtype}, default step, realised step", x,
                                                  probes, default_step(x), "realised", rtol, atol,
                                                  strict=True, y0=y0, plain=self.plain), "numerical"
            self.trials.append(self.best.trial())
            if not self.best.passes()[0]:
                self.failed.append(self.best)
            elif self.user_failed:
                self._resolve("default step", self.best)
        if self.still_failing() and x.dtype != np.float64:
            self._run_in_float64(session, x, probes, rtol, atol)
        if self.still_failing() and self.best.dtype == np.float64:
            within, self.worst_rel = float64_within_budget(self.best)
            if within:
                self.within_budget = True
                self._resolve("budget", self.best)

    def _run_in_float64(self, session, x, probes, rtol, atol) -> None:
        x64 = x.astype(np.float64)
        try:
            wide = run_pass(session, "float64, default step, realised step", x64,
                            [np.asarray(p, dtype=np.float64) for p in probes], default_step(x64), "realised",
                            rtol, atol, strict=False, plain=self.plain)
        except Unavailable as why:
            self.unavailable = f"; float64 check unavailable: {why}"
            return
        self.best, self.best_which = wide, "numerical"
        self.trials.append(wide.trial())
        if wide.passes()[0]:
            self._resolve("float64", wide)

    @property
    def real_error(self) -> bool:
        return not self.within_budget and self.still_failing()


def _attribute(session: Session, reruns: _Reruns, x_shape: tuple, eps) -> tuple[list[Finding], list[Finding]]:
    """The findings for what the reruns left: a real error (rules), a precision failure, or both;
    and those among them that rest on the forward being a function of x alone (a blame of the
    backward read from its slopes, a jump or a kink within the step)."""
    findings: list[Finding] = []
    reliant: list[Finding] = []
    real_error = reruns.real_error
    if real_error:
        best = reruns.best
        if reruns.best_which == "realised":
            best = Pass(**{**best.__dict__, "numerical": best.realised, "divide_by": "realised"})
        explained, trusts_forward = explain(session, best, x_shape, bool(not best.passes()[0]), reruns.unavailable)
        findings += explained
        reliant += explained if trusts_forward else []
    first, resolved_by = reruns.first, reruns.resolved_by
    if not reruns.user_failed:
        return findings, reliant
    if resolved_by in ("default step", "float64"):
        # Another step or dtype passes, but that alone does not make the failure rounding:
        # a jump or kink within this step, out of reach of the other, passes there too.
        elsewhere, beyond_budget = resolved_elsewhere(session, first, reruns.failed, resolved_by,
                                                      reruns.resolving, eps, probe=not real_error)
        findings += elsewhere
        reliant += elsewhere if beyond_budget else []
    elif resolved_by is not None:
        findings.append(precision_finding(first, resolved_by, reruns.resolving, reruns.worst_rel, eps))
    elif not real_error:
        # Unreachable by construction (a failure is either resolved or real);
        # kept so that a failing check can never come back as "ok".
        findings.append(finding("wrong-backward", worst_element(first, 0), "inspect the failing elements"))
        reliant.append(findings[-1])
    return findings, reliant


def _finish(result, findings, trials, session, settings, first) -> Diagnosis:
    if not findings:
        t = first.trial()
        findings = [finding(
            "ok",
            f"max error/tolerance {t.user:.3g} for your grad_output and {t.random:.3g} for 2 random ones"
            f"{_noise_text(first)}; forward gave identical outputs on 3 calls at x; no argument was changed",
            "nothing to fix",
        )]
    return Diagnosis(result=result, findings=findings, trials=tuple(trials), forward_calls=session.forward_calls,
                     backward_calls=session.backward_calls, settings=settings)
