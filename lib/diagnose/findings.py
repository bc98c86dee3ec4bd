"""What a diagnosis says: the codes, their hypotheses, findings, and the Diagnosis report."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from lib.gradcheck.result import GradCheckResult

#: Every cause a Finding can name, in the order of lib.diagnose's table.
CODES = ("ok", "nondeterministic-forward", "mask-mismatch", "wrong-backward", "precision", "input-mutation")

#: The code of a finding that names no cause: the evidence cannot decide (see lib.diagnose.determinism).
INCONCLUSIVE = "inconclusive"

#: The hypothesis each code stands for (H1-H5 are the investigation plan's).
HYPOTHESES = {
    "ok": "the analytical gradient matches the numerical one",
    "nondeterministic-forward": (
        "H1/H5: the forward's mask or state is not fixed during the check: calls at the same x, "
        "or at x-eps and x+eps, draw different masks, so the two sides of a difference see different functions"
    ),
    "mask-mismatch": (
        "H2: backward is a dropout-style gradient under a different keep/drop pattern "
        "than the one the forward applies"
    ),
    "wrong-backward": "H3: backward does not compute the vector-Jacobian product of the forward",
    "precision": (
        "H4: finite-difference error of the check (rounding or truncation at this step), "
        "not a wrong gradient"
    ),
    "input-mutation": "checker/test: forward or backward writes into an array it is given",
    INCONCLUSIVE: (
        "the evidence cannot decide: a mismatch can only be blamed on the backward when the forward is "
        "deterministic, and its calls at x did not establish that"
    ),
}


@dataclass(frozen=True)
class Finding:
    """One possible cause, with the numbers that point to it.

    Attributes:
        code: one of CODES, or INCONCLUSIVE.
        hypothesis: what the code claims, in one sentence.
        evidence: the deciding measurements, e.g. "a/n = 0.700 on all 4 kept elements".
        suggestion: what to change, concretely.
    """

    code: str
    hypothesis: str
    evidence: str
    suggestion: str

    def line(self) -> str:
        """The finding on one line: code, evidence, suggestion."""
        return f"{self.code}: {self.evidence}. Suggestion: {self.suggestion}"


class Trial(NamedTuple):
    """One setting the check was run at, with its worst error/tolerance ratios.

    `user` is for the caller's grad_output, `random` the worse of the random
    probes; a check passes when the ratio is <= 1. NaN: not measured.
    """

    setting: str
    user: float
    random: float


@dataclass(frozen=True)
class Diagnosis:
    """The plain check result and the ranked findings that explain it.

    Attributes:
        result: the GradCheckResult for the caller's grad_output and settings,
            computed on private copies of x (so a forward that writes into its
            input does not corrupt the numbers; `result.input_mutated` still
            records that it did).
        findings: ranked, primary cause first; `[ok]` when nothing is wrong.
        trials: each setting the check was run at, in order.
        forward_calls, backward_calls: what the diagnosis cost.
        settings: rtol, atol, eps, divide_by and seed as used.
    """

    result: GradCheckResult
    findings: list[Finding]
    trials: tuple[Trial, ...] = ()
    forward_calls: int = 0
    backward_calls: int = 0
    settings: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """The plain check's verdict (it may pass while findings[0] is not ok)."""
        return self.result.passed

    @property
    def primary(self) -> Finding:
        return self.findings[0]

    @property
    def codes(self) -> list[str]:
        return [f.code for f in self.findings]

    def headline(self) -> str:
        r = self.result
        n = r.analytical.size
        failing = r.failing_indices.size
        verdict = "passed" if r.passed else "FAILED"
        return (
            f"Gradient check {verdict} for {r.dtype}: {failing}/{n} elements out of tolerance, "
            f"max error/tolerance {r.max_error_ratio:.3g} at index {r.worst_index}"
            + ("; the input array was modified" if r.input_mutated else "")
        )

    def lines(self) -> list[str]:
        """The check_gradient error-message form: a header, then one line per finding."""
        return ["Diagnosis (most likely cause first):"] + [
            f"  {k}. {f.line()}" for k, f in enumerate(self.findings, 1)
        ]

    def __str__(self) -> str:
        s = self.settings
        eps = "default" if s.get("eps") is None else f"{s['eps']:g}"
        out = [
            self.headline(),
            f"settings: rtol={s.get('rtol', 0):g} atol={s.get('atol', 0):g} eps={eps} "
            f"divide_by={s.get('divide_by')} probe seed={s.get('seed')}; "
            f"{self.forward_calls} forward and {self.backward_calls} backward calls",
            "",
            "checks run (max error/tolerance, <= 1 passes):",
        ]
        width = max([len(t.setting) for t in self.trials] + [len("setting")])
        out.append(f"  {'setting':<{width}}  {'your grad_output':>16}  {'random grad_outputs':>19}")
        for t in self.trials:
            out.append(f"  {t.setting:<{width}}  {_fmt_ratio(t.user):>16}  {_fmt_ratio(t.random):>19}")
        out.append("")
        out.append("findings (most likely cause first):")
        code_width = max(len(f.code) for f in self.findings)
        for k, f in enumerate(self.findings, 1):
            pad = " " * (len(f"  {k}. ") + code_width + 2)
            out.append(f"  {k}. {f.code:<{code_width}}  {f.hypothesis}")
            out.append(f"{pad}evidence:   {f.evidence}")
            out.append(f"{pad}suggestion: {f.suggestion}")
        return "\n".join(out)

    def _repr_html_(self) -> str:
        e = html.escape
        rows = "".join(
            f"<tr><td>{k}</td><td><code>{e(f.code)}</code></td><td>{e(f.hypothesis)}</td>"
            f"<td>{e(f.evidence)}</td><td>{e(f.suggestion)}</td></tr>"
            for k, f in enumerate(self.findings, 1)
        )
        trials = "".join(
            f"<tr><td>{e(t.setting)}</td><td>{e(_fmt_ratio(t.user))}</td>"
            f"<td>{e(_fmt_ratio(t.random))}</td></tr>"
            for t in self.trials
        )
        return (
            f"<p><b>{e(self.headline())}</b></p>"
            "<table><thead><tr><th>#</th><th>code</th><th>hypothesis</th><th>evidence</th>"
            f"<th>suggestion</th></tr></thead><tbody>{rows}</tbody></table>"
            "<details><summary>checks run (max error/tolerance, &lt;= 1 passes)</summary>"
            "<table><thead><tr><th>setting</th><th>your grad_output</th><th>random grad_outputs</th>"
            f"</tr></thead><tbody>{trials}</tbody></table></details>"
        )


def _fmt_ratio(value: float) -> str:
    return "-" if np.isnan(value) else f"{value:.3g}"


def finding(code: str, evidence: str, suggestion: str) -> Finding:
    """A Finding for `code`, with the hypothesis the code stands for."""
    return Finding(code, HYPOTHESES[code], evidence, suggestion)
